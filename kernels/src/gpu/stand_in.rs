//! The stand-in for the CUDA executor in builds without the `cuda`
//! feature: the same API, and no device.
//!
//! Why: code that chooses the GPU (the runtime, the tools, device-resident
//! scoring) is written once, against this API, instead of behind a `cfg`
//! arm at every use. Here [`CudaDevice::open`] always fails with a clear
//! error, and nothing else can be reached: every other value needs a
//! device, and the stand-in's types cannot be built (candle's dummy CUDA
//! backend is the pattern).

use std::path::Path;

pub use super::device::{DeviceInfo, Phase, PhaseTimes, PHASES};
use super::flag::{Flagged, ScoreLayout};
use super::records::{BatchExecutor, Columns, GpuError, RecordBatch};
use super::ModelInput;

/// No value of this type exists: it makes the stand-in's types empty.
#[derive(Clone, Copy, Debug)]
enum Never {}

/// False: this build cannot load the CUDA libraries.
pub fn libraries_present() -> bool {
    false
}

/// A GPU; in this build none can be opened.
#[derive(Clone, Debug)]
pub struct CudaDevice(Never);

impl CudaDevice {
    /// Always [`GpuError::NotBuilt`].
    pub fn open(_ordinal: usize, _ptx_cache: Option<&Path>) -> Result<Self, GpuError> {
        Err(GpuError::NotBuilt)
    }

    /// What the device is.
    pub fn info(&self) -> &DeviceInfo {
        match self.0 {}
    }

    /// Columns for one batch in pinned host memory.
    pub fn pinned_columns(&self, _cap: usize, _fin_cap: usize) -> Result<Columns, GpuError> {
        match self.0 {}
    }

    /// The device's ordinal.
    pub fn ordinal(&self) -> usize {
        match self.0 {}
    }

    /// A [`ScoreFlagger`] on this device.
    pub fn flagger(&self, _rows: usize) -> Result<ScoreFlagger, GpuError> {
        match self.0 {}
    }

    /// `values` copied to this device.
    pub fn upload_f32(&self, _values: &[f32]) -> Result<DeviceF32, GpuError> {
        match self.0 {}
    }

    /// An executor on this device.
    pub fn executor(
        &self,
        _cap: usize,
        _activity_timeout_us: i64,
    ) -> Result<CudaExecutor, GpuError> {
        match self.0 {}
    }
}

/// Runs record batches on a GPU; none exists in this build.
pub struct CudaExecutor(Never);

impl CudaExecutor {
    /// The device the executor runs on.
    pub fn device(&self) -> &CudaDevice {
        match self.0 {}
    }

    /// Whether feature rows are copied back to the host.
    pub fn set_copy_rows(&mut self, _copy: bool) {
        match self.0 {}
    }

    /// Waits for the oldest submitted batch.
    pub fn wait_oldest(&mut self) -> Result<(), GpuError> {
        match self.0 {}
    }

    /// Builds each batch's model-input matrix on the device from now on.
    pub fn set_model_input(
        &mut self,
        _input: Option<&ModelInput>,
        _copy_back: bool,
    ) -> Result<(), GpuError> {
        match self.0 {}
    }

    /// The device model-input matrix of the batch finished last.
    pub fn finished_model_input(&self) -> Option<(u64, usize, usize)> {
        match self.0 {}
    }

    /// Model inputs of the batches finished so far, when copied back.
    pub fn take_model_inputs(&mut self) -> Vec<f32> {
        match self.0 {}
    }

    /// Times every phase of the batches submitted from now on.
    pub fn set_profile(&mut self, _on: bool) -> Result<(), GpuError> {
        match self.0 {}
    }

    /// Phase times summed over the batches finished since profiling began.
    pub fn profile(&self) -> Option<&PhaseTimes> {
        match self.0 {}
    }
}

impl BatchExecutor for CudaExecutor {
    fn submit(&mut self, _batch: &RecordBatch) -> Result<(), GpuError> {
        match self.0 {}
    }

    fn finish(&mut self, _rows: &mut Vec<f64>) -> Result<(), GpuError> {
        match self.0 {}
    }

    fn columns(&mut self, _cap: usize, _fin_cap: usize) -> Result<Columns, GpuError> {
        match self.0 {}
    }
}

/// `f32` values in device memory; none exist in this build.
pub struct DeviceF32(Never);

impl DeviceF32 {
    /// The device address of the first value.
    pub fn device_ptr(&self) -> u64 {
        match self.0 {}
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self.0 {}
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        match self.0 {}
    }
}

/// Flags the rows of a model output on the device; none exists in this
/// build.
pub struct ScoreFlagger(Never);

impl ScoreFlagger {
    /// The rows of a model output at or above `threshold`.
    ///
    /// # Safety
    /// As the CUDA build's `ScoreFlagger::flag`: `output` must be a device
    /// address of `rows × layout.columns()` complete `f32` values.
    pub unsafe fn flag(
        &mut self,
        _output: u64,
        _rows: usize,
        _layout: ScoreLayout,
        _threshold: f32,
        _out: &mut Vec<Flagged>,
    ) -> Result<(), GpuError> {
        match self.0 {}
    }
}
