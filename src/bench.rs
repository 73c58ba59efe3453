//! `tapstream bench`: per-stage and end-to-end throughput on a capture.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::common::{load_config, pcap_of, Common};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub common: Common,
    /// ONNX model (overrides model.path).
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let cfg = load_config(&args.common)?;
    let pcap = pcap_of(&args.common)?;
    let report = tapstream_tools::bench::run(&pcap, &cfg, args.model.as_deref())?;
    print!("{}", report.render(&pcap));
    Ok(ExitCode::SUCCESS)
}
