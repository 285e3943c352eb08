//! At scale: N nexthops on the DUT's host segment, each its own neighbour
//! entry and destination, a flow spread over all of them at one aggregate
//! rate, and a fraction of them moved at once to a new MAC with no
//! announcement. Per case (N, fraction moved, how the entries went STALE,
//! policy, hook, family): how long each moved destination took to reach
//! its new MAC, what went to the dead MAC or was lost, the probes the DUT
//! sent, the forwarder's and the softirqs' CPU time, and the neighbour
//! table's own counters.
//!
//! The lab is the standard one (`Topology::standard`) plus a /16 (IPv4)
//! or /64 (IPv6) on the host segment holding the N nexthops: those that
//! stay on host A, those that move on host B, whose interface takes a new
//! MAC at the move (one link change, so every moved nexthop moves at the
//! same instant, as when a failover or a restarted VM brings the same IPs
//! back on another NIC). The switch floods multicast (thousands of
//! solicited-node groups are past a snooping bridge's table).

pub mod campaign;
mod observe;
pub mod plot;
mod run;

use std::collections::BTreeMap;
use std::time::Duration;

use fibneigh_bpf::{Hook, Policy};
use serde::{Serialize, Serializer};

use crate::scenario::{Family, PolicyChoice};

pub use observe::{moved_indices, observe, Observed, Spread};
pub use run::run;

fibneigh_names::named_enum!(
    /// How the entries became STALE before the move.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum StaleBy: "staleness" {
        /// Every entry replaced to STALE (with the MAC it had) at the move:
        /// the field reproducer, for all N at once.
        Forced => "forced",
        /// Entries aged by themselves (`base_reachable_time_ms` 100, no
        /// confirmation from a program that never marks them used).
        Aged => "aged",
    }
);

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ScaleCase {
    pub nexthops: u32,
    /// Percent of the nexthops moved (at least one is).
    pub moved_pct: u32,
    pub stale: StaleBy,
    pub policy: PolicyChoice,
    pub family: Family,
    /// None for the kernel stack.
    pub hook: Option<Hook>,
}

impl ScaleCase {
    pub fn v6(&self) -> bool {
        self.family == Family::V6
    }

    /// `n1024/10%/forced/refresh/v4/xdp`.
    pub fn id(&self) -> String {
        format!(
            "n{}/{}%/{}/{}/v{}/{}",
            self.nexthops,
            self.moved_pct,
            self.stale,
            self.policy,
            self.family,
            self.hook.map_or("-", |h| h.name())
        )
    }

    /// The same measurement with the kernel stack instead of a program.
    pub fn with_stack(&self) -> ScaleCase {
        ScaleCase {
            policy: PolicyChoice::KernelStack,
            hook: None,
            ..*self
        }
    }

    /// Whether every moved destination must reach its new MAC: all but
    /// the baseline, which keeps the dead MAC (the bug itself). The
    /// header's example is judged as what it runs on this kernel.
    pub fn should_recover(&self, patched: bool) -> bool {
        self.policy.judged_as(patched) != PolicyChoice::Prog(Policy::Baseline)
    }
}

/// Settings shared by every case of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScaleOptions {
    /// Aggregate rate of the flow over all nexthops.
    pub rate_pps: u32,
    /// How long after the move the flow keeps running; None: long enough
    /// for every destination to be sent to several times
    /// ([`ScaleOptions::window_for`]).
    #[serde(serialize_with = "opt_ms")]
    pub window: Option<Duration>,
}

fn opt_ms<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(d.as_millis() as u64),
        None => s.serialize_none(),
    }
}

impl ScaleOptions {
    /// The window for `nexthops`: 4 s for the stack's DELAY and probes
    /// (1 s, then 100 ms apart) plus six rounds of the flow over every
    /// nexthop, so a destination that recovers is seen doing so.
    pub fn window_for(&self, nexthops: u32) -> Duration {
        self.window.unwrap_or_else(|| {
            let round = f64::from(nexthops) / f64::from(self.rate_pps.max(1));
            Duration::from_secs(4) + Duration::from_secs_f64(6.0 * round)
        })
    }
}

