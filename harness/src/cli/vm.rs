//! `fibneigh vm ...`: the VM pipeline's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use fibneigh::pipeline::run::GuestChoice;
use fibneigh::pipeline::series::SeriesQuery;
use fibneigh::pipeline::{self, progress, render, KernelChoice, TimingChoice};
use fibneigh::stop;
use fibneigh_vm::timing;

use super::{write_json, Stopped};

#[derive(Args)]
pub struct BuildCmd {
    /// Write the kernel's manifest as JSON here (`-`: standard output,
    /// instead of the path).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// With --tree: remove the worktree the builds of that repository use
    /// (and its entry in the repository's .git/worktrees), build nothing.
    /// Built kernels stay in the cache.
    #[arg(long, requires = "tree")]
    pub clean: bool,
    /// Compile without ccache (nothing looked up or stored): what a clean
    /// build costs.
    #[arg(long)]
    pub no_ccache: bool,
    #[command(flatten)]
    pub build: KernelChoice,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub guest: GuestChoice,
    /// Write the run's manifest as JSON here (`-`: standard output): the
    /// kernel (and `kernel_build`, its series, profile, architecture,
    /// config and base, when `vm build` made it), the runner (which
    /// virtme-ng, by path and release), the accelerator, the command and
    /// its exit status.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub build: KernelChoice,
    /// Command to run inside the guest.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Args)]
pub struct TreeCmd {
    /// Print the path of the tree the pipeline already unpacked for
    /// --base (and --arch), as it is: nothing is fetched, applied,
    /// configured or built, so a build using the tree is not disturbed.
    /// Fails, naming the base, if there is none.
    #[arg(long)]
    pub print_path: bool,
    #[command(flatten)]
    pub build: KernelChoice,
}

#[derive(Args)]
pub struct TimingArgs {
    #[command(flatten)]
    pub choice: TimingChoice,
    #[command(flatten)]
    pub build: KernelChoice,
}

/// `vm build`: build (or with --tree --clean, remove the worktree).
pub fn build_cmd(args: BuildCmd) -> Result<ExitCode> {
    if args.clean {
        clean(&args.build)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut req = args.build.request()?;
    req.ccache = !args.no_ccache;
    let image = pipeline::build(&req)?;
    eprintln!("{}", render::describe(&image));
    write_json(args.json.as_deref(), &image)?;
    println!("{}", image.bzimage.display());
    Ok(ExitCode::SUCCESS)
}

/// `vm tree`: the tree with the series applied and configured; with
/// `--print-path`, the unpacked tree as it is.
pub fn tree(args: TreeCmd) -> Result<ExitCode> {
    let build = &args.build;
    let tree = if args.print_path {
        build.unpacked_tree()?
    } else {
        pipeline::prepare_tree(&build.request()?)?
    };
    println!("{}", tree.path.display());
    Ok(ExitCode::SUCCESS)
}

/// `vm series`: what scripts/series.sh needs to know of a base's series.
pub fn series(args: SeriesQuery) -> Result<ExitCode> {
    for line in args.lines()? {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `vm build --tree PATH --clean`: remove the repository's worktree.
fn clean(args: &KernelChoice) -> Result<()> {
    match args.remove_worktree()? {
        (repo, Some(dir)) => eprintln!(
            "removed the worktree {} and its entry in {}/worktrees; built kernels stay in {}",
            dir.display(),
            repo.common_dir.display(),
            args.cache_dir.join("kernels").display()
        ),
        (repo, None) => eprintln!(
            "{} has no worktree in {}: nothing to remove",
            repo.top.display(),
            args.cache_dir.display()
        ),
    }
    Ok(())
}

pub fn run_in_guest(args: RunArgs) -> Result<ExitCode> {
    let spec = args.guest.spec(&args.build, &args.command)?;
    let ran = match pipeline::run::run(&spec) {
        Ok(r) => r,
        // Ctrl-C / SIGTERM: the guest was stopped; exit as interrupted
        // programs do, not as a failure of the tool.
        Err(pipeline::Error::Stopped(e)) => return Err(Stopped::Guest((*e).into()).into()),
        Err(e) => return Err(e.into()),
    };
    let code = ran.status.code().unwrap_or(super::EXIT_INFRA as i32);
    write_json(args.json.as_deref(), &ran.manifest(&args.command, code))?;
    match code {
        0 => {}
        126 | 127 => eprintln!(
            "fibneigh: the guest could not start `{}` (exit {code}: not found or not executable)",
            args.command[0]
        ),
        _ => eprintln!("fibneigh: guest command exited with status {code}"),
    }
    Ok(ExitCode::from(
        u8::try_from(code).unwrap_or(super::EXIT_INFRA),
    ))
}

/// Clean build (fresh tree, ccache off), rebuild after touching
/// net/core/filter.c, and boot-to-command for `true`.
pub fn timing(args: TimingArgs) -> Result<ExitCode> {
    stop::install().context("failed to install the signal handlers")?;
    let req = args.choice.request(&args.build)?;
    let mut reporter = progress::reporter();
    let t = timing::measure(&req, stop::flag(), reporter.as_mut())
        .context("failed to measure the VM pipeline")?;
    print!("{}", render::timings(&t));
    Ok(ExitCode::SUCCESS)
}
