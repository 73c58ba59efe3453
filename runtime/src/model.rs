//! A run's model from its configuration: which file, which session settings,
//! and how many sessions (one more per flow worker with the model in the
//! workers). Loading and checking are the inference crate's.

use std::path::Path;

use anyhow::Result;
use tapstream_inference::model::{load_with_workers, model_path};
use tapstream_inference::{LoadedModel, ModelSpec};

use crate::config::{Config, Placement};

/// The model `cfg` and the command line (`cli`, which wins) name, with the
/// configured session settings.
pub fn spec(cfg: &Config, cli: Option<&Path>) -> Result<ModelSpec> {
    Ok(ModelSpec {
        path: model_path(cfg.model.path.as_deref(), cli)?,
        onnx: cfg.inference.onnx_config(cfg.model.sha256.clone()),
        threshold: cfg.model.threshold,
    })
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

/// Loads and verifies the model `cfg` and `cli` name, with `workers` more
/// sessions of it for the flow workers.
pub fn load(cfg: &Config, cli: Option<&Path>, workers: usize) -> Result<LoadedModel> {
    Ok(load_with_workers(&spec(cfg, cli)?, workers)?)
}
