//! The scenarios of docs/design.md as a table of cells (scenario x policy x
//! family x hook), one [`spec::Spec`] per scenario, and one [`run_case`]
//! that runs a cell in a fresh lab and returns its judged
//! [`CellResult`].
//!
//! Inside, imports run one way: `cell`, `options`, `support` and `result`
//! are plain data; `spec` describes the scenarios with them; `expect`
//! judges results; `run` and `state_matrix` produce them.

pub mod cell;
pub mod expect;
pub mod options;
pub(crate) mod program;
pub mod result;
pub(crate) mod run;
pub mod spec;
mod state_matrix;
pub mod support;

pub use cell::{pick, service, Cell, Family, PolicyChoice, Scenario};
pub use options::{NeighTimers, Options};
pub use program::object_digest;
pub use result::{
    header_objects, header_objects_in_report, CellResult, Expect, MatrixReport, Outcome, StateRow,
    Verdict,
};
pub use run::NO_FLOW_BEFORE_MOVE;
pub use spec::{cells, Kind, Spec};
pub use support::Support;

use crate::external::External;
use crate::stop::Interrupted;

/// Errors inside a cell end up in the cell's result, except
/// [`Error::Interrupted`], which stops the whole run.
use crate::error::{Error, Result};

/// Run one cell in a fresh lab. Failures of the cell end up in its
/// result; only an interruption (SIGINT/SIGTERM) is an error here.
pub fn run_case(cell: &Cell, support: &Support, opts: &Options) -> Result<CellResult, Interrupted> {
    run_case_with(cell, support, opts, None)
}

/// [`run_case`] with `external` on the DUT instead of the cell's policy
/// (`fibneigh trial`; the cell's policy is [`PolicyChoice::External`]).
pub fn run_case_with(
    cell: &Cell,
    support: &Support,
    opts: &Options,
    external: Option<&External>,
) -> Result<CellResult, Interrupted> {
    let started = std::time::Instant::now();
    let missing = support.missing(cell.policy.required_flags());
    let spec = Spec::of(cell.scenario);
    // The state matrix shows the rejection itself: it runs anyway.
    if !missing.is_empty() && spec.kind == Kind::Traffic {
        let mut r = CellResult::new(*cell, Outcome::Unsupported);
        r.missing_flags = missing.iter().map(|s| s.to_string()).collect();
        r.finish(support);
        return Ok(r);
    }
    let outcome = match spec.kind {
        Kind::Lookups => state_matrix::run(cell),
        Kind::Traffic => run::run(cell, spec, opts, external),
    };
    let mut r = match outcome {
        Ok(r) => r,
        Err(Error::Interrupted(i)) => return Err(i),
        Err(e) => CellResult::new(*cell, Outcome::Error(e.to_string())),
    };
    if !missing.is_empty() {
        r.outcome = Outcome::Unsupported;
        r.missing_flags = missing.iter().map(|s| s.to_string()).collect();
    }
    r.duration_ms = started.elapsed().as_millis() as u64;
    r.finish(support);
    Ok(r)
}

/// Run `cells` in order with `one`, `done` told of each as it finishes
/// (its index from 0, the cell, its result and how long it took); the results, and whether a
/// stop request (SIGINT/SIGTERM) cut the run short.
pub fn run_cells(
    cells: &[Cell],
    mut one: impl FnMut(&Cell) -> Result<CellResult, Interrupted>,
    mut done: impl FnMut(usize, &Cell, &CellResult, std::time::Duration),
) -> (Vec<CellResult>, bool) {
    let mut results = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        let t = std::time::Instant::now();
        match one(cell) {
            Ok(r) => {
                done(i, cell, &r, t.elapsed());
                results.push(r);
            }
            Err(_) => return (results, true),
        }
    }
    (results, false)
}

/// The results whose verdict is a failure.
pub fn failures(results: &[CellResult]) -> usize {
    results
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Fail(_)))
        .count()
}

/// Whether `cell` can run: a scenario that runs the probe program needs a
/// program policy, and each scenario runs only with its own policies.
pub fn check_policy(cell: &Cell) -> std::result::Result<(), String> {
    if Spec::of(cell.scenario).kind == Kind::Lookups && cell.policy == PolicyChoice::KernelStack {
        return Err(format!(
            "{} runs the probe program; pick a program policy, not kernel-stack",
            cell.scenario
        ));
    }
    let policies = Spec::of(cell.scenario).policies();
    if !policies.contains(&cell.policy) {
        let names: Vec<&str> = policies.iter().map(|p| p.name()).collect();
        return Err(format!(
            "{} runs only with: {}",
            cell.scenario,
            names.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fibneigh_bpf::Policy;

    #[test]
    fn names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>(), Ok(*s));
        }
        for p in PolicyChoice::all()
            .into_iter()
            .chain([PolicyChoice::Header])
        {
            assert_eq!(p.name().parse::<PolicyChoice>(), Ok(p));
        }
        assert_eq!("6".parse::<Family>(), Ok(Family::V6));
        assert!("ip-move".parse::<Scenario>().is_err());
        assert!("v4".parse::<Family>().is_err());
    }

    #[test]
    fn the_matrix_has_the_expected_cells() {
        let all = cells(Scenario::ALL);
        // 5 policies x 2 families x (2 hooks, or none for the stack) = 18
        // per full scenario, and 4 more for the header's example in
        // ip-reassign and reachable-fastpath; state-matrix has no stack
        // (16), managed only baseline (4).
        assert_eq!(all.len(), 6 * 18 + 2 * 4 + 16 + 4);
        let quick = cells(Scenario::QUICK);
        assert_eq!(quick.len(), 22 + 16 + 22);
        assert!(all
            .iter()
            .all(|c| (c.policy == PolicyChoice::KernelStack) == c.hook.is_none()));
        let mut dedup = all.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), all.len());
        assert_eq!(all[0].id(), "ip-reassign/baseline/v4/tc");
    }

    #[test]
    fn unsupported_flags_are_named() {
        let unpatched = Support {
            neigh_state: false,
            neigh_refresh: false,
            skip_neigh: true,
        };
        assert_eq!(
            unpatched.missing(PolicyChoice::Prog(Policy::StateAware).required_flags()),
            vec!["NEIGH_STATE"]
        );
        assert!(unpatched
            .missing(PolicyChoice::KernelStack.required_flags())
            .is_empty());
        assert!(!unpatched.patched());
    }
}
