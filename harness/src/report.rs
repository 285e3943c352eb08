//! Results of matrix cells: what was measured, how it compares with the
//! expectations of the project, and how it is shown (an aligned table,
//! JSON, one SVG timeline per scenario).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use fibneigh_bpf::{nud, ret, Policy};
use serde::Serialize;

use crate::scenario::{Cell, PolicyChoice, Scenario, Support};

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
}

/// One NUD state through the probe program (state-matrix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateRow {
    /// The state the entry was set to (`NONE`: no entry).
    pub set: String,
    /// The state read back before the lookup.
    pub before: String,
    pub rc: i64,
    pub rc_name: String,
    /// `nud_state` as the helper left it (meaningful with NEIGH_STATE).
    pub nud_state: u16,
    pub nud_name: String,
    /// The dmac the helper wrote (SUCCESS only).
    pub dmac: Option<String>,
    /// Whether dmac is the entry's lladdr.
    pub dmac_matches: bool,
    /// The state read back after the lookup (REFRESH moves STALE on).
    pub after: String,
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
            expect: None,
            verdict: Verdict::Unchecked,
        }
    }

    /// Set the expectation and verdict for the kernel described by
    /// `support`.
    pub fn finish(&mut self, support: &Support) {
        self.expect = expectation(&self.cell, support);
        self.verdict = verdict(self);
    }

    /// Slow-path packets: redirect_neigh (tc) or passes to the stack in
    /// its place (XDP).
    pub fn slow_path(&self) -> u64 {
        self.redirect_neigh + self.neigh_pass
    }
}

/// What the project expects of `cell` (docs/design.md and issue 4).
pub fn expectation(cell: &Cell, support: &Support) -> Option<Expect> {
    let needs_patch = matches!(
        cell.policy,
        PolicyChoice::Prog(Policy::StateAware) | PolicyChoice::Prog(Policy::Refresh)
    );
    if needs_patch && !support.patched() {
        return Some(Expect::Unsupported);
    }
    let baseline = cell.policy == PolicyChoice::Prog(Policy::Baseline);
    match cell.scenario {
        Scenario::IpReassign | Scenario::IpReassignAged | Scenario::Gateway => Some(if baseline {
            Expect::DoesNotRecover
        } else {
            Expect::Recovers
        }),
        Scenario::IpReassignGarp | Scenario::Managed => Some(Expect::Recovers),
        Scenario::Permanent => Some(Expect::DoesNotRecover),
        Scenario::ReachableFastpath => {
            (cell.policy == PolicyChoice::Prog(Policy::StateAware)).then_some(Expect::NoSlowPath)
        }
        Scenario::StateMatrix => Some(Expect::LookupsAsDesigned),
    }
}

/// Compare a result with its expectation.
pub fn verdict(r: &CellResult) -> Verdict {
    if let Outcome::Error(e) = &r.outcome {
        return Verdict::Fail(format!("error: {e}"));
    }
    let Some(expect) = r.expect else {
        return Verdict::Unchecked;
    };
    let fail = |why: &str| Verdict::Fail(why.to_string());
    match (expect, &r.outcome) {
        (Expect::Unsupported, Outcome::Unsupported) => {
            // The state matrix shows the rejection itself.
            if r.cell.scenario == Scenario::StateMatrix
                && r.state_rows
                    .iter()
                    .any(|row| row.rc != -(libc::EINVAL as i64))
            {
                fail("a lookup with an unsupported flag did not return -EINVAL")
            } else {
                Verdict::Pass
            }
        }
        (Expect::Unsupported, _) => fail("expected the kernel to reject the policy's flag"),
        (_, Outcome::Unsupported) => fail("the policy's flag is rejected by this kernel"),
        (Expect::Recovers, Outcome::Recovered) => recovered_as_designed(r),
        (Expect::Recovers, _) => fail("did not recover"),
        (Expect::DoesNotRecover, Outcome::NotRecovered) => not_recovered_as_designed(r),
        (Expect::DoesNotRecover, _) => fail("recovered, expected not to"),
        (Expect::NoSlowPath, _) => {
            if r.slow_path() == 0 && r.redirect > 0 {
                Verdict::Pass
            } else {
                fail("the slow path was used (or nothing was redirected)")
            }
        }
        (Expect::LookupsAsDesigned, _) => match r.cell.policy {
            PolicyChoice::Prog(p) => match r.state_rows.iter().find(|row| !row_ok(p, row)) {
                None if !r.state_rows.is_empty() => Verdict::Pass,
                None => fail("no rows"),
                Some(row) => Verdict::Fail(format!(
                    "{}: rc {} nud_state {}",
                    row.set, row.rc_name, row.nud_name
                )),
            },
            PolicyChoice::KernelStack => Verdict::Unchecked,
        },
    }
}

