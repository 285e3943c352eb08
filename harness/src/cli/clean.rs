//! `fibneigh clean`: remove the lab namespaces of runs that are gone.

use std::process::ExitCode;

use anyhow::{Context, Result};

/// Every lab command does this when it starts; this does only that, for
/// a run that was killed (SIGKILL, or a test binary stopped by SIGTERM)
/// when no other lab command follows. Namespaces of live processes are
/// kept. Exit 1 if a leftover could not be removed (named, with why).
pub fn run() -> Result<ExitCode> {
    let found = fibneigh::lab::Lab::cleanup_leftovers()
        .context("failed to look for leftover lab namespaces")?;
    println!(
        "{} leftover lab namespace(s) removed, {} could not be",
        found.removed.len(),
        found.stuck.len()
    );
    Ok(super::exit(found.stuck.is_empty()))
}
