//! The state directory (default /run/mysql-quiesce for root, a per-user
//! directory otherwise: `default_dir`): the run lock (`run.lock`), the
//! notes of a replica SQL thread a run stopped, and the state of
//! `lock`/`unlock`/`status`.
//!
//! Whether a holder lives is decided by an flock on `holder.lock`, never by a
//! pid: the `lock` command takes it before it touches anything, hands the same
//! open file to the holder, and the holder keeps it for its whole life. The
//! kernel drops it when the holder dies, so a free flock with an owner line
//! left in the file means the holder died without releasing through `unlock`;
//! a reused pid cannot fool us, and a leftover socket is removed by whoever
//! holds the flock. The file is never removed (removing a locked file lets a
//! second process lock a new one).
//!
//! The directory must be a real directory owned by us with no group/other
//! access: it holds the socket that releases the lock. Files in it are opened
//! with O_NOFOLLOW and created with mode 0600.

use crate::exit;
use anyhow::Context;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct State {
    pub dir: PathBuf,
}

/// Where state lives when --state-dir is not given: /run/mysql-quiesce for
/// root (a directory only root can create). Another user (say the mysql user
/// running `--lock=none` or split mode) gets a directory of its own:
/// $XDG_RUNTIME_DIR/mysql-quiesce, else /tmp/mysql-quiesce-UID (its owner
/// and mode are checked like any state directory, so one planted by someone
/// else is refused, never used).
pub fn default_dir() -> PathBuf {
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        return PathBuf::from(ROOT_DIR);
    }
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        let ours = std::fs::symlink_metadata(&runtime)
            .is_ok_and(|m| m.is_dir() && m.uid() == euid.as_raw() && m.mode() & 0o077 == 0);
        if ours {
            return runtime.join("mysql-quiesce");
        }
    }
    PathBuf::from(format!("/tmp/mysql-quiesce-{}", euid.as_raw()))
}

/// Root's state directory.
pub const ROOT_DIR: &str = "/run/mysql-quiesce";

/// The files in the state directory and what each is: the code's paths
/// below use these names, and the man page's FILES section lists them.
pub const FILES: &[(&str, &str)] = &[
    (RUN_LOCK, "the run lock: keeps two runs on one machine from overlapping, the second exits 75 (--lock-file puts it elsewhere)"),
    (REPLICA_NOTE, "while a replica SQL thread a run stopped (--stop-replica-sql) is stopped: the next run and --check warn if that run died"),
    (HOLDER_LOCK, "the holder's flock, held for its whole life, with its pid and start time"),
    (HOLDER_SOCKET, "the holder's control socket (0600), served in every phase"),
    (HOLDER_LOG, "the holder's progress and errors"),
    (LAST_RESULT, "the outcome of a holder that released by itself, kept for unlock"),
];
const RUN_LOCK: &str = "run.lock";
const REPLICA_NOTE: &str = "replica-sql-stopped.json";
const HOLDER_LOCK: &str = "holder.lock";
const HOLDER_SOCKET: &str = "holder.sock";
const HOLDER_LOG: &str = "holder.log";
const LAST_RESULT: &str = "last-result.json";

/// Who holds (or held) the flock, from the file's contents.
#[derive(Debug, Clone)]
pub struct Owner {
    pub pid: i32,
    pub since: String,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.since.is_empty() {
            write!(f, "pid {}", self.pid)
        } else {
            write!(f, "pid {}, since {}", self.pid, self.since)
        }
    }
}

/// The flock's state.
pub enum Probe {
    /// No state directory or no lock file: no holder ever ran here.
    Absent,
    /// Nobody held it; we do now, until the last descriptor of `file` closes
    /// (it is never unlocked explicitly: `lock` shares it with the holder).
    /// `owner` is what a holder that died left behind.
    Free { file: File, owner: Option<Owner> },
    /// A holder (or a `lock` starting one) holds it.
    Busy { owner: Option<Owner> },
}

fn nofollow(opts: &mut OpenOptions) -> &mut OpenOptions {
    opts.custom_flags(libc::O_NOFOLLOW).mode(0o600)
}

impl State {
    pub fn new(dir: &Path) -> State {
        State {
            dir: dir.to_path_buf(),
        }
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("holder.sock")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join("holder.lock")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("holder.log")
    }
    pub fn last_result(&self) -> PathBuf {
        self.dir.join("last-result.json")
    }
    /// The default run lock (see `runlock`).
    pub fn run_lock(&self) -> PathBuf {
        self.dir.join("run.lock")
    }
    /// The note a run leaves while a replica SQL thread it stopped is stopped.
    pub fn replica_note(&self, instance: &str) -> PathBuf {
        if instance.is_empty() {
            self.dir.join("replica-sql-stopped.json")
        } else {
            self.dir
                .join(format!("replica-sql-stopped.{instance}.json"))
        }
    }

