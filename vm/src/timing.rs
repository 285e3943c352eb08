//! `vm timing`: what the pipeline costs on this machine. A clean build (a
//! private cache, so a fresh tree and no ccache), a rebuild after touching
//! `net/core/filter.c`, and boot-to-command for `true`.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, IoContext, Result};
use crate::events::{Event, Reporter};
use crate::{build, kbuild, Accel, BuildRequest, Guest, KernelImage};

/// What to measure.
#[derive(Debug, Clone)]
pub struct TimingRequest {
    pub build: BuildRequest,
    /// Measure a clean build (minutes); else build or reuse as usual.
    pub clean_build: bool,
    /// Boots of `true` to time (at least one).
    pub boots: usize,
    pub accel: Accel,
    /// Shared read-write with the guest.
    pub rwdirs: Vec<PathBuf>,
}

/// The figures.
#[derive(Debug, Clone)]
pub struct Timings {
    /// The kernel measured; after a clean build its files are gone with
    /// the private cache they were built in.
    pub image: KernelImage,
    pub jobs: usize,
    pub accel: Accel,
    /// Fresh tree, ccache off: unpack, commit, patch, configure, make.
    pub clean_build: Option<Duration>,
    pub rebuild: Duration,
    /// Boot-to-command for `true`, sorted.
    pub boots: Vec<Duration>,
}

impl Timings {
    pub fn median_boot(&self) -> Duration {
        self.boots[self.boots.len() / 2]
    }
}

/// Run the measurements.
pub fn measure(
    req: &TimingRequest,
    cancel: &AtomicBool,
    reporter: &mut dyn Reporter,
) -> Result<Timings> {
    let mut build_req = req.build.clone();
    let mut clean_build = None;
    let image = if req.clean_build {
        // A private cache, so nothing is reused: fresh tree, no ccache;
        // the downloaded packages are shared, not the trees or kernels.
        let bench_cache = build_req.cache_dir.join("bench");
        let _ = fs::remove_dir_all(&bench_cache);
        fs::create_dir_all(&bench_cache).at(&bench_cache)?;
        let apt = build_req.cache_dir.join("apt");
        if apt.is_dir() {
            let link = bench_cache.join("apt");
            std::os::unix::fs::symlink(&apt, &link).at(&link)?;
        }
        build_req.cache_dir = bench_cache;
        build_req.ccache = false;
        let t = Instant::now();
        let image = build(&build_req, reporter)?;
        clean_build = Some(t.elapsed());
        build_req.ccache = true;
        image
    } else {
        build(&build_req, reporter)?
    };

    let filter = image.tree.join("net/core/filter.c");
    let f = fs::File::options().append(true).open(&filter).at(&filter)?;
    f.set_modified(SystemTime::now()).at(&filter)?;
    let t = Instant::now();
    kbuild::build(
        &image.tree,
        build_req.arch,
        build_req.profile,
        build_req.jobs,
        &build_req.ccache(),
        &build_req.cache_dir.join("bench-rebuild.log"),
        reporter,
    )?;
    let rebuild = t.elapsed();

    let guest = Guest::new(
        image.bzimage.clone(),
        req.accel,
        build_req.cache_dir.clone(),
        req.rwdirs.clone(),
    );
    let mut boots = Vec::new();
    for _ in 0..req.boots.max(1) {
        let t = Instant::now();
        let done = guest.run(
            vec!["true".into()],
            Duration::from_secs(300),
            false,
            cancel,
            reporter,
        )?;
        if !done.status.success() {
            return Err(Error::GuestCommandFailed {
                status: done.status,
                console_log: done.console_log,
            });
        }
        boots.push(t.elapsed());
    }
    boots.sort();
    if req.clean_build {
        // a fresh tree and a kernel no other command finds (about 4 GiB)
        let dir = &build_req.cache_dir;
        match fs::remove_dir_all(dir) {
            Ok(()) => reporter.event(Event::Note(format!(
                "removed the clean build's private cache, {}",
                dir.display()
            ))),
            Err(e) => reporter.event(Event::Warning(format!(
                "could not remove the clean build's private cache, {}: {e}",
                dir.display()
            ))),
        }
    }
    Ok(Timings {
        image,
        jobs: build_req.jobs,
        accel: req.accel,
        clean_build,
        rebuild,
        boots,
    })
}
