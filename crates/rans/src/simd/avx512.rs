//! AVX-512 kernels: the 32 lanes in two registers of 16.

use core::arch::x86_64::*;

use super::{EncodeRun, Run, WINDOW};
use crate::encode::SimdEncTable;
use crate::{GROUP, LANES, STATE_LOW, decode::DecodeTable, decode::SLOTS};

/// The mask that takes a state's slot and the shift that takes its quotient, for the precision
/// of `tables`. The slot is masked with `SLOTS - 1` whatever the precision; this keeps the
/// shifts in range.
#[inline]
#[target_feature(enable = "avx512f")]
fn slot_mask_and_shift(tables: &[DecodeTable]) -> (__m512i, __m512i) {
    let prob_bits = tables[0].prob_bits().clamp(8, 12);
    let mask = _mm512_set1_epi32((((1u32 << prob_bits) - 1) as usize & (SLOTS - 1)) as i32);
    (mask, _mm512_set1_epi32(prob_bits as i32))
}

/// See [`super::Kernel::decode_run`].
///
/// A step is one dependency chain per lane, and the unit's 2048 steps of 32 symbols (64 KiB)
/// are bound by its latency, not by throughput: gather the entry (about 30 cycles), decide the
/// renormalisation, expand the words into the lanes that take them, and the next slot. With
/// `THRESHOLDS` it is kept short by two tricks. The renormalisation is one compare of `q = x >> prob_bits` with the
/// slot's threshold (`DecodeTable::renorm`, gathered beside the entry), not a compare of the new
/// state after a 10-cycle `vpmulld`. And the next slot of a lane that keeps its state takes the
/// new state's low 16 bits from a 16-bit multiply (5 cycles); the full product, needed only by
/// the step after, runs beside.
///
/// `THRESHOLDS` off decides the renormalisation after the full multiply instead, with one
/// gather a step, not two: the better choice when the unit's tables with their thresholds
/// would not stay in L1 together (several tables, precision 12).
///
/// # Safety
/// The CPU must run AVX-512 F, BW and VL, POPCNT.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,popcnt,bmi2")]
pub(super) unsafe fn decode_run<const THRESHOLDS: bool>(run: Run) -> usize {
    let Run { states, words, pos, tables, classes, mut out, .. } = run;
    let bias = _mm512_set1_epi8(out.bias() as i8);
    let (mask, shift) = slot_mask_and_shift(tables);
    let freq_mask = _mm512_set1_epi32(0xfff);
    let low_half = _mm512_set1_epi32(0xffff);
    let low = _mm512_set1_epi32(STATE_LOW as i32);
    // SAFETY: `states` holds 2 x 16 u32.
    let mut x = unsafe {
        [
            _mm512_loadu_si512(states.as_ptr().cast()),
            _mm512_loadu_si512(states.as_ptr().add(16).cast()),
        ]
    };
    let mut slot = [_mm512_and_si512(x[0], mask), _mm512_and_si512(x[1], mask)];
    let n_words = words.len() / 2;
    let mut p = *pos;
    let mut done = 0;
    for &class in classes {
        if p + WINDOW > n_words {
            break;
        }
        // The group's stream: `WINDOW` readable words from `w`.
        let w = words[2 * p..2 * (p + WINDOW)].as_ptr();
        super::prefetch_stream(w);
        // Register r holds lanes 16r..16r+15, the symbols of half r of the group.
        let table = [&tables[usize::from(class[0])], &tables[usize::from(class[1])]];
        let renorm = table.map(|t| if THRESHOLDS { t.renorm().as_slice() } else { &[] });
        let mut read = 0usize;
        let mut acc = [_mm512_setzero_si512(); 2];
        for j in 0..4 {
            for r in 0..2 {
                let (entries, renorm) = (&table[r].entries, renorm[r]);
                // SAFETY: every index is below `SLOTS` (masked) and `entries` has `SLOTS` u32s.
                let e = unsafe { _mm512_i32gather_epi32::<4>(slot[r], entries.as_ptr().cast()) };
                let q = _mm512_srlv_epi32(x[r], shift);
                // x = freq * q + bias = freq_m1 * q + (q + bias).
                let freq_m1 = _mm512_and_si512(_mm512_srli_epi32::<8>(e), freq_mask);
                let q_bias = _mm512_add_epi32(q, _mm512_srli_epi32::<20>(e));
                let xr = _mm512_add_epi32(_mm512_mullo_epi32(freq_m1, q), q_bias);
                // SAFETY: a group takes at most GROUP words, so `read <= GROUP` and the 16 words
                // read lie inside the window of `WINDOW = GROUP + 16` words.
                let next = unsafe { _mm256_loadu_si256(w.add(2 * read).cast()) };
                let next = _mm512_cvtepu16_epi32(next);
                // The lanes whose new state is below 2^16 take a word: x = x << 16 | word, and
                // their next slot is word & mask.
                let need = if THRESHOLDS {
                    // SAFETY: `renorm` has `SLOTS + 2` u16s, so the 4 bytes read from
                    // `2 * slot` (slot below `SLOTS`) are inside it.
                    let threshold =
                        unsafe { _mm512_i32gather_epi32::<2>(slot[r], renorm.as_ptr().cast()) };
                    let need = _mm512_cmple_epu32_mask(q, _mm512_and_si512(threshold, low_half));
                    // The next slot of the other lanes from the state's low 16 bits by vpmullw.
                    let x_low = _mm512_add_epi32(_mm512_mullo_epi16(freq_m1, q), q_bias);
                    slot[r] = _mm512_and_si512(_mm512_mask_expand_epi32(x_low, need, next), mask);
                    x[r] = _mm512_or_si512(
                        _mm512_mask_slli_epi32(xr, need, xr, 16),
                        _mm512_maskz_expand_epi32(need, next),
                    );
                    need
                } else {
                    let need = _mm512_cmplt_epu32_mask(xr, low);
                    let next = _mm512_maskz_expand_epi32(need, next);
                    let shifted = _mm512_mask_slli_epi32(xr, need, xr, 16);
                    x[r] = _mm512_or_si512(shifted, next);
                    // (shifted | next) & mask
                    slot[r] = _mm512_ternarylogic_epi32::<0xa8>(shifted, next, mask);
                    need
                };
                read += need.count_ones() as usize;
                // Byte j of a lane's output word is its symbol of step j (the entry's low byte).
                acc[r] = match j {
                    0 => e,
                    1 => _mm512_mask_blend_epi8(
                        0x2222_2222_2222_2222,
                        acc[r],
                        _mm512_slli_epi32::<8>(e),
                    ),
                    2 => _mm512_mask_blend_epi8(
                        0x4444_4444_4444_4444,
                        acc[r],
                        _mm512_slli_epi32::<16>(e),
                    ),
                    _ => _mm512_mask_blend_epi8(
                        0x8888_8888_8888_8888,
                        acc[r],
                        _mm512_slli_epi32::<24>(e),
                    ),
                };
            }
        }
        let group = out.next_group();
        // SAFETY: `group` is GROUP = 2 x 64 bytes.
        unsafe {
            _mm512_storeu_si512(group.as_mut_ptr().cast(), _mm512_xor_si512(acc[0], bias));
            _mm512_storeu_si512(group.as_mut_ptr().add(64).cast(), _mm512_xor_si512(acc[1], bias));
        }
        p += read;
        done += 1;
    }
    // SAFETY: as for the loads.
    unsafe {
        _mm512_storeu_si512(states.as_mut_ptr().cast(), x[0]);
        _mm512_storeu_si512(states.as_mut_ptr().add(16).cast(), x[1]);
    }
    *pos = p;
    done
}

