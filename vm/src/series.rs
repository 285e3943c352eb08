//! Step 3: the patch series and applying it with `git am`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::events::{Event, Phase, Reporter};
use crate::source::{git, git_cmd, SourceTree, BASE_TAG};

/// An ordered list of patches read from a quilt-style `series` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub dir: PathBuf,
    pub patches: Vec<PathBuf>,
}

impl Series {
    /// Read `dir/series`: one patch file name per line, relative to `dir`;
    /// `#` starts a comment; blank lines are ignored; quilt options after
    /// the name (`-p1`) are ignored. Every named file must exist.
    pub fn parse(dir: &Path) -> Result<Series> {
        let file = dir.join("series");
        let text = fs::read_to_string(&file).at(&file)?;
        let mut patches = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            let path = dir.join(name);
            if !path.is_file() {
                return Err(Error::MissingPatch {
                    series: file,
                    line: i + 1,
                    patch: name.to_string(),
                });
            }
            patches.push(path);
        }
        Ok(Series {
            dir: dir.to_path_buf(),
            patches,
        })
    }

    /// A digest of every patch's name and content, in order.
    pub fn digest(&self) -> Result<String> {
        let mut hasher = Sha256::new();
        for p in &self.patches {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(fs::read(p).at(p)?);
            hasher.update([0]);
        }
        Ok(hex::encode(&hasher.finalize()[..8]))
    }
}

/// Where a series' uAPI headers are: the kernel's and the copy under
/// `tools/`.
const UAPI_DIRS: [&str; 2] = ["include/uapi/", "tools/include/uapi/"];

/// The part of a `git format-patch` mail that changes a uAPI header: the
/// mail's header and message with only those files' diffs, or `None` when
/// the patch changes no uAPI header. The diffstat is kept as it is (`git
/// am` does not read it).
pub fn uapi_part(patch: &str) -> Option<String> {
    let mut out = String::new();
    let mut keep = true;
    let mut kept = false;
    for line in patch.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("diff --git a/") {
            keep = UAPI_DIRS.iter().any(|d| rest.starts_with(d));
            kept |= keep;
        }
        if keep {
            out.push_str(line);
        }
    }
    kept.then_some(out)
}

/// The author `apply` gives a patch that names none. The committed series
/// carries no identity (the posting user signs and authors it, see
/// `scripts/series.sh post`), but `git am` needs one; this one only ever
/// lands in the pipeline's own build tree.
pub const BUILD_AUTHOR: &str = "fibneigh build <fibneigh-build@localhost>";

/// `mail` with a `From:` header naming [`BUILD_AUTHOR`] if its header has
/// none; unchanged otherwise.
pub fn with_author(mail: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(mail);
    let header_end = text.find("\n\n").unwrap_or(text.len());
    if text[..header_end].lines().any(|l| l.starts_with("From: ")) {
        return mail.to_vec();
    }
    // After the mbox "From <sha> <date>" line when there is one.
    let at = if text.starts_with("From ") {
        text.find('\n').map_or(text.len(), |i| i + 1)
    } else {
        0
    };
    let mut out = Vec::with_capacity(mail.len() + 64);
    out.extend_from_slice(&mail[..at]);
    out.extend_from_slice(format!("From: {BUILD_AUTHOR}\n").as_bytes());
    out.extend_from_slice(&mail[at..]);
    out
}

/// A person's git identity, `Name <email>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub name: String,
    pub email: String,
}

/// Why an identity is not one to author or post a series as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorError {
    #[error("no git identity: set user.name and user.email (git config --global ...)")]
    Missing,
    #[error("git identity has no name: set user.name")]
    NoName,
    #[error("'{0}' looks like a placeholder, not your identity")]
    Placeholder(String),
}

impl Author {
    /// Read `ident` as `git var GIT_AUTHOR_IDENT` prints it (`Name <email>
    /// 1700000000 +0000`; the date is optional). It needs a name, other
    /// than the email.
    pub fn parse(ident: &str) -> Result<Author, AuthorError> {
        let ident = ident.trim();
        let (name, rest) = ident.split_once('<').ok_or(AuthorError::Missing)?;
        let (email, _date) = rest.split_once('>').ok_or(AuthorError::Missing)?;
        let (name, email) = (name.trim(), email.trim());
        if email.is_empty() {
            return Err(AuthorError::Missing);
        }
        if name.is_empty() || name == email {
            return Err(AuthorError::NoName);
        }
        Ok(Author {
            name: name.to_string(),
            email: email.to_string(),
        })
    }

