//! `cargo xtask fuzz`: seeds the corpora of the fuzz targets in fuzz/ with small valid files,
//! then runs each target for a fixed time with cargo-fuzz (libFuzzer) and prints, per target,
//! the executions, the corpus it grew and whether it found anything.
//!
//! cargo-fuzz needs a nightly toolchain; without one, the stable toolchain is used with
//! `RUSTC_BOOTSTRAP=1`. A finding is left in `fuzz/artifacts/<target>/` and fails the command;
//! reproduce it with `cargo +nightly fuzz run <target> <file>` from the repository root, then
//! make it a named regression test in the crate where the bug is.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use wcodec::container::write_safetensors;
use wcodec::predict::TileConfig;
use wcodec::{Dtype, EncodeOptions};

use crate::Result;

const USAGE: &str = "usage: cargo xtask fuzz [--seconds N] [--no-seed] [TARGET...]
  --seconds N  run each target for N seconds (default 60)
  --no-seed    do not (re)write the seed files of the corpora
  TARGET       run only these (default: all of them, one after the other)";

/// (target, libFuzzer's -max_len for it): every target of fuzz/Cargo.toml.
const TARGETS: &[(&str, usize)] = &[
    ("directory", 16384),
    ("decompress", 16384),
    ("rans_decode", 4096),
    ("predict", 4096),
    ("safetensors", 8192),
    ("gguf", 8192),
    ("roundtrip", 4096),
    ("gpu_plan", 16384),
];

pub fn run(args: &[String]) -> Result<()> {
    let mut seconds = 60u64;
    let mut seed = true;
    let mut chosen = Vec::new();
    let mut args = args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = args.next().and_then(|s| s.parse().ok()).ok_or("--seconds needs N")?;
            }
            "--no-seed" => seed = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            name if TARGETS.iter().any(|(t, _)| *t == name) => chosen.push(name.to_owned()),
            other => return Err(format!("unknown option or target {other}\n{USAGE}").into()),
        }
    }
    if chosen.is_empty() {
        chosen = TARGETS.iter().map(|(t, _)| (*t).to_owned()).collect();
    }
    let root = crate::golden::project_root();
    let fuzz_dir = root.join("fuzz");
    if seed {
        write_seeds(&fuzz_dir.join("corpus"))?;
    }
    let toolchain = Toolchain::find()?;
    let status = toolchain.cargo_fuzz(&fuzz_dir).args(["build", "-s", "none"]).status()?;
    if !status.success() {
        return Err("cargo fuzz build failed".into());
    }
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for target in &chosen {
        let max_len = TARGETS.iter().find(|(t, _)| t == target).map_or(4096, |(_, m)| *m);
        eprintln!("==> fuzz {target} for {seconds} s");
        let start = Instant::now();
        let output = toolchain
            .cargo_fuzz(&fuzz_dir)
            .args(["run", "-s", "none", target, "--"])
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-max_len={max_len}"))
            .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"])
            .output()?;
        let log = String::from_utf8_lossy(&output.stderr);
        let stats = final_stats(&log);
        let stat = |k: &str| stats.get(k).copied().unwrap_or(0);
        let corpus = count_files(&fuzz_dir.join("corpus").join(target));
        let verdict = if output.status.success() {
            "ok".to_owned()
        } else {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            failed.push(target.clone());
            format!("FOUND (see fuzz/artifacts/{target}/)")
        };
        let secs = start.elapsed().as_secs_f64();
        rows.push(format!(
            "{target:<12} {:>12} {:>9.0} {:>7} {:>8}  {verdict}",
            stat("stat::number_of_executed_units"),
            stat("stat::number_of_executed_units") as f64 / secs,
            corpus,
            stat("stat::peak_rss_mb"),
        ));
    }
    println!(
        "{:<12} {:>12} {:>9} {:>7} {:>8}  result",
        "target", "executions", "exec/s", "corpus", "rss MB"
    );
    for row in rows {
        println!("{row}");
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzzing found inputs that fail: {}", failed.join(", ")).into())
    }
}

/// How cargo-fuzz is run: `cargo +nightly fuzz`, or stable cargo with RUSTC_BOOTSTRAP=1.
enum Toolchain {
    Nightly,
    Bootstrap,
}

impl Toolchain {
    fn find() -> Result<Toolchain> {
        let has_fuzz = Command::new("cargo").args(["fuzz", "--version"]).output();
        if !has_fuzz.is_ok_and(|o| o.status.success()) {
            return Err("cargo-fuzz is not installed: cargo install cargo-fuzz".into());
        }
        let nightly = Command::new("cargo").args(["+nightly", "--version"]).output();
        Ok(if nightly.is_ok_and(|o| o.status.success()) {
            Toolchain::Nightly
        } else {
            eprintln!("no nightly toolchain: using stable with RUSTC_BOOTSTRAP=1");
            Toolchain::Bootstrap
        })
    }

    /// `cargo fuzz` in `fuzz_dir` (the rustup proxy, not $CARGO, which names one toolchain).
    fn cargo_fuzz(&self, fuzz_dir: &Path) -> Command {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(fuzz_dir).env_remove("RUSTUP_TOOLCHAIN").env_remove("CARGO");
        match self {
            Toolchain::Nightly => cmd.arg("+nightly"),
            Toolchain::Bootstrap => cmd.env("RUSTC_BOOTSTRAP", "1"),
        };
        cmd.arg("fuzz");
        cmd
    }
}

