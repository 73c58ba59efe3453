//! The settings of an ONNX Runtime session: execution providers in order of
//! preference, their options, threads, the SHA-256 pin and the arena cap.

use std::fmt;
use std::path::PathBuf;

use ort::ep::{ExecutionProviderDispatch, TensorRT, CPU, CUDA};

use crate::contract::Precision;
use crate::error::InferenceError;

/// Most threads either thread pool may be given.
pub const MAX_THREADS: usize = 256;

/// An ONNX Runtime execution provider and its settings.
///
/// The GPU providers need an ONNX Runtime library built with them (the
/// `onnxruntime-gpu` wheel has CUDA and TensorRT; TensorRT itself, libnvinfer,
/// must also be installed). Registration failures are errors unless
/// [`OnnxConfig::allow_fallback`] says otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExecutionProvider {
    /// ONNX Runtime's default CPU provider (MLAS kernels), with its memory
    /// arena.
    Cpu,
    /// NVIDIA CUDA (cuBLAS/cuDNN kernels).
    Cuda(CudaOptions),
    /// NVIDIA TensorRT (engines built per model, optionally FP16/INT8).
    TensorRt(TensorRtOptions),
}

/// Settings of the CUDA provider.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CudaOptions {
    /// GPU ordinal.
    pub device_id: i32,
    /// Cap of the provider's memory arena in bytes (`gpu_mem_limit`); `None`
    /// leaves ONNX Runtime's default (no cap).
    pub memory_limit: Option<usize>,
}

/// Settings of the TensorRT provider.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TensorRtOptions {
    /// GPU ordinal.
    pub device_id: i32,
    /// The lowest precision TensorRT may pick kernels in: `Fp32`, `Fp16`,
    /// or `Int8` (INT8 where it can, FP16 elsewhere; needs a calibration
    /// table unless the model is already quantized, QDQ).
    pub precision: Precision,
    /// INT8 calibration table (TensorRT's cache format; see
    /// `deploy/training/precision.py`).
    pub int8_calibration_table: Option<PathBuf>,
    /// Directory where built engines are cached (enables the cache).
    pub engine_cache: Option<PathBuf>,
    /// Directory of the timing cache (enables it).
    pub timing_cache: Option<PathBuf>,
    /// Builder workspace in bytes; `None` leaves TensorRT's default.
    pub max_workspace: Option<usize>,
}

impl ExecutionProvider {
    /// Short name, as used in logs, configs and bench names: `cpu`, `cuda`,
    /// `tensorrt`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ExecutionProvider::Cpu => "cpu",
            ExecutionProvider::Cuda(_) => "cuda",
            ExecutionProvider::TensorRt(_) => "tensorrt",
        }
    }

    /// The provider as ONNX Runtime registers it: every option set from the
    /// settings, and a registration failure an error unless `fallback`.
    pub fn dispatch(&self, fallback: bool) -> ExecutionProviderDispatch {
        let d = match self {
            ExecutionProvider::Cpu => CPU::default().with_arena_allocator(true).build(),
            ExecutionProvider::Cuda(o) => {
                let mut ep = CUDA::default().with_device_id(o.device_id);
                if let Some(limit) = o.memory_limit {
                    ep = ep.with_memory_limit(limit);
                }
                ep.build()
            }
            ExecutionProvider::TensorRt(o) => tensorrt(o).build(),
        };
        if fallback {
            d
        } else {
            d.error_on_failure()
        }
    }
}

