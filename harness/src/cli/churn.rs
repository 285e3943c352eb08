//! `fibneigh churn`: neighbour churn under traffic (see `fibneigh::churn`).

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use fibneigh::churn::{self, ChurnRequest};

use super::{exit, JsonOut, Stopped};

#[derive(Args)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub request: ChurnRequest,
    #[command(flatten)]
    pub out: JsonOut,
}

pub fn run(args: ChurnArgs) -> Result<ExitCode> {
    let req = &args.request;
    req.validate()?;
    super::prepare_patched_run(req.required_flags())?;
    let runs = churn::run_each(req, |r, problems| print!("{}", r.render(problems)));
    let (reports, failed) = match runs {
        Err(churn::RunsError::Interrupted) => return Err(Stopped::Lab.into()),
        r => r?,
    };
    args.out.write(&reports)?;
    if failed > 0 {
        eprintln!("fibneigh churn: {failed} run(s) failed");
    }
    Ok(exit(failed == 0))
}
