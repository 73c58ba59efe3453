//! The throughput of the GPU feature stage, fed from pinned host records
//! that the host flow table laid out beforehand (`tapstream bench` on a GPU).

use std::time::Instant;

use anyhow::{anyhow, Result};
use tapstream_ingest::flow::FlowConfig;
use tapstream_ingest::PacketRecord;
use tapstream_kernels::gpu::cuda::{CudaDevice, CudaExecutor, PhaseTimes, PHASES};
use tapstream_kernels::gpu::records::fin_capacity;
use tapstream_kernels::gpu::{BatchExecutor, Columns, GpuError, GpuShard, ModelInput, RecordBatch};
use tapstream_kernels::schema::NUM_FEATURES;
use tapstream_kernels::shard::Output;
use tapstream_kernels::FlowBatch;

/// "upload 0.41, sort 0.05, …" in milliseconds per batch.
pub fn describe_phases(p: &PhaseTimes) -> String {
    let per = p.batches.max(1) as f64;
    PHASES
        .iter()
        .zip(p.ms.iter())
        .map(|(ph, ms)| format!("{} {:.3}", ph.name(), ms / per))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Keeps copies of the batches a [`GpuShard`] submits, in pinned memory
/// (the GPU stage benchmark replays them) and returns zero rows.
struct Recorder {
    dev: CudaDevice,
    staged: Vec<RecordBatch>,
    pending: std::collections::VecDeque<usize>,
    cap: usize,
}

impl BatchExecutor for Recorder {
    fn columns(&mut self, cap: usize, fin_cap: usize) -> Result<Columns, GpuError> {
        Ok(Columns::in_memory(cap, fin_cap))
    }

    fn submit(&mut self, batch: &RecordBatch) -> Result<(), GpuError> {
        let mut copy = RecordBatch::new(self.dev.pinned_columns(self.cap, fin_capacity(self.cap))?);
        batch.copy_into(&mut copy);
        self.pending.push_back(batch.finalized());
        self.staged.push(copy);
        Ok(())
    }

    fn finish(&mut self, rows: &mut Vec<f64>) -> Result<(), GpuError> {
        let nf = self.pending.pop_front().unwrap_or(0);
        rows.resize(rows.len() + nf * NUM_FEATURES, 0.0);
        Ok(())
    }
}

/// Throughput of the GPU feature stage.
#[derive(Clone, Debug)]
pub struct StageRate {
    /// Whether the feature rows were copied back to the host.
    pub rows_copied: bool,
    /// Packet records processed (finalize records not counted).
    pub packets: u64,
    /// All records copied and processed.
    pub records: u64,
    /// Flows finalized.
    pub flows: u64,
    /// Seconds of device work, copies included.
    pub seconds: f64,
    /// Times the record stream was replayed.
    pub passes: u32,
    /// Batches per replay.
    pub batches: usize,
    /// Segments (flows touched) per batch, on average.
    pub mean_segments: f64,
    /// Longest segment of any batch, in records.
    pub longest_segment: usize,
    /// Shards replaying the stream at the same time.
    pub shards: usize,
    /// Device time per phase over one extra, profiled pass (first shard).
    pub phases: Option<PhaseTimes>,
}

/// What [`stage_rate`] runs.
#[derive(Clone, Copy, Debug)]
pub struct StageSpec<'a> {
    /// Flow table settings.
    pub flow: FlowConfig,
    /// Records per batch.
    pub batch_records: usize,
    /// Replay for at least this long (and at least three passes).
    pub min_seconds: f64,
    /// Shards replaying at the same time.
    pub shards: usize,
    /// Also build the model-input matrix on the device.
    pub model: Option<&'a ModelInput>,
}

/// Times the GPU feature stage on `recs` (with `model`, each batch's
/// model-input matrix is built on the device too): the host flow table lays the
/// records out in pinned batches first (not timed), then the batches are
/// copied to the device, processed and their rows copied back (or left on
/// the device), two batches in flight, repeated until about `min_seconds`
/// have passed. With `shards` > 1, that many independent shards (each its
/// own executor and streams, fed by its own host thread, as the pipeline's
/// flow workers are) replay the stream at the same time, and the rate is
/// their sum.
pub fn stage_rate(
    dev: &CudaDevice,
    spec: &StageSpec<'_>,
    recs: &[PacketRecord],
) -> Result<Vec<StageRate>> {
    let shards = spec.shards.max(1);
    let mut results = Vec::new();
    for rows_copied in [true, false] {
        let barrier = std::sync::Barrier::new(shards);
        let outcomes: Vec<Result<(StageRate, f64)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..shards)
                .map(|_| {
                    let barrier = &barrier;
                    scope.spawn(move || one_shard(dev, spec, recs, rows_copied, barrier))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("benchmark thread panicked")))
                })
                .collect()
        });
        let mut total: Option<StageRate> = None;
        let mut wall = 0.0f64;
        for o in outcomes {
            let (r, w) = o?;
            wall = wall.max(w);
            total = Some(match total {
                None => r,
                Some(mut t) => {
                    t.packets += r.packets;
                    t.records += r.records;
                    t.flows += r.flows;
                    t.passes += r.passes;
                    t
                }
            });
        }
        if let Some(mut t) = total {
            t.seconds = wall;
            t.shards = shards;
            results.push(t);
        }
    }
    Ok(results)
}

