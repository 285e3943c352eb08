//! What `test_progs` reported: its text output, its `--json-summary`, and
//! the pristine-against-patched differential.

use serde::Serialize;

use crate::Result;

/// One test or subtest of a `test_progs --json-summary` run: passed,
/// failed or skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JsonResult {
    pub name: String,
    pub outcome: Outcome,
}

/// The outcome of every test `--list` named: the failures (tests and
/// subtests) come from the `--json-summary` report, which lists only
/// failures; the skips from the result lines of the run's own output
/// (`output`, what [`parse`] read), since the summary names none; a listed
/// test that is neither passed. A subtest the output reports skipped is a
/// row of its own.
pub fn results(listed: &str, failures: Vec<JsonResult>, output: &Report) -> Vec<JsonResult> {
    let skipped = |name: &str| {
        output
            .results
            .iter()
            .any(|r| r.name == name && r.outcome == Outcome::Skip)
    };
    let mut out: Vec<JsonResult> = listed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !failures.iter().any(|f| f.name == *l))
        .map(|l| JsonResult {
            name: l.to_string(),
            outcome: if skipped(l) {
                Outcome::Skip
            } else {
                Outcome::Ok
            },
        })
        .collect();
    out.extend(failures);
    for r in &output.results {
        if r.outcome == Outcome::Skip && !out.iter().any(|o| o.name == r.name) {
            out.push(JsonResult {
                name: r.name.clone(),
                outcome: Outcome::Skip,
            });
        }
    }
    out
}

/// Tests and subtests (`test/subtest`) of a `--json-summary` file.
pub fn parse_json_summary(text: &str) -> Result<Vec<JsonResult>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Sub {
        name: String,
        failed: bool,
    }
    #[derive(serde::Deserialize)]
    struct Test {
        name: String,
        failed: bool,
        #[serde(default)]
        subtests: Vec<Sub>,
    }
    #[derive(serde::Deserialize)]
    struct Summary {
        results: Vec<Test>,
    }
    let s: Summary = serde_json::from_str(text)?;
    let mut out = Vec::new();
    for t in s.results {
        let outcome = |failed: bool| if failed { Outcome::Fail } else { Outcome::Ok };
        for sub in &t.subtests {
            out.push(JsonResult {
                name: format!("{}/{}", t.name, sub.name),
                outcome: outcome(sub.failed),
            });
        }
        out.push(JsonResult {
            name: t.name,
            outcome: outcome(t.failed),
        });
    }
    Ok(out)
}

/// One row of the pristine-vs-patched table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffRow {
    pub name: String,
    /// None: the test did not run there.
    pub pristine: Option<Outcome>,
    pub patched: Option<Outcome>,
}

impl DiffRow {
    /// Passed on the pristine kernel and failed, was skipped or vanished
    /// on the patched one.
    pub fn regressed(&self) -> bool {
        self.pristine == Some(Outcome::Ok) && self.patched != Some(Outcome::Ok)
    }
}

/// Join two runs by test name.
pub fn diff(pristine: &[JsonResult], patched: &[JsonResult]) -> Vec<DiffRow> {
    let mut names: Vec<&str> = pristine
        .iter()
        .chain(patched)
        .map(|r| r.name.as_str())
        .collect();
    names.sort();
    names.dedup();
    // A subtest is reported only when it fails or is skipped: where its
    // test ran and it is not reported, it passed; where its test was
    // skipped, so was it.
    let find = |rs: &[JsonResult], n: &str| {
        rs.iter()
            .find(|r| r.name == n)
            .map(|r| r.outcome)
            .or_else(|| {
                let (test, _) = n.split_once('/')?;
                rs.iter().find(|r| r.name == test).map(|r| match r.outcome {
                    Outcome::Skip => Outcome::Skip,
                    Outcome::Ok | Outcome::Fail => Outcome::Ok,
                })
            })
    };
    names
        .into_iter()
        .map(|n| DiffRow {
            name: n.to_string(),
            pristine: find(pristine, n),
            patched: find(patched, n),
        })
        .collect()
}

/// One test or subtest result line of test_progs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestResult {
    pub name: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    Ok,
    Fail,
    Skip,
}

/// What a test_progs run reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub results: Vec<TestResult>,
    /// The "Summary:" line, if test_progs got that far.
    pub summary: Option<String>,
}

impl Report {
    pub fn failed(&self) -> Vec<&TestResult> {
        self.results
            .iter()
            .filter(|r| r.outcome == Outcome::Fail)
            .collect()
    }

    /// Passed only if test_progs finished, ran something, and nothing
    /// failed.
    pub fn passed(&self) -> bool {
        self.summary.is_some() && !self.results.is_empty() && self.failed().is_empty()
    }
}

/// Parse test_progs output: lines like `#101     fib_lookup:OK`,
/// `#101/3   fib_lookup/neigh:FAIL`, `#12 foo:SKIP`, and `Summary: ...`.
/// test_progs repeats the logs of failed tests, result lines included,
/// under "All error logs:" before the summary: those are not results again.
/// Its watchdog, killing a test that runs too long, dumps that test's log
/// too: a test named twice is one result, failed if either line says so.
pub fn parse(output: &str) -> Report {
    let mut report = Report::default();
    let mut repeated = false;
    for line in output.lines() {
        let line = line.trim();
        if line.starts_with("Summary:") {
            report.summary = Some(line.to_string());
            continue;
        }
        if line == "All error logs:" {
            repeated = true;
        }
        if repeated {
            continue;
        }
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((num, rest)) = rest.split_once(char::is_whitespace) else {
            continue;
        };
        if !num.chars().all(|c| c.is_ascii_digit() || c == '/') {
            continue;
        }
        let Some((name, outcome)) = rest.trim().rsplit_once(':') else {
            continue;
        };
        let outcome = match outcome.trim() {
            "OK" => Outcome::Ok,
            "FAIL" => Outcome::Fail,
            "SKIP" => Outcome::Skip,
            _ => continue,
        };
        let name = name.trim();
        match report.results.iter_mut().find(|r| r.name == name) {
            Some(seen) if outcome == Outcome::Fail => seen.outcome = Outcome::Fail,
            Some(_) => {}
            None => report.results.push(TestResult {
                name: name.to_string(),
                outcome,
            }),
        }
    }
    report
}
