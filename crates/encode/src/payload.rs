//! A tensor's payload as the encoder makes it: the coded units and raw planes as they came out
//! of the coder, each at its offset, with zeros between them (alignment). Written to the output
//! once, by the file writer; never assembled into one buffer first.

use std::io::{self, Write};

/// Byte segments at increasing offsets; the bytes between them are zeros.
#[derive(Clone, Debug, Default)]
pub struct Payload {
    segments: Vec<(usize, Vec<u8>)>,
    len: usize,
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

    /// Appends `bytes` at the end.
    pub(crate) fn push(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            let n = bytes.len();
            self.segments.push((self.len, bytes));
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
        for (offset, bytes) in &self.segments {
            pad(out, offset - at)?;
            out.write_all(bytes)?;
            at = offset + bytes.len();
        }
        pad(out, self.len - at)
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
}
