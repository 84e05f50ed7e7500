//! Hostile files that claim far more output than their size: built by editing the records of
//! a valid file (and fixing up the directory CRC), they must be typed errors found quickly,
//! before anything large is allocated.

use std::time::{Duration, Instant};

use wcodec::decode::DecodeError;
use wcodec::format::records::{FileHeader, Trailer};
use wcodec::format::{Directory, PlaneEncoding, parse_trailer};
use wcodec::predict::TileConfig;
use wcodec::{Dtype, EncodeOptions, Error, Limits};

/// A valid file of a constant 64 x 64 i8 tensor in one 64 x 64 tile: one 128-byte unit of a
/// one-symbol table, whose states never move, so the same bytes code a tile of any size.
fn constant_file() -> Vec<u8> {
    let options = EncodeOptions { tile: TileConfig { rows: 64, cols: 64 }, ..Default::default() };
    let wcz = wcodec::compress_raw(&[7u8; 64 * 64], Dtype::I8, &[64, 64], &options).unwrap();
    let dir = Directory::from_file_bytes(&wcz).unwrap();
    let PlaneEncoding::Rans { units, tables, .. } = &dir.tensors[0].planes[0].encoding else {
        panic!("a constant plane is coded");
    };
    assert_eq!(
        (units.len(), units[0].len, tables[0].iter().filter(|&&f| f > 0).count()),
        (1, 128, 1)
    );
    wcz
}

/// `file` with its directory replaced by `edit(directory)`, and the trailer rewritten.
fn with_directory(file: &[u8], edit: impl FnOnce(&mut Directory)) -> Vec<u8> {
    let mut dir = Directory::from_file_bytes(file).unwrap();
    edit(&mut dir);
    let loc = parse_trailer(&file[file.len() - Trailer::LEN..], file.len() as u64).unwrap();
    let mut out = file[..loc.offset as usize].to_vec();
    let bytes = dir.to_bytes();
    out.extend_from_slice(&bytes);
    out.extend_from_slice(trailer_bytes(loc.offset, &bytes).as_slice());
    out
}

fn trailer_bytes(offset: u64, directory: &[u8]) -> Vec<u8> {
    // The trailer's bytes, field by field (little-endian), as FORMAT.md gives them.
    let t = Trailer::new(offset, directory);
    let mut out = Vec::with_capacity(Trailer::LEN);
    out.extend_from_slice(&t.directory_offset.get().to_le_bytes());
    out.extend_from_slice(&t.directory_len.get().to_le_bytes());
    out.extend_from_slice(&t.directory_crc32c.get().to_le_bytes());
    out.extend_from_slice(&t.version.get().to_le_bytes());
    out.extend_from_slice(&t.reserved.get().to_le_bytes());
    out.extend_from_slice(&t.magic);
    out
}

/// The constant tensor grown to `side x side` in one tile, with the CRC of what it then
/// decodes to: a valid file, tiny, that claims `side^2` bytes.
fn bomb(side: u64) -> Vec<u8> {
    with_directory(&constant_file(), |dir| {
        let t = &mut dir.tensors[0];
        t.dims = vec![side, side];
        t.source_len = side * side;
        t.crc32c = wcodec_format::crc32c(&vec![7u8; (side * side) as usize]);
        let p = &mut t.planes[0];
        (p.rows, p.cols, p.tile_rows, p.tile_cols) = (side, side, side as u32, side as u32);
        dir.source_len = side * side;
    })
}

fn quickly<T>(f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(start.elapsed() < Duration::from_secs(1), "took {:?}", start.elapsed());
    out
}

#[test]
fn a_valid_bomb_is_too_large_for_the_default_limits() {
    // 2048 x 2048 = 2^22 symbols (the largest tile) from a file of a few hundred bytes.
    let file = bomb(2048);
    assert!(file.len() < 1024, "{} bytes", file.len());
    let err = quickly(|| wcodec::decompress(&file)).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Decode(DecodeError::TooLarge { claimed: 4194304, max_expansion: 1024, .. })
        ),
        "{err}"
    );
    assert_eq!(err.exit_code(), 3);
    // It is a valid file: without limits it decodes to what it claims.
    let out = wcodec::decompress_with_limits(&file, &Limits::NONE).unwrap();
    assert!(out.len() == 1 << 22 && out.iter().all(|&b| b == 7));
    // A single tensor of it, decoded on its own, meets the same limit.
    let dir = Directory::from_file_bytes(&file).unwrap();
    assert!(matches!(
        quickly(|| wcodec::decode::decode_tensor(&file, &dir.tensors[0])),
        Err(DecodeError::TooLarge { .. })
    ));
    assert!(matches!(
        quickly(|| wcodec::decode::decode_tensor_reference(&file, &dir.tensors[0])),
        Err(DecodeError::TooLarge { .. })
    ));
    let sequential = wcodec::decode::Parallelism::Sequential;
    let one =
        wcodec::decode::decode_tensor_limited(&file, &dir.tensors[0], sequential, &Limits::NONE);
    assert_eq!(one.unwrap().len(), 1 << 22);
}

