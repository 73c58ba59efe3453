//! Kafka client plumbing shared by tapstream's Kafka source and sink.
//!
//! Why a module of its own: the source and the sink are configured the same
//! way (brokers, client id, TLS/SASL, librdkafka passthrough, secrets from
//! the environment or files), and both must refuse a user setting that would
//! break a guarantee they give (idempotence, manual commits). [`props`]
//! does that once.

pub mod admin;
pub mod props;
#[doc(hidden)]
pub mod testing;

pub use props::{
    Forced, KafkaClientConfig, KafkaConfigError, SaslMechanism, SecretValue, SecurityConfig,
    SecurityProtocol,
};
