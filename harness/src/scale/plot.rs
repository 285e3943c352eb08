//! The scale figures: for each quantity, how it grows with the number of
//! nexthops (log-log), one line per policy and hook and one for the kernel
//! stack, a figure per (staleness, fraction moved, family). Drawn with
//! `plotters` as SVG.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::{ScaleResult, StaleBy};
use crate::scenario::Family;

/// A quantity drawn against N.
pub struct Quantity {
    /// File name stem and short name.
    pub name: &'static str,
    /// Axis label, with the unit.
    pub label: &'static str,
    pub value: fn(&ScaleResult) -> Option<f64>,
}

/// What the figures show.
pub const QUANTITIES: &[Quantity] = &[
    Quantity {
        name: "recovery-p99",
        label: "p99 time to the new MAC (ms)",
        value: |r| r.recovery_ms.map(|s| s.p99),
    },
    Quantity {
        name: "recovery-median",
        label: "median time to the new MAC (ms)",
        value: |r| r.recovery_ms.map(|s| s.median),
    },
    Quantity {
        name: "never",
        label: "moved nexthops never at the new MAC",
        value: |r| Some(f64::from(r.never)),
    },
    Quantity {
        name: "to-dead",
        label: "frames to the dead MAC",
        value: |r| Some(r.observed.to_dead as f64),
    },
    Quantity {
        name: "lost",
        label: "frames that never left the DUT",
        value: |r| Some(r.lost as f64),
    },
    Quantity {
        name: "probes",
        label: "probes sent by the DUT",
        value: |r| Some(r.observed.probes_total() as f64),
    },
    Quantity {
        name: "probes-peak",
        label: "most probes in one second",
        value: |r| Some(r.observed.probes_peak_per_s as f64),
    },
    Quantity {
        name: "prog-time",
        label: "forwarder run time after the move (ms)",
        value: |r| r.prog_run_ms,
    },
    Quantity {
        name: "softirq",
        label: "softirq time after the move (ms)",
        value: |r| Some(r.softirq_ms as f64),
    },
];

/// A figure could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("failed to create {}: {source}", .dir.display())]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to draw {}: {msg}", .file.display())]
    Draw { file: PathBuf, msg: String },
}

/// Values below this are drawn on it (a log axis has no 0).
const FLOOR: f64 = 0.5;

type Group = (StaleBy, u32, Family);

/// Write every figure for `results` under `dir`
/// (`<quantity>-<staleness>-<pct>pct-v<family>.svg`); returns the files.
pub fn write_svgs(results: &[ScaleResult], dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Dir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut groups: BTreeMap<Group, Vec<&ScaleResult>> = BTreeMap::new();
    for r in results {
        groups
            .entry((r.case.stale, r.case.moved_pct, r.case.family))
            .or_default()
            .push(r);
    }
    let mut files = Vec::new();
    for ((stale, pct, family), rs) in &groups {
        for q in QUANTITIES {
            let file = dir.join(format!("{}-{stale}-{pct}pct-v{family}.svg", q.name));
            let title = format!(
                "{} - IPv{family}, {pct}% moved, entries {stale} STALE",
                q.name
            );
            draw(&file, &title, q, rs).map_err(|msg| PlotError::Draw {
                file: file.clone(),
                msg,
            })?;
            files.push(file);
        }
    }
    Ok(files)
}

/// One line per (policy, hook): its points (N, value), N ascending.
fn lines(q: &Quantity, rs: &[&ScaleResult]) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in rs {
        let Some(v) = (q.value)(r) else { continue };
        let name = match r.case.hook {
            Some(h) => format!("{} {h}", r.case.policy),
            None => r.case.policy.to_string(),
        };
        out.entry(name)
            .or_default()
            .push((f64::from(r.case.nexthops), v.max(FLOOR)));
    }
    for pts in out.values_mut() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

fn draw(file: &Path, title: &str, q: &Quantity, rs: &[&ScaleResult]) -> Result<(), String> {
    let lines = lines(q, rs);
    let xs = lines.values().flatten().map(|p| p.0);
    let ys = lines.values().flatten().map(|p| p.1);
    let x_max = xs.fold(2.0f64, f64::max) * 2.0;
    let y_max = ys.fold(1.0f64, f64::max) * 3.0;
    let root = SVGBackend::new(file, (760, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0.7f64..x_max).log_scale(), (FLOOR..y_max).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("nexthops (N)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if *y >= 1.0 {
                format!("{y:.0}")
            } else {
                format!("{y}")
            }
        })
        .y_desc(format!("{} (0 drawn at {FLOOR})", q.label))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (name, pts)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let style = ShapeStyle::from(color).stroke_width(2);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), style))
            .map_err(|e| e.to_string())?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
