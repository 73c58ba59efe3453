//! Where alerts go: the [`AlertSink`] trait and its stdout and file
//! implementations (the Kafka sink is in the `tapstream-kafka` crate).
//!
//! Why a trait this narrow: the alert stage of the pipeline only needs
//! "take this alert" and "make everything so far durable" (and, for log
//! rotation, "re-open your file"), so stdout, a rotating file and Kafka plug
//! in behind the same calls, and counting what was written or dropped stays
//! with the caller.
//!
//! Both sinks here write whole EVE lines: each `write(2)` they make ends at
//! a line boundary, so a reader that tails the file sees complete lines once
//! a write has finished. (A reader may still catch a large write half done,
//! as with any file: tail EVE the way log shippers do, taking a line only
//! once its newline is there.)
//!
//! The stdout and file sinks format alerts as EVE lines into their own
//! buffer and write the buffer in large chunks. A write error leaves the unwritten bytes buffered
//! (nothing is duplicated or lost by a partial write, and the next call
//! retries them); while the buffer is full and cannot be written, new alerts
//! are refused with the error, so the buffer stays bounded.
//!
//! [`SinkError::Closed`] means the reader went away (a closed pipe, as when
//! `tapstream … | head` has read enough): the caller should stop producing
//! output, not treat it as a failure worth a panic or a retry loop.

mod file;
mod stdout;

pub use file::FileSink;
pub use stdout::StdoutSink;

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::eve::Alert;
use crate::kafka::KafkaConfigError;

/// Default size at which a sink writes its buffer out: 64 KiB, roughly a
/// hundred alert lines.
pub const DEFAULT_BUFFER_BYTES: usize = 64 * 1024;

