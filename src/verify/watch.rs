//! A directory watched with inotify: readable whenever a file in it is
//! created or written, so that waiting for a server to come up wakes on its
//! socket appearing and its error log growing, never on a polling tick.

use anyhow::Context;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub struct DirWatch {
    fd: OwnedFd,
}

impl DirWatch {
    pub fn new(dir: &Path) -> anyhow::Result<DirWatch> {
        // SAFETY: inotify_init1 takes flags and returns a new descriptor or -1.
        let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error()).context("inotify_init1");
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let path = CString::new(dir.as_os_str().as_bytes()).context("directory name")?;
        let mask = libc::IN_CREATE | libc::IN_MODIFY | libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE;
        // SAFETY: a valid descriptor and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(raw, path.as_ptr(), mask) };
        if wd < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("watching {}", dir.display()));
        }
        Ok(DirWatch { fd })
    }

    /// Consume the pending events (they only say "look again").
    pub fn drain(&self) {
        let mut buf = [0u8; 4096];
        while matches!(nix::unistd::read(&self.fd, &mut buf), Ok(n) if n > 0) {}
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::{until, Woke};
    use std::time::{Duration, Instant};

    #[test]
    fn a_write_in_the_directory_wakes_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let w = DirWatch::new(dir.path()).unwrap();
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(until(&[w.fd()], false, Some(soon)), Woke::Timeout);
        std::fs::write(dir.path().join("log"), "ready for connections\n").unwrap();
        let later = Instant::now() + Duration::from_secs(5);
        assert_eq!(until(&[w.fd()], false, Some(later)), Woke::Ready(0));
        w.drain();
        assert_eq!(
            until(
                &[w.fd()],
                false,
                Some(Instant::now() + Duration::from_millis(20))
            ),
            Woke::Timeout
        );
    }
}
