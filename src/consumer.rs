//! What happens to ended flows: scoring and alerting, or CSV export.
//!
//! The consumer is the last stage of a run. For `run` it batches feature rows
//! (up to a size or a deadline, whichever first), scores them with the model,
//! and hands flows at or above the threshold to the alert sink on its own
//! thread, which drops what the alert limiter suppresses and re-opens the
//! output when asked (log rotation). With the model in the flow workers
//! (`crate::scoring`) batches arrive scored: the consumer only gathers their
//! flagged flows, under the identity of the model generation that scored
//! them, and publishes reloaded models to the workers. For `features` it writes CSV rows.
//! `bench` can discard flows to measure the stages before it.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use tapstream_connectors::eve::Alert;
use tapstream_connectors::limit::{AlertLimiter, SuppressedCounts, Verdict};
use tapstream_connectors::sink::AlertSink;
use tapstream_connectors::ModelInfo;
use tapstream_inference::{select_features, Batcher, Engine, Prediction};
use tapstream_ingest::FlowMeta;
use tapstream_kernels::{csv, FlowBatch, Mark};

use crate::kafka::Settled;
use crate::scoring::WorkerModels;

use crate::pipeline::{recv_until, Recv};
use crate::reopen::{ReopenRequest, REOPEN_POLL};

/// What the consumer stage does with ended flows.
pub enum Consumer {
    /// Score flows and write alerts.
    Alerts(AlertStage),
    /// Write one CSV row per flow.
    Features(Box<dyn Write + Send>),
    /// Count flows and drop them (benchmarks of the stages before).
    Discard,
}

/// Scoring and alerting settings.
pub struct AlertStage {
    /// The model.
    pub engine: Box<dyn Engine>,
    /// Where alerts go.
    pub sink: Box<dyn AlertSink>,
    /// Model identity for the alerts.
    pub model: ModelInfo,
    /// Decision threshold on the attack score.
    pub threshold: f32,
    /// Rows per inference call at most.
    pub batch_rows: usize,
    /// Longest wait for a batch to fill.
    pub max_delay: Duration,
    /// Replacement models, swapped in between batches (hot reload).
    pub reload: Option<std::sync::Arc<crate::reload::Reloader>>,
    /// Where the workers' marks go once the alerts before them are durable
    /// (a source that commits offsets reads it).
    pub settled: Option<Arc<Settled>>,
    /// Which alerts are written (the default writes every one).
    pub limiter: AlertLimiter,
    /// Asks the sink to re-open its output (log rotation); `None` for sinks
    /// without a file.
    pub reopen: Option<ReopenRequest>,
    /// Set when the flow workers score (`[inference] placement =
    /// "workers"`): batches then arrive scored, and a reloaded model's
    /// worker sessions are published here.
    pub workers: Option<Arc<WorkerModels>>,
}

/// The model identity and decision settings an alert batch was scored with.
struct Scoring {
    model: ModelInfo,
    labels: Vec<String>,
    threshold: f32,
}

/// What the consumer counted.
#[derive(Clone, Debug, Default)]
pub struct ConsumerReport {
    /// Flows received from the workers.
    pub flows: u64,
    /// Rows scored by the model.
    pub scored: u64,
    /// Rows the flow workers scored (inference in the workers; part of
    /// `scored`).
    pub scored_in_workers: u64,
    /// Inference calls.
    pub inference_calls: u64,
    /// Time inside the engine.
    pub inference_busy: Duration,
    /// Time selecting features, scoring and thresholding (not waiting).
    pub busy: Duration,
    /// Class labels, index-aligned with `alerts_by_class`.
    pub labels: Vec<String>,
    /// Alerts written, per class.
    pub alerts_by_class: Vec<u64>,
    /// Alerts the limiter suppressed (not written, not in
    /// `alerts_by_class`), per reason.
    pub suppressed: SuppressedCounts,
    /// Re-opens of the alert output (log rotation) that succeeded.
    pub eve_reopens: u64,
    /// Re-opens that failed (the sink kept writing to its old file).
    pub eve_reopen_errors: u64,
    /// Time the sink spent writing.
    pub sink_busy: Duration,
    /// Why the sink stopped, if it did.
    pub sink_error: Option<String>,
    /// True when the sink stopped because its reader closed it (a closed
    /// pipe): output ended early on purpose, not a failure.
    pub sink_closed: bool,
    /// CSV rows written (features mode).
    pub csv_rows: u64,
    /// Models swapped in during the run (hot reload).
    pub model_swaps: u64,
}

