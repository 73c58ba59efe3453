//! Scenario tests of the flow table: CIC e19a160 termination rules (active
//! timeout and continuation, FIN/FIN/ACK, RST, SYN after teardown, ICMP
//! change) and the streaming additions (linger, idle sweep, eviction, the
//! same-hash cap).

use tapstream_ingest::decode::flow_hash;
use tapstream_ingest::flow::{
    Continuation, Direction, EndedFlow, FlowConfig, FlowTable, Placement, PlacementKind,
    MAX_SAME_HASH,
};
use tapstream_ingest::packet::{proto, tcp_flags::*, PacketRecord};
use tapstream_ingest::EndReason;

const T0: i64 = 1_499_432_361_000_000;
const TIMEOUT: i64 = FlowConfig::DEFAULT_FLOW_TIMEOUT_US;
const LINGER: i64 = FlowConfig::DEFAULT_TCP_CLOSE_LINGER_US;

fn addr(host: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[192, 168, 10, host]);
    a
}

fn rec(ts: i64, p: u8, src: u8, dst: u8, sport: u16, dport: u16, flags: u8) -> PacketRecord {
    let (src, dst) = (addr(src), addr(dst));
    PacketRecord {
        ts_us: ts,
        hash: flow_hash(&src, &dst, sport, dport, p, false),
        src,
        dst,
        payload_len: 0,
        wire_len: 60,
        sport,
        dport,
        header_len: if p == proto::TCP { 20 } else { 8 },
        window: 0,
        proto: p,
        flags,
        icmp_type: 0,
        icmp_code: 0,
        v6: false,
    }
}

/// Client 5:40000 → server 50:80, TCP.
fn c2s(ts: i64, flags: u8) -> PacketRecord {
    rec(ts, proto::TCP, 5, 50, 40000, 80, flags)
}

/// Server → client, TCP.
fn s2c(ts: i64, flags: u8) -> PacketRecord {
    rec(ts, proto::TCP, 50, 5, 80, 40000, flags)
}

fn icmp(ts: i64, src: u8, dst: u8, ty: u8, code: u8) -> PacketRecord {
    let mut r = rec(ts, proto::ICMP, src, dst, 0, 0, 0);
    r.icmp_type = ty;
    r.icmp_code = code;
    r
}

/// A table and everything it reported.
struct Harness {
    t: FlowTable,
    ended: Vec<EndedFlow>,
}

impl Harness {
    fn new(cfg: FlowConfig) -> Self {
        Harness {
            t: FlowTable::new(cfg).expect("valid config"),
            ended: Vec::new(),
        }
    }

    fn default_cfg() -> Self {
        Self::new(FlowConfig::default())
    }

    fn push(&mut self, r: PacketRecord) -> Placement {
        let ended = &mut self.ended;
        self.t.process(&r, &mut |e| ended.push(e))
    }

    fn advance(&mut self, now: i64) {
        let ended = &mut self.ended;
        self.t.advance(now, &mut |e| ended.push(e));
    }

    fn flush(&mut self) {
        let ended = &mut self.ended;
        self.t.flush(&mut |e| ended.push(e));
    }

    fn reasons(&self) -> Vec<EndReason> {
        self.ended.iter().map(|e| e.meta.reason).collect()
    }
}

fn is_new(p: &Placement) -> bool {
    matches!(p.kind, PlacementKind::New { continuation: None })
}

