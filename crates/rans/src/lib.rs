//! The rANS coder of wcodec: 32 interleaved lanes, 32-bit states, 16-bit renormalisation words
//! read from one stream per unit, each lane owning runs of 4 consecutive symbols.
//!
//! The layout is fixed by the format (docs/FORMAT.md, "rANS units") so that a GPU warp and a
//! CPU read the same bytes.
//!
//! `decode_unit` and `encode_unit` pick at run time the fastest [`Path`] the CPU runs: AVX-512
//! (16 lanes a register), AVX2 (8 lanes) or plain scalar code. The scalar path is the reference,
//! the oracle every faster path is tested against (same output, same errors, same bytes; see
//! tests/paths.rs); `WCODEC_FORCE_SCALAR=1` forces it, and `WCODEC_SIMD=scalar|avx2|avx512`
//! caps the level. `decode_unit_with` and `encode_unit_with` take a path explicitly.
//!
//! Decoding one unit is bound by the latency of its lanes' chains (a table gather of about 30
//! cycles a step), not by the core's throughput: [`decode_units`] decodes units two (or, where
//! their steps wait longest, three) at a time, interleaved, for about 1.6 times the throughput of
//! one core on one unit at a time, and stores them where [`Out`] says (flat, or the rows of a
//! tile in a wider plane).
//!
//! Modules: `decode` (tables, the reference decoder, the checks every path shares),
//! `fast_decode` (the SIMD paths' driver: kernel runs, mixed and tail groups, pairs), `encode`
//! (tables, the reference encoder, the SIMD paths' driver), `down` (the encoder's word buffer,
//! filled downward, and [`CodedUnit`]), `freq` (histograms, normalisation), `simd` (the
//! kernels).
//!
//! Unsafe code: the crate denies it everywhere but in the `simd` module, which holds the
//! intrinsics and `#[target_feature]` kernels, each `unsafe` block with a `SAFETY` note (a kernel
//! is reachable only through a token built by run-time feature detection), and one line of
//! `down` (a coded unit's bytes, written into memory never zeroed, viewed as bytes; its tests run
//! under Miri). The drivers that split units into the kernels' runs and validate them are safe
//! code.
#![deny(unsafe_code)]

mod decode;
mod down;
mod encode;
mod fast_decode;
mod freq;
#[allow(unsafe_code)]
mod simd;

pub use decode::{DecodeTable, decode_unit, decode_unit_with, write_table_entries};
pub use down::CodedUnit;
pub use encode::{
    EncodeTable, UnitSymbols, encode_unit, encode_unit_owned, encode_unit_owned_with,
    encode_unit_with,
};
pub use fast_decode::{Out, UnitJob, decode_units, decode_units_with};
pub use freq::{cost_bits, entropy_bits, histogram, normalize};
pub use simd::{
    ByteCosts, SeenBytes, byte_cost_sums, cheapest_tables, mark_present, prefetch,
    weighted_cost_sums,
};
pub use wcodec_format::Frequencies;
pub use wcodec_format::rans::{GROUP, LANES, RUN, STATE_LOW, STATES_BYTES, WORD_BITS};

use thiserror::Error;

/// Why a unit could not be decoded (any of these but `NoFrequency` means the unit is damaged),
/// or encoded (`NoFrequency`).
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
    /// A symbol to encode has no frequency in its table: no unit can code it.
    #[error("a symbol to encode has no frequency in its table")]
    NoFrequency,
}

