//! Frequency tables for a plane: one, or several "row classes" when rows differ enough in
//! distribution to pay for the extra tables and the map (weights of one output channel share
//! a scale, so rows of similar spread code well with one table).

use rayon::prelude::*;
use wcodec_predict::log2_ratios;
use wcodec_rans::{
    ByteCosts, Frequencies, SeenBytes, byte_cost_sums, cheapest_tables, cost_bits, normalize,
    prefetch, weighted_cost_sums,
};

/// A row's histogram and the range of its present symbols: rows of weights use a narrow band
/// of the 256 symbols, so sums and costs run over the band only.
struct Row<'a> {
    counts: &'a [u32; 256],
    lo: usize,
    hi: usize,
}

impl<'a> Row<'a> {
    fn new(counts: &'a [u32; 256]) -> Row<'a> {
        // Sixteen counts at a time (an OR the compiler vectorises), then the one chunk.
        let chunks = counts.as_chunks::<16>().0;
        let any = |chunk: &[u32; 16]| chunk.iter().fold(0, |a, &c| a | c) != 0;
        let Some(first) = chunks.iter().position(any) else {
            return Row { counts, lo: 0, hi: 0 };
        };
        let last = chunks.iter().rposition(any).expect("a chunk with a count");
        let lo = 16 * first + chunks[first].iter().position(|&c| c > 0).expect("a count");
        let hi = 16 * last + chunks[last].iter().rposition(|&c| c > 0).expect("a count") + 1;
        Row { counts, lo, hi }
    }
}

/// Bits charged for a symbol a table lacks: more than any present symbol costs (at most 32
/// bits at a class's entropy), yet small enough that f32 sums keep the real costs beside it.
/// A row can still join such a table when that saves more; the refit then gives the symbol
/// a frequency.
const ABSENT: f32 = 64.0;

/// Most tables `Costs` compares at once (`max_tables` is at most 16).
const MAX_CLASSES: usize = 16;

/// The cost in bits of every symbol under up to 16 tables, stored symbol by symbol: a row's
/// cost under all tables at once is then a sum over its symbols of count x cost vector, which
/// compiles to vector multiply-adds (each table's sum runs in symbol order, so the result does
/// not depend on the machine).
struct Costs {
    tables: usize,
    by_symbol: Vec<[f32; MAX_CLASSES]>,
}

impl Costs {
    /// Costs at the entropy of each class's histogram (`ABSENT` where a class lacks a symbol).
    fn of_sums(sums: &[[u64; 256]]) -> Costs {
        assert!(sums.len() <= MAX_CLASSES, "at most 16 tables");
        let mut by_symbol = vec![[ABSENT; MAX_CLASSES]; 256];
        for (j, sum) in sums.iter().enumerate() {
            let logs = log2_ratios(sum, sum.iter().sum::<u64>() as f64);
            for ((by_symbol, &n), &log) in by_symbol.iter_mut().zip(sum).zip(&logs) {
                if n > 0 {
                    by_symbol[j] = log as f32;
                }
            }
        }
        Costs { tables: sums.len(), by_symbol }
    }

    /// The table that codes `row` cheapest; the first on ties.
    fn cheapest(&self, row: &Row) -> usize {
        match self.tables {
            0..=4 => self.cheapest_of::<4>(row),
            5..=8 => self.cheapest_of::<8>(row),
            _ => self.cheapest_of::<MAX_CLASSES>(row),
        }
    }

