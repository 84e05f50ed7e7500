//! The directory: an owned, validated description of every tensor, plane and unit of a file.
//!
//! `parse_*` take untrusted bytes and either return a `Directory` whose every offset, length and
//! count is consistent with the file (so later stages can index without checks failing) or a
//! `FormatError`. `Directory::to_bytes` is the inverse.

use zerocopy::{FromBytes, IntoBytes};

use crate::error::{FormatError, Result};
use crate::gaps::{self, GapsCodec, MAX_GAPS_EXPANSION, PackedGaps};
use crate::records::*;
use crate::table::{Frequencies, read_table, write_table};
use crate::{Dtype, MAX_TILE_SYMBOLS, Predictor, SourceKind, Transform, rans};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directory {
    pub source_kind: SourceKind,
    /// Length of the original file.
    pub source_len: u64,
    /// Tensors in increasing `source_offset` order.
    pub tensors: Vec<TensorEntry>,
    /// Source bytes not covered by any tensor, in source order.
    pub gaps: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: Dtype,
    pub dims: Vec<u64>,
    pub transform: Transform,
    pub source_offset: u64,
    pub source_len: u64,
    /// CRC-32C of the tensor's original bytes.
    pub crc32c: u32,
    /// Order-0 entropy bound of the planes in bytes, as the encoder measured it (informational).
    pub order0_bytes: u64,
    pub planes: Vec<PlaneEntry>,
}

impl TensorEntry {
    /// The tensor as a matrix of elements: (product of leading dims, last dim).
    pub fn matrix(&self) -> (u64, u64) {
        matrix_shape(&self.dims).expect("validated when parsed or built")
    }

    pub fn elements(&self) -> u64 {
        let (r, c) = self.matrix();
        r * c
    }

