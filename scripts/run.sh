#!/usr/bin/env bash
# The main job on a fresh machine: install what is needed, build the patched
# kernel (cached by content), boot it and show what it offers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --bin fibneigh
cargo build --release -p fibneigh-icount-plugin
bin=$PWD/target/release/fibneigh
"$bin" vm build
"$bin" vm run -- "$bin" probe
# Every scenario x policy x family x hook, in the patched kernel: prints the
# table, writes JSON and one SVG timeline per scenario.
"$bin" vm run --timeout 1800 -- "$bin" matrix --json target/matrix-vm/matrix.json --svg-dir target/matrix-vm/svg
# The benchmarks in the patched kernel (emulated: ratios only): one table,
# JSON and an SVG plot; BENCHMARKS.md explains them.
"$bin" vm run --timeout 3600 -- "$bin" bench --json target/bench-vm/bench.json --svg target/bench-vm/bench.svg
# Deterministic cost: instructions per bpf_fib_lookup() call (QEMU TCG
# plugin), against the pristine base: at -O2 (as distributions build) and
# at -Os (the tiny config).
"$bin" vm icount --with-pristine --profile o2 --json target/icount/icount-o2.json
"$bin" vm icount --with-pristine --profile tiny --json target/icount/icount-os.json
# The patched kernel on the real CPU: User-Mode Linux, lookup cost (at -O2,
# the default profile; scripts/uml-bench.sh measures -Os too).
"$bin" vm build --arch um
"$bin" vm run --arch um --timeout 1800 -- "$bin" bench --only lookup --json target/bench-uml/o2/lookup.json --svg target/bench-uml/o2/lookup.svg
