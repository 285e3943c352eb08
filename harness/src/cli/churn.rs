//! `fibneigh churn`: neighbour churn under traffic (see `fibneigh::churn`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use fibneigh::churn;
use fibneigh_bpf::{Hook, Policy};

use super::{exit, write_json, Stopped};

#[derive(Args)]
pub struct ChurnArgs {
    /// Seconds of churn per run (policy x hook).
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Policies to run (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "state-aware,refresh")]
    pub policy: Vec<Policy>,
    /// Hooks to run (comma-separated): tc, xdp.
    #[arg(long, value_delimiter = ',', default_value = "tc,xdp")]
    pub hook: Vec<Hook>,
    /// Address family of the flow and the churned entry: 4 or 6.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(4..=6))]
    pub family: u8,
    /// Seed of the churn's choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write the reports as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(args: ChurnArgs) -> Result<ExitCode> {
    if args.family == 5 {
        bail!("--family must be 4 or 6");
    }
    if args.seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    super::prepare_patched_run(args.policy.iter().fold(0, |f, p| f | p.required_flags()))?;
    let runs = churn::run_each(
        &args.policy,
        &args.hook,
        args.family == 6,
        args.seconds,
        args.seed,
        |r, problems| print!("{}", r.render(problems)),
    );
    let (reports, failed) = match runs {
        Err(churn::RunsError::Interrupted) => return Err(Stopped::Lab.into()),
        r => r?,
    };
    write_json(args.json.as_deref(), &reports)?;
    if failed > 0 {
        eprintln!("fibneigh churn: {failed} run(s) failed");
    }
    Ok(exit(failed == 0))
}
