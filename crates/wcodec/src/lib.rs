//! wcodec: lossless compression of the weights of large language models.
//!
//! This facade puts one API over the layered crates: `compress` / `decompress` for bytes in
//! memory, `compress_path` / `decompress_path` for files (memory-mapped input, atomic output),
//! and `Archive` to open a .wcz, list its tensors, decode one, or verify it all;
//! `decompress_path_gpu` and `bench_gpu` decode on a GPU (the `cuda` feature).
//!
//! ```
//! let weights: Vec<u8> = (0..4096u32).map(|i| (i % 7) as u8).collect();
//! let wcz = wcodec::compress_raw(&weights, wcodec::Dtype::I8, &[64, 64], &Default::default())?;
//! assert!(wcz.len() < weights.len());
//! assert_eq!(wcodec::decompress(&wcz)?, weights);
//! # Ok::<(), wcodec::Error>(())
//! ```

mod archive;
mod error;
mod files;
mod gpu;
pub mod layers;
mod process;
pub mod quantize;
pub mod shards;

pub use archive::{Archive, LayerRow, OVERLAP_BYTES, TensorSummary};
pub use error::Error;
pub use files::{
    CompressReport, InputKind, compress_path, decompress_path, decompress_path_with_limits,
    read_input, temp_prefix, write_file,
};
pub use gpu::{
    GPU_BUILT, GpuBench, GpuLoad, bench_gpu, decompress_path_gpu, gpu_note, load_gpu,
    multi_table_share,
};
pub use process::{default_sigpipe, disable_transparent_huge_pages};

pub use wcodec_container as container;
/// The GPU decoder (`cuda` feature for kernels): `cuda::CudaDecoder` decodes straight into device
/// memory, `keep` holds a file compressed there.
pub use wcodec_cuda as cuda;
pub use wcodec_decode as decode;
pub use wcodec_encode as encode;
pub use wcodec_format as format;
pub use wcodec_predict as predict;
pub use wcodec_rans as rans;

pub use wcodec_decode::Limits;
pub use wcodec_encode::EncodeOptions;
pub use wcodec_format::{Directory, Dtype, Predictor, SourceKind, TensorEntry};

/// Compresses a model file held in memory (safetensors or GGUF, detected from its bytes).
pub fn compress(source: &[u8], options: &EncodeOptions) -> Result<Vec<u8>, Error> {
    let layout = wcodec_container::read_layout(source)?;
    // Room for the whole output up front (it is at most a little larger than the source):
    // a growing Vec would copy what it holds at every doubling.
    let out = Vec::with_capacity(source.len() + source.len() / 64 + (64 << 10));
    Ok(wcodec_encode::compress_file(source, &layout, options, out, &mut |_| {})?)
}

/// Compresses one raw tensor of `dtype` and shape `dims`.
pub fn compress_raw(
    bytes: &[u8],
    dtype: Dtype,
    dims: &[u64],
    options: &EncodeOptions,
) -> Result<Vec<u8>, Error> {
    Ok(wcodec_encode::compress_raw(bytes, dtype, dims, options)?)
}

/// Decompresses a .wcz held in memory back into the original file's bytes, within the
/// default [`Limits`] (output at most 1024 times the file's size).
pub fn decompress(wcz: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(wcodec_decode::decompress_to_vec(wcz)?)
}

/// `decompress` within `limits` (e.g. [`Limits::NONE`] for a trusted file that expands more).
pub fn decompress_with_limits(wcz: &[u8], limits: &Limits) -> Result<Vec<u8>, Error> {
    Ok(wcodec_decode::decompress_to_vec_limited(wcz, limits)?)
}

/// The length of the original file a .wcz held in memory decodes to.
pub fn decompressed_len(wcz: &[u8]) -> Result<u64, Error> {
    Ok(wcodec_decode::decompressed_len(wcz)?)
}

/// Decodes a .wcz held in memory into `out`, exactly [`decompressed_len`] bytes: for callers
/// that decode into memory they already hold (a reused buffer needs no clearing).
pub fn decompress_into(wcz: &[u8], out: &mut [u8]) -> Result<(), Error> {
    Ok(wcodec_decode::decompress_into(wcz, out)?)
}
