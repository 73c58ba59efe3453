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
//! left to chance. Execution providers (CPU, CUDA, TensorRT) are an ordered
//! list ([`OnnxConfig::providers`]) registered with `error_on_failure`, so a
//! provider that cannot start is an error, never a silent fall back to the
//! CPU (unless `allow_fallback` says so, and then it is logged).
//!
//! The files beside this one: `providers` (the settings), `checks` (what a
//! model file must be before it runs) and `bound` (scoring rows in memory
//! the caller owns, the [`BoundInference`](crate::BoundInference)
//! capability).

pub(crate) mod bound;
mod checks;
mod providers;

use std::fmt;
use std::path::{Path, PathBuf};

use ort::ep::ExecutionProviderDispatch;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

pub use bound::{BoundMemory, BoundOutput};
pub use checks::sha256_hex;
pub use providers::{CudaOptions, ExecutionProvider, OnnxConfig, TensorRtOptions, MAX_THREADS};

use crate::contract::ModelContract;
use crate::engine::{BoundInference, Engine};
use crate::error::InferenceError;
use crate::library;
use crate::output::{check_input, read_output, Prediction};
use bound::Binding;
use checks::{check_graph, check_io, check_precision, IoSpec};

/// A model running in ONNX Runtime, verified against its contract.
///
/// The session is built once in [`load`](Self::load); [`Engine::infer`]
/// borrows the caller's input slice as the input tensor (no copy) and writes
/// predictions straight from ONNX Runtime's output into the caller's
/// buffer.
pub struct OnnxEngine {
    session: Session,
    contract: ModelContract,
    /// The I/O binding of [`infer_bound`](Self::infer_bound), once used.
    binding: Option<Binding>,
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
}

/// Where a session reads its model from.
enum SessionSource<'a> {
    /// The verified bytes (no external data).
    Memory(&'a [u8]),
    /// The file, so external data resolves against its directory.
    File(&'a Path),
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

    fn bound(&mut self) -> Option<&mut dyn BoundInference> {
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
fn no_output(rows: usize) -> InferenceError {
    InferenceError::OutputShape {
        rows,
        expected: "one output".to_owned(),
        found: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
