//! Encoding one byte plane: pass 1 (predictors and histograms per tile, tables), pass 2
//! (one rANS unit per tile), and the decision to store the plane raw when coding does not pay.
//!
//! Memory: a tile coded with NONE (nearly every tile of real weights) has the plane's bytes,
//! XOR the bias, as residuals, so they are never stored: histograms read the plane itself and
//! pass 2 codes the plane's bytes with tables relabeled by the bias, in place where a tile spans
//! the plane's width, else gathered into a per-thread buffer. Only predicted tiles keep their
//! residuals between the passes. Units go into the caller's payload as they are, uncopied.

use std::cell::RefCell;

use rayon::prelude::*;
use wcodec_format::records::{UNIT_ALIGN, UnitRecord};
use wcodec_format::{
    MAX_TILE_SYMBOLS, PlaneEncoding, PlaneEntry, Predictor, UnitEntry, rans::STATES_BYTES,
};
use wcodec_predict::{Tile, TileConfig, choose_predictor, residuals, tile_shape, tiles};
use wcodec_rans::{
    CodedUnit, EncodeTable, GROUP, RansError, SeenBytes, TableMap, UnitSymbols, cost_bits,
    encode_unit_owned, entropy_bits, histogram, normalize,
};

use crate::tables::{ChosenTables, PlaneRows, choose_tables};
use crate::{EncodeOptions, Payload};

/// One encoded plane: its entry (payload offset 0) and its payload.
#[derive(Clone, Debug)]
pub struct EncodedPlane {
    pub entry: PlaneEntry,
    pub payload: Vec<u8>,
    /// Order-0 entropy of the plane's bytes, in bits (informational).
    pub order0_bits: f64,
}

/// Encodes a row-major `rows x cols` byte plane (of one-byte elements, for `fit_tiles`).
pub fn encode_plane(
    bytes: &[u8],
    rows: usize,
    cols: usize,
    bias128: bool,
    options: &EncodeOptions,
) -> EncodedPlane {
    let CodedPlane { entry, order0_bits, payload, .. } =
        encode_plane_payload(bytes, rows, cols, bias128, true, PlaneSums::default(), options);
    let payload = payload.map_or_else(|| bytes.to_vec(), |p| p.to_vec());
    EncodedPlane { entry, payload, order0_bits }
}

/// A plane as [`encode_plane_payload`] encodes it.
pub(crate) struct CodedPlane {
    /// Its entry (payload offset 0).
    pub entry: PlaneEntry,
    /// The order-0 entropy of its bytes, in bits.
    pub order0_bits: f64,
    /// Its units, or `None` where it is stored raw (its payload is then its bytes).
    pub payload: Option<Payload>,
    /// The CRC-32C of its bytes: as the caller knew it, or taken by the encoder (in the pass
    /// that classifies rows where one runs, the plane then in cache).
    pub crc32c: u32,
}

/// What a caller already has of a plane's bytes (`encode_plane_payload`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PlaneSums {
    /// Their CRC-32C.
    pub crc32c: Option<u32>,
    /// Their histogram XOR the plane's bias, `none_histogram(bytes, bias, sampled_counts)`.
    pub none_counts: Option<[u64; 256]>,
}

/// Pass 1's result for one tile: its predictor, and its residuals unless the predictor is
/// NONE (then they are the plane's bytes XOR the bias).
struct TileModel {
    predictor: Predictor,
    residuals: Option<Vec<u8>>,
}

/// A plane and its tiles' models: where each tile's residuals come from.
struct Model<'a> {
    bytes: &'a [u8],
    cols: usize,
    bias: u8,
    tiles: Vec<Tile>,
    models: Vec<TileModel>,
}

impl Model<'_> {
    /// The histogram of tile `i`'s residuals.
    fn tile_histogram(&self, i: usize) -> [u64; 256] {
        match &self.models[i].residuals {
            Some(res) => histogram(res),
            None => self.bytes_histogram(i, self.bias),
        }
    }

    /// The histogram of tile `i`'s bytes in the plane, XOR `bias` (its residuals under NONE
    /// when `bias` is the plane's).
    fn bytes_histogram(&self, i: usize, bias: u8) -> [u64; 256] {
        let tile = self.tiles[i];
        // A tile has at most 2^22 symbols: u32 counts.
        let mut h = [0u32; 256];
        let rows =
            (tile.r0..tile.r0 + tile.h).map(|r| &self.bytes[r * self.cols + tile.c0..][..tile.w]);
        count(rows, tile.len(), bias, &mut h);
        h.map(u64::from)
    }

    /// The histogram of the plane's bytes, from `residuals` (the histogram of all tiles'
    /// residuals): NONE tiles' residuals are their bytes XOR the bias, so only the predicted
    /// tiles (few) are counted again.
    fn byte_histogram(&self, residuals: &[u64; 256]) -> [u64; 256] {
        let mut plain = [0u64; 256];
        for (s, p) in plain.iter_mut().enumerate() {
            *p = residuals[s ^ usize::from(self.bias)];
        }
        for (i, model) in self.models.iter().enumerate() {
            let Some(res) = &model.residuals else { continue };
            let in_residuals = histogram(res);
            for (s, p) in plain.iter_mut().enumerate() {
                *p -= in_residuals[s ^ usize::from(self.bias)];
            }
            for (p, &c) in plain.iter_mut().zip(&self.bytes_histogram(i, 0)) {
                *p += c;
            }
        }
        plain
    }

    /// Tile `i`'s symbols for the coder, and whether they are the plane's bytes: a predicted
    /// tile's stored residuals (`false`), or a NONE tile's bytes (`true`; tables relabeled by
    /// the bias code them as their residuals, `EncodeTable::relabeled`), read in place where
    /// its rows are whole decoder groups (or it spans the plane's width), else gathered into
    /// `scratch`.
    fn tile_symbols<'s>(&'s self, i: usize, scratch: &'s mut Vec<u8>) -> (UnitSymbols<'s>, bool) {
        let tile = self.tiles[i];
        if let Some(res) = &self.models[i].residuals {
            return (res.as_slice().into(), false);
        }
        let first_row = &self.bytes[tile.r0 * self.cols + tile.c0..];
        // (The coder reads a 128-byte group per step of its 32 lanes; a copy of the tile first
        // cost 3.5% of a MiniLM int8 encode.)
        match UnitSymbols::rows(first_row, tile.w, self.cols, tile.h) {
            Some(rows) if tile.w != self.cols => (rows, true),
            _ => (tile_bytes(self.bytes, self.cols, tile, scratch).into(), true),
        }
    }
}

/// The bytes of `tile` of a plane `cols` wide, row after row: in place where the tile spans the
/// plane's width, else gathered into `scratch`.
pub(crate) fn tile_bytes<'s>(
    bytes: &'s [u8],
    cols: usize,
    tile: Tile,
    scratch: &'s mut Vec<u8>,
) -> &'s [u8] {
    if tile.w == cols {
        return &bytes[tile.r0 * cols..][..tile.len()];
    }
    scratch.clear();
    for r in tile.r0..tile.r0 + tile.h {
        scratch.extend_from_slice(&bytes[r * cols + tile.c0..][..tile.w]);
    }
    scratch
}

