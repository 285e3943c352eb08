#!/usr/bin/env bash
# The lookup benchmark in User-Mode Linux: the patched kernel built for
# ARCH=um (cached), `fibneigh bench --only lookup` inside it, natively on the
# host CPU (one CPU, BPF interpreted: UML has no JIT).
#
#   scripts/uml-bench.sh [--profile tiny|o2] [--patches DIR] [extra `fibneigh bench` options, e.g. --rounds 15]
#
# --profile: tiny (default; tinyconfig's -Os) or o2 (kernel-patches/config-o2
# on top: -O2, as distributions build). --patches: another series directory
# (default kernel-patches/), e.g. an earlier revision taken from git.
# Writes target/bench-uml/lookup.json and .svg (target/bench-uml/o2/ for
# o2); prints the host's load average before and after (figures taken on a
# busy host spread more).
set -euo pipefail
cd "$(dirname "$0")/.."
kernel=(--arch um)
profile=tiny
out=target/bench-uml
while [ $# -gt 0 ]; do
	case $1 in
	--profile)
		case ${2:-} in
		tiny) ;;
		o2) out=target/bench-uml/o2 ;;
		*) echo "uml-bench.sh: --profile must be tiny or o2, not '${2:-}'" >&2; exit 2 ;;
		esac
		profile=$2
		shift 2
		;;
	--patches)
		[ -f "${2:-}/series" ] || { echo "uml-bench.sh: --patches needs a directory with a series file, not '${2:-}'" >&2; exit 2; }
		kernel+=(--patches "$(cd "$2" && pwd)")
		shift 2
		;;
	*) break ;;
	esac
done
# Given always: fibneigh's own default profile is o2.
kernel+=(--profile "$profile")
cargo build -q --bin fibneigh
bin=$PWD/target/debug/fibneigh
mkdir -p "$out"
"$bin" vm build "${kernel[@]}" >/dev/null
echo "host load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" vm run "${kernel[@]}" --timeout 3600 -- \
	"$bin" bench --only lookup --json "$out/lookup.json" --svg "$out/lookup.svg" "$@"
echo "host load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
