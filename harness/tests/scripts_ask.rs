//! What the scripts ask the binary instead of working it out themselves:
//! `vm tree --print-path` (the unpacked tree, read only) and `vm series`
//! (a base's series, its directory, prefix and branch, and whether an
//! identity may post it), and `scripts/series.sh` finding its tree and
//! checking its author through them. A private cache in a
//! temporary directory stands for the real one; no kernel is needed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fibneigh, run, stderr};
use fibneigh_vm::base::KernelBase;
use fibneigh_vm::Series;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository")
}

/// Make `cache` hold a finished tree for 7.3 as the pipeline leaves it: a
/// git repository tagged `fibneigh-base` with its base marker.
fn finished_tree(cache: &Path) -> PathBuf {
    let id = "linux-source-7.3_7.3.4-1~bpo13+1";
    let tree = cache.join("trees").join(id).join("linux");
    std::fs::create_dir_all(tree.join("net/core")).expect("mkdir");
    std::fs::write(tree.join("net/core/filter.c"), "int filter;\n").expect("write");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(&tree)
            .args(["-c", "user.name=t", "-c", "user.email=t@t.test"])
            .args(args)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    };
    git(&["init", "-q", "-b", "fibneigh"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "base: test"]);
    git(&["tag", "fibneigh-base"]);
    std::fs::write(
        tree.join(".git/fibneigh-base.json"),
        format!(r#"{{"id":"{id}","origin":"test","upstream":"7.3.4"}}"#),
    )
    .expect("marker");
    tree
}

/// Every path under `dir`, sorted: what a read-only command must leave.
fn listing(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            out.push(e.path());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

#[test]
fn vm_tree_print_path_names_the_unpacked_tree_and_changes_nothing() {
    let cache = tempfile::tempdir().expect("tempdir");
    let out = run(fibneigh()
        .args(["vm", "tree", "--base", "7.3", "--print-path"])
        .env("FIBNEIGH_CACHE", cache.path()));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("no linux-source-7.3 tree"), "{err}");
    assert!(err.contains("fibneigh vm tree --base 7.3"), "{err}");
    assert!(listing(cache.path()).is_empty(), "nothing is made");

    let tree = finished_tree(cache.path());
    let before = listing(cache.path());
    let out = run(fibneigh()
        .args(["vm", "tree", "--base", "7.3", "--print-path"])
        .env("FIBNEIGH_CACHE", cache.path()));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        tree.display().to_string()
    );
    assert_eq!(listing(cache.path()), before, "nothing is made or removed");

    // Another base's tree is not this one's.
    let out = run(fibneigh()
        .args(["vm", "tree", "--base", "6.12", "--print-path"])
        .env("FIBNEIGH_CACHE", cache.path()));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no linux-source-6.12 tree"));
}

