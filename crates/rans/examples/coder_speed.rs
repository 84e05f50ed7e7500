//! Best-of-N coder throughput per code path on one core, for a noisy shared machine where
//! criterion's means wander: `cargo run --release -p wcodec-rans --example coder_speed [reps]`.
//! One 256 x 256 tile (64 KiB) of each real int8 slice of tests/data, coded with its tensor's
//! table (12 bits), decoded one unit per call and two per call (`decode_units`), and encoded.

use std::time::Instant;
use wcodec_rans::*;

fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data");
    let tile = |m: &[u8], cols: usize| -> Vec<u8> {
        (0..256).flat_map(|r| m[r * cols..r * cols + 256].iter().copied()).collect()
    };
    let q8 = std::fs::read(format!("{dir}/smollm2-q8_0-quants-256x1024.i8")).expect("tests/data");
    // The MiniLM FFN weight (1536 x 384 int8) is the last tensor but its scale in the file.
    let minilm =
        std::fs::read(format!("{dir}/minilm-int8-per-tensor.safetensors")).expect("tests/data");
    let ffn = &minilm[minilm.len() - 4 - 1536 * 384..minilm.len() - 4];
    for (name, data, source) in
        [("smollm2_q8_0", tile(&q8, 1024), &q8[..]), ("minilm_int8_ffn", tile(ffn, 384), ffn)]
    {
        let freqs = normalize(&histogram(source), 12);
        let enc = [EncodeTable::new(&freqs, 12)];
        let dec = [DecodeTable::new(&freqs, 12).unwrap()];
        let mut unit = Vec::new();
        encode_unit_with(Path::Scalar, &data, &enc, TableMap::Single, &mut unit)
            .expect("every symbol has a frequency");
        let gbs = |seconds: f64| data.len() as f64 / seconds / 1e9;
        for path in Path::available() {
            let mut out = vec![0u8; data.len()];
            let decode = best_of(reps, || {
                decode_unit_with(path, &unit, &dec, TableMap::Single, &mut out).unwrap()
            });
            assert_eq!(out, data);
            let mut outs = [vec![0u8; data.len()], vec![0u8; data.len()]];
            let pairs = best_of(reps / 2, || {
                let [a, b] = &mut outs;
                let mut jobs = [
                    UnitJob { unit: &unit, tables: &dec, map: TableMap::Single, out: Out::Flat(a) },
                    UnitJob { unit: &unit, tables: &dec, map: TableMap::Single, out: Out::Flat(b) },
                ];
                decode_units_with(path, &mut jobs).into_iter().for_each(|r| r.unwrap());
            }) / 2.0;
            let mut coded = Vec::with_capacity(unit.len());
            let encode = best_of(reps, || {
                coded.clear();
                encode_unit_with(path, &data, &enc, TableMap::Single, &mut coded)
                    .expect("every symbol has a frequency");
            });
            assert_eq!(coded, unit);
            println!(
                "{name:16} {:8} decode {:.2} GB/s, two units a call {:.2} GB/s, encode {:.2} GB/s",
                format!("{path:?}"),
                gbs(decode),
                gbs(pairs),
                gbs(encode)
            );
        }
    }
}
