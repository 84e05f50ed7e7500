//! decompress(compress(x)) == x over shapes, contents, dtypes, tile sizes and predictors; the
//! parallel decoder equals the reference decoder.

use proptest::prelude::*;
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

/// Content classes of int8 weights.
#[derive(Clone, Copy, Debug)]
enum Content {
    Uniform,
    Gaussian,
    Sparse,
    Bimodal,
    Zero,
    Constant,
    Extremes,
    Ramp,
}

fn content(kind: Content, n: usize, seed: u64) -> Vec<u8> {
    let mut rng = xorshift(seed);
    (0..n)
        .map(|i| {
            let r = rng();
            let v: i32 = match kind {
                Content::Uniform => (r >> 24) as u8 as i8 as i32,
                Content::Gaussian => {
                    let s: i32 = (0..4).map(|k| ((r >> (k * 16)) & 0xff) as i32).sum();
                    (s - 510) / 6
                }
                Content::Sparse => {
                    if r.is_multiple_of(10) {
                        ((r >> 8) % 255) as i32 - 127
                    } else {
                        0
                    }
                }
                Content::Bimodal => {
                    if r & 1 == 0 {
                        -60 + ((r >> 8) % 9) as i32
                    } else {
                        60 + ((r >> 8) % 9) as i32
                    }
                }
                Content::Zero => 0,
                Content::Constant => 77,
                Content::Extremes => {
                    if r & 1 == 0 {
                        -128
                    } else {
                        127
                    }
                }
                Content::Ramp => (i % 97) as i32 - 48,
            };
            v.clamp(-128, 127) as i8 as u8
        })
        .collect()
}

fn check_round_trip(bytes: &[u8], dtype: Dtype, dims: &[u64], options: &EncodeOptions) -> Vec<u8> {
    let wcz = wcodec::compress_raw(bytes, dtype, dims, options).unwrap();
    assert_eq!(wcodec::decompress(&wcz).unwrap(), bytes, "{dtype} {dims:?}");
    let dir = Directory::from_file_bytes(&wcz).unwrap();
    for t in &dir.tensors {
        let reference = wcodec::decode::decode_tensor_reference(&wcz, t).unwrap();
        assert_eq!(reference, wcodec::decode::decode_tensor(&wcz, t).unwrap());
    }
    wcz
}

const SHAPES: &[&[u64]] = &[
    &[],
    &[0],
    &[0, 5],
    &[5, 0],
    &[1, 1],
    &[1, 1000],
    &[1000, 1],
    &[300, 257],
    &[3, 70, 90],
    &[512, 256],
];

#[test]
fn every_shape_and_content_class_round_trips() {
    let kinds = [
        Content::Uniform,
        Content::Gaussian,
        Content::Sparse,
        Content::Bimodal,
        Content::Zero,
        Content::Constant,
        Content::Extremes,
        Content::Ramp,
    ];
    for (k, &kind) in kinds.iter().enumerate() {
        for (s, dims) in SHAPES.iter().enumerate() {
            let n = dims.iter().product::<u64>() as usize;
            let data = content(kind, n, (k * 31 + s) as u64);
            check_round_trip(&data, Dtype::I8, dims, &EncodeOptions::default());
        }
    }
}

/// The fast preset estimates its tables from a sample of each plane: planes large enough to
/// be sampled, with values seen once (outside any sample), round trip in every class of dtype,
/// at most a little larger than with exact counts.
#[test]
fn fast_preset_round_trips_sampled_planes() {
    let exact = EncodeOptions { sampled_counts: false, ..EncodeOptions::fast() };
    for (dtype, dims) in
        [(Dtype::I8, [1024u64, 1024]), (Dtype::U8, [700, 1500]), (Dtype::BF16, [512, 1024])]
    {
        let n = dtype.storage_len(dims[0] * dims[1]).unwrap() as usize;
        let mut data = content(Content::Gaussian, n, 5);
        for k in 1..6 {
            data[n / 6 * k + 11] = 0x7f ^ (k as u8);
        }
        let fast = check_round_trip(&data, dtype, &dims, &EncodeOptions::fast());
        let counted = check_round_trip(&data, dtype, &dims, &exact);
        assert!(fast != counted, "{dtype}: sampled tables");
        assert!(fast.len() as f64 <= counted.len() as f64 * 1.002, "{dtype}");
    }
}

