#!/usr/bin/env bash
# Demo: mysql-quiesce against a throwaway MariaDB whose data live on a loop-mounted ext4 volume.
# While the snapshot runs (the volume frozen, its image copied), a write from another session is
# blocked; the snapshot sees the binlog coordinates; afterwards writes work again. Then
# `mysql-quiesce verify` proves that the snapshot just taken restores, at those coordinates.
# Needs root (it mounts and freezes its own loop volume); it starts its own server in a temp dir,
# and nothing else on this machine is touched.
#
#   scripts/demo.sh        (MYSQL_QUIESCE_BIN=PATH uses that binary instead of building one)
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
if ! command -v cargo >/dev/null && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

[[ $(id -u) -eq 0 ]] || { echo "demo: error: run as root: the demo mounts and freezes a loop volume of its own" >&2; exit 1; }

DIR=""
cleanup() {
    if [[ -n $DIR ]]; then
        if [[ -f $DIR/vol/pid ]]; then
            bash "$REPO/scripts/throwaway-mariadb.sh" stop "$DIR/vol" >/dev/null 2>&1 ||
                echo "demo: warning: could not stop the demo server in $DIR/vol" >&2
        fi
        local m
        for m in "$DIR/snap" "$DIR/vol"; do
            if mountpoint -q "$m"; then
                umount "$m" || umount -l "$m" || echo "demo: warning: could not unmount $m" >&2
            fi
        done
        rm -rf "$DIR"
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

title() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

title "Dependencies"
bash scripts/install-deps.sh

if [[ -n ${MYSQL_QUIESCE_BIN:-} ]]; then
    BIN=$MYSQL_QUIESCE_BIN
else
    title "Build (cargo build --release)"
    cargo build --release --locked
    BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/mysql-quiesce"
fi
[[ -x $BIN ]] || { echo "demo: error: $BIN is not an executable" >&2; exit 1; }

title "Throwaway MariaDB on a loop-mounted ext4 volume"
# Short path: the server's Unix socket path must stay under ~100 bytes.
DIR=$(mktemp -d /tmp/mq-demo.XXXXXX)
truncate -s 512M "$DIR/volume.img"
mkfs.ext4 -q -F "$DIR/volume.img"
mkdir "$DIR/vol" "$DIR/snap"
mount -o loop "$DIR/volume.img" "$DIR/vol"
echo "volume: $DIR/volume.img mounted on $DIR/vol (the data directory, binary log and socket live there)"
bash scripts/throwaway-mariadb.sh start "$DIR/vol"
SOCK=$DIR/vol/sock
sql() { mariadb --no-defaults -S "$SOCK" -uroot "$@"; }

sql -e "CREATE DATABASE shop;
        CREATE TABLE shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, item VARCHAR(40)) ENGINE=InnoDB;
        INSERT INTO shop.orders (item) VALUES ('apples'), ('pears'), ('plums');"
echo "shop.orders has $(sql -N -e 'SELECT COUNT(*) FROM shop.orders') rows"

title "mysql-quiesce: lock, freeze, snapshot, thaw, unlock"
echo "\$ mysql-quiesce -S $SOCK -u root --freeze $DIR/vol --pre '...' --post '...' --report $DIR/report.json" \
    "--coordinates-file $DIR/coordinates -- sh -c SNAPSHOT_SCRIPT snapshot $SOCK $DIR/snapshot-done" \
    "$DIR/volume.img $DIR/snapshot.img"
rc=0
# The snapshot COMMAND is argv (no shell); here a small sh script copies the frozen volume's image,
# as a storage snapshot would (lvcreate --snapshot, aws ec2 create-snapshot, ...). $1 is the
# server's socket.
# shellcheck disable=SC2016 # hooks and the snapshot command expand their own variables
"$BIN" -S "$SOCK" -u root --freeze "$DIR/vol" \
    --pre 'echo "[pre hook]  phase=$MYSQL_QUIESCE_PHASE, locked by connection $MYSQL_QUIESCE_CONNECTION_ID"' \
    --post 'echo "[post hook] phase=$MYSQL_QUIESCE_PHASE, status=$MYSQL_QUIESCE_STATUS"' \
    --report "$DIR/report.json" --coordinates-file "$DIR/coordinates" \
    -- sh -c '
        echo "[snapshot]  binlog coordinates: ${MYSQL_QUIESCE_BINLOG_FILE:-?}:${MYSQL_QUIESCE_BINLOG_POS:-?}${MYSQL_QUIESCE_GTID:+ (GTID $MYSQL_QUIESCE_GTID)}"
        echo "[snapshot]  trying an INSERT from another session (lock_wait_timeout=1)..."
        if out=$(mariadb --no-defaults -S "$1" -uroot \
                -e "SET SESSION lock_wait_timeout=1; INSERT INTO shop.orders (item) VALUES (\"figs\")" 2>&1); then
            echo "[snapshot]  the INSERT went through: the server was NOT locked" >&2
            exit 1
        fi
        echo "[snapshot]  blocked, as it should be: $(printf "%s\n" "$out" | grep -m1 ERROR)"
        echo "[snapshot]  copying the frozen volume image (the snapshot)..."
        cp --sparse=always "$3" "$4" || exit 1
        touch "$2"
    ' snapshot "$SOCK" "$DIR/snapshot-done" "$DIR/volume.img" "$DIR/snapshot.img" || rc=$?
if ((rc != 0)); then
    echo "demo: mysql-quiesce exited with status $rc (see its messages above)" >&2
    exit "$rc"
fi
if [[ ! -f $DIR/snapshot-done ]]; then
    echo "demo: mysql-quiesce exited 0 but the snapshot command did not run to its end" >&2
    exit 1
fi

title "After the run: writes work again"
sql -e "SET SESSION lock_wait_timeout=5; INSERT INTO shop.orders (item) VALUES ('figs');"
echo "INSERT ok; shop.orders has $(sql -N -e 'SELECT COUNT(*) FROM shop.orders') rows"

title "Coordinates file ($DIR/coordinates)"
cat "$DIR/coordinates"

title "Report ($DIR/report.json)"
if command -v jq >/dev/null; then
    jq . "$DIR/report.json"
else
    python3 -m json.tool "$DIR/report.json"
fi

title "mysql-quiesce verify: does the snapshot just taken restore, at those coordinates?"
# ext4 flushes its journal when frozen, so the copy mounts read-only as it is.
mount -o ro,loop "$DIR/snapshot.img" "$DIR/snap"
echo "\$ mysql-quiesce verify --datadir $DIR/snap/data --binlog-dir $DIR/snap" \
    "--coordinates-file $DIR/coordinates --report $DIR/verify.json"
rc=0
"$BIN" verify --datadir "$DIR/snap/data" --binlog-dir "$DIR/snap" \
    --coordinates-file "$DIR/coordinates" --report "$DIR/verify.json" || rc=$?
if ((rc != 0)); then
    echo "demo: mysql-quiesce verify exited with status $rc (see its messages above)" >&2
    exit "$rc"
fi
echo "verify: restore point $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["restore_point"]; print("%s:%s, GTID %s" % (r["binlog_file"], r["binlog_position"], r["gtid"]))' "$DIR/verify.json")," \
    "recovery $(python3 -c 'import json,sys; print("%.0f ms" % json.load(open(sys.argv[1]))["recovery_ms"])' "$DIR/verify.json")"
