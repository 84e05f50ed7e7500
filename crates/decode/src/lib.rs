//! CPU decoders of wcodec.
//!
//! `reference` is the plain sequential decoder: the oracle every faster path (threads, SIMD,
//! CUDA) is tested against. `decode_tensor` is the production path: units decoded in parallel
//! with rayon, bit-identical to the reference. Both verify every checksum and every unit's
//! final states, so a damaged file is an error, never a wrong tensor.
#![forbid(unsafe_code)]

use rayon::prelude::*;
use wcodec_format::{Directory, FormatError, PlaneEncoding, PlaneEntry, TensorEntry};
use wcodec_predict::{Tile, merge_planes, reconstruct};
use wcodec_rans::{
    DecodeTable, Path, RansError, TableMap, UnitJob, decode_unit_with, decode_units,
};

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

fn checked_crc(
    what: impl FnOnce() -> String,
    bytes: &[u8],
    stored: u32,
) -> Result<(), DecodeError> {
    let computed = crc32c::crc32c(bytes);
    if computed != stored {
        return Err(DecodeError::Checksum { what: what(), stored, computed });
    }
    Ok(())
}

/// Decodes the residuals of units `first..first + scratch.len()` of a rANS plane into
/// `scratch`, after checking each unit's CRC. The reference path decodes one unit at a time
/// with the scalar coder; the fast path hands the units to `decode_units` (two at a time,
/// interleaved on one core, where the CPU has AVX-512), which gives identical results.
#[allow(clippy::too_many_arguments)]
fn decode_residuals(
    file: &[u8],
    tensor: &TensorEntry,
    plane_index: usize,
    plane: &PlaneEntry,
    first: usize,
    tables: &[DecodeTable],
    parallelism: Parallelism,
    scratch: &mut [Vec<u8>],
) -> Result<(), DecodeError> {
    let PlaneEncoding::Rans { units, row_tables, .. } = &plane.encoding else {
        unreachable!("decode_residuals is only called for rANS planes")
    };
    let mut jobs = Vec::with_capacity(scratch.len());
    for (k, buf) in scratch.iter_mut().enumerate() {
        let i = first + k;
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
        let (r0, _, h, w) = plane.tile_rect(i);
        let (r0, h, w) = (r0 as usize, h as usize, w as usize);
        buf.resize(h * w, 0);
        let map = if row_tables.is_empty() {
            TableMap::Single
        } else {
            TableMap::Rows { row_tables: &row_tables[r0..r0 + h], width: w }
        };
        jobs.push(UnitJob { unit: bytes, tables, map, out: buf });
    }
    let results = match parallelism {
        Parallelism::Sequential => jobs
            .iter_mut()
            .map(|j| decode_unit_with(Path::Scalar, j.unit, j.tables, j.map, j.out))
            .collect(),
        Parallelism::Rayon => decode_units(&mut jobs),
    };
    for (k, result) in results.into_iter().enumerate() {
        result.map_err(|source| DecodeError::Unit {
            tensor: tensor.name.clone(),
            plane: plane_index,
            unit: first + k,
            source,
        })?;
    }
    Ok(())
}

/// Rebuilds tile `i` of a plane from its residuals into `dst` (`dst_cols` wide) at `dst_tile`.
fn place_tile(
    plane: &PlaneEntry,
    i: usize,
    residuals: &[u8],
    dst: &mut [u8],
    dst_cols: usize,
    dst_tile: Tile,
) {
    let PlaneEncoding::Rans { units, .. } = &plane.encoding else {
        unreachable!("place_tile is only called for rANS planes")
    };
    let bias = if plane.bias128 { 0x80 } else { 0 };
    reconstruct(residuals, units[i].predictor, bias, dst, dst_cols, dst_tile);
}

