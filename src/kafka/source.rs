//! The Kafka source: packets from topics, read as a member of a consumer
//! group, with offsets committed only for settled messages.
//!
//! Why it is built this way: Kafka is tapstream's scale-out story, so the
//! source must let instances come and go without losing an alert. Each
//! message gets an *origin* number ([`Offsets`]); workers report, after
//! each chunk, the oldest origin an open flow started in; the alert stage
//! passes those marks on only once the alerts before them are acknowledged
//! ([`Settled`]). A commit therefore never covers a message whose flows are
//! still open or whose alerts are not durable (at-least-once; alerts carry
//! a stable `flow_id` so duplicates can be recognised downstream).
//!
//! Partitions are read in time order: each message's packets wait in a
//! queue per partition, and the packet with the earliest capture time goes
//! first. A partition with nothing queued holds the others back for at most
//! `order_wait` (or until `order_buffer` bytes are queued). Flow timeouts
//! run on packet time, so without this a partition fetched ahead of the
//! others would time out the flows of those behind it; with it, one
//! consumer that owns every partition sees the capture in its own order.
//!
//! On partition revocation and on shutdown (SIGTERM, SIGINT, or
//! `exit_after_idle`), every flow is ended and flushed, its alerts
//! delivered, and the offsets committed as they stood *before* that flush:
//! the next owner reads the still-open flows again from their first packet
//! and scores them whole (their early, flushed alerts share the flow's
//! `flow_id`). The eager rebalance protocol is used (every rebalance
//! revokes every partition), so "the flows of the revoked partitions" is
//! every flow.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Headers, Message as _};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tapstream_ingest::capture::RawPacket;
use tapstream_ingest::skip::SkipReason;

use super::offsets::Offsets;
use super::packets::{self, Message};
use super::Settled;
use crate::config::{Config, KafkaFormat, KafkaSourceSection};
use crate::kafka::flows::{Decoded as RowDecoded, FlowDecoder};
use crate::pipeline::FlowWriter;
use crate::pipeline::{ChunkWriter, Progress, ReaderReport};
use tapstream_connectors::kafka::Forced;

/// Properties the source owns: changing them would break its offset and
/// rebalance logic.
pub const FORCED: &[Forced<'static>] = &[
    Forced {
        name: "enable.auto.commit",
        value: "false",
        purpose: "offsets committed only for settled messages",
    },
    Forced {
        name: "enable.auto.offset.store",
        value: "false",
        purpose: "offsets committed only for settled messages",
    },
    Forced {
        name: "partition.assignment.strategy",
        value: "range,roundrobin",
        purpose: "an eager rebalance, which revokes every partition and so ends every flow",
    },
];

/// Quiet time after which the source says it has caught up (logged, info).
const CAUGHT_UP: Duration = Duration::from_secs(1);

/// Defaults a user may override in `[kafka.properties]`.
const DEFAULTS: &[(&str, &str)] = &[
    ("auto.offset.reset", "earliest"),
    ("statistics.interval.ms", "5000"),
];

/// What the Kafka source counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KafkaReport {
    /// Messages read.
    pub messages: u64,
    /// Message value bytes read.
    pub bytes: u64,
    /// Messages that could not be read whole (their readable packets were
    /// kept).
    pub malformed: u64,
    /// Successful offset commits.
    pub commits: u64,
    /// Failed offset commits (the offsets are committed later, or the
    /// messages are read again).
    pub commit_errors: u64,
    /// Partition revocations handled.
    pub revocations: u64,
    /// Revocations or shutdowns whose flows were not settled in time (their
    /// offsets were left uncommitted).
    pub unsettled_flushes: u64,
    /// Messages not yet read (high watermark minus the next to read),
    /// summed over the assigned partitions at the last statistics report
    /// (-1 before any).
    pub lag: i64,
}

/// The source, subscribed and ready to run.
pub struct KafkaSource {
    consumer: BaseConsumer<SourceContext>,
    settings: KafkaSourceSection,
    settled: Arc<Settled>,
    term: Arc<AtomicBool>,
}

