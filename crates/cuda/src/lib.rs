//! The CUDA decoder of wcodec: tensors of a .wcz decoded straight into GPU memory.
//!
//! One launch decodes every unit of every plane of every tensor asked for (the launch count does
//! not grow with the number of tensors): rANS decoding, inverse prediction and plane merge are
//! fused in one kernel (kernels/decode.cu), with the decode tables in shared memory. The
//! compressed bytes are copied to the device once, through a few pinned host buffers kept by
//! the decoder: each window is filled on the host's cores while the one before is copied (and
//! decoded tensors come back the same way). The plan's tables are made on all cores; the
//! CRC-32C of every unit and raw plane is computed on the GPU (kernels/crc.cu) right after the
//! upload and checked before anything the launch decoded is handed out.
//!
//! ```no_run
//! # fn main() -> Result<(), wcodec_cuda::CudaError> {
//! let file = std::fs::read("model.wcz").unwrap();
//! let dir = wcodec_format::Directory::from_file_bytes(&file).unwrap();
//! let gpu = wcodec_cuda::CudaDecoder::new(0)?; // Err(NotAvailable) without a GPU
//! let tensors = gpu.decode_all(&file, &dir)?;
//! let first = tensors[0].to_host()?; // checked against the tensor's CRC-32C
//!
//! // Or keep the file compressed in device memory and decode a few tensors at a time.
//! let kept = gpu.keep(&file, &dir)?;
//! let layer = kept.decode_tensors(&[4, 5, 6, 7])?;
//! # Ok(()) }
//! ```
//!
//! Built without the `cuda` feature, or with it but without nvcc, the crate is a stub: the API
//! is the same and `CudaDecoder::new` returns `CudaError::NotAvailable`. With the kernels built,
//! a machine with no driver or no GPU gets the same error at run time, never a panic.
//!
//! Layout: `abi` mirrors the structures shared with the kernels; `plan` checks a file and lays
//! out a launch (safe Rust); `crc` is the CRC kernel's tables and algorithm; `emulate` runs a
//! plan on the CPU as the kernels would, for tests;
//! `device` (or `stub`) holds all the unsafe code that talks to the GPU.

pub mod abi;
pub mod crc;
pub mod emulate;
pub mod plan;

#[cfg(wcodec_kernels)]
mod device;
#[cfg(not(wcodec_kernels))]
#[path = "stub.rs"]
mod device;

#[cfg(wcodec_kernels)]
pub use cudarc;

use wcodec_format::{Directory, Dtype};

pub use plan::{CompactTables, LaunchConfig, Plan, PlanOptions};

/// Whether this build has the kernels compiled in (the `cuda` feature and nvcc at build time).
pub const KERNELS_BUILT: bool = cfg!(wcodec_kernels);

/// Why a GPU decode did not happen or did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CudaError {
    /// No kernels in this build, no CUDA driver, or no such GPU.
    #[error("CUDA is not available: {0}")]
    NotAvailable(String),
    /// A CUDA driver or runtime call failed.
    #[error("CUDA error: {0}")]
    Driver(String),
    #[error("tensor index {index} is out of range ({count} tensors)")]
    NoSuchTensor { index: usize, count: usize },
    /// The directory or file is not something the kernel may be given.
    #[error("tensor {tensor:?}: {detail}")]
    Invalid { tensor: String, detail: String },
    #[error("checksum mismatch in {what}: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { what: String, stored: u32, computed: u32 },
    /// Writing a decoded tensor failed (`DeviceTensor::write_to`).
    #[error("write failed: {0}")]
    Io(std::io::Error),
    /// The kernel found a unit that does not decode (damaged data).
    #[error("tensor {tensor:?}, plane {plane}, unit {unit}: {reason}")]
    Corrupt { tensor: String, plane: usize, unit: usize, reason: String },
}

/// Resources the compiler gave a variant of the decode kernel (`cudaFuncGetAttributes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelInfo {
    pub variant: u32,
    pub registers: i32,
    /// Local memory (register spills) per thread.
    pub local_bytes: i32,
    pub max_threads_per_block: i32,
    /// Dynamic shared memory a block may have on this GPU (the tables' budget).
    pub max_dynamic_shared: i32,
    /// The SASS version the driver runs (90 = sm_90).
    pub binary_version: i32,
}

