//! What verify found, for `--report` (JSON, written atomically on every
//! path) and for its closing line.

use super::coordinates::{Point, Verdict};
use super::datadir::DataDir;
use super::server::Binary;
use super::tables::TableResult;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct BinlogRecord {
    /// Where the snapshot holds it.
    pub dir: String,
    pub index: String,
    pub files: usize,
    pub last_file: String,
    pub size: u64,
    /// End of the last complete transaction (the restore position).
    pub end: u64,
    /// How the file ends after that.
    pub tail: String,
    /// The server had the file open (it was not closed by a clean shutdown).
    pub in_use: bool,
    pub checksums: bool,
    /// The index named its files by absolute path (rewritten for the copy).
    pub absolute_index: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerView {
    /// @@version of the verify server.
    pub version: String,
    /// MariaDB @@gtid_binlog_pos / MySQL @@gtid_executed after recovery.
    pub gtid: Option<String>,
    /// MariaDB BINLOG_GTID_POS() of the restore point.
    pub gtid_at_point: Option<String>,
    /// MariaDB @@gtid_slave_pos (a snapshot of a replica: where it was).
    pub gtid_slave_pos: Option<String>,
    /// SHOW BINARY LOGS after recovery: name and size.
    pub binary_logs: Vec<(String, u64)>,
    /// MariaDB InnoDB: the binary-log position of the last transaction it committed.
    pub innodb_binlog_position: Option<(String, u64)>,
    /// MySQL: every InnoDB tablespace's name and path, from the data dictionary.
    #[serde(skip)]
    pub tablespace_files: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Tables {
    pub mode: String,
    pub checked: usize,
    pub skipped: usize,
    pub failed: Vec<TableResult>,
    pub duration_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub command: &'static str,
    pub mysql_quiesce_version: &'static str,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<f64>,
    pub datadir: String,
    pub binlog_dir: Option<String>,
    pub data: Option<DataDir>,
    pub server: Option<Binary>,
    /// "overlay" or "copy".
    pub method: Option<String>,
    /// From starting the server to its first accepted connection: crash recovery.
    pub recovery_ms: Option<f64>,
    pub restore_point: Option<Point>,
    pub binlog: Option<BinlogRecord>,
    pub server_view: Option<ServerView>,
    /// The --coordinates-file as read.
    pub recorded: Option<serde_json::Value>,
    pub comparison: Option<Verdict>,
    pub comparison_notes: Vec<String>,
    pub tables: Tables,
    /// How much the overlay's writable layer (or the copy) grew to.
    pub writable_bytes: Option<u64>,
    pub statements: Vec<String>,
    pub warnings: Vec<String>,
    pub outcome: String,
    pub exit_code: u8,
    pub error: Option<String>,
    /// The server's error log(s), kept for a failure (the tail, at most 256 KiB).
    pub server_log: Option<String>,
}

impl VerifyReport {
    pub fn new(datadir: &std::path::Path, started_at: String) -> VerifyReport {
        VerifyReport {
            command: "verify",
            mysql_quiesce_version: env!("CARGO_PKG_VERSION"),
            started_at,
            finished_at: None,
            duration_ms: None,
            datadir: datadir.display().to_string(),
            binlog_dir: None,
            data: None,
            server: None,
            method: None,
            recovery_ms: None,
            restore_point: None,
            binlog: None,
            server_view: None,
            recorded: None,
            comparison: None,
            comparison_notes: Vec::new(),
            tables: Tables::default(),
            writable_bytes: None,
            statements: Vec::new(),
            warnings: Vec::new(),
            outcome: "failed".into(),
            exit_code: crate::exit::SOFTWARE,
            error: None,
            server_log: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("json") + "\n"
    }
}
