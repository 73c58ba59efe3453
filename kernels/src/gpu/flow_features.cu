// CUDA twin of kernels/src/cpu.rs: per-flow accumulators resident in device
// memory, updated from columnar packet records, finalized into the 84 CIC
// feature values. Every operation mirrors the CPU extractor: integer
// accumulators (128-bit sums of squares), saturating and wrapping arithmetic
// where the CPU has it, and floating point only at finalize, with the same
// correctly rounded conversions and no FMA contraction (compile with
// --fmad=false), so rows are bit-identical to the CPU's.
//
// The file is self-contained (no #include): NVRTC compiles it at start-up
// with no CUDA headers, and tests compile it as plain C++ with a small shim
// (kernels/tests/gpu_emulation.rs) to check the logic on machines with no GPU.

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

#ifndef TS_DEVICE
#define TS_DEVICE __device__ __forceinline__
#endif
#ifndef TS_KERNEL
#define TS_KERNEL extern "C" __global__
#endif

#define I64_MAX 0x7fffffffffffffffLL
#define I64_MIN (-I64_MAX - 1LL)
#define NO_BULK I64_MIN
#define BULK_GAP_US 1000000LL
#define BULK_MIN_PACKETS 4ULL

// Record kinds (low two bits of `kind`); bit 7 marks a backward packet.
// A FINALIZE record carries its row index in `payload`; a CONN record comes
// right before the FIRST record of a flow that continues a TCP connection
// and carries the connection's start time in `ts`.
#define KIND_UPDATE 0
#define KIND_FIRST 1
#define KIND_FINALIZE 2
#define KIND_CONN 3
#define KIND_MASK 3
#define DIR_BACKWARD 0x80

// TCP flag bit positions.
#define B_FIN 0
#define B_SYN 1
#define B_RST 2
#define B_PSH 3
#define B_ACK 4
#define B_URG 5
#define B_ECE 6
#define B_CWR 7

// Feature row indices: must equal kernels/src/schema.rs `idx` (a test checks).
#define NUM_FEATURES 84
#define IDX_SRC_PORT 0
#define IDX_DST_PORT 1
#define IDX_PROTOCOL 2
#define IDX_FLOW_DURATION 3
#define IDX_TOTAL_FWD_PACKET 4
#define IDX_TOTAL_BWD_PACKETS 5
#define IDX_TOTAL_LENGTH_OF_FWD_PACKET 6
#define IDX_TOTAL_LENGTH_OF_BWD_PACKET 7
#define IDX_FWD_PACKET_LENGTH_MAX 8
#define IDX_FWD_PACKET_LENGTH_MIN 9
#define IDX_FWD_PACKET_LENGTH_MEAN 10
#define IDX_FWD_PACKET_LENGTH_STD 11
#define IDX_BWD_PACKET_LENGTH_MAX 12
#define IDX_BWD_PACKET_LENGTH_MIN 13
#define IDX_BWD_PACKET_LENGTH_MEAN 14
#define IDX_BWD_PACKET_LENGTH_STD 15
#define IDX_FLOW_BYTES_S 16
#define IDX_FLOW_PACKETS_S 17
#define IDX_FLOW_IAT_MEAN 18
#define IDX_FLOW_IAT_STD 19
#define IDX_FLOW_IAT_MAX 20
#define IDX_FLOW_IAT_MIN 21
#define IDX_FWD_IAT_TOTAL 22
#define IDX_FWD_IAT_MEAN 23
#define IDX_FWD_IAT_STD 24
#define IDX_FWD_IAT_MAX 25
#define IDX_FWD_IAT_MIN 26
#define IDX_BWD_IAT_TOTAL 27
#define IDX_BWD_IAT_MEAN 28
#define IDX_BWD_IAT_STD 29
#define IDX_BWD_IAT_MAX 30
#define IDX_BWD_IAT_MIN 31
#define IDX_FWD_PSH_FLAGS 32
#define IDX_BWD_PSH_FLAGS 33
#define IDX_FWD_URG_FLAGS 34
#define IDX_BWD_URG_FLAGS 35
#define IDX_FWD_RST_FLAGS 36
#define IDX_BWD_RST_FLAGS 37
#define IDX_FWD_HEADER_LENGTH 38
#define IDX_BWD_HEADER_LENGTH 39
#define IDX_FWD_PACKETS_S 40
#define IDX_BWD_PACKETS_S 41
#define IDX_PACKET_LENGTH_MIN 42
#define IDX_PACKET_LENGTH_MAX 43
#define IDX_PACKET_LENGTH_MEAN 44
#define IDX_PACKET_LENGTH_STD 45
#define IDX_PACKET_LENGTH_VARIANCE 46
#define IDX_FIN_FLAG_COUNT 47
#define IDX_SYN_FLAG_COUNT 48
#define IDX_RST_FLAG_COUNT 49
#define IDX_PSH_FLAG_COUNT 50
#define IDX_ACK_FLAG_COUNT 51
#define IDX_URG_FLAG_COUNT 52
#define IDX_CWR_FLAG_COUNT 53
#define IDX_ECE_FLAG_COUNT 54
#define IDX_DOWN_UP_RATIO 55
#define IDX_AVERAGE_PACKET_SIZE 56
#define IDX_FWD_SEGMENT_SIZE_AVG 57
#define IDX_BWD_SEGMENT_SIZE_AVG 58
#define IDX_FWD_BYTES_BULK_AVG 59
#define IDX_FWD_PACKET_BULK_AVG 60
#define IDX_FWD_BULK_RATE_AVG 61
#define IDX_BWD_BYTES_BULK_AVG 62
#define IDX_BWD_PACKET_BULK_AVG 63
#define IDX_BWD_BULK_RATE_AVG 64
#define IDX_SUBFLOW_FWD_PACKETS 65
#define IDX_SUBFLOW_FWD_BYTES 66
#define IDX_SUBFLOW_BWD_PACKETS 67
#define IDX_SUBFLOW_BWD_BYTES 68
#define IDX_FWD_INIT_WIN_BYTES 69
#define IDX_BWD_INIT_WIN_BYTES 70
#define IDX_FWD_ACT_DATA_PKTS 71
#define IDX_FWD_SEG_SIZE_MIN 72
#define IDX_ACTIVE_MEAN 73
#define IDX_ACTIVE_STD 74
#define IDX_ACTIVE_MAX 75
#define IDX_ACTIVE_MIN 76
#define IDX_IDLE_MEAN 77
#define IDX_IDLE_STD 78
#define IDX_IDLE_MAX 79
#define IDX_IDLE_MIN 80
#define IDX_ICMP_CODE 81
#define IDX_ICMP_TYPE 82
#define IDX_TOTAL_TCP_FLOW_TIME 83

// Bytes per slot in the accumulator array (kernels/src/gpu/records.rs ACC_STRIDE).
#define ACC_STRIDE 768

#define PROTO_ICMP 1
#define PROTO_TCP 6
#define PROTO_ICMPV6 58

// ---------------------------------------------------------------- integers

// Rust's i64::saturating_sub.
TS_DEVICE i64 sat_sub(i64 a, i64 b) {
    i64 r = (i64)((u64)a - (u64)b);
    if (((a ^ b) & (a ^ r)) < 0) {
        return a < 0 ? I64_MIN : I64_MAX;
    }
    return r;
}

// Rust's i64::saturating_add.
TS_DEVICE i64 sat_add(i64 a, i64 b) {
    i64 r = (i64)((u64)a + (u64)b);
    if (((a ^ r) & (b ^ r)) < 0) {
        return a < 0 ? I64_MIN : I64_MAX;
    }
    return r;
}

TS_DEVICE i64 min_i64(i64 a, i64 b) { return a < b ? a : b; }
TS_DEVICE i64 max_i64(i64 a, i64 b) { return a > b ? a : b; }
TS_DEVICE u64 unsigned_abs(i64 x) { return x < 0 ? 0ULL - (u64)x : (u64)x; }

// Leading zero bits of a non-zero 64-bit value.
TS_DEVICE int clz64(u64 x) {
#ifdef __CUDA_ARCH__
    return __clzll((long long)x);
#else
    return __builtin_clzll(x);
#endif
}

// High 64 bits of a 64x64 product.
TS_DEVICE u64 mul_hi(u64 a, u64 b) {
#ifdef __CUDA_ARCH__
    return __umul64hi(a, b);
#else
    return (u64)(((unsigned __int128)a * b) >> 64);
#endif
}

struct U128 {
    u64 lo;
    u64 hi;
};

TS_DEVICE U128 u128_mul64(u64 a, u64 b) {
    U128 r;
    r.lo = a * b;
    r.hi = mul_hi(a, b);
    return r;
}

TS_DEVICE bool u128_is_max(U128 a) { return a.lo == ~0ULL && a.hi == ~0ULL; }

TS_DEVICE U128 u128_sat_add(U128 a, U128 b) {
    U128 r;
    r.lo = a.lo + b.lo;
    u64 carry = r.lo < a.lo ? 1ULL : 0ULL;
    u64 hi = a.hi + b.hi;
    bool overflow = hi < a.hi;
    r.hi = hi + carry;
    overflow = overflow || r.hi < hi;
    if (overflow) {
        r.lo = ~0ULL;
        r.hi = ~0ULL;
    }
    return r;
}

