//! tapstream: packets in, scored flows and EVE alerts out.
//!
//! This crate is the facade over the workspace: the configuration, the stage
//! threads that connect ingest → kernels → inference → connectors, the model
//! loading rules, the demo capture and the benchmark. The binary in
//! `main.rs` is a thin command-line layer over it, and the integration tests
//! drive it directly.

// No panic on input-derived data: indexing, `unwrap`, `expect` and
// `panic!` need a checked path or a local allow that says why it holds
// (the same rule as the other library crates; a `[workspace.lints]` table
// cannot state it once, as it would also apply to every test target).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod bench;
pub mod benchfile;
pub mod config;
pub mod consumer;
pub mod demo;
pub mod device;
#[cfg(feature = "cuda")]
pub mod gpu;
#[cfg(feature = "cuda")]
pub mod gpu_score;
pub mod kafka;
pub mod live;
pub mod model;
pub mod pipeline;
pub mod privileges;
pub mod reload;
pub mod reopen;
pub mod report;
pub mod rng;
pub mod scoring;
pub mod summary;
pub mod telemetry;

pub use config::Config;
pub use pipeline::{run, run_input, Input, Progress, RunReport};
