// The wcodec decode kernel: rANS units straight into their final place in device memory.
//
// One launch covers every unit of every plane of every tensor asked for. A thread block takes a
// range of units (WcRange), loads each plane's decode tables into shared memory once, and each
// of its warps decodes one unit at a time:
//   - 32 lanes = the 32 interleaved rANS states of the unit (docs/FORMAT.md, "rANS units");
//     lane i owns symbols 128g + 4i .. 128g + 4i + 3 of group g;
//   - each lane looks its slot up in the table of the plane row its symbol lies in (the plane's
//     row-class map; one table for every row when the plane has one); planes of several tables
//     (the CPU encoder's default) have compact tables, a symbol byte a slot and a record a
//     symbol (5 KiB a 12-bit table instead of 16), read by twin kernels (WC_VARIANT_COMPACT);
//   - renormalisation words are read in lane order: a ballot says which lanes need one, and
//     lane i takes the word at `pos + popc(ballot & lanemask_lt)`: from the warp's stream ring
//     in shared memory (variant 6), or loaded as the candidate `pos + lane` before the table
//     lookup (so the load overlaps it) and handed over by a shuffle (the other variants);
//   - after 4 steps a lane holds 4 consecutive output bytes and stores them as one 32-bit word
//     (a warp writes 128 contiguous bytes) where the tile geometry allows, else byte stores;
//   - predicted tiles (LEFT, TOP, AVG, PAETH) first land as residuals, then one in-warp
//     wavefront pass rebuilds them in place (lane l takes row 32k + l, one column behind lane
//     l - 1, whose last two values arrive by shuffle as top and top-left).
// Raw (stored) planes are copied by the same launch, cut by the host into chunks, except the
// sign-mantissa plane of a bf16_split tensor whose exponent plane is coded: the exponent units
// (WC_FLAG_MIX_BF16) read its bytes as they go and write whole BF16 elements (a lane's 4
// symbols and 4 coalesced sign-mantissa bytes become 8 output bytes; a warp writes 256
// contiguous bytes), so that plane is never copied on its own and no merge launch follows.
// Planes that the host sends to scratch memory (other split planes, the head bytes of GGUF
// blocks) are decoded there like any plane, and the merge launch (merge.cu) puts them in place.
//
// The kernel trusts only what the host checked (crates/cuda/src/plan.rs): every unit's source
// range lies inside `src`, every output byte it can write lies inside its tensor, every table
// and map entry it can index lies inside `tables` and `maps`. It checks the stream itself:
// reads past the unit's last word return 0 and are reported, as are units that do not end in
// their final states.

#include <cuda_runtime.h>
#include <stdint.h>

#include "wcodec_kernels.h"

