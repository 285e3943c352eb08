#!/usr/bin/env bash
# The lookup benchmark in User-Mode Linux: the patched kernel built for
# ARCH=um (cached), `fibneigh bench --only lookup` inside it, natively on the
# host CPU (one CPU, BPF interpreted: UML has no JIT).
#
#   scripts/uml-bench.sh [extra `fibneigh bench` options, e.g. --rounds 15]
#
# Writes target/bench-uml/lookup.json and .svg; prints the host's load
# average before and after (figures taken on a busy host spread more).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --bin fibneigh
bin=$PWD/target/debug/fibneigh
out=target/bench-uml
mkdir -p "$out"
"$bin" vm build --arch um >/dev/null
echo "host load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" vm run --arch um --timeout 3600 -- \
	"$bin" bench --only lookup --json "$out/lookup.json" --svg "$out/lookup.svg" "$@"
echo "host load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
