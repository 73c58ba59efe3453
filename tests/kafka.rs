//! The Kafka source against librdkafka's in-process broker (MockCluster):
//! `tapstream kafka produce` fills a 4-partition topic with the demo
//! capture, `tapstream run --kafka` reads it as a consumer group, and the
//! alerts, the accounting and the committed offsets are checked against
//! `tapstream run --pcap` on the same capture.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::util::{bin, demo_pcap, have_ort, output};

/// Flow ids of the alerts in an EVE file, with how often each appears.
pub fn alert_ids(eve: &Path) -> BTreeMap<u64, usize> {
    let text = std::fs::read_to_string(eve).unwrap_or_default();
    let mut ids = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("EVE line is JSON");
        assert_eq!(v["event_type"], "alert");
        let id = v["flow_id"].as_u64().expect("flow_id");
        *ids.entry(id).or_insert(0) += 1;
    }
    ids
}

/// A config for the mock broker: group `group`, `idle` before exiting.
/// Short flow timeouts make flows end while the demo capture (55 s) is
/// still being read, so offsets get committed before the end.
fn config(dir: &Path, brokers: &str, group: &str, idle: &str) -> PathBuf {
    let p = dir.join(format!("{group}.toml"));
    let text = format!(
        "[kafka]\nbrokers = [\"{brokers}\"]\n\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\n\
         [source.kafka]\ngroup_id = \"{group}\"\ntopics = [\"packets\"]\nexit_after_idle = \"{idle}\"\ncommit_interval = \"200ms\"\n\n\
         [pipeline]\nworkers = 2\ndecoders = 1\n\n\
         [flow]\ntimeout = \"8s\"\nactivity_timeout = \"1s\"\ntcp_close_linger = \"1s\"\n"
    );
    std::fs::write(&p, text).expect("write config");
    p
}

/// Offsets the group committed, per partition of `packets`.
fn committed(brokers: &str, group: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition("packets", p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    let out = got
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => -1,
        })
        .collect();
    drop(got);
    drop(consumer);
    out
}

/// The end offset of each partition of `packets`.
fn ends(brokers: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks("packets", p, Duration::from_secs(10))
                .expect("watermarks")
                .1
        })
        .collect()
}

fn run_kafka(cfg: &Path, eve: &Path, summary: &Path) -> serde_json::Value {
    let o = output(
        bin()
            .args(["run", "--kafka", "--quiet", "--config"])
            .arg(cfg)
            .arg("--eve")
            .arg(eve)
            .arg("--summary-json")
            .arg(summary),
    );
    assert!(
        o.status.success(),
        "run --kafka failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(summary).expect("summary");
    serde_json::from_str(&text).expect("summary JSON")
}

#[test]
fn kafka_source_matches_pcap_and_commits_only_settled_offsets() {
    if !have_ort("kafka_source_matches_pcap_and_commits_only_settled_offsets") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = demo_pcap(dir.path());
    let mock = MockCluster::new(3).expect("mock cluster");
    mock.create_topic("packets", 4, 1).expect("topic");
    let brokers = mock.bootstrap_servers();

    let cfg = config(dir.path(), &brokers, "g1", "4s");
    // The reference: the same capture as a file, same flow settings.
    let ref_eve = dir.path().join("ref.json");
    let ref_summary = dir.path().join("ref-summary.json");
    let o = output(
        bin()
            .args(["run", "--quiet", "--config"])
            .arg(&cfg)
            .arg("--pcap")
            .arg(&pcap)
            .arg("--eve")
            .arg(&ref_eve)
            .arg("--summary-json")
            .arg(&ref_summary),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reference = alert_ids(&ref_eve);
    assert!(!reference.is_empty(), "the demo capture has attacks");
    let ref_summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ref_summary).expect("summary"))
            .expect("summary JSON");
    let o = output(
        bin()
            .args(["kafka", "produce", "--chunk-packets", "7", "--config"])
            .arg(&cfg)
            .arg("--pcap")
            .arg(&pcap),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let produced = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(produced.contains("(4 partitions)"), "{produced}");

    // First run: reads everything, ends its open flows at exit.
    let eve1 = dir.path().join("a1.json");
    let s1 = run_kafka(&cfg, &eve1, &dir.path().join("s1.json"));
    assert_eq!(s1["accounted"], true, "{s1}");
    assert_eq!(s1["kafka"]["malformed"], 0, "{s1}");
    assert_eq!(s1["packets"], ref_summary["packets"]);
    assert_eq!(s1["packets_in_flows"], ref_summary["packets_in_flows"]);
    let got1 = alert_ids(&eve1);
    let ids1: BTreeSet<u64> = got1.keys().copied().collect();
    let ref_ids: BTreeSet<u64> = reference.keys().copied().collect();
    assert_eq!(
        (
            ids1.difference(&ref_ids).count(),
            ref_ids.difference(&ids1).count()
        ),
        (0, 0),
        "alerts only in the Kafka run, only in the file run (of {} alerts)",
        ref_ids.len()
    );

    // Commits never pass a message whose flows were open before the final
    // flush, and never pass the end.
    let end = ends(&brokers, 4);
    let c1 = committed(&brokers, "g1", 4);
    assert!(
        c1.iter().zip(&end).all(|(c, e)| *c <= *e),
        "{c1:?} vs {end:?}"
    );
    assert!(c1.iter().any(|c| *c > 0), "something was committed: {c1:?}");

    // A second member of the group starts where the first committed and
    // reads exactly the messages not committed (their flows were open when
    // the first stopped, or began after one that was).
    let eve2 = dir.path().join("a2.json");
    let s2 = run_kafka(&cfg, &eve2, &dir.path().join("s2.json"));
    let replayed: i64 = c1.iter().zip(&end).map(|(c, e)| e - c.max(&0)).sum();
    assert_eq!(s2["kafka"]["messages"], replayed, "{s2}");
    assert_eq!(s2["accounted"], true, "{s2}");
    let c2 = committed(&brokers, "g1", 4);
    assert!(c2.iter().zip(&c1).all(|(b, a)| b >= a), "{c2:?} vs {c1:?}");
}
