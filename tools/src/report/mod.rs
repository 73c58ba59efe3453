//! `tapstream model report`: does a faster precision or backend cost
//! accuracy or robustness?
//!
//! A model may ship in several forms (FP32, an FP16 copy, an INT8
//! quantization: `<stem>-fp16.onnx`, `<stem>-int8.onnx` beside it) and run
//! on several ONNX Runtime backends (CPU, CUDA, TensorRT). Each form is only
//! worth deploying if it is faster *and* decides like the reference, so this
//! module measures both on the same rows, in one run, on the machine it runs
//! on:
//!
//! - every variant is loaded through the normal checks
//!   ([`OnnxEngine::load`]: library, threads, contract, precision); a refused
//!   variant or a backend that cannot start is reported with its reason,
//!   never fatal;
//! - each (backend, variant) scores the same labelled rows (CIC-IDS2017 CSVs
//!   with the training recipe's labels, by default only the held-out rows;
//!   or a capture through the CPU extractor): multiclass accuracy, recall
//!   per class, benign false-positive rate and attack detection at the
//!   threshold, and how many decisions and classes differ from the
//!   reference on the CPU (the baseline), with the largest score change;
//! - latency per call (p50, p99) by batch size, and throughput;
//! - with a capture, robustness: the flow's initiator pads, delays or adds
//!   packets within stated budgets (fixed seed), and the detection rate of
//!   every variant on the CPU is measured again.
//!
//! The result is `report.json` (stable keys, for scripts) and `report.html`
//! (one self-contained page with tables and SVG plots, see the `html` module).

mod html;
pub mod input;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tapstream_inference::{
    Engine, ExecutionProvider, ModelContract, OnnxConfig, OnnxEngine, OutputKind, Prediction,
};

use input::{Rows, BENIGN};
use tapstream_runtime::config::Provider;
use tapstream_runtime::Config;

/// Batch sizes measured when none are given.
pub const DEFAULT_BATCH_SIZES: [usize; 4] = [1, 64, 1024, 16384];

/// Rows per call when scoring for accuracy (not timed).
const SCORE_BATCH: usize = 4096;

/// Where the report's rows come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// CIC-IDS2017 "improved" CSVs (a file or a directory).
    Data {
        /// The file or directory.
        path: PathBuf,
        /// Held-out ids file; `None` uses `<model dir>/<stem>.holdout-ids.txt`
        /// when it exists.
        holdout: Option<PathBuf>,
    },
    /// A capture, every flow labelled `label`.
    Pcap {
        /// The capture.
        file: PathBuf,
        /// The label of every flow.
        label: String,
    },
}

/// What to report on.
#[derive(Clone, Debug)]
pub struct Options {
    /// The reference model (`None`: the configured or bundled one).
    pub model: Option<PathBuf>,
    /// Further variants to compare.
    pub compare: Vec<PathBuf>,
    /// The rows.
    pub source: Source,
    /// Output directory (created).
    pub out: PathBuf,
    /// Batch sizes for latency.
    pub batch_sizes: Vec<usize>,
}

/// The written report.
#[derive(Debug)]
pub struct Written {
    /// `DIR/report.json`.
    pub json: PathBuf,
    /// `DIR/report.html`.
    pub html: PathBuf,
    /// A few lines for the terminal.
    pub summary: String,
}

/// One model file to evaluate.
struct Variant {
    name: String,
    role: &'static str,
    path: PathBuf,
}

/// A variant scored by one backend.
struct Scored {
    threshold: f32,
    scores: Vec<f32>,
    /// Predicted label per row (argmax over all labels).
    predicted: Vec<String>,
}

