//! Every code path this CPU runs (scalar, AVX2, AVX-512) against the scalar reference: the same
//! bytes from the encoder, the same output and the same error from the decoder, on random units
//! (every length class, 1 to 4 tables with row maps, precisions 8 to 12, skewed, flat, small and
//! one-symbol alphabets) and on damaged ones (bit flips, truncations, garbage, wrong lengths and
//! maps). Each path is forced explicitly, so one process tests them all. Every unit is also coded
//! into buffers of its own (`encode_unit_owned`), which must give the same bytes.

use proptest::prelude::*;
use wcodec_rans::*;

/// Deterministic pseudo-random numbers (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, Debug)]
enum Alphabet {
    /// Geometric-ish magnitudes around a centre, like quantised weights.
    Skewed,
    /// Every byte equally likely.
    Flat,
    /// Two or three symbols.
    Small,
    /// One symbol.
    One,
}

fn alphabet() -> impl Strategy<Value = Alphabet> {
    prop_oneof![
        4 => Just(Alphabet::Skewed),
        2 => Just(Alphabet::Flat),
        1 => Just(Alphabet::Small),
        1 => Just(Alphabet::One),
    ]
}

fn draw(alphabet: Alphabet, class: usize, rng: &mut Rng) -> u8 {
    let centre = (class as u8).wrapping_mul(61);
    match alphabet {
        Alphabet::Skewed => {
            let r = rng.next();
            let magnitude = (r % 4) * ((r >> 8) % 6) + (r >> 20) % 3;
            let signed =
                if r >> 40 & 1 == 1 { magnitude as u8 } else { (magnitude as u8).wrapping_neg() };
            centre.wrapping_add(signed)
        }
        Alphabet::Flat => rng.next() as u8,
        Alphabet::Small => centre.wrapping_add([0, 0, 0, 1, 1, 7][rng.below(6) as usize]),
        Alphabet::One => centre,
    }
}

/// A unit's symbols, row or column classes and tables.
#[derive(Debug)]
struct Case {
    data: Vec<u8>,
    /// A class a row, or with `first` a period of classes of the plane's columns.
    row_tables: Vec<u8>,
    /// `Some(first column)`: `row_tables` are column classes (`TableMap::Cols`).
    first: Option<usize>,
    /// 0 for `TableMap::Single`.
    width: usize,
    prob_bits: u8,
    freqs: Vec<Frequencies>,
}

impl Case {
    fn map(&self) -> TableMap<'_> {
        match self.first {
            _ if self.width == 0 => TableMap::Single,
            Some(first) => {
                TableMap::Cols { col_tables: &self.row_tables, first, width: self.width }
            }
            None => TableMap::Rows { row_tables: &self.row_tables, width: self.width },
        }
    }
    /// The case's map kind, width and tables, without symbols or classes.
    fn clone_shape(&self) -> Case {
        Case { data: Vec::new(), row_tables: Vec::new(), freqs: self.freqs.clone(), ..*self }
    }
    fn encoders(&self) -> Vec<EncodeTable> {
        self.freqs.iter().map(|f| EncodeTable::new(f, self.prob_bits)).collect()
    }
    fn decoders(&self) -> Vec<DecodeTable> {
        self.freqs.iter().map(|f| DecodeTable::new(f, self.prob_bits).unwrap()).collect()
    }
}

