//! The stage threads of a run and the bounded queues between them.
//!
//! ```text
//! reader ──RawChunk i──▶ decoder i mod D ──DecodedChunk i──▶ worker 0..N ──FlowBatch──▶ consumer
//! (read, copy            (decode, count     (to every          (flow table +          (inference →
//!  packets into           skips, group       worker)            CPU features,          alert sink,
//!  chunks)                by flow hash)                         one shard)             or CSV export)
//! ```
//!
//! The reader only reads: it copies packets into chunks and deals chunk i to
//! decoder i mod D. Each decoder sends every chunk it decodes to every
//! worker, and a worker takes chunk i from decoder i mod D, so it sees its
//! records in capture order whatever D is. A shard's packet clock moves to
//! the capture's (the largest timestamp decoded so far) each time that
//! enters a new second, at that packet's place in the capture, so idle
//! shards still sweep their timed-out flows. The flows a shard ends, their
//! order and their features therefore depend only on the capture and the
//! number of workers: not on D, chunk boundaries or timing.
//!
//! Every queue is a bounded crossbeam channel and every chunk comes back
//! through a pool, so memory is bounded and the steady state allocates only
//! a small shared handle per chunk. Offline input never drops: when a worker
//! falls behind, the decoders wait for free chunks and then the reader does.
//! Each stage measures the time it spends blocked on its queues, so the
//! summary can report per-stage busy rates.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use tapstream_ingest::capture::{CaptureError, CaptureReader, RawPacket};
use tapstream_ingest::decode::decode;
use tapstream_ingest::flow::FlowConfig;
use tapstream_ingest::skip::{SkipCounters, SkipReason};
use tapstream_ingest::PacketRecord;
use tapstream_kernels::shard::{Output, ShardProcessor, ShardStats};
use tapstream_kernels::{FlowBatch, Mark};

use crate::config::Config;
use crate::consumer::{Consumer, ConsumerReport};
use crate::device::{self, Extractor};
use crate::scoring::WorkerScorer;

/// Flow batches in flight per worker between the workers and the consumer.
const FLOW_QUEUE: usize = 16;

/// Packet time per clock tick: shards advance to the capture's clock each
/// time it enters a new tick period.
const TICK_US: i64 = 1_000_000;

/// Wall time after which a partly filled chunk is sent anyway, so a slow
/// trickle of packets is not held back waiting for a chunk to fill.
const FLUSH_WALL: Duration = Duration::from_millis(100);

/// Packets between looks at the wall clock for [`FLUSH_WALL`].
const FLUSH_CHECK: u32 = 64;

/// Packet bytes per chunk at most (unless one packet is larger).
const CHUNK_BYTES: usize = 2 << 20;

/// An item borrowed from a pool; dropping it (also while unwinding) puts it
/// back, so a pool never runs dry while its owner waits on it.
struct Pooled<T: Default> {
    item: T,
    home: Sender<T>,
}

impl<T: Default> Pooled<T> {
    fn new(item: T, home: &Sender<T>) -> Self {
        Pooled {
            item,
            home: home.clone(),
        }
    }
}

impl<T: Default> Deref for Pooled<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.item
    }
}

impl<T: Default> DerefMut for Pooled<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.item
    }
}

impl<T: Default> Drop for Pooled<T> {
    fn drop(&mut self) {
        // Fails only when the pool's owner is gone; then the item is freed.
        let _ = self.home.try_send(std::mem::take(&mut self.item));
    }
}

/// Where one packet of a [`RawChunk`] is, and what `decode` needs besides.
#[derive(Clone, Copy, Debug)]
struct RawDesc {
    ts_us: i64,
    link_type: u32,
    orig_len: u32,
    start: usize,
    end: usize,
    /// The input message the packet came from (tagged input only).
    origin: u64,
}

/// Packets copied out of the capture: their bytes back to back in one
/// buffer, and one descriptor each.
#[derive(Debug, Default)]
pub(crate) struct RawChunk {
    data: Vec<u8>,
    pkts: Vec<RawDesc>,
    /// Set by a source that numbers its messages (Kafka): workers then
    /// track origins and send a [`Mark`] after each chunk.
    tagged: bool,
    /// Every message numbered below this is wholly in this chunk or an
    /// earlier one (tagged input).
    next_origin: u64,
    /// Non-zero: after this chunk's packets, every shard ends all its
    /// flows; the number identifies the request.
    flush: u64,
    /// Non-zero: the wall clock (µs since the epoch) when a live source sent
    /// the chunk; shards move their clock to it after the packets, so idle
    /// flows time out even when no packet arrives.
    clock_us: i64,
}

impl RawChunk {
    fn with_capacity(packets: usize) -> Self {
        RawChunk {
            data: Vec::with_capacity(CHUNK_BYTES),
            pkts: Vec::with_capacity(packets),
            ..RawChunk::default()
        }
    }

    pub(crate) fn push(&mut self, p: &RawPacket<'_>) {
        self.push_from(p, 0);
    }

    /// Packets in the chunk.
    pub(crate) fn len(&self) -> usize {
        self.pkts.len()
    }

    /// Whether the chunk holds no packet.
    pub(crate) fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }

    /// Whether `p` fits without passing [`CHUNK_BYTES`] (an empty chunk
    /// takes any packet).
    pub(crate) fn fits(&self, p: &RawPacket<'_>) -> bool {
        self.pkts.is_empty() || self.data.len().saturating_add(p.data.len()) <= CHUNK_BYTES
    }

    /// Stamps the chunk with the wall clock (see `clock_us`).
    pub(crate) fn set_clock(&mut self, us: i64) {
        self.clock_us = us;
    }

    fn push_from(&mut self, p: &RawPacket<'_>, origin: u64) {
        let start = self.data.len();
        self.data.extend_from_slice(p.data);
        self.pkts.push(RawDesc {
            ts_us: p.ts_us,
            link_type: p.link_type,
            orig_len: p.orig_len,
            start,
            end: self.data.len(),
            origin,
        });
    }

    fn packet(&self, d: &RawDesc) -> Option<RawPacket<'_>> {
        Some(RawPacket {
            ts_us: d.ts_us,
            link_type: d.link_type,
            orig_len: d.orig_len,
            data: self.data.get(d.start..d.end)?,
        })
    }

    /// Empties the chunk, giving back memory a huge packet made it take.
    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.data.shrink_to(CHUNK_BYTES);
        self.pkts.clear();
        self.tagged = false;
        self.next_origin = 0;
        self.flush = 0;
        self.clock_us = 0;
    }
}

/// One chunk decoded, its records grouped by shard; shared by the workers.
#[derive(Debug, Default)]
struct DecodedChunk {
    /// Shard 0's records, then shard 1's, …; each shard's in capture order.
    recs: Vec<PacketRecord>,
    /// Each record's index among the chunk's decoded packets.
    pos: Vec<u32>,
    /// Shard `s` owns `recs[starts[s]..starts[s + 1]]`.
    starts: Vec<usize>,
    /// `(index, ts_us)` of each decoded packet whose timestamp is the
    /// chunk's largest so far and in a later tick period than all before it.
    ticks: Vec<(u32, i64)>,
    /// Tagged input: each record's origin, beside `recs`.
    origins: Vec<u64>,
    /// The raw chunk's `tagged`, `next_origin` and `flush`.
    tagged: bool,
    next_origin: u64,
    flush: u64,
}

impl DecodedChunk {
    /// Shard `s`'s records and their indices.
    fn part(&self, s: usize) -> (&[PacketRecord], &[u32]) {
        let (Some(&lo), Some(&hi)) = (self.starts.get(s), self.starts.get(s + 1)) else {
            return (&[], &[]);
        };
        (
            self.recs.get(lo..hi).unwrap_or_default(),
            self.pos.get(lo..hi).unwrap_or_default(),
        )
    }

