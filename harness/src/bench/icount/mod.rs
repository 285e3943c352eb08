//! Instruction counts per `bpf_fib_lookup()` call: the deterministic
//! companion of [`crate::bench::lookup`]'s timings.
//!
//! Two halves, on two sides of the guest:
//!
//! - [`run_workload`] runs in the guest (booted under TCG with the
//!   `fibneigh-icount` QEMU plugin): the lookup benchmark's lab and
//!   programs, every (row, column) of [`lookup::COLUMNS`] once, in a fixed
//!   order, each one `BPF_PROG_TEST_RUN` of `runs` x 64 lookups, the entry
//!   deleted and created again in the row's state before each (so it heads
//!   its hash chain: see [`LookupLab::recreate`]). It writes what it ran
//!   ([`GuestRun`]).
//! - [`analyse`] runs on the host after the guest exits: it matches each
//!   measured cell with the plugin's segment of that test run (the plugin
//!   starts a segment at every entry of `bpf_prog_test_run_xdp` and
//!   `bpf_prog_test_run_skb`; the measured runs are the guest's last ones),
//!   checks that the segment holds exactly the cell's helper calls from
//!   the cell's hook, and takes the most frequent per-call count.
//!
//! [`measure`] drives the host's side (build, `nm`, boot with the plugin,
//! analyse) and [`render`] writes the figures as text.

pub mod measure;
pub mod render;

use serde::{Deserialize, Serialize};

use fibneigh_bpf::bench::LOOKUPS_PER_RUN;
use fibneigh_bpf::nud;
use fibneigh_bpf::Hook;
use fibneigh_icount::Report;

use crate::bench::lookup::{Case, LookupLab, COLUMNS, REFERENCE};
use crate::bench::{Error, Result};
use crate::scenario::Support;
use crate::stop;

/// Test runs per cell unless told otherwise (1024 lookups).
pub const DEFAULT_RUNS: u32 = 16;

/// The kernel functions the plugin is given: the helpers, whose calls are
/// counted, in [`hook_index`] order.
pub const HELPERS: [&str; 2] = ["bpf_xdp_fib_lookup", "bpf_skb_fib_lookup"];
/// The markers, one segment per execution, in [`hook_index`] order.
pub const MARKERS: [&str; 2] = ["bpf_prog_test_run_xdp", "bpf_prog_test_run_skb"];

/// A hook's index in [`HELPERS`] and [`MARKERS`].
pub fn hook_index(hook: Hook) -> usize {
    match hook {
        Hook::Xdp => 0,
        Hook::Tc => 1,
    }
}

/// One cell the guest ran (or could not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// The row's label ("v4 REACHABLE tc").
    pub row: String,
    pub column: String,
    /// "tc" or "xdp".
    pub hook: String,
    pub v6: bool,
    /// The entry's NUD state.
    pub state: u16,
    /// The lookup flags; `None` for the floor (the loop without the helper).
    pub flags: Option<u32>,
    /// Test-run repetitions; 0 when the cell was not run.
    pub runs: u32,
    /// Helper calls the run made.
    pub calls: u64,
    /// Flags this kernel rejects (the cell was not run).
    pub unsupported: Vec<String>,
}

impl Cell {
    fn measured(&self) -> bool {
        self.unsupported.is_empty()
    }

    fn hook(&self) -> Hook {
        if self.hook == Hook::Xdp.name() {
            Hook::Xdp
        } else {
            Hook::Tc
        }
    }
}

/// What the guest ran, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestRun {
    /// `uname -r` in the guest.
    pub release: String,
    pub runs: u32,
    pub cells: Vec<Cell>,
}

