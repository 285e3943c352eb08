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

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

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

/// A set of `prog_tests/` tests and the `progs/` sources their skeletons
/// are built from.
#[derive(Debug, Clone, Copy)]
pub struct Suite {
    pub name: &'static str,
    pub tests: &'static [(&'static str, &'static [&'static str])],
    /// A test of this suite that does not compile fails the build (else it
    /// is left out and reported).
    pub strict: bool,
}

/// The fib_lookup tests, which hold the series' own cases.
pub const FIB: Suite = Suite {
    name: "fib_lookup",
    tests: &[("fib_lookup", &["fib_lookup"])],
    strict: true,
};

/// The tests that exercise the paths the series touches, for the
/// pristine-vs-patched differential: bpf_fib_lookup() itself, tc's
/// redirect and redirect_neigh (tc_redirect's tc_neigh_fib cases call
/// bpf_fib_lookup()), XDP redirects and test runs, and tc/XDP attachment.
pub const REGRESSION: Suite = Suite {
    name: "regression",
    tests: &[
        ("fib_lookup", &["fib_lookup"]),
        (
            "tc_redirect",
            &[
                "test_tc_neigh_fib",
                "test_tc_neigh",
                "test_tc_peer",
                "test_tc_dtime",
            ],
        ),
        ("xdp_do_redirect", &["test_xdp_do_redirect", "xdp_dummy"]),
        (
            "xdp_bonding",
            &["xdp_dummy", "xdp_redirect_multi_kern", "xdp_tx"],
        ),
        (
            "xdp_context_test_run",
            &["test_xdp_context_test_run", "test_xdp_meta"],
        ),
        (
            "xdp_devmap_attach",
            &[
                "test_xdp_devmap_helpers",
                "test_xdp_devmap_tailcall",
                "test_xdp_with_devmap_frags_helpers",
                "test_xdp_with_devmap_helpers",
            ],
        ),
        (
            "xdp_cpumap_attach",
            &[
                "test_xdp_with_cpumap_frags_helpers",
                "test_xdp_with_cpumap_helpers",
            ],
        ),
        ("xdp_link", &["test_xdp_link"]),
        ("tc_links", &["test_tc_link"]),
    ],
    strict: false,
};

