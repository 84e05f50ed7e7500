//! GPU decode benchmark on real weights: ratio, GB/s of decompressed bytes, the launch shapes
//! and tile sizes the GPU wants, one 4096 x 4096 int8 layer's decode time (and what it is made
//! of: launches of units of every length), and the copy
//! bandwidth that bounds it all, from one process on one card.
//!
//! usage: gpu_bench DATA_DIR [--mb 512] [--bins DIR] [--json FILE] [--quick]
//!        [--settings TILE:BITS:TABLES[:fit],...] [--predictors all|none|none-left-top] [--no-layer]
//!        [--compact auto|never|BYTES] [--layer-only]
//!
//! DATA_DIR holds `minilm-int8.safetensors` (whole int8 tensors of all-MiniLM-L6-v2, per-tensor
//! absmax) and `smollm2-q8_0-quants.i8` (raw int8 quants of SmolLM2's Q8_0 token embedding,
//! rows of 576), optionally `minilm-bf16.bin`, `smollm2-slice.gguf` (a GGUF file of Q8_0,
//! Q4_1 and F32 tensors, whose blocks keep scales beside quants) and `smollm2-layers.gguf` (two
//! whole layers of SmolLM2 and 4096 rows of its embedding: tensors of the model's real shapes;
//! `tests/python/make_gguf_slice.py --layers 2`). Each is compressed here with
//! the CPU encoder at several tile sizes, then decoded on the GPU `copies` times over in one launch (separate
//! copies of the compressed bytes into separate outputs) so that at least `--mb` MiB are
//! written. `--bins DIR` writes the tensors' bytes as .bin files for the nvCOMP/DFloat11
//! anchors, so that they measure the same bytes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use wcodec_cuda::{
    BenchOptions, BenchReport, CompactTables, CudaDecoder, LaunchConfig, Plan, PlanOptions,
};
use wcodec_encode::EncodeOptions;
use wcodec_format::{Directory, Dtype, Predictor};
use wcodec_predict::TileConfig;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Args {
    data: PathBuf,
    mb: u64,
    bins: Option<PathBuf>,
    json: Option<PathBuf>,
    quick: bool,
    /// Ratios only, no GPU.
    dry: bool,
    /// A few launches of a few settings, for a profiler.
    profile: bool,
    /// With `--profile`: these launch shapes (variant,warps,blocks_per_sm,units_per_block;...)
    /// on the one-table 64x128 settings instead of the decoder's own shape.
    profile_configs: Vec<LaunchConfig>,
    /// `--settings 64x128:11:1,128x128:11:1:fit,...`: only these encoder settings (tile, prob
    /// bits, tables, tiles fitted per plane).
    only: Vec<Setting>,
    /// `--no-layer`: skip the single-layer latency table.
    no_layer: bool,
    /// `--layer-only`: only the single-layer tables (no throughput table).
    layer_only: bool,
    /// `--variants 1,4,6`: the kernel variants swept (default `SWEPT`).
    variants: Vec<u32>,
    /// `--predictors`: the predictors the encoder may choose (default all five).
    predictors: Vec<Predictor>,
    /// `--compact auto|never|BYTES`: `PlanOptions::compact_tables` (BYTES: `Above`).
    compact: CompactTables,
}

