//! Expectations and verdicts: what the project expects of a cell on the
//! running kernel (from its scenario's [`Spec`]) and whether its result
//! matches. The one place a cell is judged.

use fibneigh_bpf::{flags, ret, Policy};

use super::cell::{Cell, PolicyChoice, Scenario};
use super::result::{CellResult, Expect, Outcome, StateRow, Verdict};
use super::spec::{Kind, Spec};
use super::support::Support;
use crate::nud::Nud;

impl CellResult {
    /// Set the expectation and verdict for the kernel described by
    /// `support`.
    pub fn finish(&mut self, support: &Support) {
        self.judged_as = self.cell.policy.judged_as(support.patched());
        self.expect = expectation(&self.cell, support);
        self.verdict = verdict(self);
    }
}

/// What the project expects of `cell` on the kernel `support` describes
/// (docs/design.md).
pub fn expectation(cell: &Cell, support: &Support) -> Option<Expect> {
    let needs_patch =
        cell.policy.required_flags() & (flags::NEIGH_STATE | flags::NEIGH_REFRESH) != 0;
    if needs_patch && !support.patched() {
        return Some(Expect::Unsupported);
    }
    Spec::of(cell.scenario).expectation(cell.policy.judged_as(support.patched()))
}

/// The header's example must take the state path exactly when the kernel
/// has the series (it is judged as state-aware then), else its fallback.
fn header_path_as_designed(r: &CellResult) -> Option<Verdict> {
    let h = r.header.as_ref()?;
    let want = if r.judged_as == PolicyChoice::Prog(Policy::StateAware) {
        "state"
    } else {
        "fallback"
    };
    (h.path != want).then(|| {
        Verdict::Fail(format!(
            "the header's example took the {} path, expected {want}",
            h.path
        ))
    })
}

/// Compare a result with its expectation.
pub fn verdict(r: &CellResult) -> Verdict {
    if let Outcome::Error(e) = &r.outcome {
        return Verdict::Fail(format!("error: {e}"));
    }
    if let Some(wrong) = header_path_as_designed(r) {
        return wrong;
    }
    let Some(expect) = r.expect else {
        return Verdict::Unchecked;
    };
    let fail = |why: &str| Verdict::Fail(why.to_string());
    match (expect, &r.outcome) {
        (Expect::Unsupported, Outcome::Unsupported) => {
            // The state matrix shows the rejection itself; a traffic cell
            // was not run, so nothing of it was checked.
            if Spec::of(r.cell.scenario).kind != Kind::Lookups {
                Verdict::Skipped(format!(
                    "not run: this kernel rejects {} (the series adds it)",
                    r.missing_flags.join(" and ")
                ))
            } else if r.state_rows.is_empty() {
                fail("no lookups")
            } else if r
                .state_rows
                .iter()
                .any(|row| row.rc != -(libc::EINVAL as i64))
            {
                fail("a lookup with an unsupported flag did not return -EINVAL")
            } else {
                Verdict::Pass
            }
        }
        (Expect::Unsupported, _) => fail("expected the kernel to reject the policy's flag"),
        (_, Outcome::Unsupported) => fail("the policy's flag is rejected by this kernel"),
        (Expect::Recovers, Outcome::Recovered) => recovered_as_designed(r),
        (Expect::Recovers, _) => fail("did not recover"),
        (Expect::DoesNotRecover, Outcome::NotRecovered) => not_recovered_as_designed(r),
        (Expect::DoesNotRecover, _) => fail("recovered, expected not to"),
        (Expect::NoSlowPath, _) => {
            if r.slow_path() == 0 && r.redirect > 0 {
                Verdict::Pass
            } else {
                fail("the slow path was used (or nothing was redirected)")
            }
        }
        (Expect::LookupsAsDesigned, _) => match r.judged_as {
            PolicyChoice::Prog(p) => match r.state_rows.iter().find(|row| !row_ok(p, row)) {
                None if !r.state_rows.is_empty() => Verdict::Pass,
                None => fail("no rows"),
                Some(row) => Verdict::Fail(format!(
                    "{}: rc {} nud_state {}",
                    row.set,
                    row.rc_name,
                    row.reported.map_or("-".into(), |n| n.name())
                )),
            },
            PolicyChoice::KernelStack | PolicyChoice::Header | PolicyChoice::External => {
                Verdict::Unchecked
            }
        },
    }
}

