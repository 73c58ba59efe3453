//! The source's state between polls: messages numbered, packets waiting in
//! per-partition queues to be released in capture-time order, offsets to
//! commit, and flushes. Shared with the rebalance callback (which runs on the
//! reader thread, inside `poll`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{Headers, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use tapstream_connectors::kafka::flows::{Decoded as RowDecoded, FlowDecoder};
use tapstream_connectors::kafka::packets::{self, Message};
use tapstream_connectors::kafka::SourceSettings;
use tapstream_ingest::capture::RawPacket;
use tapstream_ingest::skip::SkipReason;
use tapstream_ingest::source::{ChunkWriter, KafkaReport, Progress, ReadMeter};
use tapstream_ingest::SourceReport;
use tapstream_kernels::{FlowWriter, Settled};

use super::offsets::Offsets;

/// The reader's state, shared with the rebalance callback (which runs on
/// the reader thread, inside `poll`).
pub(super) struct ReaderState {
    pub(super) out: Out,
    /// Decoder of `flows` messages.
    rows: FlowDecoder,
    row: [f64; tapstream_kernels::schema::NUM_FEATURES],
    offsets: Offsets,
    pub(super) settled: Arc<Settled>,
    /// Flush requests sent so far.
    flushes: u64,
    flush_timeout: Duration,
    pub(super) report: SourceReport,
    pub(super) kafka: KafkaReport,
    /// Publishes the packets read (metrics, progress).
    meter: ReadMeter,
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
pub(super) enum Out {
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

    /// Sends what is due; false once the pipeline takes no more.
    pub(super) fn poll(&mut self) -> bool {
        match self {
            Out::Packets(w) => w.poll(),
            Out::Flows(w) => w.poll(),
        }
    }

    /// Whether the pipeline failed downstream.
    pub(super) fn stopped(&self) -> bool {
        match self {
            Out::Packets(w) => w.stopped(),
            Out::Flows(w) => w.stopped(),
        }
    }

    fn progress(&self) -> &Progress {
        match self {
            Out::Packets(w) => w.progress(),
            Out::Flows(w) => w.progress(),
        }
    }

    /// Ends the output; returns the time spent waiting on the queues.
    pub(super) fn finish(self) -> Duration {
        match self {
            Out::Packets(w) => w.finish(),
            Out::Flows(w) => w.finish(),
        }
    }

    fn flush(&mut self, id: u64) -> bool {
        match self {
            Out::Packets(w) => w.flush(id),
            Out::Flows(w) => w.flush(id),
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
    /// A fresh state for a run of `settings` handing input to `out`.
    pub(super) fn new(out: Out, settings: &SourceSettings, settled: Arc<Settled>) -> Self {
        let rows = match &settings.csv_header {
            Some(h) => FlowDecoder::with_csv_header(h).unwrap_or_default(),
            None => FlowDecoder::new(),
        };
        ReaderState {
            out,
            rows,
            row: [0.0; tapstream_kernels::schema::NUM_FEATURES],
            offsets: Offsets::default(),
            settled,
            flushes: 0,
            flush_timeout: settings.flush_timeout,
            report: SourceReport::default(),
            kafka: KafkaReport::default(),
            meter: ReadMeter::default(),
            warned: 0,
            parts: BTreeMap::new(),
            spare: Vec::new(),
            queued_bytes: 0,
            order_wait: settings.order_wait,
            order_buffer: settings.order_buffer_mib.saturating_mul(1 << 20),
        }
    }

    /// Forgets the revoked partitions' queues and offsets.
    pub(super) fn revoked(&mut self) {
        self.offsets.clear();
        self.parts.clear();
    }

    /// Numbers a message and hands its packets on.
    pub(super) fn take(&mut self, msg: &rdkafka::message::BorrowedMessage<'_>, s: &SourceSettings) {
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
            self.publish();
            return;
        }
        let mut q = self.spare.pop().unwrap_or_default();
        q.origin = origin;
        q.data.clear();
        q.pkts.clear();
        q.next = 0;
        let ReaderState { report, .. } = self;
        let (got, err) = packets::decode(&m, s.encoding, s.link_type, |p| {
            report.packets += 1;
            report.bytes += u64::from(p.orig_len);
            let start = q.data.len();
            q.data.extend_from_slice(p.data);
            q.pkts
                .push((p.ts_us, p.link_type, p.orig_len, start, q.data.len()));
        });
        for _ in 0..got.truncated {
            report.packets += 1;
            report.skipped.add(SkipReason::TruncatedRecord);
        }
        self.publish();
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

    /// Publishes what was read so far: the packets (metrics, progress) and
    /// the message bytes consumed (progress).
    fn publish(&mut self) {
        let progress = self.out.progress();
        progress.bytes.store(self.kafka.bytes, Ordering::Relaxed);
        self.meter.publish(&self.report, progress);
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
    pub(super) fn release(&mut self, all: bool) {
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
            out.push_numbered(&pkt, origin);
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
    pub(super) fn assigned(&mut self, parts: &[(String, i32)]) {
        let now = Instant::now();
        for key in parts {
            self.parts.entry(key.clone()).or_insert_with(|| Part {
                queue: VecDeque::new(),
                empty_since: now,
            });
        }
    }

    /// Commits the offsets of messages with origins below `safe`.
    pub(super) fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        safe: u64,
    ) -> bool {
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
    pub(super) fn flush(&mut self) -> Option<u64> {
        self.release(true);
        self.flushes += 1;
        let id = self.flushes;
        if !self.out.flush(id) {
            return None;
        }

        let r = self
            .settled
            .wait_flushed(id, self.flush_timeout, || self.out.stopped());
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
    pub(super) fn flush_and_commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        if let Some(safe) = self.flush() {
            self.commit(consumer, safe);
        }
    }
}
