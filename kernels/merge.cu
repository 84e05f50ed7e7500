// The merge launch: planes that the decode launch (decode.cu) sent to scratch memory put in
// their final place. bf16_split and f32_split elements from their byte planes, the heads of
// GGUF K-quant blocks into blocks whose other bytes were decoded in place, and whole GGUF
// blocks (Q4_0, Q4_1, Q8_0, Q8_1) from their head planes and tail plane.
//
// Compiled apart from decode.cu, as relocatable device code (kernels/builds.txt): so compiled,
// `wc_merge_blocks_kernel` decoded the GGUF slice 7% faster on an H200 than compiled whole with
// the decode kernels, which in turn run 1-3% faster compiled whole (docs/PERFORMANCE.md, GPU
// runs 152-153).
#include <cuda_runtime.h>
#include <stdint.h>

#include "wcodec_kernels.h"

namespace {

// WC_MERGE_BLOCKS for blocks of K head bytes and T tail bytes, G blocks a thread at a time (G
// blocks are a whole number of 16-byte words): the tail bytes 16 at a load, the head bytes of
// the G blocks a word at a load from each head plane, the blocks assembled in registers (every
// index a constant once unrolled) and stored 16 bytes at a time. Needs the output and the tail
// 16-byte aligned and the head planes 4-byte aligned; the piece's last blocks (fewer than G)
// are written byte by byte.
template <uint32_t K, uint32_t T, uint32_t G>
__device__ void merge_block_groups(const WcMerge &m, const uint8_t *p0) {
    constexpr uint32_t B = K + T, WORDS = G * B / 4, TAIL_WORDS = G * T / 4;
    static_assert(G * B % 16 == 0 && G % 4 == 0 && T % 16 == 0, "whole words");
    uint8_t *out = reinterpret_cast<uint8_t *>(m.dst);
    const uint8_t *tail = reinterpret_cast<const uint8_t *>(m.tail);
    const uint32_t groups = m.n / G;
    for (uint32_t g = threadIdx.x; g < groups; g += blockDim.x) {
        uint32_t t[TAIL_WORDS];
        const uint4 *ts = reinterpret_cast<const uint4 *>(tail + static_cast<uint64_t>(g) * G * T);
#pragma unroll
        for (uint32_t k = 0; k < TAIL_WORDS / 4; ++k) {
            const uint4 v = ts[k];
            t[4 * k] = v.x;
            t[4 * k + 1] = v.y;
            t[4 * k + 2] = v.z;
            t[4 * k + 3] = v.w;
        }
        uint32_t h[K][G / 4];
#pragma unroll
        for (uint32_t j = 0; j < K; ++j) {
            const uint32_t *hs = reinterpret_cast<const uint32_t *>(p0 + j * m.plane_len + g * G);
#pragma unroll
            for (uint32_t q = 0; q < G / 4; ++q) h[j][q] = hs[q];
        }
        uint32_t w[WORDS];
#pragma unroll
        for (uint32_t x = 0; x < WORDS; ++x) {
            uint32_t v = 0;
#pragma unroll
            for (uint32_t k = 0; k < 4; ++k) {
                const uint32_t p = 4 * x + k, b = p / B, o = p % B;
                const uint32_t byte =
                    o < K ? (h[o][b / 4] >> (8 * (b % 4))) & 0xffu
                          : (t[(b * T + o - K) / 4] >> (8 * ((b * T + o - K) % 4))) & 0xffu;
                v |= byte << (8 * k);
            }
            w[x] = v;
        }
        uint4 *dst = reinterpret_cast<uint4 *>(out + static_cast<uint64_t>(g) * G * B);
#pragma unroll
        for (uint32_t q = 0; q < WORDS / 4; ++q) {
            dst[q] = make_uint4(w[4 * q], w[4 * q + 1], w[4 * q + 2], w[4 * q + 3]);
        }
    }
    for (uint32_t q = groups * G * B + threadIdx.x; q < m.n * B; q += blockDim.x) {
        const uint32_t i = q / B, o = q % B;
        out[q] = o < K ? p0[o * m.plane_len + i] : tail[static_cast<uint64_t>(i) * T + (o - K)];
    }
}

// WC_MERGE_BLOCKS: whole GGUF blocks from their head planes and tail plane in scratch. The
// common layouts (2 or 4 head bytes, 16 or 32 tail bytes) in groups of blocks a thread
// (`merge_block_groups`); otherwise, or where the addresses do not allow 16-byte words, 16
// output bytes a thread at a time, a byte a load.
__device__ void merge_blocks(const WcMerge &m, const uint8_t *p0) {
    uint8_t *out = reinterpret_cast<uint8_t *>(m.dst);
    const uint8_t *tail = reinterpret_cast<const uint8_t *>(m.tail);
    const uint32_t block = m.elem_size, head = m.fields, rest = block - head;
    const bool words = (reinterpret_cast<uintptr_t>(out) & 15u) == 0 &&
                       (reinterpret_cast<uintptr_t>(tail) & 15u) == 0 &&
                       (reinterpret_cast<uintptr_t>(p0) & 3u) == 0 && m.plane_len % 4 == 0;
    if (words && head == 2 && rest == 16) return merge_block_groups<2, 16, 8>(m, p0);
    if (words && head == 4 && rest == 16) return merge_block_groups<4, 16, 4>(m, p0);
    if (words && head == 2 && rest == 32) return merge_block_groups<2, 32, 8>(m, p0);
    if (words && head == 4 && rest == 32) return merge_block_groups<4, 32, 4>(m, p0);
    const int64_t total = static_cast<int64_t>(m.n) * block;
    const int64_t skew = static_cast<int64_t>(reinterpret_cast<uintptr_t>(out) & 15u);
    const int64_t chunks = (total + skew + 15) / 16;
    for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
        const int64_t first = c * 16 - skew;
        const int64_t lo = first < 0 ? 0 : first;
        const int64_t hi = first + 16 < total ? first + 16 : total;
        uint32_t i = static_cast<uint32_t>(lo / block);
        uint32_t o = static_cast<uint32_t>(lo - static_cast<int64_t>(i) * block);
        for (int64_t q = lo; q < hi; ++q) {
            out[q] = o < head ? p0[o * m.plane_len + i]
                              : tail[static_cast<uint64_t>(i) * rest + (o - head)];
            if (++o == block) {
                o = 0;
                ++i;
            }
        }
    }
}

