//! One shard's flow stage on the CPU: the flow table and the CPU extractor
//! driven together, packet records in, finished feature rows out.
//!
//! The pipeline shards packets by flow hash and gives each shard one
//! [`ShardProcessor`], owned by one thread. Keeping the table and the
//! extractor behind one type guarantees the event order the extractor relies
//! on: a slot's flow is finalized (its row appended to the output batch)
//! before the slot is reused.

use std::collections::BTreeMap;

use tapstream_ingest::flow::{
    Direction, EndedFlow, FlowConfig, FlowConfigError, FlowTable, Placement, PlacementKind,
    SlotVec, TABLE_BYTES_PER_FLOW,
};
use tapstream_ingest::packet::{proto, tcp_flags};
use tapstream_ingest::{EndReason, FlowMeta, PacketRecord};

use crate::batch::{FlowBatch, Scored};
use crate::context::{FlowStart, Outcome};
use crate::cpu::{CpuExtractor, FlowAccumulator};
use crate::gpu::Flagged;

/// Why a shard could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The flow configuration was rejected.
    #[error("invalid flow configuration: {0}")]
    Config(#[from] FlowConfigError),
}

/// Counters of one shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// The shard's number.
    pub shard_id: u32,
    /// Flows open now.
    pub active_flows: u64,
    /// Flows opened since the start (continuations included).
    pub flows_created: u64,
    /// Flows ended, per reason, in [`EndReason::ALL`] order.
    pub ended: [u64; EndReason::ALL.len()],
    /// Flows evicted because the table was full (also in `ended`).
    pub evictions: u64,
    /// Packets placed in flows.
    pub packets: u64,
    /// Times the flow table entered emergency mode (it was full).
    pub emergency_entries: u64,
    /// Times it left emergency mode (recovered, or flushed at the end).
    pub emergency_exits: u64,
    /// Shards in emergency mode now (0 or 1 for one shard; summed over
    /// shards in a total).
    pub emergency_active: u64,
}

impl ShardStats {
    /// The counters of shard `shard_id`'s flow table.
    pub fn of_table(shard_id: u32, table: &FlowTable) -> Self {
        let t = table.stats();
        ShardStats {
            shard_id,
            active_flows: t.active,
            flows_created: t.created,
            ended: t.ended,
            evictions: t.evictions(),
            packets: t.packets,
            emergency_entries: t.emergency_entries,
            emergency_exits: t.emergency_exits,
            emergency_active: u64::from(t.emergency),
        }
    }

    /// Flows ended for `reason`.
    pub fn ended_for(&self, reason: EndReason) -> u64 {
        self.ended
            .get(tapstream_ingest::flow::reason_index(reason))
            .copied()
            .unwrap_or(0)
    }

    /// Flows ended for any reason.
    pub fn ended_total(&self) -> u64 {
        self.ended.iter().sum()
    }
}

/// Flow table plus CPU extractor for one shard.
#[derive(Debug)]
pub struct ShardProcessor {
    table: FlowTable,
    ext: CpuExtractor,
    shard_id: u32,
    /// Where each open flow's first packet came from, once the input is
    /// tagged ([`ShardProcessor::process_tagged_into`]).
    origins: Option<Origins>,
    /// Each open flow's start id and the starts not yet taken, once the
    /// context stage asked for them ([`ShardProcessor::track_starts`]).
    starts: Option<Starts>,
}

/// The flows a shard started, for the context stage: each open flow's id,
/// and the starts and outcomes since they were last taken.
#[derive(Debug, Default)]
struct Starts {
    shard: u32,
    next: u64,
    /// Each open flow's id, with [`ANSWERED`] set once its outcome is sent.
    of_slot: SlotVec<u64>,
    /// `(index of the packet in the records given, start or outcome)`.
    pending: Vec<(u32, FlowStart)>,
}

/// A start (`outcome` none) or an outcome seen at `rec`, between
/// `(source, destination, destination port)`; its order is set when taken.
fn event(
    rec: &PacketRecord,
    (src, dst, dport): ([u8; 16], [u8; 16], u16),
    outcome: Option<Outcome>,
    id: u64,
) -> FlowStart {
    FlowStart {
        id,
        order: 0,
        ts_us: rec.ts_us,
        src,
        dst,
        dport,
        proto: rec.proto,
        v6: rec.v6,
        outcome,
    }
}

