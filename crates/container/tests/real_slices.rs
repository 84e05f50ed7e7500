//! The checked-in slices of real weights (tests/data/, made by `cargo xtask corpus --slices`)
//! parse as expected, and writing their tensors back gives the same bytes.

use std::path::PathBuf;

use wcodec_container::{
    Dtype, SourceKind, detect, read_layout, read_safetensors_metadata, write_safetensors,
};

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn round_trip(bytes: &[u8]) {
    let layout = read_layout(bytes).unwrap();
    let metadata = read_safetensors_metadata(bytes).unwrap();
    let tensors: Vec<(&str, Dtype, &[u64], &[u8])> = layout
        .tensors
        .iter()
        .map(|t| {
            let range = t.offset as usize..(t.offset + t.len) as usize;
            (t.name.as_str(), t.dtype, t.dims.as_slice(), &bytes[range])
        })
        .collect();
    assert_eq!(write_safetensors(&tensors, metadata.as_ref()).unwrap(), bytes);
    // Only the header is a gap.
    let gaps = layout.gaps(bytes.len() as u64);
    assert_eq!(gaps, vec![0..layout.tensors[0].offset]);
}

#[test]
fn int8_per_tensor_slice() {
    let bytes = data("minilm-int8-per-tensor.safetensors");
    assert_eq!(detect(&bytes), Some(SourceKind::Safetensors));
    let layout = read_layout(&bytes).unwrap();
    assert_eq!(layout.tensors.len(), 12);
    for pair in layout.tensors.chunks(2) {
        let (q, scale) = (&pair[0], &pair[1]);
        assert_eq!(q.dtype, Dtype::I8);
        assert_eq!(q.dims.len(), 2);
        assert_eq!(scale.name, format!("{}.scale", q.name));
        assert_eq!((scale.dtype, scale.dims.as_slice()), (Dtype::F32, &[1u64][..]));
        // Symmetric absmax: codes in [-127, 127], and both ends used.
        let codes = &bytes[q.offset as usize..(q.offset + q.len) as usize];
        assert!(!codes.contains(&0x80));
        assert!(codes.contains(&127) || codes.contains(&0x81));
    }
    round_trip(&bytes);
}

#[test]
fn bf16_slice() {
    let bytes = data("minilm-bf16-slice.safetensors");
    let layout = read_layout(&bytes).unwrap();
    assert_eq!(layout.tensors.len(), 3);
    assert!(layout.tensors.iter().all(|t| t.dtype == Dtype::BF16));
    assert_eq!(layout.tensors[0].dims, vec![384, 384]);
    round_trip(&bytes);
}

#[test]
fn q8_0_quants_slice_is_raw_int8() {
    let bytes = data("smollm2-q8_0-quants-256x1024.i8");
    assert_eq!(bytes.len(), 256 * 1024);
    assert_eq!(detect(&bytes), None);
}
