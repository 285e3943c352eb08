//! The program a run puts on the DUT: the project's forwarder with a
//! policy, the public header's example, or nothing (the kernel stack).

use std::os::fd::BorrowedFd;

use fibneigh_bpf::example::{self, Example};
use fibneigh_bpf::{Counters, Forwarder, Hook};
use sha2::{Digest, Sha256};

use super::cell::PolicyChoice;
use super::result::HeaderRun;
use crate::error::Result;
use crate::lab::{ForwarderAttached, Lab};

/// The program a traffic cell runs on the DUT.
pub(crate) enum Program {
    /// The kernel stack alone.
    None,
    Forwarder(Forwarder),
    Example(Example),
}

impl Program {
    /// What `policy` runs at `hook` (nothing for the stack).
    pub(crate) fn load(policy: PolicyChoice, hook: Option<Hook>) -> Result<Program> {
        Ok(match (policy, hook) {
            (PolicyChoice::Prog(p), Some(_)) => Program::Forwarder(Forwarder::load(p)?),
            (PolicyChoice::Header, Some(hook)) => Program::Example(Example::load(hook)?),
            _ => Program::None,
        })
    }

    /// The program's descriptor at `hook`, for run-time statistics.
    pub(crate) fn prog_fd(&self, hook: Hook) -> Option<BorrowedFd<'_>> {
        match self {
            Program::None => None,
            Program::Forwarder(f) => Some(f.prog_fd(hook)),
            Program::Example(e) => Some(e.prog_fd()),
        }
    }

    /// Attach at `dev` in `ns` of `lab` (see [`Lab::attach_forwarder`]);
    /// nothing for the stack.
    pub(crate) fn attach(
        &self,
        lab: &Lab,
        hook: Option<Hook>,
        ns: &str,
        dev: &str,
    ) -> Result<Option<ForwarderAttached>> {
        Ok(match (self, hook) {
            (Program::None, _) | (_, None) => None,
            (Program::Forwarder(f), Some(h)) => Some(lab.attach_forwarder(f, h, ns, dev)?),
            (Program::Example(e), Some(h)) => Some(lab.attach_forwarder(e, h, ns, dev)?),
        })
    }

    /// The forwarder's counters, or the example's in the same terms.
    pub(crate) fn counters(&self) -> Result<Counters> {
        Ok(match self {
            Program::None => Counters::default(),
            Program::Forwarder(f) => f.counters()?,
            Program::Example(e) => e.stats()?.as_counters(e.hook()),
        })
    }

    /// For the example: the object it loaded and the path it took.
    pub(crate) fn header_run(&self) -> Result<Option<HeaderRun>> {
        let Program::Example(e) = self else {
            return Ok(None);
        };
        let stats = e.stats()?;
        let path = match stats.path() {
            Some(p) => p.name().to_string(),
            None if stats.on(example::Path::State) > 0 => "mixed".into(),
            None => "none".into(),
        };
        let (name, sha256) = object_digest(e.hook());
        Ok(Some(HeaderRun {
            object: name.to_string(),
            object_sha256: sha256,
            path,
        }))
    }
}

/// The file name and SHA-256 (hex) of the header's example object for
/// `hook`: what a `header` cell loads and what `fibneigh examples` writes.
pub fn object_digest(hook: fibneigh_bpf::Hook) -> (&'static str, String) {
    let (name, bytes) = example::object(hook);
    (name, hex::encode(Sha256::digest(bytes)))
}
