//! The CPU reference extractor: per-flow accumulators and their
//! finalization into the 84 CIC-IDS2017 feature values.
//!
//! This module is the *definition* of every feature (see `FEATURES.md`); the
//! CUDA kernels must reproduce it. To make that possible exactly, every
//! per-flow accumulator is an integer (counts, sums, sums of squares in
//! 128 bits, minima and maxima, timestamps in µs) and updates are plain
//! integer operations with no data-dependent floating point. Floating point
//! appears only in [`FlowAccumulator::finalize`]: a mean is `sum / n`, a
//! sample variance is `(n·Σx² − (Σx)²) / (n·(n−1))` with the numerator and
//! denominator computed exactly in 128-bit integers and divided once in
//! `f64`, and a standard deviation is the square root of that.
//!
//! Memory is constant per flow (no packet lists): one [`FlowAccumulator`]
//! (656 bytes) per flow-table slot, kept in a [`SlotVec`] indexed by slot
//! number by [`CpuExtractor`]. The flow table ([`tapstream_ingest::flow`]) decides
//! flow identity, direction, start and end; this module never looks at
//! addresses.

use tapstream_ingest::flow::{Direction, Placement, PlacementKind, SlotVec};
use tapstream_ingest::packet::{proto, PacketRecord};
use tapstream_ingest::FlowMeta;

use crate::schema::{idx, NUM_FEATURES};

/// A direction's bulk is broken by a gap longer than this (CIC: 1 s).
pub const BULK_GAP_US: i64 = 1_000_000;
/// Payload-carrying packets in one direction, without the other direction
/// sending payload in between, that make a bulk (CIC: 4).
pub const BULK_MIN_PACKETS: u64 = 4;
/// "No bulk candidate" (CIC uses timestamp 0; equal for positive timestamps).
const NO_BULK: i64 = i64::MIN;

/// Bit positions of the TCP flags in the flags byte.
mod bit {
    pub const FIN: usize = 0;
    pub const SYN: usize = 1;
    pub const RST: usize = 2;
    pub const PSH: usize = 3;
    pub const ACK: usize = 4;
    pub const URG: usize = 5;
    pub const ECE: usize = 6;
    pub const CWR: usize = 7;
}

/// Exact running statistics of a stream of integers: count, sum, sum of
/// squares, minimum and maximum.
///
/// The sum wraps modulo 2^64 and the sum of squares saturates at
/// `u128::MAX`; neither is reachable from a capture (the sum of a flow's
/// inter-arrival times telescopes to its duration, lengths are below 2^32),
/// only from timestamps jumping back and forth by centuries thousands of
/// times. [`IntStats::variance`] then falls back to an `f64` formula.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntStats {
    sumsq: u128,
    sum: i64,
    n: u64,
    min: i64,
    max: i64,
}

impl IntStats {
    /// No values yet.
    pub const EMPTY: IntStats = IntStats {
        sumsq: 0,
        sum: 0,
        n: 0,
        min: i64::MAX,
        max: i64::MIN,
    };

    /// Adds one value.
    #[inline]
    pub fn push(&mut self, x: i64) {
        let a = u128::from(x.unsigned_abs());
        self.sumsq = self.sumsq.saturating_add(a * a);
        self.sum = self.sum.wrapping_add(x);
        self.n += 1;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// The statistics of both streams together.
    pub fn merged(&self, other: &IntStats) -> IntStats {
        IntStats {
            sumsq: self.sumsq.saturating_add(other.sumsq),
            sum: self.sum.wrapping_add(other.sum),
            n: self.n + other.n,
            min: self.min.min(other.min),
            max: self.max.max(other.max),
        }
    }

    /// Number of values.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Sum of the values.
    pub fn sum(&self) -> i64 {
        self.sum
    }

    /// Smallest value, 0 when empty.
    pub fn min_or_zero(&self) -> i64 {
        if self.n == 0 {
            0
        } else {
            self.min
        }
    }

    /// Largest value, 0 when empty.
    pub fn max_or_zero(&self) -> i64 {
        if self.n == 0 {
            0
        } else {
            self.max
        }
    }

    /// `sum / n`, 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum as f64 / self.n as f64
        }
    }

    /// Sample variance (divisor n − 1), 0 for fewer than two values.
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        let n = u128::from(self.n);
        let s = u128::from(self.sum.unsigned_abs());
        let exact = if self.sumsq == u128::MAX {
            None
        } else {
            n.checked_mul(self.sumsq).zip(s.checked_mul(s))
        };
        match exact {
            // n·Σx² ≥ (Σx)² always (Cauchy–Schwarz), so the difference is exact.
            Some((a, b)) => a.saturating_sub(b) as f64 / (n * (n - 1)) as f64,
            None => {
                let nf = self.n as f64;
                let sf = self.sum as f64;
                ((self.sumsq as f64 - sf * sf / nf) / (nf - 1.0)).max(0.0)
            }
        }
    }

    /// Sample standard deviation, 0 for fewer than two values.
    pub fn std_dev(&self) -> f64 {
        self.variance().sqrt()
    }
}

