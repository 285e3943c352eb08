//! Content-addressed kernel cache: a built kernel is found again by the
//! inputs that made it, never by a path or a date.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};

/// The inputs that decide a kernel's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    /// The base's identity (package and exact version, or a content hash).
    pub base: String,
    /// Digest of every patch named in `series`, in order.
    pub series: String,
    /// Digest of the config fragment.
    pub config: String,
    /// The build profile's name.
    pub profile: String,
    /// The architecture's name ([`crate::kbuild::Arch::name`]). Manifests
    /// written before there was a choice are x86-64 ones.
    #[serde(default = "x86_64")]
    pub arch: String,
}

fn x86_64() -> String {
    crate::kbuild::Arch::X86_64.name().to_string()
}

impl CacheKey {
    /// The key's digest. An x86-64 key digests as it did before the
    /// architecture was part of the key, so existing kernels stay cached;
    /// any other architecture adds its name.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        let mut parts = vec![&self.base, &self.series, &self.config, &self.profile];
        if self.arch != x86_64() {
            parts.push(&self.arch);
        }
        for part in parts {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(&h.finalize()[..10])
    }
}

/// Digest of a file's bytes (read in pieces: tarballs are large).
pub fn file_digest(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).at(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).at(path)?;
    Ok(hex::encode(&hasher.finalize()[..8]))
}

/// A built kernel in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelImage {
    pub bzimage: PathBuf,
    pub vmlinux: PathBuf,
    /// `uname -r` of the kernel.
    pub release: String,
    /// Upstream version of the base, e.g. `7.3.4`.
    pub upstream: String,
    /// How the base was obtained (package and version).
    pub origin: String,
    pub key: CacheKey,
    /// The tree it was built in (for incremental rebuilds and selftests).
    pub tree: PathBuf,
}

const MANIFEST: &str = "kernel.json";

pub fn kernel_dir(cache: &Path, key: &CacheKey) -> PathBuf {
    cache.join("kernels").join(key.digest())
}

/// The cached kernel for `key`, if it is complete.
pub fn lookup(cache: &Path, key: &CacheKey) -> Option<KernelImage> {
    let text = fs::read_to_string(kernel_dir(cache, key).join(MANIFEST)).ok()?;
    let image: KernelImage = serde_json::from_str(&text).ok()?;
    (image.key == *key && image.bzimage.is_file() && image.vmlinux.is_file()).then_some(image)
}

/// Record a finished kernel; the manifest is written last so a partial
/// store is never mistaken for a hit.
pub fn store(image: &KernelImage, dir: &Path) -> Result<()> {
    let path = dir.join(MANIFEST);
    let text = serde_json::to_string_pretty(image).expect("KernelImage serializes");
    fs::write(&path, text).at(&path)
}

/// The file in a kernel's directory whose modification time is the
/// kernel's last use: the build that stored it, the last one that found it
/// and the last boot of it ([`mark_used`]). [`prune`] removes the least
/// recently used first.
const USED: &str = "used";

/// What [`mark_used`] did: the use recorded ([`USED`]'s time) and the
/// kernel held ([`hold`]), each of which can fail alone.
#[derive(Debug)]
pub struct Use {
    pub recorded: Result<()>,
    pub held: Result<()>,
}

/// Record that the kernel in `dir` is being used now, and hold it for the
/// rest of this process ([`hold`]). The time is set to the kernel's "now"
/// (`UTIME_NOW`), which needs write access to the file, not its
/// ownership: a cache shared by several users works if they can all
/// write its files (a group-writable cache); the hold needs read access
/// only.
pub fn mark_used(dir: &Path) -> Use {
    Use {
        recorded: touch_used(dir),
        held: hold(dir),
    }
}

/// Set the kernel's last use ([`USED`]) to now.
fn touch_used(dir: &Path) -> Result<()> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;

    let path = dir.join(USED);
    fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .at(&path)?;
    utimensat(
        None,
        &path,
        &TimeSpec::UTIME_NOW,
        &TimeSpec::UTIME_NOW,
        UtimensatFlags::FollowSymlink,
    )
    .map_err(std::io::Error::from)
    .at(&path)
}

/// A file's identity: its device and inode.
fn identity(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;

    (meta.dev(), meta.ino())
}

/// The kernel directories this process holds, each open with a shared
/// `flock()` on it, and its identity.
static HELD: Mutex<Vec<((u64, u64), fs::File)>> = Mutex::new(Vec::new());

/// How long [`hold`] waits for a prune that has the kernel's directory
/// locked for its removal (a removal takes well under a second).
const HOLD_WAIT: Duration = Duration::from_secs(30);

/// How long [`claim`] and [`is_held`] wait out another prune or probe
/// that has a directory locked exclusively.
const EXCLUSIVE_WAIT: Duration = Duration::from_secs(10);

const LOCK_POLL: Duration = Duration::from_millis(20);

/// Hold the kernel in `dir` until this process exits: a shared `flock()`
/// on the directory, which [`prune`] must take exclusively to remove the
/// kernel. So a process that found a kernel keeps it however long it runs
/// before it boots it; once the last process holding it has exited, the
/// kernel can be removed by the rules of [`plan_prune`]. The lock belongs
/// to the open directory and goes with it. Locks are seen by processes on
/// the same machine only: on a cache several machines share (NFS), a
/// prune on one does not see the holds of another, and only the time of
/// the last use protects a kernel across machines.
///
/// Waits (up to [`HOLD_WAIT`]) while a prune removes the kernel, and then
/// fails with NotFound ([`Error::is_not_found`]) unless the directory was
/// made again; a caller that needs the kernel looks for it again.
pub fn hold(dir: &Path) -> Result<()> {
    for _ in 0..3 {
        let now = identity(&fs::metadata(dir).at(dir)?);
        if HELD
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(id, _)| *id == now)
        {
            return Ok(());
        }
        // not under HELD's mutex: this may wait for a prune
        let open = fs::File::open(dir).at(dir)?;
        let deadline = Instant::now() + HOLD_WAIT;
        loop {
            match open.try_lock_shared() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(LOCK_POLL)
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "another process has had the directory locked for removal for {} s (a prune stopped half-way?)",
                            HOLD_WAIT.as_secs()
                        ),
                    ))
                    .at(dir)
                }
                Err(fs::TryLockError::Error(e)) => return Err(e).at(dir),
            }
        }
        // removed (or removed and made again) while this waited
        if let Some(locked) = still_at(&open, dir)? {
            HELD.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((locked, open));
            return Ok(());
        }
    }
    Err(std::io::Error::from(std::io::ErrorKind::NotFound)).at(dir)
}

