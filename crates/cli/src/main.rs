//! The `wcodec` command: compress, decompress, inspect and verify model files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};

use indicatif::{ProgressBar, ProgressStyle};
use wcodec::predict::TileConfig;
use wcodec::{Archive, Dtype, EncodeOptions, Error, InputKind, Predictor};

// Encoding allocates and frees tensor-sized buffers; mimalloc reuses them where the system
// allocator returns them to the kernel and pays page faults to get them back.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_CODES: &str = "Exit codes: 0 success, 2 usage error (bad arguments, output exists), \
3 invalid or corrupt input, 4 I/O error, 5 GPU unavailable, 130 interrupted (Ctrl-C).";

#[derive(Parser)]
#[command(name = "wcodec", version, about = "Lossless compression of LLM weights", after_help = EXIT_CODES)]
struct Cli {
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Refuse files that claim to decode to more than N times their size (a guard against
    /// decompression bombs; raise it for trusted files of near-constant data).
    #[arg(long, global = true, value_name = "N", default_value_t = wcodec::Limits::DEFAULT_MAX_EXPANSION)]
    max_expansion: u64,
    #[command(subcommand)]
    command: Command,
}

/// The decoding limits of this run (`--max-expansion`).
static LIMITS: std::sync::OnceLock<wcodec::Limits> = std::sync::OnceLock::new();

fn limits() -> &'static wcodec::Limits {
    LIMITS.get_or_init(wcodec::Limits::default)
}

