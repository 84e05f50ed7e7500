//! Round trip: an arbitrary small tensor of any dtype, shape, tile size, precision, table
//! count, predictor set, tile fitting and GGUF blocks coded whole or split compresses and
//! decompresses to exactly its bytes.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wcodec::predict::TileConfig;
use wcodec::{Dtype, EncodeOptions, Predictor};

#[derive(Arbitrary, Debug)]
struct Input {
    dtype: u8,
    dims: Vec<u8>,
    tile_rows: u16,
    tile_cols: u16,
    prob_bits: u8,
    max_tables: u8,
    predictors: u8,
    fit_tiles: bool,
    sampled_counts: bool,
    whole_blocks: bool,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let dtype = Dtype::ALL[usize::from(input.dtype) % Dtype::ALL.len()];
    let dims: Vec<u64> = input
        .dims
        .iter()
        .take(4)
        .map(|&d| u64::from(d % 64) * if d >= 192 { 32 } else { 1 })
        .collect();
    let elements: u64 = dims.iter().product();
    // Block types (GGUF quants) need rows of whole blocks.
    let cols = dims.last().copied().unwrap_or(1);
    if dtype.block().is_some_and(|(per_block, _)| cols % per_block != 0) {
        return;
    }
    let Some(len) = dtype.storage_len(elements).filter(|&len| len <= 1 << 16) else { return };
    // The tensor: the fuzzer's bytes, cycled (or a ramp when there are none).
    let bytes: Vec<u8> = (0..len as usize)
        .map(|i| if input.data.is_empty() { i as u8 } else { input.data[i % input.data.len()] })
        .collect();
    let predictors: Vec<Predictor> =
        Predictor::ALL.into_iter().filter(|p| input.predictors >> (*p as u8) & 1 == 1).collect();
    let options = EncodeOptions {
        tile: TileConfig {
            rows: u32::from(input.tile_rows % 300) + 1,
            cols: u32::from(input.tile_cols % 300) + 1,
        },
        prob_bits: 8 + input.prob_bits % 5,
        max_tables: input.max_tables % 17 + 1,
        // Block types with row classes too, as other encoders may write them.
        block_tables: input.max_tables % 17 + 1,
        predictors,
        fit_tiles: input.fit_tiles,
        sampled_counts: input.sampled_counts,
        whole_blocks: input.whole_blocks,
    };
    let wcz = wcodec::compress_raw(&bytes, dtype, &dims, &options).expect("compresses");
    assert_eq!(wcodec::decompress(&wcz).expect("decompresses"), bytes);
});
