//! Which model a run uses and how it is loaded.
//!
//! The default model ships in the repository (`models/cic-mlp.onnx`). A
//! binary may run from `target/release/` or be installed elsewhere, so
//! relative defaults are looked up in the current directory first and then
//! beside the executable and its ancestors (the repository root for a build
//! tree). Loading verifies the model's contract and optional SHA-256 pin
//! before any packet is read.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tapstream_connectors::ModelInfo;
use tapstream_inference::{Engine, OnnxConfig, OnnxEngine};

use crate::config::{Config, Placement};

/// Where the shipped default model lives, relative to the repository root.
pub const DEFAULT_MODEL: &str = "models/cic-mlp.onnx";

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

/// The model path a run uses: the command line, else the config, else the
/// shipped default.
pub fn model_path(cfg: &Config, cli: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = cli.or(cfg.model.path.as_deref()) {
        if !p.exists() {
            bail!("model file {} does not exist", p.display());
        }
        return Ok(p.to_path_buf());
    }
    locate(DEFAULT_MODEL).with_context(|| {
        format!("the default model {DEFAULT_MODEL} was not found in the current directory or beside the executable; pass --model")
    })
}

/// A loaded, verified model ready to score.
pub struct LoadedModel {
    /// The engine.
    pub engine: Box<dyn Engine>,
    /// Identity for alerts.
    pub info: ModelInfo,
    /// Decision threshold: the config's override or the model's own.
    pub threshold: f32,
    /// The file it came from.
    pub path: PathBuf,
    /// Execution providers in order of preference, e.g. `cuda,cpu`.
    pub providers: String,
    /// One more session of the same model per flow worker, when the
    /// workers score (see [`worker_sessions_needed`]); empty otherwise.
    pub workers: Vec<Box<dyn Engine>>,
}

/// How many worker sessions a run needs: one per flow worker with
/// `[inference] placement = "workers"`, none otherwise. Flow rows read from
/// Kafka (`flows_input`) pass no flow worker, so the consumer scores them.
pub fn worker_sessions_needed(cfg: &Config, flows_input: bool) -> usize {
    match cfg.inference.placement {
        Placement::Workers if !flows_input => cfg.worker_threads(),
        _ => 0,
    }
}

/// Builds `n` more sessions of `m`'s model (from its file, through the same
/// checks) into `m.workers`. Each must have `m`'s SHA-256: a file replaced
/// while they are built is an error, never a mix of two models.
pub fn add_worker_sessions(cfg: &Config, m: &mut LoadedModel, n: usize) -> Result<()> {
    let onnx = onnx_config(cfg);
    m.workers.clear();
    for k in 0..n {
        let e = OnnxEngine::load(&m.path, &onnx)
            .with_context(|| format!("loading model {} for flow worker {k}", m.path.display()))?;
        if e.contract().sha256 != m.info.sha256 {
            bail!(
                "model file {} changed while its sessions were built (SHA-256 {} then {})",
                m.path.display(),
                m.info.sha256,
                e.contract().sha256
            );
        }
        m.workers.push(Box::new(e));
    }
    Ok(())
}

/// The ONNX Runtime settings of a configuration.
pub fn onnx_config(cfg: &Config) -> OnnxConfig {
    OnnxConfig {
        library: cfg.inference.onnxruntime_library.clone(),
        intra_threads: cfg.inference.intra_threads,
        inter_threads: cfg.inference.inter_threads,
        sha256: cfg.model.sha256.clone(),
        providers: cfg.inference.execution_providers(),
        allow_fallback: cfg.inference.allow_fallback,
        cpu_arena_limit: cfg.inference.cpu_arena_limit(),
    }
}

/// Loads and verifies the model for a run.
pub fn load(cfg: &Config, cli: Option<&Path>) -> Result<LoadedModel> {
    let path = model_path(cfg, cli)?;
    let onnx = onnx_config(cfg);
    let engine = OnnxEngine::load(&path, &onnx)
        .with_context(|| format!("loading model {}", path.display()))?;
    let c = engine.contract();
    let info = ModelInfo {
        name: c.name.clone(),
        version: c.version.clone(),
        sha256: c.sha256.clone(),
    };
    let threshold = cfg.model.threshold.unwrap_or(c.threshold);
    let providers = engine
        .providers()
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(",");
    Ok(LoadedModel {
        engine: Box::new(engine),
        info,
        threshold,
        path,
        providers,
        workers: Vec::new(),
    })
}
