//! The rANS coder of wcodec: 32 interleaved lanes, 32-bit states, 16-bit renormalisation words
//! read from one stream per unit, each lane owning runs of 4 consecutive symbols.
//!
//! The layout is fixed by the format (docs/FORMAT.md, "rANS units") so that a GPU warp and a
//! CPU read the same bytes. This crate is the scalar reference: `decode_unit` is the oracle
//! every faster decoder is tested against.
#![forbid(unsafe_code)]

mod decode;
mod encode;
mod freq;

pub use decode::{DecodeTable, decode_unit};
pub use encode::{EncodeTable, encode_unit};
pub use freq::{cost_bits, entropy_bits, histogram, normalize};
pub use wcodec_format::Frequencies;
pub use wcodec_format::rans::{GROUP, LANES, RUN, STATE_LOW, STATES_BYTES, WORD_BITS};

use thiserror::Error;

/// Why a unit could not be decoded. Any of these means the unit is damaged.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum RansError {
    #[error("unit shorter than its {STATES_BYTES} bytes of states, or of odd length")]
    BadLength,
    #[error("lane {lane} starts in state {state:#x}, outside [2^16, 2^32)")]
    BadInitialState { lane: usize, state: u32 },
    #[error("stream exhausted after {words} words")]
    StreamExhausted { words: usize },
    #[error("unit did not end in its final states ({words_left} words left)")]
    NotFinal { words_left: usize },
    #[error("invalid frequency table: {0}")]
    BadTable(&'static str),
}

/// Position of symbol `t` of a unit in decoding order: (step, lane). Symbols are grouped by
/// 128; in group `g` lane `i` owns symbols `128g + 4i .. 128g + 4i + 3`.
#[inline]
pub fn symbol_slot(t: usize) -> (usize, usize) {
    let (g, r) = (t / GROUP, t % GROUP);
    (g * RUN + r % RUN, r / RUN)
}
