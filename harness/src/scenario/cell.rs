//! The names of the matrix: scenario, policy, family, hook, and a cell
//! (one of each).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use fibneigh_bpf::{Hook, Policy};
use serde::{Serialize, Serializer};

use crate::lab::addr::{SERVICE4, SERVICE6};

fibneigh_names::named_enum!(
    /// What is done to the neighbour behind the route (docs/design.md).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Scenario: "scenario" {
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

fibneigh_names::named_enum!(
    /// IPv4 or IPv6.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Family: "family" { V4 => "4", V6 => "6" }
);

impl Scenario {
    /// The scenarios `matrix --quick` runs.
    pub const QUICK: &'static [Scenario] = &[
        Scenario::IpReassign,
        Scenario::StateMatrix,
        Scenario::ReachableFastpath,
    ];
}

/// A forwarder policy, the kernel stack alone (no program), or the public
/// header's example program (`bpf/include/fib_neigh.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyChoice {
    Prog(Policy),
    KernelStack,
    /// `bpf/examples/{tc,xdp}_router.bpf.c`: one object for every kernel,
    /// state-aware where the kernel has the series, else its fallback
    /// (tc: `bpf_redirect_neigh()`, XDP: the stack).
    Header,
    /// A forwarder this project did not write (`fibneigh trial`), judged
    /// from the wire only.
    External,
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
            PolicyChoice::Header => "header",
            PolicyChoice::External => "external",
        }
    }

    /// The `BPF_FIB_LOOKUP_*` flags the policy needs from the kernel.
    pub fn required_flags(self) -> u32 {
        match self {
            PolicyChoice::Prog(p) => p.required_flags(),
            // It works on every kernel: CO-RE picks its path at load time.
            PolicyChoice::KernelStack | PolicyChoice::Header | PolicyChoice::External => 0,
        }
    }

    /// The policy this one is judged as on a kernel with (`patched`) or
    /// without the series: the header's example is state-aware on the
    /// first, and on the second its fallbacks behave as always-neigh
    /// (tc: `bpf_redirect_neigh()` for every packet; XDP: every packet to
    /// the stack).
    pub fn judged_as(self, patched: bool) -> PolicyChoice {
        match self {
            PolicyChoice::Header if patched => PolicyChoice::Prog(Policy::StateAware),
            PolicyChoice::Header => PolicyChoice::Prog(Policy::AlwaysNeigh),
            p => p,
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
        match s {
            "kernel-stack" => return Ok(PolicyChoice::KernelStack),
            "header" => return Ok(PolicyChoice::Header),
            _ => {}
        }
        s.parse::<Policy>()
            .map(PolicyChoice::Prog)
            .map_err(|_| format!("unknown policy {s:?} (expected baseline, always-neigh, state-aware, refresh, kernel-stack or header)"))
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
    pub hook: Option<Hook>,
}

impl Cell {
    /// A cell; the hook is dropped for the kernel stack.
    pub fn new(scenario: Scenario, policy: PolicyChoice, family: Family, hook: Hook) -> Self {
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

/// The service address of `family` (on host A, later on host B).
pub fn service(family: Family) -> IpAddr {
    pick(family, SERVICE4, SERVICE6)
}

/// The address of `family` from a v4/v6 pair.
pub fn pick(family: Family, v4: Ipv4Addr, v6: Ipv6Addr) -> IpAddr {
    match family {
        Family::V4 => v4.into(),
        Family::V6 => v6.into(),
    }
}
