//! `fibneigh selftests`' pipeline: the kernel and its tree, `test_progs`
//! built from it, booted in a guest, its output parsed; and the regression
//! differential, the same tests on the pristine base and on the series.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use fibneigh_selftests as st;
use fibneigh_vm::{Arch, BuildRequest, KernelImage};

use crate::present::Table;

use super::{build, build_pristine, guest, prepare_tree, run_guest, AccelChoice, KernelChoice};

/// What the selftests' pipeline can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Pipeline(#[from] super::Error),
    #[error("failed to build test_progs")]
    Build(#[source] st::Error),
    #[error(transparent)]
    Selftests(#[from] st::Error),
    #[error("failed to create {}", .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("test_progs left no output in {}", .path.display())]
    NoOutput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("selftests run under virtme-ng (x86_64) only; --arch um is not supported")]
    Um,
    #[error("test_progs did not finish on both kernels")]
    Unfinished,
    #[error("{}: {what}: has `sh {}` run in a guest of the kernel?", .path.display(), .path.with_file_name(GUEST_SCRIPT).display())]
    NoDetachedRun { path: PathBuf, what: String },
    #[error("{}: test_progs ran in the kernel build `{ran}`, not `{wanted}`", .path.display())]
    OtherKernel {
        path: PathBuf,
        ran: String,
        wanted: String,
    },
    #[error(
        "test_progs -t {tests} failed (exit {code:?}; failed: {})",
        failed_list(.failed)
    )]
    Failed {
        tests: String,
        code: Option<i32>,
        failed: Vec<String>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn failed_list(failed: &[String]) -> String {
    if failed.is_empty() {
        "none parsed".to_string()
    } else {
        failed.join(", ")
    }
}

/// Where the guests boot and for how long.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The series' kernel (the pristine base is derived from it).
    pub build: BuildRequest,
    pub accel: AccelChoice,
    pub timeout: Duration,
}

/// What `selftests` asks for, besides the kernel, its files and its mode.
#[derive(Debug, Clone, clap::Args)]
pub struct SelftestsChoice {
    /// Boot this bzImage instead of the series' kernel (test_progs is still
    /// built from the series' tree): e.g. the pristine base, to see the new
    /// tests fail there.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Test selector passed to test_progs -t.
    #[arg(long, default_value = "fib_lookup")]
    pub tests: String,
    #[arg(long, default_value_t = 1200, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
}

impl SelftestsChoice {
    /// The settings for the kernel `build` asks for (x86_64 only).
    pub fn settings(&self, build: &KernelChoice) -> Result<Settings> {
        if build.arch == Arch::Um {
            return Err(Error::Um);
        }
        Ok(Settings {
            build: build.request()?,
            accel: self.accel,
            timeout: Duration::from_secs(self.timeout),
        })
    }
}

/// `make -j` for test_progs: the number of CPUs.
fn jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// `<cache>/selftests-run`, created: the directory the guest writes into.
fn out_dir(cache: &Path) -> Result<PathBuf> {
    let out_dir = cache.join("selftests-run");
    std::fs::create_dir_all(&out_dir).map_err(|source| Error::CreateDir {
        path: out_dir.clone(),
        source,
    })?;
    Ok(out_dir)
}

/// The series' kernel, and `test_progs -t fib_lookup` built from its tree.
pub fn build_fib(req: &BuildRequest) -> Result<(KernelImage, PathBuf)> {
    let image = build(req)?;
    // The kernel may come from the cache while the tree holds another
    // series; test_progs must be built from this one.
    prepare_tree(req)?;
    let started = Instant::now();
    eprintln!(
        "[selftests] building test_progs from {}",
        image.tree.display()
    );
    let log = req.cache_dir.join("selftests-build.log");
    let test_progs = st::build(&image.tree, &image.vmlinux, jobs(), &log, &st::FIB)
        .map_err(Error::Build)?
        .test_progs;
    eprintln!(
        "[selftests] built in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        test_progs.display()
    );
    Ok((image, test_progs))
}

/// A plain run's exit status and parsed output.
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub report: st::Report,
}

