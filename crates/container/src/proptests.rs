//! Property tests: writer/reader round trips, and no panic (only errors or valid layouts) on
//! truncated, bit-flipped and random input.

use std::collections::BTreeMap;

use proptest::prelude::*;
use wcodec_format::Dtype;

use crate::gguf::tests::sample;
use crate::*;

/// Checks the invariants every layout a reader returns must keep.
fn check_layout(layout: &SourceLayout, file_len: u64) {
    let mut end = 0u64;
    for t in &layout.tensors {
        assert!(t.offset >= end, "sorted and non-overlapping");
        end = t.offset.checked_add(t.len).expect("no overflow");
        assert!(end <= file_len, "inside the file");
        if t.dtype == Dtype::Opaque {
            assert_eq!(t.dims, vec![t.len]);
        } else {
            let n = t.dims.iter().product::<u64>();
            assert_eq!(t.dtype.storage_len(n), Some(t.len));
        }
    }
}

fn all_readers(bytes: &[u8]) {
    let results = [read_layout(bytes), read_safetensors(bytes), read_gguf(bytes)];
    for layout in results.into_iter().flatten() {
        check_layout(&layout, bytes.len() as u64);
    }
    let _ = read_safetensors_metadata(bytes);
}

fn small_safetensors() -> Vec<u8> {
    let mut metadata = BTreeMap::new();
    metadata.insert("format".to_owned(), "pt".to_owned());
    let a: Vec<u8> = (0..24).collect();
    let b: Vec<u8> = (0..6).map(|i| i * 3).collect();
    let tensors: [(&str, Dtype, &[u64], &[u8]); 3] = [
        ("layer.weight", Dtype::F32, &[2, 3], &a),
        ("layer.bias", Dtype::BF16, &[3], &b),
        ("empty", Dtype::I8, &[0], &[]),
    ];
    write_safetensors(&tensors, Some(&metadata)).unwrap()
}

#[test]
fn every_truncation_is_an_error() {
    for bytes in [small_safetensors(), sample().build().0] {
        assert!(read_layout(&bytes).is_ok());
        for len in 0..bytes.len() {
            let cut = &bytes[..len];
            all_readers(cut);
            // Cutting into the header or a tensor is an error; cutting GGUF's tail padding is
            // not, as long as every tensor is still whole.
            if let Ok(layout) = read_layout(cut) {
                check_layout(&layout, len as u64);
            }
        }
    }
    let bytes = small_safetensors();
    let last_tensor_end =
        read_layout(&bytes).unwrap().tensors.iter().map(|t| t.offset + t.len).max().unwrap();
    for len in 0..last_tensor_end as usize {
        assert!(read_layout(&bytes[..len]).is_err(), "truncated to {len}");
    }
}

#[test]
fn every_single_bit_flip_of_the_headers() {
    for bytes in [small_safetensors(), sample().build().0] {
        let layout = read_layout(&bytes).unwrap();
        let header_end = layout.tensors.first().map_or(bytes.len() as u64, |t| t.offset);
        for pos in 0..header_end as usize {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[pos] ^= 1 << bit;
                all_readers(&flipped);
            }
        }
    }
}

fn dtype_strategy() -> impl Strategy<Value = Dtype> {
    // safetensors has element types only.
    proptest::sample::select(
        Dtype::ALL[1..].iter().copied().filter(|d| d.block().is_none()).collect::<Vec<_>>(),
    )
}

fn tensor_strategy() -> impl Strategy<Value = (Dtype, Vec<u64>, Vec<u8>)> {
    (dtype_strategy(), proptest::collection::vec(0u64..5, 0..4)).prop_flat_map(|(dtype, dims)| {
        let len = dims.iter().product::<u64>() as usize * dtype.size();
        (Just(dtype), Just(dims), proptest::collection::vec(any::<u8>(), len))
    })
}

proptest! {
    #[test]
    fn safetensors_round_trip(
        tensors in proptest::collection::btree_map("[a-z.\"\\\\é0-9_]{1,12}", tensor_strategy(), 0..6),
        metadata in proptest::option::of(
            proptest::collection::btree_map("[a-z_]{1,8}", "[ -~]{0,12}", 0..3)),
    ) {
        let tensors: Vec<_> = tensors.iter().filter(|(n, _)| n.as_str() != "__metadata__").collect();
        let input: Vec<(&str, Dtype, &[u64], &[u8])> = tensors
            .iter()
            .map(|(n, (d, dims, data))| (n.as_str(), *d, dims.as_slice(), data.as_slice()))
            .collect();
        let bytes = write_safetensors(&input, metadata.as_ref()).unwrap();
        prop_assert_eq!(detect(&bytes), Some(SourceKind::Safetensors));
        let layout = read_layout(&bytes).unwrap();
        check_layout(&layout, bytes.len() as u64);
        prop_assert_eq!(layout.tensors.len(), input.len());
        // Tensors of zero bytes may sort before a neighbour at the same offset.
        for &(name, dtype, dims, data) in &input {
            let t = layout.tensors.iter().find(|t| t.name == name).unwrap();
            prop_assert_eq!(t.dtype, dtype);
            prop_assert_eq!(&t.dims[..], dims);
            prop_assert_eq!(&bytes[t.offset as usize..(t.offset + t.len) as usize], data);
        }
        let covered: u64 = layout.tensors.iter().map(|t| t.len).sum();
        let gaps = layout.gaps(bytes.len() as u64);
        prop_assert_eq!(gaps.len(), 1);
        prop_assert_eq!(gaps[0].end - gaps[0].start + covered, bytes.len() as u64);
        prop_assert_eq!(read_safetensors_metadata(&bytes).unwrap(), metadata);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        all_readers(&bytes);
    }

    #[test]
    fn random_prefixed_bytes_never_panic(
        gguf in any::<bool>(),
        rest in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = if gguf { b"GGUF\x03\0\0\0".to_vec() } else {
            let mut b = (rest.len() as u64).to_le_bytes().to_vec();
            b.push(b'{');
            b
        };
        bytes.extend_from_slice(&rest);
        all_readers(&bytes);
    }

    #[test]
    fn random_flips_never_panic(
        gguf in any::<bool>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..8),
    ) {
        let mut bytes = if gguf { sample().build().0 } else { small_safetensors() };
        for (pos, bit) in flips {
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        all_readers(&bytes);
    }
}
