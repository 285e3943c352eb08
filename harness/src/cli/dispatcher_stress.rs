//! `fibneigh dispatcher-stress`: arguments and printing; the run is
//! `fibneigh::dispatcher_stress`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::{JsonOut, Stopped};

#[derive(Args, Debug)]
pub struct DispatcherStressArgs {
    /// How long every CPU's thread keeps making test runs.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub seconds: u64,
    #[command(flatten)]
    pub out: JsonOut,
}

pub fn run(args: DispatcherStressArgs) -> Result<ExitCode> {
    fibneigh::stop::install().context("failed to install the signal handlers")?;
    let r = fibneigh::dispatcher_stress::run(args.seconds).map_err(|e| match e {
        fibneigh::error::Error::Interrupted(_) => Stopped::Quiet.into(),
        e => anyhow::Error::new(e).context("dispatcher-stress run failed"),
    })?;
    print!("{}", r.render());
    args.out.write(&r)?;
    println!("dispatcher-stress: ok");
    Ok(ExitCode::SUCCESS)
}
