//! SIGINT, SIGTERM, SIGHUP and SIGQUIT: remembered, not acted on in the
//! handler. The handler records the signal and writes a byte to a self-pipe,
//! so that every wait (`wait::until`) wakes at once; the sequence then
//! releases everything in order before exiting with 128+N. The handlers stay
//! installed, so a second signal cannot kill us halfway through a thaw.
//!
//! Job-control stops (SIGTSTP from Ctrl-Z, SIGTTIN/SIGTTOU for a background
//! job touching the terminal) are ignored while the lock is held: a stopped
//! process holding a lock stalls every writer.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::OnceLock;

static FIRST: AtomicI32 = AtomicI32::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// The self-pipe: (read end, write end), both non-blocking and close-on-exec.
static PIPE: OnceLock<Result<(OwnedFd, OwnedFd), String>> = OnceLock::new();

/// Time a process being stopped gets between SIGTERM and SIGKILL (hooks,
/// by the run and by the guardian).
pub const KILL_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

const TERMINATION: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];
const JOB_CONTROL: [i32; 3] = [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];

/// Start listening for the termination signals. Idempotent.
pub fn install() -> anyhow::Result<()> {
    let pipe = PIPE.get_or_init(|| {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .map_err(|e| format!("creating the signal pipe: {e}"))?;
        let raw_w = w.as_raw_fd();
        for sig in TERMINATION {
            // SAFETY: the handler only touches atomics and calls write(2), both
            // async-signal-safe; the pipe's write end lives for the whole process
            // (it is in a static that is never dropped).
            unsafe {
                signal_hook::low_level::register(sig, move || {
                    record(sig);
                    let _ = libc::write(raw_w, b"s".as_ptr().cast(), 1);
                })
            }
            .map_err(|e| format!("installing the handler of signal {sig}: {e}"))?;
        }
        Ok((r, w))
    });
    pipe.as_ref()
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn record(sig: i32) {
    let _ = FIRST.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    COUNT.fetch_add(1, Ordering::SeqCst);
}

/// The read end of the self-pipe: readable once a termination signal has
/// arrived (until `drain`). None before `install`.
pub fn wake_fd() -> Option<BorrowedFd<'static>> {
    match PIPE.get() {
        Some(Ok((r, _))) => {
            // SAFETY: the descriptor lives in a static for the whole process.
            Some(unsafe { BorrowedFd::borrow_raw(r.as_raw_fd()) })
        }
        _ => None,
    }
}

/// Empty the self-pipe, so that a wait does not wake again for a signal it
/// has already seen (`count` tells whether a new one arrived).
pub fn drain() {
    if let Some(fd) = wake_fd() {
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(fd, &mut buf), Ok(n) if n > 0) {}
    }
}

/// The first termination signal received, if any.
pub fn received() -> Option<i32> {
    match FIRST.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// Take the first signal and forget it: for `hold`, where SIGTERM/SIGINT is
/// the ordinary way to ask for the release, not a failure.
pub fn take() -> Option<i32> {
    drain();
    match FIRST.swap(0, Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// How many termination signals have arrived so far. Cleanup hooks (post,
/// after) are interrupted only by a signal that arrives while they run.
pub fn count() -> usize {
    COUNT.load(Ordering::SeqCst)
}

/// Ignore (true) or restore the default action of (false) the job-control
/// stop signals. Hooks get their own dispositions (`reset_in_child`).
pub fn ignore_job_control(ignore: bool) {
    let action = if ignore { libc::SIG_IGN } else { libc::SIG_DFL };
    for sig in JOB_CONTROL {
        // SAFETY: SIG_IGN/SIG_DFL install no handler code.
        unsafe {
            libc::signal(sig, action);
        }
    }
}

/// In a forked hook before exec. A hook runs in a process group of its own,
/// never the terminal's foreground group: a hook touching the terminal
/// (output with `stty tostop`, `stty`, a password prompt on /dev/tty) would
/// be stopped by SIGTTOU/SIGTTIN and hold the lock until its timeout. Ignored,
/// those writes go through and such reads fail (EIO) instead. SIGTSTP gets
/// its default action back (Ctrl-Z reaches only the foreground group).
/// Async-signal-safe.
pub fn reset_in_child() {
    // SAFETY: signal(2) is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTSTP, libc::SIG_DFL);
        libc::signal(libc::SIGTTIN, libc::SIG_IGN);
        libc::signal(libc::SIGTTOU, libc::SIG_IGN);
    }
}

/// For tests: behave as if `sig` had been received.
#[doc(hidden)]
pub fn simulate(sig: i32) {
    record(sig);
    if let Some(Ok((_, w))) = PIPE.get() {
        let _ = nix::unistd::write(w, b"s");
    }
}
