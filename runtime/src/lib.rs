//! The tapstream runtime: a run from its configuration to its report.
//!
//! This crate owns what makes the other crates one pipeline: the TOML
//! configuration ([`config`], each section checking itself), the stages
//! after a source ([`stage`]: decoders, flow workers, the consumer and its
//! alert sink thread), the one topology that wires a source to them
//! ([`topology`]), the device and model of a run ([`device`], [`model`]),
//! and what a long run needs around it: signals, log rotation, the
//! Prometheus endpoint, the privilege drop of a sensor, and the summary.
//!
//! What it does not own: how packets are read (`tapstream-ingest` and
//! `tapstream-kafka` implement `PacketSource`), how features and scores are
//! computed (`tapstream-kernels`, `tapstream-inference`), and the formats
//! alerts are written in (`tapstream-connectors`). It does not link
//! librdkafka: a Kafka source or sink reaches it as a trait object.

// No panic on input-derived data: indexing, `unwrap`, `expect` and
// `panic!` need a checked path or a local allow that says why it holds
// (the same rule as the other library crates; a `[workspace.lints]` table
// cannot state it once, as it would also apply to every test target).
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

pub mod config;
pub mod device;
pub mod live;
pub mod model;
pub mod privileges;
pub mod reopen;
pub mod report;
pub mod signals;
pub mod stage;
pub mod summary;
pub mod telemetry;
pub mod topology;

pub use config::Config;
pub use report::RunReport;
pub use stage::alerts::AlertStage;
pub use stage::consumer::Consumer;
pub use stage::detectors::{Detector, DetectorCounts};
pub use stage::learning::{LearnCounts, Learner, LearningDetector};
pub use tapstream_ingest::source::Progress;
pub use topology::{run_file, run_packets, run_rows};

pub use tapstream_inference::error_chain;
