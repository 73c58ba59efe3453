//! `tapstream bench`: per-stage and end-to-end throughput on one capture.
//!
//! Each stage is timed alone on one thread (read; read + decode; flow table +
//! CPU features over records already in memory; model inference over the
//! resulting rows), then the whole pipeline runs with its configured threads
//! and EVE output discarded. The report names the CPU and ends with one JSON
//! line so scripts can collect it. Numbers are measured on the machine the
//! command runs on; nothing is extrapolated.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use tapstream_connectors::eve::{Alert, EveWriter};
use tapstream_connectors::sink::{AlertSink, SinkError};
use tapstream_inference::{select_features, Prediction};
use tapstream_ingest::capture::{CaptureError, CaptureReader};
use tapstream_ingest::decode::decode;
use tapstream_ingest::PacketRecord;
use tapstream_kernels::shard::ShardProcessor;
use tapstream_kernels::FlowBatch;

use crate::config::Config;
use crate::consumer::{AlertStage, Consumer};
use crate::model::{self, LoadedModel};
use crate::pipeline::{self, Progress};
use crate::summary::human;

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
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let name = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    format!("{name} ({cores} logical cores)")
}

/// Runs every stage on `input`.
pub fn run(input: &Path, cfg: &Config, model_path: Option<&Path>) -> Result<BenchReport> {
    let mut stages = Vec::new();
    let mut notes = Vec::new();

    // 1. Read only.
    let t = Instant::now();
    let mut reader = CaptureReader::open(input).with_context(|| input.display().to_string())?;
    let mut n = 0u64;
    loop {
        match reader.next_packet() {
            Ok(Some(_)) => n += 1,
            Ok(None) => break,
            Err(CaptureError::TruncatedRecord { .. }) => n += 1,
            Err(_) => break,
        }
    }
    stages.push(StageResult {
        name: "read".to_string(),
        items: n,
        unit: "pkt",
        seconds: t.elapsed().as_secs_f64(),
    });

    // 2. Read + decode, keeping the records for stage 3.
    let t = Instant::now();
    let mut reader = CaptureReader::open(input).with_context(|| input.display().to_string())?;
    let mut recs: Vec<PacketRecord> = Vec::with_capacity((n as usize).min(MAX_RECORDS));
    let mut rec = PacketRecord::default();
    let mut n = 0u64;
    loop {
        match reader.next_packet() {
            Ok(Some(p)) => {
                n += 1;
                if decode(&p, &mut rec).is_ok() && recs.len() < MAX_RECORDS {
                    recs.push(rec);
                }
            }
            Ok(None) => break,
            Err(CaptureError::TruncatedRecord { .. }) => n += 1,
            Err(_) => break,
        }
    }
    stages.push(StageResult {
        name: "read+decode".to_string(),
        items: n,
        unit: "pkt",
        seconds: t.elapsed().as_secs_f64(),
    });

    // 3. Flow table + CPU features on one thread.
    let flow_cfg = pipeline::flow_config(cfg, 1);
    let mut shard = ShardProcessor::new(flow_cfg, 0).map_err(|e| anyhow!("flow table: {e}"))?;
    let mut out = FlowBatch::with_capacity(4096);
    let mut kept = FlowBatch::default();
    let t = Instant::now();
    for chunk in recs.chunks(4096) {
        shard.process(chunk, &mut out);
        if kept.len() < 65_536 {
            for i in 0..out.len().min(65_536 - kept.len()) {
                if let (Some(m), Some(r)) = (out.metas.get(i), out.row(i)) {
                    kept.metas.push(*m);
                    kept.rows.extend_from_slice(r);
                }
            }
        }
        out.clear();
    }
    shard.flush(&mut out);
    let feature_secs = t.elapsed().as_secs_f64();
    stages.push(StageResult {
        name: "cpu flows+features (1 thread)".to_string(),
        items: recs.len() as u64,
        unit: "pkt",
        seconds: feature_secs,
    });
    // The model for stage 4, loaded now so the GPU stage can build its input.
    let mut loaded = match model::load(cfg, model_path) {
        Ok(m) => Some(m),
        Err(e) => {
            notes.push(format!("inference and alerts skipped: {e:#}"));
            None
        }
    };
    // 3b. The GPU feature stage on the same records, when the device is CUDA.
    let device = crate::device::resolve(cfg)?;
    #[cfg(feature = "cuda")]
    if let crate::device::Resolved::Cuda(dev) = &device {
        // Concurrent shards, as the pipeline's workers run them; bounded so
        // their pinned and device buffers stay within a few GB.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let many = cores
            .min(8)
            .min((8 << 20) / cfg.gpu.batch_records.max(1))
            .max(1);
        let mut shard_counts = vec![1];
        if many > 1 {
            shard_counts.push(many);
        }
        let model_input = loaded
            .as_ref()
            .map(|m| crate::gpu::model_input_of(m.engine.contract()));
        for shards in shard_counts {
            let spec = crate::gpu::StageSpec {
                flow: flow_cfg,
                batch_records: cfg.gpu.batch_records,
                min_seconds: 2.0,
                shards,
                model: model_input.as_ref(),
            };
            for r in crate::gpu::stage_rate(dev, &spec, &recs)? {
                notes.push(format!(
                    "cuda stage ({}, {} shard{}): {} batches of up to {} records per pass and shard, {:.0} flows per batch on average, longest flow segment {} records, {} passes, {:.1} M records/s{}",
                    if r.rows_copied { "rows to host" } else { "rows on device" },
                    r.shards,
                    if r.shards == 1 { "" } else { "s" },
                    r.batches,
                    cfg.gpu.batch_records,
                    r.mean_segments,
                    r.longest_segment,
                    r.passes,
                    r.records as f64 / r.seconds.max(1e-9) / 1e6,
                    if model_input.is_some() {
                        ", model input matrix built on the device"
                    } else {
                        ""
                    },
                ));
                if let Some(p) = &r.phases {
                    notes.push(format!(
                        "cuda stage phases ({}, {} shard{}), ms per batch on the device: {}",
                        if r.rows_copied {
                            "rows to host"
                        } else {
                            "rows on device"
                        },
                        r.shards,
                        if r.shards == 1 { "" } else { "s" },
                        crate::gpu::describe_phases(p)
                    ));
                }
                stages.push(StageResult {
                    name: format!(
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
                    ),
                    items: r.packets,
                    unit: "pkt",
                    seconds: r.seconds,
                });
            }
        }
    }
    if kept.len() < 65_536 {
        let take = out.len().min(65_536 - kept.len());
        kept.metas.extend(out.metas.iter().take(take).copied());
        kept.rows.extend(
            out.rows
                .iter()
                .take(take * tapstream_kernels::schema::NUM_FEATURES)
                .copied(),
        );
    }
    drop(recs);

    // 4. Inference on the rows of stage 3 (skipped, with a note, when the
    // model or ONNX Runtime cannot be loaded, so feature-stage figures are
    // still reported).
    if let Some(m) = loaded.as_mut() {
        let contract = m.engine.contract().clone();
        let mut input_rows = Vec::new();
        let mut preds: Vec<Prediction> = Vec::new();
        let batch = cfg.inference.batch_rows.max(1);
        let rows = kept.len();
        let width = tapstream_kernels::schema::NUM_FEATURES;
        // One warm-up call (a GPU provider initialises its libraries on the
        // first run).
        if let Some(first) = kept.rows.chunks(batch * width).next() {
            let k = first.len() / width;
            select_features(&contract, first, k, &mut input_rows);
            m.engine
                .infer(&input_rows, k, &mut preds)
                .map_err(|e| anyhow::Error::new(e).context("inference warm-up"))?;
        }
        let t = Instant::now();
        for slice in kept.rows.chunks(batch * width) {
            let k = slice.len() / width;
            input_rows.clear();
            select_features(&contract, slice, k, &mut input_rows);
            m.engine
                .infer(&input_rows, k, &mut preds)
                .map_err(|e| anyhow::Error::new(e).context("inference"))?;
        }
        stages.push(StageResult {
            name: format!("inference ({}, {}-row batches)", m.providers, batch),
            items: rows as u64,
            unit: "row",
            seconds: t.elapsed().as_secs_f64(),
        });
    }

    // 5. The threaded pipeline up to features, flows discarded: what the
    // stages before inference sustain together.
    let discarded = pipeline::run(input, cfg, Consumer::Discard, Arc::new(Progress::default()))?;
    stages.push(StageResult {
        name: "pipeline, flows discarded".to_string(),
        items: discarded.reader.packets,
        unit: "pkt",
        seconds: discarded.wall.as_secs_f64(),
    });
    if discarded.setup.as_secs_f64() > 0.05 {
        notes.push(format!(
            "pipeline start-up (device, buffers, threads) took {:.3} s of each end-to-end time",
            discarded.setup.as_secs_f64()
        ));
    }

    // 6. End to end with every stage on its own thread, EVE discarded (or,
    // without a model, the pipeline with flows discarded stands for it).
    let report = match loaded {
        Some(mut m) => {
            let sessions = model::worker_sessions_needed(cfg, false);
            model::add_worker_sessions(cfg, &mut m, sessions)?;
            let stage = discarding_stage(cfg, m);
            let report = pipeline::run(
                input,
                cfg,
                Consumer::Alerts(stage),
                Arc::new(Progress::default()),
            )?;
            stages.push(StageResult {
                name: if sessions > 0 {
                    format!("end to end (inference in {sessions} flow workers)")
                } else {
                    "end to end".to_string()
                },
                items: report.reader.packets,
                unit: "pkt",
                seconds: report.wall.as_secs_f64(),
            });
            report
        }
        None => discarded,
    };
    Ok(BenchReport {
        notes,
        device: device.describe(),
        cpu: cpu_name(),
        stages,
        packets: report.reader.packets,
        flows: report.flows(),
        seconds: report.wall.as_secs_f64(),
        workers: report.workers.workers,
        decoders: report.reader.decoders,
    })
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

/// Formats every alert as an EVE line (so the cost is measured) and drops it.
/// An alert stage that scores with `m` (in the flow workers when `m`
/// brings worker sessions) and formats every alert as EVE JSON into a
/// buffer it then discards: the end-to-end stages of `bench` and of the
/// criterion benchmarks.
pub fn discarding_stage(cfg: &Config, mut m: LoadedModel) -> AlertStage {
    let workers = crate::scoring::WorkerModels::take_from(&mut m);
    AlertStage {
        engine: m.engine,
        sink: Box::new(DiscardSink {
            eve: EveWriter::new(cfg.output.community_id_seed),
            buf: Vec::with_capacity(4096),
        }),
        model: m.info,
        threshold: m.threshold,
        batch_rows: cfg.inference.batch_rows,
        max_delay: cfg.inference.max_delay,
        reload: None,
        settled: None,
        limiter: Default::default(),
        reopen: None,
        workers,
    }
}

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