impl Suite {
    /// Every file the pruned copy keeps, as `(dir, file)`.
    pub fn files(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (test, progs) in self.tests {
            out.push(("prog_tests", format!("{test}.c")));
            for p in *progs {
                out.push(("progs", format!("{p}.c")));
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Name of the pruned copy, a sibling of `selftests/bpf` so the
/// Makefile's relative paths into the tree still hold.
pub const PRUNED_DIR: &str = "tools/testing/selftests/bpf_fibneigh";

/// Debian 12's LLVM 16 (packages clang-16, llvm-16, lld-16).
pub const LLVM_BIN: &str = "/usr/lib/llvm-16/bin";

/// The make variables that build test_progs with the LLVM in `llvm_bin`
/// and without the skeletons whose sources were pruned. `LLD=lld` makes
/// clang use the `ld.lld` next to it.
pub fn make_vars(llvm_bin: &str, vmlinux: &Path) -> Vec<String> {
    let mut vars: Vec<String> = [
        ("CLANG", "clang"),
        ("LLC", "llc"),
        ("LLVM_STRIP", "llvm-strip"),
    ]
    .iter()
    .map(|(var, tool)| format!("{var}={llvm_bin}/{tool}"))
    .collect();
    vars.push("LLD=lld".into());
    vars.push("BPF_STRICT_BUILD=0".into());
    for list in [
        "LSKELS",
        "LSKELS_SIGNED",
        "LSKELS_EXTRA",
        "LINKED_SKELS",
        "LIBARENA_SKEL",
        "LIBARENA_ASAN_SKEL",
    ] {
        vars.push(format!("{list}="));
    }
    // Helper binaries and test kernel modules copied next to test_progs;
    // fib_lookup needs none of them, and the modules cannot be built for
    // a kernel without CONFIG_MODULES (6.12's Makefile insists).
    vars.push("TRUNNER_EXTRA_FILES=".into());
    vars.push(format!("VMLINUX_BTF={}", vmlinux.display()));
    vars
}

/// Make the pruned copy of the selftests (again, if the originals changed).
pub fn prune(tree: &Path, suite: &Suite) -> Result<PathBuf> {
    let src = tree.join("tools/testing/selftests/bpf");
    let dst = tree.join(PRUNED_DIR);
    let status = Command::new("rsync")
        .args(["-a", "--delete"])
        .arg("--exclude=/prog_tests/*.c")
        .arg("--exclude=/progs/*.c")
        .arg(format!("{}/", src.display()))
        .arg(&dst)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            return Err(Error::Io {
                path: dst,
                source: std::io::Error::other(format!("rsync exited with {s}")),
            })
        }
        Err(e) => {
            return Err(Error::Io {
                path: dst,
                source: e,
            })
        }
    }
    // rsync leaves excluded files alone: remove the sources another suite
    // copied in, so only this suite's tests are built.
    let files = suite.files();
    for dir in ["prog_tests", "progs"] {
        let Ok(entries) = fs::read_dir(dst.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".c") && !files.iter().any(|(d, f)| *d == dir && *f == name) {
                io(fs::remove_file(e.path()), &e.path())?;
                // The generated list of tests would still name it.
                let _ = fs::remove_file(dst.join("prog_tests/tests.h"));
            }
        }
    }
    for (dir, keep) in files {
        let from = src.join(dir).join(&keep);
        let to = dst.join(dir).join(&keep);
        // Copy only when changed, so make sees no spurious update.
        if fs::read(&from).ok() != fs::read(&to).ok() {
            io(fs::copy(&from, &to), &from)?;
        }
    }
    Ok(dst)
}

/// What [`build`] made.
#[derive(Debug, Clone)]
pub struct Built {
    pub test_progs: PathBuf,
    /// Tests of a non-strict suite that did not compile, left out.
    pub skipped: Vec<String>,
    /// The `-t` selector for the tests that were built.
    pub selector: String,
}

/// Build `test_progs` in the pruned copy for `suite`.
pub fn build(tree: &Path, vmlinux: &Path, jobs: usize, log: &Path, suite: &Suite) -> Result<Built> {
    let dir = prune(tree, suite)?;
    let mut make = Command::new("make");
    make.current_dir(&dir)
        .arg(format!("-j{jobs}"))
        .args(make_vars(LLVM_BIN, vmlinux))
        .arg("test_progs");
    let cmd = format!("make -C {} test_progs", dir.display());
    let out = io(make.output(), &dir)?;
    let mut text = out.stdout.clone();
    text.extend_from_slice(&out.stderr);
    io(fs::write(log, &text), log)?;
    // BPF_STRICT_BUILD=0 makes the Makefile skip a test that does not
    // compile instead of failing; a skipped fib_lookup test is a failure.
    let skipped: Vec<String> = String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| l.contains("SKIP-TEST"))
        .map(|l| l.trim().to_string())
        .collect();
    if !skipped.is_empty() && suite.strict {
        return Err(Error::Build {
            cmd,
            log: log.to_path_buf(),
            tail: format!("test objects that did not compile: {}", skipped.join(", ")),
        });
    }
    if !out.status.success() {
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("error") || l.starts_with("make"))
            .collect();
        return Err(Error::Build {
            cmd,
            log: log.to_path_buf(),
            tail: lines[lines.len().saturating_sub(20)..].join("\n"),
        });
    }
    let left_out: Vec<String> = suite
        .tests
        .iter()
        .map(|(t, _)| t.to_string())
        .filter(|t| skipped.iter().any(|l| l.contains(&format!("{t}.test.o"))))
        .collect();
    let selector = suite
        .tests
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| !left_out.iter().any(|s| s == t))
        .collect::<Vec<_>>()
        .join(",");
    Ok(Built {
        test_progs: dir.join("test_progs"),
        skipped: left_out,
        selector,
    })
}

/// One run of `test_progs` inside a guest: the shell line the guest runs
/// and the files it leaves in a directory shared with the host.
#[derive(Debug, Clone)]
pub struct GuestRun {
    /// For `sh -c` in the guest.
    pub script: String,
    /// test_progs' own output.
    pub output: PathBuf,
    /// `--json-summary` (failures only) and `--list` (every test that
    /// runs), for [`GuestRun::json_results`].
    pub summary: Option<PathBuf>,
    pub list: Option<PathBuf>,
}

