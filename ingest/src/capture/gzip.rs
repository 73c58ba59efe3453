//! Streaming gzip (RFC 1952) that hands out every byte decompressed before a
//! corruption, then the error.
//!
//! Why not `flate2::read::MultiGzDecoder`: its `read` discards what it
//! decompressed in a call that then meets corrupt data and returns only the
//! error. A capture damaged at byte N therefore lost up to one whole read
//! buffer of good packets before N; with the reader's 1 MiB buffer a small
//! damaged file was "not a readable gzip stream" and gave no packet at all,
//! and how much was lost depended on the buffer size (found by the
//! `capture_reader` fuzz target, which reads every input through two buffer
//! sizes). Here flate2's raw-deflate [`Decompress`] is driven directly, a
//! few compressed bytes at a time into an output buffer with room for all
//! they can expand to: a step that meets the damage has already written
//! every byte before it where it is kept, so those are handed out first and
//! the error after them. The stream up to the damage is the same whatever
//! the caller's buffer.
//!
//! Like `MultiGzDecoder`, members are read one after another as one stream,
//! and bytes after a member that do not start another one are an error. The
//! trailer's CRC-32 and length are checked; the optional header CRC (FHCRC)
//! is skipped, not checked. Errors are `InvalidData` (damage) or
//! `UnexpectedEof` (the stream is cut); errors of the underlying reader are
//! passed on as they are.

use std::io::{self, Read};

use flate2::{Crc, Decompress, FlushDecompress, Status};

/// Compressed bytes read from the underlying stream at a time.
const INPUT_BUFFER: usize = 64 * 1024;

/// Compressed bytes given to one decompression step.
const STEP_INPUT: usize = 512;

/// Most bytes one step can write: deflate expands a byte to at most 1032
/// (a 258-byte match coded in two bits), the decompressor may hold up to 8
/// input bytes from earlier steps in its bit buffer, and a match cut short
/// by its window adds at most 258.
const STEP_OUTPUT: usize = (STEP_INPUT + 8) * 1032 + 258;

/// Decompressed bytes buffered for reads smaller than [`STEP_OUTPUT`]
/// (allocated on the first such read).
const OUTPUT_BUFFER: usize = 1024 * 1024;
const _: () = assert!(STEP_OUTPUT <= OUTPUT_BUFFER);

/// Header flags (RFC 1952 section 2.3.1).
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const RESERVED: u8 = 0xE0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before a member header; `first` is the stream's first member (a
    /// clean end of the stream is only possible before a later one).
    Header { first: bool },
    /// Inside a member's deflate data.
    Body,
    /// After a member's deflate data, before its 8-byte trailer.
    Trailer,
    /// At the end of the stream, or after an error.
    Done,
}

/// A gzip decompressor over `R` (see the module docs).
pub(crate) struct GzReader<R> {
    inner: R,
    input: Box<[u8]>,
    /// Unread compressed bytes are `input[pos..end]`.
    pos: usize,
    end: usize,
    inner_eof: bool,
    /// For callers whose buffer is smaller than [`STEP_OUTPUT`]: decompressed
    /// bytes not yet handed out are `output[out_pos..out_end]`.
    output: Box<[u8]>,
    out_pos: usize,
    out_end: usize,
    inflate: Decompress,
    crc: Crc,
    state: State,
    /// The error met after the bytes in `output`.
    pending: Option<io::Error>,
}

fn damaged(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn cut(inside: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the gzip stream ends inside {inside}"),
    )
}

impl<R: Read> GzReader<R> {
    /// A reader of the gzip stream `inner`.
    pub(crate) fn new(inner: R) -> Self {
        GzReader {
            inner,
            input: vec![0; INPUT_BUFFER].into_boxed_slice(),
            pos: 0,
            end: 0,
            inner_eof: false,
            output: Box::default(),
            out_pos: 0,
            out_end: 0,
            inflate: Decompress::new(false),
            crc: Crc::new(),
            state: State::Header { first: true },
            pending: None,
        }
    }

