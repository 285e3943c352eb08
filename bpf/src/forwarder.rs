//! The forwarder (src/bpf/forwarder.bpf.c): a tc and an XDP router fast
//! path whose neighbour policy is chosen at load time, its per-CPU
//! counters, and attachments that detach when dropped.

use std::os::fd::{AsFd, BorrowedFd};

use libbpf_rs::skel::OpenSkel;
use libbpf_rs::{MapCore, MapFlags, TC_INGRESS};

use crate::attach::{self, Attachment};
use crate::skel::forwarder as skel;
use crate::{flags, nud, BpfContext, Hook, Result};

use skel::types::fibneigh_policy as CPolicy;

fibneigh_names::named_enum!(
    /// How the forwarder treats the neighbour entry behind a route (docs/design.md).
    /// The numbers are the program's `enum fibneigh_policy` (fib.h), taken from
    /// the skeleton.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Policy: "policy" {
        /// Lookup, write the cached MACs, `bpf_redirect()`.
        Baseline = CPolicy::POLICY_BASELINE.0 as isize => "baseline",
        /// Lookup with `SKIP_NEIGH`, `bpf_redirect_neigh()` (XDP: the stack).
        AlwaysNeigh = CPolicy::POLICY_ALWAYS_NEIGH.0 as isize => "always-neigh",
        /// Lookup with `NEIGH_STATE`; `bpf_redirect()` only while the entry is
        /// connected, else `bpf_redirect_neigh()` (XDP: the stack).
        StateAware = CPolicy::POLICY_STATE_AWARE.0 as isize => "state-aware",
        /// Lookup with `NEIGH_REFRESH`, then as baseline.
        Refresh = CPolicy::POLICY_REFRESH.0 as isize => "refresh",
    }
);

impl Policy {
    /// The program's `enum fibneigh_policy` value.
    fn program_value(self) -> CPolicy {
        CPolicy(self as u32)
    }

    /// The `BPF_FIB_LOOKUP_*` flags the policy passes to the helper (the
    /// loader writes them into the program's `lookup_flags`: this is their
    /// one source), which are the uAPI it needs from the kernel: check them with
    /// [`Probe::accepts_flag`](crate::probe::Probe::accepts_flag). A kernel
    /// that rejects them still loads the program; every lookup then returns
    /// `-EINVAL` and every packet goes to the stack.
    pub fn required_flags(self) -> u32 {
        match self {
            Policy::Baseline => 0,
            Policy::AlwaysNeigh => flags::SKIP_NEIGH,
            Policy::StateAware => flags::NEIGH_STATE,
            Policy::Refresh => flags::NEIGH_REFRESH,
        }
    }
}

/// Lookup return-code buckets: `BPF_FIB_LKUP_RET_*` 0..=10, then "other"
/// (negative errnos and anything newer).
pub const RC_BUCKETS: usize = slot::RC_OTHER + 1 - slot::RC;
/// `nud_state` buckets: `NUD_NONE`, then one per NUD bit (0x01 ..= 0x80).
pub const NUD_BUCKETS: usize = slot::REDIRECT - slot::NUD;

/// Slots of the program's `counters` map: its `enum fibneigh_counter`
/// (fib.h), taken from the skeleton.
mod slot {
    use super::skel::types::fibneigh_counter as C;
    pub const RC: usize = C::CNT_RC_BASE.0 as usize;
    pub const RC_OTHER: usize = C::CNT_RC_OTHER.0 as usize;
    pub const NUD: usize = C::CNT_NUD_NONE.0 as usize;
    pub const NUD_BIT0: usize = C::CNT_NUD_BIT0.0 as usize;
    pub const REDIRECT: usize = C::CNT_REDIRECT.0 as usize;
    pub const REDIRECT_NEIGH: usize = C::CNT_REDIRECT_NEIGH.0 as usize;
    pub const PASS: usize = C::CNT_PASS.0 as usize;
    pub const DROP: usize = C::CNT_DROP.0 as usize;
    pub const NEIGH_PASS: usize = C::CNT_NEIGH_PASS.0 as usize;
    pub const SKIPPED: usize = C::CNT_SKIPPED.0 as usize;
    pub const COUNT: usize = C::CNT_MAX.0 as usize;
}

// What `Counters` assumes of the slots: the return codes 0.. then "other"
// (one past the last BPF_FIB_LKUP_RET_*) and the NUD buckets (NONE, then
// one per bit of the u8 NUD states) are runs, and every slot is counted.
const _: () = {
    assert!(slot::RC_OTHER - slot::RC == crate::params::ret::COUNT);
    assert!(slot::NUD == slot::RC_OTHER + 1);
    assert!(slot::NUD_BIT0 == slot::NUD + 1);
    assert!(NUD_BUCKETS == 1 + u8::BITS as usize);
    assert!(slot::SKIPPED + 1 == slot::COUNT);
};