/// `columns`: `Some((period, first))` for column classes, a period of them, the unit's first
/// column `first` (as in a plane of GGUF blocks, a class a byte of the block).
fn build_case(
    n: usize,
    n_tables: usize,
    width: usize,
    prob_bits: u8,
    alphabets: &[Alphabet],
    seed: u64,
    columns: Option<(usize, usize)>,
) -> Case {
    let mut rng = Rng(seed | 1);
    let rows = if width == 0 { 0 } else { n.div_ceil(width) };
    let classes = match columns {
        Some((period, _)) if width > 0 => period,
        _ => rows,
    };
    // Classes in runs, so that some groups are coded with one table and others straddle rows.
    let mut row_tables = Vec::with_capacity(classes);
    let mut class = 0u8;
    for _ in 0..classes {
        if rng.below(4) == 0 {
            class = rng.below(n_tables as u64) as u8;
        }
        row_tables.push(class);
    }
    let first = columns.map(|(_, first)| first).filter(|_| width > 0);
    let class_of = |t: usize| match first {
        _ if width == 0 => 0,
        Some(first) => usize::from(row_tables[(first + t % width) % row_tables.len()]),
        None => usize::from(row_tables[t / width]),
    };
    let data: Vec<u8> = (0..n)
        .map(|t| draw(alphabets[class_of(t) % alphabets.len()], class_of(t), &mut rng))
        .collect();
    let freqs = (0..n_tables)
        .map(|c| {
            let picked: Vec<u8> = data
                .iter()
                .enumerate()
                .filter(|(t, _)| class_of(*t) == c)
                .map(|(_, &d)| d)
                .collect();
            normalize(&histogram(&picked), prob_bits)
        })
        .collect();
    Case { data, row_tables, first, width, prob_bits, freqs }
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![0usize..300, 0usize..3000, 3000usize..20_000],
        1usize..=4,
        prop_oneof![
            Just(0usize),
            Just(1),
            Just(3),
            Just(10),
            Just(64),
            Just(128),
            Just(192),
            Just(256),
            Just(300)
        ],
        8u8..=12,
        proptest::collection::vec(alphabet(), 1..=4),
        any::<u64>(),
        // Column classes one case in three: periods of GGUF blocks (Q4_1, Q8_0, Q6_K) and
        // others, from any first column.
        prop_oneof![
            2 => Just(None),
            1 => (prop_oneof![Just(1usize), Just(2), Just(20), Just(34), Just(210)], 0usize..1000)
                .prop_map(Some),
        ],
    )
        .prop_map(|(n, n_tables, width, prob_bits, alphabets, seed, columns)| {
            // One table needs no map; several do.
            let width = if n_tables > 1 && width == 0 { 128 } else { width };
            build_case(n, n_tables, width, prob_bits, &alphabets, seed, columns)
        })
}

fn encode(path: Path, case: &Case) -> Vec<u8> {
    let mut unit = vec![0xAA]; // encode_unit appends
    encode_unit_with(path, &case.data, &case.encoders(), case.map(), &mut unit)
        .expect("every symbol has a frequency");
    let unit = unit.split_off(1);
    // A unit coded into a buffer of its own is the same, whatever room it starts with: none
    // (grown at every run), a little, about its size, more than it needs.
    for expected in [0, 100, unit.len(), 3 * unit.len() + 1000] {
        let owned =
            encode_unit_owned_with(path, &case.data, &case.encoders(), case.map(), expected)
                .expect("every symbol has a frequency");
        assert!(owned.bytes() == unit, "{path:?}: unit coded with room for {expected} bytes");
        assert!(owned.capacity() >= unit.len());
    }
    rows_in_place_agree(path, case);
    unit
}

/// Where the case's rows are whole groups, its whole rows (a tile of a wider plane) coded where
/// they lie, `pad` bytes of garbage between rows, are the unit the same symbols make as one
/// slice, on `path`.
fn rows_in_place_agree(path: Path, case: &Case) {
    let width = case.width;
    if width == 0 || !width.is_multiple_of(GROUP) || case.first.is_some() {
        return;
    }
    let rows = case.data.len() / width;
    let whole = &case.data[..rows * width];
    let expected = encode_unit_owned_with(path, whole, &case.encoders(), case.map(), 0)
        .expect("every symbol has a frequency");
    for pad in [0, 1, 64, 333] {
        let stride = width + pad;
        let mut plane = vec![0x5a_u8; rows * stride + 7];
        for (r, row) in whole.chunks_exact(width).enumerate() {
            plane[r * stride..][..width].copy_from_slice(row);
        }
        let symbols =
            UnitSymbols::rows(&plane[..], width, stride, rows).expect("rows in the plane");
        assert_eq!(symbols.len(), whole.len());
        let in_place = encode_unit_owned_with(path, symbols, &case.encoders(), case.map(), 0)
            .expect("every symbol has a frequency");
        assert!(in_place.bytes() == expected.bytes(), "{path:?}: rows {stride} bytes apart");
    }
}