/// The coded units laid end to end in a payload, each `UNIT_ALIGN`-aligned, and their records
/// (offsets from the payload's start), with the tiles' `predictors` in unit order.
pub(crate) fn lay_out_units(
    coded: Vec<(CodedUnit, u32)>,
    predictors: impl Iterator<Item = Predictor>,
) -> (Payload, Vec<UnitEntry>) {
    let mut payload = Payload::default();
    let mut units = Vec::with_capacity(coded.len());
    for ((unit, crc), predictor) in coded.into_iter().zip(predictors) {
        let offset = payload.len().next_multiple_of(UNIT_ALIGN as usize);
        payload.pad_to(offset);
        units.push(UnitEntry {
            offset: offset as u64,
            len: unit.bytes().len() as u32,
            crc32c: crc,
            predictor,
        });
        payload.push(unit);
    }
    (payload, units)
}

/// Bytes of the plane counted by one task when every tile is NONE.
const COUNT_CHUNK: usize = 1 << 18;

/// The histogram of all tiles' residuals; with every tile NONE, estimated from a sample if
/// `sampled` (`none_histogram`).
fn plane_histogram_of(model: &Model, sampled: bool) -> [u64; 256] {
    if model.models.iter().all(|m| m.residuals.is_none()) {
        return none_histogram(model.bytes, model.bias, sampled);
    }
    let hists: Vec<[u64; 256]> =
        (0..model.tiles.len()).into_par_iter().map(|i| model.tile_histogram(i)).collect();
    sum_histograms(&hists)
}

/// The histogram of `bytes` XOR `bias`: a plane's residuals when every tile is NONE, counted,
/// or estimated from a sample if `sampled` (`PlaneCounts`), in chunks spread over the threads.
pub(crate) fn none_histogram(bytes: &[u8], bias: u8, sampled: bool) -> [u64; 256] {
    let parts: Vec<PlaneCounts> = bytes
        .par_chunks(COUNT_CHUNK)
        .enumerate()
        .map(|(k, chunk)| {
            let mut counts = PlaneCounts::default();
            counts.add(chunk, k * COUNT_CHUNK, bytes.len(), sampled);
            counts
        })
        .collect();
    PlaneCounts::histogram(&parts, bytes.len(), bias)
}

/// Bytes of a sample's blocks: long enough for the counter's loop, short enough to spread the
/// sample over the plane.
const SAMPLE_BLOCK: usize = 4096;

/// Bytes a sampled histogram counts at least. A table from `n` counted symbols costs about
/// `(values - 1) / (2 n ln 2)` bits a symbol more than the exact one: at most 0.003 bits here,
/// with all 256 values present (on MiniLM int8, 0.006% of the file).
const SAMPLE_COUNTED: usize = 1 << 16;

/// Sampled blocks are one in this many at most.
const MAX_SAMPLE_STRIDE: usize = 16;

/// What a part of a plane adds to the plane's NONE histogram, parts of a plane being counted
/// apart (on different threads, or as a tensor is split) and then put together by
/// [`PlaneCounts::histogram`]: the same histogram however the plane is cut.
///
/// Sampled (`EncodeOptions::sampled_counts`, planes of at least twice `SAMPLE_COUNTED` bytes):
/// one block of `SAMPLE_BLOCK` bytes in every `stride` is counted, the counts are scaled to the
/// whole plane, and the other blocks are only scanned for values the sample missed
/// (`SeenBytes`, a fraction of a count's time), which get a count of 1: every byte of the
/// plane must have a frequency. The same result on every CPU and thread count. Otherwise every
/// byte is counted.
#[derive(Clone)]
pub(crate) struct PlaneCounts {
    counts: [u32; 256],
    present: SeenBytes,
    counted: usize,
}

impl Default for PlaneCounts {
    fn default() -> Self {
        PlaneCounts { counts: [0; 256], present: SeenBytes::default(), counted: 0 }
    }
}

impl PlaneCounts {
    /// Adds `part`, the bytes from `offset` of a plane of `plane_len` bytes (a part below
    /// 4 GiB: counts are u32).
    pub(crate) fn add(&mut self, part: &[u8], offset: usize, plane_len: usize, sampled: bool) {
        if !sampled || plane_len < 2 * SAMPLE_COUNTED {
            count([part], part.len(), 0, &mut self.counts);
            self.counted += part.len();
            return;
        }
        let stride = (plane_len / SAMPLE_COUNTED).clamp(1, MAX_SAMPLE_STRIDE);
        let period = SAMPLE_BLOCK * stride;
        // The part cut where its plane offsets cross a block's bounds: the first
        // `SAMPLE_BLOCK` bytes of every period are counted (in one call), the rest scanned.
        let mut sample: Vec<&[u8]> = Vec::with_capacity(part.len() / period + 2);
        let (mut at, mut rest) = (offset, part);
        while !rest.is_empty() {
            let in_period = at % period;
            let (piece, tail) = if in_period < SAMPLE_BLOCK {
                let (piece, tail) = rest.split_at(rest.len().min(SAMPLE_BLOCK - in_period));
                sample.push(piece);
                (piece, tail)
            } else {
                let (piece, tail) = rest.split_at(rest.len().min(period - in_period));
                self.present.add(piece);
                (piece, tail)
            };
            at += piece.len();
            rest = tail;
        }
        let counted = sample.iter().map(|p| p.len()).sum();
        count(sample, counted, 0, &mut self.counts);
        self.counted += counted;
    }

    /// The histogram of a plane of `plane_len` bytes, XOR `bias`, from the counts of all its
    /// parts.
    pub(crate) fn histogram(parts: &[PlaneCounts], plane_len: usize, bias: u8) -> [u64; 256] {
        let counted: usize = parts.iter().map(|p| p.counted).sum();
        // 1 where every byte was counted: the counts as they are.
        let scale = plane_len as f64 / counted.max(1) as f64;
        let mut total = [0u64; 256];
        for s in 0..256 {
            let n: u64 = parts.iter().map(|p| u64::from(p.counts[s])).sum();
            let seen = parts.iter().any(|p| p.present.contains(s as u8));
            total[s ^ usize::from(bias)] = match n {
                0 => u64::from(seen),
                n => (n as f64 * scale).round() as u64,
            };
        }
        total
    }
}

fn sum_histograms(hists: &[[u64; 256]]) -> [u64; 256] {
    let mut total = [0u64; 256];
    for h in hists {
        total.iter_mut().zip(h).for_each(|(t, &c)| *t += c);
    }
    total
}

/// A unit's cost apart from its symbols' codes: its 32 states, its record in the directory
/// and, on average, half its alignment.
const UNIT_FIXED_BYTES: f64 = (STATES_BYTES + UnitRecord::LEN) as f64 + UNIT_ALIGN as f64 / 2.0;

/// Fitted units cost at most this share of what coding them saves.
const UNIT_COST_SHARE: f64 = 1.0 / 8.0;

