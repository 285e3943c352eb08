//! JUnit XML for CI systems (GitHub, GitLab, Jenkins): one test case per
//! matrix cell or per test_progs test, with the verdict's reason as the
//! failure message.

use std::time::Duration;

use fibneigh_selftests as st;
use quick_junit::{NonSuccessKind, Report, SerializeError, TestCase, TestCaseStatus, TestSuite};

use crate::scenario::{CellResult, Outcome, Verdict};

pub type Result<T, E = SerializeError> = std::result::Result<T, E>;

fn failure(message: &str) -> TestCaseStatus {
    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
    s.set_message(message);
    s
}

fn skipped(message: &str) -> TestCaseStatus {
    let mut s = TestCaseStatus::skipped();
    s.set_message(message);
    s
}

fn render(suite: TestSuite) -> Result<String> {
    let mut report = Report::new("fibneigh");
    report.add_test_suite(suite);
    report.to_string()
}

/// The matrix: a failed verdict fails the case; an unchecked cell (a
/// reference cell, or a policy this kernel rejects without an
/// expectation) is a skipped case.
pub fn matrix(results: &[CellResult]) -> Result<String> {
    let mut suite = TestSuite::new("fibneigh matrix");
    for r in results {
        let status = match &r.verdict {
            Verdict::Pass => TestCaseStatus::success(),
            Verdict::Fail(why) => failure(why),
            Verdict::Unchecked => skipped(&match &r.outcome {
                Outcome::Unsupported => "unsupported by this kernel, no expectation".to_string(),
                other => format!("no expectation ({})", other.label()),
            }),
        };
        let mut case = TestCase::new(r.cell.id(), status);
        case.set_classname(format!("matrix.{}", r.cell.scenario));
        case.set_time(Duration::from_millis(r.duration_ms));
        suite.add_test_case(case);
    }
    render(suite)
}

/// `selftests`: every result line test_progs printed.
pub fn selftests(report: &st::Report) -> Result<String> {
    let mut suite = TestSuite::new("test_progs");
    for t in &report.results {
        let status = match t.outcome {
            st::Outcome::Ok => TestCaseStatus::success(),
            st::Outcome::Skip => skipped("skipped by test_progs"),
            st::Outcome::Fail => failure("failed (see test_progs' output)"),
        };
        let mut case = TestCase::new(t.name.clone(), status);
        case.set_classname("test_progs");
        suite.add_test_case(case);
    }
    render(suite)
}

/// `selftests --diff`: a case per test; only a pristine-pass/patched-fail
/// regression fails, a test failing on both kernels is skipped with why.
pub fn selftests_diff(rows: &[st::DiffRow]) -> Result<String> {
    let mut suite = TestSuite::new("test_progs pristine vs patched");
    for r in rows {
        let status = if r.regressed() {
            failure("passes on the pristine base, fails on the patched kernel")
        } else if r.patched == Some(true) {
            TestCaseStatus::success()
        } else {
            skipped(match r.pristine {
                Some(false) => "fails on the pristine base as well",
                _ => "not run on the pristine base",
            })
        };
        let mut case = TestCase::new(r.name.clone(), status);
        case.set_classname("test_progs.diff");
        suite.add_test_case(case);
    }
    render(suite)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Cell, Family, PolicyChoice, Scenario};
    use fibneigh_bpf::Hook;

    #[test]
    fn a_failed_cell_is_a_failed_case() {
        let cell = Cell::new(
            Scenario::IpReassign,
            PolicyChoice::KernelStack,
            Family::V4,
            Hook::Tc,
        );
        let mut ok = CellResult::new(cell, Outcome::Recovered);
        ok.verdict = Verdict::Pass;
        let mut bad = ok.clone();
        bad.verdict = Verdict::Fail("did not <recover>".into());
        let xml = matrix(&[ok, bad]).expect("xml");
        assert!(
            xml.contains(r#"tests="2""#) && xml.contains(r#"failures="1""#),
            "{xml}"
        );
        assert!(xml.contains("did not &lt;recover&gt;"), "{xml}");
    }
}