/// The forwarder's counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Lookups by return code; index 11 is "other" (e.g. `-EINVAL`).
    pub lookups: [u64; RC_BUCKETS],
    /// `nud_state` reported by `NEIGH_STATE` lookups: index 0 is
    /// `NUD_NONE`, index 1 + b counts states with bit b set.
    pub nud: [u64; NUD_BUCKETS],
    /// Packets sent with `bpf_redirect()` and the lookup's MACs.
    pub redirect: u64,
    /// Packets sent with `bpf_redirect_neigh()` (tc only).
    pub redirect_neigh: u64,
    /// Packets handed to the stack untouched (all reasons).
    pub pass: u64,
    /// Packets a redirect helper refused.
    pub drop: u64,
    /// Of `pass`: XDP packets the tc program would have sent with
    /// `bpf_redirect_neigh()`.
    pub neigh_pass: u64,
    /// Of `pass`: packets not looked up (not IP, malformed, TTL expiring,
    /// options, not addressed to this host).
    pub skipped: u64,
}

impl Counters {
    fn from_slots(s: &[u64; slot::COUNT]) -> Self {
        let mut c = Counters {
            redirect: s[slot::REDIRECT],
            redirect_neigh: s[slot::REDIRECT_NEIGH],
            pass: s[slot::PASS],
            drop: s[slot::DROP],
            neigh_pass: s[slot::NEIGH_PASS],
            skipped: s[slot::SKIPPED],
            ..Default::default()
        };
        c.lookups
            .copy_from_slice(&s[slot::RC..slot::RC + RC_BUCKETS]);
        c.nud
            .copy_from_slice(&s[slot::NUD..slot::NUD + NUD_BUCKETS]);
        c
    }

    /// All lookups.
    pub fn lookups_total(&self) -> u64 {
        self.lookups.iter().sum()
    }

    /// Lookups that returned `rc` (a negative errno or an out-of-range
    /// value reads the "other" bucket).
    pub fn lookups_returning(&self, rc: i64) -> u64 {
        match usize::try_from(rc) {
            Ok(i) if i < RC_BUCKETS - 1 => self.lookups[i],
            _ => self.lookups[RC_BUCKETS - 1],
        }
    }

    /// Lookups that reported `state` (`nud::NONE` or a single NUD bit).
    pub fn nud_reports(&self, state: u16) -> u64 {
        if state == nud::NONE {
            return self.nud[0];
        }
        match state.trailing_zeros() {
            b @ 0..=7 if state.count_ones() == 1 => self.nud[1 + b as usize],
            _ => 0,
        }
    }

    /// What happened since `earlier` (a previous reading).
    pub fn since(&self, earlier: &Counters) -> Counters {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let mut c = Counters {
            redirect: d(self.redirect, earlier.redirect),
            redirect_neigh: d(self.redirect_neigh, earlier.redirect_neigh),
            pass: d(self.pass, earlier.pass),
            drop: d(self.drop, earlier.drop),
            neigh_pass: d(self.neigh_pass, earlier.neigh_pass),
            skipped: d(self.skipped, earlier.skipped),
            ..Default::default()
        };
        for (i, v) in c.lookups.iter_mut().enumerate() {
            *v = d(self.lookups[i], earlier.lookups[i]);
        }
        for (i, v) in c.nud.iter_mut().enumerate() {
            *v = d(self.nud[i], earlier.nud[i]);
        }
        c
    }
}

/// As [`Forwarder::attach`], on `ifindex` in the network namespace `netns`
/// (an open `/run/netns/<name>` or `/proc/<pid>/ns/net`).
impl attach::AttachIn for Forwarder {
    fn attach_in(&self, netns: BorrowedFd<'_>, hook: Hook, ifindex: u32) -> Result<Attachment> {
        let _inside = attach::EnteredNetns::enter(netns)?;
        self.attach(hook, ifindex)
    }
}

/// A loaded forwarder (both entry points, one policy).
pub struct Forwarder {
    skel: skel::ForwarderSkel<'static>,
    policy: Policy,
}

impl Forwarder {
    /// Load the forwarder with `policy` baked into its read-only data
    /// (needs CAP_BPF / root).
    pub fn load(policy: Policy) -> Result<Self> {
        Self::load_with(policy, true)
    }

