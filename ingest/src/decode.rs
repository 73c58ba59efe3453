//! Raw packet bytes → one [`PacketRecord`], or the reason there is none.
//!
//! This is the hot path of ingestion: [`decode`] borrows the captured bytes,
//! walks link layer → IP → transport with bounds-checked reads (`get`, never
//! indexing that input can make fail), allocates nothing, and writes a
//! fixed-size record. Every packet that cannot become a record gets exactly
//! one [`SkipReason`], so the pipeline can count it.
//!
//! Hand-written rather than `etherparse` or `pnet`: those lack Linux SLL2,
//! MPLS label stacks, PPPoE, BSD null/loopback (with its host byte order) and
//! the other capture link types below, and we need only a dozen header fields,
//! not a parsed tree.
//!
//! What is decoded:
//! - Link types (pcap `LINKTYPE_*`, see [`linktype`]): Ethernet, Linux SLL
//!   and SLL2, raw IP (101, and DLT_RAW 12/14), IPv4 (228), IPv6 (229), BSD
//!   null (0, family in either byte order) and OpenBSD loop (108), PPP (9, 50,
//!   204), Cisco HDLC (104), Frame Relay (107), NFLOG (239), IPNET (226),
//!   IP over InfiniBand (242), ATM RFC 1483 (100) and Linux ATM CLIP (106),
//!   Linux ARCNET (129), Juniper Ethernet (178),
//!   FDDI (10), SLIP (8), IEEE 802.11 (105) with radiotap (127) or PPI (192)
//!   in front, Apple PKTAP (258), Ethernet with Broadcom/Marvell switch tags
//!   (281, 282, 284, 285).
//! - Between link and IP: 802.1Q/802.1ad/0x9100/0x9200/0x9300 VLAN tags at
//!   any depth, MPLS label stacks (IPv4/IPv6 after the bottom of stack by the
//!   first nibble; a zero nibble is a pseudowire control word followed by an
//!   Ethernet frame), PPPoE sessions, 802.2 LLC/SNAP, VN-Tag, 802.1BR E-Tag,
//!   Cisco FabricPath, 802.1ah PBB, unencrypted MACsec, NSH.
//! - IPv4 (options skipped by IHL) and IPv6 (hop-by-hop, routing, fragment,
//!   destination options, AH, mobility, HIP and shim6 headers skipped).
//! - Transport: TCP, UDP, ICMP/ICMPv6. Other protocols are records with
//!   ports 0 and `header_len` 0: they still form flows.
//!
//! Deliberate choices:
//! - Fragments: a non-first fragment (offset > 0) has no transport header,
//!   so it is [`SkipReason::Fragment`]. A first fragment (offset 0, more
//!   fragments set) is decoded like a whole packet: its ports are there, and
//!   its `payload_len` is this fragment's share, as the IP header says. If
//!   the first fragment ends inside the transport header (TCP options split
//!   off), it is still decoded when ports, flags and window are in it
//!   (`payload_len` 0), and is a `Fragment` skip when they are not.
//! - Tunnels (GRE, VXLAN, IP-in-IP, GTP, …) are not decapsulated: the outer
//!   IP header forms the flow, as in CICFlowMeter.
//! - `payload_len` comes from the IP lengths, not the captured bytes, so
//!   Ethernet padding and snap-length cuts do not change it. A total length of
//!   0 (TSO/GSO captures) or an IPv6 jumbogram falls back to the captured bytes.
//!   IP lengths that cannot hold the headers inside them are
//!   [`SkipReason::Malformed`]. IP lengths beyond the frame's original length
//!   are believed: several capture tools record the captured length as the
//!   original one, so the frame length is the less trustworthy of the two.

use crate::capture::RawPacket;
use crate::defrag::{Fragment, HEAD};
use crate::packet::{proto, PacketRecord};
use crate::skip::SkipReason;

