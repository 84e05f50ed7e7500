//! Encoding one byte plane: pass 1 (predictors and histograms per tile, tables), pass 2
//! (one rANS unit per tile), and the decision to store the plane raw when coding does not pay.

use rayon::prelude::*;
use wcodec_format::records::{UNIT_ALIGN, UnitRecord};
use wcodec_format::{PlaneEncoding, PlaneEntry, Predictor, UnitEntry, rans::STATES_BYTES};
use wcodec_predict::{Tile, choose_predictor, residuals, tile_shape, tiles};
use wcodec_rans::{
    EncodeTable, TableMap, cost_bits, encode_unit, entropy_bits, histogram, normalize,
};

use crate::EncodeOptions;
use crate::tables::choose_tables;

/// One encoded plane: its entry (payload offset 0) and its payload.
#[derive(Clone, Debug)]
pub struct EncodedPlane {
    pub entry: PlaneEntry,
    pub payload: Vec<u8>,
    /// Order-0 entropy of the plane's bytes, in bits (informational).
    pub order0_bits: f64,
}

fn raw_plane(bytes: &[u8], rows: u64, cols: u64, order0_bits: f64) -> EncodedPlane {
    EncodedPlane {
        entry: PlaneEntry {
            rows,
            cols,
            tile_rows: 0,
            tile_cols: 0,
            bias128: false,
            payload_offset: 0,
            payload_len: bytes.len() as u64,
            encoding: PlaneEncoding::Raw { crc32c: crc32c::crc32c(bytes) },
        },
        payload: bytes.to_vec(),
        order0_bits,
    }
}

/// Encodes a row-major `rows x cols` byte plane.
pub fn encode_plane(
    bytes: &[u8],
    rows: usize,
    cols: usize,
    bias128: bool,
    options: &EncodeOptions,
) -> EncodedPlane {
    debug_assert_eq!(bytes.len(), rows * cols);
    if bytes.is_empty() {
        return raw_plane(bytes, rows as u64, cols as u64, 0.0);
    }
    let bias = if bias128 { 0x80 } else { 0 };
    let (tile_rows, tile_cols) = tile_shape(rows as u64, cols as u64, options.tile);
    let tiles: Vec<Tile> = tiles(rows, cols, tile_rows, tile_cols);

    // Pass 1: predictor and residuals of every tile.
    let analysed: Vec<(Predictor, Vec<u8>)> = tiles
        .par_iter()
        .map(|&tile| {
            let predictor = choose_predictor(bytes, cols, tile, bias, &options.predictors);
            let mut res = vec![0u8; tile.len()];
            residuals(bytes, cols, tile, predictor, bias, &mut res);
            (predictor, res)
        })
        .collect();
    // Then the tables: row classes from per-row histograms (u32 counts: rows shorter than
    // 2^32), computed from the tiles' residuals when asked for (that pass also gives the
    // plane's histogram), or one table from the tiles' histograms.
    let prob_bits = options.prob_bits;
    let (tables, row_tables, coded_bits, total) =
        if options.max_tables > 1 && rows > 1 && cols <= u32::MAX as usize {
            let grid_cols = cols.div_ceil(tile_cols as usize);
            let tile_rows = tile_rows as usize;
            let row_hist = |r: usize| {
                let mut h = [0u32; 256];
                let band = r / tile_rows;
                let in_band = band * grid_cols..(band + 1) * grid_cols;
                for (tile, (_, res)) in tiles[in_band.clone()].iter().zip(&analysed[in_band]) {
                    for &x in &res[(r - tile.r0) * tile.w..][..tile.w] {
                        h[x as usize] += 1;
                    }
                }
                h
            };
            choose_tables(rows, &row_hist, prob_bits, options.max_tables)
        } else {
            let hists: Vec<[u64; 256]> =
                analysed.par_iter().map(|(_, res)| histogram(res)).collect();
            let mut total = [0u64; 256];
            for h in &hists {
                for (t, &c) in total.iter_mut().zip(h) {
                    *t += c;
                }
            }
            let table = normalize(&total, prob_bits);
            let bits = cost_bits(&total, &table, prob_bits);
            (vec![table], Vec::new(), bits, total)
        };
    // With NONE everywhere the residuals are the bytes XOR a constant: same entropy.
    let order0_bits = if analysed.iter().all(|(p, _)| *p == Predictor::None) {
        entropy_bits(&total)
    } else {
        entropy_bits(&histogram(bytes))
    };

    // Estimate before coding: a plane that will not shrink is stored as it is.
    let per_unit = (STATES_BYTES + UnitRecord::LEN) as f64 + UNIT_ALIGN as f64 / 2.0;
    let estimate = coded_bits / 8.0 + per_unit * tiles.len() as f64 + tables.len() as f64 * 300.0;
    if estimate >= bytes.len() as f64 {
        return raw_plane(bytes, rows as u64, cols as u64, order0_bits);
    }

    // Pass 2: one unit per tile.
    let encoders: Vec<EncodeTable> =
        tables.iter().map(|t| EncodeTable::new(t, prob_bits)).collect();
    let coded: Vec<Vec<u8>> = analysed
        .par_iter()
        .zip(&tiles)
        .map(|((_, res), tile)| {
            let mut unit = Vec::new();
            let map = if row_tables.is_empty() {
                TableMap::Single
            } else {
                TableMap::Rows { row_tables: &row_tables[tile.r0..tile.r0 + tile.h], width: tile.w }
            };
            encode_unit(res, &encoders, map, &mut unit);
            unit
        })
        .collect();
    let mut payload = Vec::with_capacity(coded.iter().map(|u| u.len() + 16).sum());
    let mut units = Vec::with_capacity(coded.len());
    for (unit, (predictor, _)) in coded.iter().zip(&analysed) {
        let offset = payload.len().next_multiple_of(UNIT_ALIGN as usize);
        payload.resize(offset, 0);
        payload.extend_from_slice(unit);
        units.push(UnitEntry {
            offset: offset as u64,
            len: unit.len() as u32,
            crc32c: crc32c::crc32c(unit),
            predictor: *predictor,
        });
    }
    let directory_cost = units.len() * UnitRecord::LEN + tables.len() * 300 + row_tables.len() / 2;
    if payload.len() + directory_cost >= bytes.len() {
        return raw_plane(bytes, rows as u64, cols as u64, order0_bits);
    }
    EncodedPlane {
        entry: PlaneEntry {
            rows: rows as u64,
            cols: cols as u64,
            tile_rows,
            tile_cols,
            bias128,
            payload_offset: 0,
            payload_len: payload.len() as u64,
            encoding: PlaneEncoding::Rans { prob_bits, tables, row_tables, units },
        },
        payload,
        order0_bits,
    }
}