/// The TensorRT provider with `o`'s settings (tested as far as this
/// machine allows: TensorRT itself is not installed here).
fn tensorrt(o: &TensorRtOptions) -> TensorRT {
    let mut ep = TensorRT::default()
        .with_device_id(o.device_id)
        .with_fp16(o.precision != Precision::Fp32)
        .with_int8(o.precision == Precision::Int8);
    if let Some(t) = &o.int8_calibration_table {
        ep = ep
            .with_int8_calibration_table_name(t.display())
            .with_int8_use_native_calibration_table(false);
    }
    if let Some(dir) = &o.engine_cache {
        ep = ep
            .with_engine_cache(true)
            .with_engine_cache_path(dir.display());
    }
    if let Some(dir) = &o.timing_cache {
        ep = ep
            .with_timing_cache(true)
            .with_timing_cache_path(dir.display());
    }
    if let Some(w) = o.max_workspace {
        ep = ep.with_max_workspace_size(w);
    }
    ep
}

impl ExecutionProvider {
    /// Whether the loaded ONNX Runtime library was built with this provider
    /// (it may still fail to start, e.g. without a GPU).
    pub fn is_built_in(&self) -> bool {
        use ort::ep::ExecutionProvider as _;
        match self {
            ExecutionProvider::Cpu => true,
            ExecutionProvider::Cuda(_) => CUDA::is_available().unwrap_or(false),
            ExecutionProvider::TensorRt(_) => TensorRT::is_available().unwrap_or(false),
        }
    }
}

impl fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings for [`OnnxEngine::load`](crate::OnnxEngine::load).
///
/// ```
/// # use tapstream_inference::OnnxConfig;
/// let cfg = OnnxConfig {
///     intra_threads: 2,
///     sha256: Some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into()),
///     ..OnnxConfig::default()
/// };
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnnxConfig {
    /// The ONNX Runtime library to load; `None` searches as
    /// [`ort_library`](crate::ort_library) describes. One library per
    /// process: the first load decides, and naming another later is an error.
    pub library: Option<PathBuf>,
    /// Threads that parallelise work inside one operator (1..=256).
    pub intra_threads: usize,
    /// Threads that run independent operators concurrently (1..=256); more
    /// than 1 turns on ONNX Runtime's parallel execution mode.
    pub inter_threads: usize,
    /// Expected SHA-256 of the model file (64 hex digits, any case); a
    /// mismatch refuses the model.
    pub sha256: Option<String>,
    /// Execution providers in order of preference (ONNX Runtime gives each
    /// node to the first that supports it). Empty means CPU only.
    pub providers: Vec<ExecutionProvider>,
    /// When false (the default), a provider that cannot be registered is an
    /// error, and without `Cpu` in the list no node may fall back to the CPU;
    /// when true, ONNX Runtime skips such providers and falls back.
    pub allow_fallback: bool,
    /// Cap in bytes of the CPU memory arena all sessions of the process
    /// share; an inference needing more fails with an error. `None`: no cap
    /// (each session has its own growing arena). One cap per process.
    pub cpu_arena_limit: Option<usize>,
}

impl Default for OnnxConfig {
    /// The library search path, one thread per pool, no pin.
    fn default() -> Self {
        OnnxConfig {
            library: None,
            intra_threads: 1,
            inter_threads: 1,
            sha256: None,
            providers: vec![ExecutionProvider::Cpu],
            allow_fallback: false,
            cpu_arena_limit: None,
        }
    }
}

impl OnnxConfig {
    /// Checks the settings; returns the normalised (lower-case) pin, if any.
    pub(super) fn validate(&self) -> Result<Option<String>, InferenceError> {
        for (field, value) in [
            ("intra_threads", self.intra_threads),
            ("inter_threads", self.inter_threads),
        ] {
            if !(1..=MAX_THREADS).contains(&value) {
                return Err(InferenceError::InvalidConfig {
                    field,
                    reason: format!("{value} is not between 1 and {MAX_THREADS}"),
                });
            }
        }
        self.sha256
            .as_deref()
            .map(super::checks::normalise_pin)
            .transpose()
    }

    /// The execution providers to register, in order of preference.
    pub(super) fn providers(&self) -> Vec<ExecutionProvider> {
        if self.providers.is_empty() {
            vec![ExecutionProvider::Cpu]
        } else {
            self.providers.clone()
        }
    }
}
