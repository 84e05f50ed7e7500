//! The coder alone: round trips over skewed, flat and one-symbol alphabets, every length class,
//! and damaged units that must fail cleanly.

use proptest::prelude::*;
use wcodec_rans::*;

fn round_trip(data: &[u8], prob_bits: u8) -> Vec<u8> {
    let freqs = normalize(&histogram(data), prob_bits);
    let mut unit = Vec::new();
    encode_unit(data, &[EncodeTable::new(&freqs, prob_bits)], TableMap::Single, &mut unit)
        .expect("every symbol has a frequency");
    let table = DecodeTable::new(&freqs, prob_bits).unwrap();
    let mut out = vec![0u8; data.len()];
    decode_unit(&unit, std::slice::from_ref(&table), TableMap::Single, &mut out).unwrap();
    out
}

/// Deterministic pseudo-random bytes (xorshift) so the tests need no extra crate.
fn noise(n: usize, seed: u64) -> impl Iterator<Item = u64> {
    let mut x = seed | 1;
    (0..n).map(move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    })
}

#[test]
fn one_symbol_alphabet_costs_only_the_states() {
    let data = vec![9u8; 10_000];
    let freqs = normalize(&histogram(&data), 12);
    let mut unit = Vec::new();
    encode_unit(&data, &[EncodeTable::new(&freqs, 12)], TableMap::Single, &mut unit)
        .expect("every symbol has a frequency");
    assert_eq!(unit.len(), STATES_BYTES, "a certain symbol needs no words");
    assert_eq!(round_trip(&data, 12), data);
}

#[test]
fn flat_histogram_costs_eight_bits() {
    let data: Vec<u8> = noise(1 << 16, 7).map(|x| x as u8).collect();
    let freqs = normalize(&histogram(&data), 12);
    let mut unit = Vec::new();
    encode_unit(&data, &[EncodeTable::new(&freqs, 12)], TableMap::Single, &mut unit)
        .expect("every symbol has a frequency");
    let bits_per_symbol = (unit.len() - STATES_BYTES) as f64 * 8.0 / data.len() as f64;
    assert!(bits_per_symbol < 8.02 && bits_per_symbol > 7.9, "{bits_per_symbol}");
    assert_eq!(round_trip(&data, 12), data);
}

#[test]
fn skewed_histogram_codes_near_its_entropy() {
    // Geometric-ish bytes, like the magnitudes of quantised weights.
    let data: Vec<u8> = noise(1 << 16, 3).map(|x| (x % 7 * (x >> 8) % 5) as u8).collect();
    let counts = histogram(&data);
    let freqs = normalize(&counts, 12);
    let mut unit = Vec::new();
    encode_unit(&data, &[EncodeTable::new(&freqs, 12)], TableMap::Single, &mut unit)
        .expect("every symbol has a frequency");
    let coded = (unit.len() - STATES_BYTES) as f64 * 8.0;
    let bound = cost_bits(&counts, &freqs, 12);
    assert!(coded < bound * 1.005 + 1024.0, "coded {coded} bits, table cost {bound}");
    assert_eq!(round_trip(&data, 12), data);
}

#[test]
fn every_tail_length_round_trips() {
    let data: Vec<u8> = noise(3 * GROUP + 5, 11).map(|x| (x % 13) as u8).collect();
    for n in 0..data.len() {
        assert_eq!(round_trip(&data[..n], 11), &data[..n], "length {n}");
    }
}

#[test]
fn symbol_slots_follow_the_run_layout() {
    assert_eq!(symbol_slot(0), (0, 0));
    assert_eq!(symbol_slot(1), (1, 0));
    assert_eq!(symbol_slot(4), (0, 1));
    assert_eq!(symbol_slot(127), (3, 31));
    assert_eq!(symbol_slot(128), (4, 0));
}

