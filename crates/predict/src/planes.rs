//! Byte planes: how a transform splits a tensor's bytes and merges them back
//! (docs/FORMAT.md, "Transforms").

use std::mem::MaybeUninit;

#[cfg(target_arch = "x86_64")]
mod blocks_avx512;

use wcodec_format::blocks::block_fields;
use wcodec_format::{Dtype, Transform};

/// Whether plane `j` of `transform` holds two's-complement bytes (predictors then work on
/// `byte ^ 0x80`, which orders signed values like unsigned ones).
pub fn plane_is_signed(dtype: Dtype, transform: Transform, j: usize) -> bool {
    match transform {
        Transform::Identity => dtype.is_signed_int() && dtype.size() == 1,
        Transform::BytePlanes => dtype.is_signed_int() && j + 1 == dtype.size(),
        Transform::Bf16Split | Transform::F32Split => false,
        Transform::BlockFields => block_fields(dtype).is_some_and(|f| f[j].signed),
    }
}

/// A byte of a plane that [`split_into`] writes: one already initialised (`u8`), or one of
/// memory not yet written (`MaybeUninit<u8>`), so that a caller can split into a fresh
/// allocation without zeroing it first (a pass over memory as long as the split's own).
pub trait PlaneByte: Sized {
    fn set(&mut self, value: u8);

    /// Sets `dst` to `src` (a copy, of one length).
    fn set_all(dst: &mut [Self], src: &[u8]);

    /// Sets `dst` to `src`: a move of `N` bytes, not a loop (which stays a byte at a time).
    fn set_array<const N: usize>(dst: &mut [Self; N], src: &[u8; N]);
}

impl PlaneByte for u8 {
    #[inline(always)]
    fn set(&mut self, value: u8) {
        *self = value;
    }

    #[inline(always)]
    fn set_all(dst: &mut [u8], src: &[u8]) {
        dst.copy_from_slice(src);
    }

    #[inline(always)]
    fn set_array<const N: usize>(dst: &mut [u8; N], src: &[u8; N]) {
        *dst = *src;
    }
}

impl PlaneByte for MaybeUninit<u8> {
    #[inline(always)]
    fn set(&mut self, value: u8) {
        self.write(value);
    }

    #[inline(always)]
    fn set_all(dst: &mut [Self], src: &[u8]) {
        assert_eq!(dst.len(), src.len(), "a copy between slices of one length");
        for (d, &s) in dst.iter_mut().zip(src) {
            d.write(s);
        }
    }

    #[inline(always)]
    fn set_array<const N: usize>(dst: &mut [Self; N], src: &[u8; N]) {
        // 16 bytes at a time: the map of a longer array compiles to a call, not a move.
        let (dst16, dst_rest) = dst.as_chunks_mut::<16>();
        let (src16, src_rest) = src.as_chunks::<16>();
        for (d, s) in dst16.iter_mut().zip(src16) {
            *d = s.map(MaybeUninit::new);
        }
        for (d, &s) in dst_rest.iter_mut().zip(src_rest) {
            d.write(s);
        }
    }
}

/// Splits the little-endian u16 elements of `bytes` into two byte planes, element `i` giving
/// `(first[i], second[i]) = f(element)`. 32 elements (64 bytes, one AVX-512 register) at a
/// time through a u16 array, so that the compiler vectorises the loop (shifts and masks on u16
/// lanes, then a pack to bytes) where a loop over byte pairs stays scalar.
#[inline(always)]
fn split_u16<B: PlaneByte>(
    bytes: &[u8],
    first: &mut [B],
    second: &mut [B],
    f: impl Fn(u16) -> (u8, u8),
) {
    const K: usize = 32;
    let blocks =
        bytes.chunks_exact(2 * K).zip(first.chunks_exact_mut(K)).zip(second.chunks_exact_mut(K));
    for ((b, p), q) in blocks {
        // Fixed-size arrays and index loops: what the vectoriser recognises.
        let (b, p, q): (&[u8; 2 * K], &mut [B; K], &mut [B; K]) =
            (b.try_into().expect("2K"), p.try_into().expect("K"), q.try_into().expect("K"));
        let mut words = [0u16; K];
        for k in 0..K {
            words[k] = u16::from_le_bytes([b[2 * k], b[2 * k + 1]]);
        }
        for k in 0..K {
            p[k].set(f(words[k]).0);
        }
        for k in 0..K {
            q[k].set(f(words[k]).1);
        }
    }
    let done = first.len() / K * K;
    let rest = bytes[2 * done..].chunks_exact(2).zip(&mut first[done..]).zip(&mut second[done..]);
    for ((pair, p), q) in rest {
        let (a, b) = f(u16::from_le_bytes([pair[0], pair[1]]));
        p.set(a);
        q.set(b);
    }
}

