#!/bin/sh
# Azure Backup pre-script: install as /etc/azure/mysql-quiesce-pre.sh (root, mode 0700) next to
# VMSnapshotScriptPluginConfig.json (mode 0600). Azure freezes the filesystems itself
# (fsFreezeEnabled), so mysql-quiesce only holds the database lock here: no --freeze.
# continueBackupOnFailure=false makes a failed lock fail the backup instead of silently taking a
# crash-consistent one. Azure's sample scripts use 0 success, 1 error.
# `lock` must give up before Azure's timeoutInSeconds (60 in our config): at worst 5 s to
# connect + 8 attempts of 2 s + 7 waits of 3 s = 42 s, then it fails with nothing held.
set -u
# shellcheck disable=SC2086 # MYSQL_QUIESCE_OPTS is a list of options
mysql-quiesce lock \
    --defaults-extra-file="${MYSQL_QUIESCE_CNF:-/etc/mysql-quiesce/mysql-quiesce.cnf}" \
    --connect-timeout=5 --lock-wait-timeout=2 --lock-retries=7 --lock-retry-delay=3 \
    ${MYSQL_QUIESCE_OPTS:-} >/dev/null || exit 1
