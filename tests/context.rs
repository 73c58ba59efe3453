//! The context stage: each flow's context row is the same for any number of
//! workers and decoders and on replay, adding it changes no CIC column, and
//! the switch and its errors behave as documented.

use std::path::Path;

use crate::util::{bin, demo_pcap, output, shared_data};

/// `tapstream features` rows (sorted, header first) of `pcap`.
fn rows(pcap: &Path, dir: &Path, workers: usize, decoders: usize, context: bool) -> Vec<String> {
    let csv = dir.join(format!("w{workers}-d{decoders}-{context}.csv"));
    let mut cmd = bin();
    cmd.args(["features", "--quiet", "--pcap"])
        .arg(pcap)
        .arg("--out")
        .arg(&csv)
        .args(["--workers", &workers.to_string()])
        .args(["--decoders", &decoders.to_string()]);
    if context {
        cmd.arg("--context");
    }
    let o = output(&mut cmd);
    assert!(
        o.status.success(),
        "{}: {}",
        pcap.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[1..].sort();
    lines
}

/// Checks one capture; returns its number of flows.
fn check_capture(pcap: &Path, dir: &Path) -> usize {
    let one = rows(pcap, dir, 1, 1, true);
    let header: Vec<&str> = one[0].split(',').collect();
    assert_eq!(header.len(), 88 + 36, "{}", one[0]);
    assert_eq!(header[88], "ctx_src_flows_1s");
    for (w, d) in [(3, 1), (2, 3), (4, 2)] {
        assert!(
            rows(pcap, dir, w, d, true) == one,
            "{}: context rows differ with {w} workers and {d} decoders",
            pcap.display()
        );
    }
    // The CIC columns are those of a run without context.
    let plain = rows(pcap, dir, 2, 1, false);
    let cut: Vec<String> = one
        .iter()
        .map(|l| l.split(',').take(88).collect::<Vec<_>>().join(","))
        .collect();
    let mut cut_sorted = cut[1..].to_vec();
    cut_sorted.sort();
    assert_eq!(cut[0], plain[0]);
    assert!(
        cut_sorted == plain[1..],
        "{}: CIC columns changed",
        pcap.display()
    );
    one.len() - 1
}

#[test]
fn context_rows_do_not_depend_on_workers_or_decoders() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = demo_pcap(dir.path());
    assert!(check_capture(&pcap, dir.path()) > 1000);
}

#[test]
fn shared_captures_get_the_same_context_on_any_shape() {
    let Some(data) = shared_data("shared_captures_get_the_same_context_on_any_shape") else {
        return;
    };
    for rel in [
        "lab/attack/synflood/hping3_syn_nospoof.pcap",
        "lab/attack/sshbrute/hydra_ssh.pcap",
        "lab/attack/portscan/nmap_sU.pcap",
        "lab/benign/http_ab.pcap",
        "pcaps/attack/dos/sv__ipv6-dos-with-ext-headers-5__denial6-5.pcap",
        "pcaps/edge/linktype_or_format/zeek__echo-connections.pcap.gz",
    ] {
        let dir = tempfile::tempdir().unwrap();
        check_capture(&data.join(rel), dir.path());
    }
}

#[test]
fn a_non_spoofed_syn_flood_shows_in_its_sources_context() {
    let Some(data) = shared_data("a_non_spoofed_syn_flood_shows_in_its_sources_context") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lines = rows(
        &data.join("lab/attack/synflood/hping3_syn_nospoof.pcap"),
        dir.path(),
        2,
        1,
        true,
    );
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "ctx_psrv_flows_1s")
        .unwrap();
    let busy = lines[1..]
        .iter()
        .filter(|l| {
            let c: Vec<&str> = l.split(',').collect();
            c[1] == "198.18.0.1" && c[col].parse::<f64>().unwrap() > 100.0
        })
        .count();
    // Thousands of flows per second from one source to one service.
    assert!(
        busy * 10 > (lines.len() - 1) * 9,
        "{busy} of {}",
        lines.len() - 1
    );
}

