//! AVX2 kernels: the 32 lanes in four registers of 8.

use core::arch::x86_64::*;

use super::{Run, WINDOW};
use crate::{EncodeTable, GROUP, LANES, decode::SLOTS};

/// A row of 8 lane indices for `_mm256_permutevar8x32_epi32`, one row per 8-bit lane mask.
#[repr(C, align(32))]
struct Lut([[u32; 8]; 256]);

/// Decoder renormalisation: row `m` sends the `k`-th word to the `k`-th lane set in `m`.
static EXPAND: Lut = Lut(expand_lut());
/// Encoder renormalisation: row `m` gathers the lanes set in `m`, in increasing order, into
/// the top `popcount(m)` positions.
static COMPRESS_HIGH: Lut = Lut(compress_high_lut());

const fn expand_lut() -> [[u32; 8]; 256] {
    let mut t = [[0u32; 8]; 256];
    let mut m = 0;
    while m < 256 {
        let (mut i, mut k) = (0, 0);
        while i < 8 {
            if (m >> i) & 1 == 1 {
                t[m][i] = k;
                k += 1;
            }
            i += 1;
        }
        m += 1;
    }
    t
}

const fn compress_high_lut() -> [[u32; 8]; 256] {
    let mut t = [[0u32; 8]; 256];
    let mut m = 0;
    while m < 256 {
        let count = (m as u32).count_ones() as usize;
        let (mut i, mut k) = (0, 0);
        while i < 8 {
            if (m >> i) & 1 == 1 {
                t[m][8 - count + k] = i as u32;
                k += 1;
            }
            i += 1;
        }
        m += 1;
    }
    t
}

/// The LUT row for mask `m` as a vector.
#[inline]
#[target_feature(enable = "avx2")]
fn lut_row(lut: &Lut, m: usize) -> __m256i {
    let row = &lut.0[m & 0xff];
    // SAFETY: `row` is 32 readable bytes, 32-byte aligned (`Lut` is aligned and rows are 32 bytes).
    unsafe { _mm256_load_si256(row.as_ptr().cast()) }
}