/// Scenarios where nothing announces the move: only the DUT's own
/// re-validation (probes) can find the new MAC.
fn unannounced(s: Scenario) -> bool {
    matches!(
        s,
        Scenario::IpReassign | Scenario::IpReassignAged | Scenario::Gateway
    )
}

/// A recovered cell, checked on what the mechanism guarantees rather than
/// on how long it took (timings under emulation move with the load; how
/// fast each policy recovers is `fibneigh bench`'s recovery figure): the
/// entry ends with the new MAC, the kernel probed for it when nothing
/// announced the move, and the forwarder took the paths its policy says.
fn recovered_as_designed(r: &CellResult) -> Verdict {
    let fail = |why: String| Verdict::Fail(why);
    if r.final_new_mac != Some(true) {
        return fail(format!(
            "recovered, but the entry does not end with the new MAC (final state {})",
            r.final_state.as_deref().unwrap_or("unknown")
        ));
    }
    if unannounced(r.cell.scenario) && r.probes_unicast + r.probes_multicast == 0 {
        return fail("recovered without an ARP/NS probe from the DUT".into());
    }
    match r.cell.policy {
        PolicyChoice::KernelStack => Verdict::Pass,
        PolicyChoice::Prog(_) if r.redirect + r.slow_path() == 0 => {
            fail("the forwarder saw no packet (traffic bypassed it)".into())
        }
        // Not connected after the move: the packet goes to the stack.
        PolicyChoice::Prog(Policy::StateAware | Policy::AlwaysNeigh)
            if unannounced(r.cell.scenario) && r.slow_path() == 0 =>
        {
            fail("recovered without the slow path the policy takes for a stale entry".into())
        }
        PolicyChoice::Prog(Policy::AlwaysNeigh) if r.redirect > 0 => fail(format!(
            "always-neigh used bpf_redirect() for {} packet(s)",
            r.redirect
        )),
        PolicyChoice::Prog(_) => Verdict::Pass,
    }
}

/// A cell that did not recover, as its policy says it must not: baseline
/// kept sending every packet to the cached MAC with bpf_redirect().
fn not_recovered_as_designed(r: &CellResult) -> Verdict {
    if r.cell.policy == PolicyChoice::Prog(Policy::Baseline)
        && unannounced(r.cell.scenario)
        && (r.slow_path() > 0 || r.redirect == 0)
    {
        return Verdict::Fail(format!(
            "baseline did not recover, but not by redirecting to the old MAC \
             ({} redirect, {} slow path)",
            r.redirect,
            r.slow_path()
        ));
    }
    Verdict::Pass
}

