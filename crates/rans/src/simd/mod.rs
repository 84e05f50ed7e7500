//! SIMD kernels over the 32-lane layout: AVX2 (8 lanes a register) and AVX-512 (16 lanes).
//!
//! This is the crate's only module with `unsafe` code (intrinsics and `#[target_feature]`
//! functions); every `unsafe` block carries a `// SAFETY:` note. A kernel is reachable only
//! through a token ([`Avx2`], [`Avx512`]) that can be built only after run-time detection of its
//! CPU features, which is what makes the safe wrappers of [`Kernel`] sound.
//!
//! The kernels do the hot part only: runs of full groups of 128 symbols coded with one table a
//! half group (or, for the decoder, with a table a symbol by column class, in rows of whole
//! groups), and single mixed groups. The drivers in `fast_decode.rs` and `encode.rs` (safe
//! code) split a unit into such runs and do tail groups with scalar code, so the validation
//! logic lives in one place.
//!
//! On other architectures the tokens are never built and every path is the scalar one.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_variables))]

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use crate::{DecodeTable, EncodeTable, GROUP, LANES};

/// A run of full groups of one unit for a decoder kernel, each group coded with one table.
pub(crate) struct Run<'a, 'b> {
    pub(crate) states: &'a mut [u32; LANES],
    /// The unit's stream of little-endian u16 words (or a zero-padded copy of its end).
    pub(crate) words: &'a [u8],
    /// The next word of `words`.
    pub(crate) pos: &'a mut usize,
    /// The unit's tables, all of one precision.
    pub(crate) tables: &'a [DecodeTable],
    /// The tables of each group of the run, indices into `tables`: one for the symbols of
    /// lanes 0..16 (the group's first half) and one for lanes 16..32 (for a run of `lanes`,
    /// unused but as long as the run).
    pub(crate) classes: &'a [[u8; 2]],
    /// A run whose symbols take their tables one by one (column classes): `None` for the
    /// runs of [`Kernel::decode_run`] and [`Kernel::decode_runs`], set for those of
    /// [`Kernel::decode_lane_runs`].
    pub(crate) lanes: Option<LaneClasses<'a>>,
    /// Where the groups go.
    pub(crate) out: GroupsOut<'a, 'b>,
}

impl Run<'_, '_> {
    /// The entries the two halves of group `g` gather from: the table of each half, or with
    /// `by_lane` the run's first table for both (each lane then offset to its own table).
    #[inline(always)]
    pub(crate) fn half_entries(&self, g: usize, by_lane: bool) -> [*const u32; 2] {
        if by_lane {
            [self.tables[0].entries.as_ptr(); 2]
        } else {
            self.classes[g].map(|class| self.tables[usize::from(class)].entries.as_ptr())
        }
    }
}

/// The tables of a run's symbols where they change from symbol to symbol (column classes in
/// tiles whose rows are whole groups): group `k` of the run takes the `GROUP` classes
/// `pattern[phases[k]..]`, symbol `t` of the group with table `tables[pattern[phases[k] + t]]`.
pub(crate) struct LaneClasses<'a> {
    pub(crate) pattern: &'a [u8],
    /// One a group of the run.
    pub(crate) phases: &'a [u32],
}

/// Where a run's groups go, one after another (safe code: each group is a bounds-checked
/// slice): along one flat buffer, or along rows whose lengths are multiples of `GROUP`, every
/// byte XORed with `bias`.
#[derive(Debug)]
pub(crate) enum GroupsOut<'a, 'b> {
    Flat { out: &'a mut [u8], at: usize },
    Rows { rows: &'a mut [&'b mut [u8]], row: usize, col: usize, bias: u8 },
}

impl GroupsOut<'_, '_> {
    /// The byte every stored byte is XORed with.
    pub(crate) fn bias(&self) -> u8 {
        match self {
            GroupsOut::Flat { .. } => 0,
            GroupsOut::Rows { bias, .. } => *bias,
        }
    }

    /// The next group's bytes.
    #[inline(always)]
    pub(crate) fn next_group(&mut self) -> &mut [u8; GROUP] {
        let group = match self {
            GroupsOut::Flat { out, at } => {
                *at += GROUP;
                &mut out[*at - GROUP..*at]
            }
            GroupsOut::Rows { rows, row, col, .. } => {
                let (r, c) = (*row, *col);
                *col += GROUP;
                if *col >= rows[r].len() {
                    (*row, *col) = (r + 1, 0);
                }
                &mut rows[r][c..c + GROUP]
            }
        };
        group.try_into().expect("GROUP bytes")
    }
}

/// Where each table's entries lie from the first table's, in entries (`u32`s), if every such
/// offset plus a slot fits an `i32` (the index of a 32-bit gather).
pub(crate) fn table_offsets(tables: &[DecodeTable]) -> Option<[i32; 32]> {
    let first = tables.first()?.entries.as_ptr() as isize;
    let mut offsets = [0i32; 32];
    for (offset, table) in offsets.iter_mut().zip(tables) {
        let bytes = table.entries.as_ptr() as isize - first;
        let entries = i32::try_from(bytes / 4).ok()?;
        // Every entry of the table is a whole number of entries away (both are u32-aligned),
        // and its slots' indices fit as well.
        entries.checked_add(crate::decode::SLOTS as i32)?;
        entries.checked_sub(crate::decode::SLOTS as i32)?;
        *offset = entries;
    }
    Some(offsets)
}

/// The distance in bytes of each of `tables`' SIMD constants from the first table's (the same
/// for each of their arrays, which lie at one place in every table), for the AVX2 encoder's
/// lane runs; `None` where a distance, or an entry's past it, does not fit an i32.
#[cfg(target_arch = "x86_64")]
fn encode_table_offsets(tables: &[crate::EncodeTable]) -> Option<[i32; 8]> {
    let first = std::ptr::from_ref(&tables.first()?.simd) as isize;
    let mut offsets = [0i32; 8];
    for (offset, table) in offsets.iter_mut().zip(tables) {
        let bytes = i32::try_from(std::ptr::from_ref(&table.simd) as isize - first).ok()?;
        // Entry 255 of the table's last array, 4 bytes each, is still within reach.
        bytes.checked_add(4 * 256)?;
        *offset = bytes;
    }
    Some(offsets)
}

/// Words a decoder kernel may touch from the first word of a group: a group takes at most
/// `GROUP` words and a register's load reads at most 16 past the words taken so far.
pub(crate) const WINDOW: usize = GROUP + 16;

/// Words an encoder kernel may write below the lowest word it emits (AVX2 stores 8 words at a
/// time, the valid ones at the top).
pub(crate) const ENCODE_HEADROOM: usize = 16;