/// Run the workload in the guest (as root, under the plugin): check each
/// cell once, then run every supported cell once, in order. Nothing else
/// may run a `BPF_PROG_TEST_RUN` after this until the guest exits.
pub fn run_workload(runs: u32, hooks: &[Hook]) -> Result<GuestRun> {
    let runs = runs.max(1);
    let support = Support::probe()?;
    let mut lab = LookupLab::new(support)?;
    let cases = Case::all(hooks);
    // Checks first, so that the measured test runs are the last ones.
    for case in &cases {
        for (_, f) in COLUMNS {
            if let Some(bits) = f.filter(|&b| lab.supports(b).is_empty()) {
                lab.verify(case, bits)?;
            }
        }
    }
    let mut cells = Vec::new();
    for case in &cases {
        for (name, f) in COLUMNS {
            stop::check()?;
            let unsupported: Vec<String> = f
                .map(|bits| lab.supports(bits))
                .unwrap_or_default()
                .into_iter()
                .map(String::from)
                .collect();
            let mut cell = Cell {
                row: case.label(),
                column: name.into(),
                hook: case.hook.name().into(),
                v6: case.v6,
                state: case.state,
                flags: f,
                runs: 0,
                calls: 0,
                unsupported,
            };
            if cell.measured() {
                lab.recreate(case)?;
                let t = lab.sample(case, f, runs)?;
                cell.runs = runs;
                cell.calls = if f.is_some() { t.lookups } else { 0 };
            }
            cells.push(cell);
        }
    }
    Ok(GuestRun {
        release: release(),
        runs,
        cells,
    })
}

fn release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One cell's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figure {
    pub column: String,
    /// Helper calls counted (must equal the cell's).
    pub calls: u64,
    /// The most frequent per-call instruction count: the figure.
    pub insns: Option<u64>,
    /// Calls with that count.
    pub at_mode: u64,
    pub min: Option<u64>,
    pub max: Option<u64>,
    /// The first call's count (REFRESH on STALE: the call that kicks the
    /// entry).
    pub first: Option<u64>,
    /// `insns` minus flags 0's in the same row.
    pub delta: Option<i64>,
    /// Why there is no figure, or what is special about it.
    pub note: Option<String>,
}

/// One row's figures, in [`COLUMNS`] order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub label: String,
    pub state: u16,
    pub figures: Vec<Figure>,
}

/// A goal and whether it was met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goal {
    pub text: String,
    pub limit: i64,
    /// The largest delta among the rows the goal covers, and its row.
    pub worst: Option<(i64, String)>,
    /// `None` when no row could be measured. `vm icount --check` fails
    /// when a goal is missed.
    pub met: Option<bool>,
}

/// Everything `vm icount` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IcountReport {
    pub release: String,
    pub runs: u32,
    pub rows: Vec<Row>,
    pub goals: Vec<Goal>,
    /// Calls over all cells whose count was not their cell's mode (an
    /// interrupt during the call, or a path that varies).
    pub off_mode_calls: u64,
    pub method: Vec<String>,
}

