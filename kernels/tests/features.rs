//! Every feature, checked against a value worked out by hand, on small
//! captures built with pcapgen and read through the real reader, decoder,
//! flow table and extractor.
//!
//! Each scenario's expectations are a list of `(feature index, value)` with
//! the arithmetic in comments; `every_feature_is_checked` fails if some
//! feature index appears in no list.

mod common;

use std::collections::BTreeSet;

use common::{flow, run, run_with, v4};
use tapstream_ingest::flow::FlowConfig;
use tapstream_ingest::packet::tcp_flags::*;
use tapstream_ingest::pcapgen::Frame;
use tapstream_ingest::EndReason;
use tapstream_kernels::schema::{idx::*, Kind, FEATURES, NUM_FEATURES};

type Expect = Vec<(usize, f64)>;

/// Compares the listed features; integers exactly, floats to 1e-12 relative.
fn check(what: &str, row: &[f64], expect: &Expect) {
    assert_eq!(row.len(), NUM_FEATURES);
    let mut bad = Vec::new();
    for &(i, want) in expect {
        let got = row[i];
        let ok = match FEATURES[i].1 {
            Kind::Integer => got == want,
            Kind::Float => (got - want).abs() <= 1e-12 * want.abs().max(1.0),
        };
        if !ok {
            bad.push(format!("{} [{i}]: got {got}, want {want}", FEATURES[i].0));
        }
    }
    assert!(bad.is_empty(), "{what}:\n  {}", bad.join("\n  "));
}

// ---------------------------------------------------------------------------
// Scenario A: a complete TCP session (handshake with ECN, data both ways,
// FIN/FIN/ACK teardown), ended by the close linger.

const LINGER: i64 = FlowConfig::DEFAULT_TCP_CLOSE_LINGER_US;

fn session_a() -> Vec<(i64, Frame)> {
    let (c, s) = (v4(192, 168, 10, 5), v4(192, 168, 10, 50));
    let fwd = |flags, payload| Frame::tcp(c, s, 40000, 80, flags, payload);
    let bwd = |flags, payload| Frame::tcp(s, c, 80, 40000, flags, payload);
    vec![
        // t µs   packet                                            hdr payload
        (
            0,
            fwd(SYN | ECE | CWR, 0)
                .with_window(29200)
                .with_tcp_options(20),
        ), // 40  0
        (
            1_000,
            bwd(SYN | ACK | ECE, 0)
                .with_window(28960)
                .with_tcp_options(20),
        ), // 40  0
        (2_000, fwd(ACK, 0).with_window(229).with_tcp_options(12)), // 32  0
        (
            3_000,
            fwd(PSH | ACK | URG, 100)
                .with_window(229)
                .with_tcp_options(12),
        ), // 32 100
        (5_000, bwd(ACK, 0).with_window(227).with_tcp_options(12)), // 32  0
        (
            6_000,
            bwd(PSH | ACK | URG, 300)
                .with_window(235)
                .with_tcp_options(12),
        ), // 32 300
        (
            10_000,
            fwd(FIN | ACK, 0).with_window(229).with_tcp_options(12),
        ), // 32  0
        (
            11_000,
            bwd(FIN | ACK, 0).with_window(240).with_tcp_options(12),
        ), // 32  0
        (12_000, fwd(ACK, 0).with_window(229).with_tcp_options(12)), // 32  0
    ]
}