/// Groups a lone unit's run must have for the AVX-512 decoder to build its tables'
/// renormalisation thresholds (4,096 entries at precision 12, about what 32 groups take).
const THRESHOLD_RUN: usize = 32;

/// Proof that the CPU runs AVX2 (and POPCNT, BMI2): built only by [`Avx2::detect`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2(());

impl Avx2 {
    pub(crate) fn detect() -> Option<Avx2> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("popcnt")
            && std::arch::is_x86_feature_detected!("bmi2")
        {
            return Some(Avx2(()));
        }
        None
    }
}

/// Proof that the CPU runs AVX-512 F, BW and VL (and AVX2, POPCNT, BMI2): built only by
/// [`Avx512::detect`]. `encoder` holds when it also runs VBMI2 and IFMA, which the AVX-512
/// encoder needs (Ice Lake and later, Zen 4); without them the AVX2 encoder runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512 {
    encoder: bool,
}

impl Avx512 {
    pub(crate) fn detect() -> Option<Avx512> {
        #[cfg(target_arch = "x86_64")]
        if Avx2::detect().is_some()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            let encoder = std::arch::is_x86_feature_detected!("avx512vbmi2")
                && std::arch::is_x86_feature_detected!("avx512ifma");
            return Some(Avx512 { encoder });
        }
        None
    }
}

/// A detected SIMD kernel set.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kernel {
    Avx2(Avx2),
    Avx512(Avx512),
}

impl Kernel {
    /// Decodes the groups of `run.out`, group `k` with table `run.classes[k]`, while the
    /// stream holds a whole [`WINDOW`] of words from the group's first: `run.words` is the
    /// unit's stream as little-endian u16 words and `run.pos` the next word. Returns the groups
    /// decoded; fewer than `run.classes.len()` only when the window ran out.
    pub(crate) fn decode_run(self, run: Run) -> usize {
        assert!(run.lanes.is_none(), "a run of one table a half");
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves the CPU runs the kernel's target features.
            Kernel::Avx2(_) => unsafe { avx2::decode_runs::<1, false>([run], [[0; 8]]) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Avx512(_) => unsafe {
                // Thresholds add 2 bytes a slot to the 4 of the entries: worth it while all the
                // unit's tables stay in L1 (one table of precision 12, two of 11, ...), and
                // once built (building them is a pass over the table's slots, which a run of a
                // few groups, a unit's last ones, does not repay).
                let small = run.tables.len() << run.tables[0].prob_bits() <= 1 << 12;
                let built = run.tables.iter().all(DecodeTable::has_renorm);
                if small && (built || run.classes.len() >= THRESHOLD_RUN) {
                    avx512::decode_run::<true>(run)
                } else {
                    avx512::decode_run::<false>(run)
                }
            },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("no SIMD kernels on this architecture"),
        }
    }

    /// One full group of one unit whose symbols come from several tables (symbol `t` of the
    /// group from `tables[classes[t]]`), as the reference decodes it; `window` is the stream
    /// from the group's first word. Returns the words taken, or `None` where the window is
    /// shorter than [`WINDOW`] words or there are more tables than this kernel takes (32 on
    /// AVX-512; 8 on AVX2, where it is a lane run of one group) or, on AVX2, tables too far
    /// apart for 32-bit offsets: the caller then takes the scalar steps.
    pub(crate) fn decode_mixed_group(
        self,
        states: &mut [u32; LANES],
        window: &[u8],
        tables: &[DecodeTable],
        classes: &[u8; GROUP],
        out: &mut [u8; GROUP],
    ) -> Option<usize> {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves the CPU features; the window, classes and number of
            // tables are checked by the guard.
            Kernel::Avx512(_)
                if window.len() >= 2 * WINDOW
                    && tables.len() <= 32
                    && classes.iter().all(|&c| usize::from(c) < tables.len()) =>
            unsafe { Some(avx512::decode_mixed_group(states, window, tables, classes, out)) },
            Kernel::Avx2(_) if window.len() >= 2 * WINDOW => {
                let mut pos = 0;
                let run = Run {
                    states,
                    words: window,
                    pos: &mut pos,
                    tables,
                    classes: &[[0, 0]],
                    lanes: Some(LaneClasses { pattern: classes, phases: &[0] }),
                    out: GroupsOut::Flat { out, at: 0 },
                };
                let done = self.decode_lane_runs([run])?;
                debug_assert_eq!(done, 1, "the window was checked");
                (done == 1).then_some(pos)
            }
            _ => None,
        }
    }

    /// Whether three units in lockstep can pay, where their steps wait long: AVX-512 (32
    /// registers) only; AVX2's 16 registers hold two units' states and bytes, not three.
    pub(crate) fn decodes_threes(self) -> bool {
        matches!(self, Kernel::Avx512(_))
    }

    /// [`Kernel::decode_run`] on `N` units at once, in lockstep: as many groups of each as all
    /// runs hold and all streams hold windows for. Returns the groups decoded of each.
    pub(crate) fn decode_runs<'b, const N: usize>(self, runs: [Run<'_, 'b>; N]) -> usize {
        assert!(runs.iter().all(|r| r.lanes.is_none()), "runs of one table a half");
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves the CPU runs the kernel's target features.
            Kernel::Avx512(_) => unsafe { avx512::decode_runs::<N, false>(runs, [[0; 32]; N]) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Avx2(_) => unsafe { avx2::decode_runs::<N, false>(runs, [[0; 8]; N]) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("no SIMD kernels on this architecture"),
        }
    }

    /// Whether [`Kernel::decode_lane_runs`] takes units of `tables` tables (AVX-512: up to 32,
    /// in lockstep; AVX2: up to 8).
    pub(crate) fn decodes_lanes(self, tables: usize) -> bool {
        match self {
            Kernel::Avx512(_) => tables <= 32,
            Kernel::Avx2(_) => tables <= 8,
        }
    }

    /// [`Kernel::decode_runs`] on runs whose symbols take their tables one by one
    /// ([`Run::lanes`], set on every run; `N` may be 1). Returns `None`
    /// where this kernel does not take the runs' tables ([`Kernel::decodes_lanes`]), or they
    /// lie too far apart in memory for 32-bit offsets (the caller then decodes group by
    /// group), else the groups decoded of each.
    ///
    /// Panics where a run's phases are not one a group, or a phase leaves less than a group
    /// of its pattern.
    pub(crate) fn decode_lane_runs<'b, const N: usize>(
        self,
        runs: [Run<'_, 'b>; N],
    ) -> Option<usize> {
        let mut offsets = [[0i32; 32]; N];
        for (run, offsets) in runs.iter().zip(&mut offsets) {
            let lanes = run.lanes.as_ref().expect("a run of lane tables");
            assert_eq!(lanes.phases.len(), run.classes.len(), "a phase a group");
            assert!(
                lanes.phases.iter().all(|&p| p as usize + GROUP <= lanes.pattern.len()),
                "a group of classes at every phase"
            );
            // (The largest class, not the first too large: a loop without exits vectorises.)
            let largest = lanes.pattern.iter().copied().max().unwrap_or(0);
            if !self.decodes_lanes(run.tables.len()) || usize::from(largest) >= run.tables.len() {
                return None;
            }
            *offsets = table_offsets(run.tables)?;
        }
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the token proves the CPU runs the kernel's target features; every class
            // names a table, whose entries lie at its offset from the first table's (checked
            // above).
            Kernel::Avx512(_) => Some(unsafe { avx512::decode_runs::<N, true>(runs, offsets) }),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(_) => {
                let offsets =
                    offsets.map(|o| -> [i32; 8] { o[..8].try_into().expect("8 offsets") });
                // SAFETY: as above; at most 8 tables (`decodes_lanes`), whose offsets are the
                // first 8.
                Some(unsafe { avx2::decode_runs::<N, true>(runs, offsets) })
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => None,
        }
    }

    /// Encodes the groups of `run.groups`, the symbols of lanes 0..16 of group `k` with
    /// table `classes[k][0]` and those of lanes 16..32 with `classes[k][1]` (all of precision
    /// `prob_bits`), last group first, emitting words downward: the stream's next word goes to
    /// `buf[*cur - 1]` (u16 little-endian at byte `2 * (*cur - 1)`), so that `buf[*cur..]` is
    /// always the stream so far. Returns whether every symbol had a frequency in its table
    /// (else the run's words and states are not a valid coding).
    ///
    /// Panics if `buf` has no room below `*cur` for one word per symbol plus the headroom.
    #[must_use]
    pub(crate) fn encode_run(self, run: EncodeRun<'_>, prob_bits: u32) -> bool {
        let prob_bits = prob_bits.clamp(8, 12);
        let groups = run.groups.len().min(run.classes.len());
        assert!(
            *run.cur <= run.buf.len() / 2 && *run.cur >= groups * GROUP + ENCODE_HEADROOM,
            "encoder word buffer too small"
        );
        let run =
            EncodeRun { groups: &run.groups[..groups], classes: &run.classes[..groups], ..run };
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `encoder` is set only where VBMI2 and IFMA were detected; the buffer has
            // room (asserted above).
            Kernel::Avx512(Avx512 { encoder: true }) => unsafe {
                avx512::encode_run(run, prob_bits)
            },
            #[cfg(target_arch = "x86_64")]
            _ => {
                let EncodeRun { states, groups, tables, classes, buf, cur } = run;
                // SAFETY: every token proves AVX2 (an `Avx512` one is built only where AVX2
                // was detected too); the buffer has room (asserted above).
                unsafe { avx2::encode_run(states, groups, tables, classes, prob_bits, buf, cur) }
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("no SIMD kernels on this architecture"),
        }
    }
}

