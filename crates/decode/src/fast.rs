//! The production decoder: whole spans of the source decoded in place, in parallel.
//!
//! Work is cut into *bands*: rows of a tensor that are whole rows of tiles in every plane. A
//! band is a contiguous part of the tensor's bytes, so bands of every tensor of a span are
//! decoded in parallel (rayon) straight into the output: the units of a band go to the coder
//! together (two at a time where the CPU interleaves pairs), full-width tiles are decoded where
//! they belong and others through a small per-thread buffer, split planes are merged band by
//! band while they are in cache, and each band's CRC is taken there too and combined into the
//! tensor's. Every check of the reference decoder runs; only the order in which a damaged file's
//! first error is found may differ.

use std::cell::RefCell;
use std::sync::OnceLock;

use rayon::prelude::*;
use wcodec_format::{PlaneEncoding, PlaneEntry, Predictor, TensorEntry, UnitEntry};
use wcodec_predict::reconstruct_rows;
use wcodec_rans::{DecodeTable, GROUP, Out, RansError, UnitJob, decode_units};

use crate::dest::Dest;
use crate::merge::merge_band;
use crate::{DecodeError, checked_crc};
use wcodec_format::checksum::combine_parts;

/// Bands a decoding task takes at most (see `decode_tensors`). One a task balanced the threads
/// as well but made the bands 1.2x slower on one thread (MiniLM int8, measured in place, cause
/// not found); 2 to 64 did not.
const BANDS_A_TASK: usize = 4;

/// Bytes of a band, about: enough tiles for the coder to keep its pairs of units full, few
/// enough for the band to stay in L2 while its planes are merged and its CRC taken.
pub(crate) const BAND_BYTES: usize = 512 << 10;

thread_local! {
    /// Symbols of the tiles decoded apart (predicted, or rows not of whole groups), then rebuilt
    /// into place.
    static RESIDUALS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// A band of each plane of a split tensor, before the planes are merged.
    static PLANES: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// How a tensor is cut into bands.
struct Plan<'a> {
    tensor: &'a TensorEntry,
    /// The decode tables of each plane (empty for raw planes), built when the tensor's first
    /// band is decoded (by the thread that decodes it, while it is in cache).
    tables: Vec<OnceLock<Result<Vec<DecodeTable>, RansError>>>,
    rows: usize,
    /// Rows per band (a multiple of every coded plane's tile height), at least 1.
    band_rows: usize,
    /// Bytes of the tensor per row.
    row_bytes: usize,
}

impl Plan<'_> {
    fn bands(&self) -> usize {
        self.rows.div_ceil(self.band_rows)
    }

    /// Plane `j`'s decode tables.
    fn tables(&self, j: usize) -> Result<&[DecodeTable], DecodeError> {
        let plane = &self.tensor.planes[j];
        let tables = self.tables[j].get_or_init(|| match &plane.encoding {
            PlaneEncoding::Raw { .. } => Ok(Vec::new()),
            PlaneEncoding::Rans { .. } if plane.is_empty() => Ok(Vec::new()),
            PlaneEncoding::Rans { prob_bits, tables, .. } => {
                tables.iter().map(|t| DecodeTable::new(t, *prob_bits)).collect()
            }
        });
        tables.as_deref().map_err(|source| DecodeError::Unit {
            tensor: self.tensor.name.clone(),
            plane: j,
            unit: 0,
            source: source.clone(),
        })
    }
}

