#!/usr/bin/env bash
# Install what building and testing mysql-quiesce needs on Debian/Ubuntu, when missing (idempotent).
#
#   scripts/install-deps.sh          system packages + Rust toolchain check
#   scripts/install-deps.sh --dev    also require rustfmt and clippy (scripts/test.sh uses this)
#
# The packaged MariaDB service is not needed (tests start their own throwaway servers); this script
# keeps package installation from starting it, and leaves it alone if it already runs.
set -euo pipefail

MIN_RUST=1.85
PACKAGES=(
    mariadb-server mariadb-client # mariadbd, mariadb-install-db for throwaway test servers
    galera-4 # the wsrep provider: a single-node Galera cluster in tests/locking.rs
    xfsprogs e2fsprogs btrfs-progs util-linux # loop-mounted scratch filesystems, losetup, fsfreeze
    procps build-essential pkg-config ca-certificates
    strace # tests watch (and fault) the real FIFREEZE/FITHAW calls
    openssl # certificates for the TLS tests
    debootstrap # scripts/server-matrix.sh (MySQL 9 / MariaDB 11 from Debian sid)
    python3 python3-venv # moto (local EC2 endpoint) and the AWS CLI for the hook tests
    lintian rpm man-db # scripts/check-packages.sh
    qemu-guest-agent # qemu-ga, run without a VM on a unix socket: the fsfreeze hook tests (tests/frameworks.rs)
    python3-yaml # tests/frameworks.rs reads the Velero, Kanister and DLM YAML examples as their frameworks would
)
# moto's EC2 server and the AWS CLI come from PyPI, in a venv of their own (Debian's pip
# refuses system-wide installs); scripts/test.sh puts its bin/ on PATH.
TOOLS_VENV=${MYSQL_QUIESCE_TOOLS_VENV:-/var/cache/mysql-quiesce-tools/venv}

want_dev=0
case ${1:-} in
    --dev) want_dev=1 ;;
    "") ;;
    *)
        echo "usage: $0 [--dev]" >&2
        exit 2
        ;;
esac

say() { echo "install-deps: $*" >&2; }
die() {
    echo "install-deps: error: $*" >&2
    exit 1
}

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null; then
        SUDO=(sudo)
    fi
fi

missing=()
for p in "${PACKAGES[@]}"; do
    if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true) != installed ]]; then
        missing+=("$p")
    fi
done

# Removes the temporary policy-rc.d (if we created it) on every exit path.
created_policy=""
cleanup() {
    if [[ -n $created_policy ]]; then
        "${SUDO[@]}" rm -f "$created_policy" || say "warning: could not remove $created_policy"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ((${#missing[@]} > 0)); then
    command -v apt-get >/dev/null || die "apt-get not found; install these by hand: ${missing[*]}"
    if [[ $(id -u) -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
        die "not root and no sudo; as root run: apt-get update && apt-get install -y ${missing[*]}"
    fi
    say "installing: ${missing[*]}"
    # Keep package scripts from starting the distro MariaDB service: we never use it.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        created_policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\n# temporary, from mysql-quiesce scripts/install-deps.sh\nexit 101\n' |
            "${SUDO[@]}" tee "$created_policy" >/dev/null
        "${SUDO[@]}" chmod 755 "$created_policy"
    fi
    log=$(mktemp)
    if ! { "${SUDO[@]}" apt-get update -q &&
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}"; } >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        rm -f "$log"
        die "package installation failed (output above)"
    fi
    rm -f "$log"
fi

for tool in mariadbd mariadb-install-db mariadb mkfs.xfs mkfs.ext4 losetup fsfreeze cc pkg-config openssl qemu-ga; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null ||
        die "'$tool' is still missing after package installation"
done

# Rust: rustup's default location is often not on PATH in non-login shells (CI, sudo).
if ! command -v cargo >/dev/null && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
rust_help="install it with rustup: curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy; then: . \"\$HOME/.cargo/env\""
command -v cargo >/dev/null || die "Rust toolchain (cargo) not found; $rust_help"
cargo_version=$(cargo --version | awk '{ print $2 }')
if ! printf '%s\n%s\n' "$MIN_RUST" "${cargo_version%%-*}" | sort -V -C; then
    die "Rust $cargo_version is too old (need >= $MIN_RUST); run: rustup update stable"
fi
if ((want_dev)); then
    for comp in fmt clippy; do
        cargo "$comp" --version >/dev/null 2>&1 ||
            die "cargo $comp is missing; run: rustup component add ${comp/fmt/rustfmt}"
    done
fi

if ((want_dev)) && ! [[ -x $TOOLS_VENV/bin/moto_server && -x $TOOLS_VENV/bin/aws ]]; then
    say "installing moto[server] and awscli into $TOOLS_VENV (once per machine)"
    log=$(mktemp)
    if ! { "${SUDO[@]}" python3 -m venv "$TOOLS_VENV" &&
        "${SUDO[@]}" "$TOOLS_VENV/bin/pip" install -q 'moto[server]' awscli; } >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        rm -f "$log"
        die "installing moto and the AWS CLI failed (output above)"
    fi
    rm -f "$log"
fi

if ((${#missing[@]} > 0)); then
    say "ok (installed ${#missing[@]} packages; Rust $cargo_version)"
else
    say "ok (all packages present; Rust $cargo_version)"
fi