    /// Does the email stand for nobody: a reserved or local domain
    /// (`localhost`, `.invalid`, `example.*`), a no-reply address, or the
    /// pipeline's own ([`BUILD_AUTHOR`], the tree's `fibneigh@localhost`)?
    pub fn is_placeholder(&self) -> bool {
        let e = self.email.to_ascii_lowercase();
        e.ends_with("@localhost")
            || e.contains("@localhost.")
            || e.ends_with(".invalid")
            || e.contains("@example.")
            || e.ends_with(".example")
            || e.contains(".example.")
            || e.contains("noreply")
            || e.starts_with("fibneigh")
    }

    /// `self` if a posted series may be authored and signed off by it.
    pub fn for_posting(self) -> Result<Author, AuthorError> {
        if self.is_placeholder() {
            return Err(AuthorError::Placeholder(self.to_string()));
        }
        Ok(self)
    }
}

impl std::fmt::Display for Author {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} <{}>", self.name, self.email)
    }
}

/// In the tree's git directory.
const APPLIED_FILE: &str = "fibneigh-series";
const MTIMES_FILE: &str = "fibneigh-mtimes.json";

/// For every file a series has ever touched: the blob it held and its
/// modification time, as of the last successful apply.
type MtimeRecord = BTreeMap<String, (String, SystemTime)>;

/// Make `tree`'s HEAD the base plus `series`, one `git am` per patch.
///
/// Re-applying after editing one patch must not make `make` rebuild the
/// world: a file whose content ends up as it was at the last successful
/// apply gets that apply's modification time back, so only what really
/// changed is recompiled, even after a failed apply in between.
pub fn apply(tree: &SourceTree, series: &Series, reporter: &mut dyn Reporter) -> Result<()> {
    apply_onto(&tree.path, BASE_TAG, series, reporter)
}