TS_DEVICE U128 u128_sat_sub(U128 a, U128 b) {
    if (a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo)) {
        U128 z = {0, 0};
        return z;
    }
    U128 r;
    r.lo = a.lo - b.lo;
    r.hi = a.hi - b.hi - (a.lo < b.lo ? 1ULL : 0ULL);
    return r;
}

// a * b for a u128 and a u64; false when the product needs more than 128 bits.
TS_DEVICE bool u128_checked_mul64(U128 a, u64 b, U128* out) {
    U128 lo = u128_mul64(a.lo, b);
    U128 hi = u128_mul64(a.hi, b);
    if (hi.hi != 0) return false;
    u64 h = lo.hi + hi.lo;
    if (h < lo.hi) return false;
    out->lo = lo.lo;
    out->hi = h;
    return true;
}

// Round-to-nearest-even conversion of a u128 to double (Rust's `as f64`).
TS_DEVICE double u128_to_f64(U128 a) {
    if (a.hi == 0) return (double)a.lo;  // cvt.rn.f64.u64: correctly rounded
    int lz = clz64(a.hi);
    int top = 127 - lz;  // index of the highest set bit, >= 64
    int shift = top - 52;  // bits below the 53-bit mantissa, >= 12
    // mantissa = a >> shift (53 bits); remainder = a mod 2^shift.
    u64 m;
    u64 rem_hi, rem_lo;  // the remainder, as a 128-bit number
    if (shift >= 64) {
        m = a.hi >> (shift - 64);
        rem_hi = shift - 64 == 0 ? 0 : (a.hi & ((1ULL << (shift - 64)) - 1));
        rem_lo = a.lo;
    } else {
        m = (a.hi << (64 - shift)) | (a.lo >> shift);
        rem_hi = 0;
        rem_lo = a.lo & ((1ULL << shift) - 1);
    }
    // half = 2^(shift-1)
    u64 half_hi = shift - 1 >= 64 ? (1ULL << (shift - 1 - 64)) : 0;
    u64 half_lo = shift - 1 >= 64 ? 0 : (1ULL << (shift - 1));
    bool above = rem_hi > half_hi || (rem_hi == half_hi && rem_lo > half_lo);
    bool equal = rem_hi == half_hi && rem_lo == half_lo;
    if (above || (equal && (m & 1ULL))) {
        m += 1;  // may carry to 2^53: still exact in a double
    }
    // m * 2^shift, exact: m has at most 54 bits and the scale is a power of two.
    double d = (double)m;
    double scale = 1.0;
    for (int i = 0; i < shift; ++i) scale *= 2.0;
    return d * scale;
}

TS_DEVICE double i64_to_f64(i64 x) { return (double)x; }
TS_DEVICE double u64_to_f64(u64 x) { return (double)x; }

// ------------------------------------------------------------------ stats

struct IntStats {
    U128 sumsq;
    i64 sum;
    u64 n;
    i64 min;
    i64 max;
};

TS_DEVICE void stats_empty(IntStats* s) {
    s->sumsq.lo = 0;
    s->sumsq.hi = 0;
    s->sum = 0;
    s->n = 0;
    s->min = I64_MAX;
    s->max = I64_MIN;
}

TS_DEVICE void stats_push(IntStats* s, i64 x) {
    u64 a = unsigned_abs(x);
    s->sumsq = u128_sat_add(s->sumsq, u128_mul64(a, a));
    s->sum = (i64)((u64)s->sum + (u64)x);
    s->n += 1;
    s->min = min_i64(s->min, x);
    s->max = max_i64(s->max, x);
}

TS_DEVICE IntStats stats_merged(const IntStats* a, const IntStats* b) {
    IntStats r;
    r.sumsq = u128_sat_add(a->sumsq, b->sumsq);
    r.sum = (i64)((u64)a->sum + (u64)b->sum);
    r.n = a->n + b->n;
    r.min = min_i64(a->min, b->min);
    r.max = max_i64(a->max, b->max);
    return r;
}

TS_DEVICE double stats_min(const IntStats* s) { return s->n == 0 ? 0.0 : i64_to_f64(s->min); }
TS_DEVICE double stats_max(const IntStats* s) { return s->n == 0 ? 0.0 : i64_to_f64(s->max); }

TS_DEVICE double stats_mean(const IntStats* s) {
    if (s->n == 0) return 0.0;
    return i64_to_f64(s->sum) / u64_to_f64(s->n);
}

TS_DEVICE double stats_variance(const IntStats* s) {
    if (s->n < 2) return 0.0;
    u64 sabs = unsigned_abs(s->sum);
    U128 a;
    bool exact = !u128_is_max(s->sumsq) && u128_checked_mul64(s->sumsq, s->n, &a);
    if (exact) {
        U128 b = u128_mul64(sabs, sabs);
        U128 num = u128_sat_sub(a, b);
        U128 den = u128_mul64(s->n, s->n - 1);
        return u128_to_f64(num) / u128_to_f64(den);
    }
    double nf = u64_to_f64(s->n);
    double sf = i64_to_f64(s->sum);
    double v = (u128_to_f64(s->sumsq) - sf * sf / nf) / (nf - 1.0);
    return v > 0.0 ? v : (v != v ? 0.0 : (v < 0.0 ? 0.0 : v));
}

TS_DEVICE double stats_std(const IntStats* s) { return sqrt(stats_variance(s)); }

// ------------------------------------------------------------------- bulk

struct Bulk {
    i64 start;
    i64 last;
    // The other direction's `last` (its last payload packet's time), kept
    // here too so a direction's bulk state never reads the other's.
    i64 other_last;
    u64 cand_pkts;
    u64 cand_bytes;
    u64 bulks;
    u64 pkts;
    u64 bytes;
    i64 duration;
};

TS_DEVICE void bulk_empty(Bulk* b) {
    b->start = NO_BULK;
    b->last = NO_BULK;
    b->other_last = NO_BULK;
    b->cand_pkts = 0;
    b->cand_bytes = 0;
    b->bulks = 0;
    b->pkts = 0;
    b->bytes = 0;
    b->duration = 0;
}

TS_DEVICE void bulk_update(Bulk* b, i64 other_last, i64 ts, u32 size32) {
    if (other_last > b->start) b->start = NO_BULK;
    if (size32 == 0) return;
    u64 size = size32;
    if (b->start == NO_BULK || sat_sub(ts, b->last) > BULK_GAP_US) {
        b->start = ts;
        b->last = ts;
        b->cand_pkts = 1;
        b->cand_bytes = size;
        return;
    }
    b->cand_pkts += 1;
    b->cand_bytes += size;
    if (b->cand_pkts == BULK_MIN_PACKETS) {
        b->bulks += 1;
        b->pkts += b->cand_pkts;
        b->bytes += b->cand_bytes;
        b->duration = sat_add(b->duration, sat_sub(ts, b->start));
    } else if (b->cand_pkts > BULK_MIN_PACKETS) {
        b->pkts += 1;
        b->bytes += size;
        b->duration = sat_add(b->duration, sat_sub(ts, b->last));
    }
    b->last = ts;
}

TS_DEVICE double bulk_per(u64 x, u64 bulks) { return bulks == 0 ? 0.0 : u64_to_f64(x / bulks); }

TS_DEVICE double bulk_rate(const Bulk* b) {
    if (b->duration == 0) return 0.0;
    return trunc(u64_to_f64(b->bytes) / (i64_to_f64(b->duration) / 1000000.0));
}

// ------------------------------------------------------------ accumulator

struct DirStats {
    IntStats len;
    IntStats iat;
    u64 header_bytes;
    i64 last_ts;
    u32 flags[8];
    Bulk bulk;
    u16 init_win;
    u8 seen;  // the direction has packets (len.n > 0), kept apart for the IAT lane
};

struct FlowAcc {
    DirStats dirs[2];
    IntStats flow_iat;
    IntStats active;
    IntStats idle;
    i64 start_ts;
    i64 last_ts;
    i64 conn_start_ts;
    i64 start_active;
    i64 end_active;
    u64 fwd_act_data;
    u16 fwd_min_seg;
    u8 first_flags;
    u8 first_dir;
};

TS_DEVICE void dir_empty(DirStats* d) {
    stats_empty(&d->len);
    stats_empty(&d->iat);
    d->header_bytes = 0;
    d->last_ts = 0;
    for (int i = 0; i < 8; ++i) d->flags[i] = 0;
    bulk_empty(&d->bulk);
    d->init_win = 0;
    d->seen = 0;
}

TS_DEVICE void count_flags(DirStats* d, u8 flags) {
    for (int b = 0; b < 8; ++b) d->flags[b] += (flags >> b) & 1u;
}

