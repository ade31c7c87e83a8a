//! The privileges a run needs, per server and per lock mode and option, and
//! the exact `CREATE USER` / `GRANT` statements that give them. `table()` is
//! the one source (each lock mode's own row lives in its `MODES` row, the
//! rest here): the README's and the man page's grants table are made from
//! it, and `--check` names the `GRANT` for whatever is missing from it.
//!
//! Each privilege was checked against the real servers with accounts that
//! hold exactly one privilege (MariaDB 10.11 and 11.8, MySQL 9.7; Percona
//! from its documentation): e.g. FLUSH TABLES WITH READ LOCK needs RELOAD
//! (SUPER is not enough), performance_schema.log_status needs BACKUP_ADMIN
//! and SELECT on the table, KILL of another account's query needs
//! CONNECTION ADMIN (MariaDB) / CONNECTION_ADMIN (MySQL).

use crate::cli::LockMode;
use crate::server::{Flavor, ServerInfo};
use mysql::prelude::Queryable;

use crate::privileges::ALL;
pub use crate::privileges::{Grant, Row};
use crate::server::strategy::{self, MODES};

const LOG_STATUS: &str = "performance_schema.log_status";

pub const COORDINATES: Row = Row {
    what: "binary-log coordinates (every mode but `none`)",
    mysql: &[("REPLICATION CLIENT", ALL)],
    percona: &[("REPLICATION CLIENT", ALL)],
    mariadb: &[("BINLOG MONITOR", ALL)],
};
pub const LOG_STATUS_ROW: Row = Row {
    what: "consistent file, position and GTID with `instance` or `tables-for-backup` (performance_schema.log_status)",
    mysql: &[("SELECT", LOG_STATUS)],
    percona: &[("SELECT", LOG_STATUS)],
    mariadb: &[],
};
pub const REPLICA: Row = Row {
    what: "a snapshot of a replica: the SQL thread's executed position",
    mysql: &[("REPLICATION CLIENT", ALL)],
    percona: &[("REPLICATION CLIENT", ALL)],
    mariadb: &[("SLAVE MONITOR", ALL)],
};
pub const STOP_REPLICA_SQL: Row = Row {
    what: "`--stop-replica-sql`",
    mysql: &[("REPLICATION_SLAVE_ADMIN", ALL)],
    percona: &[("REPLICATION_SLAVE_ADMIN", ALL)],
    mariadb: &[("REPLICATION SLAVE ADMIN", ALL), ("SLAVE MONITOR", ALL)],
};
pub const GUARD: Row = Row {
    what: "`--long-query-guard` given (the default guard of `ftwrl` works without it, but sees only the account's own statements: grant it there too)",
    mysql: &[("PROCESS", ALL)],
    percona: &[("PROCESS", ALL)],
    mariadb: &[("PROCESS", ALL)],
};
pub const KILL: Row = Row {
    what: "`--kill-long-queries`",
    mysql: &[("PROCESS", ALL), ("CONNECTION_ADMIN", ALL)],
    percona: &[("PROCESS", ALL), ("CONNECTION_ADMIN", ALL)],
    mariadb: &[("PROCESS", ALL), ("CONNECTION ADMIN", ALL)],
};

/// Every row, in the order of the tables: the lock modes' own rows (in
/// `MODES`), then the rest.
pub fn table() -> Vec<&'static Row> {
    MODES
        .iter()
        .filter_map(|m| m.grants.as_ref())
        .chain([
            &COORDINATES,
            &LOG_STATUS_ROW,
            &REPLICA,
            &STOP_REPLICA_SQL,
            &GUARD,
            &KILL,
        ])
        .collect()
}

