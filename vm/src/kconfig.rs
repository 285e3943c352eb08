//! Step 4: configure the tree from `tinyconfig` plus the committed fragment,
//! and prove that `make olddefconfig` kept every requested option.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::cmd;
use crate::error::{Error, IoContext, Result};
use crate::events::{Event, Phase, Reporter};
use crate::kbuild::Arch;

/// One line of a fragment: `CONFIG_X=value` or `# CONFIG_X is not set`
/// (`value` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigOption {
    pub name: String,
    pub value: Option<String>,
}

impl ConfigOption {
    fn line(&self) -> String {
        match &self.value {
            Some(v) => format!("{}={v}", self.name),
            None => format!("# {} is not set", self.name),
        }
    }
}

/// Parse a fragment. Anything that is neither an option, a "not set" line,
/// a comment nor blank is an error naming its line.
pub fn parse_fragment(text: &str, file: &Path) -> Result<Vec<ConfigOption>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                if name.starts_with("CONFIG_") {
                    out.push(ConfigOption {
                        name: name.to_string(),
                        value: None,
                    });
                }
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((name, value)) if name.starts_with("CONFIG_") && !value.is_empty() => {
                out.push(ConfigOption {
                    name: name.to_string(),
                    value: Some(value.to_string()),
                })
            }
            _ => {
                return Err(Error::Parse {
                    file: file.to_path_buf(),
                    line: i + 1,
                    reason: format!("not a config option: {raw:?}"),
                })
            }
        }
    }
    Ok(out)
}

/// The fragment lines a resolved `.config` does not honour. `=n` and
/// "is not set" are honoured when the option is not set to anything else.
pub fn dropped(fragment: &[ConfigOption], dotconfig: &str) -> Vec<String> {
    let mut set: HashMap<&str, &str> = HashMap::new();
    for line in dotconfig.lines() {
        if let Some((name, value)) = line.split_once('=') {
            if name.starts_with("CONFIG_") {
                set.insert(name, value);
            }
        }
    }
    fragment
        .iter()
        .filter(|opt| {
            let actual = set.get(opt.name.as_str()).copied();
            match opt.value.as_deref() {
                None | Some("n") => actual.is_some_and(|v| v != "n"),
                Some(want) => actual != Some(want),
            }
        })
        .map(ConfigOption::line)
        .collect()
}

const STAMP: &str = ".fibneigh-config";

/// Configure `tree` unless it already is for `stamp` (a digest of the
/// fragment and the series it builds).
pub fn configure(
    tree: &Path,
    arch: Arch,
    fragment_path: &Path,
    stamp: &str,
    reporter: &mut dyn Reporter,
) -> Result<()> {
    let text = fs::read_to_string(fragment_path).at(fragment_path)?;
    let fragment = parse_fragment(&text, fragment_path)?;
    let stamp_path = tree.join(STAMP);
    if tree.join(".config").exists()
        && fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp)
    {
        reporter.event(Event::Cached(Phase::Configure, "config unchanged".into()));
        return Ok(());
    }
    reporter.event(Event::Start(
        Phase::Configure,
        format!("tinyconfig ({}) + {}", arch.name(), fragment_path.display()),
    ));
    let _ = fs::remove_file(&stamp_path);
    let make = || {
        let mut c = arch.make(tree);
        c.arg("-s");
        c
    };
    cmd::run(make().arg("tinyconfig"))?;
    let mut merge = Command::new("scripts/kconfig/merge_config.sh");
    if let Some(a) = arch.make_arch() {
        merge.env("ARCH", a);
    }
    cmd::run(
        merge
            .current_dir(tree)
            .args(["-m", ".config"])
            .arg(fragment_path),
    )?;
    cmd::run(make().arg("olddefconfig"))?;
    let dotconfig_path = tree.join(".config");
    let dotconfig = fs::read_to_string(&dotconfig_path).at(&dotconfig_path)?;
    let lost = dropped(&fragment, &dotconfig);
    if !lost.is_empty() {
        return Err(Error::DroppedOptions {
            fragment: fragment_path.to_path_buf(),
            dropped: lost,
        });
    }
    fs::write(&stamp_path, stamp).at(&stamp_path)?;
    reporter.event(Event::End(Phase::Configure));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(text: &str) -> Vec<ConfigOption> {
        parse_fragment(text, Path::new("config")).unwrap()
    }

    #[test]
    fn parses_values_not_set_and_comments() {
        let f = frag(
            "# comment\n\nCONFIG_A=y\nCONFIG_B=\"str\"\n# CONFIG_C is not set\nCONFIG_D=0x10\n",
        );
        assert_eq!(f.len(), 4);
        assert_eq!(f[1].value.as_deref(), Some("\"str\""));
        assert_eq!(
            f[2],
            ConfigOption {
                name: "CONFIG_C".into(),
                value: None
            }
        );
    }

    #[test]
    fn garbage_line_is_an_error_with_its_number() {
        let err = parse_fragment("CONFIG_A=y\nBOGUS\n", Path::new("frag")).unwrap_err();
        assert!(err.to_string().starts_with("frag:2:"), "{err}");
    }

    #[test]
    fn reports_every_dropped_option() {
        let f = frag("CONFIG_A=y\nCONFIG_B=y\nCONFIG_C=m\n# CONFIG_D is not set\nCONFIG_E=n\nCONFIG_F=\"x\"\n");
        let dotconfig =
            "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_D=y\nCONFIG_F=\"x\"\n";
        assert_eq!(
            dropped(&f, dotconfig),
            ["CONFIG_B=y", "CONFIG_C=m", "# CONFIG_D is not set"]
        );
    }

    #[test]
    fn nothing_dropped_when_all_survive() {
        let f = frag("CONFIG_A=y\n# CONFIG_D is not set\n");
        assert!(dropped(&f, "CONFIG_A=y\n# CONFIG_D is not set\n").is_empty());
    }

    #[test]
    fn the_committed_fragment_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel-patches/config");
        let text = fs::read_to_string(&path).unwrap();
        let f = parse_fragment(&text, &path).unwrap();
        assert!(f.iter().any(|o| o.name == "CONFIG_DEBUG_INFO_BTF"));
    }

    #[test]
    fn the_committed_uml_fragment_parses_and_has_hostfs() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel-patches/config-um");
        let text = fs::read_to_string(&path).unwrap();
        let f = parse_fragment(&text, &path).unwrap();
        for name in [
            "CONFIG_HOSTFS",
            "CONFIG_BPF_SYSCALL",
            "CONFIG_DEBUG_INFO_BTF",
        ] {
            assert!(f.iter().any(|o| o.name == name), "{name}");
        }
    }
}
