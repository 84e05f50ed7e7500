//! `cargo xtask cuda-toolchain`: installs the pinned CUDA compiler into a cache outside git and
//! prints the CUDA_HOME that `cargo build -p wcodec-cuda --features cuda` then finds by itself.
//!
//! The compiler comes from NVIDIA's wheels on PyPI, pinned to the GPU machine's CUDA (13.0);
//! nvidia-nvvm is pinned too, or pip brings a newer one that nvcc 13.0 rejects. The cache is
//! `$WCODEC_CACHE_DIR`, else `~/.cache/wcodec/cuda`; the file `CUDA_HOME` in it names the
//! toolkit for crates/cuda/build.rs. Beside it goes libclang (the `libclang` wheel, pinned),
//! with which the build's bindgen reads kernels/wcodec_kernels.h; the file `LIBCLANG_PATH`
//! names its folder.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;

/// The CUDA release the kernels are built with (the GPU machine's driver runs CUDA 13.0).
pub const CUDA_VERSION: &str = "13.0";

/// The wheels of the toolchain, pinned to `CUDA_VERSION`.
const PACKAGES: &[&str] = &[
    "nvidia-cuda-nvcc==13.0.*",
    "nvidia-cuda-runtime==13.0.*",
    "nvidia-cuda-crt==13.0.*",
    "nvidia-nvvm==13.0.*",
];

/// The `libclang` wheel: libclang for bindgen (crates/cuda/build.rs), pinned.
const LIBCLANG_PACKAGE: &str = "libclang==18.1.1";

/// Where the toolchain is installed.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WCODEC_CACHE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").ok_or("neither WCODEC_CACHE_DIR nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache/wcodec/cuda"))
}

/// The installed toolkit (the folder with bin/nvcc), if the cache has one.
pub fn installed_home() -> Option<PathBuf> {
    let marker = cache_dir().ok()?.join("CUDA_HOME");
    let home = PathBuf::from(std::fs::read_to_string(marker).ok()?.trim());
    home.join("bin/nvcc").is_file().then_some(home)
}

/// nvcc as the build finds it: `$NVCC`, `$CUDA_HOME/bin`, the cache, `/usr/local/cuda`, PATH.
pub fn find_nvcc() -> Option<PathBuf> {
    let file = |p: PathBuf| p.is_file().then_some(p);
    if let Some(nvcc) = std::env::var_os("NVCC") {
        return file(PathBuf::from(nvcc));
    }
    std::env::var_os("CUDA_HOME")
        .and_then(|h| file(PathBuf::from(h).join("bin/nvcc")))
        .or_else(|| installed_home().map(|h| h.join("bin/nvcc")))
        .or_else(|| file(PathBuf::from("/usr/local/cuda/bin/nvcc")))
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?).find_map(|d| file(d.join("nvcc")))
        })
}

fn usage() -> String {
    "usage: cargo xtask cuda-toolchain [--force]\n\n\
     Installs nvcc and the CUDA runtime (CUDA 13.0 wheels from PyPI, with python3 -m venv and \
     pip) into $WCODEC_CACHE_DIR or ~/.cache/wcodec/cuda, and prints the CUDA_HOME to use.\n\
     --force  reinstall even if the cache has a toolchain"
        .into()
}

pub fn run(args: &[String]) -> Result<()> {
    let mut force = false;
    for a in args {
        match a.as_str() {
            "--force" => force = true,
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(());
            }
            other => return Err(format!("unknown argument {other}\n{}", usage()).into()),
        }
    }
    if let Some(home) = installed_home().filter(|_| !force) {
        ensure_libclang()?;
        return report(&home);
    }
    let cache = cache_dir()?;
    std::fs::create_dir_all(&cache)?;
    let venv = cache.join(format!("venv-{CUDA_VERSION}"));
    eprintln!("installing CUDA {CUDA_VERSION} (nvcc, runtime, crt, nvvm) into {}", venv.display());
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let download = "could not download the CUDA wheels from PyPI (is the network or PyPI \
                    reachable?)";
    let home = if check(Command::new(&python).args(["-m", "venv"]).arg(&venv), "python3 -m venv")
        .is_ok()
    {
        check(
            Command::new(venv.join("bin/pip")).args(["install", "--quiet"]).args(PACKAGES),
            download,
        )?;
        locate(&venv)
    } else {
        // No venv module (Debian without python3-venv): pip's --target into the cache.
        let site = cache.join(format!("site-{CUDA_VERSION}"));
        eprintln!("python3 -m venv failed; installing with pip --target {}", site.display());
        check(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                .arg("--target")
                .arg(&site)
                .args(PACKAGES),
            download,
        )?;
        Some(site.join("nvidia/cu13")).filter(|h| h.join("bin/nvcc").is_file())
    }
    .ok_or("the wheels installed, but no nvidia/cu13/bin/nvcc among them")?;
    std::fs::write(cache.join("CUDA_HOME"), home.to_string_lossy().as_bytes())?;
    ensure_libclang()?;
    report(&home)
}

