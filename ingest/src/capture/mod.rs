//! Capture files in, raw packets out: classic pcap, pcapng and Sun snoop,
//! gzip-compressed or not.
//!
//! [`CaptureReader`] detects the format from the file's magic bytes (never its
//! name), then yields one [`RawPacket`] per record, borrowing the bytes from a
//! large read buffer: no per-packet allocation, no copy unless a record
//! straddles the end of the buffer.
//!
//! Why our own reader rather than `pcap-file`, `pcap-parser` or libpcap: the
//! pipeline needs three things they do not give together. (1) Error
//! categories it can act on: "this is not a capture" (skip the file, say
//! so), "corrupt from offset N" (stop, keep what was read) and "the last
//! record is cut short" (count one truncated packet). (2) Streaming gzip with
//! a progress counter in compressed bytes. (3) Zero-copy records from one big
//! buffer, at tens of millions of records per second.
//!
//! Error contract of [`CaptureReader::next_packet`]: after it returns any
//! `Err`, every later call returns `Ok(None)`. It never panics, whatever the
//! input, and allocates only when a record outgrows the buffer (up to
//! [`MAX_RECORD_LEN`]) or a pcapng file describes an interface.
//!
//! Format details worth knowing:
//! - Timestamps become µs since the epoch; finer units are floored. pcapng
//!   honours `if_tsresol` (powers of 10 and of 2) and `if_tsoffset` per
//!   interface; byte order and interfaces reset at every section header.
//! - pcapng Simple Packet Blocks have no timestamp: they get the previous
//!   packet's (0 before any), so packet time never jumps backwards.
//! - A record whose captured length exceeds its original length gets
//!   `orig_len` raised to the captured length (see [`RawPacket::orig_len`]).
//! - pcap captured lengths up to max(snap length, 262144) are accepted, as
//!   libpcap does; pcap "modified" (Kuznetsov) files are read too.

mod buf;
mod gzip;
mod pcap;
mod pcapng;
mod snoop;

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use buf::{ChunkBuf, Source};

/// `link_type` of a packet whose link layer the capture does not describe
/// (a pcapng packet naming an interface that no IDB defined). Real link types
/// fit in 16 bits, so this never collides; decode skips such packets as
/// [`SkipReason::UnsupportedLinkType`](crate::skip::SkipReason::UnsupportedLinkType).
pub const LINKTYPE_UNKNOWN: u32 = u32::MAX;

/// Read buffer size of [`CaptureReader::open`] and [`CaptureReader::from_reader`].
pub const DEFAULT_BUFFER_SIZE: usize = 1 << 20;

/// Largest record (pcap caplen, snoop record, pcapng block) the reader accepts.
/// Anything larger is treated as corruption rather than allocated.
pub const MAX_RECORD_LEN: usize = 16 << 20;

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The file could not be opened.
    #[error("cannot open {}", path.display())]
    Open {
        /// The path given to [`CaptureReader::open`].
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// Reading failed for a reason other than the file's contents.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    /// The input is not a capture file we know (empty, too short for a file
    /// header, or an unknown magic number). Returned only by the constructors.
    #[error("not a capture file: {found}")]
    NotACapture {
        /// One line saying what was found instead.
        found: String,
    },
    /// The file is damaged from `offset` on: an impossible record or block
    /// length, a trailing block length that differs from the leading one, a
    /// file that ends inside a pcapng block that is not a packet, or a broken
    /// or cut gzip stream (there the gzip layer cannot tell whether a record
    /// was cut, so no packet is lost by count). The packets before it were
    /// valid, and all of them were returned, whatever the buffer size.
    #[error("corrupt capture at byte {offset}: {reason}")]
    Corrupt {
        /// Offset in the (decompressed) stream of the bad record or block;
        /// for a gzip error, the bytes decompressed before the damage.
        offset: u64,
        /// What was wrong, in one line.
        reason: String,
    },
    /// The file ends inside a packet record: the record at `offset` needs
    /// `needed` bytes and only `available` remain. Count it as one lost packet.
    #[error("file ends inside the packet record at byte {offset}: it needs {needed} bytes, {available} remain")]
    TruncatedRecord {
        /// Offset in the (decompressed) stream of the record.
        offset: u64,
        /// Bytes the record (header included) needs.
        needed: u64,
        /// Bytes left in the stream.
        available: u64,
    },
}

