//! `fibneigh scale` against the running kernel (needs root; run with
//! `cargo test -p fibneigh --test scale_root -- --ignored
//! --test-threads=1`): a small case per policy this kernel runs, judged by
//! `--check` (the baseline keeps every moved nexthop at its dead MAC, the
//! others recover, probes within the stack's order of magnitude); bad
//! input refused before anything is built; the machine's neighbour GC
//! thresholds put back after a run that raised them, also on Ctrl-C; and
//! no namespace left behind.

use std::process::Command;
use std::time::Duration;

use fibneigh::lab::neigh::GcThresholds;
use fibneigh::scale::{self, ScaleCase, ScaleOptions, StaleBy};
use fibneigh::scenario::{Family, PolicyChoice};
use fibneigh_bpf::{Hook, Policy};

mod common;
use common::{fibneigh_with as fibneigh, interrupt, lab_namespace_of, no_namespace_left_by};

/// Baseline keeps all 6 moved nexthops (10 % of 64, rounded) at the dead
/// MAC; the stack recovers every one, probing each (and re-validating the
/// 58 that stayed, forced STALE too).
#[test]
#[ignore = "needs root"]
fn baseline_black_holes_every_moved_nexthop_and_the_stack_recovers_them() {
    let opts = ScaleOptions {
        rate_pps: 2000,
        window: None,
    };
    let case = |policy, hook| ScaleCase {
        nexthops: 64,
        moved_pct: 10,
        stale: StaleBy::Forced,
        policy,
        family: Family::V4,
        hook,
    };
    let base = scale::run(
        &case(PolicyChoice::Prog(Policy::Baseline), Some(Hook::Xdp)),
        &opts,
    )
    .expect("baseline case");
    assert_eq!((base.moved, base.recovered), (6, 0), "{base:?}");
    assert!(base.observed.to_dead > 0, "{base:?}");
    assert_eq!(base.observed.probes_total(), 0, "{base:?}");
    assert_eq!(base.final_states.get("STALE"), Some(&64), "{base:?}");

    let stack = scale::run(&case(PolicyChoice::KernelStack, None), &opts).expect("stack case");
    assert_eq!(
        (stack.moved, stack.recovered, stack.never),
        (6, 6, 0),
        "{stack:?}"
    );
    assert_eq!(stack.final_new_mac, 6, "{stack:?}");
    assert!(stack.recovery_ms.is_some());
    // Every forced-STALE entry in use is probed: the 58 that stayed once
    // (answered), the 6 moved ones through all unicast probes.
    assert!(stack.observed.probed_addresses >= 64, "{stack:?}");
    assert!(stack.table.get("res_failed").copied().unwrap_or(0) >= 6);
    no_namespace_left_by(std::process::id());
}

