//! The checked-in slices of real weights (tests/data) round-trip byte-identical, and their
//! ratios stay where they were measured (a regression guard on deterministic output).

use std::path::Path;

use wcodec::{Directory, Dtype, EncodeOptions};

fn slice(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compresses, checks the round trip with both decoders, and returns (file ratio, tensor
/// ratio, order-0 bound ratio).
fn measure(source: &[u8], wcz: &[u8]) -> (f64, f64, f64) {
    assert_eq!(wcodec::decompress(wcz).unwrap(), source);
    // Into a buffer of garbage: every byte is written.
    assert_eq!(wcodec::decompressed_len(wcz).unwrap(), source.len() as u64);
    let mut reused = vec![0xA5u8; source.len()];
    wcodec::decompress_into(wcz, &mut reused).unwrap();
    assert!(reused == source, "decompress_into leaves bytes unwritten");
    let dir = Directory::from_file_bytes(wcz).unwrap();
    for t in &dir.tensors {
        let reference = wcodec::decode::decode_tensor_reference(wcz, t).unwrap();
        let start = t.source_offset as usize;
        assert_eq!(reference, &source[start..start + t.source_len as usize], "{}", t.name);
    }
    let original: u64 = dir.tensors.iter().map(|t| t.source_len).sum();
    let stored: u64 = dir.tensors.iter().map(|t| t.stored_len()).sum();
    let bound: u64 = dir.tensors.iter().map(|t| t.order0_bytes).sum();
    (
        source.len() as f64 / wcz.len() as f64,
        original as f64 / stored as f64,
        original as f64 / bound as f64,
    )
}

#[test]
fn minilm_int8_slice_round_trips_beyond_its_order0_bound() {
    let source = slice("minilm-int8-per-tensor.safetensors");
    let wcz = wcodec::compress(&source, &EncodeOptions::default()).unwrap();
    let (file, tensors, bound) = measure(&source, &wcz);
    // Row-class tables code the int8 tensors below their single-table order-0 bound.
    assert!(tensors > bound * 0.99, "tensors {tensors:.4}, bound {bound:.4}");
    assert!(file > 1.5, "file ratio {file:.4}");
}

#[test]
fn minilm_bf16_slice_round_trips() {
    let source = slice("minilm-bf16-slice.safetensors");
    let wcz = wcodec::compress(&source, &EncodeOptions::default()).unwrap();
    let (file, _, _) = measure(&source, &wcz);
    assert!(file > 1.4, "file ratio {file:.4}");
}

#[test]
fn smollm2_q8_0_quants_round_trip_near_their_bound() {
    let source = slice("smollm2-q8_0-quants-256x1024.i8");
    let wcz =
        wcodec::compress_raw(&source, Dtype::I8, &[256, 1024], &EncodeOptions::default()).unwrap();
    let (_, tensors, bound) = measure(&source, &wcz);
    assert!(tensors > bound * 0.99, "tensors {tensors:.4}, bound {bound:.4}");
}

#[test]
fn output_does_not_depend_on_the_thread_count() {
    let source = slice("minilm-int8-per-tensor.safetensors");
    let options = EncodeOptions::default();
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    let a = one.install(|| wcodec::compress(&source, &options).unwrap());
    let b = three.install(|| wcodec::compress(&source, &options).unwrap());
    assert_eq!(a, b);
}

#[test]
fn smollm2_gguf_slice_round_trips_with_block_fields() {
    let source = slice("smollm2-slice.gguf");
    let wcz = wcodec::compress(&source, &EncodeOptions::default()).unwrap();
    let (file, tensors, _) = measure(&source, &wcz);
    let dir = Directory::from_file_bytes(&wcz).unwrap();
    let q8 = dir.tensors.iter().find(|t| t.name == "token_embd.weight").unwrap();
    assert_eq!(q8.dtype, Dtype::Q8_0);
    assert_eq!(q8.transform, wcodec::format::Transform::BlockFields);
    assert_eq!(q8.planes.len(), 3, "scale low bytes, scale high bytes, quants");
    let q4 = dir.tensors.iter().find(|t| t.name == "blk.0.attn_q.weight").unwrap();
    assert_eq!(q4.dtype, Dtype::Q4_1);
    // Splitting the scales from the quants is what makes GGUF compress at all.
    assert!(tensors > 1.05, "tensors {tensors:.4}");
    assert!(file > 1.04, "file {file:.4}");
}

#[test]
fn decompress_into_a_buffer_of_the_wrong_length_is_an_error() {
    let source = slice("minilm-int8-per-tensor.safetensors");
    let wcz = wcodec::compress(&source, &EncodeOptions::default()).unwrap();
    for len in [0, source.len() - 1, source.len() + 1] {
        let mut out = vec![0u8; len];
        let err = wcodec::decompress_into(&wcz, &mut out).unwrap_err();
        assert!(err.to_string().contains("output buffer"), "{len}: {err}");
    }
}
