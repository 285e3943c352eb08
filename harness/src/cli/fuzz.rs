//! `fibneigh fuzz`: seeded, reproducible fuzzing of bpf_fib_lookup() and
//! of the forwarder (see `fibneigh::fuzz`).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use fibneigh::fuzz::FuzzRequest;

use super::{exit, JsonOut};

#[derive(Args)]
pub struct FuzzArgs {
    #[command(flatten)]
    pub request: FuzzRequest,
    #[command(flatten)]
    pub out: JsonOut,
}

pub fn run(args: FuzzArgs) -> Result<ExitCode> {
    args.request.validate()?;
    super::clean_lab()?;
    let started = Instant::now();
    let run = args.request.run();
    let report = super::lab_run(run, "fuzz run")?;
    print!("{}", report.render(started.elapsed().as_secs_f64()));
    args.out.write(&report)?;
    print!("{}", report.render_violations());
    Ok(exit(report.violations.is_empty()))
}