/// Link-layer types [`decode`] understands (pcap/pcapng `LINKTYPE_*` values).
pub mod linktype {
    /// BSD loopback: 4-byte address family in the capturing host's byte order.
    pub const NULL: u32 = 0;
    /// Ethernet (DLT_EN10MB).
    pub const ETHERNET: u32 = 1;
    /// SLIP with libpcap's 16-byte pseudo-header.
    pub const SLIP: u32 = 8;
    /// PPP, with or without HDLC-like address/control bytes.
    pub const PPP: u32 = 9;
    /// FDDI (802.2 LLC after a 13-byte MAC header).
    pub const FDDI: u32 = 10;
    /// DLT_RAW as written on most platforms: raw IPv4 or IPv6.
    pub const RAW_12: u32 = 12;
    /// DLT_RAW as written on OpenBSD: raw IPv4 or IPv6.
    pub const RAW_14: u32 = 14;
    /// PPP in HDLC-like framing.
    pub const PPP_HDLC: u32 = 50;
    /// ATM RFC 1483 LLC/SNAP (or VC-multiplexed raw IP).
    pub const ATM_RFC1483: u32 = 100;
    /// Raw IPv4 or IPv6 (version from the first nibble).
    pub const RAW: u32 = 101;
    /// Cisco HDLC.
    pub const C_HDLC: u32 = 104;
    /// Linux ARCNET (RFC 1051 and RFC 1201 encapsulations).
    pub const ARCNET_LINUX: u32 = 129;
    /// IEEE 802.11 without radio header.
    pub const IEEE802_11: u32 = 105;
    /// Linux Classical IP over ATM (LLC/SNAP).
    pub const LINUX_ATM_CLIP: u32 = 106;
    /// Frame Relay (RFC 2427 NLPID or Cisco encapsulation).
    pub const FRELAY: u32 = 107;
    /// OpenBSD loopback: 4-byte address family in network byte order.
    pub const LOOP: u32 = 108;
    /// Juniper Ethernet: a Juniper header ("MGC", flags, extensions), then Ethernet.
    pub const JUNIPER_ETHER: u32 = 178;
    /// Linux "cooked" capture, version 1.
    pub const LINUX_SLL: u32 = 113;
    /// 802.11 with a radiotap header.
    pub const IEEE802_11_RADIOTAP: u32 = 127;
    /// Per-Packet Information header, then the link type it names.
    pub const PPI: u32 = 192;
    /// PPP with a direction byte in front.
    pub const PPP_WITH_DIR: u32 = 204;
    /// Solaris IPNET.
    pub const IPNET: u32 = 226;
    /// Raw IPv4.
    pub const IPV4: u32 = 228;
    /// Raw IPv6.
    pub const IPV6: u32 = 229;
    /// Linux netfilter NFLOG.
    pub const NFLOG: u32 = 239;
    /// IP over InfiniBand (4-byte header with an EtherType).
    pub const IPOIB: u32 = 242;
    /// Apple PKTAP header, then the link type it names.
    pub const PKTAP: u32 = 258;
    /// Linux "cooked" capture, version 2.
    pub const LINUX_SLL2: u32 = 276;
    /// Ethernet with a 4-byte Broadcom switch tag after the MAC addresses.
    pub const DSA_TAG_BRCM: u32 = 281;
    /// Ethernet preceded by a 4-byte Broadcom switch tag.
    pub const DSA_TAG_BRCM_PREPEND: u32 = 282;
    /// Ethernet with a 4-byte Marvell DSA tag after the MAC addresses.
    pub const DSA_TAG_DSA: u32 = 284;
    /// Ethernet with an 8-byte Marvell EDSA tag after the MAC addresses.
    pub const DSA_TAG_EDSA: u32 = 285;

    /// Every link type [`decode`](super::decode) understands (any other is
    /// skipped as `UnsupportedLinkType`), for users listing them and for
    /// tests and fuzzers choosing one.
    pub const ALL: &[u32] = &[
        NULL,
        ETHERNET,
        SLIP,
        PPP,
        FDDI,
        RAW_12,
        RAW_14,
        PPP_HDLC,
        ATM_RFC1483,
        RAW,
        C_HDLC,
        IEEE802_11,
        LINUX_ATM_CLIP,
        FRELAY,
        LOOP,
        LINUX_SLL,
        IEEE802_11_RADIOTAP,
        ARCNET_LINUX,
        JUNIPER_ETHER,
        PPI,
        PPP_WITH_DIR,
        IPNET,
        IPV4,
        IPV6,
        NFLOG,
        IPOIB,
        PKTAP,
        LINUX_SLL2,
        DSA_TAG_BRCM,
        DSA_TAG_BRCM_PREPEND,
        DSA_TAG_DSA,
        DSA_TAG_EDSA,
    ];

    /// The `LINKTYPE_*` name of a link type, for messages: the ones
    /// [`ALL`] lists and common ones `decode` does not understand.
    pub fn name(link_type: u32) -> Option<&'static str> {
        Some(match link_type {
            NULL => "NULL",
            ETHERNET => "ETHERNET",
            3 => "AX25",
            6 => "IEEE802_5",
            7 => "ARCNET_BSD",
            SLIP => "SLIP",
            PPP => "PPP",
            FDDI => "FDDI",
            RAW_12 | RAW_14 | RAW => "RAW",
            PPP_HDLC => "PPP_HDLC",
            51 => "PPP_ETHER",
            ATM_RFC1483 => "ATM_RFC1483",
            C_HDLC => "C_HDLC",
            IEEE802_11 => "IEEE802_11",
            LINUX_ATM_CLIP => "LINUX_ATM_CLIP",
            FRELAY => "FRELAY",
            LOOP => "LOOP",
            LINUX_SLL => "LINUX_SLL",
            114 => "LTALK",
            117 => "PFLOG",
            119 => "IEEE802_11_PRISM",
            122 => "IP_OVER_FC",
            123 => "SUNATM",
            IEEE802_11_RADIOTAP => "IEEE802_11_RADIOTAP",
            ARCNET_LINUX => "ARCNET_LINUX",
            137..=138 => "JUNIPER_MLPPP/MLFR",
            139 => "JUNIPER_ES",
            140 => "MTP2_WITH_PHDR",
            141 => "MTP2",
            142 => "MTP3",
            143 => "SCCP",
            144 => "DOCSIS",
            145 => "LINUX_IRDA",
            147..=162 => {
                const USER: [&str; 16] = [
                    "USER0", "USER1", "USER2", "USER3", "USER4", "USER5", "USER6", "USER7",
                    "USER8", "USER9", "USER10", "USER11", "USER12", "USER13", "USER14", "USER15",
                ];
                return USER.get((link_type - 147) as usize).copied();
            }
            163 => "IEEE802_11_AVS",
            165 => "BACNET_MS_TP",
            166 => "PPP_PPPD",
            167 => "JUNIPER_PPPOE",
            169 => "GPRS_LLC",
            177 => "LINUX_LAPD",
            JUNIPER_ETHER => "JUNIPER_ETHER",
            187 => "BLUETOOTH_HCI_H4",
            189 => "USB_LINUX",
            PPI => "PPI",
            195 => "IEEE802_15_4_WITHFCS",
            201 => "BLUETOOTH_HCI_H4_WITH_PHDR",
            PPP_WITH_DIR => "PPP_WITH_DIR",
            215 => "IEEE802_15_4_NONASK_PHY",
            220 => "USB_LINUX_MMAPPED",
            224 => "FIBRECHANNEL",
            IPNET => "IPNET",
            227 => "CAN_SOCKETCAN",
            IPV4 => "IPV4",
            IPV6 => "IPV6",
            230 => "IEEE802_15_4_NOFCS",
            231 => "DBUS",
            235 => "DVB_CI",
            NFLOG => "NFLOG",
            240 => "NETANALYZER",
            IPOIB => "IPOIB",
            249 => "USBPCAP",
            251 => "BLUETOOTH_LE_LL",
            253 => "NETLINK",
            254 => "BLUETOOTH_LINUX_MONITOR",
            PKTAP => "PKTAP",
            263 => "DOCSIS31_XRA31",
            265 => "DISPLAYPORT_AUX",
            270 => "NORDIC_BLE",
            271 => "VSOCK",
            LINUX_SLL2 => "LINUX_SLL2",
            DSA_TAG_BRCM => "DSA_TAG_BRCM",
            DSA_TAG_BRCM_PREPEND => "DSA_TAG_BRCM_PREPEND",
            283 => "IEEE802_15_4_TAP",
            DSA_TAG_DSA => "DSA_TAG_DSA",
            DSA_TAG_EDSA => "DSA_TAG_EDSA",
            _ => return None,
        })
    }

    /// `NAME (number)`, or `number` alone for a link type without a name
    /// here.
    pub fn describe(link_type: u32) -> String {
        match name(link_type) {
            Some(n) => format!("{n} ({link_type})"),
            None => link_type.to_string(),
        }
    }
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86DD;
const ETH_MPLS: u16 = 0x8847;
const ETH_MPLS_MC: u16 = 0x8848;
const ETH_PPPOE_SESSION: u16 = 0x8864;
/// Not a real EtherType: "an 802.2 LLC header follows" (any value ≤ 1500,
/// which Ethernet uses for a length, means that).
const LLC_FOLLOWS: u16 = 0;
/// Linux ARPHRD_NETLINK: SLL frames carrying netlink messages, not packets.
const ARPHRD_NETLINK: u16 = 824;

