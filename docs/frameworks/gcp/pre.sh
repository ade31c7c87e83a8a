#!/bin/sh
# /etc/google/snapshots/pre.sh for Google Cloud guest-flush snapshots (mode 0700, root).
# The guest agent runs it with the disk list as its only argument and reports a non-zero
# exit (or a timeout, [Snapshots] timeout_in_seconds, default 60) as a failed snapshot.
# Options come from the option file; MYSQL_QUIESCE_OPTS adds more.
set -eu
exec mysql-quiesce lock \
    --defaults-extra-file="${MYSQL_QUIESCE_CNF:-/etc/mysql-quiesce/mysql-quiesce.cnf}" \
    ${MYSQL_QUIESCE_OPTS:-} >/dev/null