namespace {

constexpr uint32_t kFull = 0xffffffffu;
constexpr uint32_t kGroup = 4 * WC_LANES; // symbols per group
// How far ahead of the read position a warp asks L2 (1 KiB) and L1 (3 lines) for its stream,
// in 16-bit words: a group consumes about a line, so the per-step word loads hit L1.
constexpr uint32_t kPrefetchWords = 512;
constexpr uint32_t kPrefetchL1Words = 192;

extern __shared__ __align__(16) uint32_t smem_tables[];

__device__ __forceinline__ uint32_t lanemask_lt() {
    uint32_t m;
    asm("mov.u32 %0, %%lanemask_lt;" : "=r"(m));
    return m;
}

__device__ __forceinline__ void prefetch_l2(const void *p) {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

__device__ __forceinline__ void prefetch_l1(const void *p) {
    asm volatile("prefetch.global.L1 [%0];" ::"l"(p));
}

// A BF16 element from its exponent byte and its sign-mantissa byte (docs/FORMAT.md,
// bf16_split): sign << 15 | exponent << 7 | mantissa.
__device__ __forceinline__ uint32_t merge_bf16(uint32_t e, uint32_t sm) {
    return ((sm & 0x80u) << 8) | (e << 7) | (sm & 0x7fu);
}

// Four BF16 elements (8 bytes, little-endian) from four exponents `e` and four sign-mantissa
// bytes `sm`, byte j of each being element j's: per 16-bit half, [sm, sm] masked to
// 0x807f is the sign at bit 15 and the mantissa at bits 0-6; the exponent goes to bits 7-14.
__device__ __forceinline__ uint2 merge_bf16x4(uint32_t e, uint32_t sm) {
    uint2 v;
    v.x = (__byte_perm(sm, 0u, 0x1100u) & 0x807f807fu) | (__byte_perm(e, 0u, 0x4140u) << 7);
    v.y = (__byte_perm(sm, 0u, 0x3322u) & 0x807f807fu) | (__byte_perm(e, 0u, 0x4342u) << 7);
    return v;
}

// The read side of one warp's unit, in two flavours with one interface (`prepare` before a
// step's table lookup, `merge` once the ballot says which lanes renormalise, `advance` after).
//
// StreamWindow holds the stream in registers as a window of 32 word pairs. Pair q (words 2q
// and 2q + 1) lives in lane q % 32: in `a` while q is in the window [first, first + 32), and the
// same lane's `b` and `c` already hold (or are loading) pairs q + 32 and q + 64. A lane's word
// is thus one shuffle away, and the loads that refill the window are issued two slides (about
// 64 words) before any shuffle reads them, so no global load sits in the dependency chain.
//
// StreamLoad has every lane load the candidate word `pos + lane` at the start of each step,
// before the table lookup it does not depend on; a lane that needs a word takes the candidate
// of the lane whose index is its rank among the lanes that need one. Fewer registers, one
// L1-cached load per step.
//
// Both read words past the stream's end as 0 (the status check reports the overrun).
struct StreamBase {
    const uint16_t *words;
    uint32_t n_words;
    uint32_t mask;
    uint32_t prob_bits;

    __device__ __forceinline__ uint32_t word_at(uint32_t w) const {
        return w < n_words ? static_cast<uint32_t>(__ldg(words + w)) : 0u;
    }
};

struct StreamWindow : StreamBase {
    uint32_t first; // first pair of the window (a multiple of 16)
    uint32_t rel;   // words consumed past the window's start; < 32 between steps
    uint32_t a, b, c;

    __device__ __forceinline__ uint32_t load_pair(uint32_t q) const {
        const uint32_t w = 2 * q;
        uint32_t v = 0;
        if (w + 1 < n_words) {
            v = __ldg(reinterpret_cast<const uint32_t *>(words) + q);
        } else if (w < n_words) {
            v = __ldg(words + w);
        }
        return v;
    }

    __device__ __forceinline__ void init(uint32_t lane) {
        first = 0;
        rel = 0;
        a = load_pair(lane);
        b = load_pair(lane + 32);
        c = load_pair(lane + 64);
    }

    /// Words consumed so far.
    __device__ __forceinline__ uint32_t pos() const { return 2 * first + rel; }

    __device__ __forceinline__ void prepare(uint32_t) {}

    // (xn << 16) | this lane's word: word o = rel + k of the window, half o % 2 of pair
    // first + o / 2, which lane (first + o / 2) % 32 holds in `a` (the shuffle takes the lane
    // index modulo 32); the halves are picked by one byte permutation.
    __device__ __forceinline__ uint32_t merge(uint32_t xn, uint32_t k) const {
        const uint32_t o = rel + k;
        const uint32_t pair = __shfl_sync(kFull, a, first + o / 2);
        return __byte_perm(xn, pair, 0x1054u + (o & 1u) * 0x22u);
    }

    __device__ __forceinline__ void advance(uint32_t m, uint32_t lane) {
        rel += __popc(m);
        if (rel >= 32) slide(lane);
    }

    // Slides the window by 16 pairs: the 16 lanes holding its oldest pairs move on to the
    // pairs 32 further, and start loading the ones 96 further. Warp-uniform, branch-free.
    __device__ __forceinline__ void slide(uint32_t lane) {
        const uint32_t age = (lane - first) & 31u; // this lane's pair is first + age
        const bool old = age < 16;
        const uint32_t fresh = old ? load_pair(first + age + 96) : c;
        a = old ? b : a;
        b = old ? c : b;
        c = fresh;
        first += 16;
        rel -= 32;
    }
};

struct StreamLoad : StreamBase {
    uint32_t p;    // words consumed
    uint32_t cand; // word p + lane

    __device__ __forceinline__ void init(uint32_t) { p = 0; }
    __device__ __forceinline__ uint32_t pos() const { return p; }
    __device__ __forceinline__ void prepare(uint32_t lane) { cand = word_at(p + lane); }
    __device__ __forceinline__ uint32_t merge(uint32_t xn, uint32_t k) const {
        return (xn << 16) | __shfl_sync(kFull, cand, k);
    }
    __device__ __forceinline__ void advance(uint32_t m, uint32_t) { p += __popc(m); }
};

template <bool kShared>
__device__ __forceinline__ uint32_t table_entry(const uint32_t *table, uint32_t i) {
    if (kShared) return table[i];
    return __ldg(table + i);
}

// A plane's tables as the general loop (decode_rans) reads them: `row(t)` is the offset of
// table t, `entry(tb, slot)` the packed entry of a slot of the table at offset tb.
// TablesFull: an entry a slot, in shared memory when kShared, else read in place.
template <bool kShared> struct TablesFull {
    const uint32_t *table;
    uint32_t prob_bits;
    __device__ __forceinline__ static TablesFull of(const uint32_t *t, uint32_t prob_bits) {
        return {t, prob_bits};
    }
    __device__ __forceinline__ uint32_t row(uint32_t t) const { return t << prob_bits; }
    __device__ __forceinline__ uint32_t entry(uint32_t tb, uint32_t slot) const {
        return table_entry<kShared>(table, tb | slot);
    }
};

// The entry of `slot` in a compact table (WC_GROUP_COMPACT_TABLES) at shared-window address
// `table`: its 256 records, then a symbol byte a slot; the entry is the slot's symbol's record
// plus slot << 20. Two dependent shared loads and an add, where a full table has one load.
__device__ __forceinline__ uint32_t compact_entry(uint32_t table, uint32_t slot) {
    uint32_t sym, rec;
    asm volatile("ld.shared.u8 %0, [%1+1024];" : "=r"(sym) : "r"(table + slot));
    asm volatile("ld.shared.u32 %0, [%1];" : "=r"(rec) : "r"(table + 4 * sym));
    return rec + (slot << 20);
}

// Compact tables in shared memory for the general loop: table t starts t * (1 KiB +
// 2^prob_bits) bytes in.
struct TablesCompact {
    uint32_t base; // shared-window address of the first table
    uint32_t prob_bits;
    __device__ __forceinline__ static TablesCompact of(const uint32_t *t, uint32_t prob_bits) {
        return {static_cast<uint32_t>(__cvta_generic_to_shared(t)), prob_bits};
    }
    __device__ __forceinline__ uint32_t row(uint32_t t) const {
        return (t << 10) + (t << prob_bits);
    }
    __device__ __forceinline__ uint32_t entry(uint32_t tb, uint32_t slot) const {
        return compact_entry(base + tb, slot);
    }
};

// One decode step of every lane; `tb` is the first entry of the lane's table. `active` is false
// for lanes whose symbol does not exist (only in a tile's last, partial group); their state does
// not move. Returns the decoded symbol.
template <class TS, bool kAllActive, class S>
__device__ __forceinline__ uint32_t rans_step(uint32_t &x, bool active, const TS &tables,
                                              uint32_t tb, S &s, uint32_t lane, uint32_t lt) {
    s.prepare(lane);
    const uint32_t e = tables.entry(tb, x & s.mask);
    const uint32_t freq = ((e >> 8) & 0xfffu) + 1u;
    uint32_t xn = freq * (x >> s.prob_bits) + (e >> 20);
    bool need = xn < WC_STATE_LOW;
    if (!kAllActive) {
        xn = active ? xn : x;
        need = need && active;
    }
    const uint32_t m = __ballot_sync(kFull, need);
    // A lane that needs a word takes the next in lane order: its rank among those that need.
    const uint32_t merged = s.merge(xn, __popc(m & lt));
    x = need ? merged : xn;
    s.advance(m, lane);
    return e & 0xffu;
}

// Where column c0 + c of a plane lies within its row of the output (see WcUnit): c counts
// from a tile's first column c0 (rANS units), or from the plane's first (raw units, c0 = 0).
struct Cols {
    uint32_t c0; // plane columns fit 32 bits (checked by the host)
    uint32_t group, col_stride, step;

    __device__ __forceinline__ static Cols of(const WcUnit &u, uint64_t c0) {
        Cols k;
        k.c0 = static_cast<uint32_t>(c0);
        k.group = u.group;
        k.col_stride = u.col_stride;
        k.step = u.step;
        return k;
    }

    __device__ __forceinline__ uint64_t at(uint32_t c) const {
        c += c0;
        if (group == 1) return static_cast<uint64_t>(c) * col_stride;
        const uint32_t b = c / group;
        return static_cast<uint64_t>(b) * col_stride + (c - b * group) * step;
    }
};

__device__ __forceinline__ uint32_t predict(uint32_t mode, uint32_t a, uint32_t b, uint32_t c) {
    switch (mode) {
    case 1:
        return a;
    case 2:
        return b;
    case 3:
        return (a + b) >> 1;
    default: {
        // PNG's Paeth: of a, b, c the one nearest to a + b - c; ties prefer a, then b.
        const int p = static_cast<int>(a) + static_cast<int>(b) - static_cast<int>(c);
        const int pa = abs(p - static_cast<int>(a));
        const int pb = abs(p - static_cast<int>(b));
        const int pc = abs(p - static_cast<int>(c));
        if (pa <= pb && pa <= pc) return a;
        if (pb <= pc) return b;
        return c;
    }
    }
}

// Rebuilds a predicted tile in place: on entry it holds residuals, on exit the plane's bytes.
// Rows go 32 at a time, lane l on row r0 + l, which runs one column behind row r0 + l - 1: at
// step k lane l does column k - l, and lane l - 1's values at columns k - l and k - l - 1 (its
// last two) are this lane's top and top-left. Lane 0 reads them from the row above, written
// before the __syncwarp that ends the previous 32 rows; it loads them kAbove columns ahead of
// use (the row above was just written, so the loads go to L2), and its top-left is the previous
// column's top.
__device__ void reconstruct(uint8_t *dst, uint64_t row_stride, Cols cols, uint32_t height,
                            uint32_t width, uint32_t mode, uint32_t bias, uint32_t lane) {
    constexpr uint32_t kAbove = 4;
    for (uint32_t r0 = 0; r0 < height; r0 += WC_LANES) {
        const uint32_t r = r0 + lane;
        const bool row_ok = r < height;
        uint8_t *row = dst + static_cast<uint64_t>(r) * row_stride;
        uint32_t last = 0, before_last = 0;
        // Lane 0 of a pass after the first: the row above at columns c .. c + kAbove - 1.
        const bool lead = lane == 0 && r > 0;
        const uint8_t *above = dst + static_cast<uint64_t>(lead ? r - 1 : 0) * row_stride;
        uint32_t ahead[kAbove];
#pragma unroll
        for (uint32_t j = 0; j < kAbove; ++j) {
            ahead[j] = lead && j < width ? above[cols.at(j)] ^ bias : 0u;
        }
        uint32_t top = 0; // lane 0: the row above at column c - 1
        const uint32_t steps = width + WC_LANES - 1;
        for (uint32_t k = 0; k < steps; ++k) {
            const uint32_t up = __shfl_up_sync(kFull, last, 1);
            const uint32_t up_left = __shfl_up_sync(kFull, before_last, 1);
            const uint32_t c = k - lane; // wraps around (huge) while k < lane
            if (row_ok && k >= lane && c < width) {
                const uint32_t a = c > 0 ? last : 0u;
                uint32_t b, tl;
                if (lane == 0) {
                    b = ahead[0];
                    tl = top;
                    top = b;
#pragma unroll
                    for (uint32_t j = 0; j + 1 < kAbove; ++j) ahead[j] = ahead[j + 1];
                    ahead[kAbove - 1] =
                        lead && c + kAbove < width ? above[cols.at(c + kAbove)] ^ bias : 0u;
                } else {
                    b = up;
                    tl = c > 0 ? up_left : 0u;
                }
                uint8_t *q = row + cols.at(c);
                const uint32_t u = (static_cast<uint32_t>(*q) + predict(mode, a, b, tl)) & 0xffu;
                *q = static_cast<uint8_t>(u ^ bias);
                before_last = last;
                last = u;
            }
        }
        __syncwarp();
    }
}

// reconstruct() for a tile whose rows are contiguous bytes starting 4-byte aligned (a one-byte
// plane decoded in place): the same wavefront, but a step takes a word of 4 columns. Lane l
// does word j = k - l at step k and takes lane l - 1's word j (its top row) through one
// shuffle; the top-left of the word's first column is the last byte of the top row's previous
// word. A 32-row pass is width / 4 + 31 steps of a word load and a word store a lane instead of
// width + 31 steps of a byte each, whose byte loads and stores touched 32 rows a step (the
// predicted tiles took 14% of a MiniLM int8 launch for 2.7% of its bytes, GPU run 15; 5-9%
// with this path, GPU run 18). Its loads of the rows come from L2 (just written) a step ahead:
// a 256x256 tile waits a round trip a step. Loading 4 steps ahead into registers (8 more a
// lane) sped such tiles up but cost every launch 8-14% through the kernel's register budget
// (GPU runs 30-31): not kept. Not inlined: the decoding loops around its call keep their
// registers (inlined, it cost the BF16 launches 4-6% through the shared register allocation,
// GPU run 16).
__device__ __noinline__ void reconstruct_words(uint8_t *tile, uint64_t row_stride,
                                               uint32_t height, uint32_t width, uint32_t mode,
                                               uint32_t bias, uint32_t lane) {
    constexpr uint32_t kAbove = 4;
    const uint32_t bias4 = bias * 0x01010101u;
    const uint32_t words = width / 4;
    for (uint32_t r0 = 0; r0 < height; r0 += WC_LANES) {
        const uint32_t r = r0 + lane;
        const bool row_ok = r < height;
        uint32_t *row = reinterpret_cast<uint32_t *>(
            tile + static_cast<uint64_t>(row_ok ? r : 0) * row_stride);
        // Lane 0 of a pass after the first: the row above, kAbove words ahead of use.
        const bool lead = lane == 0 && r > 0;
        const uint32_t *above = reinterpret_cast<const uint32_t *>(
            tile + static_cast<uint64_t>(lead ? r - 1 : 0) * row_stride);
        uint32_t ahead[kAbove];
#pragma unroll
        for (uint32_t j = 0; j < kAbove; ++j) {
            ahead[j] = lead && j < words ? above[j] ^ bias4 : 0u;
        }
        uint32_t last = 0;     // this row's previous word (values, not biased)
        uint32_t top_last = 0; // the row above's previous word
        uint32_t next = row_ok ? row[0] : 0u; // this row's next residuals, a step ahead
        const uint32_t steps = words + WC_LANES - 1;
        for (uint32_t k = 0; k < steps; ++k) {
            const uint32_t up = __shfl_up_sync(kFull, last, 1);
            const uint32_t j = k - lane; // wraps around (huge) while k < lane
            if (row_ok && k >= lane && j < words) {
                uint32_t top = up;
                if (lane == 0) {
                    top = ahead[0];
#pragma unroll
                    for (uint32_t i = 0; i + 1 < kAbove; ++i) ahead[i] = ahead[i + 1];
                    ahead[kAbove - 1] =
                        lead && j + kAbove < words ? above[j + kAbove] ^ bias4 : 0u;
                }
                const uint32_t res = next;
                next = j + 1 < words ? row[j + 1] : 0u;
                uint32_t a = j > 0 ? last >> 24 : 0u;
                uint32_t tl = j > 0 ? top_last >> 24 : 0u;
                uint32_t out = 0;
#pragma unroll
                for (uint32_t b = 0; b < 4; ++b) {
                    const uint32_t t = (top >> (8 * b)) & 0xffu;
                    const uint32_t u = ((res >> (8 * b)) + predict(mode, a, t, tl)) & 0xffu;
                    out |= u << (8 * b);
                    a = u;
                    tl = t;
                }
                row[j] = out ^ bias4;
                last = out;
                top_last = top;
            }
        }
        __syncwarp();
    }
}

// The last pass of a predicted WC_FLAG_MIX_BF16 tile: each element's high byte holds its
// exponent; merged with its sign-mantissa byte into the whole element. Rows one at a time,
// lanes over the columns (each lane reads and writes only its own elements). Only the high
// byte is read: the low one was never written (compute-sanitizer's initcheck stays clean).
__device__ void merge_tile(uint8_t *dst, uint64_t row_stride, uint64_t first, const uint8_t *sm,
                           uint32_t height, uint32_t width, uint32_t lane) {
    const uint64_t sm_stride = row_stride >> 1;
    for (uint32_t r = 0; r < height; ++r) {
        uint16_t *row = reinterpret_cast<uint16_t *>(dst + r * row_stride) + first;
        const uint8_t *s = sm + r * sm_stride;
        for (uint32_t c = lane; c < width; c += WC_LANES) {
            const uint8_t exponent = reinterpret_cast<const uint8_t *>(row + c)[1];
            row[c] = static_cast<uint16_t>(merge_bf16(exponent, s[c]));
        }
    }
}

// Decodes one rANS unit with the whole warp; returns its WC_ERR_* bits. `table` holds the
// plane's tables back to back (TS: TablesFull<true> in shared memory, TablesFull<false> in
// global memory, TablesCompact).
template <class TS, class S, bool kColTables = false>
__device__ uint32_t decode_rans(const uint8_t *__restrict__ src, const uint8_t *__restrict__ maps,
                                const WcUnit &u, const uint32_t *table, uint32_t prob_bits,
                                uint32_t lane) {
    const TS tables = TS::of(table, prob_bits);
    const uint8_t *unit = src + u.src;
    uint32_t x = __ldg(reinterpret_cast<const uint32_t *>(unit) + lane);
    uint32_t status = __ballot_sync(kFull, x < WC_STATE_LOW) ? WC_ERR_BAD_INITIAL_STATE : 0u;
    S s;
    s.words = reinterpret_cast<const uint16_t *>(unit + WC_STATES_BYTES);
    s.n_words = (u.len - WC_STATES_BYTES) / 2;
    s.mask = (1u << prob_bits) - 1u;
    s.prob_bits = prob_bits;
    s.init(lane);
    const uint32_t lt = lanemask_lt();

    uint8_t *const dst = reinterpret_cast<uint8_t *>(u.dst);
    const uint64_t row_stride = u.row_stride;
    const Cols cols = Cols::of(u, u.first);
    const uint32_t width = u.width;
    const uint32_t height = u.height;
    const uint32_t n = height * width; // <= 2^22, checked by the host
    const uint32_t bias = (u.flags & WC_FLAG_BIAS128) ? 0x80u : 0u;
    // A tile with no prediction stores its bytes final (XOR 0x80 undone); a predicted one
    // stores residuals for reconstruct() to rebuild.
    const uint32_t xor4 = u.predictor == 0 ? bias * 0x01010101u : 0u;
    const uint32_t groups = n / kGroup;
    const uint32_t rest = n - groups * kGroup; // symbols of the last, partial group
    // The first table entry of tile row r (clamped: lanes past the tile's end keep a valid one).
    const bool row_tables = (u.flags & WC_FLAG_ROW_TABLES) != 0;
    const uint8_t *map = maps + u.row_map;
    auto table_of_row = [&](uint32_t r) -> uint32_t {
        return row_tables ? tables.row(__ldg(map + min(r, height - 1))) : 0u;
    };
    // Column classes (GGUF blocks coded whole; kColTables, variant 8 only): the table of tile
    // column c is map[c].
    const bool col_tables = kColTables && (u.flags & WC_FLAG_COL_TABLES) != 0;
    auto table_of = [&](uint32_t r, uint32_t c) -> uint32_t {
        return col_tables ? tables.row(__ldg(map + min(c, width - 1))) : table_of_row(r);
    };

    // WC_FLAG_MIX_BF16: elements of 2 bytes, each merged with its sign-mantissa byte from `sm`
    // (row r of the tile at sm + r * sm_stride).
    const bool mix = (u.flags & WC_FLAG_MIX_BF16) != 0;
    const uint32_t es = mix ? 2u : 1u;
    const uint8_t *sm = src + u.mix;
    const uint64_t sm_stride = row_stride >> 1;

    if (u.flags & WC_FLAG_WORD_STORES) {
        // Where this lane's run of the current group starts; runs never straddle rows because
        // width % 4 == 0. `p` is its address, 4-aligned (8-aligned when merged); `q` that of
        // its sign-mantissa bytes when merged.
        uint32_t col = 4 * lane, row = 0;
        while (col >= width) {
            col -= width;
            ++row;
        }
        uint8_t *p = dst + es * u.first + static_cast<uint64_t>(row) * row_stride + es * col;
        const uint8_t *q = sm + static_cast<uint64_t>(row) * sm_stride + col;
        const uint64_t wrap = row_stride - es * width;
        const uint64_t sm_wrap = sm_stride - width;
        // Stores the lane's 4 symbols (or elements) at p.
        auto store = [&](uint32_t word) {
            if (mix) {
                const uint32_t s4 = __ldg(reinterpret_cast<const uint32_t *>(q));
                *reinterpret_cast<uint2 *>(p) = merge_bf16x4(word, s4);
            } else {
                *reinterpret_cast<uint32_t *>(p) = word;
            }
        };
        // The next row's table is looked up a row ahead, off the dependency chain.
        uint32_t tb = table_of_row(row);
        uint32_t tb_next = table_of_row(row + 1);
        for (uint32_t g = 0; g < groups; ++g) {
            if (lane == 1 && s.pos() + kPrefetchL1Words < s.n_words) {
                prefetch_l1(s.words + s.pos() + kPrefetchL1Words);
            }
            if (lane == 0 && s.pos() + kPrefetchWords < s.n_words) {
                prefetch_l2(s.words + s.pos() + kPrefetchWords);
            }
            uint32_t word = 0;
#pragma unroll
            for (uint32_t j = 0; j < 4; ++j) {
                const uint32_t tj = col_tables ? table_of(0, col + j) : tb;
                word |= rans_step<TS, true, S>(x, true, tables, tj, s, lane, lt) << (8 * j);
            }
            store(word ^ xor4);
            col += kGroup;
            p += es * kGroup;
            q += kGroup;
            if (col >= width) {
                uint32_t rows = 0;
                do {
                    col -= width;
                    p += wrap;
                    q += sm_wrap;
                    ++rows;
                } while (col >= width);
                row += rows;
                tb = rows == 1 ? tb_next : table_of_row(row);
                tb_next = table_of_row(row + 1);
            }
        }
        if (rest > 0) {
            uint32_t word = 0;
#pragma unroll
            for (uint32_t j = 0; j < 4; ++j) {
                const bool active = 4 * lane + j < rest;
                const uint32_t tj = col_tables ? table_of(0, col + j) : tb;
                word |= rans_step<TS, false, S>(x, active, tables, tj, s, lane, lt) << (8 * j);
            }
            if (4 * lane < rest) store(word ^ xor4);
        }
    } else {
        // Any geometry: each symbol's row and column by division, one byte store each.
        for (uint32_t g = 0; g < groups + (rest > 0 ? 1u : 0u); ++g) {
            const uint32_t t0 = g * kGroup + 4 * lane;
#pragma unroll
            for (uint32_t j = 0; j < 4; ++j) {
                const uint32_t t = t0 + j;
                const bool active = t < n;
                const uint32_t r = t / width;
                const uint32_t c = t - r * width;
                const uint32_t sym =
                    rans_step<TS, false, S>(x, active, tables, table_of(r, c), s, lane, lt);
                if (active) {
                    uint8_t *at = dst + static_cast<uint64_t>(r) * row_stride + cols.at(c);
                    if (!mix) {
                        *at = static_cast<uint8_t>(sym ^ xor4);
                    } else if (u.predictor == 0) {
                        const uint32_t b = sm[static_cast<uint64_t>(r) * sm_stride + c];
                        *reinterpret_cast<uint16_t *>(at) =
                            static_cast<uint16_t>(merge_bf16(sym ^ xor4, b));
                    } else {
                        at[1] = static_cast<uint8_t>(sym); // the residual, in the high byte
                    }
                }
            }
        }
    }

    if (s.pos() > s.n_words) status |= WC_ERR_OVERRUN;
    if (s.pos() < s.n_words) status |= WC_ERR_WORDS_LEFT;
    if (__ballot_sync(kFull, x != WC_STATE_LOW)) status |= WC_ERR_NOT_FINAL;

    return status;
}

// The fast path (variants 3 and 4) of a rANS unit whose groups are whole row spans: word
// stores (WC_FLAG_WORD_STORES), width % 128 == 0 and a tile whose bytes span less than 4 GiB,
// so that group g is the 128 bytes at column 128 (g % (width / 128)) of tile row
// g / (width / 128) and every lane of a group is on the same row (one table for the warp, no
// per-lane row arithmetic). The step is straight-line and has no bound check: the candidate
// word is loaded through a per-lane pointer `q` (word pos + lane) that advances by the words the
// warp took, and may run up to 160 words past the unit's end, into the next unit's bytes or the
// WC_STAGING_PAD bytes the host leaves after the staged payloads. A stream that overruns (a
// damaged unit) is caught at the start of the next group, before any read past the pad: a group
// reads fewer than 128 + 32 words past its start, and the prefetches 514 words ahead.
//
// Tables: TableSmem addresses the plane's tables in shared memory with 32-bit shared-window
// addresses (entry = one LEA from the slot), TableGlobal reads them in place.
struct TableSmem {
    uint32_t base; // shared-window address of the plane's first table
    __device__ __forceinline__ static TableSmem of(const uint32_t *t) {
        return {static_cast<uint32_t>(__cvta_generic_to_shared(t))};
    }
    __device__ __forceinline__ TableSmem at(uint32_t t, uint32_t prob_bits) const {
        return {base + ((t << prob_bits) << 2)};
    }
    __device__ __forceinline__ uint32_t operator[](uint32_t slot) const {
        uint32_t v;
        asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(base + 4 * slot));
        return v;
    }
};

struct TableGlobal {
    const uint32_t *base;
    __device__ __forceinline__ static TableGlobal of(const uint32_t *t) { return {t}; }
    __device__ __forceinline__ TableGlobal at(uint32_t t, uint32_t prob_bits) const {
        return {base + (t << prob_bits)};
    }
    __device__ __forceinline__ uint32_t operator[](uint32_t slot) const {
        return __ldg(base + slot);
    }
};

// Compact tables for the fast loops: `base` is the shared-window address of one table
// (`compact_entry`).
struct TableCompact {
    uint32_t base;
    __device__ __forceinline__ static TableCompact of(const uint32_t *t) {
        return {static_cast<uint32_t>(__cvta_generic_to_shared(t))};
    }
    __device__ __forceinline__ TableCompact at(uint32_t t, uint32_t prob_bits) const {
        return {base + (t << 10) + (t << prob_bits)};
    }
    __device__ __forceinline__ uint32_t operator[](uint32_t slot) const {
        return compact_entry(base, slot);
    }
};

template <class T, bool kMix>
__device__ uint32_t decode_rans_fast(const uint8_t *__restrict__ src,
                                     const uint8_t *__restrict__ maps, const WcUnit &u,
                                     const uint32_t *table, uint32_t prob_bits, uint32_t lane) {
    const uint8_t *unit = src + u.src;
    uint32_t x = __ldg(reinterpret_cast<const uint32_t *>(unit) + lane);
    uint32_t status = __ballot_sync(kFull, x < WC_STATE_LOW) ? WC_ERR_BAD_INITIAL_STATE : 0u;
    const uint16_t *const words = reinterpret_cast<const uint16_t *>(unit + WC_STATES_BYTES);
    const uint32_t n_words = (u.len - WC_STATES_BYTES) / 2;
    const uint16_t *q = words + lane;
    // The low 32 bits of where q may be at the start of a group (q - lane <= words + n_words):
    // the difference to q's fits an int32, so one 32-bit compare per group checks it.
    const uint32_t limit = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(q + n_words));
    const uint32_t mask = (1u << prob_bits) - 1u;
    const uint32_t lt = lanemask_lt();
    const uint32_t height = u.height;
    const uint32_t spans = u.width / kGroup; // groups per tile row
    const uint32_t groups = spans * height;
    // Merged (kMix): 2-byte elements, 8 output bytes a lane; element k of the tile (row-major
    // offset `off` / 2 from the lane's first) has its sign-mantissa byte at sm + off / 2.
    constexpr uint32_t kEs = kMix ? 2u : 1u;
    const uint32_t wrap = static_cast<uint32_t>(u.row_stride) - kEs * u.width;
    uint8_t *const out = reinterpret_cast<uint8_t *>(u.dst) + kEs * (u.first + 4 * lane);
    const uint8_t *const sm = src + u.mix + 4 * lane;
    const uint32_t bias = (u.flags & WC_FLAG_BIAS128) ? 0x80u : 0u;
    const uint32_t xor4 = u.predictor == 0 ? bias * 0x01010101u : 0u;
    const bool row_tables = (u.flags & WC_FLAG_ROW_TABLES) != 0;
    const uint8_t *map = maps + u.row_map;
    const T first = T::of(table);
    // This row's table, and the next row's (looked up a row ahead, off the dependency chain).
    T tab = row_tables ? first.at(__ldg(map), prob_bits) : first;
    uint32_t next = row_tables ? __ldg(map + min(1u, height - 1)) : 0u;
    uint32_t off = 0, k = 0, r = 0;
    for (uint32_t g = 0; g < groups; ++g) {
        // Warp-uniform: every lane's q is its own lane further.
        const uint32_t qlo = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(q));
        if (static_cast<int32_t>(qlo - limit) > 0) {
            status |= WC_ERR_OVERRUN;
            break;
        }
        // The stream a KiB ahead into L2 (it comes from DRAM once) and 3 lines ahead into L1.
        if (lane == 0) prefetch_l2(q + kPrefetchWords);
        if (lane == 1) prefetch_l1(q + kPrefetchL1Words);
        // The group's sign-mantissa bytes (128 contiguous a warp), loaded before the steps.
        const uint32_t s4 = kMix ? __ldg(reinterpret_cast<const uint32_t *>(sm + off / 2)) : 0u;
        uint32_t e[4];
#pragma unroll
        for (uint32_t j = 0; j < 4; ++j) {
            const uint32_t cand = __ldg(q);
            e[j] = tab[x & mask];
            const uint32_t xs = x >> prob_bits;
            // freq * xs + (slot - cum), freq = ((e >> 8) & 0xfff) + 1
            const uint32_t xn = ((e[j] >> 8) & 0xfffu) * xs + (xs + (e[j] >> 20));
            const bool need = xn < WC_STATE_LOW;
            const uint32_t m = __ballot_sync(kFull, need);
            const uint32_t w = __shfl_sync(kFull, cand, __popc(m & lt));
            x = need ? __byte_perm(w, xn, 0x5410u) : xn; // (xn << 16) | w, as xn < 2^16
            q += __popc(m);
        }
        // The symbols are the entries' low bytes.
        const uint32_t word = __byte_perm(__byte_perm(e[0], e[1], 0x40u),
                                          __byte_perm(e[2], e[3], 0x40u), 0x5410u);
        if (kMix) {
            *reinterpret_cast<uint2 *>(out + off) = merge_bf16x4(word ^ xor4, s4);
        } else {
            *reinterpret_cast<uint32_t *>(out + off) = word ^ xor4;
        }
        off += kEs * kGroup;
        if (++k == spans) {
            k = 0;
            off += wrap;
            if (row_tables) {
                ++r;
                tab = first.at(next, prob_bits);
                next = __ldg(map + min(r + 1, height - 1));
            }
        }
    }
    const uint32_t pos = static_cast<uint32_t>(q - (words + lane));
    if (pos > n_words) status |= WC_ERR_OVERRUN;
    if (pos < n_words) status |= WC_ERR_WORDS_LEFT;
    if (__ballot_sync(kFull, x != WC_STATE_LOW)) status |= WC_ERR_NOT_FINAL;
    return status;
}

