#!/bin/sh
# Azure Backup pre-script: install as /etc/azure/mysql-quiesce-pre.sh (root, mode 0700) next to
# VMSnapshotScriptPluginConfig.json (mode 0600). Azure freezes the filesystems itself
# (fsFreezeEnabled), so mysql-quiesce only holds the database lock here: no --freeze.
# continueBackupOnFailure=false makes a failed lock fail the backup instead of silently taking a
# crash-consistent one. Azure's sample scripts use 0 success, 1 error.
set -u
mysql-quiesce lock --defaults-extra-file=/etc/mysql-quiesce/mysql-quiesce.cnf >/dev/null || exit 1
