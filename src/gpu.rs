//! `tapstream parity` and `tapstream gpu-score`: the GPU against the CPU,
//! on a GPU host.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use tapstream_kernels::gpu::{GpuError, CUDA_BUILT};
use tapstream_tools::gpu::check::{check, default_models, CheckSpec};

use crate::common::config_or_default;

#[derive(Args, Debug)]
pub struct ParityArgs {
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
}

#[derive(Args, Debug)]
pub struct GpuScoreArgs {
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

pub fn parity(args: ParityArgs) -> Result<ExitCode> {
    let cfg = config_or_default(args.config.as_deref())?;
    let ok = tapstream_tools::gpu::parity(&args.paths, args.model.as_deref(), &cfg)?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn gpu_score(args: GpuScoreArgs) -> Result<ExitCode> {
    // Said first: no configuration or model matters in such a build.
    if !CUDA_BUILT {
        return Err(GpuError::NotBuilt.into());
    }
    let cfg = config_or_default(args.config.as_deref())?;
    let models = if args.model.is_empty() {
        default_models(&cfg)?
    } else {
        args.model
    };
    let spec = CheckSpec {
        pcap: args.pcap,
        models,
        batch_rows: args.batch_rows,
        min_seconds: args.seconds,
    };
    Ok(if check(&cfg, &spec)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
