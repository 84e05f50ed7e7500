/* Structures shared by the CUDA kernels (the .cu files of kernels/) and the Rust host code
 * (crates/cuda/src/abi.rs mirrors them with #[repr(C)]; its tests assert the same sizes and
 * offsets that the static_asserts below pin here). Plain C, fixed-width fields, no padding.
 *
 * One launch decodes many units of many planes and tensors: the host lays out
 *   - the compressed bytes of the wanted planes, copied to the device once (`src`),
 *   - one WcUnit per rANS unit (or per chunk of a raw plane), plane after plane,
 *   - one WcGroup per plane: its units and its decode tables,
 *   - one WcRange per thread block: a run of units of about equal work, which may span planes;
 *     the block loads each plane's tables into shared memory once and its warps take the
 *     plane's units one after another from a shared counter,
 *   - the decode tables, packed u32 entries `symbol | (freq - 1) << 8 | (slot - cum) << 20`
 *     (or compact, WC_GROUP_COMPACT_TABLES),
 *   - the class maps of planes with several tables: a byte a plane row (row classes), or a
 *     period of column classes and a tile's width more (column classes),
 * and the kernel writes every byte straight to its final place in the output tensors. */
#ifndef WCODEC_KERNELS_H
#define WCODEC_KERNELS_H

#include <stdint.h>

/* Fixed by the format (docs/FORMAT.md, "rANS units"). */
#define WC_LANES 32
#define WC_STATES_BYTES 128
#define WC_STATE_LOW 65536u
#define WC_MAX_PROB_BITS 12
/* Most warps in a thread block (the launch picks 1..=32; each warp decodes one unit at a time). */
#define WC_MAX_WARPS 32
/* Compiled variants of the kernel (WcLaunch.variant): 0 keeps the stream in a register window,
 * 1 and 2 load a candidate word every step; 0 and 1 take blocks of up to 32 warps, 2 of up to
 * 16 warps with fewer registers per thread. 3 (up to 32 warps), 4 (up to 12 warps, 40
 * registers) and 5 (up to 8 warps, 32 registers) are 1 with a fast path for units whose groups are whole row spans (word stores,
 * width % 128 == 0): no per-step bound check and no per-lane row arithmetic. 6 (up to 12
 * warps, 40 registers) is 4 with each warp's stream staged in a shared-memory ring (2 KiB a
 * warp, after the tables) by cp.async. 7 (up to 12 warps, 56 registers) is 6 with two units a
 * warp where they pair. 8 is 6 with the loops of column classes (WC_FLAG_COL_TABLES: GGUF
 * blocks coded whole), which the others refuse (WC_ERR_VARIANT). */
#define WC_VARIANTS 9
/* WcLaunch.variant | WC_VARIANT_COMPACT: the variant's twin, which also reads compact tables
 * (WC_GROUP_COMPACT_TABLES); the host picks it when a launch has any. */
#define WC_VARIANT_COMPACT 256u
/* Bytes of padding the host leaves after the staged payloads: the fast path (variants 3 and 4)
 * reads candidate words and prefetches up to ~1 KiB past a unit's end without a bound check,
 * and the copies into a warp's stream ring (variant 6) read up to the ring's size (2 KiB) past
 * it. */
#define WC_STAGING_PAD 2048

/* WcUnit.kind */
#define WC_UNIT_RANS 0
#define WC_UNIT_RAW 1

/* WcUnit.flags */
#define WC_FLAG_BIAS128 1u    /* bytes were XORed with 0x80 before prediction */
#define WC_FLAG_WORD_STORES 2u /* rANS: columns contiguous (group 1, col_stride 1), width % 4 == 0, dst and row_stride 4-aligned */
#define WC_FLAG_CONTIGUOUS 4u /* raw: columns contiguous and row_stride == width */
#define WC_FLAG_ROW_TABLES 8u /* rANS: each tile row's table is maps[row_map + row] */
/* rANS: the exponent plane of a bf16_split tensor whose sign-mantissa plane is stored raw,
 * merged as it is decoded: the unit writes whole BF16 elements (see WcUnit.mix). */
