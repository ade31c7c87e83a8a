#!/usr/bin/env bash
# An existing snapshot script that runs freeze, snapshot and thaw as separate lines, made
# consistent with `mysql-quiesce hold` as a bash coprocess: the lock is held from the READY line
# until the coprocess's stdin is closed, and `wait` gives its verdict (0 only if the lock was
# held throughout; 65 lost; 124 --max-lock-time passed).
#
#   usage: hold-coprocess.sh SNAPSHOT-COMMAND...      (MYSQL_QUIESCE_OPTS: extra options)
set -euo pipefail

# shellcheck disable=SC2086 # MYSQL_QUIESCE_OPTS is a list of options
coproc MQ { exec mysql-quiesce hold ${MYSQL_QUIESCE_OPTS:-}; }
mq_pid=$MQ_PID

IFS= read -r ready <&"${MQ[0]}" || { wait "$mq_pid"; exit $?; }
case $ready in
    READY*) ;;
    *) echo "unexpected line from mysql-quiesce: $ready" >&2; exit 70 ;;
esac
eval "export ${ready#READY }" # MYSQL_QUIESCE_BINLOG_FILE=... and friends, for "$@" too
echo "locked at ${MYSQL_QUIESCE_BINLOG_FILE:-?}:${MYSQL_QUIESCE_BINLOG_POS:-?}" >&2

# Your existing lines go here (freeze/thaw too, if you do not use --freeze).
snapshot_rc=0
"$@" || snapshot_rc=$?

exec {MQ[1]}>&- # close its stdin: release
verdict=0
wait "$mq_pid" || verdict=$?
if ((snapshot_rc != 0)); then exit "$snapshot_rc"; fi
exit "$verdict"
