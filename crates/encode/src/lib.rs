//! The two-pass CPU encoder of wcodec.
//!
//! Pass 1 measures: per tile it picks a predictor by the cost of its residuals and counts their
//! histogram; the tiles' histograms make the plane's frequency tables (one, or several with a
//! per-tile choice when that pays). Pass 2 codes every tile as an independent rANS unit. Tiles
//! are processed in parallel with rayon; the output does not depend on the thread count.
#![deny(unsafe_code)]

mod payload;
mod plane;
mod split;
mod tables;
mod whole_blocks;
mod writer;

pub use payload::Payload;
use plane::{CodedPlane, PlaneCounts, PlaneSums, encode_plane_payload};
pub use plane::{EncodedPlane, encode_plane};
use split::{Split, split_parallel};
pub use writer::FileWriter;

use std::borrow::Cow;

use rayon::prelude::*;
use wcodec_format::gaps::PackedGaps;
use wcodec_format::{Dtype, PlaneEntry, Predictor, SourceKind, TensorEntry, Transform};
use wcodec_predict::{TileConfig, plane_is_signed};

/// Encoder settings. `Default` is what the CLI uses.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// Requested tile shape (planes with few rows get wider tiles of the same area, narrow
    /// planes taller ones: `wcodec_predict::tile_shape`).
    pub tile: TileConfig,
    /// Probability precision of the frequency tables, 8..=12.
    pub prob_bits: u8,
    /// Predictors the encoder may choose per tile.
    pub predictors: Vec<Predictor>,
    /// Most frequency tables per plane (1 disables the per-tile table choice); planes of GGUF
    /// block types take at most `block_tables`.
    pub max_tables: u8,
    /// Most frequency tables per plane of a GGUF block type: 1 in every preset, as their values
    /// are scaled block by block (row classes saved 0.0035% of the SmolLM2 Q4_1 file for
    /// 1.25-1.3x its encode time); more only where asked for.
    pub block_tables: u8,
    /// Fit each plane's tile height to the plane (`for_gpu`): half of `tile.rows` for a plane
    /// the GPU decodes in one wave of units, more where coding saves little
    /// (`plane::fitted_tile_shape`). Planes that `tile_shape` makes narrow or short keep its
    /// shape.
    pub fit_tiles: bool,
    /// Estimate histograms from samples, much faster than counting every byte (the defaults
    /// and `fast`): a plane whose tiles are all NONE from one block of 4 KiB in up to 16 (at
    /// least 64 KiB counted) plus a scan of the rest for the values the sample missed; row
    /// classes from the rows the table search counted and one row in 8, the other rows only
    /// scanned for their values (`tables::choose_tables`). The tables are then estimates
    /// (every value present keeps a frequency, so the file decodes exactly; it may be a little
    /// larger), and so are the order-0 figures recorded for such planes.
    pub sampled_counts: bool,
    /// Code GGUF block types whole: one plane of the tensor's bytes (identity), rows laid side
    /// by side to whole groups of 128 bytes where they divide, each byte of a block coded with
    /// its field's table (column classes) and no prediction, at most 10-bit probabilities (the
    /// tables of all classes fit a GPU block's shared memory), instead of a plane per field
    /// (`block_fields`). A little larger (SmolLM2's GGUF file: ratio 1.1249 against 1.1294); a
    /// GPU decodes such blocks straight into place where it merges split planes in a second
    /// launch, 1.7x as fast (`for_gpu`; docs/PERFORMANCE.md).
    pub whole_blocks: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            tile: TileConfig::default(),
            prob_bits: 12,
            predictors: Predictor::ALL.to_vec(),
            max_tables: 8,
            block_tables: 1,
            fit_tiles: false,
            sampled_counts: true,
            whole_blocks: false,
        }
    }
}

/// A tensor to encode: its description and its bytes.
#[derive(Clone, Copy, Debug)]
pub struct TensorInput<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub dims: &'a [u64],
    pub bytes: &'a [u8],
    /// Where the tensor sits in its source file.
    pub source_offset: u64,
}

