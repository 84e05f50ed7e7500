//! The host side of a decode launch: everything the kernel is given, checked.
//!
//! `Plan::build` turns a file and the tensors wanted into the launch's inputs: which byte ranges
//! of the file go to the device (packed into one staging buffer), one `WcUnit` per rANS unit or
//! raw chunk, one `WcGroup` per plane (its units and decode tables), and the tables; the
//! `WcRange` of each thread block follows from the launch's shape (`ranges`). It checks
//! everything the kernel relies on, whatever the `Directory` claims and whatever the file
//! holds: every unit's bytes lie inside the staged payload, every byte a unit can write lies
//! inside its tensor, tiles are non-empty and at most 2^22 symbols, tables sum to
//! `2^prob_bits`. So no launch can read or write out of bounds, even on a damaged or hostile
//! file; what the kernel cannot know until it decodes (a stream that runs short or does not end
//! in its final states) comes back as a per-unit status word, turned into an error here.
//!
//! A bf16_split tensor with a coded exponent plane and a raw sign-mantissa plane is merged as it
//! decodes: its exponent units carry the staging offset of their tile's sign-mantissa bytes
//! (`WcUnit::mix`, checked to lie inside the staged raw plane) and write whole elements; the raw
//! plane gets no units of its own and the tensor no scratch memory or merge pieces.
//!
//! This module is plain safe Rust: `emulate` runs a plan on the CPU exactly as the kernel does,
//! which is how the plan and the kernel's algorithm are tested on machines with no GPU.

use rayon::prelude::*;
use wcodec_format::records::UNIT_ALIGN;
use wcodec_format::{
    Directory, MAX_TILE_SYMBOLS, PlaneEncoding, PlaneEntry, TensorEntry, Transform, matrix_shape,
    rans, tile_grid,
};
use wcodec_rans::write_table_entries;

use crate::CudaError;
use crate::abi::*;
use crate::crc;

/// Bytes of a raw plane one warp copies (a multiple of 16, so chunks stay 16-byte aligned).
pub const RAW_CHUNK: u32 = 1 << 16;
/// Staged payloads start at multiples of this (the file's own payload alignment).
const STAGING_ALIGN: u64 = 64;

/// What a plan checks, and how its launch is shaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// Check the CRC-32C of every unit and raw plane.
    pub verify_checksums: bool,
    /// With `verify_checksums`: leave the checks to the GPU (true, the default): `Plan::build`
    /// lists them in `crc_chunks` and `crc_planes`, the decoder computes the chunks' CRCs in a
    /// kernel after the upload and checks them before the launch's status (`verify_crcs`);
    /// false: `Plan::build` makes them on the host's cores, before anything is uploaded.
    pub checksums_on_device: bool,
    /// The launch's shape; `None` lets the decoder choose from the plan and the GPU.
    pub launch: Option<LaunchConfig>,
    /// bf16_split tensors with a coded exponent plane and a raw sign-mantissa plane: the
    /// exponent units write whole elements, merging the raw bytes in as they decode (true, the
    /// default), or every plane goes to scratch memory and a second launch merges them (false;
    /// for comparisons).
    pub merge_while_decoding: bool,
    /// GGUF blocks of one-byte head fields and one tail field (Q4_0, Q4_1, Q8_0, Q8_1): the
    /// tail plane (the quants) decodes into scratch too, beside the heads, and the merge
    /// launch writes whole blocks (true, the default); false: the quants decode in place and
    /// the merge writes the heads into their blocks (for comparisons). Written in place, the
    /// quants and then the heads each fill parts of the same 32-byte sectors, which the GPU's
    /// L2 reads back from memory to complete.
    pub merge_whole_blocks: bool,
    /// Which planes get compact tables (`compact_table`).
    pub compact_tables: CompactTables,
    /// A decode into GPU memory starts while the compressed bytes are uploaded: a launch each
    /// time this many more bytes are on the device, over the units and CRC checks whose bytes
    /// are all there (`Plan::streamed`); 0 launches once, after the upload. Launch shapes of
    /// one block a multiprocessor (`LaunchConfig::units_per_block` 0) always launch once.
    pub streamed_launch_bytes: u64,
}

/// `PlanOptions::streamed_launch_bytes` by default: about 1.5 ms of upload at 45 GB/s, and
/// some 4,000 units of 16 KiB, enough to fill an H100 for each launch; the decode of the
/// last such piece is what the load waits for after its upload.
pub const STREAMED_LAUNCH_BYTES: u64 = 64 << 20;

/// Which planes of a launch get compact tables (`compact_table`): a second, dependent
/// shared-memory load a step, for about a third of the space, so that planes of several
/// tables (the CPU encoder's default) leave room for more blocks a multiprocessor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactTables {
    /// Planes of more than `COMPACT_TABLES_ABOVE` bytes of tables, in launches where they pay
    /// (`Plan::compact_tables_pay`; the decoder decides, knowing the GPU).
    Auto,
    /// Planes whose full tables take more than this many bytes, in any launch.
    Above(usize),
    /// Full tables everywhere.
    Never,
}

/// Planes with more than this many bytes of full tables may get compact ones: one 12-bit table
/// (16 KiB) stays full, as do two 11-bit ones (the shapes the ring variant serves best).
pub const COMPACT_TABLES_ABOVE: usize = 16 << 10;

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            verify_checksums: true,
            checksums_on_device: true,
            launch: None,
            merge_while_decoding: true,
            merge_whole_blocks: true,
            compact_tables: CompactTables::Auto,
            streamed_launch_bytes: STREAMED_LAUNCH_BYTES,
        }
    }
}

/// The shape of a launch: which compiled kernel variant, how many warps a thread block has,
/// and how the units are dealt to blocks: with `units_per_block` 0, the grid has
/// `multiprocessors * blocks_per_sm` blocks (all resident at once), each taking a contiguous
/// range of about equal work across planes; otherwise each block takes up to
/// `units_per_block` units of one plane, and blocks of different planes share a
/// multiprocessor (better when planes are small).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    /// `< abi::VARIANTS`.
    pub variant: u32,
    /// 1..=`abi::VARIANT_WARPS[variant]`.
    pub warps_per_block: u32,
    pub blocks_per_sm: u32,
    pub units_per_block: u32,
}

/// Warps of the ring variant resident on a multiprocessor (40 registers a thread).
const RING_RESIDENT_WARPS: usize = 48;

impl LaunchConfig {
    /// The kernel variant `choose` picks for large blocks: variant 1 with the fast path for
    /// whole-row-span units (no per-step bound check; other units take variant 1's code).
    pub const DEFAULT_VARIANT: u32 = 3;
    /// The variant `choose` picks for small blocks (at most 12 warps) of planes with more than
    /// 16 KiB of tables: the same code in 40 registers, so that 48 warps fit a multiprocessor
    /// (measured on H100: up to 1.2x variant 3 on large planes, within a few percent on small
    /// ones).
    pub const SMALL_BLOCK_VARIANT: u32 = 4;
    /// The variant `choose` picks for small blocks when the tables take at most 16 KiB: 4 with
    /// each warp's stream staged in a 2 KiB shared-memory ring (measured on H100: up to 1.1x
    /// variant 4 on one 11- or 12-bit table; slower with 32 KiB of tables, where the rings cost
    /// blocks a multiprocessor).
    pub const RING_VARIANT: u32 = 6;
    /// The variant `choose` picks instead of the ring variant where most units are one-byte
    /// units one group (128 columns) wide with one table and no prediction: 6 with two units a
    /// warp, a half-warp each (two chains of steps a thread), in 56 registers. Measured on an
    /// H200 (GPU runs 125 and 128-130, best launch against variant 6's in the same calls):
    /// MiniLM int8 `--for-gpu` 1.01-1.03x at 512 MiB a launch and 1.02-1.03x at 2 GiB (984-997
    /// GB/s), SmolLM2 Q8_0 quants 1.00-1.03x; MiniLM BF16, whose units it does not pair,
    /// 0.89-0.92x, and the GGUF slice 0.93-0.98x: they keep variant 6.
    pub const PAIRED_VARIANT: u32 = 7;
    /// The variant that decodes column classes (GGUF blocks coded whole, `FLAG_COL_TABLES`): 6
    /// with their loops compiled in; the others refuse such units (`ERR_VARIANT`), so that their
    /// own loops compile as they did without them (with them inlined, SmolLM2's Q8_0 quants
    /// decoded 4% slower in variants 6 and 7, GPU runs 160-164). A plan with column
    /// classes launches it whatever shape was asked for (`LaunchConfig::for_plan`).
    pub const COLUMN_VARIANT: u32 = 8;

    /// This launch shape for `plan`: with column classes, the same shape in
    /// [`LaunchConfig::COLUMN_VARIANT`], its warps capped to that variant's largest block.
    pub fn for_plan(self, plan: &Plan) -> LaunchConfig {
        if self.variant == Self::COLUMN_VARIANT || !plan.has_column_classes() {
            return self;
        }
        let most = VARIANT_WARPS[Self::COLUMN_VARIANT as usize];
        LaunchConfig {
            variant: Self::COLUMN_VARIANT,
            warps_per_block: self.warps_per_block.min(most),
            ..self
        }
    }

    /// The launch shape for a plan with column classes on a GPU of `multiprocessors`: blocks of
    /// 8 warps, 2 units a warp where the units fill the GPU that many times over. Measured on an
    /// H200 (GPU run 163, the SmolLM2 GGUF layers, 512 MiB a launch): (8 warps, 16 units) was
    /// the best shape of variant 8 at every precision (9, 10 and 11 bits), (8, 8) within 5% of
    /// it, blocks of 4 warps 6-29% slower.
    pub fn for_columns(units: usize, multiprocessors: u32) -> LaunchConfig {
        let per_warp = if units >= 16 * multiprocessors.max(1) as usize { 2 } else { 1 };
        LaunchConfig {
            variant: Self::COLUMN_VARIANT,
            warps_per_block: 8,
            blocks_per_sm: 1,
            units_per_block: 8 * per_warp,
        }
    }

