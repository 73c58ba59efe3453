//! One shard's flow stage on the CPU: the flow table and the CPU extractor
//! driven together, packet records in, finished feature rows out.
//!
//! The pipeline shards packets by flow hash and gives each shard one
//! [`ShardProcessor`], owned by one thread. Keeping the table and the
//! extractor behind one type guarantees the event order the extractor relies
//! on: a slot's flow is finalized (its row appended to the output batch)
//! before the slot is reused.

use tapstream_ingest::flow::{EndedFlow, FlowConfig, FlowConfigError, FlowTable};
use tapstream_ingest::{EndReason, PacketRecord};

use crate::batch::FlowBatch;
use crate::cpu::CpuExtractor;
use crate::schema::NUM_FEATURES;

/// Why a shard could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The flow configuration was rejected.
    #[error("invalid flow configuration: {0}")]
    Config(#[from] FlowConfigError),
}

/// Counters of one shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// The shard's number.
    pub shard_id: u32,
    /// Flows open now.
    pub active_flows: u64,
    /// Flows opened since the start (continuations included).
    pub flows_created: u64,
    /// Flows ended, per reason, in [`EndReason::ALL`] order.
    pub ended: [u64; 6],
    /// Flows evicted because the table was full (also in `ended`).
    pub evictions: u64,
    /// Packets placed in flows.
    pub packets: u64,
}

impl ShardStats {
    /// Flows ended for `reason`.
    pub fn ended_for(&self, reason: EndReason) -> u64 {
        self.ended[tapstream_ingest::flow::reason_index(reason)]
    }

    /// Flows ended for any reason.
    pub fn ended_total(&self) -> u64 {
        self.ended.iter().sum()
    }
}

/// Flow table plus CPU extractor for one shard.
#[derive(Debug)]
pub struct ShardProcessor {
    table: FlowTable,
    ext: CpuExtractor,
    shard_id: u32,
}

/// Finalizes an ended flow into `out`.
#[inline]
fn emit(ext: &CpuExtractor, ended: &EndedFlow, out: &mut FlowBatch) {
    let mut row = [0.0; NUM_FEATURES];
    ext.finalize(ended.slot, &ended.meta, &mut row);
    out.push(ended.meta, &row);
}

impl ShardProcessor {
    /// A shard with an empty flow table; fails if `cfg` is invalid.
    pub fn new(cfg: FlowConfig, shard_id: u32) -> Result<Self, ShardError> {
        let table = FlowTable::new(cfg)?;
        Ok(ShardProcessor {
            ext: CpuExtractor::new(cfg.activity_timeout_us),
            table,
            shard_id,
        })
    }

    /// Processes records in order; flows that end are appended to `out`
    /// (meta and feature row). `out` is not cleared.
    pub fn process(&mut self, recs: &[PacketRecord], out: &mut FlowBatch) {
        let ShardProcessor { table, ext, .. } = self;
        for rec in recs {
            let placement = table.process(rec, &mut |e: EndedFlow| emit(ext, &e, out));
            ext.on_packet(rec, &placement);
        }
    }

    /// Moves packet time to `now_us` (for a shard that saw no packets
    /// lately), appending flows that became idle or finished lingering.
    pub fn advance(&mut self, now_us: i64, out: &mut FlowBatch) {
        let ShardProcessor { table, ext, .. } = self;
        table.advance(now_us, &mut |e: EndedFlow| emit(ext, &e, out));
    }

    /// Ends every open flow ([`EndReason::EndOfInput`]) into `out`.
    pub fn flush(&mut self, out: &mut FlowBatch) {
        let ShardProcessor { table, ext, .. } = self;
        table.flush(&mut |e: EndedFlow| emit(ext, &e, out));
    }

    /// Counters since the shard was created.
    pub fn stats(&self) -> ShardStats {
        let t = self.table.stats();
        ShardStats {
            shard_id: self.shard_id,
            active_flows: t.active,
            flows_created: t.created,
            ended: t.ended,
            evictions: t.evictions(),
            packets: t.packets,
        }
    }

    /// The shard's number.
    pub fn shard_id(&self) -> u32 {
        self.shard_id
    }

    /// The flow configuration.
    pub fn config(&self) -> &FlowConfig {
        self.table.config()
    }

    /// The shard's packet-time clock, µs (`i64::MIN` before any packet).
    pub fn clock_us(&self) -> i64 {
        self.table.clock_us()
    }
}
