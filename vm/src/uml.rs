//! Boot a User-Mode Linux kernel (`ARCH=um`, the host program `linux`) and
//! run one command inside: the kernel runs natively on the host CPU, one
//! CPU, BPF interpreted (UML has no JIT).
//!
//! The host's root is the guest's root over hostfs, mounted **read-only**;
//! the directories the guest may write (the repository, the run's scratch
//! directory) are hostfs mounts of their own, read-write, as virtme-ng
//! shares them. `/tmp`, `/run` and `/dev/shm` are tmpfs, `/sys/fs/bpf` the
//! bpf filesystem. PID 1 is a shell script in the scratch directory that
//! mounts those, prints [`crate::console::START_MARKER`] to the kernel log, runs the
//! command with its stdout on the second console (`con1`, a pipe on the
//! UML process's fd 3) and its stderr on the first (`con0`, the kernel
//! console, the UML process's stderr: kernel lines go to the console log,
//! the rest through to our stderr as under virtme-ng), writes the
//! command's status into the scratch directory and powers off.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::boot::RunRequest;
use crate::console::{split_console, ConsoleSummary, START_MARKER};
use crate::error::{Error, IoContext, Result};
use crate::events::{Event, Phase, Reporter};
use crate::watch::Watch;

/// The file in the scratch directory the init script writes the command's
/// exit status into.
pub const STATUS_FILE: &str = "status";

/// The fd of the UML process its second console writes to.
const STDOUT_FD: i32 = 3;

fn quote(s: &str) -> String {
    shlex::try_quote(s).map_or_else(|_| format!("'{s}'"), |q| q.into_owned())
}

fn quote_path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

/// The init script (PID 1) for `req`, writing its status to `scratch`.
pub fn init_script(req: &RunRequest, scratch: &Path) -> String {
    let command = shlex::try_join(req.command.iter().map(String::as_str))
        .unwrap_or_else(|_| req.command.join(" "));
    let mut s = String::from(
        "#!/bin/sh\n\
         # PID 1 of a fibneigh User-Mode Linux guest (written by fibneigh-vm).\n\
         PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         HOME=/root\n\
         export PATH HOME\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t bpf bpf /sys/fs/bpf\n\
         mount -t tmpfs -o mode=0755 tmpfs /run\n\
         mount -t tmpfs -o mode=1777 tmpfs /tmp\n\
         mount -t tmpfs -o mode=1777 tmpfs /dev/shm\n",
    );
    for dir in &share_order(&req.rwdirs, scratch) {
        // A directory under a path just mounted over (a checkout in /tmp)
        // has no mount point in the new tmpfs: make it. Elsewhere it
        // exists on the read-only root and mkdir does nothing.
        let d = quote_path(dir);
        s.push_str(&format!(
            "mkdir -p {d} 2>/dev/null\nmount -t hostfs -o {d} hostfs {d}\n"
        ));
    }
    // The consoles are ttys: no "\n" -> "\r\n" on the command's output.
    s.push_str("stty -opost </dev/console 2>/dev/null\n");
    s.push_str("stty -opost </dev/tty1 2>/dev/null\n");
    let status = quote_path(&scratch.join(STATUS_FILE));
    s.push_str(&format!(
        "if cd {cwd}; then\n\
         \techo '{START_MARKER}' >/dev/kmsg\n\
         \t{command} </dev/null >/dev/tty1\n\
         \techo $? >{status}\n\
         fi\n\
         sync\n\
         halt -f -p 2>/dev/null || poweroff -f\n",
        cwd = quote_path(&req.cwd),
    ));
    s
}

