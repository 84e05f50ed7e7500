//! Frequency tables for a plane: one from all its tiles, or several with a per-tile choice
//! when the tiles' distributions differ enough to pay for the extra tables.

use wcodec_rans::{Frequencies, normalize};

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

fn cost(hist: &[u64; 256], costs: &[f64; 256]) -> f64 {
    hist.iter().zip(costs).filter(|(h, _)| **h > 0).map(|(&h, &c)| h as f64 * c).sum()
}

/// Approximate stored size of a table in bits (bitmap plus ~1.5 bytes per present symbol).
fn table_bits(freqs: &Frequencies) -> f64 {
    let present = freqs.iter().filter(|&&f| f > 0).count() as f64;
    (32.0 + 1.5 * present) * 8.0
}

fn sum_hists<'a>(hists: impl Iterator<Item = &'a [u64; 256]>) -> [u64; 256] {
    let mut total = [0u64; 256];
    for h in hists {
        for (t, &c) in total.iter_mut().zip(h) {
            *t += c;
        }
    }
    total
}

/// A split must save at least this fraction of the plane's coded bits to be kept.
const MIN_SPLIT_GAIN: f64 = 0.002;
/// Reassignment rounds after each split.
const ROUNDS: usize = 4;

/// Chooses up to `max_tables` tables for tiles with histograms `hists`; returns the tables
/// and each tile's table index. Greedy splitting: the worst-fitting tile of the costliest
/// table seeds a new table, then tiles move to their cheapest table (Lloyd rounds); the split
/// stays only if the coded size plus the new table's bytes shrinks.
pub fn choose_tables(
    hists: &[[u64; 256]],
    prob_bits: u8,
    max_tables: u8,
) -> (Vec<Frequencies>, Vec<u8>) {
    let mut tables = vec![normalize(&sum_hists(hists.iter()), prob_bits)];
    let mut assignment = vec![0u8; hists.len()];
    if hists.len() < 2 || max_tables < 2 {
        return (tables, assignment);
    }
    let total_cost = |tables: &[Frequencies], assignment: &[u8]| -> f64 {
        let costs: Vec<[f64; 256]> = tables.iter().map(|t| symbol_costs(t, prob_bits)).collect();
        let coded: f64 =
            hists.iter().zip(assignment).map(|(h, &a)| cost(h, &costs[a as usize])).sum();
        coded + tables.iter().map(table_bits).sum::<f64>()
    };
    let mut best = total_cost(&tables, &assignment);
    while tables.len() < usize::from(max_tables) {
        // Seed: the tile whose cost under its table exceeds its own entropy the most.
        let costs: Vec<[f64; 256]> = tables.iter().map(|t| symbol_costs(t, prob_bits)).collect();
        let seed = (0..hists.len())
            .map(|i| {
                let own = symbol_costs(&normalize(&hists[i], prob_bits), prob_bits);
                (i, cost(&hists[i], &costs[assignment[i] as usize]) - cost(&hists[i], &own))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
            .expect("at least two tiles");
        let mut trial_tables = tables.clone();
        let mut trial_assignment = assignment.clone();
        trial_tables.push(normalize(&hists[seed], prob_bits));
        trial_assignment[seed] = (trial_tables.len() - 1) as u8;
        for _ in 0..ROUNDS {
            let costs: Vec<[f64; 256]> =
                trial_tables.iter().map(|t| symbol_costs(t, prob_bits)).collect();
            for (h, a) in hists.iter().zip(trial_assignment.iter_mut()) {
                let (best_table, _) = costs
                    .iter()
                    .enumerate()
                    .map(|(k, c)| (k, cost(h, c)))
                    .min_by(|x, y| x.1.total_cmp(&y.1))
                    .expect("tables exist");
                *a = best_table as u8;
            }
            // Rebuild tables from their tiles; drop tables no tile uses.
            let mut rebuilt = Vec::new();
            let mut remap = vec![u8::MAX; trial_tables.len()];
            for k in 0..trial_tables.len() {
                let members =
                    hists.iter().zip(&trial_assignment).filter(|(_, a)| **a as usize == k);
                let sum = sum_hists(members.map(|(h, _)| h));
                if sum.iter().any(|&c| c > 0) {
                    remap[k] = rebuilt.len() as u8;
                    rebuilt.push(normalize(&sum, prob_bits));
                }
            }
            for a in trial_assignment.iter_mut() {
                *a = remap[*a as usize];
            }
            trial_tables = rebuilt;
        }
        let trial = total_cost(&trial_tables, &trial_assignment);
        if trial < best * (1.0 - MIN_SPLIT_GAIN) && trial_tables.len() > tables.len() {
            best = trial;
            tables = trial_tables;
            assignment = trial_assignment;
        } else {
            break;
        }
    }
    (tables, assignment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_distributions_get_two_tables() {
        let mut low = [0u64; 256];
        let mut high = [0u64; 256];
        for s in 0..16 {
            low[s] = 1000;
            high[200 + s] = 1000;
        }
        let hists = vec![low, high, low, high];
        let (tables, assignment) = choose_tables(&hists, 12, 8);
        assert_eq!(tables.len(), 2);
        assert_eq!(assignment[0], assignment[2]);
        assert_ne!(assignment[0], assignment[1]);
        for (h, &a) in hists.iter().zip(&assignment) {
            assert!(h.iter().zip(&tables[a as usize]).all(|(&c, &f)| c == 0 || f > 0));
        }
    }

    #[test]
    fn one_distribution_keeps_one_table() {
        let mut h = [0u64; 256];
        for (s, c) in h.iter_mut().enumerate() {
            *c = 1 + (s as u64 % 7) * 100;
        }
        let (tables, assignment) = choose_tables(&[h; 6], 12, 8);
        assert_eq!(tables.len(), 1);
        assert!(assignment.iter().all(|&a| a == 0));
    }
}