fn quoted(p: &Path) -> String {
    shell_quote(&p.to_string_lossy())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl GuestRun {
    /// `test_progs -t SELECTOR`, its output into `out_dir/test_progs.out`
    /// (and printed), exiting with test_progs' status.
    pub fn plain(test_progs: &Path, selector: &str, out_dir: &Path) -> Result<GuestRun> {
        let dir = test_progs.parent().unwrap_or(Path::new("."));
        let output = out_dir.join("test_progs.out");
        remove_stale(&output)?;
        Ok(GuestRun {
            script: format!(
                "cd {} && ./test_progs -t {} > {out} 2>&1; rc=$?; cat {out}; exit $rc",
                quoted(dir),
                shell_quote(selector),
                out = quoted(&output),
            ),
            output,
            summary: None,
            list: None,
        })
    }

    /// `test_progs -t SELECTOR --list`, then `--json-summary`, into
    /// `out_dir/LABEL.{list,json,out}`; the guest command always succeeds
    /// (the results are in the files).
    pub fn json(
        test_progs: &Path,
        selector: &str,
        out_dir: &Path,
        label: &str,
    ) -> Result<GuestRun> {
        let dir = test_progs.parent().unwrap_or(Path::new("."));
        let summary = out_dir.join(format!("{label}.json"));
        let list = out_dir.join(format!("{label}.list"));
        let output = out_dir.join(format!("{label}.out"));
        for f in [&summary, &list, &output] {
            remove_stale(f)?;
        }
        let sel = shell_quote(selector);
        Ok(GuestRun {
            script: format!(
                "cd {} && ./test_progs -t {sel} --list > {} 2>/dev/null; \
                 ./test_progs -t {sel} --json-summary={} > {} 2>&1; true",
                quoted(dir),
                quoted(&list),
                quoted(&summary),
                quoted(&output),
            ),
            output,
            summary: Some(summary),
            list: Some(list),
        })
    }

    /// The outcome of every listed test after a [`GuestRun::json`] run;
    /// None when test_progs died before writing its summary.
    pub fn json_results(&self) -> Result<Option<Vec<JsonResult>>> {
        let (Some(summary), Some(list)) = (&self.summary, &self.list) else {
            return Ok(None);
        };
        let Ok(text) = std::fs::read_to_string(summary) else {
            return Ok(None);
        };
        let failures = parse_json_summary(&text).map_err(|source| Error::Json {
            path: summary.clone(),
            source,
        })?;
        let listed = io(std::fs::read_to_string(list), list)?;
        Ok(Some(results(&listed, failures)))
    }
}

fn remove_stale(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => io(Err(e), path),
        _ => Ok(()),
    }
}

/// One test or subtest in `test_progs --json-summary` output: passed or
/// failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JsonResult {
    pub name: String,
    pub failed: bool,
}

/// The outcome of every test `--list` named: the failures (tests and
/// subtests) come from the `--json-summary` report, which lists only
/// failures; a listed test that is not among them passed.
pub fn results(listed: &str, failures: Vec<JsonResult>) -> Vec<JsonResult> {
    let mut out: Vec<JsonResult> = listed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !failures.iter().any(|f| f.name == *l))
        .map(|l| JsonResult {
            name: l.to_string(),
            failed: false,
        })
        .collect();
    out.extend(failures);
    out
}

/// Tests and subtests (`test/subtest`) of a `--json-summary` file.
pub fn parse_json_summary(text: &str) -> Result<Vec<JsonResult>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Sub {
        name: String,
        failed: bool,
    }
    #[derive(serde::Deserialize)]
    struct Test {
        name: String,
        failed: bool,
        #[serde(default)]
        subtests: Vec<Sub>,
    }
    #[derive(serde::Deserialize)]
    struct Summary {
        results: Vec<Test>,
    }
    let s: Summary = serde_json::from_str(text)?;
    let mut out = Vec::new();
    for t in s.results {
        for sub in &t.subtests {
            out.push(JsonResult {
                name: format!("{}/{}", t.name, sub.name),
                failed: sub.failed,
            });
        }
        out.push(JsonResult {
            name: t.name,
            failed: t.failed,
        });
    }
    Ok(out)
}

/// One row of the pristine-vs-patched table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffRow {
    pub name: String,
    /// None: the test did not run there.
    pub pristine: Option<bool>,
    pub patched: Option<bool>,
}

impl DiffRow {
    /// Passed on the pristine kernel and failed (or vanished) on the
    /// patched one.
    pub fn regressed(&self) -> bool {
        self.pristine == Some(true) && self.patched != Some(true)
    }
}