    /// Check the directory (and create it if `create`). False when it does
    /// not exist and `create` is not set: then no holder ever ran here.
    pub fn check(&self, create: bool) -> anyhow::Result<bool> {
        let dir = self.dir.display();
        let meta = match std::fs::symlink_metadata(&self.dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !create {
                    return Ok(false);
                }
                return self.create().map(|()| true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(exit::fail(
                    exit::NOPERM,
                    format!("cannot examine the state directory {dir}: {e}; run as the user that runs `mysql-quiesce lock` (root)"),
                ))
            }
            Err(e) => {
                return Err(exit::fail(
                    exit::CONFIG,
                    format!("cannot examine the state directory {dir}: {e}"),
                ))
            }
        };
        let euid = nix::unistd::geteuid().as_raw();
        if meta.file_type().is_symlink() {
            return Err(exit::fail(
                exit::CONFIG,
                format!("the state directory {dir} is a symbolic link; refusing to use it (it holds the socket that releases the lock): remove it or choose another --state-dir"),
            ));
        }
        if !meta.is_dir() {
            return Err(exit::fail(
                exit::CONFIG,
                format!("the state directory {dir} is not a directory; remove it or choose another --state-dir"),
            ));
        }
        if meta.uid() != euid {
            return Err(exit::fail(
                exit::NOPERM,
                format!(
                    "the state directory {dir} belongs to uid {}, not to us (uid {euid}): someone else created it (in a \
                     shared directory such as /tmp, possibly to stop our runs). Run as the user it belongs to, or \
                     give a directory of our own with --state-dir (or set XDG_RUNTIME_DIR)",
                    meta.uid()
                ),
            ));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(exit::fail(
                exit::CONFIG,
                format!(
                    "the state directory {dir} is accessible to group or others (mode {mode:04o}); it holds the socket that \
                     releases the lock, so it must be 0700: run `chmod 700 {dir}`, or remove it and let mysql-quiesce create it"
                ),
            ));
        }
        Ok(true)
    }

    /// Create the directory 0700 (its parents with default permissions).
    fn create(&self) -> anyhow::Result<()> {
        let dir = self.dir.display();
        if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                exit::fail(
                    exit::CONFIG,
                    format!("cannot create {}: {e}; see --state-dir", parent.display()),
                )
            })?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {
                // Ours: make sure of 0700 whatever the umask or a default ACL did.
                std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("setting the mode of {dir}"))?;
            }
            // Someone created it at the same time: it is checked like any existing one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                let code = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    exit::NOPERM
                } else {
                    exit::CONFIG
                };
                return Err(exit::fail(
                    code,
                    format!("cannot create the state directory {dir}: {e}; run as root or choose another --state-dir"),
                ));
            }
        }
        self.check(false).map(|_| ())
    }

    fn open_lock_file(&self, create: bool) -> anyhow::Result<Option<File>> {
        let path = self.lock_path();
        match nofollow(OpenOptions::new().read(true).write(true).create(create)).open(&path) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => Ok(None),
            Err(e) => Err(io_error(&path, "open", e)),
        }
    }

    /// Test the flock without waiting. `create` makes the lock file (for `lock`).
    pub fn probe(&self, create: bool) -> anyhow::Result<Probe> {
        if !self.check(create)? {
            return Ok(Probe::Absent);
        }
        let Some(file) = self.open_lock_file(create)? else {
            return Ok(Probe::Absent);
        };
        match try_flock(&file) {
            Ok(()) => {
                let owner = read_owner(&file);
                Ok(Probe::Free { file, owner })
            }
            Err(nix::errno::Errno::EWOULDBLOCK) => Ok(Probe::Busy {
                owner: read_owner(&file),
            }),
            Err(e) => Err(exit::fail(
                exit::SOFTWARE,
                format!("cannot lock {}: {e}", self.lock_path().display()),
            )),
        }
    }

    /// For `lock`: the flock, or exit 75 naming whoever holds it. Probes by
    /// `status`/`unlock` hold it for a moment, so a busy flock is tried a few
    /// times before giving up; a `lock` that has just started its holder has
    /// not written the holder's pid yet, so we wait briefly for it.
    pub fn acquire(&self) -> anyhow::Result<(File, Option<Owner>)> {
        let start = Instant::now();
        loop {
            match self.probe(true)? {
                Probe::Free { file, owner } => return Ok((file, owner)),
                Probe::Busy { owner } => {
                    let waited = start.elapsed();
                    if waited > Duration::from_secs(2)
                        || (owner.is_some() && waited > Duration::from_millis(200))
                    {
                        let who = owner.map(|o| format!("a holder ({o})")).unwrap_or_else(|| {
                            "another `mysql-quiesce lock`, which is starting a holder,".to_string()
                        });
                        return Err(exit::fail(
                            exit::TEMPFAIL,
                            format!(
                                "{who} already holds the lock ({} is locked); only one holder at a time. Nothing was done: \
                                 run `mysql-quiesce unlock` first, or retry when it has finished",
                                self.lock_path().display()
                            ),
                        ));
                    }
                    // A flock has no descriptor that says when it is
                    // released; these probes hold it for moments only.
                    std::thread::sleep(Duration::from_millis(20));
                }
                Probe::Absent => unreachable!("probe(create = true) creates the lock file"),
            }
        }
    }

    /// Remove a socket nobody serves (only while holding the flock).
    pub fn remove_socket(&self) -> bool {
        std::fs::remove_file(self.socket()).is_ok()
    }

    /// The result a holder left for a later `unlock`, if any.
    pub fn read_result<T: for<'de> serde::Deserialize<'de>>(&self) -> anyhow::Result<Option<T>> {
        let path = self.last_result();
        let mut text = String::new();
        match nofollow(OpenOptions::new().read(true)).open(&path) {
            Ok(mut f) => f
                .read_to_string(&mut text)
                .map_err(|e| io_error(&path, "read", e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path, "open", e)),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            exit::fail(
                exit::SOFTWARE,
                format!("{} is not a result: {e}", path.display()),
            )
        })
    }

    /// Written atomically (temp file, rename), mode 0600, never through a symlink.
    pub fn write_result(&self, v: &impl serde::Serialize) -> std::io::Result<()> {
        let text = serde_json::to_string(v).map_err(std::io::Error::other)?;
        crate::atomic_write::write_atomic_mode(
            &self.last_result(),
            format!("{text}\n").as_bytes(),
            0o600,
        )
    }

    /// Move an unreadable result aside (only while holding the flock), so that
    /// it no longer blocks `lock`; where it went.
    pub fn set_result_aside(&self) -> std::io::Result<PathBuf> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let aside = self
            .dir
            .join(format!("last-result.json.unreadable-{stamp}"));
        std::fs::rename(self.last_result(), &aside)?;
        Ok(aside)
    }

    pub fn remove_result(&self) -> bool {
        std::fs::remove_file(self.last_result()).is_ok()
    }

    /// The holder's log, truncated: only while holding the flock, so never a live holder's.
    pub fn create_log(&self) -> anyhow::Result<File> {
        let path = self.log();
        nofollow(OpenOptions::new().write(true).create(true).truncate(true))
            .open(&path)
            .map_err(|e| io_error(&path, "create", e))
    }
}

