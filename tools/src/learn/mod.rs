//! `tapstream learn`: a detector of what is unusual *here*, fitted on a
//! site's own benign traffic.
//!
//! A classifier knows only the attacks it was trained on; a site runs
//! traffic no data set has. This module takes the flows of benign captures
//! (or of a live interface, gathered by the binary through the same
//! pipeline as `tapstream run`), with their CIC and context features,
//! fits an anomaly model on most of them ([`ppca`]) and sets its threshold
//! on the rest, held out, at the false-positive rate asked for. The result
//! is an ONNX file ([`onnx`]) with the project's model contract: it runs
//! through the same engines, providers, `eval` and `model report` as the
//! shipped classifier, and no Python is involved.
//!
//! The held-out flows are each input's latest ones (a tenth to a half, by
//! flow start): the threshold is set on traffic later than what the model
//! was fitted on, as it will be used.
//!
//! Everything is deterministic: flows are put in one order (by start time
//! and addresses) whatever the pipeline's worker interleaving, so the same
//! captures give the same file.

pub mod onnx;
pub mod ppca;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use tapstream_inference::contract::keys;
use tapstream_inference::{select_features_with, ModelContract};
use tapstream_ingest::FlowMeta;
use tapstream_kernels::context::{CONTEXT_FEATURES, CONTEXT_SCHEMA_NAME, CONTEXT_SCHEMA_VERSION};
use tapstream_kernels::schema::FEATURES;
use tapstream_kernels::FlowBatch;

use onnx::Graph;
use ppca::{score_of, Ppca};
pub use tapstream_inference::anomaly::KEY as ANOMALY_KEY;

/// The model's label of benign flows and of flagged ones.
pub const LABELS: [&str; 2] = ["benign", "anomaly"];
/// CIC features the model leaves out: port numbers are names, not amounts.
const EXCLUDED: [&str; 2] = ["Src Port", "Dst Port"];

/// What to learn and where to write it.
#[derive(Clone, Debug)]
pub struct Options {
    /// False-positive rate to set the threshold at, on held-out benign flows.
    pub fpr: f64,
    /// Share of each input's flows (its latest) held out for the threshold.
    pub holdout: f64,
    /// Model name, as written in alerts.
    pub name: String,
    /// Model version, as written in alerts.
    pub version: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fpr: 0.001,
            holdout: 0.2,
            name: "site-anomaly".to_owned(),
            version: "1".to_owned(),
        }
    }
}

