//! Histograms, order-0 costs, and normalisation of counts to frequencies summing to 2^bits.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::Frequencies;

/// Byte histogram of `data`, counted in four interleaved tables to break store dependencies.
pub fn histogram(data: &[u8]) -> [u64; 256] {
    let mut parts = [[0u32; 256]; 4];
    let mut total = [0u64; 256];
    // u32 counters flushed every 2^30 bytes cannot overflow.
    for block in data.chunks(1 << 30) {
        let mut quads = block.chunks_exact(4);
        for q in &mut quads {
            parts[0][q[0] as usize] += 1;
            parts[1][q[1] as usize] += 1;
            parts[2][q[2] as usize] += 1;
            parts[3][q[3] as usize] += 1;
        }
        for &b in quads.remainder() {
            parts[0][b as usize] += 1;
        }
        for part in &mut parts {
            for (t, c) in total.iter_mut().zip(part.iter_mut()) {
                *t += u64::from(*c);
                *c = 0;
            }
        }
    }
    total
}

/// Exact order-0 entropy of a histogram, in bits for all symbols together.
pub fn entropy_bits(counts: &[u64; 256]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let t = total as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 * (t / c as f64).log2()).sum()
}

/// Logarithms of frequencies (`1..=2^12`) and of their ratios to the next, computed once:
/// the normalisation and pricing of tables take thousands of them a plane, and a table
/// lookup gives the very values `f64::log2` does (the same tables whichever is used).
struct Log2Tables {
    /// `log2(f)`.
    of: Vec<f64>,
    /// `log2((f + 1) / f)`, for `f >= 1`.
    step_up: Vec<f64>,
}

fn log2_tables() -> &'static Log2Tables {
    static TABLES: std::sync::OnceLock<Log2Tables> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let max = 1usize << wcodec_format::rans::MAX_PROB_BITS;
        Log2Tables {
            of: (0..=max).map(|f| (f as f64).log2()).collect(),
            step_up: (0..=max).map(|f| (f as f64 + 1.0) / f as f64).map(f64::log2).collect(),
        }
    })
}

/// Bits to code a histogram with `freqs` (precision `prob_bits`); infinite if a present symbol
/// has no frequency.
pub fn cost_bits(counts: &[u64; 256], freqs: &Frequencies, prob_bits: u8) -> f64 {
    let log2 = &log2_tables().of;
    let mut bits = 0.0;
    for (&c, &f) in counts.iter().zip(freqs.iter()) {
        if c == 0 {
            continue;
        }
        if f == 0 {
            return f64::INFINITY;
        }
        let log2_f = log2.get(f as usize).copied().unwrap_or_else(|| f64::from(f).log2());
        bits += c as f64 * (f64::from(prob_bits) - log2_f);
    }
    bits
}

/// A candidate change of one symbol's frequency, ordered by its effect on the coded size.
struct Step {
    gain: f64,
    symbol: usize,
}

