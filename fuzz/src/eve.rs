//! `eve_roundtrip`: any alert → one EVE line → parsed back with serde_json.

use std::net::IpAddr;

use arbitrary::{Arbitrary, Unstructured};
use serde_json::Value;
use tapstream_connectors::eve::{proto_name, Alert, EveWriter, ModelInfo};
use tapstream_ingest::civil::days_from_civil;
use tapstream_ingest::flowmeta::ip_addr;
use tapstream_ingest::FlowMeta;

/// Everything an alert is made of, unconstrained.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// Community ID seed.
    pub seed: u16,
    /// The flow: identity, times, counters, end reason (any values).
    pub flow: FlowMeta,
    /// Score and threshold.
    pub score: f32,
    /// Threshold.
    pub threshold: f32,
    /// Class label.
    pub class: String,
    /// Class index.
    pub class_index: u16,
    /// Model name, version, digest.
    pub model: (String, String, String),
}

/// Target `eve_roundtrip`: the input (see [`Input`]) becomes an alert; its
/// EVE line must be one line of JSON, and every field must parse back to
/// the value it was written from: ids, addresses, ports, protocol, counters,
/// timestamps (to the microsecond, any `i64`), label and model strings
/// (any Unicode), scores (or `null` when not finite), signature id and
/// severity.
pub fn eve_roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(i) = Input::arbitrary(&mut u) else {
        return;
    };
    let model = ModelInfo::new(i.model.0, i.model.1, i.model.2);
    let alert = Alert {
        flow: &i.flow,
        score: i.score,
        class: &i.class,
        class_index: i.class_index,
        model: &model,
        threshold: i.threshold,
        episode: None,
        explanation: None,
    };
    let mut out = b"previous line\n".to_vec();
    EveWriter::new(i.seed).write(&alert, &mut out);
    let line = out
        .strip_prefix(b"previous line\n".as_slice())
        .expect("write only appends");
    let body = line.strip_suffix(b"\n").expect("a line ends with \\n");
    assert!(!body.contains(&b'\n'), "a raw newline inside the line");
    let v: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}", String::from_utf8_lossy(body));
    });
    check(&v, &alert);
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| {
        v.get(k).unwrap_or_else(|| panic!("no field {path}"))
    })
}

fn str_of<'a>(v: &'a Value, path: &str) -> &'a str {
    get(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

fn u64_of(v: &Value, path: &str) -> u64 {
    get(v, path)
        .as_u64()
        .unwrap_or_else(|| panic!("{path} is not an unsigned integer"))
}

fn check(v: &Value, a: &Alert<'_>) {
    let f = a.flow;
    assert_eq!(u64_of(v, "flow_id"), f.flow_id);
    assert_eq!(str_of(v, "event_type"), "alert");
    let ip = |path| -> IpAddr {
        str_of(v, path)
            .parse()
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    assert_eq!(ip("src_ip"), ip_addr(&f.src, f.v6));
    assert_eq!(ip("dest_ip"), ip_addr(&f.dst, f.v6));
    if matches!(f.proto, 6 | 17 | 132) {
        assert_eq!(u64_of(v, "src_port"), u64::from(f.sport));
        assert_eq!(u64_of(v, "dest_port"), u64::from(f.dport));
    } else {
        assert!(v.get("src_port").is_none() && v.get("dest_port").is_none());
    }
    let proto = proto_name(f.proto).map_or_else(|| f.proto.to_string(), str::to_owned);
    assert_eq!(str_of(v, "proto"), proto);
    if matches!(f.proto, 1 | 58) {
        assert_eq!(u64_of(v, "icmp_type"), u64::from(f.icmp_type));
        assert_eq!(u64_of(v, "icmp_code"), u64::from(f.icmp_code));
    } else {
        assert!(v.get("icmp_type").is_none());
    }
    let cid = str_of(v, "community_id");
    assert!(
        cid.starts_with("1:") && cid.len() == 30,
        "community id {cid}"
    );

    assert_eq!(u64_of(v, "alert.signature_id"), u64::from(a.signature_id()));
    assert_eq!(u64_of(v, "alert.severity"), u64::from(a.severity()));
    let sig = format!(
        "TAPSTREAM ML {} ({} v{})",
        a.class, a.model.name, a.model.version
    );
    assert_eq!(str_of(v, "alert.signature"), sig);

    assert_eq!(u64_of(v, "flow.pkts_toserver"), f.pkts_fwd);
    assert_eq!(u64_of(v, "flow.pkts_toclient"), f.pkts_bwd);
    assert_eq!(u64_of(v, "flow.bytes_toserver"), f.bytes_fwd);
    assert_eq!(u64_of(v, "flow.bytes_toclient"), f.bytes_bwd);
    assert_eq!(parse_timestamp(str_of(v, "timestamp")), f.last_us);
    assert_eq!(parse_timestamp(str_of(v, "flow.start")), f.start_us);
    assert_eq!(parse_timestamp(str_of(v, "flow.end")), f.last_us);

    assert_eq!(str_of(v, "tapstream.model"), a.model.name);
    assert_eq!(str_of(v, "tapstream.model_version"), a.model.version);
    assert_eq!(str_of(v, "tapstream.model_sha256"), a.model.sha256);
    assert_eq!(str_of(v, "tapstream.class"), a.class);
    assert_eq!(str_of(v, "tapstream.end_reason"), f.reason.as_str());
    check_f32(get(v, "tapstream.score"), a.score);
    check_f32(get(v, "tapstream.threshold"), a.threshold);
}

fn check_f32(v: &Value, want: f32) {
    if want.is_finite() {
        let got = v.as_f64().expect("a finite score is a number");
        assert_eq!(got as f32, want, "{v} read back");
    } else {
        assert!(v.is_null(), "a non-finite score is {v}, not null");
    }
}

/// `[-]Y…Y-MM-DDTHH:MM:SS.ffffff+0000` → µs since the epoch: the inverse of
/// the writer's timestamps, by the other direction of the calendar
/// arithmetic (`days_from_civil`), then in `i128` so no input can overflow
/// the check itself.
fn parse_timestamp(s: &str) -> i64 {
    const TAIL: usize = "-MM-DDTHH:MM:SS.ffffff+0000".len();
    let cut = s.len().checked_sub(TAIL).expect("timestamp too short");
    let (year, rest) = s.split_at(cut);
    let b = rest.as_bytes();
    let shape_ok = b[0] == b'-'
        && b[3] == b'-'
        && b[6] == b'T'
        && b[9] == b':'
        && b[12] == b':'
        && b[15] == b'.'
        && rest.ends_with("+0000");
    assert!(shape_ok, "timestamp {s}");
    let n = |r: std::ops::Range<usize>| -> i128 {
        let t = &rest[r];
        assert!(t.bytes().all(|c| c.is_ascii_digit()), "timestamp {s}");
        t.parse().expect("digits")
    };
    let y: i128 = year.parse().expect("a year");
    if (0..=9999).contains(&y) {
        assert_eq!(year.len(), 4, "years 0–9999 have four digits: {s}");
    }
    let (m, d) = (n(1..3), n(4..6));
    let (hh, mm, ss, us) = (n(7..9), n(10..12), n(13..15), n(16..22));
    assert!((1..=12).contains(&m) && (1..=31).contains(&d), "date {s}");
    assert!(hh < 24 && mm < 60 && ss < 60, "time {s}");
    let year = i64::try_from(y).expect("a year an i64 of µs can reach");
    let days = i128::from(days_from_civil(year, m as u32, d as u32));
    let micros = ((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + us;
    i64::try_from(micros).expect("a timestamp beyond i64")
}
