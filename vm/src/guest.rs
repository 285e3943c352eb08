//! A kernel ready to boot: [`Guest::run`] boots it under virtme-ng, runs
//! one command and returns its exit status, falling back from KVM to TCG
//! on hosts whose KVM runs the probe firmware but not a kernel. A User-Mode
//! Linux kernel ([`Arch::Um`]) is run by [`crate::uml::run`] instead.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::accel::{self, Accel, TcgThreads};
use crate::boot::{self, RunRequest};
use crate::error::{Error, Result};
use crate::events::{Event, Reporter};
use crate::kbuild::Arch;

/// Everything needed to boot, minus the command.
#[derive(Debug, Clone)]
pub struct Guest {
    pub kernel: PathBuf,
    pub accel: Accel,
    /// The pipeline's cache: console logs go to `logs/`, the KVM verdict
    /// to `tmp/`.
    pub cache: PathBuf,
    pub memory: String,
    pub cpus: u32,
    /// How TCG runs more than one vCPU ([`TcgThreads`]).
    pub tcg_threads: TcgThreads,
    /// Host directories shared read-write (the caller's repository first).
    pub rwdirs: Vec<PathBuf>,
    /// Working directory inside the guest.
    pub cwd: PathBuf,
    /// Extra QEMU arguments ([`RunRequest::qemu_args`]).
    pub qemu_args: Vec<String>,
    /// x86-64 under virtme-ng, or User-Mode Linux (one CPU, native; `accel`
    /// and `cpus` do not apply).
    pub arch: Arch,
}

/// What a finished guest leaves: the command's status and the console
/// log's path (removed when the caller did not keep it and the command
/// succeeded).
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// The accelerator the command ran under: TCG after a KVM stall.
    pub accel: Accel,
    pub console_log: PathBuf,
    pub console_kept: bool,
}

impl Guest {
    /// A guest with [`RunRequest::default`]'s memory and CPUs.
    pub fn new(kernel: PathBuf, accel: Accel, cache: PathBuf, rwdirs: Vec<PathBuf>) -> Self {
        let d = RunRequest::default();
        Guest {
            kernel,
            accel,
            cache,
            memory: d.memory,
            cpus: d.cpus,
            tcg_threads: d.tcg_threads,
            cwd: rwdirs.first().cloned().unwrap_or(d.cwd),
            rwdirs,
            qemu_args: d.qemu_args,
            arch: Arch::X86_64,
        }
    }

    /// Boot and run `command`. A kernel that stays silent under KVM is run
    /// again under TCG; only when that works is KVM marked unusable for
    /// later runs (a broken kernel is silent under both).
    pub fn run(
        &self,
        command: Vec<String>,
        timeout: Duration,
        keep_console: bool,
        cancel: &AtomicBool,
        reporter: &mut dyn Reporter,
    ) -> Result<Finished> {
        let req = RunRequest {
            kernel: self.kernel.clone(),
            command,
            timeout,
            rwdirs: self.rwdirs.clone(),
            cwd: self.cwd.clone(),
            memory: self.memory.clone(),
            cpus: self.cpus,
            accel: self.accel,
            tcg_threads: self.tcg_threads,
            console_log: console_log_path(&self.cache),
            qemu_args: self.qemu_args.clone(),
        };
        let mut console_log = req.console_log.clone();
        let mut accel = req.accel;
        let first = match self.arch {
            Arch::X86_64 => boot::run(&req, cancel, reporter),
            Arch::Um => crate::uml::run(&req, &self.cache.join("uml"), cancel, reporter),
        };
        let status = match first {
            Err(e @ Error::KvmStalled { .. }) => {
                reporter.event(Event::Warning(format!("{e}; retrying under TCG")));
                console_log = console_log_path(&self.cache);
                accel = Accel::Tcg;
                let req = RunRequest {
                    accel: Accel::Tcg,
                    console_log: console_log.clone(),
                    ..req
                };
                let retried = boot::run(&req, cancel, reporter);
                if retried.is_ok() {
                    let _ = accel::mark_kvm_stalled(
                        &self.cache.join("tmp"),
                        "a kernel printed nothing under KVM on this host, then ran under TCG",
                    );
                }
                retried
            }
            other => other,
        }?;
        let console_kept = keep_console || !status.success();
        if !console_kept {
            let _ = std::fs::remove_file(&console_log);
        }
        Ok(Finished {
            status,
            accel,
            console_log,
            console_kept,
        })
    }
}

/// A fresh console log path under `<cache>/logs`.
pub fn console_log_path(cache: &Path) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    cache
        .join("logs")
        .join(format!("console-{stamp}-{}.log", std::process::id()))
}