/// Whether one state-matrix row is what docs/design.md specifies for policy
/// `p`'s flags on a kernel that accepts them.
pub fn row_ok(p: Policy, row: &StateRow) -> bool {
    let valid = ["REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"]
        .contains(&row.before.as_str());
    match p {
        Policy::AlwaysNeigh => row.rc == ret::SUCCESS,
        Policy::Baseline | Policy::Refresh | Policy::StateAware => {
            let rc_ok = if valid {
                row.rc == ret::SUCCESS && row.dmac_matches
            } else {
                row.rc == ret::NO_NEIGH
            };
            // An entry set to DELAY may move on while it is looked up: the
            // report must be a state the entry was in, before or after.
            let nud_ok =
                p != Policy::StateAware || row.nud_name == row.before || row.nud_name == row.after;
            // REFRESH re-validates a STALE entry (DELAY, or PROBE once its
            // timer ran) and leaves a REACHABLE one alone.
            let refresh_ok = p != Policy::Refresh
                || match row.before.as_str() {
                    "STALE" => row.after == "DELAY" || row.after == "PROBE",
                    "REACHABLE" => row.after == "REACHABLE",
                    _ => true,
                };
            rc_ok && nud_ok && refresh_ok
        }
    }
}

fn state_label(r: &CellResult) -> String {
    match (&r.final_state, r.final_new_mac) {
        (Some(s), Some(true)) => format!("{s} new-mac"),
        (Some(s), Some(false)) => format!("{s} old-mac"),
        (Some(s), None) => s.clone(),
        (None, _) => "-".into(),
    }
}

fn summary(r: &CellResult) -> String {
    if r.cell.scenario == Scenario::StateMatrix && !r.state_rows.is_empty() {
        let rcs: std::collections::BTreeSet<&str> = r
            .state_rows
            .iter()
            .map(|row| row.rc_name.as_str())
            .collect();
        let rcs: Vec<&str> = rcs.into_iter().collect();
        return format!(
            "{} ({} states: {})",
            r.outcome.label(),
            r.state_rows.len(),
            rcs.join("/")
        );
    }
    r.outcome.label()
}

/// One aligned table of `results`.
pub fn render_table(results: &[CellResult]) -> String {
    let header = [
        "SCENARIO",
        "POLICY",
        "FAM",
        "HOOK",
        "RESULT",
        "T_REC_MS",
        "SENT",
        "LOST",
        "PROBES(u/m)",
        "REDIRECT",
        "REDIR_NEIGH",
        "FINAL_NEIGH",
        "CHECK",
    ];
    let dash = |b: bool, s: String| if b { s } else { "-".to_string() };
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in results {
        let traffic = r.cell.scenario != Scenario::StateMatrix
            && !matches!(r.outcome, Outcome::Unsupported | Outcome::Error(_));
        let prog = traffic && r.cell.hook.is_some();
        let slow = match r.cell.hook {
            Some(crate::scenario::HookKind::Xdp) => format!("{}(pass)", r.neigh_pass),
            _ => r.redirect_neigh.to_string(),
        };
        rows.push(vec![
            r.cell.scenario.to_string(),
            r.cell.policy.to_string(),
            format!("v{}", r.cell.family),
            r.cell.hook.map_or("-", |h| h.name()).to_string(),
            summary(r),
            r.recovery_ms.map_or("-".into(), |ms| format!("{ms:.0}")),
            dash(traffic, r.sent.to_string()),
            dash(traffic, r.lost.to_string()),
            dash(
                traffic,
                format!("{}/{}", r.probes_unicast, r.probes_multicast),
            ),
            dash(prog, r.redirect.to_string()),
            dash(prog, slow),
            dash(traffic, state_label(r)),
            match &r.verdict {
                Verdict::Pass => "ok".into(),
                Verdict::Fail(why) => format!("FAIL ({why})"),
                Verdict::Unchecked => "-".into(),
            },
        ]);
    }
    let cols = header.len();
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == cols {
                line.push_str(cell);
            } else {
                let pad = widths[c] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The details `fibneigh run` prints under the table.
pub fn render_details(r: &CellResult) -> String {
    let mut out = String::new();
    if !r.missing_flags.is_empty() {
        let _ = writeln!(
            out,
            "not accepted by this kernel: {}",
            r.missing_flags.join(", ")
        );
    }
    if !r.state_rows.is_empty() {
        let _ = writeln!(
            out,
            "{:<11} {:<11} {:<13} {:<12} {:<18} {:<11}",
            "SET", "BEFORE", "RC", "NUD_STATE", "DMAC", "AFTER"
        );
        for row in &r.state_rows {
            let _ = writeln!(
                out,
                "{:<11} {:<11} {:<13} {:<12} {:<18} {:<11}",
                row.set,
                row.before,
                row.rc_name,
                row.nud_name,
                row.dmac.as_deref().unwrap_or("-"),
                row.after
            );
        }
    }
    if r.cell.scenario != Scenario::StateMatrix && r.outcome != Outcome::Unsupported {
        let _ = writeln!(
            out,
            "delivered: {} to the old MAC, {} to the new MAC; counters: redirect {} redirect_neigh {} pass {} (to the stack in place of redirect_neigh: {}) -EINVAL lookups {}",
            r.delivered_old, r.delivered_new, r.redirect, r.redirect_neigh, r.pass, r.neigh_pass, r.lookups_einval
        );
        if let Some(t) = &r.timeline {
            let states: Vec<String> = t
                .states
                .iter()
                .map(|s| {
                    let mac = match s.new_mac {
                        Some(true) => " new",
                        Some(false) => " old",
                        None => "",
                    };
                    format!("{}ms {}{mac}", s.t_ms, s.state)
                })
                .collect();
            let _ = writeln!(
                out,
                "move at {}; neighbour: {}",
                t.move_ms.map_or("-".into(), |m| format!("{m}ms")),
                states.join(" -> ")
            );
        }
    }
    if !r.sysctls.is_empty() {
        let s: Vec<String> = r.sysctls.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "sysctls: {}", s.join(" "));
    }
    let _ = writeln!(out, "took {} ms", r.duration_ms);
    out
}

/// Everything `matrix --json` writes.
#[derive(Debug, Serialize)]
pub struct MatrixReport<'a> {
    pub kernel_release: String,
    pub support: Support,
    pub options: crate::scenario::Options,
    pub quick: bool,
    pub cells: &'a [CellResult],
    pub failures: usize,
}

