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
    /// `episodes` (the default): one alert when an attack episode starts,
    /// updates while it lasts and a closing record with its counts, as
    /// `[output.episodes]` says; `flows`: one alert line per flagged flow,
    /// for tools that score per flow.
    pub alerts: AlertMode,
    /// `[output.episodes]`: how episodes open, report and close.
    pub episodes: EpisodesSection,
}

/// What an alert line stands for.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum AlertMode {
    /// One line per attack episode record (start, update, end).
    #[default]
    Episodes,
    /// One line per flagged flow.
    Flows,
}

/// Most episodes `output.episodes.max_open` may allow.
pub const MAX_OPEN_EPISODES: usize = 1 << 18;

/// `[output.episodes]`: episodes are keyed by (class, attacker) and (class,
/// victim); see `tapstream_connectors::episode`. Times are packet time.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EpisodesSection {
    /// An episode ends (its closing record is written) once no flow joined
    /// it for this long (1s..=24h). Keep it above `flow.timeout`: flows
    /// that end by timeout reach the alerts that much after their last
    /// packet. Default 180s.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// An open episode that gained flows is reported this often (1s..=24h).
    /// Default 300s.
    #[serde(with = "humantime_serde")]
    pub update_interval: Duration,
    /// Episodes open at once (1..=262,144; at most 3.3 KiB each); when all
    /// are in use, the eighth that were quiet longest end early, counted as
    /// evicted. Default 10,000.
    pub max_open: usize,
}

impl Default for EpisodesSection {
    fn default() -> Self {
        use tapstream_connectors::episode as e;
        EpisodesSection {
            idle_timeout: e::DEFAULT_IDLE_TIMEOUT,
            update_interval: e::DEFAULT_UPDATE_INTERVAL,
            max_open: e::DEFAULT_MAX_OPEN,
        }
    }
}

impl EpisodesSection {
    /// Checks every range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let day = Duration::from_secs(86_400);
        for (key, d) in [
            ("output.episodes.idle_timeout", self.idle_timeout),
            ("output.episodes.update_interval", self.update_interval),
        ] {
            if d < Duration::from_secs(1) || d > day {
                return Err(invalid(key, "must be between 1s and 24h"));
            }
        }
        in_range(
            "output.episodes.max_open",
            self.max_open,
            1..=MAX_OPEN_EPISODES,
        )
    }

    /// The episode table's settings, when `mode` writes episodes.
    pub fn settings(&self, mode: AlertMode) -> Option<tapstream_connectors::EpisodeSettings> {
        (mode == AlertMode::Episodes).then_some(tapstream_connectors::EpisodeSettings {
            idle_timeout: self.idle_timeout,
            update_interval: self.update_interval,
            max_open: self.max_open,
        })
    }
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
            alerts: AlertMode::default(),
            episodes: EpisodesSection::default(),
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
        self.limit.validate()?;
        self.episodes.validate()
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
