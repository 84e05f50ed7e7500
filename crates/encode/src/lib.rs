//! The two-pass CPU encoder of wcodec.
//!
//! Pass 1 measures: per tile it picks a predictor by the cost of its residuals and counts their
//! histogram; the tiles' histograms make the plane's frequency tables (one, or several with a
//! per-tile choice when that pays). Pass 2 codes every tile as an independent rANS unit. Tiles
//! are processed in parallel with rayon; the output does not depend on the thread count.
#![forbid(unsafe_code)]

mod plane;
mod tables;
mod writer;

use plane::encode_plane_into;
pub use plane::{EncodedPlane, encode_plane};
pub use tables::choose_tables;
pub use writer::FileWriter;

use rayon::prelude::*;
use wcodec_format::{Dtype, PlaneEntry, Predictor, SourceKind, TensorEntry, Transform};
use wcodec_predict::{TileConfig, plane_is_signed, split_planes};

/// Encoder settings. `Default` is what the CLI uses.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// Requested tile shape (planes with few rows get wider tiles of the same area).
    pub tile: TileConfig,
    /// Probability precision of the frequency tables, 8..=12.
    pub prob_bits: u8,
    /// Predictors the encoder may choose per tile.
    pub predictors: Vec<Predictor>,
    /// Most frequency tables per plane (1 disables the per-tile table choice).
    pub max_tables: u8,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            tile: TileConfig::default(),
            prob_bits: 12,
            predictors: Predictor::ALL.to_vec(),
            max_tables: 8,
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
/// and the payload bytes of its planes, each plane starting 64-byte aligned.
#[derive(Clone, Debug)]
pub struct EncodedTensor {
    pub entry: TensorEntry,
    pub payload: Vec<u8>,
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
    /// Settings for files decoded on a GPU: 64x128 tiles (enough units to fill the GPU with
    /// one layer), 11-bit probabilities and one table per plane (row classes make the kernel
    /// wait on table loads). On an H100 (docs/PERFORMANCE.md) MiniLM int8 decodes at 609 GB/s
    /// with one table against 483 with up to 4, for 1% less ratio (1.661 against 1.677).
    pub fn for_gpu() -> Self {
        EncodeOptions {
            tile: TileConfig { rows: 64, cols: 128 },
            prob_bits: 11,
            max_tables: 1,
            ..Default::default()
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
        if self.max_tables == 0 {
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
    let shapes = transform.plane_shapes(input.dtype, rows, cols);
    // Identity needs no copy: its one plane is the tensor's bytes.
    let split;
    let planes: Vec<&[u8]> = if transform == Transform::Identity {
        vec![input.bytes]
    } else {
        split = split_planes(input.bytes, input.dtype, transform);
        split.iter().map(Vec::as_slice).collect()
    };
    let mut payload = Vec::new();
    let mut entries: Vec<PlaneEntry> = Vec::with_capacity(planes.len());
    let mut order0_bits = 0.0;
    for (j, (bytes, &(prows, pcols))) in planes.iter().zip(&shapes).enumerate() {
        let bias128 = plane_is_signed(input.dtype, transform, j);
        let start = payload.len().next_multiple_of(wcodec_format::records::PAYLOAD_ALIGN as usize);
        payload.resize(start, 0);
        let (mut entry, bits) = encode_plane_into(
            bytes,
            prows as usize,
            pcols as usize,
            bias128,
            options,
            &mut payload,
        );
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
            crc32c: crc32c::crc32c(input.bytes),
            order0_bytes: (order0_bits / 8.0).ceil() as u64,
            planes: entries,
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
pub fn compress_file<W: std::io::Write>(
    source: &[u8],
    layout: &wcodec_container::SourceLayout,
    options: &EncodeOptions,
    out: W,
    progress: &mut dyn FnMut(u64),
) -> Result<W, EncodeError> {
    let mut read = |offset: u64, buf: &mut Vec<u8>| {
        let start = offset as usize;
        let len = buf.len();
        buf.copy_from_slice(&source[start..start + len]);
        Ok(())
    };
    compress_source(source.len() as u64, layout, &mut read, options, out, progress)
}

/// Compresses a source of `source_len` bytes read through `read(offset, buf)` (which fills
/// `buf`, sized by the caller, from `offset`; one buffer is reused), one tensor at a
/// time: memory holds the tensor being encoded, not the model. Tensors are encoded in
/// parallel over their tiles and written as they are done; the bytes outside every tensor
/// (headers, metadata, padding) are gathered into the directory's gaps.
pub fn compress_source<W: std::io::Write>(
    source_len: u64,
    layout: &wcodec_container::SourceLayout,
    read: &mut dyn FnMut(u64, &mut Vec<u8>) -> std::io::Result<()>,
    options: &EncodeOptions,
    out: W,
    progress: &mut dyn FnMut(u64),
) -> Result<W, EncodeError> {
    options.validate()?;
    let mut writer = FileWriter::new(out, layout.kind, source_len)?;
    let mut gaps = Vec::new();
    let mut cursor = 0u64;
    let mut done = 0u64;
    let mut bytes = Vec::new();
    let mut fill = |offset: u64, len: u64, buf: &mut Vec<u8>| -> std::io::Result<()> {
        buf.resize(len as usize, 0);
        read(offset, buf)
    };
    // Small tensors are encoded a batch at a time, in parallel (a model's norms, biases and
    // small matrices give the tile-level parallelism too little to spread); a batch holds at
    // most BATCH_BYTES of source, so memory stays bounded. Output order is source order.
    let mut batch: Vec<(&wcodec_container::SourceTensor, Vec<u8>)> = Vec::new();
    let mut batch_bytes = 0u64;
    let mut flush = |batch: &mut Vec<(&wcodec_container::SourceTensor, Vec<u8>)>,
                     writer: &mut FileWriter<W>|
     -> Result<(), EncodeError> {
        let encoded: Vec<Result<EncodedTensor, EncodeError>> = batch
            .par_iter()
            .map(|(t, data)| {
                let input = TensorInput {
                    name: &t.name,
                    dtype: t.dtype,
                    dims: &t.dims,
                    bytes: data,
                    source_offset: t.offset,
                };
                encode_tensor(&input, options)
            })
            .collect();
        for (tensor, (t, _)) in encoded.into_iter().zip(batch.iter()) {
            writer.add_tensor(tensor?)?;
            done += t.len;
            progress(done);
        }
        batch.clear();
        Ok(())
    };
    for t in &layout.tensors {
        fill(cursor, t.offset - cursor, &mut bytes)?;
        gaps.extend_from_slice(&bytes);
        cursor = t.offset + t.len;
        if t.len >= BATCH_BYTES {
            // A large tensor alone: its tiles are enough parallel work.
            flush(&mut batch, &mut writer)?;
            batch_bytes = 0;
            fill(t.offset, t.len, &mut bytes)?;
            batch.push((t, std::mem::take(&mut bytes)));
            flush(&mut batch, &mut writer)?;
            continue;
        }
        let mut data = Vec::new();
        fill(t.offset, t.len, &mut data)?;
        batch_bytes += t.len;
        batch.push((t, data));
        if batch_bytes >= BATCH_BYTES {
            flush(&mut batch, &mut writer)?;
            batch_bytes = 0;
        }
    }
    flush(&mut batch, &mut writer)?;
    fill(cursor, source_len - cursor, &mut bytes)?;
    gaps.extend_from_slice(&bytes);
    Ok(writer.finish(gaps)?)
}

/// Source bytes of small tensors encoded together (see `compress_source`).
const BATCH_BYTES: u64 = 16 << 20;

/// Compresses one raw tensor (a file holding only the tensor's bytes).
pub fn compress_raw(
    bytes: &[u8],
    dtype: Dtype,
    dims: &[u64],
    options: &EncodeOptions,
) -> Result<Vec<u8>, EncodeError> {
    let input = TensorInput { name: "tensor", dtype, dims, bytes, source_offset: 0 };
    let encoded = encode_tensor(&input, options)?;
    let mut writer = FileWriter::new(Vec::new(), SourceKind::Raw, bytes.len() as u64)?;
    writer.add_tensor(encoded)?;
    Ok(writer.finish(Vec::new())?)
}
