//! `fibneigh bench`: what each neighbour option costs per lookup and per
//! packet, and how fast each recovers from a moved IP (issue: "one table,
//! answered with numbers").
//!
//! Three measurements, each repeated in interleaved rounds so every ratio
//! compares figures taken side by side in the same run:
//! - [`lookup`]: ns per `bpf_fib_lookup()` by flag, from the kernel's own
//!   `BPF_PROG_TEST_RUN` duration;
//! - [`forwarding`]: packets per second through the forwarder by policy,
//!   fed by an XDP live-frames generator;
//! - [`recovery`]: the `ip-reassign` scenario's time to the new MAC and
//!   packets lost, by policy, with short and with default neighbour timers.
//!
//! The figures go into one [`BenchReport`]: a table ([`render`]), JSON, and
//! an SVG plot. On an emulated CPU (TCG) absolute times mean nothing, so
//! the table shows ratios only and says so.

pub mod forwarding;
pub mod icount;
pub mod lookup;
pub mod platform;
pub mod recovery;
pub mod render;
pub mod request;

use serde::{Deserialize, Serialize};

pub use platform::{Execution, Machine};

use crate::error::{Error, Result};

/// `values` without NaNs and infinities, in order; `None` if none is left.
pub fn finite_sorted(values: &[f64]) -> Option<Vec<f64>> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then_some(v)
}

/// Median and range of repeated measurements.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// How many samples.
    pub n: usize,
}

impl Stats {
    /// `None` for no samples (NaNs are dropped first).
    pub fn of(samples: &[f64]) -> Option<Stats> {
        let v = finite_sorted(samples)?;
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stats {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }

    /// Half the range relative to the median, in percent (0 for one
    /// sample).
    pub fn spread_pct(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / 2.0 / self.median.abs() * 100.0
        }
    }
}

/// The unit of a row's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Nanoseconds per lookup.
    NsPerLookup,
    /// Packets per second.
    Pps,
    /// Nanoseconds per packet.
    NsPerPacket,
    /// Milliseconds.
    Ms,
    /// A count of packets.
    Packets,
}

impl Unit {
    pub fn label(self) -> &'static str {
        match self {
            Unit::NsPerLookup => "ns/lookup",
            Unit::Pps => "pps",
            Unit::NsPerPacket => "ns/packet",
            Unit::Ms => "ms",
            Unit::Packets => "packets",
        }
    }

    /// Whether the figure is a time or rate of the machine (hidden under
    /// emulation) rather than a count or a timer-driven delay.
    pub fn is_machine_speed(self) -> bool {
        matches!(self, Unit::NsPerLookup | Unit::Pps | Unit::NsPerPacket)
    }
}

/// One cell: a column's figures in a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// The column: a flag or a policy.
    pub column: String,
    /// The measured values (`None`: not measured, see `note`).
    pub value: Option<Stats>,
    /// Per-round ratio to the row's reference column, from the same round.
    pub ratio: Option<Stats>,
    /// Why there is no value, or what to know about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Figure {
    pub fn missing(column: &str, note: impl Into<String>) -> Self {
        Figure {
            column: column.to_string(),
            value: None,
            ratio: None,
            note: Some(note.into()),
        }
    }

    /// Not measured: the kernel rejects `flags` (names, e.g. "NEIGH_STATE").
    pub fn unsupported<S: AsRef<str>>(column: &str, flags: &[S]) -> Self {
        let names: Vec<&str> = flags.iter().map(|f| f.as_ref()).collect();
        Figure::missing(column, format!("{UNSUPPORTED} ({})", names.join(", ")))
    }

    /// Whether this cell went unmeasured because the kernel rejects its
    /// flags.
    pub fn is_unsupported(&self) -> bool {
        self.value.is_none()
            && self
                .note
                .as_deref()
                .is_some_and(|n| n.starts_with(UNSUPPORTED))
    }
}

/// How an unsupported cell's note starts.
const UNSUPPORTED: &str = "unsupported by this kernel";