/// Who has the lock of an open kernel directory.
enum Lockers {
    /// Nobody: it is now locked exclusively through this open.
    Nobody,
    /// Processes holding the kernel ([`hold`]): shared locks.
    Holders,
    /// Locks cannot be taken here.
    Unsupported,
}

/// Take `open`'s lock exclusively without waiting for holders. Another
/// prune or probe ([`is_held`]) has it exclusively only for a moment, and
/// is told apart from holders by a shared lock it would refuse; that is
/// waited out (up to [`EXCLUSIVE_WAIT`], then counted as holders).
fn lock_exclusive(open: &fs::File) -> Lockers {
    let deadline = Instant::now() + EXCLUSIVE_WAIT;
    loop {
        match open.try_lock() {
            Ok(()) => return Lockers::Nobody,
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(_)) => return Lockers::Unsupported,
        }
        match open.try_lock_shared() {
            Ok(()) => {
                // closing the file would release it too
                let _ = open.unlock();
                return Lockers::Holders;
            }
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(LOCK_POLL)
            }
            Err(fs::TryLockError::WouldBlock) => return Lockers::Holders,
            Err(fs::TryLockError::Error(_)) => return Lockers::Unsupported,
        }
    }
}

/// What [`claim`] found of a directory chosen for removal.
enum Claim {
    /// Removed by another prune since it was chosen (and maybe made
    /// again: then it is not the directory that was chosen).
    Gone,
    /// A process holds it ([`hold`]).
    Held,
    /// No process holds it: the directory with the exclusive lock, kept
    /// while it is removed; `None` where locks cannot be taken, where
    /// only the time of the last use counts.
    Free(Option<fs::File>),
}

/// Take the kernel directory `dir` exclusively, without waiting for
/// holders: so that it is removed only when no process holds it. Creates
/// no file.
fn claim(dir: &Path) -> Result<Claim> {
    let Some(open) = present(fs::File::open(dir)).at(dir)? else {
        return Ok(Claim::Gone);
    };
    match lock_exclusive(&open) {
        Lockers::Nobody => {}
        Lockers::Holders => return Ok(Claim::Held),
        Lockers::Unsupported => return Ok(Claim::Free(None)),
    }
    // removed by another prune between the open and the lock, and maybe
    // made again: what is there now is not what was chosen
    Ok(if still_at(&open, dir)?.is_some() {
        Claim::Free(Some(open))
    } else {
        Claim::Gone
    })
}

/// The identity of the directory `open` (just locked) if it is still the
/// one at `dir`; `None` if a prune removed it while the lock was awaited,
/// or it was made again.
fn still_at(open: &fs::File, dir: &Path) -> Result<Option<(u64, u64)>> {
    let locked = identity(&open.metadata().at(dir)?);
    Ok(present(fs::metadata(dir))
        .at(dir)?
        .filter(|m| identity(m) == locked)
        .map(|_| locked))
}

/// Whether a running process holds the kernel in `dir` ([`hold`]): its
/// lock, tried exclusively and released at once (a prune removing it is
/// waited out). False where locks cannot be taken, or if `dir` is gone.
pub fn is_held(dir: &Path) -> bool {
    fs::File::open(dir).is_ok_and(|open| matches!(lock_exclusive(&open), Lockers::Holders))
}

/// Warn of a use that could not be recorded or a kernel that could not be
/// held (a cache this process cannot write); the kernel is used all the
/// same.
pub(crate) fn warn_unrecorded(used: Use, reporter: &mut dyn crate::events::Reporter) {
    if let Err(e) = used.recorded {
        reporter.event(crate::events::Event::Warning(format!(
            "could not record the use of the cached kernel (a prune may take it six hours after the last recorded use, once no process holds it): {e}"
        )));
    }
    if let Err(e) = used.held {
        reporter.event(crate::events::Event::Warning(format!(
            "could not hold the cached kernel (a prune in another process may take it six hours after its last recorded use, while this process runs): {e}"
        )));
    }
}

/// Record a use of the kernel whose image is `image`, and hold it, if it
/// lies in a cache's kernel directory (a kernel given by path elsewhere
/// has none).
pub fn mark_image_used(image: &Path) -> Use {
    match image.parent() {
        Some(dir) if dir.join(MANIFEST).is_file() => mark_used(dir),
        _ => Use {
            recorded: Ok(()),
            held: Ok(()),
        },
    }
}

/// What a directory under `<cache>/kernels` holds.
#[derive(Debug, Clone)]
pub enum Content {
    /// A kernel, with its manifest.
    Kernel(Box<KernelImage>),
    /// A manifest this program cannot read or that is not of its
    /// directory's key (another version of fibneigh sharing the cache?):
    /// kept and pruned as a kernel.
    Unreadable,
    /// No manifest: what a build that failed, was stopped or is still
    /// running left (its `build.log`).
    NoKernel,
}

/// A directory under `<cache>/kernels`.
#[derive(Debug, Clone)]
pub struct CachedKernel {
    pub dir: PathBuf,
    pub content: Content,
    /// The apparent size of its files.
    pub bytes: u64,
    /// Its last use ([`USED`]); for a kernel stored before uses were
    /// recorded, or a directory with no kernel, its newest file.
    pub used: SystemTime,
}

