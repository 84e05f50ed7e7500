//! A tensor split into its planes for the encoder, in chunks spread over the threads, with what
//! the encoder needs from the planes' bytes taken while each chunk is in cache: the CRCs of the
//! tensor and of its planes, and, without prediction, the planes' histograms.
//!
//! The planes are written into fresh memory, not zeroed first: on a tensor larger than the
//! caches, zeroing them was a pass over memory of its own (a tenth of a fast BF16 encode). This
//! module's two `unsafe` lines rest on `wcodec_predict::split_into` writing every byte of the
//! planes it is given (it checks their lengths against the units it splits, and its loops zip
//! each plane with the units); `split_writes_every_byte` tests that, and CI runs this module's
//! tests under Miri.

#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use rayon::prelude::*;
use wcodec_format::{Dtype, Transform};
use wcodec_predict::{plane_is_signed, plane_strides, split_into};

use crate::plane::PlaneCounts;

/// Source bytes split into planes by one task (`split_parallel`); under Miri a few KiB, so
/// that its tests reach the parallel path.
const SPLIT_CHUNK: usize = if cfg!(miri) { 4 << 10 } else { 1 << 20 };

/// A tensor's planes, the CRCs of the planes and of the tensor's bytes, and, if asked for,
/// the histogram of each plane's bytes XOR its bias (its residuals if every tile is NONE).
pub(crate) struct Split {
    pub planes: Vec<Vec<u8>>,
    /// The planes' CRC-32Cs and the source's: `None` where left to the plane's encoder (an
    /// identity plane, its CRC the source's).
    pub plane_crcs: Vec<Option<u32>>,
    pub source_crc: Option<u32>,
    pub histograms: Option<Vec<[u64; 256]>>,
}

/// The planes of a tensor, split in chunks of about `SPLIT_CHUNK` bytes spread over the
/// threads (one chunk below two): a large tensor is a batch of its own, and a split on one thread (a pass over
/// memory, 15% of a one-thread BF16 encode) left the others idle. The planes are those of
/// `split_planes`, byte for byte. Each chunk's CRCs (of its source bytes and of its part of
/// every plane) are taken as it is split, in cache: separate passes over a large tensor, from
/// memory, cost a tenth of a fast BF16 encode. So are the planes' histograms where `counting`
/// asks for them (`Some(sampled)`, see `PlaneCounts`): counted afterwards, the planes were
/// read from memory again.
pub(crate) fn split_parallel(
    bytes: &[u8],
    dtype: Dtype,
    transform: Transform,
    counting: Option<bool>,
) -> Split {
    let bias = |j: usize| if plane_is_signed(dtype, transform, j) { 0x80 } else { 0 };
    let (unit, per_unit) = plane_strides(dtype, transform);
    let units = bytes.len() / unit;
    let bytes = &bytes[..units * unit];
    let mut planes: Vec<Vec<u8>> =
        per_unit.iter().map(|&p| Vec::with_capacity(units * p)).collect();
    // A tensor below two chunks is one chunk (split on the calling thread).
    let chunk_units = match bytes.len() < 2 * SPLIT_CHUNK {
        true => units.max(1),
        false => (SPLIT_CHUNK / unit).max(1),
    };
    // Each chunk of source units with its part of every plane, not yet written.
    let mut parts: Vec<Vec<&mut [MaybeUninit<u8>]>> =
        (0..units.div_ceil(chunk_units)).map(|_| Vec::new()).collect();
    for (plane, &p) in planes.iter_mut().zip(&per_unit) {
        let fresh = &mut plane.spare_capacity_mut()[..units * p];
        for (part, piece) in parts.iter_mut().zip(fresh.chunks_mut(chunk_units * p)) {
            part.push(piece);
        }
    }
    // Per chunk: the CRC of its source bytes, then of its part of each plane, and its part's
    // counts.
    type ChunkSums = (u32, Vec<u32>, Vec<PlaneCounts>);
    let sums: Vec<ChunkSums> = bytes
        .par_chunks(chunk_units * unit)
        .zip(parts)
        .enumerate()
        .map(|(k, (source, part))| {
            let part = split_fresh(source, dtype, transform, part);
            let part_crcs = part.iter().map(|p| wcodec_format::crc32c(p)).collect();
            let counts = match counting {
                None => Vec::new(),
                Some(sampled) => (part.iter().zip(&per_unit))
                    .map(|(piece, &p)| {
                        let mut counts = PlaneCounts::default();
                        counts.add(piece, k * chunk_units * p, units * p, sampled);
                        counts
                    })
                    .collect(),
            };
            (wcodec_format::crc32c(source), part_crcs, counts)
        })
        .collect();
    for (plane, &p) in planes.iter_mut().zip(&per_unit) {
        // SAFETY: the chunks' parts of this plane cover its first `units * p` bytes (cut above
        // from exactly those bytes), and `split_fresh` initialised each of them.
        unsafe { plane.set_len(units * p) };
    }
    let combine = |part_crcs: Vec<u32>, part_len: usize, len: usize| {
        wcodec_format::checksum::combine_parts(&part_crcs, part_len as u64, len as u64)
    };
    let source_crc = combine(sums.iter().map(|c| c.0).collect(), chunk_units * unit, bytes.len());
    let plane_crcs = per_unit
        .iter()
        .enumerate()
        .map(|(j, &p)| {
            Some(combine(sums.iter().map(|c| c.1[j]).collect(), chunk_units * p, units * p))
        })
        .collect();
    let histograms = counting.map(|_| {
        let of = |(j, &p): (usize, &usize)| {
            let parts: Vec<PlaneCounts> = sums.iter().map(|c| c.2[j].clone()).collect();
            PlaneCounts::histogram(&parts, units * p, bias(j))
        };
        per_unit.iter().enumerate().map(of).collect()
    });
    Split { planes, plane_crcs, source_crc: Some(source_crc), histograms }
}

