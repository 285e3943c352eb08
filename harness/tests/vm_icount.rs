//! VM tier: `fibneigh vm icount --with-pristine --pristine-code --check` at
//! -O2 (the o2 profile, as distributions build, the default): flags 0 and
//! SKIP_NEIGH cost at most 2 instructions more than the base's code in
//! every row, every goal measured (`--pristine-code`: the pristine base
//! built on the series' uAPI header, which ccache serves from the series'
//! kernel; it counts as the true base does, README "Measured on this
//! machine"); and the series' counts twice identical. The -Os counts (the
//! tiny profile) are a benchmark (`scripts/run.sh`, BENCHMARKS.md): the
//! -Os kernel is a full build of its own, which does not fit an empty-cache
//! CI run. Needs root, QEMU with plugin support, virtme-ng and the kernel,
//! so it is ignored by a plain `cargo test`; `scripts/test.sh` runs it with
//! `--ignored`. The QEMU plugin is built first if it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn plugin() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_fibneigh")).with_file_name("libfibneigh_icount_plugin.so")
}

fn build_plugin() {
    if plugin().is_file() {
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "fibneigh-icount-plugin"])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the QEMU plugin failed");
    assert!(plugin().is_file(), "{} after the build", plugin().display());
}

/// `(row, column) -> instructions` of one `vm icount` run with `args`.
fn icount(json: &Path, args: &[&str]) -> Vec<(String, String, Option<u64>)> {
    let out = Command::new(env!("CARGO_BIN_EXE_fibneigh"))
        .args(["vm", "icount", "--json"])
        .arg(json)
        .args(args)
        .output()
        .expect("fibneigh runs");
    eprintln!(
        "--- vm icount {args:?} -> {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "vm icount {args:?} failed (exit 1: a goal MISSED)"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(json).expect("the report")).expect("JSON");
    // Two goals under `key`, both measured and met.
    let both_met = |key: &str| {
        let goals = v[key].as_array().expect(key);
        assert_eq!(goals.len(), 2, "{key}: {goals:?}");
        for g in goals {
            assert_eq!(g["met"], true, "{key}: measured and met: {g}");
        }
    };
    if args.contains(&"--with-pristine") {
        // Flags 0 and SKIP_NEIGH against the pristine base.
        both_met("series_goals");
    }
    // The neighbour flags' own goals (NEIGH_STATE, NEIGH_REFRESH).
    both_met("goals");
    let mut cells = Vec::new();
    for row in v["rows"].as_array().expect("rows") {
        for f in row["figures"].as_array().expect("figures") {
            cells.push((
                row["label"].as_str().unwrap_or_default().to_string(),
                f["column"].as_str().unwrap_or_default().to_string(),
                f["insns"].as_u64(),
            ));
        }
    }
    cells
}

#[test]
#[ignore = "VM tier: boots the pristine and patched kernels under TCG with the QEMU plugin"]
fn vm_icount_flags0_within_two_at_o2_and_counts_repeat() {
    build_plugin();
    let dir = tempfile::tempdir().expect("tempdir");
    let o2 = icount(
        &dir.path().join("o2.json"),
        &[
            "--with-pristine",
            "--pristine-code",
            "--check",
            "--profile",
            "o2",
        ],
    );
    assert_eq!(o2.len(), 40, "8 rows x 5 columns: {o2:?}");
    for c in o2.iter().filter(|c| c.1.starts_with("NEIGH_")) {
        assert!(
            c.2.is_some(),
            "the new flags are counted in every row: {c:?}"
        );
    }
    // The series' rows again, from a second boot of the same kernel.
    let again = icount(&dir.path().join("o2-again.json"), &["--profile", "o2"]);
    assert_eq!(o2, again, "two runs of vm icount differ");
}