impl CachedKernel {
    pub fn image(&self) -> Option<&KernelImage> {
        match &self.content {
            Content::Kernel(image) => Some(image),
            _ => None,
        }
    }

    fn holds_kernel(&self) -> bool {
        !matches!(self.content, Content::NoKernel)
    }
}

/// `None` for a file that went away while it was being read (another
/// process pruning, or make and ccache at work); other errors stay.
fn present<T>(r: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Has the entry last used at `used` been idle for `d` at `now`?
fn idle(used: SystemTime, now: SystemTime, d: Duration) -> bool {
    now.duration_since(used).is_ok_and(|i| i >= d)
}

/// Every directory under `<cache>/kernels`, least recently used first. A
/// directory that goes away while it is read (another process pruning) is
/// left out.
pub fn entries(cache: &Path) -> Result<Vec<CachedKernel>> {
    let kernels = cache.join("kernels");
    let mut out = Vec::new();
    let Some(listing) = present(fs::read_dir(&kernels)).at(&kernels)? else {
        return Ok(out);
    };
    for item in listing {
        let item = item.at(&kernels)?;
        let dir = item.path();
        let name = item.file_name();
        // `.`: a directory prune() is removing
        if !item.file_type().at(&dir)?.is_dir() || name.to_string_lossy().starts_with('.') {
            continue;
        }
        let Some((bytes, newest)) = dir_usage(&dir)? else {
            continue;
        };
        let content = match fs::read_to_string(dir.join(MANIFEST)) {
            Ok(text) => match serde_json::from_str::<KernelImage>(&text) {
                Ok(i) if name.to_str() == Some(i.key.digest().as_str()) => {
                    Content::Kernel(Box::new(i))
                }
                _ => Content::Unreadable,
            },
            Err(_) => Content::NoKernel,
        };
        let used = match content {
            Content::NoKernel => None,
            _ => fs::metadata(dir.join(USED)).and_then(|m| m.modified()).ok(),
        };
        out.push(CachedKernel {
            dir,
            content,
            bytes,
            used: used.unwrap_or(newest),
        });
    }
    out.sort_by_key(|k| k.used);
    Ok(out)
}

/// The apparent size of the files under `path` (or of the file `path`),
/// each file counted once however many links it has within `path`, not
/// following symbolic links; files that go away while it is read are
/// left out. 0 if `path` itself is gone.
pub fn apparent_size(path: &Path) -> Result<u64> {
    let Some(meta) = present(fs::symlink_metadata(path)).at(path)? else {
        return Ok(0);
    };
    if meta.is_dir() {
        Ok(dir_usage(path)?.map_or(0, |u| u.0))
    } else {
        Ok(meta.len())
    }
}

/// The apparent size of the files under `dir` (a file with several links
/// counted once) and the newest modification time among them and the
/// directories (`dir`'s own if it is empty); symbolic links are not
/// followed. `None` if `dir` itself is gone.
fn dir_usage(dir: &Path) -> Result<Option<(u64, SystemTime)>> {
    let Some(modified) = present(fs::symlink_metadata(dir).and_then(|m| m.modified())).at(dir)?
    else {
        return Ok(None);
    };
    let mut usage = (0, modified);
    add_usage(dir, &mut usage, &mut HashSet::new())?;
    Ok(Some(usage))
}

fn add_usage(
    dir: &Path,
    usage: &mut (u64, SystemTime),
    seen: &mut HashSet<(u64, u64)>,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;

    let Some(listing) = present(fs::read_dir(dir)).at(dir)? else {
        return Ok(());
    };
    for item in listing {
        let Some(item) = present(item).at(dir)? else {
            continue;
        };
        let path = item.path();
        let Some(meta) = present(fs::symlink_metadata(&path)).at(&path)? else {
            continue;
        };
        usage.1 = usage.1.max(meta.modified().at(&path)?);
        if meta.is_dir() {
            add_usage(&path, usage, seen)?;
        } else if meta.nlink() < 2 || seen.insert((meta.dev(), meta.ino())) {
            usage.0 += meta.len();
        }
    }
    Ok(())
}

/// The apparent size of every entry of the cache directory but
/// `kernels`, by name, largest first; none if there is no cache.
pub fn other_parts(cache: &Path) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let Some(listing) = present(fs::read_dir(cache)).at(cache)? else {
        return Ok(out);
    };
    for item in listing {
        let item = item.at(cache)?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name != "kernels" {
            out.push((name, apparent_size(&item.path())?));
        }
    }
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}

/// How large `<cache>/kernels` may grow (`--kernel-cache-max`): a size
/// (`16GiB`, `500MB`, bytes) or `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheLimit {
    Bytes(ByteSize),
    Unlimited,
}

impl CacheLimit {
    /// The limit in bytes; `None` for no limit.
    pub fn bytes(self) -> Option<u64> {
        match self {
            Self::Bytes(b) => Some(b.as_u64()),
            Self::Unlimited => None,
        }
    }
}

impl std::str::FromStr for CacheLimit {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.eq_ignore_ascii_case("unlimited") {
            return Ok(Self::Unlimited);
        }
        s.parse::<ByteSize>().map(Self::Bytes).map_err(|e| {
            format!("{s:?} is neither a size (e.g. 16GiB, 500MB) nor `unlimited`: {e}")
        })
    }
}

impl std::fmt::Display for CacheLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(b) => write!(f, "{}", b.display().iec()),
            Self::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// A kernel used this recently (found, stored or booted) is never
/// removed, whatever the limit, even when no process holds it any more
/// ([`hold`]): the next run of the same command is likely to want it.
pub const IN_USE: Duration = Duration::from_secs(6 * 3600);

/// What a build that failed left (its `build.log`, which the error names)
/// is kept this long after its last write.
pub const FAILED_KEPT: Duration = Duration::from_secs(7 * 86_400);

