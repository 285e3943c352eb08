//! `fibneigh trial`: the stale-neighbour scenarios against a forwarder this
//! project did not write, judged from the wire (see `fibneigh::trial`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use fibneigh::external::{fetch_xdp_tools, ForwarderChoice};
use fibneigh::report;
use fibneigh::scenario::{self, Family, Scenario};
use fibneigh::trial::{self, Expectation};
use fibneigh_vm as vm;

use super::{exit, ResultFiles, Stopped, TimingArgs};

#[derive(Args)]
pub struct TrialArgs {
    #[command(flatten)]
    pub forwarder: ForwarderChoice,
    /// With --xdp-forward: only fetch xdp-tools into the cache (if it is
    /// not there) and print where it is; run nothing.
    #[arg(long, requires = "xdp_forward")]
    pub fetch_only: bool,
    /// The forwarder's name in the tables and reports [default: the
    /// object's file name, the first word of --attach, or xdp-forward].
    #[arg(long)]
    pub name: Option<String>,
    /// Scenarios (repeatable) [default: ip-reassign, ip-reassign-garp,
    /// reachable-fastpath, gateway].
    #[arg(long = "scenario")]
    pub scenarios: Vec<Scenario>,
    /// Address families (repeatable) [default: 4 and 6].
    #[arg(long = "family")]
    pub families: Vec<Family>,
    /// SCENARIO=DIAGNOSIS (repeatable; black-holes, recovers or forwards):
    /// fail unless the forwarder does that there.
    #[arg(long = "expect", value_name = "SCENARIO=DIAGNOSIS")]
    pub expect: Vec<Expectation>,
    #[command(flatten)]
    pub out: ResultFiles,
    /// Cache directory (xdp-tools is unpacked there).
    #[arg(long, env = "FIBNEIGH_CACHE", default_value_os_t = vm::default_cache_dir())]
    pub cache_dir: PathBuf,
    #[command(flatten)]
    pub timing: TimingArgs,
}

pub fn run(args: TrialArgs) -> Result<ExitCode> {
    if args.fetch_only {
        let tools = fetch_xdp_tools(&args.cache_dir)?;
        println!(
            "xdp-tools {}: {}",
            tools.version,
            tools.binary("xdp-forward").display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    trial::check_request(&args.scenarios, &args.expect)?;
    let spec = args.forwarder.spec(args.name.as_deref(), &args.cache_dir)?;
    let support = super::prepare_lab()?;
    let external = spec
        .load()
        .with_context(|| format!("forwarder {}", spec.name()))?;
    let opts = args.timing.options(false);
    let cells = trial::cells(&args.scenarios, &args.families, &external);
    eprintln!(
        "fibneigh trial: {} on {} cells ({}); kernel accepts NEIGH_STATE: {}, NEIGH_REFRESH: {}",
        external.name(),
        cells.len(),
        external.hook().name(),
        support.neigh_state,
        support.neigh_refresh
    );
    let (results, interrupted) = scenario::run_cells(
        &cells,
        |cell| trial::run(cell, &support, &opts, &external, &args.expect),
        |i, cell, r, _| {
            eprintln!(
                "[{}/{}] {}: {}",
                i + 1,
                cells.len(),
                cell.id(),
                r.diagnosis.as_deref().unwrap_or("-")
            )
        },
    );
    println!("forwarder: {}", external.name());
    print!("{}", report::render_table(&results));
    print!("{}", report::render_verdicts(&results));
    args.out.write(&results, &results)?;
    if interrupted {
        return Err(Stopped::Lab.into());
    }
    let failed = scenario::failures(&results);
    if failed > 0 {
        eprintln!("fibneigh trial: {failed} cell(s) failed");
    }
    Ok(exit(failed == 0))
}