/// CIC's bulk detector for one direction (`updateForwardBulk`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bulk {
    /// Start of the current bulk candidate, or [`NO_BULK`].
    start: i64,
    /// Time of the last payload packet of the candidate (CIC `lastBulkTS`).
    last: i64,
    cand_pkts: u64,
    cand_bytes: u64,
    /// Completed bulks.
    bulks: u64,
    pkts: u64,
    bytes: u64,
    duration: i64,
}

impl Bulk {
    const EMPTY: Bulk = Bulk {
        start: NO_BULK,
        last: NO_BULK,
        cand_pkts: 0,
        cand_bytes: 0,
        bulks: 0,
        pkts: 0,
        bytes: 0,
        duration: 0,
    };

    /// One packet of this direction; `other_last` is the other direction's
    /// last bulk packet time.
    #[inline]
    fn update(&mut self, other_last: i64, ts: i64, size: u32) {
        if other_last > self.start {
            self.start = NO_BULK;
        }
        if size == 0 {
            return;
        }
        let size = u64::from(size);
        if self.start == NO_BULK || ts.saturating_sub(self.last) > BULK_GAP_US {
            self.start = ts;
            self.last = ts;
            self.cand_pkts = 1;
            self.cand_bytes = size;
            return;
        }
        self.cand_pkts += 1;
        self.cand_bytes += size;
        if self.cand_pkts == BULK_MIN_PACKETS {
            self.bulks += 1;
            self.pkts += self.cand_pkts;
            self.bytes += self.cand_bytes;
            self.duration = self.duration.saturating_add(ts.saturating_sub(self.start));
        } else if self.cand_pkts > BULK_MIN_PACKETS {
            self.pkts += 1;
            self.bytes += size;
            self.duration = self.duration.saturating_add(ts.saturating_sub(self.last));
        }
        self.last = ts;
    }
}

/// What several groups of a flow's features share (see
/// `FlowAccumulator::totals`).
#[derive(Clone, Copy)]
struct Totals {
    dur: i64,
    secs: f64,
    n_f: u64,
    n_b: u64,
    n: u64,
    all: IntStats,
    bytes_f: i64,
    bytes_b: i64,
}

/// Per-direction accumulators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DirStats {
    /// Transport payload bytes per packet.
    len: IntStats,
    /// Gaps between consecutive packets of this direction, µs.
    iat: IntStats,
    header_bytes: u64,
    last_ts: i64,
    /// Count of packets with each TCP flag bit set (flow's first packet included).
    flags: [u32; 8],
    bulk: Bulk,
    /// Forward: the first packet's window (0 if the flow began backward).
    /// Backward: the last backward packet's window (CIC e19a160).
    init_win: u16,
}

impl DirStats {
    const EMPTY: DirStats = DirStats {
        len: IntStats::EMPTY,
        iat: IntStats::EMPTY,
        header_bytes: 0,
        last_ts: 0,
        flags: [0; 8],
        bulk: Bulk::EMPTY,
        init_win: 0,
    };

    #[inline]
    fn count_flags(&mut self, flags: u8) {
        for (b, c) in self.flags.iter_mut().enumerate() {
            *c += u32::from((flags >> b) & 1);
        }
    }
}

/// Everything the extractor keeps about one flow: constant size, integers
/// only. Its layout is what the CUDA twin mirrors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowAccumulator {
    dirs: [DirStats; 2],
    /// Gaps between consecutive packets of the flow, µs (arrival order; may
    /// be negative when the capture is out of order).
    flow_iat: IntStats,
    /// Lengths of active periods, µs.
    active: IntStats,
    /// Lengths of idle periods, µs.
    idle: IntStats,
    start_ts: i64,
    last_ts: i64,
    /// Start of the TCP connection this flow belongs to (its own start
    /// unless it is a continuation).
    conn_start_ts: i64,
    start_active: i64,
    end_active: i64,
    /// Forward packets with payload, the flow's first packet not counted.
    fwd_act_data: u64,
    /// Smallest forward transport header; 0 if the flow began backward.
    fwd_min_seg: u16,
    first_flags: u8,
    first_dir: u8,
}

