//! The alert sink thread: writes the alert stage's alerts through the
//! limiter to the sink, flushes, re-opens the output when asked (log
//! rotation), and publishes marks once the alerts before them are durable.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tapstream_connectors::episode::{EpisodeCounts, EpisodeEnd, EpisodeState, Episodes, Pending};
use tapstream_connectors::eve::explain::Residuals;
use tapstream_connectors::eve::{Alert, Explanation};
use tapstream_connectors::limit::{AlertLimiter, SuppressedCounts, Verdict};
use tapstream_connectors::sink::{AlertSink, SinkError};
use tapstream_connectors::ModelInfo;
use tapstream_inference::anomaly::AnomalySpec;
use tapstream_inference::{select_features_with, ModelContract, Prediction};
use tapstream_ingest::FlowMeta;
use tapstream_kernels::{Mark, Settled};

use crate::reopen::{ReopenRequest, REOPEN_POLL};
use crate::report::ConsumerReport;

/// A flow the model flagged.
pub(crate) struct Flagged {
    pub(crate) meta: FlowMeta,
    pub(crate) prediction: Prediction,
    /// Its context features above the model's benign baseline.
    pub(crate) explanation: Option<Explanation>,
    /// An anomaly model's input row for the flow, while its residuals are
    /// still to be worked out: the sink does that only for a line that
    /// shows them (every flow's line, or an episode's strongest flow).
    pub(crate) input: Option<Box<[f32]>>,
}

/// The model identity and decision settings an alert batch was scored with.
pub(crate) struct Scoring {
    pub(crate) model: ModelInfo,
    pub(crate) labels: Vec<String>,
    pub(crate) threshold: f32,
    /// Each context feature's benign `(median, p99)`, empty when the model
    /// has no baseline or flows come without context rows.
    pub(crate) baseline: Vec<Option<(f32, f32)>>,
    /// A learned anomaly model's parameters and its contract (its input
    /// columns), to name the features with the largest reconstruction error.
    anomaly: Option<(Arc<AnomalySpec>, ModelContract)>,
}

impl Scoring {
    /// What alerts of a model with `contract` and `threshold` carry;
    /// explanations only when the run makes context rows.
    pub(crate) fn of(
        info: ModelInfo,
        contract: &ModelContract,
        threshold: f32,
        context: bool,
    ) -> Self {
        Scoring {
            model: info,
            labels: contract.labels.clone(),
            threshold,
            baseline: if context {
                contract
                    .baseline
                    .iter()
                    .map(|b| b.map(|b| (b.median, b.p99)))
                    .collect()
            } else {
                Vec::new()
            },
            anomaly: contract.anomaly.clone().map(|a| (a, contract.clone())),
        }
    }

    /// A flagged flow's explanation as far as it is cheap (its context
    /// features), and the model input its residuals need later, for an
    /// anomaly model ([`Scoring::complete`]).
    pub(crate) fn defer(
        &self,
        row: Option<&[f32]>,
        input: Option<&[f32]>,
    ) -> (Option<Explanation>, Option<Box<[f32]>>) {
        let input = self.anomaly.as_ref().and(input).map(Box::from);
        (self.explain(row), input)
    }

    /// [`Scoring::defer`] for a flow scored elsewhere (in the flow
    /// workers): the model input is taken from its feature row `features`
    /// and context row `row`.
    pub(crate) fn defer_flow(
        &self,
        row: Option<&[f32]>,
        features: Option<&[f64]>,
    ) -> (Option<Explanation>, Option<Box<[f32]>>) {
        let input = match (&self.anomaly, features) {
            (Some((_, contract)), Some(f)) => {
                let mut input = Vec::new();
                let written = select_features_with(contract, f, row.unwrap_or(&[]), 1, &mut input);
                (written == 1).then(|| input.into_boxed_slice())
            }
            _ => None,
        };
        (self.explain(row), input)
    }

    /// `e` with the residuals of the anomaly model's input `input`
    /// (`parts` is a buffer reused from flow to flow).
    pub(crate) fn complete(
        &self,
        e: Option<Explanation>,
        input: &[f32],
        parts: &mut Vec<f64>,
    ) -> Option<Explanation> {
        let Some((spec, contract)) = &self.anomaly else {
            return e;
        };
        let error = spec.model.error(input, Some(parts));
        let typical = |j: usize| spec.model.typical(j);
        let r = Residuals::of(
            parts,
            &contract.columns,
            input,
            &typical,
            error,
            spec.threshold,
        );
        Some(Explanation::with_residuals(e, r))
    }

