//! `tapstream eval`: how well does a detector do on *this* network's
//! labelled traffic?
//!
//! The shipped model's numbers come from the data set it was trained on; a
//! deployment needs them on its own captures before it trusts the alerts.
//! This module runs a labelled directory ([`labels`]) through the same
//! pipeline `tapstream run` uses (decoders, flow workers, the CIC features,
//! through [`tapstream_runtime::run_file`]), extracts each capture's flows
//! once, and scores every flow with every model given, through the same
//! contract, feature selection and threshold as the alert stage. Models are
//! compared side by side on identical flows; [`metrics`] says what the
//! verdicts add up to, [`report`] writes the terminal table, `eval.json` and
//! a self-contained `eval.html`.
//!
//! A capture that cannot be read is reported and counted, and the others
//! are still evaluated.
//!
//! With `--perturb`, every capture is also rewritten by its attacker
//! ([`perturb`]: padding, jitter, 1-byte extra packets, fragmentation) and
//! each copy is evaluated the same way, so the report says what each
//! perturbation costs every kind.

mod html;
pub mod labels;
pub mod metrics;
pub mod perturb;
pub mod report;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tapstream_inference::model::{load, model_path, ModelSpec};
use tapstream_inference::{
    select_features_with, InferenceError, LoadedModel, ModelContract, ModelError, Prediction,
};
use tapstream_kernels::FlowBatch;
use tapstream_runtime::{Config, Consumer, Progress};

use labels::{Capture, LabelError};
use metrics::Tally;
use report::{ModelInfo, ReadError, Report};

/// What to evaluate.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The data directory.
    pub data: PathBuf,
    /// The labels TSV (`None`: `DATA/LABELS.tsv` when it exists, else the
    /// directory layout).
    pub labels: Option<PathBuf>,
    /// The models (empty: the configured or shipped default).
    pub models: Vec<PathBuf>,
    /// Output directory (created).
    pub out: PathBuf,
    /// Decision threshold for every model instead of its own.
    pub threshold: Option<f32>,
    /// Also evaluate every capture perturbed these ways ([`perturb`]).
    pub perturb: Vec<perturb::Perturb>,
    /// Also score the models as one run's detectors: a flow is alerted
    /// when any model alerts it (the first such model's class), reported
    /// as one more column, `together`.
    pub together: bool,
}