/// A row of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// "lookup", "forwarding" or "recovery".
    pub section: String,
    /// What is measured, e.g. "v4 REACHABLE xdp".
    pub label: String,
    pub unit: Unit,
    /// The column ratios are taken against.
    pub reference: String,
    pub figures: Vec<Figure>,
}

impl Row {
    pub fn figure(&self, column: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.column == column)
    }
}

/// A goal from the issue, checked against the figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    pub text: String,
    /// `None`: not measurable here (e.g. the kernel lacks the flag).
    pub met: Option<bool>,
    pub detail: String,
}

/// Everything one `fibneigh bench` run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub machine: Machine,
    /// `uname -r`.
    pub kernel: String,
    /// Which build of the kernel (series digest, profile, architecture,
    /// config digest, base), when `fibneigh vm run` booted one that `vm
    /// build` made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_build: Option<String>,
    /// The command line that produced this report.
    pub command: String,
    pub rows: Vec<Row>,
    pub goals: Vec<Goal>,
    /// How each part was measured (generator, repeat counts, ...).
    pub method: Vec<String>,
}

impl BenchReport {
    /// `uname -r`, and the build when it is known.
    pub fn kernel_label(&self) -> String {
        match &self.kernel_build {
            Some(b) => format!("{} ({b})", self.kernel),
            None => self.kernel.clone(),
        }
    }

    /// The cells the kernel could not measure, as "row/column".
    pub fn unsupported_cells(&self) -> Vec<String> {
        unsupported_cells(&self.rows)
    }

    /// The goals that could be measured and were not met, by their text.
    pub fn unmet_goals(&self) -> Vec<&str> {
        let unmet = self.goals.iter().filter(|g| g.met == Some(false));
        unmet.map(|g| g.text.as_str()).collect()
    }
}

fn unsupported_cells(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .flat_map(|r| {
            r.figures
                .iter()
                .filter(|f| f.is_unsupported())
                .map(move |f| format!("{}/{}", r.label, f.column))
        })
        .collect()
}

/// Which parts to measure, and how much.
#[derive(Debug, Clone, Default)]
pub struct BenchOptions {
    pub lookup: Option<lookup::Options>,
    pub forwarding: Option<forwarding::Options>,
    pub recovery: Option<recovery::Options>,
}

/// Measure what `opts` asks for on the running kernel (needs root).
/// `progress` is told when each part starts.
pub fn run(
    opts: &BenchOptions,
    command: &str,
    mut progress: impl FnMut(&str),
) -> Result<BenchReport> {
    let support = crate::scenario::Support::probe()?;
    let mut rows = Vec::new();
    let mut method = Vec::new();
    if let Some(o) = &opts.lookup {
        progress("lookup cost");
        let (r, m) = lookup::run(o, support)?;
        rows.extend(r);
        method.extend(m);
    }
    if let Some(o) = &opts.forwarding {
        progress("forwarding rate");
        let (r, m) = forwarding::run(o, support)?;
        rows.extend(r);
        method.extend(m);
    }
    if let Some(o) = &opts.recovery {
        progress("recovery");
        let (r, m) = recovery::run(o, support)?;
        rows.extend(r);
        method.extend(m);
    }
    let machine = Machine::detect();
    method.insert(
        0,
        format!(
            "method: {} ({} CPU(s))",
            machine.execution.label(),
            machine.cores
        ),
    );
    Ok(BenchReport {
        machine,
        kernel: platform::kernel_release(),
        kernel_build: platform::kernel_build(),
        command: command.to_string(),
        goals: goals(&rows),
        rows,
        method,
    })
}

/// Ratios `a[i] / b[i]` of paired samples (same round).
pub fn paired_ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter(|(_, d)| **d != 0.0)
        .map(|(n, d)| n / d)
        .collect()
}

/// A figure from per-round samples and the reference column's samples of
/// the same rounds.
pub fn figure(column: &str, samples: &[f64], reference: &[f64]) -> Figure {
    Figure {
        column: column.to_string(),
        value: Stats::of(samples),
        ratio: Stats::of(&paired_ratios(samples, reference)),
        note: None,
    }
}