#[derive(Subcommand)]
enum Command {
    /// Compress a .safetensors or .gguf file (or a raw tensor) into a .wcz.
    Compress(CompressArgs),
    /// Decompress a .wcz back into the original file, byte-identical.
    Decompress {
        input: PathBuf,
        /// Output path (default: the input without its .wcz extension).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Overwrite an existing output.
        #[arg(short, long)]
        force: bool,
        /// Where to decode: cpu, or cuda (GPU 0; needs a build with the `cuda` feature).
        #[arg(long, value_enum, default_value_t = Device::Cpu)]
        device: Device,
    },
    /// Time the decode of a .wcz: GB/s of decompressed bytes (median), and the ratio.
    Bench {
        file: PathBuf,
        /// Where to decode: cpu, or cuda (GPU 0, timed with CUDA events).
        #[arg(long, value_enum, default_value_t = Device::Cpu)]
        device: Device,
        /// Timed runs (the median is reported).
        #[arg(long, default_value_t = 20)]
        iters: usize,
        /// cuda: decode the file this many times over in each launch [default: enough to
        /// write 256 MiB, so that the GPU's cache does not hold the output].
        #[arg(long, default_value_t = 0)]
        copies: usize,
        /// cuda: time loading the tensors into GPU memory end to end instead (the file in host
        /// memory; plan, upload, decode, checks; wall clock; launched as the bytes arrive and
        /// once after the upload, the load's timeline, each step alone), against uploading them
        /// uncompressed, and decoding them from the file kept compressed in GPU memory (all of
        /// them, and the largest alone: into new memory, into a buffer, prepared once).
        #[arg(long)]
        load: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show the tensors of a .wcz: dtype, shape, ratio, bits per weight, bound, predictors.
    Info {
        file: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Group by layer type (embeddings, attention q/k/v/o, MLP gate/up/down, norms, lm
        /// head): ratio against the source file and against the pre-quantization original.
        #[arg(long)]
        by_layer_type: bool,
    },
    /// Quantize FP32/FP16/BF16 safetensors to INT8 with f32 scales (LOSSY; reports the error).
    Quantize {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Scale granularity: per-tensor or per-channel (one scale per output row).
        #[arg(long, value_name = "per-tensor|per-channel")]
        int8: String,
        /// Overwrite an existing output.
        #[arg(short, long)]
        force: bool,
    },
    /// Decode every tensor and check every checksum, writing nothing.
    Verify { file: PathBuf },
    /// Decode one tensor (reading only its bytes) and write its raw bytes.
    Extract {
        file: PathBuf,
        /// The tensor's name, as `wcodec info` lists it.
        tensor: String,
        /// Output path (default: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Overwrite an existing output.
        #[arg(short, long)]
        force: bool,
    },
}

/// Where a command decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Device {
    Cpu,
    Cuda,
}

#[derive(Args)]
struct CompressArgs {
    input: PathBuf,
    /// Output path (default: the input with .wcz appended).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Overwrite an existing output.
    #[arg(short, long)]
    force: bool,
    /// The input is one raw tensor (needs --dtype and --shape).
    #[arg(long, requires_all = ["dtype", "shape"])]
    raw: bool,
    /// Element type of a raw tensor: i8, u8, bf16, f16, f32, ...
    #[arg(long)]
    dtype: Option<String>,
    /// Shape of a raw tensor, comma-separated (e.g. 4096,4096).
    #[arg(long)]
    shape: Option<String>,
    /// Tile size as ROWSxCOLS [default: 256x256; 128x128 fitted per plane with --for-gpu].
    #[arg(long)]
    tile: Option<String>,
    /// Probability precision in bits, 8..=12 [default: 12; 11 with --for-gpu].
    #[arg(long)]
    prob_bits: Option<u8>,
    /// Most frequency tables per plane [default: 8; 1 with --for-gpu or --fast, and for GGUF
    /// block types, whose values are scaled block by block].
    #[arg(long)]
    max_tables: Option<u8>,
    /// Tune for decoding on a GPU: 128x128 tiles fitted per plane, 11-bit probabilities, one
    /// table per plane and no prediction, for 1-4% less ratio (MiniLM int8 1.584 against
    /// 1.646, BF16 1.495 against 1.507). Tiles are 64 rows high in one-byte tensors small
    /// enough for the GPU to decode all their units at once (a 4096 x 4096 int8 layer alone:
    /// 35 us against 51 on an H100) and taller where coding saves little (quants); `--tile`
    /// fixes them. GGUF block types are coded whole, each byte of a block with its field's
    /// 10-bit table, which the GPU writes in place (SmolLM2's layers 1.5x as fast as split into
    /// fields, for a 0.3-0.4% larger file; slower to encode and to decode on a CPU).
    #[arg(long, conflicts_with = "fast")]
    for_gpu: bool,
    /// Encode 1.1-1.8x as fast for a file up to 1.3% larger (MiniLM int8 1.625 against 1.646,
    /// BF16 1.502 against 1.507, GGUF 0.03%): one table per plane and no prediction.
    #[arg(long)]
    fast: bool,
    /// Predictors to choose from, comma-separated (none,left,top,avg,paeth) [default: all
    /// five; none with --for-gpu or --fast].
    #[arg(long)]
    predictors: Option<String>,
}

fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

fn parse_tile(s: &str) -> Result<TileConfig, Error> {
    let (r, c) = s.split_once(['x', 'X']).ok_or_else(|| usage("--tile must be ROWSxCOLS"))?;
    let parse =
        |v: &str| v.trim().parse::<u32>().map_err(|_| usage(format!("bad tile side {v:?}")));
    Ok(TileConfig { rows: parse(r)?, cols: parse(c)? })
}

fn parse_predictors(s: &str) -> Result<Vec<Predictor>, Error> {
    s.split(',')
        .map(|name| {
            Predictor::ALL
                .into_iter()
                .find(|p| p.name() == name.trim())
                .ok_or_else(|| usage(format!("unknown predictor {name:?}")))
        })
        .collect()
}

fn progress_bar(quiet: bool, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

fn default_output(input: &Path, compress: bool) -> Result<PathBuf, Error> {
    let name = input.to_string_lossy();
    if compress {
        Ok(PathBuf::from(format!("{name}.wcz")))
    } else {
        name.strip_suffix(".wcz")
            .map(PathBuf::from)
            .ok_or_else(|| usage("input does not end in .wcz: name the output with -o"))
    }
}

fn compress(args: CompressArgs, quiet: bool) -> Result<(), Error> {
    let kind = if args.raw {
        let name = args.dtype.as_deref().unwrap_or_default();
        let dtype =
            Dtype::from_short_name(name).ok_or_else(|| usage(format!("unknown dtype {name:?}")))?;
        let dims = args
            .shape
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(|d| d.trim().parse::<u64>().map_err(|_| usage(format!("bad dimension {d:?}"))))
            .collect::<Result<Vec<_>, _>>()?;
        InputKind::Raw { dtype, dims }
    } else {
        InputKind::Container
    };
    let preset = match (args.for_gpu, args.fast) {
        (true, _) => EncodeOptions::for_gpu(),
        (false, true) => EncodeOptions::fast(),
        (false, false) => EncodeOptions::default(),
    };
    let options = EncodeOptions {
        tile: args.tile.as_deref().map(parse_tile).transpose()?.unwrap_or(preset.tile),
        // A tile given is the tile taken.
        fit_tiles: preset.fit_tiles && args.tile.is_none(),
        prob_bits: args.prob_bits.unwrap_or(preset.prob_bits),
        max_tables: args.max_tables.unwrap_or(preset.max_tables),
        block_tables: preset.block_tables,
        predictors: match &args.predictors {
            Some(names) => parse_predictors(names)?,
            None => preset.predictors,
        },
        sampled_counts: preset.sampled_counts,
        whole_blocks: preset.whole_blocks,
    };
    options.validate()?;
    let output = match args.output {
        Some(o) => o,
        None => default_output(&args.input, true)?,
    };
    if args.input.is_dir() {
        if args.raw {
            return Err(usage("--raw takes a file, not a directory"));
        }
        let bar = progress_bar(quiet, "compress");
        let report = wcodec::shards::compress_dir(
            &args.input,
            &output,
            &options,
            args.force,
            &mut |_, d, t| {
                bar.set_length(t);
                bar.set_position(d);
            },
        )?;
        bar.finish_and_clear();
        if !quiet {
            eprintln!(
                "{} -> {}: {} shards coded, {} files copied, {} -> {} bytes, ratio {:.4}",
                args.input.display(),
                output.display(),
                report.coded.len(),
                report.copied.len(),
                report.source_bytes,
                report.output_bytes,
                report.source_bytes as f64 / report.output_bytes.max(1) as f64
            );
        }
        return Ok(());
    }
    remove_temporaries_on_interrupt(&output);
    let bar = progress_bar(quiet, "compress");
    let start = Instant::now();
    let report =
        wcodec::compress_path(&args.input, &output, &kind, &options, args.force, &mut |d, t| {
            bar.set_length(t);
            bar.set_position(d);
        })?;
    bar.finish_and_clear();
    if !quiet {
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "{} -> {}: {} tensors, {} -> {} bytes, ratio {:.4}, {:.0} MB/s",
            args.input.display(),
            output.display(),
            report.tensors,
            report.source_len,
            report.compressed_len,
            report.source_len as f64 / report.compressed_len.max(1) as f64,
            report.source_len as f64 / secs / 1e6,
        );
    }
    Ok(())
}

fn decompress(
    input: PathBuf,
    output: Option<PathBuf>,
    force: bool,
    device: Device,
    quiet: bool,
) -> Result<(), Error> {
    let output = match output {
        Some(o) => o,
        None => default_output(&input, false)?,
    };
    if device == Device::Cuda && input.is_dir() {
        return Err(usage("--device cuda takes a .wcz file, not a directory"));
    }
    if input.is_dir() {
        let bar = progress_bar(quiet, "decompress");
        let report = wcodec::shards::decompress_dir(&input, &output, force, &mut |_, d, t| {
            bar.set_length(t);
            bar.set_position(d);
        })?;
        bar.finish_and_clear();
        if !quiet {
            eprintln!(
                "{} -> {}: {} shards decoded, {} files copied, {} bytes",
                input.display(),
                output.display(),
                report.coded.len(),
                report.copied.len(),
                report.output_bytes
            );
        }
        return Ok(());
    }
    remove_temporaries_on_interrupt(&output);
    let bar = progress_bar(quiet, "decompress");
    let start = Instant::now();
    let mut progress = |d, t| {
        bar.set_length(t);
        bar.set_position(d);
    };
    let len = match device {
        Device::Cpu => {
            wcodec::decompress_path_with_limits(&input, &output, force, limits(), &mut progress)?
        }
        Device::Cuda => wcodec::decompress_path_gpu(&input, &output, force, &mut progress)?,
    };
    bar.finish_and_clear();
    if !quiet {
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "{} -> {}: {len} bytes, {:.0} MB/s",
            input.display(),
            output.display(),
            len as f64 / secs / 1e6
        );
        if device == Device::Cuda {
            note_for_the_gpu(&input);
        }
    }
    Ok(())
}