    /// Shard `s`'s record origins (tagged input; else empty).
    fn origins_of(&self, s: usize) -> &[u64] {
        let (Some(&lo), Some(&hi)) = (self.starts.get(s), self.starts.get(s + 1)) else {
            return &[];
        };
        self.origins.get(lo..hi).unwrap_or_default()
    }
}

/// What the decoders send the workers.
type Decoded = Arc<Pooled<DecodedChunk>>;

/// What the reader counted, with the decoders' counters merged in.
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
    /// Time spent reading and copying packets into chunks (not waiting on
    /// queues).
    pub busy: Duration,
    /// Decoder threads.
    pub decoders: usize,
    /// Sum of the decoders' busy time: decoding and grouping by shard (not
    /// waiting on queues).
    pub decode_busy: Duration,
    /// What the Kafka source counted (Kafka input only).
    pub kafka: Option<crate::kafka::KafkaReport>,
    /// What the kernel and libpcap counted (live capture only).
    pub capture: Option<crate::live::CaptureReport>,
}

impl ReaderReport {
    /// Adds another reader's counts (capture threads of one interface).
    fn merge(&mut self, r: ReaderReport) {
        self.packets += r.packets;
        self.bytes += r.bytes;
        self.decoded += r.decoded;
        self.skipped.merge(&r.skipped);
        self.read_error = self.read_error.take().or(r.read_error);
        self.busy += r.busy;
        self.kafka = self.kafka.take().or(r.kafka);
        match (&mut self.capture, r.capture) {
            (Some(a), Some(b)) => a.merge(&b),
            (a @ None, b) => *a = b,
            (Some(_), None) => {}
        }
    }
}