#[test]
fn each_predictor_alone_round_trips() {
    for p in Predictor::ALL {
        let options = EncodeOptions {
            predictors: vec![p],
            tile: TileConfig { rows: 37, cols: 50 },
            ..Default::default()
        };
        for kind in [Content::Gaussian, Content::Ramp, Content::Extremes] {
            for dtype in [Dtype::I8, Dtype::U8] {
                let data = content(kind, 300 * 257, p as u64);
                let wcz = check_round_trip(&data, dtype, &[300, 257], &options);
                let dir = Directory::from_file_bytes(&wcz).unwrap();
                if let wcodec::format::PlaneEncoding::Rans { units, .. } =
                    &dir.tensors[0].planes[0].encoding
                {
                    assert!(units.iter().all(|u| u.predictor == p));
                }
            }
        }
    }
}

/// Tiles of one band with and without prediction, rows of two distributions (row classes)
/// and partial tiles: the encoder keeps residuals only for predicted tiles and reads the
/// others from the plane, which must not change what is decoded.
#[test]
fn predicted_and_plain_tiles_mix_with_row_classes() {
    let (rows, cols) = (300usize, 257usize);
    let mut next = xorshift(7);
    let data: Vec<u8> = (0..rows * cols)
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            let v: i32 = if c < 128 {
                (c as i32 * 2 + r as i32) % 200 - 100
            } else if r % 3 == 0 {
                (next() % 5) as i32 - 2
            } else {
                (next() % 201) as i32 - 100
            };
            v as i8 as u8
        })
        .collect();
    let options = EncodeOptions { tile: TileConfig { rows: 64, cols: 64 }, ..Default::default() };
    for dtype in [Dtype::I8, Dtype::U8] {
        let wcz = check_round_trip(&data, dtype, &[rows as u64, cols as u64], &options);
        let dir = Directory::from_file_bytes(&wcz).unwrap();
        let wcodec::format::PlaneEncoding::Rans { units, tables, .. } =
            &dir.tensors[0].planes[0].encoding
        else {
            panic!("{dtype}: the plane is coded");
        };
        assert!(units.iter().any(|u| u.predictor == Predictor::None), "{dtype}");
        assert!(units.iter().any(|u| u.predictor != Predictor::None), "{dtype}");
        assert!(tables.len() >= 2, "{dtype}: row classes");
    }
}

#[test]
fn smooth_data_picks_a_predictor_and_compresses_better() {
    // A ramp along rows: LEFT turns it into a near-constant residual.
    let data: Vec<u8> = (0..256 * 256).map(|i| ((i % 256) as u8).wrapping_mul(3)).collect();
    let all = check_round_trip(&data, Dtype::U8, &[256, 256], &EncodeOptions::default());
    let none_only = EncodeOptions { predictors: vec![Predictor::None], ..Default::default() };
    let plain = check_round_trip(&data, Dtype::U8, &[256, 256], &none_only);
    assert!(all.len() * 4 < plain.len(), "{} vs {}", all.len(), plain.len());
}

#[test]
fn multibyte_dtypes_round_trip() {
    let mut rng = xorshift(5);
    for dtype in Dtype::ALL {
        // Block types need whole blocks per row: 2 blocks of 33 rows.
        let dims = match dtype.block() {
            Some((per_block, _)) => [33u64, 2 * per_block],
            None => [33u64, 17],
        };
        let n = dtype.storage_len(dims[0] * dims[1]).unwrap() as usize;
        let data: Vec<u8> = (0..n).map(|_| (rng() >> 40) as u8 & 0x3f).collect();
        check_round_trip(&data, dtype, &dims, &EncodeOptions::default());
    }
}

#[test]
fn incompressible_data_is_stored_raw_and_does_not_grow_much() {
    let data = content(Content::Uniform, 1 << 16, 9);
    let wcz = check_round_trip(&data, Dtype::I8, &[256, 256], &EncodeOptions::default());
    assert!(wcz.len() < data.len() + 512, "{}", wcz.len());
}

#[test]
fn skewed_data_codes_within_one_percent_of_its_bound() {
    let data = content(Content::Gaussian, 1 << 20, 3);
    let wcz = check_round_trip(&data, Dtype::I8, &[1024, 1024], &EncodeOptions::default());
    let dir = Directory::from_file_bytes(&wcz).unwrap();
    let bound = dir.tensors[0].order0_bytes as f64;
    let stored = dir.tensors[0].stored_len() as f64;
    assert!(stored <= bound * 1.01, "stored {stored}, bound {bound}");
}

