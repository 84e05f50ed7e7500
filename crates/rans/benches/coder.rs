//! Coder throughput per code path (scalar, AVX2, AVX-512) on one 64 KiB unit at a time:
//! a 256 x 256 tile of real int8 weights (SmolLM2 Q8_0 quants, MiniLM per-tensor int8, both from
//! tests/data, coded with their tensor's table) and two synthetic discretised Gaussians (~5 and
//! ~7.7 bits a byte). Real whole tensors are measured by `cargo xtask bench`; this isolates the
//! coder. Throughput is of original bytes.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use wcodec_rans::*;

const TILE: usize = 256;

/// Discretised Gaussian bytes (sum of 4 uniforms), standard deviation about `147 / div`.
fn gaussian_bytes(n: usize, div: i64) -> Vec<u8> {
    let mut x = 0x9e3779b97f4a7c15u64;
    (0..n)
        .map(|_| {
            let mut s = 0i64;
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s += (x >> 40) as i64 & 0xff;
            }
            ((s - 510) / div).clamp(-128, 127) as i8 as u8
        })
        .collect()
}

fn test_data(name: &str) -> Option<Vec<u8>> {
    let path = format!("{}/../../tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(path).ok()
}

/// The bytes of tensor `name` of a safetensors file (a minimal reader: enough for our slices).
fn safetensors_tensor(file: &[u8], name: &str) -> Option<Vec<u8>> {
    let header_len = u64::from_le_bytes(file.get(..8)?.try_into().ok()?) as usize;
    let header = std::str::from_utf8(file.get(8..8 + header_len)?).ok()?;
    let entry = &header[header.find(&format!("\"{name}\""))? + name.len() + 2..];
    let offsets = &entry[entry.find("\"data_offsets\"")?..];
    let offsets = &offsets[offsets.find('[')? + 1..offsets.find(']')?];
    let mut it = offsets.split(',').map(|v| v.trim().parse::<usize>());
    let (start, end) = (it.next()?.ok()?, it.next()?.ok()?);
    file.get(8 + header_len + start..8 + header_len + end).map(<[u8]>::to_vec)
}

/// The top-left `TILE x TILE` tile of a `cols`-wide matrix, row-major as the encoder codes it.
fn tile(matrix: &[u8], cols: usize) -> Vec<u8> {
    (0..TILE).flat_map(|r| matrix[r * cols..r * cols + TILE].iter().copied()).collect()
}

/// (name, tile to code, bytes the table is built from).
fn datasets() -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut sets = Vec::new();
    if let Some(q8) = test_data("smollm2-q8_0-quants-256x1024.i8") {
        sets.push(("smollm2_q8_0".to_string(), tile(&q8, 1024), q8));
    }
    let minilm = test_data("minilm-int8-per-tensor.safetensors")
        .and_then(|f| safetensors_tensor(&f, "encoder.layer.0.intermediate.dense.weight"));
    if let Some(w) = minilm {
        sets.push(("minilm_int8_ffn".to_string(), tile(&w, 384), w));
    }
    for (name, div) in [("gauss_5bit", 19), ("gauss_7.7bit", 3)] {
        let data = gaussian_bytes(TILE * TILE, div);
        sets.push((name.to_string(), data.clone(), data));
    }
    sets
}

fn coder(c: &mut Criterion) {
    for (name, data, source) in datasets() {
        let counts = histogram(&source);
        let freqs = normalize(&counts, 12);
        let enc = EncodeTable::new(&freqs, 12);
        let dec = DecodeTable::new(&freqs, 12).unwrap();
        let mut unit = Vec::new();
        encode_unit_with(
            Path::Scalar,
            &data,
            std::slice::from_ref(&enc),
            TableMap::Single,
            &mut unit,
        );
        eprintln!(
            "{name}: order-0 {:.2} bits/byte (table's data), coded {:.2} bits/byte",
            entropy_bits(&counts) / source.len() as f64,
            (unit.len() - STATES_BYTES) as f64 * 8.0 / data.len() as f64,
        );
        let mut group = c.benchmark_group(format!("rans_64k_unit/{name}"));
        group.throughput(Throughput::Bytes(data.len() as u64));
        for path in Path::available() {
            let mut check = Vec::new();
            encode_unit_with(path, &data, std::slice::from_ref(&enc), TableMap::Single, &mut check);
            assert_eq!(check, unit, "{path:?} encoder differs from the scalar one");
            group.bench_function(format!("encode/{path:?}"), |b| {
                let mut out = Vec::with_capacity(unit.len());
                b.iter(|| {
                    out.clear();
                    let tables = std::slice::from_ref(&enc);
                    encode_unit_with(path, black_box(&data), tables, TableMap::Single, &mut out);
                })
            });
            group.bench_function(format!("decode/{path:?}"), |b| {
                let mut out = vec![0u8; data.len()];
                b.iter(|| {
                    let tables = std::slice::from_ref(&dec);
                    decode_unit_with(path, black_box(&unit), tables, TableMap::Single, &mut out)
                        .unwrap()
                })
            });
            if path != Path::Scalar {
                // Two units per call (interleaved on one core where the path does that); the
                // throughput is still per unit's bytes, so it compares with the line above.
                group.bench_function(format!("decode_pairs/{path:?}"), |b| {
                    let mut outs = [vec![0u8; data.len()], vec![0u8; data.len()]];
                    b.iter_custom(|iters| {
                        let start = std::time::Instant::now();
                        for _ in 0..iters {
                            let [o1, o2] = &mut outs;
                            let tables = std::slice::from_ref(&dec);
                            let mut jobs = [
                                UnitJob {
                                    unit: black_box(&unit),
                                    tables,
                                    map: TableMap::Single,
                                    out: o1,
                                },
                                UnitJob {
                                    unit: black_box(&unit),
                                    tables,
                                    map: TableMap::Single,
                                    out: o2,
                                },
                            ];
                            for r in decode_units_with(path, &mut jobs) {
                                r.unwrap();
                            }
                        }
                        start.elapsed() / 2
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, coder);
criterion_main!(benches);