impl Kernel {
    /// Whether [`Kernel::encode_lane_run`] and [`Kernel::encode_mixed_group`] take symbols of
    /// `tables` tables here: up to 16 with the AVX-512 encoder, 8 with AVX2's.
    pub(crate) fn encodes_lanes(self, tables: usize) -> bool {
        match self {
            Kernel::Avx512(Avx512 { encoder: true }) => tables <= 16,
            _ => tables <= 8,
        }
    }

    /// [`Kernel::encode_run`] on groups whose symbols take their tables one by one (see
    /// [`EncodeLaneRun`]), all of precision `prob_bits`. Returns `None` where there are more
    /// tables than this kernel takes ([`Kernel::encodes_lanes`]), some other precision, or
    /// (AVX2) tables too far apart in memory for 32-bit offsets (the caller then codes group by
    /// group), else whether every symbol had a frequency.
    ///
    /// Panics if `buf` has no room below `*cur` for a word a symbol plus the headroom, or
    /// where the phases are not one a group or a phase leaves less than a group of classes.
    pub(crate) fn encode_lane_run(self, run: EncodeLaneRun<'_>, prob_bits: u32) -> Option<bool> {
        let EncodeLaneRun { states, symbols, tables, pattern, phases, buf, cur } = run;
        assert!(
            symbols.len() == GROUP * phases.len()
                && phases.iter().all(|&p| p as usize + GROUP <= pattern.len()),
            "a phase a group, and a group of classes at each"
        );
        assert!(
            *cur <= buf.len() / 2 && *cur >= symbols.len() + ENCODE_HEADROOM,
            "encoder word buffer too small"
        );
        // (The largest class, not the first too large: a loop without exits vectorises.)
        let largest = pattern.iter().copied().max().unwrap_or(0);
        if !self.encodes_lanes(tables.len())
            || usize::from(largest) >= tables.len()
            || tables.iter().any(|t| t.prob_bits != prob_bits)
        {
            return None;
        }
        let prob_bits = prob_bits.clamp(8, 12);
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `encoder` is set only where VBMI2 and IFMA were detected; the room,
            // phases, tables and classes are checked above.
            Kernel::Avx512(Avx512 { encoder: true }) => unsafe {
                Some(avx512::encode_lane_run(
                    states, symbols, tables, pattern, phases, prob_bits, buf, cur,
                ))
            },
            #[cfg(target_arch = "x86_64")]
            _ => {
                let offsets = encode_table_offsets(tables)?;
                // SAFETY: every token proves AVX2; at most 8 tables (`encodes_lanes`), each at
                // its offset; the room, phases and classes are checked above.
                Some(unsafe {
                    avx2::encode_lane_run(
                        states, symbols, tables, pattern, phases, offsets, prob_bits, buf, cur,
                    )
                })
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => None,
        }
    }

    /// One full group whose symbols take their tables one by one (`classes[t]` for symbol `t`,
    /// all of precision `prob_bits`), coded as [`Kernel::encode_run`] codes a group: its words
    /// below `*cur` in `buf`. Returns `None` where there are more tables than this kernel takes
    /// (16 on AVX-512, 8 on AVX2, where it is a lane run of one group) or, on AVX2, of several
    /// precisions (the caller then takes the scalar steps), else whether every symbol had a
    /// frequency.
    ///
    /// Panics if `buf` has no room below `*cur` for a word a symbol plus the headroom.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encode_mixed_group(
        self,
        states: &mut [u32; LANES],
        group: &[u8; GROUP],
        tables: &[EncodeTable],
        classes: &[u8; GROUP],
        prob_bits: u32,
        buf: &mut [std::mem::MaybeUninit<u8>],
        cur: &mut usize,
    ) -> Option<bool> {
        assert!(*cur <= buf.len() / 2 && *cur >= GROUP + ENCODE_HEADROOM, "no room for a group");
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `encoder` is set only where VBMI2 and IFMA were detected; the room is
            // asserted above, the tables and classes checked by the guard.
            Kernel::Avx512(Avx512 { encoder: true })
                if tables.len() <= 16 && classes.iter().all(|&c| usize::from(c) < tables.len()) =>
            unsafe {
                Some(avx512::encode_mixed_group(
                    states,
                    group,
                    tables,
                    classes,
                    prob_bits.clamp(8, 12),
                    buf,
                    cur,
                ))
            },
            // AVX2: a lane run of one group, its classes the pattern (which checks the tables).
            _ => self.encode_lane_run(
                EncodeLaneRun {
                    states,
                    symbols: group,
                    tables,
                    pattern: classes,
                    phases: &[0],
                    buf,
                    cur,
                },
                prob_bits,
            ),
        }
    }
}