/// What one decoder counted.
#[derive(Debug, Default)]
struct DecoderReport {
    decoded: u64,
    skipped: SkipCounters,
    busy: Duration,
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
        if self.workers.workers == 0 {
            // Flow rows read as they are (the Kafka `flows` format).
            return self.consumer.flows;
        }
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

/// Where a run's packets come from.
pub enum Input {
    /// A capture file (pcap, pcapng or snoop, optionally gzip-compressed).
    Capture(PathBuf),
    /// Kafka topics, as a member of a consumer group.
    Kafka(Box<crate::kafka::KafkaSource>),
    /// Open network interfaces (one per capture thread), read until `term`
    /// is set.
    Live {
        /// The handles, opened before privileges were dropped.
        captures: Vec<tapstream_ingest::live::LiveCapture>,
        /// Set by SIGTERM/SIGINT: stop reading, end every flow, flush.
        term: Arc<AtomicBool>,
    },
}

/// Reads `input`, runs it through flows and features, and hands ended flows
/// to `consumer`. Returns when every stage has drained.
pub fn run(
    input: &Path,
    cfg: &Config,
    consumer: Consumer,
    progress: Arc<Progress>,
) -> Result<RunReport> {
    run_input(Input::Capture(input.to_path_buf()), cfg, consumer, progress)
}

/// The opened source of a run.
enum Reader {
    Capture(CaptureReader),
    Kafka(Box<crate::kafka::KafkaSource>),
    Live(Box<tapstream_ingest::live::LiveCapture>, Arc<AtomicBool>),
}

/// [`run`] for any [`Input`].
pub fn run_input(
    input: Input,
    cfg: &Config,
    consumer: Consumer,
    progress: Arc<Progress>,
) -> Result<RunReport> {
    let started = Instant::now();
    let (reader, input) = match input {
        Input::Capture(path) => {
            let r = CaptureReader::open(&path).with_context(|| format!("{}", path.display()))?;
            (Reader::Capture(r), path)
        }
        Input::Kafka(k) => {
            let name = PathBuf::from(k.describe());
            (Reader::Kafka(k), name)
        }
        Input::Live { captures, term } => {
            let name = captures
                .first()
                .map_or_else(String::new, |c| format!("interface {}", c.interface()));
            let readers = captures
                .into_iter()
                .map(|c| Reader::Live(Box::new(c), term.clone()))
                .collect();
            return run_readers(
                readers,
                PathBuf::from(name),
                cfg,
                consumer,
                progress,
                started,
            );
        }
    };
    if let Reader::Kafka(source) = reader {
        if source.is_flows() {
            return run_kafka_flows(*source, input, cfg, consumer, progress, started);
        }
        return run_readers(
            vec![Reader::Kafka(source)],
            input,
            cfg,
            consumer,
            progress,
            started,
        );
    }
    run_readers(vec![reader], input, cfg, consumer, progress, started)
}

/// Scores the Kafka `flows` format: rows go from the source straight to the
/// consumer (no decoders, no flow workers).
fn run_kafka_flows(
    source: crate::kafka::KafkaSource,
    input: PathBuf,
    cfg: &Config,
    consumer: Consumer,
    progress: Arc<Progress>,
    started: Instant,
) -> Result<RunReport> {
    let batch_flows = cfg.pipeline.batch_flows;
    let (flow_tx, flow_rx) = bounded::<FlowBatch>(FLOW_QUEUE);
    let (flow_pool_tx, flow_pool_rx) = bounded::<FlowBatch>(FLOW_QUEUE + 2);
    let stop = Arc::new(AtomicBool::new(false));
    let consumer_handle = spawn_consumer(consumer, flow_rx, flow_pool_tx, &stop)?;
    let setup = started.elapsed();
    let reader_handle = thread::Builder::new()
        .name("reader".into())
        .spawn({
            let stop = stop.clone();
            move || {
                source.run_flows(
                    FlowWriter::new(flow_tx, flow_pool_rx, batch_flows),
                    &progress,
                    &stop,
                )
            }
        })
        .context("spawning reader")?;
    let reader = reader_handle
        .join()
        .map_err(|_| anyhow!("reader thread panicked"))?;
    let consumer = consumer_handle
        .join()
        .map_err(|_| anyhow!("consumer thread panicked"))??;
    Ok(RunReport {
        input,
        reader,
        workers: WorkersReport {
            device: "none (flow rows from Kafka)".into(),
            ..WorkersReport::default()
        },
        consumer,
        wall: started.elapsed(),
        setup,
    })
}

/// Starts the consumer stage on its own thread; when it fails, `stop` is
/// set (nothing downstream can take flows, so reading stops).
fn spawn_consumer(
    consumer: Consumer,
    rx: Receiver<FlowBatch>,
    pool: Sender<FlowBatch>,
    stop: &Arc<AtomicBool>,
) -> Result<thread::JoinHandle<Result<ConsumerReport>>> {
    let stop = stop.clone();
    thread::Builder::new()
        .name("consumer".into())
        .spawn(move || {
            let r = consumer.run(rx, pool, &stop);
            if r.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            r
        })
        .context("spawning consumer")
}

/// The packet pipeline: readers, decoders, flow workers, consumer.
///
/// One reader deals its chunks to every decoder in turn and the workers
/// take them back in that order. Several readers (live capture threads in a
/// fanout group) get one decoder each, and the workers take chunks from
/// whichever decoder has one: each reader sees whole flows, so only the
/// clock interleaves.
fn run_readers(
    readers: Vec<Reader>,
    input: PathBuf,
    cfg: &Config,
    consumer: Consumer,
    progress: Arc<Progress>,
    started: Instant,
) -> Result<RunReport> {
    let device = if readers.iter().any(|r| matches!(r, Reader::Kafka(_))) {
        // A GPU shard hands ended flows off a batch late, after the marks
        // that offset commits rely on.
        if cfg.gpu.device == crate::config::Device::Cuda {
            anyhow::bail!(
                "the Kafka source needs CPU features (gpu.device = \"cpu\" or \"auto\"): \
                 the GPU extractor cannot yet say which offsets are safe to commit"
            );
        }
        device::Resolved::Cpu
    } else {
        device::resolve(cfg)?
    };
    let workers = cfg.worker_threads();
    let ordered = readers.len() <= 1;
    let decoders = if ordered {
        cfg.decoder_threads()
    } else {
        readers.len()
    };
    let flow_cfg = flow_config(cfg, workers);
    let chunk_packets = cfg.pipeline.batch_packets;

    // Raw chunks: two per decoder (one being decoded, one queued) and two
    // for the reader (one being filled, one spare). Each decoder owns Q+1
    // decoded chunks; its queue to each worker holds them all, so it only
    // ever waits for its pool.
    let raw_pool_size = 2 * decoders + 2 * readers.len();
    let (raw_pool_tx, raw_pool_rx) = bounded::<RawChunk>(raw_pool_size);
    for _ in 0..raw_pool_size {
        raw_pool_tx
            .send(RawChunk::with_capacity(chunk_packets))
            .map_err(|_| anyhow!("chunk pool closed during start-up"))?;
    }
    let decoded_per_decoder = cfg.pipeline.queue_batches + 1;
    // Flows end in bursts (a capture's quiet flows all time out together),
    // so the queue to the consumer is deep enough to absorb a burst while
    // the workers keep going.
    let (flow_tx, flow_rx) = bounded::<FlowBatch>(FLOW_QUEUE * workers);
    let (flow_pool_tx, flow_pool_rx) = bounded::<FlowBatch>(FLOW_QUEUE * workers + workers + 2);
    let stop = Arc::new(AtomicBool::new(false));

    let mut decoder_txs: Vec<Vec<Sender<Decoded>>> =
        (0..decoders).map(|_| Vec::with_capacity(workers)).collect();
    let mut worker_rxs: Vec<Vec<Receiver<Decoded>>> =
        (0..workers).map(|_| Vec::with_capacity(decoders)).collect();
    for txs in &mut decoder_txs {
        for rxs in &mut worker_rxs {
            let (tx, rx) = bounded::<Decoded>(decoded_per_decoder);
            txs.push(tx);
            rxs.push(rx);
        }
    }

    let models = consumer.worker_models();
    if let Some(m) = &models {
        if m.workers() != workers {
            anyhow::bail!(
                "{} model sessions were loaded for {workers} flow workers",
                m.workers()
            );
        }
    }
    let mut worker_handles = Vec::with_capacity(workers);
    for (shard, rxs) in worker_rxs.into_iter().enumerate() {
        let mut scorer = models
            .as_ref()
            .map(|m| m.scorer(shard, cfg.inference.batch_rows))
            .transpose()?;
        // A GPU shard may take the scorer, to score on the device.
        let mut proc = Extractor::new(&device, flow_cfg, shard as u32, cfg, &mut scorer)?;
        let flow_tx = flow_tx.clone();
        let flow_pool_rx = flow_pool_rx.clone();
        let batch_flows = cfg.pipeline.batch_flows;
        let stop = stop.clone();
        let h = thread::Builder::new()
            .name(format!("flow-{shard}"))
            .spawn(move || {
                worker_loop(
                    &mut proc,
                    scorer,
                    shard,
                    rxs,
                    ordered,
                    (flow_tx, flow_pool_rx),
                    batch_flows,
                    &stop,
                )
            })
            .context("spawning flow worker")?;
        worker_handles.push(h);
    }
    drop(flow_tx);

    let mut chunk_txs = Vec::with_capacity(decoders);
    let mut decoder_handles = Vec::with_capacity(decoders);
    for (d, txs) in decoder_txs.into_iter().enumerate() {
        let (tx, rx) = bounded::<Pooled<RawChunk>>(raw_pool_size);
        chunk_txs.push(tx);
        let h = thread::Builder::new()
            .name(format!("decode-{d}"))
            .spawn(move || decoder_loop(rx, txs, decoded_per_decoder))
            .context("spawning decoder")?;
        decoder_handles.push(h);
    }

    let consumer_handle = spawn_consumer(consumer, flow_rx, flow_pool_tx, &stop)?;

    let setup = started.elapsed();
    // Each reader's decoders: all of them for one reader, else its own.
    let mut chunk_txs: Vec<Vec<_>> = if ordered {
        vec![chunk_txs]
    } else {
        chunk_txs.into_iter().map(|tx| vec![tx]).collect()
    };
    let mut reader_handles = Vec::with_capacity(readers.len());
    for (i, reader) in readers.into_iter().enumerate() {
        let txs = std::mem::take(chunk_txs.get_mut(i).context("a reader without decoders")?);
        let pool = (raw_pool_tx.clone(), raw_pool_rx.clone());
        let progress = progress.clone();
        let stop = stop.clone();
        let h = thread::Builder::new()
            .name(if i == 0 {
                "reader".into()
            } else {
                format!("reader-{i}")
            })
            .spawn(move || match reader {
                Reader::Capture(reader) => {
                    reader_loop(reader, txs, pool, chunk_packets, &progress, &stop)
                }
                Reader::Kafka(source) => {
                    (*source).run(ChunkWriter::new(txs, pool, chunk_packets), &progress, &stop)
                }
                Reader::Live(cap, term) => crate::live::live_loop(
                    *cap,
                    LiveOut::new(txs, pool),
                    chunk_packets,
                    &progress,
                    &stop,
                    &term,
                ),
            })
            .context("spawning reader")?;
        reader_handles.push(h);
    }
    drop((raw_pool_tx, raw_pool_rx));

    let mut reader_report = ReaderReport::default();
    for h in reader_handles {
        let r = h.join().map_err(|_| anyhow!("reader thread panicked"))?;
        reader_report.merge(r);
    }
    reader_report.decoders = decoders;
    for h in decoder_handles {
        let d = h.join().map_err(|_| anyhow!("decoder thread panicked"))?;
        reader_report.decoded += d.decoded;
        reader_report.skipped.merge(&d.skipped);
        reader_report.decode_busy += d.busy;
    }
    for (reason, n) in reader_report.skipped.iter() {
        metrics::counter!("tapstream_packets_skipped_total", "reason" => reason.as_str())
            .increment(n);
    }
    let mut workers_report = WorkersReport {
        workers,
        device: device.describe(),
        ..WorkersReport::default()
    };
    let mut device_error = None;
    let mut scoring_error = None;
    for h in worker_handles {
        let w = h.join().map_err(|_| anyhow!("flow worker panicked"))?;
        merge_stats(&mut workers_report.stats, &w.stats);
        workers_report.busy += w.busy;
        device_error = device_error.or(w.device_error);
        scoring_error = scoring_error.or(w.scoring_error);
    }
    let consumer_report = consumer_handle
        .join()
        .map_err(|_| anyhow!("consumer thread panicked"))??;
    if let Some(e) = device_error {
        anyhow::bail!("the GPU extractor failed, flows were lost: {e}");
    }
    if let Some(e) = scoring_error {
        anyhow::bail!("a flow worker could not score its flows, which were lost: {e}");
    }
    Ok(RunReport {
        input,
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
    total.emergency_entries += s.emergency_entries;
    total.emergency_exits += s.emergency_exits;
    total.emergency_active += s.emergency_active;
}

/// The flow table configuration for one shard: the configured maximum, and
/// the memory cap divided by what an open flow costs, are split evenly over
/// the shards; the smaller bound wins.
pub fn flow_config(cfg: &Config, shards: usize) -> FlowConfig {
    let us = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    let shards = shards.max(1);
    let mut max_flows = cfg.flow.max_flows.div_ceil(shards);
    if cfg.flow.memcap_mib > 0 {
        let bytes = usize::try_from(cfg.flow.memcap_mib << 20).unwrap_or(usize::MAX);
        max_flows = max_flows.min(bytes / shards / ShardProcessor::BYTES_PER_FLOW);
    }
    FlowConfig {
        flow_timeout_us: us(cfg.flow.timeout),
        activity_timeout_us: us(cfg.flow.activity_timeout),
        tcp_close_linger_us: us(cfg.flow.tcp_close_linger),
        max_flows: max_flows.max(1),
        emergency_timeout_us: us(cfg.flow.emergency_timeout),
        emergency_new_timeout_us: us(cfg.flow.emergency_new_timeout),
        emergency_recovery_pct: cfg.flow.emergency_recovery,
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
    chunk_txs: Vec<Sender<Pooled<RawChunk>>>,
    (pool_tx, pool_rx): (Sender<RawChunk>, Receiver<RawChunk>),
    chunk_packets: usize,
    progress: &Progress,
    stop: &AtomicBool,
) -> ReaderReport {
    let started = Instant::now();
    let mut blocked = Duration::ZERO;
    let mut report = ReaderReport::default();
    let mut out = ChunkOut {
        txs: &chunk_txs,
        pool_tx: &pool_tx,
        pool_rx: &pool_rx,
        next: 0,
    };
    let Some(mut chunk) = out.fresh(&mut blocked) else {
        return report;
    };
    let mut opened = Instant::now();
    let mut until_check = FLUSH_CHECK;
    let mut since_publish = 0u32;
    // Counted into the metrics as the reader goes (what was added so far).
    let read_packets = metrics::counter!("tapstream_packets_read_total");
    let read_bytes = metrics::counter!("tapstream_bytes_read_total");
    let mut published = (0u64, 0u64);
    let mut publish = |report: &ReaderReport| {
        read_packets.increment(report.packets - published.0);
        read_bytes.increment(report.bytes - published.1);
        published = (report.packets, report.bytes);
    };
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
        if !chunk.pkts.is_empty()
            && chunk.data.len().saturating_add(pkt.data.len()) > CHUNK_BYTES
            && !out.send(&mut chunk, &mut blocked)
        {
            break;
        }
        if chunk.pkts.is_empty() {
            opened = Instant::now();
        }
        chunk.push(&pkt);
        if chunk.pkts.len() >= chunk_packets && !out.send(&mut chunk, &mut blocked) {
            break;
        }
        until_check -= 1;
        if until_check == 0 {
            until_check = FLUSH_CHECK;
            if !chunk.pkts.is_empty()
                && opened.elapsed() >= FLUSH_WALL
                && !out.send(&mut chunk, &mut blocked)
            {
                break;
            }
        }
        since_publish += 1;
        if since_publish >= 4096 {
            since_publish = 0;
            progress.bytes.store(reader.bytes_read(), Ordering::Relaxed);
            progress.packets.store(report.packets, Ordering::Relaxed);
            publish(&report);
        }
    }
    // What was read is decoded and counted, even after a stop.
    if !chunk.pkts.is_empty() {
        if let Some(tx) = chunk_txs.get(out.next) {
            send_timed(tx, Pooled::new(chunk, &pool_tx), &mut blocked);
        }
    }
    progress.bytes.store(reader.bytes_read(), Ordering::Relaxed);
    progress.packets.store(report.packets, Ordering::Relaxed);
    publish(&report);
    report.busy = started.elapsed().saturating_sub(blocked);
    report
}

/// The reader's side of the chunk queues.
struct ChunkOut<'a> {
    txs: &'a [Sender<Pooled<RawChunk>>],
    pool_tx: &'a Sender<RawChunk>,
    pool_rx: &'a Receiver<RawChunk>,
    /// The decoder that gets the next chunk.
    next: usize,
}

impl ChunkOut<'_> {
    /// An empty chunk from the pool (waiting for one if need be).
    fn fresh(&self, blocked: &mut Duration) -> Option<RawChunk> {
        match recv_until(self.pool_rx, None, blocked) {
            Recv::Item(mut c) => {
                c.clear();
                Some(c)
            }
            Recv::Timeout | Recv::Closed => None,
        }
    }

    /// Sends `chunk` to the next decoder and replaces it with an empty one.
    /// False when the pipeline is shutting down.
    fn send(&mut self, chunk: &mut RawChunk, blocked: &mut Duration) -> bool {
        let Some(tx) = self.txs.get(self.next) else {
            return false;
        };
        let Some(fresh) = self.fresh(blocked) else {
            return false;
        };
        self.next = (self.next + 1) % self.txs.len();
        let full = std::mem::replace(chunk, fresh);
        send_timed(tx, Pooled::new(full, self.pool_tx), blocked)
    }
}

/// A live source's side of the chunk queues. It never waits for room: when
/// the pipeline has no free chunk, the packets of the full one are dropped
/// (and counted by the caller), so the kernel's ring keeps being read.
pub(crate) struct LiveOut {
    txs: Vec<Sender<Pooled<RawChunk>>>,
    pool_tx: Sender<RawChunk>,
    pool_rx: Receiver<RawChunk>,
    /// The decoder that gets the next chunk.
    next: usize,
    /// Time spent waiting on the queues (at start and at the end only).
    pub(crate) blocked: Duration,
}

/// What [`LiveOut::ship`] did with a chunk.
pub(crate) enum Shipped {
    /// Sent on.
    Sent,
    /// Emptied: the pipeline had no room for this many packets.
    Dropped(u64),
    /// The pipeline is shutting down.
    Closed,
}

impl LiveOut {
    fn new(
        txs: Vec<Sender<Pooled<RawChunk>>>,
        (pool_tx, pool_rx): (Sender<RawChunk>, Receiver<RawChunk>),
    ) -> Self {
        LiveOut {
            txs,
            pool_tx,
            pool_rx,
            next: 0,
            blocked: Duration::ZERO,
        }
    }

