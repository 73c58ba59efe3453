//! The alert stage: ended flows in, alerts out.
//!
//! It batches feature rows (up to a size or a deadline, whichever first),
//! scores them with the model, and hands flows at or above the threshold to
//! the alert sink on its own thread (`stage::sink`). With the model in the
//! flow workers batches arrive scored: the stage only gathers their flagged
//! flows, under the identity of the model generation that scored them, and
//! publishes reloaded models to the workers. A reloaded model takes over
//! between two batches, so every flow is scored by exactly one model.
//! Marks (how far a numbered source is settled) travel behind the alerts of
//! the flows before them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use tapstream_connectors::episode::{EpisodeSettings, Episodes};
use tapstream_connectors::limit::AlertLimiter;
use tapstream_connectors::sink::AlertSink;
use tapstream_connectors::ModelInfo;
use tapstream_inference::{
    select_features_with, Batcher, Engine, LoadedModel, ModelContract, Prediction, Reloader,
    WorkerModels,
};
use tapstream_ingest::queue::{recv_until, Recv};
use tapstream_ingest::source::Progress;
use tapstream_ingest::FlowMeta;
use tapstream_kernels::context::NUM_CONTEXT;
use tapstream_kernels::schema::NUM_FEATURES;
use tapstream_kernels::{FlowBatch, Mark, Settled};

use super::detectors::{log_swap, Detector, Extra};
use super::learning::{Learning, LearningDetector};
use super::sink::{sink_loop, AlertBatch, Flagged, Scoring, SinkOutput};
use crate::reopen::ReopenRequest;
use crate::report::ConsumerReport;

/// How often an idle alert stage looks for a reloaded model.
const RELOAD_POLL: Duration = Duration::from_millis(50);

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
    pub reload: Option<Arc<Reloader>>,
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
    /// Alerts as attack episodes (`Some`), or one line per flagged flow
    /// (`None`, the default here; `tapstream run` writes episodes unless
    /// `[output] alerts = "flows"`).
    pub episodes: Option<EpisodeSettings>,
    /// The first detector's name in alerts (`tapstream.detector`; empty:
    /// not written).
    pub detector: String,
    /// Further detectors, scoring every flow in this stage.
    pub detectors: Vec<Detector>,
    /// Further detectors that learn their model first (after `detectors`
    /// in signature ids).
    pub learning: Vec<LearningDetector>,
    /// The reader's progress (the input's first packet time), which a
    /// learning detector counts from; the run sets it.
    pub progress: Option<Arc<Progress>>,
}

/// The identity alerts carry for a model.
pub fn model_info(c: &ModelContract) -> ModelInfo {
    ModelInfo::new(c.name.clone(), c.version.clone(), c.sha256.clone())
}

impl AlertStage {
    /// A stage scoring with `m` (in the flow workers when `m` brings worker
    /// sessions) and writing to `sink`, every other setting at its default:
    /// no reload, no marks, no limits, no re-open.
    pub fn new(
        m: LoadedModel,
        sink: Box<dyn AlertSink>,
        batch_rows: usize,
        max_delay: Duration,
    ) -> Self {
        let mut m = m;
        let workers = WorkerModels::take_from(&mut m);
        AlertStage {
            model: model_info(m.engine.contract()),
            engine: m.engine,
            sink,
            threshold: m.threshold,
            batch_rows,
            max_delay,
            reload: None,
            settled: None,
            limiter: AlertLimiter::default(),
            reopen: None,
            workers,
            episodes: None,
            detector: String::new(),
            detectors: Vec::new(),
            learning: Vec::new(),
            progress: None,
        }
    }

    /// Whether a model of the stage reads context features.
    pub fn needs_context(&self) -> bool {
        self.engine.contract().needs_context()
            || self.detectors.iter().any(Extra::needs_context)
            || !self.learning.is_empty()
    }

