//! `fibneigh selftests`: build the kernel's `test_progs -t fib_lookup` from
//! the patched tree and run it inside the patched kernel: arguments and
//! printing; the pipeline is `fibneigh::pipeline::selftests`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use fibneigh::pipeline::selftests::{self as pipeline, SelftestsChoice, Settings};
use fibneigh::pipeline::KernelChoice;
use fibneigh::report::junit;

use super::{exit, write_file, write_json};

#[derive(Args)]
pub struct SelftestsArgs {
    #[command(flatten)]
    pub choice: SelftestsChoice,
    /// Write the parsed results as JSON here (`-`: standard output, and
    /// the tables go to standard error).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the results as JUnit XML here (with --diff: only a test that
    /// passes on the pristine kernel and not on the patched one fails).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Regression differential: build test_progs with the tests that
    /// exercise the touched paths (fib_lookup, tc_redirect, XDP redirect,
    /// test-run and attach tests), run it on the pristine base and on the
    /// patched kernel, print one table and fail only on a test that passes
    /// on the pristine kernel and fails, is skipped or is missing on the
    /// patched one (test_progs' SKIP lines are read: a skip never passes).
    #[arg(long, conflicts_with_all = ["kernel", "tests", "no_series"])]
    pub diff: bool,
    /// Build the kernel and test_progs, boot nothing (CI builds them while
    /// other guests run).
    #[arg(long, conflicts_with = "diff")]
    pub build_only: bool,
    /// Build as --build-only, boot nothing, copy test_progs' directory
    /// into DIR and write DIR/run.sh: `sh DIR/run.sh` in a guest of this
    /// kernel booted for other checks too (CI's one boot of the debug
    /// kernel) runs that copy and leaves its output, exit status and the
    /// guest's kernel build in DIR, for --from-output. The guest needs DIR
    /// shared (the repository always is; elsewhere, `vm run --rwdir DIR`).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["diff", "build_only", "kernel"])]
    pub guest_script: Option<PathBuf>,
    /// Boot nothing: judge the run that DIR/run.sh (--guest-script) left in
    /// DIR, refused unless it ran in the kernel this build names.
    #[arg(long, value_name = "DIR",
          conflicts_with_all = ["diff", "build_only", "kernel", "guest_script"])]
    pub from_output: Option<PathBuf>,
    #[command(flatten)]
    pub build: KernelChoice,
}

pub fn run(args: SelftestsArgs) -> Result<ExitCode> {
    let settings = args.choice.settings(&args.build)?;
    if args.diff {
        return run_diff(&args, &settings);
    }
    if let Some(dir) = &args.guest_script {
        let script = pipeline::write_guest_script(&settings, dir, &args.choice.tests)?;
        println!("{}", script.display());
        return Ok(ExitCode::SUCCESS);
    }
    let ran = match &args.from_output {
        Some(dir) => pipeline::read_detached(&settings, dir)?,
        None => {
            let (image, test_progs) = pipeline::build_fib(&settings.build)?;
            if args.build_only {
                return Ok(ExitCode::SUCCESS);
            }
            let kernel = args.choice.kernel.clone().unwrap_or(image.bzimage.clone());
            pipeline::run_plain(&settings, kernel, &test_progs, &args.choice.tests)?
        }
    };
    let report = &ran.report;
    if let Some(p) = &args.junit {
        write_file(p, &junit::selftests(report)?)?;
    }
    write_json(args.json.as_deref(), report)?;
    eprint!("{}", pipeline::render_results(report));
    ran.check(&args.choice.tests)?;
    Ok(ExitCode::SUCCESS)
}

fn run_diff(args: &SelftestsArgs, settings: &Settings) -> Result<ExitCode> {
    let diff = pipeline::run_diff(settings)?;
    if let Some(p) = &args.junit {
        write_file(p, &junit::selftests_diff(&diff.rows)?)?;
    }
    write!(std::io::stdout().lock(), "{}", diff.render())?;
    write_json(args.json.as_deref(), &diff.rows)?;
    Ok(exit(diff.regressions() == 0))
}
