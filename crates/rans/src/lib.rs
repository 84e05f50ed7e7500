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

/// Which table codes which symbol of a unit.
#[derive(Clone, Copy, Debug)]
pub enum TableMap<'a> {
    /// Every symbol with table 0.
    Single,
    /// Symbol `t` with table `row_tables[t / width]`: the unit is a tile `width` wide and
    /// `row_tables` holds its rows' classes.
    Rows { row_tables: &'a [u8], width: usize },
}

impl TableMap<'_> {
    /// Checks that the map covers `n` symbols with tables below `n_tables`.
    fn check(&self, n: usize, n_tables: usize) -> Result<(), RansError> {
        match *self {
            TableMap::Single => Ok(()),
            TableMap::Rows { row_tables, width } => {
                let rows = if width == 0 { 0 } else { n.div_ceil(width) };
                if (n > 0 && width == 0)
                    || row_tables.len() < rows
                    || row_tables[..rows].iter().any(|&t| usize::from(t) >= n_tables)
                {
                    return Err(RansError::BadTable("row classes do not cover the unit"));
                }
                Ok(())
            }
        }
    }

    /// The table of symbol `t` (after `check`).
    #[inline]
    fn table_of(&self, t: usize) -> usize {
        match *self {
            TableMap::Single => 0,
            TableMap::Rows { row_tables, width } => usize::from(row_tables[t / width]),
        }
    }

    /// The table of all `len` symbols from `base` if they share one.
    #[inline]
    fn group_table(&self, base: usize, len: usize) -> Option<usize> {
        match *self {
            TableMap::Single => Some(0),
            TableMap::Rows { row_tables, width } => {
                let rows = &row_tables[base / width..=(base + len - 1) / width];
                rows.iter().all(|&t| t == rows[0]).then_some(usize::from(rows[0]))
            }
        }
    }
}

/// Position of symbol `t` of a unit in decoding order: (step, lane). Symbols are grouped by
/// 128; in group `g` lane `i` owns symbols `128g + 4i .. 128g + 4i + 3`.
#[inline]
pub fn symbol_slot(t: usize) -> (usize, usize) {
    let (g, r) = (t / GROUP, t % GROUP);
    (g * RUN + r % RUN, r / RUN)
}
