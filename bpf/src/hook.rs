//! Where a program calls the helper: tc or XDP. The one name for it across
//! the workspace (arguments, reports, loaders).

use std::fmt;
use std::str::FromStr;

/// Which program type calls the helper; the kernel takes a different path
/// for each (skb vs xdp_buff, and the tc path checks the MTU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    Tc,
    Xdp,
}

impl Hook {
    /// Both, in report order.
    pub const ALL: &'static [Hook] = &[Hook::Tc, Hook::Xdp];

    /// "tc" or "xdp".
    pub fn name(self) -> &'static str {
        match self {
            Hook::Tc => "tc",
            Hook::Xdp => "xdp",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A hook name that is neither "tc" nor "xdp".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown hook {0:?} (expected one of: tc, xdp)")]
pub struct UnknownHook(pub String);

impl FromStr for Hook {
    type Err = UnknownHook;

    fn from_str(s: &str) -> Result<Self, UnknownHook> {
        Hook::ALL
            .iter()
            .copied()
            .find(|h| h.name() == s)
            .ok_or_else(|| UnknownHook(s.to_string()))
    }
}

impl serde::Serialize for Hook {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_named() {
        for &h in Hook::ALL {
            assert_eq!(h.name().parse::<Hook>(), Ok(h));
            assert_eq!(h.to_string(), h.name());
        }
        let err = "tcx".parse::<Hook>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown hook \"tcx\" (expected one of: tc, xdp)"
        );
    }
}
