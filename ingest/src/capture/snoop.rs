//! Sun/Solaris snoop files (RFC 1761): a 16-byte big-endian file header, then
//! 24-byte record headers, each record padded to its stated record length.

use super::buf::ChunkBuf;
use super::{
    rd32, truncated, ts_from_parts, CaptureError, Found, LINKTYPE_UNKNOWN, MAX_RECORD_LEN,
};

const HDR_LEN: usize = 24;

pub(super) struct SnoopState {
    link_type: u32,
}

/// Snoop datalink codes → pcap `LINKTYPE_*` values.
fn link_type(datalink: u32) -> u32 {
    match datalink {
        // IEEE 802.3, Ethernet, 100VG-AnyLAN Ethernet, ISO 8802/3, 100Base-T.
        0 | 4 | 22 | 24 | 25 => 1,
        // IEEE 802.5 token ring.
        2 => 6,
        // FDDI.
        8 => 10,
        _ => LINKTYPE_UNKNOWN,
    }
}

impl SnoopState {
    /// Parses the file header; the caller has seen "snoo".
    pub(super) fn open(buf: &mut ChunkBuf) -> Result<SnoopState, CaptureError> {
        if !buf.ensure(16)? {
            return Err(CaptureError::NotACapture {
                found: format!(
                    "snoop-like magic in a {}-byte file, too short for the 16-byte file header",
                    buf.avail()
                ),
            });
        }
        let h = buf.peek();
        if h.get(..8) != Some(b"snoop\0\0\0".as_slice()) {
            return Err(CaptureError::NotACapture {
                found: "a file starting with \"snoo\" but without the snoop magic".to_string(),
            });
        }
        let version = rd32(h, 8, true);
        if !(2..=5).contains(&version) {
            return Err(CaptureError::NotACapture {
                found: format!("a snoop file of unsupported version {version}"),
            });
        }
        let datalink = rd32(h, 12, true);
        buf.consume(16);
        Ok(SnoopState {
            link_type: link_type(datalink),
        })
    }

    pub(super) fn next(&mut self, buf: &mut ChunkBuf) -> Result<Option<Found>, CaptureError> {
        if !buf.ensure(HDR_LEN)? {
            return match buf.avail() {
                0 => Ok(None),
                _ => Err(truncated(buf, HDR_LEN)),
            };
        }
        let h = buf.peek();
        let orig = rd32(h, 0, true);
        let caplen = rd32(h, 4, true);
        let rec_len = rd32(h, 8, true) as usize;
        let secs = rd32(h, 16, true);
        let usecs = rd32(h, 20, true);
        let needed = (caplen as usize).saturating_add(HDR_LEN);
        if rec_len < needed || rec_len > MAX_RECORD_LEN {
            return Err(CaptureError::Corrupt {
                offset: buf.offset(),
                reason: format!(
                    "snoop record length {rec_len} cannot hold {caplen} captured bytes"
                ),
            });
        }
        // If only the padding of the last record is missing, the packet is whole.
        if !buf.ensure(rec_len)? && buf.avail() < needed {
            return Err(truncated(buf, rec_len));
        }
        let start = buf.pos() + HDR_LEN;
        buf.consume(rec_len);
        Ok(Some(Found {
            start,
            len: caplen as usize,
            ts_us: ts_from_parts(secs, usecs, false),
            link_type: self.link_type,
            orig_len: orig.max(caplen),
        }))
    }
}