impl ConsumerReport {
    /// All alerts written.
    pub fn alerts(&self) -> u64 {
        self.alerts_by_class.iter().sum()
    }
}

/// A flow the model flagged.
struct Flagged {
    meta: FlowMeta,
    prediction: Prediction,
}

impl Consumer {
    /// The worker sessions, when the flow workers score.
    pub fn worker_models(&self) -> Option<Arc<WorkerModels>> {
        match self {
            Consumer::Alerts(stage) => stage.workers.clone(),
            _ => None,
        }
    }

    /// Runs until every worker has hung up. Sets `stop` when output fails so
    /// the reader stops early.
    pub fn run(
        self,
        rx: Receiver<FlowBatch>,
        pool: Sender<FlowBatch>,
        stop: &AtomicBool,
    ) -> Result<ConsumerReport> {
        match self {
            Consumer::Alerts(stage) => stage.run(rx, pool, stop),
            Consumer::Features(out) => run_csv(out, rx, pool, stop),
            Consumer::Discard => {
                let started = Instant::now();
                let mut report = ConsumerReport::default();
                for mut b in rx.iter() {
                    report.flows += b.len() as u64;
                    b.clear();
                    let _ = pool.try_send(b);
                }
                report.busy = started.elapsed();
                Ok(report)
            }
        }
    }
}

fn run_csv(
    out: Box<dyn Write + Send>,
    rx: Receiver<FlowBatch>,
    pool: Sender<FlowBatch>,
    stop: &AtomicBool,
) -> Result<ConsumerReport> {
    let mut report = ConsumerReport::default();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
    let mut blocked = Duration::ZERO;
    let started = Instant::now();
    let mut result = csv::write_header(&mut w).context("writing CSV header");
    while let Recv::Item(mut b) = recv_until(&rx, None, &mut blocked) {
        report.flows += b.len() as u64;
        if result.is_ok() {
            result = csv::write_rows(&mut w, &b).context("writing CSV rows");
            if result.is_ok() {
                report.csv_rows += b.len() as u64;
            } else {
                stop.store(true, Ordering::Relaxed);
            }
        }
        b.clear();
        let _ = pool.try_send(b);
    }
    if result.is_ok() {
        result = w.flush().context("flushing CSV output");
    }
    report.busy = started.elapsed().saturating_sub(blocked);
    result.map(|()| report)
}

