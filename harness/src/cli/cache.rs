//! `fibneigh vm cache ...`: what the kernel cache holds, and its pruning.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use fibneigh::present::table::Table;
use fibneigh_vm::cache::{self, CachedKernel, Content};
use fibneigh_vm::{ByteSize, CacheLimit, DEFAULT_KERNEL_CACHE_LIMIT};
use serde::Serialize;

use super::write_json;

#[derive(Subcommand)]
pub enum CacheCmd {
    /// Every cached kernel, least recently used first (its key, size and
    /// last use), and the size of the rest of the cache.
    List(ListArgs),
    /// Remove the cached kernels used least recently until
    /// `<cache>/kernels` fits in --max-size, and what failed builds left a
    /// week ago or more. Kernels used in the last six hours stay, whatever
    /// the size, and so do those a running process holds (one that found,
    /// built or booted them); the next goes in their place. Exits 1 if a
    /// directory could not be removed.
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub cache: CacheDir,
    /// The limit the builds keep the kernels within, to show beside their
    /// size (as `vm build --kernel-cache-max`).
    #[arg(long, value_name = "SIZE", env = "FIBNEIGH_KERNEL_CACHE_MAX", default_value_t = DEFAULT_KERNEL_CACHE_LIMIT)]
    pub kernel_cache_max: CacheLimit,
    /// Write the listing as JSON here (`-`: standard output).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub cache: CacheDir,
    /// What `<cache>/kernels` may hold afterwards: e.g. 8GiB (GiB, MiB:
    /// powers of 1024; GB, MB, G, M: of 1000), 0, or `unlimited` (then
    /// only failed builds' directories go). The builds' limit unless
    /// given.
    #[arg(long, value_name = "SIZE", env = "FIBNEIGH_KERNEL_CACHE_MAX", default_value_t = DEFAULT_KERNEL_CACHE_LIMIT)]
    pub max_size: CacheLimit,
    /// Say what would be removed, and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write what was (or would be) removed and kept as JSON here (`-`:
    /// standard output).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Args)]
pub struct CacheDir {
    /// Cache directory for sources, trees and kernels.
    #[arg(long, env = "FIBNEIGH_CACHE", default_value_os_t = fibneigh_vm::default_cache_dir())]
    pub cache_dir: PathBuf,
}

pub fn run(cmd: CacheCmd) -> Result<ExitCode> {
    match cmd {
        CacheCmd::List(args) => list(&args),
        CacheCmd::Prune(args) => prune(&args),
    }
}

/// One directory under `<cache>/kernels`, as the JSON reports give it.
#[derive(Serialize)]
struct KernelRow {
    digest: String,
    dir: PathBuf,
    /// False: no kernel this program can read (see `unreadable`).
    complete: bool,
    /// A manifest this program cannot read (another version's?); false
    /// with `complete` false: no manifest (a build that failed, was
    /// stopped or is running).
    unreadable: bool,
    bytes: u64,
    /// Last use, seconds since the epoch.
    used: u64,
    /// A running process holds it (found, built or booted it): no prune
    /// removes it while it does.
    held: bool,
    key: Option<cache::CacheKey>,
    release: Option<String>,
}

impl KernelRow {
    fn of(k: &CachedKernel, held: bool) -> Self {
        Self {
            digest: digest(k),
            dir: k.dir.clone(),
            complete: k.image().is_some(),
            unreadable: matches!(k.content, Content::Unreadable),
            bytes: k.bytes,
            used: k.used.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            held,
            key: k.image().map(|i| i.key.clone()),
            release: k.image().map(|i| i.release.clone()),
        }
    }
}

fn digest(k: &CachedKernel) -> String {
    k.dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// How long ago `t` was, in the largest whole unit.
fn age(t: SystemTime, now: SystemTime) -> String {
    let s = now.duration_since(t).map_or(0, |d| d.as_secs());
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// `n kernel directories`, or `1 kernel directory`.
fn directories(n: usize) -> String {
    format!("{n} kernel director{}", if n == 1 { "y" } else { "ies" })
}

fn size(bytes: u64) -> String {
    ByteSize(bytes).display().iec().to_string()
}

/// Whether a running process holds each of `kernels` (a lock probe
/// each, made once for both the table and the JSON).
fn holds(kernels: &[CachedKernel]) -> Vec<bool> {
    kernels.iter().map(|k| cache::is_held(&k.dir)).collect()
}

/// The rows of `kernels`, each with the matching entry of `held`.
fn rows(kernels: &[CachedKernel], held: &[bool]) -> Vec<KernelRow> {
    kernels
        .iter()
        .zip(held)
        .map(|(k, &h)| KernelRow::of(k, h))
        .collect()
}

fn kernel_table(kernels: &[CachedKernel], held: &[bool], now: SystemTime) -> Table {
    let mut t = Table::new()
        .header([
            "kernel", "used", "size", "profile", "arch", "base", "series",
        ])
        .rule();
    for (k, &held) in kernels.iter().zip(held) {
        let mut used = age(k.used, now);
        if held {
            used.push_str(", held");
        }
        let mut row = vec![digest(k), used, size(k.bytes)];
        match &k.content {
            Content::Kernel(i) => row.extend([
                i.key.profile.clone(),
                i.key.arch.clone(),
                i.key.base.clone(),
                i.key.series.clone(),
            ]),
            Content::Unreadable => {
                row.push("(a manifest this fibneigh cannot read: another version's?)".into())
            }
            Content::NoKernel => {
                row.push("(no kernel: a build that failed, was stopped or is running)".into())
            }
        }
        t.row(row);
    }
    t
}

#[derive(Serialize)]
struct Listing {
    cache_dir: PathBuf,
    kernels: Vec<KernelRow>,
    kernels_bytes: u64,
    /// Every other entry of the cache directory, by name.
    other: Vec<(String, u64)>,
}

fn list(args: &ListArgs) -> Result<ExitCode> {
    let dir = &args.cache.cache_dir;
    let kernels = cache::entries(dir)
        .with_context(|| format!("failed to read the kernel cache in {}", dir.display()))?;
    let other = cache::other_parts(dir)
        .with_context(|| format!("failed to read the cache in {}", dir.display()))?;
    let now = SystemTime::now();
    let total: u64 = kernels.iter().map(|k| k.bytes).sum();
    let held = holds(&kernels);
    print!("{}", kernel_table(&kernels, &held, now).render());
    println!(
        "{} in {}, {} (each build keeps them within --kernel-cache-max: {})",
        directories(kernels.len()),
        dir.join("kernels").display(),
        size(total),
        args.kernel_cache_max,
    );
    if !other.is_empty() {
        let parts: Vec<String> = other
            .iter()
            .map(|(name, b)| format!("{name} {}", size(*b)))
            .collect();
        println!(
            "the rest of the cache (apparent sizes): {}",
            parts.join(", ")
        );
    }
    write_json(
        args.json.as_deref(),
        &Listing {
            cache_dir: dir.clone(),
            kernels: rows(&kernels, &held),
            kernels_bytes: total,
            other,
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct PruneReport {
    cache_dir: PathBuf,
    /// None: unlimited.
    max_size: Option<u64>,
    dry_run: bool,
    removed: Vec<KernelRow>,
    kept: Vec<KernelRow>,
    kept_bytes: u64,
    /// What could not be removed, and why.
    failed: Vec<Failed>,
}

#[derive(Serialize)]
struct Failed {
    dir: PathBuf,
    error: String,
}

fn prune(args: &PruneArgs) -> Result<ExitCode> {
    let dir = &args.cache.cache_dir;
    let limit = args.max_size.bytes();
    let pruned = cache::prune(dir, limit, args.dry_run)
        .with_context(|| format!("failed to prune the kernel cache in {}", dir.display()))?;
    let now = SystemTime::now();
    let removed_held = holds(&pruned.removed);
    if !pruned.removed.is_empty() {
        print!(
            "{}",
            kernel_table(&pruned.removed, &removed_held, now).render()
        );
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    println!(
        "{verb} {} ({}); {} kept ({}, limit {})",
        directories(pruned.removed.len()),
        size(pruned.removed_bytes()),
        pruned.kept.len(),
        size(pruned.kept_bytes()),
        args.max_size,
    );
    for (dir, error) in &pruned.failed {
        eprintln!("could not remove {}: {error}", dir.display());
    }
    if limit.is_some_and(|l| pruned.kept_bytes() > l) {
        println!(
            "still over the limit: the rest were used within the last {} h{}",
            cache::IN_USE.as_secs() / 3600,
            if pruned.failed.is_empty() {
                " or are held by a running process"
            } else {
                ", are held by a running process, or could not be removed"
            }
        );
    }
    write_json(
        args.json.as_deref(),
        &PruneReport {
            cache_dir: dir.clone(),
            max_size: limit,
            dry_run: args.dry_run,
            removed: rows(&pruned.removed, &removed_held),
            kept: rows(&pruned.kept, &holds(&pruned.kept)),
            kept_bytes: pruned.kept_bytes(),
            failed: pruned
                .failed
                .iter()
                .map(|(dir, error)| Failed {
                    dir: dir.clone(),
                    error: error.clone(),
                })
                .collect(),
        },
    )?;
    Ok(if pruned.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
