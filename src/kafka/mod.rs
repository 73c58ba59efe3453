//! Kafka: the consumer-group source and what it needs to commit offsets
//! only for settled messages.
//!
//! Kafka is how tapstream scales out: instances in one consumer group share
//! a topic's partitions, and a partition moves to another instance when one
//! leaves. Everything here serves that: reading packets from messages
//! ([`packets`]), numbering messages and choosing offsets to commit
//! ([`offsets`]), learning which messages are settled ([`Settled`]), and the
//! consumer itself ([`KafkaSource`]).

pub mod offsets;
pub mod packets;
pub mod produce;
mod settled;
pub mod source;

pub use packets::Encoding;
pub use settled::Settled;
pub use source::{KafkaReport, KafkaSource};
