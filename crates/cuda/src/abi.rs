//! `#[repr(C)]` mirrors of the structures in kernels/wcodec_kernels.h, field for field.
//!
//! The header pins sizes and offsets with static_asserts; the tests below pin the same numbers
//! here, so a change on one side that is not made on the other fails a build or a test. The
//! constants are the header's `#define`s. With the `cuda` feature, where libclang is found,
//! the build also reads the header with bindgen and checks every structure and constant here
//! against it as the crate compiles (`cfg(wcodec_header)`).

/// Most warps in a thread block (`WC_MAX_WARPS`).
pub const MAX_WARPS: u32 = 32;
/// Compiled kernel variants (`WC_VARIANTS`): 0 keeps the stream in a register window, 1 and 2
/// load a candidate word every step; 0 and 1 take blocks of up to 32 warps, 2 of up to 16 with
/// fewer registers per thread. 3 (up to 32 warps), 4 (up to 12 warps, 40 registers) and 5 (up
/// to 8 warps, 32 registers) are
/// 1 with a fast path for units whose groups are whole row spans (no per-step bound check).
/// 6 (up to 12 warps, 40 registers) is 4 with each warp's stream staged in a shared-memory ring
/// (cp.async). 7 (up to 12 warps, 56 registers) is 6 with two units a warp where both are one
/// group wide with one table and no prediction, a half-warp each, two rings a warp. 8 is 6 with
/// the loops of column classes (`FLAG_COL_TABLES`), which the others refuse (`ERR_VARIANT`).
pub const VARIANTS: u32 = 9;
/// `WcLaunch::variant | VARIANT_COMPACT`: the variant's twin that also reads compact tables
/// (`GROUP_COMPACT_TABLES`), launched when any group has them.
pub const VARIANT_COMPACT: u32 = 256;

/// The largest block (in warps) of each variant.
pub const VARIANT_WARPS: [u32; VARIANTS as usize] = [32, 32, 16, 32, 12, 8, 12, 12, 12];
/// The shared-memory ring each warp of a variant stages its stream in (bytes; 0: none), after
/// the block's tables (`kVariantRing`; with the alignment slack, [`ring_bytes`]).
pub const VARIANT_RING: [usize; VARIANTS as usize] = [0, 0, 0, 0, 0, 0, 2048, 2048, 2048];
/// The rings a warp of a variant has (`kVariantRings`): two where its halves decode a unit each.
pub const VARIANT_RINGS: [usize; VARIANTS as usize] = [0, 0, 0, 0, 0, 0, 1, 2, 1];

/// Dynamic shared memory a block of `variant` with `warps` warps needs besides its tables: a
/// ring a warp, and the slack that aligns the first to its size after tables that end 16-byte
/// aligned (as `smem_bytes` in kernels/decode.cu).
pub const fn ring_bytes(variant: u32, warps: u32) -> usize {
    let ring = VARIANT_RING[variant as usize];
    let rings = VARIANT_RINGS[variant as usize];
    if ring == 0 { 0 } else { warps as usize * rings * ring + ring - 16 }
}
/// Bytes of padding after the staged payloads (`WC_STAGING_PAD`): the fast path reads up to
/// ~1 KiB past a unit's end without a bound check, the copies into a warp's stream ring up to
/// the ring's size (2 KiB at most).
pub const STAGING_PAD: usize = 2048;
/// Entries of the largest decode table (`1 << WC_MAX_PROB_BITS`).
pub const MAX_TABLE_ENTRIES: usize = 1 << 12;

pub const UNIT_RANS: u8 = 0;
pub const UNIT_RAW: u8 = 1;

pub const FLAG_BIAS128: u8 = 1;
pub const FLAG_WORD_STORES: u8 = 2;
pub const FLAG_CONTIGUOUS: u8 = 4;
pub const FLAG_ROW_TABLES: u8 = 8;
/// The exponent plane of a bf16_split tensor merged with its raw sign-mantissa plane as it is
/// decoded (`WcUnit::mix`).
pub const FLAG_MIX_BF16: u8 = 16;
/// Runs of 4 columns inside blocks (GGUF block fields): see `WC_FLAG_FIELD_RUNS`.
pub const FLAG_FIELD_RUNS: u8 = 32;
/// Column classes: tile column `c`'s table is `maps[row_map + c]` (`WC_FLAG_COL_TABLES`).
pub const FLAG_COL_TABLES: u8 = 64;