/// An encoded tensor: its directory entry (payload offsets relative to the start of `payload`)
/// and the payload of its planes, each plane starting 64-byte aligned.
#[derive(Clone, Debug)]
pub struct EncodedTensor {
    pub entry: TensorEntry,
    pub payload: Payload,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("tensor {name:?}: shape {dims:?} of {dtype} needs {expected:?} bytes, got {actual}")]
    ShapeMismatch { name: String, dims: Vec<u64>, dtype: Dtype, expected: Option<u64>, actual: u64 },
    #[error("tensor {name:?}: {detail}")]
    Unsupported { name: String, detail: String },
    #[error("invalid options: {0}")]
    Options(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl EncodeOptions {
    /// Settings for files decoded on a GPU: 128x128 tiles fitted per plane (`fit_tiles`),
    /// 11-bit probabilities, one table per plane (row classes make the kernel wait on table
    /// loads) and no prediction (a predicted tile is rebuilt by a wavefront over its rows after
    /// it is decoded). On an H100 (docs/PERFORMANCE.md) MiniLM int8 decodes at 609 GB/s with one
    /// table against 483 with up to 4, for 1% less ratio (1.661 against 1.677); without
    /// prediction at 898-911 GB/s against 828-835 with it, for 0.3% of ratio (1.656 against
    /// 1.661). A warp decodes a unit as a chain of dependent steps (512 for 128x128): a plane
    /// of one-byte elements small enough for the GPU to run all its units at once (a 4096 x
    /// 4096 int8 layer) decodes alone in one chain's time, which 64-row tiles halve (51 us
    /// against 35, GPU run 94); a plane that coding shrinks little gets taller tiles, as a
    /// unit's states and record would eat into its saving (SmolLM2's Q8_0 quants: ratio 1.0565
    /// against 1.0517).
    pub fn for_gpu() -> Self {
        EncodeOptions {
            tile: TileConfig { rows: 128, cols: 128 },
            prob_bits: 11,
            max_tables: 1,
            block_tables: 1,
            predictors: vec![Predictor::None],
            fit_tiles: true,
            sampled_counts: false,
            whole_blocks: true,
        }
    }

    /// Settings for encoding fast: one table per plane and no prediction, with the default
    /// tiles, precision and sampled counts. Encodes 1.1-1.8x as fast as the defaults on the
    /// corpus, for files 0.0-1.3% larger (docs/PERFORMANCE.md).
    pub fn fast() -> Self {
        EncodeOptions {
            max_tables: 1,
            predictors: vec![Predictor::None],
            ..EncodeOptions::default()
        }
    }

    pub fn validate(&self) -> Result<(), EncodeError> {
        let bits = wcodec_format::rans::MIN_PROB_BITS..=wcodec_format::rans::MAX_PROB_BITS;
        if !bits.contains(&self.prob_bits) {
            return Err(EncodeError::Options(format!("prob bits must be in {bits:?}")));
        }
        if self.tile.rows == 0 || self.tile.cols == 0 {
            return Err(EncodeError::Options("tile sides must be at least 1".into()));
        }
        if u64::from(self.tile.rows) * u64::from(self.tile.cols) > wcodec_format::MAX_TILE_SYMBOLS {
            return Err(EncodeError::Options("tile larger than 2^22 symbols".into()));
        }
        if self.max_tables == 0 || self.block_tables == 0 {
            return Err(EncodeError::Options("at least one table per plane".into()));
        }
        Ok(())
    }
}

/// The transform the encoder uses for a dtype: single-byte types stay whole; BF16 and FP32
/// are split into an exponent plane and sign-mantissa planes (the exponent carries almost all
/// the redundancy); GGUF block types into one plane per block field (scales apart from
/// quants); other wide types into byte planes.
pub fn transform_for(dtype: Dtype) -> Transform {
    match dtype {
        Dtype::BF16 => Transform::Bf16Split,
        Dtype::F32 => Transform::F32Split,
        d if d.block().is_some() => Transform::BlockFields,
        d if d.size() == 1 => Transform::Identity,
        _ => Transform::BytePlanes,
    }
}

/// Encodes one tensor.
pub fn encode_tensor(
    input: &TensorInput,
    options: &EncodeOptions,
) -> Result<EncodedTensor, EncodeError> {
    options.validate()?;
    let (rows, cols) =
        wcodec_format::matrix_shape(input.dims).ok_or_else(|| shape_error(input, None))?;
    let whole_blocks = input.dtype.block().is_none_or(|(per_block, _)| cols % per_block == 0);
    let expected = input.dtype.storage_len(rows * cols).filter(|_| whole_blocks);
    if expected != Some(input.bytes.len() as u64) {
        return Err(shape_error(input, expected));
    }
    let transform = transform_for(input.dtype);
    // A tensor of no rows may claim rows of any width; where its planes' widths are counted in
    // bytes (identity, block fields, blocks coded whole) the decoder refuses rows whose bytes
    // overflow, so they are refused here rather than written undecodable.
    if matches!(transform, Transform::Identity | Transform::BlockFields)
        && input.dtype.storage_len(cols).is_none()
    {
        return Err(shape_error(input, None));
    }
    if options.whole_blocks
        && transform == Transform::BlockFields
        && let Some(classes) = whole_blocks::column_classes(input.dtype)
    {
        return encode_whole_blocks(input, rows, cols, &classes, options);
    }
    let shapes = transform.plane_shapes(input.dtype, rows, cols);
    // A block type's values are scaled block by block (32 or 256 values), so the rows of its
    // planes share one distribution and row classes do not pay (on the SmolLM2 Q4_1 GGUF file
    // they saved 0.0035% of the file for 1.25-1.3x the encode time): `block_tables`, one in
    // every preset. Its fields of several bytes a block (packed quants, high bits, sub-block
    // scales) hold no level that neighbours share, so they are not predicted either (no tile of
    // that file's was, and pricing them was 8% of its encode); its fp16 scales are.
    let block = transform == Transform::BlockFields;
    let block_options = block.then(|| {
        let max_tables = options.max_tables.min(options.block_tables);
        let scales = EncodeOptions { max_tables, ..options.clone() };
        let quants = EncodeOptions { predictors: vec![Predictor::None], ..scales.clone() };
        (scales, quants)
    });
    let fields = wcodec_format::blocks::block_fields(input.dtype).unwrap_or_default();
    let plane_options = |j: usize| match (&block_options, fields.get(j)) {
        (Some((_, quants)), Some(field)) if field.count > 1 => quants,
        (Some((scales, _)), Some(_)) => scales,
        _ => options,
    };
    // Without prediction every tile is NONE, and a plane's histogram is that of its bytes:
    // counted in the pass that takes the CRCs, while each chunk is in cache (for a block type,
    // all its planes; only those of its quants use them).
    let none_only = options.predictors == [Predictor::None];
    let counting = (none_only || block).then_some(options.sampled_counts);
    // Identity needs no copy: its one plane is the tensor's bytes. Its CRC is taken with the
    // counts where they are asked for, else by the plane's encoder (in its pass over every row,
    // where it makes one: a pass of its own was the first to read the tensor from memory).
    let split = if transform == Transform::Identity {
        let bias = if plane_is_signed(input.dtype, transform, 0) { 0x80 } else { 0 };
        let (crc, histograms) = match counting {
            Some(_) => {
                let (crc, histogram) = crc_and_counts(input.bytes, counting, bias);
                (Some(crc), histogram.map(|h| vec![h]))
            }
            None => (None, None),
        };
        Split { planes: Vec::new(), plane_crcs: vec![crc], source_crc: crc, histograms }
    } else {
        split_parallel(input.bytes, input.dtype, transform, counting)
    };
    let planes: Vec<&[u8]> = match transform {
        Transform::Identity => vec![input.bytes],
        _ => split.planes.iter().map(Vec::as_slice).collect(),
    };
    // Planes are encoded in parallel (a tensor of several planes otherwise leaves threads idle
    // on its small ones), each into a payload of its own, then laid end to end.
    let coded: Vec<CodedPlane> = planes
        .par_iter()
        .zip(&shapes)
        .enumerate()
        .map(|(j, (bytes, &(prows, pcols)))| {
            let bias128 = plane_is_signed(input.dtype, transform, j);
            let whole_elements = transform == Transform::Identity;
            encode_plane_payload(
                bytes,
                prows as usize,
                pcols as usize,
                bias128,
                whole_elements,
                PlaneSums {
                    crc32c: split.plane_crcs[j],
                    none_counts: split.histograms.as_ref().map(|h| h[j]),
                },
                plane_options(j),
            )
        })
        .collect();
    drop(planes);
    let Split { planes: mut owned, source_crc, .. } = split;
    // An identity plane is the tensor: its CRC is the tensor's.
    let source_crc = source_crc.unwrap_or_else(|| coded[0].crc32c);
    let mut payload = Payload::default();
    let mut entries: Vec<PlaneEntry> = Vec::with_capacity(coded.len());
    let mut order0_bits = 0.0;
    for (j, CodedPlane { payload: plane, mut entry, order0_bits: bits, .. }) in
        coded.into_iter().enumerate()
    {
        // A raw plane is its bytes: a split plane moved (not copied) into the payload.
        let plane = plane.unwrap_or_else(|| {
            let mut raw = Payload::default();
            raw.push(match owned.get_mut(j) {
                Some(split_plane) => std::mem::take(split_plane),
                None => input.bytes.to_vec(),
            });
            raw
        });
        let start = payload.len().next_multiple_of(wcodec_format::records::PAYLOAD_ALIGN as usize);
        payload.pad_to(start);
        payload.append(plane);
        order0_bits += bits;
        entry.payload_offset = start as u64;
        entries.push(entry);
    }
    Ok(EncodedTensor {
        entry: TensorEntry {
            name: input.name.to_owned(),
            dtype: input.dtype,
            dims: input.dims.to_vec(),
            transform,
            source_offset: input.source_offset,
            source_len: input.bytes.len() as u64,
            crc32c: source_crc,
            order0_bytes: (order0_bits / 8.0).ceil() as u64,
            planes: entries,
        },
        payload,
    })
}

/// CRC-32C of `bytes`, in chunks spread over the threads for large planes.
pub(crate) fn crc32c_parallel(bytes: &[u8]) -> u32 {
    crc_and_counts(bytes, None, 0).0
}

/// CRC-32C of `bytes`, in chunks spread over the threads for large tensors, and with
/// `counting` (`Some(sampled)`) the histogram of `bytes` XOR `bias` (`plane::none_histogram`):
/// each chunk counted right after its CRC, from cache (a second pass over a large tensor read
/// it from memory again, 5% of a `--fast` int8 encode).
fn crc_and_counts(bytes: &[u8], counting: Option<bool>, bias: u8) -> (u32, Option<[u64; 256]>) {
    const CHUNK: usize = 1 << 20;
    let chunk = if bytes.len() <= 2 * CHUNK { bytes.len().max(1) } else { CHUNK };
    let parts: Vec<(u32, Option<PlaneCounts>)> = bytes
        .par_chunks(chunk)
        .enumerate()
        .map(|(k, part)| {
            let crc = wcodec_format::crc32c(part);
            let counts = counting.map(|sampled| {
                let mut counts = PlaneCounts::default();
                counts.add(part, k * chunk, bytes.len(), sampled);
                counts
            });
            (crc, counts)
        })
        .collect();
    let crcs: Vec<u32> = parts.iter().map(|p| p.0).collect();
    let crc = wcodec_format::checksum::combine_parts(&crcs, chunk as u64, bytes.len() as u64);
    let histogram = counting.map(|_| {
        let counts: Vec<PlaneCounts> = parts.into_iter().filter_map(|p| p.1).collect();
        PlaneCounts::histogram(&counts, bytes.len(), bias)
    });
    (crc, histogram)
}

/// [`encode_tensor`] for a block type coded whole (`EncodeOptions::whole_blocks`), of `rows x
/// cols` elements: `classes` are its block's column classes.
fn encode_whole_blocks(
    input: &TensorInput,
    rows: u64,
    cols: u64,
    classes: &[u8],
    options: &EncodeOptions,
) -> Result<EncodedTensor, EncodeError> {
    // A row's bytes from its elements (a tensor of no rows still has rows of some width), which
    // a decoder refuses to read where they overflow.
    let row_bytes = input.dtype.storage_len(cols).ok_or_else(|| shape_error(input, None))?;
    let block_bytes = input.dtype.block().map_or(1, |(_, bytes)| bytes);
    let (prows, pcols) = whole_blocks::plane_shape(rows, row_bytes, block_bytes);
    let (crc, _) = crc_and_counts(input.bytes, None, 0);
    let (mut entry, bits, payload) = whole_blocks::encode_whole_blocks(
        input.bytes,
        prows as usize,
        pcols as usize,
        classes,
        crc,
        options,
    );
    entry.payload_offset = 0;
    let payload = payload.unwrap_or_else(|| {
        let mut raw = Payload::default();
        raw.push(input.bytes.to_vec());
        raw
    });
    Ok(EncodedTensor {
        entry: TensorEntry {
            name: input.name.to_owned(),
            dtype: input.dtype,
            dims: input.dims.to_vec(),
            transform: Transform::Identity,
            source_offset: input.source_offset,
            source_len: input.bytes.len() as u64,
            crc32c: crc,
            order0_bytes: (bits / 8.0).ceil() as u64,
            planes: vec![entry],
        },
        payload,
    })
}

fn shape_error(input: &TensorInput, expected: Option<u64>) -> EncodeError {
    EncodeError::ShapeMismatch {
        name: input.name.to_owned(),
        dims: input.dims.to_vec(),
        dtype: input.dtype,
        expected,
        actual: input.bytes.len() as u64,
    }
}

/// Compresses a whole source file held in memory whose tensors are described by `layout`,
/// writing the .wcz to `out`; `progress` is called with the source bytes done so far.
pub fn compress_file<W: std::io::Write + Send>(
    source: &[u8],
    layout: &wcodec_container::SourceLayout,
    options: &EncodeOptions,
    out: W,
    progress: &mut dyn FnMut(u64),
) -> Result<W, EncodeError> {
    compress_file_hinted(source, layout, options, out, progress, &mut |_| {})
}

/// What [`compress_file_hinted`] tells the owner of its source as it goes: the owner of a
/// memory-mapped file can have the kernel read ahead what comes next and drop from memory
/// what is done (a model larger than RAM then never holds more than a batch or two).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceHint {
    /// These bytes are read next, once the batch being encoded is done.
    WillNeed(std::ops::Range<u64>),
    /// These bytes are not read again.
    DoneWith(std::ops::Range<u64>),
}

