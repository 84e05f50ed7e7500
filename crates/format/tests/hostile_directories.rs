//! Hostile directories, each a regression test of a fuzzing find or an audit of the parser:
//! a well-formed file is built, one field is edited (and the directory CRC fixed up, so the
//! edit reaches the parser), and the parse must be a typed error, never a panic or overflow.

use wcodec_format::records::{
    DirectoryHeader, FileHeader, PlaneRecord, TensorRecord, Trailer, UnitRecord,
};
use wcodec_format::{
    Directory, Dtype, FormatError, PlaneEncoding, PlaneEntry, Predictor, SourceKind, TensorEntry,
    Transform, UnitEntry,
};
use zerocopy::IntoBytes;

/// Where the payload starts: the first 64-byte boundary after the header.
const PAYLOAD: u64 = 64;

fn rans_plane(
    rows: u64,
    cols: u64,
    tile: (u32, u32),
    units: u32,
    payload_offset: u64,
) -> PlaneEntry {
    let mut table = [0u32; 256];
    table[7] = 1 << 12;
    PlaneEntry {
        rows,
        cols,
        tile_rows: tile.0,
        tile_cols: tile.1,
        bias128: false,
        payload_offset,
        payload_len: 128 * u64::from(units),
        encoding: PlaneEncoding::Rans {
            prob_bits: 12,
            tables: vec![table],
            row_tables: Vec::new(),
            col_tables: Vec::new(),
            units: (0..units)
                .map(|i| UnitEntry {
                    offset: 128 * u64::from(i),
                    len: 128,
                    crc32c: 0,
                    predictor: Predictor::None,
                })
                .collect(),
        },
    }
}

/// Two u8 tensors of 4 x 8, each one rANS plane of two 4 x 4 tiles.
fn directory() -> Directory {
    let tensor = |i: u64| TensorEntry {
        name: format!("t{i}"),
        dtype: Dtype::U8,
        dims: vec![4, 8],
        transform: Transform::Identity,
        source_offset: 32 * i,
        source_len: 32,
        crc32c: 0,
        order0_bytes: 0,
        planes: vec![rans_plane(4, 8, (4, 4), 2, PAYLOAD + 256 * i)],
    };
    Directory {
        source_kind: SourceKind::Raw,
        source_len: 64,
        tensors: vec![tensor(0), tensor(1)],
        gaps: Vec::new(),
    }
}

/// The whole file of `dir`, with zeros for payload.
fn file(dir: &Directory) -> Vec<u8> {
    let mut out = FileHeader::new().as_bytes().to_vec();
    let end = dir
        .tensors
        .iter()
        .flat_map(|t| &t.planes)
        .map(|p| p.payload_offset + p.payload_len)
        .max()
        .unwrap_or(PAYLOAD);
    out.resize(end as usize, 0);
    let bytes = dir.to_bytes();
    let offset = out.len() as u64;
    out.extend_from_slice(&bytes);
    out.extend_from_slice(Trailer::new(offset, &bytes).as_bytes());
    out
}

/// Offset of the directory in `file`.
fn dir_offset(file: &[u8]) -> usize {
    u64::from_le_bytes(file[file.len() - 32..file.len() - 24].try_into().unwrap()) as usize
}

