//! `fibneigh scale`: thousands of stale nexthops at once (see
//! `fibneigh::scale`): arguments and printing; the run is
//! `fibneigh::scale::campaign`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use fibneigh::scale;
use fibneigh::scale::campaign::{self, Report, ScaleRequest};

use super::{exit, JsonOut, Stopped};

#[derive(Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub request: ScaleRequest,
    #[command(flatten)]
    pub out: JsonOut,
    /// Also draw the figures (SVG, a quantity against N per staleness,
    /// fraction and family) into this directory.
    #[arg(long)]
    pub svg_dir: Option<PathBuf>,
}

pub fn run(args: ScaleArgs) -> Result<ExitCode> {
    let req = &args.request;
    campaign::validate(req)?;
    let support = super::prepare_lab()?;
    let patched = support.neigh_state && support.neigh_refresh;
    let (guards, gc_thresholds) = campaign::gc_thresholds(req, |family, g| {
        println!(
            "IPv{family} neighbour GC thresholds raised for the run: {:?} -> {:?} (restored at the end)",
            g.old, g.new
        );
    })?;
    let opts = req.options();
    let (cases, skipped) = campaign::cases(req, &support);
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
    let problems = campaign::judge(req, &mut results, patched);
    let problems = super::with_leftovers(problems)?;
    print!("{}", campaign::table(&results));
    drop(guards);

    let report = Report {
        kernel: fibneigh::bench::platform::kernel_release(),
        kernel_build: fibneigh::bench::platform::kernel_build(),
        patched,
        options: opts,
        gc_thresholds,
        skipped: &skipped,
        results: &results,
    };
    args.out.write(&report)?;
    if let Some(dir) = &args.svg_dir {
        let files = scale::plot::write_svgs(&results, dir)?;
        println!("{} figures in {}", files.len(), dir.display());
    }
    for p in &problems {
        eprintln!("FAIL {p}");
    }
    if !problems.is_empty() {
        eprintln!("fibneigh scale: {} problem(s)", problems.len());
    } else if req.check {
        let (ran, skipped) = (results.len(), skipped.len());
        println!("scale check: {ran} case(s) as expected, {skipped} skipped");
    }
    Ok(exit(problems.is_empty()))
}
