//! Where the model runs (`[inference] placement`): the flow workers score
//! exactly the flows the consumer would, with the same alerts, and a worker
//! that cannot score stops the run with an error instead of losing flows
//! quietly.

use std::sync::Arc;

use tapstream_connectors::sink::{AlertSink, SinkError};
use tapstream_inference::WorkerModels;
use tapstream_inference::{Engine, InferenceError, ModelContract, Prediction};
use tapstream_runtime::config::{Config, Placement};
use tapstream_runtime::stage::alerts::model_info;
use tapstream_runtime::{AlertStage, Consumer, Progress};

use crate::util::{bin, demo_pcap, have_ort, output, root, shared_data};

/// Sorted EVE lines and the summary of `tapstream run` with `config`.
fn run_with(
    pcap: &std::path::Path,
    dir: &std::path::Path,
    config: &str,
) -> (Vec<String>, serde_json::Value) {
    let cfg = dir.join("c.toml");
    let summary = dir.join("s.json");
    std::fs::write(&cfg, config).unwrap();
    let o = output(
        bin()
            .current_dir(root())
            .args([
                "run",
                "--alerts",
                "flows",
                "--model",
                "models/cic-mlp.onnx",
                "--config",
            ])
            .arg(&cfg)
            .arg("--pcap")
            .arg(pcap)
            .arg("--summary-json")
            .arg(&summary),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{config}\n{stderr}");
    let mut lines: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    let s = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    (lines, s)
}

#[test]
fn alerts_do_not_depend_on_where_the_model_runs() {
    if !have_ort("alerts_do_not_depend_on_where_the_model_runs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut captures = vec![demo_pcap(dir.path())];
    if let Some(data) = shared_data("alerts_do_not_depend_on_where_the_model_runs") {
        captures.push(data.join("lab/attack/portscan/nmap_sS.pcap"));
        captures.push(data.join("lab/benign/http_ab.pcap"));
    }
    for pcap in &captures {
        let (reference, s) = run_with(pcap, dir.path(), "[pipeline]\nworkers = 1\n");
        assert_eq!(s["scored_in_workers"], 0, "{s}");
        for (workers, batch_rows) in [(1, 1024), (3, 1024), (3, 7)] {
            let config = format!(
                "[inference]\nplacement = \"workers\"\nbatch_rows = {batch_rows}\n\
                 [pipeline]\nworkers = {workers}\n"
            );
            let (lines, s) = run_with(pcap, dir.path(), &config);
            assert_eq!(s["accounted"], true, "{s}");
            assert_eq!(s["scored"], s["flows"], "{s}");
            assert_eq!(s["scored_in_workers"], s["flows"], "{s}");
            assert_eq!(
                lines,
                reference,
                "{} with {workers} workers and {batch_rows}-row calls",
                pcap.display()
            );
        }
        assert!(
            !reference.is_empty() || pcap.ends_with("http_ab.pcap"),
            "{}: no alerts to compare",
            pcap.display()
        );
    }
}

/// An engine with a real contract whose every call fails.
struct Failing(ModelContract);

impl Engine for Failing {
    fn contract(&self) -> &ModelContract {
        &self.0
    }

    fn infer(
        &mut self,
        _input: &[f32],
        rows: usize,
        out: &mut Vec<Prediction>,
    ) -> Result<(), InferenceError> {
        out.clear();
        Err(InferenceError::InputSize {
            rows,
            features: self.0.num_features(),
            found: 0,
        })
    }
}

struct NoSink;

impl AlertSink for NoSink {
    fn write(&mut self, _alert: &tapstream_connectors::eve::Alert<'_>) -> Result<(), SinkError> {
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// `tapstream run`'s pipeline on `pcap` with the default model in the
/// consumer and `sessions` failing sessions for the workers.
fn run_failing(cfg: &Config, pcap: &std::path::Path, sessions: usize) -> anyhow::Result<()> {
    let loaded =
        tapstream_runtime::model::load(cfg, Some(&root().join("models/cic-mlp.onnx")), 0).unwrap();
    let contract = loaded.engine.contract().clone();
    let sessions: Vec<Box<dyn Engine>> = (0..sessions)
        .map(|_| Box::new(Failing(contract.clone())) as Box<dyn Engine>)
        .collect();
    let stage = AlertStage {
        model: model_info(loaded.engine.contract()),
        engine: loaded.engine,
        sink: Box::new(NoSink),
        threshold: loaded.threshold,
        batch_rows: 1024,
        max_delay: cfg.inference.max_delay,
        reload: None,
        settled: None,
        limiter: Default::default(),
        reopen: None,
        workers: Some(WorkerModels::new(sessions, loaded.threshold)),
        episodes: None,
        detector: String::new(),
        detectors: Vec::new(),
        learning: Vec::new(),
        progress: None,
    };
    tapstream_runtime::run_file(
        pcap,
        cfg,
        Consumer::Alerts(Box::new(stage)),
        Arc::new(Progress::default()),
    )
    .map(|_| ())
}

#[test]
fn a_worker_that_cannot_score_stops_the_run_with_an_error() {
    if !have_ort("a_worker_that_cannot_score_stops_the_run_with_an_error") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = demo_pcap(dir.path());
    let mut cfg = Config::default();
    cfg.pipeline.workers = 2;
    cfg.inference.placement = Placement::Workers;
    let err = run_failing(&cfg, &pcap, 2).expect_err("scoring failed, so the run must fail");
    let msg = format!("{err:#}");
    assert!(msg.contains("could not score"), "{msg}");
    assert!(msg.contains("inference failed"), "{msg}");

    // Sessions for the wrong number of workers are refused before start.
    let err = run_failing(&cfg, &pcap, 1).expect_err("one session for two workers");
    assert!(format!("{err:#}").contains("1 model sessions were loaded for 2 flow workers"));
}

/// `scripts/compare-alerts.py` (the GPU host's check of `tapstream run` on
/// the device against the CPU) passes identical runs and reports a lost
/// alert and a changed score.
#[test]
fn the_alert_comparison_script_finds_differences() {
    if !have_ort("the_alert_comparison_script_finds_differences") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = demo_pcap(dir.path());
    let (lines, _) = run_with(&pcap, dir.path(), "");
    assert!(lines.len() > 100);
    let write = |name: &str, lines: &[String]| {
        let p = dir.path().join(name);
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        p
    };
    let reference = write("ref.json", &lines);
    let compare = |other: &std::path::Path| {
        output(
            std::process::Command::new("python3")
                .arg(root().join("scripts/compare-alerts.py"))
                .arg(&reference)
                .arg(other),
        )
    };
    let same = compare(&write("same.json", &lines));
    let text = String::from_utf8_lossy(&same.stdout).to_string();
    assert!(same.status.success(), "{text}");
    assert!(text.contains("problems 0"), "{text}");

    let lost = compare(&write("lost.json", &lines[1..]));
    let text = String::from_utf8_lossy(&lost.stdout).to_string();
    assert_eq!(lost.status.code(), Some(1), "{text}");
    assert!(text.contains("only reference 1"), "{text}");

    let mut changed = lines.clone();
    let mut a: serde_json::Value = serde_json::from_str(&changed[0]).unwrap();
    let s = a["tapstream"]["score"].as_f64().unwrap();
    a["tapstream"]["score"] = serde_json::json!(s - 0.001);
    changed[0] = a.to_string();
    let moved = compare(&write("moved.json", &changed));
    let text = String::from_utf8_lossy(&moved.stdout).to_string();
    assert_eq!(moved.status.code(), Some(1), "{text}");
    assert!(text.contains("problems 1"), "{text}");
}
