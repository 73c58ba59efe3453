//! `tapstream perturb`: writes a capture as its attacker would bend it, the
//! rewriting `tapstream eval --perturb` measures with, so a robustness test
//! set or training data can be made from any capture.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use tapstream_tools::eval::perturb::{write_perturbed, Perturb};

#[derive(Args, Debug)]
pub struct PerturbArgs {
    /// Capture to read (pcap or pcapng).
    #[arg(long, value_name = "FILE")]
    pcap: PathBuf,
    /// Capture to write (classic pcap); written beside it first and renamed
    /// once complete.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The perturbation: padding_64b, padding_512b, jitter_10ms,
    /// jitter_500ms, extra_packets_1_in_4 or fragment_8b. Each flow's
    /// initiator is the attacker; only its packets change.
    #[arg(long, value_name = "NAME")]
    how: String,
}

pub fn run(args: PerturbArgs) -> Result<ExitCode> {
    let how = match Perturb::parse_list(&args.how).map_err(anyhow::Error::msg)?[..] {
        [one] => one,
        _ => bail!("--how takes one perturbation, not {:?}", args.how),
    };
    if args.out.exists() && same_file(&args.pcap, &args.out) {
        bail!(
            "--out {} is the input capture; write the copy elsewhere",
            args.out.display()
        );
    }
    let partial = crate::common::staged_path(&args.out);
    let made = write_perturbed(&args.pcap, &partial, how).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        anyhow::anyhow!(e)
    });
    let made = made.with_context(|| format!("perturbing {}", args.pcap.display()))?;
    std::fs::rename(&partial, &args.out)
        .with_context(|| format!("renaming {} to {}", partial.display(), args.out.display()))?;
    eprintln!(
        "wrote {} ({}: {} packets, {} attacker packets rewritten, {} left as they were, {} left out)",
        args.out.display(),
        how.name(),
        made.packets,
        made.rewritten,
        made.unchanged,
        made.left_out
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether two existing paths name the same file.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
