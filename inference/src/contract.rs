//! The model contract: what a model promises about its inputs and outputs.
//!
//! A model is only useful if it is fed the features it was trained on, in the
//! same order and scaling, and if its outputs are read the way they were
//! meant. That agreement travels inside the ONNX file as `metadata_props`
//! (keys in [`keys`]), and this module parses and checks it *before* anything
//! runs, so that a model trained on another schema, or with a broken scaler,
//! is refused at start-up with an error that names the problem instead of
//! producing plausible-looking wrong scores.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use tapstream_kernels::context::{
    context_feature_since, context_index, CONTEXT_SCHEMA_NAME, CONTEXT_SCHEMA_OLDEST,
    CONTEXT_SCHEMA_VERSION,
};
use tapstream_kernels::schema::{feature_index, NUM_FEATURES, SCHEMA_NAME, SCHEMA_VERSION};

use crate::InferenceError;

/// The `metadata_props` keys of the model contract.
pub mod keys {
    /// Feature schema name: `kernels::schema::SCHEMA_NAME` (CIC features
    /// only) or `kernels::context::CONTEXT_SCHEMA_NAME` (CIC and context
    /// features).
    pub const SCHEMA: &str = "tapstream.schema";
    /// Feature schema version: that schema's version in this build.
    pub const SCHEMA_VERSION: &str = "tapstream.schema_version";
    /// JSON array of feature names, in the model's input column order.
    pub const FEATURES: &str = "tapstream.features";
    /// `in-graph`, or JSON `{"mean": [..], "scale": [..]}` with one entry per feature.
    pub const SCALER: &str = "tapstream.scaler";
    /// JSON array of class labels, in output column order.
    pub const LABELS: &str = "tapstream.labels";
    /// The label of benign traffic (required for `probabilities` output).
    pub const BENIGN_LABEL: &str = "tapstream.benign_label";
    /// `probabilities` (`[N, C]`) or `score` (`[N]` or `[N, 1]`).
    pub const OUTPUT: &str = "tapstream.output";
    /// Default decision threshold on the attack score, in `[0, 1]`.
    pub const THRESHOLD: &str = "tapstream.threshold";
    /// Model name, as written in alerts.
    pub const MODEL_NAME: &str = "tapstream.model_name";
    /// Model version, as written in alerts.
    pub const MODEL_VERSION: &str = "tapstream.model_version";
    /// `fp32`, `fp16` or `int8` (optional; `fp32` when absent).
    pub const PRECISION: &str = "tapstream.precision";
    /// JSON object: context feature name → `{"median": m, "p99": q}` over
    /// the benign flows the model was trained on (optional). Alerts explain
    /// themselves with the context features furthest above it.
    pub const BASELINE: &str = "tapstream.baseline";
}

/// A feature's distribution over a model's benign training flows.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// Median.
    pub median: f32,
    /// 99th percentile.
    pub p99: f32,
}

/// How raw feature values are scaled before they enter the model.
#[derive(Clone, Debug, PartialEq)]
pub enum Scaler {
    /// The graph scales its own input; raw values are passed as they are.
    InGraph,
    /// Standardisation done by tapstream: `(x - mean[i]) / scale[i]` for the
    /// model's `i`-th feature (scikit-learn `StandardScaler` semantics).
    External {
        /// Per-feature mean, one per model feature.
        mean: Vec<f64>,
        /// Per-feature scale (standard deviation), finite and non-zero.
        scale: Vec<f64>,
    },
}

/// What the model's single output holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// Class probabilities `[N, C]`, one column per label; the attack score is
    /// `1 - p(benign)`.
    Probabilities,
    /// An attack score `[N]` or `[N, 1]`, already in `[0, 1]`.
    Score,
}

/// A numeric precision: the one a model was exported at (its input and
/// output are `f32` in every case; this records how the graph computes), and
/// the lowest one TensorRT may choose kernels in. In configuration files it
/// is spelt `fp32`, `fp16` or `int8`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats throughout.
    #[default]
    Fp32,
    /// 16-bit float weights and activations (casts at the graph's edges).
    Fp16,
    /// 8-bit integer quantised.
    Int8,
}