/// Why an evaluation could not run to the end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// The labels are missing or malformed.
    #[error(transparent)]
    Labels(#[from] LabelError),
    /// A model could not be loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A model failed to score a capture's flows.
    #[error("scoring the flows of {file} with {model}")]
    Score {
        /// The model's name in the report.
        model: String,
        /// The capture.
        file: String,
        /// Why.
        #[source]
        source: InferenceError,
    },
    /// A model gave a different number of predictions than rows.
    #[error("{model} gave {got} predictions for {rows} flows of {file}")]
    Predictions {
        /// The model's name in the report.
        model: String,
        /// The capture.
        file: String,
        /// Predictions returned.
        got: usize,
        /// Rows scored.
        rows: usize,
    },
    /// The threshold is not in `[0, 1]`.
    #[error("threshold {0} is outside [0, 1]")]
    Threshold(f32),
    /// The output could not be written.
    #[error("writing {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The report could not be serialised.
    #[error("serialising eval.json")]
    Json(#[from] serde_json::Error),
}

/// What an evaluation wrote.
#[derive(Debug)]
pub struct Written {
    /// `OUT/eval.json`.
    pub json: PathBuf,
    /// `OUT/eval.html`.
    pub html: PathBuf,
    /// The terminal table.
    pub table: String,
    /// Captures that could not be read, or only in part.
    pub read_errors: Vec<ReadError>,
}

/// A model under evaluation.
struct Model {
    info: ModelInfo,
    loaded: LoadedModel,
    tally: Tally,
    /// One per perturbation, beside `tally`.
    perturbed: Vec<Tally>,
    input: Vec<f32>,
    preds: Vec<Prediction>,
}

/// What the perturbed copies of the captures gave, one per perturbation.
struct Perturbed {
    truth: Vec<Tally>,
    rewritten: Vec<perturb::Rewritten>,
    /// Where the copies are written, one at a time.
    dir: PathBuf,
}

/// Evaluates the models of `opts` on its data with the pipeline settings of
/// `cfg`, and writes `eval.json` and `eval.html`. `progress` hears one line
/// per capture.
pub fn run(
    cfg: &Config,
    opts: &Options,
    progress: &mut dyn FnMut(&str),
) -> Result<Written, EvalError> {
    if let Some(t) = opts.threshold {
        if !(0.0..=1.0).contains(&t) {
            return Err(EvalError::Threshold(t));
        }
    }
    let dataset = labels::discover(&opts.data, opts.labels.as_deref())?;
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EvalError::Write { path, source }
    };
    std::fs::create_dir_all(&opts.out).map_err(write_err(&opts.out))?;
    let json_path = opts.out.join("eval.json");
    let html_path = opts.out.join("eval.html");
    // Fail before reading every capture when the directory cannot be written.
    std::fs::write(&json_path, b"{}\n").map_err(write_err(&json_path))?;
    let mut models = load_models(cfg, opts)?;
    // A model that reads context features gets them: the context stage runs
    // whenever one of the models needs it (context rows change no CIC column).
    let mut cfg = cfg.clone();
    if models
        .iter()
        .any(|m| m.loaded.engine.contract().needs_context())
    {
        cfg.context.enabled = tapstream_runtime::config::ContextMode::On;
    }
    let cfg = &cfg;
    let mut truth = Tally::default();
    let mut together = (opts.together && models.len() > 1).then(Tally::default);
    let mut read_errors = Vec::new();
    let n = opts.perturb.len();
    for m in &mut models {
        m.perturbed = (0..n).map(|_| Tally::default()).collect();
    }
    let mut perturbed = Perturbed {
        truth: (0..n).map(|_| Tally::default()).collect(),
        rewritten: vec![perturb::Rewritten::default(); n],
        dir: opts.out.join(".perturbed"),
    };
    if n > 0 {
        std::fs::create_dir_all(&perturbed.dir).map_err(write_err(&perturbed.dir))?;
    }
    for (i, cap) in dataset.captures.iter().enumerate() {
        let (batches, partial) = match extract(cfg, &cap.path) {
            Ok(x) => x,
            Err(error) => {
                progress(&format!("{}: unreadable: {error}", cap.rel));
                read_errors.push(ReadError::new(cap, error, false));
                continue;
            }
        };
        let flows = evaluate_capture(
            i,
            cap,
            &batches,
            &mut models,
            (&mut truth, together.as_mut()),
            None,
        )?;
        evaluate_perturbed(cfg, opts, (i, cap), &mut models, &mut perturbed, progress)?;
        match partial {
            Some(error) => {
                progress(&format!("{}: {flows} flows, then: {error}", cap.rel));
                read_errors.push(ReadError::new(cap, error, true));
            }
            None => progress(&format!("{}: {flows} flows", cap.rel)),
        }
    }
    if n > 0 {
        let _ = std::fs::remove_dir_all(&perturbed.dir);
    }
    let mut results = models_result(&models);
    if let Some(t) = &together {
        let names: Vec<&str> = models.iter().map(|m| m.info.name.as_str()).collect();
        results.push((ModelInfo::together(&names), t.finish()));
    }
    let mut report = Report::new(&dataset, &truth, &results, read_errors);
    report.perturbations = report::perturbations(
        &opts.perturb,
        &perturbed.rewritten,
        &models_perturbed(&models),
    );
    let text = serde_json::to_string_pretty(&report)? + "\n";
    std::fs::write(&json_path, text).map_err(write_err(&json_path))?;
    std::fs::write(&html_path, html::render(&report)).map_err(write_err(&html_path))?;
    Ok(Written {
        json: json_path,
        html: html_path,
        table: report.table(),
        read_errors: report.read_errors,
    })
}

