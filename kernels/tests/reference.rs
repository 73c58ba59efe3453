//! Cross-check of the integer accumulators against a straightforward `f64`
//! port of CICFlowMeter e19a160's `BasicFlow` (packet lists, incremental
//! SummaryStatistics-style moments, Java's bulk and active/idle code) on
//! random packet sequences: integer features must match exactly, float
//! features to 1e-9 relative.

use proptest::prelude::*;
use tapstream_ingest::flow::Direction;
use tapstream_ingest::packet::{proto, PacketRecord};
use tapstream_ingest::{EndReason, FlowMeta};
use tapstream_kernels::cpu::FlowAccumulator;
use tapstream_kernels::schema::{idx, Kind, FEATURES, NUM_FEATURES};

const ACTIVITY_TIMEOUT: i64 = 5_000_000;
const BASE: i64 = 1_500_000_000_000_000;

/// commons-math SummaryStatistics: Welford mean and second moment, min, max, sum.
#[derive(Clone, Debug, Default)]
struct Summary {
    n: f64,
    m1: f64,
    m2: f64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Summary {
    fn add(&mut self, x: f64) {
        if self.n == 0.0 {
            self.min = x;
            self.max = x;
        }
        self.n += 1.0;
        let dev = x - self.m1;
        let nd = dev / self.n;
        self.m2 += (self.n - 1.0) * dev * nd;
        self.m1 += nd;
        self.sum += x;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }
    fn mean(&self) -> f64 {
        if self.n == 0.0 {
            f64::NAN
        } else {
            self.m1
        }
    }
    fn var(&self) -> f64 {
        if self.n == 0.0 {
            f64::NAN
        } else if self.n == 1.0 {
            0.0
        } else {
            self.m2 / (self.n - 1.0)
        }
    }
    fn std(&self) -> f64 {
        self.var().sqrt()
    }
}

#[derive(Clone, Copy, Debug)]
struct Pkt {
    dir: usize,
    ts: i64,
    len: u32,
    hdr: u16,
    flags: u8,
    win: u16,
}

#[derive(Default)]
struct Bulk {
    duration: i64,
    pkt_count: i64,
    size_total: i64,
    state_count: i64,
    pkt_helper: i64,
    start_helper: i64,
    size_helper: i64,
    last_ts: i64,
}

/// Java `updateForwardBulk` (0 means "no bulk"; timestamps here are positive).
fn java_bulk(b: &mut Bulk, other_last: i64, ts: i64, size: i64) {
    if other_last > b.start_helper {
        b.start_helper = 0;
    }
    if size <= 0 {
        return;
    }
    if b.start_helper == 0 {
        b.start_helper = ts;
        b.pkt_helper = 1;
        b.size_helper = size;
        b.last_ts = ts;
    } else if ((ts - b.last_ts) as f64 / 1_000_000.0) > 1.0 {
        b.start_helper = ts;
        b.last_ts = ts;
        b.pkt_helper = 1;
        b.size_helper = size;
    } else {
        b.pkt_helper += 1;
        b.size_helper += size;
        if b.pkt_helper == 4 {
            b.state_count += 1;
            b.pkt_count += b.pkt_helper;
            b.size_total += b.size_helper;
            b.duration += ts - b.start_helper;
        } else if b.pkt_helper > 4 {
            b.pkt_count += 1;
            b.size_total += size;
            b.duration += ts - b.last_ts;
        }
        b.last_ts = ts;
    }
}

/// The e19a160 feature row of one flow, computed the Java way.
fn reference(pkts: &[Pkt], p: u8, sport: u16, dport: u16, conn_start: i64) -> [f64; NUM_FEATURES] {
    let first = pkts[0];
    let mut len = [Summary::default(), Summary::default()];
    let mut all = Summary::default();
    let mut iat = [Summary::default(), Summary::default()];
    let mut flow_iat = Summary::default();
    let mut active = Summary::default();
    let mut idle = Summary::default();
    let mut hdr = [0i64; 2];
    let mut last_dir = [0i64; 2];
    let mut count = [0usize; 2];
    let mut psh = [0; 2];
    let mut urg = [0; 2];
    let mut rst = [0; 2];
    let mut flags = [0u32; 8];
    let mut bulk = [Bulk::default(), Bulk::default()];
    let mut init_win = [0u16; 2];
    let mut act_data = 0;
    let mut min_seg = 0i64;
    let (mut start_active, mut end_active) = (first.ts, first.ts);
    let mut last = first.ts;
    for (k, q) in pkts.iter().enumerate() {
        let d = q.dir;
        let other = bulk[1 - d].last_ts;
        java_bulk(&mut bulk[d], other, q.ts, i64::from(q.len));
        for (b, c) in flags.iter_mut().enumerate() {
            *c += u32::from((q.flags >> b) & 1);
        }
        if k > 0 {
            // updateActiveIdleTime, then addPacket.
            if q.ts - end_active > ACTIVITY_TIMEOUT {
                if end_active - start_active > 0 {
                    active.add((end_active - start_active) as f64);
                }
                idle.add((q.ts - end_active) as f64);
                start_active = q.ts;
            }
            end_active = q.ts;
            flow_iat.add((q.ts - last) as f64);
            last = q.ts;
            if d == 0 && q.len >= 1 {
                act_data += 1;
            }
            if d == 0 {
                min_seg = min_seg.min(i64::from(q.hdr));
            }
            if q.flags & 0x04 != 0 {
                rst[d] += 1;
            }
        } else if d == 0 {
            min_seg = i64::from(q.hdr);
        }
        if d == 0 && k == 0 {
            init_win[0] = q.win;
        }
        if d == 1 {
            init_win[1] = q.win;
        }
        len[d].add(f64::from(q.len));
        all.add(f64::from(q.len));
        hdr[d] += i64::from(q.hdr);
        count[d] += 1;
        if count[d] > 1 {
            iat[d].add((q.ts - last_dir[d]) as f64);
        }
        last_dir[d] = q.ts;
        psh[d] += i32::from(q.flags & 0x08 != 0);
        urg[d] += i32::from(q.flags & 0x20 != 0);
    }
    let dur = last - first.ts;
    let n = pkts.len() as f64;
    let nan0 = |x: f64| if x.is_nan() { 0.0 } else { x };
    let mut r = [0f64; NUM_FEATURES];
    r[idx::SRC_PORT] = f64::from(sport);
    r[idx::DST_PORT] = f64::from(dport);
    r[idx::PROTOCOL] = f64::from(p);
    r[idx::FLOW_DURATION] = dur as f64;
    r[idx::TOTAL_FWD_PACKET] = len[0].n;
    r[idx::TOTAL_BWD_PACKETS] = len[1].n;
    r[idx::TOTAL_LENGTH_OF_FWD_PACKET] = len[0].sum;
    r[idx::TOTAL_LENGTH_OF_BWD_PACKET] = len[1].sum;
    for (d, base) in [
        (0, idx::FWD_PACKET_LENGTH_MAX),
        (1, idx::BWD_PACKET_LENGTH_MAX),
    ] {
        if len[d].n > 0.0 {
            r[base] = len[d].max;
            r[base + 1] = len[d].min;
            r[base + 2] = len[d].mean();
            r[base + 3] = len[d].std();
        }
    }
    let secs = dur as f64 / 1_000_000.0;
    r[idx::FLOW_BYTES_S] = if dur == 0 {
        -1.0
    } else {
        (len[0].sum + len[1].sum) / secs
    };
    r[idx::FLOW_PACKETS_S] = if dur == 0 { -1.0 } else { n / secs };
    r[idx::FLOW_IAT_MEAN] = nan0(flow_iat.mean());
    r[idx::FLOW_IAT_STD] = nan0(flow_iat.std());
    r[idx::FLOW_IAT_MAX] = if flow_iat.n > 0.0 { flow_iat.max } else { 0.0 };
    r[idx::FLOW_IAT_MIN] = if flow_iat.n > 0.0 { flow_iat.min } else { 0.0 };
    for (d, base) in [(0, idx::FWD_IAT_TOTAL), (1, idx::BWD_IAT_TOTAL)] {
        if count[d] > 1 {
            r[base] = iat[d].sum;
            r[base + 1] = iat[d].mean();
            r[base + 2] = iat[d].std();
            r[base + 3] = iat[d].max;
            r[base + 4] = iat[d].min;
        }
    }
    r[idx::FWD_PSH_FLAGS] = f64::from(psh[0]);
    r[idx::BWD_PSH_FLAGS] = f64::from(psh[1]);
    r[idx::FWD_URG_FLAGS] = f64::from(urg[0]);
    r[idx::BWD_URG_FLAGS] = f64::from(urg[1]);
    r[idx::FWD_RST_FLAGS] = f64::from(rst[0]);
    r[idx::BWD_RST_FLAGS] = f64::from(rst[1]);
    r[idx::FWD_HEADER_LENGTH] = hdr[0] as f64;
    r[idx::BWD_HEADER_LENGTH] = hdr[1] as f64;
    r[idx::FWD_PACKETS_S] = if dur > 0 { count[0] as f64 / secs } else { 0.0 };
    r[idx::BWD_PACKETS_S] = if dur > 0 { count[1] as f64 / secs } else { 0.0 };
    r[idx::PACKET_LENGTH_MIN] = all.min;
    r[idx::PACKET_LENGTH_MAX] = all.max;
    r[idx::PACKET_LENGTH_MEAN] = all.mean();
    r[idx::PACKET_LENGTH_STD] = all.std();
    r[idx::PACKET_LENGTH_VARIANCE] = all.var();
    // Bits: FIN 0, SYN 1, RST 2, PSH 3, ACK 4, URG 5, ECE 6, CWR 7.
    let order = [0, 1, 2, 3, 4, 5, 7, 6];
    for (k, b) in order.iter().enumerate() {
        r[idx::FIN_FLAG_COUNT + k] = f64::from(flags[*b]);
    }
    r[idx::DOWN_UP_RATIO] = if count[0] > 0 {
        count[1] as f64 / count[0] as f64
    } else {
        0.0
    };
    r[idx::AVERAGE_PACKET_SIZE] = all.sum / n;
    r[idx::FWD_SEGMENT_SIZE_AVG] = if count[0] > 0 {
        len[0].sum / count[0] as f64
    } else {
        0.0
    };
    r[idx::BWD_SEGMENT_SIZE_AVG] = if count[1] > 0 {
        len[1].sum / count[1] as f64
    } else {
        0.0
    };
    for (d, base) in [(0, idx::FWD_BYTES_BULK_AVG), (1, idx::BWD_BYTES_BULK_AVG)] {
        let b = &bulk[d];
        if b.state_count != 0 {
            r[base] = (b.size_total as f64 / b.state_count as f64).trunc();
            r[base + 1] = (b.pkt_count as f64 / b.state_count as f64).trunc();
        }
        if b.duration != 0 {
            r[base + 2] = (b.size_total as f64 / (b.duration as f64 / 1_000_000.0)).trunc();
        }
    }
    // sfCount = packets (the e19a160 precedence bug).
    r[idx::SUBFLOW_FWD_PACKETS] = (count[0] as f64 / n).trunc();
    r[idx::SUBFLOW_FWD_BYTES] = (len[0].sum / n).trunc();
    r[idx::SUBFLOW_BWD_PACKETS] = (count[1] as f64 / n).trunc();
    r[idx::SUBFLOW_BWD_BYTES] = (len[1].sum / n).trunc();
    r[idx::FWD_INIT_WIN_BYTES] = f64::from(init_win[0]);
    r[idx::BWD_INIT_WIN_BYTES] = f64::from(init_win[1]);
    r[idx::FWD_ACT_DATA_PKTS] = f64::from(act_data);
    r[idx::FWD_SEG_SIZE_MIN] = min_seg as f64;
    for (s, base) in [(&active, idx::ACTIVE_MEAN), (&idle, idx::IDLE_MEAN)] {
        if s.n > 0.0 {
            r[base] = s.mean();
            r[base + 1] = s.std();
            r[base + 2] = s.max;
            r[base + 3] = s.min;
        }
    }
    let icmp = p == proto::ICMP;
    r[idx::ICMP_CODE] = if icmp { 3.0 } else { -1.0 };
    r[idx::ICMP_TYPE] = if icmp { 11.0 } else { -1.0 };
    r[idx::TOTAL_TCP_FLOW_TIME] = if p == proto::TCP {
        (last - conn_start) as f64
    } else {
        0.0
    };
    r
}

fn record(q: &Pkt, p: u8) -> PacketRecord {
    PacketRecord {
        ts_us: q.ts,
        payload_len: q.len,
        header_len: q.hdr,
        flags: q.flags,
        window: q.win,
        proto: p,
        ..PacketRecord::default()
    }
}

fn packet() -> impl Strategy<Value = (bool, i64, u32, u16, u8, u16)> {
    let dt = prop_oneof![
        8 => 0i64..3_000,
        2 => 0i64..1_500_000,
        1 => 4_000_000i64..9_000_000,
        1 => -5_000i64..0,
    ];
    let len = prop_oneof![3 => Just(0u32), 7 => 1u32..1500];
    let hdr = prop_oneof![Just(20u16), Just(32), Just(40), Just(60)];
    (any::<bool>(), dt, len, hdr, any::<u8>(), any::<u16>())
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * want.abs().max(got.abs()) + 1e-9
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn integer_accumulators_match_java_style_reference(
        raw in proptest::collection::vec(packet(), 1..80),
        proto_sel in 0u8..3,
        conn_back in 0i64..1_000_000_000,
    ) {
        let p = [proto::TCP, proto::UDP, proto::ICMP][usize::from(proto_sel)];
        let tcp = p == proto::TCP;
        let mut ts = BASE;
        let pkts: Vec<Pkt> = raw
            .iter()
            .map(|&(back, dt, len, hdr, flags, win)| {
                ts += dt;
                Pkt {
                    dir: usize::from(back),
                    ts,
                    len,
                    hdr: if tcp { hdr } else { 8 },
                    flags: if tcp { flags } else { 0 },
                    win: if tcp { win } else { 0 },
                }
            })
            .collect();
        let first = pkts[0];
        // A flow starting backward is a continuation; give it an earlier
        // connection start.
        let conn_start = if first.dir == 1 { first.ts - conn_back } else { first.ts };
        let mut acc = FlowAccumulator::EMPTY;
        let dir = |d: usize| if d == 0 { Direction::Forward } else { Direction::Backward };
        acc.first_packet(&record(&first, p), dir(first.dir), conn_start);
        for q in &pkts[1..] {
            acc.update(&record(q, p), dir(q.dir), ACTIVITY_TIMEOUT);
        }
        let meta = FlowMeta {
            flow_id: 1,
            src: [0; 16],
            dst: [0; 16],
            sport: 1234,
            dport: 80,
            proto: p,
            v6: false,
            icmp_type: 11,
            icmp_code: 3,
            start_us: first.ts,
            last_us: ts,
            pkts_fwd: 0,
            pkts_bwd: 0,
            bytes_fwd: 0,
            bytes_bwd: 0,
            reason: EndReason::EndOfInput,
        };
        let mut got = [0f64; NUM_FEATURES];
        acc.finalize(&meta, &mut got);
        prop_assert_eq!(acc.packets(), pkts.len() as u64);
        let want = reference(&pkts, p, 1234, 80, conn_start);
        for i in 0..NUM_FEATURES {
            let (name, kind) = FEATURES[i];
            match kind {
                Kind::Integer => prop_assert!(got[i] == want[i], "{name}: got {}, want {}", got[i], want[i]),
                Kind::Float => prop_assert!(close(got[i], want[i]), "{name}: got {}, want {}", got[i], want[i]),
            }
        }
    }
}