/// See [`super::Kernel::decode_mixed_group`]: one full group of one unit whose symbols come
/// from several tables, symbol `t` from `tables[classes[t]]`. A lane's class at a step is byte
/// `j` of its u32 in the classes loaded as the symbols are stored; each lane's entry is gathered
/// from its own table at its 32-bit offset from the first table's, as in [`decode_runs`]'s
/// lane tables (or, where the tables lie too far apart, each table present in the group for its
/// lanes under a mask), where the scalar steps it replaces took a table look-up and a multiply
/// per symbol.
///
/// # Safety
/// The CPU must run AVX-512 F, BW and VL, POPCNT; `window` holds `WINDOW` words; every class
/// is below `tables.len()`, which is at most 32.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,popcnt,bmi2")]
pub(super) unsafe fn decode_mixed_group(
    states: &mut [u32; LANES],
    window: &[u8],
    tables: &[DecodeTable],
    classes: &[u8; GROUP],
    out: &mut [u8; GROUP],
) -> usize {
    let (mask, shift) = slot_mask_and_shift(tables);
    let freq_mask = _mm512_set1_epi32(0xfff);
    let byte = _mm512_set1_epi32(0xff);
    let low = _mm512_set1_epi32(STATE_LOW as i32);
    let present = classes.iter().fold(0u32, |bits, &c| bits | 1 << c);
    // Each lane's table at its offset from the first table's entries, by class (one gather a
    // step, where a masked gather a table present would take up to 32).
    let entries0 = tables[0].entries.as_ptr();
    let lane_offsets = (present.count_ones() > 1).then(|| super::table_offsets(tables)).flatten();
    // SAFETY: the offsets are 32 i32, two registers.
    let lane_offsets = lane_offsets.map(|off| unsafe {
        [_mm512_loadu_si512(off.as_ptr().cast()), _mm512_loadu_si512(off.as_ptr().add(16).cast())]
    });
    // SAFETY: `states` holds 2 x 16 u32, `classes` 2 x 64 bytes.
    let (mut x, class) = unsafe {
        (
            [
                _mm512_loadu_si512(states.as_ptr().cast()),
                _mm512_loadu_si512(states.as_ptr().add(16).cast()),
            ],
            [
                _mm512_loadu_si512(classes.as_ptr().cast()),
                _mm512_loadu_si512(classes.as_ptr().add(64).cast()),
            ],
        )
    };
    let w = window.as_ptr();
    let mut read = 0usize;
    let mut acc = [_mm512_setzero_si512(); 2];
    for j in 0..4 {
        for r in 0..2 {
            let slot = _mm512_and_si512(x[r], mask);
            let c = _mm512_and_si512(_mm512_srlv_epi32(class[r], _mm512_set1_epi32(8 * j)), byte);
            let mut e = _mm512_setzero_si512();
            if let Some([low, high]) = lane_offsets {
                let index = _mm512_add_epi32(slot, _mm512_permutex2var_epi32(low, c, high));
                // SAFETY: every class names a table (checked by the caller) and every slot is
                // below `SLOTS` (masked): each index lands on an entry of the lane's table.
                e = unsafe { _mm512_i32gather_epi32::<4>(index, entries0.cast()) };
            } else {
                let mut rest = present;
                while rest != 0 {
                    let k = rest.trailing_zeros();
                    rest &= rest - 1;
                    let lanes = _mm512_cmpeq_epi32_mask(c, _mm512_set1_epi32(k as i32));
                    let entries = &tables[k as usize].entries;
                    // SAFETY: every index is below `SLOTS` (masked) and `entries` has `SLOTS`
                    // u32s.
                    e = unsafe {
                        _mm512_mask_i32gather_epi32::<4>(e, lanes, slot, entries.as_ptr().cast())
                    };
                }
            }
            let q = _mm512_srlv_epi32(x[r], shift);
            let freq_m1 = _mm512_and_si512(_mm512_srli_epi32::<8>(e), freq_mask);
            let q_bias = _mm512_add_epi32(q, _mm512_srli_epi32::<20>(e));
            let xr = _mm512_add_epi32(_mm512_mullo_epi32(freq_m1, q), q_bias);
            // SAFETY: a group takes at most GROUP words, so `read <= GROUP` and the 16 words read
            // lie inside the window of `WINDOW = GROUP + 16` words.
            let next = unsafe { _mm256_loadu_si256(w.add(2 * read).cast()) };
            let need = _mm512_cmplt_epu32_mask(xr, low);
            let next = _mm512_maskz_expand_epi32(need, _mm512_cvtepu16_epi32(next));
            x[r] = _mm512_or_si512(_mm512_mask_slli_epi32(xr, need, xr, 16), next);
            read += need.count_ones() as usize;
            // Byte j of a lane's output word is its symbol of step j (the entry's low byte).
            let shifted = _mm512_sllv_epi32(e, _mm512_set1_epi32(8 * j));
            let keep = 0x1111_1111_1111_1111u64 << j;
            acc[r] = _mm512_mask_blend_epi8(keep, acc[r], shifted);
        }
    }
    // SAFETY: `out` is GROUP = 2 x 64 bytes; `states` as for the loads.
    unsafe {
        _mm512_storeu_si512(out.as_mut_ptr().cast(), acc[0]);
        _mm512_storeu_si512(out.as_mut_ptr().add(64).cast(), acc[1]);
        _mm512_storeu_si512(states.as_mut_ptr().cast(), x[0]);
        _mm512_storeu_si512(states.as_mut_ptr().add(16).cast(), x[1]);
    }
    read
}

