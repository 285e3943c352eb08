//! Stopping a run cleanly on SIGINT/SIGTERM: the handler only sets a flag;
//! scenario steps check it and return [`Interrupted`], so every guard
//! (the lab's namespaces, attachments, traffic threads) drops normally.
//! A second signal while the first is being handled terminates at once,
//! after killing the guests' process groups (QEMU, User-Mode Linux), which
//! run in groups of their own that a terminal's Ctrl-C does not reach.
//! Lab namespaces such an exit leaves are removed by `fibneigh clean` or
//! by the next lab command.

use std::sync::atomic::{AtomicBool, Ordering};
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
        // SAFETY: the action loads an atomic, kills process groups
        // (kill(2)) and exits (_exit(2)): all async-signal-safe.
        unsafe {
            signal_hook::low_level::register(sig, move || {
                if seen.load(Ordering::SeqCst) {
                    fibneigh_vm::children::kill_all();
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