impl AlertStage {
    fn run(
        self,
        rx: Receiver<FlowBatch>,
        pool: Sender<FlowBatch>,
        stop: &AtomicBool,
    ) -> Result<ConsumerReport> {
        let started = Instant::now();
        let AlertStage {
            mut engine,
            sink,
            model,
            mut threshold,
            batch_rows,
            max_delay,
            reload,
            settled,
            limiter,
            reopen,
            workers,
        } = self;
        let mut contract = engine.contract().clone();
        let mut scoring = Arc::new(Scoring {
            model,
            labels: contract.labels.clone(),
            threshold,
        });
        // What alerts of each model generation carry, by generation (0 is
        // the first model; a worker-scored batch names its generation).
        let mut generations = vec![(0u64, scoring.clone())];
        // Flows the workers flagged, waiting to go out, and their generation.
        let mut prescored: Vec<Flagged> = Vec::new();
        let mut prescored_gen = 0u64;
        let mut report = ConsumerReport::default();
        let (alert_tx, alert_rx) = bounded::<AlertBatch>(16);
        let (alert_pool_tx, alert_pool_rx) = bounded::<Vec<Flagged>>(18);
        let first_labels = contract.labels.clone();
        let sink_handle = thread::Builder::new()
            .name("alert-sink".into())
            .spawn(move || {
                let output = SinkOutput {
                    sink,
                    limiter,
                    reopen,
                    settled,
                };
                sink_loop(output, alert_rx, alert_pool_tx, first_labels)
            })
            .context("spawning alert sink")?;
        // Marks received with the flows gathered so far: they go to the sink
        // behind those flows' alerts.
        let mut marks: Vec<Mark> = Vec::new();

        // Flow batches are gathered whole: their metadata and the model's
        // columns of their rows are appended, then scored in chunks of at
        // most `batch_rows` once the batcher says the batch is full or due.
        let mut batcher = Batcher::new(batch_rows, max_delay);
        let mut metas: Vec<FlowMeta> = Vec::with_capacity(batch_rows);
        let mut input: Vec<f32> = Vec::with_capacity(batch_rows * contract.num_features());
        let mut preds: Vec<Prediction> = Vec::with_capacity(batch_rows);
        let mut blocked = Duration::ZERO;
        let mut sink_open = true;
        let mut width = contract.num_features();
        // Batches waiting for this stage (flow) and for the sink (alert).
        let flow_depth = metrics::gauge!("tapstream_queue_depth", "stage" => "flow");
        let alert_depth = metrics::gauge!("tapstream_queue_depth", "stage" => "alert");
        loop {
            let closed = match recv_until(&rx, batcher.deadline(), &mut blocked) {
                Recv::Item(mut b) => {
                    flow_depth.set(rx.len() as f64);
                    alert_depth.set(alert_tx.len() as f64);
                    // A batch starts: nothing is pending, so a new model can
                    // take over without a flow being scored by a mix of two.
                    // Worker-scored batches name their model, so with the
                    // workers scoring a swap never waits.
                    if metas.is_empty() {
                        if let Some(mut new) = reload.as_ref().and_then(|r| r.take()) {
                            let mut id = generations.last().map_or(0, |(g, _)| g + 1);
                            if let Some(w) = &workers {
                                let sessions = std::mem::take(&mut new.workers);
                                id = w
                                    .publish(sessions, new.threshold)
                                    .context("handing the new model to the flow workers")?;
                            }
                            tracing::info!(
                                message = "model swapped in",
                                model = %new.info.name,
                                version = %new.info.version,
                                sha256 = %new.info.sha256,
                            );
                            engine = new.engine;
                            contract = engine.contract().clone();
                            width = contract.num_features();
                            threshold = new.threshold;
                            scoring = Arc::new(Scoring {
                                model: new.info,
                                labels: contract.labels.clone(),
                                threshold,
                            });
                            generations.push((id, scoring.clone()));
                            report.model_swaps += 1;
                        }
                    }
                    let n = b.len();
                    report.flows += n as u64;
                    if let Some(s) = b.scored {
                        // Scored by a flow worker: only its flagged flows.
                        report.scored += n as u64;
                        report.scored_in_workers += n as u64;
                        report.inference_calls += u64::from(s.calls);
                        report.inference_busy += s.busy;
                        if !prescored.is_empty() && prescored_gen != s.generation {
                            // Another model's alerts: send those first. Marks
                            // wait, since they may follow this batch's flows.
                            let batch = AlertBatch {
                                scoring: generation_scoring(&generations, prescored_gen, &scoring),
                                flagged: std::mem::take(&mut prescored),
                                marks: Vec::new(),
                            };
                            send_alerts(&alert_tx, batch, &mut sink_open, &mut blocked, stop);
                        }
                        prescored_gen = s.generation;
                        prescored.extend(b.flagged.iter().filter_map(|f| {
                            Some(Flagged {
                                meta: *b.metas.get(f.row as usize)?,
                                prediction: Prediction {
                                    score: f.score,
                                    class: f.class as usize,
                                },
                            })
                        }));
                        batcher.add(n, Instant::now());
                    } else {
                        let written = select_features(&contract, &b.rows, n, &mut input);
                        metas.extend(b.metas.iter().take(written).copied());
                        batcher.add(written, Instant::now());
                    }
                    if let Some(m) = b.mark {
                        marks.push(m);
                    }
                    b.clear();
                    let _ = pool.try_send(b);
                    false
                }
                Recv::Timeout => false,
                Recv::Closed => true, // every worker is done
            };
            // Marks behind no pending flow need no scoring: pass them on.
            let only_marks = metas.is_empty() && !marks.is_empty();
            if !closed && !only_marks && !batcher.ready(Instant::now()) {
                continue;
            }
            if !prescored.is_empty() {
                let batch = AlertBatch {
                    scoring: generation_scoring(&generations, prescored_gen, &scoring),
                    flagged: std::mem::replace(
                        &mut prescored,
                        alert_pool_rx.try_recv().unwrap_or_default(),
                    ),
                    // Behind every flow received so far, unless some still
                    // wait for scoring below.
                    marks: if metas.is_empty() {
                        std::mem::take(&mut marks)
                    } else {
                        Vec::new()
                    },
                };
                send_alerts(&alert_tx, batch, &mut sink_open, &mut blocked, stop);
            }
            let mut flagged = alert_pool_rx.try_recv().unwrap_or_default();
            for (chunk_metas, chunk) in metas
                .chunks(batch_rows)
                .zip(input.chunks(batch_rows * width))
            {
                let n = chunk_metas.len();
                let t = Instant::now();
                engine
                    .infer(chunk, n, &mut preds)
                    .map_err(|e| anyhow::Error::new(e).context("inference failed"))?;
                let took = t.elapsed();
                report.inference_busy += took;
                report.inference_calls += 1;
                report.scored += n as u64;
                metrics::histogram!("tapstream_inference_batch_rows").record(n as f64);
                metrics::histogram!("tapstream_inference_latency_seconds")
                    .record(took.as_secs_f64());
                for (meta, p) in chunk_metas.iter().zip(preds.iter()) {
                    if p.score >= threshold {
                        flagged.push(Flagged {
                            meta: *meta,
                            prediction: *p,
                        });
                    }
                }
            }
            if !flagged.is_empty() || !marks.is_empty() {
                let batch = AlertBatch {
                    scoring: scoring.clone(),
                    flagged,
                    marks: std::mem::take(&mut marks),
                };
                send_alerts(&alert_tx, batch, &mut sink_open, &mut blocked, stop);
            }
            metas.clear();
            input.clear();
            batcher.reset();
            if closed {
                break;
            }
        }
        drop(alert_tx);
        let sink_report = sink_handle
            .join()
            .map_err(|_| anyhow!("alert sink thread panicked"))?;
        (report.labels, report.alerts_by_class) = sink_report.per_class.into_iter().unzip();
        report.sink_busy = sink_report.busy;
        report.suppressed = sink_report.suppressed;
        report.eve_reopens = sink_report.reopens;
        report.eve_reopen_errors = sink_report.reopen_errors;
        report.sink_error = sink_report.error;
        report.sink_closed = sink_report.closed;
        report.busy = started.elapsed().saturating_sub(blocked);
        Ok(report)
    }
}