pub const GROUP_GLOBAL_TABLES: u8 = 1;
/// The group's tables are compact (`plan::compact_table`): per table 256 records, then a
/// symbol byte per slot.
pub const GROUP_COMPACT_TABLES: u8 = 2;

pub const MERGE_BF16_SPLIT: u32 = 1;
pub const MERGE_F32_SPLIT: u32 = 2;
/// GGUF block heads: `WC_MERGE_BLOCK_HEAD`.
pub const MERGE_BLOCK_HEAD: u32 = 3;
/// GGUF whole blocks, head and tail planes from scratch: `WC_MERGE_BLOCKS`.
pub const MERGE_BLOCKS: u32 = 4;

pub const ERR_BAD_INITIAL_STATE: u32 = 1;
pub const ERR_OVERRUN: u32 = 2;
pub const ERR_WORDS_LEFT: u32 = 4;
pub const ERR_NOT_FINAL: u32 = 8;
pub const ERR_TABLES: u32 = 16;
/// Column classes in a launch of a variant without them (a host error: `LaunchConfig::for_plan`).
pub const ERR_VARIANT: u32 = 32;

/// `WcUnit`: one unit of work for one warp.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct WcUnit {
    /// Offset of the unit's bytes in the compressed device buffer.
    pub src: u64,
    /// Device address of the plane's byte (r0, 0), r0 the tile's first row (rANS), or of its
    /// byte (0, 0) (raw). While a plan is built this is relative to the start of the unit's
    /// output tensor.
    pub dst: u64,
    pub row_stride: u64,
    /// Raw: row-major index in the plane of the first byte copied. rANS: the tile's first
    /// column.
    pub first: u64,
    pub len: u32,
    pub height: u32,
    pub width: u32,
    pub kind: u8,
    pub predictor: u8,
    pub flags: u8,
    pub reserved: u8,
    /// With `FLAG_ROW_TABLES`: index in the maps array of the table of the tile's first row;
    /// with `FLAG_COL_TABLES`, of that of its first column.
    pub row_map: u64,
    /// Column c of the plane lands at `(c / group) * col_stride + (c % group) * step` in its
    /// output row.
    pub col_stride: u32,
    pub group: u16,
    pub step: u16,
    /// With `FLAG_MIX_BF16`: offset in the compressed buffer of the sign-mantissa byte of the
    /// tile's element (0, 0); the byte of element (r, c) is `r * (row_stride / 2) + c` further.
    pub mix: u64,
}

/// `WcMerge`: a piece of the merge launch, `n` elements from planes back to back at `src`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct WcMerge {
    pub src: u64,
    pub dst: u64,
    pub n: u32,
    pub kind: u32,
    pub plane_len: u64,
    /// Bytes an element (a block for `MERGE_BLOCK_HEAD` and `MERGE_BLOCKS`).
    pub elem_size: u32,
    /// Planes merged (the head planes for those two).
    pub fields: u32,
    /// `MERGE_BLOCKS`: the tail bytes of the piece's first block.
    pub tail: u64,
}

/// `WcGroup`: the units of one plane and its decode tables.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct WcGroup {
    pub first_unit: u32,
    pub n_units: u32,
    /// Index in the tables array of the plane's first table entry.
    pub table: u32,
    /// 8..=12, or 0 for a raw plane.
    pub prob_bits: u8,
    pub n_tables: u8,
    pub flags: u8,
    pub reserved: u8,
}

/// `WcRange`: the units one thread block decodes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct WcRange {
    pub first_unit: u32,
    pub n_units: u32,
    /// The group of `first_unit`.
    pub first_group: u32,
    pub reserved: u32,
}

/// `WcLaunch`: the arguments of one launch.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WcLaunch {
    pub src: u64,
    pub src_len: u64,
    pub units: u64,
    pub groups: u64,
    pub ranges: u64,
    pub tables: u64,
    pub maps: u64,
    pub status: u64,
    pub n_ranges: u32,
    pub n_units: u32,
    pub warps_per_block: u32,
    pub smem_entries: u32,
    pub variant: u32,
    pub n_groups: u32,
}

/// `WcCrcChunk`: a chunk of the staged bytes whose CRC-32C the CRC kernel computes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct WcCrcChunk {
    /// Offset in the staged bytes, a multiple of 4.
    pub src: u64,
    /// Bytes, with `CRC_COMPARE` for a unit (a whole check, compared with `stored` by the
    /// kernel).
    pub len: u32,
    pub stored: u32,
}