/// A GPU and a stream to decode on.
#[derive(Debug)]
pub struct CudaDecoder {
    gpu: device::Gpu,
    options: PlanOptions,
}

/// A decoded tensor in device memory, laid out exactly as in the original file.
#[derive(Debug)]
pub struct DeviceTensor {
    /// Index in the directory.
    pub index: usize,
    pub name: String,
    pub dtype: Dtype,
    pub dims: Vec<u64>,
    crc32c: u32,
    buffer: device::Buffer,
}

impl DeviceTensor {
    /// Bytes of the tensor.
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The device address of the first byte (0 for an empty tensor).
    pub fn device_ptr(&self) -> u64 {
        self.buffer.device_ptr()
    }

    /// Copies the tensor back and checks it against the CRC-32C of the original bytes.
    pub fn to_host(&self) -> Result<Vec<u8>, CudaError> {
        let (bytes, computed) = self.buffer.to_host()?;
        self.check(computed)?;
        Ok(bytes)
    }

    /// Copies the tensor back into `w` (through pinned memory, a window at a time, each written
    /// while the next is copied) and checks it against the CRC-32C of the original bytes. The
    /// check ends after the last write: on an error `w` holds bytes that are not the tensor's,
    /// so write to something that can be thrown away (the CLI writes a temporary file).
    pub fn write_to(&self, w: &mut (dyn std::io::Write + Send)) -> Result<(), CudaError> {
        let computed =
            self.buffer.download(|_, window| w.write_all(window).map_err(CudaError::Io))?;
        self.check(computed)
    }

    fn check(&self, computed: u32) -> Result<(), CudaError> {
        if computed != self.crc32c {
            return Err(CudaError::Checksum {
                what: format!("tensor {:?} decoded on the GPU", self.name),
                stored: self.crc32c,
                computed,
            });
        }
        Ok(())
    }

    /// The underlying device buffer (cudarc), for handing to other GPU code.
    #[cfg(wcodec_kernels)]
    pub fn slice(&self) -> Option<&cudarc::driver::CudaSlice<u8>> {
        self.buffer.slice()
    }
}

/// A file's compressed tensors kept in device memory by [`CudaDecoder::keep`], for the decoder
/// that keeps them.
pub struct KeptFile<'d> {
    decoder: &'d CudaDecoder,
    /// The plan of every tensor; a decode launches its subset.
    plan: Plan,
    dir: Directory,
    inputs: device::Inputs,
}

impl std::fmt::Debug for KeptFile<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptFile")
            .field("tensors", &self.dir.tensors.len())
            .field("device_bytes", &self.device_bytes())
            .finish()
    }
}

impl KeptFile<'_> {
    /// Decodes the tensors `which` (indices into the directory) from device memory into new
    /// device buffers, in one launch, returned in directory order (each tensor once). Only
    /// their units are launched, and only their units' records go up to the device.
    pub fn decode_tensors(&self, which: &[usize]) -> Result<Vec<DeviceTensor>, CudaError> {
        let d = self.decoder;
        let sub = self.plan.subset(which)?;
        let config = d.options.launch.unwrap_or_else(|| d.gpu.default_config(&sub));
        let buffers = d.gpu.decode_over(&self.inputs, &sub, &self.dir, config, None)?;
        Ok(tensors_of(&sub, &self.dir, buffers))
    }

    /// [`decode_tensors`](Self::decode_tensors) into buffers the caller owns, no memory
    /// allocated for them: `into[k]` receives the `k`-th of the tensors `which` in directory
    /// order (each tensor once), and must be exactly its length, in this decoder's context. The
    /// kernel checks every unit as it decodes (consumed exactly, ended in its final states);
    /// the tensor CRC-32C is checked where a tensor comes back to the host, which these
    /// buffers do not.
    #[cfg(wcodec_kernels)]
    pub fn decode_tensors_into(
        &self,
        which: &[usize],
        into: &mut [cudarc::driver::CudaViewMut<'_, u8>],
    ) -> Result<(), CudaError> {
        let d = self.decoder;
        let sub = self.plan.subset(which)?;
        let config = d.options.launch.unwrap_or_else(|| d.gpu.default_config(&sub));
        d.gpu.decode_over_into(&self.inputs, &sub, &self.dir, config, into)
    }

    /// Prepares a decode of the tensors `which` (as [`decode_tensors`](Self::decode_tensors))
    /// to be launched any number of times: their outputs are allocated and their units
    /// uploaded once, so that each [`PreparedDecode::launch`] only enqueues the kernel on the
    /// decoder's stream and returns. For decoding a layer into the same buffers before each
    /// use, queued behind the work that comes before it.
    #[cfg(wcodec_kernels)]
    pub fn prepare_tensors(&self, which: &[usize]) -> Result<PreparedDecode<'_>, CudaError> {
        let d = self.decoder;
        let plan = self.plan.subset(which)?;
        let config = d.options.launch.unwrap_or_else(|| d.gpu.default_config(&plan));
        let prepared = d.gpu.prepare_launch(&self.inputs, &plan, config)?;
        Ok(PreparedDecode { kept: self, plan, prepared, launched: false })
    }

    /// Bytes of device memory the kept file holds (its staged compressed bytes, tables and
    /// row maps).
    pub fn device_bytes(&self) -> u64 {
        self.inputs.len()
    }

    pub fn directory(&self) -> &Directory {
        &self.dir
    }
}