fn args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        data: PathBuf::from(
            it.next()
                .ok_or("usage: gpu_bench DATA_DIR [--mb N] [--bins DIR] [--json FILE] [--quick]")?,
        ),
        mb: 512,
        bins: None,
        json: None,
        quick: false,
        dry: false,
        profile: false,
        profile_configs: Vec::new(),
        only: Vec::new(),
        no_layer: false,
        layer_only: false,
        variants: SWEPT.to_vec(),
        predictors: Predictor::ALL.to_vec(),
        compact: CompactTables::Auto,
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--mb" => a.mb = it.next().ok_or("--mb N")?.parse()?,
            "--bins" => a.bins = Some(PathBuf::from(it.next().ok_or("--bins DIR")?)),
            "--json" => a.json = Some(PathBuf::from(it.next().ok_or("--json FILE")?)),
            "--quick" => a.quick = true,
            "--dry" => a.dry = true,
            "--profile" => a.profile = true,
            "--no-layer" => a.no_layer = true,
            "--layer-only" => a.layer_only = true,
            "--compact" => {
                a.compact = match it.next().as_deref() {
                    Some("auto") => CompactTables::Auto,
                    Some("never") => CompactTables::Never,
                    Some(n) => CompactTables::Above(n.parse()?),
                    None => return Err("--compact auto|never|BYTES".into()),
                };
            }
            "--predictors" => {
                a.predictors = match it.next().as_deref() {
                    Some("all") => Predictor::ALL.to_vec(),
                    Some("none") => vec![Predictor::None],
                    Some("none-left-top") => vec![Predictor::None, Predictor::Left, Predictor::Top],
                    _ => return Err("--predictors all|none|none-left-top".into()),
                };
            }
            "--variants" => {
                a.variants = it
                    .next()
                    .ok_or("--variants V,...")?
                    .split(',')
                    .map(str::parse)
                    .collect::<std::result::Result<_, _>>()?;
            }
            "--settings" => {
                let usage = "--settings TILE:BITS:TABLES[:fit][:whole|:split],...";
                for s in it.next().ok_or(usage)?.split(',') {
                    let parts: Vec<&str> = s.split(':').collect();
                    let [tile, bits, tables, ref flags @ ..] = parts[..] else {
                        return Err(format!("{usage}: {s}").into());
                    };
                    if flags.iter().any(|f| !["fit", "whole", "split"].contains(f)) {
                        return Err(format!("{usage}: {s}").into());
                    }
                    let (r, c) = tile.split_once('x').ok_or("--settings: tile RxC")?;
                    a.only.push(Setting {
                        tile: (r.parse()?, c.parse()?),
                        prob_bits: bits.parse()?,
                        max_tables: tables.parse()?,
                        fit_tiles: flags.contains(&"fit"),
                        whole_blocks: flags.contains(&"whole"),
                    });
                }
            }
            "--configs" => {
                for c in it.next().ok_or("--configs V,W,B,U;...")?.split(';') {
                    let v: Vec<u32> =
                        c.split(',').map(str::parse).collect::<std::result::Result<_, _>>()?;
                    let [variant, warps_per_block, blocks_per_sm, units_per_block] = v[..] else {
                        return Err(format!("--configs: {c} is not V,W,B,U").into());
                    };
                    a.profile_configs.push(LaunchConfig {
                        variant,
                        warps_per_block,
                        blocks_per_sm,
                        units_per_block,
                    });
                }
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(a)
}

/// Compresses a source with given encoder settings into a .wcz.
type Compress = Box<dyn Fn(&EncodeOptions) -> Result<Vec<u8>>>;

/// One real-data source: a name, its source bytes and how to compress them.
struct Source {
    name: &'static str,
    /// Bytes of the tensors (what the anchors compress).
    tensor_bytes: Vec<u8>,
    compress: Compress,
}

/// A container file as a source: compressed whole, its tensors that `timed` keeps as the bytes
/// the anchors compress.
fn file_source(
    name: &'static str,
    file: Vec<u8>,
    timed: impl Fn(&wcodec_container::SourceTensor) -> bool,
) -> Result<Source> {
    let layout = wcodec_container::read_layout(&file)?;
    let tensor_bytes: Vec<u8> = layout
        .tensors
        .iter()
        .filter(|t| timed(t))
        .flat_map(|t| file[t.offset as usize..(t.offset + t.len) as usize].to_vec())
        .collect();
    Ok(Source {
        name,
        tensor_bytes,
        compress: Box::new(move |o| {
            Ok(wcodec_encode::compress_file(&file, &layout, o, Vec::new(), &mut |_| {})?)
        }),
    })
}

