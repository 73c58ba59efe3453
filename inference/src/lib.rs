//! Model inference for tapstream: the [`Engine`] trait, its ONNX Runtime
//! backend, and the checks that make sure a model is fed what it was trained
//! on.
//!
//! This crate exists so that everything about running a model sits behind one
//! narrow interface. The pipeline only does:
//!
//! 1. [`OnnxEngine::load`]: find ONNX Runtime ([`ort_library`]), verify the
//!    file (optional SHA-256 pin), read and check its [`ModelContract`] from
//!    the ONNX metadata, check the graph's input and output against it;
//! 2. [`select_features`]: pick, order and scale the model's columns from the
//!    extractor's feature rows;
//! 3. [`Batcher`]: decide when a batch is big enough or old enough to run;
//! 4. [`Engine::infer`]: score a batch into a reused buffer of
//!    [`Prediction`]s; or, when the rows are already on the GPU (the
//!    feature kernels' model-input matrix), [`OnnxEngine::infer_bound`]:
//!    score them where they are and leave the output on the device
//!    ([`BoundOutput`]).
//!
//! Backends other than ONNX Runtime on CPU (CUDA, TensorRT) will be further
//! [`ExecutionProvider`]s and [`Engine`] implementations; nothing above
//! changes for them.
//!
//! ONNX Runtime is loaded at run time from `libonnxruntime.so` (see
//! [`ort_library`]); `scripts/fetch-onnxruntime.sh` installs the tested
//! version into `.deps/onnxruntime/`. Nothing in this crate panics on a bad
//! model or bad input: every problem is an [`InferenceError`].

// No panic on input-derived data: indexing, `unwrap`, `expect` and
// `panic!` need a checked path or a local allow that says why it holds.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]
#![warn(missing_docs)]

mod batcher;
mod bound;
pub mod contract;
mod engine;
mod error;
mod features;
pub mod inspect;
mod library;
mod onnx;

pub use batcher::{Batcher, Flush};
pub use bound::{BoundMemory, BoundOutput};
pub use contract::{ModelContract, OutputKind, Precision, Scaler};
pub use engine::{first_attack_label, read_output, Engine, Prediction};
pub use error::InferenceError;
pub use features::select_features;
pub use library::{
    init_runtime, ort_library, DEPS_DIR, ORT_DYLIB_PATH, ORT_LIBRARY_FILE, ORT_VERSION,
};
pub use onnx::{
    sha256_hex, CudaOptions, ExecutionProvider, OnnxConfig, OnnxEngine, TensorRtOptions,
    MAX_THREADS,
};
