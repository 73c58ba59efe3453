//! Byte-level writers for EVE values: timestamps, addresses, numbers and
//! escaped strings, appended to a caller-owned buffer.
//!
//! Hand-written rather than derived with serde so that an alert costs no
//! allocation and no intermediate `String`s: every value is formatted
//! straight into the output line, and the signature text (built from the
//! class and model names) is escaped piece by piece inside one JSON string.

use tapstream_ingest::civil::civil_from_days;

/// Appends `micros` (µs since the Unix epoch, UTC) as Suricata writes EVE
/// timestamps: `YYYY-MM-DDTHH:MM:SS.ffffff+0000`.
///
/// Any `i64` is accepted: times before 1970 are handled, and years outside
/// 0000–9999 (only reachable from nonsense timestamps) are written in plain
/// decimal, which is no longer ISO 8601 but still valid JSON.
pub fn write_timestamp(out: &mut Vec<u8>, micros: i64) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);

    if (0..=9999).contains(&year) {
        // The common case: fill a fixed-size line on the stack, append once.
        let mut buf = *b"0000-00-00T00:00:00.000000+0000";
        fill_digits(&mut buf[0..4], year as u32);
        fill_digits(&mut buf[5..7], month);
        fill_digits(&mut buf[8..10], day);
        fill_digits(&mut buf[11..13], sod / 3600);
        fill_digits(&mut buf[14..16], sod / 60 % 60);
        fill_digits(&mut buf[17..19], sod % 60);
        fill_digits(&mut buf[20..26], frac);
        out.extend_from_slice(&buf);
        return;
    }
    out.extend_from_slice(itoa::Buffer::new().format(year).as_bytes());
    out.push(b'-');
    push_digits(out, month, 2);
    out.push(b'-');
    push_digits(out, day, 2);
    out.push(b'T');
    push_digits(out, sod / 3600, 2);
    out.push(b':');
    push_digits(out, sod / 60 % 60, 2);
    out.push(b':');
    push_digits(out, sod % 60, 2);
    out.push(b'.');
    push_digits(out, frac, 6);
    out.extend_from_slice(b"+0000");
}