impl KafkaSource {
    /// Connects and subscribes. `settled` must be the alert stage's, and
    /// `term` is set by the caller's SIGTERM/SIGINT handler.
    pub fn new(cfg: &Config, settled: Arc<Settled>, term: Arc<AtomicBool>) -> Result<Self> {
        let s = &cfg.source.kafka;
        let mut c = cfg
            .kafka_client()?
            .client_config(DEFAULTS, FORCED)
            .context("Kafka client settings")?;
        c.set("group.id", &s.group_id);
        let ctx = SourceContext {
            state: Mutex::new(None),
            closing: AtomicBool::new(false),
            assigned: AtomicBool::new(false),
            lag: AtomicI64::new(-1),
        };
        let consumer: BaseConsumer<SourceContext> = c
            .create_with_context(ctx)
            .context("creating the Kafka consumer")?;
        let topics: Vec<&str> = s.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .with_context(|| format!("subscribing to {}", s.topics.join(", ")))?;
        Ok(KafkaSource {
            consumer,
            settings: s.clone(),
            settled,
            term,
        })
    }

    /// What the run reads, for summaries.
    pub fn describe(&self) -> String {
        format!(
            "kafka:{} (group {})",
            self.settings.topics.join(","),
            self.settings.group_id
        )
    }

    /// True for the `flows` format (rows, not packets).
    pub fn is_flows(&self) -> bool {
        self.settings.format == KafkaFormat::Flows
    }

    /// Reads until SIGTERM/SIGINT, `exit_after_idle`, or the pipeline
    /// stopping; hands packets to `out`. Runs on the reader thread.
    pub(crate) fn run(
        self,
        out: ChunkWriter,
        progress: &Progress,
        stop: &Arc<AtomicBool>,
    ) -> ReaderReport {
        self.run_with(Out::Packets(out), progress, stop)
    }

    /// Like [`run`](Self::run) for the `flows` format: rows go to `out`.
    pub(crate) fn run_flows(
        self,
        out: FlowWriter,
        progress: &Progress,
        stop: &Arc<AtomicBool>,
    ) -> ReaderReport {
        self.run_with(Out::Flows(out), progress, stop)
    }

