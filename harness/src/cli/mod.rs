//! The command line: argument parsing, printing and files; the work is done
//! by the library (`fibneigh::*`) and the VM pipeline (`fibneigh_vm`).

pub mod bench;
pub mod churn;
pub mod fuzz;
pub mod icount;
pub mod junit;
pub mod probe;
pub mod progress;
pub mod scenarios;
pub mod selftests;
pub mod vm;

use std::path::Path;

use anyhow::{Context, Result};

/// Exit code for a failure of the tool itself (as opposed to a guest
/// command's own exit status, which `vm run` passes through).
pub const EXIT_INFRA: u8 = 125;

/// Exit status after SIGINT/SIGTERM (everything torn down).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Write `text` to `path`, creating its directory.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("failed to write {}", path.display()))
}

/// The version of the JSON reports' layout; bumped when a field changes
/// meaning or goes away (new fields do not bump it).
pub const SCHEMA_VERSION: u32 = 1;

/// The commit the running binary's repository is at (`git describe
/// --always --dirty`), or "unknown" outside a git checkout.
pub fn commit() -> String {
    let root = vm::repo_root();
    std::process::Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// `value` as a JSON object that says which layout and which commit made
/// it: an object gains `schema_version` and `commit`; anything else is
/// wrapped as `{schema_version, commit, data}`.
pub fn stamped<T: serde::Serialize>(value: &T) -> Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    out.insert("schema_version".into(), SCHEMA_VERSION.into());
    out.insert("commit".into(), commit().into());
    match serde_json::to_value(value)? {
        serde_json::Value::Object(body) => out.extend(body),
        other => {
            out.insert("data".into(), other);
        }
    }
    Ok(serde_json::Value::Object(out))
}

/// Write `value` to `path` as pretty JSON (see [`stamped`]), creating its
/// directory.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write_file(
        path,
        &(serde_json::to_string_pretty(&stamped(value)?)? + "\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_say_their_layout_and_commit() {
        #[derive(serde::Serialize)]
        struct R {
            cells: u32,
        }
        let v = stamped(&R { cells: 3 }).expect("json");
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert!(v["commit"].as_str().is_some_and(|c| !c.is_empty()));
        assert_eq!(v["cells"], 3);
        let w = stamped(&vec![1, 2]).expect("json");
        assert_eq!(w["data"][1], 2);
    }
}
