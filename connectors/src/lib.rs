//! Alert output for tapstream: Suricata-compatible EVE JSON, Community ID,
//! and the sinks alerts are written to.
//!
//! Why a crate of its own: this is the edge where tapstream meets the tools
//! security teams already run. Its contract is other people's formats
//! (Suricata's EVE field names, the Community ID spec), so it is kept apart
//! from the data path, depends only on `ingest`'s [`FlowMeta`], and is the
//! only crate that will link output clients such as Kafka.
//!
//! - [`community_id`]: Community ID v1, exactly per the spec.
//! - [`eve`]: [`Alert`] and the [`EveWriter`] that formats it as one EVE
//!   JSON line, allocation-free.
//! - [`sink`]: the [`AlertSink`] trait, [`StdoutSink`], [`FileSink`] and
//!   [`KafkaSink`].
//! - [`limit`]: the [`AlertLimiter`] that drops duplicate flows and rate
//!   limits repeated alerts before they reach a sink.
//! - [`kafka`]: Kafka client settings (brokers, TLS/SASL, secrets,
//!   librdkafka passthrough) shared by the Kafka source and sink.
//!
//! [`FlowMeta`]: tapstream_ingest::FlowMeta

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

pub mod community_id;
pub mod eve;
pub mod kafka;
pub mod limit;
pub mod sink;

pub use community_id::{CommunityId, FlowTuple};
pub use eve::{Alert, EveWriter, ModelInfo};
pub use limit::AlertLimiter;
pub use sink::{AlertSink, FileSink, KafkaSink, SinkError, StdoutSink};
