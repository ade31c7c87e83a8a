#!/usr/bin/env bash
# A throwaway MariaDB server from this machine's packages, with all its files in one directory.
#
#   throwaway-mariadb.sh start DIR [PORT]   initialise DIR/data, start mariadbd, wait until it answers
#   throwaway-mariadb.sh stop DIR           clean shutdown (kill if it hangs); DIR itself is kept
#
# Root connects without a password over DIR/sock (and 127.0.0.1:PORT when PORT is given). Binary
# logging is on so that binlog coordinates exist. Keep DIR short: a Unix socket path must fit in
# ~107 bytes.
set -euo pipefail

PATH="$PATH:/usr/sbin:/sbin"

die() {
    echo "throwaway-mariadb: error: $*" >&2
    exit 1
}
say() { echo "throwaway-mariadb: $*" >&2; }

usage() { die "usage: $0 start DIR [PORT] | stop DIR"; }

# Set while a server started by this script may run without being handed over to the caller.
STARTED_DIR=""
on_exit() {
    local rc=$?
    if [[ -n $STARTED_DIR ]]; then
        stop_server "$STARTED_DIR" >/dev/null 2>&1 || true
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

admin() {
    local dir=$1
    shift
    mariadb-admin --no-defaults -uroot --socket="$dir/sock" --connect-timeout=2 "$@"
}

start_server() {
    local dir=$1 port=${2:-} net waited
    command -v mariadbd >/dev/null || die "mariadbd not found; run scripts/install-deps.sh"
    command -v mariadb-install-db >/dev/null || die "mariadb-install-db not found; run scripts/install-deps.sh"
    mkdir -p "$dir"
    dir=$(readlink -f "$dir")
    if ((${#dir} + 5 > 100)); then
        die "socket path $dir/sock is too long (${#dir} + 5 bytes, limit 100); use a shorter DIR"
    fi
    if [[ -f $dir/pid ]] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        die "a server already runs in $dir (pid $(cat "$dir/pid")); run: $0 stop $dir"
    fi
    [[ -e $dir/data ]] && die "$dir/data already exists; use a fresh directory"
    if [[ -n $port ]]; then
        if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
            die "PORT must be 1..65535, got '$port'"
        fi
        net=(--port="$port" --bind-address=127.0.0.1)
    else
        net=(--skip-networking)
    fi

    if ! mariadb-install-db --no-defaults --user=root --datadir="$dir/data" \
        --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
        >"$dir/install.log" 2>&1; then
        tail -n 20 "$dir/install.log" >&2
        die "mariadb-install-db failed (log: $dir/install.log)"
    fi
    STARTED_DIR=$dir
    # setsid: the server must not get the caller's terminal signals (Ctrl-C in a demo or test run).
    setsid -f mariadbd --no-defaults --user=root --datadir="$dir/data" --socket="$dir/sock" \
        "${net[@]}" --log-error="$dir/err.log" --pid-file="$dir/pid" \
        --log-bin="$dir/binlog" --server-id=1 </dev/null >/dev/null 2>&1
    waited=0
    until admin "$dir" ping >/dev/null 2>&1; do
        if ((waited >= 60)); then
            tail -n 20 "$dir/err.log" >&2 || true
            die "mariadbd in $dir did not answer within 30 s (log: $dir/err.log)"
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
    STARTED_DIR=""
    say "MariaDB $(admin "$dir" version 2>/dev/null | awk '/^Server version/ { print $3 }') running:" \
        "socket $dir/sock${port:+, 127.0.0.1:$port}, user root, no password"
}

stop_server() {
    local dir=$1 pid n
    [[ -f $dir/pid ]] || { say "no server in $dir (no pid file)"; return 0; }
    pid=$(cat "$dir/pid")
    if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$dir/pid"
        return 0
    fi
    admin "$dir" shutdown >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    n=0
    while kill -0 "$pid" 2>/dev/null && ((n < 60)); do
        sleep 0.5
        n=$((n + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "warning: mariadbd (pid $pid) did not stop within 30 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/pid"
}

case ${1:-} in
    start)
        [[ $# -ge 2 && $# -le 3 ]] || usage
        start_server "$2" "${3:-}"
        ;;
    stop)
        [[ $# -eq 2 ]] || usage
        stop_server "$2"
        ;;
    *) usage ;;
esac
