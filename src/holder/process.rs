//! The holder process: the waiter that `lock` runs detached. It reports
//! ready on the pipe from its `lock` command, then serves `unlock` and
//! `status` (service.rs) until the release, and records the outcome before it
//! stops answering, so an `unlock` at any moment gets the right answer.

use super::protocol::{to_line, HandOver, Locked, Outcome, ReadyReport, Variables};
use super::service::{self, Phase, Shared};
use super::{NotHandedOver, WaitEnd, Waiter, HOLDER_FD, HOLDER_LOCK_FD};
use crate::exit;
use crate::plan::Plan;
use crate::report::{self, Report};
use crate::signals;
use crate::state::{self, State};
use nix::fcntl::OFlag;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// The holder's side: serves `status` and `unlock` on the socket.
pub struct HolderWaiter {
    state: State,
    /// The state flock, inherited from `lock` (the same open file): held
    /// until this process exits. Never unlocked explicitly.
    lock_file: File,
    ready_pipe: Option<File>,
    shared: service::Handle,
    /// Readable when an `unlock` has asked for the release.
    wake_read: OwnedFd,
    /// `lock` was told the lock is not held (and exits with that): the
    /// outcome needs no `unlock`.
    told_lock: bool,
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

/// What `lock` said on our stdin about handing the variables out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ack {
    /// "handed out".
    Given,
    /// Nothing before the deadline (its stdout blocked, say).
    TooLate,
    /// End of file, anything else, or a signal to us: it is gone or stopping us.
    NotGiven,
}

fn handed_out(deadline: Instant) -> Ack {
    let stdin = std::io::stdin();
    let mut answer = [0u8; 16];
    match crate::wait::until(&[stdin.as_fd()], true, Some(deadline)) {
        crate::wait::Woke::Ready(_) => match nix::unistd::read(stdin.as_fd(), &mut answer) {
            Ok(n) if answer[..n].starts_with(b"handed out") => Ack::Given,
            _ => Ack::NotGiven,
        },
        crate::wait::Woke::Timeout => Ack::TooLate,
        crate::wait::Woke::Signal => Ack::NotGiven,
    }
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
    pub fn from_environment(plan: &Plan) -> anyhow::Result<HolderWaiter> {
        let ready_pipe = inherited(HOLDER_FD)?;
        let lock_file = inherited(HOLDER_LOCK_FD)?;
        state::try_flock(&lock_file).map_err(|e| {
            exit::fail(
                exit::SOFTWARE,
                format!("the state flock handed to the holder is not held: {e}"),
            )
        })?;
        let state = State::new(&plan.state_dir);
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
        let h = &plan.hooks;
        let hooks = h.snapshot.len() + h.post.len() + h.after.len();
        let expect_within = hooks as f64 * (plan.hook_timeout.as_secs_f64() + 2.0) + 30.0;
        let (wake_read, wake) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(|e| exit::fail(exit::SOFTWARE, format!("cannot create a pipe: {e}")))?;
        let shared = Arc::new(Mutex::new(Shared {
            phase: Phase::Locking,
            release_requested: false,
            wake,
            waiting: Vec::new(),
            collected: false,
            in_file: false,
            started,
            max_lock_time: plan.max_lock_time.as_secs_f64(),
            expect_within,
        }));
        service::spawn(listener, shared.clone(), State::new(&plan.state_dir))?;
        Ok(HolderWaiter {
            state,
            lock_file,
            ready_pipe: Some(ready_pipe),
            shared,
            wake_read,
            told_lock: false,
        })
    }

    fn releasing(&self, why: String) {
        let mut sh = service::lock(&self.shared);
        let (env, since) = match &sh.phase {
            Phase::Holding { env, since, .. } | Phase::HandingOut { env, since } => {
                (env.clone(), *since)
            }
            _ => (BTreeMap::new(), SystemTime::now()),
        };
        sh.phase = Phase::Releasing { why, env, since };
    }
}

