//! `fibneigh clean`: remove the lab namespaces of runs that are gone.

use std::process::ExitCode;

use anyhow::{Context, Result};

/// Every lab command does this when it starts; this does only that, for
/// a run that was killed (SIGKILL, or a test binary stopped by SIGTERM)
/// when no other lab command follows. Namespaces of live processes are
/// kept.
pub fn run() -> Result<ExitCode> {
    let removed = fibneigh::lab::Lab::cleanup_leftovers()
        .context("failed to remove leftover lab namespaces (are you root?)")?;
    println!("{} leftover lab namespace(s) removed", removed.len());
    Ok(ExitCode::SUCCESS)
}
