//! The client commands: `lock` (starts the holder and waits until it holds
//! or has failed), `unlock` and `status`. Every wait here is bounded and ends
//! with a message that says what is still held and what to do.

use super::protocol::{
    self, HandOver, Outcome, PhaseName, ReadyReport, Request, Status, UnlockReply, Variables,
};
use super::{shell_pair, HOLDER_FD, HOLDER_LOCK_FD, HOLDER_PASSWORD_FD};
use crate::exit;
use crate::messages::Progress;
use crate::plan::Plan;
use crate::signals;
use crate::state::{self, Owner, Probe, State};
use crate::wait::{ChildWait, Watched};
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `status` and `unlock` wait for the holder's first answer. It
/// answers from its own thread at once; this only catches a stuck holder.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for a holder that is exiting (its socket is gone, its
/// flock not yet) before saying so.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

fn run(progress: &Progress, result: anyhow::Result<u8>) -> u8 {
    result.unwrap_or_else(|e| {
        progress.error(format!("{e:#}"));
        exit::code_of(&e)
    })
}

// ------------------------------------------------------------------ lock

/// `lock`: start the holder and return once it holds the lock (exit 0, the
/// variables on stdout) or has failed (its exit status; nothing left behind).
/// A termination signal stops the holder too and exits 128+N.
pub fn lock_command(plan: &Plan, argv: &[OsString], json: bool) -> u8 {
    run(&plan.progress, lock(plan, argv, json, &plan.progress))
}

fn lock(plan: &Plan, argv: &[OsString], json: bool, progress: &Progress) -> anyhow::Result<u8> {
    let state = State::new(&plan.state_dir);
    // From here on no other `lock` can start a holder; the holder inherits it.
    let (lock_file, dead) = state.acquire()?;
    refuse_over_uncollected(&state, dead)?;
    if state.remove_socket() {
        progress.detail("removed a leftover holder socket nobody served");
    }
    let (holder, report_pipe) = start_holder(plan, argv, &state, &lock_file, progress)?;
    let pid = holder.pid();
    let mut pending = Vec::new();
    let locked = match read_report(&report_pipe, &mut pending, None) {
        Report::Line(line) => match protocol::from_line::<ReadyReport>(&line) {
            Some(ReadyReport::Locked(locked)) => locked,
            Some(ReadyReport::Failed(outcome)) => {
                // It has released everything and is exiting.
                holder.reap();
                return Err(exit::fail(
                    outcome.code,
                    format!(
                        "{} (nothing is held; holder log: {})",
                        outcome.message.as_deref().unwrap_or("locking failed"),
                        state.log().display()
                    ),
                ));
            }
            None => {
                // Not a report we understand: whatever it holds, stop it.
                holder.stop("its report was not understood");
                return Err(exit::fail(
                    exit::SOFTWARE,
                    format!("the holder's report was not understood: {line:?}; nothing is held"),
                ));
            }
        },
        Report::Signal(sig) => return Ok(holder.interrupted(sig)),
        Report::Eof | Report::Timeout => {
            holder.reap();
            return Err(exit::fail(
                exit::SOFTWARE,
                format!(
                    "the holder (pid {pid}) exited without reporting; see {} (nothing is held)",
                    state.log().display()
                ),
            ));
        }
    };
    // A signal that came with the report: the caller will not get the
    // variables, so it will not unlock either.
    if let Some(sig) = signals::received() {
        return Ok(holder.interrupted(sig));
    }
    // Never blocked by a stdout nobody reads (a hung terminal, a full pipe):
    // a framework's SIGTERM must still stop the holder.
    match write_stdout_interruptible(variables_text(&locked.env, json).as_bytes()) {
        Ok(()) => {}
        Err(Printed::Signal(sig)) => return Ok(holder.interrupted(sig)),
        Err(Printed::Failed(e)) => {
            progress.error(format!(
                "cannot print the variables ({e}): nobody would know the lock is held; releasing it"
            ));
            holder.stop("the variables could not be printed");
            return Ok(exit::SOFTWARE);
        }
    }
    if let Some(code) = holder.handed_out(&report_pipe, &mut pending)? {
        return Ok(code);
    }
    progress.info(format!(
        "locked by holder pid {pid}; run `mysql-quiesce unlock` within --max-lock-time ({} s)",
        plan.max_lock_time.as_secs_f64()
    ));
    // Our copy of the flock's file closes with us; the holder keeps it.
    Ok(exit::OK)
}