// Variant 6: the fast path with the stream staged in shared memory. Each warp copies its unit's
// stream into a ring of R = 4 Q bytes of shared memory with cp.async, Q bytes at a time (Q = 256
// kIter: every lane copies Q / 32 bytes), ahead of the reads, so that a step's words are a
// conflict-free shared load instead of a global load touching 2-3 sectors (and waiting on L1 or
// L2). The lanes that need a word read it after the vote, at the warp's position plus their rank
// among those lanes: one shared load a step and no shuffle (H100, GPU runs 54-55: 1.1-2.2% faster
// than a candidate word loaded ahead and handed over by a shuffle). The loop takes kIter groups an
// iteration, which read at most Q bytes from the iteration's start 2p. F bytes of the stream have
// been requested; the ring holds stream bytes [F - R, F). A chunk is requested when 2p >= F - 3 Q
// (at most one an iteration, which keeps pace). Then at each iteration's start F > 2p + 2 Q
// (induction), so the bytes [2p, 2p + Q) lie in chunks requested at least one iteration earlier:
// after cp.async.wait_group 1 (one commit an iteration) and __syncwarp they are in the ring, and a
// chunk only overwrites bytes below 2p. The copies read at most R bytes past the unit's end (the
// overrun check bounds 2p by the unit's length), inside WC_STAGING_PAD.
__device__ __forceinline__ uint32_t lds_u16(uint32_t addr) {
    uint16_t v;
    asm volatile("ld.shared.u16 %0, [%1];" : "=h"(v) : "r"(addr));
    return v;
}

