//! The scenarios of docs/design.md as a table of cells (scenario x policy x
//! family x hook) and one [`run_case`] that runs a cell in a fresh lab and
//! returns its [`CellResult`](crate::report::CellResult).

mod run;
mod state_matrix;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use fibneigh_bpf::probe::{Hook, Probe};
use fibneigh_bpf::{flags, Policy};
use serde::{Serialize, Serializer};

use crate::report::{CellResult, Outcome};
use crate::stop::Interrupted;

pub use run::{GW4, GW6, REMOTE4, REMOTE6, SERVICE4, SERVICE6};

/// Errors inside a cell; they end up in the cell's result, except
/// [`Error::Interrupted`], which stops the whole run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Lab(#[from] crate::lab::Error),
    #[error(transparent)]
    Traffic(#[from] crate::traffic::Error),
    #[error(transparent)]
    Bpf(#[from] fibneigh_bpf::Error),
    #[error("interrupted")]
    Interrupted(#[from] Interrupted),
    #[error("{0}")]
    Setup(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident, $what:literal, { $($(#[$vm:meta])* $v:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),+];
            pub fn name(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::ALL.iter().copied().find(|v| v.name() == s).ok_or_else(|| {
                    let names: Vec<&str> = $name::ALL.iter().map(|v| v.name()).collect();
                    format!("unknown {} {s:?} (expected one of: {})", $what, names.join(", "))
                })
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }
    };
}

named_enum!(
    /// What is done to the neighbour behind the route (docs/design.md).
    Scenario, "scenario", {
    /// The field bug: the service IP moves from host A to host B, no
    /// announcement reaches the DUT, its entry forced STALE with the old
    /// MAC (`ip neigh replace ... lladdr MAC1 nud stale`).
    IpReassign => "ip-reassign",
    /// As ip-reassign, the entry ageing to STALE by itself (short
    /// base_reachable_time_ms).
    IpReassignAged => "ip-reassign-aged",
    /// As ip-reassign, and host B's gratuitous ARP / unsolicited NA
    /// reaches the DUT.
    IpReassignGarp => "ip-reassign-garp",
    /// Every NUD state through the probe program (no traffic).
    StateMatrix => "state-matrix",
    /// The service sits behind a router whose MAC changes (stale gateway).
    Gateway => "gateway",
    /// Option 1: a managed extern_learn entry, baseline policy.
    Managed => "managed",
    /// A pinned NUD_PERMANENT entry: never follows the move.
    Permanent => "permanent",
    /// Connected entries only: the slow path must stay unused.
    ReachableFastpath => "reachable-fastpath",
});

named_enum!(
    /// IPv4 or IPv6.
    Family, "family", { V4 => "4", V6 => "6" });

named_enum!(
    /// Where the forwarder runs.
    HookKind, "hook", { Tc => "tc", Xdp => "xdp" });

impl HookKind {
    pub fn hook(self) -> Hook {
        match self {
            HookKind::Tc => Hook::Tc,
            HookKind::Xdp => Hook::Xdp,
        }
    }
}

impl Scenario {
    /// The scenarios `matrix --quick` runs.
    pub const QUICK: &'static [Scenario] = &[
        Scenario::IpReassign,
        Scenario::StateMatrix,
        Scenario::ReachableFastpath,
    ];

    /// Whether the cell moves the service to a new MAC.
    pub fn moves(self) -> bool {
        !matches!(self, Scenario::StateMatrix | Scenario::ReachableFastpath)
    }

    /// The policies this scenario runs with.
    pub fn policies(self) -> Vec<PolicyChoice> {
        match self {
            Scenario::Managed => vec![PolicyChoice::Prog(Policy::Baseline)],
            Scenario::StateMatrix => Policy::ALL.iter().map(|p| PolicyChoice::Prog(*p)).collect(),
            _ => PolicyChoice::all(),
        }
    }
}

/// A forwarder policy, or the kernel stack alone (no program).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyChoice {
    Prog(Policy),
    KernelStack,
}

impl PolicyChoice {
    pub fn all() -> Vec<PolicyChoice> {
        let mut v: Vec<_> = Policy::ALL.iter().map(|p| PolicyChoice::Prog(*p)).collect();
        v.push(PolicyChoice::KernelStack);
        v
    }

    pub fn name(self) -> &'static str {
        match self {
            PolicyChoice::Prog(p) => p.name(),
            PolicyChoice::KernelStack => "kernel-stack",
        }
    }

    /// The `BPF_FIB_LOOKUP_*` flags the policy needs from the kernel.
    pub fn required_flags(self) -> u32 {
        match self {
            PolicyChoice::Prog(p) => p.required_flags(),
            PolicyChoice::KernelStack => 0,
        }
    }
}

impl fmt::Display for PolicyChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PolicyChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "kernel-stack" {
            return Ok(PolicyChoice::KernelStack);
        }
        s.parse::<Policy>()
            .map(PolicyChoice::Prog)
            .map_err(|_| format!("unknown policy {s:?} (expected baseline, always-neigh, state-aware, refresh or kernel-stack)"))
    }
}