    /// An empty chunk to start with (waits for one).
    pub(crate) fn first(&mut self) -> Option<RawChunk> {
        match recv_until(&self.pool_rx, None, &mut self.blocked) {
            Recv::Item(mut c) => {
                c.clear();
                Some(c)
            }
            Recv::Timeout | Recv::Closed => None,
        }
    }

    /// Sends `chunk` to the next decoder and leaves an empty one in its
    /// place, or empties it when no chunk is free.
    pub(crate) fn ship(&mut self, chunk: &mut RawChunk) -> Shipped {
        let Some(tx) = self.txs.get(self.next) else {
            return Shipped::Closed;
        };
        let mut fresh = match self.pool_rx.try_recv() {
            Ok(c) => c,
            Err(crossbeam_channel::TryRecvError::Empty) => {
                let n = chunk.len() as u64;
                chunk.clear();
                return Shipped::Dropped(n);
            }
            Err(crossbeam_channel::TryRecvError::Disconnected) => return Shipped::Closed,
        };
        fresh.clear();
        self.next = (self.next + 1) % self.txs.len();
        let full = std::mem::replace(chunk, fresh);
        // Never waits: the queue holds every chunk of the pool.
        if send_timed(tx, Pooled::new(full, &self.pool_tx), &mut self.blocked) {
            Shipped::Sent
        } else {
            Shipped::Closed
        }
    }

    /// Sends the last chunk, waiting for room (nothing more is read).
    pub(crate) fn finish(mut self, chunk: RawChunk) {
        if chunk.is_empty() {
            return;
        }
        if let Some(tx) = self.txs.get(self.next) {
            send_timed(tx, Pooled::new(chunk, &self.pool_tx), &mut self.blocked);
        }
    }

