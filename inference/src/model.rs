//! Which model a run uses and how it is loaded.
//!
//! The default model ships in the repository (`models/behaviour-mlp.onnx`,
//! which reads context features; `models/cic-mlp.onnx` where a run cannot
//! make them). A
//! binary may run from `target/release/` or be installed elsewhere, so
//! relative defaults are looked up in the current directory first and then
//! beside the executable and its ancestors (the repository root for a build
//! tree). Loading verifies the model's contract and optional SHA-256 pin
//! before any packet is read; with the model in the flow workers, each
//! worker gets a session of its own, from a file with the same SHA-256.

use std::path::{Path, PathBuf};

use crate::{BoundInference, Engine, InferenceError, OnnxConfig, OnnxEngine, Prediction};

/// Where the shipped default model lives, relative to the repository root:
/// the behaviour classifier trained on real captures, over CIC and context
/// features (`deploy/training/train_behaviour.py`).
pub const DEFAULT_MODEL: &str = "models/behaviour-mlp.onnx";

/// The shipped model of the CIC schema alone (`deploy/training/train.py`):
/// the default where a run cannot make context features, and what the
/// precision report and the GPU scoring check measure.
pub const CIC_MODEL: &str = "models/cic-mlp.onnx";

/// Why a run's model could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The configured or given model file does not exist.
    #[error("model file {} does not exist", .0.display())]
    Missing(PathBuf),
    /// No model was named and the shipped default is not found.
    #[error(
        "the default model ({DEFAULT_MODEL}, or {CIC_MODEL}) was not found in the current \
         directory or beside the executable; pass --model"
    )]
    NoDefault,
    /// The model failed to load or its checks.
    #[error("loading model {}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: InferenceError,
    },
    /// A flow worker's session failed to load.
    #[error("loading model {} for flow worker {worker}", path.display())]
    LoadWorker {
        /// The file.
        path: PathBuf,
        /// The worker.
        worker: usize,
        /// Why.
        #[source]
        source: InferenceError,
    },
    /// The file was replaced while the worker sessions were built.
    #[error(
        "model file {} changed while its sessions were built (SHA-256 {before} then {after})",
        path.display()
    )]
    Changed {
        /// The file.
        path: PathBuf,
        /// SHA-256 of the first session's model.
        before: String,
        /// SHA-256 of a later session's model.
        after: String,
    },
    /// A model that loaded could not score (a reload's warm-up).
    #[error("warming up the new model")]
    Warmup(#[source] InferenceError),
    /// A model that loaded gave the wrong number of predictions or a
    /// non-finite score in its warm-up.
    #[error(
        "warming up the new model: it gave {got} predictions for {rows} rows, or a non-finite \
         score"
    )]
    BadWarmup {
        /// Predictions returned.
        got: usize,
        /// Rows scored.
        rows: usize,
    },
}

/// Finds a repository-relative file: `./rel`, then `rel` under the
/// executable's directory and each of its ancestors.
pub fn locate(rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    if p.exists() {
        return Some(p.to_path_buf());
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .map(|d| d.join(rel))
        .find(|c| c.exists())
}

/// The model file a run uses: the command line's, else the configured one,
/// else the shipped default.
pub fn model_path(configured: Option<&Path>, cli: Option<&Path>) -> Result<PathBuf, ModelError> {
    if let Some(p) = cli.or(configured) {
        if !p.exists() {
            return Err(ModelError::Missing(p.to_path_buf()));
        }
        return Ok(p.to_path_buf());
    }
    locate(DEFAULT_MODEL).ok_or(ModelError::NoDefault)
}

/// [`model_path`] with [`CIC_MODEL`] as the default instead.
pub fn cic_model_path(
    configured: Option<&Path>,
    cli: Option<&Path>,
) -> Result<PathBuf, ModelError> {
    if cli.or(configured).is_some() {
        return model_path(configured, cli);
    }
    locate(CIC_MODEL).ok_or(ModelError::NoDefault)
}

/// Which model a run loads, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// The model file (see [`model_path`]).
    pub path: PathBuf,
    /// ONNX Runtime settings: library, threads, providers, SHA-256 pin.
    pub onnx: OnnxConfig,
    /// Decision threshold on the attack score, overriding the model's own.
    pub threshold: Option<f32>,
}