/// Runs the report and writes `report.json` and `report.html`.
pub fn run(cfg: &Config, opts: &Options) -> Result<Written> {
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating report directory {}", opts.out.display()))?;
    let json_path = opts.out.join("report.json");
    let html_path = opts.out.join("report.html");
    // Fail before minutes of measuring when the directory cannot be written.
    std::fs::write(&json_path, b"{}\n")
        .with_context(|| format!("cannot write to report directory {}", opts.out.display()))?;

    let ref_path = tapstream_inference::model::cic_model_path(
        cfg.model.path.as_deref(),
        opts.model.as_deref(),
    )?;
    let variants = variants(&ref_path, &opts.compare);
    // The reference on the CPU decides labels and the baseline; it must load.
    let reference = OnnxEngine::load(&ref_path, &onnx(cfg, vec![ExecutionProvider::Cpu], true))
        .with_context(|| format!("loading the reference model {}", ref_path.display()))?;
    if reference.contract().needs_context() {
        bail!(
            "{} reads context features (schema {}), which this report's CIC rows and \
             perturbed flows do not carry; compare such models with `tapstream eval --data DIR \
             --model A --model B` on labelled captures",
            ref_path.display(),
            reference.contract().schema
        );
    }
    let library = reference.library().to_path_buf();
    let (rows, input_json, records) = load_rows(cfg, opts, &ref_path, reference.contract())?;
    if rows.is_empty() {
        bail!("no rows to evaluate: the input produced no labelled rows (check --data/--holdout or the capture)");
    }
    let sizes = batch_sizes(&opts.batch_sizes, rows.len())?;
    let (backends, backends_json) = backends(cfg);
    let mut m = Measured::new(reference);
    for (vi, v) in variants.iter().enumerate() {
        m.variant(cfg, (vi, v), &backends, &rows, &sizes)?;
    }
    if m.baseline.is_none() {
        bail!("the reference model could not score the rows on the CPU (see above)");
    }
    // Robustness (needs packets).
    let robustness = match &records {
        Some(recs) => Some(robustness(cfg, recs, &variants, &mut m.cpu_engines)?),
        None => None,
    };
    let report = json!({
        "report": "tapstream model report",
        "format_version": 1,
        "tapstream_version": env!("CARGO_PKG_VERSION"),
        "generated_unix_s": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        "machine": machine(),
        "onnxruntime_library": library.display().to_string(),
        "input": input_json,
        "batch_sizes": sizes,
        "threshold_override": cfg.model.threshold,
        "baseline": {"variant": variants.first().map(|v| v.name.as_str()), "backend": "cpu"},
        "backends": backends_json,
        "variants": m.variant_json,
        "results": m.results,
        "unavailable": m.unavailable,
        "robustness": robustness,
    });
    let text = serde_json::to_string_pretty(&report)? + "\n";
    std::fs::write(&json_path, text).with_context(|| format!("writing {}", json_path.display()))?;
    let page = html::render(&report)?;
    std::fs::write(&html_path, page).with_context(|| format!("writing {}", html_path.display()))?;
    Ok(Written {
        summary: summary(&report),
        json: json_path,
        html: html_path,
    })
}

/// The session settings of the report's engines: the configured library
/// and threads, `providers` only (no fallback), and the SHA-256 pin when
/// `pinned` (the reference).
fn onnx(cfg: &Config, providers: Vec<ExecutionProvider>, pinned: bool) -> OnnxConfig {
    let sha256 = if pinned {
        cfg.model.sha256.clone()
    } else {
        None
    };
    OnnxConfig {
        providers,
        allow_fallback: false,
        ..cfg.inference.onnx_config(sha256)
    }
}

/// The batch sizes to time: each capped at the rows there are, sorted,
/// once each.
fn batch_sizes(asked: &[usize], rows: usize) -> Result<Vec<usize>> {
    let mut sizes: Vec<usize> = asked
        .iter()
        .map(|&b| b.min(rows))
        .filter(|&b| b > 0)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.is_empty() {
        bail!("--batch-sizes: give at least one size above 0");
    }
    Ok(sizes)
}

