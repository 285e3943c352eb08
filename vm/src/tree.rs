//! A kernel tree the user already has (`--tree PATH`, e.g. a bpf-next
//! clone): its HEAD is built in a git worktree in the cache, with the series
//! applied there. Nothing is copied and nothing is recommitted.
//!
//! The user's repository keeps its HEAD, branches, tags, index and working
//! tree. Everything happens in one linked worktree per repository,
//! `<cache>/worktrees/fibneigh-<id>`, checked out with a detached HEAD (no
//! ref is created) and reused by every later build of that repository, so
//! a new HEAD or an edited series rebuilds only what changed. What the
//! repository does get: that worktree's entry (`.git/worktrees/fibneigh-<id>`,
//! shown by `git worktree list`, holding its HEAD, index and the series
//! records) and the objects of the series' commits, unreachable once the
//! worktree is gone. [`remove_worktree`] (`fibneigh vm build --tree PATH
//! --clean`) removes both the worktree and its entry.
//!
//! Uncommitted changes are not built: HEAD is (the pipeline warns).

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::events::{Event, Phase, Reporter};
use crate::series::{self, Series};
use crate::source::{self, git, BaseInfo, FetchedSource, SourceSpec, SourceTree};
use crate::BuildRequest;

/// What must be at HEAD for a repository to be taken as a kernel tree.
const KERNEL_PATHS: [&str; 3] = ["Makefile", "Kconfig", "kernel/bpf"];

/// A user's git repository, as found at HEAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    /// The top of the work tree that was named.
    pub top: PathBuf,
    /// The repository's git common directory, canonical: its identity.
    pub common_dir: PathBuf,
    /// HEAD's commit.
    pub commit: String,
    /// HEAD's tree: the content that is built, and the cache key's base.
    pub tree: String,
    /// The branch HEAD is on; `None` when detached.
    pub branch: Option<String>,
    /// Tracked files differ from HEAD (they are not built).
    pub dirty: bool,
}