TS_DEVICE void acc_first(FlowAcc* a, i64 ts, int dir, u32 payload, u16 header, u16 window,
                         u8 flags, i64 conn_start) {
    dir_empty(&a->dirs[0]);
    dir_empty(&a->dirs[1]);
    stats_empty(&a->flow_iat);
    stats_empty(&a->active);
    stats_empty(&a->idle);
    a->start_ts = ts;
    a->last_ts = ts;
    a->conn_start_ts = conn_start;
    a->start_active = ts;
    a->end_active = ts;
    a->fwd_act_data = 0;
    a->first_flags = flags;
    a->first_dir = (u8)dir;
    DirStats* ds = &a->dirs[dir];
    bulk_update(&ds->bulk, NO_BULK, ts, payload);
    if (payload > 0) a->dirs[dir ^ 1].bulk.other_last = ts;
    stats_push(&ds->len, (i64)payload);
    ds->header_bytes = header;
    ds->last_ts = ts;
    ds->seen = 1;
    count_flags(ds, flags);
    ds->init_win = window;
    a->fwd_min_seg = dir == 0 ? header : 0;
}

TS_DEVICE void acc_update(FlowAcc* a, i64 ts, int dir, u32 payload, u16 header, u16 window,
                          u8 flags, i64 activity_timeout) {
    i64 gap = sat_sub(ts, a->end_active);
    if (gap > activity_timeout) {
        i64 active = sat_sub(a->end_active, a->start_active);
        if (active > 0) stats_push(&a->active, active);
        stats_push(&a->idle, gap);
        a->start_active = ts;
    }
    a->end_active = ts;

    stats_push(&a->flow_iat, sat_sub(ts, a->last_ts));
    a->last_ts = ts;

    // dirs[dir].bulk.other_last is dirs[dir ^ 1].bulk.last (CPU: other_last).
    DirStats* ds = &a->dirs[dir];
    bulk_update(&ds->bulk, ds->bulk.other_last, ts, payload);
    if (payload > 0) a->dirs[dir ^ 1].bulk.other_last = ts;
    if (ds->seen) stats_push(&ds->iat, sat_sub(ts, ds->last_ts));
    ds->last_ts = ts;
    ds->seen = 1;
    stats_push(&ds->len, (i64)payload);
    ds->header_bytes += header;
    count_flags(ds, flags);
    if (dir == 0) {
        a->fwd_act_data += payload > 0 ? 1 : 0;
        a->fwd_min_seg = header < a->fwd_min_seg ? header : a->fwd_min_seg;
    } else {
        ds->init_win = window;
    }
}

static_assert(sizeof(FlowAcc) <= ACC_STRIDE, "FlowAcc outgrew its slot stride");

// What several groups of a flow's features share, computed once.
struct FinTotals {
    i64 dur;
    double secs;
    u64 n_f, n_b, n;
    IntStats all;
    i64 bytes_f, bytes_b;
};

TS_DEVICE FinTotals fin_totals(const FlowAcc* a) {
    FinTotals t;
    t.dur = sat_sub(a->last_ts, a->start_ts);
    t.secs = i64_to_f64(t.dur) / 1000000.0;
    t.n_f = a->dirs[0].len.n;
    t.n_b = a->dirs[1].len.n;
    t.n = t.n_f + t.n_b;
    t.all = stats_merged(&a->dirs[0].len, &a->dirs[1].len);
    t.bytes_f = a->dirs[0].len.sum;
    t.bytes_b = a->dirs[1].len.sum;
    return t;
}

// Ports, protocol, duration, packet and byte counts, lengths per direction,
// and the flow's byte and packet rates (cpu.rs `finalize_volumes`).
TS_DEVICE void finalize_volumes(const FlowAcc* a, const FinTotals* t, u64 meta, double* row) {
    const DirStats* f = &a->dirs[0];
    const DirStats* b = &a->dirs[1];
    row[IDX_SRC_PORT] = (double)(u32)(meta & 0xffff);
    row[IDX_DST_PORT] = (double)(u32)((meta >> 16) & 0xffff);
    row[IDX_PROTOCOL] = (double)(u32)((meta >> 32) & 0xff);
    row[IDX_FLOW_DURATION] = i64_to_f64(t->dur);
    row[IDX_TOTAL_FWD_PACKET] = u64_to_f64(t->n_f);
    row[IDX_TOTAL_BWD_PACKETS] = u64_to_f64(t->n_b);
    row[IDX_TOTAL_LENGTH_OF_FWD_PACKET] = i64_to_f64(t->bytes_f);
    row[IDX_TOTAL_LENGTH_OF_BWD_PACKET] = i64_to_f64(t->bytes_b);

    row[IDX_FWD_PACKET_LENGTH_MAX] = stats_max(&f->len);
    row[IDX_FWD_PACKET_LENGTH_MIN] = stats_min(&f->len);
    row[IDX_FWD_PACKET_LENGTH_MEAN] = stats_mean(&f->len);
    row[IDX_FWD_PACKET_LENGTH_STD] = stats_std(&f->len);
    row[IDX_BWD_PACKET_LENGTH_MAX] = stats_max(&b->len);
    row[IDX_BWD_PACKET_LENGTH_MIN] = stats_min(&b->len);
    row[IDX_BWD_PACKET_LENGTH_MEAN] = stats_mean(&b->len);
    row[IDX_BWD_PACKET_LENGTH_STD] = stats_std(&b->len);

    if (t->dur == 0) {
        row[IDX_FLOW_BYTES_S] = -1.0;
        row[IDX_FLOW_PACKETS_S] = -1.0;
    } else {
        row[IDX_FLOW_BYTES_S] = i64_to_f64(t->all.sum) / t->secs;
        row[IDX_FLOW_PACKETS_S] = u64_to_f64(t->n) / t->secs;
    }
}

// Inter-arrival times of the flow and of each direction (`finalize_iat`).
TS_DEVICE void finalize_iat(const FlowAcc* a, double* row) {
    const DirStats* f = &a->dirs[0];
    const DirStats* b = &a->dirs[1];
    row[IDX_FLOW_IAT_MEAN] = stats_mean(&a->flow_iat);
    row[IDX_FLOW_IAT_STD] = stats_std(&a->flow_iat);
    row[IDX_FLOW_IAT_MAX] = stats_max(&a->flow_iat);
    row[IDX_FLOW_IAT_MIN] = stats_min(&a->flow_iat);
    row[IDX_FWD_IAT_TOTAL] = i64_to_f64(f->iat.sum);
    row[IDX_FWD_IAT_MEAN] = stats_mean(&f->iat);
    row[IDX_FWD_IAT_STD] = stats_std(&f->iat);
    row[IDX_FWD_IAT_MAX] = stats_max(&f->iat);
    row[IDX_FWD_IAT_MIN] = stats_min(&f->iat);
    row[IDX_BWD_IAT_TOTAL] = i64_to_f64(b->iat.sum);
    row[IDX_BWD_IAT_MEAN] = stats_mean(&b->iat);
    row[IDX_BWD_IAT_STD] = stats_std(&b->iat);
    row[IDX_BWD_IAT_MAX] = stats_max(&b->iat);
    row[IDX_BWD_IAT_MIN] = stats_min(&b->iat);
}

// Per-direction flag counts, header bytes and packet rates
// (`finalize_flags`).
TS_DEVICE void finalize_flags(const FlowAcc* a, const FinTotals* t, double* row) {
    const DirStats* f = &a->dirs[0];
    const DirStats* b = &a->dirs[1];
    u32 first_rst = (a->first_flags >> B_RST) & 1u;
    u32 first_rst_f = a->first_dir == 0 ? first_rst : 0;
    u32 first_rst_b = a->first_dir == 0 ? 0 : first_rst;
    row[IDX_FWD_PSH_FLAGS] = (double)f->flags[B_PSH];
    row[IDX_BWD_PSH_FLAGS] = (double)b->flags[B_PSH];
    row[IDX_FWD_URG_FLAGS] = (double)f->flags[B_URG];
    row[IDX_BWD_URG_FLAGS] = (double)b->flags[B_URG];
    row[IDX_FWD_RST_FLAGS] = (double)(f->flags[B_RST] - first_rst_f);
    row[IDX_BWD_RST_FLAGS] = (double)(b->flags[B_RST] - first_rst_b);
    row[IDX_FWD_HEADER_LENGTH] = u64_to_f64(f->header_bytes);
    row[IDX_BWD_HEADER_LENGTH] = u64_to_f64(b->header_bytes);
    if (t->dur > 0) {
        row[IDX_FWD_PACKETS_S] = u64_to_f64(t->n_f) / t->secs;
        row[IDX_BWD_PACKETS_S] = u64_to_f64(t->n_b) / t->secs;
    } else {
        row[IDX_FWD_PACKETS_S] = 0.0;
        row[IDX_BWD_PACKETS_S] = 0.0;
    }
}

