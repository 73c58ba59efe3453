//! Alert output of `tapstream run`: `[output.limit]` on the demo capture
//! (what is written plus what is suppressed is the unlimited run's alerts),
//! the EVE file re-opened on SIGHUP for log rotation, every alert in the
//! old or the new file exactly once, and episodes (the default): one start
//! and one end per episode whose counts add up to the per-flow alerts.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{bin, complete_lines, demo_pcap, have_ort, output, root, shared_data};

/// The EVE lines of `path` (none if it does not exist), once tapstream has
/// exited: every line, the last one too, must be whole JSON.
fn eve_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each EVE line is JSON"))
        .collect()
}

fn flow_ids(alerts: &[Value]) -> Vec<u64> {
    let mut ids: Vec<u64> = alerts
        .iter()
        .map(|a| a["flow_id"].as_u64().expect("flow_id"))
        .collect();
    ids.sort_unstable();
    ids
}

/// Runs `tapstream run` on `pcap` into `dir/<name>.json` with `config`
/// (TOML), one alert per flow; returns the alerts and the summary JSON.
fn run(dir: &Path, pcap: &Path, name: &str, config: &str) -> (Vec<Value>, Value) {
    run_as(dir, pcap, name, config, "flows", "models/cic-mlp.onnx")
}

/// [`run`] with `--alerts MODE` and `model`.
fn run_as(
    dir: &Path,
    pcap: &Path,
    name: &str,
    config: &str,
    mode: &str,
    model: &str,
) -> (Vec<Value>, Value) {
    let eve = dir.join(format!("{name}.json"));
    let summary = dir.join(format!("{name}.summary.json"));
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, config).unwrap();
    let o = output(
        bin()
            .current_dir(root())
            .args([
                "run", "--alerts", mode, "--quiet", "--model", model, "--pcap",
            ])
            .arg(pcap)
            .arg("--eve")
            .arg(&eve)
            .arg("--config")
            .arg(&cfg)
            .arg("--summary-json")
            .arg(&summary),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    (eve_lines(&eve), s)
}

fn suppressed(s: &Value, reason: &str) -> u64 {
    s["alerts_suppressed"][reason]
        .as_u64()
        .unwrap_or_else(|| panic!("no alerts_suppressed.{reason} in {s}"))
}

