//! The patched-kernel VM pipeline: fetch the base source, commit it, apply
//! the series, configure, build (cached by content), boot under virtme-ng
//! and run a command inside.
//!
//! Each step is its own module with one public entry returning a typed
//! artifact; [`build`] chains them. Nothing here prints: progress is a
//! stream of [`events::Event`]s.

pub mod accel;
pub mod apt;
pub mod base;
pub mod boot;
pub mod cache;
pub mod children;
mod cmd;
pub mod console;
pub mod error;
pub mod events;
pub mod guest;
pub mod kbuild;
pub mod kconfig;
pub mod series;
pub mod source;
pub mod timing;
pub mod tree;
pub mod uml;
pub mod vng;
mod watch;
pub mod xdp_tools;

use std::fs;
use std::path::PathBuf;

pub use accel::{detect_accel, Accel, AccelProbe, TcgThreads};
pub use boot::RunRequest;
pub use bytesize::ByteSize;
pub use cache::{CacheKey, CacheLimit, KernelImage};
pub use error::{Error, Result};
pub use events::{Event, NullReporter, Phase, Reporter};
pub use guest::Guest;
pub use kbuild::{Arch, Profile};
pub use series::Series;
pub use source::{SourceSpec, SourceTree};
pub use vng::VirtmeNg;

use error::IoContext;

/// Everything `fibneigh vm build` needs.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub cache_dir: PathBuf,
    pub source: SourceSpec,
    /// Directory holding `series` and the patches.
    pub patches: PathBuf,
    /// The config fragment merged onto tinyconfig.
    pub config: PathBuf,
    pub profile: Profile,
    pub jobs: usize,
    /// Re-resolve a Debian package against the mirror.
    pub refresh_source: bool,
    /// Use ccache (`<cache>/ccache`); off only to measure a clean build.
    pub ccache: bool,
    /// x86-64 (`bzImage`, virtme-ng) or User-Mode Linux (`linux`, run by
    /// [`uml::run`]; `config` is then a UML fragment, see
    /// [`Arch::fragment`]).
    pub arch: Arch,
    /// Refuse to build (or prepare a tree) with less free than this on the
    /// cache's file system: a clear error before make, rather than the
    /// compiler's "No space left on device" minutes in.
    pub min_free: ByteSize,
    /// After a kernel is stored, remove the least recently used others
    /// until `<cache>/kernels` fits ([`cache::prune`]).
    pub kernel_cache_limit: CacheLimit,
}

/// What [`BuildRequest::min_free`] is unless given: a tree unpacked and
/// built (x86-64, -O2 and the debug and selftests profiles) takes about
/// 3.5 GB.
pub const DEFAULT_MIN_FREE: ByteSize = ByteSize::gib(4);

/// What [`BuildRequest::kernel_cache_limit`] is unless given: about 80
/// kernels of 190 MB; one CI run uses about ten.
pub const DEFAULT_KERNEL_CACHE_LIMIT: CacheLimit = CacheLimit::Bytes(ByteSize::gib(16));

impl BuildRequest {
    /// The same request for the pristine base: the same source, config
    /// and profile, a series of no patches (written into the cache).
    pub fn pristine(mut self) -> Result<Self> {
        let empty = self.cache_dir.join("empty-series");
        fs::create_dir_all(&empty).at(&empty)?;
        let series = empty.join("series");
        fs::write(
            &series,
            "# no patches: the pristine base (--no-series, selftests --diff, icount --pristine)\n",
        )
        .at(&series)?;
        self.patches = empty;
        Ok(self)
    }

    /// The same request for the base's code on the series' uAPI headers:
    /// the same source, config and profile, each patch reduced to its
    /// changes of `include/uapi/` and `tools/include/uapi/`
    /// ([`series::uapi_part`], written into the cache under the series'
    /// digest). Where the series only adds to the uAPI header what the
    /// base's code does not use, every object's code is the base's, and
    /// ccache serves this kernel from the series' own build of the same
    /// config but for the files the series changes besides the header
    /// (`vm icount --pristine-code`).
    pub fn pristine_code(mut self) -> Result<Self> {
        let full = Series::parse(&self.patches)?;
        let dir = self.cache_dir.join("uapi-series").join(full.digest()?);
        fs::create_dir_all(&dir).at(&dir)?;
        let mut list = String::from(
            "# the series' uAPI header changes alone: the base's code on the series' \
             headers (vm icount --pristine-code)\n",
        );
        for patch in &full.patches {
            let text = fs::read_to_string(patch).at(patch)?;
            let (Some(part), Some(name)) = (series::uapi_part(&text), patch.file_name()) else {
                continue;
            };
            let out = dir.join(name);
            fs::write(&out, part).at(&out)?;
            list.push_str(&name.to_string_lossy());
            list.push('\n');
        }
        let file = dir.join("series");
        fs::write(&file, list).at(&file)?;
        self.patches = dir;
        Ok(self)
    }