/// The widest vectors the plane loops are compiled for that this CPU runs, at most the level
/// `WCODEC_SIMD` names (`scalar`, `avx2`, `avx512`) and the baseline where
/// `WCODEC_FORCE_SCALAR` is set (not to `0`), as for the coder. Read once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Vectors {
    /// x86-64's baseline (16 bytes), or another architecture's.
    Baseline,
    /// AVX2: 32 bytes.
    Avx2,
    /// AVX-512 F and BW: 64 bytes.
    Avx512,
}

impl Vectors {
    pub(crate) fn detected() -> Vectors {
        static DETECTED: std::sync::OnceLock<Vectors> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| {
            let forced =
                std::env::var("WCODEC_FORCE_SCALAR").is_ok_and(|v| !v.is_empty() && v != "0");
            let cap = match std::env::var("WCODEC_SIMD").map(|v| v.to_ascii_lowercase()) {
                _ if forced => Vectors::Baseline,
                Ok(v) if v == "scalar" || v == "none" => Vectors::Baseline,
                Ok(v) if v == "avx2" => Vectors::Avx2,
                _ => Vectors::Avx512,
            };
            #[cfg(target_arch = "x86_64")]
            let available = if !std::arch::is_x86_feature_detected!("avx2") {
                Vectors::Baseline
            } else if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                Vectors::Avx512
            } else {
                Vectors::Avx2
            };
            #[cfg(not(target_arch = "x86_64"))]
            let available = Vectors::Baseline;
            available.min(cap)
        })
    }
}

/// [`split_u16`] compiled for AVX-512 where the CPU has it (`blocks_avx512::available`): the
/// same loop, vectorised 64 bytes at a time instead of 16 (x86-64's baseline), the same bytes.
/// The split of a BF16 tensor took 14-18% of its one-thread encode, 12% so, where it waits on
/// the source's loads from memory.
#[inline(always)]
#[allow(unsafe_code)]
fn split_u16_fastest<B: PlaneByte>(
    bytes: &[u8],
    first: &mut [B],
    second: &mut [B],
    f: impl Fn(u16) -> (u8, u8),
) {
    match Vectors::detected() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU runs AVX-512 F and BW (`Vectors::detected`).
        Vectors::Avx512 => unsafe { split_u16_avx512(bytes, first, second, f) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU runs AVX2 (`Vectors::detected`).
        Vectors::Avx2 => unsafe { split_u16_avx2(bytes, first, second, f) },
        _ => split_u16(bytes, first, second, f),
    }
}

/// See [`split_u16_fastest`].
///
/// # Safety
/// The CPU must run AVX2.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2")]
unsafe fn split_u16_avx2<B: PlaneByte>(
    bytes: &[u8],
    first: &mut [B],
    second: &mut [B],
    f: impl Fn(u16) -> (u8, u8),
) {
    split_u16(bytes, first, second, f);
}

/// See [`split_u16_fastest`].
///
/// # Safety
/// The CPU must run AVX-512 F and BW.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn split_u16_avx512<B: PlaneByte>(
    bytes: &[u8],
    first: &mut [B],
    second: &mut [B],
    f: impl Fn(u16) -> (u8, u8),
) {
    split_u16(bytes, first, second, f);
}

/// How `transform` cuts a tensor of `dtype` into planes: the bytes of one *unit* of the source
/// (an element, or a block of a block type) and the bytes a unit puts in each plane. Any run of
/// whole units splits on its own ([`split_into`]), so a large tensor splits in parallel.
pub fn plane_strides(dtype: Dtype, transform: Transform) -> (usize, Vec<usize>) {
    let (unit, planes) = unit_and_planes(dtype, transform);
    (unit, (0..planes).map(|j| plane_stride(dtype, transform, j)).collect())
}

/// [`plane_strides`]' unit and number of planes, without the list (no allocation: merges check
/// their planes a few KiB at a time).
fn unit_and_planes(dtype: Dtype, transform: Transform) -> (usize, usize) {
    match transform {
        Transform::Identity => (1, 1),
        Transform::BytePlanes => (dtype.size(), dtype.size()),
        Transform::Bf16Split => (2, 2),
        Transform::F32Split => (4, 4),
        Transform::BlockFields => (dtype.size(), block_fields(dtype).expect("a block type").len()),
    }
}

