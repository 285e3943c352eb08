//! Building `test_progs`: the suites (which tests, which programs), the
//! pruned copy of the selftests directory, and `make`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{io, Error, Result};

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

/// Make `dst` a copy of directory `src` with `rsync -a --delete` (with
/// `rsync_args`, e.g. excludes): only what changed is copied, and files
/// gone from `src` are removed from `dst`.
pub(crate) fn mirror(src: &Path, dst: &Path, rsync_args: &[&str]) -> std::io::Result<()> {
    let status = Command::new("rsync")
        .args(["-a", "--delete"])
        .args(rsync_args)
        .arg(format!("{}/", src.display()))
        .arg(dst)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("rsync exited with {status}")))
    }
}

/// Make the pruned copy of the selftests (again, if the originals changed).
pub fn prune(tree: &Path, suite: &Suite) -> Result<PathBuf> {
    let src = tree.join("tools/testing/selftests/bpf");
    let dst = tree.join(PRUNED_DIR);
    mirror(
        &src,
        &dst,
        &["--exclude=/prog_tests/*.c", "--exclude=/progs/*.c"],
    )
    .map_err(|source| Error::Io {
        path: dst.clone(),
        source,
    })?;
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
