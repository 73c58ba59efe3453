use std::net::IpAddr;

use super::*;
use crate::decode::{decode_whole, fragment_of};
use crate::packet::tcp_flags;
use crate::pcapgen::{fragments, Frame};
use crate::skip::SkipReason;

const T0: i64 = 1_700_000_000_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn raw(data: &[u8], ts_us: i64) -> RawPacket<'_> {
    RawPacket {
        ts_us,
        link_type: linktype::ETHERNET,
        orig_len: data.len() as u32,
        data,
    }
}

/// The record of a whole frame.
fn whole(frame: &[u8]) -> PacketRecord {
    let mut rec = PacketRecord::default();
    decode_whole(&raw(frame, T0), &mut rec).unwrap();
    rec
}

/// Feeds `frames` (fragments, 1 ms apart) to `d`; the records completed.
fn feed(d: &mut Defrag, frames: &[Vec<u8>]) -> Vec<PacketRecord> {
    let mut done = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let ts = T0 + i as i64 * 1_000;
        let mut rec = PacketRecord::default();
        assert_eq!(
            decode_whole(&raw(f, ts), &mut rec),
            Err(SkipReason::Fragment)
        );
        let mut frag = Fragment::default();
        fragment_of(&raw(f, ts), &mut frag).unwrap();
        if d.add(&frag, i as u64, &mut rec).is_some() {
            done.push(rec);
        }
    }
    done
}

/// The same packet as far as flows and features go (the wire length and
/// time are the datagram's).
fn same_packet(a: &PacketRecord, b: &PacketRecord) {
    assert_eq!(
        (a.hash, a.src, a.dst, a.sport, a.dport, a.proto, a.v6),
        (b.hash, b.src, b.dst, b.sport, b.dport, b.proto, b.v6)
    );
    assert_eq!(
        (a.flags, a.window, a.header_len, a.payload_len),
        (b.flags, b.window, b.header_len, b.payload_len)
    );
}

fn syn() -> Vec<u8> {
    Frame::tcp(
        ip("198.18.0.1"),
        ip("198.18.0.2"),
        40_000,
        22,
        tcp_flags::SYN,
        100,
    )
    .with_window(1234)
    .to_bytes()
}

#[test]
fn a_datagram_in_any_order_is_the_whole_packet() {
    let frame = syn(); // 20 + 100 bytes of IP payload
    let expected = whole(&frame);
    let pieces = [(0, 8), (8, 56), (64, 56)]; // flags and window in the second
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]] {
        let ordered: Vec<(usize, usize)> = order.iter().map(|&i| pieces[i]).collect();
        let frames = fragments(&frame, 77, &ordered).unwrap();
        let mut d = Defrag::new(DefragConfig::default());
        let done = feed(&mut d, &frames);
        assert_eq!(done.len(), 1, "{order:?}");
        same_packet(&done[0], &expected);
        assert_eq!(done[0].ts_us, T0 + 2_000, "the last fragment's time");
        let wire: u32 = frames.iter().map(|f| f.len() as u32).sum();
        assert_eq!(done[0].wire_len, wire);
        let s = d.stats();
        assert_eq!(
            (s.fragments, s.datagrams, s.reassembled, s.waiting),
            (3, 1, 3, 0)
        );
        assert!(d.is_empty());
    }
}

#[test]
fn ipv6_fragments_are_reassembled_too() {
    let frame = Frame::udp(ip("2001:db8::1"), ip("2001:db8::2"), 5353, 53, 3000).to_bytes();
    let expected = whole(&frame);
    let frames = fragments(&frame, 0xDEAD_BEEF, &[(1448, 1560), (0, 1448)]).unwrap();
    let mut d = Defrag::new(DefragConfig::default());
    let done = feed(&mut d, &frames);
    assert_eq!(done.len(), 1);
    same_packet(&done[0], &expected);
    assert_eq!(done[0].payload_len, 3000);
}

#[test]
fn fragments_of_other_datagrams_do_not_mix() {
    let a = fragments(&syn(), 1, &[(0, 64), (64, 56)]).unwrap();
    let b = fragments(&syn(), 2, &[(0, 64), (64, 56)]).unwrap();
    let mut d = Defrag::new(DefragConfig::default());
    let done = feed(
        &mut d,
        &[a[0].clone(), b[1].clone(), b[0].clone(), a[1].clone()],
    );
    assert_eq!(done.len(), 2);
}

/// Bytes 8..16 of the TCP header (flags at 13) sent twice, with other flags:
/// the policy decides which the record sees.
#[test]
fn overlapping_bytes_follow_the_policy() {
    let frame = syn();
    let rst = Frame::tcp(
        ip("198.18.0.1"),
        ip("198.18.0.2"),
        40_000,
        22,
        tcp_flags::RST,
        100,
    )
    .with_window(1234)
    .to_bytes();
    let first = fragments(&frame, 9, &[(0, 16)]).unwrap();
    let later = fragments(&rst, 9, &[(8, 16), (0, 16), (24, 96), (16, 104)]).unwrap();
    // SYN at offset 0, then RST at offset 8 (starts later), then the rest.
    let starts_later = [first[0].clone(), later[0].clone(), later[2].clone()];
    // SYN at offset 0, then RST at offset 0 again, then the rest.
    let same_start = [first[0].clone(), later[1].clone(), later[3].clone()];
    for (policy, later_flags, same_flags) in [
        (Overlap::First, tcp_flags::SYN, tcp_flags::SYN),
        (Overlap::Last, tcp_flags::RST, tcp_flags::RST),
        (Overlap::Bsd, tcp_flags::SYN, tcp_flags::SYN),
        (Overlap::Linux, tcp_flags::SYN, tcp_flags::RST),
    ] {
        for (frames, flags) in [(&starts_later, later_flags), (&same_start, same_flags)] {
            let mut d = Defrag::new(DefragConfig {
                policy,
                ..DefragConfig::default()
            });
            let done = feed(&mut d, frames);
            assert_eq!(done.len(), 1, "{policy:?}");
            assert_eq!(done[0].flags, flags, "{policy:?}");
            assert_eq!(d.stats().overlaps, 1);
        }
    }
}

