//! The flow worker stage: one shard's flow table and features, fed by every
//! decoder, handing ended flows (scored, with the model in the workers) to
//! the consumer.
//!
//! A shard's packet clock moves to the capture's (the largest timestamp
//! decoded so far) each time that enters a new tick period, at that packet's
//! place in the capture, so idle shards still sweep their timed-out flows.
//! The flows a shard ends, their order and their features therefore depend
//! only on the capture and the number of workers: not on the decoders,
//! chunk boundaries or timing. For a numbered source, each chunk ends with
//! the shard's [`Mark`](tapstream_kernels::Mark).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use tapstream_inference::WorkerScorer;
use tapstream_ingest::defrag::{Defrag, DefragConfig, DefragStats};
use tapstream_ingest::queue::send_timed;
use tapstream_ingest::{EndReason, PacketRecord};
use tapstream_kernels::shard::Output;
use tapstream_kernels::{FeatureExtractor, FlowBatch, Handoff, ShardStats};

use super::decode::{DecodedChunk, TICK_US};
use super::inbox::{Got, Inbox};

/// How long a worker whose flows arrive per batch (a GPU) waits for packets
/// before it delivers the flows waiting in a partly filled batch.
const GPU_IDLE: Duration = Duration::from_millis(50);

/// How often a worker adds its flow table counters to the metrics.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// What a flow worker ends with.
#[derive(Debug)]
pub(crate) struct WorkerOutcome {
    pub(crate) stats: ShardStats,
    /// Time not spent waiting on its queues.
    pub(crate) busy: Duration,
    /// The GPU extractor's failure, if it failed.
    pub(crate) device_error: Option<String>,
    /// Why scoring failed (inference in the workers), if it did.
    pub(crate) scoring_error: Option<String>,
    /// What its reassembly did with the fragments of its shard.
    pub(crate) defrag: DefragStats,
}

/// A worker's side of the flow queue: scores a batch when the worker holds
/// the model, sends it on, and leaves an empty one from the pool in its
/// place. Once the consumer is gone, or scoring failed (the run then stops),
/// flows are dropped.
pub(crate) struct Outbox {
    shard: usize,
    scorer: Option<WorkerScorer>,
    tx: Sender<FlowBatch>,
    pool: Receiver<FlowBatch>,
    batch_flows: usize,
    open: bool,
    stop: Arc<AtomicBool>,
    scoring_error: Option<String>,
    blocked: Duration,
    /// The context stage runs: batches say their shard, and carry starts
    /// and watermarks.
    context: bool,
}

impl Outbox {
    /// The outbox of worker `shard`, scoring with `scorer` when it has one.
    pub(crate) fn new(
        shard: usize,
        scorer: Option<WorkerScorer>,
        (tx, pool): (Sender<FlowBatch>, Receiver<FlowBatch>),
        batch_flows: usize,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Outbox {
            shard,
            scorer,
            tx,
            pool,
            batch_flows,
            open: true,
            stop,
            scoring_error: None,
            blocked: Duration::ZERO,
            context: false,
        }
    }

    /// Makes the worker feed the context stage (see `stage::context`).
    pub(crate) fn with_context(mut self, on: bool) -> Self {
        self.context = on;
        self
    }

    fn fresh(&self) -> FlowBatch {
        self.pool
            .try_recv()
            .unwrap_or_else(|_| FlowBatch::with_capacity(self.batch_flows))
    }

    /// Hands `b` off (see the type's docs); nothing for an empty batch
    /// without a mark.
    fn hand_off(&mut self, b: &mut FlowBatch) {
        if b.is_empty() && b.mark.is_none() && b.watermark.is_none() && b.starts.is_empty() {
            return;
        }
        if self.context {
            b.shard = Some(self.shard as u32);
        }
        // A GPU shard scoring on the device hands off scored batches.
        if let (true, Some(s)) = (
            self.open && !b.is_empty() && b.scored.is_none(),
            self.scorer.as_mut(),
        ) {
            if let Err(e) = s.score(b) {
                let e = crate::error_chain(&e);
                tracing::error!(
                    message = "scoring failed in a flow worker; the run stops",
                    shard = self.shard,
                    error = %e
                );
                self.scoring_error = Some(e);
                self.open = false;
                self.stop.store(true, Ordering::Relaxed);
            }
        }
        if self.open {
            let full = std::mem::replace(b, self.fresh());
            self.open = send_timed(&self.tx, full, &mut self.blocked);
        } else {
            b.clear();
        }
    }
}

