//! Element types, as stored in `TensorRecord::dtype`.

use std::fmt;

/// The element type of a tensor. The discriminant is the on-disk code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Dtype {
    /// Bytes with no known element structure (the matrix is 1 x len).
    Opaque = 0,
    Bool = 1,
    U8 = 2,
    I8 = 3,
    F8E4M3 = 4,
    F8E5M2 = 5,
    I16 = 6,
    U16 = 7,
    F16 = 8,
    BF16 = 9,
    I32 = 10,
    U32 = 11,
    F32 = 12,
    I64 = 13,
    U64 = 14,
    F64 = 15,
    // GGUF block types: 32 + the ggml type code. An element count is a multiple of the
    // block's elements; the bytes are whole blocks (see `block`).
    Q4_0 = 34,
    Q4_1 = 35,
    Q5_0 = 38,
    Q5_1 = 39,
    Q8_0 = 40,
    Q8_1 = 41,
    Q2K = 42,
    Q3K = 43,
    Q4K = 44,
    Q5K = 45,
    Q6K = 46,
    Q8K = 47,
}

impl Dtype {
    pub const ALL: [Dtype; 28] = [
        Dtype::Opaque,
        Dtype::Bool,
        Dtype::U8,
        Dtype::I8,
        Dtype::F8E4M3,
        Dtype::F8E5M2,
        Dtype::I16,
        Dtype::U16,
        Dtype::F16,
        Dtype::BF16,
        Dtype::I32,
        Dtype::U32,
        Dtype::F32,
        Dtype::I64,
        Dtype::U64,
        Dtype::F64,
        Dtype::Q4_0,
        Dtype::Q4_1,
        Dtype::Q5_0,
        Dtype::Q5_1,
        Dtype::Q8_0,
        Dtype::Q8_1,
        Dtype::Q2K,
        Dtype::Q3K,
        Dtype::Q4K,
        Dtype::Q5K,
        Dtype::Q6K,
        Dtype::Q8K,
    ];

    pub fn from_code(code: u8) -> Option<Dtype> {
        Self::ALL.into_iter().find(|d| d.code() == code)
    }

    /// For GGUF block types: (elements per block, bytes per block).
    pub fn block(self) -> Option<(u64, u64)> {
        Some(match self {
            Dtype::Q4_0 => (32, 18),
            Dtype::Q4_1 => (32, 20),
            Dtype::Q5_0 => (32, 22),
            Dtype::Q5_1 => (32, 24),
            Dtype::Q8_0 => (32, 34),
            Dtype::Q8_1 => (32, 36),
            Dtype::Q2K => (256, 84),
            Dtype::Q3K => (256, 110),
            Dtype::Q4K => (256, 144),
            Dtype::Q5K => (256, 176),
            Dtype::Q6K => (256, 210),
            Dtype::Q8K => (256, 292),
            _ => return None,
        })
    }

    /// The GGUF block type of ggml type `code`, if it has a field layout here.
    pub fn from_ggml_block(code: u32) -> Option<Dtype> {
        u8::try_from(code + 32).ok().and_then(Dtype::from_code).filter(|d| d.block().is_some())
    }

    /// Bytes that `elements` elements of this type take, or `None` if that overflows or the
    /// count is not a whole number of blocks.
    pub fn storage_len(self, elements: u64) -> Option<u64> {
        match self.block() {
            Some((per_block, bytes)) => {
                elements.is_multiple_of(per_block).then(|| elements / per_block)?.checked_mul(bytes)
            }
            None => elements.checked_mul(self.size() as u64),
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    /// Bytes per element (1 for opaque bytes; for block types, the bytes of a whole block:
    /// use `storage_len` for sizes).
    pub fn size(self) -> usize {
        if let Some((_, bytes)) = self.block() {
            return bytes as usize;
        }
        match self {
            Dtype::Opaque | Dtype::Bool | Dtype::U8 | Dtype::I8 | Dtype::F8E4M3 | Dtype::F8E5M2 => {
                1
            }
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
            _ => unreachable!("block types return above"),
        }
    }

    /// Whether the most significant byte is two's-complement signed (predictors then work on
    /// `byte ^ 0x80`, which orders signed values like unsigned ones).
    pub fn is_signed_int(self) -> bool {
        matches!(self, Dtype::I8 | Dtype::I16 | Dtype::I32 | Dtype::I64)
    }

    /// The name safetensors uses for this dtype.
    pub fn safetensors_name(self) -> &'static str {
        match self {
            Dtype::Opaque => "OPAQUE",
            Dtype::Bool => "BOOL",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::F8E4M3 => "F8_E4M3",
            Dtype::F8E5M2 => "F8_E5M2",
            Dtype::I16 => "I16",
            Dtype::U16 => "U16",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I32 => "I32",
            Dtype::U32 => "U32",
            Dtype::F32 => "F32",
            Dtype::I64 => "I64",
            Dtype::U64 => "U64",
            Dtype::F64 => "F64",
            _ => "OPAQUE",
        }
    }

    pub fn from_safetensors_name(name: &str) -> Option<Dtype> {
        Self::ALL.into_iter().skip(1).find(|d| d.safetensors_name() == name && d.block().is_none())
    }

    /// Short lower-case name, as the CLI takes and prints it (`i8`, `bf16`, ...).
    pub fn short_name(self) -> &'static str {
        match self {
            Dtype::Opaque => "bytes",
            Dtype::Bool => "bool",
            Dtype::U8 => "u8",
            Dtype::I8 => "i8",
            Dtype::F8E4M3 => "f8e4m3",
            Dtype::F8E5M2 => "f8e5m2",
            Dtype::I16 => "i16",
            Dtype::U16 => "u16",
            Dtype::F16 => "f16",
            Dtype::BF16 => "bf16",
            Dtype::I32 => "i32",
            Dtype::U32 => "u32",
            Dtype::F32 => "f32",
            Dtype::I64 => "i64",
            Dtype::U64 => "u64",
            Dtype::F64 => "f64",
            Dtype::Q4_0 => "q4_0",
            Dtype::Q4_1 => "q4_1",
            Dtype::Q5_0 => "q5_0",
            Dtype::Q5_1 => "q5_1",
            Dtype::Q8_0 => "q8_0",
            Dtype::Q8_1 => "q8_1",
            Dtype::Q2K => "q2_k",
            Dtype::Q3K => "q3_k",
            Dtype::Q4K => "q4_k",
            Dtype::Q5K => "q5_k",
            Dtype::Q6K => "q6_k",
            Dtype::Q8K => "q8_k",
        }
    }

    pub fn from_short_name(name: &str) -> Option<Dtype> {
        let lower = name.to_ascii_lowercase();
        Self::ALL.into_iter().find(|d| d.short_name() == lower)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for d in Dtype::ALL {
            assert_eq!(Dtype::from_code(d.code()), Some(d));
            assert_eq!(Dtype::from_short_name(d.short_name()), Some(d));
        }
        assert_eq!(Dtype::from_code(16), None);
        assert_eq!(Dtype::from_code(36), None);
        assert_eq!(Dtype::from_ggml_block(8), Some(Dtype::Q8_0));
        assert_eq!(Dtype::from_ggml_block(0), None);
        assert_eq!(Dtype::Q4_1.storage_len(64), Some(40));
        assert_eq!(Dtype::Q4_1.storage_len(63), None);
        assert_eq!(Dtype::BF16.storage_len(3), Some(6));
        assert_eq!(Dtype::from_safetensors_name("BF16"), Some(Dtype::BF16));
        assert_eq!(Dtype::from_safetensors_name("OPAQUE"), None);
    }
}
