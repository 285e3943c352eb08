//! The two example programs built on the public header
//! (`include/fib_neigh.h`): `examples/tc_router.bpf.c` and
//! `examples/xdp_router.bpf.c`. One object file each, loaded unchanged on
//! any kernel: libbpf's CO-RE relocation tells the program at load time
//! whether the kernel has the series, and the program takes the state path
//! or its fallback. Their `stats` map counts each (path, action), which is
//! how the scenarios see which branch the loaded object takes.

use std::os::fd::{AsFd, BorrowedFd};

use libbpf_rs::TC_INGRESS;

use crate::attach::{self, Attachment};
use crate::skel::{tc_router as tc_skel, xdp_router as xdp_skel};
use crate::{Counters, Hook, Result};

use tc_skel::types::{fib_neigh_action as CAction, fib_neigh_path as CPath};

/// The compiled object files, as built (and embedded in the skeletons).
const TC_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tc_router.bpf.o"));
const XDP_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/xdp_router.bpf.o"));

const PATHS: usize = CPath::FIB_NEIGH_NR_PATHS.0 as usize;
const ACTIONS: usize = CAction::FIB_NEIGH_NR_ACTIONS.0 as usize;
const STATE: usize = CPath::FIB_NEIGH_PATH_STATE.0 as usize;
const FALLBACK: usize = CPath::FIB_NEIGH_PATH_FALLBACK.0 as usize;
const PASS: usize = CAction::FIB_NEIGH_PASS.0 as usize;
const REDIRECT: usize = CAction::FIB_NEIGH_REDIRECT.0 as usize;
const REDIRECT_NEIGH: usize = CAction::FIB_NEIGH_REDIRECT_NEIGH.0 as usize;

fibneigh_names::named_enum!(
    /// Which branch of `fib_neigh_decide()` the loaded object runs.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Path: "path" {
        /// The kernel has the series: `NEIGH_STATE` lookups.
        State => "state",
        /// It has not: the caller's fallback.
        Fallback => "fallback",
    }
);

/// The `stats` map, summed over CPUs: packets by (path, action).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    counts: [[u64; ACTIONS]; PATHS],
}

impl Stats {
    /// Packets decided on `path`.
    pub fn on(&self, path: Path) -> u64 {
        self.counts[index(path)].iter().sum()
    }

    /// The one path every decision took; None when no packet was decided
    /// or when both paths were (which the CO-RE branch rules out, except
    /// for a kernel with `NEIGH_STATE` that rejects `NEIGH_REFRESH`).
    pub fn path(&self) -> Option<Path> {
        match (self.on(Path::State), self.on(Path::Fallback)) {
            (s, 0) if s > 0 => Some(Path::State),
            (0, f) if f > 0 => Some(Path::Fallback),
            _ => None,
        }
    }

    /// In the forwarder's terms, so the scenarios judge the examples as
    /// they judge the forwarder: every pass of a decided packet in XDP is
    /// the stand-in for `bpf_redirect_neigh()` (the stack re-resolves).
    pub fn as_counters(&self, hook: Hook) -> Counters {
        let sum = |action: usize| self.counts.iter().map(|p| p[action]).sum::<u64>();
        let pass = sum(PASS);
        Counters {
            redirect: sum(REDIRECT),
            redirect_neigh: sum(REDIRECT_NEIGH),
            pass,
            neigh_pass: if hook == Hook::Xdp { pass } else { 0 },
            ..Default::default()
        }
    }
}

fn index(path: Path) -> usize {
    match path {
        Path::State => STATE,
        Path::Fallback => FALLBACK,
    }
}

/// Tc ingress or an XDP link; the hook must be the example's own.
impl attach::AttachIn for Example {
    fn attach_in(&self, netns: BorrowedFd<'_>, hook: Hook, ifindex: u32) -> Result<Attachment> {
        if hook != self.hook() {
            return Err(crate::Error::WrongHook {
                program: self.hook().name(),
                asked: hook.name(),
            });
        }
        let _inside = attach::EnteredNetns::enter(netns)?;
        match &self.skel {
            Skel::Tc(s) => attach::tc(s.progs.tc_router.as_fd(), ifindex, TC_INGRESS),
            Skel::Xdp(s) => attach::xdp(&s.progs.xdp_router, ifindex),
        }
    }
}

