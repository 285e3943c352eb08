//! Showing a [`BenchReport`]: one aligned table (rows: measurement;
//! columns: flag or policy; cells: median, spread, ratio), the goals, and
//! an SVG plot of ns per lookup and packets per second per policy.

use std::fmt::Write as _;

use super::{BenchReport, Figure, Goal, Row, Stats, Unit};
use crate::present::svg::{self as draw, Canvas, LegendStyle};
use crate::present::{self, Table};

/// Shown instead of absolute times on an emulated CPU.
pub const EMULATED: &str = "emulated (TCG)";

fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn ratio(r: &Stats) -> String {
    if r.n > 1 {
        format!("x{:.3} ±{:.1}%", r.median, r.spread_pct())
    } else {
        format!("x{:.3}", r.median)
    }
}

/// One cell's text. `hide_values`: show ratios only (emulated CPU, a time
/// unit).
pub fn cell_text(f: &Figure, row: &Row, hide_values: bool, marker: Option<usize>) -> String {
    let mark = marker.map(|m| format!(" [{m}]")).unwrap_or_default();
    let Some(v) = &f.value else {
        return format!("-{mark}");
    };
    let is_ref = !row.reference.is_empty() && f.column == row.reference;
    let r = match (&f.ratio, is_ref) {
        (_, true) => "(ref)".to_string(),
        (Some(r), false) => ratio(r),
        (None, false) => String::new(),
    };
    if hide_values {
        if is_ref {
            return format!("x1 (ref){mark}");
        }
        return format!("{r}{mark}");
    }
    let spread = if v.n > 1 {
        format!(" ±{:.1}%", v.spread_pct())
    } else {
        String::new()
    };
    let r = if r.is_empty() { r } else { format!(" {r}") };
    format!("{}{spread}{r}{mark}", num(v.median))
}

/// The whole report as text: heading, one table per section, notes,
/// goals, method.
pub fn render_table(report: &BenchReport) -> String {
    let emulated = report.machine.execution.emulated();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fibneigh bench: kernel {}, {} cores, {}, {}",
        report.kernel_label(),
        report.machine.cores,
        report.machine.cpu,
        report.machine.execution.label()
    );
    if emulated {
        let _ = writeln!(
            out,
            "{EMULATED}: times are shown as ratios only (absolute figures are in the JSON, labelled)"
        );
    }
    let mut notes: Vec<String> = Vec::new();
    let mut sections: Vec<&str> = Vec::new();
    for r in &report.rows {
        if !sections.contains(&r.section.as_str()) {
            sections.push(&r.section);
        }
    }
    for section in sections {
        let rows: Vec<&Row> = report
            .rows
            .iter()
            .filter(|r| r.section == section)
            .collect();
        let mut columns: Vec<&str> = Vec::new();
        for r in &rows {
            for f in &r.figures {
                if !columns.contains(&f.column.as_str()) {
                    columns.push(&f.column);
                }
            }
        }
        let mut head = vec![section.to_string(), "unit".to_string()];
        head.extend(columns.iter().map(|c| c.to_string()));
        let mut table = Table::new().header(head).rule();
        for r in &rows {
            let hide = emulated && r.unit != Unit::Packets;
            let unit = if hide {
                "ratio".to_string()
            } else {
                r.unit.label().to_string()
            };
            let mut line = vec![r.label.clone(), unit];
            for c in &columns {
                let text = match r.figure(c) {
                    Some(f) => {
                        let marker = f.note.as_ref().map(|n| {
                            if let Some(i) = notes.iter().position(|m| m == n) {
                                i + 1
                            } else {
                                notes.push(n.clone());
                                notes.len()
                            }
                        });
                        cell_text(f, r, hide, marker)
                    }
                    None => String::new(),
                };
                line.push(text);
            }
            table.row(line);
        }
        let _ = writeln!(out);
        out.push_str(&table.render());
    }
    if !notes.is_empty() {
        let _ = writeln!(out);
        for (i, n) in notes.iter().enumerate() {
            let _ = writeln!(out, "[{}] {n}", i + 1);
        }
    }
    let _ = writeln!(out, "\ncells: median ±half the range in % (samples), xratio to the row's (ref) column from the same rounds");
    if !report.goals.is_empty() {
        let _ = writeln!(out, "\ngoals:");
        let mut goals = Table::new().indent(2);
        for g in &report.goals {
            goals.row([
                goal_mark(g).to_string(),
                format!("{}: {}", g.text, g.detail),
            ]);
        }
        out.push_str(&goals.render());
    }
    let _ = writeln!(out, "\nmethod:");
    for m in &report.method {
        let _ = writeln!(out, "  - {m}");
    }
    out
}

fn goal_mark(g: &Goal) -> &'static str {
    match g.met {
        Some(true) => "[met]",
        Some(false) => "[NOT met]",
        None => "[not measured]",
    }
}

