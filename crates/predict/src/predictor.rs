//! The five predictors, their residuals and their exact inverses.
//!
//! All arithmetic is on `u = byte ^ bias` (bias 0x80 for signed planes) modulo 256, with
//! neighbours outside the tile taken as 0, as docs/FORMAT.md specifies.

use crate::tile::Tile;
use wcodec_format::Predictor;

#[inline(always)]
fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let p = i16::from(a) + i16::from(b) - i16::from(c);
    let (pa, pb, pc) =
        ((p - i16::from(a)).abs(), (p - i16::from(b)).abs(), (p - i16::from(c)).abs());
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}

#[inline(always)]
fn avg(a: u8, b: u8) -> u8 {
    ((u16::from(a) + u16::from(b)) >> 1) as u8
}

/// Residuals of one row: `cur` and `up` are already biased; `up` is `None` on the tile's first
/// row (all zeros).
fn row_residuals(cur: &[u8], up: Option<&[u8]>, predictor: Predictor, out: &mut [u8]) {
    match (predictor, up) {
        (Predictor::None, _) => out.copy_from_slice(cur),
        (Predictor::Left, _) | (Predictor::Avg | Predictor::Paeth, None) => {
            // With no row above, AVG predicts a/2 and PAETH predicts a (b = c = 0).
            let mut a = 0u8;
            for (o, &u) in out.iter_mut().zip(cur) {
                let p = match predictor {
                    Predictor::Avg => a >> 1,
                    _ => a,
                };
                *o = u.wrapping_sub(p);
                a = u;
            }
        }
        (Predictor::Top, None) => out.copy_from_slice(cur),
        (Predictor::Top, Some(up)) => {
            for ((o, &u), &b) in out.iter_mut().zip(cur).zip(up) {
                *o = u.wrapping_sub(b);
            }
        }
        (Predictor::Avg, Some(up)) => {
            let mut a = 0u8;
            for ((o, &u), &b) in out.iter_mut().zip(cur).zip(up) {
                *o = u.wrapping_sub(avg(a, b));
                a = u;
            }
        }
        (Predictor::Paeth, Some(up)) => {
            let (mut a, mut c) = (0u8, 0u8);
            for ((o, &u), &b) in out.iter_mut().zip(cur).zip(up) {
                *o = u.wrapping_sub(paeth(a, b, c));
                a = u;
                c = b;
            }
        }
    }
}

/// Inverse of `row_residuals`: rebuilds the biased row `cur` from its residuals.
fn row_reconstruct(res: &[u8], up: Option<&[u8]>, predictor: Predictor, cur: &mut [u8]) {
    match (predictor, up) {
        (Predictor::None, _) | (Predictor::Top, None) => cur.copy_from_slice(res),
        (Predictor::Left, _) => {
            let mut a = 0u8;
            for (u, &r) in cur.iter_mut().zip(res) {
                a = r.wrapping_add(a);
                *u = a;
            }
        }
        (Predictor::Avg, None) => {
            let mut a = 0u8;
            for (u, &r) in cur.iter_mut().zip(res) {
                a = r.wrapping_add(a >> 1);
                *u = a;
            }
        }
        (Predictor::Paeth, None) => {
            let mut a = 0u8;
            for (u, &r) in cur.iter_mut().zip(res) {
                a = r.wrapping_add(paeth(a, 0, 0));
                *u = a;
            }
        }
        (Predictor::Top, Some(up)) => {
            for ((u, &r), &b) in cur.iter_mut().zip(res).zip(up) {
                *u = r.wrapping_add(b);
            }
        }
        (Predictor::Avg, Some(up)) => {
            let mut a = 0u8;
            for ((u, &r), &b) in cur.iter_mut().zip(res).zip(up) {
                a = r.wrapping_add(avg(a, b));
                *u = a;
            }
        }
        (Predictor::Paeth, Some(up)) => {
            let (mut a, mut c) = (0u8, 0u8);
            for ((u, &r), &b) in cur.iter_mut().zip(res).zip(up) {
                a = r.wrapping_add(paeth(a, b, c));
                *u = a;
                c = b;
            }
        }
    }
}

fn biased(row: &[u8], bias: u8, out: &mut Vec<u8>) {
    out.clear();
    out.extend(row.iter().map(|&x| x ^ bias));
}

