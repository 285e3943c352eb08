//! Benchmark programs (src/bpf/bench.bpf.c): `bpf_fib_lookup()` cost per
//! lookup through `BPF_PROG_TEST_RUN`, and a traffic generator and sink for
//! forwarding-rate runs with XDP live frames.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use libbpf_rs::ProgramInput;

use crate::attach::{self, Attachment, EnteredNetns};
use crate::probe::FRAME;
use crate::skel::bench as skel;
use crate::{BpfContext, FibParams, Hook, Result};

crate::params::fib_params_conversions!(skel::types::fib_neigh_params);

/// `LOOKUPS_PER_RUN` in bench.bpf.c: helper calls per test run.
pub const LOOKUPS_PER_RUN: u32 = 64;
/// `GEN_FRAME_LEN` in bench.bpf.c: the generator's frame (64 bytes on the
/// wire with the FCS).
pub const GEN_FRAME_LEN: usize = 60;
/// `BPF_F_TEST_XDP_LIVE_FRAMES` (linux/bpf.h, Linux 5.18).
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// What the kernel measured for one timed test run of the lookup loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LookupTiming {
    /// Nanoseconds per lookup (or per copy, for the floor): the kernel's
    /// average per-run duration over `LOOKUPS_PER_RUN`.
    pub ns_per_lookup: f64,
    /// Lookups in this sample.
    pub lookups: u64,
    /// Lookups whose return code was not the expected one.
    pub mismatches: u64,
    /// The last unexpected return code, if any.
    pub bad_rc: Option<i64>,
    /// What the last lookup wrote back.
    pub last: FibParams,
}

/// Whether the kernel runs XDP live-frames test runs
/// (`BPF_F_TEST_XDP_LIVE_FRAMES`), which the forwarding generator needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveFrames {
    Supported,
    /// The kernel refused the live run with `errno` after the same run
    /// without the flag succeeded: EPERM or EACCES from a kernel that
    /// forbids them without saying why (this machine's host kernel,
    /// 6.18.44-fc-v1300, returns EPERM), EINVAL from one older than Linux
    /// 5.18, which does not know the flag.
    Refused {
        errno: i32,
    },
}

impl LiveFrames {
    /// The errors of a live run that mean the kernel does not run live
    /// frames at all, once the same run without the flag succeeded (so
    /// that EINVAL is not a malformed run). ENOTSUPP is the kernel's 524.
    fn refusal(errno: i32) -> bool {
        const ENOTSUPP: i32 = 524;
        [
            libc::EPERM,
            libc::EACCES,
            libc::EINVAL,
            libc::EOPNOTSUPP,
            ENOTSUPP,
        ]
        .contains(&errno)
    }

    /// Why the kernel does not run them, for a report ("" when it does).
    pub fn reason(&self) -> String {
        match self {
            LiveFrames::Supported => String::new(),
            LiveFrames::Refused { errno } => format!(
                "the kernel refuses XDP live-frames test runs (BPF_PROG_TEST_RUN with \
                 BPF_F_TEST_XDP_LIVE_FRAMES: {})",
                nix::errno::Errno::from_raw(*errno)
            ),
        }
    }
}

/// One XDP live-frames test run of the program `fd`: `frame` run `repeat`
/// times, `batch` frames at a time, with `ifindex` (of the calling
/// thread's namespace) as the receiving device, the one XDP_TX transmits
/// on. The errno on failure.
fn live_run(
    fd: BorrowedFd<'_>,
    frame: &[u8; GEN_FRAME_LEN],
    ifindex: u32,
    repeat: u32,
    batch: u32,
) -> std::result::Result<(), i32> {
    use std::os::fd::AsRawFd;
    let md = crate::xdp_md(frame, ifindex);
    // libbpf-rs's test-run input has no batch_size, so the options are
    // filled here.
    let mut opts = libbpf_rs::libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_test_run_opts>() as _,
        data_in: frame.as_ptr().cast(),
        data_size_in: GEN_FRAME_LEN as u32,
        ctx_in: md.as_ptr().cast(),
        ctx_size_in: md.len() as u32,
        repeat: i32::try_from(repeat.max(1)).unwrap_or(i32::MAX),
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size: batch,
        ..Default::default()
    };
    // SAFETY: every pointer in `opts` points at a live buffer of the
    // stated size for the duration of the call.
    let rc = unsafe { libbpf_rs::libbpf_sys::bpf_prog_test_run_opts(fd.as_raw_fd(), &mut opts) };
    match rc {
        0 => Ok(()),
        rc if rc < 0 => Err(-rc),
        _ => Err(libc::EIO),
    }
}

