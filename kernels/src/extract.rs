//! [`FeatureExtractor`]: one shard's flow table and feature arithmetic,
//! whichever device does the arithmetic.
//!
//! The CPU reference ([`ShardProcessor`]) and the GPU twin
//! ([`GpuShard`]) drive the same flow table, so flows, their ends and their
//! order never depend on the device; only where a row is computed (and when
//! it arrives: the GPU's per batch) differs. A flow worker holds one
//! extractor behind this trait and never asks which it is. [`Backend`]
//! names the device a run opened; in a build without the `cuda` feature its
//! `Cuda` variant cannot be built (see [`crate::gpu::cuda`]'s stand-in).

use tapstream_ingest::flow::FlowConfig;
use tapstream_ingest::PacketRecord;

use crate::batch::{FlowBatch, Mark};
use crate::context::FlowStart;
use crate::gpu::cuda::{CudaDevice, CudaExecutor};
use crate::gpu::{BatchExecutor, DeviceScoring, GpuError, GpuShard};
use crate::shard::{Output, ShardError, ShardProcessor, ShardStats};

/// Where a shard puts ended flows, behind the trait: the worker's batch and
/// its handoff.
pub type Handoff<'a, 'f> = Output<'a, &'f mut dyn FnMut(&mut FlowBatch)>;

/// One shard's flows and features; see the module docs.
pub trait FeatureExtractor: Send {
    /// Processes packet records in capture order; flows that end reach
    /// `out` (at once on the CPU, when their batch completes on a GPU).
    fn process(&mut self, recs: &[PacketRecord], out: &mut Handoff<'_, '_>);

    /// Like [`process`](Self::process) for records tagged with the input
    /// messages they came from (`origins`, beside `recs`; see
    /// [`ShardProcessor::process_tagged_into`]).
    fn process_numbered(
        &mut self,
        recs: &[PacketRecord],
        origins: &[u64],
        out: &mut Handoff<'_, '_>,
    );

    /// The oldest input message an open flow started in (numbered input);
    /// nothing from it on may be committed.
    fn oldest_open_origin(&self) -> Option<u64>;

    /// Moves packet time to `now_us`, ending flows that became idle.
    fn advance(&mut self, now_us: i64, out: &mut Handoff<'_, '_>);

    /// Ends every flow and delivers them all.
    fn flush(&mut self, out: &mut Handoff<'_, '_>);

    /// True when ended flows arrive per batch (the GPU), so a quiet worker
    /// should call [`idle`](Self::idle) now and then.
    fn batched(&self) -> bool {
        false
    }

    /// Nothing arrived for a while: deliver flows still waiting in a batch.
    fn idle(&mut self, out: &mut Handoff<'_, '_>) {
        let _ = out;
    }

    /// The first device error, if the device failed (its flows are lost).
    fn error(&self) -> Option<String> {
        None
    }

    /// Most flows the shard's table holds.
    fn max_flows(&self) -> usize;

    /// Asks the extractor to record flow starts for the context stage
    /// ([`ShardProcessor::track_starts`]); false when it cannot (the GPU
    /// extractor: the context on the device belongs to its own work).
    fn track_starts(&mut self) -> bool {
        false
    }

    /// Appends the starts and outcomes recorded since the last call
    /// ([`ShardProcessor::take_starts`]).
    fn take_starts(&mut self, order: &dyn Fn(u32) -> u64, out: &mut Vec<FlowStart>) {
        let _ = (order, out);
    }

    /// Counters.
    fn stats(&self) -> ShardStats;

    /// After a numbered chunk whose every origin below `complete_below` is
    /// wholly read: carries out flush request `flush` (non-zero: every flow
    /// ends) and returns the shard's [`Mark`]. The mark is settled once the
    /// flows handed off before it are: nothing below `complete_below` is
    /// left in the shard, except what the oldest open flow holds back.
    fn mark(
        &mut self,
        shard: u32,
        complete_below: u64,
        flush: u64,
        flushed: &mut u64,
        out: &mut Handoff<'_, '_>,
    ) -> Mark {
        let mut safe = complete_below;
        if let Some(o) = self.oldest_open_origin() {
            safe = safe.min(o);
        }
        if flush != 0 {
            self.flush(out);
            *flushed = flush;
        }
        Mark {
            shard,
            safe,
            flushed: *flushed,
        }
    }
}