// Packet sizes over both directions, flag totals, bulks and subflows
// (`finalize_sizes`).
TS_DEVICE void finalize_sizes(const FlowAcc* a, const FinTotals* t, double* row) {
    const DirStats* f = &a->dirs[0];
    const DirStats* b = &a->dirs[1];
    const IntStats* all = &t->all;
    u64 n = t->n;
    row[IDX_PACKET_LENGTH_MIN] = stats_min(all);
    row[IDX_PACKET_LENGTH_MAX] = stats_max(all);
    row[IDX_PACKET_LENGTH_MEAN] = stats_mean(all);
    row[IDX_PACKET_LENGTH_VARIANCE] = stats_variance(all);
    row[IDX_PACKET_LENGTH_STD] = sqrt(row[IDX_PACKET_LENGTH_VARIANCE]);

    row[IDX_FIN_FLAG_COUNT] = (double)(f->flags[B_FIN] + b->flags[B_FIN]);
    row[IDX_SYN_FLAG_COUNT] = (double)(f->flags[B_SYN] + b->flags[B_SYN]);
    row[IDX_RST_FLAG_COUNT] = (double)(f->flags[B_RST] + b->flags[B_RST]);
    row[IDX_PSH_FLAG_COUNT] = (double)(f->flags[B_PSH] + b->flags[B_PSH]);
    row[IDX_ACK_FLAG_COUNT] = (double)(f->flags[B_ACK] + b->flags[B_ACK]);
    row[IDX_URG_FLAG_COUNT] = (double)(f->flags[B_URG] + b->flags[B_URG]);
    row[IDX_CWR_FLAG_COUNT] = (double)(f->flags[B_CWR] + b->flags[B_CWR]);
    row[IDX_ECE_FLAG_COUNT] = (double)(f->flags[B_ECE] + b->flags[B_ECE]);

    row[IDX_DOWN_UP_RATIO] = t->n_f > 0 ? u64_to_f64(t->n_b) / u64_to_f64(t->n_f) : 0.0;
    row[IDX_AVERAGE_PACKET_SIZE] = stats_mean(all);
    row[IDX_FWD_SEGMENT_SIZE_AVG] = stats_mean(&f->len);
    row[IDX_BWD_SEGMENT_SIZE_AVG] = stats_mean(&b->len);

    row[IDX_FWD_BYTES_BULK_AVG] = bulk_per(f->bulk.bytes, f->bulk.bulks);
    row[IDX_FWD_PACKET_BULK_AVG] = bulk_per(f->bulk.pkts, f->bulk.bulks);
    row[IDX_FWD_BULK_RATE_AVG] = bulk_rate(&f->bulk);
    row[IDX_BWD_BYTES_BULK_AVG] = bulk_per(b->bulk.bytes, b->bulk.bulks);
    row[IDX_BWD_PACKET_BULK_AVG] = bulk_per(b->bulk.pkts, b->bulk.bulks);
    row[IDX_BWD_BULK_RATE_AVG] = bulk_rate(&b->bulk);

    row[IDX_SUBFLOW_FWD_PACKETS] = n == 0 ? 0.0 : u64_to_f64(t->n_f / n);
    row[IDX_SUBFLOW_FWD_BYTES] = n == 0 ? 0.0 : u64_to_f64(unsigned_abs(t->bytes_f) / n);
    row[IDX_SUBFLOW_BWD_PACKETS] = n == 0 ? 0.0 : u64_to_f64(t->n_b / n);
    row[IDX_SUBFLOW_BWD_BYTES] = n == 0 ? 0.0 : u64_to_f64(unsigned_abs(t->bytes_b) / n);
}

// Windows, active and idle times, ICMP type and code, TCP flow time
// (`finalize_rest`).
TS_DEVICE void finalize_rest(const FlowAcc* a, u64 meta, double* row) {
    u32 proto = (u32)((meta >> 32) & 0xff);
    u32 icmp_type = (u32)((meta >> 40) & 0xff);
    u32 icmp_code = (u32)((meta >> 48) & 0xff);
    row[IDX_FWD_INIT_WIN_BYTES] = (double)a->dirs[0].init_win;
    row[IDX_BWD_INIT_WIN_BYTES] = (double)a->dirs[1].init_win;
    row[IDX_FWD_ACT_DATA_PKTS] = u64_to_f64(a->fwd_act_data);
    row[IDX_FWD_SEG_SIZE_MIN] = (double)a->fwd_min_seg;

    row[IDX_ACTIVE_MEAN] = stats_mean(&a->active);
    row[IDX_ACTIVE_STD] = stats_std(&a->active);
    row[IDX_ACTIVE_MAX] = stats_max(&a->active);
    row[IDX_ACTIVE_MIN] = stats_min(&a->active);
    row[IDX_IDLE_MEAN] = stats_mean(&a->idle);
    row[IDX_IDLE_STD] = stats_std(&a->idle);
    row[IDX_IDLE_MAX] = stats_max(&a->idle);
    row[IDX_IDLE_MIN] = stats_min(&a->idle);

    bool icmp = proto == PROTO_ICMP || proto == PROTO_ICMPV6;
    row[IDX_ICMP_CODE] = icmp ? (double)icmp_code : -1.0;
    row[IDX_ICMP_TYPE] = icmp ? (double)icmp_type : -1.0;
    row[IDX_TOTAL_TCP_FLOW_TIME] =
        proto == PROTO_TCP ? i64_to_f64(sat_sub(a->last_ts, a->conn_start_ts)) : 0.0;
}

// The 84 feature values of one flow, in schema order, as cpu.rs `finalize`
// writes them. `meta` is the flow identity, packed by the host:
// sport | dport << 16 | proto << 32 | icmp_type << 40 | icmp_code << 48.
TS_DEVICE void acc_finalize(const FlowAcc* a, u64 meta, double* row) {
    FinTotals t = fin_totals(a);
    finalize_volumes(a, &t, meta, row);
    finalize_iat(a, row);
    finalize_flags(a, &t, row);
    finalize_sizes(a, &t, row);
    finalize_rest(a, meta, row);
}

// ---------------------------------------------------------------- kernels

// Scatters record indices into per-segment order: the host numbered each
// record's segment (one per flow touched in the batch) and its rank within
// the segment (arrival order), and computed each segment's start.
TS_KERNEL void build_perm(const u32* seg, const u32* rank, const u32* seg_start, u32* perm,
                          u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        perm[seg_start[seg[i]] + rank[i]] = i;
    }
}

// Copies the records into segment order (coalesced writes), so the thread
// of each segment then reads consecutive memory.
TS_KERNEL void gather(const u32* perm, u32 n, const i64* ts, const u32* payload,
                      const u16* header, const u16* window, const u8* flags, const u8* kind,
                      i64* s_ts, u32* s_payload, u16* s_header, u16* s_window, u8* s_flags,
                      u8* s_kind) {
    u32 j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j < n) {
        u32 i = perm[j];
        s_ts[j] = ts[i];
        s_payload[j] = payload[i];
        s_header[j] = header[i];
        s_window[j] = window[i];
        s_flags[j] = flags[i];
        s_kind[j] = kind[i];
    }
}

// One thread per short segment, i.e. per flow touched in the batch (the host
// gives every flow its own accumulator slot and never reuses a slot within a
// batch): applies the flow's records in arrival order to a private copy of
// its accumulator (first packet, updates, finalize into a row), so
// sequential state (inter-arrival times, active/idle, bulk) is exact, and
// stores the accumulator back if the flow is still open.
TS_DEVICE void process_short(char* accs, const u32* seg_start, const u32* seg_slot, u32 s,
                             const i64* ts, const u32* payload, const u16* header,
                             const u16* window, const u8* flags, const u8* kind,
                             const u64* fin_meta, i64 activity_timeout, double* rows) {
    FlowAcc* g = (FlowAcc*)(accs + (u64)seg_slot[s] * ACC_STRIDE);
    FlowAcc a;
    bool loaded = false;
    bool dirty = false;
    i64 conn = NO_BULK;  // no CONN record seen
    u32 end = seg_start[s + 1];
    for (u32 j = seg_start[s]; j < end; ++j) {
        u8 k = kind[j];
        int dir = (k & DIR_BACKWARD) ? 1 : 0;
        switch (k & KIND_MASK) {
            case KIND_CONN:
                conn = ts[j];
                break;
            case KIND_FIRST:
                acc_first(&a, ts[j], dir, payload[j], header[j], window[j], flags[j],
                          conn == NO_BULK ? ts[j] : conn);
                loaded = true;
                dirty = true;
                break;
            case KIND_UPDATE:
                if (!loaded) {
                    a = *g;
                    loaded = true;
                }
                acc_update(&a, ts[j], dir, payload[j], header[j], window[j], flags[j],
                           activity_timeout);
                dirty = true;
                break;
            default: {  // KIND_FINALIZE
                if (!loaded) {
                    a = *g;
                    loaded = true;
                }
                u64 r = payload[j];
                acc_finalize(&a, fin_meta[r], rows + r * NUM_FEATURES);
                dirty = false;
                break;
            }
        }
    }
    if (dirty) *g = a;
}

// ------------------------------------------------------------ long flows
//
// A flow with many records in one batch would leave one thread walking them
// while the rest of the GPU idles. Its accumulator splits into seven parts
// that never read each other's fields, each handled by its own warp:
//   role 0: flow timing (start/last, flow IAT, active/idle, first flags),
//   role 1, 4: one direction's lengths, header bytes, flags, window (and
//              for the forward direction, data packets and minimum header),
//   role 2, 5: one direction's inter-arrival times,
//   role 3, 6: one direction's bulk state (it holds the other direction's
//              last payload time itself, `other_last`).
// A warp takes the flow's records 32 at a time, one per lane. What the
// sequential update needs from earlier records is found with warp votes
// and shuffles instead of a walk: the previous packet, the previous packet
// of a direction, the last break in activity, the last payload packet of
// each direction. Each lane then pushes its own record's values into
// private statistics, and the lanes' statistics are merged at the end.
// That is exact: every statistic is a sum (wrapping), a saturating sum of
// non-negative terms, a count, a minimum or a maximum, none of which
// depends on the order of its terms. The bulk state machine's only state
// that depends on history is where the current bulk candidate started; a
// short warp-uniform loop finds the candidate starts of each tile, one vote
// per start, and the lanes then add their own contributions. Bulk durations
// are saturating sums of signed terms, which do depend on order when they
// saturate, so a warp that sees a term or a total large enough to come near
// saturation (never with real timestamps) walks that role again, one record
// at a time, exactly as acc_update does (`run_role_seq`); so does a warp
// that finds a record the fast path does not expect.
// Each role mirrors the corresponding lines of acc_first/acc_update. A
// second kernel finalizes the long flows that ended.