enum Skel {
    Tc(tc_skel::TcRouterSkel<'static>),
    Xdp(xdp_skel::XdpRouterSkel<'static>),
}

/// One example program, loaded with its defaults: the state-aware mode,
/// and as fallback `bpf_redirect_neigh()` in tc, the stack in XDP.
pub struct Example {
    skel: Skel,
}

impl Example {
    /// Load the example for `hook` (needs CAP_BPF / root).
    pub fn load(hook: Hook) -> Result<Self> {
        let skel = match hook {
            Hook::Tc => Skel::Tc(crate::load_skel::<tc_skel::TcRouterSkelBuilder>(
                "load the tc example program",
            )?),
            Hook::Xdp => Skel::Xdp(crate::load_skel::<xdp_skel::XdpRouterSkelBuilder>(
                "load the XDP example program",
            )?),
        };
        Ok(Self { skel })
    }

    pub fn hook(&self) -> Hook {
        match self.skel {
            Skel::Tc(_) => Hook::Tc,
            Skel::Xdp(_) => Hook::Xdp,
        }
    }

    /// A file descriptor of the program (for run-time statistics).
    pub fn prog_fd(&self) -> BorrowedFd<'_> {
        match &self.skel {
            Skel::Tc(s) => s.progs.tc_router.as_fd(),
            Skel::Xdp(s) => s.progs.xdp_router.as_fd(),
        }
    }

    /// Run the program once on `frame` (see `Forwarder::test_run`).
    pub fn test_run(&self, frame: &[u8], ingress_ifindex: u32) -> Result<u32> {
        let what = "test-run the example";
        match &self.skel {
            Skel::Tc(s) => {
                crate::test_run_once(&s.progs.tc_router, Hook::Tc, frame, ingress_ifindex, what)
            }
            Skel::Xdp(s) => {
                crate::test_run_once(&s.progs.xdp_router, Hook::Xdp, frame, ingress_ifindex, what)
            }
        }
    }

    /// The `stats` map, summed over CPUs.
    pub fn stats(&self) -> Result<Stats> {
        let mut stats = Stats::default();
        for (p, row) in stats.counts.iter_mut().enumerate() {
            for (a, total) in row.iter_mut().enumerate() {
                let key = (p * ACTIONS + a) as u32;
                let what = "read the example's stats";
                *total = match &self.skel {
                    Skel::Tc(s) => crate::percpu_u64_sum(&s.maps.stats, key, what)?,
                    Skel::Xdp(s) => crate::percpu_u64_sum(&s.maps.stats, key, what)?,
                };
            }
        }
        Ok(stats)
    }
}

/// The object file of the example for `hook`: its file name and bytes
/// (what the skeleton embeds and loads).
pub fn object(hook: Hook) -> (&'static str, &'static [u8]) {
    match hook {
        Hook::Tc => ("tc_router.bpf.o", TC_OBJECT),
        Hook::Xdp => ("xdp_router.bpf.o", XDP_OBJECT),
    }
}

// The key layout the examples use (example_stats.h): path * actions + action.
const _: () = {
    assert!(PATHS == 2 && ACTIONS == 3);
    assert!(STATE != FALLBACK && STATE < PATHS && FALLBACK < PATHS);
    assert!(PASS != REDIRECT && REDIRECT != REDIRECT_NEIGH && PASS != REDIRECT_NEIGH);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_path_or_none() {
        let mut s = Stats::default();
        assert_eq!(s.path(), None);
        s.counts[STATE][REDIRECT] = 3;
        assert_eq!(s.path(), Some(Path::State));
        s.counts[FALLBACK][PASS] = 1;
        assert_eq!(s.path(), None);
        let c = s.as_counters(Hook::Xdp);
        assert_eq!((c.redirect, c.pass, c.neigh_pass), (3, 1, 1));
        assert_eq!(s.as_counters(Hook::Tc).neigh_pass, 0);
    }

    #[test]
    fn the_objects_are_bpf_elf_files() {
        for hook in [Hook::Tc, Hook::Xdp] {
            let (name, bytes) = object(hook);
            assert!(name.ends_with(".bpf.o"));
            // ELF, 64-bit, machine EM_BPF (247).
            assert_eq!(&bytes[..4], b"\x7fELF");
            assert_eq!(u16::from_le_bytes([bytes[18], bytes[19]]), 247);
        }
    }
}
