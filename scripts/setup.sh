#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian 12 machine.
# Idempotent: packages already present are skipped by apt, virtme-ng by pip.
set -euo pipefail

PKGS=(
	# VM pipeline: booting
	qemu-system-x86 udev busybox-static cpio
	# kernel build
	build-essential flex bison bc libssl-dev libelf-dev dwarves ccache
	rsync kmod git python3
	# kernel gates: rst2man for the helper docs, codespell for checkpatch
	python3-docutils codespell
	# BPF programs and the kernel's selftests
	clang-16 llvm-16 lld-16 libelf-dev zlib1g-dev pkg-config libcap-dev
	# harness
	iproute2 iputils-ping ethtool tcpdump
)

need=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		need+=("$p")
done
if ((${#need[@]})); then
	echo "setup: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
		# A package's postinst can fail on a first configure (seen with
		# the udev/systemd triggers); finish configuring and retry once.
		echo "setup: apt-get install failed; configuring and retrying"
		dpkg --configure -a || true
		apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
fi

VNG_VERSION=1.42
if ! command -v vng >/dev/null 2>&1; then
	echo "setup: installing virtme-ng $VNG_VERSION"
	pip install -q "virtme-ng==$VNG_VERSION"
fi
echo "setup: ok ($(vng --version 2>&1 | head -1))"
