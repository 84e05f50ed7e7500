//! The backend of a build without kernels (no `cuda` feature, or no nvcc when it was built):
//! `Gpu::new` says so with `CudaError::NotAvailable`, so no `Gpu`, `Buffer` or `Inputs` is ever
//! made and their other methods are never called.

use wcodec_format::Directory;

use crate::plan::{LaunchConfig, Output, Plan, Staging};
use crate::{CudaError, KernelInfo};

fn not_built() -> CudaError {
    CudaError::NotAvailable(if cfg!(feature = "cuda") {
        "wcodec-cuda was built with the `cuda` feature but without nvcc; set CUDA_HOME or run \
         `cargo xtask cuda-toolchain`, then rebuild"
            .into()
    } else {
        "wcodec-cuda was built without the `cuda` feature".into()
    })
}

pub(crate) type Phases = Vec<(&'static str, f64)>;

#[derive(Debug)]
pub(crate) struct Gpu(());

#[derive(Debug)]
pub(crate) struct Buffer(());

#[derive(Debug)]
pub(crate) struct Inputs(());

/// As the kernels' backend's: never made here.
#[allow(dead_code)]
pub(crate) enum Load {
    Decoded(Plan, Vec<Buffer>),
    StagingDiffers(Plan),
}

impl Inputs {
    pub(crate) fn len(&self) -> u64 {
        0
    }
}

impl Gpu {
    pub(crate) fn new(_ordinal: usize) -> Result<Gpu, CudaError> {
        Err(not_built())
    }

    pub(crate) fn name(&self) -> &str {
        ""
    }

    pub(crate) fn multiprocessors(&self) -> u32 {
        0
    }

    pub(crate) fn kernel_info(&self, _variant: u32) -> Option<KernelInfo> {
        None
    }

    pub(crate) fn default_config(&self, plan: &Plan) -> LaunchConfig {
        if plan.has_column_classes() {
            return LaunchConfig::for_columns(plan.units.len(), 1);
        }
        LaunchConfig::choose(
            plan.units.len(),
            plan.groups.len(),
            plan.mean_unit_symbols(),
            0,
            1,
            32,
            false,
            plan.mostly_paired(),
        )
    }

    pub(crate) fn decode_steps(
        &self,
        _plan: &Plan,
        _file: &[u8],
        _dir: &Directory,
        _config: LaunchConfig,
        _phases: Option<&mut Phases>,
    ) -> Result<Vec<Buffer>, CudaError> {
        Err(not_built())
    }

    pub(crate) fn load(
        &self,
        _file: &[u8],
        _dir: &Directory,
        _early: (&Staging, Option<&[Output]>),
        _make_plan: impl FnOnce() -> Result<(Plan, LaunchConfig), CudaError> + Send,
        _step: u64,
        _marks: Option<&mut Phases>,
    ) -> Result<Load, CudaError> {
        Err(not_built())
    }

    pub(crate) fn upload_inputs(
        &self,
        _plan: &Plan,
        _file: &[u8],
        _phases: Option<&mut Phases>,
    ) -> Result<Inputs, CudaError> {
        Err(not_built())
    }

    pub(crate) fn verify_crcs(
        &self,
        _plan: &Plan,
        _dir: &Directory,
        _inputs: &mut Inputs,
    ) -> Result<(), CudaError> {
        Err(not_built())
    }

    pub(crate) fn decode_over(
        &self,
        _inputs: &Inputs,
        _plan: &Plan,
        _dir: &Directory,
        _config: LaunchConfig,
        _phases: Option<&mut Phases>,
    ) -> Result<Vec<Buffer>, CudaError> {
        Err(not_built())
    }

    pub(crate) fn bench(
        &self,
        _plan: &Plan,
        _file: &[u8],
        _dir: &Directory,
        _configs: &[LaunchConfig],
        _runs: (usize, usize, usize),
        _crcs: &[u32],
    ) -> Result<Vec<Vec<f64>>, CudaError> {
        Err(not_built())
    }

    pub(crate) fn upload_seconds(
        &self,
        _len: usize,
        _fill: impl Fn(u64, &mut [u8]) + Sync,
    ) -> Result<f64, CudaError> {
        Err(not_built())
    }

    pub(crate) fn synchronize(&self) -> Result<(), CudaError> {
        Err(not_built())
    }

    pub(crate) fn pageable_upload_seconds(&self, _host: &[u8]) -> Result<f64, CudaError> {
        Err(not_built())
    }

    pub(crate) fn copy_bandwidth(&self, _bytes: usize, _iters: usize) -> Result<f64, CudaError> {
        Err(not_built())
    }
}

impl Buffer {
    pub(crate) fn len(&self) -> usize {
        0
    }

    pub(crate) fn device_ptr(&self) -> u64 {
        0
    }

    pub(crate) fn to_host(&self) -> Result<(Vec<u8>, u32), CudaError> {
        Err(not_built())
    }

    pub(crate) fn download(
        &self,
        _sink: impl FnMut(usize, &[u8]) -> Result<(), CudaError> + Send,
    ) -> Result<u32, CudaError> {
        Err(not_built())
    }
}
