//! CSV export of feature batches in the improved CIC-IDS2017 layout, and
//! the one splitter of CSV lines that read it back ([`Cells`]: the Kafka
//! flow-row decoder, the model report's dataset reader).
//!
//! `tapstream features` writes training data with this module, so its output
//! must line up column for column with the dataset the default model was
//! trained on: the header is exactly [`CSV_COLUMNS`], integer-kind features
//! are printed without a decimal point and float-kind features as the
//! shortest decimal that round-trips, with `.0` on integral values like
//! Java's `Double.toString`. Formatting uses `itoa`/`ryu` and one line
//! buffer per call, no allocation per row.

use std::io::{self, Write};
use std::net::Ipv6Addr;

use tapstream_ingest::FlowMeta;

use crate::batch::FlowBatch;
use crate::schema::{Kind, CSV_COLUMNS, FEATURES, NUM_FEATURES};

/// Row features before this index (ports, protocol) are printed from the
/// [`FlowMeta`] with the identifier columns.
const FIRST_ROW_COLUMN: usize = 3;

/// Writes the header line: [`CSV_COLUMNS`] joined by commas, then `\n`.
pub fn write_header<W: Write>(w: &mut W) -> io::Result<()> {
    write_header_with(w, false)
}

/// [`write_header`], followed by the context columns
/// ([`CONTEXT_FEATURES`](crate::context::CONTEXT_FEATURES)) when `context`
/// is set: the header of batches the context stage filled.
pub fn write_header_with<W: Write>(w: &mut W, context: bool) -> io::Result<()> {
    let mut line = Vec::with_capacity(2048);
    for (i, c) in CSV_COLUMNS.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        line.extend_from_slice(c.as_bytes());
    }
    if context {
        for c in crate::context::CONTEXT_FEATURES {
            line.push(b',');
            line.extend_from_slice(c.as_bytes());
        }
    }
    line.push(b'\n');
    w.write_all(&line)
}

/// Writes one line per flow of `batch`: `Flow ID`, `Src IP`, `Src Port`,
/// `Dst IP`, `Dst Port`, `Protocol` and `Timestamp` from the flow's meta,
/// then the numeric features from its row, then its context row when the
/// batch has context rows. Wrap `w` in a `BufWriter` when it is a file or
/// socket.
pub fn write_rows<W: Write>(w: &mut W, batch: &FlowBatch) -> io::Result<()> {
    let mut line = Vec::with_capacity(2048);
    let mut ints = itoa::Buffer::new();
    let mut floats = ryu::Buffer::new();
    for (i, meta) in batch.metas.iter().enumerate() {
        let Some(row) = batch.row(i) else {
            break;
        };
        line.clear();
        write_flow_id(&mut line, meta, &mut ints);
        line.push(b',');
        write_ip(&mut line, &meta.src, meta.v6, &mut ints);
        line.push(b',');
        line.extend_from_slice(ints.format(meta.sport).as_bytes());
        line.push(b',');
        write_ip(&mut line, &meta.dst, meta.v6, &mut ints);
        line.push(b',');
        line.extend_from_slice(ints.format(meta.dport).as_bytes());
        line.push(b',');
        line.extend_from_slice(ints.format(meta.proto).as_bytes());
        line.push(b',');
        line.extend_from_slice(&format_timestamp(meta.start_us));
        for (v, (_, kind)) in row
            .iter()
            .zip(FEATURES.iter())
            .take(NUM_FEATURES)
            .skip(FIRST_ROW_COLUMN)
        {
            line.push(b',');
            write_value(&mut line, *v, *kind, &mut ints, &mut floats);
        }
        for v in batch.context_row(i).unwrap_or_default() {
            line.push(b',');
            line.extend_from_slice(floats.format(*v).as_bytes());
        }
        // (f32 values print as the shortest decimal that reads back as them)
        line.push(b'\n');
        w.write_all(&line)?;
    }
    Ok(())
}

/// Appends one numeric value as the schema prints it.
fn write_value(
    line: &mut Vec<u8>,
    v: f64,
    kind: Kind,
    ints: &mut itoa::Buffer,
    floats: &mut ryu::Buffer,
) {
    match kind {
        // Integer features are integral by construction (|v| < 2^63).
        Kind::Integer if v.is_finite() && v.abs() < 9.2e18 => {
            line.extend_from_slice(ints.format(v as i64).as_bytes());
        }
        _ => line.extend_from_slice(floats.format(v).as_bytes()),
    }
}

