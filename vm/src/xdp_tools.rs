//! xdp-tools from Debian trixie, for putting a forwarder people deploy
//! (`xdp-forward`) on trial: bookworm's xdp-tools (1.3.1) predates
//! xdp-forward. The packages come from the private apt instance (the
//! mirror the system's apt configuration names; the system's sources are
//! never touched) and are unpacked into the cache. The trixie binaries need
//! trixie's glibc, so they run through trixie's own loader with its
//! libraries: `ld-linux-x86-64.so.2 --library-path LIBDIR BINARY ...`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::apt::{self, PrivateApt};
use crate::cmd;
use crate::error::{Error, IoContext, Result};

/// The suite xdp-tools comes from.
pub const SUITE: &str = "trixie";

/// xdp-tools and what its binaries load at run time, down to the C library.
pub const PACKAGES: [&str; 7] = [
    "xdp-tools",
    "libxdp1",
    "libbpf1",
    "libc6",
    "libelf1t64",
    "zlib1g",
    "libzstd1",
];

const LIBDIR: &str = "usr/lib/x86_64-linux-gnu";

/// An unpacked xdp-tools with its run-time libraries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpTools {
    /// The xdp-tools package version, e.g. `1.5.4-1`.
    pub version: String,
    /// Where the packages are unpacked.
    pub root: PathBuf,
}

impl XdpTools {
    /// The unpacked copy in `cache`, if there is a complete one.
    pub fn cached(cache: &Path) -> Result<Option<XdpTools>> {
        let dir = cache.join("xdp-tools");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(None);
        };
        let mut found: Vec<XdpTools> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(".complete").is_file())
            .map(|e| XdpTools {
                version: e.file_name().to_string_lossy().into_owned(),
                root: e.path(),
            })
            .collect();
        found.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(found.pop())
    }

    /// The cached copy, or fetch and unpack the packages first.
    pub fn ensure(cache: &Path) -> Result<XdpTools> {
        if let Some(t) = Self::cached(cache)? {
            return Ok(t);
        }
        let apt = PrivateApt::new(cache.join("apt").join(SUITE));
        let mirror = apt::system_mirror(Path::new("/etc/apt"), SUITE)?;
        apt.update(&mirror, SUITE)?;
        let debs = PACKAGES
            .iter()
            .map(|p| apt.fetch_candidate(p, SUITE))
            .collect::<Result<Vec<_>>>()?;
        let version = debs[0].version.clone();
        let root = cache.join("xdp-tools").join(&version);
        let partial = root.with_extension("partial");
        if partial.exists() {
            fs::remove_dir_all(&partial).at(&partial)?;
        }
        fs::create_dir_all(&partial).at(&partial)?;
        for deb in &debs {
            cmd::run(
                Command::new("dpkg-deb")
                    .arg("-x")
                    .arg(&deb.path)
                    .arg(&partial),
            )?;
        }
        let tools = XdpTools {
            version,
            root: partial.clone(),
        };
        for path in [tools.loader(), tools.binary("xdp-forward")] {
            if !path.is_file() {
                return Err(Error::Package {
                    package: "xdp-tools".into(),
                    suite: SUITE.into(),
                    reason: format!("{} is missing after unpacking", path.display()),
                });
            }
        }
        let done = partial.join(".complete");
        fs::write(&done, "").at(&done)?;
        if root.exists() {
            fs::remove_dir_all(&root).at(&root)?;
        }
        fs::rename(&partial, &root).at(&root)?;
        Ok(XdpTools { root, ..tools })
    }

    /// trixie's dynamic loader.
    pub fn loader(&self) -> PathBuf {
        self.root.join(LIBDIR).join("ld-linux-x86-64.so.2")
    }

    /// An xdp-tools program, e.g. `xdp-forward`.
    pub fn binary(&self, name: &str) -> PathBuf {
        self.root.join("usr/sbin").join(name)
    }

    /// A shell command line that runs `name` from this copy with its own
    /// libraries (and libxdp's BPF objects), for a command template.
    pub fn shell_command(&self, name: &str) -> String {
        let lib = self.root.join(LIBDIR);
        format!(
            "env LIBXDP_OBJECT_PATH={} {} --library-path {} {}",
            shell_quote(&lib.join("bpf")),
            shell_quote(&self.loader()),
            shell_quote(&lib),
            shell_quote(&self.binary(name)),
        )
    }
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_complete_copy_counts_and_the_newest_wins() {
        let d = tempfile::tempdir().expect("tempdir");
        assert_eq!(XdpTools::cached(d.path()).expect("read"), None);
        for (v, complete) in [("1.5.3-1", true), ("1.5.4-1", true), ("1.6.0-1", false)] {
            let p = d.path().join("xdp-tools").join(v);
            fs::create_dir_all(&p).expect("mkdir");
            if complete {
                fs::write(p.join(".complete"), "").expect("write");
            }
        }
        let t = XdpTools::cached(d.path()).expect("read").expect("found");
        assert_eq!(t.version, "1.5.4-1");
        let cmd = t.shell_command("xdp-forward");
        assert!(cmd.contains("--library-path"), "{cmd}");
        assert!(cmd.ends_with("/usr/sbin/xdp-forward'"), "{cmd}");
    }

    #[test]
    fn quoting_survives_a_quote() {
        assert_eq!(shell_quote(Path::new("/a'b")), r"'/a'\''b'");
    }
}