    /// Runs until every worker has hung up. Sets `stop` when output fails so
    /// the reader stops early.
    pub(crate) fn run(
        self,
        rx: Receiver<FlowBatch>,
        pool: Sender<FlowBatch>,
        stop: &AtomicBool,
        context: bool,
    ) -> Result<ConsumerReport> {
        let started = Instant::now();
        let (alert_tx, alert_rx) = bounded::<AlertBatch>(16);
        let (alert_pool_tx, alert_pool_rx) = bounded::<Vec<Flagged>>(18);
        let output_has_episodes = self.episodes.is_some();
        let output = SinkOutput {
            sink: self.sink,
            limiter: self.limiter,
            reopen: self.reopen,
            settled: self.settled,
            episodes: self.episodes.map(Episodes::new),
        };
        let labels = self.engine.contract().labels.clone();
        let sink_handle = thread::Builder::new()
            .name("alert-sink".into())
            .spawn(move || sink_loop(output, alert_rx, alert_pool_tx, labels))
            .context("spawning alert sink")?;
        let mut state = AlertLoop::new(
            Model {
                engine: self.engine,
                info: self.model.for_detector(self.detector, 0),
                threshold: self.threshold,
            },
            self.batch_rows,
            self.max_delay,
            (self.reload, self.workers),
            (alert_tx, alert_pool_rx, stop),
            context,
        );
        state.clock.episodes = output_has_episodes;
        let first_learning = u16::try_from(self.detectors.len() + 1).unwrap_or(u16::MAX);
        state.extras = self
            .detectors
            .into_iter()
            .zip(1u16..)
            .map(|(d, i)| Extra::new(d, i, context))
            .collect();
        state.learning = self
            .learning
            .into_iter()
            .zip(first_learning..)
            .map(|(d, i)| {
                let mut l = Learning::new(d, i);
                if let Some(p) = &self.progress {
                    l.set_progress(p.clone());
                }
                l
            })
            .collect();
        let scored = state.run(&rx, &pool);
        let detectors = state.detector_counts();
        let mut report = std::mem::take(&mut state.report);
        report.detectors = detectors;
        let blocked = state.blocked;
        drop(state);
        if scored.is_err() {
            // The reader stops now, not once the sink has written what it
            // holds.
            stop.store(true, Ordering::Relaxed);
        }
        let sink_report = sink_handle.join();
        scored?;
        let sink_report = sink_report.map_err(|_| anyhow!("alert sink thread panicked"))?;
        sink_report.fill(&mut report);
        report.busy = started.elapsed().saturating_sub(blocked);
        Ok(report)
    }
}

/// Row `i` of a row-major context matrix, if it has one.
fn context_row(m: &[f32], i: usize) -> Option<&[f32]> {
    m.get(i * NUM_CONTEXT..(i + 1) * NUM_CONTEXT)
}

/// The model the stage scores with now.
struct Model {
    engine: Box<dyn Engine>,
    info: ModelInfo,
    threshold: f32,
}

/// The stage's state between batches.
struct AlertLoop<'a> {
    engine: Box<dyn Engine>,
    contract: ModelContract,
    threshold: f32,
    /// What alerts of the current model carry.
    scoring: Arc<Scoring>,
    /// What alerts of each model generation carry, by generation (0 is the
    /// first model; a worker-scored batch names its generation).
    generations: Vec<(u64, Arc<Scoring>)>,
    /// Flows the workers flagged, waiting to go out, and their generation.
    prescored: Vec<Flagged>,
    prescored_gen: u64,
    /// Flows waiting to be scored here, and the model's columns of their rows.
    metas: Vec<FlowMeta>,
    input: Vec<f32>,
    /// Their context rows, kept only to explain alerts (the model has a
    /// baseline).
    context_rows: Vec<f32>,
    preds: Vec<Prediction>,
    batcher: Batcher,
    batch_rows: usize,
    /// Marks received with the flows gathered so far: they go to the sink
    /// behind those flows' alerts.
    marks: Vec<Mark>,
    reload: Option<Arc<Reloader>>,
    workers: Option<Arc<WorkerModels>>,
    alert_tx: Sender<AlertBatch>,
    alert_pool: Receiver<Vec<Flagged>>,
    sink_open: bool,
    stop: &'a AtomicBool,
    blocked: Duration,
    report: ConsumerReport,
    /// Flows arrive with context rows (the context stage runs).
    context: bool,
    /// Packet time as the flows tell it, for the sink's episodes.
    clock: Clock,
    /// The first detector's name and what it flagged.
    detector: String,
    flagged: u64,
    /// The detectors beside it.
    extras: Vec<Extra>,
    /// Those still learning their model.
    learning: Vec<Learning>,
}

/// The latest flow end the stage has seen (µs), and the one it last told
/// the sink.
struct Clock {
    now_us: i64,
    sent_us: i64,
    /// The sink keeps episodes, so it needs the clock even without alerts.
    episodes: bool,
}

