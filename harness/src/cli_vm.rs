//! `fibneigh vm ...`: the VM pipeline's command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use fibneigh_vm::{self as vm, Accel, BuildRequest, KernelImage, Profile, RunRequest, SourceSpec};

use crate::progress;

#[derive(Subcommand)]
pub enum VmCommand {
    /// Fetch the base source, apply kernel-patches/series, configure and
    /// build bzImage (cached by content). Prints the kernel's path.
    Build(BuildCmd),
    /// Boot a kernel under virtme-ng and run CMD inside; exits with CMD's
    /// status.
    Run(RunArgs),
    /// Measure clean build, one-file rebuild and boot-to-command times.
    Bench(BenchArgs),
    /// Make the kernel tree hold the series (applied and configured, not
    /// built) and print its path.
    Tree(BuildArgs),
}

#[derive(Args, Clone)]
pub struct BuildArgs {
    /// Cache directory for sources, trees and kernels.
    #[arg(long, env = "FIBNEIGH_CACHE", default_value_os_t = vm::default_cache_dir())]
    pub cache_dir: PathBuf,
    /// Which base: 7.3 (Debian's linux-source-7.3 from trixie-backports,
    /// series in kernel-patches/) or 6.12 (linux-source-6.12 from
    /// bookworm-security, the LTS backport in kernel-patches/6.12/).
    #[arg(long, value_enum, default_value_t = Base::V7_3)]
    pub base: Base,
    /// Base source: a .tar.xz or an unpacked kernel tree, instead of the
    /// Debian package.
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Directory with the `series` file and patches.
    #[arg(long)]
    pub patches: Option<PathBuf>,
    /// Kernel config fragment merged onto tinyconfig.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Parallel make jobs (default: number of CPUs).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Ask the mirror for the newest package version even if one is cached.
    #[arg(long)]
    pub refresh_source: bool,
    /// Build profile: tiny (the fragment alone) or debug (plus the
    /// `config-debug` fragment next to it: lockdep, KASAN, UBSAN, ...;
    /// for correctness runs, never for benchmarks).
    #[arg(long, value_enum, default_value_t = ProfileArg::Tiny)]
    pub profile: ProfileArg,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    Tiny,
    Debug,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Base {
    #[value(name = "7.3")]
    V7_3,
    #[value(name = "6.12")]
    V6_12,
}

#[derive(Args)]
pub struct BuildCmd {
    /// Print the kernel's manifest as JSON instead of its path.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub build: BuildArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AccelArg {
    /// KVM if it can really run a guest here, else TCG.
    Auto,
    Kvm,
    Tcg,
}

#[derive(Args)]
pub struct RunArgs {
    /// bzImage to boot (default: the kernel `vm build` makes, built first
    /// if it is not cached).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Seconds before the guest is killed.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    #[arg(long, default_value = "2G")]
    pub memory: String,
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    pub accel: AccelArg,
    /// Extra host directories shared read-write (the repository always is).
    #[arg(long)]
    pub rwdir: Vec<PathBuf>,
    /// Keep the console log even when the command succeeds.
    #[arg(long)]
    pub keep_console: bool,
    #[command(flatten)]
    pub build: BuildArgs,
    /// Command to run inside the guest.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Boots to time for boot-to-command.
    #[arg(long, default_value_t = 3)]
    pub boots: usize,
    /// Skip the clean build (which takes minutes) and time only the rest.
    #[arg(long)]
    pub skip_clean_build: bool,
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    pub accel: AccelArg,
    #[command(flatten)]
    pub build: BuildArgs,
}

pub fn run(cmd: VmCommand) -> Result<ExitCode> {
    match cmd {
        VmCommand::Build(args) => {
            let image = build(&args.build)?;
            describe(&image);
            if args.json {
                println!("{}", serde_json::to_string_pretty(&image)?);
            } else {
                println!("{}", image.bzimage.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Run(args) => run_in_guest(args),
        VmCommand::Bench(args) => bench(args),
        VmCommand::Tree(args) => {
            let req = build_request(&args);
            let mut reporter = progress::reporter();
            let tree = vm::prepare_tree(&req, reporter.as_mut())
                .context("failed to prepare the kernel tree")?;
            println!("{}", tree.path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The repository: the nearest directory above the working directory that
/// holds `kernel-patches/series`, else the one this binary was built from.
pub fn repo_root() -> PathBuf {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cwd = std::env::current_dir().unwrap_or_else(|_| built_from.clone());
    cwd.ancestors()
        .find(|d| d.join("kernel-patches/series").is_file())
        .map(Path::to_path_buf)
        .unwrap_or(built_from)
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
}

pub fn build_request(args: &BuildArgs) -> BuildRequest {
    let root = repo_root();
    let (package, patches) = match args.base {
        Base::V7_3 => (SourceSpec::default_base(), root.join("kernel-patches")),
        Base::V6_12 => (SourceSpec::lts_base(), root.join("kernel-patches/6.12")),
    };
    BuildRequest {
        cache_dir: args.cache_dir.clone(),
        source: args.source.clone().map(SourceSpec::Path).unwrap_or(package),
        config: args
            .config
            .clone()
            .unwrap_or_else(|| patches.join("config")),
        patches: args.patches.clone().unwrap_or(patches),
        profile: match args.profile {
            ProfileArg::Tiny => Profile::Tiny,
            ProfileArg::Debug => Profile::Debug,
        },
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        refresh_source: args.refresh_source,
    }
}

pub fn build(args: &BuildArgs) -> Result<KernelImage> {
    let req = build_request(args);
    let mut reporter = progress::reporter();
    vm::build(&req, reporter.as_mut()).context("failed to build the kernel")
}

fn describe(image: &KernelImage) {
    eprintln!(
        "kernel {} (upstream {}, {}; series {}, config {}, profile {})",
        image.release,
        image.upstream,
        image.origin,
        image.key.series,
        image.key.config,
        image.key.profile
    );
}

pub fn accel(choice: AccelArg, cache: &Path) -> Accel {
    match choice {
        AccelArg::Kvm => Accel::Kvm,
        AccelArg::Tcg => Accel::Tcg,
        AccelArg::Auto => {
            let probe = vm::detect_accel(&cache.join("tmp"));
            eprintln!(
                "accelerator: {} ({})",
                match probe.accel {
                    Accel::Kvm => "KVM",
                    Accel::Tcg => "TCG",
                },
                probe.reason
            );
            probe.accel
        }
    }
}

/// Set by SIGINT/SIGTERM; the guest is stopped when it is.
pub fn cancel_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag))
            .context("failed to install a signal handler")?;
    }
    Ok(flag)
}

fn console_log_path(cache: &Path) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    cache
        .join("logs")
        .join(format!("console-{stamp}-{}.log", std::process::id()))
}

/// Everything needed to boot, minus the command.
pub struct Guest {
    pub kernel: PathBuf,
    pub accel: Accel,
    pub cache: PathBuf,
    pub memory: String,
    pub cpus: u32,
    pub rwdirs: Vec<PathBuf>,
}

impl Guest {
    /// Boot and run `command`; its exit status, or an error naming the
    /// console log.
    pub fn run(
        &self,
        command: Vec<String>,
        timeout: Duration,
        keep_console: bool,
    ) -> Result<std::process::ExitStatus> {
        let root = repo_root();
        let mut rwdirs = vec![root.clone()];
        rwdirs.extend(self.rwdirs.iter().cloned());
        let cwd = std::env::current_dir().unwrap_or_else(|_| root.clone());
        let req = RunRequest {
            kernel: self.kernel.clone(),
            command,
            timeout,
            rwdirs,
            cwd,
            memory: self.memory.clone(),
            cpus: self.cpus,
            accel: self.accel,
            console_log: console_log_path(&self.cache),
        };
        let cancel = cancel_flag()?;
        let mut reporter = progress::reporter();
        let mut console_log = req.console_log.clone();
        let status = match vm::boot::run(&req, &cancel, reporter.as_mut()) {
            // Some hosts' /dev/kvm runs the probe firmware but not a kernel:
            // remember it, and run this guest under TCG instead.
            Err(e @ vm::Error::KvmStalled { .. }) => {
                eprintln!("fibneigh: {e}; retrying under TCG");
                console_log = console_log_path(&self.cache);
                let req = RunRequest {
                    accel: Accel::Tcg,
                    console_log: console_log.clone(),
                    ..req.clone()
                };
                let retried = vm::boot::run(&req, &cancel, reporter.as_mut());
                // Only a kernel that then ran under TCG convicts KVM (a
                // broken kernel is silent under both).
                if retried.is_ok() {
                    let _ = vm::boot::mark_kvm_stalled(
                        &self.cache.join("tmp"),
                        "a kernel printed nothing under KVM on this host, then ran under TCG",
                    );
                }
                retried
            }
            other => other,
        }
        .context("failed to run the guest")?;
        if status.success() && !keep_console {
            let _ = std::fs::remove_file(&console_log);
        } else {
            eprintln!("console log: {}", console_log.display());
        }
        Ok(status)
    }
}

fn run_in_guest(args: RunArgs) -> Result<ExitCode> {
    let kernel = match &args.kernel {
        Some(k) => k.clone(),
        None => build(&args.build)?.bzimage,
    };
    if !kernel.is_file() {
        bail!("kernel image {} does not exist", kernel.display());
    }
    let guest = Guest {
        kernel,
        accel: accel(args.accel, &args.build.cache_dir),
        cache: args.build.cache_dir.clone(),
        memory: args.memory,
        cpus: args.cpus,
        rwdirs: args.rwdir,
    };
    let status = guest.run(
        args.command.clone(),
        Duration::from_secs(args.timeout),
        args.keep_console,
    )?;
    let code = status.code().unwrap_or(crate::EXIT_INFRA as i32);
    match code {
        0 => {}
        126 | 127 => eprintln!(
            "fibneigh: the guest could not start `{}` (exit {code}: not found or not executable)",
            args.command[0]
        ),
        _ => eprintln!("fibneigh: guest command exited with status {code}"),
    }
    Ok(ExitCode::from(
        u8::try_from(code).unwrap_or(crate::EXIT_INFRA),
    ))
}

fn minutes(d: Duration) -> String {
    format!("{:.1} min", d.as_secs_f64() / 60.0)
}

/// Clean build (fresh tree, ccache off), rebuild after touching
/// net/core/filter.c, and boot-to-command for `true`.
fn bench(args: BenchArgs) -> Result<ExitCode> {
    let mut req = build_request(&args.build);
    let mut reporter = progress::reporter();
    let mut rows: Vec<(String, String)> = Vec::new();

    let image = if args.skip_clean_build {
        vm::build(&req, reporter.as_mut())?
    } else {
        // A private cache, so nothing is reused: fresh tree, empty ccache.
        let bench_cache = req.cache_dir.join("bench");
        let _ = std::fs::remove_dir_all(&bench_cache);
        std::fs::create_dir_all(&bench_cache)?;
        // Share the downloaded packages, not the trees or kernels.
        let apt = req.cache_dir.join("apt");
        if apt.is_dir() {
            std::os::unix::fs::symlink(&apt, bench_cache.join("apt"))?;
        }
        std::env::set_var("CCACHE_DISABLE", "1");
        req.cache_dir = bench_cache;
        let t = Instant::now();
        let image = vm::build(&req, reporter.as_mut())?;
        rows.push((
            "clean build (unpack, commit, patch, configure, make; no ccache)".into(),
            minutes(t.elapsed()),
        ));
        std::env::remove_var("CCACHE_DISABLE");
        image
    };

    let filter = image.tree.join("net/core/filter.c");
    let f = std::fs::File::options()
        .append(true)
        .open(&filter)
        .with_context(|| format!("failed to open {}", filter.display()))?;
    f.set_modified(std::time::SystemTime::now())?;
    let t = Instant::now();
    vm::kbuild::build(
        &image.tree,
        req.profile,
        req.jobs,
        &req.cache_dir.join("ccache"),
        &req.cache_dir.join("bench-rebuild.log"),
        reporter.as_mut(),
    )?;
    rows.push((
        "rebuild after touching net/core/filter.c".into(),
        minutes(t.elapsed()),
    ));

    let accel = accel(args.accel, &req.cache_dir);
    let guest = Guest {
        kernel: image.bzimage.clone(),
        accel,
        cache: req.cache_dir.clone(),
        memory: "2G".into(),
        cpus: 2,
        rwdirs: Vec::new(),
    };
    let mut boots = Vec::new();
    for _ in 0..args.boots.max(1) {
        let t = Instant::now();
        let status = guest.run(vec!["true".into()], Duration::from_secs(300), false)?;
        if !status.success() {
            bail!("`true` failed in the guest: {status}");
        }
        boots.push(t.elapsed().as_secs_f64());
    }
    boots.sort_by(f64::total_cmp);
    let median = boots[boots.len() / 2];
    let label = match accel {
        Accel::Kvm => "KVM",
        Accel::Tcg => "TCG",
    };
    rows.push((
        format!(
            "boot-to-command for `true` ({label}, median of {})",
            boots.len()
        ),
        format!(
            "{median:.1} s (min {:.1}, max {:.1})",
            boots[0],
            boots[boots.len() - 1]
        ),
    ));

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "vm bench: kernel {} ({}), {cpus} CPUs, make -j{}",
        image.release, image.origin, req.jobs
    );
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("  {k:<width$}  {v}");
    }
    Ok(ExitCode::SUCCESS)
}
