//! Coordinates, read on the locking session while the lock is held, with the
//! statement each server version supports (MySQL 8.4 removed SHOW MASTER
//! STATUS and SHOW SLAVE STATUS). Binary logging off, or not a replica, means
//! empty fields, not an error.

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
    /// On a replica: the source's binary log file up to which the SQL thread has executed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_log_file: Option<String>,
    /// On a replica: the executed position in that file (never the IO thread's read position).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_log_position: Option<u64>,
    /// On a Galera node: wsrep_local_state_uuid:wsrep_last_committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub galera_position: Option<String>,
    /// Whether commits were blocked while these were read (false for the
    /// instance/tables-for-backup modes: the position is only approximate).
    pub exact: bool,
    /// Where the file/position came from.
    pub source: String,
}

/// The statement that shows the binary log position on this server.
pub fn binlog_status_statement(info: &ServerInfo) -> &'static str {
    match info.flavor {
        Flavor::Mysql | Flavor::Percona if info.at_least(8, 2, 0) => "SHOW BINARY LOG STATUS",
        // MariaDB renamed it in 10.5.2 (the old name is kept, for now).
        Flavor::Mariadb if info.at_least(10, 5, 2) => "SHOW BINLOG STATUS",
        _ => "SHOW MASTER STATUS",
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// A column by the first of several names (MySQL renamed Master_* to Source_*).
fn column(row: &Row, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| row.get_opt::<Option<String>, _>(*n).and_then(Result::ok))
        .flatten()
}

/// Read the coordinates. `exact` says whether commits are blocked now. The
/// second value lists things worth a warning (e.g. replica status not readable).
/// One round trip for all of them (two where performance_schema.log_status is
/// tried first): they are read while writers wait.
pub fn read(
    conn: &mut mysql::Conn,
    info: &ServerInfo,
    exact: bool,
    progress: &crate::messages::Progress,
) -> mysql::Result<(Coordinates, Vec<String>)> {
    let mut notes = Vec::new();
    let mut c = Coordinates {
        exact,
        ..Default::default()
    };
    let log_status = if exact || info.flavor == Flavor::Mariadb {
        None
    } else {
        read_log_status(conn)
    };
    let gtid_query = match info.flavor {
        Flavor::Mariadb => "SELECT @@global.gtid_binlog_pos, @@global.gtid_current_pos",
        Flavor::Mysql | Flavor::Percona => "SELECT @@global.gtid_executed",
    };
    let replica = info.replica_statements().show;
    // The server stops a batch at its first error. Last come the two that
    // may fail without failing the read: the replica statement (privileges),
    // then WSREP_ON (an error where the variable does not exist: no Galera).
    let mut statements = Vec::new();
    if log_status.is_none() {
        statements.extend([binlog_status_statement(info), gtid_query]);
    }
    statements.extend([replica, WSREP_ON]);
    for s in &statements {
        progress.sql(s);
    }
    let mut results = super::batch(conn, &statements);
    if let Some((file, pos, gtid)) = log_status {
        // performance_schema.log_status gives file, position and GTID set consistent with each other.
        c.source = "performance_schema.log_status".into();
        (c.binlog_file, c.binlog_position, c.gtid) = (file, pos, gtid);
    } else {
        c.source = binlog_status_statement(info).into();
        let rows = results.next_rows()?;
        if let Some(row) = rows.first() {
            c.binlog_file = non_empty(column(row, &["File"]));
            c.binlog_position = column(row, &["Position"]).and_then(|p| p.parse().ok());
        }
        let rows = results.next_rows()?;
        let gtid = |i| super::first_text(&rows, i);
        match info.flavor {
            Flavor::Mariadb => {
                c.gtid = non_empty(gtid(0));
                c.gtid_current_pos = non_empty(gtid(1));
            }
            Flavor::Mysql | Flavor::Percona => {
                c.gtid = non_empty(gtid(0)).map(|g| g.replace('\n', ""));
            }
        }
    }
    if !exact {
        notes.push(format!(
            "the {} coordinates are not an exact point of the snapshot: this lock mode does not block commits",
            c.source
        ));
    }
    let replica_read = results.next_rows();
    let mut wsrep = results.next_rows();
    if replica_read.is_err() {
        // Not run: the replica statement failed before it.
        progress.sql(WSREP_ON);
        wsrep = conn.query(WSREP_ON);
    }
    let wsrep_on = wsrep
        .ok()
        .and_then(|rows| super::first_text(&rows, 0))
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("ON"));
    match replica_read {
        Ok(rows) => {
            if let Some(row) = rows.first() {
                c.source_log_file = non_empty(column(
                    row,
                    &["Relay_Source_Log_File", "Relay_Master_Log_File"],
                ));
                c.source_log_position =
                    column(row, &["Exec_Source_Log_Pos", "Exec_Master_Log_Pos"])
                        .and_then(|p| p.parse().ok());
            }
        }
        Err(e) => notes.push(format!(
            "{replica} failed ({e}); replica coordinates not recorded"
        )),
    }
    if wsrep_on {
        let status: Vec<(String, String)> = conn.query(
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state_uuid', 'wsrep_last_committed')",
        )?;
        let get = |k: &str| {
            status
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        if let (Some(uuid), Some(seqno)) =
            (get("wsrep_local_state_uuid"), get("wsrep_last_committed"))
        {
            c.galera_position = Some(format!("{uuid}:{seqno}"));
        }
    }
    Ok((c, notes))
}