fn sources(dir: &Path) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    let st = std::fs::read(dir.join("minilm-int8.safetensors"))?;
    out.push(file_source("minilm-int8-per-tensor", st, |t| t.dtype == Dtype::I8)?);
    let q = std::fs::read(dir.join("smollm2-q8_0-quants.i8"))?;
    let rows = (q.len() / 576) as u64;
    let q = q[..rows as usize * 576].to_vec();
    let q2 = q.clone();
    out.push(Source {
        name: "smollm2-q8_0-quants",
        tensor_bytes: q,
        compress: Box::new(move |o| {
            Ok(wcodec_encode::compress_raw(&q2, Dtype::I8, &[rows, 576], o)?)
        }),
    });
    if let Ok(gguf) = std::fs::read(dir.join("smollm2-slice.gguf")) {
        out.push(file_source("smollm2-gguf-slice", gguf, |_| true)?);
    }
    // Tensors of the model's real shapes: two whole layers and 4096 rows of the embedding.
    if let Ok(gguf) = std::fs::read(dir.join("smollm2-layers.gguf")) {
        out.push(file_source("smollm2-gguf-layers", gguf, |_| true)?);
    }
    if let Ok(b) = std::fs::read(dir.join("minilm-bf16.bin")) {
        let rows = (b.len() / 768) as u64;
        let b = b[..rows as usize * 768].to_vec();
        let b2 = b.clone();
        out.push(Source {
            name: "minilm-bf16",
            tensor_bytes: b,
            compress: Box::new(move |o| {
                Ok(wcodec_encode::compress_raw(&b2, Dtype::BF16, &[rows, 384], o)?)
            }),
        });
    }
    Ok(out)
}

/// Encoder settings of a benchmark row.
#[derive(Clone, Copy, Debug)]
struct Setting {
    tile: (u32, u32),
    prob_bits: u8,
    max_tables: u8,
    /// `EncodeOptions::fit_tiles` (`compress --for-gpu` without `--tile`).
    fit_tiles: bool,
    /// `EncodeOptions::whole_blocks`: GGUF blocks coded whole (column classes), not split.
    whole_blocks: bool,
}

impl Setting {
    const fn new(tile: (u32, u32), prob_bits: u8, max_tables: u8) -> Setting {
        Setting { tile, prob_bits, max_tables, fit_tiles: false, whole_blocks: false }
    }

    /// The GPU preset's settings (`EncodeOptions::for_gpu`, prediction aside).
    const FOR_GPU: Setting = Setting {
        tile: (128, 128),
        prob_bits: 11,
        max_tables: 1,
        fit_tiles: true,
        whole_blocks: true,
    };

    /// The tile column: `128x128`, `128x128 fitted`, and `whole` for GGUF blocks coded whole.
    fn tile_label(&self) -> String {
        let fitted = if self.fit_tiles { " fitted" } else { "" };
        let whole = if self.whole_blocks { " whole" } else { "" };
        format!("{}x{}{fitted}{whole}", self.tile.0, self.tile.1)
    }

    fn options(&self, predictors: &[Predictor]) -> EncodeOptions {
        EncodeOptions {
            tile: TileConfig { rows: self.tile.0, cols: self.tile.1 },
            prob_bits: self.prob_bits,
            max_tables: self.max_tables,
            block_tables: self.max_tables,
            predictors: predictors.to_vec(),
            fit_tiles: self.fit_tiles,
            sampled_counts: false,
            whole_blocks: self.whole_blocks,
        }
    }
}

/// The kernel variants swept: 1 (the per-step bound-checked loop, the baseline), 3, 4, 5 (its
/// fast path for whole row spans) and 6 (4 with the stream staged in shared memory); 0 and 2
/// measured slower than 1 everywhere.
const SWEPT: [u32; 5] = [1, 3, 4, 5, 6];
/// The baseline variant the table compares with.
const BASELINE: u32 = 1;