// Copies 16 bytes from global to shared memory asynchronously (bypassing L1) when `on`.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool on) {
    asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %2, 0;\n\t"
                 "@p cp.async.cg.shared.global [%0], [%1], 16;\n\t}" ::"r"(dst),
                 "l"(src), "r"(static_cast<uint32_t>(on))
                 : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;" ::: "memory");
}

template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// kRing: the ring's bytes (2 KiB: kIter = 2 groups an iteration, 512-byte chunks, 16 bytes a
// lane). kOneSpan: every group is whole rows of the tile: the tile is one group wide (width 128,
// as in the tiles of files made for the GPU), or narrower, a width that divides 128 (the 64
// columns left at the edge of a plane 576 or 960 wide), its groups 128 / width rows each, with
// one table (lanes of a group on different rows); no span counter. kRowTables false: the unit is
// coded with one table, so the loop has no row-table step (no branch at a row's end). On H100
// (GPU runs 23-26) one-table loops sped up merged BF16 units by up to 5% and one-byte units of
// one span by 2-4%, and slowed one-byte units of several spans by 2-3%: those keep the general
// loop.
// The ring loops' bookkeeping. A chunk's copy was just issued when `more` (or not): the next
// chunk's source offset `fl` and the stream offset `refill` that requests the one after move on
// a chunk, and the copy joins its group.
template <uint32_t kQ>
__device__ __forceinline__ void next_chunk(bool more, uint32_t &fl, uint32_t &refill) {
    fl += more ? kQ : 0u;
    refill += more ? kQ : 0u;
    cp_async_commit();
}

