//! `tapstream learn`: fit an anomaly model on a site's own benign traffic
//! (captures, or a live interface for a while) and write it as an ONNX
//! model that `run`, `eval` and `model report` take like any other.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use tapstream_inference::ModelSpec;
use tapstream_runtime::config::ContextMode;
use tapstream_runtime::{live, privileges, signals, Config, Consumer, Progress};
use tapstream_tools::learn::{self, Flows, Learned, Options, Verified};

use crate::common::config_or_default;

#[derive(Args, Debug)]
pub struct LearnArgs {
    /// Benign captures to learn from: files, or directories searched
    /// recursively (.pcap, .pcapng, .cap, optionally .gz). Repeatable.
    #[arg(
        long,
        value_name = "FILE|DIR",
        num_args = 1..,
        required_unless_present = "interface",
        conflicts_with = "interface"
    )]
    pcap: Vec<PathBuf>,
    /// Learn from live traffic on this interface (captured as [capture]
    /// says; privileges dropped as [privileges] says), for --for.
    #[arg(long, value_name = "IF", requires = "duration")]
    interface: Option<String>,
    /// How long to capture with --interface, e.g. `30m`, `24h` (SIGINT or
    /// SIGTERM ends it early and learns from what came).
    #[arg(long = "for", id = "duration", value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// The model file to write.
    #[arg(long, value_name = "site.onnx")]
    out: PathBuf,
    /// False-positive rate the threshold is set at, on held-out benign flows.
    #[arg(long, default_value_t = 0.001)]
    fpr: f64,
    /// Share of each input's flows (its latest) held out to set the threshold.
    #[arg(long, default_value_t = 0.2)]
    holdout: f64,
    /// Flows of each input fitted on at most (about 0.5 KiB each): past it,
    /// a hash of the flow id samples them, the same sample on every run.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1000..))]
    max_flows: Option<u64>,
    /// Model name in alerts.
    #[arg(long, default_value = "site-anomaly")]
    name: String,
    /// Model version in alerts.
    #[arg(long, default_value = "1")]
    version: String,
    /// TOML configuration file (flow, context and ONNX Runtime settings).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Flow worker threads (overrides pipeline.workers; 0 = auto).
    #[arg(long)]
    workers: Option<usize>,
    /// Also write what was learned and measured as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// No summary on stderr.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: LearnArgs) -> Result<ExitCode> {
    let mut cfg = config_or_default(args.config.as_deref())?;
    if let Some(w) = args.workers {
        cfg.pipeline.workers = w;
    }
    // The model reads context features: the context stage always runs.
    cfg.context.enabled = ContextMode::On;
    cfg.validate()?;
    let opts = Options {
        fpr: args.fpr,
        holdout: args.holdout,
        name: args.name.clone(),
        version: args.version.clone(),
    };
    let started = Instant::now();
    let mut flows = Flows::new()?;
    if let Some(n) = args.max_flows {
        flows = flows.at_most(usize::try_from(n).unwrap_or(usize::MAX));
    }
    match (&args.interface, args.duration) {
        (Some(iface), Some(d)) => read_interface(&cfg, iface, d, &mut flows)?,
        _ => read_captures(&cfg, &args.pcap, args.quiet, &mut flows)?,
    }
    let read_s = started.elapsed().as_secs_f64();
    let learned = learn::learn(&flows, &opts)?;
    // Written beside the destination and checked there, then renamed: a
    // model that fails its check never takes the place of a good one.
    let staged = crate::common::staged_path(&args.out);
    learned.write(&staged)?;
    let spec = ModelSpec {
        path: staged.clone(),
        onnx: cfg.inference.onnx_config(None),
        threshold: None,
    };
    let verified = match learn::verify(&learned, &spec) {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e.into());
        }
    };
    std::fs::rename(&staged, &args.out)
        .with_context(|| format!("renaming {} to {}", staged.display(), args.out.display()))?;
    if !args.quiet {
        eprint!("{}", summary(&learned, &verified, &args.out, read_s));
    }
    if let Some(p) = &args.report {
        let json = serde_json::json!({
            "out": args.out,
            "read_seconds": read_s,
            "learned": learned,
            "verified": verified,
        });
        std::fs::write(p, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Every capture given (directories searched), through the pipeline.
fn read_captures(cfg: &Config, given: &[PathBuf], quiet: bool, flows: &mut Flows) -> Result<()> {
    let mut files = Vec::new();
    for p in given {
        if p.is_dir() {
            let found = tapstream_tools::eval::labels::captures_under(p)?;
            if found.is_empty() {
                bail!(
                    "{} holds no capture (.pcap, .pcapng, .cap, optionally .gz)",
                    p.display()
                );
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    for f in &files {
        let (batches, read_error) = tapstream_tools::eval::extract(cfg, f)
            .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        if let Some(e) = read_error {
            eprintln!(
                "tapstream: warning: {}: reading stopped early ({e}); learning from the flows \
                 before it",
                f.display()
            );
        }
        flows.add(&f.display().to_string(), &batches);
        if !quiet {
            eprintln!(
                "  read {} ({} flows in all so far)",
                f.display(),
                flows.len()
            );
        }
    }
    Ok(())
}

/// Live traffic on `iface` for `d` (or until SIGINT/SIGTERM).
fn read_interface(cfg: &Config, iface: &str, d: Duration, flows: &mut Flows) -> Result<()> {
    let captures = live::open_captures(cfg, Some(iface))?;
    privileges::drop_privileges(&cfg.privileges)?;
    let term = signals::stop_signals()?;
    let timer = {
        let term = term.clone();
        std::thread::spawn(move || {
            let until = Instant::now() + d;
            while !term.load(Ordering::Relaxed) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
            }
            term.store(true, Ordering::Relaxed);
        })
    };
    let (tx, rx) = crossbeam_channel::unbounded();
    let sources = live::sources(captures, &term);
    let report = tapstream_runtime::run_packets(
        sources,
        cfg,
        Consumer::Collect(tx),
        Arc::new(Progress::default()),
    );
    term.store(true, Ordering::Relaxed);
    let _ = timer.join();
    report?;
    let batches: Vec<_> = rx.try_iter().collect();
    flows.add(iface, &batches);
    Ok(())
}

fn summary(l: &Learned, v: &Verified, out: &Path, read_s: f64) -> String {
    let held = l.threshold.held_out;
    let ctx = tapstream_kernels::context::NUM_CONTEXT;
    format!(
        "tapstream learn: {} {} -> {}\n\
         \x20 flows         {} from {} input(s): fitted on {}, held out {} (each input's latest)\n\
         \x20 features      {} ({} CIC, {} context), signed log, standardised\n\
         \x20 model         probabilistic PCA, {} components\n\
         \x20 threshold     error >= {:.4} ({} of the held-out errors, for FPR {})\n\
         \x20 held out      {} of {} flagged through ONNX Runtime (FPR {:.4}); largest score \
         difference from the f64 reference {:.2e}\n\
         \x20 time          {:.1} s reading, {:.2} s fitting\n",
        l.name,
        l.version,
        out.display(),
        l.fit_flows + held,
        l.inputs.len(),
        l.fit_flows,
        held,
        l.features,
        l.features.saturating_sub(ctx),
        ctx,
        l.components,
        l.threshold.error,
        l.threshold.method,
        l.threshold.fpr,
        v.held_out_flagged,
        held,
        v.held_out_fpr,
        v.max_score_difference,
        read_s,
        l.fit_seconds,
    )
}

/// How many flows to score a learning detector holds while it fits, at
/// most (about 1 KiB each); at the limit the run waits for the fit.
pub const HOLD_MAX: usize = 65_536;
/// Flows a learning detector fits on at most, unless its section says
/// (about 0.5 KiB each; `learn` fits a million in under 20 s on two cores).
pub const MAX_FLOWS: usize = 1_000_000;

/// A run's learning detector (`[[detector]] learn_for`): gathers the
/// learning period's flows as model rows, fits as `tapstream learn` does,
/// checks the model through ONNX Runtime and loads it.
pub struct RunLearner {
    flows: Flows,
    opts: Options,
    onnx: tapstream_inference::OnnxConfig,
    threshold: Option<f32>,
    save: Option<PathBuf>,
}

impl RunLearner {
    /// A learner for `[[detector]]` section `d`.
    pub fn new(cfg: &Config, d: &tapstream_runtime::config::DetectorSection) -> Result<Self> {
        Ok(RunLearner {
            flows: Flows::new()?.at_most(d.max_flows.unwrap_or(MAX_FLOWS)),
            opts: Options {
                fpr: d.fpr.unwrap_or(0.001),
                name: d.name.clone(),
                version: "1".into(),
                ..Options::default()
            },
            onnx: cfg.inference.onnx_config(None),
            threshold: d.threshold,
            save: d.save.clone(),
        })
    }

    /// Where the model is written: `save`, staged beside it, or a file of
    /// this process in the temporary directory (removed once loaded).
    fn staged(&self) -> PathBuf {
        match &self.save {
            Some(p) => crate::common::staged_path(p),
            None => std::env::temp_dir().join(format!(
                "tapstream-{}-{}.onnx",
                std::process::id(),
                self.opts.name
            )),
        }
    }
}

impl tapstream_runtime::Learner for RunLearner {
    fn add(
        &mut self,
        b: &tapstream_kernels::FlowBatch,
        keep: &dyn Fn(&tapstream_ingest::FlowMeta) -> bool,
    ) {
        self.flows.gather(b, keep);
    }

    fn flows(&self) -> u64 {
        self.flows.gathered() as u64
    }

    fn fit(mut self: Box<Self>) -> Result<tapstream_inference::LoadedModel> {
        self.flows.seal("learning period");
        let learned = learn::learn(&self.flows, &self.opts)?;
        let staged = self.staged();
        learned.write(&staged)?;
        let spec = ModelSpec {
            path: staged.clone(),
            onnx: self.onnx.clone(),
            threshold: self.threshold,
        };
        // One load: the model checked is the model that scores.
        let checked = tapstream_inference::model::load(&spec)
            .map_err(anyhow::Error::from)
            .and_then(|mut m| Ok((learn::verify_loaded(&learned, &mut m)?, m)));
        let (verified, model) = match checked {
            Ok(ok) => ok,
            Err(e) => {
                let _ = std::fs::remove_file(&staged);
                return Err(e);
            }
        };
        match &self.save {
            Some(out) => std::fs::rename(&staged, out)
                .with_context(|| format!("renaming {} to {}", staged.display(), out.display()))?,
            None => {
                let _ = std::fs::remove_file(&staged);
            }
        }
        tracing::info!(
            message = "model learned",
            detector = %self.opts.name,
            fitted_on = learned.fit_flows,
            held_out = learned.threshold.held_out,
            components = learned.components,
            threshold = learned.threshold.error,
            held_out_fpr = verified.held_out_fpr,
            fit_seconds = learned.fit_seconds,
            saved = ?self.save,
        );
        Ok(model)
    }
}