/// Network layer found under the link layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Net {
    V4,
    V6,
}

type Link = Result<(Net, usize), SkipReason>;

#[inline]
fn be16(d: &[u8], off: usize) -> Result<u16, SkipReason> {
    match d.get(off..off.wrapping_add(2)) {
        Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
        _ => Err(SkipReason::Truncated),
    }
}

#[inline]
fn be32(d: &[u8], off: usize) -> Result<u32, SkipReason> {
    match d.get(off..off.wrapping_add(4)) {
        Some(&[a, b, c, e]) => Ok(u32::from_be_bytes([a, b, c, e])),
        _ => Err(SkipReason::Truncated),
    }
}

#[inline]
fn le32(d: &[u8], off: usize) -> Result<u32, SkipReason> {
    be32(d, off).map(u32::swap_bytes)
}

#[inline]
fn byte(d: &[u8], off: usize) -> Result<u8, SkipReason> {
    d.get(off).copied().ok_or(SkipReason::Truncated)
}

/// The first `N` bytes at `off`, or `Truncated`.
#[inline]
fn array<const N: usize>(d: &[u8], off: usize) -> Result<&[u8; N], SkipReason> {
    d.get(off..off.wrapping_add(N))
        .and_then(|s| s.try_into().ok())
        .ok_or(SkipReason::Truncated)
}

/// Decodes `pkt` into `out`. On `Err`, `out` is left unchanged.
///
/// Never panics and never allocates, whatever the bytes.
#[inline]
pub fn decode(pkt: &RawPacket<'_>, out: &mut PacketRecord) -> Result<(), SkipReason> {
    decode_as::<false>(pkt, out)
}

/// Like [`decode`], except that a first fragment is `Err(Fragment)` too:
/// with defragmentation on, every fragment goes to [`fragment_of`], and its
/// datagram is decoded once whole (`crate::defrag`).
#[inline]
pub fn decode_whole(pkt: &RawPacket<'_>, out: &mut PacketRecord) -> Result<(), SkipReason> {
    decode_as::<true>(pkt, out)
}

/// [`decode`] (`WHOLE` false) or [`decode_whole`].
#[inline]
fn decode_as<const WHOLE: bool>(
    pkt: &RawPacket<'_>,
    out: &mut PacketRecord,
) -> Result<(), SkipReason> {
    let d = pkt.data;
    let (net, off) = locate(pkt)?;
    match net {
        Net::V4 => ipv4::<WHOLE>(d, off, pkt, out),
        Net::V6 => ipv6::<WHOLE>(d, off, pkt, out),
    }
}

/// The IP header under `pkt`'s link layer: its version and offset.
#[inline]
fn locate(pkt: &RawPacket<'_>) -> Link {
    let d = pkt.data;
    Ok(match pkt.link_type {
        linktype::PKTAP => {
            // Host-order (little-endian on every Apple machine) header length and next DLT.
            let hdr = header_len(d, le32(d, 0)? as usize)?;
            link_inner(le32(d, 4)?, d, hdr)?
        }
        linktype::PPI => {
            let hdr = header_len(d, usize::from(be16(d, 2)?.swap_bytes()))?;
            link_inner(le32(d, 4)?, d, hdr)?
        }
        lt => link_inner(lt, d, 0)?,
    })
}

/// A pseudo-header's self-declared length, if the frame is that long.
#[inline]
fn header_len(d: &[u8], len: usize) -> Result<usize, SkipReason> {
    if len <= d.len() {
        Ok(len)
    } else {
        Err(SkipReason::Truncated)
    }
}