/// Join two runs by test name; `true` means passed.
pub fn diff(pristine: &[JsonResult], patched: &[JsonResult]) -> Vec<DiffRow> {
    let mut names: Vec<&str> = pristine
        .iter()
        .chain(patched)
        .map(|r| r.name.as_str())
        .collect();
    names.sort();
    names.dedup();
    // A subtest is reported only when it fails: where its test ran and it
    // is not reported, it passed.
    let find = |rs: &[JsonResult], n: &str| {
        rs.iter()
            .find(|r| r.name == n)
            .map(|r| !r.failed)
            .or_else(|| {
                let (test, _) = n.split_once('/')?;
                rs.iter().any(|r| r.name == test).then_some(true)
            })
    };
    names
        .into_iter()
        .map(|n| DiffRow {
            name: n.to_string(),
            pristine: find(pristine, n),
            patched: find(patched, n),
        })
        .collect()
}

/// One test or subtest result line of test_progs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestResult {
    pub name: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    Ok,
    Fail,
    Skip,
}

/// What a test_progs run reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub results: Vec<TestResult>,
    /// The "Summary:" line, if test_progs got that far.
    pub summary: Option<String>,
}

impl Report {
    pub fn failed(&self) -> Vec<&TestResult> {
        self.results
            .iter()
            .filter(|r| r.outcome == Outcome::Fail)
            .collect()
    }

    /// Passed only if test_progs finished, ran something, and nothing
    /// failed.
    pub fn passed(&self) -> bool {
        self.summary.is_some() && !self.results.is_empty() && self.failed().is_empty()
    }
}

/// Parse test_progs output: lines like `#101     fib_lookup:OK`,
/// `#101/3   fib_lookup/neigh:FAIL`, `#12 foo:SKIP`, and `Summary: ...`.
pub fn parse(output: &str) -> Report {
    let mut report = Report::default();
    for line in output.lines() {
        let line = line.trim();
        if line.starts_with("Summary:") {
            report.summary = Some(line.to_string());
            continue;
        }
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((num, rest)) = rest.split_once(char::is_whitespace) else {
            continue;
        };
        if !num.chars().all(|c| c.is_ascii_digit() || c == '/') {
            continue;
        }
        let Some((name, outcome)) = rest.trim().rsplit_once(':') else {
            continue;
        };
        let outcome = match outcome.trim() {
            "OK" => Outcome::Ok,
            "FAIL" => Outcome::Fail,
            "SKIP" => Outcome::Skip,
            _ => continue,
        };
        report.results.push(TestResult {
            name: name.trim().to_string(),
            outcome,
        });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_runs_quote_and_place_their_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tp = Path::new("/t/bpf_fibneigh/test_progs");
        let plain = GuestRun::plain(tp, "fib_lookup", dir.path()).expect("plain");
        assert!(plain
            .script
            .starts_with("cd '/t/bpf_fibneigh' && ./test_progs -t 'fib_lookup' > '"));
        assert_eq!(plain.output, dir.path().join("test_progs.out"));
        let json = GuestRun::json(tp, "a,b'c", dir.path(), "pristine").expect("json");
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
        let r = json.json_results().expect("parsed").expect("some");
        assert_eq!(
            r.iter()
                .map(|r| (r.name.as_str(), r.failed))
                .collect::<Vec<_>>(),
            [("fib_lookup", false), ("xdp_link", true)]
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
            r.failed = false;
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
            .failed = true;
        let bad: Vec<String> = diff(&pristine, &patched)
            .into_iter()
            .filter(DiffRow::regressed)
            .map(|r| r.name)
            .collect();
        assert_eq!(bad, ["tc_redirect", "tc_redirect/tc_neigh_fib"]);
        // Listed tests that did not fail passed; unreported subtests of a
        // test that ran passed.
        let r = results(
            "fib_lookup\nfib_lookup_neigh\n",
            vec![JsonResult {
                name: "fib_lookup_neigh".into(),
                failed: true,
            }],
        );
        assert_eq!(r.len(), 2);
        assert!(!r.iter().find(|x| x.name == "fib_lookup").unwrap().failed);
        let other = results(
            "fib_lookup_neigh\n",
            vec![JsonResult {
                name: "fib_lookup_neigh/flags".into(),
                failed: true,
            }],
        );
        let rows = diff(&r, &other);
        let flags = rows
            .iter()
            .find(|x| x.name == "fib_lookup_neigh/flags")
            .unwrap();
        assert_eq!((flags.pristine, flags.patched), (Some(true), Some(false)));
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
