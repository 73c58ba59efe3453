//! When to run the model: a batch is full, or its oldest row has waited long
//! enough.
//!
//! Inference is much cheaper per row in large batches, but a flow that ends
//! on a quiet link must not wait indefinitely for company. [`Batcher`] holds
//! that policy as pure bookkeeping: it counts pending rows and remembers when
//! the first one arrived, and the caller passes in the current time. It owns
//! no data and reads no clock, so the inference stage keeps its buffers where
//! it likes and the tests drive time by hand.

use std::time::{Duration, Instant};

/// Why a batch should run now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// `max_rows` rows are pending.
    Full,
    /// The oldest pending row has waited `max_delay`.
    Deadline,
}

/// Accumulates rows up to a size or a deadline, whichever comes first.
///
/// Typical use in the inference stage:
///
/// ```
/// # use std::time::{Duration, Instant};
/// # use tapstream_inference::{Batcher, Flush};
/// let mut batcher = Batcher::new(1024, Duration::from_millis(50));
/// let now = Instant::now();
/// // A batch of 3000 rows arrives: take what fits, run when full.
/// let mut left = 3000;
/// let mut runs = 0;
/// while left > 0 {
///     let take = left.min(batcher.room());
///     // ... append `take` rows to the engine's input buffer ...
///     left -= take;
///     if batcher.add(take, now).is_some() {
///         let rows = batcher.take(); // run the engine on `rows` rows
///         runs += 1;
///     }
/// }
/// assert_eq!((runs, batcher.pending()), (2, 952));
/// // Then wait for more input until `batcher.deadline()`; on time-out:
/// if batcher.poll(now + Duration::from_millis(50)) == Some(Flush::Deadline) {
///     assert_eq!(batcher.take(), 952);
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Batcher {
    max_rows: usize,
    max_delay: Duration,
    pending: usize,
    first_at: Option<Instant>,
}

impl Batcher {
    /// A batcher that flushes at `max_rows` rows (at least 1; 0 is read as 1)
    /// or when the oldest pending row is `max_delay` old. A zero `max_delay`
    /// flushes whatever is pending at every [`add`](Self::add).
    pub fn new(max_rows: usize, max_delay: Duration) -> Self {
        Batcher {
            max_rows: max_rows.max(1),
            max_delay,
            pending: 0,
            first_at: None,
        }
    }

    /// The size limit.
    pub fn max_rows(&self) -> usize {
        self.max_rows
    }

    /// The delay limit.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// Rows pending since the last [`take`](Self::take).
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// `true` when no row is pending.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Rows that can still be added before the batch is full. Add at most
    /// this many, so no batch exceeds `max_rows`.
    pub fn room(&self) -> usize {
        self.max_rows.saturating_sub(self.pending)
    }

    /// Records `rows` rows arriving at `now` and says whether the batch
    /// should run now (as [`poll`](Self::poll) would). Adding 0 rows only
    /// checks.
    pub fn add(&mut self, rows: usize, now: Instant) -> Option<Flush> {
        if rows > 0 {
            self.pending = self.pending.saturating_add(rows);
            self.first_at.get_or_insert(now);
        }
        self.poll(now)
    }

    /// Whether the batch should run at `now`: [`Flush::Full`] once
    /// `max_rows` rows are pending (more if the caller added more than
    /// [`room`](Self::room)), else [`Flush::Deadline`] once the oldest pending
    /// row has waited `max_delay`, else `None`. Call it when waiting for
    /// input times out.
    pub fn poll(&self, now: Instant) -> Option<Flush> {
        if self.pending >= self.max_rows {
            return Some(Flush::Full);
        }
        match self.deadline() {
            Some(due) if now >= due => Some(Flush::Deadline),
            _ => None,
        }
    }

    /// `true` when the batch should run at `now` (full or due).
    pub fn ready(&self, now: Instant) -> bool {
        self.poll(now).is_some()
    }

