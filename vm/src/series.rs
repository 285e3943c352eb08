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

const APPLIED_FILE: &str = ".git/fibneigh-series";

/// Make `tree`'s HEAD the base plus `series`, one `git am` per patch.
///
/// Re-applying after editing one patch must not make `make` rebuild the
/// world: files whose content ends up the same as before get their old
/// modification time back, so only what really changed is recompiled.
pub fn apply(tree: &SourceTree, series: &Series, reporter: &mut dyn Reporter) -> Result<()> {
    let digest = series.digest()?;
    let marker = tree.path.join(APPLIED_FILE);
    if fs::read_to_string(&marker).ok().as_deref() == Some(digest.as_str()) {
        reporter.event(Event::Cached(
            Phase::Patch,
            format!("series {digest} already applied"),
        ));
        return Ok(());
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
    let old_head = git(&tree.path, &["rev-parse", "HEAD"])?.trim().to_string();
    let touched_before = changed_files(&tree.path, BASE_TAG, &old_head)?;
    let mtimes = mtimes(&tree.path, &touched_before);

    // An `am` left behind by an interrupted run would block the next one.
    let _ = git(&tree.path, &["am", "--abort"]);
    git(&tree.path, &["reset", "-q", "--hard", BASE_TAG])?;
    for patch in &series.patches {
        let out = git_cmd(&tree.path)
            .args(["am", "-q", "--keep-cr", "--no-3way"])
            .arg(patch)
            .output()
            .map_err(|source| Error::Spawn {
                cmd: "git am".into(),
                source,
            })?;
        if !out.status.success() {
            let _ = git(&tree.path, &["am", "--abort"]);
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
    let new_head = git(&tree.path, &["rev-parse", "HEAD"])?.trim().to_string();
    let really_changed = changed_files(&tree.path, &old_head, &new_head)?;
    for (file, mtime) in mtimes {
        if !really_changed.contains(&file) {
            if let Ok(f) = fs::File::options().write(true).open(tree.path.join(&file)) {
                let _ = f.set_modified(mtime);
            }
        }
    }
    fs::write(&marker, &digest).at(&marker)?;
    reporter.event(Event::End(Phase::Patch));
    Ok(())
}

fn changed_files(tree: &Path, from: &str, to: &str) -> Result<BTreeSet<String>> {
    Ok(
        git(tree, &["diff", "--name-only", "--no-renames", from, to])?
            .lines()
            .map(str::to_string)
            .collect(),
    )
}

fn mtimes(tree: &Path, files: &BTreeSet<String>) -> BTreeMap<String, SystemTime> {
    files
        .iter()
        .filter_map(|f| Some((f.clone(), fs::metadata(tree.join(f)).ok()?.modified().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
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
}
