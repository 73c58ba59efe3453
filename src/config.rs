//! `tapstream config`: the default configuration, or a file checked.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use tapstream_runtime::config::DEFAULT_CONFIG_TOML;
use tapstream_runtime::Config;

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// File to check (prints the effective configuration when valid).
    file: Option<PathBuf>,
}

pub fn run(args: ConfigArgs) -> Result<ExitCode> {
    match args.file {
        None => print!("{DEFAULT_CONFIG_TOML}"),
        Some(p) => {
            let cfg = Config::load(&p)?;
            print!("{}", toml::to_string_pretty(&cfg)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
