//! `scripts/background.sh`, which runs `scripts/test.sh`'s background
//! kernel builds: the job's exit status, its stop with the run's process
//! group, and its own stop when the run that started it is killed outright
//! (no EXIT trap ran). Plain processes stand for the run and the build; no
//! root, no kernel.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

mod common;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/background.sh")
}

/// A process that stands for the CI run.
struct Run(Child);

impl Run {
    fn start() -> Run {
        Run(Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("sleep runs"))
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `setsid scripts/background.sh PARENT CMD...`, as test.sh starts it,
/// with SIGINT at its default disposition: a shell that starts with SIGINT
/// ignored (as anything started with `&` by a script without job control
/// does, a test run included) cannot trap it, and the SIGINT test would
/// test that instead of the script. `env` and `setsid` exec, so the
/// child's pid stays the script's.
fn background(parent: &str, cmd: &[&str]) -> Command {
    let mut c = Command::new("env");
    c.args(["--default-signal=INT", "setsid"])
        .arg(script())
        .arg(parent)
        .args(cmd);
    c
}

/// Whether any process of group `pgid` is left.
fn group_alive(pgid: u32) -> bool {
    killpg(Pid::from_raw(pgid as i32), None).is_ok()
}

/// Whether group `pgid` is gone within 30 s: the job ends on the script's
/// SIGTERM, and init reaps it, after the script has exited.
fn group_gone(pgid: u32) -> bool {
    common::poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        !group_alive(pgid)
    })
}

/// Wait up to `limit` for `child` to end; its output. The limit is a
/// bound on a hang (the script polls every 2 s), not a timing.
fn wait_at_most(mut child: Child, limit: Duration) -> Output {
    let ended = common::poll_until(limit, Duration::from_millis(100), || {
        child.try_wait().expect("try_wait").is_some()
    });
    if !ended {
        let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        panic!("background.sh still runs after {limit:?}");
    }
    child.wait_with_output().expect("output")
}

/// Spawn with a pipe for stderr; its process group is its pid (setsid
/// execs, since the child is no group leader).
fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setsid runs")
}

/// Wait until the job has run `sleep 300`: a process of the group whose
/// whole command line is that (not the script's, which names it too, nor
/// its `sleep 2`), which exists only once the script has checked its run
/// and set its trap.
fn wait_for_job(pgid: u32) {
    let started = common::poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
        Command::new("pgrep")
            .args(["-g", &pgid.to_string(), "-f", "^sleep 300$"])
            .output()
            .expect("pgrep runs")
            .status
            .success()
    });
    assert!(started, "the job never started");
}