/// Says on stderr when `file` was made with settings that decode slowly on a GPU.
fn note_for_the_gpu(file: &Path) {
    if let Ok(archive) = Archive::open(file)
        && let Some(note) = wcodec::gpu_note(archive.directory())
    {
        eprintln!("wcodec: note: {note}");
    }
}

fn bench(
    file: PathBuf,
    device: Device,
    iters: usize,
    copies: usize,
    json: bool,
) -> Result<(), Error> {
    let report = match device {
        Device::Cuda => {
            let report = wcodec::bench_gpu(&file, iters, copies)?;
            note_for_the_gpu(&file);
            report
        }
        Device::Cpu => {
            let archive = Archive::open(&file)?;
            let tensors = &archive.directory().tensors;
            let output_bytes: u64 = tensors.iter().map(|t| t.source_len).sum();
            let mut times = Vec::new();
            for _ in 0..=iters.max(1) {
                let start = Instant::now();
                for t in tensors {
                    std::hint::black_box(archive.decode(t)?);
                }
                times.push(start.elapsed().as_secs_f64());
            }
            times.remove(0); // the warm-up
            times.sort_by(f64::total_cmp);
            let median_s = times[times.len() / 2];
            wcodec::GpuBench {
                device: "cpu".into(),
                copies: 1,
                output_bytes,
                compressed_bytes: tensors.iter().map(|t| t.stored_len()).sum(),
                median_s,
                gbps: output_bytes as f64 / median_s / 1e9,
                ratio: output_bytes as f64 / archive.file_len().max(1) as f64,
            }
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report).expect("serialisable"));
    } else {
        println!(
            "{}: {}: {:.1} GB/s decompressed (median {:.3} ms for {} bytes, {} copies), ratio {:.4}",
            file.display(),
            report.device,
            report.gbps,
            report.median_s * 1e3,
            report.output_bytes,
            report.copies,
            report.ratio
        );
    }
    Ok(())
}