impl Serialize for PolicyChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Cell {
    pub scenario: Scenario,
    pub policy: PolicyChoice,
    pub family: Family,
    /// None for the kernel stack (no program).
    pub hook: Option<HookKind>,
}

impl Cell {
    /// A cell; the hook is dropped for the kernel stack.
    pub fn new(scenario: Scenario, policy: PolicyChoice, family: Family, hook: HookKind) -> Self {
        let hook = (policy != PolicyChoice::KernelStack).then_some(hook);
        Cell {
            scenario,
            policy,
            family,
            hook,
        }
    }

    pub fn v6(&self) -> bool {
        self.family == Family::V6
    }

    /// `scenario/policy/v4/tc`.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/v{}/{}",
            self.scenario,
            self.policy,
            self.family,
            self.hook.map_or("-", |h| h.name())
        )
    }
}

/// Every cell of `scenarios`, in matrix order.
pub fn cells(scenarios: &[Scenario]) -> Vec<Cell> {
    let mut out = Vec::new();
    for &s in scenarios {
        for p in s.policies() {
            for &f in Family::ALL {
                if p == PolicyChoice::KernelStack {
                    out.push(Cell::new(s, p, f, HookKind::Tc));
                } else {
                    for &h in HookKind::ALL {
                        out.push(Cell::new(s, p, f, h));
                    }
                }
            }
        }
    }
    out
}

/// What the running kernel accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Support {
    pub neigh_state: bool,
    pub neigh_refresh: bool,
    pub skip_neigh: bool,
}

impl Support {
    /// Probe the running kernel (needs root).
    pub fn probe() -> Result<Support> {
        let mut p = Probe::load()?;
        Ok(Support {
            neigh_state: p.accepts_flag(flags::NEIGH_STATE)?,
            neigh_refresh: p.accepts_flag(flags::NEIGH_REFRESH)?,
            skip_neigh: p.accepts_flag(flags::SKIP_NEIGH)?,
        })
    }

    /// The flag names of `wanted` this kernel does not accept.
    pub fn missing(&self, wanted: u32) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (bit, ok, name) in [
            (flags::NEIGH_STATE, self.neigh_state, "NEIGH_STATE"),
            (flags::NEIGH_REFRESH, self.neigh_refresh, "NEIGH_REFRESH"),
            (flags::SKIP_NEIGH, self.skip_neigh, "SKIP_NEIGH"),
        ] {
            if wanted & bit != 0 && !ok {
                out.push(name);
            }
        }
        out
    }

    /// Whether the kernel carries patch 1 (what `matrix --check` keys on).
    pub fn patched(&self) -> bool {
        self.neigh_state
    }
}

/// Timings of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Options {
    /// Flow rate.
    pub rate_pps: u32,
    /// How long after the move a cell waits for recovery.
    #[serde(serialize_with = "ms")]
    pub window: Duration,
    /// Window for the managed scenario (its entries are re-probed only
    /// every interval_probe_time_ms, a global default of 5 s).
    #[serde(serialize_with = "ms")]
    pub managed_window: Duration,
    /// How long reachable-fastpath measures.
    #[serde(serialize_with = "ms")]
    pub fastpath_window: Duration,
    /// Kept running after the first packet to the new MAC.
    #[serde(serialize_with = "ms")]
    pub after_recovery: Duration,
    /// The DUT's neighbour timers.
    pub timers: NeighTimers,
}

