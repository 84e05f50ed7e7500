//! A tensor's payload as the encoder makes it: the coded units and raw planes as they came out
//! of the coder (each unit still in the buffer it was coded into), each at its offset, with
//! zeros between them (alignment). Written to the output once, by the file writer; never
//! assembled into one buffer first.

use std::io::{self, Write};

use rayon::prelude::*;
use wcodec_rans::CodedUnit;

/// Payloads shorter than this are appended on one thread (`Payload::append_to_vec`); under
/// Miri, which checks the parallel path's unsafe line, a few KiB.
const PARALLEL_APPEND: usize = if cfg!(miri) { 4 << 10 } else { 4 << 20 };

/// Byte segments at increasing offsets; the bytes between them are zeros.
#[derive(Clone, Debug, Default)]
pub struct Payload {
    segments: Vec<(usize, Segment)>,
    len: usize,
}

/// A payload's piece: bytes, or a coded unit in the buffer the coder wrote it into.
#[derive(Debug)]
pub(crate) enum Segment {
    Bytes(Vec<u8>),
    Unit(CodedUnit),
}

impl Segment {
    fn bytes(&self) -> &[u8] {
        match self {
            Segment::Bytes(bytes) => bytes,
            Segment::Unit(unit) => unit.bytes(),
        }
    }
}

impl Clone for Segment {
    /// A unit's clone is its bytes alone.
    fn clone(&self) -> Segment {
        Segment::Bytes(self.bytes().to_vec())
    }
}

impl From<Vec<u8>> for Segment {
    fn from(bytes: Vec<u8>) -> Segment {
        Segment::Bytes(bytes)
    }
}

impl From<CodedUnit> for Segment {
    fn from(unit: CodedUnit) -> Segment {
        Segment::Unit(unit)
    }
}

impl Payload {
    /// Length in bytes, padding included.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pads with zeros up to `offset` (at or past the end).
    pub(crate) fn pad_to(&mut self, offset: usize) {
        debug_assert!(offset >= self.len, "a payload only grows");
        self.len = self.len.max(offset);
    }

    /// Appends `bytes` (a `Vec<u8>` or a `CodedUnit`) at the end.
    pub(crate) fn push(&mut self, bytes: impl Into<Segment>) {
        let segment = bytes.into();
        let n = segment.bytes().len();
        if n > 0 {
            self.segments.push((self.len, segment));
            self.len += n;
        }
    }

    /// Appends `other`'s bytes at the end, its segments moved (not copied).
    pub(crate) fn append(&mut self, other: Payload) {
        let at = self.len;
        self.segments
            .extend(other.segments.into_iter().map(|(offset, bytes)| (at + offset, bytes)));
        self.len += other.len;
    }

    /// Writes the payload's bytes, zeros included, to `out`.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        const ZEROS: [u8; 4096] = [0; 4096];
        let mut at = 0;
        let pad = |out: &mut dyn Write, mut n: usize| -> io::Result<()> {
            while n > 0 {
                let k = n.min(ZEROS.len());
                out.write_all(&ZEROS[..k])?;
                n -= k;
            }
            Ok(())
        };
        for (offset, segment) in &self.segments {
            let bytes = segment.bytes();
            pad(out, offset - at)?;
            out.write_all(bytes)?;
            at = offset + bytes.len();
        }
        pad(out, self.len - at)
    }

    /// Appends the payload's bytes to `out`, copied on all threads (each segment, and each run
    /// of zeros between them, written once into the new bytes; zeroing them first would cost
    /// what the threads save). On one thread, `write_to`. Its `set_len` is the crate's only
    /// unsafe code (checked under Miri in CI).
    pub fn append_to_vec(&self, out: &mut Vec<u8>) {
        if rayon::current_num_threads() < 2 || self.len < PARALLEL_APPEND {
            self.write_to(out).expect("writing to a Vec");
            return;
        }
        let start = out.len();
        out.reserve(self.len);
        let mut rest = &mut out.spare_capacity_mut()[..self.len];
        // The pieces of the new bytes: (place, segment), a segment `None` for zeros.
        let mut pieces = Vec::with_capacity(2 * self.segments.len() + 1);
        let mut at = 0;
        for (offset, segment) in &self.segments {
            let bytes = segment.bytes();
            let (zeros, tail) = std::mem::take(&mut rest).split_at_mut(offset - at);
            let (place, tail) = tail.split_at_mut(bytes.len());
            pieces.push((zeros, None));
            pieces.push((place, Some(bytes)));
            (rest, at) = (tail, offset + bytes.len());
        }
        pieces.push((rest, None));
        pieces.into_par_iter().for_each(|(place, bytes)| match bytes {
            Some(bytes) => {
                for (p, &b) in place.iter_mut().zip(bytes) {
                    p.write(b);
                }
            }
            None => place.fill(std::mem::MaybeUninit::new(0)),
        });
        // SAFETY: the pieces cover the `self.len` bytes after `start` (consecutive slices from
        // its start to its end), and each was written in full above.
        #[allow(unsafe_code)]
        unsafe {
            out.set_len(start + self.len);
        }
    }

    /// The payload's bytes in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        self.write_to(&mut out).expect("writing to a Vec");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Payload;

    #[test]
    fn segments_and_padding_come_out_in_place() {
        let mut p = Payload::default();
        p.push(vec![1, 2, 3]);
        p.pad_to(8);
        p.push(Vec::new());
        p.push(vec![4]);
        p.pad_to(9);
        p.pad_to(5000);
        p.push(vec![5, 6]);
        p.pad_to(5004);
        let mut expected = vec![1, 2, 3, 0, 0, 0, 0, 0, 4];
        expected.resize(5000, 0);
        expected.extend([5, 6, 0, 0]);
        assert_eq!(p.len(), 5004);
        assert_eq!(p.to_vec(), expected);
        assert!(Payload::default().is_empty() && Payload::default().to_vec().is_empty());
    }

    #[test]
    fn an_appended_payload_keeps_its_padding() {
        let mut tail = Payload::default();
        tail.pad_to(3);
        tail.push(vec![7, 8]);
        tail.pad_to(7);
        let mut p = Payload::default();
        p.push(vec![1]);
        p.pad_to(4);
        p.append(tail);
        p.push(vec![9]);
        assert_eq!(p.len(), 12);
        assert_eq!(p.to_vec(), [1, 0, 0, 0, 0, 0, 0, 7, 8, 0, 0, 9]);
    }

    #[test]
    fn a_payload_appended_on_threads_is_the_one_written() {
        // Past the parallel threshold: segments of varied lengths, gaps, a padded end, after
        // bytes already in the Vec.
        let mut p = Payload::default();
        let mut k = 0u8;
        while p.len() < super::PARALLEL_APPEND + 1000 {
            k = k.wrapping_add(1);
            let n = if cfg!(miri) {
                100 + usize::from(k % 7)
            } else {
                1000 + 337 * usize::from(k % 50)
            };
            p.push((0..n).map(|i| (i as u8) ^ k).collect::<Vec<u8>>());
            p.pad_to(p.len().next_multiple_of(64));
        }
        p.pad_to(p.len() + 100);
        let mut expected = vec![0xee; 5];
        p.write_to(&mut expected).unwrap();
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut out = vec![0xee; 5];
            pool.install(|| p.append_to_vec(&mut out));
            assert!(out == expected, "{threads} threads");
        }
    }
}
