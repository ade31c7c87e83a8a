//! The coordinates the snapshot's run recorded (`--coordinates-file`, see
//! `run::coordinates_json`), and how they compare with the restore point the
//! copy really holds.

use crate::exit;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The fields verify uses; the file may hold more (kept in the report as read).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Recorded {
    pub binlog_file: Option<String>,
    pub binlog_position: Option<u64>,
    pub gtid: Option<String>,
    /// Read while commits were blocked: an exact restore point.
    #[serde(default)]
    pub exact: bool,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub server_version: Option<String>,
}

/// Read and parse the file; exit 78 when it cannot be.
pub fn read(path: &Path) -> anyhow::Result<(Recorded, serde_json::Value)> {
    let bad = |why: String| {
        exit::fail(
            exit::CONFIG,
            format!("--coordinates-file {}: {why}", path.display()),
        )
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let raw: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let recorded: Recorded = serde_json::from_value(raw.clone())
        .map_err(|e| bad(format!("not a coordinates file of mysql-quiesce: {e}")))?;
    if recorded.binlog_file.is_none() && recorded.gtid.is_none() && raw.get("exact").is_none() {
        return Err(bad(
            "not a coordinates file of mysql-quiesce (no binlog_file, gtid or exact)".into(),
        ));
    }
    Ok((recorded, raw))
}

/// The restore point the copy holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Point {
    pub binlog_file: Option<String>,
    pub binlog_position: Option<u64>,
    /// Offsets in `binlog_file` that are the same point of the data (the end
    /// of the last transaction and any metadata event after it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub equivalent_positions: Vec<u64>,
    /// gtid_executed (MySQL) or the GTID position at the point (MariaDB).
    pub gtid: Option<String>,
}

impl Point {
    /// "binlog.000002:1234, GTID 0-1-12" (or what there is).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let (Some(f), Some(p)) = (&self.binlog_file, self.binlog_position) {
            parts.push(format!("{f}:{p}"));
        }
        if let Some(g) = self.gtid.as_deref().filter(|g| !g.is_empty()) {
            parts.push(format!("GTID {g}"));
        }
        if parts.is_empty() {
            "no binary-log position (binary logging was off)".into()
        } else {
            parts.join(", ")
        }
    }
}

fn describe_recorded(r: &Recorded) -> String {
    Point {
        binlog_file: r.binlog_file.clone(),
        binlog_position: r.binlog_position,
        equivalent_positions: Vec::new(),
        gtid: r.gtid.clone(),
    }
    .describe()
}

/// Two GTID sets or positions written by servers: equal as sets of their
/// comma-separated members, whitespace and order aside.
pub fn same_gtids(a: &str, b: &str) -> bool {
    let members = |s: &str| {
        let mut v: Vec<String> = s
            .split(',')
            .map(|m| m.chars().filter(|c| !c.is_whitespace()).collect::<String>())
            .filter(|m| !m.is_empty())
            .map(|m| m.to_ascii_lowercase())
            .collect();
        v.sort();
        v
    };
    members(a) == members(b)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Exact coordinates, and the copy ends exactly there.
    Match,
    /// Exact coordinates, and the copy ends elsewhere.
    Differs,
    /// Inexact coordinates: reported next to the exact point.
    Inexact,
    /// No --coordinates-file.
    NotRecorded,
}

