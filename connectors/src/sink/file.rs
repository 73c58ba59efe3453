//! Alerts appended to a file, the way Suricata writes `eve.json`, so that
//! Filebeat, Fluent Bit or Vector can tail it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use super::{AlertSink, Pending, SinkError, DEFAULT_BUFFER_BYTES};
use crate::eve::{Alert, EveWriter};

/// Appends EVE lines to a file, creating it if needed.
///
/// Opened in append mode, so several writers (or a restart) never
/// overwrite each other's lines. For log rotation, move the file away and
/// call [`AlertSink::reopen`] (e.g. on `SIGHUP`): the sink finishes
/// writing to the old file and continues in a new one at the same path.
///
/// Dropping the sink writes what is still buffered, ignoring errors; call
/// [`AlertSink::flush`] to see them.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    target: String,
    file: File,
    eve: EveWriter,
    pending: Pending,
}

impl FileSink {
    /// Opens (or creates) `path` for appending, with the default buffer
    /// size ([`DEFAULT_BUFFER_BYTES`]).
    pub fn open(path: impl Into<PathBuf>, eve: EveWriter) -> Result<Self, SinkError> {
        Self::with_buffer_size(path, eve, DEFAULT_BUFFER_BYTES)
    }

    /// Opens (or creates) `path` for appending; the buffer is written out
    /// once it holds `bytes` bytes (at least 1).
    pub fn with_buffer_size(
        path: impl Into<PathBuf>,
        eve: EveWriter,
        bytes: usize,
    ) -> Result<Self, SinkError> {
        let path = path.into();
        let file = open_append(&path)?;
        Ok(FileSink {
            target: path.display().to_string(),
            path,
            file,
            eve,
            pending: Pending::new(bytes),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn drain(&mut self) -> Result<(), SinkError> {
        self.pending
            .drain_into(&mut self.file)
            .map_err(|e| SinkError::from_write(&self.target, e))
    }
}

fn open_append(path: &Path) -> Result<File, SinkError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| SinkError::Open {
            path: path.to_owned(),
            source,
        })
}

impl AlertSink for FileSink {
    fn write(&mut self, alert: &Alert<'_>) -> Result<(), SinkError> {
        if self.pending.is_full() {
            self.drain()?;
        }
        self.eve.write(alert, self.pending.buf_mut());
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        // `File` has no user-space buffer: draining is the whole flush.
        self.drain()
    }

    /// Re-opens the path, for log rotation.
    ///
    /// Buffered lines are first written to the old file. Then the path is
    /// opened again (created if the rotation moved it away). If that fails,
    /// the sink keeps writing to the old file and returns the error. If
    /// writing to the old file failed, the lines still buffered go to the
    /// new one: none is lost or written twice, though a line the old file
    /// took only part of ends in the new file.
    fn reopen(&mut self) -> Result<(), SinkError> {
        let _ = self.pending.drain_into(&mut self.file);
        self.file = open_append(&self.path)?;
        Ok(())
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        let _ = self.drain();
    }
}