/// Each model's name, clean metrics and metrics per perturbation.
fn models_perturbed(models: &[Model]) -> Vec<(String, metrics::Metrics, Vec<metrics::Metrics>)> {
    models
        .iter()
        .map(|m| {
            let each = m.perturbed.iter().map(Tally::finish).collect();
            (m.info.name.clone(), m.tally.finish(), each)
        })
        .collect()
}

/// Evaluates capture `i` perturbed each way of `opts.perturb`: a copy is
/// written, run through the pipeline, scored and tallied, then removed. A
/// copy that cannot be made or read is reported and skipped.
fn evaluate_perturbed(
    cfg: &Config,
    opts: &Options,
    (i, cap): (usize, &Capture),
    models: &mut [Model],
    perturbed: &mut Perturbed,
    progress: &mut dyn FnMut(&str),
) -> Result<(), EvalError> {
    for (k, p) in opts.perturb.iter().enumerate() {
        let copy = perturbed.dir.join(format!("{k}.pcap"));
        let made = perturb::write_perturbed(&cap.path, &copy, *p);
        let flows = match made.and_then(|n| {
            if let Some(r) = perturbed.rewritten.get_mut(k) {
                r.add(&n);
            }
            extract(cfg, &copy)
        }) {
            Ok((batches, _)) => match perturbed.truth.get_mut(k) {
                Some(truth) => Some(evaluate_capture(
                    i,
                    cap,
                    &batches,
                    models,
                    (truth, None),
                    Some(k),
                )?),
                None => None,
            },
            Err(e) => {
                progress(&format!("{} ({}): {e}", cap.rel, p.name()));
                None
            }
        };
        if let Some(flows) = flows {
            progress(&format!("{} ({}): {flows} flows", cap.rel, p.name()));
        }
        let _ = std::fs::remove_file(&copy);
    }
    Ok(())
}

fn models_result(models: &[Model]) -> Vec<(ModelInfo, metrics::Metrics)> {
    models
        .iter()
        .map(|m| (m.info.clone(), m.tally.finish()))
        .collect()
}

/// Loads every model: the command line's, else the configured or shipped
/// one (whose SHA-256 pin, if configured, applies). Names are file stems,
/// made unique.
fn load_models(cfg: &Config, opts: &Options) -> Result<Vec<Model>, EvalError> {
    let configured = opts.models.is_empty();
    let paths = if configured {
        vec![model_path(cfg.model.path.as_deref(), None)?]
    } else {
        opts.models
            .iter()
            .map(|p| model_path(None, Some(p)))
            .collect::<Result<_, _>>()?
    };
    let mut models: Vec<Model> = Vec::with_capacity(paths.len());
    for path in paths {
        let pin = if configured {
            cfg.model.sha256.clone()
        } else {
            None
        };
        let spec = ModelSpec {
            path: path.clone(),
            onnx: cfg.inference.onnx_config(pin),
            threshold: opts.threshold.or(cfg.model.threshold),
        };
        let loaded = load(&spec)?;
        let stem = path
            .file_stem()
            .map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned());
        let mut name = stem.clone();
        let mut n = 1;
        while models.iter().any(|m| m.info.name == name) {
            n += 1;
            name = format!("{stem}-{n}");
        }
        let info = ModelInfo::new(name, &path, loaded.engine.contract(), loaded.threshold);
        models.push(Model {
            info,
            loaded,
            tally: Tally::default(),
            perturbed: Vec::new(),
            input: Vec::new(),
            preds: Vec::new(),
        });
    }
    Ok(models)
}

/// Every flow of the capture at `path` through the run's pipeline, in
/// batches, and the corruption that stopped reading early, if any; `Err`
/// says why the capture could not be read at all (also when tapstream
/// decodes none of its link types).
pub fn extract(cfg: &Config, path: &Path) -> Result<(Vec<FlowBatch>, Option<String>), String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let report = tapstream_runtime::run_file(
        path,
        cfg,
        Consumer::Collect(tx),
        Arc::new(Progress::default()),
    )
    .map_err(|e| format!("{e:#}"))?;
    if let Some(u) = tapstream_runtime::summary::unusable(&report).filter(|u| u.link_type) {
        return Err(u.message);
    }
    Ok((rx.try_iter().collect(), report.reader.read_error))
}

