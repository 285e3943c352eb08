//! The benchmarks against the running kernel, with small sample sizes
//! (needs root; `cargo test -p fibneigh --test bench_root -- --ignored`).
//! These check that every part measures what it says and leaves nothing
//! behind; the figures themselves are BENCHMARKS.md's business.

use std::time::Duration;

use fibneigh::bench::{self, forwarding, lookup, recovery, BenchOptions, Unit};
use fibneigh::lab::{netns, plan};
use fibneigh::scenario::{Family, NeighTimers, Support};
use fibneigh_bpf::Hook;

fn our_namespaces() -> Vec<String> {
    let prefix = plan::run_prefix(std::process::id());
    netns::list()
        .expect("list namespaces")
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

#[test]
#[ignore = "needs root"]
fn lookup_rows_cover_every_case_and_flag() {
    let support = Support::probe().expect("probe");
    // 20 ms samples: an interrupt or a stolen slice of a few ms (this
    // tier runs beside a background kernel build) must not turn the loop
    // without the helper dearer than a lookup.
    let opts = lookup::Options {
        rounds: 2,
        sample: Duration::from_millis(20),
        hooks: vec![Hook::Tc, Hook::Xdp],
    };
    let (all, method) = lookup::run(&opts, support).expect("lookup bench");
    assert!(method[0].contains("BPF_PROG_TEST_RUN"));
    // Per case: the lookup row, then its helper-only row (lookup - floor).
    let (helper_only, rows): (Vec<_>, Vec<_>) =
        all.iter().partition(|r| r.section == lookup::HELPER_ONLY);
    assert_eq!(rows.len(), 8, "2 hooks x 2 families x 2 states");
    assert_eq!(helper_only.len(), 8, "one helper-only row per lookup row");
    // Times on a shared machine say nothing about behaviour: no figure is
    // compared with another, only checked to be there and to add up.
    for h in &helper_only {
        assert!(
            h.figure("floor").is_none(),
            "{}: helper-only has no floor",
            h.label
        );
        // lookup - floor of the same round; with two rounds the median
        // of those differences is the difference of the medians.
        let zero = h.figure("0").and_then(|f| f.value);
        let lookup = rows
            .iter()
            .find(|r| r.label == h.label)
            .unwrap_or_else(|| panic!("{}: no lookup row", h.label));
        let median = |col: &str| lookup.figure(col).and_then(|f| f.value).map(|v| v.median);
        let (Some(zero), Some(with), Some(floor)) = (zero, median("0"), median("floor")) else {
            panic!("{}: {zero:?} without a lookup and a floor", h.label);
        };
        assert_eq!(zero.n, 2, "{}: one difference per round", h.label);
        assert!(
            (zero.median - (with - floor)).abs() <= 1e-6 * with.abs().max(1.0),
            "{}: helper-only {} is not lookup {with} - floor {floor}",
            h.label,
            zero.median
        );
    }
    for r in &rows {
        assert_eq!(r.unit, Unit::NsPerLookup);
        for (col, flags) in lookup::COLUMNS {
            let f = r
                .figure(col)
                .unwrap_or_else(|| panic!("{}: no {col}", r.label));
            let supported = flags.is_none_or(|b| support.missing(b).is_empty());
            if supported {
                let v = f
                    .value
                    .unwrap_or_else(|| panic!("{}/{col}: no value", r.label));
                assert_eq!(v.n, 2, "one sample per round");
                assert!(v.min > 0.0 && v.max.is_finite(), "{}/{col}: {v:?}", r.label);
                assert!(f.ratio.is_some());
            } else {
                assert!(f.value.is_none());
                assert!(f.note.as_deref().unwrap().starts_with("unsupported"));
            }
        }
    }
    assert!(our_namespaces().is_empty(), "left: {:?}", our_namespaces());
}

#[test]
#[ignore = "needs root"]
fn forwarding_rows_measure_every_supported_policy() {
    // On a kernel that refuses the generator's live-frames test runs this
    // test cannot measure: scripts/test.sh skips it there, by name; the
    // rows such a kernel gets are checked by forwarding's unit tests, and
    // the host's `bench --quick` runs that path.
    let live = fibneigh_bpf::bench::Bench::load()
        .and_then(|mut b| b.live_frames(0))
        .expect("probe live frames");
    assert_eq!(
        live,
        fibneigh_bpf::bench::LiveFrames::Supported,
        "{}: skip this test on this kernel",
        live.reason()
    );
    let support = Support::probe().expect("probe");
    let opts = forwarding::Options {
        rounds: 1,
        sample: Duration::from_millis(20),
        hooks: vec![Hook::Tc, Hook::Xdp],
        flows: vec![forwarding::Flows::ONE, forwarding::Flows::MANY],
    };
    let (rows, _) = forwarding::run(&opts, support).expect("forwarding bench");
    // (rate, time, run time) x 2 flows x 2 hooks
    assert_eq!(rows.len(), 12);
    for r in &rows {
        for p in forwarding::columns() {
            let f = r.figure(p.name()).expect("every column");
            let supported = support.missing(p.required_flags()).is_empty();
            let program_row = r.label.ends_with("forwarder run time");
            let expect_value =
                supported && !(program_row && p == fibneigh::scenario::PolicyChoice::KernelStack);
            assert_eq!(
                f.value.is_some(),
                expect_value,
                "{} / {}: {f:?}",
                r.label,
                p
            );
        }
    }
    // Every sample delivered frames (the bench refuses one that did not):
    // each rate is there, positive and finite; how high is not checked.
    let rates: Vec<_> = rows.iter().filter(|r| r.unit == Unit::Pps).collect();
    assert_eq!(rates.len(), 4, "a rate per flow and hook");
    for r in rates {
        assert!(
            r.figure("baseline").and_then(|f| f.value).is_some(),
            "{}: no baseline rate",
            r.label
        );
        for f in &r.figures {
            if let Some(v) = f.value {
                assert_eq!(v.n, 1, "{} / {}: one sample per round", r.label, f.column);
                assert!(
                    v.min > 0.0 && v.max.is_finite(),
                    "{} / {}: {v:?}",
                    r.label,
                    f.column
                );
            }
        }
    }
    assert!(our_namespaces().is_empty(), "left: {:?}", our_namespaces());
}

#[test]
#[ignore = "needs root"]
fn a_whole_quick_report_has_goals_and_renders() {
    let opts = BenchOptions {
        lookup: Some(lookup::Options {
            rounds: 1,
            sample: Duration::from_millis(2),
            hooks: vec![Hook::Xdp],
        }),
        forwarding: None,
        recovery: Some(recovery::Options {
            reps: 1,
            timers: vec![NeighTimers::Short],
            hooks: vec![Hook::Tc],
            family: Family::V4,
            // The stack takes about 1.4 s idle; 5 s leaves room for a
            // busy machine.
            window_short: Duration::from_millis(5000),
            window_default: Duration::from_millis(15000),
        }),
    };
    let report = bench::run(&opts, "test", |_| {}).expect("bench");
    let text = bench::render::render_table(&report);
    assert!(
        text.contains("recovery") && text.contains("lookup"),
        "{text}"
    );
    let never = report
        .goals
        .iter()
        .find(|g| g.text == "baseline never recovers")
        .unwrap();
    assert_eq!(never.met, Some(true), "{never:?}");
    let stack = report
        .rows
        .iter()
        .find(|r| r.unit == Unit::Ms)
        .and_then(|r| r.figure("kernel-stack"))
        .and_then(|f| f.value)
        .expect("the stack recovers");
    assert!(stack.median > 100.0 && stack.median < 5000.0, "{stack:?}");
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["rows"].as_array().unwrap().len() >= 6);
    assert!(our_namespaces().is_empty(), "left: {:?}", our_namespaces());
}
