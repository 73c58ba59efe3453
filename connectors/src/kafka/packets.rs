//! Kafka messages of the `packets` format, turned into captured packets.
//!
//! Two encodings, chosen in config (`kafka.encoding`):
//! - `capture`: the value is a pcap or pcapng byte chunk (header included)
//!   holding any number of packets: the efficient form at high rates.
//!   `tapstream kafka produce` writes this form.
//! - `frame`: the value is one raw frame. Its capture time is the header
//!   `ts_us` (decimal microseconds since the epoch) or else the message's
//!   timestamp (milliseconds); its link type the header `linktype` (a pcap
//!   `LINKTYPE_*` number) or else `kafka.link_type`; its wire length the
//!   header `orig_len` or else the frame's length.
//!
//! Producers must keep each flow in one partition (key messages by flow, or
//! choose the partition from a symmetric hash of the 5-tuple) and write a
//! flow's packets in capture order: flows are assembled per consumer, and a
//! partition is the unit Kafka hands from one consumer to another.

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use tapstream_ingest::capture::{CaptureError, CaptureReader, RawPacket};

/// How packets are encoded in a message.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// A pcap or pcapng chunk with its own header.
    #[default]
    Capture,
    /// One raw frame; time and link type in headers.
    Frame,
}

/// What one message held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Packets handed to the callback.
    pub packets: u64,
    /// Packet records cut short at the end of a capture chunk (counted as
    /// packets, not handed on).
    pub truncated: u64,
}

/// Why a message could not be read (whole or in part).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The message has no value.
    #[error("the message is empty")]
    Empty,
    /// A capture chunk that is not pcap or pcapng, or is corrupt; packets
    /// before the corruption were handed on.
    #[error("capture chunk: {0}")]
    Capture(#[from] CaptureError),
    /// A frame without a capture time (no `ts_us` header and no message
    /// timestamp).
    #[error("a frame needs a ts_us header or a message timestamp")]
    NoTime,
    /// A header that should be a number is not.
    #[error("header {name} is not a valid number: {value:?}")]
    BadHeader {
        /// The header.
        name: &'static str,
        /// Its value, lossily decoded.
        value: String,
    },
    /// A frame longer than a pcap record may be.
    #[error("a frame of {0} bytes is longer than any capture record")]
    TooLong(usize),
}

/// The parts of a Kafka message the decoder needs.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// The value.
    pub payload: Option<&'a [u8]>,
    /// Message timestamp, milliseconds since the epoch, if any.
    pub timestamp_ms: Option<i64>,
    /// `ts_us` header.
    pub ts_us: Option<&'a [u8]>,
    /// `linktype` header.
    pub linktype: Option<&'a [u8]>,
    /// `orig_len` header.
    pub orig_len: Option<&'a [u8]>,
}

/// Largest frame accepted (as a pcap record's captured length could be).
const MAX_FRAME: usize = 256 * 1024;

/// Reads the packets of `msg`, calling `each` for each one in order.
///
/// Returns what was read and, when the message was bad, why. Packets read
/// before an error were already handed on: the caller counts the message
/// as malformed and keeps what it got.
pub fn decode(
    msg: &Message<'_>,
    encoding: Encoding,
    default_link_type: u32,
    mut each: impl FnMut(&RawPacket<'_>),
) -> (Decoded, Option<MessageError>) {
    let mut got = Decoded::default();
    let Some(payload) = msg.payload.filter(|p| !p.is_empty()) else {
        return (got, Some(MessageError::Empty));
    };
    match encoding {
        Encoding::Capture => {
            let reader = CaptureReader::with_buffer_size(
                Box::new(Cursor::new(payload.to_vec())),
                payload.len().clamp(16, 1 << 20),
            );
            let mut reader = match reader {
                Ok(r) => r,
                Err(e) => return (got, Some(e.into())),
            };
            loop {
                match reader.next_packet() {
                    Ok(Some(p)) => {
                        got.packets += 1;
                        each(&p);
                    }
                    Ok(None) => return (got, None),
                    Err(CaptureError::TruncatedRecord { .. }) => got.truncated += 1,
                    Err(e) => return (got, Some(e.into())),
                }
            }
        }
        Encoding::Frame => match frame(msg, payload, default_link_type) {
            Ok(p) => {
                got.packets = 1;
                each(&p);
                (got, None)
            }
            Err(e) => (got, Some(e)),
        },
    }
}

fn frame<'a>(
    msg: &Message<'a>,
    payload: &'a [u8],
    default_link_type: u32,
) -> Result<RawPacket<'a>, MessageError> {
    if payload.len() > MAX_FRAME {
        return Err(MessageError::TooLong(payload.len()));
    }
    let ts_us = match msg.ts_us {
        Some(v) => number::<i64>("ts_us", v)?,
        None => msg
            .timestamp_ms
            .and_then(|ms| ms.checked_mul(1000))
            .ok_or(MessageError::NoTime)?,
    };
    let link_type = match msg.linktype {
        Some(v) => number::<u32>("linktype", v)?,
        None => default_link_type,
    };
    let captured =
        u32::try_from(payload.len()).map_err(|_| MessageError::TooLong(payload.len()))?;
    let orig_len = match msg.orig_len {
        Some(v) => number::<u32>("orig_len", v)?.max(captured),
        None => captured,
    };
    Ok(RawPacket {
        ts_us,
        link_type,
        orig_len,
        data: payload,
    })
}

