//! How cell results are shown: an aligned table, the details `fibneigh
//! run` prints, and one SVG timeline per scenario ([`svg`]).

pub mod junit;
mod svg;

use std::fmt::Write as _;

use crate::present::Table;
use crate::scenario::result::{CellResult, Outcome, Verdict};
use crate::scenario::spec::{Kind, Spec};
use crate::scenario::Scenario;
use fibneigh_bpf::Hook;

pub use crate::present::state_colour;
pub use svg::{render_headline, render_svg};

fn state_label(r: &CellResult) -> String {
    match (&r.final_state, r.final_new_mac) {
        (Some(s), Some(true)) => format!("{s} new-mac"),
        (Some(s), Some(false)) => format!("{s} old-mac"),
        (Some(s), None) => s.clone(),
        (None, _) => "-".into(),
    }
}

fn summary(r: &CellResult) -> String {
    if !r.state_rows.is_empty() {
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
    let mut table = Table::new().header(header);
    for r in results {
        let traffic = Spec::of(r.cell.scenario).kind == Kind::Traffic
            && !matches!(r.outcome, Outcome::Unsupported | Outcome::Error(_));
        let prog = traffic && r.cell.hook.is_some();
        let slow = match r.cell.hook {
            Some(Hook::Xdp) => format!("{}(pass)", r.neigh_pass),
            _ => r.redirect_neigh.to_string(),
        };
        table.row([
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
                Verdict::Skipped(_) => "skipped".into(),
            },
        ]);
    }
    table.render()
}

/// The files of `matrix --svg-dir`, as (file name, SVG): a timeline per
/// traffic scenario of `scenarios` and, when `results` hold its cells,
/// `headline.svg`.
pub fn render_svgs(scenarios: &[Scenario], results: &[CellResult]) -> Vec<(String, String)> {
    let traffic = scenarios
        .iter()
        .filter(|s| Spec::of(**s).kind == Kind::Traffic);
    let mut files: Vec<_> = traffic
        .map(|s| (format!("{s}.svg"), render_svg(*s, results)))
        .collect();
    files.extend(render_headline(results).map(|svg| ("headline.svg".to_string(), svg)));
    files
}

/// `fibneigh matrix`'s last line: the cells (in `secs` seconds) and how
/// many match the expectations, do not, have none, or were not run.
pub fn render_summary(results: &[CellResult], secs: f64) -> String {
    let count = |v: fn(&Verdict) -> bool| results.iter().filter(|r| v(&r.verdict)).count();
    format!(
        "{} cells in {secs:.1}s; {} matching the expectations, {} not, {} unchecked, {} skipped \
         (not run: a flag this kernel rejects)\n",
        results.len(),
        count(|v| *v == Verdict::Pass),
        count(|v| matches!(v, Verdict::Fail(_))),
        count(|v| *v == Verdict::Unchecked),
        count(|v| matches!(v, Verdict::Skipped(_))),
    )
}

/// `fibneigh trial`'s verdicts: a line per cell with its diagnosis.
pub fn render_verdicts(results: &[CellResult]) -> String {
    let mut out = String::new();
    for r in results {
        let _ = writeln!(
            out,
            "{:<40} {}  [{}]",
            r.cell.id(),
            r.diagnosis.as_deref().unwrap_or("-"),
            match &r.verdict {
                Verdict::Pass => "as expected".to_string(),
                Verdict::Fail(why) => format!("FAIL: {why}"),
                Verdict::Unchecked => "no expectation".to_string(),
                Verdict::Skipped(why) => format!("skipped: {why}"),
            }
        );
    }
    out
}

/// The details `fibneigh cell` prints under the table.
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
        let mut table = Table::new().header(["SET", "BEFORE", "RC", "NUD_STATE", "DMAC", "AFTER"]);
        for row in &r.state_rows {
            table.row([
                row.set.to_string(),
                row.before.to_string(),
                row.rc_name.clone(),
                row.reported.map_or("-".into(), |n| n.name()),
                row.dmac.as_deref().unwrap_or("-").to_string(),
                row.after.to_string(),
            ]);
        }
        out.push_str(&table.render());
    }
    if Spec::of(r.cell.scenario).kind == Kind::Traffic && r.outcome != Outcome::Unsupported {
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
    if let Some(h) = &r.header {
        let _ = writeln!(
            out,
            "header example: {} (sha256 {}) took the {} path; judged as {}",
            h.object, h.object_sha256, h.path, r.judged_as
        );
    }
    let _ = writeln!(out, "took {} ms", r.duration_ms);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::expect::fixtures::{result, UNPATCHED};
    use crate::scenario::result::{StateSample, Timeline};
    use crate::scenario::{PolicyChoice, Scenario};
    use fibneigh_bpf::Policy;

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
        assert!(lines[2].trim_end().ends_with("skipped"), "{t}");
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
    fn the_headline_shows_v4_xdp_and_the_stack_only() {
        let mut results = sample_results();
        // The sample is tc: nothing to show.
        assert!(render_headline(&results).is_none());
        let mut xdp = results[0].clone();
        xdp.cell.hook = Some(fibneigh_bpf::Hook::Xdp);
        let mut v6 = xdp.clone();
        v6.cell.family = crate::scenario::Family::V6;
        results.extend([xdp, v6]);
        let svg = render_headline(&results).expect("one v4 xdp row");
        assert_eq!(svg.matches("always-neigh").count(), 1);
        assert!(svg.contains("ip-reassign, IPv4, XDP"));
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
    }

    #[test]
    fn summary_and_verdicts_count_and_name_each_cell() {
        let mut results = sample_results();
        results.truncate(1);
        let mut failed = results[0].clone();
        failed.verdict = Verdict::Fail("kept the dead MAC".into());
        failed.diagnosis = Some("black-holes".into());
        results[0].verdict = Verdict::Unchecked;
        results.push(failed);
        assert_eq!(
            render_summary(&results, 1.25),
            "2 cells in 1.2s; 0 matching the expectations, 1 not, 1 unchecked, 0 skipped (not run: a \
             flag this kernel rejects)\n"
        );
        let lines = render_verdicts(&results);
        assert_eq!(lines.lines().count(), 2);
        assert!(
            lines.ends_with("black-holes  [FAIL: kept the dead MAC]\n"),
            "{lines}"
        );
        assert!(lines.contains("-  [no expectation]\n"), "{lines}");
    }
}
