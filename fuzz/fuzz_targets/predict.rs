//! Inverse predictors: `reconstruct` of arbitrary residuals into any tile of any plane writes
//! exactly the tile, and `residuals` of what it wrote gives the residuals back (each predictor
//! is a bijection on a tile).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wcodec::Predictor;
use wcodec::predict::{Tile, reconstruct, residuals};

#[derive(Arbitrary, Debug)]
struct Input {
    rows: u8,
    cols: u8,
    r0: u8,
    c0: u8,
    h: u8,
    w: u8,
    predictor: u8,
    signed: bool,
    fill: u8,
    residuals: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let (rows, cols) = (usize::from(input.rows) + 1, usize::from(input.cols) + 1);
    let r0 = usize::from(input.r0) % rows;
    let c0 = usize::from(input.c0) % cols;
    let h = usize::from(input.h) % (rows - r0) + 1;
    let w = usize::from(input.w) % (cols - c0) + 1;
    let tile = Tile { r0, c0, h, w };
    let predictor = Predictor::ALL[usize::from(input.predictor) % 5];
    let bias = if input.signed { 0x80 } else { 0 };
    let res: Vec<u8> =
        (0..h * w).map(|i| input.residuals.get(i).copied().unwrap_or(i as u8)).collect();
    let mut plane = vec![input.fill; rows * cols];
    reconstruct(&res, predictor, bias, &mut plane, cols, tile);
    for r in 0..rows {
        for c in 0..cols {
            let inside = (r0..r0 + h).contains(&r) && (c0..c0 + w).contains(&c);
            if !inside {
                assert_eq!(plane[r * cols + c], input.fill, "wrote outside the tile at {r},{c}");
            }
        }
    }
    let mut again = vec![0u8; h * w];
    residuals(&plane, cols, tile, predictor, bias, &mut again);
    assert_eq!(again, res, "{predictor:?}");
});