/// `file` with `bytes` written at `at` and the directory CRC recomputed.
fn edit(file: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut out = file.to_vec();
    out[at..at + bytes.len()].copy_from_slice(bytes);
    let (d, n) = (dir_offset(&out), out.len());
    let crc = crc32c::crc32c(&out[d..n - Trailer::LEN]);
    out[n - 16..n - 12].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Offsets in the file of the records of the directory of `dir`.
struct At {
    tensors: usize,
    planes: usize,
    units: usize,
}

fn at(file: &[u8], dir: &Directory) -> At {
    let tensors = dir_offset(file) + DirectoryHeader::LEN;
    let planes = tensors + dir.tensors.len() * TensorRecord::LEN;
    let n_planes: usize = dir.tensors.iter().map(|t| t.planes.len()).sum();
    At { tensors, planes, units: planes + n_planes * PlaneRecord::LEN }
}

fn invalid(bytes: &[u8]) -> FormatError {
    Directory::from_file_bytes(bytes).expect_err("a hostile directory must not parse")
}

#[test]
fn the_well_formed_file_parses() {
    let dir = directory();
    assert_eq!(Directory::from_file_bytes(&file(&dir)).unwrap(), dir);
}

/// Fuzz find (directory target): a unit offset near 2^64 overflowed `offset + len`.
#[test]
fn a_unit_offset_near_the_end_of_u64_is_invalid_not_an_overflow() {
    let dir = directory();
    let f = file(&dir);
    let unit1 = at(&f, &dir).units + UnitRecord::LEN;
    let bad = edit(&f, unit1, &(u64::MAX - 15).to_le_bytes());
    assert!(matches!(invalid(&bad), FormatError::Invalid { what: "unit record", .. }));
}

/// Fuzz find (directory target): the byte size of a block tensor of 2^63 elements overflowed
/// in `Dtype::storage_len`.
#[test]
fn a_block_tensor_whose_byte_size_overflows_is_invalid() {
    assert_eq!(Dtype::Q8_0.storage_len(!31u64), None);
    let mut dir = directory();
    dir.tensors.truncate(1);
    dir.source_len = 32;
    let t = &mut dir.tensors[0];
    t.dtype = Dtype::Q8_0;
    t.dims = vec![1, !31u64];
    let bad = file(&dir);
    assert!(matches!(invalid(&bad), FormatError::Invalid { what: "tensor record", .. }));
}

/// Audit: a tensor with no rows may claim any number of columns; its row size in bytes
/// (columns x element size) overflowed when its planes' shapes were computed.
#[test]
fn a_zero_row_tensor_whose_row_size_overflows_is_invalid() {
    let mut dir = directory();
    dir.tensors.truncate(1);
    dir.source_len = 0;
    let t = &mut dir.tensors[0];
    t.dtype = Dtype::F32;
    t.dims = vec![0, 1 << 62];
    t.source_len = 0;
    t.planes = vec![rans_plane(0, 1 << 62, (4, 4), 0, PAYLOAD)];
    let bad = file(&dir);
    assert!(matches!(invalid(&bad), FormatError::Invalid { what: "tensor record", .. }));
}

/// Fuzz find (gguf target, via the codec): the check above must not refuse what the encoder
/// writes: an empty f32 tensor whose rows are too wide to count in bytes is valid when its
/// transform counts plane widths in elements.
#[test]
fn a_zero_row_split_tensor_with_rows_too_wide_for_bytes_is_valid() {
    let mut dir = directory();
    dir.tensors.truncate(1);
    dir.source_len = 0;
    let t = &mut dir.tensors[0];
    (t.dtype, t.transform, t.source_len) = (Dtype::F32, Transform::F32Split, 0);
    t.dims = vec![0, 0xffff_0000_0000_0000];
    t.planes = (0..4).map(|_| rans_plane(0, 0xffff_0000_0000_0000, (4, 4), 0, PAYLOAD)).collect();
    assert_eq!(Directory::from_file_bytes(&file(&dir)).unwrap(), dir);
}

/// Audit: two planes pointing at the same unit records (so that others go unused, or one
/// payload is described twice) passed the "used exactly once" count.
#[test]
fn planes_sharing_unit_records_or_tables_are_invalid() {
    let dir = directory();
    let f = file(&dir);
    let plane1 = at(&f, &dir).planes + PlaneRecord::LEN;
    // first_unit (offset 36 of a plane record) of the second plane: 0 instead of 2.
    let shared_units = edit(&f, plane1 + 36, &0u32.to_le_bytes());
    assert!(matches!(invalid(&shared_units), FormatError::Invalid { what: "plane record", .. }));
    // tables_offset (offset 28): the first plane's table.
    let shared_tables = edit(&f, plane1 + 28, &0u32.to_le_bytes());
    assert!(matches!(invalid(&shared_tables), FormatError::Invalid { .. }));
}

/// Audit: reserved bytes of the file header and the trailer, which no checksum covers, were
/// not checked, so a flip there went unnoticed.
#[test]
fn reserved_bytes_of_header_and_trailer_must_be_zero() {
    let f = file(&directory());
    let mut header = f.clone();
    header[20] = 1;
    assert!(matches!(invalid(&header), FormatError::Invalid { what: "file header", .. }));
    let mut trailer = f.clone();
    let n = trailer.len();
    trailer[n - 10] = 1;
    assert!(matches!(invalid(&trailer), FormatError::Invalid { what: "trailer", .. }));
}

/// Audit: counts that claim more records than the directory holds are `Truncated`, found
/// before anything is allocated from them.
#[test]
fn counts_beyond_the_directory_are_truncated_before_allocation() {
    let dir = directory();
    let f = file(&dir);
    let d = dir_offset(&f);
    for field in [0, 4, 8, 12, 16, 20] {
        let bad = edit(&f, d + field, &u32::MAX.to_le_bytes());
        assert!(matches!(invalid(&bad), FormatError::Truncated { .. }), "field at {field}");
    }
    let bad = edit(&f, d + 24, &u64::MAX.to_le_bytes());
    assert!(matches!(invalid(&bad), FormatError::Truncated { .. }));
    // A tensor claiming 2^60 elements does not match its bytes.
    let huge = edit(&f, at(&f, &dir).tensors + 32, &(1u64 << 60).to_le_bytes());
    assert!(matches!(invalid(&huge), FormatError::Invalid { .. }));
}

/// The gaps section's header fields: an unknown codec, a stored length that does not go with
/// the codec, gaps claiming 1024 times their stored bytes or more, non-zero reserved bytes, or a
/// stream of another length than `gaps_len` are invalid, not allocated from.
#[test]
fn gaps_headers_that_do_not_fit_are_invalid() {
    let mut dir = directory();
    dir.gaps = b"{\"__metadata__\":{\"format\":\"pt\"},\"token\":\"\\u0120the\"}".repeat(40);
    dir.source_len += dir.gaps.len() as u64;
    let f = file(&dir);
    assert_eq!(Directory::from_file_bytes(&f).unwrap(), dir);
    let d = dir_offset(&f);
    let (codec, stored) = (f[d + 41], u64::from_le_bytes(f[d + 48..d + 56].try_into().unwrap()));
    assert_eq!(codec, u8::from(cfg!(feature = "zstd")), "text gaps are compressed");
    let gaps_len = dir.gaps.len() as u64;
    let mut cases = vec![
        ("codec 2", edit(&f, d + 41, &[2])),
        ("reserved after the codec", edit(&f, d + 45, &[1])),
        ("reserved at the end", edit(&f, d + 60, &[1])),
    ];
    if codec == 1 {
        cases.extend([
            ("codec 0 with a stored length", edit(&f, d + 41, &[0])),
            ("codec 1 without a stored length", edit(&f, d + 48, &0u64.to_le_bytes())),
            ("1024 times the stored bytes", edit(&f, d + 24, &(stored * 1024).to_le_bytes())),
            ("one byte more than the stream", edit(&f, d + 24, &(gaps_len + 1).to_le_bytes())),
            ("one byte less than the stream", edit(&f, d + 24, &(gaps_len - 1).to_le_bytes())),
        ]);
    } else {
        // A build without zstd refuses a file whose gaps claim to be compressed.
        let claimed = edit(&f, d + 48, &gaps_len.to_le_bytes());
        cases.push(("zstd gaps in a build without zstd", edit(&claimed, d + 41, &[1])));
    }
    for (what, bad) in cases {
        assert!(Directory::from_file_bytes(&bad).is_err(), "{what}");
    }
}

/// A directory serialised with its gaps packed ahead is the same bytes, and gaps packed for
/// other gaps are not taken (packed again).
#[test]
fn gaps_packed_ahead_give_the_same_bytes() {
    let mut dir = directory();
    dir.gaps = b"tokenizer.ggml.tokens <|im_start|> <|im_end|> ".repeat(30);
    dir.source_len += dir.gaps.len() as u64;
    let plain = dir.to_bytes();
    let packed = wcodec_format::gaps::PackedGaps::new(&dir.gaps);
    assert_eq!(dir.to_bytes_with(Some(&packed)), plain);
    let other = wcodec_format::gaps::PackedGaps::new(&b"other gaps of another length".repeat(9));
    assert_eq!(dir.to_bytes_with(Some(&other)), plain);
    let mut same_len = dir.gaps.clone();
    same_len[0] ^= 1;
    let other = wcodec_format::gaps::PackedGaps::new(&same_len);
    assert_eq!(dir.to_bytes_with(Some(&other)), plain);
}

/// `directory()` with tensor 0's plane given two tables and the column classes `map`.
fn with_column_classes(map: &[u8]) -> Directory {
    let mut dir = directory();
    if let PlaneEncoding::Rans { tables, col_tables, .. } = &mut dir.tensors[0].planes[0].encoding {
        tables.push(tables[0]);
        *col_tables = map.to_vec();
    }
    dir
}

#[test]
fn column_classes_round_trip_through_the_directory() {
    for map in [&[1u8, 0][..], &[0, 1, 1, 0], &[1; 8]] {
        let dir = with_column_classes(map);
        let parsed = Directory::from_file_bytes(&file(&dir)).expect("parses");
        assert_eq!(parsed.tensors, dir.tensors, "period {}", map.len());
    }
}

#[test]
fn column_class_maps_that_do_not_fit_their_plane_are_invalid() {
    // A period not dividing the 8 columns, a class beyond the 2 tables.
    for map in [&[0u8, 1, 0][..], &[0, 2]] {
        assert!(
            matches!(invalid(&file(&with_column_classes(map))), FormatError::Invalid { .. }),
            "map {map:?}"
        );
    }
    // A period of 0 before a map of 2 (found in the tables section by its bytes).
    let bytes = file(&with_column_classes(&[0, 1]));
    let map = [2u8, 0, 0, 1];
    let at = bytes.windows(4).rposition(|w| w == map).expect("the map is in the file");
    assert!(matches!(invalid(&edit(&bytes, at, &[0, 0])), FormatError::Invalid { .. }));
}

#[test]
fn column_classes_with_one_table_are_invalid() {
    let dir = directory();
    let bytes = file(&dir);
    let flags = at(&bytes, &dir).planes + 27;
    let hostile = edit(&bytes, flags, &[PlaneRecord::FLAG_COLUMN_CLASSES]);
    assert!(matches!(invalid(&hostile), FormatError::Invalid { .. }));
}

#[test]
fn identity_planes_may_hold_the_bytes_in_rows_of_any_length_and_nothing_else() {
    let reshaped = |rows: u64, cols: u64| {
        let mut dir = directory();
        let plane = &mut dir.tensors[0].planes[0];
        (plane.rows, plane.cols) = (rows, cols);
        // Two tiles side by side, as the plane has two units.
        (plane.tile_rows, plane.tile_cols) = (rows.max(1) as u32, (cols / 2).max(1) as u32);
        Directory::from_file_bytes(&file(&dir))
    };
    // 4 rows of 8 bytes: 2 rows of 16, 1 of 32, 8 of 4 and 16 of 2 hold the same bytes.
    for (rows, cols) in [(2, 16), (1, 32), (8, 4), (16, 2)] {
        assert!(reshaped(rows, cols).is_ok(), "{rows} x {cols}");
    }
    // More or fewer bytes, rows or columns of none, a product that overflows.
    for (rows, cols) in [(3, 16), (2, 12), (0, 32), (32, 0), (u64::MAX, 4), (1 << 62, 8)] {
        assert!(reshaped(rows, cols).is_err(), "{rows} x {cols}");
    }
}
