//! How things are shown, written once: the text tables ([`table`]), the
//! SVG drawing layer ([`svg`]), the JSON reports' envelope ([`json`]) and
//! the colours every picture shares.
//!
//! A policy (`baseline`, `always-neigh`, ...) and a lookup-flag column
//! (`floor`, `0`, `SKIP_NEIGH`, ...) have one colour each, the same in
//! every picture; a flag set shares its colour with the policy built on it
//! (`0` and `baseline`, `SKIP_NEIGH` and `always-neigh`, `NEIGH_STATE` and
//! `state-aware`, `NEIGH_REFRESH` and `refresh`).

pub mod json;
pub mod svg;
pub mod table;

pub use table::Table;

/// Colours for names [`colour`] does not know, picked by the name's
/// bytes so that a name keeps its colour.
const FALLBACK: [&str; 6] = [
    "#9c755f", "#edc948", "#ff9da7", "#76b7b2", "#e15759", "#d37295",
];

/// The colour of a policy or a lookup-flag column, the same in every
/// picture.
pub fn colour(name: &str) -> &'static str {
    match name {
        "baseline" | "0" => "#4e79a7",
        "always-neigh" | "SKIP_NEIGH" => "#f28e2b",
        "state-aware" | "NEIGH_STATE" => "#59a14f",
        "refresh" | "NEIGH_REFRESH" => "#b07aa1",
        "kernel-stack" => "#79706e",
        "floor" => "#bab0ac",
        other => {
            let h = other.bytes().fold(0usize, |h, b| {
                h.wrapping_mul(31).wrapping_add(usize::from(b))
            });
            FALLBACK[h % FALLBACK.len()]
        }
    }
}

/// The colour of a neighbour state (`REACHABLE`, or `REACHABLE|...`: the
/// first state of a set) in the timelines.
pub fn state_colour(state: &str) -> &'static str {
    match state.split('|').next().unwrap_or("") {
        "REACHABLE" => "#4caf50",
        "STALE" => "#fdd835",
        "DELAY" => "#ff9800",
        "PROBE" => "#f4511e",
        "FAILED" => "#c62828",
        "INCOMPLETE" => "#9e9e9e",
        "PERMANENT" => "#1e88e5",
        "NOARP" => "#5e35b1",
        _ => "#eeeeee",
    }
}

/// Deliveries to the old MAC before the move.
pub const TO_OLD_MAC: &str = "#e53935";
/// Deliveries to the old MAC after the move: lost.
pub const TO_OLD_MAC_LOST: &str = "#7f0000";
/// Deliveries to (and an entry holding) the new MAC.
pub const TO_NEW_MAC: &str = "#1e88e5";
/// An entry still holding the old MAC.
pub const OLD_MAC: &str = "#757575";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_and_their_flags_share_a_colour() {
        assert_eq!(colour("baseline"), colour("0"));
        assert_eq!(colour("always-neigh"), colour("SKIP_NEIGH"));
        assert_eq!(colour("state-aware"), colour("NEIGH_STATE"));
        assert_eq!(colour("refresh"), colour("NEIGH_REFRESH"));
        let named = [
            "baseline",
            "always-neigh",
            "state-aware",
            "refresh",
            "kernel-stack",
            "floor",
        ];
        for (i, a) in named.iter().enumerate() {
            for b in &named[i + 1..] {
                assert_ne!(colour(a), colour(b), "{a} and {b}");
            }
        }
        assert_eq!(colour("something else"), colour("something else"));
    }

    #[test]
    fn state_sets_take_their_first_state() {
        assert_eq!(state_colour("STALE|DELAY"), state_colour("STALE"));
        assert_eq!(state_colour("NONE"), "#eeeeee");
    }
}
