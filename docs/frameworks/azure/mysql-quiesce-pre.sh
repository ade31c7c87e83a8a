#!/bin/sh
# mysql-quiesce for Azure Backup (Linux VM pre/post scripts): /etc/azure/mysql-quiesce-pre.sh,
# root-owned, mode 0700, named by preScriptLocation in /etc/azure/VMSnapshotScriptPluginConfig.json
# (root, 0600; the extension runs no script whose group or other permission bits are set).
#
# The backup extension runs it as `sh FILE [preScriptParams...]` (POSIX sh: the #! line is
# ignored), then freezes every filesystem itself (fsFreezeEnabled), takes the snapshot, thaws,
# and runs mysql-quiesce-post.sh, also after a failed pre-script. So this script only holds the
# database lock: `mysql-quiesce lock`, no --freeze (a filesystem frozen first makes Azure's own
# freeze fail).
#
# 0 locked; otherwise `lock`'s status with nothing held. Azure treats every non-zero status as a
# failure (2 too, whatever its sample scripts say): with continueBackupOnFailure=false the backup
# fails, with true it falls back to a file-system/crash-consistent backup; Microsoft documents
# that single-disk VMs fall back to crash-consistent either way.
# Azure waits timeoutInSeconds (60 in our VMSnapshotScriptPluginConfig.json; at most 1800) and
# never kills a late script: `lock` gives up by itself within 5 s + 8 attempts of 2 s + 7 waits
# of 3 s + 10 s for long statements = 52 s. --max-lock-time=600 ends the lock if the post-script never comes.
set -u
MQ_NAME="Azure Backup"
MQ_GROUP=-azure
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

# While Azure keeps the filesystems frozen the holder must not write to them: its state and log
# are in /run; files and hooks it would write or run are refused here.
mq_refuse freeze snapshot report metrics-file post after
vars=$(mq lock --connect-timeout=5 --lock-wait-timeout=2 --lock-retries=7 \
    --lock-retry-delay=3 --long-query-wait=10 --max-lock-time=600) || exit
printf '%s\n' "$vars"
