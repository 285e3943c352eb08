//! The process groups of the guests this process runs (QEMU under
//! virtme-ng, User-Mode Linux). Each runs in a group of its own, which a
//! terminal's Ctrl-C does not reach, so a handler that has to exit at once
//! (a second Ctrl-C while the first is being handled) kills them first
//! with [`kill_all`].

use std::sync::atomic::{AtomicI32, Ordering};

/// More guests than this at once are not expected; one past it is not
/// registered (and then only a second Ctrl-C can leave it running).
const SLOTS: usize = 16;

static GROUPS: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];

/// A registered process group, unregistered on drop.
#[derive(Debug)]
pub struct Registered(Option<usize>);

/// Register process group `pgid` (a child spawned with `process_group(0)`:
/// its pid) until the guard drops.
pub fn register(pgid: i32) -> Registered {
    if pgid <= 0 {
        return Registered(None);
    }
    let slot = GROUPS.iter().position(|s| {
        s.compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    });
    Registered(slot)
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            GROUPS[i].store(0, Ordering::SeqCst);
        }
    }
}

/// SIGKILL every registered group. Async-signal-safe: atomic loads and
/// kill(2) only, so a signal handler may call it.
pub fn kill_all() {
    for slot in &GROUPS {
        let pgid = slot.load(Ordering::SeqCst);
        if pgid > 0 {
            // SAFETY: kill(2) is async-signal-safe and takes plain integers.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered() -> Vec<i32> {
        GROUPS
            .iter()
            .map(|s| s.load(Ordering::SeqCst))
            .filter(|&g| g > 0)
            .collect()
    }

    #[test]
    fn a_group_is_registered_while_its_guard_lives() {
        // A group id no process has (above pid_max, at most 2^22).
        let pgid = (1 << 22) + 12345;
        let guard = register(pgid);
        assert!(registered().contains(&pgid));
        // Killing a group that does not exist is harmless.
        kill_all();
        drop(guard);
        assert!(!registered().contains(&pgid));
        assert!(register(0).0.is_none());
    }

    #[test]
    fn kill_all_kills_a_registered_group() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .expect("sleep runs");
        let guard = register(child.id() as i32);
        kill_all();
        let status = child.wait().expect("reaped");
        drop(guard);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
