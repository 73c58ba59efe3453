//! `KafkaSink` against librdkafka's in-process mock cluster (deliveries,
//! backpressure, failures, bad settings) and against a real Kafka-protocol
//! broker (tansu, skipped with a message when its binary is absent).

// The flow and alerts of the connectors' sink tests.
#[path = "../../connectors/tests/common/mod.rs"]
mod common;

use common::{flow, write_ids};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaErrorCode, RDKafkaRespErr};
use serde_json::Value;
use tapstream_connectors::eve::{Alert, EveWriter, ModelInfo};
use tapstream_connectors::kafka::{KafkaClientConfig, KafkaConfigError, SecretValue};
use tapstream_connectors::sink::{AlertSink, SinkError};
use tapstream_kafka::testing::{read_messages, Tansu};
use tapstream_kafka::KafkaSink;

const TOPIC: &str = "alerts";

fn mock(partitions: i32) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic(TOPIC, partitions, 1)
        .expect("mock topic");
    cluster
}

fn client(brokers: &str, props: &[(&str, &str)]) -> KafkaClientConfig {
    let mut c = KafkaClientConfig::new([brokers]);
    for (k, v) in props {
        c.properties.insert((*k).into(), SecretValue::from(*v));
    }
    c
}

/// Checks that `messages` are EVE alerts keyed by their flow id and that
/// their flow ids are exactly `want` (in any order).
fn assert_alerts(messages: &[(Vec<u8>, Vec<u8>)], want: impl Iterator<Item = u64>) {
    let mut ids = Vec::new();
    for (key, payload) in messages {
        let v: Value = serde_json::from_slice(payload).expect("each message is one JSON object");
        assert_eq!(v["event_type"], "alert");
        let id = v["flow_id"].as_u64().expect("numeric flow_id");
        assert_eq!(key, id.to_string().as_bytes(), "key is the flow id");
        assert!(!payload.ends_with(b"\n"));
        ids.push(id);
    }
    ids.sort_unstable();
    let mut want: Vec<u64> = want.collect();
    want.sort_unstable();
    assert_eq!(ids, want);
}

#[test]
fn mock_deliveries_are_acknowledged_and_counted() {
    let cluster = mock(3);
    let brokers = cluster.bootstrap_servers();
    let mut sink = KafkaSink::new(&client(&brokers, &[]), TOPIC, EveWriter::new(0)).unwrap();
    write_ids(&mut sink, 1..=200).unwrap();
    sink.flush().unwrap();
    let stats = sink.stats();
    assert_eq!(stats.enqueued, 200);
    assert_eq!(stats.delivered, 200, "{stats:?}");
    assert_eq!(stats.delivery_errors, 0);
    assert!(stats.delivered_bytes > 200 * 300, "{stats:?}");
    let got = read_messages(&brokers, TOPIC, 3, 200, Duration::from_secs(30)).unwrap();
    assert_alerts(&got, 1..=200);
}

/// Records counters by name and labels.
#[derive(Default)]
struct Counters(Mutex<BTreeMap<String, Arc<AtomicU64>>>);

impl Counters {
    fn get(&self, name: &str) -> u64 {
        let map = self.0.lock().unwrap();
        let key = format!("{name}{{topic={TOPIC}}}");
        map.get(&key)
            .unwrap_or_else(|| panic!("no counter {key}; have {:?}", map.keys()))
            .load(Ordering::Relaxed)
    }
}

impl Recorder for Counters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let cell = Arc::clone(self.0.lock().unwrap().entry(name).or_default());
        Counter::from_arc(cell)
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn mock_metrics_count_messages_bytes_and_errors() {
    let cluster = mock(1);
    let brokers = cluster.bootstrap_servers();
    let counters = Counters::default();
    let cfg = client(&brokers, &[("message.timeout.ms", "1500")]);
    // The sink takes its counter handles when it is created.
    let mut sink = metrics::with_local_recorder(&counters, || {
        KafkaSink::new(&cfg, TOPIC, EveWriter::new(0)).unwrap()
    });
    write_ids(&mut sink, 0..7).unwrap();
    sink.flush().unwrap();
    let stats = sink.stats();
    assert_eq!(counters.get("tapstream_kafka_messages_produced_total"), 7);
    assert_eq!(
        counters.get("tapstream_kafka_bytes_produced_total"),
        stats.delivered_bytes
    );
    assert_eq!(counters.get("tapstream_kafka_delivery_errors_total"), 0);
    cluster.broker_down(-1).unwrap();
    write_ids(&mut sink, 7..9).unwrap();
    assert!(sink.flush().is_err());
    assert_eq!(counters.get("tapstream_kafka_delivery_errors_total"), 2);
    assert_eq!(counters.get("tapstream_kafka_messages_produced_total"), 7);
}