    fn cheapest_of<const N: usize>(&self, row: &Row) -> usize {
        let bits: [f32; N] =
            weighted_cost_sums(&self.by_symbol[row.lo..row.hi], &row.counts[row.lo..row.hi]);
        let mut best = 0;
        for (j, &b) in bits.iter().enumerate().take(self.tables) {
            if b < bits[best] {
                best = j;
            }
        }
        best
    }
}

/// Approximate stored size of a table with `present` symbols, in bits (bitmap plus ~1.6
/// bytes per present symbol).
fn table_bits(present: usize) -> f64 {
    (32.0 + 1.6 * present as f64) * 8.0
}

/// Bits of the tables (given by their numbers of present symbols) and of the row map of a
/// plane of `rows` rows.
fn side_bits(present: impl ExactSizeIterator<Item = usize>, rows: usize) -> f64 {
    let map = if present.len() > 1 { rows as f64 * 4.0 } else { 0.0 };
    present.map(table_bits).sum::<f64>() + map
}

fn present(counts: &[u64; 256]) -> usize {
    counts.iter().filter(|&&c| c > 0).count()
}

fn class_sums(rows: &[Row], classes: &[u8], k: usize) -> Vec<[u64; 256]> {
    let mut sums = vec![[0u64; 256]; k];
    for (row, &c) in rows.iter().zip(classes) {
        let sum = &mut sums[usize::from(c)][row.lo..row.hi];
        for (s, &n) in sum.iter_mut().zip(&row.counts[row.lo..row.hi]) {
            *s += u64::from(n);
        }
    }
    sums
}

/// The histograms of the classes (empty classes dropped, `classes` renumbered) and the bits
/// their rows cost at the classes' order-0 entropy. The search compares candidates by entropy,
/// which 12-bit tables come within a fraction of a percent of, and leaves the normalisation of
/// tables (a heap walk per table) to the winner.
fn fit(rows: &[Row], classes: &mut [u8], k: usize) -> (f64, Vec<[u64; 256]>) {
    fit_sums(class_sums(rows, classes, k), classes)
}

/// `fit` for `next`, classes reached from `classes` (whose histograms are `sums`) by moving
/// rows: only the moved rows' counts move between histograms, which gives the sums counting
/// every row again would (a Lloyd round moves few rows, and a row of near-random bytes is 256
/// counts to add).
fn refit(
    rows: &[Row],
    classes: &[u8],
    sums: &[[u64; 256]],
    next: &mut [u8],
) -> (f64, Vec<[u64; 256]>) {
    let mut moved = sums.to_vec();
    for ((row, &from), &to) in rows.iter().zip(classes).zip(next.iter()) {
        if from == to {
            continue;
        }
        let band = row.lo..row.hi;
        let counts = &row.counts[band.clone()];
        for (s, &n) in moved[usize::from(from)][band.clone()].iter_mut().zip(counts) {
            *s -= u64::from(n);
        }
        for (s, &n) in moved[usize::from(to)][band].iter_mut().zip(counts) {
            *s += u64::from(n);
        }
    }
    fit_sums(moved, next)
}

/// The end of `fit`: empty classes dropped (`classes` renumbered), the others priced.
fn fit_sums(sums: Vec<[u64; 256]>, classes: &mut [u8]) -> (f64, Vec<[u64; 256]>) {
    let k = sums.len();
    let mut remap = vec![u8::MAX; k];
    let mut kept = Vec::new();
    let mut coded = 0.0;
    for (i, sum) in sums.into_iter().enumerate() {
        if sum.iter().any(|&c| c > 0) {
            remap[i] = kept.len() as u8;
            coded += entropy_approx(&sum);
            kept.push(sum);
        }
    }
    for c in classes.iter_mut() {
        *c = remap[usize::from(*c)];
    }
    (coded, kept)
}

/// Order-0 entropy of a histogram in bits, with `log2_approx`.
fn entropy_approx(counts: &[u64; 256]) -> f64 {
    wcodec_predict::entropy_approx(counts, counts.iter().sum::<u64>() as f64)
}

/// Each row's cheapest class (rows in parallel: the search runs on one plane at a time, and a
/// large tensor's plane is a batch of its own).
fn assign(rows: &[Row], sums: &[[u64; 256]]) -> Vec<u8> {
    let costs = Costs::of_sums(sums);
    if rows.len() < PARALLEL_ASSIGN {
        return rows.iter().map(|row| costs.cheapest(row) as u8).collect();
    }
    rows.par_iter().with_min_len(32).map(|row| costs.cheapest(row) as u8).collect()
}

/// Samples of fewer rows are assigned on one thread: most planes' samples are a few dozen
/// rows, which take less time to price than to hand out.
const PARALLEL_ASSIGN: usize = 128;

/// Rows of a plane the classes are searched on; all rows are assigned at the end.
const SAMPLE_ROWS: usize = 256;
/// ... and at most one row in `SAMPLE_STRIDE_MIN` (of planes of 256 rows or more): the sample
/// is counted and the search's rounds cost several passes over it. One row in 4 made MiniLM
/// int8's encode take 6% more time than one in 8, for the same ratio within 0.01%.
const SAMPLE_STRIDE_MIN: usize = 8;
/// The least share of a plane's estimated bits that row classes must save over one table, and
/// twice the classes over the best so far, to be chosen: pricing every row under k tables
/// costs about as much encode time as coding the plane does at k = 8, and on the corpus the
/// classes this passes over saved 0.01-0.04% of a file (docs/PERFORMANCE.md, "Encoder").
const MIN_CLASS_GAIN: f64 = 0.002;
/// Lloyd rounds per candidate number of classes.
const ROUNDS: usize = 3;

/// Counts rows of a plane: adds the histogram of each row of `rows` to the matching one of
/// `hists` (given all zeros). Rows come in pairs where they can, which the counter may
/// interleave: two rows into two histograms wait less on repeated symbols than one.
pub(crate) type RowCounter<'a> = dyn Fn(&[usize], &mut [[u32; 256]]) + Sync + 'a;

/// See [`PlaneRows::pieces`].
pub(crate) type RowPieces<'a> = dyn Fn(usize, &mut dyn FnMut(&[u8], bool)) + Sync + 'a;

/// A plane's rows as [`choose_tables`] reads them.
pub(crate) struct PlaneRows<'a> {
    /// The plane's bytes, row-major, `cols` a row.
    pub bytes: &'a [u8],
    pub cols: usize,
    /// The byte whose XOR turns a byte into its residual under NONE.
    pub bias: u8,
    /// Whether row `r`'s residuals are its bytes XOR `bias` (every tile across it is NONE).
    pub none_row: &'a (dyn Fn(usize) -> bool + Sync),
    /// Hands row `r` of a row that is not `none_row` to `f` piece by piece, with whether the
    /// piece is the plane's bytes (`true`: a NONE tile's) or residuals (a predicted tile's).
    pub pieces: &'a RowPieces<'a>,
    /// Counts the histograms of the residuals of any rows, predicted ones included.
    pub counter: &'a RowCounter<'a>,
    /// Whether to take the CRC-32C of the plane's bytes in the pass over all rows, where it has
    /// them in cache (`ChosenTables::crc32c`).
    pub crc: bool,
}

/// What [`choose_tables`] chose for a plane.
pub(crate) struct ChosenTables {
    pub tables: Vec<Frequencies>,
    /// Each row's table where there are several, else empty.
    pub row_tables: Vec<u8>,
    /// The bits the plane's residuals cost with the tables.
    pub bits: f64,
    /// The plane's residual histogram.
    pub total: [u64; 256],
    /// The CRC-32C of the plane's bytes, where `PlaneRows::crc` asked for it and the pass over
    /// all rows ran (the sample found classes worth pricing every row for).
    pub crc32c: Option<u32>,
}

