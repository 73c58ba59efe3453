//! `tapstream gpu-score`: device-resident scoring checked against the host
//! path on a GPU host, and rows/s with the features already on the device.
//! The last line it prints is JSON.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tapstream_inference::device::{model_input_of, DeviceScorer};
use tapstream_inference::model::cic_model_path;
use tapstream_inference::{
    select_features, BoundInference, BoundMemory, CudaOptions, Engine, ExecutionProvider,
    OnnxEngine, Prediction,
};
use tapstream_kernels::gpu::cuda::{CudaDevice, CudaExecutor};
use tapstream_kernels::gpu::{BatchExecutor, Flagged};
use tapstream_runtime::Config;

/// Largest difference allowed between a device-path and a host-path score
/// of the same row. Both run the same session on the same values, so they
/// are expected to be bit-identical; this bound only allows for a kernel
/// choice that depends on where the input lives.
pub const SCORE_TOLERANCE: f32 = 1e-4;

/// `|d| ≤ SCORE_TOLERANCE`; false for NaN.
fn within_tolerance(d: f32) -> bool {
    d.abs() <= SCORE_TOLERANCE
}

/// How device-path flags compare with the host path's.
#[derive(Clone, Debug, Default)]
pub struct FlagComparison {
    /// Rows compared.
    pub rows: usize,
    /// Rows the host path flags.
    pub host_flagged: usize,
    /// Rows the device path flags.
    pub device_flagged: usize,
    /// Rows flagged by both with bit-identical scores and equal classes.
    pub identical: usize,
    /// Largest score difference of a row flagged by both.
    pub max_diff: f32,
    /// Problems beyond the tolerance (first few described).
    pub problems: usize,
    /// The first problems, for the report.
    pub first: Vec<String>,
}

impl FlagComparison {
    /// Whether every row is within [`SCORE_TOLERANCE`].
    pub fn ok(&self) -> bool {
        self.problems == 0
    }

    fn problem(&mut self, what: String) {
        self.problems += 1;
        if self.first.len() < 5 {
            self.first.push(what);
        }
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        format!(
            "{} rows: host flags {}, device flags {}, {} bit-identical, max |score difference| {:e}, \
             {} beyond {:e}{}",
            self.rows,
            self.host_flagged,
            self.device_flagged,
            self.identical,
            self.max_diff,
            self.problems,
            SCORE_TOLERANCE,
            if self.first.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.first.join("; "))
            }
        )
    }
}

/// Compares the device path's flagged rows with host predictions of the
/// same rows: a row flagged by both must have equal classes and scores
/// within [`SCORE_TOLERANCE`]; a row flagged by one only must have a host
/// score within the tolerance of the threshold.
pub fn compare_flags(host: &[Prediction], threshold: f32, device: &[Flagged]) -> FlagComparison {
    let mut c = FlagComparison {
        rows: host.len(),
        host_flagged: host.iter().filter(|p| p.score >= threshold).count(),
        device_flagged: device.len(),
        ..FlagComparison::default()
    };
    let mut d = device.iter().peekable();
    for (i, p) in host.iter().enumerate() {
        let on_device = match d.peek() {
            Some(f) if f.row as usize == i => d.next(),
            _ => None,
        };
        match (p.score >= threshold, on_device) {
            (true, Some(f)) => {
                let diff = (f.score - p.score).abs();
                if f.score.to_bits() == p.score.to_bits() && f.class as usize == p.class {
                    c.identical += 1;
                } else if f.class as usize != p.class || !within_tolerance(diff) {
                    c.problem(format!(
                        "row {i}: host {} class {}, device {} class {}",
                        p.score, p.class, f.score, f.class
                    ));
                }
                if diff > c.max_diff {
                    c.max_diff = diff;
                }
            }
            (false, None) => {}
            (host_flags, f) => {
                if !within_tolerance(p.score - threshold) {
                    c.problem(format!(
                        "row {i}: flagged by the {} path only (host score {}, device {:?})",
                        if host_flags { "host" } else { "device" },
                        p.score,
                        f.map(|f| f.score)
                    ));
                }
            }
        }
    }
    if let Some(f) = d.next() {
        c.problem(format!(
            "device flags row {} of {} (out of range or out of order)",
            f.row,
            host.len()
        ));
    }
    c
}

