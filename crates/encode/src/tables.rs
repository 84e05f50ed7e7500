//! Frequency tables for a plane: one, or several "row classes" when rows differ enough in
//! distribution to pay for the extra tables and the map (weights of one output channel share
//! a scale, so rows of similar spread code well with one table).

use rayon::prelude::*;
use wcodec_rans::{Frequencies, normalize};

/// A row's histogram as (symbol, count) pairs of its present symbols.
type SparseHist = Vec<(u8, u32)>;

fn sparse(hist: &[u64; 256]) -> SparseHist {
    hist.iter().enumerate().filter(|(_, c)| **c > 0).map(|(s, &c)| (s as u8, c as u32)).collect()
}

/// Bits each symbol costs under a table (infinite when absent).
fn symbol_costs(freqs: &Frequencies, prob_bits: u8) -> [f64; 256] {
    let mut costs = [f64::INFINITY; 256];
    for (c, &f) in costs.iter_mut().zip(freqs) {
        if f > 0 {
            *c = f64::from(prob_bits) - f64::from(f).log2();
        }
    }
    costs
}

fn cost(hist: &SparseHist, costs: &[f64; 256]) -> f64 {
    hist.iter().map(|&(s, c)| f64::from(c) * costs[s as usize]).sum()
}

/// Approximate stored size of a table in bits (bitmap plus ~1.6 bytes per present symbol).
fn table_bits(freqs: &Frequencies) -> f64 {
    let present = freqs.iter().filter(|&&f| f > 0).count() as f64;
    (32.0 + 1.6 * present) * 8.0
}

fn class_sums(hists: &[SparseHist], classes: &[u8], k: usize) -> Vec<[u64; 256]> {
    let mut sums = vec![[0u64; 256]; k];
    for (h, &c) in hists.iter().zip(classes) {
        for &(s, n) in h {
            sums[usize::from(c)][s as usize] += u64::from(n);
        }
    }
    sums
}

/// Lloyd rounds after the initial split.
const ROUNDS: usize = 5;

/// Total bits (coded, tables, map) and the tables for a given row classification; empty
/// classes are dropped and `classes` renumbered.
fn evaluate(
    hists: &[SparseHist],
    classes: &mut [u8],
    k: usize,
    prob_bits: u8,
) -> (f64, Vec<Frequencies>) {
    let sums = class_sums(hists, classes, k);
    let mut remap = vec![u8::MAX; k];
    let mut tables = Vec::new();
    for (i, sum) in sums.iter().enumerate() {
        if sum.iter().any(|&c| c > 0) {
            remap[i] = tables.len() as u8;
            tables.push(normalize(sum, prob_bits));
        }
    }
    for c in classes.iter_mut() {
        *c = remap[usize::from(*c)];
    }
    let costs: Vec<[f64; 256]> = tables.iter().map(|t| symbol_costs(t, prob_bits)).collect();
    let coded: f64 =
        hists.iter().zip(classes.iter()).map(|(h, &c)| cost(h, &costs[usize::from(c)])).sum();
    let map_bits = if tables.len() > 1 { hists.len() as f64 * 4.0 } else { 0.0 };
    (coded + tables.iter().map(table_bits).sum::<f64>() + map_bits, tables)
}

/// Chooses up to `max_tables` tables for a plane whose rows have histograms `row_hists`.
/// Returns the tables and, when there are several, each row's table (else an empty map).
///
/// For k = 2, 4, 8, 16: rows are split into k classes by their own entropy, then refined by
/// Lloyd rounds (each row moves to the table that codes it cheapest, tables are rebuilt);
/// the k with the smallest total (coded bits + tables + map) wins.
pub fn choose_tables(
    row_hists: &[[u64; 256]],
    prob_bits: u8,
    max_tables: u8,
) -> (Vec<Frequencies>, Vec<u8>) {
    let hists: Vec<SparseHist> = row_hists.par_iter().map(sparse).collect();
    let mut one = vec![0u8; hists.len()];
    let (mut best_bits, mut best_tables) = evaluate(&hists, &mut one, 1, prob_bits);
    let mut best_classes = Vec::new();
    if hists.len() < 2 || max_tables < 2 {
        return (best_tables, best_classes);
    }
    // Order rows by their own entropy per symbol: rows of similar spread start together.
    let spread: Vec<f64> = row_hists
        .par_iter()
        .map(|h| {
            let total: u64 = h.iter().sum();
            if total == 0 {
                return 0.0;
            }
            let t = total as f64;
            h.iter().filter(|&&c| c > 0).map(|&c| c as f64 / t * (t / c as f64).log2()).sum()
        })
        .collect();
    let mut order: Vec<usize> = (0..hists.len()).collect();
    order.sort_by(|&a, &b| spread[a].total_cmp(&spread[b]));
    let mut k = 2;
    while k <= usize::from(max_tables).min(hists.len()) {
        let mut classes = vec![0u8; hists.len()];
        for (rank, &row) in order.iter().enumerate() {
            classes[row] = (rank * k / hists.len()) as u8;
        }
        let (mut bits, mut tables) = evaluate(&hists, &mut classes, k, prob_bits);
        for _ in 0..ROUNDS {
            let costs: Vec<[f64; 256]> =
                tables.iter().map(|t| symbol_costs(t, prob_bits)).collect();
            let mut next: Vec<u8> = hists
                .par_iter()
                .map(|h| {
                    (0..costs.len())
                        .map(|i| (i, cost(h, &costs[i])))
                        .min_by(|a, b| a.1.total_cmp(&b.1))
                        .map_or(0, |(i, _)| i as u8)
                })
                .collect();
            let (next_bits, next_tables) = evaluate(&hists, &mut next, tables.len(), prob_bits);
            if next_bits >= bits {
                break;
            }
            (bits, tables, classes) = (next_bits, next_tables, next);
        }
        if bits >= best_bits {
            break;
        }
        (best_bits, best_tables, best_classes) = (bits, tables, classes);
        k *= 2;
    }
    if best_tables.len() < 2 {
        best_classes.clear();
    }
    (best_tables, best_classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_row_distributions_get_two_tables() {
        let mut low = [0u64; 256];
        let mut high = [0u64; 256];
        for s in 0..16 {
            low[s] = 1000;
            high[200 + s] = 1000;
        }
        let rows = vec![low, high, low, high, low, high];
        let (tables, classes) = choose_tables(&rows, 12, 8);
        assert_eq!(tables.len(), 2);
        assert_eq!(classes[0], classes[2]);
        assert_ne!(classes[0], classes[1]);
        for (h, &c) in rows.iter().zip(&classes) {
            assert!(h.iter().zip(&tables[usize::from(c)]).all(|(&n, &f)| n == 0 || f > 0));
        }
    }

    #[test]
    fn one_distribution_keeps_one_table() {
        let mut h = [0u64; 256];
        for (s, c) in h.iter_mut().enumerate() {
            *c = 1 + (s as u64 % 7) * 100;
        }
        let (tables, classes) = choose_tables(&[h; 6], 12, 8);
        assert_eq!(tables.len(), 1);
        assert!(classes.is_empty());
    }
}