// Lanes in a warp (the emulator in kernels/tests/gpu_emu runs 32 too).
#define TS_WARP 32

#ifdef __CUDA_ARCH__
template <typename T>
TS_DEVICE T warp_shfl(T v, u32 src) {
    return __shfl_sync(0xffffffffu, v, (int)src);
}
template <typename T>
TS_DEVICE T warp_shfl_xor(T v, u32 mask) {
    return __shfl_xor_sync(0xffffffffu, v, (int)mask);
}
TS_DEVICE u32 warp_ballot(bool p) { return __ballot_sync(0xffffffffu, p ? 1 : 0); }
TS_DEVICE u32 hi_bit(u32 x) { return 31u - (u32)__clz(x); }
TS_DEVICE u32 lo_bit(u32 x) { return (u32)__ffs(x) - 1u; }
TS_DEVICE u32 popc(u32 x) { return (u32)__popc(x); }
#else
// The emulator provides the exchange between its lanes: op 0 reads lane
// `arg`'s value, op 1 lane (self ^ arg)'s, op 2 is a vote.
u64 ts_emu_exchange(u64 bits, u32 arg, int op);
template <typename T>
TS_DEVICE T warp_shfl(T v, u32 src) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    u64 bits = 0;
    memcpy(&bits, &v, sizeof(T));
    bits = ts_emu_exchange(bits, src, 0);
    T r;
    memcpy(&r, &bits, sizeof(T));
    return r;
}
template <typename T>
TS_DEVICE T warp_shfl_xor(T v, u32 mask) {
    u64 bits = 0;
    memcpy(&bits, &v, sizeof(T));
    bits = ts_emu_exchange(bits, mask, 1);
    T r;
    memcpy(&r, &bits, sizeof(T));
    return r;
}
TS_DEVICE u32 warp_ballot(bool p) { return (u32)ts_emu_exchange(p ? 1 : 0, 0, 2); }
TS_DEVICE u32 hi_bit(u32 x) { return 31u - (u32)__builtin_clz(x); }
TS_DEVICE u32 lo_bit(u32 x) { return (u32)__builtin_ctz(x); }
TS_DEVICE u32 popc(u32 x) { return (u32)__builtin_popcount(x); }
#endif

// Lanes below `lane`.
TS_DEVICE u32 lanes_below(u32 lane) { return lane == 0 ? 0u : (0xffffffffu >> (32u - lane)); }
// Lanes at or above `pos` (none when pos >= 32).
TS_DEVICE u32 lanes_from(u32 pos) { return pos >= 32 ? 0u : (0xffffffffu << pos); }

// Every lane's statistics merged; every lane gets the total.
TS_DEVICE IntStats warp_stats(IntStats s) {
    for (u32 m = 16; m >= 1; m >>= 1) {
        IntStats o;
        o.sumsq.lo = warp_shfl_xor(s.sumsq.lo, m);
        o.sumsq.hi = warp_shfl_xor(s.sumsq.hi, m);
        o.sum = warp_shfl_xor(s.sum, m);
        o.n = warp_shfl_xor(s.n, m);
        o.min = warp_shfl_xor(s.min, m);
        o.max = warp_shfl_xor(s.max, m);
        s = stats_merged(&s, &o);
    }
    return s;
}

// Wrapping sum over the warp.
TS_DEVICE u64 warp_sum(u64 v) {
    for (u32 m = 16; m >= 1; m >>= 1) v += warp_shfl_xor(v, m);
    return v;
}

TS_DEVICE u64 warp_max(u64 v) {
    for (u32 m = 16; m >= 1; m >>= 1) {
        u64 o = warp_shfl_xor(v, m);
        v = o > v ? o : v;
    }
    return v;
}

#define LONG_ROLES 7

// The emulator counts the long walks, and those that fall back to one
// record at a time.
#ifndef TS_NOTE_FALLBACK
#define TS_NOTE_WALK(role, lane)
#define TS_NOTE_FALLBACK(role, lane)
#endif

template <int ROLE>
TS_DEVICE void role_copy(FlowAcc* dst, const FlowAcc* src) {
    if (ROLE == 0) {
        dst->flow_iat = src->flow_iat;
        dst->active = src->active;
        dst->idle = src->idle;
        dst->start_ts = src->start_ts;
        dst->last_ts = src->last_ts;
        dst->conn_start_ts = src->conn_start_ts;
        dst->start_active = src->start_active;
        dst->end_active = src->end_active;
        dst->first_flags = src->first_flags;
        dst->first_dir = src->first_dir;
    } else if (ROLE == 1 || ROLE == 4) {
        const int d = ROLE == 1 ? 0 : 1;
        dst->dirs[d].len = src->dirs[d].len;
        dst->dirs[d].header_bytes = src->dirs[d].header_bytes;
#pragma unroll
        for (int b = 0; b < 8; ++b) dst->dirs[d].flags[b] = src->dirs[d].flags[b];
        dst->dirs[d].init_win = src->dirs[d].init_win;
        if (d == 0) {
            dst->fwd_act_data = src->fwd_act_data;
            dst->fwd_min_seg = src->fwd_min_seg;
        }
    } else if (ROLE == 2 || ROLE == 5) {
        const int d = ROLE == 2 ? 0 : 1;
        dst->dirs[d].iat = src->dirs[d].iat;
        dst->dirs[d].last_ts = src->dirs[d].last_ts;
        dst->dirs[d].seen = src->dirs[d].seen;
    } else {
        const int d = ROLE == 3 ? 0 : 1;
        dst->dirs[d].bulk = src->dirs[d].bulk;
    }
}

// acc_first restricted to ROLE's part.
template <int ROLE>
TS_DEVICE void role_first(FlowAcc* a, i64 ts, int dir, u32 payload, u16 header, u16 window,
                          u8 flags, i64 conn_start) {
    if (ROLE == 0) {
        stats_empty(&a->flow_iat);
        stats_empty(&a->active);
        stats_empty(&a->idle);
        a->start_ts = ts;
        a->last_ts = ts;
        a->conn_start_ts = conn_start;
        a->start_active = ts;
        a->end_active = ts;
        a->first_flags = flags;
        a->first_dir = (u8)dir;
    } else if (ROLE == 1 || ROLE == 4) {
        const int d = ROLE == 1 ? 0 : 1;
        DirStats* ds = &a->dirs[d];
        stats_empty(&ds->len);
        ds->header_bytes = 0;
#pragma unroll
        for (int b = 0; b < 8; ++b) ds->flags[b] = 0;
        ds->init_win = 0;
        if (dir == d) {
            stats_push(&ds->len, (i64)payload);
            ds->header_bytes = header;
            count_flags(ds, flags);
            ds->init_win = window;
        }
        if (d == 0) {
            a->fwd_act_data = 0;
            a->fwd_min_seg = dir == 0 ? header : 0;
        }
    } else if (ROLE == 2 || ROLE == 5) {
        const int d = ROLE == 2 ? 0 : 1;
        DirStats* ds = &a->dirs[d];
        stats_empty(&ds->iat);
        ds->last_ts = dir == d ? ts : 0;
        ds->seen = dir == d ? 1 : 0;
    } else {
        const int d = ROLE == 3 ? 0 : 1;
        Bulk* b = &a->dirs[d].bulk;
        bulk_empty(b);
        if (dir == d) {
            bulk_update(b, NO_BULK, ts, payload);
        } else if (payload > 0) {
            b->other_last = ts;
        }
    }
}

// acc_update restricted to ROLE's part.
template <int ROLE>
TS_DEVICE void role_update(FlowAcc* a, i64 ts, int dir, u32 payload, u16 header, u16 window,
                           u8 flags, i64 activity_timeout) {
    if (ROLE == 0) {
        i64 gap = sat_sub(ts, a->end_active);
        if (gap > activity_timeout) {
            i64 active = sat_sub(a->end_active, a->start_active);
            if (active > 0) stats_push(&a->active, active);
            stats_push(&a->idle, gap);
            a->start_active = ts;
        }
        a->end_active = ts;
        stats_push(&a->flow_iat, sat_sub(ts, a->last_ts));
        a->last_ts = ts;
    } else if (ROLE == 1 || ROLE == 4) {
        const int d = ROLE == 1 ? 0 : 1;
        if (dir != d) return;
        DirStats* ds = &a->dirs[d];
        stats_push(&ds->len, (i64)payload);
        ds->header_bytes += header;
        count_flags(ds, flags);
        if (d == 0) {
            a->fwd_act_data += payload > 0 ? 1 : 0;
            a->fwd_min_seg = header < a->fwd_min_seg ? header : a->fwd_min_seg;
        } else {
            ds->init_win = window;
        }
    } else if (ROLE == 2 || ROLE == 5) {
        const int d = ROLE == 2 ? 0 : 1;
        if (dir != d) return;
        DirStats* ds = &a->dirs[d];
        if (ds->seen) stats_push(&ds->iat, sat_sub(ts, ds->last_ts));
        ds->last_ts = ts;
        ds->seen = 1;
    } else {
        const int d = ROLE == 3 ? 0 : 1;
        Bulk* b = &a->dirs[d].bulk;
        if (dir == d) {
            bulk_update(b, b->other_last, ts, payload);
        } else if (payload > 0) {
            b->other_last = ts;
        }
    }
}