/// What `tapstream gpu-score` runs.
#[derive(Clone, Debug)]
pub struct CheckSpec {
    /// Capture whose flows give the feature rows.
    pub pcap: PathBuf,
    /// Models to score (each on the CUDA provider alone).
    pub models: Vec<PathBuf>,
    /// Batch sizes of the throughput measurement, in rows.
    pub batch_rows: Vec<usize>,
    /// Measure each batch size for at least this long.
    pub min_seconds: f64,
}

/// The models `gpu-score` checks by default: the configured or bundled
/// CIC-schema model (device scoring reads CIC rows) and its `-fp16`/`-int8`
/// siblings.
pub fn default_models(cfg: &Config) -> Result<Vec<PathBuf>> {
    let base = cic_model_path(cfg.model.path.as_deref(), None)?;
    let mut models = vec![base.clone()];
    models.extend(
        crate::report::precision_siblings(&base)
            .into_iter()
            .map(|(_, p)| p),
    );
    Ok(models)
}

/// Runs the device-path checks and the throughput benchmark; returns
/// whether every check passed. Prints as it goes; the last line is JSON.
pub fn check(cfg: &Config, spec: &CheckSpec) -> Result<bool> {
    let dev = CudaDevice::open(cfg.gpu.ordinal, cfg.gpu.ptx_cache.as_deref())?;
    println!("GPU: {}, ordinal {}", dev.info(), cfg.gpu.ordinal);
    let flow = cfg.flow.flow_config(1);
    let recs = super::records(&spec.pcap)?;
    let cpu = super::cpu_rows(flow, &recs)?;
    println!(
        "capture {}: {} packets, {} flows",
        spec.pcap.display(),
        recs.len(),
        cpu.len()
    );
    if cpu.is_empty() {
        bail!("the capture has no flows to score");
    }
    let mut ok = true;
    let mut json = Vec::new();
    for path in &spec.models {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        // A model the CUDA provider cannot run alone (INT8's
        // quantize/dequantize nodes) is reported, not fatal; a model that
        // loads and then fails is a failed check.
        let mut engine = match load_on_cuda(cfg, path) {
            Ok(e) => e,
            Err(e) => {
                println!("{name}: unavailable on the CUDA provider alone: {e:#}");
                json.push(serde_json::json!({ "model": name, "unavailable": format!("{e:#}") }));
                continue;
            }
        };
        match check_model(cfg, spec, &dev, &mut engine, &name, &recs, &cpu) {
            Ok(r) => {
                ok &= r.ok;
                json.push(r.json);
            }
            Err(e) => {
                ok = false;
                println!("{name}: FAILED: {e:#}");
                json.push(serde_json::json!({ "model": name, "error": format!("{e:#}") }));
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "gpu": dev.info().name,
            "capture": spec.pcap.display().to_string(),
            "flows": cpu.len(),
            "ok": ok,
            "models": json,
        })
    );
    Ok(ok)
}

struct ModelResult {
    ok: bool,
    json: serde_json::Value,
}

/// Loads `path` on the CUDA provider alone (a node left to the CPU is an
/// error, so no number here is a partly-CPU run), on the GPU that holds the
/// features.
fn load_on_cuda(cfg: &Config, path: &Path) -> Result<OnnxEngine> {
    let mut onnx = cfg.inference.onnx_config(cfg.model.sha256.clone());
    let ordinal = i32::try_from(cfg.gpu.ordinal).context("GPU ordinal")?;
    let cuda = onnx
        .providers
        .iter()
        .find_map(|p| match p {
            ExecutionProvider::Cuda(o) => Some(o.clone()),
            _ => None,
        })
        .unwrap_or(CudaOptions {
            device_id: ordinal,
            memory_limit: None,
        });
    if cuda.device_id != ordinal {
        bail!(
            "inference.cuda.device_id is {} but gpu.ordinal is {ordinal}: the model must run on \
             the GPU that holds the features",
            cuda.device_id
        );
    }
    onnx.providers = vec![ExecutionProvider::Cuda(cuda)];
    onnx.allow_fallback = false;
    OnnxEngine::load(path, &onnx).with_context(|| format!("loading model {}", path.display()))
}

