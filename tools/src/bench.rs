//! `tapstream bench`: per-stage and end-to-end throughput on one capture.
//!
//! Each stage is timed alone on one thread (read; read + decode; flow table +
//! CPU features over records already in memory; model inference over the
//! resulting rows), then the whole pipeline runs with its configured threads
//! and EVE output discarded. The report names the CPU and ends with one JSON
//! line so scripts can collect it. Numbers are measured on the machine the
//! command runs on; nothing is extrapolated.

use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Result};
use tapstream_connectors::eve::{Alert, EveWriter};
use tapstream_connectors::sink::{AlertSink, SinkError};
use tapstream_inference::{select_features_with, LoadedModel, Prediction};
use tapstream_ingest::records::{for_each_packet, read_records_into};
use tapstream_ingest::PacketRecord;
use tapstream_kernels::context::NUM_CONTEXT;
use tapstream_kernels::gpu::cuda::CudaDevice;
use tapstream_kernels::gpu::ModelInput;
use tapstream_kernels::schema::NUM_FEATURES;
use tapstream_kernels::shard::ShardProcessor;
use tapstream_kernels::{ContextRows, FlowBatch, FlowStart};
use tapstream_runtime::config::logical_cores;
use tapstream_runtime::summary::human;
use tapstream_runtime::{model, run_file, AlertStage, Config, Consumer, Progress, RunReport};

use crate::gpu::stage::{describe_phases, stage_rate, StageRate, StageSpec};

/// Most packet records the single-stage benchmarks keep in memory (about
/// 1.2 GB); larger captures are measured on their first this-many packets.
const MAX_RECORDS: usize = 16 << 20;

/// One measured stage.
#[derive(Clone, Debug)]
pub struct StageResult {
    /// Stage name.
    pub name: String,
    /// Items processed (packets, or rows for inference).
    pub items: u64,
    /// Unit of `items`.
    pub unit: &'static str,
    /// Wall time of the stage.
    pub seconds: f64,
}

impl StageResult {
    /// Items per second.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.items as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// The whole benchmark result.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// Stages left out, and why.
    pub notes: Vec<String>,
    /// Where features were computed end to end ("cpu" or the GPU).
    pub device: String,
    /// CPU model name and core count.
    pub cpu: String,
    /// Single-stage results, then the end-to-end one.
    pub stages: Vec<StageResult>,
    /// End-to-end packets.
    pub packets: u64,
    /// End-to-end flows.
    pub flows: u64,
    /// End-to-end wall seconds.
    pub seconds: f64,
    /// End-to-end worker threads.
    pub workers: usize,
    /// End-to-end decoder threads.
    pub decoders: usize,
}

/// The CPU's model name and logical core count, from /proc/cpuinfo.
pub fn cpu_name() -> String {
    format!("{} ({} logical cores)", cpu_model(), logical_cores())
}

/// The CPU's model name from /proc/cpuinfo ("unknown CPU" where it has none).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

/// Most feature rows kept from stage 3 for the inference stage.
const KEPT_ROWS: usize = 65_536;

/// The stages measured so far, and notes on what was left out.
#[derive(Default)]
struct Bench {
    stages: Vec<StageResult>,
    notes: Vec<String>,
}

/// Runs every stage on `input`.
pub fn run(input: &Path, cfg: &Config, model_path: Option<&Path>) -> Result<BenchReport> {
    let mut bench = Bench::default();
    let recs = bench.read(input)?;
    // The model for stage 4 (and for the GPU stage's input), loaded before
    // stage 3 so that a model reading context features gets them there.
    let mut loaded = match model::load(cfg, model_path, 0) {
        Ok(m) => Some(m),
        Err(e) => {
            bench
                .notes
                .push(format!("inference and alerts skipped: {e:#}"));
            None
        }
    };
    let needs_context = loaded
        .as_ref()
        .is_some_and(|m| m.engine.contract().needs_context());
    let kept = bench.features(cfg, &recs, cfg.context.runs(needs_context))?;
    // 3b. The GPU feature stage on the same records, when the device is CUDA.
    let device = tapstream_runtime::device::open(&cfg.gpu)?;
    if let tapstream_kernels::Backend::Cuda(dev) = &device {
        // A model that reads context features has no device input yet.
        let model_input = loaded
            .as_ref()
            .filter(|_| !needs_context)
            .map(|m| tapstream_inference::device::model_input_of(m.engine.contract()));
        bench.gpu(dev, cfg, &recs, model_input.as_ref())?;
    }
    drop(recs);
    if let Some(m) = loaded.as_mut() {
        bench.inference(m, cfg, &kept)?;
    }
    let report = bench.pipeline(input, cfg, loaded)?;
    Ok(BenchReport {
        notes: bench.notes,
        device: device.describe(),
        cpu: cpu_name(),
        stages: bench.stages,
        packets: report.reader.packets,
        flows: report.flows(),
        seconds: report.wall.as_secs_f64(),
        workers: report.workers.workers,
        decoders: report.reader.decoders,
    })
}

