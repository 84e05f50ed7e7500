//! The backend with kernels: memory, streams and events through cudarc, launches through the
//! `extern "C"` launchers of kernels/*.cu (linked statically with the CUDA runtime).
//!
//! Every `unsafe` block of the crate is in this module, each with its SAFETY note. The kernel
//! itself can only touch what the plan allows: `Plan::build` checked every unit's source range
//! against the staged bytes and every byte it can write against its output's length, and this
//! module allocates the staging buffer and the outputs at exactly those sizes.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Arc, Mutex, PoisonError};

use cudarc::driver::sys::{CUdevice_attribute, CUevent_flags};
use cudarc::driver::{
    CudaContext, CudaEvent, CudaSlice, CudaStream, CudaViewMut, DevicePtr, DevicePtrMut,
    DeviceRepr, DeviceSlice, DriverError, PinnedHostSlice, result,
};
use rayon::prelude::*;
use wcodec_format::Directory;

use crate::abi::{
    CRC_COMPARE, GROUP_COMPACT_TABLES, GROUP_GLOBAL_TABLES, MERGE_BLOCKS, STAGING_PAD,
    VARIANT_COMPACT, VARIANT_WARPS, VARIANTS, WcCrcChunk, WcGroup, WcKernelInfo, WcLaunch, WcMerge,
    WcRange, WcUnit, ring_bytes,
};
use crate::plan::table_entries;
use crate::plan::{LaunchConfig, Output, Plan, Staging, Streamed};
use crate::{CudaError, KernelInfo};

mod ffi {
    use super::*;

    unsafe extern "C" {
        /// Allows a variant `smem_entries` entries of dynamic shared memory; a cudaError_t.
        pub fn wc_decode_prepare(variant: u32, smem_entries: u32) -> c_int;
        /// Enqueues the decode kernel; returns a cudaError_t.
        pub fn wc_decode_launch(launch: *const WcLaunch, stream: *mut c_void) -> c_int;
        /// kernels/merge.cu: enqueues the merge kernels over `n` pieces; returns a cudaError_t.
        pub fn wc_merge_launch(pieces: u64, n: u32, stream: *mut c_void) -> c_int;
        /// kernels/crc.cu
        pub fn wc_crc32c_launch(
            chunks: u64,
            n: u32,
            src: u64,
            tables: u64,
            out: u64,
            mismatch: u64,
            blocks: u32,
            stream: *mut c_void,
        ) -> c_int;
        /// Fills `info` for kernel variant `variant` on the current device; returns a
        /// cudaError_t.
        pub fn wc_decode_kernel_info(variant: u32, info: *mut WcKernelInfo) -> c_int;
        /// A static string for a cudaError_t.
        pub fn wc_error_string(code: c_int) -> *const c_char;
    }
}

// SAFETY: these are plain-old-data `#[repr(C)]` structs of integers, with the layout the
// kernels expect (asserted in abi.rs and in the header); any bit pattern is a valid value.
unsafe impl DeviceRepr for WcUnit {}
// SAFETY: as above.
unsafe impl DeviceRepr for WcGroup {}
// SAFETY: as above.
unsafe impl DeviceRepr for WcRange {}
// SAFETY: as above.
unsafe impl DeviceRepr for WcMerge {}

fn driver(e: DriverError) -> CudaError {
    CudaError::Driver(e.to_string())
}

fn runtime(code: c_int, what: &str) -> Result<(), CudaError> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: the CUDA runtime returns a pointer to a static NUL-terminated string for every
    // code, known or not.
    let text = unsafe { CStr::from_ptr(ffi::wc_error_string(code)) };
    Err(CudaError::Driver(format!("{what}: {} (cudaError {code})", text.to_string_lossy())))
}

/// One GPU and the stream the decoder works on.
#[derive(Debug)]
pub(crate) struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    multiprocessors: u32,
    /// Per kernel variant.
    kernels: Vec<KernelInfo>,
    /// Pinned buffers for copies both ways, allocated on the first and kept (shared with the
    /// decoded tensors, which copy back through them).
    bounce: Arc<Mutex<Bounce>>,
    /// The CRC kernel's tables (`crc::device_tables`), uploaded on the first CRC check.
    crc_tables: std::sync::OnceLock<CudaSlice<u8>>,
    /// The stream of a load's launches while it uploads, made on the first.
    launches: std::sync::OnceLock<LaunchStream>,
}

const WAIT_DEFAULT: cudarc::driver::sys::CUevent_wait_flags =
    cudarc::driver::sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT;

/// A second stream of the decoder's context, on which a load (`Gpu::load`) launches its
/// kernels while the copies go on in order on the decoder's stream; the two are ordered by
/// events. Made with the driver's own calls: as a cudarc stream it would switch the
/// whole context to ordering every buffer's uses with events of its own.
#[derive(Debug)]
struct LaunchStream(cudarc::driver::sys::CUstream);

// SAFETY: a CUstream is a handle the driver lets any thread use (the decoder binds its context
// to the calling thread before each use).
unsafe impl Send for LaunchStream {}
// SAFETY: as above; the driver serialises concurrent calls on one stream.
unsafe impl Sync for LaunchStream {}

impl Drop for LaunchStream {
    fn drop(&mut self) {
        // SAFETY: the stream was made by `result::stream::create` and is destroyed once, here,
        // after its work is done.
        unsafe {
            let _ = result::stream::synchronize(self.0);
            let _ = result::stream::destroy(self.0);
        }
    }
}

/// Bytes of one pinned buffer, and how many there are: the compressed bytes go to the device
/// window by window, each window filled by the host's cores while the one before it is copied,
/// and decoded tensors come back the same way. Pinning memory costs about as much as copying
/// it, so the buffers are kept from copy to copy rather than a pinned copy of the whole data
/// being made each time.
const BOUNCE_BYTES: usize = 32 << 20;
const BOUNCE_BUFFERS: usize = 3;
/// Bytes of a window one thread fills.
const FILL_PIECE: usize = 2 << 20;

/// The pinned upload buffers, each with the event recorded after the copy that last read it.
#[derive(Default)]
struct Bounce {
    buffers: Vec<(PinnedHostSlice<u8>, CudaEvent)>,
    /// The buffer the next window goes through (the one used least recently).
    next: usize,
}

impl std::fmt::Debug for Bounce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bounce").field("buffers", &self.buffers.len()).finish()
    }
}

impl Drop for Bounce {
    fn drop(&mut self) {
        // The buffers are freed after this: no copy may still read them.
        for (_, copied) in &self.buffers {
            let _ = copied.synchronize();
        }
    }
}

impl Bounce {
    /// The window a copy of `len` bytes goes in (whole pieces, at most `BOUNCE_BYTES`), with
    /// buffers allocated that hold it.
    fn window_for(&mut self, ctx: &Arc<CudaContext>, len: usize) -> Result<usize, CudaError> {
        let window = BOUNCE_BYTES.min(len.max(1).next_multiple_of(FILL_PIECE));
        self.ensure(ctx, window)?;
        Ok(window)
    }

    /// Fills the next buffer's first `n` bytes with window `start..start + n` of a copy
    /// (`fill(start, out)`, on the host's cores) once the copy that last read that buffer is
    /// over, and enqueues their copy to device address `dst` on `s`.
    fn copy_window(
        &mut self,
        s: &CudaStream,
        dst: u64,
        (start, n): (usize, usize),
        fill: &(impl Fn(u64, &mut [u8]) + Sync),
    ) -> Result<(), CudaError> {
        let k = self.next;
        self.next = (k + 1) % self.buffers.len().max(1);
        let (buffer, copied) = &mut self.buffers[k];
        // The copy that read this buffer last is over before it is written again.
        copied.synchronize().map_err(driver)?;
        let host = &mut buffer.as_mut_slice().map_err(driver)?[..n];
        host.par_chunks_mut(FILL_PIECE)
            .enumerate()
            .for_each(|(i, piece)| fill((start + i * FILL_PIECE) as u64, piece));
        // SAFETY: the caller's `dst .. dst + n` is device memory of this context that the copy
        // may write; `host` is pinned memory that stays allocated and unwritten until `copied`,
        // recorded right after the copy, has completed (synchronised above before any reuse,
        // and when the buffers are dropped).
        unsafe { result::memcpy_htod_async(dst, host, s.cu_stream()) }.map_err(driver)?;
        copied.record(s).map_err(driver)
    }

