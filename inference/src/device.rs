//! Device-resident scoring: the model reads the feature kernels' model-input
//! matrix where it is, on the GPU, and only the flagged rows come back.
//!
//! This is the glue between the two crates that each do half of it:
//! `kernels` builds the matrix on the device ([`CudaExecutor`] with a model
//! input, [`CudaExecutor::finished_model_input`]) and flags rows of a model
//! output there ([`ScoreFlagger`]); an engine that offers the
//! [`BoundInference`] capability runs a model on memory it does not own and
//! leaves the output there. [`DeviceScorer`] joins them for one batch.
//!
//! Synchronisation between cudarc's streams and ONNX Runtime's: a batch's
//! matrix is complete when its completion event fired (the executor waits
//! for it before a batch counts as finished; a matrix uploaded by hand is
//! complete once its stream is synchronised), so ONNX Runtime, on its own
//! stream, reads finished data; `infer_bound` returns after ONNX Runtime
//! synchronised its stream, so `flag_scores`, on cudarc's stream, reads a
//! finished output; and the output stays allocated until the flagged rows
//! are back on the host.
//!
//! In a build without the `cuda` feature the kernels' stand-in makes every
//! GPU value impossible to build, so this compiles and is never reached.
//! The GPU-host check of this path (device results against the host path,
//! rows/s) is `tapstream gpu-score`, in the tools.

use std::time::Instant;

use tapstream_kernels::gpu::cuda::{CudaDevice, CudaExecutor, ScoreFlagger};
use tapstream_kernels::gpu::{DeviceScoring, Flagged, GpuError, ModelInput, ScoreLayout};
use tapstream_kernels::Scored;

use crate::scoring::WorkerScorer;
use crate::{first_attack_label, BoundInference, BoundMemory, ModelContract, OutputKind, Scaler};

/// Why rows could not be scored on the device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The model cannot score there, or the rows do not fit it.
    #[error("{0}")]
    Unsuitable(String),
    /// A kernel or driver call failed.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// The model failed.
    #[error(transparent)]
    Inference(#[from] crate::InferenceError),
}

fn unsuitable(why: impl Into<String>) -> DeviceError {
    DeviceError::Unsuitable(why.into())
}

/// How the flag kernel reads a contract's output.
pub fn layout_of(c: &ModelContract) -> Result<ScoreLayout, DeviceError> {
    let columns = u32::try_from(c.labels.len()).map_err(|_| unsuitable("too many labels"))?;
    Ok(match c.output {
        OutputKind::Probabilities => ScoreLayout::Probabilities {
            columns,
            benign: c
                .benign
                .and_then(|b| u32::try_from(b).ok())
                .ok_or_else(|| unsuitable("a probabilities model without a benign label"))?,
        },
        OutputKind::Score => ScoreLayout::Score {
            class: u32::try_from(first_attack_label(c))
                .map_err(|_| unsuitable("too many labels"))?,
        },
    })
}

/// Scores model-input matrices on the device and reads back the flagged
/// rows (see the module docs).
pub struct DeviceScorer {
    flagger: ScoreFlagger,
    layout: ScoreLayout,
    ordinal: i32,
    width: usize,
}

impl DeviceScorer {
    /// A scorer for `engine`'s model on `dev`, for batches of about `rows`
    /// rows. The engine must run on `dev` (its CUDA provider's device).
    pub fn new(
        dev: &CudaDevice,
        engine: &dyn BoundInference,
        rows: usize,
    ) -> Result<Self, DeviceError> {
        let ordinal = i32::try_from(dev.ordinal()).map_err(|_| unsuitable("GPU ordinal"))?;
        if !engine.runs_on_cuda(ordinal) {
            return Err(unsuitable(format!(
                "device-resident scoring needs the model on the CUDA provider of GPU {ordinal} \
                 (providers: {:?})",
                engine.providers()
            )));
        }
        Ok(DeviceScorer {
            flagger: dev.flagger(rows)?,
            layout: layout_of(engine.contract())?,
            ordinal,
            width: engine.contract().num_features(),
        })
    }

