//! Man page and shell completions, generated from the one clap definition
//! (the packaging script calls `mysql-quiesce generate man|bash|zsh|fish`).

use crate::cli::{command, Generated};
use std::io::Write;

/// Sections clap does not know about, in roff.
const EXTRA_MAN: &str = r#"@LOCK_MODES@
.PP
A mode the server does not support is refused with exit status 78 before anything is locked.
With \-\-instance (repeatable) several servers are locked as one: each round locks all of them in parallel, each
within its own \-\-lock\-wait\-timeout; if one fails, all are released before the next round. Hooks get
MYSQL_QUIESCE_<NAME>_BINLOG_FILE and so on per instance, NAME being the name given as \-\-instance=NAME=SPEC, else the
option file's name or the URL's socket file name (or host_port); uppercased, other characters replaced by _.
@EXIT_STATUS@
.SH ENVIRONMENT
Read: \fBMYSQL_HOST\fR, \fBMYSQL_TCP_PORT\fR, \fBMYSQL_UNIX_PORT\fR, \fBMYSQL_PWD\fR, \fBMYSQL_HOME\fR, \fBMARIADB_HOME\fR, \fBMYSQL_GROUP_SUFFIX\fR.
Precedence, as in the mysql client: command line, then option files, then environment, then built-in defaults.
.PP
Given to every hook: \fBMYSQL_QUIESCE_PHASE\fR, \fBMYSQL_QUIESCE_RUN_ID\fR, \fBMYSQL_QUIESCE_LOCK\fR, \fBMYSQL_QUIESCE_CONNECTION_ID\fR,
\fBMYSQL_QUIESCE_SERVER_FLAVOR\fR, \fBMYSQL_QUIESCE_SERVER_VERSION\fR, \fBMYSQL_QUIESCE_SOURCE_LOG_FILE\fR, \fBMYSQL_QUIESCE_SOURCE_LOG_POS\fR
(on a replica: the SQL thread's executed position), \fBMYSQL_QUIESCE_GALERA_POSITION\fR (uuid:seqno), \fBMYSQL_QUIESCE_BINLOG_FILE\fR, \fBMYSQL_QUIESCE_BINLOG_POS\fR, \fBMYSQL_QUIESCE_GTID\fR;
\fBMYSQL_QUIESCE_COORDINATES_EXACT\fR (1 when those are an exact restore point, read while commits were blocked;
0 with \fBinstance\fR, \fBtables\-for\-backup\fR and \fBnone\fR: never label a snapshot with them as a restore point);
\fBMYSQL_QUIESCE_FROZEN\fR (the mount points frozen in this run, colon-separated);
in post and after hooks also \fBMYSQL_QUIESCE_STATUS\fR=ok|failed. \fBMYSQL_PWD\fR is never passed to hooks.
.PP
With \-\-instance, the same variables per locked server: \fBMYSQL_QUIESCE_\fR\fINAME\fR\fB_LOCK\fR,
\fBMYSQL_QUIESCE_\fR\fINAME\fR\fB_CONNECTION_ID\fR, \fBMYSQL_QUIESCE_\fR\fINAME\fR\fB_BINLOG_FILE\fR,
\fBMYSQL_QUIESCE_\fR\fINAME\fR\fB_BINLOG_POS\fR, \fBMYSQL_QUIESCE_\fR\fINAME\fR\fB_GTID\fR and so on (every
\fBMYSQL_QUIESCE_*\fR variable above that describes a server); the unprefixed ones describe the first instance.
\fINAME\fR is the name given as \-\-instance=NAME=SPEC, else the option file's name or the URL's socket file name
(or host_port), uppercased, other characters replaced by _.
.PP
\fBMYSQL_QUIESCE_HOLDER_FD\fR, \fBMYSQL_QUIESCE_HOLDER_LOCK_FD\fR and \fBMYSQL_QUIESCE_HOLDER_PASSWORD_FD\fR are
internal (set by \fBlock\fR for the holder process it starts); do not set them.
.PP
The framework scripts in /usr/share/mysql\-quiesce/ read \fBMYSQL_QUIESCE_CNF\fR (an option file to read in place
of /usr/share/mysql\-quiesce/service.cnf) and \fBMYSQL_QUIESCE_OPTS\fR (options added to every call; they win).
.PP
The hooks in /usr/share/mysql\-quiesce/hooks/ also read their tools' own environment, e.g. aws\-ebs\-snapshot:
\fBAWS_REGION\fR, \fBAWS_DEFAULT_REGION\fR, \fBAWS_ENDPOINT_URL\fR, \fBAWS_EC2_METADATA_SERVICE_ENDPOINT\fR,
\fBAWS_EC2_METADATA_SERVICE_ENDPOINT_MODE\fR, \fBAWS_EC2_METADATA_DISABLED\fR.
.SH FILES
.TP
/etc/my.cnf, /etc/mysql/my.cnf, $MARIADB_HOME/my.cnf, $MYSQL_HOME/my.cnf, ~/.my.cnf
Option files, groups [client], [client\-server], [client\-mariadb] (connection options) and [mysql\-quiesce]
(every long option, e.g. \fBpre = ...\fR, repeatable). Run as root, every [mysql\-quiesce] key but the
connection ones (what runs, what is frozen or written, whether and how long the database is locked) is taken only
from files root alone can write: the file root's and not writable by group or others, every directory and
symbolic link on the way to it root's and not writable by others (sticky directories aside). The file is opened
once and judged by what was opened. From any other file such a key is refused with exit status 78.
.TP
/etc/mysql\-quiesce/mysql\-quiesce.cnf
The packages' commented example option file: mode 0600 (it may hold a password) and a conffile
(%config(noreplace) in the RPM), so upgrades keep your edits. \fBmysql\-quiesce.service\fR reads it and every
other /etc/mysql\-quiesce/*.cnf, in name order, through
\fB\-\-defaults\-extra\-file=/usr/share/mysql\-quiesce/service.cnf\fR (which holds
\fB!includedir /etc/mysql\-quiesce\fR) with \fB\-\-defaults\-group\-suffix=\-service\fR: settings shared
with the framework scripts go in [client] and [mysql\-quiesce], the service's own (the snapshot hook, \-\-freeze,
\-\-metrics\-file) in [mysql\-quiesce\-service], each framework's in its group ([mysql\-quiesce\-qemu\-ga],
[mysql\-quiesce\-vmware], [mysql\-quiesce\-azure], [mysql\-quiesce\-gcp], [mysql\-quiesce\-dlm]). Try the
service's configuration with \fBmysql\-quiesce \-\-defaults\-extra\-file=/usr/share/mysql\-quiesce/service.cnf
\-\-defaults\-group\-suffix=\-service \-\-check\fR.
.TP
/usr/share/mysql\-quiesce/hooks/
Snapshot hooks for \-\-snapshot: aws\-ebs\-snapshot, lvm\-snapshot, btrfs\-snapshot, zfs\-snapshot,
gcloud\-disk\-snapshot, azure\-disk\-snapshot, ec2\-create\-snapshot (legacy EC2 API tools; use
aws\-ebs\-snapshot) (each with \-\-help), and _common.sh, which they share.
.TP
/usr/share/mysql\-quiesce/qemu\-ga/fsfreeze\-hook, /usr/share/mysql\-quiesce/qemu\-ga/fsfreeze\-hook.d/mysql\-quiesce
For the QEMU guest agent (Proxmox VE, libvirt, OpenStack): lock on freeze, unlock on thaw. The dispatcher, unlike
QEMU's sample, fails the freeze when a script fails and undoes the scripts that ran.
.TP
/usr/share/mysql\-quiesce/vmware/backupScripts.d/mysql\-quiesce
For VMware Tools (freeze, thaw, freezeFail).
.TP
/usr/share/mysql\-quiesce/gcp/snapshots/pre.sh, /usr/share/mysql\-quiesce/gcp/snapshots/post.sh, /usr/share/mysql\-quiesce/gcp/instance_configs.cfg
For Google Cloud application-consistent snapshots.
.TP
/usr/share/mysql\-quiesce/azure/mysql\-quiesce\-pre.sh, /usr/share/mysql\-quiesce/azure/mysql\-quiesce\-post.sh, /usr/share/mysql\-quiesce/azure/VMSnapshotScriptPluginConfig.json
For Azure Backup's pre/post scripts.
.TP
/usr/share/doc/mysql\-quiesce/frameworks/
How each framework calls its scripts (who freezes, who thaws, timeouts, exit statuses), the AWS DLM SSM
document, Velero and Kanister examples, and a coprocess example for \fBhold\fR.
.TP
/lib/systemd/system/mysql\-quiesce.service, mysql\-quiesce.timer
(/usr/lib/systemd/system/ from the RPM.) A oneshot run with the configuration above and a daily timer for it,
both shipped disabled: \fBsystemctl enable \-\-now mysql\-quiesce.timer\fR. A run that exits 69 or 75 (nothing
changed) is tried again, up to 5 runs 2 minutes apart.
.TP
/var/lib/mysql\-quiesce/last\-report.json
The JSON report (\-\-report) of the service's last run.
@STATE_FILES@
.SH METRICS
\-\-metrics\-file writes gauges in the Prometheus text format for node_exporter's textfile collector, atomically,
after thaw and unlock: mysql_quiesce_last_run_timestamp_seconds, _last_run_success, _last_run_exit_code,
_last_run_consistent, _last_success_timestamp_seconds, _lock_held_seconds, _lock_wait_seconds, _frozen_seconds
and _phase_seconds{phase="..."}. _last_success_timestamp_seconds is the time of the last run that exited 0: a
failed run carries it over from the file it replaces (0 if there is none), so one alert rule covers failing runs,
runs that stopped, and a timer that was never enabled:
.PP
.nf
- alert: MysqlQuiesceNoRecentSnapshot
  expr: time() \- mysql_quiesce_last_success_timestamp_seconds > 26 * 3600
        or absent(mysql_quiesce_last_success_timestamp_seconds)
.fi
.SH SAFETY
Everything acquired is released on every path. A failing or hanging hook (\-\-hook\-timeout) or an overrun of
\-\-max\-lock\-time kills the hook's whole process group, thaws, runs the post hooks, unlocks and runs the after
hooks. SIGINT, SIGTERM, SIGHUP and SIGQUIT do the same and exit 128+N. A guardian process (mq\-guardian,
oom_score_adj \-1000, in a session of its own) is started before the first hook: if mysql-quiesce is killed
(SIGKILL, OOM) it kills every hook still running and thaws every frozen filesystem at once, and the server drops
the lock with the connection. The deadline holds when mysql-quiesce cannot act (stopped, stuck): the lock
session's idle timeout is the time left plus 1 s, a second session kills it 1 s after the deadline, and the
guardian thaws and stops the hooks; such a run never exits 0. SIGTSTP, SIGTTIN and SIGTTOU are ignored from the
first lock attempt to the release, and progress lines never wait for a stderr nobody reads. A hook stuck on the
frozen filesystem gets SIGKILL and is reaped after the thaw. Limits: a cgroup freezer stops the guardian with the
run (the database lock still ends at the deadline, a frozen filesystem stays frozen until the cgroup is thawed),
and what a hook moves out of its process group (setsid, a daemon) is not stopped. Before the post hooks the lock session must still
be the same live connection; if it was lost, the run exits 65 (whatever else failed) and the report says
"consistent": false. The root filesystem, filesystems holding the current directory, an output file or a hook's
program are never frozen. Only one run at a time per machine (run.lock in the root-only state directory).
.SH RECOVERY
If a filesystem was left frozen (it never should be: a guardian process thaws it even when mysql-quiesce is killed),
thaw it with \fBfsfreeze \-u MOUNTPOINT\fR. The database lock is released by the server when the connection closes.
.SH "SPLIT MODE"
\fBmysql-quiesce lock\fR starts a detached holder that locks (and freezes) and returns once everything is held,
printing the MYSQL_QUIESCE_* variables as \fBexport KEY='value'\fR lines; \fBmysql-quiesce unlock\fR releases and exits 0 only if the lock was held
continuously (65: lost; 124: released at \-\-max\-lock\-time before unlock; 69: nothing to unlock).
\fBmysql-quiesce status\fR shows the holder (exit 3 if none). A \fBlock\fR stopped by SIGTERM, SIGINT or SIGHUP
before it printed the variables (a framework timeout) stops its holder and exits 128+N; a \fBlock\fR killed outright
makes its holder release at once. \fBlock\fR refuses (exit 75) while an earlier holder's outcome (it released at \-\-max\-lock\-time, or died)
waits for its \fBunlock\fR, so that an \fBunlock\fR always answers for its own lock. Give \fBlock\fR retries (\-\-lock\-retries, \-\-lock\-retry\-delay,
\-\-lock\-wait\-timeout, \-\-long\-query\-wait, \-\-connect\-timeout) that end before the framework's timeout. State lives in
\-\-state\-dir, which must be ours with mode 0700; one holder at a time (an flock on holder.lock; a second
\fBlock\fR exits 75). \fBmysql-quiesce hold\fR prints one READY line and holds until stdin reaches EOF or
SIGTERM/SIGINT (a stdin already at its end, such as /dev/null, is refused with exit status 64). A run killed
outright while it had stopped a replica SQL thread (\-\-stop\-replica\-sql) leaves it stopped; the next run and
\-\-check say so until it runs again. Scripts for the QEMU guest agent, VMware Tools, Google Cloud and Azure Backup
are in /usr/share/mysql\-quiesce/; examples for AWS DLM, Velero and Kanister in
/usr/share/doc/mysql-quiesce/frameworks/ (docs/frameworks/ in the source).
@GRANTS@
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
# all EBS volumes of this instance (boot volume excluded), tagged with the coordinates
mysql-quiesce --freeze /var/lib/mysql --snapshot /usr/share/mysql-quiesce/hooks/aws-ebs-snapshot
# split mode, e.g. in pre/post-scripts; never eval "$(mysql-quiesce lock ...)": a failed lock
# would then go unnoticed and the snapshot be taken unlocked
vars=$(mysql-quiesce lock --freeze /var/lib/mysql) || exit
eval "$vars"; take-snapshot; mysql-quiesce unlock
# alert on failed snapshots with node_exporter
mysql-quiesce --metrics-file /var/lib/prometheus/node-exporter/mysql_quiesce.prom -- ...
# prove that a snapshot restores, at the coordinates recorded when it was taken
mount -o ro,nouuid,norecovery /dev/vg/mysql-snap /mnt/snap    # XFS; ext4: -o ro
mysql-quiesce verify --datadir /mnt/snap/mysql --coordinates-file /mnt/snap/mysql/snapshot-coordinates.json
.fi
"#;

/// LOCK MODES, from the table the code uses (server::strategy::MODES).
fn lock_modes() -> String {
    use crate::server::strategy::{LockMode, MODES};
    let mut out = String::from(".SH \"LOCK MODES\"\n");
    for r in MODES {
        let statements: Vec<String> = r
            .planned
            .iter()
            .map(|s| format!("{} ... {}", s.lock.join("; "), s.unlock))
            .collect();
        let default = if r.mode == LockMode::Auto {
            " (default)"
        } else {
            ""
        };
        let mut text = format!("Blocks: {}.", r.blocks);
        if r.mode != LockMode::Auto && !statements.is_empty() {
            text = format!("{}. {text}", statements.join("; or "));
        }
        if !r.server.is_empty() {
            text = format!("Server: {}. {text}", r.server);
        }
        if !r.binlog_point.is_empty() {
            text.push_str(&format!(" Binary-log point: {}.", r.binlog_point));
        }
        let privileges: Vec<&str> = r
            .planned
            .iter()
            .flat_map(|s| s.privileges.iter().copied())
            .collect();
        if !privileges.is_empty() && r.mode != LockMode::Auto {
            text.push_str(&format!(" Needs {}.", privileges.join(" or ")));
        }
        out.push_str(&format!(
            ".TP\n\\fB{}\\fR{default}\n{}\n",
            r.name,
            roff_text(&text)
        ));
    }
    out
}

/// EXIT STATUS, from the table the code uses (exit::STATUSES).
fn exit_statuses() -> String {
    let mut out = String::from(".SH \"EXIT STATUS\"\n");
    for s in crate::exit::STATUSES {
        out.push_str(&format!(
            ".TP\n\\fB{}\\fR\n{}\n",
            roff(s.code),
            roff_text(s.meaning)
        ));
    }
    out
}

/// The state directory's FILES entry, from the table the code uses.
fn state_files() -> String {
    let mut out = format!(
        ".TP\n{}/\n\\-\\-state\\-dir, root only (0700; another user's default is $XDG_RUNTIME_DIR/mysql\\-quiesce, \
         else /tmp/mysql\\-quiesce\\-UID). It holds:\n",
        roff(crate::state::ROOT_DIR)
    );
    for (name, what) in crate::state::FILES {
        out.push_str(&format!(".RS\n.TP\n{}\n{}\n.RE\n", roff(name), roff(what)));
    }
    out
}

/// Roff for a line of the project's tables, where `code` spans are bold.
pub fn roff_text(text: &str) -> String {
    text.split('`')
        .enumerate()
        .map(|(i, part)| {
            let part = roff(part).replace("**", "");
            if i % 2 == 1 {
                format!("\\fB{part}\\fR")
            } else {
                part
            }
        })
        .collect()
}

/// Roff-escape text for a man page line.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// SUBCOMMANDS: each subcommand (hidden ones too, except internal `__*`),
/// its synopsis, description and own options; clap_mangen lists names only.
fn subcommands_section(cmd: &clap::Command) -> String {
    let mut out = String::from(
        ".SH SUBCOMMANDS\nThe options above apply to the subcommands too: \\fBlock\\fR and \\fBhold\\fR lock and freeze as a \
         run does (connection, lock, \\-\\-freeze, \\-\\-max\\-lock\\-time, hooks before/pre/post/after, outputs); \
         \\fBunlock\\fR and \\fBstatus\\fR use \\-\\-state\\-dir; \\fBverify\\fR takes only its own options (and \\-q, \\-v) and reads no \
         option files.\n",
    );
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.get_name().starts_with("__"))
    {
        let own: Vec<&clap::Arg> = sub
            .get_arguments()
            .filter(|a| !a.is_global_set() && !a.is_hide_set())
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
            .collect();
        let mut synopsis = format!("\\fBmysql\\-quiesce {}\\fR", roff(sub.get_name()));
        for a in &own {
            if let Some(long) = a.get_long() {
                synopsis.push_str(&format!(" [\\fB\\-\\-{}\\fR]", roff(long)));
            } else {
                synopsis.push_str(&format!(
                    " \\fI{}\\fR",
                    roff(&a.get_id().to_string().to_uppercase())
                ));
            }
        }
        synopsis.push_str(" [\\fIOPTIONS\\fR]");
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        out.push_str(&format!(".TP\n{synopsis}\n{}\n", roff(&about)));
        if own.is_empty() {
            continue;
        }
        out.push_str(".RS\n");
        for a in own {
            let head = match a.get_long() {
                Some(long) => format!("\\fB\\-\\-{}\\fR", roff(long)),
                None => format!("\\fI{}\\fR", roff(&a.get_id().to_string().to_uppercase())),
            };
            let mut help = a
                .get_long_help()
                .or(a.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            let flag = !a.get_action().takes_values();
            let values: Vec<String> = (if flag {
                Vec::new()
            } else {
                a.get_possible_values()
            })
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_string())
            .collect();
            if !values.is_empty() {
                if !help.is_empty() && !help.ends_with('.') {
                    help.push('.');
                }
                help = format!("{help} One of: {}.", values.join(", "))
                    .trim()
                    .to_string();
            }
            out.push_str(&format!(".TP\n{head}\n{}\n", roff(&help)));
        }
        out.push_str(".RE\n");
    }
    out
}

pub fn man_page() -> Vec<u8> {
    let man = clap_mangen::Man::new(command());
    let mut out = Vec::new();
    man.render_title(&mut out).expect("render man");
    man.render_name_section(&mut out).expect("render man");
    man.render_synopsis_section(&mut out).expect("render man");
    man.render_description_section(&mut out)
        .expect("render man");
    out.extend_from_slice(sequence_roff().as_bytes());
    man.render_options_section(&mut out).expect("render man");
    out.extend_from_slice(subcommands_section(&command()).as_bytes());
    let extra = EXTRA_MAN
        .replace("@LOCK_MODES@\n", &lock_modes())
        .replace("@EXIT_STATUS@\n", &exit_statuses())
        .replace("@STATE_FILES@\n", &state_files());
    out.extend_from_slice(extra.as_bytes());
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
        Generated::Readme => {
            let _ = stdout.write_all(readme_tables().as_bytes());
        }
    }
    0
}

/// The README's tables that the code's own tables generate, each after the
/// heading line it follows in the README.
pub fn readme_tables() -> String {
    format!(
        "The sequence of a run:\n\n{}\n`--lock=MODE` (default `auto`):\n\n{}\n### Exit status\n\n{}\n\
         Privileges:\n\n{}",
        crate::procedure::markdown_table(),
        crate::server::strategy::markdown_table(),
        crate::exit::markdown_table(),
        crate::grants::markdown_table()
    )
}

/// The man page's account of the sequence (roff).
fn sequence_roff() -> String {
    let mut out = String::from(
        ".PP\nThe sequence of a run, and what a failure at each step does (the first failure decides the exit \
         status, except that a lost lock, 65, decides it whatever else failed; everything acquired is still \
         released, in order):\n",
    );
    for (i, s) in crate::procedure::STEPS.iter().enumerate() {
        out.push_str(&format!(
            ".TP\n{}. {}\n{} On failure: {}.\n",
            i + 1,
            s.name,
            roff_text(s.what),
            roff_text(s.on_failure)
        ));
    }
    out.push_str(
        ".PP\nProgress goes to stderr; \\-\\-report and \\-\\-metrics\\-file are written last, after thaw and unlock.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_tables_are_the_code_tables() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        for table in [
            crate::procedure::markdown_table(),
            crate::server::strategy::markdown_table(),
            crate::exit::markdown_table(),
        ] {
            assert!(
                readme.contains(&table),
                "README.md is stale: paste the tables from `cargo run -- --no-defaults generate readme`; this \
                 one is missing:\n{table}"
            );
        }
    }

    fn page() -> String {
        String::from_utf8(man_page()).unwrap()
    }

    fn section<'a>(page: &'a str, name: &str) -> &'a str {
        let start = page
            .find(&format!(".SH {name}\n"))
            .unwrap_or_else(|| panic!("no {name} section"));
        let rest = &page[start + 4..];
        &rest[..rest.find("\n.SH ").unwrap_or(rest.len())]
    }

    #[test]
    fn every_subcommand_and_its_options_are_in_the_man_page() {
        let page = page();
        let subs = section(&page, "SUBCOMMANDS");
        let cmd = command();
        for sub in cmd.get_subcommands() {
            let shown = subs.contains(&format!("\\fBmysql\\-quiesce {}\\fR", roff(sub.get_name())));
            // Internal subcommands stay out; hidden but public ones (generate) are in.
            assert_eq!(
                shown,
                !sub.get_name().starts_with("__"),
                "{}",
                sub.get_name()
            );
            if !shown {
                continue;
            }
            for arg in sub.get_arguments().filter(|a| !a.is_global_set()) {
                if let Some(long) = arg.get_long() {
                    assert!(
                        subs.contains(&format!("\\fB\\-\\-{}\\fR", roff(long))),
                        "{long}"
                    );
                }
            }
        }
        for value in ["man", "bash", "zsh", "fish"] {
            assert!(subs.contains(value));
        }
    }

    #[test]
    fn files_exit_status_and_environment_cover_what_is_installed_and_returned() {
        let page = page();
        let files = section(&page, "FILES");
        for path in [
            "/run/mysql\\-quiesce/",
            "/etc/mysql\\-quiesce/mysql\\-quiesce.cnf",
            "/usr/share/mysql\\-quiesce/service.cnf",
            "/usr/share/mysql\\-quiesce/hooks/",
            "/var/lib/mysql\\-quiesce/last\\-report.json",
            "mysql\\-quiesce.service",
            "mysql\\-quiesce.timer",
        ] {
            assert!(files.contains(path), "FILES lacks {path}");
        }
        for (name, _) in crate::state::FILES {
            assert!(files.contains(&roff(name)), "FILES lacks {name}");
        }
        // Every file the Debian package installs under /usr/share/mysql-quiesce/ is named
        // (by its path below that directory), so a new framework script cannot go unmentioned.
        let manifest = include_str!("../Cargo.toml");
        let installed: Vec<String> = manifest
            .lines()
            .filter(|l| l.trim_start().starts_with("[\"docs/frameworks/"))
            .filter_map(|l| {
                let mut quoted = l.split('"').skip(1).step_by(2);
                let source = quoted.next()?;
                let dest = quoted.next()?;
                let name = source.rsplit('/').next()?;
                let dir = dest.strip_prefix("usr/share/mysql-quiesce/")?;
                Some(format!("{dir}{name}"))
            })
            .collect();
        assert!(installed.len() >= 8, "{installed:?}");
        for path in installed {
            assert!(files.contains(&roff(&path)), "FILES lacks {path}");
        }
        let env = section(&page, "ENVIRONMENT");
        for var in ["MYSQL_QUIESCE_CNF", "MYSQL_QUIESCE_OPTS"] {
            assert!(env.contains(&roff(var)), "ENVIRONMENT lacks {var}");
        }
        let exit = section(&page, "\"EXIT STATUS\"");
        for status in crate::exit::STATUSES {
            assert!(
                exit.contains(&format!("\\fB{}\\fR", roff(status.code))),
                "{}",
                status.code
            );
        }
        let env = section(&page, "ENVIRONMENT");
        assert!(env.contains("\\fBMYSQL_QUIESCE_\\fR\\fINAME\\fR\\fB_BINLOG_FILE\\fR"));
        assert!(section(&page, "METRICS")
            .contains("mysql_quiesce_last_success_timestamp_seconds > 26 * 3600"));
    }
}
