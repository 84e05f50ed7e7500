//! GGUF block types coded whole (`EncodeOptions::whole_blocks`, the GPU preset): the tensor's
//! bytes as one plane (the identity transform), each byte coded with the table of its field
//! (column classes: the class of byte `p` of a block is the field's plane under
//! `block_fields`), where `block_fields` would split the fields into planes of their own.
//!
//! The two code the same bytes with the same tables, so they come out about the same size; what
//! differs is the decoder's work. A GPU decodes whole blocks straight into place, where split
//! planes decode into scratch and a second launch merges them (a third of that decode's time,
//! docs/PERFORMANCE.md). The plane's rows are the tensor's bytes in rows of whole blocks and
//! whole decoder groups (`Transform::plane_shape_fits`; SmolLM2's Q4_1 blocks of 20 bytes in
//! rows of 640), so that every tile is one group wide and as tall as a tile goes: a GPU decodes
//! such units in its fastest loop, a lane's columns at the same place in every group.

use rayon::prelude::*;
use wcodec_format::records::{UNIT_ALIGN, UnitRecord};
use wcodec_format::{Dtype, PlaneEncoding, PlaneEntry, Predictor, rans::STATES_BYTES};
use wcodec_predict::{tile_shape, tiles};
use wcodec_rans::{
    CodedUnit, EncodeTable, GROUP, RansError, TableMap, cost_bits, encode_unit_owned, entropy_bits,
    normalize,
};

use crate::plane::{
    GATHER, MIN_PLANE_SAVING, fitted_tile_shape_saving, lay_out_units, raw_plane, tile_bytes,
};
use crate::{EncodeOptions, Payload};