/// Launch shapes to sweep: one plane per block (small blocks, a warp or two a unit) and
/// ranges of equal work (large blocks), for each variant.
fn configs(quick: bool, variants: &[u32]) -> Vec<LaunchConfig> {
    let mut out = Vec::new();
    for &variant in variants {
        let max = wcodec_cuda::abi::VARIANT_WARPS[variant as usize];
        for warps in [1u32, 2, 4, 8, 16].into_iter().filter(|&w| w <= max) {
            for per_warp in [1u32, 2] {
                out.push(LaunchConfig {
                    variant,
                    warps_per_block: warps,
                    blocks_per_sm: 1,
                    units_per_block: warps * per_warp,
                });
            }
        }
        for (warps, blocks_per_sm) in [(32u32, 1u32), (16, 2), (12, 4)] {
            if warps <= max {
                out.push(LaunchConfig {
                    variant,
                    warps_per_block: warps,
                    blocks_per_sm,
                    units_per_block: 0,
                });
            }
        }
    }
    if quick {
        out.retain(|c| c.variant == BASELINE || c.variant == LaunchConfig::DEFAULT_VARIANT);
    }
    out
}

/// Encoder settings of the throughput table.
fn settings(quick: bool) -> Vec<Setting> {
    let tiles: &[(u32, u32)] = if quick {
        &[(256, 256), (128, 128)]
    } else {
        &[(256, 256), (128, 256), (128, 128), (64, 128), (64, 64)]
    };
    let mut settings: Vec<Setting> = tiles.iter().map(|&t| Setting::new(t, 12, 8)).collect();
    settings.extend([
        Setting::new((128, 128), 11, 8),
        Setting::new((128, 128), 12, 1),
        Setting::new((256, 256), 11, 8),
    ]);
    // The tile of EncodeOptions::for_gpu() (`compress --for-gpu`) with up to 4 tables and with
    // its one table, fixed and fitted per plane (the preset itself also turns prediction off:
    // `--predictors none`), and the same at 64x128.
    settings.extend([
        Setting::new((128, 128), 11, 4),
        Setting::new((128, 128), 11, 1),
        Setting::FOR_GPU,
        Setting::new((64, 128), 11, 1),
    ]);
    settings
}

fn best(reports: &[BenchReport]) -> &BenchReport {
    reports.iter().max_by(|a, b| a.gbps.total_cmp(&b.gbps)).expect("a report")
}

