//! The reference decoder: plain scalar code, the oracle for every faster path.

use crate::fast_decode::FastUnit;
use crate::{Frequencies, GROUP, LANES, Path, RUN, RansError, STATE_LOW, STATES_BYTES, TableMap};

/// Slots of the largest table (`2^MAX_PROB_BITS`); smaller tables leave the rest unused, so a
/// masked index never needs a bounds check.
pub(crate) const SLOTS: usize = 1 << wcodec_format::rans::MAX_PROB_BITS;

/// Decode table: for each of the `2^prob_bits` slots one packed u32,
/// `symbol | (freq - 1) << 8 | (slot - cum) << 20`, the same word the GPU keeps in shared memory.
#[derive(Clone, Debug)]
pub struct DecodeTable {
    prob_bits: u32,
    pub(crate) entries: Box<[u32; SLOTS]>,
    /// For the AVX-512 decoder of lone units on small tables, per slot: the largest
    /// `q = x >> prob_bits` whose decoded state `freq * q + slot - cum` is below `2^16`, so
    /// that a lane's renormalisation is known from `q` and one compare. (Two spare entries: a
    /// 32-bit gather of the last one reads past it.) Built on first use: most tables never
    /// need it. (Read by the x86-64 kernels only.)
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    renorm: std::sync::OnceLock<Box<[u16; SLOTS + 2]>>,
}

/// Checks that `freqs` is a table of `2^prob_bits` slots (`prob_bits` in 8..=12).
fn check_table(freqs: &Frequencies, prob_bits: u8) -> Result<(), RansError> {
    if !(wcodec_format::rans::MIN_PROB_BITS..=wcodec_format::rans::MAX_PROB_BITS)
        .contains(&prob_bits)
    {
        return Err(RansError::BadTable("probability bits outside 8..=12"));
    }
    if freqs.iter().map(|&f| f as usize).sum::<usize>() != 1 << prob_bits {
        return Err(RansError::BadTable("frequencies do not sum to 2^prob_bits"));
    }
    Ok(())
}

/// The entry of slot `cum + bias` of `symbol`, whose frequency is `freq`.
#[inline(always)]
fn packed_entry(symbol: usize, freq: u32, bias: u32) -> u32 {
    symbol as u32 | (freq - 1) << 8 | bias << 20
}

/// Writes the packed entries of `freqs` (`DecodeTable::entries`) into `out`, which must be
/// `2^prob_bits` long: for callers that lay many tables side by side (the GPU decoder).
pub fn write_table_entries(
    freqs: &Frequencies,
    prob_bits: u8,
    out: &mut [u32],
) -> Result<(), RansError> {
    check_table(freqs, prob_bits)?;
    if out.len() != 1 << prob_bits {
        return Err(RansError::BadTable("output is not 2^prob_bits entries long"));
    }
    let mut slots = out.iter_mut();
    for (s, &f) in freqs.iter().enumerate().filter(|(_, f)| **f > 0) {
        for (bias, o) in (0..f).zip(&mut slots) {
            *o = packed_entry(s, f, bias);
        }
    }
    Ok(())
}

impl DecodeTable {
    pub fn new(freqs: &Frequencies, prob_bits: u8) -> Result<DecodeTable, RansError> {
        check_table(freqs, prob_bits)?;
        // Each slot written once (no zeroing first: tables are built per plane, and small planes
        // are many): the used slots in order, then zeros up to the full size.
        let mut entries = Vec::with_capacity(SLOTS);
        for (s, &f) in freqs.iter().enumerate().filter(|(_, f)| **f > 0) {
            entries.extend((0..f).map(|bias| packed_entry(s, f, bias)));
        }
        entries.resize(SLOTS, 0);
        let entries = entries.into_boxed_slice().try_into().expect("SLOTS entries");
        Ok(DecodeTable { prob_bits: u32::from(prob_bits), entries, renorm: Default::default() })
    }

    /// Whether the renormalisation thresholds are built already.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn has_renorm(&self) -> bool {
        self.renorm.get().is_some()
    }

    /// The renormalisation thresholds (see the field), from the entries: one division a
    /// symbol, at the slot where its run starts.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn renorm(&self) -> &[u16; SLOTS + 2] {
        self.renorm.get_or_init(|| {
            let mut thresholds = Box::new([0u16; SLOTS + 2]);
            let (mut q0, mut r0) = (0, 0);
            for (t, &e) in thresholds.iter_mut().zip(self.entries()) {
                let (freq, bias) = (((e >> 8) & 0xfff) + 1, e >> 20);
                if bias == 0 {
                    // freq * q + bias < 2^16  <=>  q < ceil((2^16 - bias) / freq) = q0 + (bias < r0).
                    (q0, r0) = (STATE_LOW / freq, STATE_LOW % freq);
                }
                *t = (q0 + u32::from(bias < r0) - 1) as u16;
            }
            thresholds
        })
    }

    pub fn prob_bits(&self) -> u32 {
        self.prob_bits
    }

    /// The packed entries, `2^prob_bits` of them.
    pub fn entries(&self) -> &[u32] {
        &self.entries[..1 << self.prob_bits]
    }
}

