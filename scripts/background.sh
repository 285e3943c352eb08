#!/bin/sh
# One background job of a CI run (scripts/test.sh): a command at the
# lowest priority that stops when the run that started it is gone.
#
#   setsid scripts/background.sh PARENT_PID COMMAND [ARG...]
#
# It must lead its own session (setsid): the job is that session's process
# group, which the run stops with one `kill -- -PID`, and which this script
# stops itself if PARENT_PID is gone. A run killed outright (SIGKILL, or a
# CI time limit) runs no EXIT trap, and without this its kernel builds would
# go on writing the shared cache for minutes after it.
#
# A new session is a new scheduler autogroup (CONFIG_SCHED_AUTOGROUP, on in
# Debian's kernels), and a task's nice value only weighs it against tasks of
# its own group: autogroups share the CPU equally. `setsid nice -n 19`
# alone left the foreground one third of the machine beside two background
# jobs, so the job also sets its autogroup's nice (/proc/self/autogroup; a
# process may raise its own). Without autogroups the file does not exist
# and nice alone does the job.
#
# Exit status: the command's; 2 on bad use; 143 if stopped.
set -eu
if [ $# -lt 2 ]; then
	echo "usage: setsid scripts/background.sh PARENT_PID COMMAND [ARG...]" >&2
	exit 2
fi
parent=$1
shift
case $parent in
'' | *[!0-9]* | 0 | 1)
	echo "background.sh: PARENT_PID must be the id of the run's process (got '$parent')" >&2
	exit 2
	;;
esac
# Field 6 of /proc/PID/stat is the session id; comm (field 2, in
# parentheses) is this script's name, which has no space.
sid=$(cut -d' ' -f6 /proc/$$/stat)
if [ "$sid" != $$ ]; then
	echo "background.sh: not the leader of its own session (run it under setsid): it would stop its caller's processes with its own" >&2
	exit 2
fi
# The parent's state and start time (fields 3 and 22 of its stat, counted
# after comm, which may hold spaces): it is gone once it is a zombie, or
# once its id names a process that started at another time.
parent_stat() {
	sed 's/.*) //' "/proc/$parent/stat" 2>/dev/null | cut -d' ' -f1,20
}
stat=$(parent_stat)
started=${stat#* }
if [ -z "$stat" ] || [ "${stat%% *}" = Z ]; then
	echo "background.sh: process $parent (the run that starts this) does not exist" >&2
	exit 2
fi
parent_alive() {
	case $(parent_stat) in
	Z\ * | '') return 1 ;;
	*" $started") return 0 ;;
	*) return 1 ;;
	esac
}
# From here on nothing may end the watchdog early: no -e.
set +e
if [ -e /proc/self/autogroup ] && ! echo 19 >/proc/self/autogroup; then
	echo "background: could not lower the autogroup priority; running at nice 19 only" >&2
fi

# Stop the group (kill 0 sends TERM here too, hence the empty trap), and
# reap the job, so that no zombie of it stays in the group where nothing
# reaps orphans (a container without an init).
stop() {
	trap '' TERM
	kill -TERM 0
	[ -z "${1:-}" ] || echo "$1" >&2
	wait "$job"
	exit 143
}
# Stopped by the run (kill -- -PID reaches the job too) or by hand, with
# TERM or INT (a job started with & ignores INT, so it is stopped with
# TERM here). Set before the job starts, so that no stop finds it unset.
job=
trap 'if [ -n "$job" ]; then stop; fi; exit 143' TERM INT
nice -n 19 "$@" &
job=$!
while kill -0 "$job" 2>/dev/null; do
	if ! parent_alive; then
		stop "background: the run that started this (process $parent) is gone; stopping $*"
	fi
	sleep 2
done
status=0
wait "$job" || status=$?
exit "$status"
