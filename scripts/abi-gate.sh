#!/usr/bin/env bash
# The uAPI layout gate: net/core/filter.o must build, base and series, on
# the ABIs where struct bpf_fib_lookup's layout is easiest to break:
#
#   arm-oabi  ARCH=arm footbridge_defconfig (CONFIG_AEABI=n): structs and
#             unions are padded to 4 bytes unless packed; the kernel's
#             static_asserts on the struct's size and dport's offset fire
#   i386      ARCH=i386 i386_defconfig: 32-bit x86
#
#   scripts/abi-gate.sh BASE [REV]
#
# BASE is 7.3 or 6.12; the tree is the pipeline's (`fibneigh vm tree`),
# whose HEAD is the committed series on the tag fibneigh-base. REV (a
# commit of that tree, e.g. an older version of the series in a branch)
# is checked instead of HEAD. Exit 0 if the base and REV build on both
# ABIs; 1 if REV fails on one (the base building there); 2 on bad input or
# if the base itself does not build.
#
# Builds run in a scratch worktree and build directories under
# <cache>/abi-gate, with the project's ccache; the pipeline's tree and its
# build are not touched.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] && [ $# -le 2 ] || {
	echo "usage: scripts/abi-gate.sh BASE [REV]" >&2
	exit 2
}
base=$1
case $base in 7.3 | 6.12) ;; *)
	echo "abi-gate: BASE must be 7.3 or 6.12 (got '$base')" >&2
	exit 2
	;;
esac
for t in arm-linux-gnueabi-gcc gcc ccache make; do
	command -v "$t" >/dev/null || {
		echo "abi-gate: $t is missing: run scripts/setup.sh" >&2
		exit 2
	}
done
bin=${FIBNEIGH:-$repo/target/debug/fibneigh}
tree=$("$bin" vm tree --base "$base")
rev=$(git -C "$tree" rev-parse --verify "${2:-HEAD}^{commit}") || {
	echo "abi-gate: '${2:-HEAD}' is not a commit of $tree" >&2
	exit 2
}
base_rev=$(git -C "$tree" rev-parse --verify "fibneigh-base^{commit}")
cache=${FIBNEIGH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fibneigh}
work=$cache/abi-gate/$base
src=$work/src
mkdir -p "$work"
export CCACHE_DIR=$cache/ccache
# as the kernel builds use it (vm/src/kbuild.rs): no second preprocessor
# pass on a miss. Only CC goes through ccache here, for kernel objects
# (-nostdinc), so no system header is missing from the dependency files
# and the stamp kbuild.rs adds for host programs is not needed.
export CCACHE_DEPEND=1

# A detached worktree of the pipeline's tree, made once and reused.
if ! git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
	rm -rf "$src"
	git -C "$tree" worktree prune
	git -C "$tree" worktree add -q --detach "$src" "$base_rev"
fi

# Build filter.o of commit $2 for ABI $1; prints make's errors on failure.
build() {
	local abi=$1 commit=$2 out=$work/$1 args defconfig log
	case $abi in
	arm-oabi)
		args=(ARCH=arm CROSS_COMPILE=arm-linux-gnueabi- "CC=ccache arm-linux-gnueabi-gcc")
		defconfig=footbridge_defconfig
		;;
	i386)
		args=(ARCH=i386 "CC=ccache gcc")
		defconfig=i386_defconfig
		;;
	esac
	git -C "$src" checkout -q --detach "$commit"
	mkdir -p "$out"
	log=$out/make.log
	if [ ! -f "$out/.config" ]; then
		make -C "$src" O="$out" "${args[@]}" "$defconfig" >"$log" 2>&1
	fi
	# filter.c and bpf.h change between the commits; kbuild sees the
	# checkout's new mtimes and rebuilds what depends on them.
	if make -C "$src" O="$out" "${args[@]}" -j"$(nproc)" net/core/filter.o >"$log" 2>&1; then
		return 0
	fi
	grep -E 'error|Error' "$log" | head -n 15 >&2
	return 1
}

status=0
for abi in arm-oabi i386; do
	t0=$SECONDS
	if ! build "$abi" "$base_rev"; then
		echo "abi-gate: $base $abi: the base itself does not build filter.o (log: $work/$abi/make.log)" >&2
		exit 2
	fi
	if build "$abi" "$rev"; then
		echo "abi-gate: $base $abi: filter.o builds at base and at ${rev:0:12} ($((SECONDS - t0)) s)"
	else
		echo "abi-gate: $base $abi: filter.o FAILS at ${rev:0:12} and builds at base (log: $work/$abi/make.log)" >&2
		status=1
	fi
done
exit $status
