//! CPU decoders of wcodec.
//!
//! `decode_tensor_reference` is the plain sequential decoder (`Parallelism::Sequential`): one
//! unit after another on the scalar coder, the oracle every faster path (threads, SIMD, CUDA) is
//! tested against. The production path (`Parallelism::Rayon`, module `fast`) decodes bands of
//! every tensor of a span in parallel straight into the output, bit-identical to the reference.
//! Both verify every checksum and every unit's final states, so a damaged file is an error,
//! never a wrong tensor.
#![deny(unsafe_code)]

mod dest;
mod fast;
mod merge;

use dest::{Dest, fresh_vec};

use wcodec_format::{Directory, FormatError, PlaneEncoding, PlaneEntry, TensorEntry};
use wcodec_predict::{Tile, merge_planes_reference, reconstruct};
use wcodec_rans::{DecodeTable, Path, RansError, TableMap, decode_unit_with};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("tensor {tensor:?}, plane {plane}, unit {unit}: {source}")]
    Unit { tensor: String, plane: usize, unit: usize, source: RansError },
    #[error("checksum mismatch in {what}: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { what: String, stored: u32, computed: u32 },
    #[error("payload of tensor {tensor:?} lies outside the file")]
    OutOfBounds { tensor: String },
    #[error(
        "{what} would decode to {claimed} bytes from a file of {file_len} bytes, beyond the \
         limit of {max_expansion} times the file's size (damaged or hostile file?)"
    )]
    TooLarge { what: String, claimed: u64, file_len: u64, max_expansion: u64 },
    #[error("the output buffer holds {given} bytes; the file decodes to {needed}")]
    OutputLength { given: u64, needed: u64 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Bounds on what decoding an untrusted file may cost. The format already bounds a unit's
/// expansion (at most 2^22 symbols from 128 bytes of states and a 24-byte record, about
/// 27,600x); these limits bound the whole output, and with it the memory (one tensor and its
/// planes at a time) and the time of a decode, by the real size of the file, checked before
/// anything is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of output (the rebuilt source, gaps included) per byte of the .wcz file.
    pub max_expansion: u64,
}

impl Limits {
    /// Output up to 1024 times the file's size. A constant tensor coded with the default
    /// 256x256 tiles expands about 431x (65,536 symbols from a 128-byte unit and its 24-byte
    /// record), so every file written with the default tiles is within it; tiles of more than
    /// ~155,000 symbols of constant data may need a higher limit.
    pub const DEFAULT_MAX_EXPANSION: u64 = 1024;

    /// No limit beyond the format's own.
    pub const NONE: Limits = Limits { max_expansion: u64::MAX };

    /// The most bytes a file of `file_len` bytes may decode to.
    pub fn max_output(&self, file_len: u64) -> u64 {
        file_len.saturating_mul(self.max_expansion)
    }

    /// Checks that `claimed` bytes of output (`what`) are within the limit for a file of
    /// `file_len` bytes.
    pub fn check(
        &self,
        what: impl FnOnce() -> String,
        claimed: u64,
        file_len: u64,
    ) -> Result<(), DecodeError> {
        if claimed > self.max_output(file_len) {
            return Err(DecodeError::TooLarge {
                what: what(),
                claimed,
                file_len,
                max_expansion: self.max_expansion,
            });
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_expansion: Self::DEFAULT_MAX_EXPANSION }
    }
}

/// Whether units are decoded one after another or spread over rayon's threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parallelism {
    Sequential,
    Rayon,
}

use wcodec_format::crc32c;

fn checked_crc(
    what: impl FnOnce() -> String,
    bytes: &[u8],
    stored: u32,
) -> Result<(), DecodeError> {
    let computed = crc32c(bytes);
    if computed != stored {
        return Err(DecodeError::Checksum { what: what(), stored, computed });
    }
    Ok(())
}

