//! What the rest of the pipeline learns about a flow when it ends.
//!
//! [`FlowMeta`] is the identity and the coarse counters of one ended flow:
//! enough for an EVE `flow` object, a CSV row's identifier columns and a
//! Kafka offset decision. Feature values travel beside it (see the
//! `kernels` crate), never inside it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum EndReason {
    /// TCP teardown (FIN exchange and final ACK, or RST) was complete and the
    /// flow then saw a new SYN or stayed quiet for the close linger.
    TcpTermination,
    /// Packet time passed the flow timeout since the flow's first packet.
    ActiveTimeout,
    /// No packet for longer than the flow timeout (found by the sweep).
    IdleTimeout,
    /// An ICMP packet whose type and code both differ from the flow's first.
    IcmpChange,
    /// The flow table was full and this was its least recently seen flow.
    Evicted,
    /// The input ended (or the shard was flushed) while the flow was open.
    EndOfInput,
    /// The flow table was in emergency mode (full under a flood) and the
    /// flow was idle past the shorter emergency limit.
    EmergencyTimeout,
}

impl EndReason {
    /// All reasons, in a stable order (for counters and summaries; new
    /// reasons are appended).
    pub const ALL: [EndReason; 7] = [
        EndReason::TcpTermination,
        EndReason::ActiveTimeout,
        EndReason::IdleTimeout,
        EndReason::IcmpChange,
        EndReason::Evicted,
        EndReason::EndOfInput,
        EndReason::EmergencyTimeout,
    ];

    /// A short snake_case name for logs, metrics labels and EVE.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::TcpTermination => "tcp_termination",
            EndReason::ActiveTimeout => "active_timeout",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::IcmpChange => "icmp_change",
            EndReason::Evicted => "evicted",
            EndReason::EndOfInput => "end_of_input",
            EndReason::EmergencyTimeout => "emergency_timeout",
        }
    }
}

/// Identity and counters of an ended flow, oriented CICFlowMeter's way:
/// `src` sent the flow's first packet ("forward").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct FlowMeta {
    /// Stable identifier: a hash of the oriented 5-tuple and the start time,
    /// masked to 51 bits so JSON consumers keep it exact. The same capture
    /// always gives the same ids.
    pub flow_id: u64,
    /// Forward source address (IPv4 in the first 4 bytes when `!v6`).
    pub src: [u8; 16],
    /// Forward destination address.
    pub dst: [u8; 16],
    /// Forward source port (0 without ports).
    pub sport: u16,
    /// Forward destination port (0 without ports).
    pub dport: u16,
    /// IP protocol number.
    pub proto: u8,
    /// True for IPv6.
    pub v6: bool,
    /// ICMP type of the first packet (0 for non-ICMP).
    pub icmp_type: u8,
    /// ICMP code of the first packet (0 for non-ICMP).
    pub icmp_code: u8,
    /// First packet time, µs since the epoch.
    pub start_us: i64,
    /// Last packet time, µs since the epoch.
    pub last_us: i64,
    /// Packets from `src` to `dst`.
    pub pkts_fwd: u64,
    /// Packets from `dst` to `src`.
    pub pkts_bwd: u64,
    /// Frame bytes (capture header original lengths) from `src` to `dst`.
    pub bytes_fwd: u64,
    /// Frame bytes from `dst` to `src`.
    pub bytes_bwd: u64,
    /// Why the flow ended.
    pub reason: EndReason,
}

/// Converts a 16-byte record address to an [`IpAddr`].
pub fn ip_addr(addr: &[u8; 16], v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(*addr))
    } else {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    }
}

impl FlowMeta {
    /// Forward source address.
    pub fn src_ip(&self) -> IpAddr {
        ip_addr(&self.src, self.v6)
    }

    /// Forward destination address.
    pub fn dst_ip(&self) -> IpAddr {
        ip_addr(&self.dst, self.v6)
    }

    /// Total packets in both directions.
    pub fn packets(&self) -> u64 {
        self.pkts_fwd + self.pkts_bwd
    }
}
