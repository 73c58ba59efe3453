//! `[defrag]`: IPv4 and IPv6 defragmentation (`tapstream_ingest::defrag`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tapstream_ingest::defrag::{DefragConfig, Overlap, BYTES_PER_DATAGRAM};

use super::{in_range, invalid, ConfigError};

/// Which fragment's bytes win where fragments overlap (in the bytes a
/// record reads: the transport header).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OverlapPolicy {
    /// The bytes received first stay (Windows, Solaris).
    First,
    /// The bytes received last win (Cisco).
    Last,
    /// New bytes win where the new fragment starts before the old one
    /// (BSD; the default, as in Suricata).
    #[default]
    Bsd,
    /// New bytes win where the new fragment starts at or before the old one
    /// (Linux).
    Linux,
}

/// `[defrag]`: fragments are reassembled into datagrams before flows see
/// them.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DefragSection {
    /// Reassemble fragments (default true). Off: a non-first fragment is
    /// skipped (counted `fragment`) and a first fragment is read as a whole
    /// packet, as before defragmentation existed.
    pub enabled: bool,
    /// A datagram not complete this long (packet time) after its first
    /// fragment is dropped, its fragments counted as timed out (1s..=10m;
    /// default 60s).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Memory for datagrams waiting for fragments, MiB, split over the flow
    /// workers (1..=65,536; default 16). When it is full, a new datagram
    /// drops the eighth that waited longest (their fragments counted).
    pub memcap_mib: u64,
    /// `first`, `last`, `bsd` (default) or `linux`.
    pub policy: OverlapPolicy,
}

impl Default for DefragSection {
    fn default() -> Self {
        DefragSection {
            enabled: true,
            timeout: tapstream_ingest::defrag::DEFAULT_TIMEOUT,
            memcap_mib: 16,
            policy: OverlapPolicy::Bsd,
        }
    }
}

impl DefragSection {
    /// Checks every range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout < Duration::from_secs(1) || self.timeout > Duration::from_secs(600) {
            return Err(invalid("defrag.timeout", "must be between 1s and 10m"));
        }
        in_range("defrag.memcap_mib", self.memcap_mib, 1..=1 << 16)
    }

    /// Each of `workers` tables' settings, when defragmentation is on.
    pub fn table(&self, workers: usize) -> Option<DefragConfig> {
        let bytes = usize::try_from(self.memcap_mib)
            .unwrap_or(usize::MAX)
            .saturating_mul(1 << 20);
        self.enabled.then(|| DefragConfig {
            timeout_us: i64::try_from(self.timeout.as_micros()).unwrap_or(i64::MAX),
            max_datagrams: (bytes / BYTES_PER_DATAGRAM / workers.max(1)).max(1),
            policy: match self.policy {
                OverlapPolicy::First => Overlap::First,
                OverlapPolicy::Last => Overlap::Last,
                OverlapPolicy::Bsd => Overlap::Bsd,
                OverlapPolicy::Linux => Overlap::Linux,
            },
        })
    }
}