    /// Buffers of at least `bytes` each (less than `BOUNCE_BYTES` for small copies).
    fn ensure(&mut self, ctx: &Arc<CudaContext>, bytes: usize) -> Result<(), CudaError> {
        if self.buffers.first().is_some_and(|(b, _)| b.len() >= bytes) {
            return Ok(());
        }
        *self = Bounce::default();
        for _ in 0..BOUNCE_BUFFERS {
            // Not write-combined: the host reads what comes back.
            // SAFETY: the allocation starts uninitialised; it is zeroed through its raw pointer
            // (valid for `bytes` bytes) before any slice of it is formed.
            let mut buffer =
                unsafe { ctx.alloc_pinned_with_flags::<u8>(bytes, 0) }.map_err(driver)?;
            // SAFETY: `as_mut_ptr` points at `bytes` writable bytes owned by `buffer`.
            unsafe { std::ptr::write_bytes(buffer.as_mut_ptr().map_err(driver)?, 0, bytes) };
            let event = ctx.new_event(Some(CUevent_flags::CU_EVENT_DISABLE_TIMING));
            self.buffers.push((buffer, event.map_err(driver)?));
        }
        Ok(())
    }
}

/// Wall-clock seconds of the steps of a decode, for `CudaDecoder::load_bench`: each step is
/// waited for (the stream synchronised) before the next is timed.
pub(crate) type Phases = Vec<(&'static str, f64)>;

/// Ends the step running since `*since` when timing: waits for the stream, records it.
fn mark(
    phases: &mut Option<&mut Phases>,
    stream: &CudaStream,
    since: &mut std::time::Instant,
    step: &'static str,
) -> Result<(), CudaError> {
    if let Some(phases) = phases {
        stream.synchronize().map_err(driver)?;
        phases.push((step, since.elapsed().as_secs_f64()));
        *since = std::time::Instant::now();
    }
    Ok(())
}

/// The compressed side of a plan on the device: the staged bytes, the table words and the row
/// map bytes. A plan's subsets (`Plan::subset`) decode over them too.
pub(crate) struct Inputs {
    src: CudaSlice<u8>,
    tables: CudaSlice<u8>,
    maps: CudaSlice<u8>,
    src_len: u64,
    /// The CRC-32C of each of the plan's `crc_chunks`, enqueued after the upload and not yet
    /// checked (`Gpu::verify_crcs`).
    crcs: Option<DeviceCrcs>,
}

/// What the CRC kernel writes: a CRC a chunk, and a word set where a unit's CRC is not its
/// stored one.
pub(crate) struct DeviceCrcs {
    /// The plan's `crc_chunks`, as bytes.
    chunks: CudaSlice<u8>,
    computed: CudaSlice<u32>,
    mismatch: CudaSlice<u32>,
}

impl Inputs {
    /// Bytes of device memory held.
    pub(crate) fn len(&self) -> u64 {
        (self.src.len() + self.tables.len() + self.maps.len()) as u64
    }
}

/// A plan's outputs on the device: a buffer for each one allocated here (`None` for an empty
/// one or one the caller gave), and each one's address.
struct Outputs {
    buffers: Vec<Option<CudaSlice<u8>>>,
    bases: Vec<u64>,
}

/// The device side of one launch of a plan: its inputs, its units and merge pieces uploaded
/// (arrays of `WcUnit` and `WcMerge` as bytes), its outputs allocated.
pub(crate) struct Loaded<'i> {
    inputs: &'i Inputs,
    units: CudaSlice<u8>,
    status: CudaSlice<u32>,
    /// The plan's outputs: decoded tensors and scratch.
    outputs: Vec<Option<CudaSlice<u8>>>,
    merges: CudaSlice<u8>,
    n_merges: u32,
    n_units: u32,
}

/// A launch shape made concrete for one GPU: the groups (flagged where their tables stay in
/// global memory) and the blocks' ranges uploaded, shared memory sized.
pub(crate) struct Shape {
    config: LaunchConfig,
    /// The kernel launched: `config.variant`, or its twin that reads compact tables.
    kernel: u32,
    /// `WcGroup`s and `WcRange`s, as bytes.
    groups: CudaSlice<u8>,
    ranges: CudaSlice<u8>,
    n_groups: u32,
    n_ranges: u32,
    smem_entries: u32,
}

/// A plan's unit records and merge pieces with their outputs' device addresses (`bases`, one
/// an output) made absolute, as the kernels read them.
fn records(plan: &Plan, bases: &[u64]) -> (Vec<WcUnit>, Vec<WcMerge>) {
    let mut units = Vec::new();
    plan.units
        .par_iter()
        .zip(&plan.unit_output)
        .map(|(u, &o)| WcUnit { dst: bases[o as usize] + u.dst, ..*u })
        .collect_into_vec(&mut units);
    let merges = plan
        .merges
        .iter()
        .map(|m| WcMerge {
            src: bases[m.scratch_output as usize] + m.offset,
            dst: bases[m.tensor_output as usize] + m.offset * u64::from(m.elem_size),
            n: m.n,
            kind: m.kind,
            plane_len: m.plane_len,
            elem_size: m.elem_size,
            fields: m.fields,
            tail: if m.kind == MERGE_BLOCKS {
                bases[m.scratch_output as usize] + m.tail
            } else {
                0
            },
        })
        .collect();
    (units, merges)
}

/// Enqueues the merge launch of a loaded plan over its `n` merge pieces at device address
/// `merges` on `stream`, after its decode.
fn enqueue_merges(
    merges: u64,
    n: u32,
    stream: cudarc::driver::sys::CUstream,
) -> Result<(), CudaError> {
    // SAFETY: `merges` holds a loaded plan's `n` pieces, whose sources (scratch outputs) and
    // destinations (tensor outputs) are live allocations of that plan's `Loaded`, sized by the
    // plan (a piece covers elements [offset, offset + n) of planes of `plane_len` elements);
    // the caller enqueues the merge after the decode that writes the sources, on its stream.
    let code = unsafe { ffi::wc_merge_launch(merges, n, stream.cast()) };
    runtime(code, "merge kernel launch")
}

/// What `Gpu::load` gives back: the plan and the tensors' buffers; or the plan made, whose
/// staging is not the one uploaded (nothing decoded: the caller loads again with the plan's).
pub(crate) enum Load {
    Decoded(Plan, Vec<Buffer>),
    StagingDiffers(Plan),
}

/// What a load's other thread makes (`Gpu::load`): the plan and its launch shape, the tensors'
/// buffers, the units' records with their addresses, and the streamed blocks (`None`: one
/// launch after the upload).
struct Made {
    plan: Plan,
    config: LaunchConfig,
    buffers: Vec<Option<CudaSlice<u8>>>,
    records: (Vec<WcUnit>, Vec<WcMerge>),
    streamed: Option<Streamed>,
}

/// A load's launches, laid out once `Made` has joined the main thread.
struct Ready<'i> {
    plan: Plan,
    streamed: Option<Streamed>,
    shape: Shape,
    loaded: Loaded<'i>,
}

/// Which blocks a launch takes: `count` launches of all of a shape's, each followed by the
/// merge launch when `merge`, timed between the events when given; or some of them, once
/// (a streamed decode's piece, `Plan::streamed`).
enum Blocks<'t> {
    Shape { count: usize, timer: Option<(&'t CudaEvent, &'t CudaEvent)>, merge: bool },
    Piece(std::ops::Range<usize>),
}

/// A plan loaded and laid out once, to be launched any number of times (`PreparedDecode`).
pub(crate) struct Prepared<'i> {
    loaded: Loaded<'i>,
    shape: Shape,
}

