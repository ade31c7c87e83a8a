//! The statements that put a restored copy to use from its restore point,
//! ready to paste: make it a replica of the server the snapshot was taken
//! from (by GTID or by file and position), or replay that server's binary
//! logs onto it (point-in-time recovery). Spelled for the server version.

use super::coordinates::Point;
use super::datadir::Family;
use super::server::Binary;

/// SQL-quote a string value.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Lines to print (SQL statements and `--` comments).
pub fn for_copy(binary: &Binary, point: &Point) -> Vec<String> {
    let gtid = point.gtid.as_deref().filter(|g| !g.trim().is_empty());
    let file_pos = match (&point.binlog_file, point.binlog_position) {
        (Some(f), Some(p)) => Some((f.as_str(), p)),
        _ => None,
    };
    if gtid.is_none() && file_pos.is_none() {
        return vec![
            "-- The snapshot holds no binary log (binary logging was off): there is no replication or \
             point-in-time-recovery start point."
                .into(),
        ];
    }
    let (a, b, c) = binary.version;
    let mut out = Vec::new();
    match binary.family() {
        Family::Mysql => {
            let new_syntax = (a, b, c) >= (8, 0, 23);
            let (change, host, port, user, pass, file_k, pos_k, auto) = if new_syntax {
                (
                    "CHANGE REPLICATION SOURCE TO",
                    "SOURCE_HOST",
                    "SOURCE_PORT",
                    "SOURCE_USER",
                    "SOURCE_PASSWORD",
                    "SOURCE_LOG_FILE",
                    "SOURCE_LOG_POS",
                    "SOURCE_AUTO_POSITION",
                )
            } else {
                (
                    "CHANGE MASTER TO",
                    "MASTER_HOST",
                    "MASTER_PORT",
                    "MASTER_USER",
                    "MASTER_PASSWORD",
                    "MASTER_LOG_FILE",
                    "MASTER_LOG_POS",
                    "MASTER_AUTO_POSITION",
                )
            };
            let start = if (a, b, c) >= (8, 0, 22) {
                "START REPLICA;"
            } else {
                "START SLAVE;"
            };
            let reset = if (a, b) >= (8, 4) || a > 8 {
                "RESET BINARY LOGS AND GTIDS;"
            } else {
                "RESET MASTER;"
            };
            let connect = format!(
                "{host} = '<source host>', {port} = 3306, {user} = '<replication user>', {pass} = '<password>'"
            );
            out.push(format!(
                "-- MySQL {a}.{b}: make the restored copy a replica of the server the snapshot was taken from. First, on \
                 the copy: a server_id of its own, and auto.cnf removed before its first start (a new server_uuid)."
            ));
            if let Some(g) = gtid {
                out.push("-- By GTID (the copy's binary logs dropped, its GTID history set to the snapshot's):".into());
                out.push(reset.into());
                out.push(format!("SET GLOBAL gtid_purged = {};", quote(g)));
                out.push(format!("{change} {connect}, {auto} = 1;"));
                out.push(start.into());
            }
            if let Some((f, p)) = file_pos {
                out.push("-- Or by file and position:".into());
                out.push(format!(
                    "{change} {connect}, {file_k} = {}, {pos_k} = {p};",
                    quote(f)
                ));
                out.push(start.into());
                out.push(format!(
                    "-- Point-in-time recovery from the source's binary logs: mysqlbinlog --start-position={p} {f} \
                     [later files...] | mysql"
                ));
            }
        }
        Family::Mariadb => {
            let connect = "MASTER_HOST = '<source host>', MASTER_PORT = 3306, MASTER_USER = '<replication user>', \
                           MASTER_PASSWORD = '<password>'";
            out.push(format!(
                "-- MariaDB {a}.{b}: make the restored copy a replica of the server the snapshot was taken from. First, \
                 on the copy: a server_id of its own (and RESET SLAVE ALL if the snapshot was of a replica)."
            ));
            if let Some(g) = gtid {
                out.push("-- By GTID:".into());
                out.push(format!("SET GLOBAL gtid_slave_pos = {};", quote(g)));
                out.push(format!(
                    "CHANGE MASTER TO {connect}, MASTER_USE_GTID = slave_pos;"
                ));
                out.push("START SLAVE;".into());
            }
            if let Some((f, p)) = file_pos {
                out.push("-- Or by file and position:".into());
                out.push(format!(
                    "CHANGE MASTER TO {connect}, MASTER_LOG_FILE = {}, MASTER_LOG_POS = {p}, MASTER_USE_GTID = no;",
                    quote(f)
                ));
                out.push("START SLAVE;".into());
                out.push(format!(
                    "-- Point-in-time recovery from the source's binary logs: mariadb-binlog --start-position={p} {f} \
                     [later files...] | mariadb"
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Flavor;

    fn binary(flavor: Flavor, version: (u16, u16, u16)) -> Binary {
        Binary {
            path: "/usr/sbin/mysqld".into(),
            version_line: String::new(),
            flavor,
            version,
        }
    }

    fn point() -> Point {
        Point {
            binlog_file: Some("binlog.000004".into()),
            binlog_position: Some(342996),
            equivalent_positions: vec![],
            gtid: Some("0-1-1525".into()),
        }
    }

    #[test]
    fn mariadb_gets_gtid_slave_pos_and_change_master() {
        let s = for_copy(&binary(Flavor::Mariadb, (10, 11, 19)), &point()).join("\n");
        assert!(s.contains("SET GLOBAL gtid_slave_pos = '0-1-1525';"));
        assert!(s.contains("MASTER_USE_GTID = slave_pos;"));
        assert!(s.contains(
            "MASTER_LOG_FILE = 'binlog.000004', MASTER_LOG_POS = 342996, MASTER_USE_GTID = no;"
        ));
        assert!(s.contains("mariadb-binlog --start-position=342996 binlog.000004"));
    }

    #[test]
    fn mysql_syntax_follows_the_version() {
        let mut p = point();
        p.gtid = Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77".into());
        let s = for_copy(&binary(Flavor::Mysql, (9, 7, 4)), &p).join("\n");
        assert!(s.contains("RESET BINARY LOGS AND GTIDS;"));
        assert!(s.contains("SET GLOBAL gtid_purged = '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77';"));
        assert!(s.contains("SOURCE_AUTO_POSITION = 1;"));
        assert!(s.contains("SOURCE_LOG_FILE = 'binlog.000004', SOURCE_LOG_POS = 342996;"));
        assert!(s.contains("START REPLICA;"));
        let old = for_copy(&binary(Flavor::Mysql, (8, 0, 20)), &p).join("\n");
        assert!(
            old.contains("RESET MASTER;")
                && old.contains("CHANGE MASTER TO")
                && old.contains("START SLAVE;")
        );
        let none = for_copy(&binary(Flavor::Mysql, (9, 7, 4)), &Point::default());
        assert!(none[0].contains("no binary log"));
    }
}
