//! Compiles kernels/*.cu with nvcc (through `cc`) when the `cuda` feature is on and nvcc is
//! found, and then sets `cfg(wcodec_kernels)`. Otherwise the crate builds its stub, whose calls
//! return `CudaError::NotAvailable`; with the feature on, a cargo warning says why.
//!
//! nvcc is looked for in `$NVCC`, `$CUDA_HOME/bin`, `$CUDA_PATH/bin`, the toolchain that
//! `cargo xtask cuda-toolchain` installs (`$WCODEC_CACHE_DIR/cuda` or `~/.cache/wcodec/cuda`),
//! `/usr/local/cuda/bin` and `PATH`. The GPU targets come from kernels/gencode.txt, and how
//! each file is compiled (whole, or as relocatable device code) from kernels/builds.txt: one
//! static library for the files compiled whole, one for the relocatable ones.
//!
//! With the feature on, bindgen also turns kernels/wcodec_kernels.h into Rust (`header.rs` in
//! `OUT_DIR`) and sets `cfg(wcodec_header)`, under which src/abi.rs checks, as it compiles, that
//! its mirrors have the header's sizes, field offsets and constants. bindgen loads libclang
//! from `$LIBCLANG_PATH` (`cargo xtask cuda-toolchain` installs one and prints the path) or the
//! system's; without one a cargo warning says the check was skipped (abi.rs's tests still pin
//! the layouts that the header's static_asserts pin).

#[cfg(feature = "cuda")]
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(wcodec_kernels)");
    println!("cargo::rustc-check-cfg=cfg(wcodec_header)");
    println!("cargo::rerun-if-changed=build.rs");
    let vars = ["NVCC", "CUDA_HOME", "CUDA_PATH", "WCODEC_CACHE_DIR", "HOME", "PATH"];
    for var in vars.into_iter().chain(["LIBCLANG_PATH"]) {
        println!("cargo::rerun-if-env-changed={var}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    build_kernels();
}

#[cfg(not(feature = "cuda"))]
fn build_kernels() {}

#[cfg(feature = "cuda")]
fn build_kernels() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let kernels = manifest.join("../../kernels");
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&kernels).expect("kernels/ exists") {
        let path = entry.expect("readable kernels/").path();
        println!("cargo::rerun-if-changed={}", path.display());
        if path.extension().is_some_and(|e| e == "cu") {
            sources.push(path);
        }
    }
    sources.sort();
    let builds = kernel_builds(&kernels.join("builds.txt"));
    for source in &sources {
        let name = source.file_name().expect("a file").to_string_lossy();
        assert!(
            builds.iter().any(|(file, _)| *file == name),
            "kernels/{name} is not listed in kernels/builds.txt"
        );
    }
    for (file, _) in &builds {
        assert!(kernels.join(file).is_file(), "kernels/builds.txt lists {file}, not in kernels/");
    }
    header_bindings(&kernels.join("wcodec_kernels.h"));
    if let Some(marker) = cache_marker() {
        println!("cargo::rerun-if-changed={}", marker.display());
    }
    let Some(nvcc) = find_nvcc() else {
        println!(
            "cargo::warning=wcodec-cuda: feature `cuda` is on but nvcc was not found (set \
             CUDA_HOME or NVCC, or run `cargo xtask cuda-toolchain`); building the stub, whose \
             calls return CudaError::NotAvailable"
        );
        return;
    };
    let cuda_home = nvcc.parent().and_then(Path::parent).expect("nvcc lives in <CUDA_HOME>/bin");
    // cc finds nvcc (and probes its family) through NVCC and PATH: point both at the one found.
    let mut path = vec![cuda_home.join("bin")];
    path.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    let path = std::env::join_paths(path).expect("PATH entries without separators");
    let gencodes = gencode_list(&kernels.join("gencode.txt"));
    // A library for each file compiled whole (`cc` would compile two files of one library as
    // relocatable code), and one for the relocatable files, device-linked together.
    let whole = builds.iter().filter(|(_, r)| !r).map(|(f, _)| (vec![f.as_str()], false));
    let relocatable: Vec<&str> =
        builds.iter().filter(|(_, r)| *r).map(|(f, _)| f.as_str()).collect();
    let libraries = whole.chain((!relocatable.is_empty()).then_some((relocatable, true)));
    for (files, relocatable) in libraries {
        let mut build = cc::Build::new();
        build.cuda(true).cudart("static").env("NVCC", &nvcc).env("PATH", &path).include(&kernels);
        // Device code is always optimised (no -G in debug builds); -lineinfo keeps profiles
        // readable.
        build.debug(false).opt_level(3);
        for gencode in &gencodes {
            build.flag("-gencode").flag(gencode);
        }
        build.flag("-std=c++17").flag("-lineinfo").warnings(true);
        // cc compiles the files of a build as relocatable code (and device-links them) only
        // when there are two or more: said here, so that one file alone is compiled so too.
        if relocatable {
            build.flag("-rdc=true");
        }
        for file in &files {
            build.file(kernels.join(file));
        }
        let name = match files[..] {
            [file] if !relocatable => format!("wcodec_kernels_{}", file.trim_end_matches(".cu")),
            _ => "wcodec_kernels_relocatable".to_owned(),
        };
        build.compile(&name);
    }
    for lib in ["lib", "lib64", "targets/x86_64-linux/lib"] {
        let dir = cuda_home.join(lib);
        if dir.is_dir() {
            println!("cargo::rustc-link-search=native={}", dir.display());
        }
    }
    // cc links cudart only when it finds nvcc on the process PATH: say it here, with what
    // libcudart_static needs from the C library on older glibc.
    println!("cargo::rustc-link-lib=static=cudart_static");
    for lib in ["dl", "rt", "pthread"] {
        println!("cargo::rustc-link-lib={lib}");
    }
    println!("cargo::rustc-cfg=wcodec_kernels");
}

