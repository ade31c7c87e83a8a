//! The long-query guard (as Percona XtraBackup's --ftwrl-wait-*): find
//! running statements that would make a lock attempt wait, so that we wait
//! before locking instead of stalling every writer, and, only when asked,
//! kill them.

use clap::ValueEnum;
use mysql::prelude::Queryable;

/// --long-query-type: which running statements the guard waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryType {
    /// Any statement that holds tables open (SELECT too): what blocks FLUSH TABLES WITH READ LOCK on MySQL.
    All,
    /// Only data-changing statements (INSERT, UPDATE, DELETE, REPLACE, ALTER, LOAD).
    Update,
}

/// A statement running on the server, as one read of the process list saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// The connection.
    pub id: u64,
    /// How long it had run (the process list counts whole seconds).
    pub seconds: u64,
    pub info: String,
    /// MariaDB's QUERY_ID: one per statement, so it tells a statement from
    /// the same text run again on the same connection. None on MySQL.
    pub query_id: Option<u64>,
    /// When the process list was read.
    pub seen_at: std::time::Instant,
}

impl Running {
    pub fn describe(&self) -> String {
        let mut info: String = self.info.split_whitespace().collect::<Vec<_>>().join(" ");
        if info.len() > 100 {
            let cut = (0..=100)
                .rev()
                .find(|&i| info.is_char_boundary(i))
                .unwrap_or(0);
            info.truncate(cut);
            info.push_str("...");
        }
        format!("connection {} running {} s: {info}", self.id, self.seconds)
    }
}