/// The outcome of an earlier lock that no `unlock` has collected yet
/// belongs to that lock's post-script: a new lock must not take its place,
/// or that `unlock` would be answered by this lock (and release it under its
/// snapshot), reporting "held continuously" for a lock that was not.
fn refuse_over_uncollected(state: &State, dead: Option<Owner>) -> anyhow::Result<()> {
    if let Some(owner) = &dead {
        return Err(exit::fail(
            exit::TEMPFAIL,
            format!(
                "the previous holder ({owner}) died while holding the lock (its guardian thawed its filesystems; \
                 the server dropped its lock), and no `mysql-quiesce unlock` has reported that yet: a snapshot of \
                 that lock must not be trusted. Run `mysql-quiesce unlock` to collect it (it exits 65), then lock \
                 again. Nothing was done"
            ),
        ));
    }
    let previous = state.read_result::<Outcome>().map_err(|e| {
        exit::fail(
            exit::TEMPFAIL,
            format!(
                "{e:#}: an earlier holder's result that no `unlock` has collected is unreadable. Run \
                 `mysql-quiesce unlock` (it moves it aside and exits 65), then lock again. Nothing was done"
            ),
        )
    })?;
    if let Some(previous) = previous {
        return Err(exit::fail(
            exit::TEMPFAIL,
            format!(
                "the previous holder released everything by itself at {} (exit status {}: {}), and no \
                 `mysql-quiesce unlock` has collected that yet: its post-script has not run. Run \
                 `mysql-quiesce unlock` to collect it (it exits with that status), then lock again. Nothing was done",
                previous.finished_at.as_deref().unwrap_or("?"),
                previous.code,
                previous.message.as_deref().unwrap_or("?")
            ),
        ));
    }
    Ok(())
}

/// The variables as `lock` prints them: `export KEY='value'` lines (after
/// `eval`, the shell's child processes, the snapshot command and the shipped
/// hooks, must see them too), or one JSON object.
fn variables_text(env: &Variables, json: bool) -> String {
    if json {
        format!("{}\n", protocol::to_line(env))
    } else {
        env.iter()
            .map(|(k, val)| format!("export {}\n", shell_pair(k, val)))
            .collect()
    }
}

