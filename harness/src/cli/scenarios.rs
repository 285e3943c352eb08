//! `fibneigh cell` (one cell) and `fibneigh matrix` (every cell, a table,
//! JSON, SVG timelines, `--check` against the expectations).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use fibneigh::report;
use fibneigh::scenario::{self, Cell, Family, MatrixReport, PolicyChoice, Scenario, Verdict};
use fibneigh_bpf::Hook;

use super::{exit, write_file, JsonOut, ResultFiles, Stopped, TimingArgs};

#[derive(Args)]
pub struct CellArgs {
    /// ip-reassign, ip-reassign-aged, ip-reassign-garp, state-matrix,
    /// gateway, managed, permanent or reachable-fastpath.
    #[arg(long)]
    pub scenario: Scenario,
    /// baseline, always-neigh, state-aware, refresh, kernel-stack or header (the public header's example program).
    #[arg(long)]
    pub policy: PolicyChoice,
    /// 4 or 6.
    #[arg(long, default_value = "4")]
    pub family: Family,
    /// tc or xdp (ignored for kernel-stack).
    #[arg(long, default_value = "tc")]
    pub hook: Hook,
    #[command(flatten)]
    pub out: JsonOut,
    #[command(flatten)]
    pub timing: TimingArgs,
}

#[derive(Args)]
pub struct MatrixArgs {
    #[command(flatten)]
    pub out: ResultFiles,
    /// Write one SVG timeline per scenario into this directory, and
    /// `headline.svg`: ip-reassign, IPv4, XDP, every policy and the stack.
    #[arg(long)]
    pub svg_dir: Option<PathBuf>,
    /// Only ip-reassign (forced STALE), state-matrix and
    /// reachable-fastpath (for slow, emulated machines).
    #[arg(long)]
    pub quick: bool,
    /// Exit non-zero unless every cell matches the expectations.
    #[arg(long)]
    pub check: bool,
    /// Only these scenarios (repeatable).
    #[arg(long = "scenario")]
    pub scenarios: Vec<Scenario>,
    /// Only the cells of these policies (repeatable): baseline,
    /// always-neigh, state-aware, refresh, kernel-stack or header. CI runs
    /// the policies that set the series' flags on the debug kernel and the
    /// others on the plain one.
    #[arg(long = "policy")]
    pub policies: Vec<PolicyChoice>,
    /// Fail unless every cell of the header's example took this path:
    /// `fallback` (a kernel without the series) or `state`.
    #[arg(long, value_parser = ["fallback", "state"])]
    pub expect_header_path: Option<String>,
    /// Fail unless the header's example objects are, byte for byte, those
    /// this earlier `matrix --json` report recorded (the same objects on
    /// both kernels).
    #[arg(long, value_name = "JSON", requires = "expect_header_path")]
    pub same_header_objects_as: Option<PathBuf>,
    #[command(flatten)]
    pub timing: TimingArgs,
}

pub fn cell(args: CellArgs) -> Result<ExitCode> {
    let cell = Cell::new(args.scenario, args.policy, args.family, args.hook);
    scenario::check_policy(&cell).map_err(anyhow::Error::msg)?;
    let support = super::prepare_lab()?;
    let opts = args.timing.options(false);
    let r = scenario::run_case(&cell, &support, &opts).map_err(|_| Stopped::Lab)?;
    print!("{}", report::render_table(std::slice::from_ref(&r)));
    print!("{}", report::render_details(&r));
    args.out.write(&r)?;
    // An error is a failed verdict too.
    Ok(exit(!matches!(r.verdict, Verdict::Fail(_))))
}

/// The cells of `scenarios`, only those of `policies` if any are named;
/// an error naming what was asked for when no cell is left (a policy the
/// matrix never runs, such as `external`, or none of those scenarios').
fn select(scenarios: &[Scenario], policies: &[PolicyChoice]) -> Result<Vec<Cell>> {
    let mut cells = scenario::cells(scenarios);
    if policies.is_empty() {
        return Ok(cells);
    }
    cells.retain(|c| policies.contains(&c.policy));
    if cells.is_empty() {
        let names = |v: Vec<String>| v.join(", ");
        anyhow::bail!(
            "no matrix cell runs with --policy {} in the scenarios {}",
            names(policies.iter().map(|p| p.to_string()).collect()),
            names(scenarios.iter().map(|s| s.name().to_string()).collect()),
        );
    }
    Ok(cells)
}

