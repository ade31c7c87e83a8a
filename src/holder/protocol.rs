//! What `lock`, `unlock`, `status` and the holder say to each other, as
//! types: one JSON object per line, written and read only here. The field
//! names are kept as they were when these were built by hand, so an
//! `unlock` from a newer package still understands a holder (or a
//! last-result.json) left by the one before an upgrade.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The hook variables (MYSQL_QUIESCE_*), as the holder hands them out.
pub type Variables = BTreeMap<String, String>;

/// How a holder's run ended: what `unlock` exits with, and what `lock`
/// reports when the holder failed before holding anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    #[serde(default)]
    pub ok: bool,
    pub code: u8,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub consistent: bool,
    #[serde(default)]
    pub lock_held_ms: Option<f64>,
}

impl Outcome {
    /// A refusal before anything was done (no run behind it).
    pub fn refusal(code: u8, message: impl Into<String>) -> Outcome {
        Outcome {
            ok: false,
            code,
            message: Some(message.into()),
            finished_at: None,
            consistent: false,
            lock_held_ms: None,
        }
    }
}

/// The holder is locked (and frozen): its pid and the variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Locked {
    pub ok: bool,
    pub pid: u32,
    pub env: Variables,
}

/// The holder's one line to `lock` on the readiness pipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReadyReport {
    Locked(Locked),
    /// It failed before holding anything and has released what it took.
    Failed(Outcome),
}

/// The holder's second line to `lock`, once `lock` has said it handed the
/// variables out: whether the lock is still held. `lock` exits 0 only on
/// `held`; otherwise (--max-lock-time passed while its stdout was blocked,
/// say) with `code`, so that a snapshot is not taken on released variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandOver {
    pub held: bool,
    #[serde(default)]
    pub code: u8,
    #[serde(default)]
    pub why: Option<String>,
}

/// A request on the holder's socket: one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Status,
    Unlock,
}

impl Request {
    pub fn line(self) -> &'static [u8] {
        match self {
            Request::Status => b"status\n",
            Request::Unlock => b"unlock\n",
        }
    }

    pub fn parse(line: &str) -> Option<Request> {
        match line.trim() {
            "status" => Some(Request::Status),
            "unlock" => Some(Request::Unlock),
            _ => None,
        }
    }
}

/// The holder took an `unlock`: the outcome follows within `expect_within` seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub ack: bool,
    pub pid: u32,
    pub expect_within: f64,
}

/// The holder's first answer to `unlock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UnlockReply {
    /// Releasing; the outcome is the next line.
    Ack(Ack),
    /// The outcome at once (it had finished, or refuses).
    Outcome(Outcome),
}

/// Where a holder is, as `status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseName {
    /// `lock` started it and it is not answering on its socket yet.
    Starting,
    Locking,
    /// Locked; `lock` is printing the variables (`unlock` must wait).
    #[serde(rename = "handing-out")]
    HandingOut,
    Holding,
    Releasing,
    Finished,
    /// It holds its flock but no longer answers: on its way out.
    Exiting,
}

impl PhaseName {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseName::Starting => "starting",
            PhaseName::Locking => "locking",
            PhaseName::HandingOut => "handing-out",
            PhaseName::Holding => "holding",
            PhaseName::Releasing => "releasing",
            PhaseName::Finished => "finished",
            PhaseName::Exiting => "exiting",
        }
    }
}

/// `status --json`, and the holder's answer to `status` (only the fields
/// that apply are present).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub running: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PhaseName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// When the holder started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lock_time: Option<f64>,
    /// When the lock was taken (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_seconds: Option<f64>,
    /// Until it releases by itself (--max-lock-time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_left: Option<f64>,
    /// The lock mode (MYSQL_QUIESCE_LOCK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// The frozen mount points (MYSQL_QUIESCE_FROZEN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Variables>,
    /// Why it is releasing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Not running: whether an outcome waits in last-result.json for `unlock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_waiting: Option<bool>,
    /// Not running: the pid of a holder that died holding the lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_holder_pid: Option<u32>,
}

/// One message as its line (without the newline).
pub fn to_line(message: &impl Serialize) -> String {
    serde_json::to_string(message).expect("holder messages always serialize")
}

/// A line as a message; None when it is not one.
pub fn from_line<T: for<'de> Deserialize<'de>>(line: &str) -> Option<T> {
    serde_json::from_str(line.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> Outcome {
        Outcome {
            ok: true,
            code: 0,
            message: None,
            finished_at: Some("2026-12-01T00:00:00Z".into()),
            consistent: true,
            lock_held_ms: Some(12.5),
        }
    }

    #[test]
    fn a_ready_report_reads_back_as_what_was_sent() {
        let locked = ReadyReport::Locked(Locked {
            ok: true,
            pid: 7,
            env: [("MYSQL_QUIESCE_LOCK".to_string(), "ftwrl".to_string())].into(),
        });
        let failed = ReadyReport::Failed(Outcome::refusal(75, "busy"));
        for r in [locked, failed] {
            assert_eq!(from_line::<ReadyReport>(&to_line(&r)), Some(r));
        }
    }

    #[test]
    fn an_unlock_reply_is_an_ack_or_an_outcome() {
        let ack = UnlockReply::Ack(Ack {
            ack: true,
            pid: 9,
            expect_within: 30.0,
        });
        let done = UnlockReply::Outcome(outcome());
        for r in [ack, done] {
            assert_eq!(from_line::<UnlockReply>(&to_line(&r)), Some(r));
        }
    }

    #[test]
    fn the_lines_keep_the_field_names_of_earlier_releases() {
        // As a holder from before the typed protocol wrote them.
        let old_ack = r#"{"ack":true,"pid":12,"expect_within":310.0}"#;
        assert!(matches!(
            from_line::<UnlockReply>(old_ack),
            Some(UnlockReply::Ack(_))
        ));
        let old_refusal = r#"{"code":75,"message":"still taking the lock"}"#;
        assert_eq!(
            from_line::<UnlockReply>(old_refusal),
            Some(UnlockReply::Outcome(Outcome::refusal(
                75,
                "still taking the lock"
            )))
        );
        let old_result = r#"{"ok":false,"code":65,"message":"lost","finished_at":"x","consistent":false,"lock_held_ms":null}"#;
        assert_eq!(from_line::<Outcome>(old_result).unwrap().code, 65);
    }

    #[test]
    fn status_shows_only_the_fields_that_apply() {
        let s = Status {
            running: false,
            result_waiting: Some(true),
            ..Status::default()
        };
        assert_eq!(to_line(&s), r#"{"running":false,"result_waiting":true}"#);
        let holding = Status {
            running: true,
            phase: Some(PhaseName::Holding),
            ..Status::default()
        };
        assert_eq!(to_line(&holding), r#"{"running":true,"phase":"holding"}"#);
    }

    #[test]
    fn a_hand_over_reads_back_and_the_phase_has_its_name() {
        let h = HandOver {
            held: false,
            code: 124,
            why: Some("deadline".into()),
        };
        assert_eq!(from_line::<HandOver>(&to_line(&h)), Some(h));
        assert_eq!(to_line(&PhaseName::HandingOut), r#""handing-out""#);
    }

    #[test]
    fn requests_are_one_word_lines() {
        for r in [Request::Status, Request::Unlock] {
            let line = String::from_utf8(r.line().to_vec()).unwrap();
            assert_eq!(Request::parse(&line), Some(r));
        }
        assert_eq!(Request::parse("release"), None);
    }
}