/// Writes the residuals of `tile` of a row-major plane `cols` wide into `out` (tile-sized, in
/// row-major tile order).
pub fn residuals(
    plane: &[u8],
    cols: usize,
    tile: Tile,
    predictor: Predictor,
    bias: u8,
    out: &mut [u8],
) {
    debug_assert_eq!(out.len(), tile.len());
    let row = |r: usize| &plane[(tile.r0 + r) * cols + tile.c0..][..tile.w];
    if predictor == Predictor::None {
        for r in 0..tile.h {
            for (o, &x) in out[r * tile.w..][..tile.w].iter_mut().zip(row(r)) {
                *o = x ^ bias;
            }
        }
        return;
    }
    let (mut cur, mut up) = (Vec::with_capacity(tile.w), Vec::with_capacity(tile.w));
    for r in 0..tile.h {
        biased(row(r), bias, &mut cur);
        let above = (r > 0).then_some(up.as_slice());
        row_residuals(&cur, above, predictor, &mut out[r * tile.w..][..tile.w]);
        std::mem::swap(&mut cur, &mut up);
    }
}

/// Rebuilds `tile` of a row-major plane `cols` wide from its residuals `res`.
pub fn reconstruct(
    res: &[u8],
    predictor: Predictor,
    bias: u8,
    plane: &mut [u8],
    cols: usize,
    tile: Tile,
) {
    debug_assert_eq!(res.len(), tile.len());
    if tile.is_empty() {
        return;
    }
    let rows = plane[tile.r0 * cols..]
        .chunks_mut(cols)
        .take(tile.h)
        .map(|row| &mut row[tile.c0..tile.c0 + tile.w]);
    reconstruct_row_by_row(res, predictor, bias, tile.w, rows);
}

/// Rebuilds the rows `rows` (each `w` wide) from their residuals `res`, one row after another.
fn reconstruct_row_by_row<'a>(
    res: &[u8],
    predictor: Predictor,
    bias: u8,
    w: usize,
    rows: impl Iterator<Item = &'a mut [u8]>,
) {
    let (mut cur, mut up) = (vec![0u8; w], vec![0u8; w]);
    for (r, (dst, res_row)) in rows.zip(res.chunks_exact(w)).enumerate() {
        if predictor == Predictor::None {
            for (d, &x) in dst.iter_mut().zip(res_row) {
                *d = x ^ bias;
            }
            continue;
        }
        let above = (r > 0).then_some(up.as_slice());
        row_reconstruct(res_row, above, predictor, &mut cur);
        for (d, &u) in dst.iter_mut().zip(&cur) {
            *d = u ^ bias;
        }
        std::mem::swap(&mut cur, &mut up);
    }
}

/// [`reconstruct`] into a tile given as its rows (`rows[r]` is tile row `r`, all of one width),
/// for decoders that hold a plane's tiles as disjoint row slices.
///
/// AVG and PAETH, whose every byte waits for its left neighbour, rebuild `PIPE` rows at once,
/// each a column behind the row above it, so that the core runs `PIPE` independent chains.
pub fn reconstruct_rows(res: &[u8], predictor: Predictor, bias: u8, rows: &mut [&mut [u8]]) {
    let w = rows.first().map_or(0, |r| r.len());
    debug_assert_eq!(res.len(), rows.len() * w);
    if w == 0 {
        return;
    }
    match predictor {
        Predictor::Avg => return pipelined(res, w, bias, rows, |a, b, _| avg(a, b)),
        Predictor::Paeth => return pipelined(res, w, bias, rows, paeth_fast),
        _ => {}
    }
    reconstruct_row_by_row(res, predictor, bias, w, rows.iter_mut().map(|row| &mut **row));
}

/// PAETH as libpng computes it (the same choice as [`paeth`], ties included; tested on every
/// input): fewer operations on the chain from `a` to the result.
#[inline(always)]
fn paeth_fast(a: u8, b: u8, c: u8) -> u8 {
    let (p, q) = (i16::from(b) - i16::from(c), i16::from(a) - i16::from(c));
    // Distances of a + b - c from a, b and c.
    let (mut best, pb, pc) = (p.abs(), q.abs(), (p + q).abs());
    let mut pick = a;
    if pb < best {
        (best, pick) = (pb, b);
    }
    if pc < best { c } else { pick }
}

