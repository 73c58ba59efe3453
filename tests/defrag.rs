//! IP defragmentation end to end: a capture whose packets are fragmented
//! (IPv4 and IPv6, out of order, tiny first fragments) gives the same flows
//! and features as the capture of whole packets, for any number of workers
//! and decoders; without reassembly the fragmented flows are lost.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tapstream_ingest::packet::tcp_flags::{ACK, FIN, PSH, SYN};
use tapstream_ingest::pcapgen::{fragments, Frame, PcapWriter, LINKTYPE_ETHERNET};

const T0: i64 = 1_767_600_000_000_000;

/// How a frame is cut: `(offset, len)` of each fragment, in sending order.
type Pieces = Vec<(usize, usize)>;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The frames of a capture: TCP sessions with large segments, a DNS-like
/// UDP exchange with a large answer (IPv6), and a tiny-fragment SYN flood.
/// Each frame says how it is fragmented (`None`: it is not).
fn frames() -> Vec<(i64, Vec<u8>, Option<Pieces>)> {
    let mut out = Vec::new();
    let mut t = T0;
    let mut at = |us: i64| {
        t += us;
        t
    };
    for s in 0..20u16 {
        let (c, v) = (ip(&format!("198.18.1.{}", s + 1)), ip("198.18.0.2"));
        let sp = 40_000 + s;
        let tcp = |src, dst, a, b, flags, len| Frame::tcp(src, dst, a, b, flags, len).to_bytes();
        out.push((at(1_000), tcp(c, v, sp, 80, SYN, 0), None));
        out.push((at(200), tcp(v, c, 80, sp, SYN | ACK, 0), None));
        out.push((at(200), tcp(c, v, sp, 80, ACK, 0), None));
        out.push((at(300), tcp(c, v, sp, 80, PSH | ACK, 300), None));
        // A 3,000-byte answer in three fragments, the last first.
        out.push((
            at(5_000),
            tcp(v, c, 80, sp, PSH | ACK, 3_000),
            Some(vec![(2_976, 44), (1_480, 1_496), (0, 1_480)]),
        ));
        out.push((at(400), tcp(c, v, sp, 80, FIN | ACK, 0), None));
        out.push((at(200), tcp(v, c, 80, sp, FIN | ACK, 0), None));
        out.push((at(200), tcp(c, v, sp, 80, ACK, 0), None));
    }
    for q in 0..10u16 {
        let (c, r) = (ip("2001:db8::10"), ip("2001:db8::53"));
        out.push((
            at(10_000),
            Frame::udp(c, r, 5_000 + q, 53, 40).to_bytes(),
            None,
        ));
        out.push((
            at(2_000),
            Frame::udp(r, c, 53, 5_000 + q, 2_500).to_bytes(),
            Some(vec![(0, 1_232), (1_232, 1_276)]),
        ));
    }
    // SYNs whose first fragment carries only the ports: flags and window
    // are in the second.
    for i in 0..200u32 {
        let src = ip(&format!("198.19.{}.{}", i / 250, i % 250 + 1));
        let syn = Frame::tcp(src, ip("198.18.0.2"), 1_024 + i as u16, 22, SYN, 0).to_bytes();
        out.push((at(500), syn, Some(vec![(0, 8), (8, 12)])));
    }
    out
}

/// Writes the capture, fragmented or not; returns its path.
fn capture(dir: &Path, fragmented: bool) -> PathBuf {
    let path = dir.join(if fragmented {
        "frag.pcap"
    } else {
        "whole.pcap"
    });
    let mut w = PcapWriter::new(std::fs::File::create(&path).unwrap(), LINKTYPE_ETHERNET).unwrap();
    for (id, (ts, frame, pieces)) in frames().into_iter().enumerate() {
        match pieces.filter(|_| fragmented) {
            Some(p) => {
                for f in fragments(&frame, id as u32 + 1, &p).unwrap() {
                    w.write(ts, &f).unwrap();
                }
            }
            None => w.write(ts, &frame).unwrap(),
        }
    }
    w.finish().unwrap();
    path
}

/// `tapstream features` rows (sorted) and the summary, with that shape.
fn features(
    pcap: &Path,
    (workers, decoders): (usize, usize),
    config: Option<&Path>,
) -> (Vec<String>, Value) {
    let run = crate::decoders::features(pcap, pcap.parent().unwrap(), workers, decoders, config);
    let mut rows = run.rows;
    rows.sort();
    (rows, run.summary)
}

#[test]
fn a_fragmented_capture_gives_the_flows_of_the_whole_one() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, sw) = features(&capture(dir.path(), false), (1, 1), None);
    assert_eq!(whole.len(), 20 + 10 + 200, "flows");
    assert_eq!(sw["defrag"]["fragments"], 0);
    let frag = capture(dir.path(), true);
    for shape in [(1, 1), (3, 2)] {
        let (rows, s) = features(&frag, shape, None);
        assert_eq!(rows, whole, "{shape:?}");
        let d = &s["defrag"];
        assert_eq!(d["datagrams"], 20 + 10 + 200, "{s}");
        assert_eq!(d["fragments"], 20 * 3 + 10 * 2 + 200 * 2);
        assert_eq!(d["reassembled"], d["fragments"]);
        assert_eq!(
            d["timeouts"].as_u64().unwrap() + d["invalid"].as_u64().unwrap(),
            0
        );
        assert_eq!(s["accounted"], true, "{s}");
        assert_eq!(s["packets_in_flows"], sw["packets_in_flows"]);
    }
}

#[test]
fn without_reassembly_the_fragments_are_lost_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, _) = features(&capture(dir.path(), false), (1, 1), None);
    let cfg = dir.path().join("off.toml");
    std::fs::write(&cfg, "[defrag]\nenabled = false\n").unwrap();
    let (rows, s) = features(&capture(dir.path(), true), (1, 1), Some(&cfg));
    assert_eq!(s["accounted"], true, "{s}");
    assert_eq!(s["defrag"]["fragments"], 0);
    // Non-first fragments are skipped: the answers and the SYNs' second
    // halves; a SYN's 8-byte first fragment cannot even give a flow.
    assert_eq!(s["skipped"]["fragment"], 20 * 2 + 10 + 200 * 2, "{s}");
    assert!(rows.len() < whole.len(), "{} rows", rows.len());
}
