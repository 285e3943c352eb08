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
use fibneigh_bpf::Hook;
use fibneigh_vm as vm;

use super::{exit, ResultFiles, Stopped, TimingArgs};

#[derive(Args)]
pub struct TrialArgs {
    /// The forwarder as a BPF object file: the harness loads it as it is
    /// and attaches its XDP or tc program to the DUT's client-facing device.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["attach", "xdp_forward"])]
    pub object: Option<PathBuf>,
    /// With --object: the program (name or section) to attach, when the
    /// object has more than one XDP/tc program.
    #[arg(long, requires = "object")]
    pub program: Option<String>,
    /// The forwarder as a command that attaches it, run with `sh -c`
    /// inside the DUT's namespace: `{ifaces}` becomes the DUT's two
    /// devices, `{ns}` the namespace (e.g. 'xdp-forward load -m native
    /// {ifaces}').
    #[arg(long, value_name = "CMD", requires_all = ["detach", "hook"], conflicts_with = "xdp_forward")]
    pub attach: Option<String>,
    /// With --attach: the command that detaches it (e.g. 'xdp-forward
    /// unload {ifaces}'). Afterwards no XDP program and no tc filter may be
    /// left on the DUT's devices.
    #[arg(long, value_name = "CMD", requires = "attach")]
    pub detach: Option<String>,
    /// With --attach: where the forwarder runs (tc or xdp).
    #[arg(long)]
    pub hook: Option<Hook>,
    /// xdp-forward from Debian trixie's xdp-tools, unmodified (fetched into
    /// the cache on first use; run with trixie's own loader and libraries),
    /// attached with 'xdp-forward load -m native {ifaces}'.
    #[arg(long)]
    pub xdp_forward: bool,
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

impl TrialArgs {
    fn forwarder(&self) -> ForwarderChoice {
        ForwarderChoice {
            object: self.object.clone(),
            program: self.program.clone(),
            attach: self.attach.clone(),
            detach: self.detach.clone(),
            hook: self.hook,
            xdp_forward: self.xdp_forward,
            name: self.name.clone(),
            cache_dir: self.cache_dir.clone(),
        }
    }
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
    let spec = args.forwarder().spec()?;
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
