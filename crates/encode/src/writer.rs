//! Writing a .wcz file in one pass: header, tensor payloads as they come, directory, trailer.

use std::io::{self, Write};

use wcodec_format::gaps::PackedGaps;
use wcodec_format::records::{FileHeader, PAYLOAD_ALIGN, Trailer};
use wcodec_format::{Directory, PlaneEncoding, SourceKind, TensorEntry};
use zerocopy::IntoBytes;

use crate::EncodedTensor;

/// Streams a .wcz to `W`: memory holds the directory entries, not the payloads.
#[derive(Debug)]
pub struct FileWriter<W: Write> {
    out: W,
    position: u64,
    source_kind: SourceKind,
    source_len: u64,
    tensors: Vec<TensorEntry>,
}

impl FileWriter<Vec<u8>> {
    /// [`add_tensor`](Self::add_tensor) for a file built in memory: the payload is copied into
    /// it on all threads ([`Payload::append_to_vec`](crate::Payload::append_to_vec)), not on
    /// one while the others wait (a one-tensor file has nothing else to do at its end).
    pub fn add_tensor_in_memory(&mut self, tensor: EncodedTensor) -> io::Result<()> {
        let payload = self.place(tensor)?;
        payload.append_to_vec(&mut self.out);
        Ok(())
    }
}

impl<W: Write> FileWriter<W> {
    pub fn new(mut out: W, source_kind: SourceKind, source_len: u64) -> io::Result<Self> {
        out.write_all(FileHeader::new().as_bytes())?;
        Ok(FileWriter {
            out,
            position: FileHeader::LEN as u64,
            source_kind,
            source_len,
            tensors: Vec::new(),
        })
    }

    fn pad_to(&mut self, align: u64) -> io::Result<()> {
        let target = self.position.next_multiple_of(align);
        let zeros = [0u8; PAYLOAD_ALIGN as usize];
        self.out.write_all(&zeros[..(target - self.position) as usize])?;
        self.position = target;
        Ok(())
    }

    /// Appends an encoded tensor. Tensors must come in increasing source order.
    pub fn add_tensor(&mut self, tensor: EncodedTensor) -> io::Result<()> {
        let payload = self.place(tensor)?;
        payload.write_to(&mut self.out)
    }

    /// Pads to the payload's alignment and records the tensor's entry (its offsets made
    /// absolute); the payload is then the caller's to write.
    fn place(&mut self, tensor: EncodedTensor) -> io::Result<crate::Payload> {
        self.pad_to(PAYLOAD_ALIGN)?;
        let base = self.position;
        let mut entry = tensor.entry;
        for plane in &mut entry.planes {
            plane.payload_offset += base;
            if plane.payload_len == 0 {
                // An empty plane still needs an aligned in-range offset.
                plane.payload_offset = base;
            }
            if let PlaneEncoding::Raw { .. } = plane.encoding {
                debug_assert_eq!(plane.payload_len, plane.len());
            }
        }
        self.position += tensor.payload.len() as u64;
        self.tensors.push(entry);
        Ok(tensor.payload)
    }

    /// Writes the directory (with `gaps`, the source bytes outside every tensor) and the
    /// trailer, and hands back the writer.
    pub fn finish(self, gaps: Vec<u8>) -> io::Result<W> {
        self.finish_with(gaps, None)
    }

    /// [`FileWriter::finish`] with the gaps already packed (`PackedGaps::new(&gaps)`).
    pub fn finish_with(mut self, gaps: Vec<u8>, packed: Option<&PackedGaps>) -> io::Result<W> {
        let directory = Directory {
            source_kind: self.source_kind,
            source_len: self.source_len,
            tensors: std::mem::take(&mut self.tensors),
            gaps,
        };
        let bytes = directory.to_bytes_with(packed);
        self.out.write_all(&bytes)?;
        self.out.write_all(Trailer::new(self.position, &bytes).as_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}
