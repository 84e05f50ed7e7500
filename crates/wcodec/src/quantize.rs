//! Quantize, then compress: FP16/BF16/FP32 safetensors to symmetric absmax INT8 with f32
//! scales. This step is lossy (and says so in its report); the codec after it is not.

use std::collections::BTreeMap;

use half::{bf16, f16};
use wcodec_container::{
    SourceLayout, read_safetensors, read_safetensors_metadata, write_safetensors,
};
use wcodec_format::{Dtype, SourceKind};

use crate::Error;

/// The metadata key naming the dtype the INT8 tensors were quantized from.
pub const QUANTIZED_FROM_KEY: &str = "wcodec.int8_from";

/// One scale per tensor, or one per output channel (row of the matrix view).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    PerTensor,
    PerChannel,
}

/// What quantizing one tensor cost.
#[derive(Clone, Debug)]
pub struct QuantizedTensor {
    pub name: String,
    pub original: Dtype,
    pub dims: Vec<u64>,
    /// Largest |x - q * scale| over the tensor.
    pub max_abs_error: f32,
    /// Mean |x - q * scale|.
    pub mean_abs_error: f64,
}

/// What `quantize_int8` did: the tensors it quantized (others were copied unchanged).
#[derive(Clone, Debug, Default)]
pub struct QuantizeReport {
    pub tensors: Vec<QuantizedTensor>,
    pub copied: usize,
}

impl QuantizeReport {
    pub fn max_abs_error(&self) -> f32 {
        self.tensors.iter().map(|t| t.max_abs_error).fold(0.0, f32::max)
    }

    /// Mean absolute error over all quantized elements.
    pub fn mean_abs_error(&self) -> f64 {
        let (sum, n) = self.tensors.iter().fold((0.0, 0u64), |(s, n), t| {
            let count = wcodec_format::element_count(&t.dims).unwrap_or(0);
            (s + t.mean_abs_error * count as f64, n + count)
        });
        if n == 0 { 0.0 } else { sum / n as f64 }
    }
}

fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => {
            bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        }
        Dtype::F16 => {
            bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
        }
        Dtype::BF16 => {
            bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
        }
        _ => return None,
    })
}

/// Symmetric absmax INT8 of `values`: `scale = absmax / 127`, `q = round(x / scale)` (ties to
/// even), clamped to ±127; all zeros (or non-finite absmax) give scale 0. Returns the scale,
/// the codes, and the sum and max of the absolute errors.
fn quantize_block(values: &[f32], codes: &mut Vec<u8>) -> (f32, f64, f32) {
    let absmax = values.iter().filter(|v| v.is_finite()).fold(0f32, |m, v| m.max(v.abs()));
    let scale = absmax / 127.0;
    let (mut sum, mut max) = (0f64, 0f32);
    for &x in values {
        let q = if scale > 0.0 { (x / scale).round_ties_even().clamp(-127.0, 127.0) } else { 0.0 };
        let err = (x - q * scale).abs();
        sum += f64::from(err);
        max = max.max(err);
        codes.push(q as i8 as u8);
    }
    (scale, sum, max)
}

/// Quantizes every FP32/FP16/BF16 tensor of two or more dimensions of a safetensors file to
/// INT8 (same name) plus an f32 `<name>.scale` tensor (`[1]` per tensor, `[rows]` per
/// channel); other tensors (norms, biases, integers) are copied as they are. The metadata
/// keeps the source's and records the original dtype under `wcodec.int8_from`.
pub fn quantize_int8(
    source: &[u8],
    granularity: Granularity,
) -> Result<(Vec<u8>, QuantizeReport), Error> {
    let layout: SourceLayout = read_safetensors(source)?;
    let mut metadata: BTreeMap<String, String> =
        read_safetensors_metadata(source)?.unwrap_or_default();
    let mut report = QuantizeReport::default();
    let mut out: Vec<(String, Dtype, Vec<u64>, Vec<u8>)> = Vec::new();
    let mut from = None;
    for t in &layout.tensors {
        let bytes = &source[t.offset as usize..(t.offset + t.len) as usize];
        let values = (t.dims.len() >= 2).then(|| to_f32(t.dtype, bytes)).flatten();
        let Some(values) = values else {
            out.push((t.name.clone(), t.dtype, t.dims.clone(), bytes.to_vec()));
            report.copied += 1;
            continue;
        };
        from.get_or_insert(t.dtype);
        let cols = *t.dims.last().expect("two or more dims") as usize;
        let blocks: Vec<&[f32]> = match granularity {
            Granularity::PerTensor => vec![&values[..]],
            Granularity::PerChannel if cols > 0 => values.chunks(cols).collect(),
            Granularity::PerChannel => Vec::new(),
        };
        let mut codes = Vec::with_capacity(values.len());
        let (mut scales, mut sum, mut max) = (Vec::new(), 0f64, 0f32);
        for block in blocks {
            let (scale, s, m) = quantize_block(block, &mut codes);
            scales.extend_from_slice(&scale.to_le_bytes());
            sum += s;
            max = max.max(m);
        }
        report.tensors.push(QuantizedTensor {
            name: t.name.clone(),
            original: t.dtype,
            dims: t.dims.clone(),
            max_abs_error: max,
            mean_abs_error: if values.is_empty() { 0.0 } else { sum / values.len() as f64 },
        });
        let n_scales = (scales.len() / 4) as u64;
        out.push((t.name.clone(), Dtype::I8, t.dims.clone(), codes));
        out.push((format!("{}.scale", t.name), Dtype::F32, vec![n_scales], scales));
    }
    if let Some(dtype) = from {
        metadata.insert(QUANTIZED_FROM_KEY.into(), dtype.safetensors_name().into());
    }
    let refs: Vec<(&str, Dtype, &[u64], &[u8])> =
        out.iter().map(|(n, d, dims, b)| (n.as_str(), *d, dims.as_slice(), b.as_slice())).collect();
    let bytes = write_safetensors(&refs, Some(&metadata))?;
    debug_assert_eq!(wcodec_container::detect(&bytes), Some(SourceKind::Safetensors));
    Ok((bytes, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantizes_matrices_and_copies_the_rest() {
        let w: Vec<u8> = (0..6).flat_map(|i| (i as f32 * 0.5 - 1.0).to_le_bytes()).collect();
        let norm: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let source = write_safetensors(
            &[("w", Dtype::F32, &[2, 3], &w), ("norm", Dtype::F32, &[2], &norm)],
            None,
        )
        .unwrap();
        for granularity in [Granularity::PerTensor, Granularity::PerChannel] {
            let (bytes, report) = quantize_int8(&source, granularity).unwrap();
            let layout = read_safetensors(&bytes).unwrap();
            let names: Vec<_> = layout.tensors.iter().map(|t| (t.name.as_str(), t.dtype)).collect();
            assert!(names.contains(&("w", Dtype::I8)));
            assert!(names.contains(&("w.scale", Dtype::F32)));
            assert!(names.contains(&("norm", Dtype::F32)));
            assert_eq!(report.tensors.len(), 1);
            assert_eq!(report.copied, 1);
            // Values -1.0 .. 1.5 in steps of 0.5: the error is at most half a step.
            assert!(report.max_abs_error() <= 1.5 / 127.0 / 2.0 + 1e-6);
            let meta = read_safetensors_metadata(&bytes).unwrap().unwrap();
            assert_eq!(meta[QUANTIZED_FROM_KEY], "F32");
        }
    }
}