impl Prepared<'_> {
    /// The plan's outputs that are tensors (not scratch), in plan order: `None` for an empty
    /// tensor.
    pub(crate) fn tensors<'a>(&'a self, plan: &'a Plan) -> Vec<Option<&'a CudaSlice<u8>>> {
        let outputs = self.loaded.outputs.iter().zip(&plan.outputs);
        outputs.filter(|(_, o)| !o.scratch).map(|(data, _)| data.as_ref()).collect()
    }
}

/// A decoded tensor's device memory (none for an empty tensor).
#[derive(Debug)]
pub(crate) struct Buffer {
    data: Option<CudaSlice<u8>>,
    stream: Arc<CudaStream>,
    bounce: Arc<Mutex<Bounce>>,
}

impl Gpu {
    pub(crate) fn new(ordinal: usize) -> Result<Gpu, CudaError> {
        // SAFETY: only tries to load libcuda with libloading; no CUDA call is made.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(CudaError::NotAvailable("no CUDA driver (libcuda) found".into()));
        }
        // cudarc panics if the driver lacks a symbol it needs (a driver older than CUDA 13):
        // that too is "not available", not a crash.
        let ctx = catch_unwind(AssertUnwindSafe(|| CudaContext::new(ordinal)))
            .map_err(|_| CudaError::NotAvailable("the CUDA driver is too old".into()))?
            .map_err(|e| CudaError::NotAvailable(format!("GPU {ordinal}: {e}")))?;
        let stream = ctx.new_stream().map_err(driver)?;
        Gpu::with_stream(stream)
    }

    pub(crate) fn with_stream(stream: Arc<CudaStream>) -> Result<Gpu, CudaError> {
        let ctx = stream.context().clone();
        let (major, minor) = ctx.compute_capability().map_err(driver)?;
        if major < 8 {
            return Err(CudaError::NotAvailable(format!(
                "compute capability {major}.{minor}: the kernels are built for 8.0 and later"
            )));
        }
        let name = ctx.name().map_err(driver)?;
        let multiprocessors = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(driver)? as u32;
        let mut gpu = Gpu {
            ctx,
            stream,
            name,
            multiprocessors,
            kernels: Vec::new(),
            bounce: Arc::new(Mutex::new(Bounce::default())),
            crc_tables: std::sync::OnceLock::new(),
            launches: std::sync::OnceLock::new(),
        };
        for variant in 0..VARIANTS {
            let info = gpu.query_kernel(variant)?;
            gpu.kernels.push(info);
        }
        Ok(gpu)
    }

    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn multiprocessors(&self) -> u32 {
        self.multiprocessors
    }

    pub(crate) fn kernel_info(&self, variant: u32) -> Option<KernelInfo> {
        self.kernels.get(variant as usize).copied()
    }

    fn query_kernel(&self, variant: u32) -> Result<KernelInfo, CudaError> {
        self.ctx.bind_to_thread().map_err(driver)?;
        let mut info = WcKernelInfo::default();
        // SAFETY: `info` is a valid, writable WcKernelInfo (the layout the launcher expects);
        // the context of this GPU is current on this thread, so the runtime queries this GPU.
        runtime(unsafe { ffi::wc_decode_kernel_info(variant, &mut info) }, "kernel attributes")?;
        Ok(KernelInfo {
            variant,
            registers: info.num_regs,
            local_bytes: info.local_bytes,
            max_threads_per_block: info.max_threads_per_block,
            max_dynamic_shared: info.max_dynamic_shared,
            binary_version: info.binary_version,
        })
    }

    /// Uploads a plan's compressed side: the staged bytes of `file` through pinned memory, its
    /// tables and row maps.
    pub(crate) fn upload_inputs(
        &self,
        plan: &Plan,
        file: &[u8],
        mut phases: Option<&mut Phases>,
    ) -> Result<Inputs, CudaError> {
        let (s, mut since) = (&self.stream, std::time::Instant::now());
        // The fast kernel path reads past a unit's last word (never past the pad, zeroed).
        let staging_len = plan.staging_len as usize + STAGING_PAD;
        let src =
            self.upload(staging_len, |start, out| plan.fill_staging_window(file, start, out))?;
        mark(&mut phases, s, &mut since, "upload the compressed bytes")?;
        let tables = self.upload_array(&plan.tables)?;
        let maps = self.upload_array(&plan.maps)?;
        mark(&mut phases, s, &mut since, "upload tables and maps")?;
        let crcs = self.enqueue_crcs(plan, &src, staging_len)?;
        mark(&mut phases, s, &mut since, "CRC checks on the GPU")?;
        Ok(Inputs { src, tables, maps, src_len: staging_len as u64, crcs })
    }

    /// Enqueues the CRC kernel over the plan's `crc_chunks` of the staged bytes `src` (`len`
    /// bytes); `None` when the plan left no check to the GPU.
    fn enqueue_crcs(
        &self,
        plan: &Plan,
        src: &CudaSlice<u8>,
        len: usize,
    ) -> Result<Option<DeviceCrcs>, CudaError> {
        let Some(crcs) = self.crc_buffers(plan, len)? else { return Ok(None) };
        let (src_ptr, _src) = src.device_ptr(&self.stream);
        self.launch_crcs(&crcs, 0..plan.crc_chunks.len(), src_ptr, self.stream.cu_stream())?;
        Ok(Some(crcs))
    }

    /// The CRC kernel's inputs and outputs for the plan's `crc_chunks` (each checked to lie in
    /// the `len` staged bytes), uploaded and zeroed on the decoder's stream; `None` when the
    /// plan left no check to the GPU.
    fn crc_buffers(&self, plan: &Plan, len: usize) -> Result<Option<DeviceCrcs>, CudaError> {
        let chunks = &plan.crc_chunks;
        if chunks.is_empty() {
            return Ok(None);
        }
        if u32::try_from(chunks.len()).is_err() {
            return Err(CudaError::Invalid {
                tensor: String::new(),
                detail: "too many CRC chunks for one launch".into(),
            });
        }
        let outside = |c: &&WcCrcChunk| {
            !c.src.is_multiple_of(4) || c.src + u64::from(c.len & !CRC_COMPARE) > len as u64
        };
        if let Some(c) = chunks.iter().find(outside) {
            return Err(CudaError::Invalid {
                tensor: String::new(),
                detail: format!("a CRC chunk at {} of {} bytes outside the staging", c.src, c.len),
            });
        }
        if self.crc_tables.get().is_none() {
            let t = self.upload_array(&crate::crc::device_tables())?;
            let _ = self.crc_tables.set(t);
        }
        let s = &self.stream;
        Ok(Some(DeviceCrcs {
            chunks: self.upload_array(chunks)?,
            computed: s.alloc_zeros::<u32>(chunks.len()).map_err(driver)?,
            mismatch: s.alloc_zeros::<u32>(1).map_err(driver)?,
        }))
    }

    /// Enqueues the CRC kernel on `stream` over the chunks `which` of `crcs` (made by
    /// `crc_buffers`, whose uploads that stream must be ordered after) in the staged bytes at
    /// device address `src`.
    fn launch_crcs(
        &self,
        crcs: &DeviceCrcs,
        which: std::ops::Range<usize>,
        src: u64,
        stream: cudarc::driver::sys::CUstream,
    ) -> Result<(), CudaError> {
        let n = which.len() as u32;
        if n == 0 {
            return Ok(());
        }
        if which.end > crcs.computed.len() {
            return Err(CudaError::Driver("CRC chunks outside the plan's".into()));
        }
        let s = &self.stream;
        let tables = self.crc_tables.get().ok_or_else(|| {
            CudaError::Driver("the CRC tables were not uploaded before a CRC launch".into())
        })?;
        // Eight warps a block, each a chunk at a time; at most 8 blocks a multiprocessor.
        let blocks = n.div_ceil(8).min(8 * self.multiprocessors.max(1));
        let item = std::mem::size_of::<WcCrcChunk>() as u64;
        let (items_ptr, _items) = crcs.chunks.device_ptr(s);
        let (tables_ptr, _tables) = tables.device_ptr(s);
        let (out_ptr, _out) = crcs.computed.device_ptr(s);
        let (mismatch_ptr, _mismatch) = crcs.mismatch.device_ptr(s);
        self.ctx.bind_to_thread().map_err(driver)?;
        // SAFETY: `chunks` holds a WcCrcChunk per entry of `computed` (`crc_buffers`), each a
        // 4-aligned range inside the staged bytes at `src` (checked there against their
        // length), and `which` lies within them (checked above); `tables` holds
        // WC_CRC_TABLE_WORDS words (`device_tables`, whose length the abi test ties to the
        // header); `mismatch` has one word; all are live allocations of this context, used
        // after their uploads on a stream ordered after them.
        let code = unsafe {
            ffi::wc_crc32c_launch(
                items_ptr + which.start as u64 * item,
                n,
                src,
                tables_ptr,
                out_ptr + which.start as u64 * 4,
                mismatch_ptr,
                blocks,
                stream.cast(),
            )
        };
        runtime(code, "CRC kernel launch")
    }

    /// Checks what the CRC kernel wrote for `plan`: one word when every unit matched and the
    /// plan has no raw plane to combine, else every chunk's CRC.
    fn check_crcs(&self, plan: &Plan, dir: &Directory, crcs: &DeviceCrcs) -> Result<(), CudaError> {
        let mismatch = self.stream.clone_dtoh(&crcs.mismatch).map_err(driver)?;
        self.ctx.check_err().map_err(driver)?;
        if mismatch[0] == 0 && !plan.crc_planes_to_combine() {
            return Ok(());
        }
        let computed = self.stream.clone_dtoh(&crcs.computed).map_err(driver)?;
        plan.verify_crcs(dir, &computed)
    }

    /// Waits for the CRC kernel of `inputs` (uploaded for `plan`) and checks its results, once:
    /// the first mismatch in plan order is the error.
    pub(crate) fn verify_crcs(
        &self,
        plan: &Plan,
        dir: &Directory,
        inputs: &mut Inputs,
    ) -> Result<(), CudaError> {
        let Some(crcs) = inputs.crcs.take() else { return Ok(()) };
        self.check_crcs(plan, dir, &crcs)
    }

    /// Allocates a plan's outputs (those `given` has no address for) and uploads its units
    /// (their destinations made absolute) and merge pieces, for a launch over `inputs` (the
    /// plan's, or those of the plan it is a subset of).
    fn prepare<'i>(
        &self,
        plan: &Plan,
        inputs: &'i Inputs,
        given: &[Option<u64>],
        mut phases: Option<&mut Phases>,
    ) -> Result<Loaded<'i>, CudaError> {
        let (s, mut since) = (&self.stream, std::time::Instant::now());
        let outputs = self.allocate(&plan.outputs, given)?;
        mark(&mut phases, s, &mut since, "allocate the tensors")?;
        self.prepare_over(plan, inputs, outputs, phases)
    }

    /// Allocates a plan's `outputs` (those `given` has no address for): the buffers, and every
    /// output's device address.
    fn allocate(&self, outputs: &[Output], given: &[Option<u64>]) -> Result<Outputs, CudaError> {
        let s = &self.stream;
        let (all, mut outputs) = (outputs, Vec::with_capacity(outputs.len()));
        let mut bases = Vec::with_capacity(all.len());
        for (i, o) in all.iter().enumerate() {
            if let Some(&Some(base)) = given.get(i) {
                outputs.push(None);
                bases.push(base);
                continue;
            }
            if o.len == 0 {
                outputs.push(None);
                bases.push(0);
                continue;
            }
            // SAFETY: the allocation is left uninitialised; the planes of a tensor cover each
            // of its bytes once, so the launch writes every byte before anything reads them
            // (and device memory of any content is a valid `[u8]` to copy back).
            let buf = unsafe { s.alloc::<u8>(o.len as usize) }.map_err(driver)?;
            bases.push(buf.device_ptr(s).0);
            outputs.push(Some(buf));
        }
        Ok(Outputs { buffers: outputs, bases })
    }

    /// `prepare` with the outputs allocated: uploads the units and merge pieces.
    fn prepare_over<'i>(
        &self,
        plan: &Plan,
        inputs: &'i Inputs,
        outputs: Outputs,
        mut phases: Option<&mut Phases>,
    ) -> Result<Loaded<'i>, CudaError> {
        let (s, mut since) = (&self.stream, std::time::Instant::now());
        let records = records(plan, &outputs.bases);
        let loaded = self.load_records(plan, inputs, outputs.buffers, &records)?;
        mark(&mut phases, s, &mut since, "upload the units")?;
        Ok(loaded)
    }

    /// Uploads a plan's unit records and merge pieces (`records`, for the outputs `buffers`)
    /// for a launch over `inputs`.
    fn load_records<'i>(
        &self,
        plan: &Plan,
        inputs: &'i Inputs,
        buffers: Vec<Option<CudaSlice<u8>>>,
        (units, merges): &(Vec<WcUnit>, Vec<WcMerge>),
    ) -> Result<Loaded<'i>, CudaError> {
        Ok(Loaded {
            inputs,
            units: self.upload_array(units)?,
            status: self.stream.alloc_zeros::<u32>(units.len().max(1)).map_err(driver)?,
            merges: self.upload_array(merges)?,
            n_merges: merges.len() as u32,
            outputs: buffers,
            n_units: plan.units.len() as u32,
        })
    }

    /// `items` as bytes on the device, through the pinned windows (at least one byte).
    fn upload_array<T: bytemuck::Pod>(&self, items: &[T]) -> Result<CudaSlice<u8>, CudaError> {
        let bytes: &[u8] = bytemuck::cast_slice(items);
        self.upload(bytes.len(), |at, out| {
            out.copy_from_slice(&bytes[at as usize..at as usize + out.len()]);
        })
    }

    /// A device buffer of `len` bytes, each window `start..start + out.len()` of it filled on
    /// the host by `fill(start, out)`, on the host's cores, in pinned memory, while the window
    /// before it is copied to the device (the copies are enqueued on the decoder's stream).
    pub(crate) fn upload(
        &self,
        len: usize,
        fill: impl Fn(u64, &mut [u8]) + Sync,
    ) -> Result<CudaSlice<u8>, CudaError> {
        let s = &self.stream;
        // SAFETY: the allocation is left uninitialised; the windows below cover every byte,
        // and they are copied on this stream, before any launch on it reads them.
        let mut dst = unsafe { s.alloc::<u8>(len.max(1)) }.map_err(driver)?;
        let mut bounce = self.bounce.lock().unwrap_or_else(PoisonError::into_inner);
        let window = bounce.window_for(&self.ctx, len)?;
        let (base, dst_use) = dst.device_ptr_mut(s);
        for start in (0..len).step_by(window) {
            // `base + start .. + n` lies in `dst` (`start + n <= len`).
            bounce.copy_window(s, base + start as u64, (start, window.min(len - start)), &fill)?;
        }
        drop(dst_use); // records the copies as uses of `dst`
        Ok(dst)
    }

    /// Cuts the plan into the blocks of `config` and sizes their shared memory: a plane whose
    /// tables do not fit reads them from global memory.
    pub(crate) fn shape(&self, plan: &Plan, config: LaunchConfig) -> Result<Shape, CudaError> {
        self.shape_with(plan, config, &plan.ranges_for(&config, self.multiprocessors))
    }

    /// `shape` with the blocks `ranges` (runs of the plan's units, each in the group it names).
    fn shape_with(
        &self,
        plan: &Plan,
        config: LaunchConfig,
        ranges: &[WcRange],
    ) -> Result<Shape, CudaError> {
        // Column classes are compiled into one variant only.
        let config = config.for_plan(plan);
        let kernel = self
            .kernel_info(config.variant)
            .ok_or_else(|| CudaError::Driver(format!("no kernel variant {}", config.variant)))?;
        let max_warps = (kernel.max_threads_per_block / 32).max(1) as u32;
        if config.warps_per_block == 0 || config.warps_per_block > max_warps {
            return Err(CudaError::Driver(format!(
                "variant {} takes 1..={max_warps} warps per block, not {}",
                config.variant, config.warps_per_block
            )));
        }
        // Ring variants keep a ring per warp after the tables (sized for their largest block,
        // as `wc_decode_prepare` does).
        let ring = ring_bytes(config.variant, VARIANT_WARPS[config.variant as usize]);
        let limit = (kernel.max_dynamic_shared.max(0) as usize).saturating_sub(ring) / 4;
        let mut groups = plan.groups.clone();
        let mut smem_entries = 0usize;
        for g in &mut groups {
            // Whole 16-byte words: the rings after the tables need them to end aligned
            // (`ring_bytes`). Tables of 8..=12-bit probabilities always are.
            let entries = table_entries(g).next_multiple_of(4);
            if entries > limit && g.flags & GROUP_COMPACT_TABLES != 0 {
                // At most 16 tables of 5 KiB: never on the GPUs the kernels are built for.
                return Err(CudaError::Driver(format!(
                    "compact tables of {} bytes exceed the {} bytes of shared memory a block \
                     of variant {} has",
                    4 * entries,
                    4 * limit,
                    config.variant
                )));
            }
            if entries > limit {
                g.flags |= GROUP_GLOBAL_TABLES;
            } else {
                smem_entries = smem_entries.max(entries);
            }
        }
        self.ctx.bind_to_thread().map_err(driver)?;
        let smem_entries = smem_entries as u32;
        // Compact tables need the variant's twin that reads them.
        let kernel = config.variant | if plan.has_compact_tables() { VARIANT_COMPACT } else { 0 };
        // SAFETY: sets a launch attribute of one of the library's own kernels; `smem_entries`
        // is within the limit the runtime reported for this variant on this GPU.
        runtime(unsafe { ffi::wc_decode_prepare(kernel, smem_entries) }, "shared memory")?;
        Ok(Shape {
            config,
            kernel,
            n_groups: groups.len() as u32,
            n_ranges: if plan.units.is_empty() { 0 } else { ranges.len() as u32 },
            // Through the pinned windows: a copy from ordinary memory may wait for the stream.
            groups: self.upload_array(&groups)?,
            ranges: self.upload_array(ranges)?,
            smem_entries,
        })
    }

    /// The launch shape the decoder picks for a plan on this GPU.
    pub(crate) fn default_config(&self, plan: &Plan) -> LaunchConfig {
        if plan.has_column_classes() {
            return LaunchConfig::for_columns(plan.units.len(), self.multiprocessors);
        }
        let limit = self.kernel_info(0).map_or(0, |k| k.max_dynamic_shared.max(0) as usize);
        let smem = plan.max_table_bytes();
        let smem = if smem > limit { 0 } else { smem };
        // Warps a multiprocessor keeps: 64K registers, allocated per warp in units of 256.
        let resident = |variant: u32| {
            let regs = self.kernel_info(variant).map_or(64, |k| k.registers.max(1) as u32);
            65536 / (regs * 32).next_multiple_of(256)
        };
        LaunchConfig::choose(
            plan.units.len(),
            plan.groups.len(),
            plan.mean_unit_symbols(),
            smem,
            self.multiprocessors,
            resident(LaunchConfig::DEFAULT_VARIANT),
            plan.has_compact_tables(),
            plan.mostly_paired(),
        )
    }

    /// Enqueues `count` launches of the decode kernel over a loaded plan, back to back; with a
    /// timer, between its two events (recorded after every other host call of the launch).
    pub(crate) fn launch(
        &self,
        l: &mut Loaded,
        shape: &Shape,
        count: usize,
        timer: Option<(&CudaEvent, &CudaEvent)>,
    ) -> Result<(), CudaError> {
        let s = self.stream.cu_stream();
        self.enqueue(l, shape, Blocks::Shape { count, timer, merge: true }, s)
    }

    /// Enqueues the decode kernel over a loaded plan on `stream`: `count` launches of `shape`'s
    /// blocks, each followed by the merge launch when `merge`, between a timer's events; or
    /// one launch of some of a streamed decode's blocks (`Blocks::Piece`).
    fn enqueue(
        &self,
        l: &mut Loaded,
        shape: &Shape,
        blocks: Blocks,
        stream: cudarc::driver::sys::CUstream,
    ) -> Result<(), CudaError> {
        let s = &self.stream;
        let Loaded { inputs, units, status, outputs, merges, .. } = l;
        let Inputs { src, tables, maps, src_len, .. } = *inputs;
        // The guards make later users of these buffers (on other streams) wait for the
        // launches: they record each buffer's use when dropped, after the last launch (a
        // streamed decode's stream is ordered back into the decoder's before the buffers'
        // next use).
        let (src, _src) = src.device_ptr(s);
        let (units, _units) = units.device_ptr(s);
        let (groups, _groups) = shape.groups.device_ptr(s);
        let (ranges, _ranges) = shape.ranges.device_ptr(s);
        let (tables, _tables) = tables.device_ptr(s);
        let (maps, _maps) = maps.device_ptr(s);
        let (status, _status) = status.device_ptr_mut(s);
        let (merges, _merges) = merges.device_ptr(s);
        // A streamed decode's pieces leave the outputs' guards to the decode's end, after its
        // stream is ordered back into the decoder's (one guard is three driver calls, and a
        // model has hundreds of tensors: they cost a load of 192 tensors in 33 pieces 10 ms).
        let _outputs: Vec<_> = match blocks {
            Blocks::Shape { .. } => {
                outputs.iter_mut().flatten().map(|o| o.device_ptr_mut(s).1).collect()
            }
            Blocks::Piece(_) => Vec::new(),
        };
        let (ranges, n_ranges, count, merge, timer) = match blocks {
            Blocks::Shape { count, merge, timer } => (ranges, shape.n_ranges, count, merge, timer),
            Blocks::Piece(which) => {
                if which.end > shape.n_ranges as usize {
                    return Err(CudaError::Driver("blocks outside the launch's".into()));
                }
                let at = ranges + (which.start * std::mem::size_of::<WcRange>()) as u64;
                (at, which.len() as u32, 1, false, None)
            }
        };
        let (n_units, n_merges) = (l.n_units, l.n_merges);
        let args = WcLaunch {
            src,
            src_len: *src_len,
            units,
            groups,
            ranges,
            tables,
            maps,
            status,
            n_ranges,
            n_units,
            warps_per_block: shape.config.warps_per_block,
            smem_entries: shape.smem_entries,
            variant: shape.kernel,
            n_groups: shape.n_groups,
        };
        self.ctx.bind_to_thread().map_err(driver)?;
        if let Some((start, _)) = timer {
            start.record(s).map_err(driver)?;
        }
        for _ in 0..count {
            // SAFETY: every address in `args` is a live allocation of this context, held by
            // `l` and `shape` until the stream is done with it (they are freed on the decoder's
            // stream, after the launches, which a streamed decode's stream is ordered back
            // into). `src` holds the staged bytes every unit's range was checked against (a
            // streamed launch's blocks only read bytes already copied: `Plan::streamed`);
            // `units` has `n_units` entries whose destinations lie inside `outputs` (checked by
            // `Plan::build` against each output's length, its allocation's length); `ranges`
            // has `n_ranges` entries (a piece's lie within the shape's, checked above), runs of
            // `units` starting in the group they name; `groups` has `n_groups` entries whose
            // unit runs, tables (`tables`) and row maps (`maps`) are in bounds, and whose shared
            // tables fit `smem_entries` (else they are flagged to stay in global memory), which
            // `shape` prepared within the variant's limit; `status` has a word per unit; the
            // launcher checks the block size against the variant. `stream` is a stream of this
            // context, a valid cudaStream_t. Relaunching rewrites the same bytes.
            let code = unsafe { ffi::wc_decode_launch(&args, stream.cast()) };
            runtime(code, "decode kernel launch")?;
            if merge && n_merges > 0 {
                enqueue_merges(merges, n_merges, stream)?;
            }
        }
        if let Some((_, end)) = timer {
            end.record(s).map_err(driver)?;
        }
        Ok(())
    }

    fn check(&self, plan: &Plan, dir: &Directory, l: &Loaded) -> Result<(), CudaError> {
        // A damaged unit is a checksum error, whatever the kernel made of it.
        if let Some(crcs) = &l.inputs.crcs {
            self.check_crcs(plan, dir, crcs)?;
        }
        let status = self.stream.clone_dtoh(&l.status).map_err(driver)?;
        self.ctx.check_err().map_err(driver)?;
        plan.check_status(dir, &status[..plan.units.len()])
    }

    /// Decodes `plan` step by step, each step timed alone into `phases` (the stream waited for
    /// after each): the upload, the CRC kernel, the allocations, the launch, the checks.
    pub(crate) fn decode_steps(
        &self,
        plan: &Plan,
        file: &[u8],
        dir: &Directory,
        config: LaunchConfig,
        mut phases: Option<&mut Phases>,
    ) -> Result<Vec<Buffer>, CudaError> {
        let inputs = self.upload_inputs(plan, file, phases.as_deref_mut())?;
        self.decode_over(&inputs, plan, dir, config, phases)
    }

    /// Loads tensors of `file` into device memory: the compressed bytes go up from the start,
    /// laid out as `staging` says (`Plan::staging_of`), while another thread makes the plan
    /// (`make_plan`), allocates the tensors (beside the plan where `early_outputs` says what
    /// they are, `Plan::outputs_of`) and makes the units' records with their addresses.
    /// Once that is ready, the units and blocks go up between two windows, and from then on,
    /// every `step` bytes (`PlanOptions::streamed_launch_bytes`), the blocks and CRC checks
    /// whose bytes are all on the device are launched on the second stream, after an event
    /// recorded behind the copy that completes them (`Plan::streamed`): the GPU decodes and
    /// checks the bytes already there while the rest cross the bus. With `step` 0, or a launch
    /// shape of one block a multiprocessor, one launch follows the upload. A plan whose staging
    /// is not `staging` decodes nothing (`Load::StagingDiffers`). With `marks`, the host's
    /// progress is noted there (seconds from the start, nothing waited for).
    pub(crate) fn load(
        &self,
        file: &[u8],
        dir: &Directory,
        (staging, early_outputs): (&Staging, Option<&[Output]>),
        make_plan: impl FnOnce() -> Result<(Plan, LaunchConfig), CudaError> + Send,
        step: u64,
        mut marks: Option<&mut Phases>,
    ) -> Result<Load, CudaError> {
        let start = std::time::Instant::now();
        let since = move || start.elapsed().as_secs_f64();
        let mut mark = |what: &'static str, at: f64| {
            if let Some(m) = marks.as_deref_mut() {
                m.push((what, at));
            }
        };
        let s = &self.stream;
        let k = self.launch_stream()?.0;
        let len = staging.len as usize + STAGING_PAD;
        // SAFETY: the allocation is left uninitialised; the windows below cover every byte,
        // each copied on the decoder's stream before any launch that reads it.
        let mut src = Some(unsafe { s.alloc::<u8>(len) }.map_err(driver)?);
        let base = src.as_ref().map_or(0, |src| src.device_ptr(s).0);
        let inputs = std::cell::OnceCell::new();
        let event = || self.ctx.new_event(Some(CUevent_flags::CU_EVENT_DISABLE_TIMING));
        let (copied, decoded) = (event().map_err(driver)?, event().map_err(driver)?);
        let fill = |start, out: &mut [u8]| staging.fill_window(file, start, out);
        std::thread::scope(|scope| {
            let mut preparing = Some(scope.spawn(move || {
                // The tensors' memory, where the directory says what it is, beside the plan.
                let allocating = early_outputs.map(|o| scope.spawn(move || self.allocate(o, &[])));
                let (plan, config) = make_plan()?;
                let planned = since();
                if plan.segments != staging.segments || plan.staging_len != staging.len {
                    return Ok(Err(plan));
                }
                let allocated = allocating.map(|a| a.join().unwrap_or_else(|p| resume_unwind(p)));
                let outputs = match allocated {
                    Some(outputs) if early_outputs == Some(plan.outputs.as_slice()) => outputs?,
                    // Not the plan's outputs (freed first): the plan's.
                    other => {
                        drop(other);
                        self.allocate(&plan.outputs, &[])?
                    }
                };
                let records = records(&plan, &outputs.bases);
                let streamed = (step > 0 && config.units_per_block > 0)
                    .then(|| plan.streamed(config.units_per_block));
                let made = Made { plan, config, buffers: outputs.buffers, records, streamed };
                Ok::<_, CudaError>(Ok((made, planned, since())))
            }));
            let mut ready: Option<Ready> = None;
            let mut differs = None;
            let mut stream_in = || -> Result<(), CudaError> {
                let (mut blocks, mut checks, mut launched_at) = (0usize, 0usize, 0u64);
                let bounce = || self.bounce.lock().unwrap_or_else(PoisonError::into_inner);
                // Windows of at most `step` bytes, so that a launch can follow each.
                let window = bounce().window_for(&self.ctx, len)?;
                let window = if step > 0 { window.min(step as usize) } else { window };
                let mut done = 0usize;
                while done < len {
                    let n = window.min(len - done);
                    // Inside `src`: done + n <= len.
                    bounce().copy_window(s, base + done as u64, (done, n), &fill)?;
                    if done == 0 {
                        mark("first window enqueued", since());
                    }
                    done += n;
                    let (x, last) = (done as u64, done == len);
                    if !last && (step == 0 || x < launched_at + step) {
                        continue;
                    }
                    // The first launch waits for what the other thread makes, unless that
                    // would hold up the copies: then a later one does.
                    if ready.is_none() {
                        let prepared = preparing.as_ref().is_some_and(|p| p.is_finished());
                        if !prepared && !last {
                            continue;
                        }
                        let joined = preparing
                            .take()
                            .expect("prepared once")
                            .join()
                            .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
                        let (made, planned, prepared) = match joined {
                            Ok(made) => made,
                            Err(plan) => {
                                differs = Some(plan);
                                return Ok(());
                            }
                        };
                        mark("plan made (other thread)", planned);
                        mark("tensors allocated, records made (other thread)", prepared);
                        let Made { plan, config, buffers, records, streamed } = made;
                        let made = Inputs {
                            src: src.take().expect("the staging is moved once"),
                            tables: self.upload_array(&plan.tables)?,
                            maps: self.upload_array(&plan.maps)?,
                            src_len: len as u64,
                            crcs: self.crc_buffers(&plan, len)?,
                        };
                        let inputs = inputs.get_or_init(|| made);
                        let shape = match &streamed {
                            Some(streamed) => self.shape_with(&plan, config, &streamed.ranges)?,
                            None => self.shape(&plan, config)?,
                        };
                        let loaded = self.load_records(&plan, inputs, buffers, &records)?;
                        ready = Some(Ready { plan, streamed, shape, loaded });
                        mark("units and blocks enqueued", since());
                    }
                    let r = ready.as_mut().expect("made above");
                    let Some(streamed) = &r.streamed else { continue };
                    // Once every byte is up, every block and check (their ends lie within).
                    let (b, c) = if last {
                        (streamed.ranges.len(), streamed.crc_ends.len())
                    } else {
                        let b = streamed.range_ends.partition_point(|&e| e <= x);
                        (b, streamed.crc_ends.partition_point(|&e| e <= x))
                    };
                    if (b, c) == (blocks, checks) {
                        continue;
                    }
                    copied.record(s).map_err(driver)?;
                    // SAFETY: `k` is a live stream of this context, `copied` an event of it.
                    unsafe { result::stream::wait_event(k, copied.cu_event(), WAIT_DEFAULT) }
                        .map_err(driver)?;
                    if let Some(crcs) = &r.loaded.inputs.crcs {
                        self.launch_crcs(crcs, checks..c, base, k)?;
                    }
                    if b > blocks {
                        self.enqueue(&mut r.loaded, &r.shape, Blocks::Piece(blocks..b), k)?;
                    }
                    (blocks, checks, launched_at) = (b, c, x);
                }
                mark("last window enqueued", since());
                let r = ready.as_mut().expect("the last window joins");
                let l = &mut r.loaded;
                match &r.streamed {
                    Some(streamed) => {
                        let all = (streamed.ranges.len(), r.plan.crc_chunks.len());
                        if (blocks, checks) != all {
                            return Err(CudaError::Driver("a load left blocks out".into()));
                        }
                        if l.n_merges > 0 {
                            let (merges, _merges) = l.merges.device_ptr(s);
                            enqueue_merges(merges, l.n_merges, k)?;
                        }
                    }
                    None => {
                        // One launch on the decoder's stream, after the copies.
                        if let Some(crcs) = &l.inputs.crcs {
                            let all = 0..r.plan.crc_chunks.len();
                            self.launch_crcs(crcs, all, base, s.cu_stream())?;
                        }
                        self.launch(l, &r.shape, 1, None)?;
                    }
                }
                Ok(())
            };
            let streamed_in = stream_in();
            // Everything after this on the decoder's stream (the checks, the tensors' users,
            // the frees, also of a failed load's buffers) comes after the launches.
            // SAFETY: `k` is a live stream of this context, `decoded` an event of it.
            let ordered = unsafe { result::event::record(decoded.cu_event(), k) }
                .and_then(|()| s.wait(&decoded));
            if let Err(e) = ordered {
                // SAFETY: as above; the buffers are freed only once the launches are over.
                let _ = unsafe { result::stream::synchronize(k) };
                return Err(driver(e));
            }
            streamed_in?;
            if let Some(plan) = differs {
                return Ok(Load::StagingDiffers(plan));
            }
            let Ready { plan, mut loaded, .. } = ready.expect("loaded");
            // The tensors' next users on other streams wait for the launches' writes.
            for o in loaded.outputs.iter_mut().flatten() {
                drop(o.device_ptr_mut(s));
            }
            self.check(&plan, dir, &loaded)?;
            mark("decoded and checked", since());
            let buffers = self.tensor_buffers(loaded, &plan);
            Ok(Load::Decoded(plan, buffers))
        })
    }

    /// The decoder's second stream (`LaunchStream`), made on first use.
    fn launch_stream(&self) -> Result<&LaunchStream, CudaError> {
        if let Some(k) = self.launches.get() {
            return Ok(k);
        }
        self.ctx.bind_to_thread().map_err(driver)?;
        let made = result::stream::create(result::stream::StreamKind::NonBlocking);
        // Another thread may have made one meanwhile: this one is then destroyed.
        let _ = self.launches.set(LaunchStream(made.map_err(driver)?));
        Ok(self.launches.get().expect("set above"))
    }

    /// The tensors' buffers of a launch (scratch is freed on the stream, after the merge that
    /// reads it).
    fn tensor_buffers(&self, l: Loaded, plan: &Plan) -> Vec<Buffer> {
        l.outputs
            .into_iter()
            .zip(&plan.outputs)
            .filter(|(_, o)| !o.scratch)
            .map(|(data, _)| Buffer {
                data,
                stream: self.stream.clone(),
                bounce: self.bounce.clone(),
            })
            .collect()
    }

    /// Decodes `plan` over `inputs` (its own, or those of the plan it is a subset of).
    pub(crate) fn decode_over(
        &self,
        inputs: &Inputs,
        plan: &Plan,
        dir: &Directory,
        config: LaunchConfig,
        mut phases: Option<&mut Phases>,
    ) -> Result<Vec<Buffer>, CudaError> {
        let mut l = self.prepare(plan, inputs, &[], phases.as_deref_mut())?;
        self.launch_once(&mut l, plan, dir, config, phases)?;
        Ok(self.tensor_buffers(l, plan))
    }

    /// Allocates a plan's outputs, uploads its units and lays out its launch, once.
    pub(crate) fn prepare_launch<'i>(
        &self,
        inputs: &'i Inputs,
        plan: &Plan,
        config: LaunchConfig,
    ) -> Result<Prepared<'i>, CudaError> {
        let loaded = self.prepare(plan, inputs, &[], None)?;
        let shape = self.shape(plan, config)?;
        Ok(Prepared { loaded, shape })
    }

    /// Enqueues one launch of a prepared plan; no upload, no wait.
    pub(crate) fn launch_prepared(&self, p: &mut Prepared) -> Result<(), CudaError> {
        self.ctx.bind_to_thread().map_err(driver)?;
        // The kernel's shared memory limit is the kernel's, not the launch's: another launch
        // may have set it lower since `shape`.
        // SAFETY: as in `shape`: one of the library's own kernels, and the size `shape`
        // prepared within the variant's limit.
        let code = unsafe { ffi::wc_decode_prepare(p.shape.kernel, p.shape.smem_entries) };
        runtime(code, "shared memory")?;
        self.launch(&mut p.loaded, &p.shape, 1, None)
    }

    /// Waits for a prepared plan's launches and checks its units' status (of the last one).
    pub(crate) fn check_prepared(
        &self,
        plan: &Plan,
        dir: &Directory,
        p: &Prepared,
    ) -> Result<(), CudaError> {
        self.check(plan, dir, &p.loaded)
    }

    /// One launch of a prepared plan in `config`'s shape, and its units' status checked.
    fn launch_once(
        &self,
        l: &mut Loaded,
        plan: &Plan,
        dir: &Directory,
        config: LaunchConfig,
        mut phases: Option<&mut Phases>,
    ) -> Result<(), CudaError> {
        let (s, mut since) = (&self.stream, std::time::Instant::now());
        let shape = self.shape(plan, config)?;
        mark(&mut phases, s, &mut since, "lay out the launch")?;
        self.launch(l, &shape, 1, None)?;
        mark(&mut phases, s, &mut since, "decode (kernel)")?;
        self.check(plan, dir, l)?;
        mark(&mut phases, s, &mut since, "check the units' status")
    }

    /// `decode_over` into the caller's buffers for the plan's tensor outputs (in their order,
    /// each exactly its output's length, on this decoder's context); scratch is allocated.
    pub(crate) fn decode_over_into(
        &self,
        inputs: &Inputs,
        plan: &Plan,
        dir: &Directory,
        config: LaunchConfig,
        into: &mut [CudaViewMut<'_, u8>],
    ) -> Result<(), CudaError> {
        let s = &self.stream;
        let tensors: Vec<usize> =
            (0..plan.outputs.len()).filter(|&i| !plan.outputs[i].scratch).collect();
        let invalid = |tensor: String, detail: String| CudaError::Invalid { tensor, detail };
        if into.len() != tensors.len() {
            let detail = format!("{} output buffers for {} tensors", into.len(), tensors.len());
            return Err(invalid(String::new(), detail));
        }
        for (&i, view) in tensors.iter().zip(into.iter()) {
            let (o, name) = (&plan.outputs[i], || dir.tensors[plan.outputs[i].tensor].name.clone());
            if view.len() as u64 != o.len {
                let detail =
                    format!("an output buffer of {} bytes for {} bytes", view.len(), o.len);
                return Err(invalid(name(), detail));
            }
            if o.len > 0 && !Arc::ptr_eq(view.stream().context(), &self.ctx) {
                return Err(invalid(name(), "an output buffer of another CUDA context".into()));
            }
        }
        // The guards make later users of the buffers wait for the launch (recorded on drop).
        let mut given = vec![None; plan.outputs.len()];
        let mut guards = Vec::with_capacity(tensors.len());
        for (&i, view) in tensors.iter().zip(into.iter_mut()) {
            if plan.outputs[i].len > 0 {
                let (base, guard) = view.device_ptr_mut(s);
                given[i] = Some(base);
                guards.push(guard);
            }
        }
        let mut l = self.prepare(plan, inputs, &given, None)?;
        self.launch_once(&mut l, plan, dir, config, None)?;
        drop(guards);
        Ok(())
    }

    /// Times each shape over one loaded plan: after `warmup` untimed launches, `iters` times
    /// `batch` launches back to back between two events (seconds per launch); then checks the
    /// status words and every output against `crcs`.
    pub(crate) fn bench(
        &self,
        plan: &Plan,
        file: &[u8],
        dir: &Directory,
        configs: &[LaunchConfig],
        (warmup, iters, batch): (usize, usize, usize),
        crcs: &[u32],
    ) -> Result<Vec<Vec<f64>>, CudaError> {
        let inputs = self.upload_inputs(plan, file, None)?;
        let mut l = self.prepare(plan, &inputs, &[], None)?;
        let event = || self.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(driver);
        let (start, end) = (event()?, event()?);
        let batch = batch.max(1);
        let mut all = Vec::with_capacity(configs.len());
        for &config in configs {
            let shape = self.shape(plan, config)?;
            self.launch(&mut l, &shape, warmup, None)?;
            let mut times = Vec::with_capacity(iters);
            for _ in 0..iters.max(1) {
                self.launch(&mut l, &shape, batch, Some((&start, &end)))?;
                let ms = start.elapsed_ms(&end).map_err(driver)?;
                times.push(f64::from(ms) / 1e3 / batch as f64);
            }
            self.check(plan, dir, &l)?;
            all.push(times);
        }
        let tensors = l.outputs.iter().zip(&plan.outputs).filter(|(_, o)| !o.scratch);
        for (i, ((o, _), &crc)) in tensors.zip(crcs).enumerate() {
            if let Some(o) = o {
                let bytes = self.stream.clone_dtoh(o).map_err(driver)?;
                let computed = wcodec_format::crc32c(&bytes);
                if computed != crc {
                    let what = format!("benchmarked output {i}");
                    return Err(CudaError::Checksum { what, stored: crc, computed });
                }
            }
        }
        Ok(all)
    }

    /// Seconds (wall clock) of `upload(len, fill)` until the copies are done.
    pub(crate) fn upload_seconds(
        &self,
        len: usize,
        fill: impl Fn(u64, &mut [u8]) + Sync,
    ) -> Result<f64, CudaError> {
        let start = std::time::Instant::now();
        let uploaded = self.upload(len, fill)?;
        self.stream.synchronize().map_err(driver)?;
        let seconds = start.elapsed().as_secs_f64();
        drop(uploaded);
        self.synchronize()?;
        Ok(seconds)
    }

    /// Waits for everything enqueued on the decoder's stream (frees included).
    pub(crate) fn synchronize(&self) -> Result<(), CudaError> {
        self.stream.synchronize().map_err(driver)
    }

    /// Seconds (wall clock) of one copy of `host` (ordinary, pageable memory) to the device.
    pub(crate) fn pageable_upload_seconds(&self, host: &[u8]) -> Result<f64, CudaError> {
        if host.is_empty() {
            return Ok(0.0); // nothing to allocate or copy
        }
        let start = std::time::Instant::now();
        let uploaded = self.stream.clone_htod(host).map_err(driver)?;
        self.stream.synchronize().map_err(driver)?;
        let seconds = start.elapsed().as_secs_f64();
        drop(uploaded);
        self.synchronize()?;
        Ok(seconds)
    }

    pub(crate) fn copy_bandwidth(&self, bytes: usize, iters: usize) -> Result<f64, CudaError> {
        let s = &self.stream;
        let a = s.alloc_zeros::<u8>(bytes).map_err(driver)?;
        let mut b = s.alloc_zeros::<u8>(bytes).map_err(driver)?;
        let event = || self.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(driver);
        let (start, end) = (event()?, event()?);
        s.memcpy_dtod(&a, &mut b).map_err(driver)?;
        let mut times = Vec::new();
        for _ in 0..iters.max(1) {
            start.record(s).map_err(driver)?;
            s.memcpy_dtod(&a, &mut b).map_err(driver)?;
            end.record(s).map_err(driver)?;
            times.push(f64::from(start.elapsed_ms(&end).map_err(driver)?) / 1e3);
        }
        times.sort_by(f64::total_cmp);
        Ok(2.0 * bytes as f64 / times[times.len() / 2] / 1e9)
    }
}