/// A loaded, verified model ready to score.
pub struct LoadedModel {
    /// The engine.
    pub engine: Box<dyn Engine>,
    /// Decision threshold: the configured override or the model's own.
    pub threshold: f32,
    /// The file it came from.
    pub path: PathBuf,
    /// Execution providers in order of preference, e.g. `cuda,cpu`.
    pub providers: String,
    /// One more session of the same model per flow worker, when the
    /// workers score; empty otherwise (see [`add_worker_sessions`]).
    pub workers: Vec<Box<dyn Engine>>,
}

/// Loads and verifies the model of `spec`.
pub fn load(spec: &ModelSpec) -> Result<LoadedModel, ModelError> {
    // Said plainly when a reload finds the file gone.
    if !spec.path.exists() {
        return Err(ModelError::Missing(spec.path.clone()));
    }
    let engine = OnnxEngine::load(&spec.path, &spec.onnx).map_err(|source| ModelError::Load {
        path: spec.path.clone(),
        source,
    })?;
    let threshold = spec.threshold.unwrap_or(engine.contract().threshold);
    let providers = engine
        .providers()
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(",");
    Ok(LoadedModel {
        engine: Box::new(engine),
        threshold,
        path: spec.path.clone(),
        providers,
        workers: Vec::new(),
    })
}

/// Builds `n` more sessions of `m`'s model (from its file, through the same
/// checks) into `m.workers`. Each must have `m`'s SHA-256: a file replaced
/// while they are built is an error, never a mix of two models.
pub fn add_worker_sessions(
    onnx: &OnnxConfig,
    m: &mut LoadedModel,
    n: usize,
) -> Result<(), ModelError> {
    m.workers.clear();
    let before = m.engine.contract().sha256.clone();
    for worker in 0..n {
        let e = OnnxEngine::load(&m.path, onnx).map_err(|source| ModelError::LoadWorker {
            path: m.path.clone(),
            worker,
            source,
        })?;
        if e.contract().sha256 != before {
            return Err(ModelError::Changed {
                path: m.path.clone(),
                before,
                after: e.contract().sha256.clone(),
            });
        }
        m.workers.push(Box::new(e));
    }
    Ok(())
}

/// [`load`], and `workers` more sessions of the model for the flow
/// workers ([`add_worker_sessions`]).
pub fn load_with_workers(spec: &ModelSpec, workers: usize) -> Result<LoadedModel, ModelError> {
    let mut m = load(spec)?;
    add_worker_sessions(&spec.onnx, &mut m, workers)?;
    Ok(m)
}

/// [`load_with_workers`], then a batch of zeros scored on each session, so a
/// model that loads but cannot run is refused too.
pub fn load_and_warm(spec: &ModelSpec, workers: usize) -> Result<LoadedModel, ModelError> {
    let mut m = load_with_workers(spec, workers)?;
    warm(m.engine.as_mut())?;
    for e in &mut m.workers {
        warm(e.as_mut())?;
    }
    Ok(m)
}

fn warm(engine: &mut dyn Engine) -> Result<(), ModelError> {
    let width = engine.contract().num_features();
    let rows = 16;
    let input = vec![0.0f32; rows * width];
    let mut out: Vec<Prediction> = Vec::with_capacity(rows);
    engine
        .infer(&input, rows, &mut out)
        .map_err(ModelError::Warmup)?;
    if out.len() != rows || !out.iter().all(|p| p.score.is_finite()) {
        return Err(ModelError::BadWarmup {
            got: out.len(),
            rows,
        });
    }
    Ok(())
}