/// Bit of [`Starts::of_slot`] set once the flow's responder has answered
/// (ids use the low 48 bits).
const ANSWERED: u64 = 1 << 63;

impl Starts {
    /// Records what the packet `recs[i]`, placed as `placement`, tells the
    /// context stage: a new flow's start; the flow's outcome at its
    /// responder's first packet; a rejection for each ICMP or ICMPv6
    /// destination-unreachable packet (to the packet's destination, the
    /// source that was refused).
    #[inline]
    fn on_packet(&mut self, i: usize, rec: &PacketRecord, placement: &Placement) {
        let backward = placement.dir == Direction::Backward;
        if let PlacementKind::New { .. } = placement.kind {
            self.open(placement.slot, i, rec, backward);
        }
        let unreachable = match rec.proto {
            proto::ICMP => rec.icmp_type == 3,
            proto::ICMPV6 => rec.icmp_type == 1,
            _ => false,
        };
        if unreachable {
            // Counted once, as the rejection below, even where it is also
            // the responder's first packet of its flow.
            self.mark_answered(placement.slot);
            let back = (rec.dst, rec.src, 0);
            self.push(i, event(rec, back, Some(Outcome::Rejected), u64::MAX));
        } else if backward {
            self.answer(placement.slot, i, rec);
        }
    }

    /// Marks the flow in `slot` answered; returns its id if it was not yet.
    fn mark_answered(&mut self, slot: u32) -> Option<u64> {
        let id = self.of_slot.get_mut(slot as usize)?;
        if *id & ANSWERED != 0 {
            return None;
        }
        *id |= ANSWERED;
        Some(*id & !ANSWERED)
    }

    /// The flow in `slot` got its responder's packet `recs[i]`: its outcome,
    /// once per flow.
    fn answer(&mut self, slot: u32, i: usize, rec: &PacketRecord) {
        let Some(id) = self.mark_answered(slot) else {
            return;
        };
        let outcome = if rec.proto == proto::TCP && rec.has_flag(tcp_flags::RST) {
            Outcome::Rejected
        } else {
            Outcome::Answered
        };
        // The packet travels from the responder to the initiator.
        self.push(i, event(rec, (rec.dst, rec.src, 0), Some(outcome), id));
    }

    /// Queues `start` for the context stage, seen at `recs[i]`.
    fn push(&mut self, i: usize, start: FlowStart) {
        self.pending
            .push((u32::try_from(i).unwrap_or(u32::MAX), start));
    }

    /// Records a new flow in `slot`, opened by `recs[i]`.
    fn open(&mut self, slot: u32, i: usize, rec: &PacketRecord, backward: bool) {
        let id = (u64::from(self.shard) << 40) | self.next;
        self.next += 1;
        self.of_slot.ensure(slot as usize, &0);
        if let Some(o) = self.of_slot.get_mut(slot as usize) {
            *o = id;
        }
        let oriented = if backward {
            (rec.dst, rec.src, rec.sport)
        } else {
            (rec.src, rec.dst, rec.dport)
        };
        self.push(i, event(rec, oriented, None, id));
    }

    /// Puts the start id of the flow ending in `slot` beside its row.
    fn end_in(starts: &mut Option<Starts>, slot: u32, batch: &mut FlowBatch) {
        if let Some(s) = starts.as_ref() {
            batch.start_ids.push(
                s.of_slot
                    .get(slot as usize)
                    .map_or(u64::MAX, |id| id & !ANSWERED),
            );
        }
    }
}

/// The origin (input message number) of each open flow's first packet, and
/// the open flows per origin, so the oldest origin still open is known.
#[derive(Debug, Default)]
struct Origins {
    of_slot: SlotVec<u64>,
    open: BTreeMap<u64, u32>,
}

impl Origins {
    fn open(&mut self, slot: u32, origin: u64) {
        self.of_slot.ensure(slot as usize, &0);
        if let Some(o) = self.of_slot.get_mut(slot as usize) {
            *o = origin;
        }
        *self.open.entry(origin).or_insert(0) += 1;
    }

    /// [`end`](Self::end) when origins are tracked at all.
    fn end_in(origins: &mut Option<Origins>, slot: u32) {
        if let Some(o) = origins.as_mut() {
            o.end(slot);
        }
    }

