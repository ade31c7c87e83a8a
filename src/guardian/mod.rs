//! The guardian: a separate process that keeps the run's promises when the
//! run itself cannot (SIGKILL, the OOM killer, a stop, a stall).
//!
//! Why a separate process: the kernel never thaws a filesystem by itself, not
//! even when the freezing process dies, and a hook (the snapshot command) goes
//! on running when its parent dies, so it could take a snapshot of an
//! unlocked, unfrozen volume that its tags call consistent. The guardian is
//! our own binary (`__guardian`), in a session of its own, ignoring signals,
//! with oom_score_adj -1000. It learns over a pipe from us:
//!
//! - `open`: open the mount points it was started with (right before the
//!   first freeze, so that it does not pin them for the whole run), answered
//!   `ready`;
//! - `freezing I` / `thawed I` / `failed I`: which filesystems are frozen;
//! - `hook PGID` (written by the hook's own process between fork and exec, so
//!   it arrives before the hook can do anything) / `hook-done PGID`;
//! - `deadline MS`: the locked section ends MS milliseconds from now
//!   (monotonic clock: a wall-clock step cannot bring it forward);
//! - `released`: the lock is released; hooks from here on run unlocked;
//! - `ping` (answered `pong`), and `done` when we exit normally.
//!
//! End of file without `done` means we are gone: it kills every hook process
//! group still running (SIGKILL), then thaws. At the deadline, unless told
//! `released`, it stops the hooks (SIGTERM, SIGKILL after the grace) and
//! thaws, and answers `deadline` so that the run it overtook is never
//! reported as a success.

mod link;
mod message;
mod process;

pub use link::{announce_in_child, Link};
pub use message::{FromGuardian, ToGuardian};
pub use process::main;

