//! Records the commit the binary is built from (`git describe --always
//! --dirty --abbrev=12`, "unknown" outside a git checkout), which every
//! JSON report carries: a report says which code made it, not which commit
//! the checkout had moved on to when it ran.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    let commit = git(&["describe", "--always", "--dirty", "--abbrev=12"])
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FIBNEIGH_COMMIT={commit}");
    // Describe again when HEAD moves or the index changes (a commit, a
    // checkout, an edit staged or not: `--dirty` compares the work tree
    // with the index, which git refreshes on status and commit).
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let dir = PathBuf::from(dir);
        for f in ["HEAD", "index"] {
            println!("cargo:rerun-if-changed={}", dir.join(f).display());
        }
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"])
                .map(PathBuf::from)
                .unwrap_or(dir);
            println!("cargo:rerun-if-changed={}", common.join(head_ref).display());
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