    /// When the pending rows must run at the latest: the time to wait for
    /// further input until. `None` when nothing is pending (or the deadline
    /// is too far away to represent), so wait without a time-out.
    pub fn deadline(&self) -> Option<Instant> {
        self.first_at
            .and_then(|t| t.checked_add(self.max_delay))
            .filter(|_| self.pending > 0)
    }

    /// Starts a new batch and returns how many rows the finished one held.
    pub fn take(&mut self) -> usize {
        self.first_at = None;
        std::mem::take(&mut self.pending)
    }

    /// Starts a new batch, forgetting the pending count (after the caller
    /// has run or dropped it).
    pub fn reset(&mut self) {
        self.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn flushes_when_full() {
        let t0 = Instant::now();
        let mut b = Batcher::new(4, 50 * MS);
        assert_eq!(b.room(), 4);
        assert_eq!(b.add(3, t0), None);
        assert_eq!(b.room(), 1);
        assert_eq!(b.add(1, t0 + MS), Some(Flush::Full));
        assert!(b.ready(t0 + MS));
        assert_eq!(b.poll(t0 + MS), Some(Flush::Full));
        assert_eq!(b.take(), 4);
        assert!(b.is_empty());
        assert!(!b.ready(t0 + 1000 * MS));
        assert_eq!(b.deadline(), None);
        // Overfilling is reported as full, and counted.
        assert_eq!(b.add(6, t0 + 2 * MS), Some(Flush::Full));
        assert_eq!(b.take(), 6);
    }

    #[test]
    fn flushes_at_deadline_of_oldest_row() {
        let t0 = Instant::now();
        let mut b = Batcher::new(100, 50 * MS);
        assert_eq!(b.poll(t0 + 1000 * MS), None, "empty never comes due");
        assert_eq!(b.add(1, t0), None);
        assert_eq!(b.deadline(), Some(t0 + 50 * MS));
        // A later row does not move the deadline.
        assert_eq!(b.add(1, t0 + 40 * MS), None);
        assert_eq!(b.deadline(), Some(t0 + 50 * MS));
        assert_eq!(b.poll(t0 + 49 * MS), None);
        assert_eq!(b.poll(t0 + 50 * MS), Some(Flush::Deadline));
        // A row arriving after the deadline reports it too.
        assert_eq!(b.add(1, t0 + 60 * MS), Some(Flush::Deadline));
        assert_eq!(b.take(), 3);
        // The next batch's clock starts at its own first row.
        assert_eq!(b.add(2, t0 + 70 * MS), None);
        assert_eq!(b.deadline(), Some(t0 + 120 * MS));
        assert_eq!(b.add(0, t0 + 119 * MS), None);
        assert_eq!(b.add(0, t0 + 120 * MS), Some(Flush::Deadline));
        assert!(b.ready(t0 + 120 * MS));
        b.reset();
        assert!(b.is_empty());
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn full_wins_over_deadline_and_zero_delay_flushes_at_once() {
        let t0 = Instant::now();
        let mut b = Batcher::new(2, 10 * MS);
        b.add(1, t0);
        assert_eq!(b.add(1, t0 + 20 * MS), Some(Flush::Full));
        b.take();

        let mut b = Batcher::new(0, Duration::ZERO);
        assert_eq!(b.max_rows(), 1);
        let mut b2 = Batcher::new(10, Duration::ZERO);
        assert_eq!(b2.add(1, t0), Some(Flush::Deadline));
        assert_eq!(b.add(1, t0), Some(Flush::Full));
    }

    #[test]
    fn huge_delay_never_overflows() {
        let t0 = Instant::now();
        let mut b = Batcher::new(10, Duration::MAX);
        assert_eq!(b.add(1, t0), None);
        assert_eq!(b.deadline(), None);
        assert_eq!(b.poll(t0 + 1_000_000 * MS), None);
        assert_eq!(b.pending(), 1);
    }
}
