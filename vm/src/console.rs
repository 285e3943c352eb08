//! The guest's console: split the kernel's and virtme-ng's lines from the
//! command's own stderr, and find the kernel bug reports in it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// Printed by the guest wrapper right before `exec`ing the command: its
/// presence proves the guest booted and the command was reached.
pub const START_MARKER: &str = "fibneigh: guest command starting";

/// What the console showed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConsoleSummary {
    /// The guest reached the command ([`START_MARKER`]).
    pub marker: bool,
    pub panic: bool,
    /// Kernel reports that mean a bug whatever the command's status: the
    /// first line of each (see [`splat_kind`]).
    pub splats: Vec<String>,
    /// The first report with the kernel lines that follow it (up to
    /// [`SPLAT_LINES`]).
    pub first_splat: String,
}

impl ConsoleSummary {
    /// A guest whose kernel panicked or reported a bug, or that never
    /// reached the command, is an error naming `console_log`, whatever the
    /// command's status.
    pub fn verdict(&self, console_log: &Path) -> Result<()> {
        let console_log = console_log.to_path_buf();
        if self.panic {
            return Err(Error::GuestPanic { console_log });
        }
        if !self.splats.is_empty() {
            return Err(Error::GuestSplat {
                count: self.splats.len(),
                first: self.first_splat.trim_end().to_string(),
                console_log,
            });
        }
        if !self.marker {
            return Err(Error::GuestNoStart { console_log });
        }
        Ok(())
    }
}

/// How many kernel lines of the first bug report are kept for the error.
pub const SPLAT_LINES: usize = 40;

/// Kernel console lines that open a report of a kernel bug: lockdep,
/// KASAN, UBSAN, RCU stalls, sleeping in atomic context, WARN(), BUG(),
/// oopses. A debug kernel (`--profile debug`) turns most of these on; a
/// run whose console has one fails.
const SPLATS: &[&str] = &[
    "WARNING:",
    "BUG:",
    "Oops",
    "general protection fault",
    "KASAN:",
    "UBSAN:",
    "possible circular locking dependency",
    "possible recursive locking",
    "inconsistent lock state",
    "suspicious RCU usage",
    "INFO: lockdep",
    "detected stall",
    "self-detected stall",
    "scheduling while atomic",
    "sleeping function called from invalid context",
];

/// The kind of bug report a kernel console line opens, if any.
pub fn splat_kind(line: &str) -> Option<&'static str> {
    if !is_kernel_line(line) {
        return None;
    }
    let text = line.split_once(']').map_or(line, |(_, t)| t);
    // virtme-ng's init logs through the kernel log too: its own
    // "WARNING: failed to run ..." (a root without systemd-tmpfiles) is
    // not the kernel's.
    if text.trim_start().starts_with("virtme-ng-init:") {
        return None;
    }
    SPLATS.iter().copied().find(|p| text.contains(p))
}

/// Is this console line the kernel's (`[    1.234567] ...`, from
/// CONFIG_PRINTK_TIME) or virtme-ng's own chatter?
pub fn is_console_noise(line: &str) -> bool {
    is_kernel_line(line)
        || line.starts_with("virtme-ng-init:")
        || line.starts_with("virtme:")
        || line.starts_with("virtme-run:")
}

