//! Step 1 and 2: get the base kernel source and turn it into a git tree with
//! one commit holding the pristine base.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::apt::{self, PrivateApt};
use crate::cmd;
use crate::error::{Error, IoContext, Result};
use crate::events::{Event, Phase, Reporter};

/// Where the base source comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A Debian `linux-source-X.Y` package from `suite`, fetched through the
    /// system's mirror.
    Debian { package: String, suite: String },
    /// A `.tar.xz` (or other tarball `tar` reads) or an unpacked tree.
    Path(PathBuf),
    /// The HEAD of a git repository the user has, built in a worktree in
    /// the cache (see [`crate::tree`]); never fetched or unpacked.
    Tree(PathBuf),
}

/// The base a tree was made from; recorded next to every tree and kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseInfo {
    /// Stable identity of the base content, e.g.
    /// `linux-source-7.3_7.3.4-1~bpo13+1` or `tarball-<sha256>`.
    pub id: String,
    /// What a human needs to reproduce it: the package and exact version,
    /// or the path it came from.
    pub origin: String,
    /// The upstream version from the top-level Makefile, e.g. `7.3.4`;
    /// filled in once the source is unpacked.
    pub upstream: Option<String>,
}

/// A located base source, not yet unpacked.
#[derive(Debug, Clone)]
pub struct FetchedSource {
    pub info: BaseInfo,
    archive: Archive,
}

#[derive(Debug, Clone)]
enum Archive {
    Deb(PathBuf),
    Tarball(PathBuf),
    /// An unpacked tree and the list of its source files (NUL-separated,
    /// relative), as [`list_dir`] made it.
    Dir {
        dir: PathBuf,
        files: PathBuf,
    },
}

/// Locate the base source, downloading it if needed. With `refresh`, a
/// Debian package is re-resolved against the mirror even when a downloaded
/// copy exists; otherwise a cached `.deb` is used without network access.
pub fn fetch(
    spec: &SourceSpec,
    cache: &Path,
    refresh: bool,
    reporter: &mut dyn Reporter,
) -> Result<FetchedSource> {
    match spec {
        SourceSpec::Debian { package, suite } => {
            let apt = PrivateApt::new(cache.join("apt").join(suite));
            let deb = match apt.cached(package, None)? {
                Some(deb) if !refresh => deb,
                _ => {
                    reporter.event(Event::Start(
                        Phase::Fetch,
                        format!("{package} from {suite}"),
                    ));
                    let mirror = apt::system_mirror(Path::new("/etc/apt"), suite)?;
                    apt.update(&mirror, suite)?;
                    let deb = apt.fetch_candidate(package, suite)?;
                    reporter.event(Event::End(Phase::Fetch));
                    deb
                }
            };
            Ok(FetchedSource {
                info: BaseInfo {
                    id: format!("{package}_{}", deb.version),
                    origin: format!("Debian package {package} {} ({suite})", deb.version),
                    upstream: None,
                },
                archive: Archive::Deb(deb.path),
            })
        }
        SourceSpec::Path(path) => {
            let meta = fs::metadata(path).at(path)?;
            let (id, archive) = if meta.is_dir() {
                if !path.join("Makefile").exists() || !path.join("net/core/filter.c").exists() {
                    return Err(Error::BadSource {
                        path: path.clone(),
                        reason: "not a kernel tree (no Makefile or net/core/filter.c)".into(),
                    });
                }
                let listed = list_dir(path, cache)?;
                (
                    format!("dir-{}", &listed.tree[..16]),
                    Archive::Dir {
                        dir: path.clone(),
                        files: listed.files,
                    },
                )
            } else {
                (
                    format!("tarball-{}", crate::cache::file_digest(path)?),
                    Archive::Tarball(path.clone()),
                )
            };
            Ok(FetchedSource {
                info: BaseInfo {
                    id,
                    origin: format!("{}", path.display()),
                    upstream: None,
                },
                archive,
            })
        }
        SourceSpec::Tree(path) => Err(Error::BadSource {
            path: path.clone(),
            reason: "a git tree is built in a worktree (crate::tree), not fetched".into(),
        }),
    }
}

/// A git tree whose `fibneigh-base` tag is the pristine base.
#[derive(Debug, Clone)]
pub struct SourceTree {
    pub path: PathBuf,
    pub base: BaseInfo,
}

pub const BASE_TAG: &str = "fibneigh-base";
const BASE_FILE: &str = ".git/fibneigh-base.json";

/// The directory a base's tree lives in under `cache`.
pub fn tree_dir(cache: &Path, base: &BaseInfo) -> PathBuf {
    cache.join("trees").join(&base.id).join("linux")
}