fn check_model(
    cfg: &Config,
    spec: &CheckSpec,
    dev: &CudaDevice,
    engine: &mut OnnxEngine,
    name: &str,
    recs: &[tapstream_ingest::PacketRecord],
    cpu: &tapstream_kernels::FlowBatch,
) -> Result<ModelResult> {
    let ordinal = i32::try_from(cfg.gpu.ordinal).context("GPU ordinal")?;
    let c = engine.contract().clone();
    let threshold = cfg.model.threshold.unwrap_or(c.threshold);
    let width = c.num_features();
    let largest = spec
        .batch_rows
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(cpu.len());
    let mut scorer = DeviceScorer::new(dev, engine, largest)?;
    let mut ok = true;

    // The capture's model input, on the host, tiled up to the largest batch.
    let mut host = Vec::new();
    select_features(&c, &cpu.rows, cpu.len(), &mut host);
    let flows = cpu.len();
    let tiled: Vec<f32> = host.iter().copied().cycle().take(largest * width).collect();
    let device_input = dev.upload_f32(&tiled)?;
    let input_ptr = device_input.device_ptr();

    // 1. Device path against the host path, every flow of the capture in one
    //    batch: the same session scores host rows through `infer`.
    let mut want = Vec::new();
    engine.infer(&host, flows, &mut want)?;
    let mut got = Vec::new();
    // SAFETY: `device_input` holds largest ≥ flows rows of `width` values,
    // synchronised above, and is not written while it is alive.
    unsafe { scorer.score(engine, input_ptr, flows, threshold, &mut got) }?;
    let direct = compare_flags(&want, threshold, &got);
    ok &= direct.ok();
    println!(
        "{name}: device path vs host path (infer), one batch: {} — {}",
        direct.describe(),
        if direct.ok() { "ok" } else { "MISMATCH" }
    );

    // 2. The glue: features built by the kernels and left on the device
    //    (copy_back = false), each finished batch scored from there.
    let glue = glue_check(dev, cfg, recs, engine, &mut scorer, threshold, &want)?;
    ok &= glue.ok();
    println!(
        "{name}: GPU features left on the device, scored per batch, vs host path: {} — {}",
        glue.describe(),
        if glue.ok() { "ok" } else { "MISMATCH" }
    );

    // 3. Throughput with the features already on the device.
    let input = DeviceRows {
        ptr: input_ptr,
        ordinal,
        width,
    };
    let rates = rates(spec, name, engine, &mut scorer, &input, threshold)?;
    Ok(ModelResult {
        ok,
        json: serde_json::json!({
            "model": name,
            "precision": c.precision.as_str(),
            "threshold": threshold,
            "check_one_batch": direct.describe(),
            "check_one_batch_ok": direct.ok(),
            "check_gpu_features": glue.describe(),
            "check_gpu_features_ok": glue.ok(),
            "rates": rates,
        }),
    })
}

/// Model-input rows already on the device: at least the largest batch.
struct DeviceRows {
    ptr: u64,
    ordinal: i32,
    width: usize,
}

/// Rows/s per batch size with the features already on the device: the
/// model alone, and with the flagged rows read back.
fn rates(
    spec: &CheckSpec,
    name: &str,
    engine: &mut OnnxEngine,
    scorer: &mut DeviceScorer,
    input: &DeviceRows,
    threshold: f32,
) -> Result<Vec<serde_json::Value>> {
    let mut rates = Vec::new();
    for &rows in &spec.batch_rows {
        let rows = rows.max(1);
        let mut flagged = Vec::new();
        let model_only = time_rows(spec.min_seconds, rows, || {
            // SAFETY: the device rows hold at least the largest batch.
            let out = unsafe {
                engine.infer_bound(
                    BoundMemory::Cuda {
                        ordinal: input.ordinal,
                    },
                    input.ptr as usize as *const f32,
                    rows * input.width,
                    rows,
                )
            }?;
            drop(out);
            Ok(())
        })?;
        let with_flags = time_rows(spec.min_seconds, rows, || {
            // SAFETY: as above.
            unsafe { scorer.score(engine, input.ptr, rows, threshold, &mut flagged) }?;
            Ok(())
        })?;
        println!(
            "{name}: batch {rows} rows, features on the device: model {:.1} M rows/s \
             ({:.3} ms/batch); with flag_scores and the flagged rows read back {:.1} M rows/s \
             ({:.3} ms/batch, {} flagged per batch)",
            model_only.0 / 1e6,
            model_only.1 * 1e3,
            with_flags.0 / 1e6,
            with_flags.1 * 1e3,
            flagged.len()
        );
        rates.push(serde_json::json!({
            "batch_rows": rows,
            "model_rows_per_s": model_only.0,
            "scored_and_flagged_rows_per_s": with_flags.0,
            "flagged_per_batch": flagged.len(),
        }));
    }
    Ok(rates)
}

