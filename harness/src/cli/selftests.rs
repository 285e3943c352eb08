//! `fibneigh selftests`: build the kernel's `test_progs -t fib_lookup` from
//! the patched tree and run it inside the patched kernel.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use fibneigh::pipeline::selftests::{self as pipeline, Settings};
use fibneigh::present::Table;
use fibneigh::report::junit;
use fibneigh_selftests as st;

use super::{write_file, write_json, AccelArg, BuildArgs};

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
    let settings = Settings {
        build: super::build_request(&args.build)?,
        accel: args.accel.into(),
        timeout: Duration::from_secs(args.timeout),
    };
    if args.diff {
        return run_diff(&args, &settings);
    }
    let (image, test_progs) = pipeline::build_fib(&settings.build)?;
    if args.build_only {
        return Ok(ExitCode::SUCCESS);
    }
    let kernel = args.kernel.clone().unwrap_or(image.bzimage.clone());
    let ran = pipeline::run_plain(&settings, kernel, &test_progs, &args.tests)?;
    let report = &ran.report;
    if let Some(p) = &args.junit {
        write_file(p, &junit::selftests(report)?)?;
    }
    if let Some(p) = &args.json {
        write_json(p, report)?;
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
    ran.check(&args.tests)?;
    Ok(ExitCode::SUCCESS)
}

fn run_diff(args: &SelftestsArgs, settings: &Settings) -> Result<ExitCode> {
    let pipeline::Diff { rows, skipped } = pipeline::run_diff(settings)?;
    if let Some(p) = &args.junit {
        write_file(p, &junit::selftests_diff(&rows)?)?;
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
    for t in &skipped {
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
        write_json(p, &rows)?;
    }
    Ok(if regressions == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