/// A run of full groups of one unit for [`Kernel::encode_lane_run`]: group `k` of `symbols`
/// with its classes at `pattern[phases[k]..]` (symbol `t` of the group with table
/// `tables[pattern[phases[k] + t]]`).
pub(crate) struct EncodeLaneRun<'a> {
    pub(crate) states: &'a mut [u32; LANES],
    pub(crate) symbols: &'a [u8],
    pub(crate) tables: &'a [EncodeTable],
    pub(crate) pattern: &'a [u8],
    pub(crate) phases: &'a [u32],
    pub(crate) buf: &'a mut [std::mem::MaybeUninit<u8>],
    pub(crate) cur: &'a mut usize,
}

/// A run of full groups of one unit for [`Kernel::encode_run`] (each where it lies: a tile's
/// rows are read in place).
pub(crate) struct EncodeRun<'a> {
    pub(crate) states: &'a mut [u32; LANES],
    pub(crate) groups: &'a [&'a [u8; GROUP]],
    pub(crate) tables: &'a [EncodeTable],
    pub(crate) classes: &'a [[u8; 2]],
    pub(crate) buf: &'a mut [std::mem::MaybeUninit<u8>],
    pub(crate) cur: &'a mut usize,
}

/// Up to 16 sums at once: `sums[j] = Σ_i counts[i] · costs[i][j]` for `j < N`. This is how an
/// encoder prices one histogram under several frequency tables (costs in bits, stored symbol
/// by symbol).
///
/// The same code is compiled for AVX-512, AVX2 and the baseline, and the detected path's is
/// used: the terms are added in a fixed order with plain multiplies and adds (no fused
/// multiply-add), so every path gives bit-identical sums.
pub fn weighted_cost_sums<const N: usize>(costs: &[[f32; 16]], counts: &[u32]) -> [f32; N] {
    match crate::Path::detected() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the detected path's CPU runs AVX-512 F.
        crate::Path::Avx512 => unsafe { sums_avx512::<N>(costs, counts) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the detected path's CPU runs AVX2.
        crate::Path::Avx2 => unsafe { sums_avx2::<N>(costs, counts) },
        _ => sums::<N>(costs, counts),
    }
}

/// Whether the CPU runs AVX-512 F, BW and VBMI, the byte permutes of `SeenBytes::add` and
/// `byte_cost_sums`, and the path taken is AVX-512 (`WCODEC_SIMD` caps these kernels as it
/// does the coder's); detected once (they are called a row at a time).
fn byte_permutes() -> bool {
    static DETECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if crate::Path::detected() == crate::Path::Avx512
            && std::arch::is_x86_feature_detected!("avx512vbmi")
        {
            return true;
        }
        false
    })
}

/// Whether [`byte_cost_sums`] may take a [`CostWindow`]: the AVX-512 VBMI kernels are taken
/// (`byte_permutes`) and the CPU runs VNNI.
fn cost_windows() -> bool {
    static DETECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if byte_permutes() && std::arch::is_x86_feature_detected!("avx512vnni") {
            return true;
        }
        false
    })
}

/// Asks the CPU to bring `bytes` into its first-level cache, ahead of a pass that will read
/// them: a hint, with no effect on any result (nothing on CPUs without the instruction). A
/// pass that is first to read a tensor otherwise waits on memory at every line; the encoder's
/// row classification prefetches rows a few ahead.
#[inline]
pub fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: SSE is part of x86-64; a prefetch reads nothing into the program.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Bytes ahead of its reads that the decoder asks for in a unit's stream: a stream is read once,
/// from memory where its file was not read before, and the CPU's own prefetchers stop at each
/// 4 KiB page (SmolLM2's GGUF file, whose units are small and many, decoded 3-7% faster than
/// with them alone; 1 KiB ahead did nothing).
pub(crate) const STREAM_AHEAD: usize = 4096;

/// Asks for the two lines `STREAM_AHEAD` bytes on from `w`, a group's words in a unit's stream
/// (a group reads at most two lines' worth at 8 bits a symbol or less). A hint: an address past
/// the stream's end reads nothing into the program.
#[inline(always)]
pub(crate) fn prefetch_stream(w: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86-64; a prefetch dereferences nothing.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(STREAM_AHEAD).cast());
        _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(STREAM_AHEAD + 64).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = w;
}

/// Sets `present[s]` for every byte value `s` in `bytes` (others are left as they are): what an
/// encoder needs to know of the bytes it does not count, as every symbol a unit codes must
/// have a frequency. With AVX-512 VBMI a 64-byte step is a few instructions (byte permutes
/// over a table of the values not seen yet), a fraction of what counting them costs.
pub fn mark_present(bytes: &[u8], present: &mut [bool; 256]) {
    let mut seen = SeenBytes::default();
    for (u, &p) in seen.unseen.iter_mut().zip(present.iter()) {
        *u = if p { 0 } else { 0xff };
    }
    seen.add(bytes);
    *present = std::array::from_fn(|s| seen.contains(s as u8));
}

/// The set of byte values met in the slices added to it, kept as [`mark_present`]'s kernel
/// wants it (a table of the values not seen yet), so that many short slices (rows of a plane,
/// each in the set of its class) cost a few instructions each.
#[derive(Clone, Debug)]
pub struct SeenBytes {
    /// 0xff for a value not seen yet, 0 for one seen.
    unseen: [u8; 256],
}

impl Default for SeenBytes {
    fn default() -> Self {
        SeenBytes { unseen: [0xff; 256] }
    }
}

impl SeenBytes {
    /// Adds the values of `bytes`.
    pub fn add(&mut self, bytes: &[u8]) {
        #[cfg(target_arch = "x86_64")]
        if byte_permutes() {
            // SAFETY: AVX-512 F, BW and VBMI were detected on this CPU.
            return unsafe { avx512::mark_seen(bytes, &mut self.unseen) };
        }
        #[cfg(target_arch = "x86_64")]
        if crate::Path::detected() >= crate::Path::Avx2 {
            // SAFETY: the detected path's CPU runs AVX2.
            return unsafe { avx2::mark_seen(bytes, &mut self.unseen) };
        }
        for &b in bytes {
            self.unseen[usize::from(b)] = 0;
        }
    }

