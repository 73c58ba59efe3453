//! Decoding the Kafka source's `flows` format: one feature row per message.
//!
//! Why it exists: some deployments already compute CIC flow features
//! (CICFlowMeter, a `tapstream features` export, another sensor) and only
//! want scoring and alerts. Their messages skip decoding and the flow table
//! and go straight to inference, so this module turns one message into the
//! two things inference and the alert stage need: a feature row in schema
//! order (`[f64; NUM_FEATURES]`, as in [`FlowBatch`]) and a [`FlowMeta`].
//!
//! A message is either
//! - a JSON object whose keys are column names, or
//! - one CSV line. CSV needs a header: configure one
//!   ([`FlowDecoder::with_csv_header`]), or let the producer send the header
//!   line as a message of its own (any CSV message that names a known
//!   column is a header; a later header replaces the earlier one, unless it
//!   fails the checks below, which is an error that leaves the earlier one
//!   in force).
//!
//! Column names are the CIC-IDS2017 ("improved" CICFlowMeter) names that
//! `tapstream features` writes ([`CSV_COLUMNS`]), matched exactly after
//! trimming spaces. Every numeric feature of [`FEATURES`] is required, and
//! so are `Src IP`, `Dst IP` and `Timestamp` (`YYYY-MM-DD HH:MM:SS[.ffffff]`
//! UTC, as the export writes it; `T` for the space, a `Z`/`+00:00`/`+0000`
//! suffix, or in JSON an integer of µs since the epoch are also accepted).
//! Other columns (`Label`, `id`, …) are ignored and remembered once each
//! ([`FlowDecoder::extra_columns`]).
//!
//! The flow id: a numeric `Flow ID` below 2^51 is used as is; otherwise
//! (CIC's `Flow ID` is the text `src-dst-sport-dport-proto`) the id is
//! [`tapstream_ingest::flow::flow_id`] of the 5-tuple and `Timestamp`, the
//! very id the flow table gives the same flow when it reads the capture. So
//! an exported row and the live pipeline agree on `flow_id`, and replays
//! produce the same ids.
//!
//! What the row cannot say is approximated in the [`FlowMeta`]: `last_us`
//! is `Timestamp` + `Flow Duration`; byte counts are the `Total Length of
//! … Packet` columns (payload bytes, where a capture counts frame bytes);
//! the end reason is [`EndReason::EndOfInput`].
//!
//! Every malformed message is a [`FlowDecodeError`] saying why; none
//! panics. Non-finite feature values (`NaN`, `Infinity`) are refused: the
//! model was never trained on them.
//!
//! [`FlowBatch`]: tapstream_kernels::FlowBatch
//! [`CSV_COLUMNS`]: tapstream_kernels::schema::CSV_COLUMNS

use std::collections::BTreeSet;
use std::net::IpAddr;

use tapstream_ingest::flow::{flow_id, FLOW_ID_MASK};
use tapstream_ingest::{EndReason, FlowMeta};
use tapstream_kernels::csv::Cells;
use tapstream_kernels::schema::{feature_index, idx, CSV_COLUMNS, FEATURES, NUM_FEATURES};

/// Longest excerpt of a bad value quoted in an error.
const MAX_QUOTED: usize = 64;

/// Why a message is not a flow row. The caller counts it and skips it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlowDecodeError {
    /// The message has no content.
    #[error("empty message")]
    Empty,
    /// The message is not UTF-8 text.
    #[error("not UTF-8 text")]
    NotUtf8,
    /// The message starts like JSON but is not one JSON object.
    #[error("not a JSON object: {0}")]
    Json(String),
    /// A CSV message holds more than one line.
    #[error("a CSV message must be one line; this one has {0}")]
    MultiLine(usize),
    /// A CSV data line arrived before any header.
    #[error(
        "a CSV row arrived before its header (configure the header, or send the header line \
         as a message first)"
    )]
    NoHeader,
    /// Required columns are absent (from a header or a JSON object).
    #[error("missing columns: {}", .0.join(", "))]
    MissingColumns(Vec<String>),
    /// A header names one column twice.
    #[error("column `{0}` appears twice in the header")]
    DuplicateColumn(String),
    /// A CSV line has a different number of cells than its header.
    #[error("{found} cells where the header has {expected}")]
    CellCount {
        /// Cells in the header.
        expected: usize,
        /// Cells in the line.
        found: usize,
    },
    /// A cell's value is not what its column needs.
    #[error("column `{column}`: {value:?} is {reason}")]
    BadValue {
        /// The column.
        column: String,
        /// The value (at most 64 characters of it).
        value: String,
        /// What is wrong, e.g. `not a number`.
        reason: &'static str,
    },
}

