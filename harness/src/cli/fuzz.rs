//! `fibneigh fuzz`: seeded, reproducible fuzzing of bpf_fib_lookup() and
//! of the forwarder (see `fibneigh::fuzz`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use fibneigh::fuzz;

use super::{exit, write_json};

#[derive(Args)]
pub struct FuzzArgs {
    /// Seed of the generator: the same seed makes the same inputs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// bpf_fib_lookup() calls (tc and XDP, chosen at random).
    #[arg(long, default_value_t = 100_000)]
    pub lookups: u64,
    /// Frames run through the forwarder, spread over its policies.
    #[arg(long, default_value_t = 20_000)]
    pub forwarder_runs: u64,
    /// Also write the report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(args: FuzzArgs) -> Result<ExitCode> {
    if args.lookups == 0 && args.forwarder_runs == 0 {
        bail!("nothing to do: --lookups and --forwarder-runs are both 0");
    }
    super::clean_lab()?;
    let started = Instant::now();
    let run = fuzz::run(args.seed, args.lookups, args.forwarder_runs);
    let report = super::lab_run(run, "fuzz run")?;
    print!("{}", report.render(started.elapsed().as_secs_f64()));
    write_json(args.json.as_deref(), &report)?;
    print!("{}", report.render_violations());
    Ok(exit(report.violations.is_empty()))
}
