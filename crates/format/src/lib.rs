//! The .wcz on-disk format of wcodec.
//!
//! This crate owns every byte of the layout (docs/FORMAT.md is its specification): the
//! fixed-size records, the codes of dtypes, transforms and predictors, and the parsing of a
//! file's directory with every offset, count and checksum validated against the file's real
//! size. It does no coding; it only says what the bytes mean and whether they are well formed.
#![forbid(unsafe_code)]

pub mod blocks;
pub mod checksum;
mod directory;
mod dtype;
mod error;
pub mod gaps;
pub mod records;
pub mod table;

pub use checksum::crc32c;
pub use directory::{
    Directory, PlaneEncoding, PlaneEntry, TensorEntry, UnitEntry, element_count, matrix_shape,
    parse_directory, parse_header, parse_trailer, tile_grid,
};
pub use dtype::Dtype;
pub use error::{FormatError, Result};
pub use table::Frequencies;

/// rANS constants fixed by the format (not parameters, so CPU and GPU agree by construction).
pub mod rans {
    /// Interleaved states per unit: one per lane of a GPU warp.
    pub const LANES: usize = 32;
    /// Consecutive symbols a lane owns in each group.
    pub const RUN: usize = 4;
    /// Symbols per group: `LANES * RUN`.
    pub const GROUP: usize = LANES * RUN;
    /// Lower bound of a normalised state.
    pub const STATE_LOW: u32 = 1 << 16;
    /// Bits per renormalisation word.
    pub const WORD_BITS: u32 = 16;
    /// Bytes of the initial states at the start of a unit.
    pub const STATES_BYTES: usize = LANES * 4;
    /// Allowed probability precisions.
    pub const MIN_PROB_BITS: u8 = 8;
    pub const MAX_PROB_BITS: u8 = 12;
    /// Most frequency tables (row classes) per plane.
    pub const MAX_TABLES: u8 = 16;
}

/// The largest tile (symbols per unit) the format allows: bounds what one unit may expand to.
pub const MAX_TILE_SYMBOLS: u64 = 1 << 22;

/// Where the original file came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SourceKind {
    Raw = 0,
    Safetensors = 1,
    Gguf = 2,
}

impl SourceKind {
    pub fn from_code(code: u8) -> Option<Self> {
        [Self::Raw, Self::Safetensors, Self::Gguf].get(usize::from(code)).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Safetensors => "safetensors",
            Self::Gguf => "gguf",
        }
    }
}

/// How a tensor's bytes are split into byte planes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Transform {
    /// One plane: the bytes as stored, `rows x (cols * elem_size)`.
    Identity = 0,
    /// `elem_size` planes of `rows x cols`; plane j holds byte j of every element.
    BytePlanes = 1,
    /// BF16: an exponent plane (`(v >> 7) & 0xff`) and a sign-mantissa plane
    /// (`(v >> 8) & 0x80 | v & 0x7f`), each `rows x cols`.
    Bf16Split = 2,
    /// FP32: exponent, sign with the top 7 mantissa bits, then the middle and low mantissa
    /// bytes; four planes of `rows x cols`.
    F32Split = 3,
    /// GGUF block types: one plane per field of the block (`blocks::block_fields`), each
    /// `rows x (blocks_per_row * field.count)`.
    BlockFields = 4,
}

impl Transform {
    pub fn from_code(code: u8) -> Option<Self> {
        [Self::Identity, Self::BytePlanes, Self::Bf16Split, Self::F32Split, Self::BlockFields]
            .get(usize::from(code))
            .copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::BytePlanes => "byte_planes",
            Self::Bf16Split => "bf16_split",
            Self::F32Split => "f32_split",
            Self::BlockFields => "block_fields",
        }
    }

    /// Whether the transform applies to `dtype`.
    pub fn supports(self, dtype: Dtype) -> bool {
        match self {
            Transform::Identity => true,
            Transform::BytePlanes => dtype.block().is_none(),
            Transform::Bf16Split => dtype == Dtype::BF16,
            Transform::F32Split => dtype == Dtype::F32,
            Transform::BlockFields => blocks::block_fields(dtype).is_some(),
        }
    }

    /// Whether a plane of shape `actual` may stand where [`Transform::plane_shapes`] gives
    /// `expected`: the same shape, or for identity the same bytes in the same order in rows of
    /// another length (its rows times its columns are the tensor's bytes, neither of them 0).
    pub fn plane_shape_fits(self, expected: (u64, u64), actual: (u64, u64)) -> bool {
        if actual == expected {
            return true;
        }
        let ((rows, row_bytes), (plane_rows, plane_cols)) = (expected, actual);
        let bytes = rows.checked_mul(row_bytes);
        self == Transform::Identity
            && plane_rows > 0
            && plane_cols > 0
            && bytes.is_some()
            && plane_rows.checked_mul(plane_cols) == bytes
    }

    /// The shape of each plane for a tensor of `rows x cols` elements (the transform must
    /// support the dtype, and block types have `cols` a multiple of the block).
    pub fn plane_shapes(self, dtype: Dtype, rows: u64, cols: u64) -> Vec<(u64, u64)> {
        match self {
            Transform::Identity => {
                let row_bytes = match dtype.block() {
                    Some((per_block, bytes)) => cols / per_block * bytes,
                    None => cols * dtype.size() as u64,
                };
                vec![(rows, row_bytes)]
            }
            Transform::BytePlanes => vec![(rows, cols); dtype.size()],
            Transform::Bf16Split => vec![(rows, cols); 2],
            Transform::F32Split => vec![(rows, cols); 4],
            Transform::BlockFields => {
                let (per_block, _) = dtype.block().expect("a block type");
                let blocks = cols / per_block;
                blocks::block_fields(dtype)
                    .expect("a block type")
                    .iter()
                    .map(|f| (rows, blocks * u64::from(f.count)))
                    .collect()
            }
        }
    }
}

/// The per-tile predictor. The discriminant is the on-disk code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Predictor {
    None = 0,
    Left = 1,
    Top = 2,
    Avg = 3,
    Paeth = 4,
}

impl Predictor {
    pub const ALL: [Predictor; 5] =
        [Predictor::None, Predictor::Left, Predictor::Top, Predictor::Avg, Predictor::Paeth];

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Predictor::None => "none",
            Predictor::Left => "left",
            Predictor::Top => "top",
            Predictor::Avg => "avg",
            Predictor::Paeth => "paeth",
        }
    }
}