    /// Whether `value` was met.
    pub fn contains(&self, value: u8) -> bool {
        self.unseen[usize::from(value)] == 0
    }

    /// Adds the values `other` met.
    pub fn union(&mut self, other: &SeenBytes) {
        for (u, &o) in self.unseen.iter_mut().zip(&other.unseen) {
            *u &= o;
        }
    }
}

/// Byte costs under several tables (costs quantised to bytes: `costs[j][b]` is what byte `b`
/// costs under table `j`), laid out once for [`byte_cost_sums`], which prices many rows with
/// them: by table for the AVX-512 VBMI kernel (a table's 256 costs are four registers), and by
/// byte for the others (a byte's costs under up to 16 tables side by side, 16-bit each, so
/// that a byte is one load and one vector add whatever the number of tables).
#[derive(Clone, Debug)]
pub struct ByteCosts {
    by_table: Vec<[u8; 256]>,
    /// `by_byte[b][j] = costs[j][b]`; empty for more than 16 tables.
    by_byte: Vec<[u16; 16]>,
    /// The window of 128 values the tables expect nearly all bytes in, if there is one.
    window: Option<CostWindow>,
}

/// 128 byte values, `start..start + 128` (wrapping), and what they cost under each table: on
/// AVX-512 VBMI and VNNI a table's costs over them are two registers, so that every table
/// stays in registers and a 64-byte step is one byte permute a table (`avx512::
/// windowed_cost_sums`). Rows of weights quantised to integers use a narrow band of values
/// around zero (on MiniLM int8 per-tensor, 99.86% of the bytes lie in -64..64).
#[derive(Clone, Debug)]
struct CostWindow {
    start: u8,
    /// `costs[j][i]`: the cost of byte `start + i` under table `j`.
    costs: Vec<[u8; 128]>,
}

impl CostWindow {
    /// The 128 values that hold the most of `expected` (counts of the byte values to be
    /// priced), if the share outside is at most 1/256: then at most about a fifth of the 64-byte
    /// steps of bytes so drawn meet a value outside and take the slower lookup.
    fn choose(costs: &[[u8; 256]], expected: &[u64; 256]) -> Option<CostWindow> {
        let total: u64 = expected.iter().sum();
        let mut inside: u64 = expected[..128].iter().sum();
        let (mut best, mut start) = (inside, 0);
        for s in 1..256 {
            inside = inside + expected[(s + 127) % 256] - expected[s - 1];
            if inside > best {
                (best, start) = (inside, s);
            }
        }
        if costs.is_empty() || total == 0 || (total - best) * 256 > total {
            return None;
        }
        let costs = costs.iter().map(|c| std::array::from_fn(|i| c[(start + i) % 256])).collect();
        Some(CostWindow { start: start as u8, costs })
    }
}

impl ByteCosts {
    pub fn new(costs: Vec<[u8; 256]>) -> ByteCosts {
        let by_byte = if costs.len() <= 16 {
            (0..256)
                .map(|b| std::array::from_fn(|j| costs.get(j).map_or(0, |c| u16::from(c[b]))))
                .collect()
        } else {
            Vec::new()
        };
        ByteCosts { by_table: costs, by_byte, window: None }
    }

    /// These costs for bytes expected to be distributed as `expected` (counts of each value,
    /// e.g. from a sample): where nearly all fall in 128 values, the AVX-512 kernel keeps
    /// every table's costs over those in registers (a `CostWindow`). The sums are the same.
    pub fn expecting(mut self, expected: &[u64; 256]) -> ByteCosts {
        if cost_windows() {
            self.window = CostWindow::choose(&self.by_table, expected);
        }
        self
    }

    /// The number of tables.
    pub fn len(&self) -> usize {
        self.by_table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_table.is_empty()
    }
}

/// Sums of byte costs under several tables: `sums[j]` becomes the sum over the bytes `b` of
/// `bytes` of what `b` costs under table `j`, for every table of `costs` (`sums` is as long).
/// This is how an encoder prices a row of bytes under several frequency tables without
/// counting its histogram first: with AVX-512 VBMI a 64-byte step is two byte permutes, a blend
/// and a sum of absolute differences a table, or, with VNNI and costs given a window
/// ([`ByteCosts::expecting`]), one permute and a multiply-add a table for a step inside it;
/// elsewhere a byte adds its costs under every table at once (16-bit lanes, widened every 256
/// bytes), against a histogram's dependent increments.
/// Integer sums: every path gives the same ones (`WCODEC_FORCE_SCALAR` and `WCODEC_SIMD` pick
/// the path as for the coder).
pub fn byte_cost_sums(bytes: &[u8], costs: &ByteCosts, sums: &mut [u64]) {
    assert_eq!(costs.len(), sums.len(), "one sum a table");
    match crate::Path::detected() {
        #[cfg(target_arch = "x86_64")]
        crate::Path::Avx512 if costs.window.is_some() => {
            let window = costs.window.as_ref().expect("a window");
            windowed_cost_sums(bytes, window, &costs.by_table, sums);
        }
        #[cfg(target_arch = "x86_64")]
        crate::Path::Avx512 if byte_permutes() => {
            // SAFETY: AVX-512 F, BW and VBMI were detected on this CPU.
            unsafe { avx512::byte_cost_sums(bytes, &costs.by_table, sums) }
        }
        #[cfg(target_arch = "x86_64")]
        crate::Path::Avx512 | crate::Path::Avx2 if !costs.by_byte.is_empty() => {
            // SAFETY: the detected path's CPU runs AVX2.
            unsafe { sums_by_byte_avx2(bytes, costs, sums) }
        }
        _ => sums_by_byte(bytes, costs, sums),
    }
}

/// Calls a window kernel `$kernel::<N, SETS>($args)` for `$n` tables (1 to 8; more call it for
/// 8): `N` the tables held in registers, `SETS` the accumulators a table, two for four tables or
/// fewer (one set would wait on the multiply-add's latency).
#[cfg(target_arch = "x86_64")]
macro_rules! by_window_tables {
    ($n:expr, $($kernel:ident)::+($($arg:expr),* $(,)?)) => {
        match $n {
            1 => $($kernel)::+::<1, 2>($($arg),*),
            2 => $($kernel)::+::<2, 2>($($arg),*),
            3 => $($kernel)::+::<3, 2>($($arg),*),
            4 => $($kernel)::+::<4, 2>($($arg),*),
            5 => $($kernel)::+::<5, 1>($($arg),*),
            6 => $($kernel)::+::<6, 1>($($arg),*),
            7 => $($kernel)::+::<7, 1>($($arg),*),
            _ => $($kernel)::+::<8, 1>($($arg),*),
        }
    };
}