    /// The underlying reader.
    pub(crate) fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Reads more compressed bytes after the unread ones (moved to the
    /// front). `Ok(false)`: the stream has ended, or the buffer is full of
    /// unread bytes.
    fn more_input(&mut self) -> io::Result<bool> {
        if self.inner_eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.input.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        let Some(dst) = self.input.get_mut(self.end..).filter(|d| !d.is_empty()) else {
            return Ok(false);
        };
        loop {
            match self.inner.read(dst) {
                Ok(0) => {
                    self.inner_eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n.min(dst.len());
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next compressed byte; `None` at the end of the stream.
    fn byte(&mut self) -> io::Result<Option<u8>> {
        if self.pos == self.end && !self.more_input()? {
            return Ok(None);
        }
        let b = self.input.get(self.pos).copied();
        self.pos += 1;
        Ok(b)
    }

    /// The next compressed byte, which must be there (inside `what`).
    fn need(&mut self, what: &str) -> io::Result<u8> {
        self.byte()?.ok_or_else(|| cut(what))
    }

    /// Reads a member header. `Ok(false)`: the stream ended cleanly where a
    /// later member could have begun.
    fn header(&mut self, first: bool) -> io::Result<bool> {
        let id1 = match self.byte()? {
            Some(b) => b,
            None if first => return Err(cut("the gzip header")),
            None => return Ok(false),
        };
        let id2 = self.need("a gzip header")?;
        if [id1, id2] != [0x1f, 0x8b] {
            return Err(damaged(if first {
                "not a gzip header"
            } else {
                "bytes after a gzip member that are not another member"
            }));
        }
        let method = self.need("a gzip header")?;
        if method != 8 {
            return Err(damaged(format!(
                "gzip compression method {method}, not deflate (8)"
            )));
        }
        let flags = self.need("a gzip header")?;
        if flags & RESERVED != 0 {
            return Err(damaged(format!("reserved gzip header flags {flags:#04x}")));
        }
        // Modification time (4 bytes), extra flags, operating system.
        for _ in 0..6 {
            self.need("a gzip header")?;
        }
        if flags & FEXTRA != 0 {
            let len =
                u16::from_le_bytes([self.need("a gzip header")?, self.need("a gzip header")?]);
            for _ in 0..len {
                self.need("a gzip header's extra field")?;
            }
        }
        for (flag, what) in [
            (FNAME, "a gzip header's file name"),
            (FCOMMENT, "a gzip header's comment"),
        ] {
            if flags & flag != 0 {
                while self.need(what)? != 0 {}
            }
        }
        if flags & FHCRC != 0 {
            self.need("a gzip header")?;
            self.need("a gzip header")?;
        }
        Ok(true)
    }

    /// Checks a member's trailer: CRC-32 and length (mod 2^32) of its data.
    fn trailer(&mut self) -> io::Result<()> {
        let mut t = [0u8; 8];
        for b in &mut t {
            *b = self.need("a gzip trailer")?;
        }
        let [c0, c1, c2, c3, s0, s1, s2, s3] = t;
        let crc = u32::from_le_bytes([c0, c1, c2, c3]);
        let len = u32::from_le_bytes([s0, s1, s2, s3]);
        if crc != self.crc.sum() || len != self.crc.amount() {
            return Err(damaged(format!(
                "gzip member check failed: CRC-32 {crc:08x} and length {len} recorded, \
                 {:08x} and {} found",
                self.crc.sum(),
                self.crc.amount()
            )));
        }
        Ok(())
    }

    /// One decompression step into `out`, which has room for
    /// [`STEP_OUTPUT`] bytes: the bytes written, and whether the stream can
    /// go on (the bytes written before an error are good).
    fn inflate_step(&mut self, out: &mut [u8]) -> (usize, io::Result<()>) {
        let stop = self.end.min(self.pos + STEP_INPUT);
        let input = self.input.get(self.pos..stop).unwrap_or_default();
        let had_input = !input.is_empty();
        let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
        let status = self.inflate.decompress(input, out, FlushDecompress::None);
        let consumed = (self.inflate.total_in() - in_before) as usize;
        let produced = ((self.inflate.total_out() - out_before) as usize).min(out.len());
        self.crc.update(out.get(..produced).unwrap_or_default());
        self.pos = (self.pos + consumed).min(self.end);
        let result = match status {
            Ok(Status::StreamEnd) => {
                self.state = State::Trailer;
                Ok(())
            }
            Ok(_) if produced > 0 || consumed > 0 => Ok(()),
            Ok(_) if had_input => Err(damaged("a deflate stream that makes no progress")),
            Ok(_) => match self.more_input() {
                Ok(true) => Ok(()),
                Ok(false) => Err(cut("compressed data")),
                Err(e) => Err(e),
            },
            Err(e) => Err(damaged(format!("corrupt deflate stream ({e})"))),
        };
        (produced, result)
    }

    /// Decompresses into `out` (at least [`STEP_OUTPUT`] bytes) until it is
    /// nearly full, the stream ends, or (once something was written) the
    /// buffered input runs out, so a pipe's data is handed on without
    /// waiting for more. Returns the bytes written, which are good even
    /// when an error follows.
    fn fill(&mut self, out: &mut [u8]) -> (usize, io::Result<()>) {
        let mut n = 0;
        let result = loop {
            if n > 0 && self.pos == self.end {
                break Ok(());
            }
            let step = match self.state {
                State::Done => break Ok(()),
                State::Header { first } => self.header(first).map(|member| {
                    if member {
                        self.inflate.reset(false);
                        self.crc.reset();
                        self.state = State::Body;
                    } else {
                        self.state = State::Done;
                    }
                }),
                State::Body => {
                    let Some(room) = out.get_mut(n..).filter(|r| r.len() >= STEP_OUTPUT) else {
                        break Ok(());
                    };
                    if self.pos == self.end {
                        if let Err(e) = self.more_input() {
                            break Err(e);
                        }
                    }
                    let (k, r) = self.inflate_step(room);
                    n += k;
                    r
                }
                State::Trailer => self.trailer().map(|()| {
                    self.state = State::Header { first: false };
                }),
            };
            if let Err(e) = step {
                break Err(e);
            }
        };
        (n, result)
    }
}

impl<R: Read> Read for GzReader<R> {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        if dst.is_empty() {
            return Ok(0);
        }
        if self.out_pos == self.out_end {
            if let Some(e) = self.pending.take() {
                return Err(e);
            }
            let direct = dst.len() >= STEP_OUTPUT;
            let mut buf = std::mem::take(&mut self.output);
            let (n, result) = if direct {
                self.fill(dst)
            } else {
                if buf.is_empty() {
                    buf = vec![0; OUTPUT_BUFFER].into_boxed_slice();
                }
                self.fill(&mut buf)
            };
            self.output = buf;
            if let Err(e) = result {
                self.state = State::Done;
                if n == 0 {
                    return Err(e);
                }
                // Hand out what came before the damage first.
                self.pending = Some(e);
            }
            if direct {
                return Ok(n);
            }
            self.out_pos = 0;
            self.out_end = n;
        }
        let ready = self
            .output
            .get(self.out_pos..self.out_end)
            .unwrap_or_default();
        let n = ready.len().min(dst.len());
        if let (Some(d), Some(s)) = (dst.get_mut(..n), ready.get(..n)) {
            d.copy_from_slice(s);
        }
        self.out_pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read_in(bytes: &[u8], step: usize) -> (Vec<u8>, Option<io::Error>) {
        let mut r = GzReader::new(bytes);
        let mut out = Vec::new();
        let mut buf = vec![0; step];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => {
                    assert_eq!(r.read(&mut buf).unwrap(), 0, "nothing after an error");
                    return (out, Some(e));
                }
            }
        }
    }

    fn data() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn members_and_header_fields() {
        let d = data();
        let mut two = gzip(&d[..1000]);
        two.extend(gzip(&d[1000..]));
        for step in [1, 7, 4096, 1 << 20] {
            let (out, e) = read_in(&two, step);
            assert!(e.is_none(), "{e:?}");
            assert!(out == d, "step {step}");
        }
        // A member with every optional header field.
        let mut g = flate2::GzBuilder::new()
            .filename("trace.pcap")
            .comment("made here")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), flate2::Compression::fast());
        g.write_all(b"hello").unwrap();
        let (out, e) = read_in(&g.finish().unwrap(), 3);
        assert_eq!(
            (out.as_slice(), e.map(|e| e.kind())),
            (b"hello".as_slice(), None)
        );
    }

    #[test]
    fn damage_comes_after_the_data_before_it() {
        let d = data();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&d).unwrap();
        // A sync flush ends on a byte boundary; 0xFF there is a block of the
        // reserved type 3.
        e.flush().unwrap();
        let mut bad = e.get_ref().clone();
        bad.extend([0xFF; 8]);
        for step in [1, 100, 65536, 1 << 22] {
            let (out, e) = read_in(&bad, step);
            assert!(out == d, "step {step}: {} of {} bytes", out.len(), d.len());
            assert_eq!(e.map(|e| e.kind()), Some(io::ErrorKind::InvalidData));
        }
    }