#[test]
fn fin_fin_ack_makes_ready_and_linger_ends_it() {
    let mut h = Harness::default_cfg();
    assert!(is_new(&h.push(c2s(T0, SYN))));
    h.push(s2c(T0 + 10, SYN | ACK));
    h.push(c2s(T0 + 20, ACK));
    h.push(c2s(T0 + 30, FIN | ACK)); // first FIN
    h.push(s2c(T0 + 40, FIN | ACK)); // second FIN (both directions sent one)
    h.push(c2s(T0 + 50, ACK)); // final ACK: ready for termination
                               // Exactly the linger later: not yet (the rule is "more than").
    h.advance(T0 + 50 + LINGER);
    assert!(h.ended.is_empty());
    h.advance(T0 + 51 + LINGER);
    assert_eq!(h.reasons(), vec![EndReason::TcpTermination]);
    let m = h.ended[0].meta;
    assert_eq!(
        (m.pkts_fwd, m.pkts_bwd, m.start_us, m.last_us),
        (4, 2, T0, T0 + 50)
    );
    assert_eq!(
        (m.sport, m.dport, m.src, m.dst),
        (40000, 80, addr(5), addr(50))
    );
    assert_eq!(h.t.stats().ended_for(EndReason::TcpTermination), 1);
    assert!(h.t.is_empty());
}

#[test]
fn packets_to_a_ready_flow_restart_its_linger() {
    let mut h = Harness::default_cfg();
    h.push(c2s(T0, SYN));
    h.push(s2c(T0 + 10, RST | ACK)); // RST: ready at once
    h.push(c2s(T0 + LINGER, ACK)); // late ACK within the linger: joins the flow
    h.advance(T0 + 10 + LINGER + 1);
    assert!(h.ended.is_empty(), "linger counts from the last packet");
    h.advance(T0 + 2 * LINGER + 1);
    assert_eq!(h.reasons(), vec![EndReason::TcpTermination]);
    assert_eq!(h.ended[0].meta.packets(), 3);
}

#[test]
fn first_packet_fin_does_not_count_for_teardown() {
    let mut h = Harness::default_cfg();
    h.push(c2s(T0, FIN | ACK)); // the flow's first packet: CIC does not count its FIN
    h.push(s2c(T0 + 10, FIN | ACK)); // state: first FIN (only backward FIN seen)
    h.push(c2s(T0 + 20, ACK)); // not a final ACK: no second FIN yet
    h.advance(T0 + 20 + 10 * LINGER);
    assert!(h.ended.is_empty());
    h.push(c2s(T0 + 20 + 10 * LINGER + 1, FIN | ACK)); // second FIN (both seen now)
    h.push(s2c(T0 + 20 + 10 * LINGER + 2, ACK)); // final ACK
    h.advance(T0 + 22 + 11 * LINGER + 1);
    assert_eq!(h.reasons(), vec![EndReason::TcpTermination]);
    assert_eq!(h.ended[0].meta.packets(), 5);
}

#[test]
fn retransmitted_fin_is_not_a_second_fin() {
    let mut h = Harness::default_cfg();
    h.push(c2s(T0, SYN));
    h.push(c2s(T0 + 10, FIN | ACK)); // first FIN
    h.push(c2s(T0 + 20, FIN | ACK)); // same direction again: still "first FIN"
    h.push(s2c(T0 + 30, ACK)); // so this is no final ACK
    h.advance(T0 + 30 + 2 * LINGER);
    assert!(h.ended.is_empty());
}

#[test]
fn linger_ends_ready_flows_in_touch_order() {
    let mut h = Harness::default_cfg();
    h.push(c2s(T0, RST)); // first packet: no state change
    h.push(c2s(T0 + 1, RST)); // flow A ready at T0 + 1
    h.push(rec(T0 + 2, proto::TCP, 6, 50, 40001, 80, SYN));
    h.push(rec(T0 + 3, proto::TCP, 50, 6, 80, 40001, RST)); // flow B ready at T0 + 3
    h.push(s2c(T0 + 1_000, ACK)); // A touched again: B is now the older
    h.advance(T0 + 3 + LINGER + 1);
    assert_eq!(h.reasons(), vec![EndReason::TcpTermination]);
    assert_eq!(h.ended[0].meta.src, addr(6), "B lingered longest");
    h.advance(T0 + 1_000 + LINGER + 1);
    assert_eq!(h.ended.len(), 2);
}

