//! `tapstream model report`: a model's precisions and backends compared on
//! labelled rows.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use tapstream_tools::report::{self, Options, Source};

use crate::common::config_or_default;

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Compare a model's precisions (FP32/FP16/INT8 variants) and backends
    /// (cpu, cuda, tensorrt) on labelled rows: accuracy, FPR, detection,
    /// agreement with FP32 on the CPU, latency, robustness; writes
    /// DIR/report.json and DIR/report.html.
    Report(ReportArgs),
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Reference model (default: model.path of the configuration, else the
    /// bundled CIC-schema models/cic-mlp.onnx, whose rows this report
    /// scores). Its `<stem>-fp16.onnx` and
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
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', default_values_t = report::DEFAULT_BATCH_SIZES)]
    batch_sizes: Vec<usize>,
}

pub fn run(command: ModelCommand) -> Result<ExitCode> {
    let ModelCommand::Report(args) = command;
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
    let cfg = config_or_default(args.config.as_deref())?;
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
