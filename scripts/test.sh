#!/usr/bin/env bash
# The full test run (README's test command, and CI via .ci/run):
#   dependencies, cargo fmt --check, clippy -D warnings, cargo test (CI=true: a missing server or
#   tool fails), then the server matrix (MySQL 9.x, MariaDB 11.x from Debian sid, scripts/server-matrix.sh).
# A matrix setup/download failure fails the run (its log is printed), as does any failure
# against a matrix server.
#
# Environment: MYSQL_QUIESCE_BIN=PATH runs the matrix with that binary; MATRIX=0 skips the server matrix (reported as skipped); MATRIX_CACHE, MATRIX_MIRROR see
# scripts/server-matrix.sh.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
export CI=true
if ! command -v cargo >/dev/null && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

MQ_BIN=${MYSQL_QUIESCE_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/debug/mysql-quiesce}
RESULTS=()
FAILED=0
WORK=""
MATRIX_RUNNING="" # "flavor dir" of the matrix server to stop on exit (one runs at a time)

stop_matrix_server() {
    if [[ -n $MATRIX_RUNNING ]]; then
        # shellcheck disable=SC2086 # "flavor dir" splits into two arguments
        if ! bash "$REPO/scripts/server-matrix.sh" stop $MATRIX_RUNNING >/dev/null; then
            echo "test.sh: error: could not stop matrix server '$MATRIX_RUNNING'" >&2
            return 1
        fi
        MATRIX_RUNNING=""
    fi
}

cleanup() {
    stop_matrix_server || true
    if [[ -n $WORK ]]; then
        rm -rf "$WORK"
    fi
}
on_exit() {
    local rc=$?
    cleanup
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

banner() { printf '\n==== %s ====\n' "$*"; }

# step NAME COMMAND...: runs COMMAND, records PASS/FAIL with its duration; never aborts the run.
step() {
    local name=$1 t0=$SECONDS rc=0
    shift
    banner "$name"
    "$@" || rc=$?
    if ((rc == 0)); then
        RESULTS+=("PASS  $name ($((SECONDS - t0)) s)")
    else
        RESULTS+=("FAIL  $name ($((SECONDS - t0)) s, exit $rc)")
        FAILED=1
    fi
    return 0
}

free_port() {
    local port
    for ((port = 33100 + RANDOM % 800; ; port++)); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

# End-to-end check of the built binary against one matrix server: the snapshot command must see the
# server locked (an INSERT from another session times out) and binlog coordinates; afterwards writes
# work again and the report is valid JSON.
matrix_check() {
    local flavor=$1 root="${MATRIX_CACHE:-/var/cache/mysql-quiesce-matrix}/sid-$1" dir port client
    dir="$WORK/$flavor"
    mkdir -p "$dir"
    port=$(free_port)
    MATRIX_RUNNING="$flavor $dir"
    bash scripts/server-matrix.sh start "$flavor" "$port" "$dir" >/dev/null || return 1
    client="chroot $root $flavor --no-defaults -h127.0.0.1 -P$port -uroot"

    $client -e "CREATE DATABASE mq; CREATE TABLE mq.t (id INT PRIMARY KEY AUTO_INCREMENT, v INT);
                INSERT INTO mq.t (v) VALUES (1);" || return 1
    # shellcheck disable=SC2016 # the snapshot command expands its own variables
    MQ_CLIENT=$client "$MQ_BIN" -h 127.0.0.1 -P "$port" -u root --report "$dir/report.json" -- sh -c '
            set -u
            [ -n "${MYSQL_QUIESCE_BINLOG_FILE:-}" ] || { echo "no MYSQL_QUIESCE_BINLOG_FILE" >&2; exit 1; }
            # Only a lock wait timeout proves the lock: any other failure is not one.
            out=$($MQ_CLIENT -e "SET SESSION lock_wait_timeout=1; INSERT INTO mq.t (v) VALUES (2)" 2>&1) &&
                { echo "INSERT succeeded while the server should be locked" >&2; exit 1; }
            case $out in
                *"Lock wait timeout exceeded"*) ;;
                *) echo "the probe INSERT failed, but not with a lock wait timeout: $out" >&2; exit 1 ;;
            esac
            echo "locked at $MYSQL_QUIESCE_BINLOG_FILE:$MYSQL_QUIESCE_BINLOG_POS"
            touch "$1"' snapshot "$dir/snapshot-ran" || return 1
    # Exit 0 alone proves nothing: the snapshot command must have run (and passed its checks).
    [[ -f $dir/snapshot-ran ]] ||
        { echo "mysql-quiesce exited 0 but the snapshot command did not complete" >&2; return 1; }
    $client -e "SET SESSION lock_wait_timeout=5; INSERT INTO mq.t (v) VALUES (3)" ||
        { echo "INSERT failed after mysql-quiesce finished: server left locked?" >&2; return 1; }
    [[ -s $dir/report.json ]] || { echo "no report written to $dir/report.json" >&2; return 1; }
    python3 -m json.tool "$dir/report.json" >/dev/null || { echo "report is not valid JSON" >&2; return 1; }

    # Tests that opt in to the matrix read these variables.
    if [[ -f tests/server_matrix.rs ]]; then
        MYSQL_QUIESCE_MATRIX_FLAVOR=$flavor MYSQL_QUIESCE_MATRIX_HOST=127.0.0.1 \
            MYSQL_QUIESCE_MATRIX_PORT=$port MYSQL_QUIESCE_MATRIX_SOCKET="$root$(readlink -f "$dir")/sock" \
            cargo test --locked --test server_matrix || return 1
    fi
    stop_matrix_server
}

