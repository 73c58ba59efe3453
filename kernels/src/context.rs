//! Host and service context: what a flow's hosts and service did before it
//! started, at three time scales.
//!
//! Why this exists: a SYN flood from one host, password guessing, an HTTP
//! flood or a slow DoS is many flows that each look ordinary; they show only
//! as a rate or a fan-out per host or service; a scan or a SYN flood also
//! as many flows refused or never answered. The per-flow CIC row cannot see
//! that, so each flow also gets a context row ([`CONTEXT_FEATURES`]).
//!
//! # Definition
//!
//! The input is the sequence of *flow starts* in capture order: each flow's
//! first packet, with the flow's orientation (its source is the initiator),
//! destination port and protocol. For each start, in that order, the
//! [`ContextTable`] reads five keyed statistics (source host, destination
//! host, host pair, service = destination host + port + protocol, and
//! source → service) *before* counting the flow itself, and then counts it.
//! The same sequence carries *outcomes* (schema version 3): a flow's
//! responder's first packet answers or (a TCP reset) rejects it, and an ICMP
//! destination unreachable rejects the source it goes back to; outcomes are
//! counted per source and per answering host and read by later starts.
//! Every statistic is a Kitsune-style damped count (Mirsky et al., NDSS
//! 2018): before each read or update at time `t` it is multiplied by
//! `2^(−λ·Δt)` with `Δt = max(0, t − t_last)` seconds, for
//! `λ ∈ {1, 0.1, 0.01}` per second (half-lives 1 s, 10 s, 100 s), so a steady
//! rate of `r` flows/s reads about `r / (λ·ln 2)`. The formulas are in
//! `kernels/FEATURES.md`.
//!
//! # Why it is exact
//!
//! Flow starts and outcomes are a property of the capture: the flows, and
//! so their first packets and their responders' first packets, are the same
//! for any number of workers (the flow table's contract). The runtime's context stage merges the shards' starts by the
//! first packet's place in the capture (chunk number, index in chunk) and
//! applies them in that order, so the table sees the same sequence for any
//! number of workers and decoders and on every replay. A flow's row is
//! taken at its start, before it ends, so when it ends does not matter.
//!
//! # Bounded memory
//!
//! Entries are capped ([`ContextConfig::max_entries`], from a memcap). The
//! table grows with its entries up to the allocation that cap allows and
//! shrinks back after a sweep that leaves it mostly empty: a dense table
//! keeps lookups in cache and makes a sweep cost what it keeps, not what a
//! flood once needed. Entries not touched for [`ContextConfig::retain_us`]
//! are swept. A table
//! that is still full enters *emergency mode*: it drops the least recently
//! touched quarter of its entries (counted as evictions), at most once per
//! second of packet time; in between, new keys are not added (counted as
//! refused; their flows read zeros for them, as for a host never seen). It
//! leaves the mode at a sweep that finds it at most 70 % full. All of this is driven by the
//! starts' packet time, so it too is the same on every run.

use hashbrown::HashMap;

use tapstream_ingest::FlowMeta;

/// The context schema's name in the model contract.
pub const CONTEXT_SCHEMA_NAME: &str = "tapstream-context";
/// The context schema's version; bump it when a formula or name changes.
pub const CONTEXT_SCHEMA_VERSION: u32 = 3;
/// The oldest context schema version whose models this build still runs:
/// version 3 only added features (the outcome statistics) after version 2's
/// 24, whose formulas are unchanged, so a version-2 model reads the same
/// values it was trained on. Version 1 counted group destinations.
pub const CONTEXT_SCHEMA_OLDEST: u32 = 2;

/// Decay rates λ (per second): half-lives 1 s, 10 s and 100 s.
pub const LAMBDAS: [f64; SCALES] = [1.0, 0.1, 0.01];
/// Number of time scales.
pub const SCALES: usize = 3;
/// The scales' names in feature names.
#[cfg(test)]
const SCALE_NAMES: [&str; SCALES] = ["1s", "10s", "100s"];

/// The twelve statistics, each at every scale (see `kernels/FEATURES.md`):
/// eight counts of flow starts, then (version 3) four counts of outcomes.
const STATS: [&str; 12] = [
    "src_flows",
    "src_new_dsts",
    "pair_flows",
    "pair_new_ports",
    "psrv_flows",
    "srv_flows",
    "srv_new_srcs",
    "dst_flows",
    "src_answered",
    "src_rejected",
    "dst_answered",
    "dst_rejected",
];

/// Number of context features in a row.
pub const NUM_CONTEXT: usize = STATS.len() * SCALES;

