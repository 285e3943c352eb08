//! JUnit XML for CI systems (GitHub, GitLab, Jenkins): one test case per
//! matrix cell or per test_progs test, with the verdict's reason as the
//! failure message; and read back ([`check_file`]) into the same type.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fibneigh_selftests as st;
use quick_junit::{
    DeserializeError, NonSuccessKind, Report, SerializeError, TestCase, TestCaseStatus, TestSuite,
};

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
/// expectation) and a cell not run (a flag this kernel rejects) are
/// skipped cases.
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
            Verdict::Skipped(why) => skipped(why),
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

/// `selftests --diff`: a case per test; only a regression (passes on the
/// pristine kernel, fails, is skipped or is missing on the patched one)
/// fails; a test failing on both kernels, or skipped, is skipped with why.
pub fn selftests_diff(rows: &[st::DiffRow]) -> Result<String> {
    let mut suite = TestSuite::new("test_progs pristine vs patched");
    for r in rows {
        let status = if r.regressed() {
            failure(match r.patched {
                Some(st::Outcome::Skip) => {
                    "passes on the pristine base, skipped on the patched kernel"
                }
                None => "passes on the pristine base, not run on the patched kernel",
                _ => "passes on the pristine base, fails on the patched kernel",
            })
        } else if r.patched == Some(st::Outcome::Ok) {
            TestCaseStatus::success()
        } else {
            skipped(match (r.patched, r.pristine) {
                (Some(st::Outcome::Skip), _) => "skipped by test_progs on the patched kernel",
                (_, Some(st::Outcome::Fail)) => "fails on the pristine base as well",
                (_, Some(st::Outcome::Skip)) => "skipped on the pristine base",
                _ => "not run on the pristine base",
            })
        };
        let mut case = TestCase::new(r.name.clone(), status);
        case.set_classname("test_progs.diff");
        suite.add_test_case(case);
    }
    render(suite)
}

/// What a JUnit report holds, counted from its test cases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Every test case, of every suite.
    pub cases: usize,
    pub skipped: usize,
    /// The names (`classname.name`) of the failed cases, and of those in
    /// error.
    pub failed: Vec<String>,
}

/// Count `xml`'s test cases, read with the type the writers above use
/// ([`quick_junit::Report`]).
pub fn summary(xml: &str) -> Result<Summary, DeserializeError> {
    Ok(summarize(&Report::deserialize_from_str(xml)?))
}

fn summarize(report: &Report) -> Summary {
    let mut s = Summary::default();
    for case in report.test_suites.iter().flat_map(|t| &t.test_cases) {
        s.cases += 1;
        match &case.status {
            TestCaseStatus::Success { .. } => {}
            TestCaseStatus::Skipped { .. } => s.skipped += 1,
            TestCaseStatus::NonSuccess { .. } => s.failed.push(match &case.classname {
                Some(class) => format!("{}.{}", class.as_str(), case.name.as_str()),
                None => case.name.as_str().to_string(),
            }),
        }
    }
    s
}

/// Why a JUnit file is not a passing report.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a JUnit report: {source}", .path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: DeserializeError,
    },
    #[error("{}: its counts ({tests} test(s), {failures} failure(s) and error(s)) are not its cases' ({cases}, {failed})", .path.display())]
    Counts {
        path: PathBuf,
        tests: usize,
        failures: usize,
        cases: usize,
        failed: usize,
    },
    #[error("{}: no test case", .path.display())]
    Empty { path: PathBuf },
    #[error("{}: all {cases} case(s) were skipped: nothing ran", .path.display())]
    AllSkipped { path: PathBuf, cases: usize },
    #[error("{}: {} of {cases} case(s) failed: {}", .path.display(), .failed.len(), .failed.join(", "))]
    Failed {
        path: PathBuf,
        cases: usize,
        failed: Vec<String>,
    },
}

