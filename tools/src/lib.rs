//! tapstream's tools: what measures, checks and feeds the pipeline without
//! being part of it. Production code never imports this crate.
//!
//! - [`report`]: `tapstream model report`, a model's precisions and
//!   backends compared on labelled rows (accuracy, false positives,
//!   agreement, latency, robustness);
//! - [`eval`]: `tapstream eval`, detectors checked on a deployment's own
//!   labelled captures (recall per attack kind, false positives, alerts
//!   per attack), models side by side;
//! - [`learn`]: `tapstream learn`, an anomaly model fitted on a site's own
//!   benign traffic, written as an ONNX model with the contract;
//! - [`bench`](mod@bench): `tapstream bench`, per-stage and end-to-end throughput;
//! - [`benchfile`]: the throughput benchmark capture, rebuilt from the
//!   shared captures; [`demo`]: the project's own demo capture;
//! - [`gpu`]: `tapstream parity` and `tapstream gpu-score`, the GPU against
//!   the CPU on a GPU host.

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

pub mod bench;
pub mod benchfile;
pub mod demo;
pub mod eval;
pub mod gpu;
pub mod learn;
pub mod report;
pub mod rng;
