//! Binary-log coordinates, read on the locking session while commits are
//! blocked, with the statement each server version supports (MySQL 8.4
//! removed SHOW MASTER STATUS). Binary logging off means empty coordinates,
//! not an error.

use super::flavor::{Flavor, ServerInfo};
use mysql::prelude::Queryable;
use mysql::Row;
use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Coordinates {
    /// Current binary log file, e.g. "binlog.000003"; None when binary logging is off.
    pub binlog_file: Option<String>,
    /// Position in that file.
    pub binlog_position: Option<u64>,
    /// GTID set: @@gtid_executed (MySQL) or @@gtid_binlog_pos (MariaDB).
    pub gtid: Option<String>,
    /// MariaDB @@gtid_current_pos (includes transactions applied by replication).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gtid_current_pos: Option<String>,
    /// The statement the file/position came from.
    pub source: String,
}

/// The statement that shows the binary log position on this server.
pub fn binlog_status_statement(info: &ServerInfo) -> &'static str {
    match info.flavor {
        Flavor::Mysql | Flavor::Percona if info.at_least(8, 2, 0) => "SHOW BINARY LOG STATUS",
        _ => "SHOW MASTER STATUS",
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

pub fn read(conn: &mut mysql::Conn, info: &ServerInfo) -> mysql::Result<Coordinates> {
    let statement = binlog_status_statement(info);
    let rows: Vec<Row> = conn.query(statement)?;
    let mut c = Coordinates {
        source: statement.to_string(),
        ..Default::default()
    };
    if let Some(row) = rows.first() {
        c.binlog_file = non_empty(
            row.get_opt::<Option<String>, _>("File")
                .and_then(Result::ok)
                .flatten(),
        );
        c.binlog_position = row
            .get_opt::<Option<String>, _>("Position")
            .and_then(Result::ok)
            .flatten()
            .and_then(|p| p.parse().ok());
    }
    match info.flavor {
        Flavor::Mariadb => {
            let (binlog_pos, current_pos): (Option<String>, Option<String>) = conn
                .query_first("SELECT @@global.gtid_binlog_pos, @@global.gtid_current_pos")?
                .unwrap_or_default();
            c.gtid = non_empty(binlog_pos);
            c.gtid_current_pos = non_empty(current_pos);
        }
        Flavor::Mysql | Flavor::Percona => {
            let executed: Option<Option<String>> =
                conn.query_first("SELECT @@global.gtid_executed")?;
            c.gtid = non_empty(executed.flatten()).map(|g| g.replace('\n', ""));
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_8_2_and_later_use_show_binary_log_status() {
        let statement = |v: &str, c: &str| binlog_status_statement(&ServerInfo::from_strings(v, c));
        assert_eq!(statement("9.7.4", ""), "SHOW BINARY LOG STATUS");
        assert_eq!(statement("8.4.3", ""), "SHOW BINARY LOG STATUS");
        assert_eq!(statement("8.0.40", ""), "SHOW MASTER STATUS");
        assert_eq!(statement("11.8.3-MariaDB", ""), "SHOW MASTER STATUS");
    }
}
