//! Test data shared by the emulator tests (any machine) and the GPU tests: random tensors of
//! every shape class, dtype and predictor, real slices from tests/data, damaged files, and the
//! CPU reference decoder as the oracle.
#![allow(dead_code)]

use std::path::PathBuf;

use wcodec_encode::{EncodeOptions, FileWriter, TensorInput, encode_tensor};
use wcodec_format::{Directory, Dtype, PlaneEncoding, Predictor, SourceKind};
use wcodec_predict::TileConfig;

/// xorshift64*: small, seeded, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Weight-like bytes: each row drawn around 0 with its own spread (so row classes pay), every
/// few rows a smooth ramp (so predictors have something to predict).
pub fn weights(rng: &mut Rng, rows: usize, row_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows * row_len);
    for r in 0..rows {
        let spread = [2u64, 9, 40, 120][r % 4];
        let ramp = r % 5 == 4;
        for c in 0..row_len {
            let v = if ramp {
                (c as i64 * 3 + r as i64) as u8
            } else {
                let a = rng.below(spread) as i64 - rng.below(spread) as i64;
                a as i8 as u8
            };
            out.push(v);
        }
    }
    out
}

/// One tensor to encode and the options to encode it with.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub dtype: Dtype,
    pub dims: Vec<u64>,
    pub bytes: Vec<u8>,
    pub options: EncodeOptions,
}

pub fn options(tile: (u32, u32), predictors: &[Predictor], max_tables: u8) -> EncodeOptions {
    EncodeOptions {
        tile: TileConfig { rows: tile.0, cols: tile.1 },
        predictors: predictors.to_vec(),
        max_tables,
        ..EncodeOptions::default()
    }
}

/// Shape classes: 1x1, 1xN, Nx1, not a multiple of the tile, exact multiples, 3-D, 0-D, empty.
pub const SHAPES: &[&[u64]] = &[
    &[1, 1],
    &[1, 5000],
    &[5000, 1],
    &[300, 257],
    &[256, 256],
    &[3, 37, 40],
    &[],
    &[0, 16],
    &[129, 77],
    &[2, 3000],
];

/// Tile shapes: word stores (widths % 4 == 0) and byte stores (odd widths), small enough to
/// give tensors several tiles and partial edge tiles, large enough (>= 1000 symbols) that
/// coding pays and the encoder does not store the plane raw. (4096, 8) gives an Nx1 tensor
/// tall tiles; (256, 256) and (64, 128) take the kernel's fast path for whole row spans (two
/// and one 128-byte groups a row).
pub const TILES: &[(u32, u32)] =
    &[(256, 256), (32, 64), (48, 36), (40, 33), (4096, 8), (64, 100), (64, 128)];

/// Element types: identity (i8, u8), bf16_split, f32_split, byte_planes (f16, i16).
pub const DTYPES: &[Dtype] =
    &[Dtype::I8, Dtype::BF16, Dtype::F32, Dtype::F16, Dtype::U8, Dtype::I16];

/// GGUF block types (block_fields) and shapes whose rows are whole blocks.
pub const BLOCK_CASES: &[(Dtype, &[u64])] = &[
    (Dtype::Q8_0, &[37, 96]),
    (Dtype::Q4_0, &[64, 256]),
    (Dtype::Q4K, &[12, 512]),
    (Dtype::Q6K, &[5, 256]),
    (Dtype::Q8K, &[3, 512]),
    (Dtype::Q5_1, &[40, 64]),
];