    fn run_with(self, out: Out, progress: &Progress, stop: &Arc<AtomicBool>) -> ReaderReport {
        let started = Instant::now();
        let KafkaSource {
            consumer,
            settings,
            settled,
            term,
        } = self;
        let rows = match &settings.csv_header {
            Some(h) => FlowDecoder::with_csv_header(h).unwrap_or_default(),
            None => FlowDecoder::new(),
        };
        *lock(&consumer.context().state) = Some(ReaderState {
            out,
            rows,
            row: [0.0; tapstream_kernels::schema::NUM_FEATURES],
            offsets: Offsets::default(),
            settled,
            flushes: 0,
            flush_timeout: settings.flush_timeout,
            stop: stop.clone(),
            report: ReaderReport::default(),
            kafka: KafkaReport::default(),
            warned: 0,
            parts: BTreeMap::new(),
            spare: Vec::new(),
            queued_bytes: 0,
            order_wait: settings.order_wait,
            order_buffer: settings.order_buffer_mib.saturating_mul(1 << 20),
        });
        let mut last_commit = Instant::now();
        let mut last_message = Instant::now();
        let mut shutdown = false;
        let mut ever_assigned = false;
        // Messages read since "caught up" was last said.
        let mut unreported = false;
        let mut poll_errors = 0u64;
        loop {
            if stop.load(Ordering::Relaxed) {
                // Output failed: stop without committing more.
                break;
            }
            if term.load(Ordering::Relaxed) {
                tracing::info!("stopping: ending flows and committing settled offsets");
                shutdown = true;
                break;
            }
            if consumer.context().assigned.swap(false, Ordering::Relaxed) {
                // Joining the group takes a while: idle time counts from the
                // first assignment, then from the last assignment or message.
                last_message = Instant::now();
                ever_assigned = true;
            }
            if let Some(idle) = settings.exit_after_idle.filter(|_| ever_assigned) {
                if last_message.elapsed() >= idle {
                    tracing::info!(
                        message = "no message for exit_after_idle; stopping",
                        idle = ?idle
                    );
                    shutdown = true;
                    break;
                }
            }
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(e)) => {
                    poll_errors += 1;
                    if poll_errors <= 10 || poll_errors.is_power_of_two() {
                        tracing::warn!(message = "Kafka consumer error", error = %e, count = poll_errors);
                    }
                }
                Some(Ok(msg)) => {
                    last_message = Instant::now();
                    unreported = true;
                    let mut g = lock(&consumer.context().state);
                    if let Some(st) = g.as_mut() {
                        st.take(&msg, &settings);
                        progress.packets.store(st.report.packets, Ordering::Relaxed);
                        progress.bytes.store(st.kafka.bytes, Ordering::Relaxed);
                    }
                }
            }
            let mut g = lock(&consumer.context().state);
            let Some(st) = g.as_mut() else { break };
            st.release(false);
            if unreported && last_message.elapsed() >= CAUGHT_UP {
                unreported = false;
                tracing::info!(
                    message = "caught up",
                    messages = st.kafka.messages,
                    packets = st.report.packets
                );
            }
            if !st.out.send_if_due() {
                break;
            }
            if last_commit.elapsed() >= settings.commit_interval {
                last_commit = Instant::now();
                let safe = st.settled.safe();
                st.commit(&consumer, safe);
            }
        }
        let mut state = lock(&consumer.context().state).take();
        if let (true, Some(st)) = (shutdown, state.as_mut()) {
            st.flush_and_commit(&consumer);
        }
        consumer.context().closing.store(true, Ordering::Relaxed);
        let lag = consumer.context().lag.load(Ordering::Relaxed);
        // Leaving the group: the consumer is dropped (and closed) before the
        // chunk writer, whose drop lets the pipeline drain.
        drop(consumer);
        let Some(st) = state else {
            return ReaderReport::default();
        };
        let ReaderState {
            out,
            mut report,
            mut kafka,
            ..
        } = st;
        kafka.lag = lag;
        report.busy = started.elapsed().saturating_sub(out.blocked());
        report.kafka = Some(kafka);
        drop(out);
        report
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The reader's state, shared with the rebalance callback (which runs on
/// the reader thread, inside `poll`).
struct ReaderState {
    out: Out,
    /// Decoder of `flows` messages.
    rows: FlowDecoder,
    row: [f64; tapstream_kernels::schema::NUM_FEATURES],
    offsets: Offsets,
    settled: Arc<Settled>,
    /// Flush requests sent so far.
    flushes: u64,
    flush_timeout: Duration,
    stop: Arc<AtomicBool>,
    report: ReaderReport,
    kafka: KafkaReport,
    /// Malformed-message warnings logged (the first few, then powers of two).
    warned: u64,
    /// Packets waiting to be released in time order, per partition.
    parts: BTreeMap<(String, i32), Part>,
    /// Emptied messages, for reuse.
    spare: Vec<Queued>,
    /// Packet bytes queued in `parts`.
    queued_bytes: usize,
    order_wait: Duration,
    order_buffer: usize,
}

/// Where the source's input goes.
enum Out {
    /// Packets, to the decoders and flow workers.
    Packets(ChunkWriter),
    /// Flow rows, to the consumer.
    Flows(FlowWriter),
}

impl Out {
    fn chunk_number(&self) -> u64 {
        match self {
            Out::Packets(w) => w.chunk_number(),
            Out::Flows(w) => w.chunk_number(),
        }
    }

    fn send_if_due(&mut self) -> bool {
        match self {
            Out::Packets(w) => w.send_if_due(),
            Out::Flows(w) => w.send_if_due(),
        }
    }