    /// The launch shape for `units` units in `planes` planes whose tables need up to
    /// `smem_bytes` of shared memory, on a GPU of `multiprocessors` that each keep
    /// `resident_warps` warps of the large-block kernel (its register budget): small blocks of
    /// one plane each, 8 warps and a unit a warp (2 units a warp, in blocks of 4 or 8 warps by
    /// the planes' size, with at most 8 KiB of tables and units enough), so that blocks of many
    /// planes share each multiprocessor (one plane's units rarely fill a large block): the ring
    /// variant for up to 16 KiB of tables, variant 4 for more; a single block per
    /// multiprocessor holding all its warps when the tables are too large for more than two
    /// blocks to fit.
    ///
    /// Measured on H100 (MiniLM int8, SmolLM2 Q8_0 quants, MiniLM BF16): with 8 warps instead
    /// of 4, planes of 16-32 KiB of tables (one 12-bit table, or 2-4 11-bit ones) went from
    /// 427-458 to 442-602 GB/s (int8) and 764 to 974 (BF16). With the costliest blocks
    /// launched first (`chunks`), the ring variant with 8 warps and a unit a warp was the best
    /// shape, or within 10% of it, on one 11-bit table at 256, 512 and 1024 MiB a launch
    /// (MiniLM int8 682-743 GB/s, SmolLM2 Q8_0 quants 709-770, MiniLM BF16 1025-1128); two
    /// units a warp did better on the large launches (up to 788) and worse on the small ones.
    /// `compact`: the plan has compact tables (`smem_bytes` is then theirs). `unit_symbols`:
    /// symbols of a coded unit, on average; units of more than 8,192 (tiles larger than 64x128)
    /// take a warp each with one table (measured on H100, GPU run 59, 128x128 tiles at 512 MiB
    /// a launch: MiniLM BF16 1,038-1,044 GB/s with 2 units a warp, 1,148-1,180 with one;
    /// SmolLM2 Q8_0 quants 770-773 and 787-788; MiniLM int8 913-949 and 949; 2 GB of BF16 in
    /// one launch 1,246-1,256 and 1,290-1,292). `paired`: most units take the paired loop
    /// (`Plan::mostly_paired`), so the paired variant replaces the ring variant, its warps
    /// taking units two at a time.
    #[allow(clippy::too_many_arguments)]
    pub fn choose(
        units: usize,
        planes: usize,
        unit_symbols: usize,
        smem_bytes: usize,
        multiprocessors: u32,
        resident_warps: u32,
        compact: bool,
        paired: bool,
    ) -> LaunchConfig {
        let sms = multiprocessors.max(1) as usize;
        let resident = resident_warps.clamp(1, 32) as usize;
        let by_smem = (228 * 1024 / (smem_bytes + 1024)).max(1);
        if by_smem <= 2 {
            // Tables too large for many blocks: one block a multiprocessor with all its warps,
            // over ranges of equal work (measured on H100: 1.8x the small blocks).
            return LaunchConfig {
                variant: Self::DEFAULT_VARIANT,
                warps_per_block: resident as u32,
                blocks_per_sm: 1,
                units_per_block: 0,
            };
        }
        let per_sm = units.div_ceil(sms).max(1);
        if smem_bytes <= 8 << 10 && per_sm >= 2 * RING_RESIDENT_WARPS {
            // One 11-bit table (files made for the GPU) and units enough to fill every warp of
            // the GPU twice over: 2 units a warp (one where the units are larger than 64x128
            // tiles, see above), in blocks of 4 warps where planes are small
            // (fewer warps idle in a plane's last block) and of 8 where they are large (fewer
            // table loads a unit). Measured on H100 (GPU run 25): MiniLM int8 (small planes)
            // 938 GB/s at (4 warps, 8 units) against 900 at (8, 8) and 902 at (8, 16);
            // SmolLM2 Q8_0 quants (one plane) 772 at (8, 16) against 742 at (4, 8); MiniLM
            // BF16 1,140 at (4, 8) against 1,136 at (8, 8).
            let large = units / planes.max(1) >= 256;
            if paired {
                // Two units a warp whatever their size, in blocks of 2 warps on small planes and
                // of 8 on large ones: the paired variant's best shapes in GPU runs 125 and
                // 128-130 (MiniLM int8 (2 warps, 4 units) in 13 of 18 sweeps, (4, 8) in the
                // others; SmolLM2 Q8_0 quants (8, 16) in 15 of 18, (4, 8) in the others).
                let warps = if large { 8 } else { 2 };
                return LaunchConfig {
                    variant: Self::PAIRED_VARIANT,
                    warps_per_block: warps,
                    blocks_per_sm: 1,
                    units_per_block: 2 * warps,
                };
            }
            let warps = if large { 8 } else { 4 };
            let per_warp = if unit_symbols <= 8192 { 2 } else { 1 };
            return LaunchConfig {
                variant: Self::RING_VARIANT,
                warps_per_block: warps,
                blocks_per_sm: 1,
                units_per_block: per_warp * warps,
            };
        }
        let warps = 8.min(per_sm) as u32;
        let variant =
            if smem_bytes <= 16 << 10 { Self::RING_VARIANT } else { Self::SMALL_BLOCK_VARIANT };
        // Compact tables (planes of several tables) and units enough to fill every warp twice:
        // 2 units a warp. Measured on H100 (GPU run 35, 1 and 2 GiB a launch): MiniLM int8 with
        // the CPU defaults 401-417 GB/s at (8 warps, 16 units) against 388-395 at (8, 8), MiniLM
        // BF16 854-878 against 834-849; the same at 256 MiB, where the units fill the GPU once.
        let per_warp = if compact && per_sm >= 2 * RING_RESIDENT_WARPS { 2 } else { 1 };
        LaunchConfig {
            variant,
            warps_per_block: warps,
            blocks_per_sm: 1,
            units_per_block: per_warp * warps,
        }
    }
}

/// A buffer the launch writes: a decoded tensor (its index in the directory and its length in
/// bytes), or scratch memory where the planes of a tensor whose transform mixes bits of
/// several planes (bf16_split, f32_split) are decoded before the merge launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Output {
    pub tensor: usize,
    pub len: u64,
    pub scratch: bool,
}

/// A piece of the merge launch: `n` elements of `tensor_output`, from `offset` on, merged
/// from the planes in `scratch_output` (plane j at `j * plane_len`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergePiece {
    pub scratch_output: u32,
    pub tensor_output: u32,
    /// First element of the piece.
    pub offset: u64,
    pub n: u32,
    /// `abi::MERGE_*`.
    pub kind: u32,
    pub plane_len: u64,
    /// Bytes per element (2 or 4; a block's bytes for `MERGE_BLOCK_HEAD` and `MERGE_BLOCKS`).
    pub elem_size: u32,
    /// Planes merged (`MERGE_BLOCK_HEAD`, `MERGE_BLOCKS`: the block's head bytes; else the
    /// transform's).
    pub fields: u32,
    /// `MERGE_BLOCKS`: where in the scratch output the tail bytes of block `offset` lie.
    pub tail: u64,
}

/// Elements per merge piece (one thread block each).
const MERGE_PIECE: u64 = 1 << 16;

/// Blocks per merge piece of whole GGUF blocks (18-34 bytes each): pieces of 150-280 KB, enough
/// of them for every multiprocessor to hold several.
const MERGE_PIECE_BLOCKS: u64 = 1 << 13;

/// Where a `WcUnit` comes from, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Zeroable)]
pub struct Origin {
    pub tensor: usize,
    pub plane: usize,
    /// The unit (tile) index in its plane, or the chunk index of a raw plane.
    pub unit: usize,
}

/// A byte range of the file copied into the staging buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub file_offset: u64,
    pub len: u64,
    pub staging_offset: u64,
}

/// Everything one launch needs, with unit destinations relative to their output's start.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub outputs: Vec<Output>,
    /// Plane after plane, each plane's units in tile order.
    pub units: Vec<WcUnit>,
    /// The output each unit writes (an index into `outputs`).
    pub unit_output: Vec<u32>,
    pub origins: Vec<Origin>,
    /// One per plane, in unit order.
    pub groups: Vec<WcGroup>,
    /// Packed decode-table entries (or compact tables, `GROUP_COMPACT_TABLES`); a plane's tables
    /// are back to back, starting at a multiple of 4 (16 bytes).
    pub tables: Vec<u32>,
    /// Row-class maps, one byte per row, of the planes with several tables.
    pub maps: Vec<u8>,
    pub segments: Vec<Segment>,
    /// Bytes of the staging buffer (the compressed bytes the device receives).
    pub staging_len: u64,
    /// The merge launch that follows the decode launch (empty when no tensor needs one).
    pub merges: Vec<MergePiece>,
    /// The CRC checks left to the GPU (`PlanOptions::checksums_on_device`), in plan order: the
    /// chunks of the staged bytes the CRC kernel computes (a unit, or a raw plane of one chunk,
    /// with its stored CRC and `CRC_COMPARE`; or 64 KiB of a longer raw plane), and the raw
    /// planes' checks over their chunks.
    pub crc_chunks: Vec<WcCrcChunk>,
    pub crc_planes: Vec<CrcPlane>,
}

/// The most device memory for outputs, as a multiple of the file's bytes, that a load takes
/// before its plan has checked the directory (`Plan::outputs_of`): model weights compress 1.1
/// to 3 times; a file that claims more gets its outputs once its plan is made.
pub const EARLY_OUTPUT_RATIO: u64 = 4;

/// Where the staged bytes of a plan come from (`Plan::staging_of`): its `segments` and
/// `staging_len`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Staging {
    pub segments: Vec<Segment>,
    pub len: u64,
}

impl Staging {
    /// `Plan::fill_staging_window` of a plan with this staging.
    pub fn fill_window(&self, file: &[u8], start: u64, out: &mut [u8]) {
        fill_window(&self.segments, file, start, out);
    }
}

/// Bytes `start..start + out.len()` of the staging of `segments` (see
/// `Plan::fill_staging_window`).
fn fill_window(segments: &[Segment], file: &[u8], start: u64, out: &mut [u8]) {
    let end = start + out.len() as u64;
    // Segments are in staging order and do not overlap: the first one that ends past `start`
    // is the first in the window.
    let first = segments.partition_point(|s| s.staging_offset + s.len <= start);
    let mut at = start; // staging offset written up to
    for s in segments[first..].iter().take_while(|s| s.staging_offset < end) {
        let (from, to) = (s.staging_offset.max(start), (s.staging_offset + s.len).min(end));
        out[(at - start) as usize..(from - start) as usize].fill(0);
        let src = s.file_offset + (from - s.staging_offset);
        out[(from - start) as usize..(to - start) as usize]
            .copy_from_slice(&file[src as usize..(src + to - from) as usize]);
        at = to;
    }
    out[(at - start) as usize..].fill(0);
}

/// Whether a tensor of `len` bytes is a bf16_split whose coded exponent units merge its raw
/// sign-mantissa plane in as they decode (`PlanOptions::merge_while_decoding`): two non-empty
/// planes of one shape, the first coded, the second stored raw.
fn fuses_bf16(tensor: &TensorEntry, len: u64) -> bool {
    if tensor.transform != Transform::Bf16Split || len == 0 || tensor.planes.len() != 2 {
        return false;
    }
    let (exp, sm) = (&tensor.planes[0], &tensor.planes[1]);
    matches!((&exp.encoding, &sm.encoding), (PlaneEncoding::Rans { .. }, PlaneEncoding::Raw { .. }))
        && !exp.is_empty()
        && (sm.rows, sm.cols) == (exp.rows, exp.cols)
}

/// The blocks of a decode launched piece by piece as its bytes reach the device, and where
/// each block's and each CRC chunk's bytes end (`Plan::streamed`).
#[derive(Clone, Debug, Default)]
pub struct Streamed {
    pub ranges: Vec<WcRange>,
    pub range_ends: Vec<u64>,
    pub crc_ends: Vec<u64>,
}

/// The staged bytes a unit may read up to (exclusive): its stream, then up to `STAGING_PAD`
/// bytes past it (the kernel's fast path and stream rings read ahead), and a merged BF16 unit's
/// sign-mantissa bytes (`height` rows of `width` bytes, `row_stride / 2` apart, from `mix`).
pub fn unit_reads_to(u: &WcUnit) -> u64 {
    let mut end = u.src + u64::from(u.len) + STAGING_PAD as u64;
    if u.flags & FLAG_MIX_BF16 != 0 && u.height > 0 {
        let rows = u64::from(u.height - 1) * (u.row_stride / 2);
        end = end.max(u.mix + rows + u64::from(u.width));
    }
    end
}

