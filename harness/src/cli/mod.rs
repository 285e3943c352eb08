//! The command line: argument parsing, printing and files; the work is done
//! by the library (`fibneigh::*`; `fibneigh::pipeline` drives the VM
//! pipeline, `fibneigh_vm`). No file here imports another but this one.

pub mod bench;
pub mod churn;
pub mod examples;
pub mod fuzz;
pub mod icount;
pub mod lock_stress;
pub mod probe;
pub mod scale;
pub mod scenarios;
pub mod selftests;
pub mod trial;
pub mod vm;

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use fibneigh::pipeline::{AccelChoice, KernelChoice};
use fibneigh::present::json::stamped;
use fibneigh_vm::base::KernelBase;
use fibneigh_vm::{Arch, BuildRequest, Profile};

/// Exit code for a failure of the tool itself (as opposed to a guest
/// command's own exit status, which `vm run` passes through).
pub const EXIT_INFRA: u8 = 125;

/// Write `text` to `path`, creating its directory.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("failed to write {}", path.display()))
}

/// `--json PATH` means one thing in every command: write the report to
/// PATH as pretty JSON (see [`fibneigh::present::json::stamped`]), creating its directory; `-` is
/// standard output, which then carries the report alone (see
/// [`reserve_stdout_for_json`]).
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(&stamped(value)?)? + "\n";
    if path != Path::new("-") {
        return write_file(path, &text);
    }
    let mut out: Box<dyn Write> = match JSON_STDOUT.get() {
        Some(f) => Box::new(f),
        None => Box::new(std::io::stdout().lock()),
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("failed to write the JSON report to standard output")
}

/// The original standard output, kept for the JSON report.
static JSON_STDOUT: OnceLock<File> = OnceLock::new();

/// With `--json -` on the command line, standard output carries the JSON
/// report and nothing else: the original descriptor is kept for the report
/// and descriptor 1 becomes a copy of standard error, so every table and
/// message (and whatever child processes print) goes there. Call once,
/// before anything is printed. Arguments after `--` (a guest's command)
/// are not ours.
pub fn reserve_stdout_for_json(args: &[OsString]) -> Result<()> {
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
        .context("failed to duplicate standard output")?;
    nix::unistd::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO)
        .context("failed to point standard output at standard error")?;
    let _ = JSON_STDOUT.set(File::from(saved));
    Ok(())
}

/// Ready a lab run: the signal handlers installed, an earlier run's
/// leftovers removed, and what the running kernel supports.
pub fn prepare_lab() -> Result<fibneigh::scenario::Support> {
    fibneigh::stop::install().context("failed to install the signal handlers")?;
    fibneigh::lab::Lab::cleanup_leftovers().context("failed to remove leftover lab namespaces")?;
    fibneigh::scenario::Support::probe().context("failed to probe the kernel (are you root?)")
}

/// Ready a lab run that needs the series' `flags` on the running kernel:
/// the signal handlers installed, an earlier run's leftovers removed, and
/// an error naming the flags the kernel lacks.
pub fn prepare_patched_run(flags: u32) -> Result<()> {
    let support = prepare_lab()?;
    let missing = support.missing(flags);
    if !missing.is_empty() {
        anyhow::bail!(
            "this kernel does not support {} (the series is not applied): run it in the patched VM",
            missing.join(", ")
        );
    }
    Ok(())
}

/// A lab run's result: `Ok(None)` when it was interrupted (its lab
/// removed), after saying so; its other errors with `what` as context.
pub fn unless_interrupted<T>(r: fibneigh::error::Result<T>, what: &str) -> Result<Option<T>> {
    match r {
        Ok(r) => Ok(Some(r)),
        Err(fibneigh::error::Error::Interrupted(_)) => {
            eprintln!("fibneigh: interrupted; the lab was removed");
            Ok(None)
        }
        Err(e) => Err(e).context(format!("{what} failed")),
    }
}

/// `problems` plus a line naming the lab namespaces a run left behind.
pub fn with_leftovers(problems: Vec<String>) -> Result<Vec<String>> {
    fibneigh::lab::Lab::with_leftovers(problems).context("failed to look for leftovers")
}

/// `fibneigh vm`'s subcommands: the kernel pipeline (`cli/vm.rs`) and the
/// instruction counts (`cli/icount.rs`), dispatched here so that neither
/// file imports the other for it.
#[derive(Subcommand)]
pub enum VmCommand {
    /// Fetch the base source, apply kernel-patches/series, configure and
    /// build bzImage (cached by content). Prints the kernel's path.
    Build(vm::BuildCmd),
    /// Boot a kernel under virtme-ng and run CMD inside; exits with CMD's
    /// status.
    Run(vm::RunArgs),
    /// Measure clean build, one-file rebuild and boot-to-command times.
    Timing(vm::TimingArgs),
    /// Make the kernel tree hold the series (applied and configured, not
    /// built) and print its path; with --print-path, only print it.
    Tree(vm::TreeCmd),
    /// Print a base's series: its patch files in order, its directory,
    /// its posting subject prefix or its branch; or check an author's
    /// identity (for scripts/series.sh).
    Series(vm::SeriesArgs),
    /// Instructions per bpf_fib_lookup() call by flag, counted by a QEMU
    /// TCG plugin in a 1-vCPU guest: deterministic cost figures.
    Icount(icount::IcountArgs),
}

