//! Man page and shell completions, generated from the one clap definition
//! (the packaging script calls `mysql-quiesce generate man|bash|zsh|fish`).

use crate::cli::{command, Generated};
use std::io::Write;

/// Sections clap does not know about, in roff.
const EXTRA_MAN: &str = r#".SH "LOCK MODES"
.TP
\fBauto\fR (default)
\fBbackup-stage\fR on MariaDB 10.4.1 and later, \fBftwrl\fR everywhere else. MariaDB documents BACKUP STAGE
BLOCK_COMMIT as the recipe for storage snapshots: unlike FLUSH TABLES WITH READ LOCK it does not wait for running
statements, so a long query does not stall every writer, and it still blocks commits, so the binary-log position
is exact.
.TP
\fBftwrl\fR
FLUSH TABLES WITH READ LOCK ... UNLOCK TABLES. Waits for every running statement that has a table open (on MySQL
long SELECTs too) while blocking all writers; bounded by \-\-lock\-wait\-timeout per attempt. Needs RELOAD.
.TP
\fBbackup-stage\fR
MariaDB >= 10.4.1: BACKUP STAGE START; BACKUP STAGE BLOCK_COMMIT ... BACKUP STAGE END. Needs RELOAD.
.TP
\fBinstance\fR
MySQL >= 8.0: LOCK INSTANCE FOR BACKUP ... UNLOCK INSTANCE. Blocks DDL and some file operations, NOT writes or
commits: only for InnoDB-only data and a snapshot that is atomic across all volumes. There is no exact binary-log
point; coordinates come from performance_schema.log_status where available and are marked exact: false. Needs BACKUP_ADMIN.
.TP
\fBtables-for-backup\fR
Percona Server: LOCK TABLES FOR BACKUP ... UNLOCK TABLES. Same caveats as \fBinstance\fR.
.TP
\fBnone\fR
No lock and no connection: freeze and hooks only.
.PP
A mode the server does not support is refused with exit status 78 before anything is locked.
With \-\-instance (repeatable) several servers are locked as one: each round locks all of them in parallel, each
within its own \-\-lock\-wait\-timeout; if one fails, all are released before the next round. Hooks get
MYSQL_QUIESCE_<NAME>_BINLOG_FILE and so on per instance, NAME being the name given as \-\-instance=NAME=SPEC, else the
option file's name or the URL's socket file name (or host_port); uppercased, other characters replaced by _.
.SH "EXIT STATUS"
.TP
\fB0\fR
Success: the snapshot phase ran with the lock held and verified.
.TP
\fBN\fR
The snapshot COMMAND's or the first failing hook's own non-zero status, passed through.
.TP
\fB64\fR
Usage error.
.TP
\fB65\fR
Consistency not guaranteed: the locking session was lost while locked. Do not trust the snapshot.
.TP
\fB69\fR
Cannot connect to the server.
.TP
\fB70\fR
Internal error.
.TP
\fB75\fR
Lock not acquired within the retries, or another run holds the run lock. Nothing was changed; safe to retry.
.TP
\fB77\fR
Authentication failed or a privilege is missing.
.TP
\fB78\fR
Configuration error (bad option file or option value).
.TP
\fB124\fR
A hook ran past \-\-hook\-timeout, or the locked section past \-\-max\-lock\-time.
.TP
\fB126\fR, \fB127\fR
COMMAND not executable, not found.
.TP
\fB128+N\fR
Terminated by signal N (after releasing everything).
.SH ENVIRONMENT
Read: \fBMYSQL_HOST\fR, \fBMYSQL_TCP_PORT\fR, \fBMYSQL_UNIX_PORT\fR, \fBMYSQL_PWD\fR, \fBMYSQL_HOME\fR, \fBMARIADB_HOME\fR, \fBMYSQL_GROUP_SUFFIX\fR.
Precedence: command line, then environment, then option files, then built-in defaults.
.PP
Given to every hook: \fBMYSQL_QUIESCE_PHASE\fR, \fBMYSQL_QUIESCE_RUN_ID\fR, \fBMYSQL_QUIESCE_LOCK\fR, \fBMYSQL_QUIESCE_CONNECTION_ID\fR,
\fBMYSQL_QUIESCE_SERVER_FLAVOR\fR, \fBMYSQL_QUIESCE_SERVER_VERSION\fR, \fBMYSQL_QUIESCE_SOURCE_LOG_FILE\fR, \fBMYSQL_QUIESCE_SOURCE_LOG_POS\fR
(on a replica: the SQL thread's executed position), \fBMYSQL_QUIESCE_GALERA_POSITION\fR (uuid:seqno), \fBMYSQL_QUIESCE_BINLOG_FILE\fR, \fBMYSQL_QUIESCE_BINLOG_POS\fR, \fBMYSQL_QUIESCE_GTID\fR;
\fBMYSQL_QUIESCE_FROZEN\fR (the mount points frozen in this run, colon-separated);
in post and after hooks also \fBMYSQL_QUIESCE_STATUS\fR=ok|failed. \fBMYSQL_PWD\fR is never passed to hooks.
.SH FILES
/etc/my.cnf, /etc/mysql/my.cnf, $MYSQL_HOME/my.cnf, ~/.my.cnf: option files, groups [client], [client-server],
[client-mariadb] (connection options) and [mysql-quiesce] (every long option, e.g. \fBpre = ...\fR, repeatable).
.br
/run/lock/mysql-quiesce.lock: the run lock (\-\-lock\-file).
.SH SAFETY
Everything acquired is released on every path. A failing or hanging hook (\-\-hook\-timeout) or an overrun of
\-\-max\-lock\-time kills the hook's whole process group, thaws, runs the post hooks, unlocks and runs the after
hooks. SIGINT, SIGTERM, SIGHUP and SIGQUIT do the same and exit 128+N. If mysql-quiesce itself is killed (SIGKILL,
OOM), a guardian process started before the first freeze thaws every frozen filesystem at once, and the server
drops the lock with the connection. Before the post hooks the lock session must still be the same live connection;
if it was lost, the run exits 65 and the report says "consistent": false. The root filesystem, filesystems holding
the current directory, an output file or a hook's program are never frozen. Only one run at a time per machine
(\-\-lock\-file).
.SH RECOVERY
If a filesystem was left frozen (it never should be: a guardian process thaws it even when mysql-quiesce is killed),
thaw it with \fBfsfreeze \-u MOUNTPOINT\fR. The database lock is released by the server when the connection closes.
.SH "SPLIT MODE"
\fBmysql-quiesce lock\fR starts a detached holder that locks (and freezes) and returns once everything is held,
printing the MYSQL_QUIESCE_* variables; \fBmysql-quiesce unlock\fR releases and exits 0 only if the lock was held
continuously (65: lost; 124: released at \-\-max\-lock\-time before unlock; 69: nothing to unlock).
\fBmysql-quiesce status\fR shows the holder (exit 3 if none). A \fBlock\fR stopped by SIGTERM, SIGINT or SIGHUP
before it printed the variables (a framework timeout) stops its holder and exits 128+N; a \fBlock\fR killed outright
makes its holder release at once. Give \fBlock\fR retries (\-\-lock\-retries, \-\-lock\-retry\-delay,
\-\-lock\-wait\-timeout, \-\-connect\-timeout) that end before the framework's timeout. State lives in
\-\-state\-dir, which must be ours with mode 0700; one holder at a time (an flock on holder.lock; a second
\fBlock\fR exits 75). \fBmysql-quiesce hold\fR prints one READY line and holds until stdin reaches EOF or
SIGTERM/SIGINT. Examples for AWS DLM, Google Cloud, Azure Backup and Velero are in
/usr/share/doc/mysql-quiesce/frameworks/ (docs/frameworks/ in the source).
.SH EXAMPLES
.nf
id=$(mysql-quiesce --freeze /var/lib/mysql -- \\
     aws ec2 create-snapshot --volume-id vol-0123 --query SnapshotId --output text)
mysql-quiesce --coordinates-file /var/lib/mysql/snapshot-coordinates.json \\
     --snapshot 'lvcreate -s -n mysql-snap -L 5G vg/mysql'
mysql-quiesce --dry-run --freeze /data -- true
# two instances whose data share one volume
mysql-quiesce --instance /etc/mysql/main.cnf --instance 'mysql://backup@localhost/?socket=/run/mysqld/b.sock' \\
     --freeze /srv/db -- aws ec2 create-snapshots --instance-specification InstanceId=i-0123
# split mode, e.g. in pre/post-scripts; never eval "$(mysql-quiesce lock ...)": a failed lock
# would then go unnoticed and the snapshot be taken unlocked
vars=$(mysql-quiesce lock --freeze /var/lib/mysql) || exit
eval "$vars"; take-snapshot; mysql-quiesce unlock
# alert on failed snapshots with node_exporter
mysql-quiesce --metrics-file /var/lib/node_exporter/mysql_quiesce.prom -- ...
.fi
"#;

pub fn man_page() -> Vec<u8> {
    let man = clap_mangen::Man::new(command());
    let mut out = Vec::new();
    man.render_title(&mut out).expect("render man");
    man.render_name_section(&mut out).expect("render man");
    man.render_synopsis_section(&mut out).expect("render man");
    man.render_description_section(&mut out)
        .expect("render man");
    man.render_options_section(&mut out).expect("render man");
    out.extend_from_slice(EXTRA_MAN.as_bytes());
    man.render_version_section(&mut out).expect("render man");
    out
}

/// Print the requested artefact on stdout; returns the exit status.
pub fn print(what: Generated) -> u8 {
    let mut stdout = std::io::stdout();
    match what {
        Generated::Man => {
            let _ = stdout.write_all(&man_page());
        }
        Generated::Bash | Generated::Zsh | Generated::Fish => {
            let shell = match what {
                Generated::Bash => clap_complete::Shell::Bash,
                Generated::Zsh => clap_complete::Shell::Zsh,
                _ => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut command(), "mysql-quiesce", &mut stdout);
        }
    }
    0
}