#define WC_FLAG_MIX_BF16 16u
/* rANS: runs of 4 columns in blocks (GGUF block fields): group a power of two in 4..=128,
 * step 1, column c0 a multiple of group, width % 128 == 0 or a power of two from group to 64
 * with width * height % 128 == 0, no prediction, one-byte symbols,
 * every run 2-byte aligned (dst, row_stride and col_stride even); 4-aligned where col_stride and
 * the tile's first byte are too. A lane's 4 symbols then lie in one block, side by side. */
#define WC_FLAG_FIELD_RUNS 32u
/* rANS: column classes (GGUF blocks coded whole): tile column c's table is
 * maps[row_map + c]. */
#define WC_FLAG_COL_TABLES 64u /* (decoded by variant 8 only: WC_ERR_VARIANT elsewhere) */

/* WcMerge.kind: how planes merge into elements (docs/FORMAT.md, "Transforms"). */
#define WC_MERGE_BF16_SPLIT 1u /* exponent, sign-mantissa -> u16 */
#define WC_MERGE_F32_SPLIT 2u  /* exponent, sign+top mantissa, middle, low -> u32 */
/* GGUF block heads: `fields` one-byte planes (1..=4) -> bytes 0..fields - 1 of each block of
 * `elem_size` bytes (the scales' bytes, which decode as narrow planes into scratch first). */
#define WC_MERGE_BLOCK_HEAD 3u
/* GGUF blocks of `fields` one-byte head fields then one tail field (Q4_0, Q4_1, Q8_0, Q8_1):
 * whole blocks of `elem_size` bytes from the head planes and the tail plane at `tail` (the
 * block's `elem_size - fields` bytes at `tail + i * (elem_size - fields)`), every plane
 * decoded into scratch first, so that the output is written in whole 32-byte sectors. */
#define WC_MERGE_BLOCKS 4u

/* WcGroup.flags */
#define WC_GROUP_GLOBAL_TABLES 1u /* the tables do not fit in shared memory: read them in place */
/* The tables are compact: per table, 256 u32 records `symbol | (freq - 1) << 8 | (-cum) << 20`
 * (mod 2^32), then one symbol byte per slot; a slot's entry is then record[symbol[slot]] +
 * (slot << 20), the packed entry of a full table. 5 KiB a 12-bit table instead of 16 KiB: planes
 * of several tables leave room for more blocks a multiprocessor. Always in shared memory. */
#define WC_GROUP_COMPACT_TABLES 2u

/* Status bits the kernel writes per unit (0 = decoded and verified). */
#define WC_ERR_BAD_INITIAL_STATE 1u /* a lane starts below 2^16 */
#define WC_ERR_OVERRUN 2u           /* the stream ran out of words */
#define WC_ERR_WORDS_LEFT 4u        /* words remain after the last symbol */
#define WC_ERR_NOT_FINAL 8u         /* a lane did not end in state 2^16 */
#define WC_ERR_TABLES 16u           /* compact tables not in shared memory (a host error) */
#define WC_ERR_VARIANT 32u          /* column classes in a variant without them (a host error) */

/* One unit of work for one warp (72 bytes).
 *
 * Byte (r, c) of the unit's plane goes to
 *   dst + r * row_stride + (c / group) * col_stride + (c % group) * step
 * with r counted from the tile's first row (rANS) or the plane's (raw) and c from the plane's
 * first column (a tile's byte (r, j) has c = first + j): a plane of whole elements has group 1
 * (col_stride = the element's size), a field of a GGUF block type has group = its bytes per
 * block (col_stride = the block's size). */
typedef struct WcUnit {
    /* Offset of the unit's bytes in the compressed device buffer. */
    uint64_t src;
    /* Device address of the plane's byte (r0, 0), r0 the tile's first row (rANS), or of its
     * byte (0, 0) (raw). */
    uint64_t dst;
    /* Output bytes between two rows of the plane. */
    uint64_t row_stride;
    /* Raw: row-major index in the plane of the first byte this unit copies. rANS: the tile's
     * first column. */
    uint64_t first;
    /* rANS: bytes of the unit (>= 128, even). Raw: bytes to copy. */
    uint32_t len;
    /* rANS: tile rows. Raw: 0. */
    uint32_t height;
    /* rANS: tile columns. Raw: plane columns. */
    uint32_t width;
    uint8_t kind;      /* WC_UNIT_* */
    uint8_t predictor; /* 0 none, 1 left, 2 top, 3 avg, 4 paeth */
    uint8_t flags;     /* WC_FLAG_* */
    uint8_t reserved;
    /* With WC_FLAG_ROW_TABLES: index in `maps` of the table of the tile's first row; with
     * WC_FLAG_COL_TABLES, of that of its first column. */
    uint64_t row_map;
    uint32_t col_stride;
    uint16_t group;
    uint16_t step;
    /* With WC_FLAG_MIX_BF16: offset in `src` of the sign-mantissa byte of the tile's element
     * (0, 0). Otherwise 0. */
    uint64_t mix;
} WcUnit;

