//! The kernel bases the project builds on, each named once with what it
//! needs: the Debian source package and suite, where its series lives in
//! the repository and its tree in the cache, and how a posted series is
//! prefixed.

use std::path::{Path, PathBuf};

use crate::apt::PrivateApt;
use crate::error::{Error, Result};
use crate::kbuild::Arch;
use crate::source::{self, SourceSpec, SourceTree};

fibneigh_names::named_enum!(
    /// A base the series applies to.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum KernelBase: "base" {
        /// Linux 7.3 (Debian's linux-source-7.3 from trixie-backports): the
        /// series for bpf-next, in `kernel-patches/`.
        V7_3 => "7.3",
        /// Linux 6.12 LTS (linux-source-6.12 from bookworm-security): the
        /// downstream backport, in `kernel-patches/6.12/`.
        V6_12 => "6.12",
    }
);

impl KernelBase {
    /// The Debian source package and the suite it comes from.
    pub fn source(self) -> SourceSpec {
        SourceSpec::Debian {
            package: self.package().into(),
            suite: self.suite().into(),
        }
    }

    /// The Debian source package, e.g. `linux-source-7.3`.
    pub fn package(self) -> &'static str {
        match self {
            KernelBase::V7_3 => "linux-source-7.3",
            KernelBase::V6_12 => "linux-source-6.12",
        }
    }

    fn suite(self) -> &'static str {
        match self {
            KernelBase::V7_3 => "trixie-backports",
            KernelBase::V6_12 => "bookworm-security",
        }
    }

    /// Its series' directory in the repository at `repo`.
    pub fn patches(self, repo: &Path) -> PathBuf {
        match self {
            KernelBase::V7_3 => repo.join("kernel-patches"),
            KernelBase::V6_12 => repo.join("kernel-patches/6.12"),
        }
    }

    /// The subject prefix of its posted series (`scripts/series.sh`).
    pub fn subject_prefix(self) -> &'static str {
        match self {
            KernelBase::V7_3 => "PATCH bpf-next",
            KernelBase::V6_12 => "PATCH 6.12-downstream",
        }
    }

    /// The branch `scripts/series.sh import` and `export` use by default.
    pub fn branch(self) -> &'static str {
        match self {
            KernelBase::V7_3 => "neigh-state",
            KernelBase::V6_12 => "neigh-state-6.12",
        }
    }

    /// The tree the pipeline already unpacked for this base in `cache`
    /// (`arch`'s: x86-64's own, or another architecture's clone), as it
    /// is: nothing is fetched, unpacked, patched, configured or removed.
    /// Of several versions, the one the cached package is (what `vm build`
    /// uses without `--refresh-source`), else the last by name; none is an
    /// error naming the base.
    pub fn unpacked_tree(self, cache: &Path, arch: Arch) -> Result<SourceTree> {
        let mut trees = source::unpacked_trees(cache, self.package(), arch)?;
        let cached = PrivateApt::new(cache.join("apt").join(self.suite()))
            .cached(self.package(), None)
            .ok()
            .flatten()
            .map(|deb| format!("{}_{}", self.package(), deb.version));
        if let Some(i) = trees
            .iter()
            .position(|t| Some(&t.base.id) == cached.as_ref())
        {
            return Ok(trees.swap_remove(i));
        }
        trees.pop().ok_or_else(|| Error::NoTree {
            what: match arch {
                Arch::X86_64 => self.package().to_string(),
                other => format!("{} ({})", self.package(), other.name()),
            },
            args: match arch {
                Arch::X86_64 => self.name().to_string(),
                other => format!("{} --arch {}", self.name(), other.name()),
            },
            trees: cache.join("trees"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_base_is_named_once_with_its_package_and_series() {
        assert_eq!("6.12".parse::<KernelBase>(), Ok(KernelBase::V6_12));
        assert_eq!(
            KernelBase::V6_12.source(),
            SourceSpec::Debian {
                package: "linux-source-6.12".into(),
                suite: "bookworm-security".into()
            }
        );
        assert_eq!(
            KernelBase::V6_12.patches(Path::new("/r")),
            Path::new("/r/kernel-patches/6.12")
        );
        assert!("6.1".parse::<KernelBase>().is_err());
        assert_eq!(KernelBase::V7_3.subject_prefix(), "PATCH bpf-next");
        assert_eq!(KernelBase::V6_12.branch(), "neigh-state-6.12");
    }

    /// `dir` holds a finished tree as the pipeline leaves it (its base
    /// marker), without sources.
    fn finish(dir: &Path, id: &str) {
        std::fs::create_dir_all(dir.join(".git")).unwrap();
        let base = crate::source::BaseInfo {
            id: id.into(),
            origin: "test".into(),
            upstream: None,
        };
        std::fs::write(
            dir.join(".git/fibneigh-base.json"),
            serde_json::to_string(&base).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn the_unpacked_tree_is_found_read_only_or_named_missing() {
        let cache = tempfile::tempdir().unwrap();
        let c = cache.path();
        let err = KernelBase::V6_12
            .unpacked_tree(c, Arch::X86_64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no linux-source-6.12 tree"), "{err}");
        assert!(err.contains("vm tree --base 6.12"), "{err}");
        assert!(
            err.contains(&c.join("trees").display().to_string()),
            "{err}"
        );

        let older = c.join("trees/linux-source-6.12_6.12.100-1/linux");
        let newer = c.join("trees/linux-source-6.12_6.12.118-1~deb12u1/linux");
        finish(&older, "linux-source-6.12_6.12.100-1");
        finish(&newer, "linux-source-6.12_6.12.118-1~deb12u1");
        let tree = KernelBase::V6_12.unpacked_tree(c, Arch::X86_64).unwrap();
        assert_eq!(tree.path, newer);
        assert_eq!(tree.base.id, "linux-source-6.12_6.12.118-1~deb12u1");
        // Not another base's, and not another architecture's.
        assert!(KernelBase::V7_3.unpacked_tree(c, Arch::X86_64).is_err());
        let err = KernelBase::V6_12
            .unpacked_tree(c, Arch::Um)
            .unwrap_err()
            .to_string();
        assert!(err.contains("vm tree --base 6.12 --arch um"), "{err}");
        let um = newer.with_file_name("linux-um");
        finish(&um, "linux-source-6.12_6.12.118-1~deb12u1");
        assert_eq!(
            KernelBase::V6_12.unpacked_tree(c, Arch::Um).unwrap().path,
            um
        );
        // Nothing was made or removed.
        let mut left: Vec<_> = std::fs::read_dir(c.join("trees"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left.len(), 2);
        assert!(!c.join("apt").exists());
    }
}
