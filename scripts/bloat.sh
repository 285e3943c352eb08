#!/usr/bin/env bash
# Object growth of the series, the kernel way: scripts/bloat-o-meter on
# net/core/filter.o built from the pristine and from the patched sources of
# the pipeline's tree, with the same configuration (the tiny profile the
# benchmarks use), plus the text size of both objects.
#
#   scripts/bloat.sh [7.3|6.12]        (default 7.3)
#
# Both objects are left in target/bloat/<base>/. The tree's files and their
# modification times are restored, so the next kernel build recompiles
# nothing because of this.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-7.3}
cargo build -q --bin fibneigh
# The binary knows the bases (and refuses an unknown one, naming them).
tree=$(target/debug/fibneigh vm tree --base "$base")
out=$PWD/target/bloat/$base
mkdir -p "$out"
files=(net/core/filter.c include/uapi/linux/bpf.h)
cd "$tree"
if git diff --quiet fibneigh-base -- net/core/filter.c; then
	echo "bloat.sh: $tree's filter.c is the pristine one: is the series applied?" >&2
	exit 1
fi
restore() {
	local f
	for f in "${files[@]}"; do
		[ -f "$f.bloat" ] && mv "$f.bloat" "$f"
	done
	return 0
}
trap restore EXIT
for f in "${files[@]}"; do
	cp -p "$f" "$f.bloat"
	git show "fibneigh-base:$f" >"$f"
done
make -s net/core/filter.o
cp net/core/filter.o "$out/filter-pristine.o"
restore
touch net/core/filter.c
make -s net/core/filter.o
cp net/core/filter.o "$out/filter-patched.o"
echo "bloat.sh: $base, net/core/filter.o, $(grep -E '^CONFIG_(CC_VERSION_TEXT)=' .config | cut -d= -f2-)"
./scripts/bloat-o-meter "$out/filter-pristine.o" "$out/filter-patched.o"
size "$out/filter-pristine.o" "$out/filter-patched.o"
