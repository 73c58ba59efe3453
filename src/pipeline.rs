//! The stage threads of a run and the bounded queues between them.
//!
//! ```text
//! reader ──PacketBatch──▶ worker 0..N ──FlowBatch──▶ consumer
//! (read + decode,          (flow table +              (inference → alert sink,
//!  shard by flow hash)      CPU features, one shard)   or CSV export)
//! ```
//!
//! Every queue is a bounded crossbeam channel and every batch comes back
//! through a pool, so memory is bounded and the steady state allocates
//! nothing. Offline input never drops: when a worker falls behind, the reader
//! waits for an empty batch. Each stage measures the time it spends blocked on
//! its queues, so the summary can report per-stage busy rates.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use tapstream_ingest::capture::{CaptureError, CaptureReader};
use tapstream_ingest::decode::decode;
use tapstream_ingest::flow::FlowConfig;
use tapstream_ingest::skip::{SkipCounters, SkipReason};
use tapstream_ingest::PacketRecord;
use tapstream_kernels::shard::{Output, ShardStats};
use tapstream_kernels::FlowBatch;

use crate::config::Config;
use crate::consumer::{Consumer, ConsumerReport};
use crate::device::{self, Extractor};

/// Flow batches in flight per worker between the workers and the consumer.
const FLOW_QUEUE: usize = 16;

/// Packet time between clock ticks sent to shards that have nothing pending,
/// so an idle shard still sweeps its timed-out flows.
const TICK_US: i64 = 1_000_000;

/// Wall time after which partly filled batches are sent anyway, so a slow
/// trickle of packets is not held back waiting for a batch to fill.
const FLUSH_WALL: Duration = Duration::from_millis(100);

/// A batch of packet records for one shard; `now_us` is the reader's packet
/// clock when it was sent (shards sweep idle flows up to it).
struct PacketBatch {
    recs: Vec<PacketRecord>,
    now_us: i64,
}

/// What the reader counted.
#[derive(Clone, Debug, Default)]
pub struct ReaderReport {
    /// Packet records read from the capture (a truncated final record counts).
    pub packets: u64,
    /// Original (wire) bytes of those packets.
    pub bytes: u64,
    /// Packets decoded into records and sent to the flow workers.
    pub decoded: u64,
    /// Packets that could not become part of a flow, by reason.
    pub skipped: SkipCounters,
    /// Corruption that stopped reading before the end of the file.
    pub read_error: Option<String>,
    /// Time spent reading and decoding (not waiting on queues).
    pub busy: Duration,
}

/// What the flow workers counted, summed over shards.
#[derive(Clone, Debug, Default)]
pub struct WorkersReport {
    /// Sum of the shards' statistics.
    pub stats: ShardStats,
    /// Flow worker threads.
    pub workers: usize,
    /// Sum of the workers' busy time (not waiting on queues).
    pub busy: Duration,
    /// Where features were computed ("cpu" or the GPU).
    pub device: String,
}

/// Everything a run measured.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// The capture file.
    pub input: PathBuf,
    /// Reader stage.
    pub reader: ReaderReport,
    /// Flow worker stage.
    pub workers: WorkersReport,
    /// Consumer stage (inference and alerts, or CSV export).
    pub consumer: ConsumerReport,
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Of which start-up: opening the device, allocating buffers, starting
    /// threads (before the first packet is read).
    pub setup: Duration,
}

impl RunReport {
    /// Packets the flows account for plus every skip counter: equals
    /// `reader.packets` when every packet is accounted for.
    pub fn accounted_packets(&self) -> u64 {
        self.workers.stats.packets + self.reader.skipped.total()
    }

    /// True when every packet read is in a flow or a skip counter, and every
    /// decoded packet reached a flow.
    pub fn all_accounted(&self) -> bool {
        self.accounted_packets() == self.reader.packets
            && self.reader.decoded == self.workers.stats.packets
    }