/// A raw plane's CRC-32C check left to the GPU: the bytes of
/// `crc_chunks[first_chunk..][..chunks]`, `len` in all, must have the CRC `stored`. They are
/// plane `at.plane` of tensor `at.tensor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrcPlane {
    pub stored: u32,
    pub first_chunk: u32,
    pub chunks: u32,
    pub len: u64,
    pub at: Origin,
}

fn invalid(tensor: &TensorEntry, detail: impl Into<String>) -> CudaError {
    CudaError::Invalid { tensor: tensor.name.clone(), detail: detail.into() }
}

/// Where a plane's bytes go: byte (r, c) of the plane lands at
/// `origin + r * row_stride + (c / group) * col_stride + (c % group) * step` of its output.
/// Columns are whole elements (group 1, col_stride = the element's size) or the bytes of one
/// field of a GGUF block type (group = the field's bytes per block, col_stride = the block's
/// size); either way a later column never lands before an earlier one.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    origin: u64,
    row_stride: u64,
    col_stride: u64,
    group: u64,
    step: u64,
}

impl Geometry {
    fn contiguous(&self) -> bool {
        self.group == 1 && self.col_stride == 1
    }

    fn column(&self, c: u64) -> Option<u64> {
        (c / self.group).checked_mul(self.col_stride)?.checked_add((c % self.group) * self.step)
    }

    /// Offset of byte (r, c).
    fn at(&self, r: u64, c: u64) -> Option<u64> {
        self.origin.checked_add(r.checked_mul(self.row_stride)?)?.checked_add(self.column(c)?)
    }
}

/// How a tensor's planes lie in its bytes (`None`: the transform mixes bits of several
/// planes; they are decoded to scratch memory and merged by the second launch).
fn geometry(tensor: &TensorEntry, plane: usize) -> Result<Option<Geometry>, CudaError> {
    let (_, cols) = matrix_shape(&tensor.dims).ok_or_else(|| invalid(tensor, "shape overflows"))?;
    let size = tensor.dtype.size() as u64;
    let whole = |g: Geometry| Ok(Some(g));
    match tensor.transform {
        Transform::Identity => {
            let row_stride = tensor.planes.first().map_or(0, |p| p.cols);
            whole(Geometry { origin: 0, row_stride, col_stride: 1, group: 1, step: 0 })
        }
        Transform::BytePlanes => {
            let row_stride =
                cols.checked_mul(size).ok_or_else(|| invalid(tensor, "row overflows"))?;
            whole(Geometry {
                origin: plane as u64,
                row_stride,
                col_stride: size,
                group: 1,
                step: 0,
            })
        }
        Transform::BlockFields => {
            let (per_block, block_bytes) = tensor
                .dtype
                .block()
                .ok_or_else(|| invalid(tensor, "block_fields on a non-block type"))?;
            let field = wcodec_format::blocks::block_fields(tensor.dtype)
                .and_then(|f| f.get(plane))
                .ok_or_else(|| invalid(tensor, "no such block field"))?;
            let (count, step) = (u64::from(field.count), u64::from(field.step));
            if count == 0 || u64::from(field.offset) + (count - 1) * step >= block_bytes {
                return Err(invalid(tensor, "block field outside its block"));
            }
            whole(Geometry {
                origin: u64::from(field.offset),
                row_stride: cols / per_block * block_bytes,
                col_stride: block_bytes,
                group: count,
                step,
            })
        }
        Transform::Bf16Split | Transform::F32Split => Ok(None),
    }
}

/// The head of a GGUF block type's blocks: its first `fields` block fields are one byte each
/// at offsets 0, 1, ... (the fp16 scales of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q4_K, Q5_K,
/// the f32 scale of Q8_K), planes of a byte a block. In scratch memory plane j lies at
/// `j * stride`, and, for whole blocks, the tail plane after them.
#[derive(Clone, Copy, Debug)]
struct BlockHead {
    fields: u64,
    blocks: u64,
    /// Bytes between the planes in scratch: `blocks`, rounded up to keep each plane 64-byte
    /// aligned (its units' word stores need 4).
    stride: u64,
    block_bytes: u64,
    /// Whole blocks (`PlanOptions::merge_whole_blocks`): the one field after the head, of
    /// `block_bytes - fields` bytes a block, decodes into scratch too.
    whole: bool,
}

impl BlockHead {
    /// Where the tail plane lies in scratch.
    fn tail(&self) -> u64 {
        self.fields * self.stride
    }

    fn scratch_len(&self) -> u64 {
        let tail = if self.whole { self.blocks * (self.block_bytes - self.fields) } else { 0 };
        self.tail() + tail
    }
}

/// The block head of a non-empty block_fields tensor of `len` bytes whose head fields are
/// decoded through scratch (2 or 4 of them: the merge stores them as one word a block), with
/// its tail field too where `options` asks for whole blocks and the block has one.
fn block_head(tensor: &TensorEntry, len: u64, options: &PlanOptions) -> Option<BlockHead> {
    if tensor.transform != Transform::BlockFields || len == 0 {
        return None;
    }
    let (_, block_bytes) = tensor.dtype.block()?;
    let fields = wcodec_format::blocks::block_fields(tensor.dtype)?;
    let head = fields
        .iter()
        .enumerate()
        .take_while(|(j, f)| f.count == 1 && usize::from(f.offset) == *j)
        .count() as u64;
    if !matches!(head, 2 | 4) || tensor.planes.len() as u64 <= head {
        return None;
    }
    let blocks = len / block_bytes;
    // One field after the head, its bytes the rest of the block in order.
    let whole = options.merge_whole_blocks
        && fields.len() as u64 == head + 1
        && fields[head as usize].step == 1
        && u64::from(fields[head as usize].offset) == head
        && u64::from(fields[head as usize].count) + head == block_bytes;
    let stride = blocks.next_multiple_of(64);
    Some(BlockHead { fields: head, blocks, stride, block_bytes, whole })
}

/// Offset of the last byte a `h x w` rectangle at (r0, c0) writes, if it lies inside `len`
/// (the largest offset: later rows and columns never land before earlier ones).
fn last_byte(g: Geometry, r0: u64, c0: u64, h: u64, w: u64, len: u64) -> Option<u64> {
    let end = g.at(r0.checked_add(h.checked_sub(1)?)?, c0.checked_add(w.checked_sub(1)?)?)?;
    (end < len).then_some(end)
}

/// The work of a plan that needs no order, done on all cores once the plan is laid out: the
/// CRC-32C checks of the compressed bytes (one core checks about 10 GB/s: a third of a second
/// for a 3 GB file) and the decode tables, written into the room each plane reserved.
#[derive(Default)]
struct Deferred<'f> {
    verify: bool,
    /// Checks go to `chunks` and `planes` (with their staging offsets) rather than to `crcs`.
    device: bool,
    crcs: Vec<PendingCrc<'f>>,
    chunks: Vec<WcCrcChunk>,
    planes: Vec<CrcPlane>,
    tables: Vec<PendingTables<'f>>,
    /// Entries of `tables` (where the next plane's go).
    table_len: usize,
}

/// Bytes of the file to check against their stored CRC-32C: unit `unit` of plane `at.plane`
/// of tensor `at.tensor` (an index into the directory), or with no unit the plane, stored raw.
struct PendingCrc<'f> {
    bytes: &'f [u8],
    stored: u32,
    at: Origin,
    unit: Option<usize>,
}

/// A plane's tables, to be written back to back where the plane's group points.
struct PendingTables<'f> {
    freqs: &'f [wcodec_format::Frequencies],
    prob_bits: u8,
    at: Origin,
}

impl<'f> Deferred<'f> {
    /// Checks `bytes` (staged at `staging`) against `stored`: on the host's cores when the
    /// plan is laid out, or on the GPU after the upload, in chunks of `crc::CHUNK` bytes for a
    /// raw plane (its chunks start 4-aligned as the kernel needs, since units are 16-aligned
    /// and planes staged `STAGING_ALIGN`-aligned; a check that could not is made here).
    fn check_crc(
        &mut self,
        bytes: &'f [u8],
        staging: u64,
        stored: u32,
        at: Origin,
        unit: Option<usize>,
    ) {
        if !self.verify {
            return;
        }
        let len = bytes.len() as u64;
        let too_long = unit.is_some() && len >= u64::from(CRC_COMPARE);
        if !self.device
            || !staging.is_multiple_of(4)
            || too_long
            || self.chunks.len() >= u32::MAX as usize / 2
        {
            self.crcs.push(PendingCrc { bytes, stored, at, unit });
            return;
        }
        if unit.is_some() {
            let len = len as u32 | CRC_COMPARE;
            self.chunks.push(WcCrcChunk { src: staging, len, stored });
            return;
        }
        let first_chunk = self.chunks.len() as u32;
        if len <= crc::CHUNK {
            // One chunk: its CRC is the plane's, compared on the GPU as a unit's is (a file of
            // many small raw planes then reads one word back, not every chunk's CRC).
            let compare = WcCrcChunk { src: staging, len: len as u32 | CRC_COMPARE, stored };
            self.chunks.push(compare);
            self.planes.push(CrcPlane { stored, first_chunk, chunks: 1, len, at });
            return;
        }
        for start in (0..len.max(1)).step_by(crc::CHUNK as usize) {
            let n = (len - start).min(crc::CHUNK) as u32;
            self.chunks.push(WcCrcChunk { src: staging + start, len: n, stored: 0 });
        }
        let chunks = self.chunks.len() as u32 - first_chunk;
        self.planes.push(CrcPlane { stored, first_chunk, chunks, len, at });
    }

    /// Writes the pending tables into `tables` (each plane's at the end of the previous
    /// plane's), then makes the checks; the first failure in plan order is the error.
    fn finish(&self, dir: &Directory, tables: &mut [u32]) -> Result<(), CudaError> {
        let mut jobs = Vec::new();
        let mut rest = tables;
        for t in &self.tables {
            for freqs in t.freqs {
                let (out, tail) = std::mem::take(&mut rest).split_at_mut(1 << t.prob_bits);
                jobs.push((out, freqs, t));
                rest = tail;
            }
        }
        let written: Vec<_> = jobs
            .into_par_iter()
            .map(|(out, freqs, t)| write_table_entries(freqs, t.prob_bits, out).map_err(|e| (t, e)))
            .collect();
        if let Some((t, e)) = written.into_iter().find_map(Result::err) {
            let tensor = &dir.tensors[t.at.tensor];
            return Err(invalid(tensor, format!("plane {}: {e}", t.at.plane)));
        }
        let crc = |c: &PendingCrc| wcodec_format::crc32c(c.bytes);
        let Some(k) = self.crcs.par_iter().position_first(|c| crc(c) != c.stored) else {
            return Ok(());
        };
        let c = &self.crcs[k];
        let name = &dir.tensors[c.at.tensor].name;
        let what = match c.unit {
            Some(i) => format!("tensor {name:?} plane {} unit {i}", c.at.plane),
            None => format!("tensor {name:?} raw plane {}", c.at.plane),
        };
        Err(CudaError::Checksum { what, stored: c.stored, computed: crc(c) })
    }
}

fn too_many() -> CudaError {
    CudaError::Invalid { tensor: String::new(), detail: "too many units for one launch".into() }
}

/// A run of consecutive tensors planned on one core (`Plan::build`): their plan, with indices
/// and offsets counted from the run's start, and their deferred work.
struct Part<'f> {
    plan: Plan,
    deferred: Deferred<'f>,
}

