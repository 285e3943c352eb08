//! `fibneigh selftests`: build the kernel's `test_progs -t fib_lookup` from
//! the patched tree and run it inside the patched kernel.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use fibneigh_selftests as st;

use crate::cli_vm::{self, AccelArg, BuildArgs, Guest};

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
    /// Print the parsed results as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub build: BuildArgs,
}

pub fn run(args: SelftestsArgs) -> Result<ExitCode> {
    let image = cli_vm::build(&args.build)?;
    // The kernel may come from the cache while the tree holds another
    // series; test_progs must be built from this one.
    let req = cli_vm::build_request(&args.build);
    fibneigh_vm::prepare_tree(&req, crate::progress::reporter().as_mut())
        .context("failed to prepare the kernel tree")?;
    let cache = args.build.cache_dir.clone();
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());

    let started = Instant::now();
    eprintln!(
        "[selftests] building test_progs from {}",
        image.tree.display()
    );
    let log = cache.join("selftests-build.log");
    let test_progs =
        st::build(&image.tree, &image.vmlinux, jobs, &log).context("failed to build test_progs")?;
    eprintln!(
        "[selftests] built in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        test_progs.display()
    );

    let out_dir = cache.join("selftests-run");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("failed to create {}", out_dir.display()))?;
    let out_file = out_dir.join("test_progs.out");
    let _ = std::fs::remove_file(&out_file);
    let dir = test_progs.parent().context("test_progs has a directory")?;
    let script = format!(
        "cd '{}' && ./test_progs -t '{}' > '{}' 2>&1; rc=$?; cat '{}'; exit $rc",
        dir.display(),
        args.tests,
        out_file.display(),
        out_file.display()
    );
    let kernel = args.kernel.clone().unwrap_or(image.bzimage.clone());
    let guest = Guest {
        kernel,
        accel: cli_vm::accel(args.accel, &cache),
        cache: cache.clone(),
        memory: "2G".into(),
        cpus: 2,
        rwdirs: vec![out_dir],
    };
    let status = guest.run(
        vec!["sh".into(), "-c".into(), script],
        Duration::from_secs(args.timeout),
        false,
    )?;
    let output = std::fs::read_to_string(&out_file)
        .with_context(|| format!("test_progs left no output in {}", out_file.display()))?;
    let report = st::parse(&output);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    eprintln!("\nselftests: {} result line(s)", report.results.len());
    for r in &report.results {
        eprintln!(
            "  {:<5} {}",
            format!("{:?}", r.outcome).to_uppercase(),
            r.name
        );
    }
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
