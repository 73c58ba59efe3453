//! The [`Engine`] trait: the one interface the pipeline scores flows through.
//!
//! Backends differ (ONNX Runtime on the CPU, CUDA or TensorRT providers)
//! but the pipeline should not: it hands an engine a batch of model-ready
//! rows and gets one [`Prediction`] per row in a buffer it owns. An engine
//! that can also score rows where they already are (device-resident
//! scoring) offers that as a capability, [`Engine::bound`], rather than
//! through a downcast to a concrete backend.

use crate::contract::ModelContract;
use crate::onnx::bound::{BoundMemory, BoundOutput};
use crate::onnx::ExecutionProvider;
use crate::output::Prediction;
use crate::InferenceError;

/// A loaded, verified model that scores batches of rows.
///
/// An engine is used by one thread at a time (it is `Send`, not `Sync`);
/// run one per inference thread.
pub trait Engine: Send {
    /// The model's verified contract: its features, labels and threshold.
    fn contract(&self) -> &ModelContract;

    /// Scores `rows` rows of model input.
    ///
    /// `input` is row-major `rows × contract().features.len()` `f32` values,
    /// as [`select_features`](crate::select_features) writes them. `out` is
    /// cleared and receives exactly `rows` predictions, in input order; its
    /// capacity is reused. `rows == 0` succeeds without running the model.
    ///
    /// Errors: [`InferenceError::InputSize`] when `input.len()` is not
    /// `rows × features`; [`InferenceError::OutputShape`] when the model
    /// returns an unexpected shape; [`InferenceError::Runtime`] when the
    /// backend fails. On error `out` is left empty.
    fn infer(
        &mut self,
        input: &[f32],
        rows: usize,
        out: &mut Vec<Prediction>,
    ) -> Result<(), InferenceError>;

    /// Scoring of rows in memory the caller owns (on the GPU, where the
    /// feature kernels left them), when this engine can do it; `None` for
    /// engines that only score host rows.
    fn bound(&mut self) -> Option<&mut dyn BoundInference> {
        None
    }

    /// Runs the model once on `rows` rows of zeros, so that lazy
    /// initialisation (memory arenas, kernel selection) happens before the
    /// first real batch rather than during it. Use the largest batch size
    /// the pipeline will send.
    fn warmup(&mut self, rows: usize) -> Result<(), InferenceError> {
        let rows = rows.max(1);
        let features = self.contract().num_features();
        let len = rows
            .checked_mul(features)
            .ok_or(InferenceError::InputSize {
                rows,
                features,
                found: 0,
            })?;
        let input = vec![0.0; len];
        let mut out = Vec::with_capacity(rows);
        self.infer(&input, rows, &mut out)
    }
}

/// Scoring rows that already sit in memory the caller owns, with the
/// output left where the session put it: the capability an [`Engine`]
/// offers through [`Engine::bound`] when it can (an ONNX Runtime session).
/// Device-resident scoring asks for it instead of for a concrete engine.
pub trait BoundInference: Engine {
    /// The execution providers the session runs on, in order.
    fn providers(&self) -> &[ExecutionProvider];

    /// Whether the session runs on CUDA GPU `ordinal`, so that input in
    /// that GPU's memory is read where it is.
    fn runs_on_cuda(&self, ordinal: i32) -> bool {
        self.providers()
            .iter()
            .any(|p| matches!(p, ExecutionProvider::Cuda(o) if o.device_id == ordinal))
    }

    /// Scores `rows` rows that are already in `memory` at `input`, with the
    /// output left in the same memory (see [`BoundOutput`]).
    ///
    /// `input` holds row-major `rows × contract().features.len()` `f32`
    /// values; `len` is how many values the buffer holds, at least that
    /// ([`InferenceError::InputSize`] otherwise). `rows == 0` runs nothing.
    /// The output shape is checked against the contract.
    ///
    /// Synchronisation: every write to `input` must be complete before this
    /// call; when it returns, the run has finished and the output is
    /// complete.
    ///
    /// # Safety
    /// `input` must point to at least `len` `f32` values in `memory` (for
    /// [`BoundMemory::Cuda`], a device address on that GPU, in its primary
    /// context), which nothing writes until this call returns.
    unsafe fn infer_bound(
        &mut self,
        memory: BoundMemory,
        input: *const f32,
        len: usize,
        rows: usize,
    ) -> Result<BoundOutput<'_>, InferenceError>;
}
