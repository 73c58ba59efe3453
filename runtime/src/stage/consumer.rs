//! The consumer stage: what happens to ended flows.
//!
//! For `run` the [`AlertStage`] scores them and
//! writes alerts; for `features` they become CSV rows; `eval` collects them
//! to score with several models; `bench` can discard them to measure the
//! stages before.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender};
use tapstream_inference::WorkerModels;
use tapstream_ingest::queue::{recv_until, Recv};
use tapstream_kernels::{csv, FlowBatch};

use super::alerts::AlertStage;
use crate::report::ConsumerReport;

/// What the consumer stage does with ended flows.
pub enum Consumer {
    /// Score flows and write alerts.
    Alerts(Box<AlertStage>),
    /// Write one CSV row per flow.
    Features(Box<dyn Write + Send>),
    /// Hand every batch of ended flows, unscored, to this channel (an
    /// evaluation gathers a capture's flows). Drain it or make it unbounded:
    /// the run waits while it is full.
    Collect(Sender<FlowBatch>),
    /// Count flows and drop them (benchmarks of the stages before).
    Discard,
}

impl Consumer {
    /// True when the flows need context rows (the model reads them).
    pub fn needs_context(&self) -> bool {
        match self {
            Consumer::Alerts(stage) => stage.needs_context(),
            _ => false,
        }
    }

    /// True when the first detector reads context rows: it may score in
    /// the flow workers, before the context stage.
    pub fn first_needs_context(&self) -> bool {
        match self {
            Consumer::Alerts(stage) => stage.engine.contract().needs_context(),
            _ => false,
        }
    }

    /// Gives the alert stage the reader's progress (the input's first packet
    /// time, which a learning detector counts from).
    pub fn watch_progress(&mut self, progress: &Arc<tapstream_ingest::source::Progress>) {
        if let Consumer::Alerts(stage) = self {
            stage.progress = Some(progress.clone());
        }
    }

    /// The worker sessions, when the flow workers score.
    pub fn worker_models(&self) -> Option<Arc<WorkerModels>> {
        match self {
            Consumer::Alerts(stage) => stage.workers.clone(),
            _ => None,
        }
    }

    /// Runs until every worker has hung up. Sets `stop` when output fails so
    /// the reader stops early. `context`: flows arrive with context rows.
    pub fn run(
        self,
        rx: Receiver<FlowBatch>,
        pool: Sender<FlowBatch>,
        stop: &AtomicBool,
        context: bool,
    ) -> Result<ConsumerReport> {
        match self {
            Consumer::Alerts(stage) => (*stage).run(rx, pool, stop, context),
            Consumer::Features(out) => run_csv(out, rx, pool, stop, context),
            Consumer::Collect(out) => run_collect(&out, &rx, stop),
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

/// Sends every non-empty batch to `out`; the workers allocate fresh ones as
/// the pool runs dry.
fn run_collect(
    out: &Sender<FlowBatch>,
    rx: &Receiver<FlowBatch>,
    stop: &AtomicBool,
) -> Result<ConsumerReport> {
    let mut report = ConsumerReport::default();
    let mut blocked = Duration::ZERO;
    let started = Instant::now();
    let mut result = Ok(());
    while let Recv::Item(b) = recv_until(rx, None, &mut blocked) {
        report.flows += b.len() as u64;
        if b.is_empty() || result.is_err() {
            continue;
        }
        if out.send(b).is_err() {
            stop.store(true, Ordering::Relaxed);
            result = Err(anyhow::anyhow!("the collector of flow batches hung up"));
        }
    }
    report.busy = started.elapsed().saturating_sub(blocked);
    result.map(|()| report)
}

fn run_csv(
    out: Box<dyn Write + Send>,
    rx: Receiver<FlowBatch>,
    pool: Sender<FlowBatch>,
    stop: &AtomicBool,
    context: bool,
) -> Result<ConsumerReport> {
    let mut report = ConsumerReport::default();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
    let mut blocked = Duration::ZERO;
    let started = Instant::now();
    let mut result = csv::write_header_with(&mut w, context).context("writing CSV header");
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