use crate::exit;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Time a hook gets between SIGTERM and SIGKILL (the same as the run's).
pub const GRACE: Duration = crate::signals::KILL_GRACE;

/// How long after the deadline the guardian acts if the run has not.
pub const BACKSTOP_DELAY: Duration = Duration::from_millis(250);

/// The process name the guardian shows (`ps`, `top`): not "mysql-quiesce",
/// so that `pkill mysql-quiesce` aimed at a stuck run does not kill it too.
pub const PROCESS_NAME: &str = "mq-guardian";
/// The first argument that makes our binary the guardian (see `Mode::guardian`).
pub const ARGUMENT: &str = "__guardian";

/// The guardian process, seen from the run.
#[derive(Debug)]
pub struct Guardian {
    child: Child,
    link: Link,
    /// What it writes back.
    replies: Receiver<FromGuardian>,
    ready: bool,
    thawed_at_deadline: bool,
}

impl Guardian {
    /// Start it with `targets`, the filesystems the run may freeze, in freeze
    /// order (opened by `ensure_alive`, and checked to be the very
    /// directories the run validated). Returns at once.
    /// `targets`: each mount point with the (device, inode) of its
    /// directory as the run validated it.
    pub fn start(exe: &Path, targets: &[(PathBuf, (u64, u64))]) -> anyhow::Result<Guardian> {
        let mut child = Command::new(exe)
            .arg0(PROCESS_NAME)
            .arg(ARGUMENT)
            .args(
                targets
                    .iter()
                    .map(|(_, (dev, ino))| format!("--dir={dev}:{ino}")),
            )
            .args(targets.iter().map(|(mountpoint, _)| mountpoint))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                exit::fail(
                    exit::SOFTWARE,
                    format!(
                        "cannot start the guardian process {}: {e}; nothing was locked or frozen",
                        exe.display()
                    ),
                )
            })?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, replies) = mpsc::channel();
        std::thread::Builder::new()
            .name("guardian-replies".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    // Anything else cannot come from our own binary; it is not an answer.
                    let Some(reply) = FromGuardian::parse(&line) else {
                        continue;
                    };
                    if tx.send(reply).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| exit::fail(exit::SOFTWARE, format!("starting a thread: {e}")))?;
        let stdin = child.stdin.take().expect("piped");
        let raw = stdin.as_raw_fd();
        Ok(Guardian {
            child,
            link: Link {
                pipe: Arc::new(Mutex::new(Some(stdin))),
                raw,
            },
            replies,
            ready: false,
            thawed_at_deadline: false,
        })
    }

    pub fn link(&self) -> Link {
        self.link.clone()
    }

    /// Whether it has exited (killed by someone): hooks started from now on
    /// are not killed if we die, and nothing may be frozen.
    pub fn is_gone(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn note(&mut self, reply: &FromGuardian) {
        match reply {
            FromGuardian::Deadline => self.thawed_at_deadline = true,
            FromGuardian::Ready => self.ready = true,
            FromGuardian::Unready(_) | FromGuardian::Pong => {}
        }
    }

    /// Before the first freeze: the guardian must be running and answering
    /// (someone may have killed it); otherwise nothing may be frozen.
    pub fn ensure_alive(&mut self) -> anyhow::Result<()> {
        let pid = self.child.id();
        let gone = |why: String| {
            exit::fail(
                exit::SOFTWARE,
                format!("the guardian process (pid {pid}) {why}; refusing to freeze without it"),
            )
        };
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(gone(format!("has exited ({status})")));
        }
        if !self.ready {
            self.link.tell(&ToGuardian::Open);
        }
        self.link.tell(&ToGuardian::Ping);
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(FromGuardian::Pong) => {
                    if self.ready {
                        return Ok(());
                    }
                    return Err(gone("could not open the mount points".into()));
                }
                // What it opened is not what the run checked: refuse, as the
                // freeze itself would.
                Ok(FromGuardian::Unready(why)) => {
                    return Err(exit::fail(
                        exit::CONFIG,
                        format!("{why}; nothing was frozen"),
                    ))
                }
                Ok(reply) => self.note(&reply),
                Err(_) => return Err(gone("does not answer".into())),
            }
        }
    }

    /// Tell it where the locked section ends. It acts a moment after that:
    /// it is the backstop, and a run that can act releases at the deadline
    /// by itself (its own report is the more precise one).
    pub fn set_deadline(&self, left: Duration) {
        self.link.tell(&ToGuardian::Deadline(left + BACKSTOP_DELAY));
    }

    /// Whether it acted at its deadline (thawed, stopped hooks) so far. Past
    /// `deadline`, it is asked (a ping answered after everything it said
    /// before), since its word may still be on its way: a stopped run's
    /// reader thread was stopped too.
    pub fn acted_at_deadline(&mut self, deadline: Instant) -> bool {
        if Instant::now() >= deadline && !self.is_gone() {
            self.link.tell(&ToGuardian::Ping);
            let end = Instant::now() + Duration::from_secs(2);
            while let Ok(reply) = self
                .replies
                .recv_timeout(end.saturating_duration_since(Instant::now()))
            {
                if reply == FromGuardian::Pong {
                    break;
                }
                self.note(&reply);
            }
        }
        while let Ok(reply) = self.replies.try_recv() {
            self.note(&reply);
        }
        self.thawed_at_deadline
    }

    /// Nothing is left frozen and every hook we reaped was reported: tell it
    /// we are done, wait (bounded) for it to exit.
    pub fn finish(self) {
        self.link.tell(&ToGuardian::Done);
        drop(
            self.link
                .pipe
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        let mut watched = crate::wait::Watched::new(self.child);
        match watched.wait(false, Some(Instant::now() + Duration::from_secs(2))) {
            Ok(crate::wait::ChildWait::Exited(_)) => {}
            _ => {
                let _ = watched.child.kill();
                let _ = watched.child.wait();
            }
        }
    }

    /// Something may still be frozen: leave it running with its pipe open. It
    /// thaws when we exit (end of file) or at its deadline.
    pub fn abandon(self) {
        let pipe = self
            .link
            .pipe
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        std::mem::forget(pipe);
        std::mem::forget(self.child);
    }
}