/// Every shape class with every predictor forced (and the encoder's own choice), cycling
/// through tiles, dtypes and table counts so that each appears with each shape.
pub fn cases() -> Vec<Case> {
    let mut rng = Rng::new(7);
    let mut predictor_sets: Vec<Vec<Predictor>> = Predictor::ALL.iter().map(|&p| vec![p]).collect();
    predictor_sets.push(Predictor::ALL.to_vec());
    let mut out = Vec::new();
    let mut k = 0usize;
    for dims in SHAPES {
        for preds in &predictor_sets {
            let dtype = DTYPES[k % DTYPES.len()];
            let tile = TILES[(k / 2) % TILES.len()];
            let max_tables = [1u8, 8, 4][k % 3];
            k += 1;
            let (rows, cols) = wcodec_format::matrix_shape(dims).unwrap();
            let row_len = (cols as usize) * dtype.size();
            let bytes = weights(&mut rng, rows as usize, row_len);
            out.push(Case {
                name: format!("{dims:?} {dtype} {preds:?} tile {tile:?} tables {max_tables}"),
                dtype,
                dims: dims.to_vec(),
                bytes,
                options: options(tile, preds, max_tables),
            });
        }
    }
    // GGUF block types, each field a plane.
    for (i, &(dtype, dims)) in BLOCK_CASES.iter().enumerate() {
        let (rows, cols) = wcodec_format::matrix_shape(dims).unwrap();
        let row_len = dtype.storage_len(cols).unwrap() as usize;
        let bytes = weights(&mut rng, rows as usize, row_len);
        let preds = &predictor_sets[i % predictor_sets.len()];
        let tile = TILES[i % TILES.len()];
        out.push(Case {
            name: format!("{dims:?} {dtype} {preds:?} tile {tile:?}"),
            dtype,
            dims: dims.to_vec(),
            bytes,
            options: options(tile, preds, 4),
        });
    }
    // Every dtype on one awkward shape with the encoder's full choice.
    for &dtype in DTYPES {
        for &tile in TILES {
            let dims = vec![70u64, 45];
            let bytes = weights(&mut rng, 70, 45 * dtype.size());
            out.push(Case {
                name: format!("{dims:?} {dtype} all tile {tile:?}"),
                dtype,
                dims,
                bytes,
                options: options(tile, &Predictor::ALL, 8),
            });
        }
    }
    // One-byte planes under each predictor whose tiles the kernel rebuilds a word of 4
    // columns a step (rows of a multiple of 4 bytes, tile widths too), and some whose tiles it
    // cannot (a row of 130 bytes, a tile 2 wide).
    let word_rows: &[(Dtype, [u64; 2], (u32, u32))] = &[
        (Dtype::I8, [100, 384], (64, 128)),
        (Dtype::U8, [45, 132], (40, 44)),
        (Dtype::I8, [37, 8], (37, 4)),
        (Dtype::I8, [70, 130], (33, 64)),
    ];
    for &(dtype, dims, tile) in word_rows {
        for &p in &Predictor::ALL[1..] {
            let bytes = weights(&mut rng, dims[0] as usize, dims[1] as usize);
            out.push(Case {
                name: format!("{dims:?} {dtype} [{p:?}] tile {tile:?} (word rows)"),
                dtype,
                dims: dims.to_vec(),
                bytes,
                options: options(tile, &[p], 1),
            });
        }
    }
    out
}

/// A rANS plane with 16 row classes of disjoint symbol ranges and distinct spreads: its 16
/// tables at 12 bits (256 KiB) do not fit in shared memory (227 KiB on an H100), so the kernel
/// reads them from global memory.
pub fn sixteen_tables() -> Case {
    let mut rng = Rng::new(16);
    let (rows, cols) = (32usize, 8192usize);
    let mut bytes = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let class = (r * 7 % 16) as u64;
        for _ in 0..cols {
            bytes.push((class * 16 + rng.below(class + 1)) as u8);
        }
    }
    Case {
        name: "16 row classes".into(),
        dtype: Dtype::U8,
        dims: vec![rows as u64, cols as u64],
        bytes,
        options: options((64, 512), &[Predictor::None], 16),
    }
}

/// A .wcz holding `cases` as the tensors of one raw source file, back to back.
pub fn file_of(cases: &[Case]) -> Vec<u8> {
    let source_len: u64 = cases.iter().map(|c| c.bytes.len() as u64).sum();
    let mut writer = FileWriter::new(Vec::new(), SourceKind::Raw, source_len).unwrap();
    let mut offset = 0u64;
    for c in cases {
        let input = TensorInput {
            name: &c.name,
            dtype: c.dtype,
            dims: &c.dims,
            bytes: &c.bytes,
            source_offset: offset,
        };
        writer.add_tensor(encode_tensor(&input, &c.options).unwrap()).unwrap();
        offset += c.bytes.len() as u64;
    }
    writer.finish(Vec::new()).unwrap()
}

/// The checked-in slices of real weights (`$WCODEC_TEST_DATA` where the binary runs elsewhere
/// than it was built).
pub fn data_dir() -> PathBuf {
    match std::env::var_os("WCODEC_TEST_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data"),
    }
}