// One record, packed for the shuffles: header | window << 16 and
// flags | kind << 8.
struct Rec {
    i64 ts;
    u32 payload;
    u32 hw;
    u32 fk;
};

// Record j of the segment ending at `end`; past the end, a finalize record
// (the walk ignores those). A null `ts` leaves the time out.
TS_DEVICE Rec load_rec(u32 j, u32 end, const i64* ts, const u32* payload, const u16* header,
                       const u16* window, const u8* flags, const u8* kind) {
    Rec r;
    if (j < end) {
        r.ts = ts ? ts[j] : 0;
        r.payload = payload[j];
        r.hw = (u32)header[j] | ((u32)window[j] << 16);
        r.fk = (u32)flags[j] | ((u32)kind[j] << 8);
    } else {
        r.ts = 0;
        r.payload = 0;
        r.hw = 0;
        r.fk = (u32)KIND_FINALIZE << 8;
    }
    return r;
}

// One role of one long segment, one record at a time, exactly as
// acc_first/acc_update (the fallback of the parallel roles below). The warp
// loads 32 records at once and every lane applies each of them in turn.
template <int ROLE>
TS_DEVICE void run_role_seq(FlowAcc* g, u32 lane, u32 begin, u32 end, const i64* ts,
                            const u32* payload, const u16* header, const u16* window,
                            const u8* flags, const u8* kind, i64 activity_timeout) {
    FlowAcc a;
    if ((kind[begin] & KIND_MASK) != KIND_FIRST && (kind[begin] & KIND_MASK) != KIND_CONN) {
        role_copy<ROLE>(&a, g);
    }
    bool open = false;
    i64 conn = NO_BULK;
    Rec next = load_rec(begin + lane, end, ts, payload, header, window, flags, kind);
    for (u32 base = begin; base < end; base += TS_WARP) {
        Rec cur = next;
        next = load_rec(base + TS_WARP + lane, end, ts, payload, header, window, flags, kind);
        u32 cnt = end - base < TS_WARP ? end - base : TS_WARP;
        for (u32 i = 0; i < cnt; ++i) {
            i64 t = warp_shfl(cur.ts, i);
            u32 p = warp_shfl(cur.payload, i);
            u32 hw = warp_shfl(cur.hw, i);
            u32 fk = warp_shfl(cur.fk, i);
            u8 k = (u8)(fk >> 8);
            int dir = (k & DIR_BACKWARD) ? 1 : 0;
            u16 h = (u16)(hw & 0xffffu);
            u16 w = (u16)(hw >> 16);
            u8 f = (u8)(fk & 0xffu);
            switch (k & KIND_MASK) {
                case KIND_CONN:
                    conn = t;
                    break;
                case KIND_FIRST:
                    role_first<ROLE>(&a, t, dir, p, h, w, f, conn == NO_BULK ? t : conn);
                    open = true;
                    break;
                case KIND_UPDATE:
                    role_update<ROLE>(&a, t, dir, p, h, w, f, activity_timeout);
                    open = true;
                    break;
                default:
                    break;
            }
        }
    }
    if (open && lane == 0) role_copy<ROLE>(g, &a);
}

// Role 0 over the update records [j, pend): per lane, the gap to the
// previous packet (flow IAT, and a break in activity when it exceeds the
// timeout); the start of the active period a break closes is the last
// earlier break (or the carried start).
TS_DEVICE void par_timing(FlowAcc* a, u32 lane, u32 j, u32 pend, const i64* ts,
                          i64 activity_timeout) {
    i64 nt = j + lane < pend ? ts[j + lane] : 0;
    IntStats fi, act, idl;
    stats_empty(&fi);
    stats_empty(&act);
    stats_empty(&idl);
    i64 last = a->last_ts;  // == end_active
    i64 sa = a->start_active;
    for (u32 base = j; base < pend; base += TS_WARP) {
        bool v = base + lane < pend;
        i64 t = nt;  // loaded one tile ahead
        nt = base + TS_WARP + lane < pend ? ts[base + TS_WARP + lane] : 0;
        u32 nv = pend - base < TS_WARP ? pend - base : TS_WARP;
        i64 up = warp_shfl(t, lane == 0 ? 0u : lane - 1);
        i64 prev = lane == 0 ? last : up;
        i64 gap = sat_sub(t, prev);
        bool brk = v && gap > activity_timeout;
        u32 bm = warp_ballot(brk);
        u32 lower = bm & lanes_below(lane);
        i64 tb = warp_shfl(t, lower ? hi_bit(lower) : 0u);
        if (v) stats_push(&fi, gap);
        if (brk) {
            i64 active = sat_sub(prev, lower ? tb : sa);
            if (active > 0) stats_push(&act, active);
            stats_push(&idl, gap);
        }
        last = warp_shfl(t, nv - 1);
        if (bm) sa = warp_shfl(t, hi_bit(bm));
    }
    fi = warp_stats(fi);
    act = warp_stats(act);
    idl = warp_stats(idl);
    a->flow_iat = stats_merged(&a->flow_iat, &fi);
    a->active = stats_merged(&a->active, &act);
    a->idle = stats_merged(&a->idle, &idl);
    a->last_ts = last;
    a->end_active = last;
    a->start_active = sa;
}

// Roles 1 and 4: one direction's lengths, header bytes, flags, data packets,
// minimum header (forward) and last window (backward).
template <int D>
TS_DEVICE void par_lengths(FlowAcc* a, u32 lane, u32 j, u32 pend, const u32* payload,
                           const u16* header, const u16* window, const u8* flags,
                           const u8* kind) {
    IntStats len;
    stats_empty(&len);
    u64 hdr = 0;
    u64 min_seg = 0xffffu;
    u32 fl[8];
#pragma unroll
    for (int b = 0; b < 8; ++b) fl[b] = 0;
    u64 act_data = 0;
    u16 win = a->dirs[D].init_win;
    const i64* no_ts = 0;
    Rec nx = load_rec(j + lane, pend, no_ts, payload, header, window, flags, kind);
    for (u32 base = j; base < pend; base += TS_WARP) {
        bool v = base + lane < pend;
        Rec r = nx;  // loaded one tile ahead
        nx = load_rec(base + TS_WARP + lane, pend, no_ts, payload, header, window, flags, kind);
        bool mine = v && ((r.fk >> 8) & DIR_BACKWARD ? 1 : 0) == D;
        u32 p = mine ? r.payload : 0;
        u32 h = mine ? (r.hw & 0xffffu) : 0;
        u32 f = mine ? (r.fk & 0xffu) : 0;
        if (mine) {
            stats_push(&len, (i64)p);
            hdr += h;
            if (D == 0 && h < min_seg) min_seg = h;
        }
#pragma unroll
        for (int b = 0; b < 8; ++b) fl[b] += popc(warp_ballot(mine && ((f >> b) & 1u)));
        if (D == 0) {
            act_data += popc(warp_ballot(mine && p > 0));
        } else {
            u32 m = warp_ballot(mine);
            u32 w = mine ? (r.hw >> 16) : 0;
            w = warp_shfl(w, m ? hi_bit(m) : 0u);
            if (m) win = (u16)w;
        }
    }
    len = warp_stats(len);
    hdr = warp_sum(hdr);
    DirStats* ds = &a->dirs[D];
    ds->len = stats_merged(&ds->len, &len);
    ds->header_bytes += hdr;
#pragma unroll
    for (int b = 0; b < 8; ++b) ds->flags[b] += fl[b];
    if (D == 0) {
        u64 m = 0xffffu - warp_max(0xffffu - min_seg);  // the warp's minimum
        a->fwd_act_data += act_data;
        if (m < a->fwd_min_seg) a->fwd_min_seg = (u16)m;
    } else {
        ds->init_win = win;
    }
}

