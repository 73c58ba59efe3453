//! Model-based property test of the flow table: any packet sequence gives
//! the same flows, in the same order, with the same end reasons, packet and
//! byte counts, placements and slots as a deliberately simple reference
//! model (a `Vec` of flows, linear scans, CIC's FlowGenerator rules written
//! out plainly), emergency mode included: its entries and exits, its shorter
//! timeouts and its choice of eviction victim.

use proptest::prelude::*;
use tapstream_ingest::decode::flow_hash;
use tapstream_ingest::flow::{Direction, FlowConfig, FlowTable, PlacementKind};
use tapstream_ingest::packet::{proto, tcp_flags::*, PacketRecord};
use tapstream_ingest::EndReason;

/// What the table (or the model) reported, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    End {
        slot: u32,
        reason: EndReason,
        src: [u8; 16],
        dst: [u8; 16],
        sport: u16,
        dport: u16,
        proto: u8,
        start: i64,
        last: i64,
        pkts: [u64; 2],
        bytes: [u64; 2],
        icmp: (u8, u8),
    },
    Place {
        slot: u32,
        dir: Direction,
        /// None: existing flow; Some(None): fresh flow; Some(Some(t)):
        /// continuation with connection start t.
        new: Option<Option<i64>>,
    },
}

#[derive(Clone, Debug)]
struct MFlow {
    slot: u32,
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    proto: u8,
    start: i64,
    last: i64,
    touch: i64,
    /// Order of the last touch (smaller = less recently seen).
    seq: u64,
    conn_start: i64,
    /// 0 open, 1 first FIN, 2 second FIN, 3 ready for termination.
    state: u8,
    fin: [bool; 2],
    pkts: [u64; 2],
    bytes: [u64; 2],
    icmp: (u8, u8),
    /// Direction of the last packet.
    last_dir: usize,
    /// Direction changes so far; established at 2.
    turns: u8,
}

impl MFlow {
    fn established(&self) -> bool {
        self.turns >= 2
    }
}

struct Model {
    cfg: FlowConfig,
    flows: Vec<MFlow>,
    clock: i64,
    seq: u64,
    events: Vec<Ev>,
    emergency: bool,
    entries: u64,
    exits: u64,
    /// Emergency limits as the table caps them.
    all_limit: i64,
    new_limit: i64,
}

impl Model {
    fn new(cfg: FlowConfig) -> Self {
        let all_limit = cfg.emergency_timeout_us.min(cfg.flow_timeout_us);
        Model {
            cfg,
            flows: Vec::new(),
            clock: i64::MIN,
            seq: 0,
            events: Vec::new(),
            emergency: false,
            entries: 0,
            exits: 0,
            all_limit,
            new_limit: cfg.emergency_new_timeout_us.min(all_limit),
        }
    }

    /// At most `100 - recovery` percent full.
    fn recovered(&self) -> bool {
        self.flows.len() * 100
            <= self.cfg.max_flows * (100 - self.cfg.emergency_recovery_pct as usize)
    }

    fn end(&mut self, i: usize, reason: EndReason) {
        let f = self.flows.remove(i);
        let icmp = f.proto == proto::ICMP || f.proto == proto::ICMPV6;
        self.events.push(Ev::End {
            slot: f.slot,
            reason,
            src: f.src,
            dst: f.dst,
            sport: f.sport,
            dport: f.dport,
            proto: f.proto,
            start: f.start,
            last: f.last,
            pkts: f.pkts,
            bytes: f.bytes,
            icmp: if icmp { f.icmp } else { (0, 0) },
        });
    }

    /// Ends, least recently seen first, every flow matching `pick` whose
    /// last touch is more than `limit` before the clock.
    fn expire(&mut self, limit: i64, reason: EndReason, pick: fn(&MFlow) -> bool) {
        loop {
            let victim = self
                .flows
                .iter()
                .enumerate()
                .filter(|(_, f)| pick(f) && self.clock - f.touch > limit)
                .min_by_key(|(_, f)| f.seq)
                .map(|(i, _)| i);
            match victim {
                Some(i) => self.end(i, reason),
                None => break,
            }
        }
    }