/// What one case measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleResult {
    pub id: String,
    #[serde(flatten)]
    pub case: ScaleCase,
    pub rate_pps: u32,
    pub window_ms: u64,
    /// Nexthops moved to host B.
    pub moved: u32,
    /// Moved nexthops whose flow reached host B's MAC in the window, and
    /// those that never did.
    pub recovered: u32,
    pub never: u32,
    /// From the move to each moved destination's first frame at its new
    /// MAC (the recovered ones).
    pub recovery_ms: Option<Spread>,
    #[serde(flatten)]
    pub observed: Observed,
    /// Frames sent that never left the DUT (sent minus captured leaving
    /// it; an upper bound when `capture_drops` is not 0).
    pub lost: u64,
    pub sent: u64,
    /// The rate the flow reached, over its whole run (warm-up included).
    pub sent_pps: f64,
    /// Frames the capture's socket dropped (its buffer full).
    pub capture_drops: u64,
    /// The forwarder's run time from the move to the end
    /// (`BPF_ENABLE_STATS`), and its runs; None for the stack.
    pub prog_run_ms: Option<f64>,
    pub prog_runs: Option<u64>,
    /// Softirq time on all CPUs from the move to the end (`/proc/stat`:
    /// the whole machine's, not the DUT's alone).
    pub softirq_ms: u64,
    /// The neighbour table's counters from the move to the end
    /// (`/proc/net/stat/{arp,ndisc}_cache`: the kernel's one table per
    /// family, every namespace's), and its size at the end (`entries`).
    pub table: BTreeMap<String, u64>,
    /// The DUT's nexthop entries at the end, by state.
    pub final_states: BTreeMap<String, u32>,
    /// Moved nexthops whose entry holds the new MAC at the end.
    pub final_new_mac: u32,
    /// How long the move took: host B's new MAC, and for `forced` the
    /// moved nexthops' entries replaced to STALE (the others follow).
    pub move_ms: u64,
    /// The setup: addresses placed, entries installed.
    pub setup_ms: u64,
    /// The DUT's neighbour sysctls (and what the run raised).
    pub sysctls: BTreeMap<String, String>,
    /// The header's example: the path its stats show.
    pub header_path: Option<String>,
    /// What is wrong (filled by [`check`]).
    pub problems: Vec<String>,
}

impl ScaleResult {
    /// The flow fell below 90 % of the rate asked for: the machine caps
    /// it, destinations come back less often than the window (computed
    /// from the rate asked for) assumes, and "never" may only mean "not
    /// yet". Said, not judged: a busy machine is not a failure.
    pub fn sender_fell_behind(&self) -> bool {
        self.sent_pps < 0.9 * f64::from(self.rate_pps)
    }
}

/// How many times the stack's probe count a program may send before
/// [`check`] calls it a storm: within the stack's order of magnitude.
pub const PROBE_FACTOR: u64 = 10;

