//! Progress as a stream of typed events. The pipeline never prints; a
//! renderer (a progress bar on a TTY, plain lines otherwise) consumes these.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Fetch,
    Unpack,
    Commit,
    /// A worktree of the user's repository (`--tree`).
    Worktree,
    Patch,
    Configure,
    Build,
    Boot,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Fetch => "fetch",
            Phase::Unpack => "unpack",
            Phase::Commit => "commit",
            Phase::Worktree => "worktree",
            Phase::Patch => "patch",
            Phase::Configure => "configure",
            Phase::Build => "build",
            Phase::Boot => "boot",
        })
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    /// A phase begins; the string says what it works on.
    Start(Phase, String),
    /// Objects done so far in the current phase, with the latest one.
    Progress { done: u64, item: String },
    /// The current phase ended successfully.
    End(Phase),
    /// A phase was skipped because its result is cached.
    Cached(Phase, String),
    /// A one-off note worth showing (what was decided and why).
    Note(String),
    /// Something the user must see: the pipeline changed course (e.g. a
    /// guest rerun under TCG because KVM could not run the kernel).
    Warning(String),
}

pub trait Reporter {
    fn event(&mut self, event: Event);
}

impl<F: FnMut(Event)> Reporter for F {
    fn event(&mut self, event: Event) {
        self(event)
    }
}

/// Discards every event.
pub struct NullReporter;

impl Reporter for NullReporter {
    fn event(&mut self, _: Event) {}
}
