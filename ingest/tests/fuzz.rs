//! Property tests: the reader and the decoder never panic and always end,
//! whatever the bytes; any buffering gives the same packets.

mod common;

use std::io::Cursor;

use common::{gzip, read_all, reader, snoop, Chunked, Item, Ng, Pcap};
use proptest::prelude::*;
use tapstream_ingest::capture::{CaptureReader, RawPacket, LINKTYPE_UNKNOWN};
use tapstream_ingest::decode::{decode, decode_whole, flow_hash, fragment_of, linktype};
use tapstream_ingest::defrag::{Defrag, DefragConfig, Fragment, Overlap, HEAD};
use tapstream_ingest::pcapgen::{fragments, Frame};
use tapstream_ingest::PacketRecord;
use tapstream_ingest::SkipReason;

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
    // With reassembly: a fragment is read as one, and a table that gets it
    // (twice, as a retransmission would) still accounts for it.
    if decode_whole(&pkt, &mut out) == Err(SkipReason::Fragment) {
        let mut f = Fragment::default();
        if fragment_of(&pkt, &mut f).is_ok() {
            assert!(usize::from(f.head_len) <= HEAD);
            let mut d = Defrag::new(DefragConfig::default());
            for _ in 0..2 {
                if d.add(&f, 0, &mut out).is_some() {
                    check(
                        &out,
                        &RawPacket {
                            orig_len: out.wire_len,
                            ts_us: out.ts_us,
                            ..pkt
                        },
                    );
                }
            }
            d.finish();
            let s = d.stats();
            assert_eq!(s.fragments, s.reassembled + s.dropped());
        }
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
        // Its fragments: a first one of 8 bytes and the rest.
        let payload = if e[12..14] == [0x86, 0xDD] {
            e.len() - 54
        } else {
            e.len() - 34
        };
        for piece in fragments(&e, 7, &[(0, 8), (8, payload - 8)]).unwrap_or_default() {
            out.push((linktype::ETHERNET, piece));
        }
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

    /// Any cut into fragments (offsets multiples of 8), in any order, under
    /// any policy, gives the record of the whole packet.
    #[test]
    fn defrag_any_cut_and_order_gives_the_whole_packet(
        pick in 0usize..3,
        v6 in any::<bool>(),
        cuts in prop::collection::btree_set(1usize..40, 0..6),
        order in any::<prop::sample::Index>(),
        policy in 0usize..4,
    ) {
        let (a, b) = if v6 { ("2001:db8::5", "2001:db8::6") } else { ("10.1.2.3", "10.3.2.1") };
        let (a, b) = (a.parse().unwrap(), b.parse().unwrap());
        let frame = [
            Frame::tcp(a, b, 1, 2, 0x12, 300).with_tcp_options(12),
            Frame::udp(a, b, 3, 4, 290),
            Frame::icmp(a, b, 8, 0, 310),
        ][pick]
            .to_bytes();
        let payload = frame.len() - if v6 { 54 } else { 34 };
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c * 8).filter(|&c| c < payload).collect();
        bounds.insert(0, 0);
        bounds.push(payload);
        bounds.dedup();
        let mut pieces: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1] - w[0])).collect();
        let k = order.index(pieces.len());
        pieces.rotate_left(k);
        let frames = fragments(&frame, 99, &pieces).unwrap();
        let policy = [Overlap::First, Overlap::Last, Overlap::Bsd, Overlap::Linux][policy];
        let mut d = Defrag::new(DefragConfig { policy, ..DefragConfig::default() });
        let mut whole = PacketRecord::default();
        decode(&RawPacket { ts_us: 0, link_type: linktype::ETHERNET, orig_len: frame.len() as u32, data: &frame }, &mut whole).unwrap();
        let mut got = None;
        for f in &frames {
            let pkt = RawPacket { ts_us: 0, link_type: linktype::ETHERNET, orig_len: f.len() as u32, data: f };
            let mut rec = PacketRecord::default();
            if pieces.len() == 1 {
                prop_assert!(decode_whole(&pkt, &mut rec).is_ok());
                got = Some(rec);
                continue;
            }
            prop_assert_eq!(decode_whole(&pkt, &mut rec), Err(SkipReason::Fragment));
            let mut frag = Fragment::default();
            fragment_of(&pkt, &mut frag).unwrap();
            if d.add(&frag, 0, &mut rec).is_some() {
                prop_assert!(got.is_none());
                got = Some(rec);
            }
        }
        let got = got.expect("the datagram completes");
        prop_assert_eq!(
            (got.hash, got.sport, got.dport, got.flags, got.window, got.header_len, got.payload_len, got.proto),
            (whole.hash, whole.sport, whole.dport, whole.flags, whole.window, whole.header_len, whole.payload_len, whole.proto)
        );
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
