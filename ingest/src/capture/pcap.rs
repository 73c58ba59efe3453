//! Classic libpcap files: a 24-byte file header, then 16-byte record headers
//! (24 bytes in Kuznetsov's "modified" variant) each followed by the data.

use super::buf::ChunkBuf;
use super::{rd32, truncated, ts_from_parts, CaptureError, Container, Found, MAX_RECORD_LEN};

/// Captured lengths up to this are accepted whatever the header's snap length
/// says (libpcap and Wireshark use the same allowance).
const MIN_CAPLEN_LIMIT: u32 = 262_144;

pub(super) struct PcapState {
    big_endian: bool,
    nanos: bool,
    /// Record header length: 16, or 24 for the modified format.
    hdr_len: usize,
    link_type: u32,
    /// Largest captured length that is not corruption.
    max_caplen: u32,
}

impl PcapState {
    /// Parses the file header if the magic is a pcap magic; `Ok(None)` otherwise.
    pub(super) fn open(buf: &mut ChunkBuf) -> Result<Option<(PcapState, Container)>, CaptureError> {
        let Some(&magic) = buf.head::<4>() else {
            return Ok(None);
        };
        let (big_endian, nanos, modified) = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, false, false),
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, false, false),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, true, false),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, true, false),
            [0x34, 0xcd, 0xb2, 0xa1] => (false, false, true),
            [0xa1, 0xb2, 0xcd, 0x34] => (true, false, true),
            _ => return Ok(None),
        };
        if !buf.ensure(24)? {
            return Err(CaptureError::NotACapture {
                found: format!(
                    "pcap magic in a {}-byte file, too short for the 24-byte file header",
                    buf.avail()
                ),
            });
        }
        let h = buf.peek();
        let snaplen = rd32(h, 16, big_endian);
        // The upper bits of the link type field carry FCS information.
        let link_type = rd32(h, 20, big_endian) & 0x03FF_FFFF;
        buf.consume(24);
        let state = PcapState {
            big_endian,
            nanos,
            hdr_len: if modified { 24 } else { 16 },
            link_type,
            max_caplen: snaplen.max(MIN_CAPLEN_LIMIT).min(MAX_RECORD_LEN as u32),
        };
        let container = Container::Pcap {
            nanos,
            big_endian,
            modified,
        };
        Ok(Some((state, container)))
    }

    #[inline]
    pub(super) fn next(&mut self, buf: &mut ChunkBuf) -> Result<Option<Found>, CaptureError> {
        let hl = self.hdr_len;
        if !buf.ensure(hl)? {
            return match buf.avail() {
                0 => Ok(None),
                _ => Err(truncated(buf, hl)),
            };
        }
        let h = buf.peek();
        let be = self.big_endian;
        let secs = rd32(h, 0, be);
        let frac = rd32(h, 4, be);
        let caplen = rd32(h, 8, be);
        let orig = rd32(h, 12, be);
        if caplen > self.max_caplen {
            return Err(CaptureError::Corrupt {
                offset: buf.offset(),
                reason: format!(
                    "record captured length {caplen} exceeds the limit {}",
                    self.max_caplen
                ),
            });
        }
        let total = hl + caplen as usize;
        if !buf.ensure(total)? {
            return Err(truncated(buf, total));
        }
        let start = buf.pos() + hl;
        buf.consume(total);
        Ok(Some(Found {
            start,
            len: caplen as usize,
            ts_us: ts_from_parts(secs, frac, self.nanos),
            link_type: self.link_type,
            orig_len: orig.max(caplen),
        }))
    }
}