/// Which table codes which symbol of a unit.
#[derive(Clone, Copy, Debug)]
pub enum TableMap<'a> {
    /// Every symbol with table 0.
    Single,
    /// Symbol `t` with table `row_tables[t / width]`: the unit is a tile `width` wide and
    /// `row_tables` holds its rows' classes.
    Rows { row_tables: &'a [u8], width: usize },
    /// Symbol `t` with table `col_tables[(first + t % width) % col_tables.len()]`: the unit is
    /// a tile `width` wide from plane column `first`, and `col_tables` holds the classes of one
    /// period of the plane's columns.
    Cols { col_tables: &'a [u8], first: usize, width: usize },
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
            TableMap::Cols { col_tables, width, .. } => {
                if (n > 0 && (width == 0 || col_tables.is_empty()))
                    || col_tables.iter().any(|&t| usize::from(t) >= n_tables)
                {
                    return Err(RansError::BadTable("column classes do not cover the unit"));
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
            TableMap::Cols { col_tables, first, width } => {
                usize::from(col_tables[(first + t % width) % col_tables.len()])
            }
        }
    }

    /// The table of each symbol `base..base + out.len()`, into `out`.
    #[inline]
    fn fill_tables(&self, base: usize, out: &mut [u8]) {
        match *self {
            TableMap::Single => out.fill(0),
            TableMap::Rows { row_tables, width } => {
                let (mut row, mut col) = (base / width, base % width);
                for t in out {
                    *t = row_tables[row];
                    col += 1;
                    if col == width {
                        (row, col) = (row + 1, 0);
                    }
                }
            }
            TableMap::Cols { col_tables, first, width } => {
                // Row by row of the tile: a row's classes repeat every period, so the first
                // period is looked up and the rest copied from it, doubling.
                let period = col_tables.len();
                let (mut col, mut done) = (base % width, 0);
                while done < out.len() {
                    let run = (width - col).min(out.len() - done);
                    let row = &mut out[done..done + run];
                    let mut class = (first + col) % period;
                    for t in &mut row[..run.min(period)] {
                        *t = col_tables[class];
                        class += 1;
                        if class == period {
                            class = 0;
                        }
                    }
                    let mut filled = run.min(period);
                    while filled < run {
                        let n = filled.min(run - filled);
                        row.copy_within(..n, filled);
                        filled += n;
                    }
                    (col, done) = (0, done + run);
                }
            }
        }
    }

    /// The tables of the two halves of the full group from `base` (the symbols of lanes 0..16
    /// and of lanes 16..32), if each half shares one.
    #[inline]
    fn half_tables(&self, base: usize) -> Option<[u8; 2]> {
        let half = GROUP / 2;
        let low = self.group_table(base, half)?;
        let high = self.group_table(base + half, half)?;
        Some([low as u8, high as u8])
    }

    /// [`TableMap::half_tables`] of the full groups from `base` on, into `out`, up to the first
    /// group whose halves do not each share a table: returns how many it filled. One division
    /// for all of them.
    fn fill_half_tables(&self, base: usize, out: &mut [[u8; 2]]) -> usize {
        let half = GROUP / 2;
        match *self {
            TableMap::Single => {
                out.fill([0, 0]);
                out.len()
            }
            // Rows of whole groups (tiles of a width that is a multiple of 128): every group
            // lies in one row.
            TableMap::Rows { row_tables, width }
                if width.is_multiple_of(GROUP) && base.is_multiple_of(GROUP) =>
            {
                let per_row = width / GROUP;
                let (mut row, mut k) = (base / width, base % width / GROUP);
                for t in out.iter_mut() {
                    *t = [row_tables[row]; 2];
                    k += 1;
                    if k == per_row {
                        (row, k) = (row + 1, 0);
                    }
                }
                out.len()
            }
            // Rows of a group or longer: each half spans one or two rows, found by compares.
            TableMap::Rows { row_tables, width } if width >= GROUP => {
                let (mut row, mut col) = (base / width, base % width);
                for (k, t) in out.iter_mut().enumerate() {
                    let rows = &row_tables[row..=row + usize::from(col + GROUP > width)];
                    let low = rows[usize::from(col + half > width)];
                    let high = rows[usize::from(col + half >= width)];
                    if rows[0] != low || high != rows[rows.len() - 1] {
                        return k;
                    }
                    *t = [low, high];
                    col += GROUP;
                    if col >= width {
                        (row, col) = (row + 1, col - width);
                    }
                }
                out.len()
            }
            _ => {
                for (k, t) in out.iter_mut().enumerate() {
                    match self.half_tables(base + k * GROUP) {
                        Some(tables) => *t = tables,
                        None => return k,
                    }
                }
                out.len()
            }
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
            TableMap::Cols { col_tables, first, width } => {
                // Column by column from the group's first (no division a symbol): symbols of
                // GGUF blocks change class within a few columns, so this stops early.
                let period = col_tables.len();
                let mut col = base % width;
                let mut class = (first + col) % period;
                let table = col_tables[class];
                for _ in 1..len {
                    (col, class) = (col + 1, class + 1);
                    if class == period {
                        class = 0;
                    }
                    if col == width {
                        (col, class) = (0, first % period);
                    }
                    if col_tables[class] != table {
                        return None;
                    }
                }
                Some(usize::from(table))
            }
        }
    }
}

/// The classes of a unit's columns where its tables go by column (`TableMap::Cols`) in a tile
/// whose width is a multiple of `GROUP`, so that every full group lies in one row:
/// `classes[p..p + GROUP]` are those of a group whose first column is at phase `p` of the
/// period, the period's classes followed by a group's more. The SIMD coders take such units
/// in runs, a phase a group.
pub(crate) struct ColumnPattern {
    classes: [u8; MAX_PATTERN],
    period: usize,
    /// The tile's first column, as a phase of the period, and its width.
    first: usize,
    width: usize,
}

/// Bytes of a [`ColumnPattern`]: periods up to 384 columns (GGUF's largest blocks are 210
/// bytes).
const MAX_PATTERN: usize = 512;

impl ColumnPattern {
    /// The pattern of `map`, where it is one of column classes in rows of whole groups with a
    /// period that fits.
    pub(crate) fn of(map: TableMap) -> Option<ColumnPattern> {
        let TableMap::Cols { col_tables, first, width } = map else { return None };
        let period = col_tables.len();
        if period == 0 || period + GROUP > MAX_PATTERN || width == 0 || !width.is_multiple_of(GROUP)
        {
            return None;
        }
        let mut classes = [0u8; MAX_PATTERN];
        for piece in classes[..period + GROUP].chunks_mut(period) {
            piece.copy_from_slice(&col_tables[..piece.len()]);
        }
        Some(ColumnPattern { classes, period, first: first % period, width })
    }

    /// The classes, `period + GROUP` of them.
    pub(crate) fn classes(&self) -> &[u8] {
        &self.classes[..self.period + GROUP]
    }

    /// The phases of the full groups from group `g` on, one an entry of `out`. One division
    /// for them all: the phase moves on by `GROUP % period` a group, and starts again at the
    /// tile's first column a row.
    pub(crate) fn fill_phases(&self, g: usize, out: &mut [u32]) {
        let mut col = g * GROUP % self.width;
        let mut phase = (self.first + col) % self.period;
        let step = GROUP % self.period;
        for at in out {
            *at = phase as u32;
            (col, phase) = (col + GROUP, phase + step);
            if phase >= self.period {
                phase -= self.period;
            }
            if col == self.width {
                (col, phase) = (0, self.first);
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

/// A code path of the coder. Every path gives identical results; tests and benchmarks pick one
/// with [`decode_unit_with`] and [`encode_unit_with`], everything else gets [`Path::detected`].
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Path {
    /// The scalar reference.
    Scalar,
    /// 8 lanes a register (x86-64 with AVX2, BMI2, POPCNT).
    Avx2,
    /// 16 lanes a register (x86-64 with AVX-512 F, BW, VL; the encoder also needs VBMI2 and
    /// IFMA, else it runs the AVX2 one).
    Avx512,
}

impl Path {
    /// Every path, slowest first.
    pub const ALL: [Path; 3] = [Path::Scalar, Path::Avx2, Path::Avx512];

    /// Whether this CPU runs the path.
    pub fn is_available(self) -> bool {
        match self {
            Path::Scalar => true,
            Path::Avx2 => simd::Avx2::detect().is_some(),
            Path::Avx512 => simd::Avx512::detect().is_some(),
        }
    }

    /// The paths this CPU runs, slowest first (regardless of the environment variables).
    pub fn available() -> Vec<Path> {
        Path::ALL.into_iter().filter(|p| p.is_available()).collect()
    }

    /// The path `decode_unit` and `encode_unit` take: the fastest available one, at most the
    /// level named by `WCODEC_SIMD` (`scalar`, `avx2`, `avx512`), and scalar when
    /// `WCODEC_FORCE_SCALAR` is set to anything but `0` or the empty string. Read once.
    pub fn detected() -> Path {
        static DETECTED: std::sync::OnceLock<Path> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| {
            let forced =
                std::env::var("WCODEC_FORCE_SCALAR").is_ok_and(|v| !v.is_empty() && v != "0");
            let cap = match std::env::var("WCODEC_SIMD").as_deref().map(str::to_ascii_lowercase) {
                _ if forced => Path::Scalar,
                Ok(v) if v == "scalar" || v == "none" => Path::Scalar,
                Ok(v) if v == "avx2" => Path::Avx2,
                _ => Path::Avx512,
            };
            Path::available().into_iter().rfind(|&p| p <= cap).unwrap_or(Path::Scalar)
        })
    }

    /// The kernels of the path, `None` for scalar or where the CPU lacks it.
    pub(crate) fn kernel(self) -> Option<simd::Kernel> {
        match self {
            Path::Scalar => None,
            Path::Avx2 => simd::Avx2::detect().map(simd::Kernel::Avx2),
            Path::Avx512 => simd::Avx512::detect().map(simd::Kernel::Avx512),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group's classes in the pattern, at its phase, are its columns' classes, for groups
    /// from any first group, across rows, for periods of GGUF blocks and others.
    #[test]
    fn column_patterns_give_each_group_its_columns_classes() {
        for period in [1usize, 2, 20, 34, 210, 383] {
            let col_tables: Vec<u8> = (0..period).map(|c| (c * 7 % 5) as u8).collect();
            for (width, first) in [(128, 0), (256, 7), (5760, 999), (1280, 383)] {
                let map = TableMap::Cols { col_tables: &col_tables, first, width };
                let pattern = ColumnPattern::of(map).expect("rows of whole groups");
                for from in [0usize, 1, 44, 45, 100] {
                    let mut phases = [0u32; 64];
                    pattern.fill_phases(from, &mut phases);
                    for (k, &phase) in phases.iter().enumerate() {
                        let got = &pattern.classes()[phase as usize..][..GROUP];
                        let base = (from + k) * GROUP;
                        let want: Vec<u8> =
                            (0..GROUP).map(|t| map.table_of(base + t) as u8).collect();
                        assert_eq!(
                            got,
                            &want[..],
                            "period {period}, width {width}, group {}",
                            from + k
                        );
                    }
                }
            }
        }
        // Not whole groups a row, or a period too long: no pattern.
        let classes = [0u8; 400];
        assert!(
            ColumnPattern::of(TableMap::Cols { col_tables: &classes[..3], first: 0, width: 100 })
                .is_none()
        );
        assert!(
            ColumnPattern::of(TableMap::Cols { col_tables: &classes, first: 0, width: 128 })
                .is_none()
        );
        assert!(ColumnPattern::of(TableMap::Single).is_none());
    }

    /// `fill_half_tables` (one pass, with fast paths by row width) gives what `half_tables`
    /// gives group by group, and stops at the first group whose halves do not share a table.
    #[test]
    fn fill_half_tables_agrees_with_half_tables() {
        let mut x = 0x2545_f491_u32;
        for width in [1usize, 3, 64, 100, 128, 200, 256, 384, 1000] {
            for classes in [1u32, 2, 5] {
                let rows = 4096 / width + 3;
                // Runs of equal tables, so that groups of short rows sometimes share one.
                let row_tables: Vec<u8> = (0..rows)
                    .map(|r| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        if r % 8 < 5 { 0 } else { (x % classes) as u8 }
                    })
                    .collect();
                let map = TableMap::Rows { row_tables: &row_tables, width };
                let groups = rows * width / GROUP;
                for start in [0, 1, 3, groups / 2] {
                    let n = groups.saturating_sub(start).min(40);
                    let mut out = vec![[9u8; 2]; n];
                    let filled = map.fill_half_tables(start * GROUP, &mut out);
                    let expected: Vec<[u8; 2]> =
                        (start..start + n).map_while(|g| map.half_tables(g * GROUP)).collect();
                    assert_eq!(&out[..filled], &expected[..], "width {width}, from group {start}");
                }
            }
        }
    }
}