impl<'f> Part<'f> {
    fn plan(
        file: &'f [u8],
        dir: &'f Directory,
        tensors: &[usize],
        options: &PlanOptions,
    ) -> Result<Part<'f>, CudaError> {
        let mut plan = Plan::default();
        let units = plan.reserve(file, dir, tensors);
        // A chunk a unit, or 64 KiB of a raw plane (`RAW_CHUNK`, a raw unit's size, which
        // `units` counts too): room for them all, so that the list is not copied as it grows.
        let device = options.verify_checksums && options.checksums_on_device;
        let mut deferred = Deferred {
            verify: options.verify_checksums,
            device: options.checksums_on_device,
            crcs: Vec::new(),
            chunks: Vec::with_capacity(if device { units } else { 0 }),
            planes: Vec::new(),
            tables: Vec::new(),
            table_len: 0,
        };
        for &index in tensors {
            let tensor = dir
                .tensors
                .get(index)
                .ok_or(CudaError::NoSuchTensor { index, count: dir.tensors.len() })?;
            plan.add_tensor(file, index, tensor, options, &mut deferred)?;
        }
        Ok(Part { plan, deferred })
    }

    /// The parts end to end, as one run of all their tensors would have planned them: each
    /// part's indices moved past those of the parts before it, its staged bytes to the first
    /// `STAGING_ALIGN` multiple after theirs. The large arrays are written on all cores.
    fn join(mut parts: Vec<Part<'f>>) -> Result<(Plan, Deferred<'f>), CudaError> {
        if parts.len() <= 1 {
            let Some(mut part) = parts.pop() else {
                return Ok((Plan::default(), Deferred::default()));
            };
            part.plan.tables = vec![0; part.deferred.table_len];
            part.plan.crc_chunks = std::mem::take(&mut part.deferred.chunks);
            part.plan.crc_planes = std::mem::take(&mut part.deferred.planes);
            return Ok((part.plan, part.deferred));
        }
        let mut bases = Vec::with_capacity(parts.len());
        let mut next = Base::default();
        let mut staging_len = 0u64;
        for p in &parts {
            let (plan, d) = (&p.plan, &p.deferred);
            // Where `stage` would have put the part's first segment; a part with none leaves
            // the staging as it was.
            next.stage = staging_len.next_multiple_of(STAGING_ALIGN);
            if !plan.segments.is_empty() {
                staging_len = next.stage + plan.staging_len;
            }
            bases.push(next);
            let grow = |base: u32, n: usize| {
                u32::try_from(base as usize + n).ok().filter(|&v| v < i32::MAX as u32)
            };
            next = Base {
                output: grow(next.output, plan.outputs.len()).ok_or_else(too_many)?,
                unit: grow(next.unit, plan.units.len()).ok_or_else(too_many)?,
                table: u32::try_from(next.table as usize + d.table_len).map_err(|_| too_many())?,
                map: next.map + plan.maps.len() as u64,
                chunk: u32::try_from(next.chunk as usize + d.chunks.len())
                    .ok()
                    .filter(|&v| v < u32::MAX / 2)
                    .ok_or_else(too_many)?,
                stage: 0,
            };
        }
        let mut plan = Plan {
            outputs: parts.iter().flat_map(|p| p.plan.outputs.iter().copied()).collect(),
            units: concat(
                &parts,
                &bases,
                |p| &p.plan.units,
                |u, b| {
                    let mut u = *u;
                    u.src += b.stage;
                    if u.flags & FLAG_MIX_BF16 != 0 {
                        u.mix += b.stage;
                    }
                    if u.flags & (FLAG_ROW_TABLES | FLAG_COL_TABLES) != 0 {
                        u.row_map += b.map;
                    }
                    u
                },
            ),
            unit_output: concat(&parts, &bases, |p| &p.plan.unit_output, |&o, b| o + b.output),
            origins: concat(&parts, &bases, |p| &p.plan.origins, |&o, _| o),
            groups: Vec::new(),
            // Written by `Deferred::finish`.
            tables: vec![0; parts.iter().map(|p| p.deferred.table_len).sum()],
            maps: parts.iter().flat_map(|p| p.plan.maps.iter().copied()).collect(),
            segments: Vec::new(),
            staging_len,
            merges: Vec::new(),
            crc_chunks: concat(
                &parts,
                &bases,
                |p| &p.deferred.chunks,
                |c, b| WcCrcChunk { src: c.src + b.stage, ..*c },
            ),
            crc_planes: Vec::new(),
        };
        let mut deferred = Deferred::default();
        for (p, b) in parts.into_iter().zip(bases) {
            let Part { plan: part, deferred: d } = p;
            // A raw plane's group has no tables (and table 0).
            plan.groups.extend(part.groups.iter().map(|g| WcGroup {
                first_unit: g.first_unit + b.unit,
                table: if g.n_tables > 0 { g.table + b.table } else { g.table },
                ..*g
            }));
            plan.segments.extend(
                part.segments
                    .iter()
                    .map(|s| Segment { staging_offset: s.staging_offset + b.stage, ..*s }),
            );
            plan.merges.extend(part.merges.iter().map(|m| MergePiece {
                scratch_output: m.scratch_output + b.output,
                tensor_output: m.tensor_output + b.output,
                ..*m
            }));
            plan.crc_planes.extend(
                d.planes.iter().map(|c| CrcPlane { first_chunk: c.first_chunk + b.chunk, ..*c }),
            );
            deferred.crcs.extend(d.crcs);
            deferred.tables.extend(d.tables);
        }
        Ok((plan, deferred))
    }
}

/// Where a part's indices and offsets start in the joined plan.
#[derive(Clone, Copy, Default)]
struct Base {
    output: u32,
    unit: u32,
    table: u32,
    map: u64,
    chunk: u32,
    stage: u64,
}

/// The items of every part end to end, each mapped by `f(item, the part's base)`: each part
/// writes its own piece of the new array, on all cores.
fn concat<P: Sync, T: Sync, U: Send + bytemuck::Zeroable>(
    parts: &[P],
    bases: &[Base],
    items: impl Fn(&P) -> &[T] + Sync,
    f: impl Fn(&T, &Base) -> U + Sync,
) -> Vec<U> {
    let mut out = bytemuck::zeroed_vec::<U>(parts.iter().map(|p| items(p).len()).sum());
    let mut pieces = Vec::with_capacity(parts.len());
    let mut rest = &mut out[..];
    for p in parts {
        let (piece, tail) = std::mem::take(&mut rest).split_at_mut(items(p).len());
        pieces.push(piece);
        rest = tail;
    }
    pieces.into_par_iter().enumerate().for_each(|(k, piece)| {
        for (o, item) in piece.iter_mut().zip(items(&parts[k])) {
            *o = f(item, &bases[k]);
        }
    });
    out
}

impl Plan {
    /// Plans the decoding of the tensors `which` (indices into `dir.tensors`; repeats allowed)
    /// of `file`, whose directory is `dir`. Runs of consecutive tensors are planned on all
    /// cores (a model's plan has hundreds of thousands of units) and joined in order.
    pub fn build(
        file: &[u8],
        dir: &Directory,
        which: &[usize],
        options: &PlanOptions,
    ) -> Result<Plan, CudaError> {
        // About four runs a core (tensors differ in size); one run on one core, which joins
        // nothing.
        let threads = rayon::current_num_threads();
        let run = if threads > 1 { which.len().div_ceil(4 * threads) } else { which.len() };
        Plan::build_in_runs(file, dir, which, options, run)
    }

    /// `build`, planning runs of `run` tensors each (at least one) in parallel: the plan is
    /// the same for every `run`, and so is the first error.
    pub fn build_in_runs(
        file: &[u8],
        dir: &Directory,
        which: &[usize],
        options: &PlanOptions,
        run: usize,
    ) -> Result<Plan, CudaError> {
        let parts: Vec<Result<Part, CudaError>> = which
            .par_chunks(run.max(1))
            .map(|tensors| Part::plan(file, dir, tensors, options))
            .collect();
        // The first error in `which` order, as if the tensors were planned one by one.
        let parts = parts.into_iter().collect::<Result<Vec<_>, _>>()?;
        let (mut plan, deferred) = Part::join(parts)?;
        deferred.finish(dir, &mut plan.tables)?;
        if let CompactTables::Above(bytes) = options.compact_tables {
            plan.compact_tables(bytes);
        }
        // Every count the kernel sees is a u32; a grid has fewer than 2^31 blocks.
        if plan.units.len() >= i32::MAX as usize || plan.tables.len() >= u32::MAX as usize {
            return Err(too_many());
        }
        Ok(plan)
    }

    /// Reserves the room the units of the tensors `which` will take (a plan of a large model
    /// has hundreds of thousands: grown by doubling, each array was copied and its pages
    /// faulted in again), from the directory's counts, bounded by what
    /// the file can hold so that a hostile directory cannot ask for much.
    fn reserve(&mut self, file: &[u8], dir: &Directory, which: &[usize]) -> usize {
        let mut units = 0usize;
        for t in which.iter().filter_map(|&i| dir.tensors.get(i)) {
            for p in &t.planes {
                match &p.encoding {
                    PlaneEncoding::Raw { .. } => {
                        let len = p.payload_len.min(file.len() as u64);
                        units += len.div_ceil(u64::from(RAW_CHUNK)) as usize;
                    }
                    PlaneEncoding::Rans { units: u, .. } => units += u.len(),
                }
            }
        }
        self.units.reserve(units);
        self.unit_output.reserve(units);
        self.origins.reserve(units);
        units
    }

