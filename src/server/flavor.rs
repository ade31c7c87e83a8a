//! Which server we talk to. `Conn::server_version()` reports 5.5.5 for
//! MariaDB (the handshake prefix), so the version string is read with SQL
//! (`ServerInfo::DETECT`, in the round trip that sets up the session).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    Mysql,
    Mariadb,
    Percona,
}

impl Flavor {
    /// As in MYSQL_QUIESCE_SERVER_FLAVOR and the report: "mysql", "mariadb", "percona".
    pub fn id(self) -> &'static str {
        match self {
            Flavor::Mysql => "mysql",
            Flavor::Mariadb => "mariadb",
            Flavor::Percona => "percona",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Flavor::Mysql => "MySQL",
            Flavor::Mariadb => "MariaDB",
            Flavor::Percona => "Percona Server",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    pub flavor: Flavor,
    /// The full @@version string, e.g. "10.11.19-MariaDB-0+deb12u1-log".
    pub version: String,
    /// Parsed major.minor.patch.
    pub version_number: (u16, u16, u16),
    pub version_comment: String,
}

impl ServerInfo {
    pub fn from_strings(version: &str, comment: &str) -> ServerInfo {
        let lower = format!("{version} {comment}").to_lowercase();
        let flavor = if lower.contains("mariadb") {
            Flavor::Mariadb
        } else if lower.contains("percona") {
            Flavor::Percona
        } else {
            Flavor::Mysql
        };
        ServerInfo {
            flavor,
            version: version.to_string(),
            version_number: parse_version(version),
            version_comment: comment.to_string(),
        }
    }

    /// The query `from_rows` reads.
    pub const DETECT: &'static str = "SELECT @@version, @@version_comment";

    /// From the answer to `DETECT`.
    pub fn from_rows(rows: &[mysql::Row]) -> ServerInfo {
        let text = |i| super::first_text(rows, i).unwrap_or_default();
        ServerInfo::from_strings(&text(0), &text(1))
    }

    pub fn at_least(&self, major: u16, minor: u16, patch: u16) -> bool {
        self.version_number >= (major, minor, patch)
    }

    /// The replica statements this server understands: REPLICA where the
    /// name exists (MySQL 8.0.22, MariaDB 10.5.1), SLAVE before.
    pub fn replica_statements(&self) -> ReplicaStatements {
        let new_names = match self.flavor {
            Flavor::Mariadb => self.at_least(10, 5, 1),
            _ => self.at_least(8, 0, 22),
        };
        if new_names {
            ReplicaStatements {
                show: "SHOW REPLICA STATUS",
                stop_sql_thread: "STOP REPLICA SQL_THREAD",
                start_sql_thread: "START REPLICA SQL_THREAD",
            }
        } else {
            ReplicaStatements {
                show: "SHOW SLAVE STATUS",
                stop_sql_thread: "STOP SLAVE SQL_THREAD",
                start_sql_thread: "START SLAVE SQL_THREAD",
            }
        }
    }

    /// "MariaDB 10.11.19".
    pub fn short(&self) -> String {
        let (a, b, c) = self.version_number;
        format!("{} {a}.{b}.{c}", self.flavor.name())
    }
}

/// How a server spells the replica statements we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaStatements {
    pub show: &'static str,
    pub stop_sql_thread: &'static str,
    pub start_sql_thread: &'static str,
}

/// "10.11.19-MariaDB-log" -> (10, 11, 19); a "5.5.5-" replication prefix is skipped.
fn parse_version(v: &str) -> (u16, u16, u16) {
    let v = v.strip_prefix("5.5.5-").unwrap_or(v);
    let mut nums = v
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|n| n.parse().unwrap_or(0));
    (
        nums.next().unwrap_or(0),
        nums.next().unwrap_or(0),
        nums.next().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavors_and_versions_are_recognised() {
        let m = ServerInfo::from_strings("10.11.19-MariaDB-0+deb12u1-log", "Debian 12");
        assert_eq!(m.flavor, Flavor::Mariadb);
        assert_eq!(m.version_number, (10, 11, 19));
        let m = ServerInfo::from_strings("5.5.5-10.4.1-MariaDB", "");
        assert_eq!((m.flavor, m.version_number), (Flavor::Mariadb, (10, 4, 1)));
        let p = ServerInfo::from_strings("8.0.36-28", "Percona Server (GPL), Release 28");
        assert_eq!(p.flavor, Flavor::Percona);
        let o = ServerInfo::from_strings("9.7.4", "(Debian)");
        assert_eq!((o.flavor, o.version_number), (Flavor::Mysql, (9, 7, 4)));
        assert!(o.at_least(8, 2, 0));
    }
}