/// The behaviour checks over a run's results: every moved destination
/// recovers for the policies that should (`ScaleCase::should_recover`),
/// none for the baseline, and where the same case ran with the kernel
/// stack, a program's probes stay within [`PROBE_FACTOR`] times the
/// stack's (at least the number of moved nexthops, so a case the stack
/// recovered with few probes does not fail a program for probing each
/// once). No timing is checked.
pub fn check(results: &mut [ScaleResult], patched: bool) {
    let stack: BTreeMap<ScaleCase, u64> = results
        .iter()
        .filter(|r| r.case.policy == PolicyChoice::KernelStack)
        .map(|r| (r.case, r.observed.probes_total()))
        .collect();
    for r in results.iter_mut() {
        let mut p = Vec::new();
        if r.case.should_recover(patched) {
            if r.never > 0 {
                p.push(format!(
                    "{} of {} moved destinations never reached the new MAC in {} ms",
                    r.never, r.moved, r.window_ms
                ));
            }
        } else if r.recovered > 0 {
            p.push(format!(
                "{} of {} moved destinations reached the new MAC under a policy that cannot re-validate",
                r.recovered, r.moved
            ));
        }
        if r.case.policy != PolicyChoice::KernelStack {
            if let Some(&s) = stack.get(&r.case.with_stack()) {
                let limit = PROBE_FACTOR * s.max(u64::from(r.moved));
                let sent = r.observed.probes_total();
                if sent > limit {
                    p.push(format!(
                        "{sent} probes, more than {PROBE_FACTOR} x the stack's {s} (the limit is {limit})"
                    ));
                }
            }
        }
        r.problems = p;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(policy: PolicyChoice, hook: Option<Hook>) -> ScaleCase {
        ScaleCase {
            nexthops: 1024,
            moved_pct: 10,
            stale: StaleBy::Forced,
            policy,
            family: Family::V4,
            hook,
        }
    }

    fn result(c: ScaleCase, recovered: u32, probes: u64) -> ScaleResult {
        ScaleResult {
            id: c.id(),
            case: c,
            rate_pps: 1000,
            window_ms: 10_000,
            moved: 102,
            recovered,
            never: 102 - recovered,
            recovery_ms: None,
            observed: Observed {
                probes_unicast: probes,
                ..Observed::default()
            },
            lost: 0,
            sent: 0,
            sent_pps: 1000.0,
            capture_drops: 0,
            prog_run_ms: None,
            prog_runs: None,
            softirq_ms: 0,
            table: BTreeMap::new(),
            final_states: BTreeMap::new(),
            final_new_mac: 0,
            move_ms: 0,
            setup_ms: 0,
            sysctls: BTreeMap::new(),
            header_path: None,
            problems: vec![],
        }
    }

    #[test]
    fn ids_and_names() {
        let c = case(PolicyChoice::Prog(Policy::Refresh), Some(Hook::Xdp));
        assert_eq!(c.id(), "n1024/10%/forced/refresh/v4/xdp");
        assert_eq!(c.with_stack().id(), "n1024/10%/forced/kernel-stack/v4/-");
        assert_eq!("aged".parse::<StaleBy>(), Ok(StaleBy::Aged));
        assert!("old".parse::<StaleBy>().is_err());
    }

    #[test]
    fn a_sender_below_nine_tenths_of_the_rate_fell_behind() {
        let mut r = result(case(PolicyChoice::KernelStack, None), 102, 0);
        assert!(!r.sender_fell_behind());
        r.sent_pps = 901.0;
        assert!(!r.sender_fell_behind());
        r.sent_pps = 899.0;
        assert!(r.sender_fell_behind());
    }

    #[test]
    fn window_grows_with_the_round() {
        let o = ScaleOptions {
            rate_pps: 1000,
            window: None,
        };
        assert_eq!(o.window_for(1000), Duration::from_secs(10));
        assert_eq!(o.window_for(1), Duration::from_millis(4006));
        let fixed = ScaleOptions {
            window: Some(Duration::from_secs(3)),
            ..o
        };
        assert_eq!(fixed.window_for(16384), Duration::from_secs(3));
    }

    #[test]
    fn checks_recovery_and_probe_storms() {
        let stack = result(case(PolicyChoice::KernelStack, None), 102, 110);
        let refresh = result(
            case(PolicyChoice::Prog(Policy::Refresh), Some(Hook::Xdp)),
            102,
            200,
        );
        let storm = result(
            case(PolicyChoice::Prog(Policy::StateAware), Some(Hook::Tc)),
            102,
            5000,
        );
        let base_ok = result(
            case(PolicyChoice::Prog(Policy::Baseline), Some(Hook::Tc)),
            0,
            0,
        );
        let base_bad = result(
            case(PolicyChoice::Prog(Policy::Baseline), Some(Hook::Xdp)),
            3,
            0,
        );
        let slow = result(
            case(PolicyChoice::Prog(Policy::AlwaysNeigh), Some(Hook::Xdp)),
            100,
            100,
        );
        let mut all = vec![stack, refresh, storm, base_ok, base_bad, slow];
        check(&mut all, true);
        let problems: Vec<usize> = all.iter().map(|r| r.problems.len()).collect();
        assert_eq!(problems, vec![0, 0, 1, 0, 1, 1]);
        assert!(all[2].problems[0].contains("5000 probes"));
        assert!(all[5].problems[0].contains("2 of 102"));
        // Unpatched, the header's example falls back and must recover.
        let mut h = vec![result(case(PolicyChoice::Header, Some(Hook::Xdp)), 0, 0)];
        check(&mut h, false);
        assert_eq!(h[0].problems.len(), 1);
    }
}
