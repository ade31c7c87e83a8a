//! The lines the run and the guardian exchange, as types: each side writes
//! and parses them here, so the two cannot disagree on a spelling. One
//! message per line, plain words (a hook's process writes one itself between
//! fork and exec, without allocating: see `link::announce_in_child`).

use std::fmt;
use std::time::Duration;

/// From the run (and hooks' processes) to the guardian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToGuardian {
    /// Open the mount points now (answered `Ready` or `Unready`).
    Open,
    /// Filesystem number I (in the order it was started with) is being frozen.
    Freezing(usize),
    /// Filesystem I is thawed.
    Thawed(usize),
    /// Freezing filesystem I failed: it is not frozen.
    Failed(usize),
    /// A hook runs in this process group (written by the hook's own process).
    Hook(i32),
    /// That hook's process group was reaped.
    HookDone(i32),
    /// The locked section ends this long from now (monotonic).
    Deadline(Duration),
    /// The lock is released: hooks from now on run unlocked.
    Released,
    /// Answered `Pong` after everything said before.
    Ping,
    /// We exit normally; nothing is frozen.
    Done,
}

/// The word `announce_in_child` writes before the pid; `ToGuardian::Hook` on the wire.
pub const HOOK_WORD: &[u8] = b"hook ";

impl fmt::Display for ToGuardian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToGuardian::Open => write!(f, "open"),
            ToGuardian::Freezing(i) => write!(f, "freezing {i}"),
            ToGuardian::Thawed(i) => write!(f, "thawed {i}"),
            ToGuardian::Failed(i) => write!(f, "failed {i}"),
            ToGuardian::Hook(g) => write!(f, "hook {g}"),
            ToGuardian::HookDone(g) => write!(f, "hook-done {g}"),
            ToGuardian::Deadline(d) => write!(f, "deadline {}", d.as_millis().max(1)),
            ToGuardian::Released => write!(f, "released"),
            ToGuardian::Ping => write!(f, "ping"),
            ToGuardian::Done => write!(f, "done"),
        }
    }
}

impl ToGuardian {
    /// One line (without its newline); None for anything else.
    pub fn parse(line: &str) -> Option<ToGuardian> {
        let mut words = line.split_whitespace();
        let verb = words.next()?;
        let number = words.next();
        if words.next().is_some() {
            return None;
        }
        let index = || number?.parse::<usize>().ok();
        let group = || number?.parse::<i32>().ok().filter(|g| *g > 0);
        let message = match verb {
            "open" if number.is_none() => ToGuardian::Open,
            "freezing" => ToGuardian::Freezing(index()?),
            "thawed" => ToGuardian::Thawed(index()?),
            "failed" => ToGuardian::Failed(index()?),
            "hook" => ToGuardian::Hook(group()?),
            "hook-done" => ToGuardian::HookDone(group()?),
            "deadline" => ToGuardian::Deadline(Duration::from_millis(number?.parse().ok()?)),
            "released" if number.is_none() => ToGuardian::Released,
            "ping" if number.is_none() => ToGuardian::Ping,
            "done" if number.is_none() => ToGuardian::Done,
            _ => return None,
        };
        Some(message)
    }
}

/// From the guardian to the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromGuardian {
    /// It opened every mount point, and each is the directory the run checked.
    Ready,
    /// It could not (why).
    Unready(String),
    /// The answer to `Ping`.
    Pong,
    /// It acted at the deadline: stopped the hooks and thawed.
    Deadline,
}

impl fmt::Display for FromGuardian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FromGuardian::Ready => write!(f, "ready"),
            // One line, whatever the reason says.
            FromGuardian::Unready(why) => write!(f, "unready {}", why.replace('\n', " ")),
            FromGuardian::Pong => write!(f, "pong"),
            FromGuardian::Deadline => write!(f, "deadline"),
        }
    }
}

impl FromGuardian {
    pub fn parse(line: &str) -> Option<FromGuardian> {
        let line = line.trim_end();
        Some(match line {
            "ready" => FromGuardian::Ready,
            "pong" => FromGuardian::Pong,
            "deadline" => FromGuardian::Deadline,
            _ => FromGuardian::Unready(line.strip_prefix("unready ")?.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_to_the_guardian_reads_back_as_itself() {
        for m in [
            ToGuardian::Open,
            ToGuardian::Freezing(2),
            ToGuardian::Thawed(0),
            ToGuardian::Failed(1),
            ToGuardian::Hook(4242),
            ToGuardian::HookDone(4242),
            ToGuardian::Deadline(Duration::from_millis(1500)),
            ToGuardian::Released,
            ToGuardian::Ping,
            ToGuardian::Done,
        ] {
            assert_eq!(ToGuardian::parse(&m.to_string()), Some(m.clone()), "{m}");
        }
    }

    #[test]
    fn every_answer_from_the_guardian_reads_back_as_itself() {
        for m in [
            FromGuardian::Ready,
            FromGuardian::Unready("/vol is no longer the filesystem".into()),
            FromGuardian::Pong,
            FromGuardian::Deadline,
        ] {
            assert_eq!(FromGuardian::parse(&m.to_string()), Some(m.clone()), "{m}");
        }
    }

    #[test]
    fn malformed_lines_are_not_messages() {
        for line in [
            "",
            "freezing",
            "freezing x",
            "hook -3",
            "hook 0",
            "open 1",
            "deadline",
            "thawed 1 2",
            "nonsense",
        ] {
            assert_eq!(ToGuardian::parse(line), None, "{line:?}");
        }
        assert_eq!(FromGuardian::parse("unready"), None);
    }

    #[test]
    fn what_a_hook_process_writes_is_the_hook_message() {
        let written = format!("{}77", String::from_utf8_lossy(HOOK_WORD));
        assert_eq!(ToGuardian::parse(&written), Some(ToGuardian::Hook(77)));
    }
}