/// See [`super::Kernel::decode_runs`]: [`decode_run`] on `N` units, in `2 N` registers. With
/// several chains in flight the gathers' latency overlaps, and throughput, not latency, is what
/// counts: so the renormalisation is decided after the full multiply (no second gather of
/// thresholds).
///
/// `BY_LANE` ([`super::Kernel::decode_lane_runs`]): each lane gathers from its own table at each
/// step, through `offsets[u]` (the unit's tables' entries from its first table's, in entries,
/// by class) and the classes of its group, `Run::lanes`: byte `j` of a lane's u32 is its class
/// at step `j`, as its output word holds its symbols. Three more instructions a step (a shift,
/// a permute, an add) than a table a half.
///
/// # Safety
/// The CPU must run AVX-512 F, BW and VL, POPCNT. With `BY_LANE`: every run has `lanes`, at most
/// 32 tables, every class of its pattern below its number of tables, and `offsets` as
/// [`super::table_offsets`] computes them.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,popcnt,bmi2")]
pub(super) unsafe fn decode_runs<'b, const N: usize, const BY_LANE: bool>(
    mut units: [Run<'_, 'b>; N],
    offsets: [[i32; 32]; N],
) -> usize {
    let zero = _mm512_setzero_si512();
    let freq_mask = _mm512_set1_epi32(0xfff);
    let low = _mm512_set1_epi32(STATE_LOW as i32);
    let (mut mask, mut shift, mut bias) = ([zero; N], [zero; N], [zero; N]);
    // Register h of unit u holds its lanes 16h..16h+15.
    let (mut x, mut slot) = ([[zero; 2]; N], [[zero; 2]; N]);
    let mut p = [0usize; N];
    let mut lane_offsets = [[zero; 2]; N];
    for (u, run) in units.iter().enumerate() {
        (mask[u], shift[u]) = slot_mask_and_shift(run.tables);
        bias[u] = _mm512_set1_epi8(run.out.bias() as i8);
        p[u] = *run.pos;
        for h in 0..2 {
            // SAFETY: `states` holds 2 x 16 u32, `offsets[u]` 2 x 16 i32.
            unsafe {
                x[u][h] = _mm512_loadu_si512(run.states.as_ptr().add(16 * h).cast());
                lane_offsets[u][h] = _mm512_loadu_si512(offsets[u].as_ptr().add(16 * h).cast());
            }
            slot[u][h] = _mm512_and_si512(x[u][h], mask[u]);
        }
    }
    let groups = units.iter().map(|r| r.classes.len()).min().unwrap_or(0);
    let mut done = 0;
    while done < groups {
        if units.iter().zip(&p).any(|(r, &p)| p + WINDOW > r.words.len() / 2) {
            break;
        }
        // The groups' streams: `WINDOW` readable words from each.
        let w: [*const u8; N] =
            std::array::from_fn(|u| units[u].words[2 * p[u]..2 * (p[u] + WINDOW)].as_ptr());
        w.iter().for_each(|&w| super::prefetch_stream(w));
        // Register h of a unit gathers from `entries[u][h]`: the table of its half, or with
        // `BY_LANE` the unit's first table, each lane offset to its own by `classes[u][h]`.
        let entries: [[*const u32; 2]; N] =
            std::array::from_fn(|u| units[u].half_entries(done, BY_LANE));
        let classes: [[__m512i; 2]; N] = std::array::from_fn(|u| match &units[u].lanes {
            Some(lanes) if BY_LANE => {
                let at = lanes.phases[done] as usize;
                let group = &lanes.pattern[at..at + GROUP];
                // SAFETY: `group` is GROUP = 2 x 64 bytes.
                unsafe {
                    [
                        _mm512_loadu_si512(group.as_ptr().cast()),
                        _mm512_loadu_si512(group.as_ptr().add(64).cast()),
                    ]
                }
            }
            _ => [zero; 2],
        });
        let mut read = [0usize; N];
        let mut acc = [[zero; 2]; N];
        let mut lanes = Lanes { x: &mut x, slot: &mut slot, read: &mut read, acc: &mut acc };
        let consts = StepConsts { mask: &mask, shift: &shift, freq_mask, low };
        let tables = StepTables { entries: &entries, classes: &classes, offsets: &lane_offsets };
        // The group's 4 steps, each a const generic: the compiler sees every step's byte
        // position (a loop over the steps stays rolled here, with a branch per step and unit).
        // SAFETY: as `runs_step` requires (the windows were checked above; with `BY_LANE` the
        // classes and offsets as this function requires).
        unsafe {
            runs_step::<0, N, BY_LANE>(&mut lanes, &consts, &tables, &w);
            runs_step::<1, N, BY_LANE>(&mut lanes, &consts, &tables, &w);
            runs_step::<2, N, BY_LANE>(&mut lanes, &consts, &tables, &w);
            runs_step::<3, N, BY_LANE>(&mut lanes, &consts, &tables, &w);
        }
        for (u, run) in units.iter_mut().enumerate() {
            let group = run.out.next_group();
            let (low, high) =
                (_mm512_xor_si512(acc[u][0], bias[u]), _mm512_xor_si512(acc[u][1], bias[u]));
            // SAFETY: `group` is GROUP = 2 x 64 bytes.
            unsafe {
                _mm512_storeu_si512(group.as_mut_ptr().cast(), low);
                _mm512_storeu_si512(group.as_mut_ptr().add(64).cast(), high);
            }
            p[u] += read[u];
        }
        done += 1;
    }
    for (u, run) in units.iter_mut().enumerate() {
        for (h, x) in x[u].iter().enumerate() {
            // SAFETY: as for the loads.
            unsafe { _mm512_storeu_si512(run.states.as_mut_ptr().add(16 * h).cast(), *x) };
        }
        *run.pos = p[u];
    }
    done
}

/// The state of [`decode_runs`]'s lanes during a group: register h of unit u holds its lanes
/// 16h..16h+15.
struct Lanes<'l, const N: usize> {
    x: &'l mut [[__m512i; 2]; N],
    slot: &'l mut [[__m512i; 2]; N],
    /// Words each unit has taken in this group.
    read: &'l mut [usize; N],
    /// Byte j of a lane's output word: its symbol of step j.
    acc: &'l mut [[__m512i; 2]; N],
}

/// Per-unit constants of [`decode_runs`].
struct StepConsts<'c, const N: usize> {
    mask: &'c [__m512i; N],
    shift: &'c [__m512i; N],
    freq_mask: __m512i,
    low: __m512i,
}