/// Unpack `src` into the cache (once) and commit it as the base.
pub fn unpack(
    src: &FetchedSource,
    cache: &Path,
    reporter: &mut dyn Reporter,
) -> Result<SourceTree> {
    let dir = tree_dir(cache, &src.info);
    if let Some(done) = finished_tree(&dir)? {
        return Ok(done);
    }
    fs::create_dir_all(&dir).at(&dir)?;

    reporter.event(Event::Start(Phase::Unpack, src.info.origin.clone()));
    match &src.archive {
        Archive::Deb(deb) => {
            let scratch = dir.with_file_name("deb");
            let _ = fs::remove_dir_all(&scratch);
            cmd::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&scratch))?;
            let tarball =
                find_tarball(&scratch.join("usr/src")).ok_or_else(|| Error::BadSource {
                    path: deb.clone(),
                    reason: "the package holds no usr/src/linux-source-*.tar.*".into(),
                })?;
            untar(&tarball, &dir)?;
            fs::remove_dir_all(&scratch).at(&scratch)?;
        }
        Archive::Tarball(tarball) => untar(tarball, &dir)?,
        Archive::Dir { dir: tree, files } => {
            // The files the key digests, and nothing else: no build output
            // of the user's tree comes along.
            cmd::run(
                Command::new("rsync")
                    .args(["-a", "--from0"])
                    .arg(format!("--files-from={}", files.display()))
                    .arg(format!("{}/", tree.display()))
                    .arg(&dir),
            )?;
        }
    }
    if !dir.join("net/core/filter.c").exists() {
        return Err(Error::BadSource {
            path: dir,
            reason: "unpacked source is not a kernel tree (no net/core/filter.c)".into(),
        });
    }
    reporter.event(Event::End(Phase::Unpack));

    let mut base = src.info.clone();
    base.upstream = Some(makefile_version(&dir)?);
    reporter.event(Event::Start(
        Phase::Commit,
        "git commit of the pristine base".into(),
    ));
    git(&dir, &["init", "-q", "-b", "fibneigh"])?;
    git(&dir, &["add", "-A", "-f", "."])?;
    git(
        &dir,
        &[
            "commit",
            "-q",
            "--no-verify",
            "-m",
            &format!("base: {}", base.origin),
        ],
    )?;
    git(&dir, &["tag", "-f", BASE_TAG])?;
    mark_finished(&dir, &base)?;
    reporter.event(Event::End(Phase::Commit));
    Ok(SourceTree { path: dir, base })
}

/// Configuration every pipeline `git` runs with, whatever the user's: no
/// hooks, no signing, no automatic gc or maintenance, no fsmonitor daemon.
const GIT_CONFIG: [&str; 5] = [
    "core.hooksPath=/dev/null",
    "commit.gpgSign=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "core.fsmonitor=false",
];

/// The tree `arch` builds in. x86-64 builds in the base's tree itself.
/// Every other architecture gets its own clone next to it
/// (`<cache>/trees/<base-id>/linux-<arch>`, sharing the objects): kbuild
/// refuses an `O=` output directory for a source tree that has been
/// configured in place, and the two architectures' objects, `.config` and
/// generated headers must not overwrite each other.
pub fn arch_tree(
    tree: &SourceTree,
    arch: crate::kbuild::Arch,
    reporter: &mut dyn Reporter,
) -> Result<SourceTree> {
    if arch == crate::kbuild::Arch::X86_64 {
        return Ok(tree.clone());
    }
    let dir = arch_dir(&tree.path, arch);
    if let Some(done) = finished_tree(&dir)? {
        return Ok(done);
    }
    reporter.event(Event::Start(
        Phase::Unpack,
        format!("{} tree: clone of {}", arch.name(), tree.path.display()),
    ));
    cmd::run(
        git_cmd(&tree.path)
            .args(["clone", "-q", "--shared", "--no-checkout"])
            .arg(&tree.path)
            .arg(&dir),
    )?;
    git(&dir, &["reset", "-q", "--hard", BASE_TAG])?;
    mark_finished(&dir, &tree.base)?;
    reporter.event(Event::End(Phase::Unpack));
    Ok(SourceTree {
        path: dir,
        base: tree.base.clone(),
    })
}

/// Where `arch` builds next to the base's tree `linux`: `linux` itself for
/// x86-64, else the clone `linux-<arch>`.
fn arch_dir(linux: &Path, arch: crate::kbuild::Arch) -> PathBuf {
    match arch {
        crate::kbuild::Arch::X86_64 => linux.to_path_buf(),
        other => linux.with_file_name(format!("linux-{}", other.name())),
    }
}

