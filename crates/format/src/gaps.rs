//! The gaps section: the source bytes no tensor covers (a safetensors JSON header, GGUF
//! metadata, alignment padding), stored as they are or as a zstd stream.
//!
//! A GGUF file's metadata is mostly its tokenizer (token strings, merges, scores): 1.79 MB of
//! the SmolLM2-135M Q4_1 file, which zstd at its default level stores in 0.52 MB (3.4x) in about
//! 7 ms on one core, where the tensors take 160 ms; the file's ratio goes from 1.1155 to 1.13.
//! Small gaps (a safetensors header of a few tensors) are stored as they are when zstd would not
//! save `MIN_SAVING` bytes.

use crate::error::{FormatError, Result};

/// How the gaps section holds the gaps (`DirectoryHeader::gaps_codec`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum GapsCodec {
    /// The bytes as they are.
    Stored = 0,
    /// One or more zstd frames (RFC 8878) that decompress to exactly the gaps.
    Zstd = 1,
}

impl GapsCodec {
    pub fn from_code(code: u8) -> Option<GapsCodec> {
        match code {
            0 => Some(GapsCodec::Stored),
            1 => Some(GapsCodec::Zstd),
            _ => None,
        }
    }
}

/// Compressed gaps may stand for fewer than this many times their stored bytes, so that a
/// hostile directory cannot make a reader allocate far more than the file holds (the same bound
/// as the decoders' default on the whole output, `wcodec_decode::Limits`).
pub const MAX_GAPS_EXPANSION: u64 = 1024;

/// zstd's level for the gaps: its default, the knee of its speed and ratio on tokenizer text
/// (level 9 saves 7% more of the metadata at a fifth of the speed).
#[cfg(feature = "zstd")]
const LEVEL: i32 = 3;

/// Gaps are compressed only when that saves at least this many bytes.
#[cfg(feature = "zstd")]
const MIN_SAVING: usize = 64;

/// The codec and bytes of the gaps section for `gaps`: zstd where it saves `MIN_SAVING` bytes
/// and stays within `MAX_GAPS_EXPANSION`, else the bytes as they are (always, in a build
/// without the `zstd` feature).
pub fn pack(gaps: &[u8]) -> (GapsCodec, std::borrow::Cow<'_, [u8]>) {
    #[cfg(feature = "zstd")]
    if gaps.len() > MIN_SAVING
        && let Ok(packed) = zstd::bulk::compress(gaps, LEVEL)
        && packed.len() + MIN_SAVING <= gaps.len()
        && (gaps.len() as u64) / (packed.len() as u64) < MAX_GAPS_EXPANSION
    {
        return (GapsCodec::Zstd, packed.into());
    }
    (GapsCodec::Stored, gaps.into())
}

/// Gaps packed ahead of the directory that holds them ([`crate::Directory::to_bytes_with`]):
/// compressing a GGUF file's metadata takes milliseconds, which an encoder can spend while its
/// last tensors are coded instead of after them.
#[derive(Clone, Debug)]
pub struct PackedGaps {
    codec: GapsCodec,
    bytes: Vec<u8>,
    /// Length and CRC-32C of the gaps packed, to tell them from others.
    len: usize,
    crc32c: u32,
}

impl PackedGaps {
    pub fn new(gaps: &[u8]) -> PackedGaps {
        let (codec, bytes) = pack(gaps);
        PackedGaps {
            codec,
            bytes: bytes.into_owned(),
            len: gaps.len(),
            crc32c: crate::crc32c(gaps),
        }
    }

    /// Whether these are `gaps` packed.
    pub(crate) fn is_of(&self, gaps: &[u8]) -> bool {
        self.len == gaps.len() && self.crc32c == crate::crc32c(gaps)
    }

