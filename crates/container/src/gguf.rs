//! GGUF (versions 2 and 3, little-endian): the magic `GGUF`, a u32 version, u64 tensor and
//! metadata counts, the metadata key/value pairs, the tensor infos (name, dims, ggml type,
//! offset in the data section), then the data section, which starts at the first multiple of
//! `general.alignment` (default 32) after the infos.
//!
//! Metadata values are skipped with bounds checks; only `general.alignment` is read. Every
//! loop over a declared count consumes bytes of the file at each step, so a hostile count
//! ends in a `Truncated` error, not in a long loop or a large allocation.

use std::collections::HashSet;

use wcodec_format::{Dtype, SourceKind};

use crate::error::{ContainerError, Result};
use crate::{SourceLayout, SourceTensor, check_in_file, check_no_overlap, element_count};

/// The first four bytes of a GGUF file.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section and of tensors when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions a tensor may have (ggml itself uses at most 4).
pub const MAX_DIMS: u32 = 8;
/// Deepest nesting of arrays in metadata values the reader accepts.
pub const MAX_ARRAY_NESTING: u32 = 4;

const ALIGNMENT_KEY: &[u8] = b"general.alignment";

/// Codes of the ggml tensor types (the `ggml_type` enum).
pub mod ggml {
    pub const F32: u32 = 0;
    pub const F16: u32 = 1;
    pub const Q4_0: u32 = 2;
    pub const Q4_1: u32 = 3;
    pub const Q5_0: u32 = 6;
    pub const Q5_1: u32 = 7;
    pub const Q8_0: u32 = 8;
    pub const Q8_1: u32 = 9;
    pub const Q2_K: u32 = 10;
    pub const Q3_K: u32 = 11;
    pub const Q4_K: u32 = 12;
    pub const Q5_K: u32 = 13;
    pub const Q6_K: u32 = 14;
    pub const Q8_K: u32 = 15;
    pub const IQ2_XXS: u32 = 16;
    pub const IQ2_XS: u32 = 17;
    pub const IQ3_XXS: u32 = 18;
    pub const IQ1_S: u32 = 19;
    pub const IQ4_NL: u32 = 20;
    pub const IQ3_S: u32 = 21;
    pub const IQ2_S: u32 = 22;
    pub const IQ4_XS: u32 = 23;
    pub const I8: u32 = 24;
    pub const I16: u32 = 25;
    pub const I32: u32 = 26;
    pub const I64: u32 = 27;
    pub const F64: u32 = 28;
    pub const IQ1_M: u32 = 29;
    pub const BF16: u32 = 30;
    pub const TQ1_0: u32 = 34;
    pub const TQ2_0: u32 = 35;
    pub const MXFP4: u32 = 39;
}

/// What the reader knows of a ggml type: its block of `block_elems` elements takes
/// `block_bytes` bytes; element types (block of 1) map to a wcodec [`Dtype`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GgmlTypeInfo {
    pub code: u32,
    pub name: &'static str,
    pub block_elems: u64,
    pub block_bytes: u64,
    /// The matching element dtype, `None` for block-quantized types.
    pub dtype: Option<Dtype>,
}

const fn elem(code: u32, name: &'static str, dtype: Dtype, bytes: u64) -> GgmlTypeInfo {
    GgmlTypeInfo { code, name, block_elems: 1, block_bytes: bytes, dtype: Some(dtype) }
}

const fn block(code: u32, name: &'static str, block_elems: u64, block_bytes: u64) -> GgmlTypeInfo {
    GgmlTypeInfo { code, name, block_elems, block_bytes, dtype: None }
}

