//! `fibneigh vm icount`: instructions per `bpf_fib_lookup()` call, counted
//! by the `fibneigh-icount` QEMU plugin in a TCG guest; and
//! `fibneigh icount-guest`, the workload it runs inside.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use fibneigh::bench::icount::{self, GuestRun, IcountReport, DEFAULT_RUNS, HELPERS, MARKERS};
use fibneigh::stop::{self, EXIT_INTERRUPTED};
use fibneigh_bpf::nud;
use fibneigh_bpf::Hook;
use fibneigh_icount::Report;
use fibneigh_vm::{self as vm, Accel, KernelImage};

use super::write_json;
use super::BuildArgs;

/// The plugin's file name as `cargo build` leaves it next to `fibneigh`.
pub const PLUGIN_FILE: &str = "libfibneigh_icount_plugin.so";

#[derive(Args)]
pub struct IcountArgs {
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
    /// The QEMU plugin [default: libfibneigh_icount_plugin.so next to this
    /// binary; `cargo build -p fibneigh-icount-plugin` makes it].
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Seconds before the guest is killed.
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Exit 1 when a gated goal that could be measured was missed: with
    /// --with-pristine, flags 0 and SKIP_NEIGH at most +2 over the
    /// pristine base in every row. The neighbour flags' own goals
    /// (NEIGH_STATE +4, NEIGH_REFRESH +12) are reported with their verdict.
    #[arg(long)]
    pub check: bool,
    /// Keep the console log even when the guest succeeds.
    #[arg(long)]
    pub keep_console: bool,
    #[command(flatten)]
    pub build: BuildArgs,
}

#[derive(Args)]
pub struct GuestArgs {
    #[arg(long, default_value_t = DEFAULT_RUNS)]
    pub runs: u32,
    #[arg(long = "hook")]
    pub hooks: Vec<Hook>,
    /// Where to write what was run (JSON).
    #[arg(long)]
    pub out: PathBuf,
}

fn hooks(kinds: &[Hook]) -> Vec<Hook> {
    if kinds.is_empty() {
        Hook::ALL.to_vec()
    } else {
        kinds.to_vec()
    }
}

/// `fibneigh icount-guest`: the workload, in the guest.
pub fn guest(args: GuestArgs) -> Result<ExitCode> {
    stop::install().context("failed to install the signal handlers")?;
    let run = match icount::run_workload(args.runs, &hooks(&args.hooks)) {
        Err(fibneigh::error::Error::Interrupted(_)) => return Ok(ExitCode::from(EXIT_INTERRUPTED)),
        other => other.context("the icount workload failed")?,
    };
    let text = serde_json::to_string_pretty(&run)?;
    std::fs::write(&args.out, text)
        .with_context(|| format!("failed to write {}", args.out.display()))?;
    Ok(ExitCode::SUCCESS)
}

fn locate_plugin(given: Option<PathBuf>) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()
            .context("cannot find this binary's directory")?
            .with_file_name(PLUGIN_FILE),
    };
    if !path.is_file() {
        bail!(
            "the QEMU plugin {} does not exist; build it with `cargo build -p fibneigh-icount-plugin` \
             (or pass --plugin)",
            path.display()
        );
    }
    Ok(path)
}

/// The kernel to measure: the series' (what `vm build` makes) or the
/// pristine base's.
fn kernel(args: &IcountArgs, pristine: bool) -> Result<KernelImage> {
    if !pristine {
        return super::build(&args.build);
    }
    let req = super::build_request(&args.build)?.pristine()?;
    vm::build(&req, super::progress::reporter().as_mut())
        .context("failed to build the pristine kernel")
}

