//! A neighbour entry's NUD state as a type: the `nud::*` bits of the bpf
//! crate, named as `ip neigh` names them, with the one list of states an
//! entry can be set to that the state matrix and the fuzzer both walk.

use std::fmt;

use fibneigh_bpf::nud;
use serde::{Serialize, Serializer};

/// A NUD state value (`NONE`: no entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nud(pub u16);

impl Nud {
    pub const NONE: Nud = Nud(nud::NONE);
    pub const INCOMPLETE: Nud = Nud(nud::INCOMPLETE);
    pub const REACHABLE: Nud = Nud(nud::REACHABLE);
    pub const STALE: Nud = Nud(nud::STALE);
    pub const DELAY: Nud = Nud(nud::DELAY);
    pub const PROBE: Nud = Nud(nud::PROBE);
    pub const FAILED: Nud = Nud(nud::FAILED);
    pub const NOARP: Nud = Nud(nud::NOARP);
    pub const PERMANENT: Nud = Nud(nud::PERMANENT);

    /// Every state an entry can be put in with `ip neigh replace`, valid
    /// ones first.
    pub const SETTABLE: [Nud; 8] = [
        Nud::REACHABLE,
        Nud::STALE,
        Nud::DELAY,
        Nud::PROBE,
        Nud::PERMANENT,
        Nud::NOARP,
        Nud::FAILED,
        Nud::INCOMPLETE,
    ];

    /// The kernel's `NUD_VALID`: the entry has a usable lladdr, and
    /// `bpf_fib_lookup()` returns SUCCESS for it.
    pub fn valid(self) -> bool {
        self.0
            & (nud::PERMANENT | nud::NOARP | nud::REACHABLE | nud::PROBE | nud::STALE | nud::DELAY)
            != 0
    }

    /// Whether an entry in this state has a link-layer address to set.
    pub fn has_lladdr(self) -> bool {
        self != Nud::NONE && self.0 & (nud::FAILED | nud::INCOMPLETE) == 0
    }

    pub fn name(self) -> String {
        nud::name(self.0)
    }
}

impl fmt::Display for Nud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for Nud {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_states_are_the_kernels_nud_valid() {
        let valid: Vec<Nud> = Nud::SETTABLE.into_iter().filter(|s| s.valid()).collect();
        assert_eq!(
            valid,
            [
                Nud::REACHABLE,
                Nud::STALE,
                Nud::DELAY,
                Nud::PROBE,
                Nud::PERMANENT,
                Nud::NOARP
            ]
        );
        assert!(!Nud::NONE.valid());
        assert!(!Nud::FAILED.has_lladdr() && Nud::STALE.has_lladdr());
        assert_eq!(
            serde_json::to_string(&Nud::STALE).ok().as_deref(),
            Some("\"STALE\"")
        );
    }
}
