//! `flow_table`: the flow table fed arbitrary packet sequences, checked
//! against a model of which slot holds which flow.

use std::collections::HashMap;

use arbitrary::{Arbitrary, Unstructured};
use tapstream_ingest::decode::flow_hash;
use tapstream_ingest::flow::{
    Direction, EndedFlow, FlowConfig, FlowTable, Placement, PlacementKind,
};
use tapstream_ingest::{EndReason, PacketRecord};

/// Table settings: small, so eviction, timeouts and slot reuse happen
/// within a few packets.
#[derive(Arbitrary, Debug)]
pub struct Setup {
    /// `max_flows` is 1 + this % 16.
    pub max_flows: u8,
    /// `flow_timeout_us` is 1 + this.
    pub timeout: u16,
    /// `tcp_close_linger_us`.
    pub linger: u16,
    /// Emergency mode's idle limits (capped at the flow timeout by the
    /// table) and its recovery mark, 1 + this % 100 percent.
    pub emergency_timeout: u16,
    pub emergency_new_timeout: u16,
    pub emergency_recovery: u8,
}

/// One step of the sequence.
#[derive(Arbitrary, Debug)]
pub enum Op {
    /// A packet at the current time plus `dt` (negative: out of order).
    Packet(Pkt),
    /// Move the current time by `dt` and let the table sweep.
    Advance(i16),
    /// Set the current time, anywhere in `i64` (overflow hunting).
    Jump(i64),
    /// End every flow, as at the end of the input.
    Flush,
}

/// A packet between a few hosts and ports, so flows repeat and collide.
#[derive(Arbitrary, Debug)]
pub struct Pkt {
    /// Time step from the previous packet.
    pub dt: i16,
    /// Source host (1 of 4).
    pub a: u8,
    /// Destination host (1 of 4).
    pub b: u8,
    /// Source port (1 of 4).
    pub sport: u8,
    /// Destination port (1 of 4).
    pub dport: u8,
    /// Protocol (TCP, UDP, ICMP, ICMPv6, GRE or any).
    pub proto: u8,
    /// TCP flags.
    pub flags: u8,
    /// ICMP type (low nibble) and code (high nibble), 0–3 each.
    pub icmp: u8,
    /// IPv6 addresses.
    pub v6: bool,
    /// Frame length.
    pub wire_len: u16,
    /// The record's hash: the decoder's, or a forced value (crafted
    /// collisions: every such packet lands in one hash bucket).
    pub hash: Option<u8>,
}

const PORTS: [u16; 4] = [0, 80, 443, 40000];
const PROTOS: [u8; 5] = [6, 17, 1, 58, 47];

impl Pkt {
    fn record(&self, ts_us: i64) -> PacketRecord {
        let v6 = self.v6;
        let addr = |h: u8| {
            let mut a = [0u8; 16];
            if v6 {
                a[0] = 0x20;
                a[1] = 0x01;
                a[15] = h % 4;
            } else {
                a[..4].copy_from_slice(&[10, 0, 0, h % 4]);
            }
            a
        };
        let proto = if self.proto < 250 {
            PROTOS[usize::from(self.proto) % PROTOS.len()]
        } else {
            self.proto
        };
        let icmp = proto == 1 || proto == 58;
        let tcp = proto == 6;
        let ported = matches!(proto, 6 | 17);
        let mut r = PacketRecord {
            ts_us,
            src: addr(self.a),
            dst: addr(self.b),
            payload_len: u32::from(self.wire_len / 2),
            wire_len: u32::from(self.wire_len),
            sport: if ported {
                PORTS[usize::from(self.sport % 4)]
            } else {
                0
            },
            dport: if ported {
                PORTS[usize::from(self.dport % 4)]
            } else {
                0
            },
            header_len: if tcp { 20 } else { 8 },
            window: 0,
            proto,
            flags: if tcp { self.flags } else { 0 },
            icmp_type: if icmp { self.icmp % 4 } else { 0 },
            icmp_code: if icmp { (self.icmp >> 4) % 4 } else { 0 },
            v6,
            hash: 0,
        };
        r.hash = match self.hash {
            None => flow_hash(&r.src, &r.dst, r.sport, r.dport, r.proto, r.v6),
            Some(h) => u64::from(h % 2),
        };
        r
    }
}

/// An open flow as the model knows it.
#[derive(Debug)]
struct Open {
    /// Forward (source address, port), then backward.
    fwd: ([u8; 16], u16),
    bwd: ([u8; 16], u16),
    proto: u8,
    v6: bool,
    pkts: u64,
}

/// The table under test and its model.
struct Harness {
    table: FlowTable,
    max_flows: usize,
    open: HashMap<u32, Open>,
    fed: u64,
    ended_pkts: u64,
    events: Vec<EndedFlow>,
}

impl Harness {
    /// Applies the ends reported by the last call: each was open in the
    /// model with exactly its tuple and packet count.
    fn apply_ends(&mut self) -> Vec<u64> {
        let mut ids = Vec::new();
        for e in self.events.drain(..) {
            let Some(o) = self.open.remove(&e.slot) else {
                panic!("slot {} ended but holds no flow: {e:?}", e.slot);
            };
            let m = &e.meta;
            assert_eq!(
                m.packets(),
                o.pkts,
                "packets of the flow in slot {}",
                e.slot
            );
            assert_eq!(((m.src, m.sport), (m.dst, m.dport)), (o.fwd, o.bwd));
            assert_eq!((m.proto, m.v6), (o.proto, o.v6));
            assert!(m.flow_id <= tapstream_ingest::flow::FLOW_ID_MASK);
            self.ended_pkts += o.pkts;
            ids.push(m.flow_id);
        }
        ids
    }