/// The text symbols' addresses in `vmlinux` (through `nm`).
fn symbols(vmlinux: &Path, names: &[&str]) -> Result<Vec<u64>> {
    let out = Command::new("nm")
        .arg("--defined-only")
        .arg(vmlinux)
        .output()
        .context("failed to run nm (binutils)")?;
    if !out.status.success() {
        bail!(
            "nm {} failed: {}",
            vmlinux.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(fibneigh_icount::text_symbols(
        &String::from_utf8_lossy(&out.stdout),
        names,
    )?)
}

/// `fibneigh vm icount`.
pub fn run(args: IcountArgs) -> Result<ExitCode> {
    stop::install().context("failed to install the signal handlers")?;
    let plugin = locate_plugin(args.plugin.clone())?;
    let before = if args.with_pristine {
        match measure(&args, &plugin, true)? {
            Some(m) => Some(m),
            None => return Ok(ExitCode::from(EXIT_INTERRUPTED)),
        }
    } else {
        None
    };
    let Some((image, report)) = measure(&args, &plugin, args.pristine)? else {
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    };
    print!("{}", render(&report, &image));
    let series = before
        .as_ref()
        .map(|(_, pristine)| icount::series_cost(pristine, &report));
    let series_goals = series.as_deref().map(icount::series_goals);
    if let (Some(rows), Some(goals)) = (&series, &series_goals) {
        print!("{}", render_series(rows));
        print!(
            "goals (before and after the series):\n{}",
            goal_lines(goals)
        );
    }
    if let Some(path) = &args.json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            kernel: &'a KernelImage,
            pristine: bool,
            #[serde(flatten)]
            report: &'a IcountReport,
            #[serde(skip_serializing_if = "Option::is_none")]
            pristine_kernel: Option<&'a KernelImage>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pristine_report: Option<&'a IcountReport>,
            #[serde(skip_serializing_if = "Option::is_none")]
            series_cost: Option<&'a Vec<icount::SeriesCost>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            series_goals: Option<&'a Vec<icount::Goal>>,
        }
        write_json(
            path,
            &Out {
                kernel: &image,
                pristine: args.pristine,
                report: &report,
                pristine_kernel: before.as_ref().map(|(k, _)| k),
                pristine_report: before.as_ref().map(|(_, r)| r),
                series_cost: series.as_ref(),
                series_goals: series_goals.as_ref(),
            },
        )?;
    }
    let missed = report
        .goals
        .iter()
        .chain(series_goals.iter().flatten())
        .any(|g| g.gated && g.met == Some(false));
    Ok(if args.check && missed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Boot the series' (or the pristine) kernel with the plugin, run the
/// workload and take the figures; `None` when interrupted.
fn measure(
    args: &IcountArgs,
    plugin: &Path,
    pristine: bool,
) -> Result<Option<(KernelImage, IcountReport)>> {
    let image = kernel(args, pristine)?;
    let helpers = symbols(&image.vmlinux, &HELPERS)?;
    let markers = symbols(&image.vmlinux, &MARKERS)?;
    // The guest writes into the repository (shared read-write); removed
    // with everything in it when this returns, failed or not.
    let target = super::repo_root().join("target");
    std::fs::create_dir_all(&target)
        .with_context(|| format!("failed to create {}", target.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("icount-")
        .tempdir_in(&target)
        .context("failed to create a scratch directory")?;
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
    let mut guest = super::guest(
        image.bzimage.clone(),
        Accel::Tcg,
        &args.build.cache_dir,
        &[],
    );
    guest.cpus = 1;
    guest.qemu_args = vec!["-plugin".into(), plugin_args.qemu_option(plugin)];
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let mut command = vec![
        exe.display().to_string(),
        "icount-guest".into(),
        "--runs".into(),
        args.runs.to_string(),
        "--out".into(),
        guest_out.display().to_string(),
    ];
    for h in hooks(&args.hooks) {
        command.extend(["--hook".into(), h.name().into()]);
    }
    eprintln!(
        "icount: kernel {} (series {}), plugin {}, {} runs x 64 lookups per cell",
        image.release,
        image.key.series,
        plugin.display(),
        args.runs
    );
    let status = match super::run_guest(
        &guest,
        command,
        Duration::from_secs(args.timeout),
        args.keep_console,
    ) {
        Ok(s) => s,
        Err(e) if stop::requested() => {
            eprintln!("fibneigh: {e:#}");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if !status.success() {
        bail!("the icount workload failed in the guest ({status})");
    }
    let read = |p: &Path, what: &str| -> Result<String> {
        std::fs::read_to_string(p)
            .with_context(|| format!("{what} wrote no report at {}", p.display()))
    };
    let guest_run: GuestRun = serde_json::from_str(&read(&guest_out, "the guest workload")?)
        .context("the guest's report is not valid JSON")?;
    let counted: Report = serde_json::from_str(&read(&plugin_args.out, "the QEMU plugin")?)
        .context("the plugin's report is not valid JSON")?;
    match icount::analyse(&guest_run, &counted) {
        Ok(r) => Ok(Some((image, r))),
        Err(e) => {
            // Keep both reports for a look at what did not match.
            let kept = scratch.keep();
            bail!(
                "{e}; the guest's and the plugin's reports are kept in {}",
                kept.display()
            );
        }
    }
}

/// One line per goal: its text, limit, verdict and worst row.
fn goal_lines(goals: &[icount::Goal]) -> String {
    let mut out = String::new();
    for g in goals {
        let verdict = match (g.met, g.gated) {
            (Some(true), _) => "met",
            (Some(false), true) => "MISSED",
            (Some(false), false) => "missed (reported, not gated)",
            (None, _) => "not measured (flag unsupported)",
        };
        let worst = g
            .worst
            .as_ref()
            .map(|(d, row)| format!(" (largest {d:+}, {row})"))
            .unwrap_or_default();
        out.push_str(&format!("  {}: <= {}: {verdict}{worst}\n", g.text, g.limit));
        if let (Some(false), Some(note)) = (g.met, &g.note) {
            out.push_str(&format!("    ({note})\n"));
        }
    }
    out
}

/// Flags 0 and SKIP_NEIGH before and after the series.
pub fn render_series(rows: &[icount::SeriesCost]) -> String {
    let mut out =
        String::from("before and after the series (pristine base vs series, same config):\n");
    let mut table = fibneigh::present::Table::new().indent(2).header([
        "row",
        "0 pristine",
        "0 series",
        "added",
        "SKIP_NEIGH pristine",
        "SKIP_NEIGH series",
        "added",
    ]);
    let n = |v: Option<u64>| v.map_or("-".to_string(), |x| x.to_string());
    let d = |v: Option<i64>| v.map_or("-".to_string(), |x| format!("{x:+}"));
    for r in rows {
        table.row([
            r.row.clone(),
            n(r.flags0.0),
            n(r.flags0.1),
            d(r.flags0_added()),
            n(r.skip_neigh.0),
            n(r.skip_neigh.1),
            d(r.skip_neigh_added()),
        ]);
    }
    out.push_str(&table.render());
    out
}

/// The table: instructions per call (mode) and the delta against flags 0;
/// then the goals.
pub fn render(report: &IcountReport, image: &KernelImage) -> String {
    let mut out = format!(
        "instructions per bpf_fib_lookup() call (QEMU TCG plugin), kernel {} (series {}), \
         {} runs x 64 calls per cell\n",
        image.release, image.key.series, report.runs
    );
    let columns: Vec<&str> = report
        .rows
        .first()
        .map(|r| r.figures.iter().map(|f| f.column.as_str()).collect())
        .unwrap_or_default();
    let mut header = vec!["row".to_string()];
    header.extend(columns.iter().map(|c| c.to_string()));
    let mut table = fibneigh::present::Table::new().indent(2).header(header);
    for row in &report.rows {
        let mut cells = vec![row.label.clone()];
        for f in &row.figures {
            cells.push(match (f.insns, f.delta) {
                _ if f.calls == 0 && f.note.as_deref().is_some_and(|n| n.starts_with("unsup")) => {
                    "unsupported".into()
                }
                (None, _) => "-".into(),
                (Some(n), Some(0)) if f.column == "0" => format!("{n}"),
                (Some(n), Some(d)) => format!("{n} ({d:+})"),
                (Some(n), None) => format!("{n}"),
            });
        }
        table.row(cells);
    }
    out.push_str(&table.render());
    out.push_str("  floor: the loop without the helper (no call to count)\n");
    for row in &report.rows {
        for f in &row.figures {
            if row.state == nud::STALE && f.column == "NEIGH_REFRESH" {
                if let (Some(first), Some(n)) = (f.first, f.insns) {
                    out.push_str(&format!(
                        "  {}: NEIGH_REFRESH's first call (STALE -> DELAY, arms the timer: varies by a few \
                         between boots) {first}, the rest (DELAY) {n}\n",
                        row.label
                    ));
                }
            }
        }
    }
    let calls: u64 = report
        .rows
        .iter()
        .flat_map(|r| &r.figures)
        .map(|f| f.calls)
        .sum();
    out.push_str(&format!(
        "  calls off their cell's figure (interrupt during the call, or a varying path): {} of {calls}\n",
        report.off_mode_calls
    ));
    out.push_str("goals:\n");
    out.push_str(&goal_lines(&report.goals));
    for m in &report.method {
        out.push_str(&format!("method: {m}\n"));
    }
    out
}