/// Start the holder: detached (its own session), handed the readiness pipe,
/// the state flock and the password pipe. Returns it with our end of the
/// readiness pipe.
fn start_holder<'a>(
    plan: &'a Plan,
    argv: &[OsString],
    state: &'a State,
    lock_file: &'a File,
    progress: &'a Progress,
) -> anyhow::Result<(PendingHolder<'a>, OwnedFd)> {
    let log = state.create_log()?;
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| exit::fail(exit::SOFTWARE, format!("cannot create a pipe: {e}")))?;
    let exe = std::env::current_exe().map_err(|e| {
        exit::fail(
            exit::SOFTWARE,
            format!("cannot find our own executable: {e}"),
        )
    })?;
    let mut cmd = Command::new(exe);
    cmd.args(holder_args(argv))
        .env(HOLDER_FD, write_end.as_raw_fd().to_string())
        .env(HOLDER_LOCK_FD, lock_file.as_raw_fd().to_string())
        // Its stdin: we say "handed out" there once the variables are printed.
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    // The password (it cannot prompt) goes through a pipe: not in its argv
    // (`ps`), not in its environment (hooks would inherit it), and with the
    // command line's precedence whatever the option files say.
    let password_pipe = match &plan.password {
        Some(pw) => {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| exit::fail(exit::SOFTWARE, format!("cannot create a pipe: {e}")))?;
            let mut w = File::from(w);
            w.write_all(pw.as_bytes()).map_err(|e| {
                exit::fail(exit::SOFTWARE, format!("cannot pass the password on: {e}"))
            })?;
            drop(w);
            cmd.env(HOLDER_PASSWORD_FD, r.as_raw_fd().to_string());
            Some(r)
        }
        None => None,
    };
    let mut fds = vec![write_end.as_raw_fd(), lock_file.as_raw_fd()];
    fds.extend(password_pipe.as_ref().map(|r| r.as_raw_fd()));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Detached from our session so that it outlives us and the terminal.
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            // The descriptors it inherits (all are close-on-exec here).
            for fd in &fds {
                if libc::fcntl(*fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // If we die before it reports ready (SIGKILL), it gets SIGTERM and
            // releases: nobody would ever unlock it. It clears this when ready.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    drop(write_end);
    drop(password_pipe);
    let child =
        spawned.map_err(|e| exit::fail(exit::SOFTWARE, format!("cannot start the holder: {e}")))?;
    let holder = PendingHolder {
        child: Watched::new(child),
        state,
        lock_file,
        plan,
        progress,
        armed: true,
    };
    Ok((holder, read_end))
}

/// A holder `lock` started whose lock has not been handed out yet. Until
/// `handed_out`, every way out (including an early return or a panic)
/// stops it and clears what it leaves in the state directory: nobody may be
/// left holding a lock nobody knows about.
struct PendingHolder<'a> {
    child: Watched,
    state: &'a State,
    lock_file: &'a File,
    plan: &'a Plan,
    progress: &'a Progress,
    armed: bool,
}

impl PendingHolder<'_> {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The variables are printed: say so on its stdin, and exit 0 only if it
    /// answers that it still holds (not if --max-lock-time passed while our
    /// stdout was blocked, say); then it outlives us.
    /// `Ok(Some(code))`: interrupted by a signal (reported, nothing held).
    fn handed_out(mut self, pipe: &impl AsFd, pending: &mut Vec<u8>) -> anyhow::Result<Option<u8>> {
        let pid = self.pid();
        let _ = self
            .child
            .child
            .stdin
            .take()
            .map(|mut to_holder| to_holder.write_all(b"handed out\n"));
        // It answers at once, or has already (when it gave up waiting).
        let answer = read_report(pipe, pending, Some(Instant::now() + EXIT_TIMEOUT));
        let hand_over = match answer {
            Report::Line(line) => protocol::from_line::<HandOver>(&line),
            // The caller will not use the variables: nothing may stay held.
            Report::Signal(sig) => return Ok(Some(self.interrupted(sig))),
            Report::Eof | Report::Timeout => None,
        };
        match hand_over {
            Some(HandOver { held: true, .. }) => {
                self.armed = false;
                Ok(None)
            }
            Some(HandOver { code, why, .. }) => {
                // It releases by itself and has told us its outcome.
                self.armed = false;
                Err(exit::fail(
                    if code == exit::OK { exit::SOFTWARE } else { code },
                    format!(
                        "{}: the variables printed above must not be used for a snapshot; nothing is held (holder \
                         log: {})",
                        why.as_deref().unwrap_or("the holder released the lock before it was handed out"),
                        self.state.log().display()
                    ),
                ))
            }
            None => {
                // No answer: whatever it holds, stop it (Drop), since we exit
                // non-zero and nobody will unlock.
                Err(exit::fail(
                    exit::SOFTWARE,
                    format!(
                        "the holder (pid {pid}) did not confirm that it still holds the lock; stopping it. The \
                         variables printed above must not be used for a snapshot; see {}",
                        self.state.log().display()
                    ),
                ))
            }
        }
    }

    /// It reported a failure or exited: it releases by itself; wait for it
    /// (bounded), then clear up.
    fn reap(mut self) {
        if !wait_exit(&mut self.child, EXIT_TIMEOUT) {
            stop_holder(
                &mut self.child,
                "it did not exit after reporting",
                self.plan,
                self.progress,
            );
        }
        self.clear();
    }

    /// Stop it (`why`) and clear up.
    fn stop(mut self, why: &str) {
        stop_holder(&mut self.child, why, self.plan, self.progress);
        self.clear();
    }

    /// A termination signal before the variables are out: nobody will unlock.
    fn interrupted(self, sig: i32) -> u8 {
        let pid = self.pid();
        let progress = self.progress;
        self.stop(&format!("received signal {sig}"));
        progress.error(format!(
            "interrupted by signal {sig}: nothing is held (holder pid {pid} stopped)"
        ));
        exit::signal(sig)
    }

    /// The holder is gone; we still hold the flock: nothing may stay behind.
    fn clear(&mut self) {
        wait_exit(&mut self.child, EXIT_TIMEOUT);
        self.state.remove_socket();
        state::clear_owner(self.lock_file);
        self.state.remove_result();
        self.armed = false;
    }
}

