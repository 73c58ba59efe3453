//! Community ID v1 flow hashing.
//!
//! Why it is here: SIEM pipelines join events from different monitors on
//! the [Community ID] (`community_id` in Suricata's EVE, `community_id` in
//! Zeek's `conn.log`, `network.community_id` in ECS). An alert that carries
//! the same string as the sensor's other logs can be pivoted on with a plain
//! string comparison, whatever each monitor calls "source".
//!
//! The computation follows the spec (and its reference implementation,
//! `pycommunityid`) exactly:
//!
//! ```text
//! "1:" + base64(SHA-1(seed(2, BE) . saddr . daddr . proto(1) . 0(1) . sport(2, BE) . dport(2, BE)))
//! ```
//!
//! - The endpoints are ordered so that the smaller `(address, port)` comes
//!   first (addresses compared in network byte order, then ports), which
//!   makes the ID independent of direction.
//! - Ports are hashed only for TCP, UDP, SCTP, ICMP and ICMPv6. Every other
//!   IP protocol hashes `seed . saddr . daddr . proto . 0` and nothing more.
//! - ICMP and ICMPv6 use Zeek's mapping of type and code to a port pair:
//!   request/reply types (echo, timestamp, router/neighbor discovery, …)
//!   map to `(type, counterpart type)`, so a request and its reply share an
//!   ID; every other type maps to `(type, code)` and is *one-way*: its
//!   endpoints are never reordered.
//!
//! # Where Suricata 7 differs
//!
//! Suricata 7.0 computes a different value from the spec in a few corner
//! cases (checked against Suricata 7.0.10 on the shared captures by
//! `tests/suricata_community_id.rs`, which reproduces each case). tapstream
//! follows the spec, so for these flows its `community_id` matches Zeek and
//! `pycommunityid` but not Suricata:
//!
//! - ICMP/ICMPv6 types that the spec treats as one-way (destination
//!   unreachable, time exceeded, …): Suricata hashes `(type, 0)` instead of
//!   `(type, code)` and reorders the endpoints by address.
//! - ICMPv6 types 146–158 (mobile prefix, certification path, multicast
//!   router, duplicate address): Suricata pairs them; the spec does not.
//! - Protocols without ports (ESP, GRE, IPv6-in-IP, …): Suricata always hashes
//!   four port bytes (zero, or for ESP the low 16 bits of the SPI).
//! - Flows whose two addresses are equal (loopback captures): Suricata 7
//!   compares the ports in network byte order as host integers.
//!
//! [Community ID]: https://github.com/corelight/community-id-spec

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine as _;
use sha1::{Digest, Sha1};
use tapstream_ingest::FlowMeta;

/// IP protocol number of ICMP.
const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
const PROTO_UDP: u8 = 17;
/// IP protocol number of ICMPv6.
const PROTO_ICMPV6: u8 = 58;
/// IP protocol number of SCTP.
const PROTO_SCTP: u8 = 132;

/// The two addresses of a flow, both of one family.
///
/// An enum rather than two [`IpAddr`]s so that a tuple with one IPv4 and one
/// IPv6 address cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoints {
    /// IPv4 source and destination.
    V4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
    },
    /// IPv6 source and destination.
    V6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
    },
}

impl Endpoints {
    /// Pairs two addresses; `None` when their families differ.
    pub fn new(src: IpAddr, dst: IpAddr) -> Option<Self> {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Some(Endpoints::V4 { src, dst }),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Some(Endpoints::V6 { src, dst }),
            _ => None,
        }
    }

    /// The source address.
    pub fn src(&self) -> IpAddr {
        match *self {
            Endpoints::V4 { src, .. } => IpAddr::V4(src),
            Endpoints::V6 { src, .. } => IpAddr::V6(src),
        }
    }

    /// The destination address.
    pub fn dst(&self) -> IpAddr {
        match *self {
            Endpoints::V4 { dst, .. } => IpAddr::V4(dst),
            Endpoints::V6 { dst, .. } => IpAddr::V6(dst),
        }
    }
}

/// The flow identity that a Community ID hashes.
///
/// For ICMP (protocol 1) and ICMPv6 (protocol 58), `src_port` is the ICMP
/// type and `dst_port` the ICMP code, as in the spec and `pycommunityid`;
/// the type/code → port mapping happens inside [`CommunityId::v1`]. For
/// protocols other than TCP, UDP, SCTP, ICMP and ICMPv6 the ports are
/// ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowTuple {
    /// Source and destination addresses.
    pub endpoints: Endpoints,
    /// IP protocol number.
    pub proto: u8,
    /// Source port, or the ICMP/ICMPv6 type.
    pub src_port: u16,
    /// Destination port, or the ICMP/ICMPv6 code.
    pub dst_port: u16,
}

