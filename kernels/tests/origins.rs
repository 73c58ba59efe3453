//! Origin tracking of a shard fed tagged input (the Kafka source's offset
//! bookkeeping rests on it): after every packet, the oldest open origin is
//! the smallest origin of a first packet among the flows still open, and
//! tagging changes nothing about the flows themselves.

mod common;

use common::{records, v4};
use proptest::prelude::*;
use tapstream_ingest::flow::FlowConfig;
use tapstream_ingest::packet::tcp_flags;
use tapstream_ingest::pcapgen::Frame;
use tapstream_kernels::shard::Output;
use tapstream_kernels::{FlowBatch, ShardProcessor};

/// A packet: host pair, port pair, TCP flags (0 for UDP), time step.
type Step = (u8, u8, u8, u64);

fn frame(&(hosts, ports, flags, _): &Step) -> Frame {
    let a = v4(198, 18, 0, 1 + hosts % 3);
    let b = v4(198, 18, 1, 1 + (hosts / 3) % 3);
    let (sport, dport) = (1000 + u16::from(ports % 4), 80 + u16::from(ports / 4 % 2));
    let (src, dst, sport, dport) = if ports & 8 != 0 {
        (b, a, dport, sport)
    } else {
        (a, b, sport, dport)
    };
    match flags % 5 {
        0 => Frame::udp(src, dst, sport, dport, 10),
        1 => Frame::tcp(src, dst, sport, dport, tcp_flags::SYN, 0),
        2 => Frame::tcp(src, dst, sport, dport, tcp_flags::FIN | tcp_flags::ACK, 0),
        3 => Frame::tcp(src, dst, sport, dport, tcp_flags::RST, 0),
        _ => Frame::tcp(src, dst, sport, dport, tcp_flags::ACK, 20),
    }
}

fn handoff(_: &mut FlowBatch) {}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn oldest_open_origin_matches_a_reference(
        steps in proptest::collection::vec((0u8..9, 0u8..16, 0u8..5, 1u64..40_000_000), 1..120),
        per_message in 1usize..6,
        max_flows in 2usize..12,
    ) {
        // Strictly increasing times (µs after T0), so a flow's start time
        // names its first packet.
        let mut t = 0i64;
        let frames: Vec<(i64, Frame)> = steps
            .iter()
            .map(|s| {
                t += s.3 as i64;
                (t, frame(s))
            })
            .collect();
        let recs = records(&frames);
        let tags: Vec<u64> = (0..recs.len()).map(|i| (i / per_message) as u64 + 7).collect();
        let cfg = FlowConfig {
            max_flows,
            flow_timeout_us: 60_000_000,
            tcp_close_linger_us: 5_000_000,
            ..FlowConfig::default()
        };

        let mut tagged = ShardProcessor::new(cfg, 0).expect("valid config");
        let mut out = FlowBatch::default();
        let mut ended_by = Vec::new(); // flows emitted after each packet
        let mut observed = Vec::new();
        for (i, rec) in recs.iter().enumerate() {
            let mut o = Output { batch: &mut out, max_flows: usize::MAX, handoff };
            tagged.process_tagged_into(std::slice::from_ref(rec), &tags[i..=i], &mut o);
            ended_by.push(out.len());
            observed.push(tagged.oldest_open_origin());
        }
        let mut o = Output { batch: &mut out, max_flows: usize::MAX, handoff };
        tagged.flush_into(&mut o);
        prop_assert_eq!(tagged.oldest_open_origin(), None);

        // The same flows and rows as untagged processing.
        let mut plain = ShardProcessor::new(cfg, 0).expect("valid config");
        let mut reference = FlowBatch::default();
        plain.process(&recs, &mut reference);
        plain.flush(&mut reference);
        prop_assert_eq!(&out.metas, &reference.metas);
        prop_assert_eq!(out.rows.len(), reference.rows.len());
        prop_assert!(out.rows.iter().zip(&reference.rows).all(|(a, b)| a.to_bits() == b.to_bits()));

        // Flow k is open after packet i when its first packet is at or before
        // i and it was emitted later.
        let first: Vec<usize> = out
            .metas
            .iter()
            .map(|m| recs.iter().position(|r| r.ts_us == m.start_us).expect("first packet"))
            .collect();
        for i in 0..recs.len() {
            let expected = (0..out.len())
                .filter(|&k| first[k] <= i && k >= ended_by[i])
                .map(|k| tags[first[k]])
                .min();
            prop_assert_eq!(observed[i], expected, "after packet {}", i);
        }
    }
}
