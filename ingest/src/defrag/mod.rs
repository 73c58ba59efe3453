//! IPv4 and IPv6 defragmentation: a fragmented datagram becomes one
//! [`PacketRecord`], as if it had crossed the wire whole.
//!
//! Why: a non-first fragment has no transport header, so without this it
//! belongs to no flow, and an attacker who fragments a flood, a scan or a
//! tiny-fragment TCP header (flags in the second fragment) is invisible to
//! the features. Suricata, Snort and Zeek all reassemble before their flow
//! logic; so does tapstream.
//!
//! **Where.** The decoders find fragments ([`fragment_of`](crate::decode::fragment_of)); fragments and
//! whole packets are sharded by their address pair (`shard_of(pair_hash)`),
//! so every fragment of a datagram reaches the flow worker that owns the
//! datagram's flow, in capture order, whatever the number of decoders and
//! workers. The worker's [`Defrag`] table completes the datagram at its last
//! missing fragment, and the datagram's record takes that fragment's place
//! in the capture.
//!
//! **What is kept.** Only what a [`PacketRecord`] needs: the byte ranges
//! received (so completeness is exact), the first [`HEAD`] bytes of the
//! payload (the transport header lives there, plus IPv6 extension headers
//! after the fragment header), wire bytes and timestamps. The completed
//! datagram's record comes from [`decode`]: a synthetic IP header over the
//! head bytes, with the datagram's length, so a reassembled packet is
//! decoded by exactly the code that decodes a whole one.
//!
//! **Overlaps** (fragments that cover bytes already received) are counted,
//! and the head bytes they disagree on are settled by the [`Overlap`]
//! policy, after the target-based policies of Snort and Suricata: which
//! stack's view the features take. Only the head bytes matter to a record.
//!
//! **Bounds.** A datagram waits at most `timeout` (packet time) from its
//! first fragment; at most `max_datagrams` wait at once (the memcap, split
//! over the workers). When a new datagram finds them all in use, the eighth
//! that have waited longest are dropped and counted: a flood of fragments
//! that never complete then costs the datagrams that do complete nothing
//! but a place in the queue, where refusing new datagrams would let it shut
//! reassembly off. A datagram longer than IP allows, with two different ends, or
//! with more than [`MAX_PIECES`] separate pieces is dropped as invalid.
//! Every fragment ends up in exactly one counter of [`DefragStats`].

use std::time::Duration;

use hashbrown::HashMap;

use crate::capture::RawPacket;
use crate::decode::{decode, linktype};
use crate::packet::PacketRecord;

/// Payload bytes of a datagram kept for its record (transport header, and
/// IPv6 extension headers after the fragment header).
pub const HEAD: usize = 128;

/// Separate byte ranges a datagram may be in at once.
pub const MAX_PIECES: usize = 64;

/// Default `timeout` (Suricata's).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Memory one waiting datagram takes at most, for the memcap.
pub const BYTES_PER_DATAGRAM: usize =
    std::mem::size_of::<(Key, Datagram)>() + 1 + MAX_PIECES * std::mem::size_of::<(u32, u32)>();

/// One IP fragment, as a decoder found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// Capture time, µs since the epoch.
    pub ts_us: i64,
    /// Frame bytes on the wire.
    pub wire_len: u32,
    /// Source address (IPv4 in the first 4 bytes).
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// IPv6.
    pub v6: bool,
    /// The protocol of the fragmented payload (IPv6: the fragment header's
    /// next header).
    pub proto: u8,
    /// Identification (16 bits in IPv4, 32 in IPv6).
    pub id: u32,
    /// Byte offset of this fragment's data in the datagram's payload.
    pub offset: u32,
    /// Bytes of data this fragment carries (as its IP header says).
    pub len: u32,
    /// More fragments follow (IPv4 MF, IPv6 M).
    pub more: bool,
    /// Its data that falls in the datagram's first [`HEAD`] bytes, from
    /// `offset` on (`head_len` of them were captured).
    pub head: [u8; HEAD],
    /// Bytes of `head` that hold data.
    pub head_len: u16,
}