#[test]
fn an_incomplete_datagram_times_out_and_every_fragment_is_counted() {
    let frames = fragments(&syn(), 5, &[(0, 64)]).unwrap();
    let mut d = Defrag::new(DefragConfig::default());
    assert!(feed(&mut d, &frames).is_empty());
    assert_eq!(d.oldest_origin(), Some(0));
    d.expire(T0 + 59_000_000);
    assert_eq!(d.stats().waiting, 1);
    d.expire(T0 + 60_000_000);
    let s = d.stats();
    assert_eq!((s.timeouts, s.waiting), (1, 0));
    assert_eq!(s.fragments, s.reassembled + s.dropped() + s.waiting);
    assert_eq!(d.oldest_origin(), None);
}

/// A full table drops the datagram that waited longest for a new one.
#[test]
fn the_memcap_makes_room_by_dropping_the_oldest() {
    let mut frames = Vec::new();
    for id in 0..3 {
        frames.extend(fragments(&syn(), id, &[(0, 64)]).unwrap());
    }
    let mut d = Defrag::new(DefragConfig {
        max_datagrams: 2,
        ..DefragConfig::default()
    });
    feed(&mut d, &frames);
    let s = d.stats();
    assert_eq!((s.memcap, s.waiting), (1, 2));
    assert_eq!(
        d.oldest_origin(),
        Some(1),
        "the first datagram (origin 0) made room"
    );
    // The rest of the newest datagram still completes it.
    let rest = fragments(&syn(), 2, &[(64, 56)]).unwrap();
    let mut frag = Fragment::default();
    fragment_of(&raw(&rest[0], T0 + 10_000), &mut frag).unwrap();
    let mut rec = PacketRecord::default();
    assert!(d.add(&frag, 3, &mut rec).is_some());
    assert_eq!(d.stats().waiting, 1);
    d.finish();
    let s = d.stats();
    assert_eq!((s.timeouts, s.waiting, s.datagrams), (1, 0, 1));
    assert_eq!(s.fragments, s.reassembled + s.dropped());
}

#[test]
fn impossible_datagrams_are_invalid() {
    // Two different ends: the datagram ends at 1008, and a fragment of
    // [256, 504) claims to be the last.
    let big = Frame::udp(ip("198.18.0.1"), ip("198.18.0.2"), 1, 2, 1000).to_bytes();
    let mut frames = fragments(&big, 1, &[(0, 256), (504, 504), (256, 248)]).unwrap();
    frames[2][20] &= !0x20; // flags and offset's high byte: "more fragments" off
    let mut d = Defrag::new(DefragConfig::default());
    assert!(feed(&mut d, &frames).is_empty());
    let s = d.stats();
    assert_eq!((s.invalid, s.waiting), (3, 0), "{s:?}");
    assert_eq!(s.fragments, s.reassembled + s.dropped());
    // Past 65,535 bytes of IPv4 (ping of death).
    let mut d = Defrag::new(DefragConfig::default());
    let mut f = Fragment {
        offset: 65_528,
        len: 16,
        ..Fragment::default()
    };
    let mut rec = PacketRecord::default();
    assert!(d.add(&f, 0, &mut rec).is_none());
    f.offset = 0;
    f.more = true;
    f.len = 0;
    assert!(d.add(&f, 0, &mut rec).is_none(), "empty and not the last");
    assert_eq!(d.stats().invalid, 2);
}

#[test]
fn first_fragments_decode_as_before_without_defrag() {
    let frames = fragments(&syn(), 3, &[(0, 64), (64, 56)]).unwrap();
    let mut rec = PacketRecord::default();
    crate::decode::decode(&raw(&frames[0], T0), &mut rec).unwrap();
    assert_eq!(rec.flags, tcp_flags::SYN);
    assert_eq!(
        crate::decode::decode(&raw(&frames[1], T0), &mut rec),
        Err(SkipReason::Fragment)
    );
    let mut frag = Fragment::default();
    assert_eq!(
        fragment_of(&raw(&syn(), T0), &mut frag),
        Err(SkipReason::Malformed),
        "a whole packet is no fragment"
    );
}

/// Found by the fuzzer: a datagram stamped near the end of time still ends
/// when the input does.
#[test]
fn the_end_of_input_drops_every_datagram_whatever_its_time() {
    let mut d = Defrag::new(DefragConfig::default());
    let mut rec = PacketRecord::default();
    for ts_us in [i64::MAX - 10, i64::MIN, 0] {
        let f = Fragment {
            ts_us,
            id: ts_us as u32,
            offset: 8,
            len: 8,
            more: true,
            ..Fragment::default()
        };
        assert!(d.add(&f, 0, &mut rec).is_none());
    }
    d.finish();
    let s = d.stats();
    assert_eq!((s.fragments, s.timeouts, s.waiting), (3, 3, 0));
}
