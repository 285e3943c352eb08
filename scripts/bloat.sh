#!/usr/bin/env bash
# Object growth of the series, the kernel way: scripts/bloat-o-meter on
# net/core/filter.o built from the pristine and from the patched sources of
# the pipeline's tree, with the same configuration, plus the text size of
# both objects.
#
#   scripts/bloat.sh [7.3|6.12] [o2|tiny]     (default 7.3 o2)
#
# o2 is the tiny config plus kernel-patches/config-o2 (-O2, as distributions
# build), tiny the fragment alone (-Os): the profiles of `fibneigh vm
# icount`. Both objects are left in target/bloat/<base>-<profile>/. The
# tree's files, its .config and their modification times are restored.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-7.3}
profile=${2:-o2}
case $profile in
o2 | tiny) ;;
*) echo "bloat.sh: profile must be o2 or tiny, not '$profile'" >&2; exit 2 ;;
esac
cargo build -q --bin fibneigh
# The binary knows the bases (and refuses an unknown one, naming them),
# their series' directories and the tree (which this applies the series to).
patches=$(target/debug/fibneigh vm series --base "$base" --print dir)
tree=$(target/debug/fibneigh vm tree --base "$base")
out=$PWD/target/bloat/$base-$profile
fragments=("$patches/config")
[ "$profile" = o2 ] && fragments+=("$patches/config-o2")
mkdir -p "$out"
files=(net/core/filter.c include/uapi/linux/bpf.h .config)
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
	# the generated headers follow the restored .config again
	make -s olddefconfig >/dev/null 2>&1 || true
	return 0
}
trap restore EXIT
for f in "${files[@]}"; do
	cp -p "$f" "$f.bloat"
done
make -s tinyconfig >/dev/null
scripts/kconfig/merge_config.sh -m .config "${fragments[@]}" >/dev/null
make -s olddefconfig
want=CONFIG_CC_OPTIMIZE_FOR_SIZE
[ "$profile" = o2 ] && want=CONFIG_CC_OPTIMIZE_FOR_PERFORMANCE
grep -qx "$want=y" .config || { echo "bloat.sh: the $profile config did not get $want" >&2; exit 1; }
for f in net/core/filter.c include/uapi/linux/bpf.h; do
	git show "fibneigh-base:$f" >"$f"
done
make -s net/core/filter.o
cp net/core/filter.o "$out/filter-pristine.o"
for f in net/core/filter.c include/uapi/linux/bpf.h; do
	mv "$f.bloat" "$f"
done
# Newer than the pristine object for make, then its own time again.
touch -r net/core/filter.c "$out/.filter.c.time"
touch net/core/filter.c
make -s net/core/filter.o
touch -r "$out/.filter.c.time" net/core/filter.c
rm -f "$out/.filter.c.time"
cp net/core/filter.o "$out/filter-patched.o"
echo "bloat.sh: $base, $profile ($want), net/core/filter.o, $(grep -E '^CONFIG_(CC_VERSION_TEXT)=' .config | cut -d= -f2-)"
./scripts/bloat-o-meter "$out/filter-pristine.o" "$out/filter-patched.o"
size "$out/filter-pristine.o" "$out/filter-patched.o"