fn expect_a() -> Expect {
    vec![
        (SRC_PORT, 40000.0),
        (DST_PORT, 80.0),
        (PROTOCOL, 6.0),
        // Last packet 12000 µs after the first.
        (FLOW_DURATION, 12_000.0),
        // Forward: p1 p3 p4 p7 p9; backward: p2 p5 p6 p8.
        (TOTAL_FWD_PACKET, 5.0),
        (TOTAL_BWD_PACKETS, 4.0),
        // Payload bytes: forward 100 (p4), backward 300 (p6).
        (TOTAL_LENGTH_OF_FWD_PACKET, 100.0),
        (TOTAL_LENGTH_OF_BWD_PACKET, 300.0),
        // Forward lengths [0,0,100,0,0]: mean 100/5 = 20;
        // var = (5·10000 − 100²)/(5·4) = 40000/20 = 2000.
        (FWD_PACKET_LENGTH_MAX, 100.0),
        (FWD_PACKET_LENGTH_MIN, 0.0),
        (FWD_PACKET_LENGTH_MEAN, 20.0),
        (FWD_PACKET_LENGTH_STD, 2000f64.sqrt()),
        // Backward [0,0,300,0]: mean 75; var = (4·90000 − 300²)/(4·3) = 22500.
        (BWD_PACKET_LENGTH_MAX, 300.0),
        (BWD_PACKET_LENGTH_MIN, 0.0),
        (BWD_PACKET_LENGTH_MEAN, 75.0),
        (BWD_PACKET_LENGTH_STD, 150.0),
        // 400 bytes and 9 packets in 0.012 s.
        (FLOW_BYTES_S, 400.0 / 0.012),
        (FLOW_PACKETS_S, 9.0 / 0.012),
        // Gaps: 1000 1000 1000 2000 1000 4000 1000 1000 (Σ 12000, Σ² 26e6):
        // mean 1500; var = (8·26e6 − 12000²)/(8·7) = 64e6/56.
        (FLOW_IAT_MEAN, 1_500.0),
        (FLOW_IAT_STD, (64e6f64 / 56.0).sqrt()),
        (FLOW_IAT_MAX, 4_000.0),
        (FLOW_IAT_MIN, 1_000.0),
        // Forward times 0 2000 3000 10000 12000 → gaps 2000 1000 7000 2000
        // (Σ 12000, Σ² 58e6): var = (4·58e6 − 144e6)/(4·3) = 88e6/12.
        (FWD_IAT_TOTAL, 12_000.0),
        (FWD_IAT_MEAN, 3_000.0),
        (FWD_IAT_STD, (88e6f64 / 12.0).sqrt()),
        (FWD_IAT_MAX, 7_000.0),
        (FWD_IAT_MIN, 1_000.0),
        // Backward times 1000 5000 6000 11000 → gaps 4000 1000 5000
        // (Σ 10000, Σ² 42e6): var = (3·42e6 − 1e8)/(3·2) = 26e6/6.
        (BWD_IAT_TOTAL, 10_000.0),
        (BWD_IAT_MEAN, 10_000.0 / 3.0),
        (BWD_IAT_STD, (26e6f64 / 6.0).sqrt()),
        (BWD_IAT_MAX, 5_000.0),
        (BWD_IAT_MIN, 1_000.0),
        // PSH and URG on p4 (forward) and p6 (backward).
        (FWD_PSH_FLAGS, 1.0),
        (BWD_PSH_FLAGS, 1.0),
        (FWD_URG_FLAGS, 1.0),
        (BWD_URG_FLAGS, 1.0),
        // Header bytes: forward 40 + 4·32 = 168, backward 40 + 3·32 = 136.
        (FWD_HEADER_LENGTH, 168.0),
        (BWD_HEADER_LENGTH, 136.0),
        (FWD_PACKETS_S, 5.0 / 0.012),
        (BWD_PACKETS_S, 4.0 / 0.012),
        // All 9 lengths: Σ 400, Σ² 100000: mean 400/9;
        // var = (9·100000 − 400²)/(9·8) = 740000/72.
        (PACKET_LENGTH_MIN, 0.0),
        (PACKET_LENGTH_MAX, 300.0),
        (PACKET_LENGTH_MEAN, 400.0 / 9.0),
        (PACKET_LENGTH_STD, (740_000f64 / 72.0).sqrt()),
        (PACKET_LENGTH_VARIANCE, 740_000.0 / 72.0),
        // FIN p7 p8; SYN p1 p2; PSH p4 p6; ACK p2..p9; URG p4 p6; CWR p1; ECE p1 p2.
        (FIN_FLAG_COUNT, 2.0),
        (SYN_FLAG_COUNT, 2.0),
        (RST_FLAG_COUNT, 0.0),
        (PSH_FLAG_COUNT, 2.0),
        (ACK_FLAG_COUNT, 8.0),
        (URG_FLAG_COUNT, 2.0),
        (CWR_FLAG_COUNT, 1.0),
        (ECE_FLAG_COUNT, 2.0),
        (DOWN_UP_RATIO, 4.0 / 5.0),
        (AVERAGE_PACKET_SIZE, 400.0 / 9.0),
        (FWD_SEGMENT_SIZE_AVG, 100.0 / 5.0),
        (BWD_SEGMENT_SIZE_AVG, 300.0 / 4.0),
        // Never 4 payload packets in a row in one direction: no bulk.
        (FWD_BYTES_BULK_AVG, 0.0),
        (FWD_PACKET_BULK_AVG, 0.0),
        (FWD_BULK_RATE_AVG, 0.0),
        (BWD_BYTES_BULK_AVG, 0.0),
        (BWD_PACKET_BULK_AVG, 0.0),
        (BWD_BULK_RATE_AVG, 0.0),
        // One "subflow" per packet (CIC e19a160): trunc(5/9) = 0,
        // trunc(100/9) = 11, trunc(4/9) = 0, trunc(300/9) = 33.
        (SUBFLOW_FWD_PACKETS, 0.0),
        (SUBFLOW_FWD_BYTES, 11.0),
        (SUBFLOW_BWD_PACKETS, 0.0),
        (SUBFLOW_BWD_BYTES, 33.0),
        // First packet's window forward; the *last* backward window (p8).
        (FWD_INIT_WIN_BYTES, 29_200.0),
        (BWD_INIT_WIN_BYTES, 240.0),
        // Forward payload packets after the first: p4.
        (FWD_ACT_DATA_PKTS, 1.0),
        // Smallest forward header: 32.
        (FWD_SEG_SIZE_MIN, 32.0),
        // No gap above the 5 s activity timeout: no active or idle period.
        (ACTIVE_MEAN, 0.0),
        (ACTIVE_STD, 0.0),
        (ACTIVE_MAX, 0.0),
        (ACTIVE_MIN, 0.0),
        (IDLE_MEAN, 0.0),
        (IDLE_STD, 0.0),
        (IDLE_MAX, 0.0),
        (IDLE_MIN, 0.0),
        // Not ICMP.
        (ICMP_CODE, -1.0),
        (ICMP_TYPE, -1.0),
        // A whole connection in one flow: its own duration.
        (TOTAL_TCP_FLOW_TIME, 12_000.0),
    ]
}

