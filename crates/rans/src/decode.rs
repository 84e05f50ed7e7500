//! The reference decoder: plain scalar code, the oracle for every faster path.

use crate::{Frequencies, GROUP, LANES, RUN, RansError, STATE_LOW, STATES_BYTES};

/// Decode table: for each of the `2^prob_bits` slots one packed u32,
/// `symbol | (freq - 1) << 8 | (slot - cum) << 20`, the same word the GPU keeps in shared memory.
#[derive(Clone, Debug)]
pub struct DecodeTable {
    prob_bits: u32,
    entries: Vec<u32>,
}

impl DecodeTable {
    pub fn new(freqs: &Frequencies, prob_bits: u8) -> Result<DecodeTable, RansError> {
        if !(wcodec_format::rans::MIN_PROB_BITS..=wcodec_format::rans::MAX_PROB_BITS)
            .contains(&prob_bits)
        {
            return Err(RansError::BadTable("probability bits outside 8..=12"));
        }
        let total = 1usize << prob_bits;
        if freqs.iter().map(|&f| f as usize).sum::<usize>() != total {
            return Err(RansError::BadTable("frequencies do not sum to 2^prob_bits"));
        }
        let mut entries = Vec::with_capacity(total);
        for (s, &f) in freqs.iter().enumerate() {
            for bias in 0..f {
                entries.push(s as u32 | (f - 1) << 8 | bias << 20);
            }
        }
        Ok(DecodeTable { prob_bits: u32::from(prob_bits), entries })
    }

    pub fn prob_bits(&self) -> u32 {
        self.prob_bits
    }

    /// The packed entries, `2^prob_bits` of them.
    pub fn entries(&self) -> &[u32] {
        &self.entries
    }
}

/// Decodes one unit of `out.len()` symbols into `out`, checking that the unit is exactly
/// consumed and ends in the encoder's initial states. Symbol `t` is decoded with
/// `tables[symbol_tables[t]]`, or with `tables[0]` when `symbol_tables` is `None`; all tables
/// must share one precision.
pub fn decode_unit(
    unit: &[u8],
    tables: &[DecodeTable],
    symbol_tables: Option<&[u8]>,
    out: &mut [u8],
) -> Result<(), RansError> {
    let first = tables.first().ok_or(RansError::BadTable("no table"))?;
    if tables.iter().any(|t| t.prob_bits != first.prob_bits) {
        return Err(RansError::BadTable("tables of different precisions"));
    }
    match symbol_tables {
        None => decode_with(unit, first.prob_bits, out, |_| &first.entries),
        Some(ids) => {
            if ids.len() != out.len() || ids.iter().any(|&i| usize::from(i) >= tables.len()) {
                return Err(RansError::BadTable("symbol table ids do not match the unit"));
            }
            decode_with(unit, first.prob_bits, out, |t| &tables[usize::from(ids[t])].entries)
        }
    }
}

#[inline(always)]
fn decode_with<'t>(
    unit: &[u8],
    prob_bits: u32,
    out: &mut [u8],
    table_of: impl Fn(usize) -> &'t [u32],
) -> Result<(), RansError> {
    if unit.len() < STATES_BYTES || unit.len() % 2 != 0 {
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
    let words: Vec<u16> =
        word_bytes.chunks_exact(2).map(|w| u16::from_le_bytes([w[0], w[1]])).collect();
    let mut lanes = Lanes {
        states,
        words: &words,
        pos: 0,
        overrun: false,
        mask: (1u32 << prob_bits) - 1,
        shift: prob_bits,
    };
    let n = out.len();
    let full_groups = n / GROUP;
    for g in 0..full_groups {
        let base = g * GROUP;
        for j in 0..RUN {
            for lane in 0..LANES {
                let t = base + lane * RUN + j;
                out[t] = lanes.step(lane, table_of(t));
            }
        }
        if lanes.overrun {
            return Err(RansError::StreamExhausted { words: words.len() });
        }
    }
    let base = full_groups * GROUP;
    for j in 0..RUN {
        for lane in 0..LANES {
            let t = base + lane * RUN + j;
            if t < n {
                out[t] = lanes.step(lane, table_of(t));
            }
        }
    }
    if lanes.overrun {
        return Err(RansError::StreamExhausted { words: words.len() });
    }
    let words_left = words.len() - lanes.pos;
    if words_left != 0 || lanes.states.iter().any(|&s| s != STATE_LOW) {
        return Err(RansError::NotFinal { words_left });
    }
    Ok(())
}

/// The decoder's state while it runs a unit.
struct Lanes<'a> {
    states: [u32; LANES],
    words: &'a [u16],
    /// Next word of the stream.
    pos: usize,
    /// Set when a lane needed a word past the end; checked once per group, so the hot loop has
    /// no unpredictable branch.
    overrun: bool,
    mask: u32,
    shift: u32,
}

impl Lanes<'_> {
    #[inline(always)]
    fn step(&mut self, lane: usize, entries: &[u32]) -> u8 {
        let x = self.states[lane];
        let e = entries[(x & self.mask) as usize];
        let freq = ((e >> 8) & 0xfff) + 1;
        let x = freq * (x >> self.shift) + (e >> 20);
        let need = x < STATE_LOW;
        let word = self.words.get(self.pos).copied();
        self.overrun |= need & word.is_none();
        // Branch-free renormalisation: the condition is data-dependent and unpredictable.
        let renormed = (x << 16) | u32::from(word.unwrap_or(0));
        self.states[lane] = if need { renormed } else { x };
        self.pos += usize::from(need);
        e as u8
    }
}
