//! The context stage: gives every ended flow its host and service context
//! row, between the flow workers and the consumer.
//!
//! A host's flows span shards, so no worker can compute what a host did:
//! this stage sees every shard's flow starts and outcomes (a flow's first
//! answer or rejection). Each worker sends the starts and outcomes it saw,
//! in capture order, and after each input chunk a *watermark* (all of them
//! from chunks below it are sent). The stage applies them to the
//! [`ContextTable`](tapstream_kernels::ContextTable) in the order of their
//! packet in the input (chunk number, index in the chunk) once
//! every shard's watermark has passed them, so the table sees one sequence
//! for any number of workers and decoders. A batch of ended flows waits until its shard's next
//! watermark is passed (its flows' starts are then applied), gets its
//! context rows and goes on; batches of one shard keep their order, so a
//! shard's marks stay behind its flows.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use tapstream_ingest::queue::{recv_until, send_timed, Recv};
use tapstream_kernels::context::NUM_CONTEXT;
use tapstream_kernels::{ContextConfig, ContextRows, ContextStats, FlowBatch, FlowStart};

/// What the context stage counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct ContextReport {
    /// The table's counters at the end.
    pub table: ContextStats,
    /// Ended flows whose start was never seen (zeros in their row; 0 unless
    /// a worker lost track).
    pub missing: u64,
    /// Time spent working.
    pub busy: Duration,
}

/// One shard's starts not yet applied and batches not yet released.
#[derive(Default)]
struct ShardQueue {
    starts: VecDeque<FlowStart>,
    /// Every start of chunks below this has arrived.
    watermark: u64,
    /// Batches in arrival order, each with the watermark it waits for
    /// (`None`: the shard's next one).
    held: VecDeque<(Option<u64>, FlowBatch)>,
}

/// The stage's state; see the module docs.
pub(crate) struct ContextStage {
    /// The table, and the rows of flows started and not yet ended.
    rows: ContextRows,
    shards: Vec<ShardQueue>,
    missing: u64,
}

/// Host memory an open flow costs in the stage at most (its row, kept until
/// it ends); `[flow] memcap_mib` covers it when the stage runs.
pub const BYTES_PER_OPEN_FLOW: usize = ContextRows::BYTES_PER_OPEN_FLOW;

/// First-packet order below which starts may be applied, for a watermark.
fn order_limit(watermark: u64) -> u64 {
    watermark.saturating_mul(1 << 32)
}

impl ContextStage {
    pub(crate) fn new(cfg: ContextConfig, shards: usize) -> Self {
        ContextStage {
            rows: ContextRows::new(cfg),
            shards: (0..shards.max(1)).map(|_| ShardQueue::default()).collect(),
            missing: 0,
        }
    }

    /// Takes a worker's batch in; returns what may go on now, in `ready`.
    pub(crate) fn accept(&mut self, mut b: FlowBatch, ready: &mut Vec<FlowBatch>) {
        let s = b.shard.unwrap_or(0) as usize;
        let Some(q) = self.shards.get_mut(s) else {
            // Not from a worker of this run: pass it on untouched.
            ready.push(b);
            return;
        };
        // The batch goes back to a worker's pool: it keeps no room for starts
        // (a flood's chunk can hold thousands; the worker allocates anew).
        q.starts.extend(std::mem::take(&mut b.starts));
        if let Some(w) = b.watermark {
            q.watermark = q.watermark.max(w);
            for (need, _) in q.held.iter_mut().filter(|(n, _)| n.is_none()) {
                *need = Some(w);
            }
            q.held.push_back((Some(w), b));
        } else {
            q.held.push_back((None, b));
        }
        let passed = self.shards.iter().map(|q| q.watermark).min().unwrap_or(0);
        self.apply_below(order_limit(passed));
        self.release(passed, ready);
    }

    /// Every worker has hung up: applies and releases everything.
    pub(crate) fn finish(&mut self, ready: &mut Vec<FlowBatch>) {
        self.apply_below(u64::MAX);
        self.release(u64::MAX, ready);
    }

    /// Applies the queued starts with an order below `limit`, merged over
    /// the shards by order (each shard's queue is already in order): the
    /// shard with the lowest next start is drained while its starts stay
    /// below every other shard's next one.
    fn apply_below(&mut self, limit: u64) {
        let below = |o: u64| o < limit || limit == u64::MAX;
        loop {
            // The two lowest next starts over the shards.
            let mut first: Option<(u64, usize)> = None;
            let mut second = u64::MAX;
            for (i, q) in self.shards.iter().enumerate() {
                let Some(o) = q.starts.front().map(|s| s.order).filter(|&o| below(o)) else {
                    continue;
                };
                match first {
                    Some((f, _)) if o >= f => second = second.min(o),
                    _ => {
                        second = first.map_or(second, |(f, _)| second.min(f));
                        first = Some((o, i));
                    }
                }
            }
            let Some(q) = first.and_then(|(_, i)| self.shards.get_mut(i)) else {
                break;
            };
            let n = q
                .starts
                .iter()
                .take_while(|s| below(s.order) && s.order <= second)
                .count();
            let run = q.starts.make_contiguous();
            self.rows.start_all(run.get(..n).unwrap_or_default());
            q.starts.drain(..n);
        }
    }