pub fn matrix(args: MatrixArgs) -> Result<ExitCode> {
    let scenarios: Vec<Scenario> = if !args.scenarios.is_empty() {
        args.scenarios.clone()
    } else if args.quick {
        Scenario::QUICK.to_vec()
    } else {
        Scenario::ALL.to_vec()
    };
    // Read before the matrix runs: a path or report that is no good is
    // refused in a moment, not after every cell.
    let earlier_objects = match &args.same_header_objects_as {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("failed to read {}", p.display()))?;
            let objects = scenario::header_objects_in_report(&text)
                .map_err(|why| anyhow::anyhow!("{}: {why}", p.display()))?;
            Some((p, objects))
        }
        None => None,
    };
    let cells = select(&scenarios, &args.policies)?;
    if args.expect_header_path.is_some() && !cells.iter().any(|c| c.policy == PolicyChoice::Header)
    {
        anyhow::bail!(
            "--expect-header-path needs the header's cells: add --policy header, or drop --expect-header-path"
        );
    }
    let support = super::prepare_lab()?;
    let opts = args.timing.options(args.quick);
    let started = Instant::now();
    eprintln!(
        "fibneigh matrix: {} cells; kernel accepts NEIGH_STATE: {}, NEIGH_REFRESH: {}",
        cells.len(),
        support.neigh_state,
        support.neigh_refresh
    );
    let (results, interrupted) = scenario::run_cells(
        &cells,
        |cell| scenario::run_case(cell, &support, &opts),
        |i, cell, r, took| {
            eprintln!(
                "[{}/{}] {}: {} ({:.1}s)",
                i + 1,
                cells.len(),
                cell.id(),
                r.outcome.label(),
                took.as_secs_f64()
            )
        },
    );
    print!("{}", report::render_table(&results));
    let failures = scenario::failures(&results);
    print!(
        "{}",
        report::render_summary(&results, started.elapsed().as_secs_f64())
    );
    let kernel_release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let m = MatrixReport {
        kernel_release,
        support,
        options: opts,
        quick: args.quick,
        cells: &results,
        failures,
    };
    args.out.write(&m, &results)?;
    if let Some(dir) = &args.svg_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        // A scenario none of whose cells ran (--policy) gets no picture.
        let drawn: Vec<Scenario> = scenarios
            .iter()
            .copied()
            .filter(|s| cells.iter().any(|c| c.scenario == *s))
            .collect();
        for (name, svg) in report::render_svgs(&drawn, &results) {
            write_file(&dir.join(name), &svg)?;
        }
    }
    if interrupted {
        return Err(Stopped::Lab.into());
    }
    if args.check && failures > 0 {
        eprintln!("fibneigh matrix --check: {failures} cell(s) do not match the expectations");
        return Ok(ExitCode::FAILURE);
    }
    if let Some(want) = &args.expect_header_path {
        let objects = match scenario::header_objects(&results, want) {
            Ok(o) => o,
            Err(why) => {
                eprintln!("fibneigh matrix --expect-header-path {want}: {why}");
                return Ok(ExitCode::FAILURE);
            }
        };
        if let Some((p, earlier)) = &earlier_objects {
            if *earlier != objects {
                eprintln!(
                    "fibneigh matrix: the header's objects differ from {}: {earlier:?} there, {objects:?} here",
                    p.display()
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        for (name, digest) in &objects {
            println!("{name} sha256 {digest}: the {want} path in every cell");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fibneigh_bpf::Policy;

    /// CI's split: the cells of the policies that set the series' flags
    /// (debug kernel) and the others (plain kernel) are the whole matrix,
    /// each cell once.
    #[test]
    fn policy_selection_splits_the_matrix_without_loss() {
        let all = select(Scenario::ALL, &[]).expect("all");
        let flags = [
            PolicyChoice::Prog(Policy::StateAware),
            PolicyChoice::Prog(Policy::Refresh),
            PolicyChoice::Header,
        ];
        let rest = [
            PolicyChoice::Prog(Policy::Baseline),
            PolicyChoice::Prog(Policy::AlwaysNeigh),
            PolicyChoice::KernelStack,
        ];
        let a = select(Scenario::ALL, &flags).expect("flags");
        let b = select(Scenario::ALL, &rest).expect("rest");
        assert!(a.iter().all(|c| flags.contains(&c.policy)));
        assert!(b.iter().all(|c| rest.contains(&c.policy)));
        let mut both: Vec<Cell> = a.iter().chain(&b).copied().collect();
        both.sort();
        let mut every = all.clone();
        every.sort();
        assert_eq!(both, every);
        assert!(!a.is_empty() && !b.is_empty());
    }

    /// A selection no cell is left of is refused, naming what was asked.
    #[test]
    fn a_policy_the_matrix_never_runs_is_refused() {
        let err = select(&[Scenario::StateMatrix], &[PolicyChoice::External])
            .expect_err("no cell")
            .to_string();
        assert!(
            err.contains("external") && err.contains("state-matrix"),
            "{err}"
        );
    }
}
