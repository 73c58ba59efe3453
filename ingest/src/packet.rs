//! The compact, fixed-size record that decoding produces for every IP packet.
//!
//! Decoding borrows the captured bytes and writes one [`PacketRecord`] per
//! packet; nothing downstream (flow table, feature extractors, the GPU) ever
//! sees raw bytes again. The record is `#[repr(C)]` and `Copy` so batches of
//! them can be handed to a GPU as-is.

/// IP protocol numbers the flow table and extractors treat specially.
pub mod proto {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
}

/// TCP flag bits as they appear in the TCP header's flags byte.
pub mod tcp_flags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Synchronize sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push function.
    pub const PSH: u8 = 0x08;
    /// Acknowledgment field significant.
    pub const ACK: u8 = 0x10;
    /// Urgent pointer field significant.
    pub const URG: u8 = 0x20;
    /// ECN echo.
    pub const ECE: u8 = 0x40;
    /// Congestion window reduced.
    pub const CWR: u8 = 0x80;
}

/// One decoded IP packet, oriented as it was seen on the wire (`src` sent it).
///
/// Addresses are 16 bytes; IPv4 addresses occupy the first 4 bytes and the
/// rest is zero (`v6 == false`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketRecord {
    /// Capture timestamp, microseconds since the Unix epoch (packet time).
    pub ts_us: i64,
    /// Symmetric hash of the 5-tuple: equal for both directions of a flow.
    pub hash: u64,
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Transport payload bytes as the IP header's lengths say (not the
    /// captured bytes: Ethernet padding and snap-length cuts do not change it).
    pub payload_len: u32,
    /// Original frame length from the capture header (for EVE byte counts).
    pub wire_len: u32,
    /// Source port (0 for protocols without ports).
    pub sport: u16,
    /// Destination port (0 for protocols without ports).
    pub dport: u16,
    /// Transport header bytes (TCP data offset × 4, UDP 8, ICMP 8, else 0).
    pub header_len: u16,
    /// TCP receive window (0 for non-TCP).
    pub window: u16,
    /// IP protocol number of the transport header (see [`proto`]).
    pub proto: u8,
    /// TCP flags byte (see [`tcp_flags`]); 0 for non-TCP.
    pub flags: u8,
    /// ICMP/ICMPv6 type (0 otherwise).
    pub icmp_type: u8,
    /// ICMP/ICMPv6 code (0 otherwise).
    pub icmp_code: u8,
    /// True for IPv6 addresses.
    pub v6: bool,
}

impl PacketRecord {
    /// True if the given TCP flag bit(s) are all set.
    #[inline]
    pub fn has_flag(&self, flag: u8) -> bool {
        self.flags & flag == flag
    }

    /// True for ICMP and ICMPv6.
    #[inline]
    pub fn is_icmp(&self) -> bool {
        self.proto == proto::ICMP || self.proto == proto::ICMPV6
    }
}