/// The command: every policy this kernel runs, judged by --check, both
/// hooks and families, the report and the figures written.
#[test]
#[ignore = "needs root"]
fn scale_check_passes_for_every_policy_this_kernel_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("scale.json");
    let svg = dir.path().join("svg");
    let (code, text) = fibneigh(&[
        "scale",
        "--nexthops",
        "32",
        "--moved-pct",
        "25",
        "--family",
        "4,6",
        "--rate",
        "1000",
        "--check",
        "--json",
        json.to_str().expect("utf-8"),
        "--svg-dir",
        svg.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("scale check:"), "{text}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("JSON");
    let results = report["results"].as_array().expect("results");
    // baseline, always-neigh and header at tc and XDP, and the stack, for
    // both families; state-aware and refresh on a patched kernel.
    assert!(results.len() >= 2 * 7, "{}", results.len());
    assert!(std::fs::read_dir(&svg).expect("figures").count() >= 2 * 9);
}

#[test]
#[ignore = "needs root"]
fn bad_input_is_refused_by_name() {
    for (args, says) in [
        (vec!["scale", "--nexthops", "0"], "--nexthops 0"),
        (vec!["scale", "--nexthops", "70000"], "--nexthops 70000"),
        (vec!["scale", "--moved-pct", "0"], "--moved-pct 0"),
        (vec!["scale", "--moved-pct", "101"], "--moved-pct 101"),
        (vec!["scale", "--rate", "0"], "--rate"),
        (vec!["scale", "--stale", "old"], "unknown staleness"),
        (vec!["scale", "--policy", "fast"], "unknown policy"),
    ] {
        let (code, text) = fibneigh(&args);
        assert_ne!(code, Some(0), "{args:?}: {text}");
        assert!(text.contains(says), "{args:?}: {text}");
    }
}

/// `fibneigh scale --nexthops N --raise-gc-thresh`, once it has raised the
/// thresholds from `before` and made its lab.
fn raising_run(nexthops: &str, before: GcThresholds) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fibneigh"))
        .args([
            "scale",
            "--nexthops",
            nexthops,
            "--policy",
            "kernel-stack",
            "--raise-gc-thresh",
        ])
        .spawn()
        .expect("spawn fibneigh");
    let mut raised = false;
    let ready = common::poll_until(Duration::from_secs(30), Duration::from_millis(10), || {
        raised |= GcThresholds::read(false).expect("thresholds") != before;
        raised && lab_namespace_of(child.id())
    });
    if !ready {
        // Stopped as a user would (if it still runs), so that its lab and
        // the raised thresholds go with it, before the test fails.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = child.wait();
    }
    assert!(raised, "the run did not raise the thresholds");
    // A signal sent before the lab exists would test only the exit of a
    // run that had nothing to remove.
    assert!(
        ready,
        "the run raised the thresholds but made no lab in 30 s"
    );
    child
}

/// Thresholds the current ones cannot hold: refused without
/// --raise-gc-thresh; with it, raised for the run and put back, also when
/// the run is interrupted.
#[test]
#[ignore = "needs root"]
fn gc_thresholds_are_refused_or_raised_and_restored_even_on_ctrl_c() {
    let before = GcThresholds::read(false).expect("thresholds");
    let big = (before.thresh3 + 512).to_string();
    let (code, text) = fibneigh(&["scale", "--nexthops", &big, "--policy", "kernel-stack"]);
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("--raise-gc-thresh"), "{text}");
    assert_eq!(GcThresholds::read(false).expect("thresholds"), before);

    let mut child = raising_run(&big, before);
    std::thread::sleep(Duration::from_millis(500));
    interrupt(&mut child);
    assert_eq!(GcThresholds::read(false).expect("thresholds"), before);
}

/// A second Ctrl-C exits at once, without the guards' drops; the raised
/// thresholds are put back all the same (and the namespaces it leaves go
/// with `fibneigh clean`). SIGINT then SIGTERM, sent together: two
/// different signals do not merge into one pending signal as two SIGINTs
/// can, and the second handler finds the first's flag set. Whether the
/// run got to exit on its own first is up to the scheduler, so it is
/// tried until one run exits at once; every run must restore them.
#[test]
#[ignore = "needs root"]
fn a_second_ctrl_c_restores_the_gc_thresholds_too() {
    use nix::sys::signal::{kill, Signal};
    let before = GcThresholds::read(false).expect("thresholds");
    let big = (before.thresh3 + 512).to_string();
    let mut at_once = 0;
    for _ in 0..5 {
        let mut child = raising_run(&big, before);
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        kill(pid, Signal::SIGINT).expect("send SIGINT");
        // gone already: the first signal's clean exit was quicker
        let _ = kill(pid, Signal::SIGTERM);
        let status = child.wait().expect("wait for fibneigh");
        assert_eq!(status.code(), Some(130), "{status:?}");
        let after = GcThresholds::read(false).expect("thresholds");
        // The lab's namespaces are left: the exit was the second signal's.
        at_once += usize::from(lab_namespace_of(child.id()));
        let (code, text) = fibneigh(&["clean"]);
        assert_eq!(code, Some(0), "{text}");
        assert_eq!(after, before, "restored by the run's exit");
        no_namespace_left_by(child.id());
        if at_once > 0 {
            break;
        }
    }
    assert!(at_once > 0, "no run of 5 exited at the second signal");
}