/* A piece of a merge (the second launch): `n` elements of a tensor whose planes were decoded
 * back to back at `src` (plane j at src + j * plane_len) merged into `dst` (40 bytes). */
typedef struct WcMerge {
    uint64_t src;
    uint64_t dst;
    /* Elements of this piece; its planes' bytes are src + j * plane_len + [0, n). */
    uint32_t n;
    uint32_t kind; /* WC_MERGE_* */
    uint64_t plane_len;
    /* Bytes an element (a block for WC_MERGE_BLOCK_HEAD and WC_MERGE_BLOCKS), and the planes
     * merged (the head planes for those two). */
    uint32_t elem_size;
    uint32_t fields;
    /* WC_MERGE_BLOCKS: the tail bytes of the piece's first block. */
    uint64_t tail;
} WcMerge;

/* The units of one plane, `n_units` from `first_unit`, whose tables (all of the plane's,
 * `n_tables << prob_bits` entries from `table`, or n_tables * (256 + 2^prob_bits / 4) words when
 * compact) a block loads before taking them (16 bytes). */
typedef struct WcGroup {
    uint32_t first_unit;
    uint32_t n_units;
    /* Index in `tables` of the plane's first entry (a multiple of 4). */
    uint32_t table;
    /* 8..=12; 0 for a raw plane, which loads no table. */
    uint8_t prob_bits;
    uint8_t n_tables;
    uint8_t flags; /* WC_GROUP_* */
    uint8_t reserved;
} WcGroup;

/* The work of one thread block: units [first_unit, first_unit + n_units), the first of them in
 * group `first_group` (16 bytes). */
typedef struct WcRange {
    uint32_t first_unit;
    uint32_t n_units;
    uint32_t first_group;
    uint32_t reserved;
} WcRange;

/* Arguments of one launch (88 bytes), passed by value to the kernel. Addresses are device
 * addresses as integers so that the Rust mirror needs no pointer types. */
typedef struct WcLaunch {
    uint64_t src;     /* const uint8_t*: compressed bytes */
    uint64_t src_len; /* bytes at `src` (informational; the host checked every unit against it) */
    uint64_t units;   /* const WcUnit* */
    uint64_t groups;  /* const WcGroup* */
    uint64_t ranges;  /* const WcRange*: one per thread block */
    uint64_t tables;  /* const uint32_t*: packed decode-table entries */
    uint64_t maps;    /* const uint8_t*: the row-class map of every plane with several tables */
    uint64_t status;  /* uint32_t*: one status word per unit */
    uint32_t n_ranges;
    uint32_t n_units;
    uint32_t warps_per_block; /* 1..=WC_MAX_WARPS, at most the variant's block size */
    uint32_t smem_entries;    /* table entries of dynamic shared memory per block */
    uint32_t variant;         /* < WC_VARIANTS, with WC_VARIANT_COMPACT for the twin */
    uint32_t n_groups;
} WcLaunch;

/* One chunk of the staged bytes whose CRC-32C the CRC kernel computes (16 bytes): a unit, or
 * up to 64 KiB of a raw plane. `src` is 4-aligned. */
typedef struct WcCrcChunk {
    uint64_t src; /* offset in the compressed device buffer */
    /* Bytes, with WC_CRC_COMPARE for a unit: the chunk is a whole check, whose CRC the kernel
     * compares with `stored` (a raw plane's chunks are combined on the host). */
    uint32_t len;
    uint32_t stored;
} WcCrcChunk;
#define WC_CRC_COMPARE 0x80000000u