impl Repo {
    /// Look at `path`: a work tree of a git repository whose HEAD holds a
    /// kernel (`Makefile`, `Kconfig`, `kernel/bpf`). Reads only (no index
    /// refresh is written).
    pub fn open(path: &Path) -> Result<Repo> {
        let bad = |reason: String| Error::BadSource {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_dir() {
            return Err(bad("not a directory".into()));
        }
        let top = git(path, &["rev-parse", "--show-toplevel"])
            .map_err(|e| bad(format!("not a git work tree ({})", first_line(&e))))?;
        let top = PathBuf::from(top.trim());
        let common = git(
            &top,
            &["rev-parse", "--path-format=absolute", "--git-common-dir"],
        )?;
        let common_dir = Path::new(common.trim()).canonicalize().at(common.trim())?;
        let commit = git(&top, &["rev-parse", "--verify", "-q", "HEAD^{commit}"])
            .map_err(|_| bad("the repository has no commit (HEAD is unborn)".into()))?
            .trim()
            .to_string();
        let tree = git(&top, &["rev-parse", "HEAD^{tree}"])?.trim().to_string();
        let mut args = vec!["ls-tree", "--name-only", "HEAD", "--"];
        args.extend(KERNEL_PATHS);
        let present = git(&top, &args)?;
        let missing: Vec<&str> = KERNEL_PATHS
            .into_iter()
            .filter(|p| !present.lines().any(|l| l == *p))
            .collect();
        if !missing.is_empty() {
            return Err(bad(format!(
                "not a kernel tree: HEAD ({}) has no {}",
                short(&commit),
                missing.join(", ")
            )));
        }
        let branch = git(&top, &["symbolic-ref", "-q", "--short", "HEAD"])
            .ok()
            .map(|b| b.trim().to_string());
        let dirty = !git(
            &top,
            &[
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--ignore-submodules",
            ],
        )?
        .trim()
        .is_empty();
        Ok(Repo {
            top,
            common_dir,
            commit,
            tree,
            branch,
            dirty,
        })
    }

    /// The base this repository's HEAD is: keyed by its tree id (content),
    /// so another clone or another commit with the same content is the
    /// same base.
    pub fn info(&self) -> BaseInfo {
        BaseInfo {
            id: format!("git-{}", self.tree),
            origin: format!(
                "{} at {} ({})",
                self.top.display(),
                short(&self.commit),
                self.branch.as_deref().unwrap_or("detached HEAD")
            ),
            upstream: None,
        }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn first_line(e: &Error) -> String {
    match e {
        Error::Command { output, .. } => output.lines().next().unwrap_or("").trim().to_string(),
        other => other.to_string(),
    }
}

/// The worktree `repo` is built in: `<cache>/worktrees/fibneigh-<id>`, `id`
/// a digest of the repository's git directory. The parent is made and
/// canonicalised (git records worktrees by their real path).
pub fn worktree_dir(cache: &Path, repo: &Repo) -> Result<PathBuf> {
    let parent = cache.join("worktrees");
    fs::create_dir_all(&parent).at(&parent)?;
    let parent = parent.canonicalize().at(&parent)?;
    let digest = Sha256::digest(repo.common_dir.as_os_str().as_encoded_bytes());
    Ok(parent.join(format!("fibneigh-{}", &hex::encode(digest)[..12])))
}

/// Is `dir` a working worktree of `repo`?
fn belongs(dir: &Path, repo: &Repo) -> bool {
    if !dir.join(".git").is_file() {
        return false;
    }
    let common = git(
        dir,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )
    .ok()
    .and_then(|c| Path::new(c.trim()).canonicalize().ok());
    common.as_deref() == Some(repo.common_dir.as_path())
        && git(dir, &["rev-parse", "-q", "--verify", "HEAD"]).is_ok()
}

/// `repo`'s administrative entry (`<common>/worktrees/<name>`) for the
/// worktree at `dir`, whether or not `dir` still exists.
fn entry(repo: &Repo, dir: &Path) -> Option<PathBuf> {
    let want = dir.join(".git");
    fs::read_dir(repo.common_dir.join("worktrees"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|e| {
            fs::read_to_string(e.join("gitdir"))
                .is_ok_and(|g| Path::new(g.trim()) == want.as_path())
        })
}

/// The worktree for `repo`, made on first use (detached at HEAD) and
/// reused afterwards; one left broken by an interrupted run, or whose
/// entry the user pruned, is made again.
pub fn worktree(repo: &Repo, cache: &Path, reporter: &mut dyn Reporter) -> Result<PathBuf> {
    let dir = worktree_dir(cache, repo)?;
    if belongs(&dir, repo) {
        reporter.event(Event::Cached(
            Phase::Worktree,
            format!("worktree {}", dir.display()),
        ));
        return Ok(dir);
    }
    if let Some(stale) = entry(repo, &dir) {
        fs::remove_dir_all(&stale).at(&stale)?;
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).at(&dir)?;
    }
    reporter.event(Event::Start(
        Phase::Worktree,
        format!(
            "git worktree add --detach {} {} (in {})",
            dir.display(),
            short(&repo.commit),
            repo.top.display()
        ),
    ));
    let dir_arg = dir.to_string_lossy();
    git(
        &repo.top,
        &["worktree", "add", "-q", "--detach", &dir_arg, &repo.commit],
    )?;
    reporter.event(Event::End(Phase::Worktree));
    Ok(dir)
}

/// Remove `repo`'s worktree and its entry (`vm build --tree PATH --clean`);
/// the worktree's path if there was anything to remove. Built kernels stay
/// in the cache.
pub fn remove_worktree(repo: &Repo, cache: &Path) -> Result<Option<PathBuf>> {
    let dir = worktree_dir(cache, repo)?;
    let mut removed = false;
    if belongs(&dir, repo) {
        let dir_arg = dir.to_string_lossy();
        git(
            &repo.top,
            &["worktree", "remove", "--force", "--force", &dir_arg],
        )?;
        removed = true;
    }
    if let Some(stale) = entry(repo, &dir) {
        fs::remove_dir_all(&stale).at(&stale)?;
        removed = true;
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).at(&dir)?;
        removed = true;
    }
    Ok(removed.then_some(dir))
}

/// A located base: a source to unpack into the pipeline's tree, or a
/// user's repository built in a worktree.
pub(crate) enum Base {
    Fetched(FetchedSource),
    Repo(Repo),
}

/// Find the base `req` names; for a repository with uncommitted changes,
/// warn that HEAD is what is built.
pub(crate) fn locate(req: &BuildRequest, reporter: &mut dyn Reporter) -> Result<Base> {
    match &req.source {
        SourceSpec::Tree(path) => {
            let repo = Repo::open(path)?;
            if repo.dirty {
                reporter.event(Event::Warning(format!(
                    "{} has uncommitted changes; they are not built: building HEAD {} (commit them to build them)",
                    repo.top.display(),
                    short(&repo.commit)
                )));
            }
            Ok(Base::Repo(repo))
        }
        spec => Ok(Base::Fetched(source::fetch(
            spec,
            &req.cache_dir,
            req.refresh_source,
            reporter,
        )?)),
    }
}

impl Base {
    pub(crate) fn info(&self) -> BaseInfo {
        match self {
            Base::Fetched(f) => f.info.clone(),
            Base::Repo(r) => r.info(),
        }
    }

    /// The tree holding the base with `series` applied.
    /// Other architectures than x86-64 build in their own clone of the
    /// pipeline's tree ([`source::arch_tree`]); a user's repository builds
    /// x86-64 only.
    pub(crate) fn patched(
        &self,
        cache: &Path,
        arch: crate::kbuild::Arch,
        series: &Series,
        reporter: &mut dyn Reporter,
    ) -> Result<SourceTree> {
        match self {
            Base::Fetched(f) => {
                let tree = source::unpack(f, cache, reporter)?;
                let tree = source::arch_tree(&tree, arch, reporter)?;
                series::apply(&tree, series, reporter)?;
                Ok(tree)
            }
            Base::Repo(repo) if arch != crate::kbuild::Arch::X86_64 => Err(Error::BadSource {
                path: repo.top.clone(),
                reason: format!(
                    "--tree builds x86-64 only, not {} (the pipeline's own base builds it)",
                    arch.name()
                ),
            }),
            Base::Repo(repo) => {
                let dir = worktree(repo, cache, reporter)?;
                series::apply_onto(&dir, &repo.commit, series, reporter)?;
                let mut base = repo.info();
                base.upstream = Some(source::makefile_version(&dir)?);
                Ok(SourceTree { path: dir, base })
            }
        }
    }

    /// What the tree's configuration is stamped with: the series and the
    /// fragment, and for a worktree (whose base moves with the user's HEAD)
    /// the base too.
    pub(crate) fn config_stamp(&self, series: &str, config: &str) -> String {
        match self {
            Base::Fetched(_) => format!("{series}-{config}"),
            Base::Repo(r) => format!("{}-{series}-{config}", r.commit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::NullReporter;
    use crate::kbuild::Arch;
    use std::time::{Duration, UNIX_EPOCH};

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn sh(dir: &Path, args: &[&str]) -> String {
        git(dir, args).unwrap()
    }

    /// A tiny "kernel" repository on branch `main`, and a one-patch series
    /// for it (made in a scratch clone, so the repository's own history
    /// and reflogs stay plain).
    fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().join("linux");
        write(
            &repo,
            "Makefile",
            "VERSION = 7\nPATCHLEVEL = 3\nSUBLEVEL = 0\n",
        );
        write(&repo, "Kconfig", "mainmenu \"test\"\n");
        write(&repo, "kernel/bpf/core.c", "int core;\n");
        write(&repo, "net/core/filter.c", "int filter;\n");
        sh(&repo, &["init", "-q", "-b", "main"]);
        sh(&repo, &["add", "-A"]);
        sh(&repo, &["commit", "-q", "-m", "base"]);

        let scratch = d.path().join("scratch");
        let (r, s) = (repo.to_string_lossy(), scratch.to_string_lossy());
        sh(d.path(), &["clone", "-q", &r, &s]);
        write(&scratch, "net/core/filter.c", "int filter = 1;\n");
        sh(&scratch, &["commit", "-q", "-am", "bpf: change filter"]);
        let patches = d.path().join("patches");
        let p = patches.to_string_lossy();
        sh(&scratch, &["format-patch", "-q", "-o", &p, "HEAD~1"]);
        write(&patches, "series", "0001-bpf-change-filter.patch\n");
        (d, repo, patches)
    }

    /// Everything about the user's repository a build must not change.
    fn state(repo: &Path) -> Vec<String> {
        let index = fs::read(repo.join(".git/index")).unwrap();
        vec![
            sh(repo, &["rev-parse", "HEAD"]),
            sh(repo, &["symbolic-ref", "HEAD"]),
            sh(repo, &["for-each-ref"]),
            sh(repo, &["status", "--porcelain"]),
            sh(repo, &["stash", "list"]),
            hex::encode(Sha256::digest(index)),
            fs::read_to_string(repo.join("net/core/filter.c")).unwrap(),
        ]
    }

    fn worktrees(repo: &Path) -> usize {
        sh(repo, &["worktree", "list", "--porcelain"])
            .lines()
            .filter(|l| l.starts_with("worktree "))
            .count()
    }

    #[test]
    fn a_directory_that_is_not_a_git_work_tree_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let err = Repo::open(d.path()).unwrap_err().to_string();
        assert!(err.contains("not a git work tree"), "{err}");
        let err = Repo::open(&d.path().join("nope")).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        sh(d.path(), &["init", "-q"]);
        let err = Repo::open(d.path()).unwrap_err().to_string();
        assert!(err.contains("no commit"), "{err}");
    }

    #[test]
    fn a_repository_without_a_kernel_at_head_is_refused() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "Makefile", "all:\n");
        sh(d.path(), &["init", "-q"]);
        sh(d.path(), &["add", "-A"]);
        sh(d.path(), &["commit", "-q", "-m", "x"]);
        // A kernel in the working tree but not committed is not HEAD's.
        write(d.path(), "Kconfig", "");
        write(d.path(), "kernel/bpf/core.c", "");
        let err = Repo::open(d.path()).unwrap_err().to_string();
        assert!(err.contains("not a kernel tree"), "{err}");
        assert!(err.contains("Kconfig, kernel/bpf"), "{err}");
    }

    #[test]
    fn the_base_is_the_head_tree_not_mtimes_paths_or_uncommitted_edits() {
        let (d, repo, _) = fixture();
        let first = Repo::open(&repo).unwrap();
        assert_eq!(first.branch.as_deref(), Some("main"));
        assert!(!first.dirty);
        let id = first.info().id;
        assert_eq!(
            id,
            format!("git-{}", sh(&repo, &["rev-parse", "HEAD^{tree}"]).trim())
        );

        // New modification times change nothing.
        let old = UNIX_EPOCH + Duration::from_secs(1_000_000);
        for f in ["Makefile", "net/core/filter.c"] {
            let file = fs::File::options().write(true).open(repo.join(f)).unwrap();
            file.set_modified(old).unwrap();
        }
        assert_eq!(Repo::open(&repo).unwrap().info().id, id);

        // Uncommitted edits are not built: same base, reported dirty.
        write(&repo, "net/core/filter.c", "int edited;\n");
        let dirty = Repo::open(&repo).unwrap();
        assert!(dirty.dirty);
        assert_eq!(dirty.info().id, id);

        // Another clone of the same commit, elsewhere: the same base; a
        // new commit with the same content too, and other content not.
        let other = d.path().join("elsewhere");
        let (r, o) = (repo.to_string_lossy(), other.to_string_lossy());
        sh(d.path(), &["clone", "-q", &r, &o]);
        assert_eq!(Repo::open(&other).unwrap().info().id, id);
        sh(&other, &["commit", "-q", "--allow-empty", "-m", "empty"]);
        let same = Repo::open(&other).unwrap();
        assert_ne!(same.commit, first.commit);
        assert_eq!(same.info().id, id);
        write(&other, "net/core/filter.c", "int other;\n");
        sh(&other, &["commit", "-q", "-am", "other"]);
        assert_ne!(Repo::open(&other).unwrap().info().id, id);
    }

    #[test]
    fn building_in_a_worktree_leaves_the_users_repository_as_it_was() {
        let (d, repo, patches) = fixture();
        // The user has work in progress: an edit and an untracked file.
        write(&repo, "net/core/filter.c", "int mine;\n");
        write(&repo, "notes.txt", "todo\n");
        let before = state(&repo);
        let cache = d.path().join("cache");
        let series = Series::parse(&patches).unwrap();
        let base = Base::Repo(Repo::open(&repo).unwrap());
        let patch = |base: &Base| {
            base.patched(&cache, Arch::X86_64, &series, &mut NullReporter)
                .unwrap()
        };

        let tree = patch(&base);
        assert!(tree
            .path
            .starts_with(cache.canonicalize().unwrap().join("worktrees")));
        assert_eq!(
            fs::read_to_string(tree.path.join("net/core/filter.c")).unwrap(),
            "int filter = 1;\n",
            "HEAD plus the series, without the uncommitted edit"
        );
        assert_eq!(tree.base.upstream.as_deref(), Some("7.3.0"));
        assert_eq!(state(&repo), before);
        assert_eq!(worktrees(&repo), 2, "the worktree's entry is listed");

        // Again: the worktree and the applied series are reused.
        let mut events = Vec::new();
        base.patched(
            &cache,
            crate::kbuild::Arch::X86_64,
            &series,
            &mut |e: Event| events.push(format!("{e:?}")),
        )
        .unwrap();
        assert!(events.iter().all(|e| e.starts_with("Cached")), "{events:?}");

        // The worktree deleted behind our back (a cache wipe): made again.
        fs::remove_dir_all(&tree.path).unwrap();
        let again = patch(&base);
        assert_eq!(again.path, tree.path);
        assert_eq!(worktrees(&repo), 2);

        // The user's HEAD moves: the same worktree follows it.
        sh(&repo, &["stash", "-q", "-u"]);
        write(&repo, "kernel/bpf/core.c", "int core = 2;\n");
        sh(&repo, &["commit", "-q", "-am", "next"]);
        let moved = Base::Repo(Repo::open(&repo).unwrap());
        let tree2 = patch(&moved);
        assert_eq!(tree2.path, tree.path);
        assert_eq!(
            fs::read_to_string(tree2.path.join("kernel/bpf/core.c")).unwrap(),
            "int core = 2;\n"
        );
        assert_ne!(
            moved.config_stamp("s", "c"),
            base.config_stamp("s", "c"),
            "a new base is configured again"
        );
        sh(&repo, &["reset", "-q", "--hard", "HEAD~1"]);
        sh(&repo, &["stash", "pop", "-q"]);
        // (The user's own stash and reset rewrote the index.)
        assert_eq!(state(&repo)[..5], before[..5]);
        let before = state(&repo);

        // --clean: the worktree and its entry go; refs are as they were.
        let Base::Repo(r) = &base else { unreachable!() };
        assert_eq!(remove_worktree(r, &cache).unwrap(), Some(tree.path.clone()));
        assert!(!tree.path.exists());
        assert_eq!(worktrees(&repo), 1);
        assert_eq!(remove_worktree(r, &cache).unwrap(), None);
        assert_eq!(state(&repo), before);
    }

    #[test]
    fn a_series_that_does_not_apply_leaves_no_am_in_the_users_repository() {
        let (d, repo, patches) = fixture();
        write(&repo, "net/core/filter.c", "int changed;\n");
        sh(&repo, &["commit", "-q", "-am", "conflicting base"]);
        let before = state(&repo);
        let base = Base::Repo(Repo::open(&repo).unwrap());
        let err = base
            .patched(
                &d.path().join("cache"),
                crate::kbuild::Arch::X86_64,
                &Series::parse(&patches).unwrap(),
                &mut NullReporter,
            )
            .unwrap_err();
        assert!(matches!(err, Error::PatchDoesNotApply { .. }), "{err}");
        assert_eq!(state(&repo), before);
        assert!(!repo.join(".git/rebase-apply").exists());
    }
}
