#!/bin/sh
# Azure Backup post-script (/etc/azure/mysql-quiesce-post.sh): fails (exit 1) unless the lock was
# held from the pre-script to now, so Azure does not record the backup as application-consistent.
set -u
# shellcheck disable=SC2086 # MYSQL_QUIESCE_OPTS is a list of options
mysql-quiesce unlock \
    --defaults-extra-file="${MYSQL_QUIESCE_CNF:-/etc/mysql-quiesce/mysql-quiesce.cnf}" \
    ${MYSQL_QUIESCE_OPTS:-} || exit 1
