//! `tapstream features`: the CIC feature row of every flow of a capture,
//! as CSV.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tapstream_runtime::Consumer;

use crate::common::{finish, load_config, pcap_of, with_progress, Common};

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    #[command(flatten)]
    pub common: Common,
    /// Output CSV file (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Also write each flow's host and service context columns (the
    /// context schema's `ctx_*` features; same as `[context] enabled = "on"`).
    #[arg(long)]
    pub context: bool,
}

pub fn run(args: FeaturesArgs) -> Result<ExitCode> {
    let mut cfg = load_config(&args.common)?;
    if args.context {
        cfg.context.enabled = tapstream_runtime::config::ContextMode::On;
    }
    let out: Box<dyn Write + Send> = if args.out.as_os_str() == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(
            File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?,
        )
    };
    let pcap = pcap_of(&args.common)?;
    let report = with_progress(&args.common, |p| {
        tapstream_runtime::run_file(&pcap, &cfg, Consumer::Features(out), p)
    })?;
    finish(&report, &args.common)
}
