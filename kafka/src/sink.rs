//! Alerts produced to a Kafka topic, one EVE JSON line per message.
//!
//! Why it looks like this: in a Kafka deployment the alerts topic is the
//! durable end of the pipeline, and the source may commit its offsets only
//! once the alerts those messages caused are safely in it. So this sink
//! promises exactly what offset commits need:
//!
//! - [`flush`](AlertSink::flush) returns `Ok` only when the broker has
//!   acknowledged (`acks=all`) every alert written so far. If any delivery
//!   failed for good (librdkafka has already retried it until
//!   `message.timeout.ms`), `flush` returns [`SinkError::Delivery`], and
//!   keeps returning it (see [`KafkaSink::clear_failures`]), so that no
//!   later flush can let the caller commit past a lost alert. An alert
//!   that `write` refused (too large, topic not authorised, …) fails the
//!   next flush the same way. The source replays from its last commit
//!   after a restart; nothing is lost, and alerts carry a stable `flow_id`
//!   so a consumer can drop duplicates.
//! - The producer is idempotent (`enable.idempotence=true`, `acks=all`,
//!   at most 5 requests in flight, librdkafka's unbounded retries), so its
//!   own retries never duplicate or reorder a message. Users cannot turn
//!   that off through `properties`.
//! - A full local queue is backpressure, not loss: [`write`](AlertSink::write)
//!   waits for deliveries to free room (in bounded steps, each counted) and
//!   then enqueues, so a slow broker slows the pipeline down.
//!
//! Each message's key is the alert's `flow_id` in decimal, so every alert of
//! a flow (duplicates after a replay included) lands in one partition, in
//! order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use tapstream_connectors::eve::{Alert, EveWriter};
use tapstream_connectors::kafka::{KafkaClientConfig, PRODUCER_FORCED};
use tapstream_connectors::sink::{AlertSink, SinkError};

use crate::client::client_config;

/// How long `write` waits for deliveries each time the local queue is full
/// before trying again.
pub const DEFAULT_QUEUE_FULL_WAIT: Duration = Duration::from_millis(100);

/// How much longer than the producer's `message.timeout.ms` `flush` waits
/// for acknowledgements before giving up with [`SinkError::FlushTimeout`].
/// After `message.timeout.ms` librdkafka has delivered or failed every
/// message, so with this margin a flush normally ends with an answer.
pub const FLUSH_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);

/// librdkafka's default `message.timeout.ms`.
const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long dropping the sink waits for outstanding deliveries before
/// abandoning them (they were never acknowledged, so a Kafka source
/// replays them).
const DROP_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Producer defaults a user's `properties` may override.
pub const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    // Alerts are small and bursty: a few ms of batching costs little
    // latency and saves many requests.
    ("linger.ms", "5"),
];

/// What a [`KafkaSink`] has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KafkaSinkStats {
    /// Messages enqueued by `write`.
    pub enqueued: u64,
    /// Messages the broker acknowledged.
    pub delivered: u64,
    /// Payload bytes of the acknowledged messages.
    pub delivered_bytes: u64,
    /// Messages that failed for good (after librdkafka's retries).
    pub delivery_errors: u64,
    /// Alerts `write` could not enqueue (refused by librdkafka, e.g. too
    /// large or the topic is not authorised).
    pub rejected: u64,
    /// Times `write` found the local queue full and waited for deliveries.
    pub queue_full_waits: u64,
}

/// Delivery outcomes, shared between the sink and its producer's callbacks.
#[derive(Debug, Default)]
struct Deliveries {
    delivered: AtomicU64,
    delivered_bytes: AtomicU64,
    errors: AtomicU64,
    /// The first failure since the last [`KafkaSink::clear_failures`].
    first_error: Mutex<Option<KafkaError>>,
}

impl Deliveries {
    /// Keeps `err` if it is the first failure since the last clear.
    fn record_first(&self, err: &KafkaError) {
        // A poisoned lock only means another callback panicked; the slot is
        // still usable.
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(err.clone());
        }
    }
}

/// The producer's context: counts delivery reports.
struct SinkContext {
    deliveries: Arc<Deliveries>,
    produced: metrics::Counter,
    bytes: metrics::Counter,
    errors: metrics::Counter,
}

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(msg) => {
                let bytes = msg.payload_len() as u64;
                self.deliveries.delivered.fetch_add(1, Ordering::Relaxed);
                self.deliveries
                    .delivered_bytes
                    .fetch_add(bytes, Ordering::Relaxed);
                self.produced.increment(1);
                self.bytes.increment(bytes);
            }
            Err((err, _)) => {
                self.deliveries.errors.fetch_add(1, Ordering::Relaxed);
                self.errors.increment(1);
                self.deliveries.record_first(err);
            }
        }
    }
}

