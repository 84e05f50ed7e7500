//! Random access: one tensor decodes from a file reading only that tensor's bytes (plus the
//! header, trailer and directory); streaming a whole file reads each payload once.

use std::path::Path;

use wcodec::{Archive, EncodeOptions};

#[test]
fn extracting_one_tensor_reads_only_its_bytes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/minilm-int8-per-tensor.safetensors");
    let source = std::fs::read(&path).unwrap();
    let wcz = wcodec::compress(&source, &EncodeOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.wcz");
    std::fs::write(&file, &wcz).unwrap();

    let archive = Archive::open(&file).unwrap();
    let opened = archive.bytes_read();
    assert!(opened < 64 * 1024, "opening reads the directory only: {opened}");
    let tensor = archive.find("encoder.layer.0.attention.self.key.weight").unwrap();
    let bytes = archive.decode(tensor).unwrap();
    let start = tensor.source_offset as usize;
    assert_eq!(bytes, &source[start..start + tensor.source_len as usize]);
    let span: u64 = {
        let lo = tensor.planes.iter().map(|p| p.payload_offset).min().unwrap();
        let hi = tensor.planes.iter().map(|p| p.payload_offset + p.payload_len).max().unwrap();
        hi - lo
    };
    assert_eq!(archive.bytes_read() - opened, span);
    assert!(span * 4 < wcz.len() as u64, "the tensor is a small part of the file");

    // The whole file streams back identical.
    let out = archive.write_source(Vec::new(), Path::new("(memory)"), &mut |_, _| {}).unwrap();
    assert_eq!(out, source);
    assert!(matches!(archive.find("no.such.tensor"), Err(wcodec::Error::NoSuchTensor(_))));
}
