//! CSV export: the header is the dataset's, and rows print the way the
//! dataset does (identifier columns, UTC timestamps, integers without a
//! decimal point, floats with one).

mod common;

use std::path::PathBuf;

use common::{run, v4};
use tapstream_ingest::packet::tcp_flags::*;
use tapstream_ingest::pcapgen::Frame;
use tapstream_kernels::csv::{write_header, write_rows};
use tapstream_kernels::schema::{Kind, CSV_COLUMNS, FEATURES};
use tapstream_kernels::FlowBatch;

/// The dataset sample, relative to the repository root (see DESIGN.md).
const SAMPLE_DIR: &str = "../shared/data/flows/cicids2017_improved_sample";

fn sample_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(SAMPLE_DIR);
    dir.is_dir().then_some(dir)
}

fn csv_string(batch: &FlowBatch) -> String {
    let mut out = Vec::new();
    write_header(&mut out).expect("write to Vec");
    write_rows(&mut out, batch).expect("write to Vec");
    String::from_utf8(out).expect("CSV is UTF-8")
}

#[test]
fn header_is_the_csv_columns() {
    let mut out = Vec::new();
    write_header(&mut out).expect("write to Vec");
    assert_eq!(
        String::from_utf8(out).expect("UTF-8"),
        format!("{}\n", CSV_COLUMNS.join(","))
    );
}

#[test]
fn header_matches_the_dataset_reference() {
    let Some(dir) = sample_dir() else {
        eprintln!("dataset sample not present; skipping");
        return;
    };
    let text = std::fs::read_to_string(dir.join("data_header_reference.csv"))
        .expect("reference header readable");
    let reference: Vec<&str> = text
        .trim_end()
        .split(',')
        .filter(|c| !matches!(*c, "id" | "Label" | "Attempted Category"))
        .collect();
    assert_eq!(reference, CSV_COLUMNS.to_vec());
}

#[test]
fn schema_kinds_match_the_dataset_number_format() {
    // Every dataset row prints integer-kind columns without a decimal point
    // and float-kind columns with one; our writer follows the same kinds.
    let Some(dir) = sample_dir() else {
        eprintln!("dataset sample not present; skipping");
        return;
    };
    let text = std::fs::read_to_string(dir.join("DDoS_2500.csv")).expect("sample readable");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let mut rows = 0;
    for line in lines.take(500) {
        for (name, value) in header.iter().zip(line.split(',')) {
            let Some((_, kind)) = FEATURES.iter().find(|(n, _)| n == name) else {
                continue;
            };
            assert_eq!(
                value.contains('.'),
                *kind == Kind::Float,
                "{name} = {value}"
            );
        }
        rows += 1;
    }
    assert!(rows > 0);
}

#[test]
fn rows_print_like_the_dataset() {
    let (c, s) = (v4(192, 168, 10, 5), v4(192, 168, 10, 50));
    let batch = run(&[
        (88_203, Frame::tcp(c, s, 40000, 80, SYN, 0)),
        (89_203, Frame::tcp(s, c, 80, 40000, SYN | ACK, 0)),
        (91_203, Frame::tcp(c, s, 40000, 80, ACK, 30)),
    ]);
    let text = csv_string(&batch);
    let mut lines = text.lines();
    lines.next();
    let line = lines.next().expect("one flow");
    assert!(lines.next().is_none());
    let cols: Vec<&str> = line.split(',').collect();
    assert_eq!(cols.len(), CSV_COLUMNS.len());
    let col = |name: &str| cols[CSV_COLUMNS.iter().position(|c| *c == name).expect("column")];
    assert_eq!(col("Flow ID"), "192.168.10.5-192.168.10.50-40000-80-6");
    assert_eq!(col("Src IP"), "192.168.10.5");
    assert_eq!(col("Src Port"), "40000");
    assert_eq!(col("Dst IP"), "192.168.10.50");
    assert_eq!(col("Dst Port"), "80");
    assert_eq!(col("Protocol"), "6");
    // T0 + 88203 µs, UTC, microseconds like the dataset.
    assert_eq!(col("Timestamp"), "2017-07-07 12:59:21.088203");
    assert_eq!(col("Flow Duration"), "3000");
    // Integral floats keep ".0" (Java Double.toString); integers have none.
    assert_eq!(col("Fwd Packet Length Mean"), "15.0");
    assert_eq!(col("Fwd Packet Length Max"), "30");
    assert_eq!(col("Flow Packets/s"), "1000.0");
    assert_eq!(col("Flow Bytes/s"), "10000.0");
    // Forward lengths [0, 30]: var = (2·900 − 30²)/(2·1) = 450, std √450,
    // printed as the shortest string that parses back to the same double.
    assert_eq!(col("Fwd Packet Length Std"), "21.213203435596427");
    assert_eq!(
        col("Fwd Packet Length Std").parse::<f64>().ok(),
        Some(450f64.sqrt())
    );
    assert_eq!(col("ICMP Code"), "-1");
    assert_eq!(col("Total TCP Flow Time"), "3000");
}

#[test]
fn every_numeric_value_round_trips() {
    let (a, b) = (v4(10, 1, 1, 1), v4(10, 1, 1, 2));
    let mut frames = Vec::new();
    for i in 0..40i64 {
        let (src, dst, sp, dp) = if i % 3 == 0 {
            (b, a, 443, 5000)
        } else {
            (a, b, 5000, 443)
        };
        frames.push((
            i * 7_919 + (i * i) % 13,
            Frame::tcp(src, dst, sp, dp, ACK | PSH, ((i * 37) % 1400) as usize),
        ));
    }
    frames.push((1_000_000, Frame::udp(a, b, 53, 53, 17)));
    let batch = run(&frames);
    let text = csv_string(&batch);
    for (i, line) in text.lines().skip(1).enumerate() {
        let row = batch.row(i).expect("row");
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols.len(), CSV_COLUMNS.len());
        // Numeric columns after Timestamp are row features 3.. in order.
        for (k, v) in cols[7..].iter().enumerate() {
            let f = k + 3;
            let parsed: f64 = v
                .parse()
                .unwrap_or_else(|_| panic!("{} = {v}", FEATURES[f].0));
            assert_eq!(parsed, row[f], "{}", FEATURES[f].0);
            assert_eq!(
                v.contains('.'),
                FEATURES[f].1 == Kind::Float,
                "{} = {v}",
                FEATURES[f].0
            );
        }
    }
}

#[test]
fn ipv6_flow_ids() {
    let a = "2001:db8::1".parse().expect("address");
    let b = "2001:db8::2".parse().expect("address");
    let batch = run(&[
        (0, Frame::udp(a, b, 1000, 53, 10)),
        (10, Frame::udp(b, a, 53, 1000, 20)),
    ]);
    let text = csv_string(&batch);
    let line = text.lines().nth(1).expect("one flow");
    assert!(
        line.starts_with("2001:db8::1-2001:db8::2-1000-53-17,2001:db8::1,1000,2001:db8::2,53,17,"),
        "{line}"
    );
}