/// Said under the tables.
pub const NOTES: &[&str] = &[
    "`--lock=none` connects to nothing and needs no account.",
    "MySQL: killing the queries of an account that has SYSTEM_USER (root has it) also needs SYSTEM_USER; think \
     twice before granting it, since it makes the backup account a system account.",
    "MariaDB 11.0.1 and later: SUPER no longer includes BINLOG MONITOR, SLAVE MONITOR, CONNECTION ADMIN or \
     REPLICATION SLAVE ADMIN; grant them by name. MariaDB 10.5.2 to 10.5.8 has no SLAVE MONITOR: grant REPLICATION \
     SLAVE ADMIN instead. MariaDB 10.4 and MySQL 5.7: RELOAD, REPLICATION CLIENT, PROCESS and SUPER.",
    "`mysql-quiesce --check` connects with the account and prints the GRANT statement for whatever it lacks.",
];

/// The server families of the table's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Mysql,
    Percona,
    Mariadb,
}

impl Column {
    pub fn of(flavor: Flavor) -> Column {
        match flavor {
            Flavor::Mysql => Column::Mysql,
            Flavor::Percona => Column::Percona,
            Flavor::Mariadb => Column::Mariadb,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Column::Mysql => "MySQL 8.0, 8.4, 9.x",
            Column::Percona => "Percona Server 8.0, 8.4",
            Column::Mariadb => "MariaDB 10.5+, 11.x",
        }
    }

    fn grants(self, row: &Row) -> &'static [Grant] {
        match self {
            Column::Mysql => row.mysql,
            Column::Percona => row.percona,
            Column::Mariadb => row.mariadb,
        }
    }
}

const COLUMNS: [Column; 3] = [Column::Mysql, Column::Percona, Column::Mariadb];

/// What a run will do, for the privileges it needs.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// The resolved lock mode (never `auto`).
    pub mode: LockMode,
    pub guard: bool,
    pub kill: bool,
    pub stop_replica_sql: bool,
}

/// The rows a run with `usage` needs.
pub fn rows(usage: &Usage) -> Vec<&'static Row> {
    let mut out: Vec<&'static Row> = Vec::new();
    // `auto` is resolved by then; unresolved, it is counted as ftwrl.
    let mode = strategy::row(match usage.mode {
        LockMode::Auto => LockMode::Ftwrl,
        m => m,
    });
    // No row: no connection (`none`).
    let Some(own) = mode.grants.as_ref() else {
        return out;
    };
    out.push(own);
    out.push(&COORDINATES);
    // Without an exact binary-log point, the coordinates come from log_status.
    if mode.planned.iter().all(|s| !s.exact_binlog_point) {
        out.push(&LOG_STATUS_ROW);
    }
    if usage.stop_replica_sql {
        out.push(&STOP_REPLICA_SQL);
    }
    if usage.guard {
        out.push(&GUARD);
    }
    if usage.kill {
        out.push(&KILL);
    }
    out
}

/// The privileges, deduplicated, in table order.
pub fn privileges(column: Column, usage: &Usage) -> Vec<Grant> {
    let mut out: Vec<Grant> = Vec::new();
    for row in rows(usage) {
        for g in column.grants(row) {
            if !out.contains(g) {
                out.push(*g);
            }
        }
    }
    out
}

/// `GRANT ... ON object TO account;`, one statement per object.
pub fn grant_statements(grants: &[Grant], account: &str) -> Vec<String> {
    let mut objects: Vec<&str> = Vec::new();
    for (_, on) in grants {
        if !objects.contains(on) {
            objects.push(on);
        }
    }
    objects
        .iter()
        .map(|on| {
            let names: Vec<&str> = grants
                .iter()
                .filter(|(_, o)| o == on)
                .map(|(p, _)| *p)
                .collect();
            format!("GRANT {} ON {on} TO {account};", names.join(", "))
        })
        .collect()
}

/// `'user'@'host'`.
pub fn account(user: &str, host: &str) -> String {
    let q = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"));
    format!("{}@{}", q(user), q(host))
}

/// The statements that create an account for a run with `usage` on a
/// server of `column`.
pub fn create_statements(column: Column, usage: &Usage, account: &str) -> Vec<String> {
    let mut out = vec![format!("CREATE USER {account} IDENTIFIED BY '<password>';")];
    out.extend(grant_statements(&privileges(column, usage), account));
    out
}

