//! [`ChunkWriter`]: the one way every source hands packets to the
//! pipeline.
//!
//! It copies packets into pooled [`PacketChunk`]s, deals full chunks to the
//! decoders in turn, sends a partly filled chunk once it has waited
//! [`FLUSH_WALL`], and applies the source's [`Pacing`]: an offline source
//! waits for a free chunk (nothing is lost), a live one never waits (the
//! packets of a chunk with nowhere to go are dropped and counted) and stamps
//! each chunk with the wall clock. A source that numbers its input also
//! tells the writer which origins are complete and asks for flushes; the
//! writer carries that in the chunks ([`PacketChunk::numbering`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::chunk::PacketChunk;
use super::{send_due, Pacing, Progress};
use crate::capture::RawPacket;
use crate::queue::{recv_until, send_timed, Pooled, Recv};

/// Wall time after which a partly filled chunk is sent anyway, so a slow
/// trickle of packets is not held back waiting for a chunk to fill.
pub const FLUSH_WALL: Duration = Duration::from_millis(100);

/// Wall time between clock-only chunks of a live source while no packet
/// arrives.
pub const CLOCK_EVERY: Duration = Duration::from_millis(500);

/// The queues a writer sends on: one per decoder it deals to, and the pool
/// its chunks come from and go back to.
#[derive(Clone, Debug)]
pub struct ChunkQueues {
    /// To each decoder, in dealing order.
    pub decoders: Vec<Sender<Pooled<PacketChunk>>>,
    /// Where used chunks go back.
    pub pool_tx: Sender<PacketChunk>,
    /// Where free chunks come from.
    pub pool_rx: Receiver<PacketChunk>,
}

/// A source's side of the chunk queues; see the module docs.
#[derive(Debug)]
pub struct ChunkWriter {
    queues: ChunkQueues,
    /// The decoder that gets the next chunk.
    next: usize,
    chunk: PacketChunk,
    chunk_packets: usize,
    pacing: Pacing,
    numbered: bool,
    /// When the chunk being filled got its first packet.
    opened: Instant,
    /// When a chunk was last sent.
    sent_at: Instant,
    /// `complete_below` of the last chunk sent (numbered sources).
    sent_origin: u64,
    /// Chunks sent so far.
    sent: u64,
    /// Packets dropped because no chunk was free (live sources).
    dropped: u64,
    /// Time spent waiting on the queues.
    blocked: Duration,
    /// False once the pipeline stopped taking chunks.
    open: bool,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
}

impl ChunkWriter {
    /// A writer of chunks of `chunk_packets` packets at most; takes its
    /// first chunk from the pool (waiting for it). `stop` is set when the
    /// pipeline fails downstream; `progress` is shared with the caller.
    pub fn new(
        queues: ChunkQueues,
        chunk_packets: usize,
        pacing: Pacing,
        numbered: bool,
        stop: Arc<AtomicBool>,
        progress: Arc<Progress>,
    ) -> Self {
        let mut blocked = Duration::ZERO;
        let (chunk, open) = match recv_until(&queues.pool_rx, None, &mut blocked) {
            Recv::Item(mut c) => {
                c.clear();
                (c, true)
            }
            Recv::Timeout | Recv::Closed => (PacketChunk::default(), false),
        };
        let mut w = ChunkWriter {
            queues,
            next: 0,
            chunk,
            chunk_packets: chunk_packets.max(1),
            pacing,
            numbered,
            opened: Instant::now(),
            sent_at: Instant::now(),
            sent_origin: 0,
            sent: 0,
            dropped: 0,
            blocked,
            open,
            stop,
            progress,
        };
        if numbered {
            w.chunk.set_complete_below(0);
        }
        w
    }

    /// Adds a packet, sending the chunk on when it is full. False once the
    /// pipeline takes no more (the source should return).
    #[inline]
    pub fn push(&mut self, p: &RawPacket<'_>) -> bool {
        self.push_with(p, None)
    }

    /// Adds a packet of input message `origin` (numbered sources).
    pub fn push_numbered(&mut self, p: &RawPacket<'_>, origin: u64) -> bool {
        self.push_with(p, Some(origin))
    }

