//! `[model]`: which ONNX model scores flows.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// `[model]`: which ONNX model scores flows.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// Path of the ONNX model. Default: the shipped
    /// `models/behaviour-mlp.onnx` (CIC and context features), or
    /// `models/cic-mlp.onnx` where the run cannot make context features
    /// (`placement = "workers"`, `gpu.device = "cuda"`, `[context] enabled =
    /// "off"`, flow rows from Kafka); looked up in the current directory and
    /// beside the executable.
    pub path: Option<PathBuf>,
    /// Expected SHA-256 of the model file (hex). A mismatch refuses the model.
    pub sha256: Option<String>,
    /// Decision threshold on the attack score, overriding the model's own
    /// `tapstream.threshold` (0.0..=1.0).
    pub threshold: Option<f32>,
    /// Reload the model when its file changes (checked every second), as
    /// SIGHUP does. A model that fails its checks leaves the current one
    /// running.
    pub watch: bool,
    /// This model's detector name in alerts (`tapstream.detector`).
    /// Default: `classifier`.
    pub detector: Option<String>,
}

/// The detector name of `[model]` when none is set.
pub const DEFAULT_DETECTOR: &str = "classifier";

/// `[[detector]]`: a further model that scores every flow beside `[model]`
/// (in the alert stage), e.g. the anomaly model `tapstream learn` writes.
/// Each alert names its detector; SIGHUP (and `[model] watch`) reloads
/// whichever detector's file changed. With `learn_for` instead of `model`,
/// the run learns an anomaly model on its own first stretch of traffic and
/// then scores with it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DetectorSection {
    /// Its name in alerts (`tapstream.detector`) and in the summary.
    pub name: String,
    /// The ONNX model file (not with `learn_for`).
    #[serde(default)]
    pub model: PathBuf,
    /// Learn an anomaly model (as `tapstream learn` does) on the flows that
    /// start in this much packet time from the input's first packet, then
    /// score the flows that start a flow timeout later.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub learn_for: Option<Duration>,
    /// With `learn_for`: the false-positive rate its threshold is set at,
    /// on the learned period's latest flows held out (default 0.001).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fpr: Option<f64>,
    /// With `learn_for`: also write the learned model here (a later run can
    /// name it as `model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save: Option<PathBuf>,
    /// With `learn_for`: flows kept to fit on at most (about 0.5 KiB each;
    /// default 1,000,000); past it, a hash of the flow id samples them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_flows: Option<usize>,
    /// Expected SHA-256 of the model file (hex).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Decision threshold, overriding the model's own (0.0..=1.0).
    #[serde(default)]
    pub threshold: Option<f32>,
}

impl ModelSection {
    /// The detector name of `[model]`.
    pub fn detector_name(&self) -> &str {
        self.detector.as_deref().unwrap_or(DEFAULT_DETECTOR)
    }
}

/// Checks the detectors: names non-empty and unique (`[model]`'s included),
/// thresholds in range, pins well formed.
pub fn validate_detectors(
    model: &ModelSection,
    detectors: &[DetectorSection],
) -> Result<(), ConfigError> {
    let mut names = vec![model.detector_name()];
    if names.iter().any(|n| n.trim().is_empty()) {
        return Err(invalid("model.detector", "must not be empty"));
    }
    for d in detectors {
        if d.name.trim().is_empty() {
            return Err(invalid("detector.name", "must not be empty"));
        }
        if names.contains(&d.name.as_str()) {
            return Err(invalid(
                "detector.name",
                format!(
                    "`{}` names two detectors (including [model]'s, `{}`)",
                    d.name,
                    model.detector_name()
                ),
            ));
        }
        names.push(&d.name);
        let named = format!("detector `{}`", d.name);
        match d.learn_for {
            None if d.model.as_os_str().is_empty() => {
                return Err(invalid(
                    "detector.model",
                    format!("{named}: must name the ONNX model file (or set learn_for)"),
                ));
            }
            None if d.fpr.is_some() || d.save.is_some() || d.max_flows.is_some() => {
                return Err(invalid(
                    "detector",
                    format!("{named}: fpr, save and max_flows go with learn_for"),
                ));
            }
            None => {}
            Some(_) if !d.model.as_os_str().is_empty() => {
                return Err(invalid(
                    "detector",
                    format!("{named}: model and learn_for exclude each other"),
                ));
            }
            Some(_) if d.sha256.is_some() => {
                return Err(invalid(
                    "detector",
                    format!("{named}: a learned model has no file to pin (sha256)"),
                ));
            }
            Some(l) if l.is_zero() => {
                return Err(invalid(
                    "detector.learn_for",
                    format!("{named}: must be longer than zero"),
                ));
            }
            Some(_) => {}
        }
        if d.max_flows.is_some_and(|n| n < 1_000) {
            return Err(invalid(
                "detector.max_flows",
                format!("{named}: must be at least 1000 (a fit needs flows to hold out)"),
            ));
        }
        if let Some(f) = d.fpr {
            if !(f > 0.0 && f < 0.5) {
                return Err(invalid(
                    "detector.fpr",
                    format!("{named}: must be above 0 and below 0.5"),
                ));
            }
        }
        ModelSection {
            threshold: d.threshold,
            sha256: d.sha256.clone(),
            ..ModelSection::default()
        }
        .validate()
        .map_err(|e| match e {
            ConfigError::Invalid { message, .. } => {
                invalid("detector", format!("detector `{}`: {message}", d.name))
            }
            other => other,
        })?;
    }
    Ok(())
}

impl ModelSection {
    /// Checks the threshold's range and the pin's form.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(t) = self.threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(invalid("model.threshold", "must be between 0.0 and 1.0"));
            }
        }
        if let Some(h) = &self.sha256 {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    "model.sha256",
                    "must be 64 hexadecimal digits (the SHA-256 of the model file)",
                ));
            }
        }
        Ok(())
    }
}