/// Produces alerts to a Kafka topic as EVE JSON lines.
///
/// Counters (labelled `topic`): `tapstream_kafka_messages_produced_total`
/// and `tapstream_kafka_bytes_produced_total` (acknowledged messages and
/// their payload bytes), `tapstream_kafka_delivery_errors_total`.
///
/// Dropping the sink waits up to 5 s for outstanding deliveries; call
/// [`AlertSink::flush`] to wait for all of them and see failures.
pub struct KafkaSink {
    producer: BaseProducer<SinkContext>,
    deliveries: Arc<Deliveries>,
    topic: String,
    target: String,
    eve: EveWriter,
    line: Vec<u8>,
    enqueued: u64,
    rejected: u64,
    queue_full_waits: u64,
    /// Failures (delivery errors plus rejected writes) already reported by
    /// `flush` and cleared by the caller.
    cleared_failures: u64,
    queue_full_wait: Duration,
    /// `None`: wait as long as it takes.
    flush_timeout: Option<Duration>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// A sink producing to `topic` with the client settings `client`
    /// (their `properties` override [`PRODUCER_DEFAULTS`]; setting one of
    /// [`PRODUCER_FORCED`] is an error).
    ///
    /// Fails on a bad topic name, a bad or contradictory configuration,
    /// an unreadable secret, or a property librdkafka rejects. Does not
    /// contact the brokers: an unreachable cluster shows up as delivery
    /// failures at `flush`.
    pub fn new(
        client: &KafkaClientConfig,
        topic: impl Into<String>,
        eve: EveWriter,
    ) -> Result<Self, SinkError> {
        let topic = topic.into();
        let target = format!("kafka topic {topic:?}");
        check_topic(&topic).map_err(|reason| SinkError::KafkaTopic {
            topic: topic.clone(),
            reason,
        })?;
        let config = client_config(client, PRODUCER_DEFAULTS, PRODUCER_FORCED)?;
        let flush_timeout = message_timeout(&config).map(|t| t + FLUSH_TIMEOUT_MARGIN);
        let deliveries = Arc::new(Deliveries::default());
        let label = [("topic", topic.clone())];
        let context = SinkContext {
            deliveries: Arc::clone(&deliveries),
            produced: metrics::counter!("tapstream_kafka_messages_produced_total", &label),
            bytes: metrics::counter!("tapstream_kafka_bytes_produced_total", &label),
            errors: metrics::counter!("tapstream_kafka_delivery_errors_total", &label),
        };
        let producer = config
            .create_with_context(context)
            .map_err(|source| SinkError::Kafka {
                target: target.clone(),
                source: source.into(),
            })?;
        Ok(KafkaSink {
            producer,
            deliveries,
            topic,
            target,
            eve,
            line: Vec::with_capacity(2048),
            enqueued: 0,
            rejected: 0,
            queue_full_waits: 0,
            cleared_failures: 0,
            queue_full_wait: DEFAULT_QUEUE_FULL_WAIT,
            flush_timeout,
        })
    }

    /// Sets how long `write` waits for deliveries each time it finds the
    /// local queue full (default [`DEFAULT_QUEUE_FULL_WAIT`]; at least 1 ms).
    pub fn with_queue_full_wait(mut self, wait: Duration) -> Self {
        self.queue_full_wait = wait.max(Duration::from_millis(1));
        self
    }

    /// Sets how long `flush` waits for acknowledgements (default: the
    /// producer's `message.timeout.ms` plus [`FLUSH_TIMEOUT_MARGIN`], no
    /// limit when that is 0). A shorter wait can time out while librdkafka
    /// is still retrying; flushing again then continues the wait.
    pub fn with_flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = Some(timeout);
        self
    }

    /// The topic alerts go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> KafkaSinkStats {
        KafkaSinkStats {
            enqueued: self.enqueued,
            delivered: self.deliveries.delivered.load(Ordering::Relaxed),
            delivered_bytes: self.deliveries.delivered_bytes.load(Ordering::Relaxed),
            delivery_errors: self.deliveries.errors.load(Ordering::Relaxed),
            rejected: self.rejected,
            queue_full_waits: self.queue_full_waits,
        }
    }

    /// Forgets the delivery failures `flush` has reported, so the next
    /// `flush` reports only new ones. Call it only once the messages that
    /// caused them will be produced again (the source has rewound to before
    /// them); otherwise a later commit could skip a lost alert.
    pub fn clear_failures(&mut self) {
        self.cleared_failures = self.failed_total();
        let mut first = self
            .deliveries
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *first = None;
    }

    /// Delivery errors and rejected writes, ever.
    fn failed_total(&self) -> u64 {
        self.deliveries.errors.load(Ordering::Relaxed) + self.rejected
    }

    /// Failures not yet cleared, and the first of them.
    fn failures(&self) -> Option<(u64, KafkaError)> {
        let failed = self.failed_total().saturating_sub(self.cleared_failures);
        if failed == 0 {
            return None;
        }
        let first = self
            .deliveries
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or(KafkaError::MessageProduction(RDKafkaErrorCode::Fail));
        Some((failed, first))
    }
}

