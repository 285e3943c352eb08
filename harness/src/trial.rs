//! `fibneigh trial`: the stale-neighbour scenarios against a forwarder this
//! project did not write ([`External`]), in the same lab as every other
//! cell. Its counters are unknown, so it is judged from the wire: packets
//! at the old and the new host after the move, the DUT's probes, the final
//! neighbour entry, the time to the first packet at the new MAC. The
//! result of each cell is a [`Diagnosis`]; an expectation the user gives
//! (`ip-reassign=black-holes`) turns it into a verdict.

use std::str::FromStr;

use serde::Serialize;

use crate::external::External;
use crate::scenario::{
    self, Cell, CellResult, Family, Kind, Options, Outcome, PolicyChoice, Scenario, Spec, Support,
    Verdict,
};
use crate::stop::Interrupted;

/// The scenarios that make sense for a forwarder of unknown design: the
/// unannounced move (forced STALE), the announced one (everyone should
/// recover), the fast path, and a move of the route's gateway.
pub const SCENARIOS: [Scenario; 4] = [
    Scenario::IpReassign,
    Scenario::IpReassignGarp,
    Scenario::ReachableFastpath,
    Scenario::Gateway,
];

/// What a cell shows about the forwarder, from the wire.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "diagnosis", rename_all = "kebab-case")]
pub enum Diagnosis {
    /// After the move nothing reached the new MAC within the window.
    BlackHoles {
        to_dead_mac: u64,
        sent: u64,
        final_state: Option<String>,
    },
    /// The first packet reached the new MAC `ms` after the move.
    Recovers {
        ms: f64,
        lost: u64,
        final_state: Option<String>,
    },
    /// Nothing moved: the forwarder delivered `delivered` of `sent`.
    Forwards { delivered: u64, sent: u64 },
    /// No packet reached any host.
    NeverForwards { sent: u64 },
    /// The cell could not run (the message names the step).
    Error { message: String },
}

fibneigh_names::named_enum!(
    /// What the wire says a forwarder did in a cell.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum DiagnosisKind: "diagnosis" {
        BlackHoles => "black-holes",
        Recovers => "recovers",
        Forwards => "forwards",
        NeverForwards => "never-forwards",
        Error => "error",
    }
);

impl DiagnosisKind {
    /// The kinds an expectation can name: a forwarder that never forwards
    /// or could not run fails whatever was expected.
    pub const EXPECTABLE: [DiagnosisKind; 3] = [
        DiagnosisKind::BlackHoles,
        DiagnosisKind::Recovers,
        DiagnosisKind::Forwards,
    ];
}

impl Diagnosis {
    /// Read `r` from the wire only.
    pub fn of(r: &CellResult) -> Diagnosis {
        let reached = r.delivered_old + r.delivered_new;
        match &r.outcome {
            Outcome::Error(message) if message == scenario::NO_FLOW_BEFORE_MOVE => {
                Diagnosis::NeverForwards { sent: r.sent }
            }
            Outcome::Error(message) => Diagnosis::Error {
                message: message.clone(),
            },
            _ if reached == 0 => Diagnosis::NeverForwards { sent: r.sent },
            Outcome::NotRecovered => Diagnosis::BlackHoles {
                to_dead_mac: r.to_old_after_move,
                sent: r.sent,
                final_state: r.final_state.clone(),
            },
            Outcome::Recovered => Diagnosis::Recovers {
                ms: r.recovery_ms.unwrap_or(0.0),
                lost: r.lost,
                final_state: r.final_state.clone(),
            },
            Outcome::Measured | Outcome::Unsupported => Diagnosis::Forwards {
                delivered: reached,
                sent: r.sent,
            },
        }
    }

    pub fn kind(&self) -> DiagnosisKind {
        match self {
            Diagnosis::BlackHoles { .. } => DiagnosisKind::BlackHoles,
            Diagnosis::Recovers { .. } => DiagnosisKind::Recovers,
            Diagnosis::Forwards { .. } => DiagnosisKind::Forwards,
            Diagnosis::NeverForwards { .. } => DiagnosisKind::NeverForwards,
            Diagnosis::Error { .. } => DiagnosisKind::Error,
        }
    }

    /// One sentence for the table and the reports.
    pub fn text(&self) -> String {
        let entry = |s: &Option<String>| s.clone().unwrap_or_else(|| "gone".into());
        match self {
            Diagnosis::BlackHoles {
                to_dead_mac,
                sent,
                final_state,
            } => format!(
                "black-holes after the move: {to_dead_mac} of {sent} packets to the dead MAC \
                 after it, none to the new one, entry {} after the window",
                entry(final_state)
            ),
            Diagnosis::Recovers {
                ms,
                lost,
                final_state,
            } => format!(
                "recovers in {ms:.0} ms ({lost} packets lost), entry {}",
                entry(final_state)
            ),
            Diagnosis::Forwards { delivered, sent } => {
                format!("forwards {delivered} of {sent} packets")
            }
            Diagnosis::NeverForwards { sent: 0 } => {
                "never forwards: the flow never reached host A".into()
            }
            Diagnosis::NeverForwards { sent } => {
                format!("never forwards: none of {sent} packets reached a host")
            }
            Diagnosis::Error { message } => format!("error: {message}"),
        }
    }
}