impl FeatureExtractor for ShardProcessor {
    fn process(&mut self, recs: &[PacketRecord], out: &mut Handoff<'_, '_>) {
        self.process_into(recs, out);
    }

    fn process_numbered(
        &mut self,
        recs: &[PacketRecord],
        origins: &[u64],
        out: &mut Handoff<'_, '_>,
    ) {
        self.process_tagged_into(recs, origins, out);
    }

    fn oldest_open_origin(&self) -> Option<u64> {
        ShardProcessor::oldest_open_origin(self)
    }

    fn advance(&mut self, now_us: i64, out: &mut Handoff<'_, '_>) {
        self.advance_into(now_us, out);
    }

    fn flush(&mut self, out: &mut Handoff<'_, '_>) {
        self.flush_into(out);
    }

    fn max_flows(&self) -> usize {
        self.config().max_flows
    }

    fn track_starts(&mut self) -> bool {
        ShardProcessor::track_starts(self);
        true
    }

    fn take_starts(&mut self, order: &dyn Fn(u32) -> u64, out: &mut Vec<FlowStart>) {
        ShardProcessor::take_starts(self, order, out);
    }

    fn stats(&self) -> ShardStats {
        ShardProcessor::stats(self)
    }
}

impl<E: BatchExecutor> FeatureExtractor for GpuShard<E> {
    fn process(&mut self, recs: &[PacketRecord], out: &mut Handoff<'_, '_>) {
        self.process_into(recs, out);
    }

    /// Numbered input is refused before a run starts (the GPU hands flows
    /// off a batch late, so marks would run ahead of them); origins are
    /// ignored and [`oldest_open_origin`](FeatureExtractor::oldest_open_origin)
    /// holds every commit back.
    fn process_numbered(
        &mut self,
        recs: &[PacketRecord],
        _origins: &[u64],
        out: &mut Handoff<'_, '_>,
    ) {
        self.process_into(recs, out);
    }

    fn oldest_open_origin(&self) -> Option<u64> {
        Some(0)
    }

    fn advance(&mut self, now_us: i64, out: &mut Handoff<'_, '_>) {
        self.advance_into(now_us, out);
    }

    fn flush(&mut self, out: &mut Handoff<'_, '_>) {
        self.flush_into(out);
    }

    fn batched(&self) -> bool {
        true
    }

    fn idle(&mut self, out: &mut Handoff<'_, '_>) {
        self.sync(out);
    }

    fn error(&self) -> Option<String> {
        GpuShard::error(self).map(|e| e.to_string())
    }

    fn max_flows(&self) -> usize {
        self.config().max_flows
    }

    fn stats(&self) -> ShardStats {
        GpuShard::stats(self)
    }
}

/// The device a run computes features on, opened.
#[derive(Clone)]
pub enum Backend {
    /// The CPU extractor (the definition of every feature).
    Cpu,
    /// A GPU with the kernels loaded.
    Cuda(CudaDevice),
}

impl Backend {
    /// A short description for summaries: "cpu" or the GPU's name.
    pub fn describe(&self) -> String {
        match self {
            Backend::Cpu => "cpu".to_string(),
            Backend::Cuda(d) => {
                let i = d.info();
                format!(
                    "cuda: {} (sm_{}{}, driver {})",
                    i.name, i.compute_capability.0, i.compute_capability.1, i.driver_version
                )
            }
        }
    }
}

/// A CPU shard behind the trait.
pub fn cpu_extractor(
    flow: FlowConfig,
    shard: u32,
) -> Result<Box<dyn FeatureExtractor>, ShardError> {
    Ok(Box::new(ShardProcessor::new(flow, shard)?))
}

/// A GPU shard on `dev` behind the trait, with batches of `batch_records`
/// records; with `scoring`, each finished batch is scored on the device
/// (see [`DeviceScoring`]).
pub fn gpu_extractor(
    dev: &CudaDevice,
    flow: FlowConfig,
    shard: u32,
    batch_records: usize,
    scoring: Option<Box<dyn DeviceScoring<CudaExecutor>>>,
) -> Result<Box<dyn FeatureExtractor>, GpuError> {
    let exec = dev.executor(batch_records, flow.activity_timeout_us)?;
    let mut s = GpuShard::new(flow, shard, exec, batch_records)?;
    if let Some(scoring) = scoring {
        s.set_scoring(scoring)?;
    }
    Ok(Box::new(s))
}
