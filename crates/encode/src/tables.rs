//! Frequency tables for a plane: one, or several "row classes" when rows differ enough in
//! distribution to pay for the extra tables and the map (weights of one output channel share
//! a scale, so rows of similar spread code well with one table).

use rayon::prelude::*;
use wcodec_predict::log2_approx;
use wcodec_rans::{Frequencies, cost_bits, normalize, weighted_cost_sums};

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
    /// From each table's cost of each symbol (`None` where a table lacks the symbol).
    fn new(per_table: &[[Option<f64>; 256]]) -> Costs {
        assert!(per_table.len() <= MAX_CLASSES, "at most 16 tables");
        let mut by_symbol = vec![[ABSENT; MAX_CLASSES]; 256];
        for (j, costs) in per_table.iter().enumerate() {
            for (x, &c) in costs.iter().enumerate() {
                if let Some(bits) = c {
                    by_symbol[x][j] = bits as f32;
                }
            }
        }
        Costs { tables: per_table.len(), by_symbol }
    }

    /// Costs under normalised tables.
    fn of_tables(tables: &[Frequencies], prob_bits: u8) -> Costs {
        let per_table: Vec<[Option<f64>; 256]> = tables
            .iter()
            .map(|t| t.map(|f| (f > 0).then(|| f64::from(prob_bits) - f64::from(f).log2())))
            .collect();
        Costs::new(&per_table)
    }

    /// Costs at the entropy of each class's histogram.
    fn of_sums(sums: &[[u64; 256]]) -> Costs {
        let per_table: Vec<[Option<f64>; 256]> = sums
            .iter()
            .map(|sum| {
                let total = sum.iter().sum::<u64>() as f64;
                sum.map(|n| (n > 0).then(|| log2_approx(total / n as f64)))
            })
            .collect();
        Costs::new(&per_table)
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
    let sums = class_sums(rows, classes, k);
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
    let total: u64 = counts.iter().sum();
    let t = total as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 * log2_approx(t / c as f64)).sum()
}

/// Each row's cheapest class (rows in parallel: the search runs on one plane at a time, and a
/// large tensor's plane is a batch of its own).
fn assign(rows: &[Row], sums: &[[u64; 256]]) -> Vec<u8> {
    let costs = Costs::of_sums(sums);
    rows.par_iter().with_min_len(32).map(|row| costs.cheapest(row) as u8).collect()
}

/// Rows of a plane the classes are searched on; all rows are assigned at the end.
const SAMPLE_ROWS: usize = 256;
/// ... and at most one row in `SAMPLE_STRIDE_MIN`: the search's rounds cost several passes
/// over its sample, so a sample of every row would cost more than the pass over all rows.
const SAMPLE_STRIDE_MIN: usize = 4;
/// Lloyd rounds per candidate number of classes.
const ROUNDS: usize = 3;

/// Counts rows of a plane: adds the histogram of each row of `rows` to the matching one of
/// `hists` (given all zeros). Rows come in pairs where they can, which the counter may
/// interleave: two rows into two histograms wait less on repeated symbols than one.
pub type RowCounter<'a> = dyn Fn(&[usize], &mut [[u32; 256]]) + Sync + 'a;