/// `UnitSymbols::rows` takes rows of whole groups that lie in the bytes, and nothing else.
#[test]
fn unit_rows_must_be_whole_groups_in_the_bytes() {
    let bytes = vec![0u8; 10 * 300];
    assert_eq!(UnitSymbols::rows(&bytes, 256, 300, 10).map(|s| s.len()), Some(2560));
    assert_eq!(UnitSymbols::rows(&bytes, 128, 128, 0).map(|s| s.len()), Some(0));
    assert!(UnitSymbols::rows(&bytes, 256, 300, 11).is_none(), "past the end");
    assert!(UnitSymbols::rows(&bytes, 200, 300, 5).is_none(), "not whole groups");
    assert!(UnitSymbols::rows(&bytes, 0, 300, 5).is_none(), "no width");
    assert!(UnitSymbols::rows(&bytes, 256, 128, 2).is_none(), "rows overlap");
    assert!(UnitSymbols::rows(&bytes, 128, usize::MAX, 3).is_none(), "overflow");
}

/// Decodes with every path into buffers pre-filled alike; returns the scalar result and output,
/// after checking that every path gives exactly the same.
fn decode_all(
    unit: &[u8],
    tables: &[DecodeTable],
    map: TableMap,
    n: usize,
) -> (Result<(), RansError>, Vec<u8>) {
    let mut reference = None;
    for path in Path::available() {
        let mut out = vec![0x5Au8; n];
        let result = decode_unit_with(path, unit, tables, map, &mut out);
        match &reference {
            None => reference = Some((result, out)),
            Some((r, o)) => {
                assert_eq!(&result, r, "{path:?} result differs from the scalar one");
                assert!(out == *o, "{path:?} output differs from the scalar one ({result:?})");
            }
        }
    }
    reference.expect("the scalar path is always available")
}

/// [`decode_all`] where only the agreement matters.
fn agree(unit: &[u8], tables: &[DecodeTable], map: TableMap, n: usize) {
    let _ = decode_all(unit, tables, map, n);
}

#[test]
fn scalar_is_always_available_and_detected_is_available() {
    assert_eq!(Path::available()[0], Path::Scalar);
    assert!(Path::detected().is_available());
    eprintln!("paths here: {:?}, detected {:?}", Path::available(), Path::detected());
}

/// Run in a child process by `force_scalar_env_var`: checks the environment variables.
#[test]
fn detected_path_child() {
    if std::env::var_os("WCODEC_FORCE_SCALAR").is_some() {
        assert_eq!(Path::detected(), Path::Scalar);
    }
    if std::env::var("WCODEC_SIMD").as_deref() == Ok("avx2") {
        assert!(Path::detected() <= Path::Avx2);
    }
}

