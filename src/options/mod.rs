//! Where options come from: the command line, the environment and MySQL option
//! files, merged with the precedence command line > environment > option
//! files > built-in defaults.
//!
//! Option files are read the way MySQL/MariaDB client programs read them (see
//! `files`); their entries become `--name=value` arguments of the one clap
//! definition in `cli`, so every long option can be set in a file.

pub mod files;
pub mod merge;
pub mod password;

use crate::cli::Cli;
use std::ffi::OsString;

/// The merged options, ready to run.
#[derive(Debug)]
pub struct Loaded {
    pub cli: Cli,
    /// Problems that did not stop us (e.g. world-writable option file ignored),
    /// to be printed on stderr.
    pub warnings: Vec<String>,
    /// Shown with -v: files read, [client] keys ignored.
    pub notes: Vec<String>,
    /// Arguments from option files and environment (password masked), for --print-defaults.
    pub defaults_args: Vec<String>,
}

/// Parse `argv` (including argv[0]), read option files and environment, merge,
/// prompt for the password if asked to. Errors carry exit codes (`exit::Failure`:
/// 78 for option files and bad values); clap's own errors (usage, --help,
/// --version) are returned as `clap::Error` inside the anyhow error.
pub fn load(argv: Vec<OsString>) -> anyhow::Result<Loaded> {
    let _ = argv;
    todo!("options::load")
}

/// Rewrite the mysql-compatible short password form `-pSECRET` into
/// `--password=SECRET` (clap cannot express "value only when attached").
/// Stops at `--`.
pub fn normalize_argv(argv: Vec<OsString>) -> Vec<OsString> {
    argv
}

/// Connection settings from one option file's client groups (for --instance).
#[derive(Debug, Default, Clone)]
pub struct ClientGroup {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub socket: Option<std::path::PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub protocol: Option<crate::cli::Protocol>,
}

/// Read the [client], [client-server] and [client-mariadb] groups of one
/// option file (with its includes). Errors are exit 78.
pub fn client_group(path: &std::path::Path) -> anyhow::Result<ClientGroup> {
    let _ = path;
    todo!("options::client_group")
}