/// Read the JUnit file at `path` (as [`matrix`], [`selftests`] and
/// [`selftests_diff`] write it): well-formed, its counts those of its
/// cases, none failed or in error, and at least one case that passed (a
/// report whose cases were all skipped ran nothing, and is no pass).
pub fn check_file(path: &Path) -> Result<Summary, CheckError> {
    let xml = std::fs::read_to_string(path).map_err(|source| CheckError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let report = Report::deserialize_from_str(&xml).map_err(|source| CheckError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let s = summarize(&report);
    if report.tests != s.cases || report.failures + report.errors != s.failed.len() {
        return Err(CheckError::Counts {
            path: path.to_path_buf(),
            tests: report.tests,
            failures: report.failures + report.errors,
            cases: s.cases,
            failed: s.failed.len(),
        });
    }
    if s.cases == 0 {
        return Err(CheckError::Empty {
            path: path.to_path_buf(),
        });
    }
    if !s.failed.is_empty() {
        return Err(CheckError::Failed {
            path: path.to_path_buf(),
            cases: s.cases,
            failed: s.failed,
        });
    }
    if s.skipped == s.cases {
        return Err(CheckError::AllSkipped {
            path: path.to_path_buf(),
            cases: s.cases,
        });
    }
    Ok(s)
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

    /// A file holding `xml`, checked.
    fn check(xml: &str) -> Result<Summary, CheckError> {
        let d = tempfile::tempdir().expect("tempdir");
        let path = d.path().join("report.xml");
        std::fs::write(&path, xml).expect("write");
        check_file(&path)
    }

    fn cell(scenario: Scenario) -> Cell {
        Cell::new(scenario, PolicyChoice::KernelStack, Family::V4, Hook::Tc)
    }

    #[test]
    fn the_matrix_reads_back_case_for_cell() {
        let mut pass = CellResult::new(cell(Scenario::IpReassign), Outcome::Recovered);
        pass.verdict = Verdict::Pass;
        let unchecked = CellResult::new(cell(Scenario::IpReassign), Outcome::Unsupported);
        let xml = matrix(&[pass.clone(), unchecked]).expect("xml");
        assert_eq!(
            check(&xml).expect("passes"),
            Summary {
                cases: 2,
                skipped: 1,
                failed: vec![]
            }
        );
        let mut bad = pass.clone();
        bad.verdict = Verdict::Fail("did not recover".into());
        let xml = matrix(&[pass, bad.clone()]).expect("xml");
        let want = format!("matrix.{}.{}", bad.cell.scenario, bad.cell.id());
        assert_eq!(
            summary(&xml).expect("reads").failed,
            std::slice::from_ref(&want)
        );
        let err = check(&xml).expect_err("a failed case");
        assert!(matches!(&err, CheckError::Failed { cases: 2, failed, .. } if *failed == [want]));
    }

    #[test]
    fn selftests_read_back_case_for_test() {
        let result = |name: &str, outcome| st::TestResult {
            name: name.into(),
            outcome,
        };
        let report = st::Report {
            results: vec![
                result("fib_lookup", st::Outcome::Ok),
                result("fib_lookup/neigh", st::Outcome::Skip),
            ],
            summary: None,
        };
        let s = check(&selftests(&report).expect("xml")).expect("passes");
        assert_eq!((s.cases, s.skipped), (2, 1));
        let mut failing = report.clone();
        failing
            .results
            .push(result("fib_lookup/refresh", st::Outcome::Fail));
        let s = summary(&selftests(&failing).expect("xml")).expect("reads");
        assert_eq!(s.failed, ["test_progs.fib_lookup/refresh"]);

        let row = |name: &str, pristine, patched| st::DiffRow {
            name: name.into(),
            pristine,
            patched,
        };
        use st::Outcome::{Fail, Ok, Skip};
        let rows = [
            row("a", Some(Ok), Some(Ok)),
            row("b", Some(Fail), Some(Fail)),
            row("c", None, Some(Ok)),
            row("e", Some(Skip), Some(Skip)),
        ];
        let xml = selftests_diff(&rows).expect("xml");
        let s = check(&xml).expect("passes");
        assert_eq!((s.cases, s.skipped), (4, 2), "a skip is never a pass");
        assert!(xml.contains("skipped by test_progs on the patched kernel"));
        let regressed = [
            row("d", Some(Ok), Some(Fail)),
            row("f", Some(Ok), Some(Skip)),
        ];
        let s = summary(&selftests_diff(&regressed).expect("xml")).expect("reads");
        assert_eq!(s.failed, ["test_progs.diff.d", "test_progs.diff.f"]);
    }

    #[test]
    fn a_report_that_is_not_one_is_refused_by_name() {
        assert!(matches!(
            check("<testsuites><testsuite"),
            Err(CheckError::Parse { .. })
        ));
        assert!(matches!(
            check(&render(TestSuite::new("empty")).expect("xml")),
            Err(CheckError::Empty { .. })
        ));
        let unchecked = CellResult::new(cell(Scenario::IpReassign), Outcome::Unsupported);
        let err =
            check(&matrix(&[unchecked.clone(), unchecked]).expect("xml")).expect_err("all skipped");
        assert!(
            matches!(err, CheckError::AllSkipped { cases: 2, .. }),
            "{err}"
        );
        let skips = st::Report {
            results: vec![st::TestResult {
                name: "fib_lookup".into(),
                outcome: st::Outcome::Skip,
            }],
            summary: None,
        };
        let err = check(&selftests(&skips).expect("xml")).expect_err("all skipped");
        assert!(err.to_string().contains("were skipped"), "{err}");
        let lying = r#"<testsuites name="x" tests="2" failures="0" errors="0"><testsuite name="s" tests="1" failures="0" errors="0"><testcase name="t"/></testsuite></testsuites>"#;
        assert!(matches!(check(lying), Err(CheckError::Counts { .. })));
        let d = tempfile::tempdir().expect("tempdir");
        let err = check_file(&d.path().join("gone.xml")).expect_err("no file");
        assert!(err.to_string().contains("gone.xml"), "{err}");
    }
}