/// See [`super::Kernel::decode_run`] and [`super::Kernel::decode_runs`]: `N` units at once, in
/// lockstep (each unit's 32 lanes in four registers), so that while one unit's chain of a step
/// waits (its gather, its multiply, the words its lanes take in turn) the others' go on. As many
/// groups of each as all runs hold and all streams hold windows for.
///
/// `BY_LANE` ([`super::Kernel::decode_lane_runs`]): each lane gathers from its own table at
/// each step, at `offsets[u][class]` from its unit's first table's entries (its class at step j
/// is byte j of its u32 in the group's classes, `Run::lanes`).
///
/// # Safety
/// The CPU must run AVX2, POPCNT and BMI2. With `BY_LANE`: every run has `lanes`, at most 8
/// tables, every class of its pattern below their number, and `offsets` as
/// [`super::table_offsets`] computes them.
#[target_feature(enable = "avx2,popcnt,bmi2")]
pub(super) unsafe fn decode_runs<const N: usize, const BY_LANE: bool>(
    mut units: [Run<'_, '_>; N],
    offsets: [[i32; 8]; N],
) -> usize {
    let zero = _mm256_setzero_si256();
    let freq_mask = _mm256_set1_epi32(0xfff);
    let sixteen = _mm256_set1_epi32(16);
    let (mut mask, mut shift, mut bias, mut lane_offsets) =
        ([zero; N], [zero; N], [zero; N], [zero; N]);
    // Register r of unit u holds its lanes 8r..8r+7.
    let mut x = [[zero; 4]; N];
    let mut p = [0usize; N];
    for (u, run) in units.iter().enumerate() {
        // The slot is masked with `SLOTS - 1` whatever the precision; this keeps the shifts in
        // range.
        let prob_bits = run.tables[0].prob_bits().clamp(8, 12);
        mask[u] = _mm256_set1_epi32((((1u32 << prob_bits) - 1) as usize & (SLOTS - 1)) as i32);
        shift[u] = _mm256_set1_epi32(prob_bits as i32);
        bias[u] = _mm256_set1_epi8(run.out.bias() as i8);
        p[u] = *run.pos;
        // SAFETY: `offsets[u]` holds 8 i32, `states` 4 x 8 u32.
        unsafe {
            lane_offsets[u] = _mm256_loadu_si256(offsets[u].as_ptr().cast());
            for (r, x) in x[u].iter_mut().enumerate() {
                *x = _mm256_loadu_si256(run.states.as_ptr().add(8 * r).cast());
            }
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
        // Registers 0 and 1 of a unit hold the lanes of the group's first half, 2 and 3 the
        // second; with `BY_LANE` each lane gathers at its class's offset from the unit's first
        // table's entries, its classes of the group in `lane_classes` as its symbols will be
        // in `acc`.
        let entries: [[*const u32; 2]; N] =
            std::array::from_fn(|u| units[u].half_entries(done, BY_LANE));
        let lane_classes: [[__m256i; 4]; N] = std::array::from_fn(|u| match &units[u].lanes {
            Some(lanes) if BY_LANE => {
                let at = lanes.phases[done] as usize;
                let group = &lanes.pattern[at..at + GROUP];
                // SAFETY: `group` is GROUP = 4 x 32 bytes; register r loads bytes 32r..32r+31.
                std::array::from_fn(|r| unsafe {
                    _mm256_loadu_si256(group.as_ptr().add(32 * r).cast())
                })
            }
            _ => [zero; 4],
        });
        let mut read = [0usize; N];
        let mut acc = [[zero; 4]; N];
        for step in 0..4 {
            for r in 0..4 {
                for u in 0..N {
                    let xr = x[u][r];
                    let slot = _mm256_and_si256(xr, mask[u]);
                    let index = if BY_LANE {
                        // The permute reads an index's low 3 bits: byte `step` of the classes,
                        // shifted down, needs no mask.
                        let class =
                            _mm256_srl_epi32(lane_classes[u][r], _mm_cvtsi32_si128(8 * step));
                        _mm256_add_epi32(slot, _mm256_permutevar8x32_epi32(lane_offsets[u], class))
                    } else {
                        slot
                    };
                    // SAFETY: every slot is below `SLOTS` (masked) and lands in a table's
                    // entries (`SLOTS` u32s; with `BY_LANE`, at its lane's table's offset, as
                    // the caller guarantees).
                    let e = unsafe { _mm256_i32gather_epi32::<4>(entries[u][r / 2].cast(), index) };
                    let q = _mm256_srlv_epi32(xr, shift[u]);
                    let freq_m1 = _mm256_and_si256(_mm256_srli_epi32::<8>(e), freq_mask);
                    // freq * q + bias, with freq = freq_m1 + 1.
                    let xr = _mm256_add_epi32(
                        _mm256_mullo_epi32(freq_m1, q),
                        _mm256_add_epi32(q, _mm256_srli_epi32::<20>(e)),
                    );
                    // Lanes below 2^16 take the next words, in increasing lane order.
                    let need = _mm256_cmpeq_epi32(_mm256_srli_epi32::<16>(xr), zero);
                    let m = _mm256_movemask_ps(_mm256_castsi256_ps(need)) as usize;
                    // SAFETY: a group takes at most GROUP words, so `read <= GROUP` and the 8
                    // words read lie inside the window of `WINDOW = GROUP + 16` words.
                    let next = unsafe { _mm_loadu_si128(w[u].add(2 * read[u]).cast()) };
                    let next = _mm256_permutevar8x32_epi32(
                        _mm256_cvtepu16_epi32(next),
                        lut_row(&EXPAND, m),
                    );
                    x[u][r] = _mm256_or_si256(
                        _mm256_sllv_epi32(xr, _mm256_and_si256(need, sixteen)),
                        _mm256_and_si256(next, need),
                    );
                    read[u] += m.count_ones() as usize;
                    // The symbol is the entry's low byte: after 4 steps byte j of a lane's
                    // word is its symbol of step j.
                    acc[u][r] = _mm256_or_si256(
                        _mm256_srli_epi32::<8>(acc[u][r]),
                        _mm256_slli_epi32::<24>(e),
                    );
                }
            }
        }
        for (u, run) in units.iter_mut().enumerate() {
            let group = run.out.next_group();
            for (r, acc) in acc[u].iter().enumerate() {
                let acc = _mm256_xor_si256(*acc, bias[u]);
                // SAFETY: `group` is GROUP = 4 x 32 bytes; register r stores bytes 32r..32r+31.
                unsafe { _mm256_storeu_si256(group.as_mut_ptr().add(32 * r).cast(), acc) };
            }
            p[u] += read[u];
        }
        done += 1;
    }
    for (u, run) in units.iter_mut().enumerate() {
        for (r, x) in x[u].iter().enumerate() {
            // SAFETY: as for the loads.
            unsafe { _mm256_storeu_si256(run.states.as_mut_ptr().add(8 * r).cast(), *x) };
        }
        *run.pos = p[u];
    }
    done
}

/// See [`super::Kernel::encode_run`].
///
/// # Safety
/// The CPU must run AVX2, POPCNT and BMI2; `prob_bits` must be in `8..=12`; `groups` is
/// `classes.len()` groups; `*cur <= buf.len() / 2` and
/// `*cur >= GROUP * groups.len() + ENCODE_HEADROOM`.
#[target_feature(enable = "avx2,popcnt,bmi2")]
pub(super) unsafe fn encode_run(
    states: &mut [u32; LANES],
    groups: &[&[u8; GROUP]],
    tables: &[EncodeTable],
    classes: &[[u8; 2]],
    prob_bits: u32,
    buf: &mut [std::mem::MaybeUninit<u8>],
    cur: &mut usize,
) -> bool {
    let tables_of = Groups { classes, pattern: &[], phases: &[], offsets: [0; 8] };
    let group = |k: usize| groups[k];
    // SAFETY: as the caller guarantees.
    unsafe { encode_groups::<false>(states, group, tables, &tables_of, prob_bits, buf, cur) }
}

/// See [`super::Kernel::encode_lane_run`]: [`encode_run`]'s steps on groups whose symbols take
/// their tables lane by lane (group `k` of `symbols` with the classes `pattern[phases[k]..]`,
/// laid out as the symbols), each lane's constants gathered at its table's offset in bytes from
/// the first table's (`offsets`, by class).
///
/// # Safety
/// As [`encode_run`], with `phases.len()` groups; at most 8 tables, every class of `pattern`
/// below their number, and `offsets[c]` the distance in bytes from `tables[0]`'s constants to
/// `tables[c]`'s.
#[target_feature(enable = "avx2,popcnt,bmi2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn encode_lane_run(
    states: &mut [u32; LANES],
    symbols: &[u8],
    tables: &[EncodeTable],
    pattern: &[u8],
    phases: &[u32],
    offsets: [i32; 8],
    prob_bits: u32,
    buf: &mut [std::mem::MaybeUninit<u8>],
    cur: &mut usize,
) -> bool {
    let tables_of = Groups { classes: &[], pattern, phases, offsets };
    let group = |k: usize| -> &[u8; GROUP] {
        symbols[k * GROUP..][..GROUP].try_into().expect("a group a phase")
    };
    // SAFETY: as the caller guarantees.
    unsafe { encode_groups::<true>(states, group, tables, &tables_of, prob_bits, buf, cur) }
}

