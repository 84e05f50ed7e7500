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
/// consumed and ends in the encoder's initial states.
pub fn decode_unit(unit: &[u8], table: &DecodeTable, out: &mut [u8]) -> Result<(), RansError> {
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
    let mut words = word_bytes.chunks_exact(2).map(|w| u16::from_le_bytes([w[0], w[1]]));
    let n_words = word_bytes.len() / 2;
    let mask = (1u32 << table.prob_bits) - 1;
    let shift = table.prob_bits;
    let entries = &table.entries[..];
    let mut step = |x: &mut u32| -> Result<u8, RansError> {
        let e = entries[(*x & mask) as usize];
        let freq = ((e >> 8) & 0xfff) + 1;
        *x = freq * (*x >> shift) + (e >> 20);
        if *x < STATE_LOW {
            let w = words.next().ok_or(RansError::StreamExhausted { words: n_words })?;
            *x = (*x << 16) | u32::from(w);
        }
        Ok(e as u8)
    };
    let full_groups = out.len() / GROUP;
    let (body, tail) = out.split_at_mut(full_groups * GROUP);
    for group in body.chunks_exact_mut(GROUP) {
        for j in 0..RUN {
            for lane in 0..LANES {
                group[lane * RUN + j] = step(&mut states[lane])?;
            }
        }
    }
    for j in 0..RUN {
        for lane in 0..LANES {
            if let Some(slot) = tail.get_mut(lane * RUN + j) {
                *slot = step(&mut states[lane])?;
            }
        }
    }
    let words_left = words.count();
    if words_left != 0 || states.iter().any(|&s| s != STATE_LOW) {
        return Err(RansError::NotFinal { words_left });
    }
    Ok(())
}