/// The tables of unit `i` of a rANS plane: one, its tile's rows' classes, or its tile's
/// columns' (the parser checked that the maps cover the plane).
pub(crate) fn unit_table_map(plane: &PlaneEntry, i: usize) -> TableMap<'_> {
    let PlaneEncoding::Rans { row_tables, col_tables, .. } = &plane.encoding else {
        unreachable!("a rANS plane")
    };
    let (r0, c0, h, w) = plane.tile_rect(i);
    let (r0, c0, h, w) = (r0 as usize, c0 as usize, h as usize, w as usize);
    if !col_tables.is_empty() {
        TableMap::Cols { col_tables, first: c0, width: w }
    } else if !row_tables.is_empty() {
        TableMap::Rows { row_tables: &row_tables[r0..r0 + h], width: w }
    } else {
        TableMap::Single
    }
}

/// Decodes the residuals of unit `i` of a rANS plane into `buf` with the scalar coder, after
/// checking the unit's CRC.
fn decode_residuals(
    file: &[u8],
    tensor: &TensorEntry,
    plane_index: usize,
    plane: &PlaneEntry,
    i: usize,
    tables: &[DecodeTable],
    buf: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    let PlaneEncoding::Rans { units, .. } = &plane.encoding else {
        unreachable!("decode_residuals is only called for rANS planes")
    };
    let unit = &units[i];
    let start = plane.payload_offset + unit.offset;
    let bytes = file
        .get(start as usize..(start + u64::from(unit.len)) as usize)
        .ok_or_else(|| DecodeError::OutOfBounds { tensor: tensor.name.clone() })?;
    checked_crc(
        || format!("tensor {:?} plane {plane_index} unit {i}", tensor.name),
        bytes,
        unit.crc32c,
    )?;
    let (_, _, h, w) = plane.tile_rect(i);
    buf.resize((h * w) as usize, 0);
    decode_unit_with(Path::Scalar, bytes, tables, unit_table_map(plane, i), buf).map_err(|source| {
        DecodeError::Unit { tensor: tensor.name.clone(), plane: plane_index, unit: i, source }
    })
}

/// Decodes one plane into `out` (`rows * cols` bytes), tile after tile: the reference.
fn decode_plane(
    file: &[u8],
    tensor: &TensorEntry,
    plane_index: usize,
    plane: &PlaneEntry,
    out: &mut [u8],
) -> Result<(), DecodeError> {
    let payload = || {
        file.get(plane.payload_offset as usize..(plane.payload_offset + plane.payload_len) as usize)
            .ok_or_else(|| DecodeError::OutOfBounds { tensor: tensor.name.clone() })
    };
    let PlaneEncoding::Rans { prob_bits, tables, units, .. } = &plane.encoding else {
        let PlaneEncoding::Raw { crc32c } = &plane.encoding else { unreachable!() };
        let bytes = payload()?;
        checked_crc(
            || format!("tensor {:?} raw plane {plane_index}", tensor.name),
            bytes,
            *crc32c,
        )?;
        out.copy_from_slice(bytes);
        return Ok(());
    };
    payload()?;
    if out.is_empty() {
        return Ok(());
    }
    let tables: Vec<DecodeTable> =
        tables.iter().map(|t| DecodeTable::new(t, *prob_bits)).collect::<Result<_, _>>().map_err(
            |source| DecodeError::Unit {
                tensor: tensor.name.clone(),
                plane: plane_index,
                unit: 0,
                source,
            },
        )?;
    let bias = if plane.bias128 { 0x80 } else { 0 };
    let mut residuals = Vec::new();
    for (i, unit) in units.iter().enumerate() {
        decode_residuals(file, tensor, plane_index, plane, i, &tables, &mut residuals)?;
        let (r0, c0, h, w) = plane.tile_rect(i);
        let tile = Tile { r0: r0 as usize, c0: c0 as usize, h: h as usize, w: w as usize };
        reconstruct(&residuals, unit.predictor, bias, out, plane.cols as usize, tile);
    }
    Ok(())
}