    fn end(&mut self, slot: u32) {
        let Some(&origin) = self.of_slot.get(slot as usize) else {
            return;
        };
        if let Some(n) = self.open.get_mut(&origin) {
            *n -= 1;
            if *n == 0 {
                self.open.remove(&origin);
            }
        }
    }
}

/// Where a shard puts ended flows: a batch, and what to do when it is full.
///
/// Flows end in bursts (a jump in packet time can time out a whole capture's
/// flows at once), so a shard hands off full batches as it goes instead of
/// growing one batch without bound.
pub struct Output<'a, F: FnMut(&mut FlowBatch)> {
    /// The batch being filled.
    pub batch: &'a mut FlowBatch,
    /// Flows per batch at most before `handoff` is called.
    pub max_flows: usize,
    /// Takes a full batch (typically sends it and leaves an empty one).
    pub handoff: F,
}

impl<F: FnMut(&mut FlowBatch)> Output<'_, F> {
    /// Finalizes an ended flow into the batch, handing it off when full.
    #[inline]
    fn emit(&mut self, ext: &CpuExtractor, ended: &EndedFlow) {
        self.batch
            .push_with(ended.meta, |row| ext.finalize(ended.slot, &ended.meta, row));
        self.handoff_if_full();
    }

    /// Appends a flow whose row was computed elsewhere (the GPU extractor).
    pub(crate) fn emit_row(&mut self, meta: FlowMeta, row: &[f64]) {
        self.batch.push_with(meta, |dst| {
            for (d, s) in dst.iter_mut().zip(row) {
                *d = *s;
            }
        });
        self.handoff_if_full();
    }

    /// Appends flows scored elsewhere (the GPU extractor scoring on the
    /// device): their metadata, no feature rows, and the flagged ones
    /// (`flagged` indexes `metas`, increasing), handing batches off when
    /// full. The work `how` took is counted in the first batch.
    pub(crate) fn emit_scored(&mut self, metas: &[FlowMeta], flagged: &[Flagged], how: Scored) {
        let mut flagged = flagged.iter().peekable();
        let mut work = Some(how);
        for (i, meta) in metas.iter().enumerate() {
            let s = self.batch.scored.get_or_insert(Scored {
                generation: how.generation,
                ..Scored::default()
            });
            if let Some(w) = work.take() {
                s.calls += w.calls;
                s.busy += w.busy;
            }
            let row = u32::try_from(self.batch.metas.len()).unwrap_or(u32::MAX);
            self.batch.metas.push(*meta);
            while let Some(f) = flagged.next_if(|f| f.row as usize <= i) {
                if f.row as usize == i {
                    self.batch.flagged.push(Flagged { row, ..*f });
                }
            }
            self.handoff_if_full();
        }
    }

    #[inline]
    fn handoff_if_full(&mut self) {
        if self.batch.len() >= self.max_flows {
            (self.handoff)(self.batch);
        }
    }
}

/// An output that only appends to `out` (no size limit).
fn unbounded(out: &mut FlowBatch) -> Output<'_, fn(&mut FlowBatch)> {
    Output {
        batch: out,
        max_flows: usize::MAX,
        handoff: |_| {},
    }
}

impl ShardProcessor {
    /// Host memory one open flow costs a shard, at most: its flow table
    /// share ([`TABLE_BYTES_PER_FLOW`]), its feature accumulator and its
    /// origin (tagged input). `[flow] memcap_mib` divides by this. The GPU
    /// extractor keeps accumulators in device memory instead, so on the
    /// host it needs less.
    pub const BYTES_PER_FLOW: usize =
        TABLE_BYTES_PER_FLOW + std::mem::size_of::<FlowAccumulator>() + std::mem::size_of::<u64>();

    /// A shard with an empty flow table; fails if `cfg` is invalid.
    pub fn new(cfg: FlowConfig, shard_id: u32) -> Result<Self, ShardError> {
        let table = FlowTable::new(cfg)?;
        Ok(ShardProcessor {
            ext: CpuExtractor::new(cfg.activity_timeout_us),
            table,
            shard_id,
            origins: None,
            starts: None,
        })
    }

    /// Processes records in order; flows that end are appended to `out`
    /// (meta and feature row). `out` is not cleared.
    pub fn process(&mut self, recs: &[PacketRecord], out: &mut FlowBatch) {
        self.process_into(recs, &mut unbounded(out));
    }