/// The bytes a unit puts in plane `j` (one of [`unit_and_planes`]' planes).
fn plane_stride(dtype: Dtype, transform: Transform, j: usize) -> usize {
    match transform {
        Transform::BlockFields => usize::from(block_fields(dtype).expect("a block type")[j].count),
        _ => 1,
    }
}

/// Splits a tensor's bytes into the planes of `transform` (which must support `dtype`).
pub fn split_planes(bytes: &[u8], dtype: Dtype, transform: Transform) -> Vec<Vec<u8>> {
    let (unit, per_unit) = plane_strides(dtype, transform);
    let units = bytes.len() / unit;
    let mut planes: Vec<Vec<u8>> = per_unit.iter().map(|&p| vec![0u8; units * p]).collect();
    let mut outs: Vec<&mut [u8]> = planes.iter_mut().map(Vec::as_mut_slice).collect();
    split_into(bytes, dtype, transform, &mut outs);
    planes
}

/// Panics unless `len` bytes are whole units of `dtype` and the planes (their lengths) are
/// those of `transform` for these units: what `split_into` and `merge_planes` check before
/// their loops, which then write every byte of what they are given.
fn check_lengths(
    dtype: Dtype,
    transform: Transform,
    len: usize,
    planes: impl ExactSizeIterator<Item = usize>,
) {
    let (unit, count) = unit_and_planes(dtype, transform);
    let units = len / unit;
    assert_eq!(len, units * unit, "whole units of {dtype}");
    assert_eq!(planes.len(), count, "the planes of {transform:?}");
    for (j, plane) in planes.enumerate() {
        let p = plane_stride(dtype, transform, j);
        assert_eq!(plane, units * p, "a plane of {units} units of {p} bytes");
    }
}

/// Splits whole units of a tensor (`bytes`, see [`plane_strides`]) into `planes`, plane `j`
/// sized to the units times its bytes a unit. Every byte of every plane is written (so planes
/// of fresh memory, `MaybeUninit<u8>`, are then initialised).
///
/// Panics if a plane's length is not the units times its bytes a unit.
pub fn split_into<B: PlaneByte>(
    bytes: &[u8],
    dtype: Dtype,
    transform: Transform,
    planes: &mut [&mut [B]],
) {
    check_lengths(dtype, transform, bytes.len(), planes.iter().map(|p| p.len()));
    // With the lengths checked, each loop below zips a plane with the units and writes every
    // byte of it.
    match (transform, planes) {
        (Transform::Identity, [plane]) => B::set_all(plane, bytes),
        (Transform::BytePlanes, [low, high]) if dtype.size() == 2 => {
            split_u16_fastest(bytes, low, high, |w| (w as u8, (w >> 8) as u8));
        }
        (Transform::BytePlanes, planes) => {
            let size = dtype.size();
            // Plane by plane, a strided gather the compiler can unroll.
            for (j, plane) in planes.iter_mut().enumerate() {
                for (p, element) in plane.iter_mut().zip(bytes.chunks_exact(size)) {
                    p.set(element[j]);
                }
            }
        }
        (Transform::Bf16Split, [exp, sign_mant]) => {
            split_u16_fastest(bytes, exp, sign_mant, |v| {
                ((v >> 7) as u8, ((v >> 8) as u8 & 0x80) | (v as u8 & 0x7f))
            });
        }
        (Transform::F32Split, [p0, p1, p2, p3]) => {
            for ((((b, e), sm), mid), lo) in bytes
                .chunks_exact(4)
                .zip(p0.iter_mut())
                .zip(p1.iter_mut())
                .zip(p2.iter_mut())
                .zip(p3.iter_mut())
            {
                let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                e.set((v >> 23) as u8);
                sm.set(((v >> 24) as u8 & 0x80) | ((v >> 16) as u8 & 0x7f));
                mid.set((v >> 8) as u8);
                lo.set(v as u8);
            }
        }
        (Transform::BlockFields, planes) => {
            let fields = block_fields(dtype).expect("a block type");
            let block = dtype.size();
            // The common layouts (fp16 scale bytes, then the quants: Q4_0, Q4_1, Q8_0, Q8_1)
            // in one pass, a block at a time, as `merge_planes` does: a pass per one-byte
            // field spends a loop iteration per block on each (GGUF encode 1.1x).
            match (&mut *planes, fields.last().map(|f| (f.offset, f.count, f.step))) {
                ([d0, d1, q], Some((2, 16, 1))) => {
                    return split_blocks::<B, 2, 16>(bytes, [d0, d1], q);
                }
                ([d0, d1, q], Some((2, 32, 1))) => {
                    return split_blocks::<B, 2, 32>(bytes, [d0, d1], q);
                }
                ([d0, d1, m0, m1, q], Some((4, 16, 1))) => {
                    return split_blocks::<B, 4, 16>(bytes, [d0, d1, m0, m1], q);
                }
                ([d0, d1, m0, m1, q], Some((4, 32, 1))) => {
                    return split_blocks::<B, 4, 32>(bytes, [d0, d1, m0, m1], q);
                }
                _ => {}
            }
            // Field by field over all blocks, each a gather the compiler specialises for the
            // common widths (one byte of a scale, 16 or 32 bytes of quants).
            for (f, plane) in fields.iter().zip(planes.iter_mut()) {
                let (offset, count, step) =
                    (usize::from(f.offset), usize::from(f.count), usize::from(f.step));
                let blocks = bytes.chunks_exact(block);
                match (count, step) {
                    (1, _) => gather::<B, 1>(plane, blocks, offset),
                    (16, 1) => gather::<B, 16>(plane, blocks, offset),
                    (32, 1) => gather::<B, 32>(plane, blocks, offset),
                    (_, 1) => {
                        for (dst, b) in plane.chunks_exact_mut(count).zip(blocks) {
                            B::set_all(dst, &b[offset..offset + count]);
                        }
                    }
                    _ => {
                        for (dst, b) in plane.chunks_exact_mut(count).zip(blocks) {
                            for (k, d) in dst.iter_mut().enumerate() {
                                d.set(b[offset + k * step]);
                            }
                        }
                    }
                }
            }
        }
        (transform, planes) => {
            unreachable!("{transform:?} of {dtype} does not make {} planes", planes.len())
        }
    }
}