/// A destination for alerts.
pub trait AlertSink: Send {
    /// Accepts one alert. It may sit in a buffer until a later `write` or
    /// [`flush`](AlertSink::flush).
    ///
    /// On an error the alert was not accepted (count it as dropped);
    /// [`SinkError::is_closed`] tells the caller to stop.
    fn write(&mut self, alert: &Alert<'_>) -> Result<(), SinkError>;

    /// Writes out every accepted alert (to the OS for stdout and files;
    /// this does not `fsync`. Acknowledged by the brokers for Kafka). Call
    /// it at the end of each batch so alerts do not wait for the buffer to
    /// fill.
    fn flush(&mut self) -> Result<(), SinkError>;

    /// How often the caller should call [`flush`](AlertSink::flush) at
    /// most. Zero (the default): after every batch, for sinks whose flush
    /// is a write to the OS. A sink whose flush waits for a remote
    /// acknowledgement asks for a longer interval, so waiting does not set
    /// the pace of the pipeline.
    fn flush_every(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Re-opens the output, for log rotation (`SIGHUP` after logrotate
    /// moved the file): [`FileSink`] writes what it buffered to the old
    /// file and opens its path again. The default does nothing: stdout and
    /// Kafka have no file to re-open.
    ///
    /// On an error the sink keeps writing where it did; no accepted alert
    /// is lost.
    fn reopen(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// An error of a client library behind a sink (librdkafka's, for Kafka).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a sink could not take or write alerts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The reader closed the output (`EPIPE`). Stop writing; this is how a
    /// downstream `head` or a closed socket says it has had enough.
    #[error("alert output {target} was closed by its reader")]
    Closed {
        /// The output, e.g. `stdout` or a file path.
        target: String,
    },
    /// An alert file could not be opened.
    #[error("cannot open alert file {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing to the output failed (disk full, I/O error, …). Unwritten
    /// alerts stay buffered and are retried by the next call.
    #[error("cannot write alerts to {target}")]
    Write {
        /// The output, e.g. `stdout` or a file path.
        target: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The Kafka client settings were refused (before anything started).
    #[error(transparent)]
    KafkaConfig(#[from] KafkaConfigError),
    /// The alerts topic's name is not a valid Kafka topic name.
    #[error("kafka alerts topic {topic:?} {reason}")]
    KafkaTopic {
        /// The name as configured.
        topic: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The Kafka producer could not be created, or refused a message
    /// (e.g. larger than `message.max.bytes`).
    #[error("{target}: kafka error")]
    Kafka {
        /// The output, e.g. `kafka topic "alerts"`.
        target: String,
        /// librdkafka's error.
        #[source]
        source: BoxError,
    },
    /// Messages failed to reach Kafka for good (after librdkafka's
    /// retries). Do not commit source offsets past them: replaying from the
    /// last commit produces them again.
    #[error("{target}: {failed} alert(s) could not be delivered")]
    Delivery {
        /// The output.
        target: String,
        /// How many failed or were refused by `write` (since the failures
        /// were last cleared).
        failed: u64,
        /// The first failure.
        #[source]
        source: BoxError,
    },
    /// `flush` gave up waiting for the brokers' acknowledgements; the
    /// messages are still being retried, so flushing again may succeed.
    #[error("{target}: {pending} alert(s) still unacknowledged after {waited:?}")]
    FlushTimeout {
        /// The output.
        target: String,
        /// How long `flush` waited.
        waited: Duration,
        /// Messages (and requests) still outstanding.
        pending: u64,
    },
}

impl SinkError {
    /// True when the reader went away and the caller should stop writing.
    pub fn is_closed(&self) -> bool {
        matches!(self, SinkError::Closed { .. })
    }

    /// Classifies a write error: a broken pipe is [`SinkError::Closed`].
    pub(crate) fn from_write(target: &str, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::BrokenPipe {
            SinkError::Closed {
                target: target.to_owned(),
            }
        } else {
            SinkError::Write {
                target: target.to_owned(),
                source,
            }
        }
    }
}

/// A sink's output buffer: formatted EVE lines not yet written.
#[derive(Debug)]
pub(crate) struct Pending {
    buf: Vec<u8>,
    flush_at: usize,
}

impl Pending {
    /// A buffer that asks to be written once it holds `flush_at` bytes.
    pub(crate) fn new(flush_at: usize) -> Self {
        let flush_at = flush_at.max(1);
        Pending {
            // One line past the threshold fits without a reallocation.
            buf: Vec::with_capacity(flush_at.saturating_add(1024).min(1 << 24)),
            flush_at,
        }
    }

    /// True when the buffer should be written before more is added.
    pub(crate) fn is_full(&self) -> bool {
        self.buf.len() >= self.flush_at
    }

    /// True when nothing is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The buffer to append lines to.
    pub(crate) fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Writes as much of the buffer to `w` as `w` takes. What was written
    /// is removed even on error, so a retry neither duplicates nor loses
    /// bytes. `Interrupted` is retried; a writer that takes nothing is an
    /// error (`WriteZero`).
    pub(crate) fn drain_into<W: Write + ?Sized>(&mut self, w: &mut W) -> io::Result<()> {
        let mut written = 0;
        let result = loop {
            let rest = self.buf.get(written..).unwrap_or_default();
            if rest.is_empty() {
                break Ok(());
            }
            match w.write(rest) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                // A writer claiming more than it was given is clamped.
                Ok(n) => written += n.min(rest.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.buf.drain(..written);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `chunk` bytes per call and fails with
    /// `fail` once it has taken `limit` bytes.
    struct Flaky {
        got: Vec<u8>,
        chunk: usize,
        limit: usize,
        fail: io::ErrorKind,
        interrupt_next: bool,
    }

    impl Write for Flaky {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.interrupt_next {
                self.interrupt_next = false;
                return Err(io::ErrorKind::Interrupted.into());
            }
            self.interrupt_next = true;
            let room = self.limit.saturating_sub(self.got.len());
            if room == 0 {
                return Err(self.fail.into());
            }
            let n = buf.len().min(self.chunk).min(room);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_neither_duplicate_nor_lose() {
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let mut pending = Pending::new(16);
        pending.buf_mut().extend_from_slice(&data);
        let mut w = Flaky {
            got: Vec::new(),
            chunk: 333,
            limit: 4_000,
            fail: io::ErrorKind::StorageFull,
            interrupt_next: true,
        };
        let err = pending.drain_into(&mut w).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(w.got.len() + pending.buf.len(), data.len());
        w.limit = usize::MAX;
        pending.drain_into(&mut w).unwrap();
        assert!(pending.is_empty());
        assert_eq!(w.got, data);
    }

    #[test]
    fn broken_pipe_is_closed() {
        let mut pending = Pending::new(16);
        pending.buf_mut().extend_from_slice(b"line\n");
        let mut w = Flaky {
            got: Vec::new(),
            chunk: 1,
            limit: 0,
            fail: io::ErrorKind::BrokenPipe,
            interrupt_next: false,
        };
        let err = pending.drain_into(&mut w).unwrap_err();
        let err = SinkError::from_write("stdout", err);
        assert!(err.is_closed(), "{err}");
        let other = SinkError::from_write("x", io::ErrorKind::StorageFull.into());
        assert!(!other.is_closed());
    }

    struct Liar;

    impl Write for Liar {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len() * 2 + 7)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Zero;

    impl Write for Zero {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Ok(0)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn misbehaving_writers_do_not_panic() {
        let mut pending = Pending::new(0);
        pending.buf_mut().extend_from_slice(b"abc\n");
        pending.drain_into(&mut Liar).unwrap();
        assert!(pending.is_empty());
        pending.buf_mut().extend_from_slice(b"abc\n");
        let err = pending.drain_into(&mut Zero).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
        assert_eq!(pending.buf, b"abc\n");
    }
}