impl Bench {
    fn push(&mut self, name: impl Into<String>, items: u64, unit: &'static str, seconds: f64) {
        self.stages.push(StageResult {
            name: name.into(),
            items,
            unit,
            seconds,
        });
    }

    /// Stages 1 and 2: read only, then read + decode; returns the records
    /// (the first [`MAX_RECORDS`]) for the stages after.
    fn read(&mut self, input: &Path) -> Result<Vec<PacketRecord>> {
        let t = Instant::now();
        let read = for_each_packet(input, |_| ControlFlow::Continue(()))?;
        self.push("read", read.packets, "pkt", t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut recs = Vec::with_capacity(
            usize::try_from(read.packets).map_or(MAX_RECORDS, |n| n.min(MAX_RECORDS)),
        );
        let read = read_records_into(input, MAX_RECORDS, &mut recs)?;
        self.push(
            "read+decode",
            read.packets,
            "pkt",
            t.elapsed().as_secs_f64(),
        );
        Ok(recs)
    }

    /// Stage 3: flow table + CPU features on one thread; returns the first
    /// [`KEPT_ROWS`] rows for the inference stage.
    fn features(
        &mut self,
        cfg: &Config,
        recs: &[PacketRecord],
        context: bool,
    ) -> Result<FlowBatch> {
        let mut shard = ShardProcessor::new(cfg.flow.flow_config(1), 0)
            .map_err(|e| anyhow!("flow table: {e}"))?;
        if context {
            shard.track_starts();
        }
        let mut out = FlowBatch::with_capacity(4096);
        let mut kept = FlowBatch::default();
        let mut flows = ChunkFlows::default();
        let t = Instant::now();
        for (k, chunk) in recs.chunks(4096).enumerate() {
            shard.process(chunk, &mut out);
            if context {
                let base = (k * 4096) as u64;
                shard.take_starts(&|i| base + u64::from(i), &mut flows.starts);
                flows.end_chunk(&out);
            }
            keep(&mut kept, &out);
            out.clear();
        }
        shard.flush(&mut out);
        let secs = t.elapsed().as_secs_f64();
        self.push(
            "cpu flows+features (1 thread)",
            recs.len() as u64,
            "pkt",
            secs,
        );
        keep(&mut kept, &out);
        if context {
            flows.end_chunk(&out);
            self.context(cfg, &flows, &mut kept);
        }
        Ok(kept)
    }

    /// Stage 3c (a model that reads context features): the context stage's
    /// table and open rows, fed chunk by chunk as the pipeline feeds them
    /// (a chunk's starts, then the rows of the flows it ended); fills the
    /// kept rows' context.
    fn context(&mut self, cfg: &Config, flows: &ChunkFlows, kept: &mut FlowBatch) {
        let t = Instant::now();
        let mut rows = ContextRows::new(cfg.context.table());
        kept.context.clear();
        let (mut s0, mut e0) = (0, 0);
        for &(s1, e1) in &flows.chunks {
            rows.start_all(flows.starts.get(s0..s1).unwrap_or_default());
            for &id in flows.ended.get(e0..e1).unwrap_or_default() {
                let row = rows.take(id).unwrap_or([0.0; NUM_CONTEXT]);
                if kept.context.len() < kept.start_ids.len() * NUM_CONTEXT {
                    kept.context.extend_from_slice(&row);
                }
            }
            (s0, e0) = (s1, e1);
        }
        let secs = t.elapsed().as_secs_f64();
        // Per flow: its start and its outcome, if it had one.
        let starts = flows.starts.iter().filter(|s| s.outcome.is_none()).count();
        self.push("context (1 thread)", starts as u64, "flow", secs);
    }

    /// Stage 3b: the GPU feature stage on the same records, on one shard and
    /// on as many as the pipeline's workers would run (bounded so their
    /// pinned and device buffers stay within a few GB).
    fn gpu(
        &mut self,
        dev: &CudaDevice,
        cfg: &Config,
        recs: &[PacketRecord],
        model_input: Option<&ModelInput>,
    ) -> Result<()> {
        let cores = logical_cores();
        let many = cores
            .min(8)
            .min((8 << 20) / cfg.gpu.batch_records.max(1))
            .max(1);
        let mut shard_counts = vec![1];
        if many > 1 {
            shard_counts.push(many);
        }
        for shards in shard_counts {
            let spec = StageSpec {
                flow: cfg.flow.flow_config(1),
                batch_records: cfg.gpu.batch_records,
                min_seconds: 2.0,
                shards,
                model: model_input,
            };
            for r in stage_rate(dev, &spec, recs)? {
                self.gpu_result(&r, cfg.gpu.batch_records, model_input.is_some());
            }
        }
        Ok(())
    }

    fn gpu_result(&mut self, r: &StageRate, batch_records: usize, model_input: bool) {
        let rows = if r.rows_copied {
            "rows to host"
        } else {
            "rows on device"
        };
        let plural = if r.shards == 1 { "" } else { "s" };
        self.notes.push(format!(
            "cuda stage ({rows}, {} shard{plural}): {} batches of up to {batch_records} records per pass and shard, {:.0} flows per batch on average, longest flow segment {} records, {} passes, {:.1} M records/s{}",
            r.shards,
            r.batches,
            r.mean_segments,
            r.longest_segment,
            r.passes,
            r.records as f64 / r.seconds.max(1e-9) / 1e6,
            if model_input {
                ", model input matrix built on the device"
            } else {
                ""
            },
        ));
        if let Some(p) = &r.phases {
            self.notes.push(format!(
                "cuda stage phases ({rows}, {} shard{plural}), ms per batch on the device: {}",
                r.shards,
                describe_phases(p)
            ));
        }
        let name = format!(
            "cuda{} features, rows {}",
            if r.shards == 1 {
                String::new()
            } else {
                format!(" ×{}", r.shards)
            },
            if r.rows_copied {
                "to host"
            } else {
                "on device"
            }
        );
        self.push(name, r.packets, "pkt", r.seconds);
    }

    /// Stage 4: inference on the rows of stage 3, after one warm-up call (a
    /// GPU provider initialises its libraries on the first run).
    fn inference(&mut self, m: &mut LoadedModel, cfg: &Config, kept: &FlowBatch) -> Result<()> {
        let contract = m.engine.contract().clone();
        let mut input_rows = Vec::new();
        let mut preds: Vec<Prediction> = Vec::new();
        let batch = cfg.inference.batch_rows.max(1);
        let width = NUM_FEATURES;
        let ctx = |i: usize| {
            kept.context
                .get(i * batch * NUM_CONTEXT..)
                .unwrap_or_default()
        };
        if let Some(first) = kept.rows.chunks(batch * width).next() {
            let k = first.len() / width;
            select_features_with(&contract, first, ctx(0), k, &mut input_rows);
            m.engine
                .infer(&input_rows, k, &mut preds)
                .map_err(|e| anyhow::Error::new(e).context("inference warm-up"))?;
        }
        let t = Instant::now();
        for (i, slice) in kept.rows.chunks(batch * width).enumerate() {
            let k = slice.len() / width;
            input_rows.clear();
            let n = select_features_with(&contract, slice, ctx(i), k, &mut input_rows);
            m.engine
                .infer(&input_rows, n, &mut preds)
                .map_err(|e| anyhow::Error::new(e).context("inference"))?;
        }
        let name = format!("inference ({}, {}-row batches)", m.providers, batch);
        self.push(name, kept.len() as u64, "row", t.elapsed().as_secs_f64());
        Ok(())
    }

    /// Stages 5 and 6: the threaded pipeline with flows discarded (what the
    /// stages before inference sustain together), then end to end with EVE
    /// discarded (or, without a model, the first stands for it). Returns
    /// the end-to-end run.
    fn pipeline(
        &mut self,
        input: &Path,
        cfg: &Config,
        loaded: Option<LoadedModel>,
    ) -> Result<RunReport> {
        let discarded = run_file(input, cfg, Consumer::Discard, Arc::new(Progress::default()))?;
        let secs = discarded.wall.as_secs_f64();
        self.push(
            "pipeline, flows discarded",
            discarded.reader.packets,
            "pkt",
            secs,
        );
        if discarded.setup.as_secs_f64() > 0.05 {
            self.notes.push(format!(
                "pipeline start-up (device, buffers, threads) took {:.3} s of each end-to-end time",
                discarded.setup.as_secs_f64()
            ));
        }
        let Some(mut m) = loaded else {
            return Ok(discarded);
        };
        let sessions = model::worker_sessions_needed(cfg, false);
        let onnx = cfg.inference.onnx_config(cfg.model.sha256.clone());
        tapstream_inference::model::add_worker_sessions(&onnx, &mut m, sessions)?;
        let stage = discarding_stage(cfg, m);
        let report = run_file(
            input,
            cfg,
            Consumer::Alerts(Box::new(stage)),
            Arc::new(Progress::default()),
        )?;
        let name = if sessions > 0 {
            format!("end to end (inference in {sessions} flow workers)")
        } else {
            "end to end".to_string()
        };
        self.push(
            name,
            report.reader.packets,
            "pkt",
            report.wall.as_secs_f64(),
        );
        Ok(report)
    }
}

/// Adds flows of `out` to `kept` up to [`KEPT_ROWS`].
/// What the context stage gets from one shard: every flow start and
/// outcome, and each chunk's ended flows, by start id.
#[derive(Default)]
struct ChunkFlows {
    starts: Vec<FlowStart>,
    ended: Vec<u64>,
    /// Where each chunk's starts and ended ids end.
    chunks: Vec<(usize, usize)>,
}

impl ChunkFlows {
    /// Closes a chunk whose ended flows are `out`.
    fn end_chunk(&mut self, out: &FlowBatch) {
        self.ended.extend_from_slice(&out.start_ids);
        self.chunks.push((self.starts.len(), self.ended.len()));
    }
}

fn keep(kept: &mut FlowBatch, out: &FlowBatch) {
    for i in 0..out.len().min(KEPT_ROWS.saturating_sub(kept.len())) {
        if let (Some(m), Some(r)) = (out.metas.get(i), out.row(i)) {
            kept.metas.push(*m);
            kept.rows.extend_from_slice(r);
            if let Some(id) = out.start_ids.get(i) {
                kept.start_ids.push(*id);
            }
        }
    }
}

impl BenchReport {
    /// The human-readable table followed by the final JSON line.
    pub fn render(&self, input: &Path) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "tapstream bench: {}", input.display());
        let _ = writeln!(s, "cpu: {}", self.cpu);
        let _ = writeln!(s, "feature device: {}", self.device);
        let _ = writeln!(
            s,
            "{:<32} {:>12} {:>10} {:>14}",
            "stage", "items", "seconds", "rate"
        );
        for st in &self.stages {
            let _ = writeln!(
                s,
                "{:<32} {:>12} {:>10.3} {:>11}{}/s",
                st.name,
                st.items,
                st.seconds,
                human(st.rate()),
                st.unit
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let flows_rate = if self.seconds > 0.0 {
            self.flows as f64 / self.seconds
        } else {
            0.0
        };
        let _ = writeln!(
            s,
            "end to end: {} decoders, {} workers, {} flows, {}flows/s",
            self.decoders,
            self.workers,
            self.flows,
            human(flows_rate)
        );
        let pps = if self.seconds > 0.0 {
            self.packets as f64 / self.seconds
        } else {
            0.0
        };
        let _ = writeln!(
            s,
            "{}",
            serde_json::json!({
                "device": self.device,
                "packets": self.packets,
                "flows": self.flows,
                "seconds": (self.seconds * 1e6).round() / 1e6,
                "pps": pps.round(),
                "decoders": self.decoders,
                "workers": self.workers,
            })
        );
        s
    }
}

/// An alert stage that scores with `m` (in the flow workers when `m`
/// brings worker sessions) and formats every alert as EVE JSON into a
/// buffer it then discards: the end-to-end stages of `bench` and of the
/// criterion benchmarks.
pub fn discarding_stage(cfg: &Config, m: LoadedModel) -> AlertStage {
    let sink = DiscardSink {
        eve: EveWriter::new(cfg.output.community_id_seed),
        buf: Vec::with_capacity(4096),
    };
    AlertStage::new(
        m,
        Box::new(sink),
        cfg.inference.batch_rows,
        cfg.inference.max_delay,
    )
}

/// Formats every alert as an EVE line (so the cost is measured) and drops it.
struct DiscardSink {
    eve: EveWriter,
    buf: Vec<u8>,
}

impl AlertSink for DiscardSink {
    fn write(&mut self, alert: &Alert<'_>) -> Result<(), SinkError> {
        self.eve.write(alert, &mut self.buf);
        std::hint::black_box(&self.buf);
        self.buf.clear();
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