    /// Scores the `rows` model-input rows at device address `input` and
    /// puts the rows whose attack score is at or above `threshold` into
    /// `out` (cleared), sorted by row.
    ///
    /// # Safety
    /// `input` must be a device address on the scorer's GPU of at least
    /// `rows × width` `f32` values, completely written (the writing stream
    /// synchronised), and not written again before this returns.
    pub unsafe fn score(
        &mut self,
        engine: &mut dyn BoundInference,
        input: u64,
        rows: usize,
        threshold: f32,
        out: &mut Vec<Flagged>,
    ) -> Result<(), DeviceError> {
        out.clear();
        if rows == 0 {
            return Ok(());
        }
        let len = rows
            .checked_mul(self.width)
            .ok_or_else(|| unsuitable("batch size overflows"))?;
        let memory = BoundMemory::Cuda {
            ordinal: self.ordinal,
        };
        // SAFETY: the caller's guarantee on `input`.
        let bound = unsafe { engine.infer_bound(memory, input as usize as *const f32, len, rows) }?;
        if bound.columns() != self.layout.columns() as usize {
            return Err(unsuitable(format!(
                "the model returned {} values per row; {} expected",
                bound.columns(),
                self.layout.columns()
            )));
        }
        // SAFETY: the bound output is rows × columns f32 on this GPU,
        // complete (infer_bound returned after ONNX Runtime synchronised its
        // stream), and alive until `bound` is dropped, after `flag` returned.
        unsafe {
            self.flagger.flag(
                bound.data_ptr() as usize as u64,
                rows,
                self.layout,
                threshold,
                out,
            )
        }?;
        drop(bound);
        Ok(())
    }

    /// Scores the model input of the batch `exec` finished last (see
    /// [`CudaExecutor::finished_model_input`]); returns its rows (0 when
    /// there is none).
    pub fn score_finished(
        &mut self,
        exec: &CudaExecutor,
        engine: &mut dyn BoundInference,
        threshold: f32,
        out: &mut Vec<Flagged>,
    ) -> Result<usize, DeviceError> {
        out.clear();
        let Some((ptr, rows, width)) = exec.finished_model_input() else {
            return Ok(0);
        };
        if width != self.width {
            return Err(unsuitable(format!(
                "the device model input is {width} wide, the model takes {}",
                self.width
            )));
        }
        // SAFETY: the executor's finished matrix: rows × width f32 on this
        // GPU, complete (its batch's completion event fired), and not
        // rewritten before the executor's next submit, which needs `exec`
        // mutably while it is borrowed here.
        unsafe { self.score(engine, ptr, rows, threshold, out) }?;
        Ok(rows)
    }
}

/// Inference in a GPU flow worker (`[inference] placement = "workers"`
/// with GPU features and the model on the same GPU's CUDA provider): the
/// worker's session reads each finished batch's model input where the
/// kernels left it, and only the flagged flows come back to the host (see
/// the module docs). A hot reload switches the worker's session and the
/// executor's model input together, with nothing in flight.
pub struct GpuWorkerScoring {
    worker: WorkerScorer,
    device: DeviceScorer,
    dev: CudaDevice,
    rows: usize,
    flagged: Vec<Flagged>,
    /// Why the model taken over by the last switch cannot score here.
    switch_error: Option<String>,
}

impl GpuWorkerScoring {
    /// Scoring on `dev` for batches of about `rows` flows; gives `worker`
    /// back, with the reason, when its session does not run on `dev`'s
    /// CUDA provider (the worker then scores host rows).
    // The Err variant hands the scorer back whole; boxing it would only
    // move it.
    #[allow(clippy::result_large_err)]
    pub fn new(
        dev: &CudaDevice,
        mut worker: WorkerScorer,
        rows: usize,
    ) -> Result<Self, (WorkerScorer, String)> {
        match device_scorer(dev, &mut worker, rows) {
            Ok(device) => Ok(GpuWorkerScoring {
                worker,
                device,
                dev: dev.clone(),
                rows,
                flagged: Vec::new(),
                switch_error: None,
            }),
            Err(e) => Err((worker, crate::error_chain(&e))),
        }
    }
}

