//! Hot reload of the model while a run goes on.
//!
//! A sensor runs for weeks; replacing its model must not mean a restart that
//! loses flows. On a request ([`Reloader::request`]; the runtime makes one
//! on SIGHUP) and, with a watched file, when the model file changes, a
//! background thread loads the model again through the same checks as at
//! start-up (contract, SHA-256 pin, graph checks) and warms it up with one
//! inference call. Only a model that passed is offered to the consumer,
//! which swaps it in between two batches, so every flow is scored by exactly
//! one model and none is lost. A model that fails leaves the current one
//! running; the reason is logged and counted.
//!
//! SIGHUP is also the log-rotation signal (it re-opens the EVE file), so a
//! request finds out first whether the model on disk differs from the one
//! running (SHA-256 of the file and of its external data): the same model
//! again is not rebuilt, which with TensorRT can take minutes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::model::{load_and_warm, LoadedModel, ModelSpec};

/// How often a watched model file's modification time is checked.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Loads replacement models in the background; see the module docs.
pub struct Reloader {
    trigger: ReloadTrigger,
    ready: Arc<Mutex<Option<LoadedModel>>>,
    outcomes: Arc<Mutex<ReloadCounts>>,
}

/// Asks a [`Reloader`] for a reload; clones share it (a signal handler
/// holds one).
#[derive(Clone, Debug)]
pub struct ReloadTrigger(Sender<()>);

impl ReloadTrigger {
    /// Asks for a reload. A reload already pending covers this one too.
    pub fn request(&self) {
        let _ = self.0.try_send(());
    }
}

/// Reload attempts so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReloadCounts {
    /// Models that passed every check and were offered for the swap.
    pub loaded: u64,
    /// Attempts refused (the current model kept running).
    pub refused: u64,
    /// Requests that found the running model's files unchanged (nothing
    /// loaded).
    pub unchanged: u64,
}

impl Reloader {
    /// Starts the loader thread for the model of `spec`; each model loaded
    /// also brings `workers` sessions for the flow workers (see
    /// [`crate::scoring`]). With `watch`, a change of the file's
    /// modification time (checked every second) is a request too.
    pub fn start(spec: ModelSpec, watch: bool, workers: usize) -> std::io::Result<Reloader> {
        let (trigger, requests) = bounded::<()>(1);
        let ready = Arc::new(Mutex::new(None));
        let outcomes = Arc::new(Mutex::new(ReloadCounts::default()));
        let watch = watch.then(|| spec.path.clone());
        {
            let ready = ready.clone();
            let outcomes = outcomes.clone();
            thread::Builder::new()
                .name("model-reload".into())
                .spawn(move || {
                    let shared = Shared {
                        ready: &ready,
                        outcomes: &outcomes,
                    };
                    loader(&spec, workers, requests, watch, &shared)
                })?;
        }
        Ok(Reloader {
            trigger: ReloadTrigger(trigger),
            ready,
            outcomes,
        })
    }

    /// Asks for a reload (as SIGHUP does).
    pub fn request(&self) {
        self.trigger.request();
    }

    /// A handle that asks for reloads, for a signal handler.
    pub fn trigger(&self) -> ReloadTrigger {
        self.trigger.clone()
    }

    /// The newest model that passed, if one is waiting to be swapped in.
    pub fn take(&self) -> Option<LoadedModel> {
        self.ready.lock().ok().and_then(|mut r| r.take())
    }

    /// Reload attempts so far.
    pub fn counts(&self) -> ReloadCounts {
        self.outcomes.lock().map(|c| *c).unwrap_or_default()
    }
}

/// What the loader thread shares with the [`Reloader`].
struct Shared<'a> {
    ready: &'a Mutex<Option<LoadedModel>>,
    outcomes: &'a Mutex<ReloadCounts>,
}

impl Shared<'_> {
    fn count(&self, f: impl FnOnce(&mut ReloadCounts)) {
        if let Ok(mut c) = self.outcomes.lock() {
            f(&mut c);
        }
    }
}

/// The loader thread: waits for requests (or file changes) and loads.
fn loader(
    spec: &ModelSpec,
    workers: usize,
    requests: Receiver<()>,
    watch: Option<PathBuf>,
    shared: &Shared<'_>,
) {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen: Option<SystemTime> = watch.as_deref().and_then(modified);
    // The running model was loaded from these files just before this start.
    let mut running = fingerprint(&spec.path);
    loop {
        // Without a watched file there is nothing to poll: wait for a request.
        let next = match watch {
            Some(_) => requests.recv_timeout(WATCH_EVERY),
            None => requests.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let reload = match next {
            Ok(()) => true,
            Err(RecvTimeoutError::Timeout) => match watch.as_deref().map(modified) {
                Some(now) if now.is_some() && now != seen => {
                    seen = now;
                    tracing::info!(message = "the model file changed: reloading the model");
                    true
                }
                _ => false,
            },
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if reload {
            reload_once(spec, workers, &mut running, shared);
        }
    }
}

/// One reload request: nothing when the files are the running model's,
/// else the model loaded, warmed and offered, or refused.
fn reload_once(
    spec: &ModelSpec,
    workers: usize,
    running: &mut Option<String>,
    shared: &Shared<'_>,
) {
    let on_disk = fingerprint(&spec.path);
    if on_disk.is_some() && on_disk == *running {
        tracing::info!(
            message = "the model files are unchanged; the running model stays",
            path = %spec.path.display(),
        );
        metrics::counter!("tapstream_model_reloads_total", "outcome" => "unchanged").increment(1);
        shared.count(|c| c.unchanged += 1);
        return;
    }
    match load_and_warm(spec, workers) {
        Ok(m) => {
            *running = on_disk;
            let c = m.engine.contract();
            tracing::info!(
                message = "new model ready; it takes over at the next batch",
                model = %c.name,
                version = %c.version,
                sha256 = %c.sha256,
            );
            if let Ok(mut r) = shared.ready.lock() {
                *r = Some(m);
            }
            // Counted once it can be taken.
            metrics::counter!("tapstream_model_reloads_total", "outcome" => "loaded").increment(1);
            shared.count(|c| c.loaded += 1);
        }
        Err(e) => {
            tracing::error!(
                message = "model reload refused; the current model keeps running",
                error = %crate::error_chain(&e),
            );
            metrics::counter!("tapstream_model_reloads_total", "outcome" => "refused").increment(1);
            shared.count(|c| c.refused += 1);
        }
    }
}

/// The model on disk as one digest: SHA-256 over the model file and every
/// external-data file it names (from its own directory). `None` when a file
/// cannot be read or the digest cannot be taken; the reload then runs and
/// reports the real error.
fn fingerprint(path: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).ok()?;
    let mut h = Sha256::new();
    h.update(&bytes);
    let mut external = crate::inspect::inspect(&bytes)
        .map(|f| f.external_data)
        .unwrap_or_default();
    external.sort();
    external.dedup();
    let dir = path.parent().unwrap_or(Path::new(""));
    for location in external {
        h.update(location.as_bytes());
        h.update([0]);
        let mut f = std::fs::File::open(dir.join(&location)).ok()?;
        std::io::copy(&mut f, &mut h).ok()?;
    }
    Some(format!("{:x}", h.finalize()))
}
