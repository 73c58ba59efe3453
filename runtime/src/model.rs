//! A run's model from its configuration: which file, which session settings,
//! and how many sessions (one more per flow worker with the model in the
//! workers). Loading and checking are the inference crate's.

use std::path::Path;

use anyhow::Result;
use tapstream_inference::model::{cic_model_path, load_with_workers, model_path, CIC_MODEL};
use tapstream_inference::{LoadedModel, ModelSpec};

use crate::config::{Config, NoContext, Placement};

/// The model `cfg` and the command line (`cli`, which wins) name, with the
/// configured session settings. When neither names one, the shipped
/// default; where the run cannot make context features ([`NoContext`]),
/// the shipped CIC-schema model, said once.
pub fn spec_for(cfg: &Config, cli: Option<&Path>, flows_input: bool) -> Result<ModelSpec> {
    let configured = cfg.model.path.as_deref();
    let path = match NoContext::of(cfg, flows_input) {
        Some(why) if cli.is_none() && configured.is_none() => {
            tracing::info!(
                message = "default model without context features, as this run cannot make them",
                model = CIC_MODEL,
                why = %why
            );
            cic_model_path(None, None)?
        }
        _ => model_path(configured, cli)?,
    };
    Ok(ModelSpec {
        path,
        onnx: cfg.inference.onnx_config(cfg.model.sha256.clone()),
        threshold: cfg.model.threshold,
    })
}

/// [`spec_for`] a run over packets.
pub fn spec(cfg: &Config, cli: Option<&Path>) -> Result<ModelSpec> {
    spec_for(cfg, cli, false)
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
