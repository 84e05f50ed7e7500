//! Compiles kernels/*.cu with nvcc (through `cc`) when the `cuda` feature is on and nvcc is
//! found, and then sets `cfg(wcodec_kernels)`. Otherwise the crate builds its stub, whose calls
//! return `CudaError::NotAvailable`; with the feature on, a cargo warning says why.
//!
//! nvcc is looked for in `$NVCC`, `$CUDA_HOME/bin`, `$CUDA_PATH/bin`, the toolchain that
//! `cargo xtask cuda-toolchain` installs (`$WCODEC_CACHE_DIR/cuda` or `~/.cache/wcodec/cuda`),
//! `/usr/local/cuda/bin` and `PATH`. The GPU targets come from kernels/gencode.txt.

#[cfg(feature = "cuda")]
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(wcodec_kernels)");
    println!("cargo::rerun-if-changed=build.rs");
    for var in ["NVCC", "CUDA_HOME", "CUDA_PATH", "WCODEC_CACHE_DIR", "HOME", "PATH"] {
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
    let mut build = cc::Build::new();
    // Device code is always optimised (no -G in debug builds); -lineinfo keeps profiles readable.
    // cc finds nvcc (and probes its family) through NVCC and PATH: point both at the one found.
    let mut path = vec![cuda_home.join("bin")];
    path.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    let path = std::env::join_paths(path).expect("PATH entries without separators");
    build.cuda(true).cudart("static").env("NVCC", &nvcc).env("PATH", path).include(&kernels);
    build.debug(false).opt_level(3);
    for gencode in gencode_list(&kernels.join("gencode.txt")) {
        build.flag("-gencode").flag(&gencode);
    }
    build.flag("-std=c++17").flag("-lineinfo").warnings(true);
    for source in &sources {
        build.file(source);
    }
    build.compile("wcodec_kernels");
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
    let dir = match std::env::var_os("WCODEC_CACHE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/wcodec/cuda"),
    };
    Some(dir.join("CUDA_HOME"))
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
