//! The command line: the single definition that help, the man page, shell
//! completions and option-file keys are all generated from.
//!
//! Option files feed the same definition: every long option below can be set
//! as `name = value` in the `[mysql-quiesce]` group (see `options`).

use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

pub const ABOUT: &str = "Hold a MySQL/MariaDB lock (and optionally freeze filesystems) while a storage snapshot is taken, and always release them.";

pub const LONG_ABOUT: &str = "\
Hold a MySQL/MariaDB lock (and optionally freeze filesystems) while a storage snapshot is taken, and always release them.

It replaces the classic procedure (FLUSH TABLES WITH READ LOCK on one connection, fsfreeze -f, start the snapshot, \
fsfreeze -u, UNLOCK TABLES) that shell scripts cannot do safely because the lock lives only as long as its connection. \
mysql-quiesce holds the lock on its own session, picks the least disruptive lock the server offers (--lock=auto), \
bounds every wait so writers are never stalled behind a long query, reads the binary-log coordinates under the lock, \
runs your hooks and snapshot COMMAND inside it, freezes and thaws filesystems itself, and releases everything on \
every path: errors, timeouts, signals, and (through a guardian process) even SIGKILL.";

/// --help's closing lines, from the tables the code uses.
pub fn after_help() -> String {
    let steps: Vec<&str> = crate::procedure::STEPS.iter().map(|s| s.name).collect();
    format!(
        "Sequence: {}.\nThe stdout of --snapshot hooks and of COMMAND is mysql-quiesce's stdout; everything else goes \
         to stderr.\n\n{}",
        steps.join(", "),
        crate::exit::summary()
    )
}

pub use crate::server::connect::{Protocol, SslMode};
pub use crate::server::guard::QueryType;
pub use crate::server::strategy::LockMode;

