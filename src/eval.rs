//! `tapstream eval`: detectors checked on a deployment's own labelled
//! captures, models side by side.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use tapstream_tools::eval::{self, Options};

use crate::common::config_or_default;

/// Exit status when the evaluation finished but some captures could not be
/// read (entirely or in part).
const EXIT_READ_ERRORS: u8 = 2;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Labelled data: `DIR/benign/**` and `DIR/attack/<KIND>/**` (every flow
    /// of a capture under attack/KIND is that kind), or the captures a
    /// labels TSV lists, relative to DIR. Captures: .pcap, .pcapng, .cap,
    /// optionally .gz; directories are searched recursively.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Labels TSV (columns path, label, attacker_ips, victim_ip,
    /// start_epoch, end_epoch; default: DIR/LABELS.tsv when it exists).
    #[arg(long, value_name = "TSV")]
    labels: Option<PathBuf>,
    /// Model to evaluate; repeat to compare several side by side (default:
    /// model.path of the configuration, else the bundled
    /// models/behaviour-mlp.onnx).
    #[arg(long, value_name = "M.onnx")]
    model: Vec<PathBuf>,
    /// Output directory for eval.json and eval.html (created).
    #[arg(long, value_name = "OUTDIR", default_value = ".")]
    out: PathBuf,
    /// TOML configuration file (flow settings, ONNX Runtime settings,
    /// model.threshold).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Flow worker threads (overrides pipeline.workers; 0 = auto).
    #[arg(long)]
    workers: Option<usize>,
    /// Decision threshold on the attack score for every model (default:
    /// model.threshold of the configuration, else each model's own).
    #[arg(long, value_name = "T")]
    threshold: Option<f32>,
    /// Also evaluate every capture perturbed by its attacker: `all`, or a
    /// comma-separated list of padding_64b, padding_512b, jitter_10ms,
    /// jitter_500ms, extra_packets_1_in_4, fragment_8b. Each rewrites a
    /// copy of every capture and runs it through the whole pipeline.
    #[arg(long, value_name = "LIST")]
    perturb: Option<String>,
    /// Also score the models together, as one run's detectors (`[[detector]]`):
    /// a flow is alerted when any model alerts it (the first such model's
    /// class); one more column, `together`.
    #[arg(long)]
    together: bool,
    /// No line per capture on stderr.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    let mut cfg = config_or_default(args.config.as_deref())?;
    if let Some(w) = args.workers {
        cfg.pipeline.workers = w;
    }
    cfg.validate()?;
    let opts = Options {
        data: args.data,
        labels: args.labels,
        models: args.model,
        out: args.out,
        threshold: args.threshold,
        perturb: match &args.perturb {
            Some(list) => eval::perturb::Perturb::parse_list(list).map_err(anyhow::Error::msg)?,
            None => Vec::new(),
        },
        together: args.together,
    };
    let quiet = args.quiet;
    let written = eval::run(&cfg, &opts, &mut |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    })?;
    print!("{}", written.table);
    eprintln!(
        "wrote {} and {}",
        written.json.display(),
        written.html.display()
    );
    if written.read_errors.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "tapstream: {} capture(s) could not be read in full (see above and eval.json's read_errors)",
        written.read_errors.len()
    );
    Ok(ExitCode::from(EXIT_READ_ERRORS))
}
