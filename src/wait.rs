//! Waiting on events instead of sleeping and checking: every wait blocks in
//! poll(2) on the descriptors it cares about (a child's pidfd, a pipe, a
//! socket) plus the signal self-pipe, with the nearest deadline as its
//! timeout. Lock time is writer stall time, so a wait must end the moment its
//! event happens, not at the next tick of a polling loop.

use crate::signals;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Why `until` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// `fds[i]` is readable (or at end of file / hung up).
    Ready(usize),
    /// A termination signal arrived (the self-pipe is drained; `signals::count`
    /// says whether it is a new one).
    Signal,
    /// The deadline passed.
    Timeout,
}

/// The poll timeout that ends at `deadline` (rounded up to whole
/// milliseconds, so we never wake just before it); None waits forever.
fn timeout_until(deadline: Option<Instant>) -> PollTimeout {
    match deadline {
        None => PollTimeout::NONE,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        }
    }
}

/// Block until one of `fds` is readable, a termination signal arrives (when
/// `on_signal`), or `deadline` passes.
pub fn until(fds: &[BorrowedFd<'_>], on_signal: bool, deadline: Option<Instant>) -> Woke {
    let signal_fd = if on_signal { signals::wake_fd() } else { None };
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Woke::Timeout;
        }
        let mut polled: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        if let Some(s) = signal_fd {
            polled.push(PollFd::new(s, PollFlags::POLLIN));
        }
        match nix::poll::poll(&mut polled, timeout_until(deadline)) {
            Ok(0) => {
                if deadline.is_some() {
                    // Rounded up: now at or past the deadline (checked at the top).
                    continue;
                }
            }
            Ok(_) => {
                let ready = |p: &PollFd<'_>| p.revents().is_some_and(|r| !r.is_empty());
                if let Some(i) = polled[..fds.len()].iter().position(ready) {
                    return Woke::Ready(i);
                }
                if signal_fd.is_some() && polled.last().is_some_and(ready) {
                    signals::drain();
                    return Woke::Signal;
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            // poll(2) fails only for bad arguments or no memory: do not spin.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// A descriptor that becomes readable when process `pid` exits (pidfd_open,
/// Linux >= 5.3). None on older kernels: callers fall back to `POLL_FALLBACK`.
pub fn pidfd(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let _ = nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Some(owned)
}

/// Wait until process `pid` (any process, not only a child of ours) has
/// exited, or `deadline`. None when that cannot be watched (no such process
/// now, or no pidfd_open): the caller checks another way.
pub fn process_exit(pid: u32, deadline: Instant) -> Option<bool> {
    let fd = pidfd(pid)?;
    Some(until(&[fd.as_fd()], false, Some(deadline)) == Woke::Ready(0))
}

/// Kernels without pidfd_open (before 5.3, e.g. RHEL 8): how often a child is
/// checked. The only polling left, and only there.
const POLL_FALLBACK: Duration = Duration::from_millis(5);

/// How waiting for a child ended.
#[derive(Debug)]
pub enum ChildWait {
    Exited(ExitStatus),
    /// A termination signal arrived first (see `signals::count`).
    Signal,
    Timeout,
}

/// A child we spawned, with the descriptor that tells when it exits.
pub struct Watched {
    pub child: Child,
    pidfd: Option<OwnedFd>,
}

impl Watched {
    pub fn new(child: Child) -> Watched {
        let pidfd = pidfd(child.id());
        Watched { child, pidfd }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Wait for the child to exit, a termination signal (when `on_signal`),
    /// or `deadline`.
    pub fn wait(
        &mut self,
        on_signal: bool,
        deadline: Option<Instant>,
    ) -> std::io::Result<ChildWait> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(ChildWait::Exited(status));
            }
            let woke = match &self.pidfd {
                Some(fd) => until(&[fd.as_fd()], on_signal, deadline),
                None => {
                    let step = Instant::now() + POLL_FALLBACK;
                    match until(&[], on_signal, Some(deadline.map_or(step, |d| d.min(step)))) {
                        Woke::Timeout if deadline.is_none_or(|d| Instant::now() < d) => continue,
                        other => other,
                    }
                }
            };
            match woke {
                Woke::Ready(_) => continue,
                Woke::Signal => return Ok(ChildWait::Signal),
                Woke::Timeout => {
                    return Ok(match self.child.try_wait()? {
                        Some(status) => ChildWait::Exited(status),
                        None => ChildWait::Timeout,
                    })
                }
            }
        }
    }
}

impl AsRawFd for Watched {
    fn as_raw_fd(&self) -> i32 {
        self.pidfd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_child_is_seen_to_exit_at_once_not_at_a_polling_tick() {
        let child = Command::new("true").spawn().unwrap();
        let mut w = Watched::new(child);
        let t = Instant::now();
        match w
            .wait(false, Some(Instant::now() + Duration::from_secs(5)))
            .unwrap()
        {
            ChildWait::Exited(s) => assert!(s.success()),
            other => panic!("{other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_deadline_ends_the_wait_and_leaves_the_child_running() {
        let child = Command::new("sleep").arg("5").spawn().unwrap();
        let mut w = Watched::new(child);
        let r = w
            .wait(false, Some(Instant::now() + Duration::from_millis(50)))
            .unwrap();
        assert!(matches!(r, ChildWait::Timeout), "{r:?}");
        assert!(w.child.try_wait().unwrap().is_none());
        w.child.kill().unwrap();
        w.child.wait().unwrap();
    }

    #[test]
    fn until_returns_the_readable_descriptor() {
        let (r, w) = nix::unistd::pipe().unwrap();
        nix::unistd::write(&w, b"x").unwrap();
        assert_eq!(until(&[r.as_fd()], false, None), Woke::Ready(0));
        let (r2, _w2) = nix::unistd::pipe().unwrap();
        let t = Instant::now() + Duration::from_millis(20);
        assert_eq!(until(&[r2.as_fd()], false, Some(t)), Woke::Timeout);
        assert!(Instant::now() >= t);
    }
}