#[test]
fn fin_with_rst_is_handled_as_fin() {
    // CIC checks FIN before RST: a FIN|RST packet only moves the FIN state.
    let mut h = Harness::default_cfg();
    h.push(c2s(T0, SYN));
    h.push(s2c(T0 + 10, FIN | RST));
    h.advance(T0 + 10 + 2 * LINGER);
    assert!(h.ended.is_empty());
    h.push(c2s(T0 + 20 + 2 * LINGER, RST));
    h.advance(T0 + 21 + 3 * LINGER);
    assert_eq!(h.reasons(), vec![EndReason::TcpTermination]);
}

#[test]
fn syn_without_ack_after_teardown_starts_a_fresh_flow() {
    let mut h = Harness::default_cfg();
    h.push(c2s(T0, SYN));
    h.push(s2c(T0 + 10, RST | ACK));
    // The server opens a new connection on the same tuple: fresh flow,
    // oriented by the SYN's sender.
    let p = h.push(s2c(T0 + 20, SYN));
    assert_eq!(h.reasons(), vec![EndReason::TcpTermination]);
    assert!(is_new(&p));
    assert_eq!(p.dir, Direction::Forward);
    assert_eq!(p.slot, h.ended[0].slot, "the freed slot is reused");
    h.flush();
    let m = h.ended[1].meta;
    assert_eq!(
        (m.src, m.sport, m.reason),
        (addr(50), 80, EndReason::EndOfInput)
    );
    assert_eq!((m.pkts_fwd, m.pkts_bwd), (1, 0));
}

#[test]
fn syn_ack_after_teardown_continues_the_connection() {
    let mut h = Harness::default_cfg();
    h.push(c2s(T0, SYN));
    h.push(s2c(T0 + 10, RST | ACK));
    let p = h.push(s2c(T0 + 20, SYN | ACK));
    assert_eq!(h.reasons(), vec![EndReason::TcpTermination]);
    let prev = h.ended[0].meta.flow_id;
    assert_eq!(
        p.kind,
        PlacementKind::New {
            continuation: Some(Continuation {
                conn_start_us: T0,
                prev_flow_id: prev
            })
        }
    );
    assert_eq!(
        p.dir,
        Direction::Backward,
        "the continuation keeps the old orientation"
    );
    h.flush();
    let m = h.ended[1].meta;
    assert_eq!(
        (m.src, m.pkts_fwd, m.pkts_bwd, m.start_us),
        (addr(5), 0, 1, T0 + 20)
    );
}

#[test]
fn syn_on_an_open_flow_is_just_a_packet() {
    let mut h = Harness::default_cfg();
    h.push(c2s(T0, SYN));
    let p = h.push(c2s(T0 + 1_000_000, SYN)); // retransmitted SYN
    assert_eq!(p.kind, PlacementKind::Existing);
    assert!(h.ended.is_empty());
}

#[test]
fn active_timeout_continues_tcp_with_the_old_orientation() {
    let mut h = Harness::default_cfg();
    let first = h.push(c2s(T0, SYN));
    h.push(s2c(T0 + 50_000_000, ACK));
    h.push(c2s(T0 + 100_000_000, ACK));
    // Exactly the timeout after the start: still the same flow.
    assert_eq!(h.push(s2c(T0 + TIMEOUT, ACK)).kind, PlacementKind::Existing);
    // More than the timeout after the start: the flow ends without this
    // packet, which starts a continuation flow (backward, client stays src).
    let p = h.push(s2c(T0 + TIMEOUT + 1, PSH | ACK));
    assert_eq!(h.reasons(), vec![EndReason::ActiveTimeout]);
    let old = h.ended[0].meta;
    assert_eq!((old.packets(), old.last_us), (4, T0 + TIMEOUT));
    assert_eq!(p.dir, Direction::Backward);
    assert_eq!(
        p.kind,
        PlacementKind::New {
            continuation: Some(Continuation {
                conn_start_us: T0,
                prev_flow_id: old.flow_id
            })
        }
    );
    assert_eq!(p.slot, first.slot);
    h.push(c2s(T0 + TIMEOUT + 2, ACK));
    h.flush();
    let m = h.ended[1].meta;
    assert_eq!((m.src, m.dst, m.sport), (addr(5), addr(50), 40000));
    assert_eq!((m.pkts_fwd, m.pkts_bwd, m.bytes_bwd), (1, 1, 60));
    assert_eq!(h.t.stats().continuations, 1);
}