/// `WcCrcChunk::len`'s flag: the chunk is a whole check.
pub const CRC_COMPARE: u32 = 0x8000_0000;

/// `WcKernelInfo`: what the compiler gave the decode kernel on the current device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WcKernelInfo {
    pub num_regs: i32,
    pub shared_bytes: i32,
    pub local_bytes: i32,
    pub max_threads_per_block: i32,
    pub ptx_version: i32,
    pub binary_version: i32,
    pub max_dynamic_shared: i32,
    pub multiprocessors: i32,
}

/// The constants here and the header's `#define`s they are (`ours => WC_NAME`), handed to
/// `$check`: the build's check against bindgen's reading of the header and the test that reads
/// the header's text check the same list.
#[cfg(any(test, wcodec_header))]
macro_rules! header_constants {
    ($check:ident) => {
        $check!(
            MAX_WARPS => WC_MAX_WARPS,
            VARIANTS => WC_VARIANTS,
            VARIANT_COMPACT => WC_VARIANT_COMPACT,
            STAGING_PAD => WC_STAGING_PAD,
            wcodec_format::rans::LANES => WC_LANES,
            wcodec_format::rans::STATES_BYTES => WC_STATES_BYTES,
            wcodec_format::rans::STATE_LOW => WC_STATE_LOW,
            UNIT_RANS => WC_UNIT_RANS,
            UNIT_RAW => WC_UNIT_RAW,
            FLAG_BIAS128 => WC_FLAG_BIAS128,
            FLAG_WORD_STORES => WC_FLAG_WORD_STORES,
            FLAG_CONTIGUOUS => WC_FLAG_CONTIGUOUS,
            FLAG_ROW_TABLES => WC_FLAG_ROW_TABLES,
            FLAG_MIX_BF16 => WC_FLAG_MIX_BF16,
            FLAG_FIELD_RUNS => WC_FLAG_FIELD_RUNS,
            FLAG_COL_TABLES => WC_FLAG_COL_TABLES,
            GROUP_GLOBAL_TABLES => WC_GROUP_GLOBAL_TABLES,
            GROUP_COMPACT_TABLES => WC_GROUP_COMPACT_TABLES,
            MERGE_BF16_SPLIT => WC_MERGE_BF16_SPLIT,
            MERGE_F32_SPLIT => WC_MERGE_F32_SPLIT,
            MERGE_BLOCK_HEAD => WC_MERGE_BLOCK_HEAD,
            MERGE_BLOCKS => WC_MERGE_BLOCKS,
            ERR_BAD_INITIAL_STATE => WC_ERR_BAD_INITIAL_STATE,
            ERR_OVERRUN => WC_ERR_OVERRUN,
            ERR_WORDS_LEFT => WC_ERR_WORDS_LEFT,
            ERR_NOT_FINAL => WC_ERR_NOT_FINAL,
            ERR_TABLES => WC_ERR_TABLES,
            ERR_VARIANT => WC_ERR_VARIANT,
            CRC_COMPARE => WC_CRC_COMPARE,
            crate::crc::TABLE_WORDS => WC_CRC_TABLE_WORDS,
        )
    };
}

/// kernels/wcodec_kernels.h as bindgen reads it (crates/cuda/build.rs, with the `cuda` feature
/// where libclang is found).
#[cfg(wcodec_header)]
#[allow(non_camel_case_types, non_upper_case_globals, dead_code, missing_debug_implementations)]
mod header {
    include!(concat!(env!("OUT_DIR"), "/header.rs"));
}