impl Clock {
    /// Whether a batch without alerts or marks is worth sending to move the
    /// sink's clock: with episodes, once a second of packet time.
    fn due(&self) -> bool {
        self.episodes && self.now_us.saturating_sub(self.sent_us) >= 1_000_000
    }
}

impl<'a> AlertLoop<'a> {
    fn new(
        model: Model,
        batch_rows: usize,
        max_delay: Duration,
        (reload, workers): (Option<Arc<Reloader>>, Option<Arc<WorkerModels>>),
        (alert_tx, alert_pool, stop): (Sender<AlertBatch>, Receiver<Vec<Flagged>>, &'a AtomicBool),
        context: bool,
    ) -> Self {
        let contract = model.engine.contract().clone();
        let detector = model.info.detector.clone();
        let scoring = Arc::new(Scoring::of(model.info, &contract, model.threshold, context));
        AlertLoop {
            input: Vec::with_capacity(batch_rows * contract.num_features()),
            engine: model.engine,
            threshold: model.threshold,
            generations: vec![(0, scoring.clone())],
            scoring,
            prescored: Vec::new(),
            prescored_gen: 0,
            metas: Vec::with_capacity(batch_rows),
            context_rows: Vec::new(),
            preds: Vec::with_capacity(batch_rows),
            batcher: Batcher::new(batch_rows, max_delay),
            batch_rows,
            marks: Vec::new(),
            reload,
            workers,
            alert_tx,
            alert_pool,
            sink_open: true,
            stop,
            context,
            clock: Clock {
                now_us: i64::MIN,
                sent_us: i64::MIN,
                episodes: false,
            },
            blocked: Duration::ZERO,
            report: ConsumerReport::default(),
            contract,
            detector,
            flagged: 0,
            extras: Vec::new(),
            learning: Vec::new(),
        }
    }

    /// Gathers batches until every worker is done, scoring and sending
    /// alerts whenever the batcher says the gathered rows are due.
    fn run(&mut self, rx: &Receiver<FlowBatch>, pool: &Sender<FlowBatch>) -> Result<()> {
        // Batches waiting for this stage (flow) and for the sink (alert).
        let flow_depth = metrics::gauge!("tapstream_queue_depth", "stage" => "flow");
        let alert_depth = metrics::gauge!("tapstream_queue_depth", "stage" => "alert");
        loop {
            // With a reloader, an idle stage still wakes to take a new model,
            // so the swap does not wait for the next batch of flows.
            let deadline = self.batcher.deadline().or_else(|| {
                self.reload
                    .as_ref()
                    .and_then(|_| Instant::now().checked_add(RELOAD_POLL))
            });
            let closed = match recv_until(rx, deadline, &mut self.blocked) {
                Recv::Item(mut b) => {
                    flow_depth.set(rx.len() as f64);
                    alert_depth.set(self.alert_tx.len() as f64);
                    // A batch starts: nothing is pending, so a new model can
                    // take over without a flow being scored by a mix of two.
                    // Worker-scored batches name their model, so with the
                    // workers scoring a swap never waits.
                    if self.metas.is_empty() {
                        self.swap_if_reloaded()?;
                    }
                    self.gather(&b);
                    for e in &mut self.extras {
                        e.gather(&b);
                    }
                    self.learn(|l, context| l.gather(&b, context));
                    b.clear();
                    let _ = pool.try_send(b);
                    false
                }
                Recv::Timeout => {
                    if self.metas.is_empty() {
                        self.swap_if_reloaded()?;
                    }
                    for e in &mut self.extras {
                        e.swap_if_idle();
                    }
                    self.learn(Learning::poll);
                    false
                }
                Recv::Closed => {
                    // Every worker is done: no learned flow can still come.
                    self.learn(Learning::finish);
                    true
                }
            };
            // Marks behind no pending flow need no scoring: pass them on.
            let only_marks = self.metas.is_empty() && !self.marks.is_empty();
            if !closed && !only_marks && !self.batcher.ready(Instant::now()) {
                continue;
            }
            self.score_pending()?;
            if closed {
                return Ok(());
            }
        }
    }

    /// Runs `step` on each learning detector; one whose model is ready
    /// joins the scoring detectors.
    fn learn(&mut self, mut step: impl FnMut(&mut Learning, bool) -> Option<Extra>) {
        let context = self.context;
        let mut i = 0;
        while let Some(l) = self.learning.get_mut(i) {
            match step(l, context) {
                Some(e) => {
                    self.extras.push(e);
                    self.learning.remove(i);
                }
                None => i += 1,
            }
        }
    }

    /// Takes the newest reloaded model, if one is waiting.
    fn swap_if_reloaded(&mut self) -> Result<()> {
        let Some(mut new) = self.reload.as_ref().and_then(|r| r.take()) else {
            return Ok(());
        };
        if new.engine.contract().needs_context() && !self.context {
            let c = new.engine.contract();
            tracing::error!(
                message = "reloaded model not swapped in: it reads context features, which this \
                           run does not compute (restart with [context] enabled = \"auto\" or \"on\")",
                model = %c.name,
                version = %c.version,
            );
            return Ok(());
        }
        let mut id = self.generations.last().map_or(0, |(g, _)| g + 1);
        if let Some(w) = &self.workers {
            let sessions = std::mem::take(&mut new.workers);
            id = w
                .publish(sessions, new.threshold)
                .context("handing the new model to the flow workers")?;
        }
        let info = model_info(new.engine.contract()).for_detector(self.detector.clone(), 0);
        log_swap(&info);
        self.engine = new.engine;
        self.contract = self.engine.contract().clone();
        self.threshold = new.threshold;
        self.scoring = Arc::new(Scoring::of(
            info,
            &self.contract,
            self.threshold,
            self.context,
        ));
        self.generations.push((id, self.scoring.clone()));
        self.report.model_swaps += 1;
        Ok(())
    }

    /// Takes a batch's flows: a scored batch's flagged flows, or the model's
    /// columns of its rows for scoring here; and its mark.
    fn gather(&mut self, b: &FlowBatch) {
        let n = b.len();
        self.report.flows += n as u64;
        if let Some(t) = b.metas.iter().map(|m| m.last_us).max() {
            self.clock.now_us = self.clock.now_us.max(t);
        }
        if let Some(s) = b.scored {
            // Scored by a flow worker: only its flagged flows.
            self.report.scored += n as u64;
            self.report.scored_in_workers += n as u64;
            self.report.inference_calls += u64::from(s.calls);
            self.report.inference_busy += s.busy;
            if !self.prescored.is_empty() && self.prescored_gen != s.generation {
                // Another model's alerts: send those first. Marks wait, since
                // they may follow this batch's flows.
                let batch = AlertBatch {
                    scoring: self.generation_scoring(self.prescored_gen),
                    flagged: std::mem::take(&mut self.prescored),
                    marks: Vec::new(),
                    clock_us: self.clock.now_us,
                };
                self.send(batch);
            }
            self.prescored_gen = s.generation;
            self.flagged += b.flagged.len() as u64;
            let scoring = self.generation_scoring(s.generation);
            self.prescored.extend(b.flagged.iter().filter_map(|f| {
                let row = f.row as usize;
                let (explanation, input) = scoring.defer_flow(
                    context_row(&b.context, row),
                    b.rows.get(row * NUM_FEATURES..(row + 1) * NUM_FEATURES),
                );
                Some(Flagged {
                    meta: *b.metas.get(row)?,
                    prediction: Prediction {
                        score: f.score,
                        class: f.class as usize,
                    },
                    explanation,
                    input,
                })
            }));
            self.batcher.add(n, Instant::now());
        } else {
            let written =
                select_features_with(&self.contract, &b.rows, &b.context, n, &mut self.input);
            self.metas.extend(b.metas.iter().take(written).copied());
            if !self.scoring.baseline.is_empty() {
                let rows = b.context.get(..written * NUM_CONTEXT).unwrap_or(&[]);
                self.context_rows.extend_from_slice(rows);
            }
            self.batcher.add(written, Instant::now());
        }
        if let Some(m) = b.mark {
            self.marks.push(m);
        }
    }

    /// Sends the workers' flagged flows, scores what waits here, and sends
    /// those alerts with the marks received so far.
    fn score_pending(&mut self) -> Result<()> {
        // The other detectors' alerts go first: the marks below cover them.
        for k in 0..self.extras.len() {
            let Some(e) = self.extras.get_mut(k) else {
                continue;
            };
            let (flagged, scoring) = e.score(self.batch_rows)?;
            if !flagged.is_empty() {
                let batch = AlertBatch {
                    scoring,
                    flagged,
                    marks: Vec::new(),
                    clock_us: self.clock.now_us,
                };
                self.send(batch);
            }
        }
        if !self.prescored.is_empty() {
            let batch = AlertBatch {
                scoring: self.generation_scoring(self.prescored_gen),
                flagged: std::mem::replace(
                    &mut self.prescored,
                    self.alert_pool.try_recv().unwrap_or_default(),
                ),
                // Behind every flow received so far, unless some still wait
                // for scoring below.
                marks: if self.metas.is_empty() {
                    std::mem::take(&mut self.marks)
                } else {
                    Vec::new()
                },
                clock_us: self.clock.now_us,
            };
            self.send(batch);
        }
        let mut flagged = self.alert_pool.try_recv().unwrap_or_default();
        self.infer_pending(&mut flagged)?;
        if !flagged.is_empty() || !self.marks.is_empty() || self.clock.due() {
            let batch = AlertBatch {
                scoring: self.scoring.clone(),
                flagged,
                marks: std::mem::take(&mut self.marks),
                clock_us: self.clock.now_us,
            };
            self.send(batch);
        }
        self.metas.clear();
        self.input.clear();
        self.context_rows.clear();
        self.batcher.reset();
        Ok(())
    }

    /// Scores the gathered rows in calls of at most `batch_rows`, adding the
    /// flows at or above the threshold to `flagged`.
    fn infer_pending(&mut self, flagged: &mut Vec<Flagged>) -> Result<()> {
        let width = self.contract.num_features();
        for (c, (chunk_metas, chunk)) in self
            .metas
            .chunks(self.batch_rows)
            .zip(self.input.chunks(self.batch_rows * width))
            .enumerate()
        {
            let n = chunk_metas.len();
            let t = Instant::now();
            self.engine
                .infer(chunk, n, &mut self.preds)
                .map_err(|e| anyhow::Error::new(e).context("inference failed"))?;
            let took = t.elapsed();
            self.report.inference_busy += took;
            self.report.inference_calls += 1;
            self.report.scored += n as u64;
            metrics::histogram!("tapstream_inference_batch_rows").record(n as f64);
            metrics::histogram!("tapstream_inference_latency_seconds").record(took.as_secs_f64());
            for (i, (meta, p)) in chunk_metas.iter().zip(self.preds.iter()).enumerate() {
                if p.score >= self.threshold {
                    self.flagged += 1;
                    let row = context_row(&self.context_rows, c * self.batch_rows + i);
                    let input = chunk.get(i * width..(i + 1) * width);
                    let (explanation, input) = self.scoring.defer(row, input);
                    flagged.push(Flagged {
                        meta: *meta,
                        prediction: *p,
                        explanation,
                        input,
                    });
                }
            }
        }
        Ok(())
    }

    /// Hands alerts to the sink thread while it is open (the wait counts as
    /// blocked); once it has gone, sets `stop` so reading stops.
    fn send(&mut self, batch: AlertBatch) {
        if !self.sink_open {
            return;
        }
        let t = Instant::now();
        self.clock.sent_us = self.clock.sent_us.max(batch.clock_us);
        self.sink_open = self.alert_tx.send(batch).is_ok();
        self.blocked += t.elapsed();
        if !self.sink_open {
            self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// What each detector scored and flagged, the first one first.
    fn detector_counts(&self) -> Vec<crate::stage::detectors::DetectorCounts> {
        let first = crate::stage::detectors::DetectorCounts {
            name: self.detector.clone(),
            scored: self.report.scored,
            flagged: self.flagged,
            swaps: self.report.model_swaps,
            inference_busy: self.report.inference_busy,
            learn: None,
        };
        let mut further: Vec<(u16, crate::stage::detectors::DetectorCounts)> = self
            .extras
            .iter()
            .map(|e| (e.index(), e.counts.clone()))
            .chain(self.learning.iter().map(|l| (l.index, l.counts.clone())))
            .collect();
        further.sort_by_key(|(i, _)| *i);
        std::iter::once(first)
            .chain(further.into_iter().map(|(_, c)| c))
            .collect()
    }

    /// What alerts of model generation `g` carry; the current model's for a
    /// generation never published (which cannot happen).
    fn generation_scoring(&self, g: u64) -> Arc<Scoring> {
        self.generations
            .iter()
            .rev()
            .find(|(id, _)| *id == g)
            .map_or(&self.scoring, |(_, s)| s)
            .clone()
    }
}