/// Checks that the planes' payloads lie inside the file (their tables are built and checked
/// when the tensor's first band is decoded, raw planes' CRCs taken band by band) and cuts the
/// tensor into bands.
fn plan<'a>(
    file: &[u8],
    tensor: &'a TensorEntry,
    band_bytes: usize,
) -> Result<Plan<'a>, DecodeError> {
    let mut tables = Vec::with_capacity(tensor.planes.len());
    for (j, plane) in tensor.planes.iter().enumerate() {
        let payload = file
            .get(plane.payload_offset as usize..(plane.payload_offset + plane.payload_len) as usize)
            .ok_or_else(|| DecodeError::OutOfBounds { tensor: tensor.name.clone() })?;
        // Checked band by band (`decode_band`), where the merge has the bytes in cache;
        // here only when the tensor has no bands.
        if let PlaneEncoding::Raw { crc32c } = &plane.encoding
            && (plane.rows == 0 || tensor.source_len == 0)
        {
            checked_crc(|| format!("tensor {:?} raw plane {j}", tensor.name), payload, *crc32c)?;
        }
        tables.push(OnceLock::new());
    }
    // Every plane has the tensor's rows (checked when the directory was parsed).
    let rows = tensor.planes.first().map_or(0, |p| p.rows as usize);
    let len = tensor.source_len as usize;
    let heights = tensor
        .planes
        .iter()
        .filter(|p| matches!(p.encoding, PlaneEncoding::Rans { .. }) && !p.is_empty())
        .map(|p| (p.tile_rows as usize).min(rows).max(1));
    let tallest = heights.clone().max().unwrap_or(rows.max(1));
    let row_bytes = len.checked_div(rows).unwrap_or(0);
    let band_rows = if rows > 0
        && len.is_multiple_of(rows)
        && heights.clone().all(|h| tallest.is_multiple_of(h))
    {
        // Whole rows of tiles, as many as fit in `band_bytes` (saturating: an empty tensor
        // may claim rows by the quintillion, of 0 bytes each).
        tallest.saturating_mul((band_bytes / tallest.saturating_mul(row_bytes).max(1)).max(1))
    } else {
        rows.max(1)
    };
    Ok(Plan { tensor, tables, rows, band_rows, row_bytes })
}

/// Decodes tensors into their outputs (`outs[i]` is `tensors[i].source_len` bytes) and checks
/// their CRCs, in bands of about `band_bytes`. A band of fresh output is zeroed by the thread
/// that decodes it, just before (in cache).
pub(crate) fn decode_tensors(
    file: &[u8],
    tensors: &[&TensorEntry],
    outs: Vec<Dest>,
    band_bytes: usize,
) -> Result<(), DecodeError> {
    let plans: Vec<Plan> =
        tensors.par_iter().map(|t| plan(file, t, band_bytes)).collect::<Result<_, _>>()?;
    // The bands of every tensor, in order, each with its part of the output.
    let mut bands = Vec::new();
    for (k, (plan, out)) in plans.iter().zip(outs).enumerate() {
        if plan.rows == 0 || out.is_empty() {
            continue;
        }
        let band_len = plan.band_rows * plan.row_bytes;
        if plan.band_rows >= plan.rows {
            bands.push((k, 0, out));
        } else {
            bands
                .extend(out.chunks(band_len).into_iter().enumerate().map(|(b, part)| (k, b, part)));
        }
    }
    // At most BANDS_A_TASK bands a task: rayon otherwise cuts the list into a few long runs,
    // and a thread done with its run (a file's small tensors) cannot take bands from another's
    // (a large tensor's): on MiniLM BF16 one of two threads was idle a third of the decode.
    let crcs: Vec<BandCrcs> = bands
        .into_par_iter()
        .with_max_len(BANDS_A_TASK)
        .map(|(k, b, out)| decode_band(file, &plans[k], b, out))
        .collect::<Result<_, _>>()?;
    // Fold each tensor's band CRCs in order: its raw planes', then its own.
    let mut first = 0;
    for plan in &plans {
        let t = plan.tensor;
        let mut crc = 0;
        if plan.rows > 0 && t.source_len > 0 {
            let parts = &crcs[first..first + plan.bands()];
            first += parts.len();
            let raw = t.planes.iter().enumerate().filter_map(|(j, p)| match p.encoding {
                PlaneEncoding::Raw { crc32c } => Some((j, p, crc32c)),
                PlaneEncoding::Rans { .. } => None,
            });
            for (k, (j, plane, stored)) in raw.enumerate() {
                let band_crcs: Vec<u32> = parts.iter().map(|b| b.raw[k]).collect();
                let band_len = (plan.band_rows as u64) * plane.cols;
                let computed = combine_parts(&band_crcs, band_len, plane.payload_len);
                if computed != stored {
                    return Err(DecodeError::Checksum {
                        what: format!("tensor {:?} raw plane {j}", t.name),
                        stored,
                        computed,
                    });
                }
            }
            let tensor_crcs: Vec<u32> = parts.iter().map(|b| b.tensor).collect();
            let band_len = (plan.band_rows * plan.row_bytes) as u64;
            crc = combine_parts(&tensor_crcs, band_len, t.source_len);
        }
        if crc != t.crc32c {
            return Err(DecodeError::Checksum {
                what: format!("tensor {:?}", t.name),
                stored: t.crc32c,
                computed: crc,
            });
        }
    }
    Ok(())
}