    fn flush(&mut self, id: u64) -> bool {
        match self {
            Out::Packets(w) => w.flush(id),
            Out::Flows(w) => w.flush(id),
        }
    }

    fn blocked(&self) -> Duration {
        match self {
            Out::Packets(w) => w.blocked,
            Out::Flows(w) => w.blocked,
        }
    }
}

/// One partition's queue.
struct Part {
    queue: VecDeque<Queued>,
    /// When the queue last became empty (or the partition was assigned).
    empty_since: Instant,
}

/// A message's packets, waiting to be released.
#[derive(Default)]
struct Queued {
    origin: u64,
    data: Vec<u8>,
    /// `(ts_us, link_type, orig_len, start, end)` of each packet.
    pkts: Vec<(i64, u32, u32, usize, usize)>,
    /// The next packet to release.
    next: usize,
}

impl Queued {
    fn head_ts(&self) -> Option<i64> {
        self.pkts.get(self.next).map(|p| p.0)
    }
}

impl ReaderState {
    /// Numbers a message and hands its packets on.
    fn take(&mut self, msg: &rdkafka::message::BorrowedMessage<'_>, s: &KafkaSourceSection) {
        let origin = self.offsets.record(
            msg.topic(),
            msg.partition(),
            msg.offset(),
            self.out.chunk_number(),
        );
        let payload = msg.payload();
        let len = payload.map_or(0, <[u8]>::len) as u64;
        self.kafka.messages += 1;
        self.kafka.bytes += len;
        metrics::counter!("tapstream_kafka_messages_consumed_total").increment(1);
        metrics::counter!("tapstream_kafka_bytes_consumed_total").increment(len);
        let header = |name: &str| {
            msg.headers()
                .and_then(|h| h.iter().find(|x| x.key == name).and_then(|x| x.value))
        };
        let m = Message {
            payload,
            timestamp_ms: msg.timestamp().to_millis(),
            ts_us: header("ts_us"),
            linktype: header("linktype"),
            orig_len: header("orig_len"),
        };
        if let Out::Flows(out) = &mut self.out {
            let bad = match self.rows.decode(payload.unwrap_or_default(), &mut self.row) {
                Ok(RowDecoded::Row(meta)) => {
                    out.push(meta, &self.row);
                    None
                }
                Ok(RowDecoded::Header) => None,
                Err(e) => Some(e),
            };
            out.complete_below(origin + 1);
            if let Some(e) = bad {
                self.malformed(msg, &e);
            }
            return;
        }
        let mut q = self.spare.pop().unwrap_or_default();
        q.origin = origin;
        q.data.clear();
        q.pkts.clear();
        q.next = 0;
        let ReaderState { report, .. } = self;
        let mut wire = 0u64;
        let (got, err) = packets::decode(&m, s.encoding, s.link_type, |p| {
            report.packets += 1;
            report.bytes += u64::from(p.orig_len);
            wire += u64::from(p.orig_len);
            let start = q.data.len();
            q.data.extend_from_slice(p.data);
            q.pkts
                .push((p.ts_us, p.link_type, p.orig_len, start, q.data.len()));
        });
        for _ in 0..got.truncated {
            report.packets += 1;
            report.skipped.add(SkipReason::TruncatedRecord);
        }
        metrics::counter!("tapstream_packets_read_total").increment(got.packets + got.truncated);
        metrics::counter!("tapstream_bytes_read_total").increment(wire);
        if let Some(e) = err {
            self.malformed(msg, &e);
        }
        let part = self
            .parts
            .entry((msg.topic().to_owned(), msg.partition()))
            .or_insert_with(|| Part {
                queue: VecDeque::new(),
                empty_since: Instant::now(),
            });
        if q.pkts.is_empty() {
            self.spare.push(q);
        } else {
            self.queued_bytes += q.data.len();
            part.queue.push_back(q);
        }
        self.release(false);
    }