/// One flow worker: its shard's extractor between its inbox and outbox.
pub(crate) struct Worker {
    shard: usize,
    extractor: Box<dyn FeatureExtractor>,
    outbox: Outbox,
    /// The batch being filled.
    out: FlowBatch,
    /// The capture clock's tick period so far.
    tick: i64,
    /// The last flush request carried out (numbered input).
    flushed: u64,
    recv_blocked: Duration,
    published: ShardStats,
    published_at: Instant,
    emergency: EmergencyWatch,
    /// Input chunks seen so far (the context stage's watermark).
    chunks: u64,
    /// The shard's datagrams waiting for fragments (defragmentation on).
    defrag: Option<Defrag>,
    /// A chunk's part with its reassembled datagrams in place.
    merged: Merged,
}

/// When waiting datagrams time out: at the capture clock's ticks (where the
/// largest timestamp so far enters a new second), each at its place among
/// the fragments, as the flow table's clock moves; so what times out does
/// not depend on chunk boundaries or the number of decoders.
struct Expiry {
    /// The clock's tick period so far.
    tick: i64,
    /// The chunk's ticks gone through.
    next: usize,
}

impl Expiry {
    /// Moves through the chunk's ticks before packet `at` (all: `u32::MAX`),
    /// expiring datagrams at each that starts a new period.
    fn expire_before(&mut self, defrag: &mut Defrag, chunk: &DecodedChunk, at: u32) {
        while let Some(&(i, ts)) = chunk.ticks.get(self.next) {
            if i >= at {
                break;
            }
            self.next += 1;
            let t = ts.div_euclid(TICK_US);
            if t > self.tick {
                self.tick = t;
                if !defrag.is_empty() {
                    defrag.expire(ts);
                }
            }
        }
    }
}

/// A shard's part of a chunk with reassembled datagrams among its records,
/// each at the place of the fragment that completed it.
#[derive(Default)]
struct Merged {
    recs: Vec<PacketRecord>,
    pos: Vec<u32>,
    origins: Vec<u64>,
}

impl Merged {
    /// Fills `self` with shard `shard`'s records of `chunk` and the
    /// datagrams its fragments complete in `defrag`, in chunk order.
    fn build(
        &mut self,
        defrag: &mut Defrag,
        chunk: &DecodedChunk,
        shard: usize,
        clock: &mut Expiry,
    ) {
        let (recs, pos, origins) = chunk.part(shard);
        let numbered = !origins.is_empty();
        self.recs.clear();
        self.pos.clear();
        self.origins.clear();
        let mut r = 0;
        let mut rec = PacketRecord::default();
        for (f, &(s, at, origin)) in chunk.frags.iter().zip(&chunk.frag_at) {
            if s as usize != shard {
                continue;
            }
            clock.expire_before(defrag, chunk, at);
            let upto = r + pos
                .get(r..)
                .unwrap_or_default()
                .partition_point(|&p| p < at);
            self.extend(recs, pos, origins, r..upto);
            r = upto;
            if let Some(first) = defrag.add(f, origin, &mut rec) {
                self.recs.push(rec);
                self.pos.push(at);
                if numbered {
                    self.origins.push(first);
                }
            }
        }
        self.extend(recs, pos, origins, r..recs.len());
    }

    fn extend(
        &mut self,
        recs: &[PacketRecord],
        pos: &[u32],
        origins: &[u64],
        r: std::ops::Range<usize>,
    ) {
        self.recs
            .extend_from_slice(recs.get(r.clone()).unwrap_or_default());
        self.pos
            .extend_from_slice(pos.get(r.clone()).unwrap_or_default());
        self.origins
            .extend_from_slice(origins.get(r).unwrap_or_default());
    }
}

impl Worker {
    /// Worker `shard` over `extractor`, handing flows to `outbox`.
    pub(crate) fn new(
        shard: usize,
        mut extractor: Box<dyn FeatureExtractor>,
        outbox: Outbox,
    ) -> Self {
        if outbox.context && !extractor.track_starts() {
            // The topology runs the stage with CPU features only.
            tracing::error!(
                message = "this feature extractor cannot feed the context stage",
                shard
            );
        }
        let out = outbox.fresh();
        Worker {
            shard,
            extractor,
            outbox,
            out,
            tick: i64::MIN,
            flushed: 0,
            recv_blocked: Duration::ZERO,
            published: ShardStats::default(),
            published_at: Instant::now(),
            emergency: EmergencyWatch::new(shard),
            chunks: 0,
            defrag: None,
            merged: Merged::default(),
        }
    }

    /// Reassembles the shard's fragments with `cfg` (`None`: the decoders
    /// skip fragments).
    pub(crate) fn with_defrag(mut self, cfg: Option<DefragConfig>) -> Self {
        self.defrag = cfg.map(Defrag::new);
        self
    }

