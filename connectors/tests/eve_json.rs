//! EVE alert lines: exact field sets and types, round trips, IPv6 and ICMP
//! alerts, escaping, and no panic or invalid JSON on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Map, Value};
use tapstream_connectors::community_id::{CommunityId, FlowTuple};
use tapstream_connectors::eve::{self, Alert, EveWriter, ModelInfo};
use tapstream_ingest::{EndReason, FlowMeta};

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn model() -> ModelInfo {
    ModelInfo::new("cic-ids2017-mlp", "1.0.0", SHA)
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&a);
    out
}

fn tcp_flow() -> FlowMeta {
    FlowMeta {
        flow_id: (1 << 51) - 1,
        src: v4([172, 16, 0, 1]),
        dst: v4([192, 168, 10, 50]),
        sport: 51234,
        dport: 80,
        proto: 6,
        v6: false,
        icmp_type: 0,
        icmp_code: 0,
        start_us: 1_499_419_799_000_000,
        last_us: 1_499_419_800_250_000,
        pkts_fwd: 8,
        pkts_bwd: 6,
        bytes_fwd: 1200,
        bytes_bwd: 9000,
        reason: EndReason::TcpTermination,
    }
}

fn line(alert: &Alert<'_>) -> String {
    let mut out = Vec::new();
    EveWriter::new(0).write(alert, &mut out);
    String::from_utf8(out).expect("UTF-8")
}