/// Where a tile's bytes go in a band of its plane.
enum TileOut<'o> {
    /// Its rows, each a part of a plane row.
    Rows(Vec<&'o mut [u8]>),
    /// Tiles that span whole plane rows: all its rows at once.
    Whole(&'o mut [u8]),
}

impl<'o> TileOut<'o> {
    /// The tile's rows of `w` bytes.
    fn rows(self, w: usize) -> Vec<&'o mut [u8]> {
        match self {
            TileOut::Rows(rows) => rows,
            TileOut::Whole(bytes) => bytes.chunks_mut(w.max(1)).collect(),
        }
    }
}

/// Whether a tile spanning whole rows of `plane` is decoded straight into its place as one
/// run of symbols: coded without a predictor, its symbols are its bytes, XORed with the
/// plane's bias (the narrow planes of GGUF's block scales, 18 bytes wide; the tiles of whole
/// rows of planes under two tiles wide: no copy, and its groups are stored by the kernels
/// whatever the width).
fn in_place_whole(unit: &UnitEntry) -> bool {
    unit.predictor == Predictor::None
}

/// Whether tile `i` of `plane` is decoded into the band's scratch, then rebuilt into place:
/// predicted tiles (the inverse predictor needs their residuals), and tiles whose rows are not
/// whole groups of 128 symbols, which the SIMD kernels cannot store into rows (decoded flat,
/// they still pair with the band's other units on the kernels instead of running alone),
/// unless they are decoded whole into place.
fn decoded_apart(plane: &PlaneEntry, unit: &UnitEntry, i: usize) -> bool {
    let whole = plane.grid().1 == 1 && in_place_whole(unit);
    !whole
        && (unit.predictor != Predictor::None || !plane.tile_rect(i).3.is_multiple_of(GROUP as u64))
}

/// The CRCs of a band: of its bytes of the tensor, and of its bytes of each raw plane (in
/// plane order).
struct BandCrcs {
    tensor: u32,
    raw: Vec<u32>,
}

/// The band's rows of a raw plane, in the file (inside it: checked by `plan`).
fn raw_rows<'f>(file: &'f [u8], plane: &PlaneEntry, rows: &std::ops::Range<usize>) -> &'f [u8] {
    let cols = plane.cols as usize;
    let start = plane.payload_offset as usize + rows.start * cols;
    &file[start..start + rows.len() * cols]
}

