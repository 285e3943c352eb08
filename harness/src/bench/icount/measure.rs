//! `fibneigh vm icount`'s measurement on the host: the kernel built, its
//! symbols found with `nm`, the plugin's arguments prepared, the guest
//! booted under TCG with the plugin, and the two reports analysed.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use fibneigh_bpf::Hook;
use fibneigh_icount::Report;
use fibneigh_vm::{Accel, BuildRequest, KernelImage};

use super::{analyse, GuestRun, IcountReport, DEFAULT_RUNS, HELPERS, MARKERS};
use crate::pipeline::{self, KernelChoice};
use crate::stop;

/// The plugin's file name as `cargo build` leaves it next to `fibneigh`.
pub const PLUGIN_FILE: &str = "libfibneigh_icount_plugin.so";

/// What a measurement can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Pipeline(#[from] pipeline::Error),
    /// The guest was stopped by SIGINT/SIGTERM: not a failure of the tool.
    #[error(transparent)]
    Stopped(pipeline::Error),
    #[error("{what}")]
    Exe {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the QEMU plugin {} does not exist; build it with `cargo build -p fibneigh-icount-plugin` \
         (or pass --plugin)",
        .0.display()
    )]
    NoPlugin(PathBuf),
    #[error("failed to run nm (binutils)")]
    NmSpawn(#[source] std::io::Error),
    #[error("nm {} failed: {stderr}", .vmlinux.display())]
    Nm { vmlinux: PathBuf, stderr: String },
    #[error(transparent)]
    Symbols(#[from] fibneigh_icount::Error),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the icount workload failed in the guest ({0})")]
    Workload(ExitStatus),
    #[error("{what} wrote no report at {}", .path.display())]
    NoReport {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is not valid JSON")]
    BadReport {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{error}; the guest's and the plugin's reports are kept in {}", .kept.display())]
    Unmatched { error: String, kept: PathBuf },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One measurement's settings.
#[derive(Debug, Clone)]
pub struct Request {
    /// The series' kernel (the pristine base is derived from it).
    pub build: BuildRequest,
    /// The QEMU plugin, as [`locate_plugin`] found it.
    pub plugin: PathBuf,
    /// Test runs per cell.
    pub runs: u32,
    pub hooks: Vec<Hook>,
    /// Before the guest is killed.
    pub timeout: Duration,
    pub keep_console: bool,
    /// Build the pristine base as [`pipeline::build_pristine_code`] does.
    pub pristine_code: bool,
}

/// What `vm icount` asks for, besides the kernel, its files and its check.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("pristine_base").args(["pristine", "with_pristine"])))]
pub struct IcountChoice {
    /// Test runs per cell; each run is 64 lookups.
    #[arg(long, default_value_t = DEFAULT_RUNS)]
    pub runs: u32,
    /// Hooks (repeatable) [default: tc and xdp].
    #[arg(long = "hook")]
    pub hooks: Vec<Hook>,
    /// Measure the pristine base (same source, config and profile, no
    /// patches) instead of the series: flags 0 before the series.
    #[arg(long)]
    pub pristine: bool,
    /// Measure the pristine base first, then the series, and show flags 0
    /// (and SKIP_NEIGH) before and after the series.
    #[arg(long, conflicts_with = "pristine")]
    pub with_pristine: bool,
    /// With --pristine or --with-pristine: build the base as its code on
    /// the series' uAPI headers (each patch reduced to its changes of
    /// include/uapi/ and tools/include/uapi/), which ccache serves from
    /// the series' kernel of the same config. It counts as the pristine
    /// base does when the header only adds what the base's code does not
    /// use; the figures for the record are against the true base.
    #[arg(long, requires = "pristine_base")]
    pub pristine_code: bool,
    /// The QEMU plugin [default: libfibneigh_icount_plugin.so next to this
    /// binary; `cargo build -p fibneigh-icount-plugin` makes it].
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Seconds before the guest is killed.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

impl IcountChoice {
    /// The measurement of the kernel `build` asks for: the plugin found.
    pub fn request(&self, build: &KernelChoice, keep_console: bool) -> Result<Request> {
        Ok(Request {
            pristine_code: self.pristine_code,
            plugin: locate_plugin(self.plugin.clone())?,
            build: build.request()?,
            runs: self.runs,
            hooks: self.hooks.clone(),
            timeout: Duration::from_secs(self.timeout),
            keep_console,
        })
    }
}

/// The hooks asked for: every hook when none was.
pub fn hooks(kinds: &[Hook]) -> Vec<Hook> {
    if kinds.is_empty() {
        Hook::ALL.to_vec()
    } else {
        kinds.to_vec()
    }
}

/// The plugin: `given`, or [`PLUGIN_FILE`] next to this binary; it must
/// exist.
pub fn locate_plugin(given: Option<PathBuf>) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()
            .map_err(|source| Error::Exe {
                what: "cannot find this binary's directory",
                source,
            })?
            .with_file_name(PLUGIN_FILE),
    };
    if !path.is_file() {
        return Err(Error::NoPlugin(path));
    }
    Ok(path)
}

/// The text symbols' addresses in `vmlinux` (through `nm`).
fn symbols(vmlinux: &Path, names: &[&str]) -> Result<Vec<u64>> {
    let out = Command::new("nm")
        .arg("--defined-only")
        .arg(vmlinux)
        .output()
        .map_err(Error::NmSpawn)?;
    if !out.status.success() {
        return Err(Error::Nm {
            vmlinux: vmlinux.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(fibneigh_icount::text_symbols(
        &String::from_utf8_lossy(&out.stdout),
        names,
    )?)
}

/// Boot the series' (or the pristine) kernel with the plugin, run the
/// workload and take the figures; [`Error::Stopped`] when the guest was
/// stopped by a signal.
pub fn measure(req: &Request, pristine: bool) -> Result<(KernelImage, IcountReport)> {
    let image = if pristine && req.pristine_code {
        pipeline::build_pristine_code(&req.build)?
    } else if pristine {
        pipeline::build_pristine(&req.build)?
    } else {
        pipeline::build(&req.build)?
    };
    let helpers = symbols(&image.vmlinux, &HELPERS)?;
    let markers = symbols(&image.vmlinux, &MARKERS)?;
    // The guest writes into the repository (shared read-write); removed
    // with everything in it when this returns, failed or not.
    let target = pipeline::repo_root().join("target");
    std::fs::create_dir_all(&target).map_err(|source| Error::Io {
        what: format!("failed to create {}", target.display()),
        source,
    })?;
    let scratch = tempfile::Builder::new()
        .prefix("icount-")
        .tempdir_in(&target)
        .map_err(|source| Error::Io {
            what: "failed to create a scratch directory".into(),
            source,
        })?;
    let plugin_args = fibneigh_icount::Args {
        out: scratch.path().join("plugin.json"),
        helpers,
        markers,
        trace: std::env::var("FIBNEIGH_ICOUNT_TRACE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    };
    let guest_out = scratch.path().join("guest.json");
    // A plugin only sees TCG's translation: KVM is never used here, and
    // one vCPU keeps the plugin's single counter exact.
    let mut guest = pipeline::guest(image.bzimage.clone(), Accel::Tcg, &req.build.cache_dir, &[]);
    guest.cpus = 1;
    guest.qemu_args = vec!["-plugin".into(), plugin_args.qemu_option(&req.plugin)];
    // The guest runs a copy of this binary from the scratch directory: a
    // `cargo build` on the host meanwhile (a script that asks the binary
    // something does one) replaces the file this process was started
    // from, and the guest would find nothing at its path. /proc/self/exe
    // is the running binary even once its file has been replaced.
    let guest_exe = scratch.path().join("fibneigh");
    std::fs::copy("/proc/self/exe", &guest_exe).map_err(|source| Error::Exe {
        what: "cannot copy this binary for the guest",
        source,
    })?;
    let mut command = vec![
        guest_exe.display().to_string(),
        "icount-guest".into(),
        "--runs".into(),
        req.runs.to_string(),
        "--out".into(),
        guest_out.display().to_string(),
    ];
    for h in hooks(&req.hooks) {
        command.extend(["--hook".into(), h.name().into()]);
    }
    eprintln!(
        "icount: kernel {} (series {}), plugin {}, {} runs x 64 lookups per cell",
        image.release,
        image.key.series,
        req.plugin.display(),
        req.runs
    );
    let status = match pipeline::run_guest(&guest, command, req.timeout, req.keep_console) {
        Ok(done) => done.status,
        Err(e) if stop::requested() => return Err(Error::Stopped(e)),
        Err(e) => return Err(e.into()),
    };
    if !status.success() {
        return Err(Error::Workload(status));
    }
    let read = |path: &Path, what: &'static str| -> Result<String> {
        std::fs::read_to_string(path).map_err(|source| Error::NoReport {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let guest_run: GuestRun = serde_json::from_str(&read(&guest_out, "the guest workload")?)
        .map_err(|source| Error::BadReport {
            what: "the guest's report",
            source,
        })?;
    let counted: Report = serde_json::from_str(&read(&plugin_args.out, "the QEMU plugin")?)
        .map_err(|source| Error::BadReport {
            what: "the plugin's report",
            source,
        })?;
    match analyse(&guest_run, &counted) {
        Ok(r) => Ok((image, r)),
        Err(e) => {
            // Keep both reports for a look at what did not match.
            let kept = scratch.keep();
            Err(Error::Unmatched {
                error: e.to_string(),
                kept,
            })
        }
    }
}

/// What one `vm icount` measured: the kernel and its figures, and with
/// the pristine base measured first, its kernel and figures and the
/// series' cost and goals.
#[derive(Debug)]
pub struct Measured {
    pub image: KernelImage,
    pub report: IcountReport,
    pub pristine: Option<(KernelImage, IcountReport)>,
    pub series_cost: Option<Vec<super::SeriesCost>>,
    pub series_goals: Option<Vec<super::Goal>>,
}

/// Measure the series' kernel (or with `pristine` the base's); with
/// `with_pristine` the pristine base first, then the series, compared.
pub fn measure_all(req: &Request, pristine: bool, with_pristine: bool) -> Result<Measured> {
    let before = if with_pristine {
        Some(measure(req, true)?)
    } else {
        None
    };
    let (image, report) = measure(req, pristine)?;
    let series_cost = before
        .as_ref()
        .map(|(_, pristine)| super::series_cost(pristine, &report));
    let series_goals = series_cost.as_deref().map(super::series_goals);
    Ok(Measured {
        image,
        report,
        pristine: before,
        series_cost,
        series_goals,
    })
}

impl Measured {
    /// What `vm icount --json` writes (`pristine`: the figures are the
    /// pristine base's).
    pub fn json(&self, pristine: bool) -> JsonReport<'_> {
        JsonReport {
            kernel: &self.image,
            pristine,
            report: &self.report,
            pristine_kernel: self.pristine.as_ref().map(|(k, _)| k),
            pristine_report: self.pristine.as_ref().map(|(_, r)| r),
            series_cost: self.series_cost.as_ref(),
            series_goals: self.series_goals.as_ref(),
        }
    }

    /// Whether a goal that could be measured was missed, in the figures'
    /// goals or the series' (before and after).
    pub fn goal_missed(&self) -> bool {
        self.report
            .goals
            .iter()
            .chain(self.series_goals.iter().flatten())
            .any(|g| g.met == Some(false))
    }
}

/// What `vm icount --json` writes.
#[derive(serde::Serialize)]
pub struct JsonReport<'a> {
    pub kernel: &'a KernelImage,
    pub pristine: bool,
    #[serde(flatten)]
    pub report: &'a IcountReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pristine_kernel: Option<&'a KernelImage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pristine_report: Option<&'a IcountReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series_cost: Option<&'a Vec<super::SeriesCost>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series_goals: Option<&'a Vec<super::Goal>>,
}
