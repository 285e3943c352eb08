//! The runner for the kernel's own BPF selftests: build `test_progs` from a
//! patched tree's `tools/testing/selftests/bpf`, pruned to the fib_lookup
//! tests, and parse what `test_progs -t fib_lookup` reports.
//!
//! Building all of test_progs against the project's small kernel config
//! fails (many programs need types only the selftests' large config has,
//! and some need a newer clang than Debian 12's clang-16), so the runner
//! copies the selftests directory next to the original, keeps only
//! `prog_tests/fib_lookup.c` and `progs/fib_lookup.c`, and empties the
//! Makefile's explicit skeleton lists. The resulting binary runs only the
//! fib_lookup tests, which is all `-t fib_lookup` would run anyway.

use std::path::{Path, PathBuf};

mod build;
mod guest;
mod results;

pub use build::{build, make_vars, prune, Built, Suite, FIB, LLVM_BIN, PRUNED_DIR, REGRESSION};
pub use guest::{stage, GuestRun, KERNEL_BUILD_FILE, OUTPUT_FILE, RC_FILE, STAGED_DIR};
pub use results::{
    diff, parse, parse_json_summary, results, DiffRow, JsonResult, Outcome, Report, TestResult,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` failed; full log: {}\n{tail}", .log.display())]
    Build {
        cmd: String,
        log: PathBuf,
        tail: String,
    },
    #[error("failed to copy {} to {}: {why}", .from.display(), .to.display())]
    Stage {
        from: PathBuf,
        to: PathBuf,
        why: String,
    },
    #[error("{}: {source}", .path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io<T>(r: std::io::Result<T>, path: &Path) -> Result<T> {
    r.map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_runs_quote_and_place_their_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(tree.path().join("bpf_fibneigh")).expect("mkdir");
        let tp = &tree.path().join("bpf_fibneigh/test_progs");
        std::fs::write(tp, "").expect("w");
        let plain = GuestRun::plain(tp, "fib_lookup", dir.path()).expect("plain");
        // It runs the copy in the output directory, not the tree's.
        let cd = format!(
            "cd '{}' || exit $?; w=; ./test_progs --help",
            dir.path().join(STAGED_DIR).display()
        );
        assert!(
            plain.script.starts_with(&cd)
                && plain
                    .script
                    .contains("&& w='-w 0'; ./test_progs $w -t 'fib_lookup' > '"),
            "{}",
            plain.script
        );
        assert_eq!(plain.output, dir.path().join("test_progs.out"));
        let json = GuestRun::json(tp, "a,b'c", dir.path(), "pristine").expect("json");
        assert!(json.script.starts_with(&cd[..cd.find(" w=").expect("w=")]));
        assert!(
            json.script.contains("./test_progs $w -t "),
            "{}",
            json.script
        );
        assert!(
            json.script.contains("-t 'a,b'\\''c' --list"),
            "{}",
            json.script
        );
        assert_eq!(json.summary, Some(dir.path().join("pristine.json")));
        // No summary yet: test_progs "died".
        assert_eq!(json.json_results().expect("no error"), None);
        std::fs::write(dir.path().join("pristine.list"), "fib_lookup\nxdp_link\n").expect("w");
        std::fs::write(
            dir.path().join("pristine.json"),
            r#"{"success":1,"success_subtest":0,"skipped":0,"failed":1,"results":[{"name":"xdp_link","number":2,"message":"","failed":true,"subtests":[]}]}"#,
        )
        .expect("w");
        // The summary without the output it came with is an error, not a
        // run with no skips.
        assert!(json.json_results().is_err());
        std::fs::write(
            dir.path().join("pristine.out"),
            "#1/1 fib_lookup/sub:SKIP\n#1 fib_lookup:OK\n#2 xdp_link:FAIL\n",
        )
        .expect("w");
        let r = json.json_results().expect("parsed").expect("some");
        assert_eq!(
            r.iter()
                .map(|r| (r.name.as_str(), r.outcome))
                .collect::<Vec<_>>(),
            [
                ("fib_lookup", Outcome::Ok),
                ("xdp_link", Outcome::Fail),
                ("fib_lookup/sub", Outcome::Skip)
            ]
        );
    }

    /// The detached script, run by `sh` with a stand-in test_progs that
    /// fails: its output, exit status and the guest's build are left for
    /// the host, stale files of an earlier run are gone, and the script
    /// itself succeeds.
    #[test]
    fn a_detached_run_leaves_output_status_and_build() {
        use std::os::unix::fs::PermissionsExt;
        let tp_dir = tempfile::tempdir().expect("tempdir");
        let out = tempfile::tempdir().expect("tempdir");
        let tp = tp_dir.path().join("test_progs");
        std::fs::write(
            &tp,
            "#!/bin/sh\n[ \"$1\" = --help ] && exit 0\necho \"#1 fib_lookup:FAIL ($*)\"\nexit 3\n",
        )
        .expect("w");
        std::fs::set_permissions(&tp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::write(out.path().join(RC_FILE), "0\n").expect("stale rc");
        let run = GuestRun::detached(&tp, "fib_lookup", out.path()).expect("detached");
        assert!(
            !out.path().join(RC_FILE).exists(),
            "a stale status is removed"
        );
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&run.script)
            .env("FIBNEIGH_KERNEL_BUILD", "series abc, profile debug")
            .status()
            .expect("sh");
        assert!(status.success());
        let read = |f: &str| std::fs::read_to_string(out.path().join(f)).expect(f);
        assert_eq!(read(RC_FILE), "3\n");
        assert_eq!(read(KERNEL_BUILD_FILE), "series abc, profile debug\n");
        assert_eq!(
            read("test_progs.out"),
            "#1 fib_lookup:FAIL (-t fib_lookup)\n"
        );
        assert_eq!(run.output, out.path().join("test_progs.out"));
    }

    /// test_progs' directory is copied whole (executable bits, links,
    /// subdirectories) into the output directory, replacing what an
    /// earlier copy left; a missing directory is an error naming it.
    #[test]
    fn stage_copies_test_progs_directory_into_the_output() {
        use std::os::unix::fs::PermissionsExt;
        let tree = tempfile::tempdir().expect("tempdir");
        let out = tempfile::tempdir().expect("tempdir");
        let src = tree.path().join("bpf_fibneigh~1");
        std::fs::create_dir_all(src.join("tools/lib")).expect("mkdir");
        std::fs::write(src.join("test_progs"), "#!/bin/sh\n").expect("w");
        std::fs::set_permissions(
            src.join("test_progs"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        std::fs::write(src.join("fib_lookup.bpf.o"), "obj").expect("w");
        std::fs::write(src.join("tools/lib/libbpf.so.1"), "so").expect("w");
        std::os::unix::fs::symlink("libbpf.so.1", src.join("tools/lib/libbpf.so")).expect("ln");
        std::fs::create_dir_all(out.path().join(STAGED_DIR)).expect("mkdir");
        std::fs::write(out.path().join(STAGED_DIR).join("stale"), "x").expect("w");

        let staged = stage(&src.join("test_progs"), out.path()).expect("staged");
        let copy = out.path().join(STAGED_DIR);
        assert_eq!(staged, copy.join("test_progs"));
        let mode = std::fs::metadata(&staged)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "still executable");
        assert_eq!(
            std::fs::read_to_string(copy.join("fib_lookup.bpf.o")).expect("r"),
            "obj"
        );
        assert_eq!(
            std::fs::read_link(copy.join("tools/lib/libbpf.so")).expect("link"),
            Path::new("libbpf.so.1")
        );
        assert!(!copy.join("stale").exists(), "an earlier copy is replaced");
        // A copy into itself, or into the directory it copies, is refused
        // before anything is removed.
        for (tp, dir) in [
            (staged.clone(), out.path().to_path_buf()),
            (src.join("test_progs"), src.join("tools")),
        ] {
            let err = stage(&tp, &dir).expect_err("overlap").to_string();
            assert!(err.contains("inside"), "{err}");
        }
        assert!(staged.exists() && src.join("test_progs").exists());

        let missing = tree.path().join("gone/test_progs");
        let err = stage(&missing, out.path())
            .expect_err("no directory")
            .to_string();
        assert!(
            err.contains(&tree.path().join("gone").display().to_string()),
            "{err}"
        );
    }

    const OUTPUT: &str = "\
Testing IPv6 failed neigh Testing IPv4 stale neigh
#101     fib_lookup:OK
#102/1   fib_lookup_vlan_netns/sub:OK
#102     fib_lookup_vlan_netns:OK
#103     fib_lookup_vlan_redirect:FAIL
#104     other:SKIP
Summary: 3/1 PASSED, 1 SKIPPED, 1 FAILED
";

    #[test]
    fn parses_tests_subtests_and_summary() {
        let r = parse(OUTPUT);
        assert_eq!(r.results.len(), 5);
        assert_eq!(r.results[1].name, "fib_lookup_vlan_netns/sub");
        assert_eq!(r.failed().len(), 1);
        assert_eq!(r.failed()[0].name, "fib_lookup_vlan_redirect");
        assert_eq!(
            r.summary.as_deref(),
            Some("Summary: 3/1 PASSED, 1 SKIPPED, 1 FAILED")
        );
        assert!(!r.passed());
    }

    #[test]
    fn failed_tests_repeated_under_all_error_logs_count_once() {
        let r = parse(
            "#1 fib_lookup:FAIL\n#2 fib_lookup_vlan_netns:OK\n\nAll error logs:\n\
             test_fib_lookup:FAIL:fib_lookup_ret\n#1 fib_lookup:FAIL\n\
             Summary: 1/0 PASSED, 0 SKIPPED, 1 FAILED\n",
        );
        assert_eq!(r.results.len(), 2);
        assert_eq!(r.failed().len(), 1);
        assert_eq!(
            r.summary.as_deref(),
            Some("Summary: 1/0 PASSED, 0 SKIPPED, 1 FAILED")
        );
    }

    #[test]
    fn a_test_the_watchdog_killed_counts_once_and_failed() {
        let r = parse(
            "WATCHDOG: test case fib_lookup executes for 120 seconds...\n\
             #1 fib_lookup:OK\n#1 fib_lookup:FAIL\n#2 fib_lookup_vlan_netns:OK\n\
             Summary: 1/0 PASSED, 0 SKIPPED, 1 FAILED\n",
        );
        assert_eq!(r.results.len(), 2);
        assert_eq!(r.failed().len(), 1);
    }

    #[test]
    fn a_run_that_died_or_ran_nothing_did_not_pass() {
        assert!(!parse("#1 fib_lookup:OK\n").passed(), "no summary: crashed");
        assert!(
            !parse("Summary: 0/0 PASSED, 0 SKIPPED, 0 FAILED\n").passed(),
            "ran nothing"
        );
        assert!(parse("#1 fib_lookup:OK\nSummary: 1/0 PASSED, 0 SKIPPED, 0 FAILED\n").passed());
    }

    #[test]
    fn json_summary_and_the_differential() {
        let pristine = parse_json_summary(
            r#"{"success":1,"success_subtest":1,"skipped":0,"failed":1,"results":[
              {"name":"fib_lookup","number":1,"message":"","failed":false,"subtests":[]},
              {"name":"fib_lookup_neigh","number":2,"message":"x","failed":true,
               "subtests":[{"name":"flags","number":1,"message":"","failed":true}]},
              {"name":"tc_redirect","number":3,"message":"","failed":false,
               "subtests":[{"name":"tc_neigh_fib","number":1,"message":"","failed":false}]}]}"#,
        )
        .unwrap();
        assert_eq!(pristine.len(), 5);
        assert_eq!(pristine[1].name, "fib_lookup_neigh/flags");
        let mut patched = pristine.clone();
        for r in &mut patched {
            r.outcome = Outcome::Ok;
        }
        let rows = diff(&pristine, &patched);
        assert!(rows.iter().all(|r| !r.regressed()), "new passes are fine");
        // tc_neigh_fib breaking on the patched kernel is a regression, and
        // so is a test that vanished there.
        patched.retain(|r| r.name != "tc_redirect");
        patched
            .iter_mut()
            .find(|r| r.name == "tc_redirect/tc_neigh_fib")
            .unwrap()
            .outcome = Outcome::Fail;
        let bad: Vec<String> = diff(&pristine, &patched)
            .into_iter()
            .filter(DiffRow::regressed)
            .map(|r| r.name)
            .collect();
        assert_eq!(bad, ["tc_redirect", "tc_redirect/tc_neigh_fib"]);
        // Listed tests that did not fail passed, unless the output says
        // they were skipped; unreported subtests of a test that ran passed,
        // of a skipped test were skipped.
        let out = parse("#1 fib_lookup:SKIP\n#2/1 xdp_link/a:SKIP\n#2 xdp_link:OK\n");
        let r = results(
            "fib_lookup\nfib_lookup_neigh\nxdp_link\n",
            vec![JsonResult {
                name: "fib_lookup_neigh".into(),
                outcome: Outcome::Fail,
            }],
            &out,
        );
        let of = |rs: &[JsonResult], n: &str| rs.iter().find(|x| x.name == n).map(|x| x.outcome);
        assert_eq!(r.len(), 4);
        assert_eq!(of(&r, "fib_lookup"), Some(Outcome::Skip));
        assert_eq!(of(&r, "xdp_link"), Some(Outcome::Ok));
        assert_eq!(of(&r, "xdp_link/a"), Some(Outcome::Skip));
        let other = results(
            "fib_lookup\nfib_lookup_neigh\nxdp_link\n",
            vec![JsonResult {
                name: "fib_lookup_neigh/flags".into(),
                outcome: Outcome::Fail,
            }],
            &Report::default(),
        );
        let rows = diff(&r, &other);
        let row = |n: &str| rows.iter().find(|x| x.name == n).unwrap();
        assert_eq!(
            (
                row("fib_lookup_neigh/flags").pristine,
                row("fib_lookup_neigh/flags").patched
            ),
            (Some(Outcome::Ok), Some(Outcome::Fail))
        );
        // Skipped on the pristine base, passed on the series: not a
        // regression; passed on the base, skipped on the series: one.
        assert_eq!(
            (row("fib_lookup").pristine, row("fib_lookup").patched),
            (Some(Outcome::Skip), Some(Outcome::Ok))
        );
        assert!(!row("fib_lookup").regressed());
        let back = diff(&other, &r);
        assert!(back
            .iter()
            .find(|x| x.name == "fib_lookup")
            .unwrap()
            .regressed());
    }

    #[test]
    fn suites_list_their_files_once() {
        let f = REGRESSION.files();
        assert!(f.contains(&("prog_tests", "tc_redirect.c".to_string())));
        assert!(f.contains(&("progs", "test_tc_neigh_fib.c".to_string())));
        assert_eq!(f.iter().filter(|(_, n)| n == "xdp_dummy.c").count(), 1);
        assert_eq!(FIB.files().len(), 2);
    }

    #[test]
    fn make_vars_use_the_llvm_dir_and_empty_the_skeleton_lists() {
        let v = make_vars("/llvm/bin", Path::new("/k/vmlinux"));
        assert!(v.contains(&"CLANG=/llvm/bin/clang".to_string()));
        assert!(v.contains(&"LLD=lld".to_string()));
        assert!(v.contains(&"LSKELS=".to_string()));
        assert!(v.contains(&"VMLINUX_BTF=/k/vmlinux".to_string()));
    }
}
