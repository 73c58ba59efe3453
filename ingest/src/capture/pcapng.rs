//! pcapng: a sequence of sections, each a Section Header Block (which sets the
//! byte order) followed by blocks. Interface Description Blocks give each
//! interface its link type, snap length and timestamp units; packets come in
//! Enhanced, Simple and (obsolete) Packet Blocks. Every other block type is
//! skipped by its length.

use super::buf::ChunkBuf;
use super::{rd16, rd32, truncated, CaptureError, Found, LINKTYPE_UNKNOWN, MAX_RECORD_LEN};

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const PB: u32 = 0x0000_0002;
const SPB: u32 = 0x0000_0003;
const EPB: u32 = 0x0000_0006;

/// Interfaces past this many in one section are ignored (their packets get
/// [`LINKTYPE_UNKNOWN`]), so a hostile file cannot grow the table unboundedly.
const MAX_INTERFACES: usize = 1 << 16;

/// Converts timestamp units to microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scale {
    /// Units are `1/(1e6/m)` s: multiply (µs and coarser).
    Mul(u64),
    /// Units are finer than µs by this factor: divide (floors).
    Div(u64),
    /// Units are `2^-n` s.
    Pow2(u32),
    /// Units so fine that every timestamp below 2^64 is under 1 µs.
    Zero,
}

impl Scale {
    /// From the `if_tsresol` option byte.
    fn from_tsresol(v: u8) -> Scale {
        let n = u32::from(v & 0x7F);
        if v & 0x80 != 0 {
            Scale::Pow2(n)
        } else if n <= 6 {
            Scale::Mul(10u64.pow(6 - n))
        } else {
            10u64.checked_pow(n - 6).map_or(Scale::Zero, Scale::Div)
        }
    }

