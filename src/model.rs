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

use crate::config::Config;

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
    })
}
