//! `fibneigh vm icount`: instructions per `bpf_fib_lookup()` call, counted
//! by the `fibneigh-icount` QEMU plugin in a TCG guest; and
//! `fibneigh icount-guest`, the workload it runs inside: arguments and
//! printing; the measurement is `fibneigh::bench::icount::measure`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use fibneigh::bench::icount::measure::{self, Request};
use fibneigh::bench::icount::{self, render, DEFAULT_RUNS};
use fibneigh::pipeline::KernelChoice;
use fibneigh::stop;
use fibneigh_bpf::Hook;

use super::{exit, write_json, Stopped};

#[derive(Args)]
pub struct IcountArgs {
    /// Test runs per cell; each run is 64 lookups.
    #[arg(long, default_value_t = DEFAULT_RUNS)]
    pub runs: u32,
    /// Hooks (repeatable) [default: tc and xdp].
    #[arg(long = "hook")]
    pub hooks: Vec<Hook>,
    /// Measure the pristine base (same source, config and profile, no
    /// patches) instead of the series: flags 0 before the series.
    #[arg(long)]
    pub pristine: bool,
    /// Measure the pristine base first, then the series, and show flags 0
    /// (and SKIP_NEIGH) before and after the series.
    #[arg(long, conflicts_with = "pristine")]
    pub with_pristine: bool,
    /// The QEMU plugin [default: libfibneigh_icount_plugin.so next to this
    /// binary; `cargo build -p fibneigh-icount-plugin` makes it].
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Seconds before the guest is killed.
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Exit 1 when a gated goal that could be measured was missed: with
    /// --with-pristine, flags 0 and SKIP_NEIGH at most +2 over the
    /// pristine base in every row. The neighbour flags' own goals
    /// (NEIGH_STATE +4, NEIGH_REFRESH +12) are reported with their verdict.
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
    let req = Request {
        plugin: measure::locate_plugin(args.plugin.clone())?,
        build: args.build.request()?,
        runs: args.runs,
        hooks: args.hooks.clone(),
        timeout: Duration::from_secs(args.timeout),
        keep_console: args.keep_console,
    };
    let m = match measure::measure_all(&req, args.pristine, args.with_pristine) {
        Err(measure::Error::Stopped(e)) => return Err(Stopped::Guest(e.into()).into()),
        m => m?,
    };
    print!("{}", render::render(&m.report, &m.image));
    if let (Some(rows), Some(goals)) = (&m.series_cost, &m.series_goals) {
        print!("{}", render::render_series(rows));
        print!(
            "goals (before and after the series):\n{}",
            render::goal_lines(goals)
        );
    }
    write_json(args.json.as_deref(), &m.json(args.pristine))?;
    Ok(exit(!(args.check && m.gated_goal_missed())))
}