impl ChosenTables {
    /// One table for a plane of histogram `total`.
    pub(crate) fn one(total: [u64; 256], prob_bits: u8) -> ChosenTables {
        let table = normalize(&total, prob_bits);
        let bits = cost_bits(&total, &table, prob_bits);
        ChosenTables { tables: vec![table], row_tables: Vec::new(), bits, total, crc32c: None }
    }
}

impl PlaneRows<'_> {
    fn rows(&self) -> usize {
        self.bytes.len().checked_div(self.cols).unwrap_or(0)
    }

    fn row(&self, r: usize) -> &[u8] {
        &self.bytes[r * self.cols..][..self.cols]
    }
}

/// Where the rows of `sampled` planes are counted once the tables are chosen: one row in
/// this many, besides the search's sample and the rows of predicted tiles; the others are
/// only scanned for the values their class's table must have (`SeenBytes`). A class's table
/// from `n` counted symbols costs about `(values - 1) / (2 n ln 2)` bits a symbol more than
/// the exact one: on MiniLM int8's word embedding (8 classes) under 0.002 bits. One row in 8
/// made its file 0.004% smaller for 1.7% more encode time.
const COUNT_STRIDE: usize = 16;

/// Rows a task classifies.
const CLASSIFY_ROWS: usize = 128;

/// Sample rows a task of the search counts.
const SAMPLE_TASK: usize = 16;

/// Rows ahead of the one it prices that the classification prefetches (`cheapest_tables`): it
/// is the first pass to read most of a plane (the CRC is taken in it), and waited on memory at
/// every row without.
const PREFETCH_ROWS: usize = 4;

/// Rows of at least this many bytes are priced on part of their bytes (`priced_len`).
const PRICE_PART_MIN: usize = 256;

/// How many bytes of a row of NONE tiles, `cols` bytes long, the classification prices: the
/// first half (whole 64-byte steps) of a row of `PRICE_PART_MIN` bytes or more, else the whole
/// row. A row's
/// class follows its spread, which half its values show nearly as well: on MiniLM int8
/// (per-tensor scales, 8 classes in its embedding) files 0.03% larger, for 2.5% less encode
/// time (docs/PERFORMANCE.md, "Encoder").
fn priced_len(cols: usize) -> usize {
    if cols < PRICE_PART_MIN { cols } else { (cols / 2).next_multiple_of(64) }
}

/// The cost of every symbol under each table, in sixteenths of a bit, in a byte (255 for a
/// symbol a table lacks: about 16 bits, more than any present symbol costs at 12-bit
/// precision; a row may still join such a table when that saves more, and the refit then
/// gives the symbol a frequency).
fn quantised_costs(tables: &[Frequencies], prob_bits: u8) -> Vec<[u8; 256]> {
    tables
        .iter()
        .map(|t| {
            t.map(|f| match f {
                0 => u8::MAX,
                f => ((f64::from(prob_bits) - f64::from(f).log2()) * 16.0).round().min(254.0) as u8,
            })
        })
        .collect()
}

/// What a task learns of its rows: each row's class and, per class, the counted rows' sum,
/// the symbols counted, the rows and the values met in rows not counted.
struct Classified {
    classes: Vec<u8>,
    sums: Vec<[u64; 256]>,
    counted: Vec<u64>,
    rows: Vec<u64>,
    seen: Vec<SeenBytes>,
    /// The CRC-32C of each task's bytes, in task order (`PlaneRows::crc`).
    crcs: Vec<u32>,
}

impl Classified {
    fn new(k: usize) -> Classified {
        Classified {
            classes: Vec::new(),
            sums: vec![[0; 256]; k],
            counted: vec![0; k],
            rows: vec![0; k],
            seen: vec![SeenBytes::default(); k],
            crcs: Vec::new(),
        }
    }

    fn merge(mut self, other: Classified) -> Classified {
        self.classes.extend(other.classes);
        self.crcs.extend(other.crcs);
        for c in 0..self.sums.len() {
            for (t, &n) in self.sums[c].iter_mut().zip(&other.sums[c]) {
                *t += n;
            }
            self.counted[c] += other.counted[c];
            self.rows[c] += other.rows[c];
            self.seen[c].union(&other.seen[c]);
        }
        self
    }
}

/// The index of the least of `costs`; the first on ties.
fn least(costs: &[u64]) -> usize {
    let mut best = 0;
    for (j, &c) in costs.iter().enumerate() {
        if c < costs[best] {
            best = j;
        }
    }
    best
}

