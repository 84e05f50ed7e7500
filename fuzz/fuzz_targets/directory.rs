//! The container parser: `Directory::from_file_bytes` on arbitrary bytes is an error or a
//! directory whose every range lies in the file, and which serialises back to itself. The
//! directory CRC is recomputed first, so that mutations reach the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wcodec::TensorSummary;
use wcodec::format::records::Trailer;
use wcodec::format::{Directory, PlaneEncoding, parse_trailer};
use zerocopy::IntoBytes;

#[path = "wcz.rs"]
mod wcz;

fuzz_target!(|data: &[u8]| {
    // Mutations get past the directory's CRC (a check of its own is `decompress`'s job).
    let mut file = data.to_vec();
    wcz::fix_directory_crc(&mut file);
    let data = &file[..];
    let Ok(dir) = Directory::from_file_bytes(data) else { return };
    let loc = parse_trailer(&data[data.len() - Trailer::LEN..], data.len() as u64).unwrap();
    for t in &dir.tensors {
        let _ = TensorSummary::of(t);
        assert!(t.source_offset + t.source_len <= dir.source_len);
        for p in &t.planes {
            assert!(p.payload_offset + p.payload_len <= loc.offset);
            if let PlaneEncoding::Rans { units, row_tables, .. } = &p.encoding {
                assert!(row_tables.is_empty() || row_tables.len() as u64 == p.rows);
                let mut covered = 0;
                for (i, u) in units.iter().enumerate() {
                    let (r0, c0, h, w) = p.tile_rect(i);
                    assert!(h >= 1 && w >= 1 && r0 + h <= p.rows && c0 + w <= p.cols);
                    assert!(u.offset + u64::from(u.len) <= p.payload_len);
                    covered += h * w;
                }
                assert_eq!(covered, p.len());
            }
        }
    }
    // The directory serialises back to bytes that parse to the same value.
    let bytes = dir.to_bytes();
    let mut again = data[..loc.offset as usize].to_vec();
    again.extend_from_slice(&bytes);
    again.extend_from_slice(Trailer::new(loc.offset, &bytes).as_bytes());
    assert_eq!(Directory::from_file_bytes(&again).unwrap(), dir);
});