/// Row classes and predicted tiles in one plane: rows of three spreads (classes pay), a band
/// of tiles whose rows repeat the row above (TOP pays there), and rare values in a few rows
/// only. The rows of predicted tiles are priced and counted from their residuals, the others
/// from their bytes; with counts exact and sampled, every row's table codes it.
#[test]
fn row_classes_meet_predicted_tiles() {
    let (rows, cols) = (768usize, 256usize);
    let mut rng = xorshift(41);
    let mut data = vec![0u8; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let spread = [3u64, 15, 60][r % 3];
            let v = (rng() % (2 * spread + 1)) as i64 - spread as i64;
            data[r * cols + c] = v as i8 as u8;
        }
        // Rows 256..320 repeat the row above but for a byte in eight.
        if (257..320).contains(&r) {
            for c in 0..cols {
                if !rng().is_multiple_of(8) {
                    data[r * cols + c] = data[(r - 1) * cols + c];
                }
            }
        }
        if r % 97 == 5 {
            data[r * cols + 17] = 127;
            data[r * cols + 18] = 0x80;
        }
    }
    for sampled_counts in [false, true] {
        let options = EncodeOptions {
            tile: TileConfig { rows: 64, cols: 128 },
            sampled_counts,
            ..EncodeOptions::default()
        };
        let wcz = check_round_trip(&data, Dtype::I8, &[rows as u64, cols as u64], &options);
        let dir = Directory::from_file_bytes(&wcz).unwrap();
        let wcodec::format::PlaneEncoding::Rans { tables, units, .. } =
            &dir.tensors[0].planes[0].encoding
        else {
            panic!("a coded plane");
        };
        assert!(tables.len() >= 2, "sampled {sampled_counts}: {} tables", tables.len());
        assert!(units.iter().any(|u| u.predictor != Predictor::None), "sampled {sampled_counts}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_tensors_round_trip(
        rows in 0u64..80, cols in 0u64..150,
        tile_rows in 1u32..40, tile_cols in 1u32..70,
        seed in any::<u64>(), kind in 0usize..8, bits in 8u8..=12, tables in 1u8..=4,
    ) {
        let kinds = [Content::Uniform, Content::Gaussian, Content::Sparse, Content::Bimodal,
            Content::Zero, Content::Constant, Content::Extremes, Content::Ramp];
        let data = content(kinds[kind], (rows * cols) as usize, seed);
        let options = EncodeOptions {
            tile: TileConfig { rows: tile_rows, cols: tile_cols },
            prob_bits: bits,
            max_tables: tables,
            ..Default::default()
        };
        check_round_trip(&data, Dtype::I8, &[rows, cols], &options);
    }
}

#[test]
fn float_specials_round_trip_in_every_float_dtype() {
    // NaN (quiet, signalling, with payloads), infinities, negative zero, subnormals, extremes.
    let f32s: [u32; 10] = [
        0x7fc0_0000,
        0x7f80_0001,
        0xffc1_2345,
        0x7f80_0000,
        0xff80_0000,
        0x8000_0000,
        0x0000_0001,
        0x807f_ffff,
        0x7f7f_ffff,
        0x3f80_0000,
    ];
    let f16s: [u16; 10] =
        [0x7e00, 0x7c01, 0xfe55, 0x7c00, 0xfc00, 0x8000, 0x0001, 0x83ff, 0x7bff, 0x3c00];
    let bf16s: [u16; 10] =
        [0x7fc0, 0x7f81, 0xffc1, 0x7f80, 0xff80, 0x8000, 0x0001, 0x807f, 0x7f7f, 0x3f80];
    let f8s: [u8; 10] = [0x7f, 0xff, 0x00, 0x80, 0x01, 0x81, 0x7e, 0xfe, 0x38, 0xb8];
    let tile = |v: &[u8], n: usize| -> Vec<u8> { v.iter().copied().cycle().take(n).collect() };
    let cases: [(Dtype, Vec<u8>); 5] = [
        (Dtype::F32, f32s.iter().flat_map(|v| v.to_le_bytes()).collect()),
        (Dtype::F16, f16s.iter().flat_map(|v| v.to_le_bytes()).collect()),
        (Dtype::BF16, bf16s.iter().flat_map(|v| v.to_le_bytes()).collect()),
        (Dtype::F8E4M3, f8s.to_vec()),
        (Dtype::F8E5M2, f8s.to_vec()),
    ];
    for (dtype, values) in cases {
        let elements = 40 * 50;
        let data = tile(&values, elements * dtype.size());
        check_round_trip(&data, dtype, &[40, 50], &EncodeOptions::default());
        // Mixed with ordinary weights too.
        let mut mixed = content(Content::Gaussian, elements * dtype.size(), 17);
        for (i, chunk) in mixed.chunks_exact_mut(dtype.size()).enumerate().step_by(7) {
            chunk.copy_from_slice(&values[(i % 10) * dtype.size()..][..dtype.size()]);
        }
        check_round_trip(&mixed, dtype, &[40, 50], &EncodeOptions::default());
    }
}
