//! The consumer's context: statistics (read and commit lag) and rebalance
//! handling (a revocation flushes and commits).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;

use super::lock;
use super::state::ReaderState;

/// The consumer's context: rebalance handling and statistics.
pub(super) struct SourceContext {
    pub(super) state: Mutex<Option<ReaderState>>,
    /// Set once the reader is done: a revocation while closing only leaves.
    pub(super) closing: AtomicBool,
    /// Set on each assignment (the idle clock restarts then).
    pub(super) assigned: AtomicBool,
    /// Read lag summed over the assigned partitions, from the last
    /// statistics report.
    pub(super) lag: AtomicI64,
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        let mut total = 0i64;
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1: the internal "unassigned" partition, or not known yet.
                if *partition < 0 || p.hi_offset < 0 {
                    continue;
                }
                let labels = [
                    ("topic", topic.clone()),
                    ("partition", partition.to_string()),
                ];
                if p.app_offset >= 0 {
                    let read = (p.hi_offset - p.app_offset).max(0);
                    total += read;
                    metrics::gauge!("tapstream_kafka_read_lag_messages", &labels).set(read as f64);
                }
                // Before any commit, a restart reads from the log start.
                let from = if p.committed_offset >= 0 {
                    p.committed_offset
                } else {
                    p.lo_offset
                };
                if from >= 0 {
                    let commit = (p.hi_offset - from).max(0);
                    metrics::gauge!("tapstream_kafka_commit_lag_messages", &labels)
                        .set(commit as f64);
                }
            }
        }
        self.lag.store(total, Ordering::Relaxed);
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                if self.closing.load(Ordering::Relaxed) {
                    return;
                }
                let mut g = lock(&self.state);
                let Some(st) = g.as_mut() else { return };
                st.kafka.revocations += 1;
                metrics::counter!("tapstream_kafka_rebalances_total").increment(1);
                let lost = consumer.assignment_lost();
                tracing::info!(
                    message = "partitions revoked: ending flows, delivering alerts, committing",
                    partitions = tpl.count(),
                    lost
                );
                if lost {
                    // Another member owns them already: commits would be
                    // refused. The flows' alerts still go out.
                    let _ = st.flush();
                } else {
                    st.flush_and_commit(consumer);
                }
                st.revoked();
            }
            Rebalance::Assign(tpl) => {
                let parts: Vec<String> = tpl
                    .elements()
                    .iter()
                    .map(|e| format!("{}/{}", e.topic(), e.partition()))
                    .collect();
                tracing::info!(message = "partitions assigned", partitions = %parts.join(" "));
                self.assigned.store(true, Ordering::Relaxed);
                if let Some(st) = lock(&self.state).as_mut() {
                    let keys: Vec<(String, i32)> = tpl
                        .elements()
                        .iter()
                        .map(|e| (e.topic().to_owned(), e.partition()))
                        .collect();
                    st.assigned(&keys);
                }
            }
            Rebalance::Error(e) => {
                tracing::warn!(message = "rebalance error", error = %e);
            }
        }
    }
}
