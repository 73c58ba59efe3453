//! decode() on hand-built frames: every link type and encapsulation, the IP
//! and transport corner cases, and the flow hash.

use std::net::IpAddr;

use tapstream_ingest::capture::{RawPacket, LINKTYPE_UNKNOWN};
use tapstream_ingest::decode::{decode, flow_hash, linktype};
use tapstream_ingest::packet::{proto, tcp_flags};
use tapstream_ingest::pcapgen::Frame;
use tapstream_ingest::{PacketRecord, SkipReason};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn run_len(link_type: u32, data: &[u8], orig_len: u32) -> Result<PacketRecord, SkipReason> {
    let pkt = RawPacket {
        ts_us: 1_234_567,
        link_type,
        orig_len,
        data,
    };
    let mut out = PacketRecord::default();
    decode(&pkt, &mut out).map(|()| out)
}

fn run(link_type: u32, data: &[u8]) -> Result<PacketRecord, SkipReason> {
    run_len(link_type, data, data.len() as u32)
}

/// TCP 10.0.0.1:1234 → 10.0.0.2:80, SYN|ACK, 100 payload bytes.
fn tcp4() -> Frame {
    Frame::tcp(
        ip("10.0.0.1"),
        ip("10.0.0.2"),
        1234,
        80,
        tcp_flags::SYN | tcp_flags::ACK,
        100,
    )
}

/// UDP [2001:db8::1]:5353 → [2001:db8::2]:53, 20 payload bytes.
fn udp6() -> Frame {
    Frame::udp(ip("2001:db8::1"), ip("2001:db8::2"), 5353, 53, 20)
}

/// The IP packet inside an Ethernet frame built by `Frame` (padding included).
fn l3(f: &Frame) -> Vec<u8> {
    f.to_bytes()[14..].to_vec()
}

