//! Frequency tables for a plane: one, or several "row classes" when rows differ enough in
//! distribution to pay for the extra tables and the map (weights of one output channel share
//! a scale, so rows of similar spread code well with one table).

use rayon::prelude::*;
use wcodec_rans::{Frequencies, cost_bits, normalize};

/// A row's histogram and the range of its present symbols: rows of weights use a narrow band
/// of the 256 symbols, so sums and costs run over the band only.
struct Row<'a> {
    counts: &'a [u32; 256],
    lo: usize,
    hi: usize,
}

impl<'a> Row<'a> {
    fn new(counts: &'a [u32; 256]) -> Row<'a> {
        let lo = counts.iter().position(|&c| c > 0).unwrap_or(0);
        let hi = counts.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
        Row { counts, lo, hi: hi.max(lo) }
    }
}

/// Cost standing in for an absent symbol: large enough to rule the table out, finite so that
/// `0 * ABSENT` stays 0.
const ABSENT: f32 = 1e9;

/// Bits each symbol costs under a table (`ABSENT` when it has no frequency).
fn symbol_costs(freqs: &Frequencies, prob_bits: u8) -> [f32; 256] {
    let mut costs = [ABSENT; 256];
    for (c, &f) in costs.iter_mut().zip(freqs) {
        if f > 0 {
            *c = f32::from(prob_bits) - (f as f32).log2();
        }
    }
    costs
}

/// Bits to code `row` with `costs`.
fn cost(row: &Row, costs: &[f32; 256]) -> f32 {
    let (h, c) = (&row.counts[row.lo..row.hi], &costs[row.lo..row.hi]);
    h.iter().zip(c).map(|(&n, &bits)| n as f32 * bits).sum()
}

/// Approximate stored size of a table in bits (bitmap plus ~1.6 bytes per present symbol).
fn table_bits(freqs: &Frequencies) -> f64 {
    let present = freqs.iter().filter(|&&f| f > 0).count() as f64;
    (32.0 + 1.6 * present) * 8.0
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

/// Tables fitted to the rows of each class (empty classes dropped, `classes` renumbered) and
/// the bits those rows cost with them (from the class sums: no per-row work).
fn fit(rows: &[Row], classes: &mut [u8], k: usize, prob_bits: u8) -> (f64, Vec<Frequencies>) {
    let sums = class_sums(rows, classes, k);
    let mut remap = vec![u8::MAX; k];
    let mut tables = Vec::new();
    let mut coded = 0.0;
    for (i, sum) in sums.iter().enumerate() {
        if sum.iter().any(|&c| c > 0) {
            remap[i] = tables.len() as u8;
            let table = normalize(sum, prob_bits);
            coded += cost_bits(sum, &table, prob_bits);
            tables.push(table);
        }
    }
    for c in classes.iter_mut() {
        *c = remap[usize::from(*c)];
    }
    (coded, tables)
}

/// Bits of the tables and of the row map of a plane of `rows` rows.
fn side_bits(tables: &[Frequencies], rows: usize) -> f64 {
    let map = if tables.len() > 1 { rows as f64 * 4.0 } else { 0.0 };
    tables.iter().map(table_bits).sum::<f64>() + map
}

/// Each row's cheapest table.
fn assign(rows: &[Row], tables: &[Frequencies], prob_bits: u8) -> Vec<u8> {
    let costs: Vec<[f32; 256]> = tables.iter().map(|t| symbol_costs(t, prob_bits)).collect();
    rows.par_iter()
        .map(|h| {
            (0..costs.len())
                .map(|i| (i, cost(h, &costs[i])))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map_or(0, |(i, _)| i as u8)
        })
        .collect()
}

/// Rows of a plane the classes are searched on; all rows are assigned at the end.
const SAMPLE_ROWS: usize = 256;
/// Lloyd rounds per candidate number of classes.
const ROUNDS: usize = 3;

/// Chooses up to `max_tables` tables for a plane of `rows` rows whose row `r` has histogram
/// `row_hist(r)` (computed on demand: a plane's rows are never all held at once, so memory
/// stays bounded by the plane itself). Returns the tables, each row's table when there are
/// several (else an empty map), the bits the plane's residuals cost with them, and the plane's
/// residual histogram.
///
/// On a sample of rows, for k = 2, 4, 8, 16: rows are split into k classes by their own
/// entropy, then refined by Lloyd rounds (each row moves to the table that codes it cheapest,
/// tables are rebuilt); the k with the smallest estimated total (coded bits + tables + map)
/// wins. Then, in one pass over all rows, every row takes its cheapest table and the class
/// sums (whose total is the plane's histogram) refit the tables; the result is kept only if
/// it beats one table for the whole plane.
pub fn choose_tables(
    rows: usize,
    row_hist: &(dyn Fn(usize) -> [u32; 256] + Sync),
    prob_bits: u8,
    max_tables: u8,
) -> (Vec<Frequencies>, Vec<u8>, f64, [u64; 256]) {
    let candidate = if rows >= 2 && max_tables >= 2 {
        search(rows, row_hist, prob_bits, max_tables)
    } else {
        None
    };
    let tables = candidate.unwrap_or_default();
    // Every row to its cheapest table, in chunks of rows (in parallel), with the class sums.
    let costs: Vec<[f32; 256]> = tables.iter().map(|t| symbol_costs(t, prob_bits)).collect();
    let k = tables.len().max(1);
    let chunks: Vec<(Vec<u8>, Vec<[u64; 256]>)> = (0..rows.div_ceil(64))
        .into_par_iter()
        .map(|chunk| {
            let mut classes = Vec::with_capacity(64);
            let mut sums = vec![[0u64; 256]; k];
            for r in chunk * 64..(chunk * 64 + 64).min(rows) {
                let h = row_hist(r);
                let row = Row::new(&h);
                let c = (0..costs.len())
                    .map(|i| (i, cost(&row, &costs[i])))
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .map_or(0, |(i, _)| i);
                for (s, &n) in sums[c][row.lo..row.hi].iter_mut().zip(&h[row.lo..row.hi]) {
                    *s += u64::from(n);
                }
                classes.push(c as u8);
            }
            (classes, sums)
        })
        .collect();
    let mut classes = Vec::with_capacity(rows);
    let mut sums = vec![[0u64; 256]; k];
    for (c, s) in chunks {
        classes.extend(c);
        for (total, part) in sums.iter_mut().zip(&s) {
            for (t, &p) in total.iter_mut().zip(part) {
                *t += p;
            }
        }
    }
    let mut total = [0u64; 256];
    for sum in &sums {
        for (t, &c) in total.iter_mut().zip(sum) {
            *t += c;
        }
    }
    let one_table = normalize(&total, prob_bits);
    let one_bits = cost_bits(&total, &one_table, prob_bits);
    let one_total = one_bits + side_bits(std::slice::from_ref(&one_table), rows);
    if tables.len() < 2 {
        return (vec![one_table], Vec::new(), one_bits, total);
    }
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
    if fitted.len() < 2 || bits + side_bits(&fitted, rows) >= one_total {
        return (vec![one_table], Vec::new(), one_bits, total);
    }
    (fitted, classes, bits, total)
}

/// The sample search of `choose_tables`: the best candidate tables (two or more), if any
/// beats one table on the sample's estimate.
fn search(
    rows: usize,
    row_hist: &(dyn Fn(usize) -> [u32; 256] + Sync),
    prob_bits: u8,
    max_tables: u8,
) -> Option<Vec<Frequencies>> {
    let stride = rows.div_ceil(SAMPLE_ROWS);
    let sample_counts: Vec<[u32; 256]> = (0..rows).step_by(stride).map(row_hist).collect();
    let sample: Vec<Row> = sample_counts.iter().map(Row::new).collect();
    let scale = rows as f64 / sample.len() as f64;
    // Order sampled rows by their own entropy per symbol: rows of similar spread start together.
    let spread: Vec<f64> = sample_counts
        .iter()
        .map(|h| {
            let total: u64 = h.iter().map(|&c| u64::from(c)).sum();
            if total == 0 {
                return 0.0;
            }
            let t = total as f64;
            h.iter()
                .filter(|&&c| c > 0)
                .map(|&c| f64::from(c) / t * (t / f64::from(c)).log2())
                .sum()
        })
        .collect();
    let mut order: Vec<usize> = (0..sample.len()).collect();
    order.sort_by(|&a, &b| spread[a].total_cmp(&spread[b]));
    let mut best: Option<(f64, Vec<Frequencies>)> = None;
    let mut k = 2;
    while k <= usize::from(max_tables).min(sample.len()) {
        let mut classes = vec![0u8; sample.len()];
        for (rank, &row) in order.iter().enumerate() {
            classes[row] = (rank * k / sample.len()) as u8;
        }
        let (mut bits, mut tables) = fit(&sample, &mut classes, k, prob_bits);
        for _ in 0..ROUNDS {
            let mut next = assign(&sample, &tables, prob_bits);
            let (next_bits, next_tables) = fit(&sample, &mut next, tables.len(), prob_bits);
            if next_bits >= bits {
                break;
            }
            (bits, tables) = (next_bits, next_tables);
        }
        let estimate = bits * scale + side_bits(&tables, rows);
        if best.as_ref().is_some_and(|(b, _)| estimate >= *b) {
            break;
        }
        best = Some((estimate, tables));
        k *= 2;
    }
    best.map(|(_, tables)| tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(rows: &[[u32; 256]]) -> (Vec<Frequencies>, Vec<u8>, f64) {
        let (tables, classes, bits, total) = choose_tables(rows.len(), &|r| rows[r], 12, 8);
        let mut expected = [0u64; 256];
        for h in rows {
            for (t, &c) in expected.iter_mut().zip(h) {
                *t += u64::from(c);
            }
        }
        assert_eq!(total, expected, "the returned histogram is the plane's");
        (tables, classes, bits)
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
