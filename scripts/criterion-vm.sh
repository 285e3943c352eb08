#!/usr/bin/env bash
# The criterion lookup benchmarks (harness/benches/lookup.rs) in the patched
# kernel: built on the host, run in the VM (building inside the emulated
# guest would take far longer). `--profile P` first picks the kernel's
# profile (`fibneigh vm run --profile`; o2 unless given); the other
# arguments go to criterion, e.g.
#   scripts/criterion-vm.sh --measurement-time 1 'v4 REACHABLE'
#   scripts/criterion-vm.sh --profile tiny 'v4 REACHABLE'
# Under TCG the absolute times are emulated; compare flags within a group.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=()
if [ "${1:-}" = --profile ]; then
	[ -n "${2:-}" ] || { echo "criterion-vm.sh: --profile needs a value (fibneigh vm run --help names the profiles)" >&2; exit 2; }
	profile=(--profile "$2")
	shift 2
fi
exe=$(cargo bench -q -p fibneigh --bench lookup --no-run --message-format=json |
	python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "lookup" and m.get("executable"):
        print(m["executable"])
')
[ -n "$exe" ] || { echo "criterion-vm.sh: no benchmark executable was built" >&2; exit 1; }
cargo build -q --bin fibneigh
exec target/debug/fibneigh vm run "${profile[@]}" --timeout 3600 -- "$exe" --bench "$@"