/// Hands alerts to the sink thread while it is open (the wait counts as
/// blocked); once it has gone, sets `stop` so reading stops.
fn send_alerts(
    tx: &Sender<AlertBatch>,
    batch: AlertBatch,
    open: &mut bool,
    blocked: &mut Duration,
    stop: &AtomicBool,
) {
    if !*open {
        return;
    }
    let t = Instant::now();
    *open = tx.send(batch).is_ok();
    *blocked += t.elapsed();
    if !*open {
        stop.store(true, Ordering::Relaxed);
    }
}

/// What alerts of model generation `g` carry; the current model's for a
/// generation never published (which cannot happen).
fn generation_scoring(
    generations: &[(u64, Arc<Scoring>)],
    g: u64,
    current: &Arc<Scoring>,
) -> Arc<Scoring> {
    generations
        .iter()
        .rev()
        .find(|(id, _)| *id == g)
        .map_or(current, |(_, s)| s)
        .clone()
}

/// Alerts for the sink, and the marks that are settled once they are
/// durable.
struct AlertBatch {
    scoring: Arc<Scoring>,
    flagged: Vec<Flagged>,
    marks: Vec<Mark>,
}

struct SinkReport {
    /// Alerts per class label: the first model's labels in order, then any
    /// new label a reloaded model brought.
    per_class: Vec<(String, u64)>,
    suppressed: SuppressedCounts,
    reopens: u64,
    reopen_errors: u64,
    busy: Duration,
    error: Option<String>,
    closed: bool,
}

/// What the sink thread owns besides its queues.
struct SinkOutput {
    sink: Box<dyn AlertSink>,
    limiter: AlertLimiter,
    reopen: Option<ReopenRequest>,
    settled: Option<Arc<Settled>>,
}