/// One shard of [`stage_rate`]: stages its batches, waits for the others,
/// replays; returns its counts and the wall time of its timed phase.
fn one_shard(
    dev: &CudaDevice,
    spec: &StageSpec<'_>,
    recs: &[PacketRecord],
    rows_copied: bool,
    barrier: &std::sync::Barrier,
) -> Result<(StageRate, f64)> {
    let (flow, batch_records, min_seconds) = (spec.flow, spec.batch_records, spec.min_seconds);
    let staged = stage(dev, flow, recs, batch_records);
    let mut exec = match &staged {
        Ok(_) => dev
            .executor(batch_records, flow.activity_timeout_us)
            .map_err(anyhow::Error::from),
        Err(e) => Err(anyhow!("{e:#}")),
    };
    // Every thread reaches the barrier, even after an error.
    barrier.wait();
    let staged = staged?;
    let exec = exec.as_mut().map_err(|e| anyhow!("{e:#}"))?;
    exec.set_copy_rows(rows_copied);
    exec.set_model_input(spec.model, false)
        .map_err(|e| anyhow!("{e}"))?;
    let packets: u64 = staged.iter().map(|b| b.packets() as u64).sum();
    let records: u64 = staged.iter().map(|b| b.len() as u64).sum();
    let flows: u64 = staged.iter().map(|b| b.finalized() as u64).sum();
    let batches = staged.len();
    let mean_segments =
        staged.iter().map(|b| b.segments() as f64).sum::<f64>() / batches.max(1) as f64;
    let longest_segment = staged
        .iter()
        .map(RecordBatch::longest_segment)
        .max()
        .unwrap_or(0);
    // One warm-up pass (first touch of device memory, JIT of the PTX).
    run_pass(exec, &staged)?;
    let t = Instant::now();
    let mut passes = 0u32;
    while passes < 3 || t.elapsed().as_secs_f64() < min_seconds {
        run_pass(exec, &staged)?;
        passes += 1;
        if passes >= 100_000 {
            break;
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    // One more pass with every phase timed by events (not in the rate: the
    // long and short segments then run as separate launches).
    exec.set_profile(true).map_err(|e| anyhow!("{e}"))?;
    run_pass(exec, &staged)?;
    let phases = exec.profile().cloned();
    exec.set_profile(false).map_err(|e| anyhow!("{e}"))?;
    Ok((
        StageRate {
            rows_copied,
            packets: packets * u64::from(passes),
            records: records * u64::from(passes),
            flows: flows * u64::from(passes),
            seconds,
            passes,
            batches,
            mean_segments,
            longest_segment,
            shards: 1,
            phases,
        },
        seconds,
    ))
}

/// Lays `recs` out as sealed batches in pinned memory, as a shard would.
pub(crate) fn stage(
    dev: &CudaDevice,
    flow: FlowConfig,
    recs: &[PacketRecord],
    batch_records: usize,
) -> Result<Vec<RecordBatch>> {
    let recorder = Recorder {
        dev: dev.clone(),
        staged: Vec::new(),
        pending: Default::default(),
        cap: batch_records,
    };
    let mut shard = GpuShard::new(flow, 0, recorder, batch_records)?;
    let mut sink = FlowBatch::default();
    let mut out = Output {
        batch: &mut sink,
        max_flows: 1 << 16,
        handoff: |b: &mut FlowBatch| b.clear(),
    };
    for chunk in recs.chunks(4096) {
        shard.process_into(chunk, &mut out);
    }
    shard.flush_into(&mut out);
    Ok(shard.into_executor().staged)
}

/// One replay of the staged batches, two in flight; rows are copied to
/// pinned host memory (or left on the device) but not into host vectors.
fn run_pass(exec: &mut CudaExecutor, staged: &[RecordBatch]) -> Result<()> {
    let mut in_flight = 0;
    for b in staged {
        if in_flight == 2 {
            exec.wait_oldest().map_err(|e| anyhow!("{e}"))?;
            in_flight -= 1;
        }
        exec.submit(b).map_err(|e| anyhow!("{e}"))?;
        in_flight += 1;
    }
    while in_flight > 0 {
        exec.wait_oldest().map_err(|e| anyhow!("{e}"))?;
        in_flight -= 1;
    }
    Ok(())
}
