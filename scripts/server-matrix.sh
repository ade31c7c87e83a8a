#!/usr/bin/env bash
# Server matrix: throwaway MySQL 9.x and MariaDB 11.x servers from Debian sid, run in cached chroots,
# so mysql-quiesce is tested against newer servers than the machine's packaged MariaDB.
#
#   server-matrix.sh setup                          build the cache (idempotent; downloads)
#   server-matrix.sh start mysql|mariadb PORT DIR   start a server on 127.0.0.1:PORT, files under DIR
#   server-matrix.sh stop  mysql|mariadb DIR        clean shutdown (kill if needed), remove DIR's files
#   server-matrix.sh status                         cache state, mounts and running servers
#   server-matrix.sh versions                       server versions in the cache
#   server-matrix.sh host-wrapper mysql|mariadb PATH
#                                                   write PATH: an executable that runs the chroot's server
#                                                   binary on this host (for tests that need host paths:
#                                                   loop volumes, overlays), with the chroot's own loader,
#                                                   libraries, messages, character sets and plugins
#   server-matrix.sh init mysql|mariadb DATADIR     initialise a fresh data directory at DATADIR (a host
#                                                   path) with the chroot's server; root has no password
#
# Two chroots (sid-mysql, sid-mariadb) because MySQL and MariaDB server packages conflict.
# The cache lives in $MATRIX_CACHE (default /var/cache/mysql-quiesce-matrix). The Debian mirror is the
# one this machine's apt uses ($MATRIX_MIRROR overrides). DIR is a host path; the server's files live
# in the same path inside the chroot (created there, owned by the chroot's mysql user), and DIR on
# the host holds a pointer file so `stop` finds them. Root connects over TCP with no password.
set -euo pipefail

CACHE=${MATRIX_CACHE:-/var/cache/mysql-quiesce-matrix}
FLAVORS=(mysql mariadb)
# Set while a mount is made and not yet recorded as owned by a running server, so traps can undo it.
CLEANUP_CHROOT=""
# Set while a server's files exist in a chroot but no server owns them yet.
CLEANUP_INSTANCE=""
# "flavor dir" of a server launched but not yet ready: stopped if start fails or is interrupted.
STOP_ON_FAILURE=""

die() {
    echo "server-matrix: error: $*" >&2
    exit 1
}
say() { echo "server-matrix: $*" >&2; }

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, chroot and mounts need it); try: sudo $0 $*"
}

chroot_dir() { echo "$CACHE/sid-$1"; }

packages_for() {
    case $1 in
        mysql) echo "mysql-server-core mysql-client-core" ;;
        mariadb) echo "mariadb-server mariadb-client" ;;
        *) die "unknown flavor '$1' (expected: mysql or mariadb)" ;;
    esac
}

# The Debian mirror of this machine's apt configuration (deb822 or one-line format), without
# security/updates suites: those do not carry sid.
detect_mirror() {
    if [[ -n ${MATRIX_MIRROR:-} ]]; then
        echo "$MATRIX_MIRROR"
        return
    fi
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' "$f" |
            grep -E '/debian/?$' | head -n1 || true)
        if [[ -n $uri ]]; then
            echo "${uri%/}"
            return
        fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; break } }' "$f" |
            grep -E '/debian/?$' | head -n1 || true)
        if [[ -n $uri ]]; then
            echo "${uri%/}"
            return
        fi
    done
    echo "http://deb.debian.org/debian"
}

is_mounted() { mountpoint -q "$1"; }

# /proc for the servers, /dev for /dev/null, /dev/urandom (debootstrap may not create nodes here).
mount_chroot() {
    local root=$1
    mkdir -p "$root/proc" "$root/dev"
    is_mounted "$root/proc" || mount -t proc proc "$root/proc"
    is_mounted "$root/dev" || mount --bind /dev "$root/dev"
}

umount_chroot() {
    local root=$1 m
    for m in "$root/dev" "$root/proc"; do
        if is_mounted "$m"; then
            umount "$m" 2>/dev/null || umount -l "$m" || say "warning: could not unmount $m"
        fi
    done
}

