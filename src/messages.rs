//! Progress and diagnostics, all on stderr: stdout belongs to the snapshot
//! hooks and COMMAND.
//!
//! A line is never worth a stall: while the lock is held, a blocked write
//! (a hung terminal, a log pipe nobody reads, output stopped with Ctrl-S)
//! would keep every writer waiting. So each line waits at most a short
//! moment for stderr to take it and is dropped otherwise; once one line
//! was dropped, the next ones do not wait at all until stderr takes one
//! again. How many were dropped is said when stderr works again.

use std::fmt::Display;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How long one line may wait for stderr to become writable.
const LINE_WAIT_MS: u16 = 100;
/// Lines dropped since the last one that was written.
static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// Write `text` (whole lines) to stderr without ever blocking for long.
/// Returns false when it was dropped.
fn write_stderr(text: &str) -> bool {
    let stderr = std::io::stderr();
    let wait = if DROPPED.load(Ordering::Relaxed) > 0 {
        0u16
    } else {
        LINE_WAIT_MS
    };
    let mut fds = [nix::poll::PollFd::new(
        stderr.as_fd(),
        nix::poll::PollFlags::POLLOUT,
    )];
    let writable = matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(wait)), Ok(n) if n > 0)
        && fds[0].revents().is_some_and(|r| {
            r.contains(nix::poll::PollFlags::POLLOUT) && !r.contains(nix::poll::PollFlags::POLLERR)
        });
    if !writable {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
    let mut lock = stderr.lock();
    if dropped > 0 {
        let _ = writeln!(
            lock,
            "mysql-quiesce: warning: {dropped} progress line(s) dropped: stderr did not take them in time"
        );
    }
    lock.write_all(text.as_bytes()).is_ok()
}

/// A line on stderr from a path that must not block or fail (emergency thaw).
pub fn emergency(msg: &str) {
    write_stderr(&format!("mysql-quiesce: {msg}\n"));
}

/// Progress and diagnostics.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub quiet: bool,
    pub verbose: u8,
}

impl Progress {
    fn line(&self, text: std::fmt::Arguments<'_>) {
        write_stderr(&format!("mysql-quiesce: {text}\n"));
    }

    /// A progress line (suppressed by -q).
    pub fn info(&self, msg: impl Display) {
        if !self.quiet {
            self.line(format_args!("{msg}"));
        }
    }

    /// A statement sent to the server (shown with -v).
    pub fn sql(&self, stmt: &str) {
        if self.verbose >= 1 && !self.quiet {
            self.line(format_args!("SQL> {stmt}"));
        }
    }

    /// Detail shown with -v.
    pub fn detail(&self, msg: impl Display) {
        if self.verbose >= 1 && !self.quiet {
            self.line(format_args!("{msg}"));
        }
    }

    /// Always shown.
    pub fn warn(&self, msg: impl Display) {
        self.line(format_args!("warning: {msg}"));
    }

    /// Always shown.
    pub fn error(&self, msg: impl Display) {
        self.line(format_args!("error: {msg}"));
    }
}

/// Text for stdout (status, --dry-run, --print-defaults). A reader that has
/// gone away (`| head`) is not an error worth a panic.
pub fn stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// `println!` to stdout through `stdout`.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::messages::stdout(&format!("{}\n", format_args!($($arg)*)))
    };
}