/// Chooses up to `max_tables` tables for `plane` (row histograms counted on demand: a plane's
/// rows are never all held at once, so memory stays bounded by the plane itself). Returns the
/// tables, each row's table when there are several (else an empty map), the bits the plane's
/// residuals cost with them, and the plane's residual histogram.
///
/// On a sample of rows, for k = 2, 4, 8, 16: rows are split into k classes by their own
/// entropy, then refined by Lloyd rounds (each row moves to the table that codes it cheapest,
/// tables are rebuilt); k doubles while the estimated total (coded bits + tables + map) keeps
/// falling below the best so far, one table included, by `MIN_CLASS_GAIN` (on most planes
/// classes do not pay and the search stops at k = 2). Then, in one pass over all rows, every
/// row takes its cheapest table, priced from its bytes (`priced_len` of them in a row of NONE tiles)
/// with costs quantised to bytes (`byte_cost_sums`: no histogram), and the classes'
/// histograms refit the tables; the result is kept only if it beats one table for the whole
/// plane. The classes' histograms are counted row by row, or, if `sampled`, estimated from the rows counted (the search's sample, one row in
/// `COUNT_STRIDE`, rows of predicted tiles) scaled to the class, every value met in the other
/// rows keeping a count. When the sample finds no candidate, the plane's histogram comes from
/// `plane_hist` and one table is returned.
pub(crate) fn choose_tables(
    plane: &PlaneRows,
    plane_hist: &dyn Fn() -> [u64; 256],
    prob_bits: u8,
    max_tables: u8,
    sampled: bool,
) -> ChosenTables {
    let rows = plane.rows();
    let (candidate, sample) = if rows >= 2 && max_tables >= 2 {
        search(plane, prob_bits, max_tables)
    } else {
        (None, Sample::default())
    };
    let Some(Candidate { tables, total: sample_total }) = candidate else {
        return ChosenTables::one(plane_hist(), prob_bits);
    };
    let k = tables.len();
    // The sample tells where the bytes to price lie (`ByteCosts::expecting`): the residuals of
    // its rows with predicted tiles (few), and the bytes of its other rows, the rest of its
    // histogram (their residuals XOR the bias).
    let bias = usize::from(plane.bias);
    let mut other_residuals = [0u64; 256];
    for (&r, counts) in sample.rows.iter().zip(&sample.counts) {
        if !(plane.none_row)(r) {
            other_residuals.iter_mut().zip(counts).for_each(|(e, &n)| *e += u64::from(n));
        }
    }
    let none_bytes: [u64; 256] =
        std::array::from_fn(|b| sample_total[b ^ bias] - other_residuals[b ^ bias]);
    // Costs by residual (for predicted tiles' pieces) and by stored byte (the bias folded in).
    let residual_costs = quantised_costs(&tables, prob_bits);
    let byte_costs = ByteCosts::new(
        residual_costs.iter().map(|c| std::array::from_fn(|b| c[b ^ bias])).collect(),
    )
    .expecting(&none_bytes);
    let residual_costs = ByteCosts::new(residual_costs).expecting(&other_residuals);
    // Tasks are folded in order into one `Classified` a thread's run of them, not one each: a
    // class's `SeenBytes` then meets its values once, not again in every task (each new value
    // leaves its fast loop).
    let classified = (0..rows.div_ceil(CLASSIFY_ROWS))
        .into_par_iter()
        .fold(
            || Classified::new(k),
            |mut out, task| {
                let rows = task * CLASSIFY_ROWS..(task * CLASSIFY_ROWS + CLASSIFY_ROWS).min(rows);
                let task_bytes = &plane.bytes[rows.start * plane.cols..rows.end * plane.cols];
                // Which rows are NONE, asked once a row; the rows to count that the search did
                // not, counted two at a time. (Rows and the sample's rows ascend: the loop below
                // walks both lists along.)
                let none: Vec<bool> = rows.clone().map(|r| (plane.none_row)(r)).collect();
                let first = sample.rows.partition_point(|&r| r < rows.start);
                let last = sample.rows.partition_point(|&r| r < rows.end);
                let in_sample = &sample.rows[first..last];
                let mut next_sampled = in_sample.iter().copied().peekable();
                let to_count: Vec<usize> = rows
                    .clone()
                    .filter(|&r| {
                        let is_sampled = next_sampled.next_if_eq(&r).is_some();
                        let counted =
                            !sampled || r.is_multiple_of(COUNT_STRIDE) || !none[r - rows.start];
                        counted && !is_sampled
                    })
                    .collect();
                // The NONE rows' classes first, a run of them a call (the tables stay in
                // registers), which also brings the rows into cache for what follows.
                let mut cheapest = vec![0u8; rows.len()];
                let cols = plane.cols;
                let mut at = 0;
                while at < none.len() {
                    let run = none[at..].iter().take_while(|&&n| n == none[at]).count();
                    if none[at] {
                        let first = rows.start + at;
                        // (To the plane's end: the rows after the run are prefetched too.)
                        let bytes = &plane.bytes[first * cols..];
                        let out = &mut cheapest[at..at + run];
                        cheapest_tables(
                            bytes,
                            cols,
                            priced_len(cols),
                            PREFETCH_ROWS,
                            &byte_costs,
                            out,
                        );
                    }
                    at += run;
                }
                let mut counts = vec![[0u32; 256]; to_count.len()];
                for (pair, hists) in to_count.chunks(2).zip(counts.chunks_mut(2)) {
                    (plane.counter)(pair, hists);
                }
                let mut sample_hists =
                    in_sample.iter().copied().zip(&sample.counts[first..last]).peekable();
                let mut counted_hists = to_count.iter().copied().zip(&counts).peekable();
                let (mut costs, mut piece_costs) = (vec![0u64; k], vec![0u64; k]);
                for r in rows.clone() {
                    let hist = match sample_hists.next_if(|&(s, _)| s == r) {
                        Some((_, hist)) => Some(hist),
                        None => counted_hists.next_if(|&(c, _)| c == r).map(|(_, hist)| hist),
                    };
                    let c = if none[r - rows.start] {
                        usize::from(cheapest[r - rows.start])
                    } else {
                        costs.fill(0);
                        (plane.pieces)(r, &mut |piece, are_bytes| {
                            let by = if are_bytes { &byte_costs } else { &residual_costs };
                            byte_cost_sums(piece, by, &mut piece_costs);
                            costs.iter_mut().zip(&piece_costs).for_each(|(c, p)| *c += p);
                        });
                        least(&costs)
                    };
                    out.classes.push(c as u8);
                    out.rows[c] += 1;
                    match hist {
                        Some(hist) => {
                            for (t, &n) in out.sums[c].iter_mut().zip(hist) {
                                *t += u64::from(n);
                            }
                            out.counted[c] += plane.cols as u64;
                        }
                        None => out.seen[c].add(plane.row(r)),
                    }
                }
                if plane.crc {
                    out.crcs.push(wcodec_format::crc32c(task_bytes));
                }
                out
            },
        )
        .reduce_with(Classified::merge)
        .expect("a plane of two rows or more");
    // Each class's histogram: its counted rows' sum scaled to all its rows (exact where all
    // were counted), and a count of 1 for every value met only in the others; a class whose
    // rows were none of them counted takes its candidate table's shape.
    let sums: Vec<[u64; 256]> = (0..k)
        .map(|c| {
            let symbols = classified.rows[c] * plane.cols as u64;
            if symbols == 0 {
                return [0; 256]; // no row chose it: dropped below
            }
            let seen = |s: usize| classified.seen[c].contains((s ^ bias) as u8);
            let (base, scale) = match classified.counted[c] {
                0 => (tables[c].map(u64::from), symbols as f64 / f64::from(1u32 << prob_bits)),
                n => (classified.sums[c], symbols as f64 / n as f64),
            };
            std::array::from_fn(|s| match base[s] {
                0 => u64::from(symbols > 0 && seen(s)),
                n if scale == 1.0 => n,
                n => ((n as f64 * scale).round() as u64).max(1),
            })
        })
        .collect();
    let mut classes = classified.classes;
    let mut total = [0u64; 256];
    for sum in &sums {
        for (t, &c) in total.iter_mut().zip(sum) {
            *t += c;
        }
    }
    let one_table = normalize(&total, prob_bits);
    let one_bits = cost_bits(&total, &one_table, prob_bits);
    let one_total = one_bits + side_bits(std::iter::once(present(&total)), rows);
    // Refit the tables to all rows; drop classes no row chose.
    let mut remap = vec![u8::MAX; k];
    let mut fitted = Vec::new();
    let mut bits = 0.0;
    for (i, sum) in sums.iter().enumerate() {
        if sum.iter().any(|&c| c > 0) {
            remap[i] = fitted.len() as u8;
            let table = normalize(sum, prob_bits);
            bits += cost_bits(sum, &table, prob_bits);
            fitted.push(table);
        }
    }
    for c in classes.iter_mut() {
        *c = remap[usize::from(*c)];
    }
    let fitted_side = side_bits(fitted.iter().map(|t| t.iter().filter(|&&f| f > 0).count()), rows);
    let crc32c = plane.crc.then(|| {
        let task_len = (CLASSIFY_ROWS * plane.cols) as u64;
        wcodec_format::checksum::combine_parts(&classified.crcs, task_len, plane.bytes.len() as u64)
    });
    if fitted.len() < 2 || bits + fitted_side >= one_total {
        let one = vec![one_table];
        return ChosenTables { tables: one, row_tables: Vec::new(), bits: one_bits, total, crc32c };
    }
    ChosenTables { tables: fitted, row_tables: classes, bits, total, crc32c }
}