/// TCP flags of a record, 0 for other protocols.
#[inline]
fn tcp_flags_of(rec: &PacketRecord) -> u8 {
    if rec.proto == proto::TCP {
        rec.flags
    } else {
        0
    }
}

impl FlowAccumulator {
    /// An accumulator with no packets.
    pub const EMPTY: FlowAccumulator = FlowAccumulator {
        dirs: [DirStats::EMPTY; 2],
        flow_iat: IntStats::EMPTY,
        active: IntStats::EMPTY,
        idle: IntStats::EMPTY,
        start_ts: 0,
        last_ts: 0,
        conn_start_ts: 0,
        start_active: 0,
        end_active: 0,
        fwd_act_data: 0,
        fwd_min_seg: 0,
        first_flags: 0,
        first_dir: 0,
    };

    /// Resets the accumulator to a flow whose first packet is `rec`
    /// (CIC `BasicFlow.firstPacket`). `conn_start_us` is the TCP connection
    /// start for continuations, else the packet time.
    // `dir.index()` is 0 or 1, and there are two directions.
    #[allow(clippy::indexing_slicing)]
    pub fn first_packet(&mut self, rec: &PacketRecord, dir: Direction, conn_start_us: i64) {
        let ts = rec.ts_us;
        let d = dir.index();
        let flags = tcp_flags_of(rec);
        *self = FlowAccumulator::EMPTY;
        self.start_ts = ts;
        self.last_ts = ts;
        self.conn_start_ts = conn_start_us;
        self.start_active = ts;
        self.end_active = ts;
        self.first_flags = flags;
        self.first_dir = dir as u8;
        let ds = &mut self.dirs[d];
        ds.bulk.update(NO_BULK, ts, rec.payload_len);
        ds.len.push(i64::from(rec.payload_len));
        ds.header_bytes = u64::from(rec.header_len);
        ds.last_ts = ts;
        ds.count_flags(flags);
        ds.init_win = rec.window;
        self.fwd_min_seg = match dir {
            Direction::Forward => rec.header_len,
            Direction::Backward => 0,
        };
    }

    /// Adds a later packet of the flow (CIC `updateActiveIdleTime` followed
    /// by `BasicFlow.addPacket`).
    #[inline]
    // `dir.index()` is 0 or 1, and there are two directions.
    #[allow(clippy::indexing_slicing)]
    pub fn update(&mut self, rec: &PacketRecord, dir: Direction, activity_timeout_us: i64) {
        let ts = rec.ts_us;
        let d = dir.index();
        let flags = tcp_flags_of(rec);
        let len = rec.payload_len;

        let gap = ts.saturating_sub(self.end_active);
        if gap > activity_timeout_us {
            let active = self.end_active.saturating_sub(self.start_active);
            if active > 0 {
                self.active.push(active);
            }
            self.idle.push(gap);
            self.start_active = ts;
        }
        self.end_active = ts;

        self.flow_iat.push(ts.saturating_sub(self.last_ts));
        self.last_ts = ts;

        let other_last = self.dirs[d ^ 1].bulk.last;
        let ds = &mut self.dirs[d];
        ds.bulk.update(other_last, ts, len);
        if ds.len.n > 0 {
            ds.iat.push(ts.saturating_sub(ds.last_ts));
        }
        ds.last_ts = ts;
        ds.len.push(i64::from(len));
        ds.header_bytes += u64::from(rec.header_len);
        ds.count_flags(flags);
        match dir {
            Direction::Forward => {
                self.fwd_act_data += u64::from(len > 0);
                self.fwd_min_seg = self.fwd_min_seg.min(rec.header_len);
            }
            Direction::Backward => ds.init_win = rec.window,
        }
    }

    /// Packets so far.
    pub fn packets(&self) -> u64 {
        self.dirs[0].len.n + self.dirs[1].len.n
    }