#[test]
fn tcp_session() {
    // Packet time moves past the linger after the final ACK (t = 12000).
    let batch = run_with(
        &session_a(),
        FlowConfig::default(),
        Some(12_000 + LINGER + 1),
    );
    assert_eq!(batch.len(), 1);
    let (meta, row) = flow(&batch, 0);
    assert_eq!(meta.reason, EndReason::TcpTermination);
    assert_eq!((meta.pkts_fwd, meta.pkts_bwd), (5, 4));
    check("session A", &row, &expect_a());
}

// ---------------------------------------------------------------------------
// Scenario B: bulk transfers both ways, two idle gaps over the 5 s activity
// timeout, and a backward RST.

fn session_b() -> Vec<(i64, Frame)> {
    let (c, s) = (v4(172, 16, 0, 1), v4(192, 168, 10, 50));
    let fwd = |flags, payload| Frame::tcp(c, s, 51000, 21, flags, payload);
    let bwd = |flags, payload| Frame::tcp(s, c, 21, 51000, flags, payload);
    vec![
        (0, fwd(SYN, 0)),
        (100, bwd(SYN | ACK, 0)),
        (200, fwd(ACK, 10)),
        (1_000, bwd(ACK, 1000)),
        (101_000, bwd(ACK, 1000)),
        (201_000, bwd(ACK, 1000)),
        (301_000, bwd(ACK, 1000)),
        (501_000, bwd(PSH | ACK, 500)),
        (6_501_000, fwd(ACK, 20)),
        (6_563_500, fwd(ACK, 20)),
        (6_626_000, fwd(ACK, 20)),
        (6_688_500, fwd(ACK, 20)),
        (13_688_500, bwd(RST | ACK, 0)),
    ]
}