#[test]
fn the_job_stops_when_the_run_that_started_it_is_killed_outright() {
    let mut run = Run::start();
    let child = spawn(background(&run.pid(), &["sleep", "300"]));
    let pgid = child.id();
    wait_for_job(pgid);
    assert!(group_alive(pgid));

    // SIGKILL: the run's EXIT trap, which stops its background, never
    // runs; not reaped yet, the run stays a zombie, which `kill -0` still
    // finds
    run.0.kill().expect("kill the run");

    let out = wait_at_most(child, Duration::from_secs(60));
    run.0.wait().expect("reap the run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "status {:?}: {err}", out.status);
    assert!(
        err.contains("is gone; stopping sleep 300"),
        "no reason given: {err}"
    );
    assert!(group_gone(pgid), "the job outlived the run");
}

/// Start the script on a long job, `stop` it (given the script's pid,
/// which is its process group's), and check it exits 143 with its job gone.
fn stopped_by(stop: impl FnOnce(Pid), what: &str) {
    let run = Run::start();
    let child = spawn(background(&run.pid(), &["sleep", "300"]));
    let pgid = child.id();
    wait_for_job(pgid);

    stop(Pid::from_raw(pgid as i32));
    let out = wait_at_most(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(143), "{out:?}");
    assert!(group_gone(pgid), "the job outlived {what}");
}

#[test]
fn the_job_stops_with_its_process_group_as_the_run_stops_it() {
    // what stop_background() does
    stopped_by(
        |pgid| killpg(pgid, Signal::SIGTERM).expect("kill the group"),
        "its stop",
    );
}

#[test]
fn the_job_stops_when_the_script_alone_is_interrupted() {
    // SIGINT to the script only (by hand, `kill -INT`): the job, started
    // with `&` by a non-interactive shell, ignores SIGINT, so the script
    // must stop it rather than leave it running unwatched
    stopped_by(
        |pid| kill(pid, Signal::SIGINT).expect("interrupt the script"),
        "the interrupted script",
    );
}

#[test]
fn the_job_exits_with_its_commands_status() {
    let run = Run::start();
    for (cmd, code) in [("exit 0", 0), ("exit 3", 3)] {
        let out = wait_at_most(
            spawn(background(&run.pid(), &["sh", "-c", cmd])),
            Duration::from_secs(60),
        );
        assert_eq!(out.status.code(), Some(code), "{cmd}: {out:?}");
    }
}

#[test]
fn bad_use_is_refused_before_anything_runs() {
    let run = Run::start();
    let marker = tempfile::tempdir().expect("tempdir");
    let touched = marker.path().join("ran");
    let job = format!("touch {}", touched.display());
    let job = ["sh", "-c", job.as_str()];
    let cases: Vec<(Command, &str)> = vec![
        (
            {
                // not a session leader: `kill 0` would reach its caller
                let mut c = Command::new(script());
                c.arg(run.pid()).args(job);
                c
            },
            "not the leader of its own session",
        ),
        (
            background("x1", &job),
            "must be the id of the run's process (got 'x1')",
        ),
        (
            background("", &job),
            "must be the id of the run's process (got '')",
        ),
        (
            background("0", &job),
            "must be the id of the run's process (got '0')",
        ),
        (
            background(&u32::MAX.to_string(), &job),
            "(the run that starts this) does not exist",
        ),
        (background(&run.pid(), &[]), "usage:"),
    ];
    for (cmd, want) in cases {
        let out = wait_at_most(spawn(cmd), Duration::from_secs(60));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{want}: {err}");
        assert!(err.contains(want), "wanted {want:?}, got: {err}");
        assert!(!touched.exists(), "{want}: the job ran");
    }
    // the run itself is untouched
    assert!(kill(Pid::from_raw(run.0.id() as i32), None).is_ok());
}

/// `scripts/test.sh` runs the kernel gates in the background beside the
/// two guests. They switch both trees (`git am`, builds in them), so: they
/// start after the 6.12 build in the background is waited for, and between
/// their start and the wait for them nothing in the foreground builds in
/// or switches a tree (the guests run built kernels and the debug kernel's
/// test_progs from its copy); the counts, whose `--pristine-code` build
/// switches the 7.3 tree, and the 6.12 selftests come after that wait.
#[test]
fn the_background_gates_share_no_tree_with_the_foreground() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test.sh"))
            .expect("scripts/test.sh");
    // One command per line: continuation lines joined, comments dropped.
    let lines: Vec<String> = text
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let find = |what: &str, from: usize| {
        lines[from..]
            .iter()
            .position(|l| l.contains(what))
            .map(|i| i + from)
            .unwrap_or_else(|| {
                panic!("scripts/test.sh has no line with {what:?} after line {from}")
            })
    };
    let b612 = find("background target/ci-logs/build-6.12.log", 0);
    let gates = find("background target/ci-logs/gates.log", 0);
    assert!(b612 < gates, "the gates start after the 6.12 build starts");
    assert!(
        lines[b612..gates]
            .iter()
            .any(|l| l == "wait_job target/ci-logs/build-6.12.log"),
        "the 6.12 build is waited for before the gates start"
    );
    let done = find("finish_gates", gates);
    let allowed = |l: &str| {
        // The guests boot kernels built before; the debug kernel's
        // test_progs is judged from its output directory.
        l.contains(" vm run --profile debug ")
            || l.contains(" vm run --timeout ")
            || l.contains(" selftests --profile debug --from-output ")
    };
    for l in &lines[gates + 1..done] {
        // Step names and messages are text, not commands.
        if allowed(l) || l.starts_with("step \"") || l.starts_with("echo ") {
            continue;
        }
        for tree_user in [
            "vm ",
            "selftests",
            "--test ",
            "background ",
            "bloat.sh",
            "abi-gate.sh",
            "series.sh",
            "uml-bench.sh",
            "fresh-root.sh",
        ] {
            assert!(
                !l.contains(tree_user),
                "beside the background gates, the foreground runs {l:?}"
            );
        }
    }
    assert!(find("--test vm_icount", done) > done);
    assert!(find("selftests --base 6.12 --junit", done) > done);

    // The UML build starts once the `--tree` tier and the debug kernel's
    // build are done: beside the first it slowed the removal of two
    // 96,000-file trees tenfold, beside the second it took that build's
    // CPU. It starts before the gates (nothing new starts beside them).
    let uml = find("background target/ci-logs/build-um.log", 0);
    assert!(find("--test tree_tier", 0) < uml, "UML beside --tree");
    assert!(
        find("vm build --profile debug", 0) < uml,
        "UML beside the debug kernel's build"
    );
    assert!(uml < gates, "the UML build starts before the gates");
}