/// The rows the search samples: one in each window of `stride` rows, at an offset drawn from
/// a fixed hash of the window, so that rows repeating with a period (heads, interleaved
/// channels) are not all missed as a fixed stride would miss them. Deterministic.
fn sample_rows(rows: usize) -> impl Iterator<Item = usize> {
    let stride = rows.div_ceil(SAMPLE_ROWS).max(SAMPLE_STRIDE_MIN.min(rows / 32).max(1));
    (0..rows.div_ceil(stride)).map(move |i| {
        let start = i * stride;
        let window = stride.min(rows - start);
        // splitmix64 of the window's index.
        let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        start + ((z ^ (z >> 31)) % window as u64) as usize
    })
}

/// The search's tables (two or more) and the histogram of its whole sample.
struct Candidate {
    tables: Vec<Frequencies>,
    total: [u64; 256],
}

/// The rows the search counted (ascending) and their histograms.
#[derive(Default)]
struct Sample {
    rows: Vec<usize>,
    counts: Vec<[u32; 256]>,
}

/// The sample search of `choose_tables`: the best candidate tables (two or more), if they
/// beat one table on the sample's estimate, and the sample.
fn search(plane: &PlaneRows, prob_bits: u8, max_tables: u8) -> (Option<Candidate>, Sample) {
    let rows = plane.rows();
    let sampled: Vec<usize> = sample_rows(rows).collect();
    // Counted in place, two rows a call (no buffer a pair to gather afterwards), the rows
    // `PREFETCH_ROWS` ahead prefetched: the sample is the first to read its rows, one in 8 or
    // more apart, which the CPU does not fetch ahead by itself (the counting took 1.3 ms of a
    // 26 ms MiniLM int8 encode without; 0.7 ms less with).
    let mut sample_counts = vec![[0u32; 256]; sampled.len()];
    sample_counts.par_chunks_mut(SAMPLE_TASK).zip(sampled.par_chunks(SAMPLE_TASK)).for_each(
        |(hists, task)| {
            for (i, (hists, pair)) in hists.chunks_mut(2).zip(task.chunks(2)).enumerate() {
                for &r in task.iter().skip(2 * i + PREFETCH_ROWS).take(2) {
                    prefetch(plane.row(r));
                }
                (plane.counter)(pair, hists);
            }
        },
    );
    let candidate = search_sample(&sample_counts, rows, prob_bits, max_tables);
    (candidate, Sample { rows: sampled, counts: sample_counts })
}

