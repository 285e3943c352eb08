//! `fibneigh probe`: what the running kernel offers.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use fibneigh::features::{Expected, Features};

#[derive(Args)]
pub struct ProbeArgs {
    /// Write the features as JSON here (`-`: standard output).
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub expected: Expected,
}

pub fn run(args: ProbeArgs) -> Result<ExitCode> {
    let f = Features::probe().context("failed to probe the kernel (are you root?)")?;
    super::write_json(args.json.as_deref(), &f)?;
    write!(std::io::stdout().lock(), "{}", f.render())?;
    args.expected.check(&f)?;
    Ok(ExitCode::SUCCESS)
}