/// Finds the IP header under link type `lt` starting at `off`.
#[inline]
fn link_inner(lt: u32, d: &[u8], off: usize) -> Link {
    match lt {
        linktype::ETHERNET => ethertype(d, be16(d, off + 12)?, off + 14),
        // Switch tags: 4 bytes after the MACs (Broadcom, Marvell DSA) or
        // before them (Broadcom prepend): the EtherType moves by 4 either
        // way. Marvell EDSA tags are 8 bytes.
        linktype::DSA_TAG_BRCM | linktype::DSA_TAG_BRCM_PREPEND | linktype::DSA_TAG_DSA => {
            ethertype(d, be16(d, off + 16)?, off + 18)
        }
        linktype::DSA_TAG_EDSA => ethertype(d, be16(d, off + 20)?, off + 22),
        linktype::LINUX_SLL => {
            if d.len() < off + 16 {
                return Err(SkipReason::Truncated);
            }
            if be16(d, off + 2)? == ARPHRD_NETLINK {
                return Err(SkipReason::NonIp);
            }
            ethertype(d, be16(d, off + 14)?, off + 16)
        }
        linktype::LINUX_SLL2 => {
            if d.len() < off + 20 {
                return Err(SkipReason::Truncated);
            }
            if be16(d, off + 8)? == ARPHRD_NETLINK {
                return Err(SkipReason::NonIp);
            }
            ethertype(d, be16(d, off)?, off + 20)
        }
        linktype::RAW | linktype::RAW_12 | linktype::RAW_14 => by_version(d, off),
        linktype::IPV4 => Ok((Net::V4, off)),
        linktype::IPV6 => Ok((Net::V6, off)),
        linktype::NULL | linktype::LOOP => {
            // Some "null" captures hold PPP or Cisco HDLC framing instead.
            if let Some([0xFF, 0x03] | [0x0F | 0x8F, 0x00]) = d.get(off..off + 2) {
                return ppp(d, off);
            }
            // Host byte order for NULL, network order for LOOP: families are
            // small, so whichever reading fits in 16 bits is the right one.
            let v = le32(d, off)?;
            let family = if v & 0xFFFF_0000 != 0 {
                v.swap_bytes()
            } else {
                v
            };
            match family {
                2 => Ok((Net::V4, off + 4)),
                // AF_INET6 on OpenBSD/NetBSD, FreeBSD, Darwin.
                24 | 28 | 30 => Ok((Net::V6, off + 4)),
                _ => Err(SkipReason::NonIp),
            }
        }
        linktype::PPP | linktype::PPP_HDLC => ppp(d, off),
        linktype::PPP_WITH_DIR => ppp(d, off + 1),
        linktype::C_HDLC => ethertype(d, be16(d, off + 2)?, off + 4),
        linktype::FRELAY => frame_relay(d, off),
        linktype::NFLOG => nflog(d, off),
        linktype::IPNET => by_version(d, off + 24),
        // 20-byte destination and source addresses, EtherType, reserved.
        linktype::IPOIB => ethertype(d, be16(d, off + 40)?, off + 44),
        linktype::ARCNET_LINUX => arcnet(d, off),
        linktype::JUNIPER_ETHER => {
            // "MGC", flags; with the extension flag, a length and TLVs follow.
            let flags = match d.get(off..off + 4) {
                Some([b'M', b'G', b'C', f]) => *f,
                Some(_) => return Err(SkipReason::Malformed),
                None => return Err(SkipReason::Truncated),
            };
            let mut e = off + 4;
            if flags & 0x80 != 0 {
                e += 2 + usize::from(be16(d, e)?);
            }
            ethertype(d, be16(d, e + 12)?, e + 14)
        }
        linktype::ATM_RFC1483 | linktype::LINUX_ATM_CLIP => {
            if matches!(d.get(off..off + 3), Some([0xAA, 0xAA, 0x03])) {
                ethertype(d, LLC_FOLLOWS, off)
            } else {
                by_version(d, off)
            }
        }
        linktype::FDDI => ethertype(d, LLC_FOLLOWS, off + 13),
        linktype::SLIP => {
            // Byte 1 of the pseudo-header: 0x40 plain IP; compressed TCP otherwise.
            if byte(d, off + 1)? & 0xF0 == 0x40 {
                by_version(d, off + 16)
            } else {
                Err(SkipReason::NonIp)
            }
        }
        linktype::IEEE802_11 => wifi(d, off),
        linktype::IEEE802_11_RADIOTAP => {
            let hdr = header_len(d, usize::from(be16(d, off + 2)?.swap_bytes()))?;
            wifi(d, off + hdr)
        }
        _ => Err(SkipReason::UnsupportedLinkType),
    }
}

/// IPv4 or IPv6 by the version nibble, where the link type promises IP.
#[inline]
fn by_version(d: &[u8], off: usize) -> Link {
    match byte(d, off)? >> 4 {
        4 => Ok((Net::V4, off)),
        6 => Ok((Net::V6, off)),
        _ => Err(SkipReason::Malformed),
    }
}