impl Drop for PendingHolder<'_> {
    fn drop(&mut self) {
        if self.armed {
            stop_holder(
                &mut self.child,
                "`mysql-quiesce lock` failed",
                self.plan,
                self.progress,
            );
            self.clear();
        }
    }
}

/// Our arguments minus any password, which goes in the environment instead.
fn holder_args(argv: &[OsString]) -> Vec<OsString> {
    let mut args = Vec::new();
    let mut after_dashes = false;
    for a in crate::options::normalize_argv(argv.to_vec())
        .into_iter()
        .skip(1)
    {
        after_dashes |= a == "--";
        let is_password = !after_dashes
            && (a == "-p" || a == "--password" || a.as_encoded_bytes().starts_with(b"--password="));
        if !is_password {
            args.push(a);
        }
    }
    args
}

enum Printed {
    Signal(i32),
    Failed(std::io::Error),
}

/// Write all of `bytes` to stdout, waiting for it to take them but waking at
/// once for a termination signal.
fn write_stdout_interruptible(bytes: &[u8]) -> Result<(), Printed> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let stdout = std::io::stdout();
    let mut rest = bytes;
    while !rest.is_empty() {
        if let Some(sig) = signals::received() {
            return Err(Printed::Signal(sig));
        }
        let mut fds = vec![PollFd::new(stdout.as_fd(), PollFlags::POLLOUT)];
        if let Some(s) = signals::wake_fd() {
            fds.push(PollFd::new(s, PollFlags::POLLIN));
        }
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Printed::Failed(e.into())),
        }
        let writable = fds[0].revents().is_some_and(|r| !r.is_empty());
        if !writable {
            signals::drain();
            continue;
        }
        // At most a pipe buffer's worth: a pipe reported writable takes that
        // much without blocking.
        let chunk = &rest[..rest.len().min(4096)];
        match nix::unistd::write(&stdout, chunk) {
            Ok(n) => rest = &rest[n..],
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(e) => return Err(Printed::Failed(e.into())),
        }
    }
    Ok(())
}

enum Report {
    Line(String),
    Eof,
    Signal(i32),
    Timeout,
}

/// One line from the holder, or EOF, or a termination signal to us first, or
/// `until`. Reading stops at the line: the holder's children (guardian,
/// hooks) do not have the pipe, but we must not wait for anything after it.
/// Bytes after the line stay in `buf` for the next call.
fn read_report(pipe: &impl AsFd, buf: &mut Vec<u8>, until: Option<Instant>) -> Report {
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            return Report::Line(String::from_utf8_lossy(&line[..end]).into_owned());
        }
        if let Some(sig) = signals::received() {
            return Report::Signal(sig);
        }
        match crate::wait::until(&[pipe.as_fd()], true, until) {
            crate::wait::Woke::Ready(0) => {}
            crate::wait::Woke::Timeout => return Report::Timeout,
            _ => continue,
        }
        let mut chunk = [0u8; 4096];
        match nix::unistd::read(pipe, &mut chunk) {
            Ok(0) => return Report::Eof,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return Report::Eof,
        }
    }
}

