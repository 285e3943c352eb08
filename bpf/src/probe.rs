//! One `bpf_fib_lookup()` through `BPF_PROG_TEST_RUN`, from tc or XDP.

use libbpf_rs::ProgramInput;

use crate::skel::probe as skel;
use crate::{BpfContext, FibParams, Hook, Result};

crate::params::fib_params_conversions!(skel::types::fib_neigh_params);

/// What one lookup returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupResult {
    /// `BPF_FIB_LKUP_RET_*`, or a negative errno (`-EINVAL` for an unknown
    /// or contradictory flag).
    pub rc: i64,
    /// The parameters as the helper left them.
    pub params: FibParams,
}

skel_owner!(
    /// The loaded probe programs.
    pub struct Probe(skel::ProbeSkel<'static>) from skel::ProbeSkelBuilder,
    "load the probe BPF object"
);

/// A minimal Ethernet frame for lookup test runs; the helper does not read
/// it.
pub(crate) const FRAME: [u8; 64] = {
    let mut f = [0u8; 64];
    f[12] = 0x08; // IPv4 ethertype
    f
};

impl Probe {
    /// Run one lookup with `params` and `flags` from `hook`.
    pub fn lookup(&mut self, hook: Hook, params: &FibParams, flags: u32) -> Result<LookupResult> {
        self.lookup_frame(hook, params, flags, &FRAME)
    }

    /// As [`Probe::lookup`], with the test run given `frame` (its length
    /// is the skb's in tc; `BPF_PROG_TEST_RUN` rejects a frame shorter than
    /// an Ethernet header).
    pub fn lookup_frame(
        &mut self,
        hook: Hook,
        params: &FibParams,
        flags: u32,
        frame: &[u8],
    ) -> Result<LookupResult> {
        let bss = crate::global_mut(&mut self.skel.maps.bss_data)?;
        bss.req.params = (*params).into();
        bss.req.flags = flags;
        let runs_before = bss.res.runs;
        let prog = match hook {
            Hook::Tc => &self.skel.progs.probe_tc,
            Hook::Xdp => &self.skel.progs.probe_xdp,
        };
        let input = ProgramInput {
            data_in: Some(frame),
            repeat: 1,
            ..Default::default()
        };
        prog.test_run(input).ctx("test-run the probe program")?;
        let bss = crate::global(&self.skel.maps.bss_data)?;
        debug_assert_eq!(bss.res.runs, runs_before.wrapping_add(1));
        Ok(LookupResult {
            rc: bss.res.rc,
            params: bss.res.params.into(),
        })
    }

    /// Whether the running kernel accepts `flag` (an unpatched kernel
    /// rejects unknown flags with `-EINVAL` before doing anything else).
    /// Probed with an IPv4 lookup on loopback.
    pub fn accepts_flag(&mut self, flag: u32) -> Result<bool> {
        let p = FibParams::forward(1, [127, 0, 0, 1].into(), [127, 0, 0, 1].into(), 64);
        Ok(self.lookup(Hook::Tc, &p, flag)?.rc != -(libc::EINVAL as i64))
    }
}

/// Whether the running kernel knows the tcx attach type: its own BTF's
/// `enum bpf_attach_type` has `BPF_TCX_INGRESS` (Linux 6.6+). `None` when
/// the kernel exposes no BTF. (The harness itself attaches tc programs
/// with clsact: libbpf-rs 0.27 has no tcx attach.)
pub fn kernel_knows_tcx() -> Option<bool> {
    let btf = libbpf_rs::btf::Btf::from_vmlinux().ok()?;
    let attach_types: libbpf_rs::btf::types::Enum<'_> = btf.type_by_name("bpf_attach_type")?;
    let known = attach_types
        .iter()
        .any(|m| m.name.is_some_and(|n| n == "BPF_TCX_INGRESS"));
    Some(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fib_params_round_trip_through_the_skeleton() {
        crate::params::assert_round_trip::<skel::types::fib_neigh_params>();
    }
}
