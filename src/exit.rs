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
    fn code_survives_context_layers() {
        let err = Err::<(), _>(fail(CONFIG, "bad value"))
            .context("reading /etc/my.cnf")
            .unwrap_err();
        assert_eq!(code_of(&err), CONFIG);
        assert_eq!(code_of(&anyhow::anyhow!("plain")), SOFTWARE);
    }
}