t_start=$SECONDS
step "install dependencies" bash scripts/install-deps.sh --dev
if ((FAILED)); then
    echo "test.sh: dependencies missing; not running the tests" >&2
    exit 1
fi
# moto_server and aws for tests/hooks_library.rs (installed by install-deps.sh --dev).
PATH="${MYSQL_QUIESCE_TOOLS_VENV:-/var/cache/mysql-quiesce-tools/venv}/bin:$PATH"
step "cargo fmt --check" cargo fmt --check
step "cargo clippy" cargo clippy --all-targets --locked -- -D warnings
step "cargo test" cargo test --locked
# The matrix runs the binary itself; cargo test builds it only when an integration test needs it.
step "cargo build" cargo build --locked
# Packages: build the .deb and .rpm, install the .deb, lintian, rpm file list.
step "packages" bash scripts/check-packages.sh
# Benchmark smoke run, so bench/ does not rot (no timing assertions).
if [[ -f bench/run.sh ]]; then
    step "benchmark smoke run" bash bench/run.sh --quick
fi

if [[ ${MATRIX:-1} == 0 ]]; then
    RESULTS+=("SKIP  server matrix (MATRIX=0)")
else
    banner "server matrix setup"
    t0=$SECONDS
    if bash scripts/server-matrix.sh setup; then
        RESULTS+=("PASS  server matrix setup ($((SECONDS - t0)) s)")
        WORK=$(mktemp -d /tmp/mq-matrix.XXXXXX)
        for flavor in mysql mariadb; do
            version=$(bash scripts/server-matrix.sh versions | sed -n "s/^$flavor: //p")
            step "matrix: $version" matrix_check "$flavor"
            # After a failed check the server still runs; stop it before the next flavour starts.
            stop_matrix_server || FAILED=1
        done
    else
        # Without the matrix, MySQL is not tested at all: a failure, never a skip.
        cat >&2 <<'EOF'

!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! SERVER MATRIX NOT RUN: setting up the Debian sid chroots failed (see the message above).   !!
!! MySQL 9.x and MariaDB 11.x were NOT tested: this run FAILS (MATRIX=0 skips it on purpose). !!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
EOF
        RESULTS+=("FAIL  server matrix setup ($((SECONDS - t0)) s): MySQL 9 / MariaDB 11 NOT tested")
        FAILED=1
    fi
fi

banner "summary ($((SECONDS - t_start)) s)"
printf '%s\n' "${RESULTS[@]}"
if ((FAILED)); then
    echo "RESULT: FAILED"
    exit 1
fi
echo "RESULT: OK"
