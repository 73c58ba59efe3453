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