impl Precision {
    /// The metadata spelling: `fp32`, `fp16` or `int8`.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = ();

    /// `fp32`, `fp16` or `int8`.
    fn from_str(s: &str) -> Result<Self, ()> {
        [Precision::Fp32, Precision::Fp16, Precision::Int8]
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or(())
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verified model contract: everything needed to feed a model and read
/// its output. Built by [`ModelContract::from_metadata`] (which
/// [`OnnxEngine::load`](crate::OnnxEngine::load) calls), so every value here
/// has been checked.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ModelContract {
    /// Feature schema name (`kernels::schema::SCHEMA_NAME` or
    /// `kernels::context::CONTEXT_SCHEMA_NAME`).
    pub schema: String,
    /// Feature schema version (that schema's version in this build).
    pub schema_version: u32,
    /// Feature names in the model's input column order.
    pub features: Vec<String>,
    /// For each model input column, its index in `kernels::schema::FEATURES`,
    /// or `NUM_FEATURES + j` for context feature `j`
    /// (`kernels::context::CONTEXT_FEATURES`).
    pub columns: Vec<usize>,
    /// How raw values are scaled.
    pub scaler: Scaler,
    /// Class labels (output column order for [`OutputKind::Probabilities`]).
    pub labels: Vec<String>,
    /// Index of the benign label in `labels`, if the model has one.
    pub benign: Option<usize>,
    /// What the output holds.
    pub output: OutputKind,
    /// Default decision threshold on the attack score, in `[0, 1]`.
    pub threshold: f32,
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// Export precision.
    pub precision: Precision,
    /// SHA-256 of the model file, lower-case hex.
    pub sha256: String,
    /// The benign baseline of each context feature, by context index
    /// (`kernels::context::CONTEXT_FEATURES`); empty when the model has
    /// none ([`keys::BASELINE`]).
    pub baseline: Vec<Option<Baseline>>,
    /// A learned anomaly model's parameters ([`crate::anomaly::KEY`]), so
    /// its alerts can name the features that made a flow unusual.
    pub anomaly: Option<std::sync::Arc<crate::anomaly::AnomalySpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExternalScaler {
    mean: Vec<f64>,
    scale: Vec<f64>,
}

impl ModelContract {
    /// Parses and checks a contract from metadata values.
    ///
    /// `lookup` returns the value of a `metadata_props` key, or `None` when
    /// absent; `sha256` is the hex digest of the model file. Checks: schema
    /// name and version match this build; features are non-empty, known and
    /// unique; the scaler has one finite mean and one finite non-zero scale
    /// per feature; labels are non-empty and unique; the benign label (required
    /// for probabilities) is a label; a score model has a non-benign label; the
    /// threshold is in `[0, 1]`; name and version are non-empty.
    pub fn from_metadata(
        mut lookup: impl FnMut(&str) -> Option<String>,
        sha256: &str,
    ) -> Result<Self, InferenceError> {
        let l = &mut lookup;
        let schema = parse_schema(required(l, keys::SCHEMA)?)?;
        let schema_version = parse_schema_version(&schema, required(l, keys::SCHEMA_VERSION)?)?;
        let (features, columns) =
            parse_features(&schema, schema_version, &required(l, keys::FEATURES)?)?;
        let scaler = parse_scaler(&required(l, keys::SCALER)?, features.len())?;
        let labels = parse_labels(&required(l, keys::LABELS)?)?;
        let output = parse_output(&required(l, keys::OUTPUT)?)?;
        let benign = benign_of(l(keys::BENIGN_LABEL), &labels, output)?;
        let threshold = parse_threshold(&required(l, keys::THRESHOLD)?)?;
        let name = non_empty(keys::MODEL_NAME, required(l, keys::MODEL_NAME)?)?;
        let version = non_empty(keys::MODEL_VERSION, required(l, keys::MODEL_VERSION)?)?;
        let precision = parse_precision(l(keys::PRECISION).as_deref())?;
        let baseline = l(keys::BASELINE)
            .map(|text| parse_baseline(&text))
            .transpose()?
            .unwrap_or_default();
        let anomaly = l(crate::anomaly::KEY)
            .map(|text| crate::anomaly::parse(&text, features.len()))
            .transpose()?;
        Ok(ModelContract {
            schema,
            schema_version,
            features,
            columns,
            scaler,
            labels,
            benign,
            output,
            threshold,
            name,
            version,
            precision,
            sha256: sha256.to_ascii_lowercase(),
            baseline,
            anomaly,
        })
    }

    /// Number of model input columns.
    pub fn num_features(&self) -> usize {
        self.features.len()
    }

    /// True when the model reads context features, so flows need the
    /// context stage's rows.
    pub fn needs_context(&self) -> bool {
        self.columns.iter().any(|&c| c >= NUM_FEATURES)
    }

    /// The label reported for an attack of class `class`, if the index is valid.
    pub fn label(&self, class: usize) -> Option<&str> {
        self.labels.get(class).map(String::as_str)
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> InferenceError {
    InferenceError::InvalidMetadata {
        key,
        reason: reason.into(),
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(
    key: &'static str,
    text: &str,
) -> Result<T, InferenceError> {
    serde_json::from_str(text).map_err(|e| invalid(key, format!("not the expected JSON: {e}")))
}

/// The value of metadata key `key`, which must be there.
fn required(
    lookup: &mut impl FnMut(&str) -> Option<String>,
    key: &'static str,
) -> Result<String, InferenceError> {
    lookup(key).ok_or(InferenceError::MissingMetadata { key })
}

fn non_empty(key: &'static str, value: String) -> Result<String, InferenceError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        Err(invalid(key, "the value is empty"))
    } else {
        Ok(trimmed.to_owned())
    }
}

fn parse_scaler(text: &str, features: usize) -> Result<Scaler, InferenceError> {
    if text.trim() == "in-graph" {
        return Ok(Scaler::InGraph);
    }
    let ExternalScaler { mean, scale } = parse_json(keys::SCALER, text).map_err(|_| {
        invalid(
            keys::SCALER,
            "expected `in-graph` or a JSON object {\"mean\": [..], \"scale\": [..]}",
        )
    })?;
    for (field, values) in [("mean", &mean), ("scale", &scale)] {
        if values.len() != features {
            return Err(InferenceError::ScalerLength {
                field,
                expected: features,
                found: values.len(),
            });
        }
    }
    if let Some(i) = mean.iter().position(|m| !m.is_finite()) {
        return Err(invalid(
            keys::SCALER,
            format!("mean[{i}] is not a finite number"),
        ));
    }
    if let Some((i, s)) = scale
        .iter()
        .enumerate()
        .find(|(_, s)| !s.is_finite() || **s == 0.0)
    {
        return Err(invalid(
            keys::SCALER,
            format!("scale[{i}] is {s}; every scale must be finite and non-zero"),
        ));
    }
    Ok(Scaler::External { mean, scale })
}

/// The schema name, which must be one this build extracts.
fn parse_schema(schema: String) -> Result<String, InferenceError> {
    match schema.trim() {
        SCHEMA_NAME | CONTEXT_SCHEMA_NAME => Ok(schema.trim().to_owned()),
        _ => Err(InferenceError::SchemaMismatch {
            expected: SCHEMA_NAME,
            found: schema,
        }),
    }
}

/// The schema version, which must be this build's version of `schema` or,
/// for the context schema, a version whose features this build still
/// computes the same way ([`CONTEXT_SCHEMA_OLDEST`]).
fn parse_schema_version(schema: &str, version_text: String) -> Result<u32, InferenceError> {
    let (oldest, expected) = if schema == CONTEXT_SCHEMA_NAME {
        (CONTEXT_SCHEMA_OLDEST, CONTEXT_SCHEMA_VERSION)
    } else {
        (SCHEMA_VERSION, SCHEMA_VERSION)
    };
    match version_text.trim().parse::<u32>() {
        Ok(v) if (oldest..=expected).contains(&v) => Ok(v),
        _ => Err(InferenceError::SchemaVersionMismatch {
            expected,
            found: version_text,
        }),
    }
}

/// The input column of feature `name` in `schema`: a CIC feature's schema
/// index, or (context schema only) `NUM_FEATURES +` its context index.
fn column_of(schema: &str, name: &str) -> Option<usize> {
    feature_index(name).or_else(|| {
        (schema == CONTEXT_SCHEMA_NAME)
            .then(|| context_index(name).map(|j| NUM_FEATURES + j))
            .flatten()
    })
}

/// The feature names (non-empty, known in the model's schema version,
/// unique) and their schema columns.
fn parse_features(
    schema: &str,
    version: u32,
    text: &str,
) -> Result<(Vec<String>, Vec<usize>), InferenceError> {
    let features: Vec<String> = parse_json(keys::FEATURES, text)?;
    if features.is_empty() {
        return Err(invalid(keys::FEATURES, "the feature list is empty"));
    }
    let mut columns = Vec::with_capacity(features.len());
    let mut seen = HashSet::with_capacity(features.len());
    for name in &features {
        let column = column_of(schema, name).ok_or_else(|| InferenceError::UnknownFeature {
            name: name.clone(),
            schema: if schema == CONTEXT_SCHEMA_NAME {
                CONTEXT_SCHEMA_NAME
            } else {
                SCHEMA_NAME
            },
        })?;
        let since = column
            .checked_sub(NUM_FEATURES)
            .and_then(context_feature_since);
        if let Some(since) = since.filter(|&v| v > version) {
            return Err(InferenceError::FeatureNewerThanSchema {
                name: name.clone(),
                since,
                version,
            });
        }
        if !seen.insert(column) {
            return Err(InferenceError::DuplicateFeature { name: name.clone() });
        }
        columns.push(column);
    }
    Ok((features, columns))
}

/// The labels (non-empty, unique).
fn parse_labels(text: &str) -> Result<Vec<String>, InferenceError> {
    let labels: Vec<String> = parse_json(keys::LABELS, text)?;
    if labels.is_empty() {
        return Err(invalid(keys::LABELS, "the label list is empty"));
    }
    let mut seen_labels = HashSet::with_capacity(labels.len());
    for label in &labels {
        if !seen_labels.insert(label.as_str()) {
            return Err(invalid(
                keys::LABELS,
                format!("label {label:?} is listed twice"),
            ));
        }
    }
    Ok(labels)
}

/// `probabilities` or `score`.
fn parse_output(text: &str) -> Result<OutputKind, InferenceError> {
    match text.trim() {
        "probabilities" => Ok(OutputKind::Probabilities),
        "score" => Ok(OutputKind::Score),
        other => Err(invalid(
            keys::OUTPUT,
            format!("{other:?} is neither `probabilities` nor `score`"),
        )),
    }
}

/// The benign label's index (required for probabilities); there must be
/// an attack label besides it.
fn benign_of(
    label: Option<String>,
    labels: &[String],
    output: OutputKind,
) -> Result<Option<usize>, InferenceError> {
    let benign = match label {
        Some(label) => match labels.iter().position(|l| *l == label) {
            Some(i) => Some(i),
            None => {
                return Err(InferenceError::UnknownBenignLabel {
                    label,
                    labels: labels.to_vec(),
                })
            }
        },
        None if output == OutputKind::Probabilities => {
            return Err(InferenceError::MissingMetadata {
                key: keys::BENIGN_LABEL,
            })
        }
        None => None,
    };
    if !(0..labels.len()).any(|i| Some(i) != benign) {
        return Err(invalid(
            keys::LABELS,
            "there is no label besides the benign one, so no attack class to report",
        ));
    }
    Ok(benign)
}

/// The benign baseline: context feature names only, finite values,
/// `0 <= median <= p99`.
fn parse_baseline(text: &str) -> Result<Vec<Option<Baseline>>, InferenceError> {
    let map: std::collections::BTreeMap<String, Baseline> = parse_json(keys::BASELINE, text)?;
    let mut out = vec![None; tapstream_kernels::context::NUM_CONTEXT];
    for (name, b) in map {
        let Some(slot) = context_index(&name).and_then(|j| out.get_mut(j)) else {
            return Err(invalid(
                keys::BASELINE,
                format!("{name:?} is not a context feature (only those have baselines)"),
            ));
        };
        if !(b.median.is_finite() && b.p99.is_finite() && 0.0 <= b.median && b.median <= b.p99) {
            return Err(invalid(
                keys::BASELINE,
                format!(
                    "{name}: median {} and p99 {} must be finite with 0 <= median <= p99",
                    b.median, b.p99
                ),
            ));
        }
        *slot = Some(b);
    }
    Ok(out)
}

/// The decision threshold, in `[0, 1]`.
fn parse_threshold(text: &str) -> Result<f32, InferenceError> {
    let threshold: f32 = text
        .trim()
        .parse()
        .map_err(|_| invalid(keys::THRESHOLD, format!("{text:?} is not a number")))?;
    if !(0.0..=1.0).contains(&threshold) {
        return Err(InferenceError::ThresholdOutOfRange { value: threshold });
    }
    Ok(threshold)
}

/// `fp32` (also when absent), `fp16` or `int8`.
fn parse_precision(text: Option<&str>) -> Result<Precision, InferenceError> {
    let Some(text) = text.map(str::trim) else {
        return Ok(Precision::Fp32);
    };
    text.parse().map_err(|()| {
        invalid(
            keys::PRECISION,
            format!("{text:?} is not one of fp32, fp16, int8"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn base() -> HashMap<&'static str, String> {
        HashMap::from([
            (keys::SCHEMA, SCHEMA_NAME.to_owned()),
            (keys::SCHEMA_VERSION, SCHEMA_VERSION.to_string()),
            (
                keys::FEATURES,
                r#"["Flow Duration","Dst Port","Total Fwd Packet"]"#.to_owned(),
            ),
            (keys::SCALER, "in-graph".to_owned()),
            (keys::LABELS, r#"["BENIGN","DoS","PortScan"]"#.to_owned()),
            (keys::BENIGN_LABEL, "BENIGN".to_owned()),
            (keys::OUTPUT, "probabilities".to_owned()),
            (keys::THRESHOLD, "0.5".to_owned()),
            (keys::MODEL_NAME, "m".to_owned()),
            (keys::MODEL_VERSION, "1".to_owned()),
            (keys::PRECISION, "fp32".to_owned()),
        ])
    }

    fn parse(map: &HashMap<&'static str, String>) -> Result<ModelContract, InferenceError> {
        ModelContract::from_metadata(|k| map.get(k).cloned(), "ABCDEF")
    }

    fn with(key: &'static str, value: &str) -> Result<ModelContract, InferenceError> {
        let mut m = base();
        m.insert(key, value.to_owned());
        parse(&m)
    }

    fn without(key: &'static str) -> Result<ModelContract, InferenceError> {
        let mut m = base();
        m.remove(key);
        parse(&m)
    }

    #[test]
    fn valid_contract_maps_columns() {
        let c = parse(&base()).unwrap();
        assert_eq!(c.columns, vec![3, 1, 4]);
        assert_eq!(c.benign, Some(0));
        assert_eq!(c.output, OutputKind::Probabilities);
        assert_eq!(c.precision, Precision::Fp32);
        assert_eq!(c.sha256, "abcdef");
        assert_eq!(c.num_features(), 3);
        assert_eq!(c.label(2), Some("PortScan"));
    }

    #[test]
    fn every_required_key_is_required() {
        for key in [
            keys::SCHEMA,
            keys::SCHEMA_VERSION,
            keys::FEATURES,
            keys::SCALER,
            keys::LABELS,
            keys::OUTPUT,
            keys::BENIGN_LABEL,
            keys::THRESHOLD,
            keys::MODEL_NAME,
            keys::MODEL_VERSION,
        ] {
            match without(key) {
                Err(InferenceError::MissingMetadata { key: k }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
        // Precision defaults to fp32.
        assert_eq!(without(keys::PRECISION).unwrap().precision, Precision::Fp32);
    }

    #[test]
    fn schema_and_version_must_match() {
        assert!(matches!(
            with(keys::SCHEMA, "unsw-nb15"),
            Err(InferenceError::SchemaMismatch { .. })
        ));
        assert!(matches!(
            with(keys::SCHEMA_VERSION, "2"),
            Err(InferenceError::SchemaVersionMismatch { .. })
        ));
        assert!(matches!(
            with(keys::SCHEMA_VERSION, "one"),
            Err(InferenceError::SchemaVersionMismatch { .. })
        ));
    }

    #[test]
    fn a_context_model_of_an_older_compatible_version_loads_with_its_features() {
        let context = |version: &str, features: &str| {
            let mut m = base();
            m.insert(keys::SCHEMA, CONTEXT_SCHEMA_NAME.to_owned());
            m.insert(keys::SCHEMA_VERSION, version.to_owned());
            m.insert(keys::FEATURES, features.to_owned());
            parse(&m)
        };
        let v2 = r#"["Flow Duration","ctx_src_flows_1s","ctx_dst_flows_100s"]"#;
        let v3 = r#"["Flow Duration","ctx_src_flows_1s","ctx_src_rejected_10s"]"#;
        let current = CONTEXT_SCHEMA_VERSION.to_string();
        let oldest = CONTEXT_SCHEMA_OLDEST.to_string();
        assert_eq!(context(&oldest, v2).unwrap().schema_version, 2);
        assert!(context(&current, v2).is_ok());
        assert!(context(&current, v3).is_ok());
        // Version 2 had no outcome statistics; version 1 counted groups.
        assert!(matches!(
            context(&oldest, v3),
            Err(InferenceError::FeatureNewerThanSchema { name, since: 3, version: 2 })
                if name == "ctx_src_rejected_10s"
        ));
        for bad in ["1", "4"] {
            assert!(matches!(
                context(bad, v2),
                Err(InferenceError::SchemaVersionMismatch { .. })
            ));
        }
    }

    #[test]
    fn features_are_checked() {
        assert!(matches!(
            with(keys::FEATURES, r#"["Flow Duration","Label"]"#),
            Err(InferenceError::UnknownFeature { name, .. }) if name == "Label"
        ));
        assert!(matches!(
            with(keys::FEATURES, r#"["Dst Port","Dst Port"]"#),
            Err(InferenceError::DuplicateFeature { name }) if name == "Dst Port"
        ));
        assert!(matches!(
            with(keys::FEATURES, "[]"),
            Err(InferenceError::InvalidMetadata {
                key: keys::FEATURES,
                ..
            })
        ));
        assert!(matches!(
            with(keys::FEATURES, "Dst Port"),
            Err(InferenceError::InvalidMetadata {
                key: keys::FEATURES,
                ..
            })
        ));
    }

    #[test]
    fn scaler_is_checked() {
        let c = with(keys::SCALER, r#"{"mean":[1,2,3],"scale":[4,5,6]}"#).unwrap();
        assert_eq!(
            c.scaler,
            Scaler::External {
                mean: vec![1.0, 2.0, 3.0],
                scale: vec![4.0, 5.0, 6.0]
            }
        );
        assert!(matches!(
            with(keys::SCALER, r#"{"mean":[1,2],"scale":[4,5,6]}"#),
            Err(InferenceError::ScalerLength {
                field: "mean",
                expected: 3,
                found: 2
            })
        ));
        assert!(matches!(
            with(keys::SCALER, r#"{"mean":[1,2,3],"scale":[4,5,6,7]}"#),
            Err(InferenceError::ScalerLength { field: "scale", .. })
        ));
        assert!(matches!(
            with(keys::SCALER, r#"{"mean":[1,2,3],"scale":[4,0,6]}"#),
            Err(InferenceError::InvalidMetadata {
                key: keys::SCALER,
                ..
            })
        ));
        assert!(matches!(
            with(keys::SCALER, "standard"),
            Err(InferenceError::InvalidMetadata {
                key: keys::SCALER,
                ..
            })
        ));
    }

    #[test]
    fn labels_threshold_output_are_checked() {
        assert!(matches!(
            with(keys::BENIGN_LABEL, "Normal"),
            Err(InferenceError::UnknownBenignLabel { label, .. }) if label == "Normal"
        ));
        assert!(matches!(
            with(keys::THRESHOLD, "2.0"),
            Err(InferenceError::ThresholdOutOfRange { .. })
        ));
        assert!(matches!(
            with(keys::THRESHOLD, "NaN"),
            Err(InferenceError::ThresholdOutOfRange { .. })
        ));
        assert!(matches!(
            with(keys::THRESHOLD, "high"),
            Err(InferenceError::InvalidMetadata {
                key: keys::THRESHOLD,
                ..
            })
        ));
        assert!(matches!(
            with(keys::OUTPUT, "logits"),
            Err(InferenceError::InvalidMetadata {
                key: keys::OUTPUT,
                ..
            })
        ));
        assert!(matches!(
            with(keys::LABELS, r#"["BENIGN","DoS","DoS"]"#),
            Err(InferenceError::InvalidMetadata {
                key: keys::LABELS,
                ..
            })
        ));
        assert!(matches!(
            with(keys::LABELS, r#"["BENIGN"]"#),
            Err(InferenceError::InvalidMetadata {
                key: keys::LABELS,
                ..
            })
        ));
        assert!(matches!(
            with(keys::PRECISION, "bf16"),
            Err(InferenceError::InvalidMetadata {
                key: keys::PRECISION,
                ..
            })
        ));
        assert!(matches!(
            with(keys::MODEL_NAME, "  "),
            Err(InferenceError::InvalidMetadata {
                key: keys::MODEL_NAME,
                ..
            })
        ));
    }

    #[test]
    fn score_model_may_omit_benign_label() {
        let mut m = base();
        m.insert(keys::OUTPUT, "score".to_owned());
        m.insert(keys::LABELS, r#"["ATTACK"]"#.to_owned());
        m.remove(keys::BENIGN_LABEL);
        let c = parse(&m).unwrap();
        assert_eq!(c.output, OutputKind::Score);
        assert_eq!(c.benign, None);
    }

    #[test]
    fn baseline_is_optional_and_checked() {
        assert!(parse(&base()).unwrap().baseline.is_empty());
        let c = with(
            keys::BASELINE,
            r#"{"ctx_src_flows_1s":{"median":1,"p99":145.5},"ctx_dst_flows_100s":{"median":0,"p99":0}}"#,
        )
        .unwrap();
        assert_eq!(c.baseline.len(), tapstream_kernels::context::NUM_CONTEXT);
        assert_eq!(
            c.baseline[0],
            Some(Baseline {
                median: 1.0,
                p99: 145.5
            })
        );
        assert_eq!(
            c.baseline[23],
            Some(Baseline {
                median: 0.0,
                p99: 0.0
            })
        );
        assert_eq!(c.baseline.iter().flatten().count(), 2);
        for bad in [
            r#"{"Flow Duration":{"median":1,"p99":2}}"#,
            r#"{"ctx_src_flows_1s":{"median":3,"p99":2}}"#,
            r#"{"ctx_src_flows_1s":{"median":-1,"p99":2}}"#,
            r#"{"ctx_src_flows_1s":{"median":1}}"#,
            r#"[1, 2]"#,
        ] {
            let e = with(keys::BASELINE, bad).unwrap_err();
            assert!(e.to_string().contains("tapstream.baseline"), "{bad}: {e}");
        }
    }
}
