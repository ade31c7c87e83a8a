#!/bin/sh
# mysql-quiesce for Google Cloud guest-flush snapshots: /etc/google/snapshots/post.sh (root, 0700).
#
# The guest agent runs it, with the disk list as its only argument, after the snapshot; it
# releases what pre.sh holds: `mysql-quiesce unlock`.
# 0 only if the lock was held from pre.sh to post.sh; 65 it was lost; 69 nothing to unlock;
# 1 for `unlock`'s 124 (released at --max-lock-time before post.sh), as the agent reports 124 as
# a timeout (SCRIPT_TIMED_OUT). Any non-zero status means: do not trust the snapshot.
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

mq unlock
rc=$?
[ "$rc" -eq 124 ] && rc=1
exit "$rc"