    #[test]
    fn cuts_checksums_and_trailing_bytes_are_errors() {
        let d = data();
        let gz = gzip(&d);
        for cut in [3, 12, gz.len() / 2, gz.len() - 4] {
            let (out, e) = read_in(&gz[..cut], 4096);
            assert!(out.len() <= d.len() && out == d[..out.len()]);
            assert_eq!(
                e.map(|e| e.kind()),
                Some(io::ErrorKind::UnexpectedEof),
                "cut {cut}"
            );
        }
        let mut wrong_crc = gz.clone();
        let n = wrong_crc.len();
        wrong_crc[n - 8] ^= 1;
        let (out, e) = read_in(&wrong_crc, 4096);
        assert!(out == d);
        assert_eq!(e.map(|e| e.kind()), Some(io::ErrorKind::InvalidData));
        let mut trailing = gz.clone();
        trailing.extend(b"junk");
        let (out, e) = read_in(&trailing, 4096);
        assert!(out == d);
        assert_eq!(e.map(|e| e.kind()), Some(io::ErrorKind::InvalidData));
        for header in [&[0x1f, 0x8b, 7, 0][..], &[0x1f, 0x8b, 8, 0x80]] {
            let mut h = header.to_vec();
            h.extend(&gz[4..]);
            let (out, e) = read_in(&h, 4096);
            assert!(out.is_empty());
            assert_eq!(e.map(|e| e.kind()), Some(io::ErrorKind::InvalidData));
        }
    }
}