/// The context feature names, in row order: `ctx_<stat>_<scale>`, the
/// statistic major.
pub static CONTEXT_FEATURES: [&str; NUM_CONTEXT] = [
    "ctx_src_flows_1s",
    "ctx_src_flows_10s",
    "ctx_src_flows_100s",
    "ctx_src_new_dsts_1s",
    "ctx_src_new_dsts_10s",
    "ctx_src_new_dsts_100s",
    "ctx_pair_flows_1s",
    "ctx_pair_flows_10s",
    "ctx_pair_flows_100s",
    "ctx_pair_new_ports_1s",
    "ctx_pair_new_ports_10s",
    "ctx_pair_new_ports_100s",
    "ctx_psrv_flows_1s",
    "ctx_psrv_flows_10s",
    "ctx_psrv_flows_100s",
    "ctx_srv_flows_1s",
    "ctx_srv_flows_10s",
    "ctx_srv_flows_100s",
    "ctx_srv_new_srcs_1s",
    "ctx_srv_new_srcs_10s",
    "ctx_srv_new_srcs_100s",
    "ctx_dst_flows_1s",
    "ctx_dst_flows_10s",
    "ctx_dst_flows_100s",
    "ctx_src_answered_1s",
    "ctx_src_answered_10s",
    "ctx_src_answered_100s",
    "ctx_src_rejected_1s",
    "ctx_src_rejected_10s",
    "ctx_src_rejected_100s",
    "ctx_dst_answered_1s",
    "ctx_dst_answered_10s",
    "ctx_dst_answered_100s",
    "ctx_dst_rejected_1s",
    "ctx_dst_rejected_10s",
    "ctx_dst_rejected_100s",
];

/// The context schema version that introduced each context feature, in row
/// order: a model may name a feature only if its contract's version has it.
pub fn context_feature_since(index: usize) -> Option<u32> {
    (index < NUM_CONTEXT).then_some(if index < 8 * SCALES { 2 } else { 3 })
}

/// A context row as it travels beside a flow: computed in `f64`, kept as
/// `f32` (what models read; half the memory of the rows of open flows).
pub type ContextRow = [f32; NUM_CONTEXT];

/// Index of a context feature by name (0-based within the context row).
pub fn context_index(name: &str) -> Option<usize> {
    CONTEXT_FEATURES.iter().position(|n| *n == name)
}

/// A damped count is "recent" at a scale while it reads at least this: a
/// flow counted within about one half-life.
const RECENT: f64 = 0.5;

/// How a flow's responder first answered it (schema version 3): what KDD's
/// `serror_rate` / `rerror_rate` read, as events in the packet sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The responder's first packet in the flow, not a TCP reset.
    Answered,
    /// The responder's first packet in the flow was a TCP reset, or an ICMP
    /// or ICMPv6 destination-unreachable packet came back to the source.
    Rejected,
}

/// One flow's start, or the outcome of a flow, as the context stage orders
/// and applies them: both are packets of the input, so both have a place in
/// the one sequence the stage applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowStart {
    /// Which flow: the id its ended row carries ([`FlowBatch::start_ids`](crate::FlowBatch)).
    pub id: u64,
    /// The packet's place in the input (the first packet for a start):
    /// chunk number in the high 32 bits, index among the chunk's decoded
    /// packets in the low 32.
    pub order: u64,
    /// The packet's timestamp, µs.
    pub ts_us: i64,
    /// The initiator's address (IPv4 in the first 4 bytes).
    pub src: [u8; 16],
    /// The responder's address.
    pub dst: [u8; 16],
    /// The responder's port (0 for ICMP).
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// IPv6 addresses.
    pub v6: bool,
    /// `None` for a flow's start; the outcome it reports otherwise (then
    /// `src` is the source that was answered or rejected, `dst` the host
    /// that answered or rejected it).
    pub outcome: Option<Outcome>,
}

impl FlowStart {
    /// The start of the flow `meta` describes (its identity; `id` and
    /// `order` as given).
    pub fn of_meta(meta: &FlowMeta, id: u64, order: u64) -> Self {
        FlowStart {
            id,
            order,
            ts_us: meta.start_us,
            src: meta.src,
            dst: meta.dst,
            dport: meta.dport,
            proto: meta.proto,
            v6: meta.v6,
            outcome: None,
        }
    }

