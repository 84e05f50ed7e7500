//! GGUF blocks of `K` one-byte head fields (the bytes of fp16 scales) followed by `N` quant
//! bytes (Q4_0, Q4_1, Q8_0, Q8_1) split into planes and merged back whole vectors at a time,
//! with AVX-512 VBMI byte permutes.
//!
//! The byte loops move a block's heads a byte at a time (five stores for a 20-byte Q4_1
//! block), which made the merge a fifth of a GGUF decode and the split a seventh of its encode.
//! Here blocks go in groups of `G = 64 / K`: a group's heads are then exactly one register
//! (`K` plane runs of `G` bytes) and its blocks exactly `(K + N) / K` registers (for every
//! layout above), each built from a window of quants and the heads register by two permutes
//! and a blend. Whole groups are done here (a window that reaches past its slice is a masked
//! load); the caller finishes the last blocks, fewer than a group, with its byte loops, which
//! produce the same bytes.

#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m512i, _MM_HINT_T0, _mm_loadu_si128, _mm_prefetch, _mm_storeu_si128, _mm256_loadu_si256,
    _mm256_storeu_si256, _mm512_castsi128_si512, _mm512_castsi256_si512, _mm512_extracti32x4_epi32,
    _mm512_extracti64x4_epi64, _mm512_inserti32x4, _mm512_inserti64x4, _mm512_loadu_si512,
    _mm512_mask_blend_epi8, _mm512_mask_permutexvar_epi8, _mm512_maskz_loadu_epi8,
    _mm512_permutex2var_epi8, _mm512_permutexvar_epi8, _mm512_setzero_si512, _mm512_storeu_si512,
};

use super::PlaneByte;

/// Registers of blocks in a group, at most: Q8_0 (`K = 2`, `N = 32`) has 17.
const MAX_VECTORS: usize = 17;

/// Where each byte of a group's block registers comes from.
struct GroupMap {
    /// Block registers in a group: `(K + N) / K`.
    vectors: usize,
    /// Per block register: the group's quant its window of 64 quants starts at.
    quant_from: [usize; MAX_VECTORS],
    /// Per block register and byte: the byte of its quant window (quant bytes).
    from_quants: [[u8; 64]; MAX_VECTORS],
    /// Per block register and byte: the byte of the heads register (head bytes).
    from_heads: [[u8; 64]; MAX_VECTORS],
    /// Per block register: its head bytes, one bit each.
    heads: [u64; MAX_VECTORS],
    /// Per block register and heads byte: the register's byte it comes from (split).
    to_heads: [[u8; 64]; MAX_VECTORS],
    /// Per block register: the heads bytes it holds, one bit each (split).
    holds_heads: [u64; MAX_VECTORS],
}

impl GroupMap {
    /// The map of blocks of `k` head bytes and `n` quants; `None` unless `k` and `n` divide 64
    /// and a group of `64 / k` blocks is whole registers. Built at compile time
    /// ([`Layout::MAP`]).
    const fn new(k: usize, n: usize) -> Option<GroupMap> {
        if k == 0 || n == 0 || 64 % k != 0 || 64 % n != 0 || !(k + n).is_multiple_of(k) {
            return None;
        }
        let (block, group, vectors) = (k + n, 64 / k, (k + n) / k);
        if vectors > MAX_VECTORS {
            return None;
        }
        let mut map = GroupMap {
            vectors,
            quant_from: [0; MAX_VECTORS],
            from_quants: [[0; 64]; MAX_VECTORS],
            from_heads: [[0; 64]; MAX_VECTORS],
            heads: [0; MAX_VECTORS],
            to_heads: [[0; 64]; MAX_VECTORS],
            holds_heads: [0; MAX_VECTORS],
        };
        let mut v = 0;
        while v < vectors {
            // The register's first quant: its window starts there.
            let mut first = usize::MAX;
            let mut p = 0;
            while p < 64 {
                let (b, within) = ((64 * v + p) / block, (64 * v + p) % block);
                if within < k {
                    let h = within * group + b;
                    map.heads[v] |= 1 << p;
                    map.from_heads[v][p] = h as u8;
                    map.to_heads[v][h] = p as u8;
                    map.holds_heads[v] |= 1 << h;
                } else {
                    let t = b * n + within - k;
                    if first == usize::MAX {
                        first = t;
                    }
                    // The quants of 64 bytes of blocks are consecutive: fewer than 64 apart.
                    map.from_quants[v][p] = (t - first) as u8;
                }
                p += 1;
            }
            map.quant_from[v] = if first == usize::MAX { 0 } else { first };
            v += 1;
        }
        Some(map)
    }
}

