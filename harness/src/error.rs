//! The one error type of the harness's runs (scenarios, fuzzing, churn,
//! benchmarks): what failed underneath, a set-up step, a check, or a stop
//! request. An [`Error::Interrupted`] is never a result: callers tear down
//! and exit 130.

use crate::stop::Interrupted;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Lab(#[from] crate::lab::Error),
    #[error(transparent)]
    Traffic(#[from] crate::traffic::Error),
    #[error(transparent)]
    Bpf(#[from] fibneigh_bpf::Error),
    /// A step that prepares a run failed (binding a socket, a flow that
    /// never started).
    #[error("{0}")]
    Setup(String),
    /// A measurement's own check failed (a lookup did not return what the
    /// benchmark needs, a path the counters do not show).
    #[error("{0}")]
    Check(String),
    #[error("interrupted")]
    Interrupted(#[from] Interrupted),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
