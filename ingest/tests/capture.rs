//! CaptureReader on hand-built files: every container variant, gzip, and
//! every error the reader promises (and what follows it).

mod common;

use std::io::Cursor;

use common::{gzip, read_all, reader, snoop, Chunked, Item, Ng, Pcap};
use tapstream_ingest::capture::{
    CaptureError, CaptureFormat, CaptureReader, Container, LINKTYPE_UNKNOWN,
};
use tapstream_ingest::pcapgen::{pcap_bytes, Frame};

fn v4(s: &str) -> std::net::IpAddr {
    s.parse().expect("address")
}

fn frame(i: usize, payload: usize) -> Vec<u8> {
    Frame::tcp(
        v4("10.0.0.1"),
        v4("10.0.0.2"),
        1000 + i as u16,
        80,
        0x18,
        payload,
    )
    .to_bytes()
}

fn pkt(ts_us: i64, link_type: u32, data: &[u8]) -> Item {
    Item::Packet {
        ts_us,
        link_type,
        orig_len: data.len() as u32,
        data: data.to_vec(),
    }
}

fn err(name: &str) -> Item {
    Item::Error(name.to_string())
}

#[test]
fn reader_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<CaptureReader>();
}

#[test]
fn pcap_micro_and_nano_in_both_byte_orders() {
    let a = frame(1, 10);
    let b = frame(2, 300);
    for be in [false, true] {
        for nanos in [false, true] {
            let mut p = Pcap::new(be, nanos, false, 65535, 1);
            let frac = if nanos { 123_456_789 } else { 123_456 };
            p.rec(1_700_000_000, frac, &a).rec(1_700_000_001, 0, &b);
            let r = reader(&p.buf).expect("open");
            assert_eq!(
                r.format(),
                CaptureFormat {
                    container: Container::Pcap {
                        nanos,
                        big_endian: be,
                        modified: false
                    },
                    gzip: false
                }
            );
            // Nanoseconds are floored to microseconds.
            assert_eq!(
                read_all(r, 10),
                vec![
                    pkt(1_700_000_000_123_456, 1, &a),
                    pkt(1_700_000_001_000_000, 1, &b)
                ],
                "be={be} nanos={nanos}"
            );
        }
    }
}

#[test]
fn modified_pcap_has_longer_record_headers() {
    let a = frame(1, 0);
    for be in [false, true] {
        let mut p = Pcap::new(be, false, true, 65535, 1);
        p.rec(5, 6, &a).rec(7, 8, &a);
        let r = reader(&p.buf).expect("open");
        assert!(matches!(
            r.format().container,
            Container::Pcap { modified: true, .. }
        ));
        assert_eq!(
            read_all(r, 10),
            vec![pkt(5_000_006, 1, &a), pkt(7_000_008, 1, &a)]
        );
    }
}

#[test]
fn pcap_link_type_fcs_bits_are_masked() {
    let a = frame(1, 0);
    let mut p = Pcap::new(false, false, false, 65535, 0x1000_0000 | 101);
    p.rec(0, 0, &a);
    assert_eq!(
        read_all(reader(&p.buf).expect("open"), 3),
        vec![pkt(0, 101, &a)]
    );
}

#[test]
fn caplen_above_orig_len_raises_orig_len() {
    let a = frame(1, 0);
    let mut p = Pcap::new(false, false, false, 65535, 1);
    p.raw(0, 0, a.len() as u32, 10, &a)
        .raw(0, 1, 20, 1500, &a[..20]);
    let got = read_all(reader(&p.buf).expect("open"), 5);
    assert_eq!(got[0], pkt(0, 1, &a)); // orig_len raised to captured length
    assert_eq!(
        got[1],
        Item::Packet {
            ts_us: 1,
            link_type: 1,
            orig_len: 1500,
            data: a[..20].to_vec()
        }
    );
}

