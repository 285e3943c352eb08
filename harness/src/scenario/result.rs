//! What a matrix cell measured: its outcome, numbers, timeline and state
//! rows, and the expectation and verdict [`super::expect`] gives it. Plain
//! data, shared by the scenarios, the report and the benchmarks.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use super::cell::{Cell, PolicyChoice};
use super::options::Options;
use super::support::Support;
use crate::nud::Nud;

/// How a cell ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "message", rename_all = "kebab-case")]
pub enum Outcome {
    /// The first packet reached the new MAC within the window.
    Recovered,
    /// Nothing reached the new MAC within the window.
    NotRecovered,
    /// Nothing moved; the numbers are the result (state-matrix,
    /// reachable-fastpath).
    Measured,
    /// The policy needs a flag this kernel rejects; not a pass or a fail.
    Unsupported,
    /// The cell could not be run.
    Error(String),
}

impl Outcome {
    pub fn label(&self) -> String {
        match self {
            Outcome::Recovered => "recovered".into(),
            Outcome::NotRecovered => "NOT recovered".into(),
            Outcome::Measured => "measured".into(),
            Outcome::Unsupported => "unsupported by this kernel".into(),
            Outcome::Error(e) => format!("error: {e}"),
        }
    }
}

/// What the project expects of a cell on the running kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    Recovers,
    DoesNotRecover,
    /// Connected entries: no redirect_neigh / pass to the stack at all.
    NoSlowPath,
    /// Every state-matrix row as docs/design.md describes.
    LookupsAsDesigned,
    /// The policy's flag is rejected (unpatched kernel).
    Unsupported,
}

/// The comparison of a cell with its expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Fail(String),
    /// No expectation for this cell.
    Unchecked,
    /// Not run: the kernel rejects a flag the cell's policy needs (the
    /// reason names it). Counted as skipped, never as a pass.
    Skipped(String),
}

/// One NUD state through the probe program (state-matrix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateRow {
    /// The state the entry was set to (`NONE`: no entry).
    pub set: Nud,
    /// The state read back before the lookup.
    pub before: Nud,
    pub rc: i64,
    pub rc_name: String,
    /// `nud_state` as the helper left it (meaningful with NEIGH_STATE).
    pub nud_state: u16,
    /// That state when the helper reports one (NEIGH_STATE on SUCCESS or
    /// NO_NEIGH), `-` otherwise.
    #[serde(rename = "nud_name", serialize_with = "reported_name")]
    pub reported: Option<Nud>,
    /// The dmac the helper wrote (SUCCESS only).
    pub dmac: Option<String>,
    /// Whether dmac is the entry's lladdr.
    pub dmac_matches: bool,
    /// The state read back after the lookup (REFRESH moves STALE on).
    pub after: Nud,
}

fn reported_name<S: Serializer>(n: &Option<Nud>, s: S) -> Result<S::Ok, S::Error> {
    match n {
        Some(n) => n.serialize(s),
        None => s.serialize_str("-"),
    }
}

/// A neighbour state sample (only changes are kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateSample {
    pub t_ms: u64,
    pub state: String,
    /// Whether the entry's lladdr is the new owner's MAC.
    pub new_mac: Option<bool>,
}

/// What happened over time in one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Timeline {
    /// When the service moved (None: it did not).
    pub move_ms: Option<u64>,
    pub end_ms: u64,
    pub bin_ms: u64,
    /// Flow packets delivered to the old / new MAC, per bin.
    pub to_old: Vec<u32>,
    pub to_new: Vec<u32>,
    /// The DUT's entry for the nexthop.
    pub states: Vec<StateSample>,
}

/// What a cell of the header's example program saw of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HeaderRun {
    /// The object file loaded, unchanged on every kernel.
    pub object: String,
    pub object_sha256: String,
    /// The path every decision took: "state", "fallback", or "none"/"mixed"
    /// (neither is right).
    pub path: String,
}

/// Everything measured in one cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellResult {
    #[serde(flatten)]
    pub cell: Cell,
    pub outcome: Outcome,
    pub missing_flags: Vec<String>,
    /// From the move to the first packet delivered to the new MAC.
    pub recovery_ms: Option<f64>,
    pub sent: u64,
    pub delivered_old: u64,
    pub delivered_new: u64,
    /// Packets that reached the old MAC after the move (the dead MAC when
    /// the move was not announced).
    pub to_old_after_move: u64,
    /// Sent but delivered to nobody (old MAC after the move counts lost).
    pub lost: u64,
    /// ARP requests / NS for the nexthop from the DUT after the move.
    pub probes_unicast: u64,
    pub probes_multicast: u64,
    /// Forwarder counters since the move (or the measurement start).
    pub redirect: u64,
    pub redirect_neigh: u64,
    /// XDP's stand-in for redirect_neigh: passed to the stack.
    pub neigh_pass: u64,
    pub pass: u64,
    pub lookups_einval: u64,
    pub final_state: Option<String>,
    pub final_new_mac: Option<bool>,
    pub sysctls: BTreeMap<String, String>,
    pub duration_ms: u64,
    pub timeline: Option<Timeline>,
    pub state_rows: Vec<StateRow>,
    /// The header's example program only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderRun>,
    /// `fibneigh trial` only: what the wire shows of the forwarder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<String>,
    /// The policy the cell is judged as on this kernel (the header's
    /// example: state-aware with the series, always-neigh without).
    pub judged_as: PolicyChoice,
    pub expect: Option<Expect>,
    #[serde(flatten)]
    pub verdict: Verdict,
}