#[test]
fn a_bad_context_setting_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[context]\nmemcap_mib = 0\n").unwrap();
    let o = output(bin().arg("config").arg(&cfg));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("context.memcap_mib"),
        "{err}"
    );
    std::fs::write(&cfg, "[context]\nenabled = \"sometimes\"\n").unwrap();
    let o = output(bin().arg("config").arg(&cfg));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("sometimes"), "{err}");
}

#[test]
fn a_context_model_where_context_cannot_be_made_is_refused_with_the_fix() {
    if !crate::util::have_ort(
        "a_context_model_where_context_cannot_be_made_is_refused_with_the_fix",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = demo_pcap(dir.path());
    let model = crate::util::root().join("models/behaviour-mlp.onnx");
    let cfg = dir.path().join("c.toml");
    for (setting, says) in [
        ("[context]\nenabled = \"off\"\n", "set it to \"auto\""),
        (
            "[inference]\nplacement = \"workers\"\n",
            "use placement = \"consumer\"",
        ),
        ("[gpu]\ndevice = \"cuda\"\n", "use gpu.device = \"cpu\""),
    ] {
        std::fs::write(&cfg, setting).unwrap();
        let o = output(
            bin()
                .args(["run", "--quiet", "--eve", "-", "--pcap"])
                .arg(&pcap)
                .arg("--model")
                .arg(&model)
                .arg("--config")
                .arg(&cfg),
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("reads context features") && err.contains(says),
            "{setting}: {err}"
        );
        assert!(
            o.stdout.is_empty(),
            "{setting}: no alert before the refusal"
        );
    }
    // Without --model, the same runs fall back to the CIC-schema model
    // (the CUDA one needs a GPU, so it is left out here).
    std::fs::write(&cfg, "[context]\nenabled = \"off\"\n").unwrap();
    let o = output(
        bin()
            .args(["run", "--quiet", "--eve", "/dev/null", "--pcap"])
            .arg(&pcap)
            .arg("--config")
            .arg(&cfg),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_scan_shows_as_rejections_of_its_source() {
    let Some(data) = shared_data("a_scan_shows_as_rejections_of_its_source") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let col = |header: &[&str], name: &str| header.iter().position(|h| *h == name).unwrap();
    // (capture, scanner, the least share of its flows that must read some
    // earlier rejection at the 10 s scale): closed TCP ports answer with
    // resets; closed UDP ports with ICMP port unreachables, which Linux
    // rate-limits, so fewer.
    for (rel, scanner, share) in [
        ("lab/attack/portscan/nmap_sS.pcap", "198.18.0.1", 0.9),
        ("lab/attack/portscan/nmap_sU.pcap", "198.18.0.1", 0.5),
    ] {
        let lines = rows(&data.join(rel), dir.path(), 2, 1, true);
        let header: Vec<&str> = lines[0].split(',').collect();
        let (rej, ans) = (
            col(&header, "ctx_src_rejected_10s"),
            col(&header, "ctx_src_answered_10s"),
        );
        let mine: Vec<Vec<&str>> = lines[1..]
            .iter()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|c| c[1] == scanner)
            .collect();
        let rejected = mine
            .iter()
            .filter(|c| c[rej].parse::<f64>().unwrap() >= 1.0)
            .count();
        assert!(
            rejected as f64 >= share * mine.len() as f64,
            "{rel}: {rejected} of {}",
            mine.len()
        );
        // More refused than answered: what a scan of mostly closed ports is.
        let last = mine
            .iter()
            .max_by(|a, b| {
                let r = |c: &Vec<&str>| c[rej].parse::<f64>().unwrap();
                r(a).total_cmp(&r(b))
            })
            .unwrap();
        assert!(
            last[rej].parse::<f64>().unwrap() > last[ans].parse::<f64>().unwrap(),
            "{rel}"
        );
    }
    // A benign client's flows are answered, never refused.
    let lines = rows(
        &data.join("lab/benign/http_ab.pcap"),
        dir.path(),
        2,
        1,
        true,
    );
    let header: Vec<&str> = lines[0].split(',').collect();
    let rej = col(&header, "ctx_src_rejected_100s");
    assert!(lines[1..]
        .iter()
        .all(|l| l.split(',').nth(rej).unwrap().parse::<f64>().unwrap() == 0.0));
}
