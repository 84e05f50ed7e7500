//! Readers and writers of model containers (safetensors, GGUF) for wcodec.
//!
//! The readers take the bytes of a whole file, which are untrusted: every length and offset is
//! checked against the real size of the file before it is used, arithmetic is checked, nothing
//! is allocated from a declared count before the bytes behind it are seen to exist, and the
//! answer is either a [`SourceLayout`] whose tensors lie inside the file, sorted and
//! non-overlapping, or a [`ContainerError`]; never a panic.
//!
//! A layout does not need to cover the file: the bytes between tensors (a safetensors JSON
//! header, GGUF metadata, alignment padding, unreferenced data) are the "gaps" that the codec
//! stores as they are.
#![forbid(unsafe_code)]

mod error;
pub mod gguf;
pub mod safetensors;

use std::ops::Range;

use wcodec_format::element_count;

pub use error::{ContainerError, Result};
pub use gguf::{GgmlTypeInfo, GgufTensorInfo, ggml_type_info, read_gguf, read_gguf_infos};
pub use safetensors::{
    MAX_HEADER_LEN, SafetensorsWriter, read_safetensors, read_safetensors_metadata,
    write_safetensors,
};
pub use wcodec_format::{Dtype, SourceKind};

/// One tensor of a source file: where its bytes are and how to view them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceTensor {
    pub name: String,
    /// Element type; [`Dtype::Opaque`] (with `dims == [len]`) for types wcodec does not model.
    pub dtype: Dtype,
    /// Row-major dims (the last one is the fastest).
    pub dims: Vec<u64>,
    /// Absolute offset of the first byte in the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

impl SourceTensor {
    /// The byte range of the tensor in the file.
    pub fn range(&self) -> Range<u64> {
        // Cannot overflow: layouts are only built with tensors inside the file.
        self.offset..self.offset.saturating_add(self.len)
    }
}

/// The tensors of a source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceLayout {
    pub kind: SourceKind,
    /// Sorted by offset (then length, then name), non-overlapping, inside the file.
    pub tensors: Vec<SourceTensor>,
}

impl SourceLayout {
    /// The byte ranges of a file of `file_len` bytes not covered by any tensor, in order.
    pub fn gaps(&self, file_len: u64) -> Vec<Range<u64>> {
        let mut gaps = Vec::new();
        let mut pos = 0u64;
        for t in &self.tensors {
            if t.offset > pos {
                gaps.push(pos..t.offset);
            }
            pos = pos.max(t.offset.saturating_add(t.len));
        }
        if file_len > pos {
            gaps.push(pos..file_len);
        }
        gaps
    }
}

/// Which container `bytes` (the whole file, or at least its first bytes) look like.
///
/// GGUF: the magic `GGUF`. Safetensors: a little-endian u64 header length that is at least 2
/// and at most [`MAX_HEADER_LEN`], followed by `{`. The length is not checked against
/// `bytes.len()`, so a prefix of a file is enough.
pub fn detect(bytes: &[u8]) -> Option<SourceKind> {
    if bytes.get(..4) == Some(gguf::MAGIC.as_slice()) {
        return Some(SourceKind::Gguf);
    }
    let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    if (2..=MAX_HEADER_LEN).contains(&len) && bytes.get(8) == Some(&b'{') {
        return Some(SourceKind::Safetensors);
    }
    None
}

/// Detects the container of `bytes` and reads its layout.
pub fn read_layout(bytes: &[u8]) -> Result<SourceLayout> {
    match detect(bytes) {
        Some(SourceKind::Gguf) => read_gguf(bytes),
        Some(SourceKind::Safetensors) => read_safetensors(bytes),
        Some(SourceKind::Raw) | None => Err(ContainerError::UnknownFormat),
    }
}

/// Sorts `tensors` by offset and checks that they are inside `file_len` and do not overlap.
fn finish_layout(
    kind: SourceKind,
    mut tensors: Vec<SourceTensor>,
    file_len: u64,
) -> Result<SourceLayout> {
    for t in &tensors {
        check_in_file(&t.name, t.offset, t.len, file_len)?;
    }
    tensors.sort_by(|a, b| (a.offset, a.len, &a.name).cmp(&(b.offset, b.len, &b.name)));
    check_no_overlap(tensors.iter().map(|t| (t.name.as_str(), t.offset, t.len)))?;
    Ok(SourceLayout { kind, tensors })
}

fn check_in_file(name: &str, offset: u64, len: u64, file_len: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= file_len => Ok(()),
        _ => {
            Err(ContainerError::TensorOutOfBounds { name: name.to_owned(), offset, len, file_len })
        }
    }
}

/// `ranges` sorted by offset, all inside the file: checks that each ends before the next starts.
fn check_no_overlap<'a>(ranges: impl Iterator<Item = (&'a str, u64, u64)>) -> Result<()> {
    let mut prev: Option<(&str, u64)> = None;
    for (name, offset, len) in ranges {
        if let Some((prev_name, prev_end)) = prev
            && offset < prev_end
        {
            return Err(ContainerError::Overlap {
                first: prev_name.to_owned(),
                second: name.to_owned(),
                first_end: prev_end,
                second_offset: offset,
            });
        }
        let end = offset.saturating_add(len);
        prev = Some(match prev {
            // A zero-length tensor sorted after a longer one at the same offset must not hide
            // the end of the longer one.
            Some((n, e)) if e > end => (n, e),
            _ => (name, end),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_kinds() {
        assert_eq!(detect(b"GGUF\x03\0\0\0"), Some(SourceKind::Gguf));
        let mut st = 2u64.to_le_bytes().to_vec();
        st.extend_from_slice(b"{}");
        assert_eq!(detect(&st), Some(SourceKind::Safetensors));
        assert_eq!(detect(&st[..8]), None);
        assert_eq!(detect(b""), None);
        assert_eq!(detect(b"GGU"), None);
        let mut huge = (MAX_HEADER_LEN + 1).to_le_bytes().to_vec();
        huge.push(b'{');
        assert_eq!(detect(&huge), None);
        assert!(matches!(read_layout(b"hello world"), Err(ContainerError::UnknownFormat)));
    }

    #[test]
    fn gaps_cover_the_rest() {
        let t = |offset, len| SourceTensor {
            name: format!("t{offset}"),
            dtype: Dtype::U8,
            dims: vec![len],
            offset,
            len,
        };
        let layout =
            SourceLayout { kind: SourceKind::Raw, tensors: vec![t(0, 4), t(4, 0), t(10, 5)] };
        assert_eq!(layout.gaps(20), vec![4..10, 15..20]);
        assert_eq!(layout.gaps(15), vec![4..10]);
    }

    #[test]
    fn overlap_detection() {
        let ok = [("a", 0, 4), ("z", 4, 0), ("b", 4, 4)];
        assert!(check_no_overlap(ok.iter().copied()).is_ok());
        let bad = [("a", 0, 8), ("z", 4, 0)];
        assert!(check_no_overlap(bad.iter().copied()).is_err());
        let hidden = [("a", 0, 8), ("b", 0, 0), ("c", 4, 4)];
        assert!(matches!(
            check_no_overlap(hidden.iter().copied()),
            Err(ContainerError::Overlap { first, .. }) if first == "a"
        ));
    }
}

#[cfg(test)]
mod proptests;