fn main() -> Result<()> {
    let args = args()?;
    let mut log = String::new();
    let mut json = Vec::new();
    macro_rules! say {
        ($($t:tt)*) => {{ let line = format!($($t)*); println!("{line}"); writeln!(log, "{line}").ok(); }};
    }
    let sources = sources(&args.data)?;
    if let Some(bins) = &args.bins {
        std::fs::create_dir_all(bins)?;
        for s in &sources {
            std::fs::write(bins.join(format!("{}.bin", s.name)), &s.tensor_bytes)?;
        }
        say!("wrote the tensors' bytes to {}", bins.display());
    }
    if args.dry {
        // Ratios only (no GPU): what each encoder setting gives on each source.
        let chosen = if args.only.is_empty() { settings(false) } else { args.only.clone() };
        for s in &sources {
            for setting in &chosen {
                let wcz = (s.compress)(&setting.options(&args.predictors))?;
                let ratio = s.tensor_bytes.len() as f64 / wcz.len() as f64;
                say!(
                    "{} tile {} prob_bits {} tables {}: ratio {ratio:.4}",
                    s.name,
                    setting.tile_label(),
                    setting.prob_bits,
                    setting.max_tables
                );
            }
        }
        return Ok(());
    }
    let gpu = CudaDecoder::new(0)?;
    say!("device: {} ({} multiprocessors)", gpu.device_name(), gpu.multiprocessors());
    for v in 0..wcodec_cuda::abi::VARIANTS {
        if let Some(k) = gpu.kernel_info(v) {
            say!(
                "kernel variant {v}: {} registers, {} bytes local (spills), max {} threads/block, {} bytes dynamic shared, sm_{}",
                k.registers,
                k.local_bytes,
                k.max_threads_per_block,
                k.max_dynamic_shared,
                k.binary_version
            );
        }
    }
    if args.profile {
        // Two launches each (the decoder's own shape, or the --configs) of a few settings,
        // 256 MiB out.
        let chosen: &[(usize, (u32, u32), u8, u8)] = if args.profile_configs.is_empty() {
            &[(0, (128, 128), 12, 8), (0, (128, 128), 12, 1), (1, (256, 256), 12, 8)]
        } else {
            &[(0, (64, 128), 11, 1), (1, (64, 128), 11, 1)]
        };
        for &(si, tile, prob_bits, max_tables) in chosen {
            let s = &sources[si];
            let setting = Setting::new(tile, prob_bits, max_tables);
            let wcz = (s.compress)(&setting.options(&args.predictors))?;
            let dir = Directory::from_file_bytes(&wcz)?;
            let all: Vec<usize> = (0..dir.tensors.len()).collect();
            let tensor_len: u64 = dir.tensors.iter().map(|t| t.source_len).sum();
            let copies = ((256u64 << 20).div_ceil(tensor_len.max(1))) as usize;
            let options = BenchOptions {
                warmup: 0,
                iters: 2,
                copies,
                configs: args.profile_configs.clone(),
                ..Default::default()
            };
            for r in gpu.bench(&wcz, &dir, &all, &options)? {
                say!(
                    "profiled {} {tile:?} {prob_bits} {max_tables}: {:?} {:.0} GB/s",
                    s.name,
                    r.config,
                    r.gbps
                );
            }
        }
        return Ok(());
    }
    let copy = gpu.copy_bandwidth(1 << 30, 10)?;
    say!("device-to-device copy: {copy:.0} GB/s (read + write)");
    json.push(format!("{{\"what\":\"copy\",\"GBps_rw\":{copy:.1}}}"));

    // Ratio and speed per source and encoder setting; the launch shapes swept on each.
    let mut settings = settings(args.quick);
    if !args.only.is_empty() {
        settings = args.only.clone();
    }
    say!("");
    say!(
        "| data | tile | prob bits | tables | ratio | MiB out | launch (variant, warps/block, blocks/SM, units/block) | GB/s best | GB/s default | GB/s best of variant {BASELINE} | GB/s best, BF16 through scratch + merge launch, or GGUF heads alone through scratch | floor GB/s | of floor |"
    );
    say!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for s in sources.iter().filter(|_| !args.layer_only) {
        for setting in &settings {
            let Setting { prob_bits, max_tables, .. } = *setting;
            let tile = setting.tile_label();
            let wcz = (s.compress)(&setting.options(&args.predictors))?;
            let dir = Directory::from_file_bytes(&wcz)?;
            let all: Vec<usize> = (0..dir.tensors.len()).collect();
            let tensor_len: u64 = dir.tensors.iter().map(|t| t.source_len).sum();
            let stored: u64 = dir.tensors.iter().map(|t| t.stored_len()).sum();
            let ratio = s.tensor_bytes.len() as f64 / wcz.len() as f64;
            let copies = ((args.mb << 20).div_ceil(tensor_len.max(1))) as usize;
            let plan_options =
                PlanOptions { compact_tables: args.compact, ..PlanOptions::default() };
            let mut plan = Plan::build(&wcz, &dir, &all, &plan_options)?.replicate(copies);
            gpu.settle_compact_tables(&mut plan, args.compact);
            let default = gpu.default_config(&plan);
            let mut cs = configs(args.quick, &args.variants);
            if !cs.contains(&default) {
                cs.push(default);
            }
            let options = BenchOptions {
                warmup: 2,
                iters: 10,
                batch: 1,
                copies,
                configs: cs,
                verify_checksums: true,
                merge_while_decoding: true,
                merge_whole_blocks: true,
                compact_tables: args.compact,
            };
            let reports = gpu.bench(&wcz, &dir, &all, &options)?;
            // BF16 also the old way (planes to scratch, then the merge launch), same shapes;
            // GGUF blocks with only their heads through scratch (the quants in place).
            let alternate = if dir.tensors.iter().any(|t| t.dtype == Dtype::BF16) {
                Some(BenchOptions { merge_while_decoding: false, ..options.clone() })
            } else if dir.tensors.iter().any(|t| t.dtype.block().is_some()) {
                Some(BenchOptions { merge_whole_blocks: false, ..options.clone() })
            } else {
                None
            };
            let unfused = if let Some(options) = alternate {
                let r = gpu.bench(&wcz, &dir, &all, &options)?;
                let b = best(&r);
                json.push(format!(
                    "{{\"data\":\"{}\",\"tile\":\"{tile}\",\"prob_bits\":{prob_bits},\"max_tables\":{max_tables},\"path\":\"scratch+merge\",\"variant\":{},\"warps\":{},\"blocks_per_sm\":{},\"units_per_block\":{},\"median_us\":{:.2},\"GBps\":{:.1}}}",
                    s.name, b.config.variant, b.config.warps_per_block, b.config.blocks_per_sm, b.config.units_per_block, b.median_s * 1e6, b.gbps
                ));
                format!(
                    "{:.0} ({}, {}, {}, {})",
                    b.gbps,
                    b.config.variant,
                    b.config.warps_per_block,
                    b.config.blocks_per_sm,
                    b.config.units_per_block
                )
            } else {
                "-".to_owned()
            };
            let b = best(&reports);
            let d = reports.iter().find(|r| r.config == default).expect("default timed");
            let base = reports
                .iter()
                .filter(|r| r.config.variant == BASELINE)
                .map(|r| r.gbps)
                .fold(0.0, f64::max);
            // Bandwidth floor: compressed bytes in + decompressed bytes out at the copy rate.
            let floor = copy * b.output_bytes as f64 / (b.output_bytes + b.compressed_bytes) as f64;
            say!(
                "| {} | {tile} | {prob_bits} | {max_tables} | {ratio:.4} | {} | ({}, {}, {}, {}) | {:.0} | {:.0} | {base:.0} | {unfused} | {floor:.0} | {:.0}% |",
                s.name,
                b.output_bytes >> 20,
                b.config.variant,
                b.config.warps_per_block,
                b.config.blocks_per_sm,
                b.config.units_per_block,
                b.gbps,
                d.gbps,
                100.0 * b.gbps / floor
            );
            for r in &reports {
                json.push(format!(
                    "{{\"data\":\"{}\",\"tile\":\"{tile}\",\"prob_bits\":{prob_bits},\"max_tables\":{max_tables},\"ratio\":{ratio:.5},\"payload_ratio\":{:.5},\"out_bytes\":{},\"in_bytes\":{},\"units\":{},\"variant\":{},\"warps\":{},\"blocks_per_sm\":{},\"units_per_block\":{},\"median_us\":{:.2},\"GBps\":{:.1}}}",
                    s.name, tensor_len as f64 / stored as f64, r.output_bytes, r.compressed_bytes, r.units,
                    r.config.variant, r.config.warps_per_block, r.config.blocks_per_sm, r.config.units_per_block, r.median_s * 1e6, r.gbps
                ));
            }
        }
    }

    if args.no_layer {
        if let Some(path) = &args.json {
            std::fs::write(path, format!("[\n{}\n]\n", json.join(",\n")))?;
        }
        return Ok(());
    }
    // One 4096 x 4096 int8 layer (16 MiB) of real MiniLM int8 weights, decoded alone.
    let layer: Vec<u8> =
        sources[0].tensor_bytes.iter().copied().cycle().take(4096 * 4096).collect();
    say!("");
    say!(
        "| 4096x4096 int8 layer | tile | settings | ratio | units | launch | median us (alone) | GB/s | us per launch, 10 back to back |"
    );
    say!("|---|---|---|---|---|---|---|---|---|");
    // Each tile with the CPU encoder's defaults (12-bit tables, up to 8 a plane, every
    // predictor) and with the GPU preset's (`--for-gpu`: one 11-bit table, no prediction).
    // And the preset itself, tiles fitted to the plane.
    let all: &[Predictor] = &Predictor::ALL;
    let none: &[Predictor] = &[Predictor::None];
    let layer_settings: &[(Setting, &[Predictor], &str)] = &[
        (Setting::new((256, 256), 12, 8), all, "12:8:all"),
        (Setting::new((128, 256), 12, 8), all, "12:8:all"),
        (Setting::new((128, 128), 12, 8), all, "12:8:all"),
        (Setting::new((64, 128), 12, 8), all, "12:8:all"),
        (Setting::new((64, 64), 12, 8), all, "12:8:all"),
        (Setting::new((32, 128), 12, 8), all, "12:8:all"),
        (Setting::new((128, 128), 11, 1), none, "11:1:none"),
        (Setting::new((64, 128), 11, 1), none, "11:1:none"),
        (Setting::new((32, 128), 11, 1), none, "11:1:none"),
        (Setting::FOR_GPU, none, "11:1:none (--for-gpu)"),
    ];
    for &(setting, predictors, label) in layer_settings {
        let tile = setting.tile_label();
        let wcz = wcodec_encode::compress_raw(
            &layer,
            Dtype::I8,
            &[4096, 4096],
            &setting.options(predictors),
        )?;
        let dir = Directory::from_file_bytes(&wcz)?;
        let mut plan = Plan::build(&wcz, &dir, &[0], &PlanOptions::default())?;
        gpu.settle_compact_tables(&mut plan, CompactTables::Auto);
        let default = gpu.default_config(&plan);
        let mut cs = Vec::new();
        for warps in [1u32, 2, 4, 8] {
            for &variant in &args.variants {
                cs.push(LaunchConfig {
                    variant,
                    warps_per_block: warps,
                    blocks_per_sm: 1,
                    units_per_block: warps,
                });
            }
        }
        if !cs.contains(&default) {
            cs.push(default);
        }
        let options = BenchOptions {
            warmup: 3,
            iters: 30,
            batch: 1,
            copies: 1,
            configs: cs,
            verify_checksums: true,
            merge_while_decoding: true,
            merge_whole_blocks: true,
            compact_tables: args.compact,
        };
        let reports = gpu.bench(&wcz, &dir, &[0], &options)?;
        let b = best(&reports);
        let d = reports.iter().find(|r| r.config == default).expect("default timed");
        let batched = BenchOptions {
            batch: 10,
            iters: 10,
            configs: vec![b.config, d.config],
            ..options.clone()
        };
        let batched = gpu.bench(&wcz, &dir, &[0], &batched)?;
        say!(
            "| best | {tile} | {} | {:.4} | {} | ({}, {}, {}) | {:.1} | {:.0} | {:.1} |",
            label,
            layer.len() as f64 / wcz.len() as f64,
            b.units,
            b.config.variant,
            b.config.warps_per_block,
            b.config.blocks_per_sm,
            b.median_s * 1e6,
            b.gbps,
            batched[0].median_s * 1e6
        );
        say!(
            "| default | {tile} | {} | | | ({}, {}, {}) | {:.1} | {:.0} | {:.1} |",
            label,
            d.config.variant,
            d.config.warps_per_block,
            d.config.blocks_per_sm,
            d.median_s * 1e6,
            d.gbps,
            batched[1].median_s * 1e6
        );
        for r in &reports {
            json.push(format!(
                "{{\"data\":\"layer-4096x4096\",\"tile\":\"{tile}\",\"settings\":\"{}\",\"variant\":{},\"warps\":{},\"blocks_per_sm\":{},\"median_us\":{:.2},\"GBps\":{:.1}}}",
                label, r.config.variant, r.config.warps_per_block, r.config.blocks_per_sm, r.median_s * 1e6, r.gbps
            ));
        }
    }
    unit_length_sweep(&gpu, &sources[0].tensor_bytes, &mut json, &mut |line| say!("{line}"))?;
    if let Some(path) = &args.json {
        std::fs::write(path, format!("[\n{}\n]\n", json.join(",\n")))?;
    }
    Ok(())
}

