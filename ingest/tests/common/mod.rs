//! Builders for capture files in every format the reader accepts, so tests
//! can describe a file (byte order, timestamp units, odd blocks) in a line.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Cursor, Read, Write};

use tapstream_ingest::capture::{CaptureError, CaptureReader};

/// A classic pcap file being built.
pub struct Pcap {
    pub be: bool,
    pub modified: bool,
    pub buf: Vec<u8>,
}

fn put32(buf: &mut Vec<u8>, v: u32, be: bool) {
    buf.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
}

fn put16(buf: &mut Vec<u8>, v: u16, be: bool) {
    buf.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
}

impl Pcap {
    /// File header; `nanos` picks the a1b23c4d magic, `modified` a1b2cd34.
    pub fn new(be: bool, nanos: bool, modified: bool, snaplen: u32, link: u32) -> Self {
        let magic = match (nanos, modified) {
            (true, _) => 0xa1b2_3c4d,
            (false, true) => 0xa1b2_cd34,
            (false, false) => 0xa1b2_c3d4,
        };
        let mut buf = Vec::new();
        put32(&mut buf, magic, be);
        put16(&mut buf, 2, be);
        put16(&mut buf, 4, be);
        put32(&mut buf, 0, be);
        put32(&mut buf, 0, be);
        put32(&mut buf, snaplen, be);
        put32(&mut buf, link, be);
        Pcap { be, modified, buf }
    }

    /// One record with explicit header fields (caplen may lie).
    pub fn raw(&mut self, secs: u32, frac: u32, caplen: u32, orig: u32, data: &[u8]) -> &mut Self {
        let be = self.be;
        put32(&mut self.buf, secs, be);
        put32(&mut self.buf, frac, be);
        put32(&mut self.buf, caplen, be);
        put32(&mut self.buf, orig, be);
        if self.modified {
            self.buf.extend_from_slice(&[0; 8]);
        }
        self.buf.extend_from_slice(data);
        self
    }

    /// One honest record.
    pub fn rec(&mut self, secs: u32, frac: u32, data: &[u8]) -> &mut Self {
        let n = data.len() as u32;
        self.raw(secs, frac, n, n, data)
    }
}

/// A pcapng file being built; byte order can change per section.
pub struct Ng {
    pub be: bool,
    pub buf: Vec<u8>,
}

impl Default for Ng {
    fn default() -> Self {
        Self::new()
    }
}

impl Ng {
    pub fn new() -> Self {
        Ng {
            be: false,
            buf: Vec::new(),
        }
    }

    /// Any block: type, body (padded to 4), both lengths.
    pub fn block(&mut self, btype: u32, body: &[u8]) -> &mut Self {
        let padded = body.len().div_ceil(4) * 4;
        let len = (12 + padded) as u32;
        let be = self.be;
        put32(&mut self.buf, btype, be);
        put32(&mut self.buf, len, be);
        self.buf.extend_from_slice(body);
        self.buf.resize(self.buf.len() + padded - body.len(), 0);
        put32(&mut self.buf, len, be);
        self
    }

    /// Section header in the given byte order.
    pub fn shb(&mut self, be: bool) -> &mut Self {
        self.be = be;
        let mut body = Vec::new();
        put32(&mut body, 0x1a2b_3c4d, be);
        put16(&mut body, 1, be);
        put16(&mut body, 0, be);
        body.extend_from_slice(&[0xff; 8]); // section length unknown
        self.block(0x0A0D_0D0A, &body)
    }

    /// Interface with optional `if_tsresol` and `if_tsoffset`.
    pub fn idb(
        &mut self,
        link: u16,
        snaplen: u32,
        tsresol: Option<u8>,
        tsoffset: Option<i64>,
    ) -> &mut Self {
        let be = self.be;
        let mut body = Vec::new();
        put16(&mut body, link, be);
        put16(&mut body, 0, be);
        put32(&mut body, snaplen, be);
        // An unrelated option first (if_name, 3 bytes + padding) to exercise the walk.
        put16(&mut body, 2, be);
        put16(&mut body, 3, be);
        body.extend_from_slice(b"et0\0");
        if let Some(r) = tsresol {
            put16(&mut body, 9, be);
            put16(&mut body, 1, be);
            body.extend_from_slice(&[r, 0, 0, 0]);
        }
        if let Some(o) = tsoffset {
            put16(&mut body, 14, be);
            put16(&mut body, 8, be);
            body.extend_from_slice(&if be { o.to_be_bytes() } else { o.to_le_bytes() });
        }
        put16(&mut body, 0, be);
        put16(&mut body, 0, be);
        self.block(1, &body)
    }

