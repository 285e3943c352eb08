//! What the tiers that drive the `fibneigh` binary share: the command, and
//! a run that logs its whole output (shown when a test fails).
#![allow(dead_code)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The `fibneigh` binary this test was built with.
pub fn fibneigh() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fibneigh"))
}

/// Run `cmd` to the end and log its status, stdout and stderr.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("the command runs");
    eprintln!(
        "--- {:?} -> {}\n--- stdout\n{}--- stderr\n{}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `out`'s stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run the binary with `args`; its exit code and its stderr then stdout.
pub fn fibneigh_with(args: &[&str]) -> (Option<i32>, String) {
    let out = fibneigh().args(args).output().expect("run fibneigh");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), text)
}

/// Fails the test if a lab namespace of process `pid` is left.
pub fn no_namespace_left_by(pid: u32) {
    let prefix = fibneigh::lab::plan::run_prefix(pid);
    let left: Vec<String> = fibneigh::lab::netns::list()
        .expect("list namespaces")
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Whether a lab namespace of process `pid` exists now.
pub fn lab_namespace_of(pid: u32) -> bool {
    let prefix = fibneigh::lab::plan::run_prefix(pid);
    fibneigh::lab::netns::list()
        .unwrap_or_default()
        .iter()
        .any(|n| n.starts_with(&prefix))
}

/// Wait up to `limit` for a lab namespace of `child`; fails the test if
/// none appeared (`child` killed first, so it does not outlive the test).
pub fn wait_for_lab(child: &mut std::process::Child, limit: Duration) {
    let pid = child.id();
    if !poll_until(limit, Duration::from_millis(10), || lab_namespace_of(pid)) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the lab of fibneigh (pid {pid}) never appeared within {limit:?}");
    }
}

/// Ctrl-C `child` (SIGINT); it must exit 130 with no lab namespace left.
pub fn interrupt(child: &mut std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("send SIGINT");
    let status = child.wait().expect("wait for fibneigh");
    assert_eq!(status.code(), Some(130), "{status:?}");
    no_namespace_left_by(child.id());
}

/// Run `cmd`, which must succeed (the failure shows its stderr); its
/// stdout as text.
pub fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Ask `done` every `every` until it says yes or `limit` has passed;
/// whether it said yes. For what a busy machine may delay (softirq work
/// deferred to ksoftirqd, a process's exit): a deadline, not a fixed sleep.
pub fn poll_until(limit: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// Host processes whose command line contains `needle` (UML runs each
/// guest process as a host process named `[uml-userspace]`, and the kernel
/// itself under its own path; a QEMU guest's command line holds the
/// guest's command).
pub fn processes_with(needle: &str) -> Vec<String> {
    let out = Command::new("ps")
        .args(["-eo", "pid,args"])
        .output()
        .expect("ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// The processes with `needle` in their command line, once they are gone
/// or after 10 s: a killed process leaves the table when its exit is done,
/// which a busy machine may delay.
pub fn processes_left_with(needle: &str) -> Vec<String> {
    let mut left = Vec::new();
    poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        left = processes_with(needle);
        left.is_empty()
    });
    left
}
