//! `kafka_packets` and `kafka_flows`: Kafka message values and headers.

use tapstream_connectors::kafka::flows::{Decoded, FlowDecoder};
use tapstream_connectors::kafka::packets::{self, Encoding, Message};
use tapstream_ingest::flow::FLOW_ID_MASK;
use tapstream_kernels::schema::{idx, NUM_FEATURES};

use crate::capture::decode_checked;

/// One `packets` message as the `kafka_packets` target reads its input:
/// a flags byte, the fields it announces, then the value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PacketsInput {
    /// `frame` encoding (else `capture`).
    pub frame: bool,
    /// Message timestamp, ms.
    pub timestamp_ms: Option<i64>,
    /// `ts_us` header (at most 31 bytes).
    pub ts_us: Option<Vec<u8>>,
    /// `linktype` header (at most 31 bytes).
    pub linktype: Option<Vec<u8>>,
    /// `orig_len` header (at most 31 bytes).
    pub orig_len: Option<Vec<u8>>,
    /// `kafka.link_type` (1 when absent).
    pub default_link_type: Option<u32>,
    /// The value; `None` for a message without one.
    pub payload: Option<Vec<u8>>,
}

const FRAME: u8 = 1;
const TIMESTAMP: u8 = 2;
const TS_US: u8 = 4;
const LINKTYPE: u8 = 8;
const ORIG_LEN: u8 = 16;
const DEFAULT_LT: u8 = 32;
const NO_PAYLOAD: u8 = 64;

impl PacketsInput {
    /// The input bytes that [`PacketsInput::parse`] reads back as `self`.
    pub fn encode(&self) -> Vec<u8> {
        let mut flags = 0;
        let mut out = vec![0];
        if self.frame {
            flags |= FRAME;
        }
        if let Some(t) = self.timestamp_ms {
            flags |= TIMESTAMP;
            out.extend(t.to_le_bytes());
        }
        for (bit, h) in [
            (TS_US, &self.ts_us),
            (LINKTYPE, &self.linktype),
            (ORIG_LEN, &self.orig_len),
        ] {
            if let Some(h) = h {
                flags |= bit;
                let h = &h[..h.len().min(31)];
                out.push(h.len() as u8);
                out.extend(h);
            }
        }
        if let Some(lt) = self.default_link_type {
            flags |= DEFAULT_LT;
            out.extend(lt.to_le_bytes());
        }
        match &self.payload {
            Some(p) => out.extend(p),
            None => flags |= NO_PAYLOAD,
        }
        out[0] = flags;
        out
    }

    /// Reads an input; `None` if it ends inside a field.
    pub fn parse(data: &[u8]) -> Option<PacketsInput> {
        let (&flags, mut rest) = data.split_first()?;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (a, b) = rest.split_at_checked(n)?;
            rest = b;
            Some(a)
        };
        let mut input = PacketsInput {
            frame: flags & FRAME != 0,
            ..PacketsInput::default()
        };
        if flags & TIMESTAMP != 0 {
            input.timestamp_ms = Some(i64::from_le_bytes(take(8)?.try_into().ok()?));
        }
        for (bit, field) in [
            (TS_US, &mut input.ts_us),
            (LINKTYPE, &mut input.linktype),
            (ORIG_LEN, &mut input.orig_len),
        ] {
            if flags & bit != 0 {
                let n = usize::from(*take(1)?.first()? % 32);
                *field = Some(take(n)?.to_vec());
            }
        }
        if flags & DEFAULT_LT != 0 {
            input.default_link_type = Some(u32::from_le_bytes(take(4)?.try_into().ok()?));
        }
        if flags & NO_PAYLOAD == 0 {
            input.payload = Some(rest.to_vec());
        }
        Some(input)
    }
}

/// Target `kafka_packets`: a [`PacketsInput`] through
/// [`packets::decode`], every packet it yields through the decoder. The
/// counts must match the packets handed on; a frame message yields its
/// value as one packet with the time, link type and length the headers or
/// the message say, or an error and nothing.
pub fn kafka_packets(data: &[u8]) {
    let Some(input) = PacketsInput::parse(data) else {
        return;
    };
    let msg = Message {
        payload: input.payload.as_deref(),
        timestamp_ms: input.timestamp_ms,
        ts_us: input.ts_us.as_deref(),
        linktype: input.linktype.as_deref(),
        orig_len: input.orig_len.as_deref(),
    };
    let encoding = if input.frame {
        Encoding::Frame
    } else {
        Encoding::Capture
    };
    let default_lt = input.default_link_type.unwrap_or(1);
    let mut seen = Vec::new();
    let (got, err) = packets::decode(&msg, encoding, default_lt, |p| {
        assert!(p.orig_len as usize >= p.data.len());
        decode_checked(p);
        seen.push((p.ts_us, p.link_type, p.orig_len, p.data.to_vec()));
    });
    let _ = err.as_ref().map(ToString::to_string);
    assert_eq!(got.packets, seen.len() as u64);
    assert!(got.truncated <= 1, "one record at most is cut: {got:?}");
    if input.frame {
        match (&err, seen.as_slice()) {
            (None, [(ts, lt, orig, bytes)]) => {
                let payload = input.payload.as_deref().unwrap_or_default();
                assert_eq!(bytes.as_slice(), payload);
                assert!(*orig as usize >= payload.len());
                if input.ts_us.is_none() {
                    assert_eq!(
                        Some(*ts),
                        input.timestamp_ms.and_then(|ms| ms.checked_mul(1000))
                    );
                }
                if input.linktype.is_none() {
                    assert_eq!(*lt, default_lt);
                }
            }
            (Some(_), []) => {}
            (e, s) => panic!("a frame message gave {} packets and {e:?}", s.len()),
        }
    }
}

/// Separates the messages of a `kafka_flows` input (never in UTF-8 text).
pub const SEPARATOR: u8 = 0xFF;

/// Target `kafka_flows`: byte 0 bit 0 set means the first message is a
/// configured CSV header ([`FlowDecoder::with_csv_header`]); the rest are
/// messages, separated by [`SEPARATOR`], decoded in order by one decoder.
/// A row must have finite features, a flow id of at most 51 bits, an end not
/// before its start, and ports and protocol equal to its feature columns.
pub fn kafka_flows(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut messages = rest.split(|b| *b == SEPARATOR);
    let mut dec = if flags & 1 != 0 {
        let Some(Ok(header)) = messages.next().map(std::str::from_utf8) else {
            return;
        };
        match FlowDecoder::with_csv_header(header) {
            Ok(d) => d,
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        }
    } else {
        FlowDecoder::new()
    };
    let mut row = [0.0; NUM_FEATURES];
    for msg in messages {
        match dec.decode(msg, &mut row) {
            Ok(Decoded::Header) => {}
            Ok(Decoded::Row(m)) => {
                assert!(row.iter().all(|v| v.is_finite()), "{row:?}");
                assert!(m.flow_id <= FLOW_ID_MASK);
                assert!(m.last_us >= m.start_us, "{m:?}");
                assert_eq!(f64::from(m.sport), row[idx::SRC_PORT]);
                assert_eq!(f64::from(m.dport), row[idx::DST_PORT]);
                assert_eq!(f64::from(m.proto), row[idx::PROTOCOL]);
                if !m.v6 {
                    assert!(m.src[4..].iter().chain(&m.dst[4..]).all(|b| *b == 0));
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    let _ = dec.extra_columns().count();
}