/// Which neighbour timers the DUT's host-side device gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NeighTimers {
    /// Short, so a cell takes seconds: delay_first_probe_time 1 s,
    /// retrans_time_ms 100 (and short ageing for the aged and managed
    /// scenarios).
    Short,
    /// The kernel's built-in defaults, written explicitly (a new namespace
    /// would otherwise inherit the host's `default` table values).
    KernelDefaults,
}

impl NeighTimers {
    /// base_reachable_time_ms, delay_first_probe_time (s), retrans_time_ms,
    /// ucast_solicit, mcast_solicit as the kernel sets them
    /// (net/ipv4/arp.c, net/ipv6/ndisc.c).
    pub const KERNEL_DEFAULTS: [(crate::lab::NeighSysctl, u32); 5] = [
        (crate::lab::NeighSysctl::BaseReachableTimeMs, 30_000),
        (crate::lab::NeighSysctl::DelayFirstProbeTime, 5),
        (crate::lab::NeighSysctl::RetransTimeMs, 1000),
        (crate::lab::NeighSysctl::UcastSolicit, 3),
        (crate::lab::NeighSysctl::McastSolicit, 3),
    ];

    pub fn name(self) -> &'static str {
        match self {
            NeighTimers::Short => "short",
            NeighTimers::KernelDefaults => "kernel defaults",
        }
    }
}

fn ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rate_pps: 200,
            window: Duration::from_millis(2000),
            managed_window: Duration::from_millis(8000),
            fastpath_window: Duration::from_millis(1000),
            after_recovery: Duration::from_millis(250),
            timers: NeighTimers::Short,
        }
    }
}

/// The service address of `family` (on host A, later on host B).
pub fn service(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(SERVICE4),
        Family::V6 => IpAddr::V6(SERVICE6),
    }
}

pub(crate) fn pick(family: Family, v4: Ipv4Addr, v6: Ipv6Addr) -> IpAddr {
    match family {
        Family::V4 => v4.into(),
        Family::V6 => v6.into(),
    }
}

/// Run one cell in a fresh lab. Failures of the cell end up in its
/// result; only an interruption (SIGINT/SIGTERM) is an error here.
pub fn run_case(cell: &Cell, support: &Support, opts: &Options) -> Result<CellResult, Interrupted> {
    let started = std::time::Instant::now();
    let missing = support.missing(cell.policy.required_flags());
    if !missing.is_empty() && cell.scenario != Scenario::StateMatrix {
        let mut r = CellResult::new(*cell, Outcome::Unsupported);
        r.missing_flags = missing.iter().map(|s| s.to_string()).collect();
        r.finish(support);
        return Ok(r);
    }
    let outcome = match cell.scenario {
        Scenario::StateMatrix => state_matrix::run(cell),
        _ => run::run(cell, opts),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>(), Ok(*s));
        }
        for p in PolicyChoice::all() {
            assert_eq!(p.name().parse::<PolicyChoice>(), Ok(p));
        }
        assert_eq!("6".parse::<Family>(), Ok(Family::V6));
        assert_eq!("xdp".parse::<HookKind>(), Ok(HookKind::Xdp));
        assert!("ip-move".parse::<Scenario>().is_err());
        assert!("v4".parse::<Family>().is_err());
    }

    #[test]
    fn the_matrix_has_the_expected_cells() {
        let all = cells(Scenario::ALL);
        // 5 policies x 2 families x (2 hooks, or none for the stack) = 18
        // per full scenario; state-matrix has no stack (16), managed only
        // baseline (4).
        assert_eq!(all.len(), 6 * 18 + 16 + 4);
        let quick = cells(Scenario::QUICK);
        assert_eq!(quick.len(), 18 + 16 + 18);
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
