//! An opened .wcz: its directory, per-tensor summaries, and decoding of single tensors.

use std::path::Path;

use serde::Serialize;
use wcodec_format::{Directory, PlaneEncoding, Predictor, TensorEntry};

use std::fs::File;
use std::io::Write;

use wcodec_format::records::{FileHeader, Trailer};

use crate::Error;
use crate::files::read_exact_at;

/// A .wcz file with its directory parsed and validated. Payloads are read (with positioned
/// reads, not a memory map) only when a tensor is decoded, one tensor at a time, so memory
/// stays bounded by the largest tensor whatever the file's size.
#[derive(Debug)]
pub struct Archive {
    file: File,
    path: std::path::PathBuf,
    len: u64,
    directory: Directory,
    /// Bytes of the file's gaps section (compressed or not).
    gaps_stored: u64,
    /// Bytes read from the file so far (header, trailer, directory, tensor windows).
    bytes_read: std::sync::atomic::AtomicU64,
}

/// Output bytes [`Archive::write_source`] lets be in flight to its writer thread besides the
/// span being decoded: two spans of up to 32 MiB, or two tensors of up to 128 MiB, overlap.
pub const OVERLAP_BYTES: usize = 256 << 20;

/// What `wcodec info` prints of a tensor.
#[derive(Clone, Debug, Serialize)]
pub struct TensorSummary {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub original_bytes: u64,
    pub stored_bytes: u64,
    pub ratio: f64,
    pub bits_per_weight: f64,
    /// Original bytes over the order-0 entropy bound of the tensor's planes.
    pub order0_bound_ratio: f64,
    /// Units that chose each predictor, in the order none, left, top, avg, paeth.
    pub predictors: [u64; 5],
    pub tables: usize,
    /// "rans" or "raw" per plane.
    pub planes: Vec<&'static str>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl TensorSummary {
    pub fn of(t: &TensorEntry) -> TensorSummary {
        let stored = t.stored_len();
        let mut predictors = [0u64; 5];
        let mut tables = 0;
        let mut planes = Vec::new();
        for p in &t.planes {
            match &p.encoding {
                PlaneEncoding::Raw { .. } => planes.push("raw"),
                PlaneEncoding::Rans { units, tables: ts, .. } => {
                    planes.push("rans");
                    tables += ts.len();
                    for u in units {
                        predictors[u.predictor as usize] += 1;
                    }
                }
            }
        }
        let elements = t.elements();
        TensorSummary {
            name: t.name.clone(),
            dtype: t.dtype.to_string(),
            shape: t.dims.clone(),
            original_bytes: t.source_len,
            stored_bytes: stored,
            ratio: ratio(t.source_len, stored),
            bits_per_weight: if elements == 0 {
                0.0
            } else {
                stored as f64 * 8.0 / elements as f64
            },
            order0_bound_ratio: ratio(t.source_len, t.order0_bytes),
            predictors,
            tables,
            planes,
        }
    }
}

/// One row of `Archive::layer_report`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LayerRow {
    pub layer: &'static str,
    pub tensors: usize,
    /// Bytes of these tensors in the source file (e.g. the INT8 file).
    pub source_bytes: u64,
    /// Bytes they had before quantization (from the `wcodec.int8_from` metadata that
    /// `wcodec quantize` writes; the source bytes where there is none).
    pub original_bytes: u64,
    /// Bytes stored in the .wcz.
    pub stored_bytes: u64,
}

impl Archive {
    /// Opens and validates a .wcz file (reads only its header, trailer and directory), within
    /// the default [`crate::Limits`].
    pub fn open(path: &Path) -> Result<Archive, Error> {
        Self::open_with_limits(path, &crate::Limits::default())
    }

