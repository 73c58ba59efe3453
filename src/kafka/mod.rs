//! Kafka: the consumer-group source and what it needs to commit offsets
//! only for settled messages.
//!
//! Kafka is how tapstream scales out: instances in one consumer group share
//! a topic's partitions, and a partition moves to another instance when one
//! leaves. Everything here serves that: reading packets from messages
//! ([`packets`]) or feature rows ([`flows`]), numbering messages and
//! choosing offsets to commit ([`offsets`]), learning which messages are
//! settled ([`Settled`]), the consumer itself ([`KafkaSource`]), and a
//! producer that feeds a capture in ([`produce`]).
//!
//! Why in the binary's crate and not in `connectors`: turning a message into
//! pipeline input needs the feature schema (`kernels`), the flow ids of the
//! flow table (`ingest`) and the pipeline's stages, and only this crate sees
//! them all. The Kafka client settings and the alert sink live in
//! `connectors`.

pub mod flows;
pub mod offsets;
pub mod packets;
pub mod produce;
mod settled;
pub mod source;

pub use packets::Encoding;
pub use settled::Settled;
pub use source::{KafkaReport, KafkaSource};