/* Words of the CRC kernel's tables (crates/cuda/src/crc.rs, `device_tables`): slice-by-4
 * tables, the tables of x^1024, the five factors of the lanes' combining rounds, padding. */
#define WC_CRC_TABLE_WORDS 2056

/* What the compiler gave the decode kernel, for `cargo xtask kernels` and reports. */
typedef struct WcKernelInfo {
    int32_t num_regs;
    int32_t shared_bytes;
    int32_t local_bytes;
    int32_t max_threads_per_block;
    int32_t ptx_version;
    int32_t binary_version;
    int32_t max_dynamic_shared; /* opt-in shared memory per block on this device */
    int32_t multiprocessors;
} WcKernelInfo;

#ifdef __cplusplus
static_assert(sizeof(WcUnit) == 72, "WcUnit layout");
static_assert(__builtin_offsetof(WcUnit, mix) == 64, "WcUnit layout");
static_assert(__builtin_offsetof(WcUnit, len) == 32, "WcUnit layout");
static_assert(__builtin_offsetof(WcUnit, kind) == 44, "WcUnit layout");
static_assert(__builtin_offsetof(WcUnit, flags) == 46, "WcUnit layout");
static_assert(__builtin_offsetof(WcUnit, row_map) == 48, "WcUnit layout");
static_assert(__builtin_offsetof(WcUnit, col_stride) == 56, "WcUnit layout");
static_assert(__builtin_offsetof(WcUnit, step) == 62, "WcUnit layout");
static_assert(sizeof(WcMerge) == 48, "WcMerge layout");
static_assert(__builtin_offsetof(WcMerge, tail) == 40, "WcMerge layout");
static_assert(__builtin_offsetof(WcMerge, elem_size) == 32, "WcMerge layout");
static_assert(sizeof(WcGroup) == 16, "WcGroup layout");
static_assert(__builtin_offsetof(WcGroup, n_tables) == 13, "WcGroup layout");
static_assert(sizeof(WcRange) == 16, "WcRange layout");
static_assert(sizeof(WcLaunch) == 88, "WcLaunch layout");
static_assert(__builtin_offsetof(WcLaunch, n_ranges) == 64, "WcLaunch layout");
static_assert(__builtin_offsetof(WcLaunch, smem_entries) == 76, "WcLaunch layout");
static_assert(__builtin_offsetof(WcLaunch, n_groups) == 84, "WcLaunch layout");
static_assert(sizeof(WcKernelInfo) == 32, "WcKernelInfo layout");
static_assert(sizeof(WcCrcChunk) == 16, "WcCrcChunk layout");
extern "C" {
#endif

/* Lets kernel variant `variant` take `smem_entries` table entries of dynamic shared memory per
 * block (once per size, before launches that need it); returns a cudaError_t. */
int wc_decode_prepare(uint32_t variant, uint32_t smem_entries);
/* Enqueues the decode kernel on `stream` (a cudaStream_t / CUstream); returns a cudaError_t.
 * Only host-side checks of the arguments happen here: no other CUDA call, so that a timed
 * launch is just the launch. */
int wc_decode_launch(const WcLaunch *launch, void *stream);
/* Enqueues the merge kernel over `n` pieces at `pieces` (a device array of WcMerge). */
int wc_merge_launch(uint64_t pieces, uint32_t n, void *stream);
/* Enqueues the CRC kernel on `stream`: the CRC-32C of each of the `n` chunks at `chunks` (a
 * device array of WcCrcChunk) over the bytes at `src`, into `out` (n words), on `blocks` blocks,
 * with the tables at `tables` (WC_CRC_TABLE_WORDS words); a chunk with WC_CRC_COMPARE whose CRC
 * is not its `stored` sets the word at `mismatch` to 1. Returns a cudaError_t. */
int wc_crc32c_launch(uint64_t chunks, uint32_t n, uint64_t src, uint64_t tables, uint64_t out,
                     uint64_t mismatch, uint32_t blocks, void *stream);
/* Fills `info` for kernel variant `variant` on the current device; returns a cudaError_t. */
int wc_decode_kernel_info(uint32_t variant, WcKernelInfo *info);
/* The CUDA runtime's text for a cudaError_t (a static string). */
const char *wc_error_string(int code);

#ifdef __cplusplus
}
#endif

#endif /* WCODEC_KERNELS_H */