/// CIC's flow id string: `src-dst-sport-dport-proto` in forward orientation.
fn write_flow_id(line: &mut Vec<u8>, m: &FlowMeta, ints: &mut itoa::Buffer) {
    write_ip(line, &m.src, m.v6, ints);
    line.push(b'-');
    write_ip(line, &m.dst, m.v6, ints);
    line.push(b'-');
    line.extend_from_slice(ints.format(m.sport).as_bytes());
    line.push(b'-');
    line.extend_from_slice(ints.format(m.dport).as_bytes());
    line.push(b'-');
    line.extend_from_slice(ints.format(m.proto).as_bytes());
}

/// Dotted quad for IPv4, RFC 5952 text for IPv6.
fn write_ip(line: &mut Vec<u8>, addr: &[u8; 16], v6: bool, ints: &mut itoa::Buffer) {
    if v6 {
        // Writing into a Vec cannot fail.
        let _ = write!(line, "{}", Ipv6Addr::from(*addr));
        return;
    }
    for (i, o) in addr.iter().take(4).enumerate() {
        if i > 0 {
            line.push(b'.');
        }
        line.extend_from_slice(ints.format(*o).as_bytes());
    }
}

/// `ts_us` (µs since the Unix epoch) as UTC `YYYY-MM-DD HH:MM:SS.ffffff`,
/// the dataset's `Timestamp` format. Years outside 0..=9999 are clamped.
pub fn format_timestamp(ts_us: i64) -> [u8; 26] {
    let secs = ts_us.div_euclid(1_000_000);
    let micros = ts_us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = tapstream_ingest::civil::civil_from_days(days);
    let y = y.clamp(0, 9999);
    let mut out = [0u8; 26];
    let mut put = |at: usize, v: i64, width: usize| {
        let mut v = v;
        for k in (0..width).rev() {
            if let Some(slot) = out.get_mut(at + k) {
                *slot = b'0' + (v % 10) as u8;
            }
            v /= 10;
        }
    };
    put(0, y, 4);
    put(5, i64::from(m), 2);
    put(8, i64::from(d), 2);
    put(11, sod / 3600, 2);
    put(14, sod / 60 % 60, 2);
    put(17, sod % 60, 2);
    put(20, micros, 6);
    out[4] = b'-';
    out[7] = b'-';
    out[10] = b' ';
    out[13] = b':';
    out[16] = b':';
    out[19] = b'.';
    out
}

/// One CSV line's cells (RFC 4180 quoting: `"a,b"` is one cell, `""` in a
/// quoted cell is one quote), in one reused buffer.
#[derive(Clone, Debug, Default)]
pub struct Cells {
    text: String,
    ends: Vec<usize>,
}

impl Cells {
    /// Splits `line` (without its line ending) into cells, replacing the
    /// previous line's.
    pub fn split(&mut self, line: &str) {
        self.text.clear();
        self.ends.clear();
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted && chars.peek() == Some(&'"') => {
                    self.text.push('"');
                    chars.next();
                }
                '"' => quoted = !quoted,
                ',' if !quoted => self.ends.push(self.text.len()),
                _ => self.text.push(c),
            }
        }
        self.ends.push(self.text.len());
    }

    /// Number of cells (at least one after a split).
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True before any split.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Cell `i`, unquoted.
    pub fn get(&self, i: usize) -> Option<&str> {
        let start = match i.checked_sub(1) {
            None => 0,
            Some(p) => *self.ends.get(p)?,
        };
        self.text.get(start..*self.ends.get(i)?)
    }

    /// The cells in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(a, b)| self.text.get(a..b).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_follow_rfc_4180_quoting() {
        let mut c = Cells::default();
        c.split(r#"a,"b,c","d""e",,"#);
        assert_eq!(c.iter().collect::<Vec<_>>(), ["a", "b,c", "d\"e", "", ""]);
        assert_eq!(
            (c.len(), c.get(1), c.get(4), c.get(5)),
            (5, Some("b,c"), Some(""), None)
        );
        c.split("");
        assert_eq!(c.iter().collect::<Vec<_>>(), [""]);
    }

    fn ts(s: &str) -> String {
        String::from_utf8_lossy(&format_timestamp(s.parse().unwrap_or(0))).into_owned()
    }

    #[test]
    fn timestamps() {
        assert_eq!(ts("0"), "1970-01-01 00:00:00.000000");
        assert_eq!(ts("-1"), "1969-12-31 23:59:59.999999");
        // 2017-07-07 12:59:21.088203 UTC (first row of the dataset sample).
        assert_eq!(ts("1499432361088203"), "2017-07-07 12:59:21.088203");
        assert_eq!(ts("951782400000000"), "2000-02-29 00:00:00.000000");
        assert_eq!(ts("4102444800000000"), "2100-01-01 00:00:00.000000");
    }
}