/// The search on the histograms of the sampled rows of a plane of `rows` rows.
fn search_sample(
    sample_counts: &[[u32; 256]],
    rows: usize,
    prob_bits: u8,
    max_tables: u8,
) -> Option<Candidate> {
    let sample: Vec<Row> = sample_counts.iter().map(Row::new).collect();
    let scale = rows as f64 / sample.len() as f64;
    // Order sampled rows by how concentrated they are (the chance that two of a row's symbols
    // are equal, a cheap stand-in for its entropy): rows of similar spread start together.
    let concentration: Vec<f64> = sample
        .iter()
        .map(|row| {
            let counts = &row.counts[row.lo..row.hi];
            let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
            let squares: u64 = counts.iter().map(|&c| u64::from(c) * u64::from(c)).sum();
            if total == 0 { 0.0 } else { squares as f64 / (total as f64 * total as f64) }
        })
        .collect();
    let mut order: Vec<usize> = (0..sample.len()).collect();
    order.sort_by(|&a, &b| concentration[b].total_cmp(&concentration[a]));
    // One table for the whole sample, less `MIN_CLASS_GAIN`, is the estimate to beat: twice
    // the classes are tried only while each number of classes beats the best so far by as
    // much (most planes stop at two).
    let (one_bits, one_sum) = fit(&sample, &mut vec![0u8; sample.len()], 1);
    let one_estimate = one_bits * scale + side_bits(one_sum.iter().map(present), rows);
    let mut best: Option<(f64, Vec<[u64; 256]>)> = None;
    let mut best_estimate = one_estimate * (1.0 - MIN_CLASS_GAIN);
    let mut k = 2;
    while k <= usize::from(max_tables).min(sample.len()) {
        let mut classes = vec![0u8; sample.len()];
        for (rank, &row) in order.iter().enumerate() {
            classes[row] = (rank * k / sample.len()) as u8;
        }
        let (mut bits, mut sums) = fit(&sample, &mut classes, k);
        for _ in 0..ROUNDS {
            let mut next = assign(&sample, &sums);
            if next == classes {
                break; // converged: the same classes give the same sums
            }
            let (next_bits, next_sums) = refit(&sample, &classes, &sums, &mut next);
            if next_bits >= bits {
                break;
            }
            (bits, sums, classes) = (next_bits, next_sums, next);
        }
        let estimate = bits * scale + side_bits(sums.iter().map(present), rows);
        if estimate >= best_estimate {
            break;
        }
        best_estimate = estimate * (1.0 - MIN_CLASS_GAIN);
        best = Some((estimate, sums));
        k *= 2;
    }
    let (_, sums) = best.filter(|(_, sums)| sums.len() >= 2)?;
    let mut total = [0u64; 256];
    for sum in &sums {
        total.iter_mut().zip(sum).for_each(|(t, &n)| *t += n);
    }
    Some(Candidate { tables: sums.iter().map(|sum| normalize(sum, prob_bits)).collect(), total })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plane whose rows have the histograms `rows` (all of one length), each row's bytes
    /// its symbols in order or, if `shuffled`, shuffled (a fixed shuffle: part of a row then
    /// holds its values as the whole row does, as in weights).
    fn plane_of(rows: &[[u32; 256]], shuffled: bool) -> (Vec<u8>, usize) {
        let cols = rows[0].iter().sum::<u32>() as usize;
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let bytes: Vec<u8> = rows
            .iter()
            .flat_map(|h| {
                let mut row: Vec<u8> =
                    (0..256).flat_map(|s| std::iter::repeat_n(s as u8, h[s] as usize)).collect();
                for i in (1..row.len()).rev().filter(|_| shuffled) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    row.swap(i, (x % (i as u64 + 1)) as usize);
                }
                row
            })
            .collect();
        assert_eq!(bytes.len(), rows.len() * cols, "rows of one length");
        (bytes, cols)
    }

    /// The tables for the plane of `rows` (bias `bias`: the rows are residuals, the plane's
    /// bytes them XOR `bias`), histograms exact or `sampled`.
    fn choose_with(
        rows: &[[u32; 256]],
        bias: u8,
        sampled: bool,
    ) -> (Vec<Frequencies>, Vec<u8>, f64, [u64; 256]) {
        choose_laid_out(rows, bias, sampled, true)
    }

    /// `choose_with`, each row's bytes shuffled or in order.
    fn choose_laid_out(
        rows: &[[u32; 256]],
        bias: u8,
        sampled: bool,
        shuffled: bool,
    ) -> (Vec<Frequencies>, Vec<u8>, f64, [u64; 256]) {
        let mut expected = [0u64; 256];
        for h in rows {
            for (t, &c) in expected.iter_mut().zip(h) {
                *t += u64::from(c);
            }
        }
        let (mut bytes, cols) = plane_of(rows, shuffled);
        bytes.iter_mut().for_each(|b| *b ^= bias);
        let counter = |rs: &[usize], hs: &mut [[u32; 256]]| {
            rs.iter().zip(hs).for_each(|(&r, h)| *h = rows[r]);
        };
        let plane = PlaneRows {
            bytes: &bytes,
            cols,
            bias,
            none_row: &|_| true,
            pieces: &|_, _| unreachable!("every row NONE"),
            counter: &counter,
            crc: true,
        };
        let chosen = choose_tables(&plane, &|| expected, 12, 8, sampled);
        if !sampled {
            assert_eq!(chosen.total, expected, "the returned histogram is the plane's");
        }
        // Taken in the pass over all rows, which runs where the sample finds classes.
        if let Some(crc) = chosen.crc32c {
            assert_eq!(crc, wcodec_format::crc32c(&bytes), "the plane's CRC");
        }
        let ChosenTables { tables, row_tables, bits, total, .. } = chosen;
        (tables, row_tables, bits, total)
    }

    fn choose(rows: &[[u32; 256]]) -> (Vec<Frequencies>, Vec<u8>, f64) {
        let (tables, classes, bits, _) = choose_with(rows, 0, false);
        (tables, classes, bits)
    }

    /// Every symbol of every row has a frequency in its row's table, with histograms exact or
    /// estimated, where some rows' rare symbols are in rows no count sees.
    #[test]
    fn every_row_can_code_its_symbols() {
        let mut x = 0x1234_5678_u32;
        let uncounted = (1..300)
            .find(|r| r % COUNT_STRIDE != 0 && !sample_rows(300).any(|s| s == *r))
            .expect("a row outside the sample and the stride");
        let rows: Vec<[u32; 256]> = (0..300)
            .map(|r| {
                let mut h = [0u32; 256];
                // Narrow rows and wide ones, the wide ones of two spreads.
                let spread = [6u32, 20, 40][r % 3];
                for _ in 0..512 {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    h[(128 + x % spread - spread / 2) as usize] += 1;
                }
                // One rare symbol in a row no sample or stride counts.
                if r == uncounted {
                    h[128] -= 1;
                    h[250] += 1;
                }
                h
            })
            .collect();
        for sampled in [false, true] {
            for bias in [0u8, 0x80] {
                let (tables, classes, _, total) = choose_with(&rows, bias, sampled);
                assert!(tables.len() >= 2, "sampled {sampled}: {} tables", tables.len());
                for (r, h) in rows.iter().enumerate() {
                    let table = &tables[usize::from(classes[r])];
                    for s in (0..256).filter(|&s| h[s] > 0) {
                        assert!(table[s] > 0, "sampled {sampled}, bias {bias}: row {r}, {s}");
                        assert!(total[s] > 0);
                    }
                }
            }
        }
    }

    /// Two kinds of rows, alternating: each row holds 8 of each of 64 consecutive values, the
    /// second kind's values `shift` higher.
    fn two_kinds(shift: usize) -> Vec<[u32; 256]> {
        (0..2000)
            .map(|r| {
                let first = 100 + if r % 2 == 1 { shift } else { 0 };
                std::array::from_fn(|s| if (first..first + 64).contains(&s) { 8 } else { 0 })
            })
            .collect()
    }

    /// Classes are taken where they save far more than `MIN_CLASS_GAIN`, and not where they
    /// save less, even though they beat one table (a split by kind, its tables and map
    /// counted).
    #[test]
    fn classes_must_save_the_margin() {
        let bits_of = |rows: &[[u32; 256]], k: usize| {
            let counts: Vec<Row> = rows.iter().map(Row::new).collect();
            let mut classes: Vec<u8> = (0..rows.len()).map(|r| (r % k) as u8).collect();
            let (bits, sums) = fit(&counts, &mut classes, k);
            bits + side_bits(sums.iter().map(present), rows.len())
        };
        // Shifted by one value: the two kinds share 63 of their 64 values.
        let close = two_kinds(1);
        let (one, two) = (bits_of(&close, 1), bits_of(&close, 2));
        assert!(two < one, "the split beats one table: {two} against {one}");
        assert!(two > one * (1.0 - MIN_CLASS_GAIN), "by less than the margin");
        assert_eq!(choose(&close).0.len(), 1, "close kinds keep one table");
        // Shifted by 32: half their values differ.
        let apart = two_kinds(32);
        assert!(bits_of(&apart, 2) < bits_of(&apart, 1) * (1.0 - 10.0 * MIN_CLASS_GAIN));
        let (tables, classes, _) = choose(&apart);
        assert!(tables.len() >= 2, "distinct kinds take classes");
        assert_ne!(classes[0], classes[1], "the two kinds in different classes");
    }

    /// A candidate class that no row takes in the pass over all rows is dropped, and adds
    /// nothing to the plane's histogram. Rows of two kinds, shifted by 32 values, their bytes in
    /// order: the part of a row that the pass prices (`priced_len`) holds the first 32 values
    /// only, which the second kind's rows share with the first kind's table at the same cost,
    /// so that every row takes the first table.
    #[test]
    fn classes_no_row_takes_are_dropped() {
        let rows = two_kinds(32);
        let (tables, classes, _, total) = choose_laid_out(&rows, 0, false, false);
        assert_eq!((tables.len(), classes.len()), (1, 0), "one table, no map");
        let coded = |s: usize| (100..196).contains(&s);
        for (s, &n) in total.iter().enumerate() {
            assert_eq!(n > 0, coded(s), "value {s}");
        }
    }

    /// Moving rows' counts between classes (`refit`) gives what counting every row again
    /// (`fit`) does: the same histograms, renumbering and bits, empty classes dropped.
    #[test]
    fn refit_equals_fit() {
        let mut x = 0x0bad_5eed_u32;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let counts: Vec<[u32; 256]> = (0..60)
            .map(|r| {
                let mut h = [0u32; 256];
                let (centre, spread) = (40 + (r % 7) * 20, 1 + r as u32 % 30);
                for _ in 0..200 {
                    h[centre + (next() % spread) as usize] += 1;
                }
                h
            })
            .collect();
        let rows: Vec<Row> = counts.iter().map(Row::new).collect();
        for k in [2usize, 4, 8] {
            let mut before: Vec<u8> = (0..rows.len()).map(|_| (next() % k as u32) as u8).collect();
            let (_, sums) = fit(&rows, &mut before, k);
            // Some rows move, and one class may empty.
            let mut after: Vec<u8> = before
                .iter()
                .map(|&c| if next() % 3 == 0 { (next() % sums.len() as u32) as u8 } else { c })
                .map(|c| if c == 1 { 0 } else { c })
                .collect();
            let mut counted = after.clone();
            let (bits, fitted) = fit(&rows, &mut counted, sums.len());
            let (rebits, refitted) = refit(&rows, &before, &sums, &mut after);
            assert_eq!(refitted, fitted, "k = {k}");
            assert_eq!(after, counted, "k = {k}");
            assert_eq!(rebits.to_bits(), bits.to_bits(), "k = {k}");
        }
    }

    /// `Row::new` finds the first and last present symbol (an empty range for an empty row).
    #[test]
    fn row_range_is_that_of_the_present_symbols() {
        let mut x = 0x2545_f491_u32;
        for n in 0..400 {
            let mut counts = [0u32; 256];
            for _ in 0..n % 7 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                counts[(x >> 24) as usize] += 1 + x % 3;
            }
            let row = Row::new(&counts);
            let lo = counts.iter().position(|&c| c > 0);
            let hi = counts.iter().rposition(|&c| c > 0).map(|i| i + 1);
            assert_eq!((row.lo, row.hi), (lo.unwrap_or(0), hi.unwrap_or(0)), "{counts:?}");
        }
        for s in [0, 15, 16, 255] {
            let mut counts = [0u32; 256];
            counts[s] = 1;
            let row = Row::new(&counts);
            assert_eq!((row.lo, row.hi), (s, s + 1));
        }
    }

    /// `Costs::cheapest` picks the table an exact f64 sum picks, with absent symbols charged
    /// `ABSENT` bits, for every number of tables it dispatches on.
    #[test]
    fn cheapest_matches_an_exact_sum() {
        let mut x = 12345u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for k in [2usize, 3, 5, 8, 11, 16] {
            let sums: Vec<[u64; 256]> = (0..k)
                .map(|_| {
                    let mut s = [0u64; 256];
                    for c in &mut s[100..160] {
                        *c = if next() % 9 == 0 { 0 } else { next() % 1000 + 1 };
                    }
                    s
                })
                .collect();
            let costs = Costs::of_sums(&sums);
            for _ in 0..500 {
                let mut h = [0u32; 256];
                for c in &mut h[105..155] {
                    *c = (next() % 30) as u32;
                }
                let exact: Vec<f64> = sums
                    .iter()
                    .map(|sum| {
                        let total = sum.iter().sum::<u64>() as f64;
                        (0..256)
                            .map(|v| {
                                let bits = if sum[v] > 0 {
                                    (total / sum[v] as f64).log2()
                                } else {
                                    f64::from(ABSENT)
                                };
                                f64::from(h[v]) * bits
                            })
                            .sum()
                    })
                    .collect();
                let best = (0..k).min_by(|&a, &b| exact[a].total_cmp(&exact[b])).unwrap();
                let picked = costs.cheapest(&Row::new(&h));
                // Equal up to f32 rounding of near-ties.
                assert!(exact[picked] - exact[best] < 1e-3, "k {k}: {picked} vs {best}");
            }
        }
    }

    #[test]
    fn sampled_rows_cover_every_residue_of_a_period() {
        // Rows of 16 classes repeating every 16 rows: a fixed stride of 4 would see 4 classes.
        let seen: std::collections::BTreeSet<usize> = sample_rows(1024).map(|r| r % 16).collect();
        assert_eq!(seen.len(), 16);
        let rows: Vec<usize> = sample_rows(1000).collect();
        assert!(rows.windows(2).all(|w| w[0] < w[1]) && *rows.last().unwrap() < 1000);
        assert_eq!(sample_rows(3).collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    #[test]
    fn two_row_distributions_get_two_tables() {
        let mut low = [0u32; 256];
        let mut high = [0u32; 256];
        for s in 0..16 {
            low[s] = 1000;
            high[200 + s] = 1000;
        }
        let rows = vec![low, high, low, high, low, high];
        let (tables, classes, _) = choose(&rows);
        assert_eq!(tables.len(), 2);
        assert_eq!(classes[0], classes[2]);
        assert_ne!(classes[0], classes[1]);
        for (h, &c) in rows.iter().zip(&classes) {
            assert!(h.iter().zip(&tables[usize::from(c)]).all(|(&n, &f)| n == 0 || f > 0));
        }
    }

    #[test]
    fn one_distribution_keeps_one_table() {
        let mut h = [0u32; 256];
        for (s, c) in h.iter_mut().enumerate() {
            *c = 1 + (s as u32 % 7) * 100;
        }
        let (tables, classes, _) = choose(&[h; 6]);
        assert_eq!(tables.len(), 1);
        assert!(classes.is_empty());
    }
}
