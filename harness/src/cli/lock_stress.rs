//! `fibneigh lock-stress`: arguments and printing; the run is
//! `fibneigh::lock_stress`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use fibneigh::lock_stress;
use fibneigh_bpf::flags;

use super::{exit, write_json};

#[derive(Args, Debug)]
pub struct LockStressArgs {
    /// How long the filter, the test runs and the churn run together.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Seed of the churn's choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write the report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(args: LockStressArgs) -> Result<ExitCode> {
    if args.seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    super::prepare_patched_run(flags::NEIGH_STATE | flags::NEIGH_REFRESH)?;
    let r = super::lab_run(lock_stress::run(args.seconds, args.seed), "lock-stress run")?;
    let problems = super::with_leftovers(r.problems.clone())?;
    print!("{}", r.render());
    write_json(args.json.as_deref(), &r)?;
    for p in &problems {
        eprintln!("fibneigh lock-stress: {p}");
    }
    if problems.is_empty() {
        println!("lock-stress: ok");
    }
    Ok(exit(problems.is_empty()))
}