    /// Runs until every decoder is done, then ends every flow.
    pub(crate) fn run(mut self, mut inbox: Inbox) -> WorkerOutcome {
        let started = Instant::now();
        // Every reason is served from the start (at 0), so rates exist at once.
        for reason in EndReason::ALL {
            metrics::counter!("tapstream_flows_ended_total", "reason" => reason.as_str())
                .increment(0);
        }
        loop {
            let wait = self.extractor.batched().then_some(GPU_IDLE);
            match inbox.recv(wait, &mut self.recv_blocked) {
                Got::Chunk(chunk) => {
                    self.chunk(&chunk);
                    // Back to its decoder's pool once every worker has
                    // dropped it; then what ended in it goes on at once, so
                    // alerts are not delayed.
                    drop(chunk);
                    self.hand_off_pending();
                    self.observe();
                }
                Got::Idle => {
                    self.with_output(|ex, out| ex.idle(out));
                    self.hand_off_pending();
                }
                Got::Done => break,
            }
        }
        if let Some(d) = &mut self.defrag {
            d.finish();
        }
        self.with_output(|ex, out| ex.flush(out));
        if self.outbox.context {
            self.out.watermark = Some(u64::MAX);
        }
        self.hand_off_pending();
        let stats = self.extractor.stats();
        publish_flow_stats(&mut self.published, &stats);
        self.emergency.observe(&stats, self.extractor.max_flows());
        WorkerOutcome {
            stats,
            busy: started
                .elapsed()
                .saturating_sub(self.recv_blocked)
                .saturating_sub(self.outbox.blocked),
            device_error: self.extractor.error(),
            scoring_error: self.outbox.scoring_error,
            defrag: self.defrag.as_ref().map(Defrag::stats).unwrap_or_default(),
        }
    }

    /// Hands off the batch being filled (nothing when it is empty and has
    /// no mark).
    fn hand_off_pending(&mut self) {
        self.outbox.hand_off(&mut self.out);
    }

    /// Runs `f` on the extractor with the worker's output (full batches are
    /// handed off as they fill).
    fn with_output(&mut self, f: impl FnOnce(&mut dyn FeatureExtractor, &mut Handoff<'_, '_>)) {
        let Worker {
            extractor,
            outbox,
            out,
            ..
        } = self;
        let max_flows = outbox.batch_flows;
        let mut hand_off = |b: &mut FlowBatch| outbox.hand_off(b);
        let mut output: Handoff<'_, '_> = Output {
            batch: out,
            max_flows,
            handoff: &mut hand_off,
        };
        f(extractor.as_mut(), &mut output);
    }

    /// Processes the shard's part of one decoded chunk.
    fn chunk(&mut self, chunk: &DecodedChunk) {
        let shard = self.shard;
        let mut merged = std::mem::take(&mut self.merged);
        let mut oldest_fragment = None;
        let (recs, pos, origins) = match &mut self.defrag {
            Some(d) => {
                let mut clock = Expiry {
                    tick: self.tick,
                    next: 0,
                };
                let mine = chunk.frag_at.iter().any(|&(s, _, _)| s as usize == shard);
                let part = if !mine {
                    chunk.part(shard)
                } else {
                    merged.build(d, chunk, shard, &mut clock);
                    (&merged.recs[..], &merged.pos[..], &merged.origins[..])
                };
                clock.expire_before(d, chunk, u32::MAX);
                part
            }
            None => chunk.part(shard),
        };
        if let Some(d) = self.defrag.as_ref().filter(|_| chunk.numbering.is_some()) {
            oldest_fragment = d.oldest_origin();
        }
        let mut tick = self.tick;
        let mut flushed = self.flushed;
        let context = self.outbox.context.then_some(self.chunks);
        self.with_output(|ex, out| {
            let mut done = 0;
            for &(at, ts) in &chunk.ticks {
                let t = ts.div_euclid(TICK_US);
                if t <= tick {
                    continue;
                }
                tick = t;
                // The shard's packets up to the one that moved the clock,
                // then the clock.
                let upto = pos.partition_point(|&p| p <= at);
                process(ex, recs, origins, done..upto, out);
                take_starts(ex, context, pos, done, out);
                done = done.max(upto);
                ex.advance(ts, out);
            }
            process(ex, recs, origins, done..recs.len(), out);
            take_starts(ex, context, pos, done, out);
            if let Some(seq) = context {
                out.batch.watermark = Some(seq + 1);
            }
            if let Some((complete_below, flush)) = chunk.numbering {
                // Input behind a waiting fragment is not settled yet.
                let complete_below =
                    oldest_fragment.map_or(complete_below, |o| o.min(complete_below));
                let mark = ex.mark(shard as u32, complete_below, flush, &mut flushed, out);
                out.batch.mark = Some(mark);
            }
        });
        self.tick = tick;
        self.flushed = flushed;
        self.chunks += 1;
        metrics::counter!("tapstream_packets_processed_total").increment(recs.len() as u64);
        self.merged = merged;
    }