/// A kernel console line: `[    1.234567] ...` (CONFIG_PRINTK_TIME).
pub fn is_kernel_line(line: &str) -> bool {
    line.strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .is_some_and(|(ts, _)| {
            let ts = ts.trim();
            !ts.is_empty() && ts.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
}

/// Copy virtme-ng's stderr into the console log; pass the guest command's
/// own stderr (everything after the start marker that is not kernel or
/// virtme output) through to `user`.
pub fn split_console(
    from: impl std::io::Read,
    mut log: impl std::io::Write,
    mut user: impl std::io::Write,
    kernel_spoke: &AtomicBool,
) -> ConsoleSummary {
    use std::io::BufRead;

    let mut summary = ConsoleSummary::default();
    let mut reader = std::io::BufReader::new(from);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let _ = log.write_all(&buf);
        let line = String::from_utf8_lossy(&buf);
        if is_kernel_line(&line) {
            kernel_spoke.store(true, Ordering::Relaxed);
        }
        if line.contains(START_MARKER) {
            summary.marker = true;
            continue;
        }
        if line.contains("Kernel panic") {
            summary.panic = true;
        }
        if splat_kind(&line).is_some() {
            summary.splats.push(line.trim_end().to_string());
        }
        if !summary.splats.is_empty()
            && is_kernel_line(&line)
            && summary.first_splat.lines().count() < SPLAT_LINES
        {
            summary.first_splat.push_str(&line);
        }
        if summary.marker && !is_console_noise(&line) {
            let _ = user.write_all(&buf);
        }
    }
    let _ = log.flush();
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summary of `input` alone, its log and user lines dropped.
    fn split_quietly(input: &str) -> ConsoleSummary {
        split_console(
            input.as_bytes(),
            Vec::new(),
            Vec::new(),
            &AtomicBool::new(false),
        )
    }

    #[test]
    fn console_split_passes_only_command_stderr() {
        let input = format!(
            "virtme: waiting\n[    0.000000] Linux version 7.3.4\nvirtme-ng-init: udev is done\n\
             {START_MARKER}\nreal error from the command\n[    6.0] late kernel line\n\
             [ oops] not a timestamp\n"
        );
        let mut log = Vec::new();
        let mut user = Vec::new();
        let spoke = AtomicBool::new(false);
        let s = split_console(input.as_bytes(), &mut log, &mut user, &spoke);
        assert!(spoke.load(Ordering::Relaxed), "a kernel line was seen");
        assert_eq!(
            s,
            ConsoleSummary {
                marker: true,
                panic: false,
                splats: Vec::new(),
                first_splat: String::new(),
            }
        );
        assert_eq!(String::from_utf8(log).unwrap(), input);
        assert_eq!(
            String::from_utf8(user).unwrap(),
            "real error from the command\n[ oops] not a timestamp\n"
        );
    }

    #[test]
    fn kernel_bug_reports_are_splats_and_command_output_is_not() {
        for line in [
            "[   12.345678] WARNING: CPU: 1 PID: 80 at net/core/neighbour.c:1200 __neigh_event_send+0x1/0x2",
            "[    3.000000] BUG: KASAN: slab-use-after-free in neigh_event_send_probe+0x10/0x20",
            "[    3.000000] ==================================================================",
            "[    4.100000] WARNING: possible circular locking dependency detected",
            "[    5.0] BUG: sleeping function called from invalid context at mm/slab.h:1",
            "[    6.0] UBSAN: array-index-out-of-bounds in net/core/filter.c:6400:3",
            "[    7.0] rcu: INFO: rcu_preempt self-detected stall on CPU",
            "[    8.0] BUG: scheduling while atomic: test_progs/99/0x00000201",
        ] {
            let found = splat_kind(line).is_some();
            assert_eq!(found, !line.contains("====="), "{line}");
        }
        // The command's own output, and ordinary kernel lines, are not.
        assert_eq!(splat_kind("WARNING: the test printed this"), None);
        assert_eq!(splat_kind("[    1.0] Linux version 7.3.4"), None);
        let input = "[    1.0] ok\n[    2.0] BUG: KASAN: use-after-free in x\n";
        let s = split_quietly(input);
        assert_eq!(s.splats, ["[    2.0] BUG: KASAN: use-after-free in x"]);
        assert_eq!(s.first_splat, "[    2.0] BUG: KASAN: use-after-free in x\n");
    }

    #[test]
    fn virtme_ng_inits_warnings_are_not_kernel_bugs() {
        // Seen from a minimal Debian root without systemd.
        let line = "[    2.749159] virtme-ng-init: WARNING: failed to run: \"systemd-tmpfiles\" --create --boot";
        assert_eq!(splat_kind(line), None);
        assert!(splat_kind("[    2.7] WARNING: CPU: 0 PID: 1 at net/core/filter.c:1 x").is_some());
    }

    #[test]
    fn virtme_chatter_is_not_the_kernel_speaking() {
        let input = "virtme: waiting for virtiofsd to start\nfuse: invalid argument\n";
        let spoke = AtomicBool::new(false);
        split_console(input.as_bytes(), Vec::new(), Vec::new(), &spoke);
        assert!(!spoke.load(Ordering::Relaxed));
    }

    #[test]
    fn console_split_sees_panic_without_marker() {
        let input = "[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n";
        let s = split_quietly(input);
        assert_eq!(
            s,
            ConsoleSummary {
                marker: false,
                panic: true,
                splats: Vec::new(),
                first_splat: String::new(),
            }
        );
    }
}
