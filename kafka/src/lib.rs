//! Kafka for tapstream: the only crate that links librdkafka.
//!
//! Kafka is how tapstream scales out: instances in one consumer group share
//! a topic's partitions, and a partition moves to another instance when one
//! leaves. This crate turns the plain settings and message formats of
//! `tapstream_connectors::kafka` into clients:
//!
//! - [`KafkaSource`]: the consumer-group source of packets (a
//!   `tapstream_ingest::PacketSource`) or of flow rows (a
//!   `tapstream_kernels::FlowSource`), committing an offset only once what
//!   its message caused is settled;
//! - [`KafkaSink`]: alerts to a topic, acknowledged before a commit may pass
//!   them;
//! - [`admin`]: topic creation; [`produce`]: a capture into a `packets`
//!   topic, the way the source reads it;
//! - [`client_config`]: a librdkafka client from `KafkaClientConfig`;
//! - `testing` (feature `testing`): a real Kafka-protocol broker for tests.

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

pub mod admin;
mod client;
pub mod produce;
mod sink;
mod source;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

pub use client::client_config;
pub use sink::{
    KafkaSink, KafkaSinkStats, DEFAULT_QUEUE_FULL_WAIT, FLUSH_TIMEOUT_MARGIN, PRODUCER_DEFAULTS,
};
pub use source::{KafkaSource, SourceError};