/// The layout of blocks of `K` heads and `N` quants, its map built at compile time.
struct Layout<const K: usize, const N: usize>;

impl<const K: usize, const N: usize> Layout<K, N> {
    const MAP: Option<GroupMap> = GroupMap::new(K, N);
}

/// Whether this CPU runs the kernels below (AVX-512 F, BW and VBMI), unless the scalar paths
/// are forced as for the coder (`super::Vectors::detected`). Read once.
pub(super) fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        super::Vectors::detected() == super::Vectors::Avx512
            && std::arch::is_x86_feature_detected!("avx512vbmi")
    })
}

/// The map of blocks of `K` heads and `N` quants and how many whole groups of them fit in
/// `blocks_len` bytes of blocks, `quants_len` of quants and head planes of at least `heads_len`
/// bytes; `None` where the layout has no kernel or the CPU lacks AVX-512 VBMI.
fn whole_groups<const K: usize, const N: usize>(
    blocks_len: usize,
    quants_len: usize,
    heads_len: Option<usize>,
) -> Option<(&'static GroupMap, usize)> {
    let map: &'static GroupMap = Layout::<K, N>::MAP.as_ref()?;
    if !available() {
        return None;
    }
    let blocks = (blocks_len / (K + N)).min(quants_len / N).min(heads_len.unwrap_or(0));
    Some((map, blocks / (64 / K)))
}

/// Merges the first blocks of `out` (`K` head bytes from `heads[j]`, then `N` from `quants`)
/// in whole groups; returns how many blocks it wrote (0 without AVX-512 VBMI). The caller has
/// checked the lengths: `heads[j]` one byte a block, `quants` `N` a block.
pub(super) fn merge<B: PlaneByte, const K: usize, const N: usize>(
    out: &mut [B],
    heads: [&[u8]; K],
    quants: &[u8],
) -> usize {
    let heads_len = heads.iter().map(|h| h.len()).min();
    let Some((map, groups)) = whole_groups::<K, N>(out.len(), quants.len(), heads_len) else {
        return 0;
    };
    // SAFETY: AVX-512 F, BW and VBMI were detected; the stores and the heads' loads stay
    // inside the first `groups` groups of each slice, and the quants' loads inside `quants`
    // (masked where a window reaches past it).
    unsafe {
        merge_groups::<K>(
            out.as_mut_ptr().cast(),
            heads.map(<[u8]>::as_ptr),
            quants,
            N,
            groups,
            map,
        )
    };
    groups * (64 / K)
}

/// Splits the first blocks of `blocks` into `heads` and `quants` as [`merge`] merges them;
/// returns how many blocks it split.
pub(super) fn split<B: PlaneByte, const K: usize, const N: usize>(
    blocks: &[u8],
    heads: [&mut [B]; K],
    quants: &mut [B],
) -> usize {
    let heads_len = heads.iter().map(|h| h.len()).min();
    let Some((map, groups)) = whole_groups::<K, N>(blocks.len(), quants.len(), heads_len) else {
        return 0;
    };
    let heads = heads.map(|h| h.as_mut_ptr().cast::<u8>());
    // SAFETY: as in `merge`, the blocks' loads masked where a window reaches past them.
    unsafe { split_groups::<K>(blocks, heads, quants.as_mut_ptr().cast(), N, groups, map) };
    groups * (64 / K)
}

/// The 64 bytes from `p`, of which the first `available` (if fewer) are read and the rest
/// zeros: a window at the end of a slice reads nothing past it.
///
/// # Safety
/// AVX-512 F and BW; `p` readable for `available.min(64)` bytes.
#[inline(always)]
unsafe fn load_window(p: *const u8, available: usize) -> __m512i {
    // SAFETY: per the contract; a masked load touches only its unmasked bytes.
    unsafe {
        if available >= 64 {
            _mm512_loadu_si512(p.cast())
        } else {
            _mm512_maskz_loadu_epi8((1u64 << available) - 1, p.cast())
        }
    }
}

