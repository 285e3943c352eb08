//! Which accelerator QEMU gets: KVM when this host's KVM runs a guest,
//! else TCG (software emulation). Probed once per host with a tiny
//! firmware, and remembered when a kernel stalls under KVM.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How QEMU executes the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

/// How TCG runs a guest's vCPUs: all in one host thread, taking turns
/// (QEMU's `-accel tcg,thread=single`), or one host thread each (MTTCG,
/// QEMU's default for an x86-64 guest on an x86-64 host).
///
/// Single is the default for a guest of more than one vCPU. Under MTTCG,
/// QEMU 7.2 (Debian 12's) lets a vCPU run code another vCPU has already
/// rewritten: the XDP dispatcher's `jmp`, patched through an `int3` by
/// `text_poke`, is met as the `int3` after the kernel has finished the
/// patch, and the guest dies with `Oops: int3` in
/// `bpf_dispatcher_xdp_func`. Any guest that adds or removes an XDP
/// program (an attach, a detach, a test run of more than one repeat)
/// while another vCPU runs XDP can meet it, with the pristine kernel
/// too. Measured here with XDP test runs of two
/// repeats from a thread on each vCPU: README, "The VM pipeline", has
/// the figures and `scripts/tcg-threads.sh` measures them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum TcgThreads {
    /// One host thread for every vCPU.
    #[default]
    Single,
    /// One host thread per vCPU (exposed to the hazard above).
    Multi,
}

impl TcgThreads {
    /// `threads`, when it applies: under TCG, to more than one vCPU.
    pub fn in_effect(accel: Accel, cpus: u32, threads: TcgThreads) -> Option<TcgThreads> {
        (accel == Accel::Tcg && cpus > 1).then_some(threads)
    }

    /// The word QEMU's `thread=` takes, and the run manifest shows.
    pub fn as_str(self) -> &'static str {
        match self {
            TcgThreads::Single => "single",
            TcgThreads::Multi => "multi",
        }
    }
}

/// The outcome of checking whether KVM can run an ordinary guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelProbe {
    pub accel: Accel,
    pub reason: String,
}

/// The value QEMU's `isa-debug-exit` turns our probe's byte into.
const PROBE_EXIT: i32 = (0x31 << 1) | 1;

/// A 64 KiB firmware image whose reset vector writes 0x31 to the
/// `isa-debug-exit` port: QEMU exits with [`PROBE_EXIT`] only if the
/// accelerator really executed guest code.
fn probe_firmware() -> Vec<u8> {
    let mut rom = vec![0xf4u8; 64 * 1024]; // hlt
                                           // mov al, 0x31; out 0xf4, al; hlt; jmp $-1
    let code = [0xb0, 0x31, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd];
    let reset = rom.len() - 16;
    rom[reset..reset + code.len()].copy_from_slice(&code);
    rom
}

/// Check whether `/dev/kvm` can actually run a guest. Some hosts expose a
/// `/dev/kvm` backed by a paravirtual hypervisor that cannot run an
/// ordinary guest; there QEMU aborts or the guest faults, and only TCG
/// works. The probe boots a 64 KiB firmware under KVM and checks that it
/// ran.
pub fn detect_accel(scratch: &Path) -> AccelProbe {
    let tcg = |reason: String| AccelProbe {
        accel: Accel::Tcg,
        reason,
    };
    let stalled = scratch.join(KVM_STALLED_FILE);
    if let Ok(why) = fs::read_to_string(&stalled) {
        return tcg(format!(
            "{} (remove {} to probe KVM again)",
            why.trim(),
            stalled.display()
        ));
    }
    let kvm = Path::new("/dev/kvm");
    if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(kvm)
        .is_err()
    {
        return tcg("/dev/kvm is missing or not accessible".into());
    }
    let rom = scratch.join("kvm-probe.rom");
    if let Err(e) = fs::create_dir_all(scratch).and_then(|_| fs::write(&rom, probe_firmware())) {
        return tcg(format!("could not write the KVM probe firmware: {e}"));
    }
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-machine", "q35,accel=kvm", "-cpu", "host", "-m", "32"])
        .args(["-nodefaults", "-display", "none", "-no-reboot", "-bios"])
        .arg(&rom)
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // In the caller's process group, so a terminal's Ctrl-C stops it
    // with us; and killed if we end first by any other way (a second
    // Ctrl-C's immediate exit, SIGKILL), which a KVM that hangs the
    // firmware would otherwise outlive.
    die_with_parent(&mut cmd);
    let child = cmd.spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return tcg(format!("could not start qemu-system-x86_64: {e}")),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.code() == Some(PROBE_EXIT) => {
                return AccelProbe {
                    accel: Accel::Kvm,
                    reason: "a KVM guest ran the probe firmware".into(),
                }
            }
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                let first = err.lines().next().unwrap_or("").trim().to_string();
                return tcg(format!("KVM cannot run a guest here ({status}: {first})"));
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return tcg("KVM guest did not finish the probe within 10 s".into());
            }
        }
    }
}

