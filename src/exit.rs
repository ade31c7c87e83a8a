//! Exit statuses (documented in the man page and README) and the error type
//! that carries one through `anyhow` chains.

use std::fmt;

pub const OK: u8 = 0;
/// Command-line usage error.
pub const USAGE: u8 = 64;
/// Consistency not guaranteed: the lock was lost while the snapshot was taken.
pub const INCONSISTENT: u8 = 65;
/// Cannot connect to the server.
pub const UNAVAILABLE: u8 = 69;
/// Internal error (a bug).
pub const SOFTWARE: u8 = 70;
/// Lock not acquired within the retries, or another run holds the run lock: safe to retry.
pub const TEMPFAIL: u8 = 75;
/// Authentication failed or a privilege is missing.
pub const NOPERM: u8 = 77;
/// Configuration error: bad option file or option value.
pub const CONFIG: u8 = 78;
/// A hook or the locked section timed out.
pub const TIMEOUT: u8 = 124;
/// COMMAND is not executable.
pub const NOEXEC: u8 = 126;
/// COMMAND not found.
pub const NOTFOUND: u8 = 127;

/// One exit status and what it means: the table the man page's EXIT STATUS,
/// the README's table and --help's summary are generated from.
pub struct Status {
    pub code: &'static str,
    pub meaning: &'static str,
}

/// Every exit status, in order.
pub const STATUSES: &[Status] = &[
    Status { code: "0", meaning: "success: the snapshot was taken under a lock verified at the end (with `--lock=none`: the run succeeded, no lock was taken)" },
    Status { code: "3", meaning: "`status` only: no holder is running" },
    Status { code: "N", meaning: "the COMMAND's or the first failing hook's own non-zero status" },
    Status { code: "64", meaning: "usage error (also `hold` with a stdin already at its end)" },
    Status { code: "65", meaning: "consistency not guaranteed: the lock session was lost while locked, or a write went through it (the binary log moved); do not trust the snapshot (takes precedence over any other failure). From `verify`: the copy is not what was recorded (its restore point differs from exact recorded coordinates, a table fails CHECK TABLE, or crash recovery reports damage)" },
    Status { code: "69", meaning: "cannot connect; from `unlock`: nothing to unlock (no holder, no waiting result); from `verify`: the server could not start, or not recover within `--timeout`" },
    Status { code: "70", meaning: "internal error, or a filesystem could not be thawed (run `fsfreeze -u MOUNTPOINT`)" },
    Status { code: "75", meaning: "lock not acquired within the retries, long statements still running after --long-query-wait, another run holds the run lock, or (from `lock`) an earlier holder's outcome waits for its `unlock`; nothing changed, safe to retry" },
    Status { code: "77", meaning: "authentication failed or a privilege is missing" },
    Status { code: "78", meaning: "configuration error (option file, option value, unsafe file or directory); from `verify`: not a data directory, a live one, tables whose files live outside it, no server of the data's family and version, or no way to make a writable view" },
    Status { code: "124", meaning: "a hook timed out, or `--max-lock-time` passed (also when the run was stalled past it; from `unlock`: the holder released at `--max-lock-time`)" },
    Status { code: "126 / 127", meaning: "COMMAND not executable / not found (checked before connecting)" },
    Status { code: "128+N", meaning: "terminated by signal N, after releasing everything (141: whoever read `hold`'s or `lock`'s output is gone)" },
];

/// The README's exit-status table (Markdown).
pub fn markdown_table() -> String {
    let mut out = String::from("| status | meaning |\n|---|---|\n");
    for s in STATUSES {
        out.push_str(&format!("| {} | {} |\n", s.code, s.meaning));
    }
    out
}

/// One line per status, for --help.
pub fn summary() -> String {
    let list: Vec<String> = STATUSES
        .iter()
        .map(|s| {
            let short = s.meaning.split([':', ';', '(']).next().unwrap_or("").trim();
            format!("{} {}", s.code, short.replace('`', ""))
        })
        .collect();
    format!("Exit status: {}.", list.join("; "))
}

/// 128 + N: terminated by signal N.
pub fn signal(signo: i32) -> u8 {
    (128 + signo).clamp(0, 255) as u8
}

/// An error that decides the process's exit status.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Build an error that exits with `code`.
pub fn fail(code: u8, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        code,
        message: message.into(),
    })
}

/// The exit status an error asks for: the outermost `Failure` in its chain, else 70.
pub fn code_of(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Failure>())
        .map(|f| f.code)
        .unwrap_or(SOFTWARE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn every_numbered_status_the_code_uses_is_in_the_table() {
        for code in [
            OK,
            USAGE,
            INCONSISTENT,
            UNAVAILABLE,
            SOFTWARE,
            TEMPFAIL,
            NOPERM,
            CONFIG,
            TIMEOUT,
        ] {
            assert!(
                STATUSES.iter().any(|s| s.code == code.to_string()),
                "{code} is not documented"
            );
        }
        assert!(STATUSES.iter().any(
            |s| s.code.contains(&NOEXEC.to_string()) && s.code.contains(&NOTFOUND.to_string())
        ));
    }

    #[test]
    fn code_survives_context_layers() {
        let err = Err::<(), _>(fail(CONFIG, "bad value"))
            .context("reading /etc/my.cnf")
            .unwrap_err();
        assert_eq!(code_of(&err), CONFIG);
        assert_eq!(code_of(&anyhow::anyhow!("plain")), SOFTWARE);
    }
}
