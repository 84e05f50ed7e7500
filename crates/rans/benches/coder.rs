//! Coder throughput on a skewed byte distribution shaped like int8 weights (a discretised
//! Gaussian with sigma 20), one 64 KiB unit at a time. Real weights are measured by
//! `cargo xtask bench`; this isolates the coder.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use wcodec_rans::*;

fn gaussian_bytes(n: usize) -> Vec<u8> {
    let mut x = 0x9e3779b97f4a7c15u64;
    (0..n)
        .map(|_| {
            // Sum of 4 uniforms approximates a Gaussian.
            let mut s = 0i64;
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s += (x >> 40) as i64 & 0xff;
            }
            ((s - 510) / 3).clamp(-128, 127) as i8 as u8
        })
        .collect()
}

fn coder(c: &mut Criterion) {
    let data = gaussian_bytes(1 << 16);
    let freqs = normalize(&histogram(&data), 12);
    let enc = EncodeTable::new(&freqs, 12);
    let dec = DecodeTable::new(&freqs, 12).unwrap();
    let mut unit = Vec::new();
    encode_unit(&data, std::slice::from_ref(&enc), TableMap::Single, &mut unit);
    let mut group = c.benchmark_group("rans_64k_unit");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("encode", |b| {
        let mut out = Vec::with_capacity(unit.len());
        b.iter(|| {
            out.clear();
            encode_unit(black_box(&data), std::slice::from_ref(&enc), TableMap::Single, &mut out);
        })
    });
    group.bench_function("decode", |b| {
        let mut out = vec![0u8; data.len()];
        b.iter(|| {
            decode_unit(black_box(&unit), std::slice::from_ref(&dec), TableMap::Single, &mut out)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, coder);
criterion_main!(benches);
