//! Tiles, byte planes and per-tile predictors: the modelling layer of wcodec.
//!
//! A tensor is split into byte planes by its transform (`planes`), each plane is a row-major
//! byte matrix cut into tiles (`tile`), and each tile is turned into residuals by one of five
//! predictors (`predictor`). Everything here is exact integer arithmetic on bytes, specified in
//! docs/FORMAT.md; encoders and decoders on every device must agree with it bit for bit.
// Safe code throughout, but for the AVX-512 kernels of `planes` (allowed there alone).
#![deny(unsafe_code)]

pub mod planes;
pub mod predictor;
pub mod tile;

pub use planes::{
    PlaneByte, merge_planes, merge_planes_reference, plane_is_signed, plane_strides, split_into,
    split_planes,
};
pub use predictor::{
    Count, choose_predictor, entropy_approx, log2_approx, log2_ratios, reconstruct,
    reconstruct_rows, residuals,
};
pub use tile::{Tile, TileConfig, tile_shape, tiles};
pub use wcodec_format::Predictor;