/// [`compress_file`], telling `hint` which bytes of `source` come next and which are done
/// with, batch by batch (see [`compress_source`] for the batches).
pub fn compress_file_hinted<W: std::io::Write + Send>(
    source: &[u8],
    layout: &wcodec_container::SourceLayout,
    options: &EncodeOptions,
    out: W,
    progress: &mut dyn FnMut(u64),
    hint: &mut dyn FnMut(SourceHint),
) -> Result<W, EncodeError> {
    // The tensors are encoded straight from `source`: no copies.
    let loader = Loader { origin: Origin::Memory(source), cursor: 0, gaps: Vec::new() };
    compress_with(source.len() as u64, layout, loader, options, out, progress, hint)
}

/// Compresses a source of `source_len` bytes read through `read(offset, buf)` (which fills
/// `buf`, sized by the caller, from `offset`), a batch of tensors at a time: memory holds the
/// batches in flight, not the model. Small tensors are encoded a batch at a time, in parallel
/// (a model's norms, biases and small matrices give the tile-level parallelism too little to
/// spread); a large tensor is a batch of its own, its tiles being parallel work enough. While
/// a batch is encoded, the batch before it is written and the next one is read (if it is at
/// most `READ_AHEAD_BYTES`), so I/O does not leave the threads idle. Tensors are written in
/// source order; the bytes outside every tensor (headers, metadata, padding) are gathered into
/// the directory's gaps.
pub fn compress_source<W: std::io::Write + Send>(
    source_len: u64,
    layout: &wcodec_container::SourceLayout,
    read: &mut (dyn FnMut(u64, &mut Vec<u8>) -> std::io::Result<()> + Send),
    options: &EncodeOptions,
    out: W,
    progress: &mut dyn FnMut(u64),
) -> Result<W, EncodeError> {
    let loader = Loader { origin: Origin::Read(read), cursor: 0, gaps: Vec::new() };
    compress_with(source_len, layout, loader, options, out, progress, &mut |_| {})
}

