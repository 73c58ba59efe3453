//! The result of an evaluation as one value: what `eval.json` holds (stable
//! field names, for scripts that compare runs), what the terminal table and
//! `eval.html` are drawn from.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use tapstream_inference::ModelContract;

use super::labels::{Capture, Dataset, LabelSource, WINDOW_SLACK_US};
use super::metrics::{Metrics, Tally};
use super::perturb::{Perturb, Rewritten};

/// Everything an evaluation found (`eval.json`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Always `tapstream eval`.
    pub report: &'static str,
    /// Bumped when a field changes meaning or goes away.
    pub format_version: u32,
    /// The tapstream that wrote it.
    pub tapstream_version: &'static str,
    /// When, in seconds since the epoch.
    pub generated_unix_s: u64,
    /// The data directory.
    pub data_dir: String,
    /// `layout`, or the labels TSV.
    pub labels: String,
    /// How far an attack run's window reaches beyond its start and end.
    pub window_slack_s: f64,
    /// Flows, captures and episodes, whatever the model.
    pub counts: Counts,
    /// Captures that could not be read, or only in part.
    pub read_errors: Vec<ReadError>,
    /// The models, in command-line order.
    pub models: Vec<ModelInfo>,
    /// One per model, in the same order.
    pub results: Vec<ModelResult>,
    /// Detection on the perturbed copies of the captures (`--perturb`;
    /// empty without it).
    pub perturbations: Vec<PerturbResult>,
}

/// Detection on the captures perturbed one way.
#[derive(Clone, Debug, Serialize)]
pub struct PerturbResult {
    /// The perturbation's name (`--perturb` takes it).
    pub name: String,
    /// What it does.
    pub description: String,
    /// What the copies held.
    pub packets: Rewritten,
    /// One per model, in the report's order.
    pub results: Vec<PerturbModel>,
}

/// One model on the perturbed copies, against the clean captures.
#[derive(Clone, Debug, Serialize)]
pub struct PerturbModel {
    /// [`ModelInfo::name`].
    pub model: String,
    /// Mean of the per-kind flow recalls.
    pub mean_recall: Option<f64>,
    /// Its change from the clean captures (negative: worse).
    pub mean_recall_change: Option<f64>,
    /// Benign flow false-positive rate.
    pub benign_fpr: Option<f64>,
    /// Its change from the clean captures (positive: worse).
    pub benign_fpr_change: Option<f64>,
    /// Per attack kind: the flow recall and its change.
    pub kinds: BTreeMap<String, KindChange>,
}

/// A kind's flow recall on a perturbed copy and its change.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct KindChange {
    /// Flow recall.
    pub recall: Option<f64>,
    /// Its change from the clean captures.
    pub change: Option<f64>,
}

/// The perturbation results: for each of `perturb` (with what its copies
/// held), each model's metrics against its clean ones. `models`: name,
/// clean metrics and one metrics per perturbation.
pub fn perturbations(
    perturb: &[Perturb],
    rewritten: &[Rewritten],
    models: &[(String, Metrics, Vec<Metrics>)],
) -> Vec<PerturbResult> {
    let diff = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
    perturb
        .iter()
        .enumerate()
        .map(|(k, p)| PerturbResult {
            name: p.name(),
            description: p.describe(),
            packets: rewritten.get(k).copied().unwrap_or_default(),
            results: models
                .iter()
                .filter_map(|(name, clean, each)| {
                    let m = each.get(k)?;
                    let kinds = m
                        .kinds
                        .iter()
                        .map(|(kind, km)| {
                            let before = clean.kinds.get(kind).and_then(|c| c.recall);
                            let c = KindChange {
                                recall: km.recall,
                                change: diff(km.recall, before),
                            };
                            (kind.clone(), c)
                        })
                        .collect();
                    Some(PerturbModel {
                        model: name.clone(),
                        mean_recall: m.mean_recall,
                        mean_recall_change: diff(m.mean_recall, clean.mean_recall),
                        benign_fpr: m.benign.fpr,
                        benign_fpr_change: diff(m.benign.fpr, clean.benign.fpr),
                        kinds,
                    })
                })
                .collect(),
        })
        .collect()
}

/// What the data holds, whatever the model.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    /// Captures labelled.
    pub captures: u64,
    /// Of which read, entirely or in part.
    pub captures_read: u64,
    /// Captures that could not be read, or only in part.
    pub read_errors: u64,
    /// Flows of the captures read.
    pub flows: u64,
    /// Of which attack flows.
    pub attack_flows: u64,
    /// Of which benign flows.
    pub benign_flows: u64,
    /// Attack episodes (capture × kind).
    pub episodes: u64,
    /// Per attack kind.
    pub kinds: BTreeMap<String, KindCount>,
    /// Benign flows per benign group.
    pub benign_groups: BTreeMap<String, u64>,
}