    /// Whether the responder is a group address: IPv4 multicast
    /// (224.0.0.0/4) or the limited broadcast 255.255.255.255, or IPv6
    /// multicast (ff00::/8). A subnet's directed broadcast needs its mask,
    /// which a tap does not know, so it counts as a host.
    pub fn to_group(&self) -> bool {
        let [a, b, c, d, ..] = self.dst;
        if self.v6 {
            a == 0xff
        } else {
            a & 0xf0 == 0xe0 || [a, b, c, d] == [255; 4]
        }
    }
}

/// Limits of a [`ContextTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextConfig {
    /// Entries (over all seven kinds of key) at most.
    pub max_entries: usize,
    /// Entries untouched this long (packet time, µs) are swept.
    pub retain_us: i64,
}

impl ContextConfig {
    /// Default memcap: 64 MiB.
    pub const DEFAULT_MEMCAP_MIB: usize = 64;
    /// Default retention: 1,000 s, ten half-lives of the slowest scale
    /// (its counts have fallen below 0.1 %).
    pub const DEFAULT_RETAIN_US: i64 = 1_000_000_000;

    /// Host memory one table slot costs: a key and its statistics, and the
    /// hash table's control byte.
    pub const BYTES_PER_SLOT: usize = std::mem::size_of::<(u64, Damped)>() + 1;

    /// The limits for a memcap of `mib` MiB. The table's slots are a power
    /// of two with at most 7/8 of them used, so at `max_entries` it holds
    /// the largest power of two of slots the memcap pays for, and never more.
    pub fn with_memcap_mib(mib: usize) -> Self {
        let slots = mib.saturating_mul(1 << 20) / Self::BYTES_PER_SLOT;
        let pow2 = if slots == 0 {
            0
        } else {
            1usize << (usize::BITS - 1 - slots.leading_zeros())
        };
        ContextConfig {
            max_entries: (pow2 / 8 * 7).max(16),
            retain_us: Self::DEFAULT_RETAIN_US,
        }
    }
}

impl Default for ContextConfig {
    fn default() -> Self {
        Self::with_memcap_mib(Self::DEFAULT_MEMCAP_MIB)
    }
}

/// Counters of a [`ContextTable`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContextStats {
    /// Flow starts applied.
    pub starts: u64,
    /// Outcomes applied (first answers and rejections).
    pub outcomes: u64,
    /// Entries now.
    pub entries: u64,
    /// Entries removed by a sweep (untouched for the retention time).
    pub expired: u64,
    /// Entries dropped because the table was full.
    pub evictions: u64,
    /// New keys not added because the table was full (their flows read
    /// zeros for them, as for a host never seen).
    pub refused: u64,
    /// Times the table entered emergency mode.
    pub emergency_entries: u64,
    /// The table is in emergency mode now.
    pub emergency: bool,
}

/// One damped statistic: a count `w` and a "new" count `n` per scale.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Damped {
    /// Last update, µs.
    t_us: i64,
    w: [f64; SCALES],
    n: [f64; SCALES],
}

impl Damped {
    /// Decays to `t_us` (never backwards).
    fn decay_to(&mut self, t_us: i64) {
        if t_us > self.t_us {
            let dt = (t_us - self.t_us) as f64 * 1e-6;
            for (i, l) in LAMBDAS.iter().enumerate() {
                let d = (-l * dt).exp2();
                if let (Some(w), Some(n)) = (self.w.get_mut(i), self.n.get_mut(i)) {
                    *w *= d;
                    *n *= d;
                }
            }
            self.t_us = t_us;
        }
    }

    /// Counts one flow, and one "new" flow at the scales where `new` says so.
    fn count(&mut self, new: [bool; SCALES]) {
        for ((w, n), fresh) in self.w.iter_mut().zip(self.n.iter_mut()).zip(new) {
            *w += 1.0;
            if fresh {
                *n += 1.0;
            }
        }
    }
}

/// The keys of one start, as 64-bit fingerprints: source host,
/// destination host, host pair, service (destination host, port, protocol)
/// and source → service, and the outcome keys of the source and the
/// destination (schema version 3).
///
/// The table is keyed by fingerprints: a 64-byte slot (fingerprint and
/// statistics) instead of 97 for the keys themselves keeps a flood's fresh
/// keys to one cache line each, and a start's seven fingerprints share the
/// work of mixing its two addresses. The function is fixed, the same on
/// every run and machine (the CUDA twin computes it too). Keys that differ
/// in one address word, or only in port or protocol, never collide; others
/// share a fingerprint with probability about n²/2⁶⁵ for n kept keys (below
/// 10⁻⁸ at the default memcap), and then share their statistics, the same
/// way on every run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Keys {
    src: u64,
    dst: u64,
    pair: u64,
    srv: u64,
    psrv: u64,
    /// The source's outcomes: `w` answered, `n` rejected.
    src_out: u64,
    /// The destination's outcomes: `w` answers it gave, `n` rejections.
    dst_out: u64,
}