#[test]
fn mock_full_queue_waits_instead_of_dropping() {
    let cluster = mock(1);
    cluster
        .broker_round_trip_time(1, Duration::from_millis(20))
        .unwrap();
    let brokers = cluster.bootstrap_servers();
    let cfg = client(
        &brokers,
        &[("queue.buffering.max.messages", "5"), ("linger.ms", "0")],
    );
    let mut sink = KafkaSink::new(&cfg, TOPIC, EveWriter::new(0))
        .unwrap()
        .with_queue_full_wait(Duration::from_millis(5));
    write_ids(&mut sink, 0..100).unwrap();
    sink.flush().unwrap();
    let stats = sink.stats();
    assert!(stats.queue_full_waits > 0, "{stats:?}");
    assert_eq!(
        (stats.delivered, stats.delivery_errors),
        (100, 0),
        "{stats:?}"
    );
}

#[test]
fn mock_rejected_produce_fails_flush_until_cleared() {
    let cluster = mock(1);
    let brokers = cluster.bootstrap_servers();
    let mut sink = KafkaSink::new(&client(&brokers, &[]), TOPIC, EveWriter::new(0)).unwrap();
    // Warm up: metadata and producer id are in place before the errors.
    write_ids(&mut sink, 0..1).unwrap();
    sink.flush().unwrap();

    // A non-retriable, per-message error for every produce request.
    let errors = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 50];
    cluster.request_errors(RDKafkaApiKey::Produce, &errors);
    write_ids(&mut sink, 1..4).unwrap();
    let err = sink.flush().unwrap_err();
    match &err {
        SinkError::Delivery { failed, .. } => assert!(*failed >= 1, "{err}"),
        other => panic!("expected a delivery error, got {other:?}"),
    }
    assert!(sink.stats().delivery_errors >= 1);
    // Sticky: a later flush with nothing new pending still refuses.
    assert!(matches!(sink.flush(), Err(SinkError::Delivery { .. })));

    cluster.clear_request_errors(RDKafkaApiKey::Produce);
    sink.clear_failures();
    write_ids(&mut sink, 4..6).unwrap();
    sink.flush().unwrap();
}

#[test]
fn refused_write_fails_the_next_flush() {
    // Nothing listens there; nothing is sent either.
    let cfg = client("127.0.0.1:9", &[("message.max.bytes", "1000")]);
    let mut sink = KafkaSink::new(&cfg, TOPIC, EveWriter::new(0)).unwrap();
    let model = ModelInfo::new("m", "1", "00");
    let f = flow(1);
    let class = "x".repeat(2000);
    let err = sink
        .write(&Alert {
            flow: &f,
            score: 0.95,
            class: &class,
            class_index: 5,
            model: &model,
            threshold: 0.5,
            episode: None,
            explanation: None,
        })
        .unwrap_err();
    assert!(matches!(err, SinkError::Kafka { .. }), "{err:?}");
    assert_eq!(sink.stats().rejected, 1);
    let err = sink.flush().unwrap_err();
    assert!(
        matches!(err, SinkError::Delivery { failed: 1, .. }),
        "{err:?}"
    );
    sink.clear_failures();
    sink.flush().unwrap();
}

#[test]
fn mock_broker_down_times_out_deliveries_and_flush_errors() {
    let cluster = mock(1);
    let brokers = cluster.bootstrap_servers();
    let cfg = client(&brokers, &[("message.timeout.ms", "1500")]);
    let mut sink = KafkaSink::new(&cfg, TOPIC, EveWriter::new(0)).unwrap();
    cluster.broker_down(-1).unwrap();
    write_ids(&mut sink, 0..10).unwrap();
    let err = sink.flush().unwrap_err();
    let SinkError::Delivery { failed, source, .. } = &err else {
        panic!("expected a delivery error, got {err:?}");
    };
    assert_eq!(*failed, 10, "{err}");
    let code = source
        .downcast_ref::<rdkafka::error::KafkaError>()
        .and_then(rdkafka::error::KafkaError::rdkafka_error_code);
    assert_eq!(code, Some(RDKafkaErrorCode::MessageTimedOut), "{source}");
    assert_eq!(sink.stats().delivered, 0);
}

