//! The XDP dispatcher rewritten under every CPU (`fibneigh
//! dispatcher-stress`): a thread pinned to each CPU the process may run on
//! makes test runs of two repeats of an `XDP_PASS` program, each of which
//! adds the program to the kernel's XDP dispatcher and removes it after
//! (`fibneigh_bpf::XdpPass::test_run_through_dispatcher`), so the `jmp` in
//! `bpf_dispatcher_xdp_func` is rewritten while the other CPUs run through
//! it. It tests the machine the kernel runs on, not the series: QEMU 7.2's
//! multi-threaded TCG lets a vCPU run code another has already rewritten,
//! and the guest dies with `Oops: int3` there (`fibneigh_vm::TcgThreads`;
//! `scripts/tcg-threads.sh` boots it under both modes).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fibneigh_bpf::XdpPass;
use serde::Serialize;

use crate::cpus::{allowed_cpus, join_all, pin_to};
use crate::error::{Error, Result};
use crate::stop;

/// `XDP_PASS`, the only verdict the program returns.
const XDP_PASS: u32 = 2;

/// What one CPU's thread made.
#[derive(Debug, Clone, Serialize)]
pub struct CpuRuns {
    pub cpu: usize,
    /// Test runs, each rewriting the dispatcher twice.
    pub test_runs: u64,
}

/// A finished run.
#[derive(Debug, Clone, Serialize)]
pub struct DispatcherStressReport {
    pub seconds: u64,
    pub cpus: Vec<CpuRuns>,
}

impl DispatcherStressReport {
    /// Every CPU's test runs.
    pub fn total(&self) -> u64 {
        self.cpus.iter().map(|c| c.test_runs).sum()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.cpus {
            out += &format!("CPU {}: {} test runs\n", c.cpu, c.test_runs);
        }
        out += &format!(
            "{} test runs in {} s on {} CPUs: the XDP dispatcher rewritten {} times\n",
            self.total(),
            self.seconds,
            self.cpus.len(),
            2 * self.total()
        );
        out
    }
}

/// Run for `seconds` (at least 1) on every CPU this process may run on
/// (at least two: with one, nothing runs through the dispatcher while it
/// is rewritten).
pub fn run(seconds: u64) -> Result<DispatcherStressReport> {
    if seconds == 0 {
        return Err(Error::Setup("--seconds must be at least 1".into()));
    }
    let cpus = allowed_cpus()?;
    if cpus.len() < 2 {
        return Err(Error::Setup(format!(
            "dispatcher-stress needs two CPUs or more; this process may run on CPU {:?} only",
            cpus
        )));
    }
    let end = Instant::now() + Duration::from_secs(seconds);
    // Set by a thread that fails: the others stop then, not at `end`.
    let failed = AtomicBool::new(false);
    let runs = std::thread::scope(|s| {
        let workers = cpus
            .iter()
            .map(|&cpu| {
                let failed = &failed;
                s.spawn(move || {
                    let r = runs_on(cpu, end, failed);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        join_all(workers)
    })?;
    Ok(DispatcherStressReport {
        seconds,
        cpus: runs,
    })
}

/// Test runs on `cpu` until `end` or another thread's failure, with a
/// program of the thread's own.
fn runs_on(cpu: usize, end: Instant, failed: &AtomicBool) -> Result<CpuRuns> {
    pin_to(cpu)?;
    let prog = XdpPass::load()?;
    let mut test_runs = 0;
    while Instant::now() < end && !failed.load(Ordering::Relaxed) {
        stop::check()?;
        let verdict = prog.test_run_through_dispatcher()?;
        if verdict != XDP_PASS {
            return Err(Error::Setup(format!(
                "xdp_pass returned {verdict} on CPU {cpu}, not XDP_PASS ({XDP_PASS})"
            )));
        }
        test_runs += 1;
    }
    Ok(CpuRuns { cpu, test_runs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cpu_or_no_time_is_refused_before_anything_loads() {
        let err = run(0).unwrap_err();
        assert!(err.to_string().contains("--seconds"), "{err}");
        // This test's thread alone, on one CPU: nothing could run through
        // the dispatcher while it is rewritten.
        let first = allowed_cpus().expect("an affinity")[0];
        pin_to(first).expect("pinned");
        let err = run(1).unwrap_err();
        assert!(err.to_string().contains("two CPUs or more"), "{err}");
    }

    #[test]
    fn the_report_counts_two_rewrites_per_test_run() {
        let r = DispatcherStressReport {
            seconds: 30,
            cpus: vec![
                CpuRuns {
                    cpu: 0,
                    test_runs: 10,
                },
                CpuRuns {
                    cpu: 1,
                    test_runs: 5,
                },
            ],
        };
        assert_eq!(r.total(), 15);
        assert!(
            r.render().ends_with(
                "15 test runs in 30 s on 2 CPUs: the XDP dispatcher rewritten 30 times\n"
            ),
            "{}",
            r.render()
        );
    }
}