    /// `open`, refusing a file whose original would exceed `limits` (a hostile directory can
    /// claim a huge output from a small file; nothing is allocated from the claim).
    pub fn open_with_limits(path: &Path, limits: &crate::Limits) -> Result<Archive, Error> {
        let io = |source| Error::Io { path: path.to_owned(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let read = |offset: u64, len: u64| -> Result<Vec<u8>, Error> {
            let mut buf = vec![0u8; len as usize];
            read_exact_at(&file, &mut buf, offset).map_err(io)?;
            Ok(buf)
        };
        let min = (FileHeader::LEN + Trailer::LEN) as u64;
        if len < min {
            return Err(wcodec_format::FormatError::Truncated {
                what: "file",
                needed: min,
                available: len,
            }
            .into());
        }
        wcodec_format::parse_header(&read(0, FileHeader::LEN as u64)?)?;
        let loc = wcodec_format::parse_trailer(
            &read(len - Trailer::LEN as u64, Trailer::LEN as u64)?,
            len,
        )?;
        let directory_bytes = read(loc.offset, loc.len)?;
        let directory = wcodec_format::parse_directory(&directory_bytes, loc)?;
        limits.check(|| path.display().to_string(), directory.source_len, len)?;
        let gaps_stored = wcodec_format::gaps::section_len(&directory_bytes);
        let bytes_read = (FileHeader::LEN + Trailer::LEN) as u64 + loc.len;
        Ok(Archive {
            file,
            path: path.to_owned(),
            len,
            directory,
            gaps_stored,
            bytes_read: bytes_read.into(),
        })
    }

    /// Bytes read from the file so far: random access reads only what it decodes.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// Bytes the source's gaps (header, metadata, padding) take in the file, compressed with
    /// zstd where that paid (`directory().gaps` holds them as they were).
    pub fn gaps_stored_len(&self) -> u64 {
        self.gaps_stored
    }

    pub fn summaries(&self) -> Vec<TensorSummary> {
        self.directory.tensors.iter().map(TensorSummary::of).collect()
    }

    pub fn find(&self, name: &str) -> Result<&TensorEntry, Error> {
        self.directory
            .tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::NoSuchTensor(name.to_owned()))
    }

    /// Reads the span of the file holding a tensor's planes, and the tensor's entry with its
    /// payload offsets made relative to that span.
    fn window(&self, tensor: &TensorEntry) -> Result<(Vec<u8>, TensorEntry), Error> {
        let start = tensor.planes.iter().map(|p| p.payload_offset).min().unwrap_or(0);
        let end = tensor.planes.iter().map(|p| p.payload_offset + p.payload_len).max().unwrap_or(0);
        let mut bytes = vec![0u8; (end - start) as usize];
        read_exact_at(&self.file, &mut bytes, start)
            .map_err(|source| Error::Io { path: self.path.clone(), source })?;
        self.bytes_read.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut rebased = tensor.clone();
        for plane in &mut rebased.planes {
            plane.payload_offset -= start;
        }
        Ok((bytes, rebased))
    }

    /// Decodes one tensor's original bytes, reading only its payload.
    pub fn decode(&self, tensor: &TensorEntry) -> Result<Vec<u8>, Error> {
        let (bytes, rebased) = self.window(tensor)?;
        // `open` checked the whole source (so this tensor) against the limits.
        let mut out = vec![0u8; tensor.source_len as usize];
        wcodec_decode::decode_tensor_into(
            &bytes,
            &rebased,
            wcodec_decode::Parallelism::Rayon,
            &mut out,
        )?;
        Ok(out)
    }

    /// Writes the original file to `sink` (named `sink_path` in errors), tensor by tensor with
    /// the gaps between them; `progress` gets the bytes written so far and the total.
    ///
    /// Tensors are decoded in spans of up to [`wcodec_decode::SPAN_BYTES`] of source (or one
    /// larger tensor): one positioned read of the span's payloads into a reused buffer, every
    /// band of the span decoded in parallel into an output buffer, which a writer thread then
    /// writes while the next span decodes (writing to a file is mostly the kernel copying into
    /// the page cache, or waiting on the disk: the decode hides behind it). Two output buffers
    /// take turns while the spans in flight are within [`OVERLAP_BYTES`]; a larger span waits
    /// for the writer, so memory stays within the largest span plus that budget.
    pub fn write_source<W: Write + Send>(
        &self,
        sink: W,
        sink_path: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<W, Error> {
        let spans = wcodec_decode::SPAN_BYTES;
        self.write_source_in_spans(sink, sink_path, progress, spans, OVERLAP_BYTES)
    }

    /// [`write_source`](Self::write_source) with spans of about `span_bytes` and `overlap_bytes`
    /// in flight: for tests of the pipeline on small files.
    #[doc(hidden)]
    pub fn write_source_in_spans<W: Write + Send>(
        &self,
        sink: W,
        sink_path: &Path,
        progress: &mut dyn FnMut(u64, u64),
        span_bytes: u64,
        overlap_bytes: usize,
    ) -> Result<W, Error> {
        let io = |source| Error::Io { path: sink_path.to_owned(), source };
        std::thread::scope(|scope| {
            let (to_writer, spans) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(1);
            let (to_decoder, written) = std::sync::mpsc::channel::<Vec<u8>>();
            let writer = scope.spawn(move || -> std::io::Result<W> {
                let mut sink = sink;
                for (buf, len) in spans {
                    sink.write_all(&buf[..len])?;
                    // The decoder stops taking buffers back only when it has failed.
                    let _ = to_decoder.send(buf);
                }
                Ok(sink)
            });
            let budget = (span_bytes, overlap_bytes);
            let decoded = self.decode_spans(&to_writer, &written, progress, budget);
            // The writer ends once it has written what it was sent (or failed).
            drop(to_writer);
            let sink = match writer.join() {
                Ok(result) => result.map_err(io),
                Err(panic) => std::panic::resume_unwind(panic),
            };
            // A decode error comes first: the writer may only have stopped because of it.
            decoded?;
            let sink = sink?;
            progress(self.directory.source_len, self.directory.source_len);
            Ok(sink)
        })
    }

    /// The decoding side of [`write_source`](Self::write_source): decodes the spans in order
    /// into buffers sent to the writer (`to_writer`), which sends them back once written
    /// (`written`). Stops early, without an error of its own, if the writer has stopped.
    fn decode_spans(
        &self,
        to_writer: &std::sync::mpsc::SyncSender<(Vec<u8>, usize)>,
        written: &std::sync::mpsc::Receiver<Vec<u8>>,
        progress: &mut dyn FnMut(u64, u64),
        (span_bytes, overlap_bytes): (u64, usize),
    ) -> Result<(), Error> {
        let dir = &self.directory;
        let mut window = Vec::new();
        // Buffers not in flight, and the spans in flight: (source end, bytes), oldest first.
        let mut spare: Vec<Vec<u8>> = Vec::new();
        let mut in_flight = std::collections::VecDeque::new();
        let mut buffers = 0;
        for span in wcodec_decode::source_spans(dir, span_bytes) {
            let len = (span.end - span.start) as usize;
            // Take back what the writer is done with; wait for it while the spans in flight
            // and this one would exceed the budget, or while both buffers are in flight.
            loop {
                let busy: usize = in_flight.iter().map(|&(_, n)| n).sum();
                let must_wait = !in_flight.is_empty()
                    && (busy + len > overlap_bytes || (spare.is_empty() && buffers == 2));
                let returned =
                    if must_wait { written.recv().ok() } else { written.try_recv().ok() };
                let Some(buf) = returned else {
                    if must_wait {
                        // The writer has stopped (its error is reported by the caller).
                        return Ok(());
                    }
                    break;
                };
                spare.push(buf);
                let (end, _) = in_flight.pop_front().expect("a span in flight");
                progress(end, dir.source_len);
            }
            // The roomiest spare buffer; one that must grow first lets the others go.
            spare.sort_by_key(Vec::capacity);
            let mut out = match spare.pop() {
                Some(buf) => buf,
                None => {
                    buffers += 1;
                    Vec::new()
                }
            };
            if out.len() < len {
                buffers -= spare.len();
                spare.clear();
                // Nothing in it is kept: no copy of the old bytes when it grows.
                out.clear();
                out.resize(len, 0);
            }
            self.decode_span(&span, &mut window, &mut out[..len])?;
            if to_writer.send((out, len)).is_err() {
                return Ok(());
            }
            in_flight.push_back((span.end, len));
        }
        Ok(())
    }

    /// Decodes one span of the source into `out` (its bytes), reading its payloads into
    /// `window`.
    fn decode_span(
        &self,
        span: &wcodec_decode::SourceSpan,
        window: &mut Vec<u8>,
        out: &mut [u8],
    ) -> Result<(), Error> {
        let dir = &self.directory;
        let tensors = &dir.tensors[span.tensors.clone()];
        let planes = || tensors.iter().flat_map(|t| &t.planes);
        let start = planes().map(|p| p.payload_offset).min().unwrap_or(0);
        let end = planes().map(|p| p.payload_offset + p.payload_len).max().unwrap_or(0);
        let stored: u64 = planes().map(|p| p.payload_len).sum();
        if end - start > 2 * stored + (1 << 20) {
            // Payloads far apart (a file this crate did not write): tensor by tensor.
            let mut at = 0usize;
            let mut gap_pos = span.gaps.start;
            let mut cursor = span.start;
            for tensor in tensors {
                let gap = (tensor.source_offset - cursor) as usize;
                out[at..at + gap].copy_from_slice(&dir.gaps[gap_pos..gap_pos + gap]);
                (at, gap_pos) = (at + gap, gap_pos + gap);
                let bytes = self.decode(tensor)?;
                out[at..at + bytes.len()].copy_from_slice(&bytes);
                at += bytes.len();
                cursor = tensor.source_offset + tensor.source_len;
            }
            out[at..].copy_from_slice(&dir.gaps[gap_pos..span.gaps.end]);
            return Ok(());
        }
        // Every byte is read over: no zeroing when the window shrinks and grows again.
        let window_len = (end - start) as usize;
        if window.len() < window_len {
            window.clear();
            window.resize(window_len, 0);
        }
        let window = &mut window[..window_len];
        read_exact_at(&self.file, window, start)
            .map_err(|source| Error::Io { path: self.path.clone(), source })?;
        self.bytes_read.fetch_add(window_len as u64, std::sync::atomic::Ordering::Relaxed);
        let rebased: Vec<TensorEntry> = tensors
            .iter()
            .map(|t| {
                let mut t = t.clone();
                t.planes.iter_mut().for_each(|p| p.payload_offset -= start);
                t
            })
            .collect();
        let gaps = &dir.gaps[span.gaps.clone()];
        wcodec_decode::decode_source_span(window, &rebased, gaps, span.start, out)?;
        Ok(())
    }

    /// Decodes every tensor (checking every unit, final state and checksum) without writing
    /// anything; calls `progress` with the original bytes checked so far.
    pub fn verify(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<(), Error> {
        self.write_source(std::io::sink(), Path::new("(nothing)"), progress).map(drop)
    }

    /// The `__metadata__` of a safetensors source (its header is the first gap).
    pub fn source_metadata(&self) -> Option<std::collections::BTreeMap<String, String>> {
        if self.directory.source_kind != wcodec_format::SourceKind::Safetensors {
            return None;
        }
        let gaps = &self.directory.gaps;
        let n = u64::from_le_bytes(gaps.get(..8)?.try_into().ok()?);
        let header = gaps.get(8..8usize.checked_add(usize::try_from(n).ok()?)?)?;
        let json: serde_json::Value = serde_json::from_slice(header).ok()?;
        let meta = json.get("__metadata__")?.as_object()?;
        Some(meta.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
    }

    /// Bytes per layer type (embeddings, attention q/k/v/o, MLP gate/up/down, norms, lm head,
    /// scales, other), in `layers::LAYER_TYPES` order; types with no tensor are left out.
    pub fn layer_report(&self) -> Vec<LayerRow> {
        let from = self
            .source_metadata()
            .and_then(|m| m.get(crate::quantize::QUANTIZED_FROM_KEY).cloned())
            .and_then(|name| wcodec_format::Dtype::from_safetensors_name(&name));
        let mut rows: Vec<LayerRow> = crate::layers::LAYER_TYPES
            .iter()
            .map(|&layer| LayerRow { layer, ..Default::default() })
            .collect();
        for t in &self.directory.tensors {
            let layer = crate::layers::layer_type(&t.name);
            let row = rows.iter_mut().find(|r| r.layer == layer).expect("a known layer type");
            row.tensors += 1;
            row.source_bytes += t.source_len;
            row.stored_bytes += t.stored_len();
            row.original_bytes += match from {
                Some(dtype) if t.dtype == wcodec_format::Dtype::I8 => {
                    t.elements() * dtype.size() as u64
                }
                Some(_) if layer == "scales" => 0,
                _ => t.source_len,
            };
        }
        rows.retain(|r| r.tensors > 0);
        rows
    }

    /// Predictor names in the order of `TensorSummary::predictors`.
    pub fn predictor_names() -> [&'static str; 5] {
        Predictor::ALL.map(Predictor::name)
    }
}
