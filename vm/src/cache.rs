//! Content-addressed kernel cache: a built kernel is found again by the
//! inputs that made it, never by a path or a date.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

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
/// store is never mistaken for a hit. The store is the kernel's first use.
pub fn store(image: &KernelImage, dir: &Path) -> Result<()> {
    let path = dir.join(MANIFEST);
    let text = serde_json::to_string_pretty(image).expect("KernelImage serializes");
    fs::write(&path, text).at(&path)?;
    mark_used(dir)
}

/// The file in a kernel's directory whose modification time is the
/// kernel's last use: the build that stored it or the last one that found
/// it ([`mark_used`]). [`prune`] removes the least recently used first.
const USED: &str = "used";

/// Record that the kernel in `dir` is being used now.
pub fn mark_used(dir: &Path) -> Result<()> {
    let path = dir.join(USED);
    let file = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .at(&path)?;
    file.set_modified(SystemTime::now()).at(&path)
}

/// A directory under `<cache>/kernels`.
#[derive(Debug, Clone)]
pub struct CachedKernel {
    pub dir: PathBuf,
    /// Its manifest, if it holds a kernel; `None` for what a build that
    /// failed, was killed or is still running left (its `build.log`).
    pub image: Option<KernelImage>,
    /// The bytes of its files.
    pub bytes: u64,
    /// Its last use ([`USED`]); for a kernel stored before uses were
    /// recorded, or a directory with no kernel, its newest file.
    pub used: SystemTime,
}

/// Every directory under `<cache>/kernels`, least recently used first.
pub fn entries(cache: &Path) -> Result<Vec<CachedKernel>> {
    let kernels = cache.join("kernels");
    let mut out = Vec::new();
    let listing = match fs::read_dir(&kernels) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).at(&kernels),
    };
    for item in listing {
        let item = item.at(&kernels)?;
        let dir = item.path();
        let name = item.file_name();
        // `.`: a directory prune() is removing
        if !item.file_type().at(&dir)?.is_dir() || name.to_string_lossy().starts_with('.') {
            continue;
        }
        let image = fs::read_to_string(dir.join(MANIFEST))
            .ok()
            .and_then(|t| serde_json::from_str::<KernelImage>(&t).ok())
            .filter(|i| name.to_str() == Some(i.key.digest().as_str()));
        let (bytes, newest) = dir_usage(&dir)?;
        let used = fs::metadata(dir.join(USED))
            .and_then(|m| m.modified())
            .ok()
            .filter(|_| image.is_some())
            .unwrap_or(newest);
        out.push(CachedKernel {
            dir,
            image,
            bytes,
            used,
        });
    }
    out.sort_by_key(|k| k.used);
    Ok(out)
}

/// The bytes of the files under `path` (or of the file `path`), each
/// file counted once however many links it has, not following symbolic
/// links.
pub fn disk_usage(path: &Path) -> Result<u64> {
    let meta = fs::symlink_metadata(path).at(path)?;
    if meta.is_dir() {
        Ok(dir_usage(path)?.0)
    } else {
        Ok(meta.len())
    }
}

/// The bytes of the files under `dir` (a file with several links counted
/// once) and the newest modification time among them (the directory's
/// own if it has none); symbolic links are not followed.
fn dir_usage(dir: &Path) -> Result<(u64, SystemTime)> {
    let mut seen = HashSet::new();
    let mut usage = (0, fs::symlink_metadata(dir).at(dir)?.modified().at(dir)?);
    add_usage(dir, &mut usage, &mut seen)?;
    Ok(usage)
}

fn add_usage(
    dir: &Path,
    usage: &mut (u64, SystemTime),
    seen: &mut HashSet<(u64, u64)>,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;

    for item in fs::read_dir(dir).at(dir)? {
        let path = item.at(dir)?.path();
        let meta = fs::symlink_metadata(&path).at(&path)?;
        usage.1 = usage.1.max(meta.modified().at(&path)?);
        if meta.is_dir() {
            add_usage(&path, usage, seen)?;
        } else if meta.nlink() < 2 || seen.insert((meta.dev(), meta.ino())) {
            usage.0 += meta.len();
        }
    }
    Ok(())
}