    /// Chunks waiting for the decoders.
    pub(crate) fn queued(&self) -> usize {
        self.txs.iter().map(Sender::len).sum()
    }
}

/// The source's side of the chunk queues for a source that numbers its
/// messages (Kafka): each packet carries its message's number (origin),
/// each chunk says up to which origin its messages are complete, and a
/// flush request travels as a chunk of its own, in order with the packets.
pub(crate) struct ChunkWriter {
    txs: Vec<Sender<Pooled<RawChunk>>>,
    pool_tx: Sender<RawChunk>,
    pool_rx: Receiver<RawChunk>,
    /// The decoder that gets the next chunk.
    next: usize,
    chunk: RawChunk,
    opened: Instant,
    chunk_packets: usize,
    /// Chunks sent so far.
    sent: u64,
    /// `next_origin` of the last chunk sent, and when it was sent.
    sent_origin: u64,
    sent_at: Instant,
    /// Time spent waiting on the queues.
    pub(crate) blocked: Duration,
    /// False once the pipeline stopped taking chunks.
    open: bool,
}

impl ChunkWriter {
    fn new(
        txs: Vec<Sender<Pooled<RawChunk>>>,
        (pool_tx, pool_rx): (Sender<RawChunk>, Receiver<RawChunk>),
        chunk_packets: usize,
    ) -> Self {
        let mut blocked = Duration::ZERO;
        let (chunk, open) = match recv_until(&pool_rx, None, &mut blocked) {
            Recv::Item(mut c) => {
                c.clear();
                c.tagged = true;
                (c, true)
            }
            Recv::Timeout | Recv::Closed => (RawChunk::default(), false),
        };
        ChunkWriter {
            txs,
            pool_tx,
            pool_rx,
            next: 0,
            chunk,
            opened: Instant::now(),
            chunk_packets: chunk_packets.max(1),
            sent: 0,
            sent_origin: 0,
            sent_at: Instant::now(),
            blocked,
            open,
        }
    }

    /// Chunks sent so far: the number of the chunk being filled.
    pub(crate) fn chunk_number(&self) -> u64 {
        self.sent
    }

    /// Adds a packet of message `origin`, sending the chunk on when full.
    pub(crate) fn push(&mut self, p: &RawPacket<'_>, origin: u64) -> bool {
        if !self.chunk.pkts.is_empty()
            && self.chunk.data.len().saturating_add(p.data.len()) > CHUNK_BYTES
            && !self.send()
        {
            return false;
        }
        if self.chunk.pkts.is_empty() {
            self.opened = Instant::now();
        }
        self.chunk.push_from(p, origin);
        if self.chunk.pkts.len() >= self.chunk_packets {
            return self.send();
        }
        self.open
    }

    /// Every message numbered below `next_origin` has all its packets pushed.
    pub(crate) fn complete_below(&mut self, next_origin: u64) {
        self.chunk.next_origin = self.chunk.next_origin.max(next_origin);
    }

    /// Sends the chunk when it has waited [`FLUSH_WALL`] for more packets,
    /// or when messages completed without packets (so their offsets can be
    /// committed) and nothing was sent for that long.
    pub(crate) fn send_if_due(&mut self) -> bool {
        let waiting = (!self.chunk.pkts.is_empty()).then_some(self.opened);
        if send_due(
            waiting,
            self.chunk.next_origin > self.sent_origin,
            self.sent_at,
        ) {
            self.send()
        } else {
            self.open
        }
    }

    /// Sends the chunk (even an empty one) to the next decoder.
    pub(crate) fn send(&mut self) -> bool {
        if !self.open {
            return false;
        }
        let Some(tx) = self.txs.get(self.next) else {
            self.open = false;
            return false;
        };
        let Recv::Item(mut fresh) = recv_until(&self.pool_rx, None, &mut self.blocked) else {
            self.open = false;
            return false;
        };
        fresh.clear();
        fresh.tagged = true;
        fresh.next_origin = self.chunk.next_origin;
        let full = std::mem::replace(&mut self.chunk, fresh);
        self.sent_origin = full.next_origin;
        self.sent_at = Instant::now();
        self.sent += 1;
        self.next = (self.next + 1) % self.txs.len();
        self.open = send_timed(tx, Pooled::new(full, &self.pool_tx), &mut self.blocked);
        self.open
    }

    /// Sends what is pending, then flush request `id` (non-zero): every
    /// shard ends all its flows after the packets before it.
    pub(crate) fn flush(&mut self, id: u64) -> bool {
        if !self.chunk.pkts.is_empty() && !self.send() {
            return false;
        }
        self.chunk.flush = id;
        self.send()
    }
}

/// When a tagged source's pending output should go: items waiting since
/// `waiting` for [`FLUSH_WALL`], or nothing waiting but messages completed
/// since the last send (`progressed`), which was that long ago.
fn send_due(waiting: Option<Instant>, progressed: bool, sent_at: Instant) -> bool {
    match waiting {
        Some(opened) => opened.elapsed() >= FLUSH_WALL,
        None => progressed && sent_at.elapsed() >= FLUSH_WALL,
    }
}

/// The source's side of the flow queue for the Kafka `flows` format: rows
/// go straight to the consumer, with a [`Mark`] on every batch (a row is a
/// whole flow, so a message is settled once its row is scored and alerted).
pub(crate) struct FlowWriter {
    tx: Sender<FlowBatch>,
    pool: Receiver<FlowBatch>,
    batch: FlowBatch,
    max_flows: usize,
    opened: Instant,
    /// Every message numbered below this is in the batch or an earlier one.
    next_origin: u64,
    sent_origin: u64,
    sent_at: Instant,
    /// The last flush request, carried by the marks.
    flushed: u64,
    sent: u64,
    /// Time spent waiting on the queue.
    pub(crate) blocked: Duration,
    open: bool,
}

impl FlowWriter {
    fn new(tx: Sender<FlowBatch>, pool: Receiver<FlowBatch>, max_flows: usize) -> Self {
        FlowWriter {
            tx,
            pool,
            batch: FlowBatch::with_capacity(max_flows.min(4096)),
            max_flows: max_flows.max(1),
            opened: Instant::now(),
            next_origin: 0,
            sent_origin: 0,
            sent_at: Instant::now(),
            flushed: 0,
            sent: 0,
            blocked: Duration::ZERO,
            open: true,
        }
    }

    /// Batches sent so far.
    pub(crate) fn chunk_number(&self) -> u64 {
        self.sent
    }

    /// Adds a flow's row, sending the batch on when full.
    pub(crate) fn push(
        &mut self,
        meta: tapstream_ingest::FlowMeta,
        row: &[f64; tapstream_kernels::schema::NUM_FEATURES],
    ) -> bool {
        if self.batch.is_empty() {
            self.opened = Instant::now();
        }
        self.batch.push(meta, row);
        if self.batch.len() >= self.max_flows {
            return self.send();
        }
        self.open
    }

    /// Every message numbered below `next_origin` is in the batch or sent.
    pub(crate) fn complete_below(&mut self, next_origin: u64) {
        self.next_origin = self.next_origin.max(next_origin);
    }

    /// Sends the batch when it has waited [`FLUSH_WALL`], or when messages
    /// completed without rows and nothing was sent for that long.
    pub(crate) fn send_if_due(&mut self) -> bool {
        let waiting = (!self.batch.is_empty()).then_some(self.opened);
        if send_due(waiting, self.next_origin > self.sent_origin, self.sent_at) {
            self.send()
        } else {
            self.open
        }
    }