/// Match the guest's cells with the plugin's segments and take the
/// figures; any mismatch (a segment from the wrong hook or with the wrong
/// number of calls) is an error naming the cell.
pub fn analyse(guest: &GuestRun, report: &Report) -> Result<IcountReport> {
    if !report.errors.is_empty() {
        return Err(Error::Check(format!(
            "the plugin could not count some calls: {}",
            report.errors.join("; ")
        )));
    }
    let measured: Vec<&Cell> = guest.cells.iter().filter(|c| c.measured()).collect();
    let Some(skip) = report.segments.len().checked_sub(measured.len()) else {
        return Err(Error::Check(format!(
            "the plugin saw {} test runs, the guest made at least {}: was the plugin's marker \
             address right (same kernel as the vmlinux its symbols came from)?",
            report.segments.len(),
            measured.len()
        )));
    };
    let segments = &report.segments[skip..];
    let mut rows: Vec<Row> = Vec::new();
    let mut off_mode = 0;
    let mut seg = segments.iter();
    for cell in &guest.cells {
        if rows.last().is_none_or(|r| r.label != cell.row) {
            rows.push(Row {
                label: cell.row.clone(),
                state: cell.state,
                figures: Vec::new(),
            });
        }
        let mut fig = Figure {
            column: cell.column.clone(),
            calls: 0,
            insns: None,
            at_mode: 0,
            min: None,
            max: None,
            first: None,
            delta: None,
            note: None,
        };
        if !cell.measured() {
            fig.note = Some(format!("unsupported: {}", cell.unsupported.join(", ")));
        } else {
            let s = seg
                .next()
                .ok_or_else(|| Error::Check("segments ran out".into()))?;
            let want = hook_index(cell.hook());
            if s.marker != Some(want) {
                return Err(Error::Check(format!(
                    "{} / {}: its test run was seen entering {}, not {}",
                    cell.row,
                    cell.column,
                    s.marker.and_then(|m| MARKERS.get(m)).unwrap_or(&"nothing"),
                    MARKERS[want]
                )));
            }
            let from_hook = s.per_helper.get(want).copied().unwrap_or(0);
            if s.calls != cell.calls || from_hook != cell.calls {
                let hint = if s.calls == 0 {
                    " (the plugin sees only calls from JIT'd programs: is the BPF JIT on?)"
                } else {
                    ""
                };
                return Err(Error::Check(format!(
                    "{} / {}: the plugin counted {} helper calls ({} of {}) in its test run, \
                     the program made {}{hint}",
                    cell.row, cell.column, s.calls, from_hook, HELPERS[want], cell.calls
                )));
            }
            fig.calls = s.calls;
            if let Some((insns, n)) = s.mode() {
                fig.insns = Some(insns);
                fig.at_mode = n;
                off_mode += s.calls - n;
            } else {
                fig.note = Some("no helper call (the loop alone)".into());
            }
            fig.min = s.min();
            fig.max = s.max();
            fig.first = s.first;
            if cell.state == nud::STALE && cell.column == "NEIGH_REFRESH" {
                fig.note = Some(
                    "the first call kicks the entry to DELAY ('first'); the rest see DELAY".into(),
                );
            }
        }
        if let Some(row) = rows.last_mut() {
            row.figures.push(fig);
        }
    }
    for row in &mut rows {
        let reference = row
            .figures
            .iter()
            .find(|f| f.column == REFERENCE)
            .and_then(|f| f.insns);
        for f in &mut row.figures {
            f.delta = match (f.insns, reference) {
                (Some(x), Some(r)) => Some(x as i64 - r as i64),
                _ => None,
            };
        }
    }
    let goals = vec![
        goal(
            &rows,
            "NEIGH_STATE adds at most 4 instructions per lookup returning SUCCESS (every row)",
            "NEIGH_STATE",
            4,
            |_| true,
        ),
        goal(
            &rows,
            "NEIGH_REFRESH adds at most 12 instructions per lookup on a REACHABLE entry",
            "NEIGH_REFRESH",
            12,
            |r| r.state == nud::REACHABLE,
        ),
    ];
    Ok(IcountReport {
        release: guest.release.clone(),
        runs: guest.runs,
        rows,
        goals,
        off_mode_calls: off_mode,
        method: method(guest.runs),
    })
}

/// One row's flags-0 and SKIP_NEIGH figures (pristine, series).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesCost {
    pub row: String,
    pub flags0: (Option<u64>, Option<u64>),
    pub skip_neigh: (Option<u64>, Option<u64>),
}

fn added(pair: (Option<u64>, Option<u64>)) -> Option<i64> {
    Some(pair.1? as i64 - pair.0? as i64)
}

impl SeriesCost {
    /// Instructions the series adds to a lookup with flags 0.
    pub fn flags0_added(&self) -> Option<i64> {
        added(self.flags0)
    }

    pub fn skip_neigh_added(&self) -> Option<i64> {
        added(self.skip_neigh)
    }
}

/// What the series costs the flags it does not add, row by row (rows of
/// `series` matched by label in `pristine`).
pub fn series_cost(pristine: &IcountReport, series: &IcountReport) -> Vec<SeriesCost> {
    let get = |r: &IcountReport, row: &str, col: &str| {
        r.rows
            .iter()
            .find(|x| x.label == row)
            .and_then(|x| x.figures.iter().find(|f| f.column == col))
            .and_then(|f| f.insns)
    };
    series
        .rows
        .iter()
        .map(|r| SeriesCost {
            row: r.label.clone(),
            flags0: (get(pristine, &r.label, "0"), get(series, &r.label, "0")),
            skip_neigh: (
                get(pristine, &r.label, "SKIP_NEIGH"),
                get(series, &r.label, "SKIP_NEIGH"),
            ),
        })
        .collect()
}