/// The first keyword of a statement, lowercased, after leading whitespace,
/// parentheses and /* */ comments (as xtrabackup's is_query_from_list).
pub fn first_keyword(statement: &str) -> String {
    let mut s = statement.trim_start();
    loop {
        if let Some(rest) = s.strip_prefix('(') {
            s = rest.trim_start();
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest
                .split_once("*/")
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else {
            break;
        }
    }
    s.split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Whether a statement is of the kind `kind` considers.
pub fn matches(kind: QueryType, statement: &str) -> bool {
    const UPDATE: &[&str] = &["insert", "update", "delete", "replace", "alter", "load"];
    const ALSO_FOR_ALL: &[&str] = &[
        "select", "do", "handler", "call", "execute", "begin", "create", "drop", "optimize",
        "analyze", "truncate", "rename", "with",
    ];
    let word = first_keyword(statement);
    UPDATE.contains(&word.as_str())
        || (kind == QueryType::All && ALSO_FOR_ALL.contains(&word.as_str()))
}

/// Statements of `kind` running at least `min_seconds`, other than ours.
/// `mariadb`: the server has PROCESSLIST.QUERY_ID.
pub fn running(
    conn: &mut mysql::Conn,
    mariadb: bool,
    kind: QueryType,
    min_seconds: f64,
    ours: &[u32],
) -> mysql::Result<Vec<Running>> {
    let ours: Vec<String> = ours.iter().map(u32::to_string).collect();
    let q = format!(
        "SELECT ID, TIME, INFO, {} FROM information_schema.PROCESSLIST \
         WHERE COMMAND IN ('Query', 'Execute') AND INFO IS NOT NULL \
         AND USER NOT IN ('system user', 'event_scheduler') AND ID NOT IN ({}) \
         AND TIME >= {} ORDER BY TIME DESC",
        if mariadb { "QUERY_ID" } else { "NULL" },
        ours.join(", "),
        min_seconds.floor().max(0.0)
    );
    let seen_at = std::time::Instant::now();
    let rows: Vec<(u64, u64, String, Option<u64>)> = conn.query(q)?;
    Ok(rows
        .into_iter()
        .filter(|(_, t, info, _)| (*t as f64) >= min_seconds && matches(kind, info))
        .map(|(id, seconds, info, query_id)| Running {
            id,
            seconds,
            info,
            query_id,
            seen_at,
        })
        .collect())
}

/// Whether `now` is the very statement `then` saw, still running, and not
/// the same text run again on the same connection. With MariaDB's QUERY_ID
/// that is certain. Without it (MySQL) the process list's whole seconds
/// must have advanced with the clock: a statement that ran `s` seconds
/// then has run at least `s + floor(elapsed)` now, while one started after
/// `then` has run less than `elapsed`. `strict` also rules out one that
/// started after `then` within the same second (it asks for a second
/// more): never wrong about a statement started later, possibly late to
/// recognise the original (used before killing).
fn same_statement(then: &Running, now: &Running, strict: bool) -> bool {
    if then.id != now.id || then.info != now.info {
        return false;
    }
    if let (Some(a), Some(b)) = (then.query_id, now.query_id) {
        return a == b;
    }
    let elapsed = now
        .seen_at
        .saturating_duration_since(then.seen_at)
        .as_secs();
    now.seconds >= then.seconds + elapsed + u64::from(strict)
}

/// The statements of `before` that still run in `now`: what an attempt that
/// gave up was waiting behind, while it lasts. Each keeps its first sighting,
/// so that a connection repeating one short statement drops out.
pub fn still_running(before: &[Running], now: &[Running]) -> Vec<Running> {
    before
        .iter()
        .filter(|b| now.iter().any(|n| same_statement(b, n, false)))
        .cloned()
        .collect()
}

/// The statements of `now` that were already running in `before`, taken just
/// before our lock statement was sent: only these can be what it waits
/// behind; anything that started later may be queued behind our own lock,
/// and must never be killed (so, without QUERY_ID, the strict test).
pub fn started_before(before: &[Running], now: Vec<Running>) -> Vec<Running> {
    now.into_iter()
        .filter(|n| before.iter().any(|b| same_statement(b, n, true)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_keyword_skips_whitespace_parentheses_and_comments() {
        assert_eq!(first_keyword("  /* app=x */ (SELECT 1)"), "select");
        assert_eq!(first_keyword("\n\tUPDATE t SET a=1"), "update");
        assert_eq!(first_keyword("/* unterminated"), "");
    }

    #[test]
    fn update_type_ignores_selects_and_all_includes_them() {
        assert!(matches(QueryType::Update, "insert into t values (1)"));
        assert!(matches(QueryType::Update, "ALTER TABLE t ADD c INT"));
        assert!(!matches(QueryType::Update, "SELECT SLEEP(10)"));
        assert!(matches(QueryType::All, "SELECT SLEEP(10)"));
        assert!(!matches(QueryType::All, "SHOW PROCESSLIST"));
    }

    fn row(
        id: u64,
        seconds: u64,
        info: &str,
        query_id: Option<u64>,
        at: std::time::Instant,
    ) -> Running {
        Running {
            id,
            seconds,
            info: info.into(),
            query_id,
            seen_at: at,
        }
    }

    #[test]
    fn with_query_ids_only_the_same_statement_counts() {
        let t0 = std::time::Instant::now();
        let t1 = t0 + std::time::Duration::from_millis(300);
        let before = [
            row(1, 0, "UPDATE t SET a=1", Some(10), t0),
            row(2, 5, "SELECT x", Some(11), t0),
        ];
        let now = vec![
            row(1, 0, "UPDATE t SET a=1", Some(10), t1), // the same statement: a blocker
            row(2, 5, "SELECT x", Some(12), t1),         // run again since: not ours to kill
            row(3, 0, "INSERT INTO w VALUES (1)", Some(13), t1), // queued behind our lock
        ];
        let ids: Vec<u64> = started_before(&before, now.clone())
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, [1]);
        assert_eq!(still_running(&before, &now).len(), 1);
    }

    #[test]
    fn without_query_ids_whole_seconds_must_keep_up_with_the_clock() {
        let t0 = std::time::Instant::now();
        let later = |ms| t0 + std::time::Duration::from_millis(ms);
        let before = [row(1, 0, "UPDATE q", None, t0)];
        // 1.2 s later the process list says 0 s: the text was run again.
        assert!(still_running(&before, &[row(1, 0, "UPDATE q", None, later(1200))]).is_empty());
        // ... and 1 s: the same statement, still running.
        assert_eq!(
            still_running(&before, &[row(1, 1, "UPDATE q", None, later(1200))]).len(),
            1
        );
        // Within the same second nothing tells them apart: waiting is safe,
        // killing is not, so the strict test wants a second more.
        let soon = [row(1, 0, "UPDATE q", None, later(300))];
        assert_eq!(still_running(&before, &soon).len(), 1);
        assert!(started_before(&before, soon.to_vec()).is_empty());
        assert_eq!(
            started_before(&before, vec![row(1, 2, "UPDATE q", None, later(1300))]).len(),
            1
        );
    }

    #[test]
    fn description_is_single_line_and_bounded() {
        let r = row(
            7,
            12,
            &format!("SELECT\n{}", "x".repeat(300)),
            None,
            std::time::Instant::now(),
        );
        let d = r.describe();
        assert!(d.starts_with("connection 7 running 12 s: SELECT x"));
        assert!(d.len() < 160 && !d.contains('\n'));
    }
}
