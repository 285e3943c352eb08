//! The envelope of every JSON report: which layout it has and which commit
//! made it; standard output kept for the report alone (`--json -`); and
//! the reports and other files written where `--json` and the like say.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The version of the JSON reports' layout; bumped when a field changes
/// meaning or goes away (new fields do not bump it).
pub const SCHEMA_VERSION: u32 = 1;

/// The commit the binary was built from (`git describe --always --dirty`
/// at build time, see harness/build.rs), or "unknown".
pub fn commit() -> String {
    env!("FIBNEIGH_COMMIT").to_string()
}

/// `value` as a JSON object that says which layout and which commit made
/// it: an object gains `schema_version` and `commit`; anything else is
/// wrapped as `{schema_version, commit, data}`.
pub fn stamped<T: serde::Serialize>(value: &T) -> serde_json::Result<serde_json::Value> {
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

/// The original standard output, kept for the JSON report.
static STDOUT: OnceLock<File> = OnceLock::new();

/// Standard output could not be kept for the report: `what` failed.
#[derive(Debug, thiserror::Error)]
#[error("failed to {what}")]
pub struct ReserveError {
    what: &'static str,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl ReserveError {
    fn new(what: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        let source = Box::new(source);
        ReserveError { what, source }
    }
}

/// With `--json -` on the command line (`args`), standard output carries
/// the JSON report and nothing else: the original descriptor is kept for
/// the report (see [`stdout`]) and descriptor 1 becomes a copy of standard
/// error, so every table and message (and whatever child processes print)
/// goes there. Call once, before anything is printed. Arguments after
/// `--` (a guest's command) are not ours.
pub fn reserve_stdout(args: &[OsString]) -> Result<(), ReserveError> {
    let ours = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let args = &args[..ours];
    let asked = args.windows(2).any(|w| w[0] == "--json" && w[1] == "-")
        || args.iter().any(|a| a == "--json=-");
    if !asked {
        return Ok(());
    }
    let saved = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| ReserveError::new("duplicate standard output", e))?;
    nix::unistd::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO)
        .map_err(|e| ReserveError::new("point standard output at standard error", e))?;
    let _ = STDOUT.set(File::from(saved));
    Ok(())
}

/// Where a report for `--json -` goes: the standard output
/// [`reserve_stdout`] kept, else standard output.
pub fn stdout() -> Box<dyn Write> {
    match STDOUT.get() {
        Some(f) => Box::new(f),
        None => Box::new(std::io::stdout().lock()),
    }
}

/// A file or report that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("failed to create {}", .0.display())]
    CreateDir(PathBuf, #[source] std::io::Error),
    #[error("failed to write {}", .0.display())]
    Write(PathBuf, #[source] std::io::Error),
    #[error("failed to write the JSON report to standard output")]
    Stdout(#[source] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Write `text` to `path`, creating its directory.
pub fn write_file(path: &Path, text: &str) -> Result<(), WriteError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| WriteError::CreateDir(dir.into(), e))?;
    }
    std::fs::write(path, text).map_err(|e| WriteError::Write(path.into(), e))
}

/// `--json PATH` means one thing in every command: write the report to
/// PATH (when given) as pretty JSON (see [`stamped`]), creating its
/// directory; `-` is standard output, which then carries the report alone
/// (see [`reserve_stdout`]).
pub fn write<T: serde::Serialize>(path: Option<&Path>, value: &T) -> Result<(), WriteError> {
    let Some(path) = path else { return Ok(()) };
    let text = serde_json::to_string_pretty(&stamped(value)?)? + "\n";
    if path != Path::new("-") {
        return write_file(path, &text);
    }
    let mut out = stdout();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(WriteError::Stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_commands_json_flag_is_not_ours() {
        // `vm run -- fibneigh probe --json -`: the outer stdout stays.
        let args: Vec<OsString> = [
            "fibneigh", "vm", "run", "--", "fibneigh", "probe", "--json", "-",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        reserve_stdout(&args).expect("nothing to do");
        assert!(STDOUT.get().is_none());
    }

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