/// The producer's `message.timeout.ms` (or its alias
/// `delivery.timeout.ms`); `None` when set to 0, librdkafka's "no limit".
/// A value librdkafka will refuse does not matter: creating the producer
/// fails.
fn message_timeout(config: &rdkafka::ClientConfig) -> Option<Duration> {
    let set = config
        .get("message.timeout.ms")
        .or_else(|| config.get("delivery.timeout.ms"));
    match set.map(|v| v.trim().parse::<u64>()) {
        None | Some(Err(_)) => Some(DEFAULT_MESSAGE_TIMEOUT),
        Some(Ok(0)) => None,
        Some(Ok(ms)) => Some(Duration::from_millis(ms)),
    }
}

/// Kafka's rule for topic names: 1–249 characters of `[a-zA-Z0-9._-]`.
fn check_topic(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() || topic.len() > 249 {
        return Err("must be 1 to 249 characters long");
    }
    if topic == "." || topic == ".." {
        return Err("cannot be `.` or `..`");
    }
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("may contain only ASCII letters, digits, `.`, `_` and `-`");
    }
    Ok(())
}

/// How often the alert stage waits for the broker's acknowledgements: the
/// producer sends on its own in between, and a commit of source offsets
/// waits at most this much longer.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

impl AlertSink for KafkaSink {
    fn flush_every(&self) -> Duration {
        FLUSH_EVERY
    }

    fn write(&mut self, alert: &Alert<'_>) -> Result<(), SinkError> {
        self.line.clear();
        self.eve.write(alert, &mut self.line);
        // The trailing newline is a file's line separator, not part of the
        // event: a Kafka message is one event.
        let payload = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
        let mut ids = itoa::Buffer::new();
        let key = ids.format(alert.flow.flow_id);
        let mut record = BaseRecord::to(&self.topic).key(key).payload(payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Backpressure: serve delivery reports (which frees
                    // queue room) and try again.
                    self.queue_full_waits += 1;
                    self.producer.poll(self.queue_full_wait);
                    record = back;
                }
                Err((source, _)) => {
                    // Also fails the next flush, so a caller that only
                    // counts this error still cannot commit past the alert.
                    self.rejected += 1;
                    self.deliveries.record_first(&source);
                    return Err(SinkError::Kafka {
                        target: self.target.clone(),
                        source: source.into(),
                    });
                }
            }
        }
        self.enqueued += 1;
        // Serve delivery reports that are ready, without waiting.
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let started = Instant::now();
        if let Err(source) = self.producer.flush(self.flush_timeout) {
            return Err(match source {
                KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut) => SinkError::FlushTimeout {
                    target: self.target.clone(),
                    waited: started.elapsed(),
                    pending: self.producer.in_flight_count().max(0) as u64,
                },
                source => SinkError::Kafka {
                    target: self.target.clone(),
                    source: source.into(),
                },
            });
        }
        // `flush` returns once librdkafka's queue is empty; serve any
        // delivery report still waiting so the counts below are complete.
        self.producer.poll(Duration::ZERO);
        match self.failures() {
            None => Ok(()),
            Some((failed, source)) => Err(SinkError::Delivery {
                target: self.target.clone(),
                failed,
                source: source.into(),
            }),
        }
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        // Best effort; the producer purges whatever is left.
        let _ = self.producer.flush(DROP_FLUSH_TIMEOUT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_waits_past_the_message_timeout() {
        let with = |k: &str, v: &str| {
            let mut c = rdkafka::ClientConfig::new();
            c.set(k, v);
            message_timeout(&c)
        };
        assert_eq!(
            message_timeout(&rdkafka::ClientConfig::new()),
            Some(DEFAULT_MESSAGE_TIMEOUT)
        );
        assert_eq!(
            with("message.timeout.ms", "1500"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            with("delivery.timeout.ms", "2000"),
            Some(Duration::from_secs(2))
        );
        assert_eq!(with("message.timeout.ms", "0"), None);
    }

    #[test]
    fn topic_names() {
        for ok in ["alerts", "a.b_c-D9", &"x".repeat(249)] {
            assert!(check_topic(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "a\0b", "ä", &"x".repeat(250)] {
            assert!(check_topic(bad).is_err(), "{bad:?}");
        }
    }
}