    /// Writes the 84 feature values, in `schema::FEATURES` order. `meta` is
    /// the flow table's report for this flow (ports, protocol, ICMP type and
    /// code of the first packet).
    pub fn finalize(&self, meta: &FlowMeta, row: &mut [f64; NUM_FEATURES]) {
        let t = self.totals();
        self.finalize_volumes(&t, meta, row);
        self.finalize_iat(row);
        self.finalize_flags(&t, row);
        self.finalize_sizes(&t, row);
        self.finalize_rest(meta, row);
    }

    /// What several groups of features share, computed once (the CUDA twin's
    /// `fin_totals`).
    #[inline]
    fn totals(&self) -> Totals {
        let [f, b] = &self.dirs;
        let dur = self.last_ts.saturating_sub(self.start_ts);
        Totals {
            dur,
            secs: dur as f64 / 1_000_000.0,
            n_f: f.len.n,
            n_b: b.len.n,
            n: f.len.n + b.len.n,
            all: f.len.merged(&b.len),
            bytes_f: f.len.sum,
            bytes_b: b.len.sum,
        }
    }

    /// Ports, protocol, duration, packet and byte counts, lengths per
    /// direction, and the flow's byte and packet rates.
    #[inline]
    fn finalize_volumes(&self, t: &Totals, meta: &FlowMeta, row: &mut [f64; NUM_FEATURES]) {
        let [f, b] = &self.dirs;
        let Totals {
            dur,
            secs,
            n_f,
            n_b,
            n,
            bytes_f,
            bytes_b,
            ..
        } = *t;
        let bytes = t.all.sum;

        row[idx::SRC_PORT] = f64::from(meta.sport);
        row[idx::DST_PORT] = f64::from(meta.dport);
        row[idx::PROTOCOL] = f64::from(meta.proto);
        row[idx::FLOW_DURATION] = dur as f64;
        row[idx::TOTAL_FWD_PACKET] = n_f as f64;
        row[idx::TOTAL_BWD_PACKETS] = n_b as f64;
        row[idx::TOTAL_LENGTH_OF_FWD_PACKET] = bytes_f as f64;
        row[idx::TOTAL_LENGTH_OF_BWD_PACKET] = bytes_b as f64;

        row[idx::FWD_PACKET_LENGTH_MAX] = f.len.max_or_zero() as f64;
        row[idx::FWD_PACKET_LENGTH_MIN] = f.len.min_or_zero() as f64;
        row[idx::FWD_PACKET_LENGTH_MEAN] = f.len.mean();
        row[idx::FWD_PACKET_LENGTH_STD] = f.len.std_dev();
        row[idx::BWD_PACKET_LENGTH_MAX] = b.len.max_or_zero() as f64;
        row[idx::BWD_PACKET_LENGTH_MIN] = b.len.min_or_zero() as f64;
        row[idx::BWD_PACKET_LENGTH_MEAN] = b.len.mean();
        row[idx::BWD_PACKET_LENGTH_STD] = b.len.std_dev();

        let (bytes_s, pkts_s) = if dur == 0 {
            (-1.0, -1.0)
        } else {
            (bytes as f64 / secs, n as f64 / secs)
        };
        row[idx::FLOW_BYTES_S] = bytes_s;
        row[idx::FLOW_PACKETS_S] = pkts_s;
    }

    /// Inter-arrival times: of the flow, and per direction.
    #[inline]
    fn finalize_iat(&self, row: &mut [f64; NUM_FEATURES]) {
        let [f, b] = &self.dirs;
        row[idx::FLOW_IAT_MEAN] = self.flow_iat.mean();
        row[idx::FLOW_IAT_STD] = self.flow_iat.std_dev();
        row[idx::FLOW_IAT_MAX] = self.flow_iat.max_or_zero() as f64;
        row[idx::FLOW_IAT_MIN] = self.flow_iat.min_or_zero() as f64;
        row[idx::FWD_IAT_TOTAL] = f.iat.sum as f64;
        row[idx::FWD_IAT_MEAN] = f.iat.mean();
        row[idx::FWD_IAT_STD] = f.iat.std_dev();
        row[idx::FWD_IAT_MAX] = f.iat.max_or_zero() as f64;
        row[idx::FWD_IAT_MIN] = f.iat.min_or_zero() as f64;
        row[idx::BWD_IAT_TOTAL] = b.iat.sum as f64;
        row[idx::BWD_IAT_MEAN] = b.iat.mean();
        row[idx::BWD_IAT_STD] = b.iat.std_dev();
        row[idx::BWD_IAT_MAX] = b.iat.max_or_zero() as f64;
        row[idx::BWD_IAT_MIN] = b.iat.min_or_zero() as f64;
    }

