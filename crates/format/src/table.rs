//! Serialised frequency tables: a 32-byte presence bitmap, then the frequency of each present
//! symbol in increasing order as LEB128.

use crate::error::{FormatError, Result};

/// Frequencies of the 256 byte symbols; present symbols sum to `1 << prob_bits`.
pub type Frequencies = [u32; 256];

/// Appends `freqs` to `out` in the on-disk form.
pub fn write_table(freqs: &Frequencies, out: &mut Vec<u8>) {
    let mut bitmap = [0u8; 32];
    for (s, &f) in freqs.iter().enumerate() {
        if f > 0 {
            bitmap[s >> 3] |= 1 << (s & 7);
        }
    }
    out.extend_from_slice(&bitmap);
    for &f in freqs.iter().filter(|&&f| f > 0) {
        let mut v = f;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
}

/// Reads one table from the front of `bytes`, checking that every frequency lies in
/// `1..=2^prob_bits` and that they sum to exactly `2^prob_bits`. Returns the table and the
/// number of bytes it used.
pub fn read_table(bytes: &[u8], prob_bits: u8) -> Result<(Frequencies, usize)> {
    let total = 1u32 << prob_bits;
    let bitmap: &[u8; 32] =
        bytes.get(..32).and_then(|b| b.try_into().ok()).ok_or(FormatError::Truncated {
            what: "frequency table",
            needed: 32,
            available: bytes.len() as u64,
        })?;
    let mut freqs = [0u32; 256];
    let mut pos = 32;
    let mut sum = 0u32;
    for s in 0..256 {
        if bitmap[s >> 3] & (1 << (s & 7)) == 0 {
            continue;
        }
        let mut value = 0u32;
        for shift in [0, 7, 14] {
            let byte = *bytes.get(pos).ok_or(FormatError::Truncated {
                what: "frequency table",
                needed: pos as u64 + 1,
                available: bytes.len() as u64,
            })?;
            pos += 1;
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            if shift == 14 {
                return Err(FormatError::invalid(
                    "frequency table",
                    "frequency longer than 3 bytes",
                ));
            }
        }
        if value == 0 || value > total {
            return Err(FormatError::invalid(
                "frequency table",
                format!("symbol {s} has frequency {value}, outside 1..={total}"),
            ));
        }
        sum += value;
        if sum > total {
            return Err(FormatError::invalid(
                "frequency table",
                format!("frequencies exceed {total}"),
            ));
        }
        freqs[s] = value;
    }
    if sum != total {
        return Err(FormatError::invalid(
            "frequency table",
            format!("frequencies sum to {sum}, not {total}"),
        ));
    }
    Ok((freqs, pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_symbol_table_round_trips() {
        let mut f = [0u32; 256];
        f[7] = 4096;
        let mut out = Vec::new();
        write_table(&f, &mut out);
        assert_eq!(out.len(), 32 + 2);
        assert_eq!(read_table(&out, 12).unwrap(), (f, 34));
    }

    #[test]
    fn rejects_bad_sums_and_zero() {
        let mut f = [0u32; 256];
        f[0] = 100;
        f[1] = 200;
        let mut out = Vec::new();
        write_table(&f, &mut out);
        assert!(read_table(&out, 12).is_err());
        assert!(read_table(&out[..33], 12).is_err());
        let mut zero = vec![0u8; 32];
        zero[0] = 1;
        zero.push(0);
        assert!(read_table(&zero, 8).is_err());
    }

    proptest! {
        #[test]
        fn tables_round_trip(weights in proptest::collection::vec(0u32..50, 256), bits in 8u8..=12) {
            // Build some table summing to 2^bits from the weights.
            let total = 1u32 << bits;
            let mut f = [0u32; 256];
            let mut left = total;
            for (s, w) in weights.iter().enumerate() {
                let take = (*w).min(left);
                f[s] = take;
                left -= take;
            }
            f[255] += left;
            let mut out = Vec::new();
            write_table(&f, &mut out);
            out.extend_from_slice(b"tail");
            let (back, used) = read_table(&out, bits).unwrap();
            prop_assert_eq!(back, f);
            prop_assert_eq!(used, out.len() - 4);
        }
    }
}