/// A decode of some tensors of a kept file, prepared once by [`KeptFile::prepare_tensors`]
/// and launched any number of times into the same device buffers, which it owns.
///
/// A launch enqueues the kernel on the decoder's stream and returns without waiting; the
/// buffers' users on other streams wait for it through cudarc's stream tracking. The kept
/// file's every unit was checked when it was kept; [`check`](Self::check) waits for the
/// stream and checks what the kernel reports of the last launch (every unit consumed exactly,
/// ended in its final states).
#[cfg(wcodec_kernels)]
pub struct PreparedDecode<'k> {
    kept: &'k KeptFile<'k>,
    plan: Plan,
    prepared: device::Prepared<'k>,
    launched: bool,
}

#[cfg(wcodec_kernels)]
impl std::fmt::Debug for PreparedDecode<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedDecode")
            .field("units", &self.plan.units.len())
            .field("launched", &self.launched)
            .finish()
    }
}

#[cfg(wcodec_kernels)]
impl PreparedDecode<'_> {
    /// Enqueues the decode on the decoder's stream (no upload, no wait).
    pub fn launch(&mut self) -> Result<(), CudaError> {
        self.kept.decoder.gpu.launch_prepared(&mut self.prepared)?;
        self.launched = true;
        Ok(())
    }

    /// Waits for the decoder's stream and checks the last launch's units.
    pub fn check(&self) -> Result<(), CudaError> {
        if !self.launched {
            return Err(CudaError::Invalid {
                tensor: String::new(),
                detail: "a prepared decode checked before its first launch".into(),
            });
        }
        self.kept.decoder.gpu.check_prepared(&self.plan, &self.kept.dir, &self.prepared)
    }

    /// The tensors, in directory order (each once): directory index and device buffer (`None`
    /// for an empty tensor). Their bytes are the tensor's after a launch has run.
    pub fn tensors(&self) -> Vec<(usize, Option<&cudarc::driver::CudaSlice<u8>>)> {
        let indices = self.plan.outputs.iter().filter(|o| !o.scratch).map(|o| o.tensor);
        indices.zip(self.prepared.tensors(&self.plan)).collect()
    }
}

/// The decoded tensors of `plan` (its outputs that are not scratch), from their buffers.
fn tensors_of(plan: &Plan, dir: &Directory, buffers: Vec<device::Buffer>) -> Vec<DeviceTensor> {
    plan.outputs
        .iter()
        .filter(|o| !o.scratch)
        .zip(buffers)
        .map(|(o, buffer)| {
            let t = &dir.tensors[o.tensor];
            DeviceTensor {
                index: o.tensor,
                name: t.name.clone(),
                dtype: t.dtype,
                dims: t.dims.clone(),
                crc32c: t.crc32c,
                buffer,
            }
        })
        .collect()
}