impl FlowTuple {
    /// Builds a tuple; `None` when the two addresses' families differ.
    pub fn new(src: IpAddr, dst: IpAddr, proto: u8, src_port: u16, dst_port: u16) -> Option<Self> {
        Some(FlowTuple {
            endpoints: Endpoints::new(src, dst)?,
            proto,
            src_port,
            dst_port,
        })
    }

    /// The tuple of an ended flow, oriented as the flow is (forward source
    /// first; the Community ID does not depend on it). ICMP flows use the
    /// type and code of their first packet.
    pub fn from_meta(meta: &FlowMeta) -> Self {
        let endpoints = if meta.v6 {
            Endpoints::V6 {
                src: Ipv6Addr::from(meta.src),
                dst: Ipv6Addr::from(meta.dst),
            }
        } else {
            Endpoints::V4 {
                src: Ipv4Addr::new(meta.src[0], meta.src[1], meta.src[2], meta.src[3]),
                dst: Ipv4Addr::new(meta.dst[0], meta.dst[1], meta.dst[2], meta.dst[3]),
            }
        };
        let (src_port, dst_port) = match meta.proto {
            PROTO_ICMP | PROTO_ICMPV6 => (u16::from(meta.icmp_type), u16::from(meta.icmp_code)),
            _ => (meta.sport, meta.dport),
        };
        FlowTuple {
            endpoints,
            proto: meta.proto,
            src_port,
            dst_port,
        }
    }
}

impl From<&FlowMeta> for FlowTuple {
    fn from(meta: &FlowMeta) -> Self {
        FlowTuple::from_meta(meta)
    }
}

/// Zeek's ICMPv4 request/reply pairs (`ICMP4_counterpart`, as in
/// `pycommunityid/icmp.py`): `Some(counterpart)`, or `None` for a one-way type.
fn icmp4_counterpart(icmp_type: u16) -> Option<u16> {
    Some(match icmp_type {
        8 => 0,   // echo → echo reply
        0 => 8,   // echo reply → echo
        13 => 14, // timestamp → timestamp reply
        14 => 13,
        15 => 16, // information request → reply
        16 => 15,
        10 => 9, // router solicitation → router advertisement
        9 => 10,
        17 => 18, // address mask request → reply
        18 => 17,
        _ => return None,
    })
}

/// Zeek's ICMPv6 request/reply pairs (as in `pycommunityid/icmp6.py`).
fn icmp6_counterpart(icmp_type: u16) -> Option<u16> {
    Some(match icmp_type {
        128 => 129, // echo request → echo reply
        129 => 128,
        130 => 131, // MLD listener query → report
        131 => 130,
        133 => 134, // router solicitation → advertisement
        134 => 133,
        135 => 136, // neighbor solicitation → advertisement
        136 => 135,
        139 => 140, // who-are-you (node information) request → reply
        140 => 139,
        144 => 145, // home agent address discovery request → reply
        145 => 144,
        _ => return None,
    })
}

/// A Community ID string (`"1:"` + 28 base64 characters), held inline so
/// that computing one allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommunityId {
    text: [u8; CommunityId::LEN],
}

impl CommunityId {
    /// Length of a v1 Community ID in bytes: `"1:"` and the base64 of a
    /// 20-byte SHA-1 digest.
    pub const LEN: usize = 30;

    /// Computes the Community ID v1 of `tuple` with `seed` (0 unless the
    /// deployment chose another; every monitor that is joined must use the
    /// same seed).
    pub fn v1(tuple: &FlowTuple, seed: u16) -> Self {
        let (sport, dport) = (tuple.src_port, tuple.dst_port);
        let ports = match tuple.proto {
            PROTO_TCP | PROTO_UDP | PROTO_SCTP => Some(Ports::ordered(sport, dport)),
            PROTO_ICMP => Some(Ports::icmp(sport, dport, icmp4_counterpart(sport))),
            PROTO_ICMPV6 => Some(Ports::icmp(sport, dport, icmp6_counterpart(sport))),
            _ => None,
        };
        let mut hasher = Sha1::new();
        hasher.update(seed.to_be_bytes());
        match tuple.endpoints {
            Endpoints::V4 { src, dst } => {
                hash_tuple(&mut hasher, src.octets(), dst.octets(), tuple.proto, ports)
            }
            Endpoints::V6 { src, dst } => {
                hash_tuple(&mut hasher, src.octets(), dst.octets(), tuple.proto, ports)
            }
        }
        let digest: [u8; 20] = hasher.finalize().into();
        let mut text = [0u8; Self::LEN];
        text[0] = b'1';
        text[1] = b':';
        // 20 bytes are 28 base64 characters, padding included: the rest
        // of `text` exactly, so the encoding cannot run out of room.
        let _ = base64::engine::general_purpose::STANDARD.encode_slice(digest, &mut text[2..]);
        CommunityId { text }
    }