// ---- SVG ---------------------------------------------------------------------

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The colour of a neighbour state in the timelines.
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

/// One SVG for `scenario`: per cell, the DUT's neighbour state over time
/// (a coloured band, with a thin strip under it: grey while the entry
/// holds the old MAC, blue once it holds the new one) and flow packets
/// delivered per bin (to the old MAC in red, dark red once that is a black
/// hole after the move; to the new MAC in blue), with the move dashed.
pub fn render_svg(scenario: Scenario, results: &[CellResult]) -> String {
    let rows: Vec<&CellResult> = results
        .iter()
        .filter(|r| r.cell.scenario == scenario)
        .collect();
    let (left, right, top, row_h) = (230.0, 20.0, 70.0, 46.0);
    let plot_w = 900.0;
    let width = left + plot_w + right;
    let height = top + row_h * rows.len().max(1) as f64 + 30.0;
    let end_ms = rows
        .iter()
        .filter_map(|r| r.timeline.as_ref().map(|t| t.end_ms))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |ms: f64| left + plot_w * (ms / end_ms).clamp(0.0, 1.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{width:.0}" height="{height:.0}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="15" font-weight="bold">{}: neighbour state and deliveries per cell</text>"#,
        xml_escape(scenario.name())
    );
    // Legend.
    let mut lx = 10.0;
    for st in [
        "REACHABLE",
        "STALE",
        "DELAY",
        "PROBE",
        "FAILED",
        "INCOMPLETE",
        "PERMANENT",
        "NONE",
    ] {
        let _ = writeln!(
            s,
            r##"<rect x="{lx:.0}" y="32" width="12" height="10" fill="{}" stroke="#666" stroke-width="0.5"/><text x="{:.0}" y="41">{st}</text>"##,
            state_colour(st),
            lx + 15.0
        );
        lx += 22.0 + 7.0 * st.len() as f64;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{lx:.0}" y="32" width="12" height="10" fill="#e53935"/><text x="{:.0}" y="41">to old MAC</text><rect x="{:.0}" y="32" width="12" height="10" fill="#7f0000"/><text x="{:.0}" y="41">to old MAC after the move (lost)</text><rect x="{:.0}" y="32" width="12" height="10" fill="#1e88e5"/><text x="{:.0}" y="41">to new MAC</text>"##,
        lx + 15.0,
        lx + 85.0,
        lx + 100.0,
        lx + 280.0,
        lx + 295.0
    );
    // Time axis.
    let axis_y = top + row_h * rows.len().max(1) as f64 + 5.0;
    let _ = writeln!(
        s,
        r##"<line x1="{left:.0}" y1="{axis_y:.0}" x2="{:.0}" y2="{axis_y:.0}" stroke="#333"/>"##,
        left + plot_w
    );
    let step = if end_ms > 4000.0 { 1000.0 } else { 500.0 };
    let mut t = 0.0;
    while t <= end_ms {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{axis_y:.0}" x2="{0:.1}" y2="{1:.0}" stroke="#333"/><text x="{0:.1}" y="{2:.0}" text-anchor="middle">{3}</text>"##,
            x(t),
            axis_y + 4.0,
            axis_y + 16.0,
            format_args!("{:.1}s", t / 1000.0)
        );
        t += step;
    }
    for (i, r) in rows.iter().enumerate() {
        let y0 = top + row_h * i as f64;
        let label = format!(
            "{} v{} {}",
            r.cell.policy,
            r.cell.family,
            r.cell.hook.map_or("", |h| h.name())
        );
        let _ = writeln!(
            s,
            r##"<text x="10" y="{:.0}">{}</text><text x="10" y="{:.0}" fill="#555">{}</text>"##,
            y0 + 16.0,
            xml_escape(label.trim()),
            y0 + 30.0,
            xml_escape(&summary(r))
        );
        let Some(tl) = &r.timeline else { continue };
        // State band.
        let band_y = y0 + 4.0;
        for (j, st) in tl.states.iter().enumerate() {
            let t0 = st.t_ms as f64;
            let t1 = tl
                .states
                .get(j + 1)
                .map_or(tl.end_ms as f64, |n| n.t_ms as f64);
            let w = (x(t1) - x(t0)).max(0.5);
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{band_y:.0}" width="{w:.1}" height="12" fill="{}" stroke="#666" stroke-width="0.3"><title>{} {}</title></rect>"##,
                x(t0),
                state_colour(&st.state),
                xml_escape(&st.state),
                match st.new_mac {
                    Some(true) => "new MAC",
                    Some(false) => "old MAC",
                    None => "",
                }
            );
            if let Some(new) = st.new_mac {
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{:.0}" width="{w:.1}" height="3" fill="{}"/>"#,
                    x(t0),
                    band_y + 13.0,
                    if new { "#1e88e5" } else { "#757575" }
                );
            }
        }
        // Deliveries per bin.
        let base = y0 + 34.0;
        let max_bin = tl
            .to_old
            .iter()
            .chain(&tl.to_new)
            .copied()
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let bw = (x(tl.bin_ms as f64) - x(0.0)).max(0.5);
        let moved_bin = tl.move_ms.map(|m| m / tl.bin_ms.max(1));
        for (old, series) in [(true, &tl.to_old), (false, &tl.to_new)] {
            for (b, &n) in series.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let colour = match (old, moved_bin) {
                    (false, _) => "#1e88e5",
                    (true, Some(m)) if b as u64 > m => "#7f0000",
                    (true, _) => "#e53935",
                };
                let h = 14.0 * f64::from(n) / max_bin;
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{:.1}" width="{bw:.1}" height="{h:.1}" fill="{colour}"/>"#,
                    x(b as f64 * tl.bin_ms as f64),
                    base - h
                );
            }
        }
        let _ = writeln!(
            s,
            r##"<line x1="{left:.0}" y1="{base:.0}" x2="{:.0}" y2="{base:.0}" stroke="#bbb"/>"##,
            left + plot_w
        );
        if let Some(m) = tl.move_ms {
            let _ = writeln!(
                s,
                r##"<line x1="{0:.1}" y1="{1:.0}" x2="{0:.1}" y2="{2:.0}" stroke="black" stroke-dasharray="3,2"/>"##,
                x(m as f64),
                y0 + 1.0,
                y0 + row_h - 4.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// `nud::name` for a state value.
pub fn nud_name(state: u16) -> String {
    nud::name(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Family, HookKind};

    fn cell(s: Scenario, p: PolicyChoice) -> Cell {
        Cell::new(s, p, Family::V4, HookKind::Tc)
    }

    const UNPATCHED: Support = Support {
        neigh_state: false,
        neigh_refresh: false,
        skip_neigh: true,
    };
    const PATCHED: Support = Support {
        neigh_state: true,
        neigh_refresh: true,
        skip_neigh: true,
    };

    /// A result with what a healthy run of `p` observes for outcome `o`.
    fn result(s: Scenario, p: PolicyChoice, o: Outcome, support: &Support) -> CellResult {
        let mut r = CellResult::new(cell(s, p), o.clone());
        match o {
            Outcome::Recovered => {
                r.final_new_mac = Some(true);
                r.probes_unicast = 1;
            }
            Outcome::NotRecovered => r.final_new_mac = Some(false),
            _ => {}
        }
        match p {
            PolicyChoice::Prog(Policy::AlwaysNeigh) => r.redirect_neigh = 20,
            PolicyChoice::Prog(Policy::StateAware) => {
                r.redirect = 10;
                r.redirect_neigh = 10;
            }
            PolicyChoice::Prog(_) => r.redirect = 20,
            PolicyChoice::KernelStack => {}
        }
        r.finish(support);
        r
    }

    fn rejudged(mut r: CellResult, change: impl FnOnce(&mut CellResult)) -> Verdict {
        change(&mut r);
        verdict(&r)
    }

    #[test]
    fn recovery_is_judged_on_behaviour_not_time() {
        use PolicyChoice::*;
        let aware = result(
            Scenario::IpReassign,
            Prog(Policy::StateAware),
            Outcome::Recovered,
            &PATCHED,
        );
        assert_eq!(aware.verdict, Verdict::Pass);
        // However slow: no time enters the verdict.
        assert_eq!(
            rejudged(aware.clone(), |r| r.recovery_ms = Some(1e9)),
            Verdict::Pass
        );
        // The entry must end with the new MAC.
        let v = rejudged(aware.clone(), |r| r.final_new_mac = Some(false));
        assert!(matches!(v, Verdict::Fail(_)), "{v:?}");
        // Nothing announced the move: the DUT must have probed.
        let v = rejudged(aware.clone(), |r| r.probes_unicast = 0);
        assert!(matches!(v, Verdict::Fail(_)), "{v:?}");
        // state-aware takes the slow path for the stale entry.
        let v = rejudged(aware.clone(), |r| r.redirect_neigh = 0);
        assert!(matches!(v, Verdict::Fail(_)), "{v:?}");
        // A forwarder that saw nothing did not do the recovering.
        let refresh = result(
            Scenario::IpReassign,
            Prog(Policy::Refresh),
            Outcome::Recovered,
            &PATCHED,
        );
        assert_eq!(refresh.verdict, Verdict::Pass);
        let v = rejudged(refresh, |r| r.redirect = 0);
        assert!(matches!(v, Verdict::Fail(_)), "{v:?}");
        // always-neigh never uses bpf_redirect().
        let always = result(
            Scenario::Gateway,
            Prog(Policy::AlwaysNeigh),
            Outcome::Recovered,
            &PATCHED,
        );
        assert_eq!(always.verdict, Verdict::Pass);
        let v = rejudged(always, |r| r.redirect = 1);
        assert!(matches!(v, Verdict::Fail(_)), "{v:?}");
        // An announced move needs no probe.
        let garp = result(
            Scenario::IpReassignGarp,
            Prog(Policy::Baseline),
            Outcome::Recovered,
            &PATCHED,
        );
        assert_eq!(rejudged(garp, |r| r.probes_unicast = 0), Verdict::Pass);
        // Baseline's failure is bpf_redirect() to the old MAC, nothing else.
        let base = result(
            Scenario::IpReassign,
            Prog(Policy::Baseline),
            Outcome::NotRecovered,
            &PATCHED,
        );
        assert_eq!(base.verdict, Verdict::Pass);
        let v = rejudged(base, |r| r.redirect_neigh = 3);
        assert!(matches!(v, Verdict::Fail(_)), "{v:?}");
    }

    #[test]
    fn classification_against_expectations() {
        use PolicyChoice::*;
        let base = Prog(Policy::Baseline);
        let aware = Prog(Policy::StateAware);
        let r = result(
            Scenario::IpReassign,
            base,
            Outcome::NotRecovered,
            &UNPATCHED,
        );
        assert_eq!(r.verdict, Verdict::Pass);
        let r = result(Scenario::IpReassign, base, Outcome::Recovered, &UNPATCHED);
        assert!(matches!(r.verdict, Verdict::Fail(_)));
        let r = result(
            Scenario::IpReassign,
            KernelStack,
            Outcome::Recovered,
            &UNPATCHED,
        );
        assert_eq!(r.verdict, Verdict::Pass);
        let r = result(
            Scenario::IpReassign,
            Prog(Policy::AlwaysNeigh),
            Outcome::NotRecovered,
            &UNPATCHED,
        );
        assert!(matches!(r.verdict, Verdict::Fail(_)));
        // Unsupported is right on an unpatched kernel, wrong on a patched one.
        let r = result(
            Scenario::IpReassign,
            aware,
            Outcome::Unsupported,
            &UNPATCHED,
        );
        assert_eq!(r.verdict, Verdict::Pass);
        let r = result(Scenario::IpReassign, aware, Outcome::Unsupported, &PATCHED);
        assert!(matches!(r.verdict, Verdict::Fail(_)));
        let r = result(Scenario::IpReassign, aware, Outcome::Recovered, &PATCHED);
        assert_eq!(r.verdict, Verdict::Pass);
        // Errors always fail.
        let r = result(
            Scenario::Permanent,
            base,
            Outcome::Error("x".into()),
            &PATCHED,
        );
        assert!(matches!(r.verdict, Verdict::Fail(_)));
        // Fast path: only state-aware is checked.
        let mut r = CellResult::new(cell(Scenario::ReachableFastpath, aware), Outcome::Measured);
        r.redirect = 200;
        r.finish(&PATCHED);
        assert_eq!(r.verdict, Verdict::Pass);
        r.redirect_neigh = 1;
        r.finish(&PATCHED);
        assert!(matches!(r.verdict, Verdict::Fail(_)));
        let r = result(
            Scenario::ReachableFastpath,
            base,
            Outcome::Measured,
            &PATCHED,
        );
        assert_eq!(r.verdict, Verdict::Unchecked);
    }

    fn row(set: &str, rc: i64, nud: &str, dmac_matches: bool) -> StateRow {
        StateRow {
            set: set.into(),
            before: set.into(),
            rc,
            rc_name: ret::name(rc),
            nud_state: 0,
            nud_name: nud.into(),
            dmac: None,
            dmac_matches,
            after: set.into(),
        }
    }

    #[test]
    fn state_matrix_rows() {
        assert!(row_ok(Policy::StateAware, &row("STALE", 0, "STALE", true)));
        assert!(!row_ok(Policy::StateAware, &row("STALE", 0, "NONE", true)));
        let mut moved = row("DELAY", 0, "REACHABLE", true);
        moved.after = "REACHABLE".into();
        assert!(row_ok(Policy::StateAware, &moved));
        assert!(row_ok(Policy::Baseline, &row("STALE", 0, "NONE", true)));
        assert!(!row_ok(Policy::Refresh, &row("STALE", 0, "NONE", true)));
        let mut kicked = row("STALE", 0, "NONE", true);
        kicked.after = "DELAY".into();
        assert!(row_ok(Policy::Refresh, &kicked));
        assert!(row_ok(Policy::Baseline, &row("FAILED", 7, "NONE", false)));
        assert!(!row_ok(Policy::Baseline, &row("FAILED", 0, "NONE", false)));
        assert!(row_ok(
            Policy::AlwaysNeigh,
            &row("FAILED", 0, "NONE", false)
        ));
        // Unpatched: every NEIGH_STATE lookup is -EINVAL, which passes as
        // "unsupported".
        let mut r = CellResult::new(
            cell(
                Scenario::StateMatrix,
                PolicyChoice::Prog(Policy::StateAware),
            ),
            Outcome::Unsupported,
        );
        r.state_rows = vec![row("STALE", -22, "NONE", false)];
        r.finish(&UNPATCHED);
        assert_eq!(r.verdict, Verdict::Pass);
        r.state_rows.push(row("STALE", 0, "NONE", false));
        r.finish(&UNPATCHED);
        assert!(matches!(r.verdict, Verdict::Fail(_)));
    }

    fn sample_results() -> Vec<CellResult> {
        let mut a = result(
            Scenario::IpReassign,
            PolicyChoice::Prog(Policy::AlwaysNeigh),
            Outcome::Recovered,
            &UNPATCHED,
        );
        a.recovery_ms = Some(1234.4);
        a.sent = 500;
        a.lost = 250;
        a.final_state = Some("REACHABLE".into());
        a.final_new_mac = Some(true);
        a.timeline = Some(Timeline {
            move_ms: Some(400),
            end_ms: 2000,
            bin_ms: 50,
            to_old: vec![5; 8],
            to_new: vec![0, 0, 0, 3, 10],
            states: vec![
                StateSample {
                    t_ms: 0,
                    state: "REACHABLE".into(),
                    new_mac: Some(false),
                },
                StateSample {
                    t_ms: 400,
                    state: "STALE".into(),
                    new_mac: Some(false),
                },
            ],
        });
        let b = result(
            Scenario::IpReassign,
            PolicyChoice::Prog(Policy::StateAware),
            Outcome::Unsupported,
            &UNPATCHED,
        );
        vec![a, b]
    }

    #[test]
    fn the_table_is_aligned() {
        let t = render_table(&sample_results());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        let col = |l: &str| l.find("v4").or_else(|| l.find("FAM"));
        assert_eq!(col(lines[0]), col(lines[1]));
        assert_eq!(col(lines[1]), col(lines[2]));
        assert!(lines[1].contains("recovered") && lines[1].contains("1234"));
        assert!(lines[2].contains("unsupported by this kernel"));
        assert!(lines[2].trim_end().ends_with("ok"));
    }

    #[test]
    fn json_has_the_fields() {
        let rs = sample_results();
        let v = serde_json::to_value(&rs).unwrap();
        assert_eq!(v[0]["scenario"], "ip-reassign");
        assert_eq!(v[0]["policy"], "always-neigh");
        assert_eq!(v[0]["family"], "4");
        assert_eq!(v[0]["hook"], "tc");
        assert_eq!(v[0]["outcome"]["status"], "recovered");
        assert_eq!(v[0]["verdict"], "pass");
        assert_eq!(v[1]["outcome"]["status"], "unsupported");
        assert_eq!(v[0]["timeline"]["to_new"][4], 10);
    }

    #[test]
    fn svg_is_well_formed() {
        let svg = render_svg(Scenario::IpReassign, &sample_results());
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        // Balanced tags: every opened element is closed or self-closed.
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg.as_str();
        while let Some(i) = rest.find('<') {
            let j = rest[i..].find('>').expect("tag closes") + i;
            let tag = &rest[i + 1..j];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "closing {name}");
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().unwrap().to_string();
                stack.push(name);
            }
            rest = &rest[j + 1..];
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
        assert!(!svg.contains("NaN"));
        assert_eq!(xml_escape("a<b&\"c\">"), "a&lt;b&amp;&quot;c&quot;&gt;");
    }
}
