//! Fixed-size on-disk records, byte for byte as docs/FORMAT.md specifies them.
//!
//! Every field is a byte-order-aware integer of alignment 1, so a record is read in place from
//! any offset of a file or a memory map. No logic lives here beyond constructors.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `"\x89WCZ\r\n\x1a\n"`: a non-ASCII first byte and the line-ending bytes catch text-mode damage.
pub const FILE_MAGIC: [u8; 8] = *b"\x89WCZ\r\n\x1a\n";
/// `"\nWCZEND\x1a"`, the last eight bytes of every file.
pub const TRAILER_MAGIC: [u8; 8] = *b"\nWCZEND\x1a";
/// The only format version this crate reads and writes.
pub const FORMAT_VERSION: u16 = 1;

/// Plane payloads start at multiples of this (cache lines, GPU copies, mmap views).
pub const PAYLOAD_ALIGN: u64 = 64;
/// Units start at multiples of this inside their plane payload.
pub const UNIT_ALIGN: u64 = 16;

#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct FileHeader {
    pub magic: [u8; 8],
    pub version: U16,
    pub flags: U16,
    pub header_len: U32,
    pub reserved: [u8; 16],
}

impl FileHeader {
    pub const LEN: usize = 32;

    pub fn new() -> Self {
        FileHeader {
            magic: FILE_MAGIC,
            version: FORMAT_VERSION.into(),
            flags: 0.into(),
            header_len: (Self::LEN as u32).into(),
            reserved: [0; 16],
        }
    }
}

impl Default for FileHeader {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Trailer {
    pub directory_offset: U64,
    pub directory_len: U64,
    pub directory_crc32c: U32,
    pub version: U16,
    pub reserved: U16,
    pub magic: [u8; 8],
}

impl Trailer {
    pub const LEN: usize = 32;

    pub fn new(directory_offset: u64, directory: &[u8]) -> Self {
        Trailer {
            directory_offset: directory_offset.into(),
            directory_len: (directory.len() as u64).into(),
            directory_crc32c: crate::crc32c(directory).into(),
            version: FORMAT_VERSION.into(),
            reserved: 0.into(),
            magic: TRAILER_MAGIC,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct DirectoryHeader {
    pub n_tensors: U32,
    pub n_planes: U32,
    pub n_units: U32,
    pub n_dims: U32,
    pub names_len: U32,
    pub tables_len: U32,
    pub gaps_len: U64,
    pub source_len: U64,
    pub source_kind: u8,
    pub gaps_codec: u8,
    pub reserved_a: [u8; 6],
    /// Bytes of the gaps section when `gaps_codec` compresses it; 0 when stored.
    pub gaps_stored_len: U64,
    pub reserved_b: [u8; 8],
}

impl DirectoryHeader {
    pub const LEN: usize = 64;
}

#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct TensorRecord {
    pub name_offset: U32,
    pub name_len: U32,
    pub dims_offset: U32,
    pub ndim: u8,
    pub dtype: u8,
    pub transform: u8,
    pub flags: u8,
    pub first_plane: U32,
    pub n_planes: U32,
    pub source_offset: U64,
    pub source_len: U64,
    pub crc32c: U32,
    /// Informational: the order-0 entropy bound of the tensor's planes, in bytes (rounded up).
    pub order0_bytes: U64,
    pub reserved: [u8; 12],
}

impl TensorRecord {
    pub const LEN: usize = 64;
}

#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct PlaneRecord {
    pub rows: U64,
    pub cols: U64,
    pub tile_rows: U32,
    pub tile_cols: U32,
    pub encoding: u8,
    pub prob_bits: u8,
    pub n_tables: u8,
    pub flags: u8,
    pub tables_offset: U32,
    pub tables_len: U32,
    pub first_unit: U32,
    pub n_units: U32,
    pub raw_crc32c: U32,
    pub payload_offset: U64,
    pub payload_len: U64,
}

impl PlaneRecord {
    pub const LEN: usize = 64;
    /// `flags` bit: bytes are XORed with 0x80 before prediction.
    pub const FLAG_BIAS128: u8 = 1;
    /// `flags` bit: the class map after the tables gives each plane column its table (a
    /// period of column classes), not each row (docs/FORMAT.md, "Column classes").
    pub const FLAG_COLUMN_CLASSES: u8 = 2;
}

#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct UnitRecord {
    pub offset: U64,
    pub len: U32,
    pub crc32c: U32,
    pub predictor: u8,
    pub reserved: [u8; 7],
}

impl UnitRecord {
    pub const LEN: usize = 24;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_sizes_match_the_spec() {
        assert_eq!(size_of::<FileHeader>(), FileHeader::LEN);
        assert_eq!(size_of::<Trailer>(), Trailer::LEN);
        assert_eq!(size_of::<DirectoryHeader>(), DirectoryHeader::LEN);
        assert_eq!(size_of::<TensorRecord>(), TensorRecord::LEN);
        assert_eq!(size_of::<PlaneRecord>(), PlaneRecord::LEN);
        assert_eq!(size_of::<UnitRecord>(), UnitRecord::LEN);
    }

    #[test]
    fn header_bytes_are_little_endian() {
        let bytes = FileHeader::new();
        let bytes = bytes.as_bytes();
        assert_eq!(&bytes[..8], b"\x89WCZ\r\n\x1a\n");
        assert_eq!(&bytes[8..10], &[1, 0]);
        assert_eq!(&bytes[12..16], &[32, 0, 0, 0]);
    }
}
