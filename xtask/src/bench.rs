//! `cargo xtask bench`: criterion benches of the coder and of whole tensors, then a report on
//! the real corpus: per tensor class the ratio, the order-0 bound, zstd -19 on the same bytes,
//! and encode / decode MB/s on one thread and on all threads.

use std::process::{Command, ExitCode};
use std::time::Instant;

use wcodec::{Directory, Dtype, EncodeOptions};

use crate::Result;

const USAGE: &str =
    "usage: cargo xtask bench [--report-only] [--quick] [--no-zstd] [--fast] [--large-gib N]
       cargo xtask bench --gpu [--dir DIR] [--anchors SCRIPT]
  --gpu          prepare a folder to run the GPU tests and benchmark on a GPU machine
                 (`cargo xtask bench --gpu --help`)
  --report-only  skip the criterion benches, run only the corpus report
  --quick        one timing run per figure instead of the median of five or more
  --no-zstd      skip the zstd reference (zstd -19 is slow)
  --fast         report the fast preset (`wcodec compress --fast`) instead of the defaults
  --large-gib N  size of the generated file the CLI's time and peak memory are measured on
                 (default 2; 0 skips it; it needs about 2.2 N GiB of disk for a moment)";

pub fn run(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--gpu") {
        if args.iter().any(|a| a == "-h" || a == "--help") {
            println!("{}", crate::gpu::USAGE);
            return Ok(());
        }
        return crate::gpu::prepare(args);
    }
    let mut report_only = false;
    let mut passthrough = Vec::new();
    let mut large_gib = 2.0f64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--report-only" => report_only = true,
            "--quick" | "--no-zstd" | "--fast" => passthrough.push(a.clone()),
            "--large-gib" => {
                let n = it.next().ok_or(format!("--large-gib N\n{USAGE}"))?;
                large_gib = n.parse().map_err(|_| format!("--large-gib {n}: not a number"))?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown option {other}\n{USAGE}").into()),
        }
    }
    let root = crate::golden::project_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if !report_only {
        let status = Command::new(&cargo)
            .current_dir(&root)
            .args(["bench", "-p", "wcodec-rans", "-p", "wcodec", "--", "--warm-up-time", "1"])
            .args(["--measurement-time", "3"])
            .status()?;
        if !status.success() {
            return Err("criterion benches failed".into());
        }
    }
    // The report itself runs optimised.
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args(["run", "--quiet", "--release", "-p", "xtask", "--", "bench-report"])
        .args(&passthrough)
        .status()?;
    if !status.success() {
        return Err("corpus report failed".into());
    }
    // In a process of its own: a child's peak RSS as the kernel reports it is at least its
    // parent's at the spawn, and the report's process holds the corpus.
    if large_gib > 0.0 {
        let status = Command::new(&cargo)
            .current_dir(&root)
            .args(["run", "--quiet", "--release", "-p", "xtask", "--", "bench-large"])
            .arg(large_gib.to_string())
            .status()?;
        if !status.success() {
            return Err("large-file run failed".into());
        }
    }
    Ok(())
}

/// One class of real tensors: a corpus file and how to read it.
struct Class {
    name: &'static str,
    file: &'static str,
    /// A raw tensor file (dtype, row length); `None` for safetensors and GGUF files.
    raw: Option<(Dtype, u64)>,
}

const CLASSES: &[Class] = &[
    Class { name: "MiniLM int8 per-tensor", file: "minilm-int8-per-tensor.safetensors", raw: None },
    Class { name: "MiniLM int8 per-row", file: "minilm-int8-per-row.safetensors", raw: None },
    Class {
        name: "SmolLM2 Q8_0 quants",
        file: "smollm2-q8_0-quants.i8",
        raw: Some((Dtype::I8, 576)),
    },
    Class {
        name: "SmolLM2 Q4_1 packed quants",
        file: "smollm2-q4_1-quants.u8",
        raw: Some((Dtype::U8, 288)),
    },
    Class { name: "MiniLM BF16", file: "minilm-bf16.safetensors", raw: None },
    Class { name: "MiniLM FP16", file: "minilm-f16.safetensors", raw: None },
    Class { name: "MiniLM FP8 E4M3", file: "minilm-f8e4m3.safetensors", raw: None },
    Class {
        name: "SmolLM2 Q4_1 GGUF (whole file)",
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        raw: None,
    },
];