#[test]
fn vm_series_prints_each_bases_series_as_the_pipeline_reads_it() {
    for &base in KernelBase::ALL {
        let dir = base.patches(&repo());
        let ask = |what: &str| {
            let out = run(fibneigh().current_dir(repo()).args([
                "vm",
                "series",
                "--base",
                base.name(),
                "--print",
                what,
            ]));
            assert!(out.status.success(), "{base} --print {what}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let want: Vec<String> = Series::parse(&dir)
            .expect("the committed series parses")
            .patches
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert!(!want.is_empty(), "{base}: an empty series");
        assert_eq!(ask("patches").lines().collect::<Vec<_>>(), want);
        assert_eq!(ask("dir").trim(), dir.display().to_string());
        assert_eq!(ask("subject-prefix").trim(), base.subject_prefix());
        assert_eq!(ask("branch").trim(), base.branch());
    }
    // A series naming a patch that is not there is an error naming it.
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::write(d.path().join("series"), "# one\n0001-gone.patch\n").expect("write");
    let out = run(fibneigh().args(["vm", "series", "--patches"]).arg(d.path()));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("0001-gone.patch"));
}

#[test]
fn series_sh_takes_its_tree_and_base_from_the_binary() {
    let series_sh = repo().join("scripts/series.sh");
    let cache = tempfile::tempdir().expect("tempdir");
    let script = |base: &str| {
        let mut c = Command::new(&series_sh);
        c.env("FIBNEIGH", env!("CARGO_BIN_EXE_fibneigh"))
            .env("FIBNEIGH_CACHE", cache.path())
            .env("BASE", base);
        c
    };
    // No tree: the binary's error, naming the base, before anything runs.
    let out = run(&mut script("7.3"));
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("no linux-source-7.3 tree"));
    // An unknown base: refused by the binary, naming the bases.
    let out = run(&mut script("6.1"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("expected one of: 7.3, 6.12"));
    // With the tree there, no subcommand: the usage, exit 2.
    finished_tree(cache.path());
    let before = listing(cache.path());
    let out = run(&mut script("7.3"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("scripts/series.sh import"));
    assert_eq!(listing(cache.path()), before);
    // `post` as a placeholder or nameless identity: refused by the binary
    // before anything is made.
    for (name, email, why) in [
        ("Nobody", "nobody@localhost", "looks like a placeholder"),
        (
            "fibneigh build",
            "fibneigh-build@localhost",
            "looks like a placeholder",
        ),
        ("ada@poster.test", "ada@poster.test", "has no name"),
    ] {
        let out = run(script("7.3")
            .arg("post")
            .arg(cache.path().join("out"))
            .env("GIT_AUTHOR_NAME", name)
            .env("GIT_AUTHOR_EMAIL", email));
        assert!(!out.status.success(), "{email}");
        assert!(stderr(&out).contains(why), "{email}");
        assert_eq!(listing(cache.path()), before);
    }
    // `post`'s arguments, refused by name before anything is made or
    // removed: an OUTDIR holding a file post did not write keeps it.
    let mine = tempfile::tempdir().expect("tempdir");
    std::fs::write(mine.path().join("notes.txt"), "mine\n").expect("write");
    std::fs::write(mine.path().join("v3-0001-old.patch"), "old\n").expect("write");
    let outdir = mine.path().display().to_string();
    let mine_before = listing(mine.path());
    for (args, why) in [
        (vec![outdir.as_str()], "holds files post did not write"),
        (vec!["-v"], "-v needs a value"),
        (
            vec!["-v", "three"],
            "-v takes a version number (1-99), not 'three'",
        ),
        (vec!["--tree"], "--tree needs a value"),
        (vec!["--bogus"], "unknown option --bogus"),
        (vec!["a", "b"], "one OUTDIR at most"),
    ] {
        let out = run(script("7.3")
            .arg("post")
            .args(&args)
            .env("GIT_AUTHOR_NAME", "Ada Poster")
            .env("GIT_AUTHOR_EMAIL", "ada@poster.test"));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
        assert_eq!(listing(cache.path()), before, "{args:?}");
        assert_eq!(listing(mine.path()), mine_before, "{args:?}");
    }
    // `import` into a worktree of a tree unpacked again since (its .git
    // points at a worktree record that is gone): refused by name, and the
    // directory, which may hold someone's work, is left as it was.
    let stale = mine.path().join("linux-dev");
    std::fs::create_dir(&stale).expect("mkdir");
    std::fs::write(
        stale.join(".git"),
        format!(
            "gitdir: {}\n",
            cache.path().join("gone/.git/worktrees/x").display()
        ),
    )
    .expect("write");
    std::fs::write(stale.join("work.c"), "int mine;\n").expect("write");
    let stale_before = listing(&stale);
    // `import` into `wt`, which must be refused by name (exit 1).
    let import_refused = |wt: &Path| {
        let out = run(script("7.3")
            .args(["import", "neigh-state"])
            .arg(wt)
            .env("GIT_AUTHOR_NAME", "Ada Poster")
            .env("GIT_AUTHOR_EMAIL", "ada@poster.test"));
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let want = format!("{} is not a git worktree of", wt.display());
        assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    };
    import_refused(&stale);
    assert_eq!(listing(&stale), stale_before);
    assert_eq!(listing(cache.path()), before);
    // Another repository, and a directory inside it: refused the same
    // way, and that repository's branch is not reset.
    let other = mine.path().join("other");
    std::fs::create_dir_all(other.join("sub")).expect("mkdir");
    std::fs::write(other.join("sub/file"), "x\n").expect("write");
    let git_other = |args: &[&str]| {
        let out = run(Command::new("git")
            .current_dir(&other)
            .args(["-c", "user.name=t", "-c", "user.email=t@t.test"])
            .args(args));
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    git_other(&["init", "-q", "-b", "theirs"]);
    git_other(&["add", "-A"]);
    git_other(&["commit", "-q", "-m", "theirs"]);
    let head = git_other(&["rev-parse", "HEAD", "--abbrev-ref", "HEAD"]);
    for wt in [other.join("sub"), other.clone()] {
        import_refused(&wt);
        assert_eq!(
            git_other(&["rev-parse", "HEAD", "--abbrev-ref", "HEAD"]),
            head
        );
    }
    let file = mine.path().join("notes.txt");
    let out = run(script("7.3")
        .arg("post")
        .arg(&file)
        .env("GIT_AUTHOR_NAME", "Ada Poster")
        .env("GIT_AUTHOR_EMAIL", "ada@poster.test"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a directory"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&file).expect("kept"), "mine\n");
}

#[test]
fn uml_bench_sh_refuses_a_bad_profile_or_series_before_building_anything() {
    let uml_bench = repo().join("scripts/uml-bench.sh");
    let cache = tempfile::tempdir().expect("tempdir");
    let before = listing(cache.path());
    let no_series = cache.path().join("no-series");
    std::fs::create_dir(&no_series).expect("mkdir");
    let missing = no_series.display().to_string();
    for (args, why) in [
        (
            vec!["--profile", "O3"],
            "--profile must be tiny or o2, not 'O3'",
        ),
        (vec!["--profile"], "--profile must be tiny or o2, not ''"),
        (
            vec!["--patches", missing.as_str()],
            "--patches needs a directory with a series file",
        ),
    ] {
        let out = run(Command::new(&uml_bench)
            .args(&args)
            .env("FIBNEIGH_CACHE", cache.path()));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
    }
    std::fs::remove_dir(&no_series).expect("rmdir");
    assert_eq!(listing(cache.path()), before);
}
