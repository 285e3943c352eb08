//! `fibneigh selftests`: build the kernel's `test_progs -t fib_lookup` from
//! the patched tree and run it inside the patched kernel.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use fibneigh::present::Table;
use fibneigh_selftests as st;

use super::{AccelArg, BuildArgs};

#[derive(Args)]
pub struct SelftestsArgs {
    /// Boot this bzImage instead of the series' kernel (test_progs is still
    /// built from the series' tree): e.g. the pristine base, to see the new
    /// tests fail there.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Test selector passed to test_progs -t.
    #[arg(long, default_value = "fib_lookup")]
    pub tests: String,
    #[arg(long, default_value_t = 1200)]
    pub timeout: u64,
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    pub accel: AccelArg,
    /// Write the parsed results as JSON here (`-`: standard output, and
    /// the tables go to standard error).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the results as JUnit XML here (with --diff: only a
    /// pristine-pass/patched-fail test fails).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Regression differential: build test_progs with the tests that
    /// exercise the touched paths (fib_lookup, tc_redirect, XDP redirect,
    /// test-run and attach tests), run it on the pristine base and on the
    /// patched kernel, print one table and fail only on a test that passes
    /// on the pristine kernel and fails on the patched one.
    #[arg(long, conflicts_with_all = ["kernel", "tests", "no_series"])]
    pub diff: bool,
    /// Build the kernel and test_progs, boot nothing (CI builds them while
    /// other guests run).
    #[arg(long, conflicts_with = "diff")]
    pub build_only: bool,
    #[command(flatten)]
    pub build: BuildArgs,
}

