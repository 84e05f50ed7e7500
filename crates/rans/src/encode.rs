//! The encoder: runs the decoder's steps backwards and reverses the words.

use crate::{Frequencies, GROUP, LANES, RUN, STATE_LOW};

/// Per-symbol constants of the encoder; a division-free quotient through a 64-bit reciprocal.
#[derive(Clone, Copy, Debug, Default)]
struct EncSymbol {
    freq: u32,
    cum: u32,
    /// `floor(2^64 / freq) + 1`: `mulhi(rcp, x) == x / freq` for every 32-bit `x`
    /// (Lemire, Kaser, Kurz 2019), unused when `freq == 1`.
    rcp: u64,
    /// Renormalise (emit a word) before coding when `x >= x_max`.
    x_max: u64,
}

/// Encoder table for one frequency table.
#[derive(Clone, Debug)]
pub struct EncodeTable {
    prob_bits: u32,
    symbols: [EncSymbol; 256],
}

impl EncodeTable {
    /// `freqs` must sum to `2^prob_bits` (as `normalize` guarantees).
    pub fn new(freqs: &Frequencies, prob_bits: u8) -> EncodeTable {
        let mut symbols = [EncSymbol::default(); 256];
        let mut cum = 0u32;
        for (s, &freq) in freqs.iter().enumerate() {
            symbols[s] = EncSymbol {
                freq,
                cum,
                rcp: if freq > 1 { u64::MAX / u64::from(freq) + 1 } else { 0 },
                x_max: u64::from(freq) << (32 - u32::from(prob_bits)),
            };
            cum += freq;
        }
        debug_assert_eq!(cum, 1 << prob_bits);
        EncodeTable { prob_bits: u32::from(prob_bits), symbols }
    }

    #[inline(always)]
    fn put(&self, x: &mut u32, symbol: u8, words: &mut Vec<u16>) {
        let s = &self.symbols[symbol as usize];
        debug_assert!(s.freq > 0, "symbol {symbol} has no frequency");
        let mut v = *x;
        if u64::from(v) >= s.x_max {
            words.push(v as u16);
            v >>= 16;
        }
        let q = if s.freq == 1 { v } else { ((u128::from(s.rcp) * u128::from(v)) >> 64) as u32 };
        *x = (q << self.prob_bits) + (v - q * s.freq) + s.cum;
    }
}

/// Encodes `symbols` as one unit and appends it to `out`: 32 little-endian u32 initial states,
/// then the u16 words. Every symbol must have a non-zero frequency in `table`.
pub fn encode_unit(symbols: &[u8], table: &EncodeTable, out: &mut Vec<u8>) {
    let mut states = [STATE_LOW; LANES];
    let mut words: Vec<u16> = Vec::with_capacity(symbols.len() / 2 + 16);
    let n = symbols.len();
    let full_groups = n / GROUP;
    let tail = n % GROUP;
    // The tail group first (it is decoded last), then full groups from the last to the first.
    if tail > 0 {
        let base = full_groups * GROUP;
        for j in (0..RUN).rev() {
            for lane in (0..LANES).rev() {
                let t = lane * RUN + j;
                if t < tail {
                    table.put(&mut states[lane], symbols[base + t], &mut words);
                }
            }
        }
    }
    for g in (0..full_groups).rev() {
        let group = &symbols[g * GROUP..(g + 1) * GROUP];
        for j in (0..RUN).rev() {
            for lane in (0..LANES).rev() {
                table.put(&mut states[lane], group[lane * RUN + j], &mut words);
            }
        }
    }
    out.reserve(LANES * 4 + words.len() * 2);
    for s in states {
        out.extend_from_slice(&s.to_le_bytes());
    }
    for w in words.iter().rev() {
        out.extend_from_slice(&w.to_le_bytes());
    }
}
