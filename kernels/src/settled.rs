//! How far the input is settled: the shards' marks whose flows have all been
//! scored and whose alerts the sink has acknowledged.
//!
//! Why this exists: a Kafka offset may be committed only once everything
//! that message caused is durable. The flow workers send a [`Mark`] after
//! the flows they ended; the alert stage passes marks on behind those flows'
//! alerts, and the sink thread publishes them here after a successful flush
//! (which, for the Kafka sink, waits for the broker's acknowledgements). The
//! source reads the result to choose its commits.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::batch::Mark;

/// One shard's settled state.
#[derive(Clone, Copy, Debug, Default)]
struct ShardState {
    /// Messages numbered below this are settled in the shard.
    safe: u64,
    /// The last flush the shard carried out and got settled.
    flushed: u64,
    /// `safe` as it was just before that flush.
    safe_at_flush: u64,
}

/// Settled marks of every shard, shared by the sink thread and the source.
#[derive(Debug)]
pub struct Settled {
    shards: Mutex<Vec<ShardState>>,
    changed: Condvar,
}

impl Settled {
    /// Nothing settled yet, for `shards` shards.
    pub fn new(shards: usize) -> Self {
        Settled {
            shards: Mutex::new(vec![ShardState::default(); shards.max(1)]),
            changed: Condvar::new(),
        }
    }

    /// Records marks whose flows are now durable (in the order they were
    /// sent; a mark for an unknown shard is ignored).
    pub fn publish(&self, marks: &[Mark]) {
        if marks.is_empty() {
            return;
        }
        let mut shards = self.shards.lock().unwrap_or_else(PoisonError::into_inner);
        for m in marks {
            let Some(s) = shards.get_mut(m.shard as usize) else {
                continue;
            };
            if m.flushed > s.flushed {
                s.flushed = m.flushed;
                s.safe_at_flush = m.safe;
            }
            s.safe = s.safe.max(m.safe);
        }
        drop(shards);
        self.changed.notify_all();
    }

    /// Messages numbered below this are settled in every shard.
    pub fn safe(&self) -> u64 {
        let shards = self.shards.lock().unwrap_or_else(PoisonError::into_inner);
        shards.iter().map(|s| s.safe).min().unwrap_or(0)
    }

    /// Waits until every shard has settled flush `flush`, then returns what
    /// was settled just before it (the smallest over the shards). `None`
    /// when `timeout` passes first or `give_up` says so (checked every
    /// 50 ms).
    pub fn wait_flushed(
        &self,
        flush: u64,
        timeout: Duration,
        give_up: impl Fn() -> bool,
    ) -> Option<u64> {
        let deadline = Instant::now() + timeout;
        let mut shards = self.shards.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if shards.iter().all(|s| s.flushed >= flush) {
                return shards.iter().map(|s| s.safe_at_flush).min();
            }
            let now = Instant::now();
            if now >= deadline || give_up() {
                return None;
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            shards = self
                .changed
                .wait_timeout(shards, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(shard: u32, safe: u64, flushed: u64) -> Mark {
        Mark {
            shard,
            safe,
            flushed,
        }
    }

    #[test]
    fn safe_is_the_smallest_over_shards_and_never_moves_back() {
        let s = Settled::new(2);
        assert_eq!(s.safe(), 0);
        s.publish(&[mark(0, 10, 0)]);
        assert_eq!(s.safe(), 0, "shard 1 has settled nothing yet");
        s.publish(&[mark(1, 4, 0), mark(1, 7, 0)]);
        assert_eq!(s.safe(), 7);
        s.publish(&[mark(1, 5, 0), mark(9, 100, 0)]);
        assert_eq!(s.safe(), 7);
    }

    #[test]
    fn a_flush_reports_what_was_settled_before_it() {
        let s = Settled::new(2);
        s.publish(&[mark(0, 3, 1), mark(0, 20, 1)]);
        assert_eq!(s.wait_flushed(1, Duration::from_millis(10), || false), None);
        s.publish(&[mark(1, 5, 1)]);
        assert_eq!(s.wait_flushed(1, Duration::from_secs(1), || false), Some(3));
        assert_eq!(s.wait_flushed(2, Duration::from_secs(5), || true), None);
    }

    #[test]
    fn a_waiter_wakes_when_the_last_shard_settles() {
        let s = std::sync::Arc::new(Settled::new(1));
        let t = std::thread::spawn({
            let s = s.clone();
            move || s.wait_flushed(1, Duration::from_secs(10), || false)
        });
        std::thread::sleep(Duration::from_millis(20));
        s.publish(&[mark(0, 42, 1)]);
        assert_eq!(t.join().ok().flatten(), Some(42));
    }
}
