//! `[pipeline]`: stage threads and the batches between them.

use serde::{Deserialize, Serialize};

use super::{in_range, invalid, ConfigError};

/// `[pipeline]`: stage threads and the batches between them.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    /// Flow worker threads (flow table + features), each owning one shard of
    /// the flow hash space. 0 means one per CPU core minus the reader's and
    /// the decoders', at least 1. At most 256.
    pub workers: usize,
    /// Decoder threads (packet bytes → records, split by shard) between the
    /// reader and the flow workers. 0 means a quarter of the cores left after
    /// the reader's (rounded), at least 1. At most 256.
    pub decoders: usize,
    /// Packets per chunk from the reader to a decoder (64..=65536).
    pub batch_packets: usize,
    /// Decoded chunks in flight per decoder; a decoder waits when all are in
    /// use, so offline input never drops (1..=1024).
    pub queue_batches: usize,
    /// Ended flows per batch from a worker to inference (1..=65536).
    pub batch_flows: usize,
    /// What packets are split over the workers by: `pair` (default), their
    /// address pair, so the fragments of a datagram meet its flow in one
    /// worker; or `flow`, the 5-tuple, which spreads one busy host pair over
    /// several workers but cannot reassemble fragments (needs `[defrag]
    /// enabled = false`).
    pub shard_by: ShardBy,
}

/// What packets are sharded by.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ShardBy {
    /// The address pair (symmetric).
    #[default]
    Pair,
    /// The 5-tuple (symmetric).
    Flow,
}

impl Default for PipelineSection {
    fn default() -> Self {
        PipelineSection {
            workers: 0,
            decoders: 0,
            batch_packets: 4096,
            queue_batches: 8,
            batch_flows: 1024,
            shard_by: ShardBy::Pair,
        }
    }
}

impl PipelineSection {
    /// Checks every range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.workers > 256 {
            return Err(invalid(
                "pipeline.workers",
                "must be at most 256 (0 = auto)",
            ));
        }
        if self.decoders > 256 {
            return Err(invalid(
                "pipeline.decoders",
                "must be at most 256 (0 = auto)",
            ));
        }
        in_range("pipeline.batch_packets", self.batch_packets, 64..=65536)?;
        in_range("pipeline.queue_batches", self.queue_batches, 1..=1024)?;
        in_range("pipeline.batch_flows", self.batch_flows, 1..=65536)?;
        Ok(())
    }

    /// Worker threads to start: the configured count, or when 0 one per core
    /// minus the reader's and the decoders' (at least one).
    pub fn worker_threads(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        logical_cores()
            .saturating_sub(1 + self.decoder_threads())
            .max(1)
    }

    /// Decoder threads to start: the configured count, or when 0 a quarter
    /// of the cores left after the reader's, rounded (at least one). A
    /// decoder keeps up with about 2.7 flow workers (21 vs 7.7 M pkt/s per
    /// thread on the benchmark capture), so this splits those cores about
    /// 1 : 3.
    pub fn decoder_threads(&self) -> usize {
        if self.decoders > 0 {
            return self.decoders;
        }
        auto_decoders(logical_cores())
    }
}

/// Logical cores this process may use (1 where unknown).
pub fn logical_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The automatic decoder count on a machine with `cores` logical cores:
/// (cores − 1) / 4, rounded.
fn auto_decoders(cores: usize) -> usize {
    (cores.saturating_add(1) / 4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_workers_is_at_least_one() {
        assert!(PipelineSection::default().worker_threads() >= 1);
        let p = PipelineSection {
            workers: 3,
            ..PipelineSection::default()
        };
        assert_eq!(p.worker_threads(), 3);
    }

    #[test]
    fn auto_decoders_split_the_cores() {
        assert!(PipelineSection::default().decoder_threads() >= 1);
        // A quarter of the cores after the reader's, rounded, at least one.
        for (cores, decoders) in [(1, 1), (2, 1), (4, 1), (8, 2), (16, 4), (64, 16)] {
            assert_eq!(auto_decoders(cores), decoders, "{cores} cores");
        }
    }
}
