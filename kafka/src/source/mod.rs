//! The Kafka source: packets from topics, read as a member of a consumer
//! group, with offsets committed only for settled messages.
//!
//! Why it is built this way: Kafka is tapstream's scale-out story, so the
//! source must let instances come and go without losing an alert. Each
//! message gets an *origin* number ([`Offsets`]); workers report, after
//! each chunk, the oldest origin an open flow started in; the alert stage
//! passes those marks on only once the alerts before them are acknowledged
//! ([`Settled`]). A commit therefore never covers a message whose flows are
//! still open or whose alerts are not durable (at-least-once; alerts carry
//! a stable `flow_id` so duplicates can be recognised downstream).
//!
//! Partitions are read in time order: each message's packets wait in a
//! queue per partition, and the packet with the earliest capture time goes
//! first. A partition with nothing queued holds the others back for at most
//! `order_wait` (or until `order_buffer` bytes are queued). Flow timeouts
//! run on packet time, so without this a partition fetched ahead of the
//! others would time out the flows of those behind it; with it, one
//! consumer that owns every partition sees the capture in its own order.
//!
//! On partition revocation and on shutdown (SIGTERM, SIGINT, or
//! `exit_after_idle`), every flow is ended and flushed, its alerts
//! delivered, and the offsets committed as they stood *before* that flush:
//! the next owner reads the still-open flows again from their first packet
//! and scores them whole (their early, flushed alerts share the flow's
//! `flow_id`). The eager rebalance protocol is used (every rebalance
//! revokes every partition), so "the flows of the revoked partitions" is
//! every flow.

mod context;
mod offsets;
mod state;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use tapstream_connectors::kafka::{
    KafkaClientConfig, KafkaConfigError, KafkaFormat, SourceSettings, CONSUMER_FORCED,
};
use tapstream_ingest::source::{ChunkWriter, PacketSource};
use tapstream_ingest::SourceReport;
use tapstream_kernels::{FlowSource, FlowWriter, Settled};

use context::SourceContext;
use state::{Out, ReaderState};

/// Quiet time after which the source says it has caught up (logged, info).
const CAUGHT_UP: Duration = Duration::from_secs(1);

/// Defaults a user may override in `[kafka.properties]`.
const DEFAULTS: &[(&str, &str)] = &[
    ("auto.offset.reset", "earliest"),
    ("statistics.interval.ms", "5000"),
];