impl CellResult {
    pub fn new(cell: Cell, outcome: Outcome) -> Self {
        CellResult {
            cell,
            outcome,
            missing_flags: Vec::new(),
            recovery_ms: None,
            sent: 0,
            delivered_old: 0,
            delivered_new: 0,
            to_old_after_move: 0,
            lost: 0,
            probes_unicast: 0,
            probes_multicast: 0,
            redirect: 0,
            redirect_neigh: 0,
            neigh_pass: 0,
            pass: 0,
            lookups_einval: 0,
            final_state: None,
            final_new_mac: None,
            sysctls: BTreeMap::new(),
            duration_ms: 0,
            timeline: None,
            state_rows: Vec::new(),
            header: None,
            diagnosis: None,
            judged_as: cell.policy,
            expect: None,
            verdict: Verdict::Unchecked,
        }
    }

    /// Slow-path packets: redirect_neigh (tc) or passes to the stack in
    /// its place (XDP).
    pub fn slow_path(&self) -> u64 {
        self.redirect_neigh + self.neigh_pass
    }
}

/// Everything `matrix --json` writes.
#[derive(Debug, Serialize)]
pub struct MatrixReport<'a> {
    pub kernel_release: String,
    pub support: Support,
    pub options: Options,
    pub quick: bool,
    /// The policies `--policy` kept (empty: every policy ran), so that a
    /// report of part of the matrix says so.
    pub policies: Vec<&'static str>,
    pub cells: &'a [CellResult],
    pub failures: usize,
}

/// The header's example cells of a matrix: every one took the `want` path
/// ("state" on a patched kernel, "fallback" on one without the series)
/// and none failed. Returns each object file's SHA-256, or what is wrong.
pub fn header_objects(
    cells: &[CellResult],
    want: &str,
) -> std::result::Result<std::collections::BTreeMap<String, String>, String> {
    let mut objects = std::collections::BTreeMap::new();
    for c in cells
        .iter()
        .filter(|c| c.cell.policy == PolicyChoice::Header)
    {
        let h = c
            .header
            .as_ref()
            .ok_or_else(|| format!("{}: no record of the header's object", c.cell.id()))?;
        if let Verdict::Fail(why) = &c.verdict {
            return Err(format!("{}: failed: {why}", c.cell.id()));
        }
        if h.path != want {
            return Err(format!(
                "{}: took the {} path, not the {want} path",
                c.cell.id(),
                h.path
            ));
        }
        objects.insert(h.object.clone(), h.object_sha256.clone());
    }
    if objects.is_empty() {
        return Err("no cell of the header's example".into());
    }
    Ok(objects)
}

/// The header objects a matrix report (`matrix --json`) recorded.
pub fn header_objects_in_report(
    json: &str,
) -> std::result::Result<std::collections::BTreeMap<String, String>, String> {
    #[derive(serde::Deserialize)]
    struct Saved {
        cells: Vec<SavedCell>,
    }
    #[derive(serde::Deserialize)]
    struct SavedCell {
        #[serde(default)]
        header: Option<HeaderRun>,
    }
    let saved: Saved =
        serde_json::from_str(json).map_err(|e| format!("not a matrix report: {e}"))?;
    let objects: std::collections::BTreeMap<_, _> = saved
        .cells
        .into_iter()
        .filter_map(|c| c.header)
        .map(|h| (h.object, h.object_sha256))
        .collect();
    if objects.is_empty() {
        return Err("the report has no cell of the header's example".into());
    }
    Ok(objects)
}

#[cfg(test)]
mod header_tests {
    use super::*;
    use crate::scenario::expect::fixtures::{result, PATCHED, UNPATCHED};
    use crate::scenario::Scenario;

    fn header_cells(support: &Support) -> Vec<CellResult> {
        vec![
            result(
                Scenario::IpReassign,
                PolicyChoice::Header,
                Outcome::Recovered,
                support,
            ),
            result(
                Scenario::IpReassign,
                PolicyChoice::KernelStack,
                Outcome::Recovered,
                support,
            ),
        ]
    }

    #[test]
    fn header_cells_must_take_the_expected_path_with_the_same_objects() {
        let host = header_cells(&UNPATCHED);
        let vm = header_cells(&PATCHED);
        let on_host = header_objects(&host, "fallback").unwrap();
        assert_eq!(header_objects(&vm, "state").unwrap(), on_host);
        let err = header_objects(&vm, "fallback").unwrap_err();
        assert!(
            err.contains("took the state path, not the fallback path"),
            "{err}"
        );
        assert!(
            header_objects(&host[1..], "fallback").is_err(),
            "no header cell"
        );

        let mut failed = header_cells(&PATCHED);
        failed[0].verdict = Verdict::Fail("no frame reached the new MAC".into());
        assert!(header_objects(&failed, "state")
            .unwrap_err()
            .contains("failed"));

        let saved = serde_json::json!({ "cells": [
            { "policy": "header", "header": {
                "object": "tc_router.bpf.o", "object_sha256": "0".repeat(64), "path": "fallback" } },
            { "policy": "kernel-stack" },
        ]});
        assert_eq!(
            header_objects_in_report(&saved.to_string()).unwrap(),
            on_host
        );
        assert!(header_objects_in_report("{}").is_err());
    }
}