/// Cells where nothing announces the move: only the DUT's own
/// re-validation (probes) can find the new MAC.
fn unannounced(s: Scenario) -> bool {
    Spec::of(s).recovers_by_probe
}

/// A recovered cell, checked on what the mechanism guarantees rather than
/// on how long it took (timings under emulation move with the load; how
/// fast each policy recovers is `fibneigh bench`'s recovery figure): the
/// entry ends with the new MAC, the kernel probed for it when nothing
/// announced the move, and the forwarder took the paths its policy says.
fn recovered_as_designed(r: &CellResult) -> Verdict {
    let fail = |why: String| Verdict::Fail(why);
    if r.final_new_mac != Some(true) {
        return fail(format!(
            "recovered, but the entry does not end with the new MAC (final state {})",
            r.final_state.as_deref().unwrap_or("unknown")
        ));
    }
    if unannounced(r.cell.scenario) && r.probes_unicast + r.probes_multicast == 0 {
        return fail("recovered without an ARP/NS probe from the DUT".into());
    }
    match r.judged_as {
        PolicyChoice::KernelStack => Verdict::Pass,
        PolicyChoice::Prog(_) | PolicyChoice::Header if r.redirect + r.slow_path() == 0 => {
            fail("the forwarder saw no packet (traffic bypassed it)".into())
        }
        // Not connected after the move: the packet goes to the stack.
        PolicyChoice::Prog(Policy::StateAware | Policy::AlwaysNeigh)
            if unannounced(r.cell.scenario) && r.slow_path() == 0 =>
        {
            fail("recovered without the slow path the policy takes for a stale entry".into())
        }
        PolicyChoice::Prog(Policy::AlwaysNeigh) if r.redirect > 0 => fail(format!(
            "always-neigh used bpf_redirect() for {} packet(s)",
            r.redirect
        )),
        PolicyChoice::Prog(_) | PolicyChoice::Header | PolicyChoice::External => Verdict::Pass,
    }
}

/// A cell that did not recover, as its policy says it must not: baseline
/// kept sending every packet to the cached MAC with bpf_redirect().
fn not_recovered_as_designed(r: &CellResult) -> Verdict {
    if r.judged_as == PolicyChoice::Prog(Policy::Baseline)
        && unannounced(r.cell.scenario)
        && (r.slow_path() > 0 || r.redirect == 0)
    {
        return Verdict::Fail(format!(
            "baseline did not recover, but not by redirecting to the old MAC \
             ({} redirect, {} slow path)",
            r.redirect,
            r.slow_path()
        ));
    }
    Verdict::Pass
}

/// What the state after a lookup must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Whatever the entry's own timers make of it.
    Any,
    /// Re-validation started: DELAY, or PROBE once its timer ran.
    Kicked,
    /// The entry is left as it was.
    Unchanged,
}

/// What one lookup of an entry in a given state must give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    pub rc: i64,
    /// The MAC written is the entry's (SUCCESS with a neighbour step).
    pub dmac: bool,
    /// `nud_state` reports a state the entry was in, before or after the
    /// lookup (an entry set to DELAY may move on while it is looked up).
    pub reports_state: bool,
    pub after: After,
}

/// The state-matrix table of docs/design.md: policy `p`'s flags on an
/// entry in state `before`, on a kernel that accepts them.
pub fn lookup_expectation(p: Policy, before: Nud) -> Lookup {
    let valid = before.valid();
    let neighbour = Lookup {
        rc: if valid { ret::SUCCESS } else { ret::NO_NEIGH },
        dmac: valid,
        reports_state: false,
        after: After::Any,
    };
    match p {
        // SKIP_NEIGH: no neighbour step, SUCCESS whatever the entry.
        Policy::AlwaysNeigh => Lookup {
            rc: ret::SUCCESS,
            dmac: false,
            ..neighbour
        },
        Policy::Baseline => neighbour,
        Policy::StateAware => Lookup {
            reports_state: true,
            ..neighbour
        },
        Policy::Refresh => Lookup {
            after: match before {
                Nud::STALE => After::Kicked,
                Nud::REACHABLE => After::Unchanged,
                _ => After::Any,
            },
            ..neighbour
        },
    }
}