/// Blocks of `K` one-byte fields (field `j` at byte `j`, to `bytes[j]`) followed by `N` bytes
/// (to `tail`), read a whole block at a time: `merge_blocks` backwards.
#[inline(always)]
fn split_blocks<B: PlaneByte, const K: usize, const N: usize>(
    blocks: &[u8],
    bytes: [&mut &mut [B]; K],
    tail: &mut [B],
) {
    let n = blocks.len() / (K + N);
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut bytes: [&mut [B]; K] = bytes.map(|b| &mut b[..n]);
    // Whole groups of blocks a few registers at a time where the CPU can, the rest here.
    #[cfg(target_arch = "x86_64")]
    let done = blocks_avx512::split::<B, K, N>(blocks, bytes.each_mut().map(|b| &mut **b), tail);
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    let (blocks, tail) = (&blocks[done * (K + N)..], &mut tail[done * N..]);
    let bytes: [&mut [B]; K] = bytes.map(|b| &mut b[done..]);
    for (i, (b, t)) in blocks.chunks_exact(K + N).zip(tail.chunks_exact_mut(N)).enumerate() {
        let (head, quants) = b.split_at(K);
        for (j, &h) in head.iter().enumerate() {
            bytes[j][i].set(h);
        }
        // Fixed sizes, so that the copy is a move of N bytes, not a call.
        let t: &mut [B; N] = t.try_into().expect("N bytes");
        B::set_array(t, <&[u8; N]>::try_from(quants).expect("N bytes"));
    }
}

/// Copies bytes `offset..offset + C` of every block into consecutive `C`-byte slots of `plane`.
fn gather<B: PlaneByte, const C: usize>(
    plane: &mut [B],
    blocks: std::slice::ChunksExact<u8>,
    offset: usize,
) {
    for (dst, b) in plane.chunks_exact_mut(C).zip(blocks) {
        let dst: &mut [B; C] = dst.try_into().expect("C bytes");
        B::set_array(dst, b[offset..offset + C].try_into().expect("C bytes"));
    }
}

/// Merges planes back into the tensor's bytes. `out.len()` must be the tensor's byte length.
/// Every byte of `out` is written (so fresh memory, `MaybeUninit<u8>`, is then initialised).
///
/// The loops are written so that the compiler vectorises them (elements assembled as integers
/// from zipped planes, block fields moved in constant sizes); `merge_planes_reference` is the
/// plain per-byte form they are tested against.
///
/// Panics if the planes are not those of `transform` for `out`'s units.
#[allow(unsafe_code)]
pub fn merge_planes<B: PlaneByte>(
    planes: &[&[u8]],
    dtype: Dtype,
    transform: Transform,
    out: &mut [B],
) {
    match Vectors::detected() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU runs AVX-512 F and BW (`Vectors::detected`).
        Vectors::Avx512 => unsafe { merge_planes_avx512(planes, dtype, transform, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU runs AVX2 (`Vectors::detected`).
        Vectors::Avx2 => unsafe { merge_planes_avx2(planes, dtype, transform, out) },
        _ => merge_planes_in(planes, dtype, transform, out),
    }
}

/// [`merge_planes`]' loops compiled for AVX-512 (64 bytes a vector).
///
/// # Safety
/// The CPU must run AVX-512 F and BW.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn merge_planes_avx512<B: PlaneByte>(
    planes: &[&[u8]],
    dtype: Dtype,
    transform: Transform,
    out: &mut [B],
) {
    merge_planes_in(planes, dtype, transform, out);
}