/// Which of `entries` (least recently used first, as [`entries`] gives
/// them) to remove: every directory with no kernel idle for
/// [`FAILED_KEPT`], whatever the size; then, if `limit` is given, kernels,
/// least recently used first, until the rest fit, none used within
/// [`IN_USE`] of `now` (so the limit can be exceeded while they are).
/// `pinned` (indices) are kept whatever they are: [`prune`] pins what it
/// found held or could not remove, and the next kernel goes in its place.
/// Indices into `entries`, ascending.
pub fn plan_prune(
    entries: &[CachedKernel],
    limit: Option<u64>,
    now: SystemTime,
    pinned: &HashSet<usize>,
) -> Vec<usize> {
    let mut remove: Vec<usize> = (0..entries.len())
        .filter(|&i| {
            !pinned.contains(&i)
                && !entries[i].holds_kernel()
                && idle(entries[i].used, now, FAILED_KEPT)
        })
        .collect();
    let Some(limit) = limit else {
        return remove;
    };
    let mut total: u64 = entries.iter().map(|k| k.bytes).sum();
    total -= remove.iter().map(|&i| entries[i].bytes).sum::<u64>();
    for (i, k) in entries.iter().enumerate() {
        if total <= limit || !idle(k.used, now, IN_USE) {
            break;
        }
        if k.holds_kernel() && !pinned.contains(&i) {
            remove.push(i);
            total -= k.bytes;
        }
    }
    remove.sort_unstable();
    remove
}

/// What [`prune`] did (or, with `dry_run`, would do).
#[derive(Debug, Clone)]
pub struct Pruned {
    pub removed: Vec<CachedKernel>,
    pub kept: Vec<CachedKernel>,
    /// What could not be removed, and why: a directory kept (in `kept`),
    /// or the hidden name of one renamed and then not removed (in
    /// `removed`: no lookup finds it; a later prune tries again).
    pub failed: Vec<(PathBuf, String)>,
}

impl Pruned {
    pub fn removed_bytes(&self) -> u64 {
        self.removed.iter().map(|k| k.bytes).sum()
    }

    pub fn kept_bytes(&self) -> u64 {
        self.kept.iter().map(|k| k.bytes).sum()
    }
}

/// The name a directory gets while [`prune`] removes it.
const DOOMED: &str = ".prune-";

/// Remove what [`plan_prune`] chooses for `limit`, and what a prune that
/// was stopped left. Several processes may prune and use the cache at
/// once:
/// - a kernel a process holds ([`hold`]: every process that found, built
///   or booted it, until it exits) is kept, and so is one whose use, read
///   again just before it goes, is recent; then the plan is made again
///   without it, so that the next kernel goes in its place. The build that
///   finds a kernel holds it and then looks again ([`crate::build`]), so a
///   kernel is either kept or found missing and built again;
/// - a directory is renamed to a hidden name before it is removed, so that
///   no lookup finds half a kernel;
/// - a directory another process removed first is counted as removed;
/// - one that cannot be removed (another user's) is kept and named in
///   [`Pruned::failed`], and the prune goes on.
///
/// A dry run removes nothing and creates no file; it takes each chosen
/// kernel's lock for a moment to see whether a process holds it.
pub fn prune(cache: &Path, limit: Option<u64>, dry_run: bool) -> Result<Pruned> {
    let kernels = cache.join("kernels");
    let all = entries(cache)?;
    let now = SystemTime::now();
    let (mut pinned, mut done, mut failed) = (HashSet::new(), HashSet::new(), Vec::new());
    loop {
        let mut again = false;
        for i in plan_prune(&all, limit, now, &pinned) {
            if done.contains(&i) {
                continue;
            }
            match remove_one(&all[i], &kernels, now, dry_run) {
                Ok(Removal::Gone) => {
                    done.insert(i);
                }
                // no lookup finds it any more
                Ok(Removal::Hidden(doomed, e)) => {
                    done.insert(i);
                    failed.push((doomed, e.to_string()));
                }
                // a plan without it: only while the pins grow
                Ok(Removal::Kept) => again |= pinned.insert(i),
                Err(e) => {
                    failed.push((all[i].dir.clone(), e.to_string()));
                    again |= pinned.insert(i);
                }
            }
        }
        if !again {
            break;
        }
    }
    if !dry_run {
        failed.extend(remove_stopped_prunes(&kernels));
    }
    let (mut removed, mut kept) = (Vec::new(), Vec::new());
    for (i, k) in all.into_iter().enumerate() {
        if done.contains(&i) {
            removed.push(k);
        } else {
            kept.push(k);
        }
    }
    Ok(Pruned {
        removed,
        kept,
        failed,
    })
}

/// What [`remove_one`] did with a directory.
enum Removal {
    /// Removed (by this prune or another); a dry run: would be.
    Gone,
    /// Kept: a process holds it or used it since the plan.
    Kept,
    /// Renamed to its hidden name, so that no lookup finds it, but not
    /// removed: the hidden directory and why. A later prune tries again.
    Hidden(PathBuf, Error),
}

/// Remove the directory `k` (a dry run: see whether it could be).
fn remove_one(k: &CachedKernel, kernels: &Path, now: SystemTime, dry_run: bool) -> Result<Removal> {
    // a process that records a use after this holds the kernel too
    // (mark_used()): then either the claim fails, or the process waits
    // for the removal and finds the kernel gone. A failed build's
    // directory is reused by a build that records its use.
    let kept_for = if k.holds_kernel() {
        IN_USE
    } else {
        FAILED_KEPT
    };
    let used_since = fs::metadata(k.dir.join(USED))
        .and_then(|m| m.modified())
        .is_ok_and(|t| !idle(t, now, kept_for));
    if used_since {
        return Ok(Removal::Kept);
    }
    let _lock = match claim(&k.dir)? {
        Claim::Gone => return Ok(Removal::Gone),
        Claim::Held => return Ok(Removal::Kept),
        Claim::Free(lock) => lock,
    };
    if dry_run {
        return Ok(Removal::Gone);
    }
    let name = k.dir.file_name().unwrap_or_default().to_string_lossy();
    let doomed = kernels.join(format!("{DOOMED}{name}-{}", std::process::id()));
    if present(fs::rename(&k.dir, &doomed)).at(&k.dir)?.is_some() {
        if let Err(e) = present(fs::remove_dir_all(&doomed)).at(&doomed) {
            return Ok(Removal::Hidden(doomed, e));
        }
    }
    Ok(Removal::Gone)
}