/// `split_into` on planes of fresh memory: `source`'s units split into `part`, which is then
/// initialised.
fn split_fresh<'a>(
    source: &[u8],
    dtype: Dtype,
    transform: Transform,
    mut part: Vec<&'a mut [MaybeUninit<u8>]>,
) -> Vec<&'a mut [u8]> {
    split_into(source, dtype, transform, &mut part);
    part.into_iter()
        // SAFETY: `split_into` wrote every byte of every plane it was given (module docs), so
        // the bytes are initialised; `MaybeUninit<u8>` has the layout of `u8`.
        .map(|p| unsafe { &mut *(std::ptr::from_mut(p) as *mut [u8]) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plane::none_histogram;
    use crate::transform_for;
    use wcodec_predict::split_planes;

    /// Bytes of weights-like noise.
    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_u32;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    /// A dtype of every transform; under Miri (slow), one element type and one block type.
    const DTYPES: &[Dtype] = if cfg!(miri) {
        &[Dtype::BF16, Dtype::Q4_1]
    } else {
        &[Dtype::BF16, Dtype::F16, Dtype::F32, Dtype::I32, Dtype::Q4_1, Dtype::Q8_0]
    };

    /// `split_into` writes every byte of the planes it is given, whatever they held: planes
    /// filled with two different bytes come out the same (what `split_fresh` relies on; safe
    /// code, so not run under Miri).
    #[test]
    #[cfg_attr(miri, ignore)]
    fn split_writes_every_byte() {
        let bytes = noise(64 * 34 * 20 + 4 * 18 * 34);
        for &dtype in DTYPES {
            let transform = transform_for(dtype);
            let (unit, per_unit) = plane_strides(dtype, transform);
            let units = bytes.len() / unit;
            let filled = |fill: u8| {
                let mut planes: Vec<Vec<u8>> =
                    per_unit.iter().map(|&p| vec![fill; units * p]).collect();
                let mut outs: Vec<&mut [u8]> = planes.iter_mut().map(Vec::as_mut_slice).collect();
                split_into(&bytes[..units * unit], dtype, transform, &mut outs);
                planes
            };
            assert!(filled(0x00) == filled(0xff), "{dtype}");
        }
    }

    #[test]
    fn planes_split_in_parallel_are_the_planes_split_in_one_pass() {
        // Past the parallel threshold, not a whole number of chunks, for every transform.
        let bytes = noise(5 * SPLIT_CHUNK / 2 + 4 * 34 * 20);
        for &dtype in DTYPES {
            let transform = transform_for(dtype);
            let (unit, _) = plane_strides(dtype, transform);
            let whole = &bytes[..bytes.len() / unit * unit];
            assert!(whole.len() >= 2 * SPLIT_CHUNK, "{dtype}: the parallel path");
            let split = split_parallel(whole, dtype, transform, None);
            assert!(split.planes == split_planes(whole, dtype, transform), "{dtype}");
            // The CRCs combined from the chunks' are those of the whole.
            assert_eq!(split.source_crc, Some(wcodec_format::crc32c(whole)), "{dtype}");
            let crcs: Vec<_> =
                split.planes.iter().map(|p| Some(wcodec_format::crc32c(p))).collect();
            assert_eq!(split.plane_crcs, crcs, "{dtype}");
            assert!(split.histograms.is_none());
            // Below the threshold, the same.
            let small = &whole[..unit * 100];
            let split = split_parallel(small, dtype, transform, None);
            assert_eq!(split.source_crc, Some(wcodec_format::crc32c(small)), "{dtype}");
            let crcs: Vec<_> =
                split.planes.iter().map(|p| Some(wcodec_format::crc32c(p))).collect();
            assert_eq!(split.plane_crcs, crcs, "{dtype}");
            // Histograms counted chunk by chunk (sampled where the plane is large enough) are
            // those of the whole planes, XOR each plane's bias.
            for sampled in [false, true] {
                for bytes in [whole, small, &whole[..0]] {
                    let split = split_parallel(bytes, dtype, transform, Some(sampled));
                    let expected: Vec<[u64; 256]> = (split.planes.iter().enumerate())
                        .map(|(j, p)| {
                            let bias = if plane_is_signed(dtype, transform, j) { 0x80 } else { 0 };
                            none_histogram(p, bias, sampled)
                        })
                        .collect();
                    assert_eq!(split.histograms, Some(expected), "{dtype}, sampled {sampled}");
                }
            }
        }
    }
}