    /// Bytes of the tensor in the .wcz payload (units or raw planes, without padding).
    pub fn stored_len(&self) -> u64 {
        self.planes.iter().map(PlaneEntry::stored_len).sum()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaneEntry {
    pub rows: u64,
    pub cols: u64,
    pub tile_rows: u32,
    pub tile_cols: u32,
    /// Bytes are XORed with 0x80 before prediction.
    pub bias128: bool,
    pub payload_offset: u64,
    pub payload_len: u64,
    pub encoding: PlaneEncoding,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlaneEncoding {
    /// The plane's bytes, stored as they are.
    Raw { crc32c: u32 },
    /// rANS units, one per tile. With several tables either `row_tables[r]` is the table of
    /// plane row `r` (its row class), or `col_tables[c % col_tables.len()]` that of plane
    /// column `c` (column classes, a period of them); the other is empty, and both are with one
    /// table.
    Rans {
        prob_bits: u8,
        tables: Vec<Frequencies>,
        row_tables: Vec<u8>,
        col_tables: Vec<u8>,
        units: Vec<UnitEntry>,
    },
}

impl PlaneEntry {
    pub fn len(&self) -> u64 {
        self.rows * self.cols
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (tile rows, tile columns) of the grid of tiles.
    pub fn grid(&self) -> (u64, u64) {
        tile_grid(self.rows, self.cols, self.tile_rows, self.tile_cols)
    }

    /// Bytes stored for this plane (sum of unit lengths, or the raw length).
    pub fn stored_len(&self) -> u64 {
        match &self.encoding {
            PlaneEncoding::Raw { .. } => self.payload_len,
            PlaneEncoding::Rans { units, .. } => units.iter().map(|u| u64::from(u.len)).sum(),
        }
    }

    /// The tile coded by unit `index`: (first row, first col, height, width).
    pub fn tile_rect(&self, index: usize) -> (u64, u64, u64, u64) {
        let (_, grid_cols) = self.grid();
        let (tr, tc) = (index as u64 / grid_cols, index as u64 % grid_cols);
        let (r0, c0) = (tr * u64::from(self.tile_rows), tc * u64::from(self.tile_cols));
        let h = (self.rows - r0).min(u64::from(self.tile_rows));
        let w = (self.cols - c0).min(u64::from(self.tile_cols));
        (r0, c0, h, w)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitEntry {
    /// From the plane's payload_offset.
    pub offset: u64,
    pub len: u32,
    pub crc32c: u32,
    pub predictor: Predictor,
}

/// The number of elements of a tensor of shape `dims`, or `None` if it overflows a u64: 0 when
/// any dim is 0, whatever the others (a product taken in order could overflow before the 0,
/// and then depend on the order of the dims).
pub fn element_count(dims: &[u64]) -> Option<u64> {
    if dims.contains(&0) {
        return Some(0);
    }
    dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))
}

/// `(rows, cols)` of the matrix view of `dims`, or `None` if the element count overflows.
pub fn matrix_shape(dims: &[u64]) -> Option<(u64, u64)> {
    match dims.split_last() {
        None => Some((1, 1)),
        Some((&cols, leading)) => {
            let rows = element_count(leading)?;
            rows.checked_mul(cols)?;
            Some((rows, cols))
        }
    }
}

/// Number of tile rows and tile columns covering a `rows x cols` plane.
pub fn tile_grid(rows: u64, cols: u64, tile_rows: u32, tile_cols: u32) -> (u64, u64) {
    if rows == 0 || cols == 0 {
        return (0, 0);
    }
    (rows.div_ceil(u64::from(tile_rows)), cols.div_ceil(u64::from(tile_cols)))
}

/// Checks the fixed header at the start of a file.
pub fn parse_header(bytes: &[u8]) -> Result<()> {
    let (header, _) = FileHeader::read_from_prefix(bytes).map_err(|_| FormatError::Truncated {
        what: "file header",
        needed: FileHeader::LEN as u64,
        available: bytes.len() as u64,
    })?;
    if header.magic != FILE_MAGIC {
        return Err(FormatError::BadMagic);
    }
    let version = header.version.get();
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion { found: version, supported: FORMAT_VERSION });
    }
    if header.flags.get() != 0
        || header.header_len.get() != FileHeader::LEN as u32
        || header.reserved != [0; 16]
    {
        return Err(FormatError::invalid(
            "file header",
            "unknown flags, header length or reserved bytes",
        ));
    }
    Ok(())
}

/// Where the directory is, read from the last 32 bytes of a file of `file_len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectoryLocation {
    pub offset: u64,
    pub len: u64,
    pub crc32c: u32,
}

/// Checks the trailer (`tail` = the last 32 bytes of the file) and locates the directory.
pub fn parse_trailer(tail: &[u8], file_len: u64) -> Result<DirectoryLocation> {
    let min = (FileHeader::LEN + Trailer::LEN) as u64;
    if file_len < min {
        return Err(FormatError::Truncated { what: "file", needed: min, available: file_len });
    }
    let trailer = Trailer::read_from_bytes(tail).map_err(|_| FormatError::Truncated {
        what: "trailer",
        needed: Trailer::LEN as u64,
        available: tail.len() as u64,
    })?;
    if trailer.magic != TRAILER_MAGIC {
        return Err(FormatError::invalid("trailer", "bad end magic (file truncated or damaged?)"));
    }
    if trailer.version.get() != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            found: trailer.version.get(),
            supported: FORMAT_VERSION,
        });
    }
    if trailer.reserved.get() != 0 {
        return Err(FormatError::invalid("trailer", "reserved bytes not zero"));
    }
    let (offset, len) = (trailer.directory_offset.get(), trailer.directory_len.get());
    let end = offset.checked_add(len).and_then(|e| e.checked_add(Trailer::LEN as u64));
    if offset < FileHeader::LEN as u64 || end != Some(file_len) {
        return Err(FormatError::invalid(
            "trailer",
            format!("directory at {offset}+{len} does not end where the trailer starts"),
        ));
    }
    Ok(DirectoryLocation { offset, len, crc32c: trailer.directory_crc32c.get() })
}

/// A cursor over the directory's sections that never reads out of bounds.
struct Sections<'a> {
    bytes: &'a [u8],
}

impl<'a> Sections<'a> {
    fn take(&mut self, what: &'static str, len: u64) -> Result<&'a [u8]> {
        let available = self.bytes.len() as u64;
        if len > available {
            return Err(FormatError::Truncated { what, needed: len, available });
        }
        let (head, rest) = self.bytes.split_at(len as usize);
        self.bytes = rest;
        Ok(head)
    }

    fn records<T: FromBytes + zerocopy::KnownLayout + zerocopy::Immutable>(
        &mut self,
        what: &'static str,
        count: u32,
        size: usize,
    ) -> Result<&'a [T]> {
        let len = u64::from(count) * size as u64;
        let bytes = self.take(what, len)?;
        <[T]>::ref_from_bytes(bytes).map_err(|_| FormatError::invalid(what, "bad record size"))
    }
}

