//! `fibneigh scale`: thousands of stale nexthops at once (see
//! `fibneigh::scale`): arguments and printing; the run is
//! `fibneigh::scale::campaign`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use fibneigh::scale::campaign::{self, Report, ScaleRequest};
use fibneigh::scale::{self, StaleBy};
use fibneigh::scenario::{Family, PolicyChoice};
use fibneigh_bpf::Hook;

use super::{exit, write_json, Stopped};

#[derive(Args)]
pub struct ScaleArgs {
    /// Numbers of nexthops (comma-separated, up to 65000), each its own
    /// neighbour entry and destination. The stock GC thresholds (512 and
    /// 1024) hold about 200; more needs --raise-gc-thresh.
    #[arg(long, value_delimiter = ',', default_value = "1,16,128")]
    pub nexthops: Vec<u32>,
    /// Percent of the nexthops moved at once (comma-separated; at least
    /// one nexthop moves).
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    pub moved_pct: Vec<u32>,
    /// How the entries went STALE: forced (every entry replaced at the
    /// move) or aged (they aged by themselves before it).
    #[arg(long, value_delimiter = ',', default_value = "forced")]
    pub stale: Vec<StaleBy>,
    /// Policies (comma-separated): baseline, always-neigh, state-aware,
    /// refresh, header (the public header's example), kernel-stack (no
    /// program). A policy whose flags this kernel lacks is skipped, by
    /// name.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "baseline,always-neigh,state-aware,refresh,header,kernel-stack"
    )]
    pub policy: Vec<PolicyChoice>,
    /// Hooks (comma-separated): tc, xdp.
    #[arg(long, value_delimiter = ',', default_value = "tc,xdp")]
    pub hook: Vec<Hook>,
    /// Address families (comma-separated): 4, 6.
    #[arg(long, value_delimiter = ',', default_value = "4")]
    pub family: Vec<Family>,
    /// Aggregate rate of the flow over all nexthops, packets per second.
    #[arg(long, default_value_t = 2000)]
    pub rate: u32,
    /// Window after the move, in ms [default: 4 s plus six rounds of the
    /// flow over every nexthop].
    #[arg(long)]
    pub window_ms: Option<u64>,
    /// Raise the neighbour tables' GC thresholds (gc_thresh1..3, which are
    /// global to the machine, not per namespace) for the largest N, and
    /// put them back at the end. Without it, an N the current thresholds
    /// cannot hold is refused.
    #[arg(long)]
    pub raise_gc_thresh: bool,
    /// Fail (exit 1) unless every moved destination recovers for the
    /// policies that re-validate, none for baseline, and a program's
    /// probes stay within 10x the stack's for the same case.
    #[arg(long)]
    pub check: bool,
    /// Also write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also draw the figures (SVG, a quantity against N per staleness,
    /// fraction and family) into this directory.
    #[arg(long)]
    pub svg_dir: Option<PathBuf>,
}

impl ScaleArgs {
    fn request(&self) -> ScaleRequest {
        ScaleRequest {
            nexthops: self.nexthops.clone(),
            moved_pct: self.moved_pct.clone(),
            stale: self.stale.clone(),
            policy: self.policy.clone(),
            hook: self.hook.clone(),
            family: self.family.clone(),
            rate: self.rate,
            window_ms: self.window_ms,
            raise_gc_thresh: self.raise_gc_thresh,
            check: self.check,
        }
    }
}

pub fn run(args: ScaleArgs) -> Result<ExitCode> {
    let req = args.request();
    campaign::validate(&req)?;
    let support = super::prepare_lab()?;
    let patched = support.neigh_state && support.neigh_refresh;
    let (guards, gc_thresholds) = campaign::gc_thresholds(&req, |family, g| {
        println!(
            "IPv{family} neighbour GC thresholds raised for the run: {:?} -> {:?} (restored at the end)",
            g.old, g.new
        );
    })?;
    let opts = req.options();
    let (cases, skipped) = campaign::cases(&req, &support);
    for s in &skipped {
        println!("skipped: {s}");
    }
    let ran = campaign::run_cases(&cases, &opts, |i, r| {
        println!("[{}/{}] {}", i + 1, cases.len(), campaign::line(r));
        if r.sender_fell_behind() {
            eprintln!(
                "warning: {}: the flow reached {:.0} of the {} pps asked for (this machine caps it); \
                 the {} ms window assumed {} pps, so a destination came back less often than it allows for",
                r.id, r.sent_pps, r.rate_pps, r.window_ms, r.rate_pps
            );
        }
    });
    let mut results = match ran {
        Err(campaign::Error::Interrupted) => return Err(Stopped::Lab.into()),
        r => r?,
    };
    let problems = campaign::judge(&req, &mut results, patched);
    let problems = super::with_leftovers(problems)?;
    print!("{}", campaign::table(&results));
    drop(guards);

    let report = Report {
        kernel: fibneigh::bench::platform::kernel_release(),
        patched,
        options: opts,
        gc_thresholds,
        skipped: &skipped,
        results: &results,
    };
    write_json(args.json.as_deref(), &report)?;
    if let Some(dir) = &args.svg_dir {
        let files = scale::plot::write_svgs(&results, dir)?;
        println!("{} figures in {}", files.len(), dir.display());
    }
    for p in &problems {
        eprintln!("FAIL {p}");
    }
    if !problems.is_empty() {
        eprintln!("fibneigh scale: {} problem(s)", problems.len());
    } else if args.check {
        let (ran, skipped) = (results.len(), skipped.len());
        println!("scale check: {ran} case(s) as expected, {skipped} skipped");
    }
    Ok(exit(problems.is_empty()))
}