/// Rotate `items` by `round` so no variant always runs first in a round.
pub fn rotated<T: Clone>(items: &[T], round: usize) -> Vec<T> {
    if items.is_empty() {
        return Vec::new();
    }
    let k = round % items.len();
    items[k..].iter().chain(&items[..k]).cloned().collect()
}

/// Worst (largest, or smallest with `min`) median ratio of `column` over
/// the rows matching `pick`, with its row label.
fn worst_ratio(
    rows: &[Row],
    pick: impl Fn(&Row) -> bool,
    column: &str,
    min: bool,
) -> Option<(f64, String, usize)> {
    let mut found: Vec<(f64, String)> = rows
        .iter()
        .filter(|r| pick(r))
        .filter_map(|r| Some((r.figure(column)?.ratio?.median, r.label.clone())))
        .collect();
    let n = found.len();
    found.sort_by(|a, b| a.0.total_cmp(&b.0));
    let w = if min { found.first() } else { found.last() }?;
    Some((w.0, w.1.clone(), n))
}

fn bound_goal(text: &str, w: Option<(f64, String, usize)>, ok: impl Fn(f64) -> bool) -> Goal {
    match w {
        None => Goal {
            text: text.into(),
            met: None,
            detail: "no figure (unsupported here, or not run)".into(),
        },
        Some((v, label, n)) => Goal {
            text: text.into(),
            met: Some(ok(v)),
            detail: format!("worst of {n} rows: x{v:.3} ({label})"),
        },
    }
}