/// The read-write shares in mount order: parents before the directories
/// inside them (a share inside another would otherwise be hidden by it),
/// each directory once.
fn share_order(rwdirs: &[PathBuf], scratch: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = rwdirs.to_vec();
    dirs.push(scratch.to_path_buf());
    dirs.sort_by_key(|d| d.components().count());
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

/// The UML kernel's command line for `req` (init script `init`, UML's
/// pid file and management console in `scratch`, not in `~/.uml`).
pub fn kernel_args(req: &RunRequest, init: &Path, scratch: &Path) -> Vec<String> {
    vec![
        format!("uml_dir={}", scratch.display()),
        "umid=fibneigh".into(),
        format!("mem={}", req.memory),
        "rootfstype=hostfs".into(),
        "rootflags=/".into(),
        "ro".into(),
        format!("init={}", init.display()),
        // Every console and serial line off, then con0 (the kernel console
        // and /dev/console) on stderr and con1 (/dev/tty1) on fd 3.
        "con=null".into(),
        "ssl=null".into(),
        "con0=null,fd:2".into(),
        format!("con1=null,fd:{STDOUT_FD}"),
    ]
}

/// Passes lines through, holding back blank ones until a line with text
/// follows: UML ends its stderr with a blank line at power-off, which is
/// not the command's.
struct HoldBlankLines<W: Write> {
    inner: W,
    held: usize,
}

impl<W: Write> HoldBlankLines<W> {
    fn new(inner: W) -> Self {
        HoldBlankLines { inner, held: 0 }
    }
}

impl<W: Write> Write for HoldBlankLines<W> {
    /// Called with whole lines by [`split_console`].
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.iter().all(|b| b.is_ascii_whitespace()) {
            self.held += 1;
            return Ok(buf.len());
        }
        for _ in 0..std::mem::take(&mut self.held) {
            self.inner.write_all(b"\n")?;
        }
        self.inner.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A scratch directory for one run under `root`, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Boot `req.kernel` (a UML `linux`) and run `req.command` inside. Returns
/// the command's exit status. As [`crate::boot::run`]: a guest that does not boot,
/// panics, reports a kernel bug, hangs past the timeout or is interrupted
/// is an error naming the console log. `req.cpus`, `req.accel` and
/// `req.qemu_args` do not apply (UML runs one CPU, natively). The run's
/// scratch directory is made under `scratch_root` and removed afterwards.
pub fn run(
    req: &RunRequest,
    scratch_root: &Path,
    cancel: &AtomicBool,
    reporter: &mut dyn Reporter,
) -> Result<ExitStatus> {
    req.check_kernel_and_console()?;
    fs::create_dir_all(scratch_root).at(scratch_root)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let scratch = Scratch(scratch_root.join(format!("run-{}-{stamp}", std::process::id())));
    fs::create_dir(&scratch.0).at(&scratch.0)?;
    let init = scratch.0.join("init");
    fs::write(&init, init_script(req, &scratch.0)).at(&init)?;
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&init, fs::Permissions::from_mode(0o755)).at(&init)?;
    }

    reporter.event(Event::Start(
        Phase::Boot,
        format!(
            "{} under User-Mode Linux (native CPU)",
            req.kernel.display()
        ),
    ));
    let (out_read, out_write) = io::pipe().at("pipe")?;
    let out_write: OwnedFd = out_write.into();
    let raw = out_write.as_raw_fd();
    let mut cmd = Command::new(&req.kernel);
    cmd.args(kernel_args(req, &init, &scratch.0))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // UML keeps its memory file in $TMPDIR; ours is private to the run.
        .env("TMPDIR", &scratch.0)
        .process_group(0);
    // SAFETY: dup2 is async-signal-safe; it only duplicates an fd we own
    // onto fd 3 of the child (clearing close-on-exec there).
    unsafe {
        cmd.pre_exec(move || {
            let ok = if raw == STDOUT_FD {
                libc::fcntl(raw, libc::F_SETFD, 0) >= 0
            } else {
                libc::dup2(raw, STDOUT_FD) >= 0
            };
            if ok {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
    let shown = crate::cmd::display(&cmd);
    reporter.event(Event::Note(format!("running {shown}")));
    // Before UML starts, so that nothing can fail between its start and
    // the wait that stops it.
    let log = fs::File::create(&req.console_log).at(&req.console_log)?;
    let log_for_stdout = log.try_clone().at(&req.console_log)?;
    let spawned = cmd.spawn();
    drop(out_write);
    let mut child = spawned.map_err(|source| Error::Spawn { cmd: shown, source })?;
    // Its own group, which a terminal's Ctrl-C misses: killed by a second
    // Ctrl-C's handler (crate::children) as by the wait below.
    let registered = crate::children::register(child.id() as i32);
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let kill_all = || {
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    };
    let stderr = child.stderr.take().expect("stderr is piped");
    let spoke = Arc::new(AtomicBool::new(false));
    let spoke2 = Arc::clone(&spoke);
    let splitter = std::thread::spawn(move || {
        split_console(stderr, log, HoldBlankLines::new(io::stderr()), &spoke2)
    });
    // UML's own messages (before the kernel console exists) go to its
    // stdout: into the console log.
    let mut uml_stdout = child.stdout.take().expect("stdout is piped");
    let uml_chatter = std::thread::spawn(move || {
        let mut log = log_for_stdout;
        let _ = io::copy(&mut uml_stdout, &mut log);
    });
    let mut out_read = out_read;
    let copier = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut stdout = io::stdout();
        loop {
            match out_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = stdout.write_all(&buf[..n]);
                    let _ = stdout.flush();
                }
            }
        }
    });

    let failure = crate::watch::wait(
        &mut child,
        &Watch {
            cancel,
            timeout: req.timeout,
            console_log: &req.console_log,
            program: &req.kernel,
            first_output: None,
            poll: Duration::from_millis(20),
        },
    );
    // UML runs each guest process as a host process of its own, in its
    // process group: none may outlive the run. A UML still running is
    // asked to stop first: on SIGTERM it kills and reaps those processes
    // itself (killed by SIGKILL, they would be left to init as zombies).
    if failure.is_err() {
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    kill_all();
    // Killed: unregistered now rather than once the run's output is
    // drained, which narrows the time in which a second Ctrl-C's handler
    // could signal a group id the kernel has given to another process (a
    // leader that exited by itself was reaped by the wait above, so it is
    // narrowed, not closed).
    drop(registered);
    let _ = child.wait();
    let saw = splitter.join().unwrap_or_default();
    let _ = uml_chatter.join();
    let _ = copier.join();
    let outcome = failure.and_then(|_| {
        reporter.event(Event::End(Phase::Boot));
        verdict(&saw, &scratch.0, &req.console_log)
    });
    if outcome.is_err() {
        reporter.event(Event::Warning(format!(
            "last lines of the console ({}):\n{}",
            req.console_log.display(),
            console_tail(&req.console_log, TAIL_LINES)
        )));
    }
    outcome
}

/// How long a UML told to stop (SIGTERM) may take before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// How many console lines a failed run shows.
pub const TAIL_LINES: usize = 20;

/// The last `n` lines of a console log (empty if it cannot be read).
pub fn console_tail(log: &Path, n: usize) -> String {
    let text = fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The run's result from what the console showed and the status file.
fn verdict(saw: &ConsoleSummary, scratch: &Path, console_log: &Path) -> Result<ExitStatus> {
    saw.verdict(console_log)?;
    let status_path = scratch.join(STATUS_FILE);
    let code = fs::read_to_string(&status_path)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .ok_or_else(|| Error::GuestNoStatus {
            console_log: console_log.to_path_buf(),
        })?;
    Ok(ExitStatus::from_raw((code & 0xff) << 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> RunRequest {
        RunRequest {
            cpus: 1,
            ..RunRequest::for_tests("/k/linux", "/repo dir")
        }
    }

    #[test]
    fn kernel_args_boot_hostfs_read_only_with_the_script() {
        let args = kernel_args(&req(), Path::new("/s/init"), Path::new("/s"));
        for a in [
            "uml_dir=/s",
            "mem=2G",
            "rootfstype=hostfs",
            "rootflags=/",
            "ro",
            "init=/s/init",
            "con0=null,fd:2",
            "con1=null,fd:3",
        ] {
            assert!(args.contains(&a.to_string()), "{a} in {args:?}");
        }
        assert!(!args.contains(&"rw".to_string()));
    }

    #[test]
    fn init_script_mounts_shares_runs_the_command_and_records_its_status() {
        let s = init_script(&req(), Path::new("/cache/uml/run-1"));
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains("mount -t bpf bpf /sys/fs/bpf\n"), "{s}");
        assert!(s.contains("mount -t hostfs -o '/repo dir' hostfs '/repo dir'\n"));
        assert!(s.contains("mount -t hostfs -o /cache/uml/run-1 hostfs /cache/uml/run-1\n"));
        assert!(s.contains(&format!("echo '{START_MARKER}' >/dev/kmsg")));
        assert!(s.contains("if cd '/repo dir'; then"));
        assert!(s.contains("echo $? >/cache/uml/run-1/status"));
        // The shell turns the command line back into the same argv.
        let line = s
            .lines()
            .find(|l| l.contains("</dev/null >/dev/tty1"))
            .unwrap();
        let argv = shlex::split(line.trim().split(" </dev/null").next().unwrap()).unwrap();
        assert_eq!(argv, req().command);
        assert!(s.trim_end().ends_with("poweroff -f"));
    }

    #[test]
    fn shares_under_a_mounted_over_path_get_their_mount_point_first() {
        // A checkout and a cache under /tmp: the tmpfs on /tmp hides them,
        // so each share's mount point is made after the tmpfs is mounted
        // and before the share is mounted on it.
        let mut r = req();
        r.rwdirs = vec![PathBuf::from("/tmp/ci/main"), PathBuf::from("/tmp/ci")];
        r.cwd = PathBuf::from("/tmp/ci/main");
        let s = init_script(&r, Path::new("/tmp/ci/cache/uml/run-1"));
        let at = |needle: &str| s.find(needle).unwrap_or_else(|| panic!("{needle}: {s}"));
        let tmpfs = at("tmpfs /tmp\n");
        let mk_parent = at("mkdir -p /tmp/ci 2>/dev/null\n");
        let parent = at("hostfs /tmp/ci\n");
        let mk_repo = at("mkdir -p /tmp/ci/main 2>/dev/null\n");
        let repo = at("hostfs /tmp/ci/main\n");
        let scratch = at("hostfs /tmp/ci/cache/uml/run-1\n");
        assert!(tmpfs < mk_parent && mk_parent < parent && parent < mk_repo);
        assert!(mk_repo < repo && repo < scratch && scratch < at("if cd /tmp/ci/main"));
        assert_eq!(s.matches("hostfs /tmp/ci\n").count(), 1);
    }

    #[test]
    fn trailing_blank_lines_are_dropped_inner_ones_kept() {
        let mut out = HoldBlankLines::new(Vec::new());
        for line in ["a\n", "\n", "b\n", "\n", "\r\n"] {
            out.write_all(line.as_bytes()).unwrap();
        }
        assert_eq!(String::from_utf8(out.inner).unwrap(), "a\n\nb\n");
    }

    #[test]
    fn console_tail_keeps_the_last_lines() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("console.log");
        fs::write(&log, "a\nb\nc\n").unwrap();
        assert_eq!(console_tail(&log, 2), "b\nc");
        assert_eq!(console_tail(&log, 10), "a\nb\nc");
        assert_eq!(console_tail(&d.path().join("none"), 3), "");
    }

    #[test]
    fn missing_kernel_is_refused_before_anything_is_made() {
        let d = tempfile::tempdir().unwrap();
        let mut r = req();
        r.kernel = d.path().join("linux");
        let err = run(
            &r,
            &d.path().join("scratch"),
            &AtomicBool::new(false),
            &mut crate::events::NullReporter,
        )
        .unwrap_err();
        assert!(matches!(err, Error::NoKernel(_)), "{err}");
        assert!(!d.path().join("scratch").exists());
    }
}
