//! Hot reload of the model while a run goes on.
//!
//! A sensor runs for weeks; replacing its model must not mean a restart that
//! loses flows. On SIGHUP (and, with `model.watch`, when the model file
//! changes), a background thread loads the model again through the same
//! checks as at start-up (contract, SHA-256 pin, graph checks) and warms it
//! up with one inference call. Only a model that passed is offered to the
//! consumer, which swaps it in between two batches, so every flow is scored
//! by exactly one model and none is lost. A model that fails leaves the
//! current one running; the reason is logged and counted.
//!
//! SIGHUP is also the log-rotation signal (it re-opens the EVE file), so a
//! request finds out first whether the model on disk differs from the one
//! running (SHA-256 of the file and of its external data): the same model
//! again is not rebuilt, which with TensorRT can take minutes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use tapstream_inference::Prediction;

use crate::config::Config;
use crate::model::{self, LoadedModel};

/// How often a watched model file's modification time is checked.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Loads replacement models in the background; see the module docs.
pub struct Reloader {
    trigger: Sender<()>,
    ready: Arc<Mutex<Option<LoadedModel>>>,
    outcomes: Arc<Mutex<ReloadCounts>>,
    signals: Option<signal_hook::iterator::Handle>,
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
    /// Starts the loader thread for the model `cfg` and `cli` name. With
    /// `on_sighup`, SIGHUP triggers a reload (SIGHUP then no longer ends the
    /// process); with `cfg.model.watch`, so does a change of the file's
    /// modification time.
    pub fn start(cfg: &Config, cli: Option<&Path>, on_sighup: bool) -> Result<Reloader> {
        Self::start_with_workers(cfg, cli, on_sighup, 0)
    }

    /// As [`start`](Self::start), and each model loaded also brings
    /// `workers` sessions for the flow workers (`[inference] placement =
    /// "workers"`; see [`model::worker_sessions_needed`]).
    pub fn start_with_workers(
        cfg: &Config,
        cli: Option<&Path>,
        on_sighup: bool,
        workers: usize,
    ) -> Result<Reloader> {
        let (trigger, requests) = bounded::<()>(1);
        let ready = Arc::new(Mutex::new(None));
        let outcomes = Arc::new(Mutex::new(ReloadCounts::default()));
        let path = model::model_path(cfg, cli)?;
        let watch = cfg.model.watch.then(|| path.clone());
        let cfg = cfg.clone();
        let cli = cli.map(Path::to_path_buf);
        {
            let ready = ready.clone();
            let outcomes = outcomes.clone();
            thread::Builder::new()
                .name("model-reload".into())
                .spawn(move || {
                    loader(
                        &cfg,
                        cli.as_deref(),
                        workers,
                        &path,
                        requests,
                        watch,
                        &ready,
                        &outcomes,
                    )
                })
                .context("spawning the model reload thread")?;
        }
        let signals = if on_sighup {
            let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
                .context("installing the SIGHUP handler")?;
            let handle = signals.handle();
            let trigger = trigger.clone();
            thread::Builder::new()
                .name("sighup".into())
                .spawn(move || {
                    for _ in signals.forever() {
                        tracing::info!(message = "SIGHUP: reloading the model if it changed");
                        // A reload already pending covers this one too.
                        let _ = trigger.try_send(());
                    }
                })
                .context("spawning the SIGHUP thread")?;
            Some(handle)
        } else {
            None
        };
        Ok(Reloader {
            trigger,
            ready,
            outcomes,
            signals,
        })
    }

    /// Asks for a reload (as SIGHUP does).
    pub fn request(&self) {
        let _ = self.trigger.try_send(());
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

impl Drop for Reloader {
    fn drop(&mut self) {
        if let Some(h) = &self.signals {
            h.close();
        }
    }
}

// Each argument is one thing the thread owns or shares; a struct would only
// rename them.
#[allow(clippy::too_many_arguments)]
fn loader(
    cfg: &Config,
    cli: Option<&Path>,
    workers: usize,
    path: &Path,
    requests: Receiver<()>,
    watch: Option<PathBuf>,
    ready: &Mutex<Option<LoadedModel>>,
    outcomes: &Mutex<ReloadCounts>,
) {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen: Option<SystemTime> = watch.as_deref().and_then(modified);
    // The running model was loaded from these files just before this start.
    let mut running = fingerprint(path);
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
        if !reload {
            continue;
        }
        let on_disk = fingerprint(path);
        if on_disk.is_some() && on_disk == running {
            tracing::info!(
                message = "the model files are unchanged; the running model stays",
                path = %path.display(),
            );
            metrics::counter!("tapstream_model_reloads_total", "outcome" => "unchanged")
                .increment(1);
            if let Ok(mut c) = outcomes.lock() {
                c.unchanged += 1;
            }
            continue;
        }
        match load_and_warm(cfg, cli, workers) {
            Ok(m) => {
                running = on_disk;
                tracing::info!(
                    message = "new model ready; it takes over at the next batch",
                    model = %m.info.name,
                    version = %m.info.version,
                    sha256 = %m.info.sha256,
                );
                if let Ok(mut r) = ready.lock() {
                    *r = Some(m);
                }
                // Counted once it can be taken.
                metrics::counter!("tapstream_model_reloads_total", "outcome" => "loaded")
                    .increment(1);
                if let Ok(mut c) = outcomes.lock() {
                    c.loaded += 1;
                }
            }
            Err(e) => {
                tracing::error!(
                    message = "model reload refused; the current model keeps running",
                    error = %format!("{e:#}"),
                );
                metrics::counter!("tapstream_model_reloads_total", "outcome" => "refused")
                    .increment(1);
                if let Ok(mut c) = outcomes.lock() {
                    c.refused += 1;
                }
            }
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
    let mut external = tapstream_inference::inspect::inspect(&bytes)
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

/// Loads the model with every start-up check (and `workers` more sessions
/// of it), then scores one batch of zero rows on each session, so a model
/// that loads but cannot run is refused too.
fn load_and_warm(cfg: &Config, cli: Option<&Path>, workers: usize) -> Result<LoadedModel> {
    let mut m = model::load(cfg, cli)?;
    model::add_worker_sessions(cfg, &mut m, workers)?;
    warm(m.engine.as_mut())?;
    for e in &mut m.workers {
        warm(e.as_mut())?;
    }
    Ok(m)
}

fn warm(engine: &mut dyn tapstream_inference::Engine) -> Result<()> {
    let width = engine.contract().num_features();
    let rows = 16;
    let input = vec![0.0f32; rows * width];
    let mut out: Vec<Prediction> = Vec::with_capacity(rows);
    engine
        .infer(&input, rows, &mut out)
        .context("warming up the new model")?;
    anyhow::ensure!(
        out.len() == rows && out.iter().all(|p| p.score.is_finite()),
        "warming up the new model: it gave {} predictions for {rows} rows, or a non-finite score",
        out.len()
    );
    Ok(())
}
