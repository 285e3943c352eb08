//! The virtme-ng this project pins, in the venv `scripts/setup.sh` makes.
//!
//! vng starts QEMU by running `virtme-run` through `/bin/sh`, so finding
//! `vng` alone is not enough: a `vng` linked onto `PATH` without its venv's
//! `bin/` boots nothing (`virtme-run: not found`). The guest runner
//! therefore calls the venv's `vng` by absolute path with the venv's `bin/`
//! first on the child's `PATH`, and never falls back to another `vng` found
//! on the machine.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

/// The virtme-ng release `scripts/setup.sh` installs.
pub const PINNED_VERSION: &str = "1.42";

/// Where `scripts/setup.sh` puts the venv unless `FIBNEIGH_VNG_VENV` says.
pub const DEFAULT_VENV: &str = "/opt/fibneigh/virtme-ng";

/// The entry points a run needs from the venv.
pub const ENTRY_POINTS: [&str; 2] = ["vng", "virtme-run"];

/// One virtme-ng installation, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VirtmeNg {
    /// The venv.
    pub venv: PathBuf,
    /// The `vng` program, by absolute path.
    pub vng: PathBuf,
    /// The installed release, from the venv's package metadata.
    pub version: String,
}

impl VirtmeNg {
    /// The venv named by `FIBNEIGH_VNG_VENV`, or [`DEFAULT_VENV`].
    pub fn venv_dir() -> PathBuf {
        std::env::var_os("FIBNEIGH_VNG_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_VENV))
    }

    /// The pinned virtme-ng from [`Self::venv_dir`].
    pub fn locate() -> Result<Self> {
        Self::at(&Self::venv_dir())
    }

    /// The virtme-ng in `venv`: every entry point present and executable,
    /// and the pinned release.
    pub fn at(venv: &Path) -> Result<Self> {
        let missing = |what: String| Error::VirtmeNg {
            venv: venv.to_path_buf(),
            what,
        };
        for name in ENTRY_POINTS {
            let p = venv.join("bin").join(name);
            if !is_executable(&p) {
                return Err(missing(format!(
                    "{} is missing or not executable",
                    p.display()
                )));
            }
        }
        let version = installed_version(venv)
            .ok_or_else(|| missing("no virtme_ng-*.dist-info in its site-packages".to_string()))?;
        if version != PINNED_VERSION {
            return Err(missing(format!(
                "it holds virtme-ng {version}, the project pins {PINNED_VERSION}"
            )));
        }
        Ok(VirtmeNg {
            venv: venv.to_path_buf(),
            vng: venv.join("bin/vng"),
            version,
        })
    }

    /// `PATH` for the child: the venv's `bin/` first, then `current`.
    pub fn child_path(&self, current: Option<OsString>) -> OsString {
        let mut parts = vec![self.venv.join("bin")];
        if let Some(cur) = current {
            parts.extend(std::env::split_paths(&cur));
        }
        std::env::join_paths(parts).unwrap_or_else(|_| self.venv.join("bin").into_os_string())
    }

    /// One line for logs: which vng, which release.
    pub fn describe(&self) -> String {
        format!("virtme-ng {} ({})", self.version, self.vng.display())
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The release recorded by pip: `lib/python3.*/site-packages/virtme_ng-<v>.dist-info`.
fn installed_version(venv: &Path) -> Option<String> {
    let lib = fs::read_dir(venv.join("lib")).ok()?;
    for py in lib.flatten() {
        let Ok(entries) = fs::read_dir(py.path().join("site-packages")) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(v) = name
                .strip_prefix("virtme_ng-")
                .and_then(|r| r.strip_suffix(".dist-info"))
            {
                return Some(v.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn fake_venv(dir: &Path, entry_points: &[&str], version: Option<&str>) {
        fs::create_dir_all(dir.join("bin")).unwrap();
        for e in entry_points {
            let p = dir.join("bin").join(e);
            fs::write(&p, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        if let Some(v) = version {
            fs::create_dir_all(dir.join(format!(
                "lib/python3.11/site-packages/virtme_ng-{v}.dist-info"
            )))
            .unwrap();
        }
    }

    #[test]
    fn a_complete_pinned_venv_is_found_by_absolute_path() {
        let t = tempfile::tempdir().unwrap();
        fake_venv(t.path(), &ENTRY_POINTS, Some(PINNED_VERSION));
        let v = VirtmeNg::at(t.path()).unwrap();
        assert_eq!(v.vng, t.path().join("bin/vng"));
        assert!(v.vng.is_absolute());
        assert_eq!(v.version, PINNED_VERSION);
    }

    #[test]
    fn vng_without_virtme_run_is_refused_naming_it() {
        // The fresh-machine defect: only vng, and vng runs virtme-run.
        let t = tempfile::tempdir().unwrap();
        fake_venv(t.path(), &["vng"], Some(PINNED_VERSION));
        let e = VirtmeNg::at(t.path()).unwrap_err().to_string();
        assert!(e.contains("virtme-run"), "{e}");
        assert!(e.contains("scripts/setup.sh"), "{e}");
    }

    #[test]
    fn another_release_is_refused() {
        let t = tempfile::tempdir().unwrap();
        fake_venv(t.path(), &ENTRY_POINTS, Some("1.30"));
        let e = VirtmeNg::at(t.path()).unwrap_err().to_string();
        assert!(e.contains("1.30") && e.contains(PINNED_VERSION), "{e}");
    }

    #[test]
    fn a_missing_venv_is_refused() {
        let t = tempfile::tempdir().unwrap();
        assert!(VirtmeNg::at(&t.path().join("nope")).is_err());
    }

    #[test]
    fn the_venv_bin_comes_first_on_the_childs_path() {
        let v = VirtmeNg {
            venv: PathBuf::from("/opt/v"),
            vng: PathBuf::from("/opt/v/bin/vng"),
            version: PINNED_VERSION.into(),
        };
        let p = v.child_path(Some("/usr/local/bin:/usr/bin".into()));
        assert_eq!(p, OsString::from("/opt/v/bin:/usr/local/bin:/usr/bin"));
        assert_eq!(v.child_path(None), OsString::from("/opt/v/bin"));
    }
}
