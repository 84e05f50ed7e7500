//! Inputs found by fuzzing (fuzz/, `cargo xtask fuzz`), replayed through the facade. Each
//! names what it checks; the fix and a focused test live in the crate where the bug was.

/// A GGUF v3 file with no metadata and one tensor `w` of ggml type `ggml_type` and dims `ne`,
/// with no data (the tensor is empty when a dim is 0).
fn gguf(ne: &[u64], ggml_type: u32) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    out.push(b'w');
    out.extend_from_slice(&(ne.len() as u32).to_le_bytes());
    for d in ne {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(&ggml_type.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.resize(out.len().next_multiple_of(32), 0);
    out
}

/// gguf target: an empty f32 tensor with rows of 0xffff << 48 elements compressed to a file
/// that the decoder refused (its rows' bytes overflow). Every file `compress` accepts must
/// decompress; this one is now refused up front, as invalid input.
#[test]
fn an_empty_tensor_with_rows_too_wide_for_bytes_is_refused_not_written_undecodable() {
    let file = gguf(&[0xffff_0000_0000_0000, 0], 0);
    let err = wcodec::compress(&file, &Default::default()).unwrap_err();
    assert!(matches!(err, wcodec::Error::Container(_)), "{err}");
    assert_eq!(err.exit_code(), 3);
    // An empty tensor whose rows fit is fine, and round-trips.
    let file = gguf(&[1 << 20, 0], 0);
    let wcz = wcodec::compress(&file, &Default::default()).unwrap();
    assert_eq!(wcodec::decompress(&wcz).unwrap(), file);
}

/// gguf target: an empty f32 tensor of 0x5700_0000_0000_0000 rows of 0 elements compressed, then
/// its decode plan overflowed multiplying its rows by the band size (a panic where overflow is
/// checked, a meaningless band elsewhere). The band size now saturates; the file round-trips.
#[test]
fn an_empty_tensor_of_countless_empty_rows_round_trips() {
    let file = gguf(&[0, 0x5700_0000_0000_0000], 0);
    let wcz = wcodec::compress(&file, &Default::default()).unwrap();
    assert_eq!(wcodec::decompress(&wcz).unwrap(), file);
}

/// gguf target: an empty f32 tensor whose shape is 405495037452650370 x 9007199254740992000 x
/// 0 x 0. The reader counted its elements in GGUF's order (0 first: no overflow) and accepted
/// it; the encoder multiplied its leading dims first, overflowed and refused the file. A zero
/// dim now makes 0 elements in any order, and the file round-trips.
#[test]
fn a_zero_dim_empties_a_tensor_whatever_the_other_dims() {
    let file = gguf(&[0, 0, 9_007_199_254_740_992_000, 405_495_037_452_650_370], 0);
    let wcz = wcodec::compress(&file, &Default::default()).unwrap();
    assert_eq!(wcodec::decompress(&wcz).unwrap(), file);
}

/// gguf target: an empty f32 tensor (its fastest dim 0) whose other dims multiply past 2^64:
/// its elements are countable (0), its rows are not, so the encoder refused what the reader
/// had accepted. The reader now refuses it too, as it refuses rows too wide for bytes.
#[test]
fn an_empty_tensor_with_rows_past_two_to_the_64_is_refused() {
    let file = gguf(&[0, 14_771_806_777_775_226_880, 4608, 72_997_666_816], 0);
    let err = wcodec::compress(&file, &Default::default()).unwrap_err();
    assert!(matches!(err, wcodec::Error::Container(_)), "{err}");
    assert_eq!(err.exit_code(), 3);
}

/// roundtrip target: a GGUF block type of rows of no columns coded whole (`--for-gpu`) panicked
/// counting its bytes by rows (chunks of zero rows' bytes), and one of no rows was written with
/// a plane of rows 0 bytes wide, which the decoder refused. An empty plane is now stored as it
/// is before anything is counted, its rows' width taken from the dtype; empty block tensors of
/// every kind round-trip.
#[test]
fn empty_block_tensors_coded_whole_round_trip() {
    let options = wcodec::EncodeOptions::for_gpu();
    for dtype in [wcodec::Dtype::Q8_0, wcodec::Dtype::Q4_1, wcodec::Dtype::Q6K] {
        for dims in [[3u64, 0], [0, 512], [0, 0]] {
            let wcz = wcodec::compress_raw(&[], dtype, &dims, &options).unwrap();
            assert_eq!(wcodec::decompress(&wcz).unwrap(), Vec::<u8>::new(), "{dtype} {dims:?}");
        }
    }
    // No rows of more bytes than a u64 counts (Q8_0: 34 bytes a block of 32): refused, coded
    // whole or split (split, such a file was written and then refused by the decoder).
    let huge = [0, u64::MAX / 32 * 32];
    for options in [&options, &Default::default()] {
        assert!(wcodec::compress_raw(&[], wcodec::Dtype::Q8_0, &huge, options).is_err());
    }
}