    /// Like [`process`](Self::process), handing off full batches.
    pub fn process_into<F: FnMut(&mut FlowBatch)>(
        &mut self,
        recs: &[PacketRecord],
        out: &mut Output<'_, F>,
    ) {
        let ShardProcessor {
            table,
            ext,
            origins,
            starts,
            ..
        } = self;
        for (i, rec) in recs.iter().enumerate() {
            let placement = table.process(rec, &mut |e: EndedFlow| {
                Origins::end_in(origins, e.slot);
                Starts::end_in(starts, e.slot, out.batch);
                out.emit(ext, &e)
            });
            ext.on_packet(rec, &placement);
            if let Some(s) = starts.as_mut() {
                s.on_packet(i, rec, &placement);
            }
        }
    }

    /// Like [`process_into`](Self::process_into) for input whose records
    /// carry origins: `origins[i]` numbers the input message `recs[i]` came
    /// from (origins never decrease along the input). From the first call
    /// on, the shard tracks which origin each open flow started in; see
    /// [`oldest_open_origin`](Self::oldest_open_origin). A record without
    /// an origin counts as origin 0, which holds every later one back.
    pub fn process_tagged_into<F: FnMut(&mut FlowBatch)>(
        &mut self,
        recs: &[PacketRecord],
        tags: &[u64],
        out: &mut Output<'_, F>,
    ) {
        let ShardProcessor {
            table,
            ext,
            origins,
            starts,
            ..
        } = self;
        let origins = origins.get_or_insert_with(Origins::default);
        for (i, rec) in recs.iter().enumerate() {
            let placement = table.process(rec, &mut |e: EndedFlow| {
                origins.end(e.slot);
                Starts::end_in(starts, e.slot, out.batch);
                out.emit(ext, &e)
            });
            ext.on_packet(rec, &placement);
            if let PlacementKind::New { .. } = placement.kind {
                origins.open(placement.slot, tags.get(i).copied().unwrap_or(0));
            }
            if let Some(s) = starts.as_mut() {
                s.on_packet(i, rec, &placement);
            }
        }
    }

    /// The smallest origin among the open flows' first packets (tagged input
    /// only; `None` when no flow is open or the input was never tagged).
    pub fn oldest_open_origin(&self) -> Option<u64> {
        self.origins
            .as_ref()
            .and_then(|o| o.open.keys().next().copied())
    }

    /// Moves packet time to `now_us` (for a shard that saw no packets
    /// lately), appending flows that became idle or finished lingering.
    pub fn advance(&mut self, now_us: i64, out: &mut FlowBatch) {
        self.advance_into(now_us, &mut unbounded(out));
    }

    /// Like [`advance`](Self::advance), handing off full batches.
    pub fn advance_into<F: FnMut(&mut FlowBatch)>(&mut self, now_us: i64, out: &mut Output<'_, F>) {
        let ShardProcessor {
            table,
            ext,
            origins,
            starts,
            ..
        } = self;
        table.advance(now_us, &mut |e: EndedFlow| {
            Origins::end_in(origins, e.slot);
            Starts::end_in(starts, e.slot, out.batch);
            out.emit(ext, &e)
        });
    }

    /// Ends every open flow ([`EndReason::EndOfInput`]) into `out`.
    pub fn flush(&mut self, out: &mut FlowBatch) {
        self.flush_into(&mut unbounded(out));
    }

    /// Like [`flush`](Self::flush), handing off full batches.
    pub fn flush_into<F: FnMut(&mut FlowBatch)>(&mut self, out: &mut Output<'_, F>) {
        let ShardProcessor {
            table,
            ext,
            origins,
            starts,
            ..
        } = self;
        table.flush(&mut |e: EndedFlow| {
            Starts::end_in(starts, e.slot, out.batch);
            out.emit(ext, &e)
        });
        if let Some(o) = origins.as_mut() {
            o.open.clear();
        }
    }

    /// From now on, records each flow's start and outcome (for the context
    /// stage) and puts each ended flow's start id in [`FlowBatch::start_ids`]. Call it
    /// before the first packet.
    pub fn track_starts(&mut self) {
        self.starts.get_or_insert_with(|| Starts {
            shard: self.shard_id,
            ..Starts::default()
        });
    }