/// How to time a decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchOptions {
    /// Untimed launches before each configuration's timed ones.
    pub warmup: usize,
    /// Timed runs; the report gives their median.
    pub iters: usize,
    /// Launches back to back in each timed run (the time per launch is the run's over this):
    /// 1 measures a launch alone, launch latency included.
    pub batch: usize,
    /// The tensors are decoded this many times over in each launch, from as many copies of
    /// their compressed bytes into as many outputs, so that a small file fills the GPU and the
    /// L2 cache does not hold what is measured.
    pub copies: usize,
    /// Launch shapes to time, each over the same loaded data; empty: the decoder's own choice.
    pub configs: Vec<LaunchConfig>,
    pub verify_checksums: bool,
    /// `PlanOptions::merge_while_decoding`.
    pub merge_while_decoding: bool,
    /// `PlanOptions::merge_whole_blocks`.
    pub merge_whole_blocks: bool,
    /// `PlanOptions::compact_tables`.
    pub compact_tables: CompactTables,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            warmup: 3,
            iters: 20,
            batch: 1,
            copies: 1,
            configs: Vec::new(),
            verify_checksums: true,
            merge_while_decoding: true,
            merge_whole_blocks: true,
            compact_tables: CompactTables::Auto,
        }
    }
}

/// The timing of one launch shape (CUDA events around each launch).
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub device: String,
    pub config: LaunchConfig,
    /// Decompressed bytes written per launch.
    pub output_bytes: u64,
    /// Compressed bytes read per launch.
    pub compressed_bytes: u64,
    pub units: usize,
    pub blocks: usize,
    /// Seconds per launch, every timed launch.
    pub times: Vec<f64>,
    pub median_s: f64,
    /// Decompressed bytes per second at the median, in GB/s (10^9).
    pub gbps: f64,
}

/// Loading tensors into device memory, timed on the wall clock (medians), the file already
/// in host memory: what a program that starts a model waits for.
#[derive(Clone, Debug)]
pub struct LoadReport {
    pub device: String,
    /// Bytes of the decoded tensors.
    pub tensor_bytes: u64,
    /// Bytes uploaded: the staged compressed bytes with their alignment and pad.
    pub staged_bytes: u64,
    /// `decode_tensors` from call to return: plan, upload, launch and the kernel's checks.
    pub decode_s: f64,
    /// The same with one launch after the whole upload (`PlanOptions::streamed_launch_bytes`
    /// 0), timed in turn with `decode_s`; equal to it where the decoder's options launch once.
    pub decode_once_s: f64,
    /// The steps of `decode_tensors` launched once after the upload, each timed alone (the
    /// stream waited for after each): name and median seconds, in order.
    pub steps: Vec<(String, f64)>,
    /// A load (launched while the bytes upload, for a file of several launch steps) as its
    /// threads went, nothing waited for: when each stage was reached, in seconds from the
    /// start; medians. Empty where `streamed_launch_bytes` is 0.
    pub streamed_marks: Vec<(String, f64)>,
    /// The tensors' own bytes, uncompressed, through the same pinned windows.
    pub raw_upload_s: f64,
    /// The tensors' own bytes, uncompressed, in one copy from ordinary (pageable) memory.
    pub raw_pageable_s: f64,
    /// `keep`: the file's compressed side uploaded (plan, upload, until the copies are done).
    pub keep_s: f64,
    /// Bytes of device memory the kept file holds.
    pub kept_bytes: u64,
    /// The same tensors decoded from the kept file (`KeptFile::decode_tensors`).
    pub kept_decode_s: f64,
    /// The largest of the tensors decoded alone, each way.
    pub largest: Option<OneTensor>,
}

/// One tensor decoded alone (`LoadReport::largest`): seconds from host memory
/// (`decode_tensors`), from a kept file into new device memory (`KeptFile::decode_tensors`),
/// from a kept file into a buffer allocated once (`KeptFile::decode_tensors_into`), and
/// through a `PreparedDecode`: one launch and the wait for it, and a launch of 10 enqueued
/// back to back before one wait.
#[derive(Clone, Debug)]
pub struct OneTensor {
    pub index: usize,
    pub from_host_s: f64,
    pub from_kept_s: f64,
    pub into_buffer_s: f64,
    pub prepared_s: f64,
    pub prepared_queued_s: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

impl CudaDecoder {
    /// Opens GPU `ordinal` with a new stream. Without kernels, a driver or that GPU, the error
    /// is `CudaError::NotAvailable`.
    pub fn new(ordinal: usize) -> Result<CudaDecoder, CudaError> {
        Ok(CudaDecoder { gpu: device::Gpu::new(ordinal)?, options: PlanOptions::default() })
    }

