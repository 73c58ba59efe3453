//! The Kafka source and sink end to end.
//!
//! - Against librdkafka's in-process broker (MockCluster): `tapstream kafka
//!   produce` fills a 4-partition topic with the demo capture, `tapstream
//!   run --kafka` reads it, and the alerts, the accounting and the committed
//!   offsets are checked against `tapstream run --pcap`.
//! - Against a real Kafka-protocol broker (tansu, started here): two
//!   members of a group read a shared capture and write alerts to an
//!   `alerts` topic, which must hold the alerts of the file run; and a
//!   member killed with SIGKILL mid-stream and restarted loses none.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use tapstream_kafka::testing::Tansu;

use crate::util::{bin, complete_lines, demo_pcap, have_ort, metric, output, wait_until};

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
/// `extra` TOML is appended.
fn config(dir: &Path, brokers: &str, group: &str, idle: &str, extra: &str) -> PathBuf {
    let p = dir.join(format!("{group}.toml"));
    let mut text = format!(
        "[kafka]\nbrokers = {}\n\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\n\
         [source.kafka]\ngroup_id = \"{group}\"\ntopics = [\"packets\"]\nexit_after_idle = \"{idle}\"\ncommit_interval = \"200ms\"\n\n\
         [pipeline]\nworkers = 2\ndecoders = 1\n\n\
         [flow]\ntimeout = \"8s\"\nactivity_timeout = \"1s\"\ntcp_close_linger = \"1s\"\n",
        toml_list(brokers)
    );
    text.push_str(extra);
    std::fs::write(&p, text).expect("write config");
    p
}

/// `a,b` as a TOML list of strings.
fn toml_list(brokers: &str) -> String {
    let items: Vec<String> = brokers.split(',').map(|b| format!("\"{b}\"")).collect();
    format!("[{}]", items.join(", "))
}

/// Offsets the group committed, per partition of `packets`.
fn committed(brokers: &str, group: &str, partitions: i32) -> Vec<i64> {
    committed_in(brokers, group, "packets", partitions)
}

/// Offsets the group committed, per partition of `topic` (-1: none).
fn committed_in(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
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
            .args(["run", "--alerts", "flows", "--kafka", "--quiet", "--model"])
            .arg(cic_model())
            .arg("--config")
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
    kafka_matches_pcap("");
}

/// The same with the flow workers scoring: a mark still reaches the sink
/// only behind the alerts of the flows before it.
#[test]
fn kafka_source_with_scoring_workers_commits_only_settled_offsets() {
    if !have_ort("kafka_source_with_scoring_workers_commits_only_settled_offsets") {
        return;
    }
    kafka_matches_pcap("\n[inference]\nplacement = \"workers\"\n");
}

