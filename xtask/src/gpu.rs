//! `cargo xtask bench --gpu`: prepares a folder to run the GPU check on a machine with an
//! NVIDIA GPU and no Rust toolchain: the CUDA builds of the GPU tests, of `gpu_bench` and of the
//! CLI, slices of the real corpus, the test data, and `run.sh` (xtask/gpu/run.sh), which runs
//! the tests against the CPU oracle, the benchmark, the CLI on the GPU and compute-sanitizer
//! there. With `--anchors SCRIPT` the folder also gets that script and the wheels it needs
//! (nvCOMP, DFloat11), so that they are timed in the same run on the same bytes.

use std::path::{Path, PathBuf};
use std::process::Command;

use wcodec::container::{read_safetensors, write_safetensors};
use wcodec::format::Dtype;

use crate::Result;

pub const USAGE: &str = "usage: cargo xtask bench --gpu [--dir DIR] [--anchors SCRIPT]
  --dir DIR         the folder to fill (default .gpu at the repository root; keep it out of git)
  --anchors SCRIPT  an anchors script run as `SCRIPT BINS_DIR 512 OUT.json` (nvCOMP, DFloat11
                    on the same bytes); its wheels are downloaded into the folder with pip";

/// The run script that goes into the folder.
const RUN_SH: &str = include_str!("../gpu/run.sh");

/// Wheels of the anchors (pure-Python or manylinux builds, any Python 3).
const ANCHOR_WHEELS: &[&str] = &[
    "nvidia-nvcomp-cu13==6.0.0.12",
    "nvidia-libnvcomp-cu13==6.0.0.12",
    "dahuffman==0.4.2",
    "dfloat11==0.5.0",
];

/// The tensors of the MiniLM slice: the position and token-type embeddings and encoder layers
/// 0-3, each int8 tensor with its scale (7.3 MB).
fn in_slice(name: &str) -> bool {
    let layer = |n: &str| (0..4).any(|l| n.starts_with(&format!("encoder.layer.{l}.")));
    name.starts_with("embeddings.position_embeddings.")
        || name.starts_with("embeddings.token_type_embeddings.")
        || layer(name)
}

/// Rows of SmolLM2's Q8_0 quants in the slice (rows of 576: 8.4 MB).
const Q8_0_ROWS: usize = 14_563;
/// Bytes of the BF16 slice: the slice's BF16 matrices of 384 columns, end to end.
const BF16_BYTES: usize = 4 << 20;

pub fn prepare(args: &[String]) -> Result<()> {
    let root = crate::golden::project_root();
    let mut dir = root.join(".gpu");
    let mut anchors: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--gpu" => {}
            "--dir" => dir = PathBuf::from(it.next().ok_or(format!("--dir DIR\n{USAGE}"))?),
            "--anchors" => {
                anchors =
                    Some(PathBuf::from(it.next().ok_or(format!("--anchors SCRIPT\n{USAGE}"))?));
            }
            other => return Err(format!("unknown option {other}\n{USAGE}").into()),
        }
    }
    if crate::cuda::installed_home().is_none() && std::env::var_os("CUDA_HOME").is_none() {
        return Err("no CUDA compiler: run `cargo xtask cuda-toolchain` first".into());
    }
    let corpus = crate::corpus::default_cache_dir()?;
    if !corpus.join("minilm-int8-per-tensor.safetensors").is_file() {
        return Err(
            format!("no corpus in {}: run `cargo xtask corpus` first", corpus.display()).into()
        );
    }

    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    println!("building the CUDA binaries (release, --features cuda)");
    let tests = cargo_executable(
        &root,
        &["test", "-p", "wcodec-cuda", "--features", "cuda", "--release", "--no-run"],
        "gpu",
    )?;
    let bench = cargo_executable(
        &root,
        &[
            "build",
            "-p",
            "wcodec-cuda",
            "--features",
            "cuda",
            "--release",
            "--example",
            "gpu_bench",
        ],
        "gpu_bench",
    )?;
    let cli = cargo_executable(
        &root,
        &["build", "-p", "wcodec-cli", "--features", "cuda", "--release", "--bin", "wcodec"],
        "wcodec",
    )?;
    for (from, name) in [(&tests, "gpu_tests"), (&bench, "gpu_bench"), (&cli, "wcodec")] {
        copy_binary(from, &bin.join(name))?;
    }

    write_data(&corpus, &dir.join("data"))?;
    // The checked-in SmolLM2 GGUF slice: a GGUF file's blocks as the benchmark's fourth source.
    std::fs::copy(root.join("tests/data/smollm2-slice.gguf"), dir.join("data/smollm2-slice.gguf"))?;
    // Tensors of SmolLM2's real shapes, where they were cut into the corpus cache
    // (`tests/python/make_gguf_slice.py --layers 2 ... <corpus>/smollm2-layers.gguf`).
    let layers = corpus.join("smollm2-layers.gguf");
    if layers.is_file() {
        std::fs::copy(&layers, dir.join("data/smollm2-layers.gguf"))?;
    } else {
        println!("no {}: the benchmark runs without GGUF tensors of real shapes", layers.display());
    }
    let test_data = dir.join("tests-data");
    std::fs::create_dir_all(&test_data)?;
    for entry in std::fs::read_dir(root.join("tests/data"))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), test_data.join(entry.file_name()))?;
        }
    }
    let run = dir.join("run.sh");
    std::fs::write(&run, RUN_SH)?;
    if let Some(script) = &anchors {
        std::fs::copy(script, dir.join("anchors.py"))
            .map_err(|e| format!("{}: {e}", script.display()))?;
        let wheels = dir.join("wheels");
        std::fs::create_dir_all(&wheels)?;
        let status = Command::new("python3")
            .args(["-m", "pip", "download", "-q", "--only-binary=:all:", "--no-deps"])
            .args(["--platform", "manylinux_2_28_x86_64", "-d"])
            .arg(&wheels)
            .args(ANCHOR_WHEELS)
            .status()?;
        if !status.success() {
            return Err("pip could not download the anchors' wheels".into());
        }
    } else {
        // A folder reused without --anchors runs no stale anchors.
        let _ = std::fs::remove_file(dir.join("anchors.py"));
    }
    println!("\n{} is ready ({} MB).", dir.display(), dir_bytes(&dir)? >> 20);
    println!(
        "Copy it to the GPU machine and run there:\n  OUT=gpu-out bash {}/run.sh",
        dir_name(&dir)
    );
    println!("(logs and summary.txt in gpu-out; BENCH_ARGS passes options to gpu_bench)");
    Ok(())
}

