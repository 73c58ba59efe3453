//! Reader and decoder throughput on a synthetic capture in the page cache.
//!
//! Ignored by default (timing, not correctness). Run in release:
//! `cargo test --release -p tapstream-ingest --test throughput -- --ignored --nocapture`

mod common;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Instant;

use common::Ng;
use tapstream_ingest::capture::CaptureReader;
use tapstream_ingest::decode::decode;
use tapstream_ingest::pcapgen::{Frame, PcapWriter, LINKTYPE_ETHERNET};
use tapstream_ingest::{PacketRecord, SkipCounters};

const PACKETS: usize = 2_000_000;

fn frames() -> Vec<Vec<u8>> {
    // 256 distinct small frames (60-byte TCP, some UDP), cycled.
    (0..256u32)
        .map(|i| {
            let a = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i));
            let b = IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 | (i * 7)));
            if i % 4 == 0 {
                Frame::udp(a, b, 5000 + i as u16, 53, 20).to_bytes()
            } else {
                Frame::tcp(a, b, 40000 + i as u16, 443, 0x10, 0).to_bytes()
            }
        })
        .collect()
}

fn measure(label: &str, path: &Path, with_decode: bool) {
    let start = Instant::now();
    let mut r = CaptureReader::open(path).expect("open");
    let mut rec = PacketRecord::default();
    let mut skips = SkipCounters::new();
    let (mut n, mut ok, mut bytes) = (0u64, 0u64, 0u64);
    while let Some(p) = r.next_packet().expect("read") {
        n += 1;
        bytes += p.data.len() as u64;
        if with_decode {
            match decode(&p, &mut rec) {
                Ok(()) => ok += u64::from(rec.sport != 1),
                Err(e) => skips.add(e),
            }
        }
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "{label:<32} {n} packets in {s:.3} s: {:.1} M packets/s, {:.0} MB/s (decoded {ok}, skipped {skips})",
        n as f64 / s / 1e6,
        bytes as f64 / s / 1e6,
    );
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn reader_and_decoder_throughput() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = frames();

    let pcap = dir.path().join("t.pcap");
    let mut w = PcapWriter::new(
        std::io::BufWriter::new(std::fs::File::create(&pcap).expect("create")),
        LINKTYPE_ETHERNET,
    )
    .expect("header");
    for i in 0..PACKETS {
        w.write(i as i64, &f[i % f.len()]).expect("write");
    }
    w.finish().expect("finish");

    let ng = dir.path().join("t.pcapng");
    let mut b = Ng::new();
    b.shb(false).idb(1, 0, Some(9), None);
    for i in 0..PACKETS {
        let d = &f[i % f.len()];
        b.epb(0, i as u64 * 1000, d.len() as u32, d);
    }
    std::fs::write(&ng, &b.buf).expect("write");

    let gz = dir.path().join("t.pcap.gz");
    let mut e = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).expect("create"),
        flate2::Compression::default(),
    );
    e.write_all(&std::fs::read(&pcap).expect("read"))
        .expect("gzip");
    e.finish().expect("finish");

    // Warm the page cache.
    for p in [&pcap, &ng, &gz] {
        let _ = std::fs::read(p);
    }
    measure("pcap, read only", &pcap, false);
    measure("pcap, read + decode", &pcap, true);
    measure("pcapng, read only", &ng, false);
    measure("pcapng, read + decode", &ng, true);
    measure("pcap.gz, read + decode", &gz, true);
}
