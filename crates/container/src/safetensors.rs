//! safetensors: an 8-byte little-endian header length `N`, a JSON header of `N` bytes, then the
//! data section. The header maps tensor names to `{"dtype", "shape", "data_offsets"}` (offsets
//! relative to the data section, which starts at `8 + N`) and may hold `"__metadata__"`, an
//! object of strings.
//!
//! The reader follows the checks of the reference implementation (huggingface/safetensors):
//! a cap on the header length, UTF-8, a header that starts with `{`, and
//! `shape x dtype size == end - begin` for every tensor. Unlike it, it allows bytes of the data
//! section not covered by any tensor (the codec keeps them as gaps), and it reads a dtype that
//! wcodec does not model as opaque bytes.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_json::Value;
use wcodec_format::{Dtype, SourceKind};

use crate::error::{ContainerError, Result};
use crate::{SourceLayout, SourceTensor, element_count, finish_layout};

/// The longest safetensors header the reader accepts (the reference implementation's limit).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

const METADATA_KEY: &str = "__metadata__";
const LEN_BYTES: u64 = 8;

/// Reads the tensors of a safetensors file.
pub fn read_safetensors(bytes: &[u8]) -> Result<SourceLayout> {
    parse(bytes).map(|(layout, _)| layout)
}

/// Reads the `__metadata__` of a safetensors file (after validating the whole header).
pub fn read_safetensors_metadata(bytes: &[u8]) -> Result<Option<BTreeMap<String, String>>> {
    parse(bytes).map(|(_, metadata)| metadata)
}