    /// Flows that ended (and were handed to the consumer).
    pub fn flows(&self) -> u64 {
        self.workers.stats.ended_total()
    }
}

/// Progress shared with the caller's progress bar.
#[derive(Debug, Default)]
pub struct Progress {
    /// Capture bytes consumed so far.
    pub bytes: AtomicU64,
    /// Packets read so far.
    pub packets: AtomicU64,
}

/// Reads `input`, runs it through flows and features, and hands ended flows
/// to `consumer`. Returns when every stage has drained.
pub fn run(
    input: &Path,
    cfg: &Config,
    consumer: Consumer,
    progress: Arc<Progress>,
) -> Result<RunReport> {
    let started = Instant::now();
    let reader = CaptureReader::open(input).with_context(|| format!("{}", input.display()))?;
    let device = device::resolve(cfg)?;
    let workers = cfg.worker_threads();
    let flow_cfg = flow_config(cfg, workers);
    let q = cfg.pipeline.queue_batches;
    let batch_packets = cfg.pipeline.batch_packets;

    // Empty packet batches: N×(Q+1) of them, so each worker can have Q queued
    // while the reader fills one per worker.
    let pool_size = workers * (q + 1);
    let (pool_tx, pool_rx) = bounded::<Vec<PacketRecord>>(pool_size);
    for _ in 0..pool_size {
        pool_tx
            .send(Vec::with_capacity(batch_packets))
            .map_err(|_| anyhow!("batch pool closed during start-up"))?;
    }
    // Flows end in bursts (a capture's quiet flows all time out together),
    // so the queue to the consumer is deep enough to absorb a burst while
    // the workers keep going.
    let (flow_tx, flow_rx) = bounded::<FlowBatch>(FLOW_QUEUE * workers);
    let (flow_pool_tx, flow_pool_rx) = bounded::<FlowBatch>(FLOW_QUEUE * workers + workers + 2);
    let stop = Arc::new(AtomicBool::new(false));

    let mut work_txs = Vec::with_capacity(workers);
    let mut worker_handles = Vec::with_capacity(workers);
    for shard in 0..workers {
        let (tx, rx) = bounded::<PacketBatch>(q);
        work_txs.push(tx);
        let mut proc = Extractor::new(&device, flow_cfg, shard as u32, cfg)?;
        let pool_tx = pool_tx.clone();
        let flow_tx = flow_tx.clone();
        let flow_pool_rx = flow_pool_rx.clone();
        let batch_flows = cfg.pipeline.batch_flows;
        let h = thread::Builder::new()
            .name(format!("flow-{shard}"))
            .spawn(move || worker_loop(&mut proc, rx, pool_tx, flow_tx, flow_pool_rx, batch_flows))
            .context("spawning flow worker")?;
        worker_handles.push(h);
    }
    drop(flow_tx);
    drop(pool_tx);

    let consumer_handle = thread::Builder::new()
        .name("consumer".into())
        .spawn({
            let stop = stop.clone();
            move || {
                let r = consumer.run(flow_rx, flow_pool_tx, &stop);
                if r.is_err() {
                    // Nothing downstream can take flows: stop reading.
                    stop.store(true, Ordering::Relaxed);
                }
                r
            }
        })
        .context("spawning consumer")?;

    let setup = started.elapsed();
    let reader_handle = thread::Builder::new()
        .name("reader".into())
        .spawn({
            let progress = progress.clone();
            let stop = stop.clone();
            move || reader_loop(reader, work_txs, pool_rx, batch_packets, &progress, &stop)
        })
        .context("spawning reader")?;

    let reader_report = reader_handle
        .join()
        .map_err(|_| anyhow!("reader thread panicked"))?;
    let mut workers_report = WorkersReport {
        workers,
        device: device.describe(),
        ..WorkersReport::default()
    };
    let mut device_error = None;
    for h in worker_handles {
        let (stats, busy, error) = h.join().map_err(|_| anyhow!("flow worker panicked"))?;
        merge_stats(&mut workers_report.stats, &stats);
        workers_report.busy += busy;
        device_error = device_error.or(error);
    }
    let consumer_report = consumer_handle
        .join()
        .map_err(|_| anyhow!("consumer thread panicked"))??;
    if let Some(e) = device_error {
        anyhow::bail!("the GPU extractor failed, flows were lost: {e}");
    }
    Ok(RunReport {
        input: input.to_path_buf(),
        reader: reader_report,
        workers: workers_report,
        consumer: consumer_report,
        wall: started.elapsed(),
        setup,
    })
}

