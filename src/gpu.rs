//! GPU checks that need a device: CPU/GPU feature parity on captures, and
//! the throughput of the GPU feature stage fed from pinned host records.
//!
//! Both drive the same flow table as the CPU path, so every flow exists on
//! both sides in the same order and rows can be compared one to one.

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use tapstream_ingest::flow::FlowConfig;
use tapstream_ingest::{decode, CaptureReader, PacketRecord};
use tapstream_kernels::gpu::cuda::{CudaDevice, CudaExecutor, PhaseTimes, PHASES};
use tapstream_kernels::gpu::records::fin_capacity;
use tapstream_kernels::gpu::{BatchExecutor, Columns, GpuError, GpuShard, ModelInput, RecordBatch};
use tapstream_kernels::schema::{Kind, FEATURES, NUM_FEATURES};
use tapstream_kernels::shard::Output;
use tapstream_kernels::FlowBatch;

/// Largest relative difference accepted for a floating-point feature. The
/// kernels reproduce every operation of the CPU extractor with the same
/// IEEE rounding (integer accumulators, correctly rounded conversions,
/// division and square root, no FMA contraction), so rows are expected to be
/// bit-identical; this bound only allows for a libm `trunc`/`sqrt` that
/// rounds differently in the last place, which would show up here.
pub const FLOAT_TOLERANCE: f64 = 1e-12;

/// Decoded packet records of a capture (undecodable packets dropped).
pub fn records(path: &Path) -> Result<Vec<PacketRecord>> {
    let mut reader = CaptureReader::open(path).with_context(|| path.display().to_string())?;
    let mut out = Vec::new();
    let mut rec = PacketRecord::default();
    loop {
        match reader.next_packet() {
            Ok(Some(p)) => {
                if decode(&p, &mut rec).is_ok() {
                    out.push(rec);
                }
            }
            Ok(None) => break,
            Err(_) => break,
        }
    }
    Ok(out)
}

/// Rows of the CPU extractor.
pub fn cpu_rows(flow: FlowConfig, recs: &[PacketRecord]) -> Result<FlowBatch> {
    crate::report::input::extract(recs, flow)
}

/// A reusable GPU shard for parity checks over many captures.
pub struct GpuRows {
    shard: GpuShard<CudaExecutor>,
}

impl GpuRows {
    /// A shard on `dev` with batches of `batch_records` records.
    pub fn new(dev: &CudaDevice, flow: FlowConfig, batch_records: usize) -> Result<Self> {
        let exec = dev.executor(batch_records, flow.activity_timeout_us)?;
        Ok(GpuRows {
            shard: GpuShard::new(flow, 0, exec, batch_records)?,
        })
    }

    /// Also builds each batch's model-input matrix on the device and copies
    /// it back (see [`model_inputs`](Self::model_inputs)).
    pub fn set_model_input(&mut self, input: Option<&ModelInput>) -> Result<()> {
        self.shard.executor_mut().set_model_input(input, true)?;
        Ok(())
    }

    /// The device's model inputs for the rows of the last [`rows`](Self::rows)
    /// call (row-major, in row order); empty without a model input.
    pub fn model_inputs(&mut self) -> Vec<f32> {
        self.shard.executor_mut().take_model_inputs()
    }

    /// Rows of the GPU extractor for one capture's records.
    pub fn rows(&mut self, recs: &[PacketRecord]) -> Result<FlowBatch> {
        let _ = self.shard.executor_mut().take_model_inputs();
        self.shard.reset()?;
        let mut batch = FlowBatch::default();
        let mut out = Output {
            batch: &mut batch,
            max_flows: usize::MAX,
            handoff: |_: &mut FlowBatch| {},
        };
        for chunk in recs.chunks(4096) {
            self.shard.process_into(chunk, &mut out);
        }
        self.shard.flush_into(&mut out);
        if let Some(e) = self.shard.error() {
            bail!("GPU extractor: {e}");
        }
        Ok(batch)
    }
}