    /// Decodes on `stream` (its context's GPU) instead of a stream of its own.
    #[cfg(wcodec_kernels)]
    pub fn with_stream(
        stream: std::sync::Arc<cudarc::driver::CudaStream>,
    ) -> Result<CudaDecoder, CudaError> {
        Ok(CudaDecoder { gpu: device::Gpu::with_stream(stream)?, options: PlanOptions::default() })
    }

    /// The stream the decoder enqueues its work on.
    #[cfg(wcodec_kernels)]
    pub fn stream(&self) -> &std::sync::Arc<cudarc::driver::CudaStream> {
        self.gpu.stream()
    }

    /// Changes how launches are laid out and whether checksums are verified before a launch.
    pub fn set_plan_options(&mut self, options: PlanOptions) {
        self.options = options;
    }

    /// The GPU's name, e.g. "NVIDIA H100 80GB HBM3".
    pub fn device_name(&self) -> &str {
        self.gpu.name()
    }

    /// Multiprocessors of the GPU.
    pub fn multiprocessors(&self) -> u32 {
        self.gpu.multiprocessors()
    }

    /// Registers, spills and shared-memory budget of a decode kernel variant on this GPU.
    pub fn kernel_info(&self, variant: u32) -> Option<KernelInfo> {
        self.gpu.kernel_info(variant)
    }

    /// The launch shape the decoder would pick for `plan` on this GPU.
    pub fn default_config(&self, plan: &Plan) -> LaunchConfig {
        self.gpu.default_config(plan)
    }

    /// Gives `plan` compact tables where `how` is `CompactTables::Auto` and they pay for its
    /// launch on this GPU (`Plan::compact_tables_pay`), as the decoder does before a launch;
    /// `Above` and `Never` were settled by `Plan::build`.
    pub fn settle_compact_tables(&self, plan: &mut Plan, how: CompactTables) {
        if how == CompactTables::Auto && plan.compact_tables_pay(self.multiprocessors()) {
            plan.compact_tables(plan::COMPACT_TABLES_ABOVE);
        }
    }

    /// Decodes the tensors `which` (indices into `dir.tensors`) of `file` into device memory.
    /// The compressed bytes go up from the start while another thread makes the plan, and the
    /// decode runs as they arrive: a launch each `PlanOptions::streamed_launch_bytes` of them
    /// (one after the upload for a smaller file). Returns when the tensors are decoded and
    /// verified: every unit's CRC-32C (computed on the GPU as the bytes arrive, unless
    /// `PlanOptions::checksums_on_device` is off), and every unit consumed exactly and ended in
    /// its final states (the decode kernel).
    pub fn decode_tensors(
        &self,
        file: &[u8],
        dir: &Directory,
        which: &[usize],
    ) -> Result<Vec<DeviceTensor>, CudaError> {
        self.decode_tensors_timed(file, dir, which, self.options.streamed_launch_bytes, None)
    }

    /// `decode_tensors` launched every `step` bytes of the upload (`streamed_launch_bytes`;
    /// 0: once, after it). With `phases` and `step` 0 each step is timed alone there (the
    /// stream waited for after each); with `phases` and a `step`, the load's progress is noted
    /// there (`Gpu::load`).
    fn decode_tensors_timed(
        &self,
        file: &[u8],
        dir: &Directory,
        which: &[usize],
        step: u64,
        mut phases: Option<&mut device::Phases>,
    ) -> Result<Vec<DeviceTensor>, CudaError> {
        let plan_and_launch = || {
            let mut plan = Plan::build(file, dir, which, &self.options)?;
            self.settle_compact_tables(&mut plan, self.options.compact_tables);
            let config = self.options.launch.unwrap_or_else(|| self.gpu.default_config(&plan));
            Ok((plan, config))
        };
        if let (Some(steps), 0) = (phases.as_deref_mut(), step) {
            let start = std::time::Instant::now();
            let (plan, config) = plan_and_launch()?;
            steps.push(("plan (checks, tables)", start.elapsed().as_secs_f64()));
            let buffers = self.gpu.decode_steps(&plan, file, dir, config, Some(steps))?;
            return Ok(tensors_of(&plan, dir, buffers));
        }
        // The upload starts with the staging the directory gives while the plan is made.
        let (plan, buffers) = match Plan::staging_of(file, dir, which, &self.options) {
            Some(staging) => {
                let outputs = Plan::outputs_of(file, dir, which, &self.options);
                let early = (&staging, outputs.as_deref());
                match self.gpu.load(file, dir, early, plan_and_launch, step, phases)? {
                    device::Load::Decoded(plan, buffers) => (plan, buffers),
                    device::Load::StagingDiffers(plan) => {
                        self.load_planned(plan, file, dir, step)?
                    }
                }
            }
            // A directory `build` refuses (it says why) or whose staging it does not know.
            None => self.load_planned(plan_and_launch()?.0, file, dir, step)?,
        };
        Ok(tensors_of(&plan, dir, buffers))
    }

