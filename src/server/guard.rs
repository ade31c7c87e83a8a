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

/// A statement running on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub id: u64,
    pub seconds: u64,
    pub info: String,
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
pub fn running(
    conn: &mut mysql::Conn,
    kind: QueryType,
    min_seconds: f64,
    ours: &[u32],
) -> mysql::Result<Vec<Running>> {
    let ours: Vec<String> = ours.iter().map(u32::to_string).collect();
    let q = format!(
        "SELECT ID, TIME, INFO FROM information_schema.PROCESSLIST \
         WHERE COMMAND IN ('Query', 'Execute') AND INFO IS NOT NULL \
         AND USER NOT IN ('system user', 'event_scheduler') AND ID NOT IN ({}) \
         AND TIME >= {} ORDER BY TIME DESC",
        ours.join(", "),
        min_seconds.floor().max(0.0)
    );
    let rows: Vec<(u64, u64, String)> = conn.query(q)?;
    Ok(rows
        .into_iter()
        .filter(|(_, t, info)| (*t as f64) >= min_seconds && matches(kind, info))
        .map(|(id, seconds, info)| Running { id, seconds, info })
        .collect())
}

/// The statements of `now` that were already running in `before`, taken just
/// before our lock statement was sent: same connection, same statement, and
/// not restarted since. Only these can be what our statement waits behind;
/// anything that started later may be queued behind our own lock, and must
/// never be killed. (TIME counts whole seconds, so it cannot tell this apart
/// below one second.)
pub fn started_before(before: &[Running], now: Vec<Running>) -> Vec<Running> {
    now.into_iter()
        .filter(|n| {
            before
                .iter()
                .any(|b| b.id == n.id && b.info == n.info && n.seconds >= b.seconds)
        })
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

    #[test]
    fn only_statements_running_before_our_attempt_are_blockers() {
        let r = |id, seconds, info: &str| Running {
            id,
            seconds,
            info: info.into(),
        };
        let before = [r(1, 0, "UPDATE t SET a=1"), r(2, 5, "SELECT x")];
        let now = vec![
            r(1, 1, "UPDATE t SET a=1"), // still the same statement: a blocker
            r(2, 0, "SELECT x"),         // restarted since: not ours to kill
            r(3, 0, "INSERT INTO w VALUES (1)"), // queued behind our lock
        ];
        let ids: Vec<u64> = started_before(&before, now).iter().map(|r| r.id).collect();
        assert_eq!(ids, [1]);
    }

    #[test]
    fn description_is_single_line_and_bounded() {
        let r = Running {
            id: 7,
            seconds: 12,
            info: format!("SELECT\n{}", "x".repeat(300)),
        };
        let d = r.describe();
        assert!(d.starts_with("connection 7 running 12 s: SELECT x"));
        assert!(d.len() < 160 && !d.contains('\n'));
    }
}
