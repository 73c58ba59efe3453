//! The command line on the demo capture and on bad input.

use std::io::Write;

use crate::util::{bin, demo_pcap, have_ort, output, pcap_of, root, shared_data};

#[test]
fn features_header_is_the_improved_cic_header() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = demo_pcap(dir.path());
    let csv = dir.path().join("f.csv");
    let o = output(
        bin()
            .args(["features", "--quiet", "--pcap"])
            .arg(&pcap)
            .arg("--out")
            .arg(&csv),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&csv).unwrap();
    let header = text.lines().next().unwrap();
    let cols: Vec<&str> = header.split(',').collect();
    assert_eq!(cols.len(), 88);
    if let Some(data) = shared_data("features_header_is_the_improved_cic_header") {
        let reference = std::fs::read_to_string(
            data.join("flows/cicids2017_improved_sample/data_header_reference.csv"),
        )
        .unwrap();
        let expected: Vec<&str> = reference
            .trim()
            .split(',')
            .filter(|c| !matches!(*c, "id" | "Label" | "Attempted Category"))
            .collect();
        assert_eq!(cols, expected);
    }
    // One row per flow, each with 88 fields.
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert!(rows.len() > 1000, "{} rows", rows.len());
    assert!(rows.iter().all(|r| r.split(',').count() == 88));
}

#[test]
fn demo_run_prints_eve_alerts_from_the_default_model() {
    if !have_ort("demo_run_prints_eve_alerts_from_the_default_model") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = demo_pcap(dir.path());
    let summary = dir.path().join("s.json");
    let o = output(
        bin()
            .current_dir(root())
            .args(["run", "--alerts", "flows", "--pcap"])
            .arg(&pcap)
            .arg("--summary-json")
            .arg(&summary),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("every packet accounted for"), "{stderr}");
    let stdout = String::from_utf8(o.stdout).unwrap();
    let alerts: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(alerts.len() >= 100, "only {} alerts", alerts.len());
    for a in &alerts {
        assert_eq!(a["event_type"], "alert");
        assert!(a["community_id"].as_str().unwrap().starts_with("1:"));
        assert!(a["tapstream"]["score"].as_f64().unwrap() >= 0.0);
    }
    // The port scan's attacker address is among the alert sources.
    assert!(alerts
        .iter()
        .any(|a| a["src_ip"] == "198.18.66.6" || a["dest_ip"] == "198.18.66.6"));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["accounted"], true);
    assert_eq!(s["alerts"].as_u64().unwrap(), alerts.len() as u64);
}

#[test]
fn not_a_capture_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.txt");
    std::fs::File::create(&p)
        .unwrap()
        .write_all(b"this is not a capture file at all\n")
        .unwrap();
    let o = output(
        bin()
            .args(["features", "--pcap"])
            .arg(&p)
            .args(["--out", "-"]),
    );
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("notes.txt"), "{stderr}");
}

#[test]
fn bad_config_is_refused_before_start() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = demo_pcap(dir.path());
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[flow]\nmax_flows = -3\n").unwrap();
    let o = output(
        bin()
            .args(["features", "--pcap"])
            .arg(&pcap)
            .args(["--out", "-", "--config"])
            .arg(&cfg),
    );
    assert!(!o.status.success());
    assert!(
        o.stdout.is_empty(),
        "nothing may be written before the config is checked"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("max_flows"), "{stderr}");
}

#[test]
fn missing_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = demo_pcap(dir.path());
    let o = output(
        bin()
            .args(["run", "--pcap"])
            .arg(&pcap)
            .args(["--model", "/nonexistent/model.onnx"]),
    );
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("/nonexistent/model.onnx"), "{stderr}");
}

/// A model that breaks the contract stops the run before anything starts:
/// non-zero exit, an error naming the model's fault, and an existing EVE
/// file left as it was (the sink opens only after the model is accepted).
#[test]
fn model_with_the_wrong_shape_is_refused_before_start() {
    if !have_ort("model_with_the_wrong_shape_is_refused_before_start") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = demo_pcap(dir.path());
    let eve = dir.path().join("eve.json");
    let before = "{\"event_type\":\"alert\",\"earlier\":true}\n";
    std::fs::write(&eve, before).unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(
        &cfg,
        format!("[output]\neve = {:?}\n", eve.display().to_string()),
    )
    .unwrap();
    for (model, says) in [
        ("input_width.onnx", "4 wide"),
        ("int64_input.onnx", "float32"),
        ("wrong_width.onnx", "probability columns"),
        ("threshold2.onnx", "threshold"),
    ] {
        let o = output(
            bin()
                .args(["run", "--pcap"])
                .arg(&pcap)
                .arg("--model")
                .arg(root().join("inference/tests/data").join(model))
                .arg("--config")
                .arg(&cfg),
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{model} was accepted: {stderr}");
        assert!(o.stdout.is_empty(), "{model}: wrote to stdout");
        assert!(
            stderr.contains(model) && stderr.contains(says),
            "{model}: {stderr}"
        );
        assert_eq!(std::fs::read_to_string(&eve).unwrap(), before, "{model}");
    }
}

#[test]
fn default_config_round_trips() {
    let o = output(bin().arg("config"));
    assert!(o.status.success());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.toml");
    std::fs::write(&p, &o.stdout).unwrap();
    let o = output(bin().arg("config").arg(&p));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn features_do_not_depend_on_the_number_of_workers() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = demo_pcap(dir.path());
    let mut outputs = Vec::new();
    for workers in ["1", "3"] {
        let csv = dir.path().join(format!("w{workers}.csv"));
        let o = output(
            bin()
                .args(["features", "--quiet", "--workers", workers, "--pcap"])
                .arg(&pcap)
                .arg("--out")
                .arg(&csv),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut rows: Vec<String> = std::fs::read_to_string(&csv)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        rows.sort();
        outputs.push(rows);
    }
    assert!(outputs[0].len() > 1000);
    assert_eq!(outputs[0], outputs[1]);
}

/// A capture that gives nothing to analyse says so, naming its link type,
/// also under --quiet: an error (exit 3) when tapstream decodes none of its
/// link types, a warning (exit 0) when its packets are simply not IP.
#[test]
fn a_capture_with_nothing_usable_says_so_even_when_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let arp: &[u8] = &[
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1,
        2, 0, 0, 0, 0, 1, 198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 198, 18, 0, 2,
    ];
    for (name, link_type, says, code) in [
        ("user5.pcap", 152, "USER5 (152) 2", 3),
        ("arp.pcap", 1, "ETHERNET (1) 2", 0),
    ] {
        let pcap = dir.path().join(name);
        std::fs::write(&pcap, pcap_of(link_type, &[arp, arp])).unwrap();
        let ort = have_ort("a_capture_with_nothing_usable_says_so_even_when_quiet (run)");
        for cmd in ["features", "run"]
            .into_iter()
            .filter(|c| *c != "run" || ort)
        {
            let mut c = bin();
            c.args([cmd, "--quiet", "--pcap"]).arg(&pcap);
            if cmd == "features" {
                c.args(["--out", "/dev/null"]);
            } else {
                c.args(["--eve", "/dev/null"]);
            }
            let o = output(&mut c);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(code), "{cmd} {name}: {err}");
            assert!(
                err.contains("none of the 2 packets") && err.contains(says) && err.contains(name),
                "{cmd} {name}: {err}"
            );
        }
    }
}