    /// `Gpu::load` with the staging of a plan already made.
    fn load_planned(
        &self,
        plan: Plan,
        file: &[u8],
        dir: &Directory,
        step: u64,
    ) -> Result<(Plan, Vec<device::Buffer>), CudaError> {
        let staging = plan::Staging { segments: plan.segments.clone(), len: plan.staging_len };
        let config = self.options.launch.unwrap_or_else(|| self.gpu.default_config(&plan));
        let planned = move || Ok((plan, config));
        match self.gpu.load(file, dir, (&staging, None), planned, step, None)? {
            device::Load::Decoded(plan, buffers) => Ok((plan, buffers)),
            device::Load::StagingDiffers(_) => {
                Err(CudaError::Driver("a plan's staging differs from itself".into()))
            }
        }
    }

    /// Uploads the compressed tensors of `file` to the GPU once (every unit's CRC checked, as
    /// for a decode) and keeps them there: [`KeptFile::decode_tensors`] then decodes any of
    /// them from device memory, as often as needed, without crossing the host bus again (a
    /// model held compressed on the GPU, a layer decoded just before it is used). The file
    /// takes about its compressed size of device memory ([`KeptFile::device_bytes`]).
    pub fn keep(&self, file: &[u8], dir: &Directory) -> Result<KeptFile<'_>, CudaError> {
        let all: Vec<usize> = (0..dir.tensors.len()).collect();
        let mut plan = Plan::build(file, dir, &all, &self.options)?;
        self.settle_compact_tables(&mut plan, self.options.compact_tables);
        let mut inputs = self.gpu.upload_inputs(&plan, file, None)?;
        self.gpu.verify_crcs(&plan, dir, &mut inputs)?;
        Ok(KeptFile { decoder: self, plan, dir: dir.clone(), inputs })
    }

    /// Decodes one tensor.
    pub fn decode_tensor(
        &self,
        file: &[u8],
        dir: &Directory,
        index: usize,
    ) -> Result<DeviceTensor, CudaError> {
        let mut v = self.decode_tensors(file, dir, &[index])?;
        Ok(v.remove(0))
    }

    /// Decodes every tensor of the file.
    pub fn decode_all(&self, file: &[u8], dir: &Directory) -> Result<Vec<DeviceTensor>, CudaError> {
        let all: Vec<usize> = (0..dir.tensors.len()).collect();
        self.decode_tensors(file, dir, &all)
    }