# Removes a server's files in the chroot and the parent directories start created for them.
remove_instance() {
    local hostdir=$1 dirs d
    [[ -f $hostdir/.matrix-dirs ]] || return 0
    # The first line is the instance directory itself, then its created parents, deepest first.
    mapfile -t dirs <"$hostdir/.matrix-dirs"
    for d in "${dirs[@]}"; do
        [[ $d == "$CACHE"/sid-*/* ]] || continue
        if [[ $d == "${dirs[0]}" ]]; then
            rm -rf "$d"
        else
            rmdir "$d" 2>/dev/null || true
        fi
    done
    rm -f "$hostdir/.matrix-dirs" "$hostdir/.matrix-flavor"
}

# PIDs of processes whose root directory is inside this chroot.
chroot_pids() {
    local root=$1 p r
    root=$(readlink -f "$root")
    for p in /proc/[0-9]*; do
        r=$(readlink "$p/root" 2>/dev/null) || continue
        if [[ $r == "$root" || $r == "$root"/* ]]; then
            echo "${p#/proc/}"
        fi
    done
}

# Unmount only when no process (server) runs in the chroot any more.
release_chroot() {
    local root=$1
    if [[ -z $(chroot_pids "$root") ]]; then
        umount_chroot "$root"
    fi
}

on_exit() {
    local rc=$?
    if [[ -n $STOP_ON_FAILURE ]]; then
        # shellcheck disable=SC2086 # "flavor dir" splits into two arguments
        cmd_stop $STOP_ON_FAILURE >/dev/null 2>&1 || say "warning: could not stop the server in ${STOP_ON_FAILURE#* }"
    fi
    if [[ -n $CLEANUP_INSTANCE ]]; then
        remove_instance "$CLEANUP_INSTANCE"
    fi
    if [[ -n $CLEANUP_CHROOT ]]; then
        release_chroot "$CLEANUP_CHROOT"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

in_chroot() {
    local root=$1
    shift
    LC_ALL=C DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$root" "$@"
}

# ---------------------------------------------------------------------------------------------- setup

build_base() {
    local base="$CACHE/base" mirror
    [[ -f $base/.mq-ready ]] && return 0
    command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
    mirror=$(detect_mirror)
    say "debootstrap --variant=minbase sid from $mirror (a few minutes)..."
    rm -rf "$base.tmp"
    if ! debootstrap --variant=minbase sid "$base.tmp" "$mirror" >"$CACHE/debootstrap.log" 2>&1; then
        tail -n 15 "$CACHE/debootstrap.log" >&2 || true
        rm -rf "$base.tmp"
        die "DOWNLOAD FAILED: debootstrap of Debian sid from $mirror failed (log: $CACHE/debootstrap.log)"
    fi
    # Never start services from package scripts inside the chroot.
    printf '#!/bin/sh\nexit 101\n' >"$base.tmp/usr/sbin/policy-rc.d"
    chmod 755 "$base.tmp/usr/sbin/policy-rc.d"
    touch "$base.tmp/.mq-ready"
    mv "$base.tmp" "$base"
}

build_flavor() {
    local flavor=$1 root tmp pkgs log
    root=$(chroot_dir "$flavor")
    [[ -f $root/.mq-ready ]] && return 0
    tmp="$root.tmp"
    log="$CACHE/install-$flavor.log"
    pkgs=$(packages_for "$flavor")
    if [[ -d $tmp ]]; then
        umount_chroot "$tmp"
        rm -rf "$tmp"
    fi
    cp -a "$CACHE/base" "$tmp"
    rm -f "$tmp/.mq-ready"
    CLEANUP_CHROOT=$tmp
    mount_chroot "$tmp"
    say "installing $pkgs into sid-$flavor..."
    # shellcheck disable=SC2086 # $pkgs is a word list on purpose
    if ! { in_chroot "$tmp" apt-get -o Acquire::Check-Valid-Until=false update &&
        in_chroot "$tmp" apt-get install -y --no-install-recommends $pkgs; } >"$log" 2>&1; then
        tail -n 15 "$log" >&2 || true
        umount_chroot "$tmp"
        CLEANUP_CHROOT=""
        rm -rf "$tmp"
        die "DOWNLOAD FAILED: installing $pkgs into sid-$flavor failed (log: $log)"
    fi
    in_chroot "$tmp" apt-get clean >/dev/null 2>&1 || true
    # Package scripts may have started helpers despite policy-rc.d; none may outlive the setup.
    stop_chroot_processes "$tmp"
    umount_chroot "$tmp"
    CLEANUP_CHROOT=""
    server_version "$tmp" "$flavor" >"$tmp/.mq-version"
    touch "$tmp/.mq-ready"
    mv "$tmp" "$root"
}

stop_chroot_processes() {
    local root=$1 pids
    pids=$(chroot_pids "$root")
    [[ -z $pids ]] && return 0
    # shellcheck disable=SC2086
    kill $pids 2>/dev/null || true
    sleep 1
    pids=$(chroot_pids "$root")
    # shellcheck disable=SC2086
    [[ -z $pids ]] || kill -9 $pids 2>/dev/null || true
}

# mysql-server-core (unlike mariadb-server) does not create the mysql user the server runs as;
# debootstrap writes no /etc/hosts, and mariadb-install-db and clients need localhost to resolve.
ensure_chroot_basics() {
    local root
    root=$(chroot_dir "$1")
    [[ -s $root/etc/hosts ]] || printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n' >"$root/etc/hosts"
    in_chroot "$root" getent passwd mysql >/dev/null && return 0
    in_chroot "$root" useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin mysql
}

server_bin() {
    case $1 in
        mysql) echo /usr/sbin/mysqld ;;
        mariadb) echo /usr/sbin/mariadbd ;;
    esac
}

client_bin() {
    case $1 in
        mysql) echo /usr/bin/mysql ;;
        mariadb) echo /usr/bin/mariadb ;;
    esac
}

# Needs no mounts: --version only prints.
server_version() {
    local root=$1 flavor=$2
    local line
    line=$(in_chroot "$root" "$(server_bin "$flavor")" --version 2>/dev/null | head -n1)
    # "/usr/sbin/mysqld  Ver 9.7.4-2 for Linux ..." -> "MySQL 9.7.4-2"
    case $flavor in
        mysql) echo "MySQL $(sed -E 's/.* Ver ([^ ]+).*/\1/' <<<"$line")" ;;
        mariadb) echo "MariaDB $(sed -E 's/.* Ver ([^ ]+).*/\1/' <<<"$line")" ;;
    esac
}

cmd_setup() {
    need_root setup
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.setup.lock"
    flock 9
    local t0=$SECONDS f
    for f in "${FLAVORS[@]}"; do
        if [[ ! -f $(chroot_dir "$f")/.mq-ready ]]; then
            build_base
            build_flavor "$f"
        fi
        ensure_chroot_basics "$f"
    done
    # The base is only a template for the flavour chroots.
    rm -rf "$CACHE/base"
    say "setup complete in $((SECONDS - t0)) s: $CACHE"
    cmd_versions
}

# ---------------------------------------------------------------------------------------- servers

check_flavor() {
    case ${1:-} in
        mysql | mariadb) ;;
        *) die "unknown flavor '${1:-}' (expected: mysql or mariadb)" ;;
    esac
    [[ -f $(chroot_dir "$1")/.mq-ready ]] || die "the $1 chroot is not set up; run: $0 setup"
}