/// Where the groups of [`encode_groups`] take their tables: a table a half (`classes`), or with
/// `BY_LANE` a table a symbol (`pattern` at `phases`, through `offsets`).
struct Groups<'a> {
    classes: &'a [[u8; 2]],
    pattern: &'a [u8],
    phases: &'a [u32],
    offsets: [i32; 8],
}

/// [`encode_run`] and [`encode_lane_run`].
///
/// # Safety
/// As theirs.
#[inline]
#[target_feature(enable = "avx2,popcnt,bmi2")]
unsafe fn encode_groups<'s, const BY_LANE: bool>(
    states: &mut [u32; LANES],
    group_at: impl Fn(usize) -> &'s [u8; GROUP],
    tables: &[EncodeTable],
    groups: &Groups<'_>,
    prob_bits: u32,
    buf: &mut [std::mem::MaybeUninit<u8>],
    cur: &mut usize,
) -> bool {
    let renorm_shift = _mm256_set1_epi32(32 - prob_bits as i32);
    let total = _mm256_set1_epi32(1 << prob_bits);
    let byte = _mm256_set1_epi32(0xff);
    let bias_mask = _mm256_set1_epi32(0x3fff);
    let freq_mask = _mm256_set1_epi32(0x1fff);
    let sixteen = _mm256_set1_epi32(16);
    // SAFETY: `offsets` holds 8 i32.
    let offsets = unsafe { _mm256_loadu_si256(groups.offsets.as_ptr().cast()) };
    // Low 16 bits of each u32 into the low 8 bytes of each 128-bit half.
    let low_halves = _mm256_setr_epi8(
        0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 4, 5, 8, 9, 12, 13, -1, -1,
        -1, -1, -1, -1, -1, -1,
    );
    let mut x = [_mm256_setzero_si256(); 4];
    for (r, x) in x.iter_mut().enumerate() {
        // SAFETY: `states` holds 4 x 8 u32.
        *x = unsafe { _mm256_loadu_si256(states.as_ptr().add(8 * r).cast()) };
    }
    let mut c = *cur;
    let out = buf.as_mut_ptr().cast::<u8>();
    // The least frequency met in each lane: 0 where a symbol had none.
    let mut least = _mm256_set1_epi32(-1);
    let n_groups = if BY_LANE { groups.phases.len() } else { groups.classes.len() };
    for k in (0..n_groups).rev() {
        if let Some(ahead) = k.checked_sub(super::avx512::PREFETCH_GROUPS).map(&group_at) {
            _mm_prefetch::<_MM_HINT_T0>(ahead.as_ptr().cast());
            _mm_prefetch::<_MM_HINT_T0>(ahead[64..].as_ptr().cast());
        }
        let group = group_at(k);
        // Registers 0 and 1 hold the group's first half (lanes 0..16), 2 and 3 its second;
        // with `BY_LANE` every lane gathers from the first table's constants at its class's
        // offset, its classes laid out as its symbols in `lane_classes`.
        let table = if BY_LANE {
            [&tables[0].simd; 2]
        } else {
            groups.classes[k].map(|c| &tables[usize::from(c)].simd)
        };
        // The group's classes, laid out as its symbols (with `BY_LANE`; else unused).
        let classes = match groups.phases.get(k) {
            Some(&at) if BY_LANE => &groups.pattern[at as usize..at as usize + GROUP],
            _ => group,
        };
        // SAFETY: `group` and `classes` are 128 bytes; register r holds the runs of lanes
        // 8r..8r+7.
        let (v, lane_classes): ([__m256i; 4], [__m256i; 4]) = unsafe {
            (
                std::array::from_fn(|r| _mm256_loadu_si256(group.as_ptr().add(32 * r).cast())),
                std::array::from_fn(|r| _mm256_loadu_si256(classes.as_ptr().add(32 * r).cast())),
            )
        };
        for j in (0..4).rev() {
            for r in (0..4).rev() {
                let xr = x[r];
                let shift = _mm256_set1_epi32(8 * j);
                let s = _mm256_and_si256(_mm256_srlv_epi32(v[r], shift), byte);
                // SAFETY: symbols are below 256 and the tables have 256 entries (with
                // `BY_LANE` each lane's at its table's offset, as the caller guarantees).
                let (info, magic) = unsafe {
                    if BY_LANE {
                        // The permute reads an index's low 3 bits: byte `j` of the classes,
                        // shifted down, needs no mask.
                        let class = _mm256_srlv_epi32(lane_classes[r], shift);
                        let at = _mm256_add_epi32(
                            _mm256_slli_epi32::<2>(s),
                            _mm256_permutevar8x32_epi32(offsets, class),
                        );
                        (
                            _mm256_i32gather_epi32::<1>(table[0].info.as_ptr().cast(), at),
                            _mm256_i32gather_epi32::<1>(table[0].magic32.as_ptr().cast(), at),
                        )
                    } else {
                        (
                            _mm256_i32gather_epi32::<4>(table[r / 2].info.as_ptr().cast(), s),
                            _mm256_i32gather_epi32::<4>(table[r / 2].magic32.as_ptr().cast(), s),
                        )
                    }
                };
                let freq = _mm256_and_si256(info, freq_mask);
                least = _mm256_min_epu32(least, freq);
                // Emit a word when x >= freq << (32 - prob_bits); both sides are below 2^13.
                let keep = _mm256_cmpgt_epi32(freq, _mm256_srlv_epi32(xr, renorm_shift));
                let m = !_mm256_movemask_ps(_mm256_castsi256_ps(keep)) as usize & 0xff;
                let count = m.count_ones() as usize;
                let packed = _mm256_permutevar8x32_epi32(xr, lut_row(&COMPRESS_HIGH, m));
                let packed =
                    _mm256_permute4x64_epi64::<0b1000>(_mm256_shuffle_epi8(packed, low_halves));
                // SAFETY: `c >= ENCODE_HEADROOM + (symbols still to code)` >= 8, so the 8 words
                // below `c` are inside `buf`; the valid ones land in [c - count, c), the others
                // below, on words not yet written.
                unsafe {
                    _mm_storeu_si128(out.add(2 * (c - 8)).cast(), _mm256_castsi256_si128(packed))
                };
                c -= count;
                let xr = _mm256_srlv_epi32(xr, _mm256_andnot_si256(keep, sixteen));
                // q = x / freq: t = mulhi(x, magic); q = (t + (x - t) / 2) >> shift.
                let even = _mm256_srli_epi64::<32>(_mm256_mul_epu32(xr, magic));
                let odd =
                    _mm256_mul_epu32(_mm256_srli_epi64::<32>(xr), _mm256_srli_epi64::<32>(magic));
                let t = _mm256_blend_epi32::<0b1010_1010>(even, odd);
                let q = _mm256_add_epi32(t, _mm256_srli_epi32::<1>(_mm256_sub_epi32(xr, t)));
                let q = _mm256_srlv_epi32(q, _mm256_srli_epi32::<27>(info));
                let bias = _mm256_and_si256(_mm256_srli_epi32::<13>(info), bias_mask);
                // x' = (q << prob_bits) + (x - q * freq) + cum = x + q * (M - freq) + bias
                // (freq 1's quotient comes out as x - 1, which its bias makes up for).
                x[r] = _mm256_add_epi32(
                    _mm256_add_epi32(xr, _mm256_mullo_epi32(q, _mm256_sub_epi32(total, freq))),
                    bias,
                );
            }
        }
    }
    for (r, x) in x.iter().enumerate() {
        // SAFETY: as for the loads.
        unsafe { _mm256_storeu_si256(states.as_mut_ptr().add(8 * r).cast(), *x) };
    }
    *cur = c;
    _mm256_testz_si256(_mm256_cmpeq_epi32(least, _mm256_setzero_si256()), _mm256_set1_epi32(-1))
        == 1
}

