#!/bin/sh
# mysql-quiesce for Azure Backup (Linux VM pre/post scripts): /etc/azure/mysql-quiesce-post.sh,
# root-owned, mode 0700, named by postScriptLocation in VMSnapshotScriptPluginConfig.json.
#
# Run as `sh FILE [postScriptParams...]` after the snapshot and the thaw, also after a failed
# pre-script; releases what mysql-quiesce-pre.sh holds: `mysql-quiesce unlock`.
# 0 the lock was held from the pre-script to now, or nothing was locked (69: the pre-script had
# failed, which Azure already reports); 65 the lock was lost, 124 released at --max-lock-time:
# Azure records Post-ScriptExecutionFailed, so the backup is not marked application-consistent.
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

mq unlock
rc=$?
if [ "$rc" -eq 69 ]; then
    echo "mysql-quiesce: nothing was locked (the pre-script had failed)" >&2
    exit 0
fi
exit "$rc"
