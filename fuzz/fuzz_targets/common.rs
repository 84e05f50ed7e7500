//! Checks shared by the container targets.

use wcodec::container::{SourceLayout, detect};
use wcodec::{Dtype, EncodeOptions};

/// `layout`, read from `data`, is sorted, inside the file and non-overlapping, each typed
/// tensor's shape matches its length, and the file round-trips through the codec.
pub fn check_layout(layout: &SourceLayout, data: &[u8]) {
    let mut end = 0;
    let mut covered = 0;
    for t in &layout.tensors {
        assert!(t.offset >= end || t.len == 0, "overlap at {}", t.name);
        assert!(t.offset + t.len <= data.len() as u64);
        end = end.max(t.offset + t.len);
        covered += t.len;
        if t.dtype != Dtype::Opaque {
            let elements = wcodec::format::element_count(&t.dims).unwrap();
            assert_eq!(t.dtype.storage_len(elements), Some(t.len), "{}", t.name);
        }
    }
    let gaps: u64 = layout.gaps(data.len() as u64).iter().map(|g| g.end - g.start).sum();
    assert_eq!(gaps + covered, data.len() as u64);
    assert_eq!(detect(data), Some(layout.kind));
    // Small tiles, so that small files still have several units.
    let options = EncodeOptions {
        tile: wcodec::predict::TileConfig { rows: 4, cols: 16 },
        ..Default::default()
    };
    let wcz = wcodec::compress(data, &options).expect("a readable file compresses");
    assert_eq!(wcodec::decompress(&wcz).expect("and decompresses"), data);
}