/// Every structure above against the header's: the same size and every field at the same
/// offset; and every constant the header's `#define`. Checked as the crate compiles, so a field
/// or a constant changed on one side alone does not build.
#[cfg(wcodec_header)]
const _: () = {
    use std::mem::{offset_of, size_of};
    macro_rules! same_layout {
        ($t:ident: $($f:ident),+) => {
            assert!(size_of::<$t>() == size_of::<header::$t>());
            $(assert!(offset_of!($t, $f) == offset_of!(header::$t, $f));)+
        };
    }
    same_layout!(WcUnit: src, dst, row_stride, first, len, height, width, kind, predictor, flags,
        reserved, row_map, col_stride, group, step, mix);
    same_layout!(WcMerge: src, dst, n, kind, plane_len, elem_size, fields, tail);
    same_layout!(WcGroup: first_unit, n_units, table, prob_bits, n_tables, flags, reserved);
    same_layout!(WcRange: first_unit, n_units, first_group, reserved);
    same_layout!(WcLaunch: src, src_len, units, groups, ranges, tables, maps, status, n_ranges,
        n_units, warps_per_block, smem_entries, variant, n_groups);
    same_layout!(WcCrcChunk: src, len, stored);
    same_layout!(WcKernelInfo: num_regs, shared_bytes, local_bytes, max_threads_per_block,
        ptx_version, binary_version, max_dynamic_shared, multiprocessors);
    macro_rules! same_value {
        ($($ours:expr => $theirs:ident),+ $(,)?) => {
            $(assert!($ours as u64 == header::$theirs as u64);)+
        };
    }
    header_constants!(same_value);
    assert!(MAX_TABLE_ENTRIES == 1 << header::WC_MAX_PROB_BITS);
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_the_header() {
        assert_eq!(size_of::<WcUnit>(), 72);
        assert_eq!(offset_of!(WcUnit, mix), 64);
        assert_eq!(offset_of!(WcUnit, dst), 8);
        assert_eq!(offset_of!(WcUnit, row_stride), 16);
        assert_eq!(offset_of!(WcUnit, first), 24);
        assert_eq!(offset_of!(WcUnit, len), 32);
        assert_eq!(offset_of!(WcUnit, height), 36);
        assert_eq!(offset_of!(WcUnit, width), 40);
        assert_eq!(offset_of!(WcUnit, kind), 44);
        assert_eq!(offset_of!(WcUnit, predictor), 45);
        assert_eq!(offset_of!(WcUnit, flags), 46);
        assert_eq!(offset_of!(WcUnit, row_map), 48);
        assert_eq!(offset_of!(WcUnit, col_stride), 56);
        assert_eq!(offset_of!(WcUnit, group), 60);
        assert_eq!(offset_of!(WcUnit, step), 62);
        assert_eq!(size_of::<WcMerge>(), 48);
        assert_eq!(offset_of!(WcMerge, tail), 40);
        assert_eq!(offset_of!(WcMerge, n), 16);
        assert_eq!(offset_of!(WcMerge, plane_len), 24);
        assert_eq!(offset_of!(WcMerge, elem_size), 32);
        assert_eq!(offset_of!(WcMerge, fields), 36);
        assert_eq!(size_of::<WcGroup>(), 16);
        assert_eq!(offset_of!(WcGroup, prob_bits), 12);
        assert_eq!(offset_of!(WcGroup, n_tables), 13);
        assert_eq!(offset_of!(WcGroup, flags), 14);
        assert_eq!(size_of::<WcRange>(), 16);
        assert_eq!(offset_of!(WcRange, first_group), 8);
        assert_eq!(size_of::<WcLaunch>(), 88);
        assert_eq!(offset_of!(WcLaunch, ranges), 32);
        assert_eq!(offset_of!(WcLaunch, status), 56);
        assert_eq!(offset_of!(WcLaunch, n_ranges), 64);
        assert_eq!(offset_of!(WcLaunch, smem_entries), 76);
        assert_eq!(offset_of!(WcLaunch, variant), 80);
        assert_eq!(offset_of!(WcLaunch, n_groups), 84);
        assert_eq!(size_of::<WcKernelInfo>(), 32);
        assert_eq!(size_of::<WcCrcChunk>(), 16);
        assert_eq!(offset_of!(WcCrcChunk, len), 8);
    }

    /// The constants here are the header's `#define`s.
    #[test]
    fn constants_match_the_header() {
        let header = include_str!("../../../kernels/wcodec_kernels.h");
        let define = |name: &str| -> u64 {
            let line = header
                .lines()
                .find(|l| l.starts_with(&format!("#define {name} ")))
                .unwrap_or_else(|| panic!("{name} not in the header"));
            let value = line.split_whitespace().nth(2).expect("a value");
            let value = value.trim_end_matches('u');
            match value.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).expect("a hex number"),
                None => value.parse().expect("a number"),
            }
        };
        macro_rules! same_define {
            ($($ours:expr => $theirs:ident),+ $(,)?) => {
                $(assert_eq!(define(stringify!($theirs)), $ours as u64, stringify!($theirs));)+
            };
        }
        header_constants!(same_define);
        assert_eq!(1 << define("WC_MAX_PROB_BITS"), MAX_TABLE_ENTRIES as u64);
    }
}