const TYPES: [GgmlTypeInfo; 32] = [
    elem(ggml::F32, "F32", Dtype::F32, 4),
    elem(ggml::F16, "F16", Dtype::F16, 2),
    block(ggml::Q4_0, "Q4_0", 32, 18),
    block(ggml::Q4_1, "Q4_1", 32, 20),
    block(ggml::Q5_0, "Q5_0", 32, 22),
    block(ggml::Q5_1, "Q5_1", 32, 24),
    block(ggml::Q8_0, "Q8_0", 32, 34),
    block(ggml::Q8_1, "Q8_1", 32, 36),
    block(ggml::Q2_K, "Q2_K", 256, 84),
    block(ggml::Q3_K, "Q3_K", 256, 110),
    block(ggml::Q4_K, "Q4_K", 256, 144),
    block(ggml::Q5_K, "Q5_K", 256, 176),
    block(ggml::Q6_K, "Q6_K", 256, 210),
    block(ggml::Q8_K, "Q8_K", 256, 292),
    block(ggml::IQ2_XXS, "IQ2_XXS", 256, 66),
    block(ggml::IQ2_XS, "IQ2_XS", 256, 74),
    block(ggml::IQ3_XXS, "IQ3_XXS", 256, 98),
    block(ggml::IQ1_S, "IQ1_S", 256, 50),
    block(ggml::IQ4_NL, "IQ4_NL", 32, 18),
    block(ggml::IQ3_S, "IQ3_S", 256, 110),
    block(ggml::IQ2_S, "IQ2_S", 256, 82),
    block(ggml::IQ4_XS, "IQ4_XS", 256, 136),
    elem(ggml::I8, "I8", Dtype::I8, 1),
    elem(ggml::I16, "I16", Dtype::I16, 2),
    elem(ggml::I32, "I32", Dtype::I32, 4),
    elem(ggml::I64, "I64", Dtype::I64, 8),
    elem(ggml::F64, "F64", Dtype::F64, 8),
    block(ggml::IQ1_M, "IQ1_M", 256, 56),
    elem(ggml::BF16, "BF16", Dtype::BF16, 2),
    block(ggml::TQ1_0, "TQ1_0", 256, 54),
    block(ggml::TQ2_0, "TQ2_0", 256, 66),
    block(ggml::MXFP4, "MXFP4", 32, 17),
];

/// The block size and byte size of ggml type `code`, if the reader knows it.
pub fn ggml_type_info(code: u32) -> Option<GgmlTypeInfo> {
    TYPES.iter().find(|t| t.code == code).copied()
}

/// One tensor info of a GGUF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// The ggml type code (see [`ggml`] and [`ggml_type_info`]; always a known type).
    pub ggml_type: u32,
    /// ggml's dims: `ne[0]` is the fastest-varying (the reverse of row-major order).
    pub ne: Vec<u64>,
    /// Absolute offset in the file (data section start + the offset stored in the info).
    pub offset: u64,
    /// Length in bytes, from the type's block size.
    pub len: u64,
}

impl GgufTensorInfo {
    pub fn type_info(&self) -> Option<GgmlTypeInfo> {
        ggml_type_info(self.ggml_type)
    }

    /// The tensor as wcodec sees it: element types and the block types wcodec knows the
    /// fields of with row-major dims (`ne` reversed); other block types as opaque bytes with
    /// `dims == [len]`.
    pub fn source_tensor(&self) -> SourceTensor {
        let known = self.type_info().and_then(|t| t.dtype).or_else(|| {
            // A block type needs whole blocks in every row (ne[0] a multiple of the block).
            Dtype::from_ggml_block(self.ggml_type).filter(|d| {
                let (per_block, _) = d.block().expect("a block type");
                self.ne.first().is_some_and(|&ne0| ne0 % per_block == 0)
            })
        });
        let (dtype, dims) = match known {
            Some(dtype) => (dtype, self.ne.iter().rev().copied().collect()),
            None => (Dtype::Opaque, vec![self.len]),
        };
        SourceTensor { name: self.name.clone(), dtype, dims, offset: self.offset, len: self.len }
    }
}

/// Reads the tensors of a GGUF file.
pub fn read_gguf(bytes: &[u8]) -> Result<SourceLayout> {
    let (infos, _) = read_gguf_infos(bytes)?;
    Ok(SourceLayout {
        kind: SourceKind::Gguf,
        tensors: infos.iter().map(GgufTensorInfo::source_tensor).collect(),
    })
}