    #[inline]
    fn push_with(&mut self, p: &RawPacket<'_>, origin: Option<u64>) -> bool {
        if !self.open {
            return false;
        }
        if !self.chunk.fits(p) && !self.send() {
            return false;
        }
        if self.chunk.is_empty() {
            self.opened = Instant::now();
            if self.progress.first_packet_us.get().is_none() {
                let _ = self.progress.first_packet_us.set(p.ts_us);
            }
        }
        match origin {
            Some(o) if self.numbered => self.chunk.push_numbered(p, o),
            _ => self.chunk.push(p),
        }
        if self.chunk.len() >= self.chunk_packets {
            return self.send();
        }
        true
    }

    /// Sends what is due: a partly filled chunk that has waited
    /// [`FLUSH_WALL`]; with nothing waiting, a live source's clock every
    /// [`CLOCK_EVERY`], or a numbered source's progress (origins completed
    /// without packets, so their offsets can be committed) after
    /// [`FLUSH_WALL`]. False once the pipeline takes no more.
    pub fn poll(&mut self) -> bool {
        let waiting = (!self.chunk.is_empty()).then_some(self.opened);
        let due = if waiting.is_none() && self.pacing == Pacing::Live {
            self.sent_at.elapsed() >= CLOCK_EVERY
        } else {
            let progressed = self.numbered && self.pending_bound() > self.sent_origin;
            send_due(waiting, progressed, self.sent_at)
        };
        if due {
            self.send()
        } else {
            self.open
        }
    }

    /// Every input message numbered below `origin` has all its packets
    /// pushed (numbered sources).
    pub fn complete_below(&mut self, origin: u64) {
        if self.numbered {
            self.chunk.set_complete_below(origin);
        }
    }

    /// Sends what is pending, then flush request `id` (non-zero): every
    /// shard ends all its flows after the packets before it (numbered
    /// sources). False once the pipeline takes no more.
    pub fn flush(&mut self, id: u64) -> bool {
        if !self.chunk.is_empty() && !self.send() {
            return false;
        }
        self.chunk.set_flush(id);
        self.send()
    }

    /// Sends the chunk (even an empty one) to the next decoder and starts a
    /// fresh one. A live source that finds no free chunk drops the packets
    /// of this one instead ([`dropped`](Self::dropped)). False once the
    /// pipeline takes no more.
    pub fn send(&mut self) -> bool {
        if !self.open {
            return false;
        }
        let Some(tx) = self.queues.decoders.get(self.next) else {
            self.open = false;
            return false;
        };
        if self.pacing == Pacing::Live {
            self.chunk.set_clock(wall_us());
        }
        let fresh = match self.pacing {
            Pacing::Offline => match recv_until(&self.queues.pool_rx, None, &mut self.blocked) {
                Recv::Item(c) => c,
                Recv::Timeout | Recv::Closed => {
                    self.open = false;
                    return false;
                }
            },
            // A live source never waits: with no free chunk, the packets it
            // holds are dropped so the kernel's ring keeps being read.
            Pacing::Live => match self.queues.pool_rx.try_recv() {
                Ok(c) => c,
                Err(TryRecvError::Empty) => {
                    self.dropped += self.chunk.len() as u64;
                    self.chunk.clear();
                    self.sent_at = Instant::now();
                    return true;
                }
                Err(TryRecvError::Disconnected) => {
                    self.open = false;
                    return false;
                }
            },
        };
        let full = std::mem::replace(&mut self.chunk, fresh);
        self.chunk.clear();
        if let Some((complete_below, _)) = full.numbering() {
            self.chunk.set_complete_below(complete_below);
            self.sent_origin = complete_below;
        }
        self.sent_at = Instant::now();
        self.sent += 1;
        self.next = (self.next + 1) % self.queues.decoders.len();
        // A live source's send never waits: the queue holds every chunk of
        // the pool.
        self.open = send_timed(
            tx,
            Pooled::new(full, &self.queues.pool_tx),
            &mut self.blocked,
        );
        self.open
    }

    /// Sends the last chunk, waiting for room even for a live source
    /// (nothing more is read); returns the time spent waiting on the queues.
    pub fn finish(mut self) -> Duration {
        if !self.chunk.is_empty() {
            if let Some(tx) = self.queues.decoders.get(self.next) {
                let last = std::mem::take(&mut self.chunk);
                send_timed(
                    tx,
                    Pooled::new(last, &self.queues.pool_tx),
                    &mut self.blocked,
                );
            }
        }
        self.blocked
    }

    /// Chunks sent so far: the number of the chunk being filled.
    pub fn chunk_number(&self) -> u64 {
        self.sent
    }

    /// Packets dropped so far because the pipeline was full (live sources).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Chunks waiting for the decoders.
    pub fn queued(&self) -> usize {
        self.queues.decoders.iter().map(Sender::len).sum()
    }