/// Where the registers of [`decode_runs`] gather their entries in a group: from
/// `entries[u][h]`, and with lane tables, each lane at its table's offset from there
/// (`offsets[u]`, by class; a lane's class at step j is byte j of its u32 in `classes[u][h]`).
struct StepTables<'t, const N: usize> {
    entries: &'t [[*const u32; 2]; N],
    classes: &'t [[__m512i; 2]; N],
    offsets: &'t [[__m512i; 2]; N],
}

/// Step `J` of a group of [`decode_runs`], for every unit.
///
/// # Safety
/// As [`decode_runs`]; each `w[u]` has `WINDOW` readable words; each `tables.entries[u][h]` is
/// a table's entries (`SLOTS` u32s), and with `BY_LANE` every lane's offset lands on one.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,popcnt,bmi2")]
unsafe fn runs_step<const J: usize, const N: usize, const BY_LANE: bool>(
    lanes: &mut Lanes<'_, N>,
    consts: &StepConsts<'_, N>,
    tables: &StepTables<'_, N>,
    w: &[*const u8; N],
) {
    for (u, &w) in w.iter().enumerate() {
        for h in 0..2 {
            let (x, slot) = (lanes.x[u][h], lanes.slot[u][h]);
            let index = if BY_LANE {
                // The permute reads an index's low 5 bits: byte J of the classes, shifted
                // down, needs no mask.
                let c = tables.classes[u][h];
                let class = match J {
                    0 => c,
                    1 => _mm512_srli_epi32::<8>(c),
                    2 => _mm512_srli_epi32::<16>(c),
                    _ => _mm512_srli_epi32::<24>(c),
                };
                let [low, high] = tables.offsets[u];
                _mm512_add_epi32(slot, _mm512_permutex2var_epi32(low, class, high))
            } else {
                slot
            };
            // SAFETY: every slot is below `SLOTS` (masked) and lands in a table's entries
            // (with `BY_LANE`, at its lane's table's offset), as the caller guarantees.
            let e = unsafe { _mm512_i32gather_epi32::<4>(index, tables.entries[u][h].cast()) };
            let q = _mm512_srlv_epi32(x, consts.shift[u]);
            let freq_m1 = _mm512_and_si512(_mm512_srli_epi32::<8>(e), consts.freq_mask);
            let xr = _mm512_add_epi32(
                _mm512_mullo_epi32(freq_m1, q),
                _mm512_add_epi32(q, _mm512_srli_epi32::<20>(e)),
            );
            let need = _mm512_cmplt_epu32_mask(xr, consts.low);
            // SAFETY: a group takes at most GROUP words, so `read <= GROUP` and the 16 words
            // read lie inside the window of `WINDOW = GROUP + 16` words.
            let next = unsafe { _mm256_loadu_si256(w.add(2 * lanes.read[u]).cast()) };
            let next = _mm512_maskz_expand_epi32(need, _mm512_cvtepu16_epi32(next));
            let shifted = _mm512_mask_slli_epi32(xr, need, xr, 16);
            lanes.x[u][h] = _mm512_or_si512(shifted, next);
            // (shifted | next) & mask
            lanes.slot[u][h] = _mm512_ternarylogic_epi32::<0xa8>(shifted, next, consts.mask[u]);
            lanes.read[u] += need.count_ones() as usize;
            let acc = &mut lanes.acc[u][h];
            *acc = match J {
                0 => e,
                1 => _mm512_mask_blend_epi8(0x2222_2222_2222_2222, *acc, _mm512_slli_epi32::<8>(e)),
                2 => {
                    _mm512_mask_blend_epi8(0x4444_4444_4444_4444, *acc, _mm512_slli_epi32::<16>(e))
                }
                _ => {
                    _mm512_mask_blend_epi8(0x8888_8888_8888_8888, *acc, _mm512_slli_epi32::<24>(e))
                }
            };
        }
    }
}

/// See [`super::Kernel::encode_run`].
///
/// # Safety
/// The CPU must run AVX-512 F, BW, VL, VBMI2 and IFMA, POPCNT; `prob_bits` must be in
/// `8..=12`; `run.groups` is `run.classes.len()` groups; `*run.cur <= run.buf.len() / 2` and
/// `*run.cur >= GROUP * run.groups.len() + ENCODE_HEADROOM`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,avx512ifma,avx2,popcnt,bmi2")]
pub(super) unsafe fn encode_run(run: EncodeRun<'_>, prob_bits: u32) -> bool {
    let EncodeRun { states, groups, tables, classes, buf, cur } = run;
    let consts = EncodeConsts {
        renorm_shift: _mm512_set1_epi32(32 - prob_bits as i32),
        byte: _mm512_set1_epi32(0xff),
        freq_mask: _mm512_set1_epi32(0xffff),
        // The low u32 of each u64 of two registers: lanes 0..7 from the first, 8..15 the
        // second.
        evens: _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
    };
    // Register r holds lanes 16r..16r+15.
    // SAFETY: `states` holds 2 x 16 u32.
    let mut x = unsafe {
        [
            _mm512_loadu_si512(states.as_ptr().cast()),
            _mm512_loadu_si512(states.as_ptr().add(16).cast()),
        ]
    };
    let mut c = *cur;
    let out = buf.as_mut_ptr().cast::<u8>();
    // The least frequency met in each lane: 0 where a symbol had none.
    let mut least = _mm512_set1_epi32(-1);
    for (k, (group, class)) in groups.iter().zip(classes).enumerate().rev() {
        if let Some(ahead) = k.checked_sub(PREFETCH_GROUPS).map(|a| groups[a]) {
            _mm_prefetch::<_MM_HINT_T0>(ahead.as_ptr().cast());
            _mm_prefetch::<_MM_HINT_T0>(ahead[64..].as_ptr().cast());
        }
        // Register r codes half r of the group, with table class[r].
        let table = class.map(|t| &tables[usize::from(t)].simd);
        // SAFETY: `group` is 128 bytes.
        let v = unsafe {
            [
                _mm512_loadu_si512(group.as_ptr().cast()),
                _mm512_loadu_si512(group.as_ptr().add(64).cast()),
            ]
        };
        // The group's 4 steps, last first, each a const generic: the compiler then sees every
        // step's byte position (bit 8 j of the lanes' words) and keeps the states in
        // registers (a loop over the steps stays rolled, its states in memory: 1.2x slower).
        // SAFETY: `c` has room below it for every symbol still to code (as the caller
        // guarantees), and `out` is the run's buffer.
        unsafe {
            encode_group_step::<24>(&mut x, &v, &table, &consts, out, &mut c, &mut least);
            encode_group_step::<16>(&mut x, &v, &table, &consts, out, &mut c, &mut least);
            encode_group_step::<8>(&mut x, &v, &table, &consts, out, &mut c, &mut least);
            encode_group_step::<0>(&mut x, &v, &table, &consts, out, &mut c, &mut least);
        }
    }
    // SAFETY: as for the loads.
    unsafe {
        _mm512_storeu_si512(states.as_mut_ptr().cast(), x[0]);
        _mm512_storeu_si512(states.as_mut_ptr().add(16).cast(), x[1]);
    }
    *cur = c;
    _mm512_cmpeq_epi32_mask(least, _mm512_setzero_si512()) == 0
}