/// Why the source could not start (the cause is the error's source, so
/// `{:#}` prints each part once).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The client settings were refused.
    #[error("Kafka client settings")]
    Config(#[from] KafkaConfigError),
    /// The consumer could not be created.
    #[error("creating the Kafka consumer")]
    Create(#[source] rdkafka::error::KafkaError),
    /// The subscription was refused.
    #[error("subscribing to {topics}")]
    Subscribe {
        /// The topics.
        topics: String,
        /// librdkafka's reason.
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

/// The source, subscribed and ready to run: a `PacketSource` for the
/// `packets` format, a `FlowSource` for `flows`.
pub struct KafkaSource {
    consumer: BaseConsumer<SourceContext>,
    settings: SourceSettings,
    settled: Arc<Settled>,
    term: Arc<AtomicBool>,
}

impl KafkaSource {
    /// Connects and subscribes. `settled` must be the alert stage's, and
    /// `term` is set by the caller's SIGTERM/SIGINT handler.
    pub fn new(
        client: &KafkaClientConfig,
        settings: &SourceSettings,
        settled: Arc<Settled>,
        term: Arc<AtomicBool>,
    ) -> Result<Self, SourceError> {
        let mut c = crate::client_config(client, DEFAULTS, CONSUMER_FORCED)?;
        c.set("group.id", &settings.group_id);
        let ctx = SourceContext {
            state: Mutex::new(None),
            closing: AtomicBool::new(false),
            assigned: AtomicBool::new(false),
            lag: AtomicI64::new(-1),
        };
        let consumer: BaseConsumer<SourceContext> =
            c.create_with_context(ctx).map_err(SourceError::Create)?;
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| SourceError::Subscribe {
                topics: settings.topics.join(", "),
                source,
            })?;
        Ok(KafkaSource {
            consumer,
            settings: settings.clone(),
            settled,
            term,
        })
    }

    /// True for the `flows` format (rows, not packets).
    fn is_flows(&self) -> bool {
        self.settings.format == KafkaFormat::Flows
    }

    /// Reads until SIGTERM/SIGINT, `exit_after_idle`, or the pipeline
    /// stopping; hands packets or rows to `out`. Runs on the reader thread.
    fn run_with(self, out: Out) -> SourceReport {
        let started = Instant::now();
        if matches!(out, Out::Flows(_)) != self.is_flows() {
            // Nothing is read (or committed) from a topic the run would
            // misread; the run ends with this as its read error.
            let wanted = if self.is_flows() { "flows" } else { "packets" };
            let report = SourceReport {
                read_error: Some(format!(
                    "this Kafka source reads `{wanted}` messages but was run as the other kind"
                )),
                ..SourceReport::default()
            };
            let _ = out.finish();
            return report;
        }
        let KafkaSource {
            consumer,
            settings,
            settled,
            term,
        } = self;
        *lock(&consumer.context().state) = Some(ReaderState::new(out, &settings, settled));
        let shutdown = poll_until_done(&consumer, &settings, &term);
        let mut state = lock(&consumer.context().state).take();
        if let (true, Some(st)) = (shutdown, state.as_mut()) {
            st.flush_and_commit(&consumer);
        }
        consumer.context().closing.store(true, Ordering::Relaxed);
        let lag = consumer.context().lag.load(Ordering::Relaxed);
        // Leaving the group: the consumer is dropped (and closed) before the
        // writer, whose end lets the pipeline drain.
        drop(consumer);
        let Some(st) = state else {
            return SourceReport::default();
        };
        let ReaderState {
            out,
            mut report,
            mut kafka,
            ..
        } = st;
        kafka.lag = lag;
        report.kafka = Some(kafka);
        let blocked = out.finish();
        report.busy = started.elapsed().saturating_sub(blocked);
        report
    }
}

/// Polls messages and hands them on until a stop: true for a shutdown
/// (SIGTERM, SIGINT, `exit_after_idle`), whose flows are then flushed and
/// committed; false when the pipeline stopped (output failed: nothing more
/// is committed).
fn poll_until_done(
    consumer: &BaseConsumer<SourceContext>,
    settings: &SourceSettings,
    term: &AtomicBool,
) -> bool {
    let mut last_commit = Instant::now();
    let mut last_message = Instant::now();
    let mut ever_assigned = false;
    // Messages read since "caught up" was last said.
    let mut unreported = false;
    let mut poll_errors = 0u64;
    loop {
        if lock(&consumer.context().state)
            .as_ref()
            .is_none_or(|st| st.out.stopped())
        {
            return false;
        }
        if term.load(Ordering::Relaxed) {
            tracing::info!("stopping: ending flows and committing settled offsets");
            return true;
        }
        if consumer.context().assigned.swap(false, Ordering::Relaxed) {
            // Joining the group takes a while: idle time counts from the
            // first assignment, then from the last assignment or message.
            last_message = Instant::now();
            ever_assigned = true;
        }
        if let Some(idle) = settings.exit_after_idle.filter(|_| ever_assigned) {
            if last_message.elapsed() >= idle {
                tracing::info!(message = "no message for exit_after_idle; stopping", idle = ?idle);
                return true;
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => {
                poll_errors += 1;
                if poll_errors <= 10 || poll_errors.is_power_of_two() {
                    tracing::warn!(message = "Kafka consumer error", error = %e, count = poll_errors);
                }
            }
            Some(Ok(msg)) => {
                last_message = Instant::now();
                unreported = true;
                if let Some(st) = lock(&consumer.context().state).as_mut() {
                    st.take(&msg, settings);
                }
            }
        }
        let mut g = lock(&consumer.context().state);
        let Some(st) = g.as_mut() else { return false };
        st.release(false);
        if unreported && last_message.elapsed() >= CAUGHT_UP {
            unreported = false;
            tracing::info!(
                message = "caught up",
                messages = st.kafka.messages,
                packets = st.report.packets
            );
        }
        if !st.out.poll() {
            return false;
        }
        if last_commit.elapsed() >= settings.commit_interval {
            last_commit = Instant::now();
            let safe = st.settled.safe();
            st.commit(consumer, safe);
        }
    }
}

impl PacketSource for KafkaSource {
    fn describe(&self) -> String {
        self.settings.describe()
    }

    fn numbered(&self) -> bool {
        true
    }

    fn run(self: Box<Self>, out: ChunkWriter) -> SourceReport {
        self.run_with(Out::Packets(out))
    }
}

impl FlowSource for KafkaSource {
    fn describe(&self) -> String {
        self.settings.describe()
    }

    fn run(self: Box<Self>, out: FlowWriter) -> SourceReport {
        self.run_with(Out::Flows(out))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
