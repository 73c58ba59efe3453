//! Decoder threads change nothing: for any number of decoders, each shard
//! ends the same flows, in the same order, with the same features, and every
//! packet is accounted for.

use std::net::IpAddr;
use std::path::Path;

use tapstream_ingest::decode::pair_hash;
use tapstream_ingest::shard_of;

use crate::util::{bin, demo_pcap, output, shared_data};

/// A run's CSV rows (header left out) and its summary.
/// A `tapstream features` run: its rows (no header) and summary.
pub(crate) struct Run {
    pub(crate) rows: Vec<String>,
    pub(crate) summary: serde_json::Value,
}

/// `tapstream features` on `pcap` with that shape (and config), its files
/// in `dir`.
pub(crate) fn features(
    pcap: &Path,
    dir: &Path,
    workers: usize,
    decoders: usize,
    cfg: Option<&Path>,
) -> Run {
    let csv = dir.join(format!("w{workers}-d{decoders}.csv"));
    let json = dir.join(format!("w{workers}-d{decoders}.json"));
    let mut cmd = bin();
    cmd.args(["features", "--quiet", "--pcap"])
        .arg(pcap)
        .arg("--out")
        .arg(&csv)
        .arg("--summary-json")
        .arg(&json)
        .args(["--workers", &workers.to_string()])
        .args(["--decoders", &decoders.to_string()]);
    if let Some(c) = cfg {
        cmd.arg("--config").arg(c);
    }
    let o = output(&mut cmd);
    assert!(
        o.status.success(),
        "{}: {}",
        pcap.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let summary = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    Run {
        rows: text.lines().skip(1).map(str::to_string).collect(),
        summary,
    }
}

/// The shard that owned a CSV row's flow (from its address pair, as the
/// decoder hashes it).
fn shard_of_row(row: &str, shards: usize) -> usize {
    let c: Vec<&str> = row.split(',').collect();
    let addr = |s: &str| -> ([u8; 16], bool) {
        match s.parse::<IpAddr>().unwrap() {
            IpAddr::V4(a) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.octets());
                (b, false)
            }
            IpAddr::V6(a) => (a.octets(), true),
        }
    };
    let (src, v6) = addr(c[1]);
    let (dst, _) = addr(c[3]);
    shard_of(pair_hash(&src, &dst, v6), shards)
}

/// Rows grouped by shard, each group in output order.
fn by_shard(rows: &[String], shards: usize) -> Vec<Vec<&str>> {
    let mut out = vec![Vec::new(); shards];
    for r in rows {
        out[shard_of_row(r, shards)].push(r.as_str());
    }
    out
}

fn assert_accounted(run: &Run, what: &str) {
    let s = &run.summary;
    assert_eq!(s["accounted"], true, "{what}: {s}");
    let skipped: u64 = s["skipped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        s["decoded"].as_u64().unwrap() + s["defrag"]["fragments"].as_u64().unwrap() + skipped,
        s["packets"].as_u64().unwrap(),
        "{what}: {s}"
    );
}

/// Runs `pcap` with 1 and 3 decoders (and with tiny chunks and queues, so
/// that ticks, chunk boundaries and back-pressure all come into play) on 1
/// and 3 workers, and compares every run with the single decoder's.
fn check_capture(pcap: &Path, dir: &Path) -> usize {
    let small = dir.join("small.toml");
    std::fs::write(
        &small,
        "[pipeline]\nbatch_packets = 64\nqueue_batches = 1\n",
    )
    .unwrap();
    let mut flows = 0;
    for workers in [1, 3] {
        let reference = features(pcap, dir, workers, 1, None);
        assert_accounted(&reference, "1 decoder");
        assert_eq!(reference.summary["decoders"], 1);
        let expected = by_shard(&reference.rows, workers);
        for (decoders, cfg) in [
            (3, None),
            (3, Some(small.as_path())),
            (2, Some(small.as_path())),
        ] {
            let what = format!(
                "{}: {workers} workers, {decoders} decoders{}",
                pcap.display(),
                if cfg.is_some() { ", small chunks" } else { "" }
            );
            let run = features(pcap, dir, workers, decoders, cfg);
            assert_accounted(&run, &what);
            assert_eq!(run.summary["decoders"], decoders, "{what}");
            for key in [
                "packets",
                "decoded",
                "packets_in_flows",
                "flows",
                "skipped",
                "defrag",
            ] {
                assert_eq!(run.summary[key], reference.summary[key], "{what}: {key}");
            }
            if workers == 1 {
                // One shard: the whole output, in order.
                assert_eq!(run.rows, reference.rows, "{what}");
            }
            assert_eq!(by_shard(&run.rows, workers), expected, "{what}");
        }
        flows = reference.rows.len();
    }
    flows
}

#[test]
fn flows_do_not_depend_on_the_number_of_decoders() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = demo_pcap(dir.path());
    assert!(check_capture(&pcap, dir.path()) > 1000);
}

#[test]
fn shared_captures_decode_the_same_on_several_decoders() {
    let Some(data) = shared_data("shared_captures_decode_the_same_on_several_decoders") else {
        return;
    };
    // Long and gappy lab captures, IPv6 with extension headers, fragments,
    // several link types, pcapng and gzip.
    for rel in [
        "lab/attack/portscan/nmap_sS.pcap",
        "lab/benign/http_ab.pcap",
        "pcaps/attack/dos/sv__ipv6-dos-with-ext-headers-5__denial6-5.pcap",
        "pcaps/edge/decoder/pcpp__ip-frag.pcap",
        "pcaps/edge/decoder/pcpp__example.pcap",
        "pcaps/attack/amplification/stopddos__amp.UDP.bacnet.IOT.37810.pcapng",
        "pcaps/edge/linktype_or_format/zeek__echo-connections.pcap.gz",
    ] {
        let dir = tempfile::tempdir().unwrap();
        check_capture(&data.join(rel), dir.path());
    }
}