/// What one message held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A CSV header line; it now applies to the CSV rows that follow.
    Header,
    /// A flow row: the feature row was written to the caller's buffer.
    Row(FlowMeta),
}

/// Where a column's value goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Feature(usize),
    FlowId,
    SrcIp,
    DstIp,
    Timestamp,
    Ignored,
}

/// The identifier columns a row needs besides the features.
const REQUIRED_IDS: [(&str, Target); 3] = [
    ("Src IP", Target::SrcIp),
    ("Dst IP", Target::DstIp),
    ("Timestamp", Target::Timestamp),
];

fn target_of(name: &str) -> Target {
    if let Some(i) = feature_index(name) {
        return Target::Feature(i);
    }
    match name {
        "Flow ID" => Target::FlowId,
        "Src IP" => Target::SrcIp,
        "Dst IP" => Target::DstIp,
        "Timestamp" => Target::Timestamp,
        _ => Target::Ignored,
    }
}

/// Turns `flows` messages into feature rows and flow metadata.
///
/// One decoder per partition consumer (it remembers the CSV header).
#[derive(Clone, Debug, Default)]
pub struct FlowDecoder {
    /// The CSV header's column targets, once known.
    header: Option<Vec<Target>>,
    /// Ignored column names seen so far.
    extra: BTreeSet<String>,
    /// Reused cell buffer for CSV lines.
    cells: Cells,
}

/// Values gathered from one message before the meta is built.
#[derive(Default)]
struct Ids<'a> {
    /// A usable numeric `Flow ID`.
    flow_id: Option<u64>,
    src: Option<&'a str>,
    dst: Option<&'a str>,
    timestamp: Option<Timestamp<'a>>,
}

#[derive(Clone, Copy)]
enum Timestamp<'a> {
    Text(&'a str),
    Micros(i64),
}

impl FlowDecoder {
    /// A decoder that learns the CSV header from the first header message.
    pub fn new() -> Self {
        FlowDecoder::default()
    }

    /// A decoder for CSV rows under `header` (a comma-separated line of
    /// column names, e.g. from the config). Errors if it lacks required
    /// columns (all listed) or repeats one.
    pub fn with_csv_header(header: &str) -> Result<Self, FlowDecodeError> {
        let mut d = FlowDecoder::new();
        d.set_header(header.trim_start_matches('\u{feff}').trim())?;
        Ok(d)
    }

    /// Column names seen in messages and ignored (neither features nor
    /// identifiers), each once, sorted.
    pub fn extra_columns(&self) -> impl Iterator<Item = &str> {
        self.extra.iter().map(String::as_str)
    }

    /// Decodes one message. For a row, fills `row` (schema order) and
    /// returns its [`FlowMeta`]; `row` is unspecified after an error.
    pub fn decode(
        &mut self,
        msg: &[u8],
        row: &mut [f64; NUM_FEATURES],
    ) -> Result<Decoded, FlowDecodeError> {
        let text = std::str::from_utf8(msg).map_err(|_| FlowDecodeError::NotUtf8)?;
        let text = text.trim_start_matches('\u{feff}').trim();
        if text.is_empty() {
            return Err(FlowDecodeError::Empty);
        }
        if text.starts_with('{') {
            self.decode_json(text, row).map(Decoded::Row)
        } else {
            self.decode_csv(text, row)
        }
    }

