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

/// What to boot and run. [`RunRequest::default`] documents the defaults
/// every caller starts from.
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
    /// Where the guest's serial console (everything virtme-ng prints on
    /// stderr) is written.
    pub console_log: PathBuf,
    /// Extra QEMU arguments, appended to virtme-ng's (e.g. `-plugin ...`).
    pub qemu_args: Vec<String>,
}

impl Default for RunRequest {
    /// No kernel and no command yet; 2 GiB of memory and 2 CPUs (enough
    /// for a netns lab and `test_progs`), a 900 s timeout (a TCG guest
    /// running the scenario matrix on a debug kernel needs minutes), TCG
    /// (the accelerator that works everywhere; [`detect_accel`] finds out
    /// whether KVM does), the guest starting in `/`, the console in
    /// `console.log` of the working directory.
    fn default() -> Self {
        RunRequest {
            kernel: PathBuf::new(),
            command: Vec::new(),
            timeout: Duration::from_secs(900),
            rwdirs: Vec::new(),
            cwd: PathBuf::from("/"),
            memory: "2G".into(),
            cpus: 2,
            accel: Accel::Tcg,
            console_log: PathBuf::from("console.log"),
            qemu_args: Vec::new(),
        }
    }
}

/// Printed by the guest wrapper right before `exec`ing the command: its
/// presence proves the guest booted and the command was reached.
pub const START_MARKER: &str = "fibneigh: guest command starting";

