//! Inference in the flow workers (`[inference] placement = "workers"`).
//!
//! With one consumer thread scoring every flow, inference is the run's
//! ceiling however many flow workers there are: on a 16-core host that
//! thread (inference and EVE) took 0.8–0.9 M flows/s while the workers, with
//! flows discarded, ended about 3.2 M flows/s of the benchmark file. Here
//! each worker owns a session and scores the flows it ends before handing
//! them off, so inference scales with the workers; the batch then carries
//! its flagged flows and which model generation scored it, and the consumer
//! only writes alerts.
//!
//! Hot reload keeps its rule that a flow is scored by exactly one model and
//! none is lost: the reloader builds one session per worker (all from a file
//! with the same SHA-256), the consumer publishes them as a new generation
//! ([`WorkerModels::publish`]), and each worker takes its own between two batches. A
//! batch names the generation that scored it, so its alerts carry that
//! model's identity and threshold even while other workers still run the
//! previous one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tapstream_kernels::gpu::Flagged;
use tapstream_kernels::{FlowBatch, Scored};

use crate::model::LoadedModel;
use crate::{select_features_with, Engine, InferenceError, Prediction};

/// Why worker sessions could not be handed out or could not score.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScoringError {
    /// A thread panicked while holding the model table.
    #[error("the worker model table is poisoned")]
    Poisoned,
    /// A reload brought another number of sessions than there are workers.
    #[error("a reload brought {sessions} sessions for {workers} flow workers")]
    Sessions {
        /// Sessions brought.
        sessions: usize,
        /// Flow workers.
        workers: usize,
    },
    /// A worker asked for a session that is not there.
    #[error("no model session for flow worker {0}")]
    NoSession(usize),
    /// A batch whose rows do not match its flows.
    #[error("the batch holds {flows} flows but only {rows} feature rows")]
    Rows {
        /// Flows in the batch.
        flows: usize,
        /// Feature rows selected.
        rows: usize,
    },
    /// A batch with more rows than a `u32` numbers.
    #[error("batch too large")]
    TooLarge,
    /// The engine failed.
    #[error("inference failed")]
    Inference(#[source] InferenceError),
}

/// The sessions of one model, one per worker, and its threshold.
struct Generation {
    id: u64,
    threshold: f32,
    slots: Vec<Mutex<Option<Box<dyn Engine>>>>,
}

/// The model generation the workers should run, shared by the consumer
/// (which publishes reloads) and the workers (which take their session).
pub struct WorkerModels {
    latest: Mutex<Arc<Generation>>,
    latest_id: AtomicU64,
}

impl WorkerModels {
    /// Generation 0: the model the run starts with, one engine per worker.
    pub fn new(engines: Vec<Box<dyn Engine>>, threshold: f32) -> Arc<Self> {
        Arc::new(WorkerModels {
            latest: Mutex::new(Arc::new(Generation::new(0, engines, threshold))),
            latest_id: AtomicU64::new(0),
        })
    }

    /// Generation 0 from the worker sessions of `m` (taken out of it);
    /// `None` when it has none (the consumer scores).
    pub fn take_from(m: &mut LoadedModel) -> Option<Arc<Self>> {
        if m.workers.is_empty() {
            return None;
        }
        Some(Self::new(std::mem::take(&mut m.workers), m.threshold))
    }

    /// Number of workers the current generation has sessions for.
    pub fn workers(&self) -> usize {
        self.latest.lock().map_or(0, |g| g.slots.len())
    }

    /// Offers a new model to the workers; returns its generation. Each
    /// worker swaps to it before its next batch.
    pub fn publish(
        &self,
        engines: Vec<Box<dyn Engine>>,
        threshold: f32,
    ) -> Result<u64, ScoringError> {
        let mut latest = self.latest.lock().map_err(|_| ScoringError::Poisoned)?;
        if engines.len() != latest.slots.len() {
            return Err(ScoringError::Sessions {
                sessions: engines.len(),
                workers: latest.slots.len(),
            });
        }
        let id = latest.id + 1;
        *latest = Arc::new(Generation::new(id, engines, threshold));
        self.latest_id.store(id, Ordering::Release);
        Ok(id)
    }

    /// The scorer of worker `shard`, holding that worker's session of the
    /// current generation.
    pub fn scorer(
        self: &Arc<Self>,
        shard: usize,
        batch_rows: usize,
    ) -> Result<WorkerScorer, ScoringError> {
        let g = self
            .latest
            .lock()
            .map_err(|_| ScoringError::Poisoned)?
            .clone();
        let engine = g.take(shard).ok_or(ScoringError::NoSession(shard))?;
        Ok(WorkerScorer {
            models: self.clone(),
            shard,
            generation: g.id,
            seen: g.id,
            threshold: g.threshold,
            engine,
            batch_rows: batch_rows.max(1),
            input: Vec::new(),
            preds: Vec::new(),
        })
    }

