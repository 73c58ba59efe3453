//! `tapstream eval` end to end: labelled directories made here from
//! generated captures (the layout and a labels TSV), the JSON's numbers,
//! the self-contained HTML, a corrupt capture reported while the others are
//! evaluated, a malformed TSV line, sane totals on the shared lab
//! captures, and the perturbed copies `tapstream perturb` writes.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use tapstream_ingest::packet::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use tapstream_ingest::pcapgen::{pcap_bytes, Frame};

use crate::util::{bin, have_ort, output, pcap_of, root, shared_data};

/// 2026-01-05T09:00:00Z in µs.
const T0: i64 = 1_767_603_600_000_000;
const SERVER: [u8; 4] = [10, 1, 0, 2];
const ATTACKER: [u8; 4] = [10, 9, 9, 9];
const VICTIM: [u8; 4] = [10, 1, 0, 5];

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn write_pcap(path: &Path, mut frames: Vec<(i64, Frame)>) {
    frames.sort_by_key(|(t, _)| *t);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, pcap_bytes(&frames)).unwrap();
}

/// `n` benign HTTPS sessions from 10.1.0.10.., one every 4 s from `t0`:
/// handshake, a request, a response in three segments, FIN teardown.
fn sessions(t0: i64, n: u16) -> Vec<(i64, Frame)> {
    let mut f = Vec::new();
    for i in 0..n {
        let t = t0 + i64::from(i) * 4_000_000;
        let c = v4([10, 1, 0, 10 + i as u8]);
        let s = v4(SERVER);
        let sport = 40_000 + i;
        let up = |flags, len| Frame::tcp(c, s, sport, 443, flags, len).with_window(64_240);
        let down = |flags, len| Frame::tcp(s, c, 443, sport, flags, len).with_window(65_160);
        f.push((t, up(SYN, 0).with_tcp_options(20)));
        f.push((t + 20_000, down(SYN | ACK, 0).with_tcp_options(20)));
        f.push((t + 40_000, up(ACK, 0)));
        f.push((t + 41_000, up(PSH | ACK, 420)));
        for k in 0..3 {
            f.push((t + 80_000 + k * 500, down(ACK, 1_448)));
        }
        f.push((t + 100_000, up(ACK, 0)));
        f.push((t + 300_000, up(FIN | ACK, 0)));
        f.push((t + 320_000, down(FIN | ACK, 0)));
        f.push((t + 340_000, up(ACK, 0)));
    }
    f
}

/// A SYN scan of `ports` ports of the server from the attacker, starting at
/// `t0`, 250 µs apart; closed ports answer RST/ACK (as the demo's scan).
fn scan(t0: i64, ports: u16) -> Vec<(i64, Frame)> {
    let (a, s) = (v4(ATTACKER), v4(SERVER));
    let mut f = Vec::new();
    for (k, port) in (1..=ports).enumerate() {
        let t = t0 + k as i64 * 250;
        let sport = 61_000 + (k % 3) as u16;
        let syn = Frame::tcp(a, s, sport, port, SYN, 0)
            .with_window(1024)
            .with_tcp_options(4);
        f.push((t, syn));
        f.push((
            t + 90,
            Frame::tcp(s, a, port, sport, RST | ACK, 0).with_window(0),
        ));
    }
    f
}

/// `n` SYNs to the victim's port 80 from spoofed sources, from `t0`.
fn spoofed_syns(t0: i64, n: u16) -> Vec<(i64, Frame)> {
    (0..n)
        .map(|i| {
            let src = v4([172, 16, (i / 200) as u8, (i % 200) as u8 + 1]);
            let syn = Frame::tcp(src, v4(VICTIM), 1024 + i, 80, SYN, 0).with_window(512);
            (t0 + i64::from(i) * 100, syn)
        })
        .collect()
}

fn eval(args: &[&str], data: &Path, out: &Path) -> Output {
    output(
        bin()
            .arg("eval")
            .arg("--data")
            .arg(data)
            .arg("--out")
            .arg(out)
            .args(args)
            .current_dir(root()),
    )
}

