//! `fibneigh scale`'s whole run: the request checked, the neighbour
//! tables' GC thresholds checked or raised, every case in order, the
//! check, the JSON report; and its text (a line per case, the table).

use fibneigh_bpf::Hook;
use serde::Serialize;

use super::{check, run, ScaleCase, ScaleOptions, ScaleResult, Spread, StaleBy};
use crate::lab::neigh::{GcGuard, GcThresholds};
use crate::present::table::Table;
use crate::scenario::{Family, PolicyChoice, Support};

/// What can stop a scale run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request that cannot run (the flag's name and why).
    #[error("{0}")]
    Invalid(String),
    #[error(
        "{largest} nexthops need the IPv{family} neighbour table's gc_thresh1..3 at \
         least {}/{}/{} (now {}/{}/{}); these are global to the machine: pass \
         --raise-gc-thresh to raise them for the run and restore them after",
        .needed.thresh1, .needed.thresh2, .needed.thresh3,
        .now.thresh1, .now.thresh2, .now.thresh3
    )]
    GcTooLow {
        largest: u32,
        family: Family,
        needed: GcThresholds,
        now: GcThresholds,
    },
    #[error("failed to read the GC thresholds")]
    ReadGc(#[source] crate::lab::Error),
    #[error("failed to raise the GC thresholds")]
    RaiseGc(#[source] crate::lab::Error),
    #[error("scale case {id} failed")]
    Case {
        id: String,
        #[source]
        error: crate::error::Error,
    },
    /// Stopped by SIGINT/SIGTERM; the lab was removed.
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err(Error::Invalid(format!($($arg)*)))
    };
}

/// Every axis of a run: the cases are their product; and the flow's rate
/// and window, the GC thresholds and the check.
#[derive(Debug, Clone, clap::Args)]
pub struct ScaleRequest {
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
}

impl ScaleRequest {
    /// The flow's rate and window the request asks for.
    pub fn options(&self) -> ScaleOptions {
        let window = self.window_ms.map(std::time::Duration::from_millis);
        ScaleOptions {
            rate_pps: self.rate,
            window,
        }
    }
}

/// The JSON report.
#[derive(Serialize)]
pub struct Report<'a> {
    pub kernel: String,
    /// As [`crate::bench::BenchReport::kernel_build`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_build: Option<String>,
    pub patched: bool,
    pub options: ScaleOptions,
    pub gc_thresholds: Vec<GcSet>,
    pub skipped: &'a [String],
    pub results: &'a [ScaleResult],
}

/// A family's GC thresholds before and during the run.
#[derive(Serialize)]
pub struct GcSet {
    pub family: u8,
    pub before: GcThresholds,
    pub during: GcThresholds,
}

/// The thresholds for the largest N: checked, or with `raise_gc_thresh`
/// raised for the run (restored when the guards drop); `raised` hears of
/// each family raised.
pub fn gc_thresholds(
    args: &ScaleRequest,
    mut raised: impl FnMut(Family, &GcGuard),
) -> Result<(Vec<GcGuard>, Vec<GcSet>)> {
    let largest = args.nexthops.iter().copied().max().unwrap_or(1);
    let mut guards = Vec::new();
    let mut gc_thresholds = Vec::new();
    for family in dedup(&args.family) {
        let v6 = family == Family::V6;
        let before = GcThresholds::read(v6).map_err(Error::ReadGc)?;
        let needed = before.for_entries(largest);
        if needed != before && !args.raise_gc_thresh {
            return Err(Error::GcTooLow {
                largest,
                family,
                needed,
                now: before,
            });
        }
        if let Some(g) = GcThresholds::raise(v6, largest).map_err(Error::RaiseGc)? {
            raised(family, &g);
            gc_thresholds.push(GcSet {
                family: if v6 { 6 } else { 4 },
                before: g.old,
                during: g.new,
            });
            guards.push(g);
        }
    }
    Ok((guards, gc_thresholds))
}

/// Run `cases` in order; `done` hears of each as it finishes (its index
/// from 0).
pub fn run_cases(
    cases: &[ScaleCase],
    opts: &ScaleOptions,
    mut done: impl FnMut(usize, &ScaleResult),
) -> Result<Vec<ScaleResult>> {
    let mut results = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let r = match run(case, opts) {
            Ok(r) => r,
            Err(crate::error::Error::Interrupted(_)) => return Err(Error::Interrupted),
            Err(error) => {
                return Err(Error::Case {
                    id: case.id(),
                    error,
                })
            }
        };
        done(i, &r);
        results.push(r);
    }
    Ok(results)
}

/// With `check`, the behaviour checks ([`check`]) over `results`, and
/// what is wrong, each prefixed with its case; nothing without.
pub fn judge(args: &ScaleRequest, results: &mut [ScaleResult], patched: bool) -> Vec<String> {
    let mut problems = Vec::new();
    if args.check {
        if results.is_empty() {
            problems.push("no case ran: this kernel runs none of the policies asked for".into());
        }
        check(results, patched);
        for r in results.iter() {
            problems.extend(r.problems.iter().map(|p| format!("{}: {p}", r.id)));
        }
    }
    problems
}

/// Refuse a request that cannot run: a value out of range, a list left
/// empty, `check` without the kernel stack to compare with.
pub fn validate(args: &ScaleRequest) -> Result<()> {
    let max = crate::lab::addr::SCALE_MAX_NEXTHOPS;
    if let Some(n) = args.nexthops.iter().find(|&&n| n == 0 || n > max) {
        invalid!("--nexthops {n}: each must be 1 to {max}");
    }
    if let Some(p) = args.moved_pct.iter().find(|&&p| p == 0 || p > 100) {
        invalid!("--moved-pct {p}: each must be 1 to 100");
    }
    if args.rate == 0 {
        invalid!("--rate must be at least 1");
    }
    if args.check && !args.policy.contains(&PolicyChoice::KernelStack) {
        invalid!(
            "--check holds each policy's probes to the kernel stack's for the same case: \
             add kernel-stack to --policy"
        );
    }
    if args.window_ms == Some(0) {
        invalid!("--window-ms must be at least 1");
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
            invalid!("{name} needs at least one value");
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
pub fn cases(args: &ScaleRequest, support: &Support) -> (Vec<ScaleCase>, Vec<String>) {
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
pub fn line(r: &ScaleResult) -> String {
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
pub fn table(results: &[ScaleResult]) -> String {
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
            |f: fn(&Spread) -> f64| r.recovery_ms.as_ref().map_or("-".into(), |s| ms(f(s)));
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
