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
use crate::cache;
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
        // a boot is a use: a prune elsewhere keeps the kernel
        cache::warn_unrecorded(cache::mark_image_used(&self.kernel), reporter);
        let arch = self.arch;
        let uml_scratch = self.cache.join("uml");
        let mut boot = |req: &RunRequest, reporter: &mut dyn Reporter| match arch {
            Arch::X86_64 => boot::run(req, cancel, reporter),
            Arch::Um => crate::uml::run(req, &uml_scratch, cancel, reporter),
        };
        self.run_with(req, keep_console, &mut boot, reporter)
    }

    /// [`Guest::run`] with `boot` in place of booting: a first boot that
    /// stalls under KVM is booted again under TCG (x86-64 only: UML never
    /// stalls), and the result names the accelerator that ran.
    fn run_with(
        &self,
        req: RunRequest,
        keep_console: bool,
        boot: &mut dyn FnMut(&RunRequest, &mut dyn Reporter) -> Result<ExitStatus>,
        reporter: &mut dyn Reporter,
    ) -> Result<Finished> {
        let first_log = req.console_log.clone();
        let mut console_log = first_log.clone();
        let mut accel = req.accel;
        let status = match boot(&req, reporter) {
            Err(e @ Error::KvmStalled { .. }) => {
                reporter.event(Event::Warning(format!("{e}; retrying under TCG")));
                console_log = console_log_path(&self.cache);
                accel = Accel::Tcg;
                let req = RunRequest {
                    accel: Accel::Tcg,
                    console_log: console_log.clone(),
                    ..req
                };
                let retried = boot(&req, reporter);
                if !keep_console {
                    // the silent boot's log: nothing in it
                    let _ = std::fs::remove_file(&first_log);
                }
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

/// A fresh console log path under `<cache>/logs`: the time, the process
/// and a count of the paths this process made, so that two guests that
/// one process starts in the same millisecond never share a log.
pub fn console_log_path(cache: &Path) -> PathBuf {
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    cache
        .join("logs")
        .join(format!("console-{stamp}-{}-{n}.log", std::process::id()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;
    use crate::events::NullReporter;

    /// A guest whose boots `outcomes` answer in turn; the requests it saw.
    fn run(
        cache: &Path,
        outcomes: Vec<Result<ExitStatus>>,
    ) -> (Result<Finished>, Vec<(Accel, PathBuf)>) {
        let guest = Guest::new("bzImage".into(), Accel::Kvm, cache.to_path_buf(), vec![]);
        let req = RunRequest {
            kernel: guest.kernel.clone(),
            command: vec!["true".into()],
            accel: guest.accel,
            console_log: console_log_path(cache),
            ..RunRequest::default()
        };
        let mut outcomes = outcomes.into_iter();
        let mut seen = Vec::new();
        let mut boot = |r: &RunRequest, _: &mut dyn Reporter| {
            seen.push((r.accel, r.console_log.clone()));
            if let Some(dir) = r.console_log.parent() {
                std::fs::create_dir_all(dir).expect("logs");
            }
            std::fs::write(&r.console_log, "").expect("a console log");
            outcomes.next().expect("no more boots expected")
        };
        let finished = guest.run_with(req, false, &mut boot, &mut NullReporter);
        (finished, seen)
    }

    fn stalled() -> Result<ExitStatus> {
        Err(Error::KvmStalled {
            waited: accel::KVM_FIRST_OUTPUT,
            console_log: "kvm.log".into(),
        })
    }

    /// The run manifest's accelerator is `Finished::accel`: after a stall
    /// under KVM it is TCG, the one that ran, with a console log of its
    /// own, and later runs are told to skip KVM.
    #[test]
    fn a_stall_under_kvm_is_run_again_under_tcg_and_reported_as_tcg() {
        let cache = tempfile::tempdir().unwrap();
        let (finished, seen) = run(cache.path(), vec![stalled(), Ok(ExitStatus::from_raw(0))]);
        let finished = finished.expect("the retry ran");
        assert_eq!(finished.accel, Accel::Tcg);
        assert!(finished.status.success());
        assert_eq!(seen.len(), 2);
        assert_eq!((seen[0].0, seen[1].0), (Accel::Kvm, Accel::Tcg));
        assert_ne!(
            seen[0].1, seen[1].1,
            "the retry writes a console log of its own"
        );
        assert_eq!(finished.console_log, seen[1].1);
        let mark = cache.path().join("tmp").join(accel::KVM_STALLED_FILE);
        assert!(mark.is_file(), "later runs are not told to skip KVM");
        assert!(!seen[0].1.exists(), "the silent boot's log is left");
    }

    /// A kernel that fails under TCG as well is broken, not KVM: the
    /// error comes back and KVM is not marked unusable.
    #[test]
    fn a_retry_that_fails_too_leaves_kvm_alone() {
        let cache = tempfile::tempdir().unwrap();
        let timeout = Err(Error::GuestTimeout {
            timeout: Duration::from_secs(1),
            console_log: "tcg.log".into(),
        });
        let (finished, seen) = run(cache.path(), vec![stalled(), timeout]);
        assert!(matches!(finished, Err(Error::GuestTimeout { .. })));
        assert_eq!(seen.len(), 2);
        assert!(!cache
            .path()
            .join("tmp")
            .join(accel::KVM_STALLED_FILE)
            .exists());
    }

    /// Without a stall there is one boot, under the accelerator asked
    /// for, and a failing command keeps its console log.
    #[test]
    fn without_a_stall_the_accelerator_asked_for_is_the_one_reported() {
        let cache = tempfile::tempdir().unwrap();
        let (finished, seen) = run(cache.path(), vec![Ok(ExitStatus::from_raw(1 << 8))]);
        let finished = finished.expect("it ran");
        assert_eq!(finished.accel, Accel::Kvm);
        assert_eq!(seen.len(), 1);
        assert!(
            finished.console_kept,
            "a failing command keeps its console log"
        );
        assert!(!cache
            .path()
            .join("tmp")
            .join(accel::KVM_STALLED_FILE)
            .exists());
    }
}