#[test]
fn active_timeout_starts_a_fresh_flow_for_udp() {
    let mut h = Harness::default_cfg();
    h.push(rec(T0, proto::UDP, 5, 50, 5353, 53, 0));
    h.push(rec(T0 + 60_000_000, proto::UDP, 5, 50, 5353, 53, 0));
    let p = h.push(rec(T0 + TIMEOUT + 1, proto::UDP, 50, 5, 53, 5353, 0));
    assert_eq!(h.reasons(), vec![EndReason::ActiveTimeout]);
    assert!(is_new(&p));
    assert_eq!(p.dir, Direction::Forward);
    h.flush();
    assert_eq!((h.ended[1].meta.src, h.ended[1].meta.sport), (addr(50), 53));
}

#[test]
fn idle_sweep_ends_quiet_flows_by_packet_time() {
    let mut h = Harness::default_cfg();
    h.push(c2s(T0, SYN)); // flow A
    h.push(rec(T0 + 10, proto::UDP, 5, 50, 5353, 53, 0)); // flow B
                                                          // A packet of another flow moves the clock: A has been idle for more
                                                          // than the timeout, B for exactly the timeout.
    h.push(rec(T0 + TIMEOUT + 10, proto::UDP, 7, 50, 1, 2, 0));
    assert_eq!(h.reasons(), vec![EndReason::IdleTimeout]);
    assert_eq!(h.ended[0].meta.proto, proto::TCP);
    h.advance(T0 + TIMEOUT + 11);
    assert_eq!(h.reasons(), vec![EndReason::IdleTimeout; 2]);
    assert_eq!(h.ended[1].meta.proto, proto::UDP);
    // A packet of an idle flow's tuple starts a fresh flow, not a continuation.
    let p = h.push(s2c(T0 + TIMEOUT + 20, ACK));
    assert!(is_new(&p));
    assert_eq!(h.t.stats().ended_for(EndReason::IdleTimeout), 2);
}

#[test]
fn advance_never_moves_the_clock_back() {
    let mut h = Harness::default_cfg();
    h.push(c2s(T0 + 1000, SYN));
    h.advance(T0);
    assert_eq!(h.t.clock_us(), T0 + 1000);
    // An out-of-order packet does not move the clock either, and it is the
    // flow's "last" packet (arrival order, like CIC).
    h.push(s2c(T0 + 500, ACK));
    assert_eq!(h.t.clock_us(), T0 + 1000);
    h.flush();
    assert_eq!(
        (h.ended[0].meta.start_us, h.ended[0].meta.last_us),
        (T0 + 1000, T0 + 500)
    );
}

#[test]
fn icmp_change_needs_both_type_and_code_to_differ() {
    let mut h = Harness::default_cfg();
    let a = h.push(icmp(T0, 5, 50, 8, 0)); // echo request
    let b = h.push(icmp(T0 + 10, 50, 5, 0, 0)); // echo reply: type differs, code equal
    assert_eq!(
        (b.slot, b.dir, b.kind),
        (a.slot, Direction::Backward, PlacementKind::Existing)
    );
    let c = h.push(icmp(T0 + 20, 5, 50, 8, 1)); // code differs, type equal
    assert_eq!(c.kind, PlacementKind::Existing);
    let d = h.push(icmp(T0 + 30, 50, 5, 3, 3)); // both differ: new flow, oriented by it
    assert_eq!(h.reasons(), vec![EndReason::IcmpChange]);
    assert!(is_new(&d));
    let m = h.ended[0].meta;
    assert_eq!(
        (m.icmp_type, m.icmp_code, m.packets(), m.sport, m.dport),
        (8, 0, 3, 0, 0)
    );
    h.flush();
    let m = h.ended[1].meta;
    assert_eq!((m.src, m.icmp_type, m.icmp_code), (addr(50), 3, 3));
}