/// Remove the hidden directories of prunes whose process is gone; what
/// could not be removed, and why.
fn remove_stopped_prunes(kernels: &Path) -> Vec<(PathBuf, String)> {
    let mut failed = Vec::new();
    let Ok(listing) = fs::read_dir(kernels) else {
        return failed;
    };
    for item in listing.flatten() {
        let name = item.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(DOOMED) else {
            continue;
        };
        let pid = rest.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| Path::new("/proc").join(p.to_string()).exists());
        if alive {
            continue;
        }
        let path = item.path();
        if let Err(e) = present(fs::remove_dir_all(&path)).at(&path) {
            failed.push((path, e.to_string()));
        }
    }
    failed
}

/// Fail, naming the free space and the need, unless the file system that
/// holds `dir` (or its nearest existing parent) has `need` bytes free for
/// an unprivileged user.
pub fn check_free(dir: &Path, need: ByteSize) -> Result<()> {
    let existing = dir.ancestors().find(|d| d.exists()).unwrap_or(dir);
    let stat = nix::sys::statvfs::statvfs(existing)
        .map_err(std::io::Error::from)
        .at(existing)?;
    let free = stat.blocks_available().saturating_mul(stat.fragment_size());
    free_enough(existing, free, need)
}

fn free_enough(dir: &Path, free: u64, need: ByteSize) -> Result<()> {
    if free >= need.as_u64() {
        return Ok(());
    }
    Err(Error::DiskSpace {
        dir: dir.to_path_buf(),
        free: ByteSize(free),
        need,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey {
            base: "linux-source-7.3_7.3.4-1~bpo13+1".into(),
            series: "aaaa".into(),
            config: "bbbb".into(),
            profile: "tiny".into(),
            arch: "x86_64".into(),
        }
    }

    #[test]
    fn digest_is_stable_for_equal_inputs() {
        assert_eq!(key().digest(), key().digest());
    }

    #[test]
    fn digest_changes_with_each_input() {
        let base = key().digest();
        type Change = (&'static str, fn(&mut CacheKey));
        let changes: [Change; 5] = [
            ("base", |k| k.base.push('x')),
            ("series", |k| k.series = "aaab".into()),
            ("config", |k| k.config = "bbbc".into()),
            ("profile", |k| k.profile = "w1".into()),
            ("arch", |k| k.arch = "um".into()),
        ];
        for (what, change) in changes {
            let mut k = key();
            change(&mut k);
            assert_ne!(k.digest(), base, "{what}");
        }
        // Field boundaries matter: moving a character between fields is a
        // different key.
        let a = CacheKey {
            base: "ab".into(),
            series: "c".into(),
            ..key()
        };
        let b = CacheKey {
            base: "a".into(),
            series: "bc".into(),
            ..key()
        };
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn x86_64_keys_keep_their_old_digest_and_manifests() {
        // The digest of this key before `arch` existed.
        let mut h = Sha256::new();
        for part in ["linux-source-7.3_7.3.4-1~bpo13+1", "aaaa", "bbbb", "tiny"] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        assert_eq!(key().digest(), hex::encode(&h.finalize()[..10]));
        let old = r#"{"base":"b","series":"s","config":"c","profile":"tiny"}"#;
        let k: CacheKey = serde_json::from_str(old).unwrap();
        assert_eq!(k.arch, "x86_64");
    }

    #[test]
    fn lookup_needs_manifest_and_files() {
        let cache = tempfile::tempdir().unwrap();
        let k = key();
        assert!(lookup(cache.path(), &k).is_none());
        let dir = kernel_dir(cache.path(), &k);
        fs::create_dir_all(&dir).unwrap();
        let image = image_in(&dir, k.clone());
        store(&image, &dir).unwrap();
        assert!(lookup(cache.path(), &k).is_none(), "files missing");
        fs::write(&image.bzimage, b"x").unwrap();
        fs::write(&image.vmlinux, b"x").unwrap();
        assert_eq!(lookup(cache.path(), &k), Some(image));
        let mut other = k;
        other.config = "cccc".into();
        assert!(lookup(cache.path(), &other).is_none());
    }

    fn entry(
        name: &str,
        content: Content,
        bytes: u64,
        idle: Duration,
        now: SystemTime,
    ) -> CachedKernel {
        CachedKernel {
            dir: PathBuf::from(name),
            content,
            bytes,
            used: now - idle,
        }
    }

    fn kernel(series: &str) -> Content {
        let mut k = key();
        k.series = series.into();
        Content::Kernel(Box::new(image_in(Path::new("k"), k)))
    }

    /// The manifest of a kernel `key` in `dir`.
    fn image_in(dir: &Path, key: CacheKey) -> KernelImage {
        KernelImage {
            bzimage: dir.join("bzImage"),
            vmlinux: dir.join("vmlinux"),
            release: "7.3.4".into(),
            upstream: "7.3.4".into(),
            origin: "test".into(),
            key,
            tree: dir.join("tree"),
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    /// Least recently used first, until the rest fit; what failed builds
    /// left goes after a week whatever the size; nothing used within
    /// IN_USE goes; an unreadable manifest is a kernel.
    #[test]
    fn prune_removes_the_least_recently_used_until_the_rest_fit() {
        let now = SystemTime::now();
        // as entries() gives them: least recently used first
        let all = [
            entry("failed-long-ago", Content::NoKernel, 1, 200 * HOUR, now),
            entry("a", kernel("a"), 100, 50 * HOUR, now),
            entry("failed", Content::NoKernel, 1, 40 * HOUR, now),
            entry("other-version", Content::Unreadable, 100, 30 * HOUR, now),
            entry("c", kernel("c"), 100, IN_USE, now),
            entry("running", Content::NoKernel, 1, Duration::ZERO, now),
            entry("d", kernel("d"), 100, HOUR, now),
        ];
        // 403 bytes in all
        assert_eq!(
            plan_prune(&all, None, now, &none()),
            vec![0],
            "no limit: a week-old failure only"
        );
        assert_eq!(plan_prune(&all, Some(1000), now, &none()), vec![0]);
        // 302 left after a
        assert_eq!(plan_prune(&all, Some(302), now, &none()), vec![0, 1]);
        assert_eq!(plan_prune(&all, Some(301), now, &none()), vec![0, 1, 3]);
        // idle for exactly IN_USE: may go
        assert_eq!(plan_prune(&all, Some(200), now, &none()), vec![0, 1, 3, 4]);
        // d (used an hour ago) stays even at 0, and so do the recent failures
        assert_eq!(plan_prune(&all, Some(0), now, &none()), vec![0, 1, 3, 4]);
        assert!(plan_prune(&[], Some(0), now, &none()).is_empty());
        // a pinned kernel is kept, and the next goes in its place
        let a = HashSet::from([1]);
        assert_eq!(plan_prune(&all, Some(302), now, &a), vec![0, 3]);
        assert_eq!(plan_prune(&all, Some(0), now, &a), vec![0, 3, 4]);
    }

    #[test]
    fn the_limit_is_a_size_or_unlimited_and_nothing_else() {
        assert_eq!(
            "16GiB".parse::<CacheLimit>(),
            Ok(CacheLimit::Bytes(ByteSize::gib(16)))
        );
        assert_eq!(
            "500 MB".parse::<CacheLimit>(),
            Ok(CacheLimit::Bytes(ByteSize::mb(500)))
        );
        assert_eq!("Unlimited".parse::<CacheLimit>(), Ok(CacheLimit::Unlimited));
        let e = "lots".parse::<CacheLimit>().expect_err("not a size");
        assert!(e.contains("\"lots\"") && e.contains("unlimited"), "{e}");
        // what clap prints as the default parses back
        let shown = CacheLimit::Bytes(ByteSize::gib(16)).to_string();
        assert_eq!(
            shown.parse::<CacheLimit>(),
            Ok(CacheLimit::Bytes(ByteSize::gib(16)))
        );
    }

    /// A cached kernel on disk, stored and last used `idle` ago.
    fn stored(cache: &Path, series: &str, idle: Duration) -> CacheKey {
        let mut k = key();
        k.series = series.into();
        let dir = kernel_dir(cache, &k);
        fs::create_dir_all(&dir).unwrap();
        let image = image_in(&dir, k.clone());
        fs::write(&image.bzimage, vec![0u8; 1000]).unwrap();
        fs::write(&image.vmlinux, vec![0u8; 3000]).unwrap();
        store(&image, &dir).unwrap();
        // recorded, not held: this test process holds nothing
        touch_used(&dir).unwrap();
        let then = SystemTime::now() - idle;
        for f in [USED, MANIFEST, "bzImage", "vmlinux"] {
            let f = fs::File::options().write(true).open(dir.join(f)).unwrap();
            f.set_modified(then).unwrap();
        }
        fs::File::open(&dir).unwrap().set_modified(then).unwrap();
        k
    }

    /// A cache with one kernel, idle for ten hours: the cache, its key and
    /// its directory.
    fn one_kernel() -> (tempfile::TempDir, CacheKey, PathBuf) {
        let cache = tempfile::tempdir().unwrap();
        let k = stored(cache.path(), "k", 10 * HOUR);
        let dir = kernel_dir(cache.path(), &k);
        (cache, k, dir)
    }

    /// A real cache: a use recorded keeps a kernel, prune removes the
    /// idle one and a week-old failed build's directory, a lookup of the
    /// removed key misses, and nothing hidden is left.
    #[test]
    fn prune_on_disk_keeps_the_kernel_just_used() {
        let cache = tempfile::tempdir().unwrap();
        let old = stored(cache.path(), "old", 10 * HOUR);
        let new = stored(cache.path(), "new", 10 * HOUR);
        let failed = cache.path().join("kernels/0123456789abcdef0123");
        fs::create_dir_all(&failed).unwrap();
        let log = fs::File::create(failed.join("build.log")).unwrap();
        let long_ago = SystemTime::now() - FAILED_KEPT - HOUR;
        log.set_modified(long_ago).unwrap();
        fs::File::open(&failed)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        // "new" was booted by a process that has exited since: its use
        // is recorded, and nothing holds it
        touch_used(&kernel_dir(cache.path(), &new)).unwrap();

        let listed = entries(cache.path()).unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(
            listed[2].dir,
            kernel_dir(cache.path(), &new),
            "most recent last"
        );
        assert!(listed.iter().all(|k| k.bytes >= 4000 || !k.holds_kernel()));

        let dry = prune(cache.path(), Some(0), true).unwrap();
        assert_eq!(dry.removed.len(), 2);
        assert_eq!(
            entries(cache.path()).unwrap().len(),
            3,
            "a dry run removes nothing"
        );

        let done = prune(cache.path(), Some(0), false).unwrap();
        assert_eq!(done.removed.len(), 2);
        assert_eq!(done.kept.len(), 1);
        assert!(lookup(cache.path(), &old).is_none());
        assert!(lookup(cache.path(), &new).is_some());
        assert!(!failed.exists());
        let left: Vec<_> = fs::read_dir(cache.path().join("kernels"))
            .unwrap()
            .collect();
        assert_eq!(left.len(), 1, "no hidden directory left behind");
    }

    /// Two prunes at once over the same kernels both succeed, each
    /// kernel goes, and nothing hidden is left.
    #[test]
    fn prunes_at_once_do_not_fail_each_other() {
        let cache = tempfile::tempdir().unwrap();
        let keys: Vec<CacheKey> = (0..40)
            .map(|i| stored(cache.path(), &format!("k{i}"), 10 * HOUR))
            .collect();
        let results: Vec<Result<Pruned>> = std::thread::scope(|s| {
            let a = s.spawn(|| prune(cache.path(), Some(0), false));
            let b = s.spawn(|| prune(cache.path(), Some(0), false));
            vec![a.join().unwrap(), b.join().unwrap()]
        });
        let mut removed = 0;
        for r in results {
            removed += r.expect("a prune failed").removed.len();
        }
        assert!(removed >= keys.len(), "{removed} of {}", keys.len());
        assert!(keys.iter().all(|k| lookup(cache.path(), k).is_none()));
        let left: Vec<_> = fs::read_dir(cache.path().join("kernels"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    /// A use recorded after the prune chose the kernel keeps it.
    #[test]
    fn a_kernel_used_after_it_was_chosen_is_kept() {
        let cache = tempfile::tempdir().unwrap();
        let k = stored(cache.path(), "k", 10 * HOUR);
        let listed = entries(cache.path()).unwrap();
        assert_eq!(
            plan_prune(&listed, Some(0), SystemTime::now(), &none()),
            vec![0]
        );
        // recorded by a process that has exited since: not held
        touch_used(&kernel_dir(cache.path(), &k)).unwrap();
        let done = prune(cache.path(), Some(0), false).unwrap();
        assert!(done.removed.is_empty() && done.kept.len() == 1);
        assert!(lookup(cache.path(), &k).is_some());
    }

    fn none() -> HashSet<usize> {
        HashSet::new()
    }

    /// Both parts of a use succeeded.
    fn ok(used: Use) {
        used.recorded.expect("use recorded");
        used.held.expect("kernel held");
    }

    /// Age the recorded use of the kernel in `dir` to `idle` ago.
    fn age(dir: &Path, idle: Duration) {
        fs::File::options()
            .write(true)
            .open(dir.join(USED))
            .unwrap()
            .set_modified(SystemTime::now() - idle)
            .unwrap();
    }

    /// A kernel another process holds (here: a shared lock taken as
    /// hold() takes it, on another open of the directory) is kept however
    /// long ago its last recorded use, by a dry run too, and goes once the
    /// lock is released.
    #[test]
    fn a_held_kernel_is_kept_until_released() {
        let cache = tempfile::tempdir().unwrap();
        let k = stored(cache.path(), "k", 10 * HOUR);
        let other = fs::File::open(kernel_dir(cache.path(), &k)).unwrap();
        other.lock_shared().unwrap();
        for dry_run in [true, false] {
            let done = prune(cache.path(), Some(0), dry_run).unwrap();
            assert!(done.removed.is_empty(), "dry run {dry_run}");
            assert_eq!(done.kept.len(), 1);
        }
        assert!(lookup(cache.path(), &k).is_some());
        drop(other);
        let done = prune(cache.path(), Some(0), false).unwrap();
        assert_eq!(done.removed.len(), 1);
        assert!(lookup(cache.path(), &k).is_none());
    }

    /// is_held() sees another open's shared lock, and leaves none.
    #[test]
    fn is_held_sees_a_hold_and_leaves_no_lock() {
        let (cache, _, dir) = one_kernel();
        assert!(!is_held(&dir));
        assert!(!is_held(&dir), "the probe left its lock");
        let other = fs::File::open(&dir).unwrap();
        other.lock_shared().unwrap();
        assert!(is_held(&dir));
        drop(other);
        assert!(!is_held(&dir));
        assert!(!is_held(&cache.path().join("gone")));
    }

    /// A held kernel does not stop the prune: the next idle one goes in
    /// its place, until the rest fit.
    #[test]
    fn the_next_idle_kernel_goes_in_place_of_a_held_one() {
        let cache = tempfile::tempdir().unwrap();
        let oldest = stored(cache.path(), "oldest", 30 * HOUR);
        let older = stored(cache.path(), "older", 20 * HOUR);
        let recent = stored(cache.path(), "recent", 10 * HOUR);
        let other = fs::File::open(kernel_dir(cache.path(), &oldest)).unwrap();
        other.lock_shared().unwrap();
        // room for two of the three
        let listed = entries(cache.path()).unwrap();
        let room = listed[0].bytes + listed[2].bytes;
        let done = prune(cache.path(), Some(room), false).unwrap();
        assert_eq!(done.removed.len(), 1);
        assert!(lookup(cache.path(), &oldest).is_some(), "held");
        assert!(lookup(cache.path(), &older).is_none(), "not replaced");
        assert!(lookup(cache.path(), &recent).is_some());
        assert!(done.failed.is_empty());
    }

    /// Another prune's exclusive lock is not a hold: a prune that meets it
    /// waits it out, counts the kernel the other removed as removed, and
    /// removes no other in its place; a probe meanwhile does not call it
    /// held.
    #[test]
    fn another_prunes_lock_is_not_a_hold() {
        let cache = tempfile::tempdir().unwrap();
        let oldest = stored(cache.path(), "oldest", 30 * HOUR);
        let older = stored(cache.path(), "older", 20 * HOUR);
        stored(cache.path(), "recent", 10 * HOUR);
        let listed = entries(cache.path()).unwrap();
        let room = listed[1].bytes + listed[2].bytes;
        let dir = kernel_dir(cache.path(), &oldest);
        let other = fs::File::open(&dir).unwrap();
        other.lock().unwrap();
        let removing = std::thread::spawn({
            let dir = dir.clone();
            move || {
                std::thread::sleep(Duration::from_millis(300));
                fs::remove_dir_all(&dir).unwrap();
                drop(other);
            }
        });
        let probe = std::thread::spawn({
            let dir = dir.clone();
            move || is_held(&dir)
        });
        let done = prune(cache.path(), Some(room), false).unwrap();
        removing.join().unwrap();
        assert!(!probe.join().unwrap(), "a prune's lock taken for a hold");
        assert_eq!(done.removed.len(), 1, "{:?}", done.removed);
        assert_eq!(done.removed[0].dir, dir);
        assert!(
            lookup(cache.path(), &older).is_some(),
            "removed in its place"
        );
    }

    /// mark_used() holds the kernel for the rest of the process, once: it
    /// is kept after its recorded use has aged past IN_USE.
    #[test]
    fn a_kernel_this_process_used_is_held() {
        let (cache, k, dir) = one_kernel();
        ok(mark_used(&dir));
        ok(mark_image_used(&dir.join("bzImage")));
        let id = identity(&fs::metadata(&dir).unwrap());
        let held = HELD
            .lock()
            .unwrap()
            .iter()
            .filter(|(i, _)| *i == id)
            .count();
        assert_eq!(held, 1, "held twice");
        age(&dir, 10 * HOUR);
        assert_eq!(
            plan_prune(
                &entries(cache.path()).unwrap(),
                Some(0),
                SystemTime::now(),
                &none()
            ),
            vec![0]
        );
        let done = prune(cache.path(), Some(0), false).unwrap();
        assert!(done.removed.is_empty() && done.kept.len() == 1);
        assert!(lookup(cache.path(), &k).is_some());
    }

    /// A kernel removed and built again in the same directory is held
    /// again, not taken for the one held before.
    #[test]
    fn a_kernel_built_again_is_held_again() {
        let (cache, _, dir) = one_kernel();
        ok(mark_used(&dir));
        fs::remove_dir_all(&dir).unwrap();
        stored(cache.path(), "k", 10 * HOUR);
        ok(mark_used(&dir));
        age(&dir, 10 * HOUR);
        let done = prune(cache.path(), Some(0), false).unwrap();
        assert!(done.removed.is_empty(), "the new kernel was not held");
    }

    /// A hold that waited for a prune's removal fails with NotFound; if
    /// the directory was made again meanwhile, it holds the new one.
    #[test]
    fn a_hold_that_waited_for_a_removal() {
        let cache = tempfile::tempdir().unwrap();
        for again in [false, true] {
            let k = stored(cache.path(), &format!("k{again}"), 10 * HOUR);
            let dir = kernel_dir(cache.path(), &k);
            // the prune's lock
            let prune = fs::File::open(&dir).unwrap();
            prune.lock().unwrap();
            let waiting = std::thread::spawn({
                let dir = dir.clone();
                move || hold(&dir)
            });
            std::thread::sleep(Duration::from_millis(200));
            fs::remove_dir_all(&dir).unwrap();
            if again {
                stored(cache.path(), &format!("k{again}"), 10 * HOUR);
            }
            drop(prune);
            let held = waiting.join().unwrap();
            if again {
                held.expect("the new directory held");
                let done = prune_all(cache.path());
                assert!(done.removed.is_empty(), "not held");
            } else {
                let e = held.expect_err("held a removed kernel");
                assert!(e.is_not_found(), "{e}");
            }
        }
    }

    fn prune_all(cache: &Path) -> Pruned {
        prune(cache, Some(0), false).unwrap()
    }

    /// A directory that cannot be removed is named, kept, and the prune
    /// goes on to the next.
    #[test]
    fn a_kernel_that_cannot_be_removed_does_not_stop_the_prune() {
        let cache = tempfile::tempdir().unwrap();
        let stuck = stored(cache.path(), "stuck", 20 * HOUR);
        let next = stored(cache.path(), "next", 10 * HOUR);
        let dir = kernel_dir(cache.path(), &stuck);
        // the hidden name it would be renamed to is taken: rename fails
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let blocker = cache
            .path()
            .join(format!("kernels/{DOOMED}{name}-{}", std::process::id()));
        fs::create_dir_all(blocker.join("x")).unwrap();
        // room for one of the two
        let room = entries(cache.path()).unwrap()[0].bytes;
        let done = prune(cache.path(), Some(room), false).unwrap();
        assert_eq!(done.failed.len(), 1, "{:?}", done.failed);
        assert_eq!(done.failed[0].0, dir);
        assert!(lookup(cache.path(), &stuck).is_some());
        assert!(lookup(cache.path(), &next).is_none(), "the next one went");
    }

    /// A dry run writes nothing: a kernel stored before uses were
    /// recorded (no `used` file) would go, and still has no such file.
    #[test]
    fn a_dry_run_creates_no_file() {
        let (cache, _, dir) = one_kernel();
        fs::remove_file(dir.join(USED)).unwrap();
        let then = SystemTime::now() - 10 * HOUR;
        fs::File::open(&dir).unwrap().set_modified(then).unwrap();
        let done = prune(cache.path(), Some(0), true).unwrap();
        assert_eq!(done.removed.len(), 1);
        assert!(!dir.join(USED).exists());
        let done = prune(cache.path(), Some(0), false).unwrap();
        assert_eq!(done.removed.len(), 1);
        assert!(!dir.exists());
    }

    #[test]
    fn too_little_free_space_is_named_with_the_need() {
        let d = tempfile::tempdir().unwrap();
        check_free(d.path(), ByteSize::b(1)).expect("a byte is free");
        let e = check_free(&d.path().join("not/yet"), ByteSize::eib(8))
            .expect_err("8 EiB is not free")
            .to_string();
        assert!(e.contains(&d.path().display().to_string()), "{e}");
        assert!(e.contains("8.0 EiB") && e.contains("--min-free"), "{e}");
        let e = free_enough(Path::new("/x"), 1 << 30, ByteSize::gib(4))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("only 1.0 GiB free on the file system of /x"),
            "{e}"
        );
    }
}
