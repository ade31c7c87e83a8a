//! The pipe to the guardian, as everything that tells it something holds
//! it: the run, the freeze, hook stoppers, and a hook's own process between
//! fork and exec (`announce_in_child`).

use super::message::{ToGuardian, HOOK_WORD};
use std::io::Write;
use std::os::fd::RawFd;
use std::process::ChildStdin;
use std::sync::{Arc, Mutex};

/// The writing end of the pipe to the guardian, shared by everything that
/// tells it something (the run, the freeze, hook stoppers). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Link {
    pub(super) pipe: Arc<Mutex<Option<ChildStdin>>>,
    pub(super) raw: RawFd,
}

impl Link {
    /// Send one message. Each line is one write(2) of under PIPE_BUF bytes,
    /// so lines from hooks' own processes (see `announce_in_child`) never
    /// interleave.
    pub fn tell(&self, message: &ToGuardian) {
        let mut guard = self.pipe.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pipe) = guard.as_mut() {
            let line = format!("{message}\n");
            let _ = pipe.write_all(line.as_bytes());
        }
    }

    /// The descriptor a hook's process writes `hook PID` to between fork and
    /// exec. It is close-on-exec: hooks never hold it, so our death is seen.
    pub fn raw_fd(&self) -> RawFd {
        self.raw
    }
}

/// In a forked child before exec: tell the guardian our process group (our
/// pid: hooks lead their own group), as `ToGuardian::Hook` would.
/// Async-signal-safe: no allocation.
pub fn announce_in_child(fd: RawFd) {
    if fd < 0 {
        return;
    }
    // SAFETY: getpid is async-signal-safe.
    let pid = unsafe { libc::getpid() };
    let mut buf = [0u8; 32];
    let prefix = HOOK_WORD;
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 12];
    let mut n = pid.max(0) as u32;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut at = prefix.len();
    for i in (0..len).rev() {
        buf[at] = digits[i];
        at += 1;
    }
    buf[at] = b'\n';
    at += 1;
    // SAFETY: signal(2) and write(2) are async-signal-safe; the buffer is on
    // our stack. A guardian that is gone must not kill the hook with SIGPIPE
    // (std has reset it to the default action by now): ignored for the
    // write, which then fails with EPIPE, and the default restored for exec.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let _ = libc::write(fd, buf.as_ptr().cast(), at);
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