#[test]
fn icmp_ports_are_ignored() {
    let mut h = Harness::default_cfg();
    let a = h.push(icmp(T0, 5, 50, 8, 0));
    let mut r = icmp(T0 + 1, 50, 5, 0, 0);
    r.sport = 77; // whatever a decoder put there, ICMP flows have no ports
    r.hash = flow_hash(&r.src, &r.dst, 0, 0, proto::ICMP, false);
    assert_eq!(h.push(r).slot, a.slot);
}

#[test]
fn eviction_takes_the_least_recently_seen_flow() {
    let mut h = Harness::new(FlowConfig {
        max_flows: 3,
        ..FlowConfig::default()
    });
    let p1 = h.push(rec(T0, proto::UDP, 1, 50, 1, 53, 0));
    h.push(rec(T0 + 1, proto::UDP, 2, 50, 1, 53, 0));
    h.push(rec(T0 + 2, proto::UDP, 3, 50, 1, 53, 0));
    h.push(rec(T0 + 3, proto::UDP, 50, 1, 53, 1, 0)); // touch flow 1
    h.push(rec(T0 + 4, proto::UDP, 4, 50, 1, 53, 0)); // evicts flow 2
    assert_eq!(h.reasons(), vec![EndReason::Evicted]);
    assert_eq!(h.ended[0].meta.src, addr(2));
    h.push(rec(T0 + 5, proto::UDP, 5, 50, 1, 53, 0)); // evicts flow 3
    assert_eq!(h.ended[1].meta.src, addr(3));
    assert_eq!(h.t.len(), 3);
    assert_eq!(h.t.slots_allocated(), 3);
    assert_eq!(h.t.stats().evictions(), 2);
    h.flush();
    // Flush goes least recently seen first: 1, 4, 5.
    let srcs: Vec<u8> = h.ended[2..].iter().map(|e| e.meta.src[3]).collect();
    assert_eq!(srcs, vec![1, 4, 5]);
    assert_eq!(h.ended[2].slot, p1.slot);
}

#[test]
fn max_flows_is_never_exceeded() {
    let max = 16;
    let mut h = Harness::new(FlowConfig {
        max_flows: max,
        ..FlowConfig::default()
    });
    for i in 0..10_000u32 {
        let r = rec(
            T0 + i64::from(i),
            proto::UDP,
            (i % 251) as u8,
            50,
            (i % 7) as u16,
            53,
            0,
        );
        let p = h.push(r);
        assert!((p.slot as usize) < max);
        assert!(h.t.len() <= max);
    }
    assert!(h.t.slots_allocated() <= max);
    let s = h.t.stats();
    assert_eq!(s.created, s.ended_total() + s.active);
    assert_eq!(s.packets, 10_000);
}