/// Whether this is a Galera node. The variable exists only on servers built
/// with wsrep (elsewhere: an error, meaning no). Not SHOW GLOBAL VARIABLES
/// LIKE 'wsrep_on': that costs the server about 0.4 ms, read under the lock.
const WSREP_ON: &str = "SELECT @@global.wsrep_on";

/// MySQL >= 8.0.11: file, position and GTID set from performance_schema.log_status
/// (needs BACKUP_ADMIN); None where it is not available.
fn read_log_status(
    conn: &mut mysql::Conn,
) -> Option<(Option<String>, Option<u64>, Option<String>)> {
    let local: String = conn
        .query_first("SELECT LOCAL FROM performance_schema.log_status")
        .ok()
        .flatten()?;
    let v: serde_json::Value = serde_json::from_str(&local).ok()?;
    let file = v["binary_log_file"].as_str().map(str::to_string);
    let pos = v["binary_log_position"].as_u64();
    let gtid = v["gtid_executed"].as_str().map(|g| g.replace('\n', ""));
    Some((non_empty(file), pos, non_empty(gtid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_8_2_and_later_use_show_binary_log_status() {
        let statement = |v: &str| binlog_status_statement(&ServerInfo::from_strings(v, ""));
        assert_eq!(statement("9.7.4"), "SHOW BINARY LOG STATUS");
        assert_eq!(statement("8.4.3"), "SHOW BINARY LOG STATUS");
        assert_eq!(statement("8.0.40"), "SHOW MASTER STATUS");
        assert_eq!(statement("11.8.3-MariaDB"), "SHOW BINLOG STATUS");
        assert_eq!(statement("10.5.2-MariaDB"), "SHOW BINLOG STATUS");
        assert_eq!(statement("10.4.30-MariaDB"), "SHOW MASTER STATUS");
    }

    #[test]
    fn replica_status_uses_the_new_name_where_it_exists() {
        let statement = |v: &str| ServerInfo::from_strings(v, "").replica_statements().show;
        assert_eq!(statement("8.0.22"), "SHOW REPLICA STATUS");
        assert_eq!(statement("8.0.21"), "SHOW SLAVE STATUS");
        assert_eq!(statement("10.5.1-MariaDB"), "SHOW REPLICA STATUS");
        assert_eq!(statement("10.4.30-MariaDB"), "SHOW SLAVE STATUS");
    }
}