    fn sweep(&mut self) {
        let linger = if self.emergency {
            self.cfg.tcp_close_linger_us.min(self.new_limit)
        } else {
            self.cfg.tcp_close_linger_us
        };
        self.expire(linger, EndReason::TcpTermination, |f| f.state == 3);
        self.expire(self.cfg.flow_timeout_us, EndReason::IdleTimeout, |_| true);
        if self.emergency {
            self.expire(self.new_limit, EndReason::EmergencyTimeout, |f| {
                !f.established()
            });
            self.expire(self.all_limit, EndReason::EmergencyTimeout, |_| true);
            if self.recovered() {
                self.emergency = false;
                self.exits += 1;
            }
        }
    }

    fn advance(&mut self, now: i64) {
        if now > self.clock {
            self.clock = now;
            self.sweep();
        }
    }

    fn touch(&mut self, i: usize, r: &PacketRecord, d: usize) {
        self.seq += 1;
        let (clock, seq) = (self.clock, self.seq);
        let f = &mut self.flows[i];
        if f.last_dir != d && f.turns < 2 {
            f.turns += 1;
        }
        f.last_dir = d;
        f.last = r.ts_us;
        f.touch = clock;
        f.seq = seq;
        f.pkts[d] += 1;
        f.bytes[d] += u64::from(r.wire_len);
    }