impl Default for Fragment {
    fn default() -> Self {
        Fragment {
            ts_us: 0,
            wire_len: 0,
            src: [0; 16],
            dst: [0; 16],
            v6: false,
            proto: 0,
            id: 0,
            offset: 0,
            len: 0,
            more: false,
            head: [0; HEAD],
            head_len: 0,
        }
    }
}

/// Which fragment's bytes win where two overlap (in the head bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overlap {
    /// The bytes received first stay (Windows, Solaris).
    First,
    /// The bytes received last win (Cisco).
    Last,
    /// New bytes win where the new fragment starts before the old one
    /// (BSD; Suricata's default).
    #[default]
    Bsd,
    /// New bytes win where the new fragment starts at or before the old one
    /// (Linux).
    Linux,
}

/// How the table is bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefragConfig {
    /// A datagram not complete this long after its first fragment is
    /// dropped (µs of packet time).
    pub timeout_us: i64,
    /// Datagrams waiting at once at most (0 counts as 1).
    pub max_datagrams: usize,
    /// The overlap policy.
    pub policy: Overlap,
}

impl Default for DefragConfig {
    fn default() -> Self {
        DefragConfig {
            timeout_us: 60_000_000,
            max_datagrams: 4_096,
            policy: Overlap::Bsd,
        }
    }
}

/// Where every fragment went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefragStats {
    /// Fragments received.
    pub fragments: u64,
    /// Datagrams completed (one record each).
    pub datagrams: u64,
    /// Fragments in those datagrams.
    pub reassembled: u64,
    /// Fragments of datagrams that timed out, or were waiting when the
    /// input ended.
    pub timeouts: u64,
    /// Fragments of datagrams dropped to make room when `max_datagrams`
    /// were waiting (the eighth that had waited longest).
    pub memcap: u64,
    /// Fragments of invalid datagrams (too long, two ends, too many pieces,
    /// or no decodable transport header once whole).
    pub invalid: u64,
    /// Fragments that overlapped bytes already received (they are in one of
    /// the counters above too).
    pub overlaps: u64,
    /// Fragments waiting now.
    pub waiting: u64,
}

impl DefragStats {
    /// Fragments dropped: timed out, over the memcap or invalid.
    pub fn dropped(&self) -> u64 {
        self.timeouts + self.memcap + self.invalid
    }

    /// Adds `o`'s counts (workers' tables into a run's).
    pub fn add(&mut self, o: &DefragStats) {
        self.fragments += o.fragments;
        self.datagrams += o.datagrams;
        self.reassembled += o.reassembled;
        self.timeouts += o.timeouts;
        self.memcap += o.memcap;
        self.invalid += o.invalid;
        self.overlaps += o.overlaps;
        self.waiting += o.waiting;
    }
}

/// A datagram's identity (RFC 791 / 8200: addresses, protocol, id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: [u8; 16],
    dst: [u8; 16],
    id: u32,
    proto: u8,
    v6: bool,
}

/// A datagram being reassembled.
#[derive(Clone, Debug)]
struct Datagram {
    first_us: i64,
    fragments: u32,
    wire: u64,
    /// Received byte ranges `[start, end)`, sorted and merged.
    pieces: Vec<(u32, u32)>,
    /// Payload length, once the last fragment came.
    end: Option<u32>,
    head: [u8; HEAD],
    /// Per head byte: offset + 1 of the fragment that wrote it (0: none).
    owner: [u32; HEAD],
    origin: u64,
}

/// One worker's fragments waiting for the rest of their datagram.
#[derive(Debug)]
pub struct Defrag {
    cfg: DefragConfig,
    table: HashMap<Key, Datagram>,
    stats: DefragStats,
    /// Scratch for the synthetic packet of a completed datagram.
    packet: Vec<u8>,
}

