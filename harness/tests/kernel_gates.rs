//! Quality gates for the kernel series, for each base the project carries
//! a series for (bpf-next on 7.3, the LTS backport on 6.12), run against
//! the tree `fibneigh vm tree` prepares (series applied with `git am` on
//! the pristine base). They need those trees, so they are ignored by a
//! plain `cargo test`; `scripts/test.sh` runs them with `--ignored` after
//! the kernel builds.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

const CHECKPATCH_IGNORE: &str = "COMMIT_LOG_LONG_LINE,MACRO_ARG_REUSE,ALLOC_SIZEOF_STRUCT,\
NO_AUTHOR_SIGN_OFF,GIT_COMMIT_ID,CAMELCASE,FILE_PATH_CHANGES,BAD_REPORTED_BY_LINK";

/// The bases and their patch directories.
const BASES: [(&str, &str); 2] = [("7.3", "kernel-patches"), ("6.12", "kernel-patches/6.12")];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The pipeline's tree for `base` with its committed series applied (`vm
/// tree` re-applies it if another series was applied since).
fn tree(base: &str) -> PathBuf {
    let out = common::stdout_of(common::fibneigh().args(["vm", "tree", "--base", base]));
    PathBuf::from(out.trim())
}

/// `git -C dir args`, which must succeed; its standard output.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {out:?}",
        dir.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `series.sh post` must leave as it was in a repository: its own
/// config, its refs (branches, tags, notes) and its worktrees.
fn repo_state(dir: &Path) -> String {
    [
        &["config", "--local", "--list"][..],
        &["for-each-ref", "--format=%(refname) %(objectname)"][..],
        &["worktree", "list", "--porcelain"][..],
    ]
    .iter()
    .map(|args| git(dir, args))
    .collect()
}

/// Fails naming the lines `after` gained and lost against `before`.
fn assert_unchanged(before: &str, after: &str, what: &str) {
    let b: std::collections::BTreeSet<&str> = before.lines().collect();
    let a: std::collections::BTreeSet<&str> = after.lines().collect();
    let gained: Vec<&&str> = a.difference(&b).collect();
    let lost: Vec<&&str> = b.difference(&a).collect();
    assert!(
        gained.is_empty() && lost.is_empty(),
        "{what}: gained {gained:?}, lost {lost:?}"
    );
}

fn series(patches: &str) -> Vec<PathBuf> {
    let dir = repo().join(patches);
    std::fs::read_to_string(dir.join("series"))
        .expect("series")
        .lines()
        .filter_map(|l| {
            l.split('#')
                .next()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| dir.join(l))
        })
        .collect()
}