    /// Sends the batch (even an empty one) with its mark.
    pub(crate) fn send(&mut self) -> bool {
        if !self.open {
            return false;
        }
        let fresh = self
            .pool
            .try_recv()
            .unwrap_or_else(|_| FlowBatch::with_capacity(self.max_flows.min(4096)));
        let mut full = std::mem::replace(&mut self.batch, fresh);
        full.mark = Some(Mark {
            shard: 0,
            safe: self.next_origin,
            flushed: self.flushed,
        });
        self.sent_origin = self.next_origin;
        self.sent_at = Instant::now();
        self.sent += 1;
        self.open = send_timed(&self.tx, full, &mut self.blocked);
        self.open
    }

    /// Sends what is pending with flush request `id`'s mark (rows hold no
    /// state, so there is nothing else to end).
    pub(crate) fn flush(&mut self, id: u64) -> bool {
        self.flushed = id;
        self.send()
    }
}

/// Sends `msg`, adding any time spent waiting for room to `blocked`. False
/// when the receiver is gone.
fn send_timed<T>(tx: &Sender<T>, msg: T, blocked: &mut Duration) -> bool {
    match tx.try_send(msg) {
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

/// A decoder's buffers, reused for every chunk.
#[derive(Default)]
struct Scratch {
    /// Decoded records in capture order.
    recs: Vec<PacketRecord>,
    /// Each record's shard.
    shard: Vec<u32>,
    /// Each record's origin (tagged input).
    origins: Vec<u64>,
    /// Next free place per shard while grouping.
    cursor: Vec<usize>,
}

fn decoder_loop(
    rx: Receiver<Pooled<RawChunk>>,
    txs: Vec<Sender<Decoded>>,
    pool_size: usize,
) -> DecoderReport {
    let started = Instant::now();
    let mut blocked = Duration::ZERO;
    let mut report = DecoderReport::default();
    let (pool_tx, pool_rx) = bounded::<DecodedChunk>(pool_size);
    for _ in 0..pool_size {
        let _ = pool_tx.send(DecodedChunk::default());
    }
    let mut scratch = Scratch::default();
    loop {
        let Recv::Item(raw) = recv_until(&rx, None, &mut blocked) else {
            break;
        };
        // Never closed (`pool_tx` is held here); waits while the workers
        // hold every chunk.
        let Recv::Item(mut chunk) = recv_until(&pool_rx, None, &mut blocked) else {
            break;
        };
        decode_chunk(&raw, txs.len(), &mut scratch, &mut chunk, &mut report);
        drop(raw);
        let msg = Arc::new(Pooled::new(chunk, &pool_tx));
        for tx in &txs {
            // A worker that is gone (it panicked) misses the chunk; the run
            // fails when it is joined.
            send_timed(tx, msg.clone(), &mut blocked);
        }
    }
    report.busy = started.elapsed().saturating_sub(blocked);
    report
}

/// Decodes `raw` into `out`: records grouped by shard, each shard's in
/// capture order, and the tick points of the chunk.
fn decode_chunk(
    raw: &RawChunk,
    shards: usize,
    scratch: &mut Scratch,
    out: &mut DecodedChunk,
    report: &mut DecoderReport,
) {
    scratch.recs.clear();
    scratch.shard.clear();
    scratch.origins.clear();
    out.ticks.clear();
    out.tagged = raw.tagged;
    out.next_origin = raw.next_origin;
    out.flush = raw.flush;
    let mut rec = PacketRecord::default();
    let mut tick = i64::MIN;
    for (i, d) in raw.pkts.iter().enumerate() {
        // The reader wrote these bytes on another core: fetch the headers of
        // a packet a few ahead while this one is decoded.
        if let Some(ahead) = raw.pkts.get(i + PREFETCH_AHEAD) {
            prefetch(raw.data.get(ahead.start..));
        }
        let Some(pkt) = raw.packet(d) else {
            // Cannot happen (the reader stores both); counted, not lost.
            report.skipped.add(SkipReason::Truncated);
            continue;
        };
        match decode(&pkt, &mut rec) {
            Ok(()) => {
                let t = rec.ts_us.div_euclid(TICK_US);
                if t > tick {
                    tick = t;
                    out.ticks.push((scratch.recs.len() as u32, rec.ts_us));
                }
                scratch.shard.push(shard_of(rec.hash, shards) as u32);
                scratch.recs.push(rec);
                if raw.tagged {
                    scratch.origins.push(d.origin);
                }
            }
            Err(reason) => report.skipped.add(reason),
        }
    }
    let n = scratch.recs.len();
    // A live source's wall clock, after every packet of the chunk.
    if raw.clock_us != 0 && raw.clock_us.div_euclid(TICK_US) > tick {
        out.ticks.push((n as u32, raw.clock_us));
    }
    report.decoded += n as u64;
    // Counting sort by shard (stable, so each shard keeps capture order).
    out.starts.clear();
    out.starts.resize(shards + 1, 0);
    for &s in &scratch.shard {
        if let Some(c) = out.starts.get_mut(s as usize + 1) {
            *c += 1;
        }
    }
    let mut sum = 0;
    for c in &mut out.starts {
        sum += *c;
        *c = sum;
    }
    out.pos.clear();
    out.origins.clear();
    if shards == 1 {
        std::mem::swap(&mut out.recs, &mut scratch.recs);
        std::mem::swap(&mut out.origins, &mut scratch.origins);
        out.pos.extend(0..n as u32);
        return;
    }
    scratch.cursor.clear();
    scratch
        .cursor
        .extend_from_slice(out.starts.get(..shards).unwrap_or_default());
    out.recs.clear();
    out.recs.resize(n, PacketRecord::default());
    out.pos.resize(n, 0);
    out.origins.resize(scratch.origins.len(), 0);
    for (i, (rec, &s)) in scratch.recs.iter().zip(&scratch.shard).enumerate() {
        let Some(c) = scratch.cursor.get_mut(s as usize) else {
            continue;
        };
        if let (Some(r), Some(p)) = (out.recs.get_mut(*c), out.pos.get_mut(*c)) {
            *r = *rec;
            *p = i as u32;
        }
        if let (Some(o), Some(&from)) = (out.origins.get_mut(*c), scratch.origins.get(i)) {
            *o = from;
        }
        *c += 1;
    }
}

/// Packets between the one being decoded and the one prefetched (measured:
/// a third less decode time on the benchmark capture).
const PREFETCH_AHEAD: usize = 6;

/// Asks the CPU to bring the start of `bytes` into cache.
#[inline(always)]
fn prefetch(bytes: Option<&[u8]>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(b) = bytes {
        // SAFETY: a prefetch is a hint: it never faults and changes no memory,
        // and `b` points into a live slice.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(b.as_ptr().cast())
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// How long a GPU worker waits for packets before delivering the flows that
/// are waiting in a partly filled batch.
const GPU_IDLE: Duration = Duration::from_millis(50);

/// A worker's decoded-chunk queues, one per decoder.
struct Inbox {
    rxs: Vec<Receiver<Decoded>>,
    /// Take chunk i from decoder i mod D (one reader), or from any decoder.
    ordered: bool,
    /// The decoder the next chunk comes from (ordered), or the first one
    /// tried (any).
    next: usize,
    /// Decoders still sending (any).
    alive: Vec<bool>,
}

/// What waiting on the [`Inbox`] gave.
enum Got {
    Chunk(Decoded),
    /// Nothing within the wait given.
    Idle,
    /// Every decoder is done.
    Done,
}

impl Inbox {
    fn new(rxs: Vec<Receiver<Decoded>>, ordered: bool) -> Self {
        let alive = vec![true; rxs.len()];
        Inbox {
            rxs,
            ordered,
            next: 0,
            alive,
        }
    }

    /// The next chunk, waiting at most `wait` (none: until one comes).
    fn recv(&mut self, wait: Option<Duration>, blocked: &mut Duration) -> Got {
        if self.ordered {
            let Some(rx) = self.rxs.get(self.next) else {
                return Got::Done;
            };
            let got = match rx.try_recv() {
                Ok(m) => Ok(m),
                Err(_) => {
                    let t = Instant::now();
                    let m = match wait {
                        Some(w) => rx.recv_timeout(w),
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    };
                    *blocked += t.elapsed();
                    m
                }
            };
            return match got {
                Ok(m) => {
                    self.next = (self.next + 1) % self.rxs.len();
                    Got::Chunk(m)
                }
                Err(RecvTimeoutError::Timeout) => Got::Idle,
                Err(RecvTimeoutError::Disconnected) => Got::Done,
            };
        }
        let n = self.rxs.len();
        loop {
            // A look at every live queue first, starting after the last
            // one served, so no decoder starves another.
            for k in 0..n {
                let i = (self.next + k) % n;
                if !self.alive.get(i).copied().unwrap_or(false) {
                    continue;
                }
                let Some(rx) = self.rxs.get(i) else { continue };
                match rx.try_recv() {
                    Ok(m) => {
                        self.next = (i + 1) % n;
                        return Got::Chunk(m);
                    }
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        if let Some(a) = self.alive.get_mut(i) {
                            *a = false;
                        }
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => {}
                }
            }
            let never = crossbeam_channel::never::<Decoded>();
            let mut sel = crossbeam_channel::Select::new();
            let mut live = 0;
            for (rx, &a) in self.rxs.iter().zip(&self.alive) {
                if a {
                    sel.recv(rx);
                    live += 1;
                } else {
                    // A queue that is done is never ready.
                    sel.recv(&never);
                }
            }
            if live == 0 {
                return Got::Done;
            }
            let t = Instant::now();
            let ready = match wait {
                Some(w) => sel.ready_timeout(w).ok(),
                None => Some(sel.ready()),
            };
            *blocked += t.elapsed();
            if ready.is_none() {
                return Got::Idle;
            }
            // The ready queue is read on the next pass.
        }
    }
}

/// What a flow worker ends with.
struct WorkerOutcome {
    stats: ShardStats,
    /// Time not spent waiting on its queues.
    busy: Duration,
    /// The GPU extractor's failure, if it failed.
    device_error: Option<String>,
    /// Why scoring failed (inference in the workers), if it did.
    scoring_error: Option<String>,
}

// The flow worker's inputs and outputs are each one thing; a struct would
// only rename them.
#[allow(clippy::too_many_arguments)]
fn worker_loop(
    proc: &mut Extractor,
    mut scorer: Option<WorkerScorer>,
    shard: usize,
    rxs: Vec<Receiver<Decoded>>,
    ordered: bool,
    (flow_tx, flow_pool_rx): (Sender<FlowBatch>, Receiver<FlowBatch>),
    batch_flows: usize,
    stop: &AtomicBool,
) -> WorkerOutcome {
    let started = Instant::now();
    let mut scoring_error: Option<String> = None;
    let mut recv_blocked = Duration::ZERO;
    let mut send_blocked = Duration::ZERO;
    let fresh = |pool: &Receiver<FlowBatch>| {
        pool.try_recv()
            .unwrap_or_else(|_| FlowBatch::with_capacity(batch_flows))
    };
    let mut out = fresh(&flow_pool_rx);
    let mut open = true;
    // Scores a non-empty batch (inference in the workers), sends it on and
    // leaves an empty one from the pool in its place; once the consumer is
    // gone, or scoring failed (the run then stops), flows are dropped.
    let mut handoff = |b: &mut FlowBatch| {
        if b.is_empty() && b.mark.is_none() {
            return;
        }
        // A GPU shard scoring on the device hands off scored batches.
        if let (true, Some(s)) = (open && !b.is_empty() && b.scored.is_none(), scorer.as_mut()) {
            if let Err(e) = s.score(b) {
                tracing::error!(
                    message = "scoring failed in a flow worker; the run stops",
                    shard,
                    error = %format!("{e:#}")
                );
                scoring_error = Some(format!("{e:#}"));
                open = false;
                stop.store(true, Ordering::Relaxed);
            }
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
    let mut inbox = Inbox::new(rxs, ordered);
    // The last flush request carried out (tagged input).
    let mut flushed = 0;
    // The capture clock's tick period so far.
    let mut tick = i64::MIN;
    let mut published = ShardStats::default();
    let mut published_at = Instant::now();
    let mut emergency = EmergencyWatch::new(shard);
    let max_flows = proc.max_flows();
    // Every reason is served from the start (at 0), so rates exist at once.
    for reason in tapstream_ingest::EndReason::ALL {
        metrics::counter!("tapstream_flows_ended_total", "reason" => reason.as_str()).increment(0);
    }
    loop {
        let wait = proc.batched().then_some(GPU_IDLE);
        let chunk = match inbox.recv(wait, &mut recv_blocked) {
            Got::Chunk(c) => c,
            Got::Done => break,
            Got::Idle => {
                proc.idle(&mut Output {
                    batch: &mut out,
                    max_flows: batch_flows,
                    handoff: &mut handoff,
                });
                handoff(&mut out);
                continue;
            }
        };
        let (recs, pos) = chunk.part(shard);
        let origins = chunk.origins_of(shard);
        let mut output = Output {
            batch: &mut out,
            max_flows: batch_flows,
            handoff: &mut handoff,
        };
        let mut done = 0;
        for &(at, ts) in &chunk.ticks {
            let t = ts.div_euclid(TICK_US);
            if t <= tick {
                continue;
            }
            tick = t;
            // The shard's packets up to the one that moved the clock, then
            // the clock.
            let upto = pos.partition_point(|&p| p <= at);
            process_part(proc, &chunk, recs, origins, done..upto, &mut output);
            done = done.max(upto);
            proc.advance_into(ts, &mut output);
        }
        process_part(proc, &chunk, recs, origins, done..recs.len(), &mut output);
        if chunk.tagged {
            // Settled so far once the flows handed off before are: every
            // message below the chunk's bound was read, and the oldest open
            // flow holds back its own message and all after it.
            let mut safe = chunk.next_origin;
            if let Some(o) = proc.oldest_open_origin() {
                safe = safe.min(o);
            }
            if chunk.flush != 0 {
                proc.flush_into(&mut output);
                flushed = chunk.flush;
            }
            output.batch.mark = Some(Mark {
                shard: shard as u32,
                safe,
                flushed,
            });
        }
        metrics::counter!("tapstream_packets_processed_total").increment(recs.len() as u64);
        // Back to its decoder's pool once every worker has dropped it.
        drop(chunk);
        // Hand off what ended in this chunk now, so alerts are not delayed.
        handoff(&mut out);
        emergency.observe(&proc.stats(), max_flows);
        if published_at.elapsed() >= PUBLISH_EVERY {
            published_at = Instant::now();
            publish_flow_stats(&mut published, &proc.stats());
        }
    }
    proc.flush_into(&mut Output {
        batch: &mut out,
        max_flows: batch_flows,
        handoff: &mut handoff,
    });
    handoff(&mut out);
    let stats = proc.stats();
    publish_flow_stats(&mut published, &stats);
    emergency.observe(&stats, max_flows);
    WorkerOutcome {
        stats,
        busy: started
            .elapsed()
            .saturating_sub(recv_blocked)
            .saturating_sub(send_blocked),
        device_error: proc.error(),
        scoring_error,
    }
}

/// How often a worker adds its flow table counters to the metrics.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// Adds what changed since `published` to the flow metrics (each worker its
/// own share; the active-flow gauge moves by this shard's change).
fn publish_flow_stats(published: &mut ShardStats, now: &ShardStats) {
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

/// Processes `recs[range]`, with their origins when the chunk is tagged.
fn process_part<F: FnMut(&mut FlowBatch)>(
    proc: &mut Extractor,
    chunk: &DecodedChunk,
    recs: &[PacketRecord],
    origins: &[u64],
    range: std::ops::Range<usize>,
    out: &mut Output<'_, F>,
) {
    let part = recs.get(range.clone()).unwrap_or_default();
    if chunk.tagged {
        proc.process_tagged_into(part, origins.get(range).unwrap_or_default(), out);
    } else {
        proc.process_into(part, out);
    }
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
        assert_eq!(fc.emergency_timeout_us, 30_000_000);
        assert_eq!(fc.emergency_new_timeout_us, 1_000_000);
        assert_eq!(fc.emergency_recovery_pct, 30);
    }

    #[test]
    fn the_smaller_of_max_flows_and_the_memcap_wins() {
        let mut cfg = Config::default();
        cfg.flow.memcap_mib = 80;
        let per_shard = (80 << 20) / 2 / ShardProcessor::BYTES_PER_FLOW;
        assert_eq!(flow_config(&cfg, 2).max_flows, per_shard);
        cfg.flow.max_flows = 1000;
        assert_eq!(flow_config(&cfg, 2).max_flows, 500);
        // A cap too small for one flow still leaves one.
        cfg.flow.memcap_mib = 1;
        assert_eq!(flow_config(&cfg, 4096).max_flows, 1);
    }

    /// A live source drops (and reports) the packets of a chunk when the
    /// pipeline holds every chunk of the pool, and sends again once one
    /// comes back.
    #[test]
    fn live_out_drops_when_the_pool_is_empty_and_recovers() {
        let (pool_tx, pool_rx) = bounded::<RawChunk>(2);
        pool_tx.send(RawChunk::default()).unwrap();
        pool_tx.send(RawChunk::default()).unwrap();
        let (tx, rx) = bounded::<Pooled<RawChunk>>(2);
        let mut out = LiveOut::new(vec![tx], (pool_tx, pool_rx));
        let mut c = out.first().unwrap();
        let pkt = RawPacket {
            ts_us: 1,
            link_type: 1,
            orig_len: 3,
            data: &[1, 2, 3],
        };
        c.push(&pkt);
        assert!(matches!(out.ship(&mut c), Shipped::Sent));
        // Both chunks are out (one queued, one being filled): no room.
        c.push(&pkt);
        c.push(&pkt);
        assert!(matches!(out.ship(&mut c), Shipped::Dropped(2)));
        assert!(c.is_empty());
        assert_eq!(out.queued(), 1);
        // The decoder takes the queued chunk and gives it back.
        drop(rx.recv().unwrap());
        c.push(&pkt);
        assert!(matches!(out.ship(&mut c), Shipped::Sent));
        let sent = rx.recv().unwrap();
        assert_eq!(sent.len(), 1);
        drop(rx);
        drop(sent);
        c.push(&pkt);
        // The decoder is gone: the pipeline is shutting down.
        assert!(matches!(out.ship(&mut c), Shipped::Closed));
    }

    /// A clock-only chunk moves the shards' clock after its packets.
    #[test]
    fn a_live_clock_becomes_a_tick_after_the_packets() {
        let (mut raw, _) = chunk();
        raw.set_clock(99_000_000);
        let mut scratch = Scratch::default();
        let mut out = DecodedChunk::default();
        let mut report = DecoderReport::default();
        decode_chunk(&raw, 2, &mut scratch, &mut out, &mut report);
        let last = *out.ticks.last().unwrap();
        assert_eq!(last, (out.recs.len() as u32, 99_000_000));
        // Alone in a chunk (a quiet link), the clock is the only tick.
        let mut raw = RawChunk::default();
        raw.set_clock(5_000_000);
        decode_chunk(&raw, 2, &mut scratch, &mut out, &mut report);
        assert_eq!(out.ticks, vec![(0, 5_000_000)]);
    }

    /// A chunk of UDP packets from 50 hosts (timestamps jumping forward and
    /// back across seconds) and a few frames too short to decode.
    fn chunk() -> (RawChunk, Vec<i64>) {
        use std::net::{IpAddr, Ipv4Addr};
        use tapstream_ingest::pcapgen::{Frame, LINKTYPE_ETHERNET};
        let mut raw = RawChunk::with_capacity(64);
        let mut stamps = Vec::new();
        for i in 0..300i64 {
            let ts = 5_000_000 + (i % 7) * 400_000 - (i % 3) * 900_000 + i * 10_000;
            let frame = if i % 31 == 0 {
                vec![0u8; 10]
            } else {
                let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, (i % 50) as u8));
                let dst = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1));
                Frame::udp(src, dst, 1000 + (i % 50) as u16, 53, 20).to_bytes()
            };
            raw.push(&RawPacket {
                ts_us: ts,
                link_type: LINKTYPE_ETHERNET,
                orig_len: frame.len() as u32,
                data: &frame,
            });
            stamps.push(ts);
        }
        (raw, stamps)
    }

    #[test]
    fn decode_chunk_groups_by_shard_in_capture_order_and_marks_ticks() {
        let (raw, _) = chunk();
        // The same packets decoded one by one, as a single thread would.
        let mut sequential = Vec::new();
        let mut rec = PacketRecord::default();
        for d in &raw.pkts {
            if decode(&raw.packet(d).unwrap(), &mut rec).is_ok() {
                sequential.push(rec);
            }
        }
        for shards in [1, 3, 8] {
            let mut out = DecodedChunk::default();
            let mut report = DecoderReport::default();
            decode_chunk(&raw, shards, &mut Scratch::default(), &mut out, &mut report);
            assert_eq!(report.decoded, sequential.len() as u64);
            assert_eq!(report.decoded + report.skipped.total(), 300);
            assert_eq!(report.skipped.get(SkipReason::Truncated), 10);
            let mut seen = 0;
            for s in 0..shards {
                let (recs, pos) = out.part(s);
                assert_eq!(recs.len(), pos.len());
                assert!(pos.windows(2).all(|w| w[0] < w[1]), "capture order");
                for (r, &p) in recs.iter().zip(pos) {
                    assert_eq!(shard_of(r.hash, shards), s);
                    assert_eq!(Some(r), sequential.get(p as usize));
                }
                seen += recs.len();
            }
            assert_eq!(seen, sequential.len());
            // A tick wherever the largest timestamp so far enters a new second.
            let mut expected = Vec::new();
            let mut max = i64::MIN;
            for (i, r) in sequential.iter().enumerate() {
                if r.ts_us > max {
                    if max == i64::MIN || r.ts_us / TICK_US > max / TICK_US {
                        expected.push((i as u32, r.ts_us));
                    }
                    max = r.ts_us;
                }
            }
            assert!(expected.len() > 2);
            assert_eq!(out.ticks, expected);
            assert_eq!(out.part(shards), (&[][..], &[][..]));
        }
    }

    #[test]
    fn pooled_items_go_back_to_their_pool() {
        let (tx, rx) = bounded::<RawChunk>(2);
        let (raw, _) = chunk();
        let shared = Arc::new(Pooled::new(raw, &tx));
        let other = shared.clone();
        drop(shared);
        assert!(rx.try_recv().is_err(), "still in use");
        drop(other);
        let mut back = rx.try_recv().unwrap();
        assert_eq!(back.pkts.len(), 300);
        back.clear();
        assert!(back.pkts.is_empty() && back.data.is_empty());
    }
}
