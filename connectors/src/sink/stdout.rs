//! Alerts to standard output, for `tapstream … | jq` and for container
//! logs collected from stdout.

use std::io::{self, Write};

use super::{AlertSink, Pending, SinkError, DEFAULT_BUFFER_BYTES};
use crate::eve::{Alert, EveWriter};

/// Writes EVE lines to standard output.
///
/// Buffered: lines are collected in the sink's own buffer and written with
/// stdout locked once per chunk, so other threads' output cannot interleave
/// within a line. A closed pipe is reported as [`SinkError::Closed`]
/// (never a panic, unlike `println!`).
///
/// Dropping the sink writes what is still buffered, ignoring errors; call
/// [`AlertSink::flush`] to see them.
#[derive(Debug)]
pub struct StdoutSink {
    out: io::Stdout,
    eve: EveWriter,
    pending: Pending,
}

impl StdoutSink {
    /// A sink with the default buffer size ([`DEFAULT_BUFFER_BYTES`]).
    pub fn new(eve: EveWriter) -> Self {
        Self::with_buffer_size(eve, DEFAULT_BUFFER_BYTES)
    }

    /// A sink that writes its buffer out once it holds `bytes` bytes (at
    /// least 1; 1 writes every alert at once).
    pub fn with_buffer_size(eve: EveWriter, bytes: usize) -> Self {
        StdoutSink {
            out: io::stdout(),
            eve,
            pending: Pending::new(bytes),
        }
    }

    fn drain(&mut self) -> Result<(), SinkError> {
        let mut lock = self.out.lock();
        self.pending
            .drain_into(&mut lock)
            .map_err(|e| SinkError::from_write("stdout", e))
    }
}

impl AlertSink for StdoutSink {
    fn write(&mut self, alert: &Alert<'_>) -> Result<(), SinkError> {
        if self.pending.is_full() {
            self.drain()?;
        }
        self.eve.write(alert, self.pending.buf_mut());
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.drain()?;
        self.out
            .lock()
            .flush()
            .map_err(|e| SinkError::from_write("stdout", e))
    }
}

impl Drop for StdoutSink {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let _ = self.flush();
        }
    }
}