/// Decodes band `b` of a tensor into `out` and returns its CRCs. Its raw planes' bytes are
/// checked here, after the merge (or copy) read them: a second pass over them from memory
/// cost a tenth of a BF16 decode, and the plane's CRC comes from the bands' as the tensor's
/// does.
fn decode_band(file: &[u8], plan: &Plan, b: usize, out: Dest) -> Result<BandCrcs, DecodeError> {
    let t = plan.tensor;
    let rows = b * plan.band_rows..((b + 1) * plan.band_rows).min(plan.rows);
    let tensor = if t.planes.len() == 1 {
        let out = out.into_bytes();
        decode_rows(file, plan, rows.clone(), vec![&mut *out])?;
        crate::crc32c(out)
    } else {
        PLANES.with_borrow_mut(|bufs| -> Result<u32, DecodeError> {
            // Grown, never shrunk: a tensor of fewer planes (a norm's one between a layer's
            // block tensors) would drop buffers the next tensor then grows again from nothing.
            if bufs.len() < t.planes.len() {
                bufs.resize_with(t.planes.len(), Vec::new);
            }
            let mut outs = Vec::with_capacity(t.planes.len());
            for (plane, buf) in t.planes.iter().zip(bufs.iter_mut()) {
                // A raw plane is merged from the file itself (nothing to decode or copy).
                if matches!(plane.encoding, PlaneEncoding::Raw { .. }) {
                    outs.push(&mut [][..]);
                    continue;
                }
                // Every byte is written: a reused buffer needs no clearing.
                let len = rows.len() * plane.cols as usize;
                if buf.len() < len {
                    buf.resize(len, 0);
                }
                outs.push(&mut buf[..len]);
            }
            decode_rows(file, plan, rows.clone(), outs)?;
            let refs: Vec<&[u8]> = t
                .planes
                .iter()
                .zip(bufs.iter())
                .map(|(p, buf)| match p.encoding {
                    PlaneEncoding::Raw { .. } => raw_rows(file, p, &rows),
                    PlaneEncoding::Rans { .. } => &buf[..rows.len() * p.cols as usize],
                })
                .collect();
            Ok(merge_band(&refs, t.dtype, t.transform, out))
        })?
    };
    let raw = t
        .planes
        .iter()
        .filter(|p| matches!(p.encoding, PlaneEncoding::Raw { .. }))
        // A tensor's only plane, raw, was copied into `out` as it is: the same CRC.
        .map(|p| if t.planes.len() == 1 { tensor } else { crate::crc32c(raw_rows(file, p, &rows)) })
        .collect();
    Ok(BandCrcs { tensor, raw })
}