/// The container format of a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Container {
    /// Classic libpcap format.
    Pcap {
        /// Nanosecond timestamps (magic `a1b23c4d`) instead of microseconds.
        nanos: bool,
        /// Written big-endian.
        big_endian: bool,
        /// Kuznetsov's "modified" pcap (magic `a1b2cd34`, 24-byte record headers).
        modified: bool,
    },
    /// pcapng; byte order may change from section to section.
    PcapNg,
    /// Sun/Solaris snoop (RFC 1761).
    Snoop,
}

/// What [`CaptureReader::format`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureFormat {
    /// The record container.
    pub container: Container,
    /// The file was gzip-compressed (decompressed on the fly).
    pub gzip: bool,
}

impl fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.container {
            Container::Pcap {
                nanos,
                big_endian,
                modified,
            } => {
                f.write_str(if modified { "pcap (modified)" } else { "pcap" })?;
                f.write_str(if nanos { ", ns" } else { ", µs" })?;
                f.write_str(if big_endian {
                    ", big-endian"
                } else {
                    ", little-endian"
                })?;
            }
            Container::PcapNg => f.write_str("pcapng")?,
            Container::Snoop => f.write_str("snoop")?,
        }
        if self.gzip {
            f.write_str(", gzip")?;
        }
        Ok(())
    }
}

/// One captured packet, borrowed from the reader's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawPacket<'a> {
    /// Capture time, microseconds since the Unix epoch (nanoseconds floored).
    pub ts_us: i64,
    /// Link type (pcap `LINKTYPE_*` value), or [`LINKTYPE_UNKNOWN`].
    pub link_type: u32,
    /// Length of the packet on the wire. Never less than `data.len()`: a
    /// record claiming to have captured more than was sent gets its original
    /// length raised to the captured length (the bytes are real; the length
    /// field is the liar).
    pub orig_len: u32,
    /// The captured bytes (at most the snap length).
    pub data: &'a [u8],
}

/// Where a parser found a packet inside the buffer.
struct Found {
    start: usize,
    len: usize,
    ts_us: i64,
    link_type: u32,
    orig_len: u32,
}

enum State {
    Pcap(pcap::PcapState),
    PcapNg(pcapng::NgState),
    Snoop(snoop::SnoopState),
}

/// Streaming reader for pcap, pcapng and snoop files, plain or gzip.
///
/// ```no_run
/// # use tapstream_ingest::capture::CaptureReader;
/// let mut r = CaptureReader::open("trace.pcap.gz".as_ref())?;
/// while let Some(pkt) = r.next_packet()? {
///     println!("{} {} bytes", pkt.ts_us, pkt.data.len());
/// }
/// # Ok::<(), tapstream_ingest::capture::CaptureError>(())
/// ```
pub struct CaptureReader {
    buf: ChunkBuf,
    state: State,
    format: CaptureFormat,
    done: bool,
}