/// The tree in `dir` if an earlier run finished it (its base marker reads
/// back). A directory without one is what an interrupted run left half
/// made, and is removed.
fn finished_tree(dir: &Path) -> Result<Option<SourceTree>> {
    if let Some(base) = read_marker(dir) {
        return Ok(Some(SourceTree {
            path: dir.to_path_buf(),
            base,
        }));
    }
    if dir.exists() {
        fs::remove_dir_all(dir).at(dir)?;
    }
    Ok(None)
}

/// The trees the pipeline finished unpacking from `package` under `cache`
/// (`<cache>/trees/<package>_<version>/linux`, or `linux-<arch>` for
/// another architecture's clone), in the order of their directory names.
/// Reads only: a half-made tree is skipped, not removed, and nothing is
/// fetched, unpacked, patched or configured.
pub fn unpacked_trees(
    cache: &Path,
    package: &str,
    arch: crate::kbuild::Arch,
) -> Result<Vec<SourceTree>> {
    let trees = cache.join("trees");
    let entries = match fs::read_dir(&trees) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at(&trees),
    };
    let prefix = format!("{package}_");
    let mut names = Vec::new();
    for entry in entries {
        let name = entry.at(&trees)?.file_name();
        if name.to_str().is_some_and(|n| n.starts_with(&prefix)) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names
        .into_iter()
        .filter_map(|name| {
            let dir = arch_dir(&trees.join(name).join("linux"), arch);
            let base = read_marker(&dir)?;
            Some(SourceTree { path: dir, base })
        })
        .collect())
}

/// The base recorded in `dir`'s marker, if the tree was finished.
fn read_marker(dir: &Path) -> Option<BaseInfo> {
    let text = fs::read_to_string(dir.join(BASE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Record `base` in `dir`'s marker: the tree is complete.
fn mark_finished(dir: &Path, base: &BaseInfo) -> Result<()> {
    let marker = dir.join(BASE_FILE);
    let text = serde_json::to_string_pretty(base).map_err(|e| Error::BadSource {
        path: marker.clone(),
        reason: e.to_string(),
    })?;
    fs::write(&marker, text).at(&marker)
}

/// A `git` command in `tree` with a fixed identity, so commits the pipeline
/// makes do not depend on the user's configuration (see [`GIT_CONFIG`]).
/// An inherited `GIT_DIR` and friends are dropped; `git status` never
/// rewrites an index in passing (`GIT_OPTIONAL_LOCKS=0`).
pub fn git_cmd(tree: &Path) -> Command {
    let mut c = Command::new("git");
    for kv in GIT_CONFIG {
        c.args(["-c", kv]);
    }
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_COMMON_DIR",
    ] {
        c.env_remove(var);
    }
    c.current_dir(tree)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_AUTHOR_NAME", "fibneigh")
        .env("GIT_AUTHOR_EMAIL", "fibneigh@localhost")
        .env("GIT_COMMITTER_NAME", "fibneigh")
        .env("GIT_COMMITTER_EMAIL", "fibneigh@localhost")
        .env("GIT_AUTHOR_DATE", "2000-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2000-01-01T00:00:00Z");
    c
}

pub fn git(tree: &Path, args: &[&str]) -> Result<String> {
    cmd::output(git_cmd(tree).args(args))
}

fn find_tarball(dir: &Path) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("linux-source-") && n.contains(".tar"))
        })
}

fn untar(tarball: &Path, dest: &Path) -> Result<()> {
    cmd::run(
        Command::new("tar")
            .arg("-xf")
            .arg(tarball)
            .arg("-C")
            .arg(dest)
            .arg("--strip-components=1"),
    )
}

/// `VERSION.PATCHLEVEL.SUBLEVEL` from a tree's top-level Makefile.
pub fn makefile_version(tree: &Path) -> Result<String> {
    let path = tree.join("Makefile");
    let text = fs::read_to_string(&path).at(&path)?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim_start().strip_prefix('='))
            .map(|v| v.trim().to_string())
    };
    match (field("VERSION"), field("PATCHLEVEL"), field("SUBLEVEL")) {
        (Some(v), Some(p), Some(s)) if !s.is_empty() => Ok(format!("{v}.{p}.{s}")),
        (Some(v), Some(p), _) => Ok(format!("{v}.{p}")),
        _ => Err(Error::BadSource {
            path,
            reason: "no VERSION/PATCHLEVEL in the Makefile".into(),
        }),
    }
}

