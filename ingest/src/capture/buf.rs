//! The read buffer under every format parser: big chunks in, records parsed
//! in place.
//!
//! [`ChunkBuf`] keeps one contiguous window `[pos, end)` of unread stream
//! bytes. Parsers ask for `n` contiguous bytes with [`ChunkBuf::ensure`]; the
//! fast path is one comparison. Only when a record straddles the end of the
//! window does the buffer move the unread tail to the front (at most one
//! record, so the copy is small) and read again; only a record larger than the
//! whole buffer makes it grow. A record's bytes stay where they are until the
//! next `ensure`, which is what lets the reader hand out borrowed slices.

use std::io::{self, Chain, Cursor, Read};

use super::gzip::GzReader;
use super::CaptureError;

/// Counts the bytes read from the underlying file (compressed bytes for gzip).
pub(crate) struct CountingReader {
    inner: Box<dyn Read + Send>,
    count: u64,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count = self.count.saturating_add(n as u64);
        Ok(n)
    }
}

/// The first bytes (read to sniff gzip) followed by the rest of the file.
type Sniffed = Chain<Cursor<Vec<u8>>, CountingReader>;

/// Where decompressed capture bytes come from.
pub(crate) enum Source {
    /// An uncompressed file.
    Plain(Sniffed),
    /// A gzip file (several members are read as one stream).
    Gzip(Box<GzReader<Sniffed>>),
}

impl Source {
    /// Opens `inner`, detecting gzip by its magic bytes `1f 8b`.
    /// Returns the source and whether it is gzip.
    pub(crate) fn detect(inner: Box<dyn Read + Send>) -> io::Result<(Source, bool)> {
        let mut counting = CountingReader { inner, count: 0 };
        let mut magic = [0u8; 2];
        let mut n = 0;
        while n < magic.len() {
            match counting.read(magic.get_mut(n..).unwrap_or_default()) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let prefix = magic.get(..n).unwrap_or_default().to_vec();
        let gzip = prefix == [0x1f, 0x8b];
        let chained = Cursor::new(prefix).chain(counting);
        if gzip {
            Ok((Source::Gzip(Box::new(GzReader::new(chained))), true))
        } else {
            Ok((Source::Plain(chained), false))
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(r) => r.read(buf),
            Source::Gzip(r) => r.read(buf),
        }
    }

    fn counted(&self) -> u64 {
        match self {
            Source::Plain(r) => r.get_ref().1.count,
            Source::Gzip(r) => r.get_ref().get_ref().1.count,
        }
    }

    fn is_gzip(&self) -> bool {
        matches!(self, Source::Gzip(_))
    }
}

/// A refillable window over the (decompressed) capture stream.
pub(crate) struct ChunkBuf {
    src: Source,
    /// Always fully initialised; `buf.len()` is the capacity in use.
    buf: Vec<u8>,
    /// Next unread byte.
    pos: usize,
    /// End of valid bytes. Invariant: `pos <= end <= buf.len()`.
    end: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    eof: bool,
}

impl ChunkBuf {
    pub(crate) fn new(src: Source, capacity: usize) -> Self {
        ChunkBuf {
            src,
            buf: vec![0; capacity.max(16)],
            pos: 0,
            end: 0,
            base: 0,
            eof: false,
        }
    }

    /// Unread bytes in the window.
    #[inline]
    pub(crate) fn avail(&self) -> usize {
        self.end - self.pos
    }

    /// Stream offset (decompressed) of the next unread byte.
    #[inline]
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Index in the buffer of the next unread byte (for [`ChunkBuf::slice`]).
    #[inline]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The unread bytes.
    #[inline]
    pub(crate) fn peek(&self) -> &[u8] {
        self.buf.get(self.pos..self.end).unwrap_or_default()
    }

    /// The first `N` unread bytes, if that many are in the window.
    #[inline]
    pub(crate) fn head<const N: usize>(&self) -> Option<&[u8; N]> {
        self.peek().get(..N)?.try_into().ok()
    }

    /// Bytes `[start, start + len)` of the buffer (positions from [`ChunkBuf::pos`]);
    /// empty if out of range. Valid until the next [`ChunkBuf::ensure`].
    #[inline]
    pub(crate) fn slice(&self, start: usize, len: usize) -> &[u8] {
        self.buf
            .get(start..start.saturating_add(len))
            .unwrap_or_default()
    }

    /// Marks `n` bytes as read (clamped to what is in the window).
    #[inline]
    pub(crate) fn consume(&mut self, n: usize) {
        self.pos += n.min(self.avail());
    }

    /// Compressed (or plain) file bytes consumed so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.src.counted()
    }

    /// Makes at least `n` contiguous unread bytes available. `Ok(false)` means
    /// the stream ended first (whatever was left is still in the window).
    #[inline]
    pub(crate) fn ensure(&mut self, n: usize) -> Result<bool, CaptureError> {
        if self.end - self.pos >= n {
            return Ok(true);
        }
        self.fill(n)
    }

    #[cold]
    fn fill(&mut self, n: usize) -> Result<bool, CaptureError> {
        if self.eof {
            return Ok(false);
        }
        if self.pos + n > self.buf.len() {
            // Move the unread tail (less than one record) to the front.
            self.buf.copy_within(self.pos..self.end, 0);
            self.base += self.pos as u64;
            self.end -= self.pos;
            self.pos = 0;
            if n > self.buf.len() {
                // Only records bigger than the buffer grow it; callers bound `n`.
                self.buf.resize(n, 0);
            }
        }
        while self.end - self.pos < n {
            let dst = self.buf.get_mut(self.end..).unwrap_or_default();
            match self.src.read(dst) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(k) => self.end += k.min(self.buf.len() - self.end),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_error(e)),
            }
        }
        Ok(true)
    }

    /// Decompression failures are corrupt input; anything else is an I/O error.
    fn read_error(&mut self, e: io::Error) -> CaptureError {
        self.eof = true;
        let corrupt = self.src.is_gzip()
            && matches!(
                e.kind(),
                io::ErrorKind::InvalidInput
                    | io::ErrorKind::InvalidData
                    | io::ErrorKind::UnexpectedEof
            );
        if corrupt {
            CaptureError::Corrupt {
                offset: self.base + self.end as u64,
                reason: format!("gzip stream: {e}"),
            }
        } else {
            CaptureError::Io(e)
        }
    }
}