    /// Whether the pipeline asked the source to stop (it failed
    /// downstream).
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Progress shared with the caller (a progress bar).
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The bound of the chunk being filled (numbered sources).
    fn pending_bound(&self) -> u64 {
        self.chunk.numbering().map_or(0, |(c, _)| c)
    }
}

/// Wall clock now, µs since the epoch.
fn wall_us() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;

    fn pkt() -> RawPacket<'static> {
        RawPacket {
            ts_us: 1,
            link_type: 1,
            orig_len: 3,
            data: &[1, 2, 3],
        }
    }

    /// A writer over `decoders` queues and a pool of `pool` chunks.
    fn writer(
        decoders: usize,
        pool: usize,
        pacing: Pacing,
        numbered: bool,
    ) -> (ChunkWriter, Vec<Receiver<Pooled<PacketChunk>>>) {
        let (pool_tx, pool_rx) = bounded(pool);
        for _ in 0..pool {
            pool_tx.send(PacketChunk::default()).unwrap();
        }
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..decoders).map(|_| bounded(pool)).unzip();
        let queues = ChunkQueues {
            decoders: txs,
            pool_tx,
            pool_rx,
        };
        let w = ChunkWriter::new(
            queues,
            2,
            pacing,
            numbered,
            Arc::new(AtomicBool::new(false)),
            Arc::new(Progress::default()),
        );
        (w, rxs)
    }

    #[test]
    fn full_chunks_are_dealt_to_the_decoders_in_turn() {
        let (mut w, rxs) = writer(2, 4, Pacing::Offline, false);
        for _ in 0..5 {
            assert!(w.push(&pkt()));
        }
        assert_eq!(w.chunk_number(), 2);
        assert_eq!(rxs[0].try_recv().unwrap().len(), 2);
        assert_eq!(rxs[1].try_recv().unwrap().len(), 2);
        // Not due yet: the last packet waits for FLUSH_WALL.
        assert!(w.poll());
        assert!(rxs[0].try_recv().is_err());
        assert!(w.finish() < Duration::from_secs(1));
        let last = rxs[0].try_recv().unwrap();
        assert_eq!(
            (last.len(), last.clock_us(), last.numbering()),
            (1, None, None)
        );
    }

    /// A live source drops (and counts) the packets of a chunk when the
    /// pipeline holds every chunk of the pool, and sends again once one
    /// comes back; its chunks carry the wall clock.
    #[test]
    fn a_live_writer_drops_when_the_pool_is_empty_and_recovers() {
        let (mut w, rxs) = writer(1, 2, Pacing::Live, false);
        w.push(&pkt());
        assert!(w.send());
        // Both chunks are out (one queued, one being filled): no room.
        w.push(&pkt());
        w.push(&pkt());
        assert_eq!(w.dropped(), 2);
        assert_eq!(w.queued(), 1);
        // The decoder takes the queued chunk and gives it back.
        let first = rxs[0].recv().unwrap();
        assert!(first.clock_us().is_some_and(|us| us > 0));
        drop(first);
        w.push(&pkt());
        assert!(w.send());
        assert_eq!(rxs[0].recv().unwrap().len(), 1);
        drop(rxs);
        w.push(&pkt());
        // The decoder is gone: the pipeline is shutting down.
        assert!(!w.send());
        assert!(!w.push(&pkt()));
    }

    #[test]
    fn a_numbered_writer_carries_origins_bounds_and_flushes() {
        let (mut w, rxs) = writer(1, 4, Pacing::Offline, true);
        w.push_numbered(&pkt(), 7);
        w.complete_below(7);
        assert!(w.flush(1));
        let packets = rxs[0].recv().unwrap();
        assert_eq!((packets.origin(0), packets.numbering()), (7, Some((7, 0))));
        let flush = rxs[0].recv().unwrap();
        assert_eq!((flush.len(), flush.numbering()), (0, Some((7, 1))));
        // The next chunk starts from the bound sent; progress without
        // packets is sent once FLUSH_WALL has passed since the last send.
        w.complete_below(9);
        assert!(w.poll());
        assert!(rxs[0].try_recv().is_err());
        std::thread::sleep(FLUSH_WALL);
        assert!(w.poll());
        let progress = rxs[0].try_recv().unwrap();
        assert_eq!((progress.len(), progress.numbering()), (0, Some((9, 0))));
    }
}