#[test]
fn a_flood_puts_the_table_in_emergency_mode_and_spares_an_established_flow() {
    let mut h = Harness::new(FlowConfig {
        max_flows: 10,
        emergency_timeout_us: 100_000,
        emergency_new_timeout_us: 1_000,
        emergency_recovery_pct: 30,
        ..FlowConfig::default()
    });
    // An answered conversation (established after its third packet) ...
    h.push(c2s(T0, SYN));
    h.push(s2c(T0 + 1, SYN | ACK));
    h.push(c2s(T0 + 2, ACK));
    // ... and a half-open one that got a reply but nothing after it.
    h.push(rec(T0 + 3, proto::TCP, 6, 50, 40001, 80, SYN));
    h.push(rec(T0 + 4, proto::TCP, 50, 6, 80, 40001, SYN | ACK));
    // A flood of one-packet flows from 30 sources fills the table.
    for i in 0..30u8 {
        h.push(rec(
            T0 + 10 + i64::from(i),
            proto::UDP,
            100 + i,
            50,
            9,
            9,
            0,
        ));
        assert!(h.t.len() <= 10);
    }
    let s = h.t.stats();
    assert!(s.emergency && h.t.in_emergency());
    assert_eq!((s.emergency_entries, s.emergency_exits), (1, 0));
    // 2 + 30 flows through 10 slots: 22 evicted, the half-open flow first
    // (it is the least recently seen unestablished flow), never the
    // established one.
    assert_eq!(s.evictions(), 22);
    assert!(h.reasons().iter().all(|r| *r == EndReason::Evicted));
    assert_eq!(h.ended[0].meta.src, addr(6));
    assert!(h.ended.iter().all(|e| e.meta.src != addr(5)));
    // A packet of the established flow, then quiet: the flood flows idle out
    // after the short limit, the table drops below 70 % and recovers.
    h.push(s2c(T0 + 500, ACK));
    h.ended.clear();
    h.advance(T0 + 39 + 1_001);
    assert_eq!(h.reasons(), vec![EndReason::EmergencyTimeout; 9]);
    let s = h.t.stats();
    assert!(!s.emergency);
    assert_eq!(
        (s.emergency_entries, s.emergency_exits, s.active),
        (1, 1, 1)
    );
    // Out of emergency mode the normal timeouts apply again.
    h.ended.clear();
    h.advance(T0 + 500 + 100_001);
    assert!(h.ended.is_empty());
    h.flush();
    assert_eq!(h.reasons(), vec![EndReason::EndOfInput]);
    assert_eq!(h.ended[0].meta.src, addr(5));
    assert_eq!(h.ended[0].meta.packets(), 4);
}

#[test]
fn a_table_that_never_fills_never_enters_emergency_mode() {
    let mut h = Harness::new(FlowConfig {
        max_flows: 4,
        emergency_new_timeout_us: 1,
        ..FlowConfig::default()
    });
    for i in 0..4u8 {
        h.push(rec(
            T0 + i64::from(i) * 10_000_000,
            proto::UDP,
            i,
            50,
            9,
            9,
            0,
        ));
    }
    h.flush();
    let s = h.t.stats();
    assert_eq!((s.emergency_entries, s.emergency_exits), (0, 0));
    assert_eq!(h.reasons(), vec![EndReason::EndOfInput; 4]);
}

#[test]
fn crafted_identical_hashes_are_capped() {
    let mut h = Harness::default_cfg();
    let n = 20u16;
    for i in 0..n {
        let mut r = rec(T0 + i64::from(i), proto::UDP, 5, 50, 1000 + i, 53, 0);
        r.hash = 42; // every tuple collides exactly
        h.push(r);
        assert!(h.t.len() <= MAX_SAME_HASH as usize);
    }
    assert_eq!(h.t.len(), MAX_SAME_HASH as usize);
    assert_eq!(
        h.t.stats().collision_evictions,
        u64::from(n) - u64::from(MAX_SAME_HASH)
    );
    // The oldest went first, and open ones are still found.
    assert_eq!(h.ended[0].meta.sport, 1000);
    let mut r = rec(T0 + 100, proto::UDP, 50, 5, 53, 1000 + n - 1, 0);
    r.hash = 42;
    assert_eq!(h.push(r).kind, PlacementKind::Existing);
}

#[test]
fn stats_add_up() {
    let mut h = Harness::default_cfg();
    for i in 0..100 {
        h.push(rec(T0 + i, proto::UDP, (i % 10) as u8, 50, 1, 53, 0));
    }
    let s = h.t.stats();
    assert_eq!((s.active, s.created, s.packets), (10, 10, 100));
    h.flush();
    let s = h.t.stats();
    assert_eq!((s.active, s.ended_for(EndReason::EndOfInput)), (0, 10));
    let total: u64 = h.ended.iter().map(|e| e.meta.packets()).sum();
    assert_eq!(total, 100);
}