fn number<T: std::str::FromStr>(name: &'static str, v: &[u8]) -> Result<T, MessageError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| MessageError::BadHeader {
            name,
            value: String::from_utf8_lossy(v).chars().take(40).collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapstream_ingest::pcapgen::{pcap_bytes, Frame};

    fn msg(payload: &[u8]) -> Message<'_> {
        Message {
            payload: Some(payload),
            timestamp_ms: None,
            ts_us: None,
            linktype: None,
            orig_len: None,
        }
    }

    fn frames(n: usize) -> Vec<(i64, Frame)> {
        let a = "198.18.0.1".parse().expect("address");
        let b = "198.18.0.2".parse().expect("address");
        (0..n)
            .map(|i| {
                (
                    1_700_000_000_000_000 + i as i64,
                    Frame::udp(a, b, 1000, 53, i),
                )
            })
            .collect()
    }

    /// `(ts_us, link_type, orig_len, captured)` of each packet.
    type Seen = Vec<(i64, u32, u32, usize)>;

    fn collect(m: &Message<'_>, enc: Encoding) -> (Seen, Decoded, Option<MessageError>) {
        let mut seen = Vec::new();
        let (d, e) = decode(m, enc, 1, |p| {
            seen.push((p.ts_us, p.link_type, p.orig_len, p.data.len()))
        });
        (seen, d, e)
    }

    #[test]
    fn a_capture_chunk_yields_its_packets_in_order() {
        let bytes = pcap_bytes(&frames(5));
        let (seen, d, e) = collect(&msg(&bytes), Encoding::Capture);
        assert!(e.is_none(), "{e:?}");
        assert_eq!(d.packets, 5);
        let ts: Vec<i64> = seen.iter().map(|s| s.0).collect();
        assert_eq!(
            ts,
            (0..5)
                .map(|i| 1_700_000_000_000_000 + i)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_cut_chunk_keeps_its_whole_packets_and_counts_the_cut_one() {
        let bytes = pcap_bytes(&frames(3));
        let cut = bytes.get(..bytes.len() - 5).expect("long enough");
        let (seen, d, e) = collect(&msg(cut), Encoding::Capture);
        assert_eq!(seen.len(), 2);
        assert_eq!(d.truncated, 1);
        assert!(e.is_none(), "{e:?}");
    }

    #[test]
    fn garbage_and_empty_messages_are_errors() {
        let (seen, _, e) = collect(&msg(b"definitely not a capture"), Encoding::Capture);
        assert!(seen.is_empty());
        assert!(matches!(e, Some(MessageError::Capture(_))), "{e:?}");
        let empty = Message {
            payload: None,
            ..msg(b"")
        };
        assert!(matches!(
            collect(&empty, Encoding::Frame).2,
            Some(MessageError::Empty)
        ));
    }

    #[test]
    fn a_frame_takes_its_time_and_link_type_from_headers_or_the_message() {
        let frame = frames(1).remove(0).1.to_bytes();
        let m = Message {
            ts_us: Some(b"1700000000123456"),
            linktype: Some(b"101"),
            orig_len: Some(b"1500"),
            ..msg(&frame)
        };
        let (seen, _, e) = collect(&m, Encoding::Frame);
        assert!(e.is_none());
        assert_eq!(seen, vec![(1_700_000_000_123_456, 101, 1500, frame.len())]);

        let m = Message {
            timestamp_ms: Some(1_700_000_000_123),
            ..msg(&frame)
        };
        let (seen, _, _) = collect(&m, Encoding::Frame);
        assert_eq!(
            seen,
            vec![(1_700_000_000_123_000, 1, frame.len() as u32, frame.len())]
        );

        assert!(matches!(
            collect(&msg(&frame), Encoding::Frame).2,
            Some(MessageError::NoTime)
        ));
        let bad = Message {
            ts_us: Some(b"soon"),
            ..msg(&frame)
        };
        let e = collect(&bad, Encoding::Frame).2.map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("header ts_us is not a valid number: \"soon\"")
        );
    }

    proptest::proptest! {
        #[test]
        fn no_message_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), frame in proptest::prelude::any::<bool>()) {
            let enc = if frame { Encoding::Frame } else { Encoding::Capture };
            let m = Message { timestamp_ms: Some(1), ..msg(&bytes) };
            let _ = collect(&m, enc);
        }
    }
}