/// Real data as .wcz files: (name, file). Safetensors and GGUF slices through their layout; the
/// SmolLM2 Q8_0 quants as a raw 256 x 1024 int8 tensor.
pub fn real_files(options: &EncodeOptions) -> Vec<(String, Vec<u8>)> {
    let dir = data_dir();
    let mut out = Vec::new();
    let names = [
        "minilm-int8-per-tensor.safetensors",
        "minilm-bf16-slice.safetensors",
        "smollm2-slice.gguf",
    ];
    for name in names {
        let source = std::fs::read(dir.join(name)).unwrap();
        let layout = wcodec_container::read_layout(&source).unwrap();
        let wcz = wcodec_encode::compress_file(&source, &layout, options, Vec::new(), &mut |_| {})
            .unwrap();
        out.push((name.to_owned(), wcz));
    }
    let quants = std::fs::read(dir.join("smollm2-q8_0-quants-256x1024.i8")).unwrap();
    let wcz = wcodec_encode::compress_raw(&quants, Dtype::I8, &[256, 1024], options).unwrap();
    out.push(("smollm2-q8_0-quants-256x1024.i8".to_owned(), wcz));
    out
}

/// The reference decoder's bytes of every tensor (the oracle).
pub fn reference(file: &[u8], dir: &Directory) -> Vec<Vec<u8>> {
    dir.tensors.iter().map(|t| wcodec_decode::decode_tensor_reference(file, t).unwrap()).collect()
}

/// Copies of `file` with one unit's stream damaged: a flipped bit in its first state, in a
/// middle word, in its last word; and a unit whose stream is cut short by a directory that
/// claims fewer bytes. Returns (what, file, directory) triples; the directory may differ from
/// the file's own (checksums are then not verified).
pub fn damaged(file: &[u8], dir: &Directory) -> Vec<(String, Vec<u8>, Directory)> {
    let mut out = Vec::new();
    for (ti, t) in dir.tensors.iter().enumerate() {
        for (pi, p) in t.planes.iter().enumerate() {
            let PlaneEncoding::Rans { units, .. } = &p.encoding else { continue };
            let Some(u) = units.last() else { continue };
            let start = (p.payload_offset + u.offset) as usize;
            let len = u.len as usize;
            for (what, at) in [
                ("first state", start + 1),
                ("middle word", start + 128 + (len - 128) / 2),
                ("last word", start + len - 1),
            ] {
                let mut f = file.to_vec();
                f[at] ^= 0x10;
                out.push((format!("tensor {ti} plane {pi}: {what}"), f, dir.clone()));
            }
            if u.len >= 132 {
                let mut d = dir.clone();
                if let PlaneEncoding::Rans { units, .. } = &mut d.tensors[ti].planes[pi].encoding {
                    units.last_mut().unwrap().len -= 2;
                }
                out.push((format!("tensor {ti} plane {pi}: short unit"), file.to_vec(), d));
            }
            if out.len() > 40 {
                return out;
            }
        }
    }
    out
}