fn read_json(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// What every model's result must satisfy whatever it alerted: rates are
/// their counts' ratios and each confusion row sums to its flows.
fn check_consistent(r: &Value) {
    let counts = &r["counts"];
    for res in r["results"].as_array().unwrap() {
        let m = &res["metrics"];
        let mut alerts = 0;
        for (kind, k) in m["kinds"].as_object().unwrap() {
            let (flows, alerted) = (u(&k["flows"]), u(&k["alerted"]));
            assert_eq!(flows, u(&counts["kinds"][kind]["flows"]), "{kind}");
            assert!(alerted <= flows);
            if flows > 0 {
                let recall = k["recall"].as_f64().unwrap();
                assert!((recall - alerted as f64 / flows as f64).abs() < 1e-12);
            }
            let row: u64 = m["confusion"][kind]
                .as_object()
                .map_or(0, |r| r.values().map(u).sum());
            assert_eq!(row, flows, "confusion row {kind}");
            let none = m["confusion"][kind]["none"].as_u64().unwrap_or(0);
            assert_eq!(flows - none, alerted, "{kind}");
            assert!(u(&k["captures_hit"]) <= u(&k["captures"]));
            assert!(u(&k["alerts_per_episode"]["max"]) <= alerted);
            alerts += alerted;
        }
        let b = &m["benign"];
        assert_eq!(u(&b["flows"]), u(&counts["benign_flows"]));
        let benign_row: u64 = m["confusion"]["benign"]
            .as_object()
            .map_or(0, |r| r.values().map(u).sum());
        assert_eq!(benign_row, u(&b["flows"]));
        let group_alerts: u64 = b["groups"]
            .as_object()
            .unwrap()
            .values()
            .map(|g| u(&g["alerted"]))
            .sum();
        assert_eq!(group_alerts, u(&b["alerted"]));
        assert_eq!(u(&m["alerts"]), alerts + u(&b["alerted"]));
    }
}

fn check_html(out: &Path, models: &[&str]) {
    let html = std::fs::read_to_string(out.join("eval.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<style>"));
    for tag in ["<script", "<link", "src=", "href=", "@import", "url("] {
        assert!(
            !html.contains(tag),
            "eval.html is not self-contained: {tag}"
        );
    }
    for section in [
        "Flow recall per kind",
        "Captures hit",
        "Benign false-positive rate",
        "Alerts per attack episode",
        "Confusion",
    ] {
        assert!(html.contains(section), "eval.html lacks {section}");
    }
    for m in models {
        assert!(
            html.contains(&format!("<h3>{m}</h3>")),
            "no confusion table for {m}"
        );
    }
}

#[test]
fn layout_directory_with_a_corrupt_capture() {
    if !have_ort("layout_directory_with_a_corrupt_capture") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_pcap(&data.join("benign/lan__web.pcap"), sessions(T0, 12));
    write_pcap(
        &data.join("attack/portscan/scan.pcap"),
        scan(T0 + 1_000_000, 300),
    );
    std::fs::create_dir_all(data.join("attack/portscan/more")).unwrap();
    std::fs::write(
        data.join("attack/portscan/more/broken.pcap"),
        b"this is not a capture\n",
    )
    .unwrap();
    std::fs::write(data.join("benign/notes.txt"), b"not a capture, not read\n").unwrap();
    // A capture of a link type tapstream does not decode (USB) is a read
    // error too: none of it can be evaluated.
    std::fs::write(data.join("benign/usb.pcap"), pcap_of(189, &[&[0u8; 64]])).unwrap();
    let out = dir.path().join("out");
    let o = eval(&[], &data, &out);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(2),
        "read errors exit 2\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("attack/portscan/more/broken.pcap: unreadable"),
        "{stderr}"
    );
    assert!(
        stderr.contains("benign/usb.pcap: unreadable") && stderr.contains("USB_LINUX (189)"),
        "{stderr}"
    );
    assert!(
        stdout.contains("portscan") && stdout.contains("benign FPR"),
        "{stdout}"
    );
    assert!(
        stdout.contains("unreadable: attack/portscan/more/broken.pcap"),
        "{stdout}"
    );

    let r = read_json(&out);
    assert_eq!(r["report"], "tapstream eval");
    assert_eq!(r["labels"], "layout");
    let c = &r["counts"];
    assert_eq!(
        (
            u(&c["captures"]),
            u(&c["captures_read"]),
            u(&c["read_errors"])
        ),
        (4, 2, 2)
    );
    assert_eq!(
        (u(&c["flows"]), u(&c["attack_flows"]), u(&c["benign_flows"])),
        (312, 300, 12)
    );
    assert_eq!(
        u(&c["kinds"]["portscan"]["captures"]),
        1,
        "the unreadable capture is not a file of the kind"
    );
    assert_eq!(u(&c["benign_groups"]["benign:lan"]), 12);
    assert_eq!(u(&c["episodes"]), 1);
    let errors = r["read_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    let broken = errors
        .iter()
        .find(|e| e["file"] == "attack/portscan/more/broken.pcap")
        .unwrap();
    assert_eq!(broken["partial"], false);
    assert!(!broken["error"].as_str().unwrap().is_empty());
    let usb = errors
        .iter()
        .find(|e| e["file"] == "benign/usb.pcap")
        .unwrap();
    assert!(usb["error"].as_str().unwrap().contains("USB_LINUX (189)"));

    // The default model, by its contract.
    let m = &r["models"][0];
    assert_eq!(m["name"], "behaviour-mlp");
    assert_eq!(m["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(m["threshold"], m["contract_threshold"]);
    // The scan is the one the default model was trained to see (as in the
    // demo capture, where it alerts every flow of it).
    let ps = &r["results"][0]["metrics"]["kinds"]["portscan"];
    assert!(ps["recall"].as_f64().unwrap() >= 0.9, "{ps}");
    assert_eq!((u(&ps["captures"]), u(&ps["captures_hit"])), (1, 1));
    assert_eq!(u(&ps["alerts_per_episode"]["max"]), u(&ps["alerted"]));
    check_consistent(&r);
    check_html(&out, &["behaviour-mlp"]);
}

#[test]
fn labels_tsv_background_window_and_spoofed_sources() {
    if !have_ort("labels_tsv_background_window_and_spoofed_sources") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Benign sessions for the first minute, a scan at 100 s, a spoofed SYN
    // flood at 200 s, and the attacker's one flow at 300 s: outside its
    // window, so benign background.
    let mut frames = sessions(T0, 12);
    frames.extend(scan(T0 + 100_000_000, 300));
    frames.extend(spoofed_syns(T0 + 200_000_000, 200));
    let late = Frame::tcp(v4(ATTACKER), v4(SERVER), 55_555, 443, SYN, 0);
    frames.push((T0 + 300_000_000, late));
    write_pcap(&data.join("office/mixed.pcap"), frames);
    // Not listed in the labels: not evaluated.
    write_pcap(&data.join("office/unlisted.pcap"), sessions(T0, 2));
    let s = |us: i64| format!("{}.{:06}", us / 1_000_000, us % 1_000_000);
    let tsv = format!(
        "path\tlabel\tattacker_ips\tvictim_ip\tstart_epoch\tend_epoch\tnotes\n\
         office/mixed.pcap\tportscan\t10.9.9.9\t10.1.0.2\t{}\t{}\tscan\n\
         office/mixed.pcap\tsynflood\trandom-spoofed (--rand-source)\t10.1.0.5\t{}\t{}\tflood\n",
        s(T0 + 100_000_000),
        s(T0 + 100_075_000),
        s(T0 + 200_000_000),
        s(T0 + 200_020_000),
    );
    std::fs::write(data.join("LABELS.tsv"), tsv).unwrap();
    let out = dir.path().join("out");
    let fp32 = "models/cic-mlp.onnx";
    let fp16 = "models/cic-mlp-fp16.onnx";
    let o = eval(
        &["--model", fp32, "--model", fp16, "--workers", "2"],
        &data,
        &out,
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r = read_json(&out);
    assert!(r["labels"].as_str().unwrap().ends_with("LABELS.tsv"));
    let c = &r["counts"];
    assert_eq!(u(&c["captures"]), 1);
    assert_eq!(u(&c["kinds"]["portscan"]["flows"]), 300);
    assert_eq!(u(&c["kinds"]["synflood"]["flows"]), 200);
    assert_eq!(
        u(&c["benign_flows"]),
        13,
        "12 sessions and the late attacker flow"
    );
    assert_eq!(u(&c["benign_groups"]["office"]), 13);
    assert_eq!(u(&c["episodes"]), 2);
    // Models side by side: FP16 decides as FP32 does on these flows.
    let names: Vec<&str> = r["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cic-mlp", "cic-mlp-fp16"]);
    assert_eq!(r["results"][0]["model"], "cic-mlp");
    assert_eq!(r["results"][0]["metrics"], r["results"][1]["metrics"]);
    assert!(stdout.contains("cic-mlp-fp16"), "{stdout}");
    check_consistent(&r);
    check_html(&out, &names);

    // --threshold 1 for every model: nothing scores above 1.
    let out1 = dir.path().join("out1");
    let o = eval(&["--threshold", "1"], &data, &out1);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r1 = read_json(&out1);
    assert_eq!(r1["models"][0]["threshold"], 1.0);
}

/// `--together`: the models as one run's detectors, one more column: a
/// flow is alerted when any model alerts it, so no kind's recall is below
/// either model's, and no more flows are alerted than by both.
#[test]
fn models_scored_together_alert_when_any_does() {
    if !have_ort("models_scored_together_alert_when_any_does") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_pcap(&data.join("benign/office.pcap"), sessions(T0, 20));
    write_pcap(&data.join("attack/portscan/scan.pcap"), scan(T0, 200));
    write_pcap(
        &data.join("attack/synflood/flood.pcap"),
        spoofed_syns(T0, 300),
    );
    let out = dir.path().join("out");
    let o = eval(
        &[
            "--model",
            "models/cic-mlp.onnx",
            "--model",
            "models/behaviour-mlp.onnx",
            "--together",
        ],
        &data,
        &out,
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("together") && stdout.contains("each own"),
        "{stdout}"
    );
    let r = read_json(&out);
    check_consistent(&r);
    let names: Vec<&str> = r["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cic-mlp", "behaviour-mlp", "together"]);
    check_html(&out, &names);
    let m = |i: usize| &r["results"][i]["metrics"];
    for kind in ["portscan", "synflood"] {
        let a = |i: usize| u(&m(i)["kinds"][kind]["alerted"]);
        assert!(a(2) >= a(0).max(a(1)) && a(2) <= a(0) + a(1), "{kind}: {r}");
    }
    let b = |i: usize| u(&m(i)["benign"]["alerted"]);
    assert!(b(2) >= b(0).max(b(1)) && b(2) <= b(0) + b(1), "{r}");
}

/// `--perturb`: each perturbation's copy of the captures goes through the
/// whole pipeline; fragmenting every datagram changes nothing (reassembly
/// gives back the same packets), padding is reported beside it, in the
/// JSON, the table and the HTML; an unknown name is refused.
#[test]
fn perturbed_captures_are_reported_beside_the_clean_ones() {
    if !have_ort("perturbed_captures_are_reported_beside_the_clean_ones") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_pcap(&data.join("benign/lan__web.pcap"), sessions(T0, 12));
    write_pcap(&data.join("attack/portscan/scan.pcap"), scan(T0, 300));
    let out = dir.path().join("out");
    let o = eval(&["--perturb", "fragment_8b,padding_64b"], &data, &out);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("perturbed (change from the clean captures"),
        "{stdout}"
    );
    assert!(!out.join(".perturbed").exists(), "the copies are removed");
    let r = read_json(&out);
    let p = r["perturbations"].as_array().unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p[0]["name"], "fragment_8b");
    assert_eq!(p[1]["name"], "padding_64b");
    let clean = &r["results"][0]["metrics"];
    for q in p {
        assert!(u(&q["packets"]["rewritten"]) > 300, "{q}");
        assert_eq!(q["results"][0]["model"], "behaviour-mlp");
    }
    // Reassembled, the fragmented captures are the clean ones again.
    let frag = &p[0]["results"][0];
    assert_eq!(
        frag["kinds"]["portscan"]["recall"],
        clean["kinds"]["portscan"]["recall"]
    );
    assert_eq!(frag["kinds"]["portscan"]["change"].as_f64(), Some(0.0));
    assert_eq!(frag["benign_fpr_change"].as_f64(), Some(0.0));
    assert_eq!(frag["mean_recall"], clean["mean_recall"]);
    let html = std::fs::read_to_string(out.join("eval.html")).unwrap();
    assert!(html.contains("Perturbed captures") && html.contains("padding_64b"));

    let o = eval(&["--perturb", "fragment"], &data, &out);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("unknown perturbation \"fragment\""),
        "{stderr}"
    );
}