    /// How this request's `make` uses ccache.
    pub fn ccache(&self) -> kbuild::Ccache {
        if self.ccache {
            kbuild::Ccache::In(self.cache_dir.join("ccache"))
        } else {
            kbuild::Ccache::Disabled(self.cache_dir.join("ccache"))
        }
    }
}

/// The default cache directory: `$FIBNEIGH_CACHE`, else
/// `$XDG_CACHE_HOME/fibneigh`, else `~/.cache/fibneigh`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FIBNEIGH_CACHE") {
        return dir.into();
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("fibneigh");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/fibneigh")
}

/// The fragment `req` configures with: its `config`, or for a profile with
/// an extra fragment, both concatenated into a file in the cache (named by
/// its digest, so the cache key and the tree's stamp follow its content).
pub fn effective_fragment(req: &BuildRequest) -> Result<PathBuf> {
    let Some(extra) = req.profile.extra_fragment() else {
        return Ok(req.config.clone());
    };
    let extra = req.config.with_file_name(extra);
    if !extra.exists() && req.config.exists() {
        return Err(Error::NoProfileFragment {
            profile: req.profile.name(),
            fragment: req.config.clone(),
            extra,
        });
    }
    let mut text = fs::read_to_string(&req.config).at(&req.config)?;
    text.push('\n');
    text.push_str(&fs::read_to_string(&extra).at(&extra)?);
    let dir = req.cache_dir.join("fragments");
    fs::create_dir_all(&dir).at(&dir)?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    fs::write(&tmp, &text).at(&tmp)?;
    let path = dir.join(format!(
        "{}{}-{}.config",
        match req.arch {
            Arch::X86_64 => String::new(),
            other => format!("{}-", other.name()),
        },
        req.profile.name(),
        cache::file_digest(&tmp)?
    ));
    fs::rename(&tmp, &path).at(&path)?;
    Ok(path)
}

/// The kernel tree with the series applied and configured, without
/// building it (for the quality gates and the selftests).
pub fn prepare_tree(req: &BuildRequest, reporter: &mut dyn Reporter) -> Result<SourceTree> {
    let series = Series::parse(&req.patches)?;
    let base = tree::locate(req, reporter)?;
    cache::check_free(&req.cache_dir, req.min_free)?;
    let tree = base.patched(&req.cache_dir, req.arch, &series, reporter)?;
    let fragment = effective_fragment(req)?;
    let stamp = base.config_stamp(&series.digest()?, &cache::file_digest(&fragment)?);
    kconfig::configure(&tree.path, req.arch, &fragment, &stamp, reporter)?;
    Ok(tree)
}

/// Build (or find in the cache) the kernel `req` describes.
pub fn build(req: &BuildRequest, reporter: &mut dyn Reporter) -> Result<KernelImage> {
    let series = Series::parse(&req.patches)?;
    let base = tree::locate(req, reporter)?;
    let fragment = effective_fragment(req)?;
    let key = CacheKey {
        base: base.info().id,
        series: series.digest()?,
        config: cache::file_digest(&fragment)?,
        profile: req.profile.name().to_string(),
        arch: req.arch.name().to_string(),
    };
    let out = cache::kernel_dir(&req.cache_dir, &key);
    if cache::lookup(&req.cache_dir, &key).is_some() {
        // the use and the hold first, then the files again: a prune
        // running now either sees them and keeps the kernel, or removes it
        // before this looks again, and then the kernel is built
        // (cache::prune)
        let used = cache::mark_used(&out);
        // pruned meanwhile: no warning, the lookup misses and it is built
        if !used.held.as_ref().is_err_and(|e| e.is_not_found()) {
            cache::warn_unrecorded(used, reporter);
        }
        if let Some(image) = cache::lookup(&req.cache_dir, &key) {
            reporter.event(Event::Cached(
                Phase::Build,
                format!("kernel {} is cached", key.digest()),
            ));
            return Ok(image);
        }
    }

    match cache::check_free(&req.cache_dir, req.min_free) {
        Err(e @ Error::DiskSpace { .. }) => {
            // what the cache may give back first
            if prune_cache(req, reporter) == 0 {
                return Err(e);
            }
            cache::check_free(&req.cache_dir, req.min_free)?;
        }
        other => other?,
    }
    let tree = base.patched(&req.cache_dir, req.arch, &series, reporter)?;
    let stamp = base.config_stamp(&key.series, &key.config);
    kconfig::configure(&tree.path, req.arch, &fragment, &stamp, reporter)?;
    // a failed build's directory, reused: not idle any more, and held. A
    // prune that was removing it when this held it: made again
    for attempt in 1.. {
        fs::create_dir_all(&out).at(&out)?;
        let used = cache::mark_used(&out);
        if attempt < 3 && used.held.as_ref().is_err_and(|e| e.is_not_found()) {
            continue;
        }
        cache::warn_unrecorded(used, reporter);
        break;
    }
    kbuild::build(
        &tree.path,
        req.arch,
        req.profile,
        req.jobs,
        &req.ccache(),
        &out.join("build.log"),
        reporter,
    )?;

    // UML's `linux` is both the bootable image and the ELF with BTF.
    let (bzimage, vmlinux) = match req.arch {
        Arch::X86_64 => (out.join("bzImage"), out.join("vmlinux")),
        Arch::Um => (out.join("linux"), out.join("linux")),
    };
    let image = KernelImage {
        bzimage,
        vmlinux,
        release: kbuild::kernel_release(&tree.path, req.arch)?,
        upstream: tree.base.upstream.clone().unwrap_or_default(),
        origin: tree.base.origin.clone(),
        key,
        tree: tree.path.clone(),
    };
    let mut copies = vec![(tree.path.join(req.arch.image_in_tree()), &image.bzimage)];
    if image.vmlinux != image.bzimage {
        copies.push((tree.path.join("vmlinux"), &image.vmlinux));
    }
    for (from, to) in copies {
        fs::copy(&from, to).at(&from)?;
    }
    cache::store(&image, &out)?;
    // the kernel is built and stored: a prune that fails is reported, and
    // does not fail the build
    prune_cache(req, reporter);
    Ok(image)
}

