//! The kernel bases the project builds on, each named once with what it
//! needs: the Debian source package and suite, and where its series lives
//! in the repository.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::source::SourceSpec;

/// A base the series applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelBase {
    /// Linux 7.3 (Debian's linux-source-7.3 from trixie-backports): the
    /// series for bpf-next, in `kernel-patches/`.
    V7_3,
    /// Linux 6.12 LTS (linux-source-6.12 from bookworm-security): the
    /// downstream backport, in `kernel-patches/6.12/`.
    V6_12,
}

impl KernelBase {
    pub const ALL: &'static [KernelBase] = &[KernelBase::V7_3, KernelBase::V6_12];

    /// "7.3" or "6.12".
    pub fn name(self) -> &'static str {
        match self {
            KernelBase::V7_3 => "7.3",
            KernelBase::V6_12 => "6.12",
        }
    }

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

impl fmt::Display for KernelBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A base name that is neither "7.3" nor "6.12".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown base {0:?} (expected 7.3 or 6.12)")]
pub struct UnknownBase(pub String);

impl FromStr for KernelBase {
    type Err = UnknownBase;

    fn from_str(s: &str) -> Result<Self, UnknownBase> {
        KernelBase::ALL
            .iter()
            .copied()
            .find(|b| b.name() == s)
            .ok_or_else(|| UnknownBase(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_base_is_named_once_with_its_package_and_series() {
        for &b in KernelBase::ALL {
            assert_eq!(b.name().parse::<KernelBase>(), Ok(b));
        }
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
