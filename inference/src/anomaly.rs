//! A learned anomaly model's parameters, as its contract carries them
//! (`tapstream.anomaly`): the `f64` reference of its score, and what lets an
//! alert say which features made a flow unusual.
//!
//! `tapstream learn` fits the model (probabilistic PCA over signed-log,
//! standardised, clipped features) and writes both the ONNX graph that
//! scores and these parameters. The graph is what scores every flow; this
//! module recomputes the score of a flagged flow only, feature by feature,
//! to explain it. The two are tested to agree.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::InferenceError;

/// Metadata key of the parameters (JSON).
pub const KEY: &str = "tapstream.anomaly";
/// Standardised values are clipped to `±Z_CLIP`.
pub const Z_CLIP: f64 = 5.0;

/// Probabilistic PCA parameters over the model's `F` input features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ppca {
    /// Per-feature mean of the signed log.
    pub mean: Vec<f64>,
    /// Per-feature scale of the signed log.
    pub scale: Vec<f64>,
    /// The principal directions, `k` vectors of `F` entries.
    pub components: Vec<Vec<f64>>,
    /// Their variances.
    pub variances: Vec<f64>,
    /// The variance of each remaining direction.
    pub residual_variance: f64,
}

/// The signed log every feature goes through first: counts, bytes and
/// microseconds span many orders of magnitude.
pub fn signed_log(x: f32) -> f64 {
    let x = f64::from(x);
    if x.is_finite() {
        x.signum() * x.abs().ln_1p()
    } else {
        0.0
    }
}

impl Ppca {
    /// Number of features.
    pub fn width(&self) -> usize {
        self.mean.len()
    }

    /// Feature `j` of `x`, standardised and clipped.
    pub fn standardise(&self, x: f32, j: usize) -> f64 {
        let m = self.mean.get(j).copied().unwrap_or(0.0);
        let s = self.scale.get(j).copied().unwrap_or(1.0);
        ((signed_log(x) - m) / s).clamp(-Z_CLIP, Z_CLIP)
    }

    /// A feature's typical benign value: the inverse signed log of its mean.
    pub fn typical(&self, j: usize) -> f64 {
        let m = self.mean.get(j).copied().unwrap_or(0.0);
        m.signum() * m.abs().exp_m1()
    }

    /// The score `e` of one row; with `residuals`, also each feature's
    /// part of it, `rⱼ² / σ²` (its reconstruction error). The residuals
    /// are worked out in `residuals` itself, so a caller that explains many
    /// rows reuses one buffer.
    pub fn error(&self, row: &[f32], residuals: Option<&mut Vec<f64>>) -> f64 {
        let mut local = Vec::new();
        let r = residuals.unwrap_or(&mut local);
        r.clear();
        r.extend(
            (0..self.width()).map(|j| self.standardise(row.get(j).copied().unwrap_or(0.0), j)),
        );
        // Every projection reads the standardised row; only then is each
        // component taken out of it (per feature, in component order).
        let ys: Vec<f64> = self
            .components
            .iter()
            .map(|p| p.iter().zip(r.iter()).map(|(a, b)| a * b).sum())
            .collect();
        let mut e = 0.0;
        for (y, lambda) in ys.iter().zip(&self.variances) {
            e += y * y / lambda;
        }
        for (p, y) in self.components.iter().zip(&ys) {
            for (rj, pj) in r.iter_mut().zip(p) {
                *rj -= y * pj;
            }
        }
        for rj in r.iter_mut() {
            let part = *rj * *rj / self.residual_variance;
            e += part;
            *rj = part;
        }
        e
    }

    /// Checks the shapes against `features` and that every number is
    /// finite (and every variance and scale positive).
    fn check(&self, features: usize) -> Result<(), String> {
        let f = self.width();
        if f != features || self.scale.len() != f {
            return Err(format!(
                "{} means and {} scales for {features} features",
                f,
                self.scale.len()
            ));
        }
        if self.components.len() != self.variances.len()
            || self.components.iter().any(|c| c.len() != f)
        {
            return Err("each component needs one variance and one entry per feature".into());
        }
        let finite = self
            .mean
            .iter()
            .chain(self.components.iter().flatten())
            .all(|x| x.is_finite());
        let positive = self
            .scale
            .iter()
            .chain(&self.variances)
            .chain(std::iter::once(&self.residual_variance))
            .all(|x| x.is_finite() && *x > 0.0);
        if !(finite && positive) {
            return Err("parameters must be finite, scales and variances positive".into());
        }
        Ok(())
    }
}