/// The largest IP payload: an IPv4 datagram's total length is 16 bits and
/// includes its 20-byte header; an IPv6 payload length is 16 bits.
fn max_payload(v6: bool) -> u32 {
    if v6 {
        65_535
    } else {
        65_515
    }
}

impl Defrag {
    /// An empty table.
    pub fn new(cfg: DefragConfig) -> Self {
        Defrag {
            cfg,
            table: HashMap::new(),
            stats: DefragStats::default(),
            packet: Vec::with_capacity(40 + HEAD),
        }
    }

    /// What happened so far.
    pub fn stats(&self) -> DefragStats {
        DefragStats {
            waiting: self.table.values().map(|d| u64::from(d.fragments)).sum(),
            ..self.stats
        }
    }

    /// Whether any datagram is waiting.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The smallest origin of a waiting fragment (numbered input: how far
    /// the input is settled must stay below it).
    pub fn oldest_origin(&self) -> Option<u64> {
        self.table.values().map(|d| d.origin).min()
    }

    /// Adds fragment `f` (with its input origin, 0 if unnumbered); when it
    /// completes its datagram, writes the datagram's record to `out` and
    /// returns its origin (its first fragment's).
    pub fn add(&mut self, f: &Fragment, origin: u64, out: &mut PacketRecord) -> Option<u64> {
        self.stats.fragments += 1;
        let key = Key {
            src: f.src,
            dst: f.dst,
            id: f.id,
            proto: f.proto,
            v6: f.v6,
        };
        if !self.table.contains_key(&key) && self.table.len() >= self.cfg.max_datagrams.max(1) {
            self.make_room();
        }
        let d = self.table.entry(key).or_insert_with(|| Datagram {
            first_us: f.ts_us,
            fragments: 0,
            wire: 0,
            pieces: Vec::new(),
            end: None,
            head: [0; HEAD],
            owner: [0; HEAD],
            origin,
        });
        d.fragments += 1;
        d.wire += u64::from(f.wire_len);
        d.origin = d.origin.min(origin);
        if !insert(d, f, self.cfg.policy, &mut self.stats.overlaps) {
            if let Some(d) = self.table.remove(&key) {
                self.stats.invalid += u64::from(d.fragments);
            }
            return None;
        }
        let complete = d.end.is_some_and(|end| d.pieces.first() == Some(&(0, end)));
        if !complete {
            return None;
        }
        let d = self.table.remove(&key)?;
        if self.record(&key, &d, f.ts_us, out) {
            self.stats.datagrams += 1;
            self.stats.reassembled += u64::from(d.fragments);
            Some(d.origin)
        } else {
            self.stats.invalid += u64::from(d.fragments);
            None
        }
    }

    /// Drops the datagrams whose first fragment came `timeout` or longer
    /// before `now_us`.
    pub fn expire(&mut self, now_us: i64) {
        let timeout = self.cfg.timeout_us;
        let mut timed_out = 0u64;
        self.table.retain(|_, d| {
            let keep = now_us.saturating_sub(d.first_us) < timeout;
            if !keep {
                timed_out += u64::from(d.fragments);
            }
            keep
        });
        self.stats.timeouts += timed_out;
    }

    /// Drops the eighth of the waiting datagrams that have waited longest
    /// (at least one), counting their fragments as `memcap`.
    fn make_room(&mut self) {
        let mut ages: Vec<(i64, Key)> = self.table.iter().map(|(k, d)| (d.first_us, *k)).collect();
        let n = (self.cfg.max_datagrams / 8).clamp(1, ages.len().max(1));
        if ages.len() > n {
            ages.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
        }
        for (_, k) in ages.iter().take(n) {
            if let Some(d) = self.table.remove(k) {
                self.stats.memcap += u64::from(d.fragments);
            }
        }
    }

    /// Drops every waiting datagram (the input ended), counted as timeouts,
    /// whatever its time.
    pub fn finish(&mut self) {
        let waiting: u64 = self
            .table
            .drain()
            .map(|(_, d)| u64::from(d.fragments))
            .sum();
        self.stats.timeouts += waiting;
    }

