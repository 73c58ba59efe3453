//! Measures the host memory an open flow costs a CPU shard, so the figure
//! `[flow] memcap_mib` divides by ([`ShardProcessor::BYTES_PER_FLOW`], a sum
//! of type sizes and allocator slack) is checked against what the process
//! really holds: the resident set's growth while a shard fills with
//! distinct one-packet flows. A test binary of its own with one test, so no
//! other test allocates while it measures.

use tapstream_ingest::decode::flow_hash;
use tapstream_ingest::flow::FlowConfig;
use tapstream_ingest::packet::proto;
use tapstream_ingest::PacketRecord;
use tapstream_kernels::{FlowBatch, ShardProcessor};

/// `VmRSS` of this process in bytes, or None off Linux.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A UDP packet from host `i` (distinct for every `i`) to one server.
fn packet(i: u32) -> PacketRecord {
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src[..4].copy_from_slice(&(0x0a00_0000 | i).to_be_bytes());
    dst[..4].copy_from_slice(&[192, 0, 2, 1]);
    PacketRecord {
        ts_us: 1_700_000_000_000_000 + i64::from(i),
        hash: flow_hash(&src, &dst, 4000, 53, proto::UDP, false),
        src,
        dst,
        payload_len: 32,
        wire_len: 74,
        sport: 4000,
        dport: 53,
        header_len: 8,
        proto: proto::UDP,
        ..PacketRecord::default()
    }
}

#[test]
fn an_open_flow_costs_at_most_bytes_per_flow() {
    // Large enough that fixed costs vanish, just past a hash table doubling
    // (2^18 buckets hold 229,376 entries) where the index is least full,
    // and a whole number of 4096-slot chunks (no rounding slack).
    const FLOWS: u32 = 57 * 4096;
    let Some(_) = rss_bytes() else {
        eprintln!("no /proc/self/status: nothing to measure on this system");
        return;
    };
    let recs: Vec<PacketRecord> = (0..FLOWS).map(packet).collect();
    let cfg = FlowConfig {
        max_flows: FLOWS as usize,
        ..FlowConfig::default()
    };
    let mut shard = ShardProcessor::new(cfg, 0).expect("valid config");
    let mut out = FlowBatch::default();
    let before = rss_bytes().unwrap_or(0);
    shard.process(&recs, &mut out);
    let after = rss_bytes().unwrap_or(0);
    let s = shard.stats();
    assert_eq!((s.active_flows, s.evictions), (u64::from(FLOWS), 0));
    assert!(out.is_empty());
    let per_flow = after.saturating_sub(before) as f64 / f64::from(FLOWS);
    eprintln!(
        "{FLOWS} open flows: resident set grew {:.1} MiB, {per_flow:.0} bytes per flow \
         (BYTES_PER_FLOW = {})",
        after.saturating_sub(before) as f64 / f64::from(1u32 << 20),
        ShardProcessor::BYTES_PER_FLOW
    );
    assert!(
        per_flow <= ShardProcessor::BYTES_PER_FLOW as f64,
        "an open flow costs {per_flow:.0} bytes, more than BYTES_PER_FLOW = {}",
        ShardProcessor::BYTES_PER_FLOW
    );
    // Most of it is the slot and the accumulator: a much smaller growth
    // would mean the measurement missed the flows.
    assert!(
        per_flow >= 0.8 * ShardProcessor::BYTES_PER_FLOW as f64,
        "only {per_flow:.0} bytes per flow measured"
    );
}
