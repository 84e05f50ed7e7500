//! Decoding on a GPU (crates/cuda): `decompress_path_gpu` rebuilds the original file from
//! tensors decoded in device memory, `bench_gpu` times the decode with CUDA events.
//!
//! Built without the `cuda` feature (or with it but without nvcc), or run on a machine with no
//! CUDA driver or GPU, both return `Error::GpuUnavailable` (exit code 5 in the CLI).

use std::io::Write;
use std::path::Path;

use wcodec_cuda::{BenchOptions, CudaDecoder, CudaError};

use crate::Error;
use crate::files::{read_input, write_atomically};

/// Decompressed bytes decoded per launch (and held on the device at once) by
/// `decompress_path_gpu`, unless one tensor alone is larger.
const BATCH_BYTES: u64 = 1 << 30;

/// Whether this build has the GPU kernels compiled in (`cuda` feature and nvcc at build time).
pub const GPU_BUILT: bool = wcodec_cuda::KERNELS_BUILT;

fn gpu_error(e: CudaError) -> Error {
    match e {
        CudaError::NotAvailable(why) => Error::GpuUnavailable(why),
        CudaError::Driver(why) => Error::GpuUnavailable(why),
        CudaError::Checksum { what, stored, computed } => {
            wcodec_decode::DecodeError::Checksum { what, stored, computed }.into()
        }
        other => Error::Corrupt(other.to_string()),
    }
}

fn open_gpu() -> Result<CudaDecoder, Error> {
    CudaDecoder::new(0).map_err(gpu_error)
}

/// Decompresses `input` (.wcz) into `output` on GPU 0: tensors are decoded in device memory
/// (batches of about 1 GiB, one launch each), copied back, checked against their CRC-32C and
/// written between the source's gaps, atomically as `decompress_path` writes. Returns the
/// bytes written.
pub fn decompress_path_gpu(
    input: &Path,
    output: &Path,
    force: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, Error> {
    let gpu = open_gpu()?;
    let archive = crate::Archive::open(input)?;
    let file = read_input(input)?;
    let dir = archive.directory();
    let total = dir.source_len;
    // Runs of consecutive tensors of about BATCH_BYTES each.
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0u64;
    for (i, t) in dir.tensors.iter().enumerate() {
        match batches.last_mut() {
            Some(b) if bytes + t.source_len <= BATCH_BYTES => b.push(i),
            _ => {
                batches.push(vec![i]);
                bytes = 0;
            }
        }
        bytes += t.source_len;
    }
    write_atomically(output, force, |w| {
        let io = |source| Error::Io { path: output.to_owned(), source };
        let (mut cursor, mut gap_pos) = (0u64, 0usize);
        for batch in &batches {
            let decoded = gpu.decode_tensors(&file, dir, batch).map_err(gpu_error)?;
            for d in decoded {
                let tensor = &dir.tensors[d.index];
                let gap = (tensor.source_offset - cursor) as usize;
                w.write_all(&dir.gaps[gap_pos..gap_pos + gap]).map_err(io)?;
                gap_pos += gap;
                // Copied back and written a window at a time, checked at its end.
                d.write_to(w).map_err(|e| match e {
                    CudaError::Io(source) => io(source),
                    other => gpu_error(other),
                })?;
                cursor = tensor.source_offset + tensor.source_len;
                progress(cursor, total);
            }
        }
        w.write_all(&dir.gaps[gap_pos..]).map_err(io)?;
        progress(total, total);
        Ok(total)
    })
}

/// What `bench_gpu` measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GpuBench {
    /// The GPU's name, e.g. "NVIDIA H100 80GB HBM3".
    pub device: String,
    /// The file's tensors were decoded this many times over in each launch.
    pub copies: usize,
    /// Decompressed bytes written per launch.
    pub output_bytes: u64,
    /// Compressed bytes read per launch.
    pub compressed_bytes: u64,
    /// Seconds per launch (median of `iters` launches timed with CUDA events).
    pub median_s: f64,
    /// Decompressed bytes per second at the median, in GB/s (10^9).
    pub gbps: f64,
    /// The tensors' bytes over the whole .wcz (directory included).
    pub ratio: f64,
}

