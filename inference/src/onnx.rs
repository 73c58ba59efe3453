//! The ONNX Runtime backend: load, verify and run a model in-process.
//!
//! Loading is where trust is established, so [`OnnxEngine::load`] does it in
//! a fixed order: check the settings, read the file once, check its SHA-256
//! against the pin, build the session *from those same bytes* (so the bytes
//! verified are the bytes run), then check the contract in the metadata and
//! the graph's input and output against it. Anything off is refused with a
//! specific [`InferenceError`] before a single flow is scored.
//!
//! Session settings are explicit (thread counts, graph optimisation level,
//! execution providers, no custom-op libraries), not ONNX Runtime defaults
//! left to chance. Execution providers are an ordered list
//! ([`OnnxConfig::providers`]) registered with `error_on_failure`, so that
//! when GPU providers are added a provider that cannot start is an error,
//! never a silent fall back to CPU.

use std::fmt;
use std::path::{Path, PathBuf};

use ort::ep::{ExecutionProviderDispatch, TensorRT, CPU, CUDA};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{Outlet, TensorElementType, TensorRef, ValueType};
use sha2::{Digest, Sha256};

use crate::contract::{ModelContract, OutputKind, Precision};
use crate::engine::{check_input, read_output, Engine, Prediction};
use crate::{library, InferenceError};

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
    /// Let TensorRT pick FP16 kernels.
    pub fp16: bool,
    /// Let TensorRT pick INT8 kernels; needs a calibration table unless the
    /// model is already quantized (QDQ).
    pub int8: bool,
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
pub fn tensorrt(o: &TensorRtOptions) -> TensorRT {
    let mut ep = TensorRT::default()
        .with_device_id(o.device_id)
        .with_fp16(o.fp16)
        .with_int8(o.int8);
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

/// Settings for [`OnnxEngine::load`].
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
    fn validate(&self) -> Result<Option<String>, InferenceError> {
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
        self.sha256.as_deref().map(normalise_pin).transpose()
    }

    /// The execution providers to register, in order of preference.
    fn providers(&self) -> Vec<ExecutionProvider> {
        if self.providers.is_empty() {
            vec![ExecutionProvider::Cpu]
        } else {
            self.providers.clone()
        }
    }
}

fn normalise_pin(pin: &str) -> Result<String, InferenceError> {
    let trimmed = pin.trim();
    if trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(trimmed.to_ascii_lowercase())
    } else {
        Err(InferenceError::InvalidPin {
            pin: pin.to_owned(),
        })
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in digest {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// A model running in ONNX Runtime, verified against its contract.
///
/// The session is built once in [`load`](Self::load); [`Engine::infer`]
/// borrows the caller's input slice as the input tensor (no copy) and writes
/// predictions straight from ONNX Runtime's output into the caller's
/// buffer.
pub struct OnnxEngine {
    pub(crate) session: Session,
    pub(crate) contract: ModelContract,
    /// The I/O binding of [`infer_bound`](Self::infer_bound), once used.
    pub(crate) binding: Option<crate::bound::Binding>,
    path: PathBuf,
    library: PathBuf,
    providers: Vec<ExecutionProvider>,
}

impl fmt::Debug for OnnxEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxEngine")
            .field("path", &self.path)
            .field("library", &self.library)
            .field("providers", &self.providers)
            .field("model", &self.contract.name)
            .field("version", &self.contract.version)
            .finish_non_exhaustive()
    }
}

