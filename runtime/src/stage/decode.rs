//! The decoder stage: packet chunks in, records grouped by shard out.
//!
//! Each decoder decodes the chunks dealt to it and sends every decoded chunk
//! to every flow worker; a worker takes only its shard's records. Records
//! keep capture order within each shard, and the chunk notes where the
//! capture's clock enters a new tick period ([`TICK_US`]), so idle shards
//! still sweep their timed-out flows at the same point of the capture.
//! Packets are sharded by their address pair, so the fragments of a
//! datagram (found here, reassembled by the worker that owns the flow) and
//! the datagram's flow meet in one shard.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use tapstream_ingest::decode::{decode, decode_whole, fragment_of, pair_hash};
use tapstream_ingest::defrag::Fragment;
use tapstream_ingest::queue::{recv_until, send_timed, Pooled, Recv};
use tapstream_ingest::skip::{SkipCounters, SkipReason};
use tapstream_ingest::source::PacketChunk;
use tapstream_ingest::{shard_of, PacketRecord};

/// Packet time per clock tick: shards advance to the capture's clock each
/// time it enters a new tick period.
pub(crate) const TICK_US: i64 = 1_000_000;

/// Packets between the one being decoded and the one prefetched (measured:
/// a third less decode time on the benchmark capture).
const PREFETCH_AHEAD: usize = 6;

/// One chunk decoded, its records grouped by shard; shared by the workers.
#[derive(Debug, Default)]
pub(crate) struct DecodedChunk {
    /// Shard 0's records, then shard 1's, …; each shard's in capture order.
    recs: Vec<PacketRecord>,
    /// Each record's index among the chunk's packets.
    pos: Vec<u32>,
    /// Shard `s` owns `recs[starts[s]..starts[s + 1]]`.
    starts: Vec<usize>,
    /// `(index, ts_us)` of each decoded packet whose timestamp is the
    /// chunk's largest so far and in a later tick period than all before it.
    pub(crate) ticks: Vec<(u32, i64)>,
    /// IP fragments (defragmentation on), in capture order.
    pub(crate) frags: Vec<Fragment>,
    /// Beside `frags`: each one's shard, index among the chunk's packets,
    /// and origin (numbered input; else 0).
    pub(crate) frag_at: Vec<(u32, u32, u64)>,
    /// Numbered input: each record's origin, beside `recs`.
    origins: Vec<u64>,
    /// Numbered input: the chunk's `(complete_below, flush)`.
    pub(crate) numbering: Option<(u64, u64)>,
}

impl DecodedChunk {
    /// Shard `s`'s records, their indices and (numbered input) origins.
    pub(crate) fn part(&self, s: usize) -> (&[PacketRecord], &[u32], &[u64]) {
        let (Some(&lo), Some(&hi)) = (self.starts.get(s), self.starts.get(s + 1)) else {
            return (&[], &[], &[]);
        };
        (
            self.recs.get(lo..hi).unwrap_or_default(),
            self.pos.get(lo..hi).unwrap_or_default(),
            self.origins.get(lo..hi).unwrap_or_default(),
        )
    }
}

/// What the decoders send the workers.
pub(crate) type Decoded = Arc<Pooled<DecodedChunk>>;

/// What one decoder counted.
#[derive(Debug, Default)]
pub(crate) struct DecoderReport {
    pub(crate) decoded: u64,
    /// IP fragments handed to the workers' reassembly.
    pub(crate) fragments: u64,
    pub(crate) skipped: SkipCounters,
    pub(crate) busy: Duration,
}

/// A decoder's buffers, reused for every chunk.
#[derive(Default)]
struct Scratch {
    /// Decoded records in capture order.
    recs: Vec<PacketRecord>,
    /// Each record's shard.
    shard: Vec<u32>,
    /// Each record's index among the chunk's packets.
    pos: Vec<u32>,
    /// A fragment being read.
    frag: Fragment,
    /// Each record's origin (numbered input).
    origins: Vec<u64>,
    /// Next free place per shard while grouping.
    cursor: Vec<usize>,
    /// Fragments go to reassembly (else they are skipped).
    defrag: bool,
    /// Records are sharded by their 5-tuple, not their address pair.
    by_flow: bool,
}