/// [`merge_planes`]' loops compiled for AVX2 (32 bytes a vector).
///
/// # Safety
/// The CPU must run AVX2.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2")]
unsafe fn merge_planes_avx2<B: PlaneByte>(
    planes: &[&[u8]],
    dtype: Dtype,
    transform: Transform,
    out: &mut [B],
) {
    merge_planes_in(planes, dtype, transform, out);
}

/// The loops of [`merge_planes`], compiled into each of its vector widths.
#[inline(always)]
fn merge_planes_in<B: PlaneByte>(
    planes: &[&[u8]],
    dtype: Dtype,
    transform: Transform,
    out: &mut [B],
) {
    check_lengths(dtype, transform, out.len(), planes.iter().map(|p| p.len()));
    // With the lengths checked, each loop below zips `out`'s units with the planes and writes
    // every byte of it.
    match (transform, planes) {
        (Transform::Identity, [plane]) => B::set_all(out, plane),
        (Transform::BytePlanes, [a, b]) => {
            for ((o, &a), &b) in out.chunks_exact_mut(2).zip(*a).zip(*b) {
                set_le(o, (u16::from(a) | (u16::from(b) << 8)).to_le_bytes());
            }
        }
        (Transform::BytePlanes, [a, b, c, d]) => {
            for ((((o, &a), &b), &c), &d) in out.chunks_exact_mut(4).zip(*a).zip(*b).zip(*c).zip(*d)
            {
                set_le(o, [a, b, c, d]);
            }
        }
        (Transform::BytePlanes, planes) => {
            let size = dtype.size();
            for (j, plane) in planes.iter().enumerate() {
                for (element, &b) in out.chunks_exact_mut(size).zip(plane.iter()) {
                    element[j].set(b);
                }
            }
        }
        (Transform::Bf16Split, [e, sm]) => {
            for ((o, &e), &sm) in out.chunks_exact_mut(2).zip(*e).zip(*sm) {
                set_le(o, bf16_bits(e, sm).to_le_bytes());
            }
        }
        (Transform::F32Split, [e, sm, mid, lo]) => {
            for ((((o, &e), &sm), &mid), &lo) in
                out.chunks_exact_mut(4).zip(*e).zip(*sm).zip(*mid).zip(*lo)
            {
                let v = (u32::from(bf16_bits(e, sm)) << 16) | (u32::from(mid) << 8) | u32::from(lo);
                set_le(o, v.to_le_bytes());
            }
        }
        (Transform::BlockFields, _) => {
            let fields = block_fields(dtype).expect("a block type");
            let block = dtype.size();
            // The common layouts (fp16 scale bytes, then the quants: Q4_0, Q4_1, Q8_0, Q8_1)
            // in one pass, a block at a time; a pass per field would spend a loop iteration
            // per block on each one-byte field.
            match (planes, fields.last().map(|f| (f.offset, f.count, f.step))) {
                ([d0, d1, q], Some((2, 16, 1))) => {
                    return merge_blocks::<B, 2, 16>(out, [d0, d1], q);
                }
                ([d0, d1, q], Some((2, 32, 1))) => {
                    return merge_blocks::<B, 2, 32>(out, [d0, d1], q);
                }
                ([d0, d1, m0, m1, q], Some((4, 16, 1))) => {
                    return merge_blocks::<B, 4, 16>(out, [d0, d1, m0, m1], q);
                }
                ([d0, d1, m0, m1, q], Some((4, 32, 1))) => {
                    return merge_blocks::<B, 4, 32>(out, [d0, d1, m0, m1], q);
                }
                _ => {}
            }
            for (f, plane) in fields.iter().zip(planes) {
                let (offset, step, count) =
                    (usize::from(f.offset), usize::from(f.step), usize::from(f.count));
                let blocks = out.chunks_exact_mut(block);
                match (step, count) {
                    (1, 1) => place_field::<B, 1>(blocks, plane, offset),
                    (1, 4) => place_field::<B, 4>(blocks, plane, offset),
                    (1, 12) => place_field::<B, 12>(blocks, plane, offset),
                    (1, 16) => place_field::<B, 16>(blocks, plane, offset),
                    (1, 32) => place_field::<B, 32>(blocks, plane, offset),
                    (1, 64) => place_field::<B, 64>(blocks, plane, offset),
                    (1, 128) => place_field::<B, 128>(blocks, plane, offset),
                    (1, 256) => place_field::<B, 256>(blocks, plane, offset),
                    _ => {
                        for (b, src) in blocks.zip(plane.chunks_exact(count)) {
                            for (k, &x) in src.iter().enumerate() {
                                b[offset + k * step].set(x);
                            }
                        }
                    }
                }
            }
        }
        (transform, planes) => {
            unreachable!("{transform:?} of {dtype} has no {} planes", planes.len())
        }
    }
}

