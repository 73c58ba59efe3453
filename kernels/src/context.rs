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
//! Entries are capped ([`ContextConfig::max_entries`], from a memcap). An
//! entry not touched for [`ContextConfig::retain_us`] has *expired*: it
//! reads as a key never seen, whether or not it has been removed yet, so no
//! value depends on when memory is reclaimed. The table starts at about 1 MiB;
//! when a start finds it at its load limit, it is rebuilt without its
//! expired entries, and doubles when what it keeps needs more room, up to
//! the allocation the cap allows. It does not shrink (the next flood needs
//! the room again). A table that is full at the cap enters
//! *emergency mode*: it drops the least recently touched quarter of its
//! entries (counted as evictions), at most once per second of packet time;
//! in between, new keys are not added (counted as refused; their flows read
//! zeros for them, as for a host never seen). It leaves the mode at a sweep
//! that finds it at most 70 % full. All of this is driven by the starts'
//! packet time, so it too is the same on every run.

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
    /// Entries untouched for longer than this (packet time, µs) have
    /// expired: they read as keys never seen, and sweeps remove them.
    pub retain_us: i64,
}

impl ContextConfig {
    /// Default memcap: 64 MiB.
    pub const DEFAULT_MEMCAP_MIB: usize = 64;
    /// Default retention: 1,000 s, ten half-lives of the slowest scale
    /// (its counts have fallen below 0.1 %).
    pub const DEFAULT_RETAIN_US: i64 = 1_000_000_000;

    /// Host memory one table slot costs: a key and its statistics (one
    /// cache line) and its tag byte.
    pub const BYTES_PER_SLOT: usize = std::mem::size_of::<Slot>() + 1;

