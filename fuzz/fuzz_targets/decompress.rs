//! Whole decompression: `wcodec::decompress` on arbitrary bytes is an error or the source
//! that the directory describes, and the reference decoder agrees with it tensor by tensor.
//! Each input runs twice: as it is, and with its unit, raw-plane and directory CRCs
//! recomputed, so that mutated payloads reach the rANS decoder and the predictors (the tensor
//! CRCs are kept: they stop a damaged unit from becoming a wrong tensor).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wcodec::format::Directory;

#[path = "wcz.rs"]
mod wcz;

fn check(data: &[u8]) {
    let Ok(out) = wcodec::decompress(data) else { return };
    let dir = Directory::from_file_bytes(data).unwrap();
    assert_eq!(out.len() as u64, dir.source_len);
    for t in &dir.tensors {
        let reference = wcodec::decode::decode_tensor_reference(data, t).unwrap();
        assert_eq!(&out[t.source_offset as usize..][..reference.len()], &reference[..]);
        assert_eq!(wcodec::decode::decode_tensor(data, t).unwrap(), reference);
    }
}

fuzz_target!(|data: &[u8]| wcz::as_is_and_fixed(data, check));
