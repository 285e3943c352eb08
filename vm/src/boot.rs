//! Step 6: boot a kernel under virtme-ng and run one command inside.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::events::{Event, Phase, Reporter};

/// How QEMU executes the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
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
    let child = Command::new("qemu-system-x86_64")
        .args(["-machine", "q35,accel=kvm", "-cpu", "host", "-m", "32"])
        .args(["-nodefaults", "-display", "none", "-no-reboot", "-bios"])
        .arg(&rom)
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
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

/// What to boot and run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub kernel: PathBuf,
    pub command: Vec<String>,
    pub timeout: Duration,
    /// Host directories shared read-write with the guest.
    pub rwdirs: Vec<PathBuf>,
    /// Working directory inside the guest.
    pub cwd: PathBuf,
    pub memory: String,
    pub cpus: u32,
    pub accel: Accel,
    /// Where the guest's serial console is written.
    pub console_log: PathBuf,
}

/// Printed into the kernel log by the guest wrapper right before `exec`ing
/// the command: its presence proves the guest booted and the command was
/// reached.
pub const START_MARKER: &str = "fibneigh: guest command starting";

/// The shell line virtme-ng runs inside the guest.
pub fn guest_script(command: &[String]) -> String {
    let quoted =
        shlex::try_join(command.iter().map(String::as_str)).unwrap_or_else(|_| command.join(" "));
    format!("echo '{START_MARKER}' >/dev/kmsg 2>/dev/null; exec {quoted}")
}

/// virtme-ng's arguments for `req`; a pure function so the command line can
/// be tested.
pub fn vng_args(req: &RunRequest) -> Vec<String> {
    let mut args = vec![
        "--run".to_string(),
        req.kernel.display().to_string(),
        // Root over 9p needs the root device named.
        "--append".into(),
        "root=/dev/root".into(),
        // Kernel messages on a second serial port, into the console log.
        "--append".into(),
        "console=ttyS1 loglevel=7".into(),
        "--qemu-opts".into(),
        format!("-serial file:{}", req.console_log.display()),
        "--memory".into(),
        req.memory.clone(),
        "--cpus".into(),
        req.cpus.to_string(),
        "--cwd".into(),
        req.cwd.display().to_string(),
    ];
    if req.accel == Accel::Tcg {
        args.push("--disable-kvm".into());
    }
    for dir in &req.rwdirs {
        args.push(format!("--rwdir={}", dir.display()));
    }
    args.push("--exec".into());
    args.push(guest_script(&req.command));
    args
}

/// Boot and run; stdout and stderr of the command stream through. Returns
/// the command's exit status. A guest that does not boot, panics, hangs
/// past the timeout or is interrupted is an error naming the console log.
pub fn run(
    req: &RunRequest,
    cancel: &AtomicBool,
    reporter: &mut dyn Reporter,
) -> Result<ExitStatus> {
    use std::os::unix::process::CommandExt;

    if !req.kernel.is_file() {
        return Err(Error::NoKernel(req.kernel.clone()));
    }
    if let Some(dir) = req.console_log.parent() {
        fs::create_dir_all(dir).at(dir)?;
    }
    fs::write(&req.console_log, b"").at(&req.console_log)?;
    let args = vng_args(req);
    reporter.event(Event::Start(
        Phase::Boot,
        format!(
            "{} under {}",
            req.kernel.display(),
            match req.accel {
                Accel::Kvm => "KVM",
                Accel::Tcg => "TCG (software emulation)",
            }
        ),
    ));
    let mut cmd = Command::new("vng");
    cmd.args(&args).stdin(Stdio::null()).process_group(0);
    let shown = crate::cmd::display(&cmd);
    reporter.event(Event::Note(format!("running {shown}")));
    let mut child = cmd
        .spawn()
        .map_err(|source| Error::Spawn { cmd: shown, source })?;
    let started = Instant::now();
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let kill_all = || {
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                kill_all();
                return Err(Error::Io {
                    path: "vng".into(),
                    source: e,
                });
            }
        }
        if cancel.load(Ordering::Relaxed) {
            kill_all();
            let _ = child.wait();
            return Err(Error::Interrupted {
                console_log: req.console_log.clone(),
            });
        }
        if started.elapsed() > req.timeout {
            kill_all();
            let _ = child.wait();
            return Err(Error::GuestTimeout {
                timeout: req.timeout,
                console_log: req.console_log.clone(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // QEMU may leave helpers (virtiofsd) behind in the group.
    kill_all();
    reporter.event(Event::End(Phase::Boot));
    let console = fs::read_to_string(&req.console_log).unwrap_or_default();
    if console.contains("Kernel panic") {
        return Err(Error::GuestPanic {
            console_log: req.console_log.clone(),
        });
    }
    if !console.contains(START_MARKER) {
        return Err(Error::GuestNoStart {
            console_log: req.console_log.clone(),
        });
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> RunRequest {
        RunRequest {
            kernel: "/k/bzImage".into(),
            command: vec!["sh".into(), "-c".into(), "echo 'a b'; exit 3".into()],
            timeout: Duration::from_secs(5),
            rwdirs: vec!["/repo".into()],
            cwd: "/repo".into(),
            memory: "2G".into(),
            cpus: 2,
            accel: Accel::Tcg,
            console_log: "/tmp/console.log".into(),
        }
    }

    fn has_pair(args: &[String], a: &str, b: &str) -> bool {
        args.windows(2).any(|w| w[0] == a && w[1] == b)
    }

    #[test]
    fn tcg_disables_kvm_and_kvm_does_not() {
        let args = vng_args(&req());
        assert!(args.contains(&"--disable-kvm".to_string()));
        let mut r = req();
        r.accel = Accel::Kvm;
        assert!(!vng_args(&r).contains(&"--disable-kvm".to_string()));
    }

    #[test]
    fn root_console_and_shares_are_passed() {
        let args = vng_args(&req());
        assert!(has_pair(&args, "--run", "/k/bzImage"));
        assert!(has_pair(&args, "--append", "root=/dev/root"));
        assert!(has_pair(
            &args,
            "--qemu-opts",
            "-serial file:/tmp/console.log"
        ));
        assert!(has_pair(&args, "--memory", "2G"));
        assert!(has_pair(&args, "--cpus", "2"));
        assert!(args.contains(&"--rwdir=/repo".to_string()));
    }

    #[test]
    fn command_is_quoted_and_marked() {
        let args = vng_args(&req());
        let script = args.last().unwrap();
        assert_eq!(
            script,
            &format!("echo '{START_MARKER}' >/dev/kmsg 2>/dev/null; exec sh -c 'echo '\"'\"'a b'\"'\"'; exit 3'")
        );
        // The shell turns it back into the same argv.
        let argv = shlex::split(script.split_once("exec ").unwrap().1).unwrap();
        assert_eq!(argv, req().command);
    }

    #[test]
    fn probe_firmware_has_the_reset_vector() {
        let rom = probe_firmware();
        assert_eq!(rom.len(), 65536);
        assert_eq!(&rom[0xfff0..0xfff4], &[0xb0, 0x31, 0xe6, 0xf4]);
    }

    #[test]
    fn missing_kernel_is_refused_before_booting() {
        let mut r = req();
        r.kernel = "/nonexistent/bzImage".into();
        let err = run(
            &r,
            &AtomicBool::new(false),
            &mut crate::events::NullReporter,
        )
        .unwrap_err();
        assert!(matches!(err, Error::NoKernel(_)), "{err}");
    }
}
