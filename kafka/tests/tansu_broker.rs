//! The tansu test broker does what the Kafka end-to-end tests rely on:
//! topics with several partitions, keyed produce, and a consumer group
//! whose members split the partitions and commit offsets. Skipped with a
//! message when the tansu binary is absent.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tapstream_kafka::testing::Tansu;

const TOPIC: &str = "packets";
const PARTITIONS: i32 = 4;

fn member(broker: &Tansu, group: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    c.subscribe(&[TOPIC]).expect("subscribe");
    c
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

#[test]
fn tansu_group_members_split_partitions_and_commit() {
    let Some(broker) = Tansu::start_or_skip("tansu_group_members_split_partitions_and_commit")
    else {
        return;
    };
    broker.create_topic(TOPIC, PARTITIONS).unwrap();
    let producer: BaseProducer = broker.client_config().create().unwrap();
    let n = 200;
    for i in 0..n {
        let key = format!("flow-{}", i % 37);
        let payload = i.to_string();
        producer
            .send(BaseRecord::to(TOPIC).key(&key).payload(&payload))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let a = member(&broker, "g");
    let b = member(&broker, "g");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = BTreeSet::new();
    while seen.len() < n || assigned(&a).is_empty() || assigned(&b).is_empty() {
        assert!(
            Instant::now() < deadline,
            "after 60 s: {} of {n} messages, assignments {:?} / {:?}\n{}",
            seen.len(),
            assigned(&a),
            assigned(&b),
            broker.log_tail()
        );
        for c in [&a, &b] {
            if let Some(m) = c.poll(Duration::from_millis(100)) {
                let m = m.unwrap();
                let v: usize = std::str::from_utf8(m.payload().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                seen.insert(v);
            }
        }
    }
    let (pa, pb) = (assigned(&a), assigned(&b));
    assert!(pa.is_disjoint(&pb), "{pa:?} / {pb:?}");
    assert_eq!(pa.len() + pb.len(), PARTITIONS as usize, "{pa:?} / {pb:?}");
    assert_eq!(seen.len(), n);

    // A commit is stored and read back by the group.
    a.commit_consumer_state(CommitMode::Sync).unwrap();
    let committed = {
        let mut tpl = TopicPartitionList::new();
        for p in &pa {
            tpl.add_partition(TOPIC, *p);
        }
        let got = a.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        got.elements()
            .iter()
            .map(|e| e.offset())
            .collect::<Vec<_>>()
    };
    assert!(
        committed
            .iter()
            .all(|o| matches!(o, Offset::Offset(x) if *x > 0)),
        "{committed:?}"
    );
}
