//! `tapstream model report`: the JSON report's keys and sanity on the shared
//! CIC sample (held-out rows) and on the demo capture (robustness), and
//! clear errors for bad invocations.

use std::path::Path;

use serde_json::Value;

use crate::util::{bin, demo_pcap, have_ort, output, root, shared_data};

fn report(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("report.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The sanity every report must pass; returns the reference-on-cpu result.
fn check_common(r: &Value, dir: &Path) -> Value {
    for key in [
        "tapstream_version",
        "machine",
        "onnxruntime_library",
        "input",
        "batch_sizes",
        "baseline",
        "backends",
        "variants",
        "results",
        "unavailable",
        "robustness",
    ] {
        assert!(r.get(key).is_some(), "report.json lacks {key}");
    }
    assert!(r["machine"]["logical_cores"].as_u64().unwrap() >= 1);
    let v0 = &r["variants"][0];
    assert_eq!(v0["role"], "reference");
    assert_eq!(v0["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(v0["precision"], "fp32");
    let base = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["variant"] == v0["name"] && x["backend"] == "cpu")
        .expect("reference on cpu")
        .clone();
    assert_eq!(base["status"], "ok");
    let m = &base["metrics"];
    assert!(m["rows"].as_u64().unwrap() > 0);
    let acc = m["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc), "{acc}");
    assert_eq!(m["vs_baseline"]["decision_flips"], 0);
    assert_eq!(m["vs_baseline"]["class_flips"], 0);
    assert_eq!(m["vs_baseline"]["max_abs_score_delta"].as_f64(), Some(0.0));
    assert_eq!(m["vs_baseline"]["mean_abs_score_delta"].as_f64(), Some(0.0));
    let lat = base["latency"]["per_batch"].as_array().unwrap();
    assert!(!lat.is_empty());
    for p in lat {
        assert!(p["p50_us"].as_f64().unwrap() > 0.0);
        assert!(p["p99_us"].as_f64().unwrap() >= p["p50_us"].as_f64().unwrap());
    }
    assert!(
        base["latency"]["throughput"]["rows_per_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // Backends this ONNX Runtime lacks are named; any that failed say why.
    for x in r["results"].as_array().unwrap() {
        if x["status"] != "ok" {
            assert!(x["reason"].as_str().unwrap().starts_with("unavailable: "));
        }
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<svg"), "no inline SVG plot");
    assert!(!html.contains("http://") || !html.contains("src=\"http"));
    base
}

#[test]
fn report_on_the_cic_holdout() {
    let Some(data) = shared_data("report_on_the_cic_holdout") else {
        return;
    };
    if !have_ort("report_on_the_cic_holdout") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let o = output(
        bin()
            .current_dir(root())
            .args(["model", "report", "--data"])
            .arg(data.join("flows/cicids2017_improved_sample"))
            .arg("--compare")
            .arg(root().join("inference/tests/data/mislabelled_fp16.onnx"))
            .args(["--batch-sizes", "1,64", "--out"])
            .arg(&out),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = report(&out);
    let base = check_common(&r, &out);
    // The default held-out ids were used, and the numbers are the training
    // recipe's (models/cic-mlp.metrics.json, holdout).
    assert!(r["input"]["holdout"]["file"]
        .as_str()
        .unwrap()
        .ends_with("cic-mlp.holdout-ids.txt"));
    assert_eq!(r["input"]["rows"], 6282);
    let m = &base["metrics"];
    assert_eq!(m["accuracy"].as_f64(), Some(0.985673));
    assert_eq!(m["benign_fpr"].as_f64(), Some(0.008));
    assert_eq!(m["detection_rate"].as_f64(), Some(0.99947));
    // A refused variant is reported, not fatal.
    let refused = r["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| {
            v["path"]
                .as_str()
                .unwrap()
                .ends_with("mislabelled_fp16.onnx")
        })
        .expect("the --compare file is listed");
    assert!(refused["error"].as_str().unwrap().contains("precision"));
    assert!(r["robustness"].is_null(), "robustness needs --pcap");
}

#[test]
fn report_on_the_demo_capture_has_robustness() {
    if !have_ort("report_on_the_demo_capture_has_robustness") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = demo_pcap(dir.path());
    let out = dir.path().join("report");
    let o = output(
        bin()
            .current_dir(root())
            .args(["model", "report", "--pcap"])
            .arg(&pcap)
            .args(["--label", "Portscan", "--batch-sizes", "1,64", "--out"])
            .arg(&out),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = report(&out);
    check_common(&r, &out);
    assert_eq!(r["input"]["kind"], "pcap");
    let rob = &r["robustness"];
    assert!(rob["seed"].as_u64().is_some());
    let perts = rob["perturbations"].as_array().unwrap();
    let names: Vec<&str> = perts.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "unperturbed",
            "padding_64b",
            "padding_512b",
            "jitter_10ms",
            "jitter_500ms",
            "extra_packets_1_in_4"
        ]
    );
    assert_eq!(perts[1]["budget"]["max_bytes_per_packet"], 64);
    assert_eq!(perts[2]["budget"]["max_bytes_per_packet"], 512);
    assert_eq!(perts[3]["budget"]["max_delay_ms"].as_f64(), Some(10.0));
    assert_eq!(perts[4]["budget"]["max_delay_ms"].as_f64(), Some(500.0));
    assert_eq!(
        perts[5]["budget"]["probability_per_packet"].as_f64(),
        Some(0.25)
    );
    for p in perts {
        let d = &p["detection"][0];
        let rate = d["detection_rate"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&rate));
        assert!(d["change_vs_unperturbed"].as_f64().is_some());
    }
    assert_eq!(
        perts[0]["detection"][0]["change_vs_unperturbed"].as_f64(),
        Some(0.0)
    );
    // More packets with the extra-packet perturbation only.
    assert!(perts[5]["packets"].as_u64() > perts[0]["packets"].as_u64());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("padding_512b") && html.contains("0..=500 ms"));
}

#[test]
fn report_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let run = |args: &[&str]| {
        let o = output(bin().current_dir(root()).args(args));
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!err.contains("panicked"), "{err}");
        err
    };
    let out_s = out.to_str().unwrap();
    let e = run(&["model", "report", "--out", out_s]);
    assert!(e.contains("--data") && e.contains("--pcap"), "{e}");
    let e = run(&["model", "report", "--pcap", "x.pcap", "--out", out_s]);
    assert!(e.contains("--label"), "{e}");
    // An empty CSV directory.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    if have_ort("report_errors_are_clear") {
        let e = run(&[
            "model",
            "report",
            "--data",
            empty.to_str().unwrap(),
            "--out",
            out_s,
        ]);
        assert!(e.contains("no CSV files"), "{e}");
        // A CSV with a header only: no rows.
        let csv = empty.join("a.csv");
        std::fs::write(&csv, "id,Timestamp,Protocol,Label\n").unwrap();
        let e = run(&[
            "model",
            "report",
            "--data",
            csv.to_str().unwrap(),
            "--holdout",
            root()
                .join("models/cic-mlp.holdout-ids.txt")
                .to_str()
                .unwrap(),
            "--out",
            out_s,
        ]);
        assert!(e.contains("no rows"), "{e}");
        // An unknown label.
        let pcap = demo_pcap(dir.path());
        let e = run(&[
            "model",
            "report",
            "--pcap",
            pcap.to_str().unwrap(),
            "--label",
            "Nonsense",
            "--out",
            out_s,
        ]);
        assert!(e.contains("unknown label") && e.contains("Portscan"), "{e}");
    }
    // An unwritable output directory (a file is in the way).
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let e = run(&[
        "model",
        "report",
        "--data",
        empty.to_str().unwrap(),
        "--out",
        file.join("sub").to_str().unwrap(),
    ]);
    assert!(e.contains("report directory"), "{e}");
}