    /// Decodes datagram `d` as one packet at `ts_us`: a synthetic IP header
    /// with its length over its head bytes. False when that does not decode
    /// (e.g. a transport header longer than the datagram).
    fn record(&mut self, key: &Key, d: &Datagram, ts_us: i64, out: &mut PacketRecord) -> bool {
        let Some(end) = d.end else { return false };
        let head = d.head.get(..(end as usize).min(HEAD)).unwrap_or(&[]);
        let p = &mut self.packet;
        p.clear();
        if key.v6 {
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&u16::try_from(end).unwrap_or(u16::MAX).to_be_bytes());
            p.extend_from_slice(&[key.proto, 64]);
            p.extend_from_slice(&key.src);
            p.extend_from_slice(&key.dst);
        } else {
            let total = u16::try_from(end + 20).unwrap_or(u16::MAX);
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&total.to_be_bytes());
            p.extend_from_slice(&u16::try_from(key.id & 0xFFFF).unwrap_or(0).to_be_bytes());
            p.extend_from_slice(&[0, 0, 64, key.proto, 0, 0]);
            p.extend_from_slice(key.src.get(..4).unwrap_or(&[0; 4]));
            p.extend_from_slice(key.dst.get(..4).unwrap_or(&[0; 4]));
        }
        p.extend_from_slice(head);
        let captured = u32::try_from(p.len()).unwrap_or(u32::MAX);
        let raw = RawPacket {
            ts_us,
            link_type: linktype::RAW,
            orig_len: u32::try_from(d.wire).unwrap_or(u32::MAX).max(captured),
            data: p,
        };
        decode(&raw, out).is_ok()
    }
}

/// Puts `f` into `d`: its range, its end, its head bytes. False when the
/// datagram can no longer be valid.
fn insert(d: &mut Datagram, f: &Fragment, policy: Overlap, overlaps: &mut u64) -> bool {
    let Some(stop) = f.offset.checked_add(f.len) else {
        return false;
    };
    if stop > max_payload(f.v6) || (f.len == 0 && f.more) {
        return false;
    }
    if !f.more {
        if d.end.is_some_and(|e| e != stop) {
            return false; // two different ends
        }
        d.end = Some(stop);
    }
    if let Some(end) = d.end {
        if stop > end || d.pieces.last().is_some_and(|&(_, e)| e > end) {
            return false; // data past the end
        }
    }
    if d.pieces.iter().any(|&(a, b)| f.offset < b && a < stop) {
        *overlaps += 1;
    }
    if f.len > 0 && !merge(&mut d.pieces, (f.offset, stop)) {
        return false;
    }
    let mine = f.offset.saturating_add(1);
    for (i, &byte) in f.head.iter().take(usize::from(f.head_len)).enumerate() {
        let at = f.offset as usize + i;
        let (Some(slot), Some(owner)) = (d.head.get_mut(at), d.owner.get_mut(at)) else {
            break;
        };
        let old = *owner;
        let take = old == 0
            || match policy {
                Overlap::First => false,
                Overlap::Last => true,
                Overlap::Bsd => mine < old,
                Overlap::Linux => mine <= old,
            };
        if take {
            *slot = byte;
            *owner = mine;
        }
    }
    true
}

/// Adds `[a, b)` to sorted, merged `pieces`; false past [`MAX_PIECES`].
fn merge(pieces: &mut Vec<(u32, u32)>, (a, b): (u32, u32)) -> bool {
    let at = pieces.partition_point(|&(_, e)| e < a);
    let mut lo = a;
    let mut hi = b;
    let mut upto = at;
    while let Some(&(s, e)) = pieces.get(upto) {
        if s > hi {
            break;
        }
        lo = lo.min(s);
        hi = hi.max(e);
        upto += 1;
    }
    pieces.splice(at..upto, std::iter::once((lo, hi)));
    pieces.len() <= MAX_PIECES
}

#[cfg(test)]
mod tests;