    /// Keeps the emergency-mode log and the flow metrics current.
    fn observe(&mut self) {
        let stats = self.extractor.stats();
        self.emergency.observe(&stats, self.extractor.max_flows());
        if self.published_at.elapsed() >= PUBLISH_EVERY {
            self.published_at = Instant::now();
            publish_flow_stats(&mut self.published, &stats);
        }
    }
}

/// Processes `recs[range]`, with their origins when the input is numbered
/// (`origins` is then beside `recs`; empty otherwise).
/// With the context stage on (`chunk` is the input chunk's number), moves
/// the starts `process` just recorded into the batch, each ordered by its
/// first packet's place in the input: `pos[from + i]` in chunk `chunk`.
fn take_starts(
    ex: &mut dyn FeatureExtractor,
    chunk: Option<u64>,
    pos: &[u32],
    from: usize,
    out: &mut Handoff<'_, '_>,
) {
    let Some(chunk) = chunk else {
        return;
    };
    let order = |i: u32| {
        let p = pos.get(from + i as usize).copied().unwrap_or(u32::MAX);
        (chunk << 32) | u64::from(p)
    };
    ex.take_starts(&order, &mut out.batch.starts);
}

fn process(
    ex: &mut dyn FeatureExtractor,
    recs: &[PacketRecord],
    origins: &[u64],
    range: std::ops::Range<usize>,
    out: &mut Handoff<'_, '_>,
) {
    let part = recs.get(range.clone()).unwrap_or_default();
    if origins.is_empty() {
        ex.process(part, out);
    } else {
        ex.process_numbered(part, origins.get(range).unwrap_or_default(), out);
    }
}

/// Adds what changed since `published` to the flow metrics (each worker its
/// own share; the active-flow gauge moves by this shard's change).
pub(crate) fn publish_flow_stats(published: &mut ShardStats, now: &ShardStats) {
    for (k, reason) in tapstream_ingest::EndReason::ALL.iter().enumerate() {
        let (Some(&a), Some(&b)) = (published.ended.get(k), now.ended.get(k)) else {
            continue;
        };
        if b > a {
            metrics::counter!("tapstream_flows_ended_total", "reason" => reason.as_str())
                .increment(b - a);
        }
    }
    metrics::counter!("tapstream_flows_evicted_total")
        .increment(now.evictions.saturating_sub(published.evictions));
    metrics::counter!("tapstream_flows_created_total")
        .increment(now.flows_created.saturating_sub(published.flows_created));
    metrics::gauge!("tapstream_flows_active")
        .increment(now.active_flows as f64 - published.active_flows as f64);
    *published = *now;
}

/// Logs a shard's emergency-mode transitions once each and keeps their
/// metrics current; called after every chunk (a comparison of two
/// counters when nothing changed).
struct EmergencyWatch {
    shard: usize,
    entries: u64,
    exits: u64,
    active: bool,
}

impl EmergencyWatch {
    fn new(shard: usize) -> Self {
        metrics::counter!("tapstream_flow_emergency_total").increment(0);
        metrics::gauge!("tapstream_flow_emergency_active").increment(0.0);
        EmergencyWatch {
            shard,
            entries: 0,
            exits: 0,
            active: false,
        }
    }

    fn observe(&mut self, s: &ShardStats, max_flows: usize) {
        if s.emergency_entries == self.entries && s.emergency_exits == self.exits {
            return;
        }
        let entered = s.emergency_entries - self.entries;
        let left = s.emergency_exits - self.exits;
        if entered > 0 {
            metrics::counter!("tapstream_flow_emergency_total").increment(entered);
            tracing::warn!(
                message = "flow table full: emergency mode (shorter timeouts, unanswered flows evicted first)",
                shard = self.shard,
                flows = s.active_flows,
                max_flows,
                times = entered,
                total = s.emergency_entries,
            );
        }
        if left > 0 {
            tracing::info!(
                message = "flow table recovered: emergency mode over",
                shard = self.shard,
                flows = s.active_flows,
                max_flows,
                times = left,
                evictions = s.evictions,
            );
        }
        let active = s.emergency_active > 0;
        if active != self.active {
            metrics::gauge!("tapstream_flow_emergency_active").increment(if active {
                1.0
            } else {
                -1.0
            });
        }
        self.entries = s.emergency_entries;
        self.exits = s.emergency_exits;
        self.active = active;
    }
}