#[test]
fn every_file_is_within_a_fixed_expansion_of_its_size() {
    // The limit is relative to the file: a bomb within it decodes, and the limit can be lowered.
    let file = bomb(256);
    let expansion = (256 * 256) as f64 / file.len() as f64;
    assert!(expansion < 1024.0, "{expansion}");
    assert_eq!(wcodec::decompress(&file).unwrap().len(), 256 * 256);
    let tight = Limits { max_expansion: 8 };
    assert!(matches!(
        wcodec::decompress_with_limits(&file, &tight),
        Err(Error::Decode(DecodeError::TooLarge { .. }))
    ));
    // A real file compressed with the default tiles is far inside the default limit.
    let zeros = vec![0u8; 1024 * 1024];
    let wcz = wcodec::compress_raw(&zeros, Dtype::BF16, &[512, 1024], &Default::default()).unwrap();
    assert!(zeros.len() / wcz.len() < Limits::DEFAULT_MAX_EXPANSION as usize / 2);
    assert_eq!(wcodec::decompress(&wcz).unwrap(), zeros);
}

#[test]
fn claims_of_2_pow_60_elements_or_offsets_past_the_end_fail_before_allocation() {
    let file = constant_file();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "2^60 elements in one tile",
            with_directory(&file, |dir| {
                let t = &mut dir.tensors[0];
                (t.dims, t.source_len) = (vec![1 << 30, 1 << 30], 1 << 60);
                let p = &mut t.planes[0];
                (p.rows, p.cols) = (1 << 30, 1 << 30);
                dir.source_len = 1 << 60;
            }),
        ),
        (
            "a payload past the end",
            with_directory(&file, |dir| dir.tensors[0].planes[0].payload_offset += 1 << 40),
        ),
        (
            "a unit past its payload",
            with_directory(&file, |dir| {
                if let PlaneEncoding::Rans { units, .. } = &mut dir.tensors[0].planes[0].encoding {
                    units[0].offset = u64::MAX - 15;
                }
            }),
        ),
        ("a source of 2^60 bytes of gaps", with_directory(&file, |dir| dir.source_len = 1 << 60)),
    ];
    for (what, bad) in cases {
        let err = quickly(|| wcodec::decompress(&bad)).expect_err(what);
        assert!(matches!(err, Error::Decode(DecodeError::Format(_))), "{what}: {err}");
    }
    // A header that claims 2^60 bytes of directory.
    let mut huge_dir = file.clone();
    let n = huge_dir.len();
    huge_dir[n - 24..n - 16].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(
        quickly(|| wcodec::decompress(&huge_dir)),
        Err(Error::Decode(DecodeError::Format(_)))
    ));
    assert!(FileHeader::LEN < file.len());
}

#[test]
fn the_file_api_meets_the_limits_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.wcz");
    std::fs::write(&path, bomb(2048)).unwrap();
    let out = dir.path().join("out");
    let err = quickly(|| wcodec::decompress_path(&path, &out, false, &mut |_, _| {})).unwrap_err();
    assert!(matches!(err, Error::Decode(DecodeError::TooLarge { .. })), "{err}");
    assert!(!out.exists(), "no output under the target name");
    // Opening checks the claimed size against the limit before reading any payload.
    assert!(matches!(
        quickly(|| wcodec::Archive::open(&path)),
        Err(Error::Decode(DecodeError::TooLarge { .. }))
    ));
    let archive = wcodec::Archive::open_with_limits(&path, &wcodec::Limits::NONE).unwrap();
    assert!(quickly(|| archive.verify(&mut |_, _| {})).is_ok(), "a trusted bomb decodes");
}

/// A file the encoder makes with its defaults decodes within the default limits, however well
/// it compresses: constant tensors (one byte value, the most a tile can shrink) of widths around
/// the tiles' (the encoder widens some tiles to whole rows of their plane), one-byte and
/// two-byte, the whole file and each tensor alone.
#[test]
fn constant_tensors_made_with_the_defaults_decode_within_the_default_limits() {
    let options = EncodeOptions::default();
    for cols in [1u64, 18, 255, 256, 257, 300, 384, 511, 512, 513, 576, 767, 1000, 1023, 1024, 4096]
    {
        let rows = (1u64 << 21) / cols;
        for (dtype, size) in [(Dtype::I8, 1), (Dtype::U8, 1), (Dtype::BF16, 2)] {
            let bytes = vec![0u8; (rows * cols * size) as usize];
            let file = wcodec::compress_raw(&bytes, dtype, &[rows, cols], &options).unwrap();
            let what = format!("{dtype} {rows}x{cols}: {} bytes from {}", file.len(), bytes.len());
            assert!(bytes.len() <= 1024 * file.len(), "{what}: beyond the default limit");
            assert_eq!(wcodec::decompress(&file).expect(&what), bytes, "{what}");
        }
    }
}
