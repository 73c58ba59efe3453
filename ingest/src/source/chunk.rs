//! [`PacketChunk`]: packets copied out of a source, back to back, on their
//! way to the decoders.

use crate::capture::RawPacket;

/// Packet bytes per chunk at most (unless one packet is larger).
pub const CHUNK_BYTES: usize = 2 << 20;

/// Where one packet of a chunk is, and what `decode` needs besides.
#[derive(Clone, Copy, Debug)]
struct Desc {
    ts_us: i64,
    link_type: u32,
    orig_len: u32,
    start: usize,
    end: usize,
}

/// What a source that numbers its input says with a chunk (the Kafka
/// source: each message is an *origin*, see `tapstream_kernels::Mark`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Numbering {
    /// Every origin below this is wholly in this chunk or an earlier one.
    complete_below: u64,
    /// Non-zero: after this chunk's packets every shard ends all its flows;
    /// the number identifies the request.
    flush: u64,
}

/// Packets copied out of a source: their bytes back to back in one buffer,
/// and one descriptor each. Two things are optional properties of the
/// source rather than of every chunk: its numbering
/// ([`numbering`](Self::numbering)) and a live source's wall clock.
#[derive(Debug, Default)]
pub struct PacketChunk {
    data: Vec<u8>,
    pkts: Vec<Desc>,
    /// Each packet's origin, beside `pkts`, in a numbered chunk (empty
    /// otherwise; kept allocated across `clear`, as the other buffers).
    origins: Vec<u64>,
    numbering: Option<Numbering>,
    /// The wall clock (µs since the epoch) when a live source sent the
    /// chunk; shards move their clock to it after the packets, so idle flows
    /// time out even when no packet arrives.
    clock_us: Option<i64>,
}

impl PacketChunk {
    /// An empty chunk with room for `packets` packets.
    pub fn with_capacity(packets: usize) -> Self {
        PacketChunk {
            data: Vec::with_capacity(CHUNK_BYTES),
            pkts: Vec::with_capacity(packets),
            ..PacketChunk::default()
        }
    }

    /// Appends a packet (of origin 0 in a numbered chunk).
    pub fn push(&mut self, p: &RawPacket<'_>) {
        let start = self.data.len();
        self.data.extend_from_slice(p.data);
        self.pkts.push(Desc {
            ts_us: p.ts_us,
            link_type: p.link_type,
            orig_len: p.orig_len,
            start,
            end: self.data.len(),
        });
        if self.numbering.is_some() {
            self.origins.push(0);
        }
    }

    /// Appends a packet of input message `origin`, making the chunk
    /// numbered.
    pub fn push_numbered(&mut self, p: &RawPacket<'_>, origin: u64) {
        self.numbered();
        self.push(p);
        if let Some(last) = self.origins.last_mut() {
            *last = origin;
        }
    }

