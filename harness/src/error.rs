//! The one error type of the harness's runs (scenarios, fuzzing, churn,
//! benchmarks): what failed underneath, a set-up step, a check, or a stop
//! request. An [`Error::Interrupted`] is never a result: callers tear down
//! and exit 130.

use crate::stop::Interrupted;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A lab failure; a lab's interruption is [`Error::Interrupted`]
    /// instead (see the `From` below).
    #[error(transparent)]
    Lab(crate::lab::Error),
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

/// A stop request seen inside the lab (a long netlink batch) is an
/// interruption like any other, so that callers matching
/// [`Error::Interrupted`] tear down and exit 130.
impl From<crate::lab::Error> for Error {
    fn from(e: crate::lab::Error) -> Self {
        match e {
            crate::lab::Error::Interrupted(i) => Error::Interrupted(i),
            e => Error::Lab(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab_step() -> crate::lab::Result<()> {
        Err(crate::lab::Error::Interrupted(Interrupted))
    }

    fn run_step() -> Result<()> {
        lab_step()?;
        Ok(())
    }

    #[test]
    fn a_lab_interruption_is_an_interruption() {
        assert!(matches!(run_step(), Err(Error::Interrupted(_))));
    }

    #[test]
    fn other_lab_errors_stay_lab_errors() {
        let e: Error = crate::lab::Error::NoSuchInterface("x0".into()).into();
        assert!(matches!(
            e,
            Error::Lab(crate::lab::Error::NoSuchInterface(_))
        ));
    }
}