/// What a launch costs apart from its units' steps: launches of `--for-gpu` units (one 11-bit
/// table, no prediction) of h x 128 symbols, 1,024 of them (h x 32 rows of 4096 columns: one
/// unit a warp, the layer's launch shape) for h from 128 (the layer) down to 4 (units of 2 rows
/// cost more in states than they save: the encoder stores such a plane raw), then fewer and
/// more units of 128 x 128. A lane takes 4 h steps, so the time against h is the fixed cost of
/// the launch plus h times the cost of 4 steps one after the other.
fn unit_length_sweep(
    gpu: &CudaDecoder,
    int8: &[u8],
    json: &mut Vec<String>,
    say: &mut dyn FnMut(String),
) -> Result<()> {
    say(String::new());
    say("| h x 128 units | units | steps a lane | launch | median us alone | us a launch, 10 back to back |".into());
    say("|---|---|---|---|---|---|".into());
    let shapes = [128u32, 64, 32, 16, 8, 4].map(|h| (h, 1024u32)).into_iter().chain([
        (128, 128),
        (128, 256),
        (128, 512),
        (128, 2048),
    ]);
    for (h, units) in shapes {
        let rows = u64::from(units / 32 * h);
        let bytes: Vec<u8> = int8.iter().copied().cycle().take(rows as usize * 4096).collect();
        let options = Setting::new((h, 128), 11, 1).options(&[Predictor::None]);
        let wcz = wcodec_encode::compress_raw(&bytes, Dtype::I8, &[rows, 4096], &options)?;
        let dir = Directory::from_file_bytes(&wcz)?;
        let mut plan = Plan::build(&wcz, &dir, &[0], &PlanOptions::default())?;
        gpu.settle_compact_tables(&mut plan, CompactTables::Auto);
        let default = gpu.default_config(&plan);
        let options = BenchOptions {
            warmup: 3,
            iters: 30,
            batch: 1,
            copies: 1,
            configs: vec![default],
            verify_checksums: true,
            merge_while_decoding: true,
            merge_whole_blocks: true,
            compact_tables: CompactTables::Auto,
        };
        let alone = gpu.bench(&wcz, &dir, &[0], &options)?;
        let batched = BenchOptions { batch: 10, iters: 10, ..options.clone() };
        let batched = gpu.bench(&wcz, &dir, &[0], &batched)?;
        let c = default;
        say(format!(
            "| {h} x 128 | {} | {} | ({}, {}, {}, {}) | {:.1} | {:.1} |",
            alone[0].units,
            4 * h,
            c.variant,
            c.warps_per_block,
            c.blocks_per_sm,
            c.units_per_block,
            alone[0].median_s * 1e6,
            batched[0].median_s * 1e6
        ));
        json.push(format!(
            "{{\"data\":\"unit-length\",\"h\":{h},\"units\":{},\"median_us\":{:.2},\"batched_us\":{:.2}}}",
            alone[0].units,
            alone[0].median_s * 1e6,
            batched[0].median_s * 1e6
        ));
    }
    Ok(())
}
