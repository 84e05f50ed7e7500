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
}

impl Dtype {
    pub const ALL: [Dtype; 16] = [
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
    ];

    pub fn from_code(code: u8) -> Option<Dtype> {
        Self::ALL.get(usize::from(code)).copied()
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    /// Bytes per element (1 for opaque bytes).
    pub fn size(self) -> usize {
        match self {
            Dtype::Opaque | Dtype::Bool | Dtype::U8 | Dtype::I8 | Dtype::F8E4M3 | Dtype::F8E5M2 => {
                1
            }
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
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
        }
    }

    pub fn from_safetensors_name(name: &str) -> Option<Dtype> {
        Self::ALL.into_iter().skip(1).find(|d| d.safetensors_name() == name)
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
        assert_eq!(Dtype::from_safetensors_name("BF16"), Some(Dtype::BF16));
        assert_eq!(Dtype::from_safetensors_name("OPAQUE"), None);
    }
}
