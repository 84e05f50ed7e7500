//! The rANS decoder alone: `decode_unit` on arbitrary unit bytes, tables and row or column maps
//! is an error or symbols that encode back to the same unit (the coder is a bijection on valid
//! units); and arbitrary symbols encode and decode back exactly.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wcodec::rans::{
    DecodeTable, EncodeTable, TableMap, decode_unit, encode_unit, histogram, normalize,
};

#[derive(Arbitrary, Debug)]
struct Input {
    prob_bits: u8,
    /// Each table is the normalised histogram of these bytes (at most 4 tables).
    tables: Vec<Vec<u8>>,
    /// 0: one table for every symbol; else the tile width of a row map (or of a column map:
    /// with `columns`, odd widths stand for whole groups, 128 to 512 columns).
    width: u16,
    /// A column map (`TableMap::Cols`) from this first column, `row_tables` its period.
    columns: Option<u16>,
    row_tables: Vec<u8>,
    n_symbols: u16,
    unit: Vec<u8>,
    symbols: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let prob_bits = 8 + input.prob_bits % 5;
    let freqs: Vec<_> =
        input.tables.iter().take(4).map(|b| normalize(&histogram(b), prob_bits)).collect();
    if freqs.is_empty() {
        return;
    }
    let dec: Vec<DecodeTable> =
        freqs.iter().map(|f| DecodeTable::new(f, prob_bits).unwrap()).collect();
    let enc: Vec<EncodeTable> = freqs.iter().map(|f| EncodeTable::new(f, prob_bits)).collect();
    let n = usize::from(input.n_symbols % 16384);
    let width = match input.columns {
        Some(_) if input.width % 2 == 1 => 128 * (1 + usize::from(input.width / 2) % 4),
        _ => usize::from(input.width % 256),
    };
    // The decoder checks the map itself: give it whatever the input says.
    let map = map_of(&input.row_tables, input.columns, width);
    let mut out = vec![0u8; n];
    if decode_unit(&input.unit, &dec, map, &mut out).is_ok() {
        let mut again = Vec::new();
        // A decoded symbol has a frequency in its table.
        encode_unit(&out, &enc, map, &mut again).expect("decoded symbols have frequencies");
        assert_eq!(again, input.unit, "a unit that decodes is the encoding of what it decodes to");
    }

    // Round trip: symbols mapped onto the ones their table can code.
    let classes = match input.columns {
        Some(_) => input.row_tables.len().clamp(1, 400),
        None if width == 0 => 0,
        None => input.symbols.len().div_ceil(width),
    };
    let row_tables: Vec<u8> = (0..classes)
        .map(|r| input.row_tables.get(r).map_or(0, |&t| t % freqs.len() as u8))
        .collect();
    let map = map_of(&row_tables, input.columns, width);
    let table_of = |t: usize| match input.columns {
        _ if width == 0 => 0,
        Some(first) => row_tables[(usize::from(first) + t % width) % row_tables.len()],
        None => row_tables[t / width],
    };
    let symbols: Vec<u8> = input
        .symbols
        .iter()
        .enumerate()
        .map(|(t, &s)| {
            let f = &freqs[usize::from(table_of(t))];
            // The first present symbol at or after s (wrapping).
            (0..256).map(|k| (usize::from(s) + k) % 256).find(|&c| f[c] > 0).unwrap() as u8
        })
        .collect();
    let mut unit = Vec::new();
    encode_unit(&symbols, &enc, map, &mut unit).expect("mapped symbols have frequencies");
    let mut back = vec![0u8; symbols.len()];
    decode_unit(&unit, &dec, map, &mut back).expect("an encoded unit decodes");
    assert_eq!(back, symbols);
});

/// A map of `classes`: one table (`width` 0), by row, or by column from `columns`' first column
/// with `classes` the period.
fn map_of(classes: &[u8], columns: Option<u16>, width: usize) -> TableMap<'_> {
    match columns {
        _ if width == 0 => TableMap::Single,
        Some(first) => TableMap::Cols { col_tables: classes, first: usize::from(first), width },
        None => TableMap::Rows { row_tables: classes, width },
    }
}