/// Calls `f` (one batch of `rows`) twice to warm up, then until at least
/// `min_seconds` and 5 calls have passed; returns (rows/s, seconds per call).
fn time_rows(
    min_seconds: f64,
    rows: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<(f64, f64)> {
    f()?;
    f()?;
    let t = Instant::now();
    let mut calls = 0u32;
    while calls < 5 || (t.elapsed().as_secs_f64() < min_seconds && calls < 10_000) {
        f()?;
        calls += 1;
    }
    let s = t.elapsed().as_secs_f64();
    let per = s / f64::from(calls);
    Ok((rows as f64 / per, per))
}

/// The GPU feature stage with the model input left on the device, each
/// finished batch scored there; compared with `want` (host predictions of
/// the CPU rows, which the GPU's equal bit for bit; see `tapstream parity`).
fn glue_check(
    dev: &CudaDevice,
    cfg: &Config,
    recs: &[tapstream_ingest::PacketRecord],
    engine: &mut OnnxEngine,
    scorer: &mut DeviceScorer,
    threshold: f32,
    want: &[Prediction],
) -> Result<FlagComparison> {
    let flow = cfg.flow.flow_config(1);
    let batch_records = cfg.gpu.batch_records;
    let staged = super::stage::stage(dev, flow, recs, batch_records)?;
    let mut exec = dev.executor(batch_records, flow.activity_timeout_us)?;
    exec.set_copy_rows(false);
    exec.set_model_input(Some(&model_input_of(engine.contract())), false)?;
    let mut all = Vec::new();
    let mut batch = Vec::new();
    let mut base = 0usize;
    let mut finish = |exec: &mut CudaExecutor, all: &mut Vec<Flagged>| -> Result<()> {
        let mut none = Vec::new();
        exec.finish(&mut none)?;
        let rows = scorer.score_finished(exec, engine, threshold, &mut batch)?;
        let offset = u32::try_from(base).context("too many rows")?;
        all.extend(batch.iter().map(|f| Flagged {
            row: f.row + offset,
            ..*f
        }));
        base += rows;
        Ok(())
    };
    // One batch in flight at a time: a finished batch's matrix is scored
    // before the next submit reuses its buffer.
    for b in &staged {
        exec.submit(b)?;
        finish(&mut exec, &mut all)?;
    }
    let mut c = compare_flags(want, threshold, &all);
    if base != want.len() {
        c.problem(format!(
            "the GPU finalized {base} rows, the CPU {}",
            want.len()
        ));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(score: f32, class: usize) -> Prediction {
        Prediction { score, class }
    }

    fn f(row: u32, class: u32, score: f32) -> Flagged {
        Flagged { row, class, score }
    }

    #[test]
    fn identical_flags_compare_clean() {
        let host = [p(0.1, 1), p(0.9, 2), p(0.5, 1)];
        let c = compare_flags(&host, 0.5, &[f(1, 2, 0.9), f(2, 1, 0.5)]);
        assert!(c.ok(), "{}", c.describe());
        assert_eq!((c.host_flagged, c.device_flagged, c.identical), (2, 2, 2));
    }

    #[test]
    fn differences_are_problems_unless_within_tolerance_of_the_threshold() {
        let host = [p(0.1, 1), p(0.9, 2), p(0.50005, 1), p(0.7, 3)];
        // Row 2 is flagged only on the host, within the tolerance of the
        // threshold: accepted. Row 1's class differs; row 3 is missing on
        // the device; row 0 flagged by the device only, far below.
        let c = compare_flags(&host, 0.5, &[f(0, 1, 0.6), f(1, 1, 0.9)]);
        assert_eq!(c.problems, 3, "{}", c.describe());
        // A score off by more than the tolerance.
        let c = compare_flags(&host[1..2], 0.5, &[f(0, 2, 0.9 + 1e-3)]);
        assert_eq!(c.problems, 1);
        // A row index beyond the batch.
        let c = compare_flags(&host[..1], 0.5, &[f(5, 1, 0.9)]);
        assert_eq!(c.problems, 1);
        // Within the tolerance: accepted, not counted as identical.
        let c = compare_flags(&host[1..2], 0.5, &[f(0, 2, 0.90001)]);
        assert!(c.ok());
        assert_eq!(c.identical, 0);
    }
}
