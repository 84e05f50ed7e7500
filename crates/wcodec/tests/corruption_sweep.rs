//! A sweep of damage over every part of a real file: single-bit flips spread over the file
//! header, the payload (units, raw planes and the alignment padding between them), every
//! section of the directory (header, tensor, plane and unit records, dims, names, tables with
//! their row maps, gaps) and the trailer, and truncations at every header, section, record,
//! plane and unit boundary. Each one is an error, or (only for a flip in alignment padding,
//! which no decoder reads) the exact original bytes: never a panic, a hang or a wrong output.

use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

use wcodec::format::records::{
    DirectoryHeader, FileHeader, PlaneRecord, TensorRecord, Trailer, UnitRecord,
};
use wcodec::format::{Directory, PlaneEncoding, parse_trailer};
use wcodec::predict::TileConfig;
use wcodec::{Dtype, EncodeOptions};

/// A small real file: the first rows of two int8 tensors of MiniLM (per-tensor scales, so
/// their rows differ in spread) and a bf16 LayerNorm weight, as safetensors, compressed with
/// small tiles so it has many units, several tables and row maps, and raw planes.
fn sample() -> (Vec<u8>, Vec<u8>) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data");
    let int8 = std::fs::read(data.join("minilm-int8-per-tensor.safetensors")).unwrap();
    let bf16 = std::fs::read(data.join("minilm-bf16-slice.safetensors")).unwrap();
    let int8_layout = wcodec::container::read_safetensors(&int8).unwrap();
    let bf16_layout = wcodec::container::read_safetensors(&bf16).unwrap();
    let rows = |bytes: &[u8], layout: &wcodec::container::SourceLayout, name: &str, n: usize| {
        let t = layout.tensors.iter().find(|t| t.name.contains(name)).unwrap();
        let cols = *t.dims.last().unwrap() as usize * t.dtype.size();
        bytes[t.offset as usize..][..n * cols].to_vec()
    };
    let pos = rows(&int8, &int8_layout, "position_embeddings.weight", 48);
    let query = rows(&int8, &int8_layout, "query.weight", 32);
    let norm = rows(&bf16, &bf16_layout, "LayerNorm.weight", 1);
    let tensors: [(&str, Dtype, &[u64], &[u8]); 3] = [
        ("embeddings.position_embeddings.weight", Dtype::I8, &[48, 384], &pos),
        ("encoder.layer.0.attention.self.query.weight", Dtype::I8, &[32, 384], &query),
        ("encoder.layer.0.attention.output.LayerNorm.weight", Dtype::BF16, &[384], &norm),
    ];
    let source = wcodec::container::write_safetensors(&tensors, None).unwrap();
    let options = EncodeOptions { tile: TileConfig { rows: 16, cols: 96 }, ..Default::default() };
    let wcz = wcodec::compress(&source, &options).unwrap();
    (source, wcz)
}