/// [`apply`] onto `base` (a revision of `tree`): the pipeline's trees use
/// their `fibneigh-base` tag, a worktree of a user's repository the commit
/// it was made for (no ref is ever created there). The records live in the
/// tree's own git directory (a linked worktree's private one).
pub fn apply_onto(
    tree: &Path,
    base: &str,
    series: &Series,
    reporter: &mut dyn Reporter,
) -> Result<()> {
    let git_dir = PathBuf::from(git(tree, &["rev-parse", "--absolute-git-dir"])?.trim());
    // The pipeline's trees never change base: their record is the series
    // alone, as it always was; a worktree's names the base too.
    let digest = if base == BASE_TAG {
        series.digest()?
    } else {
        format!("{base}-{}", series.digest()?)
    };
    let marker = git_dir.join(APPLIED_FILE);
    // Files changed since the series was applied (a process killed while
    // it had them changed, such as the W=1 gate, which builds filter.o
    // from the pristine files) are applied again, and keep the new
    // modification time: anything built from what they held is rebuilt.
    let mut changed = BTreeSet::new();
    if fs::read_to_string(&marker).ok().as_deref() == Some(digest.as_str()) {
        changed = changed_since_head(tree)?;
        if changed.is_empty() {
            reporter.event(Event::Cached(
                Phase::Patch,
                format!("series {digest} already applied"),
            ));
            return Ok(());
        }
        let mut named: Vec<&str> = changed.iter().map(String::as_str).take(3).collect();
        if changed.len() > named.len() {
            named.push("...");
        }
        reporter.event(Event::Warning(format!(
            "{}: {} file(s) differ from the applied series ({}), as an interrupted run leaves them: applying it again",
            tree.display(),
            changed.len(),
            named.join(", ")
        )));
    }
    reporter.event(Event::Start(
        Phase::Patch,
        format!(
            "{} patch(es) from {}",
            series.patches.len(),
            series.dir.display()
        ),
    ));
    let _ = fs::remove_file(&marker);
    let record_path = git_dir.join(MTIMES_FILE);
    let mut record: MtimeRecord = fs::read_to_string(&record_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    record.retain(|path, _| !changed.contains(path));

    // An `am` left behind by an interrupted run would block the next one.
    let _ = git(tree, &["am", "--abort"]);
    git(tree, &["reset", "-q", "--hard", base])?;
    for patch in &series.patches {
        let mail = with_author(&fs::read(patch).at(patch)?);
        let out = crate::cmd::fed(
            git_cmd(tree).args(["am", "-q", "--keep-cr", "--no-3way", "--no-gpg-sign"]),
            &mail,
        )?;
        if !out.status.success() {
            let _ = git(tree, &["am", "--abort"]);
            let mut message = String::from_utf8_lossy(&out.stderr).into_owned();
            message.push_str(&String::from_utf8_lossy(&out.stdout));
            return Err(Error::PatchDoesNotApply {
                patch: patch.clone(),
                message: message.trim_end().to_string(),
            });
        }
        reporter.event(Event::Progress {
            done: 1,
            item: patch
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        });
    }

    let mut paths = diff_names(tree, &[base, "HEAD"])?;
    paths.extend(record.keys().cloned());
    let blobs = blobs(tree, &paths)?;
    for path in &paths {
        let file = tree.join(path);
        let blob = blobs.get(path).cloned().unwrap_or_default();
        if let Some((old_blob, mtime)) = record.get(path) {
            if *old_blob == blob {
                if let Ok(f) = fs::File::options().write(true).open(&file) {
                    let _ = f.set_modified(*mtime);
                }
            }
        }
        match fs::metadata(&file).and_then(|m| m.modified()) {
            Ok(mtime) => record.insert(path.clone(), (blob, mtime)),
            Err(_) => record.remove(path),
        };
    }
    let text = serde_json::to_string(&record).expect("record serializes");
    fs::write(&record_path, text).at(&record_path)?;
    fs::write(&marker, &digest).at(&marker)?;
    reporter.event(Event::End(Phase::Patch));
    Ok(())
}

/// The files `git diff` names between `revs` (one revision: the work tree
/// against it).
fn diff_names(tree: &Path, revs: &[&str]) -> Result<BTreeSet<String>> {
    let mut args = vec!["diff", "--name-only", "--no-renames"];
    args.extend_from_slice(revs);
    args.push("--");
    Ok(git(tree, &args)?.lines().map(str::to_string).collect())
}

/// The tracked files of `tree` whose content is not HEAD's.
fn changed_since_head(tree: &Path) -> Result<BTreeSet<String>> {
    diff_names(tree, &["HEAD"])
}

/// The blob ids of `paths` at HEAD (absent files are left out).
fn blobs(tree: &Path, paths: &BTreeSet<String>) -> Result<BTreeMap<String, String>> {
    if paths.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut args = vec!["ls-tree", "-r", "HEAD", "--"];
    args.extend(paths.iter().map(String::as_str));
    Ok(git(tree, &args)?
        .lines()
        .filter_map(|l| {
            let (meta, path) = l.split_once('\t')?;
            Some((
                path.to_string(),
                meta.split_whitespace().nth(2)?.to_string(),
            ))
        })
        .collect())
}

#[cfg(test)]
mod tests {

    const MAIL: &str = "From 1 Mon Sep 17 00:00:00 2001\nSubject: [PATCH] bpf: x\n\nWhy.\n---\n a | 1 +\n\
diff --git a/include/uapi/linux/bpf.h b/include/uapi/linux/bpf.h\n--- a/include/uapi/linux/bpf.h\n+++ b/include/uapi/linux/bpf.h\n@@ -1 +1,2 @@\n x\n+y\n\
diff --git a/net/core/filter.c b/net/core/filter.c\n--- a/net/core/filter.c\n+++ b/net/core/filter.c\n@@ -1 +1,2 @@\n x\n+z\n\
diff --git a/tools/include/uapi/linux/bpf.h b/tools/include/uapi/linux/bpf.h\n--- a/tools/include/uapi/linux/bpf.h\n+++ b/tools/include/uapi/linux/bpf.h\n@@ -1 +1,2 @@\n x\n+y\n-- \n2.39.5\n";

    #[test]
    fn uapi_part_keeps_the_mail_and_the_uapi_diffs_only() {
        let part = uapi_part(MAIL).expect("the patch changes a uAPI header");
        assert!(part.starts_with("From 1 Mon Sep 17 00:00:00 2001\nSubject: [PATCH] bpf: x\n"));
        assert!(part.contains("diff --git a/include/uapi/linux/bpf.h"));
        assert!(part.contains("diff --git a/tools/include/uapi/linux/bpf.h"));
        assert!(!part.contains("filter.c"), "{part}");
        assert!(!part.contains("+z"), "{part}");
        assert!(part.ends_with("+y\n-- \n2.39.5\n"), "{part}");
    }

    #[test]
    fn uapi_part_of_a_patch_without_uapi_changes_is_none() {
        let selftest = "Subject: [PATCH] selftests\n---\n\
diff --git a/tools/testing/selftests/bpf/x.c b/tools/testing/selftests/bpf/x.c\n+a\n";
        assert_eq!(uapi_part(selftest), None);
    }
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn parse_skips_comments_blank_lines_and_options() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "0001-a.patch", "a");
        write(d.path(), "0002-b.patch", "b");
        write(
            d.path(),
            "series",
            "# the series\n\n0001-a.patch\n  0002-b.patch -p1 # trailing\n\n",
        );
        let s = Series::parse(d.path()).unwrap();
        assert_eq!(
            s.patches,
            [d.path().join("0001-a.patch"), d.path().join("0002-b.patch")]
        );
    }

    #[test]
    fn empty_series_is_valid() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "series", "# nothing yet\n");
        assert!(Series::parse(d.path()).unwrap().patches.is_empty());
    }

    #[test]
    fn missing_patch_is_named_with_its_line() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "0001-a.patch", "a");
        write(d.path(), "series", "0001-a.patch\n0002-gone.patch\n");
        let err = Series::parse(d.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("series:2"), "{text}");
        assert!(text.contains("0002-gone.patch"), "{text}");
    }

    #[test]
    fn missing_series_file_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let err = Series::parse(d.path()).unwrap_err();
        assert!(err.to_string().contains("series"), "{err}");
    }

    #[test]
    fn digest_follows_content_names_and_order() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.patch", "a");
        write(d.path(), "b.patch", "b");
        write(d.path(), "series", "a.patch\nb.patch\n");
        let first = Series::parse(d.path()).unwrap().digest().unwrap();
        write(
            d.path(),
            "series",
            "# reordered comments do not matter\na.patch\n\nb.patch\n",
        );
        assert_eq!(Series::parse(d.path()).unwrap().digest().unwrap(), first);
        write(d.path(), "series", "b.patch\na.patch\n");
        assert_ne!(Series::parse(d.path()).unwrap().digest().unwrap(), first);
        write(d.path(), "series", "a.patch\nb.patch\n");
        write(d.path(), "b.patch", "b2");
        assert_ne!(Series::parse(d.path()).unwrap().digest().unwrap(), first);
    }

    #[test]
    fn a_patch_without_an_author_gets_the_build_author() {
        let bare = b"From 0123 Mon Sep 17 00:00:00 2001\nDate: x\nSubject: [PATCH] s\n\nbody\nFrom: not a header\n";
        let out = String::from_utf8(with_author(bare)).unwrap();
        assert!(out.starts_with(&format!(
            "From 0123 Mon Sep 17 00:00:00 2001\nFrom: {BUILD_AUTHOR}\nDate: x\n"
        )));
        let signed = b"From 0123 Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\n\nbody\n";
        assert_eq!(with_author(signed), signed.to_vec());
    }

    #[test]
    fn an_author_is_read_as_git_prints_it_and_placeholders_are_named() {
        let ada = Author::parse("Ada Poster <ada@poster.test> 1700000000 +0000").unwrap();
        assert_eq!(ada.to_string(), "Ada Poster <ada@poster.test>");
        assert_eq!(ada.clone().for_posting(), Ok(ada));
        assert_eq!(Author::parse(""), Err(AuthorError::Missing));
        assert_eq!(Author::parse("Ada <> 1 +0000"), Err(AuthorError::Missing));
        assert_eq!(
            Author::parse(" <a@b.test> 1 +0000"),
            Err(AuthorError::NoName)
        );
        assert_eq!(
            Author::parse("a@b.test <a@b.test> 1 +0000"),
            Err(AuthorError::NoName)
        );
        // The build's own author can never post.
        let build = Author::parse(BUILD_AUTHOR).unwrap();
        assert!(build.is_placeholder());
        let err = build.for_posting().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("'{BUILD_AUTHOR}' looks like a placeholder, not your identity")
        );
        for email in [
            "fibneigh@localhost",
            "me@localhost.localdomain",
            "me@host.invalid",
            "me@example.org",
            "me@mail.example",
            "me@a.example.com",
            "1+me@users.noreply.github.com",
        ] {
            let a = Author::parse(&format!("Me <{email}>")).unwrap();
            assert!(a.is_placeholder(), "{email}");
            assert!(a.for_posting().is_err(), "{email}");
        }
        assert!(!Author::parse("Me <me@kernel.org>")
            .unwrap()
            .is_placeholder());
    }

    /// A small git tree with a base tag, and a patch series made from it.
    fn fixture() -> (tempfile::TempDir, SourceTree, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("tree");
        fs::create_dir(&tree).unwrap();
        write(&tree, "a.c", "int a;\n");
        write(&tree, "b.c", "int b;\n");
        git(&tree, &["init", "-q", "-b", "main"]).unwrap();
        git(&tree, &["add", "-A"]).unwrap();
        git(&tree, &["commit", "-q", "-m", "base"]).unwrap();
        git(&tree, &["tag", BASE_TAG]).unwrap();
        write(&tree, "a.c", "int a = 1;\n");
        git(&tree, &["commit", "-q", "-am", "change a"]).unwrap();
        write(&tree, "b.c", "int b = 2;\n");
        git(&tree, &["commit", "-q", "-am", "change b"]).unwrap();
        let patches = d.path().join("patches");
        git(
            &tree,
            &[
                "format-patch",
                "-q",
                "-o",
                patches.to_str().unwrap(),
                BASE_TAG,
            ],
        )
        .unwrap();
        git(&tree, &["reset", "-q", "--hard", BASE_TAG]).unwrap();
        let mut names: Vec<String> = fs::read_dir(&patches)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        // As committed in kernel-patches/: no author identity.
        for n in &names {
            let p = patches.join(n);
            let text = fs::read_to_string(&p).unwrap();
            let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("From: ")).collect();
            fs::write(&p, kept.join("\n") + "\n").unwrap();
        }
        write(&patches, "series", &names.join("\n"));
        let st = SourceTree {
            path: tree,
            base: crate::source::BaseInfo {
                id: "test".into(),
                origin: "test".into(),
                upstream: None,
            },
        };
        (d, st, patches)
    }

    #[test]
    fn apply_then_reapply_edited_series_keeps_unchanged_mtimes() {
        let (_d, tree, patches) = fixture();
        let series = Series::parse(&patches).unwrap();
        apply(&tree, &series, &mut crate::events::NullReporter).unwrap();
        assert_eq!(
            fs::read_to_string(tree.path.join("a.c")).unwrap(),
            "int a = 1;\n"
        );
        assert_eq!(
            fs::read_to_string(tree.path.join("b.c")).unwrap(),
            "int b = 2;\n"
        );
        // Pretend the apply happened long ago: old mtimes on the files and
        // in the record of the last successful apply.
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for f in ["a.c", "b.c"] {
            let file = fs::File::options()
                .write(true)
                .open(tree.path.join(f))
                .unwrap();
            file.set_modified(old).unwrap();
        }
        fs::remove_file(tree.path.join(".git").join(APPLIED_FILE)).unwrap();
        let mut record: MtimeRecord = serde_json::from_str(
            &fs::read_to_string(tree.path.join(".git").join(MTIMES_FILE)).unwrap(),
        )
        .unwrap();
        for v in record.values_mut() {
            v.1 = old;
        }
        fs::write(
            tree.path.join(".git").join(MTIMES_FILE),
            serde_json::to_string(&record).unwrap(),
        )
        .unwrap();

        // A broken series in between must not lose the record.
        let broken = tempfile::tempdir().unwrap();
        write(broken.path(), "bad.patch", "From 0 Mon Sep 17 00:00:00 2001\nSubject: [PATCH] bad\n\n---\n a.c | 1 +\n\ndiff --git a/a.c b/a.c\n--- a/a.c\n+++ b/a.c\n@@ -1 +1 @@\n-nothing like this\n+x\n");
        write(broken.path(), "series", "bad.patch\n");
        let err = apply(
            &tree,
            &Series::parse(broken.path()).unwrap(),
            &mut crate::events::NullReporter,
        )
        .unwrap_err();
        assert!(err.to_string().contains("bad.patch"), "{err}");
        assert!(matches!(err, Error::PatchDoesNotApply { .. }));

        // Edit the second patch only: a.c keeps its old mtime, b.c is new.
        let p2 = &series.patches[1];
        let text = fs::read_to_string(p2)
            .unwrap()
            .replace("int b = 2;", "int b = 3;");
        fs::write(p2, text).unwrap();
        let edited = Series::parse(&patches).unwrap();
        apply(&tree, &edited, &mut crate::events::NullReporter).unwrap();
        assert_eq!(
            fs::read_to_string(tree.path.join("b.c")).unwrap(),
            "int b = 3;\n"
        );
        let mtime = |f: &str| fs::metadata(tree.path.join(f)).unwrap().modified().unwrap();
        assert_eq!(mtime("a.c"), old, "unchanged file keeps its mtime");
        assert_ne!(mtime("b.c"), old, "changed file is new");
    }

    /// A tree changed after the series was applied (as the W=1 gate
    /// leaves it when it is killed: the pristine filter.c back in place,
    /// and filter.o built from it) is applied again, and the changed file
    /// does not get the recorded old mtime back, so make rebuilds what was
    /// built from its other content.
    #[test]
    fn a_tree_changed_after_the_apply_is_applied_again_with_new_mtimes() {
        let (_d, tree, patches) = fixture();
        let series = Series::parse(&patches).unwrap();
        apply(&tree, &series, &mut crate::events::NullReporter).unwrap();
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let record_path = tree.path.join(".git").join(MTIMES_FILE);
        let mut record: MtimeRecord =
            serde_json::from_str(&fs::read_to_string(&record_path).unwrap()).unwrap();
        for (path, v) in record.iter_mut() {
            v.1 = old;
            let file = fs::File::options()
                .write(true)
                .open(tree.path.join(path))
                .unwrap();
            file.set_modified(old).unwrap();
        }
        fs::write(&record_path, serde_json::to_string(&record).unwrap()).unwrap();
        // Unchanged: nothing is applied again, mtimes stay.
        apply(&tree, &series, &mut crate::events::NullReporter).unwrap();
        let mtime = |f: &str| fs::metadata(tree.path.join(f)).unwrap().modified().unwrap();
        assert_eq!(mtime("a.c"), old);

        write(&tree.path, "a.c", "int a;\n");
        let mut warned = Vec::new();
        let mut reporter = |e: Event| {
            if let Event::Warning(w) = e {
                warned.push(w);
            }
        };
        apply(&tree, &series, &mut reporter).unwrap();
        assert_eq!(
            fs::read_to_string(tree.path.join("a.c")).unwrap(),
            "int a = 1;\n"
        );
        assert_ne!(mtime("a.c"), old, "the changed file keeps a new mtime");
        assert_eq!(mtime("b.c"), old, "an unchanged file gets its old one back");
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].contains("1 file(s) differ") && warned[0].contains("a.c"));
        assert!(changed_since_head(&tree.path).unwrap().is_empty());
    }

    #[test]
    fn failing_patch_is_named_and_tree_is_clean() {
        let (_d, tree, patches) = fixture();
        let p1 = patches.join(&Series::parse(&patches).unwrap().patches[0]);
        let text = fs::read_to_string(&p1)
            .unwrap()
            .replace("-int a;", "-int zzz;");
        fs::write(&p1, text).unwrap();
        let err = apply(
            &tree,
            &Series::parse(&patches).unwrap(),
            &mut crate::events::NullReporter,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&p1.display().to_string()), "{msg}");
        assert!(msg.contains("does not apply"), "{msg}");
        // No `git am` is left in progress.
        assert!(!tree.path.join(".git/rebase-apply").exists());
    }
}