/// The backends to measure: the CPU always, GPU providers when this ONNX
/// Runtime has them; and how each is described in the report.
fn backends(cfg: &Config) -> (Vec<(&'static str, ExecutionProvider)>, Vec<Value>) {
    let gpu = |p: Provider| {
        let mut sec = cfg.inference.clone();
        sec.providers = vec![p];
        sec.execution_providers().into_iter().next()
    };
    let mut backends = vec![("cpu", ExecutionProvider::Cpu)];
    let mut backends_json = vec![json!({"name": "cpu", "built_in": true})];
    for (name, p) in [("cuda", Provider::Cuda), ("tensorrt", Provider::Tensorrt)] {
        if let Some(ep) = gpu(p) {
            let built = ep.is_built_in();
            backends_json.push(json!({"name": name, "built_in": built}));
            if built {
                backends.push((name, ep));
            }
        }
    }
    (backends, backends_json)
}

/// What scoring the variants on the backends gave so far.
struct Measured {
    /// The reference's CPU engine, until its turn.
    reference: Option<OnnxEngine>,
    variant_json: Vec<Value>,
    results: Vec<Value>,
    unavailable: Vec<Value>,
    /// Each variant's CPU engine, kept for robustness.
    cpu_engines: Vec<Option<OnnxEngine>>,
    /// The reference on the CPU: what every other result is compared with.
    baseline: Option<Scored>,
}

impl Measured {
    fn new(reference: OnnxEngine) -> Self {
        Measured {
            reference: Some(reference),
            variant_json: Vec::new(),
            results: Vec::new(),
            unavailable: Vec::new(),
            cpu_engines: Vec::new(),
            baseline: None,
        }
    }

    /// Scores variant `vi` on every backend.
    fn variant(
        &mut self,
        cfg: &Config,
        (vi, v): (usize, &Variant),
        backends: &[(&'static str, ExecutionProvider)],
        rows: &Rows,
        sizes: &[usize],
    ) -> Result<()> {
        let bytes = std::fs::read(&v.path).ok();
        let mut desc = json!({
            "name": v.name,
            "role": v.role,
            "path": v.path.display().to_string(),
            "sha256": bytes.as_deref().map(tapstream_inference::sha256_hex),
            "bytes": bytes.as_ref().map(Vec::len),
        });
        let mut kept_cpu = None;
        for (bname, ep) in backends {
            let loaded = if vi == 0 && *bname == "cpu" {
                self.reference
                    .take()
                    .ok_or_else(|| anyhow!("reference loaded twice"))
            } else {
                OnnxEngine::load(&v.path, &onnx(cfg, vec![ep.clone()], vi == 0))
                    .map_err(|e| anyhow::Error::new(e).context(format!("loading on {bname}")))
            };
            let engine = match loaded {
                Ok(e) => e,
                Err(e) => {
                    let reason = format!("{e:#}");
                    if *bname == "cpu" {
                        if let Some(d) = desc.as_object_mut() {
                            d.insert("error".into(), json!(reason.clone()));
                        }
                    }
                    self.unavailable(&v.name, bname, &reason, "unavailable: ");
                    continue;
                }
            };
            let kept = self.backend(cfg, &v.name, bname, engine, &mut desc, rows, sizes)?;
            if *bname == "cpu" {
                kept_cpu = kept;
            }
        }
        self.cpu_engines.push(kept_cpu);
        self.variant_json.push(desc);
        Ok(())
    }

    /// Scores one variant on one backend; gives the engine back when it
    /// scored.
    #[allow(clippy::too_many_arguments)]
    fn backend(
        &mut self,
        cfg: &Config,
        name: &str,
        bname: &str,
        mut engine: OnnxEngine,
        desc: &mut Value,
        rows: &Rows,
        sizes: &[usize],
    ) -> Result<Option<OnnxEngine>> {
        let contract = engine.contract().clone();
        let threshold = cfg.model.threshold.unwrap_or(contract.threshold);
        if bname == "cpu" {
            describe_contract(desc, &contract, threshold);
        }
        let measured = measure(&mut engine, rows, sizes, threshold).map(|(s, lat)| {
            let scored = Scored {
                threshold,
                scores: s.0,
                predicted: s.1,
            };
            (scored, lat)
        });
        match measured {
            Ok((scored, latency)) => {
                let base = self.baseline.as_ref().unwrap_or(&scored);
                let metrics = metrics(rows, &scored, base, &contract);
                self.results.push(json!({
                    "variant": name, "backend": bname, "status": "ok",
                    "threshold": threshold,
                    "metrics": metrics,
                    "latency": latency,
                }));
                if self.baseline.is_none() {
                    self.baseline = Some(scored);
                }
                Ok(Some(engine))
            }
            Err(e) if self.baseline.is_none() => {
                Err(e.context("the reference model could not score the rows on the cpu"))
            }
            Err(e) => {
                let reason = format!("{e:#}");
                self.unavailable(name, bname, &reason, "unavailable: failed while scoring: ");
                Ok(None)
            }
        }
    }

    /// Records a variant that could not be measured on a backend.
    fn unavailable(&mut self, name: &str, bname: &str, reason: &str, prefix: &str) {
        self.unavailable
            .push(json!({"variant": name, "backend": bname, "reason": reason}));
        self.results.push(json!({
            "variant": name, "backend": bname, "status": "unavailable",
            "reason": format!("{prefix}{reason}"),
        }));
    }
}

fn model_stem(model: &Path) -> String {
    model
        .file_stem()
        .map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned())
}

/// The `-fp16`/`-int8` variants of `model` that exist beside it (as
/// `deploy/training/precision.py` writes them): `(name, path)` each.
pub fn precision_siblings(model: &Path) -> Vec<(String, PathBuf)> {
    let stem = model_stem(model);
    let dir = model.parent().unwrap_or_else(|| Path::new(""));
    ["fp16", "int8"]
        .into_iter()
        .map(|suffix| format!("{stem}-{suffix}"))
        .filter_map(|name| {
            let path = dir.join(format!("{name}.onnx"));
            path.is_file().then_some((name, path))
        })
        .collect()
}

/// The reference, its `-fp16`/`-int8` siblings that exist, then `--compare`
/// files (each file once).
fn variants(reference: &Path, compare: &[PathBuf]) -> Vec<Variant> {
    let mut out = vec![Variant {
        name: model_stem(reference),
        role: "reference",
        path: reference.to_path_buf(),
    }];
    for (name, path) in precision_siblings(reference) {
        out.push(Variant {
            name,
            role: "sibling",
            path,
        });
    }
    for p in compare {
        out.push(Variant {
            name: p.file_stem().map_or_else(
                || p.display().to_string(),
                |s| s.to_string_lossy().into_owned(),
            ),
            role: "compare",
            path: p.clone(),
        });
    }
    // Each file once (by canonical path); names made unique.
    let mut seen = HashSet::new();
    out.retain(|v| seen.insert(std::fs::canonicalize(&v.path).unwrap_or_else(|_| v.path.clone())));
    let mut names = HashSet::new();
    for v in &mut out {
        let base = v.name.clone();
        let mut k = 2;
        while !names.insert(v.name.clone()) {
            v.name = format!("{base}#{k}");
            k += 1;
        }
    }
    out
}

fn describe_contract(desc: &mut Value, c: &ModelContract, threshold: f32) {
    desc["model_name"] = json!(c.name);
    desc["model_version"] = json!(c.version);
    desc["precision"] = json!(c.precision.as_str());
    desc["contract_threshold"] = json!(c.threshold);
    desc["threshold"] = json!(threshold);
    desc["features"] = json!(c.features.len());
    desc["labels"] = json!(c.labels);
    desc["output"] = json!(match c.output {
        OutputKind::Probabilities => "probabilities",
        OutputKind::Score => "score",
    });
}

/// The rows (and, for a capture, its records for robustness).
#[allow(clippy::type_complexity)]
fn load_rows(
    cfg: &Config,
    opts: &Options,
    ref_path: &Path,
    contract: &ModelContract,
) -> Result<(Rows, Value, Option<Vec<tapstream_ingest::PacketRecord>>)> {
    match &opts.source {
        Source::Data { path, holdout } => {
            let files = input::csv_files(path)?;
            let holdout = match holdout {
                Some(h) => Some(h.clone()),
                None => {
                    let stem = ref_path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned());
                    stem.map(|s| ref_path.with_file_name(format!("{s}.holdout-ids.txt")))
                        .filter(|p| p.is_file())
                }
            };
            let keep = holdout.as_deref().map(input::read_holdout).transpose()?;
            let (rows, stats) = input::read_csvs(&files, keep.as_ref())?;
            let mut counts = BTreeMap::new();
            for l in &rows.labels {
                *counts.entry(l.clone()).or_insert(0usize) += 1;
            }
            let used = match &holdout {
                Some(h) => format!(
                    "the {} rows of {} listed in {} (held out from training)",
                    rows.len(),
                    path.display(),
                    h.display()
                ),
                None => format!("all {} rows of {}", rows.len(), path.display()),
            };
            let json = json!({
                "kind": "data",
                "path": path.display().to_string(),
                "files": stats.per_file.iter().map(|(p, k)| json!({
                    "file": p.file_name().map(|n| n.to_string_lossy().into_owned()),
                    "rows_used": k,
                })).collect::<Vec<_>>(),
                "rows_read": stats.read,
                "holdout": holdout.as_ref().map(|h| json!({
                    "file": h.display().to_string(),
                    "ids_listed": keep.as_ref().map_or(0, HashSet::len),
                    "rows_matched": rows.len(),
                })),
                "rows": rows.len(),
                "rows_used": used,
                "label_mapping": "train.py: `Web Attack - *` → `Web Attack`; `* - Attempted` or an `Attempted Category` other than empty/-1 → BENIGN",
                "label_counts": counts,
            });
            Ok((rows, json, None))
        }
        Source::Pcap { file, label } => {
            if label != BENIGN && !contract.labels.iter().any(|l| l == label) {
                bail!(
                    "unknown label {label:?}: use BENIGN or one of the reference model's labels ({})",
                    contract.labels.join(", ")
                );
            }
            let read = tapstream_ingest::records::read_records(file, usize::MAX)?;
            let (packets, decoded) = (read.count.packets, read.decoded());
            let recs = read.recs;
            let flows = input::extract(&recs, cfg.flow.flow_config(1))?;
            let rows = Rows {
                labels: vec![label.clone(); flows.len()],
                rows: flows.rows,
            };
            let json = json!({
                "kind": "pcap",
                "path": file.display().to_string(),
                "label": label,
                "packets": packets,
                "packets_decoded": decoded,
                "rows": rows.len(),
                "rows_used": format!("every flow of {} through the CPU extractor ({} flows), labelled {label}", file.display(), rows.len()),
                "label_counts": {label.clone(): rows.len()},
            });
            Ok((rows, json, Some(recs)))
        }
    }
}

/// Model input of `rows` for `contract`.
fn model_input(contract: &ModelContract, rows: &[f64], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * contract.num_features());
    tapstream_inference::select_features(contract, rows, n, &mut out);
    out
}

