//! What the running kernel accepts of `bpf_fib_lookup()`'s flags.

use fibneigh_bpf::flags;
use fibneigh_bpf::probe::Probe;
use serde::Serialize;

/// What the running kernel accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Support {
    pub neigh_state: bool,
    pub neigh_refresh: bool,
    pub skip_neigh: bool,
}

impl Support {
    /// Probe the running kernel (needs root).
    pub fn probe() -> Result<Support, fibneigh_bpf::Error> {
        Support::from_probe(&mut Probe::load()?)
    }

    /// What the kernel accepts, asked through a probe already loaded.
    pub fn from_probe(p: &mut Probe) -> Result<Support, fibneigh_bpf::Error> {
        Ok(Support {
            neigh_state: p.accepts_flag(flags::NEIGH_STATE)?,
            neigh_refresh: p.accepts_flag(flags::NEIGH_REFRESH)?,
            skip_neigh: p.accepts_flag(flags::SKIP_NEIGH)?,
        })
    }

    /// The flag names of `wanted` this kernel does not accept.
    pub fn missing(&self, wanted: u32) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (bit, ok, name) in [
            (flags::NEIGH_STATE, self.neigh_state, "NEIGH_STATE"),
            (flags::NEIGH_REFRESH, self.neigh_refresh, "NEIGH_REFRESH"),
            (flags::SKIP_NEIGH, self.skip_neigh, "SKIP_NEIGH"),
        ] {
            if wanted & bit != 0 && !ok {
                out.push(name);
            }
        }
        out
    }

    /// Whether the kernel carries patch 1 (what `matrix --check` keys on).
    pub fn patched(&self) -> bool {
        self.neigh_state
    }
}
