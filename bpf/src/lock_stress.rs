//! REFRESH where the kernel holds locks (src/bpf/lock_stress.bpf.c): one
//! `NEIGH_STATE | NEIGH_REFRESH` lookup of a target entry, from a cls_bpf
//! filter under a classful qdisc (inside its root lock) and from test runs
//! on any CPU, tc and XDP, each site counting its results.

use std::os::fd::AsFd;

use libbpf_rs::skel::OpenSkel;
use libbpf_rs::{TcHookBuilder, TC_CUSTOM};

use crate::attach::{self, Attachment};
use crate::probe::FRAME;
use crate::skel::lock_stress as skel;
use crate::{BpfContext, FibParams, Hook, Result};

crate::params::fib_params_conversions!(skel::types::fib_neigh_params);

use skel::types::{lock_stress_site as CSite, lock_stress_slot as CSlot};

/// Where a lookup was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// The filter under the qdisc, on the frames that go out.
    Qdisc,
    /// `BPF_PROG_TEST_RUN` of the tc program.
    TcRun,
    /// `BPF_PROG_TEST_RUN` of the XDP program.
    XdpRun,
}

impl Site {
    fn row(self) -> u32 {
        match self {
            Site::Qdisc => CSite::LOCK_STRESS_QDISC.0,
            Site::TcRun => CSite::LOCK_STRESS_TC_RUN.0,
            Site::XdpRun => CSite::LOCK_STRESS_XDP_RUN.0,
        }
    }
}

/// What one site counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteCounts {
    /// Lookups by `BPF_FIB_LKUP_RET_*` (index = return code).
    pub by_ret: Vec<u64>,
    /// Lookups that returned a negative errno (or a code past the known
    /// ones).
    pub errno: u64,
    /// SUCCESS lookups that found the entry STALE (and kicked it).
    pub stale: u64,
}

impl SiteCounts {
    /// Every lookup the site made.
    pub fn total(&self) -> u64 {
        self.by_ret.iter().sum::<u64>() + self.errno
    }
}

/// The loaded programs, with their target lookup.
pub struct LockStress {
    skel: skel::LockStressSkel<'static>,
}

impl LockStress {
    /// Load with `target` as every lookup's parameters (needs CAP_BPF /
    /// root).
    pub fn load(target: FibParams) -> Result<Self> {
        let mut open = crate::open_skel(
            skel::LockStressSkelBuilder::default(),
            "open the lock-stress BPF object",
        )?;
        let rodata = crate::global_mut(&mut open.maps.rodata_data)?;
        rodata.target = target.into();
        let skel = open.load().ctx("load the lock-stress BPF programs")?;
        Ok(Self { skel })
    }

    /// Attach the qdisc site as a cls_bpf filter (direct action) under the
    /// classful qdisc with handle `major:` on `ifindex`, in the calling
    /// thread's network namespace; detached when the guard drops.
    pub fn attach_under_qdisc(&self, ifindex: u32, major: u16) -> Result<Attachment> {
        let hook = TcHookBuilder::new(self.skel.progs.lock_stress_qdisc.as_fd())
            .ifindex(attach::to_i32(ifindex)?)
            .replace(true)
            .handle(1)
            .priority(1)
            // libbpf takes the handle's major number in place (TC_H_MAJ).
            .parent(u32::from(major) << 16, 0)
            .hook(TC_CUSTOM);
        attach::tc_hook(hook)
    }

    /// `repeat` lookups through a test run of the `hook` site, as if a
    /// frame arrived on `ingress_ifindex` of the calling thread's
    /// namespace.
    pub fn test_run(&self, hook: Hook, ingress_ifindex: u32, repeat: u32) -> Result<()> {
        let prog = match hook {
            Hook::Tc => &self.skel.progs.lock_stress_tc,
            Hook::Xdp => &self.skel.progs.lock_stress_xdp,
        };
        crate::test_run_repeat(
            prog,
            hook,
            &FRAME,
            ingress_ifindex,
            repeat,
            "test-run the lock-stress lookup",
        )
        .map(drop)
    }

    /// What `site` counted, summed over CPUs.
    pub fn counts(&self, site: Site) -> Result<SiteCounts> {
        let map = &self.skel.maps.counts;
        let slots = CSlot::LOCK_STRESS_SLOTS.0;
        let base = site.row() * slots;
        let read =
            |slot: u32| crate::percpu_u64_sum(map, base + slot, "read the lock-stress counts");
        let mut by_ret = Vec::new();
        for rc in 0..CSlot::LOCK_STRESS_ERRNO.0 {
            by_ret.push(read(rc)?);
        }
        Ok(SiteCounts {
            by_ret,
            errno: read(CSlot::LOCK_STRESS_ERRNO.0)?,
            stale: read(CSlot::LOCK_STRESS_STALE.0)?,
        })
    }
}