fn parse(line: &str) -> Map<String, Value> {
    assert!(line.ends_with('\n'), "{line}");
    assert_eq!(line.matches('\n').count(), 1, "{line}");
    match serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")) {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Asserts that `"key":` occurs in `line` for each key, in this order
/// (serde_json's map sorts keys, so order is checked on the text).
fn assert_key_order(line: &str, keys: &[&str]) {
    let mut at = 0;
    for key in keys {
        let needle = format!("\"{key}\":");
        match line[at..].find(&needle) {
            Some(pos) => at += pos + needle.len(),
            None => panic!("{key} missing or out of order in {line}"),
        }
    }
}

/// Type tags of a JSON value, for the schema checks.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_u64() => "uint",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Asserts that `map` has exactly the `expected` keys, with these types.
fn assert_schema(map: &Map<String, Value>, expected: &[(&str, &str)]) {
    let mut got: Vec<(&str, &str)> = map.iter().map(|(k, v)| (k.as_str(), kind(v))).collect();
    let mut expected = expected.to_vec();
    got.sort_unstable();
    expected.sort_unstable();
    assert_eq!(got, expected);
}

const ALERT_OBJECT: &[(&str, &str)] = &[
    ("action", "string"),
    ("gid", "uint"),
    ("signature_id", "uint"),
    ("rev", "uint"),
    ("signature", "string"),
    ("category", "string"),
    ("severity", "uint"),
];

const FLOW_OBJECT: &[(&str, &str)] = &[
    ("pkts_toserver", "uint"),
    ("pkts_toclient", "uint"),
    ("bytes_toserver", "uint"),
    ("bytes_toclient", "uint"),
    ("start", "string"),
    ("end", "string"),
];

const TAPSTREAM_OBJECT: &[(&str, &str)] = &[
    ("model", "string"),
    ("model_version", "string"),
    ("model_sha256", "string"),
    ("score", "number"),
    ("threshold", "number"),
    ("class", "string"),
    ("end_reason", "string"),
];

fn check_nested(map: &Map<String, Value>) {
    assert_schema(map["alert"].as_object().unwrap(), ALERT_OBJECT);
    assert_schema(map["flow"].as_object().unwrap(), FLOW_OBJECT);
    assert_schema(map["tapstream"].as_object().unwrap(), TAPSTREAM_OBJECT);
}

#[test]
fn tcp_alert_has_exactly_the_documented_fields() {
    let flow = tcp_flow();
    let model = model();
    let alert = Alert {
        flow: &flow,
        score: 0.97,
        class: "DDoS",
        class_index: 1,
        model: &model,
        threshold: 0.5,
        episode: None,
        explanation: None,
    };
    let text = line(&alert);
    let map = parse(&text);
    assert_schema(
        &map,
        &[
            ("timestamp", "string"),
            ("flow_id", "uint"),
            ("event_type", "string"),
            ("src_ip", "string"),
            ("src_port", "uint"),
            ("dest_ip", "string"),
            ("dest_port", "uint"),
            ("proto", "string"),
            ("community_id", "string"),
            ("alert", "object"),
            ("flow", "object"),
            ("tapstream", "object"),
        ],
    );
    check_nested(&map);

    let cid = CommunityId::v1(&FlowTuple::from_meta(&flow), 0);
    let expected = format!(
        concat!(
            r#"{{"timestamp":"2017-07-07T09:30:00.250000+0000","flow_id":2251799813685247,"#,
            r#""event_type":"alert","src_ip":"172.16.0.1","src_port":51234,"#,
            r#""dest_ip":"192.168.10.50","dest_port":80,"proto":"TCP","community_id":"{}","#,
            r#""alert":{{"action":"allowed","gid":1,"signature_id":9100001,"rev":1,"#,
            r#""signature":"TAPSTREAM ML DDoS (cic-ids2017-mlp v1.0.0)","#,
            r#""category":"Machine Learning Flow Classification","severity":1}},"#,
            r#""flow":{{"pkts_toserver":8,"pkts_toclient":6,"bytes_toserver":1200,"#,
            r#""bytes_toclient":9000,"start":"2017-07-07T09:29:59.000000+0000","#,
            r#""end":"2017-07-07T09:30:00.250000+0000"}},"#,
            r#""tapstream":{{"model":"cic-ids2017-mlp","model_version":"1.0.0","#,
            r#""model_sha256":"{}","score":0.97,"threshold":0.5,"class":"DDoS","#,
            r#""end_reason":"tcp_termination"}}}}"#,
            "\n"
        ),
        cid, SHA
    );
    assert_eq!(text, expected);
}

/// Writes, parses back, and compares every field with the input.
fn round_trip(flow: &FlowMeta, class: &str, index: u16, score: f32, model: &ModelInfo) {
    let alert = Alert {
        flow,
        score,
        class,
        class_index: index,
        model,
        threshold: 0.25,
        episode: None,
        explanation: None,
    };
    let map = parse(&line(&alert));
    check_nested(&map);

    let ip = |v: &Value| -> IpAddr { v.as_str().unwrap().parse().unwrap() };
    assert_eq!(ip(&map["src_ip"]), flow.src_ip());
    assert_eq!(ip(&map["dest_ip"]), flow.dst_ip());
    assert_eq!(map["flow_id"].as_u64(), Some(flow.flow_id));
    assert_eq!(map["event_type"], "alert");
    let name = eve::proto_name(flow.proto)
        .map(str::to_owned)
        .unwrap_or_else(|| flow.proto.to_string());
    assert_eq!(map["proto"].as_str(), Some(name.as_str()));

    let has_ports = matches!(flow.proto, 6 | 17 | 132);
    let is_icmp = matches!(flow.proto, 1 | 58);
    assert_eq!(map.contains_key("src_port"), has_ports);
    assert_eq!(map.contains_key("dest_port"), has_ports);
    assert_eq!(map.contains_key("icmp_type"), is_icmp);
    assert_eq!(map.contains_key("icmp_code"), is_icmp);
    if has_ports {
        assert_eq!(map["src_port"].as_u64(), Some(u64::from(flow.sport)));
        assert_eq!(map["dest_port"].as_u64(), Some(u64::from(flow.dport)));
    }
    if is_icmp {
        assert_eq!(map["icmp_type"].as_u64(), Some(u64::from(flow.icmp_type)));
        assert_eq!(map["icmp_code"].as_u64(), Some(u64::from(flow.icmp_code)));
    }
    let cid = CommunityId::v1(&FlowTuple::from_meta(flow), 0);
    assert_eq!(map["community_id"].as_str(), Some(cid.as_str()));

    let a = &map["alert"];
    assert_eq!(a["action"], "allowed");
    assert_eq!(a["gid"], 1);
    assert_eq!(
        a["signature_id"].as_u64(),
        Some(9_100_000 + u64::from(index))
    );
    assert_eq!(a["rev"], 1);
    let sig = format!("TAPSTREAM ML {class} ({} v{})", model.name, model.version);
    assert_eq!(a["signature"].as_str(), Some(sig.as_str()));
    assert_eq!(a["category"], eve::CATEGORY);
    assert_eq!(a["severity"], if score >= 0.9 { 1 } else { 2 });

    let f = &map["flow"];
    assert_eq!(f["pkts_toserver"].as_u64(), Some(flow.pkts_fwd));
    assert_eq!(f["pkts_toclient"].as_u64(), Some(flow.pkts_bwd));
    assert_eq!(f["bytes_toserver"].as_u64(), Some(flow.bytes_fwd));
    assert_eq!(f["bytes_toclient"].as_u64(), Some(flow.bytes_bwd));
    let ts = |us: i64| {
        let mut out = Vec::new();
        eve::write_timestamp(&mut out, us);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(f["start"].as_str(), Some(ts(flow.start_us).as_str()));
    assert_eq!(f["end"].as_str(), Some(ts(flow.last_us).as_str()));
    assert_eq!(map["timestamp"], f["end"]);

    let t = &map["tapstream"];
    assert_eq!(t["model"].as_str(), Some(model.name.as_str()));
    assert_eq!(t["model_version"].as_str(), Some(model.version.as_str()));
    assert_eq!(t["model_sha256"].as_str(), Some(model.sha256.as_str()));
    assert_eq!(t["score"].as_f64().map(|s| s as f32), Some(score));
    assert_eq!(t["threshold"].as_f64(), Some(0.25));
    assert_eq!(t["class"].as_str(), Some(class));
    assert_eq!(t["end_reason"].as_str(), Some(flow.reason.as_str()));
}

#[test]
fn round_trips() {
    let model = model();
    let flow = tcp_flow();
    round_trip(&flow, "DDoS", 1, 0.97, &model);
    round_trip(&flow, "PortScan", 7, 0.5000001, &model);
    round_trip(&flow, "Bot", u16::MAX, 1e-7, &model);
}

#[test]
fn ipv6_udp_alert() {
    let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let dst: Ipv6Addr = "fe80::260:97ff:fe07:69ea".parse().unwrap();
    let flow = FlowMeta {
        src: src.octets(),
        dst: dst.octets(),
        proto: 17,
        v6: true,
        sport: 5353,
        dport: 53,
        reason: EndReason::IdleTimeout,
        ..tcp_flow()
    };
    let model = model();
    round_trip(&flow, "DNS tunnel", 3, 0.91, &model);
    let map = parse(&line(&Alert {
        flow: &flow,
        score: 0.91,
        class: "DNS tunnel",
        class_index: 3,
        model: &model,
        threshold: 0.5,
        episode: None,
        explanation: None,
    }));
    // Suricata 7 writes IPv6 addresses uncompressed.
    assert_eq!(map["src_ip"], "2001:0db8:0000:0000:0000:0000:0000:0001");
    assert_eq!(map["dest_ip"], "fe80:0000:0000:0000:0260:97ff:fe07:69ea");
    assert_eq!(map["proto"], "UDP");
}

#[test]
fn icmp_alerts_carry_type_and_code_not_ports() {
    let model = model();
    let echo = FlowMeta {
        src: v4([192, 168, 0, 89]),
        dst: v4([192, 168, 0, 1]),
        sport: 0,
        dport: 0,
        proto: 1,
        icmp_type: 8,
        icmp_code: 0,
        reason: EndReason::IcmpChange,
        ..tcp_flow()
    };
    round_trip(&echo, "ICMP flood", 2, 0.99, &model);
    let text = line(&Alert {
        flow: &echo,
        score: 0.99,
        class: "ICMP flood",
        class_index: 2,
        model: &model,
        threshold: 0.5,
        episode: None,
        explanation: None,
    });
    // Suricata's order.
    assert_key_order(
        &text,
        &[
            "timestamp",
            "flow_id",
            "event_type",
            "src_ip",
            "dest_ip",
            "proto",
            "icmp_type",
            "icmp_code",
            "community_id",
            "alert",
            "flow",
            "tapstream",
        ],
    );
    let map = parse(&text);
    assert_eq!(map["proto"], "ICMP");
    assert_eq!(map["icmp_type"], 8);
    assert_eq!(map["icmp_code"], 0);
    // Suricata's value for this flow in zeek__icmp.pcap.
    assert_eq!(map["community_id"], "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=");
    assert_schema(
        &map,
        &[
            ("timestamp", "string"),
            ("flow_id", "uint"),
            ("event_type", "string"),
            ("src_ip", "string"),
            ("dest_ip", "string"),
            ("proto", "string"),
            ("icmp_type", "uint"),
            ("icmp_code", "uint"),
            ("community_id", "string"),
            ("alert", "object"),
            ("flow", "object"),
            ("tapstream", "object"),
        ],
    );

    let ns = FlowMeta {
        src: "fe80::200:86ff:fe05:80da"
            .parse::<Ipv6Addr>()
            .unwrap()
            .octets(),
        dst: "fe80::260:97ff:fe07:69ea"
            .parse::<Ipv6Addr>()
            .unwrap()
            .octets(),
        v6: true,
        proto: 58,
        icmp_type: 135,
        icmp_code: 0,
        ..echo
    };
    round_trip(&ns, "Recon", 4, 0.7, &model);
    let map = parse(&line(&Alert {
        flow: &ns,
        score: 0.7,
        class: "Recon",
        class_index: 4,
        model: &model,
        threshold: 0.5,
        episode: None,
        explanation: None,
    }));
    assert_eq!(map["proto"], "IPv6-ICMP");
    assert_eq!(map["icmp_type"], 135);
    // Suricata's and the spec's value for this neighbor solicitation.
    assert_eq!(map["community_id"], "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=");
    assert_eq!(map["alert"]["severity"], 2);
}

#[test]
fn protocols_without_ports() {
    let model = model();
    for (proto, name) in [
        (47u8, "GRE"),
        (50, "ESP"),
        (132, "SCTP"),
        (200, "200"),
        (255, "255"),
    ] {
        let flow = FlowMeta {
            proto,
            sport: if proto == 132 { 7 } else { 0 },
            dport: if proto == 132 { 7 } else { 0 },
            ..tcp_flow()
        };
        round_trip(&flow, "Other", 0, 0.95, &model);
        let map = parse(&line(&Alert {
            flow: &flow,
            score: 0.95,
            class: "Other",
            class_index: 0,
            model: &model,
            threshold: 0.5,
            episode: None,
            explanation: None,
        }));
        assert_eq!(map["proto"], name);
        assert_eq!(map["alert"]["signature_id"], 9_100_000);
    }
}

#[test]
fn strings_are_escaped() {
    let flow = tcp_flow();
    let model = ModelInfo::new("m\"od\\el\n", "2.0-β\t", "not \u{1} hex");
    for class in [
        "quote\"",
        "back\\slash",
        "ctl\u{0}\u{1f}\u{7f}",
        "Ünïcödé ✓ 🚀",
        "",
    ] {
        round_trip(&flow, class, 9, 0.93, &model);
    }
}

#[test]
fn severity_and_non_finite_scores() {
    let flow = tcp_flow();
    let model = model();
    let sev = |score: f32| {
        Alert {
            flow: &flow,
            score,
            class: "X",
            class_index: 0,
            model: &model,
            threshold: 0.5,
            episode: None,
            explanation: None,
        }
        .severity()
    };
    assert_eq!(sev(0.9), 1);
    assert_eq!(sev(1.0), 1);
    assert_eq!(sev(0.899_999_9), 2);
    assert_eq!(sev(f32::NAN), 2);
    assert_eq!(sev(f32::INFINITY), 1);

    for score in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let map = parse(&line(&Alert {
            flow: &flow,
            score,
            class: "X",
            class_index: 0,
            model: &model,
            threshold: f32::NAN,
            episode: None,
            explanation: None,
        }));
        assert_eq!(map["tapstream"]["score"], Value::Null);
        assert_eq!(map["tapstream"]["threshold"], Value::Null);
    }
}

#[test]
fn lines_append_to_the_buffer() {
    let flow = tcp_flow();
    let model = model();
    let alert = Alert {
        flow: &flow,
        score: 0.97,
        class: "DDoS",
        class_index: 1,
        model: &model,
        threshold: 0.5,
        episode: None,
        explanation: None,
    };
    let writer = EveWriter::new(7);
    assert_eq!(writer.community_id_seed(), 7);
    let mut out = b"previous\n".to_vec();
    writer.write(&alert, &mut out);
    writer.write(&alert, &mut out);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], "previous");
    assert_eq!(lines[1], lines[2]);
    let map = parse(&format!("{}\n", lines[1]));
    let seeded = CommunityId::v1(&FlowTuple::from_meta(&flow), 7);
    assert_eq!(map["community_id"].as_str(), Some(seeded.as_str()));
}

