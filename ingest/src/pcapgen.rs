//! Builds Ethernet/IPv4/IPv6 frames and classic pcap files in memory.
//!
//! The project makes its own fixtures: unit tests describe packets with
//! [`Frame`] and the demo capture generator writes whole sessions with
//! [`PcapWriter`]. Checksums are left zero (no reader here verifies them).

use std::io::{self, Write};
use std::net::IpAddr;

/// Link type of frames written by [`PcapWriter`]: Ethernet (DLT_EN10MB).
pub const LINKTYPE_ETHERNET: u32 = 1;

/// A transport segment to put inside an IP packet.
#[derive(Clone, Debug)]
pub enum Transport {
    /// TCP with the given flags byte, window and payload length (payload bytes are zero-filled).
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Flags byte (`tcp_flags::*`).
        flags: u8,
        /// Receive window.
        window: u16,
        /// Sequence number.
        seq: u32,
        /// Acknowledgment number.
        ack: u32,
        /// Bytes of TCP options (multiple of 4, at most 40).
        options_len: u8,
        /// Payload bytes.
        payload: usize,
    },
    /// UDP with `payload` zero bytes.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Payload bytes.
        payload: usize,
    },
    /// ICMP (IPv4) or ICMPv6 (IPv6) with an 8-byte header and `payload` bytes.
    Icmp {
        /// ICMP type.
        icmp_type: u8,
        /// ICMP code.
        code: u8,
        /// Payload bytes after the 8-byte header.
        payload: usize,
    },
}

/// One Ethernet frame carrying IPv4 or IPv6 (chosen by the address family).
#[derive(Clone, Debug)]
pub struct Frame {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Transport segment.
    pub transport: Transport,
}

impl Frame {
    /// A TCP frame with no options, window 8192 and zero sequence numbers.
    pub fn tcp(
        src: IpAddr,
        dst: IpAddr,
        sport: u16,
        dport: u16,
        flags: u8,
        payload: usize,
    ) -> Self {
        Frame {
            src,
            dst,
            transport: Transport::Tcp {
                sport,
                dport,
                flags,
                window: 8192,
                seq: 0,
                ack: 0,
                options_len: 0,
                payload,
            },
        }
    }

    /// A UDP frame.
    pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: usize) -> Self {
        Frame {
            src,
            dst,
            transport: Transport::Udp {
                sport,
                dport,
                payload,
            },
        }
    }

    /// An ICMP (or ICMPv6) frame.
    pub fn icmp(src: IpAddr, dst: IpAddr, icmp_type: u8, code: u8, payload: usize) -> Self {
        Frame {
            src,
            dst,
            transport: Transport::Icmp {
                icmp_type,
                code,
                payload,
            },
        }
    }

    /// Sets the TCP window (no effect on other transports).
    pub fn with_window(mut self, w: u16) -> Self {
        if let Transport::Tcp { window, .. } = &mut self.transport {
            *window = w;
        }
        self
    }

    /// Sets TCP sequence and acknowledgment numbers (no effect on other transports).
    pub fn with_seq(mut self, s: u32, a: u32) -> Self {
        if let Transport::Tcp { seq, ack, .. } = &mut self.transport {
            *seq = s;
            *ack = a;
        }
        self
    }

    /// Sets the TCP options length in bytes, rounded up to a multiple of 4, at most 40.
    pub fn with_tcp_options(mut self, len: u8) -> Self {
        if let Transport::Tcp { options_len, .. } = &mut self.transport {
            *options_len = len.div_ceil(4).saturating_mul(4).min(40);
        }
        self
    }

    /// Encodes the frame: Ethernet header, IP header, transport header, payload.
    /// Frames shorter than 60 bytes are padded like a NIC would pad them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut l4 = Vec::with_capacity(64);
        let proto = match &self.transport {
            Transport::Tcp {
                sport,
                dport,
                flags,
                window,
                seq,
                ack,
                options_len,
                payload,
            } => {
                let opt = usize::from(*options_len).min(40) / 4 * 4;
                l4.extend_from_slice(&sport.to_be_bytes());
                l4.extend_from_slice(&dport.to_be_bytes());
                l4.extend_from_slice(&seq.to_be_bytes());
                l4.extend_from_slice(&ack.to_be_bytes());
                let data_offset = ((20 + opt) / 4) as u8;
                l4.push(data_offset << 4);
                l4.push(*flags);
                l4.extend_from_slice(&window.to_be_bytes());
                l4.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
                l4.extend(std::iter::repeat_n(1u8, opt)); // NOP options
                l4.extend(std::iter::repeat_n(0u8, *payload));
                6u8
            }
            Transport::Udp {
                sport,
                dport,
                payload,
            } => {
                l4.extend_from_slice(&sport.to_be_bytes());
                l4.extend_from_slice(&dport.to_be_bytes());
                let len = u16::try_from(8 + payload).unwrap_or(u16::MAX);
                l4.extend_from_slice(&len.to_be_bytes());
                l4.extend_from_slice(&[0, 0]);
                l4.extend(std::iter::repeat_n(0u8, *payload));
                17u8
            }
            Transport::Icmp {
                icmp_type,
                code,
                payload,
            } => {
                l4.push(*icmp_type);
                l4.push(*code);
                l4.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
                l4.extend(std::iter::repeat_n(0u8, *payload));
                if self.src.is_ipv6() {
                    58u8
                } else {
                    1u8
                }
            }
        };
        let mut f = Vec::with_capacity(14 + 40 + l4.len());
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // dst MAC
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // src MAC
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let total = u16::try_from(20 + l4.len()).unwrap_or(u16::MAX);
                f.extend_from_slice(&[0x45, 0]);
                f.extend_from_slice(&total.to_be_bytes());
                f.extend_from_slice(&[0, 0, 0x40, 0]); // id, DF
                f.extend_from_slice(&[64, proto, 0, 0]); // ttl, proto, checksum
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
            }
            (s, d) => {
                let s = match s {
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                    IpAddr::V6(a) => a,
                };
                let d = match d {
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                    IpAddr::V6(a) => a,
                };
                f.extend_from_slice(&0x86DDu16.to_be_bytes());
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                let plen = u16::try_from(l4.len()).unwrap_or(u16::MAX);
                f.extend_from_slice(&plen.to_be_bytes());
                f.extend_from_slice(&[proto, 64]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
            }
        }
        f.extend_from_slice(&l4);
        if f.len() < 60 {
            f.resize(60, 0);
        }
        f
    }
}

