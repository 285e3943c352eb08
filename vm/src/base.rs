//! The kernel bases the project builds on, each named once with what it
//! needs: the Debian source package and suite, and where its series lives
//! in the repository.

use std::path::{Path, PathBuf};

use crate::source::SourceSpec;

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
        let (package, suite) = match self {
            KernelBase::V7_3 => ("linux-source-7.3", "trixie-backports"),
            KernelBase::V6_12 => ("linux-source-6.12", "bookworm-security"),
        };
        SourceSpec::Debian {
            package: package.into(),
            suite: suite.into(),
        }
    }

    /// Its series' directory in the repository at `repo`.
    pub fn patches(self, repo: &Path) -> PathBuf {
        match self {
            KernelBase::V7_3 => repo.join("kernel-patches"),
            KernelBase::V6_12 => repo.join("kernel-patches/6.12"),
        }
    }
}

/// A base name that is neither "7.3" nor "6.12".
pub type UnknownBase = fibneigh_names::UnknownName;

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
    }
}