#[test]
fn mock_flush_timeout_then_flush_again_delivers() {
    let cluster = mock(1);
    let brokers = cluster.bootstrap_servers();
    let mut sink = KafkaSink::new(&client(&brokers, &[]), TOPIC, EveWriter::new(0))
        .unwrap()
        .with_flush_timeout(Duration::from_millis(800));
    cluster.broker_down(-1).unwrap();
    write_ids(&mut sink, 0..5).unwrap();
    let err = sink.flush().unwrap_err();
    assert!(
        matches!(err, SinkError::FlushTimeout { pending, .. } if pending >= 5),
        "{err:?}"
    );
    cluster.broker_up(-1).unwrap();
    let mut sink = sink.with_flush_timeout(Duration::from_secs(30));
    sink.flush().unwrap();
    assert_eq!(sink.stats().delivered, 5);
}

#[test]
fn bad_settings_are_errors_not_panics() {
    let ok = "127.0.0.1:9";
    let e = KafkaSink::new(
        &client(ok, &[("no.such.property", "1")]),
        TOPIC,
        EveWriter::new(0),
    )
    .unwrap_err();
    assert!(matches!(e, SinkError::Kafka { .. }), "{e:?}");
    let e = KafkaSink::new(&client(ok, &[("retries", "0")]), TOPIC, EveWriter::new(0)).unwrap_err();
    assert!(matches!(e, SinkError::Kafka { .. }), "{e:?}");
    let e = KafkaSink::new(
        &client(ok, &[("max.in.flight.requests.per.connection", "6")]),
        TOPIC,
        EveWriter::new(0),
    )
    .unwrap_err();
    assert!(matches!(e, SinkError::Kafka { .. }), "{e:?}");
    for forced in ["enable.idempotence", "acks", "request.required.acks"] {
        let e =
            KafkaSink::new(&client(ok, &[(forced, "1")]), TOPIC, EveWriter::new(0)).unwrap_err();
        assert!(
            matches!(e, SinkError::KafkaConfig(KafkaConfigError::Forced { .. })),
            "{forced}: {e:?}"
        );
        assert!(e.to_string().contains(forced), "{e}");
    }
    let e = KafkaSink::new(
        &KafkaClientConfig::new(Vec::<String>::new()),
        TOPIC,
        EveWriter::new(0),
    )
    .unwrap_err();
    assert!(
        matches!(e, SinkError::KafkaConfig(KafkaConfigError::NoBrokers)),
        "{e:?}"
    );
    let e = KafkaSink::new(&client(ok, &[]), "bad topic", EveWriter::new(0)).unwrap_err();
    assert!(matches!(e, SinkError::KafkaTopic { .. }), "{e:?}");
    // A lower in-flight limit is the user's choice and fine.
    KafkaSink::new(
        &client(ok, &[("max.in.flight.requests.per.connection", "1")]),
        TOPIC,
        EveWriter::new(0),
    )
    .unwrap();
}

#[test]
fn tansu_alerts_round_trip() {
    let Some(broker) = Tansu::start_or_skip("tansu_alerts_round_trip") else {
        return;
    };
    broker.create_topic(TOPIC, 4).unwrap();
    let mut sink =
        KafkaSink::new(&client(broker.brokers(), &[]), TOPIC, EveWriter::new(0)).unwrap();
    let n = 500u64;
    let ids = (0..n).map(|i| 1_000_000 + i * 7919);
    write_ids(&mut sink, ids.clone()).unwrap();
    if let Err(e) = sink.flush() {
        panic!("flush to tansu: {e:?}\n{}", broker.log_tail());
    }
    assert_eq!(sink.stats().delivered, n);
    let got = read_messages(
        broker.brokers(),
        TOPIC,
        4,
        n as usize,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", broker.log_tail()));
    assert_alerts(&got, ids);
}