/// Follows EtherTypes through VLAN tags, MPLS, PPPoE and LLC/SNAP to IP.
///
/// Iterative, so hostile nesting cannot grow the stack; every step moves
/// `off` forward, so it ends when the bytes do.
#[inline]
fn ethertype(d: &[u8], mut t: u16, mut off: usize) -> Link {
    loop {
        match t {
            ETH_IPV4 => return Ok((Net::V4, off)),
            ETH_IPV6 => return Ok((Net::V6, off)),
            0x8100 | 0x88A8 | 0x9100 | 0x9200 | 0x9300 => {
                t = be16(d, off + 2)?;
                off += 4;
            }
            ETH_MPLS | ETH_MPLS_MC => {
                loop {
                    let entry = be32(d, off)?;
                    off += 4;
                    if entry & 0x100 != 0 {
                        break; // bottom of stack
                    }
                }
                match byte(d, off)? >> 4 {
                    4 => return Ok((Net::V4, off)),
                    6 => return Ok((Net::V6, off)),
                    0 => {
                        // Pseudowire control word, then an Ethernet frame.
                        t = be16(d, off + 16)?;
                        off += 18;
                    }
                    _ => return Err(SkipReason::NonIp),
                }
            }
            // Tags that sit between MAC header and EtherType: VN-Tag (4
            // bytes), 802.1BR E-Tag (6).
            0x8926 => {
                t = be16(d, off + 4)?;
                off += 6;
            }
            0x893F => {
                t = be16(d, off + 6)?;
                off += 8;
            }
            // Headers followed by an inner MAC header: Cisco FabricPath (FTAG/TTL),
            // 802.1ah PBB (I-TAG).
            0x8903 => {
                t = be16(d, off + 14)?;
                off += 16;
            }
            0x88E7 => {
                t = be16(d, off + 16)?;
                off += 18;
            }
            0x88E5 => {
                // MACsec SecTAG: TCI/AN, short length, packet number, optional SCI.
                let tci = byte(d, off)?;
                if tci & 0x08 != 0 {
                    return Err(SkipReason::NonIp); // encrypted
                }
                off += if tci & 0x20 != 0 { 14 } else { 6 };
                t = be16(d, off)?;
                off += 2;
            }
            0x894F => {
                // Network Service Header: length in 4-byte words, next protocol.
                let len = usize::from(byte(d, off + 1)? & 0x3F) * 4;
                if len < 8 {
                    return Err(SkipReason::Malformed); // base + service path headers
                }
                match byte(d, off + 3)? {
                    1 => return Ok((Net::V4, off + len)),
                    2 => return Ok((Net::V6, off + len)),
                    3 => {
                        t = be16(d, off + len + 12)?;
                        off += len + 14;
                    }
                    _ => return Err(SkipReason::NonIp),
                }
            }
            ETH_PPPOE_SESSION => {
                let p = be16(d, off + 6)?;
                off += 8;
                match p {
                    0x0021 => return Ok((Net::V4, off)),
                    0x0057 => return Ok((Net::V6, off)),
                    0x0281 | 0x0283 => t = ETH_MPLS,
                    _ => return Err(SkipReason::NonIp),
                }
            }
            0..=1500 => {
                // 802.3 length field: an 802.2 LLC header follows. Only SNAP
                // (AA AA 03, OUI, EtherType) can carry IP here.
                match d.get(off..off + 3) {
                    Some([0xAA, 0xAA, 0x03]) => {
                        t = be16(d, off + 6)?;
                        off += 8;
                    }
                    Some(_) => return Err(SkipReason::NonIp),
                    None => return Err(SkipReason::Truncated),
                }
            }
            _ => return Err(SkipReason::NonIp),
        }
    }
}

/// Linux ARCNET: source, destination, 2-byte offset, protocol id; RFC 1201
/// protocols add a split flag and a sequence number (and 4 bytes of padding
/// in exception packets, split flag FF).
fn arcnet(d: &[u8], off: usize) -> Link {
    let rfc1201 = |net| -> Link {
        match byte(d, off + 5)? {
            0xFF => Ok((net, off + 12)),
            // Even, nonzero: a continuation of a link-layer fragment.
            s if s != 0 && s & 1 == 0 => Err(SkipReason::Fragment),
            _ => Ok((net, off + 8)),
        }
    };
    match byte(d, off + 4)? {
        0xF0 => Ok((Net::V4, off + 5)), // RFC 1051 IP
        0xD4 => rfc1201(Net::V4),
        0xC4 => rfc1201(Net::V6),
        _ => Err(SkipReason::NonIp),
    }
}

/// PPP: optional FF 03 address/control, 1- or 2-byte protocol. Cisco HDLC
/// frames (0F/8F 00) also turn up under the PPP link types.
fn ppp(d: &[u8], mut off: usize) -> Link {
    match d.get(off..off + 2) {
        Some([0xFF, 0x03]) => off += 2,
        Some([0x0F | 0x8F, 0x00]) => return ethertype(d, be16(d, off + 2)?, off + 4),
        _ => {}
    }
    let b0 = byte(d, off)?;
    let (p, n) = if b0 & 1 == 1 {
        (u16::from(b0), 1) // protocol field compression
    } else {
        (be16(d, off)?, 2)
    };
    off += n;
    match p {
        0x0021 => Ok((Net::V4, off)),
        0x0057 => Ok((Net::V6, off)),
        0x0281 | 0x0283 => ethertype(d, ETH_MPLS, off),
        _ => Err(SkipReason::NonIp),
    }
}

/// Frame Relay: a Q.922 address (2–4 bytes), then RFC 2427 (control 03 +
/// NLPID) or Cisco's EtherType encapsulation.
fn frame_relay(d: &[u8], mut off: usize) -> Link {
    let start = off;
    loop {
        let b = byte(d, off)?;
        off += 1;
        if b & 1 == 1 {
            break; // EA bit: last address byte
        }
        if off - start >= 4 {
            return Err(SkipReason::Malformed);
        }
    }
    if byte(d, off)? != 0x03 {
        return ethertype(d, be16(d, off)?, off + 2);
    }
    off += 1;
    let mut nlpid = byte(d, off)?;
    if nlpid == 0x00 {
        off += 1; // padding
        nlpid = byte(d, off)?;
    }
    match nlpid {
        0xCC => Ok((Net::V4, off + 1)),
        0x8E => Ok((Net::V6, off + 1)),
        0x80 => ethertype(d, be16(d, off + 4)?, off + 6), // SNAP: OUI, EtherType
        _ => Err(SkipReason::NonIp),
    }
}

