//! `fibneigh fuzz`: seeded, reproducible fuzzing of bpf_fib_lookup() and
//! of the forwarder (see `fibneigh::fuzz`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use fibneigh::fuzz::FuzzRequest;

use super::{exit, write_json};

#[derive(Args)]
pub struct FuzzArgs {
    #[command(flatten)]
    pub request: FuzzRequest,
    /// Also write the report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(args: FuzzArgs) -> Result<ExitCode> {
    args.request.validate()?;
    super::clean_lab()?;
    let started = Instant::now();
    let run = args.request.run();
    let report = super::lab_run(run, "fuzz run")?;
    print!("{}", report.render(started.elapsed().as_secs_f64()));
    write_json(args.json.as_deref(), &report)?;
    print!("{}", report.render_violations());
    Ok(exit(report.violations.is_empty()))
}
