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
mod protocol;
mod service;

pub use commands::{lock_command, status_command, unlock_command};
pub use process::HolderWaiter;
pub use protocol::Variables;

use crate::report::Report;
use crate::signals;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::Instant;

/// Environment variable that makes a `lock` process the holder: the number
/// of the pipe fd to report readiness on.
pub const HOLDER_FD: &str = "MYSQL_QUIESCE_HOLDER_FD";
/// The holder's inherited descriptor of the state flock (holder.lock).
pub const HOLDER_LOCK_FD: &str = "MYSQL_QUIESCE_HOLDER_LOCK_FD";
/// A pipe the holder reads the password from (given to `lock` on its command
/// line, by prompt, in a file or the environment).
pub const HOLDER_PASSWORD_FD: &str = "MYSQL_QUIESCE_HOLDER_PASSWORD_FD";

/// In the holder: the password `lock` passed on, if any (it has the command
/// line's precedence: it is what `lock` itself resolved). The variable is
/// removed so that hooks do not see it.
pub fn inherited_password() -> anyhow::Result<Option<String>> {
    let Some(fd) = std::env::var(HOLDER_PASSWORD_FD).ok() else {
        return Ok(None);
    };
    std::env::remove_var(HOLDER_PASSWORD_FD);
    let fd: i32 = fd.parse().map_err(|_| {
        crate::exit::fail(crate::exit::SOFTWARE, format!("bad {HOLDER_PASSWORD_FD}"))
    })?;
    // SAFETY: `lock` created this descriptor for us alone; we own it now.
    let mut pipe = std::fs::File::from(unsafe {
        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
    });
    let mut password = String::new();
    pipe.read_to_string(&mut password).map_err(|e| {
        crate::exit::fail(
            crate::exit::SOFTWARE,
            format!("reading the password from `mysql-quiesce lock`: {e}"),
        )
    })?;
    Ok(Some(password))
}

/// How waiting for the release ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitEnd {
    /// `unlock`, EOF on stdin, or SIGTERM/SIGINT in `hold`.
    Released,
    /// --max-lock-time passed first.
    Deadline,
    /// A termination signal that is not a release request.
    Signal(i32),
    /// Whoever holds the other end is gone (why): release, as a writer to a
    /// closed pipe would die.
    Gone(String),
}

/// Why a lock was not handed over, and the exit status that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotHandedOver {
    pub code: u8,
    pub why: String,
}

impl NotHandedOver {
    /// Whoever was to be told is gone, as a writer to a closed pipe (141).
    pub fn gone(why: impl Into<String>) -> NotHandedOver {
        NotHandedOver {
            code: crate::exit::signal(libc::SIGPIPE),
            why: why.into(),
        }
    }
}

/// What takes the place of the snapshot step in `lock` and `hold`.
pub trait Waiter {
    /// Locked (and frozen): tell whoever waits, with the hook variables.
    /// An error means the lock was not handed over (nobody can be told, or
    /// the deadline passed meanwhile): the caller releases everything at
    /// once, failing with its exit status and reason.
    fn ready(&mut self, env: &Variables, deadline: Instant) -> Result<(), NotHandedOver>;
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

impl StdinWaiter {
    /// Before anything is locked: EOF on stdin is the release request, so a
    /// stdin that is already at its end (/dev/null, a regular file, closed)
    /// would lock and release at once. Refuse it (exit 64). Whatever is
    /// read here is ignored anyway.
    pub fn check_stdin() -> anyhow::Result<()> {
        let stdin = std::io::stdin();
        let refuse = |what: &str| {
            crate::exit::fail(
                crate::exit::USAGE,
                format!(
                    "`hold` releases when its stdin reaches end of file, and stdin {what}: it would lock and \
                     release at once. Give it a stdin that stays open until the release, e.g. a pipe from a \
                     coprocess (see docs/frameworks/hold-coprocess.sh), or use `lock`/`unlock`. Nothing was locked"
                ),
            )
        };
        let meta = match nix::sys::stat::fstat(stdin.as_fd()) {
            Ok(m) => m,
            Err(_) => return Err(refuse("is closed")),
        };
        match meta.st_mode & libc::S_IFMT {
            libc::S_IFREG => return Err(refuse("is a regular file")),
            libc::S_IFDIR => return Err(refuse("is a directory")),
            libc::S_IFCHR => {
                let null = nix::sys::stat::stat("/dev/null").map(|n| n.st_rdev).ok();
                if Some(meta.st_rdev) == null {
                    return Err(refuse("is /dev/null"));
                }
            }
            _ => {}
        }
        let mut fds = [nix::poll::PollFd::new(
            stdin.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0) {
            let mut chunk = [0u8; 512];
            if matches!(nix::unistd::read(stdin.as_fd(), &mut chunk), Ok(0)) {
                return Err(refuse("is already at end of file"));
            }
        }
        Ok(())
    }
}

impl Waiter for StdinWaiter {
    fn ready(&mut self, env: &Variables, _deadline: Instant) -> Result<(), NotHandedOver> {
        let pairs: Vec<String> = env.iter().map(|(k, v)| shell_pair(k, v)).collect();
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY {}", pairs.join(" "))
            .and_then(|()| out.flush())
            .map_err(|e| {
                NotHandedOver::gone(format!(
                    "cannot print the READY line ({e}): whoever started `hold` is gone (its end of our stdout is \
                     closed), so nobody knows the lock is held; released everything at once"
                ))
            })
    }

    fn wait(&mut self, deadline: Instant) -> WaitEnd {
        let stdin = std::io::stdin();
        // A coprocess that exits closes our stdout too: a pipe's write end
        // reports that (POLLERR) without anything being written. Watched,
        // so the lock does not wait for --max-lock-time when it has gone.
        let stdout = std::io::stdout();
        let watch_stdout = nix::sys::stat::fstat(stdout.as_fd())
            .is_ok_and(|m| m.st_mode & libc::S_IFMT == libc::S_IFIFO);
        loop {
            if let Some(sig) = signals::take() {
                return if sig == libc::SIGTERM || sig == libc::SIGINT {
                    WaitEnd::Released
                } else {
                    WaitEnd::Signal(sig)
                };
            }
            let fds = if watch_stdout {
                vec![stdin.as_fd(), stdout.as_fd()]
            } else {
                vec![stdin.as_fd()]
            };
            match crate::wait::until(&fds, true, Some(deadline)) {
                crate::wait::Woke::Timeout => return WaitEnd::Deadline,
                crate::wait::Woke::Signal => continue,
                crate::wait::Woke::Ready(1) => {
                    return WaitEnd::Gone(
                        "whoever read our stdout is gone (its end of the pipe closed): nobody will release the \
                         lock through our stdin; released everything"
                            .into(),
                    )
                }
                crate::wait::Woke::Ready(_) => {}
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
