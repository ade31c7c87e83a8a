//! CHECK TABLE on every table, judged by its result rows: `mariadb-check`
//! and `mysqlcheck` exit 0 even when a table is corrupt, so verify runs the
//! statement itself and reads Msg_type / Msg_text.

use mysql::prelude::Queryable;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct TableResult {
    /// `schema`.`table`, as "schema.table".
    pub table: String,
    pub ok: bool,
    /// The engine could not check it (e.g. MEMORY): not counted as checked.
    pub skipped: bool,
    /// Every message row other than a plain "OK".
    pub messages: Vec<String>,
}

fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// Every base table outside the virtual schemas, in order.
pub fn list(conn: &mut mysql::Conn) -> mysql::Result<Vec<(String, String)>> {
    conn.query(
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
         WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ('information_schema', 'performance_schema') \
         ORDER BY TABLE_SCHEMA, TABLE_NAME",
    )
}

/// Judge CHECK TABLE's rows: (Msg_type, Msg_text).
pub fn judge(table: String, rows: &[(String, String)]) -> TableResult {
    let mut messages = Vec::new();
    let mut ok = true;
    let mut skipped = false;
    let mut last_status = None;
    for (kind, text) in rows {
        let kind_l = kind.to_ascii_lowercase();
        if kind_l == "status" {
            last_status = Some(text.clone());
        }
        if kind_l == "error" {
            ok = false;
        }
        if text.contains("doesn't support check") {
            skipped = true;
        }
        if !(kind_l == "status" && text == "OK") {
            messages.push(format!("{kind}: {text}"));
        }
    }
    match last_status.as_deref() {
        Some("OK") | Some("Table is already up to date") => {}
        Some(_) => ok = false,
        None if skipped => {}
        None => ok = false,
    }
    TableResult {
        table,
        ok,
        skipped: skipped && ok,
        messages,
    }
}

/// CHECK TABLE one table. A statement that fails outright (the table
/// cannot be opened) fails the table with the server's error.
pub fn check(conn: &mut mysql::Conn, schema: &str, name: &str) -> TableResult {
    let table = format!("{schema}.{name}");
    let sql = format!("CHECK TABLE {}.{}", ident(schema), ident(name));
    match conn.query::<mysql::Row, _>(sql) {
        Ok(rows) => {
            let pairs: Vec<(String, String)> = rows
                .iter()
                .map(|r| {
                    let text = |i: usize| {
                        r.get_opt::<Option<String>, _>(i)
                            .and_then(Result::ok)
                            .flatten()
                            .unwrap_or_default()
                    };
                    (text(2), text(3))
                })
                .collect();
            judge(table, &pairs)
        }
        Err(e) => TableResult {
            table,
            ok: false,
            skipped: false,
            messages: vec![format!("CHECK TABLE failed: {e}")],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn corruption_fails_even_when_the_last_word_is_not_an_error() {
        let r = judge("a.t".into(), &rows(&[("status", "OK")]));
        assert!(r.ok && r.messages.is_empty());
        let r = judge(
            "a.t".into(),
            &rows(&[
                (
                    "Warning",
                    "InnoDB: The B-tree of index PRIMARY is corrupted.",
                ),
                ("error", "Corrupt"),
            ]),
        );
        assert!(!r.ok);
        assert_eq!(r.messages.len(), 2);
        let r = judge(
            "a.t".into(),
            &rows(&[
                ("Error", "Tablespace is missing for table `a`.`t`"),
                ("status", "Operation failed"),
            ]),
        );
        assert!(!r.ok);
        let r = judge(
            "a.m".into(),
            &rows(&[(
                "note",
                "The storage engine for the table doesn't support check",
            )]),
        );
        assert!(r.ok && r.skipped);
        assert!(!judge("a.t".into(), &[]).ok);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("we`ird"), "`we``ird`");
    }
}
