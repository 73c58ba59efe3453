//! `[source.kafka]`: what the Kafka source reads and how it commits.
//!
//! Plain settings beside the client's ([`super::KafkaClientConfig`]), so a
//! configuration is checked (and fuzzed) without librdkafka; the
//! `tapstream-kafka` crate's source takes them as they are.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::flows::FlowDecoder;
use super::packets::Encoding;

/// A setting out of its allowed range: which one, and why.
#[derive(Debug, thiserror::Error)]
#[error("config field `{field}`: {message}")]
pub struct SettingError {
    /// Dotted path of the field, e.g. `source.kafka.group_id`.
    pub field: &'static str,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// What the messages of the source topics hold.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KafkaFormat {
    /// Captured packets (see `encoding`).
    #[default]
    Packets,
    /// One flow's feature row per message (JSON object or CSV line with the
    /// CIC column names), scored as is.
    Flows,
}

/// `[source.kafka]`: the Kafka source.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourceSettings {
    /// Consumer group: instances with the same group share the partitions.
    pub group_id: String,
    /// Topics to read.
    pub topics: Vec<String>,
    /// `packets` or `flows`.
    pub format: KafkaFormat,
    /// For `packets`: `capture` (each message a pcap/pcapng chunk) or
    /// `frame` (each message one frame; time in header `ts_us` or the
    /// message timestamp, link type in header `linktype`).
    pub encoding: Encoding,
    /// Link type of `frame` messages without a `linktype` header
    /// (1 = Ethernet).
    pub link_type: u32,
    /// How often settled offsets are committed.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Longest wait, on partition revocation or shutdown, for the flows
    /// ended then to be scored and their alerts acknowledged; past it the
    /// offsets stay uncommitted (the messages are read again later).
    #[serde(with = "humantime_serde")]
    pub flush_timeout: Duration,
    /// End the run (as on SIGTERM) after this long without a message,
    /// counted from the first partition assignment on; for batch jobs and
    /// tests. Unset: run until stopped.
    #[serde(with = "humantime_serde")]
    pub exit_after_idle: Option<Duration>,
    /// Packets of the assigned partitions are handed on in capture-time
    /// order; a partition with nothing queued holds the others back this
    /// long at most (0: arrival order).
    #[serde(with = "humantime_serde")]
    pub order_wait: Duration,
    /// ... or until this many MiB of packets are queued.
    pub order_buffer_mib: usize,
    /// For `flows` in CSV: the header line (CIC column names). Unset: the
    /// producer sends the header as a message before the rows.
    pub csv_header: Option<String>,
}

impl Default for SourceSettings {
    fn default() -> Self {
        SourceSettings {
            group_id: "tapstream".to_string(),
            topics: vec!["packets".to_string()],
            format: KafkaFormat::Packets,
            encoding: Encoding::Capture,
            link_type: 1,
            commit_interval: Duration::from_secs(1),
            flush_timeout: Duration::from_secs(60),
            exit_after_idle: None,
            order_wait: Duration::from_millis(200),
            order_buffer_mib: 64,
            csv_header: None,
        }
    }
}

impl SourceSettings {
    /// Checks every range, and that a configured CSV header names the
    /// columns a row needs.
    pub fn check(&self) -> Result<(), SettingError> {
        fn invalid(field: &'static str, message: impl Into<String>) -> SettingError {
            SettingError {
                field,
                message: message.into(),
            }
        }
        if self.group_id.is_empty() {
            return Err(invalid("source.kafka.group_id", "must not be empty"));
        }
        if self.topics.is_empty() || self.topics.iter().any(String::is_empty) {
            return Err(invalid(
                "source.kafka.topics",
                "must name at least one topic, none empty",
            ));
        }
        if self.commit_interval < Duration::from_millis(10)
            || self.commit_interval > Duration::from_secs(3600)
        {
            return Err(invalid(
                "source.kafka.commit_interval",
                "must be between 10ms and 1h",
            ));
        }
        if self.flush_timeout.is_zero() || self.flush_timeout > Duration::from_secs(3600) {
            return Err(invalid(
                "source.kafka.flush_timeout",
                "must be between 1ms and 1h",
            ));
        }
        if let Some(h) = &self.csv_header {
            FlowDecoder::with_csv_header(h)
                .map_err(|e| invalid("source.kafka.csv_header", e.to_string()))?;
        }
        if self.order_wait > Duration::from_secs(60) {
            return Err(invalid("source.kafka.order_wait", "must be at most 60s"));
        }
        if !(1..=1 << 16).contains(&self.order_buffer_mib) {
            return Err(invalid(
                "source.kafka.order_buffer_mib",
                "must be between 1 and 65536",
            ));
        }
        Ok(())
    }

    /// What the source reads, for summaries.
    pub fn describe(&self) -> String {
        format!("kafka:{} (group {})", self.topics.join(","), self.group_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_and_each_range_names_its_field() {
        assert!(SourceSettings::default().check().is_ok());
        let bad = |f: fn(&mut SourceSettings)| {
            let mut s = SourceSettings::default();
            f(&mut s);
            s.check().map(|()| "").unwrap_or_else(|e| e.field)
        };
        assert_eq!(bad(|s| s.group_id.clear()), "source.kafka.group_id");
        assert_eq!(bad(|s| s.topics.clear()), "source.kafka.topics");
        assert_eq!(
            bad(|s| s.commit_interval = Duration::from_millis(1)),
            "source.kafka.commit_interval"
        );
        assert_eq!(
            bad(|s| s.flush_timeout = Duration::ZERO),
            "source.kafka.flush_timeout"
        );
        assert_eq!(
            bad(|s| s.csv_header = Some("Label".into())),
            "source.kafka.csv_header"
        );
        assert_eq!(
            bad(|s| s.order_wait = Duration::from_secs(61)),
            "source.kafka.order_wait"
        );
        assert_eq!(
            bad(|s| s.order_buffer_mib = 0),
            "source.kafka.order_buffer_mib"
        );
    }
}