    /// Times the decode of `which` with CUDA events, for each launch shape of `options`:
    /// `warmup` launches, then the median of `iters` runs of `batch` launches; then checks the
    /// kernel's status words and every output against its CRC-32C (a timing of a wrong decode
    /// is an error).
    pub fn bench(
        &self,
        file: &[u8],
        dir: &Directory,
        which: &[usize],
        options: &BenchOptions,
    ) -> Result<Vec<BenchReport>, CudaError> {
        // The checks on the host, once: the timed launches are of copies of the plan.
        let plan_options = PlanOptions {
            verify_checksums: options.verify_checksums,
            checksums_on_device: false,
            launch: None,
            merge_while_decoding: options.merge_while_decoding,
            merge_whole_blocks: options.merge_whole_blocks,
            compact_tables: options.compact_tables,
            ..PlanOptions::default()
        };
        let mut plan =
            Plan::build(file, dir, which, &plan_options)?.replicate(options.copies.max(1));
        self.settle_compact_tables(&mut plan, options.compact_tables);
        let crcs: Vec<u32> = plan
            .outputs
            .iter()
            .filter(|o| !o.scratch)
            .map(|o| dir.tensors[o.tensor].crc32c)
            .collect();
        let configs = if options.configs.is_empty() {
            vec![self.gpu.default_config(&plan)]
        } else {
            options.configs.clone()
        };
        let times = self.gpu.bench(
            &plan,
            file,
            dir,
            &configs,
            (options.warmup, options.iters, options.batch),
            &crcs,
        )?;
        Ok(configs
            .iter()
            .zip(times)
            .map(|(&config, times)| {
                let median_s = median(times.clone());
                let config = config.for_plan(&plan);
                BenchReport {
                    device: self.device_name().to_owned(),
                    config,
                    output_bytes: plan.output_bytes(),
                    compressed_bytes: plan.compressed_bytes(),
                    units: plan.units.len(),
                    blocks: plan.ranges_for(&config, self.multiprocessors()).len(),
                    gbps: plan.output_bytes() as f64 / median_s / 1e9,
                    median_s,
                    times,
                }
            })
            .collect())
    }

