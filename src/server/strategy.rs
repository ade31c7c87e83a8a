//! Lock modes: the one table (`MODES`) of what each `--lock` value takes and
//! releases, on which servers, what it blocks and whether its binary-log
//! point is exact. The option values, `auto`'s choice, --dry-run, the man
//! page's LOCK MODES and the README's table all come from it, so adding a
//! mode means a `LockMode` variant and its row here. See server_locks.md in
//! the project's research notes for what each statement waits for.

use super::flavor::{Flavor, ServerInfo};
use super::guard::QueryType;
use crate::exit;
use crate::privileges::{Row, ALL};
use clap::ValueEnum;
use mysql::prelude::Queryable;

/// The `--lock` values (their help is clap's, from these comments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockMode {
    /// The least disruptive consistent lock the server offers: backup-stage on MariaDB >= 10.4.1, else ftwrl.
    Auto,
    /// FLUSH TABLES WITH READ LOCK: blocks all writes and commits; exact binary-log point.
    Ftwrl,
    /// MariaDB >= 10.4.1: BACKUP STAGE START + BLOCK_COMMIT; does not wait for running statements on transactional tables; exact binary-log point.
    BackupStage,
    /// MySQL >= 8.0: LOCK INSTANCE FOR BACKUP. Only for InnoDB-only data and atomic snapshots: NO exact binary-log point.
    Instance,
    /// Percona Server: LOCK TABLES FOR BACKUP. Only for InnoDB-only data and atomic snapshots: NO exact binary-log point.
    TablesForBackup,
    /// Take no database lock (filesystem freeze and hooks only); no connection is made.
    None,
}

impl LockMode {
    /// The option value, e.g. "backup-stage".
    pub fn name(self) -> &'static str {
        row(self).name
    }
}

impl std::fmt::Display for LockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The SQL of one lock mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strategy {
    /// The resolved mode (never `Auto` or `None`).
    pub mode: LockMode,
    /// In words, e.g. "FLUSH TABLES WITH READ LOCK".
    pub name: &'static str,
    /// Run in order; together they must finish within one attempt's budget.
    pub lock: &'static [&'static str],
    /// Releases the lock; also run after a failed attempt.
    pub unlock: &'static str,
    /// Global privileges that allow it (any one of them).
    pub privileges: &'static [&'static str],
    /// Whether commits are blocked, so the binary-log position is exact.
    pub exact_binlog_point: bool,
    /// The running statements its lock statement waits for while every
    /// writer waits behind it: what the long-query guard waits out before an
    /// attempt (None: it does not wait for running statements).
    pub waits_for: Option<QueryType>,
}

pub const FTWRL: Strategy = Strategy {
    mode: LockMode::Ftwrl,
    name: "FLUSH TABLES WITH READ LOCK",
    lock: &["FLUSH TABLES WITH READ LOCK"],
    unlock: "UNLOCK TABLES",
    privileges: &["RELOAD"],
    exact_binlog_point: true,
    // Its FLUSH TABLES waits for every statement that has a table open, SELECTs too.
    waits_for: Some(QueryType::All),
};

/// MariaDB's FTWRL does not wait for running SELECTs, only for writes.
pub const FTWRL_MARIADB: Strategy = Strategy {
    waits_for: Some(QueryType::Update),
    ..FTWRL
};

pub const BACKUP_STAGE: Strategy = Strategy {
    mode: LockMode::BackupStage,
    name: "BACKUP STAGE BLOCK_COMMIT",
    lock: &["BACKUP STAGE START", "BACKUP STAGE BLOCK_COMMIT"],
    unlock: "BACKUP STAGE END",
    privileges: &["RELOAD"],
    exact_binlog_point: true,
    // Only writes to non-transactional tables, which a process list cannot tell apart.
    waits_for: None,
};

pub const INSTANCE: Strategy = Strategy {
    mode: LockMode::Instance,
    name: "LOCK INSTANCE FOR BACKUP",
    lock: &["LOCK INSTANCE FOR BACKUP"],
    unlock: "UNLOCK INSTANCE",
    privileges: &["BACKUP_ADMIN"],
    exact_binlog_point: false,
    waits_for: None,
};

/// Percona Server 8.0 (BACKUP_ADMIN from 8.0.13-4).
pub const TABLES_FOR_BACKUP: Strategy = Strategy {
    mode: LockMode::TablesForBackup,
    name: "LOCK TABLES FOR BACKUP",
    lock: &["LOCK TABLES FOR BACKUP"],
    unlock: "UNLOCK TABLES",
    privileges: &["BACKUP_ADMIN"],
    exact_binlog_point: false,
    waits_for: None,
};

/// Percona Server 5.6/5.7: the same statement needs RELOAD.
pub const TABLES_FOR_BACKUP_57: Strategy = Strategy {
    privileges: &["RELOAD"],
    ..TABLES_FOR_BACKUP
};

