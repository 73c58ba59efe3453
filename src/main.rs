//! The `tapstream` command line.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tapstream::config::{Config, Device, DEFAULT_CONFIG_TOML};
use tapstream::consumer::{AlertStage, Consumer};
use tapstream::kafka::{KafkaSource, Settled};
use tapstream::pipeline::{self, Input, Progress, RunReport};
use tapstream::reopen::ReopenRequest;
use tapstream::{bench, demo, model, summary};
use tapstream_connectors::eve::EveWriter;
use tapstream_connectors::limit::AlertLimiter;
use tapstream_connectors::sink::{AlertSink, FileSink, KafkaSink, StdoutSink};

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
    /// Rebuild the throughput benchmark capture (as make-bench-pcap.sh does).
    MakeBenchPcap {
        /// The shared data directory holding MANIFEST.tsv.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Output pcap file.
        #[arg(long)]
        out: PathBuf,
        /// Times the sequence of captures is repeated.
        #[arg(long, default_value_t = 8)]
        repeat: u32,
    },
    /// Compare GPU and CPU feature rows on captures (needs a GPU).
    Parity {
        /// Capture files or directories (searched recursively).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// ONNX model whose input the device also builds (default: the
        /// configured or bundled model); needs ONNX Runtime to read it.
        #[arg(long, value_name = "FILE")]
        model: Option<PathBuf>,
        /// TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Score with the features already on the GPU (needs a GPU and ONNX
    /// Runtime's CUDA provider): checks the device path against the host
    /// path, and measures rows/s per batch size; the last line is JSON.
    GpuScore(GpuScoreArgs),
    /// Model tools: `tapstream model report`.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Kafka tools: `tapstream kafka produce`.
    Kafka {
        #[command(subcommand)]
        command: KafkaCommand,
    },
    /// Print the default configuration, or check a configuration file.
    Config {
        /// File to check (prints the effective configuration when valid).
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum KafkaCommand {
    /// Create topics (a no-op for one that exists with that many
    /// partitions). Client settings come from [kafka] of the config.
    CreateTopics {
        /// Topic names.
        #[arg(required = true)]
        topics: Vec<String>,
        /// Partitions per topic.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=100_000))]
        partitions: i32,
        /// Replicas per partition.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100))]
        replication: i32,
        /// TOML configuration file (its [kafka] section).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Write a capture into a `packets` topic as the Kafka source reads it:
    /// pcap chunks, each flow's packets in one partition (by flow hash), in
    /// capture order. Client settings come from [kafka] of the config.
    Produce {
        /// Capture file.
        #[arg(long, value_name = "FILE")]
        pcap: PathBuf,
        /// Topic (must exist; its partition count is read from the broker).
        #[arg(long, default_value = "packets")]
        topic: String,
        /// Packets per message at most.
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        chunk_packets: u32,
        /// Bytes per message at most (keep it under the brokers'
        /// message.max.bytes).
        #[arg(long, default_value_t = 512 * 1024, value_parser = clap::value_parser!(u32).range(1024..=1 << 30))]
        chunk_bytes: u32,
        /// TOML configuration file (its [kafka] section).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum ModelCommand {
    /// Compare a model's precisions (FP32/FP16/INT8 variants) and backends
    /// (cpu, cuda, tensorrt) on labelled rows: accuracy, FPR, detection,
    /// agreement with FP32 on the CPU, latency, robustness; writes
    /// DIR/report.json and DIR/report.html.
    Report(ReportArgs),
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// Reference model (default: model.path of the configuration, else the
    /// bundled models/cic-mlp.onnx). Its `<stem>-fp16.onnx` and
    /// `<stem>-int8.onnx` siblings are compared when they exist.
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Further model files to compare with the reference.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    compare: Vec<PathBuf>,
    /// CIC-IDS2017 "improved" CSV file or directory of CSVs (labels mapped
    /// as deploy/training/train.py maps them).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["pcap", "label"])]
    data: Option<PathBuf>,
    /// Held-out ids file (`id<TAB>date<TAB>label`): keep only those rows
    /// (default: `<model dir>/<stem>.holdout-ids.txt` when it exists).
    #[arg(long, value_name = "IDS")]
    holdout: Option<PathBuf>,
    /// Capture whose flows are scored (also enables the robustness section).
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// The label of every flow of --pcap: BENIGN or one of the model's labels.
    #[arg(long, value_name = "LABEL")]
    label: Option<String>,
    /// Output directory (created).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// TOML configuration file (library, threads, pin, threshold, flow
    /// settings, GPU provider settings).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Batch sizes for latency, comma-separated (capped at the number of
    /// rows).
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', default_values_t = tapstream::report::DEFAULT_BATCH_SIZES)]
    batch_sizes: Vec<usize>,
}

#[derive(Args, Debug)]
struct GpuScoreArgs {
    /// Capture whose flows give the feature rows (the rows are tiled up to
    /// the largest batch for the throughput measurement).
    #[arg(long, value_name = "FILE")]
    pcap: PathBuf,
    /// Models to score (default: the configured or bundled model and its
    /// `-fp16`/`-int8` siblings).
    #[arg(long, value_name = "FILE", num_args = 1..)]
    model: Vec<PathBuf>,
    /// TOML configuration file (gpu.ordinal, inference.cuda, threshold,
    /// gpu.batch_records for the GPU feature stage).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Batch sizes to measure, in rows, comma-separated.
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', default_values_t = [65536usize, 262144, 1048576])]
    batch_rows: Vec<usize>,
    /// Measure each batch size for at least this many seconds.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
}

#[derive(Args, Debug)]
struct Common {
    /// Capture file (pcap or pcapng, optionally gzip-compressed).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present_any = ["kafka", "interface"],
        conflicts_with_all = ["kafka", "interface"]
    )]
    pcap: Option<PathBuf>,
    /// `run` only: capture live on this interface (without a value:
    /// capture.interface) until SIGTERM or SIGINT, as configured in
    /// [capture]; privileges are dropped as [privileges] says once it is
    /// open.
    #[arg(long, value_name = "IF", num_args = 0..=1, conflicts_with = "kafka")]
    interface: Option<Option<String>>,
    /// `run` only: read packets from Kafka as configured in [source.kafka]
    /// and [kafka], as a member of the consumer group, until SIGTERM or
    /// SIGINT (or source.kafka.exit_after_idle).
    #[arg(long)]
    kafka: bool,
    /// TOML configuration file (see `tapstream config`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Flow worker threads (overrides pipeline.workers; 0 = auto).
    #[arg(long)]
    workers: Option<usize>,
    /// Decoder threads (overrides pipeline.decoders; 0 = auto).
    #[arg(long)]
    decoders: Option<usize>,
    /// No progress bar and no summary on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// Also write the run summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
    /// Where flow features are computed (overrides gpu.device).
    #[arg(long, value_enum)]
    device: Option<Device>,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// ONNX model (overrides model.path; default models/cic-mlp.onnx).
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// EVE JSON output: `-` for stdout or a file (overrides output.eve and
    /// output.kafka).
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
    if let Some(d) = common.decoders {
        cfg.pipeline.decoders = d;
    }
    if let Some(d) = common.device {
        cfg.gpu.device = d;
    }
    cfg.validate()?;
    Ok(cfg)
}

fn dispatch(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Run(args) => {
            let mut cfg = load_config(&args.common)?;
            if let Some(e) = &args.eve {
                // The command line's output wins over the file's, Kafka too.
                cfg.output.eve = e.clone();
                cfg.output.kafka = None;
            }
            cfg.validate()?;
            // A live capture is opened first, with the privileges it needs,
            // and then they are dropped: before any thread starts (metrics,
            // model, outputs), so no thread keeps a capability.
            let live = match &args.common.interface {
                Some(iface) => {
                    let captures = tapstream::live::open_captures(&cfg, iface.as_deref())?;
                    tapstream::privileges::drop_privileges(&cfg.privileges)?;
                    Some(captures)
                }
                None => None,
            };
            if let Some(addr) = cfg.metrics.listen {
                tapstream::telemetry::serve(addr)?;
            }
            let flows_input = args.common.kafka
                && cfg.source.kafka.format == tapstream::config::KafkaFormat::Flows;
            let worker_sessions = model::worker_sessions_needed(&cfg, flows_input);
            if flows_input && cfg.inference.placement == tapstream::config::Placement::Workers {
                tracing::info!(
                    message = "flow rows from Kafka pass no flow worker: the consumer scores them"
                );
            }
            let mut loaded = model::load(&cfg, args.model.as_deref())?;
            model::add_worker_sessions(&cfg, &mut loaded, worker_sessions)?;
            let workers = tapstream::scoring::WorkerModels::take_from(&mut loaded);
            let eve = EveWriter::new(cfg.output.community_id_seed);
            // SIGHUP re-opens an EVE file (log rotation); stdout and Kafka
            // have none.
            let mut reopen = None;
            let sink: Box<dyn AlertSink> = if let Some(k) = &cfg.output.kafka {
                Box::new(
                    KafkaSink::new(cfg.kafka_client()?, k.topic.clone(), eve).with_context(
                        || format!("opening the Kafka alert sink (topic {})", k.topic),
                    )?,
                )
            } else if cfg.output.eve == "-" {
                Box::new(StdoutSink::new(eve))
            } else {
                let request = ReopenRequest::new();
                request.on_sighup()?;
                reopen = Some(request);
                Box::new(
                    FileSink::open(Path::new(&cfg.output.eve), eve)
                        .with_context(|| format!("opening EVE output {}", cfg.output.eve))?,
                )
            };
            // SIGHUP (and a changed file with model.watch) reloads the model.
            let reload = tapstream::reload::Reloader::start_with_workers(
                &cfg,
                args.model.as_deref(),
                true,
                worker_sessions,
            )?;
            let (input, settled) = if let Some(captures) = live {
                let term = stop_signals()?;
                (Input::Live { captures, term }, None)
            } else if args.common.kafka {
                // One mark per flow worker, or one in all for flow rows.
                let shards = match cfg.source.kafka.format {
                    tapstream::config::KafkaFormat::Packets => cfg.worker_threads(),
                    tapstream::config::KafkaFormat::Flows => 1,
                };
                let settled = Arc::new(Settled::new(shards));
                let term = stop_signals()?;
                let source = KafkaSource::new(&cfg, settled.clone(), term)?;
                (Input::Kafka(Box::new(source)), Some(settled))
            } else {
                (Input::Capture(pcap_of(&args.common)?), None)
            };
            let stage = AlertStage {
                engine: loaded.engine,
                sink,
                model: loaded.info,
                threshold: loaded.threshold,
                batch_rows: cfg.inference.batch_rows,
                max_delay: cfg.inference.max_delay,
                reload: Some(std::sync::Arc::new(reload)),
                settled,
                limiter: AlertLimiter::new(&cfg.output.limit.settings()),
                reopen,
                workers,
            };
            let report = run_with_progress(input, &args.common, &cfg, Consumer::Alerts(stage))?;
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
            let input = Input::Capture(pcap_of(&args.common)?);
            let report = run_with_progress(input, &args.common, &cfg, Consumer::Features(out))?;
            finish(&report, &args.common)
        }
        Command::Bench(args) => {
            let cfg = load_config(&args.common)?;
            let pcap = pcap_of(&args.common)?;
            let report = bench::run(&pcap, &cfg, args.model.as_deref())?;
            print!("{}", report.render(&pcap));
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
        Command::MakeBenchPcap { data, out, repeat } => {
            let files = tapstream::benchfile::manifest_list(&data)?;
            let stats = tapstream::benchfile::build(&files, repeat, &out)?;
            eprintln!(
                "wrote {} ({} packets; {} captures × {repeat}; {} left out)",
                out.display(),
                stats.packets,
                stats.captures,
                stats.skipped
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Parity {
            paths,
            model,
            config,
        } => {
            let cfg = match &config {
                Some(p) => Config::load(p)?,
                None => Config::default(),
            };
            parity(&paths, model.as_deref(), &cfg)
        }
        Command::GpuScore(args) => gpu_score(args),
        Command::Model {
            command: ModelCommand::Report(args),
        } => model_report(args),
        Command::Kafka {
            command:
                KafkaCommand::Produce {
                    pcap,
                    topic,
                    chunk_packets,
                    chunk_bytes,
                    config,
                },
        } => {
            let cfg = match &config {
                Some(p) => Config::load(p)?,
                None => Config::default(),
            };
            let opts = tapstream::kafka::produce::ProduceOptions {
                topic,
                chunk_packets: chunk_packets as usize,
                chunk_bytes: chunk_bytes as usize,
                timeout: Duration::from_secs(60),
            };
            let r = tapstream::kafka::produce::produce(&pcap, &cfg, &opts)?;
            let secs = r.wall.as_secs_f64().max(1e-9);
            eprintln!(
                "produced {} packets in {} messages ({} bytes) to {} ({} partitions) in {:.2} s: {:.0} packets/s, {:.0} messages/s{}",
                r.packets,
                r.messages,
                r.bytes,
                opts.topic,
                r.partitions,
                secs,
                r.packets as f64 / secs,
                r.messages as f64 / secs,
                if r.waits > 0 { format!(" ({} waits for a full queue)", r.waits) } else { String::new() }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Kafka {
            command:
                KafkaCommand::CreateTopics {
                    topics,
                    partitions,
                    replication,
                    config,
                },
        } => {
            let cfg = match &config {
                Some(p) => Config::load(p)?,
                None => Config::default(),
            };
            let client = cfg
                .kafka_client()?
                .client_config(&[], &[])
                .context("Kafka client settings")?;
            for t in &topics {
                tapstream_connectors::kafka::admin::create_topic(
                    &client,
                    t,
                    partitions,
                    replication,
                )
                .map_err(|e| anyhow::anyhow!(e))?;
                eprintln!("topic {t}: {partitions} partitions, {replication} replicas");
            }
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

/// `tapstream model report`.
fn model_report(args: ReportArgs) -> Result<ExitCode> {
    use tapstream::report::{self, Options, Source};
    let source = match (args.data, args.pcap, args.label) {
        (Some(path), None, None) => Source::Data {
            path,
            holdout: args.holdout,
        },
        (None, Some(file), Some(label)) => {
            if args.holdout.is_some() {
                anyhow::bail!("--holdout selects CSV rows; it needs --data, not --pcap");
            }
            Source::Pcap { file, label }
        }
        (None, Some(_), None) => {
            anyhow::bail!("--pcap needs --label LABEL (BENIGN or one of the model's labels)")
        }
        (None, None, Some(_)) => anyhow::bail!("--label needs --pcap FILE"),
        _ => anyhow::bail!(
            "no rows to evaluate: give --data PATH (CIC-IDS2017 CSVs) or --pcap FILE --label LABEL"
        ),
    };
    let cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    cfg.validate()?;
    let written = report::run(
        &cfg,
        &Options {
            model: args.model,
            compare: args.compare,
            source,
            out: args.out,
            batch_sizes: args.batch_sizes,
        },
    )?;
    print!("{}", written.summary);
    eprintln!(
        "wrote {} and {}",
        written.json.display(),
        written.html.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs the pipeline with a progress bar on stderr when it is a terminal.
/// The capture of a command that reads one (`--kafka` is for `run` only).
fn pcap_of(common: &Common) -> Result<PathBuf> {
    common.pcap.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "this command reads a capture: give --pcap FILE (--kafka and --interface are for `run`)"
        )
    })
}

/// A flag SIGTERM and SIGINT set, for sources that run until stopped; a
/// second signal while shutting down exits at once.
fn stop_signals() -> Result<Arc<AtomicBool>> {
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, term.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(sig, term.clone()).context("installing signal handlers")?;
    }
    Ok(term)
}

fn run_with_progress(
    input: Input,
    common: &Common,
    cfg: &Config,
    consumer: Consumer,
) -> Result<RunReport> {
    let progress = Arc::new(Progress::default());
    let show = !common.quiet && std::io::stderr().is_terminal();
    let total = match &input {
        Input::Capture(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
        Input::Kafka(_) | Input::Live { .. } => 0,
    };
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
    let result = pipeline::run_input(input, cfg, consumer, progress);
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

#[cfg(feature = "cuda")]
fn parity(paths: &[PathBuf], model: Option<&std::path::Path>, cfg: &Config) -> Result<ExitCode> {
    use tapstream::gpu;
    use tapstream_kernels::gpu::cuda::CudaDevice;
    let dev = CudaDevice::open(cfg.gpu.ordinal, cfg.gpu.ptx_cache.as_deref())?;
    let i = dev.info();
    println!(
        "GPU: {} (compute {}.{}, driver {}, {} MiB)",
        i.name,
        i.compute_capability.0,
        i.compute_capability.1,
        i.driver_version,
        i.memory >> 20
    );
    let flow = tapstream::pipeline::flow_config(cfg, 1);
    let mut gpu_shard = gpu::GpuRows::new(&dev, flow, cfg.gpu.batch_records)?;
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d)?.flatten() {
                    let q = e.path();
                    if q.is_dir() {
                        stack.push(q);
                    } else {
                        files.push(q);
                    }
                }
            }
        } else {
            files.push(p.clone());
        }
    }
    files.sort();
    // The device's model input is checked against select_features with two
    // contracts in turn: the model's own, and the same columns with a
    // standardising scaler (so both kernel paths are covered whatever the
    // model does).
    let contracts = match tapstream::model::load(cfg, model) {
        Ok(m) => {
            let own = m.engine.contract().clone();
            let mut scaled = own.clone();
            let n = scaled.columns.len();
            scaled.scaler = tapstream_inference::Scaler::External {
                mean: (0..n).map(|i| i as f64 * 1.5 - 7.25).collect(),
                scale: (0..n).map(|i| 0.75 + i as f64 / 3.0).collect(),
            };
            vec![own, scaled]
        }
        Err(e) => {
            println!("model input: not checked ({e:#})");
            Vec::new()
        }
    };
    let (mut input_values, mut input_differing) = (0u64, 0u64);
    let mut total = gpu::Parity::default();
    let mut failed = 0;
    let mut compared = 0;
    for f in &files {
        let recs = match gpu::records(f) {
            Ok(r) if !r.is_empty() => r,
            _ => continue,
        };
        let contract = contracts.get(compared % contracts.len().max(1));
        gpu_shard.set_model_input(contract.map(gpu::model_input_of).as_ref())?;
        let cpu = gpu::cpu_rows(flow, &recs)?;
        let gpu_rows = gpu_shard.rows(&recs)?;
        let p = gpu::compare(&cpu, &gpu_rows);
        compared += 1;
        if let Some(c) = contract {
            let (values, differing, first) =
                gpu::compare_inputs(c, &cpu, &gpu_shard.model_inputs());
            input_values += values;
            input_differing += differing;
            if let Some(first) = first {
                failed += 1;
                println!("MISMATCH {} (model input): {first}", f.display());
            }
        }
        if !p.ok() {
            failed += 1;
            println!(
                "MISMATCH {}: {}",
                f.display(),
                p.first_problem
                    .as_deref()
                    .unwrap_or("values beyond tolerance")
            );
        }
        total.merge(&p);
    }
    let identical = total.values - total.differing;
    println!(
        "parity: {compared} captures, {} flows, {} values: {} bit-identical ({:.6} %), \
         {} integer mismatches, {} float values beyond {:e} (max relative difference {:e}{})",
        total.flows,
        total.values,
        identical,
        if total.values == 0 {
            100.0
        } else {
            identical as f64 * 100.0 / total.values as f64
        },
        total.integer_mismatches,
        total.float_violations,
        gpu::FLOAT_TOLERANCE,
        total.max_rel.0,
        if total.max_rel.1.is_empty() {
            String::new()
        } else {
            format!(" in {}", total.max_rel.1)
        },
    );
    if !contracts.is_empty() {
        println!(
            "model input: {input_values} values (the model's scaler and a standardising one, \
             alternating by capture): {} bit-identical, {input_differing} differing",
            input_values - input_differing
        );
    }
    Ok(if failed == 0 && compared > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(feature = "cuda")]
fn gpu_score(args: GpuScoreArgs) -> Result<ExitCode> {
    let cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let models = if args.model.is_empty() {
        let base = tapstream::model::model_path(&cfg, None)?;
        let stem = base
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut m = vec![base.clone()];
        for suffix in ["fp16", "int8"] {
            let sibling = base.with_file_name(format!("{stem}-{suffix}.onnx"));
            if sibling.is_file() {
                m.push(sibling);
            }
        }
        m
    } else {
        args.model
    };
    let spec = tapstream::gpu_score::CheckSpec {
        pcap: args.pcap,
        models,
        batch_rows: args.batch_rows,
        min_seconds: args.seconds,
    };
    Ok(if tapstream::gpu_score::check(&cfg, &spec)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(not(feature = "cuda"))]
fn gpu_score(_args: GpuScoreArgs) -> Result<ExitCode> {
    anyhow::bail!("this tapstream was built without CUDA support (build with `--features cuda`)")
}

#[cfg(not(feature = "cuda"))]
fn parity(_paths: &[PathBuf], _model: Option<&std::path::Path>, _cfg: &Config) -> Result<ExitCode> {
    anyhow::bail!("this tapstream was built without CUDA support (build with `--features cuda`)")
}