/// Adds one shard's counters to a total.
fn merge_stats(total: &mut ShardStats, s: &ShardStats) {
    total.active_flows += s.active_flows;
    total.flows_created += s.flows_created;
    for (t, n) in total.ended.iter_mut().zip(s.ended) {
        *t += n;
    }
    total.evictions += s.evictions;
    total.packets += s.packets;
}

/// The flow table configuration for one shard: the configured maximum is
/// split evenly over the shards.
pub fn flow_config(cfg: &Config, shards: usize) -> FlowConfig {
    let us = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    FlowConfig {
        flow_timeout_us: us(cfg.flow.timeout),
        activity_timeout_us: us(cfg.flow.activity_timeout),
        tcp_close_linger_us: us(cfg.flow.tcp_close_linger),
        max_flows: cfg.flow.max_flows.div_ceil(shards.max(1)).max(1),
    }
}

/// Which shard owns a flow hash.
#[inline]
pub fn shard_of(hash: u64, shards: usize) -> usize {
    // Multiply-shift: uniform over the high bits, no division.
    ((u128::from(hash) * shards as u128) >> 64) as usize
}

fn reader_loop(
    mut reader: CaptureReader,
    work_txs: Vec<Sender<PacketBatch>>,
    pool_rx: Receiver<Vec<PacketRecord>>,
    batch_packets: usize,
    progress: &Progress,
    stop: &AtomicBool,
) -> ReaderReport {
    let started = Instant::now();
    let mut blocked = Duration::ZERO;
    let shards = work_txs.len();
    let mut report = ReaderReport::default();
    let mut batches: Vec<Vec<PacketRecord>> = Vec::with_capacity(shards);
    for _ in 0..shards {
        match take_batch(&pool_rx, &mut blocked) {
            Some(b) => batches.push(b),
            None => return report,
        }
    }
    let mut rec = PacketRecord::default();
    let mut now_us = i64::MIN;
    let mut next_tick = i64::MIN;
    let mut since_publish = 0u32;
    let mut last_flush = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let pkt = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(CaptureError::TruncatedRecord { .. }) => {
                report.packets += 1;
                report.skipped.add(SkipReason::TruncatedRecord);
                continue;
            }
            Err(e) => {
                tracing::warn!(message = "capture is corrupt; stopped reading", error = %e);
                report.read_error = Some(e.to_string());
                break;
            }
        };
        report.packets += 1;
        report.bytes += u64::from(pkt.orig_len);
        match decode(&pkt, &mut rec) {
            Ok(()) => {
                report.decoded += 1;
                now_us = now_us.max(rec.ts_us);
                let s = shard_of(rec.hash, shards);
                let Some(batch) = batches.get_mut(s) else {
                    continue;
                };
                batch.push(rec);
                if batch.len() >= batch_packets
                    && !send_batch(&work_txs, &pool_rx, &mut batches, s, now_us, &mut blocked)
                {
                    break;
                }
            }
            Err(reason) => report.skipped.add(reason),
        }
        if now_us >= next_tick {
            // A shard with nothing pending gets an empty batch as a clock
            // tick; shards with pending records advance when those are sent.
            if next_tick != i64::MIN {
                for s in 0..shards {
                    let idle = batches.get(s).is_some_and(Vec::is_empty);
                    if idle
                        && !send_batch(&work_txs, &pool_rx, &mut batches, s, now_us, &mut blocked)
                    {
                        break;
                    }
                }
            }
            next_tick = now_us.saturating_add(TICK_US);
        }
        since_publish += 1;
        if since_publish >= 4096 {
            since_publish = 0;
            progress.bytes.store(reader.bytes_read(), Ordering::Relaxed);
            progress.packets.store(report.packets, Ordering::Relaxed);
            if last_flush.elapsed() >= FLUSH_WALL {
                last_flush = Instant::now();
                for s in 0..shards {
                    let pending = batches.get(s).is_some_and(|b| !b.is_empty());
                    if pending
                        && !send_batch(&work_txs, &pool_rx, &mut batches, s, now_us, &mut blocked)
                    {
                        break;
                    }
                }
            }
        }
    }
    for (s, batch) in batches.into_iter().enumerate() {
        if let Some(tx) = work_txs.get(s) {
            let _ = tx.send(PacketBatch {
                recs: batch,
                now_us,
            });
        }
    }
    progress.bytes.store(reader.bytes_read(), Ordering::Relaxed);
    progress.packets.store(report.packets, Ordering::Relaxed);
    metrics::counter!("tapstream_packets_read_total").increment(report.packets);
    metrics::counter!("tapstream_bytes_read_total").increment(report.bytes);
    for (reason, n) in report.skipped.iter() {
        metrics::counter!("tapstream_packets_skipped_total", "reason" => reason.as_str())
            .increment(n);
    }
    report.busy = started.elapsed().saturating_sub(blocked);
    report
}