impl PartialEq for Step {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Step {}
impl PartialOrd for Step {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Step {
    fn cmp(&self, other: &Self) -> Ordering {
        self.gain.total_cmp(&other.gain).then(other.symbol.cmp(&self.symbol))
    }
}

/// Scales `counts` to frequencies summing to exactly `2^prob_bits`, giving every present
/// symbol at least 1 and minimising the coded size (greedy on marginal cost, which is optimal
/// for this separable concave objective). An empty histogram gets symbol 0 with all the mass.
///
/// Panics if more than `2^prob_bits` symbols are present (impossible for `prob_bits >= 8`).
pub fn normalize(counts: &[u64; 256], prob_bits: u8) -> Frequencies {
    let total_freq = 1u64 << prob_bits;
    let total: u64 = counts.iter().sum();
    let mut freqs = [0u32; 256];
    if total == 0 {
        freqs[0] = total_freq as u32;
        return freqs;
    }
    let present = counts.iter().filter(|&&c| c > 0).count() as u64;
    assert!(present <= total_freq, "more symbols than probability slots");
    let mut sum = 0u64;
    for (f, &c) in freqs.iter_mut().zip(counts.iter()) {
        if c > 0 {
            let scaled = (u128::from(c) * u128::from(total_freq) / u128::from(total)) as u64;
            *f = scaled.max(1) as u32;
            sum += u64::from(*f);
        }
    }
    // From the table up to the format's precision (callers may ask for more, to compare).
    let step_up = &log2_tables().step_up;
    let log2_step = |f: u32| match step_up.get(f as usize) {
        Some(&l) => l,
        None => (f64::from(f + 1) / f64::from(f)).log2(),
    };
    let gain_up = |c: u64, f: u32| c as f64 * log2_step(f);
    let loss_down = |c: u64, f: u32| c as f64 * log2_step(f - 1);
    if sum < total_freq {
        let mut heap: BinaryHeap<Step> = (0..256)
            .filter(|&s| counts[s] > 0)
            .map(|s| Step { gain: gain_up(counts[s], freqs[s]), symbol: s })
            .collect();
        while sum < total_freq {
            let Step { symbol, .. } = heap.pop().expect("a present symbol exists");
            freqs[symbol] += 1;
            sum += 1;
            heap.push(Step { gain: gain_up(counts[symbol], freqs[symbol]), symbol });
        }
    } else if sum > total_freq {
        // Smallest loss first: the heap holds negated losses.
        let mut heap: BinaryHeap<Step> = (0..256)
            .filter(|&s| freqs[s] > 1)
            .map(|s| Step { gain: -loss_down(counts[s], freqs[s]), symbol: s })
            .collect();
        while sum > total_freq {
            let Step { symbol, .. } = heap.pop().expect("sum > total implies a frequency > 1");
            freqs[symbol] -= 1;
            sum -= 1;
            if freqs[symbol] > 1 {
                heap.push(Step { gain: -loss_down(counts[symbol], freqs[symbol]), symbol });
            }
        }
    }
    freqs
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn histogram_counts_everything() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i * 7 % 256) as u8).collect();
        let h = histogram(&data);
        assert_eq!(h.iter().sum::<u64>(), 1001);
        assert_eq!(h[0], data.iter().filter(|&&b| b == 0).count() as u64);
    }

    #[test]
    fn entropy_of_uniform_is_eight_bits() {
        let counts = [10u64; 256];
        assert!((entropy_bits(&counts) / 2560.0 - 8.0).abs() < 1e-9);
    }

    #[test]
    fn single_symbol_takes_all_mass() {
        let mut counts = [0u64; 256];
        counts[42] = 5;
        let f = normalize(&counts, 12);
        assert_eq!(f[42], 4096);
        assert_eq!(cost_bits(&counts, &f, 12), 0.0);
    }

    proptest! {
        #[test]
        fn normalized_tables_are_valid_and_near_entropy(
            counts in proptest::collection::vec(prop_oneof![Just(0u64), 1u64..5, 1u64..100_000], 256),
            bits in 8u8..=16,
        ) {
            let counts: [u64; 256] = counts.try_into().unwrap();
            let f = normalize(&counts, bits);
            prop_assert_eq!(f.iter().map(|&x| u64::from(x)).sum::<u64>(), 1u64 << bits);
            for s in 0..256 {
                prop_assert!(counts[s] == 0 || f[s] >= 1);
            }
            // The greedy normalisation is never worse than naive rounding with the error
            // dumped on the most frequent symbol.
            let total: u64 = counts.iter().sum();
            if total > 0 {
                let m = 1u64 << bits;
                let mut naive = [0u32; 256];
                for (n, &c) in naive.iter_mut().zip(&counts).filter(|(_, c)| **c > 0) {
                    *n = (c * m).div_ceil(total).max(1) as u32;
                }
                let sum: i64 = naive.iter().map(|&x| i64::from(x)).sum();
                let top = (0..256).max_by_key(|&s| naive[s]).unwrap();
                let fixed = i64::from(naive[top]) - (sum - m as i64);
                if fixed >= 1 {
                    naive[top] = fixed as u32;
                    prop_assert!(cost_bits(&counts, &f, bits) <= cost_bits(&counts, &naive, bits) + 1e-6);
                }
                prop_assert!(cost_bits(&counts, &f, bits) >= entropy_bits(&counts) - 1e-6);
            }
        }
    }
}