fn kafka_matches_pcap(extra: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = demo_pcap(dir.path());
    let mock = MockCluster::new(3).expect("mock cluster");
    mock.create_topic("packets", 4, 1).expect("topic");
    let brokers = mock.bootstrap_servers();

    let cfg = config(dir.path(), &brokers, "g1", "4s", extra);
    // The reference: the same capture as a file, same flow settings.
    let ref_eve = dir.path().join("ref.json");
    let ref_summary = dir.path().join("ref-summary.json");
    let o = output(
        bin()
            .args(["run", "--alerts", "flows", "--quiet", "--model"])
            .arg(cic_model())
            .arg("--config")
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
    if !extra.is_empty() {
        assert_eq!(s1["scored_in_workers"], s1["flows"], "{s1}");
    }
}

/// A running `tapstream run --kafka`, its log in a file.
struct Member {
    child: std::process::Child,
    log: PathBuf,
    /// The run summary, written at exit.
    summary: PathBuf,
}

impl Member {
    fn start(cfg: &Path, dir: &Path, name: &str) -> Member {
        let log = dir.join(format!("{name}.log"));
        let eve = dir.join(format!("{name}.summary.json"));
        let child = bin()
            .args(["run", "--alerts", "flows", "--kafka", "--quiet", "--model"])
            .arg(cic_model())
            .arg("--config")
            .arg(cfg)
            .arg("--summary-json")
            .arg(&eve)
            .env("TAPSTREAM_LOG", "info")
            .stderr(std::fs::File::create(&log).expect("log file"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start tapstream");
        Member {
            child,
            log,
            summary: eve,
        }
    }

    /// Messages read, as the last "caught up" log line says.
    fn caught_up(&self) -> Option<u64> {
        let log = complete_lines(&self.log);
        let line = log.lines().rev().find(|l| l.contains("caught up"))?;
        let at = line.find("messages=")? + "messages=".len();
        line.get(at..)?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }

    /// Assignments logged so far.
    fn assignments(&self) -> usize {
        complete_lines(&self.log)
            .matches("partitions assigned")
            .count()
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) with our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// Waits for the process to end; its exit status.
    fn wait(mut self, limit: Duration) -> std::process::ExitStatus {
        let t = std::time::Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            if t.elapsed() > limit {
                let _ = self.child.kill();
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("tapstream did not stop within {limit:?}; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `cond` holds, failing with `what` after `limit`.
/// Flow ids of every alert in the `alerts` topic (read from the start
/// until nothing new comes for a few seconds), with how often each appears.
fn read_alerts(brokers: &str) -> BTreeMap<u64, usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "alert-reader")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    {
        let mut tpl = TopicPartitionList::new();
        for p in 0..4 {
            tpl.add_partition_offset("alerts", p, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
    }
    let mut ids = BTreeMap::new();
    let mut last = std::time::Instant::now();
    while last.elapsed() < Duration::from_secs(6) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            last = std::time::Instant::now();
            let v: serde_json::Value =
                serde_json::from_slice(rdkafka::Message::payload(&m).unwrap_or_default())
                    .expect("alert is EVE JSON");
            assert_eq!(v["event_type"], "alert");
            let id = v["flow_id"].as_u64().expect("flow_id");
            assert_eq!(
                rdkafka::Message::key(&m),
                Some(id.to_string().as_bytes()),
                "keyed by flow_id"
            );
            *ids.entry(id).or_insert(0) += 1;
        }
    }
    drop(consumer);
    ids
}

/// Writes `pcap`'s packets `[from, to)` to `out`.
fn slice_capture(pcap: &Path, from: usize, to: usize, out: &Path) {
    let mut r = tapstream_ingest::CaptureReader::open(pcap).expect("capture");
    let mut w = None;
    let mut i = 0;
    while let Some(p) = r.next_packet().expect("packet") {
        if (from..to).contains(&i) {
            let w = w.get_or_insert_with(|| {
                tapstream_ingest::pcapgen::PcapWriter::new(
                    std::fs::File::create(out).expect("slice file"),
                    p.link_type,
                )
                .expect("pcap header")
            });
            w.write_record(p.ts_us, p.orig_len, p.data).expect("write");
        }
        i += 1;
    }
    w.expect("packets in range").finish().expect("flush");
}

fn packets_in(pcap: &Path) -> usize {
    let mut r = tapstream_ingest::CaptureReader::open(pcap).expect("capture");
    let mut n = 0;
    while r.next_packet().expect("packet").is_some() {
        n += 1;
    }
    n
}

/// Produces `pcap`; the number of messages.
fn produce(cfg: &Path, pcap: &Path) -> u64 {
    let o = output(
        bin()
            // By 5-tuple: the capture is one host pair, and the group tests
            // need its flows spread over the partitions.
            .args([
                "kafka",
                "produce",
                "--chunk-packets",
                "64",
                "--partition-by",
                "flow",
                "--config",
            ])
            .arg(cfg)
            .arg("--pcap")
            .arg(pcap),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let at = err.find(" messages (").expect("produce summary");
    err[..at]
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("message count")
}

/// A config for members of a long-running group (no idle exit).
fn member_config(dir: &Path, brokers: &str, group: &str) -> PathBuf {
    let p = dir.join(format!("{group}.toml"));
    let text = format!(
        "[kafka]\nbrokers = {}\n\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\n\
         [source.kafka]\ngroup_id = \"{group}\"\ntopics = [\"packets\"]\ncommit_interval = \"200ms\"\n\n\
         [output.kafka]\ntopic = \"alerts\"\n\n\
         [pipeline]\nworkers = 2\ndecoders = 1\n",
        toml_list(brokers)
    );
    std::fs::write(&p, text).expect("write config");
    p
}

/// `tapstream run --pcap` alert ids (with `cfg`'s flow settings, if any).
fn reference_ids(cfg: Option<&Path>, pcap: &Path, dir: &Path) -> BTreeSet<u64> {
    let eve = dir.join("reference.json");
    let mut cmd = bin();
    cmd.args(["run", "--alerts", "flows", "--quiet"])
        .arg("--model")
        .arg(cic_model());
    if let Some(cfg) = cfg {
        cmd.arg("--config").arg(cfg);
    }
    let o = output(cmd.arg("--pcap").arg(pcap).arg("--eve").arg(&eve));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    alert_ids(&eve).keys().copied().collect()
}

/// The shared slowloris capture (long-lived flows cross the points where
/// offsets are committed), or None when the shared data is absent.
fn slowloris(test: &str) -> Option<PathBuf> {
    let data = crate::util::shared_data(test)?;
    Some(data.join("lab/attack/slowloris/slowhttptest.pcap"))
}

/// What the group tests against tansu share: the shared slowloris capture,
/// a broker with 4-partition `packets` and `alerts` topics, a member config
/// and the file run's alert ids.
struct Group {
    tansu: Tansu,
    dir: tempfile::TempDir,
    pcap: PathBuf,
    cfg: PathBuf,
    reference: BTreeSet<u64>,
}

impl Group {
    /// None (after saying why) without the shared data, ONNX Runtime or tansu.
    fn start(test: &str, group: &str) -> Option<Group> {
        let pcap = slowloris(test)?;
        if !have_ort(test) {
            return None;
        }
        let tansu = Tansu::start_or_skip(test)?;
        tansu.create_topic("packets", 4).expect("packets topic");
        tansu.create_topic("alerts", 4).expect("alerts topic");
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = member_config(dir.path(), tansu.brokers(), group);
        let reference = reference_ids(Some(&cfg), &pcap, dir.path());
        Some(Group {
            tansu,
            dir,
            pcap,
            cfg,
            reference,
        })
    }
}

/// Waits until two members have read `messages` messages between them.
fn both_caught_up(a: &Member, b: &Member, messages: u64) {
    wait_until("both members caught up", Duration::from_secs(120), || {
        a.caught_up().unwrap_or(0) + b.caught_up().unwrap_or(0) == messages
    });
}

/// Starts two members and waits until the group has settled on both.
fn two_members(cfg: &Path, dir: &Path) -> (Member, Member) {
    let a = Member::start(cfg, dir, "a");
    wait_until("member a's assignment", Duration::from_secs(60), || {
        a.assignments() >= 1
    });
    let b = Member::start(cfg, dir, "b");
    // Eager rebalance: a is revoked and assigned again once b joins.
    wait_until("both members assigned", Duration::from_secs(60), || {
        b.assignments() >= 1 && a.assignments() >= 2
    });
    (a, b)
}

#[test]
fn two_members_of_a_group_raise_the_alerts_of_the_file_run() {
    let Some(g) = Group::start(
        "two_members_of_a_group_raise_the_alerts_of_the_file_run",
        "e2e",
    ) else {
        return;
    };
    let Group {
        tansu,
        dir,
        pcap,
        cfg,
        reference,
    } = g;
    let brokers = tansu.brokers().to_string();
    assert!(!reference.is_empty());

    let (a, b) = two_members(&cfg, dir.path());
    let messages = produce(&cfg, &pcap);
    both_caught_up(&a, &b, messages);
    a.signal(libc::SIGTERM);
    b.signal(libc::SIGTERM);
    let summaries = [a.summary.clone(), b.summary.clone()];
    assert!(a.wait(Duration::from_secs(60)).success());
    assert!(b.wait(Duration::from_secs(60)).success());
    let written: u64 = summaries
        .iter()
        .map(|p| {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(p).expect("summary")).expect("JSON");
            v["alerts"].as_u64().expect("alerts")
        })
        .sum();

    let got = read_alerts(&brokers);
    assert_eq!(
        got.values().sum::<usize>() as u64,
        written,
        "every alert written is in the topic"
    );
    let ids: BTreeSet<u64> = got.keys().copied().collect();
    let duplicates: usize = got.values().map(|n| n - 1).sum();
    eprintln!(
        "{} alerts, {} flow ids, {duplicates} duplicates; file run {} flow ids",
        got.values().sum::<usize>(),
        ids.len(),
        reference.len()
    );
    assert_eq!(
        (
            ids.difference(&reference).count(),
            reference.difference(&ids).count()
        ),
        (0, 0),
        "flow ids only in the group's alerts, only in the file run's"
    );
}

#[test]
fn a_member_killed_mid_stream_loses_no_alert() {
    let Some(g) = Group::start("a_member_killed_mid_stream_loses_no_alert", "fault") else {
        return;
    };
    let Group {
        tansu,
        dir,
        pcap,
        cfg,
        reference,
    } = g;
    let brokers = tansu.brokers().to_string();

    let n = packets_in(&pcap);
    let (first, second) = (
        dir.path().join("first.pcap"),
        dir.path().join("second.pcap"),
    );
    slice_capture(&pcap, 0, n / 2, &first);
    slice_capture(&pcap, n / 2, n, &second);

    let (a, b) = two_members(&cfg, dir.path());
    let messages = produce(&cfg, &first);
    both_caught_up(&a, &b, messages);
    // Killed: nothing flushed, nothing committed past what was settled.
    a.signal(libc::SIGKILL);
    let _ = a.wait(Duration::from_secs(10));
    produce(&cfg, &second);
    let a2 = Member::start(&cfg, dir.path(), "a2");
    wait_until(
        "the restarted member's assignment",
        Duration::from_secs(60),
        || a2.assignments() >= 1,
    );
    // Both read what the killed member left, then nothing for a while.
    wait_until("both members caught up", Duration::from_secs(120), || {
        a2.caught_up().is_some() && b.caught_up() > Some(0)
    });
    std::thread::sleep(Duration::from_secs(3));
    a2.signal(libc::SIGTERM);
    b.signal(libc::SIGTERM);
    assert!(a2.wait(Duration::from_secs(60)).success());
    assert!(b.wait(Duration::from_secs(60)).success());

    let got = read_alerts(&brokers);
    let ids: BTreeSet<u64> = got.keys().copied().collect();
    let missing: Vec<&u64> = reference.difference(&ids).collect();
    eprintln!(
        "{} alerts, {} flow ids ({} not in the file run); file run {} flow ids",
        got.values().sum::<usize>(),
        ids.len(),
        ids.difference(&reference).count(),
        reference.len()
    );
    assert!(
        missing.is_empty(),
        "{} alerts missing: {:?}",
        missing.len(),
        missing.iter().take(10).collect::<Vec<_>>()
    );
}

#[test]
fn flow_rows_from_kafka_raise_the_alerts_of_their_capture() {
    let test = "flow_rows_from_kafka_raise_the_alerts_of_their_capture";
    if !have_ort(test) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = demo_pcap(dir.path());
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("flows", 3, 1).expect("topic");
    let brokers = mock.bootstrap_servers();

    // The demo's flows as CIC rows, and its alerts, from the file.
    let csv = dir.path().join("flows.csv");
    let o = output(
        bin()
            .args(["features", "--quiet", "--pcap"])
            .arg(&pcap)
            .arg("--out")
            .arg(&csv),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reference = reference_ids(None, &pcap, dir.path());

    // Rows as CSV lines (the header from config), plus two bad messages.
    let text = std::fs::read_to_string(&csv).expect("csv");
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("producer");
    let rows: Vec<&str> = lines.collect();
    for (i, row) in rows.iter().enumerate() {
        let part = (i % 3) as i32;
        producer
            .send(
                rdkafka::producer::BaseRecord::<(), str>::to("flows")
                    .partition(part)
                    .payload(*row),
            )
            .expect("send");
        producer.poll(Duration::ZERO);
    }
    for bad in ["not,a,row", ""] {
        producer
            .send(
                rdkafka::producer::BaseRecord::<(), str>::to("flows")
                    .partition(0)
                    .payload(bad),
            )
            .expect("send");
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).expect("flush");
    drop(producer);

    let cfg = dir.path().join("flows.toml");
    std::fs::write(
        &cfg,
        format!(
            "[kafka]\nbrokers = {}\n\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\n\
             [source.kafka]\ngroup_id = \"rows\"\ntopics = [\"flows\"]\nformat = \"flows\"\n\
             exit_after_idle = \"3s\"\ncsv_header = {}\n",
            toml_list(&brokers),
            serde_json::to_string(header).expect("quoted header")
        ),
    )
    .expect("config");
    let eve = dir.path().join("rows.json");
    let summary = run_kafka(&cfg, &eve, &dir.path().join("rows-summary.json"));
    assert_eq!(summary["kafka"]["messages"], rows.len() + 2, "{summary}");
    assert_eq!(summary["kafka"]["malformed"], 2, "{summary}");
    assert_eq!(summary["scored"], rows.len(), "{summary}");
    let ids: BTreeSet<u64> = alert_ids(&eve).keys().copied().collect();
    assert_eq!(ids, reference, "the rows' alerts are the capture's");
    // Every message was settled (a row is a whole flow): all committed.
    let committed: i64 = committed_in(&brokers, "rows", "flows", 3).iter().sum();
    assert_eq!(committed as usize, rows.len() + 2);
}

#[test]
fn frames_with_headers_raise_the_alerts_of_their_capture() {
    let test = "frames_with_headers_raise_the_alerts_of_their_capture";
    if !have_ort(test) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // The mock broker keeps a few thousand messages per partition: the
    // demo capture's first 6,000 packets, one message each, fit.
    let demo = demo_pcap(dir.path());
    let pcap = dir.path().join("demo-6000.pcap");
    slice_capture(&demo, 0, 6000, &pcap);
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("frames", 2, 1).expect("topic");
    let brokers = mock.bootstrap_servers();
    let reference = reference_ids(None, &pcap, dir.path());
    assert!(!reference.is_empty());

    // One message per frame, its flow's partition chosen as the pipeline
    // shards (a producer's contract), time and link type in headers; every
    // tenth frame has no `linktype` header (Ethernet, the configured
    // default, applies).
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let mut reader = tapstream_ingest::CaptureReader::open(&pcap).expect("capture");
    let mut frames = 0u64;
    while let Some(p) = reader.next_packet().expect("packet") {
        let part = tapstream_ingest::decode::pair_of(&p)
            .map_or(0, |h| tapstream_ingest::shard_of(h, 2) as i32);
        let ts = p.ts_us.to_string();
        let mut headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "ts_us",
            value: Some(ts.as_bytes()),
        });
        if frames % 10 != 0 {
            headers = headers.insert(rdkafka::message::Header {
                key: "linktype",
                value: Some(p.link_type.to_string().as_bytes()),
            });
        }
        let mut record = rdkafka::producer::BaseRecord::<(), [u8]>::to("frames")
            .partition(part)
            .payload(p.data)
            .headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert!(e.to_string().contains("Queue full"), "produce failed: {e}");
                    record = back;
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
        producer.poll(Duration::ZERO);
        frames += 1;
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).expect("flush");
    drop(producer);

    let cfg = dir.path().join("frames.toml");
    std::fs::write(
        &cfg,
        format!(
            "[kafka]\nbrokers = {}\n\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\n\
             [source.kafka]\ngroup_id = \"frames\"\ntopics = [\"frames\"]\nencoding = \"frame\"\n\
             exit_after_idle = \"3s\"\n\n[pipeline]\nworkers = 2\ndecoders = 1\n",
            toml_list(&brokers),
        ),
    )
    .expect("config");
    let eve = dir.path().join("frames.json");
    let summary = run_kafka(&cfg, &eve, &dir.path().join("frames-summary.json"));
    assert_eq!(summary["kafka"]["messages"], frames, "{summary}");
    assert_eq!(summary["kafka"]["malformed"], 0, "{summary}");
    assert_eq!(summary["packets"], frames, "{summary}");
    assert_eq!(summary["accounted"], true, "{summary}");
    let ids: BTreeSet<u64> = alert_ids(&eve).keys().copied().collect();
    assert_eq!(
        (
            ids.difference(&reference).count(),
            reference.difference(&ids).count()
        ),
        (0, 0),
        "alerts only from the frames, only from the file"
    );
}

/// `GET /metrics` from `addr`: the Prometheus text, or None while the
/// endpoint is not up.
fn scrape(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.contains("200 OK").then_some(text)
}

#[test]
fn a_kafka_member_serves_its_counters_to_prometheus() {
    let test = "a_kafka_member_serves_its_counters_to_prometheus";
    if !have_ort(test) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = demo_pcap(dir.path());
    // The mock broker keeps only so much per partition: four hold the demo.
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("packets", 4, 1).expect("topic");
    let brokers = mock.bootstrap_servers();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = dir.path().join("metrics.toml");
    std::fs::write(
        &cfg,
        format!(
            "[kafka]\nbrokers = {}\n\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"statistics.interval.ms\" = \"500\"\n\n\
             [source.kafka]\ngroup_id = \"metrics\"\ntopics = [\"packets\"]\n\n[metrics]\nlisten = \"{addr}\"\n\n\
             [pipeline]\nworkers = 2\ndecoders = 1\n",
            toml_list(&brokers)
        ),
    )
    .expect("config");
    let m = Member::start(&cfg, dir.path(), "m");
    wait_until("the assignment", Duration::from_secs(60), || {
        m.assignments() >= 1
    });
    let messages = produce(&cfg, &pcap);
    let t = std::time::Instant::now();
    while m.caught_up() != Some(messages) {
        let log = std::fs::read_to_string(&m.log).unwrap_or_default();
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "not caught up with {messages} messages:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Lag comes from librdkafka's statistics (every 500 ms here).
    let mut text = String::new();
    wait_until("read lag 0 in the metrics", Duration::from_secs(30), || {
        text = scrape(&addr).unwrap_or_default();
        metric(&text, "tapstream_kafka_read_lag_messages") == Some(0.0)
    });
    // Open flows hold commits back (the demo's flows are all open until
    // the end with the default timeouts), so the commit lag is above 0.
    assert!(
        metric(&text, "tapstream_kafka_commit_lag_messages").unwrap_or(0.0) > 0.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "tapstream_kafka_messages_consumed_total"),
        Some(messages as f64),
        "{text}"
    );
    // Counted as they are read, not at the end of the run.
    assert_eq!(
        metric(&text, "tapstream_packets_read_total"),
        Some(packets_in(&pcap) as f64),
        "{text}"
    );
    assert!(
        metric(&text, "tapstream_packets_processed_total").unwrap_or(0.0) > 10_000.0,
        "{text}"
    );
    assert!(
        text.contains("# HELP tapstream_kafka_read_lag_messages"),
        "{text}"
    );
    assert!(
        text.contains("tapstream_inference_latency_seconds_bucket"),
        "{text}"
    );
    m.signal(libc::SIGTERM);
    assert!(m.wait(Duration::from_secs(60)).success());
}

/// The CIC-schema model: these tests are about the Kafka source and sink,
/// and with several members each instance sees only its partitions, so
/// context features (per instance) would differ from one file run.
fn cic_model() -> std::path::PathBuf {
    crate::util::root().join("models/cic-mlp.onnx")
}
