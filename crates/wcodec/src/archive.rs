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

    /// Predictor names in the order of `TensorSummary::predictors`.
    pub fn predictor_names() -> [&'static str; 5] {
        Predictor::ALL.map(Predictor::name)
    }
}