impl OnnxEngine {
    /// Loads the model at `path`, verifies it and builds its session.
    ///
    /// In order: settings are checked ([`InferenceError::InvalidConfig`],
    /// [`InferenceError::InvalidPin`]); the file is read once and its SHA-256
    /// compared with `cfg.sha256` ([`InferenceError::Sha256Mismatch`]); ONNX
    /// Runtime is loaded if it is not yet ([`InferenceError::LibraryNotFound`],
    /// …); the session is built from the verified bytes
    /// ([`InferenceError::LoadModel`]); the `tapstream.*` metadata is parsed
    /// into a [`ModelContract`] (see [`ModelContract::from_metadata`]); and the
    /// graph must have exactly one `f32` input `[batch, features]` with a
    /// dynamic batch axis ([`InferenceError::BadInput`]) and one `f32` output
    /// matching `tapstream.output` and the labels
    /// ([`InferenceError::BadOutput`]).
    pub fn load(path: &Path, cfg: &OnnxConfig) -> Result<Self, InferenceError> {
        let pin = cfg.validate()?;
        let bytes = std::fs::read(path).map_err(|source| InferenceError::ReadModel {
            path: path.to_path_buf(),
            source,
        })?;
        let digest = sha256_hex(&bytes);
        if let Some(expected) = pin {
            if expected != digest {
                return Err(InferenceError::Sha256Mismatch {
                    path: path.to_path_buf(),
                    expected,
                    actual: digest,
                });
            }
        }

        // tapstream's own checks of the graph come before ONNX Runtime reads
        // it (external data would be read while the session is built). A
        // file the reader cannot parse goes to ONNX Runtime, whose error
        // says more; should ONNX Runtime accept it, it is refused below.
        let facts = crate::inspect::inspect(&bytes);
        let refuse = |reason: String| InferenceError::UnsafeModel {
            path: path.to_path_buf(),
            reason,
        };
        let external = match &facts {
            Ok(f) => check_graph(f, path).map_err(refuse)?,
            Err(_) => false,
        };

        let runtime = library::runtime(cfg.library.as_deref())?;
        if let Some(cap) = cfg.cpu_arena_limit {
            library::cap_cpu_arena(&runtime, cap)?;
        }
        if cfg.allow_fallback {
            for p in cfg.providers().iter().filter(|p| !p.is_built_in()) {
                tracing::warn!(
                    message = "execution provider not in this ONNX Runtime build; falling back",
                    provider = %p,
                    library = %runtime.path.display(),
                );
            }
        }
        // External data is resolved against the model's own directory, which
        // only a session built from the file knows.
        let source = if external {
            SessionSource::File(path)
        } else {
            SessionSource::Memory(&bytes)
        };
        let session = build_session(&runtime.environment, cfg, source).map_err(|source| {
            InferenceError::LoadModel {
                path: path.to_path_buf(),
                source,
            }
        })?;
        drop(bytes);
        let facts = facts.map_err(|e| refuse(e.to_string()))?;

        let contract = {
            let metadata = session
                .metadata()
                .map_err(|source| InferenceError::Runtime {
                    context: "reading the model metadata",
                    source,
                })?;
            ModelContract::from_metadata(|key| metadata.custom(key), &digest)?
        };
        check_precision(contract.precision, &facts)?;
        let inputs: Vec<IoSpec> = session.inputs().iter().map(IoSpec::from_outlet).collect();
        let outputs: Vec<IoSpec> = session.outputs().iter().map(IoSpec::from_outlet).collect();
        check_io(&contract, &inputs, &outputs)?;

        tracing::info!(
            message = "loaded model",
            path = %path.display(),
            model = %contract.name,
            version = %contract.version,
            sha256 = %contract.sha256,
            features = contract.features.len(),
            labels = contract.labels.len(),
            precision = %contract.precision,
        );
        Ok(OnnxEngine {
            session,
            contract,
            binding: None,
            path: path.to_path_buf(),
            library: runtime.path,
            providers: cfg.providers(),
        })
    }

    /// The model file this engine was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ONNX Runtime library in use.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// The execution providers the session was built with, in order.
    pub fn providers(&self) -> &[ExecutionProvider] {
        &self.providers
    }
}

