//! Field layouts of the GGUF block types: which bytes of a block form which plane.
//!
//! A block type's bytes are a fixed struct (ggml's `block_q4_K` and kin): fp16 scales, packed
//! quants, high bits. Coding each field as its own plane keeps a plane's bytes alike (all
//! scale low bytes, all packed nibbles...), which is what order-0 coding needs. The
//! `block_fields` transform (docs/FORMAT.md) uses exactly these tables.

use crate::Dtype;

/// One plane of a block type: the bytes `offset + k * step` of every block, `k < count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub offset: u16,
    pub count: u16,
    pub step: u16,
    /// The bytes are two's-complement int8 (predictors then work on `byte ^ 0x80`).
    pub signed: bool,
}

const fn bytes(offset: u16, count: u16) -> Field {
    Field { offset, count, step: 1, signed: false }
}

const fn int8(offset: u16, count: u16) -> Field {
    Field { offset, count, step: 1, signed: true }
}

/// Low and high bytes of the little-endian fp16 scales at offsets 0 and 2: one plane each.
const D_LO: Field = bytes(0, 1);
const D_HI: Field = bytes(1, 1);
const M_LO: Field = bytes(2, 1);
const M_HI: Field = bytes(3, 1);

const Q4_0: &[Field] = &[D_LO, D_HI, bytes(2, 16)];
const Q4_1: &[Field] = &[D_LO, D_HI, M_LO, M_HI, bytes(4, 16)];
const Q5_0: &[Field] = &[D_LO, D_HI, bytes(2, 4), bytes(6, 16)];
const Q5_1: &[Field] = &[D_LO, D_HI, M_LO, M_HI, bytes(4, 4), bytes(8, 16)];
const Q8_0: &[Field] = &[D_LO, D_HI, int8(2, 32)];
const Q8_1: &[Field] = &[D_LO, D_HI, M_LO, M_HI, int8(4, 32)];
/// scales[16], qs[64], d, dmin
const Q2K: &[Field] =
    &[bytes(0, 16), bytes(16, 64), bytes(80, 1), bytes(81, 1), bytes(82, 1), bytes(83, 1)];
/// hmask[32], qs[64], scales[12], d
const Q3K: &[Field] = &[bytes(0, 32), bytes(32, 64), bytes(96, 12), bytes(108, 1), bytes(109, 1)];
/// d, dmin, scales[12], qs[128]
const Q4K: &[Field] = &[D_LO, D_HI, M_LO, M_HI, bytes(4, 12), bytes(16, 128)];
/// d, dmin, scales[12], qh[32], qs[128]
const Q5K: &[Field] = &[D_LO, D_HI, M_LO, M_HI, bytes(4, 12), bytes(16, 32), bytes(48, 128)];
/// ql[128], qh[64], scales[16] (int8), d
const Q6K: &[Field] = &[bytes(0, 128), bytes(128, 64), int8(192, 16), bytes(208, 1), bytes(209, 1)];
/// d (f32), qs[256] (int8), bsums[16] (i16: low bytes, high bytes)
const Q8K: &[Field] = &[
    bytes(0, 1),
    bytes(1, 1),
    bytes(2, 1),
    bytes(3, 1),
    int8(4, 256),
    Field { offset: 260, count: 16, step: 2, signed: false },
    Field { offset: 261, count: 16, step: 2, signed: true },
];

/// The fields of a block type, in plane order; every byte of the block is in exactly one.
pub fn block_fields(dtype: Dtype) -> Option<&'static [Field]> {
    Some(match dtype {
        Dtype::Q4_0 => Q4_0,
        Dtype::Q4_1 => Q4_1,
        Dtype::Q5_0 => Q5_0,
        Dtype::Q5_1 => Q5_1,
        Dtype::Q8_0 => Q8_0,
        Dtype::Q8_1 => Q8_1,
        Dtype::Q2K => Q2K,
        Dtype::Q3K => Q3K,
        Dtype::Q4K => Q4K,
        Dtype::Q5K => Q5K,
        Dtype::Q6K => Q6K,
        Dtype::Q8K => Q8K,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_cover_every_block_byte_once() {
        for dtype in Dtype::ALL {
            let Some((_, block_bytes)) = dtype.block() else { continue };
            let fields = block_fields(dtype).expect("every block type has fields");
            let mut seen = vec![0u8; block_bytes as usize];
            for f in fields {
                for k in 0..f.count {
                    seen[usize::from(f.offset + k * f.step)] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{dtype}: {seen:?}");
        }
    }
}