/// Decodes chunks from `rx` until it closes, sending each to every worker
/// (`txs`); owns `pool_size` decoded chunks, so it waits only for its pool.
pub(crate) fn decoder_loop(
    rx: Receiver<Pooled<PacketChunk>>,
    txs: Vec<Sender<Decoded>>,
    pool_size: usize,
    (defrag, by_flow): (bool, bool),
) -> DecoderReport {
    let started = Instant::now();
    let mut blocked = Duration::ZERO;
    let mut report = DecoderReport::default();
    let (pool_tx, pool_rx) = bounded::<DecodedChunk>(pool_size);
    for _ in 0..pool_size {
        let _ = pool_tx.send(DecodedChunk::default());
    }
    let mut scratch = Scratch::default();
    loop {
        let Recv::Item(raw) = recv_until(&rx, None, &mut blocked) else {
            break;
        };
        // Never closed (`pool_tx` is held here); waits while the workers
        // hold every chunk.
        let Recv::Item(mut chunk) = recv_until(&pool_rx, None, &mut blocked) else {
            break;
        };
        scratch.defrag = defrag;
        scratch.by_flow = by_flow;
        decode_chunk(&raw, txs.len(), &mut scratch, &mut chunk, &mut report);
        drop(raw);
        let msg = Arc::new(Pooled::new(chunk, &pool_tx));
        for tx in &txs {
            // A worker that is gone (it panicked) misses the chunk; the run
            // fails when it is joined.
            send_timed(tx, msg.clone(), &mut blocked);
        }
    }
    report.busy = started.elapsed().saturating_sub(blocked);
    report
}

/// Decodes `raw` into `out`: records grouped by shard, each shard's in
/// capture order, and the tick points of the chunk.
fn decode_chunk(
    raw: &PacketChunk,
    shards: usize,
    scratch: &mut Scratch,
    out: &mut DecodedChunk,
    report: &mut DecoderReport,
) {
    decode_packets(raw, shards, scratch, out, report);
    let n = scratch.recs.len();
    report.decoded += n as u64;
    group_by_shard(shards, scratch, out);
}

/// Decodes every packet of `raw` into `scratch` (records, shards and
/// origins), counting what does not decode, and notes the ticks in `out`.
fn decode_packets(
    raw: &PacketChunk,
    shards: usize,
    scratch: &mut Scratch,
    out: &mut DecodedChunk,
    report: &mut DecoderReport,
) {
    scratch.recs.clear();
    scratch.shard.clear();
    scratch.pos.clear();
    scratch.origins.clear();
    out.ticks.clear();
    out.frags.clear();
    out.frag_at.clear();
    out.numbering = raw.numbering();
    let numbered = out.numbering.is_some();
    let mut rec = PacketRecord::default();
    let mut tick = i64::MIN;
    for i in 0..raw.len() {
        // The reader wrote these bytes on another core: fetch the headers of
        // a packet a few ahead while this one is decoded.
        prefetch(raw.bytes_from(i + PREFETCH_AHEAD));
        let Some(pkt) = raw.get(i) else {
            // Cannot happen (the chunk stores both); counted, not lost.
            report.skipped.add(SkipReason::Truncated);
            continue;
        };
        let decoded = if scratch.defrag {
            decode_whole(&pkt, &mut rec)
        } else {
            decode(&pkt, &mut rec)
        };
        let at = i as u32;
        match decoded {
            Ok(()) => {
                let t = rec.ts_us.div_euclid(TICK_US);
                if t > tick {
                    tick = t;
                    out.ticks.push((at, rec.ts_us));
                }
                let key = if scratch.by_flow {
                    rec.hash
                } else {
                    pair_hash(&rec.src, &rec.dst, rec.v6)
                };
                let shard = shard_of(key, shards);
                scratch.shard.push(shard as u32);
                scratch.pos.push(at);
                scratch.recs.push(rec);
                if numbered {
                    scratch.origins.push(raw.origin(i));
                }
            }
            Err(SkipReason::Fragment) if scratch.defrag => {
                match fragment_of(&pkt, &mut scratch.frag) {
                    Ok(()) => {
                        let f = &scratch.frag;
                        let shard = shard_of(pair_hash(&f.src, &f.dst, f.v6), shards);
                        let origin = if numbered { raw.origin(i) } else { 0 };
                        out.frags.push(*f);
                        out.frag_at.push((shard as u32, at, origin));
                        report.fragments += 1;
                    }
                    Err(reason) => report.skipped.add(reason),
                }
            }
            Err(reason) => report.skipped.add(reason),
        }
    }
    // A live source's wall clock, after every packet of the chunk.
    if let Some(clock) = raw.clock_us().filter(|&c| c != 0) {
        if clock.div_euclid(TICK_US) > tick {
            out.ticks.push((raw.len() as u32, clock));
        }
    }
}

