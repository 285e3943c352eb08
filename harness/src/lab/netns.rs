//! Named network namespaces with `ip netns add` semantics (a bind mount of
//! the namespace at /run/netns/<name>), and running code inside one from a
//! thread that entered it.

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::thread;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use super::{io_err, Error, Result};

/// Where `ip netns` keeps its namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// The bind-mount path of namespace `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Where [`create`] marks the namespaces it made: a name that only looks
/// like a lab's (another tool's `fn...-...`) has no mark, and the leftover
/// sweeps never touch it. On the same tmpfs as /run/netns, so both go at
/// a reboot.
pub const MARK_DIR: &str = "/run/fibneigh/netns";

/// The mark of namespace `name` (see [`MARK_DIR`]).
pub fn mark(name: &str) -> PathBuf {
    Path::new(MARK_DIR).join(name)
}

/// Whether [`create`] made namespace `name` (its mark is there).
pub fn made_here(name: &str) -> bool {
    mark(name).exists()
}

/// Remove the marks whose namespace is gone (deleted by another tool, say)
/// and whose run is over, so that a later namespace of that name made by
/// someone else is not taken for ours. Best effort: a mark that cannot be
/// read or removed stays.
pub fn drop_stale_marks() {
    let Ok(entries) = fs::read_dir(MARK_DIR) else {
        return;
    };
    for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
        let over = super::plan::owner_pid(&name).is_none_or(|pid| !pid_alive(pid));
        if over && !path(&name).exists() {
            let _ = fs::remove_file(mark(&name));
        }
    }
}

/// Make /run/netns a mount point with shared propagation, as `ip netns add`
/// does before its first namespace. Until it is one, a namespace's bind
/// mount sits on the file system below it, and the first `ip netns add`
/// (of a user, or of any tool doing the same) bind-mounts the directory
/// over itself: from then on our namespaces' files are mount points hidden
/// under that mount, which can be neither unmounted nor removed by their
/// path. A mount point already there is made shared, as `ip` does.
fn shared_run_dir() -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(NETNS_DIR)
        .map_err(io_err(format!("create {NETNS_DIR}")))?;
    let share = || {
        mount(
            None::<&str>,
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match share() {
        Ok(()) => return Ok(()),
        // not a mount point yet
        Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(io_err(format!("make {NETNS_DIR} shared"))(e.into())),
    }
    mount(
        Some(NETNS_DIR),
        NETNS_DIR,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| io_err(format!("bind-mount {NETNS_DIR} on itself"))(e.into()))?;
    share().map_err(|e| io_err(format!("make {NETNS_DIR} shared"))(e.into()))
}

/// Held by [`create`] and [`delete`] from their first look at a name to
/// their last change to it, so that threads of this run never interleave
/// on one name (a loser of a create race removing the winner's mark, a
/// delete removing the mark of a create that came after it). Other runs
/// never use this run's names: they hold its pid.
static NAMES: Mutex<()> = Mutex::new(());

fn names_held() -> MutexGuard<'static, ()> {
    // What it guards is on the file system, not in the (): a thread that
    // panicked holding it left at worst what a killed run leaves (a mark,
    // a namespace's file), which the sweeps know for ours.
    NAMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Create namespace `name`; fails if it exists.
pub fn create(name: &str) -> Result<()> {
    let _held = names_held();
    shared_run_dir()?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(MARK_DIR)
        .map_err(io_err(format!("create {MARK_DIR}")))?;
    let target = path(name);
    if target.exists() {
        return Err(Error::Exists(name.to_string()));
    }
    // The mark comes first: a run that ends at any point after this (a
    // second Ctrl-C's immediate exit, SIGKILL) leaves nothing of this
    // namespace that a sweep does not know for ours. A mark whose
    // namespace never came is dropped by the sweeps once the run is over.
    File::create(mark(name)).map_err(io_err(format!("create {}", mark(name).display())))?;
    if let Err(e) = File::options().write(true).create_new(true).open(&target) {
        let _ = fs::remove_file(mark(name));
        return Err(match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::Exists(name.to_string()),
            _ => io_err(format!("create {}", target.display()))(e),
        });
    }
    // A fresh thread unshares, so no other thread changes namespace; the
    // bind mount keeps the namespace alive after the thread ends.
    let t = target.clone();
    let made = thread::spawn(move || -> nix::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &t,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    })
    .join()
    .expect("the namespace thread does not panic");
    if let Err(e) = made {
        let _ = fs::remove_file(&target);
        let _ = fs::remove_file(mark(name));
        return Err(io_err(format!("create network namespace {name}"))(e.into()));
    }
    Ok(())
}

/// Delete namespace `name`: unmount and remove its file. The namespace,
/// with its links, filters and XDP programs, goes away once nothing else
/// holds it.
pub fn delete(name: &str) -> Result<()> {
    let _held = names_held();
    let target = path(name);
    match umount2(&target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(io_err(format!("unmount {}", target.display()))(e.into())),
    }
    match fs::remove_file(&target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("remove {}", target.display()))(e)),
    }
    // The mark goes last: a namespace that could not be removed keeps it,
    // so a later sweep still knows it for ours.
    match fs::remove_file(mark(name)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(format!("remove {}", mark(name).display()))(e)),
    }
}

/// Names in /run/netns.
pub fn list() -> Result<Vec<String>> {
    let entries = match fs::read_dir(NETNS_DIR) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(format!("list {NETNS_DIR}"))(e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Run `f` in a thread that entered namespace `name`; its result comes
/// back, a panic in it is resumed here.
pub fn run_in<T, F>(name: &str, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let ns = File::open(path(name)).map_err(io_err(format!("open network namespace {name}")))?;
    thread::scope(|s| {
        let h = s.spawn(|| -> Result<T> {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| io_err(format!("enter network namespace {name}"))(e.into()))?;
            Ok(f())
        });
        match h.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Whether process `pid` exists.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // EPERM also means it exists.
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}
