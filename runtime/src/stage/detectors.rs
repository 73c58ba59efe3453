//! Detectors beside the first (`[[detector]]`): each scores every flow in
//! the alert stage with its own model, threshold and hot reload, and its
//! alerts name it.
//!
//! They live apart from the first detector because that one may score in
//! the flow workers, and its generations and marks are the stage's
//! bookkeeping; these only gather the rows of the flows as they pass, score
//! them when the stage scores, and hand their alerts to the sink before the
//! first detector's (so the marks sent with those cover them too).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use tapstream_connectors::ModelInfo;
use tapstream_inference::{
    select_features_with, Engine, LoadedModel, ModelContract, Prediction, Reloader,
};
use tapstream_ingest::FlowMeta;
use tapstream_kernels::context::NUM_CONTEXT;
use tapstream_kernels::FlowBatch;

use super::alerts::model_info;
use super::sink::{Flagged, Scoring};

/// Says that `info`'s model took over for its detector.
pub(crate) fn log_swap(info: &ModelInfo) {
    tracing::info!(
        message = "model swapped in",
        detector = %info.detector,
        model = %info.name,
        version = %info.version,
        sha256 = %info.sha256,
    );
}

/// A further detector for the alert stage.
pub struct Detector {
    /// Its name in alerts and in the summary.
    pub name: String,
    /// Its model (no worker sessions: it scores in the alert stage).
    pub model: LoadedModel,
    /// Its replacement models (hot reload), if the run reloads.
    pub reload: Option<Arc<Reloader>>,
}

/// What a detector counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DetectorCounts {
    /// Its name.
    pub name: String,
    /// Flows it scored.
    pub scored: u64,
    /// Flows at or above its threshold.
    pub flagged: u64,
    /// Models swapped in (hot reload).
    pub swaps: u64,
    /// Time inside its engine.
    pub inference_busy: std::time::Duration,
    /// A detector that learned its model in the run: what it learned.
    pub learn: Option<super::learning::LearnCounts>,
}

/// A further detector's state in the stage.
pub(crate) struct Extra {
    index: u16,
    engine: Box<dyn Engine>,
    contract: ModelContract,
    threshold: f32,
    scoring: Arc<Scoring>,
    reload: Option<Arc<Reloader>>,
    metas: Vec<FlowMeta>,
    input: Vec<f32>,
    context_rows: Vec<f32>,
    preds: Vec<Prediction>,
    context: bool,
    pub(crate) counts: DetectorCounts,
}

impl Extra {
    /// The `index`-th detector of the run (the first is 0).
    pub(crate) fn new(d: Detector, index: u16, context: bool) -> Self {
        let contract = d.model.engine.contract().clone();
        let info = model_info(&contract).for_detector(d.name.clone(), index);
        Extra {
            index,
            scoring: Arc::new(Scoring::of(info, &contract, d.model.threshold, context)),
            engine: d.model.engine,
            contract,
            threshold: d.model.threshold,
            reload: d.reload,
            metas: Vec::new(),
            input: Vec::new(),
            context_rows: Vec::new(),
            preds: Vec::new(),
            context,
            counts: DetectorCounts {
                name: d.name,
                ..DetectorCounts::default()
            },
        }
    }

    /// Its place among the run's detectors (the first is 0).
    pub(crate) fn index(&self) -> u16 {
        self.index
    }

    /// Whether its model reads context features.
    pub(crate) fn needs_context(d: &Detector) -> bool {
        d.model.engine.contract().needs_context()
    }

    /// Takes the model's columns of a batch's flows (first a reloaded
    /// model, when nothing is pending).
    pub(crate) fn gather(&mut self, b: &FlowBatch) {
        if self.metas.is_empty() {
            self.swap_if_reloaded();
        }
        let n = b.len();
        let written = select_features_with(&self.contract, &b.rows, &b.context, n, &mut self.input);
        self.metas.extend(b.metas.iter().take(written).copied());
        if !self.scoring.baseline.is_empty() {
            let rows = b.context.get(..written * NUM_CONTEXT).unwrap_or(&[]);
            self.context_rows.extend_from_slice(rows);
        }
    }

    /// Takes a reloaded model while nothing is pending.
    pub(crate) fn swap_if_idle(&mut self) {
        if self.metas.is_empty() {
            self.swap_if_reloaded();
        }
    }

    fn swap_if_reloaded(&mut self) {
        let Some(new) = self.reload.as_ref().and_then(|r| r.take()) else {
            return;
        };
        let c = new.engine.contract();
        if c.needs_context() && !self.context {
            tracing::error!(
                message = "reloaded model not swapped in: it reads context features, which this \
                           run does not compute",
                detector = %self.counts.name,
                model = %c.name,
            );
            return;
        }
        let info = model_info(c).for_detector(self.counts.name.clone(), self.index);
        log_swap(&info);
        self.contract = c.clone();
        self.threshold = new.threshold;
        self.scoring = Arc::new(Scoring::of(
            info,
            &self.contract,
            self.threshold,
            self.context,
        ));
        self.engine = new.engine;
        self.counts.swaps += 1;
    }

    /// Scores what is pending in calls of at most `batch_rows` rows; its
    /// flagged flows and the scoring they carry.
    pub(crate) fn score(&mut self, batch_rows: usize) -> Result<(Vec<Flagged>, Arc<Scoring>)> {
        let width = self.contract.num_features().max(1);
        let rows = batch_rows.max(1);
        let mut flagged = Vec::new();
        for (c, (metas, chunk)) in self
            .metas
            .chunks(rows)
            .zip(self.input.chunks(rows * width))
            .enumerate()
        {
            let t = Instant::now();
            self.engine
                .infer(chunk, metas.len(), &mut self.preds)
                .map_err(|e| {
                    anyhow::Error::new(e)
                        .context(format!("inference failed (detector {})", self.counts.name))
                })?;
            let took = t.elapsed();
            self.counts.inference_busy += took;
            metrics::histogram!("tapstream_inference_latency_seconds").record(took.as_secs_f64());
            self.counts.scored += metas.len() as u64;
            for (i, (meta, p)) in metas.iter().zip(&self.preds).enumerate() {
                if p.score >= self.threshold {
                    let at = (c * rows + i) * NUM_CONTEXT;
                    let row = self.context_rows.get(at..at + NUM_CONTEXT);
                    let input = chunk.get(i * width..(i + 1) * width);
                    let (explanation, input) = self.scoring.defer(row, input);
                    flagged.push(Flagged {
                        meta: *meta,
                        prediction: *p,
                        explanation,
                        input,
                    });
                }
            }
        }
        self.counts.flagged += flagged.len() as u64;
        self.metas.clear();
        self.input.clear();
        self.context_rows.clear();
        Ok((flagged, self.scoring.clone()))
    }
}
