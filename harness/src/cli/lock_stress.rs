//! `fibneigh lock-stress`: arguments and printing; the run is
//! `fibneigh::lock_stress`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use fibneigh::lab::Lab;
use fibneigh::lock_stress;
use fibneigh::scenario::Support;
use fibneigh::stop::{self, EXIT_INTERRUPTED};
use fibneigh_bpf::flags;

use super::write_json;

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
    stop::install().context("failed to install the signal handlers")?;
    Lab::cleanup_leftovers().context("failed to remove leftover lab namespaces")?;
    let support = Support::probe().context("failed to probe the kernel (are you root?)")?;
    let missing = support.missing(flags::NEIGH_STATE | flags::NEIGH_REFRESH);
    if !missing.is_empty() {
        bail!(
            "this kernel does not support {} (the series is not applied): run it in the patched VM",
            missing.join(", ")
        );
    }
    let r = match lock_stress::run(args.seconds, args.seed) {
        Ok(r) => r,
        Err(fibneigh::error::Error::Interrupted(_)) => {
            eprintln!("fibneigh: interrupted; the lab was removed");
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
        Err(e) => return Err(e).context("lock-stress run failed"),
    };
    let leftovers = Lab::cleanup_leftovers().context("failed to look for leftovers")?;
    let mut problems = r.problems.clone();
    if !leftovers.is_empty() {
        problems.push(format!("left behind: {}", leftovers.join(", ")));
    }
    println!(
        "lock-stress: {}s, {} churn actions, {} frames through the htb qdisc, {} test runs on {} CPU(s)",
        r.seconds,
        r.actions.values().sum::<u64>(),
        r.sent,
        r.test_runs,
        r.cpus
    );
    for (name, s) in [
        ("qdisc (cls_bpf under htb)", &r.qdisc),
        ("tc test runs", &r.tc_run),
        ("XDP test runs", &r.xdp_run),
    ] {
        println!(
            "    {name:<26} {:>9} lookups: SUCCESS {}, NO_NEIGH {}, other {}; found STALE (kicked) {}",
            s.lookups, s.success, s.no_neigh, s.other, s.stale
        );
    }
    for (k, v) in &r.actions {
        println!("    {v:>6}  {k}");
    }
    if let Some(p) = &args.json {
        write_json(p, &r)?;
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("fibneigh lock-stress: {p}");
        }
        return Ok(ExitCode::FAILURE);
    }
    println!("lock-stress: ok");
    Ok(ExitCode::SUCCESS)
}