impl Buffer {
    pub(crate) fn len(&self) -> usize {
        self.data.as_ref().map_or(0, |d| d.len())
    }

    pub(crate) fn device_ptr(&self) -> u64 {
        self.data.as_ref().map_or(0, |d| d.device_ptr(&self.stream).0)
    }

    pub(crate) fn slice(&self) -> Option<&CudaSlice<u8>> {
        self.data.as_ref()
    }

    /// Copies the buffer back window by window through the pinned buffers, handing each
    /// window (its offset and bytes) to `sink` in order while the next ones are copied;
    /// returns the CRC-32C of the whole, taken on the host's cores as the windows arrive.
    pub(crate) fn download(
        &self,
        mut sink: impl FnMut(usize, &[u8]) -> Result<(), CudaError> + Send,
    ) -> Result<u32, CudaError> {
        let Some(data) = &self.data else { return Ok(0) };
        let (s, len) = (&self.stream, data.len());
        let mut bounce = self.bounce.lock().unwrap_or_else(PoisonError::into_inner);
        let window = bounce.window_for(s.context(), len)?;
        let (base, data_use) = data.device_ptr(s);
        let windows = len.div_ceil(window);
        let enqueue = |bounce: &mut Bounce, k: usize| -> Result<(), CudaError> {
            let (start, n) = (k * window, window.min(len - k * window));
            let (buffer, copied) = &mut bounce.buffers[k % BOUNCE_BUFFERS];
            copied.synchronize().map_err(driver)?;
            let host = &mut buffer.as_mut_slice().map_err(driver)?[..n];
            // SAFETY: `base + start .. + n` lies in `data` (`start + n <= len`), which the
            // stream has written (its uses are ordered on it); `host` is pinned memory that is
            // neither read nor written until `copied`, recorded right after, has completed.
            unsafe { result::memcpy_dtoh_async(host, base + start as u64, s.cu_stream()) }
                .map_err(driver)?;
            copied.record(s).map_err(driver)
        };
        for k in 0..windows.min(BOUNCE_BUFFERS) {
            enqueue(&mut bounce, k)?;
        }
        let mut crcs = Vec::with_capacity(len.div_ceil(FILL_PIECE));
        for k in 0..windows {
            let (start, n) = (k * window, window.min(len - k * window));
            let (buffer, copied) = &bounce.buffers[k % BOUNCE_BUFFERS];
            copied.synchronize().map_err(driver)?;
            let host = &buffer.as_slice().map_err(driver)?[..n];
            let (sunk, piece_crcs) = rayon::join(
                || sink(start, host),
                || host.par_chunks(FILL_PIECE).map(wcodec_format::crc32c).collect::<Vec<_>>(),
            );
            sunk?;
            crcs.extend(piece_crcs);
            if k + BOUNCE_BUFFERS < windows {
                enqueue(&mut bounce, k + BOUNCE_BUFFERS)?;
            }
        }
        drop(data_use);
        Ok(wcodec_format::checksum::combine_parts(&crcs, FILL_PIECE as u64, len as u64))
    }

    /// The buffer's bytes in host memory, and their CRC-32C.
    pub(crate) fn to_host(&self) -> Result<(Vec<u8>, u32), CudaError> {
        let mut out = vec![0u8; self.len()];
        let crc = self.download(|start, window| {
            out[start..start + window.len()]
                .par_chunks_mut(FILL_PIECE)
                .zip(window.par_chunks(FILL_PIECE))
                .for_each(|(o, w)| o.copy_from_slice(w));
            Ok(())
        })?;
        Ok((out, crc))
    }
}
