//! The JUnit reports a CI run wrote (`target/junit/*.xml`, or the files
//! in `$FIBNEIGH_JUNIT_DIR`), read back with the type their writers use
//! (`fibneigh::report::junit::check_file`): each well-formed, its counts
//! those of its cases, none failed and at least one passed. They exist only
//! after the runs that write them, so this is ignored by a plain `cargo
//! test`; `scripts/test.sh` runs it with `--ignored` at the end.

use std::path::{Path, PathBuf};

use fibneigh::report::junit::check_file;

fn junit_dir() -> PathBuf {
    match std::env::var_os("FIBNEIGH_JUNIT_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/junit"),
    }
}

#[test]
#[ignore = "reads the JUnit reports a CI run wrote (scripts/test.sh runs it)"]
fn every_junit_report_is_well_formed_and_none_failed() {
    let dir = junit_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no JUnit report in {}", dir.display());
    let mut problems = Vec::new();
    for f in &files {
        match check_file(f) {
            Ok(s) => println!(
                "{}: {} case(s), {} skipped, none failed",
                f.display(),
                s.cases,
                s.skipped
            ),
            Err(e) => problems.push(e.to_string()),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