/// Decodes one plane into `out` (`rows * cols` bytes).
fn decode_plane(
    file: &[u8],
    tensor: &TensorEntry,
    plane_index: usize,
    plane: &PlaneEntry,
    parallelism: Parallelism,
    out: &mut [u8],
) -> Result<(), DecodeError> {
    let payload = || {
        file.get(plane.payload_offset as usize..(plane.payload_offset + plane.payload_len) as usize)
            .ok_or_else(|| DecodeError::OutOfBounds { tensor: tensor.name.clone() })
    };
    let PlaneEncoding::Rans { prob_bits, tables, .. } = &plane.encoding else {
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
    let cols = plane.cols as usize;
    // A tile may be taller than the plane: a band never is (so its length cannot overflow).
    let tile_rows = (plane.tile_rows as usize).min(plane.rows as usize);
    let (grid_rows, grid_cols) = plane.grid();
    let (grid_rows, grid_cols) = (grid_rows as usize, grid_cols as usize);
    // A band is one row of tiles: a contiguous slice of the plane, so bands decode in
    // parallel straight into the output.
    let decode_band = |tr: usize, band: &mut [u8]| -> Result<(), DecodeError> {
        let mut scratch = [Vec::new(), Vec::new()];
        let (start, end) = (tr * grid_cols, (tr + 1) * grid_cols);
        for first in (start..end).step_by(2) {
            let n = (end - first).min(2);
            decode_residuals(
                file,
                tensor,
                plane_index,
                plane,
                first,
                &tables,
                parallelism,
                &mut scratch[..n],
            )?;
            for (k, residuals) in scratch[..n].iter().enumerate() {
                let (r0, c0, h, w) = plane.tile_rect(first + k);
                let dst_tile = Tile {
                    r0: r0 as usize - tr * tile_rows,
                    c0: c0 as usize,
                    h: h as usize,
                    w: w as usize,
                };
                place_tile(plane, first + k, residuals, band, cols, dst_tile);
            }
        }
        Ok(())
    };
    let band_len = tile_rows * cols;
    match parallelism {
        Parallelism::Sequential => {
            for (tr, band) in out.chunks_mut(band_len).enumerate() {
                decode_band(tr, band)?;
            }
        }
        Parallelism::Rayon if grid_rows >= 2 * rayon::current_num_threads() || grid_cols == 1 => {
            out.par_chunks_mut(band_len)
                .enumerate()
                .try_for_each(|(tr, band)| decode_band(tr, band))?;
        }
        Parallelism::Rayon => {
            // Few bands of many tiles: decode tiles in parallel into their own buffers, then
            // copy them into place band by band.
            let n_tiles = grid_rows * grid_cols;
            let pairs: Vec<Vec<Vec<u8>>> = (0..n_tiles.div_ceil(2))
                .into_par_iter()
                .map(|p| {
                    let first = 2 * p;
                    let mut scratch = vec![Vec::new(); (n_tiles - first).min(2)];
                    decode_residuals(
                        file,
                        tensor,
                        plane_index,
                        plane,
                        first,
                        &tables,
                        parallelism,
                        &mut scratch,
                    )?;
                    Ok(scratch
                        .iter()
                        .enumerate()
                        .map(|(k, residuals)| {
                            let (_, _, h, w) = plane.tile_rect(first + k);
                            let (h, w) = (h as usize, w as usize);
                            let mut tile = vec![0u8; h * w];
                            let whole = Tile { r0: 0, c0: 0, h, w };
                            place_tile(plane, first + k, residuals, &mut tile, w, whole);
                            tile
                        })
                        .collect())
                })
                .collect::<Result<_, DecodeError>>()?;
            let decoded: Vec<Vec<u8>> = pairs.into_iter().flatten().collect();
            out.par_chunks_mut(band_len).enumerate().for_each(|(tr, band)| {
                let first = tr * grid_cols;
                for (i, tile) in decoded[first..first + grid_cols].iter().enumerate() {
                    let (r0, c0, h, w) = plane.tile_rect(first + i);
                    let (r0, c0, w) = (r0 as usize - tr * tile_rows, c0 as usize, w as usize);
                    for r in 0..h as usize {
                        let dst = (r0 + r) * cols + c0;
                        band[dst..dst + w].copy_from_slice(&tile[r * w..][..w]);
                    }
                }
            });
        }
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
    if let [plane] = tensor.planes.as_slice() {
        // One plane holds the tensor's bytes as they are: decode in place.
        decode_plane(file, tensor, 0, plane, parallelism, out)?;
        return checked_crc(|| format!("tensor {:?}", tensor.name), out, tensor.crc32c);
    }
    let mut planes = Vec::with_capacity(tensor.planes.len());
    for (j, plane) in tensor.planes.iter().enumerate() {
        let mut bytes = vec![0u8; plane.len() as usize];
        decode_plane(file, tensor, j, plane, parallelism, &mut bytes)?;
        planes.push(bytes);
    }
    let refs: Vec<&[u8]> = planes.iter().map(Vec::as_slice).collect();
    merge_planes(&refs, tensor.dtype, tensor.transform, out);
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
    let mut out = vec![0u8; tensor.source_len as usize];
    decode_tensor_into(file, tensor, parallelism, &mut out)?;
    Ok(out)
}

/// Decodes a tensor's original bytes (parallel over units), within the default limits.
pub fn decode_tensor(file: &[u8], tensor: &TensorEntry) -> Result<Vec<u8>, DecodeError> {
    check_tensor(file, tensor)?;
    let mut out = vec![0u8; tensor.source_len as usize];
    decode_tensor_into(file, tensor, Parallelism::Rayon, &mut out)?;
    Ok(out)
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
/// before anything is decoded or allocated.
pub fn rebuild_source_limited<W: std::io::Write>(
    file: &[u8],
    directory: &Directory,
    parallelism: Parallelism,
    limits: &Limits,
    mut sink: W,
    progress: &mut dyn FnMut(u64),
) -> Result<W, DecodeError> {
    limits.check(|| "the file".to_owned(), directory.source_len, file.len() as u64)?;
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

/// Parses and decodes a whole in-memory .wcz back into the original file's bytes, within the
/// default limits.
pub fn decompress_to_vec(file: &[u8]) -> Result<Vec<u8>, DecodeError> {
    decompress_to_vec_limited(file, &Limits::default())
}

/// `decompress_to_vec` within `limits`.
pub fn decompress_to_vec_limited(file: &[u8], limits: &Limits) -> Result<Vec<u8>, DecodeError> {
    let directory = Directory::from_file_bytes(file)?;
    limits.check(|| "the file".to_owned(), directory.source_len, file.len() as u64)?;
    // A hint, not a promise: the output grows as tensors pass their checks.
    let out = Vec::with_capacity(directory.source_len.min(file.len() as u64 * 64) as usize);
    rebuild_source_limited(file, &directory, Parallelism::Rayon, limits, out, &mut |_| {})
}
