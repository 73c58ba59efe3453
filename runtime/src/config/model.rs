//! `[model]`: which ONNX model scores flows.

use std::path::PathBuf;

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
/// whichever detector's file changed.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DetectorSection {
    /// Its name in alerts (`tapstream.detector`) and in the summary.
    pub name: String,
    /// The ONNX model file.
    pub model: PathBuf,
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
        if d.model.as_os_str().is_empty() {
            return Err(invalid("detector.model", "must name the ONNX model file"));
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