/// Keep `<cache>/kernels` within `req.kernel_cache_limit` ([`cache::prune`]),
/// saying what went; a failure is a warning. The bytes removed.
fn prune_cache(req: &BuildRequest, reporter: &mut dyn Reporter) -> u64 {
    match cache::prune(&req.cache_dir, req.kernel_cache_limit.bytes(), false) {
        Ok(pruned) => {
            if !pruned.removed.is_empty() {
                // a Warning, so that it is printed: kernels another
                // command may look for are gone
                reporter.event(Event::Warning(format!(
                    "removed {} cached kernel director{} ({}: the kernels used least recently beyond {} (--kernel-cache-max), and failed builds' left for a week); {} kept ({})",
                    pruned.removed.len(),
                    if pruned.removed.len() == 1 { "y" } else { "ies" },
                    ByteSize(pruned.removed_bytes()).display().iec(),
                    req.kernel_cache_limit,
                    pruned.kept.len(),
                    ByteSize(pruned.kept_bytes()).display().iec(),
                )));
            }
            for (dir, error) in &pruned.failed {
                reporter.event(Event::Warning(format!(
                    "the kernel cache's prune could not remove {}: {error}",
                    dir.display()
                )));
            }
            pruned.removed_bytes()
        }
        Err(e) => {
            reporter.event(Event::Warning(format!(
                "the kernel cache could not be pruned to {} (--kernel-cache-max): {e}",
                req.kernel_cache_limit
            )));
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prune after a build is printed (a warning: the default
    /// reporter shows no notes), says what went, and is off with
    /// `unlimited`.
    #[test]
    fn the_prune_after_a_build_is_reported_and_unlimited_keeps_all() {
        let d = tempfile::tempdir().expect("tempdir");
        let cache = d.path().join("cache");
        let key = CacheKey {
            base: "b".into(),
            series: "s".into(),
            config: "c".into(),
            profile: "o2".into(),
            arch: "x86_64".into(),
        };
        let dir = cache::kernel_dir(&cache, &key);
        fs::create_dir_all(&dir).expect("mkdir");
        let image = KernelImage {
            bzimage: dir.join("bzImage"),
            vmlinux: dir.join("vmlinux"),
            release: "r".into(),
            upstream: "u".into(),
            origin: "o".into(),
            key,
            tree: d.path().to_path_buf(),
        };
        cache::store(&image, &dir).expect("store");
        let long_ago = std::time::SystemTime::now() - cache::IN_USE * 2;
        let manifest = fs::File::options()
            .write(true)
            .open(dir.join("kernel.json"))
            .expect("open");
        manifest.set_modified(long_ago).expect("mtime");
        fs::File::open(&dir)
            .expect("dir")
            .set_modified(long_ago)
            .expect("mtime");
        let req = |limit| BuildRequest {
            cache_dir: cache.clone(),
            source: SourceSpec::Path(d.path().join("src")),
            patches: d.path().to_path_buf(),
            config: d.path().join("config"),
            profile: Profile::O2,
            jobs: 1,
            refresh_source: false,
            ccache: false,
            arch: Arch::X86_64,
            min_free: DEFAULT_MIN_FREE,
            kernel_cache_limit: limit,
        };
        let mut seen = Vec::new();
        let mut record = |e: Event| seen.push(e);
        prune_cache(&req(CacheLimit::Unlimited), &mut record);
        assert!(seen.is_empty(), "{seen:?}");
        assert!(dir.is_dir(), "unlimited removed a kernel");

        let limit = CacheLimit::Bytes(ByteSize::b(0));
        let mut record = |e: Event| seen.push(e);
        prune_cache(&req(limit), &mut record);
        assert!(!dir.exists(), "the idle kernel is still there");
        match seen.as_slice() {
            [Event::Warning(text)] => {
                assert!(
                    text.starts_with("removed 1 cached kernel directory"),
                    "{text}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    /// A profile with a fragment of its own merges it from next to the
    /// config; a config with none beside it is refused by name, with the
    /// way out, before anything is built.
    #[test]
    fn a_profile_fragment_missing_next_to_the_config_is_named() {
        let d = tempfile::tempdir().expect("tempdir");
        let config = d.path().join("my.frag");
        fs::write(&config, "CONFIG_NET=y\n").expect("write");
        let req = |profile| BuildRequest {
            cache_dir: d.path().join("cache"),
            source: SourceSpec::Path(d.path().join("src")),
            patches: d.path().to_path_buf(),
            config: config.clone(),
            profile,
            jobs: 1,
            refresh_source: false,
            ccache: false,
            arch: Arch::X86_64,
            min_free: DEFAULT_MIN_FREE,
            kernel_cache_limit: DEFAULT_KERNEL_CACHE_LIMIT,
        };
        assert_eq!(
            effective_fragment(&req(Profile::Tiny)).expect("tiny"),
            config
        );
        let err = effective_fragment(&req(Profile::O2)).expect_err("no config-o2");
        let text = err.to_string();
        assert!(
            text.contains("profile o2")
                && text.contains(&d.path().join("config-o2").display().to_string())
                && text.contains("--profile tiny"),
            "{text}"
        );
        fs::write(
            d.path().join("config-o2"),
            "CONFIG_CC_OPTIMIZE_FOR_PERFORMANCE=y\n",
        )
        .expect("write");
        let merged = effective_fragment(&req(Profile::O2)).expect("merged");
        assert_eq!(
            fs::read_to_string(merged).expect("read"),
            "CONFIG_NET=y\n\nCONFIG_CC_OPTIMIZE_FOR_PERFORMANCE=y\n"
        );
    }

    /// `pristine_code` keeps each patch's uAPI diffs, drops a patch with
    /// none, and leaves the series it was given as it was.
    #[test]
    fn pristine_code_keeps_the_series_uapi_changes_alone() {
        let d = tempfile::tempdir().expect("tempdir");
        let patches = d.path().join("patches");
        fs::create_dir_all(&patches).expect("mkdir");
        let uapi = "Subject: [PATCH 1/2] bpf: x\n---\n\
diff --git a/include/uapi/linux/bpf.h b/include/uapi/linux/bpf.h\n+y\n\
diff --git a/net/core/filter.c b/net/core/filter.c\n+z\n";
        let selftest = "Subject: [PATCH 2/2] selftests\n---\n\
diff --git a/tools/testing/selftests/bpf/x.c b/tools/testing/selftests/bpf/x.c\n+t\n";
        fs::write(patches.join("0001-x.patch"), uapi).expect("write");
        fs::write(patches.join("0002-t.patch"), selftest).expect("write");
        fs::write(patches.join("series"), "0001-x.patch\n0002-t.patch\n").expect("write");
        let req = BuildRequest {
            cache_dir: d.path().join("cache"),
            source: SourceSpec::Path(d.path().join("src")),
            patches: patches.clone(),
            config: patches.join("config"),
            profile: Profile::Tiny,
            jobs: 1,
            refresh_source: false,
            ccache: false,
            arch: Arch::X86_64,
            min_free: DEFAULT_MIN_FREE,
            kernel_cache_limit: DEFAULT_KERNEL_CACHE_LIMIT,
        };
        let reduced = req.pristine_code().expect("reduced");
        let series = Series::parse(&reduced.patches).expect("a series");
        assert_eq!(series.patches.len(), 1, "{series:?}");
        let text = fs::read_to_string(&series.patches[0]).expect("read");
        assert!(text.contains("include/uapi/linux/bpf.h") && text.contains("+y"));
        assert!(!text.contains("filter.c") && !text.contains("+z"), "{text}");
        assert!(reduced.patches.starts_with(d.path().join("cache")));
        assert_eq!(
            fs::read_to_string(patches.join("series")).expect("read"),
            "0001-x.patch\n0002-t.patch\n"
        );
    }
}