    /// The ID as a string slice, e.g. `1:LQU9qZlK+B5F3KDmev6m5PMibrg=`.
    pub fn as_str(&self) -> &str {
        // Always ASCII: "1:" and the base64 alphabet.
        std::str::from_utf8(&self.text).unwrap_or_default()
    }
}

impl fmt::Display for CommunityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CommunityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CommunityId").field(&self.as_str()).finish()
    }
}

impl AsRef<str> for CommunityId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// Computes the Community ID v1 of `tuple` with `seed` as a `String`.
///
/// Allocates the result; the EVE writer uses [`CommunityId::v1`], which
/// does not.
pub fn v1(tuple: &FlowTuple, seed: u16) -> String {
    CommunityId::v1(tuple, seed).as_str().to_owned()
}

/// The port pair of a tuple, after the ICMP type/code mapping.
#[derive(Clone, Copy)]
struct Ports {
    src: u16,
    dst: u16,
    /// One-way ICMP: the endpoints keep their order.
    one_way: bool,
}

impl Ports {
    fn ordered(src: u16, dst: u16) -> Self {
        Ports {
            src,
            dst,
            one_way: false,
        }
    }

    /// `(type, counterpart)` for request/reply types, else `(type, code)`,
    /// one-way.
    fn icmp(icmp_type: u16, code: u16, counterpart: Option<u16>) -> Self {
        match counterpart {
            Some(reply) => Ports::ordered(icmp_type, reply),
            None => Ports {
                src: icmp_type,
                dst: code,
                one_way: true,
            },
        }
    }
}