/// The model input of a collected batch for `contract`, in `out` (cleared
/// first); returns the rows written. The one place a batch of the pipeline
/// becomes rows for a model here.
pub fn model_input(contract: &ModelContract, batch: &FlowBatch, out: &mut Vec<f32>) -> usize {
    out.clear();
    select_features_with(contract, &batch.rows, &batch.context, batch.len(), out)
}

/// A model's tally: the clean one (`slot` `None`) or perturbation `slot`'s.
fn tally_of(m: &mut Model, slot: Option<usize>) -> Option<&mut Tally> {
    match slot {
        None => Some(&mut m.tally),
        Some(k) => m.perturbed.get_mut(k),
    }
}

/// Labels and scores every flow of capture `index`, and tallies them for
/// every model (into its tally `slot`, see [`tally_of`]), for the
/// model-free counts (`truth`) and, given `together`, for the models as one
/// run's detectors (a flow is alerted when any model alerts it, with the
/// first such model's class); returns the flows.
fn evaluate_capture(
    index: usize,
    cap: &Capture,
    batches: &[FlowBatch],
    models: &mut [Model],
    (truth, mut together): (&mut Tally, Option<&mut Tally>),
    slot: Option<usize>,
) -> Result<u64, EvalError> {
    for kind in cap.kinds() {
        truth.episode(index, kind);
        if let Some(t) = together.as_deref_mut() {
            t.episode(index, kind);
        }
        for m in models.iter_mut() {
            if let Some(t) = tally_of(m, slot) {
                t.episode(index, kind);
            }
        }
    }
    let mut flows = 0u64;
    for batch in batches {
        let kinds: Vec<Option<&str>> = batch.metas.iter().map(|m| cap.kind_of(m)).collect();
        for kind in &kinds {
            truth.flow(index, &cap.group, *kind, None);
        }
        flows += kinds.len() as u64;
        for m in models.iter_mut() {
            score(m, batch, &cap.rel)?;
            let Model {
                loaded,
                preds,
                tally,
                perturbed,
                ..
            } = m;
            let Some(t) = (match slot {
                None => Some(tally),
                Some(k) => perturbed.get_mut(k),
            }) else {
                continue;
            };
            let contract = loaded.engine.contract();
            for (kind, p) in kinds.iter().zip(preds.iter()) {
                let alert =
                    (p.score >= loaded.threshold).then(|| contract.label(p.class).unwrap_or("?"));
                t.flow(index, &cap.group, *kind, alert);
            }
        }
        if let Some(t) = together.as_deref_mut() {
            for (i, kind) in kinds.iter().enumerate() {
                let alert = models.iter().find_map(|m| {
                    let p = m.preds.get(i)?;
                    (p.score >= m.loaded.threshold)
                        .then(|| m.loaded.engine.contract().label(p.class).unwrap_or("?"))
                });
                t.flow(index, &cap.group, *kind, alert);
            }
        }
    }
    Ok(flows)
}

/// Scores `batch` with `m` into `m.preds`, one prediction per flow.
fn score(m: &mut Model, batch: &FlowBatch, file: &str) -> Result<(), EvalError> {
    m.preds.clear();
    let engine = m.loaded.engine.as_mut();
    let rows = model_input(engine.contract(), batch, &mut m.input);
    if rows > 0 {
        engine
            .infer(&m.input, rows, &mut m.preds)
            .map_err(|source| EvalError::Score {
                model: m.info.name.clone(),
                file: file.to_string(),
                source,
            })?;
    }
    if m.preds.len() != batch.len() {
        return Err(EvalError::Predictions {
            model: m.info.name.clone(),
            file: file.to_string(),
            got: m.preds.len(),
            rows: batch.len(),
        });
    }
    Ok(())
}
