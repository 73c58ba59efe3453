//! The committed seed corpora in `fuzz/seeds/<target>/`, made here from the
//! project's own packet builder ([`tapstream_ingest::pcapgen`]) and
//! hand-written bytes; nothing in them comes from a third-party capture.
//!
//! Regenerate after changing an input encoding (the files are rewritten,
//! byte-identical when nothing changed):
//!
//! ```sh
//! cargo test --manifest-path fuzz/Cargo.toml --lib -- --ignored write_seeds
//! ```
//!
//! `cargo test --manifest-path fuzz/Cargo.toml` replays every seed through
//! its target's checks without libFuzzer.

use std::io::Write;
use std::net::IpAddr;

use tapstream_ingest::decode::linktype;
use tapstream_ingest::packet::tcp_flags::{ACK, FIN, PSH, SYN};
use tapstream_ingest::pcapgen::{pcap_bytes, Frame};
use tapstream_kernels::schema::CSV_COLUMNS;

use crate::capture::{LINK_TYPES, RAW_LINK_TYPE};
use crate::kafka::{PacketsInput, SEPARATOR};

/// The targets, in the order the fuzz script runs them.
pub const TARGETS: [&str; 7] = [
    "capture_reader",
    "decode",
    "flow_table",
    "eve_roundtrip",
    "config",
    "kafka_packets",
    "kafka_flows",
];