    /// Counts a malformed message and logs the first few (then powers of
    /// two).
    fn malformed(
        &mut self,
        msg: &rdkafka::message::BorrowedMessage<'_>,
        e: &dyn std::fmt::Display,
    ) {
        self.kafka.malformed += 1;
        metrics::counter!("tapstream_kafka_malformed_messages_total").increment(1);
        self.warned += 1;
        if self.warned <= 10 || self.warned.is_power_of_two() {
            tracing::warn!(
                message = "malformed Kafka message (whatever it held that could be read was kept)",
                topic = msg.topic(),
                partition = msg.partition(),
                offset = msg.offset(),
                error = %e,
                malformed = self.kafka.malformed,
            );
        }
    }

    /// Hands queued packets on, earliest capture time first, while no
    /// partition that might still deliver earlier ones is empty (`all`:
    /// everything, whatever is empty).
    fn release(&mut self, all: bool) {
        let Out::Packets(out) = &mut self.out else {
            return;
        };
        let now = Instant::now();
        loop {
            let mut best: Option<(i64, &(String, i32))> = None;
            let mut waiting = false;
            for (key, part) in &self.parts {
                match part.queue.front().and_then(Queued::head_ts) {
                    Some(ts) => {
                        if best.is_none_or(|(b, _)| ts < b) {
                            best = Some((ts, key));
                        }
                    }
                    None => {
                        waiting |= now.duration_since(part.empty_since) < self.order_wait;
                    }
                }
            }
            if waiting && !all && self.queued_bytes < self.order_buffer {
                break;
            }
            let Some((_, key)) = best else { break };
            let key = key.clone();
            let Some(part) = self.parts.get_mut(&key) else {
                break;
            };
            let Some(q) = part.queue.front_mut() else {
                break;
            };
            let Some(&(ts_us, link_type, orig_len, start, end)) = q.pkts.get(q.next) else {
                break;
            };
            q.next += 1;
            let pkt = RawPacket {
                ts_us,
                link_type,
                orig_len,
                data: q.data.get(start..end).unwrap_or_default(),
            };
            let origin = q.origin;
            out.push(&pkt, origin);
            if q.next >= q.pkts.len() {
                if let Some(done) = part.queue.pop_front() {
                    self.queued_bytes = self.queued_bytes.saturating_sub(done.data.len());
                    self.spare.push(done);
                }
                if part.queue.is_empty() {
                    part.empty_since = now;
                }
            }
        }
        // Messages below the oldest one still queued are wholly handed on.
        let oldest = self
            .parts
            .values()
            .filter_map(|p| p.queue.front().map(|q| q.origin))
            .min()
            .unwrap_or_else(|| self.offsets.next_origin());
        out.complete_below(oldest);
    }

    /// Starts every assigned partition's wait afresh (none has queued
    /// anything yet).
    fn assigned(&mut self, parts: &[(String, i32)]) {
        let now = Instant::now();
        for key in parts {
            self.parts.entry(key.clone()).or_insert_with(|| Part {
                queue: VecDeque::new(),
                empty_since: now,
            });
        }
    }

    /// Commits the offsets of messages with origins below `safe`.
    fn commit(&mut self, consumer: &BaseConsumer<SourceContext>, safe: u64) -> bool {
        let due = self.offsets.due(safe);
        if due.is_empty() {
            return true;
        }
        let mut tpl = TopicPartitionList::new();
        for (t, p, o) in &due {
            if let Err(e) = tpl.add_partition_offset(t, *p, Offset::Offset(*o)) {
                tracing::warn!(message = "bad offset to commit", topic = %t, partition = p, offset = o, error = %e);
            }
        }
        let r = consumer.commit(&tpl, CommitMode::Sync);
        drop(tpl);
        match r {
            Ok(()) => {
                self.offsets.committed(&due);
                self.kafka.commits += 1;
                metrics::counter!("tapstream_kafka_commits_total").increment(1);
                tracing::debug!(message = "offsets committed", partitions = due.len());
                true
            }
            Err(e) => {
                self.kafka.commit_errors += 1;
                metrics::counter!("tapstream_kafka_commit_errors_total").increment(1);
                tracing::warn!(message = "offset commit failed", error = %e);
                false
            }
        }
    }