/// An attack kind in the data.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct KindCount {
    /// Its flows.
    pub flows: u64,
    /// Captures holding a run of it.
    pub captures: u64,
}

/// A capture that could not be read.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReadError {
    /// Relative to the data directory.
    pub file: String,
    /// Why.
    pub error: String,
    /// True when the flows before the corruption were evaluated.
    pub partial: bool,
}

impl ReadError {
    pub(crate) fn new(cap: &Capture, error: String, partial: bool) -> Self {
        ReadError {
            file: cap.rel.clone(),
            error,
            partial,
        }
    }
}

/// A model as the report names it.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    /// Its column in the report (the file stem, made unique).
    pub name: String,
    /// The file.
    pub path: String,
    /// The contract's name.
    pub model_name: String,
    /// The contract's version.
    pub model_version: String,
    /// SHA-256 of the file.
    pub sha256: String,
    /// Export precision.
    pub precision: String,
    /// The decision threshold used.
    pub threshold: f32,
    /// The model's own threshold.
    pub contract_threshold: f32,
    /// Its classes.
    pub labels: Vec<String>,
}

impl ModelInfo {
    /// The column of `models` scored together (`--together`): no file, no
    /// threshold of its own (each model keeps its own).
    pub(crate) fn together(names: &[&str]) -> Self {
        ModelInfo {
            name: "together".to_owned(),
            path: String::new(),
            model_name: names.join(" + "),
            model_version: String::new(),
            sha256: String::new(),
            precision: String::new(),
            threshold: f32::NAN,
            contract_threshold: f32::NAN,
            labels: Vec::new(),
        }
    }

    pub(crate) fn new(name: String, path: &Path, c: &ModelContract, threshold: f32) -> Self {
        ModelInfo {
            name,
            path: path.display().to_string(),
            model_name: c.name.clone(),
            model_version: c.version.clone(),
            sha256: c.sha256.clone(),
            precision: c.precision.to_string(),
            threshold,
            contract_threshold: c.threshold,
            labels: c.labels.clone(),
        }
    }
}

/// One model's metrics.
#[derive(Clone, Debug, Serialize)]
pub struct ModelResult {
    /// [`ModelInfo::name`].
    pub model: String,
    /// Its numbers.
    pub metrics: Metrics,
}

impl Report {
    /// The report of `models` on `dataset`; `truth` holds every flow with
    /// no alert (the model-free counts).
    pub fn new(
        dataset: &Dataset,
        truth: &Tally,
        models: &[(ModelInfo, Metrics)],
        read_errors: Vec<ReadError>,
    ) -> Self {
        let t = truth.finish();
        let counts = Counts {
            captures: dataset.captures.len() as u64,
            captures_read: dataset
                .captures
                .len()
                .saturating_sub(read_errors.iter().filter(|e| !e.partial).count())
                as u64,
            read_errors: read_errors.len() as u64,
            flows: t.kinds.values().map(|k| k.flows).sum::<u64>() + t.benign.flows,
            attack_flows: t.kinds.values().map(|k| k.flows).sum(),
            benign_flows: t.benign.flows,
            episodes: t.alerts_per_episode.episodes,
            kinds: t
                .kinds
                .iter()
                .map(|(k, m)| {
                    let c = KindCount {
                        flows: m.flows,
                        captures: m.captures,
                    };
                    (k.clone(), c)
                })
                .collect(),
            benign_groups: t
                .benign
                .groups
                .iter()
                .map(|(g, r)| (g.clone(), r.flows))
                .collect(),
        };
        Report {
            report: "tapstream eval",
            format_version: 1,
            tapstream_version: env!("CARGO_PKG_VERSION"),
            generated_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            data_dir: dataset.root.display().to_string(),
            labels: match &dataset.source {
                LabelSource::Layout => "layout".into(),
                LabelSource::Tsv(p) => p.display().to_string(),
            },
            window_slack_s: WINDOW_SLACK_US as f64 / 1e6,
            counts,
            read_errors,
            models: models.iter().map(|(i, _)| i.clone()).collect(),
            results: models
                .iter()
                .map(|(i, m)| ModelResult {
                    model: i.name.clone(),
                    metrics: m.clone(),
                })
                .collect(),
            perturbations: Vec::new(),
        }
    }