/// Two sections (little- then big-endian), interfaces with different link
/// types and timestamp resolutions, plus blocks the reader must skip.
fn two_section_pcapng() -> (Vec<u8>, Vec<Item>) {
    let eth = frame(1, 5);
    let raw = &eth[14..];
    let mut ng = Ng::new();
    ng.shb(false)
        .idb(1, 0, None, None) // µs
        .idb(101, 0, Some(9), Some(10)) // ns, +10 s
        .block(4, &[0, 0, 0, 0]) // name resolution block
        .epb(0, 1_500_000_000_000_001, eth.len() as u32, &eth)
        .epb(1, 1_500_000_000_123_456_789, raw.len() as u32, raw)
        .block(5, &[0; 12]) // interface statistics
        .block(0x0BAD, &[1, 2, 3, 4, 5]) // custom block
        .block(0x1234_5678, &[]) // unknown block
        .epb(7, 42, eth.len() as u32, &eth) // no such interface
        .shb(true)
        .idb(113, 0, Some(0x80 | 10), None) // 2^-10 s
        .idb(1, 0, Some(3), Some(-1)) // ms, -1 s
        .epb(0, 3 * 1024 + 512, raw.len() as u32, raw)
        .epb(1, 2_000, eth.len() as u32, &eth)
        .block(0x0000_000A, &[0; 8]); // decryption secrets
    let want = vec![
        pkt(1_500_000_000_000_001, 1, &eth),
        pkt(1_500_000_010_123_456, 101, raw),
        pkt(42, LINKTYPE_UNKNOWN, &eth),
        pkt(3_500_000, 113, raw),
        pkt(1_000_000, 1, &eth),
    ];
    (ng.buf, want)
}

#[test]
fn pcapng_sections_interfaces_and_resolutions() {
    let (bytes, want) = two_section_pcapng();
    let r = reader(&bytes).expect("open");
    assert_eq!(r.format().container, Container::PcapNg);
    assert_eq!(read_all(r, 20), want);
}

#[test]
fn pcapng_simple_and_obsolete_packet_blocks() {
    let eth = frame(1, 40);
    let mut ng = Ng::new();
    ng.shb(true)
        .idb(1, 64, None, None)
        .pb(0, 7_000_000, 1514, &eth)
        // SPB: no timestamp (the previous packet's is used), interface 0,
        // captured length = min(original length, snap length, block).
        .spb(1514, &eth)
        .spb(30, &eth[..30]);
    let got = read_all(reader(&ng.buf).expect("open"), 10);
    assert_eq!(
        got,
        vec![
            Item::Packet {
                ts_us: 7_000_000,
                link_type: 1,
                orig_len: 1514,
                data: eth.clone()
            },
            Item::Packet {
                ts_us: 7_000_000,
                link_type: 1,
                orig_len: 1514,
                data: eth[..64].to_vec()
            },
            Item::Packet {
                ts_us: 7_000_000,
                link_type: 1,
                orig_len: 30,
                data: eth[..30].to_vec()
            },
        ]
    );
}

#[test]
fn snoop_records() {
    let a = frame(1, 3);
    let b = frame(2, 100);
    let bytes = snoop(4, &[(10, 20, &a), (11, 999_999, &b)]);
    let r = reader(&bytes).expect("open");
    assert_eq!(r.format().container, Container::Snoop);
    assert_eq!(
        read_all(r, 5),
        vec![pkt(10_000_020, 1, &a), pkt(11_999_999, 1, &b)]
    );
    // An unknown snoop datalink is passed on as LINKTYPE_UNKNOWN.
    let bytes = snoop(9, &[(1, 0, &a)]);
    assert_eq!(
        read_all(reader(&bytes).expect("open"), 5),
        vec![pkt(1_000_000, LINKTYPE_UNKNOWN, &a)]
    );
}

#[test]
fn gzip_of_every_container() {
    let (ng, ng_want) = two_section_pcapng();
    let frames: Vec<(i64, Frame)> = (0..50)
        .map(|i| {
            (
                i * 1000,
                Frame::udp(v4("1.1.1.1"), v4("2.2.2.2"), 53, 5353, i as usize),
            )
        })
        .collect();
    let pcap = pcap_bytes(&frames);
    let a = frame(1, 3);
    let sn = snoop(4, &[(1, 2, &a)]);
    for plain in [&pcap, &ng, &sn] {
        let want = read_all(reader(plain).expect("open plain"), 100);
        let gz = gzip(plain);
        let r = reader(&gz).expect("open gzip");
        assert!(r.format().gzip);
        assert_eq!(read_all(r, 100), want);
    }
    assert_eq!(read_all(reader(&gzip(&ng)).expect("open"), 100), ng_want);
    // Two gzip members are one stream.
    let half = pcap.len() / 2;
    let mut two = gzip(&pcap[..half]);
    two.extend(gzip(&pcap[half..]));
    assert_eq!(
        read_all(reader(&two).expect("open"), 100),
        read_all(reader(&pcap).expect("open"), 100)
    );
}