    /// The newest generation if it is newer than `than`.
    fn newer(&self, than: u64) -> Option<Arc<Generation>> {
        if self.latest_id.load(Ordering::Acquire) <= than {
            return None;
        }
        self.latest.lock().ok().map(|g| g.clone())
    }
}

impl Generation {
    fn new(id: u64, engines: Vec<Box<dyn Engine>>, threshold: f32) -> Self {
        Generation {
            id,
            threshold,
            slots: engines.into_iter().map(|e| Mutex::new(Some(e))).collect(),
        }
    }

    fn take(&self, shard: usize) -> Option<Box<dyn Engine>> {
        self.slots.get(shard)?.lock().ok()?.take()
    }
}

/// One worker's session: scores each batch the worker hands off.
pub struct WorkerScorer {
    models: Arc<WorkerModels>,
    shard: usize,
    generation: u64,
    /// The newest generation looked at (normally `generation`).
    seen: u64,
    threshold: f32,
    engine: Box<dyn Engine>,
    batch_rows: usize,
    input: Vec<f32>,
    preds: Vec<Prediction>,
}

impl WorkerScorer {
    /// Scores every flow of `b` (in calls of at most `batch_rows` rows),
    /// fills `b.flagged` with those at or above the threshold and marks the
    /// batch scored. Between batches it first swaps to a newer model
    /// generation if one was published.
    pub fn score(&mut self, b: &mut FlowBatch) -> Result<(), ScoringError> {
        self.swap_if_newer();
        b.flagged.clear();
        let n = b.len();
        let width = self.engine.contract().num_features();
        self.input.clear();
        let written = select_features_with(
            self.engine.contract(),
            &b.rows,
            &b.context,
            n,
            &mut self.input,
        );
        if written != n {
            return Err(ScoringError::Rows {
                flows: n,
                rows: written,
            });
        }
        let mut scored = Scored {
            generation: self.generation,
            ..Scored::default()
        };
        for (k, chunk) in self
            .input
            .chunks(self.batch_rows.saturating_mul(width).max(1))
            .enumerate()
        {
            let rows = chunk.len() / width.max(1);
            let t = Instant::now();
            self.engine
                .infer(chunk, rows, &mut self.preds)
                .map_err(ScoringError::Inference)?;
            let took = t.elapsed();
            scored.busy += took;
            scored.calls += 1;
            metrics::histogram!("tapstream_inference_batch_rows").record(rows as f64);
            metrics::histogram!("tapstream_inference_latency_seconds").record(took.as_secs_f64());
            let first = k * self.batch_rows;
            for (i, p) in self.preds.iter().enumerate() {
                if p.score >= self.threshold {
                    b.flagged.push(Flagged {
                        row: u32::try_from(first + i).map_err(|_| ScoringError::TooLarge)?,
                        class: u32::try_from(p.class).unwrap_or(u32::MAX),
                        score: p.score,
                    });
                }
            }
        }
        b.scored = Some(scored);
        Ok(())
    }

    /// The generation this worker runs.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The decision threshold of the model this worker runs.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// The session this worker scores with.
    pub fn engine_mut(&mut self) -> &mut dyn Engine {
        self.engine.as_mut()
    }

    /// Whether a newer model generation waits for this worker.
    pub fn newer_model(&self) -> bool {
        self.models.latest_id.load(Ordering::Acquire) > self.seen
    }

    /// Takes this worker's session of the newest generation, if one is
    /// newer than the one it runs (done by [`score`](Self::score) itself).
    pub fn swap_if_newer(&mut self) {
        let Some(g) = self.models.newer(self.seen) else {
            return;
        };
        self.seen = g.id;
        match g.take(self.shard) {
            Some(engine) => {
                self.engine = engine;
                self.threshold = g.threshold;
                self.generation = g.id;
                tracing::info!(
                    message = "flow worker swapped its model",
                    shard = self.shard,
                    generation = g.id
                );
            }
            // Each worker has one scorer, so its slot is always there; were
            // it not, the worker keeps its model (and says which) rather
            // than stop scoring.
            None => tracing::error!(
                message =
                    "no session for this worker in the new model generation; keeping the old model",
                shard = self.shard,
                generation = g.id
            ),
        }
    }
}
