//! Alert output of `tapstream run`: `[output.limit]` on the demo capture
//! (what is written plus what is suppressed is the unlimited run's alerts),
//! and the EVE file re-opened on SIGHUP for log rotation, every alert in
//! the old or the new file exactly once.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{bin, complete_lines, demo_pcap, have_ort, output, root};

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
/// (TOML); returns the alerts and the summary JSON.
fn run(dir: &Path, pcap: &Path, name: &str, config: &str) -> (Vec<Value>, Value) {
    let eve = dir.join(format!("{name}.json"));
    let summary = dir.join(format!("{name}.summary.json"));
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, config).unwrap();
    let o = output(
        bin()
            .current_dir(root())
            .args(["run", "--quiet", "--model", "models/cic-mlp.onnx", "--pcap"])
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
        .args(["run", "--quiet", "--model", "models/cic-mlp.onnx", "--pcap"])
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