// The end of a ring loop: no copy may still land in the ring when the warp's next unit fills
// it, and the stream was read to its last word exactly (`o`: bytes read, two a word), else
// `status` says how it was not.
__device__ __forceinline__ void ring_end(uint32_t o, uint32_t n_words, uint32_t &status) {
    cp_async_wait<0>();
    __syncwarp();
    const uint32_t pos = o / 2;
    if (pos > n_words) status |= WC_ERR_OVERRUN;
    if (pos < n_words) status |= WC_ERR_WORDS_LEFT;
}

template <uint32_t kRing, class T, bool kMix, bool kOneSpan = false, bool kRowTables = true,
          bool kRuns = false, bool kColTables = false>
__device__ uint32_t decode_rans_ring(const uint8_t *__restrict__ src,
                                      const uint8_t *__restrict__ maps, const WcUnit &u,
                                      const uint32_t *table, uint32_t prob_bits, uint32_t lane,
                                      uint32_t ring) {
    static_assert(kRing == 2048, "a ring of 2 KiB");
    constexpr uint32_t kIter = 2;
    constexpr uint32_t kQ = kRing / 4;  // bytes a chunk
    constexpr uint32_t kCopy = kQ / 32; // bytes a lane copies of a chunk (16)
    const uint8_t *unit = src + u.src;
    uint32_t x = __ldg(reinterpret_cast<const uint32_t *>(unit) + lane);
    uint32_t status = __ballot_sync(kFull, x < WC_STATE_LOW) ? WC_ERR_BAD_INITIAL_STATE : 0u;
    const uint8_t *const stream = unit + WC_STATES_BYTES;
    const uint32_t n_words = (u.len - WC_STATES_BYTES) / 2;
    // o: the byte offset in the stream of the warp's next word, 2 pos (warp-uniform).
    uint32_t o = 0;
    const uint32_t limit = 2 * n_words;
    // This lane's next copy, F + kCopy lane, and F - 3 Q, which o reaches when the warp
    // requests the next chunk. The ring starts with the stream's first R bytes.
    uint32_t fl = kRing + kCopy * lane;
    uint32_t refill = kQ;
    cp_async16(ring | (kCopy * lane), stream + kCopy * lane, true);
    cp_async_commit();
#pragma unroll
    for (uint32_t c = 1; c < 4; ++c) {
        cp_async16(ring | (c * kQ + kCopy * lane), stream + c * kQ + kCopy * lane, true);
    }
    cp_async_commit();
    const uint32_t mask = (1u << prob_bits) - 1u;
    const uint32_t lt = lanemask_lt();
    const uint32_t height = u.height;
    const uint32_t spans = kOneSpan ? 1u : u.width / kGroup;
    const uint32_t groups = kOneSpan ? u.width * height / kGroup : spans * height;
    // kOneSpan widths divide 128: powers of two, so a lane's row and column are a shift and a
    // mask (no division by a width known only at run time).
    const uint32_t width_log2 = kOneSpan ? 31 - __clz(u.width) : 0u;
    constexpr uint32_t kEs = kMix ? 2u : 1u;
    const uint32_t stride = static_cast<uint32_t>(u.row_stride);
    // kRuns: columns in blocks of 2^block_log2 columns, block_stride bytes apart
    // (WC_FLAG_FIELD_RUNS: GGUF block fields); else contiguous columns, blocks of one, one byte
    // apart. col(c) is where column c of the tile lies from its first column's byte.
    static_assert(!(kRuns && kMix), "field runs are of one-byte symbols");
    const uint32_t block_log2 = kRuns ? 31 - __clz(u.group) : 0u;
    const uint32_t block_stride = kRuns ? u.col_stride : 1u;
    auto col = [&](uint32_t c) {
        return (c >> block_log2) * block_stride + (c & ((1u << block_log2) - 1));
    };
    const uint32_t wrap = stride - kEs * col(u.width);
    // A lane's 4 symbols of a group: row 4 lane / width of it, from column 4 lane % width (one
    // row of 128 columns where the tile is at least a group wide); `off` is where its first
    // goes, from the tile's first element, and its sign-mantissa bytes are at sm + off / 2.
    uint8_t *const out = reinterpret_cast<uint8_t *>(u.dst) +
                         (kRuns ? (u.first >> block_log2) * block_stride : kEs * u.first);
    const uint8_t *const sm = src + u.mix;
    // Field runs of blocks whose stride or first byte is not 4-aligned: two 2-byte stores.
    const bool halves =
        kRuns && ((reinterpret_cast<uintptr_t>(out) | block_stride | stride) & 3) != 0;
    const uint32_t rows_per_group = kOneSpan ? kGroup >> width_log2 : 1u;
    const uint32_t bias = (u.flags & WC_FLAG_BIAS128) ? 0x80u : 0u;
    const uint32_t xor4 = u.predictor == 0 ? bias * 0x01010101u : 0u;
    // kRowTables false: the caller found the unit coded with one table.
    const bool row_tables = kRowTables && (u.flags & WC_FLAG_ROW_TABLES) != 0;
    const uint8_t *map = maps + u.row_map;
    const T first = T::of(table);
    T tab = row_tables ? first.at(__ldg(map), prob_bits) : first;
    // kColTables (column classes, tiles of whole groups a row): the tables of the lane's 4
    // columns of the group, map[128 k + 4 lane + j] for the group's span k; fixed for the unit
    // where it is one group wide, else looked up a group ahead (`n0`..`n3`), off the chain.
    // Four named views, not an array: an array indexed through a reference goes to local memory.
    static_assert(!kColTables || (!kRowTables && !kMix && !kRuns),
                  "column tables with one-byte symbols in whole groups");
    auto col_view = [&](uint32_t span, uint32_t j) {
        return first.at(__ldg(map + kGroup * span + 4 * lane + j), prob_bits);
    };
    T c0 = first, c1 = first, c2 = first, c3 = first;
    T n0 = first, n1 = first, n2 = first, n3 = first;
    if constexpr (kColTables) {
        c0 = col_view(0, 0), c1 = col_view(0, 1), c2 = col_view(0, 2), c3 = col_view(0, 3);
        if constexpr (!kOneSpan) {
            const uint32_t span = spans > 1 ? 1u : 0u;
            n0 = col_view(span, 0), n1 = col_view(span, 1);
            n2 = col_view(span, 2), n3 = col_view(span, 3);
        }
    }
    // The table of step j (a constant once the steps are unrolled).
    auto step_table = [&](uint32_t j) -> T {
        if constexpr (!kColTables) return tab;
        return j == 0 ? c0 : j == 1 ? c1 : j == 2 ? c2 : c3;
    };
    uint32_t next = row_tables ? __ldg(map + min(1u, height - 1)) : 0u;
    uint32_t off = kOneSpan
                       ? (4 * lane >> width_log2) * stride + kEs * col(4 * lane & (u.width - 1))
                       : kEs * col(4 * lane);
    uint32_t k = 0, r = 0;
    // One group: 4 steps, the store, the row step.
    auto group = [&]() {
        const uint32_t s4 = kMix ? __ldg(reinterpret_cast<const uint32_t *>(sm + off / 2)) : 0u;
        uint32_t e[4];
#pragma unroll
        for (uint32_t j = 0; j < 4; ++j) {
            e[j] = step_table(j)[x & mask];
            const uint32_t xs = x >> prob_bits;
            const uint32_t xn = ((e[j] >> 8) & 0xfffu) * xs + (xs + (e[j] >> 20));
            const bool need = xn < WC_STATE_LOW;
            const uint32_t m = __ballot_sync(kFull, need);
            const uint32_t w = lds_u16(ring | ((o + 2 * __popc(m & lt)) & (kRing - 1)));
            x = need ? __byte_perm(w, xn, 0x5410u) : xn;
            o += 2 * __popc(m);
        }
        const uint32_t word = __byte_perm(__byte_perm(e[0], e[1], 0x40u),
                                          __byte_perm(e[2], e[3], 0x40u), 0x5410u);
        if (kMix) {
            *reinterpret_cast<uint2 *>(out + off) = merge_bf16x4(word ^ xor4, s4);
        } else if (halves) {
            uint16_t *const p = reinterpret_cast<uint16_t *>(out + off);
            p[0] = static_cast<uint16_t>(word ^ xor4);
            p[1] = static_cast<uint16_t>((word ^ xor4) >> 16);
        } else {
            *reinterpret_cast<uint32_t *>(out + off) = word ^ xor4;
        }
        if (kOneSpan) {
            off += rows_per_group * stride;
        } else {
            off += kEs * col(kGroup);
        }
        if (kOneSpan || ++k == spans) k = 0;
        if constexpr (kColTables && !kOneSpan) {
            c0 = n0, c1 = n1, c2 = n2, c3 = n3;
            const uint32_t span = k + 1 == spans ? 0u : k + 1;
            n0 = col_view(span, 0), n1 = col_view(span, 1);
            n2 = col_view(span, 2), n3 = col_view(span, 3);
        }
        if (kOneSpan || k == 0) {
            if (!kOneSpan) off += wrap;
            if (row_tables) {
                // (one row a group where the tile has several tables)
                ++r;
                tab = first.at(next, prob_bits);
                next = __ldg(map + min(r + 1, height - 1));
            }
        }
    };
    for (uint32_t g = 0; g < groups; g += kIter) {
        if (static_cast<int32_t>(o - limit) > 0) {
            status |= WC_ERR_OVERRUN;
            break;
        }
        cp_async_wait<1>();
        __syncwarp();
        const bool more = o >= refill; // warp-uniform
        cp_async16(ring | (fl & (kRing - 1)), stream + fl, more);
        next_chunk<kQ>(more, fl, refill);
        group();
        if (g + 1 < groups) group();
    }
    ring_end(o, n_words, status);
    if (__ballot_sync(kFull, x != WC_STATE_LOW)) status |= WC_ERR_NOT_FINAL;
    return status;
}