/// The issue's goals, checked against the medians of the ratios.
pub fn goals(rows: &[Row]) -> Vec<Goal> {
    let lookup = |r: &Row| r.section == "lookup";
    let reachable = |r: &Row| r.section == "lookup" && r.label.contains("REACHABLE");
    let helper = |r: &Row| r.section == lookup::HELPER_ONLY;
    let helper_reachable = |r: &Row| helper(r) && r.label.contains("REACHABLE");
    let rate = |r: &Row| r.section == "forwarding" && r.unit == Unit::Pps;
    let time_to_mac = |r: &Row| r.section == "recovery" && r.unit == Unit::Ms;
    let mut g = vec![
        bound_goal(
            "NEIGH_STATE within +1% of flags 0 (ns/lookup)",
            worst_ratio(rows, lookup, "NEIGH_STATE", false),
            |v| v <= 1.01,
        ),
        bound_goal(
            "NEIGH_REFRESH on a REACHABLE entry within +2% of flags 0",
            worst_ratio(rows, reachable, "NEIGH_REFRESH", false),
            |v| v <= 1.02,
        ),
        bound_goal(
            "NEIGH_STATE within +1% of flags 0 (helper-only ns: ns/lookup - floor)",
            worst_ratio(rows, helper, "NEIGH_STATE", false),
            |v| v <= 1.01,
        ),
        bound_goal(
            "NEIGH_REFRESH on a REACHABLE entry within +2% of flags 0 (helper-only ns)",
            worst_ratio(rows, helper_reachable, "NEIGH_REFRESH", false),
            |v| v <= 1.02,
        ),
        bound_goal(
            "state-aware >= 0.99x baseline (pps)",
            worst_ratio(rows, rate, "state-aware", true),
            |v| v >= 0.99,
        ),
    ];
    // always-neigh: measured and stated, whatever it is.
    let an: Vec<String> = rows
        .iter()
        .filter(|r| rate(r))
        .filter_map(|r| {
            Some(format!(
                "x{:.3} {}",
                r.figure("always-neigh")?.ratio?.median,
                r.label
            ))
        })
        .collect();
    g.push(Goal {
        text: "always-neigh measured (pps vs baseline)".into(),
        met: (!an.is_empty()).then_some(true),
        detail: if an.is_empty() {
            "no figure".into()
        } else {
            an.join("; ")
        },
    });
    for p in ["state-aware", "refresh"] {
        g.push(bound_goal(
            &format!("{p} recovers within 1.10x the kernel stack"),
            worst_ratio(rows, time_to_mac, p, false),
            |v| v <= 1.10,
        ));
    }
    let base: Vec<&Row> = rows.iter().filter(|r| time_to_mac(r)).collect();
    let never = base
        .iter()
        .filter_map(|r| r.figure("baseline"))
        .all(|f| f.value.is_none() && f.note.as_deref().is_some_and(|n| n.starts_with("never")));
    g.push(Goal {
        text: "baseline never recovers".into(),
        met: (!base.is_empty()).then_some(never),
        detail: format!("{} recovery rows", base.len()),
    });
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_its_kernel_build_when_the_guest_was_told_it() {
        let mut r: BenchReport = serde_json::from_str(
            r#"{"machine":{"cores":1,"cpu":"UML","execution":{"kind":"user_mode"}},
                "kernel":"7.3.4+","command":"fibneigh bench","rows":[],"goals":[],"method":[]}"#,
        )
        .expect("a report written before kernel_build reads");
        assert_eq!(r.kernel_build, None);
        assert_eq!(r.kernel_label(), "7.3.4+");
        assert!(!serde_json::to_string(&r).unwrap().contains("kernel_build"));
        r.kernel_build = Some("series 3dd8662660395c1c, profile o2".into());
        assert_eq!(
            r.kernel_label(),
            "7.3.4+ (series 3dd8662660395c1c, profile o2)"
        );
        let back: BenchReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn stats_median_and_range() {
        let s = Stats::of(&[3.0, 1.0, 2.0, f64::NAN]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = Stats::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!((s.spread_pct() - 60.0).abs() < 1e-9);
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn unsupported_cells_are_named_and_other_missing_ones_are_not() {
        let row = |label: &str, figures: Vec<Figure>| Row {
            section: "lookup".into(),
            label: label.into(),
            unit: Unit::NsPerLookup,
            reference: "0".into(),
            figures,
        };
        let rows = vec![
            row(
                "v4 REACHABLE tc",
                vec![
                    figure("0", &[10.0], &[10.0]),
                    Figure::unsupported("NEIGH_STATE", &["NEIGH_STATE"]),
                ],
            ),
            row(
                "v6 STALE xdp",
                vec![Figure::missing("NEIGH_REFRESH", "no sample")],
            ),
        ];
        assert_eq!(unsupported_cells(&rows), ["v4 REACHABLE tc/NEIGH_STATE"]);
    }

    #[test]
    fn ratios_pair_rounds() {
        let f = figure("x", &[110.0, 220.0], &[100.0, 200.0]);
        let r = f.ratio.unwrap();
        assert!((r.median - 1.1).abs() < 1e-12 && r.n == 2);
        assert!(paired_ratios(&[1.0], &[0.0]).is_empty());
    }

    #[test]
    fn goals_read_the_ratios() {
        let row = |label: &str, col: &str, ratio: f64| Row {
            section: "lookup".into(),
            label: label.into(),
            unit: Unit::NsPerLookup,
            reference: "0".into(),
            figures: vec![figure(col, &[ratio * 10.0], &[10.0])],
        };
        let rows = vec![
            row("v4 REACHABLE tc", "NEIGH_STATE", 1.005),
            row("v6 STALE tc", "NEIGH_STATE", 1.02),
            row("v4 REACHABLE tc", "NEIGH_REFRESH", 1.01),
        ];
        let g = goals(&rows);
        assert_eq!(g[0].met, Some(false), "{:?}", g[0]);
        assert!(g[0].detail.contains("v6 STALE tc"));
        assert_eq!(g[1].met, Some(true));
        assert_eq!(g[2].met, None, "no helper-only rows");
        assert_eq!(g[4].met, None, "no forwarding rows");
        assert_eq!(g.last().unwrap().met, None);
    }

    #[test]
    fn rotation_covers_every_start() {
        let v = [1, 2, 3];
        assert_eq!(rotated(&v, 0), vec![1, 2, 3]);
        assert_eq!(rotated(&v, 1), vec![2, 3, 1]);
        assert_eq!(rotated(&v, 5), vec![3, 1, 2]);
        assert!(rotated::<u8>(&[], 3).is_empty());
    }
}