impl fmt::Debug for CaptureReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureReader")
            .field("format", &self.format)
            .field("offset", &self.buf.offset())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl CaptureReader {
    /// Opens a capture file, detecting its format from its first bytes.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let file = File::open(path).map_err(|source| CaptureError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_reader(Box::new(file))
    }

    /// Reads a capture from any byte stream (a file, a pipe, a socket).
    pub fn from_reader(r: Box<dyn Read + Send>) -> Result<Self, CaptureError> {
        Self::with_buffer_size(r, DEFAULT_BUFFER_SIZE)
    }

    /// Like [`CaptureReader::from_reader`] with a read buffer of `size` bytes
    /// (at least 16). The buffer still grows for a record larger than it.
    /// Small sizes exist for tests of records that straddle buffer refills.
    pub fn with_buffer_size(r: Box<dyn Read + Send>, size: usize) -> Result<Self, CaptureError> {
        let (src, gzip) = Source::detect(r)?;
        let mut buf = ChunkBuf::new(src, size);
        let mut magic = [0u8; 4];
        let n = match buf.ensure(4) {
            Ok(_) => {
                let n = buf.avail().min(4);
                magic
                    .get_mut(..n)
                    .unwrap_or_default()
                    .copy_from_slice(buf.peek().get(..n).unwrap_or_default());
                n
            }
            Err(CaptureError::Corrupt { reason, .. }) if gzip => {
                return Err(CaptureError::NotACapture {
                    found: format!("gzip magic but not a readable gzip stream ({reason})"),
                })
            }
            Err(e) => return Err(e),
        };
        let sniff = magic.get(..n).unwrap_or_default();
        let (state, container) = match sniff {
            [] if gzip => return Err(not_a_capture("an empty gzip stream")),
            [] => return Err(not_a_capture("an empty file")),
            [0x0a, 0x0d, 0x0d, 0x0a] => (
                State::PcapNg(pcapng::NgState::open(&mut buf)?),
                Container::PcapNg,
            ),
            [b's', b'n', b'o', b'o'] => (
                State::Snoop(snoop::SnoopState::open(&mut buf)?),
                Container::Snoop,
            ),
            _ => match pcap::PcapState::open(&mut buf)? {
                Some((s, c)) => (State::Pcap(s), c),
                None => return Err(not_a_capture(&describe_magic(sniff))),
            },
        };
        Ok(CaptureReader {
            buf,
            state,
            format: CaptureFormat { container, gzip },
            done: false,
        })
    }

    /// The detected format.
    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    /// File bytes consumed so far (compressed bytes for gzip), for progress
    /// reporting against the file size. Runs ahead of the packets returned by
    /// up to one read buffer.
    pub fn bytes_read(&self) -> u64 {
        self.buf.bytes_read()
    }

    /// The next packet, `Ok(None)` at the end of the capture. After an `Err`
    /// every later call returns `Ok(None)`; see [`CaptureError`] for what each
    /// error means for the packet count.
    pub fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, CaptureError> {
        if self.done {
            return Ok(None);
        }
        let found = match &mut self.state {
            State::Pcap(s) => s.next(&mut self.buf),
            State::PcapNg(s) => s.next(&mut self.buf),
            State::Snoop(s) => s.next(&mut self.buf),
        };
        match found {
            Ok(Some(f)) => Ok(Some(RawPacket {
                ts_us: f.ts_us,
                link_type: f.link_type,
                orig_len: f.orig_len,
                data: self.buf.slice(f.start, f.len),
            })),
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }
}

fn not_a_capture(found: &str) -> CaptureError {
    CaptureError::NotACapture {
        found: found.to_string(),
    }
}

/// "unknown magic 3c 21 44 4f ("<!DO")" for a one-line error message.
fn describe_magic(b: &[u8]) -> String {
    let hex: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    let text: String = b
        .iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '.'
            }
        })
        .collect();
    if b.len() < 4 {
        format!("a {}-byte file ({})", b.len(), hex.join(" "))
    } else {
        format!("unknown magic {} ({text:?})", hex.join(" "))
    }
}

/// Reads a `u16` at `off` in the given byte order (0 if out of range; callers
/// have already checked the length).
#[inline]
fn rd16(b: &[u8], off: usize, be: bool) -> u16 {
    match b
        .get(off..off + 2)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
    {
        Some(a) if be => u16::from_be_bytes(a),
        Some(a) => u16::from_le_bytes(a),
        None => 0,
    }
}

/// Reads a `u32` at `off` in the given byte order (0 if out of range).
#[inline]
fn rd32(b: &[u8], off: usize, be: bool) -> u32 {
    match b
        .get(off..off + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
    {
        Some(a) if be => u32::from_be_bytes(a),
        Some(a) => u32::from_le_bytes(a),
        None => 0,
    }
}

/// Seconds plus a sub-second fraction in `1/per_sec` units → µs since the epoch.
#[inline]
fn ts_from_parts(secs: u32, frac: u32, nanos: bool) -> i64 {
    let frac_us = if nanos { frac / 1000 } else { frac };
    i64::from(secs) * 1_000_000 + i64::from(frac_us)
}

/// The error for a stream that ends `available` bytes into a record of `needed` bytes.
fn truncated(buf: &ChunkBuf, needed: usize) -> CaptureError {
    CaptureError::TruncatedRecord {
        offset: buf.offset(),
        needed: needed as u64,
        available: buf.avail() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_descriptions_are_one_line() {
        assert_eq!(
            describe_magic(b"<!DO"),
            "unknown magic 3c 21 44 4f (\"<!DO\")"
        );
        assert_eq!(describe_magic(&[1, 2]), "a 2-byte file (01 02)");
        assert!(!describe_magic(&[b'\n', 0, 0, 0]).contains('\n'));
    }
}