fn sh(dir: &Path, cmd: &str) -> (bool, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .output()
        .expect("sh runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
#[ignore = "kernel gates: need the kernel trees from `fibneigh vm tree`"]
fn gate1_series_applies_with_git_am_on_the_pristine_base() {
    for (base, patches) in BASES {
        let tree = tree(base);
        let (ok, count) = sh(&tree, "git rev-list --count fibneigh-base..HEAD");
        assert!(ok, "{count}");
        let n = series(patches).len();
        assert!(n > 0, "{base}: the series is empty");
        assert_eq!(
            count.trim().parse::<usize>().unwrap(),
            n,
            "{base}: one commit per patch"
        );
        let (ok, status) = sh(&tree, "git status --porcelain --untracked-files=no");
        assert!(
            ok && status.trim().is_empty(),
            "{base}: tree is clean after git am: {status}"
        );
    }
}

#[test]
#[ignore = "kernel gates: need the kernel trees from `fibneigh vm tree`"]
fn gate2_checkpatch_reports_only_the_missing_sign_off() {
    for (base, patches) in BASES {
        let tree = tree(base);
        for patch in series(patches) {
            let cmd = format!(
                "scripts/checkpatch.pl --strict --max-line-length=80 --ignore={CHECKPATCH_IGNORE} '{}'",
                patch.display()
            );
            let (_, text) = sh(&tree, &cmd);
            let problems: Vec<&str> = text
                .lines()
                .filter(|l| {
                    l.starts_with("ERROR:") || l.starts_with("WARNING:") || l.starts_with("CHECK:")
                })
                .collect();
            assert_eq!(
                problems,
                ["ERROR: Missing Signed-off-by: line(s)"],
                "{}:\n{text}",
                patch.display()
            );
        }
    }
}

/// Files of a kernel tree set aside as `<file>.gate` while the pristine
/// ones are in place; put back by [`Saved::restore`], or on drop (a panic
/// included).
struct Saved {
    tree: PathBuf,
    files: Vec<String>,
    restored: bool,
}

impl Saved {
    fn new(tree: &Path, files: &[&str]) -> Saved {
        Saved {
            tree: tree.to_path_buf(),
            files: files.iter().map(|f| f.to_string()).collect(),
            restored: false,
        }
    }

    /// Move every `<file>.gate` that exists back over its file (a save
    /// that failed half-way leaves some without one), keeping its mtime.
    fn restore(&mut self) -> Result<(), String> {
        self.restored = true;
        let mut failed = Vec::new();
        for f in &self.files {
            let (file, gate) = (self.tree.join(f), self.tree.join(format!("{f}.gate")));
            if gate.exists() {
                if let Err(e) = std::fs::rename(&gate, &file) {
                    failed.push(format!("{}: {e}", gate.display()));
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        if self.restored {
            return;
        }
        // No panic here: this may run while the test already panics.
        if let Err(e) = self.restore() {
            eprintln!("failed to restore the saved files: {e}");
        }
    }
}

#[test]
#[ignore = "kernel gates: need the kernel trees from `fibneigh vm tree`"]
fn gate3_w1_build_of_filter_adds_no_warning() {
    for (base, _) in BASES {
        let tree = tree(base);
        let files = ["net/core/filter.c", "include/uapi/linux/bpf.h"];
        // Both builds below must see different code, or the gate compares
        // the base with itself.
        let (same, _) = sh(&tree, "git diff --quiet fibneigh-base -- net/core/filter.c");
        assert!(
            !same,
            "{base}: the tree's filter.c is the pristine one: is the series applied?"
        );
        // Build filter.o with W=1 from the pristine files, then from the
        // patched ones; keep every file's mtime so the next kernel build
        // does not recompile what includes bpf.h.
        let warnings = |label: &str| {
            let (ok, text) = sh(
                &tree,
                "touch net/core/filter.c && make -s W=1 net/core/filter.o 2>&1",
            );
            assert!(ok, "{base}: {label} W=1 build of filter.o failed:\n{text}");
            let mut w: Vec<String> = text
                .lines()
                .filter(|l| l.contains("warning:"))
                .map(|l| {
                    l.split_once(": warning:")
                        .map_or(l, |(_, m)| m)
                        .trim()
                        .to_string()
                })
                .collect();
            w.sort();
            w
        };
        // Restored when the guard drops too, so that a failed assertion
        // on the pristine build never leaves the tree half-reverted.
        let mut saved = Saved::new(&tree, &files);
        let save = files.map(|f| format!("cp -p {f} {f}.gate && git show fibneigh-base:{f} > {f}"));
        let (ok, text) = sh(&tree, &save.join(" && "));
        assert!(ok, "{text}");
        let pristine = warnings("pristine");
        if let Err(e) = saved.restore() {
            panic!("{base}: failed to restore the patched files: {e}");
        }
        let patched = warnings("patched");
        let new: Vec<&String> = patched.iter().filter(|w| !pristine.contains(w)).collect();
        assert!(new.is_empty(), "{base}: new W=1 warnings: {new:#?}");
    }
}

#[test]
#[ignore = "kernel gates: need the kernel trees from `fibneigh vm tree`"]
fn gate4_bpf_doc_parses_and_uapi_copies_match() {
    for (base, _) in BASES {
        let tree = tree(base);
        let (ok, text) = sh(
            &tree,
            "python3 scripts/bpf_doc.py --filename include/uapi/linux/bpf.h",
        );
        assert!(ok, "{base}: bpf_doc.py: {text}");
        assert!(
            text.contains("BPF_FIB_LOOKUP_NEIGH_STATE")
                && text.contains("BPF_FIB_LOOKUP_NEIGH_REFRESH"),
            "{base}: the helper doc does not describe the new flags"
        );
        // The man page the docs are built into: rst2man must take the RST
        // bpf_doc.py makes of the helper docs without a warning.
        let rst = tempfile::NamedTempFile::new().expect("a temporary file");
        let (ok, text) = sh(
            &tree,
            &format!(
                "python3 scripts/bpf_doc.py --filename include/uapi/linux/bpf.h > {rst} && \
                 rst2man --halt=warning {rst} > /dev/null",
                rst = rst.path().display()
            ),
        );
        assert!(ok, "{base}: rst2man on the helper docs: {text}");
        let (ok, text) = sh(
            &tree,
            "cmp include/uapi/linux/bpf.h tools/include/uapi/linux/bpf.h",
        );
        assert!(ok, "{base}: uAPI copies differ: {text}");
        // sizeof(struct bpf_fib_lookup) == 64 and no offset moved, compiled
        // against the patched header.
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("size.c");
        std::fs::write(
            &src,
            "#include <stddef.h>\n#include <linux/bpf.h>\n\
             _Static_assert(sizeof(struct bpf_fib_lookup) == 64, \"size\");\n\
             _Static_assert(offsetof(struct bpf_fib_lookup, sport) == 2, \"sport\");\n\
             _Static_assert(offsetof(struct bpf_fib_lookup, nud_state) == 2, \"nud_state\");\n\
             _Static_assert(sizeof(((struct bpf_fib_lookup *)0)->nud_state) == 1, \"a __u8\");\n\
             _Static_assert(offsetof(struct bpf_fib_lookup, dport) == 4, \"dport\");\n\
             _Static_assert(offsetof(struct bpf_fib_lookup, ifindex) == 8, \"ifindex\");\n\
             _Static_assert(offsetof(struct bpf_fib_lookup, dmac) == 58, \"dmac\");\n\
             int main(void) { return BPF_FIB_LOOKUP_NEIGH_STATE != 256 || BPF_FIB_LOOKUP_NEIGH_REFRESH != 512; }\n",
        )
        .unwrap();
        let bin = dir.path().join("size");
        let cmd = format!(
            "gcc -I tools/include/uapi -I /usr/include/x86_64-linux-gnu -o '{}' '{}' && '{}'",
            bin.display(),
            src.display(),
            bin.display()
        );
        let (ok, text) = sh(&tree, &cmd);
        assert!(ok, "{base}: layout check failed: {text}");
    }
}

/// Runs `scripts/series.sh post` for `base` with `args`, as `identity`
/// (name, email) from the environment or, with None, as the identity
/// git finds; it must succeed with checkpatch clean. Returns the posted
/// files, sorted, with their text.
fn post(
    base: &str,
    args: &[&std::ffi::OsStr],
    identity: Option<(&str, &str)>,
) -> Vec<(PathBuf, String)> {
    let mut cmd = Command::new(repo().join("scripts/series.sh"));
    cmd.arg("post")
        .args(args)
        .env("FIBNEIGH", env!("CARGO_BIN_EXE_fibneigh"))
        .env("BASE", base);
    for var in ["AUTHOR", "COMMITTER"] {
        match identity {
            Some((name, email)) => cmd
                .env(format!("GIT_{var}_NAME"), name)
                .env(format!("GIT_{var}_EMAIL"), email),
            None => cmd
                .env_remove(format!("GIT_{var}_NAME"))
                .env_remove(format!("GIT_{var}_EMAIL")),
        };
    }
    let status = cmd.output().expect("series.sh runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        status.status.success(),
        "{base}: series.sh post {args:?}:\n{log}"
    );
    assert!(
        log.contains("checkpatch --strict --codespell: clean"),
        "{log}"
    );
    let out = PathBuf::from(args.last().expect("an OUTDIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let patches = BASES.iter().find(|(b, _)| *b == base).expect("a base").1;
    assert_eq!(files.len(), series(patches).len() + 1, "{files:?}");
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            (f, text)
        })
        .collect()
}

#[test]
#[ignore = "kernel gates: need the kernel trees from `fibneigh vm tree`"]
fn gate5_the_committed_series_is_unsigned_and_post_makes_a_postable_one() {
    for (base, patches) in BASES {
        let pipeline = tree(base);
        let pipeline_before = repo_state(&pipeline);
        let dir = repo().join(patches);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("patch") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let header = text.split("\n\n").next().unwrap_or("");
            assert!(
                !header.lines().any(|l| l.starts_with("From: ")),
                "{}: the committed copy names an author",
                path.display()
            );
            assert!(
                !text.contains("Signed-off-by:"),
                "{}: the committed copy is signed",
                path.display()
            );
        }
        // What a user gets from `scripts/series.sh post` with their identity.
        let out = tempfile::tempdir().unwrap();
        let files = post(
            base,
            &["-v".as_ref(), "3".as_ref(), out.path().as_os_str()],
            Some(("Ada Poster", "ada@poster.test")),
        );
        // The identity, the throwaway branch and its notes were the
        // post's own: the tree's config, refs and worktrees are as they were.
        assert_unchanged(
            &pipeline_before,
            &repo_state(&pipeline),
            &format!("{base}: post changed the pipeline tree"),
        );
        for (i, (f, text)) in files.iter().enumerate() {
            assert!(
                text.contains("From: Ada Poster <ada@poster.test>"),
                "{}",
                f.display()
            );
            assert!(text.contains("\nTo: "), "{}: no To:", f.display());
            assert!(text.contains("\nCc: "), "{}: no Cc:", f.display());
            assert!(text.contains(" v3 "), "{}: not v3", f.display());
            if i == 0 {
                // Without --tree the base is the Debian import, and the
                // cover letter says so.
                assert!(text.contains("\nbase-commit: "), "{}", f.display());
                assert!(
                    text.contains("not a bpf-next commit"),
                    "{}: the base is not named",
                    f.display()
                );
            }
            if i > 0 {
                assert!(
                    text.contains("\nSigned-off-by: Ada Poster <ada@poster.test>\n"),
                    "{}: not signed off",
                    f.display()
                );
                assert!(
                    text.contains("\nNotes:\n    v2 -> v3"),
                    "{}: no changelog",
                    f.display()
                );
            }
        }
        // A placeholder identity is refused.
        let status = Command::new(repo().join("scripts/series.sh"))
            .args(["post"])
            .arg(out.path().join("refused"))
            .env("FIBNEIGH", env!("CARGO_BIN_EXE_fibneigh"))
            .env("BASE", base)
            .env("GIT_AUTHOR_NAME", "Nobody")
            .env("GIT_AUTHOR_EMAIL", "nobody@localhost")
            .output()
            .expect("series.sh runs");
        assert!(
            !status.status.success(),
            "{base}: a placeholder identity was accepted"
        );
        if base == "7.3" {
            post_onto_a_users_checkout(&pipeline);
        }
    }
}

/// `post --tree`: a shared clone of the pipeline's tree at its base
/// stands in for the user's bpf-next checkout, with an identity of its
/// own. The series is made on its HEAD, as that identity, and neither
/// repository keeps anything of the post.
fn post_onto_a_users_checkout(pipeline: &Path) {
    let user = tempfile::tempdir().unwrap();
    let checkout = user.path().join("bpf-next");
    let status = Command::new("git")
        .args(["clone", "-q", "--shared", "--no-checkout"])
        .args(["--branch", "fibneigh-base"])
        .arg(pipeline)
        .arg(&checkout)
        .status()
        .expect("git clone runs");
    assert!(status.success(), "git clone of {}", pipeline.display());
    git(&checkout, &["config", "user.name", "Tree Owner"]);
    git(&checkout, &["config", "user.email", "tree@owner.test"]);
    let head = git(&checkout, &["rev-parse", "HEAD"]).trim().to_string();
    let checkout_before = repo_state(&checkout);
    let pipeline_before = repo_state(pipeline);
    let out = user.path().join("out");
    let files = post(
        "7.3",
        &["--tree".as_ref(), checkout.as_os_str(), out.as_os_str()],
        None,
    );
    for (i, (f, text)) in files.iter().enumerate() {
        assert!(
            text.contains("From: Tree Owner <tree@owner.test>"),
            "{}: not the checkout's identity",
            f.display()
        );
        if i == 0 {
            assert!(
                text.contains(&format!("\nbase-commit: {head}\n")),
                "{}: base-commit is not the checkout's HEAD",
                f.display()
            );
            assert!(!text.contains("not a bpf-next commit"), "{}", f.display());
        } else {
            assert!(
                text.contains("\nSigned-off-by: Tree Owner <tree@owner.test>\n"),
                "{}: not signed off by the checkout's identity",
                f.display()
            );
        }
    }
    assert_unchanged(
        &checkout_before,
        &repo_state(&checkout),
        "post --tree changed the user's checkout",
    );
    assert_unchanged(
        &pipeline_before,
        &repo_state(pipeline),
        "post --tree changed the pipeline tree",
    );
}

#[test]
#[ignore = "kernel gates: need the kernel trees from `fibneigh vm tree`"]
fn gate6_filter_builds_on_arm_oabi_and_i386_base_and_series() {
    // struct bpf_fib_lookup's layout must hold where unions and structs are
    // padded differently: ARM OABI (footbridge_defconfig) pads them to 4
    // bytes unless packed, and the kernel's static_asserts on the size and
    // on dport's offset stop filter.o. scripts/abi-gate.sh builds filter.o
    // at the base and with the series, on both ABIs.
    for (base, _) in BASES {
        let (ok, text) = sh(
            &repo(),
            &format!(
                "FIBNEIGH={} scripts/abi-gate.sh {base} 2>&1",
                env!("CARGO_BIN_EXE_fibneigh")
            ),
        );
        eprintln!("{text}");
        assert!(ok, "{base}: the ABI gate failed:\n{text}");
        assert_eq!(
            text.matches("filter.o builds at base and at").count(),
            2,
            "{base}: both ABIs checked:\n{text}"
        );
    }
}