/// The cheapest of the tables of `costs` for each of `out.len()` rows of `bytes`, `stride`
/// bytes apart, each priced on its first `len` bytes: `out[i]` is the index of the least of
/// row `i`'s [`byte_cost_sums`] (the first on ties), on every path. For many rows priced under
/// the same tables: the AVX-512 window kernel keeps up to 8 tables in registers from row to
/// row, where a call a row loads them again. The row `ahead` rows on from each is prefetched
/// whole (`stride` bytes) where it lies in `bytes`, for a caller that reads the rows next
/// (`bytes` may go on past the rows priced).
///
/// Panics if the rows do not lie in `bytes`, `len > stride`, or there are no tables or more
/// than 256.
pub fn cheapest_tables(
    bytes: &[u8],
    stride: usize,
    len: usize,
    ahead: usize,
    costs: &ByteCosts,
    out: &mut [u8],
) {
    let rows = out.len();
    assert!(len <= stride, "a row's priced bytes within the row");
    assert!(
        rows == 0
            || (rows - 1)
                .checked_mul(stride)
                .and_then(|s| s.checked_add(len))
                .is_some_and(|end| end <= bytes.len()),
        "the rows lie in the bytes"
    );
    assert!((1..=256).contains(&costs.len()), "1 to 256 tables");
    #[cfg(target_arch = "x86_64")]
    if let (crate::Path::Avx512, Some(window)) = (crate::Path::detected(), &costs.window)
        && costs.len() <= 8
        && len <= avx512::WINDOW_BLOCK
    {
        let (start, w, full) = (window.start, &window.costs[..], &costs.by_table[..]);
        // SAFETY: AVX-512 F, BW, VBMI and VNNI were detected (`cost_windows`, the condition of
        // a window).
        unsafe {
            by_window_tables!(
                costs.len(),
                avx512::windowed_cheapest(bytes, stride, len, ahead, start, w, full, out)
            )
        }
        return;
    }
    let mut sums = vec![0u64; costs.len()];
    for (r, cheapest) in out.iter_mut().enumerate() {
        if let Some(next) = bytes.get((r + ahead) * stride..) {
            prefetch(&next[..stride.min(next.len())]);
        }
        byte_cost_sums(&bytes[r * stride..][..len], costs, &mut sums);
        let mut best = 0;
        for (j, &sum) in sums.iter().enumerate() {
            if sum < sums[best] {
                best = j;
            }
        }
        *cheapest = best as u8;
    }
}

/// [`byte_cost_sums`] through `window` (a `ByteCosts` has one only where [`cost_windows`]),
/// eight tables at a time.
#[cfg(target_arch = "x86_64")]
fn windowed_cost_sums(bytes: &[u8], window: &CostWindow, full: &[[u8; 256]], sums: &mut [u64]) {
    let groups = window.costs.chunks(8).zip(full.chunks(8)).zip(sums.chunks_mut(8));
    for ((costs, full), sums) in groups {
        let start = window.start;
        // SAFETY: AVX-512 F, BW, VBMI and VNNI were detected (`cost_windows`).
        unsafe {
            by_window_tables!(
                costs.len(),
                avx512::windowed_cost_sums(bytes, start, costs, full, sums)
            )
        }
    }
}

/// [`byte_cost_sums`] by byte (up to 16 tables; by table for more).
#[inline(always)]
fn sums_by_byte(bytes: &[u8], costs: &ByteCosts, sums: &mut [u64]) {
    if costs.by_byte.is_empty() {
        return byte_cost_sums_by_table(bytes, &costs.by_table, sums);
    }
    let by_byte: &[[u16; 16]; 256] = costs.by_byte.as_slice().try_into().expect("256 rows");
    if costs.len() <= 8 {
        add_by_byte::<8>(bytes, by_byte, sums);
    } else {
        add_by_byte::<16>(bytes, by_byte, sums);
    }
}

/// [`sums_by_byte`] in AVX2 registers (the adds of a byte are one instruction for 16 tables).
///
/// # Safety
/// The CPU must run AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sums_by_byte_avx2(bytes: &[u8], costs: &ByteCosts, sums: &mut [u64]) {
    sums_by_byte(bytes, costs, sums);
}

/// The sums of the first `W` tables' costs (of [`ByteCosts::by_byte`]) into `sums` (its
/// length, at most `W`): two 16-bit accumulators, even and odd bytes, each taking at most 256
/// costs of at most 255 before they are widened.
#[inline(always)]
fn add_by_byte<const W: usize>(bytes: &[u8], by_byte: &[[u16; 16]; 256], sums: &mut [u64]) {
    let mut total = [0u64; W];
    for chunk in bytes.chunks(512) {
        let (mut even, mut odd) = ([0u16; W], [0u16; W]);
        let mut pairs = chunk.chunks_exact(2);
        for pair in &mut pairs {
            let (a, b) = (&by_byte[usize::from(pair[0])], &by_byte[usize::from(pair[1])]);
            for j in 0..W {
                even[j] += a[j];
                odd[j] += b[j];
            }
        }
        if let [last] = pairs.remainder() {
            let a = &by_byte[usize::from(*last)];
            for j in 0..W {
                even[j] += a[j];
            }
        }
        for j in 0..W {
            total[j] += u64::from(even[j]) + u64::from(odd[j]);
        }
    }
    sums.copy_from_slice(&total[..sums.len()]);
}

fn byte_cost_sums_by_table(bytes: &[u8], costs: &[[u8; 256]], sums: &mut [u64]) {
    for (table, sum) in costs.iter().zip(sums) {
        *sum = bytes.iter().map(|&b| u64::from(table[usize::from(b)])).sum();
    }
}

