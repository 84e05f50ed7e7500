//! Whole-tensor throughput on the checked-in real slices (tests/data): compress and decompress
//! through the public API, on all threads. `cargo xtask bench` runs this, then a report on the
//! full corpus with one-thread and all-thread figures.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wcodec::{Dtype, EncodeOptions};

fn slice(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn tensors(c: &mut Criterion) {
    let options = EncodeOptions::default();
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        {
            let s = slice("minilm-int8-per-tensor.safetensors");
            let z = wcodec::compress(&s, &options).unwrap();
            ("minilm_int8_per_tensor", s, z)
        },
        {
            let s = slice("minilm-bf16-slice.safetensors");
            let z = wcodec::compress(&s, &options).unwrap();
            ("minilm_bf16", s, z)
        },
        {
            let s = slice("smollm2-q8_0-quants-256x1024.i8");
            let z = wcodec::compress_raw(&s, Dtype::I8, &[256, 1024], &options).unwrap();
            ("smollm2_q8_0_quants", s, z)
        },
    ];
    let mut group = c.benchmark_group("tensors");
    for (name, source, wcz) in &cases {
        group.throughput(Throughput::Bytes(source.len() as u64));
        if name.ends_with("quants") {
            group.bench_function(format!("{name}/compress"), |b| {
                b.iter(|| {
                    wcodec::compress_raw(black_box(source), Dtype::I8, &[256, 1024], &options)
                })
            });
        } else {
            group.bench_function(format!("{name}/compress"), |b| {
                b.iter(|| wcodec::compress(black_box(source), &options))
            });
        }
        group.bench_function(format!("{name}/decompress"), |b| {
            b.iter(|| wcodec::decompress(black_box(wcz)))
        });
    }
    group.finish();
}

criterion_group!(benches, tensors);
criterion_main!(benches);
