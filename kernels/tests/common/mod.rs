//! Shared helpers for the kernels integration tests: hand-built captures go
//! through the production path (pcapgen frames → pcap bytes → capture reader
//! → decoder → shard processor).

#![allow(dead_code)]

use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr};

use tapstream_ingest::flow::FlowConfig;
use tapstream_ingest::pcapgen::{pcap_bytes, Frame};
use tapstream_ingest::{decode, CaptureReader, FlowMeta, PacketRecord};
use tapstream_kernels::{FlowBatch, ShardProcessor};

/// 2017-07-07 12:59:21 UTC, in µs: a CIC-IDS2017-era start time.
pub const T0: i64 = 1_499_432_361_000_000;

/// An IPv4 address.
pub fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Decodes a capture built from `frames` (µs offsets from [`T0`]) into records.
pub fn records(frames: &[(i64, Frame)]) -> Vec<PacketRecord> {
    let abs: Vec<(i64, Frame)> = frames.iter().map(|(t, f)| (T0 + t, f.clone())).collect();
    let bytes = pcap_bytes(&abs);
    let mut reader = CaptureReader::from_reader(Box::new(Cursor::new(bytes))).expect("pcap header");
    let mut out = Vec::new();
    while let Some(pkt) = reader.next_packet().expect("pcap record") {
        let mut rec = PacketRecord::default();
        decode(&pkt, &mut rec).expect("hand-built frames decode");
        out.push(rec);
    }
    assert_eq!(out.len(), frames.len());
    out
}

/// Runs `frames` through a shard with `cfg`; `advance_to` (offset from T0)
/// moves packet time before the final flush.
pub fn run_with(frames: &[(i64, Frame)], cfg: FlowConfig, advance_to: Option<i64>) -> FlowBatch {
    let mut shard = ShardProcessor::new(cfg, 0).expect("valid config");
    let mut out = FlowBatch::default();
    shard.process(&records(frames), &mut out);
    if let Some(t) = advance_to {
        shard.advance(T0 + t, &mut out);
    }
    shard.flush(&mut out);
    out
}

/// Runs `frames` with the default config and flushes.
pub fn run(frames: &[(i64, Frame)]) -> FlowBatch {
    run_with(frames, FlowConfig::default(), None)
}

/// The meta and row of flow `i`.
pub fn flow(batch: &FlowBatch, i: usize) -> (FlowMeta, Vec<f64>) {
    let meta = *batch.metas.get(i).expect("flow exists");
    (meta, batch.row(i).expect("row exists").to_vec())
}
