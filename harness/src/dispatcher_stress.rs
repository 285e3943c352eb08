//! The XDP dispatcher rewritten under every CPU (`fibneigh
//! dispatcher-stress`): a thread pinned to each CPU the process may run on
//! makes test runs of two repeats of an `XDP_PASS` program, each of which
//! adds the program to the kernel's XDP dispatcher and removes it after
//! (`fibneigh_bpf::XdpPass::test_run_through_dispatcher`), so the `jmp` in
//! `bpf_dispatcher_xdp_func` is rewritten while the other CPUs run through
//! it. It tests the machine the kernel runs on, not the series: QEMU 7.2's
//! multi-threaded TCG lets a vCPU run code another has already rewritten,
//! and the guest dies with `Oops: int3` there (`fibneigh_vm::TcgThreads`;
//! `scripts/tcg-threads.sh` boots it under both).

use std::time::{Duration, Instant};

use fibneigh_bpf::XdpPass;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::lock_stress::{allowed_cpus, pin_to};
use crate::stop;

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

/// Run for `seconds` (at least 1) on every CPU this process may run on.
pub fn run(seconds: u64) -> Result<DispatcherStressReport> {
    if seconds == 0 {
        return Err(Error::Setup("--seconds must be at least 1".into()));
    }
    let cpus = allowed_cpus()?;
    let end = Instant::now() + Duration::from_secs(seconds);
    let runs = std::thread::scope(|s| -> Result<Vec<CpuRuns>> {
        let threads: Vec<_> = cpus
            .iter()
            .map(|&cpu| s.spawn(move || runs_on(cpu, end)))
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| Error::Setup("a test-run thread panicked".into()))?
            })
            .collect()
    })?;
    Ok(DispatcherStressReport {
        seconds,
        cpus: runs,
    })
}

/// Test runs on `cpu` until `end`, with a program of the thread's own.
fn runs_on(cpu: usize, end: Instant) -> Result<CpuRuns> {
    pin_to(cpu)?;
    let prog = XdpPass::load()?;
    let mut test_runs = 0;
    while Instant::now() < end {
        stop::check()?;
        prog.test_run_through_dispatcher()?;
        test_runs += 1;
    }
    Ok(CpuRuns { cpu, test_runs })
}
