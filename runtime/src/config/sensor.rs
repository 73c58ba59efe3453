//! The sensor's sections: `[capture]` (live capture from an interface),
//! `[privileges]` (who the process runs as once the capture is open) and
//! `[metrics]` (the Prometheus endpoint).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tapstream_ingest::live::LiveConfig;

use super::{in_range, invalid, ConfigError};

/// `[metrics]`: the Prometheus scrape endpoint of `tapstream run`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Address to serve metrics on (`GET` any path, Prometheus text), e.g.
    /// `127.0.0.1:9464`; none by default.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[capture]`: live capture from a network interface (`run --interface`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureSection {
    /// Interface to capture on (`--interface` overrides); none by default.
    pub interface: Option<String>,
    /// BPF filter (tcpdump syntax); empty: every packet.
    pub filter: String,
    /// Bytes kept of each packet.
    pub snaplen: u32,
    /// Kernel ring buffer per capture thread, MiB.
    pub buffer_mib: u32,
    /// Deliver packets as they arrive rather than in kernel batches (lower
    /// latency, more wake-ups).
    pub immediate: bool,
    /// Longest wait of one read for packets; also how soon a stop request
    /// or an idle clock tick is noticed.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Put the interface into promiscuous mode.
    pub promiscuous: bool,
    /// Capture threads. Above 1 they share the interface through an
    /// AF_PACKET fanout group (the kernel hashes each flow to one thread).
    pub threads: usize,
    /// Fanout group id for `threads` > 1 (0: derived from the process id;
    /// set it when several processes must not collide).
    pub fanout_group: u16,
}

impl Default for CaptureSection {
    fn default() -> Self {
        CaptureSection {
            interface: None,
            filter: String::new(),
            snaplen: 65535,
            buffer_mib: 64,
            immediate: false,
            timeout: Duration::from_millis(100),
            promiscuous: true,
            threads: 1,
            fanout_group: 0,
        }
    }
}

/// `[privileges]`: the user a live capture runs as once the interface is
/// open.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrivilegesSection {
    /// User to switch to (with its primary group) after opening the
    /// capture, when started as root; every capability is dropped either
    /// way. Empty: do not switch user.
    pub run_as: String,
    /// Keep running when still root after the drop (`run_as` empty or a
    /// user with uid 0). Off: such a run is refused.
    pub allow_root: bool,
}

impl Default for PrivilegesSection {
    fn default() -> Self {
        PrivilegesSection {
            run_as: "nobody".to_string(),
            allow_root: false,
        }
    }
}

impl CaptureSection {
    /// Checks every range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self
            .interface
            .as_ref()
            .is_some_and(|i| i.is_empty() || i.len() > 255)
        {
            return Err(invalid(
                "capture.interface",
                "must be an interface name (1 to 255 bytes)",
            ));
        }
        if !(64..=262_144).contains(&self.snaplen) {
            return Err(invalid(
                "capture.snaplen",
                "must be between 64 and 262144 bytes",
            ));
        }
        in_range("capture.buffer_mib", self.buffer_mib, 1..=2047)?;
        if self.timeout < Duration::from_millis(1) || self.timeout > Duration::from_secs(10) {
            return Err(invalid("capture.timeout", "must be between 1ms and 10s"));
        }
        in_range("capture.threads", self.threads, 1..=64)?;
        Ok(())
    }

    /// The libpcap settings for `interface`, in fanout group `fanout`.
    pub fn live_config(&self, interface: &str, fanout: Option<u16>) -> LiveConfig {
        LiveConfig {
            interface: interface.to_string(),
            filter: self.filter.clone(),
            snaplen: self.snaplen,
            buffer_bytes: self.buffer_mib.saturating_mul(1 << 20),
            immediate: self.immediate,
            timeout: self.timeout,
            promiscuous: self.promiscuous,
            fanout,
        }
    }
}

impl PrivilegesSection {
    /// Checks that `run_as` can be a user name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.run_as.contains(['\0', ':', '/']) {
            return Err(invalid(
                "privileges.run_as",
                "must be a user name (no NUL, `:` or `/`)",
            ));
        }
        Ok(())
    }
}
