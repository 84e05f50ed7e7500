//! The CLI on a file larger than its memory budget (`cargo xtask bench-large GIB`, run by
//! `bench`): a safetensors file of real int8 rows tiled up to the size asked for, compressed and
//! decompressed by the release `wcodec` binary, each run's wall time and peak resident memory
//! (from `wait4`), and the round trip compared byte for byte.
//!
//! Linux counts a child's peak RSS from before its `exec`, so it is at least this process's
//! own peak at the spawn: this runs in a small process of its own, and prints that floor.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::Result;

/// Bytes of each tensor of the generated file (whole rows of 384).
const TENSOR_BYTES: u64 = (128 << 20) / 384 * 384;
const COLS: u64 = 384;

/// `cargo xtask bench-large GIB`.
pub fn run(args: &[String]) -> Result<()> {
    let gib: f64 = args.first().ok_or("usage: cargo xtask bench-large GIB")?.parse()?;
    report(&crate::corpus::default_cache_dir()?, gib)
}

/// Builds the CLI, writes a `gib` GiB file next to the corpus, runs `wcodec compress` and
/// `wcodec decompress` on it and prints a table row each; removes what it wrote.
fn report(corpus: &Path, gib: f64) -> Result<()> {
    let root = crate::golden::project_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args(["build", "--quiet", "--release", "-p", "wcodec-cli"])
        .status()?;
    if !status.success() {
        return Err("building the CLI failed".into());
    }
    let cli = root.join("target/release/wcodec");
    let work = corpus.join("large-file");
    std::fs::create_dir_all(&work)?;
    let source = work.join("large.safetensors");
    let (wcz, back) = (work.join("large.wcz"), work.join("large.back.safetensors"));
    let result = (|| -> Result<()> {
        let len = write_tiled(&corpus.join("minilm-int8-per-tensor.safetensors"), &source, gib)?;
        println!(
            "\nLarge file: {:.2} GB of real int8 rows tiled into {} tensors of {:.0} MiB, through the \
             release CLI (default threads); peak RSS from wait4\n",
            len as f64 / 1e9,
            len / TENSOR_BYTES,
            TENSOR_BYTES as f64 / (1 << 20) as f64
        );
        // SAFETY: an all-zero `rusage` is a valid value for getrusage to overwrite.
        let mut own: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a pointer to a live local.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut own) };
        println!(
            "(the figures cannot be below this process's own peak, {:.0} MB)\n",
            own.ru_maxrss as f64 * 1024.0 / 1e6
        );
        println!("| step | seconds | MB/s | peak RSS MB |\n|---|---|---|---|");
        let compress = ["compress", "-q", "-f", path(&source), "-o", path(&wcz)];
        let (secs, rss) = run_measured(&cli, &compress)?;
        println!("| compress | {secs:.2} | {:.0} | {:.0} |", len as f64 / secs / 1e6, rss);
        let decompress = ["decompress", "-q", "-f", path(&wcz), "-o", path(&back)];
        let (secs, rss) = run_measured(&cli, &decompress)?;
        println!("| decompress | {secs:.2} | {:.0} | {:.0} |", len as f64 / secs / 1e6, rss);
        if !same_bytes(&source, &back)? {
            return Err("large file: the round trip differs".into());
        }
        println!(
            "\nratio {:.4}, round trip byte-identical",
            len as f64 / std::fs::metadata(&wcz)?.len() as f64
        );
        Ok(())
    })();
    for f in [&source, &wcz, &back] {
        let _ = std::fs::remove_file(f);
    }
    result
}

fn path(p: &Path) -> &str {
    p.to_str().expect("cache paths are UTF-8")
}

/// Writes a safetensors file of about `gib` GiB to `out`: tensors of `TENSOR_BYTES` of int8 rows
/// of 384, cut cyclically (from a different row each) from the 384-wide int8 tensors of
/// `source`. Returns the file's length.
fn write_tiled(source: &Path, out: &Path, gib: f64) -> Result<u64> {
    let bytes = std::fs::read(source)?;
    let layout = wcodec::container::read_layout(&bytes)?;
    let mut pool = Vec::new();
    for t in &layout.tensors {
        if t.dtype == wcodec::Dtype::I8 && t.dims.last() == Some(&COLS) {
            pool.extend_from_slice(&bytes[t.offset as usize..(t.offset + t.len) as usize]);
        }
    }
    if pool.is_empty() {
        return Err(format!("{}: no int8 tensors of 384 columns", source.display()).into());
    }
    let count = ((gib * (1u64 << 30) as f64) as u64 / TENSOR_BYTES).max(1);
    let mut header = String::from("{");
    for i in 0..count {
        let (a, b) = (i * TENSOR_BYTES, (i + 1) * TENSOR_BYTES);
        let sep = if i == 0 { "" } else { "," };
        let rows = TENSOR_BYTES / COLS;
        header += &format!(
            r#"{sep}"layers.{i}.weight":{{"dtype":"I8","shape":[{rows},{COLS}],"data_offsets":[{a},{b}]}}"#
        );
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    w.write_all(&(header.len() as u64).to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    for i in 0..count {
        let start = (i as usize * 7919 * COLS as usize) % pool.len();
        let mut left = TENSOR_BYTES as usize;
        let mut at = start;
        while left > 0 {
            let n = left.min(pool.len() - at);
            w.write_all(&pool[at..at + n])?;
            left -= n;
            at = (at + n) % pool.len();
        }
    }
    w.flush()?;
    Ok(8 + header.len() as u64 + count * TENSOR_BYTES)
}

/// Runs `cli args`, returns its wall time in seconds and its peak resident memory in MB.
fn run_measured(cli: &PathBuf, args: &[&str]) -> Result<(f64, f64)> {
    let start = Instant::now();
    let child = Command::new(cli).args(args).spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for (`child` is never waited on through std);
    // both pointers are to live locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = start.elapsed().as_secs_f64();
    if waited != pid {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()).into());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!("wcodec {args:?} failed (status {status:#x})").into());
    }
    // ru_maxrss is in KiB on Linux.
    Ok((secs, usage.ru_maxrss as f64 * 1024.0 / 1e6))
}

/// Whether two files hold the same bytes (read in chunks: constant memory).
fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 8 << 20], vec![0u8; 8 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}