fn load_bench(file: PathBuf, iters: usize, json: bool) -> Result<(), Error> {
    let r = wcodec::load_gpu(&file, iters)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r).expect("serialisable"));
        return Ok(());
    }
    let ms = |s: f64| s * 1e3;
    println!(
        "{}: {}: {} tensor bytes ({} compressed) loaded into GPU memory in {:.1} ms, {:.1} \
         GB/s (median)",
        file.display(),
        r.device,
        r.tensor_bytes,
        r.staged_bytes,
        ms(r.load_s),
        r.load_gbps,
    );
    println!(
        "  launched while the compressed bytes upload; launched once after the upload: {:.1} ms",
        ms(r.load_once_s)
    );
    if !r.streamed_marks.is_empty() {
        println!("  a load as its threads went (from its start):");
        for (mark, seconds) in &r.streamed_marks {
            println!("    {mark}: {:.2} ms", ms(*seconds));
        }
    }
    println!("  the steps of a load launched once, each timed alone:");
    for (step, seconds) in &r.steps {
        println!("    {step}: {:.2} ms", ms(*seconds));
    }
    println!(
        "  uncompressed, the same tensors upload in {:.1} ms through pinned windows ({:.1} \
         GB/s), {:.1} ms in one copy from ordinary memory ({:.1} GB/s)",
        ms(r.raw_upload_s),
        r.raw_upload_gbps,
        ms(r.raw_pageable_s),
        r.raw_pageable_gbps
    );
    println!(
        "  kept compressed in GPU memory ({} bytes, uploaded in {:.1} ms): every tensor decoded \
         from there in {:.1} ms ({:.1} GB/s)",
        r.kept_bytes,
        ms(r.keep_s),
        ms(r.kept_decode_s),
        r.kept_decode_gbps
    );
    if let Some((name, bytes, [host, kept, into, prepared, queued])) = &r.largest {
        println!(
            "  the largest tensor ({name}, {bytes} bytes) alone: {:.2} ms from host memory, \
             {:.2} ms from the kept file, {:.2} ms from there into a buffer allocated once, \
             {:.3} ms through a prepared decode ({:.3} ms a launch queued 10 at a time)",
            ms(*host),
            ms(*kept),
            ms(*into),
            ms(*prepared),
            ms(*queued)
        );
    }
    Ok(())
}