/// Times the decode of every tensor of `path` on GPU 0 with CUDA events: `copies` copies of
/// the file decoded in one launch (0: enough to write at least 256 MiB, so that L2 does not
/// hold the output), after warm-up launches, median of `iters`; every output is then checked
/// against its CRC-32C.
pub fn bench_gpu(path: &Path, iters: usize, copies: usize) -> Result<GpuBench, Error> {
    let gpu = open_gpu()?;
    let archive = crate::Archive::open(path)?;
    let file = read_input(path)?;
    let dir = archive.directory();
    let which: Vec<usize> = (0..dir.tensors.len()).collect();
    let tensor_bytes: u64 = dir.tensors.iter().map(|t| t.source_len).sum();
    let copies = if copies > 0 {
        copies
    } else {
        (256u64 << 20).div_ceil(tensor_bytes.max(1)).clamp(1, 4096) as usize
    };
    let options = BenchOptions { iters: iters.max(1), copies, ..BenchOptions::default() };
    let report = gpu.bench(&file, dir, &which, &options).map_err(gpu_error)?.remove(0);
    Ok(GpuBench {
        device: report.device,
        copies,
        output_bytes: report.output_bytes,
        compressed_bytes: report.compressed_bytes,
        median_s: report.median_s,
        gbps: report.gbps,
        ratio: tensor_bytes as f64 / (file.len() as f64).max(1.0),
    })
}

/// What `load_gpu` measured: loading a file's tensors into device memory, the file already in
/// host memory (wall clock, medians; GB/s of tensor bytes, 10^9).
#[derive(Clone, Debug, serde::Serialize)]
pub struct GpuLoad {
    pub device: String,
    pub tensor_bytes: u64,
    /// Compressed bytes uploaded (staged payloads, alignment and pad).
    pub staged_bytes: u64,
    /// Plan, upload, launch and the kernel's checks, as `CudaDecoder::decode_all`.
    pub load_s: f64,
    pub load_gbps: f64,
    /// The same load with one launch after the whole upload instead of launches while it goes
    /// on (`PlanOptions::streamed_launch_bytes` 0), timed in turn with `load_s`.
    pub load_once_s: f64,
    /// The steps of the load launched once, each timed alone: name and seconds.
    pub steps: Vec<(String, f64)>,
    /// A load (launched while the bytes upload, for a file of several launch steps) as its
    /// threads went: the seconds from its start at which each stage was reached.
    pub streamed_marks: Vec<(String, f64)>,
    /// The same tensors uncompressed: through the decoder's pinned windows, and in one copy
    /// from ordinary memory.
    pub raw_upload_s: f64,
    pub raw_upload_gbps: f64,
    pub raw_pageable_s: f64,
    pub raw_pageable_gbps: f64,
    /// The file kept compressed in device memory (`CudaDecoder::keep`): the upload, the device
    /// memory it holds, and every tensor decoded from there.
    pub keep_s: f64,
    pub kept_bytes: u64,
    pub kept_decode_s: f64,
    pub kept_decode_gbps: f64,
    /// The largest tensor decoded alone: its name and bytes; seconds from host memory, from
    /// the kept file into new device memory, into a buffer allocated once, through a prepared
    /// decode launched and waited for, and through one queued 10 launches at a time (a launch).
    pub largest: Option<(String, u64, [f64; 5])>,
}

