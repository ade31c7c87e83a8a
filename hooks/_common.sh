#!/bin/sh
# Shared by the mysql-quiesce hooks (sourced, not run): messages go to stderr, because the
# snapshot phase's stdout is mysql-quiesce's stdout and must carry only snapshot ids.

# usage: print the hook's header comment (everything after the #! line up to the code) as --help.
usage() {
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
    exit 0
}

note() { echo "$HOOK: $*" >&2; }
die() { echo "$HOOK: error: $*" >&2; exit 1; }

# need TOOL: fail with 127 (as a shell does) when TOOL is not on PATH.
need() {
    command -v "$1" >/dev/null 2>&1 ||
        { echo "$HOOK: error: $1 not found on PATH ($PATH); install it or add its directory to PATH" >&2; exit 127; }
}

# The hooks take the snapshot: they belong in --snapshot (or after `mysql-quiesce lock`).
check_phase() {
    case "${MYSQL_QUIESCE_PHASE:-}" in
        snapshot) ;;
        "") note "warning: MYSQL_QUIESCE_PHASE is not set: not run by mysql-quiesce, so nothing is locked" ;;
        *) note "warning: running in the ${MYSQL_QUIESCE_PHASE} phase; snapshots belong in --snapshot" ;;
    esac
}

# snapshot_name PREFIX: PREFIX-RUNID (the run id is unique per run).
snapshot_name() {
    echo "$1-${MYSQL_QUIESCE_RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)-$$}"
}

# exact: true when the coordinates are an exact restore point (read while commits were blocked).
# With --lock=instance or tables-for-backup they are not (MYSQL_QUIESCE_COORDINATES_EXACT=0),
# and a snapshot must never be labelled with them as if they were: point-in-time recovery from
# such a label would replay transactions the snapshot already holds.
exact() { [ "${MYSQL_QUIESCE_COORDINATES_EXACT:-0}" = 1 ]; }

# One line describing the snapshot: run id and the binary-log point it matches (if exact).
description() {
    if exact; then
        echo "mysql-quiesce run ${MYSQL_QUIESCE_RUN_ID:-none}: binlog ${MYSQL_QUIESCE_BINLOG_FILE:-none}:${MYSQL_QUIESCE_BINLOG_POS:-none} gtid ${MYSQL_QUIESCE_GTID:-none}"
    else
        echo "mysql-quiesce run ${MYSQL_QUIESCE_RUN_ID:-none}: no exact binlog position (lock ${MYSQL_QUIESCE_LOCK:-unknown})"
    fi
}

# value_of OPTION ARG: the value of --option=value or --option value (sets SHIFT).
value_of() {
    case "$2" in
        *=*) VALUE=${2#*=}; SHIFT=1 ;;
        *) [ $# -ge 3 ] || die "$1 needs a value"; VALUE=$3; SHIFT=2 ;;
    esac
}