# Instance directory inside the chroot, at the same path as DIR on the host.
instance_dir() {
    local dir
    dir=$(readlink -f "$1")
    echo "$dir"
}

cmd_start() {
    need_root start
    [[ $# -eq 3 ]] || die "usage: $0 start mysql|mariadb PORT DATADIR"
    local flavor=$1 port=$2 dir root inst client waited
    check_flavor "$flavor"
    if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
        die "PORT must be 1..65535, got '$port'"
    fi
    mkdir -p "$3"
    dir=$(instance_dir "$3")
    root=$(chroot_dir "$flavor")
    inst="$root$dir"
    [[ -f $inst/pid ]] && kill -0 "$(cat "$inst/pid")" 2>/dev/null &&
        die "a $flavor server already runs for $dir (pid $(cat "$inst/pid")); stop it first"
    # A server already listening there would answer the readiness poll instead of ours.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port on 127.0.0.1 is already in use; choose another PORT"
    fi
    rm -rf "$inst"
    # Remember which of DIR's parents we create inside the chroot, so that stop removes them again.
    local p=$dir created=()
    while [[ $p != / && ! -d $root$p ]]; do
        created+=("$root$p")
        p=$(dirname "$p")
    done
    printf '%s\n' "${created[@]}" >"$3/.matrix-dirs"
    CLEANUP_INSTANCE=$3
    mkdir -p "$inst"
    in_chroot "$root" chown mysql:mysql "$dir"

    CLEANUP_CHROOT=$root
    mount_chroot "$root"
    local t0=$SECONDS
    STOP_ON_FAILURE="$flavor $3"
    case $flavor in
        mysql)
            in_chroot "$root" mysqld --no-defaults --initialize-insecure --user=mysql \
                --datadir="$dir/data" --log-error="$dir/init.log" ||
                { tail -n 20 "$inst/init.log" >&2 || true; die "mysqld --initialize-insecure failed (log above)"; }
            in_chroot "$root" setsid -f mysqld --no-defaults --user=mysql --datadir="$dir/data" \
                --socket="$dir/sock" --mysqlx=OFF --port="$port" --bind-address=127.0.0.1 \
                --secure-file-priv= --log-error="$dir/err.log" --pid-file="$dir/pid" \
                --log-bin="$dir/binlog" --server-id=1 \
                --gtid-mode=ON --enforce-gtid-consistency=ON </dev/null >/dev/null 2>&1
            ;;
        mariadb)
            in_chroot "$root" mariadb-install-db --no-defaults --user=mysql --datadir="$dir/data" \
                --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
                >"$inst/init.log" 2>&1 ||
                { tail -n 20 "$inst/init.log" >&2 || true; die "mariadb-install-db failed (log above)"; }
            in_chroot "$root" setsid -f mariadbd --no-defaults --user=mysql --datadir="$dir/data" \
                --socket="$dir/sock" --port="$port" --bind-address=127.0.0.1 \
                --secure-file-priv= --log-error="$dir/err.log" --pid-file="$dir/pid" \
                --log-bin="$dir/binlog" --server-id=1 </dev/null >/dev/null 2>&1
            ;;
    esac
    # From here the running server owns the mounts and files; a failed start below cleans up via stop.
    CLEANUP_CHROOT=""
    CLEANUP_INSTANCE=""
    echo "$flavor" >"$3/.matrix-flavor"
    client=$(client_bin "$flavor")
    waited=0
    until in_chroot "$root" "$client" --no-defaults -h127.0.0.1 -P"$port" -uroot \
        -e 'select 1' >/dev/null 2>&1; do
        # mysqld daemonised via setsid -f: its pid file is the only handle; gone after a crash.
        if ((waited > 10)) && ! { [[ -f $inst/pid ]] && kill -0 "$(cat "$inst/pid")" 2>/dev/null; } &&
            [[ -z $(chroot_pids "$root" | tr -d '[:space:]') ]]; then
            tail -n 20 "$inst/err.log" >&2 || true
            die "$flavor exited during start-up (log above)"
        fi
        if ((waited >= 120)); then
            tail -n 20 "$inst/err.log" >&2 || true
            die "$flavor did not accept connections on 127.0.0.1:$port within 60 s (log above)"
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
    # Root may also come from '%' (the Rust client connects as root@127.0.0.1; MariaDB resolves that
    # to root@localhost only with name resolution; be explicit). Empty password: caching_sha2
    # (MySQL) skips the RSA/TLS exchange for empty passwords.
    in_chroot "$root" "$client" --no-defaults -S"$dir/sock" -uroot -e \
        "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
         GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
         CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '';
         GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;" >/dev/null ||
        die "could not create the users root@127.0.0.1 and root@'%' on the $flavor server"
    STOP_ON_FAILURE=""
    say "$(server_version "$root" "$flavor") ready after $((SECONDS - t0)) s: 127.0.0.1:$port," \
        "socket $inst/sock, user root, no password"
    echo "$port"
}