// Roles 2 and 5: one direction's inter-arrival times, each lane's gap to the
// direction's previous packet.
template <int D>
TS_DEVICE void par_dir_iat(FlowAcc* a, u32 lane, u32 j, u32 pend, const i64* ts,
                           const u8* kind) {
    IntStats iat;
    stats_empty(&iat);
    DirStats* ds = &a->dirs[D];
    i64 last = ds->last_ts;
    u8 seen = ds->seen;
    i64 nt = j + lane < pend ? ts[j + lane] : 0;
    u8 nk = j + lane < pend ? kind[j + lane] : 0;
    for (u32 base = j; base < pend; base += TS_WARP) {
        bool v = base + lane < pend;
        i64 t = nt;  // loaded one tile ahead
        u8 k = nk;
        u32 nidx = base + TS_WARP + lane;
        nt = nidx < pend ? ts[nidx] : 0;
        nk = nidx < pend ? kind[nidx] : 0;
        bool mine = v && ((k & DIR_BACKWARD) ? 1 : 0) == D;
        u32 m = warp_ballot(mine);
        u32 lower = m & lanes_below(lane);
        i64 tp = warp_shfl(t, lower ? hi_bit(lower) : 0u);
        if (mine && (lower || seen)) stats_push(&iat, sat_sub(t, lower ? tp : last));
        if (m) {
            last = warp_shfl(t, hi_bit(m));
            seen = 1;
        }
    }
    iat = warp_stats(iat);
    ds->iat = stats_merged(&ds->iat, &iat);
    ds->last_ts = last;
    ds->seen = seen;
}

// Bulk durations: with every term below 2^40 in magnitude, at most 2^22
// terms and a carried total within 2^62, no prefix of the sequential
// saturating sum can leave the i64 range, so the order-free sum equals it.
#define BULK_TERM_LIMIT (1ULL << 40)
#define BULK_TERMS_LIMIT (1ULL << 22)
#define BULK_TOTAL_LIMIT (1LL << 62)

// What one lane's payload packets add to a direction's bulk state in
// par_bulk, summed over the warp at the end.
struct BulkSums {
    u64 bulks, pkts, bytes, terms, maxabs;
    u64 dur;  // wrapping i64 sum
};

// The candidate bulk starts among this tile's lanes, in lane order (a
// warp-uniform loop). `start` is the open candidate's start, carried in and
// out (NO_BULK once the other direction's payload closed it).
TS_DEVICE u32 bulk_starts(u32 lane, bool same, u32 pm, u32 gm, i64 t, i64 other_last,
                          i64* start) {
    u32 starts = 0;
    u32 pos = 0;
    for (;;) {
        u32 from = lanes_from(pos);
        u32 c;
        if (*start == NO_BULK) {
            c = pm & from;
        } else {
            u32 km = warp_ballot(same && lane >= pos && other_last > *start);
            c = gm & from;
            if (km) c |= pm & lanes_from(lo_bit(km));
            if (!c) {
                if (km) *start = NO_BULK;
                break;
            }
        }
        if (!c) break;
        u32 s = lo_bit(c);
        starts |= 1u << s;
        *start = warp_shfl(t, s);
        pos = s + 1;
    }
    return starts;
}

// Inclusive prefix sum of `v` over the warp's lanes.
TS_DEVICE u64 warp_inclusive_sum(u64 v, u32 lane) {
    for (u32 d = 1; d < 32; d <<= 1) {
        u64 o = warp_shfl(v, lane >= d ? lane - d : lane);
        if (lane >= d) v += o;
    }
    return v;
}

// What bulk_update adds for a payload packet that opens no candidate: `q`
// packets and `cb` bytes in its candidate so far (it included), which
// started at `st`; `last` is this direction's previous payload time.
TS_DEVICE void bulk_add(BulkSums* sum, u64 q, u64 cb, i64 st, i64 t, i64 last, u32 p) {
    i64 term = 0;
    if (q == BULK_MIN_PACKETS) {
        sum->bulks += 1;
        sum->pkts += q;
        sum->bytes += cb;
        term = sat_sub(t, st);
    } else if (q > BULK_MIN_PACKETS) {
        sum->pkts += 1;
        sum->bytes += p;
        term = sat_sub(t, last);
    } else {
        return;
    }
    sum->dur += (u64)term;
    sum->terms += 1;
    u64 ab = unsigned_abs(term);
    if (ab > sum->maxabs) sum->maxabs = ab;
}

// Sums the lanes' additions into `b` and stores it in direction D; false
// (nothing stored) when a duration could saturate.
template <int D>
TS_DEVICE bool bulk_commit(FlowAcc* a, Bulk b, BulkSums sum) {
    u64 bulks = warp_sum(sum.bulks);
    u64 pkts = warp_sum(sum.pkts);
    u64 bytes = warp_sum(sum.bytes);
    u64 dur = warp_sum(sum.dur);
    u64 terms = warp_sum(sum.terms);
    u64 maxabs = warp_max(sum.maxabs);
    if (maxabs >= BULK_TERM_LIMIT || terms > BULK_TERMS_LIMIT || b.duration > BULK_TOTAL_LIMIT ||
        b.duration < -BULK_TOTAL_LIMIT) {
        return false;
    }
    b.bulks += bulks;
    b.pkts += pkts;
    b.bytes += bytes;
    b.duration = (i64)((u64)b.duration + dur);
    a->dirs[D].bulk = b;
    return true;
}

// Roles 3 and 6: one direction's bulk state. For every same-direction
// packet the lanes find the other direction's last payload time and their
// own direction's previous payload time; the candidate starts of a tile come
// from a warp-uniform loop (a start is a payload packet after a gap over 1 s,
// or the first payload packet once the candidate was reset because the other
// direction sent payload after its start); then each payload packet adds
// what bulk_update would add at its position in its candidate. False when a
// duration could saturate: the caller then walks the role sequentially.
template <int D>
TS_DEVICE bool par_bulk(FlowAcc* a, u32 lane, u32 j, u32 pend, const i64* ts,
                        const u32* payload, const u8* kind) {
    Bulk b = a->dirs[D].bulk;
    BulkSums sum = {0, 0, 0, 0, 0, 0};
    i64 nt = j + lane < pend ? ts[j + lane] : 0;
    u32 np = j + lane < pend ? payload[j + lane] : 0;
    u8 nk = j + lane < pend ? kind[j + lane] : 0;
    for (u32 base = j; base < pend; base += TS_WARP) {
        bool v = base + lane < pend;
        i64 t = nt;  // loaded one tile ahead
        u32 p = np;
        u8 k = nk;
        u32 nidx = base + TS_WARP + lane;
        nt = nidx < pend ? ts[nidx] : 0;
        np = nidx < pend ? payload[nidx] : 0;
        nk = nidx < pend ? kind[nidx] : 0;
        int dir = v && (k & DIR_BACKWARD) ? 1 : 0;
        bool same = v && dir == D;
        bool pay = same && p > 0;
        u32 pm = warp_ballot(pay);
        u32 om = warp_ballot(v && dir != D && p > 0);
        // The other direction's last payload time before this lane.
        u32 lo = om & lanes_below(lane);
        i64 to = warp_shfl(t, lo ? hi_bit(lo) : 0u);
        i64 other_last = lo ? to : b.other_last;
        // This direction's previous payload time.
        u32 lp = pm & lanes_below(lane);
        i64 tl = warp_shfl(t, lp ? hi_bit(lp) : 0u);
        i64 last = lp ? tl : b.last;
        u32 gm = warp_ballot(pay && sat_sub(t, last) > BULK_GAP_US);
        i64 start = b.start;
        u32 starts = bulk_starts(lane, same, pm, gm, t, other_last, &start);
        // Payload bytes of this direction up to and including each lane.
        u64 incl = warp_inclusive_sum(pay ? p : 0, lane);
        u64 excl = incl - (pay ? p : 0);
        u32 upto = lanes_below(lane) | (1u << lane);
        u32 rs = starts & upto;
        u32 r = rs ? hi_bit(rs) : 0u;
        u64 excl_r = warp_shfl(excl, r);
        i64 t_r = warp_shfl(t, r);
        if (pay && !((starts >> lane) & 1u)) {
            if (rs) {
                bulk_add(&sum, popc(pm & upto & lanes_from(r)), incl - excl_r, t_r, t, last, p);
            } else {
                bulk_add(&sum, b.cand_pkts + popc(pm & upto), b.cand_bytes + incl, b.start, t,
                         last, p);
            }
        }
        // Carry to the next tile.
        u64 total = warp_shfl(incl, 31u);
        if (starts) {
            u32 ls = hi_bit(starts);
            u64 excl_ls = warp_shfl(excl, ls);
            b.cand_pkts = popc(pm & lanes_from(ls));
            b.cand_bytes = total - excl_ls;
        } else {
            b.cand_pkts += popc(pm);
            b.cand_bytes += total;
        }
        b.start = start;
        if (om) b.other_last = warp_shfl(t, hi_bit(om));
        if (pm) b.last = warp_shfl(t, hi_bit(pm));
    }
    return bulk_commit<D>(a, b, sum);
}