/// What `resolve` decides for one mode on one server: the strategy, or what
/// the mode needs that this server lacks.
type Resolver = fn(&ServerInfo, &mut mysql::Conn) -> Result<Strategy, &'static str>;

/// One `--lock` value.
pub struct ModeRow {
    pub mode: LockMode,
    /// The option value.
    pub name: &'static str,
    /// The strategies it may use, known before connecting (--dry-run).
    pub planned: &'static [Strategy],
    /// Its strategy on a given server (None: no connection at all).
    pub resolve: Option<Resolver>,
    /// For the tables in the man page and README: where it works, what it
    /// blocks, its binary-log point.
    pub server: &'static str,
    pub blocks: &'static str,
    pub binlog_point: &'static str,
    /// The privileges of its own statements on each server, for `--check`,
    /// `--print-grants` and the grants tables (None: `auto`, which counts as
    /// what it picks, and `none`, which connects to nothing).
    pub grants: Option<Row>,
}

/// Every lock mode.
pub const MODES: &[ModeRow] = &[
    ModeRow {
        mode: LockMode::Auto,
        name: "auto",
        planned: &[BACKUP_STAGE, FTWRL],
        resolve: Some(|info, conn| {
            let mode = auto_mode(info);
            (row(mode).resolve.expect("auto picks a locking mode"))(info, conn)
        }),
        server: "any",
        blocks: "what the mode it picks blocks: `backup-stage` on MariaDB >= 10.4.1, else `ftwrl`",
        binlog_point: "exact",
        grants: None,
    },
    ModeRow {
        mode: LockMode::Ftwrl,
        name: "ftwrl",
        planned: &[FTWRL],
        resolve: Some(|info, _| {
            Ok(if info.flavor == Flavor::Mariadb {
                FTWRL_MARIADB
            } else {
                FTWRL
            })
        }),
        server: "any",
        blocks: "all writes and commits; waits for running statements first (MariaDB: running writes only)",
        binlog_point: "exact, checked: the binary log must not move under the lock",
        grants: Some(Row {
            what: "`--lock=ftwrl` (what `auto` picks on MySQL and Percona)",
            mysql: &[("RELOAD", ALL)],
            percona: &[("RELOAD", ALL)],
            mariadb: &[("RELOAD", ALL)],
        }),
    },
    ModeRow {
        mode: LockMode::BackupStage,
        name: "backup-stage",
        planned: &[BACKUP_STAGE],
        resolve: Some(|info, _| {
            if info.flavor == Flavor::Mariadb && info.at_least(10, 4, 1) {
                Ok(BACKUP_STAGE)
            } else {
                Err("MariaDB 10.4.1 or later")
            }
        }),
        server: "MariaDB >= 10.4.1",
        blocks: "commits and MyISAM writes; does **not** wait for running statements on InnoDB tables, but does wait for a running write to a MyISAM or Aria table. A write to an Aria or MEMORY table goes **through** (the writer gets error 1205, yet the row stays and is binary-logged): the run sees the binary log move and exits 65; use `ftwrl` where such writes happen",
        binlog_point: "exact, checked: the binary log must not move under the lock",
        grants: Some(Row {
            what: "`--lock=backup-stage` (what `auto` picks on MariaDB)",
            mysql: &[],
            percona: &[],
            mariadb: &[("RELOAD", ALL)],
        }),
    },
    ModeRow {
        mode: LockMode::Instance,
        name: "instance",
        planned: &[INSTANCE],
        resolve: Some(|info, _| {
            if info.flavor != Flavor::Mariadb && info.at_least(8, 0, 0) {
                Ok(INSTANCE)
            } else {
                Err("MySQL or Percona Server 8.0 or later")
            }
        }),
        server: "MySQL >= 8.0",
        blocks: "DDL only",
        binlog_point: "**none**: InnoDB-only data and atomic snapshots only",
        grants: Some(Row {
            what: "`--lock=instance`",
            mysql: &[("BACKUP_ADMIN", ALL)],
            percona: &[("BACKUP_ADMIN", ALL)],
            mariadb: &[],
        }),
    },
    ModeRow {
        mode: LockMode::TablesForBackup,
        name: "tables-for-backup",
        planned: &[TABLES_FOR_BACKUP],
        resolve: Some(|info, conn| {
            let has_backup_locks = info.flavor == Flavor::Percona
                && conn
                    .query_first::<Option<String>, _>("SELECT @@have_backup_locks")
                    .ok()
                    .flatten()
                    .flatten()
                    .is_some_and(|v| v.eq_ignore_ascii_case("YES"));
            match (has_backup_locks, info.at_least(8, 0, 0)) {
                (true, true) => Ok(TABLES_FOR_BACKUP),
                (true, false) => Ok(TABLES_FOR_BACKUP_57),
                (false, _) => Err("Percona Server with backup locks (@@have_backup_locks)"),
            }
        }),
        server: "Percona Server",
        blocks: "DDL and non-InnoDB writes",
        binlog_point: "**none**: same caveat",
        grants: Some(Row {
            what: "`--lock=tables-for-backup`",
            mysql: &[],
            percona: &[("BACKUP_ADMIN", ALL)],
            mariadb: &[],
        }),
    },
    ModeRow {
        mode: LockMode::None,
        name: "none",
        planned: &[],
        resolve: None,
        server: "",
        blocks: "nothing (no connection at all)",
        binlog_point: "",
        grants: None,
    },
];