impl Keys {
    fn of(s: &FlowStart) -> Self {
        let host = |a: &[u8; 16]| {
            let (lo, hi) = a.split_at(8);
            let word = |b: &[u8]| {
                let mut w = [0u8; 8];
                w.copy_from_slice(b);
                u64::from_le_bytes(w)
            };
            mix(word(lo) ^ mix(word(hi) ^ u64::from(s.v6)))
        };
        let (hs, hd) = (host(&s.src), host(&s.dst));
        let service = u64::from(s.dport) | u64::from(s.proto) << 16;
        // One constant per kind of key (the fractional digits of π).
        const SRC: u64 = 0x243F_6A88_85A3_08D3;
        const DST: u64 = 0x1319_8A2E_0370_7344;
        const PAIR: u64 = 0xA409_3822_299F_31D0;
        const SRV: u64 = 0x082E_FA98_EC4E_6C89;
        const PSRV: u64 = 0x4528_21E6_38D0_1377;
        const SRC_OUT: u64 = 0xBE54_66CF_34E9_0C6C;
        const DST_OUT: u64 = 0xC0AC_29B7_C97C_50DD;
        Keys {
            src: mix(hs ^ SRC),
            dst: mix(hd ^ DST),
            pair: mix(mix(hs ^ PAIR) ^ hd),
            srv: mix(mix(hd ^ SRV) ^ service),
            psrv: mix(mix(mix(hs ^ PSRV) ^ hd) ^ service),
            src_out: mix(hs ^ SRC_OUT),
            dst_out: mix(hd ^ DST_OUT),
        }
    }
}

/// A bijective 64-bit mixer (SplitMix64's): chained over a key's words,
/// keys that differ in one word never collide.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Hashes a fingerprint as itself: it is already mixed.
#[derive(Clone, Copy, Debug, Default)]
struct Fingerprint(u64);