/// `compress_source` and `compress_file`, for either origin of the bytes; `hint` hears of the
/// batches' source ranges (`SourceHint`).
fn compress_with<W: std::io::Write + Send>(
    source_len: u64,
    layout: &wcodec_container::SourceLayout,
    mut loader: Loader,
    options: &EncodeOptions,
    out: W,
    progress: &mut dyn FnMut(u64),
    hint: &mut dyn FnMut(SourceHint),
) -> Result<W, EncodeError> {
    options.validate()?;
    let mut writer = FileWriter::new(out, layout.kind, source_len)?;
    let batch_bytes =
        if rayon::current_num_threads() == 1 { BATCH_BYTES_ONE_THREAD } else { BATCH_BYTES };
    let batches = plan_batches(&layout.tensors, batch_bytes);
    let mut current = match batches.first() {
        Some(first) => Some(loader.load(&layout.tensors[first.clone()])?),
        None => None,
    };
    // The batch before, encoded, waiting to be written while this one is encoded.
    let mut pending: Vec<Result<EncodedTensor, EncodeError>> = Vec::new();
    let mut written = 0u64;
    // The gaps and their packed section, once every tensor is read.
    let mut gaps: Option<(Vec<u8>, PackedGaps)> = None;
    // The source bytes before this offset are done with (`SourceHint::DoneWith`).
    let mut done_to = 0;
    if let Some(first) = batches.first() {
        hint(SourceHint::WillNeed(batch_span(&layout.tensors[first.clone()])));
    }
    for (i, range) in batches.iter().enumerate() {
        let tensors = &layout.tensors[range.clone()];
        let data = current.take().expect("each batch is loaded before its turn");
        let next = batches.get(i + 1).map(|r| &layout.tensors[r.clone()]);
        let read_ahead = next.filter(|n| batch_len(n) <= READ_AHEAD_BYTES);
        // Once every tensor is read (here, or by this turn's read-ahead of the last batch) the
        // gaps are whole: packed beside a batch's coding (zstd on a GGUF file's metadata takes
        // milliseconds) rather than after all of it.
        let last_read = next.is_none() || (read_ahead.is_some() && i + 2 == batches.len());
        let pack_now = gaps.is_none() && last_read;
        if let Some(next) = next {
            hint(SourceHint::WillNeed(batch_span(next)));
        }
        let (encoded, (loaded, wrote, packed)) = rayon::join(
            || encode_batch(tensors, &data, options),
            || {
                let wrote = write_batch(&mut writer, std::mem::take(&mut pending));
                let loaded = read_ahead.map(|n| loader.load(n)).transpose();
                let packed = (pack_now && loaded.is_ok()).then(|| {
                    loader.take_gaps(source_len).map(|g| {
                        let packed = PackedGaps::new(&g);
                        (g, packed)
                    })
                });
                (loaded, wrote, packed)
            },
        );
        drop(data);
        // From the end of the batch before: the gap in between was read with this batch.
        let span = batch_span(tensors);
        hint(SourceHint::DoneWith(done_to..span.end));
        done_to = span.end;
        written += wrote?;
        progress(written);
        current = loaded?;
        pending = encoded;
        if let Some(packed) = packed {
            gaps = Some(packed?);
        }
        if current.is_none() {
            current = next.map(|n| loader.load(n)).transpose()?;
        }
    }
    written += write_batch(&mut writer, pending)?;
    progress(written);
    let (gaps, packed) = match gaps {
        Some((gaps, packed)) => (gaps, Some(packed)),
        None => (loader.take_gaps(source_len)?, None),
    };
    Ok(writer.finish_with(gaps, packed.as_ref())?)
}

