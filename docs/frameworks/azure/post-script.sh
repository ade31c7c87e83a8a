#!/bin/sh
# Azure Backup post-script (/etc/azure/mysql-quiesce-post.sh): fails (exit 1) unless the lock was
# held from the pre-script to now, so Azure does not record the backup as application-consistent.
set -u
mysql-quiesce unlock --defaults-extra-file=/etc/mysql-quiesce/mysql-quiesce.cnf || exit 1