    fn decode_json(
        &mut self,
        text: &str,
        row: &mut [f64; NUM_FEATURES],
    ) -> Result<FlowMeta, FlowDecodeError> {
        use serde_json::Value;
        let obj: serde_json::Map<String, Value> =
            serde_json::from_str(text).map_err(|e| FlowDecodeError::Json(e.to_string()))?;
        let mut seen = [false; NUM_FEATURES];
        let mut ids = Ids::default();
        for (key, value) in &obj {
            let name = key.trim();
            match target_of(name) {
                Target::Feature(i) => {
                    let v = match value {
                        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                        Value::String(s) => parse_float(name, s)?,
                        other => return Err(bad(name, &other.to_string(), "not a number")),
                    };
                    if !v.is_finite() {
                        return Err(bad(name, &value.to_string(), "not a finite number"));
                    }
                    // `target_of` gives indices into FEATURES, so both exist.
                    if let (Some(slot), Some(s)) = (row.get_mut(i), seen.get_mut(i)) {
                        *slot = v;
                        *s = true;
                    }
                }
                Target::FlowId => {
                    ids.flow_id = match value {
                        Value::Number(n) => n.as_u64().filter(|id| *id <= FLOW_ID_MASK),
                        Value::String(s) => numeric_flow_id(s),
                        _ => None,
                    }
                }
                Target::SrcIp => ids.src = Some(json_str(name, value)?),
                Target::DstIp => ids.dst = Some(json_str(name, value)?),
                Target::Timestamp => {
                    ids.timestamp = Some(match value {
                        Value::String(s) => Timestamp::Text(s),
                        Value::Number(n) => match n.as_i64() {
                            Some(us) => Timestamp::Micros(us),
                            None => return Err(bad(name, &n.to_string(), "not an integer of µs")),
                        },
                        other => return Err(bad(name, &other.to_string(), "not a timestamp")),
                    })
                }
                Target::Ignored => {
                    if !self.extra.contains(name) {
                        self.extra.insert(name.to_owned());
                    }
                }
            }
        }
        check_all_present(&seen, &ids)?;
        build_meta(&ids, row)
    }

    fn decode_csv(
        &mut self,
        text: &str,
        row: &mut [f64; NUM_FEATURES],
    ) -> Result<Decoded, FlowDecodeError> {
        let lines = text.lines().count();
        if lines > 1 {
            return Err(FlowDecodeError::MultiLine(lines));
        }
        self.cells.split(text);
        if self.cells.iter().any(|c| is_column_name(c.trim())) {
            self.set_header(text)?;
            return Ok(Decoded::Header);
        }
        let Some(header) = &self.header else {
            return Err(FlowDecodeError::NoHeader);
        };
        if self.cells.len() != header.len() {
            return Err(FlowDecodeError::CellCount {
                expected: header.len(),
                found: self.cells.len(),
            });
        }
        let mut ids = Ids::default();
        for (cell, target) in self.cells.iter().zip(header) {
            let cell = cell.trim();
            match *target {
                Target::Feature(i) => {
                    let name = FEATURES.get(i).map_or("", |f| f.0);
                    let v = parse_float(name, cell)?;
                    if !v.is_finite() {
                        return Err(bad(name, cell, "not a finite number"));
                    }
                    if let Some(slot) = row.get_mut(i) {
                        *slot = v;
                    }
                }
                Target::FlowId => ids.flow_id = numeric_flow_id(cell),
                Target::SrcIp => ids.src = Some(cell),
                Target::DstIp => ids.dst = Some(cell),
                Target::Timestamp => ids.timestamp = Some(Timestamp::Text(cell)),
                Target::Ignored => {}
            }
        }
        build_meta(&ids, row).map(Decoded::Row)
    }

    /// Adopts `line` as the CSV header after checking it.
    fn set_header(&mut self, line: &str) -> Result<(), FlowDecodeError> {
        let mut cells = Cells::default();
        cells.split(line);
        let mut targets = Vec::with_capacity(cells.len());
        let mut names: BTreeSet<&str> = BTreeSet::new();
        let mut seen = [false; NUM_FEATURES];
        let mut ids = Ids::default();
        let mut extra = Vec::new();
        for cell in cells.iter() {
            let name = cell.trim();
            if !names.insert(name) {
                return Err(FlowDecodeError::DuplicateColumn(name.to_owned()));
            }
            let t = target_of(name);
            match t {
                Target::Feature(i) => {
                    if let Some(s) = seen.get_mut(i) {
                        *s = true;
                    }
                }
                Target::SrcIp => ids.src = Some(""),
                Target::DstIp => ids.dst = Some(""),
                Target::Timestamp => ids.timestamp = Some(Timestamp::Micros(0)),
                Target::FlowId => {}
                Target::Ignored => extra.push(name.to_owned()),
            }
            targets.push(t);
        }
        check_all_present(&seen, &ids)?;
        self.extra.extend(extra);
        self.header = Some(targets);
        Ok(())
    }
}

/// True for a name a CSV header line would hold (data rows hold none).
fn is_column_name(cell: &str) -> bool {
    CSV_COLUMNS.contains(&cell) || matches!(cell, "Label" | "id" | "Attempted Category")
}

/// The error for a bad value, quoting at most [`MAX_QUOTED`] characters.
fn bad(column: &str, value: &str, reason: &'static str) -> FlowDecodeError {
    FlowDecodeError::BadValue {
        column: column.to_owned(),
        value: value.chars().take(MAX_QUOTED).collect(),
        reason,
    }
}

