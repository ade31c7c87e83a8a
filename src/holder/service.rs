//! The holder's socket, served by a thread for the holder's whole life, so
//! that `status` and `unlock` get an answer in every phase: while it locks,
//! holds, releases (after `unlock`, a signal or --max-lock-time) and after it
//! has finished, until the process exits. An `unlock` that arrives while the
//! holder releases by itself is acknowledged at once and gets the outcome
//! when it is known; one that arrives later gets the recorded outcome.
//!
//! Protocol (protocol.rs): one request line, JSON lines back. For `unlock`:
//! either the outcome at once, or first an `Ack` and then the outcome.

use super::protocol::{to_line, Ack, Outcome, PhaseName, Request, Status, UnlockReply, Variables};
use crate::exit;
use crate::report;
use crate::state::State;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

pub enum Phase {
    /// Connecting and locking: the `lock` command still waits.
    Locking,
    /// Locked; the `lock` command prints the variables and has not said so yet.
    HandingOut {
        env: Variables,
        since: SystemTime,
    },
    Holding {
        env: Variables,
        since: SystemTime,
        deadline: Option<Instant>,
    },
    Releasing {
        why: String,
        env: Variables,
        since: SystemTime,
    },
    Finished {
        outcome: Outcome,
    },
}

pub struct Shared {
    pub phase: Phase,
    /// Set by an `unlock`; the waiter ends its wait on it.
    pub release_requested: bool,
    /// Written to with `release_requested`: wakes the waiter at once.
    pub wake: OwnedFd,
    /// `unlock` clients waiting for the outcome.
    pub waiting: Vec<UnixStream>,
    /// The outcome went to an `unlock` (or to the `lock` command).
    pub collected: bool,
    /// The outcome is in last-result.json, waiting for an `unlock`.
    pub in_file: bool,
    pub started: SystemTime,
    pub max_lock_time: f64,
    /// How long releasing may take at most (hooks and their timeouts), for `unlock`.
    pub expect_within: f64,
}

pub type Handle = Arc<Mutex<Shared>>;

pub fn lock(h: &Handle) -> MutexGuard<'_, Shared> {
    // A panic elsewhere must not stop `unlock` from being answered.
    h.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serve `listener` until the process exits.
pub fn spawn(listener: UnixListener, shared: Handle, state: State) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("holder-socket".into())
        .spawn(move || loop {
            match listener.accept() {
                Ok((stream, _)) => serve(stream, &shared, &state),
                // accept fails for want of descriptors or memory: back off a
                // little rather than spin (nothing to wait for as an event).
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        })
        .map(|_| ())
}

fn serve(stream: UnixStream, shared: &Handle, state: &State) {
    // A client that connects and says nothing must not keep others waiting long.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let _ = BufReader::new(&stream).read_line(&mut line);
    let mut sh = lock(shared);
    let mut out = &stream;
    let mut send = |line: String| writeln!(out, "{line}").is_ok();
    match Request::parse(&line) {
        Some(Request::Status) => {
            send(to_line(&status(&sh)));
        }
        Some(Request::Unlock) => match &sh.phase {
            Phase::Locking => {
                send(to_line(&UnlockReply::Outcome(Outcome::refusal(
                    exit::TEMPFAIL,
                    format!(
                        "holder pid {} is still taking the lock (the `mysql-quiesce lock` that started it has not \
                         returned): nothing to unlock yet. Retry, or stop that `lock` command (it stops its holder)",
                        std::process::id()
                    ),
                ))));
            }
            Phase::HandingOut { .. } => {
                send(to_line(&UnlockReply::Outcome(Outcome::refusal(
                    exit::TEMPFAIL,
                    format!(
                        "holder pid {} has the lock, but the `mysql-quiesce lock` that started it is still handing the \
                         variables out: nothing to unlock yet. Retry once that `lock` has returned",
                        std::process::id()
                    ),
                ))));
            }
            Phase::Holding { .. } | Phase::Releasing { .. } => {
                sh.release_requested = true;
                // Non-blocking; a full pipe already has a wake-up in it.
                let _ = nix::unistd::write(&sh.wake, b"u");
                let ack = UnlockReply::Ack(Ack {
                    ack: true,
                    pid: std::process::id(),
                    expect_within: sh.expect_within,
                });
                if send(to_line(&ack)) {
                    sh.waiting.push(stream.try_clone().expect("clone socket"));
                }
            }
            Phase::Finished { outcome } => {
                let reply = if sh.collected {
                    Outcome::refusal(
                        exit::UNAVAILABLE,
                        "the holder has finished and its result was already collected by another `unlock`: nothing to unlock",
                    )
                } else {
                    outcome.clone()
                };
                if send(to_line(&UnlockReply::Outcome(reply))) && !sh.collected {
                    sh.collected = true;
                    if sh.in_file {
                        state.remove_result();
                        sh.in_file = false;
                    }
                }
            }
        },
        None => {}
    }
}

fn status(sh: &Shared) -> Status {
    let held = |since: &SystemTime| since.elapsed().unwrap_or_default().as_secs_f64();
    let mut status = Status {
        running: true,
        pid: Some(std::process::id()),
        started: Some(report::rfc3339(sh.started)),
        max_lock_time: Some(sh.max_lock_time),
        ..Status::default()
    };
    let holding = |status: &mut Status, env: &Variables, since: &SystemTime| {
        status.since = Some(report::rfc3339(*since));
        status.held_seconds = Some(held(since));
        status.lock = env.get("MYSQL_QUIESCE_LOCK").cloned();
        status.frozen = env.get("MYSQL_QUIESCE_FROZEN").cloned();
        status.env = Some(env.clone());
    };
    match &sh.phase {
        Phase::Locking => status.phase = Some(PhaseName::Locking),
        Phase::HandingOut { env, since } => {
            status.phase = Some(PhaseName::HandingOut);
            holding(&mut status, env, since);
        }
        Phase::Holding {
            env,
            since,
            deadline,
        } => {
            status.phase = Some(PhaseName::Holding);
            holding(&mut status, env, since);
            status.seconds_left =
                deadline.map(|d| d.saturating_duration_since(Instant::now()).as_secs_f64());
        }
        Phase::Releasing { why, env, since } => {
            status.phase = Some(PhaseName::Releasing);
            holding(&mut status, env, since);
            status.why = Some(why.clone());
        }
        Phase::Finished { outcome } => {
            status.phase = Some(PhaseName::Finished);
            status.outcome = Some(outcome.clone());
        }
    }
    status
}
