//! What a privilege row is: one thing a run may do and the grants each
//! server needs for it. A leaf module, so that the lock-mode table
//! (`server::strategy::MODES`) carries each mode's own row and `grants`
//! reads them from there, without the two importing each other.

/// A privilege and what it is granted on.
pub type Grant = (&'static str, &'static str);

/// Granted on every object.
pub const ALL: &str = "*.*";

/// One thing a run may do, and what each server needs for it (empty: the
/// server does not offer it).
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// What needs it (Markdown: options in backquotes).
    pub what: &'static str,
    /// MySQL 8.0, 8.4, 9.x.
    pub mysql: &'static [Grant],
    /// Percona Server 8.0, 8.4.
    pub percona: &'static [Grant],
    /// MariaDB 10.5 (10.5.9 and later), 10.6, 10.11, 11.x.
    pub mariadb: &'static [Grant],
}