/// The tile shape of a `rows x cols` plane without `fit_tiles`: `tile_shape`'s, except that a
/// plane wider than a tile but narrower than two takes tiles of whole rows, as tall as the tile.
/// The second column of tiles would be a sliver with units of its own (MiniLM's rows of 384
/// bytes were tiles 256 and 128 wide, SmolLM2's Q4_1 quants of 288 bytes 256 and 32); a tile of
/// whole rows is one run of the plane's bytes, coded and decoded where it lies, and its fewer,
/// longer units cost less room (docs/PERFORMANCE.md, CPU "Encoder"). At most twice a tile's
/// area: a unit of a constant plane then expands about 860 times, within the decoder's default
/// limit of 1,024 (wider planes' tiles of whole rows went beyond it).
fn whole_row_tile_shape(rows: usize, cols: usize, config: TileConfig) -> (u32, u32) {
    let (tile_rows, tile_cols) = tile_shape(rows as u64, cols as u64, config);
    let width = tile_cols as usize;
    if cols > width && cols < 2 * width { (tile_rows, cols as u32) } else { (tile_rows, tile_cols) }
}

/// Units a plane may have at most for its tiles to be halved: those a GPU runs all at once,
/// one a warp (an H100 runs 132 multiprocessors of 8 of the kernel's warps each).
const ONE_WAVE_UNITS: u64 = 1024;

/// The tile shape of `EncodeOptions::fit_tiles` for a `rows x cols` plane whose residuals
/// under NONE have the histogram `counts`: `tile_shape`'s, with the height fitted where that
/// shape is the configured one (planes it made narrow or short keep theirs).
///
/// A GPU warp decodes a unit as a chain of dependent steps, one per 32 symbols, so a plane
/// the GPU runs in one wave of units decodes alone in about one unit's chain: half-height
/// tiles halve it (a 4096 x 4096 int8 layer, 1,024 units of 128 x 128, on an H100: 51 us
/// against 35, GPU run 94), and MiniLM's int8 tensors also decode 2-3% faster in launches of
/// 512 MiB. Only planes of `whole_elements` (one-byte dtypes) are halved: BF16's exponent
/// planes, whose units write two bytes a symbol, decoded 5% slower at 64 rows. Each unit also
/// costs `UNIT_FIXED_BYTES`, which weighs on planes that coding shrinks little (SmolLM2's Q8_0
/// quants save 5%): tiles are halved only where their units stay within `UNIT_COST_SHARE` of
/// their saving (estimated by the order-0 entropy), and doubled (up to 4 times the height)
/// until they do.
pub(crate) fn fitted_tile_shape(
    rows: usize,
    cols: usize,
    whole_elements: bool,
    config: wcodec_predict::TileConfig,
    counts: &[u64; 256],
) -> (u32, u32) {
    let symbols = (rows * cols) as f64;
    let saved_per_symbol = (symbols - entropy_bits(counts) / 8.0) / symbols;
    fitted_tile_shape_saving(rows, cols, whole_elements, config, saved_per_symbol)
}

/// [`fitted_tile_shape`] for a plane whose coding saves `saved_per_symbol` bytes a symbol.
pub(crate) fn fitted_tile_shape_saving(
    rows: usize,
    cols: usize,
    whole_elements: bool,
    config: wcodec_predict::TileConfig,
    saved_per_symbol: f64,
) -> (u32, u32) {
    let (rows, cols) = (rows as u64, cols as u64);
    let (tile_rows, tile_cols) = tile_shape(rows, cols, config);
    if (tile_rows, tile_cols) != (config.rows, config.cols) {
        return (tile_rows, tile_cols);
    }
    let pays = |h: u64| {
        UNIT_FIXED_BYTES
            <= UNIT_COST_SHARE * saved_per_symbol * (h * cols.min(u64::from(tile_cols))) as f64
    };
    let units = |h: u64| rows.div_ceil(h) * cols.div_ceil(u64::from(tile_cols));
    let mut h = u64::from(tile_rows);
    if whole_elements && h >= 2 && units(h) <= ONE_WAVE_UNITS && pays(h / 2) {
        h /= 2;
    }
    let tallest = (4 * u64::from(tile_rows)).min(MAX_TILE_SYMBOLS / u64::from(tile_cols));
    while !pays(h) && h < rows && 2 * h <= tallest {
        h *= 2;
    }
    (h.min(rows) as u32, tile_cols)
}

/// Turns predicted tiles back to NONE where that makes the plane cheaper to code with one
/// table (`total`: the histogram of all tiles' residuals); the new histogram if any tile
/// changed.
///
/// Predictors are chosen per tile on the tile's own statistics. Under the one table of the
/// plane, dominated by its NONE tiles, a predicted tile's residuals (spread wider than the
/// bytes) can cost more than its bytes would, and they blur the table for every other tile:
/// 14 TOP tiles of MiniLM's int8 embedding cost its one-table file 2.3%. Each predicted tile
/// is tried as NONE in turn and kept so when the plane's order-0 cost (which the table's
/// cost follows) falls; a second pass sees the tables that the first one left.
fn review_predictors(model: &mut Model, total: &[u64; 256]) -> Option<[u64; 256]> {
    let predicted: Vec<(usize, [u64; 256], [u64; 256])> = (0..model.tiles.len())
        .filter(|&i| model.models[i].residuals.is_some())
        .map(|i| (i, model.tile_histogram(i), model.bytes_histogram(i, model.bias)))
        .collect();
    let mut total = *total;
    let mut bits = entropy_bits(&total);
    let mut reverted = vec![false; predicted.len()];
    for _pass in 0..2 {
        let mut changed = false;
        for (k, (_, residual, plain)) in predicted.iter().enumerate() {
            if reverted[k] {
                continue;
            }
            let mut trial = total;
            for ((t, &r), &p) in trial.iter_mut().zip(residual).zip(plain) {
                *t = *t - r + p;
            }
            let trial_bits = entropy_bits(&trial);
            if trial_bits < bits {
                (total, bits, reverted[k], changed) = (trial, trial_bits, true, true);
            }
        }
        if !changed {
            break;
        }
    }
    for (k, &(i, _, _)) in predicted.iter().enumerate() {
        if reverted[k] {
            model.models[i] = TileModel { predictor: Predictor::None, residuals: None };
        }
    }
    reverted.contains(&true).then_some(total)
}

/// Bits a symbol costs on average under a table, its probabilities taken as the symbols'.
fn table_entropy_bits(table: &wcodec_rans::Frequencies, prob_bits: u8) -> f64 {
    let total = f64::from(1u32 << prob_bits);
    let bits = |f: u32| f64::from(f) / total * (f64::from(prob_bits) - f64::from(f).log2());
    table.iter().filter(|&&f| f > 0).map(|&f| bits(f)).sum()
}

/// Planes of at least this many tiles have their predictors scouted: one tile in each window
/// of this many is priced first, and the others only in a window next to (or of) a predicted
/// scout. On weights NONE wins nearly every tile, and pricing the five predictors on every
/// tile's sample was about 14% of an int8 encode; a plane's predictable tiles come in runs
/// (MiniLM's position embedding, the unused tokens of its word embedding), which scouts meet.
/// Planes of 4 to 7 tiles (a 384 x 384 layer) were priced whole before: scouting them too
/// left every file of the corpus byte-identical and took 1-5% off the one-thread encodes of
/// MiniLM's BF16, FP16, FP8 and int8 per-row files.
const SCOUT_STRIDE: usize = 4;