    fn packet(&mut self, rec: &PacketRecord) {
        let events = &mut self.events;
        let p: Placement = self.table.process(rec, &mut |e| events.push(e));
        self.fed += 1;
        let ended = self.apply_ends();
        let icmp = rec.is_icmp();
        let ports = if icmp { (0, 0) } else { (rec.sport, rec.dport) };
        let side = ((rec.src, ports.0), (rec.dst, ports.1));
        let reverse = (side.1, side.0);
        match p.kind {
            PlacementKind::New { continuation } => {
                assert!(
                    !self.open.contains_key(&p.slot),
                    "slot {} reused before its flow ended",
                    p.slot
                );
                let (fwd, bwd) = match (continuation, p.dir) {
                    (None, Direction::Forward) => side,
                    (None, Direction::Backward) => panic!("a fresh flow opened backward"),
                    (Some(c), dir) => {
                        assert!(
                            ended.contains(&c.prev_flow_id),
                            "continuation of {} which did not just end ({ended:?})",
                            c.prev_flow_id
                        );
                        assert_eq!(rec.proto, 6, "a continuation of a non-TCP flow");
                        if dir == Direction::Forward {
                            side
                        } else {
                            reverse
                        }
                    }
                };
                self.open.insert(
                    p.slot,
                    Open {
                        fwd,
                        bwd,
                        proto: rec.proto,
                        v6: rec.v6,
                        pkts: 1,
                    },
                );
            }
            PlacementKind::Existing => {
                let Some(o) = self.open.get_mut(&p.slot) else {
                    panic!("packet placed in empty slot {}", p.slot);
                };
                let want = if p.dir == Direction::Forward {
                    side
                } else {
                    reverse
                };
                assert_eq!((o.fwd, o.bwd), want, "direction {:?}", p.dir);
                assert_eq!((o.proto, o.v6), (rec.proto, rec.v6));
                o.pkts += 1;
            }
        }
        assert!((p.slot as usize) < self.table.slots_allocated());
        self.check_sizes();
    }

    fn advance(&mut self, now: i64) {
        let events = &mut self.events;
        self.table.advance(now, &mut |e| events.push(e));
        for e in &self.events {
            assert!(
                matches!(
                    e.meta.reason,
                    EndReason::IdleTimeout
                        | EndReason::TcpTermination
                        | EndReason::EmergencyTimeout
                ),
                "advance ended a flow for {:?}",
                e.meta.reason
            );
        }
        self.apply_ends();
        self.check_sizes();
    }

    fn flush(&mut self) {
        let events = &mut self.events;
        self.table.flush(&mut |e| events.push(e));
        for e in &self.events {
            assert_eq!(e.meta.reason, EndReason::EndOfInput);
        }
        self.apply_ends();
        assert!(self.open.is_empty(), "flush left {:?}", self.open);
        assert!(self.table.is_empty());
        assert_eq!(self.ended_pkts, self.fed, "packets lost or doubled");
    }

    fn check_sizes(&self) {
        assert_eq!(self.table.len(), self.open.len());
        assert!(self.open.len() <= self.max_flows);
        assert!(self.table.slots_allocated() <= self.max_flows);
        let s = self.table.stats();
        assert_eq!(s.packets, self.fed);
        assert_eq!(s.created, s.ended_total() + s.active);
    }
}

/// Target `flow_table`: a [`Setup`], then [`Op`]s until the input runs out,
/// then a flush. Checked after every step: a slot is reused only after its
/// flow's end was reported, each end reports exactly the packets and the
/// orientation the model saw, placements agree with the flow's orientation,
/// the table never holds more than `max_flows`, and after the flush every
/// packet fed was reported in exactly one ended flow.
pub fn flow_table(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else {
        return;
    };
    let cfg = FlowConfig {
        flow_timeout_us: 1 + i64::from(setup.timeout),
        activity_timeout_us: 1,
        tcp_close_linger_us: i64::from(setup.linger),
        max_flows: 1 + usize::from(setup.max_flows % 16),
        emergency_timeout_us: 1 + i64::from(setup.emergency_timeout),
        emergency_new_timeout_us: 1 + i64::from(setup.emergency_new_timeout),
        emergency_recovery_pct: 1 + u32::from(setup.emergency_recovery % 100),
    };
    let mut h = Harness {
        table: FlowTable::new(cfg).expect("a valid config"),
        max_flows: cfg.max_flows,
        open: HashMap::new(),
        fed: 0,
        ended_pkts: 0,
        events: Vec::new(),
    };
    let mut now: i64 = 1_000_000;
    while !u.is_empty() {
        let Ok(op) = Op::arbitrary(&mut u) else {
            break;
        };
        match op {
            Op::Packet(p) => {
                now = now.saturating_add(i64::from(p.dt));
                h.packet(&p.record(now));
            }
            Op::Advance(dt) => {
                now = now.saturating_add(i64::from(dt));
                h.advance(now);
            }
            Op::Jump(t) => now = t,
            Op::Flush => h.flush(),
        }
    }
    h.flush();
}
