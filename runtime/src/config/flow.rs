//! `[flow]`: how packets become flows, and the flow table's bounds.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tapstream_ingest::flow::FlowConfig;
use tapstream_kernels::ShardProcessor;

use super::{invalid, ConfigError};

pub const MAX_MEMCAP_MIB: u64 = 1 << 20;

/// `[flow]`: how packets become flows. Times are packet time, not wall time.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FlowSection {
    /// Flow (active) timeout: a flow ends once packet time passes this much
    /// after its first packet (CICFlowMeter's flow timeout). Default 120 s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Activity timeout: a gap longer than this splits a flow's active and
    /// idle periods (CICFlowMeter's activity timeout). Default 5 s.
    #[serde(with = "humantime_serde")]
    pub activity_timeout: Duration,
    /// A TCP flow whose teardown is complete (FIN/FIN/ACK or RST) ends after
    /// this much quiet, so its alert is not held back until the flow timeout.
    /// Default 5 s.
    #[serde(with = "humantime_serde")]
    pub tcp_close_linger: Duration,
    /// Most flows held at once, over all workers. A new flow that finds its
    /// worker's share full puts that flow table in emergency mode and, if
    /// the shorter emergency timeouts free nothing, evicts the least
    /// recently seen flow not yet established (else the least recently
    /// seen), counted. Default 1,048,576.
    pub max_flows: usize,
    /// Memory cap of the flow tables, MiB (0 = none): bounds the number of
    /// open flows to this divided by the host memory an open flow costs
    /// (table slot, index and feature accumulator; see
    /// `ShardProcessor::BYTES_PER_FLOW`). The smaller of this and
    /// `max_flows` wins. It covers the flow state only, not the process:
    /// packet chunks, flow batches, the model and the runtime come on top.
    pub memcap_mib: u64,
    /// In emergency mode (a full flow table), a flow idle for longer than
    /// this ends (Suricata's emergency timeouts). At most `timeout`; a
    /// larger value acts as `timeout`. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub emergency_timeout: Duration,
    /// In emergency mode, a flow not yet established (its direction has not
    /// changed twice: no reply, or no packet after the reply) idle for
    /// longer than this ends; so does a finished TCP flow's linger. At most
    /// `emergency_timeout`. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub emergency_new_timeout: Duration,
    /// Emergency mode ends once at least this percentage of the table is
    /// free again (Suricata's `emergency-recovery`), 1 to 100. Default 30.
    pub emergency_recovery: u32,
}

impl Default for FlowSection {
    fn default() -> Self {
        FlowSection {
            timeout: Duration::from_secs(120),
            activity_timeout: Duration::from_secs(5),
            tcp_close_linger: Duration::from_secs(5),
            max_flows: 1 << 20,
            memcap_mib: 0,
            emergency_timeout: Duration::from_secs(30),
            emergency_new_timeout: Duration::from_secs(1),
            emergency_recovery: 30,
        }
    }
}

impl FlowSection {
    /// Checks every range and that the timeouts nest.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(86_400) {
            return Err(invalid("flow.timeout", "must be between 1µs and 24h"));
        }
        if self.activity_timeout.is_zero() || self.activity_timeout > self.timeout {
            return Err(invalid(
                "flow.activity_timeout",
                "must be positive and not longer than flow.timeout",
            ));
        }
        if self.tcp_close_linger > self.timeout {
            return Err(invalid(
                "flow.tcp_close_linger",
                "must not be longer than flow.timeout",
            ));
        }
        if self.max_flows == 0 || self.max_flows > 1 << 28 {
            return Err(invalid("flow.max_flows", "must be between 1 and 268435456"));
        }
        if self.memcap_mib > MAX_MEMCAP_MIB {
            return Err(invalid(
                "flow.memcap_mib",
                format!("must be at most {MAX_MEMCAP_MIB} (0 = no cap)"),
            ));
        }
        if self.emergency_timeout.is_zero() {
            return Err(invalid("flow.emergency_timeout", "must be positive"));
        }
        if self.emergency_new_timeout.is_zero() {
            return Err(invalid("flow.emergency_new_timeout", "must be positive"));
        }
        if !(1..=100).contains(&self.emergency_recovery) {
            return Err(invalid(
                "flow.emergency_recovery",
                "must be between 1 and 100 (percent of the table free)",
            ));
        }
        Ok(())
    }

    /// The flow table configuration for one of `shards` shards: the
    /// configured maximum, and the memory cap divided by what an open flow
    /// costs, are split evenly over the shards; the smaller bound wins.
    pub fn flow_config(&self, shards: usize) -> FlowConfig {
        self.flow_config_with(shards, 0)
    }

    /// [`flow_config`](Self::flow_config) when an open flow costs `extra`
    /// bytes more elsewhere (its context row, waiting in the context stage
    /// until the flow ends), which the memcap then covers too.
    pub fn flow_config_with(&self, shards: usize, extra: usize) -> FlowConfig {
        let us = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let shards = shards.max(1);
        let mut max_flows = self.max_flows.div_ceil(shards);
        if self.memcap_mib > 0 {
            let bytes = usize::try_from(self.memcap_mib << 20).unwrap_or(usize::MAX);
            max_flows = max_flows.min(bytes / shards / (ShardProcessor::BYTES_PER_FLOW + extra));
        }
        FlowConfig {
            flow_timeout_us: us(self.timeout),
            activity_timeout_us: us(self.activity_timeout),
            tcp_close_linger_us: us(self.tcp_close_linger),
            max_flows: max_flows.max(1),
            emergency_timeout_us: us(self.emergency_timeout),
            emergency_new_timeout_us: us(self.emergency_new_timeout),
            emergency_recovery_pct: self.emergency_recovery,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_config_splits_max_flows() {
        let fc = FlowSection::default().flow_config(4);
        assert_eq!(fc.max_flows, (1 << 20) / 4);
        assert_eq!(fc.flow_timeout_us, 120_000_000);
        assert_eq!(fc.activity_timeout_us, 5_000_000);
        assert_eq!(fc.emergency_timeout_us, 30_000_000);
        assert_eq!(fc.emergency_new_timeout_us, 1_000_000);
        assert_eq!(fc.emergency_recovery_pct, 30);
    }

    #[test]
    fn the_smaller_of_max_flows_and_the_memcap_wins() {
        let mut f = FlowSection {
            memcap_mib: 80,
            ..FlowSection::default()
        };
        let per_shard = (80 << 20) / 2 / ShardProcessor::BYTES_PER_FLOW;
        assert_eq!(f.flow_config(2).max_flows, per_shard);
        f.max_flows = 1000;
        assert_eq!(f.flow_config(2).max_flows, 500);
        // A cap too small for one flow still leaves one.
        f.memcap_mib = 1;
        assert_eq!(f.flow_config(4096).max_flows, 1);
    }
}