/// Have the child `cmd` starts killed (SIGKILL) when the thread that
/// starts it ends: `spawn` returns once the child has run `exec`, so the
/// request is in place by then. A child whose parent died before the
/// request was made (it has been re-parented) does not start.
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl(2) and getppid(2) are async-signal-safe and take plain
    // integers.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::other(
                    "the parent ended before the child started",
                ));
            }
            Ok(())
        });
    }
}

/// How long a kernel may stay silent under KVM before the host's KVM is
/// taken to be unable to run it. A kernel prints its first console line
/// within a second under KVM; some hosts' KVM runs the probe firmware but
/// never gets a kernel that far (a paravirtual hypervisor behind
/// `/dev/kvm`), and would otherwise hang until the run's timeout.
pub const KVM_FIRST_OUTPUT: Duration = Duration::from_secs(30);

/// Left in `detect_accel`'s scratch directory when a kernel stalled under
/// KVM, so later runs go straight to TCG.
pub const KVM_STALLED_FILE: &str = "kvm-stalled";

/// Record that a kernel stalled under KVM on this host.
pub fn mark_kvm_stalled(scratch: &Path, why: &str) -> std::io::Result<()> {
    fs::create_dir_all(scratch)?;
    fs::write(scratch.join(KVM_STALLED_FILE), format!("{why}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_child_dies_with_the_thread_that_started_it() {
        use nix::sys::wait::{waitpid, WaitStatus};
        use nix::unistd::Pid;
        let pid = std::thread::spawn(|| {
            let mut cmd = Command::new("sleep");
            cmd.arg("600");
            die_with_parent(&mut cmd);
            cmd.spawn().expect("sleep").id()
        })
        .join()
        .expect("the starting thread");
        let pid = Pid::from_raw(pid as i32);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)).expect("waitpid") {
                WaitStatus::StillAlive if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                WaitStatus::StillAlive => {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
                    let _ = waitpid(pid, None);
                    panic!("the child outlived the thread that started it by 10 s");
                }
                other => break other,
            }
        };
        assert_eq!(
            status,
            WaitStatus::Signaled(pid, nix::sys::signal::SIGKILL, false)
        );
    }

    #[test]
    fn probe_firmware_has_the_reset_vector() {
        let rom = probe_firmware();
        assert_eq!(rom.len(), 65536);
        assert_eq!(&rom[0xfff0..0xfff4], &[0xb0, 0x31, 0xe6, 0xf4]);
    }

    #[test]
    fn a_kvm_stall_sends_later_runs_to_tcg() {
        let d = tempfile::tempdir().unwrap();
        mark_kvm_stalled(d.path(), "7.3 printed nothing under KVM").unwrap();
        let probe = detect_accel(d.path());
        assert_eq!(probe.accel, Accel::Tcg);
        assert!(probe.reason.contains("printed nothing"), "{}", probe.reason);
    }
}