#[test]
fn force_scalar_env_var() {
    for (var, value) in [("WCODEC_FORCE_SCALAR", "1"), ("WCODEC_SIMD", "avx2")] {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "detected_path_child", "--quiet"])
            .env(var, value)
            .status()
            .unwrap();
        assert!(status.success(), "{var}={value}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn paths_agree_on_valid_units(case in case()) {
        let unit = encode(Path::Scalar, &case);
        for path in Path::available() {
            prop_assert!(encode(path, &case) == unit, "{:?} encoder differs", path);
        }
        let (result, out) = decode_all(&unit, &case.decoders(), case.map(), case.data.len());
        prop_assert_eq!(result, Ok(()));
        prop_assert!(out == case.data);
        // The default entry points agree too.
        let mut default_unit = Vec::new();
        encode_unit(&case.data, &case.encoders(), case.map(), &mut default_unit)
            .expect("every symbol has a frequency");
        prop_assert!(default_unit == unit);
    }

    #[test]
    fn paths_agree_on_damaged_units(case in case(), seed in any::<u64>()) {
        let unit = encode(Path::Scalar, &case);
        let tables = case.decoders();
        let n = case.data.len();
        let mut rng = Rng(seed | 1);
        // Bit flips, one or a few.
        for _ in 0..8 {
            let mut bad = unit.clone();
            for _ in 0..=rng.below(3) {
                let pos = rng.below(bad.len() as u64) as usize;
                bad[pos] ^= 1 << rng.below(8);
            }
            agree(&bad, &tables, case.map(), n);
        }
        // Truncations, even and odd, and extensions.
        for _ in 0..4 {
            let cut = rng.below(unit.len() as u64 + 1) as usize;
            agree(&unit[..cut], &tables, case.map(), n);
            agree(&unit[..cut & !1], &tables, case.map(), n);
        }
        let mut longer = unit.clone();
        longer.extend_from_slice(&[0, 0, 7, 1]);
        agree(&longer, &tables, case.map(), n);
        // Garbage over a range of the words, or of the states.
        for _ in 0..4 {
            let mut bad = unit.clone();
            let start = rng.below(bad.len() as u64) as usize;
            let end = (start + 1 + rng.below(300) as usize).min(bad.len());
            for b in &mut bad[start..end] {
                *b = rng.next() as u8;
            }
            agree(&bad, &tables, case.map(), n);
        }
        // Wrong output lengths.
        for delta in [1usize, 2, 127, 128, 129, 1000] {
            if n >= delta {
                agree(&unit, &tables, case.map(), n - delta);
            }
            agree(&unit, &tables, case.map(), n + delta);
        }
        // A wrong map: other classes, or too few rows.
        if case.width > 0 {
            let mut classes = case.row_tables.clone();
            for c in &mut classes {
                if rng.below(3) == 0 {
                    *c = rng.below(tables.len() as u64) as u8;
                }
            }
            let wrong = |classes| Case { row_tables: classes, ..case.clone_shape() };
            agree(&unit, &tables, wrong(classes.clone()).map(), n);
            if !classes.is_empty() {
                agree(&unit, &tables, wrong(classes[..classes.len() - 1].to_vec()).map(), n);
            }
        }
    }

    #[test]
    fn paths_agree_on_garbage(
        unit in proptest::collection::vec(any::<u8>(), 0..2000),
        n in 0usize..3000,
        bits in 8u8..=12,
        spread in 1u32..=256,
    ) {
        // A table of `spread` equally likely symbols (the rest of the mass on symbol 0).
        let mut freqs = [0u32; 256];
        let each = (1u32 << bits) / spread;
        for f in freqs.iter_mut().take(spread as usize) {
            *f = each;
        }
        freqs[0] += (1u32 << bits) - each * spread;
        let table = DecodeTable::new(&freqs, bits).unwrap();
        agree(&unit, std::slice::from_ref(&table), TableMap::Single, n);
    }
}

/// Units that end exactly at, just before and just after the point where the SIMD decoders
/// switch from reading the stream in place to reading a padded copy of its last words.
#[test]
fn every_stream_length_near_the_window() {
    for n in [0usize, 1, 127, 128, 129, 255, 256, 257, 383, 384, 385, 1000, 4096, 4097] {
        for alphabet in [Alphabet::Skewed, Alphabet::Flat, Alphabet::One] {
            for bits in [8u8, 12] {
                let case =
                    build_case(n, 1, 0, bits, &[alphabet], n as u64 * 31 + bits as u64, None);
                let unit = encode(Path::Scalar, &case);
                for path in Path::available() {
                    assert!(encode(path, &case) == unit, "{path:?} encoder, n {n}");
                }
                let tables = case.decoders();
                let (result, out) = decode_all(&unit, &tables, TableMap::Single, n);
                assert_eq!(result, Ok(()));
                assert_eq!(out, case.data);
                // Every truncation of the last 300 bytes.
                for cut in unit.len().saturating_sub(300)..unit.len() {
                    let (result, _) = decode_all(&unit[..cut], &tables, TableMap::Single, n);
                    assert!(result.is_err() || n == 0 || cut == unit.len());
                }
            }
        }
    }
}