#[inline(always)]
fn sums<const N: usize>(costs: &[[f32; 16]], counts: &[u32]) -> [f32; N] {
    #[inline(always)]
    fn add<const N: usize>(sum: &mut [f32; N], costs: &[f32; 16], n: u32) {
        let costs: &[f32; N] = costs[..N].try_into().expect("N <= 16");
        let n = n as f32;
        for (s, &c) in sum.iter_mut().zip(costs) {
            *s += n * c;
        }
    }
    // Four partial sums (terms i = 0, 1, 2, 3 mod 4), added up at the end: a single sum would
    // be a chain of dependent adds, one add latency per term.
    let (mut a, mut b, mut c, mut d) = ([0f32; N], [0f32; N], [0f32; N], [0f32; N]);
    let n = costs.len().min(counts.len());
    let (costs, counts) = (&costs[..n], &counts[..n]);
    let mut quads = costs.chunks_exact(4).zip(counts.chunks_exact(4));
    for (k, n) in &mut quads {
        add(&mut a, &k[0], n[0]);
        add(&mut b, &k[1], n[1]);
        add(&mut c, &k[2], n[2]);
        add(&mut d, &k[3], n[3]);
    }
    let tail = n - n % 4;
    for (k, &n) in costs[tail..].iter().zip(&counts[tail..]) {
        add(&mut a, k, n);
    }
    std::array::from_fn(|j| (a[j] + b[j]) + (c[j] + d[j]))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
fn sums_avx512<const N: usize>(costs: &[[f32; 16]], counts: &[u32]) -> [f32; N] {
    sums::<N>(costs, counts)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sums_avx2<const N: usize>(costs: &[[f32; 16]], counts: &[u32]) -> [f32; N] {
    sums::<N>(costs, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector scan finds the values the scalar one does, rare ones included, and keeps
    /// what was marked before.
    #[test]
    fn mark_present_agrees_with_the_scalar_scan() {
        let mut x = 7u64;
        for len in [0usize, 1, 63, 64, 65, 1000, 100_000] {
            for rare in [0u64, 1, 5, 1000] {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Mostly a few values near 128, now and then any value.
                        if x % 1000 < rare { (x >> 20) as u8 } else { 126 + (x >> 40) as u8 % 5 }
                    })
                    .collect();
                let mut before = [false; 256];
                before[3] = true;
                before[127] = true;
                let mut expected = before;
                for &b in &bytes {
                    expected[usize::from(b)] = true;
                }
                let mut got = before;
                mark_present(&bytes, &mut got);
                assert_eq!(got, expected, "len {len}, rare {rare}");
                assert!(bytes.iter().all(|&b| got[usize::from(b)]));
                // Each vector scan the CPU runs, whatever path is detected.
                let unseen: [u8; 256] = std::array::from_fn(|v| if before[v] { 0 } else { 0xff });
                let expected_unseen: [u8; 256] =
                    std::array::from_fn(|v| if expected[v] { 0 } else { 0xff });
                #[cfg(target_arch = "x86_64")]
                if Avx2::detect().is_some() {
                    let mut got = unseen;
                    // SAFETY: AVX2 was detected.
                    unsafe { avx2::mark_seen(&bytes, &mut got) };
                    assert_eq!(got, expected_unseen, "AVX2: len {len}, rare {rare}");
                }
                #[cfg(target_arch = "x86_64")]
                if Avx512::detect().is_some() && std::arch::is_x86_feature_detected!("avx512vbmi") {
                    let mut got = unseen;
                    // SAFETY: AVX-512 F, BW and VBMI were detected.
                    unsafe { avx512::mark_seen(&bytes, &mut got) };
                    assert_eq!(got, expected_unseen, "AVX-512: len {len}, rare {rare}");
                }
            }
        }
    }

    /// A set fed slice by slice, and the union of two, hold the values a plain scan finds.
    #[test]
    fn seen_bytes_hold_the_values_of_their_slices() {
        let mut x = 0x5555_1234_u64;
        let slices: Vec<Vec<u8>> = (0..40)
            .map(|k| {
                (0..(k * 13) % 200)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if x.is_multiple_of(97) {
                            (x >> 32) as u8
                        } else {
                            100 + (x >> 40) as u8 % 20
                        }
                    })
                    .collect()
            })
            .collect();
        let (mut even, mut odd) = (SeenBytes::default(), SeenBytes::default());
        let mut expected = [false; 256];
        for (k, slice) in slices.iter().enumerate() {
            if k % 2 == 0 {
                even.add(slice)
            } else {
                odd.add(slice)
            }
            slice.iter().for_each(|&b| expected[usize::from(b)] = true);
        }
        even.union(&odd);
        for v in 0..=255u8 {
            assert_eq!(even.contains(v), expected[usize::from(v)], "value {v}");
        }
    }

    /// Every path's sums equal the plain ones, at lengths around whole 64-byte steps and past
    /// the by-byte sums' 512-byte chunks, for every number of tables up to 16 and past it,
    /// costs of 255 (the most a 16-bit lane takes 256 of) included.
    #[test]
    fn byte_cost_sums_agree_on_every_path() {
        let mut x = 0x9e37_79b9_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for tables in [1usize, 2, 3, 8, 9, 16, 17] {
            for ceiling in [false, true] {
                let costs: Vec<[u8; 256]> = (0..tables)
                    .map(|_| std::array::from_fn(|_| if ceiling { 255 } else { next() as u8 }))
                    .collect();
                let costs = ByteCosts::new(costs);
                for len in [0usize, 1, 63, 64, 65, 127, 384, 511, 512, 513, 1000, 1536, 5000] {
                    let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                    let expected: Vec<u64> = costs
                        .by_table
                        .iter()
                        .map(|t| bytes.iter().map(|&b| u64::from(t[usize::from(b)])).sum())
                        .collect();
                    let what = format!("{tables} tables, {len} bytes");
                    let mut got = vec![u64::MAX; tables];
                    byte_cost_sums(&bytes, &costs, &mut got);
                    assert_eq!(got, expected, "detected path: {what}");
                    let mut got = vec![u64::MAX; tables];
                    sums_by_byte(&bytes, &costs, &mut got);
                    assert_eq!(got, expected, "baseline: {what}");
                    #[cfg(target_arch = "x86_64")]
                    if Avx2::detect().is_some() {
                        let mut got = vec![u64::MAX; tables];
                        // SAFETY: AVX2 was detected.
                        unsafe { sums_by_byte_avx2(&bytes, &costs, &mut got) };
                        assert_eq!(got, expected, "AVX2: {what}");
                    }
                    #[cfg(target_arch = "x86_64")]
                    if Avx512::detect().is_some()
                        && std::arch::is_x86_feature_detected!("avx512vbmi")
                    {
                        let mut got = vec![u64::MAX; tables];
                        // SAFETY: AVX-512 F, BW and VBMI were detected.
                        unsafe { avx512::byte_cost_sums(&bytes, &costs.by_table, &mut got) };
                        assert_eq!(got, expected, "AVX-512: {what}");
                    }
                }
            }
        }
    }

    /// Costs with a window ([`ByteCosts::expecting`]) give the plain sums whatever share of
    /// the bytes falls outside it, for numbers of tables up to 17 (eight at a time), at window
    /// starts drawn at random, and with costs of 255 across a whole 16 MiB block of the
    /// kernel's 32-bit lanes.
    #[test]
    fn windowed_cost_sums_agree_with_plain_sums() {
        let mut x = 0x2545_f491_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let plain = |bytes: &[u8], costs: &ByteCosts| -> Vec<u64> {
            let by_table = &costs.by_table;
            by_table
                .iter()
                .map(|t| bytes.iter().map(|&b| u64::from(t[usize::from(b)])).sum())
                .collect()
        };
        for tables in [1usize, 2, 3, 4, 5, 7, 8, 9, 16, 17] {
            let start = (next() % 256) as u8;
            let costs: Vec<[u8; 256]> =
                (0..tables).map(|_| std::array::from_fn(|_| next() as u8)).collect();
            // Mostly in `start..start + 128`; one byte in `outside` out of it.
            for outside in [0u64, 1000, 50, 3] {
                let mut expected = [0u64; 256];
                for i in 0..128 {
                    expected[usize::from(start.wrapping_add(i))] = 1000;
                }
                let costs = ByteCosts::new(costs.clone()).expecting(&expected);
                assert_eq!(costs.window.is_some(), cost_windows(), "a window where it runs");
                for len in [0usize, 1, 63, 64, 65, 127, 128, 129, 384, 1000, 5000] {
                    let bytes: Vec<u8> = (0..len)
                        .map(|_| {
                            let offset = if outside > 0 && next() % outside == 0 {
                                128 + next() % 128
                            } else {
                                next() % 128
                            };
                            start.wrapping_add(offset as u8)
                        })
                        .collect();
                    let mut got = vec![u64::MAX; tables];
                    byte_cost_sums(&bytes, &costs, &mut got);
                    let what = format!("{tables} tables from {start}, 1/{outside} out, {len}");
                    assert_eq!(got, plain(&bytes, &costs), "{what}");
                }
            }
        }
        // The most a lane takes, past a block of the kernel.
        let costs = ByteCosts::new(vec![[255; 256]; 3])
            .expecting(&std::array::from_fn(|b| u64::from(b < 128)));
        assert_eq!(costs.window.is_some(), cost_windows());
        let bytes = vec![7u8; (64 << 18) + 100];
        let mut got = vec![0; 3];
        byte_cost_sums(&bytes, &costs, &mut got);
        assert_eq!(got, vec![255 * bytes.len() as u64; 3]);
    }

    /// The cheapest table of each row is the least of its plain sums (the first on ties), on the
    /// window kernel (up to 8 tables) and off it: rows of every length class around the 64-byte
    /// steps, spaced apart, some bytes outside the window; table `j` cheap on a band of values
    /// of its own and each row drawn mostly from one band (so that rows take different tables),
    /// one table repeated (ties).
    #[test]
    fn cheapest_tables_are_the_least_sums() {
        let mut x = 0x9e37_79b9_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for tables in [1usize, 2, 3, 4, 5, 6, 7, 8, 9, 16] {
            let start = (next() % 256) as u8;
            let band = 128 / tables;
            let in_band = |j: usize, b: u8| usize::from(b.wrapping_sub(start)) / band == j;
            let mut costs: Vec<[u8; 256]> = (0..tables)
                .map(|j| {
                    std::array::from_fn(|b| {
                        (if in_band(j, b as u8) { 10 } else { 50 }) + (next() % 8) as u8
                    })
                })
                .collect();
            if tables >= 3 {
                costs[2] = costs[1]; // a tie: table 1 wins it
            }
            let mut expected = [0u64; 256];
            for i in 0..128 {
                expected[usize::from(start.wrapping_add(i))] = 1000;
            }
            let costs = ByteCosts::new(costs).expecting(&expected);
            assert_eq!(costs.window.is_some(), cost_windows(), "a window where it runs");
            let pieces =
                [(0usize, 0usize), (1, 3), (63, 1), (64, 0), (65, 63), (192, 192), (300, 7)];
            for (len, pad) in pieces {
                let (stride, rows) = (len + pad, 37);
                let mut bytes = Vec::with_capacity(rows * stride);
                for _ in 0..rows {
                    let j = (next() % tables as u64) as usize;
                    bytes.extend((0..stride).map(|_| {
                        let offset = match next() % 100 {
                            0 => 128 + next() % 128,
                            1..10 => next() % 128,
                            _ => (j * band) as u64 + next() % band as u64,
                        };
                        start.wrapping_add(offset as u8)
                    }));
                }
                let mut expected_out = vec![0u8; rows];
                let mut sums = vec![0u64; tables];
                for (r, e) in expected_out.iter_mut().enumerate() {
                    byte_cost_sums(&bytes[r * stride..][..len], &costs, &mut sums);
                    let least = sums.iter().min().expect("a table");
                    *e = sums.iter().position(|s| s == least).expect("the least") as u8;
                }
                for ahead in [0, 4] {
                    let mut got = vec![u8::MAX; rows];
                    cheapest_tables(&bytes, stride, len, ahead, &costs, &mut got);
                    assert_eq!(got, expected_out, "{tables} tables, rows of {len} in {stride}");
                }
                if tables >= 3 {
                    assert!(!expected_out.contains(&2), "ties go to the first table");
                }
                if tables >= 2 && len >= 64 {
                    assert!(expected_out.iter().any(|&t| t != expected_out[0]), "rows differ");
                }
            }
        }
    }

    /// Every path the CPU runs gives the baseline's sums bit for bit.
    #[test]
    fn weighted_cost_sums_agree_on_every_path() {
        let mut x = 99u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for len in [0usize, 1, 7, 64, 256] {
            let costs: Vec<[f32; 16]> = (0..len)
                .map(|_| std::array::from_fn(|_| (next() % 100_000) as f32 / 7919.0))
                .collect();
            let counts: Vec<u32> = (0..len)
                .map(|_| if next() % 3 == 0 { 0 } else { (next() % 5000) as u32 })
                .collect();
            let base = sums::<16>(&costs, &counts);
            assert_eq!(weighted_cost_sums::<16>(&costs, &counts), base);
            // The partial sums add up to the plain sum, to rounding.
            for (j, &s) in base.iter().enumerate() {
                let exact: f64 =
                    costs.iter().zip(&counts).map(|(k, &n)| f64::from(n) * f64::from(k[j])).sum();
                assert!((f64::from(s) - exact).abs() <= 1e-5 * exact.max(1.0), "{s} vs {exact}");
            }
            #[cfg(target_arch = "x86_64")]
            {
                if Avx2::detect().is_some() {
                    // SAFETY: AVX2 was detected.
                    assert_eq!(unsafe { sums_avx2::<16>(&costs, &counts) }, base);
                }
                if Avx512::detect().is_some() {
                    // SAFETY: AVX-512 was detected.
                    assert_eq!(unsafe { sums_avx512::<16>(&costs, &counts) }, base);
                    // SAFETY: as above.
                    let four = unsafe { sums_avx512::<4>(&costs, &counts) };
                    assert_eq!(four, sums::<4>(&costs, &counts));
                }
            }
        }
    }
}
