//! Where a program calls the helper: tc or XDP. The one name for it across
//! the workspace (arguments, reports, loaders).

fibneigh_names::named_enum!(
    /// Which program type calls the helper; the kernel takes a different path
    /// for each (skb vs xdp_buff, and the tc path checks the MTU).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Hook: "hook" {
        Tc => "tc",
        Xdp => "xdp",
    }
);

/// A hook name that is neither "tc" nor "xdp".
pub type UnknownHook = fibneigh_names::UnknownName;

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