/// Runs cargo with `args` and `--message-format=json`, and returns the executable it built
/// for the target named `target`.
fn cargo_executable(root: &Path, args: &[&str], target: &str) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(root)
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(format!("cargo {} failed", args.join(" ")).into());
    }
    // One JSON object a line; the artifact's line names its target and its executable.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let name = format!("\"name\":\"{target}\"");
    stdout
        .lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\"") && l.contains(&name))
        .find_map(|l| {
            let start = l.find("\"executable\":\"")? + "\"executable\":\"".len();
            let end = start + l[start..].find('"')?;
            Some(PathBuf::from(&l[start..end]))
        })
        .ok_or_else(|| format!("cargo built no executable for {target}").into())
}

/// Copies a binary, without its debug information where `strip` is there (a third the size).
fn copy_binary(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)?;
    let _ = Command::new("strip").arg(to).status();
    Ok(())
}

/// The benchmark's data (`gpu_bench DATA_DIR`): slices of the real corpus.
fn write_data(corpus: &Path, data: &Path) -> Result<()> {
    std::fs::create_dir_all(data)?;
    let int8 = std::fs::read(corpus.join("minilm-int8-per-tensor.safetensors"))?;
    let layout = read_safetensors(&int8)?;
    let mut names: Vec<&str> = layout.tensors.iter().map(|t| t.name.as_str()).collect();
    names.retain(|n| in_slice(n));
    names.sort_unstable();
    let tensor =
        |name: &str| layout.tensors.iter().find(|t| t.name == name).expect("a listed name");
    let tensors: Vec<(&str, Dtype, &[u64], &[u8])> = names
        .iter()
        .map(|&n| {
            let t = tensor(n);
            (n, t.dtype, t.dims.as_slice(), &int8[t.offset as usize..(t.offset + t.len) as usize])
        })
        .collect();
    std::fs::write(data.join("minilm-int8.safetensors"), write_safetensors(&tensors, None)?)?;

    let q8 = std::fs::read(corpus.join("smollm2-q8_0-quants.i8"))?;
    let q8 = q8.get(..Q8_0_ROWS * 576).ok_or("the Q8_0 quants are shorter than the slice")?;
    std::fs::write(data.join("smollm2-q8_0-quants.i8"), q8)?;

    let bf16 = std::fs::read(corpus.join("minilm-bf16.safetensors"))?;
    let layout = read_safetensors(&bf16)?;
    let mut matrices: Vec<_> = layout
        .tensors
        .iter()
        .filter(|t| in_slice(&t.name) && t.dims.len() == 2 && t.dims[1] == 384)
        .collect();
    matrices.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::with_capacity(BF16_BYTES);
    for t in matrices {
        out.extend_from_slice(&bf16[t.offset as usize..(t.offset + t.len) as usize]);
    }
    out.truncate(BF16_BYTES);
    std::fs::write(data.join("minilm-bf16.bin"), out)?;
    println!("wrote the benchmark's data to {}", data.display());
    Ok(())
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { dir_bytes(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}

fn dir_name(dir: &Path) -> String {
    dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slice_is_the_embeddings_and_the_first_four_layers() {
        assert!(in_slice("embeddings.position_embeddings.weight"));
        assert!(in_slice("embeddings.token_type_embeddings.weight.scale"));
        assert!(in_slice("encoder.layer.3.output.dense.weight"));
        assert!(!in_slice("encoder.layer.4.output.dense.weight"));
        assert!(!in_slice("encoder.layer.10.output.dense.weight"));
        assert!(!in_slice("embeddings.word_embeddings.weight"));
    }
}