fn expect_b() -> Expect {
    vec![
        (FLOW_DURATION, 13_688_500.0),
        // RST on a backward packet (not the flow's first).
        (FWD_RST_FLAGS, 0.0),
        (BWD_RST_FLAGS, 1.0),
        (RST_FLAG_COUNT, 1.0),
        // Forward bulk: the backward bulk (last at 501000) cancels the
        // candidate started at 200; 4 packets of 20 B from 6501000 to
        // 6688500 form one bulk of 80 B lasting 187500 µs = 0.1875 s:
        // rate trunc(80 / 0.1875) = trunc(426.67) = 426.
        (FWD_BYTES_BULK_AVG, 80.0),
        (FWD_PACKET_BULK_AVG, 4.0),
        (FWD_BULK_RATE_AVG, 426.0),
        // Backward bulk: 4 × 1000 B from 1000 to 301000 (300000 µs), then
        // one more packet of 500 B (+200000 µs): one bulk, 5 packets,
        // 4500 B, 0.5 s: 4500 / 0.5 = 9000 B/s.
        (BWD_BYTES_BULK_AVG, 4_500.0),
        (BWD_PACKET_BULK_AVG, 5.0),
        (BWD_BULK_RATE_AVG, 9_000.0),
        // Gap 501000 → 6501000 (6 s > 5 s): active [0, 501000] = 501000,
        // idle 6000000. Gap 6688500 → 13688500 (7 s): active
        // [6501000, 6688500] = 187500, idle 7000000. The last active
        // period is never closed (CIC calls no endActiveIdleTime).
        // Two values a, b: sample std = |a − b| / √2.
        (ACTIVE_MEAN, (501_000.0 + 187_500.0) / 2.0),
        (ACTIVE_STD, 313_500.0 / 2f64.sqrt()),
        (ACTIVE_MAX, 501_000.0),
        (ACTIVE_MIN, 187_500.0),
        (IDLE_MEAN, 6_500_000.0),
        (IDLE_STD, 1_000_000.0 / 2f64.sqrt()),
        (IDLE_MAX, 7_000_000.0),
        (IDLE_MIN, 6_000_000.0),
        // Forward payload packets after the first: 200, and four at 65xxxxx.
        (FWD_ACT_DATA_PKTS, 5.0),
        (TOTAL_TCP_FLOW_TIME, 13_688_500.0),
    ]
}

#[test]
fn bulk_active_idle_and_rst() {
    let batch = run_with(
        &session_b(),
        FlowConfig::default(),
        Some(13_688_500 + LINGER + 1),
    );
    assert_eq!(batch.len(), 1);
    let (meta, row) = flow(&batch, 0);
    assert_eq!(
        meta.reason,
        EndReason::TcpTermination,
        "RST, then the linger"
    );
    check("session B", &row, &expect_b());
}

// ---------------------------------------------------------------------------
// Scenario C: a TCP connection split by the 120 s active timeout; the
// continuation flow keeps the client as source although its first packet
// comes from the server.

fn session_c() -> Vec<(i64, Frame)> {
    let (c, s) = (v4(192, 168, 10, 9), v4(192, 168, 10, 50));
    let fwd = |flags, payload| Frame::tcp(c, s, 45000, 443, flags, payload);
    let bwd = |flags, payload| Frame::tcp(s, c, 443, 45000, flags, payload);
    vec![
        (0, fwd(SYN, 0).with_window(1000).with_tcp_options(20)),
        (
            1_000,
            bwd(SYN | ACK, 0).with_window(2000).with_tcp_options(20),
        ),
        (2_000, fwd(ACK, 0).with_window(1000)),
        // More than 120 s after the start: ends flow 1, opens flow 2.
        (120_000_001, bwd(PSH | ACK, 50).with_window(3000)),
        (120_001_001, fwd(PSH | ACK, 5).with_window(1500)),
        (120_002_001, bwd(FIN | ACK, 0).with_window(3500)),
    ]
}

fn expect_c_first() -> Expect {
    vec![
        (FLOW_DURATION, 2_000.0),
        (FWD_INIT_WIN_BYTES, 1_000.0),
        (BWD_INIT_WIN_BYTES, 2_000.0),
        // Headers 40 (SYN) and 20 (ACK).
        (FWD_SEG_SIZE_MIN, 20.0),
        (FWD_ACT_DATA_PKTS, 0.0),
        (TOTAL_TCP_FLOW_TIME, 2_000.0),
    ]
}

fn expect_c_second() -> Expect {
    vec![
        (SRC_PORT, 45_000.0),
        (DST_PORT, 443.0),
        (TOTAL_FWD_PACKET, 1.0),
        (TOTAL_BWD_PACKETS, 2.0),
        (FLOW_DURATION, 2_000.0),
        // CIC only sets the forward window from a forward first packet.
        (FWD_INIT_WIN_BYTES, 0.0),
        // Last backward packet's window.
        (BWD_INIT_WIN_BYTES, 3_500.0),
        // min(header, 0): the minimum starts at 0 when the first packet is backward.
        (FWD_SEG_SIZE_MIN, 0.0),
        // The only forward packet is not the flow's first, so it counts.
        (FWD_ACT_DATA_PKTS, 1.0),
        // Connection start 0 to this flow's last packet 120002001.
        (TOTAL_TCP_FLOW_TIME, 120_002_001.0),
    ]
}

