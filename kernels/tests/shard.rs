//! The shard processor end to end: configuration errors, chunking and
//! determinism, and real captures (every packet ends up in exactly one
//! flow, rows are finite and internally consistent).

mod common;

use std::path::PathBuf;

use proptest::prelude::*;
use tapstream_ingest::flow::FlowConfig;
use tapstream_ingest::packet::proto;
use tapstream_ingest::{decode, CaptureReader, EndReason, PacketRecord};
use tapstream_kernels::schema::{idx, NUM_FEATURES};
use tapstream_kernels::shard::ShardError;
use tapstream_kernels::{FlowBatch, ShardProcessor};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Decoded records of a shared capture, or None when the data is absent.
fn capture(rel: &str) -> Option<Vec<PacketRecord>> {
    let path = repo_root().join("../shared/data").join(rel);
    if !path.is_file() {
        eprintln!("{} not present; skipping", path.display());
        return None;
    }
    let mut r = CaptureReader::open(&path).expect("capture opens");
    let mut out = Vec::new();
    while let Some(p) = r.next_packet().expect("capture reads") {
        let mut rec = PacketRecord::default();
        if decode(&p, &mut rec).is_ok() {
            out.push(rec);
        }
    }
    Some(out)
}

fn run_records(recs: &[PacketRecord], cfg: FlowConfig) -> (FlowBatch, ShardProcessor) {
    let mut shard = ShardProcessor::new(cfg, 3).expect("valid config");
    let mut out = FlowBatch::default();
    shard.process(recs, &mut out);
    shard.flush(&mut out);
    (out, shard)
}

#[test]
fn invalid_config_is_an_error() {
    let cfg = FlowConfig {
        flow_timeout_us: -5,
        ..FlowConfig::default()
    };
    let err = ShardProcessor::new(cfg, 0).expect_err("negative timeout");
    assert!(matches!(err, ShardError::Config(_)));
    assert!(err.to_string().contains("flow timeout"), "{err}");
}

#[test]
fn stats_and_advance() {
    let (a, b) = (common::v4(10, 0, 0, 1), common::v4(10, 0, 0, 2));
    let recs = common::records(&[
        (0, tapstream_ingest::pcapgen::Frame::udp(a, b, 1, 2, 10)),
        (5, tapstream_ingest::pcapgen::Frame::udp(b, a, 2, 1, 10)),
        (9, tapstream_ingest::pcapgen::Frame::udp(a, b, 3, 2, 10)),
    ]);
    let mut shard = ShardProcessor::new(FlowConfig::default(), 7).expect("valid");
    let mut out = FlowBatch::default();
    shard.process(&recs, &mut out);
    let s = shard.stats();
    assert_eq!(
        (s.shard_id, s.active_flows, s.flows_created, s.packets),
        (7, 2, 2, 3)
    );
    assert!(out.is_empty());
    // Idle for more than the flow timeout: both flows end.
    shard.advance(
        common::T0 + 9 + FlowConfig::DEFAULT_FLOW_TIMEOUT_US + 1,
        &mut out,
    );
    assert_eq!(out.len(), 2);
    assert!(out.metas.iter().all(|m| m.reason == EndReason::IdleTimeout));
    let s = shard.stats();
    assert_eq!(
        (
            s.active_flows,
            s.ended_for(EndReason::IdleTimeout),
            s.ended_total()
        ),
        (0, 2, 2)
    );
    assert_eq!(out.rows.len(), 2 * NUM_FEATURES);
}

