//! Property tests: the reader and the decoder never panic and always end,
//! whatever the bytes; any buffering gives the same packets.

mod common;

use std::io::Cursor;

use common::{gzip, read_all, reader, snoop, Chunked, Item, Ng, Pcap};
use proptest::prelude::*;
use tapstream_ingest::capture::{CaptureReader, RawPacket, LINKTYPE_UNKNOWN};
use tapstream_ingest::decode::{decode, flow_hash, linktype};
use tapstream_ingest::pcapgen::Frame;
use tapstream_ingest::PacketRecord;

/// The link types `decode` knows, one it does not, and "unknown interface".
fn link_types() -> Vec<u32> {
    let mut v = linktype::ALL.to_vec();
    v.extend([147, LINKTYPE_UNKNOWN]);
    v
}

/// Checks what a successful decode promises.
fn check(r: &PacketRecord, pkt: &RawPacket<'_>) {
    assert_eq!(r.wire_len, pkt.orig_len);
    assert_eq!(r.ts_us, pkt.ts_us);
    assert_eq!(
        r.hash,
        flow_hash(&r.dst, &r.src, r.dport, r.sport, r.proto, r.v6)
    );
    if !r.v6 {
        assert!(r.src[4..].iter().chain(&r.dst[4..]).all(|b| *b == 0));
    }
    match r.proto {
        6 => assert!(r.header_len >= 20 && r.header_len <= 60 && r.header_len % 4 == 0),
        17 | 1 | 58 => assert_eq!(r.header_len, 8),
        _ => assert_eq!((r.header_len, r.sport, r.dport), (0, 0, 0)),
    }
}

fn decode_checked(link_type: u32, data: &[u8], orig_len: u32) {
    let pkt = RawPacket {
        ts_us: -5,
        link_type,
        orig_len: orig_len.max(data.len() as u32),
        data,
    };
    let mut out = PacketRecord::default();
    if decode(&pkt, &mut out).is_ok() {
        check(&out, &pkt);
    }
}

/// Valid packets under several encapsulations, as (link type, bytes).
fn templates() -> Vec<(u32, Vec<u8>)> {
    let a = "10.1.2.3".parse().expect("v4");
    let b = "10.3.2.1".parse().expect("v4");
    let c = "2001:db8::5".parse().expect("v6");
    let d = "2001:db8::6".parse().expect("v6");
    let frames = [
        Frame::tcp(a, b, 1, 2, 0x12, 40).with_tcp_options(12),
        Frame::udp(c, d, 3, 4, 10),
        Frame::icmp(a, b, 8, 0, 20),
    ];
    let mut out = Vec::new();
    for f in &frames {
        let e = f.to_bytes();
        let l3 = e[14..].to_vec();
        out.push((linktype::ETHERNET, e.clone()));
        out.push((linktype::RAW, l3.clone()));
        let mut v = e[..12].to_vec();
        v.extend([0x88, 0xA8, 0, 1, 0x81, 0, 0, 2]);
        v.extend(&e[12..]);
        out.push((linktype::ETHERNET, v));
        let mut m = e[..12].to_vec();
        m.extend([0x88, 0x47, 0, 1, 0, 64, 0, 2, 1, 64]);
        m.extend(&l3);
        out.push((linktype::ETHERNET, m));
        let mut n = 2u32.to_le_bytes().to_vec();
        n.extend(&l3);
        out.push((linktype::NULL, n));
        let mut s = vec![0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0];
        s.extend(&e[12..]);
        out.push((linktype::LINUX_SLL, s));
    }
    out
}

/// Small capture files in every container, with a few packets each.
fn files() -> Vec<Vec<u8>> {
    let t = templates();
    let mut p = Pcap::new(false, false, false, 65535, 1);
    let mut pn = Pcap::new(true, true, false, 65535, 101);
    let mut ng = Ng::new();
    ng.shb(false)
        .idb(1, 0, None, None)
        .idb(101, 0, Some(9), None);
    for (i, (lt, bytes)) in t.iter().enumerate() {
        p.rec(i as u32, 0, bytes);
        pn.rec(i as u32, 5, bytes);
        let iface = u32::from(*lt != linktype::ETHERNET);
        ng.epb(iface, i as u64, bytes.len() as u32, bytes);
        if i == 3 {
            ng.shb(true)
                .idb(1, 0, None, None)
                .spb(bytes.len() as u32, bytes);
        }
    }
    let e = &t[0].1;
    let sn = snoop(4, &[(1, 2, e), (3, 4, e)]);
    let gz = gzip(&p.buf);
    vec![p.buf, pn.buf, ng.buf, sn, gz]
}