#[test]
fn bytes_read_reaches_the_file_size() {
    let frames: Vec<(i64, Frame)> = (0..2000)
        .map(|i| (i, Frame::udp(v4("1.1.1.1"), v4("2.2.2.2"), 53, 5353, 100)))
        .collect();
    let pcap = pcap_bytes(&frames);
    for (bytes, plain) in [(pcap.clone(), true), (gzip(&pcap), false)] {
        let mut r = CaptureReader::with_buffer_size(Box::new(Cursor::new(bytes.clone())), 4096)
            .expect("open");
        let mut seen = Vec::new();
        while let Some(_p) = r.next_packet().expect("read") {
            seen.push(r.bytes_read());
        }
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "monotonic");
        if plain {
            // Progress moves in buffer-sized steps, not all at once.
            assert!(seen[0] <= 4096 + 2, "{}", seen[0]);
        }
        assert_eq!(r.bytes_read(), bytes.len() as u64);
    }
}

#[test]
fn truncated_last_record_is_reported_once() {
    let a = frame(1, 50);
    let mut p = Pcap::new(false, false, false, 65535, 1);
    p.rec(1, 0, &a).rec(2, 0, &a);
    let full = p.buf.clone();
    // Cut inside the second record's data, and inside its header.
    for cut in [full.len() - 1, full.len() - a.len() - 4] {
        let mut r = reader(&full[..cut]).expect("open");
        assert!(r.next_packet().expect("first").is_some());
        match r.next_packet() {
            Err(CaptureError::TruncatedRecord {
                offset,
                needed,
                available,
            }) => {
                assert_eq!(offset, (24 + 16 + a.len()) as u64);
                assert!(available < needed);
            }
            other => panic!("want TruncatedRecord, got {other:?}"),
        }
        assert!(matches!(r.next_packet(), Ok(None)));
        assert!(matches!(r.next_packet(), Ok(None)));
    }
    // pcapng: cut inside an EPB; snoop: cut inside a record.
    let mut ng = Ng::new();
    ng.shb(false)
        .idb(1, 0, None, None)
        .epb(0, 1, a.len() as u32, &a)
        .epb(0, 2, a.len() as u32, &a);
    let n = ng.buf.len();
    assert_eq!(
        read_all(reader(&ng.buf[..n - 10]).expect("open"), 5),
        vec![pkt(1, 1, &a), err("TruncatedRecord")]
    );
    let sn = snoop(4, &[(1, 0, &a), (2, 0, &a)]);
    assert_eq!(
        read_all(reader(&sn[..sn.len() - 20]).expect("open"), 5),
        vec![pkt(1_000_000, 1, &a), err("TruncatedRecord")]
    );
    // A file cut inside a non-packet block is corrupt, not a lost packet.
    let mut ng = Ng::new();
    ng.shb(false).idb(1, 0, None, None).block(5, &[0; 40]);
    let n = ng.buf.len();
    assert_eq!(
        read_all(reader(&ng.buf[..n - 8]).expect("open"), 5),
        vec![err("Corrupt")]
    );
}

#[test]
fn corrupt_pcapng_block_lengths() {
    let a = frame(1, 0);
    let mut good = Ng::new();
    good.shb(false)
        .idb(1, 0, None, None)
        .epb(0, 1, a.len() as u32, &a);
    let bad_at = good.buf.len();
    let mut lens = vec![8u32, 13, 0x0100_0004, 0xFFFF_FFFC];
    lens.push(0); // the trailing-length case, below
    for len in lens {
        let mut ng = Ng {
            be: false,
            buf: good.buf.clone(),
        };
        ng.epb(0, 2, a.len() as u32, &a)
            .epb(0, 3, a.len() as u32, &a);
        if len == 0 {
            // Trailing length differs from the leading one.
            let lead =
                u32::from_le_bytes(ng.buf[bad_at + 4..bad_at + 8].try_into().unwrap()) as usize;
            let t = bad_at + lead - 4;
            ng.buf[t] ^= 0x40;
        } else {
            ng.buf[bad_at + 4..bad_at + 8].copy_from_slice(&len.to_le_bytes());
        }
        let mut r = reader(&ng.buf).expect("open");
        assert!(r.next_packet().expect("first").is_some());
        match r.next_packet() {
            Err(CaptureError::Corrupt { offset, reason }) => {
                assert_eq!(offset, bad_at as u64, "{reason}");
                assert!(!reason.contains('\n'));
            }
            other => panic!("len {len}: want Corrupt, got {other:?}"),
        }
        assert!(matches!(r.next_packet(), Ok(None)), "len {len}");
    }
    // Captured length larger than its block.
    let mut ng = Ng {
        be: false,
        buf: good.buf.clone(),
    };
    ng.epb(0, 2, a.len() as u32, &a);
    ng.buf[bad_at + 20..bad_at + 24].copy_from_slice(&5000u32.to_le_bytes());
    assert_eq!(
        read_all(reader(&ng.buf).expect("open"), 5),
        vec![pkt(1, 1, &a), err("Corrupt")]
    );
}