/// The source bytes from a batch's first tensor to the end of its last.
fn batch_span(tensors: &[wcodec_container::SourceTensor]) -> std::ops::Range<u64> {
    let start = tensors.first().map_or(0, |t| t.offset);
    let end = tensors.last().map_or(start, |t| t.offset + t.len);
    start..end
}

/// Writes a batch's encoded tensors in order; returns their source bytes.
fn write_batch<W: std::io::Write>(
    writer: &mut FileWriter<W>,
    encoded: Vec<Result<EncodedTensor, EncodeError>>,
) -> Result<u64, EncodeError> {
    let mut bytes = 0;
    for tensor in encoded {
        let tensor = tensor?;
        bytes += tensor.entry.source_len;
        writer.add_tensor(tensor)?;
    }
    Ok(bytes)
}

/// Source bytes of small tensors encoded together (see `compress_source`).
const BATCH_BYTES: u64 = 16 << 20;
/// ... on one thread, where no write overlaps the encoding: the batch's coded units are still
/// in cache when they are written right after (one core: int8 per-row `--fast` encodes 1.05-1.07x
/// faster than with `BATCH_BYTES`, which two threads need to keep both busy).
const BATCH_BYTES_ONE_THREAD: u64 = 1 << 20;
/// The largest next batch read while the current one is encoded (larger ones, single large
/// tensors, are read after it: memory then holds at most one large tensor).
const READ_AHEAD_BYTES: u64 = 64 << 20;