/// Rebuilds rows predicted from their left, top and top-left neighbours (`predict(a, b, c)`):
/// the first row alone (no row above: b = c = 0), then blocks of 4 rows, row `k` of a block at
/// column `i - k` in step `i`, when its left neighbour (step `i - 1`) and the row above up to
/// its column (step `i - 1` of row `k - 1`) are done: 4 independent chains.
#[inline(always)]
#[allow(unused_assignments)] // the last step of each row leaves its left neighbour unread
fn pipelined(
    res: &[u8],
    w: usize,
    bias: u8,
    rows: &mut [&mut [u8]],
    predict: impl Fn(u8, u8, u8) -> u8,
) {
    // The rows rebuilt so far, unbiased: the row above the block and the block's 4 rows.
    let mut u = vec![0u8; 5 * w];
    let mut a = 0u8;
    for (c, &r) in res[..w].iter().enumerate() {
        a = r.wrapping_add(predict(a, 0, 0));
        u[c] = a;
    }
    let mut r0 = 1;
    let mut last = 0; // row of `u` holding the row above the next block
    for (d, &x) in rows[0].iter_mut().zip(&u[..w]) {
        *d = x ^ bias;
    }
    while r0 < rows.len() {
        if last != 0 {
            u.copy_within(last * w..(last + 1) * w, 0);
        }
        let (above, block) = u.split_at_mut(w);
        let k_rows = (rows.len() - r0).min(4);
        if k_rows == 4 && w >= 4 {
            let (b0, rest) = block.split_at_mut(w);
            let (b1, rest) = rest.split_at_mut(w);
            let (b2, b3) = rest.split_at_mut(w);
            let res = &res[r0 * w..(r0 + 4) * w];
            let (s0, s1, s2, s3) = (&res[..w], &res[w..2 * w], &res[2 * w..3 * w], &res[3 * w..]);
            let (mut left, mut top_left) = ([0u8; 4], [0u8; 4]);
            macro_rules! step {
                ($k:expr, $c:expr, $up:expr, $dst:expr, $res:expr) => {{
                    let c = $c;
                    let b = $up[c];
                    let x = $res[c].wrapping_add(predict(left[$k], b, top_left[$k]));
                    $dst[c] = x;
                    (left[$k], top_left[$k]) = (x, b);
                }};
            }
            step!(0, 0, above, b0, s0);
            step!(0, 1, above, b0, s0);
            step!(1, 0, b0, b1, s1);
            step!(0, 2, above, b0, s0);
            step!(1, 1, b0, b1, s1);
            step!(2, 0, b1, b2, s2);
            for i in 3..w {
                step!(0, i, above, b0, s0);
                step!(1, i - 1, b0, b1, s1);
                step!(2, i - 2, b1, b2, s2);
                step!(3, i - 3, b2, b3, s3);
            }
            step!(1, w - 1, b0, b1, s1);
            step!(2, w - 2, b1, b2, s2);
            step!(3, w - 3, b2, b3, s3);
            step!(2, w - 1, b1, b2, s2);
            step!(3, w - 2, b2, b3, s3);
            step!(3, w - 1, b2, b3, s3);
        } else {
            for k in 0..k_rows {
                let (done, cur) = block.split_at_mut(k * w);
                let up: &[u8] = if k == 0 { above } else { &done[(k - 1) * w..] };
                let (mut left, mut top_left) = (0u8, 0u8);
                for c in 0..w {
                    let b = up[c];
                    left = res[(r0 + k) * w + c].wrapping_add(predict(left, b, top_left));
                    cur[c] = left;
                    top_left = b;
                }
            }
        }
        for (k, dst) in rows[r0..r0 + k_rows].iter_mut().enumerate() {
            for (d, &x) in dst.iter_mut().zip(&block[k * w..(k + 1) * w]) {
                *d = x ^ bias;
            }
        }
        last = k_rows;
        r0 += k_rows;
    }
}

/// log2(x) for x >= 1, to within 4e-5: cost estimates (a predictor's, a table search's) need
/// no more, and a library log2 per present symbol per candidate was a few percent of encoding
/// (a tenth for GGUF files, whose packed quants use all 256 symbols).
pub fn log2_approx(x: f64) -> f64 {
    debug_assert!(x >= 1.0 && x.is_finite());
    log2_approx_unchecked(x)
}

