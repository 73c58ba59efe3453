//! Hot reload: a good new model takes over between batches, a bad one is
//! refused and the current model keeps scoring, and no flow is lost or
//! scored twice on the way; and `tapstream run` reloads on SIGHUP.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::bounded;
use tapstream_connectors::eve::Alert;
use tapstream_connectors::sink::{AlertSink, SinkError};
use tapstream_inference::{LoadedModel, ReloadCounts, Reloader, WorkerModels};
use tapstream_ingest::flow::FlowConfig;
use tapstream_ingest::records::read_records;
use tapstream_kernels::{FlowBatch, ShardProcessor};
use tapstream_runtime::config::Config;
use tapstream_runtime::stage::alerts::model_info;
use tapstream_runtime::{AlertStage, Consumer};

use crate::util::{bin, have_ort, output, root, wait_until, LogLines};

/// Remembers which model scored each alert.
struct Recorder(Arc<Mutex<Vec<String>>>);

impl AlertSink for Recorder {
    fn write(&mut self, alert: &Alert<'_>) -> Result<(), SinkError> {
        if let Ok(mut v) = self.0.lock() {
            v.push(alert.model.name.clone());
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// The reloader of `cfg`'s model, each model loaded with `workers` more
/// sessions (no SIGHUP: the tests request reloads themselves).
fn reloader(cfg: &Config, workers: usize) -> Reloader {
    let spec = tapstream_runtime::model::spec(cfg, None).unwrap();
    Reloader::start(spec, cfg.model.watch, workers).unwrap()
}

/// An alert stage that scores in batches of 256 rows with no delay and
/// records which model scored each alert in `seen`.
fn recording_stage(
    loaded: LoadedModel,
    reload: &Arc<Reloader>,
    seen: &Arc<Mutex<Vec<String>>>,
    workers: Option<Arc<WorkerModels>>,
) -> AlertStage {
    AlertStage {
        model: model_info(loaded.engine.contract()),
        engine: loaded.engine,
        sink: Box::new(Recorder(seen.clone())),
        threshold: loaded.threshold,
        batch_rows: 256,
        max_delay: Duration::ZERO,
        reload: Some(reload.clone()),
        settled: None,
        limiter: Default::default(),
        reopen: None,
        workers,
        episodes: None,
        detector: String::new(),
        detectors: Vec::new(),
        learning: Vec::new(),
        progress: None,
    }
}

/// The demo capture's flows, in small batches.
fn demo_batches(dir: &Path) -> Vec<FlowBatch> {
    let pcap = crate::util::demo_pcap(dir);
    let recs = read_records(&pcap, usize::MAX).unwrap().recs;
    let mut shard = ShardProcessor::new(FlowConfig::default(), 0).unwrap();
    let mut batches = Vec::new();
    let mut out = FlowBatch::default();
    for chunk in recs.chunks(512) {
        shard.process(chunk, &mut out);
        if !out.is_empty() {
            batches.push(out.clone());
            out.clear();
        }
    }
    shard.flush(&mut out);
    batches.push(out);
    batches
}

#[test]
fn good_model_swaps_in_bad_model_is_refused_no_flow_lost() {
    if !have_ort("good_model_swaps_in_bad_model_is_refused_no_flow_lost") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let batches = demo_batches(dir.path());
    let total: usize = batches.iter().map(FlowBatch::len).sum();
    assert!(
        batches.len() >= 9 && total > 1000,
        "{} batches, {total} flows",
        batches.len()
    );
    let model = dir.path().join("model.onnx");
    std::fs::copy(root().join("models/cic-mlp.onnx"), &model).unwrap();
    let mut cfg = Config::default();
    cfg.model.path = Some(model.clone());
    cfg.model.threshold = Some(0.0); // every flow alerts, so every flow is seen
    cfg.inference.max_delay = Duration::ZERO;
    let loaded = tapstream_runtime::model::load(&cfg, None, 0).unwrap();
    let reload = Arc::new(reloader(&cfg, 0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stage = recording_stage(loaded, &reload, &seen, None);
    // A rendezvous: when a send returns, the consumer holds that batch, and
    // (max_delay 0) scores it before it takes the next.
    let (tx, rx) = bounded::<FlowBatch>(0);
    let (pool_tx, _pool_rx) = bounded::<FlowBatch>(64);
    let consumer = std::thread::spawn(move || {
        Consumer::Alerts(Box::new(stage)).run(rx, pool_tx, &AtomicBool::new(false), false)
    });
    let third = batches.len() / 3;
    let mut sent = 0;
    let mut send = |b: &FlowBatch| {
        sent += b.len();
        tx.send(b.clone()).unwrap();
    };
    for b in &batches[..third] {
        send(b);
    }
    // A good model with other features and labels replaces the file.
    std::fs::copy(root().join("inference/tests/data/linear3.onnx"), &model).unwrap();
    reload.request();
    wait_until("the new model", Duration::from_secs(20), || {
        reload.counts().loaded == 1
    });
    for b in &batches[third..2 * third] {
        send(b);
    }
    // A broken file is refused; the model in use goes on.
    std::fs::write(&model, b"not a model").unwrap();
    reload.request();
    wait_until("the refusal", Duration::from_secs(20), || {
        reload.counts().refused == 1
    });
    for b in &batches[2 * third..] {
        send(b);
    }
    drop(tx);
    let report = consumer.join().unwrap().unwrap();
    assert_eq!(sent, total);
    assert_eq!(report.flows as usize, total);
    assert_eq!(report.scored as usize, total);
    assert_eq!(report.model_swaps, 1);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), total, "every flow alerts exactly once");
    // The old model scored a prefix, the new one everything after it.
    let switch = seen
        .iter()
        .position(|m| m == "fixture-linear3")
        .expect("the new model scored flows");
    // It took over at the start of a batch: the first one after the reload
    // request, or the one the consumer had just received when the new model
    // became ready.
    let boundary: Vec<usize> = batches
        .iter()
        .scan(0, |n, b| {
            *n += b.len();
            Some(*n)
        })
        .collect();
    assert!(
        switch == boundary[third - 1] || switch == boundary[third - 2],
        "swapped after {switch} flows; batches end at {:?}",
        &boundary[third - 2..third]
    );
    assert!(seen[..switch].iter().all(|m| m == "cic-mlp"));
    assert!(seen[switch..].iter().all(|m| m == "fixture-linear3"));
}

/// Inference in the flow workers: a reloaded model is built once per worker,
/// published by the consumer, and each worker takes it between two of its
/// batches; every alert names the model that scored it (even while the
/// other worker still runs the old one), a bad model is refused, and every
/// flow is scored exactly once.
#[test]
fn workers_swap_models_between_their_batches() {
    if !have_ort("workers_swap_models_between_their_batches") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let batches = demo_batches(dir.path());
    let total: usize = batches.iter().map(FlowBatch::len).sum();
    assert!(batches.len() >= 9, "{} batches", batches.len());
    let model = dir.path().join("model.onnx");
    std::fs::copy(root().join("models/cic-mlp.onnx"), &model).unwrap();
    let mut cfg = Config::default();
    cfg.model.path = Some(model.clone());
    cfg.model.threshold = Some(0.0); // every flow alerts, so every flow is seen
    let mut loaded = tapstream_runtime::model::load(&cfg, None, 2).unwrap();
    assert_eq!(loaded.workers.len(), 2);
    let models = WorkerModels::take_from(&mut loaded).unwrap();
    let reload = Arc::new(reloader(&cfg, 2));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stage = recording_stage(loaded, &reload, &seen, Some(models.clone()));
    // Two workers' scorers, used in turn from this thread; the rendezvous
    // keeps the consumer one batch behind at most.
    let mut scorers = [
        models.scorer(0, 100).unwrap(),
        models.scorer(1, 100).unwrap(),
    ];
    assert!(models.scorer(0, 100).is_err(), "one session per worker");
    let (tx, rx) = bounded::<FlowBatch>(0);
    let (pool_tx, _pool_rx) = bounded::<FlowBatch>(64);
    let consumer = std::thread::spawn(move || {
        Consumer::Alerts(Box::new(stage)).run(rx, pool_tx, &AtomicBool::new(false), false)
    });
    // Which worker scored batch i, and with which generation.
    let mut scored_by = Vec::new();
    let mut send = |i: usize| {
        let w = i % 2;
        let mut b = batches[i].clone();
        scorers[w].score(&mut b).unwrap();
        let s = b.scored.expect("scored");
        assert_eq!(b.flagged.len(), b.len(), "threshold 0 flags every flow");
        assert!(s.calls as usize >= b.len().div_ceil(100));
        scored_by.push((w, s.generation));
        tx.send(b).unwrap();
    };
    let third = batches.len() / 3;
    for i in 0..third {
        send(i);
    }
    std::fs::copy(root().join("inference/tests/data/linear3.onnx"), &model).unwrap();
    reload.request();
    wait_until("the new model", Duration::from_secs(20), || {
        reload.counts().loaded == 1
    });
    for i in third..2 * third {
        send(i);
    }
    std::fs::write(&model, b"not a model").unwrap();
    reload.request();
    wait_until("the refusal", Duration::from_secs(20), || {
        reload.counts().refused == 1
    });
    for i in 2 * third..batches.len() {
        send(i);
    }
    drop(tx);
    let report = consumer.join().unwrap().unwrap();
    assert_eq!(report.flows as usize, total);
    assert_eq!(report.scored as usize, total);
    assert_eq!(report.scored_in_workers as usize, total);
    assert_eq!(report.model_swaps, 1);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), total, "every flow alerts exactly once");
    // Alerts go out batch by batch (max_delay 0), each named after the
    // generation that scored its batch.
    let mut at = 0;
    for (i, b) in batches.iter().enumerate() {
        let want = if scored_by[i].1 == 0 {
            "cic-mlp"
        } else {
            "fixture-linear3"
        };
        assert!(
            seen[at..at + b.len()].iter().all(|m| m == want),
            "batch {i} scored by {:?}",
            scored_by[i]
        );
        at += b.len();
    }
    // Each worker moved to generation 1 once, within a batch or two of the
    // reload (the consumer publishes when it next receives a batch), and
    // never back.
    for w in 0..2 {
        let gens: Vec<u64> = scored_by
            .iter()
            .filter(|(x, _)| *x == w)
            .map(|(_, g)| *g)
            .collect();
        let first_new = gens.iter().position(|&g| g == 1).expect("swapped");
        assert!(gens[..first_new].iter().all(|&g| g == 0), "{gens:?}");
        assert!(gens[first_new..].iter().all(|&g| g == 1), "{gens:?}");
        let own_before_reload = (0..third).filter(|i| i % 2 == w).count();
        assert!(
            first_new <= own_before_reload + 2,
            "worker {w} swapped at its batch {first_new}: {gens:?}"
        );
    }
}

/// `tapstream run` on a capture that arrives through a FIFO: SIGHUP while
/// it waits for more packets reloads the model; the summary counts the
/// swap and every packet.
#[test]
fn sighup_reloads_the_model_of_a_running_tapstream() {
    if !have_ort("sighup_reloads_the_model_of_a_running_tapstream") {
        return;
    }
    sighup_reload("sighup_reloads_the_model_of_a_running_tapstream", "");
}

/// The same with the flow workers scoring: the reload builds a session per
/// worker and the workers take them over.
#[test]
fn sighup_reloads_the_models_of_scoring_workers() {
    if !have_ort("sighup_reloads_the_models_of_scoring_workers") {
        return;
    }
    sighup_reload(
        "sighup_reloads_the_models_of_scoring_workers",
        "[inference]\nplacement = \"workers\"\n[pipeline]\nworkers = 2\n",
    );
}

fn sighup_reload(test: &str, config: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, config).unwrap();
    let pcap = std::fs::read(crate::util::demo_pcap(dir.path())).unwrap();
    let fifo = dir.path().join("input.pcap");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !matches!(made, Ok(s) if s.success()) {
        eprintln!("{test}: skipped, no mkfifo");
        return;
    }
    let model = dir.path().join("model.onnx");
    std::fs::copy(root().join("models/cic-mlp.onnx"), &model).unwrap();
    let summary = dir.path().join("summary.json");
    let mut child = bin()
        .args(["run", "--eve", "/dev/null", "--config"])
        .arg(&cfg)
        .arg("--model")
        .arg(&model)
        .arg("--pcap")
        .arg(&fifo)
        .arg("--summary-json")
        .arg(&summary)
        .env("TAPSTREAM_LOG", "tapstream=info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let log = LogLines::read(child.stderr.take().unwrap());
    // Opening the FIFO waits for tapstream to open it, by which time its
    // SIGHUP handler is installed.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let half = pcap.len() / 2;
    writer.write_all(&pcap[..half]).unwrap();
    writer.flush().unwrap();
    std::fs::copy(root().join("inference/tests/data/linear3.onnx"), &model).unwrap();
    let o = output(std::process::Command::new("kill").args(["-HUP", &pid]));
    assert!(o.status.success());
    log.wait_for("new model ready");
    // The alert stage takes it once its pending rows are scored (the batch
    // deadline is 50 ms), even with no new flow arriving; only then does
    // the rest of the capture come, so flows after it use the new model.
    log.wait_for("model swapped in");
    writer.write_all(&pcap[half..]).unwrap();
    drop(writer);
    let status = child.wait().unwrap();
    let stderr = log.all();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("model swapped in"), "{stderr}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["model_swaps"], 1, "{s}");
    assert_eq!(s["accounted"], true, "{s}");
    assert_eq!(s["flows"], s["scored"], "{s}");
    if !config.is_empty() {
        assert_eq!(s["flows"], s["scored_in_workers"], "{s}");
        assert!(stderr.contains("flow worker swapped its model"), "{stderr}");
    }
}

/// A request (SIGHUP, also sent for log rotation) with the same model files
/// on disk loads nothing and is counted as unchanged; rewriting the same
/// bytes changes nothing either; a changed external-data file does, as does
/// a new model file.
#[test]
fn unchanged_model_files_are_not_reloaded() {
    if !have_ort("unchanged_model_files_are_not_reloaded") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = root().join("inference/tests/data");
    let model = dir.path().join("external_inside.onnx");
    let weights = dir.path().join("external_inside.weights");
    std::fs::copy(data.join("external_inside.onnx"), &model).unwrap();
    std::fs::copy(data.join("external_inside.weights"), &weights).unwrap();
    let mut cfg = Config::default();
    cfg.model.path = Some(model.clone());
    tapstream_runtime::model::load(&cfg, None, 0).unwrap();
    let reload = reloader(&cfg, 0);
    let counts = |unchanged, loaded, refused| ReloadCounts {
        loaded,
        refused,
        unchanged,
    };
    let settle = |what: &str, want: ReloadCounts| {
        wait_until(what, Duration::from_secs(20), || reload.counts() == want);
    };

    reload.request();
    settle("the first unchanged request", counts(1, 0, 0));
    // The same bytes written again (a new modification time).
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes).unwrap();
    reload.request();
    settle("the second unchanged request", counts(2, 0, 0));
    assert!(reload.take().is_none(), "nothing was offered for a swap");

    // Other weights in the external-data file: a new model.
    let mut w = std::fs::read(&weights).unwrap();
    let last = w.len() - 1;
    w[last] ^= 0x01;
    std::fs::write(&weights, &w).unwrap();
    reload.request();
    settle("the reload after new weights", counts(2, 1, 0));
    assert!(reload.take().is_some());
    // That one is now the running model.
    reload.request();
    settle("unchanged after the swap", counts(3, 1, 0));

    // A different model file.
    std::fs::copy(data.join("linear3.onnx"), &model).unwrap();
    reload.request();
    settle("the reload of a new file", counts(3, 2, 0));
}
