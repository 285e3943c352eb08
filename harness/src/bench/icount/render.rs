//! `fibneigh vm icount`'s text: the figures' table with its notes and
//! goals, and the series' cost (flags 0 and SKIP_NEIGH before and after).

use fibneigh_bpf::nud;
use fibneigh_vm::KernelImage;

use super::{Goal, IcountReport, SeriesCost};
use crate::present::Table;

/// One line per goal: its text, limit, verdict and worst row.
pub fn goal_lines(goals: &[Goal]) -> String {
    let mut out = String::new();
    for g in goals {
        let verdict = match g.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured (flag unsupported)",
        };
        let worst = g
            .worst
            .as_ref()
            .map(|(d, row)| format!(" (largest {d:+}, {row})"))
            .unwrap_or_default();
        out.push_str(&format!("  {}: <= {}: {verdict}{worst}\n", g.text, g.limit));
    }
    out
}

/// Flags 0 and SKIP_NEIGH before and after the series.
pub fn render_series(rows: &[SeriesCost]) -> String {
    let mut out =
        String::from("before and after the series (pristine base vs series, same config):\n");
    let mut table = Table::new().indent(2).header([
        "row",
        "0 pristine",
        "0 series",
        "added",
        "SKIP_NEIGH pristine",
        "SKIP_NEIGH series",
        "added",
    ]);
    let n = |v: Option<u64>| v.map_or("-".to_string(), |x| x.to_string());
    let d = |v: Option<i64>| v.map_or("-".to_string(), |x| format!("{x:+}"));
    for r in rows {
        table.row([
            r.row.clone(),
            n(r.flags0.0),
            n(r.flags0.1),
            d(r.flags0_added()),
            n(r.skip_neigh.0),
            n(r.skip_neigh.1),
            d(r.skip_neigh_added()),
        ]);
    }
    out.push_str(&table.render());
    out
}

/// The table: instructions per call (mode) and the delta against flags 0;
/// then the goals.
pub fn render(report: &IcountReport, image: &KernelImage) -> String {
    let mut out = format!(
        "instructions per bpf_fib_lookup() call (QEMU TCG plugin), kernel {} (series {}), \
         {} runs x 64 calls per cell\n",
        image.release, image.key.series, report.runs
    );
    let columns: Vec<&str> = report
        .rows
        .first()
        .map(|r| r.figures.iter().map(|f| f.column.as_str()).collect())
        .unwrap_or_default();
    let mut header = vec!["row".to_string()];
    header.extend(columns.iter().map(|c| c.to_string()));
    let mut table = Table::new().indent(2).header(header);
    for row in &report.rows {
        let mut cells = vec![row.label.clone()];
        for f in &row.figures {
            cells.push(match (f.insns, f.delta) {
                _ if f.calls == 0 && f.note.as_deref().is_some_and(|n| n.starts_with("unsup")) => {
                    "unsupported".into()
                }
                (None, _) => "-".into(),
                (Some(n), Some(0)) if f.column == "0" => format!("{n}"),
                (Some(n), Some(d)) => format!("{n} ({d:+})"),
                (Some(n), None) => format!("{n}"),
            });
        }
        table.row(cells);
    }
    out.push_str(&table.render());
    out.push_str("  floor: the loop without the helper (no call to count)\n");
    for row in &report.rows {
        for f in &row.figures {
            if row.state == nud::STALE && f.column == "NEIGH_REFRESH" {
                if let (Some(first), Some(n)) = (f.first, f.insns) {
                    out.push_str(&format!(
                        "  {}: NEIGH_REFRESH's first call (STALE -> DELAY, arms the timer: varies by a few \
                         between boots) {first}, the rest (DELAY) {n}\n",
                        row.label
                    ));
                }
            }
        }
    }
    let calls: u64 = report
        .rows
        .iter()
        .flat_map(|r| &r.figures)
        .map(|f| f.calls)
        .sum();
    out.push_str(&format!(
        "  calls off their cell's figure (interrupt during the call, or a varying path): {} of {calls}\n",
        report.off_mode_calls
    ));
    out.push_str("goals:\n");
    out.push_str(&goal_lines(&report.goals));
    for m in &report.method {
        out.push_str(&format!("method: {m}\n"));
    }
    out
}
