//! Recovery: the `ip-reassign` scenario per policy, with short and with the
//! kernel's default neighbour timers: time from the move to the first
//! packet at the new MAC, and packets lost, next to the kernel stack.
//! Repetitions are interleaved (every policy once per repetition), so a
//! ratio compares a policy with the stack of the same repetition.

use std::time::Duration;

use super::{figure, rotated, Error, Figure, Result, Row, Unit};
use crate::scenario::result::{CellResult, Outcome};
use crate::scenario::{
    self, Cell, Family, NeighTimers, Options as ScenarioOptions, PolicyChoice, Scenario, Support,
};
use crate::stop;
use fibneigh_bpf::Hook;

/// How much to measure.
#[derive(Debug, Clone)]
pub struct Options {
    pub reps: usize,
    pub timers: Vec<NeighTimers>,
    pub hooks: Vec<Hook>,
    pub family: Family,
    /// Recovery window with short timers (the stack needs ~1.4 s).
    pub window_short: Duration,
    /// Recovery window with the kernel's defaults (the stack needs ~8 s:
    /// 5 s in DELAY, 3 unanswered unicast probes 1 s apart, then a
    /// broadcast one).
    pub window_default: Duration,
}

/// The stack's reference column.
pub const REFERENCE: &str = "kernel-stack";

fn window(opts: &Options, t: NeighTimers) -> Duration {
    match t {
        NeighTimers::Short => opts.window_short,
        NeighTimers::KernelDefaults => opts.window_default,
    }
}

/// Per column: the recovery times (NaN: not recovered) and losses.
#[derive(Debug, Default, Clone)]
struct Runs {
    recovery_ms: Vec<f64>,
    lost: Vec<f64>,
    /// The flags the kernel rejected, if it did.
    unsupported: Option<Vec<String>>,
}

/// Measure every (timers, hook) row; returns the rows and the method.
pub fn run(opts: &Options, support: Support) -> Result<(Vec<Row>, Vec<String>)> {
    let cols = PolicyChoice::all();
    let mut rows = Vec::new();
    for &timers in &opts.timers {
        for &hook in &opts.hooks {
            let sopts = ScenarioOptions {
                window: window(opts, timers),
                timers,
                ..ScenarioOptions::default()
            };
            let mut runs: Vec<Runs> = vec![Runs::default(); cols.len()];
            for rep in 0..opts.reps.max(1) {
                for i in rotated(&(0..cols.len()).collect::<Vec<_>>(), rep) {
                    stop::check()?;
                    let p = cols[i];
                    let hook = (p != PolicyChoice::KernelStack).then_some(hook);
                    let cell = Cell {
                        scenario: Scenario::IpReassign,
                        policy: p,
                        family: opts.family,
                        hook,
                    };
                    let r: CellResult = scenario::run_case(&cell, &support, &sopts)?;
                    match &r.outcome {
                        Outcome::Unsupported => {
                            runs[i].unsupported = Some(r.missing_flags.clone());
                        }
                        Outcome::Error(e) => {
                            return Err(Error::Check(format!("{}: {e}", cell.id())));
                        }
                        _ => {
                            runs[i].recovery_ms.push(r.recovery_ms.unwrap_or(f64::NAN));
                            runs[i].lost.push(r.lost as f64);
                        }
                    }
                }
            }
            let label = format!(
                "ip-reassign v{} {} timers {}",
                opts.family.name(),
                timers.name(),
                hook.name()
            );
            rows.extend(rows_for(&label, &cols, &runs, window(opts, timers)));
        }
    }
    let method = vec![format!(
        "recovery: the ip-reassign scenario (the service IP moves to a new MAC, no announcement \
         reaches the DUT, its entry is set STALE with the old MAC), flow of {} pps; {} repetitions, \
         policies interleaved; short timers: delay_first_probe_time 1 s, retrans_time_ms 100, \
         window {} s; kernel defaults: 5 s, 1000 ms, ucast/mcast_solicit 3, window {} s",
        ScenarioOptions::default().rate_pps,
        opts.reps.max(1),
        opts.window_short.as_secs_f64(),
        opts.window_default.as_secs_f64()
    )];
    Ok((rows, method))
}

fn rows_for(label: &str, cols: &[PolicyChoice], runs: &[Runs], window: Duration) -> Vec<Row> {
    let stack = cols
        .iter()
        .position(|p| *p == PolicyChoice::KernelStack)
        .map(|i| runs[i].recovery_ms.clone())
        .unwrap_or_default();
    let mut recovery = Vec::new();
    let mut lost = Vec::new();
    for (p, r) in cols.iter().zip(runs) {
        if let Some(flags) = &r.unsupported {
            recovery.push(Figure::unsupported(p.name(), flags));
            lost.push(Figure::unsupported(p.name(), flags));
            continue;
        }
        let n = r.recovery_ms.len();
        let recovered = r.recovery_ms.iter().filter(|v| v.is_finite()).count();
        let mut f = figure(p.name(), &r.recovery_ms, &stack);
        if recovered < n {
            f.note = Some(if recovered == 0 {
                format!("never: 0 of {n} runs within {:.0} s", window.as_secs_f64())
            } else {
                format!(
                    "{recovered} of {n} runs within {:.0} s (median of those)",
                    window.as_secs_f64()
                )
            });
        }
        recovery.push(f);
        let mut l = figure(p.name(), &r.lost, &[]);
        l.ratio = None;
        lost.push(l);
    }
    vec![
        Row {
            section: "recovery".into(),
            label: format!("{label} time to new MAC"),
            unit: Unit::Ms,
            reference: REFERENCE.into(),
            figures: recovery,
        },
        Row {
            section: "recovery".into(),
            label: format!("{label} packets lost"),
            unit: Unit::Packets,
            reference: String::new(),
            figures: lost,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_recovering_is_said_and_ratios_pair_with_the_stack() {
        let cols = [
            PolicyChoice::Prog(fibneigh_bpf::Policy::Baseline),
            PolicyChoice::Prog(fibneigh_bpf::Policy::StateAware),
            PolicyChoice::KernelStack,
        ];
        let runs = vec![
            Runs {
                recovery_ms: vec![f64::NAN, f64::NAN],
                lost: vec![400.0, 400.0],
                unsupported: None,
            },
            Runs {
                recovery_ms: vec![1400.0, 1300.0],
                lost: vec![3.0, 2.0],
                unsupported: None,
            },
            Runs {
                recovery_ms: vec![1400.0, 1200.0],
                lost: vec![3.0, 3.0],
                unsupported: None,
            },
        ];
        let rows = rows_for("x", &cols, &runs, Duration::from_secs(2));
        let base = rows[0].figure("baseline").unwrap();
        assert!(base.value.is_none() && base.note.as_deref().unwrap().starts_with("never"));
        let sa = rows[0].figure("state-aware").unwrap().ratio.unwrap();
        // 1400/1400 and 1300/1200
        assert!((sa.median - (1.0 + 1300.0 / 1200.0) / 2.0).abs() < 1e-9);
        assert_eq!(
            rows[1].figure("baseline").unwrap().value.unwrap().median,
            400.0
        );
    }
}