/// Groups ahead of the one coded whose bytes a run prefetches: a tile read in place is rows of a
/// plane that has left the cache (about 520 cycles of coding ahead, for a load from memory).
pub(super) const PREFETCH_GROUPS: usize = 4;

/// A step of a group of [`encode_run`] (the symbols of each lane's word of `v` at bit
/// `SHIFT`): half 1 (register 1), then half 0.
///
/// # Safety
/// As [`encode_step`], for both halves.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,avx512ifma,avx2,popcnt,bmi2")]
unsafe fn encode_group_step<const SHIFT: u32>(
    x: &mut [__m512i; 2],
    v: &[__m512i; 2],
    tables: &[&SimdEncTable; 2],
    k: &EncodeConsts,
    out: *mut u8,
    c: &mut usize,
    least: &mut __m512i,
) {
    for r in [1, 0] {
        let s = _mm512_and_si512(_mm512_srli_epi32::<SHIFT>(v[r]), k.byte);
        // SAFETY: as the caller guarantees.
        x[r] = unsafe { encode_step(x[r], s, tables[r], k, out, c, least) };
    }
}

/// Constants of [`encode_run`].
struct EncodeConsts {
    renorm_shift: __m512i,
    byte: __m512i,
    freq_mask: __m512i,
    evens: __m512i,
}

/// One step of 16 lanes of [`encode_run`]: codes symbols `s` (one a lane, below 256) into
/// states `xr` with `table`, emitting the renormalisation words below `*c` in `out`; returns
/// the new states, and lowers `least` to the symbols' frequencies.
///
/// # Safety
/// As [`encode_run`]; `out` has room for 16 words below `*c` (`*c >= 16` words in).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,avx512ifma,avx2,popcnt,bmi2")]
unsafe fn encode_step(
    xr: __m512i,
    s: __m512i,
    table: &SimdEncTable,
    k: &EncodeConsts,
    out: *mut u8,
    c: &mut usize,
    least: &mut __m512i,
) -> __m512i {
    let (s_low, s_high) = (_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64::<1>(s));
    // SAFETY: symbols are below 256 and the tables have 256 entries.
    let (info, magic_low, magic_high) = unsafe {
        (
            _mm512_i32gather_epi32::<4>(s, table.info512.as_ptr().cast()),
            _mm512_i32gather_epi64::<8>(s_low, table.magic_cmpl.as_ptr().cast()),
            _mm512_i32gather_epi64::<8>(s_high, table.magic_cmpl.as_ptr().cast()),
        )
    };
    // SAFETY: as the caller guarantees.
    unsafe { code_step(xr, info, [magic_low, magic_high], k, out, c, least) }
}

/// The rest of a step of [`encode_step`] and [`encode_step_lanes`], once the symbols' constants
/// are gathered (`info`: `freq | bias << 16` a lane; `magic`: `magic_cmpl` of lanes 0..8 and
/// 8..16): the renormalisation words emitted below `*c` in `out`, and the new states.
///
/// # Safety
/// As [`encode_step`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,avx512ifma,avx2,popcnt,bmi2")]
unsafe fn code_step(
    xr: __m512i,
    info: __m512i,
    magic: [__m512i; 2],
    k: &EncodeConsts,
    out: *mut u8,
    c: &mut usize,
    least: &mut __m512i,
) -> __m512i {
    let [magic_low, magic_high] = magic;
    let freq = _mm512_and_si512(info, k.freq_mask);
    *least = _mm512_min_epu32(*least, freq);
    // Emit a word when x >= freq << (32 - prob_bits).
    let emit = _mm512_cmpge_epu32_mask(_mm512_srlv_epi32(xr, k.renorm_shift), freq);
    let count = emit.count_ones() as usize;
    let low_words = _mm512_cvtepi32_epi16(xr);
    let packed = _mm256_maskz_compress_epi16(emit, low_words);
    // SAFETY: `*c >= count` words (the caller's room), and the masked store writes exactly
    // the words [c - count, c) of `out`.
    unsafe {
        _mm256_mask_storeu_epi16(
            out.add(2 * (*c - count)).cast(),
            _bzhi_u32(u32::MAX, count as u32) as u16,
            packed,
        )
    };
    *c -= count;
    let xr = _mm512_mask_srli_epi32(xr, emit, xr, 16);
    // In 64-bit lanes, 8 a register: q = x / freq = (x * magic52) >> 52, then
    // x + q * (M - freq), whose low 32 bits plus the bias are the new state:
    // (q << prob_bits) + (x - q * freq) + cum == x + q * (M - freq) + cum. Both are 52-bit
    // multiplies (4 cycles), which read the low 52 bits of `magic_cmpl` (the magic) and the
    // shifted-down top 12 (M - freq).
    let zero = _mm512_setzero_si512();
    let x_low = _mm512_cvtepu32_epi64(_mm512_castsi512_si256(xr));
    let x_high = _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64::<1>(xr));
    let q_low = _mm512_madd52hi_epu64(zero, x_low, magic_low);
    let q_high = _mm512_madd52hi_epu64(zero, x_high, magic_high);
    let y_low = _mm512_madd52lo_epu64(x_low, q_low, _mm512_srli_epi64::<52>(magic_low));
    let y_high = _mm512_madd52lo_epu64(x_high, q_high, _mm512_srli_epi64::<52>(magic_high));
    let y = _mm512_permutex2var_epi32(y_low, k.evens, y_high);
    _mm512_add_epi32(y, _mm512_srli_epi32::<16>(info))
}