/// Timestamps of every packet of a capture, in file order.
fn packet_times(path: &Path) -> Vec<i64> {
    let mut ts = Vec::new();
    tapstream_ingest::records::for_each_packet(path, |p| {
        ts.push(p.ts_us);
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    ts
}

/// `tapstream perturb` writes the copy `eval --perturb` scores: jitter keeps
/// every packet and moves some, fragmentation adds packets; a bad name or
/// the input as the output is an error that leaves the input as it was.
#[test]
fn perturb_writes_one_perturbed_copy() {
    let dir = tempfile::tempdir().unwrap();
    let input = crate::util::demo_pcap(dir.path());
    let before = std::fs::read(&input).unwrap();
    let clean = packet_times(&input);
    let perturb = |how: &str, out: &Path| {
        output(
            bin()
                .args(["perturb", "--how", how, "--pcap"])
                .arg(&input)
                .arg("--out")
                .arg(out),
        )
    };
    let jittered = dir.path().join("jitter.pcap");
    let o = perturb("jitter_500ms", &jittered);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("attacker packets rewritten"));
    let moved = packet_times(&jittered);
    assert_eq!(moved.len(), clean.len());
    assert!(
        moved.windows(2).all(|w| w[0] <= w[1]),
        "written in time order"
    );
    let mut a = clean.clone();
    let mut b = moved.clone();
    a.sort_unstable();
    b.sort_unstable();
    assert_ne!(a, b, "some packets were delayed");
    assert!(!dir.path().join("jitter.pcap.partial").exists());

    let fragmented = dir.path().join("frag.pcap");
    assert!(perturb("fragment_8b", &fragmented).status.success());
    assert!(packet_times(&fragmented).len() > clean.len());

    for (how, out, says) in [
        (
            "fragment",
            dir.path().join("x.pcap"),
            "unknown perturbation",
        ),
        (
            "jitter_10ms,padding_64b",
            dir.path().join("x.pcap"),
            "one perturbation",
        ),
        ("jitter_10ms", input.clone(), "is the input capture"),
    ] {
        let o = perturb(how, &out);
        assert!(!o.status.success(), "{how}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{how}: {err}");
    }
    assert!(!dir.path().join("x.pcap").exists());
    assert_eq!(
        std::fs::read(&input).unwrap(),
        before,
        "the input is untouched"
    );
    let o = output(
        bin()
            .args(["perturb", "--how", "jitter_10ms", "--pcap"])
            .arg(dir.path().join("missing.pcap"))
            .arg("--out")
            .arg(dir.path().join("y.pcap")),
    );
    assert!(!o.status.success());
    assert!(!dir.path().join("y.pcap").exists() && !dir.path().join("y.pcap.partial").exists());
}

#[test]
fn malformed_labels_line_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_pcap(&data.join("a.pcap"), sessions(T0, 1));
    let tsv = "path\tlabel\tattacker_ips\tvictim_ip\tstart_epoch\tend_epoch\n\
               a.pcap\tbenign\t-\t-\t-\t-\n\
               a.pcap\tportscan\t10.9.9.9\t10.1.0.2\tyesterday\t1767603700\n";
    let labels = dir.path().join("labels.tsv");
    std::fs::write(&labels, tsv).unwrap();
    let out = dir.path().join("out");
    let o = eval(&["--labels", labels.to_str().unwrap()], &data, &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("labels.tsv, line 3: start_epoch `yesterday`"),
        "{stderr}"
    );
    // Neither labels nor layout.
    let o = eval(&[], &data, &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no labels"), "{stderr}");
}

/// The shared lab captures with their LABELS.tsv and the shipped model.
#[test]
fn lab_captures_with_the_shipped_model() {
    let Some(shared) = shared_data("lab_captures_with_the_shipped_model") else {
        return;
    };
    if !have_ort("lab_captures_with_the_shipped_model") {
        return;
    }
    let lab: PathBuf = shared.join("lab");
    let labels = std::fs::read_to_string(lab.join("LABELS.tsv")).unwrap();
    let mut lines = labels.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = header.iter().position(|h| *h == "label").unwrap();
    let rows: Vec<Vec<&str>> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').collect())
        .collect();
    let mut kinds: Vec<&str> = rows
        .iter()
        .map(|r| r[col])
        .filter(|l| *l != "benign")
        .collect();
    kinds.sort_unstable();
    kinds.dedup();

    let dir = tempfile::tempdir().unwrap();
    let o = eval(&["--model", "models/cic-mlp.onnx"], &lab, dir.path());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r = read_json(dir.path());
    let c = &r["counts"];
    assert_eq!(u(&c["captures"]), rows.len() as u64);
    assert_eq!(u(&c["read_errors"]), 0);
    let found: Vec<&String> = c["kinds"].as_object().unwrap().keys().collect();
    assert_eq!(found, kinds, "every lab kind");
    for kind in &kinds {
        assert!(u(&c["kinds"][kind]["flows"]) > 0, "{kind} has flows");
        assert!(stdout.contains(kind), "{kind} in the table");
    }
    assert!(u(&c["benign_flows"]) > 100);
    assert!(u(&c["attack_flows"]) > 10_000);
    assert_eq!(
        u(&c["flows"]),
        u(&c["attack_flows"]) + u(&c["benign_flows"])
    );
    let m = &r["results"][0]["metrics"];
    let fpr = m["benign"]["fpr"].as_f64().unwrap();
    assert!((0.0..0.5).contains(&fpr), "{fpr}");
    // The scans are what the model knows best.
    assert!(m["kinds"]["portscan"]["recall"].as_f64().unwrap() > 0.9);
    check_consistent(&r);
    check_html(dir.path(), &["cic-mlp"]);
}
