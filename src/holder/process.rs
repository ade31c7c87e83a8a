//! The holder process: the waiter that `lock` runs detached. It reports
//! ready on the pipe from its `lock` command, then serves `unlock` and
//! `status` (service.rs) until the release, and records the outcome before it
//! stops answering, so an `unlock` at any moment gets the right answer.

use super::service::{self, Phase, Shared};
use super::{WaitEnd, Waiter, HOLDER_FD, HOLDER_LOCK_FD};
use crate::cli::Cli;
use crate::exit;
use crate::report::{self, Report};
use crate::signals;
use crate::state::{self, State};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The holder's side: serves `status` and `unlock` on the socket.
pub struct HolderWaiter {
    state: State,
    /// The state flock, inherited from `lock` (the same open file): held
    /// until this process exits. Never unlocked explicitly.
    lock_file: File,
    ready_pipe: Option<File>,
    shared: service::Handle,
}

/// Take an inherited descriptor named by `var`, not passed on to our children.
fn inherited(var: &str) -> anyhow::Result<File> {
    let fd: i32 = std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| exit::fail(exit::SOFTWARE, format!("bad or missing {var}")))?;
    std::env::remove_var(var);
    // SAFETY: the `lock` process created this descriptor for us alone.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    // Not for the guardian or hooks: the pipe must break, and the flock
    // drop, when this process dies.
    nix::fcntl::fcntl(
        &file,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )?;
    Ok(file)
}

/// Stop asking for SIGTERM when the `lock` command exits: from here on
/// it may exit (after reporting) and we stay.
fn clear_parent_death_signal() {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0);
    }
}

impl HolderWaiter {
    /// Called in the holder process (MYSQL_QUIESCE_HOLDER_FD set).
    pub fn from_environment(cli: &Cli) -> anyhow::Result<HolderWaiter> {
        let ready_pipe = inherited(HOLDER_FD)?;
        let lock_file = inherited(HOLDER_LOCK_FD)?;
        state::try_flock(&lock_file).map_err(|e| {
            exit::fail(
                exit::SOFTWARE,
                format!("the state flock handed to the holder is not held: {e}"),
            )
        })?;
        let state = State::new(&cli.state_dir());
        let started = SystemTime::now();
        state::write_owner(&lock_file, std::process::id(), &report::rfc3339(started))?;
        // We hold the flock: any socket there is a dead holder's.
        state.remove_socket();
        // Created 0600 from the start (the directory is 0700 anyway).
        // SAFETY: umask only changes this process's file creation mask.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(state.socket());
        unsafe { libc::umask(old) };
        let listener = bound.map_err(|e| {
            exit::fail(
                exit::SOFTWARE,
                format!("cannot listen on {}: {e}", state.socket().display()),
            )
        })?;
        // The longest a release can take: every remaining hook at its timeout
        // plus the kill grace, and a margin for thaw, unlock and the server.
        let hooks = cli.snapshot.len() + cli.post.len() + cli.after.len();
        let expect_within = hooks as f64 * (cli.hook_timeout + 2.0) + 30.0;
        let shared = Arc::new(Mutex::new(Shared {
            phase: Phase::Locking,
            release_requested: false,
            waiting: Vec::new(),
            collected: false,
            in_file: false,
            started,
            max_lock_time: cli.max_lock_time,
            expect_within,
        }));
        service::spawn(listener, shared.clone(), State::new(&cli.state_dir()))?;
        Ok(HolderWaiter {
            state,
            lock_file,
            ready_pipe: Some(ready_pipe),
            shared,
        })
    }

    fn releasing(&self, why: String) {
        let mut sh = service::lock(&self.shared);
        let (env, since) = match &sh.phase {
            Phase::Holding { env, since, .. } => (env.clone(), *since),
            _ => (BTreeMap::new(), SystemTime::now()),
        };
        sh.phase = Phase::Releasing { why, env, since };
    }
}