/// Why a model could not be learned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LearnError {
    /// Too few flows to fit or to hold out.
    #[error(
        "{found} flows to learn from; at least {need} are needed (more benign traffic, or a \
         longer --for)"
    )]
    TooFewFlows {
        /// Flows found.
        found: usize,
        /// Flows needed.
        need: usize,
    },
    /// An option is out of range.
    #[error("{0}")]
    Option(String),
    /// The features do not vary at all.
    #[error("the benign flows' features do not vary: nothing to learn")]
    Degenerate,
    /// The contract written would not load (a bug, said plainly).
    #[error("the learned model's contract is invalid")]
    Contract(#[source] tapstream_inference::InferenceError),
    /// The written model did not load.
    #[error("checking the learned model")]
    Load(#[source] tapstream_inference::ModelError),
    /// The written model failed to score the held-out flows.
    #[error("scoring the held-out flows with the learned model")]
    Score(#[source] tapstream_inference::InferenceError),
    /// The model file could not be written.
    #[error("writing {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The flows of the inputs, as model rows, in a deterministic order.
#[derive(Debug)]
pub struct Flows {
    contract: ModelContract,
    /// Per input: its name and its rows (row major).
    inputs: Vec<(String, Vec<f32>)>,
    /// The input being gathered: its rows and each row's sort key.
    open: Vec<f32>,
    keys: Vec<FlowKey>,
    /// Flows the input being gathered keeps at most ([`Flows::at_most`]).
    cap: Option<usize>,
    /// It keeps the flows whose sampling hash has this many low bits zero.
    sample_bits: u32,
}

/// What puts an input's flows in one order whatever the order they came in:
/// start time, then the flow's identity and end (and its id, which samples
/// it).
type FlowKey = (i64, [u8; 16], [u8; 16], u16, u16, u8, i64, u64);

/// Whether the flow `id` is kept when `bits` low bits of its hash must be
/// zero.
fn sampled(id: u64, bits: u32) -> bool {
    let h = tapstream_kernels::context::mix(id);
    bits == 0 || h.checked_shl(64 - bits.min(64)).unwrap_or(0) == 0
}

impl Flows {
    /// No flows yet, for the anomaly model's features.
    pub fn new() -> Result<Flows, LearnError> {
        let names = feature_names();
        let meta = contract_metadata(&names, &Options::default(), None, None);
        let contract = contract_of(&meta, "0")?;
        Ok(Flows {
            contract,
            inputs: Vec::new(),
            open: Vec::new(),
            keys: Vec::new(),
            cap: None,
            sample_bits: 0,
        })
    }

    /// Keeps at most `cap` flows of an input gathered with
    /// [`gather`](Self::gather): past it, half of them are dropped, and so on
    /// while it is still past it. Which half is decided by a hash of the flow
    /// id (itself the 5-tuple and start time), so the flows kept are those
    /// whose hash has the fewest low zero bits that leave at most `cap`:
    /// the same set whatever the order the flows came in.
    pub fn at_most(mut self, cap: usize) -> Self {
        self.cap = Some(cap.max(1));
        self
    }

    /// Halvings of the input being gathered so far (it keeps about one flow
    /// in `2^n`).
    pub fn halvings(&self) -> u32 {
        self.sample_bits
    }

    /// The model's features, in column order.
    pub fn features(&self) -> &[String] {
        &self.contract.features
    }

    /// Adds an input's flows (batches collected from the pipeline with the
    /// context stage on), put in start-time order.
    pub fn add(&mut self, name: &str, batches: &[FlowBatch]) {
        for b in batches {
            self.gather(b, |_| true);
        }
        self.seal(name);
    }

    /// Adds the flows of `b` that `keep` accepts to the input being
    /// gathered (a run that learns as the flows come).
    pub fn gather(&mut self, b: &FlowBatch, keep: impl Fn(&FlowMeta) -> bool) {
        let width = self.contract.num_features();
        let mut input = Vec::new();
        let n = select_features_with(&self.contract, &b.rows, &b.context, b.len(), &mut input);
        for (i, m) in b.metas.iter().take(n).enumerate() {
            if !keep(m) || !sampled(m.flow_id, self.sample_bits) {
                continue;
            }
            if let Some(row) = input.get(i * width..(i + 1) * width) {
                self.open.extend_from_slice(row);
                self.keys.push((
                    m.start_us, m.src, m.dst, m.sport, m.dport, m.proto, m.last_us, m.flow_id,
                ));
            }
            while self.cap.is_some_and(|c| self.keys.len() > c) && self.sample_bits < 64 {
                self.halve();
            }
        }
    }

    /// Keeps the flows of the input being gathered that one more hash bit
    /// samples.
    fn halve(&mut self) {
        self.sample_bits += 1;
        let width = self.contract.num_features();
        let mut kept = 0;
        for i in 0..self.keys.len() {
            let Some(&key) = self.keys.get(i) else {
                break;
            };
            if !sampled(key.7, self.sample_bits) {
                continue;
            }
            self.keys.swap(kept, i);
            self.open
                .copy_within(i * width..(i + 1) * width, kept * width);
            kept += 1;
        }
        self.keys.truncate(kept);
        self.open.truncate(kept * width);
    }

    /// Ends the input being gathered, named `name`: its flows in start-time
    /// order.
    pub fn seal(&mut self, name: &str) {
        let width = self.contract.num_features();
        let input = std::mem::take(&mut self.open);
        let keys = std::mem::take(&mut self.keys);
        self.sample_bits = 0;
        let row = |i: usize| input.get(i * width..(i + 1) * width).unwrap_or(&[]);
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by(|&a, &b| {
            keys.get(a)
                .cmp(&keys.get(b))
                .then_with(|| total_order(row(a), row(b)))
        });
        let rows = order.iter().flat_map(|&i| row(i).iter().copied()).collect();
        self.inputs.push((name.to_owned(), rows));
    }

    /// Flows of the input being gathered.
    pub fn gathered(&self) -> usize {
        self.keys.len()
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        let width = self.contract.num_features().max(1);
        self.inputs.iter().map(|(_, r)| r.len() / width).sum()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn total_order(a: &[f32], b: &[f32]) -> std::cmp::Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.total_cmp(y))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

/// How the threshold was set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Threshold {
    /// The error `e` at and above which a flow is flagged.
    pub error: f64,
    /// Which bound set it ([`threshold_at`]): `quantile` (the held-out
    /// errors' own) or `lognormal` (a log-normal fit of them, higher).
    pub method: &'static str,
    /// The false-positive rate asked for.
    pub fpr: f64,
    /// Held-out flows it was set on.
    pub held_out: usize,
    /// Of those, the ones at or above it (by the `f64` reference).
    pub held_out_flagged: usize,
}

/// What learning produced and measured.
#[derive(Clone, Debug, Serialize)]
pub struct Learned {
    /// The model file's bytes.
    #[serde(skip)]
    pub bytes: Vec<u8>,
    /// The fitted model.
    #[serde(skip)]
    pub model: Ppca,
    /// The held-out rows (row major), for [`verify`].
    #[serde(skip)]
    pub held_out: Vec<f32>,
    /// Model name and version.
    pub name: String,
    /// Model version.
    pub version: String,
    /// Flows per input: (name, fitted on, held out).
    pub inputs: Vec<(String, usize, usize)>,
    /// Flows fitted on.
    pub fit_flows: usize,
    /// Features.
    pub features: usize,
    /// Principal components kept.
    pub components: usize,
    /// The threshold.
    pub threshold: Threshold,
    /// Seconds spent fitting and thresholding (not reading captures).
    pub fit_seconds: f64,
}

/// Fits the anomaly model on `flows` and builds its ONNX file.
pub fn learn(flows: &Flows, opts: &Options) -> Result<Learned, LearnError> {
    check_options(opts)?;
    let started = Instant::now();
    let width = flows.contract.num_features();
    let need = ((ppca::MIN_FLOWS as f64) / (1.0 - opts.holdout)).ceil() as usize;
    if flows.len() < need {
        return Err(LearnError::TooFewFlows {
            found: flows.len(),
            need,
        });
    }
    let mut fit_rows = Vec::new();
    let mut held_rows = Vec::new();
    let mut inputs = Vec::new();
    for (name, rows) in &flows.inputs {
        let n = rows.len() / width;
        let held = ((n as f64) * opts.holdout).ceil() as usize;
        let cut = (n - held.min(n)) * width;
        let (fit, later) = rows.split_at(cut.min(rows.len()));
        fit_rows.extend_from_slice(fit);
        held_rows.extend_from_slice(later);
        inputs.push((name.clone(), n - held.min(n), held.min(n)));
    }
    let need_held = (1.0 / opts.holdout).ceil() as usize;
    if held_rows.len() / width < need_held.max(10) {
        return Err(LearnError::TooFewFlows {
            found: flows.len(),
            need: ppca::MIN_FLOWS + need_held.max(10),
        });
    }
    let model = ppca::fit(&fit_rows, width)?;
    let mut errors: Vec<f64> = held_rows
        .chunks_exact(width)
        .map(|r| model.error(r, None))
        .collect();
    let threshold = threshold_at(&mut errors, opts.fpr);
    let baseline = baseline_json(&flows.contract, &fit_rows, width);
    let anomaly = serde_json::json!({
        "model": "ppca",
        "transform": "signed_log1p",
        "threshold": &threshold,
        "parameters": &model,
    })
    .to_string();
    let meta = contract_metadata(
        &flows.contract.features,
        opts,
        Some(baseline),
        Some(anomaly),
    );
    contract_of(&meta, "0")?;
    let mut graph = Graph::default();
    ppca::graph(&model, threshold.error, &mut graph);
    for (k, v) in meta {
        graph.metadata(k, v);
    }
    let bytes = graph.encode(
        env!("CARGO_PKG_VERSION"),
        "tapstream learn: probabilistic PCA anomaly score over CIC and context flow features",
    );
    Ok(Learned {
        bytes,
        name: opts.name.clone(),
        version: opts.version.clone(),
        inputs,
        fit_flows: fit_rows.len() / width,
        features: width,
        components: model.components.len(),
        model,
        held_out: held_rows,
        threshold,
        fit_seconds: started.elapsed().as_secs_f64(),
    })
}

impl Learned {
    /// Writes the model file.
    pub fn write(&self, path: &Path) -> Result<(), LearnError> {
        std::fs::write(path, &self.bytes).map_err(|source| LearnError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The learned score of each row of `rows` by the `f64` reference, in
    /// the graph's `[0, 1)` form.
    pub fn reference_scores(&self, rows: &[f32]) -> Vec<f64> {
        rows.chunks_exact(self.features.max(1))
            .map(|r| score_of(self.model.error(r, None), self.threshold.error))
            .collect()
    }
}

/// The written model, loaded through ONNX Runtime like any other, against
/// the `f64` reference on the held-out flows.
#[derive(Clone, Debug, Serialize)]
pub struct Verified {
    /// Held-out flows the engine flagged (score ≥ the contract's 0.5).
    pub held_out_flagged: usize,
    /// Their share: the held-out false-positive rate, as `run` will see it.
    pub held_out_fpr: f64,
    /// Largest difference between the engine's and the reference's score.
    pub max_score_difference: f64,
}

/// Loads the model at `spec.path` and scores the held-out flows with it.
pub fn verify(
    learned: &Learned,
    spec: &tapstream_inference::ModelSpec,
) -> Result<Verified, LearnError> {
    let mut loaded = tapstream_inference::model::load(spec).map_err(LearnError::Load)?;
    verify_loaded(learned, &mut loaded)
}

/// Scores the held-out flows with `loaded` (the model file `learned`
/// wrote, loaded) and compares with the `f64` reference.
pub fn verify_loaded(
    learned: &Learned,
    loaded: &mut tapstream_inference::LoadedModel,
) -> Result<Verified, LearnError> {
    let width = learned.features.max(1);
    let reference = learned.reference_scores(&learned.held_out);
    let mut flagged = 0;
    let mut max_diff = 0.0f64;
    let mut preds = Vec::new();
    let chunk = 4096 * width;
    let mut seen = 0;
    for rows in learned.held_out.chunks(chunk) {
        let n = rows.len() / width;
        preds.clear();
        loaded
            .engine
            .infer(rows, n, &mut preds)
            .map_err(LearnError::Score)?;
        for (p, r) in preds.iter().zip(reference.iter().skip(seen)) {
            flagged += usize::from(p.score >= loaded.threshold);
            max_diff = max_diff.max((f64::from(p.score) - r).abs());
        }
        seen += n;
    }
    Ok(Verified {
        held_out_flagged: flagged,
        held_out_fpr: flagged as f64 / reference.len().max(1) as f64,
        max_score_difference: max_diff,
    })
}

fn check_options(opts: &Options) -> Result<(), LearnError> {
    if !(opts.fpr > 0.0 && opts.fpr < 0.5) {
        return Err(LearnError::Option(format!(
            "--fpr {} is not a rate in (0, 0.5)",
            opts.fpr
        )));
    }
    if !(0.05..=0.5).contains(&opts.holdout) {
        return Err(LearnError::Option(format!(
            "--holdout {} is not in [0.05, 0.5]",
            opts.holdout
        )));
    }
    if opts.name.trim().is_empty() || opts.version.trim().is_empty() {
        return Err(LearnError::Option(
            "--name and --version must not be empty".to_owned(),
        ));
    }
    Ok(())
}

/// The threshold on held-out errors for false-positive rate `fpr`: the
/// higher of the empirical quantile (at most `floor(fpr·n)` held-out flows
/// above it; above all of them when that is 0) and a log-normal fit of the
/// errors' upper quantile (as Kitsune sets its threshold), which
/// extrapolates where the held-out flows are too few to show the tail. So
/// the held-out flows never exceed the rate asked for.
pub fn threshold_at(errors: &mut [f64], fpr: f64) -> Threshold {
    errors.sort_by(f64::total_cmp);
    let n = errors.len();
    let above = (fpr * n as f64).floor() as usize;
    let empirical = if above == 0 {
        // A margin the graph's f32 score still resolves.
        errors.last().map_or(0.0, |m| m * (1.0 + 1e-4) + 1e-9)
    } else {
        // Between the last flow kept below and the first allowed above.
        let above = above.min(n.saturating_sub(1));
        let below = errors.get(n - 1 - above).copied().unwrap_or(0.0);
        let next = errors.get(n - above).copied().unwrap_or(below);
        (below + next) / 2.0
    };
    let logs: Vec<f64> = errors.iter().map(|e| e.max(1e-12).ln()).collect();
    let mean = logs.iter().sum::<f64>() / n.max(1) as f64;
    let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n.max(2) as f64;
    let lognormal = (mean + normal_quantile(1.0 - fpr) * var.sqrt()).exp();
    let (error, method) = if lognormal > empirical {
        (lognormal, "lognormal")
    } else {
        (empirical, "quantile")
    };
    let flagged = errors.iter().filter(|&&e| e >= error).count();
    Threshold {
        error,
        method,
        fpr,
        held_out: n,
        held_out_flagged: flagged,
    }
}

/// The standard normal quantile `Φ⁻¹(p)`, `0 < p < 1` (Acklam's rational
/// approximation, relative error below 1.2e-9: one function, so no
/// statistics crate for it).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let poly = |c: &[f64], x: f64| c.iter().fold(0.0, |acc, k| acc * x + k);
    let tail = |q: f64| poly(&C, q) / (poly(&D, q) * q + 1.0);
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        poly(&A, r) * q / (poly(&B, r) * r + 1.0)
    }
}

/// The anomaly model's features: the CIC features but the ports, then every
/// context feature.
pub fn feature_names() -> Vec<String> {
    FEATURES
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !EXCLUDED.contains(n))
        .chain(CONTEXT_FEATURES.iter().copied())
        .map(str::to_owned)
        .collect()
}

/// The contract's metadata for a learned model.
fn contract_metadata(
    features: &[String],
    opts: &Options,
    baseline: Option<String>,
    anomaly: Option<String>,
) -> Vec<(&'static str, String)> {
    let json = |v: &[&str]| serde_json::to_string(v).unwrap_or_default();
    let mut m = vec![
        (keys::SCHEMA, CONTEXT_SCHEMA_NAME.to_owned()),
        (keys::SCHEMA_VERSION, CONTEXT_SCHEMA_VERSION.to_string()),
        (
            keys::FEATURES,
            serde_json::to_string(features).unwrap_or_default(),
        ),
        (keys::SCALER, "in-graph".to_owned()),
        (keys::LABELS, json(&LABELS)),
        (keys::BENIGN_LABEL, LABELS[0].to_owned()),
        (keys::OUTPUT, "score".to_owned()),
        (keys::THRESHOLD, "0.5".to_owned()),
        (keys::MODEL_NAME, opts.name.trim().to_owned()),
        (keys::MODEL_VERSION, opts.version.trim().to_owned()),
        (keys::PRECISION, "fp32".to_owned()),
    ];
    if let Some(b) = baseline {
        m.push((keys::BASELINE, b));
    }
    if let Some(a) = anomaly {
        m.push((ANOMALY_KEY, a));
    }
    m
}

fn contract_of(meta: &[(&'static str, String)], sha: &str) -> Result<ModelContract, LearnError> {
    let map: BTreeMap<&str, &String> = meta.iter().map(|(k, v)| (*k, v)).collect();
    ModelContract::from_metadata(|k| map.get(k).map(|v| (*v).clone()), sha)
        .map_err(LearnError::Contract)
}

/// `tapstream.baseline` over the fitted flows: each context feature's
/// median and 99th percentile, so alerts explain themselves against this
/// site's own traffic.
fn baseline_json(contract: &ModelContract, rows: &[f32], width: usize) -> String {
    let mut out = serde_json::Map::new();
    for (j, name) in contract.features.iter().enumerate() {
        if !name.starts_with("ctx_") {
            continue;
        }
        let mut v: Vec<f32> = rows
            .chunks_exact(width)
            .filter_map(|r| r.get(j).copied())
            .collect();
        v.sort_by(f32::total_cmp);
        let at = |q: f64| {
            let i = ((v.len().saturating_sub(1)) as f64 * q).round() as usize;
            v.get(i).copied().unwrap_or(0.0)
        };
        out.insert(
            name.clone(),
            serde_json::json!({"median": at(0.5), "p99": at(0.99)}),
        );
    }
    serde_json::Value::Object(out).to_string()
}
