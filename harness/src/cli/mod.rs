//! The command line: argument parsing, printing and files; the work is done
//! by the library (`fibneigh::*`; `fibneigh::pipeline` drives the VM
//! pipeline, `fibneigh_vm`). No file here imports another but this one.

pub mod bench;
pub mod cache;
pub mod churn;
pub mod clean;
pub mod dispatcher_stress;
pub mod examples;
pub mod fuzz;
pub mod icount;
pub mod lock_stress;
pub mod probe;
pub mod scale;
pub mod scenarios;
pub mod selftests;
pub mod trial;
pub mod vm;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
pub use fibneigh::present::json::{write as write_json, write_file};
use fibneigh::scenario::CellResult;

/// Exit code for a failure of the tool itself (as opposed to a guest
/// command's own exit status, which `vm run` passes through).
pub const EXIT_INFRA: u8 = 125;

/// A run stopped by SIGINT or SIGTERM: `main` says so (unless `Quiet`) and
/// exits with `fibneigh::stop::EXIT_INTERRUPTED`.
#[derive(Debug, thiserror::Error)]
pub enum Stopped {
    #[error("interrupted; the lab was removed")]
    Lab,
    /// A guest was stopped: the pipeline's own words.
    #[error("{0:#}")]
    Guest(anyhow::Error),
    #[error("interrupted")]
    Quiet,
}

/// Success, or failure (exit 1).
pub fn exit(ok: bool) -> ExitCode {
    ExitCode::from(u8::from(!ok))
}

/// Ready a lab run: the signal handlers installed and an earlier run's
/// leftovers removed.
pub fn clean_lab() -> Result<()> {
    fibneigh::stop::install().context("failed to install the signal handlers")?;
    fibneigh::lab::Lab::cleanup_leftovers().context("failed to remove leftover lab namespaces")?;
    Ok(())
}

/// [`clean_lab`], and what the running kernel supports.
pub fn prepare_lab() -> Result<fibneigh::scenario::Support> {
    clean_lab()?;
    fibneigh::scenario::Support::probe().context("failed to probe the kernel (are you root?)")
}

/// Ready a lab run that needs the series' `flags` on the running kernel:
/// the signal handlers installed, an earlier run's leftovers removed, and
/// an error naming the flags the kernel lacks.
pub fn prepare_patched_run(flags: u32) -> Result<()> {
    let support = prepare_lab()?;
    let missing = support.missing(flags);
    if !missing.is_empty() {
        anyhow::bail!(
            "this kernel does not support {} (the series is not applied): run it in the patched VM",
            missing.join(", ")
        );
    }
    Ok(())
}

/// A lab run's result: [`Stopped::Lab`] when it was interrupted (its lab
/// removed); its other errors with `what` as context.
pub fn lab_run<T>(r: fibneigh::error::Result<T>, what: &str) -> Result<T> {
    r.map_err(|e| match e {
        fibneigh::error::Error::Interrupted(_) => Stopped::Lab.into(),
        e => anyhow::Error::new(e).context(format!("{what} failed")),
    })
}

/// `problems` plus a line naming the lab namespaces a run left behind.
pub fn with_leftovers(problems: Vec<String>) -> Result<Vec<String>> {
    fibneigh::lab::Lab::with_leftovers(problems).context("failed to look for leftovers")
}

/// Where `matrix` and `trial` write their results.
#[derive(Args)]
pub struct ResultFiles {
    /// Write every result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the verdicts as JUnit XML here (a case per cell).
    #[arg(long)]
    pub junit: Option<PathBuf>,
}

impl ResultFiles {
    /// `report` to --json, the verdicts of `results` to --junit.
    pub fn write<T: serde::Serialize>(&self, report: &T, results: &[CellResult]) -> Result<()> {
        write_json(self.json.as_deref(), report)?;
        match &self.junit {
            Some(p) => Ok(write_file(p, &fibneigh::report::junit::matrix(results)?)?),
            None => Ok(()),
        }
    }
}

/// A command's `--json`: its report as JSON, to a file or (`-`) standard
/// output.
#[derive(Args, Debug)]
pub struct JsonOut {
    /// Write the report as JSON here (`-`: standard output).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl JsonOut {
    pub fn write<T: serde::Serialize>(&self, report: &T) -> Result<()> {
        Ok(write_json(self.json.as_deref(), report)?)
    }
}

/// The flow rate and recovery window of the traffic scenarios (`cell`,
/// `matrix`, `trial`).
#[derive(Args)]
pub struct TimingArgs {
    /// Flow rate in packets per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// How long to wait for recovery after the move, in ms (at most an
    /// hour) [default: 2000; with matrix --quick, meant for emulated
    /// machines, 4000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub window_ms: Option<u64>,
}

impl TimingArgs {
    pub fn options(&self, quick: bool) -> fibneigh::scenario::Options {
        let default = if quick { 4000 } else { 2000 };
        fibneigh::scenario::Options {
            rate_pps: self.rate.max(1),
            window: std::time::Duration::from_millis(self.window_ms.unwrap_or(default)),
            ..fibneigh::scenario::Options::default()
        }
    }
}
