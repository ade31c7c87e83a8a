//! The options of `mysql-quiesce verify` (the `Verify` subcommand in `cli`).
//! verify reads no option files and connects to no server of yours: every
//! input is on its command line.

use clap::ValueEnum;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckTables {
    /// CHECK TABLE every table of every schema.
    All,
    /// Only recovery and the restore point.
    None,
}

/// The subcommand's one-line help (clap's `about`).
pub const ABOUT: &str = "Prove that a snapshot restores: start the matching server on it (never writing to it), let \
crash recovery run, compare the restore point with the recorded coordinates, check every table, remove everything.";

/// `mysql-quiesce verify --help` and the man page.
pub const LONG_ABOUT: &str = "Prove that a snapshot restores. verify starts the server that matches the data \
(mariadbd or mysqld) on a data directory inside a mounted snapshot, never writing to it (an overlay whose writable \
layer lives in --work-dir, or a full copy with --copy-to), with no option files, networking off, a private socket, \
another server id, and replication and events off. It waits (at most --timeout) for crash recovery, reads the restore \
point the copy really holds (the end of the last complete transaction of the binary log as the snapshot has it, and \
the GTID state), compares it with the --coordinates-file of the run that took the snapshot, runs CHECK TABLE on every \
table, shuts the server down and removes everything it made: nothing is left running or mounted, also when \
interrupted or when the server crashes. It reads no option files. Progress goes to stderr; the statements that make \
the copy a replica (or start point-in-time recovery) from its restore point go to stdout. Exit status: 0 restorable \
(and exactly at the recorded coordinates, where those are exact); 65 the copy is not what was recorded (coordinates \
differ, a table fails its check, recovery reports damage); 69 the server cannot start or recover within --timeout; 78 \
bad input (not a data directory, a live one, tables whose files live outside it, server missing or of the wrong \
flavor or version, no way to make a writable view); \
128+N interrupted by signal N.";

/// The options of `verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The data directory to verify, inside a mounted snapshot (an EBS volume made from it, an LVM or btrfs
    /// snapshot, a ZFS .zfs/snapshot/NAME, a copied image mounted read-only). Never written to.
    #[arg(long, value_name = "DIR")]
    pub datadir: PathBuf,

    /// The coordinates file written by the run that took the snapshot (--coordinates-file). Exact coordinates
    /// must match the copy's restore point exactly (else exit 65); inexact ones (--lock=instance,
    /// tables-for-backup) are reported next to the exact point found.
    #[arg(long, value_name = "FILE")]
    pub coordinates_file: Option<PathBuf>,

    /// Where the snapshot holds the binary log and its index, when not in --datadir (the server's --log-bin
    /// pointed elsewhere). Never written to either.
    #[arg(long, value_name = "DIR")]
    pub binlog_dir: Option<PathBuf>,

    /// The server binary to start [default: mariadbd or mysqld from PATH, /usr/sbin or /usr/libexec, whichever
    /// matches the data]. Must be of the data's family (MySQL or MariaDB) and not older than the data.
    #[arg(long, value_name = "PATH")]
    pub server: Option<PathBuf>,

    /// An option the data needs that verify cannot know (repeatable), passed to the server last, e.g.
    /// --server-option=--innodb-page-size=32k, --server-option=--lower-case-table-names=1 or a keyring.
    #[arg(long, value_name = "OPTION", allow_hyphen_values = true, action = clap::ArgAction::Append)]
    pub server_option: Vec<String>,

    /// CHECK TABLE every table of every schema (all), run on a second, InnoDB read-only start so that the
    /// writable layer stays small; or none.
    #[arg(long, value_enum, value_name = "WHICH", default_value = "all")]
    pub check_tables: CheckTables,

    /// How long each step may take, in seconds: the server's start with crash recovery, each CHECK TABLE,
    /// the shutdown, a --copy-to copy. A server that has not recovered by then is stopped (exit 69).
    #[arg(long, value_name = "SECS", default_value = "600")]
    pub timeout: f64,

    /// Write a JSON report: server version, recovery time, restore point, recorded coordinates and whether
    /// they match, tables checked and failed, the statements, the server's error log on failure.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Verify a full copy made in a new directory under DIR instead of an overlay (where overlayfs cannot be
    /// mounted, or verify does not run as root). Needs room for the whole data directory; removed at the end.
    #[arg(long, value_name = "DIR")]
    pub copy_to: Option<PathBuf>,

    /// Where verify makes its private directory (the overlay's writable layer, which grows by what the server
    /// writes: redo log, system tablespace, every table recovery touches; the socket and the logs). On a local
    /// disk filesystem; removed at the end.
    #[arg(long, value_name = "DIR", default_value = "/var/tmp")]
    pub work_dir: PathBuf,
}
