//! The verify server's error log: what to quote when something fails, whether
//! a failed start is the data's fault (corruption: exit 65) or the
//! environment's (exit 69), and what InnoDB says about the binary log.

use std::path::Path;

/// The log's text (empty when it does not exist), at most the last `limit` bytes.
pub fn read(path: &Path, limit: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(limit);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Lines that say the data is damaged or incomplete, not that the server
/// could not run here. Lowercase substrings.
const CORRUPTION: &[&str] = &[
    "corrupt",
    "checksum mismatch",
    "page checksum",
    "assertion failure",
    "failing assertion",
    "was not found at",
    "cannot open datafile",
    "could not find a valid tablespace file",
    "tablespace is missing",
    "missing tablespace",
    "prepared transactions",
    "is in the future",
    "wrong magic number",
    "incorrect information in file",
    "can't find file",
    "is marked as crashed",
];

/// The lines of `log` that report damage to the data (at most `max`).
pub fn corruption_lines(log: &str, max: usize) -> Vec<String> {
    log.lines()
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            // Only the server's complaints, not its informational lines.
            (lower.contains("error") || lower.contains("warning") || lower.contains("assert"))
                && CORRUPTION.iter().any(|m| lower.contains(m))
        })
        .take(max)
        .map(|l| l.trim().to_string())
        .collect()
}

/// `[ERROR]` lines, and the last `tail` lines: what to quote on failure.
pub fn quote(log: &str, tail: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let mut out: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("[ERROR]") || l.contains("[Error]"))
        .take(20)
        .collect();
    for l in &lines[lines.len().saturating_sub(tail)..] {
        if !out.contains(l) {
            out.push(l);
        }
    }
    out.iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// MariaDB's InnoDB names the binary-log position of the last transaction
/// it committed: "InnoDB: Last binlog file './binlog.000004', position 342996".
/// (File name without directory, position.)
pub fn innodb_binlog_position(log: &str) -> Option<(String, u64)> {
    log.lines().rev().find_map(|l| {
        let rest = &l[l.find("Last binlog file '")? + "Last binlog file '".len()..];
        let (file, rest) = rest.split_once('\'')?;
        let pos = rest.split("position").nth(1)?.trim();
        let pos: u64 = pos
            .split(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())?
            .parse()
            .ok()?;
        let name = Path::new(file).file_name()?.to_string_lossy().into_owned();
        Some((name, pos))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corruption_is_told_apart_from_a_server_that_cannot_run_here() {
        let log = "2026-01-01 0 [Note] InnoDB: Starting crash recovery from checkpoint LSN=1234\n\
                   2026-01-01 0 [ERROR] InnoDB: Tablespace 5 was not found at ./app/t.ibd.\n\
                   2026-01-01 0 [ERROR] Can't start server: Bind on unix socket: Permission denied\n";
        let lines = corruption_lines(log, 5);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("was not found at"));
        assert!(
            corruption_lines("[ERROR] Can't start server: Bind on TCP/IP port\n", 5).is_empty()
        );
        assert!(!corruption_lines("[ERROR] InnoDB: Failed to read page 5 from file './app/t.ibd': Page read from tablespace is corrupted.\n", 5).is_empty());
    }

    #[test]
    fn innodbs_binlog_position_is_read() {
        let log = "2026 [Note] InnoDB: Last binlog file './binlog.000004', position 342996\n";
        assert_eq!(
            innodb_binlog_position(log),
            Some(("binlog.000004".to_string(), 342996))
        );
        let abs = "InnoDB: Last binlog file '/var/lib/mysql/binlog.000002', position 5\n";
        assert_eq!(innodb_binlog_position(abs).unwrap().0, "binlog.000002");
        assert_eq!(innodb_binlog_position("nothing"), None);
    }

    #[test]
    fn the_quote_has_the_errors_and_the_tail() {
        let log = "a\n[ERROR] first\nb\nc\nd\n";
        let q = quote(log, 2);
        assert_eq!(q, "    [ERROR] first\n    c\n    d");
    }
}