/// NFLOG: family byte, version, resource id, then TLVs (length and type in
/// the capturing host's byte order); type 9 holds the packet.
fn nflog(d: &[u8], off: usize) -> Link {
    let family = byte(d, off)?;
    let mut p = off + 4;
    // Byte order: TLV types are small numbers, so the order that reads the
    // first type below 256 is the capturing host's (little-endian if both do).
    let swap = be16(d, p + 2)?.swap_bytes() & 0x7FFF < 0x100;
    loop {
        if p == d.len() {
            return Err(SkipReason::NonIp); // no payload attribute
        }
        let (mut len, mut typ) = (be16(d, p)?, be16(d, p + 2)?);
        if swap {
            (len, typ) = (len.swap_bytes(), typ.swap_bytes());
        }
        if len < 4 {
            return Err(SkipReason::Malformed);
        }
        if typ & 0x7FFF == 9 {
            return match family {
                2 => Ok((Net::V4, p + 4)),
                10 => Ok((Net::V6, p + 4)),
                _ => by_version(d, p + 4),
            };
        }
        p += usize::from(len).div_ceil(4) * 4;
        if p > d.len() {
            return Err(SkipReason::Truncated);
        }
    }
}

/// IEEE 802.11 data frames (unprotected), then LLC/SNAP.
fn wifi(d: &[u8], off: usize) -> Link {
    let fc0 = byte(d, off)?;
    let fc1 = byte(d, off + 1)?;
    let ftype = (fc0 >> 2) & 0x3;
    let subtype = fc0 >> 4;
    // Only data frames that carry data (not null/CF frames) and are not encrypted.
    if ftype != 2 || subtype & 0x4 != 0 || fc1 & 0x40 != 0 {
        return Err(SkipReason::NonIp);
    }
    let mut hdr = 24;
    if fc1 & 0x3 == 0x3 {
        hdr += 6; // four addresses (WDS)
    }
    if subtype & 0x8 != 0 {
        hdr += 2; // QoS control
        if fc1 & 0x80 != 0 {
            hdr += 4; // HT control
        }
    }
    ethertype(d, LLC_FOLLOWS, off + hdr)
}

/// Transport fields of one packet.
struct L4 {
    sport: u16,
    dport: u16,
    header_len: u16,
    window: u16,
    flags: u8,
    icmp_type: u8,
    icmp_code: u8,
}

/// Reads the transport header at `p`. `decl` is the transport length the IP
/// header declares; `lengths_from_capture` is set when that length was taken
/// from the captured bytes (TSO, jumbogram), where a short length means a
/// cut capture rather than a lying header. In a first fragment the transport
/// header may continue in the next fragment: that is not malformed as long as
/// the fields we read are in this one (else it is [`SkipReason::Fragment`]).
#[inline]
fn transport(
    d: &[u8],
    p: usize,
    decl: usize,
    proto_num: u8,
    lengths_from_capture: bool,
    first_fragment: bool,
) -> Result<L4, SkipReason> {
    let mut l4 = L4 {
        sport: 0,
        dport: 0,
        header_len: 0,
        window: 0,
        flags: 0,
        icmp_type: 0,
        icmp_code: 0,
    };
    // Bytes holding the fields we read.
    let need = match proto_num {
        proto::TCP => 16,
        proto::UDP => 4,
        proto::ICMP | proto::ICMPV6 => 2,
        _ => return Ok(l4),
    };
    let too_short = if first_fragment {
        SkipReason::Fragment
    } else if lengths_from_capture {
        SkipReason::Truncated
    } else {
        SkipReason::Malformed
    };
    if decl < need {
        return Err(too_short);
    }
    let t = d.get(p..p + need).ok_or(SkipReason::Truncated)?;
    match *t {
        [s0, s1, d0, d1, _, _, _, _, _, _, _, _, off, flags, w0, w1] => {
            let doff = off >> 4;
            if doff < 5 {
                return Err(SkipReason::Malformed);
            }
            l4.header_len = u16::from(doff) * 4;
            l4.sport = u16::from_be_bytes([s0, s1]);
            l4.dport = u16::from_be_bytes([d0, d1]);
            l4.flags = flags;
            l4.window = u16::from_be_bytes([w0, w1]);
        }
        [s0, s1, d0, d1] => {
            l4.header_len = 8;
            l4.sport = u16::from_be_bytes([s0, s1]);
            l4.dport = u16::from_be_bytes([d0, d1]);
        }
        [ty, code] => {
            l4.header_len = 8;
            l4.icmp_type = ty;
            l4.icmp_code = code;
        }
        _ => {}
    }
    if usize::from(l4.header_len) > decl && !first_fragment {
        return Err(too_short);
    }
    Ok(l4)
}

