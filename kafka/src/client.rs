//! A librdkafka client configuration from tapstream's client settings.

use rdkafka::ClientConfig;
use tapstream_connectors::kafka::{Forced, KafkaClientConfig, KafkaConfigError};

/// The librdkafka configuration of `client`: `defaults` first, then its
/// settings, then `forced` (see
/// `KafkaClientConfig::client_properties`). It holds secrets in clear;
/// rdkafka's `Debug` hides only its own short list of password keys, so do
/// not log it.
pub fn client_config(
    client: &KafkaClientConfig,
    defaults: &[(&str, &str)],
    forced: &[Forced<'_>],
) -> Result<ClientConfig, KafkaConfigError> {
    let mut config = ClientConfig::new();
    for (name, value) in client.client_properties(defaults, forced)?.iter() {
        config.set(name, value);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapstream_connectors::kafka::{CONSUMER_FORCED, PRODUCER_FORCED};

    #[test]
    fn librdkafka_accepts_every_property_we_set() {
        let text = r#"
brokers = ["k1:9093", "k2:9093"]
client_id = "sensor-7"
[security]
protocol = "sasl_ssl"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "tapstream"
sasl_password = "pw"
ssl_ca_location = "/etc/ca.pem"
[properties]
"linger.ms" = 5
"enable.ssl.certificate.verification" = true
"compression.type" = "gzip"
"#;
        let client: KafkaClientConfig = toml_like(text);
        for forced in [PRODUCER_FORCED, CONSUMER_FORCED] {
            let cc = client_config(&client, &[("batch.size", "1000")], forced).unwrap();
            assert_eq!(cc.get("bootstrap.servers"), Some("k1:9093,k2:9093"));
            assert_eq!(cc.get("linger.ms"), Some("5"));
            cc.create_native_config().unwrap();
        }
    }

    /// Parses a client section the way the config file does.
    fn toml_like(text: &str) -> KafkaClientConfig {
        toml::from_str(text).unwrap()
    }
}
