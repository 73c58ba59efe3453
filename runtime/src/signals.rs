//! The signals a long run answers: SIGTERM and SIGINT end it (cleanly: every
//! flow is ended, scored and written), SIGHUP reloads the model if it
//! changed (and, with an EVE file, re-opens it; see [`crate::reopen`]).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread;

use anyhow::{Context, Result};
use tapstream_inference::reload::ReloadTrigger;

/// A flag SIGTERM and SIGINT set, for sources that run until stopped; a
/// second signal while shutting down exits at once.
pub fn stop_signals() -> Result<Arc<AtomicBool>> {
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, term.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(sig, term.clone()).context("installing signal handlers")?;
    }
    Ok(term)
}

/// Asks `trigger` for a model reload on every SIGHUP (SIGHUP then no longer
/// ends the process) until the returned guard is dropped.
pub fn reload_on_sighup(triggers: Vec<ReloadTrigger>) -> Result<SighupGuard> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
        .context("installing the SIGHUP handler")?;
    let handle = signals.handle();
    thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                tracing::info!(message = "SIGHUP: reloading the model if it changed");
                for t in &triggers {
                    t.request();
                }
            }
        })
        .context("spawning the SIGHUP thread")?;
    Ok(SighupGuard(handle))
}

/// Keeps SIGHUP reloading the model while alive.
#[derive(Debug)]
pub struct SighupGuard(signal_hook::iterator::Handle);

impl Drop for SighupGuard {
    fn drop(&mut self) {
        self.0.close();
    }
}