/// `log2_approx` without its check, for lanes computed and then dropped.
#[inline(always)]
fn log2_approx_unchecked(x: f64) -> f64 {
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    // The mantissa in [1, 2), centred; a degree-5 least-squares fit of log2 on it.
    let m = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52)) - 1.5;
    let p = ((((0.043_428_907_822 * m - 0.079_150_365_753) * m + 0.141_848_742_982) * m
        - 0.319_919_359_795)
        * m
        + 0.961_814_783_546)
        * m
        + 0.584_954_283_955;
    exponent as f64 + p
}

/// Entropy in bits of a histogram (all symbols together), with `log2_approx`.
fn entropy(hist: &[u32; 256], total: u32) -> f64 {
    entropy_approx(hist, f64::from(total))
}

/// A histogram's count: `u32` or `u64`.
pub trait Count: Copy {
    fn to_f64(self) -> f64;
}

impl Count for u32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Count for u64 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
}

/// `log2_approx(total / counts[s])` for every symbol `s` with a count, 0 for the others: what
/// order-0 costs are made of (`total` at least each count). The values `log2_approx` gives one
/// at a time, on every CPU: the same operations, eight lanes at a time where AVX-512 (F, DQ)
/// runs (a table search takes thousands of these a plane).
pub fn log2_ratios<C: Count>(counts: &[C; 256], total: f64) -> [f64; 256] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
    {
        // SAFETY: AVX-512 F and DQ were detected on this CPU.
        #[allow(unsafe_code)]
        return unsafe { log2_ratios_avx512(counts, total) };
    }
    log2_ratios_plain(counts, total)
}