/// flock(LOCK_EX | LOCK_NB). On a descriptor of an open file that already
/// holds it (the holder's inherited one) this succeeds.
pub fn try_flock(file: &File) -> Result<(), nix::errno::Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> anyhow::Error {
    let code = if e.kind() == std::io::ErrorKind::PermissionDenied {
        exit::NOPERM
    } else if e.raw_os_error() == Some(libc::ELOOP) {
        return exit::fail(
            exit::CONFIG,
            format!(
                "{} is a symbolic link; refusing to follow it: remove it",
                path.display()
            ),
        );
    } else {
        exit::CONFIG
    };
    exit::fail(code, format!("cannot {what} {}: {e}", path.display()))
}

/// "PID SINCE" from the lock file; None when empty (no holder, or a clean exit).
pub fn read_owner(file: &File) -> Option<Owner> {
    let mut buf = [0u8; 128];
    let n = file.read_at(&mut buf, 0).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    let mut words = text.split_whitespace();
    let pid: i32 = words.next()?.parse().ok()?;
    Some(Owner {
        pid,
        since: words.next().unwrap_or("").to_string(),
    })
}

pub fn write_owner(file: &File, pid: u32, since: &str) -> std::io::Result<()> {
    file.set_len(0)?;
    file.write_all_at(format!("{pid} {since}\n").as_bytes(), 0)
}

/// Only by whoever holds the flock: the holder at its clean exit, or the one
/// cleaning up after a dead holder.
pub fn clear_owner(file: &File) {
    let _ = file.set_len(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_flock_with_an_owner_line_is_a_dead_holder_and_a_held_one_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::new(&dir.path().join("state"));
        let (guard, owner) = state.acquire().unwrap();
        assert!(owner.is_none());
        assert_eq!(std::fs::metadata(&state.dir).unwrap().mode() & 0o777, 0o700);
        write_owner(&guard, 4242, "2026-01-01T00:00:00Z").unwrap();
        match state.probe(false).unwrap() {
            Probe::Busy { owner: Some(o) } => assert_eq!(o.pid, 4242),
            _ => panic!("held flock must probe busy"),
        }
        let err = state.acquire().unwrap_err();
        assert_eq!(exit::code_of(&err), exit::TEMPFAIL);
        assert!(err.to_string().contains("pid 4242"), "{err}");
        drop(guard);
        match state.probe(false).unwrap() {
            Probe::Free { owner: Some(o), .. } => assert_eq!(o.pid, 4242),
            _ => panic!("released flock must probe free, with the dead owner"),
        }
    }

    #[test]
    fn an_unsafe_state_directory_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = State::new(&open).check(true).unwrap_err();
        assert_eq!(exit::code_of(&err), exit::CONFIG);
        assert!(err.to_string().contains("chmod 700"), "{err}");

        let link = dir.path().join("link");
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = State::new(&link).check(true).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");

        assert!(!State::new(&dir.path().join("absent")).check(false).unwrap());
    }

    #[test]
    fn a_symlinked_lock_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::new(&dir.path().join("state"));
        state.check(true).unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        std::os::unix::fs::symlink(&target, state.lock_path()).unwrap();
        let err = state.acquire().unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }
}