/// What the series may add to the flags it does not add: at most 2
/// instructions per lookup over the pristine base, in every row, for flags
/// 0 and for SKIP_NEIGH. `vm icount --check` gates it.
pub const SERIES_ADDED_LIMIT: i64 = 2;

/// The goals on [`series_cost`]'s rows: flags 0 and SKIP_NEIGH.
pub fn series_goals(rows: &[SeriesCost]) -> Vec<Goal> {
    let worst = |added: &dyn Fn(&SeriesCost) -> Option<i64>| {
        rows.iter()
            .filter_map(|r| added(r).map(|d| (d, r.row.clone())))
            .max_by_key(|(d, _)| *d)
    };
    let goal = |text: &str, worst: Option<(i64, String)>| Goal {
        text: text.into(),
        limit: SERIES_ADDED_LIMIT,
        met: worst.as_ref().map(|(d, _)| *d <= SERIES_ADDED_LIMIT),
        worst,
    };
    vec![
        goal(
            "flags 0 costs at most 2 instructions more per lookup than before the series (every row)",
            worst(&|r| r.flags0_added()),
        ),
        goal(
            "SKIP_NEIGH costs at most 2 instructions more per lookup than before the series (every row)",
            worst(&|r| r.skip_neigh_added()),
        ),
    ]
}

fn goal(rows: &[Row], text: &str, column: &str, limit: i64, covers: impl Fn(&Row) -> bool) -> Goal {
    let worst = rows
        .iter()
        .filter(|r| covers(r))
        .filter_map(|r| {
            r.figures
                .iter()
                .find(|f| f.column == column)
                .and_then(|f| f.delta)
                .map(|d| (d, r.label.clone()))
        })
        .max_by_key(|(d, _)| *d);
    Goal {
        text: text.into(),
        limit,
        met: worst.as_ref().map(|(d, _)| *d <= limit),
        worst,
    }
}