/// An Ethernet header with the given EtherType, then `rest`.
fn eth(ethertype: u16, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(rest);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn assert_tcp4(r: &PacketRecord) {
    assert!(!r.v6);
    assert_eq!(&r.src[..4], &[10, 0, 0, 1]);
    assert_eq!(&r.dst[..4], &[10, 0, 0, 2]);
    assert!(r.src[4..].iter().chain(&r.dst[4..]).all(|b| *b == 0));
    assert_eq!((r.sport, r.dport, r.proto), (1234, 80, proto::TCP));
    assert_eq!(r.flags, tcp_flags::SYN | tcp_flags::ACK);
    assert_eq!((r.header_len, r.payload_len, r.window), (20, 100, 8192));
}

fn assert_udp6(r: &PacketRecord) {
    assert!(r.v6);
    assert_eq!(IpAddr::from(r.src), ip("2001:db8::1"));
    assert_eq!(IpAddr::from(r.dst), ip("2001:db8::2"));
    assert_eq!((r.sport, r.dport, r.proto), (5353, 53, proto::UDP));
    assert_eq!(
        (r.header_len, r.payload_len, r.flags, r.window),
        (8, 20, 0, 0)
    );
}

#[test]
fn ethernet_ipv4_tcp_all_fields() {
    let f = tcp4().with_window(4321).with_tcp_options(12);
    let bytes = f.to_bytes();
    let r = run_len(linktype::ETHERNET, &bytes, 2000).expect("decoded");
    assert_eq!(r.ts_us, 1_234_567);
    assert_eq!(r.wire_len, 2000); // orig_len, not the captured length
    assert_eq!((r.header_len, r.window, r.payload_len), (32, 4321, 100));
    assert_eq!(
        r.hash,
        flow_hash(&r.src, &r.dst, 1234, 80, proto::TCP, false)
    );
}

#[test]
fn ethernet_ipv6_udp_and_icmp() {
    assert_udp6(&run(linktype::ETHERNET, &udp6().to_bytes()).expect("udp6"));
    let r = run(
        linktype::ETHERNET,
        &Frame::icmp(ip("1.2.3.4"), ip("5.6.7.8"), 8, 0, 56).to_bytes(),
    )
    .expect("icmp");
    assert_eq!(
        (r.proto, r.icmp_type, r.icmp_code, r.sport, r.dport),
        (proto::ICMP, 8, 0, 0, 0)
    );
    assert_eq!((r.header_len, r.payload_len), (8, 56));
    let r = run(
        linktype::ETHERNET,
        &Frame::icmp(ip("::1"), ip("::2"), 135, 0, 16).to_bytes(),
    )
    .expect("icmp6");
    assert_eq!(
        (r.proto, r.icmp_type, r.header_len, r.payload_len),
        (proto::ICMPV6, 135, 8, 16)
    );
    assert!(r.is_icmp());
}

#[test]
fn ethernet_padding_is_not_payload() {
    let f = Frame::tcp(ip("10.0.0.1"), ip("10.0.0.2"), 1, 2, tcp_flags::SYN, 0);
    let bytes = f.to_bytes();
    assert_eq!(bytes.len(), 60); // 54 bytes + 6 of padding
    let r = run(linktype::ETHERNET, &bytes).expect("decoded");
    assert_eq!((r.payload_len, r.wire_len), (0, 60));
}

#[test]
fn snap_length_cut_keeps_ip_lengths() {
    let bytes = tcp4().to_bytes();
    let r = run_len(linktype::ETHERNET, &bytes[..54], bytes.len() as u32).expect("decoded");
    assert_tcp4(&r);
}

#[test]
fn vlan_tags_any_depth() {
    let ip4 = l3(&tcp4());
    // QinQ: 802.1ad outer, 802.1Q inner.
    let qinq = eth(
        0x88A8,
        &cat(&[&[0, 10, 0x81, 0x00], &[0, 20, 0x08, 0x00], &ip4]),
    );
    assert_tcp4(&run(linktype::ETHERNET, &qinq).expect("qinq"));
    // Three tags, including the old 0x9100.
    let triple = eth(
        0x9100,
        &cat(&[
            &[0, 1, 0x88, 0xA8],
            &[0, 2, 0x81, 0x00],
            &[0, 3, 0x86, 0xDD],
            &l3(&udp6()),
        ]),
    );
    assert_udp6(&run(linktype::ETHERNET, &triple).expect("triple"));
    // A tag cut short.
    assert_eq!(
        run(linktype::ETHERNET, &eth(0x8100, &[0, 1])),
        Err(SkipReason::Truncated)
    );
}

fn mpls_label(label: u32, bottom: bool) -> [u8; 4] {
    ((label << 12) | (u32::from(bottom) << 8) | 64).to_be_bytes()
}

#[test]
fn mpls_label_stacks() {
    let two = eth(
        0x8847,
        &cat(&[
            &mpls_label(100, false),
            &mpls_label(200, true),
            &l3(&tcp4()),
        ]),
    );
    assert_tcp4(&run(linktype::ETHERNET, &two).expect("mpls v4"));
    let v6 = eth(0x8848, &cat(&[&mpls_label(7, true), &l3(&udp6())]));
    assert_udp6(&run(linktype::ETHERNET, &v6).expect("mpls v6"));
    // Pseudowire: control word, then a whole Ethernet frame.
    let pw = eth(
        0x8847,
        &cat(&[&mpls_label(9, true), &[0, 0, 0, 0], &tcp4().to_bytes()]),
    );
    assert_tcp4(&run(linktype::ETHERNET, &pw).expect("pseudowire"));
    // Payload neither IP nor a control word.
    let other = eth(0x8847, &cat(&[&mpls_label(9, true), &[0x55; 40]]));
    assert_eq!(run(linktype::ETHERNET, &other), Err(SkipReason::NonIp));
    // No bottom of stack before the bytes end.
    let endless = eth(
        0x8847,
        &cat(&[&mpls_label(1, false), &mpls_label(2, false)]),
    );
    assert_eq!(
        run(linktype::ETHERNET, &endless),
        Err(SkipReason::Truncated)
    );
}

fn pppoe(ppp_proto: u16, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![0x11, 0x00, 0x12, 0x34];
    v.extend_from_slice(&((rest.len() + 2) as u16).to_be_bytes());
    v.extend_from_slice(&ppp_proto.to_be_bytes());
    v.extend_from_slice(rest);
    eth(0x8864, &v)
}

#[test]
fn pppoe_sessions() {
    assert_tcp4(&run(linktype::ETHERNET, &pppoe(0x0021, &l3(&tcp4()))).expect("v4"));
    assert_udp6(&run(linktype::ETHERNET, &pppoe(0x0057, &l3(&udp6()))).expect("v6"));
    assert_eq!(
        run(linktype::ETHERNET, &pppoe(0xC021, &[1, 2, 3, 4])),
        Err(SkipReason::NonIp)
    ); // LCP
       // Discovery stage is not a session.
    assert_eq!(
        run(linktype::ETHERNET, &eth(0x8863, &[0x11, 9, 0, 0, 0, 0])),
        Err(SkipReason::NonIp)
    );
}

#[test]
fn non_ip_ethernet() {
    assert_eq!(
        run(linktype::ETHERNET, &eth(0x0806, &[0; 28])),
        Err(SkipReason::NonIp)
    ); // ARP
    assert_eq!(
        run(linktype::ETHERNET, &eth(0x88CC, &[0; 30])),
        Err(SkipReason::NonIp)
    ); // LLDP
       // STP: 802.3 length, LLC 42 42 03.
    assert_eq!(
        run(linktype::ETHERNET, &eth(38, &[0x42, 0x42, 0x03, 0, 0, 0])),
        Err(SkipReason::NonIp)
    );
    // Encrypted MACsec.
    assert_eq!(
        run(linktype::ETHERNET, &eth(0x88E5, &[0x2C, 0, 0, 0, 0, 1])),
        Err(SkipReason::NonIp)
    );
    assert_eq!(
        run(linktype::ETHERNET, &[0u8; 13]),
        Err(SkipReason::Truncated)
    );
    assert_eq!(run(linktype::ETHERNET, &[]), Err(SkipReason::Truncated));
}

#[test]
fn llc_snap_and_other_ethernet_tags() {
    let ip4 = l3(&tcp4());
    let snap = eth(
        (8 + ip4.len()) as u16,
        &cat(&[&[0xAA, 0xAA, 0x03, 0, 0, 0, 0x08, 0x00], &ip4]),
    );
    assert_tcp4(&run(linktype::ETHERNET, &snap).expect("snap"));
    let vntag = eth(0x8926, &cat(&[&[0, 0, 0, 0, 0x08, 0x00], &ip4]));
    assert_tcp4(&run(linktype::ETHERNET, &vntag).expect("vntag"));
    let etag = eth(0x893F, &cat(&[&[0x10, 0, 0, 0xd8, 0, 0, 0x08, 0x00], &ip4]));
    assert_tcp4(&run(linktype::ETHERNET, &etag).expect("etag"));
    let inner_mac = [0u8; 12];
    let fabricpath = eth(
        0x8903,
        &cat(&[&[0x40, 0x20], &inner_mac, &[0x08, 0x00], &ip4]),
    );
    assert_tcp4(&run(linktype::ETHERNET, &fabricpath).expect("fabricpath"));
    let pbb = eth(
        0x88E7,
        &cat(&[&[0, 0, 0, 1], &inner_mac, &[0x08, 0x00], &ip4]),
    );
    assert_tcp4(&run(linktype::ETHERNET, &pbb).expect("pbb"));
    let macsec = eth(
        0x88E5,
        &cat(&[
            &[0x20, 0, 0, 0, 0, 1],
            &[0; 8],
            &[0x08, 0x00],
            &ip4,
            &[0; 16],
        ]),
    );
    assert_tcp4(&run(linktype::ETHERNET, &macsec).expect("macsec, integrity only"));
    let nsh = eth(0x894F, &cat(&[&[0x0F, 0xC6, 0x01, 0x01], &[0; 20], &ip4]));
    assert_tcp4(&run(linktype::ETHERNET, &nsh).expect("nsh"));
}

#[test]
fn linux_cooked_v1_and_v2() {
    let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
    sll.extend(l3(&tcp4()));
    assert_tcp4(&run(linktype::LINUX_SLL, &sll).expect("sll"));
    let mut netlink = sll.clone();
    netlink[2..4].copy_from_slice(&824u16.to_be_bytes());
    assert_eq!(run(linktype::LINUX_SLL, &netlink), Err(SkipReason::NonIp));
    let mut sll2 = vec![
        0x86, 0xDD, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
    ];
    sll2.extend(l3(&udp6()));
    assert_udp6(&run(linktype::LINUX_SLL2, &sll2).expect("sll2"));
    // VLAN inside SLL2.
    let mut tagged = vec![
        0x81, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
    ];
    tagged.extend([0, 5, 0x08, 0x00]);
    tagged.extend(l3(&tcp4()));
    assert_tcp4(&run(linktype::LINUX_SLL2, &tagged).expect("sll2 vlan"));
    assert_eq!(
        run(linktype::LINUX_SLL2, &sll2[..19]),
        Err(SkipReason::Truncated)
    );
}

#[test]
fn raw_ip_link_types() {
    for lt in [
        linktype::RAW,
        linktype::RAW_12,
        linktype::RAW_14,
        linktype::IPV4,
    ] {
        assert_tcp4(&run(lt, &l3(&tcp4())).expect("raw v4"));
    }
    for lt in [
        linktype::RAW,
        linktype::RAW_12,
        linktype::RAW_14,
        linktype::IPV6,
    ] {
        assert_udp6(&run(lt, &l3(&udp6())).expect("raw v6"));
    }
    assert_eq!(run(linktype::RAW, &[0x50; 40]), Err(SkipReason::Malformed));
    assert_eq!(run(linktype::RAW, &[]), Err(SkipReason::Truncated));
    // The link type says IPv4: an IPv6 header there is malformed.
    assert_eq!(
        run(linktype::IPV4, &l3(&udp6())),
        Err(SkipReason::Malformed)
    );
}

#[test]
fn null_loopback_both_byte_orders() {
    let v4 = l3(&tcp4());
    assert_tcp4(&run(linktype::NULL, &cat(&[&2u32.to_le_bytes(), &v4])).expect("null le"));
    assert_tcp4(&run(linktype::NULL, &cat(&[&2u32.to_be_bytes(), &v4])).expect("null be"));
    for af in [24u32, 28, 30] {
        assert_udp6(
            &run(linktype::NULL, &cat(&[&af.to_le_bytes(), &l3(&udp6())])).expect("null v6 le"),
        );
        assert_udp6(
            &run(linktype::NULL, &cat(&[&af.to_be_bytes(), &l3(&udp6())])).expect("null v6 be"),
        );
    }
    assert_eq!(
        run(linktype::NULL, &cat(&[&7u32.to_le_bytes(), &v4])),
        Err(SkipReason::NonIp)
    );
    assert_tcp4(&run(linktype::LOOP, &cat(&[&2u32.to_be_bytes(), &v4])).expect("loop"));
    // Cisco HDLC framing under a null link type.
    assert_tcp4(&run(linktype::NULL, &cat(&[&[0x0F, 0x00, 0x08, 0x00], &v4])).expect("null chdlc"));
    assert_eq!(run(linktype::NULL, &[2, 0]), Err(SkipReason::Truncated));
}

#[test]
fn ppp_and_cisco_hdlc() {
    let v4 = l3(&tcp4());
    assert_tcp4(&run(linktype::PPP, &cat(&[&[0xFF, 0x03, 0x00, 0x21], &v4])).expect("ppp ff03"));
    assert_tcp4(&run(linktype::PPP, &cat(&[&[0x00, 0x21], &v4])).expect("ppp bare"));
    assert_tcp4(
        &run(linktype::PPP_HDLC, &cat(&[&[0xFF, 0x03, 0x21], &v4])).expect("ppp compressed"),
    );
    assert_udp6(
        &run(
            linktype::PPP,
            &cat(&[&[0xFF, 0x03, 0x00, 0x57], &l3(&udp6())]),
        )
        .expect("ppp v6"),
    );
    assert_tcp4(
        &run(
            linktype::PPP_WITH_DIR,
            &cat(&[&[1, 0xFF, 0x03, 0x00, 0x21], &v4]),
        )
        .expect("ppp dir"),
    );
    assert_eq!(
        run(linktype::PPP, &[0xFF, 0x03, 0xC0, 0x21, 1, 1, 0, 4]),
        Err(SkipReason::NonIp)
    );
    assert_tcp4(&run(linktype::C_HDLC, &cat(&[&[0x0F, 0x00, 0x08, 0x00], &v4])).expect("chdlc"));
    assert_eq!(
        run(linktype::C_HDLC, &[0x8F, 0x00, 0x80, 0x35, 0, 0]),
        Err(SkipReason::NonIp)
    ); // SLARP
}

#[test]
fn other_link_types() {
    let v4 = l3(&tcp4());
    // Frame Relay: RFC 2427 NLPID and Cisco encapsulation.
    assert_tcp4(&run(linktype::FRELAY, &cat(&[&[0x18, 0x41, 0x03, 0xCC], &v4])).expect("fr nlpid"));
    assert_tcp4(&run(linktype::FRELAY, &cat(&[&[0x18, 0x41, 0x08, 0x00], &v4])).expect("fr cisco"));
    // NFLOG: header, a prefix TLV, then the payload TLV (little-endian host).
    let mut nflog = vec![2, 0, 0, 0];
    nflog.extend([8, 0, 10, 0, b'a', b'b', b'c', 0]);
    nflog.extend(((4 + v4.len()) as u16).to_le_bytes());
    nflog.extend(9u16.to_le_bytes());
    nflog.extend(&v4);
    assert_tcp4(&run(linktype::NFLOG, &nflog).expect("nflog"));
    assert_eq!(run(linktype::NFLOG, &nflog[..12]), Err(SkipReason::NonIp));
    // IPoIB: 40 bytes of addresses, EtherType, reserved.
    let ipoib = cat(&[&[0u8; 40], &[0x08, 0x00, 0, 0], &v4]);
    assert_tcp4(&run(linktype::IPOIB, &ipoib).expect("ipoib"));
    // IPNET: 24-byte header.
    assert_tcp4(&run(linktype::IPNET, &cat(&[&[1, 2], &[0u8; 22], &v4])).expect("ipnet"));
    // ATM LLC/SNAP.
    let snap = cat(&[&[0xAA, 0xAA, 0x03, 0, 0, 0, 0x08, 0x00], &v4]);
    assert_tcp4(&run(linktype::ATM_RFC1483, &snap).expect("atm"));
    // Linux ARCNET, RFC 1201 and RFC 1051.
    assert_tcp4(
        &run(
            linktype::ARCNET_LINUX,
            &cat(&[&[1, 2, 0, 0, 0xD4, 0, 0, 1], &v4]),
        )
        .expect("arcnet 1201"),
    );
    assert_tcp4(
        &run(linktype::ARCNET_LINUX, &cat(&[&[1, 2, 0, 0, 0xF0], &v4])).expect("arcnet 1051"),
    );
    // Juniper Ethernet with 4 bytes of extensions.
    let jun = cat(&[b"MGC", &[0x80, 0, 4, 1, 2, 3, 4], &tcp4().to_bytes()]);
    assert_tcp4(&run(linktype::JUNIPER_ETHER, &jun).expect("juniper"));
    // 802.11 QoS data frame behind radiotap.
    let mut wifi = vec![0, 0, 8, 0, 0, 0, 0, 0]; // radiotap, 8 bytes
    wifi.extend([0x88, 0x01]); // QoS data, to DS
    wifi.extend([0u8; 22]); // duration, 3 addresses, sequence
    wifi.extend([0, 0]); // QoS control
    wifi.extend([0xAA, 0xAA, 0x03, 0, 0, 0, 0x08, 0x00]);
    wifi.extend(&v4);
    assert_tcp4(&run(linktype::IEEE802_11_RADIOTAP, &wifi).expect("radiotap"));
    assert_tcp4(&run(linktype::IEEE802_11, &wifi[8..]).expect("802.11"));
    let mut beacon = wifi.clone();
    beacon[8] = 0x80;
    assert_eq!(
        run(linktype::IEEE802_11_RADIOTAP, &beacon),
        Err(SkipReason::NonIp)
    );
    let mut protected = wifi.clone();
    protected[9] |= 0x40;
    assert_eq!(
        run(linktype::IEEE802_11_RADIOTAP, &protected),
        Err(SkipReason::NonIp)
    );
    // PKTAP: header length, inner DLT, then that link type.
    let mut pktap = vec![0u8; 108];
    pktap[0..4].copy_from_slice(&108u32.to_le_bytes());
    pktap[4..8].copy_from_slice(&1u32.to_le_bytes());
    pktap.extend(tcp4().to_bytes());
    assert_tcp4(&run(linktype::PKTAP, &pktap).expect("pktap"));
    pktap[0..4].copy_from_slice(&100_000u32.to_le_bytes());
    assert_eq!(run(linktype::PKTAP, &pktap), Err(SkipReason::Truncated));
}

#[test]
fn switch_tag_link_types() {
    let e = tcp4().to_bytes();
    let after_macs = |tag: &[u8]| cat(&[&e[..12], tag, &e[12..]]);
    assert_tcp4(&run(linktype::DSA_TAG_BRCM, &after_macs(&[0x20, 0, 0, 0x80])).expect("brcm"));
    assert_tcp4(&run(linktype::DSA_TAG_DSA, &after_macs(&[0xc0, 0x0a, 0, 0])).expect("dsa"));
    let edsa = after_macs(&[0xda, 0xda, 0, 0, 0xc0, 0, 0, 0]);
    assert_tcp4(&run(linktype::DSA_TAG_EDSA, &edsa).expect("edsa"));
    let prepend = cat(&[&[0, 0, 0x20, 0x05], &e]);
    assert_tcp4(&run(linktype::DSA_TAG_BRCM_PREPEND, &prepend).expect("brcm prepend"));
}

#[test]
fn unsupported_link_types() {
    let bytes = tcp4().to_bytes();
    for lt in [147, 195, 283, 65535, LINKTYPE_UNKNOWN] {
        assert_eq!(
            run(lt, &bytes),
            Err(SkipReason::UnsupportedLinkType),
            "{lt}"
        );
    }
}

/// IPv6 header + extension headers (`(next_header_of_this, bytes)`), then `l4`.
fn ipv6_with(first_nh: u8, exts: &[&[u8]], l4_proto_last: u8, l4: &[u8]) -> Vec<u8> {
    let ext_len: usize = exts.iter().map(|e| e.len()).sum();
    let mut v = vec![0x60, 0, 0, 0];
    v.extend(((ext_len + l4.len()) as u16).to_be_bytes());
    v.push(if exts.is_empty() {
        l4_proto_last
    } else {
        first_nh
    });
    v.push(64);
    if let IpAddr::V6(a) = ip("2001:db8::1") {
        v.extend(a.octets());
    }
    if let IpAddr::V6(a) = ip("2001:db8::2") {
        v.extend(a.octets());
    }
    for e in exts {
        v.extend(*e);
    }
    v.extend(l4);
    v
}

fn tcp_header(sport: u16, dport: u16, flags: u8, payload: usize) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend(sport.to_be_bytes());
    t.extend(dport.to_be_bytes());
    t.extend([0; 8]);
    t.extend([0x50, flags, 0x10, 0x00, 0, 0, 0, 0]);
    t.extend(vec![0; payload]);
    t
}

