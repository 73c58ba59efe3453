//! Packet sources: where a run's packets come from, behind one trait.
//!
//! A capture file ([`FileSource`]), a live interface
//! ([`crate::live::LiveSource`]) and a Kafka topic (the `tapstream-kafka`
//! crate) each implement [`PacketSource`]: they read in their own way and
//! hand every packet to the same [`ChunkWriter`], which chunks them for the
//! decoders and applies the source's [`Pacing`]. Everything after the writer
//! is one code path, whatever the source.
//!
//! Two properties are the source's, not every chunk's: its pacing (offline
//! sources wait and lose nothing; a live source drops when the pipeline is
//! full and stamps the wall clock), and whether it numbers its input (the
//! Kafka source, whose offsets may only be committed once what each message
//! caused is settled; see [`PacketChunk::numbering`]).

mod chunk;
mod file;
mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use chunk::{PacketChunk, CHUNK_BYTES};
pub use file::FileSource;
pub use writer::{ChunkQueues, ChunkWriter, CLOCK_EVERY, FLUSH_WALL};

/// Packets a source reads between looks at the wall clock (a partly filled
/// chunk is sent after [`FLUSH_WALL`], also for a file still being written
/// or a slow link).
pub const CHECK_EVERY: u32 = 64;

/// When a numbered source's pending output should go: items waiting since
/// `waiting` for [`FLUSH_WALL`], or nothing waiting but input completed
/// since the last send (`progressed`), which was that long ago (`sent_at`).
pub fn send_due(waiting: Option<Instant>, progressed: bool, sent_at: Instant) -> bool {
    match waiting {
        Some(opened) => opened.elapsed() >= FLUSH_WALL,
        None => progressed && sent_at.elapsed() >= FLUSH_WALL,
    }
}

use crate::skip::SkipCounters;

/// How a source meets a pipeline that falls behind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pacing {
    /// Input that can wait (files, Kafka): the source waits for room and
    /// nothing is lost; flows move on packet time alone.
    #[default]
    Offline,
    /// A network that cannot wait: the source never blocks (the packets of a
    /// chunk with nowhere to go are dropped and counted), and it stamps its
    /// chunks with the wall clock so flows time out on a quiet link.
    Live,
}

/// Where a run's packets come from; see the module docs.
pub trait PacketSource: Send {
    /// What is read, for summaries: a path, `interface eth0`, `kafka:…`.
    fn describe(&self) -> String;

    /// How the source meets a full pipeline.
    fn pacing(&self) -> Pacing {
        Pacing::Offline
    }

    /// Whether the source numbers its input ([`ChunkWriter::push_numbered`]);
    /// the flow workers then tell it how far the input is settled.
    fn numbered(&self) -> bool {
        false
    }

    /// Reads until the input ends, the source is told to stop (its own stop
    /// request, or [`ChunkWriter::stopped`]) or the pipeline takes no more,
    /// handing every packet to `out`; returns what it counted. What was read
    /// is sent on before it returns, even after a stop.
    fn run(self: Box<Self>, out: ChunkWriter) -> SourceReport;
}

/// Progress shared with the caller's progress bar.
#[derive(Debug, Default)]
pub struct Progress {
    /// Input bytes consumed so far (file bytes, or message bytes).
    pub bytes: AtomicU64,
    /// Packets read so far.
    pub packets: AtomicU64,
    /// The timestamp of the first packet read, µs (packet time starts
    /// there: a detector that learns for a while counts from it).
    pub first_packet_us: OnceLock<i64>,
}

/// What a source counted.
#[derive(Clone, Debug, Default)]
pub struct SourceReport {
    /// Packet records read (a truncated final record counts).
    pub packets: u64,
    /// Original (wire) bytes of those packets.
    pub bytes: u64,
    /// Packets the source could not pass on, by reason (truncated records,
    /// a full pipeline).
    pub skipped: SkipCounters,
    /// Corruption or a failure that stopped reading before the end.
    pub read_error: Option<String>,
    /// Time spent reading and copying packets (not waiting on queues or
    /// for packets).
    pub busy: Duration,
    /// What the kernel and libpcap counted (live capture only).
    pub capture: Option<CaptureReport>,
    /// What a consumer-group source counted (Kafka only).
    pub kafka: Option<KafkaReport>,
    /// Packets read per link type (file and live sources).
    pub link_types: LinkTypes,
}