    /// Fills and releases, in each shard's order, every held batch whose
    /// watermark is passed or whose flows' starts are all applied already
    /// (flows that time out together end long after they started: such a
    /// burst goes on at once instead of waiting for the chunk's end).
    fn release(&mut self, passed: u64, ready: &mut Vec<FlowBatch>) {
        let due = |rows: &ContextRows, need: &Option<u64>, b: &FlowBatch| {
            passed == u64::MAX
                || need.is_some_and(|w| w <= passed)
                || b.start_ids.iter().all(|&id| rows.has(id))
        };
        for q in &mut self.shards {
            while q
                .held
                .front()
                .is_some_and(|(need, b)| due(&self.rows, need, b))
            {
                let Some((_, mut b)) = q.held.pop_front() else {
                    break;
                };
                b.context.clear();
                b.context.reserve(b.len() * NUM_CONTEXT);
                for &id in &b.start_ids {
                    match self.rows.take(id) {
                        Some(row) => b.context.extend_from_slice(&row),
                        None => {
                            self.missing += 1;
                            b.context.extend_from_slice(&[0.0f32; NUM_CONTEXT]);
                        }
                    }
                }
                // A batch from an extractor that gave no ids (never the case
                // when the stage runs) still gets a full matrix.
                b.context.resize(b.len() * NUM_CONTEXT, 0.0);
                ready.push(b);
            }
        }
    }

    /// Counters so far.
    pub(crate) fn report(&self) -> ContextReport {
        ContextReport {
            table: self.rows.stats(),
            missing: self.missing,
            busy: Duration::ZERO,
        }
    }
}

/// Runs the stage until every worker has hung up, forwarding filled batches
/// to `tx` (the consumer).
pub(crate) fn context_loop(
    rx: Receiver<FlowBatch>,
    tx: Sender<FlowBatch>,
    cfg: ContextConfig,
    shards: usize,
) -> ContextReport {
    let started = Instant::now();
    let mut blocked = Duration::ZERO;
    let mut stage = ContextStage::new(cfg, shards);
    let mut ready = Vec::new();
    let mut open = true;
    let mut published = ContextStats::default();
    loop {
        match recv_until(&rx, None, &mut blocked) {
            Recv::Item(b) => stage.accept(b, &mut ready),
            _ => {
                stage.finish(&mut ready);
                forward(&tx, &mut ready, open, &mut blocked);
                break;
            }
        }
        open = forward(&tx, &mut ready, open, &mut blocked);
        publish(&mut published, stage.rows.stats());
    }
    publish(&mut published, stage.rows.stats());
    let mut report = stage.report();
    report.busy = started.elapsed().saturating_sub(blocked);
    report
}

/// Sends the ready batches on (dropping them once the consumer is gone).
fn forward(
    tx: &Sender<FlowBatch>,
    ready: &mut Vec<FlowBatch>,
    mut open: bool,
    blocked: &mut Duration,
) -> bool {
    for b in ready.drain(..) {
        if open {
            open = send_timed(tx, b, blocked);
        }
    }
    open
}

