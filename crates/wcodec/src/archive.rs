//! An opened .wcz: its directory, per-tensor summaries, and decoding of single tensors.

use std::path::Path;

use serde::Serialize;
use wcodec_decode::Parallelism;
use wcodec_format::{Directory, PlaneEncoding, Predictor, TensorEntry};

use crate::Error;
use crate::files::{Input, read_input};

/// A .wcz file, mapped and with its directory parsed and validated. Payloads are read only
/// when a tensor is decoded.
#[derive(Debug)]
pub struct Archive {
    bytes: Input,
    directory: Directory,
}

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
    /// Opens and validates a .wcz file (reads only its header, trailer and directory).
    pub fn open(path: &Path) -> Result<Archive, Error> {
        let bytes = read_input(path)?;
        let directory = Directory::from_file_bytes(&bytes)?;
        Ok(Archive { bytes, directory })
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn file_len(&self) -> u64 {
        self.bytes.len() as u64
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

    /// Decodes one tensor's original bytes, reading only its payload.
    pub fn decode(&self, tensor: &TensorEntry) -> Result<Vec<u8>, Error> {
        Ok(wcodec_decode::decode_tensor(&self.bytes, tensor)?)
    }

    /// Decodes every tensor (checking every unit, final state and checksum) without writing
    /// anything; calls `progress` with the original bytes checked so far.
    pub fn verify(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<(), Error> {
        let total = self.directory.source_len;
        wcodec_decode::rebuild_source(
            &self.bytes,
            &self.directory,
            Parallelism::Rayon,
            std::io::sink(),
            &mut |done| progress(done, total),
        )?;
        Ok(())
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
