#!/usr/bin/env bash
# The fresh-root tier: prove that scripts/setup.sh installs everything the
# project needs, on every run.
#
#   scripts/fresh-root.sh BZIMAGE [FIBNEIGH]
#
# 1. A minimal Debian 12 root (mmdebstrap, variant minbase) from the mirror
#    this machine's own apt configuration names, with this machine's apt
#    Acquire options and its extra CA certificates: the machine, nothing of
#    the project.
# 2. scripts/setup.sh inside it, as root, with the host's Rust toolchain
#    bound read-only (a fresh machine has rustup's).
# 3. From inside that root: the project's binary boots BZIMAGE (the cached
#    patched kernel) with the virtme-ng setup.sh installed and runs
#    `uname -r` and `fibneigh probe --expect-patched` in the guest.
#
# Anything the project needs that setup.sh did not install fails step 2
# (setup.sh's own check of every program) or step 3, by name.
#
# Everything runs in a private mount namespace, so no mount outlives the
# script, whatever stops it; the root is removed on exit. The minbase root
# (a tarball) and the .deb files setup.sh downloads are cached under
# <cache>/fresh-root, keyed by the apt sources and options.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
usage() {
	echo "usage: scripts/fresh-root.sh BZIMAGE [FIBNEIGH]" >&2
	exit 2
}
[ $# -ge 1 ] || usage
kernel=$(realpath -e "$1") || {
	echo "fresh-root: kernel image '$1' does not exist" >&2
	exit 2
}
bin=$(realpath -e "${2:-$repo/target/debug/fibneigh}") || {
	echo "fresh-root: fibneigh binary '${2:-$repo/target/debug/fibneigh}' does not exist (cargo build first)" >&2
	exit 2
}
[ "$(id -u)" = 0 ] || {
	echo "fresh-root: needs root (chroot, mounts)" >&2
	exit 2
}
command -v mmdebstrap >/dev/null || {
	echo "fresh-root: mmdebstrap is missing: run scripts/setup.sh" >&2
	exit 2
}
cache=${FIBNEIGH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fibneigh}
store=$cache/fresh-root
mkdir -p "$store/archives/partial"

# The machine's Debian 12 sources, as its apt reads them (one-line and
# deb822 files alike), main component, binary packages.
mapfile -t sources < <(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT) $(TARGET_OF) $(IDENTIFIER)' |
	awk '$3 == "main" && $4 == "deb" && $5 == "Packages" && $2 ~ /^bookworm(-updates|-security)?$/ {print "deb " $1 " " $2 " main"}' |
	sort -u)
if ((${#sources[@]} == 0)); then
	echo "fresh-root: this machine's apt configuration names no Debian 12 (bookworm) main source" >&2
	exit 1
fi
# The machine's Acquire options (e.g. a snapshot mirror's expired
# Valid-Until), copied as files.
aptopts=()
for f in /etc/apt/apt.conf.d/*; do
	[ -f "$f" ] && grep -q '^[[:space:]]*Acquire::' "$f" && aptopts+=("--aptopt=$f")
done
key=$( (printf '%s\n' "${sources[@]}" && cat "${aptopts[@]#--aptopt=}" /dev/null) | sha256sum | cut -c1-16)
base=$store/minbase-bookworm-$key.tar

if [ ! -s "$base" ]; then
	echo "fresh-root: building a minimal Debian 12 root from ${sources[*]}"
	t0=$SECONDS
	mmdebstrap --quiet --variant=minbase --format=tar --include=ca-certificates \
		"${aptopts[@]}" bookworm "$base.part" "${sources[@]}"
	mv "$base.part" "$base"
	echo "fresh-root: minimal root cached as $base ($((SECONDS - t0)) s)"
else
	echo "fresh-root: minimal root from the cache: $base"
fi

root=$(mktemp -d "$store/root.XXXXXX")
cleanup() {
	# The mounts live in the private namespace below and are gone with
	# it; nothing from the host is mounted here when this runs.
	rm -rf --one-file-system "$root"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
tar -C "$root" -xf "$base"

# What a machine of this kind has before anyone installs the project's
# packages: its DNS, its CA certificates, its apt options, and no daemons
# started by package scripts in a chroot.
cp /etc/resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root/usr/local/share/ca-certificates"
cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
for f in "${aptopts[@]#--aptopt=}"; do cp "$f" "$root/etc/apt/apt.conf.d/"; done
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
cp "$bin" "$root/usr/local/bin/fibneigh"

rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_home=${CARGO_HOME:-$HOME/.cargo}
work=/work/fibneigh
inner=$(
	cat <<EOF
set -eu
update-ca-certificates >/dev/null 2>&1 || true
cd $work
t0=\$(date +%s)
scripts/setup.sh
echo "fresh-root: setup.sh took \$((\$(date +%s) - t0)) s"
# No vng on PATH, only the venv's: the binary must find it itself.
if command -v vng >/dev/null 2>&1; then
	echo "fresh-root: a vng is on PATH (\$(command -v vng)); setup.sh links nothing" >&2
	exit 1
fi
if ! fibneigh vm run --kernel /kernel/bzImage --timeout 600 --keep-console --json /tmp/run.json -- \
	sh -c 'uname -r && fibneigh probe --expect-patched'; then
	# The console log lives in this root, which is removed on exit.
	for log in /var/tmp/fibneigh-cache/logs/console-*.log; do
		[ -f "\$log" ] && { echo "--- \$log (last 40 lines)"; tail -n 40 "\$log"; }
	done >&2
	exit 1
fi
grep -q '"vng": "/opt/fibneigh/virtme-ng/bin/vng"' /tmp/run.json || {
	echo "fresh-root: the run's manifest does not name the project's virtme-ng:" >&2
	cat /tmp/run.json >&2
	exit 1
}
echo "fresh-root: the guest booted with the virtme-ng setup.sh installed"
EOF
)

# The private mount namespace: every mount below dies with it.
unshare --mount --propagation private -- bash -euo pipefail -c '
root=$1 repo=$2 kernel=$3 archives=$4 rustup_home=$5 cargo_home=$6 work=$7 inner=$8
bind() { mkdir -p "$root$2"; mount --bind "$1" "$root$2"; [ "${3:-}" = ro ] && mount -o remount,bind,ro "$root$2"; true; }
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/tmp"
mount -t tmpfs tmpfs "$root/run"
bind "$archives" /var/cache/apt/archives
bind "$rustup_home" /root/.rustup ro
bind "$cargo_home" /root/.cargo ro
bind "$repo" "$work" ro
mkdir -p "$root/kernel" && touch "$root/kernel/bzImage"
mount --bind "$kernel" "$root/kernel/bzImage"
exec chroot "$root" /usr/bin/env -i \
	HOME=/root TERM=dumb LANG=C.UTF-8 \
	PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	RUSTUP_HOME=/root/.rustup CARGO_HOME=/root/.cargo RUSTUP_AUTO_INSTALL=0 \
	FIBNEIGH_CACHE=/var/tmp/fibneigh-cache \
	SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
	PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
	NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
	/bin/bash -c "$inner"
' fresh-root "$root" "$repo" "$kernel" "$store/archives" "$rustup_home" "$cargo_home" "$work" "$inner"
echo "fresh-root: passed"