/// Sets an element's `N` bytes (`o`, a chunk of exactly `N`) to `bytes`.
#[inline(always)]
fn set_le<B: PlaneByte, const N: usize>(o: &mut [B], bytes: [u8; N]) {
    B::set_array(o.try_into().expect("N bytes"), &bytes);
}

/// A bf16 from its exponent and sign-mantissa bytes.
#[inline(always)]
fn bf16_bits(e: u8, sm: u8) -> u16 {
    (u16::from(sm & 0x80) << 8) | (u16::from(e) << 7) | u16::from(sm & 0x7f)
}

/// Blocks of `K` one-byte fields (field `j` at byte `j`, from `bytes[j]`) followed by `N`
/// bytes from `tail`, written a whole block at a time.
#[inline(always)]
fn merge_blocks<B: PlaneByte, const K: usize, const N: usize>(
    out: &mut [B],
    bytes: [&[u8]; K],
    tail: &[u8],
) {
    let blocks = out.len() / (K + N);
    let bytes: [&[u8]; K] = bytes.map(|b| &b[..blocks]);
    // Whole groups of blocks a few registers at a time where the CPU can, the rest here.
    #[cfg(target_arch = "x86_64")]
    let done = blocks_avx512::merge::<B, K, N>(out, bytes, tail);
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    let (out, tail) = (&mut out[done * (K + N)..], &tail[done * N..]);
    let bytes: [&[u8]; K] = bytes.map(|b| &b[done..]);
    for (i, (b, t)) in out.chunks_exact_mut(K + N).zip(tail.chunks_exact(N)).enumerate() {
        let (head, quants) = b.split_at_mut(K);
        for (j, h) in head.iter_mut().enumerate() {
            h.set(bytes[j][i]);
        }
        // Fixed sizes, so that the copy is a move of N bytes, not a call.
        let quants: &mut [B; N] = quants.try_into().expect("N bytes");
        B::set_array(quants, <&[u8; N]>::try_from(t).expect("N bytes"));
    }
}

/// Copies the `N` bytes of each block's field from `plane` to `offset` in its block.
#[inline(always)]
fn place_field<B: PlaneByte, const N: usize>(
    blocks: std::slice::ChunksExactMut<B>,
    plane: &[u8],
    offset: usize,
) {
    for (b, src) in blocks.zip(plane.chunks_exact(N)) {
        let dst: &mut [B; N] = (&mut b[offset..offset + N]).try_into().expect("N bytes");
        B::set_array(dst, src.try_into().expect("N bytes"));
    }
}

