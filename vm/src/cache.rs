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
}