// One role of one long segment, run by a whole warp: the segment's optional
// CONN and FIRST records first (the same on every lane), then its update
// records in parallel, then its optional FINALIZE (left to finalize_long).
// The host puts records in that order; anything else, or a bulk duration
// near saturation, takes the sequential walk instead.
template <int ROLE>
TS_DEVICE void run_role(FlowAcc* g, u32 lane, u32 begin, u32 end, const i64* ts,
                        const u32* payload, const u16* header, const u16* window,
                        const u8* flags, const u8* kind, i64 activity_timeout) {
    TS_NOTE_WALK(ROLE, lane);
    FlowAcc a;
    u32 j = begin;
    i64 conn = NO_BULK;
    bool open = false;
    if (j < end && (kind[j] & KIND_MASK) == KIND_CONN) {
        conn = ts[j];
        ++j;
    }
    if (j < end && (kind[j] & KIND_MASK) == KIND_FIRST) {
        int dir = (kind[j] & DIR_BACKWARD) ? 1 : 0;
        role_first<ROLE>(&a, ts[j], dir, payload[j], header[j], window[j], flags[j],
                         conn == NO_BULK ? ts[j] : conn);
        ++j;
        open = true;
    } else {
        role_copy<ROLE>(&a, g);
    }
    u32 pend = end;
    if (pend > j && (kind[pend - 1] & KIND_MASK) == KIND_FINALIZE) --pend;
    bool odd = conn != NO_BULK && !open;
    for (u32 base = j; base < pend && !odd; base += TS_WARP) {
        u32 idx = base + lane;
        odd = warp_ballot(idx < pend && (kind[idx] & KIND_MASK) != KIND_UPDATE) != 0;
    }
    bool ok = !odd;
    if (ok && pend > j) {
        open = true;
        if (ROLE == 0) {
            par_timing(&a, lane, j, pend, ts, activity_timeout);
        } else if (ROLE == 1 || ROLE == 4) {
            par_lengths<ROLE == 1 ? 0 : 1>(&a, lane, j, pend, payload, header, window, flags,
                                           kind);
        } else if (ROLE == 2 || ROLE == 5) {
            par_dir_iat<ROLE == 2 ? 0 : 1>(&a, lane, j, pend, ts, kind);
        } else {
            ok = par_bulk<ROLE == 3 ? 0 : 1>(&a, lane, j, pend, ts, payload, kind);
        }
    }
    if (!ok) {
        TS_NOTE_FALLBACK(ROLE, lane);
        run_role_seq<ROLE>(g, lane, begin, end, ts, payload, header, window, flags, kind,
                           activity_timeout);
        return;
    }
    if (open && lane == 0) role_copy<ROLE>(g, &a);
}

// Blocks below `long_blocks` run the long segments, one warp per (role,
// segment), role-major; the blocks above run the short segments, one thread
// each. One launch, so the long walks start first and the short segments
// fill the rest of the GPU around them.
TS_KERNEL void process_batch(char* accs, const u32* seg_start, const u32* seg_slot,
                             const u32* short_segs, u32 n_short, const u32* long_segs,
                             u32 n_long, u32 long_blocks, const i64* ts, const u32* payload,
                             const u16* header, const u16* window, const u8* flags,
                             const u8* kind, const u64* fin_meta, i64 activity_timeout,
                             double* rows) {
    if (blockIdx.x < long_blocks) {
        u32 gw = (blockIdx.x * blockDim.x + threadIdx.x) / TS_WARP;
        u32 lane = threadIdx.x % TS_WARP;
        if (n_long == 0) return;
        u32 role = gw / n_long;
        u32 w = gw % n_long;
        if (role >= LONG_ROLES) return;
        u32 s = long_segs[w];
        FlowAcc* g = (FlowAcc*)(accs + (u64)seg_slot[s] * ACC_STRIDE);
        u32 begin = seg_start[s];
        u32 end = seg_start[s + 1];
        switch (role) {
            case 0: run_role<0>(g, lane, begin, end, ts, payload, header, window, flags, kind, activity_timeout); break;
            case 1: run_role<1>(g, lane, begin, end, ts, payload, header, window, flags, kind, activity_timeout); break;
            case 2: run_role<2>(g, lane, begin, end, ts, payload, header, window, flags, kind, activity_timeout); break;
            case 3: run_role<3>(g, lane, begin, end, ts, payload, header, window, flags, kind, activity_timeout); break;
            case 4: run_role<4>(g, lane, begin, end, ts, payload, header, window, flags, kind, activity_timeout); break;
            case 5: run_role<5>(g, lane, begin, end, ts, payload, header, window, flags, kind, activity_timeout); break;
            default: run_role<6>(g, lane, begin, end, ts, payload, header, window, flags, kind, activity_timeout); break;
        }
        return;
    }
    u32 t = (blockIdx.x - long_blocks) * blockDim.x + threadIdx.x;
    if (t >= n_short) return;
    process_short(accs, seg_start, seg_slot, short_segs[t], ts, payload, header, window, flags,
                  kind, fin_meta, activity_timeout, rows);
}

// One thread per long segment that ends its flow: finalizes the
// accumulator the roles stored.
TS_KERNEL void finalize_long(const char* accs, const u32* seg_start, const u32* seg_slot,
                             const u32* long_segs, u32 n_long, const u8* kind,
                             const u32* payload, const u64* fin_meta, double* rows) {
    u32 w = blockIdx.x * blockDim.x + threadIdx.x;
    if (w >= n_long) return;
    u32 s = long_segs[w];
    u32 last = seg_start[s + 1] - 1;
    if ((kind[last] & KIND_MASK) != KIND_FINALIZE) return;
    const FlowAcc* g = (const FlowAcc*)(accs + (u64)seg_slot[s] * ACC_STRIDE);
    u64 r = payload[last];
    acc_finalize(g, fin_meta[r], rows + r * NUM_FEATURES);
}

// ------------------------------------------------------------ model input
//
// The device twin of inference::select_features: for each feature row, the
// model's columns in the model's order, non-finite values read as 0,
// standardised as (x - mean) / scale when the model asks tapstream to scale,
// clamped to the f32 range and rounded to the nearest f32. The same f64
// operations in the same order, so the values are bit-identical.

#ifdef __CUDA_ARCH__
TS_DEVICE u64 f64_bits(double x) { return (u64)__double_as_longlong(x); }
#else
TS_DEVICE u64 f64_bits(double x) {
    u64 b;
    memcpy(&b, &x, sizeof b);
    return b;
}
#endif

#define F32_MAX_AS_F64 3.4028234663852886e38

// One thread per value of the n × width output (row-major).
TS_KERNEL void model_input(const double* rows, u32 n, const u32* cols, u32 width,
                           const double* mean, const double* scale, u32 external, float* out) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (width == 0 || i >= (u64)n * width) return;
    u64 r = i / width;
    u32 c = (u32)(i % width);
    double x = rows[r * NUM_FEATURES + cols[c]];
    if ((f64_bits(x) & 0x7ff0000000000000ULL) == 0x7ff0000000000000ULL) x = 0.0;
    if (external) x = (x - mean[c]) / scale[c];
    if (x < -F32_MAX_AS_F64) {
        x = -F32_MAX_AS_F64;
    } else if (x > F32_MAX_AS_F64) {
        x = F32_MAX_AS_F64;
    }
    out[i] = (float)x;
}

// ------------------------------------------------------------ flag scores
//
// The device twin of inference::read_output followed by the alert stage's
// `score >= threshold`: each row's attack score and class from the model's
// output (rows × cols f32, row-major), and the rows that reach the
// threshold compacted into (row, class, score bits) triples through an
// atomic counter, so the host copies back only the count and those triples.
// Their order depends on scheduling; the host sorts them by row.
//
// Probabilities (`benign` < cols): score = 1 - p[benign] in f32; class = the
// most likely other column, a NaN counting as -inf, the lowest index winning
// ties (so the first other column when all are NaN or -inf; 0 when there is
// none). A score output (`benign` == FLAG_SCORE_COLUMN, cols == 1): score =
// the value, class = `score_class`. A NaN score is never flagged.

#define FLAG_SCORE_COLUMN 0xffffffff

#ifdef __CUDA_ARCH__
TS_DEVICE u32 flag_slot(u32* count) { return atomicAdd(count, 1u); }
TS_DEVICE u32 f32_bits(float x) { return __float_as_uint(x); }
TS_DEVICE float f32_from_bits(u32 b) { return __uint_as_float(b); }
#else
TS_DEVICE u32 flag_slot(u32* count) { return (*count)++; }
TS_DEVICE u32 f32_bits(float x) {
    u32 b;
    memcpy(&b, &x, sizeof b);
    return b;
}
TS_DEVICE float f32_from_bits(u32 b) {
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}
#endif

// One thread per row; `flagged` holds 3 × capacity values.
TS_KERNEL void flag_scores(const float* out, u32 n, u32 cols, u32 benign, u32 score_class,
                           float threshold, u32* count, u32 capacity, u32* flagged) {
    u32 r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= n) return;
    const float* p = out + (u64)r * cols;
    float score;
    u32 cls = 0;
    if (benign == FLAG_SCORE_COLUMN) {
        score = p[0];
        cls = score_class;
    } else {
        score = 1.0f - p[benign];
        const float neg_inf = f32_from_bits(0xff800000u);
        bool any = false;
        float best = neg_inf;
        for (u32 i = 0; i < cols; ++i) {
            if (i == benign) continue;
            float v = p[i];
            if (v != v) v = neg_inf;
            if (!any || v > best) {
                best = v;
                cls = i;
                any = true;
            }
        }
    }
    if (!(score >= threshold)) return;
    u32 slot = flag_slot(count);
    if (slot >= capacity) return;
    flagged[3 * (u64)slot] = r;
    flagged[3 * (u64)slot + 1] = cls;
    flagged[3 * (u64)slot + 2] = f32_bits(score);
}
