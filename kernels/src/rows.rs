//! Sources of flow rows: input that is already one feature row per flow
//! (the Kafka `flows` format), scored without decoders or flow workers.
//!
//! Such a source implements [`FlowSource`] and hands rows to a
//! [`FlowWriter`], which batches them for the consumer stage and puts a
//! [`Mark`] on every batch: a row is a whole flow, so an input message is
//! settled once its row is scored and alerted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use tapstream_ingest::queue::send_timed;
use tapstream_ingest::source::{send_due, Progress};
use tapstream_ingest::{FlowMeta, SourceReport};

use crate::batch::{FlowBatch, Mark};
use crate::schema::NUM_FEATURES;

/// A source of flow rows; see the module docs.
pub trait FlowSource: Send {
    /// What is read, for summaries.
    fn describe(&self) -> String;

    /// Reads until the input ends or the source is told to stop, handing
    /// every row to `out`; returns what it counted.
    fn run(self: Box<Self>, out: FlowWriter) -> SourceReport;
}

/// A flow-row source's side of the queue to the consumer stage.
#[derive(Debug)]
pub struct FlowWriter {
    tx: Sender<FlowBatch>,
    pool: Receiver<FlowBatch>,
    batch: FlowBatch,
    max_flows: usize,
    opened: Instant,
    /// Every message numbered below this is in the batch or an earlier one.
    next_origin: u64,
    sent_origin: u64,
    sent_at: Instant,
    /// The last flush request, carried by the marks.
    flushed: u64,
    sent: u64,
    /// Time spent waiting on the queue.
    blocked: Duration,
    open: bool,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
}

impl FlowWriter {
    /// A writer of batches of at most `max_flows` rows to `tx`, taking
    /// empty batches back from `pool`. `stop` is set when the pipeline fails
    /// downstream; `progress` is shared with the caller.
    pub fn new(
        tx: Sender<FlowBatch>,
        pool: Receiver<FlowBatch>,
        max_flows: usize,
        stop: Arc<AtomicBool>,
        progress: Arc<Progress>,
    ) -> Self {
        FlowWriter {
            tx,
            pool,
            batch: FlowBatch::with_capacity(max_flows.min(4096)),
            max_flows: max_flows.max(1),
            opened: Instant::now(),
            next_origin: 0,
            sent_origin: 0,
            sent_at: Instant::now(),
            flushed: 0,
            sent: 0,
            blocked: Duration::ZERO,
            open: true,
            stop,
            progress,
        }
    }

    /// Batches sent so far.
    pub fn chunk_number(&self) -> u64 {
        self.sent
    }

    /// Adds a flow's row, sending the batch on when full. False once the
    /// consumer takes no more.
    pub fn push(&mut self, meta: FlowMeta, row: &[f64; NUM_FEATURES]) -> bool {
        if self.batch.is_empty() {
            self.opened = Instant::now();
        }
        self.batch.push(meta, row);
        if self.batch.len() >= self.max_flows {
            return self.send();
        }
        self.open
    }

    /// Every message numbered below `next_origin` is in the batch or sent.
    pub fn complete_below(&mut self, next_origin: u64) {
        self.next_origin = self.next_origin.max(next_origin);
    }

    /// Sends the batch when it has waited
    /// [`FLUSH_WALL`](tapstream_ingest::source::FLUSH_WALL), or when messages
    /// completed without rows and nothing was sent for that long.
    pub fn poll(&mut self) -> bool {
        let waiting = (!self.batch.is_empty()).then_some(self.opened);
        let due = send_due(waiting, self.next_origin > self.sent_origin, self.sent_at);
        if due {
            self.send()
        } else {
            self.open
        }
    }

    /// Sends the batch (even an empty one) with its mark.
    pub fn send(&mut self) -> bool {
        if !self.open {
            return false;
        }
        let fresh = self
            .pool
            .try_recv()
            .unwrap_or_else(|_| FlowBatch::with_capacity(self.max_flows.min(4096)));
        let mut full = std::mem::replace(&mut self.batch, fresh);
        full.mark = Some(Mark {
            shard: 0,
            safe: self.next_origin,
            flushed: self.flushed,
        });
        self.sent_origin = self.next_origin;
        self.sent_at = Instant::now();
        self.sent += 1;
        self.open = send_timed(&self.tx, full, &mut self.blocked);
        self.open
    }

    /// Sends what is pending with flush request `id`'s mark (rows hold no
    /// state, so there is nothing else to end).
    pub fn flush(&mut self, id: u64) -> bool {
        self.flushed = id;
        self.send()
    }

    /// Ends the writer; rows not yet sent are dropped (a source sends what
    /// must arrive with [`flush`](Self::flush) first). Returns the time
    /// spent waiting on the queue.
    pub fn finish(self) -> Duration {
        self.blocked
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;
    use tapstream_ingest::EndReason;

    fn meta() -> FlowMeta {
        FlowMeta {
            flow_id: 1,
            src: [0; 16],
            dst: [0; 16],
            sport: 1,
            dport: 2,
            proto: 17,
            v6: false,
            icmp_type: 0,
            icmp_code: 0,
            start_us: 0,
            last_us: 0,
            pkts_fwd: 1,
            pkts_bwd: 0,
            bytes_fwd: 60,
            bytes_bwd: 0,
            reason: EndReason::EndOfInput,
        }
    }

    #[test]
    fn every_batch_carries_a_mark_and_flushes_are_numbered() {
        let (tx, rx) = bounded(8);
        let (_pool_tx, pool_rx) = bounded(8);
        let mut w = FlowWriter::new(
            tx,
            pool_rx,
            2,
            Arc::new(AtomicBool::new(false)),
            Arc::new(Progress::default()),
        );
        let row = [0.0; NUM_FEATURES];
        w.push(meta(), &row);
        w.complete_below(1);
        assert!(w.push(meta(), &row));
        let full = rx.try_recv().unwrap();
        assert_eq!(full.len(), 2);
        assert_eq!(
            full.mark,
            Some(Mark {
                shard: 0,
                safe: 1,
                flushed: 0
            })
        );
        w.complete_below(3);
        assert!(w.flush(4));
        let flushed = rx.try_recv().unwrap();
        assert_eq!(
            (flushed.len(), flushed.mark.map(|m| (m.safe, m.flushed))),
            (0, Some((3, 4)))
        );
        assert_eq!(w.chunk_number(), 2);
    }
}