fn same_batches(a: &FlowBatch, b: &FlowBatch) -> bool {
    a.metas == b.metas
        && a.rows.len() == b.rows.len()
        && a.rows
            .iter()
            .zip(&b.rows)
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn output_is_deterministic_across_tables() {
    // Each table hashes with its own random key; outputs must not depend on it.
    let Some(recs) = capture("lab/benign/http_ab.pcap") else {
        return;
    };
    let small = FlowConfig {
        max_flows: 7,
        ..FlowConfig::default()
    };
    let (a, _) = run_records(&recs, small);
    let (b, _) = run_records(&recs, small);
    assert!(same_batches(&a, &b));
    assert!(a.metas.iter().any(|m| m.reason == EndReason::Evicted));
}

/// Checks conservation and internal consistency of a capture's flows.
fn check_capture(rel: &str) {
    let Some(recs) = capture(rel) else {
        return;
    };
    let (out, shard) = run_records(&recs, FlowConfig::default());
    let s = shard.stats();
    assert_eq!(s.packets, recs.len() as u64, "{rel}");
    assert_eq!(s.flows_created, out.len() as u64, "{rel}");
    let pkts: u64 = out.metas.iter().map(|m| m.packets()).sum();
    assert_eq!(
        pkts,
        recs.len() as u64,
        "{rel}: every packet in exactly one flow"
    );
    for (i, m) in out.metas.iter().enumerate() {
        let r = out.row(i).expect("row");
        let ctx = format!("{rel} flow {i} {m:?}");
        assert!(r.iter().all(|v| v.is_finite()), "{ctx}");
        assert_eq!(r[idx::TOTAL_FWD_PACKET], m.pkts_fwd as f64, "{ctx}");
        assert_eq!(r[idx::TOTAL_BWD_PACKETS], m.pkts_bwd as f64, "{ctx}");
        assert_eq!(
            r[idx::FLOW_DURATION],
            (m.last_us - m.start_us) as f64,
            "{ctx}"
        );
        if m.proto == proto::TCP {
            assert!(
                r[idx::TOTAL_TCP_FLOW_TIME] >= r[idx::FLOW_DURATION],
                "{ctx}"
            );
        } else {
            assert_eq!(r[idx::TOTAL_TCP_FLOW_TIME], 0.0, "{ctx}");
        }
        assert!(
            r[idx::SUBFLOW_FWD_PACKETS] <= 1.0 && r[idx::SUBFLOW_BWD_PACKETS] <= 1.0,
            "{ctx}"
        );
        let var = r[idx::PACKET_LENGTH_VARIANCE];
        assert!(
            (r[idx::PACKET_LENGTH_STD].powi(2) - var).abs() <= 1e-9 * var.max(1.0),
            "{ctx}"
        );
        assert!(
            r[idx::PACKET_LENGTH_MIN] <= r[idx::PACKET_LENGTH_MEAN] + 1e-9,
            "{ctx}"
        );
        assert!(
            r[idx::PACKET_LENGTH_MEAN] <= r[idx::PACKET_LENGTH_MAX] + 1e-9,
            "{ctx}"
        );
        if m.packets() > 1 {
            assert!(
                r[idx::FLOW_IAT_MIN] <= r[idx::FLOW_IAT_MEAN] + 1e-9,
                "{ctx}"
            );
            assert!(
                r[idx::FLOW_IAT_MEAN] <= r[idx::FLOW_IAT_MAX] + 1e-9,
                "{ctx}"
            );
        }
        assert!(
            r[idx::IDLE_MIN] == 0.0 || r[idx::IDLE_MIN] > 5_000_000.0,
            "{ctx}"
        );
        assert!(
            r[idx::FWD_ACT_DATA_PKTS] <= r[idx::TOTAL_FWD_PACKET],
            "{ctx}"
        );
    }
}

#[test]
fn lab_captures() {
    for rel in [
        "lab/benign/dns_dig.pcap",
        "lab/benign/http_ab.pcap",
        "lab/benign/http_curl.pcap",
        "lab/benign/iperf3_tcp.pcap",
        "lab/benign/iperf3_udp.pcap",
        "lab/benign/ping.pcap",
        "lab/benign/ssh_login.pcap",
    ] {
        check_capture(rel);
    }
}

#[test]
fn lab_attack_captures() {
    let dir = repo_root().join("../shared/data/lab/attack");
    let Ok(kinds) = std::fs::read_dir(&dir) else {
        eprintln!("{} not present; skipping", dir.display());
        return;
    };
    let mut n = 0;
    for kind in kinds.flatten() {
        for f in std::fs::read_dir(kind.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.ends_with(".pcap") || name.ends_with(".pcapng") {
                let kind_name = kind.file_name().to_string_lossy().into_owned();
                check_capture(&format!("lab/attack/{kind_name}/{name}"));
                n += 1;
            }
        }
    }
    assert!(n > 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any split of the record stream into batches gives the same flows.
    #[test]
    fn chunking_does_not_change_output(cuts in proptest::collection::vec(0usize..400, 0..12)) {
        let Some(recs) = capture("lab/benign/ssh_login.pcap") else { return Ok(()); };
        let cfg = FlowConfig { max_flows: 3, ..FlowConfig::default() };
        let (whole, _) = run_records(&recs, cfg);
        let mut shard = ShardProcessor::new(cfg, 0).expect("valid");
        let mut out = FlowBatch::default();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(recs.len())).collect();
        cuts.sort_unstable();
        let mut start = 0;
        for c in cuts.into_iter().chain([recs.len()]) {
            shard.process(&recs[start..c], &mut out);
            start = c;
        }
        shard.flush(&mut out);
        prop_assert!(same_batches(&whole, &out));
    }
}