/// BF16 weights as a model has them: each row's values drawn around 0 with its own scale
/// (about normal, so the exponents are skewed and the mantissas near random), with the
/// specials sprinkled in (NaN, +-inf, +-0, subnormals) where `specials` says.
pub fn bf16_weights(rng: &mut Rng, n: usize, row_len: usize, specials: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 * n);
    for i in 0..n {
        let scale = [0.02f32, 0.1, 1.5, 0.004][(i / row_len.max(1)) % 4];
        let normal: f32 =
            (0..4).map(|_| rng.below(1 << 20) as f32 / (1 << 20) as f32).sum::<f32>() - 2.0;
        let mut v = ((normal * scale).to_bits() >> 16) as u16;
        if specials {
            v = match rng.below(64) {
                0 => 0x7fc0 | (rng.below(0x40) as u16), // NaN, some payload
                1 => 0x7f80,                            // inf
                2 => 0xff80,                            // -inf
                3 => 0x8000,                            // -0
                4 => rng.below(0x80) as u16,            // subnormal
                _ => v,
            };
        }
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// BF16 tensors of odd shapes and tiles (partial tiles, widths that are and are not multiples
/// of 4 and of 128), with and without predictors and specials, so that the exponent plane is
/// coded and the sign-mantissa plane stored raw (the merged path: word and byte stores, the
/// fast path, predicted tiles rebuilt then merged); and a few whose sign-mantissa plane is coded
/// (few distinct mantissas) or whose planes are both raw (random bits), which take the
/// scratch-and-merge path.
pub fn bf16_cases() -> Vec<Case> {
    let mut rng = Rng::new(11);
    let shapes: &[&[u64]] = &[
        &[1, 1],
        &[3, 7],
        &[1, 4096],
        &[300, 257],
        &[129, 384],
        &[64, 128],
        &[2, 37, 40],
        &[70, 128],
        &[257, 512],
        &[100, 36],
        &[4096, 3],
    ];
    let tiles: &[(u32, u32)] =
        &[(64, 128), (32, 64), (40, 33), (256, 256), (48, 36), (64, 256), (16, 128)];
    let predictor_sets: &[&[Predictor]] = &[
        &[Predictor::None],
        &Predictor::ALL,
        &[Predictor::Left],
        &[Predictor::Paeth],
        &[Predictor::Top],
        &[Predictor::Avg],
    ];
    let mut out = Vec::new();
    let mut k = 0usize;
    for dims in shapes {
        for &tile in tiles {
            let preds = predictor_sets[k % predictor_sets.len()];
            let max_tables = [1u8, 4, 8][k % 3];
            let specials = k % 2 == 1;
            k += 1;
            let (rows, cols) = wcodec_format::matrix_shape(dims).unwrap();
            let bytes = bf16_weights(&mut rng, (rows * cols) as usize, cols as usize, specials);
            out.push(Case {
                name: format!(
                    "bf16 {dims:?} {preds:?} tile {tile:?} tables {max_tables} specials {specials}"
                ),
                dtype: Dtype::BF16,
                dims: dims.to_vec(),
                bytes,
                options: options(tile, preds, max_tables),
            });
        }
    }
    // A coded sign-mantissa plane: multiples of 1/8 up to +-4 (few distinct mantissas).
    let (rows, cols) = (96usize, 256usize);
    let mut bytes = Vec::new();
    for _ in 0..rows * cols {
        let v = ((rng.below(65) as f32 - 32.0) / 8.0).to_bits() >> 16;
        bytes.extend_from_slice(&(v as u16).to_le_bytes());
    }
    out.push(Case {
        name: "bf16 coded sign-mantissa".into(),
        dtype: Dtype::BF16,
        dims: vec![rows as u64, cols as u64],
        bytes,
        options: options((64, 128), &Predictor::ALL, 1),
    });
    // Random bits: both planes stored raw.
    let bytes: Vec<u8> = (0..2 * 50 * 130).map(|_| rng.next() as u8).collect();
    out.push(Case {
        name: "bf16 random bits".into(),
        dtype: Dtype::BF16,
        dims: vec![50, 130],
        bytes,
        options: options((32, 64), &Predictor::ALL, 1),
    });
    out
}

/// Tensors made with the GPU preset (`EncodeOptions::for_gpu`: 128x128 tiles, one table) whose
/// rows are not whole groups of 128: the tiles at the right edge are 64 (576, 960 wide) or 32
/// (544) columns wide, whole groups of whole rows, which the ring loop decodes as one-span
/// tiles; and edges it leaves to the general loop: 100 columns (612), odd heights (whose last
/// tile row is not whole groups), and several tables a plane. INT8 and BF16.
pub fn narrow_edge_cases() -> Vec<Case> {
    let mut rng = Rng::new(576);
    let shapes: &[(u64, u64)] =
        &[(256, 576), (130, 960), (128, 544), (129, 576), (64, 612), (301, 576)];
    let mut out = Vec::new();
    for (k, &(rows, cols)) in shapes.iter().enumerate() {
        for (dtype, max_tables) in [(Dtype::I8, 1u8), (Dtype::BF16, 1), (Dtype::I8, 4)] {
            let n = (rows * cols) as usize;
            let bytes = match dtype {
                Dtype::BF16 => bf16_weights(&mut rng, n, cols as usize, k % 2 == 1),
                _ => weights(&mut rng, rows as usize, cols as usize),
            };
            out.push(Case {
                name: format!("{rows}x{cols} {dtype} for_gpu tables {max_tables}"),
                dtype,
                dims: vec![rows, cols],
                bytes,
                options: EncodeOptions {
                    max_tables,
                    block_tables: max_tables,
                    ..EncodeOptions::for_gpu()
                },
            });
        }
    }
    out
}

/// GGUF block types coded whole (`EncodeOptions::whole_blocks`: column classes): rows side by
/// side to whole groups (Q8_0 and Q4_1 of 576 columns, Q4_0 of 1024), rows that k does not
/// divide (63 rows of Q4_1: tiles of 360 columns), rows that stay as they are (Q6_K, Q8_K),
/// each with the GPU preset's fitted 128 x 128 tiles, with tiles two groups wide and with narrow
/// ones.
pub fn whole_block_cases() -> Vec<Case> {
    let mut rng = Rng::new(576);
    let kinds: &[(Dtype, &[u64])] = &[
        (Dtype::Q8_0, &[64, 576]),
        (Dtype::Q4_1, &[48, 576]),
        (Dtype::Q4_1, &[63, 576]),
        (Dtype::Q4_0, &[40, 1024]),
        (Dtype::Q6K, &[40, 512]),
        (Dtype::Q8K, &[20, 1024]),
    ];
    let mut out = Vec::new();
    for &(dtype, dims) in kinds {
        for tile in [None, Some((64, 256)), Some((32, 64))] {
            let (rows, cols) = wcodec_format::matrix_shape(dims).unwrap();
            let row_len = dtype.storage_len(cols).unwrap() as usize;
            let preset = EncodeOptions::for_gpu();
            let options = match tile {
                None => preset,
                Some((rows, cols)) => {
                    EncodeOptions { tile: TileConfig { rows, cols }, fit_tiles: false, ..preset }
                }
            };
            out.push(Case {
                name: format!("{dims:?} {dtype} whole, tile {tile:?}"),
                dtype,
                dims: dims.to_vec(),
                bytes: weights(&mut rng, rows as usize, row_len),
                options,
            });
        }
    }
    out
}

/// GGUF block types made with the GPU preset, rows of whole 128-column groups in their fields:
/// block fields in runs of 4 columns (`FLAG_FIELD_RUNS`), blocks whose stride is 4-aligned
/// (Q4_1: 20 bytes, Q4_K: 144) and only 2-aligned (Q8_0: 34, Q4_0: 18, Q6_K: 210), one table
/// and four, an edge tile of 64 columns (Q8_0's 576 quants a row); and fields the encoder tiles
/// in widths that are not whole groups (Q4_1's 288 quant bytes a row, a Q8_0 tensor of 96
/// columns), left to the general loop.
pub fn field_run_cases() -> Vec<Case> {
    let mut rng = Rng::new(34);
    let kinds: &[(Dtype, &[u64])] = &[
        (Dtype::Q8_0, &[64, 512]),
        (Dtype::Q4_1, &[48, 1024]),
        (Dtype::Q4_0, &[40, 1024]),
        (Dtype::Q4K, &[16, 1024]),
        (Dtype::Q6K, &[9, 1024]),
        (Dtype::Q8_0, &[64, 576]),
        (Dtype::Q4_1, &[32, 576]),
        (Dtype::Q8_0, &[37, 96]),
    ];
    let mut out = Vec::new();
    for &(dtype, dims) in kinds {
        for max_tables in [1u8, 4] {
            let (rows, cols) = wcodec_format::matrix_shape(dims).unwrap();
            let row_len = dtype.storage_len(cols).unwrap() as usize;
            out.push(Case {
                name: format!("{dims:?} {dtype} for_gpu tables {max_tables}"),
                dtype,
                dims: dims.to_vec(),
                bytes: weights(&mut rng, rows as usize, row_len),
                options: EncodeOptions {
                    max_tables,
                    block_tables: max_tables,
                    whole_blocks: false,
                    ..EncodeOptions::for_gpu()
                },
            });
        }
    }
    out
}

/// `mixed_file()`, its directory and its tensors decoded by the CPU reference.
pub fn mixed_with_reference() -> (Vec<u8>, Directory, Vec<Vec<u8>>) {
    let file = mixed_file();
    let dir = Directory::from_file_bytes(&file).unwrap();
    let expected = reference(&file, &dir);
    (file, dir, expected)
}

/// Twelve of the cases, four BF16 ones and four GGUF ones in one file: every unit kind, merged
/// BF16 tensors and (with `merge_while_decoding` off) tensors through scratch and the merge
/// launch, GGUF blocks merged whole from scratch (Q8_0, Q4_1) and Q4_K's heads merged.
pub fn mixed_file() -> Vec<u8> {
    let mut cases = cases()[..12].to_vec();
    cases.extend(bf16_cases().into_iter().take(4));
    let blocks = field_run_cases();
    cases.extend([1, 2, 12, 6].map(|i| blocks[i].clone()));
    file_of(&cases)
}

/// Random bytes (stored raw: coding them does not pay) as one u8 tensor of 200,001 bytes: a
/// raw plane of 4 CRC chunks, the last one short. The bytes, and the file.
pub fn raw_plane_file() -> (Vec<u8>, Vec<u8>) {
    raw_plane_file_of(200_001)
}

/// `raw_plane_file` of `n` bytes.
pub fn raw_plane_file_of(n: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng::new(0x0123_4567);
    let bytes: Vec<u8> = (0..n).map(|_| (rng.next() >> 24) as u8).collect();
    let file =
        wcodec_encode::compress_raw(&bytes, Dtype::U8, &[n], &EncodeOptions::default()).unwrap();
    (bytes, file)
}
