//! Damaged files: truncations at every header boundary and bit flips all over a valid file
//! are errors (or, where a flip hits padding no decoder reads, the exact original); never a
//! panic, never a wrong tensor.

use std::path::Path;

use wcodec::format::records::{DirectoryHeader, FileHeader, PlaneRecord, TensorRecord, Trailer};
use wcodec::{Directory, EncodeOptions};

fn sample() -> (Vec<u8>, Vec<u8>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/minilm-bf16-slice.safetensors");
    let source = std::fs::read(path).unwrap();
    let options = EncodeOptions {
        tile: wcodec::predict::TileConfig { rows: 64, cols: 128 },
        ..Default::default()
    };
    let wcz = wcodec::compress(&source, &options).unwrap();
    (source, wcz)
}

/// Decompressing `bytes` is an error or gives back exactly `source`.
fn check(bytes: &[u8], source: &[u8], what: &str) -> bool {
    match wcodec::decompress(bytes) {
        Err(_) => true,
        Ok(out) => {
            assert_eq!(out, source, "{what}: decoded without error to wrong bytes");
            false
        }
    }
}

#[test]
fn truncation_at_every_header_boundary_is_an_error() {
    let (source, wcz) = sample();
    let dir = Directory::from_file_bytes(&wcz).unwrap();
    let tail = &wcz[wcz.len() - Trailer::LEN..];
    let loc = wcodec::format::parse_trailer(tail, wcz.len() as u64).unwrap();
    let d = loc.offset as usize;
    let n_units: usize = dir
        .tensors
        .iter()
        .flat_map(|t| &t.planes)
        .map(|p| match &p.encoding {
            wcodec::format::PlaneEncoding::Rans { units, .. } => units.len(),
            _ => 0,
        })
        .sum();
    let tensors_end = d + DirectoryHeader::LEN + dir.tensors.len() * TensorRecord::LEN;
    let planes_end =
        tensors_end + dir.tensors.iter().map(|t| t.planes.len()).sum::<usize>() * PlaneRecord::LEN;
    let mut cuts = vec![
        0,
        1,
        FileHeader::LEN - 1,
        FileHeader::LEN,
        d,
        d + DirectoryHeader::LEN,
        tensors_end,
        planes_end,
        planes_end + n_units * 24,
    ];
    cuts.extend((0..Trailer::LEN).map(|i| wcz.len() - 1 - i));
    cuts.extend((0..wcz.len()).step_by(997));
    for cut in cuts {
        assert!(check(&wcz[..cut], &source, &format!("cut at {cut}")), "cut at {cut} decoded");
    }
}

#[test]
fn two_thousand_bit_flips_never_give_a_wrong_tensor() {
    let (source, wcz) = sample();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut detected = 0;
    let flips = 2000;
    for i in 0..flips {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Half the flips in the last 4 KiB (directory, tables, trailer), half anywhere.
        let pos = if i % 2 == 0 {
            wcz.len() - 1 - (x as usize % 4096).min(wcz.len() - 1)
        } else {
            x as usize % wcz.len()
        };
        let mut bad = wcz.clone();
        bad[pos] ^= 1 << (x >> 61);
        if check(&bad, &source, &format!("flip at {pos}")) {
            detected += 1;
        }
    }
    // Only flips in alignment padding (read by no decoder) may go unnoticed.
    assert!(detected > flips * 95 / 100, "{detected} of {flips} flips detected");
}

#[test]
fn garbage_is_an_error() {
    let (source, _) = sample();
    let mut x = 7u64;
    for len in [0, 10, 64, 1000, 100_000] {
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(check(&junk, &source, "garbage"));
    }
}

/// A flipped bit anywhere in a raw plane (the BF16 tensors' sign-mantissa bytes, merged from
/// the file band by band and checked there) is reported as that plane's checksum, by the
/// in-memory decoders and by the streaming one the CLI uses.
#[test]
fn a_damaged_raw_plane_is_reported_as_such() {
    let (_, wcz) = sample();
    let dir = Directory::from_file_bytes(&wcz).unwrap();
    let raw: Vec<(String, usize, std::ops::Range<usize>)> = dir
        .tensors
        .iter()
        .flat_map(|t| t.planes.iter().enumerate().map(move |(j, p)| (t, j, p)))
        .filter(|(_, _, p)| matches!(p.encoding, wcodec::format::PlaneEncoding::Raw { .. }))
        .map(|(t, j, p)| {
            let start = p.payload_offset as usize;
            (t.name.clone(), j, start..start + p.payload_len as usize)
        })
        .collect();
    assert!(!raw.is_empty(), "the sample has raw planes");
    let len = wcodec::decompressed_len(&wcz).unwrap() as usize;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.wcz");
    for (name, j, bytes) in raw {
        for pos in [bytes.start, bytes.start + bytes.len() / 2, bytes.end - 1] {
            let mut bad = wcz.clone();
            bad[pos] ^= 0x10;
            let expected = format!("tensor {name:?} raw plane {j}");
            let err = wcodec::decompress(&bad).unwrap_err().to_string();
            assert!(err.contains(&expected), "byte {pos}: {err}");
            let mut out = vec![0u8; len];
            let err = wcodec::decompress_into(&bad, &mut out).unwrap_err().to_string();
            assert!(err.contains(&expected), "byte {pos}, into a buffer: {err}");
            std::fs::write(&path, &bad).unwrap();
            let archive = wcodec::Archive::open(&path).unwrap();
            let err = archive.write_source(Vec::new(), &path, &mut |_, _| ()).unwrap_err();
            let err = err.to_string();
            assert!(err.contains(&expected), "byte {pos}, streamed: {err}");
        }
    }
}