/// Reads and validates the tensor infos of a GGUF file; returns them sorted by offset (the
/// same order as [`read_gguf`]'s tensors) with the absolute offset of the data section.
pub fn read_gguf_infos(bytes: &[u8]) -> Result<(Vec<GgufTensorInfo>, u64)> {
    let mut c = Cursor { bytes, pos: 0 };
    if c.take("GGUF magic", 4)? != MAGIC {
        return Err(ContainerError::UnknownFormat);
    }
    let version = c.u32("GGUF version")?;
    if !(2..=3).contains(&version) {
        return Err(ContainerError::GgufVersion { version });
    }
    let n_tensors = c.u64("GGUF tensor count")?;
    let n_kv = c.u64("GGUF metadata count")?;

    let mut alignment = DEFAULT_ALIGNMENT;
    let mut keys = HashSet::new();
    for _ in 0..n_kv {
        let key = c.string("GGUF metadata key")?;
        if !keys.insert(key) {
            return Err(ContainerError::GgufDuplicateKey { key: lossy(key) });
        }
        let value_type = c.u32("GGUF metadata value type")?;
        if key == ALIGNMENT_KEY {
            if value_type != value::U32 {
                return Err(ContainerError::GgufAlignment {
                    found: format!("a value of type {value_type}"),
                });
            }
            let a = c.u32("GGUF general.alignment")?;
            if !a.is_power_of_two() {
                return Err(ContainerError::GgufAlignment { found: a.to_string() });
            }
            alignment = u64::from(a);
        } else {
            skip_value(&mut c, key, value_type, 0)?;
        }
    }

    let mut infos = Vec::new();
    let mut names = HashSet::new();
    for _ in 0..n_tensors {
        let name_offset = c.pos;
        let name = c.string("GGUF tensor name")?;
        let name = std::str::from_utf8(name)
            .map_err(|_| ContainerError::GgufNotUtf8 { what: "tensor name", offset: name_offset })?
            .to_owned();
        let n_dims = c.u32("GGUF tensor dimension count")?;
        if n_dims > MAX_DIMS {
            return Err(ContainerError::GgufDims { name, n_dims, max: MAX_DIMS });
        }
        let ne = (0..n_dims).map(|_| c.u64("GGUF tensor dims")).collect::<Result<Vec<_>>>()?;
        let ggml_type = c.u32("GGUF tensor type")?;
        let offset = c.u64("GGUF tensor offset")?;
        if !names.insert(name.clone()) {
            return Err(ContainerError::DuplicateTensor { name });
        }
        let len = tensor_len(&name, ggml_type, &ne)?;
        infos.push(GgufTensorInfo { name, ggml_type, ne, offset, len });
    }

    let data_start =
        c.pos.checked_next_multiple_of(alignment).ok_or(ContainerError::Truncated {
            what: "GGUF data section",
            offset: c.pos,
            needed: alignment,
            file_len: bytes.len() as u64,
        })?;
    for info in &mut infos {
        info.offset = data_start.checked_add(info.offset).ok_or_else(|| {
            ContainerError::SizeOverflow { name: info.name.clone(), what: "offset" }
        })?;
        check_in_file(&info.name, info.offset, info.len, bytes.len() as u64)?;
    }
    infos.sort_by(|a, b| (a.offset, a.len, &a.name).cmp(&(b.offset, b.len, &b.name)));
    check_no_overlap(infos.iter().map(|t| (t.name.as_str(), t.offset, t.len)))?;
    Ok((infos, data_start))
}

