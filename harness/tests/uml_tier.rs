//! The User-Mode Linux tier: build the series for `ARCH=um` and run
//! commands in it natively. Each test needs root and the kernel source, and
//! the first build takes minutes, so they are ignored by a plain `cargo
//! test`; `scripts/test.sh` runs them with `--ignored`.

use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::{fibneigh, run, stderr};

fn uml_run(timeout: &str, command: &[&str]) -> Command {
    let mut c = fibneigh();
    c.args(["vm", "run", "--arch", "um", "--timeout", timeout, "--"])
        .args(command);
    c
}

/// `vm build --arch um`'s manifest (the build is cached after the first).
fn uml_build() -> serde_json::Value {
    let out = run(fibneigh().args(["vm", "build", "--arch", "um", "--json", "-"]));
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
#[ignore = "UML tier: builds the UML kernel (scripts/test.sh runs it)"]
fn uml_kernel_builds_and_passes_status_stdout_and_stderr_through() {
    let image = uml_build();
    assert_eq!(image["key"]["arch"], "um");
    assert!(image["bzimage"]
        .as_str()
        .is_some_and(|p| p.ends_with("/linux")));

    let out = run(&mut uml_run(
        "300",
        &[
            "sh",
            "-c",
            "echo to-stdout; echo to-stderr >&2; touch /etc/fibneigh-uml-ro 2>/dev/null && echo root-writable; exit 7",
        ],
    ));
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, "to-stdout\n", "only the command's stdout, no \\r");
    assert!(stderr(&out).contains("to-stderr"));
    assert!(stderr(&out).contains("console log:"));
    assert!(
        !std::path::Path::new("/etc/fibneigh-uml-ro").exists(),
        "the host's root is read-only in the guest"
    );
}

#[test]
#[ignore = "UML tier: runs the UML kernel"]
fn uml_guest_sees_bpffs_tmpfs_and_the_repository_as_cwd() {
    let cwd = std::env::current_dir().expect("cwd");
    let out = run(uml_run(
        "300",
        &[
            "sh",
            "-c",
            "grep -q ' /sys/fs/bpf bpf ' /proc/mounts && grep -q ' /tmp tmpfs ' /proc/mounts && touch /tmp/x && pwd",
        ],
    )
    .current_dir(&cwd));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        cwd.to_string_lossy()
    );
}

#[test]
#[ignore = "UML tier: runs the UML kernel"]
fn uml_timeout_and_interrupt_leave_no_process_behind() {
    let nap = format!("600.{}", std::process::id());
    let out = run(&mut uml_run("2", &["sleep", &nap]));
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("did not finish within 2s"));
    let left = common::processes_left_with("uml-userspace");
    assert!(left.is_empty(), "left: {left:?}");

    let child = uml_run("600", &["sleep", &nap])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fibneigh vm run --arch um");
    std::thread::sleep(Duration::from_secs(3));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let left = common::processes_left_with("uml-userspace");
    assert!(
        left.is_empty(),
        "a guest process outlived the run: {left:?}"
    );
    let left = common::processes_left_with("uml_dir=");
    assert!(left.is_empty(), "the UML kernel outlived the run: {left:?}");
}

/// A checkout and a cache under /tmp, which the guest mounts a tmpfs over:
/// the shares must still be mounted at their own paths.
#[test]
#[ignore = "UML tier: runs the UML kernel"]
fn uml_shares_a_checkout_and_a_cache_under_tmp() {
    let linux = uml_build()["bzimage"]
        .as_str()
        .expect("the linux program")
        .to_string();

    let base = tempfile::Builder::new()
        .prefix("fibneigh-uml-tmp-")
        .tempdir_in("/tmp")
        .expect("a directory under /tmp");
    let checkout = base.path().join("checkout");
    std::fs::create_dir_all(checkout.join("kernel-patches")).unwrap();
    std::fs::write(checkout.join("kernel-patches/series"), "").unwrap();
    std::fs::write(checkout.join("marker"), "from the host\n").unwrap();
    let cache = base.path().join("cache");

    let out = run(fibneigh()
        .args(["vm", "run", "--arch", "um", "--timeout", "300", "--kernel"])
        .arg(&linux)
        .args([
            "--",
            "sh",
            "-c",
            "cat marker && pwd && echo from-the-guest > written",
        ])
        .current_dir(&checkout)
        .env("FIBNEIGH_CACHE", &cache));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("from the host\n{}\n", checkout.display())
    );
    assert_eq!(
        std::fs::read_to_string(checkout.join("written")).expect("the guest's write"),
        "from-the-guest\n"
    );
}