    /// Whether its alerts carry an anomaly model's residuals.
    pub(crate) fn has_anomaly(&self) -> bool {
        self.anomaly.is_some()
    }

    /// How strong a flagged flow's explanation will be, before its
    /// residuals are worked out: its context part, or its anomaly score's
    /// error over the threshold (`score = e / (e + threshold)`), whichever
    /// is larger. It agrees with [`Explanation::strength`] to the float32
    /// score's precision.
    pub(crate) fn strength_before(&self, e: Option<&Explanation>, score: f32) -> f32 {
        let context = e.map_or(0.0, Explanation::strength);
        if !self.has_anomaly() {
            return context;
        }
        let s = f64::from(score);
        let anomaly = if s >= 1.0 {
            f64::INFINITY
        } else {
            s / (1.0 - s)
        };
        context.max(anomaly as f32)
    }

    /// The explanation of a flagged flow with context row `row`.
    pub(crate) fn explain(&self, row: Option<&[f32]>) -> Option<Explanation> {
        if self.baseline.is_empty() {
            return None;
        }
        Explanation::of(row?, &self.baseline)
    }
}

/// Alerts for the sink, and the marks that are settled once they are
/// durable.
pub(crate) struct AlertBatch {
    pub(crate) scoring: Arc<Scoring>,
    pub(crate) flagged: Vec<Flagged>,
    pub(crate) marks: Vec<Mark>,
    /// Packet time: the latest flow end the alert stage has seen (µs).
    pub(crate) clock_us: i64,
}

/// What the sink thread owns besides its queues.
pub(crate) struct SinkOutput {
    pub(crate) sink: Box<dyn AlertSink>,
    pub(crate) limiter: AlertLimiter,
    pub(crate) reopen: Option<ReopenRequest>,
    pub(crate) settled: Option<Arc<Settled>>,
    /// Flagged flows become episode records (`None`: one line per flow).
    pub(crate) episodes: Option<Episodes>,
}

/// What the sink thread counted.
pub(crate) struct SinkReport {
    /// Alerts per class label: the first model's labels in order, then any
    /// new label a reloaded model brought.
    pub(crate) per_class: Vec<(String, u64)>,
    suppressed: SuppressedCounts,
    pub(crate) reopens: u64,
    pub(crate) reopen_errors: u64,
    busy: Duration,
    pub(crate) error: Option<String>,
    closed: bool,
    /// Alert lines written (per flow, or episode records).
    lines: u64,
    episodes: Option<EpisodeCounts>,
}

impl SinkReport {
    /// Copies the counts into the consumer stage's report.
    pub(crate) fn fill(self, report: &mut ConsumerReport) {
        (report.labels, report.alerts_by_class) = self.per_class.into_iter().unzip();
        report.sink_busy = self.busy;
        report.suppressed = self.suppressed;
        report.eve_reopens = self.reopens;
        report.eve_reopen_errors = self.reopen_errors;
        report.sink_error = self.error;
        report.sink_closed = self.closed;
        report.alert_lines = self.lines;
        report.episodes = self.episodes;
    }
}

/// The sink thread's state.
struct SinkState {
    output: SinkOutput,
    report: SinkReport,
    /// Marks waiting for the next flush.
    marks: Vec<Mark>,
    /// Alerts written since the last flush.
    unflushed: bool,
    /// Reused while working out residuals.
    parts: Vec<f64>,
    /// The scoring of each model (by SHA-256) whose episodes keep
    /// residuals pending: what works them out when a record is written.
    scorings: HashMap<String, Arc<Scoring>>,
    last_flush: Instant,
}