pub fn vm_command(cmd: VmCommand) -> Result<ExitCode> {
    match cmd {
        VmCommand::Build(args) => vm::build_cmd(args),
        VmCommand::Run(args) => vm::run_in_guest(args),
        VmCommand::Timing(args) => vm::timing(args),
        VmCommand::Tree(args) => vm::tree(args),
        VmCommand::Series(args) => vm::series(args),
        VmCommand::Icount(args) => icount::run(args),
    }
}

/// The flow rate and recovery window of the traffic scenarios (`cell`,
/// `matrix`, `trial`).
#[derive(Args)]
pub struct TimingArgs {
    /// Flow rate in packets per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// How long to wait for recovery after the move, in ms [default:
    /// 2000; with matrix --quick, meant for emulated machines, 4000].
    #[arg(long)]
    pub window_ms: Option<u64>,
}

impl TimingArgs {
    pub fn options(&self, quick: bool) -> fibneigh::scenario::Options {
        let default = if quick { 4000 } else { 2000 };
        fibneigh::scenario::Options {
            rate_pps: self.rate.max(1),
            window: std::time::Duration::from_millis(self.window_ms.unwrap_or(default)),
            ..fibneigh::scenario::Options::default()
        }
    }
}

// The kernel and guest arguments and steps `vm`, `icount` and
// `selftests` share.

#[derive(Args, Clone)]
pub struct BuildArgs {
    /// Cache directory for sources, trees and kernels.
    #[arg(long, env = "FIBNEIGH_CACHE", default_value_os_t = fibneigh_vm::default_cache_dir())]
    pub cache_dir: PathBuf,
    /// Which base: 7.3 (Debian's linux-source-7.3 from trixie-backports,
    /// series in kernel-patches/) or 6.12 (linux-source-6.12 from
    /// bookworm-security, the LTS backport in kernel-patches/6.12/).
    #[arg(long, default_value = "7.3")]
    pub base: KernelBase,
    /// Base source: a .tar.xz or an unpacked kernel tree, instead of the
    /// Debian package (a tree is copied: the files its .gitignore does not
    /// ignore, keyed by their content).
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// A kernel git repository you have (e.g. a bpf-next clone): its HEAD,
    /// plus the series, is built in a worktree in the cache; your branch,
    /// index and working tree are left alone and uncommitted changes are
    /// not built. `vm build --tree PATH --clean` removes the worktree.
    #[arg(long, value_name = "PATH", conflicts_with = "source")]
    pub tree: Option<PathBuf>,
    /// Build the base without the series (e.g. --tree's HEAD as it is).
    #[arg(long)]
    pub no_series: bool,
    /// Directory with the `series` file and patches.
    #[arg(long)]
    pub patches: Option<PathBuf>,
    /// Kernel config fragment merged onto tinyconfig [default: `config`,
    /// with --arch um `config-um`, in the patches directory].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Parallel make jobs (default: number of CPUs).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Ask the mirror for the newest package version even if one is cached.
    #[arg(long)]
    pub refresh_source: bool,
    /// Build profile: tiny (the fragment alone), debug (plus the
    /// `config-debug` fragment next to it: lockdep, KASAN, UBSAN, ...; for
    /// correctness runs, never for benchmarks) or selftests (plus
    /// `config-selftests`: what the BPF selftests of `selftests --diff`
    /// need).
    #[arg(long, value_enum, default_value_t = ProfileArg::Tiny)]
    pub profile: ProfileArg,
    /// Architecture: x86_64 (a bzImage booted under virtme-ng) or um
    /// (User-Mode Linux: `kernel-patches/config-um`, the `linux` program,
    /// run natively on the host CPU with interpreted BPF).
    #[arg(long, value_enum, default_value_t = ArchArg::X86_64)]
    pub arch: ArchArg,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchArg {
    #[value(name = "x86_64")]
    X86_64,
    Um,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    Tiny,
    Debug,
    Selftests,
    /// The tiny config at -O2 (CONFIG_CC_OPTIMIZE_FOR_PERFORMANCE), as
    /// distributions build; tiny is -Os.
    O2,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AccelArg {
    /// KVM if it can really run a guest here, else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// The kernel build `args` ask for.
pub fn build_request(args: &BuildArgs) -> Result<BuildRequest> {
    let choice = KernelChoice {
        cache_dir: args.cache_dir.clone(),
        base: args.base,
        source: args.source.clone(),
        tree: args.tree.clone(),
        no_series: args.no_series,
        patches: args.patches.clone(),
        config: args.config.clone(),
        jobs: args.jobs,
        refresh_source: args.refresh_source,
        profile: match args.profile {
            ProfileArg::Tiny => Profile::Tiny,
            ProfileArg::Debug => Profile::Debug,
            ProfileArg::Selftests => Profile::Selftests,
            ProfileArg::O2 => Profile::O2,
        },
        arch: match args.arch {
            ArchArg::X86_64 => Arch::X86_64,
            ArchArg::Um => Arch::Um,
        },
    };
    Ok(choice.request()?)
}

impl From<AccelArg> for AccelChoice {
    fn from(a: AccelArg) -> Self {
        match a {
            AccelArg::Auto => AccelChoice::Auto,
            AccelArg::Kvm => AccelChoice::Kvm,
            AccelArg::Tcg => AccelChoice::Tcg,
        }
    }
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
        reserve_stdout_for_json(&args).expect("nothing to do");
        assert!(JSON_STDOUT.get().is_none());
    }
}