/// An expectation: in `scenario`, the forwarder `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectation {
    pub scenario: Scenario,
    pub kind: DiagnosisKind,
}

impl FromStr for Expectation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (scenario, kind) = s
            .split_once('=')
            .ok_or_else(|| format!("expected SCENARIO=DIAGNOSIS, got {s:?}"))?;
        let kind = DiagnosisKind::EXPECTABLE
            .into_iter()
            .find(|k| k.name() == kind)
            .ok_or_else(|| {
                format!("unknown diagnosis {kind:?} (expected black-holes, recovers or forwards)")
            })?;
        Ok(Expectation {
            scenario: scenario
                .parse()
                .map_err(|e: fibneigh_names::UnknownName| e.to_string())?,
            kind,
        })
    }
}

/// A trial request that cannot run as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The scenario is not a flow through the forwarder (state-matrix runs
    /// the probe program).
    #[error("{0} runs the probe program, not a flow through the forwarder: a trial cannot run it")]
    NotTraffic(Scenario),
    /// An expectation for a scenario the trial does not run.
    #[error("an expectation for {scenario}, which the trial does not run (its scenarios: {})", names(.requested))]
    ExpectationNotRequested {
        scenario: Scenario,
        requested: Vec<Scenario>,
    },
    /// Two expectations for one scenario.
    #[error("two expectations for {0}: give one per scenario")]
    TwoExpectations(Scenario),
}

fn names(scenarios: &[Scenario]) -> String {
    let names: Vec<&str> = scenarios.iter().map(|s| s.name()).collect();
    names.join(", ")
}

/// The scenarios a trial of `scenarios` runs (none: [`SCENARIOS`]).
pub fn requested(scenarios: &[Scenario]) -> &[Scenario] {
    if scenarios.is_empty() {
        &SCENARIOS[..]
    } else {
        scenarios
    }
}

/// Check a trial of `scenarios` (none: [`SCENARIOS`]) judged by `expect`
/// before anything is built: every scenario a flow through the
/// forwarder, every expectation for one of them, at most one each.
pub fn check_request(scenarios: &[Scenario], expect: &[Expectation]) -> Result<(), RequestError> {
    let requested = requested(scenarios);
    if let Some(&s) = requested
        .iter()
        .find(|&&s| Spec::of(s).kind != Kind::Traffic)
    {
        return Err(RequestError::NotTraffic(s));
    }
    for (i, e) in expect.iter().enumerate() {
        if !requested.contains(&e.scenario) {
            return Err(RequestError::ExpectationNotRequested {
                scenario: e.scenario,
                requested: requested.to_vec(),
            });
        }
        if expect[..i].iter().any(|o| o.scenario == e.scenario) {
            return Err(RequestError::TwoExpectations(e.scenario));
        }
    }
    Ok(())
}

/// The verdict on `d` against the expectations for its scenario: a
/// forwarder that never forwards or could not run fails whatever was
/// expected; otherwise without an expectation the cell is unchecked.
pub fn verdict(scenario: Scenario, d: &Diagnosis, expect: &[Expectation]) -> Verdict {
    if let Diagnosis::NeverForwards { .. } | Diagnosis::Error { .. } = d {
        return Verdict::Fail(d.text());
    }
    match expect.iter().find(|e| e.scenario == scenario) {
        None => Verdict::Unchecked,
        Some(e) if e.kind == d.kind() => Verdict::Pass,
        Some(e) => Verdict::Fail(format!("expected it to {}, but it {}", e.kind, d.text())),
    }
}

/// The trial's cells: `scenarios` (none: [`SCENARIOS`]) x `families`
/// (none: IPv4 and IPv6) at the forwarder's hook.
pub fn cells(scenarios: &[Scenario], families: &[Family], external: &External) -> Vec<Cell> {
    let scenarios = requested(scenarios);
    let families = if families.is_empty() {
        &[Family::V4, Family::V6][..]
    } else {
        families
    };
    let mut out = Vec::new();
    for &s in scenarios {
        for &f in families {
            out.push(Cell::new(s, PolicyChoice::External, f, external.hook()));
        }
    }
    out
}

