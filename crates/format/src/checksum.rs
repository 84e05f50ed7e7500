//! The CRC-32C of the format's checksums, and the CRC of a concatenation from the CRCs of its
//! parts, so that the parts of a tensor encoded or decoded on different threads are checked
//! while they are still in cache.
//!
//! `crc(A ‖ B) = crc(A) · x^(8 |B|) ⊕ crc(B)` in GF(2)\[x\] modulo the CRC-32C polynomial (the
//! pre- and post-inversions of the CRC cancel out), as in zlib's `crc32_combine`.

/// CRC-32C of `bytes` (`crc-fast`: the same values as the `crc32c` crate, 4-5 times faster on
/// x86 with carry-less multiplication).
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

/// The CRC-32C polynomial, bit-reflected.
const POLY: u32 = 0x82F6_3B78;

/// `a · b` modulo the polynomial, both bit-reflected (bit 31 is x^0).
const fn mul(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut m = 1u32 << 31;
    while m != 0 && a & (m | (m - 1)) != 0 {
        if a & m != 0 {
            product ^= b;
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    product
}

/// `x^(8 · 2^k)` modulo the polynomial for k = 0..64 (appending 2^k bytes), by squaring, at
/// compile time: `shift_of` then multiplies only the powers of its length's set bits.
const BYTE_POWERS: [u32; 64] = {
    let mut powers = [0u32; 64];
    let mut power = 1u32 << (31 - 8); // x^8
    let mut k = 0;
    while k < 64 {
        powers[k] = power;
        power = mul(power, power);
        k += 1;
    }
    powers
};

/// `x^(8 n)` modulo the polynomial: the factor that appends `n` bytes to a CRC.
pub fn shift_of(n: u64) -> Shift {
    let mut result = 1u32 << 31; // x^0
    let mut bits = n;
    while bits != 0 {
        let k = bits.trailing_zeros() as usize;
        result = mul(result, BYTE_POWERS[k]);
        bits &= bits - 1;
    }
    Shift(result)
}

/// The factor `x^(8 n)` for parts of `n` bytes (see [`shift_of`]).
#[derive(Clone, Copy, Debug)]
pub struct Shift(u32);

/// The CRC of `A ‖ B` from `crc(A)`, `crc(B)` and the shift of `B`'s length.
pub fn combine(crc_a: u32, crc_b: u32, shift_b: Shift) -> u32 {
    mul(crc_a, shift_b.0) ^ crc_b
}

/// The CRC of `total_len` bytes cut into parts of `part_len` bytes (the last one up to
/// `part_len`), from the parts' CRCs in order; 0 (the CRC of nothing) for no parts.
pub fn combine_parts(crcs: &[u32], part_len: u64, total_len: u64) -> u32 {
    let Some((&last_crc, head)) = crcs.split_last() else { return 0 };
    let full = shift_of(part_len);
    let last = shift_of(total_len - part_len * head.len() as u64);
    let crc = head.iter().fold(0, |crc, &c| combine(crc, c, full));
    combine(crc, last_crc, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_fast_gives_the_crc32c_of_the_format() {
        let bytes: Vec<u8> =
            (0..70_000u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
        for len in (0..300).chain([4095, 4096, 4097, 65_536, 70_000]) {
            assert_eq!(super::crc32c(&bytes[..len]), crc32c::crc32c(&bytes[..len]), "{len}");
        }
    }

    #[test]
    fn combined_parts_give_the_crc_of_the_whole() {
        let bytes: Vec<u8> =
            (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for cut in [0, 1, 7, 64, 1000, 4999, 5000] {
            let (a, b) = bytes.split_at(cut);
            let crc = combine(crc32c::crc32c(a), crc32c::crc32c(b), shift_of(b.len() as u64));
            assert_eq!(crc, crc32c::crc32c(&bytes), "cut at {cut}");
            assert_eq!(crc, crc32c::crc32c_combine(crc32c::crc32c(a), crc32c::crc32c(b), b.len()));
        }
        // Many equal parts and a short last one, folded left.
        let parts: Vec<&[u8]> = bytes.chunks(384).collect();
        let (full, last) = (shift_of(384), shift_of(parts.last().unwrap().len() as u64));
        let mut crc = 0;
        for (i, p) in parts.iter().enumerate() {
            let shift = if i + 1 == parts.len() { last } else { full };
            crc = combine(crc, crc32c::crc32c(p), shift);
        }
        assert_eq!(crc, crc32c::crc32c(&bytes));
        assert_eq!(combine(0, 0, shift_of(0)), crc32c::crc32c(&[]));
        let crcs: Vec<u32> = parts.iter().map(|p| crc32c::crc32c(p)).collect();
        assert_eq!(combine_parts(&crcs, 384, bytes.len() as u64), crc32c::crc32c(&bytes));
        assert_eq!(combine_parts(&[], 384, 0), crc32c::crc32c(&[]));
    }
}
