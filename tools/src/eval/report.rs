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
            .map(|m| m.threshold.to_string())
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

    fn cells(&self, f: impl Fn(&Metrics) -> String) -> Vec<String> {
        self.results.iter().map(|r| f(&r.metrics)).collect()
    }
}

/// `0.1234` as `12.3%`; `-` for none.
pub fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{:.1}%", x * 100.0))
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