#[test]
fn ipv6_extension_headers() {
    let tcp = tcp_header(1234, 80, tcp_flags::SYN, 30);
    // Hop-by-hop (8 bytes, next = fragment), fragment (offset 0, M=1, next = TCP).
    let hbh = [44u8, 0, 1, 4, 0, 0, 0, 0];
    let frag_first = [6u8, 0, 0x00, 0x01, 0, 0, 0, 1];
    let pkt = ipv6_with(0, &[&hbh, &frag_first], 6, &tcp);
    let r = run(linktype::RAW, &pkt).expect("hbh + first fragment + tcp");
    assert!(r.v6);
    assert_eq!(
        (r.sport, r.dport, r.proto, r.flags),
        (1234, 80, proto::TCP, tcp_flags::SYN)
    );
    assert_eq!((r.header_len, r.payload_len), (20, 30)); // extension headers are not payload
                                                         // Same with offset 8 × 8: a non-first fragment.
    let frag_later = [6u8, 0, 0x00, 0x40, 0, 0, 0, 1];
    let pkt = ipv6_with(0, &[&hbh, &frag_later], 6, &tcp);
    assert_eq!(run(linktype::RAW, &pkt), Err(SkipReason::Fragment));
    // Destination options (16 bytes), routing (8), AH (12 + 4 = (1+2)*4), mobility-free UDP.
    let dst = [43u8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let rt = [51u8, 0, 0, 0, 0, 0, 0, 0];
    let ah = [17u8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let udp = [0x13, 0x88, 0x00, 0x35, 0, 12, 0, 0, 1, 2, 3, 4];
    let r = run(linktype::RAW, &ipv6_with(60, &[&dst, &rt, &ah], 17, &udp)).expect("dst+rt+ah+udp");
    assert_eq!(
        (r.sport, r.dport, r.proto, r.payload_len),
        (5000, 53, proto::UDP, 4)
    );
    // No next header: a flow of protocol 59 without ports.
    let r = run(linktype::RAW, &ipv6_with(59, &[], 59, &[0; 4])).expect("no next header");
    assert_eq!(
        (r.proto, r.sport, r.header_len, r.payload_len),
        (59, 0, 0, 4)
    );
    // An extension header longer than the payload length: malformed.
    let mut bad = ipv6_with(0, &[&hbh, &frag_first], 6, &tcp);
    bad[4..6].copy_from_slice(&10u16.to_be_bytes());
    assert_eq!(run(linktype::RAW, &bad), Err(SkipReason::Malformed));
    // Cut inside the extension headers: truncated.
    let full = ipv6_with(0, &[&hbh, &frag_first], 6, &tcp);
    assert_eq!(run(linktype::RAW, &full[..41]), Err(SkipReason::Truncated));
    assert_eq!(run(linktype::RAW, &full[..50]), Err(SkipReason::Truncated));
}

/// Sets IPv4 flags/fragment offset (byte offset, multiple of 8) in an Ethernet frame.
fn set_frag(frame: &mut [u8], mf: bool, offset: u16) {
    let v = (u16::from(mf) << 13) | (offset / 8);
    frame[14 + 6..14 + 8].copy_from_slice(&v.to_be_bytes());
}

#[test]
fn ipv4_fragments() {
    let mut first = tcp4().to_bytes();
    set_frag(&mut first, true, 0);
    assert_tcp4(&run(linktype::ETHERNET, &first).expect("first fragment decoded"));
    let mut later = tcp4().to_bytes();
    set_frag(&mut later, false, 1480);
    assert_eq!(run(linktype::ETHERNET, &later), Err(SkipReason::Fragment));
    let mut middle = tcp4().to_bytes();
    set_frag(&mut middle, true, 8);
    assert_eq!(run(linktype::ETHERNET, &middle), Err(SkipReason::Fragment));
}

#[test]
fn first_fragment_ending_inside_the_tcp_header() {
    // A SYN whose 40-byte TCP header is split after 24 bytes (zeek's
    // fragmented-syn): ports, flags and window are there.
    let f = tcp4().with_tcp_options(20);
    let mut b = f.to_bytes();
    b.truncate(14 + 20 + 24);
    b[14 + 2..14 + 4].copy_from_slice(&44u16.to_be_bytes());
    set_frag(&mut b, true, 0);
    let r = run(linktype::ETHERNET, &b).expect("decoded");
    assert_eq!(
        (r.sport, r.dport, r.header_len, r.payload_len),
        (1234, 80, 40, 0)
    );
    // A tiny first fragment (8 bytes of TCP: no flags) cannot be classified.
    b.truncate(14 + 20 + 8);
    b[14 + 2..14 + 4].copy_from_slice(&28u16.to_be_bytes());
    assert_eq!(run(linktype::ETHERNET, &b), Err(SkipReason::Fragment));
    // The same lengths without "more fragments" are malformed.
    set_frag(&mut b, false, 0);
    assert_eq!(run(linktype::ETHERNET, &b), Err(SkipReason::Malformed));
}

#[test]
fn truncated_and_malformed_headers() {
    let full = tcp4().to_bytes();
    // Captured bytes stop inside the TCP header (window missing).
    assert_eq!(
        run_len(linktype::ETHERNET, &full[..14 + 20 + 14], 200),
        Err(SkipReason::Truncated)
    );
    // Inside the IPv4 header.
    assert_eq!(
        run(linktype::ETHERNET, &full[..14 + 19]),
        Err(SkipReason::Truncated)
    );
    // Bad IHL.
    let mut b = full.clone();
    b[14] = 0x44;
    assert_eq!(run(linktype::ETHERNET, &b), Err(SkipReason::Malformed));
    // IHL says options but the capture stops inside them.
    let mut b = full[..14 + 24].to_vec();
    b[14] = 0x4F;
    assert_eq!(run(linktype::ETHERNET, &b), Err(SkipReason::Truncated));
    // Version 5 behind an IPv4 EtherType.
    let mut b = full.clone();
    b[14] = 0x55;
    assert_eq!(run(linktype::ETHERNET, &b), Err(SkipReason::Malformed));
    // Total length smaller than the IP header, and than IP + TCP headers.
    for total in [19u16, 30] {
        let mut b = full.clone();
        b[16..18].copy_from_slice(&total.to_be_bytes());
        assert_eq!(
            run(linktype::ETHERNET, &b),
            Err(SkipReason::Malformed),
            "total {total}"
        );
    }
    // TCP data offset below 5, and above what the IP length holds.
    let mut b = full.clone();
    b[14 + 20 + 12] = 0x40;
    assert_eq!(run(linktype::ETHERNET, &b), Err(SkipReason::Malformed));
    let mut b = Frame::tcp(ip("10.0.0.1"), ip("10.0.0.2"), 1, 2, 0, 30).to_bytes();
    b[14 + 20 + 12] = 0xF0; // 60-byte header in a 50-byte segment
    assert_eq!(run(linktype::ETHERNET, &b), Err(SkipReason::Malformed));
    b[14 + 20 + 12] = 0xC0; // 48 bytes: fits
    assert_eq!(
        run(linktype::ETHERNET, &b).map(|r| (r.header_len, r.payload_len)),
        Ok((48, 2))
    );
    // UDP length field is not consulted; the IP length is.
    let u = Frame::udp(ip("1.1.1.1"), ip("2.2.2.2"), 1, 2, 10).to_bytes();
    let mut b = u.clone();
    b[16..18].copy_from_slice(&26u16.to_be_bytes()); // 20 + 6: UDP header does not fit
    assert_eq!(run(linktype::ETHERNET, &b), Err(SkipReason::Malformed));
}

#[test]
fn tso_zero_total_length_uses_captured_bytes() {
    let mut b = tcp4().to_bytes();
    b[16..18].copy_from_slice(&0u16.to_be_bytes());
    let r = run_len(linktype::ETHERNET, &b, 9000).expect("decoded");
    assert_eq!((r.header_len, r.payload_len, r.wire_len), (20, 100, 9000));
    // IPv6 payload length 0 (jumbogram or TSO).
    let mut b = udp6().to_bytes();
    b[18..20].copy_from_slice(&0u16.to_be_bytes());
    let r = run(linktype::ETHERNET, &b).expect("decoded");
    assert_eq!(r.payload_len, 20);
    // Lengths from the capture that are too short are a cut capture, not a lie.
    let mut b = tcp4().to_bytes();
    b[16..18].copy_from_slice(&0u16.to_be_bytes());
    assert_eq!(
        run(linktype::ETHERNET, &b[..14 + 20 + 10]),
        Err(SkipReason::Truncated)
    );
}

#[test]
fn tunnels_are_not_decapsulated() {
    // GRE (47) carrying an inner packet: the outer header forms the flow.
    let inner = l3(&tcp4());
    let mut outer = vec![
        0x45, 0, 0, 0, 0, 0, 0, 0, 64, 47, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
    ];
    let total = (20 + 4 + inner.len()) as u16;
    outer[2..4].copy_from_slice(&total.to_be_bytes());
    outer.extend([0, 0, 0x08, 0x00]);
    outer.extend(&inner);
    let r = run(linktype::RAW, &outer).expect("gre");
    assert_eq!(&r.src[..4], &[192, 0, 2, 1]);
    assert_eq!((r.proto, r.sport, r.dport, r.header_len), (47, 0, 0, 0));
    assert_eq!(r.payload_len as usize, 4 + inner.len());
}

#[test]
fn output_untouched_on_skip() {
    let mut out = PacketRecord {
        sport: 77,
        ..PacketRecord::default()
    };
    let pkt = RawPacket {
        ts_us: 1,
        link_type: linktype::ETHERNET,
        orig_len: 60,
        data: &eth(0x0806, &[0; 28]),
    };
    assert_eq!(decode(&pkt, &mut out), Err(SkipReason::NonIp));
    assert_eq!(out.sport, 77);
}

#[test]
fn hash_is_symmetric_and_distinguishes_tuples() {
    let a = tcp4();
    let b = Frame::tcp(ip("10.0.0.2"), ip("10.0.0.1"), 80, 1234, tcp_flags::ACK, 0);
    let ra = run(linktype::ETHERNET, &a.to_bytes()).expect("a");
    let rb = run(linktype::ETHERNET, &b.to_bytes()).expect("b");
    assert_eq!(ra.hash, rb.hash);
    let s = [1u8; 16];
    let d = [2u8; 16];
    let h = flow_hash(&s, &d, 1, 2, 6, true);
    assert_eq!(h, flow_hash(&d, &s, 2, 1, 6, true));
    assert_ne!(h, flow_hash(&s, &d, 2, 1, 6, true)); // ports swapped alone
    assert_ne!(h, flow_hash(&s, &d, 1, 2, 17, true));
    assert_ne!(h, flow_hash(&s, &d, 1, 2, 6, false));
    assert_ne!(h, flow_hash(&s, &d, 1, 3, 6, true));
    // Same address both sides: ports still order the endpoints.
    assert_eq!(
        flow_hash(&s, &s, 5, 9, 6, true),
        flow_hash(&s, &s, 9, 5, 6, true)
    );
}

#[test]
fn hash_is_pinned_across_machines_and_releases() {
    // Changing this value changes shard assignment of every deployment:
    // do it on purpose only.
    let mut s = [0u8; 16];
    let mut d = [0u8; 16];
    s[..4].copy_from_slice(&[10, 0, 0, 1]);
    d[..4].copy_from_slice(&[10, 0, 0, 2]);
    assert_eq!(flow_hash(&s, &d, 1234, 80, 6, false), 0xb2a6_960a_c519_f241);
}

/// xorshift64*: deterministic test inputs.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[test]
fn hash_avalanche() {
    // Flipping any single input bit flips each output bit with probability
    // close to 1/2.
    let mut st = 0x1234_5678_9abc_def0u64;
    let trials = 200;
    let mut flips = [[0u32; 64]; 16 * 8 + 16];
    for _ in 0..trials {
        let mut s = [0u8; 16];
        s[..8].copy_from_slice(&next(&mut st).to_le_bytes());
        s[8..].copy_from_slice(&next(&mut st).to_le_bytes());
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&next(&mut st).to_le_bytes());
        let sp = next(&mut st) as u16;
        let dp = next(&mut st) as u16;
        let base = flow_hash(&s, &d, sp, dp, 6, true);
        for bit in 0..128 {
            let mut s2 = s;
            s2[bit / 8] ^= 1 << (bit % 8);
            let x = base ^ flow_hash(&s2, &d, sp, dp, 6, true);
            for (o, f) in flips[bit].iter_mut().enumerate() {
                *f += ((x >> o) & 1) as u32;
            }
        }
        for bit in 0..16 {
            let x = base ^ flow_hash(&s, &d, sp ^ (1 << bit), dp, 6, true);
            for (o, f) in flips[128 + bit].iter_mut().enumerate() {
                *f += ((x >> o) & 1) as u32;
            }
        }
    }
    for (i, row) in flips.iter().enumerate() {
        for (o, &n) in row.iter().enumerate() {
            let p = f64::from(n) / f64::from(trials);
            assert!(
                (0.3..=0.7).contains(&p),
                "input bit {i} → output bit {o}: {p}"
            );
        }
    }
}

/// `linktype::ALL` is exactly the set `decode` handles: below 1024 (past
/// every assigned DLT it knows), a link type is refused as unsupported if
/// and only if it is not in the list. PPI and PKTAP name an inner link type
/// in their header, so they are refused only when that one is unknown.
#[test]
fn linktype_all_is_what_decode_handles() {
    let mut listed = linktype::ALL.to_vec();
    listed.sort_unstable();
    listed.dedup();
    assert_eq!(
        listed.len(),
        linktype::ALL.len(),
        "a link type listed twice"
    );
    let frames = [
        vec![0u8; 128],
        vec![0xffu8; 128],
        Frame::tcp(ip("198.18.0.1"), ip("198.18.0.2"), 1, 2, tcp_flags::SYN, 0).to_bytes(),
    ];
    let wrappers = [linktype::PPI, linktype::PKTAP];
    for lt in 0..1024u32 {
        for (i, f) in frames.iter().enumerate() {
            if wrappers.contains(&lt) && i > 0 {
                continue; // the inner link type comes from the frame
            }
            let unsupported = run(lt, f) == Err(SkipReason::UnsupportedLinkType);
            assert_eq!(
                unsupported,
                !linktype::ALL.contains(&lt),
                "link type {lt}, frame {i}"
            );
        }
    }
    // A wrapper around an unknown link type is refused; around Ethernet, not.
    let mut ppi = vec![0u8, 0, 8, 0, 147, 0, 0, 0];
    ppi.extend(&frames[2]);
    assert_eq!(
        run(linktype::PPI, &ppi),
        Err(SkipReason::UnsupportedLinkType)
    );
    ppi[4] = 1;
    assert!(run(linktype::PPI, &ppi).is_ok());
    assert_eq!(
        run(LINKTYPE_UNKNOWN, &frames[2]),
        Err(SkipReason::UnsupportedLinkType)
    );
}
