//! Cutting a plane into tiles.

use wcodec_format::{MAX_TILE_SYMBOLS, tile_grid};

/// A rectangle of a plane: first row and column, height and width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub r0: usize,
    pub c0: usize,
    pub h: usize,
    pub w: usize,
}

impl Tile {
    pub fn len(&self) -> usize {
        self.h * self.w
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The tile size an encoder asks for; the shape used for a plane follows from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileConfig {
    pub rows: u32,
    pub cols: u32,
}

impl Default for TileConfig {
    fn default() -> Self {
        TileConfig { rows: 256, cols: 256 }
    }
}

/// How many times the configured height a narrow plane's tiles may grow: their units then
/// hold 4x the symbols at most, and a band of the decoder (whole rows of tiles of every plane
/// of a tensor) still fits in L2 (a Q4_1 tensor of 1,536-weight rows: 1,024 rows, 983 KB).
const TALL: u64 = 4;

/// The tile shape for a `rows x cols` plane: the configured shape, except that a plane
/// narrower than a tile gets taller tiles of up to the same area (at most `TALL` times the
/// height), and a plane with fewer rows than a tile wider ones, so that neither 1-D tensors
/// (biases, norms) nor narrow planes (GGUF block scales, 18-48 bytes a row) are cut into
/// slivers whose per-unit overhead (states, record, alignment: about 200 bytes) weighs on
/// their payload.
pub fn tile_shape(rows: u64, cols: u64, config: TileConfig) -> (u32, u32) {
    let area = (u64::from(config.rows) * u64::from(config.cols)).clamp(1, MAX_TILE_SYMBOLS);
    let (config_rows, config_cols) = (u64::from(config.rows).max(1), u64::from(config.cols).max(1));
    let narrow = cols.clamp(1, config_cols);
    // A narrow plane's tile height is cut to whole groups of 128 symbols where that keeps it
    // at least the configured height: such a tile is one run of bytes in a GPU's scratch
    // memory (GGUF block scales), decoded a group a row.
    // Rows whose symbols make whole groups: the group (a power of two) over the largest power
    // of two dividing the width.
    let group = wcodec_format::rans::GROUP as u64;
    let group_rows = group >> narrow.trailing_zeros().min(group.trailing_zeros());
    let by_area = match area / narrow {
        h if narrow < config_cols && h >= group_rows => h - h % group_rows,
        h => h,
    };
    let tile_rows = rows.clamp(1, config_rows.max(by_area.min(TALL * config_rows)));
    let tile_cols = cols.clamp(1, config_cols.max(area / tile_rows));
    (tile_rows as u32, tile_cols as u32)
}

/// The tiles of a `rows x cols` plane in unit order (row-major over the tile grid).
pub fn tiles(rows: usize, cols: usize, tile_rows: u32, tile_cols: u32) -> Vec<Tile> {
    let (gr, gc) = tile_grid(rows as u64, cols as u64, tile_rows, tile_cols);
    let (th, tw) = (tile_rows as usize, tile_cols as usize);
    let mut out = Vec::with_capacity((gr * gc) as usize);
    for tr in 0..gr as usize {
        for tc in 0..gc as usize {
            let (r0, c0) = (tr * th, tc * tw);
            out.push(Tile { r0, c0, h: th.min(rows - r0), w: tw.min(cols - c0) });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_planes_get_taller_tiles_and_short_ones_wider() {
        let config = TileConfig::default();
        assert_eq!(tile_shape(384, 384, config), (256, 256));
        // GGUF block scales: one tile of 576 x 18; at most 4 x 256 rows.
        assert_eq!(tile_shape(576, 18, config), (576, 18));
        assert_eq!(tile_shape(49_152, 18, config), (1024, 18));
        assert_eq!(tile_shape(100_000, 100, config), (640, 100));
        // 1-D tensors: one row, as wide as the area allows.
        assert_eq!(tile_shape(1, 576, config), (1, 576));
        assert_eq!(tile_shape(1, 100_000, config), (1, 65_536));
        assert_eq!(tile_shape(3, 5, config), (3, 5));
        let gpu = TileConfig { rows: 64, cols: 128 };
        assert_eq!(tile_shape(576, 18, gpu), (256, 18));
        // Narrow tiles of whole groups of 128 symbols where the area allows: 341 rows of 48
        // would be 16,368 symbols, 336 are 126 groups.
        let preset = TileConfig { rows: 128, cols: 128 };
        assert_eq!(tile_shape(576, 48, preset), (336, 48));
        assert_eq!(tile_shape(1000, 96, TileConfig::default()), (680, 96));
        assert_eq!(tile_shape(576, 18, preset), (512, 18));
    }

    #[test]
    fn tiles_cover_the_plane_once() {
        for (rows, cols) in [(1, 1), (1, 1000), (1000, 1), (300, 257), (512, 512), (0, 5)] {
            let (th, tw) = tile_shape(rows as u64, cols as u64, TileConfig::default());
            let mut seen = vec![0u8; rows * cols];
            for t in tiles(rows, cols, th, tw) {
                assert!(t.h >= 1 && t.w >= 1);
                for r in t.r0..t.r0 + t.h {
                    for c in t.c0..t.c0 + t.w {
                        seen[r * cols + c] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&s| s == 1), "{rows}x{cols}");
        }
    }

    #[test]
    fn short_planes_get_wide_tiles() {
        assert_eq!(tile_shape(1, 1_000_000, TileConfig::default()), (1, 65536));
        assert_eq!(tile_shape(4, 100, TileConfig::default()), (4, 100));
        assert_eq!(tile_shape(384, 1536, TileConfig::default()), (256, 256));
        assert_eq!(tile_shape(1, 1, TileConfig::default()), (1, 1));
    }
}