/// How large `<cache>/kernels` may grow (`--kernel-cache-max`): a size
/// (`16GiB`, `500MB`, bytes) or `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheLimit {
    Bytes(ByteSize),
    Unlimited,
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

/// A kernel used this recently is never removed, whatever the limit: a
/// run may have found it and not yet booted it.
pub const IN_USE: Duration = Duration::from_secs(2 * 3600);

/// Which of `entries` (least recently used first, as [`entries`] gives
/// them) to remove so that the rest fit in `limit`: every directory that
/// holds no kernel and has not been written for [`IN_USE`] (a failed
/// build's), then kernels, least recently used first, until the rest fit;
/// none used within [`IN_USE`] of `now`, so the limit can be exceeded
/// while they are. Indices into `entries`, ascending.
pub fn plan_prune(entries: &[CachedKernel], limit: u64, now: SystemTime) -> Vec<usize> {
    let idle = |k: &CachedKernel| now.duration_since(k.used).is_ok_and(|d| d >= IN_USE);
    let mut remove: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].image.is_none() && idle(&entries[i]))
        .collect();
    let mut total: u64 = entries.iter().map(|k| k.bytes).sum();
    total -= remove.iter().map(|&i| entries[i].bytes).sum::<u64>();
    for (i, k) in entries.iter().enumerate() {
        if total <= limit || !idle(k) {
            break;
        }
        if k.image.is_some() {
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
}

impl Pruned {
    pub fn removed_bytes(&self) -> u64 {
        self.removed.iter().map(|k| k.bytes).sum()
    }

    pub fn kept_bytes(&self) -> u64 {
        self.kept.iter().map(|k| k.bytes).sum()
    }
}

/// Remove what [`plan_prune`] chooses for `limit`, and what an earlier
/// prune that was stopped left. A directory is first renamed to a hidden
/// name, so that no lookup finds half a kernel.
pub fn prune(cache: &Path, limit: u64, dry_run: bool) -> Result<Pruned> {
    let kernels = cache.join("kernels");
    let all = entries(cache)?;
    let chosen = plan_prune(&all, limit, SystemTime::now());
    let (mut removed, mut kept) = (Vec::new(), Vec::new());
    for (i, k) in all.into_iter().enumerate() {
        if chosen.binary_search(&i).is_ok() {
            removed.push(k);
        } else {
            kept.push(k);
        }
    }
    if dry_run {
        return Ok(Pruned { removed, kept });
    }
    for k in &removed {
        let name = k.dir.file_name().unwrap_or_default().to_string_lossy();
        let doomed = kernels.join(format!(".prune-{name}-{}", std::process::id()));
        fs::rename(&k.dir, &doomed).at(&k.dir)?;
        fs::remove_dir_all(&doomed).at(&doomed)?;
    }
    if let Ok(listing) = fs::read_dir(&kernels) {
        for item in listing.flatten() {
            if item.file_name().to_string_lossy().starts_with(".prune-") {
                let path = item.path();
                fs::remove_dir_all(&path).at(&path)?;
            }
        }
    }
    Ok(Pruned { removed, kept })
}

/// Fail, naming the free space and the need, unless the file system that
/// holds `dir` (or its nearest existing parent) has `need` bytes free for
/// an unprivileged user.
pub fn check_free(dir: &Path, need: ByteSize) -> Result<()> {
    let existing = dir.ancestors().find(|d| d.exists()).unwrap_or(dir);
    let stat = nix::sys::statvfs::statvfs(existing).map_err(|e| Error::Io {
        path: existing.to_path_buf(),
        source: e.into(),
    })?;
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
        let image = KernelImage {
            bzimage: dir.join("bzImage"),
            vmlinux: dir.join("vmlinux"),
            release: "7.3.4".into(),
            upstream: "7.3.4".into(),
            origin: "test".into(),
            key: k.clone(),
            tree: cache.path().to_path_buf(),
        };
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
        complete: bool,
        bytes: u64,
        idle_hours: u64,
        now: SystemTime,
    ) -> CachedKernel {
        let mut k = key();
        k.series = name.into();
        CachedKernel {
            dir: PathBuf::from(name),
            image: complete.then(|| KernelImage {
                bzimage: "b".into(),
                vmlinux: "v".into(),
                release: "7.3.4".into(),
                upstream: "7.3.4".into(),
                origin: "test".into(),
                key: k,
                tree: "t".into(),
            }),
            bytes,
            used: now - Duration::from_secs(idle_hours * 3600),
        }
    }

    /// Least recently used first, until the rest fit; what failed builds
    /// left goes whatever the size; nothing used within IN_USE goes.
    #[test]
    fn prune_removes_the_least_recently_used_until_the_rest_fit() {
        let now = SystemTime::now();
        // as entries() gives them: least recently used first
        let all = [
            entry("a", true, 100, 50, now),
            entry("failed", false, 1, 40, now),
            entry("b", true, 100, 30, now),
            entry("c", true, 100, 3, now),
            entry("running", false, 1, 0, now),
            entry("d", true, 100, 1, now),
        ];
        // 402 bytes: a failed build's directory goes even under the limit
        assert_eq!(plan_prune(&all, 1000, now), vec![1]);
        // 301 left after a and the failed one
        assert_eq!(plan_prune(&all, 301, now), vec![0, 1]);
        assert_eq!(plan_prune(&all, 300, now), vec![0, 1, 2]);
        // d (used an hour ago) stays even at 0; the running build's too
        assert_eq!(plan_prune(&all, 0, now), vec![0, 1, 2, 3]);
        assert!(plan_prune(&[], 0, now).is_empty());
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

    /// A real cache: a lookup marks the kernel used, prune removes the
    /// idle kernel and a failed build's directory, and a lookup of the
    /// removed key misses.
    #[test]
    fn prune_on_disk_keeps_the_kernel_just_used() {
        let cache = tempfile::tempdir().unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(10 * 3600);
        let mut stored = Vec::new();
        for series in ["old", "new"] {
            let mut k = key();
            k.series = series.into();
            let dir = kernel_dir(cache.path(), &k);
            fs::create_dir_all(&dir).unwrap();
            let image = KernelImage {
                bzimage: dir.join("bzImage"),
                vmlinux: dir.join("vmlinux"),
                release: "7.3.4".into(),
                upstream: "7.3.4".into(),
                origin: "test".into(),
                key: k.clone(),
                tree: cache.path().to_path_buf(),
            };
            fs::write(&image.bzimage, vec![0u8; 1000]).unwrap();
            fs::write(&image.vmlinux, vec![0u8; 3000]).unwrap();
            store(&image, &dir).unwrap();
            let used = fs::File::options()
                .write(true)
                .open(dir.join(USED))
                .unwrap();
            used.set_modified(long_ago).unwrap();
            stored.push(k);
        }
        let failed = cache.path().join("kernels/0123456789abcdef0123");
        fs::create_dir_all(&failed).unwrap();
        let log = fs::File::create(failed.join("build.log")).unwrap();
        log.set_modified(long_ago).unwrap();
        fs::File::open(&failed)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        // "new" is found again: used now
        mark_used(&kernel_dir(cache.path(), &stored[1])).unwrap();

        let listed = entries(cache.path()).unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(
            listed[2].dir,
            kernel_dir(cache.path(), &stored[1]),
            "most recent last"
        );
        assert!(listed.iter().all(|k| k.bytes >= 4000 || k.image.is_none()));

        let dry = prune(cache.path(), 0, true).unwrap();
        assert_eq!(dry.removed.len(), 2);
        assert_eq!(
            entries(cache.path()).unwrap().len(),
            3,
            "a dry run removes nothing"
        );

        let done = prune(cache.path(), 0, false).unwrap();
        assert_eq!(done.removed.len(), 2);
        assert_eq!(done.kept.len(), 1);
        assert!(lookup(cache.path(), &stored[0]).is_none());
        assert!(lookup(cache.path(), &stored[1]).is_some());
        assert!(!failed.exists());
        let left: Vec<_> = fs::read_dir(cache.path().join("kernels"))
            .unwrap()
            .collect();
        assert_eq!(left.len(), 1, "no hidden directory left behind");
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