/// Compare; the strings explain (why it differs, or the two points side by side).
pub fn compare(recorded: Option<&Recorded>, found: &Point) -> (Verdict, Vec<String>) {
    let Some(r) = recorded else {
        return (Verdict::NotRecorded, Vec::new());
    };
    if !r.exact {
        let mut notes = vec![format!(
            "recorded coordinates are not exact ({}; read while commits went on): {}; the exact restore point of \
             the copy is {}",
            r.source.as_deref().unwrap_or("lock mode without a commit block"),
            describe_recorded(r),
            found.describe()
        )];
        if let (Some(rf), Some(rp), Some(ff), Some(fp)) = (
            &r.binlog_file,
            r.binlog_position,
            &found.binlog_file,
            found.binlog_position,
        ) {
            if (ff.as_str(), fp) < (rf.as_str(), rp) {
                notes.push(format!(
                    "the copy ends before the recorded coordinates ({ff}:{fp} < {rf}:{rp}): the snapshot was taken \
                     before they were read?"
                ));
            }
        }
        return (Verdict::Inexact, notes);
    }
    let mut why = Vec::new();
    match (&r.binlog_file, r.binlog_position, &found.binlog_file, found.binlog_position) {
        (Some(rf), Some(rp), Some(ff), Some(fp)) => {
            let same = rf == ff && (rp == fp || found.equivalent_positions.contains(&rp));
            if !same {
                why.push(format!(
                    "the binary log was recorded at {rf}:{rp}, but the copy's ends at {ff}:{fp}"
                ));
            }
        }
        (Some(rf), Some(rp), None, _) => why.push(format!(
            "the binary log was recorded at {rf}:{rp}, but the copy has no binary log (if it lives outside the \
             data directory, give --binlog-dir)"
        )),
        (None, _, Some(ff), Some(fp)) => why.push(format!(
            "no binary-log position was recorded, but the copy's binary log ends at {ff}:{fp}"
        )),
        _ => {}
    }
    if let Some(rg) = r.gtid.as_deref().filter(|g| !g.trim().is_empty()) {
        match found.gtid.as_deref() {
            Some(fg) if same_gtids(rg, fg) => {}
            Some(fg) => why.push(format!(
                "the GTID position was recorded as {rg}, but the copy holds {}",
                if fg.is_empty() { "none" } else { fg }
            )),
            None => why.push(format!(
                "the GTID position was recorded as {rg}, but the copy holds none"
            )),
        }
    }
    if why.is_empty() {
        (Verdict::Match, Vec::new())
    } else {
        (Verdict::Differs, why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(file: &str, pos: u64, gtid: &str) -> Point {
        Point {
            binlog_file: Some(file.into()),
            binlog_position: Some(pos),
            equivalent_positions: vec![pos],
            gtid: Some(gtid.into()),
        }
    }

    fn recorded(file: &str, pos: u64, gtid: &str, exact: bool) -> Recorded {
        Recorded {
            binlog_file: Some(file.into()),
            binlog_position: Some(pos),
            gtid: Some(gtid.into()),
            exact,
            ..Default::default()
        }
    }

    #[test]
    fn exact_coordinates_must_match_file_position_and_gtid() {
        let r = recorded("binlog.000002", 1234, "0-1-12", true);
        assert_eq!(
            compare(Some(&r), &point("binlog.000002", 1234, "0-1-12")).0,
            Verdict::Match
        );
        let (v, why) = compare(Some(&r), &point("binlog.000002", 1000, "0-1-11"));
        assert_eq!(v, Verdict::Differs);
        assert_eq!(why.len(), 2, "{why:?}");
        assert!(why[0]
            .contains("recorded at binlog.000002:1234, but the copy's ends at binlog.000002:1000"));
        // A metadata event after the last transaction is the same point.
        let mut p = point("binlog.000002", 1300, "0-1-12");
        p.equivalent_positions = vec![1234, 1300];
        assert_eq!(compare(Some(&r), &p).0, Verdict::Match);
        assert_eq!(compare(None, &p).0, Verdict::NotRecorded);
    }

    #[test]
    fn inexact_coordinates_are_reported_next_to_the_exact_point() {
        let r = recorded("binlog.000002", 1234, "u:1-5", false);
        let (v, notes) = compare(Some(&r), &point("binlog.000002", 1500, "u:1-7"));
        assert_eq!(v, Verdict::Inexact);
        assert!(
            notes[0].contains("binlog.000002:1234, GTID u:1-5"),
            "{notes:?}"
        );
        assert!(notes[0]
            .contains("the exact restore point of the copy is binlog.000002:1500, GTID u:1-7"));
        assert_eq!(notes.len(), 1);
        let (_, notes) = compare(Some(&r), &point("binlog.000002", 1000, "u:1-4"));
        assert!(notes[1].contains("ends before"), "{notes:?}");
    }

    #[test]
    fn gtid_sets_compare_as_sets() {
        assert!(same_gtids("a:1-5,\nb:1-3", "b:1-3, a:1-5"));
        assert!(!same_gtids("a:1-5", "a:1-6"));
        assert!(same_gtids("0-1-12", " 0-1-12 "));
    }
}
