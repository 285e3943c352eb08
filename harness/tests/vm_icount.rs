//! VM tier: `fibneigh vm icount` twice on the series' kernel must give the
//! same instruction counts (the most frequent per-call count of every
//! cell). Needs root, QEMU with plugin support, virtme-ng and the kernel,
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

/// `(row, column) -> instructions` of one `vm icount` run.
fn icount(json: &Path) -> Vec<(String, String, Option<u64>)> {
    let out = Command::new(env!("CARGO_BIN_EXE_fibneigh"))
        .args(["vm", "icount", "--json"])
        .arg(json)
        .output()
        .expect("fibneigh runs");
    eprintln!(
        "--- vm icount -> {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "vm icount failed");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(json).expect("the report")).expect("JSON");
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
#[ignore = "VM tier: boots the kernel twice under TCG with the QEMU plugin"]
fn vm_icount_twice_gives_the_same_counts() {
    build_plugin();
    let dir = tempfile::tempdir().expect("tempdir");
    let first = icount(&dir.path().join("1.json"));
    let second = icount(&dir.path().join("2.json"));
    assert_eq!(first.len(), 40, "8 rows x 5 columns: {first:?}");
    let counted = first.iter().filter(|c| c.2.is_some()).count();
    assert!(
        counted >= 16,
        "flags 0 and SKIP_NEIGH are counted in every row: {first:?}"
    );
    assert_eq!(first, second, "two runs of vm icount differ");
}