/// See [`super::Kernel::encode_lane_run`]: [`encode_run`]'s steps on groups whose symbols take
/// their tables lane by lane (group `k` of `symbols` with the classes `pattern[phases[k]..]`,
/// laid out as the symbols), each lane's constants gathered through 64-bit offsets from the
/// first table's (a table per lane, where the run gathers from one table a register). One group
/// with its classes is [`encode_mixed_group`].
///
/// # Safety
/// The CPU must run AVX-512 F, BW, VL, VBMI2 and IFMA, POPCNT; `prob_bits` must be in `8..=12`;
/// at most 16 tables, every class of `pattern` below `tables.len()`; `symbols` is
/// `phases.len()` groups; `*cur <= buf.len() / 2` and `*cur >= symbols.len() + ENCODE_HEADROOM`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,avx512ifma,avx2,popcnt,bmi2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn encode_lane_run(
    states: &mut [u32; LANES],
    symbols: &[u8],
    tables: &[crate::EncodeTable],
    pattern: &[u8],
    phases: &[u32],
    prob_bits: u32,
    buf: &mut [std::mem::MaybeUninit<u8>],
    cur: &mut usize,
) -> bool {
    let consts = EncodeConsts {
        renorm_shift: _mm512_set1_epi32(32 - prob_bits as i32),
        byte: _mm512_set1_epi32(0xff),
        freq_mask: _mm512_set1_epi32(0xffff),
        evens: _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
    };
    // Each table's arrays as offsets from the first table's, in bytes (lanes past the tables
    // keep 0 and are never selected).
    let info0 = tables[0].simd.info512.as_ptr();
    let magic0 = tables[0].simd.magic_cmpl.as_ptr();
    let mut info_off = [0i64; 16];
    let mut magic_off = [0i64; 16];
    for (k, t) in tables.iter().enumerate() {
        info_off[k] = t.simd.info512.as_ptr() as i64 - info0 as i64;
        magic_off[k] = t.simd.magic_cmpl.as_ptr() as i64 - magic0 as i64;
    }
    // SAFETY: each array holds 16 i64, two registers.
    let offsets = unsafe {
        LaneTables {
            info: [
                _mm512_loadu_si512(info_off.as_ptr().cast()),
                _mm512_loadu_si512(info_off.as_ptr().add(8).cast()),
            ],
            magic: [
                _mm512_loadu_si512(magic_off.as_ptr().cast()),
                _mm512_loadu_si512(magic_off.as_ptr().add(8).cast()),
            ],
            info0: info0.cast(),
            magic0: magic0.cast(),
        }
    };
    // SAFETY: `states` holds 2 x 16 u32.
    let mut x = unsafe {
        [
            _mm512_loadu_si512(states.as_ptr().cast()),
            _mm512_loadu_si512(states.as_ptr().add(16).cast()),
        ]
    };
    let out = buf.as_mut_ptr().cast::<u8>();
    let mut at = *cur;
    let mut least = _mm512_set1_epi32(-1);
    for (group, &phase) in symbols.chunks_exact(GROUP).zip(phases).rev() {
        let classes = &pattern[phase as usize..phase as usize + GROUP];
        // SAFETY: `group` and `classes` are 2 x 64 bytes.
        let (v, c) = unsafe {
            (
                [
                    _mm512_loadu_si512(group.as_ptr().cast()),
                    _mm512_loadu_si512(group.as_ptr().add(64).cast()),
                ],
                [
                    _mm512_loadu_si512(classes.as_ptr().cast()),
                    _mm512_loadu_si512(classes.as_ptr().add(64).cast()),
                ],
            )
        };
        // The group's 4 steps, last first; half 1 (register 1), then half 0, as `encode_run`.
        for shift in [24u32, 16, 8, 0] {
            let count = _mm_cvtsi32_si128(shift as i32);
            for r in [1, 0] {
                let symbols = _mm512_and_si512(_mm512_srl_epi32(v[r], count), consts.byte);
                let class = _mm512_and_si512(_mm512_srl_epi32(c[r], count), consts.byte);
                // SAFETY: as the caller guarantees (room below `at` for the run's words).
                x[r] = unsafe {
                    encode_step_lanes(
                        x[r], symbols, class, &offsets, &consts, out, &mut at, &mut least,
                    )
                };
            }
        }
    }
    // SAFETY: as for the loads.
    unsafe {
        _mm512_storeu_si512(states.as_mut_ptr().cast(), x[0]);
        _mm512_storeu_si512(states.as_mut_ptr().add(16).cast(), x[1]);
    }
    *cur = at;
    _mm512_cmpeq_epi32_mask(least, _mm512_setzero_si512()) == 0
}

/// See [`super::Kernel::encode_mixed_group`]: [`encode_lane_run`] on one group with its own
/// classes.
///
/// # Safety
/// As [`encode_lane_run`], with `*cur >= GROUP + ENCODE_HEADROOM`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,avx512ifma,avx2,popcnt,bmi2")]
pub(super) unsafe fn encode_mixed_group(
    states: &mut [u32; LANES],
    group: &[u8; GROUP],
    tables: &[crate::EncodeTable],
    classes: &[u8; GROUP],
    prob_bits: u32,
    buf: &mut [std::mem::MaybeUninit<u8>],
    cur: &mut usize,
) -> bool {
    // SAFETY: as the caller guarantees; one group, at phase 0 of its classes.
    unsafe { encode_lane_run(states, group, tables, classes, &[0], prob_bits, buf, cur) }
}

/// The tables of [`encode_mixed_group`]: each table's `info512` and `magic_cmpl` as byte offsets
/// from the first table's (16 i64, two registers each).
struct LaneTables {
    info: [__m512i; 2],
    magic: [__m512i; 2],
    info0: *const i32,
    magic0: *const i64,
}

