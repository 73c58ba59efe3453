//! What a run measured, stage by stage: the report the summary and
//! `--summary-json` are made from.

use std::path::PathBuf;
use std::time::Duration;

use tapstream_connectors::limit::SuppressedCounts;
use tapstream_ingest::source::{CaptureReport, KafkaReport, LinkTypes};
use tapstream_ingest::{SkipCounters, SourceReport};
use tapstream_kernels::ShardStats;

/// What the source counted, with the decoders' counters merged in.
#[derive(Clone, Debug, Default)]
pub struct ReaderReport {
    /// Packet records read from the source (a truncated final record
    /// counts).
    pub packets: u64,
    /// Original (wire) bytes of those packets.
    pub bytes: u64,
    /// Packets decoded into records and sent to the flow workers.
    pub decoded: u64,
    /// IP fragments sent to the flow workers' reassembly
    /// ([`WorkersReport::defrag`] says what became of them).
    pub fragments: u64,
    /// Packets that could not become part of a flow, by reason.
    pub skipped: SkipCounters,
    /// Corruption that stopped reading before the end of the input.
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
    pub kafka: Option<KafkaReport>,
    /// What the kernel and libpcap counted (live capture only).
    pub capture: Option<CaptureReport>,
    /// Packets read per link type (file and live input).
    pub link_types: LinkTypes,
}

impl From<SourceReport> for ReaderReport {
    fn from(s: SourceReport) -> Self {
        ReaderReport {
            packets: s.packets,
            bytes: s.bytes,
            decoded: 0,
            fragments: 0,
            skipped: s.skipped,
            read_error: s.read_error,
            busy: s.busy,
            decoders: 0,
            decode_busy: Duration::ZERO,
            kafka: s.kafka,
            capture: s.capture,
            link_types: s.link_types,
        }
    }
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
    /// What the workers' reassembly did with the fragments.
    pub defrag: tapstream_ingest::defrag::DefragStats,
}

impl WorkersReport {
    /// Adds one shard's counters to the total.
    pub(crate) fn add(&mut self, s: &ShardStats) {
        let total = &mut self.stats;
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
}

/// What the consumer counted.
#[derive(Clone, Debug, Default)]
pub struct ConsumerReport {
    /// Flows received from the workers.
    pub flows: u64,
    /// Rows scored by the model.
    pub scored: u64,
    /// Rows the flow workers scored (inference in the workers; part of
    /// `scored`).
    pub scored_in_workers: u64,
    /// Inference calls.
    pub inference_calls: u64,
    /// Time inside the engine.
    pub inference_busy: Duration,
    /// Time selecting features, scoring and thresholding (not waiting).
    pub busy: Duration,
    /// Class labels, index-aligned with `alerts_by_class`.
    pub labels: Vec<String>,
    /// Alerts per class: flagged flows the limiter let through, written as
    /// lines of their own or counted into episodes.
    pub alerts_by_class: Vec<u64>,
    /// Alerts the limiter suppressed (not written, not in
    /// `alerts_by_class`), per reason.
    pub suppressed: SuppressedCounts,
    /// Alert lines written: one per flagged flow, or the episode records.
    pub alert_lines: u64,
    /// What the episode table did (`None` when alerts are per flow).
    pub episodes: Option<tapstream_connectors::episode::EpisodeCounts>,
    /// Re-opens of the alert output (log rotation) that succeeded.
    pub eve_reopens: u64,
    /// Re-opens that failed (the sink kept writing to its old file).
    pub eve_reopen_errors: u64,
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
    /// Per detector, the first (`[model]`) first: flows scored and flagged,
    /// models swapped in. Empty for consumers that do not score.
    pub detectors: Vec<crate::stage::detectors::DetectorCounts>,
}

impl ConsumerReport {
    /// All alerts (flagged flows the limiter let through).
    pub fn alerts(&self) -> u64 {
        self.alerts_by_class.iter().sum()
    }
}

/// Everything a run measured.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// What was read: the capture file, interface or topics.
    pub input: PathBuf,
    /// Reader stage.
    pub reader: ReaderReport,
    /// Flow worker stage.
    pub workers: WorkersReport,
    /// The context stage, when it ran.
    pub context: Option<crate::stage::context::ContextReport>,
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
        let d = &self.workers.defrag;
        // A reassembled datagram is one packet in a flow for its fragments.
        (self.workers.stats.packets + d.reassembled + d.dropped()).saturating_sub(d.datagrams)
            + self.reader.skipped.total()
    }

    /// True when every packet read is in a flow, a skip counter or a
    /// dropped fragment, every decoded packet (and reassembled datagram)
    /// reached a flow, and every fragment was reassembled or dropped.
    pub fn all_accounted(&self) -> bool {
        let d = &self.workers.defrag;
        self.accounted_packets() == self.reader.packets
            && self.reader.decoded + d.datagrams == self.workers.stats.packets
            && self.reader.fragments == d.fragments
            && d.fragments == d.reassembled + d.dropped() + d.waiting
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