impl Waiter for HolderWaiter {
    fn ready(&mut self, env: &Variables, deadline: Instant) -> Result<(), NotHandedOver> {
        let since = SystemTime::now();
        service::lock(&self.shared).phase = Phase::HandingOut {
            env: env.clone(),
            since,
        };
        let Some(mut pipe) = self.ready_pipe.take() else {
            return Ok(());
        };
        // `lock` exits as soon as it has handed the variables out, and we
        // stay: the parent-death signal goes, before the report (cleared
        // after it, a `lock` quick to exit could still send it and make us
        // release a lock it had handed out). Whether it handed them out is
        // what it says on our stdin; if it dies first (killed while its
        // stdout was blocked, say), its end closes without that: release.
        clear_parent_death_signal();
        let report = ReadyReport::Locked(Locked {
            ok: true,
            pid: std::process::id(),
            env: env.clone(),
        });
        writeln!(pipe, "{}", to_line(&report)).map_err(|e| {
            NotHandedOver::gone(format!(
                "cannot report ready to the `mysql-quiesce lock` that started this holder ({e}): it is gone (killed, \
                 e.g. by a framework timeout), so nobody knows the lock is held; released everything at once"
            ))
        })?;
        let acked = handed_out(deadline);
        // Said "handed out" in time, and nothing has ended the lock since:
        // only then is `lock` told to exit 0.
        let refusal = if acked == Ack::TooLate
            || (acked == Ack::Given && Instant::now() >= deadline)
        {
            Some((
                exit::TIMEOUT,
                "--max-lock-time passed while `mysql-quiesce lock` was still printing the variables (nobody read its \
                 output in time); released everything: take no snapshot with them"
                    .to_string(),
            ))
        } else if acked == Ack::NotGiven {
            Some((
                exit::signal(libc::SIGPIPE),
                "the `mysql-quiesce lock` that started this holder did not hand the variables out (it was stopped \
                 or killed first), so nobody knows the lock is held; released everything"
                    .to_string(),
            ))
        } else {
            signals::received().map(|sig| {
                (
                    exit::signal(sig),
                    format!("received signal {sig} while `mysql-quiesce lock` handed the variables out; released everything"),
                )
            })
        };
        let answer = match &refusal {
            None => HandOver {
                held: true,
                code: exit::OK,
                why: None,
            },
            Some((code, why)) => HandOver {
                held: false,
                code: *code,
                why: Some(why.clone()),
            },
        };
        if refusal.is_none() {
            service::lock(&self.shared).phase = Phase::Holding {
                env: env.clone(),
                since,
                deadline: None,
            };
        }
        let told = writeln!(pipe, "{}", to_line(&answer)).is_ok();
        match refusal {
            None => Ok(()),
            Some((code, why)) => {
                // `lock` was there to read it (it had just said "handed out"):
                // it exits with this outcome, so nobody needs to collect it.
                self.told_lock = acked == Ack::Given && told;
                Err(NotHandedOver { code, why })
            }
        }
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
            // Woken by `unlock` (the socket thread writes to the pipe), a
            // signal, or the deadline.
            match crate::wait::until(&[self.wake_read.as_fd()], true, Some(deadline)) {
                crate::wait::Woke::Timeout => {
                    self.releasing("--max-lock-time passed before `unlock`".into());
                    return WaitEnd::Deadline;
                }
                crate::wait::Woke::Ready(_) => {
                    let mut drained = [0u8; 64];
                    let _ = nix::unistd::read(self.wake_read.as_fd(), &mut drained);
                }
                crate::wait::Woke::Signal => {}
            }
        }
    }

    fn finished(&mut self, code: u8, message: Option<&str>, report: &Report) {
        clear_parent_death_signal();
        let mut outcome = Outcome {
            ok: code == exit::OK,
            code,
            message: message.map(str::to_string),
            finished_at: report.finished_at.clone(),
            consistent: report.consistent,
            lock_held_ms: report.lock.held_ms,
        };
        let mut sh = service::lock(&self.shared);
        let mut delivered = self.told_lock;
        if let Some(mut pipe) = self.ready_pipe.take() {
            // Never got ready: the `lock` command reports the failure, if it is still there.
            if writeln!(pipe, "{}", to_line(&ReadyReport::Failed(outcome.clone()))).is_ok() {
                delivered = true;
            } else {
                outcome.message = Some(format!(
                    "{}; the `mysql-quiesce lock` that started this holder was gone before it could be told (killed, \
                     e.g. by a framework timeout)",
                    message.unwrap_or("the holder failed")
                ));
            }
        }
        for mut client in std::mem::take(&mut sh.waiting) {
            if writeln!(client, "{}", to_line(&outcome)).is_ok() {
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
