//! Community ID of tapstream's flows against Suricata 7's, on shared captures.
//!
//! With the decision threshold at 0 every flow becomes an alert, so the EVE
//! output lists every flow tapstream saw with its `community_id`. Suricata
//! runs on the same file with flow events and Community ID on. Every flow
//! 5-tuple both tools report must carry the same Community ID.

use std::collections::HashMap;
use std::process::Command;

use crate::util::{bin, have_ort, output, root, shared_data};

/// TCP, UDP, ICMP, IPv4 and IPv6 flows.
const CAPTURES: &[&str] = &[
    "pcaps/benign/protocols/ndpi__youtube_quic.pcap",
    "pcaps/benign/protocols/ndpi__atg.pcap",
    "pcaps/benign/protocols/ndpi__activision.pcap",
    "pcaps/benign/protocols/ndpi__NTPv3.pcap",
    "pcaps/benign/protocols/zeek__wikipedia.pcap",
    "pcaps/benign/protocols/ndpi__iphone.pcap",
    "pcaps/benign/protocols/zeek__dns-edns-ecs.pcap",
    "pcaps/benign/protocols/arkime__arkime_synthetic.pcap",
];

fn suricata7() -> bool {
    Command::new("suricata")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("version 7"))
        .unwrap_or(false)
}

/// (proto, sorted endpoints) → community id.
type Key = (String, String, String);

fn key(v: &serde_json::Value) -> Key {
    let a = format!("{}|{}", v["src_ip"].as_str().unwrap_or(""), v["src_port"]);
    let b = format!("{}|{}", v["dest_ip"].as_str().unwrap_or(""), v["dest_port"]);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    (v["proto"].as_str().unwrap_or("").to_string(), lo, hi)
}

/// Flows where Suricata 7 computes Community ID differently from the spec
/// (which tapstream follows, as Zeek does): one-way ICMP types, protocols
/// without ports (ESP, IP-in-IP, …) and flows whose two addresses are equal.
/// `connectors/tests/suricata_community_id.rs` reproduces Suricata's own
/// computation for each of these.
fn suricata_departs_from_spec(v: &serde_json::Value) -> bool {
    let proto = v["proto"].as_str().unwrap_or("");
    let icmp_echo_like = matches!(v["icmp_type"].as_u64(), Some(0 | 8 | 128 | 129));
    match proto {
        "TCP" | "UDP" | "SCTP" => v["src_ip"] == v["dest_ip"],
        "ICMP" | "IPv6-ICMP" => !icmp_echo_like || v["src_ip"] == v["dest_ip"],
        _ => true,
    }
}

#[test]
fn community_id_matches_suricata() {
    let test = "community_id_matches_suricata";
    let Some(data) = shared_data(test) else {
        return;
    };
    if !have_ort(test) {
        return;
    }
    if !suricata7() {
        assert!(
            std::env::var_os("TAPSTREAM_REQUIRE_ORT").is_none(),
            "Suricata 7 is required in CI (scripts/install-deps.sh test)"
        );
        eprintln!("{test}: skipped, Suricata 7 not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("all.toml");
    std::fs::write(&cfg, "[model]\nthreshold = 0.0\n").unwrap();
    let yaml = dir.path().join("suricata.yaml");
    std::fs::write(
        &yaml,
        "%YAML 1.1\n---\noutputs:\n  - eve-log:\n      enabled: yes\n      filetype: regular\n      \
         filename: eve.json\n      community-id: yes\n      types:\n        - flow\n\
         default-rule-path: /dev/null\nrule-files: []\n",
    )
    .unwrap();
    let mut compared = 0;
    for rel in CAPTURES {
        let pcap = data.join(rel);
        let o = output(
            bin()
                .current_dir(root())
                .args(["run", "--alerts", "flows", "--quiet", "--pcap"])
                .arg(&pcap)
                .arg("--config")
                .arg(&cfg),
        );
        assert!(
            o.status.success(),
            "{rel}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let ours: HashMap<Key, String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| (key(&v), v["community_id"].as_str().unwrap().to_string()))
            .collect();
        assert!(!ours.is_empty(), "{rel}: no flows");
        let logdir = dir.path().join(rel.replace('/', "_"));
        std::fs::create_dir_all(&logdir).unwrap();
        let s = output(
            Command::new("suricata")
                .arg("-c")
                .arg(&yaml)
                .arg("-r")
                .arg(&pcap)
                .args(["-k", "none", "-l"])
                .arg(&logdir),
        );
        assert!(
            s.status.success(),
            "suricata: {}",
            String::from_utf8_lossy(&s.stderr)
        );
        let eve = std::fs::read_to_string(logdir.join("eve.json")).unwrap();
        let mut matched = 0;
        for line in eve.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["event_type"] != "flow" || suricata_departs_from_spec(&v) {
                continue;
            }
            if let Some(ours) = ours.get(&key(&v)) {
                assert_eq!(
                    Some(ours.as_str()),
                    v["community_id"].as_str(),
                    "{rel}: {}",
                    line
                );
                matched += 1;
            }
        }
        assert!(matched > 0, "{rel}: no flow in common with Suricata");
        compared += matched;
    }
    eprintln!("{compared} flows compared with Suricata");
    assert!(
        compared >= 100,
        "only {compared} flows in common with Suricata"
    );
}

/// `scripts/beside-suricata.sh` on a Heartbleed capture: the payload exploit
/// tapstream's flow features cannot see is Suricata's alert, on the same
/// flow (joined by Community ID) as tapstream's.
#[test]
fn beside_suricata_joins_both_alert_streams() {
    let Some(data) = shared_data("beside_suricata_joins_both_alert_streams") else {
        return;
    };
    if !have_ort("beside_suricata_joins_both_alert_streams") {
        return;
    }
    if !suricata7() {
        assert!(
            std::env::var_os("TAPSTREAM_REQUIRE_ORT").is_none(),
            "Suricata 7 is required in CI (scripts/install-deps.sh test)"
        );
        eprintln!("beside_suricata_joins_both_alert_streams: skipped, Suricata 7 not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = output(
        Command::new("bash")
            .arg(root().join("scripts/beside-suricata.sh"))
            .arg(data.join("pcaps/attack/exploit/zeek__heartbleed.pcap"))
            .arg(dir.path())
            .env("TAPSTREAM", env!("CARGO_BIN_EXE_tapstream"))
            .current_dir(root()),
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("side-by-side.jsonl")).unwrap();
    let heartbleed: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| {
            v["suricata"]
                .as_object()
                .is_some_and(|s| s.keys().any(|k| k.contains("heartbleed")))
        })
        .collect();
    assert_eq!(heartbleed.len(), 1, "{text}");
    assert!(heartbleed[0]["community_id"]
        .as_str()
        .unwrap()
        .starts_with("1:"));
    assert!(stdout.contains("flows with an alert"), "{stdout}");
}