/// Moves the context metrics to `now`.
fn publish(published: &mut ContextStats, now: ContextStats) {
    metrics::counter!("tapstream_context_evictions_total")
        .increment(now.evictions.saturating_sub(published.evictions));
    metrics::counter!("tapstream_context_emergency_total").increment(
        now.emergency_entries
            .saturating_sub(published.emergency_entries),
    );
    metrics::gauge!("tapstream_context_entries").set(now.entries as f64);
    *published = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(id: u64, order: u64, src: u8) -> FlowStart {
        let mut a = [0u8; 16];
        a[0] = src;
        FlowStart {
            id,
            order,
            ts_us: order as i64,
            src: a,
            dst: [9; 16],
            dport: 80,
            proto: 6,
            v6: false,
            outcome: None,
        }
    }

    fn batch(
        shard: u32,
        starts: Vec<FlowStart>,
        ended: &[u64],
        watermark: Option<u64>,
    ) -> FlowBatch {
        let mut b = FlowBatch {
            shard: Some(shard),
            starts,
            watermark,
            ..FlowBatch::default()
        };
        for &id in ended {
            b.metas.push(tapstream_ingest::FlowMeta {
                flow_id: id,
                src: [0; 16],
                dst: [0; 16],
                sport: 0,
                dport: 0,
                proto: 6,
                v6: false,
                icmp_type: 0,
                icmp_code: 0,
                start_us: 0,
                last_us: 0,
                pkts_fwd: 1,
                pkts_bwd: 0,
                bytes_fwd: 0,
                bytes_bwd: 0,
                reason: tapstream_ingest::EndReason::EndOfInput,
            });
            b.start_ids.push(id);
        }
        b
    }

    /// Every flow's row, by start id, when the batches of `shards` shards
    /// arrive in `arrival` order.
    fn rows(shards: usize, arrival: &[FlowBatch]) -> Vec<(u64, Vec<f32>)> {
        let mut st = ContextStage::new(ContextConfig::default(), shards);
        let mut ready = Vec::new();
        for b in arrival {
            st.accept(b.clone(), &mut ready);
        }
        st.finish(&mut ready);
        let mut out: Vec<(u64, Vec<f32>)> = ready
            .iter()
            .flat_map(|b| {
                b.start_ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| (*id, b.context_row(i).unwrap().to_vec()))
            })
            .collect();
        out.sort_by_key(|a| a.0);
        out
    }

    #[test]
    fn starts_are_applied_in_input_order_whatever_the_arrival() {
        // Shard 0 starts flows 1 (order 10) and 3 (order 30); shard 1
        // starts 2 (order 20) and 4 (order 1<<32, the next chunk).
        let a0 = batch(0, vec![start(1, 10, 1), start(3, 30, 1)], &[1], Some(1));
        let a1 = batch(0, vec![], &[3], Some(2));
        let b0 = batch(1, vec![start(2, 20, 1)], &[2], Some(1));
        let b1 = batch(1, vec![start(4, 1 << 32, 1)], &[4], Some(2));
        let x = rows(2, &[a0.clone(), a1.clone(), b0.clone(), b1.clone()]);
        let y = rows(2, &[b0, a0, b1, a1]);
        assert_eq!(x, y);
        assert_eq!(x.len(), 4);
        // Flow 3 saw flows 1 and 2 from the same source.
        let src_flows = tapstream_kernels::context::context_index("ctx_src_flows_100s").unwrap();
        assert_eq!(x[2].1[src_flows].round(), 2.0);
        assert_eq!(x[0].1[src_flows], 0.0);
    }

    #[test]
    fn three_shards_merge_into_the_one_shard_sequence() {
        // 300 starts over 3 chunks, dealt to shards by a fixed scramble; the
        // sources repeat so the rows depend on the order applied.
        let all: Vec<FlowStart> = (0..300u64)
            .map(|i| start(i + 1, (i / 100) << 32 | (i % 100), (i % 7) as u8))
            .collect();
        let run = |shards: usize| {
            let mut arrival = Vec::new();
            for chunk in 0..3u64 {
                for shard in 0..shards as u32 {
                    let mine: Vec<FlowStart> = all
                        .iter()
                        .filter(|s| s.order >> 32 == chunk)
                        .filter(|s| (s.id * 7919 % shards as u64) as u32 == shard)
                        .copied()
                        .collect();
                    let ended: Vec<u64> = mine.iter().map(|s| s.id).collect();
                    arrival.push(batch(shard, mine, &ended, Some(chunk + 1)));
                }
            }
            rows(shards, &arrival)
        };
        let one = run(1);
        assert_eq!(one.len(), 300);
        assert_eq!(run(3), one);
        assert_eq!(run(2), one);
    }

    #[test]
    fn a_batch_waits_for_every_shard_and_keeps_its_shards_order() {
        let mut st = ContextStage::new(ContextConfig::default(), 2);
        let mut ready = Vec::new();
        st.accept(batch(0, vec![start(1, 1, 1)], &[], None), &mut ready);
        // It ends no flow: nothing to wait for.
        assert_eq!(ready.len(), 1);
        st.accept(batch(0, vec![], &[1], Some(1)), &mut ready);
        st.accept(
            batch(0, vec![start(2, 1 << 32, 1)], &[], Some(2)),
            &mut ready,
        );
        assert_eq!(
            ready.len(),
            1,
            "shard 1 has not passed chunk 0: flow 1's start waits"
        );
        st.accept(batch(1, vec![], &[], Some(1)), &mut ready);
        assert_eq!(
            ready.len(),
            4,
            "flow 1's batch, then the next of shard 0, then shard 1's"
        );
        assert_eq!(ready[1].start_ids, vec![1]);
        assert_eq!(ready[1].context.len(), NUM_CONTEXT);
        assert_eq!(ready[2].watermark, Some(2));
        assert_eq!(st.report().missing, 0);
    }

    #[test]
    fn flows_whose_starts_are_applied_go_on_before_the_chunk_ends() {
        let mut st = ContextStage::new(ContextConfig::default(), 1);
        let mut ready = Vec::new();
        st.accept(
            batch(0, vec![start(1, 1, 1), start(2, 2, 1)], &[], Some(1)),
            &mut ready,
        );
        // A burst of timeouts mid-chunk: no watermark yet, but both starts
        // were applied.
        st.accept(batch(0, vec![], &[1, 2], None), &mut ready);
        assert_eq!(ready.len(), 2);
        assert_eq!(ready[1].context.len(), 2 * NUM_CONTEXT);
    }
}