#[test]
fn continuation_after_active_timeout() {
    let batch = run(&session_c());
    assert_eq!(batch.len(), 2);
    let (m1, r1) = flow(&batch, 0);
    let (m2, r2) = flow(&batch, 1);
    assert_eq!(m1.reason, EndReason::ActiveTimeout);
    assert_eq!(m2.reason, EndReason::EndOfInput);
    assert_eq!(m2.src, m1.src);
    check("session C, first flow", &r1, &expect_c_first());
    check("session C, continuation", &r2, &expect_c_second());
}

// ---------------------------------------------------------------------------
// Scenario D: UDP, including a one-packet flow (zero duration).

fn session_d() -> Vec<(i64, Frame)> {
    let (a, b, e) = (
        v4(192, 168, 10, 3),
        v4(192, 168, 10, 1),
        v4(192, 168, 10, 4),
    );
    vec![
        (0, Frame::udp(a, b, 5353, 53, 40)),
        (100, Frame::udp(e, b, 1234, 53, 30)),
        (500, Frame::udp(b, a, 53, 5353, 120)),
        (1_500, Frame::udp(a, b, 5353, 53, 40)),
    ]
}

fn expect_d_exchange() -> Expect {
    vec![
        (PROTOCOL, 17.0),
        (FLOW_DURATION, 1_500.0),
        // 200 payload bytes, 3 packets in 0.0015 s.
        (FLOW_BYTES_S, 200.0 / 0.0015),
        (FLOW_PACKETS_S, 3.0 / 0.0015),
        // UDP headers are 8 bytes.
        (FWD_HEADER_LENGTH, 16.0),
        (BWD_HEADER_LENGTH, 8.0),
        (DOWN_UP_RATIO, 0.5),
        (FWD_SEG_SIZE_MIN, 8.0),
        (FWD_INIT_WIN_BYTES, 0.0),
        (FLOW_IAT_MEAN, 750.0),
        (ICMP_CODE, -1.0),
        (ICMP_TYPE, -1.0),
        // Not TCP.
        (TOTAL_TCP_FLOW_TIME, 0.0),
    ]
}

fn expect_d_single() -> Expect {
    vec![
        (FLOW_DURATION, 0.0),
        // Zero duration: −1 like later CICFlowMeter versions print.
        (FLOW_BYTES_S, -1.0),
        (FLOW_PACKETS_S, -1.0),
        (FWD_PACKETS_S, 0.0),
        (BWD_PACKETS_S, 0.0),
        // No gap at all: CIC's NaN statistics are 0.
        (FLOW_IAT_MEAN, 0.0),
        (FLOW_IAT_STD, 0.0),
        (FLOW_IAT_MAX, 0.0),
        (FLOW_IAT_MIN, 0.0),
        (FWD_IAT_TOTAL, 0.0),
        (FWD_PACKET_LENGTH_MEAN, 30.0),
        (FWD_PACKET_LENGTH_STD, 0.0),
        (PACKET_LENGTH_VARIANCE, 0.0),
        (BWD_PACKET_LENGTH_MAX, 0.0),
        (DOWN_UP_RATIO, 0.0),
        // trunc(1/1) = 1 packet, trunc(30/1) = 30 bytes.
        (SUBFLOW_FWD_PACKETS, 1.0),
        (SUBFLOW_FWD_BYTES, 30.0),
        // The first packet's payload is not counted.
        (FWD_ACT_DATA_PKTS, 0.0),
    ]
}

#[test]
fn udp_flows() {
    let batch = run(&session_d());
    assert_eq!(batch.len(), 2);
    let by_port = |p: u16| {
        (0..batch.len())
            .map(|i| flow(&batch, i))
            .find(|(m, _)| m.sport == p)
            .expect("flow present")
    };
    check("UDP exchange", &by_port(5353).1, &expect_d_exchange());
    check("UDP single packet", &by_port(1234).1, &expect_d_single());
}

// ---------------------------------------------------------------------------
// Scenario E: ICMP echo, then a destination unreachable (type and code both
// differ) that starts a new flow.