impl Ran {
    /// An error unless every test passed, test_progs exited 0 and a test
    /// of the selector `tests` ran.
    pub fn check(&self, tests: &str) -> Result<()> {
        let ran_selected = self
            .report
            .results
            .iter()
            .any(|r| r.name.starts_with(tests));
        if self.report.passed() && self.status.success() && ran_selected {
            return Ok(());
        }
        Err(Error::Failed {
            tests: tests.to_string(),
            code: self.status.code(),
            failed: self
                .report
                .failed()
                .iter()
                .map(|r| r.name.clone())
                .collect(),
        })
    }
}

/// The script [`write_guest_script`] leaves in its directory.
pub const GUEST_SCRIPT: &str = "run.sh";

/// Build the series' kernel and test_progs (as `--build-only`), copy
/// test_progs' directory into `dir` (as every [`st::GuestRun`] does) and
/// write `dir/run.sh`: `sh dir/run.sh` in a guest of that kernel, booted for
/// other checks too (CI's one boot of the debug kernel), runs `test_progs
/// -t tests` and leaves its output, exit status and the guest's build in
/// `dir` for [`read_detached`]. Returns the script's path.
pub fn write_guest_script(s: &Settings, dir: &Path, tests: &str) -> Result<PathBuf> {
    let (_, test_progs) = build_fib(&s.build)?;
    std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    // Absolute: the guest runs it from the repository, the host may not.
    let dir = std::path::absolute(dir).map_err(|source| Error::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let run = st::GuestRun::detached(&test_progs, tests, &dir)?;
    let script = dir.join(GUEST_SCRIPT);
    std::fs::write(&script, format!("#!/bin/sh\n{}\n", run.script)).map_err(|source| {
        Error::Write {
            path: script.clone(),
            source,
        }
    })?;
    Ok(script)
}

/// The run a [`write_guest_script`] script left in `dir`, refused unless it
/// ran in the kernel `s` names (the build `fibneigh vm run` told the
/// guest: series, profile, config, base), so that the output of another
/// kernel, or of an earlier run, is never judged as this one's.
pub fn read_detached(s: &Settings, dir: &Path) -> Result<Ran> {
    use std::os::unix::process::ExitStatusExt;
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| Error::NoDetachedRun {
            path,
            what: e.to_string(),
        })
    };
    let rc_path = dir.join(st::RC_FILE);
    let rc: i32 = read(st::RC_FILE)?
        .trim()
        .parse()
        .map_err(|e| Error::NoDetachedRun {
            path: rc_path,
            what: format!("not an exit status ({e})"),
        })?;
    let ran = read(st::KERNEL_BUILD_FILE)?.trim().to_string();
    let wanted = super::render::describe_build(&build(&s.build)?.key);
    if ran != wanted {
        return Err(Error::OtherKernel {
            path: dir.join(st::KERNEL_BUILD_FILE),
            ran,
            wanted,
        });
    }
    let output = read(st::OUTPUT_FILE)?;
    Ok(Ran {
        status: ExitStatus::from_raw((rc & 0xff) << 8),
        report: st::parse(&output),
    })
}

/// A plain run's results: a line per test and the summary.
pub fn render_results(report: &st::Report) -> String {
    let mut out = format!("\nselftests: {} result line(s)\n", report.results.len());
    let mut results = Table::new().indent(2);
    for r in &report.results {
        results.row([format!("{:?}", r.outcome).to_uppercase(), r.name.clone()]);
    }
    out.push_str(&results.render());
    out.push_str(&format!(
        "  {}\n",
        report
            .summary
            .as_deref()
            .unwrap_or("no Summary line: test_progs did not finish")
    ));
    out
}

/// Run `test_progs -t <tests>` in `kernel`.
pub fn run_plain(s: &Settings, kernel: PathBuf, test_progs: &Path, tests: &str) -> Result<Ran> {
    let cache = &s.build.cache_dir;
    let out_dir = out_dir(cache)?;
    let run = st::GuestRun::plain(test_progs, tests, &out_dir)?;
    let guest = guest(kernel, s.accel.resolve(cache), cache, &[out_dir]);
    let status = run_guest(
        &guest,
        vec!["sh".into(), "-c".into(), run.script.clone()],
        s.timeout,
        false,
    )?
    .status;
    let output = std::fs::read_to_string(&run.output).map_err(|source| Error::NoOutput {
        path: run.output.clone(),
        source,
    })?;
    Ok(Ran {
        status,
        report: st::parse(&output),
    })
}

