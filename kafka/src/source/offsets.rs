//! Which offsets may be committed: consumed messages by origin number, per
//! partition.
//!
//! Every consumed message gets an *origin*, a number that grows in the
//! order messages were read (across partitions). The pipeline reports how
//! far origins are settled (see [`Settled`](super::Settled)); this module
//! turns "every message with origin below S is settled" into the offset to
//! commit for each partition: one past the last message of that partition
//! known to be below S. It keeps one sample per partition and chunk of
//! packets, plus the last message, so memory follows the number of chunks
//! in flight, not the number of messages; between samples it errs on the
//! side of committing less.

use std::collections::{BTreeMap, VecDeque};

/// A partition of a topic.
pub type TopicPartition = (String, i32);

#[derive(Debug)]
struct Part {
    /// `(origin, offset)` of the first message read in each chunk, oldest
    /// first; all with origins at or above the last settled bound.
    samples: VecDeque<(u64, i64)>,
    /// The chunk number of the newest sample.
    sampled_chunk: u64,
    /// The last message read.
    last: (u64, i64),
    /// The offset last committed (or found committed), if any.
    committed: Option<i64>,
}

/// Consumed messages of the assigned partitions.
#[derive(Debug, Default)]
pub struct Offsets {
    parts: BTreeMap<TopicPartition, Part>,
    next_origin: u64,
}

impl Offsets {
    /// Numbers a message read from `topic`/`partition` at `offset` while
    /// chunk number `chunk` is being filled; returns its origin.
    pub fn record(&mut self, topic: &str, partition: i32, offset: i64, chunk: u64) -> u64 {
        let origin = self.next_origin;
        self.next_origin += 1;
        let key = (topic.to_owned(), partition);
        match self.parts.get_mut(&key) {
            Some(p) => {
                if p.sampled_chunk != chunk || p.samples.is_empty() {
                    p.samples.push_back((origin, offset));
                    p.sampled_chunk = chunk;
                }
                p.last = (origin, offset);
            }
            None => {
                self.parts.insert(
                    key,
                    Part {
                        samples: VecDeque::from([(origin, offset)]),
                        sampled_chunk: chunk,
                        last: (origin, offset),
                        committed: None,
                    },
                );
            }
        }
        origin
    }

    /// The origin the next message will get.
    pub fn next_origin(&self) -> u64 {
        self.next_origin
    }

    /// Offsets to commit now that every origin below `safe` is settled:
    /// `(topic, partition, offset)` for each partition whose committable
    /// offset moved past its last commit. Call [`committed`](Self::committed)
    /// once the commit succeeded.
    pub fn due(&mut self, safe: u64) -> Vec<(String, i32, i64)> {
        let mut out = Vec::new();
        for ((topic, partition), p) in &mut self.parts {
            let mut upto = None;
            while let Some(&(origin, offset)) = p.samples.front() {
                if origin >= safe {
                    break;
                }
                upto = Some(offset + 1);
                p.samples.pop_front();
            }
            if p.last.0 < safe {
                upto = Some(p.last.1 + 1);
                p.samples.clear();
            }
            if let Some(o) = upto {
                if p.committed.is_none_or(|c| o > c) {
                    out.push((topic.clone(), *partition, o));
                }
            }
        }
        out
    }

    /// Records a successful commit.
    pub fn committed(&mut self, done: &[(String, i32, i64)]) {
        for (topic, partition, offset) in done {
            if let Some(p) = self.parts.get_mut(&(topic.clone(), *partition)) {
                p.committed = Some(p.committed.map_or(*offset, |c| c.max(*offset)));
            }
        }
    }

    /// Forgets every partition (after they were revoked).
    pub fn clear(&mut self) {
        self.parts.clear();
    }

    /// Partitions read from since the last [`clear`](Self::clear).
    #[cfg(test)]
    pub fn partitions(&self) -> usize {
        self.parts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_stop_at_the_first_unsettled_sample() {
        let mut o = Offsets::default();
        // Partition 0: offsets 100.. in chunks 0, 0, 1, 1, 2; partition 1
        // interleaved.
        let a = o.record("t", 0, 100, 0); // origin 0
        let _ = o.record("t", 1, 7, 0); // 1
        let _ = o.record("t", 0, 101, 0); // 2 (not sampled)
        let c = o.record("t", 0, 102, 1); // 3
        let _ = o.record("t", 0, 103, 1); // 4
        let e = o.record("t", 0, 104, 2); // 5
        assert_eq!((a, c, e), (0, 3, 5));
        assert!(o.due(0).is_empty());
        // Origin 0 settled: message 100 is committable (next offset 101).
        assert_eq!(o.due(1), vec![("t".into(), 0, 101)]);
        // Origins below 4 settled: the sample at origin 3 (offset 102) is the
        // last known settled one; 103 (origin 4) is not. Partition 1's only
        // message (origin 1) is settled too.
        let due = o.due(4);
        assert_eq!(due, vec![("t".into(), 0, 103), ("t".into(), 1, 8)]);
        o.committed(&due);
        assert!(o.due(4).is_empty(), "nothing new to commit");
        // Everything settled: one past the last message.
        assert_eq!(o.due(6), vec![("t".into(), 0, 105)]);
    }

    #[test]
    fn a_cleared_tracker_commits_nothing_and_keeps_numbering() {
        let mut o = Offsets::default();
        o.record("t", 0, 5, 0);
        o.clear();
        assert!(o.due(u64::MAX).is_empty());
        assert_eq!(o.record("t", 0, 5, 3), 1);
        assert_eq!(o.partitions(), 1);
    }
}
