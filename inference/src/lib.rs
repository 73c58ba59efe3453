//! Model inference for tapstream: the [`Engine`] trait, its ONNX Runtime
//! backend (CPU, CUDA and TensorRT execution providers), the checks that
//! make sure a model is fed what it was trained on, and the model's life in
//! a run: loading, per-worker sessions, hot reload and scoring on the GPU.
//!
//! Everything about running a model sits behind one narrow interface. A run
//! only does:
//!
//! 1. [`model::load`] ([`OnnxEngine::load`] underneath): find ONNX Runtime
//!    ([`ort_library`]), verify the file (optional SHA-256 pin), read and
//!    check its [`ModelContract`] from the ONNX metadata, check the graph's
//!    input and output against it;
//! 2. [`select_features`]: pick, order and scale the model's columns from the
//!    extractor's feature rows;
//! 3. [`Batcher`]: decide when a batch is big enough or old enough to run;
//! 4. [`Engine::infer`]: score a batch into a reused buffer of
//!    [`Prediction`]s; or, when the rows are already on the GPU (the feature
//!    kernels' model-input matrix), the engine's [`Engine::bound`]
//!    capability: score them where they are and leave the output on the
//!    device ([`BoundOutput`]); [`device`] joins that to the kernels.
//!
//! With `[inference] placement = "workers"`, [`scoring`] gives each flow
//! worker its own session; [`reload`] replaces the model while a run goes
//! on, so that every flow is scored by exactly one model.
//!
//! ONNX Runtime is loaded at run time from `libonnxruntime.so` (see
//! [`ort_library`]); `scripts/fetch-onnxruntime.sh` installs the tested
//! version into `.deps/onnxruntime/`. Nothing in this crate panics on a bad
//! model or bad input: every problem is an [`InferenceError`] (or, for a
//! run's model, a [`ModelError`]).

// No panic on input-derived data: indexing, `unwrap`, `expect` and
// `panic!` need a checked path or a local allow that says why it holds.
// No function over 100 lines.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::too_many_lines
    )
)]
#![warn(missing_docs)]

pub mod anomaly;
mod batcher;
pub mod contract;
pub mod device;
mod engine;
mod error;
mod features;
pub mod inspect;
mod library;
pub mod model;
mod onnx;
mod output;
pub mod reload;
pub mod scoring;

pub use batcher::{Batcher, Flush};
pub use contract::{ModelContract, OutputKind, Precision, Scaler};
pub use engine::{BoundInference, Engine};
pub use error::InferenceError;
pub use features::{select_features, select_features_with};
pub use library::{
    init_runtime, ort_library, DEPS_DIR, ORT_DYLIB_PATH, ORT_LIBRARY_FILE, ORT_VERSION,
};
pub use model::{LoadedModel, ModelError, ModelSpec};
pub use onnx::{
    sha256_hex, BoundMemory, BoundOutput, CudaOptions, ExecutionProvider, OnnxConfig, OnnxEngine,
    TensorRtOptions, MAX_THREADS,
};
pub use output::{first_attack_label, read_output, Prediction};
pub use reload::{ReloadCounts, Reloader};
pub use scoring::{WorkerModels, WorkerScorer};

/// An error and its sources, `: `-separated (as `anyhow` prints `{:#}`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