fn parse_float(column: &str, cell: &str) -> Result<f64, FlowDecodeError> {
    cell.trim()
        .parse::<f64>()
        .map_err(|_| bad(column, cell, "not a number"))
}

fn json_str<'a>(column: &str, v: &'a serde_json::Value) -> Result<&'a str, FlowDecodeError> {
    v.as_str()
        .ok_or_else(|| bad(column, &v.to_string(), "not a string"))
}

/// A `Flow ID` usable as the flow id: a decimal integer below 2^51.
fn numeric_flow_id(cell: &str) -> Option<u64> {
    let cell = cell.trim();
    if cell.is_empty() || !cell.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    cell.parse::<u64>().ok().filter(|id| *id <= FLOW_ID_MASK)
}

/// Errors listing every required column that `seen`/`ids` lack.
fn check_all_present(seen: &[bool; NUM_FEATURES], ids: &Ids<'_>) -> Result<(), FlowDecodeError> {
    let mut missing: Vec<String> = Vec::new();
    for (name, target) in REQUIRED_IDS {
        let present = match target {
            Target::SrcIp => ids.src.is_some(),
            Target::DstIp => ids.dst.is_some(),
            _ => ids.timestamp.is_some(),
        };
        if !present {
            missing.push(name.to_owned());
        }
    }
    for ((name, _), seen) in FEATURES.iter().zip(seen) {
        if !seen {
            missing.push((*name).to_owned());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(FlowDecodeError::MissingColumns(missing))
    }
}

/// An integral value of `row[i]` within `0..=max`, or a `BadValue` error.
fn integral(row: &[f64; NUM_FEATURES], i: usize, max: u32) -> Result<u32, FlowDecodeError> {
    let v = row.get(i).copied().unwrap_or(f64::NAN);
    if v.fract() == 0.0 && (0.0..=f64::from(max)).contains(&v) {
        Ok(v as u32)
    } else {
        let name = FEATURES.get(i).map_or("", |f| f.0);
        Err(bad(name, &v.to_string(), "not an integer in range"))
    }
}

/// A count from `row[i]`: negative or fractional values are truncated
/// toward zero and clamped (the row was already checked to be finite).
fn count(row: &[f64; NUM_FEATURES], i: usize) -> u64 {
    row.get(i).map_or(0, |v| v.max(0.0) as u64)
}

fn parse_ip(column: &str, text: &str) -> Result<IpAddr, FlowDecodeError> {
    text.trim()
        .parse::<IpAddr>()
        .map_err(|_| bad(column, text, "not an IP address"))
}

fn ip_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => {
            let mut out = [0u8; 16];
            out[..4].copy_from_slice(&a.octets());
            out
        }
        IpAddr::V6(a) => a.octets(),
    }
}