/// Decodes a tensor's original bytes into `out` (`source_len` bytes) and checks its CRC.
pub fn decode_tensor_into(
    file: &[u8],
    tensor: &TensorEntry,
    parallelism: Parallelism,
    out: &mut [u8],
) -> Result<(), DecodeError> {
    assert_eq!(out.len() as u64, tensor.source_len, "output sized to the tensor");
    if parallelism == Parallelism::Rayon {
        return fast::decode_tensors(file, &[tensor], vec![Dest::of_bytes(out)], fast::BAND_BYTES);
    }
    if let [plane] = tensor.planes.as_slice() {
        // One plane holds the tensor's bytes as they are: decode in place.
        decode_plane(file, tensor, 0, plane, out)?;
        return checked_crc(|| format!("tensor {:?}", tensor.name), out, tensor.crc32c);
    }
    let mut planes = Vec::with_capacity(tensor.planes.len());
    for (j, plane) in tensor.planes.iter().enumerate() {
        let mut bytes = vec![0u8; plane.len() as usize];
        decode_plane(file, tensor, j, plane, &mut bytes)?;
        planes.push(bytes);
    }
    let refs: Vec<&[u8]> = planes.iter().map(Vec::as_slice).collect();
    merge_planes_reference(&refs, tensor.dtype, tensor.transform, out);
    checked_crc(|| format!("tensor {:?}", tensor.name), out, tensor.crc32c)
}

/// Checks a tensor's size against the default limits before its buffer is allocated.
fn check_tensor(file: &[u8], tensor: &TensorEntry) -> Result<(), DecodeError> {
    check_tensor_within(file, tensor, &Limits::default())
}

fn check_tensor_within(
    file: &[u8],
    tensor: &TensorEntry,
    limits: &Limits,
) -> Result<(), DecodeError> {
    let what = || format!("tensor {:?}", tensor.name);
    limits.check(what, tensor.source_len, file.len() as u64)
}

/// Decodes a tensor's original bytes within `limits`, relative to `file` (the whole .wcz, or
/// the part of it that holds the tensor's payload, with the tensor's offsets relative to it).
pub fn decode_tensor_limited(
    file: &[u8],
    tensor: &TensorEntry,
    parallelism: Parallelism,
    limits: &Limits,
) -> Result<Vec<u8>, DecodeError> {
    check_tensor_within(file, tensor, limits)?;
    decode_tensor_to_vec(file, tensor, parallelism)
}

/// A tensor decoded into a new vector: on the fast path, a fresh one that each band zeroes
/// just before it is decoded, not all of it up front.
fn decode_tensor_to_vec(
    file: &[u8],
    tensor: &TensorEntry,
    parallelism: Parallelism,
) -> Result<Vec<u8>, DecodeError> {
    if parallelism == Parallelism::Rayon {
        return fast_to_vec(file, tensor, fast::BAND_BYTES);
    }
    let mut out = vec![0u8; tensor.source_len as usize];
    decode_tensor_into(file, tensor, parallelism, &mut out)?;
    Ok(out)
}

/// The fast path into a fresh vector, in bands of about `band_bytes`.
fn fast_to_vec(
    file: &[u8],
    tensor: &TensorEntry,
    band_bytes: usize,
) -> Result<Vec<u8>, DecodeError> {
    fresh_vec(tensor.source_len as usize, |out| {
        fast::decode_tensors(file, &[tensor], vec![out], band_bytes)
    })
}

/// Decodes a tensor's original bytes (parallel over units), within the default limits.
pub fn decode_tensor(file: &[u8], tensor: &TensorEntry) -> Result<Vec<u8>, DecodeError> {
    check_tensor(file, tensor)?;
    decode_tensor_to_vec(file, tensor, Parallelism::Rayon)
}

/// The fast path with bands of about `band_bytes` (at least one row of tiles): for tests of the
/// band logic on small tensors.
#[doc(hidden)]
pub fn decode_tensor_in_bands(
    file: &[u8],
    tensor: &TensorEntry,
    band_bytes: usize,
) -> Result<Vec<u8>, DecodeError> {
    check_tensor(file, tensor)?;
    fast_to_vec(file, tensor, band_bytes)
}

/// The reference decoder: one unit after another, no threads. The oracle for faster paths.
pub fn decode_tensor_reference(file: &[u8], tensor: &TensorEntry) -> Result<Vec<u8>, DecodeError> {
    check_tensor(file, tensor)?;
    let mut out = vec![0u8; tensor.source_len as usize];
    decode_tensor_into(file, tensor, Parallelism::Sequential, &mut out)?;
    Ok(out)
}

