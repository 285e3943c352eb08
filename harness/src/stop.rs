//! Stopping a run cleanly on SIGINT/SIGTERM: the handler only sets a flag;
//! scenario steps check it and return [`Interrupted`], so every guard
//! (the lab's namespaces, attachments, traffic threads) drops normally.
//! A second signal while the first is being handled terminates at once,
//! after killing the guests' process groups (QEMU, User-Mode Linux), which
//! run in groups of their own that a terminal's Ctrl-C does not reach.
//! Lab namespaces such an exit leaves are removed by `fibneigh clean` or
//! by the next lab command. Machine-wide settings a run changed (the
//! neighbour tables' GC thresholds) are put back by that exit too: see
//! [`restore_on_exit`].

use std::os::fd::IntoRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

fn shared() -> &'static Arc<AtomicBool> {
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// The exit status of a run stopped by SIGINT or SIGTERM (128 + SIGINT, as
/// shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Install the SIGINT/SIGTERM handlers (idempotent).
pub fn install() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    for sig in [SIGINT, SIGTERM] {
        // Order matters: the first action sees the flag as it was before
        // this signal's own handler (the second) sets it.
        let seen = shared().clone();
        // SAFETY: the action loads atomics, kills process groups
        // (kill(2)), writes numbers to open files (pwrite(2)) and exits
        // (_exit(2)): all async-signal-safe.
        unsafe {
            signal_hook::low_level::register(sig, move || {
                if seen.load(Ordering::SeqCst) {
                    fibneigh_vm::children::kill_all();
                    restore_all();
                    signal_hook::low_level::exit(EXIT_INTERRUPTED.into());
                }
            })?;
        }
        signal_hook::flag::register(sig, shared().clone())?;
    }
    let _ = INSTALLED.set(());
    Ok(())
}

/// The flag the handlers set, for code that polls it (a booting guest).
pub fn flag() -> &'static AtomicBool {
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Whether a stop was requested.
pub fn requested() -> bool {
    flag().load(Ordering::Relaxed)
}

/// Request a stop (as a signal would).
pub fn request() {
    flag().store(true, Ordering::Relaxed)
}

/// The run was interrupted by a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// `Err(Interrupted)` once a stop was requested.
pub fn check() -> Result<(), Interrupted> {
    if requested() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}

/// Sleep up to `d` in small steps, returning early on a stop request.
pub fn sleep(d: std::time::Duration) -> Result<(), Interrupted> {
    let end = std::time::Instant::now() + d;
    loop {
        check()?;
        let now = std::time::Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(std::time::Duration::from_millis(10)));
    }
}

/// More settings than this at once are not expected; registering one past
/// it is an error.
const RESTORE_SLOTS: usize = 8;
/// Per slot: a file open for writing (-1: free, -2: being filled in) and
/// the number to write to it.
static RESTORE_FD: [AtomicI32; RESTORE_SLOTS] = [const { AtomicI32::new(-1) }; RESTORE_SLOTS];
static RESTORE_VALUE: [AtomicU64; RESTORE_SLOTS] = [const { AtomicU64::new(0) }; RESTORE_SLOTS];

/// A setting a second signal restores, until this guard drops.
#[derive(Debug)]
pub struct RestoreOnExit(usize);

/// Until the guard drops, a second SIGINT/SIGTERM (which exits at once,
/// without running the guards that put settings back) writes `value` to
/// `path` first. The file is opened now, so it is the one this thread
/// sees (a sysctl under /proc/sys/net is the namespace's of the thread
/// that opens it), and it stays open until the process exits: a handler
/// on another thread may be writing it while the guard drops, and a
/// closed descriptor's number could by then name another file.
pub fn restore_on_exit(path: &Path, value: u64) -> std::io::Result<RestoreOnExit> {
    let Some(slot) = RESTORE_FD.iter().position(|s| {
        s.compare_exchange(-1, -2, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }) else {
        return Err(std::io::Error::other(format!(
            "more than {RESTORE_SLOTS} settings to restore on a second Ctrl-C at once"
        )));
    };
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(file) => {
            RESTORE_VALUE[slot].store(value, Ordering::SeqCst);
            RESTORE_FD[slot].store(file.into_raw_fd(), Ordering::SeqCst);
            Ok(RestoreOnExit(slot))
        }
        Err(e) => {
            RESTORE_FD[slot].store(-1, Ordering::SeqCst);
            Err(e)
        }
    }
}

impl Drop for RestoreOnExit {
    fn drop(&mut self) {
        RESTORE_FD[self.0].store(-1, Ordering::SeqCst);
    }
}

/// Write every registered setting. Async-signal-safe: atomic loads, the
/// number's digits formatted on the stack, and pwrite(2).
fn restore_all() {
    for (slot, value) in RESTORE_FD.iter().zip(&RESTORE_VALUE) {
        // The value between two reads of the same descriptor: a slot
        // freed and taken again meanwhile has another one (descriptors
        // stay open), and is skipped rather than torn.
        let fd = slot.load(Ordering::SeqCst);
        let mut v = value.load(Ordering::SeqCst);
        if fd < 0 || slot.load(Ordering::SeqCst) != fd {
            continue;
        }
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let text = &digits[start..];
        // SAFETY: pwrite(2) on a descriptor this process keeps open, from
        // a buffer on this stack.
        unsafe {
            libc::pwrite(fd, text.as_ptr().cast(), text.len(), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_setting_is_written_until_its_guard_drops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "raised").expect("write");
        std::fs::write(&b, "raised").expect("write");
        let ga = restore_on_exit(&a, 1024).expect("register a");
        let gb = restore_on_exit(&b, 0).expect("register b");
        restore_all();
        assert_eq!(std::fs::read_to_string(&a).expect("read"), "1024ed");
        assert_eq!(std::fs::read_to_string(&b).expect("read"), "0aised");
        drop(ga);
        std::fs::write(&a, "raised").expect("write");
        restore_all();
        assert_eq!(std::fs::read_to_string(&a).expect("read"), "raised");
        drop(gb);
        assert!(restore_on_exit(&dir.path().join("missing/x"), 1).is_err());
        // A setting past the last slot is an error, not silently dropped.
        let all: Vec<_> = (0..RESTORE_SLOTS)
            .map(|i| restore_on_exit(&a, i as u64).expect("a free slot"))
            .collect();
        let e = restore_on_exit(&a, 99).expect_err("no free slot");
        assert!(e.to_string().contains("more than 8 settings"), "{e}");
        drop(all);
        drop(restore_on_exit(&a, 1).expect("free again"));
    }
}