// The second launch, for tensors whose transform mixes bits of several planes into each
// element (bf16_split, f32_split), and for the heads of GGUF blocks (whole blocks: see
// `wc_merge_blocks_kernel`): their planes were decoded back to back into scratch memory; each
// block merges one piece. Reads are
// coalesced, and so are writes but a GGUF block head's (a word every block): thread t takes
// elements t, t + blockDim, ...
__global__ void __launch_bounds__(256) wc_merge_kernel(const WcMerge *pieces) {
    const WcMerge m = pieces[blockIdx.x];
    const uint8_t *p0 = reinterpret_cast<const uint8_t *>(m.src);
    const uint8_t *p1 = p0 + m.plane_len;
    if (m.kind == WC_MERGE_BLOCK_HEAD) {
        // 2 or 4 head bytes a block: one store where the block's address allows (always, for
        // the block types' sizes and 4-aligned tensors), else byte by byte.
        uint8_t *out = reinterpret_cast<uint8_t *>(m.dst);
        for (uint32_t i = threadIdx.x; i < m.n; i += blockDim.x) {
            uint8_t *b = out + static_cast<uint64_t>(i) * m.elem_size;
            uint32_t v = 0;
            for (uint32_t j = 0; j < m.fields; ++j) {
                v |= static_cast<uint32_t>(p0[j * m.plane_len + i]) << (8 * j);
            }
            const uintptr_t a = reinterpret_cast<uintptr_t>(b);
            if (m.fields == 4 && (a & 3) == 0) {
                *reinterpret_cast<uint32_t *>(b) = v;
            } else if (m.fields == 2 && (a & 1) == 0) {
                *reinterpret_cast<uint16_t *>(b) = static_cast<uint16_t>(v);
            } else {
                for (uint32_t j = 0; j < m.fields; ++j) b[j] = static_cast<uint8_t>(v >> (8 * j));
            }
        }
    } else if (m.kind == WC_MERGE_BF16_SPLIT) {
        uint16_t *out = reinterpret_cast<uint16_t *>(m.dst);
        for (uint32_t i = threadIdx.x; i < m.n; i += blockDim.x) {
            const uint32_t e = p0[i], sm = p1[i];
            out[i] = static_cast<uint16_t>(((sm & 0x80u) << 8) | (e << 7) | (sm & 0x7fu));
        }
    } else if (m.kind == WC_MERGE_F32_SPLIT) {
        const uint8_t *p2 = p1 + m.plane_len;
        const uint8_t *p3 = p2 + m.plane_len;
        uint32_t *out = reinterpret_cast<uint32_t *>(m.dst);
        for (uint32_t i = threadIdx.x; i < m.n; i += blockDim.x) {
            const uint32_t e = p0[i], sm = p1[i];
            out[i] = ((sm & 0x80u) << 24) | (e << 23) | ((sm & 0x7fu) << 16) |
                     (static_cast<uint32_t>(p2[i]) << 8) | p3[i];
        }
    }
}

// The merge launch's whole GGUF blocks (WC_MERGE_BLOCKS pieces; the others return at once), in
// a kernel of its own: their code takes 138 registers a thread (97 compiled whole), which in
// `wc_merge_kernel` would cut the occupancy of every other merge (the heads of K-quants,
// bf16_split, f32_split).
__global__ void __launch_bounds__(256) wc_merge_blocks_kernel(const WcMerge *pieces) {
    const WcMerge m = pieces[blockIdx.x];
    if (m.kind == WC_MERGE_BLOCKS) merge_blocks(m, reinterpret_cast<const uint8_t *>(m.src));
}

} // namespace

extern "C" int wc_merge_launch(uint64_t pieces, uint32_t n, void *stream) {
    if (n == 0) return static_cast<int>(cudaSuccess);
    const WcMerge *p = reinterpret_cast<const WcMerge *>(pieces);
    wc_merge_kernel<<<n, 256, 0, static_cast<cudaStream_t>(stream)>>>(p);
    wc_merge_blocks_kernel<<<n, 256, 0, static_cast<cudaStream_t>(stream)>>>(p);
    return static_cast<int>(cudaGetLastError());
}
