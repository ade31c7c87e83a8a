//! Lock modes per server: which statements take and release each lock, what
//! they need, and which mode `auto` picks. See server_locks.md in the
//! project's research notes for what each statement waits for.

use super::flavor::{Flavor, ServerInfo};
use crate::cli::LockMode;
use crate::exit;
use clap::ValueEnum;
use mysql::prelude::Queryable;

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
}

pub const FTWRL: Strategy = Strategy {
    mode: LockMode::Ftwrl,
    name: "FLUSH TABLES WITH READ LOCK",
    lock: &["FLUSH TABLES WITH READ LOCK"],
    unlock: "UNLOCK TABLES",
    privileges: &["RELOAD"],
    exact_binlog_point: true,
};

pub const BACKUP_STAGE: Strategy = Strategy {
    mode: LockMode::BackupStage,
    name: "BACKUP STAGE BLOCK_COMMIT",
    lock: &["BACKUP STAGE START", "BACKUP STAGE BLOCK_COMMIT"],
    unlock: "BACKUP STAGE END",
    privileges: &["RELOAD"],
    exact_binlog_point: true,
};

pub const INSTANCE: Strategy = Strategy {
    mode: LockMode::Instance,
    name: "LOCK INSTANCE FOR BACKUP",
    lock: &["LOCK INSTANCE FOR BACKUP"],
    unlock: "UNLOCK INSTANCE",
    privileges: &["BACKUP_ADMIN"],
    exact_binlog_point: false,
};

/// Percona Server 8.0 (BACKUP_ADMIN from 8.0.13-4).
pub const TABLES_FOR_BACKUP: Strategy = Strategy {
    mode: LockMode::TablesForBackup,
    name: "LOCK TABLES FOR BACKUP",
    lock: &["LOCK TABLES FOR BACKUP"],
    unlock: "UNLOCK TABLES",
    privileges: &["BACKUP_ADMIN"],
    exact_binlog_point: false,
};

/// Percona Server 5.6/5.7: the same statement needs RELOAD.
pub const TABLES_FOR_BACKUP_57: Strategy = Strategy {
    privileges: &["RELOAD"],
    ..TABLES_FOR_BACKUP
};

/// The option value of a mode, e.g. "backup-stage".
pub fn mode_name(mode: LockMode) -> &'static str {
    match mode {
        LockMode::Auto => "auto",
        LockMode::Ftwrl => "ftwrl",
        LockMode::BackupStage => "backup-stage",
        LockMode::Instance => "instance",
        LockMode::TablesForBackup => "tables-for-backup",
        LockMode::None => "none",
    }
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
    let mode = if mode == LockMode::Auto {
        auto_mode(info)
    } else {
        mode
    };
    let unsupported = |needs: &str| {
        exit::fail(
            exit::CONFIG,
            format!(
                "--lock={} needs {needs}; this server is {} ({}). Nothing was locked. Use --lock=auto to pick the best mode this server offers",
                mode_name(mode),
                info.short(),
                info.version
            ),
        )
    };
    match mode {
        LockMode::Ftwrl => Ok(FTWRL),
        LockMode::BackupStage if info.flavor == Flavor::Mariadb && info.at_least(10, 4, 1) => {
            Ok(BACKUP_STAGE)
        }
        LockMode::BackupStage => Err(unsupported("MariaDB 10.4.1 or later")),
        LockMode::Instance if info.flavor != Flavor::Mariadb && info.at_least(8, 0, 0) => {
            Ok(INSTANCE)
        }
        LockMode::Instance => Err(unsupported("MySQL or Percona Server 8.0 or later")),
        LockMode::TablesForBackup => {
            let has_backup_locks = info.flavor == Flavor::Percona
                && conn
                    .query_first::<Option<String>, _>("SELECT @@have_backup_locks")
                    .ok()
                    .flatten()
                    .flatten()
                    .is_some_and(|v| v.eq_ignore_ascii_case("YES"));
            if has_backup_locks && info.at_least(8, 0, 0) {
                Ok(TABLES_FOR_BACKUP)
            } else if has_backup_locks {
                Ok(TABLES_FOR_BACKUP_57)
            } else {
                Err(unsupported(
                    "Percona Server with backup locks (@@have_backup_locks)",
                ))
            }
        }
        LockMode::Auto | LockMode::None => unreachable!("resolved above / no session for none"),
    }
}

/// Check that every mode has a name clap agrees with.
pub fn all_modes() -> impl Iterator<Item = LockMode> {
    LockMode::value_variants().iter().copied()
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
    fn mode_names_match_the_command_line_values() {
        for m in all_modes() {
            assert_eq!(m.to_possible_value().unwrap().get_name(), mode_name(m));
        }
    }
}
