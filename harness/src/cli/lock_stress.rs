//! `fibneigh lock-stress`: arguments and printing; the run is
//! `fibneigh::lock_stress`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use fibneigh::lock_stress::LockStressRequest;
use fibneigh_bpf::flags;

use super::{exit, JsonOut};

#[derive(Args, Debug)]
pub struct LockStressArgs {
    #[command(flatten)]
    pub request: LockStressRequest,
    #[command(flatten)]
    pub out: JsonOut,
}

pub fn run(args: LockStressArgs) -> Result<ExitCode> {
    args.request.validate()?;
    super::prepare_patched_run(flags::NEIGH_STATE | flags::NEIGH_REFRESH)?;
    let r = super::lab_run(args.request.run(), "lock-stress run")?;
    let problems = super::with_leftovers(r.problems.clone())?;
    print!("{}", r.render());
    args.out.write(&r)?;
    for p in &problems {
        eprintln!("fibneigh lock-stress: {p}");
    }
    if problems.is_empty() {
        println!("lock-stress: ok");
    }
    Ok(exit(problems.is_empty()))
}