impl Waiter for HolderWaiter {
    fn ready(&mut self, env: &BTreeMap<String, String>, deadline: Instant) -> Result<(), String> {
        service::lock(&self.shared).phase = Phase::Holding {
            env: env.clone(),
            since: SystemTime::now(),
            deadline: None,
        };
        let Some(mut pipe) = self.ready_pipe.take() else {
            return Ok(());
        };
        // `lock` exits as soon as it has handed the variables out, and we
        // stay: the parent-death signal goes, before the report, or `lock`
        // could read it, hand out and exit before we clear it, and its death
        // would stop us right after it said "locked". Its death is still
        // seen: the report cannot be written, or no "handed out" comes on our
        // stdin (killed while its stdout was blocked, say): release.
        clear_parent_death_signal();
        let msg = serde_json::json!({ "ok": true, "pid": std::process::id(), "env": env });
        writeln!(pipe, "{msg}").map_err(|e| {
            format!(
                "cannot report ready to the `mysql-quiesce lock` that started this holder ({e}): it is gone (killed, \
                 e.g. by a framework timeout), so nobody knows the lock is held; released everything at once"
            )
        })?;
        let stdin = std::io::stdin();
        let mut answer = [0u8; 16];
        let acked = match crate::wait::until(&[stdin.as_fd()], true, Some(deadline)) {
            crate::wait::Woke::Ready(_) => {
                matches!(nix::unistd::read(stdin.as_fd(), &mut answer), Ok(n) if answer[..n].starts_with(b"handed out"))
            }
            _ => false,
        };
        if !acked {
            return Err(
                "the `mysql-quiesce lock` that started this holder did not hand the variables out (it was stopped \
                 or killed first, or --max-lock-time passed), so nobody knows the lock is held; released everything"
                    .into(),
            );
        }
        Ok(())
    }

    fn wait(&mut self, deadline: Instant) -> WaitEnd {
        if let Phase::Holding { deadline: d, .. } = &mut service::lock(&self.shared).phase {
            *d = Some(deadline);
        }
        loop {
            // Checked and switched to Releasing in one step, so an `unlock`
            // is either the release request or waits for the outcome.
            {
                let sh = service::lock(&self.shared);
                if sh.release_requested {
                    drop(sh);
                    self.releasing("`unlock` requested the release".into());
                    return WaitEnd::Released;
                }
            }
            if let Some(sig) = signals::received() {
                self.releasing(format!("received signal {sig}"));
                return WaitEnd::Signal(sig);
            }
            if Instant::now() >= deadline {
                self.releasing("--max-lock-time passed before `unlock`".into());
                return WaitEnd::Deadline;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finished(&mut self, code: u8, message: Option<&str>, report: &Report) {
        clear_parent_death_signal();
        let mut outcome = serde_json::json!({
            "ok": code == exit::OK,
            "code": code,
            "message": message,
            "finished_at": report.finished_at,
            "consistent": report.consistent,
            "lock_held_ms": report.lock.held_ms,
        });
        let mut sh = service::lock(&self.shared);
        let mut delivered = false;
        if let Some(mut pipe) = self.ready_pipe.take() {
            // Never got ready: the `lock` command reports the failure, if it is still there.
            if writeln!(pipe, "{outcome}").is_ok() {
                delivered = true;
            } else {
                outcome["message"] = format!(
                    "{}; the `mysql-quiesce lock` that started this holder was gone before it could be told (killed, \
                     e.g. by a framework timeout)",
                    message.unwrap_or("the holder failed")
                )
                .into();
            }
        }
        for mut client in std::mem::take(&mut sh.waiting) {
            if writeln!(client, "{outcome}").is_ok() {
                delivered = true;
            }
        }
        // Recorded before the socket goes and the flock drops: an `unlock`
        // that comes later, or whose connection broke, reads it.
        if !delivered {
            match self.state.write_result(&outcome) {
                Ok(()) => {
                    sh.in_file = true;
                    eprintln!(
                        "mysql-quiesce: holder: result (exit status {code}) recorded in {} for `mysql-quiesce unlock`",
                        self.state.last_result().display()
                    );
                }
                Err(e) => eprintln!(
                    "mysql-quiesce: error: cannot record the result in {}: {e}",
                    self.state.last_result().display()
                ),
            }
        }
        sh.collected = delivered;
        sh.phase = Phase::Finished { outcome };
        drop(sh);
        self.state.remove_socket();
        state::clear_owner(&self.lock_file);
    }
}
