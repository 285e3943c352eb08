//! The command line: argument parsing, printing and files; the work is done
//! by the library (`fibneigh::*`) and the VM pipeline (`fibneigh_vm`).

pub mod bench;
pub mod churn;
pub mod fuzz;
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

/// Write `value` to `path` as pretty JSON, creating its directory.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write_file(path, &(serde_json::to_string_pretty(value)? + "\n"))
}
