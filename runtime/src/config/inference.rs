//! `[inference]`: ONNX Runtime, its execution providers, batching, and
//! where the model runs.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tapstream_inference::{CudaOptions, ExecutionProvider, OnnxConfig, Precision, TensorRtOptions};

use super::{in_range, invalid, ConfigError};

/// An ONNX Runtime execution provider, by its configuration name.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// NVIDIA TensorRT (`tensorrt`).
    Tensorrt,
    /// NVIDIA CUDA (`cuda`).
    Cuda,
    /// The CPU (`cpu`).
    Cpu,
}

impl Provider {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Tensorrt => "tensorrt",
            Provider::Cuda => "cuda",
            Provider::Cpu => "cpu",
        }
    }
}

/// Which threads run the model.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// The consumer thread scores every flow (one session).
    #[default]
    Consumer,
    /// Each flow worker scores the flows it ends before handing them off
    /// (one session per worker); the consumer only writes alerts. Flow rows
    /// from Kafka have no flow workers: the consumer scores those.
    Workers,
}

/// `[inference]`: ONNX Runtime and batching.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceSection {
    /// Path of `libonnxruntime.so`. Default: `ORT_DYLIB_PATH`, then
    /// `.deps/onnxruntime/` (made by `scripts/fetch-onnxruntime.sh`).
    pub onnxruntime_library: Option<PathBuf>,
    /// Rows per inference call at most (1..=1,048,576).
    pub batch_rows: usize,
    /// Longest time a flow waits for its batch to fill before it is scored
    /// anyway (wall time; 0 scores whatever is there at once). At most 60 s.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// ONNX Runtime intra-op threads (1..=256).
    pub intra_threads: usize,
    /// ONNX Runtime inter-op threads (1..=256).
    pub inter_threads: usize,
    /// Execution providers in order of preference: `tensorrt`, `cuda`,
    /// `cpu` (each at most once; another name is an error). The GPU ones
    /// need ONNX Runtime built with them (`onnxruntime-gpu`), and TensorRT
    /// needs libnvinfer.
    pub providers: Vec<Provider>,
    /// When false, a provider that cannot be registered is an error and, with
    /// `cpu` not listed, no node may run on the CPU; when true, ONNX Runtime
    /// skips such providers and falls back (logged, never silent).
    pub allow_fallback: bool,
    /// Cap in MiB of the CPU memory arena all inference sessions share; an
    /// inference needing more fails (and is reported) instead of growing
    /// memory. 0: no cap.
    pub cpu_arena_limit_mib: u64,
    /// Where the model runs: `consumer` (one thread scores every flow) or
    /// `workers` (each flow worker scores its own flows, one session each,
    /// so inference scales with the workers).
    pub placement: Placement,
    /// CUDA provider settings.
    pub cuda: CudaSection,
    /// TensorRT provider settings.
    pub tensorrt: TensorRtSection,
}

impl Default for InferenceSection {
    fn default() -> Self {
        InferenceSection {
            onnxruntime_library: None,
            batch_rows: 1024,
            max_delay: Duration::from_millis(50),
            intra_threads: 1,
            inter_threads: 1,
            providers: vec![Provider::Cpu],
            allow_fallback: false,
            cpu_arena_limit_mib: 0,
            placement: Placement::Consumer,
            cuda: CudaSection::default(),
            tensorrt: TensorRtSection::default(),
        }
    }
}

/// `[inference.cuda]`: the CUDA execution provider.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CudaSection {
    /// GPU ordinal.
    pub device_id: u32,
    /// Cap of the provider's memory arena in MiB (`gpu_mem_limit`); 0 = no
    /// cap. Per session (with `placement = "workers"`, one per flow worker
    /// besides the consumer's).
    pub memory_limit_mib: u64,
}

/// `[inference.tensorrt]`: the TensorRT execution provider. TensorRT
/// (libnvinfer) is not installed on the machines this project is tested
/// on: these settings are checked and passed on, never run there.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(try_from = "TensorRtToml")]
pub struct TensorRtSection {
    /// GPU ordinal.
    pub device_id: u32,
    /// The lowest precision TensorRT may choose kernels in: `fp32` (the
    /// default), `fp16`, or `int8` (INT8 where it can, FP16 elsewhere; a
    /// calibration table is needed unless the model is quantized already).
    pub precision: Precision,
    /// INT8 calibration table (TensorRT cache format), e.g.
    /// `models/cic-mlp.trt-calibration.cache`.
    pub int8_calibration_table: Option<PathBuf>,
    /// Directory caching built engines.
    pub engine_cache: Option<PathBuf>,
    /// Directory of the timing cache.
    pub timing_cache: Option<PathBuf>,
    /// Builder workspace in MiB; 0 = TensorRT's default.
    pub workspace_mib: u64,
}

/// `[inference.tensorrt]` as written: `precision`, or the two switches
/// that said the same before it (`fp16`, `int8`), still read so that
/// existing configuration files keep working.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TensorRtToml {
    device_id: u32,
    precision: Option<Precision>,
    fp16: Option<bool>,
    int8: Option<bool>,
    int8_calibration_table: Option<PathBuf>,
    engine_cache: Option<PathBuf>,
    timing_cache: Option<PathBuf>,
    workspace_mib: u64,
}

