//! Coder throughput per code path (scalar, AVX2, AVX-512) on one 64 KiB unit at a time:
//! a 256 x 256 tile of real int8 weights (SmolLM2 Q8_0 quants, MiniLM per-tensor int8, both from
//! tests/data, coded with their tensor's table; MiniLM also with 4 row classes) and two synthetic
//! discretised Gaussians (~5 and ~7.7 bits a byte). `decode_pairs` decodes two units per call
//! (`decode_units`, interleaved on one core with AVX-512). Real whole tensors are measured by
//! `cargo xtask bench`; this isolates the coder. Throughput is of original bytes, one core.

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

/// A unit to code: its symbols, the row class of each of its `TILE` rows (empty for one table)
/// and the bytes each class's table is built from.
struct Dataset {
    name: String,
    data: Vec<u8>,
    rows: Vec<u8>,
    sources: Vec<Vec<u8>>,
}

fn datasets() -> Vec<Dataset> {
    let one = |name: &str, data: Vec<u8>, source: Vec<u8>| Dataset {
        name: name.to_string(),
        data,
        rows: Vec::new(),
        sources: vec![source],
    };
    let mut sets = Vec::new();
    if let Some(q8) = test_data("smollm2-q8_0-quants-256x1024.i8") {
        sets.push(one("smollm2_q8_0", tile(&q8, 1024), q8));
    }
    let minilm = test_data("minilm-int8-per-tensor.safetensors")
        .and_then(|f| safetensors_tensor(&f, "encoder.layer.0.intermediate.dense.weight"));
    if let Some(w) = minilm {
        let data = tile(&w, 384);
        sets.push(one("minilm_int8_ffn", data.clone(), w));
        // The same tile with 4 row classes (rows by spread, as the encoder's classes would be),
        // a table each: the kernels switch tables between groups.
        let spread = |r: usize| {
            let row = &data[r * TILE..(r + 1) * TILE];
            row.iter().map(|&b| u32::from((b as i8).unsigned_abs())).sum::<u32>()
        };
        let mut order: Vec<usize> = (0..TILE).collect();
        order.sort_by_key(|&r| spread(r));
        let mut rows = vec![0u8; TILE];
        for (rank, &r) in order.iter().enumerate() {
            rows[r] = (rank * 4 / TILE) as u8;
        }
        let sources = (0..4u8)
            .map(|c| {
                (0..TILE)
                    .filter(|&r| rows[r] == c)
                    .flat_map(|r| data[r * TILE..(r + 1) * TILE].iter().copied())
                    .collect()
            })
            .collect();
        sets.push(Dataset { name: "minilm_int8_ffn_4_classes".to_string(), data, rows, sources });
    }
    for (name, div) in [("gauss_5bit", 19), ("gauss_7.7bit", 3)] {
        let data = gaussian_bytes(TILE * TILE, div);
        sets.push(one(name, data.clone(), data));
    }
    sets
}

fn coder(c: &mut Criterion) {
    for Dataset { name, data, rows, sources } in datasets() {
        let map = if rows.is_empty() {
            TableMap::Single
        } else {
            TableMap::Rows { row_tables: &rows, width: TILE }
        };
        let freqs: Vec<_> = sources.iter().map(|s| normalize(&histogram(s), 12)).collect();
        let enc: Vec<_> = freqs.iter().map(|f| EncodeTable::new(f, 12)).collect();
        let dec: Vec<_> = freqs.iter().map(|f| DecodeTable::new(f, 12).unwrap()).collect();
        let mut unit = Vec::new();
        encode_unit_with(Path::Scalar, &data, &enc, map, &mut unit)
            .expect("every symbol has a frequency");
        let entropy: f64 = sources.iter().map(|s| entropy_bits(&histogram(s))).sum::<f64>()
            / sources.iter().map(Vec::len).sum::<usize>() as f64;
        eprintln!(
            "{name}: order-0 {entropy:.2} bits/byte (tables' data), coded {:.2} bits/byte",
            (unit.len() - STATES_BYTES) as f64 * 8.0 / data.len() as f64,
        );
        let mut group = c.benchmark_group(format!("rans_64k_unit/{name}"));
        group.throughput(Throughput::Bytes(data.len() as u64));
        for path in Path::available() {
            let mut check = Vec::new();
            encode_unit_with(path, &data, &enc, map, &mut check)
                .expect("every symbol has a frequency");
            assert_eq!(check, unit, "{path:?} encoder differs from the scalar one");
            group.bench_function(format!("encode/{path:?}"), |b| {
                let mut out = Vec::with_capacity(unit.len());
                b.iter(|| {
                    out.clear();
                    encode_unit_with(path, black_box(&data), &enc, map, &mut out)
                        .expect("every symbol has a frequency");
                })
            });
            group.bench_function(format!("decode/{path:?}"), |b| {
                let mut out = vec![0u8; data.len()];
                b.iter(|| decode_unit_with(path, black_box(&unit), &dec, map, &mut out).unwrap())
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
                            let mut jobs = [
                                UnitJob {
                                    unit: black_box(&unit),
                                    tables: &dec,
                                    map,
                                    out: Out::Flat(o1),
                                },
                                UnitJob {
                                    unit: black_box(&unit),
                                    tables: &dec,
                                    map,
                                    out: Out::Flat(o2),
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