    /// As [`load`](Self::load); without `nud_histogram` the program does
    /// not count reported NUD states (one per-CPU counter update per packet
    /// less for the policies that ask for the state), so every policy
    /// does the same bookkeeping, as the benchmarks need.
    pub fn load_with(policy: Policy, nud_histogram: bool) -> Result<Self> {
        let mut open = crate::open_skel(
            skel::ForwarderSkelBuilder::default(),
            "open the forwarder BPF object",
        )?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .ok_or(crate::Error::NoGlobalData)?;
        rodata.policy = policy.program_value();
        rodata.lookup_flags = policy.required_flags();
        rodata.nud_histogram = nud_histogram;
        let skel = open.load().ctx("load the forwarder BPF programs")?;
        Ok(Self { skel, policy })
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Attach to `ifindex` in the calling thread's network namespace: tc
    /// ingress (a clsact qdisc is created if missing) or XDP (a BPF link,
    /// driver mode where the device has it). Detached when the returned
    /// guard drops.
    pub fn attach(&self, hook: Hook, ifindex: u32) -> Result<Attachment> {
        match hook {
            Hook::Tc => attach::tc(self.skel.progs.forwarder_tc.as_fd(), ifindex, TC_INGRESS),
            Hook::Xdp => attach::xdp(&self.skel.progs.forwarder_xdp, ifindex),
        }
    }

    /// A file descriptor of the entry point for `hook` (for run-time
    /// statistics).
    pub fn prog_fd(&self, hook: Hook) -> BorrowedFd<'_> {
        match hook {
            Hook::Tc => self.skel.progs.forwarder_tc.as_fd(),
            Hook::Xdp => self.skel.progs.forwarder_xdp.as_fd(),
        }
    }

    /// The counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters> {
        let map = &self.skel.maps.counters;
        let mut slots = [0u64; slot::COUNT];
        for (i, total) in slots.iter_mut().enumerate() {
            *total = crate::percpu_u64_sum(map, i as u32, "read the forwarder's counters")?;
        }
        Ok(Counters::from_slots(&slots))
    }

    /// Zero every counter.
    pub fn reset_counters(&self) -> Result<()> {
        let map = &self.skel.maps.counters;
        let cpus = libbpf_rs::num_possible_cpus().ctx("count the possible CPUs")?;
        let zeros = vec![vec![0u8; 8]; cpus];
        for i in 0..slot::COUNT {
            map.update_percpu(&(i as u32).to_ne_bytes(), &zeros, MapFlags::ANY)
                .ctx("reset the forwarder's counters")?;
        }
        Ok(())
    }

    /// Run one entry point once on `frame` with `BPF_PROG_TEST_RUN`, as if
    /// it arrived on `ingress_ifindex` of the calling thread's namespace
    /// (for tc, the frame must be addressed to that device's MAC to count
    /// as this host's). Returns the program's verdict (`TC_ACT_*` or
    /// `XDP_*`); the kernel does not carry out a redirect.
    pub fn test_run(&self, hook: Hook, frame: &[u8], ingress_ifindex: u32) -> Result<u32> {
        let prog = match hook {
            Hook::Tc => &self.skel.progs.forwarder_tc,
            Hook::Xdp => &self.skel.progs.forwarder_xdp,
        };
        crate::test_run_once(prog, hook, frame, ingress_ifindex, "test-run the forwarder")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_are_the_command_lines() {
        let names: Vec<_> = Policy::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(
            names,
            ["baseline", "always-neigh", "state-aware", "refresh"]
        );
    }

    #[test]
    fn policy_numbers_are_the_programs() {
        // enum fibneigh_policy in fib.h
        assert_eq!(Policy::Baseline.program_value(), CPolicy::POLICY_BASELINE);
        assert_eq!(Policy::Refresh.program_value(), CPolicy::POLICY_REFRESH);
    }

    #[test]
    fn counter_accessors() {
        let mut s = [0u64; slot::COUNT];
        s[slot::RC + 7] = 3; // NO_NEIGH
        s[slot::RC + 11] = 2; // other
        s[slot::NUD] = 1; // NONE
        s[slot::NUD + 3] = 5; // STALE = bit 2
        s[slot::PASS] = 4;
        let c = Counters::from_slots(&s);
        assert_eq!(c.lookups_returning(crate::ret::NO_NEIGH), 3);
        assert_eq!(c.lookups_returning(-22), 2);
        assert_eq!(c.lookups_total(), 5);
        assert_eq!(c.nud_reports(nud::NONE), 1);
        assert_eq!(c.nud_reports(nud::STALE), 5);
        assert_eq!(c.nud_reports(nud::CONNECTED), 0);
        assert_eq!(c.pass, 4);
        let later = Counters { pass: 10, ..c };
        assert_eq!(later.since(&c).pass, 6);
        assert_eq!(later.since(&c).lookups_total(), 0);
    }
}
