//! Content-addressed kernel cache: a built kernel is found again by the
//! inputs that made it, never by a path or a date.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{IoContext, Result};

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
}

impl CacheKey {
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for part in [&self.base, &self.series, &self.config, &self.profile] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(&h.finalize()[..10])
    }
}

/// Digest of a file's bytes.
pub fn file_digest(path: &Path) -> Result<String> {
    let bytes = fs::read(path).at(path)?;
    Ok(hex::encode(&Sha256::digest(&bytes)[..8]))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey {
            base: "linux-source-7.3_7.3.4-1~bpo13+1".into(),
            series: "aaaa".into(),
            config: "bbbb".into(),
            profile: "tiny".into(),
        }
    }

    #[test]
    fn digest_is_stable_for_equal_inputs() {
        assert_eq!(key().digest(), key().digest());
    }

    #[test]
    fn digest_changes_with_each_input() {
        let base = key().digest();
        let mut k = key();
        k.base.push('x');
        assert_ne!(k.digest(), base, "base");
        let mut k = key();
        k.series = "aaab".into();
        assert_ne!(k.digest(), base, "series");
        let mut k = key();
        k.config = "bbbc".into();
        assert_ne!(k.digest(), base, "config");
        let mut k = key();
        k.profile = "w1".into();
        assert_ne!(k.digest(), base, "profile");
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
}