/// Builds the flow's meta from the identifier columns and the row.
fn build_meta(ids: &Ids<'_>, row: &[f64; NUM_FEATURES]) -> Result<FlowMeta, FlowDecodeError> {
    let (Some(src), Some(dst), Some(ts)) = (ids.src, ids.dst, ids.timestamp) else {
        // The header or the object was checked for these columns.
        let mut missing = Vec::new();
        for (name, present) in [
            ("Src IP", ids.src.is_some()),
            ("Dst IP", ids.dst.is_some()),
            ("Timestamp", ids.timestamp.is_some()),
        ] {
            if !present {
                missing.push(name.to_owned());
            }
        }
        return Err(FlowDecodeError::MissingColumns(missing));
    };
    let src_ip = parse_ip("Src IP", src)?;
    let dst_ip = parse_ip("Dst IP", dst)?;
    let v6 = src_ip.is_ipv6();
    if dst_ip.is_ipv6() != v6 {
        return Err(bad(
            "Dst IP",
            dst,
            "of another address family than `Src IP`",
        ));
    }
    let start_us = match ts {
        Timestamp::Micros(us) => us,
        Timestamp::Text(t) => tapstream_ingest::civil::parse_utc(t)
            .ok_or_else(|| bad("Timestamp", t, "not `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC)"))?,
    };
    let sport = integral(row, idx::SRC_PORT, u32::from(u16::MAX))? as u16;
    let dport = integral(row, idx::DST_PORT, u32::from(u16::MAX))? as u16;
    let proto = integral(row, idx::PROTOCOL, u32::from(u8::MAX))? as u8;
    // Non-ICMP rows carry -1 here; the meta keeps 0 as a capture does.
    let icmp = |i| integral(row, i, u32::from(u8::MAX)).map_or(0, |v| v as u8);
    let duration = row
        .get(idx::FLOW_DURATION)
        .map_or(0, |d| d.clamp(0.0, i64::MAX as f64) as i64);
    let (src, dst) = (ip_bytes(src_ip), ip_bytes(dst_ip));
    let id = ids
        .flow_id
        .unwrap_or_else(|| flow_id(&src, &dst, sport, dport, proto, v6, start_us));
    Ok(FlowMeta {
        flow_id: id,
        src,
        dst,
        sport,
        dport,
        proto,
        v6,
        icmp_type: icmp(idx::ICMP_TYPE),
        icmp_code: icmp(idx::ICMP_CODE),
        start_us,
        last_us: start_us.saturating_add(duration),
        pkts_fwd: count(row, idx::TOTAL_FWD_PACKET),
        pkts_bwd: count(row, idx::TOTAL_BWD_PACKETS),
        bytes_fwd: count(row, idx::TOTAL_LENGTH_OF_FWD_PACKET),
        bytes_bwd: count(row, idx::TOTAL_LENGTH_OF_BWD_PACKET),
        reason: EndReason::EndOfInput,
    })
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;
    use tapstream_ingest::flow::FlowConfig;
    use tapstream_ingest::packet::tcp_flags::{ACK, FIN, PSH, SYN};
    use tapstream_ingest::pcapgen::{pcap_bytes, Frame};
    use tapstream_kernels::csv::{write_header, write_rows};
    use tapstream_kernels::FlowBatch;

    use super::*;

    /// Flows of a small generated capture (TCP over IPv4 and IPv6, UDP,
    /// ICMP) through the CPU extractor, as `tapstream features` computes
    /// them.
    fn exported_flows() -> FlowBatch {
        let a4 = IpAddr::V4(Ipv4Addr::new(192, 168, 10, 5));
        let b4 = IpAddr::V4(Ipv4Addr::new(172, 16, 0, 1));
        let a6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5));
        let b6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x1f));
        let t0 = 1_499_432_361_088_203i64;
        let mut frames = Vec::new();
        for (k, (a, b)) in [(a4, b4), (a6, b6)].into_iter().enumerate() {
            let t = t0 + k as i64 * 1_000_003;
            let sport = 40_000 + k as u16;
            frames.push((t, Frame::tcp(a, b, sport, 80, SYN, 0)));
            frames.push((t + 150, Frame::tcp(b, a, 80, sport, SYN | ACK, 0)));
            frames.push((t + 300, Frame::tcp(a, b, sport, 80, ACK | PSH, 120)));
            frames.push((t + 2_700, Frame::tcp(b, a, 80, sport, ACK | PSH, 1_400)));
            frames.push((t + 3_100, Frame::tcp(a, b, sport, 80, FIN | ACK, 0)));
            frames.push((t + 3_350, Frame::tcp(b, a, 80, sport, FIN | ACK, 0)));
            frames.push((t + 3_500, Frame::tcp(a, b, sport, 80, ACK, 0)));
        }
        frames.push((t0 + 10, Frame::udp(a4, b4, 5353, 53, 40)));
        frames.push((t0 + 900, Frame::udp(b4, a4, 53, 5353, 200)));
        frames.push((t0 + 20, Frame::icmp(a4, b4, 8, 0, 56)));
        frames.push((t0 + 420, Frame::icmp(b4, a4, 0, 0, 56)));
        frames.sort_by_key(|(t, _)| *t);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flows.pcap");
        std::fs::write(&path, pcap_bytes(&frames)).unwrap();
        let recs = tapstream_ingest::records::read_records(&path, usize::MAX)
            .unwrap()
            .recs;
        let mut shard = tapstream_kernels::ShardProcessor::new(FlowConfig::default(), 0).unwrap();
        let mut batch = FlowBatch::default();
        shard.process(&recs, &mut batch);
        shard.flush(&mut batch);
        assert_eq!(batch.metas.len(), 4, "{:?}", batch.metas);
        batch
    }

    /// The batch as the CSV export writes it: header, then one line per flow.
    fn exported_csv(batch: &FlowBatch) -> (String, Vec<String>) {
        let mut out = Vec::new();
        write_header(&mut out).unwrap();
        write_rows(&mut out, batch).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines().map(str::to_owned);
        let header = lines.next().unwrap();
        (header, lines.collect())
    }

    /// Checks a decoded row against the flow it came from.
    fn assert_same(meta: &FlowMeta, row: &[f64; NUM_FEATURES], batch: &FlowBatch, i: usize) {
        let want = &batch.metas[i];
        assert_eq!(meta.flow_id, want.flow_id, "the flow table's id");
        assert_eq!(
            (meta.src, meta.dst, meta.sport, meta.dport, meta.proto, meta.v6),
            (want.src, want.dst, want.sport, want.dport, want.proto, want.v6)
        );
        assert_eq!(
            (meta.icmp_type, meta.icmp_code),
            (want.icmp_type, want.icmp_code)
        );
        assert_eq!(meta.start_us, want.start_us);
        assert_eq!(
            (meta.pkts_fwd, meta.pkts_bwd),
            (want.pkts_fwd, want.pkts_bwd)
        );
        // The export prints the shortest round-trip decimal: exact.
        assert_eq!(row.as_slice(), batch.row(i).unwrap());
    }

    #[test]
    fn exported_csv_rows_decode_to_the_same_flows() {
        let batch = exported_flows();
        let (header, lines) = exported_csv(&batch);
        // Header configured up front.
        let mut dec = FlowDecoder::with_csv_header(&header).unwrap();
        let mut row = [0.0; NUM_FEATURES];
        for (i, line) in lines.iter().enumerate() {
            let Decoded::Row(meta) = dec.decode(line.as_bytes(), &mut row).unwrap() else {
                panic!("a data line is not a header");
            };
            assert_same(&meta, &row, &batch, i);
        }
        assert_eq!(dec.extra_columns().count(), 0);
        // Header learned from the first message (with a newline, as a
        // producer writing lines sends it).
        let mut dec = FlowDecoder::new();
        let mut first = header.clone();
        first.push('\n');
        assert_eq!(dec.decode(first.as_bytes(), &mut row), Ok(Decoded::Header));
        let Ok(Decoded::Row(meta)) = dec.decode(lines[0].as_bytes(), &mut row) else {
            panic!("row after a learned header");
        };
        assert_same(&meta, &row, &batch, 0);
    }

    #[test]
    fn exported_rows_as_json_decode_to_the_same_flows() {
        let batch = exported_flows();
        let (header, lines) = exported_csv(&batch);
        let names: Vec<&str> = header.split(',').collect();
        let mut dec = FlowDecoder::new();
        let mut row = [0.0; NUM_FEATURES];
        for (i, line) in lines.iter().enumerate() {
            let mut obj = serde_json::Map::new();
            for (name, cell) in names.iter().zip(line.split(',')) {
                let value = match feature_index(name) {
                    Some(_) => serde_json::Value::from(cell.parse::<f64>().unwrap()),
                    None => serde_json::Value::from(cell),
                };
                obj.insert((*name).to_owned(), value);
            }
            obj.insert("Label".into(), "BENIGN".into());
            let msg = serde_json::to_vec(&obj).unwrap();
            let Decoded::Row(meta) = dec.decode(&msg, &mut row).unwrap() else {
                panic!("JSON is never a header");
            };
            assert_same(&meta, &row, &batch, i);
        }
        assert_eq!(dec.extra_columns().collect::<Vec<_>>(), ["Label"]);
    }

    /// One row the export wrote for the generated capture's IPv4 TCP flow,
    /// kept literally so that a change of the export's format shows up here.
    const EXPORTED_TCP_ROW: &str = "192.168.10.5-172.16.0.1-40000-80-6,192.168.10.5,40000,172.16.0.1,80,6,2017-07-07 12:59:21.088203";

    #[test]
    fn literal_export_row_keeps_its_identifiers() {
        let batch = exported_flows();
        let (header, lines) = exported_csv(&batch);
        let line = lines
            .iter()
            .find(|l| l.starts_with(EXPORTED_TCP_ROW))
            .unwrap_or_else(|| panic!("no line starts with {EXPORTED_TCP_ROW}: {lines:#?}"));
        let mut dec = FlowDecoder::with_csv_header(&header).unwrap();
        let mut row = [0.0; NUM_FEATURES];
        let Ok(Decoded::Row(meta)) = dec.decode(line.as_bytes(), &mut row) else {
            panic!("{line}");
        };
        assert_eq!(meta.start_us, 1_499_432_361_088_203);
        assert_eq!((meta.sport, meta.dport, meta.proto), (40_000, 80, 6));
        assert_eq!(meta.src_ip(), IpAddr::V4(Ipv4Addr::new(192, 168, 10, 5)));
        assert_eq!(meta.last_us, meta.start_us + 3_500);
        assert!(meta.flow_id <= FLOW_ID_MASK);
    }

    #[test]
    fn numeric_flow_id_is_kept() {
        let batch = exported_flows();
        let (header, lines) = exported_csv(&batch);
        let mut dec = FlowDecoder::with_csv_header(&header).unwrap();
        let mut row = [0.0; NUM_FEATURES];
        let line = lines[0].clone();
        let rest = line.split_once(',').unwrap().1;
        for (id, want) in [
            ("12345", 12_345),
            (" 7 ", 7),
            // Above 51 bits, or not a plain integer: the 5-tuple's id.
            ("2251799813685248", batch.metas[0].flow_id),
            ("-3", batch.metas[0].flow_id),
            ("1e3", batch.metas[0].flow_id),
        ] {
            let msg = format!("{id},{rest}");
            let Ok(Decoded::Row(meta)) = dec.decode(msg.as_bytes(), &mut row) else {
                panic!("{msg}");
            };
            assert_eq!(meta.flow_id, want, "{id}");
        }
    }

    #[test]
    fn headers_missing_columns_list_them_all() {
        let header = CSV_COLUMNS
            .iter()
            .filter(|c| !matches!(**c, "Flow IAT Max" | "Dst IP" | "Idle Min"))
            .copied()
            .collect::<Vec<_>>()
            .join(",");
        let err = FlowDecoder::with_csv_header(&header).unwrap_err();
        assert_eq!(
            err,
            FlowDecodeError::MissingColumns(vec![
                "Dst IP".into(),
                "Flow IAT Max".into(),
                "Idle Min".into()
            ])
        );
        assert!(
            err.to_string().contains("Dst IP, Flow IAT Max, Idle Min"),
            "{err}"
        );
        let dup = format!("{},Src IP", CSV_COLUMNS.join(","));
        assert_eq!(
            FlowDecoder::with_csv_header(&dup).unwrap_err(),
            FlowDecodeError::DuplicateColumn("Src IP".into())
        );
        // Extra columns are fine and remembered once.
        let extra = format!("id,{},Label", CSV_COLUMNS.join(","));
        let dec = FlowDecoder::with_csv_header(&extra).unwrap();
        assert_eq!(dec.extra_columns().collect::<Vec<_>>(), ["Label", "id"]);
    }

    #[test]
    fn malformed_messages_say_why() {
        let batch = exported_flows();
        let (header, lines) = exported_csv(&batch);
        let line = &lines[0];
        let cells: Vec<&str> = line.split(',').collect();
        let with = |i: usize, v: &str| {
            let mut c = cells.clone();
            c[i] = v;
            c.join(",")
        };
        let mut row = [0.0; NUM_FEATURES];

        let mut fresh = FlowDecoder::new();
        assert_eq!(
            fresh.decode(line.as_bytes(), &mut row),
            Err(FlowDecodeError::NoHeader)
        );
        let mut dec = FlowDecoder::with_csv_header(&header).unwrap();
        let col = |name: &str| CSV_COLUMNS.iter().position(|c| *c == name).unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "empty"),
            (b"  \r\n".to_vec(), "empty"),
            (vec![0xff, 0xfe], "UTF-8"),
            (b"{\"Src IP\": ".to_vec(), "not a JSON object"),
            (b"[1,2]".to_vec(), "cells where the header"),
            (format!("{line}\n{line}").into_bytes(), "one line"),
            (
                cells[..10].join(",").into_bytes(),
                "cells where the header has 88",
            ),
            (
                with(col("Src IP"), "10.0.0.256").into_bytes(),
                "not an IP address",
            ),
            (
                with(col("Dst IP"), "::1").into_bytes(),
                "another address family",
            ),
            (
                with(col("Src Port"), "70000").into_bytes(),
                "not an integer in range",
            ),
            (
                with(col("Protocol"), "6.5").into_bytes(),
                "not an integer in range",
            ),
            (
                with(col("Flow Bytes/s"), "Infinity").into_bytes(),
                "not a finite number",
            ),
            (
                with(col("Flow Bytes/s"), "NaN").into_bytes(),
                "not a finite number",
            ),
            (with(col("Flow Duration"), "").into_bytes(), "not a number"),
            (
                with(col("Timestamp"), "7/7/2017 9:30").into_bytes(),
                "Timestamp",
            ),
            (
                with(col("Timestamp"), "2017-02-29 00:00:00").into_bytes(),
                "Timestamp",
            ),
            (
                b"{\"Src IP\": \"1.2.3.4\"}".to_vec(),
                "missing columns: Dst IP, Timestamp, Src Port",
            ),
        ];
        for (msg, needle) in cases {
            let err = dec.decode(&msg, &mut row).unwrap_err().to_string();
            assert!(
                err.contains(needle),
                "{:?}: {err}",
                String::from_utf8_lossy(&msg)
            );
        }
        // The decoder still works after errors.
        assert!(matches!(
            dec.decode(line.as_bytes(), &mut row),
            Ok(Decoded::Row(_))
        ));
    }

    #[test]
    fn timestamps() {
        let base = 1_499_432_361_088_203;
        for (text, want) in [
            ("2017-07-07 12:59:21.088203", Some(base)),
            ("2017-07-07T12:59:21.088203Z", Some(base)),
            ("2017-07-07 12:59:21.088203+00:00", Some(base)),
            ("2017-07-07 12:59:21.0882039", Some(base)),
            ("2017-07-07 12:59:21.1", Some(base - 88_203 + 100_000)),
            ("2017-07-07 12:59:21", Some(base - 88_203)),
            ("1970-01-01 00:00:00", Some(0)),
            ("1969-12-31 23:59:59.999999", Some(-1)),
            ("2000-02-29 00:00:00", Some(951_782_400_000_000)),
            ("2017-07-07 12:59:21.", None),
            ("2017-07-07 24:00:00", None),
            ("2017-13-01 00:00:00", None),
            ("2017-07-07 12:59:21+01:00", None),
            ("+017-07-07 12:59:21", None),
            ("2017-07-07", None),
        ] {
            assert_eq!(tapstream_ingest::civil::parse_utc(text), want, "{text}");
        }
        // The export's own formatter, back and forth.
        for us in [0, -1, base, 4_102_444_800_000_000, 253_402_300_799_999_999] {
            let text = tapstream_kernels::csv::format_timestamp(us);
            assert_eq!(
                tapstream_ingest::civil::parse_utc(std::str::from_utf8(&text).unwrap()),
                Some(us)
            );
        }
    }

    #[test]
    fn shared_cic_sample_rows_decode() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/data/flows/cicids2017_improved_sample");
        if !dir.is_dir() {
            eprintln!(
                "shared_cic_sample_rows_decode: skipped, {} not found",
                dir.display()
            );
            return;
        }
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "csv"))
            .collect();
        files.sort();
        let mut row = [0.0; NUM_FEATURES];
        let mut rows = 0usize;
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            let mut dec = FlowDecoder::new();
            for (n, line) in text.lines().enumerate() {
                match dec.decode(line.as_bytes(), &mut row) {
                    Ok(Decoded::Header) => assert_eq!(n, 0, "{}", file.display()),
                    Ok(Decoded::Row(meta)) => {
                        assert!(meta.flow_id <= FLOW_ID_MASK);
                        assert!(meta.last_us >= meta.start_us);
                        rows += 1;
                    }
                    Err(e) => panic!("{}:{}: {e}", file.display(), n + 1),
                }
            }
            assert_eq!(
                dec.extra_columns().collect::<Vec<_>>(),
                ["Attempted Category", "Label", "id"]
            );
        }
        assert!(rows > 1000, "{rows} rows in {files:?}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(msg in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut row = [0.0; NUM_FEATURES];
            let _ = FlowDecoder::new().decode(&msg, &mut row);
            let mut dec = FlowDecoder::with_csv_header(&CSV_COLUMNS.join(",")).unwrap();
            let _ = dec.decode(&msg, &mut row);
        }

        #[test]
        fn arbitrary_cells_never_panic(
            cells in proptest::collection::vec("[-0-9a-fA-F:. ,\"eE+TZ]{0,12}", 88)
        ) {
            let mut dec = FlowDecoder::with_csv_header(&CSV_COLUMNS.join(",")).unwrap();
            let mut row = [0.0; NUM_FEATURES];
            let _ = dec.decode(cells.join(",").as_bytes(), &mut row);
            let obj: serde_json::Map<String, serde_json::Value> = CSV_COLUMNS
                .iter()
                .zip(&cells)
                .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(v.as_str())))
                .collect();
            let _ = dec.decode(&serde_json::to_vec(&obj).unwrap(), &mut row);
        }
    }
}