/// Decodes one unit of `out.len()` symbols into `out`, checking that the unit is exactly
/// consumed and ends in the encoder's initial states. `map` says which of `tables` codes each
/// symbol; all tables must share one precision.
///
/// Runs the fastest path of this CPU ([`Path::detected`]); every path gives the same output
/// and the same errors. On an error `out` holds what was decoded before it was found.
pub fn decode_unit(
    unit: &[u8],
    tables: &[DecodeTable],
    map: TableMap,
    out: &mut [u8],
) -> Result<(), RansError> {
    decode_unit_with(Path::detected(), unit, tables, map, out)
}

/// [`decode_unit`] on the given path, or on the scalar one where this CPU lacks it (see
/// [`Path::is_available`]). For tests and benchmarks.
#[doc(hidden)]
pub fn decode_unit_with(
    path: Path,
    unit: &[u8],
    tables: &[DecodeTable],
    map: TableMap,
    out: &mut [u8],
) -> Result<(), RansError> {
    let (states, word_bytes) = open(unit, tables, map, out.len())?;
    if let Some(kernel) = path.kernel() {
        let n = out.len();
        let mut out = crate::Out::Flat(out);
        let unit = FastUnit::new(states, word_bytes, tables, map, &mut out, n, kernel);
        return unit.run_to_end(kernel);
    }
    let prob_bits = tables[0].prob_bits;
    // A group's worth of zero words past the end: a lane that runs out reads them (and the
    // overrun is reported after its group), so the hot loop needs no branch. The buffer is
    // reused per thread.
    WORDS.with_borrow_mut(|words| {
        words.clear();
        words.extend(word_bytes.chunks_exact(2).map(|w| u16::from_le_bytes([w[0], w[1]])));
        let n_words = words.len();
        words.resize(n_words + GROUP, 0);
        decode_words(states, words, n_words, tables, prob_bits, map, out)
    })
}

/// The checks before any decoding, the same on every path: the tables, the map, the unit's
/// length and initial states. Returns the states and the stream of words.
pub(crate) fn open<'a>(
    unit: &'a [u8],
    tables: &[DecodeTable],
    map: TableMap,
    n: usize,
) -> Result<([u32; LANES], &'a [u8]), RansError> {
    let first = tables.first().ok_or(RansError::BadTable("no table"))?;
    if tables.iter().any(|t| t.prob_bits != first.prob_bits) {
        return Err(RansError::BadTable("tables of different precisions"));
    }
    map.check(n, tables.len())?;
    if unit.len() < STATES_BYTES || !unit.len().is_multiple_of(2) {
        return Err(RansError::BadLength);
    }
    let (state_bytes, word_bytes) = unit.split_at(STATES_BYTES);
    let mut states = [0u32; LANES];
    for (lane, (s, b)) in states.iter_mut().zip(state_bytes.chunks_exact(4)).enumerate() {
        *s = u32::from_le_bytes(b.try_into().expect("4 bytes"));
        if *s < STATE_LOW {
            return Err(RansError::BadInitialState { lane, state: *s });
        }
    }
    Ok((states, word_bytes))
}