/// The value clap gives a bare `--password`/`-p` (default_missing_value):
/// "prompt for it". A control character cannot come from a shell argument in
/// practice, so it cannot be mistaken for a real password.
pub const PASSWORD_PROMPT: &str = "\u{1}prompt";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "mysql-quiesce",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    disable_help_flag = true,
    args_override_self = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub subcommand: Option<Sub>,

    // ---------------------------------------------------------------- connection
    /// Server host name or IP address.
    #[arg(
        global = true,
        short = 'h',
        long,
        value_name = "HOST",
        help_heading = "Connection"
    )]
    pub host: Option<String>,

    /// TCP port [default: 3306]. Typed here without --host, --socket or --protocol, it means TCP
    /// to 127.0.0.1 (as MariaDB clients); from a file with host localhost and no socket, it must
    /// be 3306 or come with protocol=TCP (otherwise exit 78: the default socket may be another server).
    #[arg(
        global = true,
        short = 'P',
        long,
        value_name = "PORT",
        help_heading = "Connection"
    )]
    pub port: Option<u16>,

    /// User name [default: the login name].
    #[arg(
        global = true,
        short = 'u',
        long,
        value_name = "USER",
        help_heading = "Connection"
    )]
    pub user: Option<String>,

    /// Password. The value must be attached (-pSECRET, --password=SECRET); a bare -p
    /// prompts on the terminal. A password given here is masked in the process list.
    #[arg(global = true,
        short = 'p',
        long,
        value_name = "PASS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = PASSWORD_PROMPT,
        help_heading = "Connection"
    )]
    pub password: Option<String>,

    /// Unix socket file.
    #[arg(
        global = true,
        short = 'S',
        long,
        value_name = "PATH",
        help_heading = "Connection"
    )]
    pub socket: Option<PathBuf>,

    /// Transport: TCP or SOCKET [default: SOCKET for localhost, else TCP].
    #[arg(
        global = true,
        long,
        value_enum,
        ignore_case = true,
        value_name = "PROTO",
        help_heading = "Connection"
    )]
    pub protocol: Option<Protocol>,

    /// Seconds to wait for the connection to be established.
    #[arg(
        global = true,
        long,
        value_name = "SECS",
        default_value = "10",
        help_heading = "Connection"
    )]
    pub connect_timeout: f64,

    /// TLS use: DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY [default: PREFERRED over
    /// TCP, VERIFY_CA with --ssl-ca]. VERIFY_* need --ssl-ca. A Unix socket is never encrypted.
    #[arg(
        global = true,
        long,
        value_enum,
        ignore_case = true,
        value_name = "MODE",
        help_heading = "Connection"
    )]
    pub ssl_mode: Option<SslMode>,

    /// CA certificate file (PEM) used to verify the server (the public web CAs are trusted too:
    /// use VERIFY_IDENTITY to also check the host name).
    #[arg(global = true, long, value_name = "FILE", help_heading = "Connection")]
    pub ssl_ca: Option<PathBuf>,

    /// Client certificate (PEM).
    #[arg(global = true, long, value_name = "FILE", help_heading = "Connection")]
    pub ssl_cert: Option<PathBuf>,

    /// Client private key (PEM).
    #[arg(global = true, long, value_name = "FILE", help_heading = "Connection")]
    pub ssl_key: Option<PathBuf>,

    // ---------------------------------------------------------------- option files
    /// Read no option files.
    #[arg(global = true, long, help_heading = "Option files")]
    pub no_defaults: bool,

    /// Read only this option file.
    #[arg(
        global = true,
        long,
        value_name = "FILE",
        help_heading = "Option files"
    )]
    pub defaults_file: Option<PathBuf>,

    /// Read this option file after the global ones, before ~/.my.cnf.
    #[arg(
        global = true,
        long,
        value_name = "FILE",
        help_heading = "Option files"
    )]
    pub defaults_extra_file: Option<PathBuf>,

    /// Also read groups [clientSUFFIX] and [mysql-quiesceSUFFIX].
    #[arg(
        global = true,
        long,
        value_name = "SUFFIX",
        help_heading = "Option files"
    )]
    pub defaults_group_suffix: Option<String>,

    /// Print the options read from option files and environment, then exit.
    #[arg(global = true, long, help_heading = "Option files")]
    pub print_defaults: bool,

    // ---------------------------------------------------------------- lock
    /// Database lock to hold during the snapshot (see LOCK MODES in the man page).
    #[arg(
        global = true,
        long,
        value_enum,
        value_name = "MODE",
        default_value = "auto",
        help_heading = "Lock"
    )]
    pub lock: LockMode,

    /// Lock several servers as one (repeatable): an option file (its [client] group) or
    /// mysql://user@host:port/?socket=PATH (no password in the URL); NAME=SPEC names it for the
    /// MYSQL_QUIESCE_<NAME>_* variables.
    #[arg(global = true, long, value_name = "SPEC", action = ArgAction::Append, help_heading = "Lock")]
    pub instance: Vec<String>,

    /// How long ONE lock attempt may make writers wait at most, in seconds (fractions allowed).
    /// Earlier attempts get less (0.25 s, doubling; the last one all of it), so a blocked
    /// attempt costs writers little.
    #[arg(
        global = true,
        long,
        value_name = "SECS",
        default_value = "1",
        help_heading = "Lock"
    )]
    pub lock_wait_timeout: f64,

    /// Lock attempts after the first one fails.
    #[arg(
        global = true,
        long,
        value_name = "N",
        default_value = "10",
        help_heading = "Lock"
    )]
    pub lock_retries: u32,

    /// Pause between lock attempts, in seconds.
    #[arg(
        global = true,
        long,
        value_name = "SECS",
        default_value = "3",
        help_heading = "Lock"
    )]
    pub lock_retry_delay: f64,

    /// Before each lock attempt, wait while a statement the lock would wait for (see
    /// --long-query-type) has run longer than SECS, instead of making every writer wait
    /// behind it. 0 = off. Default: 1 for ftwrl (it waits for running statements), off for
    /// the modes that do not.
    #[arg(global = true, long, value_name = "SECS", help_heading = "Lock")]
    pub long_query_guard: Option<f64>,

    /// Which running statements the guard, the wait after a blocked attempt and
    /// --kill-long-queries consider. Default: what the lock waits for (all on MySQL and Percona
    /// ftwrl; update on MariaDB and for the other modes).
    #[arg(
        global = true,
        long,
        value_enum,
        value_name = "TYPE",
        help_heading = "Lock"
    )]
    pub long_query_type: Option<QueryType>,

    /// How long in all to wait for long statements to finish, before and between lock
    /// attempts (nothing is locked meanwhile). If they still run then: exit 75 naming them.
    /// 0 = never wait (attempt at once and rely on the retries).
    #[arg(
        global = true,
        long,
        value_name = "SECS",
        default_value = "60",
        help_heading = "Lock"
    )]
    pub long_query_wait: f64,

    /// DANGEROUS: when a lock attempt has waited SECS, KILL QUERY the statements of
    /// --long-query-type that started before it. Must be below --lock-wait-timeout. Off by default.
    #[arg(global = true, long, value_name = "SECS", help_heading = "Lock")]
    pub kill_long_queries: Option<f64>,

    /// Run FLUSH NO_WRITE_TO_BINLOG TABLES before each lock attempt (can itself pile up statements).
    #[arg(global = true, long, help_heading = "Lock")]
    pub pre_flush: bool,

    /// On a replica, stop the SQL thread before locking and start it again afterwards (also on failure).
    #[arg(global = true, long, help_heading = "Lock")]
    pub stop_replica_sql: bool,

    /// Deadline on the whole locked section (lock held + filesystems frozen), in seconds.
    /// When it passes, the running hook is killed and everything is released (exit 124).
    #[arg(
        global = true,
        long,
        value_name = "SECS",
        default_value = "120",
        help_heading = "Lock"
    )]
    pub max_lock_time: f64,

    // ---------------------------------------------------------------- hooks
    /// Shell command run before connecting (repeatable).
    #[arg(global = true, long, value_name = "CMD", action = ArgAction::Append, help_heading = "Hooks")]
    pub before: Vec<String>,

    /// Shell command run locked, before the freeze and the snapshot (repeatable).
    #[arg(global = true, long, value_name = "CMD", action = ArgAction::Append, help_heading = "Hooks")]
    pub pre: Vec<String>,

    /// Shell command that takes the snapshot, run locked and frozen (repeatable). Its stdout is ours.
    #[arg(global = true, long, value_name = "CMD", action = ArgAction::Append, help_heading = "Hooks")]
    pub snapshot: Vec<String>,

    /// Shell command run after the snapshot, still locked; runs whenever the lock was taken (repeatable).
    #[arg(global = true, long, value_name = "CMD", action = ArgAction::Append, help_heading = "Hooks")]
    pub post: Vec<String>,

    /// Shell command run after unlocking; runs whenever the connection was made, whatever happened after (repeatable).
    #[arg(global = true, long, value_name = "CMD", action = ArgAction::Append, help_heading = "Hooks")]
    pub after: Vec<String>,

    /// Seconds a single hook may run before its process group is killed.
    #[arg(
        global = true,
        long,
        value_name = "SECS",
        default_value = "300",
        help_heading = "Hooks"
    )]
    pub hook_timeout: f64,

    // ---------------------------------------------------------------- freeze
    /// Freeze this mounted filesystem (FIFREEZE) during the snapshot phase (repeatable).
    #[arg(global = true, long, value_name = "MOUNTPOINT", action = ArgAction::Append, help_heading = "Freeze")]
    pub freeze: Vec<PathBuf>,

    /// Allow freezing a filesystem that holds the current directory or the report, coordinates or metrics file (never /, a redirected stdout/stderr, or a hook's program).
    #[arg(global = true, long, help_heading = "Freeze")]
    pub force_freeze: bool,

    // ---------------------------------------------------------------- output
    /// Write the binary-log coordinates read under the lock to this JSON file before the pre hooks.
    #[arg(global = true, long, value_name = "PATH", help_heading = "Output")]
    pub coordinates_file: Option<PathBuf>,

    /// Write a JSON report of the run to this file.
    #[arg(global = true, long, value_name = "PATH", help_heading = "Output")]
    pub report: Option<PathBuf>,

    /// Write Prometheus metrics of the run (node_exporter textfile collector format) to this file.
    #[arg(global = true, long, value_name = "PATH", help_heading = "Output")]
    pub metrics_file: Option<PathBuf>,

    /// Only print errors.
    #[arg(global = true, short = 'q', long, help_heading = "Output")]
    pub quiet: bool,

    /// Also print the SQL statements sent (repeat for more detail).
    #[arg(global = true, short = 'v', long, action = ArgAction::Count, help_heading = "Output")]
    pub verbose: u8,

    // ---------------------------------------------------------------- run control
    /// Lock file that keeps two runs from overlapping on this machine [default: run.lock in the
    /// state directory]. Must be a regular file of ours that nobody else can write; never followed
    /// through a symbolic link.
    #[arg(global = true, long, value_name = "PATH", help_heading = "Run control")]
    pub lock_file: Option<PathBuf>,

    /// Directory for state: the run lock, notes about a stopped replica SQL thread, and the holder
    /// of `lock`/`unlock`/`status` (socket, flock, log, last result). Must be ours, mode 0700
    /// [default: /run/mysql-quiesce for root; $XDG_RUNTIME_DIR/mysql-quiesce, else
    /// /tmp/mysql-quiesce-UID, for other users].
    #[arg(global = true, long, value_name = "DIR", help_heading = "Run control")]
    pub state_dir: Option<PathBuf>,

    /// Connect and verify privileges, hooks and freeze targets; lock and freeze nothing.
    #[arg(global = true, long, help_heading = "Run control")]
    pub check: bool,

    /// Print the plan (statements, hooks, freezes) without connecting.
    #[arg(global = true, long, help_heading = "Run control")]
    pub dry_run: bool,

    /// Print help.
    #[arg(global = true, long, action = ArgAction::Help)]
    pub help: Option<bool>,

    /// Command run last in the snapshot phase, as argv without a shell. Its stdout is ours.
    #[arg(last = true, value_name = "COMMAND", num_args = 1..)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Sub {
    /// Take the lock (and freeze) in a detached holder process and return once it is held;
    /// prints the MYSQL_QUIESCE_* variables. For pre/post-script frameworks: pair with `unlock`.
    Lock {
        /// Print the variables as a JSON object instead of KEY=value lines.
        #[arg(long)]
        json: bool,
    },
    /// Tell the holder to thaw and unlock. Exit 0 only if the lock was held throughout;
    /// 65 if it was lost, 124 if the holder had to release it at --max-lock-time.
    Unlock,
    /// Whether a holder is running, since when, what it holds and the time left (exit 3 if none).
    Status {
        /// Print one JSON object: running, phase (starting, locking, holding, releasing,
        /// finished, exiting), pid, since, held_seconds, seconds_left, lock, frozen, env, why,
        /// outcome; when none runs: running false, result_waiting, dead_holder_pid.
        #[arg(long)]
        json: bool,
    },
    /// Lock (and freeze), print one ready line, hold until stdin reaches EOF or SIGTERM/SIGINT,
    /// then release; exit status as `unlock`. For coprocesses in shell scripts.
    Hold,
    #[command(about = crate::verify::args::ABOUT, long_about = crate::verify::args::LONG_ABOUT)]
    Verify(Box<crate::verify::Args>),
    /// Print the man page or a shell completion script to stdout.
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: Generated,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generated {
    Man,
    Bash,
    Zsh,
    Fish,
    /// The README's tables (sequence, lock modes, exit statuses), as the code has them.
    Readme,
}