    fn add_tensor<'f>(
        &mut self,
        file: &'f [u8],
        index: usize,
        tensor: &'f TensorEntry,
        options: &PlanOptions,
        deferred: &mut Deferred<'f>,
    ) -> Result<(), CudaError> {
        let (rows, cols) =
            matrix_shape(&tensor.dims).ok_or_else(|| invalid(tensor, "shape overflows"))?;
        let whole_blocks = tensor.dtype.block().is_none_or(|(per_block, _)| cols % per_block == 0);
        let len = rows
            .checked_mul(cols)
            .and_then(|n| tensor.dtype.storage_len(n))
            .filter(|&n| n == tensor.source_len && whole_blocks)
            .ok_or_else(|| invalid(tensor, "shape and dtype do not give its length"))?;
        if !tensor.transform.supports(tensor.dtype) {
            return Err(invalid(
                tensor,
                format!("{} on {}", tensor.transform.name(), tensor.dtype),
            ));
        }
        let shapes = tensor.transform.plane_shapes(tensor.dtype, rows, cols);
        let fits = shapes.len() == tensor.planes.len()
            && shapes
                .iter()
                .zip(&tensor.planes)
                .all(|(&s, p)| tensor.transform.plane_shape_fits(s, (p.rows, p.cols)));
        if !fits {
            return Err(invalid(tensor, "planes do not match the tensor's transform"));
        }
        let output = self.outputs.len() as u32;
        self.outputs.push(Output { tensor: index, len, scratch: false });
        let n = rows * cols;
        // bf16_split with a coded exponent plane and a raw sign-mantissa plane (the usual
        // case): the exponent units merge the raw bytes in as they decode, so the raw plane is
        // only staged, never copied, and no merge launch follows.
        let fused = if options.merge_while_decoding {
            self.fused_bf16(file, index, tensor, len, deferred)?
        } else {
            None
        };
        if let Some(mix) = fused {
            let plane = &tensor.planes[0];
            let PlaneEncoding::Rans { prob_bits, tables, row_tables, col_tables, units } =
                &plane.encoding
            else {
                unreachable!("fused_bf16 checked the encoding")
            };
            let g = Geometry { origin: 0, row_stride: 2 * cols, col_stride: 2, group: 1, step: 0 };
            // The highest byte a unit writes is the high byte of its last element.
            let high = Geometry { origin: 1, ..g };
            if last_byte(high, 0, 0, plane.rows, plane.cols, len).is_none()
                || plane.cols > u64::from(u32::MAX)
            {
                return Err(invalid(tensor, "plane 0 does not fit the tensor"));
            }
            let payload = self.payload(file, tensor, 0)?;
            let staging_offset = self.stage(plane.payload_offset, plane.payload_len);
            let at = Origin { tensor: index, plane: 0, unit: 0 };
            let ctx =
                RansPlane { tensor, plane, g, staging_offset, output, len, at, mix: Some(mix) };
            let classes = Classes { rows: row_tables, cols: col_tables };
            return self.add_rans(&ctx, payload, *prob_bits, tables, classes, units, deferred);
        }
        // Bit-mixing transforms: planes back to back in scratch memory, then merged.
        let scratch = if geometry(tensor, 0)?.is_none() && len > 0 {
            let (kind, size) = match tensor.transform {
                Transform::Bf16Split => (MERGE_BF16_SPLIT, 2),
                _ => (MERGE_F32_SPLIT, 4),
            };
            let scratch = self.outputs.len() as u32;
            self.outputs.push(Output { tensor: index, len, scratch: true });
            for offset in (0..n).step_by(MERGE_PIECE as usize) {
                self.merges.push(MergePiece {
                    scratch_output: scratch,
                    tensor_output: output,
                    offset,
                    n: (n - offset).min(MERGE_PIECE) as u32,
                    kind,
                    plane_len: n,
                    elem_size: size,
                    fields: tensor.planes.len() as u32,
                    tail: 0,
                });
            }
            Some(scratch)
        } else {
            None
        };
        // GGUF blocks: the one-byte head fields (the fp16 scales' bytes, a byte every 18-34
        // of the tensor) are narrow planes; they decode into scratch, where their bytes lie
        // side by side, and the merge launch puts them into their blocks.
        // With their tail field too, where the block has one, and the merge writes whole
        // blocks (`PlanOptions::merge_whole_blocks`).
        let head = block_head(tensor, len, options).map(|head| {
            let scratch = self.outputs.len() as u32;
            self.outputs.push(Output { tensor: index, len: head.scratch_len(), scratch: true });
            let tail_bytes = head.block_bytes - head.fields;
            let piece = if head.whole { MERGE_PIECE_BLOCKS } else { MERGE_PIECE };
            for offset in (0..head.blocks).step_by(piece as usize) {
                self.merges.push(MergePiece {
                    scratch_output: scratch,
                    tensor_output: output,
                    offset,
                    n: (head.blocks - offset).min(piece) as u32,
                    kind: if head.whole { MERGE_BLOCKS } else { MERGE_BLOCK_HEAD },
                    plane_len: head.stride,
                    elem_size: head.block_bytes as u32,
                    fields: head.fields as u32,
                    tail: if head.whole { head.tail() + offset * tail_bytes } else { 0 },
                });
            }
            (head, scratch)
        });
        for (j, plane) in tensor.planes.iter().enumerate() {
            if plane.is_empty() {
                continue;
            }
            let (g, output, len) = match (geometry(tensor, j)?, scratch, head) {
                (Some(_), _, Some((head, scratch)))
                    if (j as u64) < head.fields || (head.whole && j as u64 == head.fields) =>
                {
                    // Head plane j at j * stride, the tail plane after them: rows back to back.
                    let origin = j as u64 * head.stride;
                    let g = Geometry {
                        origin,
                        row_stride: plane.cols,
                        col_stride: 1,
                        group: 1,
                        step: 0,
                    };
                    (g, scratch, head.scratch_len())
                }
                (Some(g), _, _) => (g, output, len),
                (None, Some(scratch), _) => {
                    let origin = j as u64 * n;
                    (
                        Geometry { origin, row_stride: cols, col_stride: 1, group: 1, step: 0 },
                        scratch,
                        len,
                    )
                }
                (None, None, _) => return Err(invalid(tensor, "planes of an empty tensor")),
            };
            if last_byte(g, 0, 0, plane.rows, plane.cols, len).is_none() {
                return Err(invalid(tensor, format!("plane {j} does not fit the tensor")));
            }
            if plane.cols > u64::from(u32::MAX)
                || g.col_stride > u64::from(u32::MAX)
                || g.group > u64::from(u16::MAX)
                || g.step > u64::from(u16::MAX)
            {
                return Err(invalid(tensor, format!("plane {j}: too wide for the kernel")));
            }
            let payload = self.payload(file, tensor, j)?;
            let staging_offset = self.stage(plane.payload_offset, plane.payload_len);
            let at = Origin { tensor: index, plane: j, unit: 0 };
            match &plane.encoding {
                PlaneEncoding::Raw { crc32c } => {
                    if plane.payload_len != plane.len() {
                        return Err(invalid(tensor, format!("raw plane {j}: wrong length")));
                    }
                    deferred.check_crc(payload, staging_offset, *crc32c, at, None);
                    self.add_raw(plane, g, staging_offset, output, at);
                }
                PlaneEncoding::Rans { prob_bits, tables, row_tables, col_tables, units } => {
                    let ctx =
                        RansPlane { tensor, plane, g, staging_offset, output, len, at, mix: None };
                    let classes = Classes { rows: row_tables, cols: col_tables };
                    self.add_rans(&ctx, payload, *prob_bits, tables, classes, units, deferred)?;
                }
            }
        }
        Ok(())
    }

    /// Plane `j`'s payload in the file.
    fn payload<'f>(
        &self,
        file: &'f [u8],
        tensor: &TensorEntry,
        j: usize,
    ) -> Result<&'f [u8], CudaError> {
        let plane = &tensor.planes[j];
        plane
            .payload_offset
            .checked_add(plane.payload_len)
            .and_then(|end| file.get(plane.payload_offset as usize..end as usize))
            .ok_or_else(|| invalid(tensor, format!("plane {j}: payload outside the file")))
    }

    /// For a non-empty bf16_split tensor whose exponent plane is coded and whose sign-mantissa
    /// plane is stored raw: stages the raw plane (checked: its length, and its CRC-32C with
    /// `deferred`) and returns its staging offset, which the exponent units read it from.
    fn fused_bf16<'f>(
        &mut self,
        file: &'f [u8],
        index: usize,
        tensor: &TensorEntry,
        len: u64,
        deferred: &mut Deferred<'f>,
    ) -> Result<Option<u64>, CudaError> {
        if !fuses_bf16(tensor, len) {
            return Ok(None);
        }
        let sm = &tensor.planes[1];
        let PlaneEncoding::Raw { crc32c } = &sm.encoding else {
            unreachable!("fuses_bf16 checked the encoding")
        };
        if sm.payload_len != sm.len() || sm.len().checked_mul(2) != Some(len) {
            return Err(invalid(tensor, "raw plane 1: wrong length"));
        }
        let payload = self.payload(file, tensor, 1)?;
        let staging_offset = self.stage(sm.payload_offset, sm.payload_len);
        let at = Origin { tensor: index, plane: 1, unit: 0 };
        deferred.check_crc(payload, staging_offset, *crc32c, at, None);
        Ok(Some(staging_offset))
    }

    /// Reserves room for `len` bytes of the file at `file_offset`; returns their staging offset.
    fn stage(&mut self, file_offset: u64, len: u64) -> u64 {
        let staging_offset = self.staging_len.next_multiple_of(STAGING_ALIGN);
        self.segments.push(Segment { file_offset, len, staging_offset });
        self.staging_len = staging_offset + len;
        staging_offset
    }

    fn push_unit(&mut self, unit: WcUnit, output: u32, origin: Origin) {
        self.units.push(unit);
        self.unit_output.push(output);
        self.origins.push(origin);
    }

    fn add_raw(
        &mut self,
        plane: &PlaneEntry,
        g: Geometry,
        staging_offset: u64,
        output: u32,
        at: Origin,
    ) {
        let contiguous = g.contiguous() && g.row_stride == plane.cols;
        let total = plane.len();
        let chunks = total.div_ceil(u64::from(RAW_CHUNK));
        let group = WcGroup {
            first_unit: self.units.len() as u32,
            n_units: chunks as u32,
            ..WcGroup::default()
        };
        for k in 0..chunks {
            let first = k * u64::from(RAW_CHUNK);
            let unit = WcUnit {
                src: staging_offset + first,
                dst: g.origin,
                row_stride: g.row_stride,
                first,
                len: (total - first).min(u64::from(RAW_CHUNK)) as u32,
                height: 0,
                width: plane.cols as u32,
                kind: UNIT_RAW,
                predictor: 0,
                flags: if contiguous { FLAG_CONTIGUOUS } else { 0 },
                reserved: 0,
                row_map: 0,
                col_stride: g.col_stride as u32,
                group: g.group as u16,
                step: g.step as u16,
                mix: 0,
            };
            self.push_unit(unit, output, Origin { unit: k as usize, ..at });
        }
        self.groups.push(group);
    }

    #[allow(clippy::too_many_arguments)]
    fn add_rans<'f>(
        &mut self,
        p: &RansPlane,
        payload: &'f [u8],
        prob_bits: u8,
        tables: &'f [wcodec_format::Frequencies],
        classes: Classes,
        units: &[wcodec_format::UnitEntry],
        deferred: &mut Deferred<'f>,
    ) -> Result<(), CudaError> {
        let (tensor, plane, j) = (p.tensor, p.plane, p.at.plane);
        let bad = |detail: String| invalid(tensor, format!("plane {j}: {detail}"));
        if !(rans::MIN_PROB_BITS..=rans::MAX_PROB_BITS).contains(&prob_bits) {
            return Err(bad(format!("prob_bits {prob_bits} outside 8..=12")));
        }
        let (th, tw) = (u64::from(plane.tile_rows), u64::from(plane.tile_cols));
        if th == 0 || tw == 0 || th * tw > MAX_TILE_SYMBOLS {
            return Err(bad(format!("tile {th}x{tw} empty or larger than 2^22")));
        }
        let (grid_rows, grid_cols) =
            tile_grid(plane.rows, plane.cols, plane.tile_rows, plane.tile_cols);
        if Some(units.len() as u64) != grid_rows.checked_mul(grid_cols) {
            return Err(bad(format!("{} units for {grid_rows}x{grid_cols} tiles", units.len())));
        }
        if tables.is_empty() || tables.len() > usize::from(rans::MAX_TABLES) {
            return Err(bad(format!("{} tables", tables.len())));
        }
        // With several tables every row names one of them (row classes), or every column
        // (column classes, a period of them); the kernel indexes `tables` with it.
        let (row_tables, col_tables) = (classes.rows, classes.cols);
        let mut row_map = None;
        let mut col_map = None;
        if tables.len() > 1 && !col_tables.is_empty() {
            let period = col_tables.len() as u64;
            if !plane.cols.is_multiple_of(period)
                || col_tables.iter().any(|&t| usize::from(t) >= tables.len())
            {
                return Err(bad("column-class map does not match the columns and tables".into()));
            }
            // The period, then a tile's width more: a tile from column c0 finds the classes of
            // its columns from c0 mod period on, in a row (at most the plane's width more, so
            // that the maps never outgrow the outputs).
            let base = self.maps.len() as u64;
            let len = period + tw.min(plane.cols);
            self.maps.extend((0..len).map(|c| col_tables[(c % period) as usize]));
            col_map = Some((base, period));
        } else if tables.len() > 1 {
            if row_tables.len() as u64 != plane.rows
                || row_tables.iter().any(|&t| usize::from(t) >= tables.len())
            {
                return Err(bad("row-class map does not match the rows and tables".into()));
            }
            let base = self.maps.len() as u64;
            self.maps.extend_from_slice(row_tables);
            row_map = Some(base);
        }
        let group = WcGroup {
            first_unit: self.units.len() as u32,
            n_units: units.len() as u32,
            table: deferred.table_len as u32,
            prob_bits,
            n_tables: tables.len() as u8,
            flags: 0,
            reserved: 0,
        };
        // Room for the tables, written on all cores when the plan is laid out.
        deferred.table_len += tables.len() << prob_bits;
        deferred.tables.push(PendingTables { freqs: tables, prob_bits, at: p.at });
        let mut pending: Vec<(WcUnit, Origin)> = Vec::with_capacity(units.len());
        for (i, u) in units.iter().enumerate() {
            let (tr, tc) = (i as u64 / grid_cols, i as u64 % grid_cols);
            let (r0, c0) = (tr * th, tc * tw);
            let (h, w) = ((plane.rows - r0).min(th), (plane.cols - c0).min(tw));
            let bytes = u
                .offset
                .checked_add(u64::from(u.len))
                .and_then(|end| payload.get(u.offset as usize..end as usize))
                .ok_or_else(|| bad(format!("unit {i} outside its payload")))?;
            if (u.len as usize) < rans::STATES_BYTES
                || !u.len.is_multiple_of(2)
                || !u.offset.is_multiple_of(UNIT_ALIGN)
            {
                return Err(bad(format!("unit {i}: length {} or offset misaligned", u.len)));
            }
            deferred.check_crc(bytes, p.staging_offset + u.offset, u.crc32c, p.at, Some(i));
            // The unit's origin is its first row's (the kernel adds the column offset of c0 + c,
            // which for a block field depends on the absolute column).
            // A merged unit's last byte is the high byte of its last element.
            let reach = Geometry { origin: p.g.origin + u64::from(p.mix.is_some()), ..p.g };
            let dst = last_byte(reach, r0, c0, h, w, p.len)
                .map(|_| p.g.origin + r0 * p.g.row_stride)
                .ok_or_else(|| bad(format!("unit {i}: tile outside the tensor")))?;
            // Runs of 4 columns in blocks (GGUF block fields): each lane's 4 symbols side by
            // side in one block, at least 2-byte aligned (`WC_FLAG_FIELD_RUNS`).
            let g = &p.g;
            let field_runs = p.mix.is_none()
                && !g.contiguous()
                && u.predictor == wcodec_format::Predictor::None
                && g.step == 1
                && g.group.is_power_of_two()
                && (4..=128).contains(&g.group)
                && c0.is_multiple_of(g.group)
                // Whole groups of 128 columns, or (an edge tile) a narrower power of two in
                // whole groups of whole rows.
                && (w.is_multiple_of(128)
                    || (w < 128 && w.is_power_of_two() && w >= g.group && (w * h).is_multiple_of(128)))
                && g.col_stride.is_multiple_of(2)
                && g.row_stride.is_multiple_of(2)
                && g.column(c0).is_some_and(|c| (dst + c).is_multiple_of(2))
                && (h - 1)
                    .checked_mul(g.row_stride)
                    .and_then(|rows| rows.checked_add((w / g.group) * g.col_stride))
                    .is_some_and(|span| span < 1 << 32);
            let (words, mix) = match p.mix {
                None => {
                    let words = p.g.contiguous()
                        && w.is_multiple_of(4)
                        && p.g.row_stride.is_multiple_of(4)
                        && (dst + c0).is_multiple_of(4);
                    (words, 0)
                }
                Some(base) => {
                    // The sign-mantissa bytes of the tile, row r at mix + r * cols: inside the
                    // staged raw plane of rows * cols bytes at `base`.
                    let cols = plane.cols;
                    let mix = base + r0 * cols + c0;
                    if (r0 + h - 1) * cols + c0 + w > plane.len() {
                        return Err(bad(format!(
                            "unit {i}: sign-mantissa bytes outside their plane"
                        )));
                    }
                    // Word stores: 4 elements (8 output bytes, 4 sign-mantissa bytes) a lane,
                    // aligned (the output and `base` are 64-byte aligned), one row per run.
                    let words = u.predictor == wcodec_format::Predictor::None
                        && w.is_multiple_of(4)
                        && cols.is_multiple_of(4)
                        && c0.is_multiple_of(4)
                        && base.is_multiple_of(4);
                    (words, mix)
                }
            };
            let flags = if plane.bias128 { FLAG_BIAS128 } else { 0 }
                | if words { FLAG_WORD_STORES } else { 0 }
                | if field_runs { FLAG_FIELD_RUNS } else { 0 }
                | if row_map.is_some() { FLAG_ROW_TABLES } else { 0 }
                | if col_map.is_some() { FLAG_COL_TABLES } else { 0 }
                | if p.mix.is_some() { FLAG_MIX_BF16 } else { 0 };
            let unit = WcUnit {
                src: p.staging_offset + u.offset,
                dst,
                row_stride: p.g.row_stride,
                first: c0,
                len: u.len,
                height: h as u32,
                width: w as u32,
                kind: UNIT_RANS,
                predictor: u.predictor as u8,
                flags,
                reserved: 0,
                row_map: match (row_map, col_map) {
                    (Some(base), _) => base + r0,
                    (None, Some((base, period))) => base + c0 % period,
                    (None, None) => 0,
                },
                col_stride: p.g.col_stride as u32,
                group: p.g.group as u16,
                step: p.g.step as u16,
                mix,
            };
            // A tile as wide as a plane whose rows lie back to back (a GGUF block head or a
            // split plane in scratch, a tensor of one-byte elements in place) is one run of
            // bytes. With whole groups, one table and no prediction its symbols in order are its
            // bytes in order, so it is decoded as rows of 128 (a group a row, a word a lane),
            // which the ring loops take (tiles of narrow planes, 18-48 bytes of GGUF block
            // scales a row, otherwise take the general loop, a byte store a symbol).
            let flat = p.mix.is_none() && p.g.contiguous() && p.g.row_stride == plane.cols;
            let unit = if flat
                && w == plane.cols
                && (h * w).is_multiple_of(128)
                && row_map.is_none()
                && col_map.is_none()
                && u.predictor == wcodec_format::Predictor::None
                && dst.is_multiple_of(4)
            {
                WcUnit {
                    row_stride: 128,
                    height: (h * w / 128) as u32,
                    width: 128,
                    flags: (flags & FLAG_BIAS128) | FLAG_WORD_STORES,
                    ..unit
                }
            } else {
                unit
            };
            pending.push((unit, Origin { unit: i, ..p.at }));
        }
        // Units the paired loop can take two at a time (variant 7: one group wide, the same
        // height) side by side: a warp takes a block's units in pairs of consecutive ones, and in
        // tile order a plane whose width is not a multiple of 256 puts an edge tile between
        // pairs (576 columns: 4 tiles of 128, then 64). The 128-wide units first, the tallest
        // first (each tile row's in tile order), then the others: SmolLM2's Q8_0 quants decoded
        // 3-5% faster on an H200 (GPU run 156). Units are independent, and each keeps its
        // origin for errors.
        pending.sort_by_key(|(u, _)| (u.width != 128, std::cmp::Reverse(u.height)));
        for (unit, origin) in pending {
            self.push_unit(unit, p.output, origin);
        }
        self.groups.push(group);
        Ok(())
    }

    /// The blocks of a launch of shape `config` on `multiprocessors`.
    pub fn ranges_for(&self, config: &LaunchConfig, multiprocessors: u32) -> Vec<WcRange> {
        if config.units_per_block > 0 {
            self.chunks(config.units_per_block)
        } else {
            self.ranges(multiprocessors.max(1) as usize * config.blocks_per_sm.max(1) as usize)
        }
    }

    /// Each plane's units in runs of at most `n`, one block each, the costliest blocks first
    /// (`block_cost`; stable, so blocks of equal cost stay in plane order). Blocks start in
    /// about this order, so a slow block (predicted tiles, whose inverse prediction is a serial
    /// wavefront) no longer starts near the end of the launch and runs on alone after every
    /// other block is done.
    pub fn chunks(&self, n: u32) -> Vec<WcRange> {
        let mut out = self.plane_chunks(n);
        out.sort_by_cached_key(|r| std::cmp::Reverse(self.block_cost(r)));
        out
    }

    /// Estimated work of a block: tile symbols, four times over for a predicted tile (its
    /// inverse prediction), a quarter of the bytes of a raw chunk.
    pub fn block_cost(&self, r: &WcRange) -> u64 {
        let units = &self.units[r.first_unit as usize..(r.first_unit + r.n_units) as usize];
        units
            .iter()
            .map(|u| {
                if u.kind == UNIT_RAW {
                    u64::from(u.len / 4)
                } else {
                    let symbols = u64::from(u.height) * u64::from(u.width);
                    if u.predictor == 0 { symbols } else { 4 * symbols }
                }
            })
            .sum()
    }

    /// How a decode launched while its compressed bytes are uploaded is cut (`Gpu::load`):
    /// blocks of up to `units_per_block` units of one plane, in plane order, and for each block,
    /// as for each CRC chunk, the staged bytes it reads up to, as a running maximum. Once the
    /// first `x` staged bytes are on the device, a launch can take the blocks and checks before
    /// `partition_point(|&end| end <= x)` of `range_ends` and `crc_ends`; once they all are
    /// (with the pad), every one: no end passes `staging_len + STAGING_PAD`.
    pub fn streamed(&self, units_per_block: u32) -> Streamed {
        let ranges = self.plane_chunks(units_per_block);
        let mut reach = 0;
        let range_ends = ranges
            .iter()
            .map(|r| {
                let units = &self.units[r.first_unit as usize..(r.first_unit + r.n_units) as usize];
                reach = units.iter().map(unit_reads_to).fold(reach, u64::max);
                reach
            })
            .collect();
        let mut reach = 0;
        let crc_ends = self
            .crc_chunks
            .iter()
            .map(|c| {
                reach = reach.max(c.src + u64::from(c.len & !CRC_COMPARE));
                reach
            })
            .collect();
        Streamed { ranges, range_ends, crc_ends }
    }

    /// Each plane's units in runs of at most `n`, in plane order.
    fn plane_chunks(&self, n: u32) -> Vec<WcRange> {
        let n = n.max(1);
        let mut out = Vec::new();
        for (gi, g) in self.groups.iter().enumerate() {
            let mut first = g.first_unit;
            let end = g.first_unit + g.n_units;
            while first < end {
                let k = n.min(end - first);
                out.push(WcRange {
                    first_unit: first,
                    n_units: k,
                    first_group: gi as u32,
                    reserved: 0,
                });
                first += k;
            }
        }
        out
    }

    /// The work of each of `n` thread blocks (fewer when there are fewer units): contiguous
    /// runs of units of about equal work (tile symbols; a raw chunk counts a quarter of its
    /// bytes), each with the group of its first unit.
    pub fn ranges(&self, n: usize) -> Vec<WcRange> {
        let weight = |u: &WcUnit| {
            if u.kind == UNIT_RAW {
                u64::from(u.len / 4).max(1)
            } else {
                u64::from(u.height) * u64::from(u.width)
            }
        };
        let total: u64 = self.units.iter().map(weight).sum();
        let n = n.clamp(1, self.units.len().max(1)) as u64;
        let mut ranges = Vec::with_capacity(n as usize);
        let (mut first, mut done) = (0usize, 0u64);
        for (i, u) in self.units.iter().enumerate() {
            done += weight(u);
            let k = ranges.len() as u64 + 1;
            if done * n >= total * k || i + 1 == self.units.len() {
                let group =
                    self.groups.partition_point(|g| g.first_unit + g.n_units <= first as u32);
                ranges.push(WcRange {
                    first_unit: first as u32,
                    n_units: (i + 1 - first) as u32,
                    first_group: group as u32,
                    reserved: 0,
                });
                first = i + 1;
            }
        }
        ranges
    }

    /// The part of this plan that decodes the tensors `which` (directory indices), over this
    /// plan's staging buffer, tables and row maps, which it does not copy (its `tables`,
    /// `maps` and `segments` are empty, and so are its CRC checks, made when the file was
    /// kept): what a file kept in device memory needs to decode a few of its tensors again
    /// (`KeptFile`). Outputs, units and merges in this plan's order; a tensor this plan does
    /// not decode is an error.
    pub fn subset(&self, which: &[usize]) -> Result<Plan, CudaError> {
        let mut wanted: Vec<usize> = which.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let is_wanted = |t: usize| wanted.binary_search(&t).is_ok();
        let mut sub = Plan { staging_len: self.staging_len, ..Plan::default() };
        let mut remap = vec![u32::MAX; self.outputs.len()];
        for (i, o) in self.outputs.iter().enumerate().filter(|(_, o)| is_wanted(o.tensor)) {
            remap[i] = sub.outputs.len() as u32;
            sub.outputs.push(*o);
        }
        if let Some(&index) = wanted.iter().find(|&&t| !sub.outputs.iter().any(|o| o.tensor == t)) {
            let count = self.outputs.iter().filter(|o| !o.scratch).count();
            return Err(CudaError::NoSuchTensor { index, count });
        }
        for g in &self.groups {
            let units = g.first_unit as usize..(g.first_unit + g.n_units) as usize;
            // A group is one plane: its units write one output.
            let output = self.unit_output.get(units.start).map(|&o| remap[o as usize]);
            if g.n_units == 0 || output == Some(u32::MAX) {
                continue;
            }
            sub.groups.push(WcGroup { first_unit: sub.units.len() as u32, ..*g });
            for i in units {
                sub.push_unit(self.units[i], remap[self.unit_output[i] as usize], self.origins[i]);
            }
        }
        sub.merges = self
            .merges
            .iter()
            .filter(|m| remap[m.tensor_output as usize] != u32::MAX)
            .map(|m| MergePiece {
                scratch_output: remap[m.scratch_output as usize],
                tensor_output: remap[m.tensor_output as usize],
                ..*m
            })
            .collect();
        Ok(sub)
    }

    /// Symbols of a coded unit, on average (0 with none).
    pub fn mean_unit_symbols(&self) -> usize {
        let coded = self.units.iter().filter(|u| u.kind == UNIT_RANS);
        let (n, symbols) = coded
            .fold((0usize, 0usize), |(n, s), u| (n + 1, s + u.height as usize * u.width as usize));
        symbols.checked_div(n).unwrap_or(0)
    }

    /// Whether units that take the paired ring loop of the paired variant
    /// (`LaunchConfig::PAIRED_VARIANT`: one byte a symbol, one group (128 columns) wide, one
    /// table in shared memory, no prediction, as `pairs` in kernels/decode.cu) and write their
    /// tensor itself hold at least half the coded symbols. Units decoded into scratch memory for
    /// a merge launch are not counted: the GGUF slice, whose planes all go there, decoded at
    /// 0.86-0.98x with the paired variant (GPU run 130).
    pub fn mostly_paired(&self) -> bool {
        let (mut coded, mut paired) = (0u64, 0u64);
        for g in &self.groups {
            let tables_shared = g.flags & (GROUP_COMPACT_TABLES | GROUP_GLOBAL_TABLES) == 0;
            let units = g.first_unit as usize..(g.first_unit + g.n_units) as usize;
            for i in units.filter(|&i| self.units.get(i).is_some_and(|u| u.kind == UNIT_RANS)) {
                let u = &self.units[i];
                let in_place = self
                    .unit_output
                    .get(i)
                    .and_then(|&o| self.outputs.get(o as usize))
                    .is_some_and(|o| !o.scratch);
                let symbols = u64::from(u.height) * u64::from(u.width);
                coded += symbols;
                let layout = u.flags
                    & (FLAG_WORD_STORES
                        | FLAG_ROW_TABLES
                        | FLAG_COL_TABLES
                        | FLAG_MIX_BF16
                        | FLAG_FIELD_RUNS);
                let pairs = tables_shared
                    && in_place
                    && u.predictor == 0
                    && u.width == 128
                    && layout == FLAG_WORD_STORES;
                paired += if pairs { symbols } else { 0 };
            }
        }
        coded > 0 && 2 * paired >= coded
    }

    /// Shared memory a block of the widest plane needs for its tables, in bytes.
    pub fn max_table_bytes(&self) -> usize {
        self.groups.iter().map(table_entries).max().unwrap_or(0) * 4
    }

    /// Copies the staged ranges of `file` into `staging` (at least `staging_len` bytes).
    pub fn fill_staging(&self, file: &[u8], staging: &mut [u8]) {
        for s in &self.segments {
            let from = &file[s.file_offset as usize..(s.file_offset + s.len) as usize];
            staging[s.staging_offset as usize..(s.staging_offset + s.len) as usize]
                .copy_from_slice(from);
        }
    }

    /// Writes bytes `start..start + out.len()` of the staging buffer into `out`: the staged
    /// ranges of `file` that fall in that window, zeros between and after them (alignment gaps
    /// and the pad). Windows laid end to end give `fill_staging` over a zeroed buffer, so the
    /// staging can go to the device in pieces, each filled while the one before is copied.
    pub fn fill_staging_window(&self, file: &[u8], start: u64, out: &mut [u8]) {
        fill_window(&self.segments, file, start, out);
    }

    /// The outputs of a plan `build` makes for the tensors `which` of `file` with `options`
    /// (its `outputs`: each tensor, and scratch for one whose planes are merged after the
    /// decode), from the directory alone: what a load can allocate while its plan is made.
    /// `None` where a tensor is missing, or where they would take more than
    /// `EARLY_OUTPUT_RATIO` times the file's bytes: device memory is taken before the plan has
    /// checked the directory only up to a few times the file's size. For every plan `build`
    /// makes, the plan's own outputs are these (tested); a load checks it too.
    pub fn outputs_of(
        file: &[u8],
        dir: &Directory,
        which: &[usize],
        options: &PlanOptions,
    ) -> Option<Vec<Output>> {
        let mut outputs = Vec::with_capacity(which.len());
        let mut total = 0u64;
        for &index in which {
            let tensor = dir.tensors.get(index)?;
            let len = tensor.source_len;
            outputs.push(Output { tensor: index, len, scratch: false });
            let merged_later =
                matches!(tensor.transform, Transform::Bf16Split | Transform::F32Split)
                    && !(options.merge_while_decoding && fuses_bf16(tensor, len));
            let scratch = merged_later && len > 0;
            if scratch {
                outputs.push(Output { tensor: index, len, scratch: true });
            }
            total = total.checked_add(len)?.checked_add(if scratch { len } else { 0 })?;
            if let Some(head) = block_head(tensor, len, options) {
                outputs.push(Output { tensor: index, len: head.scratch_len(), scratch: true });
                total = total.checked_add(head.scratch_len())?;
            }
        }
        (total <= EARLY_OUTPUT_RATIO * file.len() as u64).then_some(outputs)
    }

    /// The staging of a plan `build` makes for the tensors `which` with `options` (its
    /// `segments` and `staging_len`), from the directory alone, no unit read: what a load can
    /// start uploading while the rest of its plan is made. `None` where some plane's payload
    /// does not lie in `file` or a tensor is missing (`build` says what is wrong), and where
    /// the staged bytes would outgrow the file (tensors asked for twice, or a directory whose
    /// planes share bytes): device memory is taken before the plan has checked the directory
    /// only up to the file's size. For every plan `build` makes, the plan's own segments are
    /// these (tested); a load checks it too.
    pub fn staging_of(
        file: &[u8],
        dir: &Directory,
        which: &[usize],
        options: &PlanOptions,
    ) -> Option<Staging> {
        let mut staging = Staging::default();
        let mut stage = |p: &PlaneEntry| {
            p.payload_offset.checked_add(p.payload_len).filter(|&end| end <= file.len() as u64)?;
            let staging_offset = staging.len.next_multiple_of(STAGING_ALIGN);
            let segment =
                Segment { file_offset: p.payload_offset, len: p.payload_len, staging_offset };
            staging.segments.push(segment);
            staging.len = staging_offset + p.payload_len;
            Some(())
        };
        for &index in which {
            let tensor = dir.tensors.get(index)?;
            if options.merge_while_decoding && fuses_bf16(tensor, tensor.source_len) {
                // As `add_tensor`: the raw sign-mantissa plane, then the exponent plane.
                stage(&tensor.planes[1])?;
                stage(&tensor.planes[0])?;
                continue;
            }
            for plane in tensor.planes.iter().filter(|p| !p.is_empty()) {
                stage(plane)?;
            }
        }
        (staging.len <= file.len() as u64).then_some(staging)
    }

    /// Compressed bytes the launch reads (the staged payloads, without alignment padding).
    pub fn compressed_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Bytes the launch writes into the decoded tensors.
    pub fn output_bytes(&self) -> u64 {
        self.outputs.iter().filter(|o| !o.scratch).map(|o| o.len).sum()
    }

    /// Gives the planes whose full tables take more than `above` bytes compact tables
    /// (`compact_table`), in place: their groups are flagged and point at the new tables;
    /// groups that share tables (copies of a plane, `replicate`) share the compact ones.
    pub fn compact_tables(&mut self, above: usize) {
        // First where each plane's tables go (planes that share tables share the new ones),
        // then the tables, on all cores.
        let mut moved = std::collections::HashMap::new();
        let mut moves = Vec::new(); // (old offset, old size, compact, new size)
        let mut len = 0;
        for g in &mut self.groups {
            let full = table_entries(g);
            let at = g.table as usize;
            let compact = compactable(g, above);
            // Keyed by offset and size: a raw plane's group has no tables, at the offset where
            // the next plane's tables start.
            let new_at = *moved.entry((at, full)).or_insert_with(|| {
                let size = if compact {
                    (full >> g.prob_bits) * compact_table_words(g.prob_bits)
                } else {
                    full
                };
                moves.push((at, full, compact.then_some(g.prob_bits), size));
                len += size;
                len - size
            });
            g.table = new_at as u32;
            if compact {
                g.flags |= GROUP_COMPACT_TABLES;
            }
        }
        let mut tables = vec![0u32; len];
        let mut rest = &mut tables[..];
        let mut jobs = Vec::with_capacity(moves.len());
        for (at, full, compact, size) in moves {
            let (out, tail) = std::mem::take(&mut rest).split_at_mut(size);
            jobs.push((out, &self.tables[at..at + full], compact));
            rest = tail;
        }
        jobs.into_par_iter().for_each(|(out, words, compact)| match compact {
            Some(bits) => {
                let (n, words_out) = (1 << bits, compact_table_words(bits));
                for (o, w) in out.chunks_mut(words_out).zip(words.chunks(n)) {
                    write_compact_table(w, o);
                }
            }
            None => out.copy_from_slice(words),
        });
        self.tables = tables;
    }

    /// Whether compact tables pay for this launch on a GPU of `multiprocessors`: it has planes
    /// of more than `COMPACT_TABLES_ABOVE` bytes of full tables, and with full tables (one
    /// block a multiprocessor, `LaunchConfig::choose`) some block's range of units would cross
    /// from one coded plane into another: the block then takes its planes one after the other,
    /// each waiting for its slowest unit and reloading tables. Where no range crosses (one large
    /// plane: a layer) full tables keep every unit decoding at once with one lookup a step.
    /// Measured on H100 (GPU runs 32-36): MiniLM int8 with the CPU defaults, ~45 units a
    /// multiprocessor in planes of ~6, 120 -> 322 GB/s with compact tables; MiniLM BF16 at 256
    /// MiB a launch (planes of 44 units, ~22 a multiprocessor) 326 -> 504; one 4096x4096 layer
    /// of 256 or 1,024 units (one plane) 13-28% slower with them, as was the MiniLM embedding
    /// alone (240 units and a raw plane for its scale: 25.9 -> 20.9 GB/s).
    /// Plans with column classes keep full tables: their planes' 10-bit tables (up to 20 KiB
    /// for Q4_1's five classes) leave the ring variant blocks enough, and each compact lookup
    /// is two dependent loads (GPU run 163, SmolLM2's GGUF layers: 878 GB/s with full tables
    /// against 780 with compact ones; 796-806 in runs 165-167, where this rule did not exist).
    pub fn compact_tables_pay(&self, multiprocessors: u32) -> bool {
        if self.has_column_classes()
            || !self.groups.iter().any(|g| compactable(g, COMPACT_TABLES_ABOVE))
        {
            return false;
        }
        // A range crossing into a raw plane (a copy, no tables) costs little.
        self.ranges(multiprocessors.max(1) as usize).iter().any(|r| {
            let end = r.first_unit + r.n_units;
            let coded = self.groups[r.first_group as usize..]
                .iter()
                .take_while(|g| g.first_unit < end)
                .filter(|g| g.prob_bits > 0 && g.n_units > 0)
                .count();
            coded > 1
        })
    }

    /// Whether any unit has column classes (the launch needs `LaunchConfig::COLUMN_VARIANT`).
    pub fn has_column_classes(&self) -> bool {
        self.units.iter().any(|u| u.kind == UNIT_RANS && u.flags & FLAG_COL_TABLES != 0)
    }

    /// Whether any plane has compact tables (the launch needs the twin kernels that read them).
    pub fn has_compact_tables(&self) -> bool {
        self.groups.iter().any(|g| g.flags & GROUP_COMPACT_TABLES != 0)
    }

    /// The same work `copies` times over, into separate outputs from separate staged copies of
    /// the compressed bytes: how a benchmark fills the card from a small file (its CRC checks
    /// are not repeated: a benchmark checks on the host, once, `BenchOptions`).
    pub fn replicate(&self, copies: usize) -> Plan {
        let stride = self.staging_len.next_multiple_of(STAGING_ALIGN);
        let (n_out, n_units) = (self.outputs.len() as u32, self.units.len() as u32);
        let mut out =
            Plan { tables: self.tables.clone(), maps: self.maps.clone(), ..Plan::default() };
        for k in 0..copies as u64 {
            let k32 = k as u32;
            out.outputs.extend_from_slice(&self.outputs);
            out.units.extend(self.units.iter().map(|u| WcUnit {
                src: u.src + k * stride,
                mix: if u.flags & FLAG_MIX_BF16 != 0 { u.mix + k * stride } else { 0 },
                ..*u
            }));
            out.unit_output.extend(self.unit_output.iter().map(|&o| o + k32 * n_out));
            out.origins.extend_from_slice(&self.origins);
            out.groups.extend(
                self.groups
                    .iter()
                    .map(|g| WcGroup { first_unit: g.first_unit + k32 * n_units, ..*g }),
            );
            out.segments.extend(
                self.segments
                    .iter()
                    .map(|s| Segment { staging_offset: s.staging_offset + k * stride, ..*s }),
            );
            out.merges.extend(self.merges.iter().map(|m| MergePiece {
                scratch_output: m.scratch_output + k32 * n_out,
                tensor_output: m.tensor_output + k32 * n_out,
                ..*m
            }));
        }
        out.staging_len = stride * copies as u64;
        out
    }

    /// Whether checking the GPU's CRCs needs every chunk's CRC read back even when no chunk
    /// flagged a mismatch: a raw plane of several chunks is checked by combining them.
    pub fn crc_planes_to_combine(&self) -> bool {
        self.crc_planes.iter().any(|p| p.chunks > 1)
    }

    /// Checks the CRCs the GPU computed for `crc_chunks` (one a chunk): a unit's against its
    /// stored CRC, a raw plane's chunks combined against the plane's; the first failure in plan
    /// order is the error.
    pub fn verify_crcs(&self, dir: &Directory, computed: &[u32]) -> Result<(), CudaError> {
        if computed.len() != self.crc_chunks.len() {
            return Err(CudaError::Invalid {
                tensor: String::new(),
                detail: format!("{} CRCs for {} chunks", computed.len(), self.crc_chunks.len()),
            });
        }
        let mut planes = self.crc_planes.iter().peekable();
        let mut k = 0;
        while k < computed.len() {
            let (origin, stored, crc, raw) = match planes.next_if(|p| p.first_chunk as usize == k) {
                Some(p) => {
                    let parts = &computed[k..][..p.chunks as usize];
                    k += parts.len();
                    let crc = wcodec_format::checksum::combine_parts(parts, crc::CHUNK, p.len);
                    (p.at, p.stored, crc, true)
                }
                _ => {
                    let c = &self.crc_chunks[k];
                    k += 1;
                    if computed[k - 1] == c.stored {
                        continue;
                    }
                    (self.unit_at(c.src), c.stored, computed[k - 1], false)
                }
            };
            if crc != stored {
                let name = &dir.tensors[origin.tensor].name;
                let what = if raw {
                    format!("tensor {name:?} raw plane {}", origin.plane)
                } else {
                    format!("tensor {name:?} plane {} unit {}", origin.plane, origin.unit)
                };
                return Err(CudaError::Checksum { what, stored, computed: crc });
            }
        }
        Ok(())
    }

    /// Where the coded unit staged at `src` comes from (for an error message).
    fn unit_at(&self, src: u64) -> Origin {
        let i = self.units.iter().position(|u| u.kind == UNIT_RANS && u.src == src);
        i.map_or(Origin { tensor: 0, plane: 0, unit: 0 }, |i| self.origins[i])
    }

    /// Turns the kernel's status words (one per unit) into the first error they report.
    pub fn check_status(&self, dir: &Directory, status: &[u32]) -> Result<(), CudaError> {
        let Some(i) = status.iter().position(|&s| s != 0) else { return Ok(()) };
        let origin = self.origins[i];
        let mut reasons = Vec::new();
        for (bit, text) in [
            (ERR_BAD_INITIAL_STATE, "a lane starts below 2^16"),
            (ERR_OVERRUN, "stream exhausted"),
            (ERR_WORDS_LEFT, "words left after the last symbol"),
            (ERR_NOT_FINAL, "did not end in its final states"),
            (ERR_TABLES, "compact tables outside shared memory"),
            (ERR_VARIANT, "column classes in a kernel variant without them"),
        ] {
            if status[i] & bit != 0 {
                reasons.push(text);
            }
        }
        Err(CudaError::Corrupt {
            tensor: dir.tensors.get(origin.tensor).map(|t| t.name.clone()).unwrap_or_default(),
            plane: origin.plane,
            unit: origin.unit,
            reason: reasons.join(", "),
        })
    }
}

