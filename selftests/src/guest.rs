//! Running `test_progs` in a guest: the shell line, and the files it
//! leaves for the host to read.

use std::path::{Path, PathBuf};

use crate::results::{parse, parse_json_summary, results, JsonResult};
use crate::{io, Error, Result};

/// One run of `test_progs` inside a guest: the shell line the guest runs
/// and the files it leaves in a directory shared with the host.
#[derive(Debug, Clone)]
pub struct GuestRun {
    /// For `sh -c` in the guest.
    pub script: String,
    /// test_progs' own output.
    pub output: PathBuf,
    /// `--json-summary` (failures only) and `--list` (every test that
    /// runs), for [`GuestRun::json_results`].
    pub summary: Option<PathBuf>,
    pub list: Option<PathBuf>,
}

fn quoted(p: &Path) -> String {
    shell_quote(&p.to_string_lossy())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Where a [`GuestRun::detached`] run leaves test_progs' exit status.
pub const RC_FILE: &str = "test_progs.rc";
/// Where a [`GuestRun::detached`] run leaves `$FIBNEIGH_KERNEL_BUILD`.
pub const KERNEL_BUILD_FILE: &str = "kernel-build";

/// Sets `$w` to `-w 0` where test_progs has a watchdog (7.3 has, 6.12 has
/// not): its default kills a test after 120 s, which `fib_lookup` on the
/// debug kernel under emulation once exceeded on a busy machine. The
/// guest's own timeout bounds a hang instead.
const NO_WATCHDOG: &str =
    "w=; ./test_progs --help 2>&1 | grep -q -- --watchdog-timeout && w='-w 0'; ";

/// Where [`GuestRun::plain`] and [`GuestRun::detached`] leave test_progs'
/// output.
pub const OUTPUT_FILE: &str = "test_progs.out";

/// test_progs' directory, which every run runs it from.
fn dir_of(test_progs: &Path) -> &Path {
    test_progs.parent().unwrap_or(Path::new("."))
}

/// The shell line both plain runs share: test_progs -t SELECTOR run from
/// its directory, its output into `output` and printed, its status in `$rc`.
fn plain_line(test_progs: &Path, selector: &str, output: &Path) -> String {
    let dir = dir_of(test_progs);
    format!(
        "cd {} || exit $?; {NO_WATCHDOG}./test_progs $w -t {} > {out} 2>&1; rc=$?; cat {out}",
        quoted(dir),
        shell_quote(selector),
        out = quoted(output),
    )
}

impl GuestRun {
    /// `test_progs -t SELECTOR`, its output into `out_dir/test_progs.out`
    /// (and printed), exiting with test_progs' status. Every run runs a
    /// copy of test_progs' directory that it makes in `out_dir`
    /// ([`stage`]), so the guest needs only `out_dir` shared.
    pub fn plain(test_progs: &Path, selector: &str, out_dir: &Path) -> Result<GuestRun> {
        let test_progs = stage(test_progs, out_dir)?;
        let output = out_dir.join(OUTPUT_FILE);
        remove_stale(&output)?;
        Ok(GuestRun {
            script: format!("{}; exit $rc", plain_line(&test_progs, selector, &output)),
            output,
            summary: None,
            list: None,
        })
    }

    /// [`GuestRun::plain`] for a guest the host does not start itself (CI
    /// runs it among the other checks of one boot): the script leaves
    /// test_progs' output in `out_dir/test_progs.out`, its exit status in
    /// [`RC_FILE`] and the build `fibneigh vm run` named to the guest
    /// (`$FIBNEIGH_KERNEL_BUILD`) in [`KERNEL_BUILD_FILE`], and exits 0:
    /// the host judges the run from those files, which the script removes
    /// first so that a run that did not happen leaves none.
    pub fn detached(test_progs: &Path, selector: &str, out_dir: &Path) -> Result<GuestRun> {
        let test_progs = stage(test_progs, out_dir)?;
        let output = out_dir.join(OUTPUT_FILE);
        let rc = out_dir.join(RC_FILE);
        let build = out_dir.join(KERNEL_BUILD_FILE);
        for f in [&output, &rc, &build] {
            remove_stale(f)?;
        }
        Ok(GuestRun {
            script: format!(
                "rm -f {out} {rc} {build}; {}; \
                 echo \"$rc\" > {rc}; echo \"${{FIBNEIGH_KERNEL_BUILD:-}}\" > {build}; \
                 echo \"test_progs exited $rc (judged on the host from {out})\"",
                plain_line(&test_progs, selector, &output),
                out = quoted(&output),
                rc = quoted(&rc),
                build = quoted(&build),
            ),
            output,
            summary: None,
            list: None,
        })
    }

    /// `test_progs -t SELECTOR --list`, then `--json-summary`, into
    /// `out_dir/LABEL.{list,json,out}`; the guest command always succeeds
    /// (the results are in the files).
    pub fn json(
        test_progs: &Path,
        selector: &str,
        out_dir: &Path,
        label: &str,
    ) -> Result<GuestRun> {
        let test_progs = stage(test_progs, out_dir)?;
        let dir = dir_of(&test_progs);
        let summary = out_dir.join(format!("{label}.json"));
        let list = out_dir.join(format!("{label}.list"));
        let output = out_dir.join(format!("{label}.out"));
        for f in [&summary, &list, &output] {
            remove_stale(f)?;
        }
        let sel = shell_quote(selector);
        Ok(GuestRun {
            script: format!(
                "cd {} || exit $?; {NO_WATCHDOG}./test_progs -t {sel} --list > {} 2>/dev/null; \
                 ./test_progs $w -t {sel} --json-summary={} > {} 2>&1; true",
                quoted(dir),
                quoted(&list),
                quoted(&summary),
                quoted(&output),
            ),
            output,
            summary: Some(summary),
            list: Some(list),
        })
    }

    /// The outcome of every listed test after a [`GuestRun::json`] run;
    /// None when test_progs died before writing its summary.
    pub fn json_results(&self) -> Result<Option<Vec<JsonResult>>> {
        let (Some(summary), Some(list)) = (&self.summary, &self.list) else {
            return Ok(None);
        };
        let Ok(text) = std::fs::read_to_string(summary) else {
            return Ok(None);
        };
        let failures = parse_json_summary(&text).map_err(|source| Error::Json {
            path: summary.clone(),
            source,
        })?;
        let listed = io(std::fs::read_to_string(list), list)?;
        // The result lines name the skipped tests, which the summary
        // does not.
        let output = parse(&io(std::fs::read_to_string(&self.output), &self.output)?);
        Ok(Some(results(&listed, failures, &output)))
    }
}

/// Where [`stage`] puts its copy, inside the output directory.
pub const STAGED_DIR: &str = "test_progs.d";

/// Copy test_progs' directory (the binary with the BPF objects and
/// helpers it loads from beside it, as the selftests' `make install`
/// would) into `out_dir/test_progs.d`, updating an earlier copy (only
/// what changed is copied, what is gone is removed), and return the
/// copy's test_progs. A guest then needs only `out_dir`
/// shared: the tree test_progs was built in may be neither visible in a
/// guest (virtme-ng mounts a fresh tmpfs on `/tmp` and `/var/tmp`) nor
/// shareable (virtme-ng refuses a path with a `~`, which Debian's source
/// package versions carry).
pub fn stage(test_progs: &Path, out_dir: &Path) -> Result<PathBuf> {
    let from = dir_of(test_progs);
    let to = out_dir.join(STAGED_DIR);
    // Removing the copy must never remove the original, and `cp` cannot
    // copy a directory into itself: refuse paths that overlap.
    let (abs_from, abs_to) = (absolute(from)?, absolute(&to)?);
    if abs_to.starts_with(&abs_from) || abs_from.starts_with(&abs_to) {
        return Err(Error::Stage {
            from: from.to_path_buf(),
            to,
            why: "the output directory is inside test_progs' directory, or it inside the copy"
                .into(),
        });
    }
    if let Err(e) = crate::build::mirror(from, &to, &[]) {
        return Err(Error::Stage {
            from: from.to_path_buf(),
            to,
            why: e.to_string(),
        });
    }
    Ok(to.join(test_progs.file_name().unwrap_or("test_progs".as_ref())))
}

fn absolute(path: &Path) -> Result<PathBuf> {
    io(std::path::absolute(path), path)
}

fn remove_stale(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => io(Err(e), path),
        _ => Ok(()),
    }
}
