//! What the commands that read packets share: their common flags, loading
//! the configuration with the flags applied, the progress bar, and the
//! summary and exit code at the end; and where a command stages a file it
//! writes.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tapstream_runtime::config::Device;
use tapstream_runtime::{summary, Config, Progress, RunReport};

#[derive(Args, Debug)]
pub struct Common {
    /// Capture file (pcap or pcapng, optionally gzip-compressed).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present_any = ["kafka", "interface"],
        conflicts_with_all = ["kafka", "interface"]
    )]
    pub pcap: Option<PathBuf>,
    /// `run` only: capture live on this interface (without a value:
    /// capture.interface) until SIGTERM or SIGINT, as configured in
    /// [capture]; privileges are dropped as [privileges] says once it is
    /// open.
    #[arg(long, value_name = "IF", num_args = 0..=1, conflicts_with = "kafka")]
    pub interface: Option<Option<String>>,
    /// `run` only: read packets from Kafka as configured in [source.kafka]
    /// and [kafka], as a member of the consumer group, until SIGTERM or
    /// SIGINT (or source.kafka.exit_after_idle).
    #[arg(long)]
    pub kafka: bool,
    /// TOML configuration file (see `tapstream config`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Flow worker threads (overrides pipeline.workers; 0 = auto).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Decoder threads (overrides pipeline.decoders; 0 = auto).
    #[arg(long)]
    pub decoders: Option<usize>,
    /// No progress bar and no summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Also write the run summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    /// Where flow features are computed (overrides gpu.device).
    #[arg(long, value_enum)]
    pub device: Option<Device>,
}

/// The configuration file, or the defaults without one.
pub fn config_or_default(path: Option<&Path>) -> Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    })
}

/// The configuration with the command line's overrides, validated.
pub fn load_config(common: &Common) -> Result<Config> {
    let mut cfg = config_or_default(common.config.as_deref())?;
    if let Some(w) = common.workers {
        cfg.pipeline.workers = w;
    }
    if let Some(d) = common.decoders {
        cfg.pipeline.decoders = d;
    }
    if let Some(d) = common.device {
        cfg.gpu.device = d;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// The capture of a command that reads one (`--kafka` is for `run` only).
pub fn pcap_of(common: &Common) -> Result<PathBuf> {
    common.pcap.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "this command reads a capture: give --pcap FILE (--kafka and --interface are for `run`)"
        )
    })
}

/// Runs `run` with a progress bar on stderr when it is a terminal and the
/// input is a file of more than 8 MiB.
pub fn with_progress(
    common: &Common,
    run: impl FnOnce(Arc<Progress>) -> Result<RunReport>,
) -> Result<RunReport> {
    let progress = Arc::new(Progress::default());
    let show = !common.quiet && std::io::stderr().is_terminal();
    let total = common
        .pcap
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    let done = Arc::new(AtomicBool::new(false));
    let bar_thread = (show && total > 8 << 20).then(|| {
        let progress = progress.clone();
        let done = done.clone();
        thread::spawn(move || {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {msg} ({eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            while !done.load(Ordering::Relaxed) {
                bar.set_position(progress.bytes.load(Ordering::Relaxed));
                bar.set_message(format!(
                    "{} packets",
                    progress.packets.load(Ordering::Relaxed)
                ));
                thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        })
    });
    let result = run(progress);
    done.store(true, Ordering::Relaxed);
    if let Some(h) = bar_thread {
        let _ = h.join();
    }
    result
}

/// Exit status of a run whose capture holds only link types tapstream does
/// not decode: nothing in it can be analysed.
pub const EXIT_UNUSABLE_INPUT: u8 = 3;

/// Prints (and optionally saves) the summary and picks the exit code.
pub fn finish(report: &RunReport, common: &Common) -> Result<ExitCode> {
    if !common.quiet {
        eprint!("{}", summary::render(report));
    }
    // Said also under --quiet: a capture that gave nothing to analyse is
    // not a quiet success.
    let unusable = summary::unusable(report);
    if let Some(u) = &unusable {
        let level = if u.link_type { "error" } else { "warning" };
        eprintln!("tapstream: {level}: {}", u.message);
    }
    if let Some(p) = &common.summary_json {
        let text = serde_json::to_string_pretty(&summary::to_json(report))?;
        std::fs::write(p, text + "\n").with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(match &report.consumer.sink_error {
        Some(e) if !report.consumer.sink_closed => {
            eprintln!("tapstream: error: alert output failed: {e}");
            ExitCode::FAILURE
        }
        _ if unusable.is_some_and(|u| u.link_type) => ExitCode::from(EXIT_UNUSABLE_INPUT),
        _ => ExitCode::SUCCESS,
    })
}

/// Where a command writes `out` before renaming it into place (`out` with
/// `.partial` appended), so a failed write never leaves a half file at `out`.
pub fn staged_path(out: &Path) -> PathBuf {
    let mut staged = out.as_os_str().to_owned();
    staged.push(".partial");
    PathBuf::from(staged)
}