/// Consecutive tensors grouped into batches of about `batch_bytes`; a tensor of at least
/// `batch_bytes` makes a batch alone.
fn plan_batches(
    tensors: &[wcodec_container::SourceTensor],
    batch_bytes: u64,
) -> Vec<std::ops::Range<usize>> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, t) in tensors.iter().enumerate() {
        if t.len >= batch_bytes {
            if start < i {
                batches.push(start..i);
            }
            batches.push(i..i + 1);
            (start, bytes) = (i + 1, 0);
            continue;
        }
        bytes += t.len;
        if bytes >= batch_bytes {
            batches.push(start..i + 1);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < tensors.len() {
        batches.push(start..tensors.len());
    }
    batches
}

fn batch_len(tensors: &[wcodec_container::SourceTensor]) -> u64 {
    tensors.iter().map(|t| t.len).sum()
}

/// Encodes a batch's tensors in parallel; results in source order.
fn encode_batch(
    tensors: &[wcodec_container::SourceTensor],
    data: &[Cow<[u8]>],
    options: &EncodeOptions,
) -> Vec<Result<EncodedTensor, EncodeError>> {
    tensors
        .par_iter()
        .zip(data)
        .map(|(t, bytes)| {
            let input = TensorInput {
                name: &t.name,
                dtype: t.dtype,
                dims: &t.dims,
                bytes: &bytes[..],
                source_offset: t.offset,
            };
            encode_tensor(&input, options)
        })
        .collect()
}

/// Where the source's bytes come from: memory (borrowed as they are) or a reader (copied into
/// buffers).
enum Origin<'s, 'r> {
    Memory(&'s [u8]),
    Read(&'r mut (dyn FnMut(u64, &mut Vec<u8>) -> std::io::Result<()> + Send)),
}

/// Reads the source in order: tensors' bytes for the encoder, everything between them into
/// the gaps.
struct Loader<'s, 'r> {
    origin: Origin<'s, 'r>,
    cursor: u64,
    gaps: Vec<u8>,
}

impl<'s> Loader<'s, '_> {
    fn fill(&mut self, offset: u64, len: u64) -> std::io::Result<Cow<'s, [u8]>> {
        match &mut self.origin {
            Origin::Memory(source) => {
                let source: &'s [u8] = source;
                Ok(Cow::Borrowed(&source[offset as usize..(offset + len) as usize]))
            }
            Origin::Read(read) => {
                let mut buf = vec![0u8; len as usize];
                read(offset, &mut buf)?;
                Ok(Cow::Owned(buf))
            }
        }
    }

    /// The bytes of `tensors` (which follow the tensors loaded before), and the gaps before
    /// each.
    fn load(
        &mut self,
        tensors: &[wcodec_container::SourceTensor],
    ) -> std::io::Result<Vec<Cow<'s, [u8]>>> {
        let mut data = Vec::with_capacity(tensors.len());
        for t in tensors {
            let gap = self.fill(self.cursor, t.offset - self.cursor)?;
            self.gaps.extend_from_slice(&gap);
            data.push(self.fill(t.offset, t.len)?);
            self.cursor = t.offset + t.len;
        }
        Ok(data)
    }

    /// The gaps, once every tensor is loaded: those collected, then the source's tail.
    fn take_gaps(&mut self, source_len: u64) -> std::io::Result<Vec<u8>> {
        let tail = self.fill(self.cursor, source_len - self.cursor)?;
        self.gaps.extend_from_slice(&tail);
        self.cursor = source_len;
        Ok(std::mem::take(&mut self.gaps))
    }
}