    pub(crate) fn codec(&self) -> GapsCodec {
        self.codec
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The length of the gaps section of a directory's bytes (`parse_directory` validated them):
/// what the gaps take in the file.
pub fn section_len(directory: &[u8]) -> u64 {
    use zerocopy::FromBytes;
    match crate::records::DirectoryHeader::read_from_prefix(directory) {
        Ok((h, _)) if h.gaps_codec == GapsCodec::Zstd as u8 => h.gaps_stored_len.get(),
        Ok((h, _)) => h.gaps_len.get(),
        Err(_) => 0,
    }
}

/// The gaps from their section (`stored`), `gaps_len` bytes: any other length, or a damaged or
/// truncated stream, is an error. The caller has checked `MAX_GAPS_EXPANSION`; memory is only
/// taken as the stream yields bytes.
pub fn unpack(codec: GapsCodec, stored: &[u8], gaps_len: u64) -> Result<Vec<u8>> {
    let invalid = |detail: String| FormatError::invalid("gaps", detail);
    match codec {
        GapsCodec::Stored => Ok(stored.to_vec()),
        #[cfg(feature = "zstd")]
        GapsCodec::Zstd => {
            use std::io::Read;
            // Memory grows with what the stream really holds (up to one byte past `gaps_len`,
            // which is an error), not with what the directory claims.
            let mut gaps = Vec::with_capacity(gaps_len.min(16 << 20) as usize);
            zstd::stream::read::Decoder::with_buffer(stored)
                .and_then(|decoder| decoder.take(gaps_len.saturating_add(1)).read_to_end(&mut gaps))
                .map_err(|e| invalid(format!("zstd stream: {e}")))?;
            if gaps.len() as u64 != gaps_len {
                return Err(invalid(format!(
                    "{} bytes, the directory says {gaps_len}",
                    gaps.len()
                )));
            }
            Ok(gaps)
        }
        #[cfg(not(feature = "zstd"))]
        GapsCodec::Zstd => Err(invalid(format!(
            "{gaps_len} bytes compressed with zstd, which this build lacks (feature `zstd`)"
        ))),
    }
}

#[cfg(all(test, feature = "zstd"))]
mod tests {
    use super::*;

    #[test]
    fn text_is_packed_and_comes_back() {
        let text: Vec<u8> =
            (0..4000).flat_map(|i| format!("token_{}\u{0120}", i % 700).into_bytes()).collect();
        let (codec, packed) = pack(&text);
        assert_eq!(codec, GapsCodec::Zstd);
        assert!(packed.len() * 3 < text.len(), "{} of {}", packed.len(), text.len());
        assert_eq!(unpack(codec, &packed, text.len() as u64).unwrap(), text);
    }

    #[test]
    fn small_or_random_gaps_are_stored() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for gaps in [&b""[..], b"{\"a\":1}", &noise] {
            let (codec, packed) = pack(gaps);
            assert_eq!(codec, GapsCodec::Stored);
            assert_eq!(&*packed, gaps);
        }
    }

    #[test]
    fn a_stream_of_another_length_or_damaged_is_refused() {
        let text = b"general.architecture llama general.name SmolLM2 ".repeat(50);
        let (codec, packed) = pack(&text);
        assert_eq!(codec, GapsCodec::Zstd);
        let n = text.len() as u64;
        assert!(unpack(codec, &packed, n - 1).is_err(), "longer than said");
        assert!(unpack(codec, &packed, n + 1).is_err(), "shorter than said");
        // A claim of 1 TiB is refused when the stream ends, not allocated up front.
        assert!(unpack(codec, &packed, 1 << 40).is_err(), "far shorter than said");
        assert!(unpack(codec, &packed[..packed.len() - 1], n).is_err(), "truncated");
        let mut garbage = packed.to_vec();
        garbage.extend_from_slice(b"trailing");
        assert!(unpack(codec, &garbage, n).is_err(), "trailing bytes");
        let mut flipped = packed.to_vec();
        flipped[packed.len() / 2] ^= 0x10;
        assert!(unpack(codec, &flipped, n).map_or(true, |g| g != text), "a flipped bit");
    }
}