/// Run `test_progs -t <selector> --json-summary` in `kernel`; the parsed
/// summary, or None if test_progs died before writing it.
fn run_json(
    s: &Settings,
    kernel: &Path,
    test_progs: &Path,
    selector: &str,
    label: &str,
) -> Result<Option<Vec<st::JsonResult>>> {
    let cache = &s.build.cache_dir;
    let out_dir = out_dir(cache)?;
    let run = st::GuestRun::json(test_progs, selector, &out_dir, label)?;
    let guest = guest(
        kernel.to_path_buf(),
        s.accel.resolve(cache),
        cache,
        &[out_dir],
    );
    eprintln!("[selftests] {label}: {}", kernel.display());
    run_guest(
        &guest,
        vec!["sh".into(), "-c".into(), run.script.clone()],
        s.timeout,
        false,
    )?;
    let results = run.json_results()?;
    if results.is_none() {
        eprintln!(
            "[selftests] {label}: test_progs wrote no summary; its output: {}",
            run.output.display()
        );
    }
    Ok(results)
}

/// The differential's rows, and the tests left out because they do not
/// compile here.
#[derive(Debug)]
pub struct Diff {
    pub rows: Vec<st::DiffRow>,
    pub skipped: Vec<String>,
}

/// The regression differential: test_progs with the tests of the touched
/// paths, run on the pristine base and on the series' kernel.
pub fn run_diff(s: &Settings) -> Result<Diff> {
    let cache = &s.build.cache_dir;
    // The pristine base: the same source, config and profile, no patches.
    let pristine = build_pristine(&s.build)?;
    let patched = build(&s.build)?;
    prepare_tree(&s.build)?;
    let started = Instant::now();
    let log = cache.join("selftests-build.log");
    let built = st::build(
        &patched.tree,
        &patched.vmlinux,
        jobs(),
        &log,
        &st::REGRESSION,
    )
    .map_err(Error::Build)?;
    eprintln!(
        "[selftests] built in {:.1}s: {}; selected: {}",
        started.elapsed().as_secs_f64(),
        built.test_progs.display(),
        built.selector
    );
    for t in &built.skipped {
        eprintln!(
            "[selftests] left out, does not compile here (see {}): {t}",
            log.display()
        );
    }
    let before = run_json(
        s,
        &pristine.bzimage,
        &built.test_progs,
        &built.selector,
        "pristine",
    )?;
    let after = run_json(
        s,
        &patched.bzimage,
        &built.test_progs,
        &built.selector,
        "patched",
    )?;
    let (Some(before), Some(after)) = (before, after) else {
        return Err(Error::Unfinished);
    };
    Ok(Diff {
        rows: st::diff(&before, &after),
        skipped: built.skipped,
    })
}

impl Diff {
    /// Tests that pass on the pristine base and fail on the series.
    pub fn regressions(&self) -> usize {
        self.rows.iter().filter(|r| r.regressed()).count()
    }

    /// A row per test (and per test left out), and the counts.
    pub fn render(&self) -> String {
        let rows = &self.rows;
        let mark = |r: Option<st::Outcome>| match r {
            Some(st::Outcome::Ok) => "pass",
            Some(st::Outcome::Fail) => "FAIL",
            Some(st::Outcome::Skip) => "skip",
            None => "-",
        };
        let mut table = Table::new().header(["test", "pristine", "patched"]);
        for r in rows {
            table.row([
                r.name.as_str(),
                mark(r.pristine),
                mark(r.patched),
                if r.regressed() { "REGRESSION" } else { "" },
            ]);
        }
        for t in &self.skipped {
            table.row([
                t.as_str(),
                "",
                "",
                "(left out: does not compile with this clang/config)",
            ]);
        }
        let count = |f: &dyn Fn(&st::DiffRow) -> bool| rows.iter().filter(|r| f(r)).count();
        let ok = Some(st::Outcome::Ok);
        let fail = Some(st::Outcome::Fail);
        let skip = Some(st::Outcome::Skip);
        format!(
            "{}{} tests and subtests; pristine-pass/patched-not: {}; fixed or new (pristine fail/skip/absent, patched pass): {}; failing on both: {}; skipped on either: {}\n",
            table.render(),
            rows.len(),
            self.regressions(),
            count(&|r| r.pristine != ok && r.patched == ok),
            count(&|r| r.pristine == fail && r.patched == fail),
            count(&|r| r.pristine == skip || r.patched == skip),
        )
    }
}
