//! The `tapstream` command line: parsing and one file per subcommand, over
//! the runtime and the tools. Everything it runs lives in the workspace's
//! library crates.

// No function over 100 lines (as in the library crates).
#![deny(clippy::too_many_lines)]

mod bench;
mod common;
mod config;
mod demo;
mod eval;
mod features;
mod gpu;
mod kafka;
mod learn;
mod model;
mod perturb;
mod run;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
    /// Score every flow of a capture and write alerts as EVE JSON; exits 3
    /// when the capture holds only link types tapstream does not decode.
    Run(run::RunArgs),
    /// Write the CIC feature row of every flow of a capture as CSV; exits 3
    /// when the capture holds only link types tapstream does not decode.
    Features(features::FeaturesArgs),
    /// Measure per-stage and end-to-end throughput on a capture.
    Bench(bench::BenchArgs),
    /// Write the project's synthetic demo capture.
    DemoPcap(demo::DemoArgs),
    /// Rebuild the throughput benchmark capture (as make-bench-pcap.sh does).
    MakeBenchPcap(demo::BenchPcapArgs),
    /// Check detectors on labelled captures: recall per attack kind,
    /// captures hit, benign false positives, alerts per attack, confusion;
    /// models side by side. Writes OUTDIR/eval.json and eval.html; exits 2
    /// when a capture could not be read.
    Eval(eval::EvalArgs),
    /// Fit an anomaly model on benign traffic (captures, or an interface for
    /// a while) and write it as an ONNX model with the contract, its
    /// threshold set on held-out flows at --fpr.
    Learn(learn::LearnArgs),
    /// Write a capture as its attacker would bend it (padding, jitter,
    /// 1-byte packets, fragments), as `eval --perturb` does.
    Perturb(perturb::PerturbArgs),
    /// Compare GPU and CPU feature rows on captures (needs a GPU).
    Parity(gpu::ParityArgs),
    /// Score with the features already on the GPU (needs a GPU and ONNX
    /// Runtime's CUDA provider): checks the device path against the host
    /// path, and measures rows/s per batch size; the last line is JSON.
    GpuScore(gpu::GpuScoreArgs),
    /// Model tools: `tapstream model report`.
    Model {
        #[command(subcommand)]
        command: model::ModelCommand,
    },
    /// Kafka tools: `tapstream kafka produce`.
    Kafka {
        #[command(subcommand)]
        command: kafka::KafkaCommand,
    },
    /// Print the default configuration, or check a configuration file.
    Config(config::ConfigArgs),
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

fn dispatch(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Run(args) => run::run(args),
        Command::Features(args) => features::run(args),
        Command::Bench(args) => bench::run(args),
        Command::DemoPcap(args) => demo::demo_pcap(args),
        Command::MakeBenchPcap(args) => demo::bench_pcap(args),
        Command::Eval(args) => eval::run(args),
        Command::Learn(args) => learn::run(args),
        Command::Perturb(args) => perturb::run(args),
        Command::Parity(args) => gpu::parity(args),
        Command::GpuScore(args) => gpu::gpu_score(args),
        Command::Model { command } => model::run(command),
        Command::Kafka { command } => kafka::run(command),
        Command::Config(args) => config::run(args),
    }
}