/// [`encode_step`] with a table a lane: lane `i` codes `s[i]` with table `class[i]`.
///
/// # Safety
/// As [`encode_step`]; every class names a table of `t`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,avx512ifma,avx2,popcnt,bmi2")]
#[allow(clippy::too_many_arguments)]
unsafe fn encode_step_lanes(
    xr: __m512i,
    s: __m512i,
    class: __m512i,
    t: &LaneTables,
    k: &EncodeConsts,
    out: *mut u8,
    c: &mut usize,
    least: &mut __m512i,
) -> __m512i {
    let (s_low, s_high) = (_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64::<1>(s));
    let (class_low, class_high) =
        (_mm512_castsi512_si256(class), _mm512_extracti64x4_epi64::<1>(class));
    // Byte offsets of lane i's entries: its table's array, plus 4 or 8 bytes a symbol.
    let lane_offsets = |arrays: &[__m512i; 2], classes: __m256i, symbols: __m256i, size: i64| {
        let table = _mm512_permutex2var_epi64(arrays[0], _mm512_cvtepu32_epi64(classes), arrays[1]);
        let at = _mm512_sllv_epi64(_mm512_cvtepu32_epi64(symbols), _mm512_set1_epi64(size));
        _mm512_add_epi64(table, at)
    };
    // SAFETY: every offset lands on an entry of a table of `t` (symbols below 256, classes
    // below the number of tables, each table's arrays of 256 entries).
    let (info, magic_low, magic_high) = unsafe {
        let info_low =
            _mm512_i64gather_epi32::<1>(lane_offsets(&t.info, class_low, s_low, 2), t.info0);
        let info_high =
            _mm512_i64gather_epi32::<1>(lane_offsets(&t.info, class_high, s_high, 2), t.info0);
        (
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(info_low), info_high),
            _mm512_i64gather_epi64::<1>(lane_offsets(&t.magic, class_low, s_low, 3), t.magic0),
            _mm512_i64gather_epi64::<1>(lane_offsets(&t.magic, class_high, s_high, 3), t.magic0),
        )
    };
    // SAFETY: as the caller guarantees.
    unsafe { code_step(xr, info, [magic_low, magic_high], k, out, c, least) }
}

/// See [`super::SeenBytes::add`]: 64 bytes a step, each looked up in `unseen` (0xff for a value
/// not seen yet) by two two-register byte permutes; only a step that meets a new value (at
/// most 256 in all) leaves the registers for scalar code.
///
/// # Safety
/// The CPU must run AVX-512 F, BW and VBMI.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub(super) unsafe fn mark_seen(bytes: &[u8], unseen: &mut [u8; 256]) {
    // SAFETY (all loads of `unseen`): it is 256 bytes, four registers.
    let load = |unseen: &[u8; 256]| unsafe {
        std::array::from_fn::<__m512i, 4, _>(|k| {
            _mm512_loadu_si512(unseen[64 * k..].as_ptr().cast())
        })
    };
    let mut t = load(unseen);
    let mut chunks = bytes.chunks_exact(64);
    for chunk in &mut chunks {
        // SAFETY: `chunk` is 64 bytes.
        let v = unsafe { _mm512_loadu_si512(chunk.as_ptr().cast()) };
        // Bit 6 of a byte picks the permute's second register, bit 7 the second permute.
        let low = _mm512_permutex2var_epi8(t[0], v, t[1]);
        let high = _mm512_permutex2var_epi8(t[2], v, t[3]);
        let looked_up = _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), low, high);
        let mut new = _mm512_test_epi8_mask(looked_up, looked_up);
        if new != 0 {
            while new != 0 {
                unseen[usize::from(chunk[new.trailing_zeros() as usize])] = 0;
                new &= new - 1;
            }
            t = load(unseen);
        }
    }
    for &b in chunks.remainder() {
        unseen[usize::from(b)] = 0;
    }
}

/// See [`super::byte_cost_sums`]: per table, its 256 costs in four registers and each 64-byte
/// step looked up as in [`mark_present`], the costs added eight at a time by `vpsadbw` into
/// 64-bit lanes; the last partial step read with a masked load.
///
/// # Safety
/// The CPU must run AVX-512 F, BW and VBMI.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub(super) unsafe fn byte_cost_sums(bytes: &[u8], costs: &[[u8; 256]], sums: &mut [u64]) {
    let chunks = bytes.chunks_exact(64);
    let rest = chunks.remainder();
    let tail_mask: __mmask64 = if rest.is_empty() { 0 } else { u64::MAX >> (64 - rest.len()) };
    // SAFETY: the mask selects the `rest.len()` bytes `rest` has; masked-off bytes are not read.
    let tail = unsafe { _mm512_maskz_loadu_epi8(tail_mask, rest.as_ptr().cast()) };
    let zero = _mm512_setzero_si512();
    for (table, sum) in costs.iter().zip(sums) {
        // SAFETY: `table` is 256 bytes, four registers.
        let t: [__m512i; 4] =
            std::array::from_fn(|k| unsafe { _mm512_loadu_si512(table[64 * k..].as_ptr().cast()) });
        let look_up = |v: __m512i| {
            let low = _mm512_permutex2var_epi8(t[0], v, t[1]);
            let high = _mm512_permutex2var_epi8(t[2], v, t[3]);
            _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), low, high)
        };
        let mut acc = zero;
        for chunk in chunks.clone() {
            // SAFETY: `chunk` is 64 bytes.
            let v = unsafe { _mm512_loadu_si512(chunk.as_ptr().cast()) };
            acc = _mm512_add_epi64(acc, _mm512_sad_epu8(look_up(v), zero));
        }
        if tail_mask != 0 {
            let costs = _mm512_maskz_mov_epi8(tail_mask, look_up(tail));
            acc = _mm512_add_epi64(acc, _mm512_sad_epu8(costs, zero));
        }
        *sum = _mm512_reduce_add_epi64(acc) as u64;
    }
}

/// See [`super::byte_cost_sums`], for bytes that mostly fall in a window of 128 values
/// (`start..start + 128`, wrapping; [`super::CostWindow`]): a table's costs over the window are
/// two registers, so that the `N` tables stay in registers and a 64-byte step inside the window
/// is one byte permute a table, its costs added four to a 32-bit lane by `vpdpbusd` (VNNI;
/// `vpsadbw` would take the permutes' port). A step with a byte outside the window looks its
/// bytes up in the full tables (`full`, from memory). `SETS` sets of accumulators take steps in
/// turn: with few tables one set would wait on the multiply-add's latency.
///
/// # Safety
/// The CPU must run AVX-512 F, BW, VBMI and VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni")]
pub(super) unsafe fn windowed_cost_sums<const N: usize, const SETS: usize>(
    bytes: &[u8],
    start: u8,
    window: &[[u8; 128]],
    full: &[[u8; 256]],
    sums: &mut [u64],
) {
    assert!(N <= 8 && window.len() == N && full.len() == N && sums.len() == N, "N tables");
    let w = window_registers::<N>(window);
    let mut total = [0u64; N];
    // A 32-bit lane takes at most 4 x 255 a step: the 16 lanes of 2^18 steps add up to less
    // than 2^32.
    for block in bytes.chunks(WINDOW_BLOCK) {
        let lanes = window_lanes::<N, SETS>(block, start, &w, full);
        for (total, sum) in total.iter_mut().zip(lane_sums(lanes)) {
            *total += u64::from(sum);
        }
    }
    sums.copy_from_slice(&total);
}