/// Words (u32) of a group's tables (0 for a raw plane): a full table has an entry a slot, a
/// compact one 256 records and a byte a slot.
pub fn table_entries(g: &WcGroup) -> usize {
    if g.prob_bits == 0 {
        0
    } else if g.flags & GROUP_COMPACT_TABLES != 0 {
        usize::from(g.n_tables) * compact_table_words(g.prob_bits)
    } else {
        usize::from(g.n_tables) << g.prob_bits
    }
}

/// Whether a group has full tables of more than `above` bytes (a coded plane that
/// `Plan::compact_tables(above)` would compact).
fn compactable(g: &WcGroup, above: usize) -> bool {
    g.flags & GROUP_COMPACT_TABLES == 0 && table_entries(g) * 4 > above
}

/// Words of one compact table of `2^prob_bits` slots (a multiple of 4: `prob_bits >= 8`).
pub fn compact_table_words(prob_bits: u8) -> usize {
    256 + (1 << prob_bits) / 4
}

/// The compact form of a full table (`entries`: `symbol | (freq - 1) << 8 | (slot - cum) <<
/// 20`, one a slot, as `DecodeTable` builds them): 256 records `symbol | (freq - 1) << 8 |
/// (-cum) << 20` (wrapping; 0 for an absent symbol), then the slots' symbols, four to a word
/// (little-endian). Slot `s` of symbol `x` gives back its entry as `record[x] + (s << 20)`
/// (wrapping): `(s - cum) << 20` is all that differs between the slots of a symbol.
pub fn compact_table(entries: &[u32]) -> Vec<u32> {
    let mut out = vec![0; 256 + entries.len().div_ceil(4)];
    write_compact_table(entries, &mut out);
    out
}

/// `compact_table` written into `out` (`256 + entries.len() / 4` words, zeroed).
fn write_compact_table(entries: &[u32], out: &mut [u32]) {
    let (records, symbols) = out.split_at_mut(256);
    for (slot, &e) in entries.iter().enumerate() {
        records[(e & 0xff) as usize] = e.wrapping_sub((slot as u32) << 20);
    }
    for (w, c) in symbols.iter_mut().zip(entries.chunks(4)) {
        *w = c.iter().rev().fold(0u32, |w, &e| (w << 8) | (e & 0xff));
    }
}

/// A plane's class maps (`PlaneEncoding::Rans`): a table a row, or a period of tables a
/// column, or neither (one table).
#[derive(Clone, Copy)]
struct Classes<'a> {
    rows: &'a [u8],
    cols: &'a [u8],
}

/// What `add_rans` needs to know about the plane it adds.
struct RansPlane<'a> {
    tensor: &'a TensorEntry,
    plane: &'a PlaneEntry,
    g: Geometry,
    staging_offset: u64,
    output: u32,
    len: u64,
    at: Origin,
    /// bf16_split merged as decoded: the staging offset of the raw sign-mantissa plane.
    mix: Option<u64>,
}