    /// Flag counts per direction, header bytes and per-direction packet
    /// rates.
    // The flag indices are the `bit::` constants, each below the flag
    // counters' length.
    #[allow(clippy::indexing_slicing)]
    #[inline]
    fn finalize_flags(&self, t: &Totals, row: &mut [f64; NUM_FEATURES]) {
        let [f, b] = &self.dirs;
        let Totals {
            dur,
            secs,
            n_f,
            n_b,
            ..
        } = *t;
        // CIC counts per-direction FIN and RST only in addPacket, so the
        // flow's first packet is not counted there (it is in the totals).
        let first_rst = u32::from((self.first_flags >> bit::RST) & 1);
        let (first_rst_f, first_rst_b) = if self.first_dir == 0 {
            (first_rst, 0)
        } else {
            (0, first_rst)
        };
        row[idx::FWD_PSH_FLAGS] = f64::from(f.flags[bit::PSH]);
        row[idx::BWD_PSH_FLAGS] = f64::from(b.flags[bit::PSH]);
        row[idx::FWD_URG_FLAGS] = f64::from(f.flags[bit::URG]);
        row[idx::BWD_URG_FLAGS] = f64::from(b.flags[bit::URG]);
        row[idx::FWD_RST_FLAGS] = f64::from(f.flags[bit::RST] - first_rst_f);
        row[idx::BWD_RST_FLAGS] = f64::from(b.flags[bit::RST] - first_rst_b);
        row[idx::FWD_HEADER_LENGTH] = f.header_bytes as f64;
        row[idx::BWD_HEADER_LENGTH] = b.header_bytes as f64;
        let (fwd_s, bwd_s) = if dur > 0 {
            (n_f as f64 / secs, n_b as f64 / secs)
        } else {
            (0.0, 0.0)
        };
        row[idx::FWD_PACKETS_S] = fwd_s;
        row[idx::BWD_PACKETS_S] = bwd_s;
    }

    /// Packet length statistics over both directions, flag totals, ratios,
    /// segment sizes, bulk and subflow averages.
    // As in `finalize_flags`.
    #[allow(clippy::indexing_slicing)]
    #[inline]
    fn finalize_sizes(&self, t: &Totals, row: &mut [f64; NUM_FEATURES]) {
        let [f, b] = &self.dirs;
        let Totals {
            n_f,
            n_b,
            n,
            bytes_f,
            bytes_b,
            ..
        } = *t;
        let all = &t.all;
        row[idx::PACKET_LENGTH_MIN] = all.min_or_zero() as f64;
        row[idx::PACKET_LENGTH_MAX] = all.max_or_zero() as f64;
        row[idx::PACKET_LENGTH_MEAN] = all.mean();
        row[idx::PACKET_LENGTH_VARIANCE] = all.variance();
        row[idx::PACKET_LENGTH_STD] = row[idx::PACKET_LENGTH_VARIANCE].sqrt();

        let flag = |bi: usize| f64::from(f.flags[bi] + b.flags[bi]);
        row[idx::FIN_FLAG_COUNT] = flag(bit::FIN);
        row[idx::SYN_FLAG_COUNT] = flag(bit::SYN);
        row[idx::RST_FLAG_COUNT] = flag(bit::RST);
        row[idx::PSH_FLAG_COUNT] = flag(bit::PSH);
        row[idx::ACK_FLAG_COUNT] = flag(bit::ACK);
        row[idx::URG_FLAG_COUNT] = flag(bit::URG);
        row[idx::CWR_FLAG_COUNT] = flag(bit::CWR);
        row[idx::ECE_FLAG_COUNT] = flag(bit::ECE);

        row[idx::DOWN_UP_RATIO] = if n_f > 0 {
            n_b as f64 / n_f as f64
        } else {
            0.0
        };
        row[idx::AVERAGE_PACKET_SIZE] = all.mean();
        row[idx::FWD_SEGMENT_SIZE_AVG] = f.len.mean();
        row[idx::BWD_SEGMENT_SIZE_AVG] = b.len.mean();

        let bulk = |k: &Bulk| -> [f64; 3] {
            let per_bulk = |x: u64| x.checked_div(k.bulks).map_or(0.0, |q| q as f64);
            [per_bulk(k.bytes), per_bulk(k.pkts), k.bulk_rate()]
        };
        let [fb, fp, fr] = bulk(&f.bulk);
        let [bb, bp, br] = bulk(&b.bulk);
        row[idx::FWD_BYTES_BULK_AVG] = fb;
        row[idx::FWD_PACKET_BULK_AVG] = fp;
        row[idx::FWD_BULK_RATE_AVG] = fr;
        row[idx::BWD_BYTES_BULK_AVG] = bb;
        row[idx::BWD_PACKET_BULK_AVG] = bp;
        row[idx::BWD_BULK_RATE_AVG] = br;

        // CIC e19a160 counts one "subflow" per packet (operator-precedence
        // bug), so these are per-packet averages, truncated.
        let per_pkt = |x: u64| x.checked_div(n).map_or(0.0, |q| q as f64);
        row[idx::SUBFLOW_FWD_PACKETS] = per_pkt(n_f);
        row[idx::SUBFLOW_FWD_BYTES] = per_pkt(bytes_f.unsigned_abs());
        row[idx::SUBFLOW_BWD_PACKETS] = per_pkt(n_b);
        row[idx::SUBFLOW_BWD_BYTES] = per_pkt(bytes_b.unsigned_abs());
    }