/// The shell line virtme-ng runs inside the guest. The marker goes to the
/// wrapper's own stderr, the stream the command's stderr follows it on:
/// written to the kernel log instead, the console printed it
/// asynchronously, and a command that failed at once (`exec` of a missing
/// file) could land its message in the middle of the marker's line.
pub fn guest_script(command: &[String]) -> String {
    let quoted =
        shlex::try_join(command.iter().map(String::as_str)).unwrap_or_else(|_| command.join(" "));
    format!("echo '{START_MARKER}' >&2; exec {quoted}")
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
        // The serial console goes to stderr, where `run` splits it from
        // the command's own stderr into the console log.
        "--verbose".into(),
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
    // virtme-ng runs QEMU through a shell line: each argument is quoted
    // for it, and passed with `=` so that one starting with `-` stays a
    // value.
    for arg in &req.qemu_args {
        let quoted = shlex::try_quote(arg).map_or_else(|_| arg.clone(), |q| q.into_owned());
        args.push(format!("--qemu-opts={quoted}"));
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
    let vng = crate::vng::VirtmeNg::locate()?;
    let args = vng_args(req);
    reporter.event(Event::Start(
        Phase::Boot,
        format!(
            "{} under {}, {}",
            req.kernel.display(),
            match req.accel {
                Accel::Kvm => "KVM",
                Accel::Tcg => "TCG (software emulation)",
            },
            vng.describe()
        ),
    ));
    let mut cmd = Command::new(&vng.vng);
    cmd.env("PATH", vng.child_path(std::env::var_os("PATH")));
    // Both streams go through pipes: QEMU opens /proc/self/fd/{1,2} with
    // O_TRUNC, which would wipe a log file our caller redirected us into.
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let shown = crate::cmd::display(&cmd);
    reporter.event(Event::Note(format!("running {shown}")));
    let mut child = cmd
        .spawn()
        .map_err(|source| Error::Spawn { cmd: shown, source })?;
    let log = fs::File::create(&req.console_log).at(&req.console_log)?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let kernel_spoke = std::sync::Arc::new(AtomicBool::new(false));
    let spoke = std::sync::Arc::clone(&kernel_spoke);
    let splitter =
        std::thread::spawn(move || split_console(stderr, log, std::io::stderr(), &spoke));
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let copier = std::thread::spawn(move || {
        let _ = std::io::copy(&mut stdout, &mut std::io::stdout());
    });
    let started = Instant::now();
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let kill_all = || {
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    };
    let failure = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => {
                break Err(Error::Io {
                    path: vng.vng.clone(),
                    source: e,
                })
            }
        }
        if cancel.load(Ordering::Relaxed) {
            break Err(Error::Interrupted {
                console_log: req.console_log.clone(),
            });
        }
        if req.accel == Accel::Kvm
            && !kernel_spoke.load(Ordering::Relaxed)
            && started.elapsed() > KVM_FIRST_OUTPUT
        {
            break Err(Error::KvmStalled {
                waited: KVM_FIRST_OUTPUT,
                console_log: req.console_log.clone(),
            });
        }
        if started.elapsed() > req.timeout {
            break Err(Error::GuestTimeout {
                timeout: req.timeout,
                console_log: req.console_log.clone(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // QEMU may leave helpers (virtiofsd) behind in the group; on failure
    // the guest itself goes too.
    kill_all();
    let _ = child.wait();
    let saw = splitter.join().unwrap_or_default();
    let _ = copier.join();
    let status = failure?;
    reporter.event(Event::End(Phase::Boot));
    if saw.panic {
        return Err(Error::GuestPanic {
            console_log: req.console_log.clone(),
        });
    }
    if !saw.splats.is_empty() {
        return Err(Error::GuestSplat {
            count: saw.splats.len(),
            first: saw.first_splat.trim_end().to_string(),
            console_log: req.console_log.clone(),
        });
    }
    if !saw.marker {
        return Err(Error::GuestNoStart {
            console_log: req.console_log.clone(),
        });
    }
    Ok(status)
}

/// What the console showed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConsoleSummary {
    /// The guest reached the command ([`START_MARKER`]).
    pub marker: bool,
    pub panic: bool,
    /// Kernel reports that mean a bug whatever the command's status: the
    /// first line of each (see [`splat_kind`]).
    pub splats: Vec<String>,
    /// The first report with the kernel lines that follow it (up to
    /// [`SPLAT_LINES`]).
    pub first_splat: String,
}

/// How many kernel lines of the first bug report are kept for the error.
pub const SPLAT_LINES: usize = 40;

/// Kernel console lines that open a report of a kernel bug: lockdep,
/// KASAN, UBSAN, RCU stalls, sleeping in atomic context, WARN(), BUG(),
/// oopses. A debug kernel (`--profile debug`) turns most of these on; a
/// run whose console has one fails.
const SPLATS: &[&str] = &[
    "WARNING:",
    "BUG:",
    "Oops",
    "general protection fault",
    "KASAN:",
    "UBSAN:",
    "possible circular locking dependency",
    "possible recursive locking",
    "inconsistent lock state",
    "suspicious RCU usage",
    "INFO: lockdep",
    "detected stall",
    "self-detected stall",
    "scheduling while atomic",
    "sleeping function called from invalid context",
];

/// The kind of bug report a kernel console line opens, if any.
pub fn splat_kind(line: &str) -> Option<&'static str> {
    if !is_kernel_line(line) {
        return None;
    }
    let text = line.split_once(']').map_or(line, |(_, t)| t);
    // virtme-ng's init logs through the kernel log too: its own
    // "WARNING: failed to run ..." (a root without systemd-tmpfiles) is
    // not the kernel's.
    if text.trim_start().starts_with("virtme-ng-init:") {
        return None;
    }
    SPLATS.iter().copied().find(|p| text.contains(p))
}

/// Is this console line the kernel's (`[    1.234567] ...`, from
/// CONFIG_PRINTK_TIME) or virtme-ng's own chatter?
pub fn is_console_noise(line: &str) -> bool {
    is_kernel_line(line)
        || line.starts_with("virtme-ng-init:")
        || line.starts_with("virtme:")
        || line.starts_with("virtme-run:")
}

/// A kernel console line: `[    1.234567] ...` (CONFIG_PRINTK_TIME).
pub fn is_kernel_line(line: &str) -> bool {
    line.strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .is_some_and(|(ts, _)| {
            let ts = ts.trim();
            !ts.is_empty() && ts.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
}

/// Copy virtme-ng's stderr into the console log; pass the guest command's
/// own stderr (everything after the start marker that is not kernel or
/// virtme output) through to `user`.
pub fn split_console(
    from: impl std::io::Read,
    mut log: impl std::io::Write,
    mut user: impl std::io::Write,
    kernel_spoke: &AtomicBool,
) -> ConsoleSummary {
    use std::io::BufRead;

    let mut summary = ConsoleSummary::default();
    let mut reader = std::io::BufReader::new(from);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let _ = log.write_all(&buf);
        let line = String::from_utf8_lossy(&buf);
        if is_kernel_line(&line) {
            kernel_spoke.store(true, Ordering::Relaxed);
        }
        if line.contains(START_MARKER) {
            summary.marker = true;
            continue;
        }
        if line.contains("Kernel panic") {
            summary.panic = true;
        }
        if splat_kind(&line).is_some() {
            summary.splats.push(line.trim_end().to_string());
        }
        if !summary.splats.is_empty()
            && is_kernel_line(&line)
            && summary.first_splat.lines().count() < SPLAT_LINES
        {
            summary.first_splat.push_str(&line);
        }
        if summary.marker && !is_console_noise(&line) {
            let _ = user.write_all(&buf);
        }
    }
    let _ = log.flush();
    summary
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
            qemu_args: Vec::new(),
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
        assert!(args.contains(&"--verbose".to_string()));
        assert!(has_pair(&args, "--memory", "2G"));
        assert!(has_pair(&args, "--cpus", "2"));
        assert!(args.contains(&"--rwdir=/repo".to_string()));
    }

    #[test]
    fn command_is_quoted_and_marked() {
        let args = vng_args(&req());
        let script = args.last().unwrap();
        assert!(
            script.starts_with(&format!("echo '{START_MARKER}' >&2; exec ")),
            "{script}"
        );
        // The shell turns it back into the same argv.
        let argv = shlex::split(script.split_once("exec ").unwrap().1).unwrap();
        assert_eq!(argv, req().command);
    }

    #[test]
    fn qemu_args_survive_virtme_ngs_shell_line() {
        assert!(!vng_args(&req())
            .iter()
            .any(|a| a.starts_with("--qemu-opts")));
        let mut r = req();
        r.qemu_args = vec!["-plugin".into(), "file=/a b/p.so,out=/x".into()];
        let args = vng_args(&r);
        let opts: Vec<&str> = args
            .iter()
            .filter_map(|a| a.strip_prefix("--qemu-opts="))
            .collect();
        // virtme-ng joins the values with spaces into a shell line.
        assert_eq!(shlex::split(&opts.join(" ")).unwrap(), r.qemu_args);
        assert_eq!(args.last().unwrap(), &guest_script(&r.command));
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

    #[test]
    fn console_split_passes_only_command_stderr() {
        let input = format!(
            "virtme: waiting\n[    0.000000] Linux version 7.3.4\nvirtme-ng-init: udev is done\n\
             {START_MARKER}\nreal error from the command\n[    6.0] late kernel line\n\
             [ oops] not a timestamp\n"
        );
        let mut log = Vec::new();
        let mut user = Vec::new();
        let spoke = AtomicBool::new(false);
        let s = split_console(input.as_bytes(), &mut log, &mut user, &spoke);
        assert!(spoke.load(Ordering::Relaxed), "a kernel line was seen");
        assert_eq!(
            s,
            ConsoleSummary {
                marker: true,
                panic: false,
                splats: Vec::new(),
                first_splat: String::new(),
            }
        );
        assert_eq!(String::from_utf8(log).unwrap(), input);
        assert_eq!(
            String::from_utf8(user).unwrap(),
            "real error from the command\n[ oops] not a timestamp\n"
        );
    }

    #[test]
    fn kernel_bug_reports_are_splats_and_command_output_is_not() {
        for line in [
            "[   12.345678] WARNING: CPU: 1 PID: 80 at net/core/neighbour.c:1200 __neigh_event_send+0x1/0x2",
            "[    3.000000] BUG: KASAN: slab-use-after-free in neigh_event_send_probe+0x10/0x20",
            "[    3.000000] ==================================================================",
            "[    4.100000] WARNING: possible circular locking dependency detected",
            "[    5.0] BUG: sleeping function called from invalid context at mm/slab.h:1",
            "[    6.0] UBSAN: array-index-out-of-bounds in net/core/filter.c:6400:3",
            "[    7.0] rcu: INFO: rcu_preempt self-detected stall on CPU",
            "[    8.0] BUG: scheduling while atomic: test_progs/99/0x00000201",
        ] {
            let found = splat_kind(line).is_some();
            assert_eq!(found, !line.contains("====="), "{line}");
        }
        // The command's own output, and ordinary kernel lines, are not.
        assert_eq!(splat_kind("WARNING: the test printed this"), None);
        assert_eq!(splat_kind("[    1.0] Linux version 7.3.4"), None);
        let input = "[    1.0] ok\n[    2.0] BUG: KASAN: use-after-free in x\n";
        let s = split_console(
            input.as_bytes(),
            Vec::new(),
            Vec::new(),
            &AtomicBool::new(false),
        );
        assert_eq!(s.splats, ["[    2.0] BUG: KASAN: use-after-free in x"]);
        assert_eq!(s.first_splat, "[    2.0] BUG: KASAN: use-after-free in x\n");
    }

    #[test]
    fn virtme_ng_inits_warnings_are_not_kernel_bugs() {
        // Seen from a minimal Debian root without systemd.
        let line = "[    2.749159] virtme-ng-init: WARNING: failed to run: \"systemd-tmpfiles\" --create --boot";
        assert_eq!(splat_kind(line), None);
        assert!(splat_kind("[    2.7] WARNING: CPU: 0 PID: 1 at net/core/filter.c:1 x").is_some());
    }

    #[test]
    fn virtme_chatter_is_not_the_kernel_speaking() {
        let input = "virtme: waiting for virtiofsd to start\nfuse: invalid argument\n";
        let spoke = AtomicBool::new(false);
        split_console(input.as_bytes(), Vec::new(), Vec::new(), &spoke);
        assert!(!spoke.load(Ordering::Relaxed));
    }

    #[test]
    fn a_kvm_stall_sends_later_runs_to_tcg() {
        let d = tempfile::tempdir().unwrap();
        mark_kvm_stalled(d.path(), "7.3 printed nothing under KVM").unwrap();
        let probe = detect_accel(d.path());
        assert_eq!(probe.accel, Accel::Tcg);
        assert!(probe.reason.contains("printed nothing"), "{}", probe.reason);
    }

    #[test]
    fn console_split_sees_panic_without_marker() {
        let input = "[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n";
        let s = split_console(
            input.as_bytes(),
            Vec::new(),
            Vec::new(),
            &AtomicBool::new(false),
        );
        assert_eq!(
            s,
            ConsoleSummary {
                marker: false,
                panic: true,
                splats: Vec::new(),
                first_splat: String::new(),
            }
        );
    }
}