#[inline(always)]
fn log2_ratios_plain<C: Count>(counts: &[C; 256], total: f64) -> [f64; 256] {
    let mut out = [0.0; 256];
    for (o, &c) in out.iter_mut().zip(counts) {
        let c = c.to_f64();
        // Every lane computed, the symbols without a count then dropped (no branch).
        let log = log2_approx_unchecked((total / c.max(1.0)).max(1.0));
        *o = if c > 0.0 { log } else { 0.0 };
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f,avx512dq")]
fn log2_ratios_avx512<C: Count>(counts: &[C; 256], total: f64) -> [f64; 256] {
    log2_ratios_plain(counts, total)
}

/// Order-0 entropy in bits of `counts` (of `total` symbols) with `log2_approx`: the terms
/// `c * log2_approx(total / c)` added in symbol order, the sum one term at a time gives.
pub fn entropy_approx<C: Count>(counts: &[C; 256], total: f64) -> f64 {
    let logs = log2_ratios(counts, total);
    let mut sum = 0.0;
    for (&c, &log) in counts.iter().zip(&logs) {
        let c = c.to_f64();
        if c > 0.0 {
            sum += c * log;
        }
    }
    sum
}

/// Rows sampled per tile when estimating a predictor's cost.
const SAMPLE_ROWS: usize = 16;
/// A predictor costlier to invert must save this fraction of the sampled bits of a cheaper one
/// (NONE first) to be chosen: the estimate is noisy, and NONE keeps a tensor's residuals on one
/// shared distribution.
const MIN_SAVING: f64 = 0.02;

/// Picks the predictor for `tile` among `candidates` by the measured order-0 cost of its
/// residuals on a sample of rows (every row for small tiles).
pub fn choose_predictor(
    plane: &[u8],
    cols: usize,
    tile: Tile,
    bias: u8,
    candidates: &[Predictor],
) -> Predictor {
    match candidates {
        [] => return Predictor::None,
        [only] => return *only,
        _ => {}
    }
    if candidates != Predictor::ALL {
        let (hists, total) = sampled_histograms(plane, cols, tile, bias, candidates);
        return cheapest_predictor(&hists, total, candidates);
    }
    // Half the sample first: on weights NONE usually wins by far, and then the other half
    // cannot change the choice.
    let rows: Vec<usize> = sampled_rows(tile).collect();
    let (first, rest) = rows.split_at(rows.len() / 2);
    let mut hists = vec![[0u32; 256]; 5];
    let mut total = sampled_histograms_all(plane, cols, tile, bias, first, &mut hists);
    if total > 0 && none_is_clear(&hists, total) {
        return Predictor::None;
    }
    total += sampled_histograms_all(plane, cols, tile, bias, rest, &mut hists);
    cheapest_predictor(&hists, total, candidates)
}

/// Every other predictor costs `CLEAR_MARGIN` more than NONE on the histograms (in
/// `Predictor::ALL` order) of part of the sample; or, where NONE's residuals are near-random
/// bytes (`NOISE_BITS` a symbol or more: mantissas), none of them is even `NOISE_MARGIN`
/// cheaper (there every predictor costs about what NONE does, so the wider rule never stops).
fn none_is_clear(hists: &[[u32; 256]], total: u32) -> bool {
    let none = entropy(&hists[0], total);
    let margin = if none >= NOISE_BITS * f64::from(total) { -NOISE_MARGIN } else { CLEAR_MARGIN };
    hists[1..].iter().all(|h| entropy(h, total) >= none * (1.0 + margin))
}

/// How much worse than NONE every other predictor must be on half the sample for the other
/// half to be skipped: to still win by `MIN_SAVING`, such a predictor would have to save about
/// 6% on the other half, and tiles of weights are far more uniform than that. (On quantized
/// weights of high entropy the others cost only 5-7% more than NONE, so a wider margin would
/// rarely stop early.)
const CLEAR_MARGIN: f64 = 0.02;
/// Bits a symbol of NONE's residuals from which a tile counts as noise for the early stop.
const NOISE_BITS: f64 = 7.5;
/// On noise, the saving on half the sample below which the other half is skipped: a predictor
/// would have to save 3.5% on the other half to win.
const NOISE_MARGIN: f64 = 0.005;

/// The rows of a tile the predictor choice is measured on.
fn sampled_rows(tile: Tile) -> std::iter::StepBy<std::ops::Range<usize>> {
    (0..tile.h).step_by((tile.h / SAMPLE_ROWS).max(1))
}

/// Histograms of each candidate's residuals on the sampled rows, and the symbols counted.
fn sampled_histograms(
    plane: &[u8],
    cols: usize,
    tile: Tile,
    bias: u8,
    candidates: &[Predictor],
) -> (Vec<[u32; 256]>, u32) {
    let mut hists = vec![[0u32; 256]; candidates.len()];
    let mut total = 0u32;
    let (mut cur, mut up, mut res) = (Vec::new(), Vec::new(), vec![0u8; tile.w]);
    for r in sampled_rows(tile) {
        let row = |r: usize| &plane[(tile.r0 + r) * cols + tile.c0..][..tile.w];
        biased(row(r), bias, &mut cur);
        if r > 0 {
            biased(row(r - 1), bias, &mut up);
        }
        let above = (r > 0).then_some(up.as_slice());
        for (hist, &p) in hists.iter_mut().zip(candidates) {
            row_residuals(&cur, above, p, &mut res);
            for &x in &res {
                hist[x as usize] += 1;
            }
        }
        total += tile.w as u32;
    }
    (hists, total)
}

/// Adds to `hists` the residuals of all five predictors (in `Predictor::ALL` order) on `rows`
/// of the tile, in one pass over each row, each into its own histogram, so the increments of
/// one symbol do not wait on each other; returns the symbols counted. The first row's missing
/// neighbours are 0, as in `row_residuals`.
fn sampled_histograms_all(
    plane: &[u8],
    cols: usize,
    tile: Tile,
    bias: u8,
    rows: &[usize],
    hists: &mut [[u32; 256]],
) -> u32 {
    let mut total = 0u32;
    let row = |r: usize| &plane[(tile.r0 + r) * cols + tile.c0..][..tile.w];
    let [h0, h1, h2, h3, h4] = hists else { unreachable!("five histograms") };
    let zeros = vec![0u8; if rows.contains(&0) { tile.w } else { 0 }];
    for &r in rows {
        // The first row's missing neighbours are a row of zeros (unbiased: 0 ^ bias ^ bias).
        let (up, up_bias) = if r > 0 { (row(r - 1), bias) } else { (&zeros[..], 0) };
        let (mut a, mut c) = (0u8, 0u8);
        for (&x, &y) in row(r).iter().zip(up) {
            let u = x ^ bias;
            let b = y ^ up_bias;
            h0[usize::from(u)] += 1;
            h1[usize::from(u.wrapping_sub(a))] += 1;
            h2[usize::from(u.wrapping_sub(b))] += 1;
            h3[usize::from(u.wrapping_sub(avg(a, b)))] += 1;
            h4[usize::from(u.wrapping_sub(paeth_fast(a, b, c)))] += 1;
            a = u;
            c = b;
        }
        total += tile.w as u32;
    }
    total
}

/// The candidate to code a tile with, from its sampled residuals (`hists`, one per candidate):
/// the cheapest of the first tier of `DECODE_TIERS` present, replaced by the cheapest of a later
/// tier only where that saves `MIN_SAVING` of the bits of the choice so far.
fn cheapest_predictor(hists: &[[u32; 256]], total: u32, candidates: &[Predictor]) -> Predictor {
    let costs: Vec<f64> = hists.iter().map(|h| entropy(h, total)).collect();
    // Tier by tier, from the cheapest to decode: a tier's best candidate replaces the choice
    // only when it saves `MIN_SAVING` of the chosen one's bits.
    let mut chosen: Option<(Predictor, f64)> = None;
    for tier in DECODE_TIERS {
        let best = candidates
            .iter()
            .zip(&costs)
            .filter(|(p, _)| tier.contains(p))
            .min_by(|a, b| a.1.total_cmp(b.1));
        if let Some((&p, &cost)) = best {
            match chosen {
                Some((_, current)) if cost > current * (1.0 - MIN_SAVING) => {}
                _ => chosen = Some((p, cost)),
            }
        }
    }
    chosen.expect("at least two candidates").0
}

/// The predictors by what their inverse costs the decoder, cheapest first: NONE (none), TOP
/// and LEFT (one add a byte; TOP vectorises), AVG and PAETH (a chain of compares and selects
/// along each row). The sampled estimate is noisy, and a tile coded with a shared table rarely
/// gains from a costlier predictor that is only a little better on its own histogram.
const DECODE_TIERS: [&[Predictor]; 3] =
    [&[Predictor::None], &[Predictor::Top, Predictor::Left], &[Predictor::Avg, Predictor::Paeth]];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A histogram of `total` symbols spread evenly over `k` values: `total * log2(k)` bits.
    fn flat(k: usize, total: u32) -> [u32; 256] {
        let mut h = [0u32; 256];
        h[..k].fill(total / k as u32);
        h
    }

    #[test]
    fn early_stop_on_noise_needs_no_predictor_to_look_cheaper() {
        let total = 256 * 64 * 31;
        // Near-random bytes (8 bits): the others as costly, or slightly more, stop early.
        let noise = [
            flat(256, total),
            flat(256, total),
            flat(255, total),
            flat(256, total),
            flat(256, total),
        ];
        assert!(none_is_clear(&noise, total));
        // One of them 2% cheaper on this half (log2(227) = 7.83 bits): the whole sample decides.
        let mut hint = noise;
        hint[2] = flat(227, total);
        assert!(!none_is_clear(&hint, total));
        // Weights (5 bits): the others must cost 2% more; 1% more is not clear.
        let weights =
            [flat(32, total), flat(32, total), flat(32, total), flat(32, total), flat(32, total)];
        assert!(!none_is_clear(&weights, total));
        let far =
            [flat(32, total), flat(64, total), flat(64, total), flat(64, total), flat(64, total)];
        assert!(none_is_clear(&far, total));
    }

    #[test]
    fn costlier_inverses_must_save_two_percent_over_cheaper_ones() {
        let total = 64 * 31 * 16;
        let all = Predictor::ALL;
        // NONE 6 bits, LEFT 5.5, TOP 5, AVG 5.5, PAETH log2(31) = 4.95 (1% below TOP): TOP.
        let hists = [flat(64, total), flat(45, total), flat(32, total), flat(45, total)];
        let paeth_close = [hists.as_slice(), &[flat(31, total)]].concat();
        assert_eq!(cheapest_predictor(&paeth_close, total, &all), Predictor::Top);
        // PAETH 4 bits (20% below TOP): PAETH.
        let paeth_far = [hists.as_slice(), &[flat(16, total)]].concat();
        assert_eq!(cheapest_predictor(&paeth_far, total, &all), Predictor::Paeth);
        // Every predictor within 2% of NONE: NONE, even where PAETH is cheapest.
        let near =
            [flat(64, total), flat(64, total), flat(64, total), flat(64, total), flat(62, total)];
        assert_eq!(cheapest_predictor(&near, total, &all), Predictor::None);
        // TOP not 2% below NONE, PAETH well below: PAETH (each tier against the choice so far).
        let skip =
            [flat(64, total), flat(64, total), flat(63, total), flat(64, total), flat(16, total)];
        assert_eq!(cheapest_predictor(&skip, total, &all), Predictor::Paeth);
        // Without NONE among the candidates the first tier present starts the choice.
        let pair = [flat(32, total), flat(31, total)];
        assert_eq!(
            cheapest_predictor(&pair, total, &[Predictor::Top, Predictor::Paeth]),
            Predictor::Top
        );
    }

    fn check(plane: &[u8], rows: usize, cols: usize, tile: Tile, p: Predictor, bias: u8) {
        let _ = rows;
        let mut res = vec![0u8; tile.len()];
        residuals(plane, cols, tile, p, bias, &mut res);
        let mut back = vec![0xAAu8; plane.len()];
        reconstruct(&res, p, bias, &mut back, cols, tile);
        for r in tile.r0..tile.r0 + tile.h {
            let span = r * cols + tile.c0..r * cols + tile.c0 + tile.w;
            assert_eq!(back[span.clone()], plane[span], "{p:?} row {r}");
        }
    }

    #[test]
    fn residuals_match_hand_computed_values() {
        // 2x3 tile, unbiased: rows [10 20 40] and [11 25 30].
        let plane = [10u8, 20, 40, 11, 25, 30];
        let tile = Tile { r0: 0, c0: 0, h: 2, w: 3 };
        let mut res = [0u8; 6];
        residuals(&plane, 3, tile, Predictor::Left, 0, &mut res);
        assert_eq!(res, [10, 10, 20, 11, 14, 5]);
        residuals(&plane, 3, tile, Predictor::Top, 0, &mut res);
        assert_eq!(res, [10, 20, 40, 1, 5, 246]);
        residuals(&plane, 3, tile, Predictor::Avg, 0, &mut res);
        // Row 1: p = (0+10)/2=5, (11+20)/2=15, (25+40)/2=32.
        assert_eq!(res, [10, 15, 30, 6, 10, 254]);
        residuals(&plane, 3, tile, Predictor::Paeth, 0, &mut res);
        // Row 1, col 1: a=11 b=20 c=10 -> p=21, nearest is b=20 -> 5.
        assert_eq!(res[4], 5);
        residuals(&plane, 3, tile, Predictor::None, 0x80, &mut res);
        assert_eq!(res[0], 10 ^ 0x80);
    }

    #[test]
    fn paeth_fast_is_paeth() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for c in 0..=255u8 {
                    assert_eq!(paeth_fast(a, b, c), paeth(a, b, c), "{a} {b} {c}");
                }
            }
        }
    }

    #[test]
    fn smooth_rows_choose_left() {
        let cols = 256;
        let plane: Vec<u8> = (0..256 * cols).map(|i| (i % cols) as u8).collect();
        let tile = Tile { r0: 0, c0: 0, h: 256, w: 256 };
        assert_eq!(choose_predictor(&plane, cols, tile, 0, &Predictor::ALL), Predictor::Left);
        let mut x = 88172645463325252u64;
        let noise: Vec<u8> = (0..256 * cols)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert_eq!(choose_predictor(&noise, cols, tile, 0, &Predictor::ALL), Predictor::None);
    }

    /// The logarithms taken 256 at a time are those `log2_approx` gives one at a time, bit for
    /// bit, on the detected path and the plain one, and the entropy is the sum one term at a
    /// time gives: histograms with zeros, ones, all symbols, huge counts, and none.
    #[test]
    fn log2_ratios_are_log2_approx_bit_for_bit() {
        let mut x = 0x51_7cc1_b727_220a_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let shapes: [&dyn Fn(usize, u64) -> u64; 5] = [
            &|s, r| if s % 3 == 0 { 0 } else { r % 1000 },
            &|_, r| r % 2,
            &|_, r| 1 + r % 100_000,
            &|s, r| if s == 7 { (r % (1 << 40)) + 1 } else { r % 3 },
            &|_, _| 0,
        ];
        for shape in shapes {
            let counts: [u64; 256] = std::array::from_fn(|s| shape(s, next()));
            let total: u64 = counts.iter().sum();
            let t = total as f64;
            let one_by_one: [f64; 256] =
                counts.map(|c| if c > 0 { log2_approx(t / c as f64) } else { 0.0 });
            let bits = |v: &[f64; 256]| v.map(f64::to_bits);
            assert_eq!(bits(&log2_ratios(&counts, t)), bits(&one_by_one));
            assert_eq!(bits(&log2_ratios_plain(&counts, t)), bits(&one_by_one));
            let sum: f64 = counts
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| c as f64 * log2_approx(t / c as f64))
                .sum();
            assert_eq!(entropy_approx(&counts, t).to_bits(), (sum + 0.0).to_bits());
            let small: [u32; 256] = counts.map(|c| (c % 100_000) as u32);
            let t32: f64 = small.iter().map(|&c| f64::from(c)).sum();
            let expected: [f64; 256] =
                small.map(|c| if c > 0 { log2_approx(t32 / f64::from(c)) } else { 0.0 });
            assert_eq!(bits(&log2_ratios(&small, t32)), bits(&expected));
        }
    }

    #[test]
    fn log2_approx_is_within_its_bound() {
        let mut x = 1.0f64;
        while x < 1e12 {
            assert!((log2_approx(x) - x.log2()).abs() < 4e-5, "{x}");
            x *= 1.0137;
        }
        for x in [1.0, 2.0, 3.0, 1024.0, 4096.5, (1u64 << 40) as f64] {
            assert!((log2_approx(x) - x.log2()).abs() < 4e-5, "{x}");
        }
    }

    proptest! {
        #[test]
        fn one_pass_sampling_counts_what_each_predictor_alone_counts(
            rows in 1usize..70, cols in 1usize..60, smooth in any::<bool>(),
            seed in any::<u64>(), bias in prop_oneof![Just(0u8), Just(0x80u8)],
        ) {
            let mut x = seed | 1;
            let plane: Vec<u8> = (0..rows * cols)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if smooth { (i % cols) as u8 ^ (x as u8 & 3) } else { x as u8 }
                })
                .collect();
            let tile = Tile { r0: (seed % rows as u64) as usize, c0: 0, h: 0, w: cols };
            let tile = Tile { h: rows - tile.r0, ..tile };
            let rows: Vec<usize> = sampled_rows(tile).collect();
            let mut hists = vec![[0u32; 256]; 5];
            let total = sampled_histograms_all(&plane, cols, tile, bias, &rows, &mut hists);
            prop_assert_eq!(
                (hists, total),
                sampled_histograms(&plane, cols, tile, bias, &Predictor::ALL)
            );
        }
    }

    proptest! {
        #[test]
        fn every_predictor_inverts_exactly(
            rows in 1usize..20, cols in 1usize..40,
            seed in any::<u64>(), bias in prop_oneof![Just(0u8), Just(0x80u8)],
        ) {
            let mut x = seed | 1;
            let plane: Vec<u8> = (0..rows * cols).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x as u8 }).collect();
            let r0 = (seed % rows as u64) as usize;
            let c0 = (seed / 7 % cols as u64) as usize;
            let tile = Tile { r0, c0, h: rows - r0, w: cols - c0 };
            for p in Predictor::ALL {
                check(&plane, rows, cols, tile, p, bias);
                // The row form rebuilds what the plane form does.
                let mut res = vec![0u8; tile.len()];
                residuals(&plane, cols, tile, p, bias, &mut res);
                let (mut a, mut b) = (vec![0x11u8; plane.len()], vec![0x11u8; plane.len()]);
                reconstruct(&res, p, bias, &mut a, cols, tile);
                let mut tile_rows: Vec<&mut [u8]> = b
                    .chunks_mut(cols)
                    .skip(tile.r0)
                    .take(tile.h)
                    .map(|row| &mut row[tile.c0..tile.c0 + tile.w])
                    .collect();
                reconstruct_rows(&res, p, bias, &mut tile_rows);
                prop_assert_eq!(a, b);
            }
        }
    }
}