/// Whether one state-matrix row is what [`lookup_expectation`] says.
pub fn row_ok(p: Policy, row: &StateRow) -> bool {
    let want = lookup_expectation(p, row.before);
    let rc_ok = row.rc == want.rc && (!want.dmac || row.dmac_matches);
    let nud_ok =
        !want.reports_state || row.reported == Some(row.before) || row.reported == Some(row.after);
    let after_ok = match want.after {
        After::Any => true,
        After::Kicked => row.after == Nud::DELAY || row.after == Nud::PROBE,
        After::Unchanged => row.after == row.before,
    };
    rc_ok && nud_ok && after_ok
}

/// Results as a healthy run observes them, for the tests here and in the
/// report.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::scenario::result::HeaderRun;
    use crate::scenario::Family;
    use fibneigh_bpf::Hook;

    pub fn cell(s: Scenario, p: PolicyChoice) -> Cell {
        Cell::new(s, p, Family::V4, Hook::Tc)
    }

    pub const UNPATCHED: Support = Support {
        neigh_state: false,
        neigh_refresh: false,
        skip_neigh: true,
    };
    pub const PATCHED: Support = Support {
        neigh_state: true,
        neigh_refresh: true,
        skip_neigh: true,
    };

    /// A result with what a healthy run of `p` observes for outcome `o`.
    pub fn result(s: Scenario, p: PolicyChoice, o: Outcome, support: &Support) -> CellResult {
        let mut r = CellResult::new(cell(s, p), o.clone());
        match o {
            Outcome::Recovered => {
                r.final_new_mac = Some(true);
                r.probes_unicast = 1;
            }
            Outcome::NotRecovered => r.final_new_mac = Some(false),
            Outcome::Unsupported => r.missing_flags = vec!["NEIGH_STATE".into()],
            _ => {}
        }
        if p == PolicyChoice::Header {
            r.header = Some(HeaderRun {
                object: "tc_router.bpf.o".into(),
                object_sha256: "0".repeat(64),
                path: if support.patched() {
                    "state"
                } else {
                    "fallback"
                }
                .into(),
            });
        }
        match p.judged_as(support.patched()) {
            PolicyChoice::Prog(Policy::AlwaysNeigh) => r.redirect_neigh = 20,
            PolicyChoice::Prog(Policy::StateAware) => {
                r.redirect = 10;
                r.redirect_neigh = 10;
            }
            PolicyChoice::Prog(_) => r.redirect = 20,
            PolicyChoice::KernelStack | PolicyChoice::Header | PolicyChoice::External => {}
        }
        r.finish(support);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    fn rejudged(mut r: CellResult, change: impl FnOnce(&mut CellResult)) -> Verdict {
        change(&mut r);
        verdict(&r)
    }

    #[test]
    fn the_header_example_is_judged_by_the_path_the_kernel_supports() {
        for (support, judged) in [
            (PATCHED, Policy::StateAware),
            (UNPATCHED, Policy::AlwaysNeigh),
        ] {
            let r = result(
                Scenario::IpReassign,
                PolicyChoice::Header,
                Outcome::Recovered,
                &support,
            );
            assert_eq!(r.judged_as, PolicyChoice::Prog(judged));
            assert_eq!(r.expect, Some(Expect::Recovers));
            assert_eq!(r.verdict, Verdict::Pass);
            // The other path, or none, is wrong on either kernel.
            for path in ["state", "fallback", "none", "mixed"] {
                let v = rejudged(r.clone(), |r| {
                    if let Some(h) = r.header.as_mut() {
                        h.path = path.into();
                    }
                });
                let right =
                    (path == "state") == support.patched() && path != "none" && path != "mixed";
                assert_eq!(
                    v == Verdict::Pass,
                    right,
                    "{path} on patched={}",
                    support.patched()
                );
            }
            // A fallback that used bpf_redirect() would be the stale-MAC
            // behaviour: not what always-neigh (or state-aware's slow path)
            // does after the move.
            let stuck = result(
                Scenario::IpReassign,
                PolicyChoice::Header,
                Outcome::NotRecovered,
                &support,
            );
            assert!(matches!(stuck.verdict, Verdict::Fail(_)));
        }
    }

    #[test]
    fn recovery_is_judged_on_behaviour_not_time() {
        use PolicyChoice::*;
        let aware = result(
            Scenario::IpReassign,
            Prog(Policy::StateAware),
            Outcome::Recovered,
            &PATCHED,
        );
        assert_eq!(aware.verdict, Verdict::Pass);
        // However slow: no time enters the verdict.
        assert_eq!(
            rejudged(aware.clone(), |r| r.recovery_ms = Some(1e9)),
            Verdict::Pass
        );
        // The entry must end with the new MAC.
        let v = rejudged(aware.clone(), |r| r.final_new_mac = Some(false));
        assert!(matches!(v, Verdict::Fail(_)), "{v:?}");
        // Nothing announced the move: the DUT must have probed.
        let v = rejudged(aware.clone(), |r| r.probes_unicast = 0);
        assert!(matches!(v, Verdict::Fail(_)), "{v:?}");
        // state-aware takes the slow path for the stale entry.
        let v = rejudged(aware.clone(), |r| r.redirect_neigh = 0);
        assert!(matches!(v, Verdict::Fail(_)), "{v:?}");
        // A forwarder that saw nothing did not do the recovering.
        let refresh = result(
            Scenario::IpReassign,
            Prog(Policy::Refresh),
            Outcome::Recovered,
            &PATCHED,
        );
        assert_eq!(refresh.verdict, Verdict::Pass);
        let v = rejudged(refresh, |r| r.redirect = 0);
        assert!(matches!(v, Verdict::Fail(_)), "{v:?}");
        // always-neigh never uses bpf_redirect().
        let always = result(
            Scenario::Gateway,
            Prog(Policy::AlwaysNeigh),
            Outcome::Recovered,
            &PATCHED,
        );
        assert_eq!(always.verdict, Verdict::Pass);
        let v = rejudged(always, |r| r.redirect = 1);
        assert!(matches!(v, Verdict::Fail(_)), "{v:?}");
        // An announced move needs no probe.
        let garp = result(
            Scenario::IpReassignGarp,
            Prog(Policy::Baseline),
            Outcome::Recovered,
            &PATCHED,
        );
        assert_eq!(rejudged(garp, |r| r.probes_unicast = 0), Verdict::Pass);
        // Baseline's failure is bpf_redirect() to the old MAC, nothing else.
        let base = result(
            Scenario::IpReassign,
            Prog(Policy::Baseline),
            Outcome::NotRecovered,
            &PATCHED,
        );
        assert_eq!(base.verdict, Verdict::Pass);
        let v = rejudged(base, |r| r.redirect_neigh = 3);
        assert!(matches!(v, Verdict::Fail(_)), "{v:?}");
    }

    #[test]
    fn classification_against_expectations() {
        use PolicyChoice::*;
        let base = Prog(Policy::Baseline);
        let aware = Prog(Policy::StateAware);
        let r = result(
            Scenario::IpReassign,
            base,
            Outcome::NotRecovered,
            &UNPATCHED,
        );
        assert_eq!(r.verdict, Verdict::Pass);
        let r = result(Scenario::IpReassign, base, Outcome::Recovered, &UNPATCHED);
        assert!(matches!(r.verdict, Verdict::Fail(_)));
        let r = result(
            Scenario::IpReassign,
            KernelStack,
            Outcome::Recovered,
            &UNPATCHED,
        );
        assert_eq!(r.verdict, Verdict::Pass);
        let r = result(
            Scenario::IpReassign,
            Prog(Policy::AlwaysNeigh),
            Outcome::NotRecovered,
            &UNPATCHED,
        );
        assert!(matches!(r.verdict, Verdict::Fail(_)));
        // Unsupported is right on an unpatched kernel, wrong on a patched
        // one; a traffic cell that was not run is skipped, never a pass.
        let mut r = CellResult::new(cell(Scenario::IpReassign, aware), Outcome::Unsupported);
        r.missing_flags = vec!["NEIGH_STATE".into()];
        r.finish(&UNPATCHED);
        assert_eq!(
            r.verdict,
            Verdict::Skipped(
                "not run: this kernel rejects NEIGH_STATE (the series adds it)".into()
            )
        );
        let r = result(Scenario::IpReassign, aware, Outcome::Unsupported, &PATCHED);
        assert!(matches!(r.verdict, Verdict::Fail(_)));
        let r = result(Scenario::IpReassign, aware, Outcome::Recovered, &PATCHED);
        assert_eq!(r.verdict, Verdict::Pass);
        // Errors always fail.
        let r = result(
            Scenario::Permanent,
            base,
            Outcome::Error("x".into()),
            &PATCHED,
        );
        assert!(matches!(r.verdict, Verdict::Fail(_)));
        // Fast path: only state-aware is checked.
        let mut r = CellResult::new(cell(Scenario::ReachableFastpath, aware), Outcome::Measured);
        r.redirect = 200;
        r.finish(&PATCHED);
        assert_eq!(r.verdict, Verdict::Pass);
        r.redirect_neigh = 1;
        r.finish(&PATCHED);
        assert!(matches!(r.verdict, Verdict::Fail(_)));
        let r = result(
            Scenario::ReachableFastpath,
            base,
            Outcome::Measured,
            &PATCHED,
        );
        assert_eq!(r.verdict, Verdict::Unchecked);
    }

    fn row(set: Nud, rc: i64, reported: Option<Nud>, dmac_matches: bool) -> StateRow {
        StateRow {
            set,
            before: set,
            rc,
            rc_name: ret::name(rc),
            nud_state: reported.map_or(0, |n| n.0),
            reported,
            dmac: None,
            dmac_matches,
            after: set,
        }
    }

    #[test]
    fn state_matrix_rows() {
        use Nud as N;
        assert!(row_ok(
            Policy::StateAware,
            &row(N::STALE, 0, Some(N::STALE), true)
        ));
        assert!(!row_ok(Policy::StateAware, &row(N::STALE, 0, None, true)));
        let mut moved = row(N::DELAY, 0, Some(N::REACHABLE), true);
        moved.after = N::REACHABLE;
        assert!(row_ok(Policy::StateAware, &moved));
        assert!(row_ok(Policy::Baseline, &row(N::STALE, 0, None, true)));
        assert!(!row_ok(Policy::Refresh, &row(N::STALE, 0, None, true)));
        let mut kicked = row(N::STALE, 0, None, true);
        kicked.after = N::DELAY;
        assert!(row_ok(Policy::Refresh, &kicked));
        let mut moved_reachable = row(N::REACHABLE, 0, None, true);
        moved_reachable.after = N::STALE;
        assert!(!row_ok(Policy::Refresh, &moved_reachable));
        assert!(row_ok(Policy::Baseline, &row(N::FAILED, 7, None, false)));
        assert!(!row_ok(Policy::Baseline, &row(N::FAILED, 0, None, false)));
        assert!(!row_ok(Policy::Baseline, &row(N::STALE, 0, None, false)));
        assert!(row_ok(Policy::AlwaysNeigh, &row(N::FAILED, 0, None, false)));
        // Unpatched: every NEIGH_STATE lookup is -EINVAL, which passes as
        // "unsupported".
        let mut r = CellResult::new(
            cell(
                Scenario::StateMatrix,
                PolicyChoice::Prog(Policy::StateAware),
            ),
            Outcome::Unsupported,
        );
        r.state_rows = vec![row(Nud::STALE, -22, None, false)];
        r.finish(&UNPATCHED);
        assert_eq!(r.verdict, Verdict::Pass);
        r.state_rows.push(row(Nud::STALE, 0, None, false));
        r.finish(&UNPATCHED);
        assert!(matches!(r.verdict, Verdict::Fail(_)));
        // No lookup at all shows no rejection.
        r.state_rows.clear();
        r.finish(&UNPATCHED);
        assert_eq!(r.verdict, Verdict::Fail("no lookups".into()));
    }
}