/// Chooses up to `max_tables` tables for a plane of `rows` rows counted by `row_hist`
/// (histograms computed on demand: a plane's rows are never all held at once, so memory
/// stays bounded by the plane itself). Returns the tables, each row's table when there are
/// several (else an empty map), the bits the plane's residuals cost with them, and the
/// plane's residual histogram.
///
/// On a sample of rows, for k = 2, 4, 8, 16: rows are split into k classes by their own
/// entropy, then refined by Lloyd rounds (each row moves to the table that codes it cheapest,
/// tables are rebuilt); k doubles while the estimated total (coded bits + tables + map) keeps
/// falling below the best so far, one table included (on most planes classes do not pay and
/// the search stops at k = 2). Then, in one pass over all rows, every row takes its cheapest
/// table and the class sums (whose total is the plane's histogram) refit the tables; the
/// result is kept only if it beats one table for the whole plane. When the sample finds no
/// candidate, the plane's histogram comes from `plane_hist` (cheaper than row by row) and one
/// table is returned.
pub fn choose_tables(
    rows: usize,
    row_hist: &RowCounter,
    plane_hist: &dyn Fn() -> [u64; 256],
    prob_bits: u8,
    max_tables: u8,
) -> (Vec<Frequencies>, Vec<u8>, f64, [u64; 256]) {
    let (candidate, sample) = if rows >= 2 && max_tables >= 2 {
        search(rows, row_hist, prob_bits, max_tables)
    } else {
        (None, Sample::default())
    };
    let Some(tables) = candidate else {
        let total = plane_hist();
        let table = normalize(&total, prob_bits);
        let bits = cost_bits(&total, &table, prob_bits);
        return (vec![table], Vec::new(), bits, total);
    };
    // Every row to its cheapest table, in chunks of rows (in parallel), with the class sums.
    let costs = Costs::of_tables(&tables, prob_bits);
    let k = tables.len().max(1);
    let chunks: Vec<(Vec<u8>, Vec<[u64; 256]>)> = (0..rows.div_ceil(64))
        .into_par_iter()
        .map(|chunk| {
            let rows = chunk * 64..(chunk * 64 + 64).min(rows);
            let mut classes = vec![0u8; rows.len()];
            let mut sums = vec![[0u64; 256]; k];
            // Row `r`'s class from its histogram `h`, which is left all zeros.
            let mut classify = |r: usize, h: &mut [u32; 256]| {
                let row = Row::new(h);
                let c = costs.cheapest(&row);
                for (s, &n) in sums[c][row.lo..row.hi].iter_mut().zip(&h[row.lo..row.hi]) {
                    *s += u64::from(n);
                }
                let (lo, hi) = (row.lo, row.hi);
                h[lo..hi].fill(0);
                classes[r - rows.start] = c as u8;
            };
            // The sampled rows among them were counted by the search already; the others
            // are counted two at a time.
            let first = sample.rows.partition_point(|&r| r < rows.start);
            let last = sample.rows.partition_point(|&r| r < rows.end);
            for (&r, h) in sample.rows[first..last].iter().zip(&sample.counts[first..last]) {
                classify(r, &mut h.clone());
            }
            let mut sampled = sample.rows[first..last].iter().peekable();
            let mut hists = [[0u32; 256]; 2];
            let mut waiting = None;
            for r in rows.clone() {
                if sampled.next_if_eq(&&r).is_some() {
                    continue;
                }
                let Some(a) = waiting.take() else {
                    waiting = Some(r);
                    continue;
                };
                row_hist(&[a, r], &mut hists);
                let [ha, hb] = &mut hists;
                classify(a, ha);
                classify(r, hb);
            }
            if let Some(a) = waiting {
                row_hist(&[a], &mut hists[..1]);
                classify(a, &mut hists[0]);
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
    let one_total = one_bits + side_bits(std::iter::once(present(&total)), rows);
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
    let fitted_side = side_bits(fitted.iter().map(|t| t.iter().filter(|&&f| f > 0).count()), rows);
    if fitted.len() < 2 || bits + fitted_side >= one_total {
        return (vec![one_table], Vec::new(), one_bits, total);
    }
    (fitted, classes, bits, total)
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

/// The rows the search counted (ascending) and their histograms.
#[derive(Default)]
struct Sample {
    rows: Vec<usize>,
    counts: Vec<[u32; 256]>,
}

/// The sample search of `choose_tables`: the best candidate tables (two or more), if they
/// beat one table on the sample's estimate, and the sample.
fn search(
    rows: usize,
    row_hist: &RowCounter,
    prob_bits: u8,
    max_tables: u8,
) -> (Option<Vec<Frequencies>>, Sample) {
    let sampled: Vec<usize> = sample_rows(rows).collect();
    let sample_counts: Vec<[u32; 256]> = sampled
        .par_chunks(2)
        .with_min_len(4)
        .flat_map_iter(|pair| {
            let mut hists = vec![[0u32; 256]; pair.len()];
            row_hist(pair, &mut hists);
            hists
        })
        .collect();
    let candidate = search_sample(&sample_counts, rows, prob_bits, max_tables);
    (candidate, Sample { rows: sampled, counts: sample_counts })
}

/// The search on the histograms of the sampled rows of a plane of `rows` rows.
fn search_sample(
    sample_counts: &[[u32; 256]],
    rows: usize,
    prob_bits: u8,
    max_tables: u8,
) -> Option<Vec<Frequencies>> {
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
    // One table for the whole sample is the estimate to beat: more classes are tried only
    // while each number of classes beats the best so far (most planes stop at two).
    let (one_bits, one_sum) = fit(&sample, &mut vec![0u8; sample.len()], 1);
    let one_estimate = one_bits * scale + side_bits(one_sum.iter().map(present), rows);
    let mut best: Option<(f64, Vec<[u64; 256]>)> = None;
    let mut best_estimate = one_estimate;
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
            let (next_bits, next_sums) = fit(&sample, &mut next, sums.len());
            if next_bits >= bits {
                break;
            }
            (bits, sums, classes) = (next_bits, next_sums, next);
        }
        let estimate = bits * scale + side_bits(sums.iter().map(present), rows);
        if estimate >= best_estimate {
            break;
        }
        best_estimate = estimate;
        best = Some((estimate, sums));
        k *= 2;
    }
    best.filter(|(_, sums)| sums.len() >= 2)
        .map(|(_, sums)| sums.iter().map(|sum| normalize(sum, prob_bits)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(rows: &[[u32; 256]]) -> (Vec<Frequencies>, Vec<u8>, f64) {
        let mut expected = [0u64; 256];
        for h in rows {
            for (t, &c) in expected.iter_mut().zip(h) {
                *t += u64::from(c);
            }
        }
        let (tables, classes, bits, total) = choose_tables(
            rows.len(),
            &|rs, hs| rs.iter().zip(hs).for_each(|(&r, h)| *h = rows[r]),
            &|| expected,
            12,
            8,
        );
        assert_eq!(total, expected, "the returned histogram is the plane's");
        (tables, classes, bits)
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