/// Run one cell with `external` on the DUT, diagnosed and judged.
pub fn run(
    cell: &Cell,
    support: &Support,
    opts: &Options,
    external: &External,
    expect: &[Expectation],
) -> Result<CellResult, Interrupted> {
    let mut r = scenario::run_case_with(cell, support, opts, Some(external))?;
    let d = Diagnosis::of(&r);
    r.verdict = verdict(cell.scenario, &d, expect);
    r.diagnosis = Some(d.text());
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fibneigh_bpf::Hook;

    fn result(outcome: Outcome) -> CellResult {
        let cell = Cell::new(
            Scenario::IpReassign,
            PolicyChoice::External,
            Family::V4,
            Hook::Xdp,
        );
        let mut r = CellResult::new(cell, outcome);
        r.sent = 400;
        r.delivered_old = 390;
        r.to_old_after_move = 200;
        r.final_state = Some("STALE".into());
        r
    }

    #[test]
    fn the_wire_tells_black_holes_from_recovery() {
        let d = Diagnosis::of(&result(Outcome::NotRecovered));
        assert_eq!(d.kind(), DiagnosisKind::BlackHoles);
        assert!(d.text().contains("200 of 400"), "{}", d.text());
        assert!(d.text().contains("STALE"), "{}", d.text());

        let mut r = result(Outcome::Recovered);
        r.recovery_ms = Some(1234.4);
        r.delivered_new = 10;
        assert_eq!(Diagnosis::of(&r).kind(), DiagnosisKind::Recovers);
        assert!(Diagnosis::of(&r).text().starts_with("recovers in 1234 ms"));

        let mut none = result(Outcome::Measured);
        none.delivered_old = 0;
        assert_eq!(Diagnosis::of(&none).kind(), DiagnosisKind::NeverForwards);
    }

    #[test]
    fn expectations_judge_and_a_silent_forwarder_fails_anyway() {
        let e: Vec<Expectation> = ["ip-reassign=black-holes", "ip-reassign-garp=recovers"]
            .iter()
            .map(|s| s.parse().expect("parses"))
            .collect();
        let holes = Diagnosis::of(&result(Outcome::NotRecovered));
        assert_eq!(verdict(Scenario::IpReassign, &holes, &e), Verdict::Pass);
        assert!(matches!(
            verdict(Scenario::IpReassignGarp, &holes, &e),
            Verdict::Fail(_)
        ));
        assert_eq!(verdict(Scenario::Gateway, &holes, &e), Verdict::Unchecked);
        let silent = Diagnosis::NeverForwards { sent: 5 };
        assert!(matches!(
            verdict(Scenario::Gateway, &silent, &e),
            Verdict::Fail(_)
        ));
        assert!("ip-reassign".parse::<Expectation>().is_err());
        assert!("ip-reassign=fine".parse::<Expectation>().is_err());
        // Never forwarding fails whatever was expected: not an expectation.
        assert!("ip-reassign=never-forwards".parse::<Expectation>().is_err());
    }

    fn expect(specs: &[&str]) -> Vec<Expectation> {
        specs.iter().map(|s| s.parse().expect("parses")).collect()
    }

    #[test]
    fn an_expectation_for_a_scenario_not_run_is_refused() {
        let gateway = [Scenario::Gateway];
        let e = check_request(&gateway, &expect(&["ip-reassign=black-holes"])).unwrap_err();
        assert_eq!(
            e,
            RequestError::ExpectationNotRequested {
                scenario: Scenario::IpReassign,
                requested: vec![Scenario::Gateway],
            }
        );
        let text = e.to_string();
        assert!(text.contains("ip-reassign"), "{text}");
        assert!(text.contains("(its scenarios: gateway)"), "{text}");
        // Without --scenario the trial runs its default ones.
        assert!(check_request(&[], &expect(&["gateway=recovers"])).is_ok());
        let e = check_request(&[], &expect(&["permanent=forwards"])).unwrap_err();
        assert!(
            e.to_string()
                .contains("ip-reassign, ip-reassign-garp, reachable-fastpath, gateway"),
            "{e}"
        );
        assert!(check_request(&gateway, &expect(&["gateway=recovers"])).is_ok());
    }

    #[test]
    fn two_expectations_for_one_scenario_are_refused() {
        let e = check_request(
            &[],
            &expect(&[
                "ip-reassign=black-holes",
                "gateway=recovers",
                "ip-reassign=recovers",
            ]),
        )
        .unwrap_err();
        assert_eq!(e, RequestError::TwoExpectations(Scenario::IpReassign));
        assert!(e.to_string().contains("ip-reassign"), "{e}");
    }

    #[test]
    fn a_scenario_without_a_flow_is_refused() {
        let e = check_request(&[Scenario::Gateway, Scenario::StateMatrix], &[]).unwrap_err();
        assert_eq!(e, RequestError::NotTraffic(Scenario::StateMatrix));
        assert!(e.to_string().starts_with("state-matrix "), "{e}");
        // Every other scenario is a flow through the forwarder.
        let traffic: Vec<Scenario> = Scenario::ALL
            .iter()
            .copied()
            .filter(|&s| s != Scenario::StateMatrix)
            .collect();
        assert!(check_request(&traffic, &[]).is_ok());
        assert!(check_request(&[], &[]).is_ok());
    }
}
