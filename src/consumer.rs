//! What happens to ended flows: scoring and alerting, or CSV export.
//!
//! The consumer is the last stage of a run. For `run` it batches feature rows
//! (up to a size or a deadline, whichever first), scores them with the model,
//! and hands flows at or above the threshold to the alert sink on its own
//! thread. For `features` it writes CSV rows. `bench` can discard flows to
//! measure the stages before it.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use tapstream_connectors::eve::Alert;
use tapstream_connectors::sink::AlertSink;
use tapstream_connectors::ModelInfo;
use tapstream_inference::{select_features, Batcher, Engine, Prediction};
use tapstream_ingest::FlowMeta;
use tapstream_kernels::{csv, FlowBatch, Mark};

use crate::kafka::Settled;

use crate::pipeline::{recv_until, Recv};

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
        } = self;
        let mut contract = engine.contract().clone();
        let mut scoring = Arc::new(Scoring {
            model,
            labels: contract.labels.clone(),
            threshold,
        });
        let mut report = ConsumerReport::default();
        let (alert_tx, alert_rx) = bounded::<AlertBatch>(16);
        let (alert_pool_tx, alert_pool_rx) = bounded::<Vec<Flagged>>(18);
        let first_labels = contract.labels.clone();
        let sink_handle = thread::Builder::new()
            .name("alert-sink".into())
            .spawn(move || sink_loop(sink, alert_rx, alert_pool_tx, first_labels, settled))
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
                    if metas.is_empty() {
                        if let Some(new) = reload.as_ref().and_then(|r| r.take()) {
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
                            report.model_swaps += 1;
                        }
                    }
                    let n = b.len();
                    report.flows += n as u64;
                    if let Some(m) = b.mark {
                        marks.push(m);
                    }
                    let written = select_features(&contract, &b.rows, n, &mut input);
                    metas.extend_from_slice(&b.metas[..written]);
                    batcher.add(written, Instant::now());
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
            if sink_open && (!flagged.is_empty() || !marks.is_empty()) {
                let t = Instant::now();
                let batch = AlertBatch {
                    scoring: scoring.clone(),
                    flagged,
                    marks: std::mem::take(&mut marks),
                };
                sink_open = alert_tx.send(batch).is_ok();
                blocked += t.elapsed();
                if !sink_open {
                    stop.store(true, Ordering::Relaxed);
                }
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
        report.sink_error = sink_report.error;
        report.sink_closed = sink_report.closed;
        report.busy = started.elapsed().saturating_sub(blocked);
        Ok(report)
    }
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
    busy: Duration,
    error: Option<String>,
    closed: bool,
}

fn sink_loop(
    mut sink: Box<dyn AlertSink>,
    rx: Receiver<AlertBatch>,
    pool: Sender<Vec<Flagged>>,
    labels: Vec<String>,
    settled: Option<Arc<Settled>>,
) -> SinkReport {
    let mut report = SinkReport {
        per_class: labels.into_iter().map(|l| (l, 0)).collect(),
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
        let msg = if pending {
            rx.recv_timeout(every.saturating_sub(last_flush.elapsed()))
        } else {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
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