impl TryFrom<TensorRtToml> for TensorRtSection {
    type Error = String;

    fn try_from(t: TensorRtToml) -> Result<Self, String> {
        let switches = match (t.fp16, t.int8) {
            (None, None) => None,
            (fp16, int8) => Some(match (fp16.unwrap_or(false), int8.unwrap_or(false)) {
                (false, false) => Precision::Fp32,
                (true, false) => Precision::Fp16,
                (true, true) => Precision::Int8,
                (false, true) => {
                    return Err(
                        "int8 = true with fp16 = false (INT8 with an FP32 fallback) \
                                is not a mode any more: set precision = \"int8\" (INT8 where \
                                TensorRT can, FP16 elsewhere)"
                            .to_owned(),
                    )
                }
            }),
        };
        let precision = match (t.precision, switches) {
            (Some(_), Some(_)) => {
                return Err("set `precision` alone, not also the older `fp16`/`int8`".to_owned())
            }
            (p, s) => p.or(s).unwrap_or_default(),
        };
        Ok(TensorRtSection {
            device_id: t.device_id,
            precision,
            int8_calibration_table: t.int8_calibration_table,
            engine_cache: t.engine_cache,
            timing_cache: t.timing_cache,
            workspace_mib: t.workspace_mib,
        })
    }
}

impl InferenceSection {
    /// The CPU arena cap in bytes, if any.
    pub fn cpu_arena_limit(&self) -> Option<usize> {
        (self.cpu_arena_limit_mib > 0)
            .then(|| usize::try_from(self.cpu_arena_limit_mib << 20).unwrap_or(usize::MAX))
    }

    /// The execution providers as the inference crate takes them.
    pub fn execution_providers(&self) -> Vec<ExecutionProvider> {
        let mib = |m: u64| (m > 0).then(|| usize::try_from(m << 20).unwrap_or(usize::MAX));
        self.providers
            .iter()
            .map(|p| match p {
                Provider::Cpu => ExecutionProvider::Cpu,
                Provider::Cuda => ExecutionProvider::Cuda(CudaOptions {
                    device_id: i32::try_from(self.cuda.device_id).unwrap_or(i32::MAX),
                    memory_limit: mib(self.cuda.memory_limit_mib),
                }),
                Provider::Tensorrt => {
                    let t = &self.tensorrt;
                    ExecutionProvider::TensorRt(TensorRtOptions {
                        device_id: i32::try_from(t.device_id).unwrap_or(i32::MAX),
                        precision: t.precision,
                        int8_calibration_table: t.int8_calibration_table.clone(),
                        engine_cache: t.engine_cache.clone(),
                        timing_cache: t.timing_cache.clone(),
                        max_workspace: mib(t.workspace_mib),
                    })
                }
            })
            .collect()
    }

    /// The ONNX Runtime session settings, with the model's SHA-256 pin.
    pub fn onnx_config(&self, sha256: Option<String>) -> OnnxConfig {
        OnnxConfig {
            library: self.onnxruntime_library.clone(),
            intra_threads: self.intra_threads,
            inter_threads: self.inter_threads,
            sha256,
            providers: self.execution_providers(),
            allow_fallback: self.allow_fallback,
            cpu_arena_limit: self.cpu_arena_limit(),
        }
    }

    /// Checks every range, the provider list and the TensorRT settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("inference.batch_rows", self.batch_rows, 1..=1 << 20)?;
        if self.max_delay > Duration::from_secs(60) {
            return Err(invalid("inference.max_delay", "must be at most 60s"));
        }
        in_range("inference.intra_threads", self.intra_threads, 1..=256)?;
        in_range("inference.inter_threads", self.inter_threads, 1..=256)?;
        self.validate_providers()?;
        if self.cpu_arena_limit_mib > 1 << 24 {
            return Err(invalid(
                "inference.cpu_arena_limit_mib",
                "must be at most 16777216 (16 TiB)",
            ));
        }
        if self.cuda.memory_limit_mib > 1 << 24 || self.tensorrt.workspace_mib > 1 << 24 {
            return Err(invalid(
                "inference.cuda.memory_limit_mib",
                "memory sizes must be at most 16 TiB (16777216 MiB)",
            ));
        }
        if let Some(t) = &self.tensorrt.int8_calibration_table {
            if self.tensorrt.precision != Precision::Int8 {
                return Err(invalid(
                    "inference.tensorrt.int8_calibration_table",
                    format!("{} is set but precision is not int8", t.display()),
                ));
            }
        }
        Ok(())
    }

    /// At least one provider, none twice (an unknown name does not parse).
    fn validate_providers(&self) -> Result<(), ConfigError> {
        if self.providers.is_empty() {
            return Err(invalid(
                "inference.providers",
                "must name at least one of tensorrt, cuda, cpu",
            ));
        }
        for (k, p) in self.providers.iter().enumerate() {
            if self.providers.iter().take(k).any(|q| q == p) {
                return Err(invalid(
                    "inference.providers",
                    format!("{:?} is listed twice", p.as_str()),
                ));
            }
        }
        Ok(())
    }
}