/// The parameters and the error threshold the graph's score is relative to
/// (`score = e / (e + threshold)`).
#[derive(Clone, Debug, PartialEq)]
pub struct AnomalySpec {
    /// The model.
    pub model: Ppca,
    /// The error at which the score is 0.5.
    pub threshold: f64,
}

#[derive(Deserialize)]
struct Meta {
    model: String,
    parameters: Ppca,
    threshold: ThresholdMeta,
}

#[derive(Deserialize)]
struct ThresholdMeta {
    error: f64,
}

/// Parses `tapstream.anomaly` for a model of `features` inputs.
pub(crate) fn parse(text: &str, features: usize) -> Result<Arc<AnomalySpec>, InferenceError> {
    let bad = |reason: String| InferenceError::InvalidMetadata { key: KEY, reason };
    let m: Meta =
        serde_json::from_str(text).map_err(|e| bad(format!("not the expected JSON: {e}")))?;
    if m.model != "ppca" {
        return Err(bad(format!(
            "model {:?} is not one this build explains (ppca)",
            m.model
        )));
    }
    m.parameters.check(features).map_err(bad)?;
    if !(m.threshold.error.is_finite() && m.threshold.error > 0.0) {
        return Err(bad("threshold.error must be finite and positive".into()));
    }
    Ok(Arc::new(AnomalySpec {
        model: m.parameters,
        threshold: m.threshold.error,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Ppca {
        Ppca {
            mean: vec![1.0, 2.0, 0.0],
            scale: vec![1.0, 0.5, 1.0],
            components: vec![vec![0.6, 0.8, 0.0]],
            variances: vec![2.0],
            residual_variance: 0.5,
        }
    }

    fn meta(p: &Ppca, name: &str, threshold: f64) -> String {
        serde_json::json!({"model": name, "threshold": {"error": threshold}, "parameters": p})
            .to_string()
    }

    #[test]
    fn parts_add_up_to_the_residual_error() {
        let m = model();
        let row = [5.0f32, -1.0, 1e9];
        let mut parts = Vec::new();
        let e = m.error(&row, Some(&mut parts));
        assert_eq!(parts.len(), 3);
        let z: Vec<f64> = (0..3).map(|j| m.standardise(row[j], j)).collect();
        assert!(z.iter().all(|v| v.abs() <= Z_CLIP), "{z:?}");
        let y = 0.6 * z[0] + 0.8 * z[1];
        let want = y * y / 2.0 + parts.iter().sum::<f64>();
        assert!((e - want).abs() < 1e-9 * e.max(1.0), "{e} {want}");
        assert!((m.typical(1) - (2f64.exp() - 1.0)).abs() < 1e-12);
    }

    #[test]
    fn contract_parameters_are_checked() {
        let m = model();
        assert!(parse(&meta(&m, "ppca", 10.0), 3).is_ok());
        for (text, features) in [
            (meta(&m, "ppca", 10.0), 4),
            (meta(&m, "kitnet", 10.0), 3),
            (meta(&m, "ppca", 0.0), 3),
            (meta(&m, "ppca", f64::NAN), 3),
            ("{}".to_string(), 3),
            (
                meta(
                    &Ppca {
                        variances: vec![-1.0],
                        ..model()
                    },
                    "ppca",
                    10.0,
                ),
                3,
            ),
            (
                meta(
                    &Ppca {
                        components: vec![vec![1.0, 0.0]],
                        ..model()
                    },
                    "ppca",
                    10.0,
                ),
                3,
            ),
        ] {
            assert!(
                matches!(
                    parse(&text, features),
                    Err(InferenceError::InvalidMetadata { key: KEY, .. })
                ),
                "{text}"
            );
        }
    }
}