#[test]
fn corrupt_pcap_caplen() {
    let a = frame(1, 0);
    // Snap length 100 still allows 262144-byte records; beyond that is corrupt.
    let mut p = Pcap::new(false, false, false, 100, 1);
    p.rec(0, 0, &a).raw(0, 0, 262_145, 262_145, &a);
    assert_eq!(
        read_all(reader(&p.buf).expect("open"), 5),
        vec![pkt(0, 1, &a), err("Corrupt")]
    );
    // A large snap length raises the limit (up to 16 MiB).
    let big = vec![0u8; 300_000];
    let mut p = Pcap::new(false, false, false, 1 << 20, 1);
    p.rec(0, 0, &big);
    assert_eq!(
        read_all(reader(&p.buf).expect("open"), 5),
        vec![pkt(0, 1, &big)]
    );
    let mut p = Pcap::new(true, false, false, u32::MAX, 1);
    p.raw(0, 0, 0x7FFF_FFFF, 0x7FFF_FFFF, &a);
    assert_eq!(
        read_all(reader(&p.buf).expect("open"), 5),
        vec![err("Corrupt")]
    );
}

#[test]
fn not_captures() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty file", vec![]),
        ("3-byte file", vec![0xd4, 0xc3, 0xb2]),
        ("unknown magic", b"<!DOCTYPE html><html></html>".to_vec()),
        ("unknown magic", b"hello world\n".to_vec()),
        (
            "too short for the 24-byte file header",
            vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0],
        ),
        (
            "byte-order magic",
            vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0],
        ),
        (
            "too short for a section header",
            vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0],
        ),
        (
            "pcapng section header of 28 bytes in a 16-byte file",
            vec![
                0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0,
            ],
        ),
        ("snoop", b"snoop\0\0\0\0\0\0\x09\0\0\0\x04".to_vec()),
        ("empty gzip stream", gzip(b"")),
        ("unknown magic", gzip(b"just some text")),
        (
            "not a readable gzip stream",
            vec![0x1f, 0x8b, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
        ),
    ];
    for (want, bytes) in cases {
        match reader(&bytes) {
            Err(e @ CaptureError::NotACapture { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(want), "{msg:?} should mention {want:?}");
                assert!(!msg.contains('\n'));
            }
            other => panic!("{want}: want NotACapture, got {other:?}"),
        }
    }
}

#[test]
fn open_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, b"").expect("write");
    assert!(matches!(
        CaptureReader::open(&empty),
        Err(CaptureError::NotACapture { .. })
    ));
    let missing = dir.path().join("missing.pcap");
    match CaptureReader::open(&missing) {
        Err(e @ CaptureError::Open { .. }) => assert!(e.to_string().contains("missing.pcap")),
        other => panic!("want Open, got {other:?}"),
    }
    // Format comes from the bytes, not the name.
    let misnamed = dir.path().join("capture.txt");
    let (ng, want) = two_section_pcapng();
    std::fs::write(&misnamed, gzip(&ng)).expect("write");
    let r = CaptureReader::open(&misnamed).expect("open");
    assert_eq!(r.format().to_string(), "pcapng, gzip");
    assert_eq!(read_all(r, 20), want);
}