    #[inline]
    fn to_us(self, t: u64) -> u64 {
        match self {
            Scale::Mul(m) => t.saturating_mul(m),
            Scale::Div(d) => t / d,
            Scale::Pow2(n) => u64::try_from((u128::from(t) * 1_000_000) >> n).unwrap_or(u64::MAX),
            Scale::Zero => 0,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    link_type: u32,
    snaplen: u32,
    scale: Scale,
    /// `if_tsoffset`, in µs.
    offset_us: i64,
}

const UNKNOWN_INTERFACE: Interface = Interface {
    link_type: LINKTYPE_UNKNOWN,
    snaplen: 0,
    scale: Scale::Mul(1),
    offset_us: 0,
};

impl Interface {
    #[inline]
    fn ts_us(&self, hi: u32, lo: u32) -> i64 {
        let t = (u64::from(hi) << 32) | u64::from(lo);
        let us = i64::try_from(self.scale.to_us(t)).unwrap_or(i64::MAX);
        us.saturating_add(self.offset_us)
    }
}

pub(super) struct NgState {
    big_endian: bool,
    interfaces: Vec<Interface>,
    /// Timestamp of the last packet, given to Simple Packet Blocks (which have none).
    last_ts_us: i64,
}

fn corrupt(buf: &ChunkBuf, reason: String) -> CaptureError {
    CaptureError::Corrupt {
        offset: buf.offset(),
        reason,
    }
}

/// Byte order from a Section Header Block's byte-order magic.
fn bom(b: &[u8]) -> Option<bool> {
    match b.get(8..12)? {
        [0x1a, 0x2b, 0x3c, 0x4d] => Some(true),
        [0x4d, 0x3c, 0x2b, 0x1a] => Some(false),
        _ => None,
    }
}

fn is_packet_block(t: u32) -> bool {
    matches!(t, EPB | SPB | PB)
}

impl NgState {
    /// Parses the first Section Header Block; the caller has seen its type.
    pub(super) fn open(buf: &mut ChunkBuf) -> Result<NgState, CaptureError> {
        if !buf.ensure(12)? {
            return Err(CaptureError::NotACapture {
                found: format!(
                    "pcapng magic in a {}-byte file, too short for a section header",
                    buf.avail()
                ),
            });
        }
        let Some(big_endian) = bom(buf.peek()) else {
            return Err(CaptureError::NotACapture {
                found: "pcapng block type but no byte-order magic (not a pcapng file)".to_string(),
            });
        };
        let len = rd32(buf.peek(), 4, big_endian) as usize;
        if len <= MAX_RECORD_LEN && !buf.ensure(len)? {
            return Err(CaptureError::NotACapture {
                found: format!(
                    "pcapng section header of {len} bytes in a {}-byte file",
                    buf.avail()
                ),
            });
        }
        let mut s = NgState {
            big_endian,
            interfaces: Vec::new(),
            last_ts_us: 0,
        };
        s.section_header(buf)?;
        Ok(s)
    }

    /// Reads a Section Header Block at the buffer position: sets the byte
    /// order and forgets the previous section's interfaces.
    fn section_header(&mut self, buf: &mut ChunkBuf) -> Result<(), CaptureError> {
        let Some(be) = bom(buf.peek()) else {
            return Err(corrupt(
                buf,
                "section header with a bad byte-order magic".to_string(),
            ));
        };
        let len = rd32(buf.peek(), 4, be) as usize;
        if len < 28 || len % 4 != 0 || len > MAX_RECORD_LEN {
            return Err(corrupt(
                buf,
                format!("section header block length {len} is invalid"),
            ));
        }
        if !buf.ensure(len)? {
            return Err(corrupt(
                buf,
                format!("file ends inside a {len}-byte section header block"),
            ));
        }
        let b = buf.peek();
        let major = rd16(b, 12, be);
        if major != 1 {
            return Err(corrupt(
                buf,
                format!("unsupported pcapng major version {major}"),
            ));
        }
        if rd32(b, len - 4, be) as usize != len {
            return Err(corrupt(
                buf,
                "section header trailing length mismatch".to_string(),
            ));
        }
        self.big_endian = be;
        self.interfaces.clear();
        buf.consume(len);
        Ok(())
    }

    /// Parses an Interface Description Block of `len` bytes at the buffer position.
    fn interface(&mut self, b: &[u8], len: usize) {
        let be = self.big_endian;
        let mut iface = Interface {
            link_type: u32::from(rd16(b, 8, be)),
            snaplen: rd32(b, 12, be),
            ..UNKNOWN_INTERFACE
        };
        // Options: code u16, length u16, value padded to 4 bytes.
        let opts_end = len - 4;
        let mut o = 16;
        while o + 4 <= opts_end {
            let code = rd16(b, o, be);
            let olen = usize::from(rd16(b, o + 2, be));
            if code == 0 || o + 4 + olen > opts_end {
                break;
            }
            match (code, b.get(o + 4..o + 4 + olen)) {
                (9, Some(&[v])) => iface.scale = Scale::from_tsresol(v),
                (14, Some(v)) if olen == 8 => {
                    let secs = if be {
                        (u64::from(rd32(v, 0, true)) << 32) | u64::from(rd32(v, 4, true))
                    } else {
                        (u64::from(rd32(v, 4, false)) << 32) | u64::from(rd32(v, 0, false))
                    } as i64;
                    iface.offset_us = secs.saturating_mul(1_000_000);
                }
                _ => {}
            }
            o += 4 + olen.div_ceil(4) * 4;
        }
        if self.interfaces.len() < MAX_INTERFACES {
            self.interfaces.push(iface);
        }
    }

    #[inline]
    fn iface(&self, id: u32) -> &Interface {
        self.interfaces
            .get(id as usize)
            .unwrap_or(&UNKNOWN_INTERFACE)
    }

    pub(super) fn next(&mut self, buf: &mut ChunkBuf) -> Result<Option<Found>, CaptureError> {
        loop {
            let (btype, len) = match self.next_block(buf)? {
                Block::End => return Ok(None),
                Block::Section => {
                    self.section_header(buf)?;
                    continue;
                }
                Block::Other { btype, len } => (btype, len),
            };
            let found = self.read_block(buf, btype, len)?;
            buf.consume(len);
            if let Some(f) = found {
                self.last_ts_us = f.ts_us;
                return Ok(Some(f));
            }
        }
    }

    /// The next block's type and length, checked and wholly in `buf`.
    fn next_block(&self, buf: &mut ChunkBuf) -> Result<Block, CaptureError> {
        let be = self.big_endian;
        if !buf.ensure(12)? {
            let avail = buf.avail();
            if avail == 0 {
                return Ok(Block::End);
            }
            if avail >= 4 && is_packet_block(rd32(buf.peek(), 0, be)) {
                return Err(truncated(buf, 12));
            }
            return Err(corrupt(
                buf,
                format!("{avail} trailing bytes, too few for a block header"),
            ));
        }
        let h = buf.peek();
        let btype = rd32(h, 0, be);
        if btype == SHB {
            return Ok(Block::Section);
        }
        let len = rd32(h, 4, be) as usize;
        if len < 12 || len % 4 != 0 || len > MAX_RECORD_LEN {
            return Err(corrupt(
                buf,
                format!("block type {btype:#x} has invalid length {len}"),
            ));
        }
        if !buf.ensure(len)? {
            if is_packet_block(btype) {
                return Err(truncated(buf, len));
            }
            return Err(corrupt(
                buf,
                format!(
                    "file ends inside a {len}-byte block of type {btype:#x} ({} bytes remain)",
                    buf.avail()
                ),
            ));
        }
        if rd32(buf.peek(), len - 4, be) as usize != len {
            return Err(corrupt(
                buf,
                format!("block type {btype:#x} of length {len}: trailing length mismatch"),
            ));
        }
        Ok(Block::Other { btype, len })
    }

    /// Reads a block of type `btype` and length `len` at the start of
    /// `buf`: a packet, an interface description, or nothing of interest.
    fn read_block(
        &mut self,
        buf: &ChunkBuf,
        btype: u32,
        len: usize,
    ) -> Result<Option<Found>, CaptureError> {
        let be = self.big_endian;
        let b = buf.peek();
        match btype {
            EPB | PB => {
                if len < 32 {
                    return Err(corrupt(
                        buf,
                        format!("packet block too short ({len} bytes)"),
                    ));
                }
                let id = if btype == EPB {
                    rd32(b, 8, be)
                } else {
                    u32::from(rd16(b, 8, be))
                };
                let caplen = rd32(b, 20, be);
                let orig = rd32(b, 24, be);
                if caplen as usize > len - 32 {
                    return Err(corrupt(
                        buf,
                        format!("captured length {caplen} does not fit in a {len}-byte block"),
                    ));
                }
                let iface = self.iface(id);
                Ok(Some(Found {
                    start: buf.pos() + 28,
                    len: caplen as usize,
                    ts_us: iface.ts_us(rd32(b, 12, be), rd32(b, 16, be)),
                    link_type: iface.link_type,
                    orig_len: orig.max(caplen),
                }))
            }
            SPB => {
                if len < 16 {
                    return Err(corrupt(
                        buf,
                        format!("simple packet block too short ({len} bytes)"),
                    ));
                }
                let orig = rd32(b, 8, be);
                let iface = self.iface(0);
                let mut caplen = orig.min((len - 16) as u32);
                if iface.snaplen != 0 {
                    caplen = caplen.min(iface.snaplen);
                }
                Ok(Some(Found {
                    start: buf.pos() + 12,
                    len: caplen as usize,
                    ts_us: self.last_ts_us,
                    link_type: iface.link_type,
                    orig_len: orig,
                }))
            }
            IDB => {
                if len < 20 {
                    return Err(corrupt(
                        buf,
                        format!("interface block too short ({len} bytes)"),
                    ));
                }
                self.interface(b, len);
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}

/// What [`NgState::next_block`] found.
enum Block {
    /// The end of the file, between blocks.
    End,
    /// A section header block.
    Section,
    /// Another block, wholly buffered.
    Other { btype: u32, len: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsresol_scales() {
        assert_eq!(Scale::from_tsresol(6), Scale::Mul(1));
        assert_eq!(Scale::from_tsresol(3), Scale::Mul(1000));
        assert_eq!(Scale::from_tsresol(0), Scale::Mul(1_000_000));
        assert_eq!(Scale::from_tsresol(9), Scale::Div(1000));
        assert_eq!(Scale::from_tsresol(25), Scale::Div(10u64.pow(19)));
        assert_eq!(Scale::from_tsresol(26), Scale::Zero);
        assert_eq!(Scale::from_tsresol(127), Scale::Zero);
        assert_eq!(Scale::from_tsresol(0x80 | 20), Scale::Pow2(20));
        // 2^-20 s units: 2^20 units = 1 s.
        assert_eq!(Scale::Pow2(20).to_us(1 << 20), 1_000_000);
        assert_eq!(Scale::Pow2(127).to_us(u64::MAX), 0);
        assert_eq!(Scale::Pow2(0).to_us(u64::MAX), u64::MAX); // saturates
        assert_eq!(Scale::Div(1000).to_us(1_999), 1); // floors
        assert_eq!(Scale::Mul(1_000_000).to_us(u64::MAX), u64::MAX); // saturates
    }

    #[test]
    fn interface_timestamps_saturate_and_offset() {
        let i = Interface {
            offset_us: -5_000_000,
            ..UNKNOWN_INTERFACE
        };
        assert_eq!(i.ts_us(0, 10_000_000), 5_000_000);
        assert_eq!(UNKNOWN_INTERFACE.ts_us(u32::MAX, u32::MAX), i64::MAX);
    }
}