/// Counting sort of `scratch`'s records by shard into `out` (stable, so
/// each shard keeps capture order).
fn group_by_shard(shards: usize, scratch: &mut Scratch, out: &mut DecodedChunk) {
    let n = scratch.recs.len();
    out.starts.clear();
    out.starts.resize(shards + 1, 0);
    for &s in &scratch.shard {
        if let Some(c) = out.starts.get_mut(s as usize + 1) {
            *c += 1;
        }
    }
    let mut sum = 0;
    for c in &mut out.starts {
        sum += *c;
        *c = sum;
    }
    out.pos.clear();
    out.origins.clear();
    if shards == 1 {
        std::mem::swap(&mut out.recs, &mut scratch.recs);
        std::mem::swap(&mut out.origins, &mut scratch.origins);
        std::mem::swap(&mut out.pos, &mut scratch.pos);
        return;
    }
    scratch.cursor.clear();
    scratch
        .cursor
        .extend_from_slice(out.starts.get(..shards).unwrap_or_default());
    out.recs.clear();
    out.recs.resize(n, PacketRecord::default());
    out.pos.resize(n, 0);
    out.origins.resize(scratch.origins.len(), 0);
    for (i, (rec, &s)) in scratch.recs.iter().zip(&scratch.shard).enumerate() {
        let Some(c) = scratch.cursor.get_mut(s as usize) else {
            continue;
        };
        if let (Some(r), Some(p)) = (out.recs.get_mut(*c), out.pos.get_mut(*c)) {
            *r = *rec;
            *p = scratch.pos.get(i).copied().unwrap_or(i as u32);
        }
        if let (Some(o), Some(&from)) = (out.origins.get_mut(*c), scratch.origins.get(i)) {
            *o = from;
        }
        *c += 1;
    }
}

