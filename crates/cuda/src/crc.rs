//! CRC-32C on the GPU: the tables the CRC kernel (kernels/crc.cu) reads, and the same
//! algorithm in Rust, step for step, for the emulator and the tests.
//!
//! A warp takes one chunk of the staged bytes (a unit, or 64 KiB of a raw plane). Its 32 lanes
//! read the chunk's 4-byte words coalesced, lane `l` the words `l`, `l + 32`, ... counted from
//! the chunk's end (the chunk is padded at the front with zero words to whole blocks of 32
//! words, which leaves a CRC computed from a zero state unchanged), and each keeps the CRC of
//! its words alone: `acc = acc · x^1024 ⊕ word · x^32` (mod the polynomial, bit-reflected), a
//! block of 128 bytes a step, each product four table lookups. The lanes' CRCs are then
//! combined in 5 rounds of shuffles (lane `l` shifted past lane `l + 2^s`'s bytes), the
//! initial `0xFFFFFFFF` having been XORed into the chunk's first word, and lane 0 takes the
//! last 1-3 bytes of the chunk one at a time.
//!
//! On the host, chunks of one check (a raw plane cut in chunks) combine with
//! `wcodec_format::checksum::combine_parts`.

/// The CRC-32C polynomial, bit-reflected.
const POLY: u32 = 0x82F6_3B78;

/// Bytes of a raw plane a chunk covers (a unit is one chunk however long): a multiple of 4,
/// so that every chunk of a 4-aligned plane starts 4-aligned.
pub const CHUNK: u64 = 1 << 16;

/// Lanes of a warp, and bytes of a block of words (one word a lane).
const LANES: usize = 32;
const BLOCK: usize = 4 * LANES;

/// Words of the device tables: slice-by-4 tables `T0..T3` (a word times x^32), the tables
/// `U0..U3` of x^1024 (a lane's CRC carried past one block), then the five factors x^(32 2^s)
/// of the lanes' combining rounds, and padding to a multiple of 4 words.
pub const TABLE_WORDS: usize = 8 * 256 + 8;

/// The CRC state after `n` zero bytes from `state` (no pre- or post-inversion): `state ·
/// x^(8 n)`.
fn zeros(mut state: u32, n: usize, byte_table: &[u32; 256]) -> u32 {
    for _ in 0..n {
        state = byte_table[(state & 0xff) as usize] ^ (state >> 8);
    }
    state
}

fn byte_table() -> [u32; 256] {
    std::array::from_fn(|i| {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
        }
        c
    })
}

/// The tables the CRC kernel loads into shared memory (`TABLE_WORDS` words).
pub fn device_tables() -> Vec<u32> {
    let t0 = byte_table();
    let mut out = vec![0u32; TABLE_WORDS];
    // T_k[i]: byte i followed by k zero bytes, for the byte k places from a word's end.
    for k in 0..4 {
        for i in 0..256 {
            out[k * 256 + i] = zeros(t0[i], k, &t0);
        }
    }
    // U_k[i]: the state (i << 8k) carried past a block of zero bytes.
    for k in 0..4 {
        for i in 0..256 {
            out[1024 + k * 256 + i] = zeros((i as u32) << (8 * k), BLOCK, &t0);
        }
    }
    // x^(32 2^s) = 1 (bit 31, reflected) carried past 4 2^s zero bytes.
    for s in 0..5 {
        out[2048 + s] = zeros(1 << 31, 4 << s, &t0);
    }
    out
}

/// `a · b` modulo the polynomial, both bit-reflected (bit 31 is x^0): the kernel's loop.
pub fn mul(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    for bit in (0..32).rev() {
        if a >> bit & 1 != 0 {
            product ^= b;
        }
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    product
}

/// `word · x^32` through the tables `t` (T0..T3): the word's CRC from a zero state.
fn word_crc(t: &[u32], w: u32) -> u32 {
    t[3 * 256 + (w & 0xff) as usize]
        ^ t[2 * 256 + (w >> 8 & 0xff) as usize]
        ^ t[256 + (w >> 16 & 0xff) as usize]
        ^ t[(w >> 24) as usize]
}

/// `acc · x^1024` through the tables `U0..U3`.
fn carry(t: &[u32], acc: u32) -> u32 {
    t[1024 + (acc & 0xff) as usize]
        ^ t[1024 + 256 + (acc >> 8 & 0xff) as usize]
        ^ t[1024 + 2 * 256 + (acc >> 16 & 0xff) as usize]
        ^ t[1024 + 3 * 256 + (acc >> 24) as usize]
}

/// The CRC-32C of `bytes` as the kernel computes it (a warp of 32 lanes), from the device
/// tables `t`.
pub fn warp_crc32c(bytes: &[u8], t: &[u32]) -> u32 {
    let words = bytes.len() / 4;
    let word = |i: usize| u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    // Zero words in front, so that the words end with the last lane's word of the last block.
    let pad = (LANES - words % LANES) % LANES;
    let blocks = (words + pad) / LANES;
    let mut lanes = [0u32; LANES];
    for (lane, acc) in lanes.iter_mut().enumerate() {
        for j in 0..blocks {
            let at = (LANES * j + lane).checked_sub(pad);
            let mut w = at.map_or(0, word);
            if at == Some(0) {
                w ^= 0xFFFF_FFFF; // the CRC's initial state, in the first word
            }
            *acc = carry(t, *acc) ^ word_crc(t, w);
        }
    }
    // Rounds of shuffles: lane l (a multiple of 2^(s+1)) takes in lane l + 2^s.
    for s in 0..5 {
        let factor = t[2048 + s];
        for lane in (0..LANES).step_by(2 << s) {
            lanes[lane] = mul(factor, lanes[lane]) ^ lanes[lane + (1 << s)];
        }
    }
    let mut crc = if words == 0 { 0xFFFF_FFFF } else { lanes[0] };
    for &b in &bytes[4 * words..] {
        crc = t[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The warp's algorithm gives the format's CRC-32C for every length from 0 to a few
    /// blocks and for long chunks, whatever the bytes.
    #[test]
    fn the_warp_algorithm_gives_the_crc32c() {
        let t = device_tables();
        let mut x = 0x1234_5678_9abc_def0_u64;
        let bytes: Vec<u8> = (0..70_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        for len in (0..600).chain([4095, 4096, 4097, 65_535, 65_536, 70_000]) {
            let want = wcodec_format::crc32c(&bytes[..len]);
            assert_eq!(warp_crc32c(&bytes[..len], &t), want, "{len} bytes");
            assert_eq!(
                warp_crc32c(&bytes[3..3 + len.min(69_990)], &t),
                wcodec_format::crc32c(&bytes[3..3 + len.min(69_990)]),
                "{len} bytes at 3"
            );
        }
        assert_eq!(warp_crc32c(&[0u8; 1000], &t), wcodec_format::crc32c(&[0u8; 1000]));
    }

    /// `mul` is the multiplication `zeros` stands for: x^(8 n) times a state is the state
    /// carried past n zero bytes.
    #[test]
    fn products_are_zero_bytes_appended() {
        let t0 = byte_table();
        for (state, n) in [(0xdead_beef_u32, 1usize), (1, 4), (0xffff_ffff, 37), (0x8000_0001, 128)]
        {
            let factor = zeros(1 << 31, n, &t0);
            assert_eq!(mul(factor, state), zeros(state, n, &t0), "{state:#x} past {n}");
        }
    }
}
