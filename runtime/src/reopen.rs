//! Re-opening the EVE file for log rotation.
//!
//! Why: logrotate (and most rotation schemes) moves `eve.json` away and then
//! tells the writer, with SIGHUP, to start a new file at the old path, as
//! Suricata does. Without it tapstream would append to the moved file
//! forever. SIGHUP also reloads the model (see [`crate::signals`]); the two
//! are independent: a refused model does not stop a re-open, nor the
//! reverse.
//!
//! The request is a flag that SIGHUP (or a test) sets. The alert sink
//! thread owns the sink, so it is the one that clears the flag and re-opens:
//! between two alert batches, and at least every [`REOPEN_POLL`] while no
//! alerts come, so a rotation never waits for the next alert.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

/// Longest time the alert sink thread waits before it looks at a pending
/// request while no alerts come.
pub const REOPEN_POLL: Duration = Duration::from_millis(100);

/// A shared "re-open the alert output" request; clones share it.
#[derive(Clone, Debug, Default)]
pub struct ReopenRequest(Arc<AtomicBool>);

impl ReopenRequest {
    /// A request that nothing has made yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes SIGHUP set the request (SIGHUP then no longer ends the
    /// process).
    pub fn on_sighup(&self) -> Result<()> {
        signal_hook::flag::register(signal_hook::consts::SIGHUP, self.0.clone())
            .context("installing the SIGHUP handler for re-opening the EVE file")?;
        Ok(())
    }

    /// Asks for a re-open (as SIGHUP does). Requests made before the sink
    /// thread looks are served by one re-open.
    pub fn request(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// True when a re-open was asked for since the last call; clears it.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_taken_once() {
        let r = ReopenRequest::new();
        let shared = r.clone();
        assert!(!r.take());
        shared.request();
        shared.request();
        assert!(r.take(), "a clone's request is seen");
        assert!(!r.take(), "two requests before a take are one re-open");
    }
}