/// Least time a figure of more than one run is timed over: a file of the corpus codes in 5-50
/// ms, and five such runs let a few milliseconds of another job on this shared host move the
/// median (two threads' encode of MiniLM int8 read 1.2-1.5x one thread's in some report runs,
/// 1.9-2.0x in `bench-encode` runs minutes apart).
const MIN_TIMED_SECS: f64 = 0.3;

/// MB/s of `bytes` processed by `f`, one timing a run after one warm-up, sorted: `runs` runs,
/// more while they add up to less than `MIN_TIMED_SECS` (at most 200).
fn timings(bytes: usize, runs: usize, mut f: impl FnMut()) -> Vec<f64> {
    f();
    let (mut speeds, mut total) = (Vec::new(), 0.0);
    while speeds.len() < runs || (runs > 1 && total < MIN_TIMED_SECS && speeds.len() < 200) {
        let t = Instant::now();
        f();
        let secs = t.elapsed().as_secs_f64();
        total += secs;
        speeds.push(bytes as f64 / secs / 1e6);
    }
    speeds.sort_by(f64::total_cmp);
    speeds
}

/// The median of [`timings`].
fn speed(bytes: usize, runs: usize, f: impl FnMut()) -> f64 {
    let speeds = timings(bytes, runs, f);
    speeds[speeds.len() / 2]
}

fn compress(source: &[u8], class: &Class, options: &EncodeOptions) -> Vec<u8> {
    match class.raw {
        Some((dtype, row)) => {
            let dims = [source.len() as u64 / row, row];
            wcodec::compress_raw(source, dtype, &dims, options).expect("compresses")
        }
        None => wcodec::compress(source, options).expect("compresses"),
    }
}

