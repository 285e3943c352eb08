//! One spec per scenario: what moves, how the DUT learns of it, the
//! entry's set-up, timers, window, policies and what each policy is
//! expected to do. [`run_case`](super::run_case) and the traffic run read
//! these; nothing else knows a scenario by name.

use fibneigh_bpf::Policy;

use super::cell::{Cell, Family, PolicyChoice, Scenario};
use super::result::Expect;
use fibneigh_bpf::Hook;

/// How a cell exercises the helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A UDP flow through the forwarder (or the stack), observed on the
    /// wire and at both hosts.
    Traffic,
    /// One lookup per NUD state through the probe program; no traffic.
    Lookups,
}

/// The DUT's entry for the nexthop before the flow starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Learnt by the stack from the flow.
    Learnt,
    /// `managed extern_learn`, no lladdr: the kernel keeps it resolved
    /// (option 1 of docs/design.md).
    Managed,
    /// `PERMANENT` with the old owner's MAC: never re-validated.
    Pinned,
}

/// Which recovery window a cell waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// `Options::window` after the move.
    Recovery,
    /// `Options::managed_window`: managed entries are re-probed only every
    /// `interval_probe_time_ms`.
    Managed,
    /// Nothing moves: the counters are read over `Options::fastpath_window`.
    Fastpath,
}

/// Which policies a scenario runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policies {
    /// Every program policy and the kernel stack.
    All,
    /// As `All`, and the public header's example program.
    AllAndHeader,
    /// Every program policy (the probe program has no stack variant).
    Programs,
    /// Baseline alone.
    Baseline,
}

/// Who an expectation row applies to; the first matching row wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Only(PolicyChoice),
    Any,
}

/// A scenario as data.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub scenario: Scenario,
    pub kind: Kind,
    /// The service address moves from host A to host B mid-flow.
    pub moves: bool,
    /// The nexthop is a router (10.2.0.20) with the service (10.9.0.1)
    /// behind it; both of the router's addresses move.
    pub via_gateway: bool,
    /// Host B's gratuitous ARP / unsolicited NA reaches the DUT.
    pub announce: bool,
    /// Right after the move the entry is set back to the old MAC, STALE:
    /// the field reproducer (`ip neigh replace ... lladdr MAC1 nud stale`).
    pub force_stale: bool,
    pub entry: Entry,
    /// Short base_reachable_time (100 ms) and delay_first_probe_time 0:
    /// an entry the program never uses ages to STALE by itself; the flow
    /// runs longer before the move.
    pub aged: bool,
    pub window: Window,
    pub policies: Policies,
    /// Only the DUT's own re-validation (its ARP/NS probes) can find the
    /// new MAC: nothing announces the move and nothing else re-probes.
    pub recovers_by_probe: bool,
    /// What each policy must do on a kernel that accepts its flags.
    pub expect: &'static [(Who, Option<Expect>)],
}

const BASELINE: PolicyChoice = PolicyChoice::Prog(Policy::Baseline);
const STATE_AWARE: PolicyChoice = PolicyChoice::Prog(Policy::StateAware);

/// Baseline keeps sending to the cached MAC; every other policy recovers.
const ONLY_BASELINE_STUCK: &[(Who, Option<Expect>)] = &[
    (Who::Only(BASELINE), Some(Expect::DoesNotRecover)),
    (Who::Any, Some(Expect::Recovers)),
];

/// The unannounced move of the field bug, learnt entry, forced STALE.
const MOVE: Spec = Spec {
    scenario: Scenario::IpReassign,
    kind: Kind::Traffic,
    moves: true,
    via_gateway: false,
    announce: false,
    force_stale: true,
    entry: Entry::Learnt,
    aged: false,
    window: Window::Recovery,
    policies: Policies::AllAndHeader,
    recovers_by_probe: true,
    expect: ONLY_BASELINE_STUCK,
};