fn range<'a>(bytes: &'a [u8], offset: u64, len: u64, what: &'static str) -> Result<&'a [u8]> {
    offset
        .checked_add(len)
        .filter(|&end| end <= bytes.len() as u64)
        .map(|end| &bytes[offset as usize..end as usize])
        .ok_or_else(|| FormatError::invalid(what, format!("range {offset}+{len} out of bounds")))
}

/// Parses and validates the directory bytes `dir`, located by `loc` in a file.
pub fn parse_directory(dir: &[u8], loc: DirectoryLocation) -> Result<Directory> {
    if dir.len() as u64 != loc.len {
        return Err(FormatError::Truncated {
            what: "directory",
            needed: loc.len,
            available: dir.len() as u64,
        });
    }
    let computed = crate::crc32c(dir);
    if computed != loc.crc32c {
        return Err(FormatError::Checksum {
            what: "directory".into(),
            stored: loc.crc32c,
            computed,
        });
    }
    let mut s = Sections { bytes: dir };
    let header = DirectoryHeader::read_from_bytes(s.take("directory header", 64)?)
        .map_err(|_| FormatError::invalid("directory header", "bad size"))?;
    let source_kind = SourceKind::from_code(header.source_kind).ok_or_else(|| {
        FormatError::invalid("directory header", format!("source kind {}", header.source_kind))
    })?;
    if header.reserved_a != [0; 6] || header.reserved_b != [0; 8] {
        return Err(FormatError::invalid("directory header", "reserved bytes are not zero"));
    }
    let gaps_codec = GapsCodec::from_code(header.gaps_codec).ok_or_else(|| {
        FormatError::invalid("directory header", format!("gaps codec {}", header.gaps_codec))
    })?;
    let (gaps_len, gaps_stored_len) = (header.gaps_len.get(), header.gaps_stored_len.get());
    let gaps_section_len = match gaps_codec {
        GapsCodec::Stored if gaps_stored_len == 0 => gaps_len,
        GapsCodec::Zstd
            if gaps_stored_len > 0 && gaps_len / gaps_stored_len < MAX_GAPS_EXPANSION =>
        {
            gaps_stored_len
        }
        _ => {
            return Err(FormatError::invalid(
                "directory header",
                format!("{gaps_len} bytes of gaps stored in {gaps_stored_len} with {gaps_codec:?}"),
            ));
        }
    };
    let tensors: &[TensorRecord] = s.records("tensor records", header.n_tensors.get(), 64)?;
    let planes: &[PlaneRecord] = s.records("plane records", header.n_planes.get(), 64)?;
    let units: &[UnitRecord] = s.records("unit records", header.n_units.get(), 24)?;
    let dims_bytes = s.take("dims", u64::from(header.n_dims.get()) * 8)?;
    let names = s.take("names", u64::from(header.names_len.get()))?;
    let tables = s.take("tables", u64::from(header.tables_len.get()))?;
    let gaps = s.take("gaps", gaps_section_len)?;
    if !s.bytes.is_empty() {
        return Err(FormatError::invalid("directory", format!("{} trailing bytes", s.bytes.len())));
    }
    let dims: Vec<u64> = dims_bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk")))
        .collect();

    let mut out = Directory {
        source_kind,
        source_len: header.source_len.get(),
        tensors: Vec::with_capacity(tensors.len()),
        gaps: gaps::unpack(gaps_codec, gaps, gaps_len)?,
    };
    let mut next_plane = 0u64;
    let mut next_unit = 0u64;
    let mut next_table = 0u64;
    for (index, t) in tensors.iter().enumerate() {
        let tensor = parse_tensor(index, t, &dims, names, planes, units, tables, loc.offset)
            .map_err(|e| match e {
                FormatError::Invalid { what, detail } => {
                    FormatError::Invalid { what, detail: format!("tensor {index}: {detail}") }
                }
                other => other,
            })?;
        if u64::from(t.first_plane.get()) != next_plane {
            return Err(FormatError::invalid("tensor record", "planes not in order"));
        }
        // Units and tables are each used by one plane, in plane order; raw planes use none.
        for (p, record) in tensor.planes.iter().zip(&planes[next_plane as usize..]) {
            let (first_unit, tables_offset, tables_len) = (
                u64::from(record.first_unit.get()),
                u64::from(record.tables_offset.get()),
                u64::from(record.tables_len.get()),
            );
            let in_order = match &p.encoding {
                PlaneEncoding::Rans { units, .. } => {
                    let in_order = first_unit == next_unit && tables_offset == next_table;
                    next_unit += units.len() as u64;
                    next_table += tables_len;
                    in_order
                }
                PlaneEncoding::Raw { .. } => (first_unit, tables_offset, tables_len) == (0, 0, 0),
            };
            if !in_order {
                return Err(FormatError::invalid(
                    "plane record",
                    format!("tensor {index}: units or tables not in plane order"),
                ));
            }
        }
        next_plane += u64::from(t.n_planes.get());
        out.tensors.push(tensor);
    }
    if next_plane != planes.len() as u64
        || next_unit != units.len() as u64
        || next_table != tables.len() as u64
    {
        return Err(FormatError::invalid(
            "directory",
            "planes, units or tables not all used exactly once",
        ));
    }
    validate_layout(&out, loc.offset)?;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn parse_tensor(
    index: usize,
    t: &TensorRecord,
    dims: &[u64],
    names: &[u8],
    planes: &[PlaneRecord],
    units: &[UnitRecord],
    tables: &[u8],
    payload_end: u64,
) -> Result<TensorEntry> {
    let name = range(names, t.name_offset.get().into(), t.name_len.get().into(), "tensor name")?;
    let name = std::str::from_utf8(name)
        .map_err(|_| FormatError::invalid("tensor name", format!("tensor {index}: not UTF-8")))?;
    if t.ndim > 8 || t.flags != 0 || t.reserved != [0; 12] {
        return Err(FormatError::invalid("tensor record", "ndim > 8 or unknown flags"));
    }
    let dims_start = u64::from(t.dims_offset.get());
    let tensor_dims = dims_start
        .checked_add(u64::from(t.ndim))
        .filter(|&end| end <= dims.len() as u64)
        .map(|end| dims[dims_start as usize..end as usize].to_vec())
        .ok_or_else(|| FormatError::invalid("tensor record", "dims out of range"))?;
    let dtype = Dtype::from_code(t.dtype)
        .ok_or_else(|| FormatError::invalid("tensor record", format!("dtype code {}", t.dtype)))?;
    let transform = Transform::from_code(t.transform).ok_or_else(|| {
        FormatError::invalid("tensor record", format!("transform code {}", t.transform))
    })?;
    let (rows, cols) = matrix_shape(&tensor_dims)
        .ok_or_else(|| FormatError::invalid("tensor record", "element count overflows"))?;
    let row_whole_blocks = dtype.block().is_none_or(|(per_block, _)| cols % per_block == 0);
    let bytes = dtype.storage_len(rows * cols).filter(|_| row_whole_blocks);
    if !transform.supports(dtype) {
        return Err(FormatError::invalid(
            "tensor record",
            format!("{} on {dtype}", transform.name()),
        ));
    }
    if bytes != Some(t.source_len.get()) {
        return Err(FormatError::invalid(
            "tensor record",
            format!("shape {tensor_dims:?} of {dtype} is not {} bytes", t.source_len.get()),
        ));
    }
    // A tensor with no rows may have any number of columns: where its planes' widths are
    // counted in bytes (whole rows, or block fields), that count must not overflow.
    let widths_in_bytes = matches!(transform, Transform::Identity | Transform::BlockFields);
    if widths_in_bytes && dtype.storage_len(cols).is_none() {
        return Err(FormatError::invalid("tensor record", "row size overflows"));
    }
    let shapes = transform.plane_shapes(dtype, rows, cols);
    let first = u64::from(t.first_plane.get());
    if u64::from(t.n_planes.get()) != shapes.len() as u64
        || first + shapes.len() as u64 > planes.len() as u64
    {
        return Err(FormatError::invalid("tensor record", "wrong plane count for its transform"));
    }
    let mut plane_entries = Vec::with_capacity(shapes.len());
    for (i, &(rows, cols)) in shapes.iter().enumerate() {
        let p = &planes[first as usize + i];
        if !transform.plane_shape_fits((rows, cols), (p.rows.get(), p.cols.get())) {
            return Err(FormatError::invalid("plane record", "shape does not match its tensor"));
        }
        plane_entries.push(parse_plane(p, units, tables, payload_end)?);
    }
    Ok(TensorEntry {
        name: name.to_owned(),
        dtype,
        dims: tensor_dims,
        transform,
        source_offset: t.source_offset.get(),
        source_len: t.source_len.get(),
        crc32c: t.crc32c.get(),
        order0_bytes: t.order0_bytes.get(),
        planes: plane_entries,
    })
}

fn parse_plane(
    p: &PlaneRecord,
    units: &[UnitRecord],
    tables: &[u8],
    payload_end: u64,
) -> Result<PlaneEntry> {
    let invalid = |detail: &str| FormatError::invalid("plane record", detail.to_owned());
    let (rows, cols) = (p.rows.get(), p.cols.get());
    let len = rows.checked_mul(cols).ok_or_else(|| invalid("size overflows"))?;
    if p.flags & !(PlaneRecord::FLAG_BIAS128 | PlaneRecord::FLAG_COLUMN_CLASSES) != 0 {
        return Err(invalid("unknown flags"));
    }
    let column_classes = p.flags & PlaneRecord::FLAG_COLUMN_CLASSES != 0;
    if column_classes && (p.encoding != 1 || p.n_tables < 2) {
        return Err(invalid("column classes without several tables"));
    }
    let (payload_offset, payload_len) = (p.payload_offset.get(), p.payload_len.get());
    if payload_offset % PAYLOAD_ALIGN != 0
        || payload_offset < FileHeader::LEN as u64
        || payload_offset.checked_add(payload_len).is_none_or(|end| end > payload_end)
    {
        return Err(invalid("payload outside the payload region or misaligned"));
    }
    let entry = |encoding| PlaneEntry {
        rows,
        cols,
        tile_rows: p.tile_rows.get(),
        tile_cols: p.tile_cols.get(),
        bias128: p.flags & PlaneRecord::FLAG_BIAS128 != 0,
        payload_offset,
        payload_len,
        encoding,
    };
    match p.encoding {
        0 => {
            if payload_len != len || p.n_units.get() != 0 || p.n_tables != 0 || p.prob_bits != 0 {
                return Err(invalid("raw plane with units, tables or a wrong length"));
            }
            Ok(entry(PlaneEncoding::Raw { crc32c: p.raw_crc32c.get() }))
        }
        1 => {
            let prob_bits = p.prob_bits;
            if !(rans::MIN_PROB_BITS..=rans::MAX_PROB_BITS).contains(&prob_bits) {
                return Err(invalid("prob_bits outside 8..=12"));
            }
            if len > 0 && (p.tile_rows.get() == 0 || p.tile_cols.get() == 0) {
                return Err(invalid("zero tile size"));
            }
            let tile_area = u64::from(p.tile_rows.get()) * u64::from(p.tile_cols.get());
            if tile_area > MAX_TILE_SYMBOLS {
                return Err(invalid("tile larger than 2^22 symbols"));
            }
            let (gr, gc) = tile_grid(rows, cols, p.tile_rows.get(), p.tile_cols.get());
            let n_tiles = gr.checked_mul(gc).ok_or_else(|| invalid("tile count overflows"))?;
            if n_tiles != u64::from(p.n_units.get())
                || !(1..=rans::MAX_TABLES).contains(&p.n_tables)
            {
                return Err(invalid("unit count differs from tile count, or not 1..=16 tables"));
            }
            let mut table_bytes =
                range(tables, p.tables_offset.get().into(), p.tables_len.get().into(), "tables")?;
            let mut parsed_tables = Vec::with_capacity(usize::from(p.n_tables));
            for _ in 0..p.n_tables {
                let (freqs, used) = read_table(table_bytes, prob_bits)?;
                parsed_tables.push(freqs);
                table_bytes = &table_bytes[used..];
            }
            let (row_tables, col_tables) = if column_classes {
                (Vec::new(), read_col_tables(table_bytes, cols, p.n_tables)?)
            } else if p.n_tables > 1 {
                (read_row_tables(table_bytes, rows, p.n_tables)?, Vec::new())
            } else if table_bytes.is_empty() {
                (Vec::new(), Vec::new())
            } else {
                return Err(invalid("tables range has trailing bytes"));
            };
            let first = u64::from(p.first_unit.get());
            let records = first
                .checked_add(n_tiles)
                .filter(|&end| end <= units.len() as u64)
                .map(|end| &units[first as usize..end as usize])
                .ok_or_else(|| invalid("units out of range"))?;
            let mut plane = entry(PlaneEncoding::Rans {
                prob_bits,
                tables: parsed_tables,
                row_tables,
                col_tables,
                units: Vec::with_capacity(records.len()),
            });
            let mut parsed_units = Vec::with_capacity(records.len());
            let mut next_free = 0u64;
            for (i, u) in records.iter().enumerate() {
                let unit = parse_unit(u)?;
                let (_, _, h, w) = plane.tile_rect(i);
                let max_len = rans::STATES_BYTES as u64 + 2 * h * w;
                if unit.offset % UNIT_ALIGN != 0
                    || unit.offset < next_free
                    || u64::from(unit.len) > max_len
                    || unit.offset.checked_add(u64::from(unit.len)).is_none_or(|e| e > payload_len)
                {
                    return Err(FormatError::invalid(
                        "unit record",
                        format!("unit {i}: misplaced, overlapping or too long"),
                    ));
                }
                next_free = unit.offset + u64::from(unit.len);
                parsed_units.push(unit);
            }
            if let PlaneEncoding::Rans { units, .. } = &mut plane.encoding {
                *units = parsed_units;
            }
            Ok(plane)
        }
        other => Err(invalid(&format!("encoding code {other}"))),
    }
}

/// The row-class map: one nibble per plane row (low nibble first), each `< n_tables`, filling
/// the rest of the plane's tables range exactly.
fn read_row_tables(bytes: &[u8], rows: u64, n_tables: u8) -> Result<Vec<u8>> {
    let invalid = |d: &str| FormatError::invalid("row tables", d.to_owned());
    if bytes.len() as u64 != rows.div_ceil(2) {
        return Err(invalid("map length differs from the plane's rows"));
    }
    let mut out = Vec::with_capacity(rows as usize);
    for &b in bytes {
        out.push(b & 0x0f);
        out.push(b >> 4);
    }
    if rows % 2 == 1 && out.pop() != Some(0) {
        return Err(invalid("unused nibble not zero"));
    }
    if out.iter().any(|&t| t >= n_tables) {
        return Err(invalid("row class beyond the plane's tables"));
    }
    Ok(out)
}

/// The column-class map: its period `p` (u16, `1..=cols` and dividing `cols`), then `p`
/// bytes, each `< n_tables`, filling the rest of the plane's tables range exactly.
fn read_col_tables(bytes: &[u8], cols: u64, n_tables: u8) -> Result<Vec<u8>> {
    let invalid = |d: &str| FormatError::invalid("column tables", d.to_owned());
    let (period, map) = match bytes {
        [lo, hi, map @ ..] => (u16::from_le_bytes([*lo, *hi]), map),
        _ => return Err(invalid("no period")),
    };
    if period == 0 || map.len() != usize::from(period) {
        return Err(invalid("map length differs from its period"));
    }
    if cols > 0 && !cols.is_multiple_of(u64::from(period)) {
        return Err(invalid("period does not divide the plane's columns"));
    }
    if map.iter().any(|&t| t >= n_tables) {
        return Err(invalid("column class beyond the plane's tables"));
    }
    Ok(map.to_vec())
}

fn parse_unit(u: &UnitRecord) -> Result<UnitEntry> {
    let predictor = Predictor::from_code(u.predictor)
        .ok_or_else(|| FormatError::invalid("unit record", format!("predictor {}", u.predictor)))?;
    let len = u.len.get();
    if u.reserved != [0; 7] || (len as usize) < rans::STATES_BYTES || !len.is_multiple_of(2) {
        return Err(FormatError::invalid("unit record", "bad table, length or reserved bytes"));
    }
    Ok(UnitEntry { offset: u.offset.get(), len, crc32c: u.crc32c.get(), predictor })
}

/// Checks that tensors tile the source exactly with the gaps, and that payloads do not overlap.
fn validate_layout(dir: &Directory, payload_end: u64) -> Result<()> {
    let mut cursor = 0u64;
    let mut covered = 0u64;
    for t in &dir.tensors {
        if t.source_offset < cursor {
            return Err(FormatError::invalid("directory", format!("tensor {:?} overlaps", t.name)));
        }
        cursor = t
            .source_offset
            .checked_add(t.source_len)
            .filter(|&end| end <= dir.source_len)
            .ok_or_else(|| FormatError::invalid("directory", "tensor past the source's end"))?;
        covered += t.source_len;
    }
    if covered.checked_add(dir.gaps.len() as u64) != Some(dir.source_len) {
        return Err(FormatError::invalid("directory", "tensors and gaps do not cover the source"));
    }
    let mut spans: Vec<(u64, u64)> = dir
        .tensors
        .iter()
        .flat_map(|t| &t.planes)
        .filter(|p| p.payload_len > 0)
        .map(|p| (p.payload_offset, p.payload_offset + p.payload_len))
        .collect();
    spans.sort_unstable();
    if spans.windows(2).any(|w| w[1].0 < w[0].1) || spans.last().is_some_and(|s| s.1 > payload_end)
    {
        return Err(FormatError::invalid("directory", "plane payloads overlap"));
    }
    Ok(())
}

impl Directory {
    /// Parses the header, trailer and directory of a whole file held in memory.
    pub fn from_file_bytes(file: &[u8]) -> Result<Directory> {
        parse_header(file)?;
        let len = file.len() as u64;
        let tail = file.get(file.len().saturating_sub(Trailer::LEN)..).unwrap_or(&[]);
        let loc = parse_trailer(tail, len)?;
        parse_directory(&file[loc.offset as usize..(loc.offset + loc.len) as usize], loc)
    }

    /// Serialises the directory (without header or trailer).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_bytes_with(None)
    }

    /// [`Directory::to_bytes`], with the gaps already packed where `packed` holds them (gaps
    /// other than `self.gaps` are packed again): the same bytes.
    pub fn to_bytes_with(&self, packed: Option<&PackedGaps>) -> Vec<u8> {
        let mut tensors = Vec::new();
        let mut planes = Vec::new();
        let mut units = Vec::new();
        let mut dims = Vec::new();
        let mut names = Vec::new();
        let mut tables = Vec::new();
        for t in &self.tensors {
            tensors.push(TensorRecord {
                name_offset: (names.len() as u32).into(),
                name_len: (t.name.len() as u32).into(),
                dims_offset: ((dims.len() / 8) as u32).into(),
                ndim: t.dims.len() as u8,
                dtype: t.dtype.code(),
                transform: t.transform as u8,
                flags: 0,
                first_plane: (planes.len() as u32).into(),
                n_planes: (t.planes.len() as u32).into(),
                source_offset: t.source_offset.into(),
                source_len: t.source_len.into(),
                crc32c: t.crc32c.into(),
                order0_bytes: t.order0_bytes.into(),
                reserved: [0; 12],
            });
            names.extend_from_slice(t.name.as_bytes());
            for d in &t.dims {
                dims.extend_from_slice(&d.to_le_bytes());
            }
            for p in &t.planes {
                let mut record = PlaneRecord {
                    rows: p.rows.into(),
                    cols: p.cols.into(),
                    tile_rows: p.tile_rows.into(),
                    tile_cols: p.tile_cols.into(),
                    flags: if p.bias128 { PlaneRecord::FLAG_BIAS128 } else { 0 }
                        | match &p.encoding {
                            PlaneEncoding::Rans { col_tables, .. } if !col_tables.is_empty() => {
                                PlaneRecord::FLAG_COLUMN_CLASSES
                            }
                            _ => 0,
                        },
                    payload_offset: p.payload_offset.into(),
                    payload_len: p.payload_len.into(),
                    ..Default::default()
                };
                match &p.encoding {
                    PlaneEncoding::Raw { crc32c } => record.raw_crc32c = (*crc32c).into(),
                    PlaneEncoding::Rans {
                        prob_bits,
                        tables: freqs,
                        row_tables,
                        col_tables,
                        units: plane_units,
                    } => {
                        record.encoding = 1;
                        record.prob_bits = *prob_bits;
                        record.n_tables = freqs.len() as u8;
                        record.tables_offset = (tables.len() as u32).into();
                        for f in freqs {
                            write_table(f, &mut tables);
                        }
                        if !col_tables.is_empty() {
                            tables.extend_from_slice(&(col_tables.len() as u16).to_le_bytes());
                            tables.extend_from_slice(col_tables);
                        } else if freqs.len() > 1 {
                            tables.extend(
                                row_tables
                                    .chunks(2)
                                    .map(|pair| pair[0] | pair.get(1).map_or(0, |&hi| hi << 4)),
                            );
                        }
                        record.tables_len =
                            ((tables.len() - record.tables_offset.get() as usize) as u32).into();
                        record.first_unit = (units.len() as u32).into();
                        record.n_units = (plane_units.len() as u32).into();
                        units.extend(plane_units.iter().map(|u| UnitRecord {
                            offset: u.offset.into(),
                            len: u.len.into(),
                            crc32c: u.crc32c.into(),
                            predictor: u.predictor as u8,
                            reserved: [0; 7],
                        }));
                    }
                }
                planes.push(record);
            }
        }
        let packed_here;
        let packed = match packed {
            Some(p) if p.is_of(&self.gaps) => p,
            _ => {
                packed_here = PackedGaps::new(&self.gaps);
                &packed_here
            }
        };
        let (gaps_codec, packed_gaps) = (packed.codec(), packed.bytes());
        let header = DirectoryHeader {
            n_tensors: (tensors.len() as u32).into(),
            n_planes: (planes.len() as u32).into(),
            n_units: (units.len() as u32).into(),
            n_dims: ((dims.len() / 8) as u32).into(),
            names_len: (names.len() as u32).into(),
            tables_len: (tables.len() as u32).into(),
            gaps_len: (self.gaps.len() as u64).into(),
            source_len: self.source_len.into(),
            source_kind: self.source_kind as u8,
            gaps_codec: gaps_codec as u8,
            reserved_a: [0; 6],
            gaps_stored_len: match gaps_codec {
                GapsCodec::Stored => 0,
                GapsCodec::Zstd => packed_gaps.len() as u64,
            }
            .into(),
            reserved_b: [0; 8],
        };
        let mut out = Vec::new();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(tensors.as_bytes());
        out.extend_from_slice(planes.as_bytes());
        out.extend_from_slice(units.as_bytes());
        out.extend_from_slice(&dims);
        out.extend_from_slice(&names);
        out.extend_from_slice(&tables);
        out.extend_from_slice(packed_gaps);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_counts_are_zero_with_a_zero_dim_in_any_order() {
        let big = [405_495_037_452_650_370u64, 9_007_199_254_740_992_000, 0, 0];
        assert_eq!(element_count(&big), Some(0));
        let mut reversed = big;
        reversed.reverse();
        assert_eq!(element_count(&reversed), Some(0));
        assert_eq!(matrix_shape(&big), Some((0, 0)));
        assert_eq!(element_count(&[u64::MAX, 2]), None);
        assert_eq!(element_count(&[3, 5]), Some(15));
        assert_eq!(element_count(&[]), Some(1));
    }

    #[test]
    fn matrix_shapes() {
        assert_eq!(matrix_shape(&[]), Some((1, 1)));
        assert_eq!(matrix_shape(&[5]), Some((1, 5)));
        assert_eq!(matrix_shape(&[2, 3, 4]), Some((6, 4)));
        assert_eq!(matrix_shape(&[0, 4]), Some((0, 4)));
        assert_eq!(matrix_shape(&[1 << 40, 1 << 30]), None);
    }

    #[test]
    fn tile_grids() {
        assert_eq!(tile_grid(0, 10, 4, 4), (0, 0));
        assert_eq!(tile_grid(9, 10, 4, 4), (3, 3));
        assert_eq!(tile_grid(8, 8, 4, 4), (2, 2));
    }
}