/// Decodes rows `rows` (whole rows of tiles) of every plane of a tensor, plane `j` into
/// `outs[j]` (`rows.len() * cols` bytes).
///
/// Every unit of the band, of all planes, goes to the coder in one call (so that pairs stay
/// full), and its CRC is checked after it was decoded, before its result or output counts.
/// Tiles without a predictor are stored by the coder straight into their rows, XORed with the
/// plane's bias; the others are decoded into a per-thread buffer and rebuilt from there.
fn decode_rows(
    file: &[u8],
    plan: &Plan,
    rows: std::ops::Range<usize>,
    outs: Vec<&mut [u8]>,
) -> Result<(), DecodeError> {
    let tensor = plan.tensor;
    // Per coded plane: (plane index, first tile, tiles' row slices).
    let mut parts = Vec::with_capacity(outs.len());
    let mut predicted = 0;
    for (j, (plane, out)) in tensor.planes.iter().zip(outs).enumerate() {
        let cols = plane.cols as usize;
        let PlaneEncoding::Rans { units, .. } = &plane.encoding else {
            // Raw: inside the file (checked by `plan`); its CRC is taken by `decode_band`. A
            // split tensor's raw planes are merged from the file (no output here).
            if !out.is_empty() {
                out.copy_from_slice(raw_rows(file, plane, &rows));
            }
            continue;
        };
        if out.is_empty() {
            continue;
        }
        let tile_rows = (plane.tile_rows as usize).min(plane.rows as usize);
        let grid_cols = plane.grid().1 as usize;
        let first = rows.start / tile_rows * grid_cols;
        let last = rows.end.div_ceil(tile_rows) * grid_cols;
        // Each tile's part of `out`: its rows as disjoint slices, or, where tiles span whole
        // rows of the plane, one slice.
        let tiles: Vec<TileOut> = if grid_cols == 1 {
            out.chunks_mut(tile_rows * cols).map(TileOut::Whole).collect()
        } else {
            let mut tiles: Vec<Vec<&mut [u8]>> = (first..last).map(|_| Vec::new()).collect();
            for (r, row) in out.chunks_mut(cols).enumerate() {
                let mut rest = row;
                for tc in 0..grid_cols {
                    let w = (plane.tile_cols as usize).min(rest.len());
                    let (segment, tail) = rest.split_at_mut(w);
                    tiles[r / tile_rows * grid_cols + tc].push(segment);
                    rest = tail;
                }
            }
            tiles.into_iter().map(TileOut::Rows).collect()
        };
        predicted += (first..last)
            .filter(|&i| decoded_apart(plane, &units[i], i))
            .map(|i| tile_len(plane, i))
            .sum::<usize>();
        parts.push((j, first, tiles));
    }
    RESIDUALS.with_borrow_mut(|res| -> Result<(), DecodeError> {
        if res.len() < predicted {
            res.resize(predicted, 0);
        }
        let mut scratch = &mut res[..predicted];
        let mut jobs = Vec::new();
        // Per job: (plane, unit, the tile's rows when it is rebuilt from residuals).
        let mut meta = Vec::new();
        for (j, first, tiles) in parts {
            let plane = &tensor.planes[j];
            let PlaneEncoding::Rans { units, .. } = &plane.encoding else {
                unreachable!("coded planes only")
            };
            let bias = if plane.bias128 { 0x80 } else { 0 };
            for (i, tile_out) in (first..).zip(tiles) {
                let unit = &units[i];
                let start = plane.payload_offset + unit.offset;
                let bytes = file
                    .get(start as usize..(start + u64::from(unit.len)) as usize)
                    .ok_or_else(|| DecodeError::OutOfBounds { tensor: tensor.name.clone() })?;
                let (_, _, h, w) = plane.tile_rect(i);
                let (h, w) = (h as usize, w as usize);
                let map = crate::unit_table_map(plane, i);
                let (out, rebuild) = match tile_out {
                    // Symbols are the bytes: straight into place, as one run.
                    TileOut::Whole(bytes) if in_place_whole(unit) => match bias {
                        0 => (Out::Flat(bytes), None),
                        // One row: the run of the tile's bytes, each XORed with the bias.
                        _ => (Out::Rows { rows: vec![bytes], bias }, None),
                    },
                    tile_out => {
                        let slices = tile_out.rows(w);
                        if !decoded_apart(plane, unit, i) {
                            (Out::Rows { rows: slices, bias }, None)
                        } else {
                            let (tile, tail) = std::mem::take(&mut scratch).split_at_mut(h * w);
                            scratch = tail;
                            (Out::Flat(tile), Some(slices))
                        }
                    }
                };
                jobs.push(UnitJob { unit: bytes, tables: plan.tables(j)?, map, out });
                meta.push((j, i, rebuild));
            }
        }
        let results = decode_units(&mut jobs);
        for ((result, job), (j, i, rebuild)) in results.into_iter().zip(jobs).zip(meta) {
            let plane = &tensor.planes[j];
            let PlaneEncoding::Rans { units, .. } = &plane.encoding else {
                unreachable!("coded planes only")
            };
            // The unit's CRC is checked after it was decoded (any bytes decode safely), when
            // they are in cache: a damaged unit still fails on its checksum first.
            checked_crc(
                || format!("tensor {:?} plane {j} unit {i}", tensor.name),
                job.unit,
                units[i].crc32c,
            )?;
            result.map_err(|source| DecodeError::Unit {
                tensor: tensor.name.clone(),
                plane: j,
                unit: i,
                source,
            })?;
            if let (Out::Flat(residuals), Some(mut slices)) = (job.out, rebuild) {
                let bias = if plane.bias128 { 0x80 } else { 0 };
                reconstruct_rows(residuals, units[i].predictor, bias, &mut slices);
            }
        }
        Ok(())
    })
}

/// Symbols of tile `i` of a plane.
fn tile_len(plane: &PlaneEntry, i: usize) -> usize {
    let (_, _, h, w) = plane.tile_rect(i);
    (h * w) as usize
}
