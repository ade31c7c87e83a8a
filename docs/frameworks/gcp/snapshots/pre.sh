#!/bin/sh
# /etc/google/snapshots/pre.sh for Google Cloud guest-flush snapshots (mode 0700, root).
# The guest agent runs it with the disk list as its only argument and reports a non-zero
# exit (or a timeout, [Snapshots] timeout_in_seconds, default 60) as a failed snapshot.
# `lock` must give up before the agent's timeout: at worst 5 s to connect + 8 attempts of 2 s
# + 7 waits of 3 s = 42 s, then exit 75 with nothing held. Raise --lock-retries only together
# with timeout_in_seconds. Options come from the option file; MYSQL_QUIESCE_OPTS adds more.
set -eu
# shellcheck disable=SC2086 # MYSQL_QUIESCE_OPTS is a list of options
exec mysql-quiesce lock \
    --defaults-extra-file="${MYSQL_QUIESCE_CNF:-/etc/mysql-quiesce/mysql-quiesce.cnf}" \
    --connect-timeout=5 --lock-wait-timeout=2 --lock-retries=7 --lock-retry-delay=3 \
    ${MYSQL_QUIESCE_OPTS:-} >/dev/null