/// Real int8 weights: every path codes the SmolLM2 and MiniLM slices of tests/data alike.
#[test]
fn real_weights_agree() {
    let dir = format!("{}/../../tests/data", env!("CARGO_MANIFEST_DIR"));
    for name in ["smollm2-q8_0-quants-256x1024.i8", "minilm-int8-per-tensor.safetensors"] {
        let bytes = std::fs::read(format!("{dir}/{name}")).unwrap();
        let data = &bytes[bytes.len() / 2..bytes.len() / 2 + (1 << 16) + 77];
        for bits in [11u8, 12] {
            let freqs = normalize(&histogram(data), bits);
            let case = Case {
                data: data.to_vec(),
                row_tables: Vec::new(),
                first: None,
                width: 0,
                prob_bits: bits,
                freqs: vec![freqs],
            };
            let unit = encode(Path::Scalar, &case);
            for path in Path::available() {
                assert!(encode(path, &case) == unit, "{path:?} encoder on {name}");
            }
            let (result, out) = decode_all(&unit, &case.decoders(), TableMap::Single, data.len());
            assert_eq!(result, Ok(()));
            assert!(out == data, "{name}");
        }
    }
}

/// Tables relabeled by a byte code every byte `b` as the plain tables code `b ^ relabel`, on
/// every path: an encoder may hand the coder a plane's bytes and fold their bias into its
/// tables.
/// A symbol its table lacks, anywhere in a unit (first, last, in a full group the kernels code
/// or in the tail group the scalar steps code, under one table or a row's), is refused by every
/// path, appending nothing, and the same symbols under tables that have it code as ever.
#[test]
fn symbols_without_frequency_are_refused() {
    let mut rng = Rng(0x5eed);
    for n in [1, 127, GROUP, 5 * GROUP, 70 * GROUP + 37] {
        let mut data: Vec<u8> = (0..n).map(|_| rng.below(10) as u8).collect();
        data.iter_mut().filter(|s| **s == 5).for_each(|s| *s = 4);
        // Table 0 has every value 0..10; table 1 all but 5.
        let mut counts = [0u64; 256];
        counts[..10].fill(100);
        let with = normalize(&counts, 11);
        counts[5] = 0;
        let without = normalize(&counts, 11);
        let tables = [EncodeTable::new(&with, 11), EncodeTable::new(&without, 11)];
        let width = 64;
        let row_tables = vec![1u8; n.div_ceil(width)];
        for at in [0, n / 2, n - 1] {
            let mut symbols = data.clone();
            symbols[at] = 5;
            let rows = TableMap::Rows { row_tables: &row_tables, width };
            let lacking = [(&tables[1..], TableMap::Single), (&tables[..], rows)];
            for path in Path::available() {
                for (tables, map) in lacking {
                    let mut out = vec![7];
                    let result = encode_unit_with(path, &symbols, tables, map, &mut out);
                    assert_eq!(result, Err(RansError::NoFrequency), "{path:?}, {n} at {at}");
                    assert_eq!(out, [7], "{path:?}: nothing appended");
                    let owned = encode_unit_owned_with(path, &symbols, tables, map, n);
                    assert!(owned.is_err(), "{path:?}, owned, {n} at {at}");
                }
                let mut unit = Vec::new();
                encode_unit_with(path, &symbols, &tables[..1], TableMap::Single, &mut unit)
                    .expect("table 0 has every symbol");
                let mut back = vec![0; n];
                let decoders = [DecodeTable::new(&with, 11).expect("a table")];
                decode_unit(&unit, &decoders, TableMap::Single, &mut back).expect("decodes");
                assert_eq!(back, symbols);
            }
        }
    }
}