// Two units a warp, a half-warp each (variant 7): the ring loop of one-byte units one group wide
// (128 columns), one table in shared memory, no prediction, where thread t of a half holds the
// unit's states t and t + 16. Each thread runs two independent chains of steps (a lookup, a
// multiply-add, the word after the vote), so the scheduler finds twice the work a warp between
// the waits. The words go to the 32 states in the order of the format: at each step the mask of
// the states that need one is the half's bits of the two votes side by side. Each half stages its
// unit's stream in its own ring (`ring`: kRing bytes, a chunk of kQ bytes copied 32 bytes a
// thread). The two units have the same number of groups (the caller pairs such units only); a
// half whose stream overran stops copying and runs on to the end, its status already an error.
// With 56 registers a thread a multiprocessor keeps 36 warps (72 units) where variant 6 keeps 48
// (48 units): on an H200 (GPU runs 125-132) MiniLM int8 and SmolLM2 Q8_0 quants made with
// --for-gpu decode 1.00-1.03x as fast as with variant 6, to 997 GB/s at 2 GiB a launch.
template <uint32_t kRing>
__device__ uint32_t decode_rans_ring_pair(const uint8_t *__restrict__ src, const WcUnit &u,
                                           const uint32_t *table, uint32_t prob_bits,
                                           uint32_t lane, uint32_t ring) {
    static_assert(kRing == 2048, "a ring of 2 KiB");
    constexpr uint32_t kIter = 2;
    constexpr uint32_t kQ = kRing / 4;  // bytes a chunk
    constexpr uint32_t kCopy = kQ / 16; // bytes a thread of a half copies of a chunk
    constexpr uint32_t kCopies = kCopy / 16;
    const uint32_t half = lane >> 4, t = lane & 15u;
    const uint8_t *unit = src + u.src;
    uint32_t xa = __ldg(reinterpret_cast<const uint32_t *>(unit) + t);
    uint32_t xb = __ldg(reinterpret_cast<const uint32_t *>(unit) + t + 16);
    const uint32_t sel = half ? 0x7632u : 0x5410u; // this half's bits of two votes
    const uint32_t low_a = __ballot_sync(kFull, xa < WC_STATE_LOW);
    const uint32_t low_b = __ballot_sync(kFull, xb < WC_STATE_LOW);
    uint32_t status = __byte_perm(low_a, low_b, sel) ? WC_ERR_BAD_INITIAL_STATE : 0u;
    const uint8_t *const stream = unit + WC_STATES_BYTES;
    const uint32_t n_words = (u.len - WC_STATES_BYTES) / 2;
    uint32_t o = 0;
    const uint32_t limit = 2 * n_words;
    bool live = true; // false once the stream overran: no more copies from it
    uint32_t fl = kRing + kCopy * t;
    uint32_t refill = kQ;
#pragma unroll
    for (uint32_t k = 0; k < kCopies; ++k) {
        cp_async16(ring | (kCopy * t + 16 * k), stream + kCopy * t + 16 * k, true);
    }
    cp_async_commit();
#pragma unroll
    for (uint32_t c = 1; c < 4; ++c) {
#pragma unroll
        for (uint32_t k = 0; k < kCopies; ++k) {
            cp_async16(ring | (c * kQ + kCopy * t + 16 * k), stream + c * kQ + kCopy * t + 16 * k,
                       true);
        }
    }
    cp_async_commit();
    const uint32_t mask = (1u << prob_bits) - 1u;
    const uint32_t lta = (1u << t) - 1u;         // the states before state t
    const uint32_t ltb = 0xffffu | (lta << 16); // the states before state t + 16
    const uint32_t groups = u.height;
    const uint32_t stride = static_cast<uint32_t>(u.row_stride);
    uint8_t *out = reinterpret_cast<uint8_t *>(u.dst) + u.first + 4 * t;
    const uint32_t bias = (u.flags & WC_FLAG_BIAS128) ? 0x80u : 0u;
    const uint32_t xor4 = bias * 0x01010101u;
    const TableSmem tab = TableSmem::of(table);
    auto group = [&]() {
        uint32_t ea[4], eb[4];
#pragma unroll
        for (uint32_t j = 0; j < 4; ++j) {
            ea[j] = tab[xa & mask];
            eb[j] = tab[xb & mask];
            const uint32_t xsa = xa >> prob_bits, xsb = xb >> prob_bits;
            const uint32_t xna = ((ea[j] >> 8) & 0xfffu) * xsa + (xsa + (ea[j] >> 20));
            const uint32_t xnb = ((eb[j] >> 8) & 0xfffu) * xsb + (xsb + (eb[j] >> 20));
            const bool needa = xna < WC_STATE_LOW, needb = xnb < WC_STATE_LOW;
            const uint32_t m =
                __byte_perm(__ballot_sync(kFull, needa), __ballot_sync(kFull, needb), sel);
            const uint32_t wa = lds_u16(ring | ((o + 2 * __popc(m & lta)) & (kRing - 1)));
            const uint32_t wb = lds_u16(ring | ((o + 2 * __popc(m & ltb)) & (kRing - 1)));
            xa = needa ? __byte_perm(wa, xna, 0x5410u) : xna;
            xb = needb ? __byte_perm(wb, xnb, 0x5410u) : xnb;
            o += 2 * __popc(m);
        }
        const uint32_t worda = __byte_perm(__byte_perm(ea[0], ea[1], 0x40u),
                                           __byte_perm(ea[2], ea[3], 0x40u), 0x5410u);
        const uint32_t wordb = __byte_perm(__byte_perm(eb[0], eb[1], 0x40u),
                                           __byte_perm(eb[2], eb[3], 0x40u), 0x5410u);
        *reinterpret_cast<uint32_t *>(out) = worda ^ xor4;
        *reinterpret_cast<uint32_t *>(out + 64) = wordb ^ xor4;
        out += stride;
    };
    for (uint32_t g = 0; g < groups; g += kIter) {
        if (static_cast<int32_t>(o - limit) > 0) {
            status |= WC_ERR_OVERRUN;
            live = false;
        }
        cp_async_wait<1>();
        __syncwarp();
        const bool more = live && o >= refill;
#pragma unroll
        for (uint32_t k = 0; k < kCopies; ++k) {
            cp_async16(ring | ((fl + 16 * k) & (kRing - 1)), stream + fl + 16 * k, more);
        }
        next_chunk<kQ>(more, fl, refill);
        group();
        if (g + 1 < groups) group();
    }
    ring_end(o, n_words, status);
    const uint32_t left_a = __ballot_sync(kFull, xa != WC_STATE_LOW);
    const uint32_t left_b = __ballot_sync(kFull, xb != WC_STATE_LOW);
    if (__byte_perm(left_a, left_b, sel)) status |= WC_ERR_NOT_FINAL;
    return status;
}

// Whether a unit can take a half-warp's paired ring loop (see decode_rans_ring_pair).
__device__ __forceinline__ bool pairs(const WcUnit &u, bool fast, bool shared) {
    return fast && shared && u.kind != WC_UNIT_RAW && u.predictor == 0 && u.width == kGroup &&
           (u.flags & (WC_FLAG_WORD_STORES | WC_FLAG_ROW_TABLES | WC_FLAG_COL_TABLES |
                       WC_FLAG_MIX_BF16 | WC_FLAG_FIELD_RUNS)) == WC_FLAG_WORD_STORES &&
           u.row_stride * (u.height - 1) + u.width < (1ull << 32);
}

// A unit of a plane with compact tables (in shared memory): the ring loop (kRing), the fast
// loop, or the general one, as for full tables.
template <uint32_t kRing, class S, bool kCols>
__device__ __forceinline__ uint32_t decode_compact(const uint8_t *__restrict__ src,
                                                   const uint8_t *__restrict__ maps,
                                                   const WcUnit &u, const uint32_t *tables,
                                                   uint32_t prob_bits, uint32_t lane,
                                                   uint32_t ring, bool fast, bool mix,
                                                   bool col_ring) {
    if constexpr (kRing > 0) {
        // Column classes in tiles of whole groups (`col_ring`): one group wide, or wider.
        if constexpr (kCols) {
            if (col_ring && u.width == kGroup) {
                return decode_rans_ring<kRing, TableCompact, false, true, false, false, true>(
                    src, maps, u, tables, prob_bits, lane, ring);
            }
            if (col_ring) {
                return decode_rans_ring<kRing, TableCompact, false, false, false, false, true>(
                    src, maps, u, tables, prob_bits, lane, ring);
            }
        }
        if (fast && mix) {
            return decode_rans_ring<kRing, TableCompact, true>(src, maps, u, tables,
                                                               prob_bits, lane, ring);
        }
        if (fast) {
            return decode_rans_ring<kRing, TableCompact, false>(src, maps, u, tables,
                                                                prob_bits, lane, ring);
        }
    } else {
        if (fast && mix) {
            return decode_rans_fast<TableCompact, true>(src, maps, u, tables, prob_bits,
                                                        lane);
        }
        if (fast) {
            return decode_rans_fast<TableCompact, false>(src, maps, u, tables, prob_bits,
                                                         lane);
        }
    }
    return decode_rans<TablesCompact, S, kCols>(src, maps, u, tables, prob_bits, lane);
}

// Copies one chunk of a raw plane: bytes [first, first + len) in the plane's row-major order.
__device__ void copy_raw(const uint8_t *__restrict__ src, const WcUnit &u, uint32_t lane) {
    const uint8_t *from = src + u.src;
    uint8_t *const dst = reinterpret_cast<uint8_t *>(u.dst);
    const uint32_t len = u.len;
    if (u.flags & WC_FLAG_CONTIGUOUS) {
        uint8_t *to = dst + u.first;
        uint32_t done = 0;
        if (((reinterpret_cast<uintptr_t>(from) | reinterpret_cast<uintptr_t>(to)) & 15) == 0) {
            const uint32_t n16 = len / 16;
            const uint4 *f = reinterpret_cast<const uint4 *>(from);
            uint4 *t = reinterpret_cast<uint4 *>(to);
            for (uint32_t i = lane; i < n16; i += WC_LANES) t[i] = __ldg(f + i);
            done = n16 * 16;
        }
        for (uint32_t i = done + lane; i < len; i += WC_LANES) to[i] = from[i];
    } else {
        const uint64_t width = u.width;
        for (uint32_t i = lane; i < len; i += WC_LANES) {
            const uint64_t k = u.first + i;
            const uint64_t r = k / width;
            const uint64_t c = k - r * width;
            dst[r * u.row_stride + Cols::of(u, 0).at(static_cast<uint32_t>(c))] = from[i];
        }
    }
}