pub fn run(args: SelftestsArgs) -> Result<ExitCode> {
    if args.build.arch == super::ArchArg::Um {
        anyhow::bail!("selftests run under virtme-ng (x86_64) only; --arch um is not supported");
    }
    if args.diff {
        return run_diff(&args);
    }
    let image = super::build(&args.build)?;
    // The kernel may come from the cache while the tree holds another
    // series; test_progs must be built from this one.
    let req = super::build_request(&args.build)?;
    fibneigh_vm::prepare_tree(&req, super::progress::reporter().as_mut())
        .context("failed to prepare the kernel tree")?;
    let cache = args.build.cache_dir.clone();
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());

    let started = Instant::now();
    eprintln!(
        "[selftests] building test_progs from {}",
        image.tree.display()
    );
    let log = cache.join("selftests-build.log");
    let test_progs = st::build(&image.tree, &image.vmlinux, jobs, &log, &st::FIB)
        .context("failed to build test_progs")?
        .test_progs;
    eprintln!(
        "[selftests] built in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        test_progs.display()
    );
    if args.build_only {
        return Ok(ExitCode::SUCCESS);
    }

    let out_dir = cache.join("selftests-run");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("failed to create {}", out_dir.display()))?;
    let run = st::GuestRun::plain(&test_progs, &args.tests, &out_dir)?;
    let kernel = args.kernel.clone().unwrap_or(image.bzimage.clone());
    let guest = super::guest(kernel, super::accel(args.accel, &cache), &cache, &[out_dir]);
    let status = super::run_guest(
        &guest,
        vec!["sh".into(), "-c".into(), run.script.clone()],
        Duration::from_secs(args.timeout),
        false,
    )?;
    let output = std::fs::read_to_string(&run.output)
        .with_context(|| format!("test_progs left no output in {}", run.output.display()))?;
    let report = st::parse(&output);
    if let Some(p) = &args.junit {
        super::write_file(p, &super::junit::selftests(&report)?)?;
    }
    if let Some(p) = &args.json {
        super::write_json(p, &report)?;
    }
    eprintln!("\nselftests: {} result line(s)", report.results.len());
    let mut results = Table::new().indent(2);
    for r in &report.results {
        results.row([format!("{:?}", r.outcome).to_uppercase(), r.name.clone()]);
    }
    eprint!("{}", results.render());
    eprintln!(
        "  {}",
        report
            .summary
            .as_deref()
            .unwrap_or("no Summary line: test_progs did not finish")
    );
    let ran_selected = report
        .results
        .iter()
        .any(|r| r.name.starts_with(args.tests.as_str()));
    if !report.passed() || !status.success() || !ran_selected {
        let failed: Vec<&str> = report.failed().iter().map(|r| r.name.as_str()).collect();
        bail!(
            "test_progs -t {} failed (exit {:?}; failed: {})",
            args.tests,
            status.code(),
            if failed.is_empty() {
                "none parsed".to_string()
            } else {
                failed.join(", ")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `test_progs -t <selector> --json-summary` in `kernel`; the parsed
/// summary, or None if test_progs died before writing it.
fn run_json(
    args: &SelftestsArgs,
    kernel: &std::path::Path,
    test_progs: &std::path::Path,
    selector: &str,
    label: &str,
) -> Result<Option<Vec<st::JsonResult>>> {
    let cache = args.build.cache_dir.clone();
    let out_dir = cache.join("selftests-run");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("failed to create {}", out_dir.display()))?;
    let run = st::GuestRun::json(test_progs, selector, &out_dir, label)?;
    let guest = super::guest(
        kernel.to_path_buf(),
        super::accel(args.accel, &cache),
        &cache,
        &[out_dir],
    );
    eprintln!("[selftests] {label}: {}", kernel.display());
    super::run_guest(
        &guest,
        vec!["sh".into(), "-c".into(), run.script.clone()],
        Duration::from_secs(args.timeout),
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

fn run_diff(args: &SelftestsArgs) -> Result<ExitCode> {
    let cache = args.build.cache_dir.clone();
    // The pristine base: the same source, config and profile, no patches.
    let pristine_req = super::build_request(&args.build)?.pristine()?;
    let pristine = fibneigh_vm::build(&pristine_req, super::progress::reporter().as_mut())
        .context("failed to build the pristine kernel")?;
    let patched = super::build(&args.build)?;
    let req = super::build_request(&args.build)?;
    fibneigh_vm::prepare_tree(&req, super::progress::reporter().as_mut())
        .context("failed to prepare the kernel tree")?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = Instant::now();
    let log = cache.join("selftests-build.log");
    let built = st::build(&patched.tree, &patched.vmlinux, jobs, &log, &st::REGRESSION)
        .context("failed to build test_progs")?;
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
        args,
        &pristine.bzimage,
        &built.test_progs,
        &built.selector,
        "pristine",
    )?;
    let after = run_json(
        args,
        &patched.bzimage,
        &built.test_progs,
        &built.selector,
        "patched",
    )?;
    let (Some(before), Some(after)) = (before, after) else {
        bail!("test_progs did not finish on both kernels");
    };
    let rows = st::diff(&before, &after);
    if let Some(p) = &args.junit {
        super::write_file(p, &super::junit::selftests_diff(&rows)?)?;
    }
    let mark = |r: Option<bool>| match r {
        Some(true) => "pass",
        Some(false) => "FAIL",
        None => "-",
    };
    let mut table = Table::new().header(["test", "pristine", "patched"]);
    for r in &rows {
        table.row([
            r.name.as_str(),
            mark(r.pristine),
            mark(r.patched),
            if r.regressed() { "REGRESSION" } else { "" },
        ]);
    }
    for t in &built.skipped {
        table.row([
            t.as_str(),
            "",
            "",
            "(left out: does not compile with this clang/config)",
        ]);
    }
    let mut out = std::io::stdout().lock();
    write!(out, "{}", table.render())?;
    let regressions = rows.iter().filter(|r| r.regressed()).count();
    let count = |f: &dyn Fn(&st::DiffRow) -> bool| rows.iter().filter(|r| f(r)).count();
    writeln!(
        out,
        "{} tests and subtests; pristine-pass/patched-fail: {regressions}; fixed or new (pristine fail/absent, patched pass): {}; failing on both: {}",
        rows.len(),
        count(&|r| r.pristine != Some(true) && r.patched == Some(true)),
        count(&|r| r.pristine == Some(false) && r.patched == Some(false)),
    )?;
    if let Some(p) = &args.json {
        super::write_json(p, &rows)?;
    }
    Ok(if regressions == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