/// Reads a file to the end (bounded) and decodes every packet.
fn read_and_decode(bytes: &[u8], buffer: usize) {
    let Ok(mut r) = CaptureReader::with_buffer_size(Box::new(Cursor::new(bytes.to_vec())), buffer)
    else {
        return;
    };
    // Every record or block takes at least 12 bytes; a gzip stream may expand,
    // so allow generously but finitely.
    let limit = bytes.len() * 1100 + 10;
    let mut n = 0usize;
    loop {
        n += 1;
        assert!(n <= limit, "reader does not terminate");
        match r.next_packet() {
            Ok(Some(p)) => decode_checked(p.link_type, p.data, p.orig_len),
            Ok(None) => break,
            Err(_) => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_arbitrary_bytes(
        lt in prop::sample::select(link_types()),
        data in prop::collection::vec(any::<u8>(), 0..160),
        orig in any::<u32>(),
    ) {
        decode_checked(lt, &data, orig);
    }

    #[test]
    fn decode_mutated_valid_packets(
        pick in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        other_link in prop::sample::select(link_types()),
        use_other in any::<bool>(),
    ) {
        let t = templates();
        let (lt, mut bytes) = t[pick.index(t.len())].clone();
        for (i, v) in &flips {
            let at = i.index(bytes.len());
            bytes[at] ^= v;
        }
        let keep = cut.index(bytes.len() + 1);
        bytes.truncate(keep.max(bytes.len() * 3 / 4));
        decode_checked(if use_other { other_link } else { lt }, &bytes, 1500);
    }

    #[test]
    fn reader_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..400), buffer in 16usize..300) {
        read_and_decode(&data, buffer);
    }

    #[test]
    fn reader_arbitrary_bytes_after_a_valid_header(
        kind in 0usize..5,
        data in prop::collection::vec(any::<u8>(), 0..400),
        buffer in 16usize..300,
    ) {
        let mut bytes = match kind {
            0 => Pcap::new(false, false, false, 65535, 1).buf,
            1 => Pcap::new(true, true, true, 100, 101).buf,
            2 => Ng::new().shb(false).idb(1, 0, Some(9), None).buf.clone(),
            3 => Ng::new().shb(true).buf.clone(),
            _ => snoop(4, &[]),
        };
        bytes.extend(&data);
        read_and_decode(&bytes, buffer);
        read_and_decode(&gzip(&bytes), buffer);
    }

    #[test]
    fn reader_valid_files_with_flipped_bytes(
        pick in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        buffer in 16usize..2000,
    ) {
        let f = files();
        let mut bytes = f[pick.index(f.len())].clone();
        for (i, v) in &flips {
            let at = i.index(bytes.len());
            bytes[at] ^= v;
        }
        bytes.truncate(cut.index(bytes.len() + 1).max(bytes.len() / 2));
        read_and_decode(&bytes, buffer);
    }

    #[test]
    fn any_buffering_gives_the_same_items(
        pick in any::<prop::sample::Index>(),
        buffer in 16usize..600,
        chunk in 1usize..200,
        cut in any::<prop::sample::Index>(),
    ) {
        let f = files();
        let mut bytes = f[pick.index(f.len())].clone();
        bytes.truncate(cut.index(bytes.len() + 1).max(bytes.len() * 2 / 3));
        let want = match reader(&bytes) {
            Ok(r) => read_all(r, bytes.len() + 2),
            Err(e) => vec![Item::Error(common::err_name(&e))],
        };
        let src = Chunked { data: bytes.clone(), pos: 0, chunk };
        let got = match CaptureReader::with_buffer_size(Box::new(src), buffer) {
            Ok(r) => read_all(r, bytes.len() + 2),
            Err(e) => vec![Item::Error(common::err_name(&e))],
        };
        prop_assert_eq!(got, want);
    }
}
