#!/usr/bin/env bash
# The main job on a fresh machine: install what is needed, build the patched
# kernel (cached by content), boot it and show what it offers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --bin fibneigh
bin=$PWD/target/release/fibneigh
"$bin" vm build
"$bin" vm run -- "$bin" probe
