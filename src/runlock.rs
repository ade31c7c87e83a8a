//! One run at a time per machine: an flock on a lock file that also records
//! the holder's pid, so that a second run can say who holds it. The kernel
//! drops an flock when its holder dies, so a crashed run leaves nothing stale.
//!
//! The default lock file is `run.lock` in the state directory, which only its
//! owner can enter (root's is /run/mysql-quiesce): a lock file in a directory
//! anyone can write to (/run/lock, /tmp) lets any local user flock it first
//! and stop every run, or plant a symbolic link for root to write through.
//! Whatever the path, the file is opened without following a symbolic link,
//! must be a regular file of ours that nobody else can write, and is written
//! only once its flock is held.

use crate::exit;
use crate::state::State;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Held for the life of the run; dropping it releases the flock.
#[derive(Debug)]
pub struct RunLock {
    _lock: Flock<File>,
}

/// Take the run lock: `explicit` (--lock-file) or `run.lock` in the state
/// directory (created if missing). Exit 75 naming the holder's pid when
/// another run holds it; 78/77 when the file is not safe to use.
pub fn acquire(explicit: Option<&Path>, state: &State) -> anyhow::Result<RunLock> {
    let path = match explicit {
        Some(p) => {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::create_dir_all(dir);
            }
            p.to_path_buf()
        }
        None => {
            state.check(true)?;
            state.run_lock()
        }
    };
    let shown = path.display();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| {
            let why = if e.raw_os_error() == Some(libc::ELOOP) {
                "it is a symbolic link, which mysql-quiesce never follows".to_string()
            } else {
                e.to_string()
            };
            exit::fail(
                exit::CONFIG,
                format!("cannot open the run lock file {shown}: {why}; remove it, or choose another with --lock-file"),
            )
        })?;
    check_ours(&file, &path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => {
            // Ours now: only from here on is the file written.
            record_pid(&lock);
            Ok(RunLock { _lock: lock })
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let who = if pid.is_empty() || pid.parse::<u32>().is_err() {
                "another mysql-quiesce run".to_string()
            } else {
                format!("another mysql-quiesce run (pid {pid})")
            };
            Err(exit::fail(
                exit::TEMPFAIL,
                format!(
                    "{who} holds {shown}; only one run at a time may lock and freeze on this machine. Nothing was done; retry when it has finished"
                ),
            ))
        }
        Err((_, e)) => Err(exit::fail(
            exit::CONFIG,
            format!("cannot lock {shown}: {e}"),
        )),
    }
}

/// The holder's pid, written over the old one in place: always `PID_RECORD`
/// bytes, so the file never shrinks. Truncating it instead costs up to
/// milliseconds on ext4 (blocks freed through the journal) at every run.
fn record_pid(file: &File) {
    use std::os::unix::fs::FileExt;
    let record = format!("{:<width$}\n", std::process::id(), width = PID_RECORD - 1);
    let _ = file.write_all_at(record.as_bytes(), 0);
    // Only a file left longer by someone else needs the slow path.
    if file.metadata().is_ok_and(|m| m.len() > PID_RECORD as u64) {
        let _ = file.set_len(PID_RECORD as u64);
    }
}

/// Bytes of the pid record: a pid (at most 7 digits on Linux), spaces, newline.
const PID_RECORD: usize = 12;

/// The lock file must be a regular file owned by us that group and others
/// cannot write: anyone else who can open it for writing can hold its flock.
fn check_ours(file: &File, path: &Path) -> anyhow::Result<()> {
    let meta = file.metadata().map_err(|e| {
        exit::fail(
            exit::CONFIG,
            format!("cannot examine {}: {e}", path.display()),
        )
    })?;
    let euid = nix::unistd::geteuid().as_raw();
    let problem = if !meta.file_type().is_file() {
        Some("is not a regular file".to_string())
    } else if meta.uid() != euid {
        Some(format!(
            "belongs to uid {}, not to us (uid {euid})",
            meta.uid()
        ))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!(
            "is writable by group or others (mode {:04o})",
            meta.mode() & 0o7777
        ))
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(why) => Err(exit::fail(
            exit::CONFIG,
            format!(
                "the run lock file {} {why}: another user could hold its lock and stop every run; refusing to use it. \
                 Remove it, or leave --lock-file unset (the default lives in the state directory, which only its \
                 owner can enter)",
                path.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_second_holder_is_refused_with_75_naming_the_first_and_the_lock_frees_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::new(&dir.path().join("state"));
        let first = acquire(None, &state).unwrap();
        let err = acquire(None, &state).unwrap_err();
        assert_eq!(exit::code_of(&err), exit::TEMPFAIL);
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(acquire(None, &state).is_ok());
        let meta = std::fs::metadata(state.run_lock()).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
    }

    #[test]
    fn the_holders_pid_replaces_any_older_record_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.lock");
        for old in ["4194303\n", "1\n", "a record much longer than a pid\n"] {
            std::fs::write(&path, old).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let lock = acquire(Some(&path), &State::new(dir.path())).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                text.trim(),
                std::process::id().to_string(),
                "{old:?} -> {text:?}"
            );
            assert_eq!(text.len(), PID_RECORD, "{text:?}");
            drop(lock);
        }
    }

    #[test]
    fn a_planted_symlink_is_never_followed_and_its_target_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me").unwrap();
        let link = dir.path().join("run.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let state = State::new(&dir.path().join("state"));
        let err = acquire(Some(&link), &state).unwrap_err();
        assert_eq!(exit::code_of(&err), exit::CONFIG);
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    }

    #[test]
    fn a_lock_file_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.lock");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = acquire(Some(&path), &State::new(dir.path())).unwrap_err();
        assert_eq!(exit::code_of(&err), exit::CONFIG);
        assert!(
            err.to_string().contains("writable by group or others"),
            "{err}"
        );
    }
}