/// Runs `cargo xtask ARGS` again with the release profile; its exit status.
pub fn rerun_optimised(args: &[String]) -> ExitCode {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(crate::golden::project_root())
        .args(["run", "--quiet", "--release", "-p", "xtask", "--"])
        .args(args)
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: cargo run --release: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask bench-report` (run by `bench` in release mode).
pub fn report(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let zstd = !args.iter().any(|a| a == "--no-zstd");
    let runs = if quick { 1 } else { 5 };
    let dir = crate::corpus::default_cache_dir()?;
    if !dir.join(CLASSES[0].file).exists() {
        return Err(
            format!("no corpus in {}: run `cargo xtask corpus` first", dir.display()).into()
        );
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let all = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let fast = args.iter().any(|a| a == "--fast");
    let (options, preset) = match fast {
        true => (EncodeOptions::fast(), ", the fast preset (`--fast`)"),
        false => (EncodeOptions::default(), ""),
    };
    println!(
        "\nCorpus report ({}){preset}, {threads} threads, median of {runs} runs or more (at \
         least {MIN_TIMED_SECS} s a figure)",
        machine()
    );
    println!(
        "\n| data | MB | ratio | tensors ratio | order-0 bound | zstd -19 | enc MB/s 1T | enc MB/s {threads}T | dec MB/s 1T | dec MB/s {threads}T | zstd -19 dec MB/s | zstd -3 dec MB/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for class in CLASSES {
        let path = dir.join(class.file);
        let source = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let wcz = compress(&source, class, &options);
        let back = wcodec::decompress(&wcz).expect("decompresses");
        if back != source {
            return Err(format!("{}: round trip differs", class.name).into());
        }
        let directory = Directory::from_file_bytes(&wcz)?;
        let original: u64 = directory.tensors.iter().map(|t| t.source_len).sum();
        let stored: u64 = directory.tensors.iter().map(|t| t.stored_len()).sum();
        let bound: u64 = directory.tensors.iter().map(|t| t.order0_bytes).sum();
        let enc1 =
            one.install(|| speed(source.len(), runs, || drop(compress(&source, class, &options))));
        let encn =
            all.install(|| speed(source.len(), runs, || drop(compress(&source, class, &options))));
        // Decoded into one buffer reused from run to run, as zstd's bulk decoder below writes
        // into memory it does not clear: the allocator's zeroing of a fresh `Vec` is not the
        // decoder's time (`bench-decode` times `decompress`, allocation included).
        let mut out = vec![0u8; source.len()];
        let mut decode = || wcodec::decompress_into(&wcz, &mut out).expect("decompresses");
        let dec1 = one.install(|| speed(source.len(), runs, &mut decode));
        let decn = all.install(|| speed(source.len(), runs, &mut decode));
        let zstd_dec = |level: i32| -> Result<(f64, f64)> {
            let z = zstd::bulk::compress(&source, level)?;
            let dec = speed(source.len(), runs, || {
                drop(zstd::bulk::decompress(&z, source.len()).expect("zstd round trip"))
            });
            Ok((source.len() as f64 / z.len() as f64, dec))
        };
        let (zratio, zdec, z3dec) = if zstd {
            let ((r19, d19), (_, d3)) = (zstd_dec(19)?, zstd_dec(3)?);
            (format!("{r19:.4}"), format!("{d19:.0}"), format!("{d3:.0}"))
        } else {
            ("-".into(), "-".into(), "-".into())
        };
        println!(
            "| {} | {:.1} | {:.4} | {:.4} | {:.4} | {zratio} | {enc1:.0} | {encn:.0} | {dec1:.0} | {decn:.0} | {zdec} | {z3dec} |",
            class.name,
            source.len() as f64 / 1e6,
            source.len() as f64 / wcz.len() as f64,
            original as f64 / stored.max(1) as f64,
            original as f64 / bound.max(1) as f64,
        );
    }
    println!(
        "\nratio: whole file; tensors ratio: tensor bytes over their stored bytes; order-0 bound: \
         tensor bytes over the order-0 entropy of their planes (row classes can beat it)."
    );
    precision_report(&dir)
}

/// What the probability precision costs: for the single-byte classes, the bits of every
/// tensor's bytes coded with its own table normalised to 11, 12 or 14 bits, over the exact
/// order-0 entropy (the format allows 8..=12; 14 is for comparison).
fn precision_report(dir: &std::path::Path) -> Result<()> {
    println!("\n| data | loss at 11 bits | 12 bits | 14 bits |\n|---|---|---|---|");
    for class in CLASSES.iter().filter(|c| !c.name.contains("BF16") && !c.name.contains("FP16")) {
        if class.file.ends_with(".gguf") {
            continue;
        }
        let source = std::fs::read(dir.join(class.file))?;
        let spans: Vec<(usize, usize)> = match class.raw {
            Some(_) => vec![(0, source.len())],
            None => wcodec::container::read_layout(&source)?
                .tensors
                .iter()
                .filter(|t| t.dtype.size() == 1)
                .map(|t| (t.offset as usize, (t.offset + t.len) as usize))
                .collect(),
        };
        let (mut exact, mut cost) = (0.0, [0.0; 3]);
        for (a, b) in spans {
            let h = wcodec::rans::histogram(&source[a..b]);
            exact += wcodec::rans::entropy_bits(&h);
            for (c, bits) in cost.iter_mut().zip([11u8, 12, 14]) {
                *c += wcodec::rans::cost_bits(&h, &wcodec::rans::normalize(&h, bits), bits);
            }
        }
        let loss = |c: f64| 100.0 * (c / exact - 1.0);
        println!(
            "| {} | {:.3}% | {:.3}% | {:.3}% |",
            class.name,
            loss(cost[0]),
            loss(cost[1]),
            loss(cost[2])
        );
    }
    Ok(())
}

/// What `bench-decode` and `bench-encode` time.
#[derive(Clone, Copy, PartialEq)]
pub enum Timed {
    Decode,
    Encode,
}

/// `cargo xtask bench-decode` / `bench-encode`: decode (`wcodec::decompress`) or encode
/// (`wcodec::compress`, default options) speed alone, whole files in memory, on the corpus, one
/// and all threads, best and median of `--runs` (default 9; more while they add up to less
/// than `MIN_TIMED_SECS`) after a warm-up. `--only TEXT` keeps the classes whose name contains
/// TEXT; `--save DIR` also writes each class's .wcz there (for the CLI), `--from DIR` reads
/// them from there instead of compressing (decode only); `--loop N`
/// decodes or encodes the first kept class N times on one thread (`--loop-threads T`: T) and
/// reports nothing else (for a profiler). `--into`: decode into one buffer reused from run to
/// run (`decompress_into`, as the corpus report times it) instead of a fresh `Vec`;
/// `--for-gpu`: files made with the GPU preset instead of the defaults.
pub fn speed_report(args: &[String], what: Timed) -> Result<()> {
    let mut runs = 9;
    let mut only = None;
    let mut save = None;
    let mut looping = None;
    let mut loop_threads = 1;
    let mut into = false;
    let mut for_gpu = false;
    let mut fast = false;
    let mut max_tables = None;
    let mut prob_bits = None;
    let mut predictors = None;
    let mut tile = None;
    let mut from = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--runs" => runs = value()?.parse()?,
            "--only" => only = Some(value()?),
            "--save" => save = Some(std::path::PathBuf::from(value()?)),
            "--from" => from = Some(std::path::PathBuf::from(value()?)),
            "--loop" => looping = Some(value()?.parse::<usize>()?),
            "--loop-threads" => loop_threads = value()?.parse::<usize>()?,
            "--into" => into = true,
            "--for-gpu" => for_gpu = true,
            "--fast" => fast = true,
            "--max-tables" => max_tables = Some(value()?.parse::<u8>()?),
            "--prob-bits" => prob_bits = Some(value()?.parse::<u8>()?),
            "--predictors" => {
                let names = value()?;
                let find = |name: &str| {
                    let p = wcodec::Predictor::ALL.into_iter().find(|p| p.name() == name);
                    p.ok_or(format!("unknown predictor {name:?}"))
                };
                predictors = Some(names.split(',').map(find).collect::<Result<Vec<_>, _>>()?);
            }
            "--tile" => {
                let v = value()?;
                let (r, c) = v.split_once('x').ok_or(format!("--tile ROWSxCOLS, not {v}"))?;
                tile = Some(wcodec::predict::TileConfig { rows: r.parse()?, cols: c.parse()? });
            }
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    let dir = crate::corpus::default_cache_dir()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let all = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let options = match (for_gpu, fast) {
        (true, _) => EncodeOptions::for_gpu(),
        (false, true) => EncodeOptions::fast(),
        (false, false) => EncodeOptions::default(),
    };
    let options = EncodeOptions {
        max_tables: max_tables.unwrap_or(options.max_tables),
        prob_bits: prob_bits.unwrap_or(options.prob_bits),
        fit_tiles: options.fit_tiles && tile.is_none(),
        tile: tile.unwrap_or(options.tile),
        predictors: predictors.unwrap_or(options.predictors),
        ..options
    };
    let classes =
        CLASSES.iter().filter(|c| only.as_ref().is_none_or(|o| c.name.contains(o.as_str())));
    let verb = if what == Timed::Decode { "dec" } else { "enc" };
    if looping.is_none() {
        let title = if what == Timed::Decode { "Decode" } else { "Encode" };
        println!(
            "\n{title} speed ({}), MB/s of original bytes, best / median of {runs} runs or more \
             (at least {MIN_TIMED_SECS} s a figure)",
            machine()
        );
        println!(
            "\n| data | MB | {verb} 1T best | {verb} 1T median | {verb} {threads}T best | {verb} {threads}T median |"
        );
        println!("|---|---|---|---|---|---|");
    }
    for class in classes {
        let path = dir.join(class.file);
        let source = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let wcz = match &from {
            Some(from) => std::fs::read(from.join(format!("{}.wcz", class.file)))?,
            None => compress(&source, class, &options),
        };
        if let Some(save) = &save {
            std::fs::create_dir_all(save)?;
            std::fs::write(save.join(format!("{}.wcz", class.file)), &wcz)?;
        }
        let reused = std::sync::Mutex::new(vec![0u8; if into { source.len() } else { 0 }]);
        let once = || match what {
            Timed::Decode if into => {
                let mut out = reused.lock().expect("not poisoned");
                wcodec::decompress_into(&wcz, &mut out).expect("decompresses");
            }
            Timed::Decode => drop(wcodec::decompress(&wcz)),
            Timed::Encode => drop(compress(&source, class, &options)),
        };
        if let Some(n) = looping {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(loop_threads).build()?;
            pool.install(|| (0..n).for_each(|_| once()));
            return Ok(());
        }
        if wcodec::decompress(&wcz)? != source {
            return Err(format!("{}: round trip differs", class.name).into());
        }
        let timed = |pool: &rayon::ThreadPool| -> (f64, f64) {
            let v = pool.install(|| timings(source.len(), runs, once));
            (v[v.len() - 1], v[v.len() / 2])
        };
        let (b1, m1) = timed(&one);
        let (bn, mn) = timed(&all);
        println!(
            "| {} | {:.1} | {b1:.0} | {m1:.0} | {bn:.0} | {mn:.0} |",
            class.name,
            source.len() as f64 / 1e6
        );
    }
    Ok(())
}

fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.to_owned()))
        .and_then(|l| l.split(':').nth(1).map(|s| s.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".into())
}
