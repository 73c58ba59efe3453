//! GPU checks that need a device: CPU/GPU feature parity on captures
//! (`tapstream parity`), the throughput of the GPU feature stage
//! ([`stage`]), and device-resident scoring against host scoring
//! ([`check`], `tapstream gpu-score`).
//!
//! All drive the same flow table as the CPU path, so every flow exists on
//! both sides in the same order and rows can be compared one to one. In a
//! build without the `cuda` feature, opening the GPU fails with a clear
//! error and nothing else runs.

pub mod check;
mod parity;
pub mod stage;

pub use parity::parity;

use std::path::Path;

use anyhow::{bail, Result};
use tapstream_ingest::flow::FlowConfig;
use tapstream_ingest::PacketRecord;
use tapstream_kernels::gpu::cuda::{CudaDevice, CudaExecutor};
use tapstream_kernels::gpu::{GpuShard, ModelInput};
use tapstream_kernels::schema::{Kind, FEATURES};
use tapstream_kernels::shard::Output;
use tapstream_kernels::FlowBatch;

/// Largest relative difference accepted for a floating-point feature. The
/// kernels reproduce every operation of the CPU extractor with the same
/// IEEE rounding (integer accumulators, correctly rounded conversions,
/// division and square root, no FMA contraction), so rows are expected to be
/// bit-identical; this bound only allows for a libm `trunc`/`sqrt` that
/// rounds differently in the last place, which would show up here.
pub const FLOAT_TOLERANCE: f64 = 1e-12;

/// Decoded packet records of a capture (undecodable packets dropped); a
/// capture that cannot be read whole is an error, not a shorter check.
pub fn records(path: &Path) -> Result<Vec<PacketRecord>> {
    Ok(tapstream_ingest::records::read_records(path, usize::MAX)?.recs)
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