/// The windows of `scout_tiles` for a plane of `tiles` tiles.
fn scout_stride(tiles: usize) -> usize {
    if tiles < SCOUT_STRIDE { 1 } else { SCOUT_STRIDE }
}

/// The scouts of a plane of `tiles`: one in each window of `scout_stride` tiles, the largest
/// tile of the window (a plane's narrow edge tiles, a column or a few rows, are poor judges of
/// its predictors: a 300 x 257 ramp scouted by its 256 x 1 tile was stored raw), and among
/// tiles of one size the first from an offset drawn from a fixed hash of the window, so that
/// tiles repeating with the stride are not all missed (every tile in a plane of fewer than
/// `SCOUT_STRIDE`).
fn scout_tiles(tiles: &[Tile]) -> impl Iterator<Item = usize> + '_ {
    let stride = scout_stride(tiles.len());
    (0..tiles.len().div_ceil(stride)).map(move |w| {
        let start = w * stride;
        let window = stride.min(tiles.len() - start);
        // A multiplicative hash of the window's index (Fibonacci hashing).
        let h = (w as u64).wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        let offset = (h % window as u64) as usize;
        let in_order = (0..window).map(|k| start + (offset + k) % window);
        // `max_by_key` keeps the last of equals: the reversed order makes it the first.
        in_order.rev().max_by_key(|&i| tiles[i].len()).expect("a window of one tile or more")
    })
}

/// Inputs of at least this many bytes are counted into four arrays (`count`).
const LONG_COUNT: usize = 1024;

/// Adds the bytes of rows `a` and `b` (of equal length), XOR `bias`, to `ha` and `hb`, the two
/// rows interleaved 8 bytes at a time: an increment then waits on a repeated symbol only every
/// other step (MiniLM int8 rows of 384 bytes: 0.36 instead of 0.49 ns a byte counted alone).
fn count_pair(a: &[u8], b: &[u8], bias: u8, ha: &mut [u32; 256], hb: &mut [u32; 256]) {
    debug_assert_eq!(a.len(), b.len());
    let bias8 = u64::from_ne_bytes([bias; 8]);
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (wa.remainder(), wb.remainder());
    for (x, y) in wa.zip(wb) {
        let va = u64::from_le_bytes(x.try_into().expect("8 bytes")) ^ bias8;
        let vb = u64::from_le_bytes(y.try_into().expect("8 bytes")) ^ bias8;
        for k in 0..8 {
            ha[((va >> (8 * k)) & 0xff) as usize] += 1;
            hb[((vb >> (8 * k)) & 0xff) as usize] += 1;
        }
    }
    for (&x, &y) in ra.iter().zip(rb) {
        ha[usize::from(x ^ bias)] += 1;
        hb[usize::from(y ^ bias)] += 1;
    }
}

/// Adds the bytes of `rows` (`len` bytes in all), XOR `bias`, to `h`, 8 bytes a load. Weights
/// repeat a few symbols, so with one counter array each increment would often wait for the
/// previous one of the same symbol: long inputs are counted into four arrays (unbiased, so
/// the bias costs one index change when they are added up), short ones (rows) straight into
/// `h`, where zeroing and adding up four arrays would cost more than the waits.
fn count<'a>(rows: impl IntoIterator<Item = &'a [u8]>, len: usize, bias: u8, h: &mut [u32; 256]) {
    if len < LONG_COUNT {
        let bias8 = u64::from_ne_bytes([bias; 8]);
        for bytes in rows {
            let mut words = bytes.chunks_exact(8);
            for w in &mut words {
                let v = u64::from_le_bytes(w.try_into().expect("8 bytes")) ^ bias8;
                for k in 0..8 {
                    h[((v >> (8 * k)) & 0xff) as usize] += 1;
                }
            }
            for &x in words.remainder() {
                h[usize::from(x ^ bias)] += 1;
            }
        }
        return;
    }
    let mut parts = [[0u32; 256]; 4];
    for bytes in rows {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let v = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            for k in 0..8 {
                parts[k % 4][((v >> (8 * k)) & 0xff) as usize] += 1;
            }
        }
        for &x in words.remainder() {
            parts[0][usize::from(x)] += 1;
        }
    }
    for s in 0..256 {
        h[s ^ usize::from(bias)] += parts[0][s] + parts[1][s] + parts[2][s] + parts[3][s];
    }
}

/// The least share of its bytes a plane's coding must save to be kept: decoding a coded plane
/// takes a pass of the rANS decoder, a stored one a copy. Near-random planes (the mantissa
/// bytes of BF16 and FP16, 7.95-7.98 bits a byte) otherwise get coded for 0.1% (MiniLM BF16's
/// embedding: its ratio 1.5076 -> 1.5071, encode 1.1x and decode 1.1x faster).
pub(crate) const MIN_PLANE_SAVING: f64 = 0.005;