    /// Packets in the chunk.
    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    /// Whether the chunk holds no packet.
    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }

    /// Whether `p` fits without passing [`CHUNK_BYTES`] (an empty chunk
    /// takes any packet).
    pub fn fits(&self, p: &RawPacket<'_>) -> bool {
        self.pkts.is_empty() || self.data.len().saturating_add(p.data.len()) <= CHUNK_BYTES
    }

    /// Packet `i`.
    pub fn get(&self, i: usize) -> Option<RawPacket<'_>> {
        let d = self.pkts.get(i)?;
        Some(RawPacket {
            ts_us: d.ts_us,
            link_type: d.link_type,
            orig_len: d.orig_len,
            data: self.data.get(d.start..d.end)?,
        })
    }

    /// The bytes from packet `i` on (for a prefetch of its headers).
    pub fn bytes_from(&self, i: usize) -> Option<&[u8]> {
        self.data.get(self.pkts.get(i)?.start..)
    }

    /// Packet `i`'s origin (0 in a chunk that is not numbered).
    pub fn origin(&self, i: usize) -> u64 {
        self.origins.get(i).copied().unwrap_or(0)
    }

    /// For a numbered chunk, `(complete_below, flush)`: every origin below
    /// the first is wholly in this chunk or an earlier one, and a non-zero
    /// second asks every shard to end all its flows after the packets.
    pub fn numbering(&self) -> Option<(u64, u64)> {
        self.numbering.map(|n| (n.complete_below, n.flush))
    }

    /// Makes the chunk numbered (packets already in it are of origin 0;
    /// with no packets yet, it only carries its bound), saying every origin
    /// below `complete_below` is complete.
    pub fn set_complete_below(&mut self, complete_below: u64) {
        let n = self.numbered();
        n.complete_below = n.complete_below.max(complete_below);
    }

    /// Asks every shard to end all its flows after this chunk's packets
    /// (request `id`, non-zero).
    pub fn set_flush(&mut self, id: u64) {
        self.numbered().flush = id;
    }

    fn numbered(&mut self) -> &mut Numbering {
        if self.numbering.is_none() {
            self.origins.resize(self.pkts.len(), 0);
        }
        self.numbering.get_or_insert_with(Numbering::default)
    }

    /// The wall clock a live source stamped the chunk with.
    pub fn clock_us(&self) -> Option<i64> {
        self.clock_us
    }

    /// Stamps the chunk with the wall clock (µs since the epoch).
    pub fn set_clock(&mut self, us: i64) {
        self.clock_us = Some(us);
    }

    /// Empties the chunk, giving back memory a huge packet made it take.
    pub fn clear(&mut self) {
        self.data.clear();
        self.data.shrink_to(CHUNK_BYTES);
        self.pkts.clear();
        self.origins.clear();
        self.numbering = None;
        self.clock_us = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(data: &[u8]) -> RawPacket<'_> {
        RawPacket {
            ts_us: 7,
            link_type: 1,
            orig_len: data.len() as u32,
            data,
        }
    }

    #[test]
    fn packets_come_back_as_pushed_and_clear_forgets_everything() {
        let mut c = PacketChunk::with_capacity(4);
        c.push(&pkt(b"abc"));
        c.push(&pkt(b"de"));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(1).map(|p| p.data), Some(&b"de"[..]));
        assert_eq!(c.bytes_from(1), Some(&b"de"[..]));
        assert!(c.get(2).is_none());
        assert_eq!((c.numbering(), c.origin(0)), (None, 0));
        c.set_clock(5);
        c.clear();
        assert!(c.is_empty() && c.clock_us().is_none());
    }

    #[test]
    fn numbering_is_carried_only_by_numbered_chunks() {
        let mut c = PacketChunk::default();
        c.push_numbered(&pkt(b"x"), 41);
        c.push_numbered(&pkt(b"y"), 42);
        c.set_complete_below(42);
        c.set_complete_below(10);
        assert_eq!((c.origin(0), c.origin(1)), (41, 42));
        assert_eq!(c.numbering(), Some((42, 0)));
        c.set_flush(3);
        assert_eq!(c.numbering(), Some((42, 3)));
        // A huge packet still fits an empty chunk.
        let big = vec![0u8; CHUNK_BYTES + 1];
        assert!(PacketChunk::default().fits(&pkt(&big)));
        assert!(!c.fits(&pkt(&big)));
    }

    #[test]
    fn origins_stay_beside_their_packets() {
        let mut c = PacketChunk::default();
        c.push(&pkt(b"a"));
        c.push_numbered(&pkt(b"b"), 7);
        c.push(&pkt(b"c"));
        assert_eq!((c.origin(0), c.origin(1), c.origin(2)), (0, 7, 0));
        // Cleared, the chunk is plain again and keeps its buffers.
        c.clear();
        c.push(&pkt(b"d"));
        assert_eq!((c.numbering(), c.origin(0)), (None, 0));
        c.set_complete_below(1);
        c.push_numbered(&pkt(b"e"), 9);
        assert_eq!((c.origin(0), c.origin(1)), (0, 9));
    }
}