// kThreads / kMinBlocks bound the registers (65536 / (kThreads * kMinBlocks) each): the
// variants trade the largest block for more resident warps (WcLaunch.variant picks one).
//
// A block takes its range of units plane by plane: it loads the plane's tables into shared
// memory (all warps wait for it), then its warps take the plane's units in order from a shared
// counter, each as soon as it is free, so that no warp idles while units remain; the block
// moves to the next plane when all its warps are done with this one.
template <uint32_t kThreads, uint32_t kMinBlocks, class S, bool kFast = false, uint32_t kRing = 0,
          bool kCompact = false, bool kPair = false, bool kCols = false>
__global__ void __launch_bounds__(kThreads, kMinBlocks) wc_decode_kernel(const WcLaunch p) {
    __shared__ uint32_t next_unit;
    const WcRange range = reinterpret_cast<const WcRange *>(p.ranges)[blockIdx.x];
    const WcGroup *groups = reinterpret_cast<const WcGroup *>(p.groups);
    const uint8_t *src = reinterpret_cast<const uint8_t *>(p.src);
    const uint8_t *maps = reinterpret_cast<const uint8_t *>(p.maps);
    const WcUnit *units = reinterpret_cast<const WcUnit *>(p.units);
    uint32_t *status = reinterpret_cast<uint32_t *>(p.status);
    const uint32_t lane = threadIdx.x % WC_LANES;
    const uint32_t end = range.first_unit + range.n_units;
    uint32_t start = range.first_unit;
    // kRing: this warp's stream ring of kRing bytes, after the tables, aligned to its size in
    // the shared window.
    uint32_t ring = 0;
    if (kRing) {
        const uint32_t base =
            static_cast<uint32_t>(__cvta_generic_to_shared(smem_tables + p.smem_entries));
        // kPair: two rings a warp, one a half (a unit decoded by the whole warp takes the first).
        const uint32_t rings = kPair ? 2u : 1u;
        ring = ((base + kRing - 1) & ~(kRing - 1)) + (threadIdx.x / WC_LANES) * rings * kRing;
    }
    for (uint32_t gi = range.first_group; start < end && gi < p.n_groups; ++gi) {
        const WcGroup g = groups[gi];
        const uint32_t seg_end = min(end, g.first_unit + g.n_units);
        const uint32_t *tables = reinterpret_cast<const uint32_t *>(p.tables) + g.table;
        // Words of the tables: an entry a slot, or (compact) 256 records and a byte a slot.
        const bool compact = (g.flags & WC_GROUP_COMPACT_TABLES) != 0;
        const uint32_t entries =
            g.prob_bits == 0 ? 0u
            : compact        ? g.n_tables * (256u + (1u << g.prob_bits) / 4u)
                             : static_cast<uint32_t>(g.n_tables) << g.prob_bits;
        // The host sets WC_GROUP_GLOBAL_TABLES when the tables do not fit; checked again here.
        const bool shared = (g.flags & WC_GROUP_GLOBAL_TABLES) == 0 && entries <= p.smem_entries;
        __syncthreads(); // every warp is done with the previous plane's tables and counter
        if (shared) {
            const uint4 *from = reinterpret_cast<const uint4 *>(tables);
            for (uint32_t i = threadIdx.x; i < entries / 4; i += blockDim.x) {
                reinterpret_cast<uint4 *>(smem_tables)[i] = __ldg(from + i);
            }
        }
        if (threadIdx.x == 0) next_unit = start;
        __syncthreads();
        // One unit, by the whole warp.
        auto one = [&](uint32_t index) {
            const WcUnit u = units[index];
            uint32_t st = 0;
            if (u.kind == WC_UNIT_RAW) {
                copy_raw(src, u, lane);
            } else if (compact && (!kCompact || !shared)) {
                // The host launches the twin that reads compact tables (kCompact) and never
                // lets them miss shared memory.
                st = WC_ERR_TABLES;
            } else {
                // Whole row spans, and the tile's bytes within 4 GiB (32-bit offsets).
                const bool mix = (u.flags & WC_FLAG_MIX_BF16) != 0;
                const uint64_t es = mix ? 2u : 1u;
                // Column classes take the ring loop where a tile is whole groups wide, else the
                // general loop (`rows` and `fast` hold for units of one table a row only).
                const bool col = (u.flags & WC_FLAG_COL_TABLES) != 0;
                const bool spans = kFast && (u.flags & WC_FLAG_WORD_STORES) &&
                                   u.row_stride * (u.height - 1) + es * u.width < (1ull << 32);
                const bool rows = spans && !col;
                const bool fast = rows && u.width % kGroup == 0;
                // GGUF block fields in runs of 4 columns (ring loops of their own): whole
                // groups of columns, or an edge tile narrower than a group (one table).
                const bool field = kFast && !mix && !col && (u.flags & WC_FLAG_FIELD_RUNS) != 0;
                // Column classes in tiles of whole groups a row: the ring loops' column tables.
                // (Variant 8 only: in the others' kernels the loops of one table compile as
                // they did without them.)
                const bool col_ring =
                    kCols && col && spans && shared && !mix && u.width % kGroup == 0;
                const bool runs = field && u.width % kGroup == 0;
                const bool runs_narrow = field && u.width > 0 && u.width < kGroup &&
                                         (u.width & (u.width - 1)) == 0 &&
                                         u.width * u.height % kGroup == 0 &&
                                         (u.flags & WC_FLAG_ROW_TABLES) == 0;
                if (col && !kCols) {
                    // Column classes are compiled into variant 8 only (the host launches it
                    // for them): in the others' kernels the other loops compile as they did
                    // without them (inlined there, they cost SmolLM2's Q8_0 quants 4%).
                    st = WC_ERR_VARIANT;
                } else if (kCompact && compact) {
                    st = decode_compact<kRing, S, kCols>(src, maps, u, smem_tables, g.prob_bits,
                                                         lane, ring, fast, mix, col_ring);
                } else if constexpr (kRing > 0) {
                    // Variant 6: the fast path through the warp's stream ring.
                    // One table (files made for the GPU): no row-table step in the loop.
                    const bool one_table =
                        (u.flags & (WC_FLAG_ROW_TABLES | WC_FLAG_COL_TABLES)) == 0;
                    // Narrower than a group, whole groups of whole rows (one table only).
                    const bool narrow = rows && one_table && shared && u.width > 0 &&
                                        u.width < kGroup && (u.width & (u.width - 1)) == 0 &&
                                        u.width * u.height % kGroup == 0;
                    const bool one_span = u.width == kGroup || narrow;
                    if (kCols && col_ring && u.width == kGroup) {
                        st = decode_rans_ring<kRing, TableSmem, false, true, false, false, kCols>(
                            src, maps, u, smem_tables, g.prob_bits, lane, ring);
                    } else if (kCols && col_ring) {
                        st = decode_rans_ring<kRing, TableSmem, false, false, false, false, kCols>(
                            src, maps, u, smem_tables, g.prob_bits, lane, ring);
                    } else if ((runs || runs_narrow) && shared && one_table &&
                        (u.width == kGroup || runs_narrow)) {
                        st = decode_rans_ring<kRing, TableSmem, false, true, false, true>(
                            src, maps, u, smem_tables, g.prob_bits, lane, ring);
                    } else if (runs && shared) {
                        st = decode_rans_ring<kRing, TableSmem, false, false, true, true>(
                            src, maps, u, smem_tables, g.prob_bits, lane, ring);
                    } else if ((fast || narrow) && shared && mix && one_span && one_table) {
                        st = decode_rans_ring<kRing, TableSmem, true, true, false>(
                            src, maps, u, smem_tables, g.prob_bits, lane, ring);
                    } else if (fast && shared && mix && one_span) {
                        st = decode_rans_ring<kRing, TableSmem, true, true>(
                            src, maps, u, smem_tables, g.prob_bits, lane, ring);
                    } else if (fast && shared && mix && one_table) {
                        st = decode_rans_ring<kRing, TableSmem, true, false, false>(
                            src, maps, u, smem_tables, g.prob_bits, lane, ring);
                    } else if (fast && shared && mix) {
                        st = decode_rans_ring<kRing, TableSmem, true>(src, maps, u, smem_tables,
                                                                  g.prob_bits, lane, ring);
                    } else if ((fast || narrow) && shared && one_table && one_span) {
                        st = decode_rans_ring<kRing, TableSmem, false, true, false>(
                            src, maps, u, smem_tables, g.prob_bits, lane, ring);
                    } else if (fast && shared) {
                        st = decode_rans_ring<kRing, TableSmem, false>(src, maps, u, smem_tables,
                                                                   g.prob_bits, lane, ring);
                    } else if (fast && mix) {
                        st = decode_rans_ring<kRing, TableGlobal, true>(src, maps, u, tables, g.prob_bits,
                                                                 lane, ring);
                    } else if (fast) {
                        st = decode_rans_ring<kRing, TableGlobal, false>(src, maps, u, tables,
                                                                  g.prob_bits, lane, ring);
                    } else if (shared) {
                        st = decode_rans<TablesFull<true>, S, kCols>(src, maps, u, smem_tables, g.prob_bits, lane);
                    } else {
                        st = decode_rans<TablesFull<false>, S, kCols>(src, maps, u, tables, g.prob_bits, lane);
                    }
                } else if (fast && shared && mix) {
                    st = decode_rans_fast<TableSmem, true>(src, maps, u, smem_tables, g.prob_bits,
                                                           lane);
                } else if (fast && shared) {
                    st = decode_rans_fast<TableSmem, false>(src, maps, u, smem_tables,
                                                            g.prob_bits, lane);
                } else if (fast && mix) {
                    st = decode_rans_fast<TableGlobal, true>(src, maps, u, tables, g.prob_bits,
                                                             lane);
                } else if (fast) {
                    st = decode_rans_fast<TableGlobal, false>(src, maps, u, tables, g.prob_bits,
                                                              lane);
                } else if (shared) {
                    st = decode_rans<TablesFull<true>, S, kCols>(src, maps, u, smem_tables, g.prob_bits, lane);
                } else {
                    st = decode_rans<TablesFull<false>, S, kCols>(src, maps, u, tables, g.prob_bits, lane);
                }
                // The inverse prediction reads the unit's geometry again (from L1), so that
                // the decoding loop above keeps none of it in registers.
                const WcUnit v = units[index];
                if (v.predictor != 0) {
                    // A merged unit's residuals (and rebuilt exponents) are the elements' high
                    // bytes until merge_tile() puts in the sign-mantissa bytes.
                    const bool vmix = (v.flags & WC_FLAG_MIX_BF16) != 0;
                    uint8_t *const home = reinterpret_cast<uint8_t *>(v.dst) + (vmix ? 1 : 0);
                    __syncwarp(); // residuals written by every lane are visible to every lane
                    const uint32_t vbias = (v.flags & WC_FLAG_BIAS128) ? 0x80u : 0u;
                    // Contiguous bytes a row, rows 4-byte aligned: a word a step.
                    uint8_t *const tile = home + v.first; // column c0 of the tile's first row
                    const bool by_words =
                        !vmix && v.group == 1 && v.col_stride == 1 && v.width % 4 == 0 &&
                        ((reinterpret_cast<uintptr_t>(tile) | v.row_stride) & 3u) == 0;
                    if (by_words) {
                        reconstruct_words(tile, v.row_stride, v.height, v.width, v.predictor,
                                          vbias, lane);
                    } else {
                        reconstruct(home, v.row_stride, Cols::of(v, v.first), v.height, v.width,
                                    v.predictor, vbias, lane);
                    }
                    if (vmix) {
                        __syncwarp();
                        merge_tile(reinterpret_cast<uint8_t *>(v.dst), v.row_stride, v.first,
                                   src + v.mix, v.height, v.width, lane);
                    }
                }
            }
            if (lane == 0) status[index] = st;
        };
        for (;;) {
            uint32_t index = 0;
            if (lane == 0) index = atomicAdd(&next_unit, kPair ? 2u : 1u);
            index = __shfl_sync(kFull, index, 0);
            if (index >= seg_end) break;
            if constexpr (kPair) {
                // Two units of one height that both take the paired loop: a half-warp each.
                if (index + 1 < seg_end && !compact) {
                    const WcUnit mine = units[index + (lane >> 4)];
                    const bool ok = pairs(mine, kFast, shared);
                    const uint32_t h0 = __shfl_sync(kFull, mine.height, 0);
                    const uint32_t h1 = __shfl_sync(kFull, mine.height, 16);
                    if (__all_sync(kFull, ok) && h0 == h1) {
                        const uint32_t st = decode_rans_ring_pair<kRing>(
                            src, mine, smem_tables, g.prob_bits, lane, ring + (lane >> 4) * kRing);
                        if ((lane & 15u) == 0) status[index + (lane >> 4)] = st;
                        continue;
                    }
                }
                one(index);
                if (index + 1 < seg_end) one(index + 1);
                continue;
            }
            one(index);
        }
        start = seg_end;
    }
}

