#!/bin/sh
# /etc/google/snapshots/post.sh: release what pre.sh holds. Exit 0 only if the lock was held
# from pre.sh to post.sh (65: it was lost, 124: released at --max-lock-time before post.sh).
set -eu
# shellcheck disable=SC2086 # MYSQL_QUIESCE_OPTS is a list of options
exec mysql-quiesce unlock \
    --defaults-extra-file="${MYSQL_QUIESCE_CNF:-/etc/mysql-quiesce/mysql-quiesce.cnf}" \
    ${MYSQL_QUIESCE_OPTS:-}