/// Every scenario, in `Scenario::ALL` order.
pub const SPECS: &[Spec] = &[
    MOVE,
    Spec {
        scenario: Scenario::IpReassignAged,
        force_stale: false,
        aged: true,
        policies: Policies::All,
        ..MOVE
    },
    Spec {
        scenario: Scenario::IpReassignGarp,
        announce: true,
        recovers_by_probe: false,
        expect: &[(Who::Any, Some(Expect::Recovers))],
        policies: Policies::All,
        ..MOVE
    },
    Spec {
        scenario: Scenario::StateMatrix,
        kind: Kind::Lookups,
        moves: false,
        force_stale: false,
        policies: Policies::Programs,
        recovers_by_probe: false,
        expect: &[(Who::Any, Some(Expect::LookupsAsDesigned))],
        ..MOVE
    },
    Spec {
        scenario: Scenario::Gateway,
        via_gateway: true,
        policies: Policies::All,
        ..MOVE
    },
    Spec {
        scenario: Scenario::Managed,
        force_stale: false,
        entry: Entry::Managed,
        aged: true,
        window: Window::Managed,
        policies: Policies::Baseline,
        recovers_by_probe: false,
        expect: &[(Who::Any, Some(Expect::Recovers))],
        ..MOVE
    },
    Spec {
        scenario: Scenario::Permanent,
        force_stale: false,
        entry: Entry::Pinned,
        recovers_by_probe: false,
        expect: &[(Who::Any, Some(Expect::DoesNotRecover))],
        policies: Policies::All,
        ..MOVE
    },
    Spec {
        scenario: Scenario::ReachableFastpath,
        moves: false,
        force_stale: false,
        window: Window::Fastpath,
        recovers_by_probe: false,
        expect: &[(Who::Only(STATE_AWARE), Some(Expect::NoSlowPath))],
        ..MOVE
    },
];

impl Spec {
    /// The spec of `scenario`.
    pub fn of(scenario: Scenario) -> &'static Spec {
        SPECS
            .iter()
            .find(|s| s.scenario == scenario)
            .expect("every scenario has a spec (checked by a unit test)")
    }

    /// The policies this scenario runs with, in matrix order.
    pub fn policies(&self) -> Vec<PolicyChoice> {
        match self.policies {
            Policies::All => PolicyChoice::all(),
            Policies::AllAndHeader => {
                let mut v = PolicyChoice::all();
                v.push(PolicyChoice::Header);
                v
            }
            Policies::Programs => Policy::ALL.iter().map(|p| PolicyChoice::Prog(*p)).collect(),
            Policies::Baseline => vec![BASELINE],
        }
    }

    /// What `policy` is expected to do here on a kernel that accepts its
    /// flags (None: nothing is expected, the cell is a reference).
    pub fn expectation(&self, policy: PolicyChoice) -> Option<Expect> {
        self.expect
            .iter()
            .find(|(who, _)| match who {
                Who::Only(p) => p.eq(&policy),
                Who::Any => true,
            })
            .and_then(|(_, e)| *e)
    }
}

/// Every cell of `scenarios`, in matrix order.
pub fn cells(scenarios: &[Scenario]) -> Vec<Cell> {
    let mut out = Vec::new();
    for &s in scenarios {
        for p in Spec::of(s).policies() {
            for &f in Family::ALL {
                if p == PolicyChoice::KernelStack {
                    out.push(Cell::new(s, p, f, Hook::Tc));
                } else {
                    for &h in Hook::ALL {
                        out.push(Cell::new(s, p, f, h));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spec_per_scenario_in_order() {
        let order: Vec<Scenario> = SPECS.iter().map(|s| s.scenario).collect();
        assert_eq!(order, Scenario::ALL);
        for s in SPECS {
            // Only moving traffic cells wait for a recovery.
            assert_eq!(
                s.moves,
                s.window != Window::Fastpath && s.kind == Kind::Traffic
            );
            assert!(!s.recovers_by_probe || (s.moves && !s.announce));
        }
    }

    #[test]
    fn expectations_read_as_the_table_says() {
        let m = Spec::of(Scenario::IpReassign);
        assert_eq!(m.expectation(BASELINE), Some(Expect::DoesNotRecover));
        assert_eq!(
            m.expectation(PolicyChoice::KernelStack),
            Some(Expect::Recovers)
        );
        let f = Spec::of(Scenario::ReachableFastpath);
        assert_eq!(f.expectation(STATE_AWARE), Some(Expect::NoSlowPath));
        assert_eq!(f.expectation(BASELINE), None);
    }
}