/// Writes alert batches from `rx` until it closes or the sink fails; empty
/// alert vectors go back through `pool`. `labels` are the first model's.
pub(crate) fn sink_loop(
    output: SinkOutput,
    rx: Receiver<AlertBatch>,
    pool: Sender<Vec<Flagged>>,
    labels: Vec<String>,
) -> SinkReport {
    // A sink whose flush waits on someone else (Kafka's acknowledgements)
    // is flushed at most this often; marks wait for the next flush.
    let every = output.sink.flush_every();
    let mut st = SinkState {
        output,
        report: SinkReport {
            per_class: labels.into_iter().map(|l| (l, 0)).collect(),
            suppressed: SuppressedCounts::default(),
            reopens: 0,
            reopen_errors: 0,
            busy: Duration::ZERO,
            error: None,
            closed: false,
            lines: 0,
            episodes: None,
        },
        marks: Vec::new(),
        unflushed: false,
        parts: Vec::new(),
        scorings: HashMap::new(),
        last_flush: Instant::now(),
    };
    loop {
        let pending = st.unflushed || !st.marks.is_empty();
        let mut wait = pending.then(|| every.saturating_sub(st.last_flush.elapsed()));
        if st.output.reopen.is_some() {
            // Wake up now and then to serve a re-open while no alerts come.
            wait = Some(wait.map_or(REOPEN_POLL, |w| w.min(REOPEN_POLL)));
        }
        let msg = match wait {
            Some(w) => rx.recv_timeout(w),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let closed = match msg {
            Ok(mut batch) => {
                st.write(&mut batch);
                batch.flagged.clear();
                let _ = pool.try_send(batch.flagged);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if st.report.error.is_some() {
            break;
        }
        if st.output.reopen.as_ref().is_some_and(ReopenRequest::take) {
            let t = Instant::now();
            reopen_sink(st.output.sink.as_mut(), &mut st.report);
            st.report.busy += t.elapsed();
        }
        if closed {
            st.finish_episodes();
        }
        if (st.unflushed || !st.marks.is_empty())
            && (closed || st.last_flush.elapsed() >= every)
            && !st.flush()
        {
            break;
        }
        if closed {
            break;
        }
    }
    st.report
}

impl SinkState {
    /// Writes a batch's alerts that the limiter lets through, and keeps its
    /// marks for the next flush.
    fn write(&mut self, batch: &mut AlertBatch) {
        let t = Instant::now();
        if self.report.error.is_none() {
            let scoring = &batch.scoring;
            if self.output.episodes.is_some()
                && scoring.has_anomaly()
                && !self.scorings.contains_key(&scoring.model.sha256)
            {
                self.scorings
                    .insert(scoring.model.sha256.clone(), scoring.clone());
            }
            for f in &batch.flagged {
                let class = scoring
                    .labels
                    .get(f.prediction.class)
                    .map_or("unknown", String::as_str);
                let mut alert = Alert {
                    flow: &f.meta,
                    score: f.prediction.score,
                    class,
                    class_index: u16::try_from(f.prediction.class).unwrap_or(u16::MAX),
                    model: &scoring.model,
                    threshold: scoring.threshold,
                    episode: None,
                    explanation: f.explanation.as_ref(),
                };
                // An anomaly model's residuals are worked out only for a
                // line that shows them: every flow's own line, or the record
                // of an episode whose strongest flow this is.
                let full;
                let mut pending = None;
                if let Some(input) = f.input.as_deref() {
                    if self.output.episodes.is_some() {
                        let e = f.explanation.as_ref();
                        pending = Some(Pending {
                            strength: scoring.strength_before(e, f.prediction.score),
                            input,
                        });
                    } else {
                        full = scoring.complete(f.explanation, input, &mut self.parts);
                        alert.explanation = full.as_ref();
                    }
                }
                if !self.write_one(&alert, pending, class) {
                    break;
                }
            }
            if let Some(eps) = &mut self.output.episodes {
                let (sink, lines) = (&mut self.output.sink, &mut self.report.lines);
                let (scorings, parts) = (&self.scorings, &mut self.parts);
                let r = eps.advance(batch.clock_us, &mut |a| {
                    write_episode(sink.as_mut(), a, lines, scorings, parts)
                });
                self.episode_result(r);
            }
            self.marks.extend_from_slice(&batch.marks);
        }
        self.report.busy += t.elapsed();
    }

    /// Writes one alert unless the limiter suppresses it; false once the
    /// sink failed.
    fn write_one(&mut self, alert: &Alert<'_>, pending: Option<Pending<'_>>, class: &str) -> bool {
        if let Verdict::Suppress(reason) = self.output.limiter.check(alert) {
            self.report.suppressed.add(reason);
            metrics::counter!("tapstream_alerts_suppressed_total", "reason" => reason.as_str())
                .increment(1);
            return true;
        }
        let written = match &mut self.output.episodes {
            Some(eps) => {
                let (sink, lines) = (&mut self.output.sink, &mut self.report.lines);
                let (scorings, parts) = (&self.scorings, &mut self.parts);
                eps.add_pending(alert, pending, &mut |a| {
                    write_episode(sink.as_mut(), a, lines, scorings, parts)
                })
            }
            None => write_record(self.output.sink.as_mut(), alert, &mut self.report.lines),
        };
        if !self.episode_result(written) {
            return false;
        }
        match self.report.per_class.iter_mut().find(|(l, _)| l == class) {
            Some((_, n)) => *n += 1,
            None => self.report.per_class.push((class.to_string(), 1)),
        }
        metrics::counter!("tapstream_alerts_total", "class" => class.to_string()).increment(1);
        true
    }

    /// Notes what writing a record gave (and that something may wait for a
    /// flush); false once the sink failed.
    fn episode_result(&mut self, r: Result<(), SinkError>) -> bool {
        self.unflushed = true;
        if let Some(eps) = &self.output.episodes {
            self.report.episodes = Some(eps.counts());
        }
        match r {
            Ok(()) => true,
            Err(e) => {
                self.report.closed = e.is_closed();
                self.report.error = Some(e.to_string());
                false
            }
        }
    }

    /// Ends every open episode (the input ended), writing their records.
    fn finish_episodes(&mut self) {
        if self.report.error.is_some() {
            return;
        }
        if let Some(eps) = &mut self.output.episodes {
            let (sink, lines) = (&mut self.output.sink, &mut self.report.lines);
            let (scorings, parts) = (&self.scorings, &mut self.parts);
            let r = eps.finish(&mut |a| write_episode(sink.as_mut(), a, lines, scorings, parts));
            self.episode_result(r);
        }
    }

    /// Flushes the sink and publishes the marks that waited for it; false
    /// when the flush failed.
    fn flush(&mut self) -> bool {
        let t = Instant::now();
        if self.unflushed {
            if let Err(e) = self.output.sink.flush() {
                self.report.closed = e.is_closed();
                self.report.error = Some(e.to_string());
                return false;
            }
            self.unflushed = false;
        }
        // Every alert before these marks is durable now.
        if let Some(s) = &self.output.settled {
            s.publish(&self.marks);
        }
        self.marks.clear();
        self.last_flush = Instant::now();
        self.report.busy += t.elapsed();
        true
    }
}

/// Writes an episode record, first working out the residuals its
/// explanation still lacks.
fn write_episode(
    sink: &mut dyn AlertSink,
    a: &Alert<'_>,
    lines: &mut u64,
    scorings: &HashMap<String, Arc<Scoring>>,
    parts: &mut Vec<f64>,
) -> Result<(), SinkError> {
    let full;
    let mut a = *a;
    let pending = a.episode.and_then(|e| e.episode.pending());
    if let (Some(input), Some(s)) = (pending, scorings.get(&a.model.sha256)) {
        full = s.complete(a.explanation.copied(), input, parts);
        a.explanation = full.as_ref();
    }
    write_record(sink, &a, lines)
}

/// Writes one alert line (a flow's, or an episode record) and counts it.
fn write_record(sink: &mut dyn AlertSink, a: &Alert<'_>, lines: &mut u64) -> Result<(), SinkError> {
    sink.write(a)?;
    *lines += 1;
    if let Some(e) = &a.episode {
        let event = match e.state {
            EpisodeState::End(EpisodeEnd::Evicted) => "evicted",
            s => s.as_str(),
        };
        metrics::counter!("tapstream_episode_records_total", "state" => event).increment(1);
    }
    Ok(())
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
                error = %crate::error_chain(&e),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::thread;

    use crossbeam_channel::bounded;
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
            explanation: None,
            input: None,
        }
    }

    fn batch(ids: std::ops::Range<u64>) -> AlertBatch {
        AlertBatch {
            scoring: Arc::new(Scoring {
                anomaly: None,
                model: ModelInfo::new("m", "1", "00"),
                labels: vec!["Portscan".to_string()],
                threshold: 0.5,
                baseline: Vec::new(),
            }),
            flagged: ids.map(flagged).collect(),
            marks: Vec::new(),
            clock_us: 0,
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
            episodes: None,
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