/// See [`super::SeenBytes::add`]: the values not seen yet as a 256-bit map (bit `v` of byte
/// `v / 8`, from one byte-sign mask of each 32 bytes of `unseen`), each 32-byte step of
/// `bytes` looked up in it by byte shuffles (its byte `v / 8` from one of two 16-byte halves,
/// then bit `v % 8`); a step that meets a new value marks it and rebuilds the map.
///
/// # Safety
/// The CPU must run AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn mark_seen(bytes: &[u8], unseen: &mut [u8; 256]) {
    // The map's two halves, each in both 128-bit lanes (a byte shuffle reads within its lane).
    let load = |unseen: &[u8; 256]| {
        let words: [u32; 8] = std::array::from_fn(|k| {
            // SAFETY: `unseen` holds 8 x 32 bytes.
            let v = unsafe { _mm256_loadu_si256(unseen.as_ptr().add(32 * k).cast()) };
            _mm256_movemask_epi8(v) as u32
        });
        // SAFETY: `words` is 32 bytes.
        let map = unsafe { _mm256_loadu_si256(words.as_ptr().cast()) };
        (
            _mm256_broadcastsi128_si256(_mm256_castsi256_si128(map)),
            _mm256_broadcastsi128_si256(_mm256_extracti128_si256::<1>(map)),
        )
    };
    let (mut low, mut high) = load(unseen);
    let bits = _mm256_setr_epi8(
        1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128,
        1, 2, 4, 8, 16, 32, 64, -128,
    );
    let (five, seven) = (_mm256_set1_epi8(0x1f), _mm256_set1_epi8(7));
    // Map bytes 0..16 are looked up at `v / 8 + 0x70` (bit 7 set, a zero, for 16..32), bytes
    // 16..32 at `v / 8 - 16` (bit 7 set for 0..16).
    let (to_low, to_high) = (_mm256_set1_epi8(0x70), _mm256_set1_epi8(16));
    let mut chunks = bytes.chunks_exact(32);
    for chunk in &mut chunks {
        // SAFETY: `chunk` is 32 bytes.
        let v = unsafe { _mm256_loadu_si256(chunk.as_ptr().cast()) };
        let at = _mm256_and_si256(_mm256_srli_epi16::<3>(v), five);
        let byte = _mm256_or_si256(
            _mm256_shuffle_epi8(low, _mm256_adds_epu8(at, to_low)),
            _mm256_shuffle_epi8(high, _mm256_sub_epi8(at, to_high)),
        );
        let new = _mm256_and_si256(byte, _mm256_shuffle_epi8(bits, _mm256_and_si256(v, seven)));
        if _mm256_testz_si256(new, new) == 0 {
            let zero = _mm256_setzero_si256();
            let mut m = !(_mm256_movemask_epi8(_mm256_cmpeq_epi8(new, zero)) as u32);
            while m != 0 {
                unseen[usize::from(chunk[m.trailing_zeros() as usize])] = 0;
                m &= m - 1;
            }
            (low, high) = load(unseen);
        }
    }
    for &b in chunks.remainder() {
        unseen[usize::from(b)] = 0;
    }
}