/// A [`DeviceScorer`] for the session `worker` runs now.
fn device_scorer(
    dev: &CudaDevice,
    worker: &mut WorkerScorer,
    rows: usize,
) -> Result<DeviceScorer, DeviceError> {
    match worker.engine_mut().bound() {
        Some(e) => DeviceScorer::new(dev, e, rows),
        None => Err(unsuitable("the model cannot score rows in device memory")),
    }
}

impl DeviceScoring<CudaExecutor> for GpuWorkerScoring {
    fn prepare(&mut self, exec: &mut CudaExecutor) -> Result<(), GpuError> {
        if let Some(e) = self.switch_error.take() {
            return Err(GpuError::Scoring(e));
        }
        exec.set_copy_rows(false);
        let input = model_input_of(self.worker.engine_mut().contract());
        exec.set_model_input(Some(&input), false)
    }

    fn newer_model(&self) -> bool {
        self.worker.newer_model()
    }

    fn switch(&mut self) {
        self.worker.swap_if_newer();
        match device_scorer(&self.dev, &mut self.worker, self.rows) {
            Ok(d) => self.device = d,
            Err(e) => {
                self.switch_error = Some(format!("the reloaded model: {}", crate::error_chain(&e)))
            }
        }
    }

    fn score(
        &mut self,
        exec: &CudaExecutor,
        _host: &[f64],
        rows: usize,
    ) -> Result<(Scored, &[Flagged]), GpuError> {
        let t = Instant::now();
        let threshold = self.worker.threshold();
        let generation = self.worker.generation();
        let engine = self.worker.engine_mut().bound().ok_or_else(|| {
            GpuError::Scoring("the model cannot score rows in device memory".into())
        })?;
        let scored = self
            .device
            .score_finished(exec, engine, threshold, &mut self.flagged)
            .map_err(|e| GpuError::Scoring(crate::error_chain(&e)))?;
        if scored != rows {
            return Err(GpuError::Scoring(format!(
                "the device model input holds {scored} rows for a batch of {rows} flows"
            )));
        }
        let took = t.elapsed();
        if rows > 0 {
            metrics::histogram!("tapstream_inference_batch_rows").record(rows as f64);
            metrics::histogram!("tapstream_inference_latency_seconds").record(took.as_secs_f64());
        }
        Ok((
            Scored {
                generation,
                calls: u32::from(rows > 0),
                busy: took,
            },
            &self.flagged,
        ))
    }
}

/// The device model input of a model contract: its columns, and its scaler
/// when tapstream standardises the input.
pub fn model_input_of(c: &ModelContract) -> ModelInput {
    ModelInput {
        columns: c.columns.iter().map(|&i| i as u32).collect(),
        standardize: match &c.scaler {
            Scaler::InGraph => None,
            Scaler::External { mean, scale } => Some((mean.clone(), scale.clone())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_follow_the_contract() {
        use crate::contract::keys;
        let make = |output: &str| {
            let m = std::collections::HashMap::from([
                (
                    keys::SCHEMA,
                    tapstream_kernels::schema::SCHEMA_NAME.to_owned(),
                ),
                (
                    keys::SCHEMA_VERSION,
                    tapstream_kernels::schema::SCHEMA_VERSION.to_string(),
                ),
                (keys::FEATURES, r#"["Protocol"]"#.to_owned()),
                (keys::SCALER, "in-graph".to_owned()),
                (keys::LABELS, r#"["DoS","BENIGN","Scan"]"#.to_owned()),
                (keys::BENIGN_LABEL, "BENIGN".to_owned()),
                (keys::OUTPUT, output.to_owned()),
                (keys::THRESHOLD, "0.5".to_owned()),
                (keys::MODEL_NAME, "m".to_owned()),
                (keys::MODEL_VERSION, "1".to_owned()),
            ]);
            ModelContract::from_metadata(|k| m.get(k).cloned(), "00").unwrap()
        };
        assert_eq!(
            layout_of(&make("probabilities")).unwrap(),
            ScoreLayout::Probabilities {
                columns: 3,
                benign: 1
            }
        );
        assert_eq!(
            layout_of(&make("score")).unwrap(),
            ScoreLayout::Score { class: 0 }
        );
    }
}