/// The row of `mode` (every variant has one: a test checks it).
pub fn row(mode: LockMode) -> &'static ModeRow {
    MODES
        .iter()
        .find(|r| r.mode == mode)
        .expect("every lock mode has a row in MODES")
}

/// The strategies a mode may use, known before connecting.
pub fn planned(mode: LockMode) -> &'static [Strategy] {
    row(mode).planned
}

/// What `auto` chooses: MariaDB's documented storage-snapshot recipe where
/// it exists (it does not wait for running statements), else FTWRL.
pub fn auto_mode(info: &ServerInfo) -> LockMode {
    if info.flavor == Flavor::Mariadb && info.at_least(10, 4, 1) {
        LockMode::BackupStage
    } else {
        LockMode::Ftwrl
    }
}

/// The strategy for `mode` on this server, or exit 78 when the server does
/// not support it (checked before anything is locked).
pub fn resolve(
    mode: LockMode,
    info: &ServerInfo,
    conn: &mut mysql::Conn,
) -> anyhow::Result<Strategy> {
    let resolver = row(mode)
        .resolve
        .expect("a session is opened only for a locking mode");
    resolver(info, conn).map_err(|needs| {
        exit::fail(
            exit::CONFIG,
            format!(
                "--lock={mode} needs {needs}; this server is {} ({}). Nothing was locked. Use --lock=auto to pick the \
                 best mode this server offers",
                info.short(),
                info.version
            ),
        )
    })
}

/// The README's lock-mode table (Markdown), from `MODES`.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| mode | statements | server | blocks | binary-log point |\n|---|---|---|---|---|\n",
    );
    for r in MODES {
        let statements = match r.mode {
            LockMode::Auto => "those of the mode it picks".to_string(),
            _ => r
                .planned
                .iter()
                .map(|s| {
                    let lock: Vec<String> = s.lock.iter().map(|l| format!("`{l}`")).collect();
                    format!("{} / `{}`", lock.join(", "), s.unlock)
                })
                .collect::<Vec<_>>()
                .join("; "),
        };
        let statements = if r.mode == LockMode::None {
            "no connection at all".to_string()
        } else {
            statements
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            r.name, statements, r.server, r.blocks, r.binlog_point
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_backup_stage_on_mariadb_10_4_1_and_later() {
        let mariadb = |v: &str| ServerInfo::from_strings(v, "mariadb.org binary distribution");
        assert_eq!(
            auto_mode(&mariadb("10.11.19-MariaDB")),
            LockMode::BackupStage
        );
        assert_eq!(auto_mode(&mariadb("10.4.1-MariaDB")), LockMode::BackupStage);
        assert_eq!(auto_mode(&mariadb("10.4.0-MariaDB")), LockMode::Ftwrl);
        assert_eq!(auto_mode(&mariadb("10.3.39-MariaDB")), LockMode::Ftwrl);
        assert_eq!(
            auto_mode(&ServerInfo::from_strings("9.7.4", "")),
            LockMode::Ftwrl
        );
        assert_eq!(
            auto_mode(&ServerInfo::from_strings("8.0.36-28", "Percona Server")),
            LockMode::Ftwrl
        );
    }

    #[test]
    fn every_mode_has_one_row_named_as_its_command_line_value() {
        for m in LockMode::value_variants() {
            let rows: Vec<&ModeRow> = MODES.iter().filter(|r| r.mode == *m).collect();
            assert_eq!(rows.len(), 1, "{m:?}");
            assert_eq!(m.to_possible_value().unwrap().get_name(), rows[0].name);
        }
        assert_eq!(MODES.len(), LockMode::value_variants().len());
    }

    #[test]
    fn every_mode_that_locks_states_its_grants_and_they_name_its_privilege() {
        for r in MODES {
            match r.mode {
                LockMode::Auto | LockMode::None => assert!(r.grants.is_none(), "{}", r.name),
                _ => {
                    let g = r
                        .grants
                        .as_ref()
                        .unwrap_or_else(|| panic!("{} has no grants", r.name));
                    let all: Vec<&str> = [g.mysql, g.percona, g.mariadb]
                        .iter()
                        .flat_map(|c| c.iter().map(|(p, _)| *p))
                        .collect();
                    for s in r.planned {
                        assert!(
                            s.privileges.iter().any(|p| all.contains(p)),
                            "{}: grants {all:?} lack {:?}",
                            r.name,
                            s.privileges
                        );
                    }
                }
            }
        }
    }
}