#[test]
fn damaged_units_fail_without_panicking() {
    let data: Vec<u8> = noise(5000, 5).map(|x| (x % 40) as u8).collect();
    let freqs = normalize(&histogram(&data), 12);
    let mut unit = Vec::new();
    encode_unit(&data, &[EncodeTable::new(&freqs, 12)], TableMap::Single, &mut unit)
        .expect("every symbol has a frequency");
    let table = DecodeTable::new(&freqs, 12).unwrap();
    let mut out = vec![0u8; data.len()];
    let mut detected = 0;
    for (i, r) in noise(400, 99).enumerate() {
        let mut bad = unit.clone();
        let pos = r as usize % bad.len();
        bad[pos] ^= 1 << (i % 8);
        if decode_unit(&bad, std::slice::from_ref(&table), TableMap::Single, &mut out).is_err()
            || out != data
        {
            detected += 1;
        }
    }
    // Every flip changes the output or is detected; the final-state check catches almost all.
    assert_eq!(detected, 400);
    for cut in [0, 1, 127, 128, 130, unit.len() - 2] {
        assert!(
            decode_unit(&unit[..cut], std::slice::from_ref(&table), TableMap::Single, &mut out)
                .is_err(),
            "cut at {cut}"
        );
    }
    assert!(
        decode_unit(
            &unit,
            std::slice::from_ref(&table),
            TableMap::Single,
            &mut vec![0u8; data.len() + 1]
        )
        .is_err()
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_round_trip(data in proptest::collection::vec(any::<u8>(), 0..3000), bits in 8u8..=12) {
        prop_assert_eq!(round_trip(&data, bits), data);
    }

    #[test]
    fn small_alphabets_round_trip(
        data in proptest::collection::vec(prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => any::<u8>()], 0..5000),
        bits in 8u8..=12,
    ) {
        prop_assert_eq!(round_trip(&data, bits), data);
    }

    #[test]
    fn garbage_never_panics(unit in proptest::collection::vec(any::<u8>(), 0..600), n in 0usize..800) {
        let mut freqs = [16u32; 256];
        freqs[0] += 0;
        let table = DecodeTable::new(&freqs, 12).unwrap();
        let mut out = vec![0u8; n];
        let _ = decode_unit(&unit, std::slice::from_ref(&table), TableMap::Single, &mut out);
    }
}

#[test]
fn row_tables_round_trip() {
    // Rows of 10 symbols: even rows draw from 0..8, odd rows from 200..255: two tables.
    // (Groups of 128 symbols straddle rows, exercising the per-symbol path.)
    for width in [10usize, 128, 256, 300] {
        let n: usize = 3000;
        let rows = n.div_ceil(width);
        let row_tables: Vec<u8> = (0..rows).map(|r| (r % 2) as u8).collect();
        let data: Vec<u8> = noise(n, 21)
            .enumerate()
            .map(
                |(t, x)| {
                    if row_tables[t / width] == 0 { (x % 8) as u8 } else { 200 + (x % 56) as u8 }
                },
            )
            .collect();
        let hist = |class: u8| {
            let picked: Vec<u8> = data
                .iter()
                .enumerate()
                .filter(|(t, _)| row_tables[t / width] == class)
                .map(|(_, d)| *d)
                .collect();
            normalize(&histogram(&picked), 11)
        };
        let freqs = [hist(0), hist(1)];
        let enc: Vec<EncodeTable> = freqs.iter().map(|f| EncodeTable::new(f, 11)).collect();
        let dec: Vec<DecodeTable> =
            freqs.iter().map(|f| DecodeTable::new(f, 11).unwrap()).collect();
        let map = TableMap::Rows { row_tables: &row_tables, width };
        let mut unit = Vec::new();
        encode_unit(&data, &enc, map, &mut unit).expect("every symbol has a frequency");
        let mut out = vec![0u8; data.len()];
        decode_unit(&unit, &dec, map, &mut out).unwrap();
        assert_eq!(out, data, "width {width}");
        // A wrong map is an error or a different output, never a panic.
        let zeros = vec![0u8; rows];
        let wrong = TableMap::Rows { row_tables: &zeros, width };
        assert!(decode_unit(&unit, &dec, wrong, &mut out).is_err() || out != data);
        let short = TableMap::Rows { row_tables: &row_tables[..rows - 1], width };
        assert!(decode_unit(&unit, &dec, short, &mut out).is_err());
        let beyond = vec![7u8; rows];
        assert!(
            decode_unit(&unit, &dec, TableMap::Rows { row_tables: &beyond, width }, &mut out)
                .is_err()
        );
    }
}

#[test]
fn tables_written_in_place_are_the_decode_tables() {
    for (seed, spread) in [(1u64, 3u64), (2, 40), (3, 256)] {
        let data: Vec<u8> = noise(20_000, seed).map(|x| (x % spread) as u8).collect();
        for bits in 8..=12u8 {
            let freqs = normalize(&histogram(&data), bits);
            let mut out = vec![0xdead_beef_u32; 1 << bits];
            write_table_entries(&freqs, bits, &mut out).unwrap();
            assert_eq!(out, DecodeTable::new(&freqs, bits).unwrap().entries(), "{bits} bits");
            let mut short = vec![0u32; (1 << bits) - 1];
            assert!(write_table_entries(&freqs, bits, &mut short).is_err());
            assert!(write_table_entries(&freqs, bits + 1, &mut out).is_err(), "sum mismatch");
        }
    }
}
