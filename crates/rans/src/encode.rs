//! The encoder: runs the decoder's steps backwards and reverses the words.

use crate::{Frequencies, GROUP, LANES, RUN, STATE_LOW, TableMap};

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
    /// `u32::MAX` when `freq == 1`, else 0.
    identity_mask: u32,
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
                identity_mask: if freq == 1 { u32::MAX } else { 0 },
            };
            cum += freq;
        }
        debug_assert_eq!(cum, 1 << prob_bits);
        EncodeTable { prob_bits: u32::from(prob_bits), symbols }
    }

    #[inline(always)]
    fn put(&self, x: &mut u32, symbol: u8, words: &mut Words) {
        let s = &self.symbols[symbol as usize];
        debug_assert!(s.freq > 0, "symbol {symbol} has no frequency");
        let v = *x;
        // Branch-free renormalisation: always store, advance only when the word is needed.
        let emit = u64::from(v) >= s.x_max;
        words.buf[words.len] = v as u16;
        words.len += usize::from(emit);
        let v = if emit { v >> 16 } else { v };
        // freq == 1 has no 64-bit reciprocal: its quotient is v itself, added through a mask.
        let q = ((u128::from(s.rcp) * u128::from(v)) >> 64) as u32 + (v & s.identity_mask);
        *x = (q << self.prob_bits) + (v - q * s.freq) + s.cum;
    }
}

/// Encodes `symbols` as one unit and appends it to `out`: 32 little-endian u32 initial states,
/// then the u16 words. `map` says which of `tables` codes each symbol; every symbol must have
/// a non-zero frequency in its table.
///
/// Panics if `map` does not cover the symbols with tables of `tables` (a caller bug: the
/// encoder builds the map itself).
pub fn encode_unit(symbols: &[u8], tables: &[EncodeTable], map: TableMap, out: &mut Vec<u8>) {
    map.check(symbols.len(), tables.len()).expect("the table map covers the unit");
    // At most one word per symbol, plus the slot the branch-free store writes past the end.
    // The buffer is reused per thread: a fresh one per unit costs page faults.
    WORDS.with_borrow_mut(|buf| {
        if buf.len() < symbols.len() + 1 {
            buf.resize(symbols.len() + 1, 0);
        }
        let mut words = Words { buf: std::mem::take(buf), len: 0 };
        encode_into(symbols, tables, map, &mut words, out);
        *buf = words.buf;
    });
}

thread_local! {
    static WORDS: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn encode_into(
    symbols: &[u8],
    tables: &[EncodeTable],
    map: TableMap,
    words: &mut Words,
    out: &mut Vec<u8>,
) {
    let mut states = [STATE_LOW; LANES];
    let n = symbols.len();
    // The steps run backwards: groups from the last to the first (the tail group, decoded
    // last, comes first); within a group, steps from the last; within a step, lanes from 31
    // down to 0.
    for g in (0..n.div_ceil(GROUP)).rev() {
        let base = g * GROUP;
        let len = (n - base).min(GROUP);
        match map.group_table(base, len) {
            Some(table) if len == GROUP => {
                let table = &tables[table];
                for j in (0..RUN).rev() {
                    for lane in (0..LANES).rev() {
                        table.put(&mut states[lane], symbols[base + lane * RUN + j], words);
                    }
                }
            }
            _ => {
                for j in (0..RUN).rev() {
                    for lane in (0..LANES).rev() {
                        let t = base + lane * RUN + j;
                        if t < n {
                            tables[map.table_of(t)].put(&mut states[lane], symbols[t], words);
                        }
                    }
                }
            }
        }
    }
    out.reserve(LANES * 4 + words.len * 2);
    for s in states {
        out.extend_from_slice(&s.to_le_bytes());
    }
    for w in words.buf[..words.len].iter().rev() {
        out.extend_from_slice(&w.to_le_bytes());
    }
}

/// Words emitted so far, in encoding (reverse) order.
struct Words {
    buf: Vec<u16>,
    len: usize,
}