/// One bar of a panel.
struct Bar {
    group: String,
    column: String,
    value: f64,
    lo: f64,
    hi: f64,
}

/// Bars for `section`'s rows of `unit`: values, or ratios when `ratios`.
fn bars(report: &BenchReport, section: &str, unit: Unit, ratios: bool) -> Vec<Bar> {
    let mut out = Vec::new();
    for r in report
        .rows
        .iter()
        .filter(|r| r.section == section && r.unit == unit)
    {
        for f in &r.figures {
            let s = if ratios { f.ratio } else { f.value };
            if let Some(s) = s {
                out.push(Bar {
                    group: r.label.clone(),
                    column: f.column.clone(),
                    value: s.median,
                    lo: s.min,
                    hi: s.max,
                });
            }
        }
    }
    out
}

/// A y-axis label: 0, or the tick with as many decimals as the step
/// needs, in k or M for large values; `×` in front for ratios.
fn tick_label(v: f64, ticks: &[f64], ratios: bool) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if ratios {
        let d = draw::tick_decimals(ticks).max(1);
        return format!("×{v:.d$}");
    }
    let top = ticks.last().copied().unwrap_or(0.0);
    let (div, suffix) = if top >= 1e6 {
        (1e6, "M")
    } else if top >= 1e4 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let scaled: Vec<f64> = ticks.iter().map(|t| t / div).collect();
    let d = draw::tick_decimals(&scaled);
    format!("{:.d$}{suffix}", v / div)
}

/// A grouped bar chart with min..max whiskers, in the box at (`x`, `y`)
/// of `w` x `h`: title, legend row, plot with round y ticks, rotated
/// group labels below. `ratios`: the bars are ratios to a reference
/// column, marked by a labelled line at ×1.0.
fn panel(
    c: &mut Canvas,
    (x, y): (f64, f64),
    (w, h): (f64, f64),
    title: &str,
    bars: &[Bar],
    ratios: bool,
) {
    c.add(draw::text(x + 10.0, y + 12.0, title).set("font-weight", "bold"));
    if bars.is_empty() {
        c.add(draw::text(x + 10.0, y + 40.0, "nothing measured"));
        return;
    }
    let mut groups: Vec<&str> = Vec::new();
    let mut columns: Vec<&str> = Vec::new();
    for b in bars {
        if !groups.contains(&b.group.as_str()) {
            groups.push(&b.group);
        }
        if !columns.contains(&b.column.as_str()) {
            columns.push(&b.column);
        }
    }
    let highest = bars
        .iter()
        .map(|b| b.hi.max(b.value))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    // The reference line must be inside the plot.
    let highest = if ratios { highest.max(1.0) } else { highest };
    let ticks = draw::nice_ticks(highest * 1.05, 4);
    let top = ticks.last().copied().unwrap_or(1.0);
    let (px, py, pw, ph) = (x + 70.0, y + 46.0, w - 85.0, h - 150.0);
    let scale = |v: f64| py + ph - (v / top * ph).clamp(0.0, ph);
    draw::y_grid(c, (px, px + pw), &ticks, scale, |v| {
        tick_label(v, &ticks, ratios)
    });
    let gw = pw / groups.len() as f64;
    let bw = (gw * 0.8) / columns.len() as f64;
    for (gi, g) in groups.iter().enumerate() {
        let gx = px + gw * gi as f64 + gw * 0.1;
        for b in bars.iter().filter(|b| b.group == *g) {
            let ci = columns.iter().position(|c| *c == b.column).unwrap_or(0);
            let bx = gx + bw * ci as f64;
            let (y1, y2) = (scale(b.value), scale(0.0));
            c.add(
                draw::rect(
                    bx,
                    y1,
                    (bw - 1.0).max(1.0),
                    y2 - y1,
                    present::colour(&b.column),
                )
                .add(draw::tooltip(format!(
                    "{g}: {} = {}",
                    b.column,
                    num(b.value)
                ))),
            );
            let cx = bx + bw / 2.0;
            c.add(draw::line(cx, scale(b.lo), cx, scale(b.hi), "black"));
        }
        let (lx, ly) = (gx + gw * 0.4, py + ph + 14.0);
        c.add(
            draw::text(lx, ly, *g)
                .set("text-anchor", "end")
                .set("transform", format!("rotate(-30 {lx:.1} {ly:.1})")),
        );
    }
    if ratios {
        draw::reference_line(c, (px, px + pw), scale(1.0), "×1.0 (reference)");
    }
    let entries: Vec<(&str, &str)> = columns
        .iter()
        .map(|col| (present::colour(col), *col))
        .collect();
    draw::legend(c, x + 10.0, y + 30.0, &entries, LegendStyle::PLAIN);
}

