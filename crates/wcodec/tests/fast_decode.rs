//! The production decoder (bands of tiles decoded in parallel straight into the output, spans
//! of tensors, split planes merged band by band) against the reference decoder: every band
//! size, tile shape, predictor, dtype and table count, damaged files, and the spans a streaming
//! decode cuts a file into.

use proptest::prelude::*;
use wcodec::decode::{
    DecodeError, decode_source_span, decode_tensor, decode_tensor_in_bands,
    decode_tensor_reference, source_spans,
};
use wcodec::predict::TileConfig;
use wcodec::{Directory, Dtype, EncodeOptions, Predictor};

fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// Bytes like weights: a few bits of spread that change from row to row, some runs.
fn weights(n: usize, row: usize, seed: u64) -> Vec<u8> {
    let mut rng = xorshift(seed);
    (0..n)
        .map(|i| {
            let spread = 1 + (i / row.max(1)) % 7;
            let r = rng();
            if r.is_multiple_of(13) {
                (i / 3) as u8
            } else {
                ((r >> 20) % (spread as u64 * 9)) as u8
            }
        })
        .collect()
}

/// Every band size decodes what the reference decodes, and an error where it errs.
fn check_bands(wcz: &[u8]) {
    let dir = Directory::from_file_bytes(wcz).unwrap();
    for t in &dir.tensors {
        let reference = decode_tensor_reference(wcz, t);
        for band_bytes in [1, 100, 1000, 5000, 64 << 10, usize::MAX / 4] {
            let fast = decode_tensor_in_bands(wcz, t, band_bytes);
            match (&reference, &fast) {
                (Ok(r), Ok(f)) => assert!(r == f, "{} with bands of {band_bytes}", t.name),
                (Err(_), Err(_)) => {}
                _ => {
                    panic!("{}: reference {:?}, fast {:?}", t.name, reference.is_ok(), fast.is_ok())
                }
            }
        }
        match (&reference, decode_tensor(wcz, t)) {
            (Ok(r), Ok(f)) => assert!(*r == f, "{}", t.name),
            (Err(_), Err(_)) => {}
            (r, f) => panic!("{}: reference {:?}, fast {:?}", t.name, r.is_ok(), f.is_ok()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn bands_of_any_size_match_the_reference(
        rows in 1u64..120, cols in 1u64..300,
        tile_rows in 1u32..50, tile_cols in 1u32..400,
        seed in any::<u64>(), bits in 8u8..=12, tables in 1u8..=8, predictor in 0usize..6,
        dtype in 0usize..7, fit_tiles in any::<bool>(), sampled_counts in any::<bool>(),
        whole_blocks in any::<bool>(),
    ) {
        let dtype = [Dtype::I8, Dtype::U8, Dtype::BF16, Dtype::F16, Dtype::F32, Dtype::Q8_0,
            Dtype::Q4_1][dtype];
        let cols = match dtype.block() {
            Some((per_block, _)) => per_block * (1 + cols / 100),
            None => cols,
        };
        let n = dtype.storage_len(rows * cols).unwrap() as usize;
        let data = weights(n, cols as usize, seed);
        let predictors = match predictor {
            5 => Predictor::ALL.to_vec(),
            p => vec![Predictor::ALL[p]],
        };
        let options = EncodeOptions {
            tile: TileConfig { rows: tile_rows, cols: tile_cols },
            prob_bits: bits,
            max_tables: tables,
            block_tables: tables,
            predictors,
            fit_tiles,
            sampled_counts,
            whole_blocks,
        };
        let wcz = wcodec::compress_raw(&data, dtype, &[rows, cols], &options).unwrap();
        prop_assert_eq!(wcodec::decompress(&wcz).unwrap(), data);
        check_bands(&wcz);
    }
}

#[test]
fn full_width_tiles_with_every_predictor_match_the_reference() {
    // Tiles as wide as the plane are decoded in place; predicted ones are rebuilt in place.
    for p in Predictor::ALL {
        for dtype in [Dtype::I8, Dtype::U8, Dtype::BF16] {
            let options = EncodeOptions {
                tile: TileConfig { rows: 16, cols: 1024 },
                predictors: vec![p],
                ..Default::default()
            };
            let (rows, cols) = (100u64, 300u64);
            let data = weights(dtype.storage_len(rows * cols).unwrap() as usize, 300, p as u64);
            let wcz = wcodec::compress_raw(&data, dtype, &[rows, cols], &options).unwrap();
            assert_eq!(wcodec::decompress(&wcz).unwrap(), data, "{p:?} {dtype}");
            check_bands(&wcz);
        }
    }
}

#[test]
fn damaged_units_fail_in_every_band_size() {
    let data = weights(200 * 256, 256, 3);
    let options = EncodeOptions { tile: TileConfig { rows: 32, cols: 64 }, ..Default::default() };
    let wcz = wcodec::compress_raw(&data, Dtype::I8, &[200, 256], &options).unwrap();
    let dir = Directory::from_file_bytes(&wcz).unwrap();
    let wcodec::format::PlaneEncoding::Rans { units, .. } = &dir.tensors[0].planes[0].encoding
    else {
        panic!("a coded plane")
    };
    let plane = &dir.tensors[0].planes[0];
    for (k, unit) in units.iter().enumerate().step_by(5) {
        let mut bad = wcz.clone();
        bad[(plane.payload_offset + unit.offset) as usize + 130 + k] ^= 0x10;
        for band_bytes in [1, 5000, usize::MAX / 4] {
            let err = decode_tensor_in_bands(&bad, &dir.tensors[0], band_bytes).unwrap_err();
            assert!(matches!(err, DecodeError::Checksum { .. }), "{err}");
        }
        assert!(wcodec::decompress(&bad).is_err());
    }
}

fn slice(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn spans_of_real_files_rebuild_the_source() {
    for name in [
        "minilm-int8-per-tensor.safetensors",
        "minilm-bf16-slice.safetensors",
        "smollm2-slice.gguf",
    ] {
        let source = slice(name);
        let wcz = wcodec::compress(&source, &EncodeOptions::default()).unwrap();
        let dir = Directory::from_file_bytes(&wcz).unwrap();
        check_bands(&wcz);
        for max in [0, 1000, 100_000, 1 << 20, u64::MAX] {
            let spans = source_spans(&dir, max);
            let mut back = Vec::new();
            for span in &spans {
                assert_eq!(span.start, back.len() as u64, "{name}: spans are contiguous");
                let mut out = vec![0u8; (span.end - span.start) as usize];
                let tensors = &dir.tensors[span.tensors.clone()];
                let gaps = &dir.gaps[span.gaps.clone()];
                decode_source_span(&wcz, tensors, gaps, span.start, &mut out).unwrap();
                back.extend_from_slice(&out);
            }
            assert!(back == source, "{name}: spans of {max}");
            assert_eq!(spans.last().unwrap().tensors.end, dir.tensors.len());
            if max == 0 {
                assert_eq!(spans.len(), dir.tensors.len().max(1), "one tensor a span");
            }
        }
        let mut streamed = Vec::new();
        let parallel = wcodec::decode::Parallelism::Rayon;
        wcodec::decode::rebuild_source(&wcz, &dir, parallel, &mut streamed, &mut |_| {}).unwrap();
        assert!(streamed == source, "{name}: rebuild_source");
    }
}