/// A small deterministic generator (xorshift64*), so the sweep below is
/// reproducible without extra dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn arbitrary_flows_give_valid_lines() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let model = ModelInfo::new("fuzz", "0", "");
    let classes = ["a", "\"", "\\", "\n", "é", ""];
    for i in 0..5_000u32 {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[..8].copy_from_slice(&rng.next().to_le_bytes());
        src[8..].copy_from_slice(&rng.next().to_le_bytes());
        dst[..8].copy_from_slice(&rng.next().to_le_bytes());
        dst[8..].copy_from_slice(&rng.next().to_le_bytes());
        let r = rng.next();
        let flow = FlowMeta {
            flow_id: rng.next(),
            src,
            dst,
            sport: r as u16,
            dport: (r >> 16) as u16,
            proto: [1u8, 6, 17, 58, 132, 47, (r >> 32) as u8][i as usize % 7],
            v6: r & (1 << 40) != 0,
            icmp_type: (r >> 41) as u8,
            icmp_code: (r >> 49) as u8,
            start_us: rng.next() as i64,
            last_us: rng.next() as i64,
            pkts_fwd: rng.next(),
            pkts_bwd: rng.next(),
            bytes_fwd: rng.next(),
            bytes_bwd: rng.next(),
            reason: EndReason::ALL[i as usize % EndReason::ALL.len()],
        };
        let score = f32::from_bits(rng.next() as u32);
        let alert = Alert {
            flow: &flow,
            score,
            class: classes[i as usize % classes.len()],
            class_index: rng.next() as u16,
            model: &model,
            threshold: f32::from_bits(rng.next() as u32),
            episode: None,
            explanation: None,
        };
        let text = line(&alert);
        let map = parse(&text);
        assert_eq!(map["flow_id"].as_u64(), Some(flow.flow_id));
        let src_ip: IpAddr = map["src_ip"].as_str().unwrap().parse().unwrap();
        if flow.v6 {
            assert_eq!(src_ip, IpAddr::V6(Ipv6Addr::from(flow.src)));
        } else {
            assert_eq!(
                src_ip,
                IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3]))
            );
        }
        if score.is_finite() {
            assert_eq!(
                map["tapstream"]["score"].as_f64().map(|s| s as f32),
                Some(score)
            );
        }
    }
}