/// Hashes `saddr . daddr . proto . 0 [. sport . dport]` with the endpoints
/// in canonical order: the smaller address first, or when the addresses are
/// equal the smaller port first (unless the ICMP mapping made it one-way).
fn hash_tuple<const N: usize>(
    hasher: &mut Sha1,
    src: [u8; N],
    dst: [u8; N],
    proto: u8,
    ports: Option<Ports>,
) {
    let p = ports.unwrap_or(Ports::ordered(0, 0));
    let keep = p.one_way || src < dst || (src == dst && p.src < p.dst);
    let (a, b, pa, pb) = if keep {
        (src, dst, p.src, p.dst)
    } else {
        (dst, src, p.dst, p.src)
    };
    hasher.update(a);
    hasher.update(b);
    hasher.update([proto, 0]);
    if ports.is_some() {
        hasher.update(pa.to_be_bytes());
        hasher.update(pb.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapstream_ingest::EndReason;

    fn id(proto: u8, src: &str, dst: &str, sport: u16, dport: u16, seed: u16) -> String {
        let tuple = FlowTuple::new(
            src.parse().unwrap(),
            dst.parse().unwrap(),
            proto,
            sport,
            dport,
        )
        .unwrap();
        v1(&tuple, seed)
    }

    /// The spec's baseline tables (corelight/community-id-spec,
    /// baseline/README.md), seed 0 and seed 1.
    #[test]
    fn spec_baseline_tables() {
        let (a, b) = ("1.2.3.4", "5.6.7.8");
        let (a6, b6) = (
            "fe80:0001:0203:0405:0607:0809:0A0B:0C0D",
            "fe80:1011:1213:1415:1617:1819:1A1B:1C1D",
        );
        #[rustfmt::skip]
        let rows: &[(u8, &str, &str, u16, u16, &str, &str)] = &[
            (6, a, b, 1122, 3344, "1:wCb3OG7yAFWelaUydu0D+125CLM=", "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="),
            (6, b, a, 3344, 1122, "1:wCb3OG7yAFWelaUydu0D+125CLM=", "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="),
            (17, a, b, 1122, 3344, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=", "1:OShq+iKDAMVouh/4bMxB9Sz4amw="),
            (17, b, a, 3344, 1122, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=", "1:OShq+iKDAMVouh/4bMxB9Sz4amw="),
            (132, a, b, 1122, 3344, "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8=", "1:uitchpn5MMGAQKBJh7bIr/bAr7s="),
            (132, b, a, 3344, 1122, "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8=", "1:uitchpn5MMGAQKBJh7bIr/bAr7s="),
            (1, a, b, 8, 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0=", "1:9pr4ZGTICiuZoIh90RRYE2RyXpU="),
            (1, b, a, 0, 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0=", "1:9pr4ZGTICiuZoIh90RRYE2RyXpU="),
            (1, a, b, 11, 0, "1:f/YiSyWqczrTgfUCZlBUnvHRcPk=", "1:1DD7cWGC/Yg91YGsQeni8du3pIA="),
            (58, a6, b6, 128, 0, "1:0bf7hyMJUwt3fMED7z8LIfRpBeo=", "1:IO27GQzPuCtNnwFvjWALMHu5tJE="),
            (58, b6, a6, 129, 0, "1:0bf7hyMJUwt3fMED7z8LIfRpBeo=", "1:IO27GQzPuCtNnwFvjWALMHu5tJE="),
            (58, a6, b6, 146, 0, "1:fYC8+pz24E+EhANP1EZhpX0Dw10=", "1:Cv4IKJe56BNkF0MBW2YxQ3Nwc3s="),
            (46, a, b, 0, 0, "1:ikv3kmf89luf73WPz1jOs49S768=", "1:/buhqeOmaRCopOZFy9HnoJd5XW8="),
            (46, b, a, 0, 0, "1:ikv3kmf89luf73WPz1jOs49S768=", "1:/buhqeOmaRCopOZFy9HnoJd5XW8="),
            (46, a6, b6, 0, 0, "1:wQ/2mwrnXP4lmJcHdGL5ePjR+e0=", "1:j6EyyfBzL4vWKHFXgUqb5Az3OxM="),
            (46, b6, a6, 0, 0, "1:wQ/2mwrnXP4lmJcHdGL5ePjR+e0=", "1:j6EyyfBzL4vWKHFXgUqb5Az3OxM="),
        ];
        for &(proto, src, dst, sport, dport, seed0, seed1) in rows {
            assert_eq!(
                id(proto, src, dst, sport, dport, 0),
                seed0,
                "{proto} {src} {dst}"
            );
            assert_eq!(
                id(proto, src, dst, sport, dport, 1),
                seed1,
                "{proto} {src} {dst}"
            );
        }
    }

    #[test]
    fn ports_are_ignored_without_a_port_protocol() {
        let with = id(47, "1.2.3.4", "5.6.7.8", 1234, 80, 0);
        let without = id(47, "1.2.3.4", "5.6.7.8", 0, 0, 0);
        assert_eq!(with, without);
    }

    #[test]
    fn mixed_families_are_refused() {
        let v4 = "1.2.3.4".parse().unwrap();
        let v6 = "::1".parse().unwrap();
        assert!(FlowTuple::new(v4, v6, 6, 1, 2).is_none());
        assert!(Endpoints::new(v6, v4).is_none());
    }

    fn meta(proto: u8, v6: bool) -> FlowMeta {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        if v6 {
            src = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
            dst = "2001:db8::2".parse::<Ipv6Addr>().unwrap().octets();
        } else {
            src[..4].copy_from_slice(&[192, 168, 0, 89]);
            dst[..4].copy_from_slice(&[192, 168, 0, 1]);
        }
        FlowMeta {
            flow_id: 1,
            src,
            dst,
            sport: 0,
            dport: 0,
            proto,
            v6,
            icmp_type: 8,
            icmp_code: 0,
            start_us: 0,
            last_us: 0,
            pkts_fwd: 1,
            pkts_bwd: 0,
            bytes_fwd: 60,
            bytes_bwd: 0,
            reason: EndReason::EndOfInput,
        }
    }

    #[test]
    fn from_meta_uses_icmp_type_and_code() {
        let m = meta(1, false);
        let tuple = FlowTuple::from(&m);
        assert_eq!((tuple.src_port, tuple.dst_port), (8, 0));
        // Suricata's output for zeek__icmp.pcap (echo 192.168.0.89 → .1).
        assert_eq!(
            CommunityId::v1(&tuple, 0).as_str(),
            "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="
        );
        let mut m6 = meta(17, true);
        m6.sport = 5353;
        m6.dport = 53;
        let t6 = FlowTuple::from_meta(&m6);
        assert_eq!((t6.src_port, t6.dst_port), (5353, 53));
        assert_eq!(t6.endpoints.src(), "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(t6.endpoints.dst(), "2001:db8::2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn display_and_debug() {
        let m = meta(1, false);
        let cid = CommunityId::v1(&FlowTuple::from_meta(&m), 0);
        assert_eq!(cid.to_string(), cid.as_str());
        assert_eq!(cid.as_ref().len(), CommunityId::LEN);
        assert!(format!("{cid:?}").contains("1:X0sn"));
    }
}