    /// Initial windows, data packets, active and idle periods, ICMP type
    /// and code, and the TCP connection's time.
    #[inline]
    fn finalize_rest(&self, meta: &FlowMeta, row: &mut [f64; NUM_FEATURES]) {
        let [f, b] = &self.dirs;
        row[idx::FWD_INIT_WIN_BYTES] = f64::from(f.init_win);
        row[idx::BWD_INIT_WIN_BYTES] = f64::from(b.init_win);
        row[idx::FWD_ACT_DATA_PKTS] = self.fwd_act_data as f64;
        row[idx::FWD_SEG_SIZE_MIN] = f64::from(self.fwd_min_seg);

        row[idx::ACTIVE_MEAN] = self.active.mean();
        row[idx::ACTIVE_STD] = self.active.std_dev();
        row[idx::ACTIVE_MAX] = self.active.max_or_zero() as f64;
        row[idx::ACTIVE_MIN] = self.active.min_or_zero() as f64;
        row[idx::IDLE_MEAN] = self.idle.mean();
        row[idx::IDLE_STD] = self.idle.std_dev();
        row[idx::IDLE_MAX] = self.idle.max_or_zero() as f64;
        row[idx::IDLE_MIN] = self.idle.min_or_zero() as f64;

        let icmp = meta.proto == proto::ICMP || meta.proto == proto::ICMPV6;
        let (code, typ) = if icmp {
            (f64::from(meta.icmp_code), f64::from(meta.icmp_type))
        } else {
            (-1.0, -1.0)
        };
        row[idx::ICMP_CODE] = code;
        row[idx::ICMP_TYPE] = typ;
        row[idx::TOTAL_TCP_FLOW_TIME] = if meta.proto == proto::TCP {
            self.last_ts.saturating_sub(self.conn_start_ts) as f64
        } else {
            0.0
        };
    }
}

impl Bulk {
    /// CIC `fAvgBulkRate`: bulk bytes per bulk second, truncated; 0 when the
    /// bulk duration is 0.
    fn bulk_rate(&self) -> f64 {
        if self.duration == 0 {
            0.0
        } else {
            (self.bytes as f64 / (self.duration as f64 / 1_000_000.0)).trunc()
        }
    }
}

/// Shared empty accumulator for slots the extractor never saw (cannot happen
/// when placements and ends come from one flow table, in order).
static EMPTY_ACCUMULATOR: FlowAccumulator = FlowAccumulator::EMPTY;

/// The CPU extractor of one shard: one [`FlowAccumulator`] per flow-table
/// slot.
#[derive(Clone, Debug)]
pub struct CpuExtractor {
    accs: SlotVec<FlowAccumulator>,
    activity_timeout_us: i64,
}

impl CpuExtractor {
    /// An extractor using CIC's active/idle threshold `activity_timeout_us`.
    pub fn new(activity_timeout_us: i64) -> Self {
        CpuExtractor {
            accs: SlotVec::new(),
            activity_timeout_us,
        }
    }