thread_local! {
    static WORDS: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The decode loop over a unit's (padded) words.
fn decode_words(
    states: [u32; LANES],
    words: &[u16],
    n_words: usize,
    tables: &[DecodeTable],
    prob_bits: u32,
    map: TableMap,
    out: &mut [u8],
) -> Result<(), RansError> {
    let mut lanes = Lanes { states, words, n_words, pos: 0, shift: prob_bits };
    let mask = (1u32 << prob_bits) - 1;
    let n = out.len();
    for (g, group) in out.chunks_mut(GROUP).enumerate() {
        let base = g * GROUP;
        match map.group_table(base, group.len()) {
            // The common case: a whole group coded with one table.
            Some(table) if group.len() == GROUP => {
                let group: &mut [u8; GROUP] = group.try_into().expect("a full group");
                // pos <= n_words here (checked after every group), so the window exists.
                let window: &[u16; GROUP] =
                    words[lanes.pos..lanes.pos + GROUP].try_into().expect("padded stream");
                let entries = &tables[table].entries;
                let states = &mut lanes.states;
                lanes.pos += match lanes.shift {
                    12 => decode_group::<12>(states, window, entries, group),
                    11 => decode_group::<11>(states, window, entries, group),
                    10 => decode_group::<10>(states, window, entries, group),
                    9 => decode_group::<9>(states, window, entries, group),
                    _ => decode_group::<8>(states, window, entries, group),
                };
            }
            _ => {
                for j in 0..RUN {
                    for lane in 0..LANES {
                        let t = lane * RUN + j;
                        if base + t < n {
                            let entries = &tables[map.table_of(base + t)].entries;
                            group[t] = lanes.step(lane, entries, mask);
                        }
                    }
                }
            }
        }
        if lanes.pos > n_words {
            return Err(RansError::StreamExhausted { words: n_words });
        }
    }
    let words_left = n_words - lanes.pos;
    if words_left != 0 || lanes.states.iter().any(|&s| s != STATE_LOW) {
        return Err(RansError::NotFinal { words_left });
    }
    Ok(())
}

/// The decoder's state while it runs a unit.
struct Lanes<'a> {
    states: [u32; LANES],
    /// The unit's words and one padding word.
    words: &'a [u16],
    n_words: usize,
    /// Next word of the stream; past `n_words` means the stream ran out.
    pos: usize,
    shift: u32,
}

impl Lanes<'_> {
    #[inline(always)]
    fn step(&mut self, lane: usize, entries: &[u32; SLOTS], mask: u32) -> u8 {
        let x = self.states[lane];
        let e = entries[(x & mask) as usize & (SLOTS - 1)];
        let freq = ((e >> 8) & 0xfff) + 1;
        let x = freq * (x >> self.shift) + (e >> 20);
        let need = x < STATE_LOW;
        let word = self.words[self.pos.min(self.n_words)];
        // Branch-free renormalisation: the condition is data-dependent and unpredictable.
        let renormed = (x << 16) | u32::from(word);
        self.states[lane] = if need { renormed } else { x };
        self.pos += usize::from(need);
        e as u8
    }
}

/// One full group of 128 symbols with one table: the hot loop, written with fixed-size arrays
/// so that it compiles without bounds checks, and specialised on the precision so that the
/// shift and mask are immediates. `window` is the stream from the group's first word on (a
/// group reads at most 128 words); returns how many words the group read.
#[inline(always)]
fn decode_group<const BITS: u32>(
    states: &mut [u32; LANES],
    window: &[u16; GROUP],
    entries: &[u32; SLOTS],
    out: &mut [u8; GROUP],
) -> usize {
    let mask = (1u32 << BITS) - 1;
    let mut read = 0usize;
    for j in 0..RUN {
        for lane in 0..LANES {
            let x = states[lane];
            let e = entries[(x & mask) as usize];
            let x = (((e >> 8) & 0xfff) + 1) * (x >> BITS) + (e >> 20);
            let need = x < STATE_LOW;
            let word = window[read & (GROUP - 1)];
            // Select with a mask, not a branch: `need` is unpredictable.
            let keep = u32::from(need).wrapping_sub(1);
            states[lane] = (x & keep) | (((x << 16) | u32::from(word)) & !keep);
            read += usize::from(need);
            out[lane * RUN + j] = e as u8;
        }
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each slot's threshold is the largest `q` whose decoded state stays below `2^16`, on
    /// tables of every precision with rare and frequent symbols.
    #[test]
    fn thresholds_are_the_largest_q_below_the_renormalisation_bound() {
        for prob_bits in 8..=12u8 {
            let mut counts = [0u64; 256];
            for (s, c) in counts.iter_mut().enumerate().step_by(3) {
                *c = 1 + (s as u64 * 7919) % 5000;
            }
            counts[200] = 1_000_000;
            let table = DecodeTable::new(&crate::normalize(&counts, prob_bits), prob_bits).unwrap();
            let thresholds = table.renorm();
            for (slot, (&e, &t)) in table.entries().iter().zip(thresholds.iter()).enumerate() {
                let (freq, bias) = (((e >> 8) & 0xfff) + 1, e >> 20);
                let q = u32::from(t);
                assert!(freq * q + bias < STATE_LOW, "slot {slot} at {prob_bits} bits");
                assert!(freq * (q + 1) + bias >= STATE_LOW, "slot {slot} at {prob_bits} bits");
            }
            assert!(thresholds[1 << prob_bits..].iter().all(|&t| t == 0));
        }
    }
}
