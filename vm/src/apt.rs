//! Fetching a Debian package from a suite the system does not track, using
//! the mirror the system's own apt configuration names and a private apt
//! state directory. The system's apt sources are never modified.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd;
use crate::error::{Error, IoContext, Result};

/// One `deb` source from the apt configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    pub uri: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
}

/// Parse the one-line format of `sources.list` and `*.list` files:
/// `deb [options] URI suite [component...]`.
pub fn parse_one_line(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut rest = match line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        {
            Some(rest) => rest.trim_start(),
            None => continue,
        };
        if rest.starts_with('[') {
            match rest.find(']') {
                Some(end) => rest = rest[end + 1..].trim_start(),
                None => continue,
            }
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(AptSource {
            uri: uri.to_string(),
            suites: vec![suite.to_string()],
            components: words.map(str::to_string).collect(),
        });
    }
    out
}

/// Parse the deb822 format of `*.sources` files: stanzas separated by blank
/// lines with `Types:`, `URIs:`, `Suites:`, `Components:` and `Enabled:`.
pub fn parse_deb822(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n").flat_map(|s| s.split("\r\n\r\n")) {
        let mut types = Vec::new();
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut components = Vec::new();
        let mut enabled = true;
        let mut current: Option<&mut Vec<String>> = None;
        for line in stanza.lines() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                // Continuation of the previous field.
                if let Some(list) = current.as_mut() {
                    list.extend(line.split_whitespace().map(str::to_string));
                }
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                current = None;
                continue;
            };
            let values = value.split_whitespace().map(str::to_string);
            current = match key.trim().to_ascii_lowercase().as_str() {
                "types" => Some(&mut types),
                "uris" => Some(&mut uris),
                "suites" => Some(&mut suites),
                "components" => Some(&mut components),
                "enabled" => {
                    enabled = !value.trim().eq_ignore_ascii_case("no");
                    None
                }
                _ => None,
            };
            if let Some(list) = current.as_mut() {
                list.extend(values);
            }
        }
        if !enabled || !types.iter().any(|t| t == "deb") {
            continue;
        }
        for uri in uris {
            out.push(AptSource {
                uri,
                suites: suites.clone(),
                components: components.clone(),
            });
        }
    }
    out
}

/// The Debian archive mirror among `sources`: the first `deb` source that
/// carries a regular (non-security) suite. Security updates live in a
/// separate archive that has no backports.
pub fn debian_mirror(sources: &[AptSource]) -> Option<String> {
    sources
        .iter()
        .find(|s| {
            !s.uri.contains("security")
                && s.suites
                    .iter()
                    .any(|suite| !suite.ends_with("-security") && !suite.ends_with("/updates"))
        })
        .map(|s| s.uri.trim_end_matches('/').to_string())
}

/// The mirror to fetch `suite` from: a source that already carries that
/// suite, else one that carries the same kind of suite (the security
/// archive for `*-security`), else the main Debian mirror.
pub fn mirror_for_suite(sources: &[AptSource], suite: &str) -> Option<String> {
    let trim = |s: &AptSource| s.uri.trim_end_matches('/').to_string();
    if let Some(s) = sources.iter().find(|s| s.suites.iter().any(|x| x == suite)) {
        return Some(trim(s));
    }
    if suite.ends_with("-security") {
        return sources
            .iter()
            .find(|s| s.suites.iter().any(|x| x.ends_with("-security")))
            .map(trim);
    }
    debian_mirror(sources)
}

/// Read every apt source under `etc_apt` (normally `/etc/apt`).
pub fn system_sources(etc_apt: &Path) -> Result<Vec<AptSource>> {
    let mut sources = Vec::new();
    let list = etc_apt.join("sources.list");
    if list.exists() {
        sources.extend(parse_one_line(&fs::read_to_string(&list).at(&list)?));
    }
    let dir = etc_apt.join("sources.list.d");
    if dir.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(&dir)
            .at(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for path in entries {
            let parse: fn(&str) -> Vec<AptSource> = match path.extension().and_then(|e| e.to_str())
            {
                Some("list") => parse_one_line,
                Some("sources") => parse_deb822,
                _ => continue,
            };
            sources.extend(parse(&fs::read_to_string(&path).at(&path)?));
        }
    }
    Ok(sources)
}

