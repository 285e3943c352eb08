//! `--tree PATH`: a kernel repository the user has is built in a worktree
//! in the cache, and the repository ends as it started.
//!
//! The "user's repository" is a clone of the pipeline's pristine tree (the
//! git repository `vm build` keeps in the cache, tag `fibneigh-base`) with
//! work in progress on a branch. The build uses a private cache directory
//! whose `ccache` is the real cache's, so it is a real build (worktree,
//! `git am`, tinyconfig + fragment, make) every time, with the compiler
//! calls served by ccache; everything is removed afterwards. Needs root,
//! the kernel toolchain, QEMU and virtme-ng, so it is ignored by a plain
//! `cargo test`.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{fibneigh, run, stderr};

fn git(dir: &Path, args: &[&str]) -> String {
    common::stdout_of(Command::new("git").arg("-C").arg(dir).args(args))
}

/// What a build must leave as it was in the user's repository.
fn state(repo: &Path) -> [String; 5] {
    [
        git(repo, &["rev-parse", "HEAD"]),
        git(repo, &["symbolic-ref", "HEAD"]),
        git(repo, &["for-each-ref"]),
        git(repo, &["status", "--porcelain"]),
        git(repo, &["stash", "list"]),
    ]
}

/// How long each part of the tier took, on stderr (CI runs the tier with
/// `--nocapture`, so its log says where the step's time went).
fn took(what: &str, since: std::time::Instant) {
    eprintln!("tree tier: {what}: {:.1} s", since.elapsed().as_secs_f64());
}

/// The phase lines (`[worktree] done in 7.2s`, ...) of a `vm build`'s stderr.
fn phases(err: &str) -> String {
    err.lines()
        .filter(|l| l.starts_with('[') && l.contains(" done in "))
        .collect::<Vec<_>>()
        .join("; ")
}

fn worktrees(repo: &Path) -> Vec<String> {
    git(repo, &["worktree", "list", "--porcelain"])
        .lines()
        .filter_map(|l| l.strip_prefix("worktree ").map(str::to_string))
        .collect()
}

