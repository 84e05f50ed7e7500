//! A split tensor's band merged from its planes into the output, with the band's CRC.
//!
//! A merge straight into the output waits on memory: each line of output is read before it is
//! written (the store's read-for-ownership). GGUF blocks are therefore merged a few KiB at a
//! time into a buffer that stays in L1, their CRC taken there, and each piece copied out with
//! streaming stores, which write whole lines without reading them (SmolLM2's GGUF file decodes
//! 1.08-1.10x faster). Other split types (BF16, FP16, FP32), whose merge reads a raw plane
//! from the file as it goes, were slower that way, and merge straight into the output
//! (docs/PERFORMANCE.md, CPU "Whole-pipeline decode").

use std::cell::RefCell;
use std::mem::MaybeUninit;

use wcodec_format::checksum::{combine, shift_of};
use wcodec_format::{Dtype, Transform};
use wcodec_predict::{merge_planes, plane_strides};

use crate::dest::Dest;

/// Output bytes merged at a time, about: pieces fit in L1 beside the planes' bytes.
const PIECE_BYTES: usize = 4096;

thread_local! {
    /// The piece being merged.
    static PIECE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Merges `planes` (of `dtype` under `transform`) into `out`, writing every byte of it (the
/// lengths must match, as for `merge_planes`: fresh memory is not zeroed first), and returns
/// the CRC-32C of what it wrote.
pub(crate) fn merge_band(planes: &[&[u8]], dtype: Dtype, transform: Transform, out: Dest) -> u32 {
    if transform == Transform::BlockFields {
        let mut crc = 0;
        out.written_by(|out| crc = merge_with_crc(planes, dtype, transform, out));
        crc
    } else {
        wcodec_format::crc32c(out.written_by(|out| merge_planes(planes, dtype, transform, out)))
    }
}

/// [`merge_band`] a piece at a time through `PIECE`.
fn merge_with_crc(
    planes: &[&[u8]],
    dtype: Dtype,
    transform: Transform,
    out: &mut [MaybeUninit<u8>],
) -> u32 {
    // `unit` output bytes (an element, or a block) take `per_unit[j]` bytes of plane j.
    let (unit, per_unit) = plane_strides(dtype, transform);
    assert!(
        unit > 0 && out.len().is_multiple_of(unit),
        "{dtype}: {} bytes are not whole elements",
        out.len()
    );
    // Whole lines a piece (its length a multiple of 64 bytes), at least one unit.
    let line_units = 64 / gcd(unit, 64);
    let piece_units = line_units * (PIECE_BYTES / (line_units * unit)).max(1);
    let units = out.len() / unit;
    let full_shift = shift_of((piece_units * unit) as u64);
    let mut refs: Vec<&[u8]> = Vec::with_capacity(planes.len());
    let crc = PIECE.with_borrow_mut(|piece| {
        if piece.len() < piece_units * unit {
            piece.resize(piece_units * unit, 0);
        }
        let mut crc = 0;
        for first in (0..units).step_by(piece_units) {
            let n = piece_units.min(units - first);
            refs.clear();
            refs.extend(planes.iter().zip(&per_unit).map(|(p, &w)| &p[first * w..(first + n) * w]));
            let bytes = &mut piece[..n * unit];
            merge_planes(&refs, dtype, transform, bytes);
            let shift = if n == piece_units { full_shift } else { shift_of(bytes.len() as u64) };
            crc = combine(crc, wcodec_format::crc32c(bytes), shift);
            stream::copy(&mut out[first * unit..(first + n) * unit], bytes);
        }
        crc
    });
    // The streaming stores reach memory before the band is handed on (to the thread that
    // combines the CRCs, the writer, the caller).
    stream::fence();
    crc
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Copies with streaming (non-temporal) stores where the CPU has them.
mod stream {
    use std::mem::MaybeUninit;

    /// Copies `src` into `dst` (of one length): whole 64-byte lines of `dst` with streaming
    /// stores, the partial lines at its ends with ordinary ones.
    pub(super) fn copy(dst: &mut [MaybeUninit<u8>], src: &[u8]) {
        assert_eq!(dst.len(), src.len(), "a copy between slices of one length");
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        let (head, lines) = {
            let head = dst.as_ptr().align_offset(64).min(dst.len());
            let lines = (dst.len() - head) / 64;
            if lines > 0 {
                let whole = head..head + 64 * lines;
                x86::stream_lines(&mut dst[whole.clone()], &src[whole]);
            }
            (head, lines)
        };
        // (Miri, which runs the unsafe code's tests, has neither streaming stores nor fences.)
        #[cfg(any(not(target_arch = "x86_64"), miri))]
        let (head, lines) = (dst.len(), 0);
        let (dst_head, rest) = dst.split_at_mut(head);
        let dst_tail = &mut rest[64 * lines..];
        let (src_head, src_tail) = (&src[..head], &src[head + 64 * lines..]);
        for (d, &s) in dst_head.iter_mut().chain(dst_tail).zip(src_head.iter().chain(src_tail)) {
            d.write(s);
        }
    }

    /// Orders the streaming stores before every later store (they are weakly ordered).
    pub(super) fn fence() {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        x86::fence();
    }

    #[cfg(all(target_arch = "x86_64", not(miri)))]
    #[allow(unsafe_code)]
    mod x86 {
        use std::arch::x86_64::{_mm_loadu_si128, _mm_sfence, _mm_stream_si128};
        use std::mem::MaybeUninit;

        /// `dst` (64-byte aligned, whole lines) from `src` with SSE2's streaming stores, which
        /// every x86-64 CPU runs.
        pub(super) fn stream_lines(dst: &mut [MaybeUninit<u8>], src: &[u8]) {
            assert!(dst.len() == src.len() && dst.len().is_multiple_of(64));
            assert!(dst.as_ptr().addr().is_multiple_of(64), "whole lines");
            for (d, s) in dst.chunks_exact_mut(16).zip(src.chunks_exact(16)) {
                // SAFETY: `s` and `d` are 16 bytes, `d` 16-byte aligned (its line is); the
                // stored value is initialised bytes.
                unsafe {
                    _mm_stream_si128(d.as_mut_ptr().cast(), _mm_loadu_si128(s.as_ptr().cast()))
                };
            }
        }

        pub(super) fn fence() {
            // SAFETY: SSE is part of x86-64.
            unsafe { _mm_sfence() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The band's merge (through pieces for GGUF blocks) writes what `merge_planes` writes and
    /// returns its CRC, for each kind of transform, on lengths around whole pieces and lines,
    /// into outputs at several alignments in a line.
    #[test]
    fn merged_pieces_match_the_merge_and_its_crc() {
        let cases = [
            (Dtype::BF16, Transform::Bf16Split),
            (Dtype::F16, Transform::BytePlanes),
            (Dtype::F32, Transform::F32Split),
            (Dtype::F64, Transform::BytePlanes),
            (Dtype::Q4_1, Transform::BlockFields),
            (Dtype::Q8_0, Transform::BlockFields),
            (Dtype::Q6K, Transform::BlockFields),
        ];
        for (dtype, transform) in cases {
            let (unit, per_unit) = plane_strides(dtype, transform);
            // (Fewer under Miri, which is slow.)
            let sizes = [0, 1, 3, 63, 64, 65, 4096 / unit, 4096 / unit + 1, 3000];
            for units in sizes.into_iter().take(if cfg!(miri) { 4 } else { 9 }) {
                let planes: Vec<Vec<u8>> = per_unit
                    .iter()
                    .enumerate()
                    .map(|(j, &w)| (0..units * w).map(|i| (i * 131 + j * 7) as u8).collect())
                    .collect();
                let refs: Vec<&[u8]> = planes.iter().map(Vec::as_slice).collect();
                let mut expected = vec![0u8; units * unit];
                merge_planes(&refs, dtype, transform, &mut expected);
                for offset in [0, 1, 13, 63].into_iter().take(if cfg!(miri) { 2 } else { 4 }) {
                    let mut buf = vec![0xa5u8; offset + units * unit + 64];
                    let out = Dest::of_bytes(&mut buf[offset..][..units * unit]);
                    let crc = merge_band(&refs, dtype, transform, out);
                    let what = format!("{dtype} {units} units at {offset}");
                    assert_eq!(buf[offset..][..units * unit], expected, "{what}");
                    let outside = buf[..offset].iter().chain(&buf[offset + units * unit..]);
                    assert!(outside.clone().all(|&b| b == 0xa5), "{what}: outside");
                    assert_eq!(crc, crc32c::crc32c(&expected), "{what}: CRC");
                }
            }
        }
    }
}