/// Bytes [`window_lanes`] takes at most: its 32-bit lanes cannot overflow.
pub(super) const WINDOW_BLOCK: usize = 64 << 18;

/// See [`super::cheapest_tables`], for [`windowed_cost_sums`]'s tables: each row's sums as that
/// kernel takes them (the tables loaded once for all rows), and the least. Rows `ahead` rows on
/// are prefetched whole (`stride` bytes).
///
/// # Safety
/// The CPU must run AVX-512 F, BW, VBMI and VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn windowed_cheapest<const N: usize, const SETS: usize>(
    bytes: &[u8],
    stride: usize,
    len: usize,
    ahead: usize,
    start: u8,
    window: &[[u8; 128]],
    full: &[[u8; 256]],
    out: &mut [u8],
) {
    assert!(N <= 8 && window.len() == N && full.len() == N, "N tables");
    assert!(len <= WINDOW_BLOCK && len <= stride, "rows of one block");
    let w = window_registers::<N>(window);
    for (r, cheapest) in out.iter_mut().enumerate() {
        if let Some(next) = bytes.get((r + ahead) * stride..) {
            super::prefetch(&next[..stride.min(next.len())]);
        }
        let sums = lane_sums(window_lanes::<N, SETS>(&bytes[r * stride..][..len], start, &w, full));
        let mut best = 0;
        for j in 1..N {
            if sums[j] < sums[best] {
                best = j;
            }
        }
        *cheapest = best as u8;
    }
}

/// The window's costs under `N` tables, two registers a table.
#[inline]
#[target_feature(enable = "avx512f")]
fn window_registers<const N: usize>(window: &[[u8; 128]]) -> [[__m512i; 2]; N] {
    // SAFETY: a window is 128 bytes, two registers.
    std::array::from_fn(|j| unsafe {
        [
            _mm512_loadu_si512(window[j].as_ptr().cast()),
            _mm512_loadu_si512(window[j][64..].as_ptr().cast()),
        ]
    })
}

/// The costs of `bytes` (at most `WINDOW_BLOCK`) under each of the `N` tables, in the 32-bit
/// lanes of a register a table (the others zero), for [`lane_sums`]: a 64-byte step inside
/// the window is one permute of the table's registers `w` and a `vpdpbusd` a table, one with a
/// byte outside takes the full tables from memory. `SETS` sets of accumulators take steps in
/// turn.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni")]
fn window_lanes<const N: usize, const SETS: usize>(
    bytes: &[u8],
    start: u8,
    w: &[[__m512i; 2]; N],
    full: &[[u8; 256]],
) -> [__m512i; 8] {
    let zero = _mm512_setzero_si512();
    let ones = _mm512_set1_epi8(1);
    let start = _mm512_set1_epi8(start as i8);
    // The costs of the bytes of `v` selected by `valid` added into `acc`.
    let step = |v: __m512i, valid: __mmask64, acc: &mut [__m512i; N]| {
        let index = _mm512_sub_epi8(v, start);
        if _mm512_movepi8_mask(index) & valid == 0 {
            for j in 0..N {
                let costs = _mm512_permutex2var_epi8(w[j][0], index, w[j][1]);
                let costs = _mm512_maskz_mov_epi8(valid, costs);
                acc[j] = _mm512_dpbusd_epi32(acc[j], costs, ones);
            }
        } else {
            let high_half = _mm512_movepi8_mask(v);
            for j in 0..N {
                // SAFETY: a full table is 256 bytes, four registers.
                let t: [__m512i; 4] = std::array::from_fn(|k| unsafe {
                    _mm512_loadu_si512(full[j][64 * k..].as_ptr().cast())
                });
                let low = _mm512_permutex2var_epi8(t[0], v, t[1]);
                let high = _mm512_permutex2var_epi8(t[2], v, t[3]);
                let costs =
                    _mm512_maskz_mov_epi8(valid, _mm512_mask_blend_epi8(high_half, low, high));
                acc[j] = _mm512_dpbusd_epi32(acc[j], costs, ones);
            }
        }
    };
    let mut acc = [[zero; N]; SETS];
    let mut groups = bytes.chunks_exact(64 * SETS);
    for group in &mut groups {
        for (s, acc) in acc.iter_mut().enumerate() {
            // SAFETY: `group` is `SETS` steps of 64 bytes.
            let v = unsafe { _mm512_loadu_si512(group[64 * s..].as_ptr().cast()) };
            step(v, u64::MAX, acc);
        }
    }
    for part in groups.remainder().chunks(64) {
        let valid: __mmask64 = u64::MAX >> (64 - part.len());
        // SAFETY: the mask selects the `part.len()` bytes `part` has.
        let v = unsafe { _mm512_maskz_loadu_epi8(valid, part.as_ptr().cast()) };
        step(v, valid, &mut acc[0]);
    }
    std::array::from_fn(|j| {
        acc.iter().fold(zero, |sum, acc| acc.get(j).map_or(sum, |&a| _mm512_add_epi32(sum, a)))
    })
}

/// The sums of the 16 32-bit lanes of each of eight registers (wrapping), by a tree of
/// shuffles and adds: a fraction of eight separate reductions.
#[inline]
#[target_feature(enable = "avx512f")]
fn lane_sums(v: [__m512i; 8]) -> [u32; 8] {
    // Within each 128-bit block: [a0 + a2, b0 + b2, a1 + a3, b1 + b3] of registers a, b...
    let pair = |a, b| _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    // ... then [a, b, c, d], each the sum of its block's four lanes.
    let quad =
        |ab, cd| _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
    let abcd = quad(pair(v[0], v[1]), pair(v[2], v[3]));
    let efgh = quad(pair(v[4], v[5]), pair(v[6], v[7]));
    // Blocks [abcd0 + abcd1, abcd2 + abcd3, efgh0 + efgh1, efgh2 + efgh3], then block 0 the
    // sums of a, b, c, d and block 2 those of e, f, g, h.
    let halves = _mm512_add_epi32(
        _mm512_shuffle_i32x4::<0b10_00_10_00>(abcd, efgh),
        _mm512_shuffle_i32x4::<0b11_01_11_01>(abcd, efgh),
    );
    let sums = _mm512_add_epi32(halves, _mm512_shuffle_i32x4::<0b10_11_00_01>(halves, halves));
    let mut out = [0u32; 16];
    // SAFETY: `out` is 64 bytes.
    unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), sums) };
    [out[0], out[1], out[2], out[3], out[8], out[9], out[10], out[11]]
}
