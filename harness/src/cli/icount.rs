//! `fibneigh vm icount`: instructions per `bpf_fib_lookup()` call, counted
//! by the `fibneigh-icount` QEMU plugin in a TCG guest; and
//! `fibneigh icount-guest`, the workload it runs inside: arguments and
//! printing; the measurement is `fibneigh::bench::icount::measure`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use fibneigh::bench::icount::measure::{self, IcountChoice};
use fibneigh::bench::icount::{self, render, DEFAULT_RUNS};
use fibneigh::pipeline::KernelChoice;
use fibneigh::stop;
use fibneigh_bpf::Hook;

use super::{exit, JsonOut, Stopped};

#[derive(Args)]
pub struct IcountArgs {
    #[command(flatten)]
    pub choice: IcountChoice,
    #[command(flatten)]
    pub out: JsonOut,
    /// Exit 1 when a goal that could be measured was missed: NEIGH_STATE at
    /// most +4 over flags 0 in every row, NEIGH_REFRESH on a REACHABLE
    /// entry at most +12, and with --with-pristine flags 0 and SKIP_NEIGH
    /// at most +2 over the pristine base in every row.
    #[arg(long)]
    pub check: bool,
    /// Keep the console log even when the guest succeeds.
    #[arg(long)]
    pub keep_console: bool,
    #[command(flatten)]
    pub build: KernelChoice,
}

#[derive(Args)]
pub struct GuestArgs {
    #[arg(long, default_value_t = DEFAULT_RUNS)]
    pub runs: u32,
    #[arg(long = "hook")]
    pub hooks: Vec<Hook>,
    /// Where to write what was run (JSON).
    #[arg(long)]
    pub out: PathBuf,
}

/// `fibneigh icount-guest`: the workload, in the guest.
pub fn guest(args: GuestArgs) -> Result<ExitCode> {
    stop::install().context("failed to install the signal handlers")?;
    let run = match icount::run_workload(args.runs, &measure::hooks(&args.hooks)) {
        Err(fibneigh::error::Error::Interrupted(_)) => return Err(Stopped::Quiet.into()),
        other => other.context("the icount workload failed")?,
    };
    let text = serde_json::to_string_pretty(&run)?;
    std::fs::write(&args.out, text)
        .with_context(|| format!("failed to write {}", args.out.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// `fibneigh vm icount`.
pub fn run(args: IcountArgs) -> Result<ExitCode> {
    stop::install().context("failed to install the signal handlers")?;
    let req = args.choice.request(&args.build, args.keep_console)?;
    let m = match measure::measure_all(&req, args.choice.pristine, args.choice.with_pristine) {
        Err(measure::Error::Stopped(e)) => return Err(Stopped::Guest(e.into()).into()),
        m => m?,
    };
    print!("{}", render::render(&m.report, &m.image));
    if let (Some(rows), Some(goals)) = (&m.series_cost, &m.series_goals) {
        print!("{}", render::render_series(rows));
        if args.choice.pristine_code {
            println!(
                "  (--pristine-code: the pristine base is the base's code on the series' uAPI \
                 headers, kernel series {})",
                m.pristine
                    .as_ref()
                    .map_or("?", |(k, _)| k.key.series.as_str())
            );
        }
        print!(
            "goals (before and after the series):\n{}",
            render::goal_lines(goals)
        );
    }
    args.out.write(&m.json(args.choice.pristine))?;
    Ok(exit(!(args.check && m.goal_missed())))
}