/// Two panels: ns per lookup by flag, packets per second by policy
/// (ratios to the reference column on an emulated CPU, with the ×1.0
/// line drawn).
pub fn render_svg(report: &BenchReport) -> String {
    let emulated = report.machine.execution.emulated();
    let (w, h) = (1100.0, 420.0);
    // The kernel's build, when known, on a line of its own: it is long.
    let top = if report.kernel_build.is_some() {
        40.0
    } else {
        26.0
    };
    let mut c = Canvas::new(w, h + top + 4.0);
    c.title(
        10.0,
        16.0,
        draw::FONT_SIZE,
        format!(
            "fibneigh bench: kernel {}, {} cores, {}; bars: median, whiskers: min..max",
            report.kernel,
            report.machine.cores,
            report.machine.execution.label()
        ),
    );
    if let Some(build) = &report.kernel_build {
        c.title(
            10.0,
            30.0,
            draw::FONT_SIZE,
            format!("kernel build: {build}"),
        );
    }
    let suffix = if emulated {
        " — ratio to reference, emulated (TCG)"
    } else {
        ""
    };
    let lookups = bars(report, "lookup", Unit::NsPerLookup, emulated);
    let rates = bars(report, "forwarding", Unit::Pps, emulated);
    let half = w / 2.0;
    panel(
        &mut c,
        (0.0, top),
        (half, h),
        &format!("bpf_fib_lookup(): ns per lookup by flags{suffix}"),
        &lookups,
        emulated,
    );
    panel(
        &mut c,
        (half, top),
        (half, h),
        &format!("forwarding: packets per second by policy{suffix}"),
        &rates,
        emulated,
    );
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{figure, Execution, Machine};

    fn report(execution: Execution) -> BenchReport {
        let lookup = Row {
            section: "lookup".into(),
            label: "v4 REACHABLE tc".into(),
            unit: Unit::NsPerLookup,
            reference: "0".into(),
            figures: vec![
                figure("0", &[40.0, 41.0, 40.5], &[40.0, 41.0, 40.5]),
                figure("NEIGH_STATE", &[40.2, 41.1, 40.6], &[40.0, 41.0, 40.5]),
                Figure::missing(
                    "NEIGH_REFRESH",
                    "unsupported by this kernel (NEIGH_REFRESH)",
                ),
            ],
        };
        let rate = Row {
            section: "forwarding".into(),
            label: "xdp 1 flow rate".into(),
            unit: Unit::Pps,
            reference: "baseline".into(),
            figures: vec![
                figure("baseline", &[1.0e6, 1.1e6], &[1.0e6, 1.1e6]),
                figure("state-aware", &[0.99e6, 1.1e6], &[1.0e6, 1.1e6]),
            ],
        };
        BenchReport {
            machine: Machine {
                cores: 2,
                cpu: "test <cpu>".into(),
                execution,
            },
            kernel: "7.3.4+".into(),
            kernel_build: None,
            command: "fibneigh bench".into(),
            rows: vec![lookup, rate],
            goals: vec![Goal {
                text: "NEIGH_STATE within +1% of flags 0".into(),
                met: Some(true),
                detail: "x1.002".into(),
            }],
            method: vec!["m".into()],
        }
    }

    #[test]
    fn table_has_values_ratios_and_notes() {
        let t = render_table(&report(Execution::BareMetal));
        assert!(t.contains("40.5 ±1.2% (ref)"), "{t}");
        assert!(t.contains("x1.002"), "{t}");
        assert!(
            t.contains("- [1]") && t.contains("[1] unsupported by this kernel"),
            "{t}"
        );
        assert!(t.contains("[met]"));
    }

    #[test]
    fn emulated_tables_show_no_absolute_times() {
        let t = render_table(&report(Execution::Emulated));
        assert!(t.contains(EMULATED));
        assert!(!t.contains("40.5"), "{t}");
        assert!(!t.contains("1.05M"), "{t}");
        assert!(t.contains("x1 (ref)"));
    }

    #[test]
    fn a_report_survives_its_json() {
        let r = report(Execution::Virtualized("KVMKVMKVM".into()));
        let back: BenchReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        // Floats may come back one ulp off; what is shown must not change.
        assert_eq!(render_table(&back), render_table(&r));
        assert_eq!(render_svg(&back), render_svg(&r));
        assert_eq!(back.rows.len(), r.rows.len());
        let e: BenchReport =
            serde_json::from_str(&serde_json::to_string(&report(Execution::Emulated)).unwrap())
                .unwrap();
        assert!(e.machine.execution.emulated());
    }

    #[test]
    fn svg_is_well_formed_and_escaped() {
        for e in [Execution::BareMetal, Execution::Emulated] {
            let svg = render_svg(&report(e));
            assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
            assert!(svg.matches("<rect").count() >= 5);
            assert!(!svg.contains("NaN"));
            let opens = svg.matches("<text").count();
            assert_eq!(opens, svg.matches("</text>").count());
        }
    }
}