/// How two sets of rows compare.
#[derive(Clone, Debug, Default)]
pub struct Parity {
    /// Flows compared.
    pub flows: u64,
    /// Feature values compared.
    pub values: u64,
    /// Values that are not bit-identical.
    pub differing: u64,
    /// Integer features that differ (must be 0).
    pub integer_mismatches: u64,
    /// Float features beyond [`FLOAT_TOLERANCE`] (must be 0).
    pub float_violations: u64,
    /// Largest relative difference of a float feature, and which one.
    pub max_rel: (f64, &'static str),
    /// First problem seen, for the report.
    pub first_problem: Option<String>,
}

impl Parity {
    /// True when every value is within the stated tolerance.
    pub fn ok(&self) -> bool {
        self.integer_mismatches == 0 && self.float_violations == 0 && self.first_problem.is_none()
    }

    /// Adds another comparison.
    pub fn merge(&mut self, o: &Parity) {
        self.flows += o.flows;
        self.values += o.values;
        self.differing += o.differing;
        self.integer_mismatches += o.integer_mismatches;
        self.float_violations += o.float_violations;
        if o.max_rel.0 > self.max_rel.0 {
            self.max_rel = o.max_rel;
        }
        if self.first_problem.is_none() {
            self.first_problem.clone_from(&o.first_problem);
        }
    }
}

/// Compares CPU and GPU rows flow by flow.
pub fn compare(cpu: &FlowBatch, gpu: &FlowBatch) -> Parity {
    let mut p = Parity {
        max_rel: (0.0, ""),
        ..Parity::default()
    };
    if cpu.len() != gpu.len() {
        p.first_problem = Some(format!(
            "{} flows on the CPU, {} on the GPU",
            cpu.len(),
            gpu.len()
        ));
        return p;
    }
    for i in 0..cpu.len() {
        if cpu.metas.get(i) != gpu.metas.get(i) {
            p.first_problem
                .get_or_insert_with(|| format!("flow {i}: different flow identity"));
            continue;
        }
        let (Some(a), Some(b)) = (cpu.row(i), gpu.row(i)) else {
            continue;
        };
        p.flows += 1;
        for ((&x, &y), &(name, kind)) in a.iter().zip(b).zip(FEATURES.iter()) {
            p.values += 1;
            if x.to_bits() == y.to_bits() {
                continue;
            }
            p.differing += 1;
            let problem = || format!("flow {i}, {name}: cpu {x} gpu {y}");
            match kind {
                Kind::Integer => {
                    p.integer_mismatches += 1;
                    p.first_problem.get_or_insert_with(problem);
                }
                Kind::Float => {
                    let rel = (x - y).abs() / x.abs().max(y.abs()).max(f64::MIN_POSITIVE);
                    let rel = if rel.is_nan() { f64::INFINITY } else { rel };
                    if rel > p.max_rel.0 {
                        p.max_rel = (rel, name);
                    }
                    if rel > FLOAT_TOLERANCE {
                        p.float_violations += 1;
                        p.first_problem.get_or_insert_with(problem);
                    }
                }
            }
        }
    }
    p
}

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

/// The device model input of a model contract.
pub fn model_input_of(c: &tapstream_inference::ModelContract) -> ModelInput {
    ModelInput {
        columns: c.columns.iter().map(|&i| i as u32).collect(),
        standardize: match &c.scaler {
            tapstream_inference::Scaler::InGraph => None,
            tapstream_inference::Scaler::External { mean, scale } => {
                Some((mean.clone(), scale.clone()))
            }
        },
    }
}

/// How the device's model inputs compare with `select_features` on the CPU
/// rows: (values compared, values not bit-identical, first difference).
pub fn compare_inputs(
    contract: &tapstream_inference::ModelContract,
    cpu: &FlowBatch,
    device: &[f32],
) -> (u64, u64, Option<String>) {
    let mut host = Vec::new();
    tapstream_inference::select_features(contract, &cpu.rows, cpu.len(), &mut host);
    if host.len() != device.len() {
        return (
            0,
            0,
            Some(format!(
                "{} model input values on the CPU, {} on the GPU",
                host.len(),
                device.len()
            )),
        );
    }
    let mut differing = 0;
    let mut first = None;
    for (i, (a, b)) in host.iter().zip(device).enumerate() {
        if a.to_bits() != b.to_bits() {
            differing += 1;
            first.get_or_insert_with(|| format!("model input value {i}: cpu {a} gpu {b}"));
        }
    }
    (host.len() as u64, differing, first)
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