/// How the figures were taken, for the report.
pub fn method(runs: u32) -> Vec<String> {
    vec![
        format!(
            "guest under QEMU TCG, 1 vCPU, with the fibneigh-icount plugin; each cell is one \
             BPF_PROG_TEST_RUN of {runs} runs x {LOOKUPS_PER_RUN} bpf_fib_lookup() calls, \
             the entry deleted and created again in the row's state first (it heads its hash chain)"
        ),
        "per call: every kernel instruction from the helper's first instruction to its ret \
         (callees, tail calls and any interrupt taken meanwhile included; the BPF program's \
         own instructions not); the figure is the most frequent per-call count of the cell"
            .into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_goals_take_the_worst_row_and_miss_above_two() {
        let row = |name: &str, f0: (u64, u64), skip: (u64, u64)| SeriesCost {
            row: name.into(),
            flags0: (Some(f0.0), Some(f0.1)),
            skip_neigh: (Some(skip.0), Some(skip.1)),
        };
        let rows = [
            row("v4 tc", (586, 588), (500, 499)),
            row("v6 xdp", (1105, 1105), (1000, 1003)),
        ];
        let g = series_goals(&rows);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].worst, Some((2, "v4 tc".into())));
        assert_eq!(g[0].met, Some(true));
        assert_eq!(g[1].worst, Some((3, "v6 xdp".into())));
        assert_eq!(g[1].met, Some(false));
        let v2 = [row("v4 xdp", (565, 591), (491, 515))];
        assert_eq!(series_goals(&v2)[0].met, Some(false), "v2's +26 misses");
        assert_eq!(series_goals(&[])[0].met, None);
    }
    use fibneigh_icount::{Args, Recorder};

    fn cell(row: &str, state: u16, column: &str, flags: Option<u32>, hook: Hook) -> Cell {
        Cell {
            row: row.into(),
            column: column.into(),
            hook: hook.name().into(),
            v6: false,
            state,
            flags,
            runs: 1,
            calls: if flags.is_some() { 3 } else { 0 },
            unsupported: Vec::new(),
        }
    }

    /// A plugin report whose segments hold `per_cell` calls of the given
    /// counts, after one unrelated test run.
    fn report(hooks: &[Hook], per_cell: &[&[u64]]) -> Report {
        let args = Args::parse(["out=x", "helper=0x10", "helper=0x20"]).unwrap();
        let mut r = Recorder::new(&args);
        r.marker(0); // a check's run, not measured
        r.enter(0, 0);
        r.exit(7);
        let mut now = 100;
        for (hook, counts) in hooks.iter().zip(per_cell) {
            r.marker(hook_index(*hook));
            for &c in *counts {
                r.enter(hook_index(*hook), now);
                r.exit(now + c);
                now += 1000;
            }
        }
        r.report(now)
    }

    fn guest(cells: Vec<Cell>) -> GuestRun {
        GuestRun {
            release: "7.3.4+".into(),
            runs: 1,
            cells,
        }
    }

    #[test]
    fn figures_are_modes_and_deltas_against_flags_0() {
        let row = "v4 REACHABLE xdp";
        let r = nud::REACHABLE;
        let g = guest(vec![
            cell(row, r, "floor", None, Hook::Xdp),
            cell(row, r, "0", Some(0), Hook::Xdp),
            cell(row, r, "NEIGH_STATE", Some(1 << 8), Hook::Xdp),
            cell(row, r, "NEIGH_REFRESH", Some(1 << 9), Hook::Xdp),
        ]);
        let rep = report(
            &[Hook::Xdp; 4],
            &[&[], &[300, 300, 300], &[303, 303, 900], &[320, 320, 320]],
        );
        let out = analyse(&g, &rep).unwrap();
        let f = &out.rows[0].figures;
        assert_eq!(f[0].insns, None);
        assert_eq!((f[1].insns, f[1].delta), (Some(300), Some(0)));
        assert_eq!(
            (f[2].insns, f[2].at_mode, f[2].max),
            (Some(303), 2, Some(900))
        );
        assert_eq!(f[2].delta, Some(3));
        assert_eq!(out.off_mode_calls, 1);
        assert_eq!(out.goals[0].met, Some(true));
        assert_eq!(out.goals[1].worst, Some((20, row.to_string())));
        assert_eq!(out.goals[1].met, Some(false));
    }

    #[test]
    fn a_segment_from_the_wrong_hook_or_count_is_an_error() {
        let r = nud::REACHABLE;
        let g = guest(vec![cell("v4 REACHABLE tc", r, "0", Some(0), Hook::Tc)]);
        let e = analyse(&g, &report(&[Hook::Xdp], &[&[1, 1, 1]])).unwrap_err();
        assert!(e.to_string().contains("bpf_prog_test_run_xdp"), "{e}");
        let e = analyse(&g, &report(&[Hook::Tc], &[&[1, 1]])).unwrap_err();
        assert!(e.to_string().contains("counted 2 helper calls"), "{e}");
        let e = analyse(&guest(vec![g.cells[0].clone(); 3]), &report(&[], &[])).unwrap_err();
        assert!(e.to_string().contains("saw 1 test runs"), "{e}");
    }

    #[test]
    fn unsupported_cells_take_no_segment() {
        let r = nud::REACHABLE;
        let mut un = cell("v4 REACHABLE tc", r, "NEIGH_STATE", Some(1 << 8), Hook::Tc);
        un.unsupported = vec!["NEIGH_STATE".into()];
        un.calls = 0;
        let g = guest(vec![cell("v4 REACHABLE tc", r, "0", Some(0), Hook::Tc), un]);
        let out = analyse(&g, &report(&[Hook::Tc], &[&[50, 50, 50]])).unwrap();
        let f = &out.rows[0].figures;
        assert_eq!(f[0].insns, Some(50));
        assert_eq!(f[1].note.as_deref(), Some("unsupported: NEIGH_STATE"));
        assert_eq!(out.goals[0].met, None);
    }
}