/// The README's table (Markdown).
pub fn markdown_table() -> String {
    let mut out = String::from("| what the run does |");
    for c in COLUMNS {
        out.push_str(&format!(" {} |", c.title()));
    }
    out.push_str("\n|---|---|---|---|\n");
    for row in table() {
        out.push_str(&format!("| {} |", row.what));
        for c in COLUMNS {
            let g = c.grants(row);
            let cell = if g.is_empty() {
                "(not offered)".to_string()
            } else {
                g.iter()
                    .map(|(p, on)| {
                        if *on == ALL {
                            p.to_string()
                        } else {
                            format!("{p} ON {on}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    out
}

/// The defaults (`--lock=auto`, no options) for each server, as statements.
pub fn default_statements() -> Vec<(Column, Vec<String>)> {
    let acct = account("mysql-quiesce", "localhost");
    COLUMNS
        .iter()
        .map(|c| {
            let mode = match c {
                Column::Mariadb => LockMode::BackupStage,
                _ => LockMode::Ftwrl,
            };
            let usage = Usage {
                mode,
                guard: false,
                kill: false,
                stop_replica_sql: false,
            };
            (*c, create_statements(*c, &usage, &acct))
        })
        .collect()
}

/// The man page's GRANTS section (roff), from the same table.
pub fn man_section() -> String {
    let roff = |t: &str| t.replace('\\', "\\e").replace('-', "\\-").replace('`', "");
    let mut out = String::from(
        ".SH GRANTS\nThe privileges the account needs (granted ON *.* unless another object is named):\n",
    );
    for row in table() {
        out.push_str(&format!(".TP\n{}\n", roff(row.what)));
        let cells: Vec<String> = COLUMNS
            .iter()
            .filter(|c| !c.grants(row).is_empty())
            .map(|c| {
                let g: Vec<String> = c
                    .grants(row)
                    .iter()
                    .map(|(p, on)| {
                        if *on == ALL {
                            p.to_string()
                        } else {
                            format!("{p} ON {on}")
                        }
                    })
                    .collect();
                format!("{}: {}", c.title(), g.join(", "))
            })
            .collect();
        out.push_str(&roff(&cells.join("; ")));
        out.push('\n');
    }
    out.push_str(".PP\nFor the default \\-\\-lock=auto:\n.PP\n.nf\n");
    for (c, stmts) in default_statements() {
        out.push_str(&format!("\\-\\- {}\n", roff(c.title())));
        for s in stmts {
            out.push_str(&format!("{}\n", roff(&s)));
        }
    }
    out.push_str(".fi\n");
    for n in NOTES {
        out.push_str(&format!(".PP\n{}\n", roff(n)));
    }
    out
}

/// The privilege named for this server's version: older servers lack some
/// (MariaDB < 10.5.2 has no BINLOG MONITOR, < 10.5.9 no SLAVE MONITOR;
/// MySQL 5.7 no dynamic privileges).
fn for_version(privilege: &'static str, column: Column, info: &ServerInfo) -> &'static str {
    match column {
        Column::Mariadb if !info.at_least(10, 5, 2) => match privilege {
            "BINLOG MONITOR" | "SLAVE MONITOR" => "REPLICATION CLIENT",
            "CONNECTION ADMIN" | "REPLICATION SLAVE ADMIN" => "SUPER",
            p => p,
        },
        Column::Mariadb if !info.at_least(10, 5, 9) && privilege == "SLAVE MONITOR" => {
            "REPLICATION SLAVE ADMIN"
        }
        Column::Mysql | Column::Percona if !info.at_least(8, 0, 0) => match privilege {
            "CONNECTION_ADMIN" | "REPLICATION_SLAVE_ADMIN" => "SUPER",
            "BACKUP_ADMIN" => "RELOAD",
            p => p,
        },
        _ => privilege,
    }
}

/// What of `needed` the `granted` global privileges and `table_grants`
/// ((privilege, "schema.table")) do not cover.
pub fn missing(
    needed: &[Grant],
    granted: &[String],
    table_grants: &[(String, String)],
    info: &ServerInfo,
) -> Vec<Grant> {
    let has = |p: &str| granted.iter().any(|g| g.eq_ignore_ascii_case(p));
    // SUPER still stands in for the fine-grained ones on MySQL and MariaDB < 11.0.1.
    let super_covers = has("SUPER") && (info.flavor != Flavor::Mariadb || !info.at_least(11, 0, 1));
    needed
        .iter()
        .filter(|(p, on)| {
            if *on == ALL {
                !(has(p)
                    || super_covers
                        && !matches!(*p, "RELOAD" | "PROCESS" | "BACKUP_ADMIN" | "SELECT"))
            } else {
                !(has(p)
                    || table_grants
                        .iter()
                        .any(|(tp, t)| tp.eq_ignore_ascii_case(p) && t.eq_ignore_ascii_case(on)))
            }
        })
        .copied()
        .collect()
}

/// For `--check`, when privileges are missing: a second line with the
/// GRANT statement for what the table needs and the account lacks. Connects once more to read the server, the
/// account and its grants; empty when that does not work (the check has
/// failed anyway) or nothing in the table is missing.
pub fn check_hint(
    spec: &crate::server::connect::ConnectSpec,
    cfg: &crate::server::LockConfig,
    progress: &crate::messages::Progress,
) -> String {
    type Read = (ServerInfo, String, Vec<String>, Vec<(String, String)>);
    let read = || -> anyhow::Result<Read> {
        let (mut conn, info) =
            crate::server::connect_detected(spec, progress, "wait_timeout = 600")?;
        let current: String = conn
            .query_first("SELECT CURRENT_USER()")?
            .unwrap_or_default();
        let granted: Vec<String> =
            conn.query("SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES")?;
        let tables: Vec<(String, String)> = conn.query(
            "SELECT PRIVILEGE_TYPE, CONCAT(TABLE_SCHEMA, '.', TABLE_NAME) FROM information_schema.TABLE_PRIVILEGES",
        )?;
        Ok((info, current, granted, tables))
    };
    let Ok((info, current, granted, tables)) = read() else {
        return String::new();
    };
    let mode = match cfg.mode {
        LockMode::Auto => crate::server::strategy::auto_mode(&info),
        m => m,
    };
    let usage = Usage {
        mode,
        guard: matches!(cfg.guard, crate::server::lock::Guard::After(_))
            || cfg.kill_after.is_some(),
        kill: cfg.kill_after.is_some(),
        stop_replica_sql: cfg.stop_replica_sql,
    };
    let (user, host) = current.rsplit_once('@').unwrap_or((current.as_str(), "%"));
    let column = Column::of(info.flavor);
    let needed: Vec<Grant> = privileges(column, &usage)
        .into_iter()
        .map(|(p, on)| (for_version(p, column, &info), on))
        .collect();
    let lacking = missing(&needed, &granted, &tables, &info);
    if lacking.is_empty() {
        return String::new();
    }
    format!(
        "\n    to grant what is missing, run as an administrator: {}",
        grant_statements(&lacking, &account(user, host)).join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(mode: LockMode) -> Usage {
        Usage {
            mode,
            guard: false,
            kill: false,
            stop_replica_sql: false,
        }
    }

    #[test]
    fn the_default_run_needs_the_lock_and_the_coordinates_privilege() {
        let acct = account("mysql-quiesce", "localhost");
        assert_eq!(
            create_statements(Column::Mariadb, &usage(LockMode::BackupStage), &acct),
            [
                "CREATE USER 'mysql-quiesce'@'localhost' IDENTIFIED BY '<password>';",
                "GRANT RELOAD, BINLOG MONITOR ON *.* TO 'mysql-quiesce'@'localhost';"
            ]
        );
        assert_eq!(
            grant_statements(&privileges(Column::Mysql, &usage(LockMode::Ftwrl)), &acct),
            ["GRANT RELOAD, REPLICATION CLIENT ON *.* TO 'mysql-quiesce'@'localhost';"]
        );
        assert!(privileges(Column::Mysql, &usage(LockMode::None)).is_empty());
    }

    #[test]
    fn instance_mode_and_options_add_what_they_use() {
        let acct = account("b", "%");
        let u = Usage {
            mode: LockMode::Instance,
            guard: true,
            kill: true,
            stop_replica_sql: true,
        };
        assert_eq!(
            grant_statements(&privileges(Column::Mysql, &u), &acct),
            [
                "GRANT BACKUP_ADMIN, REPLICATION CLIENT, REPLICATION_SLAVE_ADMIN, PROCESS, CONNECTION_ADMIN ON *.* TO 'b'@'%';",
                "GRANT SELECT ON performance_schema.log_status TO 'b'@'%';"
            ]
        );
        let m = Usage {
            mode: LockMode::BackupStage,
            ..u
        };
        assert_eq!(
            grant_statements(&privileges(Column::Mariadb, &m), &acct),
            ["GRANT RELOAD, BINLOG MONITOR, REPLICATION SLAVE ADMIN, SLAVE MONITOR, PROCESS, CONNECTION ADMIN ON *.* TO 'b'@'%';"]
        );
        let p = Usage {
            mode: LockMode::TablesForBackup,
            ..usage(LockMode::None)
        };
        assert_eq!(privileges(Column::Percona, &p)[0], ("BACKUP_ADMIN", ALL));
    }

    #[test]
    fn missing_privileges_are_those_not_granted_and_super_counts_only_where_it_still_does() {
        let maria11 = ServerInfo::from_strings("11.8.3-MariaDB", "");
        let maria10 = ServerInfo::from_strings("10.11.19-MariaDB", "");
        let needed = privileges(Column::Mariadb, &usage(LockMode::BackupStage));
        let granted = vec!["RELOAD".to_string(), "SUPER".to_string()];
        assert!(missing(&needed, &granted, &[], &maria10).is_empty());
        assert_eq!(
            missing(&needed, &granted, &[], &maria11),
            [("BINLOG MONITOR", ALL)]
        );
        let mysql = ServerInfo::from_strings("9.7.4", "");
        let needed = privileges(Column::Mysql, &usage(LockMode::Instance));
        let granted = vec!["BACKUP_ADMIN".to_string(), "REPLICATION CLIENT".to_string()];
        assert_eq!(
            missing(&needed, &granted, &[], &mysql),
            [("SELECT", LOG_STATUS)]
        );
        let tables = vec![("SELECT".to_string(), LOG_STATUS.to_string())];
        assert!(missing(&needed, &granted, &tables, &mysql).is_empty());
    }

    #[test]
    fn old_servers_get_the_privileges_they_have() {
        let m104 = ServerInfo::from_strings("10.4.30-MariaDB", "");
        assert_eq!(
            for_version("BINLOG MONITOR", Column::Mariadb, &m104),
            "REPLICATION CLIENT"
        );
        let m1055 = ServerInfo::from_strings("10.5.5-MariaDB", "");
        assert_eq!(
            for_version("SLAVE MONITOR", Column::Mariadb, &m1055),
            "REPLICATION SLAVE ADMIN"
        );
        let my57 = ServerInfo::from_strings("5.7.44", "");
        assert_eq!(
            for_version("CONNECTION_ADMIN", Column::Mysql, &my57),
            "SUPER"
        );
    }

    #[test]
    fn the_readme_has_the_table_the_code_uses() {
        let readme = include_str!("../README.md");
        let table = markdown_table();
        assert!(
            readme.contains(&table),
            "README.md's grants table is out of date; it must read:\n{table}"
        );
        for (_, stmts) in default_statements() {
            for s in stmts {
                assert!(readme.contains(&s), "README.md lacks {s}");
            }
        }
    }
}