fn info(file: PathBuf, json: bool) -> Result<(), Error> {
    // Listing decodes nothing: no expansion limit.
    let archive = Archive::open_with_limits(&file, &wcodec::Limits::NONE)?;
    let summaries = archive.summaries();
    let dir = archive.directory();
    let original: u64 = summaries.iter().map(|s| s.original_bytes).sum();
    let stored: u64 = summaries.iter().map(|s| s.stored_bytes).sum();
    let bound: u64 = dir.tensors.iter().map(|t| t.order0_bytes).sum();
    let mut mix = [0u64; 5];
    for s in &summaries {
        for (m, p) in mix.iter_mut().zip(s.predictors) {
            *m += p;
        }
    }
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    if json {
        let doc = serde_json::json!({
            "file": file,
            "file_bytes": archive.file_len(),
            "source_kind": dir.source_kind.name(),
            "source_bytes": dir.source_len,
            "ratio": ratio(dir.source_len, archive.file_len()),
            "tensor_bytes": original,
            "tensor_stored_bytes": stored,
            "tensor_ratio": ratio(original, stored),
            "order0_bound_ratio": ratio(original, bound),
            "gaps_bytes": dir.gaps.len(),
            "gaps_stored_bytes": archive.gaps_stored_len(),
            "predictors": Archive::predictor_names().iter().zip(mix).map(|(n, c)| (n.to_string(), c)).collect::<std::collections::BTreeMap<_, _>>(),
            "tensors": summaries,
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("serialisable"));
        return Ok(());
    }
    println!(
        "{:<48} {:>7} {:>18} {:>12} {:>7} {:>6} {:>7}  predictors n/l/t/a/p  tables",
        "tensor", "dtype", "shape", "bytes", "ratio", "bits", "bound"
    );
    for s in &summaries {
        let shape = s.shape.iter().map(u64::to_string).collect::<Vec<_>>().join("x");
        let p = s.predictors;
        println!(
            "{:<48} {:>7} {:>18} {:>12} {:>7.4} {:>6.3} {:>7.4}  {}/{}/{}/{}/{}  {}",
            s.name,
            s.dtype,
            shape,
            s.original_bytes,
            s.ratio,
            s.bits_per_weight,
            s.order0_bound_ratio,
            p[0],
            p[1],
            p[2],
            p[3],
            p[4],
            s.tables
        );
    }
    println!(
        "total: {} tensors ({}), {} -> {} bytes in tensors, ratio {:.4} (order-0 bound {:.4}); \
         file {} -> {} bytes, ratio {:.4}",
        summaries.len(),
        dir.source_kind.name(),
        original,
        stored,
        ratio(original, stored),
        ratio(original, bound),
        dir.source_len,
        archive.file_len(),
        ratio(dir.source_len, archive.file_len()),
    );
    let names = Archive::predictor_names();
    let units: u64 = mix.iter().sum();
    let parts: Vec<String> = names
        .iter()
        .zip(mix)
        .map(|(n, c)| format!("{n} {c} ({:.1}%)", 100.0 * ratio(c, units)))
        .collect();
    println!("predictor wins over {units} tiles: {}", parts.join(", "));
    println!(
        "other bytes of the source (header, metadata, padding): {} -> {} bytes",
        dir.gaps.len(),
        archive.gaps_stored_len()
    );
    Ok(())
}

fn layer_report(file: PathBuf, json: bool) -> Result<(), Error> {
    // Listing decodes nothing: no expansion limit.
    let archive = Archive::open_with_limits(&file, &wcodec::Limits::NONE)?;
    let rows = archive.layer_report();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("serialisable"));
        return Ok(());
    }
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    println!(
        "{:<12} {:>7} {:>14} {:>14} {:>14} {:>10} {:>10}",
        "layer type", "tensors", "original", "source", "stored", "vs source", "vs orig"
    );
    let print_row = |r: &wcodec::LayerRow| {
        println!(
            "{:<12} {:>7} {:>14} {:>14} {:>14} {:>10.4} {:>10.4}",
            r.layer,
            r.tensors,
            r.original_bytes,
            r.source_bytes,
            r.stored_bytes,
            ratio(r.source_bytes, r.stored_bytes),
            ratio(r.original_bytes, r.stored_bytes)
        )
    };
    let mut total = wcodec::LayerRow { layer: "total", ..Default::default() };
    for r in &rows {
        print_row(r);
        total.tensors += r.tensors;
        total.original_bytes += r.original_bytes;
        total.source_bytes += r.source_bytes;
        total.stored_bytes += r.stored_bytes;
    }
    print_row(&total);
    Ok(())
}

