//! Split lock/unlock and hold modes, for pre/post-script frameworks (AWS DLM,
//! Google Cloud, Azure Backup, Velero) and shell scripts that take the
//! snapshot in separate commands.
//!
//! A lock cannot outlive its connection, so `lock` (commands.rs) starts a
//! detached holder process (our own binary, same arguments, handed a pipe to
//! report readiness on and the state flock) that runs the ordinary sequence
//! with a `Waiter` in place of the snapshot step (process.rs): it locks, reads
//! coordinates, freezes, reports ready, then waits for `unlock` on a
//! root-only unix socket (service.rs) in the state directory (state.rs), or
//! for --max-lock-time. `hold` is the same sequence in the foreground,
//! waiting for EOF on stdin or SIGTERM/SIGINT.
//!
//! Nobody may be left holding a lock nobody knows about: a `lock` command
//! stopped by a signal stops its holder, and a holder whose `lock` command is
//! gone before it could report ready (killed outright) releases at once.

mod commands;
mod process;
mod service;
mod state;

pub use commands::{lock_command, status_command, unlock_command};
pub use process::HolderWaiter;

use crate::report::Report;
use crate::signals;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::Instant;

/// Environment variable that makes a `lock` process the holder: the number
/// of the pipe fd to report readiness on.
pub const HOLDER_FD: &str = "MYSQL_QUIESCE_HOLDER_FD";
/// The holder's inherited descriptor of the state flock (holder.lock).
pub const HOLDER_LOCK_FD: &str = "MYSQL_QUIESCE_HOLDER_LOCK_FD";

/// How waiting for the release ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitEnd {
    /// `unlock`, EOF on stdin, or SIGTERM/SIGINT in `hold`.
    Released,
    /// --max-lock-time passed first.
    Deadline,
    /// A termination signal that is not a release request.
    Signal(i32),
}

/// What takes the place of the snapshot step in `lock` and `hold`.
pub trait Waiter {
    /// Locked (and frozen): tell whoever waits, with the hook variables.
    /// An error means nobody can be told (they are gone): the caller
    /// releases everything at once, with the error as the reason.
    fn ready(&mut self, env: &BTreeMap<String, String>) -> Result<(), String>;
    /// Wait for the release request or the deadline.
    fn wait(&mut self, deadline: Instant) -> WaitEnd;
    /// The run is over: hand its outcome to whoever asks.
    fn finished(&mut self, code: u8, message: Option<&str>, report: &Report);
}

/// Shell-quoted `KEY='value'`.
fn shell_pair(k: &str, v: &str) -> String {
    format!("{k}='{}'", v.replace('\'', r"'\''"))
}

// ------------------------------------------------------------------ hold

/// `hold`: one ready line on stdout, then wait for EOF on stdin or SIGTERM/SIGINT.
pub struct StdinWaiter;

impl Waiter for StdinWaiter {
    fn ready(&mut self, env: &BTreeMap<String, String>) -> Result<(), String> {
        let pairs: Vec<String> = env.iter().map(|(k, v)| shell_pair(k, v)).collect();
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY {}", pairs.join(" "))
            .and_then(|()| out.flush())
            .map_err(|e| {
                format!(
                    "cannot print the READY line ({e}): whoever started `hold` is gone (its end of our stdout is \
                     closed), so nobody knows the lock is held; released everything at once"
                )
            })
    }

    fn wait(&mut self, deadline: Instant) -> WaitEnd {
        let stdin = std::io::stdin();
        loop {
            if let Some(sig) = signals::take() {
                return if sig == libc::SIGTERM || sig == libc::SIGINT {
                    WaitEnd::Released
                } else {
                    WaitEnd::Signal(sig)
                };
            }
            if Instant::now() >= deadline {
                return WaitEnd::Deadline;
            }
            if !readable_soon(&stdin) {
                continue;
            }
            let mut chunk = [0u8; 512];
            match stdin.lock().read(&mut chunk) {
                Ok(0) => return WaitEnd::Released,
                Ok(_) => {} // anything written to us is ignored; EOF is the signal
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return WaitEnd::Released,
            }
        }
    }

    fn finished(&mut self, _code: u8, _message: Option<&str>, _report: &Report) {}
}

/// Whether `fd` has something to read (or is at EOF) within 100 ms; the
/// waiting loops look at signals and deadlines between polls.
pub(crate) fn readable_soon(fd: &impl AsFd) -> bool {
    let mut fds = [nix::poll::PollFd::new(
        fd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)), Ok(n) if n > 0)
}