#[inline]
fn ipv4<const WHOLE: bool>(
    d: &[u8],
    off: usize,
    pkt: &RawPacket<'_>,
    out: &mut PacketRecord,
) -> Result<(), SkipReason> {
    let h = array::<20>(d, off)?;
    if h[0] >> 4 != 4 {
        return Err(SkipReason::Malformed);
    }
    let ihl = usize::from(h[0] & 0x0F) * 4;
    if ihl < 20 {
        return Err(SkipReason::Malformed);
    }
    if u16::from_be_bytes([h[6], h[7]]) & 0x1FFF != 0 || (WHOLE && h[6] & 0x20 != 0) {
        return Err(SkipReason::Fragment);
    }
    let captured = d.len() - off; // `array` proved off + 20 <= len
    if captured < ihl {
        return Err(SkipReason::Truncated);
    }
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let from_capture = total == 0;
    let ip_len = if from_capture { captured } else { total };
    if ip_len < ihl {
        return Err(SkipReason::Malformed);
    }
    let decl = ip_len - ihl;
    let first_fragment = h[6] & 0x20 != 0; // more fragments, offset 0 (checked above)
    let l4 = transport(d, off + ihl, decl, h[9], from_capture, first_fragment)?;
    let src = [
        h[12], h[13], h[14], h[15], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let dst = [
        h[16], h[17], h[18], h[19], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    write(out, pkt, src, dst, false, h[9], decl, l4);
    Ok(())
}

#[inline]
fn ipv6<const WHOLE: bool>(
    d: &[u8],
    off: usize,
    pkt: &RawPacket<'_>,
    out: &mut PacketRecord,
) -> Result<(), SkipReason> {
    let h = array::<40>(d, off)?;
    if h[0] >> 4 != 6 {
        return Err(SkipReason::Malformed);
    }
    let mut p = off + 40;
    let captured = d.len() - p; // `array` proved off + 40 <= len
    let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
    // 0: jumbogram or TSO; fall back to the captured bytes.
    let from_capture = plen == 0;
    let decl_total = if from_capture { captured } else { plen };
    let mut first_fragment = false;
    let end = p + decl_total;
    let too_short = if from_capture {
        SkipReason::Truncated
    } else {
        SkipReason::Malformed
    };
    let mut nh = h[6];
    loop {
        let len = match nh {
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6:
            // length in 8-byte units, not counting the first 8.
            0 | 43 | 60 | 135 | 139 | 140 => {
                if end - p < 8 {
                    return Err(too_short);
                }
                (usize::from(byte(d, p + 1)?) + 1) * 8
            }
            44 => {
                if end - p < 8 {
                    return Err(too_short);
                }
                let frag = be16(d, p + 2)?;
                if frag >> 3 != 0 || (WHOLE && frag & 1 != 0) {
                    return Err(SkipReason::Fragment);
                }
                first_fragment = frag & 1 != 0;
                8
            }
            // AH: length in 4-byte units, not counting the first 8 bytes.
            51 => {
                if end - p < 8 {
                    return Err(too_short);
                }
                (usize::from(byte(d, p + 1)?) + 2) * 4
            }
            _ => break,
        };
        if end - p < len {
            return Err(too_short);
        }
        nh = byte(d, p)?;
        p += len;
    }
    let decl = end - p;
    let l4 = transport(d, p, decl, nh, from_capture, first_fragment)?;
    let src: [u8; 16] = *array::<16>(h, 8)?;
    let dst: [u8; 16] = *array::<16>(h, 24)?;
    write(out, pkt, src, dst, true, nh, decl, l4);
    Ok(())
}

/// The fragment `pkt` is (after [`decode_whole`] said `Err(Fragment)`):
/// its datagram's identity, where its data goes, and the data that falls in
/// the datagram's first [`HEAD`] bytes. `Malformed`
/// when it is no fragment or its lengths cannot hold its headers.
pub fn fragment_of(pkt: &RawPacket<'_>, out: &mut Fragment) -> Result<(), SkipReason> {
    let d = pkt.data;
    let (net, off) = locate(pkt)?;
    let (src, dst, v6, proto, id, field, data, len) = match net {
        Net::V4 => {
            let h = array::<20>(d, off)?;
            let ihl = usize::from(h[0] & 0x0F) * 4;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            let total = if total == 0 { d.len() - off } else { total };
            if h[0] >> 4 != 4 || ihl < 20 || total < ihl {
                return Err(SkipReason::Malformed);
            }
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src[..4].copy_from_slice(&h[12..16]);
            dst[..4].copy_from_slice(&h[16..20]);
            let fo = u16::from_be_bytes([h[6], h[7]]);
            // Offset in 8-byte units and "more fragments", as IPv6 has them.
            let field = (fo & 0x1FFF) << 3 | u16::from(fo & 0x2000 != 0);
            let id = u32::from(u16::from_be_bytes([h[4], h[5]]));
            (src, dst, false, h[9], id, field, off + ihl, total - ihl)
        }
        Net::V6 => fragment_header_v6(d, off)?,
    };
    let offset = u32::from(field >> 3) * 8;
    let more = field & 1 != 0;
    if offset == 0 && !more {
        return Err(SkipReason::Malformed);
    }
    *out = Fragment {
        ts_us: pkt.ts_us,
        wire_len: pkt.orig_len,
        src,
        dst,
        v6,
        proto,
        id,
        offset,
        len: u32::try_from(len).unwrap_or(u32::MAX),
        more,
        head: [0; HEAD],
        head_len: 0,
    };
    let room = HEAD.saturating_sub(offset as usize).min(len);
    if let Some(bytes) = d.get(data..).map(|b| b.get(..room).unwrap_or(b)) {
        if let Some(head) = out.head.get_mut(..bytes.len()) {
            head.copy_from_slice(bytes);
            out.head_len = u16::try_from(bytes.len()).unwrap_or(0);
        }
    }
    Ok(())
}

/// An IPv6 fragment: addresses, the fragment header's next header, id,
/// offset field, where its data starts and how long it is.
#[allow(clippy::type_complexity)]
fn fragment_header_v6(
    d: &[u8],
    off: usize,
) -> Result<([u8; 16], [u8; 16], bool, u8, u32, u16, usize, usize), SkipReason> {
    let h = array::<40>(d, off)?;
    if h[0] >> 4 != 6 {
        return Err(SkipReason::Malformed);
    }
    let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let mut p = off + 40;
    let end = if plen == 0 { d.len() } else { p + plen };
    let mut nh = h[6];
    loop {
        if end < p + 8 {
            return Err(SkipReason::Malformed);
        }
        let len = match nh {
            0 | 43 | 60 | 135 | 139 | 140 => (usize::from(byte(d, p + 1)?) + 1) * 8,
            51 => (usize::from(byte(d, p + 1)?) + 2) * 4,
            44 => {
                let field = be16(d, p + 2)?;
                let id = be32(d, p + 4)?;
                let src: [u8; 16] = *array::<16>(h, 8)?;
                let dst: [u8; 16] = *array::<16>(h, 24)?;
                return Ok((src, dst, true, byte(d, p)?, id, field, p + 8, end - (p + 8)));
            }
            _ => return Err(SkipReason::Malformed),
        };
        nh = byte(d, p)?;
        p += len;
    }
}

#[inline]
#[allow(clippy::too_many_arguments)]
fn write(
    out: &mut PacketRecord,
    pkt: &RawPacket<'_>,
    src: [u8; 16],
    dst: [u8; 16],
    v6: bool,
    proto_num: u8,
    l4_len: usize,
    l4: L4,
) {
    // Saturates only for a first fragment that ends inside the transport header.
    let payload = l4_len.saturating_sub(usize::from(l4.header_len));
    *out = PacketRecord {
        ts_us: pkt.ts_us,
        hash: flow_hash(&src, &dst, l4.sport, l4.dport, proto_num, v6),
        src,
        dst,
        payload_len: u32::try_from(payload).unwrap_or(u32::MAX),
        wire_len: pkt.orig_len,
        sport: l4.sport,
        dport: l4.dport,
        header_len: l4.header_len,
        window: l4.window,
        proto: proto_num,
        flags: l4.flags,
        icmp_type: l4.icmp_type,
        icmp_code: l4.icmp_code,
        v6,
    };
}

const HASH_SEED: u64 = 0x243F_6A88_85A3_08D3; // digits of pi
const HASH_MUL: u64 = 0x9E37_79B9_7F4A_7C15; // 2^64 / golden ratio, odd

/// Absorbs one 64-bit word: xor, multiply by an odd constant, rotate (a
/// bijection of the word for a fixed state, so no input word is cancelled).
#[inline]
pub(crate) fn absorb(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(HASH_MUL).rotate_left(31)
}

/// Absorbs a 5-tuple, endpoints in the order given (addresses big-endian,
/// then both ports, the protocol and the family in one word), starting from
/// `seed`. Shared by the symmetric [`flow_hash`] and the flow table's
/// oriented, time-stamped flow id; finish with [`fmix64`].
#[inline]
pub(crate) fn absorb_tuple(
    seed: u64,
    first: (u128, u16),
    second: (u128, u16),
    proto: u8,
    v6: bool,
) -> u64 {
    let mut h = seed;
    h = absorb(h, (first.0 >> 64) as u64);
    h = absorb(h, first.0 as u64);
    h = absorb(h, (second.0 >> 64) as u64);
    h = absorb(h, second.0 as u64);
    absorb(
        h,
        u64::from(first.1)
            | (u64::from(second.1) << 16)
            | (u64::from(proto) << 32)
            | (u64::from(v6) << 40),
    )
}

/// The symmetric flow hash stored in [`PacketRecord::hash`].
///
/// Both endpoints `(address, port)` are put in a canonical order (the smaller
/// address as a big-endian number first, then the smaller port), so the two
/// directions of a flow hash the same. The ordered tuple, the protocol and the
/// address family are absorbed 64 bits at a time (`absorb_tuple`) and
/// finished with MurmurHash3's `fmix64` avalanche. Fixed constants, explicit
/// byte orders: the same tuple gives the same hash on every run and every
/// machine. It is not keyed, so it is not a defence against crafted
/// collisions; the flow table bounds its probing instead.
#[inline]
pub fn flow_hash(
    src: &[u8; 16],
    dst: &[u8; 16],
    sport: u16,
    dport: u16,
    proto: u8,
    v6: bool,
) -> u64 {
    let a = (u128::from_be_bytes(*src), sport);
    let b = (u128::from_be_bytes(*dst), dport);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    fmix64(absorb_tuple(HASH_SEED, lo, hi, proto, v6))
}

/// The [`pair_hash`] of the packet `pkt` (a fragment's too), or `None`
/// when it has no IP addresses to hash: what a capture is partitioned by.
pub fn pair_of(pkt: &RawPacket<'_>) -> Option<u64> {
    let mut rec = PacketRecord::default();
    match decode(pkt, &mut rec) {
        Ok(()) => Some(pair_hash(&rec.src, &rec.dst, rec.v6)),
        Err(SkipReason::Fragment) => {
            let mut f = Fragment::default();
            fragment_of(pkt, &mut f).ok()?;
            Some(pair_hash(&f.src, &f.dst, f.v6))
        }
        Err(_) => None,
    }
}

/// A symmetric hash of an address pair: what packets are sharded by
/// ([`shard_of`](crate::shard_of)), so that the fragments of a datagram,
/// which carry no ports, reach the shard of the datagram's flow.
#[inline]
pub fn pair_hash(src: &[u8; 16], dst: &[u8; 16], v6: bool) -> u64 {
    let a = u128::from_be_bytes(*src);
    let b = u128::from_be_bytes(*dst);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut h = absorb(HASH_SEED, u64::from(v6));
    for w in [lo as u64, (lo >> 64) as u64, hi as u64, (hi >> 64) as u64] {
        h = absorb(h, w);
    }
    fmix64(h)
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
#[inline]
pub(crate) fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    k ^= k >> 33;
    k = k.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    k ^= k >> 33;
    k
}