    /// The limits for a memcap of `mib` MiB: at `max_entries` the table
    /// holds the slots the memcap pays for, at most half of them used (a
    /// rebuild briefly holds the old slots beside the new).
    pub fn with_memcap_mib(mib: usize) -> Self {
        let slots = mib.saturating_mul(1 << 20) / Self::BYTES_PER_SLOT;
        ContextConfig {
            max_entries: Slots::limit(slots).max(12),
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
    /// The counts decayed to `t_us` (never backwards), not yet stored:
    /// the callers store what they add to them in one go.
    #[inline]
    fn decayed(&self, t_us: i64) -> ([f64; SCALES], [f64; SCALES]) {
        let (mut w, mut n) = (self.w, self.n);
        if t_us > self.t_us {
            let dt = (t_us - self.t_us) as f64 * 1e-6;
            for ((w, n), l) in w.iter_mut().zip(n.iter_mut()).zip(LAMBDAS) {
                let d = (-l * dt).exp2();
                *w *= d;
                *n *= d;
            }
        }
        (w, n)
    }

    /// Decays to `t_us` and adds `add_w` and `add_n` to the counts; returns
    /// the decayed counts before the addition.
    #[inline]
    fn add(
        &mut self,
        t_us: i64,
        add_w: [f64; SCALES],
        add_n: [f64; SCALES],
    ) -> ([f64; SCALES], [f64; SCALES]) {
        let (w, n) = self.decayed(t_us);
        self.t_us = self.t_us.max(t_us);
        for i in 0..SCALES {
            if let (Some(dw), Some(dn), Some(aw), Some(an)) = (
                self.w.get_mut(i),
                self.n.get_mut(i),
                add_w.get(i),
                add_n.get(i),
            ) {
                *dw = w.get(i).copied().unwrap_or(0.0) + aw;
                *dn = n.get(i).copied().unwrap_or(0.0) + an;
            }
        }
        (w, n)
    }
}

/// A row's element type: the f64 the table computes, or the f32 a model
/// reads (rounded once, as `as f32` does).
trait RowValue: Copy {
    fn of(v: f64) -> Self;
}

impl RowValue for f64 {
    fn of(v: f64) -> Self {
        v
    }
}

impl RowValue for f32 {
    fn of(v: f64) -> Self {
        v as f32
    }
}

/// One at every scale.
const ONES: [f64; SCALES] = [1.0; SCALES];
/// Zero at every scale.
const ZEROS: [f64; SCALES] = [0.0; SCALES];

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
    pair: u64,
    psrv: u64,
    /// The source's outcomes: `w` answered, `n` rejected.
    src_out: u64,
    /// The destination's keys: `None` when it is a group address. What many
    /// sources send a group is membership (IGMP, mDNS, SSDP), not load on
    /// one victim, so a group gets no destination, service or outcome
    /// counts (schema version 2).
    dst: Option<u64>,
    srv: Option<u64>,
    /// The destination's outcomes: `w` answers it gave, `n` rejections.
    dst_out: Option<u64>,
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
        // One mix per key at most: `hs` and `hd` are mixed already, and a
        // pair or socket takes the source rotated so that A → B is not
        // B → A. Each key is a bijection of one address word (or of the
        // service) with the rest fixed, so the promise above holds.
        let (rs, sv) = (hs.rotate_left(32), service << 40);
        let host_dst = !s.to_group();
        Keys {
            src: hs ^ SRC,
            pair: mix(rs ^ hd ^ PAIR),
            psrv: mix(rs ^ hd ^ PSRV ^ sv),
            src_out: hs ^ SRC_OUT,
            dst: host_dst.then_some(hd ^ DST),
            srv: host_dst.then(|| mix(hd ^ SRV ^ service)),
            dst_out: host_dst.then_some(hd ^ DST_OUT),
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

/// Whether an entry last touched at `touched_us` has expired by `t_us`:
/// untouched for longer than the retention time. An expired entry reads as
/// a key never seen, whether or not a rebuild has removed it yet, so when
/// memory is reclaimed changes no value.
fn expired(retain_us: i64, touched_us: i64, t_us: i64) -> bool {
    touched_us < t_us.saturating_sub(retain_us)
}

/// The touch time at or below which about a quarter of `ts` lie (the value
/// is what counts, so the result does not depend on slot order).
fn quartile(ts: &mut [i64]) -> i64 {
    let k = ts.len() / 4;
    if ts.is_empty() {
        return i64::MIN;
    }
    let (_, v, _) = ts.select_nth_unstable(k);
    *v
}

/// One slot of the table: a key's fingerprint and its statistics, in one
/// cache line.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C, align(64))]
struct Slot {
    key: u64,
    d: Damped,
}

/// Where a key is, or would go, in [`Slots`].
enum Probe {
    Found(usize),
    Vacant(usize),
    /// No empty slot on the way (never at the load the table keeps).
    Full,
}

/// A slot's tag: 0 when it is empty, else the low byte of its key's
/// fingerprint (at least 1; the home slot comes from the high bits).
fn tag(key: u64) -> u8 {
    (key as u8).max(1)
}

/// Asks Linux to back `v`'s allocation with huge pages (where transparent
/// huge pages are `always` or `madvise`), before its pages are first
/// touched. A start's keys land on random pages
/// of a table of tens of MiB; with 4 KiB pages nearly every lookup also
/// misses the TLB.
fn huge_pages<T>(v: &mut Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = v.capacity().saturating_mul(std::mem::size_of::<T>());
        let start = v.as_mut_ptr() as usize;
        // madvise wants a page-aligned start; advise the whole 2 MiB
        // regions inside the allocation.
        let first = start.next_multiple_of(HUGE);
        let end = start.saturating_add(bytes) / HUGE * HUGE;
        if end > first {
            // SAFETY: the range lies inside `v`'s allocation, and
            // MADV_HUGEPAGE changes how it is backed, never its contents.
            unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

/// The table's storage: open addressing with linear probing over
/// one-cache-line slots, keyed by fingerprint (already mixed: its high
/// bits scaled to the table's size are the home slot, so any size works
/// and the memcap is used to the slot), with a byte per slot beside them
/// that says whether it is empty and, if not, 8 more bits of its key.
///
/// Why not `hashbrown` (used until 2026-12-07): a start touches seven keys
/// that in a flood are mostly not in cache. Here a key found costs one
/// slot's cache line (hashbrown reads a control group and a bucket, two),
/// and the lines of the starts a little ahead are requested before they are
/// used ([`Slots::prefetch`], [`ContextRows::start_all`]), which
/// hashbrown's API cannot do. A key not kept is answered by the tags alone
/// (a sixty-fourth of the slots' bytes, so mostly in cache), as by
/// hashbrown's control bytes; without them a spoofed flood past the memcap
/// read two or three slots from memory per missed key (criterion
/// `spoofed_flood_past_memcap`, 2-core Xeon: 612 ms without tags, 442 ms
/// with them, 466 ms with hashbrown).
#[derive(Debug, Default)]
struct Slots {
    tags: Vec<u8>,
    slots: Vec<Slot>,
    len: usize,
}

impl Slots {
    /// An empty table of `cap` slots (at least one).
    fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        let mut slots = Vec::with_capacity(cap);
        huge_pages(&mut slots);
        slots.resize(cap, Slot::default());
        Slots {
            tags: vec![0; cap],
            slots,
            len: 0,
        }
    }

    fn cap(&self) -> usize {
        self.tags.len()
    }

    /// Entries a table of `cap` slots holds at most: half full, linear
    /// probing takes about 1.5 slots to find a key and 2.5 to miss one (at
    /// 3/4, 8.5 to miss: the stage took 4.7–4.9 s instead of 4.1–4.7 s in
    /// `tests/flood.rs`'s spoofed flood, where most lookups miss).
    fn limit(cap: usize) -> usize {
        cap / 2
    }

    fn home(&self, key: u64) -> usize {
        // Lemire's multiply-shift: the high bits of key × cap, below cap.
        ((u128::from(key) * self.cap() as u128) >> 64) as usize
    }

    /// The slot after `i`, wrapping at the end.
    fn next(&self, i: usize) -> usize {
        if i + 1 >= self.cap() {
            0
        } else {
            i + 1
        }
    }

    /// Slots from `from` forward to `to`, wrapping.
    fn dist(&self, from: usize, to: usize) -> usize {
        if to >= from {
            to - from
        } else {
            to + self.cap() - from
        }
    }

    /// Asks the CPU for `key`'s home tag and slot now, so that the lookup a
    /// little later finds them in cache.
    #[inline]
    fn prefetch(&self, key: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let i = self.home(key);
            if let (Some(t), Some(s)) = (self.tags.get(i), self.slots.get(i)) {
                // SAFETY: a prefetch reads nothing the program sees and
                // never faults; the addresses are elements of `self.tags`
                // and `self.slots`.
                unsafe {
                    _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(t).cast());
                    _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(s).cast());
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = key;
    }

    fn probe(&self, key: u64) -> Probe {
        let want = tag(key);
        let mut i = self.home(key);
        for _ in 0..self.cap() {
            match self.tags.get(i) {
                Some(0) => return Probe::Vacant(i),
                Some(&t) if t == want && self.slots.get(i).is_some_and(|s| s.key == key) => {
                    return Probe::Found(i)
                }
                Some(_) => i = self.next(i),
                None => break,
            }
        }
        Probe::Full
    }

    /// The entry in slot `i`, if it is full.
    fn get_mut(&mut self, i: usize) -> Option<&mut Slot> {
        match self.tags.get(i) {
            Some(t) if *t != 0 => self.slots.get_mut(i),
            _ => None,
        }
    }

    /// Puts an entry whose key is not in the table yet.
    fn insert(&mut self, key: u64, d: Damped) {
        if let Probe::Vacant(i) = self.probe(key) {
            self.put(i, key, d);
        }
    }

    /// Fills the empty slot `i` (from [`Probe::Vacant`]).
    fn put(&mut self, i: usize, key: u64, d: Damped) -> Option<&mut Damped> {
        let (t, s) = (self.tags.get_mut(i)?, self.slots.get_mut(i)?);
        *t = tag(key);
        *s = Slot { key, d };
        self.len += 1;
        Some(&mut s.d)
    }

    /// Keeps the entries `keep` accepts and empties the others' slots, in
    /// one pass and in place. Walking from an empty slot, an entry moves
    /// only where an emptied slot now lies between its home and it, and
    /// then to the first empty slot from its home, so every lookup still
    /// reaches it; most entries (at home, at this load) stay where they are.
    fn retain(&mut self, mut keep: impl FnMut(&Slot) -> bool) {
        let Some(start) = self.tags.iter().position(|&t| t == 0) else {
            // Full (never at the load the table keeps): rebuilt afresh.
            self.move_to(self.cap(), keep);
            return;
        };
        let (mut last_empty, mut i) = (start, start);
        for _ in 1..self.cap() {
            i = self.next(i);
            let Some(s) = self.get_mut(i).copied() else {
                last_empty = i;
                continue;
            };
            if !keep(&s) {
                self.take(i);
                last_empty = i;
                continue;
            }
            // An empty slot in [home, i) is the last one seen, if any.
            let home = self.home(s.key);
            if self.dist(home, last_empty) < self.dist(home, i) {
                self.take(i);
                self.insert(s.key, s.d);
                last_empty = i;
            }
        }
    }

    /// Moves the entries `keep` accepts into a fresh table of `cap` slots.
    fn move_to(&mut self, cap: usize, mut keep: impl FnMut(&Slot) -> bool) {
        let old = std::mem::replace(self, Slots::new(cap));
        for s in old.entries().filter(|s| keep(s)) {
            self.insert(s.key, s.d);
        }
    }

    /// Empties slot `i`.
    fn take(&mut self, i: usize) {
        if let Some(t) = self.tags.get_mut(i).filter(|t| **t != 0) {
            *t = 0;
            self.len -= 1;
        }
    }

    /// The full slots.
    fn entries(&self) -> impl Iterator<Item = &Slot> {
        self.tags
            .iter()
            .zip(&self.slots)
            .filter(|(t, _)| **t != 0)
            .map(|(_, s)| s)
    }
}

/// The keyed statistics and their limits. Applying the same starts in the
/// same order gives the same rows, bit for bit.
#[derive(Debug, Default)]
pub struct ContextTable {
    cfg: ContextConfig,
    /// Every key's statistics by the key's fingerprint, in one table (see
    /// the module docs on its size).
    slots: Slots,
    /// The largest size `cfg.max_entries` needs, slots.
    max_slots: usize,
    stats: ContextStats,
    /// Packet time of the next sweep in emergency mode, µs.
    next_sweep_us: Option<i64>,
    /// A full table frees room again from this packet time on, µs.
    next_evict_us: Option<i64>,
}

/// A table in emergency mode is swept this often in packet time (µs), to
/// leave the mode once expiry has freed room.
const SWEEP_EVERY_US: i64 = 60_000_000;
/// A full table frees room at most this often in packet time (µs).
const EVICT_EVERY_US: i64 = 1_000_000;
/// The table's first size, slots (about 1 MiB), unless the memcap is smaller.
const MIN_SLOTS: usize = 16_384;
/// New entries one start adds at most (two for an outcome).
const NEW_PER_START: usize = 5;

impl ContextTable {
    /// An empty table.
    pub fn new(cfg: ContextConfig) -> Self {
        // The fewest slots whose load limit holds `max_entries`.
        let max_slots = cfg.max_entries.saturating_mul(2).max(1);
        ContextTable {
            cfg,
            slots: Slots::new(MIN_SLOTS.min(max_slots)),
            max_slots,
            ..ContextTable::default()
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
        self.slots.len
    }

    /// Entries the table may hold at its present size.
    fn room(&self) -> usize {
        Slots::limit(self.slots.cap()).min(self.cfg.max_entries)
    }

    /// Applies one start: writes the flow's context row into `row` (what
    /// came before it), then counts the flow. An outcome
    /// ([`FlowStart::outcome`]) is counted and leaves `row` alone.
    pub fn apply(&mut self, s: &FlowStart, row: &mut [f64; NUM_CONTEXT]) {
        self.apply_keyed(s, &Keys::of(s), row);
    }

    /// [`apply`](Self::apply) with the start's keys already computed, into
    /// a row of f64 or (what the stage keeps) f32.
    #[inline]
    fn apply_keyed<T: RowValue>(&mut self, s: &FlowStart, k: &Keys, row: &mut [T; NUM_CONTEXT]) {
        if let Some(o) = s.outcome {
            self.count_outcome(s, k, o);
            return;
        }
        let admit = self.make_room(s.ts_us);
        let t = s.ts_us;
        let (psrv_w, _) = self.count(k.psrv, t, admit, [false; SCALES]);
        let new_port = psrv_w.map(|w| w < RECENT);
        let (pair_w, pair_n) = self.count(k.pair, t, admit, new_port);
        let new_dst = pair_w.map(|w| w < RECENT);
        let (src_w, src_n) = self.count(k.src, t, admit, new_dst);
        // Zeros for a group destination (no keys).
        const NONE: ([f64; SCALES], [f64; SCALES]) = (ZEROS, ZEROS);
        let (srv_w, srv_n) = k
            .srv
            .map_or(NONE, |key| self.count(key, t, admit, new_port));
        let (dst_w, _) = k
            .dst
            .map_or(NONE, |key| self.count(key, t, admit, [false; SCALES]));
        let (dst_a, dst_r) = k.dst_out.map_or(NONE, |key| self.read(key, t));
        let (src_a, src_r) = self.read(k.src_out, t);
        let groups = [
            src_w, src_n, pair_w, pair_n, psrv_w, srv_w, srv_n, dst_w, src_a, src_r, dst_a, dst_r,
        ];
        for (out, v) in row.iter_mut().zip(groups.iter().flatten()) {
            *out = T::of(*v);
        }
        self.stats.starts += 1;
    }

    /// Counts an outcome: on the source's outcomes and, unless it is a group
    /// address, on the answering host's.
    fn count_outcome(&mut self, s: &FlowStart, k: &Keys, o: Outcome) {
        let admit = self.make_room(s.ts_us);
        let rejected = o == Outcome::Rejected;
        if let Some(key) = k.dst_out {
            self.bump(key, s.ts_us, admit, rejected);
        }
        self.bump(k.src_out, s.ts_us, admit, rejected);
        self.stats.outcomes += 1;
    }

    /// Asks the CPU for the slots `s` will touch, so that applying a run of
    /// starts waits for memory once per few starts, not once per key: a
    /// flood's keys are mostly not in cache.
    /// A start touches all of its keys ([`apply_keyed`](Self::apply_keyed)),
    /// an outcome only the outcome keys ([`count_outcome`](Self::count_outcome)).
    fn prefetch(&self, s: &FlowStart, k: &Keys) {
        let counted = [Some(k.psrv), Some(k.pair), Some(k.src), k.srv, k.dst];
        let counted = counted.iter().filter(|_| s.outcome.is_none());
        for key in counted.chain(&[Some(k.src_out), k.dst_out]).flatten() {
            self.slots.prefetch(*key);
        }
    }

    /// The counts of `key` decayed to `t_us`, without counting anything
    /// (zeros for a key not kept or expired; nothing is added).
    fn read(&mut self, key: u64, t_us: i64) -> ([f64; SCALES], [f64; SCALES]) {
        let Probe::Found(i) = self.slots.probe(key) else {
            return (ZEROS, ZEROS);
        };
        let retain = self.cfg.retain_us;
        match self.slots.get_mut(i) {
            Some(s) if !expired(retain, s.d.t_us, t_us) => s.d.add(t_us, ZEROS, ZEROS),
            _ => (ZEROS, ZEROS),
        }
    }

    /// Decays `key` to `t_us` and adds one to its `n` (when `second`) or its
    /// `w`, adding the key when `admit` allows.
    fn bump(&mut self, key: u64, t_us: i64, admit: bool, second: bool) {
        let (w, n) = if second { (ZEROS, ONES) } else { (ONES, ZEROS) };
        if let Some(d) = self.entry(key, t_us, admit) {
            d.add(t_us, w, n);
        }
    }

    /// The statistics of `key` (an expired entry starts again from zero,
    /// counted as expired); a key not yet kept is added only when `admit`
    /// is set, otherwise `None` (counted in [`ContextStats::refused`]).
    #[inline]
    fn entry(&mut self, key: u64, t_us: i64, admit: bool) -> Option<&mut Damped> {
        let fresh = Damped {
            t_us,
            ..Damped::default()
        };
        let retain = self.cfg.retain_us;
        match self.slots.probe(key) {
            Probe::Found(i) => {
                let s = self.slots.get_mut(i)?;
                if expired(retain, s.d.t_us, t_us) {
                    self.stats.expired += 1;
                    s.d = fresh;
                }
                Some(&mut s.d)
            }
            Probe::Vacant(i) if admit => self.slots.put(i, key, fresh),
            Probe::Vacant(_) | Probe::Full => {
                self.stats.refused += 1;
                None
            }
        }
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
        match self.entry(key, t_us, admit) {
            Some(d) => d.add(t_us, ONES, new.map(|b| if b { 1.0 } else { 0.0 })),
            None => (ZEROS, ZEROS),
        }
    }

    /// Makes room for this start's new keys and returns whether they may be
    /// added. A table at its load limit is rebuilt without its expired
    /// entries, twice as large if what it keeps needs that (up to the
    /// memcap). At the memcap, such a rebuild runs at most once per second
    /// of packet time; if it frees less than a quarter, the table enters
    /// emergency mode and drops its least recently touched quarter, and
    /// until the next second admits no new key (a spoofed flood, a new
    /// source per start, then costs lookups, not rebuilds). In emergency
    /// mode it is also swept every minute of packet time, to leave the mode
    /// once expiry has freed room.
    fn make_room(&mut self, t_us: i64) -> bool {
        if self.stats.emergency && self.next_sweep_us.is_none_or(|at| t_us >= at) {
            self.next_sweep_us = Some(t_us.saturating_add(SWEEP_EVERY_US));
            self.rebuild(t_us, None);
            if self.len() * 10 <= self.cfg.max_entries * 7 {
                self.stats.emergency = false;
            }
        }
        if self.len() + NEW_PER_START <= self.room() {
            return true;
        }
        if self.slots.cap() < self.max_slots {
            self.rebuild(t_us, None);
            if self.len() + NEW_PER_START <= self.room() {
                return true;
            }
        }
        // Full at the memcap.
        if self.next_evict_us.is_some_and(|at| t_us < at) {
            self.enter_emergency(t_us);
            return false;
        }
        self.next_evict_us = Some(t_us.saturating_add(EVICT_EVERY_US));
        // One read pass decides, one rebuild acts.
        let retain = self.cfg.retain_us;
        let mut live: Vec<i64> = self
            .slots
            .entries()
            .map(|s| s.d.t_us)
            .filter(|&touched| !expired(retain, touched, t_us))
            .collect();
        if live.len() * 4 <= self.room() * 3 {
            self.rebuild(t_us, None);
            return true;
        }
        self.enter_emergency(t_us);
        let cutoff = quartile(&mut live);
        self.rebuild(t_us, Some(cutoff));
        self.len() + NEW_PER_START <= self.room()
    }

    fn enter_emergency(&mut self, t_us: i64) {
        if !self.stats.emergency {
            self.stats.emergency = true;
            self.stats.emergency_entries += 1;
            self.next_sweep_us = Some(t_us.saturating_add(SWEEP_EVERY_US));
        }
    }

    /// Rebuilds the table without its expired entries (counted as expired)
    /// and, with `evict_upto`, without those last touched at or before it
    /// (counted as evictions), in place. It keeps its size, or doubles when
    /// what it keeps would fill more than half its load limit (up to the
    /// memcap's size); it never shrinks, as Suricata's flow hash does not:
    /// the next flood needs the room again, and rebuilding into fresh pages
    /// costs more than lookups in a sparse table.
    fn rebuild(&mut self, t_us: i64, evict_upto: Option<i64>) {
        let retain = self.cfg.retain_us;
        let (mut expired_n, mut evicted_n) = (0u64, 0u64);
        self.slots.retain(|s| {
            if expired(retain, s.d.t_us, t_us) {
                expired_n += 1;
            } else if evict_upto.is_some_and(|c| s.d.t_us <= c) {
                evicted_n += 1;
            } else {
                return true;
            }
            false
        });
        let mut cap = self.slots.cap();
        while cap < self.max_slots && self.len() * 2 > Slots::limit(cap) {
            cap = cap.saturating_mul(2).min(self.max_slots);
        }
        if cap != self.slots.cap() {
            self.slots.move_to(cap, |_| true);
        }
        self.stats.expired += expired_n;
        self.stats.evictions += evicted_n;
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
        self.start_keyed(s, &Keys::of(s));
    }

    fn start_keyed(&mut self, s: &FlowStart, k: &Keys) {
        if let Some(o) = s.outcome {
            self.table.count_outcome(s, k, o);
            return;
        }
        // The row is written in place: in its freed slot, or a new one.
        let slot = match self.free.pop() {
            Some(i) if i < self.slab.len() => i,
            _ => {
                self.slab.push([0.0; NUM_CONTEXT]);
                self.slab.len() - 1
            }
        };
        if let Some(row) = self.slab.get_mut(slot) {
            self.table.apply_keyed(s, k, row);
        }
        // An id is started once; were one started again, its first slot
        // is freed, not lost.
        if let Some(old) = self.open.insert(s.id, slot) {
            self.free.push(old);
        }
    }

    /// Applies a run of starts in order, as [`start`](Self::start) does
    /// each; the slots of the starts a little ahead are fetched meanwhile.
    pub fn start_all(&mut self, starts: &[FlowStart]) {
        /// Starts ahead whose slots are fetched (up to fourteen lines in
        /// flight, about what a core's fill buffers hold); a ring keeps
        /// their keys until they are applied.
        const AHEAD: usize = 2;
        let mut ring = [None; AHEAD];
        for (i, s) in starts.iter().enumerate() {
            let ahead = starts.get(i + AHEAD).map(|next| {
                let k = Keys::of(next);
                self.table.prefetch(next, &k);
                k
            });
            let k = ring
                .get_mut(i % AHEAD)
                .and_then(|r| std::mem::replace(r, ahead))
                .unwrap_or_else(|| Keys::of(s));
            self.start_keyed(s, &k);
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
    fn a_run_of_starts_gives_the_rows_one_at_a_time_gives() {
        // A small table, so the run crosses rebuilds and emergency mode.
        let cfg = ContextConfig {
            max_entries: 3_000,
            retain_us: 5_000_000,
        };
        // 20 s of starts, then a few after a minute's pause (a sweep).
        let starts: Vec<FlowStart> = (0..20_100u64)
            .map(|i| {
                let ts = if i < 20_000 {
                    i as f64 * 0.001
                } else {
                    100.0 + i as f64 * 0.001
                };
                let s = start(i, ts, (i % 97) as u8, (i % 13) as u8, (i % 50) as u16);
                match i % 5 {
                    0 => outcome(s, Outcome::Rejected),
                    1 => outcome(s, Outcome::Answered),
                    2 => FlowStart {
                        dst: [224, 0, 0, 251, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                        ..s
                    },
                    _ => FlowStart {
                        src: [
                            198,
                            19,
                            (i >> 8) as u8,
                            i as u8,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                        ],
                        ..s
                    },
                }
            })
            .collect();
        let (mut one, mut run) = (ContextRows::new(cfg), ContextRows::new(cfg));
        for s in &starts {
            one.start(s);
        }
        for chunk in starts.chunks(777) {
            run.start_all(chunk);
        }
        assert_eq!(one.stats(), run.stats());
        assert!(
            one.stats().evictions > 0 && one.stats().expired > 0,
            "{:?}",
            one.stats()
        );
        for s in starts.iter().filter(|s| s.outcome.is_none()) {
            let (a, b) = (one.take(s.id), run.take(s.id));
            assert!(a.is_some());
            assert_eq!(
                a.map(|r| r.map(f32::to_bits)),
                b.map(|r| r.map(f32::to_bits))
            );
        }
    }

    #[test]
    fn the_largest_table_fits_the_memcap_tags_included() {
        for mib in [1, 3, 16, 64, 1000] {
            let cfg = ContextConfig::with_memcap_mib(mib);
            let t = ContextTable::new(cfg);
            let bytes = t.max_slots * ContextConfig::BYTES_PER_SLOT;
            assert!(bytes <= mib << 20, "{mib} MiB: {bytes} bytes");
            assert_eq!(Slots::limit(t.max_slots), cfg.max_entries);
        }
        // What the README and FEATURES.md say.
        assert_eq!(ContextConfig::default().max_entries, 516_222);
    }

    #[test]
    fn emptying_slots_in_place_keeps_every_other_key_reachable() {
        // Keys crowded onto a few homes near the end of a small table, so
        // that clusters wrap around; each round keeps a pseudo-random part.
        let mut r = 0u64;
        let mut next = || {
            r = mix(r);
            r
        };
        for round in 0..200 {
            let mut t = Slots::new(64);
            let mut keys = Vec::new();
            for i in 0..32u64 {
                let home = 56 + next() % 12; // 56..67, wrapping past 63
                let key = ((home & 63) << 58) | (next() >> 6);
                t.insert(
                    key,
                    Damped {
                        t_us: i as i64,
                        ..Damped::default()
                    },
                );
                if matches!(t.probe(key), Probe::Found(_)) {
                    keys.push(key);
                }
            }
            let drop: Vec<bool> = keys.iter().map(|_| next() % 3 == 0).collect();
            let dropped: std::collections::HashSet<u64> = keys
                .iter()
                .zip(&drop)
                .filter(|(_, d)| **d)
                .map(|(k, _)| *k)
                .collect();
            t.retain(|s| !dropped.contains(&s.key));
            assert_eq!(t.len, keys.len() - dropped.len(), "round {round}");
            assert_eq!(t.entries().count(), t.len, "round {round}");
            for (i, k) in keys.iter().enumerate() {
                let found = match t.probe(*k) {
                    Probe::Found(j) => t.get_mut(j).map(|s| s.d.t_us),
                    _ => None,
                };
                if dropped.contains(k) {
                    assert_eq!(found, None, "round {round}: {k:x} dropped");
                } else {
                    assert!(
                        found.is_some(),
                        "round {round}: {k:x} kept, not found ({i})"
                    );
                }
            }
        }
    }

    #[test]
    fn a_growing_table_keeps_every_count() {
        let mut t = ContextTable::new(ContextConfig::default());
        let mut row = [0.0; NUM_CONTEXT];
        let src = |i: u64| (198, (i >> 8) as u8, i as u8);
        let at = |i: u64, ts: f64| {
            let (a, b, c) = src(i);
            FlowStart {
                src: [a, b, c, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ..start(i, ts, 0, 2, 80)
            }
        };
        // 20,000 sources, five keys each: past the first size (12,288).
        for i in 0..20_000 {
            t.apply(&at(i, 0.0), &mut row);
        }
        assert!(t.slots.cap() > MIN_SLOTS, "{}", t.slots.cap());
        for i in 0..20_000 {
            t.apply(&at(i, 1.0), &mut row);
            assert_eq!(get(&row, "ctx_src_flows_1s"), 0.5, "source {i}");
        }
        assert_eq!(t.stats().refused + t.stats().evictions, 0);
    }

    #[test]
    fn an_entry_idle_past_retention_reads_as_never_seen_before_any_sweep() {
        let mut t = ContextTable::new(ContextConfig::default());
        let mut row = [0.0; NUM_CONTEXT];
        t.apply(&start(1, 0.0, 1, 2, 80), &mut row);
        t.apply(&start(2, 999.0, 1, 2, 80), &mut row);
        assert!(get(&row, "ctx_src_flows_100s") > 0.0);
        t.apply(&start(3, 1_999.5, 1, 2, 80), &mut row);
        assert_eq!(get(&row, "ctx_src_flows_100s"), 0.0);
        assert!(t.stats().expired >= 1, "{:?}", t.stats());
        assert_eq!(t.stats().entries, 5);
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