/// Takes an empty batch from the pool, timing the wait.
fn take_batch(
    pool_rx: &Receiver<Vec<PacketRecord>>,
    blocked: &mut Duration,
) -> Option<Vec<PacketRecord>> {
    if let Ok(b) = pool_rx.try_recv() {
        return Some(b);
    }
    let t = Instant::now();
    let b = pool_rx.recv().ok();
    *blocked += t.elapsed();
    b
}

/// Sends shard `s`'s batch (even when empty, as a clock tick) and replaces it
/// with an empty one from the pool. False when the pipeline is shutting down.
fn send_batch(
    work_txs: &[Sender<PacketBatch>],
    pool_rx: &Receiver<Vec<PacketRecord>>,
    batches: &mut [Vec<PacketRecord>],
    s: usize,
    now_us: i64,
    blocked: &mut Duration,
) -> bool {
    let (Some(tx), Some(slot)) = (work_txs.get(s), batches.get_mut(s)) else {
        return false;
    };
    let Some(fresh) = take_batch(pool_rx, blocked) else {
        return false;
    };
    let recs = std::mem::replace(slot, fresh);
    match tx.try_send(PacketBatch { recs, now_us }) {
        Ok(()) => true,
        Err(TrySendError::Full(msg)) => {
            let t = Instant::now();
            let ok = tx.send(msg).is_ok();
            *blocked += t.elapsed();
            ok
        }
        Err(TrySendError::Disconnected(_)) => false,
    }
}

/// How long a GPU worker waits for packets before delivering the flows that
/// are waiting in a partly filled batch.
const GPU_IDLE: Duration = Duration::from_millis(50);

