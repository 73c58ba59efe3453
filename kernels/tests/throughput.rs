//! Single-core throughput of the CPU flow stage (flow table + extractor) on
//! realistic traffic: the lab captures, replicated with shifted addresses
//! and times so that many flows are open at once. Ignored by default; run
//!
//! ```text
//! cargo test --release -p tapstream-kernels --test throughput -- --ignored --nocapture
//! ```

use std::path::PathBuf;
use std::time::Instant;

use tapstream_ingest::decode::flow_hash;
use tapstream_ingest::flow::FlowConfig;
use tapstream_ingest::{decode, CaptureReader, PacketRecord};
use tapstream_kernels::{FlowBatch, ShardProcessor};

fn load(rel: &str) -> Vec<PacketRecord> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/lab")
        .join(rel);
    let Ok(mut r) = CaptureReader::open(&path) else {
        eprintln!("{} not present", path.display());
        return Vec::new();
    };
    let mut out = Vec::new();
    while let Ok(Some(p)) = r.next_packet() {
        let mut rec = PacketRecord::default();
        if decode(&p, &mut rec).is_ok() {
            out.push(rec);
        }
    }
    // Start every capture at time 0.
    if let Some(t0) = out.iter().map(|r| r.ts_us).min() {
        for r in &mut out {
            r.ts_us -= t0;
        }
    }
    out
}

/// `copies` shifted copies of `base`, merged in time order.
fn replicate(base: &[PacketRecord], copies: u32, spacing_us: i64) -> Vec<PacketRecord> {
    let mut out = Vec::with_capacity(base.len() * copies as usize);
    for k in 0..copies {
        for r in base {
            let mut r = *r;
            // Move both endpoints into another /16 per copy: flows stay
            // bidirectional and distinct.
            r.src[1] ^= (k & 0xff) as u8;
            r.dst[1] ^= (k & 0xff) as u8;
            r.src[2] ^= (k >> 8) as u8;
            r.dst[2] ^= (k >> 8) as u8;
            r.ts_us += 1_500_000_000_000_000 + i64::from(k) * spacing_us;
            r.hash = flow_hash(&r.src, &r.dst, r.sport, r.dport, r.proto, r.v6);
            out.push(r);
        }
    }
    out.sort_by_key(|r| r.ts_us);
    out
}

fn measure(name: &str, recs: &[PacketRecord], cfg: FlowConfig) {
    if recs.is_empty() {
        return;
    }
    let (mut best, mut best_flush) = (f64::MAX, f64::MAX);
    let mut flows = 0;
    for _ in 0..3 {
        let mut shard = ShardProcessor::new(cfg, 0).expect("valid config");
        let mut out = FlowBatch::with_capacity(4096);
        let start = Instant::now();
        for chunk in recs.chunks(4096) {
            shard.process(chunk, &mut out);
            flows += out.len();
            out.clear();
        }
        let processed = Instant::now();
        shard.flush(&mut out);
        flows += out.len();
        best = best.min(processed.duration_since(start).as_secs_f64());
        best_flush = best_flush.min(processed.elapsed().as_secs_f64());
    }
    println!(
        "{name}: {} packets, {} flows/run; process best {:.3} s = {:.2} M packets/s; final flush {:.3} s",
        recs.len(),
        flows / 3,
        best,
        recs.len() as f64 / best / 1e6,
        best_flush
    );
}

#[test]
#[ignore = "benchmark; run in release with --ignored --nocapture"]
fn cpu_flow_stage_throughput() {
    let benign: Vec<PacketRecord> = [
        "benign/http_curl.pcap",
        "benign/http_ab.pcap",
        "benign/dns_dig.pcap",
        "benign/iperf3_tcp.pcap",
        "benign/iperf3_udp.pcap",
        "benign/ssh_login.pcap",
        "benign/ping.pcap",
    ]
    .iter()
    .flat_map(|p| load(p))
    .collect();
    measure(
        "benign lab mix ×200",
        &replicate(&benign, 200, 50_000),
        FlowConfig::default(),
    );

    let attack: Vec<PacketRecord> = [
        "attack/synflood/hping3_syn.pcap",
        "attack/udpflood/hping3_udp.pcap",
        "attack/icmpflood/hping3_icmp.pcap",
        "attack/httpflood/ab_http.pcap",
        "attack/slowloris/slowhttptest.pcap",
        "attack/portscan/nmap_sS.pcap",
        "attack/dnsflood/dnsperf.pcap",
    ]
    .iter()
    .flat_map(|p| load(p))
    .collect();
    let mut all = benign;
    all.extend(attack);
    let mix = replicate(&all, 16, 200_000);
    measure("benign + attack lab mix ×16", &mix, FlowConfig::default());
    let small = FlowConfig {
        max_flows: 1 << 16,
        ..FlowConfig::default()
    };
    measure(
        "benign + attack lab mix ×16, 2^16 flows (eviction steady state)",
        &mix,
        small,
    );
}
