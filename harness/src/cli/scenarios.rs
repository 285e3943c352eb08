//! `fibneigh cell` (one cell) and `fibneigh matrix` (every cell, a table,
//! JSON, SVG timelines, `--check` against the expectations).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use fibneigh::report;
use fibneigh::scenario::{self, Cell, Family, MatrixReport, PolicyChoice, Scenario, Spec, Verdict};
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
    /// `headline.svg`: ip-reassign, IPv4, XDP, every policy run (with
    /// --policy, those) and the stack if it ran.
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

/// For --expect-header-path: an error unless `cells` hold the header's
/// example, naming the scenarios that have it.
fn header_cells_selected(cells: &[Cell]) -> Result<()> {
    if cells.iter().any(|c| c.policy == PolicyChoice::Header) {
        return Ok(());
    }
    let with: Vec<&str> = Scenario::ALL
        .iter()
        .filter(|s| Spec::of(**s).policies().contains(&PolicyChoice::Header))
        .map(|s| s.name())
        .collect();
    anyhow::bail!(
        "--expect-header-path needs the header's example, which runs only in {} \
         (with --policy, name header too)",
        with.join(", ")
    )
}

/// The cells of `scenarios`, only those of `policies` if any are named;
/// an error naming what was asked for when no cell is left (a policy none
/// of those scenarios runs, e.g. `--scenario managed --policy refresh`).
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
    if args.expect_header_path.is_some() {
        header_cells_selected(&cells)?;
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
        policies: args.policies.iter().map(|p| p.name()).collect(),
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
        let refresh = PolicyChoice::Prog(Policy::Refresh);
        let err = select(&[Scenario::Managed], &[refresh])
            .expect_err("no cell")
            .to_string();
        assert!(err.contains("refresh") && err.contains("managed"), "{err}");
    }

    /// --expect-header-path is refused, before any lab is made, for a
    /// selection without the header's cells, naming where they are.
    #[test]
    fn header_path_needs_the_header_cells() {
        let baseline = [PolicyChoice::Prog(Policy::Baseline)];
        let err = header_cells_selected(&select(Scenario::ALL, &baseline).expect("cells"))
            .expect_err("no header cell")
            .to_string();
        assert!(err.contains("ip-reassign"), "{err}");
        let err = header_cells_selected(&select(&[Scenario::Gateway], &[]).expect("cells"))
            .expect_err("gateway has none")
            .to_string();
        assert!(!err.contains("gateway"), "{err}");
        assert!(header_cells_selected(&select(Scenario::ALL, &[]).expect("all")).is_ok());
    }

    /// scripts/test.sh runs the matrix in two guests, each with a
    /// --policy list: together they are every policy the matrix runs,
    /// each once; the debug kernel's set the series' flags (the header's
    /// example does there), the plain kernel's set none.
    #[test]
    fn ci_runs_every_policy_once_across_its_two_guests() {
        use fibneigh_bpf::params::flags;
        let script = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test.sh"),
        )
        .expect("scripts/test.sh");
        let lists: Vec<Vec<PolicyChoice>> = script
            .lines()
            .filter(|l| l.contains(" matrix --check") && l.contains("--policy"))
            .map(|l| {
                l.split(" --policy ")
                    .skip(1)
                    .map(|w| {
                        w.split_whitespace()
                            .next()
                            .expect("a policy")
                            .parse()
                            .expect("a policy name")
                    })
                    .collect()
            })
            .collect();
        assert_eq!(lists.len(), 2, "a debug and a plain matrix: {lists:?}");
        let debug = lists
            .iter()
            .find(|l| l.contains(&PolicyChoice::Header))
            .expect("the header's cells run on the debug kernel");
        let plain = lists.iter().find(|l| *l != debug).expect("plain");
        let mut both: Vec<PolicyChoice> = debug.iter().chain(plain).copied().collect();
        both.sort();
        let mut every = PolicyChoice::all();
        every.push(PolicyChoice::Header);
        every.sort();
        assert_eq!(both, every);
        let series = flags::NEIGH_STATE | flags::NEIGH_REFRESH;
        for p in debug {
            assert!(
                p.required_flags() & series != 0 || *p == PolicyChoice::Header,
                "{p} sets none of the series' flags"
            );
        }
        for p in plain {
            assert_eq!(p.required_flags() & series, 0, "{p} sets the series' flags");
        }
    }
}
