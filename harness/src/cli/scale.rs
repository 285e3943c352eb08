//! `fibneigh scale`: thousands of stale nexthops at once (see
//! `fibneigh::scale`): arguments, the loop over cases, the table.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use fibneigh::lab::neigh::GcThresholds;
use fibneigh::present::table::Table;
use fibneigh::scale::{self, ScaleCase, ScaleOptions, ScaleResult, StaleBy};
use fibneigh::scenario::{Family, PolicyChoice, Support};
use fibneigh::stop::EXIT_INTERRUPTED;
use fibneigh_bpf::Hook;
use serde::Serialize;

use super::write_json;

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

/// The JSON report.
#[derive(Serialize)]
struct Report<'a> {
    kernel: String,
    patched: bool,
    options: ScaleOptions,
    gc_thresholds: Vec<GcSet>,
    skipped: &'a [String],
    results: &'a [ScaleResult],
}

#[derive(Serialize)]
struct GcSet {
    family: u8,
    before: GcThresholds,
    during: GcThresholds,
}

pub fn run(args: ScaleArgs) -> Result<ExitCode> {
    validate(&args)?;
    fibneigh::stop::install().context("failed to install the signal handlers")?;
    fibneigh::lab::Lab::cleanup_leftovers().context("failed to remove leftover lab namespaces")?;
    let support = Support::probe().context("failed to probe the kernel (are you root?)")?;
    let patched = support.neigh_state && support.neigh_refresh;
    let largest = args.nexthops.iter().copied().max().unwrap_or(1);

    // The thresholds: checked, or raised for the run (restored on drop).
    let mut guards = Vec::new();
    let mut gc_thresholds = Vec::new();
    for family in dedup(&args.family) {
        let v6 = family == Family::V6;
        let before = GcThresholds::read(v6).context("failed to read the GC thresholds")?;
        let needed = before.for_entries(largest);
        if needed != before && !args.raise_gc_thresh {
            bail!(
                "{largest} nexthops need the IPv{family} neighbour table's gc_thresh1..3 at \
                 least {}/{}/{} (now {}/{}/{}); these are global to the machine: pass \
                 --raise-gc-thresh to raise them for the run and restore them after",
                needed.thresh1,
                needed.thresh2,
                needed.thresh3,
                before.thresh1,
                before.thresh2,
                before.thresh3
            );
        }
        if let Some(g) =
            GcThresholds::raise(v6, largest).context("failed to raise the GC thresholds")?
        {
            println!(
                "IPv{family} neighbour GC thresholds raised for the run: {:?} -> {:?} (restored at the end)",
                g.old, g.new
            );
            gc_thresholds.push(GcSet {
                family: if v6 { 6 } else { 4 },
                before: g.old,
                during: g.new,
            });
            guards.push(g);
        }
    }

    let opts = ScaleOptions {
        rate_pps: args.rate,
        window: args.window_ms.map(Duration::from_millis),
    };
    let (cases, skipped) = cases(&args, &support);
    for s in &skipped {
        println!("skipped: {s}");
    }
    let mut results: Vec<ScaleResult> = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let r = scale::run(case, &opts);
        let Some(r) = super::unless_interrupted(r, &format!("scale case {}", case.id()))? else {
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        };
        println!("[{}/{}] {}", i + 1, cases.len(), line(&r));
        if r.sender_fell_behind() {
            eprintln!(
                "warning: {}: the flow reached {:.0} of the {} pps asked for (this machine caps it); \
                 the {} ms window assumed {} pps, so a destination came back less often than it allows for",
                r.id, r.sent_pps, r.rate_pps, r.window_ms, r.rate_pps
            );
        }
        results.push(r);
    }
    let mut problems = Vec::new();
    if args.check {
        if results.is_empty() {
            problems.push("no case ran: this kernel runs none of the policies asked for".into());
        }
        scale::check(&mut results, patched);
        for r in &results {
            problems.extend(r.problems.iter().map(|p| format!("{}: {p}", r.id)));
        }
    }
    problems = super::with_leftovers(problems)?;
    print!("{}", table(&results));
    drop(guards);

    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into());
    if let Some(p) = &args.json {
        write_json(
            p,
            &Report {
                kernel,
                patched,
                options: opts,
                gc_thresholds,
                skipped: &skipped,
                results: &results,
            },
        )?;
    }
    if let Some(dir) = &args.svg_dir {
        let files = scale::plot::write_svgs(&results, dir)?;
        println!("{} figures in {}", files.len(), dir.display());
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("FAIL {p}");
        }
        eprintln!("fibneigh scale: {} problem(s)", problems.len());
        return Ok(ExitCode::FAILURE);
    }
    if args.check {
        println!(
            "scale check: {} case(s) as expected, {} skipped",
            results.len(),
            skipped.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn validate(args: &ScaleArgs) -> Result<()> {
    let max = fibneigh::lab::addr::SCALE_MAX_NEXTHOPS;
    if let Some(n) = args.nexthops.iter().find(|&&n| n == 0 || n > max) {
        bail!("--nexthops {n}: each must be 1 to {max}");
    }
    if let Some(p) = args.moved_pct.iter().find(|&&p| p == 0 || p > 100) {
        bail!("--moved-pct {p}: each must be 1 to 100");
    }
    if args.rate == 0 {
        bail!("--rate must be at least 1");
    }
    if args.check && !args.policy.contains(&PolicyChoice::KernelStack) {
        bail!(
            "--check holds each policy's probes to the kernel stack's for the same case: \
             add kernel-stack to --policy"
        );
    }
    if args.window_ms == Some(0) {
        bail!("--window-ms must be at least 1");
    }
    for (name, empty) in [
        ("--nexthops", args.nexthops.is_empty()),
        ("--moved-pct", args.moved_pct.is_empty()),
        ("--stale", args.stale.is_empty()),
        ("--policy", args.policy.is_empty()),
        ("--hook", args.hook.is_empty()),
        ("--family", args.family.is_empty()),
    ] {
        if empty {
            bail!("{name} needs at least one value");
        }
    }
    Ok(())
}

fn dedup<T: Ord + Copy>(v: &[T]) -> Vec<T> {
    let mut out = v.to_vec();
    out.sort();
    out.dedup();
    out
}

/// Every case asked for, in order (N outermost, so the figures fill up
/// from small to large); the policies the kernel cannot run, by name.
fn cases(args: &ScaleArgs, support: &Support) -> (Vec<ScaleCase>, Vec<String>) {
    let mut cases = Vec::new();
    let mut skipped = Vec::new();
    for p in dedup(&args.policy) {
        let missing = support.missing(p.required_flags());
        if !missing.is_empty() {
            skipped.push(format!(
                "{p}: this kernel lacks {} (the series is not applied)",
                missing.join(", ")
            ));
        }
    }
    for &nexthops in &dedup(&args.nexthops) {
        for &moved_pct in &dedup(&args.moved_pct) {
            for &stale in &dedup(&args.stale) {
                for &family in &dedup(&args.family) {
                    for &policy in &dedup(&args.policy) {
                        if !support.missing(policy.required_flags()).is_empty() {
                            continue;
                        }
                        let hooks: Vec<Option<Hook>> = if policy == PolicyChoice::KernelStack {
                            vec![None]
                        } else {
                            dedup(&args.hook).into_iter().map(Some).collect()
                        };
                        for hook in hooks {
                            cases.push(ScaleCase {
                                nexthops,
                                moved_pct,
                                stale,
                                policy,
                                family,
                                hook,
                            });
                        }
                    }
                }
            }
        }
    }
    (cases, skipped)
}

fn ms(v: f64) -> String {
    format!("{v:.0}")
}

/// One line per case as it finishes.
fn line(r: &ScaleResult) -> String {
    format!(
        "{}: {}/{} recovered{}; {} to the dead MAC, {} lost of {}; {} probes (peak {}/s); table: {} lookups, {} res_failed, {} forced GC, {} full",
        r.id,
        r.recovered,
        r.moved,
        r.recovery_ms.map_or(String::new(), |s| format!(
            " (median {} ms, p99 {} ms, max {} ms)",
            ms(s.median),
            ms(s.p99),
            ms(s.max)
        )),
        r.observed.to_dead,
        r.lost,
        r.sent,
        r.observed.probes_total(),
        r.observed.probes_peak_per_s,
        stat(r, "lookups"),
        stat(r, "res_failed"),
        stat(r, "forced_gc_runs"),
        stat(r, "table_fulls"),
    )
}

fn stat(r: &ScaleResult, k: &str) -> u64 {
    r.table.get(k).copied().unwrap_or(0)
}

/// The summary table.
fn table(results: &[ScaleResult]) -> String {
    let mut t = Table::new()
        .header([
            "N",
            "moved",
            "stale",
            "policy",
            "v",
            "hook",
            "recovered",
            "median ms",
            "p99 ms",
            "max ms",
            "to dead",
            "lost",
            "probes u/g",
            "peak/s",
            "prog ms",
            "softirq ms",
            "res_failed",
            "forced gc",
            "full",
            "problems",
        ])
        .rule();
    for r in results {
        let c = &r.case;
        let spread =
            |f: fn(&scale::Spread) -> f64| r.recovery_ms.as_ref().map_or("-".into(), |s| ms(f(s)));
        t.row([
            c.nexthops.to_string(),
            format!("{} ({}%)", r.moved, c.moved_pct),
            c.stale.to_string(),
            c.policy.to_string(),
            c.family.to_string(),
            c.hook.map_or("-".into(), |h| h.to_string()),
            format!("{}/{}", r.recovered, r.moved),
            spread(|s| s.median),
            spread(|s| s.p99),
            spread(|s| s.max),
            r.observed.to_dead.to_string(),
            r.lost.to_string(),
            format!("{}/{}", r.observed.probes_unicast, r.observed.probes_group),
            r.observed.probes_peak_per_s.to_string(),
            r.prog_run_ms.map_or("-".into(), |v| format!("{v:.1}")),
            r.softirq_ms.to_string(),
            stat(r, "res_failed").to_string(),
            stat(r, "forced_gc_runs").to_string(),
            stat(r, "table_fulls").to_string(),
            if r.problems.is_empty() {
                String::new()
            } else {
                r.problems.join("; ")
            },
        ]);
    }
    t.render()
}