    /// Opens a flow; returns its index. The slot is filled in by the test
    /// from the table's placement.
    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        r: &PacketRecord,
        src: [u8; 16],
        dst: [u8; 16],
        sport: u16,
        dport: u16,
        d: usize,
        conn_start: i64,
    ) -> usize {
        if self.flows.len() >= self.cfg.max_flows {
            if !self.emergency {
                self.emergency = true;
                self.entries += 1;
                self.sweep();
            }
            if self.flows.len() >= self.cfg.max_flows {
                // The least recently seen flow not established, else the
                // least recently seen.
                let victim = (0..self.flows.len())
                    .min_by_key(|&i| (self.flows[i].established(), self.flows[i].seq))
                    .unwrap_or(0);
                self.end(victim, EndReason::Evicted);
            }
        }
        self.flows.push(MFlow {
            slot: u32::MAX,
            src,
            dst,
            sport,
            dport,
            proto: r.proto,
            start: r.ts_us,
            last: r.ts_us,
            touch: self.clock,
            seq: 0,
            conn_start,
            state: 0,
            fin: [false; 2],
            pkts: [0; 2],
            bytes: [0; 2],
            icmp: (r.icmp_type, r.icmp_code),
            last_dir: d,
            turns: 0,
        });
        let i = self.flows.len() - 1;
        self.touch(i, r, d);
        i
    }

    /// Processes one packet; returns the index of the flow it went to.
    fn process(&mut self, r: &PacketRecord) -> usize {
        self.advance(r.ts_us);
        let tcp = r.proto == proto::TCP;
        let icmp = r.proto == proto::ICMP || r.proto == proto::ICMPV6;
        let flags = if tcp { r.flags } else { 0 };
        let (sp, dp) = if icmp { (0, 0) } else { (r.sport, r.dport) };
        let found = self.flows.iter().enumerate().find_map(|(i, f)| {
            if f.proto != r.proto {
                None
            } else if (f.src, f.dst, f.sport, f.dport) == (r.src, r.dst, sp, dp) {
                Some((i, 0))
            } else if (f.src, f.dst, f.sport, f.dport) == (r.dst, r.src, dp, sp) {
                Some((i, 1))
            } else {
                None
            }
        });
        let Some((i, d)) = found else {
            let i = self.create(r, r.src, r.dst, sp, dp, 0, r.ts_us);
            self.place(i, Direction::Forward, Some(None));
            return i;
        };
        let f = self.flows[i].clone();
        let syn = flags & SYN != 0;
        if r.ts_us - f.start > self.cfg.flow_timeout_us || (f.state == 3 && syn) {
            let reason = if r.ts_us - f.start > self.cfg.flow_timeout_us {
                EndReason::ActiveTimeout
            } else {
                EndReason::TcpTermination
            };
            self.end(i, reason);
            if (f.state == 3 && syn && flags & ACK == 0) || !tcp {
                let j = self.create(r, r.src, r.dst, sp, dp, 0, r.ts_us);
                self.place(j, Direction::Forward, Some(None));
                return j;
            }
            let j = self.create(r, f.src, f.dst, f.sport, f.dport, d, f.conn_start);
            let dir = if d == 0 {
                Direction::Forward
            } else {
                Direction::Backward
            };
            self.place(j, dir, Some(Some(f.conn_start)));
            return j;
        }
        if flags & FIN != 0 {
            self.touch(i, r, d);
            let f = &mut self.flows[i];
            f.fin[d] = true;
            if f.state == 0 {
                f.state = 1;
            } else if f.state == 1 && f.fin[0] && f.fin[1] {
                f.state = 2;
            }
        } else if flags & RST != 0 {
            self.touch(i, r, d);
            self.flows[i].state = 3;
        } else if flags & ACK != 0 {
            self.touch(i, r, d);
            if self.flows[i].state == 2 {
                self.flows[i].state = 3;
            }
        } else if icmp && r.icmp_type != f.icmp.0 && r.icmp_code != f.icmp.1 {
            self.end(i, EndReason::IcmpChange);
            let j = self.create(r, r.src, r.dst, sp, dp, 0, r.ts_us);
            self.place(j, Direction::Forward, Some(None));
            return j;
        } else {
            self.touch(i, r, d);
        }
        let dir = if d == 0 {
            Direction::Forward
        } else {
            Direction::Backward
        };
        self.place(i, dir, None);
        i
    }

    fn place(&mut self, i: usize, dir: Direction, new: Option<Option<i64>>) {
        let slot = self.flows[i].slot;
        self.events.push(Ev::Place { slot, dir, new });
    }

    fn flush(&mut self) {
        while !self.flows.is_empty() {
            let lru = (0..self.flows.len())
                .min_by_key(|&i| self.flows[i].seq)
                .unwrap_or(0);
            self.end(lru, EndReason::EndOfInput);
        }
        if self.emergency {
            self.emergency = false;
            self.exits += 1;
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Packet {
        dt: i64,
        pair: u8,
        ports: u8,
        proto: u8,
        reverse: bool,
        flags: u8,
        icmp: (u8, u8),
        wire: u32,
    },
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    let dt = prop_oneof![
        6 => 0i64..200,
        2 => 0i64..2_500,
        1 => -300i64..0,
    ];
    let flags = prop_oneof![
        Just(SYN),
        Just(SYN | ACK),
        Just(ACK),
        Just(ACK),
        Just(PSH | ACK),
        Just(FIN | ACK),
        Just(FIN),
        Just(RST),
        Just(RST | ACK),
        Just(0),
        any::<u8>(),
    ];
    let icmp = prop_oneof![
        Just((8, 0)),
        Just((0, 0)),
        Just((3, 3)),
        Just((3, 1)),
        Just((11, 0))
    ];
    prop_oneof![
        12 => (dt, 0u8..2, 0u8..2, 0u8..5, any::<bool>(), flags, icmp, 60u32..1514).prop_map(
            |(dt, pair, ports, proto, reverse, flags, icmp, wire)| Op::Packet {
                dt,
                pair,
                ports,
                proto,
                reverse,
                flags,
                icmp,
                wire
            }
        ),
        1 => (0i64..2_000).prop_map(Op::Advance),
    ]
}

fn record(ts: i64, o: &Op) -> Option<PacketRecord> {
    let Op::Packet {
        pair,
        ports,
        proto: p,
        reverse,
        flags,
        icmp,
        wire,
        ..
    } = *o
    else {
        return None;
    };
    let (a, b) = [(1u8, 2u8), (1, 3), (2, 3)][usize::from(pair)];
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src[..4].copy_from_slice(&[10, 0, 0, a]);
    dst[..4].copy_from_slice(&[10, 0, 0, b]);
    let (mut sport, mut dport) = (1000 + u16::from(ports), 80);
    let p = [proto::TCP, proto::TCP, proto::TCP, proto::UDP, proto::ICMP][usize::from(p)];
    if p == proto::ICMP {
        (sport, dport) = (0, 0);
    }
    if reverse {
        std::mem::swap(&mut src, &mut dst);
        std::mem::swap(&mut sport, &mut dport);
    }
    Some(PacketRecord {
        ts_us: ts,
        hash: flow_hash(&src, &dst, sport, dport, p, false),
        src,
        dst,
        payload_len: 0,
        wire_len: wire,
        sport,
        dport,
        header_len: 20,
        window: 0,
        proto: p,
        flags: if p == proto::TCP { flags } else { 0 },
        icmp_type: if p == proto::ICMP { icmp.0 } else { 0 },
        icmp_code: if p == proto::ICMP { icmp.1 } else { 0 },
        v6: false,
    })
}

fn table_end(events: &mut Vec<Ev>, e: tapstream_ingest::flow::EndedFlow) {
    let m = e.meta;
    events.push(Ev::End {
        slot: e.slot,
        reason: m.reason,
        src: m.src,
        dst: m.dst,
        sport: m.sport,
        dport: m.dport,
        proto: m.proto,
        start: m.start_us,
        last: m.last_us,
        pkts: [m.pkts_fwd, m.pkts_bwd],
        bytes: [m.bytes_fwd, m.bytes_bwd],
        icmp: (m.icmp_type, m.icmp_code),
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn table_matches_model(
        ops in proptest::collection::vec(op(), 1..200),
        max_flows in 1usize..6,
        emergency_timeout_us in 1i64..1_500,
        emergency_new_timeout_us in 1i64..600,
        emergency_recovery_pct in prop_oneof![1u32..=100, Just(30)],
    ) {
        // Emergency limits above the normal ones are capped by the table.
        let cfg = FlowConfig {
            flow_timeout_us: 1_000,
            activity_timeout_us: 100,
            tcp_close_linger_us: 150,
            max_flows,
            emergency_timeout_us,
            emergency_new_timeout_us,
            emergency_recovery_pct,
        };
        let mut table = FlowTable::new(cfg).expect("valid config");
        let mut model = Model::new(cfg);
        let mut got: Vec<Ev> = Vec::new();
        let mut cursor = 1_000_000i64;
        let mut packets = 0u64;
        for o in &ops {
            match o {
                Op::Advance(dt) => {
                    let now = table.clock_us().max(cursor) + dt;
                    table.advance(now, &mut |e| table_end(&mut got, e));
                    model.advance(now);
                }
                Op::Packet { dt, .. } => {
                    cursor += dt;
                    let Some(r) = record(cursor, o) else { continue };
                    packets += 1;
                    let p = table.process(&r, &mut |e| table_end(&mut got, e));
                    let i = model.process(&r);
                    if !matches!(p.kind, PlacementKind::Existing) {
                        // The model learns slot numbers from the table; the
                        // comparison below checks they are used consistently.
                        model.flows[i].slot = p.slot;
                        if let Some(Ev::Place { slot, .. }) = model.events.last_mut() {
                            *slot = p.slot;
                        }
                    }
                    let new = match p.kind {
                        PlacementKind::Existing => None,
                        PlacementKind::New { continuation } => Some(continuation.map(|c| c.conn_start_us)),
                    };
                    got.push(Ev::Place { slot: p.slot, dir: p.dir, new });
                }
            }
            prop_assert_eq!(&got, &model.events);
            prop_assert!(table.len() <= max_flows);
            prop_assert!(table.slots_allocated() <= max_flows);
            prop_assert_eq!(table.len(), model.flows.len());
            let s = table.stats();
            prop_assert_eq!(
                (s.emergency, s.emergency_entries, s.emergency_exits),
                (model.emergency, model.entries, model.exits)
            );
        }
        table.flush(&mut |e| table_end(&mut got, e));
        model.flush();
        prop_assert_eq!(&got, &model.events);
        let s = table.stats();
        prop_assert_eq!(
            (s.emergency, s.emergency_entries, s.emergency_exits),
            (false, model.entries, model.exits)
        );
        prop_assert_eq!(s.emergency_entries, s.emergency_exits);
        prop_assert_eq!(s.packets, packets);
        prop_assert_eq!(s.created, s.ended_total());
        let in_flows: u64 = got.iter().map(|e| match e {
            Ev::End { pkts, .. } => pkts[0] + pkts[1],
            Ev::Place { .. } => 0,
        }).sum();
        prop_assert_eq!(in_flows, packets);
    }
}