    /// Ends every flow and waits until the alerts are acknowledged; returns
    /// what was settled just before the flush (`None` if that took longer
    /// than `flush_timeout` or the pipeline stopped).
    fn flush(&mut self) -> Option<u64> {
        self.release(true);
        self.flushes += 1;
        let id = self.flushes;
        if !self.out.flush(id) {
            return None;
        }
        let stop = self.stop.clone();
        let r = self
            .settled
            .wait_flushed(id, self.flush_timeout, || stop.load(Ordering::Relaxed));
        if r.is_none() {
            self.kafka.unsettled_flushes += 1;
            tracing::warn!(
                message = "flows ended by a flush were not settled in time; their offsets stay uncommitted",
                timeout = ?self.flush_timeout
            );
        }
        r
    }

    /// Flush, then commit what was settled before it.
    fn flush_and_commit(&mut self, consumer: &BaseConsumer<SourceContext>) {
        if let Some(safe) = self.flush() {
            self.commit(consumer, safe);
        }
    }
}

/// The consumer's context: rebalance handling and statistics.
struct SourceContext {
    state: Mutex<Option<ReaderState>>,
    /// Set once the reader is done: a revocation while closing only leaves.
    closing: AtomicBool,
    /// Set on each assignment (the idle clock restarts then).
    assigned: AtomicBool,
    /// Read lag summed over the assigned partitions, from the last
    /// statistics report.
    lag: AtomicI64,
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        let mut total = 0i64;
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1: the internal "unassigned" partition, or not known yet.
                if *partition < 0 || p.hi_offset < 0 {
                    continue;
                }
                let labels = [
                    ("topic", topic.clone()),
                    ("partition", partition.to_string()),
                ];
                if p.app_offset >= 0 {
                    let read = (p.hi_offset - p.app_offset).max(0);
                    total += read;
                    metrics::gauge!("tapstream_kafka_read_lag_messages", &labels).set(read as f64);
                }
                // Before any commit, a restart reads from the log start.
                let from = if p.committed_offset >= 0 {
                    p.committed_offset
                } else {
                    p.lo_offset
                };
                if from >= 0 {
                    let commit = (p.hi_offset - from).max(0);
                    metrics::gauge!("tapstream_kafka_commit_lag_messages", &labels)
                        .set(commit as f64);
                }
            }
        }
        self.lag.store(total, Ordering::Relaxed);
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                if self.closing.load(Ordering::Relaxed) {
                    return;
                }
                let mut g = lock(&self.state);
                let Some(st) = g.as_mut() else { return };
                st.kafka.revocations += 1;
                metrics::counter!("tapstream_kafka_rebalances_total").increment(1);
                let lost = consumer.assignment_lost();
                tracing::info!(
                    message = "partitions revoked: ending flows, delivering alerts, committing",
                    partitions = tpl.count(),
                    lost
                );
                if lost {
                    // Another member owns them already: commits would be
                    // refused. The flows' alerts still go out.
                    let _ = st.flush();
                } else {
                    st.flush_and_commit(consumer);
                }
                st.offsets.clear();
                st.parts.clear();
            }
            Rebalance::Assign(tpl) => {
                let parts: Vec<String> = tpl
                    .elements()
                    .iter()
                    .map(|e| format!("{}/{}", e.topic(), e.partition()))
                    .collect();
                tracing::info!(message = "partitions assigned", partitions = %parts.join(" "));
                self.assigned.store(true, Ordering::Relaxed);
                if let Some(st) = lock(&self.state).as_mut() {
                    let keys: Vec<(String, i32)> = tpl
                        .elements()
                        .iter()
                        .map(|e| (e.topic().to_owned(), e.partition()))
                        .collect();
                    st.assigned(&keys);
                }
            }
            Rebalance::Error(e) => {
                tracing::warn!(message = "rebalance error", error = %e);
            }
        }
    }
}