/// Packets read per link type: a pcapng file may mix interfaces, and a
/// capture none of whose packets can be used is reported by its link types.
/// Keeps the first [`LinkTypes::MAX`] link types seen; packets of any
/// other are counted together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkTypes {
    seen: Vec<(u32, u64)>,
    other: u64,
}

impl LinkTypes {
    /// Link types kept apart.
    pub const MAX: usize = 16;

    /// Counts one packet of `link_type`.
    #[inline]
    pub fn add(&mut self, link_type: u32) {
        self.add_n(link_type, 1);
    }

    fn add_n(&mut self, link_type: u32, n: u64) {
        if let Some(e) = self.seen.iter_mut().find(|e| e.0 == link_type) {
            e.1 += n;
        } else if self.seen.len() < Self::MAX {
            self.seen.push((link_type, n));
        } else {
            self.other += n;
        }
    }

    /// `(link type, packets)` in the order first seen.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.seen.iter().copied()
    }

    /// Packets of link types past the first [`LinkTypes::MAX`].
    pub fn other(&self) -> u64 {
        self.other
    }

    /// Adds another source's counts.
    pub fn merge(&mut self, o: &LinkTypes) {
        for &(lt, n) in &o.seen {
            self.add_n(lt, n);
        }
        self.other += o.other;
    }
}

impl SourceReport {
    /// Adds another source's counts (capture threads of one interface).
    pub fn merge(&mut self, r: SourceReport) {
        self.packets += r.packets;
        self.bytes += r.bytes;
        self.skipped.merge(&r.skipped);
        self.link_types.merge(&r.link_types);
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

/// What the kernel and libpcap counted for a live capture, summed over the
/// capture threads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureReport {
    /// The interface.
    pub interface: String,
    /// Capture threads.
    pub threads: usize,
    /// Packets the kernel passed the filter (`ps_recv`).
    pub kernel_received: u64,
    /// Packets the kernel dropped: its buffer was full (`ps_drop`).
    pub kernel_dropped: u64,
    /// Packets the interface or driver dropped (`ps_ifdrop`).
    pub interface_dropped: u64,
    /// Packets read but dropped because the pipeline was full (also the
    /// `queue_full` skip counter).
    pub queue_dropped: u64,
}

impl CaptureReport {
    /// Adds another capture thread's counts.
    pub fn merge(&mut self, o: &CaptureReport) {
        if self.interface.is_empty() {
            self.interface.clone_from(&o.interface);
        }
        self.threads += o.threads;
        self.kernel_received += o.kernel_received;
        self.kernel_dropped += o.kernel_dropped;
        self.interface_dropped += o.interface_dropped;
        self.queue_dropped += o.queue_dropped;
    }
}

/// What a consumer-group source counted (filled by the Kafka source).
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

/// Publishes what a source has read so far: the packet and byte counters of
/// the metrics, and the packets of the caller's [`Progress`] (each source
/// its own share, so capture threads add up).
#[derive(Debug)]
pub struct ReadMeter {
    packets: metrics::Counter,
    bytes: metrics::Counter,
    published: (u64, u64),
}

impl Default for ReadMeter {
    fn default() -> Self {
        ReadMeter {
            packets: metrics::counter!("tapstream_packets_read_total"),
            bytes: metrics::counter!("tapstream_bytes_read_total"),
            published: (0, 0),
        }
    }
}

impl ReadMeter {
    /// Adds what `report` counted since the last call.
    pub fn publish(&mut self, report: &SourceReport, progress: &Progress) {
        let packets = report.packets.saturating_sub(self.published.0);
        self.packets.increment(packets);
        self.bytes
            .increment(report.bytes.saturating_sub(self.published.1));
        progress.packets.fetch_add(packets, Ordering::Relaxed);
        self.published = (report.packets, report.bytes);
    }
}