cmd_stop() {
    need_root stop
    [[ $# -eq 2 ]] || die "usage: $0 stop mysql|mariadb DATADIR"
    local flavor=$1 dir root inst pid n
    check_flavor "$flavor"
    [[ -d $2 ]] || die "no such directory: $2"
    dir=$(instance_dir "$2")
    root=$(chroot_dir "$flavor")
    inst="$root$dir"
    pid=""
    [[ -f $inst/pid ]] && pid=$(cat "$inst/pid")
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        # mysqladmin/mariadb-admin shutdown would need the client; SIGTERM is a clean shutdown too.
        kill -TERM "$pid" 2>/dev/null || true
        n=0
        while kill -0 "$pid" 2>/dev/null && ((n < 120)); do
            sleep 0.5
            n=$((n + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "warning: $flavor (pid $pid) did not stop within 60 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    if [[ -f $2/.matrix-dirs ]]; then
        remove_instance "$2"
    else
        rm -rf "$inst"
    fi
    release_chroot "$root"
    say "$flavor for $dir stopped"
}

cmd_status() {
    local f root pids p
    echo "cache: $CACHE"
    for f in "${FLAVORS[@]}"; do
        root=$(chroot_dir "$f")
        if [[ -f $root/.mq-ready ]]; then
            echo "$f: ready ($(cat "$root/.mq-version" 2>/dev/null || echo '?'))"
        else
            echo "$f: not set up"
            continue
        fi
        is_mounted "$root/proc" && echo "  mounted: $root/proc"
        is_mounted "$root/dev" && echo "  mounted: $root/dev"
        pids=$(chroot_pids "$root")
        for p in $pids; do
            echo "  running: pid $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-120)"
        done
    done
}

cmd_versions() {
    local f root
    for f in "${FLAVORS[@]}"; do
        root=$(chroot_dir "$f")
        [[ -f $root/.mq-ready ]] || die "the $f chroot is not set up; run: $0 setup"
        echo "$f: $(cat "$root/.mq-version")"
    done
}

# --------------------------------------------------------------------------------- host use

cmd_host_wrapper() {
    [[ $# -eq 2 ]] || die "usage: $0 host-wrapper mysql|mariadb PATH"
    local flavor=$1 path=$2 root bin share
    check_flavor "$flavor"
    root=$(readlink -f "$(chroot_dir "$flavor")")
    bin=$(server_bin "$flavor")
    case $flavor in
        mysql) share=$root/usr/share/mysql ;;
        mariadb) share=$root/usr/share/mariadb ;;
    esac
    # --no-defaults must stay the first argument: the extra options go right after it.
    {
        echo '#!/bin/sh'
        echo "# Written by scripts/server-matrix.sh host-wrapper: $flavor from $root, run on this host."
        printf 'run() { exec %q --library-path %q %q "$@"; }\n' \
            "$root/lib64/ld-linux-x86-64.so.2" "$root/usr/lib/x86_64-linux-gnu" "$root$bin"
        echo 'if [ "${1:-}" = --no-defaults ]; then'
        echo '    shift'
        printf '    run --no-defaults --basedir=%q --lc-messages-dir=%q --character-sets-dir=%q --plugin-dir=%q "$@"\n' \
            "$root/usr" "$share" "$share/charsets" "$root/usr/lib/mysql/plugin"
        echo 'fi'
        echo 'run "$@"'
    } >"$path"
    chmod 755 "$path"
}

cmd_init() {
    need_root init
    [[ $# -eq 2 ]] || die "usage: $0 init mysql|mariadb DATADIR"
    local flavor=$1 target=$2 root tmp
    check_flavor "$flavor"
    [[ -e $target ]] && die "$target already exists; give a path that does not"
    root=$(chroot_dir "$flavor")
    tmp=$(mktemp -d "$root/tmp/mq-init.XXXXXX")
    CLEANUP_CHROOT=$root
    mount_chroot "$root"
    local inner=${tmp#"$root"}
    local ok=1
    case $flavor in
        mysql)
            in_chroot "$root" mysqld --no-defaults --initialize-insecure --user=root \
                --datadir="$inner/data" --log-error="$inner/init.log" || ok=0
            ;;
        mariadb)
            in_chroot "$root" mariadb-install-db --no-defaults --user=root --datadir="$inner/data" \
                --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
                >"$tmp/init.log" 2>&1 || ok=0
            ;;
    esac
    if ((ok)); then
        cp -a "$tmp/data" "$target" || ok=0
    else
        tail -n 20 "$tmp/init.log" >&2 || true
    fi
    rm -rf "$tmp"
    release_chroot "$root"
    CLEANUP_CHROOT=""
    ((ok)) || die "initialising a $flavor data directory failed (log above)"
}

case ${1:-} in
    setup) cmd_setup ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    status) cmd_status ;;
    versions) cmd_versions ;;
    host-wrapper) shift; cmd_host_wrapper "$@" ;;
    init) shift; cmd_init "$@" ;;
    *) die "usage: $0 setup | start mysql|mariadb PORT DATADIR | stop mysql|mariadb DATADIR | status | versions | host-wrapper mysql|mariadb PATH | init mysql|mariadb DATADIR" ;;
esac
