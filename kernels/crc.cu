// CRC-32C of chunks of the staged bytes on the GPU: the checks of every unit and raw plane,
// made on the device after the upload instead of on the host's cores before it.
//
// A warp takes one chunk. Its lanes read the chunk's 4-byte words coalesced, lane l the words
// l, l + 32, ... counted from the end of the chunk padded at the front to whole blocks of 32
// words (zero words in front leave a CRC from a zero state unchanged), and each keeps the CRC of
// its words alone: acc = acc x^1024 + word x^32 (mod the polynomial, bit-reflected), each
// product four lookups in tables in shared memory (slice-by-4 T0..T3, and U0..U3 for x^1024).
// The initial 0xFFFFFFFF goes into the chunk's first word. Five rounds of shuffles then combine
// the lanes (lane l carried past lane l + 2^s's 4 2^s bytes: a multiplication by a constant,
// bit by bit), and lane 0 takes the chunk's last 1-3 bytes one at a time, and compares a unit's
// CRC with the stored one (the host reads one word when every unit matches). The same algorithm,
// step for step, is crates/cuda/src/crc.rs (`warp_crc32c`), tested against the format's CRC.
#include "wcodec_kernels.h"

namespace {

constexpr uint32_t kPoly = 0x82F63B78u;
constexpr uint32_t kFull = 0xffffffffu;
constexpr uint32_t kCrcThreads = 256;

// a * b modulo the polynomial, both bit-reflected (bit 31 is x^0).
__device__ __forceinline__ uint32_t mul_mod(uint32_t a, uint32_t b) {
    uint32_t product = 0;
#pragma unroll
    for (int bit = 31; bit >= 0; --bit) {
        if ((a >> bit) & 1u) product ^= b;
        b = (b & 1u) ? (b >> 1) ^ kPoly : b >> 1;
    }
    return product;
}

__global__ void __launch_bounds__(kCrcThreads) wc_crc32c_kernel(const WcCrcChunk *chunks,
                                                                 uint32_t n,
                                                                 const uint8_t *__restrict__ src,
                                                                 const uint32_t *tables,
                                                                 uint32_t *out,
                                                                 uint32_t *mismatch) {
    __shared__ uint32_t t[WC_CRC_TABLE_WORDS];
    for (uint32_t i = threadIdx.x; i < WC_CRC_TABLE_WORDS; i += blockDim.x) t[i] = tables[i];
    __syncthreads();
    const uint32_t lane = threadIdx.x % 32;
    const uint32_t warps = gridDim.x * (blockDim.x / 32);
    for (uint32_t c = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; c < n; c += warps) {
        const WcCrcChunk chunk = chunks[c];
        // The host stages every chunk 4-aligned (units 16-aligned, raw planes cut in 64 KiB).
        const uint32_t *words = reinterpret_cast<const uint32_t *>(src + chunk.src);
        const uint32_t len = chunk.len & ~WC_CRC_COMPARE;
        const uint32_t n_words = len / 4;
        const uint32_t pad = (32 - n_words % 32) % 32;
        const uint32_t blocks = (n_words + pad) / 32;
        uint32_t acc = 0;
        for (uint32_t j = 0; j < blocks; ++j) {
            const int32_t at = static_cast<int32_t>(32 * j + lane) - static_cast<int32_t>(pad);
            uint32_t w = at >= 0 ? __ldg(words + at) : 0u;
            if (at == 0) w ^= 0xFFFFFFFFu;
            const uint32_t carried = t[1024 + (acc & 0xff)] ^ t[1280 + ((acc >> 8) & 0xff)] ^
                                     t[1536 + ((acc >> 16) & 0xff)] ^ t[1792 + (acc >> 24)];
            acc = carried ^ t[768 + (w & 0xff)] ^ t[512 + ((w >> 8) & 0xff)] ^
                  t[256 + ((w >> 16) & 0xff)] ^ t[w >> 24];
        }
#pragma unroll
        for (uint32_t s = 0; s < 5; ++s) {
            const uint32_t other = __shfl_down_sync(kFull, acc, 1u << s);
            if ((lane & ((2u << s) - 1)) == 0) acc = mul_mod(t[2048 + s], acc) ^ other;
        }
        if (lane == 0) {
            uint32_t crc = n_words == 0 ? 0xFFFFFFFFu : acc;
            for (uint32_t i = 4 * n_words; i < len; ++i) {
                crc = t[(crc ^ src[chunk.src + i]) & 0xff] ^ (crc >> 8);
            }
            out[c] = ~crc;
            if ((chunk.len & WC_CRC_COMPARE) && ~crc != chunk.stored) *mismatch = 1;
        }
    }
}

} // namespace

extern "C" int wc_crc32c_launch(uint64_t chunks, uint32_t n, uint64_t src, uint64_t tables,
                                uint64_t out, uint64_t mismatch, uint32_t blocks, void *stream) {
    if (n == 0) return 0;
    if (blocks == 0) return static_cast<int>(cudaErrorInvalidValue);
    wc_crc32c_kernel<<<blocks, kCrcThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        reinterpret_cast<const WcCrcChunk *>(chunks), n, reinterpret_cast<const uint8_t *>(src),
        reinterpret_cast<const uint32_t *>(tables), reinterpret_cast<uint32_t *>(out),
        reinterpret_cast<uint32_t *>(mismatch));
    return static_cast<int>(cudaGetLastError());
}