/// Splits an Ethernet/IP frame from [`Frame::to_bytes`] into IP fragments
/// of its IP payload, one frame per `(offset, len)` piece in the order given
/// (offsets in bytes, multiples of 8 except where a test wants otherwise;
/// overlapping pieces allowed). The piece that reaches the payload's end is
/// the last fragment (no "more fragments"). IPv4 fragments carry `id` in
/// the header, IPv6 ones in a fragment header. `None` for a frame that is
/// not Ethernet + IPv4/IPv6 as [`Frame`] writes it, or a piece outside the
/// payload.
pub fn fragments(frame: &[u8], id: u32, pieces: &[(usize, usize)]) -> Option<Vec<Vec<u8>>> {
    let eth = frame.get(..14)?;
    let v6 = eth.get(12..14)? == [0x86, 0xDD];
    let ip_len = if v6 { 40 } else { 20 };
    let ip = frame.get(14..14 + ip_len)?;
    let payload_len = if v6 {
        usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]))
    } else {
        usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?])).checked_sub(20)?
    };
    let payload = frame.get(14 + ip_len..14 + ip_len + payload_len)?;
    let mut out = Vec::with_capacity(pieces.len());
    for &(offset, len) in pieces {
        let data = payload.get(offset..offset.checked_add(len)?)?;
        let more = offset + len < payload_len;
        let field = u16::try_from(offset / 8).ok()? << 3;
        let mut f = eth.to_vec();
        if v6 {
            let mut h = ip.to_vec();
            let next = *h.get(6)?;
            *h.get_mut(6)? = 44;
            h.get_mut(4..6)?
                .copy_from_slice(&u16::try_from(8 + len).ok()?.to_be_bytes());
            f.extend_from_slice(&h);
            f.extend_from_slice(&[next, 0]);
            f.extend_from_slice(&(field | u16::from(more)).to_be_bytes());
            f.extend_from_slice(&id.to_be_bytes());
        } else {
            let mut h = ip.to_vec();
            h.get_mut(2..4)?
                .copy_from_slice(&u16::try_from(20 + len).ok()?.to_be_bytes());
            h.get_mut(4..6)?
                .copy_from_slice(&u16::try_from(id & 0xFFFF).ok()?.to_be_bytes());
            let flags = if more { 0x2000 } else { 0 };
            h.get_mut(6..8)?
                .copy_from_slice(&(flags | field >> 3).to_be_bytes());
            f.extend_from_slice(&h);
        }
        f.extend_from_slice(data);
        if f.len() < 60 {
            f.resize(60, 0);
        }
        out.push(f);
    }
    Some(out)
}

/// Writes a classic little-endian, microsecond pcap stream.
pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header for `link_type` with a 65535-byte snap length.
    pub fn new(out: W, link_type: u32) -> io::Result<Self> {
        Self::with_snaplen(out, link_type, 65535)
    }

    /// Writes the file header with an explicit snap length; longer frames are cut.
    pub fn with_snaplen(mut out: W, link_type: u32, snaplen: u32) -> io::Result<Self> {
        out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&snaplen.to_le_bytes())?;
        out.write_all(&link_type.to_le_bytes())?;
        Ok(PcapWriter { out, snaplen })
    }

    /// Writes one record with timestamp `ts_us` (microseconds since the epoch).
    pub fn write(&mut self, ts_us: i64, data: &[u8]) -> io::Result<()> {
        let orig = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.write_record(ts_us, orig, data)
    }

    /// Writes one record whose original (wire) length was `orig_len`; `data`
    /// is what was captured (cut to the snap length).
    pub fn write_record(&mut self, ts_us: i64, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let cap = len.min(self.snaplen);
        let orig = orig_len.max(cap);
        let secs = ts_us.div_euclid(1_000_000);
        let micros = ts_us.rem_euclid(1_000_000);
        self.out.write_all(&(secs as u32).to_le_bytes())?;
        self.out.write_all(&(micros as u32).to_le_bytes())?;
        self.out.write_all(&cap.to_le_bytes())?;
        self.out.write_all(&orig.to_le_bytes())?;
        self.out.write_all(data.get(..cap as usize).unwrap_or(data))
    }

    /// Writes one frame built by [`Frame::to_bytes`].
    pub fn write_frame(&mut self, ts_us: i64, frame: &Frame) -> io::Result<()> {
        self.write(ts_us, &frame.to_bytes())
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Encodes a whole capture of `(timestamp_us, frame)` pairs into pcap bytes.
pub fn pcap_bytes(frames: &[(i64, Frame)]) -> Vec<u8> {
    let mut w = match PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET) {
        Ok(w) => w,
        Err(_) => return Vec::new(), // writing to a Vec cannot fail
    };
    for (ts, f) in frames {
        if w.write_frame(*ts, f).is_err() {
            break;
        }
    }
    w.finish().unwrap_or_default()
}