fn wait_exit(child: &mut Watched, within: Duration) -> bool {
    matches!(
        child.wait(false, Some(Instant::now() + within)),
        Ok(ChildWait::Exited(_))
    )
}

/// The variables cannot be handed out (`why`): ask the holder to release
/// (SIGTERM: it stops retrying, thaws, unlocks), and kill it if it does not
/// exit in time (its guardian thaws; the server drops the lock).
fn stop_holder(child: &mut Watched, why: &str, plan: &Plan, progress: &Progress) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    progress.warn(format!(
        "{why} before the lock was handed out: stopping holder pid {pid} so that nothing stays locked"
    ));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    // It checks for signals between lock attempts; one attempt may take
    // --lock-wait-timeout, and releasing a few seconds more.
    let grace = plan.lock.wait + Duration::from_secs(5);
    if !wait_exit(child, grace) {
        progress.warn(format!(
            "holder pid {pid} did not stop within {:.0} s; killing it (its guardian thaws what it froze, the server \
             drops its lock)",
            grace.as_secs_f64()
        ));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

// ------------------------------------------------------------------ unlock

/// `unlock`: exit 0 only if the lock was held continuously from lock to unlock.
pub fn unlock_command(state_dir: &Path, progress: &Progress) -> u8 {
    run(progress, unlock(state_dir, progress))
}

fn unlock(state_dir: &Path, progress: &Progress) -> anyhow::Result<u8> {
    let state = State::new(state_dir);
    match state.probe(false)? {
        Probe::Absent => Ok(no_holder(&state, progress)),
        Probe::Free { file, owner } => after_holder(&state, &file, owner, progress),
        Probe::Busy { owner } => ask_unlock(&state, owner, progress),
    }
}

fn no_holder(state: &State, progress: &Progress) -> u8 {
    progress.error(format!(
        "no holder is running and no result is waiting in {}: nothing to unlock (was `mysql-quiesce lock` run, with \
         the same --state-dir?)",
        state.dir.display()
    ));
    exit::UNAVAILABLE
}

/// No holder runs (we hold the flock): collect its result, or report its death.
fn after_holder(
    state: &State,
    lock_file: &File,
    dead: Option<Owner>,
    progress: &Progress,
) -> anyhow::Result<u8> {
    let result = match state.read_result::<Outcome>() {
        Ok(result) => result,
        // Whatever it was, it cannot say the lock was held: move it aside so
        // that it no longer blocks `lock`, and say so.
        Err(e) => {
            state.remove_socket();
            state::clear_owner(lock_file);
            let aside = match state.set_result_aside() {
                Ok(p) => format!("moved to {}", p.display()),
                Err(err) => format!("could not be moved aside ({err}); remove it"),
            };
            progress.error(format!(
                "CONSISTENCY NOT GUARANTEED: the holder's recorded result is unreadable ({e:#}; {aside}): do not \
                 trust a snapshot taken since `lock`. `lock` works again"
            ));
            return Ok(exit::INCONSISTENT);
        }
    };
    state.remove_socket();
    state::clear_owner(lock_file);
    if let Some(outcome) = result {
        state.remove_result();
        progress.warn(format!(
            "the holder had already released everything by itself at {}",
            outcome.finished_at.as_deref().unwrap_or("?")
        ));
        return Ok(report_outcome(&outcome, progress));
    }
    if let Some(owner) = dead {
        progress.error(format!(
            "CONSISTENCY NOT GUARANTEED: the holder ({owner}) died while holding the lock (its guardian thawed its \
             filesystems; the server dropped its lock): do not trust a snapshot taken since `lock`"
        ));
        return Ok(exit::INCONSISTENT);
    }
    Ok(no_holder(state, progress))
}

fn owner_text(owner: &Option<Owner>) -> String {
    owner
        .as_ref()
        .map(|o| format!("holder ({o})"))
        .unwrap_or_else(|| "holder".into())
}

/// A holder runs: ask it to release and wait for the outcome, bounded.
fn ask_unlock(state: &State, owner: Option<Owner>, progress: &Progress) -> anyhow::Result<u8> {
    let who = owner_text(&owner);
    let log = state.log();
    let Ok(stream) = UnixStream::connect(state.socket()) else {
        // No socket: the holder is exiting, or a `lock` is just starting one.
        return after_exit(state, owner, progress);
    };
    (&stream).write_all(Request::Unlock.line())?;
    let mut reader = BufReader::new(&stream);
    let first = match read_line_within(&stream, &mut reader, ANSWER_TIMEOUT) {
        Answer::Line(l) => l,
        Answer::Eof => return after_exit(state, owner, progress),
        Answer::Timeout => {
            return Err(exit::fail(
                exit::SOFTWARE,
                format!(
                    "the {who} did not answer `unlock` within {} s on {}; it releases everything by itself at \
                     --max-lock-time. See {} and `mysql-quiesce status`",
                    ANSWER_TIMEOUT.as_secs(),
                    state.socket().display(),
                    log.display()
                ),
            ))
        }
    };
    let ack = match protocol::from_line::<UnlockReply>(&first) {
        Some(UnlockReply::Ack(ack)) => ack,
        Some(UnlockReply::Outcome(outcome)) => {
            return Ok(answered(state, owner, &outcome, progress))
        }
        None => return Err(not_understood(&who, &first, state)),
    };
    let within = Duration::from_secs_f64(ack.expect_within.clamp(0.0, 86_400.0) + 10.0);
    progress.detail(format!(
        "the {who} is releasing (thaw, post hooks, unlock, after hooks); waiting up to {:.0} s",
        within.as_secs_f64()
    ));
    match read_line_within(&stream, &mut reader, within) {
        Answer::Line(l) => match protocol::from_line::<Outcome>(&l) {
            Some(outcome) => Ok(answered(state, owner, &outcome, progress)),
            None => Err(not_understood(&who, &l, state)),
        },
        Answer::Eof => after_exit(state, owner, progress),
        Answer::Timeout => Err(exit::fail(
            exit::SOFTWARE,
            format!(
                "the {who} did not finish releasing within {:.0} s; see {}. Its guardian thaws its filesystems at \
                 --max-lock-time; if it hangs, kill it (the server then drops its lock)",
                within.as_secs_f64(),
                log.display()
            ),
        )),
    }
}

/// The holder answered with its outcome and exits right after: report it
/// once the holder is gone, so that a `lock` run right after this `unlock`
/// is not refused because the last one is still on its way out.
fn answered(state: &State, owner: Option<Owner>, outcome: &Outcome, progress: &Progress) -> u8 {
    match until_holder_gone(state, owner, Instant::now() + EXIT_TIMEOUT) {
        // Free: the flock the probe took drops here, with it.
        Ok(Gone::Absent | Gone::Free { .. }) => {}
        Ok(Gone::StillHeld(o)) => progress.warn(format!(
            "the {} answered but has not exited within {} s; a `lock` now may be refused until it has",
            owner_text(&o),
            EXIT_TIMEOUT.as_secs()
        )),
        Err(e) => progress.warn(format!("cannot tell whether the holder has exited: {e:#}")),
    }
    report_outcome(outcome, progress)
}

/// What waiting for the holder's flock found.
enum Gone {
    /// No lock file (anymore).
    Absent,
    /// Nobody holds it: ours until `file` is dropped.
    Free { file: File, owner: Option<Owner> },
    /// Still held at the end of the wait, by the owner last seen.
    StillHeld(Option<Owner>),
}

/// Wait until the holder's flock is no longer held (its process has
/// exited), or `end`.
fn until_holder_gone(state: &State, owner: Option<Owner>, end: Instant) -> anyhow::Result<Gone> {
    loop {
        match state.probe(false)? {
            Probe::Absent => return Ok(Gone::Absent),
            Probe::Free { file, owner } => return Ok(Gone::Free { file, owner }),
            Probe::Busy { owner: now } => {
                if Instant::now() >= end {
                    return Ok(Gone::StillHeld(now.or(owner)));
                }
                // The flock goes when its holder exits: wait for that exit.
                // A flock itself has no descriptor that says when it is
                // released, so without a pid to watch (a `lock` still
                // starting its holder) it is probed again shortly.
                let watched = now
                    .as_ref()
                    .or(owner.as_ref())
                    .and_then(|o| crate::wait::process_exit(o.pid as u32, end));
                if watched.is_none() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// The holder did not answer on its socket: wait (bounded) for its flock to
/// drop, then read what it left.
fn after_exit(state: &State, owner: Option<Owner>, progress: &Progress) -> anyhow::Result<u8> {
    match until_holder_gone(state, owner, Instant::now() + EXIT_TIMEOUT)? {
        Gone::Absent => Ok(no_holder(state, progress)),
        Gone::Free { file, owner } => after_holder(state, &file, owner, progress),
        Gone::StillHeld(Some(o)) => Err(exit::fail(
            exit::SOFTWARE,
            format!(
                "the holder ({o}) holds {} but does not answer on {}; see {}",
                state.lock_path().display(),
                state.socket().display(),
                state.log().display()
            ),
        )),
        Gone::StillHeld(None) => Err(exit::fail(
            exit::TEMPFAIL,
            "a `mysql-quiesce lock` is still starting its holder: nothing to unlock yet; retry when it has returned",
        )),
    }
}

enum Answer {
    Line(String),
    Eof,
    Timeout,
}

fn read_line_within(
    stream: &UnixStream,
    reader: &mut BufReader<&UnixStream>,
    within: Duration,
) -> Answer {
    let end = Instant::now() + within;
    let mut line = String::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Answer::Timeout;
        }
        let _ = stream.set_read_timeout(Some(left.min(Duration::from_secs(1))));
        match reader.read_line(&mut line) {
            Ok(0) => return Answer::Eof,
            Ok(_) if line.ends_with('\n') => return Answer::Line(line),
            Ok(_) => return Answer::Eof,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return Answer::Eof,
        }
    }
}

/// An answer that is none of ours: whatever the holder does, we cannot say
/// the lock was held, so `unlock` fails (its log says more).
fn not_understood(who: &str, line: &str, state: &State) -> anyhow::Error {
    exit::fail(
        exit::SOFTWARE,
        format!(
            "the {who} answered `unlock` with something that is not a result: {:?}; do not trust the snapshot. \
             See {} and `mysql-quiesce status`",
            line.trim(),
            state.log().display()
        ),
    )
}

fn report_outcome(outcome: &Outcome, progress: &Progress) -> u8 {
    if outcome.code == exit::OK {
        let held = outcome
            .lock_held_ms
            .map(|ms| format!("; lock held {ms:.0} ms"))
            .unwrap_or_default();
        progress.info(format!(
            "unlocked: lock held continuously, snapshot consistent{held}"
        ));
    } else {
        progress.error(outcome.message.as_deref().unwrap_or("the holder failed"));
    }
    outcome.code
}

// ------------------------------------------------------------------ status

/// `status`: exit 0 and details when a holder runs, 3 when none does.
pub fn status_command(state_dir: &Path, json: bool, progress: &Progress) -> u8 {
    run(progress, status(state_dir, json))
}

const NOT_RUNNING: u8 = 3;

fn status(state_dir: &Path, json: bool) -> anyhow::Result<u8> {
    let state = State::new(state_dir);
    let (dead, waiting) = match state.probe(false)? {
        Probe::Absent => (None, false),
        // An unreadable result waits too (`unlock` sets it aside).
        Probe::Free { owner, .. } => (owner, !matches!(state.read_result::<Outcome>(), Ok(None))),
        Probe::Busy { owner } => return running(&state, owner, json),
    };
    if json {
        let status = Status {
            running: false,
            result_waiting: Some(waiting),
            dead_holder_pid: dead.as_ref().map(|o| o.pid as u32),
            ..Status::default()
        };
        crate::outln!("{}", protocol::to_line(&status));
    } else {
        let mut line = "holder: not running".to_string();
        if let Some(o) = &dead {
            line += &format!(
                "; the holder ({o}) died without `unlock` (its state is cleaned up by the next lock or unlock)"
            );
        }
        if waiting {
            line += "; a result waits for `unlock`";
        }
        crate::outln!("{line}");
    }
    Ok(NOT_RUNNING)
}

fn running(state: &State, owner: Option<Owner>, json: bool) -> anyhow::Result<u8> {
    let who = owner_text(&owner);
    let answer = UnixStream::connect(state.socket()).ok().map(|stream| {
        let _ = (&stream).write_all(Request::Status.line());
        let mut reader = BufReader::new(&stream);
        read_line_within(&stream, &mut reader, ANSWER_TIMEOUT)
    });
    let status = match answer {
        Some(Answer::Line(l)) => protocol::from_line::<Status>(&l).ok_or_else(|| {
            exit::fail(
                exit::SOFTWARE,
                format!(
                    "the {who} answered `status` with something that is not a status: {:?}; see {}",
                    l.trim(),
                    state.log().display()
                ),
            )
        })?,
        Some(Answer::Timeout) => {
            return Err(exit::fail(
                exit::SOFTWARE,
                format!(
                    "the {who} holds {} but did not answer within {} s; see {}",
                    state.lock_path().display(),
                    ANSWER_TIMEOUT.as_secs(),
                    state.log().display()
                ),
            ))
        }
        // Not listening (yet, or any more).
        _ => Status {
            running: true,
            phase: Some(if owner.is_some() {
                PhaseName::Exiting
            } else {
                PhaseName::Starting
            }),
            pid: owner.as_ref().map(|o| o.pid as u32),
            ..Status::default()
        },
    };
    if json {
        crate::outln!("{}", protocol::to_line(&status));
    } else {
        print_status(&status);
    }
    Ok(exit::OK)
}

fn print_status(status: &Status) {
    let phase = status.phase.map_or("?", PhaseName::as_str);
    let pid = status.pid.map_or("?".to_string(), |p| p.to_string());
    crate::outln!("holder: running, pid {pid}, {phase}");
    match status.phase {
        Some(PhaseName::Holding | PhaseName::Releasing) => {
            crate::outln!(
                "lock: {}, held {:.1} s since {}",
                status.lock.as_deref().unwrap_or("?"),
                status.held_seconds.unwrap_or(0.0),
                status.since.as_deref().unwrap_or("?")
            );
            if let Some(why) = &status.why {
                crate::outln!("releasing: {why}");
            }
            if let Some(left) = status.seconds_left {
                crate::outln!(
                    "released by itself in {left:.1} s (--max-lock-time) unless unlocked"
                );
            }
            let frozen = status.frozen.as_deref().unwrap_or("");
            crate::outln!(
                "frozen: {}",
                if frozen.is_empty() { "nothing" } else { frozen }
            );
            let env = status.env.clone().unwrap_or_default();
            for k in [
                "MYSQL_QUIESCE_CONNECTION_ID",
                "MYSQL_QUIESCE_BINLOG_FILE",
                "MYSQL_QUIESCE_BINLOG_POS",
                "MYSQL_QUIESCE_GTID",
            ] {
                crate::outln!("{}", shell_pair(k, env.get(k).map_or("", String::as_str)));
            }
        }
        Some(PhaseName::Locking) => crate::outln!(
            "taking the lock (the `mysql-quiesce lock` that started it has not returned)"
        ),
        Some(PhaseName::Finished) => crate::outln!(
            "finished with exit status {}; exiting (`unlock` collects the result)",
            status
                .outcome
                .as_ref()
                .map_or("?".to_string(), |o| o.code.to_string())
        ),
        _ => {}
    }
}