#[test]
#[ignore = "tree tier: clones the pristine kernel tree, builds it from a worktree (ccache), boots it"]
fn tree_build_leaves_the_users_repository_unchanged_and_is_cached() {
    // The pipeline's own kernel, for its pristine tree and its cache.
    let started = std::time::Instant::now();
    let out = run(fibneigh().args(["vm", "build", "--json", "-"]));
    took("vm build (the pipeline's own kernel)", started);
    assert!(out.status.success(), "vm build failed: {}", stderr(&out));
    let image: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let pristine = PathBuf::from(image["tree"].as_str().expect("tree"));
    let bzimage = PathBuf::from(image["bzimage"].as_str().expect("bzimage"));
    let real_cache = bzimage
        .ancestors()
        .nth(3)
        .expect("<cache>/kernels/<key>/bzImage");
    assert!(
        !git(&pristine, &["tag", "--list", "fibneigh-base"])
            .trim()
            .is_empty(),
        "{} has no fibneigh-base tag",
        pristine.display()
    );

    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("linux");
    let (src, dst) = (pristine.to_string_lossy(), repo.to_string_lossy());
    git(tmp.path(), &["clone", "-q", "--no-checkout", &src, &dst]);
    git(&repo, &["checkout", "-q", "-b", "work", "fibneigh-base"]);
    // Work in progress: an uncommitted edit and an untracked file.
    std::fs::write(repo.join("README"), "my edit, not committed\n").expect("edit");
    std::fs::write(repo.join("notes.txt"), "untracked\n").expect("untracked");
    let before = state(&repo);
    let listed = worktrees(&repo);
    took("the user's repository (clone, checkout)", started);

    let cache = tmp.path().join("cache");
    std::fs::create_dir_all(&cache).expect("cache");
    std::os::unix::fs::symlink(real_cache.join("ccache"), cache.join("ccache")).expect("ccache");
    let build = || {
        let mut c = fibneigh();
        c.args(["vm", "build", "--json", "-", "--tree"])
            .arg(&repo)
            .arg("--cache-dir")
            .arg(&cache);
        c
    };

    let started = std::time::Instant::now();
    let out = run(&mut build());
    assert!(
        out.status.success(),
        "vm build --tree failed: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    took(
        "vm build --tree (empty private cache, shared ccache)",
        started,
    );
    eprintln!("tree tier: its phases: {}", phases(&err));
    assert!(err.contains("has uncommitted changes"), "{err}");
    assert!(
        err.contains("[worktree]") && err.contains("[patch]"),
        "{err}"
    );
    let built: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let tree_id = git(&repo, &["rev-parse", "HEAD^{tree}"]);
    assert_eq!(
        built["key"]["base"].as_str(),
        Some(format!("git-{}", tree_id.trim()).as_str()),
        "keyed by HEAD's tree"
    );
    assert_eq!(built["key"]["series"], image["key"]["series"]);
    assert_eq!(built["upstream"], image["upstream"]);
    let worktree = PathBuf::from(built["tree"].as_str().expect("tree"));
    assert!(
        worktree.starts_with(cache.canonicalize().expect("cache").join("worktrees")),
        "{}",
        worktree.display()
    );
    // Whatever state the pipeline's own tree is in (a failed series test
    // leaves it at the base), the worktree holds HEAD plus every patch.
    let series = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel-patches/series"),
    )
    .expect("kernel-patches/series");
    let patches = series
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(
        git(&worktree, &["rev-list", "--count", "fibneigh-base..HEAD"]).trim(),
        patches.to_string(),
        "the worktree holds HEAD plus the series"
    );

    assert_eq!(state(&repo), before, "the user's repository changed");
    let mut with_ours = listed.clone();
    with_ours.push(worktree.to_string_lossy().into_owned());
    assert_eq!(worktrees(&repo), with_ours);

    // Nothing changed: a cache hit, no worktree, patch or build step.
    let started = std::time::Instant::now();
    let out = run(&mut build());
    assert!(out.status.success());
    took("vm build --tree again (a cache hit)", started);
    let err = stderr(&out);
    assert!(err.contains("[build] cached"), "{err}");
    for step in ["[worktree]", "[patch]", "[configure]", "[build] bzImage"] {
        assert!(!err.contains(step), "{step} ran again: {err}");
    }
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")["bzimage"],
        built["bzimage"]
    );

    // The user commits an edit to a file the series also patches: the
    // same worktree follows the new HEAD and only what changed is rebuilt.
    let filter = repo.join("net/core/filter.c");
    let mut text = std::fs::read_to_string(&filter).expect("filter.c");
    text.push_str("/* fibneigh tree tier: a user's commit */\n");
    std::fs::write(&filter, text).expect("edit filter.c");
    git(
        &repo,
        &[
            "-c",
            "user.name=tree tier",
            "-c",
            "user.email=tree-tier@localhost",
            "commit",
            "-q",
            "-m",
            "net: a comment",
            "--",
            "net/core/filter.c",
        ],
    );
    let before = state(&repo);
    let started = std::time::Instant::now();
    let out = run(&mut build());
    assert!(out.status.success(), "rebuild failed: {}", stderr(&out));
    took(
        "vm build --tree after a commit to net/core/filter.c",
        started,
    );
    eprintln!("tree tier: its phases: {}", phases(&stderr(&out)));
    let rebuilt: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(rebuilt["tree"], built["tree"], "the same worktree");
    assert_ne!(rebuilt["key"], built["key"]);
    let log =
        PathBuf::from(rebuilt["bzimage"].as_str().expect("bzimage")).with_file_name("build.log");
    let log = std::fs::read_to_string(&log).expect("build.log");
    let compiled: Vec<&str> = log.lines().filter(|l| l.starts_with("  CC ")).collect();
    eprintln!("recompiled {} C file(s): {compiled:?}", compiled.len());
    assert!(
        compiled.iter().any(|l| l.ends_with("net/core/filter.o")),
        "{compiled:?}"
    );
    assert!(
        compiled.len() < 100,
        "an incremental build, not a full one: {compiled:?}"
    );
    assert_eq!(state(&repo), before, "the user's repository changed");

    // vm run takes --tree too: the guest runs the series' kernel.
    let started = std::time::Instant::now();
    let out = run(fibneigh()
        .args(["vm", "run", "--accel", "tcg", "--timeout", "900", "--tree"])
        .arg(&repo)
        .arg("--cache-dir")
        .arg(&cache)
        .args([
            "--",
            env!("CARGO_BIN_EXE_fibneigh"),
            "probe",
            "--expect-patched",
        ]));
    assert!(
        out.status.success(),
        "probe in the --tree kernel: {}",
        stderr(&out)
    );
    took("vm run --tree (boot, probe)", started);

    // --clean removes the worktree and its entry; the repository is as
    // it was, with no branch or worktree of ours.
    let started = std::time::Instant::now();
    let out = run(fibneigh()
        .args(["vm", "build", "--clean", "--tree"])
        .arg(&repo)
        .arg("--cache-dir")
        .arg(&cache));
    assert!(out.status.success(), "{}", stderr(&out));
    took("vm build --clean --tree", started);
    assert!(stderr(&out).contains("removed the worktree"));
    assert!(!worktree.exists());
    assert_eq!(worktrees(&repo), listed);
    let started = std::time::Instant::now();
    assert_eq!(state(&repo), before);
    took("the repository's state read again", started);
    let started = std::time::Instant::now();
    drop(tmp);
    took("the temporary directory removed", started);
}

#[test]
#[ignore = "tree tier: needs git"]
fn tree_that_is_not_a_kernel_repository_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = run(fibneigh()
        .args(["vm", "build", "--tree"])
        .arg(tmp.path())
        .arg("--cache-dir")
        .arg(tmp.path().join("cache")));
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a git work tree"),
        "{}",
        stderr(&out)
    );

    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = run(fibneigh()
        .args(["vm", "build", "--tree"])
        .arg(&repo)
        .arg("--cache-dir")
        .arg(tmp.path().join("cache")));
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("not a kernel tree"),
        "{}",
        stderr(&out)
    );
    assert!(!tmp
        .path()
        .join("cache/worktrees")
        .read_dir()
        .is_ok_and(|mut d| d.next().is_some()));
}
