//! `fibneigh probe`: what the running kernel offers.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use fibneigh::features::Features;

#[derive(Args)]
pub struct ProbeArgs {
    /// Write the features as JSON here (`-`: standard output).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Fail unless the kernel's release starts with this (e.g. 7.3).
    #[arg(long)]
    pub expect_release: Option<String>,
    /// Fail unless NEIGH_STATE and NEIGH_REFRESH are supported.
    #[arg(long)]
    pub expect_patched: bool,
}

pub fn run(args: ProbeArgs) -> Result<ExitCode> {
    let f = Features::probe().context("failed to probe the kernel (are you root?)")?;
    super::write_json(args.json.as_deref(), &f)?;
    write!(std::io::stdout().lock(), "{}", f.render())?;
    if let Some(want) = &args.expect_release {
        if !f.release.starts_with(want.as_str()) {
            bail!(
                "kernel release {} does not match the expected {want}",
                f.release
            );
        }
    }
    if args.expect_patched && !f.patched() {
        bail!("this kernel does not support NEIGH_STATE and NEIGH_REFRESH");
    }
    Ok(ExitCode::SUCCESS)
}
