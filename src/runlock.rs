//! One run at a time per machine: an flock on a lock file that also records
//! the holder's pid, so that a second run can say who holds it. The kernel
//! drops an flock when its holder dies, so a crashed run leaves nothing stale.

use crate::exit;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// Held for the life of the run; dropping it releases the flock.
#[derive(Debug)]
pub struct RunLock {
    _lock: Flock<File>,
}

/// Take the run lock, or fail with exit 75 naming the holder's pid.
pub fn acquire(path: &Path) -> anyhow::Result<RunLock> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| {
            exit::fail(
                exit::CONFIG,
                format!(
                    "cannot open the run lock file {}: {e}; choose another with --lock-file",
                    path.display()
                ),
            )
        })?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            let _ = lock.set_len(0);
            let _ = lock.rewind();
            let _ = writeln!(*lock, "{}", std::process::id());
            Ok(RunLock { _lock: lock })
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let who = if pid.is_empty() {
                "another mysql-quiesce run".to_string()
            } else {
                format!("another mysql-quiesce run (pid {pid})")
            };
            Err(exit::fail(
                exit::TEMPFAIL,
                format!(
                    "{who} holds {}; only one run at a time may lock and freeze on this machine. Nothing was done; retry when it has finished",
                    path.display()
                ),
            ))
        }
        Err((_, e)) => Err(exit::fail(
            exit::CONFIG,
            format!("cannot lock {}: {e}", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_75_naming_the_first_and_the_lock_frees_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/run.lock");
        let first = acquire(&path).unwrap();
        let err = acquire(&path).unwrap_err();
        assert_eq!(exit::code_of(&err), exit::TEMPFAIL);
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(acquire(&path).is_ok());
    }
}