/// Compresses one raw tensor (a file holding only the tensor's bytes).
pub fn compress_raw(
    bytes: &[u8],
    dtype: Dtype,
    dims: &[u64],
    options: &EncodeOptions,
) -> Result<Vec<u8>, EncodeError> {
    let input = TensorInput { name: "tensor", dtype, dims, bytes, source_offset: 0 };
    let encoded = encode_tensor(&input, options)?;
    // Room for the whole file up front (the payload, the directory, header and trailer): a
    // growing Vec would copy what it holds at every doubling.
    let len = encoded.payload.len();
    let out = Vec::with_capacity(len + len / 64 + (64 << 10));
    let mut writer = FileWriter::new(out, SourceKind::Raw, bytes.len() as u64)?;
    writer.add_tensor_in_memory(encoded)?;
    Ok(writer.finish(Vec::new())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wcodec_container::SourceTensor;

    fn tensor(len: u64) -> SourceTensor {
        SourceTensor { name: String::new(), dtype: Dtype::U8, dims: vec![len], offset: 0, len }
    }

    #[test]
    fn batches_group_small_tensors_and_isolate_large_ones() {
        let mb = 1 << 20;
        let sizes = [mb, 2 * mb, 20 * mb, 10 * mb, 10 * mb, mb, 0, 40 * mb, mb];
        let tensors: Vec<SourceTensor> = sizes.iter().map(|&s| tensor(s)).collect();
        let batches = plan_batches(&tensors, BATCH_BYTES);
        assert_eq!(batches, vec![0..2, 2..3, 3..5, 5..7, 7..8, 8..9]);
        assert!(plan_batches(&[], BATCH_BYTES).is_empty());
        let batches = plan_batches(&tensors, BATCH_BYTES_ONE_THREAD);
        assert_eq!(batches, vec![0..1, 1..2, 2..3, 3..4, 4..5, 5..6, 6..7, 7..8, 8..9]);
    }

    /// Hints cover the source in order: each batch is announced (`WillNeed`) before the
    /// bytes up to its end are done with (`DoneWith`, contiguous from the start of the file to
    /// the last tensor's end), and the file is the one `compress_file` writes.
    #[test]
    fn hints_announce_each_batch_and_release_the_source_in_order() {
        // A header, then five tensors of 600 KB with gaps between: on one thread, batches of
        // about `BATCH_BYTES_ONE_THREAD` bytes (1 MiB): two tensors, two, one.
        let header = 4096u64;
        let mut tensors = Vec::new();
        let mut end = header;
        for i in 0..5u64 {
            let offset = end + 64 * i;
            tensors.push(SourceTensor { offset, ..tensor(600_000) });
            end = offset + 600_000;
        }
        let mut x = 0x1234_5678_9abc_def0u64;
        let source: Vec<u8> = (0..end + 100)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 59) as u8
            })
            .collect();
        let layout = wcodec_container::SourceLayout { kind: SourceKind::Raw, tensors };
        let options = EncodeOptions::fast();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a pool");
        let (hinted, hints) = pool.install(|| {
            let mut hints = Vec::new();
            let out = compress_file_hinted(
                &source,
                &layout,
                &options,
                Vec::new(),
                &mut |_| {},
                &mut |h| hints.push(h),
            );
            (out.expect("compresses"), hints)
        });
        let plain = compress_file(&source, &layout, &options, Vec::new(), &mut |_| {});
        assert!(hinted == plain.expect("compresses"), "the hints change nothing in the file");
        let mut announced = Vec::new();
        let mut done_to = 0;
        for hint in &hints {
            match hint {
                SourceHint::WillNeed(range) => announced.push(range.clone()),
                SourceHint::DoneWith(range) => {
                    assert_eq!(range.start, done_to, "released in order, without holes");
                    assert!(
                        announced.iter().any(|a| a.end == range.end),
                        "{range:?} was announced before it was released"
                    );
                    done_to = range.end;
                }
            }
        }
        let batches = plan_batches(&layout.tensors, BATCH_BYTES_ONE_THREAD);
        assert_eq!(batches.len(), 3);
        assert_eq!(announced.len(), batches.len(), "each batch announced once: {hints:?}");
        assert_eq!(done_to, end, "released up to the last tensor's end");
    }

    /// A source read through `compress_source`'s reader (copied a batch at a time, the next
    /// batch read ahead while one is encoded) gives the file `compress_file` gives from memory,
    /// on one thread and on two. The CLI encodes from a memory map; this is the path of
    /// callers that can only read.
    #[test]
    fn a_read_source_compresses_as_one_in_memory() {
        let mut tensors = Vec::new();
        let mut end = 1000u64;
        for (i, len) in [300_000u64, 2_000_000, 50_000, 700_000].into_iter().enumerate() {
            let offset = end + 32 * i as u64;
            tensors.push(SourceTensor { offset, ..tensor(len) });
            end = offset + len;
        }
        let mut x = 0x0dd_ba11_u64;
        let source: Vec<u8> = (0..end + 77)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 60) as u8 + 120
            })
            .collect();
        let layout = wcodec_container::SourceLayout { kind: SourceKind::Raw, tensors };
        let options = EncodeOptions::default();
        for threads in [1, 2] {
            let pool =
                rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a pool");
            let (read, in_memory) = pool.install(|| {
                let mut reader = |offset: u64, buf: &mut Vec<u8>| {
                    let n = buf.len();
                    buf.copy_from_slice(&source[offset as usize..][..n]);
                    Ok(())
                };
                let len = source.len() as u64;
                let read =
                    compress_source(len, &layout, &mut reader, &options, Vec::new(), &mut |_| {});
                (read, compress_file(&source, &layout, &options, Vec::new(), &mut |_| {}))
            });
            assert!(
                read.expect("compresses") == in_memory.expect("compresses"),
                "{threads} threads"
            );
        }
    }

    /// The most tables any plane of a tensor took.
    fn most_tables(encoded: &EncodedTensor) -> usize {
        let tables = |p: &PlaneEntry| match &p.encoding {
            wcodec_format::PlaneEncoding::Rans { tables, .. } => tables.len(),
            wcodec_format::PlaneEncoding::Raw { .. } => 0,
        };
        encoded.entry.planes.iter().map(tables).max().unwrap_or(0)
    }

    /// Rows of quants that differ in spread take row classes as an int8 tensor, and one table
    /// a plane as the quants of a block type (Q8_0: an fp16 scale, then 32 int8 a block).
    #[test]
    fn block_types_take_one_table_a_plane() {
        let (rows, cols) = (256usize, 1024usize);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let quants: Vec<u8> = (0..rows * cols)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let spread = if (i / cols) % 2 == 0 { 7 } else { 255 };
                ((x >> 24) % spread) as u8
            })
            .collect();
        let blocks: Vec<u8> = quants
            .chunks_exact(32)
            .flat_map(|q| [0x00, 0x3c].iter().chain(q).copied().collect::<Vec<u8>>())
            .collect();
        let options = EncodeOptions::default();
        let encode = |dtype: Dtype, bytes: &[u8], options: &EncodeOptions| {
            let dims = [rows as u64, cols as u64];
            let input = TensorInput { name: "t", dtype, dims: &dims, bytes, source_offset: 0 };
            encode_tensor(&input, options).expect("encodes")
        };
        assert!(most_tables(&encode(Dtype::I8, &quants, &options)) > 1, "the rows differ enough");
        assert_eq!(most_tables(&encode(Dtype::Q8_0, &blocks, &options)), 1);
        // Where asked for, block types take row classes too.
        let asked = EncodeOptions { block_tables: 8, ..options.clone() };
        assert!(most_tables(&encode(Dtype::Q8_0, &blocks, &asked)) > 1);
    }

    /// Predictors of a tensor's last plane, one a unit.
    fn last_plane_predictors(encoded: &EncodedTensor) -> Vec<Predictor> {
        match &encoded.entry.planes.last().expect("a plane").encoding {
            wcodec_format::PlaneEncoding::Rans { units, .. } => {
                units.iter().map(|u| u.predictor).collect()
            }
            wcodec_format::PlaneEncoding::Raw { .. } => Vec::new(),
        }
    }

    /// Quants whose every row repeats the one above are predicted (TOP) as an int8 tensor,
    /// not as the quants of a block type.
    #[test]
    fn quants_of_block_types_are_not_predicted() {
        let (rows, cols) = (256usize, 1024usize);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let row: Vec<u8> = (0..cols)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let quants = row.repeat(rows);
        let blocks: Vec<u8> = quants
            .chunks_exact(32)
            .flat_map(|q| [0x00, 0x3c].iter().chain(q).copied().collect::<Vec<u8>>())
            .collect();
        let options = EncodeOptions::default();
        let encode = |dtype: Dtype, bytes: &[u8]| {
            let dims = [rows as u64, cols as u64];
            let input = TensorInput { name: "t", dtype, dims: &dims, bytes, source_offset: 0 };
            encode_tensor(&input, &options).expect("encodes")
        };
        let int8 = last_plane_predictors(&encode(Dtype::I8, &quants));
        assert!(int8.contains(&Predictor::Top), "{int8:?}");
        let q8_0 = last_plane_predictors(&encode(Dtype::Q8_0, &blocks));
        assert!(!q8_0.is_empty() && q8_0.iter().all(|&p| p == Predictor::None), "{q8_0:?}");
    }
}