/// Where a session reads its model from.
enum SessionSource<'a> {
    /// The verified bytes (no external data).
    Memory(&'a [u8]),
    /// The file, so external data resolves against its directory.
    File(&'a Path),
}

/// Refuses custom operators and external data outside the model's
/// directory; returns whether the model has external data at all.
fn check_graph(f: &crate::inspect::ModelFacts, path: &Path) -> Result<bool, String> {
    let custom = f.custom_domains();
    if !custom.is_empty() {
        return Err(format!(
            "it uses custom operators from {custom:?}, and tapstream loads no custom-op libraries"
        ));
    }
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    for loc in &f.external_data {
        let p = Path::new(loc);
        let inside = !loc.is_empty()
            && p.components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside {
            return Err(format!(
                "its external data {loc:?} is not a plain path inside the model's directory"
            ));
        }
        // A symbolic link could still lead out of the directory.
        let resolved = std::fs::canonicalize(dir.join(p))
            .map_err(|e| format!("its external data {loc:?} cannot be opened: {e}"))?;
        let base = std::fs::canonicalize(dir)
            .map_err(|e| format!("the model's directory cannot be resolved: {e}"))?;
        if !resolved.starts_with(&base) {
            return Err(format!(
                "its external data {loc:?} resolves outside the model's directory"
            ));
        }
    }
    Ok(!f.external_data.is_empty())
}

/// The declared precision must be what the graph holds: fp16 weights for
/// `fp16`, quantization for `int8`, and neither for `fp32`.
fn check_precision(
    declared: Precision,
    f: &crate::inspect::ModelFacts,
) -> Result<(), InferenceError> {
    use crate::inspect::dtype;
    let half = f.initializers_of(dtype::FLOAT16) + f.initializers_of(dtype::BFLOAT16);
    let quantized = f.is_quantized();
    let found = match declared {
        Precision::Fp32 if quantized => Some("the graph is quantized".to_string()),
        Precision::Fp32 if half > 0 => Some(format!("{half} of its weights are 16-bit floats")),
        Precision::Fp16 if half == 0 => Some("it has no 16-bit float weights".to_string()),
        Precision::Fp16 if quantized => Some("the graph is quantized".to_string()),
        Precision::Int8 if !quantized => {
            Some("the graph has no quantization (no QuantizeLinear/DequantizeLinear or quantized operators)".to_string())
        }
        _ => None,
    };
    match found {
        Some(found) => Err(InferenceError::PrecisionMismatch { declared, found }),
        None => Ok(()),
    }
}

fn build_session(
    environment: &ort::environment::Environment,
    cfg: &OnnxConfig,
    source: SessionSource<'_>,
) -> Result<Session, ort::Error> {
    let list = cfg.providers();
    let providers: Vec<ExecutionProviderDispatch> = list
        .iter()
        .map(|p| p.dispatch(cfg.allow_fallback))
        .collect();
    let mut builder = Session::builder(environment)?;
    if cfg.cpu_arena_limit.is_some() {
        // The shared, capped arena registered on the environment.
        builder = builder.with_config_entry("session.use_env_allocators", "1")?;
    }
    if !cfg.allow_fallback && !list.contains(&ExecutionProvider::Cpu) {
        // Every node must run on a listed provider: none silently on the CPU.
        builder = builder.with_config_entry("session.disable_cpu_ep_fallback", "1")?;
    }
    let mut builder = builder
        .with_optimization_level(GraphOptimizationLevel::Level3)?
        .with_intra_threads(cfg.intra_threads)?
        .with_inter_threads(cfg.inter_threads)?
        .with_parallel_execution(cfg.inter_threads > 1)?
        .with_execution_providers(providers)?;
    match source {
        SessionSource::Memory(bytes) => builder.commit_from_memory(bytes),
        SessionSource::File(path) => builder.commit_from_file(path),
    }
}

impl OnnxEngine {
    /// Like [`Engine::infer`], and also copies the model's raw output into
    /// `raw` (cleared first): `rows × labels` probabilities for a
    /// probabilities model, `rows` scores for a score model.
    ///
    /// [`Prediction::class`] names the most likely *attack*; a multiclass
    /// accuracy needs the argmax over every label, benign included, which
    /// only the raw output has (`tapstream model report` uses this).
    pub fn infer_raw(
        &mut self,
        input: &[f32],
        rows: usize,
        out: &mut Vec<Prediction>,
        raw: &mut Vec<f32>,
    ) -> Result<(), InferenceError> {
        raw.clear();
        self.run(input, rows, out, Some(raw))
    }

    fn run(
        &mut self,
        input: &[f32],
        rows: usize,
        out: &mut Vec<Prediction>,
        raw: Option<&mut Vec<f32>>,
    ) -> Result<(), InferenceError> {
        out.clear();
        check_input(&self.contract, input, rows)?;
        if rows == 0 {
            return Ok(());
        }
        let features = self.contract.num_features();
        let tensor = TensorRef::from_array_view(([rows, features], input)).map_err(|source| {
            InferenceError::Runtime {
                context: "creating the input tensor",
                source,
            }
        })?;
        let outputs =
            self.session
                .run(ort::inputs![tensor])
                .map_err(|source| InferenceError::Runtime {
                    context: "running the model",
                    source,
                })?;
        let value = outputs.values().next().ok_or_else(|| no_output(rows))?;
        let (shape, data) =
            value
                .try_extract_tensor::<f32>()
                .map_err(|source| InferenceError::Runtime {
                    context: "reading the model output",
                    source,
                })?;
        out.reserve(rows);
        read_output(&self.contract, rows, shape, data, out)?;
        if let Some(raw) = raw {
            raw.extend_from_slice(data);
        }
        Ok(())
    }
}

impl Engine for OnnxEngine {
    fn contract(&self) -> &ModelContract {
        &self.contract
    }

    fn as_onnx_mut(&mut self) -> Option<&mut OnnxEngine> {
        Some(self)
    }

    fn infer(
        &mut self,
        input: &[f32],
        rows: usize,
        out: &mut Vec<Prediction>,
    ) -> Result<(), InferenceError> {
        self.run(input, rows, out, None)
    }
}

/// The error for a run that returned no output.
pub(crate) fn no_output(rows: usize) -> InferenceError {
    InferenceError::OutputShape {
        rows,
        expected: "one output".to_owned(),
        found: Vec::new(),
    }
}

/// A graph input or output, as far as the contract cares.
#[derive(Clone, Debug, PartialEq)]
struct IoSpec {
    name: String,
    /// Element type, or `None` when not a tensor.
    ty: Option<TensorElementType>,
    /// Dimensions; -1 for a dynamic (symbolic) one.
    dims: Vec<i64>,
    /// How ONNX Runtime prints the type, for messages.
    display: String,
}

impl IoSpec {
    fn from_outlet(outlet: &Outlet) -> Self {
        let dtype: &ValueType = outlet.dtype();
        IoSpec {
            name: outlet.name().to_owned(),
            ty: dtype.tensor_type(),
            dims: dtype
                .tensor_shape()
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default(),
            display: dtype.to_string(),
        }
    }
}

fn dim_is(dim: i64, want: usize) -> bool {
    dim < 0 || usize::try_from(dim) == Ok(want)
}

/// Checks the graph's inputs and outputs against the contract.
fn check_io(
    contract: &ModelContract,
    inputs: &[IoSpec],
    outputs: &[IoSpec],
) -> Result<(), InferenceError> {
    let n = contract.num_features();
    let bad_input = |reason: String| Err(InferenceError::BadInput { reason });
    let [input] = inputs else {
        return bad_input(format!(
            "the model has {} inputs ({}); it must have exactly one, `[batch, {n}]` float32",
            inputs.len(),
            names(inputs)
        ));
    };
    if input.ty != Some(TensorElementType::Float32) {
        return bad_input(format!(
            "input `{}` is {}; it must be a float32 tensor `[batch, {n}]`",
            input.name, input.display
        ));
    }
    match input.dims[..] {
        [batch, width] => {
            if batch >= 0 {
                return bad_input(format!(
                    "input `{}` has a fixed batch size of {batch}; export it with a dynamic \
                     batch axis, `[batch, {n}]`",
                    input.name
                ));
            }
            if !dim_is(width, n) {
                return bad_input(format!(
                    "input `{}` is {} wide but tapstream.features lists {n} features",
                    input.name, width
                ));
            }
        }
        _ => {
            return bad_input(format!(
                "input `{}` is {}; it must have rank 2, `[batch, {n}]`",
                input.name, input.display
            ))
        }
    }

    let bad_output = |reason: String| Err(InferenceError::BadOutput { reason });
    let [output] = outputs else {
        return bad_output(format!(
            "the model has {} outputs ({}); it must have exactly one",
            outputs.len(),
            names(outputs)
        ));
    };
    if output.ty != Some(TensorElementType::Float32) {
        return bad_output(format!(
            "output `{}` is {}; it must be a float32 tensor",
            output.name, output.display
        ));
    }
    match contract.output {
        OutputKind::Probabilities => {
            let c = contract.labels.len();
            match output.dims[..] {
                [_, width] if dim_is(width, c) => {}
                [_, width] => {
                    return bad_output(format!(
                        "output `{}` has {width} probability columns but tapstream.labels \
                         lists {c} labels",
                        output.name
                    ))
                }
                _ => {
                    return bad_output(format!(
                        "output `{}` is {}; tapstream.output = probabilities needs `[batch, {c}]`",
                        output.name, output.display
                    ))
                }
            }
        }
        OutputKind::Score => match output.dims[..] {
            [_] => {}
            [_, width] if dim_is(width, 1) => {}
            _ => {
                return bad_output(format!(
                    "output `{}` is {}; tapstream.output = score needs `[batch]` or `[batch, 1]`",
                    output.name, output.display
                ))
            }
        },
    }
    Ok(())
}

fn names(specs: &[IoSpec]) -> String {
    if specs.is_empty() {
        return "none".to_owned();
    }
    specs
        .iter()
        .map(|s| format!("`{}`: {}", s.name, s.display))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::keys;
    use std::collections::HashMap;
    use tapstream_kernels::schema::{SCHEMA_NAME, SCHEMA_VERSION};

    fn contract(output: &str) -> ModelContract {
        let m = HashMap::from([
            (keys::SCHEMA, SCHEMA_NAME.to_owned()),
            (keys::SCHEMA_VERSION, SCHEMA_VERSION.to_string()),
            (
                keys::FEATURES,
                r#"["Dst Port","Protocol","Flow Duration"]"#.to_owned(),
            ),
            (keys::SCALER, "in-graph".to_owned()),
            (keys::LABELS, r#"["BENIGN","DoS"]"#.to_owned()),
            (keys::BENIGN_LABEL, "BENIGN".to_owned()),
            (keys::OUTPUT, output.to_owned()),
            (keys::THRESHOLD, "0.5".to_owned()),
            (keys::MODEL_NAME, "m".to_owned()),
            (keys::MODEL_VERSION, "1".to_owned()),
        ]);
        ModelContract::from_metadata(|k| m.get(k).cloned(), "00").unwrap()
    }

    fn spec(ty: TensorElementType, dims: &[i64]) -> IoSpec {
        IoSpec {
            name: "x".to_owned(),
            ty: Some(ty),
            dims: dims.to_vec(),
            display: format!("{ty:?}{dims:?}"),
        }
    }

    const F32: TensorElementType = TensorElementType::Float32;

    #[test]
    fn accepts_dynamic_and_exact_dims() {
        let p = contract("probabilities");
        let s = contract("score");
        assert!(check_io(&p, &[spec(F32, &[-1, 3])], &[spec(F32, &[-1, 2])]).is_ok());
        assert!(check_io(&p, &[spec(F32, &[-1, -1])], &[spec(F32, &[-1, -1])]).is_ok());
        assert!(check_io(&s, &[spec(F32, &[-1, 3])], &[spec(F32, &[-1])]).is_ok());
        assert!(check_io(&s, &[spec(F32, &[-1, 3])], &[spec(F32, &[-1, 1])]).is_ok());
    }

    #[test]
    fn refuses_bad_inputs() {
        let p = contract("probabilities");
        let out = [spec(F32, &[-1, 2])];
        for inputs in [
            vec![],
            vec![spec(F32, &[-1, 3]), spec(F32, &[-1, 3])],
            vec![spec(TensorElementType::Int64, &[-1, 3])],
            vec![spec(TensorElementType::Float16, &[-1, 3])],
            vec![spec(F32, &[-1, 4])],
            vec![spec(F32, &[8, 3])],
            vec![spec(F32, &[-1])],
            vec![spec(F32, &[-1, 3, 1])],
            vec![IoSpec {
                ty: None,
                ..spec(F32, &[])
            }],
        ] {
            assert!(
                matches!(
                    check_io(&p, &inputs, &out),
                    Err(InferenceError::BadInput { .. })
                ),
                "{inputs:?}"
            );
        }
    }

    #[test]
    fn refuses_bad_outputs() {
        let p = contract("probabilities");
        let s = contract("score");
        let input = [spec(F32, &[-1, 3])];
        for (c, outputs) in [
            (&p, vec![]),
            (&p, vec![spec(F32, &[-1, 2]), spec(F32, &[-1, 2])]),
            (&p, vec![spec(TensorElementType::Int64, &[-1, 2])]),
            (&p, vec![spec(F32, &[-1, 3])]),
            (&p, vec![spec(F32, &[-1])]),
            (&s, vec![spec(F32, &[-1, 2])]),
            (&s, vec![spec(F32, &[])]),
        ] {
            assert!(
                matches!(
                    check_io(c, &input, &outputs),
                    Err(InferenceError::BadOutput { .. })
                ),
                "{outputs:?}"
            );
        }
    }

    #[test]
    fn pins_are_normalised_and_checked() {
        let hex = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
        assert_eq!(normalise_pin(hex).unwrap(), hex.to_ascii_lowercase());
        assert!(matches!(
            normalise_pin("abc"),
            Err(InferenceError::InvalidPin { .. })
        ));
        assert!(matches!(
            normalise_pin(&"g".repeat(64)),
            Err(InferenceError::InvalidPin { .. })
        ));
        assert_eq!(
            sha256_hex(b"test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn config_is_checked_before_anything_is_read() {
        let mut cfg = OnnxConfig {
            intra_threads: 0,
            ..OnnxConfig::default()
        };
        let missing = Path::new("/nonexistent/model.onnx");
        assert!(matches!(
            OnnxEngine::load(missing, &cfg),
            Err(InferenceError::InvalidConfig {
                field: "intra_threads",
                ..
            })
        ));
        cfg.intra_threads = 1;
        cfg.inter_threads = 257;
        assert!(matches!(
            OnnxEngine::load(missing, &cfg),
            Err(InferenceError::InvalidConfig {
                field: "inter_threads",
                ..
            })
        ));
        cfg.inter_threads = 1;
        cfg.sha256 = Some("nope".to_owned());
        assert!(matches!(
            OnnxEngine::load(missing, &cfg),
            Err(InferenceError::InvalidPin { .. })
        ));
        cfg.sha256 = None;
        assert!(matches!(
            OnnxEngine::load(missing, &cfg),
            Err(InferenceError::ReadModel { .. })
        ));
    }
}
