//! One SVG per scenario: per cell, the DUT's neighbour state over time
//! and the flow's deliveries to the old and the new MAC.

use super::summary;
use crate::present::svg::{self as draw, Canvas, LegendStyle};
use crate::present::{self, state_colour};
use crate::scenario::result::CellResult;
use crate::scenario::{Family, Scenario};
use fibneigh_bpf::Hook;

/// The states in the legend, in order.
const LEGEND_STATES: [&str; 8] = [
    "REACHABLE",
    "STALE",
    "DELAY",
    "PROBE",
    "FAILED",
    "INCOMPLETE",
    "PERMANENT",
    "NONE",
];

/// One SVG for `scenario`: per cell, the DUT's neighbour state over time
/// (a coloured band, with a thin strip under it: grey while the entry
/// holds the old MAC, blue once it holds the new one) and flow packets
/// delivered per bin (to the old MAC in red, dark red once that is a black
/// hole after the move; to the new MAC in blue), with the move dashed.
/// Each cell's label starts with its policy's colour.
pub fn render_svg(scenario: Scenario, results: &[CellResult]) -> String {
    let rows: Vec<&CellResult> = results
        .iter()
        .filter(|r| r.cell.scenario == scenario)
        .collect();
    render_rows(
        &format!(
            "{}: neighbour state and deliveries per cell",
            scenario.name()
        ),
        &rows,
    )
}

/// The picture to show first: ip-reassign over IPv4 in XDP (where
/// programs have no `bpf_redirect_neigh()`), every policy and the kernel
/// stack. None when the results hold no such cell.
pub fn render_headline(results: &[CellResult]) -> Option<String> {
    let rows: Vec<&CellResult> = results
        .iter()
        .filter(|r| {
            r.cell.scenario == Scenario::IpReassign
                && r.cell.family == Family::V4
                && r.cell.hook.is_none_or(|h| h == Hook::Xdp)
                && r.timeline.is_some()
        })
        .collect();
    (!rows.is_empty()).then(|| {
        render_rows(
            "ip-reassign, IPv4, XDP: the service's IP moves to a new MAC, nothing announces it",
            &rows,
        )
    })
}

/// The timelines of `rows` under `title`.
fn render_rows(title: &str, rows: &[&CellResult]) -> String {
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
    let mut c = Canvas::new(width, height);
    c.title(10.0, 20.0, 15.0, title.to_string());
    let states: Vec<(&str, &str)> = LEGEND_STATES
        .iter()
        .map(|s| (state_colour(s), *s))
        .collect();
    let lx = draw::legend(&mut c, 10.0, 41.0, &states, LegendStyle::OUTLINED);
    draw::legend(
        &mut c,
        lx + 10.0,
        41.0,
        &[
            (present::TO_OLD_MAC, "to old MAC"),
            (present::TO_OLD_MAC_LOST, "to old MAC after the move (lost)"),
            (present::TO_NEW_MAC, "to new MAC"),
        ],
        LegendStyle {
            outline: false,
            ..LegendStyle::OUTLINED
        },
    );
    // Time axis: round ticks within the run.
    let axis_y = top + row_h * rows.len().max(1) as f64 + 5.0;
    let ticks: Vec<f64> = draw::nice_ticks(end_ms, 6)
        .into_iter()
        .filter(|t| *t <= end_ms)
        .collect();
    let seconds: Vec<f64> = ticks.iter().map(|t| t / 1000.0).collect();
    let decimals = draw::tick_decimals(&seconds).max(1);
    draw::x_axis(&mut c, (left, left + plot_w), axis_y, &ticks, x, |t| {
        format!("{:.decimals$}s", t / 1000.0)
    });
    for (i, r) in rows.iter().enumerate() {
        let y0 = top + row_h * i as f64;
        let label = format!(
            "{} v{} {}",
            r.cell.policy,
            r.cell.family,
            r.cell.hook.map_or("", |h| h.name())
        );
        c.add(draw::rect(
            10.0,
            y0 + 7.0,
            9.0,
            9.0,
            present::colour(r.cell.policy.name()),
        ));
        c.add(draw::text(23.0, y0 + 16.0, label.trim()));
        c.add(draw::text(10.0, y0 + 30.0, summary(r)).set("fill", "#555"));
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
            let mac = match st.new_mac {
                Some(true) => "new MAC",
                Some(false) => "old MAC",
                None => "",
            };
            c.add(
                draw::rect(x(t0), band_y, w, 12.0, state_colour(&st.state))
                    .set("stroke", "#666")
                    .set("stroke-width", 0.3)
                    .add(draw::tooltip(format!("{} {mac}", st.state))),
            );
            if let Some(new) = st.new_mac {
                let strip = if new {
                    present::TO_NEW_MAC
                } else {
                    present::OLD_MAC
                };
                c.add(draw::rect(x(t0), band_y + 13.0, w, 3.0, strip));
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
                    (false, _) => present::TO_NEW_MAC,
                    (true, Some(m)) if b as u64 > m => present::TO_OLD_MAC_LOST,
                    (true, _) => present::TO_OLD_MAC,
                };
                let h = 14.0 * f64::from(n) / max_bin;
                c.add(draw::rect(
                    x(b as f64 * tl.bin_ms as f64),
                    base - h,
                    bw,
                    h,
                    colour,
                ));
            }
        }
        c.add(draw::line(left, base, left + plot_w, base, "#bbb"));
        if let Some(m) = tl.move_ms {
            c.add(
                draw::line(
                    x(m as f64),
                    y0 + 1.0,
                    x(m as f64),
                    y0 + row_h - 4.0,
                    "black",
                )
                .set("stroke-dasharray", "3,2"),
            );
        }
    }
    c.finish()
}