fn tensor_len(name: &str, ggml_type: u32, ne: &[u64]) -> Result<u64> {
    let info = ggml_type_info(ggml_type)
        .ok_or_else(|| ContainerError::GgmlType { name: name.to_owned(), ggml_type })?;
    let overflow = || ContainerError::SizeOverflow { name: name.to_owned(), what: "shape" };
    let elements = element_count(ne).ok_or_else(overflow)?;
    // So must the rows (the dims after ne[0]), even of an empty tensor: a codec views a tensor
    // as that many rows.
    element_count(ne.get(1..).unwrap_or(&[])).ok_or_else(overflow)?;
    let row = ne.first().copied().unwrap_or(1);
    if row % info.block_elems != 0 {
        return Err(ContainerError::PartialBlock {
            name: name.to_owned(),
            type_name: info.name,
            row,
            block: info.block_elems,
        });
    }
    // The bytes of one row must be countable too, even when another dim is 0 and the tensor
    // is empty: a codec views the tensor as rows of that many bytes.
    (row / info.block_elems).checked_mul(info.block_bytes).ok_or_else(overflow)?;
    (elements / info.block_elems).checked_mul(info.block_bytes).ok_or_else(overflow)
}

/// Codes of GGUF metadata value types.
mod value {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;

    /// Bytes of a fixed-size value type.
    pub fn fixed_size(value_type: u32) -> Option<u64> {
        match value_type {
            U8 | I8 | BOOL => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            _ => None,
        }
    }
}