/// Rebuilds the original file: gaps and tensors in source order, streamed to `sink` one
/// tensor at a time, within the default limits. `progress` gets the source bytes written so
/// far.
pub fn rebuild_source<W: std::io::Write>(
    file: &[u8],
    directory: &Directory,
    parallelism: Parallelism,
    sink: W,
    progress: &mut dyn FnMut(u64),
) -> Result<W, DecodeError> {
    rebuild_source_limited(file, directory, parallelism, &Limits::default(), sink, progress)
}

/// `rebuild_source` within `limits`: the size of the whole output is checked against them
/// before anything is decoded or allocated. The reference (`Parallelism::Sequential`) decodes
/// tensor after tensor; the fast path decodes spans of tensors of up to [`SPAN_BYTES`] (or one
/// larger tensor) at a time, in parallel, into one reused buffer.
pub fn rebuild_source_limited<W: std::io::Write>(
    file: &[u8],
    directory: &Directory,
    parallelism: Parallelism,
    limits: &Limits,
    mut sink: W,
    progress: &mut dyn FnMut(u64),
) -> Result<W, DecodeError> {
    limits.check(|| "the file".to_owned(), directory.source_len, file.len() as u64)?;
    if parallelism == Parallelism::Rayon {
        let mut buf = Vec::new();
        for span in source_spans(directory, SPAN_BYTES) {
            let len = (span.end - span.start) as usize;
            if buf.len() < len {
                buf.resize(len, 0);
            }
            let out = &mut buf[..len];
            let (tensors, gaps) = (&directory.tensors[span.tensors], &directory.gaps[span.gaps]);
            decode_source_span(file, tensors, gaps, span.start, out)?;
            sink.write_all(out)?;
            progress(span.end);
        }
        return Ok(sink);
    }
    let mut cursor = 0u64;
    let mut gap_pos = 0usize;
    for tensor in &directory.tensors {
        let gap = (tensor.source_offset - cursor) as usize;
        sink.write_all(&directory.gaps[gap_pos..gap_pos + gap])?;
        gap_pos += gap;
        let mut bytes = vec![0u8; tensor.source_len as usize];
        decode_tensor_into(file, tensor, parallelism, &mut bytes)?;
        sink.write_all(&bytes)?;
        cursor = tensor.source_offset + tensor.source_len;
        progress(cursor);
    }
    sink.write_all(&directory.gaps[gap_pos..])?;
    progress(directory.source_len);
    Ok(sink)
}

/// Bytes of source a streaming decoder rebuilds at a time (more when one tensor is larger).
pub const SPAN_BYTES: u64 = 32 << 20;

/// A part of the source: consecutive tensors with the gaps before each of them (and, for the
/// last span, after the last).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceSpan {
    /// Indices into `Directory::tensors`.
    pub tensors: std::ops::Range<usize>,
    /// The span's bytes of the gaps section.
    pub gaps: std::ops::Range<usize>,
    /// Source offsets of the span.
    pub start: u64,
    pub end: u64,
}

/// Cuts the source of a (validated) directory into spans of at most `max_bytes`, or of one
/// tensor where it is larger, that cover it in order.
pub fn source_spans(directory: &Directory, max_bytes: u64) -> Vec<SourceSpan> {
    let mut spans = Vec::new();
    let mut span = SourceSpan { tensors: 0..0, gaps: 0..0, start: 0, end: 0 };
    // The end of the previous tensor, and the gap bytes before it.
    let (mut cursor, mut gap_pos) = (0u64, 0usize);
    for (i, t) in directory.tensors.iter().enumerate() {
        let end = t.source_offset + t.source_len;
        if i > span.tensors.start && end - span.start > max_bytes {
            (span.tensors.end, span.gaps.end, span.end) = (i, gap_pos, cursor);
            spans.push(span);
            span = SourceSpan { tensors: i..i, gaps: gap_pos..gap_pos, start: cursor, end: cursor };
        }
        gap_pos += (t.source_offset - cursor) as usize;
        cursor = end;
    }
    (span.tensors.end, span.gaps.end, span.end) =
        (directory.tensors.len(), directory.gaps.len(), directory.source_len);
    spans.push(span);
    spans
}