    /// The terminal table: one column per model; per kind its flow recall
    /// and captures hit, then the benign false-positive rate, the mean
    /// recall and the alerts per episode.
    pub fn table(&self) -> String {
        let c = &self.counts;
        let mut s = format!(
            "tapstream eval: {} (labels: {})\n{} captures ({} unreadable), {} flows: {} attack in {} kinds, {} benign\n\n",
            self.data_dir,
            self.labels,
            c.captures,
            c.read_errors,
            thousands(c.flows),
            thousands(c.attack_flows),
            c.kinds.len(),
            thousands(c.benign_flows),
        );
        let widths: Vec<usize> = self.models.iter().map(|m| m.name.len().max(22)).collect();
        let mut row = |label: &str, flows: &str, cells: &[String]| {
            let mut line = format!("{label:<18} {flows:>11}");
            for (cell, w) in cells.iter().zip(&widths) {
                let _ = write!(line, "  {cell:<w$}");
            }
            s.push_str(line.trim_end());
            s.push('\n');
        };
        let names: Vec<String> = self.models.iter().map(|m| m.name.clone()).collect();
        row("kind", "flows", &names);
        let thresholds: Vec<String> = self
            .models
            .iter()
            .map(|m| {
                if m.threshold.is_nan() {
                    "each own".to_owned()
                } else {
                    m.threshold.to_string()
                }
            })
            .collect();
        row("threshold", "", &thresholds);
        for (kind, count) in &c.kinds {
            let cells = self.cells(|m| {
                m.kinds.get(kind).map_or_else(String::new, |k| {
                    format!(
                        "{:>6}  {}/{} files",
                        percent(k.recall),
                        k.captures_hit,
                        k.captures
                    )
                })
            });
            row(kind, &thousands(count.flows), &cells);
        }
        let fpr = self.cells(|m| {
            let alerts = thousands(m.benign.alerted);
            format!("{:>6}  {alerts} alerts", percent(m.benign.fpr))
        });
        row("benign FPR", &thousands(c.benign_flows), &fpr);
        row(
            "mean recall",
            "",
            &self.cells(|m| format!("{:>6}", percent(m.mean_recall))),
        );
        let ape = self.cells(|m| {
            let e = &m.alerts_per_episode;
            format!("{} mean, {} max", one_decimal(e.mean), thousands(e.max))
        });
        let episodes = format!("{} episodes", c.episodes);
        row("alerts per episode", &episodes, &ape);
        self.perturbation_table(&mut s);
        for e in &self.read_errors {
            let what = if e.partial {
                "read in part"
            } else {
                "unreadable"
            };
            let _ = writeln!(s, "{what}: {}: {}", e.file, e.error);
        }
        s
    }

    /// Per perturbation and model: mean recall and benign FPR with their
    /// change from the clean captures, and the kind that lost most.
    fn perturbation_table(&self, s: &mut String) {
        if self.perturbations.is_empty() {
            return;
        }
        s.push_str("\nperturbed (change from the clean captures, in points):\n");
        for p in &self.perturbations {
            for r in &p.results {
                let worst = r
                    .kinds
                    .iter()
                    .filter_map(|(k, c)| Some((c.change?, k)))
                    .filter(|(c, _)| *c < 0.0)
                    .min_by(|a, b| a.0.total_cmp(&b.0))
                    .map_or_else(String::new, |(c, k)| {
                        format!("; most lost: {k} {}", points(Some(c)))
                    });
                let _ = writeln!(
                    s,
                    "{:<24} {:<22} mean recall {:>6} ({}), benign FPR {:>6} ({}){worst}",
                    p.name,
                    r.model,
                    percent(r.mean_recall),
                    points(r.mean_recall_change),
                    percent(r.benign_fpr),
                    points(r.benign_fpr_change),
                );
            }
        }
    }

    fn cells(&self, f: impl Fn(&Metrics) -> String) -> Vec<String> {
        self.results.iter().map(|r| f(&r.metrics)).collect()
    }
}

/// `0.1234` as `12.3%`; `-` for none.
pub fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{:.1}%", x * 100.0))
}

/// A change of a rate in percentage points, signed: `-2.5`; `-` for none.
pub fn points(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{:+.1}", x * 100.0))
}

/// One decimal; `-` for none.
pub fn one_decimal(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.1}"))
}

/// `12345` as `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(percent(Some(0.12345)), "12.3%");
        assert_eq!(percent(None), "-");
        assert_eq!(one_decimal(Some(2.26)), "2.3");
    }
}