/// An unpacked tree's source files and their content digest.
#[derive(Debug, Clone)]
pub struct DirListing {
    /// The git tree id of the files (their paths, modes and contents).
    pub tree: String,
    /// A file listing them, NUL-separated, relative to the tree.
    pub files: PathBuf,
}

/// The source files of the unpacked tree `dir`: every file its own
/// `.gitignore` files do not ignore (so none of the kernel's build
/// outputs), with `dir/.git` left out, digested by content as a git tree
/// id. Nothing is written to `dir`: a private index in
/// `<cache>/source-index/<digest of the path>` keeps each file's stat data,
/// so only files that changed since the last run are read again, and the
/// blobs are hashed without being stored (`--info-only`).
pub fn list_dir(dir: &Path, cache: &Path) -> Result<DirListing> {
    let dir = dir.canonicalize().at(dir)?;
    let path_digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let index = cache
        .join("source-index")
        .join(&hex::encode(path_digest)[..16]);
    if !index.join("HEAD").is_file() {
        fs::create_dir_all(&index).at(&index)?;
        cmd::run(
            Command::new("git")
                .args(["init", "-q", "--bare"])
                .arg(&index),
        )?;
    }
    let g = || {
        let mut c = git_cmd(&dir);
        c.args(["-c", "core.excludesFile=/dev/null"])
            .arg(format!("--git-dir={}", index.display()))
            .arg(format!("--work-tree={}", dir.display()));
        c
    };
    // Files indexed by an earlier run that the rules now ignore go first.
    let ignored = cmd::output(g().args([
        "ls-files",
        "-z",
        "--cached",
        "--ignored",
        "--exclude-standard",
    ]))?;
    if !ignored.is_empty() {
        cmd::output_with_input(
            g().args(["update-index", "--force-remove", "-z", "--stdin"]),
            ignored.as_bytes(),
        )?;
    }
    let listed = cmd::output(g().args([
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ]))?;
    cmd::output_with_input(
        g().args([
            "update-index",
            "--add",
            "--remove",
            "--info-only",
            "-z",
            "--stdin",
        ]),
        listed.as_bytes(),
    )?;
    let tree = cmd::output(g().args(["write-tree", "--missing-ok"]))?
        .trim()
        .to_string();
    let listed = cmd::output(g().args(["ls-files", "-z", "--cached"]))?;
    let missing: Vec<&str> = ["Makefile", "net/core/filter.c"]
        .into_iter()
        .filter(|f| !listed.split('\0').any(|l| l == *f))
        .collect();
    if !missing.is_empty() {
        return Err(Error::BadSource {
            path: dir,
            reason: format!(
                "its .gitignore files ignore {}, so its sources cannot be told from build outputs \
                 (Debian's linux-source trees ignore everything at the top level): \
                 give the .tar.xz, or a git repository with --tree",
                missing.join(" and ")
            ),
        });
    }
    let files = index.join("files");
    fs::write(&files, listed).at(&files)?;
    Ok(DirListing { tree, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makefile_version_reads_sublevel() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("Makefile"),
            "# SPDX\nVERSION = 7\nPATCHLEVEL = 3\nSUBLEVEL = 4\nEXTRAVERSION =\n",
        )
        .unwrap();
        assert_eq!(makefile_version(dir.path()).unwrap(), "7.3.4");
        fs::write(
            dir.path().join("Makefile"),
            "VERSION = 7\nPATCHLEVEL = 3\nSUBLEVEL =\n",
        )
        .unwrap();
        assert_eq!(makefile_version(dir.path()).unwrap(), "7.3");
        fs::write(dir.path().join("Makefile"), "all:\n").unwrap();
        assert!(makefile_version(dir.path()).is_err());
    }

    /// A finished tree for `id` in `cache`, laid out as [`unpack`] and
    /// [`arch_tree`] lay it out (marker only, no sources).
    fn finished(cache: &Path, id: &str, arch: crate::kbuild::Arch) -> PathBuf {
        let base = BaseInfo {
            id: id.into(),
            origin: format!("test {id}"),
            upstream: Some("7.3.4".into()),
        };
        let dir = arch_dir(&tree_dir(cache, &base), arch);
        fs::create_dir_all(dir.join(".git")).unwrap();
        mark_finished(&dir, &base).unwrap();
        dir
    }

    #[test]
    fn unpacked_trees_are_found_by_package_and_never_touched() {
        use crate::kbuild::Arch;
        let cache = tempfile::tempdir().unwrap();
        let c = cache.path();
        assert!(unpacked_trees(c, "linux-source-7.3", Arch::X86_64)
            .unwrap()
            .is_empty());
        let old = finished(c, "linux-source-7.3_7.3.2-1", Arch::X86_64);
        let new = finished(c, "linux-source-7.3_7.3.4-1~bpo13+1", Arch::X86_64);
        let um = finished(c, "linux-source-7.3_7.3.4-1~bpo13+1", Arch::Um);
        let other = finished(c, "linux-source-6.12_6.12.118-1~deb12u1", Arch::X86_64);
        // Half made (no marker): what an interrupted unpack leaves.
        let half = c.join("trees/linux-source-7.3_7.3.9-1/linux");
        fs::create_dir_all(half.join("net/core")).unwrap();

        let found = unpacked_trees(c, "linux-source-7.3", Arch::X86_64).unwrap();
        let paths: Vec<&Path> = found.iter().map(|t| t.path.as_path()).collect();
        assert_eq!(paths, [old.as_path(), new.as_path()]);
        assert_eq!(found[1].base.id, "linux-source-7.3_7.3.4-1~bpo13+1");
        let found = unpacked_trees(c, "linux-source-7.3", Arch::Um).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, um);
        let found = unpacked_trees(c, "linux-source-6.12", Arch::X86_64).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, other);
        // Read only: the half-made tree is still there.
        assert!(half.join("net/core").is_dir());
    }

    #[test]
    fn a_directory_that_is_not_a_kernel_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = fetch(
            &SourceSpec::Path(dir.path().to_path_buf()),
            dir.path(),
            false,
            &mut crate::events::NullReporter,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a kernel tree"), "{err}");
    }

    fn kernel_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("net/core")).unwrap();
        fs::write(d.path().join("Makefile"), "VERSION = 7\nPATCHLEVEL = 3\n").unwrap();
        fs::write(d.path().join("net/core/filter.c"), "int filter;\n").unwrap();
        fs::write(d.path().join(".gitignore"), "*.o\n/vmlinux\n").unwrap();
        d
    }

    fn id_of(dir: &Path, cache: &Path) -> String {
        fetch(
            &SourceSpec::Path(dir.to_path_buf()),
            cache,
            false,
            &mut crate::events::NullReporter,
        )
        .unwrap()
        .info
        .id
    }

    #[test]
    fn an_unpacked_trees_id_follows_sources_not_mtimes_or_build_outputs() {
        let d = kernel_dir();
        let cache = tempfile::tempdir().unwrap();
        let first = id_of(d.path(), cache.path());
        assert!(first.starts_with("dir-"), "{first}");

        // `make` in the tree: new outputs, newer mtimes. Same id.
        fs::write(d.path().join("net/core/filter.o"), "\x7fELF").unwrap();
        fs::write(d.path().join("vmlinux"), "\x7fELF").unwrap();
        let file = fs::File::options()
            .write(true)
            .open(d.path().join("net/core/filter.c"))
            .unwrap();
        file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1))
            .unwrap();
        assert_eq!(id_of(d.path(), cache.path()), first);
        // A git repository of it is the same files.
        git(d.path(), &["init", "-q"]).unwrap();
        assert_eq!(id_of(d.path(), cache.path()), first);

        // What is copied is what is digested: no build output.
        let listed = list_dir(d.path(), cache.path()).unwrap();
        let files = fs::read_to_string(&listed.files).unwrap();
        let mut names: Vec<&str> = files.split('\0').filter(|n| !n.is_empty()).collect();
        names.sort_unstable();
        assert_eq!(names, [".gitignore", "Makefile", "net/core/filter.c"]);

        // An edit, an added source and a removed one each make a new id.
        fs::write(d.path().join("net/core/filter.c"), "int edited;\n").unwrap();
        let edited = id_of(d.path(), cache.path());
        assert_ne!(edited, first);
        fs::write(d.path().join("net/core/new.c"), "int n;\n").unwrap();
        let added = id_of(d.path(), cache.path());
        assert_ne!(added, edited);
        fs::remove_file(d.path().join("net/core/new.c")).unwrap();
        assert_eq!(id_of(d.path(), cache.path()), edited);
        // The same content in another directory is the same base.
        let other = kernel_dir();
        fs::write(other.path().join("net/core/filter.c"), "int edited;\n").unwrap();
        assert_eq!(id_of(other.path(), cache.path()), edited);

        // A tree whose .gitignore hides its own sources is refused.
        fs::write(other.path().join(".gitignore"), "/*\n!/debian/\n").unwrap();
        let err = fetch(
            &SourceSpec::Path(other.path().to_path_buf()),
            cache.path(),
            false,
            &mut crate::events::NullReporter,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ignore Makefile and net/core/filter.c"),
            "{err}"
        );
    }
}