/// The system's Debian mirror for `suite`, read from its apt configuration.
pub fn system_mirror(etc_apt: &Path, suite: &str) -> Result<String> {
    mirror_for_suite(&system_sources(etc_apt)?, suite)
        .ok_or_else(|| Error::NoMirror(etc_apt.to_path_buf()))
}

/// A downloaded `.deb` and the exact version apt resolved.
#[derive(Debug, Clone)]
pub struct DebPackage {
    pub path: PathBuf,
    pub version: String,
}

/// A private apt instance rooted at `root`: its own sources, lists and
/// cache, sharing only the system's keyrings.
pub struct PrivateApt {
    root: PathBuf,
}

impl PrivateApt {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn options(&self) -> Vec<String> {
        let r = self.root.display();
        [
            format!("Dir::State={r}/state"),
            format!("Dir::Cache={r}/cache"),
            "Dir::Etc::SourceList=/dev/null".to_string(),
            format!("Dir::Etc::SourceParts={r}/sources.list.d"),
            "Dir::Etc::Preferences=/dev/null".to_string(),
            format!("Dir::Etc::PreferencesParts={r}/preferences.d"),
            "Debug::NoLocking=1".to_string(),
            // Our private directories belong to the invoking user, not _apt.
            "APT::Sandbox::User=root".to_string(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    fn apt(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.args(self.options()).env("LC_ALL", "C");
        c
    }

    /// Point the private instance at `mirror`/`suite` and refresh its lists.
    pub fn update(&self, mirror: &str, suite: &str) -> Result<()> {
        for d in [
            "state/lists/partial",
            "cache/archives/partial",
            "sources.list.d",
            "preferences.d",
            "debs",
        ] {
            let p = self.root.join(d);
            fs::create_dir_all(&p).at(&p)?;
        }
        let sources = self.root.join("sources.list.d/fibneigh.sources");
        let stanza = format!(
            "Types: deb\nURIs: {mirror}\nSuites: {suite}\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
        fs::write(&sources, stanza).at(&sources)?;
        cmd::run(self.apt("apt-get").args(["-q", "update"]))
    }

    /// The candidate version of `package` in the refreshed lists.
    pub fn candidate(&self, package: &str) -> Result<Option<String>> {
        let out = cmd::output(self.apt("apt-cache").args(["policy", package]))?;
        Ok(out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Candidate:"))
            .map(str::trim)
            .filter(|v| *v != "(none)")
            .map(str::to_string))
    }

    /// The candidate version of `package` from `suite`'s refreshed lists,
    /// downloaded unless a copy is cached; an error names a package the
    /// suite does not have.
    pub fn fetch_candidate(&self, package: &str, suite: &str) -> Result<DebPackage> {
        let version = self.candidate(package)?.ok_or_else(|| Error::Package {
            package: package.to_string(),
            suite: suite.to_string(),
            reason: "not found in the suite's package lists".into(),
        })?;
        match self.cached(package, Some(&version))? {
            Some(deb) => Ok(deb),
            None => self.download(package, &version),
        }
    }

    /// Download `package` at `version` into the private `debs` directory.
    pub fn download(&self, package: &str, version: &str) -> Result<DebPackage> {
        let dir = self.root.join("debs");
        cmd::run(self.apt("apt-get").current_dir(&dir).args([
            "-q",
            "download",
            &format!("{package}={version}"),
        ]))?;
        self.cached(package, Some(version))?
            .ok_or_else(|| Error::Package {
                package: package.to_string(),
                suite: String::new(),
                reason: format!("apt-get download left no .deb in {}", dir.display()),
            })
    }

    /// A previously downloaded `.deb` of `package` (at `version`, or the
    /// newest one) without touching the network.
    pub fn cached(&self, package: &str, version: Option<&str>) -> Result<Option<DebPackage>> {
        let dir = self.root.join("debs");
        if !dir.is_dir() {
            return Ok(None);
        }
        let mut found = Vec::new();
        for entry in fs::read_dir(&dir).at(&dir)? {
            let path = entry.at(&dir)?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !name.starts_with(&format!("{package}_")) || !name.ends_with(".deb") {
                continue;
            }
            let v = deb_field(&path, "Version")?;
            if version.is_none_or(|want| want == v) {
                found.push(DebPackage { path, version: v });
            }
        }
        // Highest Debian version wins; dpkg knows the ordering rules.
        found.sort_by(|a, b| {
            if dpkg_version_gt(&a.version, &b.version) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Less
            }
        });
        Ok(found.pop())
    }
}

/// One control field of a `.deb`.
pub fn deb_field(deb: &Path, field: &str) -> Result<String> {
    Ok(
        cmd::output(Command::new("dpkg-deb").arg("-f").arg(deb).arg(field))?
            .trim()
            .to_string(),
    )
}

fn dpkg_version_gt(a: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mirror the test sources name.
    const MIRROR: &str = "http://mirror.example/debian";

    #[test]
    fn one_line_format_with_options_and_comments() {
        let text = "\
# a comment
deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main contrib
deb-src http://mirror.example/debian bookworm main
deb http://security.example/debian-security bookworm-security main # trailing
";
        let s = parse_one_line(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].uri, "http://mirror.example/debian/");
        assert_eq!(s[0].suites, ["bookworm"]);
        assert_eq!(s[0].components, ["main", "contrib"]);
        assert_eq!(debian_mirror(&s).as_deref(), Some(MIRROR));
    }

    #[test]
    fn deb822_format_skips_security_disabled_and_src() {
        let text = "\
Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
Enabled: no
URIs: http://off.example/debian
Suites: bookworm

Types: deb
# http://snapshot.example/archive
URIs: http://mirror.example/debian
Suites: bookworm
 bookworm-updates
Components: main
";
        let s = parse_deb822(text);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[1].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(debian_mirror(&s).as_deref(), Some(MIRROR));
    }

    #[test]
    fn only_security_sources_give_no_mirror() {
        let s = parse_one_line("deb http://sec.example/debian-security bookworm-security main\n");
        assert_eq!(debian_mirror(&s), None);
    }

    #[test]
    fn system_sources_reads_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sources.list.d")).unwrap();
        std::fs::write(
            d.join("sources.list.d/a.sources"),
            "Types: deb\nURIs: http://m1.example/debian\nSuites: trixie\n",
        )
        .unwrap();
        std::fs::write(
            d.join("sources.list.d/b.list"),
            "deb http://m2.example/debian bookworm main\n",
        )
        .unwrap();
        std::fs::write(
            d.join("sources.list.d/c.disabled"),
            "deb http://m3.example/debian bookworm main\n",
        )
        .unwrap();
        let s = system_sources(d).unwrap();
        let uris: Vec<&str> = s.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(
            uris,
            ["http://m1.example/debian", "http://m2.example/debian"]
        );
        assert_eq!(
            system_mirror(d, "trixie-backports").unwrap(),
            "http://m1.example/debian"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            system_mirror(empty.path(), "trixie"),
            Err(Error::NoMirror(_))
        ));
    }

    #[test]
    fn suite_picks_the_archive_that_carries_it() {
        let s = parse_one_line(
            "deb http://main.example/debian bookworm main\n\
             deb http://sec.example/debian-security bookworm-security main\n",
        );
        for (suite, mirror) in [
            ("bookworm-security", "http://sec.example/debian-security"),
            ("trixie-security", "http://sec.example/debian-security"),
            ("trixie-backports", "http://main.example/debian"),
            ("bookworm", "http://main.example/debian"),
        ] {
            assert_eq!(
                mirror_for_suite(&s, suite).as_deref(),
                Some(mirror),
                "{suite}"
            );
        }
    }
}