    /// Enhanced Packet Block with a 64-bit timestamp in interface units.
    pub fn epb(&mut self, iface: u32, ts: u64, orig: u32, data: &[u8]) -> &mut Self {
        let be = self.be;
        let mut body = Vec::new();
        put32(&mut body, iface, be);
        put32(&mut body, (ts >> 32) as u32, be);
        put32(&mut body, ts as u32, be);
        put32(&mut body, data.len() as u32, be);
        put32(&mut body, orig, be);
        body.extend_from_slice(data);
        body.resize(body.len().div_ceil(4) * 4, 0);
        // An option (opt_comment) after the data.
        put16(&mut body, 1, be);
        put16(&mut body, 2, be);
        body.extend_from_slice(b"hi\0\0");
        self.block(6, &body)
    }

    /// Simple Packet Block (interface 0, no timestamp).
    pub fn spb(&mut self, orig: u32, data: &[u8]) -> &mut Self {
        let be = self.be;
        let mut body = Vec::new();
        put32(&mut body, orig, be);
        body.extend_from_slice(data);
        self.block(3, &body)
    }

    /// Obsolete Packet Block (type 2, 16-bit interface id).
    pub fn pb(&mut self, iface: u16, ts: u64, orig: u32, data: &[u8]) -> &mut Self {
        let be = self.be;
        let mut body = Vec::new();
        put16(&mut body, iface, be);
        put16(&mut body, 0, be);
        put32(&mut body, (ts >> 32) as u32, be);
        put32(&mut body, ts as u32, be);
        put32(&mut body, data.len() as u32, be);
        put32(&mut body, orig, be);
        body.extend_from_slice(data);
        self.block(2, &body)
    }
}

/// A snoop file (big-endian) with `(secs, usecs, data)` records.
pub fn snoop(datalink: u32, records: &[(u32, u32, &[u8])]) -> Vec<u8> {
    let mut b = b"snoop\0\0\0".to_vec();
    put32(&mut b, 2, true);
    put32(&mut b, datalink, true);
    for (secs, usecs, data) in records {
        let rec_len = (24 + data.len()).div_ceil(4) * 4;
        put32(&mut b, data.len() as u32, true);
        put32(&mut b, data.len() as u32, true);
        put32(&mut b, rec_len as u32, true);
        put32(&mut b, 0, true);
        put32(&mut b, *secs, true);
        put32(&mut b, *usecs, true);
        b.extend_from_slice(data);
        b.resize(b.len() + rec_len - 24 - data.len(), 0);
    }
    b
}

/// Gzip-compresses `data` as one member.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("write to Vec");
    e.finish().expect("finish to Vec")
}

/// What the reader produced, owned, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Packet {
        ts_us: i64,
        link_type: u32,
        orig_len: u32,
        data: Vec<u8>,
    },
    /// The error's variant name (offsets compared separately where needed).
    Error(String),
}

pub fn err_name(e: &CaptureError) -> String {
    match e {
        CaptureError::NotACapture { .. } => "NotACapture".into(),
        CaptureError::Corrupt { .. } => "Corrupt".into(),
        CaptureError::TruncatedRecord { .. } => "TruncatedRecord".into(),
        CaptureError::Io(_) => "Io".into(),
        CaptureError::Open { .. } => "Open".into(),
        _ => "other".into(),
    }
}

/// Reads everything; stops at the first `Ok(None)` (errors are items).
/// Panics if the reader yields more than `limit` items (it must terminate).
pub fn read_all(mut r: CaptureReader, limit: usize) -> Vec<Item> {
    let mut out = Vec::new();
    loop {
        assert!(out.len() <= limit, "reader does not terminate");
        match r.next_packet() {
            Ok(Some(p)) => out.push(Item::Packet {
                ts_us: p.ts_us,
                link_type: p.link_type,
                orig_len: p.orig_len,
                data: p.data.to_vec(),
            }),
            Ok(None) => break,
            Err(e) => out.push(Item::Error(err_name(&e))),
        }
    }
    out
}

/// Opens in-memory bytes with the default buffer.
pub fn reader(bytes: &[u8]) -> Result<CaptureReader, CaptureError> {
    CaptureReader::from_reader(Box::new(Cursor::new(bytes.to_vec())))
}

/// A reader that returns at most `chunk` bytes per `read` call.
pub struct Chunked {
    pub data: Vec<u8>,
    pub pos: usize,
    pub chunk: usize,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self
            .chunk
            .max(1)
            .min(buf.len())
            .min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