/// Skips one metadata value of type `value_type`.
fn skip_value(c: &mut Cursor<'_>, key: &[u8], value_type: u32, depth: u32) -> Result<()> {
    if let Some(size) = value::fixed_size(value_type) {
        c.take("GGUF metadata value", size)?;
        return Ok(());
    }
    match value_type {
        value::STRING => {
            c.string("GGUF metadata string")?;
        }
        value::ARRAY => {
            if depth >= MAX_ARRAY_NESTING {
                return Err(ContainerError::GgufNesting {
                    key: lossy(key),
                    max: MAX_ARRAY_NESTING,
                });
            }
            let elem_type = c.u32("GGUF array type")?;
            let count = c.u64("GGUF array length")?;
            if let Some(size) = value::fixed_size(elem_type) {
                c.take("GGUF array", count.saturating_mul(size))?;
            } else if elem_type == value::STRING || elem_type == value::ARRAY {
                // Each element takes at least 8 bytes, so a false count ends in `Truncated`.
                for _ in 0..count {
                    skip_value(c, key, elem_type, depth + 1)?;
                }
            } else {
                return Err(ContainerError::GgufValueType {
                    key: lossy(key),
                    value_type: elem_type,
                });
            }
        }
        _ => return Err(ContainerError::GgufValueType { key: lossy(key), value_type }),
    }
    Ok(())
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A reader over the file that never reads out of bounds.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: u64,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, what: &'static str, len: u64) -> Result<&'a [u8]> {
        let file_len = self.bytes.len() as u64;
        let truncated = ContainerError::Truncated { what, offset: self.pos, needed: len, file_len };
        let end = self.pos.checked_add(len).filter(|&end| end <= file_len).ok_or(truncated)?;
        // Both bounds are <= the slice length, so they fit in usize.
        let slice = self.bytes.get(self.pos as usize..end as usize).unwrap_or_default();
        self.pos = end;
        Ok(slice)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32> {
        let b = self.take(what, 4)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64> {
        let b = self.take(what, 8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// A GGUF string: u64 length, then the bytes (not terminated).
    fn string(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let len = self.u64(what)?;
        self.take(what, len)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds GGUF files for tests.
    #[derive(Default)]
    pub(crate) struct GgufBuilder {
        pub(crate) version: u32,
        pub(crate) kv: Vec<u8>,
        pub(crate) n_kv: u64,
        pub(crate) tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
        pub(crate) alignment: u64,
    }

    pub(crate) fn gstr(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    impl GgufBuilder {
        pub(crate) fn new() -> Self {
            Self { version: 3, alignment: 32, ..Self::default() }
        }

        pub(crate) fn kv_raw(&mut self, key: &str, value_type: u32, value: &[u8]) -> &mut Self {
            gstr(&mut self.kv, key);
            self.kv.extend_from_slice(&value_type.to_le_bytes());
            self.kv.extend_from_slice(value);
            self.n_kv += 1;
            self
        }

        pub(crate) fn tensor(&mut self, name: &str, ne: &[u64], ggml_type: u32) -> &mut Self {
            let len = tensor_len(name, ggml_type, ne).unwrap();
            let data = (0..len).map(|i| (i * 7 + self.tensors.len() as u64) as u8).collect();
            self.tensors.push((name.to_owned(), ne.to_vec(), ggml_type, data));
            self
        }

        /// The file, and the absolute offset of each tensor's data.
        pub(crate) fn build(&self) -> (Vec<u8>, Vec<u64>) {
            let mut out = MAGIC.to_vec();
            out.extend_from_slice(&self.version.to_le_bytes());
            out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
            out.extend_from_slice(&self.n_kv.to_le_bytes());
            out.extend_from_slice(&self.kv);
            let mut rel = 0u64;
            let mut rels = Vec::new();
            for (name, ne, ggml_type, data) in &self.tensors {
                gstr(&mut out, name);
                out.extend_from_slice(&(ne.len() as u32).to_le_bytes());
                for d in ne {
                    out.extend_from_slice(&d.to_le_bytes());
                }
                out.extend_from_slice(&ggml_type.to_le_bytes());
                out.extend_from_slice(&rel.to_le_bytes());
                rels.push(rel);
                rel = (rel + data.len() as u64).next_multiple_of(self.alignment);
            }
            let data_start = (out.len() as u64).next_multiple_of(self.alignment);
            out.resize(data_start as usize, 0);
            for ((_, _, _, data), rel) in self.tensors.iter().zip(&rels) {
                out.resize((data_start + rel) as usize, 0);
                out.extend_from_slice(data);
            }
            let padded = (out.len() as u64).next_multiple_of(self.alignment);
            out.resize(padded as usize, 0);
            (out, rels.iter().map(|r| r + data_start).collect())
        }
    }

    pub(crate) fn sample() -> GgufBuilder {
        let mut b = GgufBuilder::new();
        let mut strings = value::STRING.to_le_bytes().to_vec();
        strings.extend_from_slice(&3u64.to_le_bytes());
        for s in ["<s>", "", "héllo"] {
            gstr(&mut strings, s);
        }
        let mut u32s = value::U32.to_le_bytes().to_vec();
        u32s.extend_from_slice(&2u64.to_le_bytes());
        u32s.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
        let mut nested = value::ARRAY.to_le_bytes().to_vec();
        nested.extend_from_slice(&1u64.to_le_bytes());
        nested.extend_from_slice(&value::U8.to_le_bytes());
        nested.extend_from_slice(&2u64.to_le_bytes());
        nested.extend_from_slice(&[7, 8]);
        let mut name = Vec::new();
        gstr(&mut name, "tiny");
        b.kv_raw("general.architecture", value::STRING, &name)
            .kv_raw("general.alignment", value::U32, &64u32.to_le_bytes())
            .kv_raw("tokenizer.ggml.tokens", value::ARRAY, &strings)
            .kv_raw("some.u32s", value::ARRAY, &u32s)
            .kv_raw("some.nested", value::ARRAY, &nested)
            .kv_raw("some.f64", value::F64, &1.5f64.to_le_bytes())
            .kv_raw("some.bool", value::BOOL, &[1]);
        b.alignment = 64;
        b.tensor("token_embd.weight", &[64, 3], ggml::Q8_0)
            .tensor("output_norm.weight", &[5], ggml::F32)
            .tensor("blk.0.attn_q.weight", &[32, 2, 1], ggml::Q4_1)
            .tensor("blk.0.ffn.weight", &[3, 2], ggml::BF16);
        b
    }

    #[test]
    fn reads_a_hand_built_file() {
        let b = sample();
        let (bytes, offsets) = b.build();
        let (infos, data_start) = read_gguf_infos(&bytes).unwrap();
        assert_eq!(data_start % 64, 0);
        assert_eq!(offsets[0], data_start);
        let layout = read_gguf(&bytes).unwrap();
        assert_eq!(layout.kind, SourceKind::Gguf);
        let got: Vec<_> = layout
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.dtype, t.dims.clone(), t.offset, t.len))
            .collect();
        assert_eq!(
            got,
            vec![
                ("token_embd.weight", Dtype::Q8_0, vec![3, 64], offsets[0], 6 * 34),
                ("output_norm.weight", Dtype::F32, vec![5], offsets[1], 20),
                ("blk.0.attn_q.weight", Dtype::Q4_1, vec![1, 2, 32], offsets[2], 2 * 20),
                ("blk.0.ffn.weight", Dtype::BF16, vec![2, 3], offsets[3], 12),
            ]
        );
        assert_eq!(infos[0].ggml_type, ggml::Q8_0);
        assert_eq!(infos[0].ne, vec![64, 3]);
        assert_eq!(infos[2].ggml_type, ggml::Q4_1);
        for (t, (_, _, _, data)) in layout.tensors.iter().zip(&b.tensors) {
            assert_eq!(&bytes[t.range().start as usize..t.range().end as usize], &data[..]);
        }
        assert_eq!(crate::read_layout(&bytes).unwrap(), layout);
    }

    #[test]
    fn default_alignment_and_v2() {
        let mut b = GgufBuilder::new();
        b.version = 2;
        b.tensor("a", &[3], ggml::F16).tensor("b", &[1], ggml::I8);
        let (bytes, offsets) = b.build();
        let (infos, data_start) = read_gguf_infos(&bytes).unwrap();
        assert_eq!(data_start % 32, 0);
        assert_eq!(infos.iter().map(|i| i.offset).collect::<Vec<_>>(), offsets);
    }

    #[test]
    fn rejects_bad_files() {
        let err = |b: &GgufBuilder| read_gguf(&b.build().0).unwrap_err();
        let mut b = GgufBuilder::new();
        b.version = 1;
        assert!(matches!(err(&b), ContainerError::GgufVersion { version: 1 }));

        let mut b = GgufBuilder::new();
        b.kv_raw("general.alignment", value::U32, &24u32.to_le_bytes());
        assert!(matches!(err(&b), ContainerError::GgufAlignment { .. }));
        let mut b = GgufBuilder::new();
        b.kv_raw("general.alignment", value::U64, &32u64.to_le_bytes());
        assert!(matches!(err(&b), ContainerError::GgufAlignment { .. }));

        let mut b = GgufBuilder::new();
        b.kv_raw("x", 13, &[]);
        assert!(matches!(err(&b), ContainerError::GgufValueType { value_type: 13, .. }));

        let mut b = GgufBuilder::new();
        b.kv_raw("x", value::U8, &[1]).kv_raw("x", value::U8, &[1]);
        assert!(matches!(err(&b), ContainerError::GgufDuplicateKey { .. }));

        let mut b = GgufBuilder::new();
        let mut deep = Vec::new();
        for _ in 0..10 {
            deep.extend_from_slice(&value::ARRAY.to_le_bytes());
            deep.extend_from_slice(&1u64.to_le_bytes());
        }
        b.kv_raw("deep", value::ARRAY, &deep);
        assert!(matches!(err(&b), ContainerError::GgufNesting { .. }));

        let mut b = GgufBuilder::new();
        b.tensor("a", &[1], ggml::F32).tensor("a", &[1], ggml::F32);
        assert!(matches!(err(&b), ContainerError::DuplicateTensor { .. }));

        let mut b = GgufBuilder::new();
        b.tensor("a", &[32], ggml::Q4_0);
        b.tensors[0].2 = 31;
        assert!(matches!(err(&b), ContainerError::GgmlType { ggml_type: 31, .. }));

        let mut b = GgufBuilder::new();
        b.tensor("a", &[32], ggml::Q4_0);
        b.tensors[0].1 = vec![16, 2];
        assert!(matches!(err(&b), ContainerError::PartialBlock { row: 16, block: 32, .. }));

        let mut b = GgufBuilder::new();
        b.tensor("a", &[1; 8], ggml::F32);
        b.tensors[0].1 = vec![1; 9];
        assert!(matches!(err(&b), ContainerError::GgufDims { n_dims: 9, .. }));

        let mut b = GgufBuilder::new();
        b.tensor("a", &[1], ggml::F32);
        b.tensors[0].1 = vec![1 << 32, 1 << 32];
        assert!(matches!(err(&b), ContainerError::SizeOverflow { .. }));
    }

    #[test]
    fn rejects_overlap_and_out_of_bounds() {
        let mut b = GgufBuilder::new();
        b.tensor("a", &[16], ggml::F32).tensor("b", &[16], ggml::F32);
        let (mut bytes, _) = b.build();
        let (infos, data_start) = read_gguf_infos(&bytes).unwrap();
        // Point b's offset (the last 8 bytes of its info) at a's data + 4.
        let needle = (infos[1].offset - data_start).to_le_bytes();
        let pos = bytes[..data_start as usize]
            .windows(8)
            .rposition(|w| w == needle)
            .expect("offset of b in its info");
        bytes[pos..pos + 8].copy_from_slice(&4u64.to_le_bytes());
        assert!(matches!(read_gguf(&bytes), Err(ContainerError::Overlap { .. })));
        bytes[pos..pos + 8].copy_from_slice(&1_000_000u64.to_le_bytes());
        assert!(matches!(read_gguf(&bytes), Err(ContainerError::TensorOutOfBounds { .. })));
        bytes[pos..pos + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(read_gguf(&bytes), Err(ContainerError::SizeOverflow { .. })));
    }

    #[test]
    fn hostile_counts_end_quickly() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(read_gguf(&bytes), Err(ContainerError::Truncated { .. })));
        // An array that claims 2^64 strings.
        let mut b = GgufBuilder::new();
        let mut arr = value::STRING.to_le_bytes().to_vec();
        arr.extend_from_slice(&u64::MAX.to_le_bytes());
        b.kv_raw("a", value::ARRAY, &arr);
        assert!(matches!(read_gguf(&b.build().0), Err(ContainerError::Truncated { .. })));
        let mut b = GgufBuilder::new();
        let mut arr = value::U64.to_le_bytes().to_vec();
        arr.extend_from_slice(&u64::MAX.to_le_bytes());
        b.kv_raw("a", value::ARRAY, &arr);
        assert!(matches!(read_gguf(&b.build().0), Err(ContainerError::Truncated { .. })));
    }

    /// Fuzz find (gguf target, via the codec): an empty tensor (a dim of 0) whose rows are too
    /// wide to count in bytes was read, and the codec could not describe it. Now refused.
    #[test]
    fn empty_tensors_with_rows_too_wide_to_count_in_bytes() {
        let empty = |row: u64, ggml_type| {
            let mut b = GgufBuilder::new();
            b.tensors.push(("w".to_owned(), vec![row, 0], ggml_type, Vec::new()));
            read_gguf(&b.build().0)
        };
        let wide = !255u64;
        for ggml_type in [ggml::F32, ggml::F16, ggml::Q8_0, ggml::Q8_K] {
            assert!(
                matches!(empty(wide, ggml_type), Err(ContainerError::SizeOverflow { .. })),
                "{ggml_type}"
            );
        }
        // Rows whose bytes fit are fine, however empty the tensor.
        assert_eq!(empty(wide, ggml::Q4_K).unwrap().tensors[0].len, 0);
        assert_eq!(empty(1 << 60, ggml::F32).unwrap().tensors[0].len, 0);
    }

    #[test]
    fn type_table_is_consistent() {
        for t in TYPES {
            assert_eq!(ggml_type_info(t.code), Some(t));
            if let Some(d) = t.dtype {
                assert_eq!((t.block_elems, t.block_bytes), (1, d.size() as u64));
            }
        }
        assert_eq!(ggml_type_info(4), None);
    }
}