/// libclang in the cache (installed beside the toolkit if it is not there yet), its folder
/// written to the file `LIBCLANG_PATH` of the cache and printed as `LIBCLANG_PATH=...`. A
/// failed download is a warning: the build then skips only its check of the header.
fn ensure_libclang() -> Result<()> {
    let cache = cache_dir()?;
    let find = || {
        let roots = [cache.join(format!("venv-{CUDA_VERSION}/lib")), cache.clone()];
        // <venv>/lib/python3.*/site-packages/clang/native, or <site>/clang/native.
        let dirs = roots.iter().filter_map(|r| std::fs::read_dir(r).ok()).flatten().flatten();
        dirs.flat_map(|e| ["site-packages/clang/native", "clang/native"].map(|d| e.path().join(d)))
            .find(|d| d.join("libclang.so").is_file())
    };
    if find().is_none() {
        eprintln!("installing {LIBCLANG_PACKAGE} (for bindgen) into {}", cache.display());
        let pip = cache.join(format!("venv-{CUDA_VERSION}/bin/pip"));
        let installed = if pip.is_file() {
            // Forced: a wheel recorded as installed whose files are gone is installed again.
            let args = ["install", "--quiet", "--force-reinstall", "--no-deps", LIBCLANG_PACKAGE];
            check(Command::new(&pip).args(args), "pip")
        } else {
            let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
            check(
                Command::new(&python)
                    .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                    .args(["--force-reinstall", "--no-deps", "--target"])
                    .arg(cache.join(format!("site-{CUDA_VERSION}")))
                    .arg(LIBCLANG_PACKAGE),
                "pip",
            )
        };
        if let Err(e) = installed {
            eprintln!(
                "warning: {LIBCLANG_PACKAGE} could not be installed ({e}): builds skip the \
                       check of kernels/wcodec_kernels.h against src/abi.rs"
            );
            return Ok(());
        }
    }
    let Some(dir) = find() else {
        eprintln!("warning: {LIBCLANG_PACKAGE} installed, but no clang/native/libclang.so in it");
        return Ok(());
    };
    std::fs::write(cache.join("LIBCLANG_PATH"), dir.to_string_lossy().as_bytes())?;
    println!("LIBCLANG_PATH={}", dir.display());
    Ok(())
}

fn check(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().map_err(|e| format!("{what}: {e}"))?;
    if !status.success() {
        return Err(format!("{what} failed ({status})").into());
    }
    Ok(())
}

/// `<venv>/lib/python3.*/site-packages/nvidia/cu13`, where the wheels put the toolkit.
fn locate(venv: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    lib.filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/nvidia/cu13"))
        .find(|p| p.join("bin/nvcc").is_file())
}

fn report(home: &Path) -> Result<()> {
    let version = Command::new(home.join("bin/nvcc")).arg("--version").output()?;
    let version = String::from_utf8_lossy(&version.stdout);
    let release = version.lines().find(|l| l.contains("release")).unwrap_or("").trim();
    println!("CUDA_HOME={}", home.display());
    eprintln!("nvcc: {release}");
    eprintln!(
        "crates/cuda/build.rs finds it through {}; \
         `cargo build -p wcodec-cuda --features cuda` now compiles the kernels",
        cache_dir()?.join("CUDA_HOME").display()
    );
    Ok(())
}
