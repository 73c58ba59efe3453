//! Kafka as plain data: client settings, and the formats of the messages the
//! Kafka source reads. No librdkafka here.
//!
//! Why in this crate and not in `tapstream-kafka`: the configuration is
//! checked when it is loaded, and the message decoders are fuzzed, and
//! neither should need librdkafka (or ONNX Runtime) to build. The
//! `tapstream-kafka` crate, the only one that links librdkafka, turns these
//! settings into clients and feeds messages through these decoders.
//!
//! - [`props`]: the client settings shared by the source and the sink
//!   (brokers, client id, TLS/SASL, librdkafka passthrough, secrets from the
//!   environment or files), and the properties each of them owns and a user
//!   may not override ([`CONSUMER_FORCED`], [`PRODUCER_FORCED`]).
//! - [`settings`]: `[source.kafka]`, what the source reads and how it
//!   commits.
//! - [`packets`]: a message of the `packets` format into captured packets.
//! - [`flows`]: a message of the `flows` format into a feature row and its
//!   flow.

pub mod flows;
pub mod packets;
pub mod props;
pub mod settings;

pub use packets::Encoding;
pub use props::{
    ClientProperties, Forced, KafkaClientConfig, KafkaConfigError, SaslMechanism, SecretValue,
    SecurityConfig, SecurityProtocol, CONSUMER_FORCED, PRODUCER_FORCED,
};
pub use settings::{KafkaFormat, SettingError, SourceSettings};