fn quantize(input: PathBuf, output: PathBuf, int8: &str, force: bool) -> Result<(), Error> {
    use wcodec::quantize::{Granularity, quantize_int8};
    let granularity = match int8 {
        "per-tensor" => Granularity::PerTensor,
        "per-channel" => Granularity::PerChannel,
        other => {
            return Err(usage(format!("--int8 takes per-tensor or per-channel, not {other:?}")));
        }
    };
    if !force && output.exists() {
        return Err(Error::OutputExists { path: output });
    }
    let source = wcodec::read_input(&input)?;
    let (bytes, report) = quantize_int8(&source, granularity)?;
    wcodec::write_file(&output, force, &bytes)?;
    eprintln!(
        "{} -> {}: {} tensors quantized to int8 {int8} (lossy), {} copied; \
         max abs error {:.6}, mean abs error {:.6}",
        input.display(),
        output.display(),
        report.tensors.len(),
        report.copied,
        report.max_abs_error(),
        report.mean_abs_error()
    );
    Ok(())
}

fn extract(file: PathBuf, name: &str, output: Option<PathBuf>, force: bool) -> Result<(), Error> {
    let archive = Archive::open_with_limits(&file, limits())?;
    let tensor = archive.find(name)?;
    let bytes = archive.decode(tensor)?;
    match output {
        Some(path) => wcodec::write_file(&path, force, &bytes),
        None => {
            use std::io::{IsTerminal, Write};
            let mut stdout = std::io::stdout().lock();
            if stdout.is_terminal() {
                return Err(usage("refusing to write binary tensor bytes to a terminal: use -o"));
            }
            stdout
                .write_all(&bytes)
                .and_then(|()| stdout.flush())
                .map_err(|source| Error::Io { path: "(stdout)".into(), source })
        }
    }
}

