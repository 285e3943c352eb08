//! The VM pipeline as the commands drive it: the repository, kernel builds
//! with their progress shown, the accelerator choice, guests that share the
//! repository, and one guest run that SIGINT/SIGTERM stop.

pub mod progress;
pub mod render;
pub mod run;
pub mod selftests;
pub mod series;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fibneigh_vm::base::KernelBase;
use fibneigh_vm::{self as vm, Accel, Arch, BuildRequest, Guest, KernelImage, Profile, SourceSpec};

use crate::stop;

/// What driving the pipeline can fail with; each says which step failed,
/// the pipeline's own error underneath.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to install the signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("failed to build the kernel")]
    Build(#[source] vm::Error),
    #[error("failed to build the pristine kernel")]
    BuildPristine(#[source] vm::Error),
    #[error("failed to prepare the kernel tree")]
    Tree(#[source] vm::Error),
    #[error("failed to run the guest")]
    Guest(#[source] vm::Error),
    /// A guest stopped by SIGINT/SIGTERM: not a failure of the tool.
    #[error(transparent)]
    Stopped(Box<Error>),
    #[error("failed to find the guest runner")]
    Runner(#[source] vm::Error),
    #[error("--tree")]
    Repo(#[source] vm::Error),
    #[error("failed to remove the worktree")]
    RemoveWorktree(#[source] vm::Error),
    #[error(
        "--print-path prints the pipeline's own tree of --base; it takes no --source or --tree"
    )]
    PrintPathSource,
    #[error("--clean needs --tree PATH")]
    CleanNoTree,
    #[error("vm timing measures the pipeline's own base (its clean build uses a private cache); --tree is not supported")]
    TimingTree,
    #[error("`vm timing` times the x86_64/virtme-ng pipeline; for User-Mode Linux use `vm build --arch um --no-ccache` and `vm run --arch um`")]
    TimingUm,
    #[error(transparent)]
    Author(#[from] vm::series::AuthorError),
    #[error(transparent)]
    Vm(#[from] vm::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A count given on the command line that must be at least one (make
/// jobs, boots), refused by name otherwise.
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
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

/// The kernel a command line asks for (the arguments `vm`, `icount` and
/// `selftests` share); [`KernelChoice::request`] fills in the defaults
/// from the repository.
#[derive(Debug, Clone, clap::Args)]
pub struct KernelChoice {
    /// Cache directory for sources, trees and kernels.
    #[arg(long, env = "FIBNEIGH_CACHE", default_value_os_t = vm::default_cache_dir())]
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
    #[arg(long, short, value_parser = at_least_one())]
    pub jobs: Option<usize>,
    /// Ask the mirror for the newest package version even if one is cached.
    #[arg(long)]
    pub refresh_source: bool,
    /// Build profile: o2 (the fragment plus `config-o2` next to it: -O2, as
    /// distributions build), tiny (the fragment alone: tinyconfig's -Os),
    /// debug (the fragment plus `config-debug`: lockdep, KASAN, UBSAN, ...;
    /// for correctness runs, never for benchmarks) or selftests (plus
    /// `config-selftests`: what the BPF selftests of `selftests --diff`
    /// need). With --config, the profile's fragment is read next to it.
    #[arg(long, value_enum, default_value_t = Profile::O2)]
    pub profile: Profile,
    /// Architecture: x86_64 (a bzImage booted under virtme-ng) or um
    /// (User-Mode Linux: `kernel-patches/config-um`, the `linux` program,
    /// run natively on the host CPU with interpreted BPF).
    #[arg(long, value_enum, default_value_t = Arch::X86_64)]
    pub arch: Arch,
    /// Refuse to build a kernel or prepare a tree with less than this free
    /// on the cache's file system: e.g. 4GiB (GiB, MiB: powers of 1024;
    /// GB, MB, G, M: of 1000), or 0. Before refusing a build, the kernel
    /// cache is pruned (--kernel-cache-max) and the space looked at again.
    #[arg(long, value_name = "SIZE", env = "FIBNEIGH_MIN_FREE", default_value_t = vm::DEFAULT_MIN_FREE)]
    pub min_free: vm::ByteSize,
    /// After a kernel is built, remove the cached kernels used least
    /// recently until `<cache>/kernels` fits in SIZE (e.g. 16GiB), or
    /// `unlimited`. None used (found, built or booted) in the last six
    /// hours is removed; every user of the cache directory shares it.
    #[arg(long, value_name = "SIZE", env = "FIBNEIGH_KERNEL_CACHE_MAX", default_value_t = vm::DEFAULT_KERNEL_CACHE_LIMIT)]
    pub kernel_cache_max: vm::CacheLimit,
}

impl KernelChoice {
    /// The build request: the base's source and series in the repository
    /// unless given, ccache on; with `no_series`, its pristine base.
    pub fn request(&self) -> Result<BuildRequest> {
        let root = repo_root();
        let (package, patches) = (self.base.source(), self.base.patches(&root));
        let source = match (&self.tree, &self.source) {
            (Some(tree), _) => SourceSpec::Tree(tree.clone()),
            (None, Some(path)) => SourceSpec::Path(path.clone()),
            (None, None) => package,
        };
        let req = BuildRequest {
            cache_dir: self.cache_dir.clone(),
            source,
            config: self
                .config
                .clone()
                .unwrap_or_else(|| patches.join(self.arch.fragment())),
            patches: self.patches.clone().unwrap_or(patches),
            profile: self.profile,
            jobs: self
                .jobs
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            refresh_source: self.refresh_source,
            ccache: true,
            arch: self.arch,
            min_free: self.min_free,
            kernel_cache_limit: self.kernel_cache_max,
        };
        if self.no_series {
            return Ok(req.pristine()?);
        }
        Ok(req)
    }

    /// The tree the pipeline already unpacked for the base (and
    /// architecture), as it is: nothing fetched, applied or configured.
    /// Not for a `source` or `tree`.
    pub fn unpacked_tree(&self) -> Result<vm::SourceTree> {
        if self.source.is_some() || self.tree.is_some() {
            return Err(Error::PrintPathSource);
        }
        Ok(self.base.unpacked_tree(&self.cache_dir, self.arch)?)
    }

    /// Remove the worktree the builds of `tree` use: its repository and
    /// the worktree's directory, if there was one.
    pub fn remove_worktree(&self) -> Result<(vm::tree::Repo, Option<PathBuf>)> {
        let path = self.tree.as_deref().ok_or(Error::CleanNoTree)?;
        remove_worktree(path, &self.cache_dir)
    }
}

/// What `vm timing` asks for, besides the kernel.
#[derive(Debug, Clone, clap::Args)]
pub struct TimingChoice {
    /// Boots to time for boot-to-command.
    #[arg(long, default_value_t = 3, value_parser = at_least_one())]
    pub boots: usize,
    /// Skip the clean build (which takes minutes) and time only the rest.
    #[arg(long)]
    pub skip_clean_build: bool,
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
}

impl TimingChoice {
    /// The measurement of the kernel `build` asks for: the pipeline's own
    /// base (no --tree), x86_64 under virtme-ng, the repository shared.
    pub fn request(&self, build: &KernelChoice) -> Result<vm::timing::TimingRequest> {
        if build.tree.is_some() {
            return Err(Error::TimingTree);
        }
        if build.arch == Arch::Um {
            return Err(Error::TimingUm);
        }
        let build = build.request()?;
        Ok(vm::timing::TimingRequest {
            accel: self.accel.resolve(&build.cache_dir),
            build,
            clean_build: !self.skip_clean_build,
            boots: self.boots,
            rwdirs: vec![repo_root()],
        })
    }
}

/// Build (or find in the cache) the kernel `req` describes, its progress
/// shown.
pub fn build(req: &BuildRequest) -> Result<KernelImage> {
    vm::build(req, progress::reporter().as_mut()).map_err(Error::Build)
}

/// Build (or find) the pristine base of `req`: the same source, config and
/// profile, no patches.
pub fn build_pristine(req: &BuildRequest) -> Result<KernelImage> {
    let req = req.clone().pristine()?;
    vm::build(&req, progress::reporter().as_mut()).map_err(Error::BuildPristine)
}

/// Build (or find) the base's code on the series' uAPI headers
/// ([`BuildRequest::pristine_code`]): the same source, config and profile.
pub fn build_pristine_code(req: &BuildRequest) -> Result<KernelImage> {
    let req = req.clone().pristine_code()?;
    vm::build(&req, progress::reporter().as_mut()).map_err(Error::BuildPristine)
}

/// The kernel tree of `req`, the series applied and configured (not
/// built), its progress shown.
pub fn prepare_tree(req: &BuildRequest) -> Result<vm::SourceTree> {
    vm::prepare_tree(req, progress::reporter().as_mut()).map_err(Error::Tree)
}

/// Remove the worktree in `cache` that builds of the repository at `tree`
/// use (and its entry in the repository's `.git/worktrees`): the
/// repository, and the worktree's directory if there was one.
pub fn remove_worktree(tree: &Path, cache: &Path) -> Result<(vm::tree::Repo, Option<PathBuf>)> {
    let repo = vm::tree::Repo::open(tree).map_err(Error::Repo)?;
    let dir = vm::tree::remove_worktree(&repo, cache).map_err(Error::RemoveWorktree)?;
    Ok((repo, dir))
}

/// Which accelerator a guest gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    /// KVM if it can really run a guest here, else TCG (the choice and
    /// its reason are printed).
    #[value(help = "KVM if it can really run a guest here, else TCG")]
    Auto,
    Kvm,
    Tcg,
}

impl AccelChoice {
    /// The accelerator, probing this host (with the cache's `tmp/`) for
    /// [`AccelChoice::Auto`].
    pub fn resolve(self, cache: &Path) -> Accel {
        match self {
            AccelChoice::Kvm => Accel::Kvm,
            AccelChoice::Tcg => Accel::Tcg,
            AccelChoice::Auto => {
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
}

/// A guest for `kernel` sharing the repository (and `rwdirs`) read-write,
/// starting in the current directory; `memory`/`cpus` default as
/// [`fibneigh_vm::RunRequest::default`] says.
pub fn guest(kernel: PathBuf, accel: Accel, cache: &Path, rwdirs: &[PathBuf]) -> Guest {
    let root = repo_root();
    let mut dirs = vec![root.clone()];
    dirs.extend(rwdirs.iter().cloned());
    let mut guest = Guest::new(kernel, accel, cache.to_path_buf(), dirs);
    guest.cwd = std::env::current_dir().unwrap_or(root);
    guest
}

/// Boot `guest` and run `command`; its exit status, or an error naming the
/// console log. SIGINT/SIGTERM stop the guest.
pub fn run_guest(
    guest: &Guest,
    command: Vec<String>,
    timeout: Duration,
    keep_console: bool,
) -> Result<fibneigh_vm::guest::Finished> {
    stop::install().map_err(Error::Signals)?;
    let mut reporter = progress::reporter();
    let done = guest
        .run(
            command,
            timeout,
            keep_console,
            stop::flag(),
            reporter.as_mut(),
        )
        .map_err(Error::Guest)?;
    if done.console_kept {
        eprintln!("console log: {}", done.console_log.display());
    }
    Ok(done)
}