/// Writes `value` as zero-padded decimal digits filling `slot` (the high
/// digits are dropped if it does not fit, which callers rule out).
#[inline]
fn fill_digits(slot: &mut [u8], mut value: u32) {
    for d in slot.iter_mut().rev() {
        *d = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Appends `value` as exactly `width` decimal digits (zero-padded; higher
/// digits beyond `width` are dropped, callers pass values that fit).
fn push_digits(out: &mut Vec<u8>, value: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    if let Some(slot) = out.get_mut(start..) {
        fill_digits(slot, value);
    }
}

/// Appends an address as Suricata 7 writes it: dotted decimal for IPv4,
/// and for IPv6 all eight groups as four lowercase hex digits, uncompressed
/// (`2001:0db8:0000:0000:0000:0000:0000:0001`). IPv4 takes the first four
/// bytes of `addr`.
pub(crate) fn push_ip(out: &mut Vec<u8>, addr: &[u8; 16], v6: bool) {
    if v6 {
        for (i, byte) in addr.iter().enumerate() {
            if i > 0 && i % 2 == 0 {
                out.push(b':');
            }
            push_hex(out, *byte);
        }
    } else {
        let mut buf = itoa::Buffer::new();
        for (i, byte) in addr[..4].iter().enumerate() {
            if i > 0 {
                out.push(b'.');
            }
            out.extend_from_slice(buf.format(*byte).as_bytes());
        }
    }
}

/// Appends an unsigned integer.
pub(crate) fn push_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends an `f32` in its shortest round-tripping decimal form (`0.97`,
/// `1.0`, `1e-7`), or `null` when it is NaN or infinite (JSON has no
/// literal for those).
pub(crate) fn push_f32(out: &mut Vec<u8>, value: f32) {
    if value.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Appends `s` as a complete JSON string, quotes included.
pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_escaped(out, s);
    out.push(b'"');
}

/// Appends the JSON-escaped contents of `s` without quotes, byte for byte
/// as `serde_json` escapes strings: `"` and `\` are backslash-escaped,
/// control characters use `\b \t \n \f \r` or `\u00XX`, everything else
/// (including non-ASCII UTF-8 and DEL) is copied.
pub(crate) fn push_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            push_hex(out, b);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
}

/// Two lowercase hex digits of `byte`.
fn push_hex(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Both nibbles are below 16: always inside the table.
    for nibble in [byte >> 4, byte & 0xf] {
        out.push(HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(micros: i64) -> String {
        let mut out = Vec::new();
        write_timestamp(&mut out, micros);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn known_dates() {
        assert_eq!(ts(0), "1970-01-01T00:00:00.000000+0000");
        assert_eq!(ts(1), "1970-01-01T00:00:00.000001+0000");
        assert_eq!(ts(-1), "1969-12-31T23:59:59.999999+0000");
        // Suricata's own output for zeek__icmp.pcap's first packet.
        assert_eq!(ts(1_309_144_887_024_263), "2011-06-27T03:21:27.024263+0000");
        // Leap days: divisible by 4, by 400 (2000), and 1900 is not one.
        assert_eq!(ts(951_782_400_000_000), "2000-02-29T00:00:00.000000+0000");
        assert_eq!(ts(1_709_164_800_123_456), "2024-02-29T00:00:00.123456+0000");
        assert_eq!(ts(1_709_251_199_999_999), "2024-02-29T23:59:59.999999+0000");
        assert_eq!(
            ts(-2_203_891_200_000_000),
            "1900-03-01T00:00:00.000000+0000"
        );
        assert_eq!(ts(1_704_067_199_000_000), "2023-12-31T23:59:59.000000+0000");
        // Around the 32-bit time_t overflow (2038-01-19T03:14:07Z).
        assert_eq!(ts(2_147_483_647_000_000), "2038-01-19T03:14:07.000000+0000");
        assert_eq!(ts(2_147_483_648_500_000), "2038-01-19T03:14:08.500000+0000");
        assert_eq!(ts(4_102_444_800_000_000), "2100-01-01T00:00:00.000000+0000");
        assert_eq!(
            ts(253_402_300_799_999_999),
            "9999-12-31T23:59:59.999999+0000"
        );
    }

    #[test]
    fn extreme_timestamps_do_not_panic() {
        for micros in [i64::MIN, i64::MIN + 1, i64::MAX, -62_167_219_200_000_001] {
            let s = ts(micros);
            assert!(s.ends_with("+0000"), "{s}");
        }
        assert_eq!(
            ts(-62_167_219_200_000_000),
            "0000-01-01T00:00:00.000000+0000"
        );
        assert_eq!(ts(i64::MAX), "294247-01-10T04:00:54.775807+0000");
    }

    #[test]
    fn ipv6_is_written_uncompressed() {
        let mut out = Vec::new();
        let addr: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        push_ip(&mut out, &addr.octets(), true);
        assert_eq!(out, b"2001:0db8:0000:0000:0000:0000:0000:0001");
        out.clear();
        push_ip(
            &mut out,
            &[10, 0, 255, 7, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9],
            false,
        );
        assert_eq!(out, b"10.0.255.7");
    }

    #[test]
    fn floats() {
        let f = |v: f32| {
            let mut out = Vec::new();
            push_f32(&mut out, v);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(f(0.97), "0.97");
        assert_eq!(f(1.0), "1.0");
        assert_eq!(f(0.0), "0.0");
        assert_eq!(f(f32::NAN), "null");
        assert_eq!(f(f32::INFINITY), "null");
        assert_eq!(f(f32::NEG_INFINITY), "null");
    }

    #[test]
    fn escaping_matches_serde_json() {
        let mut samples: Vec<String> = (0u32..0x80)
            .filter_map(char::from_u32)
            .map(|c| format!("a{c}b"))
            .collect();
        samples.extend(
            [
                "",
                "plain",
                "\"quoted\" \\ back",
                "tab\tnew\nline\r\u{0}\u{1f}\u{7f}",
                "DDoS — Ünïcödé ✓ 🚀",
                "\u{2028}\u{2029}",
            ]
            .map(String::from),
        );
        for s in samples {
            let mut ours = Vec::new();
            push_str(&mut ours, &s);
            let theirs = serde_json::to_vec(&s).unwrap();
            assert_eq!(ours, theirs, "{s:?}");
            let back: String = serde_json::from_slice(&ours).unwrap();
            assert_eq!(back, s);
        }
    }
}