/// Runs target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "capture_reader" => crate::capture_reader(data),
        "decode" => crate::decode(data),
        "flow_table" => crate::flow_table(data),
        "eve_roundtrip" => crate::eve_roundtrip(data),
        "config" => crate::config(data),
        "kafka_packets" => crate::kafka_packets(data),
        "kafka_flows" => crate::kafka_flows(data),
        other => panic!("no target {other}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

/// A short TCP session, a DNS exchange and a ping over IPv4 and IPv6.
fn frames() -> Vec<(i64, Frame)> {
    let (a, b) = (ip("192.168.10.5"), ip("172.16.0.1"));
    let (c, d) = (ip("2001:db8::5"), ip("2001:db8::1f"));
    let t = 1_499_432_361_088_203;
    vec![
        (t, Frame::tcp(a, b, 40000, 80, SYN, 0).with_tcp_options(12)),
        (t + 150, Frame::tcp(b, a, 80, 40000, SYN | ACK, 0)),
        (t + 300, Frame::tcp(a, b, 40000, 80, ACK | PSH, 120)),
        (t + 900, Frame::udp(c, d, 5353, 53, 40)),
        (t + 1_200, Frame::icmp(a, b, 8, 0, 56)),
        (t + 3_100, Frame::tcp(a, b, 40000, 80, FIN | ACK, 0)),
        (t + 3_350, Frame::tcp(b, a, 80, 40000, FIN | ACK, 0)),
        (t + 3_500, Frame::tcp(a, b, 40000, 80, ACK, 0)),
        (t + 4_000, Frame::icmp(c, d, 128, 0, 8)),
    ]
}

fn u32le(out: &mut Vec<u8>, v: u32) {
    out.extend(v.to_le_bytes());
}

fn pad4(out: &mut Vec<u8>, data: &[u8]) {
    out.extend(data);
    out.resize(out.len() + (4 - data.len() % 4) % 4, 0);
}

/// A little-endian pcapng file: section header, an Ethernet interface with
/// nanosecond resolution, enhanced packet blocks, and a simple packet block.
fn pcapng(frames: &[(i64, Frame)]) -> Vec<u8> {
    let mut out = Vec::new();
    // Section header block.
    for v in [0x0A0D_0D0A, 28, 0x1A2B_3C4D, 1] {
        u32le(&mut out, v);
    }
    out.extend((-1i64).to_le_bytes());
    u32le(&mut out, 28);
    // Interface description block: Ethernet, snaplen 65535, if_tsresol 9.
    for v in [1, 32, linktype::ETHERNET, 65535] {
        u32le(&mut out, v);
    }
    out.extend([9, 0, 1, 0, 9, 0, 0, 0]);
    u32le(&mut out, 0);
    u32le(&mut out, 32);
    for (ts_us, f) in frames {
        let data = f.to_bytes();
        let ns = (*ts_us as u64) * 1000;
        let len = 32 + data.len().div_ceil(4) * 4;
        for v in [6, len as u32, 0, (ns >> 32) as u32, ns as u32] {
            u32le(&mut out, v);
        }
        u32le(&mut out, data.len() as u32);
        u32le(&mut out, data.len() as u32);
        pad4(&mut out, &data);
        u32le(&mut out, len as u32);
    }
    if let Some((_, f)) = frames.first() {
        let data = f.to_bytes();
        let len = 16 + data.len().div_ceil(4) * 4;
        u32le(&mut out, 3);
        u32le(&mut out, len as u32);
        u32le(&mut out, data.len() as u32);
        pad4(&mut out, &data);
        u32le(&mut out, len as u32);
    }
    out
}

/// A big-endian, nanosecond classic pcap file of raw IP packets.
fn pcap_ns_be(frames: &[(i64, Frame)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(0xA1B2_3C4Du32.to_be_bytes());
    out.extend(2u16.to_be_bytes());
    out.extend(4u16.to_be_bytes());
    for v in [0u32, 0, 65535, linktype::RAW] {
        out.extend(v.to_be_bytes());
    }
    for (ts_us, f) in frames {
        let data = f.to_bytes();
        let ip = &data[14..];
        let secs = (ts_us / 1_000_000) as u32;
        let ns = (ts_us % 1_000_000) as u32 * 1000;
        for v in [secs, ns, ip.len() as u32, ip.len() as u32 + 4] {
            out.extend(v.to_be_bytes());
        }
        out.extend(ip);
    }
    out
}

/// A Sun snoop file (Ethernet).
fn snoop(frames: &[(i64, Frame)]) -> Vec<u8> {
    let mut out = b"snoop\0\0\0".to_vec();
    out.extend(2u32.to_be_bytes());
    out.extend(4u32.to_be_bytes());
    for (ts_us, f) in frames {
        let data = f.to_bytes();
        let rec = 24 + data.len().div_ceil(4) * 4;
        let secs = (ts_us / 1_000_000) as u32;
        let us = (ts_us % 1_000_000) as u32;
        for v in [
            data.len() as u32,
            data.len() as u32,
            rec as u32,
            0,
            secs,
            us,
        ] {
            out.extend(v.to_be_bytes());
        }
        let start = out.len();
        out.extend(&data);
        out.resize(start + rec - 24, 0);
    }
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("in memory");
    e.finish().expect("in memory")
}

/// Small capture files in every container the reader knows.
fn captures() -> Vec<(&'static str, Vec<u8>)> {
    let f = frames();
    let pcap = pcap_bytes(&f);
    let mut cut = pcap.clone();
    cut.truncate(pcap.len() - 7);
    vec![
        ("pcap-us-le.pcap", pcap.clone()),
        ("pcap-ns-be-raw.pcap", pcap_ns_be(&f)),
        ("pcapng-ns.pcapng", pcapng(&f)),
        ("snoop.snoop", snoop(&f[..4])),
        ("gzip.pcap.gz", gzip(&pcap_bytes(&f[..3]))),
        ("cut-record.pcap", cut),
    ]
}

/// `decode` inputs: a selector byte, then a frame.
fn frames_for_decode() -> Vec<(String, Vec<u8>)> {
    let sel = |lt: u32| {
        LINK_TYPES
            .iter()
            .position(|l| *l == lt)
            .expect("a listed link type") as u8
    };
    let mut out = Vec::new();
    for (i, (_, f)) in frames().iter().enumerate().take(5) {
        let e = f.to_bytes();
        let l3 = e[14..].to_vec();
        let mut push = |name: &str, lt: u32, body: Vec<u8>| {
            let mut v = vec![sel(lt)];
            v.extend(body);
            out.push((format!("{i}-{name}"), v));
        };
        push("ethernet", linktype::ETHERNET, e.clone());
        push("raw", linktype::RAW, l3.clone());
        let mut q = e[..12].to_vec();
        q.extend([0x88, 0xA8, 0, 1, 0x81, 0, 0, 2]);
        q.extend(&e[12..]);
        push("qinq", linktype::ETHERNET, q);
        let mut m = e[..12].to_vec();
        m.extend([0x88, 0x47, 0, 1, 0, 64, 0, 2, 1, 64]);
        m.extend(&l3);
        push("mpls", linktype::ETHERNET, m);
        let family: u32 = if l3[0] >> 4 == 6 { 24 } else { 2 };
        let mut n = family.to_le_bytes().to_vec();
        n.extend(&l3);
        push("null", linktype::NULL, n);
        let mut s = vec![0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0];
        s.extend(&e[12..]);
        push("sll", linktype::LINUX_SLL, s);
    }
    // An explicit link type (PKTAP's 258) around an Ethernet frame.
    let e = frames()[0].1.to_bytes();
    let mut v = vec![RAW_LINK_TYPE];
    v.extend(linktype::PKTAP.to_le_bytes());
    let mut hdr = vec![0u8; 108];
    hdr[..4].copy_from_slice(&108u32.to_le_bytes());
    hdr[4..8].copy_from_slice(&linktype::ETHERNET.to_le_bytes());
    v.extend(hdr);
    v.extend(e);
    out.push(("pktap".to_string(), v));
    out
}

/// Deterministic filler bytes (xorshift), for the targets that read their
/// input through `arbitrary`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const CONFIGS: [(&str, &str); 6] = [
    ("empty.toml", ""),
    (
        "flow.toml",
        "[flow]\ntimeout = \"30s\"\nactivity_timeout = \"2s\"\ntcp_close_linger = \"1s\"\n\
         max_flows = 1000\n[pipeline]\nworkers = 3\ndecoders = 1\nbatch_packets = 4096\n",
    ),
    (
        "model.toml",
        "[model]\nthreshold = 0.75\n[inference]\nproviders = [\"tensorrt\", \"cuda\", \"cpu\"]\n\
         max_delay = \"10ms\"\n[inference.tensorrt]\nprecision = \"fp16\"\n[inference.cuda]\n\
         memory_limit_mib = 512\n",
    ),
    (
        "output.toml",
        "[output]\neve = \"/var/log/tapstream/eve.json\"\ncommunity_id_seed = 7\n\
         [output.limit]\ndedup_flows = true\ntrack = \"by_pair\"\ncount = 3\nwindow = \"5m\"\n",
    ),
    (
        "kafka.toml",
        "[kafka]\nbrokers = [\"127.0.0.1:9092\"]\nclient_id = \"sensor-1\"\n\
         [kafka.security]\nprotocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"\n\
         sasl_username = \"u\"\nsasl_password = { env = \"KAFKA_PASSWORD\" }\n\
         [kafka.properties]\n\"fetch.max.bytes\" = \"1048576\"\n\
         [source.kafka]\ngroup_id = \"g\"\ntopics = [\"packets\"]\nformat = \"flows\"\n\
         [output.kafka]\ntopic = \"alerts\"\n",
    ),
    (
        "capture.toml",
        "[capture]\ninterface = \"eth0\"\nsnaplen = 1514\nbuffer_mib = 64\ntimeout = \"100ms\"\n\
         threads = 2\n[privileges]\nrun_as = \"tapstream\"\n[gpu]\nbatch_records = 65536\n",
    ),
];

/// One CSV data line that fits [`CSV_COLUMNS`].
fn csv_row() -> String {
    CSV_COLUMNS
        .iter()
        .map(|c| match *c {
            "Flow ID" => "192.168.10.5-172.16.0.1-40000-80-6".to_string(),
            "Src IP" => "192.168.10.5".to_string(),
            "Dst IP" => "172.16.0.1".to_string(),
            "Timestamp" => "2017-07-07 09:30:00.250000".to_string(),
            "Src Port" => "40000".to_string(),
            "Dst Port" => "80".to_string(),
            "Protocol" => "6".to_string(),
            "Flow Duration" => "3500".to_string(),
            _ => "1.5".to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The same flow as a JSON object (IPv6, numeric timestamp and flow id).
fn json_row() -> String {
    let fields: Vec<String> = CSV_COLUMNS
        .iter()
        .map(|c| {
            let v = match *c {
                "Flow ID" => "12345".to_string(),
                "Src IP" => "\"2001:db8::5\"".to_string(),
                "Dst IP" => "\"2001:db8::1f\"".to_string(),
                "Timestamp" => "1499419800250000".to_string(),
                "Src Port" => "5353".to_string(),
                "Dst Port" => "53".to_string(),
                "Protocol" => "17".to_string(),
                _ => "0.25".to_string(),
            };
            format!("\"{c}\":{v}")
        })
        .collect();
    format!("{{{},\"Label\":\"BENIGN\"}}", fields.join(","))
}

fn join_messages(first_is_header: bool, messages: &[&str]) -> Vec<u8> {
    let mut out = vec![u8::from(first_is_header)];
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        out.extend(m.as_bytes());
    }
    out
}

/// Every seed, as (target, file name, bytes).
pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, bytes) in captures() {
        out.push(("capture_reader", name.to_string(), bytes.clone()));
        out.push(("decode", name.to_string(), bytes));
    }
    for (name, bytes) in frames_for_decode() {
        out.push(("decode", format!("frame-{name}"), bytes));
    }
    for (i, len) in [64, 256, 1024, 4096].into_iter().enumerate() {
        out.push((
            "flow_table",
            format!("noise-{len}"),
            noise(i as u64 + 1, len),
        ));
        out.push((
            "eve_roundtrip",
            format!("noise-{len}"),
            noise(i as u64 + 101, len.min(512)),
        ));
    }
    for (name, text) in CONFIGS {
        out.push(("config", name.to_string(), text.as_bytes().to_vec()));
    }
    let f = frames();
    let frame = f[0].1.to_bytes();
    let kafka = [
        (
            "capture-chunk",
            PacketsInput {
                payload: Some(pcap_bytes(&f)),
                ..PacketsInput::default()
            },
        ),
        (
            "pcapng-chunk",
            PacketsInput {
                payload: Some(pcapng(&f[..3])),
                timestamp_ms: Some(1_499_419_800_250),
                ..PacketsInput::default()
            },
        ),
        (
            "frame-headers",
            PacketsInput {
                frame: true,
                ts_us: Some(b"1499419800250000".to_vec()),
                linktype: Some(b"1".to_vec()),
                orig_len: Some(b"1514".to_vec()),
                payload: Some(frame.clone()),
                ..PacketsInput::default()
            },
        ),
        (
            "frame-raw-default-linktype",
            PacketsInput {
                frame: true,
                timestamp_ms: Some(1_499_419_800_250),
                default_link_type: Some(linktype::RAW),
                payload: Some(frame[14..].to_vec()),
                ..PacketsInput::default()
            },
        ),
        (
            "no-payload",
            PacketsInput {
                frame: true,
                ..PacketsInput::default()
            },
        ),
    ];
    for (name, input) in kafka {
        out.push(("kafka_packets", name.to_string(), input.encode()));
    }
    let header = CSV_COLUMNS.join(",");
    let (row, json) = (csv_row(), json_row());
    let flows = [
        (
            "csv-header-message",
            join_messages(false, &[&header, &row, &row]),
        ),
        (
            "csv-configured-header",
            join_messages(true, &[&header, &row]),
        ),
        ("json", join_messages(false, &[&json])),
        (
            "mixed",
            join_messages(false, &[&json, &row, &header, &row, "{}"]),
        ),
    ];
    for (name, bytes) in flows {
        out.push(("kafka_flows", name.to_string(), bytes));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn seeds_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds")
    }

    /// Writes `fuzz/seeds/` (see the module docs).
    #[test]
    #[ignore = "writes the committed seed files"]
    fn write_seeds() {
        for (target, name, bytes) in all() {
            let dir = seeds_dir().join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }

    /// The generated seeds pass their targets' checks.
    #[test]
    fn generated_seeds_pass() {
        for (target, name, bytes) in all() {
            eprintln!("{target}/{name}");
            run(target, &bytes);
        }
    }

    /// The committed seeds (and anything else under `fuzz/seeds/<target>/`)
    /// pass their targets' checks, and every generated seed is committed.
    #[test]
    fn committed_seeds_pass() {
        for target in TARGETS {
            let dir = seeds_dir().join(target);
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                eprintln!("{}", path.display());
                run(target, &std::fs::read(&path).unwrap());
            }
        }
        for (target, name, bytes) in all() {
            let path = seeds_dir().join(target).join(&name);
            let committed = std::fs::read(&path).unwrap_or_default();
            assert!(
                committed == bytes,
                "{} is stale: regenerate the seeds",
                path.display()
            );
        }
    }

    /// The seeds start the fuzzers on the success paths: the configs are
    /// valid, the captures read to the end (but the cut one), the frames
    /// decode, and the flow messages give rows.
    #[test]
    fn seeds_are_valid_inputs() {
        use std::io::Cursor;
        use tapstream_connectors::kafka::flows::{Decoded, FlowDecoder};
        use tapstream_ingest::capture::CaptureReader;
        use tapstream_ingest::PacketRecord;

        for (name, text) in CONFIGS {
            let r = tapstream_runtime::Config::parse(text, Path::new(name));
            assert!(r.is_ok(), "{name}: {r:?}");
        }
        for (name, bytes) in captures() {
            let mut r = CaptureReader::from_reader(Box::new(Cursor::new(bytes))).expect(name);
            let mut n = 0;
            let end = loop {
                match r.next_packet() {
                    Ok(Some(p)) => {
                        let mut rec = PacketRecord::default();
                        tapstream_ingest::decode(&p, &mut rec).expect(name);
                        n += 1;
                    }
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            };
            assert!(n >= 3, "{name}: {n} packets");
            assert_eq!(end.is_some(), name.starts_with("cut"), "{name}: {end:?}");
        }
        for (name, bytes) in frames_for_decode() {
            let lt = if bytes[0] >= RAW_LINK_TYPE {
                u32::from_le_bytes(bytes[1..5].try_into().unwrap())
            } else {
                LINK_TYPES[usize::from(bytes[0])]
            };
            let data = if bytes[0] >= RAW_LINK_TYPE {
                &bytes[5..]
            } else {
                &bytes[1..]
            };
            let p = tapstream_ingest::RawPacket {
                ts_us: 0,
                link_type: lt,
                orig_len: data.len() as u32,
                data,
            };
            let mut rec = PacketRecord::default();
            let r = tapstream_ingest::decode(&p, &mut rec);
            assert!(r.is_ok(), "{name}: {r:?}");
        }
        let mut dec = FlowDecoder::new();
        let mut row = [0.0; tapstream_kernels::schema::NUM_FEATURES];
        let header = CSV_COLUMNS.join(",");
        for msg in [header, csv_row(), json_row()] {
            let r = dec.decode(msg.as_bytes(), &mut row);
            assert!(r.is_ok(), "{msg}: {r:?}");
        }
        assert!(matches!(
            dec.decode(csv_row().as_bytes(), &mut row),
            Ok(Decoded::Row(_))
        ));
    }

    /// Seeds decode as the targets read them.
    #[test]
    fn packets_inputs_round_trip() {
        for (target, name, bytes) in all() {
            if target == "kafka_packets" {
                let input = PacketsInput::parse(&bytes).expect(&name);
                assert_eq!(input.encode(), bytes, "{name}");
            }
        }
    }
}