/// The heads register of the group whose first block is `at`: `G = 64 / K` bytes of each
/// head plane, plane after plane.
///
/// # Safety
/// AVX-512 F; each `heads[j]` readable for `at + 64 / K` bytes.
#[inline(always)]
unsafe fn load_heads<const K: usize>(heads: &[*const u8; K], at: usize) -> __m512i {
    // SAFETY: per the contract.
    unsafe {
        match K {
            2 => _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(heads[0].add(at).cast())),
                _mm256_loadu_si256(heads[1].add(at).cast()),
            ),
            4 => {
                let h = _mm512_castsi128_si512(_mm_loadu_si128(heads[0].add(at).cast()));
                let h = _mm512_inserti32x4::<1>(h, _mm_loadu_si128(heads[1].add(at).cast()));
                let h = _mm512_inserti32x4::<2>(h, _mm_loadu_si128(heads[2].add(at).cast()));
                _mm512_inserti32x4::<3>(h, _mm_loadu_si128(heads[3].add(at).cast()))
            }
            _ => unreachable!("groups of 2 or 4 head bytes only"),
        }
    }
}

/// Stores a heads register (see [`load_heads`]).
///
/// # Safety
/// AVX-512 F; each `heads[j]` writable for `at + 64 / K` bytes.
#[inline(always)]
unsafe fn store_heads<const K: usize>(heads: &[*mut u8; K], at: usize, h: __m512i) {
    // SAFETY: per the contract.
    unsafe {
        match K {
            2 => {
                _mm256_storeu_si256(heads[0].add(at).cast(), _mm512_extracti64x4_epi64::<0>(h));
                _mm256_storeu_si256(heads[1].add(at).cast(), _mm512_extracti64x4_epi64::<1>(h));
            }
            4 => {
                _mm_storeu_si128(heads[0].add(at).cast(), _mm512_extracti32x4_epi32::<0>(h));
                _mm_storeu_si128(heads[1].add(at).cast(), _mm512_extracti32x4_epi32::<1>(h));
                _mm_storeu_si128(heads[2].add(at).cast(), _mm512_extracti32x4_epi32::<2>(h));
                _mm_storeu_si128(heads[3].add(at).cast(), _mm512_extracti32x4_epi32::<3>(h));
            }
            _ => unreachable!("groups of 2 or 4 head bytes only"),
        }
    }
}

/// # Safety
/// AVX-512 F, BW and VBMI; `out` and `heads` hold `groups` whole groups, `quants` at least
/// their quants.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn merge_groups<const K: usize>(
    out: *mut u8,
    heads: [*const u8; K],
    quants: &[u8],
    n: usize,
    groups: usize,
    map: &GroupMap,
) {
    let (block, group) = (K + n, 64 / K);
    // SAFETY (all loads and stores): per the contract.
    unsafe {
        let load = |p: *const u8| _mm512_loadu_si512(p.cast());
        let from_quants: [__m512i; MAX_VECTORS] =
            std::array::from_fn(|v| load(map.from_quants[v].as_ptr()));
        let from_heads: [__m512i; MAX_VECTORS] =
            std::array::from_fn(|v| load(map.from_heads[v].as_ptr()));
        for g in 0..groups {
            let h = load_heads::<K>(&heads, g * group);
            let o = out.add(g * group * block);
            for v in 0..map.vectors {
                let first = g * group * n + map.quant_from[v];
                let window = load_window(quants.as_ptr().add(first), quants.len() - first);
                let from_q = _mm512_permutexvar_epi8(from_quants[v], window);
                let from_h = _mm512_permutexvar_epi8(from_heads[v], h);
                let bytes = _mm512_mask_blend_epi8(map.heads[v], from_q, from_h);
                _mm512_storeu_si512(o.add(64 * v).cast(), bytes);
            }
        }
    }
}

/// Bytes ahead of a group that a split asks for: it is the first pass to read a tensor, from
/// memory, and the CPU's own prefetchers stop at every 4 KiB page.
const SOURCE_AHEAD: usize = 4096;