/// Rebuilds the part of the source from `start` that holds `tensors` (consecutive tensors of a
/// directory, in source order) and the gaps around them into `out`: `gaps` are that part's
/// bytes of the gaps section (those before each tensor, then those after the last up to the
/// end of `out`). Tensors are decoded in parallel and checked as by [`decode_tensor`].
pub fn decode_source_span(
    file: &[u8],
    tensors: &[TensorEntry],
    gaps: &[u8],
    start: u64,
    out: &mut [u8],
) -> Result<(), DecodeError> {
    decode_span(file, tensors, gaps, start, Dest::of_bytes(out))
}

/// [`decode_source_span`] into a [`Dest`].
fn decode_span(
    file: &[u8],
    tensors: &[TensorEntry],
    gaps: &[u8],
    start: u64,
    out: Dest,
) -> Result<(), DecodeError> {
    let mismatch = || FormatError::invalid("source span", "tensors and gaps do not fill it");
    let mut outs = Vec::with_capacity(tensors.len());
    let (mut rest, mut pos, mut gap_pos) = (out, start, 0usize);
    for t in tensors {
        let gap = t.source_offset.checked_sub(pos).ok_or_else(mismatch)? as usize;
        let len = t.source_len as usize;
        if gap.checked_add(len).is_none_or(|n| n > rest.len()) || gap > gaps.len() - gap_pos {
            return Err(mismatch().into());
        }
        let (here, tail) = rest.split_at(gap);
        here.into_bytes().copy_from_slice(&gaps[gap_pos..gap_pos + gap]);
        gap_pos += gap;
        let (tensor_out, tail) = tail.split_at(len);
        outs.push(tensor_out);
        rest = tail;
        pos = t.source_offset + t.source_len;
    }
    if gaps.len() - gap_pos != rest.len() {
        return Err(mismatch().into());
    }
    rest.into_bytes().copy_from_slice(&gaps[gap_pos..]);
    let refs: Vec<&TensorEntry> = tensors.iter().collect();
    fast::decode_tensors(file, &refs, outs, fast::BAND_BYTES)
}

/// Parses and decodes a whole in-memory .wcz back into the original file's bytes, within the
/// default limits.
pub fn decompress_to_vec(file: &[u8]) -> Result<Vec<u8>, DecodeError> {
    decompress_to_vec_limited(file, &Limits::default())
}

/// `decompress_to_vec` within `limits`: the output is allocated once and every tensor decoded
/// straight into its place, each band zeroed just before it is decoded, by the thread that
/// decodes it (not the whole output up front on one thread).
pub fn decompress_to_vec_limited(file: &[u8], limits: &Limits) -> Result<Vec<u8>, DecodeError> {
    let directory = Directory::from_file_bytes(file)?;
    limits.check(|| "the file".to_owned(), directory.source_len, file.len() as u64)?;
    fresh_vec(directory.source_len as usize, |out| {
        decode_span(file, &directory.tensors, &directory.gaps, 0, out)
    })
}

/// The length of the original file a .wcz held in memory decodes to (from its directory).
pub fn decompressed_len(file: &[u8]) -> Result<u64, DecodeError> {
    Ok(Directory::from_file_bytes(file)?.source_len)
}

/// Decodes a whole in-memory .wcz into `out`, which must be exactly [`decompressed_len`]
/// bytes long. Every byte of `out` is written, so a buffer reused from one file to the next
/// needs no clearing. The fastest way to decode: [`decompress_to_vec`]'s fresh memory is zeroed
/// before it is decoded into (band by band, by the threads that decode it), a pass that costs
/// 10-20% of a one-thread decode. The caller owns the memory, so no size limit applies.
pub fn decompress_into(file: &[u8], out: &mut [u8]) -> Result<(), DecodeError> {
    let directory = Directory::from_file_bytes(file)?;
    if out.len() as u64 != directory.source_len {
        return Err(DecodeError::OutputLength {
            given: out.len() as u64,
            needed: directory.source_len,
        });
    }
    decode_source_span(file, &directory.tensors, &directory.gaps, 0, out)
}