/// The plane shape of a block type's tensor of `rows` rows of `row_bytes` bytes, in blocks of
/// `block_bytes` (`Transform::plane_shape_fits`): rows of the least common multiple of the
/// block and a decoder group (128 bytes) where that divides the tensor's bytes (SmolLM2's Q4_1
/// blocks of 20 bytes: rows of 640, 32 blocks), so that every tile can be one group wide and
/// as tall as a tile goes; else the rows as they are. (No other row of whole groups fits
/// where these do not: `k` rows side by side are a multiple of them.)
pub(crate) fn plane_shape(rows: u64, row_bytes: u64, block_bytes: u64) -> (u64, u64) {
    let group = GROUP as u64;
    let width = block_bytes / gcd(block_bytes, group).max(1) * group;
    match rows.checked_mul(row_bytes) {
        Some(bytes) if bytes > 0 && width > 0 && bytes.is_multiple_of(width) => {
            (bytes / width, width)
        }
        _ => (rows, row_bytes),
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A tile shape of whole groups (128 columns) a row where the plane's rows are: a tile widened
/// for a plane of few rows (`tile_shape`) to a width that is not, narrowed to whole groups,
/// as many rows as the plane has. A GPU decodes such tiles in its fast loop, a lane's columns
/// at the same place in every group.
fn whole_group_tiles(rows: usize, cols: usize, tile_rows: u32, tile_cols: u32) -> (u32, u32) {
    let (group, w) = (GROUP as u32, tile_cols as usize);
    if !cols.is_multiple_of(GROUP) || w.is_multiple_of(GROUP) || w >= cols {
        return (tile_rows, tile_cols);
    }
    ((tile_rows as usize).min(rows) as u32, (tile_cols / group).max(1) * group)
}

/// The column classes of a block of `dtype`: byte `p` of the block is in the class of the
/// `block_fields` plane that holds it. `None` for types that are not block types.
pub(crate) fn column_classes(dtype: Dtype) -> Option<Vec<u8>> {
    let (_, block_bytes) = dtype.block()?;
    let fields = wcodec_format::blocks::block_fields(dtype)?;
    let mut classes = vec![0u8; block_bytes as usize];
    for (j, f) in fields.iter().enumerate() {
        for k in 0..f.count {
            classes[usize::from(f.offset + k * f.step)] = j as u8;
        }
    }
    Some(classes)
}

/// The precision of the tables of blocks coded whole, at most: a GPU block keeps all of a
/// plane's tables in shared memory, 4 KiB a class at 10 bits (Q4_1's 5 classes: 20 KiB), 8 KiB
/// at 11 (40 KiB), which leaves a multiprocessor fewer blocks. Measured on an H200 (SmolLM2's
/// GGUF layers, 512 MiB a launch, variant 8's best shape): 878 GB/s at 10 bits against 730 at 11,
/// for a ratio of 1.1040 against 1.1048 (9 bits: 895 GB/s, 1.0992).
const MAX_PROB_BITS: u8 = 10;

/// Bytes of a plane counted by one task.
const COUNT_ROWS_BYTES: usize = 1 << 18;

/// The histogram of each class's bytes: byte `c` of every row in class `classes[c % period]`
/// (`cols` a multiple of the period).
fn class_histograms(bytes: &[u8], cols: usize, classes: &[u8], n: usize) -> Vec<[u64; 256]> {
    let rows_a_task = (COUNT_ROWS_BYTES / cols.max(1)).max(1);
    bytes
        .par_chunks(rows_a_task * cols)
        .map(|chunk| {
            // Flat arrays, byte b of class c at 256 c + b: an index and an add a byte. Four of
            // them, the bytes of a block in turn, so that runs of one class (a block's quants)
            // do not wait on the last increment of the same counter. u32 counters: a task
            // counts fewer than 2^32 bytes (rows of at most 2^32 bytes, `COUNT_ROWS_BYTES` of
            // them or one).
            const COPIES: usize = 4;
            let mut flat = vec![0u32; COPIES * 256 * n];
            let bins: Vec<usize> = (classes.iter().enumerate())
                .map(|(p, &c)| 256 * (n * (p % COPIES) + usize::from(c)))
                .collect();
            for block in chunk.chunks_exact(classes.len()) {
                for (&b, &bin) in block.iter().zip(&bins) {
                    flat[bin | usize::from(b)] += 1;
                }
            }
            let (first, others) = flat.split_at_mut(256 * n);
            for copy in others.chunks_exact(256 * n) {
                first.iter_mut().zip(copy).for_each(|(f, &c)| *f += c);
            }
            first.chunks_exact(256).map(|h| h.try_into().expect("256 counts")).collect::<Vec<_>>()
        })
        .reduce(
            || vec![[0u32; 256]; n],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(&b) {
                    for (p, q) in x.iter_mut().zip(y) {
                        *p += q;
                    }
                }
                a
            },
        )
        .iter()
        .map(|h| h.map(u64::from))
        .collect()
}

/// Encodes a `rows x cols` plane of whole blocks (`cols` a multiple of `classes.len()`, the
/// block's bytes) with a table a class, no prediction; returns its entry (payload offset 0),
/// the order-0 entropy of its classes' bytes in bits, and its payload, or `None` where the
/// plane is stored raw (its payload is then `bytes`). `crc32c` is that of `bytes`.
pub(crate) fn encode_whole_blocks(
    bytes: &[u8],
    rows: usize,
    cols: usize,
    classes: &[u8],
    crc32c: u32,
    options: &EncodeOptions,
) -> (PlaneEntry, f64, Option<Payload>) {
    debug_assert!(bytes.len() == rows * cols && cols.is_multiple_of(classes.len()));
    let raw = |order0_bits: f64| (raw_plane(rows, cols, crc32c), order0_bits, None);
    // (No bytes: rows of no columns, or no rows.)
    if bytes.is_empty() {
        return raw(0.0);
    }
    let n_classes = usize::from(classes.iter().copied().max().unwrap_or(0)) + 1;
    let hists = class_histograms(bytes, cols, classes, n_classes);
    let order0_bits: f64 = hists.iter().map(entropy_bits).sum();
    let prob_bits = options.prob_bits.min(MAX_PROB_BITS);
    let freqs: Vec<_> = hists.iter().map(|h| normalize(h, prob_bits)).collect();
    let coded_bits: f64 = hists.iter().zip(&freqs).map(|(h, f)| cost_bits(h, f, prob_bits)).sum();
    let (tile_rows, tile_cols) = if options.fit_tiles {
        let saved_per_symbol = 1.0 - coded_bits / 8.0 / bytes.len() as f64;
        fitted_tile_shape_saving(rows, cols, false, options.tile, saved_per_symbol)
    } else {
        tile_shape(rows as u64, cols as u64, options.tile)
    };
    let (tile_rows, tile_cols) = whole_group_tiles(rows, cols, tile_rows, tile_cols);
    let tiles = tiles(rows, cols, tile_rows, tile_cols);
    let per_unit = (STATES_BYTES + UnitRecord::LEN) as f64 + UNIT_ALIGN as f64 / 2.0;
    let worth = bytes.len() as f64 * (1.0 - MIN_PLANE_SAVING);
    let estimate = coded_bits / 8.0 + per_unit * tiles.len() as f64 + freqs.len() as f64 * 300.0;
    if estimate >= worth {
        return raw(order0_bits);
    }
    let encoders: Vec<EncodeTable> = freqs.iter().map(|f| EncodeTable::new(f, prob_bits)).collect();
    let bits_per_symbol = coded_bits / bytes.len() as f64;
    let coded: Result<Vec<(CodedUnit, u32)>, RansError> = tiles
        .par_iter()
        .map(|tile| {
            let map = TableMap::Cols { col_tables: classes, first: tile.c0, width: tile.w };
            let expected =
                (bits_per_symbol * tile.len() as f64 / 8.0 * 1.0625) as usize + STATES_BYTES + 256;
            let unit = GATHER.with_borrow_mut(|scratch| {
                encode_unit_owned(tile_bytes(bytes, cols, *tile, scratch), &encoders, map, expected)
            })?;
            let crc = wcodec_format::crc32c(unit.bytes());
            Ok((unit, crc))
        })
        .collect();
    // Every byte has a frequency in its class's table (counted from all of them): a unit the
    // coder refuses would be an encoder bug, and the plane is then stored as it is.
    let Ok(coded) = coded else {
        debug_assert!(false, "a symbol without frequency in a plane of whole blocks");
        return raw(order0_bits);
    };
    let (payload, units) = lay_out_units(coded, std::iter::repeat(Predictor::None));
    let directory_cost = units.len() * UnitRecord::LEN + freqs.len() * 300 + classes.len();
    if (payload.len() + directory_cost) as f64 >= worth {
        return raw(order0_bits);
    }
    let entry = PlaneEntry {
        rows: rows as u64,
        cols: cols as u64,
        tile_rows,
        tile_cols,
        bias128: false,
        payload_offset: 0,
        payload_len: payload.len() as u64,
        encoding: PlaneEncoding::Rans {
            prob_bits,
            tables: freqs,
            row_tables: Vec::new(),
            col_tables: classes.to_vec(),
            units,
        },
    };
    (entry, order0_bits, Some(payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wcodec_format::Dtype;

    #[test]
    fn planes_are_rows_of_whole_blocks_and_groups() {
        // SmolLM2: Q4_1 rows of 576 values (360 bytes, blocks of 20), Q8_0 rows of 576 (612,
        // blocks of 34): rows of 640 and 2176 bytes.
        assert_eq!(plane_shape(1536, 360, 20), (864, 640));
        assert_eq!(plane_shape(49152, 612, 34), (13824, 2176));
        // 16 rows of 360 bytes are 9 of 640; 15 rows are not whole rows of 640: as they are.
        assert_eq!(plane_shape(16, 360, 20), (9, 640));
        assert_eq!(plane_shape(15, 360, 20), (15, 360));
        // Blocks of 128 bytes and more that divide: rows of one block; nothing.
        assert_eq!(plane_shape(10, 256, 256), (10, 256));
        assert_eq!(plane_shape(0, 360, 20), (0, 360));
        assert_eq!(plane_shape(4, 0, 20), (4, 0));
    }

    #[test]
    fn tiles_widened_for_few_rows_keep_to_whole_groups() {
        // 12 rows of 5760 bytes: 128 x 128 widened to 12 x 1365, kept at 12 x 1280.
        assert_eq!(whole_group_tiles(12, 5760, 12, 1365), (12, 1280));
        assert_eq!(whole_group_tiles(12, 5760, 12, 100), (12, 128));
        // Whole groups already, rows not of whole groups, a tile as wide as the plane.
        assert_eq!(whole_group_tiles(300, 5760, 128, 128), (128, 128));
        assert_eq!(whole_group_tiles(12, 360, 12, 300), (12, 300));
        assert_eq!(whole_group_tiles(2, 640, 2, 640), (2, 640));
    }

    #[test]
    fn each_byte_of_a_block_takes_its_fields_class() {
        // Q4_1: d (low, high bytes), m (low, high), 16 bytes of quants.
        let q4_1 = column_classes(Dtype::Q4_1).expect("a block type");
        assert_eq!(&q4_1[..5], &[0, 1, 2, 3, 4]);
        assert!(q4_1[4..].iter().all(|&c| c == 4) && q4_1.len() == 20);
        // Q8_K: its bsums' low and high bytes interleave.
        let q8_k = column_classes(Dtype::Q8K).expect("a block type");
        assert_eq!(&q8_k[258..264], &[4, 4, 5, 6, 5, 6]);
        assert!(column_classes(Dtype::I8).is_none());
    }
}