skel_owner!(
    /// The loaded benchmark programs.
    pub struct Bench(skel::BenchSkel<'static>) from skel::BenchSkelBuilder,
    "load the benchmark BPF object"
);

impl Bench {
    fn bss(&mut self) -> Result<&mut skel::types::bss> {
        crate::global_mut(&mut self.skel.maps.bss_data)
    }

    /// Time `runs` test runs of `LOOKUPS_PER_RUN` lookups each with
    /// `params` and `flags` from `hook` (in the calling thread's network
    /// namespace), every lookup expected to return `expect_rc`. With
    /// `floor`, the same loop without the helper call.
    pub fn time_lookups(
        &mut self,
        hook: Hook,
        params: &FibParams,
        flags: u32,
        expect_rc: i64,
        runs: u32,
        floor: bool,
    ) -> Result<LookupTiming> {
        let bss = self.bss()?;
        bss.lk.params = (*params).into();
        bss.lk.flags = flags;
        bss.lk.expect_rc = i32::try_from(expect_rc).unwrap_or(i32::MIN);
        bss.lk_mismatches = 0;
        bss.lk_last_bad_rc = 0;
        let progs = &self.skel.progs;
        let prog = match (hook, floor) {
            (Hook::Tc, false) => &progs.lookup_tc,
            (Hook::Xdp, false) => &progs.lookup_xdp,
            (Hook::Tc, true) => &progs.copy_tc,
            (Hook::Xdp, true) => &progs.copy_xdp,
        };
        let input = ProgramInput {
            data_in: Some(&FRAME),
            repeat: runs.max(1),
            ..Default::default()
        };
        let out = prog.test_run(input).ctx("test-run the lookup benchmark")?;
        let bss = self.bss()?;
        let mismatches = bss.lk_mismatches;
        Ok(LookupTiming {
            ns_per_lookup: duration_ns(out.duration) / f64::from(LOOKUPS_PER_RUN),
            lookups: u64::from(runs.max(1)) * u64::from(LOOKUPS_PER_RUN),
            mismatches,
            bad_rc: (mismatches > 0).then_some(bss.lk_last_bad_rc),
            last: bss.lk_last.into(),
        })
    }

    /// Set the generator's frame (Ethernet + IPv4 + UDP, `GEN_FRAME_LEN`
    /// bytes) and how many destinations (the frame's daddr upwards) and
    /// source ports (its sport upwards) it cycles through.
    pub fn set_generator(&mut self, frame: &[u8], dsts: u32, sports: u32) -> Result<()> {
        let bss = self.bss()?;
        let n = frame.len().min(GEN_FRAME_LEN);
        bss.gen.frame = [0; GEN_FRAME_LEN];
        bss.gen.frame[..n].copy_from_slice(&frame[..n]);
        bss.gen.dsts = dsts.max(1);
        bss.gen.sports = sports.max(1);
        Ok(())
    }

    /// Send `frames` frames out of `ifindex` (of the calling thread's
    /// namespace) with an XDP live-frames test run of the generator: the
    /// kernel runs the generator once per frame and transmits each frame
    /// on `ifindex` (XDP_TX), `batch` frames at a time; the softirqs that
    /// carry a batch through the receivers run on this CPU before the next
    /// batch is made.
    pub fn generate(&mut self, ifindex: u32, frames: u32, batch: u32) -> Result<()> {
        let frame = self.bss()?.gen.frame;
        let fd = self.skel.progs.gen_xdp.as_fd();
        live_run(fd, &frame, ifindex, frames, batch)
            .map_err(crate::os_error)
            .ctx("run the XDP live-frames generator")
    }

    /// Whether the kernel runs XDP live-frames test runs, the generator's
    /// mode: one run of the sink as a plain test run, whose every error
    /// is an error, then the same as a live run, whose refusal is the
    /// answer. The sink counts the frame and drops it (`XDP_DROP`), so
    /// nothing is transmitted. `ifindex` (of the calling thread's
    /// namespace) is the device the generator will use; 0, the
    /// namespace's loopback.
    pub fn live_frames(&mut self, ifindex: u32) -> Result<LiveFrames> {
        let frame = [0u8; GEN_FRAME_LEN];
        crate::test_run_once(
            &self.skel.progs.sink_xdp,
            Hook::Xdp,
            &frame,
            ifindex,
            "test-run the sink (before asking for live frames)",
        )?;
        let fd = self.skel.progs.sink_xdp.as_fd();
        match live_run(fd, &frame, ifindex, 1, 1) {
            Ok(()) => Ok(LiveFrames::Supported),
            Err(errno) if LiveFrames::refusal(errno) => Ok(LiveFrames::Refused { errno }),
            Err(errno) => Err(crate::os_error(errno)).ctx("probe XDP live-frames test runs"),
        }
    }

    /// Attach the sink (count, drop) to `ifindex` in namespace `netns`.
    pub fn attach_sink_in(&self, netns: BorrowedFd<'_>, ifindex: u32) -> Result<Attachment> {
        let _inside = EnteredNetns::enter(netns)?;
        attach::xdp(&self.skel.progs.sink_xdp, ifindex)
    }

    /// Frames the sink has seen, summed over CPUs.
    pub fn sink_count(&self) -> Result<u64> {
        crate::percpu_u64_sum(&self.skel.maps.sink_count, 0, "read the sink's counter")
    }
}

fn duration_ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

/// Kernel-measured run time of BPF programs (`BPF_ENABLE_STATS`,
/// `BPF_STATS_RUN_TIME`): on while this guard lives, off when the last
/// holder closes it (also if the process dies). The counts themselves are
/// read per program with [`run_stats`].
pub struct RunTimeStats {
    _fd: std::os::fd::OwnedFd,
}

impl RunTimeStats {
    pub fn enable() -> Result<Self> {
        // SAFETY: plain syscall wrapper; a non-negative return is a new fd.
        let fd = unsafe {
            libbpf_rs::libbpf_sys::bpf_enable_stats(libbpf_rs::libbpf_sys::BPF_STATS_RUN_TIME)
        };
        if fd < 0 {
            return Err(crate::os_error(-fd)).ctx("enable BPF run-time statistics");
        }
        // SAFETY: the kernel just gave us this descriptor.
        Ok(Self {
            _fd: unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) },
        })
    }
}

