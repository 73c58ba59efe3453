//! `[output]`: where alerts go, and which repeated alerts are suppressed.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{in_range, invalid, ConfigError};

/// `[output]`: alert destination.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSection {
    /// EVE JSON destination: `-` for stdout (default) or a file path
    /// (appended; `tapstream run` re-opens it on SIGHUP, for log rotation).
    pub eve: String,
    /// Community ID seed (0 unless your other sensors use another).
    pub community_id_seed: u16,
    /// `[output.kafka]`: alerts go to a Kafka topic instead of `eve`.
    pub kafka: Option<KafkaOutputSection>,
    /// `[output.limit]`: which repeated alerts are suppressed (none by
    /// default).
    pub limit: LimitSection,
}

/// Most flow ids `output.limit.dedup_capacity` may remember.
pub const MAX_DEDUP_CAPACITY: usize = 1 << 24;

/// Most keys `output.limit.max_keys` may track.
pub const MAX_LIMIT_KEYS: usize = 1 << 22;

/// What `[output.limit]` rate limits by.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LimitTrack {
    /// No rate limit.
    #[default]
    None,
    /// The flow's source address.
    BySrc,
    /// The flow's destination address.
    ByDst,
    /// Source and destination together.
    ByPair,
}

/// `[output.limit]`: suppression of repeated alerts, after Suricata's
/// `threshold` type `limit`. Suppressed alerts are counted per reason, never
/// written. The defaults suppress nothing.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSection {
    /// Drop an alert whose `flow_id` was seen before (a flow scored twice,
    /// e.g. read again from Kafka after a rebalance). Default false.
    pub dedup_flows: bool,
    /// Flow ids remembered for `dedup_flows`, the oldest forgotten first
    /// (1..=16,777,216; about 50 bytes each). Default 65,536.
    pub dedup_capacity: usize,
    /// What the rate limit counts by: `none` (no rate limit; the default),
    /// `by_src`, `by_dst` or `by_pair` (source and destination); always per
    /// class.
    pub track: LimitTrack,
    /// At most this many alerts per tracked key and class per `window`
    /// (1..=1,000,000). Default 10.
    pub count: u32,
    /// The window, in packet time (flow end times, so replays decide alike):
    /// it opens at a key's first alert, and the first alert after it ends
    /// opens the next (1ms..=24h). Default 60s.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Keys tracked at most; when full, the key whose window opened earliest
    /// is forgotten (1..=4,194,304; about 260 bytes each). Default
    /// 65,536.
    pub max_keys: usize,
}

impl Default for LimitSection {
    fn default() -> Self {
        LimitSection {
            dedup_flows: false,
            dedup_capacity: tapstream_connectors::limit::DEFAULT_DEDUP_CAPACITY,
            track: LimitTrack::None,
            count: 10,
            window: Duration::from_secs(60),
            max_keys: tapstream_connectors::limit::DEFAULT_MAX_KEYS,
        }
    }
}

impl LimitSection {
    /// The limiter's settings (after [`LimitSection::validate`]).
    pub fn settings(&self) -> tapstream_connectors::limit::LimitSettings {
        use tapstream_connectors::limit::{LimitSettings, RateLimit, Track};
        let track = match self.track {
            LimitTrack::None => None,
            LimitTrack::BySrc => Some(Track::BySrc),
            LimitTrack::ByDst => Some(Track::ByDst),
            LimitTrack::ByPair => Some(Track::ByPair),
        };
        LimitSettings {
            dedup_capacity: self.dedup_flows.then_some(self.dedup_capacity),
            rate: track.map(|track| RateLimit {
                track,
                count: self.count,
                window: self.window,
                max_keys: self.max_keys,
            }),
        }
    }
}

/// `[output.kafka]`: the Kafka alert sink (client settings from `[kafka]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaOutputSection {
    /// Topic the alerts are written to, one EVE JSON object per message.
    pub topic: String,
}

impl Default for OutputSection {
    fn default() -> Self {
        OutputSection {
            eve: "-".to_string(),
            community_id_seed: 0,
            kafka: None,
            limit: LimitSection::default(),
        }
    }
}

impl OutputSection {
    /// Checks the destination and the limits (that the Kafka sink has its
    /// `[kafka]` section is [`Config::validate`](super::Config::validate)'s
    /// last check).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.eve.is_empty() {
            return Err(invalid("output.eve", "must be `-` (stdout) or a file path"));
        }
        if let Some(k) = &self.kafka {
            if k.topic.is_empty() {
                return Err(invalid("output.kafka.topic", "must name a topic"));
            }
            if self.eve != "-" {
                return Err(invalid(
                    "output.kafka",
                    "alerts go either to Kafka or to output.eve, not both",
                ));
            }
        }
        self.limit.validate()
    }
}

impl LimitSection {
    /// Checks every range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range(
            "output.limit.dedup_capacity",
            self.dedup_capacity,
            1..=MAX_DEDUP_CAPACITY,
        )?;
        in_range("output.limit.count", self.count, 1..=1_000_000)?;
        if self.window < Duration::from_millis(1) || self.window > Duration::from_secs(86_400) {
            return Err(invalid(
                "output.limit.window",
                "must be between 1ms and 24h",
            ));
        }
        in_range("output.limit.max_keys", self.max_keys, 1..=MAX_LIMIT_KEYS)?;
        Ok(())
    }
}