fn sink_loop(
    output: SinkOutput,
    rx: Receiver<AlertBatch>,
    pool: Sender<Vec<Flagged>>,
    labels: Vec<String>,
) -> SinkReport {
    let SinkOutput {
        mut sink,
        mut limiter,
        reopen,
        settled,
    } = output;
    let mut report = SinkReport {
        per_class: labels.into_iter().map(|l| (l, 0)).collect(),
        suppressed: SuppressedCounts::default(),
        reopens: 0,
        reopen_errors: 0,
        busy: Duration::ZERO,
        error: None,
        closed: false,
    };
    // A sink whose flush waits on someone else (Kafka's acknowledgements)
    // is flushed at most this often; marks wait for the next flush.
    let every = sink.flush_every();
    let mut marks: Vec<Mark> = Vec::new();
    let mut unflushed = false;
    let mut last_flush = Instant::now();
    loop {
        let pending = unflushed || !marks.is_empty();
        let mut wait = pending.then(|| every.saturating_sub(last_flush.elapsed()));
        if reopen.is_some() {
            // Wake up now and then to serve a re-open while no alerts come.
            wait = Some(wait.map_or(REOPEN_POLL, |w| w.min(REOPEN_POLL)));
        }
        let msg = match wait {
            Some(w) => rx.recv_timeout(w),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let closed = match msg {
            Ok(AlertBatch {
                scoring,
                flagged: mut batch,
                marks: more,
            }) => {
                let t = Instant::now();
                if report.error.is_none() {
                    for f in &batch {
                        let class = scoring
                            .labels
                            .get(f.prediction.class)
                            .map_or("unknown", String::as_str);
                        let alert = Alert {
                            flow: &f.meta,
                            score: f.prediction.score,
                            class,
                            class_index: u16::try_from(f.prediction.class).unwrap_or(u16::MAX),
                            model: &scoring.model,
                            threshold: scoring.threshold,
                        };
                        if let Verdict::Suppress(reason) = limiter.check(&alert) {
                            report.suppressed.add(reason);
                            metrics::counter!(
                                "tapstream_alerts_suppressed_total",
                                "reason" => reason.as_str()
                            )
                            .increment(1);
                            continue;
                        }
                        if let Err(e) = sink.write(&alert) {
                            report.closed = e.is_closed();
                            report.error = Some(e.to_string());
                            break;
                        }
                        unflushed = true;
                        match report.per_class.iter_mut().find(|(l, _)| l == class) {
                            Some((_, n)) => *n += 1,
                            None => report.per_class.push((class.to_string(), 1)),
                        }
                        metrics::counter!("tapstream_alerts_total", "class" => class.to_string())
                            .increment(1);
                    }
                    marks.extend_from_slice(&more);
                }
                report.busy += t.elapsed();
                batch.clear();
                let _ = pool.try_send(batch);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if report.error.is_some() {
            break;
        }
        if reopen.as_ref().is_some_and(ReopenRequest::take) {
            let t = Instant::now();
            reopen_sink(sink.as_mut(), &mut report);
            report.busy += t.elapsed();
        }
        if (unflushed || !marks.is_empty()) && (closed || last_flush.elapsed() >= every) {
            let t = Instant::now();
            if unflushed {
                if let Err(e) = sink.flush() {
                    report.closed = e.is_closed();
                    report.error = Some(e.to_string());
                    break;
                }
                unflushed = false;
            }
            // Every alert before these marks is durable now.
            if let Some(s) = &settled {
                s.publish(&marks);
            }
            marks.clear();
            last_flush = Instant::now();
            report.busy += t.elapsed();
        }
        if closed {
            break;
        }
    }
    report
}

/// Re-opens the sink's output, counting and logging the outcome. A failure
/// leaves the sink writing where it did, so nothing is lost.
fn reopen_sink(sink: &mut dyn AlertSink, report: &mut SinkReport) {
    match sink.reopen() {
        Ok(()) => {
            report.reopens += 1;
            metrics::counter!("tapstream_eve_reopens_total", "outcome" => "ok").increment(1);
            tracing::info!(message = "alert output re-opened");
        }
        Err(e) => {
            report.reopen_errors += 1;
            metrics::counter!("tapstream_eve_reopens_total", "outcome" => "error").increment(1);
            tracing::warn!(
                message = "cannot re-open the alert output; still writing to the old file",
                error = %format!("{:#}", anyhow::Error::new(e)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tapstream_connectors::eve::EveWriter;
    use tapstream_connectors::sink::FileSink;
    use tapstream_ingest::EndReason;

    use super::*;

    fn flagged(id: u64) -> Flagged {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut dst = [0u8; 16];
        dst[..4].copy_from_slice(&[10, 0, 0, 2]);
        Flagged {
            meta: FlowMeta {
                flow_id: id,
                src,
                dst,
                sport: 40_000,
                dport: 80,
                proto: 6,
                v6: false,
                icmp_type: 0,
                icmp_code: 0,
                start_us: 1_000_000,
                last_us: 2_000_000,
                pkts_fwd: 1,
                pkts_bwd: 1,
                bytes_fwd: 60,
                bytes_bwd: 60,
                reason: EndReason::TcpTermination,
            },
            prediction: Prediction {
                score: 0.9,
                class: 0,
            },
        }
    }

    fn batch(ids: std::ops::Range<u64>) -> AlertBatch {
        AlertBatch {
            scoring: Arc::new(Scoring {
                model: ModelInfo::new("m", "1", "00"),
                labels: vec!["Portscan".to_string()],
                threshold: 0.5,
            }),
            flagged: ids.map(flagged).collect(),
            marks: Vec::new(),
        }
    }

    fn ids_in(path: &Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["flow_id"].as_u64())
            .collect()
    }

    /// Starts `sink_loop` over a file sink at `path` with a re-open request.
    fn start(
        path: &Path,
    ) -> (
        Sender<AlertBatch>,
        ReopenRequest,
        thread::JoinHandle<SinkReport>,
    ) {
        let sink = FileSink::open(path, EveWriter::new(0)).unwrap();
        let reopen = ReopenRequest::new();
        let (tx, rx) = bounded::<AlertBatch>(4);
        let (pool_tx, _pool_rx) = bounded::<Vec<Flagged>>(4);
        let output = SinkOutput {
            sink: Box::new(sink),
            limiter: AlertLimiter::default(),
            reopen: Some(reopen.clone()),
            settled: None,
        };
        let handle =
            thread::spawn(move || sink_loop(output, rx, pool_tx, vec!["Portscan".to_string()]));
        (tx, reopen, handle)
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let t = Instant::now();
        while !done() {
            assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn reopen_while_idle_splits_alerts_between_old_and_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eve.json");
        let rotated = dir.path().join("eve.json.1");
        let (tx, reopen, handle) = start(&path);
        tx.send(batch(0..5)).unwrap();
        wait_for("the first batch", || ids_in(&path).len() == 5);
        std::fs::rename(&path, &rotated).unwrap();
        // No alert follows the request: the idle sink thread re-opens.
        let asked = Instant::now();
        reopen.request();
        wait_for("the new file", || path.exists());
        assert!(asked.elapsed() < REOPEN_POLL * 20, "{:?}", asked.elapsed());
        tx.send(batch(5..9)).unwrap();
        drop(tx);
        let report = handle.join().unwrap();
        assert_eq!((report.reopens, report.reopen_errors), (1, 0));
        assert_eq!(report.per_class, [("Portscan".to_string(), 9)]);
        assert_eq!(ids_in(&rotated), (0..5).collect::<Vec<_>>());
        assert_eq!(ids_in(&path), (5..9).collect::<Vec<_>>());
    }

    #[test]
    fn failed_reopen_keeps_writing_to_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let (tx, reopen, handle) = start(&logs.join("eve.json"));
        tx.send(batch(0..3)).unwrap();
        // The directory moves away: the path cannot be opened again.
        let moved = dir.path().join("logs.old");
        std::fs::rename(&logs, &moved).unwrap();
        reopen.request();
        tx.send(batch(3..6)).unwrap();
        drop(tx);
        let report = handle.join().unwrap();
        assert_eq!((report.reopens, report.reopen_errors), (0, 1));
        assert!(report.error.is_none(), "{:?}", report.error);
        assert_eq!(ids_in(&moved.join("eve.json")), (0..6).collect::<Vec<_>>());
        assert!(!logs.exists());
    }
}