/// Times loading every tensor of `path` into the memory of GPU 0 (`iters` times, median)
/// against uploading the same tensors uncompressed; the tensors are checked against their
/// CRC-32C first.
pub fn load_gpu(path: &Path, iters: usize) -> Result<GpuLoad, Error> {
    let gpu = open_gpu()?;
    let archive = crate::Archive::open(path)?;
    let file = read_input(path)?;
    let dir = archive.directory();
    let which: Vec<usize> = (0..dir.tensors.len()).collect();
    let r = gpu.load_bench(&file, dir, &which, iters).map_err(gpu_error)?;
    let gbps = |s: f64| r.tensor_bytes as f64 / s / 1e9;
    Ok(GpuLoad {
        load_gbps: gbps(r.decode_s),
        raw_upload_gbps: gbps(r.raw_upload_s),
        raw_pageable_gbps: gbps(r.raw_pageable_s),
        load_s: r.decode_s,
        load_once_s: r.decode_once_s,
        device: r.device,
        tensor_bytes: r.tensor_bytes,
        staged_bytes: r.staged_bytes,
        steps: r.steps,
        streamed_marks: r.streamed_marks,
        raw_upload_s: r.raw_upload_s,
        raw_pageable_s: r.raw_pageable_s,
        keep_s: r.keep_s,
        kept_bytes: r.kept_bytes,
        kept_decode_s: r.kept_decode_s,
        kept_decode_gbps: gbps(r.kept_decode_s),
        largest: r.largest.map(|one| {
            let t = &dir.tensors[one.index];
            let times = [
                one.from_host_s,
                one.from_kept_s,
                one.into_buffer_s,
                one.prepared_s,
                one.prepared_queued_s,
            ];
            (t.name.clone(), t.source_len, times)
        }),
    })
}

/// The share of a file's plane bytes that sit in planes of several frequency tables (row
/// classes, which `compress` uses where they pay and `compress --for-gpu` never does). On a
/// GPU such planes decode at about a third of the speed: their tables (compact, a second
/// lookup a step) leave fewer blocks a multiprocessor, their large tiles fewer units, and each
/// row may switch table (H100, MiniLM int8: 318-337 GB/s with the CPU defaults against 870-880
/// with `--for-gpu` in the same call; docs/PERFORMANCE.md).
pub fn multi_table_share(dir: &wcodec_format::Directory) -> f64 {
    let (mut multi, mut all) = (0u64, 0u64);
    for plane in dir.tensors.iter().flat_map(|t| &t.planes) {
        let bytes = plane.rows.saturating_mul(plane.cols);
        all = all.saturating_add(bytes);
        if let wcodec_format::PlaneEncoding::Rans { tables, .. } = &plane.encoding
            && tables.len() > 1
        {
            multi = multi.saturating_add(bytes);
        }
    }
    if all == 0 { 0.0 } else { multi as f64 / all as f64 }
}

/// A note for whoever decodes `dir` on a GPU, when at least a tenth of its bytes are in
/// planes of several tables (see [`multi_table_share`]).
pub fn gpu_note(dir: &wcodec_format::Directory) -> Option<String> {
    let share = multi_table_share(dir);
    (share >= 0.1).then(|| {
        format!(
            "{:.0}% of this file's bytes are in planes with several tables, which decode at about \
             a third of the speed on a GPU; files made with `compress --for-gpu` decode fastest \
             there",
            share * 100.0
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real int8 slice: the CPU defaults give most of its bytes row classes, `--for-gpu`
    /// none.
    #[test]
    fn files_made_for_the_cpu_get_a_note_for_the_gpu() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/data/minilm-int8-per-tensor.safetensors");
        let source = std::fs::read(path).expect("the checked-in slice");
        let cpu = crate::compress(&source, &crate::EncodeOptions::default()).expect("compress");
        let dir = wcodec_format::Directory::from_file_bytes(&cpu).expect("a directory");
        assert!(multi_table_share(&dir) > 0.5, "{}", multi_table_share(&dir));
        assert!(gpu_note(&dir).is_some_and(|n| n.contains("--for-gpu")));
        let gpu = crate::compress(&source, &crate::EncodeOptions::for_gpu()).expect("compress");
        let dir = wcodec_format::Directory::from_file_bytes(&gpu).expect("a directory");
        assert_eq!(multi_table_share(&dir), 0.0);
        assert_eq!(gpu_note(&dir), None);
    }
}
