//! The VM tier: build the kernel from the committed series and config, boot
//! it under virtme-ng and run commands inside; plus the pipeline's failure
//! paths. Each test needs root, QEMU, virtme-ng and the kernel source, and
//! the first one builds a kernel (minutes), so they are ignored by a plain
//! `cargo test`; `scripts/test.sh` runs them with `--ignored`.

use std::path::Path;

mod common;
use common::{fibneigh, run, stderr};

/// The manifest of the kernel `vm build` makes from the committed inputs.
fn kernel() -> serde_json::Value {
    let out = run(fibneigh().args(["vm", "build", "--json", "-"]));
    assert!(out.status.success(), "vm build failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("vm build --json - prints JSON")
}

fn series_is_empty() -> bool {
    let series = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel-patches/series");
    std::fs::read_to_string(series)
        .expect("kernel-patches/series exists")
        .lines()
        .all(|l| l.split('#').next().unwrap_or("").trim().is_empty())
}

#[test]
#[ignore = "VM tier: builds and boots the patched kernel (scripts/test.sh runs it)"]
fn vm_kernel_boots_with_base_version_and_runs_fib_lookup() {
    let image = kernel();
    let upstream = image["upstream"].as_str().expect("upstream version");
    assert!(
        upstream.starts_with("7.3."),
        "base is Linux 7.3.x, got {upstream}"
    );

    let out = run(fibneigh().args(["vm", "run", "--timeout", "600", "--", "uname", "-r"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let release = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        release.starts_with(upstream),
        "guest uname -r {release:?} is not {upstream}"
    );

    let mut probe = vec![env!("CARGO_BIN_EXE_fibneigh").to_string(), "probe".into()];
    probe.extend(["--expect-release".into(), upstream.to_string()]);
    if !series_is_empty() {
        probe.push("--expect-patched".into());
    }
    let out = run(fibneigh()
        .args(["vm", "run", "--timeout", "600", "--"])
        .args(&probe));
    assert!(
        out.status.success(),
        "probe in the guest failed: {}",
        stderr(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bpf_fib_lookup (tc)   loads and runs"),
        "{text}"
    );
    assert!(
        text.contains("bpf_fib_lookup (xdp)  loads and runs"),
        "{text}"
    );
    assert!(
        text.contains("tcx                   known to the kernel"),
        "7.3 has tcx: {text}"
    );
    // The project's kernels run the forwarding bench's generator; a
    // refusal here would be the probe's mistake, not the kernel's.
    assert!(
        text.contains("XDP live frames       supported"),
        "the guest's kernel runs XDP live frames: {text}"
    );
}

#[test]
#[ignore = "VM tier: needs the kernel built by the first VM test"]
fn vm_second_build_does_no_work() {
    kernel();
    let out = run(fibneigh().args(["vm", "build"]));
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(err.contains("[build] cached"), "{err}");
    assert!(
        !err.contains("[unpack]") && !err.contains("[patch]"),
        "{err}"
    );
}

#[test]
#[ignore = "VM tier: boots the kernel"]
fn vm_guest_exit_status_is_passed_through() {
    let out = vm_run(&["sh", "-c", "echo to-stdout; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stdout).contains("to-stdout"));
    assert!(
        stderr(&out).contains("console log:"),
        "a failing command keeps the console log"
    );
}

#[test]
#[ignore = "VM tier: boots the kernel"]
fn vm_run_interrupted_exits_130_and_stops_the_guest() {
    // A command line no other guest has, to look for leftovers by.
    let nap = format!("600.{}", std::process::id());
    let child = fibneigh()
        .args(["vm", "run", "--timeout", "600", "--", "sleep", &nap])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start fibneigh vm run");
    // Mid-boot: the kernel is cached, QEMU starts within a second or two.
    std::thread::sleep(std::time::Duration::from_secs(8));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    // A QEMU killed with a large guest can take a moment to go.
    let left = common::processes_left_with(&format!("sleep {nap}"));
    assert!(left.is_empty(), "a guest outlived vm run: {left:?}");
}

#[test]
#[ignore = "VM tier: boots the kernel"]
fn vm_missing_guest_command_is_reported() {
    let out = vm_run(&["/nonexistent/fibneigh-cmd"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("could not start `/nonexistent/fibneigh-cmd`"),
        "{}",
        stderr(&out)
    );
}

#[test]
#[ignore = "VM tier: needs QEMU and virtme-ng"]
fn vm_bogus_kernel_fails_with_console_log() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bzImage");
    std::fs::write(&bogus, vec![0x5a; 4096]).unwrap();
    let out = run(fibneigh()
        .args(["vm", "run", "--timeout", "120", "--kernel"])
        .arg(&bogus)
        .args(["--", "true"]));
    assert_eq!(out.status.code(), Some(125), "infrastructure failure code");
    let err = stderr(&out);
    assert!(err.contains("did not boot"), "{err}");
    assert!(err.contains("console log:"), "{err}");

    let out = run(fibneigh().args([
        "vm",
        "run",
        "--kernel",
        "/nonexistent/bzImage",
        "--",
        "true",
    ]));
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("/nonexistent/bzImage does not exist"));
}

#[test]
#[ignore = "VM tier: needs QEMU and virtme-ng"]
fn vm_kernel_bug_report_on_the_console_fails_the_run() {
    // A line the kernel logs as a BUG report fails the run even though
    // the command itself succeeds.
    let out = run(fibneigh().args([
        "vm",
        "run",
        "--",
        "sh",
        "-c",
        "echo 'BUG: fibneigh console scan self-test' > /dev/kmsg",
    ]));
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("reported 1 bug(s)"), "{err}");
    assert!(
        err.contains("BUG: fibneigh console scan self-test"),
        "{err}"
    );
    assert!(err.contains("console log:"), "{err}");
}

#[test]
#[ignore = "VM tier: needs the kernel source tree"]
fn vm_patch_that_does_not_apply_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let patch = dir.path().join("0001-bogus.patch");
    std::fs::write(
        &patch,
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n\
         From: Nobody <nobody@localhost>\nSubject: [PATCH] bogus\n\n---\n\
         diff --git a/net/core/filter.c b/net/core/filter.c\n\
         --- a/net/core/filter.c\n+++ b/net/core/filter.c\n\
         @@ -1,1 +1,1 @@\n-this line is not in filter.c\n+neither is this\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("series"), "0001-bogus.patch\n").unwrap();
    let out = run(fibneigh()
        .args(["vm", "build", "--patches"])
        .arg(dir.path()));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("0001-bogus.patch does not apply"), "{err}");
    assert!(
        err.contains("patch failed") || err.contains("error:"),
        "git's message is shown: {err}"
    );
}

/// `fibneigh vm run --timeout 600 -- command...`, run and logged.
fn vm_run(command: &[&str]) -> std::process::Output {
    run(fibneigh()
        .args(["vm", "run", "--timeout", "600", "--"])
        .args(command))
}

/// The cached kernel `vm build` finds: its image, directory and digest.
fn cached_kernel() -> (String, std::path::PathBuf, String) {
    let image = kernel();
    let bzimage = image["bzimage"].as_str().expect("bzimage path").to_string();
    let dir = Path::new(&bzimage)
        .parent()
        .expect("the kernel's directory")
        .to_path_buf();
    let digest = dir
        .file_name()
        .expect("a digest")
        .to_string_lossy()
        .into_owned();
    (bzimage, dir, digest)
}

/// What a `fibneigh` command with `--json -` printed; it must succeed.
fn fibneigh_json(args: &[&str]) -> serde_json::Value {
    let out = run(fibneigh().args(args));
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// What a prune of the kernel cache down to nothing would do (a dry run).
fn dry_prune_to_nothing() -> serde_json::Value {
    fibneigh_json(&[
        "vm",
        "cache",
        "prune",
        "--max-size",
        "0",
        "--dry-run",
        "--json",
        "-",
    ])
}

/// The row of the kernel `digest` in the list `part` of a cache report.
fn cache_row(report: &serde_json::Value, part: &str, digest: &str) -> Option<serde_json::Value> {
    report[part]
        .as_array()
        .expect("a list")
        .iter()
        .find(|k| k["digest"] == *digest)
        .cloned()
}

/// The kernel cache: the kernel `vm build` just found is listed, complete
/// and used moments ago, the list runs from the least recently used, and a
/// prune down to nothing (a dry run) keeps it, since it was used within
/// the last six hours.
#[test]
#[ignore = "VM tier: needs the kernel built by the first VM test"]
fn the_cache_lists_the_kernel_just_used_and_a_prune_keeps_it() {
    let (_, dir, digest) = cached_kernel();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs();

    let list = fibneigh_json(&["vm", "cache", "list", "--json", "-"]);
    let kernels = list["kernels"].as_array().expect("kernels");
    let row = cache_row(&list, "kernels", &digest)
        .unwrap_or_else(|| panic!("{digest} is not listed: {list}"));
    assert_eq!(row["complete"], true, "{row}");
    let used = row["used"].as_u64().expect("used");
    assert!(now.abs_diff(used) < 120, "used {used}, now {now}: {row}");
    assert!(row["bytes"].as_u64().expect("bytes") > 1 << 20, "{row}");
    let used: Vec<u64> = kernels.iter().filter_map(|k| k["used"].as_u64()).collect();
    assert_eq!(used.len(), kernels.len(), "every row has its use: {list}");
    assert!(
        used.windows(2).all(|w| w[0] <= w[1]),
        "least recently used first: {used:?}"
    );

    let pruned = dry_prune_to_nothing();
    let named = |part: &str| cache_row(&pruned, part, &digest).is_some();
    assert!(named("kept") && !named("removed"), "{pruned}");
    assert!(dir.join("bzImage").is_file(), "a dry run removes nothing");
}

/// A process that boots a kernel holds it while it runs: `vm cache list`
/// shows it held, and a prune to nothing keeps it with its recorded use
/// aged past the six hours that would otherwise protect it; once the
/// process has exited, the same prune would remove it. Dry runs: nothing
/// is removed. `vm run --kernel` finds no kernel in the cache, so the hold
/// seen is the boot's, taken after it recorded its use. Whatever happens,
/// the use is set back to now (the kernel was just used) and the run is
/// stopped.
#[test]
#[ignore = "VM tier: boots the kernel"]
fn a_running_vm_holds_its_kernel() {
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    /// Sets the kernel's use back to now and stops the run, on every way
    /// out of the test.
    struct Restore {
        used: std::path::PathBuf,
        child: std::process::Child,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            // SIGINT: vm run stops its guest (a SIGKILL would leave QEMU)
            if let Ok(None) = self.child.try_wait() {
                let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
                let _ = self.child.wait();
            }
            if let Ok(f) = std::fs::File::options().write(true).open(&self.used) {
                let _ = f.set_modified(SystemTime::now());
            }
        }
    }

    let (bzimage, dir, digest) = cached_kernel();
    let json = fibneigh_json;
    let row = |v: &serde_json::Value, part: &str| cache_row(v, part, &digest);
    let prune = dry_prune_to_nothing;
    let used = dir.join("used");
    let age = |t: SystemTime| {
        std::fs::File::options()
            .write(true)
            .open(&used)
            .expect("the kernel's used file")
            .set_modified(t)
            .expect("mtime")
    };

    let log = tempfile::NamedTempFile::new().expect("a log file");
    let child = fibneigh()
        .args(["vm", "run", "--timeout", "600", "--kernel", &bzimage])
        .args(["--", "sleep", "30"])
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().expect("the log file"))
        .spawn()
        .expect("start fibneigh vm run");
    let mut guard = Restore {
        used: used.clone(),
        child,
    };
    let said = || std::fs::read_to_string(log.path()).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = json(&["vm", "cache", "list", "--json", "-"]);
        if row(&list, "kernels").is_some_and(|r| r["held"] == true) {
            break;
        }
        if let Ok(Some(status)) = guard.child.try_wait() {
            panic!(
                "vm run ended ({status}) before the kernel was listed held: {}",
                said()
            );
        }
        assert!(
            Instant::now() < deadline,
            "never listed held: {list}\nvm run: {}",
            said()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let ten_hours_ago = SystemTime::now() - Duration::from_secs(10 * 3600);
    age(ten_hours_ago);
    let pruned = prune();
    let kept = row(&pruned, "kept").unwrap_or_else(|| panic!("not kept while held: {pruned}"));
    let aged = ten_hours_ago
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs();
    assert!(
        kept["used"].as_u64().is_some_and(|u| u.abs_diff(aged) < 60),
        "its use was recorded again after it was aged, so the hold is not what kept it: {kept}"
    );

    let status = guard.child.wait().expect("wait for vm run");
    assert!(status.success(), "vm run: {status}: {}", said());
    age(ten_hours_ago);
    let pruned = prune();
    assert!(
        row(&pruned, "removed").is_some(),
        "kept once vm run has exited (does another process hold it?): {pruned}"
    );
}

/// A build that needs more free space than the cache's file system has is
/// refused before anything is applied or compiled, naming the free space
/// and the option, and leaves no kernel directory behind.
#[test]
#[ignore = "VM tier: needs the base source the first VM test fetched"]
fn a_build_without_the_free_space_it_needs_stops_before_make() {
    let patches = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel-patches");
    let frag = tempfile::tempdir().expect("tempdir");
    // a config of its own, so that the kernel is not cached
    let mut config = std::fs::read_to_string(patches.join("config")).expect("config");
    config.push_str("\n# a_build_without_the_free_space_it_needs_stops_before_make\n");
    std::fs::write(frag.path().join("config"), config).expect("write");
    std::fs::copy(patches.join("config-o2"), frag.path().join("config-o2")).expect("copy");
    let cache = kernel()["bzimage"]
        .as_str()
        .map(|p| {
            Path::new(p)
                .ancestors()
                .nth(3)
                .expect("<cache>")
                .to_path_buf()
        })
        .expect("bzimage path");
    let count = || {
        std::fs::read_dir(cache.join("kernels"))
            .expect("kernels")
            .count()
    };
    let before = count();

    let out = run(fibneigh()
        .args(["vm", "build", "--min-free", "1EiB", "--config"])
        .arg(frag.path().join("config")));
    assert!(!out.status.success(), "1 EiB free was found");
    let err = stderr(&out);
    assert!(
        err.contains("free on the file system of") && err.contains("--min-free"),
        "{err}"
    );
    assert_eq!(count(), before, "a kernel directory was left");
}