/// The entries of the header object, in file order.
struct Entries(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of tensor entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

#[derive(Deserialize)]
struct TensorInfo {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

type Parsed = (SourceLayout, Option<BTreeMap<String, String>>);

fn parse(bytes: &[u8]) -> Result<Parsed> {
    let file_len = bytes.len() as u64;
    let len_bytes = bytes.get(..LEN_BYTES as usize).ok_or(ContainerError::Truncated {
        what: "safetensors header length",
        offset: 0,
        needed: LEN_BYTES,
        file_len,
    })?;
    let header_len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    if header_len > MAX_HEADER_LEN {
        return Err(ContainerError::HeaderTooLarge { len: header_len, max: MAX_HEADER_LEN });
    }
    let data_start = LEN_BYTES + header_len; // <= 8 + MAX_HEADER_LEN: no overflow
    let header = usize::try_from(data_start)
        .ok()
        .and_then(|end| bytes.get(LEN_BYTES as usize..end))
        .ok_or(ContainerError::Truncated {
            what: "safetensors header",
            offset: LEN_BYTES,
            needed: header_len,
            file_len,
        })?;
    let header = std::str::from_utf8(header)
        .map_err(|e| ContainerError::HeaderNotUtf8 { valid_up_to: e.valid_up_to() as u64 })?;
    if !header.starts_with('{') {
        return Err(ContainerError::HeaderStart);
    }
    let Entries(entries) = serde_json::from_str(header)
        .map_err(|e| ContainerError::HeaderJson { detail: e.to_string() })?;

    let mut metadata = None;
    let mut names = HashSet::new();
    let mut tensors = Vec::new();
    for (name, value) in entries {
        if !names.insert(name.clone()) {
            return Err(ContainerError::DuplicateTensor { name });
        }
        if name == METADATA_KEY {
            if value.is_null() {
                continue;
            }
            let map: BTreeMap<String, String> = serde_json::from_value(value)
                .map_err(|e| ContainerError::Metadata { detail: e.to_string() })?;
            metadata = Some(map);
            continue;
        }
        let info: TensorInfo = match serde_json::from_value(value) {
            Ok(info) => info,
            Err(e) => return Err(ContainerError::TensorEntry { name, detail: e.to_string() }),
        };
        tensors.push(tensor(name, info, data_start)?);
    }
    let layout = finish_layout(SourceKind::Safetensors, tensors, file_len)?;
    Ok((layout, metadata))
}

fn tensor(name: String, info: TensorInfo, data_start: u64) -> Result<SourceTensor> {
    let (begin, end) = info.data_offsets;
    if begin > end {
        return Err(ContainerError::ReversedOffsets { name, begin, end });
    }
    let len = end - begin;
    let Some(offset) = data_start.checked_add(begin) else {
        return Err(ContainerError::SizeOverflow { name, what: "data offset" });
    };
    let Some(dtype) = Dtype::from_safetensors_name(&info.dtype) else {
        // A dtype wcodec does not model (F8_E8M0, F4, C64, ...): its bytes, as they are.
        return Ok(SourceTensor { name, dtype: Dtype::Opaque, dims: vec![len], offset, len });
    };
    // The rows (the dims before the last) must be countable too, even in an empty tensor: a
    // codec views a tensor as that many rows.
    let expected = element_count(&info.shape)
        .filter(|_| wcodec_format::matrix_shape(&info.shape).is_some())
        .and_then(|n| n.checked_mul(dtype.size() as u64))
        .ok_or_else(|| ContainerError::SizeOverflow { name: name.clone(), what: "shape" })?;
    if expected != len {
        return Err(ContainerError::ShapeMismatch {
            name,
            dtype,
            dims: info.shape,
            expected,
            actual: len,
        });
    }
    Ok(SourceTensor { name, dtype, dims: info.shape, offset, len })
}

/// Writes safetensors files: tensors are declared first (so the header can be written before
/// any data, e.g. to stream a large file), in the order given, back to back in the data
/// section. The header is padded with spaces to a multiple of 8 bytes, as the reference
/// implementation does, so that the data section starts 8-byte aligned.
#[derive(Clone, Debug, Default)]
pub struct SafetensorsWriter {
    metadata: Option<BTreeMap<String, String>>,
    tensors: Vec<Planned>,
    names: HashSet<String>,
    data_len: u64,
}

#[derive(Clone, Debug)]
struct Planned {
    name: String,
    dtype: Dtype,
    dims: Vec<u64>,
    begin: u64,
    end: u64,
}

impl SafetensorsWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the `__metadata__` object.
    pub fn set_metadata(&mut self, metadata: BTreeMap<String, String>) {
        self.metadata = Some(metadata);
    }

    /// Declares the next tensor; returns its length in bytes (what its data must be).
    pub fn add_tensor(&mut self, name: &str, dtype: Dtype, dims: &[u64]) -> Result<u64> {
        let fail = |detail: &str| {
            Err(ContainerError::WriteTensor { name: name.to_owned(), detail: detail.to_owned() })
        };
        if name == METADATA_KEY {
            return fail("the name __metadata__ is reserved");
        }
        if dtype == Dtype::Opaque {
            return fail("opaque bytes have no safetensors dtype (declare them as U8)");
        }
        if self.names.contains(name) {
            return Err(ContainerError::DuplicateTensor { name: name.to_owned() });
        }
        let Some(len) = element_count(dims).and_then(|n| n.checked_mul(dtype.size() as u64)) else {
            return fail("the byte size of its shape overflows 64 bits");
        };
        let Some(end) = self.data_len.checked_add(len) else {
            return fail("the data section would exceed 2^64 bytes");
        };
        self.names.insert(name.to_owned());
        self.tensors.push(Planned {
            name: name.to_owned(),
            dtype,
            dims: dims.to_vec(),
            begin: self.data_len,
            end,
        });
        self.data_len = end;
        Ok(len)
    }

    /// Bytes of the data section declared so far.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// The first bytes of the file: the 8-byte length, the JSON header and its padding.
    pub fn header(&self) -> Result<Vec<u8>> {
        let mut json = String::from("{");
        let quote = |s: &str| serde_json::to_string(s).expect("strings serialize");
        if let Some(metadata) = &self.metadata {
            json.push_str(&quote(METADATA_KEY));
            json.push(':');
            json.push_str(&serde_json::to_string(metadata).expect("string maps serialize"));
        }
        for (i, t) in self.tensors.iter().enumerate() {
            if i > 0 || self.metadata.is_some() {
                json.push(',');
            }
            let dims: Vec<String> = t.dims.iter().map(u64::to_string).collect();
            json.push_str(&format!(
                "{}:{{\"dtype\":{},\"shape\":[{}],\"data_offsets\":[{},{}]}}",
                quote(&t.name),
                quote(t.dtype.safetensors_name()),
                dims.join(","),
                t.begin,
                t.end
            ));
        }
        json.push('}');
        while json.len() % 8 != 0 {
            json.push(' ');
        }
        let len = json.len() as u64;
        if len > MAX_HEADER_LEN {
            return Err(ContainerError::HeaderTooLarge { len, max: MAX_HEADER_LEN });
        }
        let mut out = Vec::with_capacity(json.len() + 8);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(json.as_bytes());
        Ok(out)
    }
}

/// Writes a safetensors file of `tensors` (name, dtype, dims, data), in the order given.
pub fn write_safetensors(
    tensors: &[(&str, Dtype, &[u64], &[u8])],
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<Vec<u8>> {
    let mut writer = SafetensorsWriter::new();
    if let Some(metadata) = metadata {
        writer.set_metadata(metadata.clone());
    }
    for &(name, dtype, dims, data) in tensors {
        let len = writer.add_tensor(name, dtype, dims)?;
        if len != data.len() as u64 {
            return Err(ContainerError::WriteTensor {
                name: name.to_owned(),
                detail: format!(
                    "shape {dims:?} of {dtype} needs {len} bytes, but {} were given",
                    data.len()
                ),
            });
        }
    }
    let mut out = writer.header()?;
    let total = usize::try_from(writer.data_len())
        .ok()
        .and_then(|d| d.checked_add(out.len()))
        .ok_or_else(|| ContainerError::WriteTensor {
            name: String::new(),
            detail: "the file would not fit in memory".into(),
        })?;
    out.reserve_exact(total - out.len());
    for &(_, _, _, data) in tensors {
        out.extend_from_slice(data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_a_hand_written_file() {
        let header = r#"{"b":{"dtype":"BF16","shape":[2],"data_offsets":[4,8]},
            "__metadata__":{"format":"pt"},
            "a":{"dtype":"I8","shape":[2,2],"data_offsets":[0,4]},
            "weird":{"dtype":"F8_E8M0","shape":[3],"data_offsets":[8,11]},
            "empty":{"dtype":"F32","shape":[0,5],"data_offsets":[11,11]}}"#;
        let bytes = file(header, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 99]);
        let layout = read_safetensors(&bytes).unwrap();
        let base = 8 + header.len() as u64;
        let got: Vec<_> = layout
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.dtype, t.dims.clone(), t.offset - base, t.len))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", Dtype::I8, vec![2, 2], 0, 4),
                ("b", Dtype::BF16, vec![2], 4, 4),
                ("weird", Dtype::Opaque, vec![3], 8, 3),
                ("empty", Dtype::F32, vec![0, 5], 11, 0),
            ]
        );
        let metadata = read_safetensors_metadata(&bytes).unwrap().unwrap();
        assert_eq!(metadata.get("format").map(String::as_str), Some("pt"));
        // The trailing byte 99 is a gap, which is legal.
        assert_eq!(layout.gaps(bytes.len() as u64), vec![0..base, base + 11..base + 12]);
    }

    #[test]
    fn rejects_bad_headers() {
        let err = |header: &str, data: &[u8]| read_safetensors(&file(header, data)).unwrap_err();
        assert!(matches!(err(" {}", &[]), ContainerError::HeaderStart));
        assert!(matches!(err("{", &[]), ContainerError::HeaderJson { .. }));
        assert!(matches!(err("[]", &[]), ContainerError::HeaderStart));
        assert!(matches!(err("{} x", &[]), ContainerError::HeaderJson { .. }));
        assert!(matches!(err(r#"{"t": 1}"#, &[]), ContainerError::TensorEntry { .. }));
        assert!(matches!(err(r#"{"__metadata__":{"a":1}}"#, &[]), ContainerError::Metadata { .. }));
        assert!(matches!(err(r#"{"t":{"dtype":"F32"}}"#, &[]), ContainerError::TensorEntry { .. }));
        assert!(matches!(
            err(r#"{"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, &[0; 4]),
            ContainerError::TensorEntry { .. }
        ));
        assert!(matches!(
            err(r#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, &[0; 4]),
            ContainerError::ShapeMismatch { expected: 8, actual: 4, .. }
        ));
        assert!(matches!(
            err(r#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, &[0; 4]),
            ContainerError::ReversedOffsets { .. }
        ));
        assert!(matches!(
            err(r#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, &[0; 3]),
            ContainerError::TensorOutOfBounds { .. }
        ));
        assert!(matches!(
            err(
                r#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"u":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}}"#,
                &[0; 5]
            ),
            ContainerError::Overlap { .. }
        ));
        assert!(matches!(
            err(
                r#"{"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"t":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#,
                &[0; 2]
            ),
            ContainerError::DuplicateTensor { .. }
        ));
        assert!(matches!(
            err(
                r#"{"t":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,1]}}"#,
                &[0; 1]
            ),
            ContainerError::SizeOverflow { .. }
        ));
        let deep = format!("{{\"t\":{}", "[".repeat(100_000));
        assert!(matches!(err(&deep, &[]), ContainerError::HeaderJson { .. }));
        let huge = (MAX_HEADER_LEN + 1).to_le_bytes();
        assert!(matches!(read_safetensors(&huge), Err(ContainerError::HeaderTooLarge { .. })));
        let long = 1000u64.to_le_bytes();
        assert!(matches!(read_safetensors(&long), Err(ContainerError::Truncated { .. })));
        assert!(matches!(read_safetensors(&[1, 2]), Err(ContainerError::Truncated { .. })));
        let mut not_utf8 = 2u64.to_le_bytes().to_vec();
        not_utf8.extend_from_slice(&[b'{', 0xff]);
        assert!(matches!(read_safetensors(&not_utf8), Err(ContainerError::HeaderNotUtf8 { .. })));
    }

    #[test]
    fn writer_output_is_padded_and_readable() {
        let mut metadata = BTreeMap::new();
        metadata.insert("format".to_owned(), "pt".to_owned());
        let data_a = [1u8, 2, 3];
        let data_b = [0u8; 8];
        let tensors: [(&str, Dtype, &[u64], &[u8]); 2] =
            [("z \"quoted\"", Dtype::U8, &[3], &data_a), ("a", Dtype::F32, &[1, 2], &data_b)];
        let bytes = write_safetensors(&tensors, Some(&metadata)).unwrap();
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(header_len % 8, 0);
        let layout = read_safetensors(&bytes).unwrap();
        assert_eq!(layout.tensors[0].name, "z \"quoted\"");
        assert_eq!(layout.tensors[0].offset, 8 + header_len);
        assert_eq!(layout.tensors[1].dims, vec![1, 2]);
        assert_eq!(read_safetensors_metadata(&bytes).unwrap(), Some(metadata));
        assert_eq!(bytes.len() as u64, 8 + header_len + 11);
    }

    #[test]
    fn writer_rejects_bad_tensors() {
        let bad: [(&str, Dtype, &[u64], &[u8]); 1] = [("t", Dtype::F32, &[2], &[0; 4])];
        assert!(matches!(write_safetensors(&bad, None), Err(ContainerError::WriteTensor { .. })));
        let opaque: [(&str, Dtype, &[u64], &[u8]); 1] = [("t", Dtype::Opaque, &[4], &[0; 4])];
        assert!(write_safetensors(&opaque, None).is_err());
        let reserved: [(&str, Dtype, &[u64], &[u8]); 1] = [("__metadata__", Dtype::U8, &[0], &[])];
        assert!(write_safetensors(&reserved, None).is_err());
        let dup: [(&str, Dtype, &[u64], &[u8]); 2] =
            [("t", Dtype::U8, &[0], &[]), ("t", Dtype::U8, &[0], &[])];
        assert!(matches!(
            write_safetensors(&dup, None),
            Err(ContainerError::DuplicateTensor { .. })
        ));
        let empty = write_safetensors(&[], None).unwrap();
        assert_eq!(read_safetensors(&empty).unwrap().tensors, vec![]);
    }
}
