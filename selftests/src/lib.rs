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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io<T>(r: std::io::Result<T>, path: &Path) -> Result<T> {
    r.map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The tests the pruned copy keeps.
pub const KEEP: &[&str] = &["fib_lookup.c"];

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
pub fn prune(tree: &Path) -> Result<PathBuf> {
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
    for dir in ["prog_tests", "progs"] {
        for keep in KEEP {
            let from = src.join(dir).join(keep);
            let to = dst.join(dir).join(keep);
            // Copy only when changed, so make sees no spurious update.
            if fs::read(&from).ok() != fs::read(&to).ok() {
                io(fs::copy(&from, &to), &from)?;
            }
        }
    }
    Ok(dst)
}

/// Build `test_progs` in the pruned copy; returns its path.
pub fn build(tree: &Path, vmlinux: &Path, jobs: usize, log: &Path) -> Result<PathBuf> {
    let dir = prune(tree)?;
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
    if !skipped.is_empty() {
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
    Ok(dir.join("test_progs"))
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
    fn make_vars_use_the_llvm_dir_and_empty_the_skeleton_lists() {
        let v = make_vars("/llvm/bin", Path::new("/k/vmlinux"));
        assert!(v.contains(&"CLANG=/llvm/bin/clang".to_string()));
        assert!(v.contains(&"LLD=lld".to_string()));
        assert!(v.contains(&"LSKELS=".to_string()));
        assert!(v.contains(&"VMLINUX_BTF=/k/vmlinux".to_string()));
    }
}