#[test]
fn limited_run_writes_plus_suppresses_the_unlimited_runs_alerts() {
    if !have_ort("limited_run_writes_plus_suppresses_the_unlimited_runs_alerts") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = demo_pcap(dir.path());
    let (all, s) = run(dir.path(), &pcap, "all", "");
    let total = s["alerts"].as_u64().unwrap();
    assert_eq!(total, all.len() as u64);
    assert!(total > 1000, "{s}");
    assert_eq!(
        suppressed(&s, "rate_limit") + suppressed(&s, "duplicate_flow"),
        0
    );
    let all_ids: HashSet<u64> = flow_ids(&all).into_iter().collect();
    assert_eq!(all_ids.len(), all.len(), "flow ids are unique");

    // One alert per source and class in a window longer than the capture:
    // exactly the distinct (src_ip, signature_id) pairs are written,
    // whatever order the alerts arrive in.
    let (once, s1) = run(
        dir.path(),
        &pcap,
        "once",
        "[output.limit]\ndedup_flows = true\ntrack = \"by_src\"\ncount = 1\nwindow = \"24h\"\n",
    );
    let pairs: HashSet<(String, u64)> = all
        .iter()
        .map(|a| {
            (
                a["src_ip"].as_str().unwrap().to_string(),
                a["alert"]["signature_id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(once.len(), pairs.len(), "{s1}");
    assert_eq!(s1["alerts"].as_u64().unwrap(), once.len() as u64);
    assert_eq!(
        suppressed(&s1, "duplicate_flow"),
        0,
        "the demo has no repeats"
    );
    assert_eq!(suppressed(&s1, "rate_limit"), total - once.len() as u64);
    assert!(flow_ids(&once).iter().all(|id| all_ids.contains(id)));

    // A few per destination and class per 10 s of packet time.
    let (some, s2) = run(
        dir.path(),
        &pcap,
        "some",
        "[output.limit]\ntrack = \"by_dst\"\ncount = 5\nwindow = \"10s\"\n",
    );
    let written = s2["alerts"].as_u64().unwrap();
    assert_eq!(written, some.len() as u64);
    assert!(suppressed(&s2, "rate_limit") > 0, "{s2}");
    assert_eq!(written + suppressed(&s2, "rate_limit"), total, "{s2}");
    assert!(written > once.len() as u64, "{s2}");
}

/// `tapstream run --eve FILE` on a capture that arrives through a FIFO:
/// after half of it, the file is moved away and SIGHUP sent; tapstream
/// starts a new file at the path while it waits for packets, and the two
/// files together hold the alerts of a plain run, each exactly once.
#[test]
fn sighup_reopens_the_eve_file_of_a_running_tapstream() {
    if !have_ort("sighup_reopens_the_eve_file_of_a_running_tapstream") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap_path = demo_pcap(dir.path());
    let (reference, _) = run(dir.path(), &pcap_path, "reference", "");
    let pcap = std::fs::read(&pcap_path).unwrap();
    let fifo = dir.path().join("input.pcap");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !matches!(made, Ok(s) if s.success()) {
        eprintln!("sighup_reopens_the_eve_file_of_a_running_tapstream: skipped, no mkfifo");
        return;
    }
    let eve = dir.path().join("eve.json");
    let rotated = dir.path().join("eve.json.1");
    let summary = dir.path().join("summary.json");
    let mut child = bin()
        .current_dir(root())
        .args([
            "run",
            "--alerts",
            "flows",
            "--quiet",
            "--model",
            "models/cic-mlp.onnx",
            "--pcap",
        ])
        .arg(&fifo)
        .arg("--eve")
        .arg(&eve)
        .arg("--summary-json")
        .arg(&summary)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !done() {
            assert!(t.elapsed() < Duration::from_secs(20), "timed out: {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // Opening the FIFO waits for tapstream to open it, by which time its
    // SIGHUP handlers are installed.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let half = pcap.len() / 2;
    writer.write_all(&pcap[..half]).unwrap();
    writer.flush().unwrap();
    // tapstream is still writing: only whole lines count.
    wait_for("alerts from the first half", &|| {
        !complete_lines(&eve).is_empty()
    });
    std::fs::rename(&eve, &rotated).unwrap();
    let o = output(std::process::Command::new("kill").args(["-HUP", &pid]));
    assert!(o.status.success());
    // No packet comes meanwhile: the new file appears all the same.
    wait_for("the new EVE file", &|| eve.exists());
    writer.write_all(&pcap[half..]).unwrap();
    drop(writer);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "{stderr}");
    let old = eve_lines(&rotated);
    let new = eve_lines(&eve);
    assert!(
        !old.is_empty() && !new.is_empty(),
        "{} + {}",
        old.len(),
        new.len()
    );
    let mut both = old;
    both.extend(new);
    assert_eq!(flow_ids(&both), flow_ids(&reference));
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["eve_reopens"]["ok"], 1, "{s}");
    assert_eq!(s["eve_reopens"]["error"], 0, "{s}");
    assert_eq!(s["alerts"].as_u64().unwrap(), both.len() as u64, "{s}");
}

/// Episode records of the demo capture: every episode starts once and ends
/// once (start first), its end counts add up, per class, to the per-flow
/// run's alerts, and there are far fewer lines than flagged flows.
#[test]
fn episodes_add_up_to_the_per_flow_alerts() {
    if !have_ort("episodes_add_up_to_the_per_flow_alerts") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = demo_pcap(dir.path());
    let model = "models/behaviour-mlp.onnx";
    let (flows, s1) = run_as(dir.path(), &pcap, "flows", "", "flows", model);
    let (records, s2) = run_as(dir.path(), &pcap, "episodes", "", "episodes", model);
    assert!(flows.len() > 100, "{} demo alerts", flows.len());
    assert_eq!(s1["alerts"], s2["alerts"], "the same flows are flagged");
    assert_eq!(s2["alert_lines"].as_u64().unwrap(), records.len() as u64);
    assert!(s1["episodes"].is_null());

    let mut per_class_flows: std::collections::BTreeMap<String, u64> = Default::default();
    for a in &flows {
        *per_class_flows
            .entry(a["tapstream"]["class"].as_str().unwrap().into())
            .or_default() += 1;
    }
    let mut per_class_ended: std::collections::BTreeMap<String, u64> = Default::default();
    let mut started = HashSet::new();
    let mut ended = HashSet::new();
    for r in &records {
        let ep = &r["tapstream"]["episode"];
        let id = ep["id"].as_u64().expect("an episode id");
        assert_eq!(r["event_type"], "alert");
        match ep["state"].as_str().unwrap() {
            "start" => assert!(started.insert(id), "episode {id} started twice"),
            "update" => assert!(started.contains(&id) && !ended.contains(&id)),
            "end" => {
                assert!(
                    started.contains(&id),
                    "episode {id} ended before it started"
                );
                assert!(ended.insert(id), "episode {id} ended twice");
                let class = r["tapstream"]["class"].as_str().unwrap().to_string();
                *per_class_ended.entry(class).or_default() += ep["flows"].as_u64().unwrap();
                assert!(ep["end_reason"].is_string());
            }
            other => panic!("state {other}"),
        }
    }
    assert_eq!(started, ended, "every episode ends");
    // The demo's attack is a port scan: its episode says so in numbers.
    let scan = records
        .iter()
        .find(|r| r["tapstream"]["episode"]["state"] == "end" && r["tapstream"]["class"] == "scan")
        .expect("the demo's scan episode");
    let why = scan["tapstream"]["explanation"]
        .as_array()
        .expect("an explanation");
    assert!(!why.is_empty() && why.len() <= 3, "{why:?}");
    assert_eq!(
        why[0]["feature"]
            .as_str()
            .unwrap()
            .rsplit_once('_')
            .unwrap()
            .0,
        "ctx_pair_new_ports"
    );
    let text = why[0]["text"].as_str().unwrap();
    assert!(
        text.contains("new ports/s tried by 198.18.66.6 on 198.18.0.2"),
        "{text}"
    );
    for item in why {
        assert!(
            item["value"].as_f64().unwrap() > item["benign_p99"].as_f64().unwrap(),
            "{item}"
        );
    }
    let stats: HashSet<&str> = why
        .iter()
        .map(|i| i["feature"].as_str().unwrap().rsplit_once('_').unwrap().0)
        .collect();
    assert_eq!(stats.len(), why.len(), "one scale per statistic: {why:?}");
    assert_eq!(per_class_ended, per_class_flows);
    let e = &s2["episodes"];
    assert_eq!(e["started"].as_u64().unwrap(), started.len() as u64);
    assert!(
        records.len() * 10 < flows.len(),
        "{} records for {} alerts",
        records.len(),
        flows.len()
    );
}

/// The lab's spoofed SYN flood (about 30,000 flows from random sources) is
/// at most three alert lines with episodes.
#[test]
fn a_spoofed_syn_flood_is_at_most_three_alert_lines() {
    if !have_ort("a_spoofed_syn_flood_is_at_most_three_alert_lines") {
        return;
    }
    let Some(data) = shared_data("a_spoofed_syn_flood_is_at_most_three_alert_lines") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pcap = data.join("lab/attack/synflood/hping3_syn.pcap");
    let (records, s) = run_as(
        dir.path(),
        &pcap,
        "syn",
        "",
        "episodes",
        "models/behaviour-mlp.onnx",
    );
    assert!(s["alerts"].as_u64().unwrap() > 20_000, "{s}");
    assert!((2..=3).contains(&records.len()), "{} lines", records.len());
    let end = &records.last().unwrap()["tapstream"]["episode"];
    assert_eq!(end["state"], "end");
    assert_eq!(end["victim"], "198.18.0.2");
    assert!(end["attacker"].is_null(), "spoofed sources");
    assert_eq!(end["flows"], s["alerts"]);
    let why = records.last().unwrap()["tapstream"]["explanation"]
        .as_array()
        .expect("explained");
    let text = why[0]["text"].as_str().unwrap();
    assert!(text.contains("198.18.0.2 port 80/TCP"), "{text}");
}