fn worker_loop(
    proc: &mut Extractor,
    rx: Receiver<PacketBatch>,
    pool_tx: Sender<Vec<PacketRecord>>,
    flow_tx: Sender<FlowBatch>,
    flow_pool_rx: Receiver<FlowBatch>,
    batch_flows: usize,
) -> (ShardStats, Duration, Option<String>) {
    let started = Instant::now();
    let mut recv_blocked = Duration::ZERO;
    let mut send_blocked = Duration::ZERO;
    let fresh = |pool: &Receiver<FlowBatch>| {
        pool.try_recv()
            .unwrap_or_else(|_| FlowBatch::with_capacity(batch_flows))
    };
    let mut out = fresh(&flow_pool_rx);
    let mut open = true;
    // Sends a non-empty batch on and leaves an empty one from the pool in its
    // place; once the consumer is gone, flows are dropped.
    let mut handoff = |b: &mut FlowBatch| {
        if b.is_empty() {
            return;
        }
        if open {
            let full = std::mem::replace(b, fresh(&flow_pool_rx));
            let t = Instant::now();
            open = flow_tx.send(full).is_ok();
            send_blocked += t.elapsed();
        } else {
            b.clear();
        }
    };
    loop {
        let msg = match rx.try_recv() {
            Ok(m) => Some(m),
            Err(_) if proc.batched() => {
                let t = Instant::now();
                let m = match rx.recv_timeout(GPU_IDLE) {
                    Ok(m) => Some(m),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        recv_blocked += t.elapsed();
                        proc.idle(&mut Output {
                            batch: &mut out,
                            max_flows: batch_flows,
                            handoff: &mut handoff,
                        });
                        handoff(&mut out);
                        continue;
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => None,
                };
                recv_blocked += t.elapsed();
                m
            }
            Err(_) => {
                let t = Instant::now();
                let m = rx.recv().ok();
                recv_blocked += t.elapsed();
                m
            }
        };
        let Some(mut batch) = msg else { break };
        let n = batch.recs.len() as u64;
        let mut output = Output {
            batch: &mut out,
            max_flows: batch_flows,
            handoff: &mut handoff,
        };
        proc.process_into(&batch.recs, &mut output);
        proc.advance_into(batch.now_us, &mut output);
        batch.recs.clear();
        let _ = pool_tx.try_send(batch.recs);
        metrics::counter!("tapstream_packets_processed_total").increment(n);
        // Hand off what ended in this batch now, so alerts are not delayed.
        handoff(&mut out);
    }
    proc.flush_into(&mut Output {
        batch: &mut out,
        max_flows: batch_flows,
        handoff: &mut handoff,
    });
    handoff(&mut out);
    let stats = proc.stats();
    metrics::gauge!("tapstream_flows_active").set(0.0);
    (
        stats,
        started
            .elapsed()
            .saturating_sub(recv_blocked)
            .saturating_sub(send_blocked),
        proc.error(),
    )
}

/// What waiting on a queue gave.
pub(crate) enum Recv<T> {
    /// A message.
    Item(T),
    /// The deadline passed first.
    Timeout,
    /// Every sender is gone and the queue is empty.
    Closed,
}

/// Receives from `rx`, waiting until `deadline` at most (forever for
/// `None`), and adds the time spent waiting to `blocked`.
pub(crate) fn recv_until<T>(
    rx: &Receiver<T>,
    deadline: Option<Instant>,
    blocked: &mut Duration,
) -> Recv<T> {
    if let Ok(m) = rx.try_recv() {
        return Recv::Item(m);
    }
    let t = Instant::now();
    let r = match deadline {
        None => rx.recv().map_or(Recv::Closed, Recv::Item),
        Some(d) => match rx.recv_deadline(d) {
            Ok(m) => Recv::Item(m),
            Err(RecvTimeoutError::Timeout) => Recv::Timeout,
            Err(RecvTimeoutError::Disconnected) => Recv::Closed,
        },
    };
    *blocked += t.elapsed();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_of_is_in_range_and_spreads() {
        let mut counts = [0u32; 7];
        let mut h = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..70_000 {
            h = h
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let s = shard_of(h, 7);
            counts[s] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert_eq!(shard_of(u64::MAX, 1), 0);
    }

    #[test]
    fn flow_config_splits_max_flows() {
        let cfg = Config::default();
        let fc = flow_config(&cfg, 4);
        assert_eq!(fc.max_flows, (1 << 20) / 4);
        assert_eq!(fc.flow_timeout_us, 120_000_000);
        assert_eq!(fc.activity_timeout_us, 5_000_000);
    }
}
