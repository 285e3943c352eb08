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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_are_the_ones_reports_use() {
        let names: Vec<_> = Hook::ALL.iter().map(|h| h.name()).collect();
        assert_eq!(names, ["tc", "xdp"]);
    }
}