#[test]
fn records_straddling_the_buffer_give_the_same_packets() {
    // Sizes from tiny to larger than the small buffers, to force refills,
    // compaction and growth.
    let mut p = Pcap::new(false, true, false, 65535, 1);
    let mut ng = Ng::new();
    ng.shb(false).idb(1, 0, None, None);
    for i in 0..60usize {
        let f = frame(i, (i * 37) % 300);
        p.rec(i as u32, i as u32, &f);
        ng.epb(0, i as u64, f.len() as u32, &f);
        if i == 30 {
            ng.shb(true).idb(1, 0, None, None);
        }
    }
    for file in [p.buf, ng.buf] {
        let want = read_all(reader(&file).expect("open"), 100);
        assert_eq!(want.len(), 60);
        for size in [16, 17, 31, 64, 100, 333, 4096] {
            for chunk in [1, 7, 1 << 20] {
                let src = Chunked {
                    data: file.clone(),
                    pos: 0,
                    chunk,
                };
                let r = CaptureReader::with_buffer_size(Box::new(src), size).expect("open");
                assert_eq!(read_all(r, 100), want, "buffer {size}, chunk {chunk}");
            }
        }
    }
}

#[test]
fn errors_display_on_one_line() {
    let e = CaptureError::TruncatedRecord {
        offset: 40,
        needed: 100,
        available: 3,
    };
    assert_eq!(
        e.to_string(),
        "file ends inside the packet record at byte 40: it needs 100 bytes, 3 remain"
    );
    let e = CaptureError::Corrupt {
        offset: 7,
        reason: "x".into(),
    };
    assert_eq!(e.to_string(), "corrupt capture at byte 7: x");
}

#[test]
fn truncated_gzip_stream_is_reported() {
    let frames: Vec<(i64, Frame)> = (0..500)
        .map(|i| {
            (
                i,
                Frame::udp(v4("1.1.1.1"), v4("2.2.2.2"), 53, i as u16, 100),
            )
        })
        .collect();
    let gz = gzip(&pcap_bytes(&frames));
    let whole = read_all(reader(&gz).expect("open"), 1000);
    assert_eq!(whole.len(), 500);
    // Missing trailer (CRC, size) or a stream cut mid-way: the packets before
    // the cut, then one Corrupt (the gzip layer cannot tell a record was cut).
    for cut in [gz.len() - 4, gz.len() - 9, gz.len() / 2] {
        let got = read_all(reader(&gz[..cut]).expect("open"), 1000);
        let (last, packets) = got.split_last().expect("items");
        assert_eq!(last, &err("Corrupt"), "cut at {cut}");
        assert!(!packets.is_empty());
        assert_eq!(packets, &whole[..packets.len()]);
    }
}

/// Fuzz finding (`capture_reader`, buffer sizes disagreed): a gzip stream
/// damaged after some good data lost the packets decompressed in the read
/// that met the damage (flate2's reader returns only the error), so with the
/// default 1 MiB buffer a small damaged capture was "not a readable gzip
/// stream" and gave no packet. Now every packet before the damage comes out,
/// then `Corrupt` at the decompressed offset of the damage, for any buffer.
#[test]
fn damaged_gzip_keeps_the_packets_before_the_damage() {
    use std::io::Write;
    let frames: Vec<(i64, Frame)> = (0..50)
        .map(|i| {
            (
                i,
                Frame::udp(v4("1.1.1.1"), v4("2.2.2.2"), 53, i as u16, 100),
            )
        })
        .collect();
    let pcap = pcap_bytes(&frames);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&pcap).expect("write to Vec");
    // A sync flush ends on a byte boundary; 0xFF there starts a deflate
    // block of the reserved type 3: damage right after the 50 packets.
    e.flush().expect("flush to Vec");
    let mut damaged = e.get_ref().clone();
    damaged.extend([0xFF; 8]);
    let whole = read_all(reader(&gzip(&pcap)).expect("open"), 100);
    assert_eq!(whole.len(), 50);
    for size in [16, 100, 4096, 1 << 20] {
        let mut r = CaptureReader::with_buffer_size(Box::new(Cursor::new(damaged.clone())), size)
            .expect("the damage is after the file header");
        let mut got = Vec::new();
        let end = loop {
            match r.next_packet() {
                Ok(Some(p)) => got.push(pkt(p.ts_us, p.link_type, p.data)),
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        assert_eq!(got, whole, "buffer {size}");
        match end {
            Some(CaptureError::Corrupt { offset, reason }) => {
                assert_eq!(offset, pcap.len() as u64, "buffer {size}: {reason}");
                assert!(reason.contains("corrupt deflate stream"), "{reason}");
            }
            other => panic!("buffer {size}: want Corrupt, got {other:?}"),
        }
    }
}
