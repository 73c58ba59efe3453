//! `tapstream parity`: the GPU's feature rows and model input against the
//! CPU's, capture by capture; the last line says how many values were
//! bit-identical.

use std::path::{Path, PathBuf};

use anyhow::Result;
use tapstream_inference::device::model_input_of;
use tapstream_inference::{ModelContract, Scaler};
use tapstream_ingest::records::{read_records, ReadError};
use tapstream_kernels::gpu::cuda::CudaDevice;
use tapstream_runtime::Config;

use super::{compare, compare_inputs, cpu_rows, GpuRows, Parity, FLOAT_TOLERANCE};

/// Compares GPU and CPU rows on every capture under `paths` (files, or
/// directories searched recursively); with a model (`model`, else the
/// configured or bundled one), also the device's model input. Prints as it
/// goes; returns whether every capture matched.
pub fn parity(paths: &[PathBuf], model: Option<&Path>, cfg: &Config) -> Result<bool> {
    let dev = CudaDevice::open(cfg.gpu.ordinal, cfg.gpu.ptx_cache.as_deref())?;
    println!("GPU: {}", dev.info());
    let flow = cfg.flow.flow_config(1);
    let mut gpu_shard = GpuRows::new(&dev, flow, cfg.gpu.batch_records)?;
    let files = capture_files(paths)?;
    let contracts = contracts(cfg, model);
    let mut tally = Tally::default();
    for f in &files {
        let recs = match read_records(f, usize::MAX) {
            Ok(r) if !r.recs.is_empty() => r.recs,
            // Files that are not captures (notes beside them) are passed
            // over, as are captures with nothing to compare.
            Ok(_) | Err(ReadError::Open { .. }) => continue,
            Err(e) => {
                // Checking only the packets before corruption would pass
                // quietly; a capture that cannot be read whole fails.
                tally.failed += 1;
                println!("READ ERROR {:#}", anyhow::Error::new(e));
                continue;
            }
        };
        let contract = contracts.get(tally.compared % contracts.len().max(1));
        gpu_shard.set_model_input(contract.map(model_input_of).as_ref())?;
        let cpu = cpu_rows(flow, &recs)?;
        let gpu_rows = gpu_shard.rows(&recs)?;
        let p = compare(&cpu, &gpu_rows);
        tally.compared += 1;
        if let Some(c) = contract {
            let (values, differing, first) = compare_inputs(c, &cpu, &gpu_shard.model_inputs());
            tally.input_values += values;
            tally.input_differing += differing;
            if let Some(first) = first {
                tally.failed += 1;
                println!("MISMATCH {} (model input): {first}", f.display());
            }
        }
        if !p.ok() {
            tally.failed += 1;
            println!(
                "MISMATCH {}: {}",
                f.display(),
                p.first_problem
                    .as_deref()
                    .unwrap_or("values beyond tolerance")
            );
        }
        tally.total.merge(&p);
    }
    tally.print(!contracts.is_empty());
    Ok(tally.failed == 0 && tally.compared > 0)
}

/// Every file under `paths`, sorted.
fn capture_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d)?.flatten() {
                    let q = e.path();
                    if q.is_dir() {
                        stack.push(q);
                    } else {
                        files.push(q);
                    }
                }
            }
        } else {
            files.push(p.clone());
        }
    }
    files.sort();
    Ok(files)
}

/// The contracts the device's model input is checked with, in turn: the
/// model's own, and the same columns with a standardising scaler (so both
/// kernel paths are covered whatever the model does). None when the model
/// cannot be read (said on stdout).
fn contracts(cfg: &Config, model: Option<&Path>) -> Vec<ModelContract> {
    // The device's model input reads CIC rows: by default the CIC model.
    let path = tapstream_inference::model::cic_model_path(cfg.model.path.as_deref(), model);
    let loaded = path
        .map_err(anyhow::Error::from)
        .and_then(|p| tapstream_runtime::model::load(cfg, Some(&p), 0));
    match loaded {
        Ok(m) => {
            let own = m.engine.contract().clone();
            let mut scaled = own.clone();
            let n = scaled.columns.len();
            scaled.scaler = Scaler::External {
                mean: (0..n).map(|i| i as f64 * 1.5 - 7.25).collect(),
                scale: (0..n).map(|i| 0.75 + i as f64 / 3.0).collect(),
            };
            vec![own, scaled]
        }
        Err(e) => {
            println!("model input: not checked ({e:#})");
            Vec::new()
        }
    }
}

/// What the captures added up to.
#[derive(Default)]
struct Tally {
    total: Parity,
    compared: usize,
    failed: usize,
    input_values: u64,
    input_differing: u64,
}

impl Tally {
    fn print(&self, inputs_checked: bool) {
        let t = &self.total;
        let identical = t.values - t.differing;
        println!(
            "parity: {} captures, {} flows, {} values: {} bit-identical ({:.6} %), \
             {} integer mismatches, {} float values beyond {:e} (max relative difference {:e}{})",
            self.compared,
            t.flows,
            t.values,
            identical,
            if t.values == 0 {
                100.0
            } else {
                identical as f64 * 100.0 / t.values as f64
            },
            t.integer_mismatches,
            t.float_violations,
            FLOAT_TOLERANCE,
            t.max_rel.0,
            if t.max_rel.1.is_empty() {
                String::new()
            } else {
                format!(" in {}", t.max_rel.1)
            },
        );
        if inputs_checked {
            println!(
                "model input: {} values (the model's scaler and a standardising one, \
                 alternating by capture): {} bit-identical, {} differing",
                self.input_values,
                self.input_values - self.input_differing,
                self.input_differing
            );
        }
    }
}