/// `(run_time_ns, run_cnt)` of the program behind `fd`.
pub fn run_stats(fd: BorrowedFd<'_>) -> Result<(u64, u64)> {
    let mut raw = libbpf_rs::libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&raw) as u32;
    // SAFETY: `raw` is a zeroed bpf_prog_info of `len` bytes; no pointer
    // fields are set, so the kernel only fills scalars.
    let rc = unsafe {
        libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &mut raw,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(crate::os_error(-rc)).ctx("read the program's run-time statistics");
    }
    Ok((raw.run_time_ns, raw.run_cnt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fib_params_round_trip_through_the_skeleton() {
        crate::params::assert_round_trip::<skel::types::fib_neigh_params>();
    }

    #[test]
    fn only_a_kernel_s_refusal_counts_as_unsupported() {
        for errno in [
            libc::EPERM,
            libc::EACCES,
            libc::EINVAL,
            libc::EOPNOTSUPP,
            524,
        ] {
            assert!(LiveFrames::refusal(errno), "{errno}");
        }
        // A failed run (no memory, a bad descriptor) is an error, not a
        // kernel without the feature.
        for errno in [libc::ENOMEM, libc::EBADF, libc::EFAULT, libc::E2BIG] {
            assert!(!LiveFrames::refusal(errno), "{errno}");
        }
        let why = LiveFrames::Refused { errno: libc::EPERM }.reason();
        assert!(
            why.contains("BPF_F_TEST_XDP_LIVE_FRAMES") && why.contains("EPERM"),
            "{why}"
        );
    }
}
