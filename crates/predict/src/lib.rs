//! Tiles, byte planes and per-tile predictors of wcodec