#[test]
fn relabeled_tables_code_bytes_as_their_residuals() {
    let dir = format!("{}/../../tests/data", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(format!("{dir}/minilm-int8-per-tensor.safetensors")).unwrap();
    let data = &bytes[bytes.len() / 2..bytes.len() / 2 + (1 << 14) + 77];
    for relabel in [0x80u8, 0x01, 0xff] {
        let residuals: Vec<u8> = data.iter().map(|&b| b ^ relabel).collect();
        let freqs = normalize(&histogram(&residuals), 12);
        let plain = [EncodeTable::new(&freqs, 12)];
        let relabeled = [EncodeTable::relabeled(&freqs, 12, relabel)];
        for path in Path::available() {
            let mut expected = Vec::new();
            encode_unit_with(path, &residuals, &plain, TableMap::Single, &mut expected)
                .expect("every symbol has a frequency");
            let mut got = Vec::new();
            encode_unit_with(path, data, &relabeled, TableMap::Single, &mut got)
                .expect("every symbol has a frequency");
            assert!(got == expected, "{path:?}, relabeled by {relabel:#x}");
        }
    }
}

/// A unit of `case`, damaged (or not) by `how`.
fn damaged(case: &Case, how: u64) -> Vec<u8> {
    let mut unit = encode(Path::Scalar, case);
    let mut rng = Rng(how | 1);
    match how % 5 {
        0 | 1 => {}
        2 => {
            let pos = rng.below(unit.len() as u64) as usize;
            unit[pos] ^= 1 << rng.below(8);
        }
        3 => unit.truncate(rng.below(unit.len() as u64 + 1) as usize),
        _ => {
            let start = rng.below(unit.len() as u64) as usize;
            for b in &mut unit[start..] {
                *b = rng.next() as u8;
            }
        }
    }
    unit
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Units decoded together (two at a time, interleaved, where the path does that, the next
    /// unit taking the place of one that ends) give what each gives alone.
    #[test]
    fn batches_agree_with_single_units(
        cases in proptest::collection::vec(case(), 1..=6),
        damage in proptest::collection::vec(any::<u64>(), 6),
        extra in proptest::collection::vec(0usize..3, 6),
    ) {
        batches_agree(&cases, &damage, &extra)?;
    }

    /// Units of column classes in tiles whose rows are whole groups (GGUF blocks coded whole),
    /// which the AVX-512 coder takes in runs of a table a lane (the decoder two or three units
    /// at once), beside units of row classes: coded as the reference codes them, and decoded
    /// together as each alone.
    #[test]
    fn batches_of_column_classes_agree_with_single_units(
        columns in proptest::collection::vec(
            (
                prop_oneof![Just(128usize), Just(256), Just(5760)],
                prop_oneof![Just(1usize), Just(20), Just(34), Just(144), Just(210), Just(383)],
                0usize..1000,
                1usize..=6,
                256usize..12_000,
                8u8..=12,
            ),
            2..=5,
        ),
        row_case in proptest::option::of(case()),
        alphabets in proptest::collection::vec(alphabet(), 1..=4),
        seed in any::<u64>(),
        damage in proptest::collection::vec(any::<u64>(), 6),
        extra in proptest::collection::vec(0usize..3, 6),
    ) {
        let mut cases: Vec<Case> = columns
            .iter()
            .enumerate()
            .map(|(k, &(width, period, first, n_tables, n, prob_bits))| {
                let seed = seed.wrapping_add(k as u64);
                build_case(n, n_tables, width, prob_bits, &alphabets, seed, Some((period, first)))
            })
            .collect();
        // Every path codes them as the reference does (the AVX-512 encoder in runs of a table
        // a lane).
        for case in &cases {
            let expected = encode(Path::Scalar, case);
            for path in Path::available() {
                prop_assert!(encode(path, case) == expected, "{:?} encodes differently", path);
            }
        }
        cases.extend(row_case);
        batches_agree(&cases, &damage, &extra)?;
    }
}

/// Decodes `cases`' units, damaged by `damage`, with output lengths `extra` 64-symbol steps
/// longer than their symbols, together on every path, and checks each against the reference
/// decoding it alone.
fn batches_agree(cases: &[Case], damage: &[u64], extra: &[usize]) -> Result<(), TestCaseError> {
    let units: Vec<Vec<u8>> = cases.iter().zip(damage).map(|(c, &d)| damaged(c, d)).collect();
    let tables: Vec<Vec<DecodeTable>> = cases.iter().map(Case::decoders).collect();
    // Sometimes a wrong output length.
    let lens: Vec<usize> = cases.iter().zip(extra).map(|(c, &e)| c.data.len() + e * 64).collect();
    let mut expected = Vec::new();
    for ((unit, (c, t)), &n) in units.iter().zip(cases.iter().zip(&tables)).zip(&lens) {
        let mut out = vec![0x33u8; n];
        let result = decode_unit_with(Path::Scalar, unit, t, c.map(), &mut out);
        expected.push((result, out));
    }
    for path in Path::available() {
        let mut outs: Vec<Vec<u8>> = lens.iter().map(|&n| vec![0x33u8; n]).collect();
        let mut jobs: Vec<UnitJob> = units
            .iter()
            .zip(cases.iter().zip(&tables))
            .zip(outs.iter_mut())
            .map(|((unit, (c, t)), out)| UnitJob {
                unit,
                tables: t,
                map: c.map(),
                out: Out::Flat(out),
            })
            .collect();
        let results = decode_units_with(path, &mut jobs);
        drop(jobs);
        for (i, (result, out)) in results.into_iter().zip(&outs).enumerate() {
            prop_assert_eq!(&result, &expected[i].0, "{:?} unit {}", path, i);
            prop_assert!(*out == expected[i].1, "{:?} unit {} output", path, i);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Units stored as tiles of a wider matrix (rows of the tile in rows of a buffer, bytes
    /// XORed with a bias) get what a flat decode gives, placed; the bytes between the tile's rows
    /// stay as they were; results are those of the flat decode.
    #[test]
    fn tile_rows_get_what_flat_decoding_gives(
        cases in proptest::collection::vec(case(), 1..=4),
        damage in proptest::collection::vec(any::<u64>(), 4),
        widths in proptest::collection::vec(0usize..6, 4),
        extra in proptest::collection::vec(1usize..40, 4),
        bias in prop_oneof![Just(0u8), Just(0x80u8), Just(0x5Au8)],
    ) {
        let units: Vec<Vec<u8>> = cases.iter().zip(&damage).map(|(c, &d)| damaged(c, d)).collect();
        let tables: Vec<Vec<DecodeTable>> = cases.iter().map(Case::decoders).collect();
        let mut expected = Vec::new();
        let mut shapes = Vec::new();
        for (k, ((unit, c), t)) in units.iter().zip(&cases).zip(&tables).enumerate() {
            let n = c.data.len();
            let mut symbols = vec![0u8; n];
            let result = decode_unit_with(Path::Scalar, unit, t, c.map(), &mut symbols);
            // A row width that divides the unit: the kernels store straight into multiples of
            // 128; other widths are staged.
            let width = [128, 256, 384, 100, 3, n.max(1)]
                .into_iter()
                .skip(widths[k])
                .find(|&w| n.is_multiple_of(w))
                .unwrap_or(n.max(1));
            let stride = width + extra[k];
            let mut out = vec![0xC3u8; n / width * stride];
            for (r, row) in symbols.chunks(width).enumerate() {
                for (o, &x) in out[r * stride..][..width].iter_mut().zip(row) {
                    *o = x ^ bias;
                }
            }
            expected.push((result, out));
            shapes.push((width, stride));
        }
        for path in Path::available() {
            let mut outs: Vec<Vec<u8>> = expected.iter().map(|(_, o)| vec![0xC3u8; o.len()]).collect();
            let mut jobs: Vec<UnitJob> = units
                .iter()
                .zip(cases.iter().zip(&tables))
                .zip(outs.iter_mut().zip(&shapes))
                .map(|((unit, (c, t)), (out, &(width, stride)))| {
                    let rows = out.chunks_mut(stride).map(|r| &mut r[..width]).collect();
                    UnitJob { unit, tables: t, map: c.map(), out: Out::Rows { rows, bias } }
                })
                .collect();
            let results = decode_units_with(path, &mut jobs);
            drop(jobs);
            for (i, (result, out)) in results.into_iter().zip(&outs).enumerate() {
                prop_assert_eq!(&result, &expected[i].0, "{:?} unit {}", path, i);
                if result.is_ok() {
                    prop_assert!(*out == expected[i].1, "{:?} unit {} output", path, i);
                }
            }
        }
    }
}