fn session_e() -> Vec<(i64, Frame)> {
    let (a, b) = (v4(192, 168, 10, 3), v4(192, 168, 10, 1));
    vec![
        (0, Frame::icmp(a, b, 8, 0, 56)),
        (300, Frame::icmp(b, a, 0, 0, 56)),
        (1_000, Frame::icmp(a, b, 3, 3, 28)),
    ]
}

fn expect_e_echo() -> Expect {
    vec![
        (SRC_PORT, 0.0),
        (DST_PORT, 0.0),
        (PROTOCOL, 1.0),
        // First packet's code and type.
        (ICMP_CODE, 0.0),
        (ICMP_TYPE, 8.0),
        // Real ICMP payload and an 8-byte header (CIC: 0 and 0).
        (TOTAL_LENGTH_OF_FWD_PACKET, 56.0),
        (TOTAL_LENGTH_OF_BWD_PACKET, 56.0),
        (FWD_HEADER_LENGTH, 8.0),
        (BWD_HEADER_LENGTH, 8.0),
        (TOTAL_TCP_FLOW_TIME, 0.0),
    ]
}

fn expect_e_unreachable() -> Expect {
    vec![(ICMP_CODE, 3.0), (ICMP_TYPE, 3.0), (TOTAL_FWD_PACKET, 1.0)]
}

#[test]
fn icmp_flows() {
    let batch = run(&session_e());
    assert_eq!(batch.len(), 2);
    let (m1, r1) = flow(&batch, 0);
    assert_eq!(m1.reason, EndReason::IcmpChange);
    check("ICMP echo", &r1, &expect_e_echo());
    check(
        "ICMP unreachable",
        &flow(&batch, 1).1,
        &expect_e_unreachable(),
    );
}

// ---------------------------------------------------------------------------
// Scenario F: boundaries. Gaps of exactly 1 s keep a bulk going (CIC: "more
// than 1 s" breaks it); a gap of exactly 5 s is not idle, 5 s + 1 µs is.

fn session_f() -> Vec<(i64, Frame)> {
    let (a, b) = (v4(10, 0, 0, 1), v4(10, 0, 0, 2));
    let f = || Frame::udp(a, b, 7000, 7001, 100);
    vec![
        (0, f()),
        (1_000_000, f()),
        (2_000_000, f()),
        (3_000_000, f()),
        (8_000_000, f()),
        (13_000_001, f()),
    ]
}

fn expect_f() -> Expect {
    vec![
        // One bulk: 4 × 100 B over 3 s; the packet at 8 s is 5 s later and
        // starts a new candidate that never reaches 4 packets.
        (FWD_BYTES_BULK_AVG, 400.0),
        (FWD_PACKET_BULK_AVG, 4.0),
        // trunc(400 / 3.0) = trunc(133.3) = 133.
        (FWD_BULK_RATE_AVG, 133.0),
        // Only the 5000001 µs gap is idle; the active period before it runs
        // from 0 to 8000000.
        (ACTIVE_MEAN, 8_000_000.0),
        (ACTIVE_STD, 0.0),
        (ACTIVE_MAX, 8_000_000.0),
        (ACTIVE_MIN, 8_000_000.0),
        (IDLE_MEAN, 5_000_001.0),
        (IDLE_STD, 0.0),
        (IDLE_MAX, 5_000_001.0),
        (IDLE_MIN, 5_000_001.0),
    ]
}

#[test]
fn bulk_and_idle_boundaries() {
    let batch = run(&session_f());
    assert_eq!(batch.len(), 1);
    check("boundaries", &flow(&batch, 0).1, &expect_f());
}

// ---------------------------------------------------------------------------

#[test]
fn every_feature_is_checked() {
    let lists = [
        expect_a(),
        expect_b(),
        expect_c_first(),
        expect_c_second(),
        expect_d_exchange(),
        expect_d_single(),
        expect_e_echo(),
        expect_e_unreachable(),
        expect_f(),
    ];
    let covered: BTreeSet<usize> = lists.iter().flatten().map(|&(i, _)| i).collect();
    let missing: Vec<&str> = (0..NUM_FEATURES)
        .filter(|i| !covered.contains(i))
        .map(|i| FEATURES[i].0)
        .collect();
    assert!(
        missing.is_empty(),
        "features with no hand-derived check: {missing:?}"
    );
    assert!(covered.iter().all(|&i| i < NUM_FEATURES));
}