/// Asks the CPU to bring the start of `bytes` into cache.
#[inline(always)]
fn prefetch(bytes: Option<&[u8]>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(b) = bytes {
        // SAFETY: a prefetch is a hint: it never faults and changes no memory,
        // and `b` points into a live slice.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(b.as_ptr().cast())
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapstream_ingest::RawPacket;

    /// A chunk of UDP packets from 50 hosts (timestamps jumping forward and
    /// back across seconds) and a few frames too short to decode.
    fn chunk() -> PacketChunk {
        use std::net::{IpAddr, Ipv4Addr};
        use tapstream_ingest::pcapgen::{Frame, LINKTYPE_ETHERNET};
        let mut raw = PacketChunk::with_capacity(64);
        for i in 0..300i64 {
            let ts = 5_000_000 + (i % 7) * 400_000 - (i % 3) * 900_000 + i * 10_000;
            let frame = if i % 31 == 0 {
                vec![0u8; 10]
            } else {
                let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, (i % 50) as u8));
                let dst = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1));
                Frame::udp(src, dst, 1000 + (i % 50) as u16, 53, 20).to_bytes()
            };
            raw.push(&RawPacket {
                ts_us: ts,
                link_type: LINKTYPE_ETHERNET,
                orig_len: frame.len() as u32,
                data: &frame,
            });
        }
        raw
    }

    /// A clock-only chunk moves the shards' clock after its packets.
    #[test]
    fn a_live_clock_becomes_a_tick_after_the_packets() {
        let mut raw = chunk();
        raw.set_clock(99_000_000);
        let mut scratch = Scratch::default();
        let mut out = DecodedChunk::default();
        let mut report = DecoderReport::default();
        decode_chunk(&raw, 2, &mut scratch, &mut out, &mut report);
        let last = *out.ticks.last().unwrap();
        assert_eq!(last, (raw.len() as u32, 99_000_000), "after every packet");
        // Alone in a chunk (a quiet link), the clock is the only tick.
        let mut raw = PacketChunk::default();
        raw.set_clock(5_000_000);
        decode_chunk(&raw, 2, &mut scratch, &mut out, &mut report);
        assert_eq!(out.ticks, vec![(0, 5_000_000)]);
    }

    #[test]
    fn decode_chunk_groups_by_shard_in_capture_order_and_marks_ticks() {
        let raw = chunk();
        // The same packets decoded one by one, as a single thread would,
        // with their index in the chunk.
        let mut sequential = Vec::new();
        let mut rec = PacketRecord::default();
        for i in 0..raw.len() {
            if decode(&raw.get(i).unwrap(), &mut rec).is_ok() {
                sequential.push((i as u32, rec));
            }
        }
        for shards in [1, 3, 8] {
            let mut out = DecodedChunk::default();
            let mut report = DecoderReport::default();
            decode_chunk(&raw, shards, &mut Scratch::default(), &mut out, &mut report);
            assert_eq!(report.decoded, sequential.len() as u64);
            assert_eq!(report.decoded + report.skipped.total(), 300);
            assert_eq!(report.skipped.get(SkipReason::Truncated), 10);
            let mut seen = 0;
            for s in 0..shards {
                let (recs, pos, origins) = out.part(s);
                assert_eq!(recs.len(), pos.len());
                assert!(origins.is_empty(), "not numbered");
                assert!(pos.windows(2).all(|w| w[0] < w[1]), "capture order");
                for (r, &p) in recs.iter().zip(pos) {
                    assert_eq!(shard_of(pair_hash(&r.src, &r.dst, r.v6), shards), s);
                    assert!(sequential.contains(&(p, *r)));
                }
                seen += recs.len();
            }
            assert_eq!(seen, sequential.len());
            // A tick wherever the largest timestamp so far enters a new second.
            let mut expected = Vec::new();
            let mut max = i64::MIN;
            for (i, r) in &sequential {
                if r.ts_us > max {
                    if max == i64::MIN || r.ts_us / TICK_US > max / TICK_US {
                        expected.push((*i, r.ts_us));
                    }
                    max = r.ts_us;
                }
            }
            assert!(expected.len() > 2);
            assert_eq!(out.ticks, expected);
            assert_eq!(out.part(shards), (&[][..], &[][..], &[][..]));
        }
    }

    #[test]
    fn numbered_chunks_keep_each_records_origin() {
        let plain = chunk();
        let mut raw = PacketChunk::default();
        for i in 0..plain.len() {
            raw.push_numbered(&plain.get(i).unwrap(), i as u64 / 10);
        }
        raw.set_complete_below(29);
        // The raw index of each packet that decodes.
        let mut rec = PacketRecord::default();
        let raw_index: Vec<usize> = (0..raw.len())
            .filter(|&i| decode(&raw.get(i).unwrap(), &mut rec).is_ok())
            .collect();
        let mut out = DecodedChunk::default();
        let mut report = DecoderReport::default();
        decode_chunk(&raw, 3, &mut Scratch::default(), &mut out, &mut report);
        assert_eq!(out.numbering, Some((29, 0)));
        let mut seen = 0;
        for s in 0..3 {
            let (recs, pos, origins) = out.part(s);
            assert_eq!(origins.len(), recs.len());
            for (&p, &o) in pos.iter().zip(origins) {
                // `pos` is the index in the chunk, which decodes.
                assert!(raw_index.contains(&(p as usize)));
                assert_eq!(o, u64::from(p) / 10);
            }
            seen += recs.len();
        }
        assert_eq!(seen, raw_index.len());
    }
}
