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
use wcodec_rans::{DecodeTable, RansError, TableMap, decode_unit};

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
    #[error(transparent)]
    Io(#[from] std::io::Error),
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

/// Decodes one unit into a tile-shaped buffer (`h * w` bytes, the tile's own row-major order).
fn decode_tile(
    file: &[u8],
    tensor: &TensorEntry,
    plane_index: usize,
    plane: &PlaneEntry,
    unit_index: usize,
    tables: &[DecodeTable],
    out: &mut [u8],
) -> Result<(), DecodeError> {
    let PlaneEncoding::Rans { units, row_tables, .. } = &plane.encoding else {
        unreachable!("decode_tile is only called for rANS planes")
    };
    let unit = &units[unit_index];
    let start = plane.payload_offset + unit.offset;
    let bytes = file
        .get(start as usize..(start + u64::from(unit.len)) as usize)
        .ok_or_else(|| DecodeError::OutOfBounds { tensor: tensor.name.clone() })?;
    checked_crc(
        || format!("tensor {:?} plane {plane_index} unit {unit_index}", tensor.name),
        bytes,
        unit.crc32c,
    )?;
    let mut residuals = vec![0u8; out.len()];
    let (r0, _, h, w) = plane.tile_rect(unit_index);
    let tile = Tile { r0: r0 as usize, c0: 0, h: h as usize, w: w as usize };
    let map = if row_tables.is_empty() {
        TableMap::Single
    } else {
        TableMap::Rows { row_tables: &row_tables[tile.r0..tile.r0 + tile.h], width: tile.w }
    };
    decode_unit(bytes, tables, map, &mut residuals).map_err(|source| DecodeError::Unit {
        tensor: tensor.name.clone(),
        plane: plane_index,
        unit: unit_index,
        source,
    })?;
    let tile = Tile { r0: 0, ..tile };
    let bias = if plane.bias128 { 0x80 } else { 0 };
    reconstruct(&residuals, unit.predictor, bias, out, w as usize, tile);
    Ok(())
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
    match &plane.encoding {
        PlaneEncoding::Raw { crc32c } => {
            let bytes = payload()?;
            checked_crc(
                || format!("tensor {:?} raw plane {plane_index}", tensor.name),
                bytes,
                *crc32c,
            )?;
            out.copy_from_slice(bytes);
            Ok(())
        }
        PlaneEncoding::Rans { prob_bits, tables, units, .. } => {
            payload()?;
            let tables: Vec<DecodeTable> = tables
                .iter()
                .map(|t| DecodeTable::new(t, *prob_bits))
                .collect::<Result<_, _>>()
                .map_err(|source| DecodeError::Unit {
                    tensor: tensor.name.clone(),
                    plane: plane_index,
                    unit: 0,
                    source,
                })?;
            let cols = plane.cols as usize;
            let decode = |i: usize| -> Result<Vec<u8>, DecodeError> {
                let (_, _, h, w) = plane.tile_rect(i);
                let mut tile = vec![0u8; (h * w) as usize];
                decode_tile(file, tensor, plane_index, plane, i, &tables, &mut tile)?;
                Ok(tile)
            };
            let scatter = |i: usize, tile: &[u8], out: &mut [u8]| {
                let (r0, c0, h, w) = plane.tile_rect(i);
                for r in 0..h as usize {
                    let dst = (r0 as usize + r) * cols + c0 as usize;
                    out[dst..dst + w as usize]
                        .copy_from_slice(&tile[r * w as usize..][..w as usize]);
                }
            };
            match parallelism {
                Parallelism::Sequential => {
                    for i in 0..units.len() {
                        let tile = decode(i)?;
                        scatter(i, &tile, out);
                    }
                }
                Parallelism::Rayon => {
                    // Decode tiles in parallel, then copy each band of tile rows in parallel:
                    // bands are disjoint slices of the plane.
                    let tiles: Vec<Vec<u8>> =
                        (0..units.len()).into_par_iter().map(decode).collect::<Result<_, _>>()?;
                    let (_, grid_cols) = plane.grid();
                    let band = plane.tile_rows as usize * cols;
                    out.par_chunks_mut(band).enumerate().for_each(|(tr, band_out)| {
                        for tc in 0..grid_cols as usize {
                            let i = tr * grid_cols as usize + tc;
                            let (r0, c0, h, w) = plane.tile_rect(i);
                            let (r0, c0, w) = (
                                r0 as usize - tr * plane.tile_rows as usize,
                                c0 as usize,
                                w as usize,
                            );
                            for r in 0..h as usize {
                                let dst = (r0 + r) * cols + c0;
                                band_out[dst..dst + w].copy_from_slice(&tiles[i][r * w..][..w]);
                            }
                        }
                    });
                }
            }
            Ok(())
        }
    }
}

/// Decodes a tensor's original bytes into `out` (`source_len` bytes) and checks its CRC.
pub fn decode_tensor_into(
    file: &[u8],
    tensor: &TensorEntry,
    parallelism: Parallelism,
    out: &mut [u8],
) -> Result<(), DecodeError> {
    assert_eq!(out.len() as u64, tensor.source_len, "output sized to the tensor");
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

/// Decodes a tensor's original bytes (parallel over units).
pub fn decode_tensor(file: &[u8], tensor: &TensorEntry) -> Result<Vec<u8>, DecodeError> {
    let mut out = vec![0u8; tensor.source_len as usize];
    decode_tensor_into(file, tensor, Parallelism::Rayon, &mut out)?;
    Ok(out)
}

/// The reference decoder: one unit after another, no threads. The oracle for faster paths.
pub fn decode_tensor_reference(file: &[u8], tensor: &TensorEntry) -> Result<Vec<u8>, DecodeError> {
    let mut out = vec![0u8; tensor.source_len as usize];
    decode_tensor_into(file, tensor, Parallelism::Sequential, &mut out)?;
    Ok(out)
}

/// Rebuilds the original file: gaps and tensors in source order, streamed to `sink` one
/// tensor at a time. `progress` gets the source bytes written so far.
pub fn rebuild_source<W: std::io::Write>(
    file: &[u8],
    directory: &Directory,
    parallelism: Parallelism,
    mut sink: W,
    progress: &mut dyn FnMut(u64),
) -> Result<W, DecodeError> {
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

/// Parses and decodes a whole in-memory .wcz back into the original file's bytes.
pub fn decompress_to_vec(file: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let directory = Directory::from_file_bytes(file)?;
    let out = Vec::with_capacity(directory.source_len.min(file.len() as u64 * 64) as usize);
    rebuild_source(file, &directory, Parallelism::Rayon, out, &mut |_| {})
}