    /// Appends the starts and outcomes recorded since the last call to
    /// `out`, in input order, each with its [`FlowStart::order`] set by
    /// `order` from the index of its packet in the records of the `process`
    /// call that saw it.
    pub fn take_starts(&mut self, order: &dyn Fn(u32) -> u64, out: &mut Vec<FlowStart>) {
        if let Some(s) = self.starts.as_mut() {
            out.extend(s.pending.drain(..).map(|(i, st)| FlowStart {
                order: order(i),
                ..st
            }));
        }
    }

    /// Counters since the shard was created.
    pub fn stats(&self) -> ShardStats {
        ShardStats::of_table(self.shard_id, &self.table)
    }

    /// The shard's number.
    pub fn shard_id(&self) -> u32 {
        self.shard_id
    }

    /// The flow configuration.
    pub fn config(&self) -> &FlowConfig {
        self.table.config()
    }

    /// The shard's packet-time clock, µs (`i64::MIN` before any packet).
    pub fn clock_us(&self) -> i64 {
        self.table.clock_us()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapstream_ingest::decode::flow_hash;

    fn addr(last: u8) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[198, 18, 0, last]);
        a
    }

    fn pkt(
        ms: i64,
        from: u8,
        to: u8,
        sport: u16,
        dport: u16,
        proto: u8,
        flags: u8,
    ) -> PacketRecord {
        let (src, dst) = (addr(from), addr(to));
        PacketRecord {
            ts_us: ms * 1000,
            hash: flow_hash(&src, &dst, sport, dport, proto, false),
            src,
            dst,
            sport,
            dport,
            proto,
            flags,
            header_len: 20,
            wire_len: 60,
            ..PacketRecord::default()
        }
    }

    /// What a shard sends the context stage for `recs`: (order, outcome,
    /// source's last byte, destination's last byte).
    fn events(recs: &[PacketRecord]) -> Vec<(u64, Option<Outcome>, u8, u8)> {
        let mut shard = ShardProcessor::new(FlowConfig::default(), 0).unwrap();
        shard.track_starts();
        let mut out = FlowBatch::default();
        shard.process(recs, &mut out);
        let mut starts = Vec::new();
        shard.take_starts(&|i| u64::from(i), &mut starts);
        starts
            .iter()
            .map(|s| (s.order, s.outcome, s.src[3], s.dst[3]))
            .collect()
    }

    #[test]
    fn a_flow_reports_its_start_and_its_responders_first_answer_once() {
        use tcp_flags::{ACK, RST, SYN};
        let got = events(&[
            pkt(0, 1, 2, 40000, 22, proto::TCP, SYN),
            pkt(1, 2, 1, 22, 40000, proto::TCP, SYN | ACK),
            pkt(2, 1, 2, 40000, 22, proto::TCP, ACK),
            pkt(3, 2, 1, 22, 40000, proto::TCP, ACK),
            // A closed port answers with a reset.
            pkt(4, 1, 2, 40001, 23, proto::TCP, SYN),
            pkt(5, 2, 1, 23, 40001, proto::TCP, RST | ACK),
            // Nothing comes back: a start only.
            pkt(6, 1, 3, 40002, 80, proto::TCP, SYN),
        ]);
        assert_eq!(
            got,
            vec![
                (0, None, 1, 2),
                (1, Some(Outcome::Answered), 1, 2),
                (4, None, 1, 2),
                (5, Some(Outcome::Rejected), 1, 2),
                (6, None, 1, 3),
            ]
        );
    }

    #[test]
    fn an_unreachable_rejects_the_source_it_is_sent_back_to() {
        let mut unreachable = pkt(1, 2, 1, 0, 0, proto::ICMP, 0);
        unreachable.icmp_type = 3;
        unreachable.icmp_code = 3;
        let mut echo_reply = pkt(3, 2, 1, 0, 0, proto::ICMP, 0);
        echo_reply.icmp_type = 0;
        let got = events(&[
            pkt(0, 1, 2, 40000, 161, proto::UDP, 0),
            unreachable,
            unreachable,
            echo_reply,
        ]);
        // The UDP probe's start; the ICMP flow's start (2 -> 1) and one
        // rejection of 1 by 2 for each unreachable; an echo reply is no
        // rejection (here it starts a flow of its own).
        assert_eq!(
            got,
            vec![
                (0, None, 1, 2),
                (1, None, 2, 1),
                (1, Some(Outcome::Rejected), 1, 2),
                (2, Some(Outcome::Rejected), 1, 2),
                (3, None, 2, 1),
            ]
        );
    }
}
