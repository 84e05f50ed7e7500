//! Helpers of the .wcz targets: checksums recomputed after the fuzzer's mutations, so that
//! mutated files get past the CRC checks into the parser and the decoders behind them.

use wcodec::format::records::{DirectoryHeader, PlaneRecord, TensorRecord, Trailer, UnitRecord};
use wcodec::format::{Directory, PlaneEncoding, parse_trailer};

/// Rewrites the directory CRC in the trailer of `file`, if the trailer locates a directory.
pub fn fix_directory_crc(file: &mut [u8]) {
    let n = file.len();
    if n < Trailer::LEN {
        return;
    }
    let offset = u64::from_le_bytes(file[n - 32..n - 24].try_into().unwrap());
    let len = u64::from_le_bytes(file[n - 24..n - 16].try_into().unwrap());
    let Some(end) = offset.checked_add(len).filter(|&e| e <= (n - Trailer::LEN) as u64) else {
        return;
    };
    let crc = crc32c::crc32c(&file[offset as usize..end as usize]);
    file[n - 16..n - 12].copy_from_slice(&crc.to_le_bytes());
}

/// Rewrites the CRCs of every unit and raw plane (and then of the directory) of `file`, so
/// that the rANS decoder and the predictors run on whatever the payload holds. Tensor CRCs
/// are left alone: they are what stops a damaged unit from becoming a wrong tensor.
#[allow(dead_code)]
pub fn fix_payload_crcs(file: &mut [u8]) {
    fix_directory_crc(file);
    let Ok(dir) = Directory::from_file_bytes(file) else { return };
    let loc = parse_trailer(&file[file.len() - Trailer::LEN..], file.len() as u64).unwrap();
    let n_planes: usize = dir.tensors.iter().map(|t| t.planes.len()).sum();
    let planes_at =
        loc.offset as usize + DirectoryHeader::LEN + dir.tensors.len() * TensorRecord::LEN;
    let units_at = planes_at + n_planes * PlaneRecord::LEN;
    let (mut plane_index, mut unit_index) = (0, 0);
    for p in dir.tensors.iter().flat_map(|t| &t.planes) {
        let crc = |file: &[u8], off: u64, len: u64| {
            crc32c::crc32c(&file[(p.payload_offset + off) as usize..][..len as usize])
        };
        match &p.encoding {
            PlaneEncoding::Raw { .. } => {
                let crc = crc(file, 0, p.payload_len);
                let at = planes_at + plane_index * PlaneRecord::LEN + 44;
                file[at..at + 4].copy_from_slice(&crc.to_le_bytes());
            }
            PlaneEncoding::Rans { units, .. } => {
                for u in units {
                    let crc = crc(file, u.offset, u64::from(u.len));
                    let at = units_at + unit_index * UnitRecord::LEN + 12;
                    file[at..at + 4].copy_from_slice(&crc.to_le_bytes());
                    unit_index += 1;
                }
            }
        }
        plane_index += 1;
    }
    fix_directory_crc(file);
}

/// Runs `check` on `data` as it is and, where recomputing its unit, raw-plane and directory
/// CRCs changes it, once more on the fixed copy (so that mutated payloads get past the CRCs).
#[allow(dead_code)]
pub fn as_is_and_fixed(data: &[u8], check: impl Fn(&[u8])) {
    check(data);
    let mut fixed = data.to_vec();
    fix_payload_crcs(&mut fixed);
    if fixed != data {
        check(&fixed);
    }
}