fn verify(file: PathBuf, quiet: bool) -> Result<(), Error> {
    let archive = Archive::open_with_limits(&file, limits())?;
    let bar = progress_bar(quiet, "verify");
    archive.verify(&mut |d, t| {
        bar.set_length(t);
        bar.set_position(d);
    })?;
    bar.finish_and_clear();
    println!(
        "{}: OK ({} tensors, {} bytes)",
        file.display(),
        archive.directory().tensors.len(),
        archive.directory().source_len
    );
    Ok(())
}

fn run(cli: Cli) -> Result<(), Error> {
    let _ = LIMITS.set(wcodec::Limits { max_expansion: cli.max_expansion });
    if let Some(n) = cli.threads {
        if n == 0 {
            return Err(usage("--threads must be at least 1"));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| usage(format!("cannot start {n} threads: {e}")))?;
    }
    match cli.command {
        Command::Compress(args) => compress(args, cli.quiet),
        Command::Decompress { input, output, force, device } => {
            decompress(input, output, force, device, cli.quiet)
        }
        Command::Bench { file, device: Device::Cuda, iters, load: true, json, .. } => {
            load_bench(file, iters, json)
        }
        Command::Bench { file, device: Device::Cpu, load: true, .. } => Err(usage(format!(
            "{}: --load times the load into GPU memory: give --device cuda",
            file.display()
        ))),
        Command::Bench { file, device, iters, copies, json, .. } => {
            bench(file, device, iters, copies, json)
        }
        Command::Info { file, json, by_layer_type: true } => layer_report(file, json),
        Command::Info { file, json, by_layer_type: false } => info(file, json),
        Command::Quantize { input, output, int8, force } => quantize(input, output, &int8, force),
        Command::Verify { file } => verify(file, cli.quiet),
        Command::Extract { file, tensor, output, force } => extract(file, &tensor, output, force),
    }
}

/// The file a command reads: input errors (exit code 3) name it.
#[allow(unreachable_patterns)]
fn input_of(command: &Command) -> Option<&Path> {
    match command {
        Command::Compress(args) => Some(&args.input),
        Command::Decompress { input, .. } | Command::Quantize { input, .. } => Some(input),
        Command::Info { file, .. } | Command::Verify { file } | Command::Bench { file, .. } => {
            Some(file)
        }
        _ => None,
    }
}

/// The one line printed for `e`: invalid input is prefixed with the input's path (I/O
/// errors and existing outputs name their own path).
fn message(e: &Error, input: Option<&Path>) -> String {
    let text = e.to_string().replace(['\n', '\r'], " ");
    match input {
        Some(path) if e.exit_code() == 3 => format!("{}: {text}", path.display()),
        _ => text,
    }
}

/// On Ctrl-C or SIGTERM, removes this process's temporary outputs beside `output` (named with
/// `wcodec::temp_prefix`) and exits with 130: an interrupted run leaves nothing under the
/// target name, nor beside it. (SIGKILL cannot be caught: it may leave a `.wcodec-<pid>-*.tmp`.)
fn remove_temporaries_on_interrupt(output: &Path) {
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let prefix = wcodec::temp_prefix();
    let _ = ctrlc::set_handler(move || {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix) && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        eprintln!("wcodec: interrupted");
        std::process::exit(130);
    });
}

fn main() -> ExitCode {
    wcodec::disable_transparent_huge_pages();
    wcodec::default_sigpipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("wcodec: error: {first} (see wcodec --help)");
            return ExitCode::from(2);
        }
    };
    let input = input_of(&cli.command).map(Path::to_owned);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wcodec: error: {}", message(&e, input.as_deref()));
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