/// The parts of a .wcz file, by byte range.
#[derive(Debug, Default)]
struct Map {
    /// (name, range) of every part that a reader checks: a flip there must be an error.
    checked: Vec<(&'static str, Range<usize>)>,
    /// Alignment padding inside the payload region, read by no decoder.
    padding: Vec<Range<usize>>,
    /// Offsets where a truncation cuts the file at a boundary.
    boundaries: Vec<usize>,
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

fn map(wcz: &[u8]) -> Map {
    let dir = Directory::from_file_bytes(wcz).unwrap();
    let loc = parse_trailer(&wcz[wcz.len() - Trailer::LEN..], wcz.len() as u64).unwrap();
    let d = loc.offset as usize;
    let mut m = Map::default();
    m.checked.push(("file header", 0..FileHeader::LEN));
    // Payload: units and raw planes; everything else in [32, d) is padding.
    let mut used = Vec::new();
    for p in dir.tensors.iter().flat_map(|t| &t.planes) {
        let base = p.payload_offset as usize;
        m.boundaries.push(base);
        match &p.encoding {
            PlaneEncoding::Raw { .. } => {
                used.push(("raw plane", base..base + p.payload_len as usize))
            }
            PlaneEncoding::Rans { units, .. } => {
                for u in units {
                    let start = base + u.offset as usize;
                    used.push(("unit", start..start + u.len as usize));
                    m.boundaries.extend([start, start + 1, start + u.len as usize - 1]);
                }
            }
        }
    }
    used.sort_by_key(|(_, r)| r.start);
    let mut cursor = FileHeader::LEN;
    for (what, r) in used {
        if r.start > cursor {
            m.padding.push(cursor..r.start);
        }
        cursor = r.end;
        m.checked.push((what, r));
    }
    if d > cursor {
        m.padding.push(cursor..d);
    }
    // Directory sections, from the counts in its header.
    let (n_tensors, n_planes, n_units, n_dims) =
        (u32_at(wcz, d), u32_at(wcz, d + 4), u32_at(wcz, d + 8), u32_at(wcz, d + 12));
    let (names_len, tables_len) = (u32_at(wcz, d + 16), u32_at(wcz, d + 20));
    // The gaps section: `gaps_stored_len` bytes where zstd compressed them, else the gaps.
    let gaps_stored = u64::from_le_bytes(wcz[d + 48..d + 56].try_into().unwrap()) as usize;
    let gaps_section = if gaps_stored > 0 { gaps_stored } else { dir.gaps.len() };
    let sections: [(&str, usize, usize); 8] = [
        ("directory header", DirectoryHeader::LEN, DirectoryHeader::LEN),
        ("tensor records", n_tensors * TensorRecord::LEN, TensorRecord::LEN),
        ("plane records", n_planes * PlaneRecord::LEN, PlaneRecord::LEN),
        ("unit records", n_units * UnitRecord::LEN, UnitRecord::LEN),
        ("dims", n_dims * 8, 8),
        ("names", names_len, usize::MAX),
        ("tables", tables_len, 34),
        ("gaps", gaps_section, usize::MAX),
    ];
    let mut at = d;
    for (what, len, record) in sections {
        m.checked.push((what, at..at + len));
        m.boundaries.extend((at..at + len).step_by(record.max(1)));
        at += len;
    }
    assert_eq!(at, wcz.len() - Trailer::LEN, "sections cover the directory");
    m.checked.push(("trailer", at..wcz.len()));
    m.boundaries.extend([0, 1, FileHeader::LEN - 1, FileHeader::LEN, d, at, wcz.len() - 1]);
    m.boundaries.extend(at..wcz.len());
    m.boundaries.sort_unstable();
    m.boundaries.dedup();
    m
}

/// Decompresses `bytes`; true for an error, false for the exact original; panics on a wrong
/// output or a decode that takes too long.
fn is_error(bytes: &[u8], source: &[u8], what: &str) -> bool {
    let start = Instant::now();
    let result = wcodec::decompress(bytes);
    assert!(start.elapsed() < Duration::from_secs(2), "{what}: took {:?}", start.elapsed());
    match result {
        Err(_) => true,
        Ok(out) => {
            assert!(out == source, "{what}: decoded without error to wrong bytes");
            false
        }
    }
}

#[test]
fn the_sample_has_every_kind_of_part() {
    let (_, wcz) = sample();
    let dir = Directory::from_file_bytes(&wcz).unwrap();
    let planes: Vec<_> = dir.tensors.iter().flat_map(|t| &t.planes).collect();
    let units: usize = planes
        .iter()
        .map(|p| match &p.encoding {
            PlaneEncoding::Rans { units, .. } => units.len(),
            PlaneEncoding::Raw { .. } => 0,
        })
        .sum();
    let row_maps = planes
        .iter()
        .filter(|p| matches!(&p.encoding, PlaneEncoding::Rans { tables, .. } if tables.len() > 1))
        .count();
    let raw = planes.iter().filter(|p| matches!(p.encoding, PlaneEncoding::Raw { .. })).count();
    assert!(units >= 20, "{units} units");
    assert!(row_maps >= 1, "no plane with several tables");
    assert!(raw >= 1, "no raw plane");
    assert!(!dir.gaps.is_empty());
    let d = parse_trailer(&wcz[wcz.len() - Trailer::LEN..], wcz.len() as u64).unwrap().offset;
    assert_eq!(wcz[d as usize + 41], u8::from(cfg!(feature = "zstd")), "gaps codec");
}

#[test]
fn every_flip_is_an_error_or_lands_in_padding() {
    let (source, wcz) = sample();
    let m = map(&wcz);
    // At least 1,000 flips: every bit of the small parts, and evenly spread positions (all 8
    // bits in turn) over the large ones.
    let mut flips: Vec<(&str, usize, u8)> = Vec::new();
    for (what, r) in &m.checked {
        let step = (r.len() / 64).max(1);
        for (k, pos) in r.clone().step_by(step).enumerate() {
            if r.len() <= 64 {
                flips.extend((0..8).map(|bit| (*what, pos, bit)));
            } else {
                flips.push((what, pos, (k % 8) as u8));
            }
        }
    }
    let mut padding_flips = 0;
    for r in &m.padding {
        for (k, pos) in r.clone().enumerate().step_by(3) {
            flips.push(("padding", pos, (k % 8) as u8));
            padding_flips += 1;
        }
    }
    assert!(flips.len() >= 1000, "{} flips", flips.len());
    let mut errors = 0;
    let mut per_part = std::collections::BTreeMap::<&str, (usize, usize)>::new();
    for &(what, pos, bit) in &flips {
        let mut bad = wcz.clone();
        bad[pos] ^= 1 << bit;
        let error = is_error(&bad, &source, &format!("flip of bit {bit} at {pos} ({what})"));
        let entry = per_part.entry(what).or_default();
        entry.0 += 1;
        if error {
            entry.1 += 1;
            errors += 1;
        } else {
            assert_eq!(what, "padding", "flip of bit {bit} at {pos} ({what}) went unnoticed");
        }
    }
    eprintln!(
        "{} flips, {errors} errors, {} in padding decoded to the original; per part (flips, \
         errors): {per_part:?}",
        flips.len(),
        flips.len() - errors,
    );
    assert!(padding_flips > 0);
}

#[test]
fn every_truncation_is_an_error() {
    let (source, wcz) = sample();
    let m = map(&wcz);
    assert!(m.boundaries.len() > 100, "{} cuts", m.boundaries.len());
    for &cut in &m.boundaries {
        assert!(is_error(&wcz[..cut], &source, &format!("cut at {cut}")), "cut at {cut} decoded");
    }
    // And a file with bytes appended, or the payload shifted by one byte.
    let mut longer = wcz.clone();
    longer.push(0);
    assert!(is_error(&longer, &source, "one byte appended"));
    let mut shifted = wcz.clone();
    shifted.insert(FileHeader::LEN, 0);
    assert!(is_error(&shifted, &source, "one byte inserted after the header"));
}