/// libFuzzer's `stat::name: value` lines (printed with -print_final_stats=1).
fn final_stats(log: &str) -> BTreeMap<String, u64> {
    log.lines()
        .filter(|l| l.starts_with("stat::"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(':')?;
            Some((k.trim().to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Writes small valid inputs into `corpus/<target>/seed-*`: compressed files for the
/// directory and decompression targets, safetensors and GGUF files for the readers.
fn write_seeds(corpus: &Path) -> Result<()> {
    let small =
        |rows, cols| EncodeOptions { tile: TileConfig { rows, cols }, ..Default::default() };
    let mut wcz = Vec::new();
    for (name, file) in containers()? {
        if file.starts_with(b"GGUF") {
            write(&corpus.join("gguf"), &name, &file)?;
        } else {
            write(&corpus.join("safetensors"), &name, &file)?;
        }
        wcz.push((name, wcodec::compress(&file, &small(4, 16))?));
    }
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // Rows of two kinds (narrow and wide spread): several tables with a row map.
    let classes: Vec<u8> = (0..64 * 128)
        .map(|i| if (i / 128) % 2 == 0 { (next() % 3) as u8 } else { next() as u8 })
        .collect();
    let ramp: Vec<u8> = (0..24 * 40).map(|i| (i % 40 + i / 40) as u8).collect();
    let noise: Vec<u8> = (0..16 * 16 * 4).map(|_| next() as u8).collect();
    let zeros = vec![0u8; 4096];
    let raws: [RawSeed; 5] = [
        ("classes-i8", &classes, Dtype::I8, &[64, 128], small(8, 64)),
        ("ramp-u8", &ramp, Dtype::U8, &[24, 40], small(8, 8)),
        ("noise-f32", &noise, Dtype::F32, &[16, 16], small(8, 8)),
        ("ramp-bf16", &ramp, Dtype::BF16, &[12, 40], small(4, 16)),
        ("zeros-i8", &zeros, Dtype::I8, &[4096], small(1, 1024)),
    ];
    for (name, bytes, dtype, dims, options) in raws {
        wcz.push((name.to_owned(), wcodec::compress_raw(bytes, dtype, dims, &options)?));
    }
    for (name, file) in &wcz {
        write(&corpus.join("directory"), name, file)?;
        write(&corpus.join("decompress"), name, file)?;
        write(&corpus.join("gpu_plan"), name, file)?;
    }
    Ok(())
}

/// (name, bytes, dtype, dims, options) of a raw tensor seed.
type RawSeed<'a> = (&'a str, &'a [u8], Dtype, &'a [u64], EncodeOptions);

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
    Ok(())
}

/// Small safetensors and GGUF files: (name, bytes).
fn containers() -> Result<Vec<(String, Vec<u8>)>> {
    let i8s: Vec<u8> = (0..4 * 8).map(|i| (i * 37 % 11) as u8).collect();
    let bf16: Vec<u8> = (0..3 * 5 * 2).map(|i| (i * 13 % 7) as u8 + 60).collect();
    let f32s: Vec<u8> = (0..2 * 2 * 4).map(|i| i as u8).collect();
    let metadata: BTreeMap<String, String> = [("format".to_owned(), "pt".to_owned())].into();
    let st = write_safetensors(
        &[
            ("a.weight", Dtype::I8, &[4, 8], &i8s),
            ("b.weight", Dtype::BF16, &[3, 5], &bf16),
            ("c.bias", Dtype::F32, &[2, 2], &f32s),
            ("d.empty", Dtype::U8, &[0, 3], &[]),
        ],
        Some(&metadata),
    )?;
    let empty = write_safetensors(&[], None)?;
    let mut out = vec![("st-mixed".to_owned(), st), ("st-empty".to_owned(), empty)];
    let q8_0: Vec<u8> = (0..34).map(|i| (i * 5) as u8).collect();
    out.push((
        "gguf-mixed".to_owned(),
        gguf(&[
            ("tok.q8_0", &[32], 8, &q8_0),
            ("norm", &[4], 0, &f32s),
            ("w.i8", &[8, 4], 24, &i8s),
        ]),
    ));
    Ok(out)
}

/// A GGUF v3 file with one string and one alignment key and `tensors` (name, ne, ggml type,
/// data), each at a 32-byte aligned offset.
fn gguf(tensors: &[(&str, &[u64], u32, &[u8])]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&2u64.to_le_bytes());
    string(&mut out, "general.architecture");
    out.extend_from_slice(&8u32.to_le_bytes());
    string(&mut out, "llama");
    string(&mut out, "general.alignment");
    out.extend_from_slice(&4u32.to_le_bytes());
    out.extend_from_slice(&32u32.to_le_bytes());
    let mut rel = 0u64;
    let mut offsets = Vec::new();
    for (name, ne, ggml_type, data) in tensors {
        string(&mut out, name);
        out.extend_from_slice(&(ne.len() as u32).to_le_bytes());
        for d in *ne {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&ggml_type.to_le_bytes());
        out.extend_from_slice(&rel.to_le_bytes());
        offsets.push(rel);
        rel = (rel + data.len() as u64).next_multiple_of(32);
    }
    let start = out.len().next_multiple_of(32);
    for ((_, _, _, data), rel) in tensors.iter().zip(offsets) {
        out.resize(start + rel as usize, 0);
        out.extend_from_slice(data);
    }
    out
}

/// The seed corpora are built from the library: keep them valid.
#[cfg(test)]
mod tests {
    #[test]
    fn seeds_are_valid_files() {
        for (name, file) in super::containers().unwrap() {
            let layout = wcodec::container::read_layout(&file).unwrap();
            assert!(!layout.tensors.is_empty() || name == "st-empty", "{name}");
        }
    }

    #[test]
    fn final_stats_are_parsed() {
        let stats =
            super::final_stats("x\nstat::number_of_executed_units: 1234\nstat::peak_rss_mb: 56\n");
        assert_eq!(stats["stat::number_of_executed_units"], 1234);
        assert_eq!(stats["stat::peak_rss_mb"], 56);
    }
}
