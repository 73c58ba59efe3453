//! `tapstream demo-pcap` and `tapstream make-bench-pcap`: the captures the
//! project makes itself.

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tapstream_tools::{benchfile, demo};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Output pcap file.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
pub struct BenchPcapArgs {
    /// The shared data directory holding MANIFEST.tsv.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Output pcap file.
    #[arg(long)]
    out: PathBuf,
    /// Times the sequence of captures is repeated.
    #[arg(long, default_value_t = 8)]
    repeat: u32,
}

pub fn demo_pcap(args: DemoArgs) -> Result<ExitCode> {
    let out = args.out;
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

pub fn bench_pcap(args: BenchPcapArgs) -> Result<ExitCode> {
    let files = benchfile::manifest_list(&args.data)?;
    let stats = benchfile::build(&files, args.repeat, &args.out)?;
    eprintln!(
        "wrote {} ({} packets; {} captures × {}; {} left out)",
        args.out.display(),
        stats.packets,
        stats.captures,
        args.repeat,
        stats.skipped
    );
    Ok(ExitCode::SUCCESS)
}