/// # Safety
/// AVX-512 F, BW and VBMI; `blocks`, `heads` and `quants` hold `groups` whole groups.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn split_groups<const K: usize>(
    blocks: &[u8],
    heads: [*mut u8; K],
    quants: *mut u8,
    n: usize,
    groups: usize,
    map: &GroupMap,
) {
    let (block, group) = (K + n, 64 / K);
    // A run of 64 quants (those of 64 / N blocks) from a window of two registers starting at
    // its first block's first quant: quant t is byte t % N of the run's block t / N.
    let mut window_index = [0u8; 64];
    for (t, w) in window_index.iter_mut().enumerate() {
        *w = (t / n * block + t % n) as u8;
    }
    let runs = group * n / 64;
    // SAFETY (all loads and stores): per the contract.
    unsafe {
        let load = |p: *const u8| _mm512_loadu_si512(p.cast());
        let window_index = load(window_index.as_ptr());
        let to_heads: [__m512i; MAX_VECTORS] =
            std::array::from_fn(|v| load(map.to_heads[v].as_ptr()));
        for g in 0..groups {
            let at = g * group * block;
            let b = blocks.as_ptr().add(at);
            for line in (0..group * block).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(SOURCE_AHEAD + line).cast());
            }
            let mut h = _mm512_setzero_si512();
            let held = map.holds_heads.iter().zip(&to_heads).take(map.vectors);
            for (v, (&holds, &to_heads)) in held.enumerate() {
                h = _mm512_mask_permutexvar_epi8(h, holds, to_heads, load(b.add(64 * v)));
            }
            store_heads::<K>(&heads, g * group, h);
            let q = quants.add(g * group * n);
            for r in 0..runs {
                // Run r starts with the first quant of the group's block 64r / N; its window
                // of two registers may reach past the blocks (by at most 64 - N bytes).
                let w = at + 64 * r / n * block + K;
                let (first, second) = (
                    load_window(blocks.as_ptr().add(w), blocks.len() - w),
                    load_window(
                        blocks.as_ptr().wrapping_add(w + 64),
                        blocks.len().saturating_sub(w + 64),
                    ),
                );
                let run = _mm512_permutex2var_epi8(first, window_index, second);
                _mm512_storeu_si512(q.add(64 * r).cast(), run);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of `K` heads and `N` quants: the kernels' part of a split equals the definition
    /// (head `j` is byte `j` of each block, the quants the rest, in order), a merge gives the
    /// blocks back, and the bytes past their part are left alone, on lengths around whole
    /// groups. Fails, rather than passing on byte loops alone, where the CPU has the kernels
    /// and they did nothing.
    fn shape<const K: usize, const N: usize>() {
        let (block, group) = (K + N, 64 / K);
        for n_blocks in [0, 1, group - 1, group, group + 1, 3 * group + 5, 40 * group, 1001] {
            let bytes: Vec<u8> = (0..n_blocks * block).map(|i| (i * 131 % 251) as u8).collect();
            let heads: Vec<Vec<u8>> =
                (0..K).map(|j| bytes.chunks_exact(block).map(|b| b[j]).collect()).collect();
            let quants: Vec<u8> =
                bytes.chunks_exact(block).flat_map(|b| &b[K..]).copied().collect();

            let mut split_heads = vec![vec![0xa5u8; n_blocks]; K];
            let mut split_quants = vec![0xa5u8; n_blocks * N];
            let done = {
                let mut it = split_heads.iter_mut();
                let outs: [&mut [u8]; K] =
                    std::array::from_fn(|_| it.next().unwrap().as_mut_slice());
                split::<u8, K, N>(&bytes, outs, &mut split_quants)
            };
            for j in 0..K {
                assert_eq!(
                    split_heads[j][..done],
                    heads[j][..done],
                    "K={K} N={N} {n_blocks}: head {j}"
                );
                assert!(
                    split_heads[j][done..].iter().all(|&b| b == 0xa5),
                    "K={K} N={N}: past the part"
                );
            }
            assert_eq!(
                split_quants[..done * N],
                quants[..done * N],
                "K={K} N={N} {n_blocks}: quants"
            );
            assert!(
                split_quants[done * N..].iter().all(|&b| b == 0xa5),
                "K={K} N={N}: past the part"
            );

            let mut merged = vec![0xa5u8; bytes.len()];
            let refs: [&[u8]; K] = std::array::from_fn(|j| heads[j].as_slice());
            let merged_blocks = merge::<u8, K, N>(&mut merged, refs, &quants);
            assert_eq!(
                merged[..merged_blocks * block],
                bytes[..merged_blocks * block],
                "K={K} N={N} {n_blocks}: merge"
            );
            assert!(
                merged[merged_blocks * block..].iter().all(|&b| b == 0xa5),
                "K={K} N={N}: past the part"
            );

            // Every whole group, the last ones' windows reaching past the slices included.
            assert_eq!(done, n_blocks / group * group, "K={K} N={N} {n_blocks}: split");
            assert_eq!(merged_blocks, n_blocks / group * group, "K={K} N={N} {n_blocks}: merge");
        }
    }

    #[test]
    fn kernels_split_and_merge_every_layout_as_defined() {
        if !available() {
            println!("skipping: this CPU lacks AVX-512 VBMI (or the scalar paths are forced)");
            return;
        }
        shape::<2, 16>(); // Q4_0
        shape::<2, 32>(); // Q8_0
        shape::<4, 16>(); // Q4_1
        shape::<4, 32>(); // Q8_1
    }
}