/// The header as Rust (bindgen), for src/abi.rs to check its mirrors against, and
/// `cfg(wcodec_header)`; a cargo warning instead where libclang cannot be loaded.
#[cfg(feature = "cuda")]
fn header_bindings(header: &Path) {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("header.rs");
    // The libclang `cargo xtask cuda-toolchain` installed, where LIBCLANG_PATH names none.
    let marker = cache_file("LIBCLANG_PATH");
    if let Some(marker) = &marker {
        println!("cargo::rerun-if-changed={}", marker.display());
    }
    let cached = marker.and_then(|m| std::fs::read_to_string(m).ok());
    if std::env::var_os("LIBCLANG_PATH").is_none_or(|v| v.is_empty())
        && let Some(dir) = cached.map(|d| PathBuf::from(d.trim())).filter(|d| d.is_dir())
    {
        // SAFETY: the build script is one thread here; clang-sys reads the variable when
        // bindgen loads libclang, just below.
        unsafe { std::env::set_var("LIBCLANG_PATH", dir) };
    }
    // The header is C++ as nvcc reads it (its static_asserts are C++11's).
    let generate = || {
        bindgen::Builder::default()
            .header(header.to_string_lossy())
            .clang_args(["-x", "c++", "-std=c++17"])
            .allowlist_type("Wc.*")
            .allowlist_var("WC_.*")
            .layout_tests(false)
            .derive_debug(false)
            .generate()
            .map_err(|e| e.to_string())
    };
    // bindgen panics where it finds no libclang: caught, quietly, to become the warning below.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let bindings = std::panic::catch_unwind(generate)
        .unwrap_or_else(|_| Err("libclang was not found".to_owned()));
    std::panic::set_hook(hook);
    match bindings {
        Ok(bindings) => {
            bindings.write_to_file(&out).expect("OUT_DIR is writable");
            println!("cargo::rustc-cfg=wcodec_header");
        }
        Err(e) => println!(
            "cargo::warning=wcodec-cuda: bindgen could not read kernels/wcodec_kernels.h \
             ({e}; set LIBCLANG_PATH, or run `cargo xtask cuda-toolchain`): src/abi.rs is not \
             checked against the header in this build"
        ),
    }
}

/// The kernel files and whether each is compiled as relocatable device code, one a line
/// (`whole FILE` or `relocatable FILE`); `#` starts a comment.
#[cfg(feature = "cuda")]
fn kernel_builds(path: &Path) -> Vec<(String, bool)> {
    let text = std::fs::read_to_string(path).expect("kernels/builds.txt exists");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            ["whole", file] => (file.to_owned(), false),
            ["relocatable", file] => (file.to_owned(), true),
            _ => panic!("kernels/builds.txt: `{l}` is not `whole FILE` or `relocatable FILE`"),
        })
        .collect()
}

/// The -gencode values, one a line; `#` starts a comment.
#[cfg(feature = "cuda")]
fn gencode_list(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("kernels/gencode.txt exists");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// The file where `cargo xtask cuda-toolchain` writes the CUDA_HOME it installed, in its cache
/// (`$WCODEC_CACHE_DIR`, else `~/.cache/wcodec/cuda`).
#[cfg(feature = "cuda")]
fn cache_marker() -> Option<PathBuf> {
    cache_file("CUDA_HOME")
}

/// A file of `cargo xtask cuda-toolchain`'s cache.
#[cfg(feature = "cuda")]
fn cache_file(name: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("WCODEC_CACHE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/wcodec/cuda"),
    };
    Some(dir.join(name))
}

#[cfg(feature = "cuda")]
fn find_nvcc() -> Option<PathBuf> {
    let is_file = |p: PathBuf| p.is_file().then_some(p);
    if let Some(nvcc) = std::env::var_os("NVCC") {
        return is_file(PathBuf::from(nvcc));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        let home = std::env::var_os(var).map(PathBuf::from);
        if let Some(nvcc) = home.and_then(|h| is_file(h.join("bin/nvcc"))) {
            return Some(nvcc);
        }
    }
    let cached = cache_marker().and_then(|m| std::fs::read_to_string(m).ok());
    if let Some(nvcc) = cached.and_then(|h| is_file(PathBuf::from(h.trim()).join("bin/nvcc"))) {
        return Some(nvcc);
    }
    if let Some(nvcc) = is_file(PathBuf::from("/usr/local/cuda/bin/nvcc")) {
        return Some(nvcc);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).find_map(|dir| is_file(dir.join("nvcc")))
}