    /// Times loading the tensors `which` of `file` into device memory (`LoadReport`), `iters`
    /// times each after one untimed load, against uploading their decoded bytes as they are,
    /// and decoding them from the file kept in device memory (all of them; the largest alone,
    /// each way). The decoded tensors are checked against their CRC-32C first.
    pub fn load_bench(
        &self,
        file: &[u8],
        dir: &Directory,
        which: &[usize],
        iters: usize,
    ) -> Result<LoadReport, CudaError> {
        let mut raw = Vec::new();
        for t in self.decode_tensors(file, dir, which)? {
            raw.extend_from_slice(&t.to_host()?);
        }
        let iters = iters.max(1);
        let mut plan = Plan::build(file, dir, which, &self.options)?;
        self.settle_compact_tables(&mut plan, self.options.compact_tables);
        // Each load is freed, and the stream waited for, before the next: the loads see the
        // same device memory, free to reuse.
        let (mut decode, mut once, mut raws, mut pageables) = (vec![], vec![], vec![], vec![]);
        let (mut steps, mut marks): (Vec<(String, Vec<f64>)>, Vec<_>) = (Vec::new(), Vec::new());
        for _ in 0..iters {
            for (step, times) in [(self.options.streamed_launch_bytes, &mut decode), (0, &mut once)]
            {
                let start = std::time::Instant::now();
                let tensors = self.decode_tensors_timed(file, dir, which, step, None)?;
                times.push(start.elapsed().as_secs_f64());
                drop(tensors);
                self.gpu.synchronize()?;
            }
            for (step, timed) in [(0, &mut steps), (self.options.streamed_launch_bytes, &mut marks)]
            {
                let mut phases = device::Phases::new();
                drop(self.decode_tensors_timed(file, dir, which, step, Some(&mut phases))?);
                self.gpu.synchronize()?;
                for (k, (name, seconds)) in phases.into_iter().enumerate() {
                    if k == timed.len() {
                        timed.push((name.to_owned(), Vec::new()));
                    }
                    timed[k].1.push(seconds);
                }
            }
        }
        for _ in 0..iters {
            raws.push(self.gpu.upload_seconds(raw.len(), |at, out| {
                out.copy_from_slice(&raw[at as usize..at as usize + out.len()]);
            })?);
            pageables.push(self.gpu.pageable_upload_seconds(&raw)?);
        }
        // The same tensors from the file kept in device memory, and the largest alone both ways.
        let start = std::time::Instant::now();
        let kept = self.keep(file, dir)?;
        self.gpu.synchronize()?;
        let keep_s = start.elapsed().as_secs_f64();
        let largest = which.iter().copied().max_by_key(|&i| dir.tensors[i].source_len);
        let (mut kept_decode, mut one_host, mut one_kept) = (vec![], vec![], vec![]);
        let timed = |f: &dyn Fn() -> Result<Vec<DeviceTensor>, CudaError>| {
            let start = std::time::Instant::now();
            let tensors = f()?;
            let seconds = start.elapsed().as_secs_f64();
            drop(tensors);
            self.gpu.synchronize()?;
            Ok::<f64, CudaError>(seconds)
        };
        for _ in 0..iters {
            kept_decode.push(timed(&|| kept.decode_tensors(which))?);
            if let Some(i) = largest {
                one_host.push(timed(&|| self.decode_tensors(file, dir, &[i]))?);
                one_kept.push(timed(&|| kept.decode_tensors(&[i]))?);
            }
        }
        // And into a buffer allocated once, as a decode just before each use would.
        #[cfg(wcodec_kernels)]
        let into_buffer_s = match largest {
            Some(i) => {
                let len = dir.tensors[i].source_len as usize;
                let driver = |e: cudarc::driver::DriverError| CudaError::Driver(e.to_string());
                let mut buf = self.gpu.stream().alloc_zeros::<u8>(len.max(1)).map_err(driver)?;
                let mut times = Vec::with_capacity(iters);
                for _ in 0..iters {
                    let start = std::time::Instant::now();
                    kept.decode_tensors_into(&[i], &mut [buf.slice_mut(..len)])?;
                    times.push(start.elapsed().as_secs_f64());
                }
                median(times)
            }
            None => f64::NAN,
        };
        #[cfg(not(wcodec_kernels))]
        let into_buffer_s = f64::NAN;
        // And through a prepared decode, launched and waited for, or queued 10 at a time.
        #[cfg(wcodec_kernels)]
        let (prepared_s, prepared_queued_s) = match largest {
            Some(i) => {
                let mut prepared = kept.prepare_tensors(&[i])?;
                prepared.launch()?;
                prepared.check()?;
                let (mut one, mut queued) = (Vec::new(), Vec::new());
                for _ in 0..iters {
                    let start = std::time::Instant::now();
                    prepared.launch()?;
                    self.gpu.synchronize()?;
                    one.push(start.elapsed().as_secs_f64());
                    let start = std::time::Instant::now();
                    for _ in 0..10 {
                        prepared.launch()?;
                    }
                    self.gpu.synchronize()?;
                    queued.push(start.elapsed().as_secs_f64() / 10.0);
                }
                prepared.check()?;
                (median(one), median(queued))
            }
            None => (f64::NAN, f64::NAN),
        };
        #[cfg(not(wcodec_kernels))]
        let (prepared_s, prepared_queued_s) = (f64::NAN, f64::NAN);
        let kept_bytes = kept.device_bytes();
        drop(kept);
        self.gpu.synchronize()?;
        Ok(LoadReport {
            keep_s,
            kept_bytes,
            kept_decode_s: median(kept_decode),
            largest: largest.map(|index| OneTensor {
                index,
                from_host_s: median(one_host),
                from_kept_s: median(one_kept),
                into_buffer_s,
                prepared_s,
                prepared_queued_s,
            }),
            device: self.device_name().to_owned(),
            tensor_bytes: raw.len() as u64,
            staged_bytes: plan.staging_len + abi::STAGING_PAD as u64,
            decode_s: median(decode),
            decode_once_s: median(once),
            steps: steps.into_iter().map(|(name, times)| (name, median(times))).collect(),
            // With `streamed_launch_bytes` 0 the second load timed its steps instead.
            streamed_marks: if self.options.streamed_launch_bytes > 0 {
                marks.into_iter().map(|(name, times)| (name, median(times))).collect()
            } else {
                Vec::new()
            },
            raw_upload_s: median(raws),
            raw_pageable_s: median(pageables),
        })
    }

    /// Device-to-device copy bandwidth, bytes read plus written per second (GB/s), over a
    /// `bytes`-byte buffer: the ceiling a decoder is measured against.
    pub fn copy_bandwidth(&self, bytes: usize, iters: usize) -> Result<f64, CudaError> {
        self.gpu.copy_bandwidth(bytes, iters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_gpu_is_an_error_not_a_panic() {
        match CudaDecoder::new(0) {
            Ok(gpu) => println!("found {}", gpu.device_name()),
            Err(CudaError::NotAvailable(why)) => println!("skipping: no CUDA device ({why})"),
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn a_missing_ordinal_is_not_available() {
        assert!(matches!(CudaDecoder::new(1 << 20), Err(CudaError::NotAvailable(_))));
    }
}