thread_local! {
    /// The bytes of a NONE tile narrower than its plane and not read in place, gathered for the
    /// coder, reused per thread.
    pub(crate) static GATHER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The entry of a `rows x cols` plane stored as it is (payload offset 0), its bytes' CRC-32C
/// `crc32c`.
pub(crate) fn raw_plane(rows: usize, cols: usize, crc32c: u32) -> PlaneEntry {
    PlaneEntry {
        rows: rows as u64,
        cols: cols as u64,
        tile_rows: 0,
        tile_cols: 0,
        bias128: false,
        payload_offset: 0,
        payload_len: (rows * cols) as u64,
        encoding: PlaneEncoding::Raw { crc32c },
    }
}

/// Encodes a row-major `rows x cols` byte plane; returns its entry (payload offset 0), the
/// order-0 entropy of its bytes in bits, and its payload of units, or `None` where the plane is
/// stored raw (its payload is then `bytes` as they are, which the caller may own and move).
/// `whole_elements`: the plane is a tensor of one-byte elements (`fitted_tile_shape`); `known`:
/// what the caller took of `bytes` while they were in cache.
pub(crate) fn encode_plane_payload(
    bytes: &[u8],
    rows: usize,
    cols: usize,
    bias128: bool,
    whole_elements: bool,
    known: PlaneSums,
    options: &EncodeOptions,
) -> CodedPlane {
    let PlaneSums { crc32c: known_crc, none_counts } = known;
    debug_assert_eq!(bytes.len(), rows * cols);
    // The CRC where no pass took it.
    let crc_of = |taken: Option<u32>| taken.unwrap_or_else(|| crate::crc32c_parallel(bytes));
    let raw_entry = |order0_bits: f64, taken: Option<u32>| {
        let crc32c = crc_of(taken);
        CodedPlane { entry: raw_plane(rows, cols, crc32c), order0_bits, payload: None, crc32c }
    };
    if bytes.is_empty() {
        return raw_entry(0.0, known_crc);
    }
    let bias = if bias128 { 0x80 } else { 0 };
    // Fitting tiles needs the plane's histogram first; it is also the plane's residual
    // histogram if every tile turns out NONE (as with the GPU preset's predictors).
    let none_counts = none_counts
        .or_else(|| options.fit_tiles.then(|| none_histogram(bytes, bias, options.sampled_counts)));
    let (tile_rows, tile_cols) = match &none_counts {
        Some(counts) if options.fit_tiles => {
            fitted_tile_shape(rows, cols, whole_elements, options.tile, counts)
        }
        _ => whole_row_tile_shape(rows, cols, options.tile),
    };
    let tiles: Vec<Tile> = tiles(rows, cols, tile_rows, tile_cols);

    // Pass 1: the predictor of every tile, and the residuals of predicted tiles. The scouts
    // (`scout_tiles`) are priced first, then the tiles in or next to the window of a predicted
    // scout; the others are NONE without being priced.
    let model_of = |tile: Tile, predictor: Predictor| {
        let residuals = (predictor != Predictor::None).then(|| {
            let mut res = vec![0u8; tile.len()];
            residuals(bytes, cols, tile, predictor, bias, &mut res);
            res
        });
        TileModel { predictor, residuals }
    };
    let choose = |tile: Tile| choose_predictor(bytes, cols, tile, bias, &options.predictors);
    let scouts: Vec<usize> = if options.predictors == [Predictor::None] {
        Vec::new()
    } else {
        scout_tiles(&tiles).collect()
    };
    let scouted: Vec<Predictor> = scouts.par_iter().map(|&i| choose(tiles[i])).collect();
    // Whether tile `i`'s window or one next to it has a predicted scout.
    let stride = scout_stride(tiles.len());
    let near_predicted = |i: usize| {
        let w = i / stride;
        (w.saturating_sub(1)..=w + 1).any(|v| scouted.get(v).is_some_and(|&p| p != Predictor::None))
    };
    let models: Vec<TileModel> = (0..tiles.len())
        .into_par_iter()
        .map(|i| {
            let predictor = match scouts.binary_search(&i) {
                Ok(k) => scouted[k],
                Err(_) if near_predicted(i) => choose(tiles[i]),
                Err(_) => Predictor::None,
            };
            model_of(tiles[i], predictor)
        })
        .collect();
    let mut model = Model { bytes, cols, bias, tiles, models };
    let all_none = model.models.iter().all(|m| m.residuals.is_none());
    let plane_histogram = || match none_counts {
        Some(counts) if all_none => counts,
        _ => plane_histogram_of(&model, options.sampled_counts),
    };
    // Then the tables: row classes from per-row histograms (u32 counts: rows shorter than
    // 2^32) when asked for and rows are at least a decoder group (128 symbols) wide, or one
    // table from the plane's histogram. In narrower planes (GGUF's block scales, 18-48 bytes a
    // row) a group spans rows of several classes, which the decoders take on a slower path;
    // on the SmolLM2 GGUF file their classes saved 0.027% of the file and cost 1.12x of
    // decode and 1.5x of encode time (docs/PERFORMANCE.md).
    let prob_bits = options.prob_bits;
    let chosen =
        if options.max_tables > 1 && rows > 1 && (GROUP..=u32::MAX as usize).contains(&cols) {
            let grid_cols = cols.div_ceil(tile_cols as usize);
            let tile_rows = tile_rows as usize;
            // Whether each band of tiles is all NONE (asked of every row).
            let none_bands: Vec<bool> = model
                .models
                .chunks(grid_cols)
                .map(|band| band.iter().all(|m| m.residuals.is_none()))
                .collect();
            let none_band = |r: usize| none_bands[r / tile_rows];
            // Row `r` piece by piece: a NONE tile's bytes (`true`) or a predicted tile's
            // residuals.
            let pieces = |r: usize, f: &mut dyn FnMut(&[u8], bool)| {
                let band = r / tile_rows;
                for i in band * grid_cols..(band + 1) * grid_cols {
                    let (tile, at) = (model.tiles[i], r - band * tile_rows);
                    match &model.models[i].residuals {
                        Some(res) => f(&res[at * tile.w..][..tile.w], false),
                        None => f(&bytes[r * cols + tile.c0..][..tile.w], true),
                    }
                }
            };
            let row = |r: usize| &bytes[r * cols..][..cols];
            let row_hist = |rs: &[usize], hists: &mut [[u32; 256]]| {
                if let ([a, b], [ha, hb]) = (rs, &mut *hists)
                    && cols < LONG_COUNT
                    && none_band(*a)
                    && none_band(*b)
                {
                    return count_pair(row(*a), row(*b), bias, ha, hb);
                }
                for (&r, h) in rs.iter().zip(hists) {
                    if none_band(r) {
                        count([row(r)], cols, bias, h);
                    } else {
                        pieces(r, &mut |piece, are_bytes| {
                            count([piece], piece.len(), if are_bytes { bias } else { 0 }, h);
                        });
                    }
                }
            };
            let plane = PlaneRows {
                bytes,
                cols,
                bias,
                none_row: &none_band,
                pieces: &pieces,
                counter: &row_hist,
                crc: known_crc.is_none(),
            };
            let (max_tables, sampled) = (options.max_tables, options.sampled_counts);
            choose_tables(&plane, &plane_histogram, prob_bits, max_tables, sampled)
        } else {
            ChosenTables::one(plane_histogram(), prob_bits)
        };
    let ChosenTables { tables, row_tables, bits: coded_bits, total, crc32c: taken_crc } = chosen;
    let known_crc = known_crc.or(taken_crc);
    // One table for the whole plane: a predictor chosen on a tile's own statistics may not
    // pay under it (NONE must be allowed to go back to it).
    let may_revert =
        row_tables.is_empty() && !all_none && options.predictors.contains(&Predictor::None);
    let reviewed = if may_revert { review_predictors(&mut model, &total) } else { None };
    let (tables, coded_bits, total) = match reviewed {
        Some(total) => {
            let table = normalize(&total, prob_bits);
            let bits = cost_bits(&total, &table, prob_bits);
            (vec![table], bits, total)
        }
        None => (tables, coded_bits, total),
    };
    let all_none = model.models.iter().all(|m| m.residuals.is_none());
    // With NONE everywhere the residuals are the bytes XOR a constant: same entropy.
    let order0_bits =
        if all_none { entropy_bits(&total) } else { entropy_bits(&model.byte_histogram(&total)) };

    // Estimate before coding: a plane that will not shrink by `MIN_PLANE_SAVING` is stored as
    // it is.
    let n_tiles = model.tiles.len();
    let per_unit = (STATES_BYTES + UnitRecord::LEN) as f64 + UNIT_ALIGN as f64 / 2.0;
    let estimate = coded_bits / 8.0 + per_unit * n_tiles as f64 + tables.len() as f64 * 300.0;
    let worth = bytes.len() as f64 * (1.0 - MIN_PLANE_SAVING);
    if estimate >= worth {
        return raw_entry(order0_bits, known_crc);
    }

    // Pass 2: one unit per tile.
    // NONE tiles are coded from the plane's bytes, the bias folded into their tables; predicted
    // tiles from their residuals, with the plain tables (the same ones without a bias, and
    // built only where some tile is predicted).
    let encoders_by = |relabel: u8| -> Vec<EncodeTable> {
        tables.iter().map(|t| EncodeTable::relabeled(t, prob_bits, relabel)).collect()
    };
    let byte_encoders = encoders_by(bias);
    let residual_encoders = (bias != 0 && !all_none).then(|| encoders_by(0));
    // A unit is coded into a buffer of its own, sized by an estimate with a margin (tiles
    // differ; a unit that needs more grows its buffer, a copy of what it has coded): with row
    // classes from its rows' tables (their own entropies), else from the plane's.
    let bits_per_symbol = coded_bits / bytes.len() as f64;
    let class_bits: Vec<f64> = if row_tables.is_empty() {
        Vec::new()
    } else {
        tables.iter().map(|t| table_entropy_bits(t, prob_bits)).collect()
    };
    let coded: Result<Vec<(CodedUnit, u32)>, RansError> = (0..n_tiles)
        .into_par_iter()
        .map(|i| {
            let tile = model.tiles[i];
            let map = if row_tables.is_empty() {
                TableMap::Single
            } else {
                TableMap::Rows { row_tables: &row_tables[tile.r0..tile.r0 + tile.h], width: tile.w }
            };
            let bits = match row_tables.get(tile.r0..tile.r0 + tile.h) {
                Some(rows) if !class_bits.is_empty() => {
                    rows.iter().map(|&c| class_bits[usize::from(c)]).sum::<f64>() * tile.w as f64
                }
                _ => bits_per_symbol * tile.len() as f64,
            };
            let expected = (bits / 8.0 * 1.0625) as usize + STATES_BYTES + 256;
            let unit = GATHER.with_borrow_mut(|scratch| {
                let (symbols, are_bytes) = model.tile_symbols(i, scratch);
                let tables = match &residual_encoders {
                    Some(plain) if !are_bytes => plain,
                    _ => &byte_encoders,
                };
                encode_unit_owned(symbols, tables, map, expected)
            })?;
            let crc = wcodec_format::crc32c(unit.bytes());
            Ok((unit, crc))
        })
        .collect();
    // A symbol without a frequency in its table would be an encoder bug (the tables give one
    // to every value their rows hold): the coder refuses it rather than write a unit that does
    // not decode, and the plane is then stored as it is, so the file stays exact.
    let Ok(coded) = coded else {
        debug_assert!(false, "a symbol without frequency in a plane of {rows} x {cols}");
        return raw_entry(order0_bits, known_crc);
    };
    let coded_len = coded
        .iter()
        .fold(0usize, |len, (u, _)| len.next_multiple_of(UNIT_ALIGN as usize) + u.bytes().len());
    let directory_cost = n_tiles * UnitRecord::LEN + tables.len() * 300 + row_tables.len() / 2;
    if (coded_len + directory_cost) as f64 >= worth {
        return raw_entry(order0_bits, known_crc);
    }
    let (payload, units) = lay_out_units(coded, model.models.iter().map(|m| m.predictor));
    let entry = PlaneEntry {
        rows: rows as u64,
        cols: cols as u64,
        tile_rows,
        tile_cols,
        bias128,
        payload_offset: 0,
        payload_len: payload.len() as u64,
        encoding: PlaneEncoding::Rans {
            prob_bits,
            tables,
            row_tables,
            col_tables: Vec::new(),
            units,
        },
    };
    CodedPlane { entry, order0_bits, payload: Some(payload), crc32c: crc_of(known_crc) }
}

#[cfg(test)]
mod tests {
    use super::{
        COUNT_CHUNK, EncodeOptions, EncodedPlane, Model, SAMPLE_COUNTED, SCOUT_STRIDE, TileModel,
        count, count_pair, encode_plane, fitted_tile_shape, none_histogram, plane_histogram_of,
        scout_stride, scout_tiles, whole_row_tile_shape,
    };
    use wcodec_format::{PlaneEncoding, Predictor};
    use wcodec_predict::TileConfig;
    use wcodec_predict::tile_shape;
    use wcodec_predict::{Tile, residuals, tiles};
    use wcodec_rans::normalize;

    /// Bytes of xorshift noise, one in `zero_every` of them 0: about 7.95 bits a byte for 40,
    /// 7.65 for 10.
    fn noise(n: usize, zero_every: u32) -> Vec<u8> {
        let mut x = 0x2468_ace1_u32;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if x.is_multiple_of(zero_every) { 0 } else { (x >> 24) as u8 }
            })
            .collect()
    }

    /// A plane between one and two tiles wide takes tiles of whole rows; the others keep
    /// `tile_shape`'s tiles (narrow planes taller ones, short planes wider ones).
    #[test]
    fn planes_under_two_tiles_wide_take_whole_rows() {
        let config = TileConfig::default();
        assert_eq!(whole_row_tile_shape(1536, 288, config), (256, 288));
        assert_eq!(whole_row_tile_shape(30522, 384, config), (256, 384));
        assert_eq!(whole_row_tile_shape(1000, 511, config), (256, 511));
        assert_eq!(whole_row_tile_shape(100, 300, config), (100, 300));
        // Whole numbers of tiles, two tiles or more, narrow planes, short planes: as they were.
        let others = [(1536, 256), (1536, 512), (1536, 576), (1536, 1023), (1536, 1600)];
        for (rows, cols) in others.into_iter().chain([(1536, 18), (1, 384), (2, 600)]) {
            let expected = tile_shape(rows as u64, cols as u64, config);
            assert_eq!(whole_row_tile_shape(rows, cols, config), expected, "{rows}x{cols}");
        }
        let gpu = TileConfig { rows: 128, cols: 128 };
        assert_eq!(whole_row_tile_shape(1000, 200, gpu), (128, 200));
    }

    /// One scout in each window of the stride, the last window partial; every tile of a
    /// plane of fewer tiles than the stride.
    #[test]
    fn scouts_take_one_tile_a_window() {
        let square = Tile { r0: 0, c0: 0, h: 256, w: 256 };
        for n in [0usize, 1, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 240, 241] {
            let stride = scout_stride(n);
            assert_eq!(stride, if n < SCOUT_STRIDE { 1 } else { SCOUT_STRIDE });
            let scouts: Vec<usize> = scout_tiles(&vec![square; n]).collect();
            assert_eq!(scouts.len(), n.div_ceil(stride), "{n} tiles");
            for (w, &i) in scouts.iter().enumerate() {
                assert_eq!(i / stride, w, "{n} tiles: scout {i} in window {w}");
                assert!(i < n);
            }
        }
        // The offsets differ from window to window.
        let offsets: std::collections::BTreeSet<usize> =
            scout_tiles(&[square; 400]).map(|i| i % 4).collect();
        assert!(offsets.len() > 1);
        // A window's scout is its largest tile: not an edge tile of one column or few rows.
        let grid = tiles(300, 257, 256, 256);
        assert_eq!(grid.len(), 4);
        assert_eq!(scout_tiles(&grid).collect::<Vec<_>>(), [0]);
        let grid = tiles(1100, 257, 256, 256);
        for (w, s) in scout_tiles(&grid).enumerate() {
            let window = &grid[w * SCOUT_STRIDE..(w * SCOUT_STRIDE + SCOUT_STRIDE).min(grid.len())];
            assert_eq!(grid[s].len(), window.iter().map(Tile::len).max().unwrap(), "scout {s}");
        }
    }

    /// A smooth plane but for its last column, noise, an edge tile of its own that no
    /// predictor helps: its large tiles are still predicted, and the plane is coded, not
    /// stored.
    #[test]
    fn planes_are_scouted_by_their_large_tiles() {
        let (rows, cols) = (300, 257);
        let noise = noise(rows, 1_000_000);
        let bytes: Vec<u8> = (0..rows * cols)
            .map(|i| match (i / cols, i % cols) {
                (r, 256) => noise[r],
                (r, c) => (c + r) as u8,
            })
            .collect();
        let plane = encode_plane(&bytes, rows, cols, false, &EncodeOptions::default());
        let PlaneEncoding::Rans { units, .. } = &plane.entry.encoding else {
            panic!("a smooth plane stored raw")
        };
        assert!(units.iter().any(|u| u.predictor != Predictor::None));
    }

    #[test]
    fn planes_that_would_save_under_half_a_percent_are_stored() {
        let options = EncodeOptions::default();
        let coded = |bytes: &[u8]| {
            let plane = encode_plane(bytes, 512, 1024, false, &options);
            (matches!(plane.entry.encoding, PlaneEncoding::Rans { .. }), plane.payload.len())
        };
        // Entropy 0.6% under 8 bits, less the units' overhead: under 0.5% saved, stored.
        let bytes = noise(512 * 1024, 40);
        assert_eq!(coded(&bytes), (false, bytes.len()));
        // 4% under 8 bits: coded.
        let bytes = noise(512 * 1024, 10);
        let (is_coded, len) = coded(&bytes);
        assert!(is_coded && (len as f64) < bytes.len() as f64 * 0.97, "{len}");
    }

    /// A tile whose bytes repeat the byte above half the time codes cheaper with TOP on its
    /// own statistics (residual 0 half the time), but under the one table of a plane of
    /// unpredictable bytes 0..16 its residuals (down to -15) cost more than its bytes: with
    /// one table it goes back to NONE, and the plane comes out as with NONE everywhere.
    #[test]
    fn one_table_planes_drop_predictors_that_do_not_pay_under_it() {
        let (rows, cols) = (64 * 8, 64);
        let mut x = 0x1357_9bdf_u32;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut bytes: Vec<u8> = (0..rows * cols).map(|_| (next() >> 28) as u8).collect();
        // The first tile (rows 0..64): each byte below the first row is the one above it, half
        // the time.
        for i in cols..64 * cols {
            if next() & 1 == 0 {
                bytes[i] = bytes[i - cols];
            }
        }
        let options = |max_tables, predictors: &[Predictor]| EncodeOptions {
            tile: TileConfig { rows: 64, cols: 64 },
            max_tables,
            predictors: predictors.to_vec(),
            ..EncodeOptions::default()
        };
        let predictors = |plane: &EncodedPlane| match &plane.entry.encoding {
            PlaneEncoding::Rans { units, .. } => units.iter().map(|u| u.predictor).collect(),
            PlaneEncoding::Raw { .. } => Vec::new(),
        };
        // Alone, the tile takes TOP.
        let alone =
            encode_plane(&bytes[..64 * cols], 64, cols, false, &options(1, &Predictor::ALL));
        assert_eq!(predictors(&alone), [Predictor::Top]);
        // In the one-table plane it does not.
        let plane = encode_plane(&bytes, rows, cols, false, &options(1, &Predictor::ALL));
        assert_eq!(predictors(&plane), vec![Predictor::None; 8]);
        let none_only = encode_plane(&bytes, rows, cols, false, &options(1, &[Predictor::None]));
        assert_eq!(plane.payload, none_only.payload);
    }

    /// Rows of two disjoint alphabets, alternating: row classes pay (two tables, each row
    /// coded on half the symbols), but only rows at least a decoder group wide get them.
    #[test]
    fn only_planes_a_group_wide_get_row_classes() {
        let mut x = 0x2545_f491_u32;
        let plane = |rows: usize, cols: usize, x: &mut u32| -> Vec<u8> {
            (0..rows * cols)
                .map(|i| {
                    *x ^= *x << 13;
                    *x ^= *x >> 17;
                    *x ^= *x << 5;
                    let base = if (i / cols).is_multiple_of(2) { 0 } else { 16 };
                    base + (*x >> 28) as u8
                })
                .collect()
        };
        let options = EncodeOptions { predictors: vec![Predictor::None], ..Default::default() };
        let row_tables =
            |bytes: &[u8], rows, cols| match encode_plane(bytes, rows, cols, false, &options)
                .entry
                .encoding
            {
                PlaneEncoding::Rans { tables, row_tables, .. } => {
                    (tables.len(), !row_tables.is_empty())
                }
                PlaneEncoding::Raw { .. } => (0, false),
            };
        let (tables, classes) = row_tables(&plane(512, 128, &mut x), 512, 128);
        assert!(tables >= 2 && classes, "{tables} tables");
        assert_eq!(row_tables(&plane(4096, 18, &mut x), 4096, 18), (1, false));
        assert_eq!(row_tables(&plane(1024, 127, &mut x), 1024, 127), (1, false));
    }

    /// The plane's histogram is its tiles' residuals counted together, whether every tile is
    /// NONE (the plane counted in long chunks, XOR the bias) or some are predicted (tile by
    /// tile), on planes larger than a chunk with edge tiles.
    #[test]
    fn plane_histogram_is_that_of_every_tiles_residuals() {
        let (rows, cols) = (700, 500);
        let bytes = noise(rows * cols, 9);
        assert!(bytes.len() > COUNT_CHUNK);
        for bias in [0u8, 0x80] {
            let tiles = tiles(rows, cols, 128, 128);
            let none = || TileModel { predictor: Predictor::None, residuals: None };
            let models: Vec<TileModel> = tiles.iter().map(|_| none()).collect();
            let mut model = Model { bytes: &bytes, cols, bias, tiles, models };
            let mut expected = [0u64; 256];
            for &b in &bytes {
                expected[usize::from(b ^ bias)] += 1;
            }
            assert_eq!(plane_histogram_of(&model, false), expected, "bias {bias:#x}, all NONE");
            // One tile predicted (its residuals stored): counted from them instead.
            let tile = model.tiles[3];
            let mut res = vec![0u8; tile.len()];
            residuals(&bytes, cols, tile, Predictor::Left, bias, &mut res);
            for r in tile.r0..tile.r0 + tile.h {
                for &b in &bytes[r * cols + tile.c0..][..tile.w] {
                    expected[usize::from(b ^ bias)] -= 1;
                }
            }
            for &x in &res {
                expected[usize::from(x)] += 1;
            }
            model.models[3] = TileModel { predictor: Predictor::Left, residuals: Some(res) };
            assert_eq!(
                plane_histogram_of(&model, false),
                expected,
                "bias {bias:#x}, one LEFT tile"
            );
            // Sampling is for all-NONE planes only: a predicted tile's plane is counted.
            assert_eq!(plane_histogram_of(&model, true), expected, "bias {bias:#x}, sampled");
        }
    }

    /// Both counting paths (short rows straight into the histogram, long inputs in four
    /// arrays) agree with one increment a byte, for every bias and ragged row lengths.
    #[test]
    fn count_matches_a_plain_histogram() {
        let mut x = 0x9e37_79b9_u32;
        let bytes: Vec<u8> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // Mostly a few symbols, as weights are, with runs of one.
                if x.is_multiple_of(7) { 0x80 } else { (x >> 24) as u8 % 23 }
            })
            .collect();
        for bias in [0u8, 0x80, 0x5a] {
            for lens in [
                &[0usize][..],
                &[1, 7, 9],
                &[255],
                &[256, 1],
                &[1023],
                &[1024],
                &[3, 5000, 17, 8000],
            ] {
                let mut rows = Vec::new();
                let mut at = 0;
                for &n in lens {
                    rows.push(&bytes[at..at + n]);
                    at += n;
                }
                let total: usize = lens.iter().sum();
                let mut expected = [7u32; 256];
                for &b in rows.iter().copied().flatten() {
                    expected[usize::from(b ^ bias)] += 1;
                }
                let mut h = [7u32; 256];
                count(rows.iter().copied(), total, bias, &mut h);
                assert_eq!(h, expected, "bias {bias:#x}, rows {lens:?}");
            }
            // Two rows at once, of every length up to a few words and one of a real plane.
            for n in (0..40).chain([384, 1023]) {
                let (a, b) = (&bytes[..n], &bytes[5000..5000 + n]);
                let (mut ha, mut hb) = ([3u32; 256], [5u32; 256]);
                count_pair(a, b, bias, &mut ha, &mut hb);
                let (mut ea, mut eb) = ([3u32; 256], [5u32; 256]);
                count([a], n, bias, &mut ea);
                count([b], n, bias, &mut eb);
                assert_eq!((ha, hb), (ea, eb), "bias {bias:#x}, rows of {n}");
            }
        }
    }

    /// Counts of `n` symbols spread evenly over the first `k` byte values: log2(k) bits each.
    fn even_counts(k: usize, n: u64) -> [u64; 256] {
        std::array::from_fn(|s| if s < k { n / k as u64 } else { 0 })
    }

    #[test]
    fn fitted_tiles_follow_the_planes_size_and_saving() {
        let gpu = TileConfig { rows: 128, cols: 128 };
        let fit = |rows: usize, cols: usize, k: usize| {
            fitted_tile_shape(rows, cols, true, gpu, &even_counts(k, (rows * cols) as u64))
        };
        // 5 bits a byte (37.5% saved): a 4096 x 4096 layer is 1,024 units, one wave: halved.
        assert_eq!(fit(4096, 4096, 32), (64, 128));
        // Twice the rows: two waves, kept.
        assert_eq!(fit(8192, 4096, 32), (128, 128));
        // 7 bits (12.5% saved): 64-row units would cost 16% of their saving, 128-row ones 8%.
        assert_eq!(fit(4096, 4096, 128), (128, 128));
        // 7.5 bits (6.25%): 256 rows; near 8 bits, at most 4 times the height.
        assert_eq!(fit(4096, 4096, 181), (256, 128));
        assert_eq!(fit(4096, 4096, 256), (512, 128));
        assert_eq!(fit(300, 4096, 256), (300, 128));
        // Narrow (GGUF block scales) and short planes keep tile_shape's shape.
        assert_eq!(fit(49_152, 18, 256), tile_shape(49_152, 18, gpu));
        assert_eq!(fit(100, 4096, 32), tile_shape(100, 4096, gpu));
        // Planes of wider elements' bytes are never halved, but still grow.
        let counts = |k| even_counts(k, 4096 * 4096);
        assert_eq!(fitted_tile_shape(4096, 4096, false, gpu, &counts(32)), (128, 128));
        assert_eq!(fitted_tile_shape(4096, 4096, false, gpu, &counts(181)), (256, 128));
    }

    #[test]
    fn fitted_planes_reuse_the_byte_histogram() {
        // Every tile NONE: the histogram counted to fit the tiles is the plane's histogram.
        let bytes = noise(700 * 384, 3);
        let options = EncodeOptions::for_gpu();
        let plane = encode_plane(&bytes, 700, 384, true, &options);
        let PlaneEncoding::Rans { tables, .. } = &plane.entry.encoding else { panic!("coded") };
        assert_eq!((plane.entry.tile_rows, plane.entry.tile_cols), (64, 128));
        let table = normalize(&none_histogram(&bytes, 0x80, false), options.prob_bits);
        assert_eq!(tables, &vec![table]);
        let fixed = EncodeOptions { fit_tiles: false, ..options };
        let tiles = encode_plane(&bytes, 700, 384, true, &fixed).entry;
        assert_eq!((tiles.tile_rows, tiles.tile_cols), (128, 128));
    }

    /// A sampled histogram gives every value of the plane a count, however rare (values seen
    /// once, outside the sample), and scales the sample to the plane; the same on any number
    /// of threads. Planes too small to sample are counted.
    #[test]
    fn sampled_histograms_keep_every_value() {
        let n = 40 * SAMPLE_COUNTED + 12_345;
        let mut x = 0x1357_9bdf_u32;
        let mut bytes: Vec<u8> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // Weights: a bell of values around 0 (as signed bytes).
                ((x % 17) as u8).wrapping_add((x >> 8) as u8 % 17).wrapping_sub(16)
            })
            .collect();
        // Outliers, one of each, spread over the plane.
        for (k, v) in [100u8, 127, 128, 200].into_iter().enumerate() {
            bytes[n / 5 * (k + 1) + 77] = v;
        }
        for bias in [0u8, 0x80] {
            let mut exact = [0u64; 256];
            for &b in &bytes {
                exact[usize::from(b ^ bias)] += 1;
            }
            let sampled = none_histogram(&bytes, bias, true);
            for s in 0..256 {
                assert_eq!(sampled[s] > 0, exact[s] > 0, "value {s:#x}, bias {bias:#x}");
                if exact[s] > n as u64 / 100 {
                    let error = sampled[s].abs_diff(exact[s]) as f64 / exact[s] as f64;
                    assert!(error < 0.05, "value {s:#x}: {} against {}", sampled[s], exact[s]);
                }
            }
            assert_ne!(sampled, exact, "a sample, not a count");
            let total: u64 = sampled.iter().sum();
            assert!(total.abs_diff(n as u64) < n as u64 / 1000, "{total} of {n}");
            let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
            assert_eq!(one.install(|| none_histogram(&bytes, bias, true)), sampled);
            let small = &bytes[..2 * SAMPLE_COUNTED - 1];
            assert_eq!(none_histogram(small, bias, true), none_histogram(small, bias, false));
        }
    }

    /// `EncodeOptions::fast` planes: one table from the sampled histogram, NONE tiles, and
    /// the table gives the rare values a frequency (the plane decodes: tested end to end in
    /// the facade's round trips).
    #[test]
    fn fast_planes_take_the_sampled_table() {
        let (rows, cols) = (2048, 768);
        let mut bytes = noise(rows * cols, 3);
        bytes[rows * cols - 5] = 0x42;
        let options = EncodeOptions::fast();
        let plane = encode_plane(&bytes, rows, cols, true, &options);
        let PlaneEncoding::Rans { tables, row_tables, units, .. } = &plane.entry.encoding else {
            panic!("coded")
        };
        assert!(row_tables.is_empty() && units.iter().all(|u| u.predictor == Predictor::None));
        let table = normalize(&none_histogram(&bytes, 0x80, true), options.prob_bits);
        assert_eq!(tables, &vec![table]);
    }
}