/// [`merge_planes`] one element (or block) at a time: the plain form the fast loops are tested
/// against.
pub fn merge_planes_reference(
    planes: &[&[u8]],
    dtype: Dtype,
    transform: Transform,
    out: &mut [u8],
) {
    match transform {
        Transform::Identity => out.copy_from_slice(planes[0]),
        Transform::BytePlanes => {
            let size = dtype.size();
            for (j, plane) in planes.iter().enumerate() {
                for (element, &b) in out.chunks_exact_mut(size).zip(plane.iter()) {
                    element[j] = b;
                }
            }
        }
        Transform::Bf16Split => {
            for ((o, &e), &sm) in out.chunks_exact_mut(2).zip(planes[0]).zip(planes[1]) {
                let v = (u16::from(sm & 0x80) << 8) | (u16::from(e) << 7) | u16::from(sm & 0x7f);
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        Transform::F32Split => {
            let [e, sm, mid, lo] = [planes[0], planes[1], planes[2], planes[3]];
            for (i, o) in out.chunks_exact_mut(4).enumerate() {
                let v = (u32::from(sm[i] & 0x80) << 24)
                    | (u32::from(e[i]) << 23)
                    | (u32::from(sm[i] & 0x7f) << 16)
                    | (u32::from(mid[i]) << 8)
                    | u32::from(lo[i]);
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        Transform::BlockFields => {
            let fields = block_fields(dtype).expect("a block type");
            let block = dtype.size();
            for (f, plane) in fields.iter().zip(planes) {
                let (offset, step, count) =
                    (usize::from(f.offset), usize::from(f.step), usize::from(f.count));
                for (b, src) in out.chunks_exact_mut(block).zip(plane.chunks_exact(count)) {
                    for (k, &x) in src.iter().enumerate() {
                        b[offset + k * step] = x;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `split_into` and `merge_planes` write every byte of what they are given, whatever it
    /// held: outputs filled with two different bytes come out the same (what the callers that
    /// hand them fresh memory rely on).
    #[test]
    fn split_and_merge_write_every_byte() {
        let bytes: Vec<u8> =
            (0..64 * 34 * 20 + 4 * 18 * 34).map(|i| (i * 37 % 251) as u8).collect();
        for (dtype, transform) in every_transform() {
            let (unit, per_unit) = plane_strides(dtype, transform);
            let whole = &bytes[..bytes.len() / unit * unit];
            let units = whole.len() / unit;
            let split = |fill: u8| {
                let mut planes: Vec<Vec<u8>> =
                    per_unit.iter().map(|&p| vec![fill; units * p]).collect();
                let mut outs: Vec<&mut [u8]> = planes.iter_mut().map(Vec::as_mut_slice).collect();
                split_into(whole, dtype, transform, &mut outs);
                planes
            };
            let planes = split(0x00);
            assert!(planes == split(0xff), "{dtype}: split");
            let refs: Vec<&[u8]> = planes.iter().map(Vec::as_slice).collect();
            let merged = |fill: u8| {
                let mut out = vec![fill; whole.len()];
                merge_planes(&refs, dtype, transform, &mut out);
                out
            };
            assert_eq!(merged(0x00), whole, "{dtype}: merge");
            assert_eq!(merged(0xff), whole, "{dtype}: merge");
        }
    }

    fn round_trip(bytes: &[u8], dtype: Dtype, transform: Transform) -> Vec<Vec<u8>> {
        let planes = split_planes(bytes, dtype, transform);
        let refs: Vec<&[u8]> = planes.iter().map(Vec::as_slice).collect();
        let mut out = vec![0u8; bytes.len()];
        merge_planes(&refs, dtype, transform, &mut out);
        assert_eq!(out, bytes, "{dtype} {transform:?}");
        planes
    }

    #[test]
    fn u16_splits_match_their_definition_on_every_length() {
        for elements in [0usize, 1, 15, 16, 17, 33, 100] {
            let bytes: Vec<u8> = (0..2 * elements).map(|i| (i * 131 % 251) as u8).collect();
            let words = bytes.chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]]));
            let low: Vec<u8> = words.clone().map(|w| w as u8).collect();
            let high: Vec<u8> = words.clone().map(|w| (w >> 8) as u8).collect();
            assert_eq!(split_planes(&bytes, Dtype::F16, Transform::BytePlanes), [low, high]);
            let exp: Vec<u8> = words.clone().map(|w| (w >> 7) as u8).collect();
            let sm: Vec<u8> = words.map(|w| ((w >> 8) as u8 & 0x80) | (w as u8 & 0x7f)).collect();
            assert_eq!(split_planes(&bytes, Dtype::BF16, Transform::Bf16Split), [exp, sm]);
        }
    }

    /// A dtype of every transform, every GGUF block type among them.
    fn every_transform() -> impl Iterator<Item = (Dtype, Transform)> {
        let cases = [
            (Dtype::F16, Transform::BytePlanes),
            (Dtype::I16, Transform::BytePlanes),
            (Dtype::F32, Transform::BytePlanes),
            (Dtype::I64, Transform::BytePlanes),
            (Dtype::BF16, Transform::Bf16Split),
            (Dtype::F32, Transform::F32Split),
            (Dtype::I8, Transform::Identity),
        ];
        let blocks = Dtype::ALL.into_iter().filter(|d| d.block().is_some());
        cases.into_iter().chain(blocks.map(|d| (d, Transform::BlockFields)))
    }

    #[test]
    fn merge_planes_matches_its_reference_on_every_length() {
        for (dtype, transform) in every_transform() {
            for elements in [0usize, 1, 15, 16, 17, 33, 100, 1000] {
                let len = elements * dtype.size();
                let bytes: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
                let planes = split_planes(&bytes, dtype, transform);
                let refs: Vec<&[u8]> = planes.iter().map(Vec::as_slice).collect();
                let (mut fast, mut reference) = (vec![0u8; len], vec![1u8; len]);
                merge_planes(&refs, dtype, transform, &mut fast);
                merge_planes_reference(&refs, dtype, transform, &mut reference);
                assert_eq!(fast, reference, "{dtype} {transform:?} {elements}");
                assert_eq!(fast, bytes, "{dtype} {transform:?} {elements}");
                for (width, merge) in merges() {
                    let mut out = vec![2u8; len];
                    merge(&refs, dtype, transform, &mut out);
                    assert_eq!(out, bytes, "{width}: {dtype} {transform:?} {elements}");
                }
            }
        }
    }

    type Merge = fn(&[&[u8]], Dtype, Transform, &mut [u8]);

    /// Each compilation of the merge's loops this CPU runs, whatever `Vectors::detected` says.
    #[allow(unsafe_code, unused_mut)]
    fn merges() -> Vec<(&'static str, Merge)> {
        let mut out: Vec<(&'static str, Merge)> = vec![("baseline", merge_planes_in::<u8>)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 was detected.
                out.push(("AVX2", |p, d, t, o| unsafe { merge_planes_avx2(p, d, t, o) }));
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                // SAFETY: AVX-512 F and BW were detected.
                out.push(("AVX-512", |p, d, t, o| unsafe { merge_planes_avx512(p, d, t, o) }));
            }
        }
        out
    }

    /// Each compilation of the two-byte split this CPU runs gives the baseline's planes.
    #[test]
    #[allow(unsafe_code)]
    fn u16_splits_agree_at_every_width() {
        let f = |w: u16| ((w >> 7) as u8, ((w >> 8) as u8 & 0x80) | (w as u8 & 0x7f));
        for elements in [0usize, 1, 31, 32, 33, 63, 64, 65, 1000] {
            let bytes: Vec<u8> = (0..2 * elements).map(|i| (i * 131 % 251) as u8).collect();
            let (mut a, mut b) = (vec![0u8; elements], vec![0u8; elements]);
            split_u16(&bytes, &mut a, &mut b, f);
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") {
                    let (mut c, mut d) = (vec![1u8; elements], vec![1u8; elements]);
                    // SAFETY: AVX2 was detected.
                    unsafe { split_u16_avx2(&bytes, &mut c, &mut d, f) };
                    assert_eq!((&c, &d), (&a, &b), "AVX2, {elements}");
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                {
                    let (mut c, mut d) = (vec![1u8; elements], vec![1u8; elements]);
                    // SAFETY: AVX-512 F and BW were detected.
                    unsafe { split_u16_avx512(&bytes, &mut c, &mut d, f) };
                    assert_eq!((&c, &d), (&a, &b), "AVX-512, {elements}");
                }
            }
        }
    }

    #[test]
    fn byte_planes_round_trip() {
        let bytes: Vec<u8> = (0..64u8).collect();
        let planes = round_trip(&bytes, Dtype::F32, Transform::BytePlanes);
        assert_eq!(planes[1], (0..16).map(|i| i * 4 + 1).collect::<Vec<u8>>());
    }

    #[test]
    fn float_splits_round_trip_and_separate_the_exponent() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(4096).map(|b| b.wrapping_mul(37)).collect();
        round_trip(&bytes, Dtype::F32, Transform::F32Split);
        let planes = round_trip(&bytes, Dtype::BF16, Transform::Bf16Split);
        // 1.0 in bf16 is 0x3f80: exponent 127, sign-mantissa 0.
        let one = split_planes(&[0x80, 0x3f], Dtype::BF16, Transform::Bf16Split);
        assert_eq!(one, vec![vec![127], vec![0]]);
        assert_eq!(planes.len(), 2);
    }

    #[test]
    fn block_fields_round_trip() {
        for dtype in Dtype::ALL.into_iter().filter(|d| d.block().is_some()) {
            let bytes: Vec<u8> = (0..dtype.size() * 3).map(|i| (i * 7 % 251) as u8).collect();
            let planes = round_trip(&bytes, dtype, Transform::BlockFields);
            let total: usize = planes.iter().map(Vec::len).sum();
            assert_eq!(total, bytes.len());
            // Each plane is its field's bytes, block after block (the definition, which the
            // one-pass splits of the common layouts must follow too).
            let fields = block_fields(dtype).unwrap();
            for (f, plane) in fields.iter().zip(&planes) {
                let expected: Vec<u8> = bytes
                    .chunks_exact(dtype.size())
                    .flat_map(|b| (0..f.count).map(move |k| b[usize::from(f.offset + k * f.step)]))
                    .collect();
                assert_eq!(plane, &expected, "{dtype} field at {}", f.offset);
            }
        }
    }
}
