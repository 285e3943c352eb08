//! One SVG per scenario: per cell, the DUT's neighbour state over time
//! and the flow's deliveries to the old and the new MAC.

use std::fmt::Write as _;

use super::summary;
use crate::scenario::result::CellResult;
use crate::scenario::Scenario;

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