    /// Applies one placed packet to its slot's accumulator. Grows the
    /// storage when the flow table's slab grew (the only allocation).
    #[inline]
    pub fn on_packet(&mut self, rec: &PacketRecord, p: &Placement) {
        let i = p.slot as usize;
        if i >= self.accs.capacity() {
            self.accs.ensure(i, &FlowAccumulator::EMPTY);
        }
        let Some(acc) = self.accs.get_mut(i) else {
            return;
        };
        match p.kind {
            PlacementKind::New { continuation } => {
                let conn_start = continuation.map_or(rec.ts_us, |c| c.conn_start_us);
                acc.first_packet(rec, p.dir, conn_start);
            }
            PlacementKind::Existing => acc.update(rec, p.dir, self.activity_timeout_us),
        }
    }

    /// Writes the features of the flow that occupied `slot` (call when the
    /// flow table reports it ended, before the slot's next placement).
    pub fn finalize(&self, slot: u32, meta: &FlowMeta, row: &mut [f64; NUM_FEATURES]) {
        self.accs
            .get(slot as usize)
            .unwrap_or(&EMPTY_ACCUMULATOR)
            .finalize(meta, row);
    }

    /// The accumulator of `slot`, if the slot was ever used.
    pub fn accumulator(&self, slot: u32) -> Option<&FlowAccumulator> {
        self.accs.get(slot as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(xs: &[i64]) -> IntStats {
        let mut s = IntStats::EMPTY;
        for &x in xs {
            s.push(x);
        }
        s
    }

    #[test]
    fn accumulator_size_is_pinned() {
        // FEATURES.md and the CUDA twin's layout quote this size; change
        // them together.
        assert_eq!(std::mem::size_of::<FlowAccumulator>(), 656);
    }

    #[test]
    fn empty_and_single() {
        let e = IntStats::EMPTY;
        assert_eq!(
            (e.mean(), e.variance(), e.min_or_zero(), e.max_or_zero()),
            (0.0, 0.0, 0, 0)
        );
        let one = stats(&[-7]);
        assert_eq!(
            (
                one.mean(),
                one.std_dev(),
                one.min_or_zero(),
                one.max_or_zero()
            ),
            (-7.0, 0.0, -7, -7)
        );
    }

    #[test]
    fn variance_is_exact_where_f64_sums_are_not() {
        // x = 2^40 + {0, 1, 2}: mean 2^40 + 1, sample variance exactly 1.
        // Σx² ≈ 3·2^80 needs 82 bits; a naive f64 Σx² − (Σx)²/n loses it all.
        let base = 1i64 << 40;
        let s = stats(&[base, base + 1, base + 2]);
        assert_eq!(s.variance(), 1.0);
        assert_eq!(s.std_dev(), 1.0);
        let naive = {
            let (n, sum, sq) = (3.0, 3.0 * base as f64 + 3.0, 3.0 * (base as f64).powi(2));
            (sq - sum * sum / n) / (n - 1.0)
        };
        assert_ne!(naive, 1.0);
    }

    #[test]
    fn negative_values_and_merge() {
        let a = stats(&[-3, 5]);
        let b = stats(&[10]);
        let m = a.merged(&b);
        assert_eq!(m, stats(&[-3, 5, 10]));
        // Σ 12, Σx² 134: var = (3·134 − 144)/(3·2) = 43.
        assert_eq!(m.variance(), 43.0);
        assert_eq!((m.min_or_zero(), m.max_or_zero(), m.mean()), (-3, 10, 4.0));
    }

    #[test]
    fn overflowing_moments_fall_back_to_f64() {
        // |x| = 2^62: x² = 2^124; three of them overflow n·Σx² in u128.
        let big = 1i64 << 62;
        let s = stats(&[big, -big, big]);
        let v = s.variance();
        assert!(v.is_finite() && v > 0.0, "{v}");
    }

    #[test]
    fn bulk_needs_four_packets_without_the_other_direction() {
        let mut b = Bulk::EMPTY;
        for (i, t) in [0i64, 10, 20].iter().enumerate() {
            b.update(NO_BULK, *t, 100 + i as u32);
        }
        assert_eq!(b.bulks, 0);
        // The other direction sent payload after the candidate started.
        b.update(15, 30, 100);
        assert_eq!(b.bulks, 0, "candidate restarted");
        for t in [40, 50, 60] {
            b.update(15, t, 100);
        }
        assert_eq!((b.bulks, b.pkts, b.bytes, b.duration), (1, 4, 400, 30));
    }
}
