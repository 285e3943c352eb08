#!/usr/bin/env bash
# Why guests under TCG run their vCPUs in one host thread (QEMU's
# `-accel tcg,thread=single`, `fibneigh vm run --tcg-threads`): boots the
# patched kernel (`vm run`'s default build, -O2; built first if it is not
# cached) BOOTS times with its 2 vCPUs in one host thread and BOOTS times
# with a thread each, every boot running `fibneigh dispatcher-stress
# --seconds SECONDS` (test runs that rewrite the XDP dispatcher, from both
# vCPUs). Prints one line per boot, then per mode how many boots died with
# the dispatcher's `Oops: int3`.
#
#   scripts/tcg-threads.sh [BOOTS [SECONDS]]     (default: 3 boots, 240 s)
#
# Exit status: 0 when no boot with one thread died, 1 when one did (the
# default is then not safe), 2 on bad arguments or a boot that failed for
# another reason (its console log is named). The multi-thread boots are
# there to show the hazard; dying there is the finding, not a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
boots=${1:-3}
seconds=${2:-240}
case $boots in '' | *[!0-9]* | 0) echo "tcg-threads.sh: BOOTS must be a positive number, not '$boots'" >&2; exit 2 ;; esac
case $seconds in '' | *[!0-9]* | 0) echo "tcg-threads.sh: SECONDS must be a positive number, not '$seconds'" >&2; exit 2 ;; esac
cargo build -q --bin fibneigh || { echo "tcg-threads.sh: cargo build failed" >&2; exit 2; }
# Built (or found in the cache) first, so that no boot's time includes it.
target/debug/fibneigh vm build >/dev/null || { echo "tcg-threads.sh: vm build failed" >&2; exit 2; }
out=target/tcg-threads
mkdir -p "$out"
declare -A died=([single]=0 [multi]=0)
for mode in single multi; do
	for ((i = 1; i <= boots; i++)); do
		log=$out/$mode-$i.log
		start=$SECONDS
		rc=0
		target/debug/fibneigh vm run --accel tcg --cpus 2 --tcg-threads "$mode" \
			--timeout $((seconds + 300)) -- \
			target/debug/fibneigh dispatcher-stress --seconds "$seconds" >"$log" 2>&1 || rc=$?
		took=$((SECONDS - start))
		if [ "$rc" = 0 ]; then
			runs=$(sed -n 's/^\([0-9]*\) test runs in .*/\1/p' "$log")
			echo "$mode boot $i: lived, ${runs:-?} test runs ($took s)"
			continue
		fi
		console=$(sed -n 's/^.*console log: \(.*\)$/\1/p' "$log" | tail -n1)
		if [ -n "$console" ] && grep -q 'Oops: int3' "$console" &&
			grep -q 'RIP: .*bpf_dispatcher_xdp_func' "$console"; then
			died[$mode]=$((died[$mode] + 1))
			when=$(grep -m1 'Oops: int3' "$console" | sed -n 's/^\[ *\([0-9.]*\)\].*/\1/p')
			echo "$mode boot $i: died, Oops: int3 in bpf_dispatcher_xdp_func ${when:+at $when s }($took s; $console)"
			continue
		fi
		echo "tcg-threads.sh: $mode boot $i failed otherwise (exit $rc): $log${console:+, console log $console}" >&2
		exit 2
	done
done
echo "one host thread: ${died[single]} of $boots boots died; a thread per vCPU: ${died[multi]} of $boots"
[ "${died[single]}" = 0 ]