impl Cli {
    /// The connection options as plain values (their origins are added by
    /// `options`, which knows them).
    pub fn connection_args(&self) -> crate::server::connect::ConnectionArgs {
        crate::server::connect::ConnectionArgs {
            host: self.host.clone(),
            port: self.port,
            port_origin: None,
            socket: self.socket.clone(),
            socket_on_command_line: false,
            user: self.user.clone(),
            password: self.password.clone(),
            protocol: self.protocol,
            connect_timeout: self.connect_timeout,
            ssl_mode: self.ssl_mode,
            ssl_ca: self.ssl_ca.clone(),
            ssl_cert: self.ssl_cert.clone(),
            ssl_key: self.ssl_key.clone(),
        }
    }

    /// --state-dir, or the default for the user we run as.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(crate::state::default_dir)
    }
}

/// The clap command, for parsing, option-file key lookup, man page and completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command().after_help(after_help())
}

/// Long options that describe where options come from; they are consumed before
/// the option files are read and are not allowed inside option files.
pub const DEFAULTS_OPTIONS: &[&str] = &[
    "no-defaults",
    "defaults-file",
    "defaults-extra-file",
    "defaults-group-suffix",
    "print-defaults",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("mysql-quiesce").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn password_value_only_when_attached() {
        // `-pSECRET` is rewritten to `--password=SECRET` by options::normalize_argv.
        assert_eq!(
            parse(&["--password=secret"]).password.as_deref(),
            Some("secret")
        );
        assert_eq!(parse(&["-p"]).password.as_deref(), Some(PASSWORD_PROMPT));
        assert_eq!(parse(&["--password="]).password.as_deref(), Some(""));
        // "-p x" is a bare -p followed by something else, as in the mysql client.
        assert!(Cli::try_parse_from(["mysql-quiesce", "-p", "x"]).is_err());
    }

    #[test]
    fn command_after_double_dash_and_later_scalar_wins() {
        let cli = parse(&[
            "--lock-retries=2",
            "--lock-retries=5",
            "--",
            "echo",
            "-p",
            "x",
        ]);
        assert_eq!(cli.lock_retries, 5);
        assert_eq!(cli.command, ["echo", "-p", "x"]);
    }

    #[test]
    fn hooks_repeat_in_order() {
        let cli = parse(&["--pre", "a", "--pre=b", "--post", "c"]);
        assert_eq!(cli.pre, ["a", "b"]);
        assert_eq!(cli.post, ["c"]);
    }
}