/// The label a prediction names: the argmax over every label (benign
/// included) for a probabilities model; for a score model, its attack label
/// at or above the threshold, else benign.
fn predicted_label(
    contract: &ModelContract,
    p: &Prediction,
    raw: &[f32],
    threshold: f32,
) -> String {
    let benign = contract
        .benign
        .and_then(|b| contract.labels.get(b))
        .map_or(BENIGN, String::as_str);
    let idx = match contract.output {
        OutputKind::Probabilities => {
            let mut best = None::<(usize, f32)>;
            for (i, &v) in raw.iter().enumerate() {
                let v = if v.is_nan() { f32::NEG_INFINITY } else { v };
                if best.is_none_or(|(_, b)| v > b) {
                    best = Some((i, v));
                }
            }
            best.map(|(i, _)| i)
        }
        OutputKind::Score => (p.score >= threshold).then_some(p.class),
    };
    match idx.and_then(|i| contract.labels.get(i)) {
        Some(l) => l.clone(),
        None => benign.to_string(),
    }
}

type ScoresAndLabels = (Vec<f32>, Vec<String>);

/// Scores every row, then times calls per batch size.
fn measure(
    engine: &mut OnnxEngine,
    rows: &Rows,
    sizes: &[usize],
    threshold: f32,
) -> Result<(ScoresAndLabels, Value)> {
    let contract = engine.contract().clone();
    let n = rows.len();
    let width = contract.num_features();
    let input = model_input(&contract, &rows.rows, n);
    let classes = contract.labels.len();
    let mut scores = Vec::with_capacity(n);
    let mut predicted = Vec::with_capacity(n);
    let (mut preds, mut raw) = (Vec::new(), Vec::new());
    let per_row = if contract.output == OutputKind::Probabilities {
        classes
    } else {
        1
    };
    for chunk in input.chunks(SCORE_BATCH * width.max(1)) {
        let k = chunk.len() / width.max(1);
        engine
            .infer_raw(chunk, k, &mut preds, &mut raw)
            .context("inference")?;
        for (i, p) in preds.iter().enumerate() {
            let r = raw.get(i * per_row..(i + 1) * per_row).unwrap_or(&[]);
            scores.push(p.score);
            predicted.push(predicted_label(&contract, p, r, threshold));
        }
    }

    // Latency: each size is warmed up once, then called until at least 20
    // calls and 0.3 s (at most 3 s once 3 calls are in).
    let mut points = Vec::new();
    let mut throughput = None;
    for &b in sizes {
        // Sizes are capped at the row count by `run`.
        let slice = input
            .get(..b * width)
            .ok_or_else(|| anyhow!("batch size {b} is above the {n} rows"))?;
        engine.infer(slice, b, &mut preds).context("warm-up")?;
        let mut times = Vec::new();
        let start = Instant::now();
        loop {
            let t = Instant::now();
            engine
                .infer(slice, b, &mut preds)
                .context("timed inference")?;
            times.push(t.elapsed().as_secs_f64());
            let el = start.elapsed().as_secs_f64();
            if (times.len() >= 20 && el >= 0.3) || (times.len() >= 3 && el >= 3.0) {
                break;
            }
        }
        let total: f64 = times.iter().sum();
        times.sort_by(f64::total_cmp);
        // At least three calls were timed.
        let pct = |q: f64| {
            let i = (times.len().saturating_sub(1) as f64 * q).round() as usize;
            times.get(i).copied().unwrap_or(0.0)
        };
        let rate = if total > 0.0 {
            (b * times.len()) as f64 / total
        } else {
            0.0
        };
        points.push(json!({
            "batch": b,
            "calls": times.len(),
            "p50_us": round3(pct(0.5) * 1e6),
            "p99_us": round3(pct(0.99) * 1e6),
            "rows_per_s": rate.round(),
        }));
        throughput = Some(json!({"batch": b, "rows_per_s": rate.round()}));
    }
    Ok((
        (scores, predicted),
        json!({"per_batch": points, "throughput": throughput}),
    ))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ratio(a: usize, b: usize) -> Value {
    if b == 0 {
        Value::Null
    } else {
        json!(round6(a as f64 / b as f64))
    }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Accuracy, recall per class, FPR and detection, and the comparison with
/// the baseline.
fn metrics(rows: &Rows, s: &Scored, base: &Scored, contract: &ModelContract) -> Value {
    let n = rows.len();
    let mut correct = 0usize;
    let mut per: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new(); // rows, right, alerts
    let (mut benign, mut fp, mut attacks, mut detected) = (0usize, 0usize, 0usize, 0usize);
    let scored = rows.labels.iter().zip(&s.scores).zip(&s.predicted);
    for ((label, &score), predicted) in scored {
        let label = label.as_str();
        let alert = score >= s.threshold;
        let right = predicted == label;
        correct += usize::from(right);
        let e = per.entry(label).or_default();
        e.0 += 1;
        e.1 += usize::from(right);
        e.2 += usize::from(alert);
        if label == BENIGN {
            benign += 1;
            fp += usize::from(alert);
        } else {
            attacks += 1;
            detected += usize::from(alert);
        }
    }
    let per_class: Vec<Value> = per
        .iter()
        .map(|(l, &(r, ok, al))| {
            json!({
                "label": l,
                "rows": r,
                "recall": ratio(ok, r),
                "alert_rate": ratio(al, r),
                "known_to_model": *l == BENIGN || contract.labels.iter().any(|x| x == l),
            })
        })
        .collect();
    let (mut decision_flips, mut class_flips) = (0usize, 0usize);
    let (mut max_d, mut sum_d) = (0f64, 0f64);
    let pairs = s.scores.iter().zip(&base.scores);
    let classes = s.predicted.iter().zip(&base.predicted);
    for ((&x, &y), (cx, cy)) in pairs.zip(classes) {
        decision_flips += usize::from((x >= s.threshold) != (y >= base.threshold));
        class_flips += usize::from(cx != cy);
        let d = (f64::from(x) - f64::from(y)).abs();
        if d.is_finite() {
            max_d = max_d.max(d);
            sum_d += d;
        }
    }
    json!({
        "rows": n,
        "accuracy": ratio(correct, n),
        "correct": correct,
        "per_class": per_class,
        "benign_rows": benign,
        "benign_alerts": fp,
        "benign_fpr": ratio(fp, benign),
        "attack_rows": attacks,
        "attacks_detected": detected,
        "detection_rate": ratio(detected, attacks),
        "vs_baseline": {
            "decision_flips": decision_flips,
            "class_flips": class_flips,
            "max_abs_score_delta": max_d,
            "mean_abs_score_delta": if n == 0 { 0.0 } else { sum_d / n as f64 },
        },
    })
}

/// Share of flows at or above the threshold.
fn detection(engine: &mut OnnxEngine, rows: &[f64], n: usize, threshold: f32) -> Result<f64> {
    let contract = engine.contract().clone();
    let width = contract.num_features();
    let input = model_input(&contract, rows, n);
    let mut preds = Vec::new();
    let mut hits = 0usize;
    for chunk in input.chunks(SCORE_BATCH * width.max(1)) {
        let k = chunk.len() / width.max(1);
        engine.infer(chunk, k, &mut preds).context("inference")?;
        hits += preds.iter().filter(|p| p.score >= threshold).count();
    }
    Ok(if n == 0 { 0.0 } else { hits as f64 / n as f64 })
}

/// Detection per perturbation per variant (CPU), with the change from the
/// unperturbed capture.
fn robustness(
    cfg: &Config,
    recs: &[tapstream_ingest::PacketRecord],
    variants: &[Variant],
    engines: &mut [Option<OnnxEngine>],
) -> Result<Value> {
    let flow = cfg.flow.flow_config(1);
    let attacker = input::attacker_mask(recs).iter().filter(|&&m| m).count();
    let mut cases: Vec<(String, Value, String, Vec<tapstream_ingest::PacketRecord>)> = vec![(
        "unperturbed".to_string(),
        json!({"kind": "none"}),
        "the capture as recorded".to_string(),
        recs.to_vec(),
    )];
    for p in input::PERTURBATIONS {
        cases.push((
            p.name(),
            p.budget(),
            p.describe(),
            input::perturb(recs, p, input::SEED),
        ));
    }
    let mut base_rates: Vec<Option<f64>> = vec![None; variants.len()];
    let mut out = Vec::new();
    for (name, budget, describe, recs) in cases {
        let flows = input::extract(&recs, flow)?;
        let n = flows.len();
        let mut per_variant = Vec::new();
        for (vi, v) in variants.iter().enumerate() {
            let Some(engine) = engines.get_mut(vi).and_then(Option::as_mut) else {
                continue;
            };
            let threshold = cfg.model.threshold.unwrap_or(engine.contract().threshold);
            let rate = detection(engine, &flows.rows, n, threshold)?;
            let base = base_rates
                .get_mut(vi)
                .map_or(rate, |b| *b.get_or_insert(rate));
            per_variant.push(json!({
                "variant": v.name,
                "backend": "cpu",
                "detection_rate": round6(rate),
                "change_vs_unperturbed": round6(rate - base),
            }));
        }
        out.push(json!({
            "name": name,
            "budget": budget,
            "description": describe,
            "packets": recs.len(),
            "flows": n,
            "detection": per_variant,
        }));
    }
    Ok(json!({
        "seed": input::SEED,
        "attacker": "the initiator of each connection: packets whose source address and port are those of the first packet with the same symmetric flow hash",
        "attacker_packets": attacker,
        "detection": "share of flows whose score is at or above the variant's threshold, each variant on the cpu backend",
        "perturbations": out,
    }))
}

/// The machine: CPU model and logical cores.
fn machine() -> Value {
    json!({
        "cpu": crate::bench::cpu_model(),
        "logical_cores": tapstream_runtime::config::logical_cores(),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "description": crate::bench::cpu_name(),
    })
}

/// A few lines for the terminal.
// serde_json's `value["key"]` gives Null for a missing key: it never panics.
#[allow(clippy::indexing_slicing)]
fn summary(report: &Value) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "rows: {} ({})",
        report["input"]["rows"],
        report["input"]["rows_used"].as_str().unwrap_or("")
    );
    for r in report["results"].as_array().into_iter().flatten() {
        let (v, b) = (
            r["variant"].as_str().unwrap_or("?"),
            r["backend"].as_str().unwrap_or("?"),
        );
        if r["status"] == "ok" {
            let m = &r["metrics"];
            let lat: Vec<String> = r["latency"]["per_batch"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| format!("{}:{}µs", p["batch"], p["p50_us"]))
                .collect();
            let _ = writeln!(
                s,
                "{v} on {b}: accuracy {} fpr {} detection {} decision flips {} p50 [{}] throughput {} rows/s",
                m["accuracy"],
                m["benign_fpr"],
                m["detection_rate"],
                m["vs_baseline"]["decision_flips"],
                lat.join(" "),
                r["latency"]["throughput"]["rows_per_s"]
            );
        } else {
            let _ = writeln!(s, "{v} on {b}: {}", r["reason"].as_str().unwrap_or(""));
        }
    }
    s
}