impl std::hash::Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix(self.0 ^ u64::from(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type ByFingerprint = std::hash::BuildHasherDefault<Fingerprint>;

/// The keyed statistics and their limits. Applying the same starts in the
/// same order gives the same rows, bit for bit.
#[derive(Debug, Default)]
pub struct ContextTable {
    cfg: ContextConfig,
    /// Every key's statistics by the key's fingerprint, in one table (see
    /// the module docs on its size).
    map: HashMap<u64, Damped, ByFingerprint>,
    stats: ContextStats,
    /// Packet time of the next sweep, µs.
    next_sweep_us: Option<i64>,
    /// A full table frees room again from this packet time on, µs.
    next_evict_us: Option<i64>,
}

/// Sweeps run this often in packet time (µs).
const SWEEP_EVERY_US: i64 = 60_000_000;
/// A full table frees room at most this often in packet time (µs).
const EVICT_EVERY_US: i64 = 1_000_000;
/// Entries the table has room for at least (it starts there).
const MIN_CAPACITY: usize = 16_384;

impl ContextTable {
    /// An empty table.
    pub fn new(cfg: ContextConfig) -> Self {
        ContextTable {
            cfg,
            map: HashMap::with_capacity_and_hasher(
                cfg.max_entries.min(MIN_CAPACITY),
                ByFingerprint::default(),
            ),
            ..ContextTable::default()
        }
    }

    /// Gives memory back after a sweep that left the table mostly empty, so
    /// lookups and the next sweep touch only what is kept.
    fn shrink(&mut self) {
        let keep = (self.len() * 2).max(MIN_CAPACITY);
        if self.map.capacity() > keep * 2 {
            self.map.shrink_to(keep);
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> ContextStats {
        ContextStats {
            entries: self.len() as u64,
            ..self.stats
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    /// Applies one start: writes the flow's context row into `row` (what
    /// came before it), then counts the flow. An outcome
    /// ([`FlowStart::outcome`]) is counted and leaves `row` alone.
    pub fn apply(&mut self, s: &FlowStart, row: &mut [f64; NUM_CONTEXT]) {
        if let Some(o) = s.outcome {
            self.count_outcome(s, o);
            return;
        }
        let admit = self.make_room(s.ts_us);
        let t = s.ts_us;
        let k = Keys::of(s);
        let (psrv_w, _) = self.count(k.psrv, t, admit, [false; SCALES]);
        let new_port = psrv_w.map(|w| w < RECENT);
        let (pair_w, pair_n) = self.count(k.pair, t, admit, new_port);
        let new_dst = pair_w.map(|w| w < RECENT);
        let (src_w, src_n) = self.count(k.src, t, admit, new_dst);
        // A group address is not a host: what many sources send it is
        // membership (IGMP, mDNS, SSDP), not load on one victim.
        const NONE: ([f64; SCALES], [f64; SCALES]) = ([0.0; SCALES], [0.0; SCALES]);
        let ((srv_w, srv_n), (dst_w, _), (dst_a, dst_r)) = if s.to_group() {
            (NONE, NONE, NONE)
        } else {
            (
                self.count(k.srv, t, admit, new_port),
                self.count(k.dst, t, admit, [false; SCALES]),
                self.read(k.dst_out, t),
            )
        };
        let (src_a, src_r) = self.read(k.src_out, t);
        let groups = [
            src_w, src_n, pair_w, pair_n, psrv_w, srv_w, srv_n, dst_w, src_a, src_r, dst_a, dst_r,
        ];
        for (out, v) in row.iter_mut().zip(groups.iter().flatten()) {
            *out = *v;
        }
        self.stats.starts += 1;
    }

    /// Counts an outcome: on the source's outcomes and, unless it is a group
    /// address, on the answering host's.
    fn count_outcome(&mut self, s: &FlowStart, o: Outcome) {
        let admit = self.make_room(s.ts_us);
        let k = Keys::of(s);
        let rejected = o == Outcome::Rejected;
        self.bump(k.src_out, s.ts_us, admit, rejected);
        if !s.to_group() {
            self.bump(k.dst_out, s.ts_us, admit, rejected);
        }
        self.stats.outcomes += 1;
    }

    /// The counts of `key` decayed to `t_us`, without counting anything
    /// (zeros for a key not kept; nothing is added).
    fn read(&mut self, key: u64, t_us: i64) -> ([f64; SCALES], [f64; SCALES]) {
        match self.map.get_mut(&key) {
            Some(d) => {
                d.decay_to(t_us);
                (d.w, d.n)
            }
            None => ([0.0; SCALES], [0.0; SCALES]),
        }
    }

    /// Decays `key` to `t_us` and adds one to its `n` (when `second`) or its
    /// `w`, adding the key when `admit` allows.
    fn bump(&mut self, key: u64, t_us: i64, admit: bool, second: bool) {
        if let Some(d) = self.entry(key, t_us, admit) {
            let counts = if second { &mut d.n } else { &mut d.w };
            for c in counts {
                *c += 1.0;
            }
        }
    }

    /// The statistics of `key` decayed to `t_us`; a key not yet kept is
    /// added only when `admit` is set, otherwise `None` (counted in
    /// [`ContextStats::refused`]).
    fn entry(&mut self, key: u64, t_us: i64, admit: bool) -> Option<&mut Damped> {
        let d = if admit {
            self.map.entry(key).or_insert(Damped {
                t_us,
                ..Damped::default()
            })
        } else if let Some(d) = self.map.get_mut(&key) {
            d
        } else {
            self.stats.refused += 1;
            return None;
        };
        d.decay_to(t_us);
        Some(d)
    }

    /// The counts (flows, new flows) of `key` decayed to `t_us` (zeros for
    /// a key not yet kept), then counts one flow (and a new one where `new`
    /// says so). A key not yet kept is added only when `admit` is set;
    /// otherwise it stays out (counted in [`ContextStats::refused`]).
    fn count(
        &mut self,
        key: u64,
        t_us: i64,
        admit: bool,
        new: [bool; SCALES],
    ) -> ([f64; SCALES], [f64; SCALES]) {
        let Some(d) = self.entry(key, t_us, admit) else {
            return ([0.0; SCALES], [0.0; SCALES]);
        };
        let before = (d.w, d.n);
        d.count(new);
        before
    }

    /// Sweeps when due, and frees room when full (emergency mode). Returns
    /// whether new keys may be added for this start: a full table frees a
    /// quarter at most once per second of packet time, and in between
    /// admits no new key (a spoofed flood, a new source per flow, then
    /// costs a lookup per start, not a scan).
    fn make_room(&mut self, t_us: i64) -> bool {
        let due = self.next_sweep_us.is_none_or(|at| t_us >= at);
        if due {
            self.next_sweep_us = Some(t_us.saturating_add(SWEEP_EVERY_US));
            self.remove_older_than(t_us.saturating_sub(self.cfg.retain_us), false);
            if self.stats.emergency && self.len() * 10 <= self.cfg.max_entries * 7 {
                self.stats.emergency = false;
            }
            self.shrink();
        }
        // Up to five new entries per start (two per outcome).
        if self.len() + 5 <= self.cfg.max_entries {
            return true;
        }
        if !self.stats.emergency {
            self.stats.emergency = true;
            self.stats.emergency_entries += 1;
        }
        if self.next_evict_us.is_some_and(|at| t_us < at) {
            return false;
        }
        self.next_evict_us = Some(t_us.saturating_add(EVICT_EVERY_US));
        self.remove_older_than(t_us.saturating_sub(self.cfg.retain_us), false);
        if self.len() + 5 > self.cfg.max_entries {
            let cutoff = self.quartile_touch_time();
            self.remove_older_than(cutoff.saturating_add(1), true);
        }
        self.len() + 5 <= self.cfg.max_entries
    }

    /// The touch time below which about a quarter of the entries lie (the
    /// value is what counts, so the result does not depend on map order).
    fn quartile_touch_time(&self) -> i64 {
        let mut ts: Vec<i64> = self.map.values().map(|d| d.t_us).collect();
        let k = ts.len() / 4;
        if ts.is_empty() {
            return i64::MIN;
        }
        let (_, v, _) = ts.select_nth_unstable(k);
        *v
    }

    /// Removes entries last touched before `cutoff_us`, counting them as
    /// evictions or expiries.
    fn remove_older_than(&mut self, cutoff_us: i64, evicting: bool) {
        let before = self.len();
        self.map.retain(|_, d| d.t_us >= cutoff_us);
        let gone = (before - self.len()) as u64;
        if evicting {
            self.stats.evictions += gone;
        } else {
            self.stats.expired += gone;
        }
    }
}

/// The context rows of flows started and not yet ended: a [`ContextTable`]
/// and the row it gave each start, by start id, until the flow ends and its
/// row is taken. What the runtime's context stage keeps, and what
/// `tapstream bench` times.
///
/// Rows live in a slab whose freed slots are reused last-freed first, so
/// the rows being written are the ones just read (in cache); the map from
/// start id to slot holds 16-byte entries.
#[derive(Debug, Default)]
pub struct ContextRows {
    table: ContextTable,
    /// Slot of each open flow's row in `slab`, by start id.
    open: HashMap<u64, usize>,
    slab: Vec<ContextRow>,
    /// Slots of `slab` not in use, the last freed last.
    free: Vec<usize>,
}

impl ContextRows {
    /// Host memory an open flow's row costs here at most: its id and slot in
    /// a hash table at most 7/8 full (after it grows, which deleted entries
    /// can bring forward, half of that), its row and free-list entry in
    /// vectors at most half full after they grow.
    pub const BYTES_PER_OPEN_FLOW: usize = 4 * (std::mem::size_of::<(u64, usize)>() + 1)
        + 2 * (std::mem::size_of::<ContextRow>() + std::mem::size_of::<usize>());

    /// No flow seen yet.
    pub fn new(cfg: ContextConfig) -> Self {
        ContextRows {
            table: ContextTable::new(cfg),
            ..ContextRows::default()
        }
    }

    /// Applies a flow's start and keeps its row until [`take`](Self::take);
    /// counts an outcome (which has no row).
    pub fn start(&mut self, s: &FlowStart) {
        let mut row = [0.0; NUM_CONTEXT];
        self.table.apply(s, &mut row);
        if s.outcome.is_some() {
            return;
        }
        let row = row.map(|v| v as f32);
        let slot = match self.free.pop() {
            Some(i) => {
                if let Some(r) = self.slab.get_mut(i) {
                    *r = row;
                }
                i
            }
            None => {
                self.slab.push(row);
                self.slab.len() - 1
            }
        };
        // An id is started once; were one started again, its first slot
        // is freed, not lost.
        if let Some(old) = self.open.insert(s.id, slot) {
            self.free.push(old);
        }
    }

    /// Whether the start with this id has been applied and its row not taken.
    pub fn has(&self, id: u64) -> bool {
        self.open.contains_key(&id)
    }

    /// The row of the flow with this start id, which has ended (`None`: its
    /// start was never applied).
    pub fn take(&mut self, id: u64) -> Option<ContextRow> {
        let slot = self.open.remove(&id)?;
        self.free.push(slot);
        self.slab.get(slot).copied()
    }

    /// The table's counters so far.
    pub fn stats(&self) -> ContextStats {
        self.table.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(id: u64, ts_s: f64, src: u8, dst: u8, dport: u16) -> FlowStart {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[198, 18, 0, src]);
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&[198, 18, 0, dst]);
        FlowStart {
            id,
            order: id,
            ts_us: (ts_s * 1e6) as i64,
            src: a,
            dst: b,
            dport,
            proto: 6,
            v6: false,
            outcome: None,
        }
    }

    fn get(row: &[f64; NUM_CONTEXT], name: &str) -> f64 {
        row[context_index(name).unwrap()]
    }

    #[test]
    fn names_follow_the_statistics_and_scales() {
        for (s, stat) in STATS.iter().enumerate() {
            for (k, scale) in SCALE_NAMES.iter().enumerate() {
                assert_eq!(
                    CONTEXT_FEATURES[s * SCALES + k],
                    format!("ctx_{stat}_{scale}")
                );
            }
        }
    }

    #[test]
    fn a_flow_sees_what_came_before_it_not_itself() {
        let mut t = ContextTable::new(ContextConfig::default());
        let mut row = [0.0; NUM_CONTEXT];
        t.apply(&start(1, 10.0, 1, 2, 22), &mut row);
        assert!(row.iter().all(|&v| v == 0.0));
        t.apply(&start(2, 10.0, 1, 2, 22), &mut row);
        assert_eq!(get(&row, "ctx_src_flows_1s"), 1.0);
        assert_eq!(get(&row, "ctx_psrv_flows_100s"), 1.0);
        assert_eq!(
            get(&row, "ctx_src_new_dsts_10s"),
            1.0,
            "the first flow was new"
        );
        assert_eq!(get(&row, "ctx_srv_new_srcs_10s"), 1.0);
        // One second later the 1 s scale has halved.
        t.apply(&start(3, 11.0, 1, 2, 23), &mut row);
        assert!((get(&row, "ctx_src_flows_1s") - 1.0).abs() < 1e-12);
        assert!((get(&row, "ctx_pair_flows_10s") - 2.0 * (-0.1f64).exp2()).abs() < 1e-12);
        assert_eq!(get(&row, "ctx_psrv_flows_1s"), 0.0, "port 23 is new");
        // The new port counted as a new port of the pair.
        t.apply(&start(4, 11.0, 1, 2, 23), &mut row);
        assert!(get(&row, "ctx_pair_new_ports_1s") > 1.0);
    }

    #[test]
    fn a_steady_rate_reads_about_rate_over_lambda_ln2() {
        let mut t = ContextTable::new(ContextConfig::default());
        let mut row = [0.0; NUM_CONTEXT];
        for i in 0..20_000u64 {
            t.apply(&start(i, i as f64 * 0.01, 1, 2, 80), &mut row);
        }
        let expect = 100.0 / (0.1 * std::f64::consts::LN_2);
        let got = get(&row, "ctx_src_flows_10s");
        assert!((got - expect).abs() / expect < 0.01, "{got} vs {expect}");
    }

    #[test]
    fn a_group_address_is_not_a_victim_host() {
        let mut t = ContextTable::new(ContextConfig::default());
        let mut row = [0.0; NUM_CONTEXT];
        // 50 hosts report membership of 239.1.1.1 (IGMP), then one host
        // sends to it a second time.
        for src in 1..=50u8 {
            let mut s = start(u64::from(src), 1.0, src, 0, 0);
            s.dst[..4].copy_from_slice(&[239, 1, 1, 1]);
            s.proto = 2;
            assert!(s.to_group());
            t.apply(&s, &mut row);
        }
        let mut s = start(51, 1.0, 1, 0, 0);
        s.dst[..4].copy_from_slice(&[239, 1, 1, 1]);
        s.proto = 2;
        t.apply(&s, &mut row);
        for name in [
            "ctx_srv_flows_1s",
            "ctx_srv_new_srcs_1s",
            "ctx_dst_flows_1s",
        ] {
            assert_eq!(get(&row, name), 0.0, "{name}");
        }
        // The sender's own statistics still count.
        assert_eq!(get(&row, "ctx_src_flows_1s"), 1.0);
        assert_eq!(get(&row, "ctx_pair_flows_1s"), 1.0);
        assert_eq!(get(&row, "ctx_psrv_flows_1s"), 1.0);
        // Group and broadcast addresses, and what is not one.
        let to = |dst: &[u8], v6: bool| {
            let mut s = start(0, 0.0, 1, 0, 0);
            s.dst = [0; 16];
            s.dst[..dst.len()].copy_from_slice(dst);
            s.v6 = v6;
            s.to_group()
        };
        assert!(to(&[224, 0, 0, 251], false));
        assert!(to(&[239, 255, 255, 250], false));
        assert!(to(&[255, 255, 255, 255], false));
        assert!(to(
            &[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfb],
            true
        ));
        assert!(!to(&[223, 255, 255, 255], false));
        assert!(!to(&[240, 0, 0, 1], false));
        assert!(!to(&[198, 18, 0, 255], false));
        assert!(!to(&[0xfe, 0x80], true));
        // An IPv6 address is not read as IPv4: 2001:… starts with 0x20.
        assert!(!to(&[0xe0, 0x01], true));
    }

    fn outcome(s: FlowStart, o: Outcome) -> FlowStart {
        FlowStart {
            outcome: Some(o),
            ..s
        }
    }

    #[test]
    fn outcomes_count_for_the_source_and_the_answering_host_and_take_no_row() {
        let mut t = ContextTable::new(ContextConfig::default());
        let mut row = [7.0; NUM_CONTEXT];
        // Host 1 probes 2's ports 1..=10: two answer, eight are refused.
        for port in 1..=10u16 {
            let s = start(u64::from(port), 1.0, 1, 2, port);
            t.apply(&s, &mut row);
            let o = if port <= 2 {
                Outcome::Answered
            } else {
                Outcome::Rejected
            };
            let mut untouched = [7.0; NUM_CONTEXT];
            t.apply(&outcome(s, o), &mut untouched);
            assert!(untouched.iter().all(|&v| v == 7.0), "an outcome has no row");
        }
        t.apply(&start(11, 1.0, 1, 2, 11), &mut row);
        assert_eq!(get(&row, "ctx_src_flows_10s"), 10.0);
        assert_eq!(get(&row, "ctx_src_answered_10s"), 2.0);
        assert_eq!(get(&row, "ctx_src_rejected_10s"), 8.0);
        assert_eq!(get(&row, "ctx_dst_answered_100s"), 2.0);
        assert_eq!(get(&row, "ctx_dst_rejected_1s"), 8.0);
        assert_eq!(t.stats().starts, 11);
        assert_eq!(t.stats().outcomes, 10);
        // Another source sees host 2's outcomes, not its own.
        t.apply(&start(12, 2.0, 3, 2, 80), &mut row);
        assert_eq!(get(&row, "ctx_src_rejected_1s"), 0.0);
        assert_eq!(get(&row, "ctx_dst_rejected_1s"), 4.0, "one half-life later");
        // A group destination reads no destination outcomes.
        let mut g = start(13, 2.0, 1, 0, 0);
        g.dst[..4].copy_from_slice(&[239, 1, 1, 1]);
        t.apply(&g, &mut row);
        assert_eq!(get(&row, "ctx_dst_rejected_1s"), 0.0);
        assert_eq!(get(&row, "ctx_src_rejected_1s"), 4.0);
    }

    #[test]
    fn version_2_features_come_first_and_outcomes_since_version_3() {
        assert_eq!(context_index("ctx_dst_flows_100s"), Some(23));
        assert_eq!(context_feature_since(23), Some(2));
        assert_eq!(context_feature_since(24), Some(3));
        assert_eq!(CONTEXT_FEATURES[24], "ctx_src_answered_1s");
        assert_eq!(context_feature_since(NUM_CONTEXT), None);
    }

    #[test]
    fn out_of_order_times_never_decay_backwards() {
        let mut t = ContextTable::new(ContextConfig::default());
        let mut row = [0.0; NUM_CONTEXT];
        t.apply(&start(1, 10.0, 1, 2, 80), &mut row);
        t.apply(&start(2, 9.0, 1, 2, 80), &mut row);
        assert_eq!(get(&row, "ctx_src_flows_1s"), 1.0);
    }

    #[test]
    fn a_full_table_evicts_a_counted_quarter_and_recovers() {
        let cfg = ContextConfig {
            max_entries: 400,
            retain_us: ContextConfig::DEFAULT_RETAIN_US,
        };
        let mut t = ContextTable::new(cfg);
        let mut row = [0.0; NUM_CONTEXT];
        for i in 0..2_000u64 {
            // A new source every start: a spoofed flood.
            t.apply(
                &start(i, i as f64 * 0.001, (i % 250) as u8, 2, (i % 7000) as u16),
                &mut row,
            );
            assert!(t.stats().entries as usize <= cfg.max_entries);
        }
        let s = t.stats();
        assert!(s.evictions > 0 && s.emergency_entries >= 1, "{s:?}");
        // Long after, the sweep empties it and the mode ends.
        t.apply(&start(9_999, 5_000.0, 1, 2, 80), &mut row);
        let s = t.stats();
        assert!(!s.emergency && s.entries == 5, "{s:?}");
    }
}
