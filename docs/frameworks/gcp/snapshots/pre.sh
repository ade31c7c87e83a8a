#!/bin/sh
# mysql-quiesce for Google Cloud guest-flush snapshots: /etc/google/snapshots/pre.sh (root, 0700).
#
# The guest agent runs it, with the disk list as its only argument, before a snapshot taken with
# `--guest-flush`, and only when /etc/default/instance_configs.cfg says [Snapshots] enabled = true
# (then restart the agent; see ../instance_configs.cfg). It holds the database lock until
# post.sh: `mysql-quiesce lock`; Google freezes nothing itself, so a filesystem to freeze
# (`freeze =`) may be set in [mysql-quiesce-gcp]. The variables (binary-log coordinates) go to
# stderr; set `coordinates-file` to a path on the snapshotted disk to keep them in the snapshot.
#
# 0 locked; otherwise `lock`'s status with nothing held, and no snapshot is taken. Never 124:
# the agent reports 124 as a timeout (SCRIPT_TIMED_OUT), so `lock`'s 124 becomes 1.
# The agent gives the script [Snapshots] timeout_in_seconds (default 60); `lock` gives up within
# 5 s + 10 s for long statements + 8 attempts of 2 s + 7 waits of 3 s = 52 s. Raise --lock-retries only with that timeout.
# --max-lock-time=300 ends the lock if post.sh never comes.
set -u
MQ_NAME="the Google guest agent"
MQ_GROUP=-gcp
# ---- begin: shared by the mysql-quiesce framework scripts (kept identical, tests/frameworks.rs) ----
# Settings are read as the systemd service reads them: the standard option files and every
# /etc/mysql-quiesce/*.cnf ([client] and [mysql-quiesce]), plus this script's own group
# [mysql-quiesce$MQ_GROUP]. MYSQL_QUIESCE_CNF names another option file to read in place of
# /usr/share/mysql-quiesce/service.cnf; MYSQL_QUIESCE_OPTS adds options (they win).
PATH=${PATH:-/usr/bin:/bin}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
MQ_CNF=${MYSQL_QUIESCE_CNF:-/usr/share/mysql-quiesce/service.cnf}
mq() {
    # shellcheck disable=SC2086 # MYSQL_QUIESCE_OPTS is a list of options
    mysql-quiesce --defaults-extra-file="$MQ_CNF" --defaults-group-suffix="$MQ_GROUP" "$@" ${MYSQL_QUIESCE_OPTS:-}
}
# mq_refuse KEY...: exit 78, locking nothing, when the option files set one of these keys here.
mq_refuse() {
    mq_defaults=$(mq --print-defaults) || exit 78
    for mq_key in "$@"; do
        printf '%s\n' "$mq_defaults" | grep -q -e "^--$mq_key=" -e "^--$mq_key\$" || continue
        case $mq_key in
            snapshot) mq_why="it would run inside the lock holder after the release request: a second snapshot" ;;
            freeze) mq_why="$MQ_NAME freezes every filesystem itself, and one mysql-quiesce froze first makes that fail" ;;
            *) mq_why="the holder would write or run it when it releases by itself at --max-lock-time, maybe while $MQ_NAME keeps every filesystem frozen" ;;
        esac
        echo "mysql-quiesce ($MQ_NAME): the option files set \`$mq_key\` for this script, and $mq_why." \
            "Move it to [mysql-quiesce-service] (read by mysql-quiesce.service only). Nothing was locked." >&2
        exit 78
    done
}
# ---- end: shared ----

echo "mysql-quiesce pre.sh: snapshot of ${1:-(no disk list)}" >&2
mq_refuse snapshot
if vars=$(mq lock --connect-timeout=5 --lock-wait-timeout=2 --lock-retries=7 \
    --lock-retry-delay=3 --long-query-wait=10 --max-lock-time=300); then
    printf '%s\n' "$vars" >&2
    exit 0
else
    rc=$?
fi
[ "$rc" -eq 124 ] && rc=1
exit "$rc"
