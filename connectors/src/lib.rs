//! The formats tapstream shares with other tools: Suricata-compatible EVE
//! JSON, Community ID, the alert sinks, and the Kafka message formats and
//! client settings.
//!
//! Why a crate of its own: this is the edge where tapstream meets the tools
//! security teams already run. Its contract is other people's formats
//! (Suricata's EVE field names, the Community ID spec, the CIC columns of a
//! flow row), so it is kept apart from the data path and links no client
//! library: the Kafka client is the `tapstream-kafka` crate, and everything
//! here builds (and is fuzzed) without librdkafka or ONNX Runtime.
//!
//! - [`community_id`]: Community ID v1, exactly per the spec.
//! - [`eve`]: [`Alert`] and the [`EveWriter`] that formats it as one EVE
//!   JSON line, allocation-free.
//! - [`episode`]: [`Episodes`], which turns flagged flows into one alert
//!   per attack episode (start, updates, end, with counts).
//! - [`sink`]: the [`AlertSink`] trait, [`StdoutSink`] and [`FileSink`].
//! - [`limit`]: the [`AlertLimiter`] that drops duplicate flows and rate
//!   limits repeated alerts before they reach a sink.
//! - [`kafka`]: Kafka client settings (brokers, TLS/SASL, secrets,
//!   librdkafka passthrough) shared by the Kafka source and sink, and the
//!   decoders of the `packets` and `flows` message formats.
//!
//! [`FlowMeta`]: tapstream_ingest::FlowMeta

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

pub mod community_id;
pub mod episode;
pub mod eve;
pub mod kafka;
pub mod limit;
pub mod sink;

pub use community_id::{CommunityId, FlowTuple};
pub use episode::{EpisodeSettings, Episodes, Pending};
pub use eve::{Alert, EveWriter, ModelInfo};
pub use limit::AlertLimiter;
pub use sink::{AlertSink, FileSink, SinkError, StdoutSink};
