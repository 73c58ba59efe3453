//! The `tapstream` command line.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tapstream::config::{Config, DEFAULT_CONFIG_TOML};
use tapstream::consumer::{AlertStage, Consumer};
use tapstream::pipeline::{self, Progress, RunReport};
use tapstream::{bench, demo, model, summary};
use tapstream_connectors::eve::EveWriter;
use tapstream_connectors::sink::{AlertSink, FileSink, StdoutSink};

/// GPU-accelerated stream processing for network packet analytics:
/// packets → flows → CIC features → ONNX model → EVE JSON alerts.
#[derive(Parser, Debug)]
#[command(name = "tapstream", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Score every flow of a capture and write alerts as EVE JSON.
    Run(RunArgs),
    /// Write the CIC feature row of every flow of a capture as CSV.
    Features(FeaturesArgs),
    /// Measure per-stage and end-to-end throughput on a capture.
    Bench(BenchArgs),
    /// Write the project's synthetic demo capture.
    DemoPcap {
        /// Output pcap file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the default configuration, or check a configuration file.
    Config {
        /// File to check (prints the effective configuration when valid).
        file: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
struct Common {
    /// Capture file (pcap or pcapng, optionally gzip-compressed).
    #[arg(long, value_name = "FILE")]
    pcap: PathBuf,
    /// TOML configuration file (see `tapstream config`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Flow worker threads (overrides pipeline.workers; 0 = auto).
    #[arg(long)]
    workers: Option<usize>,
    /// No progress bar and no summary on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// Also write the run summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// ONNX model (overrides model.path; default models/cic-mlp.onnx).
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// EVE JSON output: `-` for stdout or a file (overrides output.eve).
    #[arg(long, value_name = "PATH")]
    eve: Option<String>,
}

#[derive(Args, Debug)]
struct FeaturesArgs {
    #[command(flatten)]
    common: Common,
    /// Output CSV file (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct BenchArgs {
    #[command(flatten)]
    common: Common,
    /// ONNX model (overrides model.path).
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TAPSTREAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tapstream: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(common: &Common) -> Result<Config> {
    let mut cfg = match &common.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(w) = common.workers {
        cfg.pipeline.workers = w;
    }
    cfg.validate()?;
    Ok(cfg)
}

fn dispatch(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Run(args) => {
            let mut cfg = load_config(&args.common)?;
            if let Some(e) = &args.eve {
                cfg.output.eve = e.clone();
            }
            cfg.validate()?;
            let loaded = model::load(&cfg, args.model.as_deref())?;
            let eve = EveWriter::new(cfg.output.community_id_seed);
            let sink: Box<dyn AlertSink> = if cfg.output.eve == "-" {
                Box::new(StdoutSink::new(eve))
            } else {
                Box::new(
                    FileSink::open(Path::new(&cfg.output.eve), eve)
                        .with_context(|| format!("opening EVE output {}", cfg.output.eve))?,
                )
            };
            let stage = AlertStage {
                engine: loaded.engine,
                sink,
                model: loaded.info,
                threshold: loaded.threshold,
                batch_rows: cfg.inference.batch_rows,
                max_delay: cfg.inference.max_delay,
            };
            let report = run_with_progress(&args.common, &cfg, Consumer::Alerts(stage))?;
            finish(&report, &args.common)
        }
        Command::Features(args) => {
            let cfg = load_config(&args.common)?;
            let out: Box<dyn Write + Send> = if args.out.as_os_str() == "-" {
                Box::new(std::io::stdout())
            } else {
                Box::new(
                    File::create(&args.out)
                        .with_context(|| format!("creating {}", args.out.display()))?,
                )
            };
            let report = run_with_progress(&args.common, &cfg, Consumer::Features(out))?;
            finish(&report, &args.common)
        }
        Command::Bench(args) => {
            let cfg = load_config(&args.common)?;
            let report = bench::run(&args.common.pcap, &cfg, args.model.as_deref())?;
            print!("{}", report.render(&args.common.pcap));
            Ok(ExitCode::SUCCESS)
        }
        Command::DemoPcap { out } => {
            let f = File::create(&out).with_context(|| format!("creating {}", out.display()))?;
            let stats = demo::write_demo(std::io::BufWriter::new(f))
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "wrote {} ({} packets: {} benign sessions, {} attack sessions)",
                out.display(),
                stats.packets,
                stats.benign_sessions,
                stats.attack_sessions
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { file } => {
            match file {
                None => print!("{DEFAULT_CONFIG_TOML}"),
                Some(p) => {
                    let cfg = Config::load(&p)?;
                    print!("{}", toml::to_string_pretty(&cfg)?);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs the pipeline with a progress bar on stderr when it is a terminal.
fn run_with_progress(common: &Common, cfg: &Config, consumer: Consumer) -> Result<RunReport> {
    let progress = Arc::new(Progress::default());
    let show = !common.quiet && std::io::stderr().is_terminal();
    let total = std::fs::metadata(&common.pcap)
        .map(|m| m.len())
        .unwrap_or(0);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bar_thread = if show && total > 8 << 20 {
        let progress = progress.clone();
        let done = done.clone();
        Some(thread::spawn(move || {
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
        }))
    } else {
        None
    };
    let result = pipeline::run(&common.pcap, cfg, consumer, progress);
    done.store(true, Ordering::Relaxed);
    if let Some(h) = bar_thread {
        let _ = h.join();
    }
    result
}

/// Prints (and optionally saves) the summary and picks the exit code.
fn finish(report: &RunReport, common: &Common) -> Result<ExitCode> {
    if !common.quiet {
        eprint!("{}", summary::render(report));
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
        _ => ExitCode::SUCCESS,
    })
}