using KernelFn = void (*)(const WcLaunch);

// The compiled variants, in WcLaunch.variant order, with the largest block each takes: the
// register window over the stream (0) or per-step loads (1, 2); blocks of up to 32 warps and
// 64 registers a thread (0, 1) or of 16 warps and fewer registers, so that more warps fit (2).
constexpr KernelFn kVariants[WC_VARIANTS] = {
    wc_decode_kernel<1024, 1, StreamWindow>,
    wc_decode_kernel<1024, 1, StreamLoad>,
    wc_decode_kernel<512, 3, StreamLoad>,
    wc_decode_kernel<1024, 1, StreamLoad, true>,
    wc_decode_kernel<384, 4, StreamLoad, true>,
    wc_decode_kernel<256, 8, StreamLoad, true>,
    wc_decode_kernel<384, 4, StreamLoad, true, 2048>,
    wc_decode_kernel<384, 3, StreamLoad, true, 2048, false, true>,
    wc_decode_kernel<384, 4, StreamLoad, true, 2048, false, false, true>,
};
// Their twins that also read compact tables (WC_VARIANT_COMPACT): the compact paths in kernels
// of their own, so that the loops of full tables compile as they did without them (sharing a
// kernel, they lost 3-8% on H100, GPU runs 30-31).
constexpr KernelFn kVariantsCompact[WC_VARIANTS] = {
    wc_decode_kernel<1024, 1, StreamWindow, false, 0, true>,
    wc_decode_kernel<1024, 1, StreamLoad, false, 0, true>,
    wc_decode_kernel<512, 3, StreamLoad, false, 0, true>,
    wc_decode_kernel<1024, 1, StreamLoad, true, 0, true>,
    wc_decode_kernel<384, 4, StreamLoad, true, 0, true>,
    wc_decode_kernel<256, 8, StreamLoad, true, 0, true>,
    wc_decode_kernel<384, 4, StreamLoad, true, 2048, true>,
    wc_decode_kernel<384, 3, StreamLoad, true, 2048, true, true>,
    wc_decode_kernel<384, 4, StreamLoad, true, 2048, true, false, true>,
};

// The compiled kernel of a WcLaunch.variant (WC_VARIANT_COMPACT picks the twin); null if none.
KernelFn kernel_of(uint32_t variant) {
    const uint32_t base = variant & ~WC_VARIANT_COMPACT;
    if (base >= WC_VARIANTS) return nullptr;
    return (variant & WC_VARIANT_COMPACT) ? kVariantsCompact[base] : kVariants[base];
}
constexpr uint32_t kVariantWarps[WC_VARIANTS] = {32, 32, 16, 32, 12, 8, 12, 12, 12};
// The ring a warp of each variant stages its stream in (bytes; 0: none), after the tables, and
// how many a warp has (two where its halves decode a unit each).
constexpr uint32_t kVariantRing[WC_VARIANTS] = {0, 0, 0, 0, 0, 0, 2048, 2048, 2048};
constexpr uint32_t kVariantRings[WC_VARIANTS] = {0, 0, 0, 0, 0, 0, 1, 2, 1};

// Dynamic shared memory of a launch: the tables, then (ring variants) a ring per warp and the
// slack that aligns the first. The tables end 16-byte aligned (smem_tables is, and every table
// is a multiple of 16 bytes), so the slack is at most a ring less 16 bytes: those 16 bytes let
// 12 blocks of 4 warps with 11-bit tables share a multiprocessor's 228 KiB instead of 11.
size_t smem_bytes(uint32_t variant, uint32_t smem_entries, uint32_t warps) {
    const size_t ring = kVariantRing[variant & ~WC_VARIANT_COMPACT];
    const size_t rings = kVariantRings[variant & ~WC_VARIANT_COMPACT];
    size_t bytes = static_cast<size_t>(smem_entries) * sizeof(uint32_t);
    if (ring > 0) bytes += static_cast<size_t>(warps) * rings * ring + (ring - 16);
    return bytes;
}

} // namespace

extern "C" int wc_decode_prepare(uint32_t variant, uint32_t smem_entries) {
    const KernelFn kernel = kernel_of(variant);
    if (kernel == nullptr) return static_cast<int>(cudaErrorInvalidValue);
    const size_t smem =
        smem_bytes(variant, smem_entries, kVariantWarps[variant & ~WC_VARIANT_COMPACT]);
    return static_cast<int>(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
}

extern "C" int wc_decode_launch(const WcLaunch *launch, void *stream) {
    if (launch->n_ranges == 0) return static_cast<int>(cudaSuccess);
    const KernelFn kernel = kernel_of(launch->variant);
    if (kernel == nullptr) return static_cast<int>(cudaErrorInvalidValue);
    const uint32_t warps = launch->warps_per_block;
    if (warps == 0 || warps > kVariantWarps[launch->variant & ~WC_VARIANT_COMPACT]) {
        return static_cast<int>(cudaErrorInvalidValue);
    }
    const size_t smem = smem_bytes(launch->variant, launch->smem_entries, warps);
    kernel<<<launch->n_ranges, warps * WC_LANES, smem, static_cast<cudaStream_t>(stream)>>>(
        *launch);
    return static_cast<int>(cudaGetLastError());
}

extern "C" int wc_decode_kernel_info(uint32_t variant, WcKernelInfo *info) {
    const KernelFn kernel = kernel_of(variant);
    if (kernel == nullptr) return static_cast<int>(cudaErrorInvalidValue);
    cudaFuncAttributes attr;
    cudaError_t err = cudaFuncGetAttributes(&attr, kernel);
    if (err != cudaSuccess) return static_cast<int>(err);
    int device = 0, optin = 0, sms = 0;
    if ((err = cudaGetDevice(&device)) != cudaSuccess) return static_cast<int>(err);
    err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (err != cudaSuccess) return static_cast<int>(err);
    err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    if (err != cudaSuccess) return static_cast<int>(err);
    info->num_regs = attr.numRegs;
    info->shared_bytes = static_cast<int32_t>(attr.sharedSizeBytes);
    info->local_bytes = static_cast<int32_t>(attr.localSizeBytes);
    info->max_threads_per_block = attr.maxThreadsPerBlock;
    info->ptx_version = attr.ptxVersion;
    info->binary_version = attr.binaryVersion;
    info->max_dynamic_shared = optin - static_cast<int32_t>(attr.sharedSizeBytes);
    info->multiprocessors = sms;
    return static_cast<int>(cudaSuccess);
}

extern "C" const char *wc_error_string(int code) {
    return cudaGetErrorString(static_cast<cudaError_t>(code));
}
