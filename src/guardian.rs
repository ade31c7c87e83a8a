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

use crate::exit;
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Time a hook gets between SIGTERM and SIGKILL (the same as the run's).
pub const GRACE: Duration = crate::hooks::GRACE;

/// How long after the deadline the guardian acts if the run has not.
pub const BACKSTOP_DELAY: Duration = Duration::from_millis(250);

/// The process name the guardian shows (`ps`, `top`): not "mysql-quiesce",
/// so that `pkill mysql-quiesce` aimed at a stuck run does not kill it too.
pub const PROCESS_NAME: &str = "mq-guardian";

/// The writing end of the pipe to the guardian, shared by everything that
/// tells it something (the run, the freeze, hook stoppers). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Link {
    pipe: Arc<Mutex<Option<ChildStdin>>>,
    raw: RawFd,
}

impl Link {
    /// Send one line. Each line is one write(2) of under PIPE_BUF bytes, so
    /// lines from hooks' own processes (see `announce_in_child`) never interleave.
    pub fn tell(&self, message: &str) {
        let mut guard = self.pipe.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pipe) = guard.as_mut() {
            let line = format!("{message}\n");
            let _ = pipe.write_all(line.as_bytes());
        }
    }

    /// The descriptor a hook's process writes `hook PID` to between fork and
    /// exec. It is close-on-exec: hooks never hold it, so our death is seen.
    pub fn raw_fd(&self) -> RawFd {
        self.raw
    }
}

/// In a forked child before exec: tell the guardian our process group (our
/// pid: hooks lead their own group). Async-signal-safe: no allocation.
pub fn announce_in_child(fd: RawFd) {
    if fd < 0 {
        return;
    }
    // SAFETY: getpid is async-signal-safe.
    let pid = unsafe { libc::getpid() };
    let mut buf = [0u8; 32];
    let prefix = b"hook ";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 12];
    let mut n = pid.max(0) as u32;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut at = prefix.len();
    for i in (0..len).rev() {
        buf[at] = digits[i];
        at += 1;
    }
    buf[at] = b'\n';
    at += 1;
    // SAFETY: signal(2) and write(2) are async-signal-safe; the buffer is on
    // our stack. A guardian that is gone must not kill the hook with SIGPIPE
    // (std has reset it to the default action by now): ignored for the
    // write, which then fails with EPIPE, and the default restored for exec.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let _ = libc::write(fd, buf.as_ptr().cast(), at);
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The guardian process, seen from the run.
#[derive(Debug)]
pub struct Guardian {
    child: Child,
    link: Link,
    /// Lines it writes back: "ready", "pong", "deadline".
    replies: Receiver<String>,
    ready: bool,
    thawed_at_deadline: bool,
}

impl Guardian {
    /// Start it with `targets`, the filesystems the run may freeze, in freeze
    /// order (opened by `ensure_alive`, and checked to be the very
    /// directories the run validated). Returns at once.
    pub fn start(exe: &Path, targets: &[crate::freeze::Target]) -> anyhow::Result<Guardian> {
        let mut child = Command::new(exe)
            .arg0(PROCESS_NAME)
            .arg("__guardian")
            .args(
                targets
                    .iter()
                    .map(|t| format!("--dir={}:{}", t.dir.0, t.dir.1)),
            )
            .args(targets.iter().map(|t| &t.mountpoint))
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
                    if tx.send(line.trim().to_string()).is_err() {
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

    fn note(&mut self, line: &str) {
        match line {
            "deadline" => self.thawed_at_deadline = true,
            "ready" => self.ready = true,
            _ => {}
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
            self.link.tell("open");
        }
        self.link.tell("ping");
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(line) if line == "pong" => {
                    if self.ready {
                        return Ok(());
                    }
                    return Err(gone("could not open the mount points".into()));
                }
                // What it opened is not what the run checked: refuse, as the
                // freeze itself would.
                Ok(line) if line.starts_with("unready ") => {
                    return Err(exit::fail(
                        exit::CONFIG,
                        format!("{}; nothing was frozen", &line["unready ".len()..]),
                    ))
                }
                Ok(line) => self.note(&line),
                Err(_) => return Err(gone("does not answer".into())),
            }
        }
    }

    /// Tell it where the locked section ends. It acts a moment after that:
    /// it is the backstop, and a run that can act releases at the deadline
    /// by itself (its own report is the more precise one).
    pub fn set_deadline(&self, left: Duration) {
        let at = left + BACKSTOP_DELAY;
        self.link
            .tell(&format!("deadline {}", at.as_millis().max(1)));
    }

    /// Whether it acted at its deadline (thawed, stopped hooks) so far. Past
    /// `deadline`, it is asked (a ping answered after everything it said
    /// before), since its word may still be on its way: a stopped run's
    /// reader thread was stopped too.
    pub fn acted_at_deadline(&mut self, deadline: Instant) -> bool {
        if Instant::now() >= deadline && !self.is_gone() {
            self.link.tell("ping");
            let end = Instant::now() + Duration::from_secs(2);
            while let Ok(line) = self
                .replies
                .recv_timeout(end.saturating_duration_since(Instant::now()))
            {
                if line == "pong" {
                    break;
                }
                self.note(&line);
            }
        }
        while let Ok(line) = self.replies.try_recv() {
            self.note(&line);
        }
        self.thawed_at_deadline
    }

    /// Nothing is left frozen and every hook we reaped was reported: tell it
    /// we are done, wait (bounded) for it to exit.
    pub fn finish(self) {
        self.link.tell("done");
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

// ------------------------------------------------------------------ the process

/// Whether a process group still has members.
fn group_alive(pgid: i32) -> bool {
    killpg(Pid::from_raw(pgid), None).is_ok()
}

struct Watch {
    dirs: Vec<File>,
    mountpoints: Vec<PathBuf>,
    /// announced[i]: told it is being frozen and not told it was thawed.
    announced: Vec<bool>,
    /// ours[i]: we thawed it since (at the deadline).
    ours: Vec<bool>,
    /// Hook process groups running now.
    hooks: Vec<i32>,
    deadline: Option<Instant>,
    released: bool,
    fired: bool,
    /// Hook groups sent SIGTERM at the deadline, to SIGKILL at this time.
    kill_at: Option<(Instant, Vec<i32>)>,
}

impl Watch {
    /// Thaw every marked filesystem, in reverse order, before anything else;
    /// the log lines are returned for afterwards (logging can block or fail).
    fn thaw(&self, marked: &[bool], why: &str) -> Vec<String> {
        let mut notes = Vec::new();
        for i in (0..self.dirs.len()).rev().filter(|i| marked[*i]) {
            let m = self.mountpoints[i].display();
            notes.push(match crate::freeze::thaw_fd(&self.dirs[i]) {
                Ok(()) => format!("{why}: thawed {m}"),
                Err(e) => format!("{why}: could not thaw {m}: {e}; run `fsfreeze -u {m}`"),
            });
        }
        notes
    }

    fn signal_hooks(&self, sig: Signal, why: &str) -> Vec<String> {
        self.hooks
            .iter()
            .filter(|g| group_alive(**g))
            .map(|g| {
                let _ = killpg(Pid::from_raw(*g), sig);
                format!("{why}: sent {sig} to hook process group {g}")
            })
            .collect()
    }

    /// We are gone: kill the hooks first (a snapshot command must not go on
    /// unlocked), then thaw everything announced.
    fn orphaned(&self, why: &str) -> Vec<String> {
        let mut notes = self.signal_hooks(Signal::SIGKILL, why);
        notes.extend(self.thaw(&self.announced, why));
        notes
    }

    fn at_deadline(&mut self, out: &mut impl Write) -> Vec<String> {
        self.fired = true;
        let why = "--max-lock-time passed";
        let mut notes = Vec::new();
        let mut acted = false;
        if !self.released && !self.hooks.is_empty() {
            notes.extend(self.signal_hooks(Signal::SIGTERM, why));
            self.kill_at = Some((Instant::now() + GRACE, self.hooks.clone()));
            acted = !notes.is_empty();
        }
        acted |= self.thaw_late(why, &mut notes);
        if acted {
            let _ = writeln!(out, "deadline").and_then(|()| out.flush());
        }
        notes
    }

    /// After the deadline, a freeze announced late is thawed too.
    fn thaw_late(&mut self, why: &str, notes: &mut Vec<String>) -> bool {
        let pending: Vec<bool> = (0..self.dirs.len())
            .map(|i| self.announced[i] && !self.ours[i])
            .collect();
        if !pending.contains(&true) {
            return false;
        }
        notes.extend(self.thaw(&pending, why));
        for (i, p) in pending.iter().enumerate() {
            self.ours[i] |= *p;
        }
        true
    }

    fn next_timer(&self) -> Option<Instant> {
        let deadline = self.deadline.filter(|_| !self.fired);
        let kill = self.kill_at.as_ref().map(|(t, _)| *t);
        match (deadline, kill) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Entry point of the hidden `__guardian` subcommand. Returns the exit status.
pub fn main(mountpoints: &[PathBuf], dirs: &[String]) -> i32 {
    use nix::sys::signal::{signal, SigHandler};
    // `ps` and `pkill` show it by this name, not as "exe" (/proc/self/exe).
    let _ = nix::sys::prctl::set_name(c"mq-guardian");
    // The OOM killer must take anything but the process that thaws.
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000\n");
    // Its own session: Ctrl-C on the terminal, or a signal to the run's
    // process group, must not reach it.
    let _ = nix::unistd::setsid();
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGPIPE,
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
    ] {
        // SAFETY: SIG_IGN installs no handler code.
        unsafe {
            let _ = signal(sig, SigHandler::SigIgn);
        }
    }
    let mut out = std::io::stdout();
    let n = mountpoints.len();
    let mut w = Watch {
        dirs: Vec::new(),
        mountpoints: mountpoints.to_vec(),
        announced: vec![false; n],
        ours: vec![false; n],
        hooks: Vec::new(),
        deadline: None,
        released: false,
        fired: false,
        kill_at: None,
    };
    let stdin = std::io::stdin();
    let mut buffer = Vec::new();
    loop {
        let timer = w.next_timer();
        let woke = crate::wait::until(&[stdin.as_fd()], false, timer);
        if woke == crate::wait::Woke::Timeout {
            let now = Instant::now();
            // Messages are handled before the deadline is acted on: a
            // "thawed" already sent is never overtaken.
            let mut notes = Vec::new();
            if let Some((at, groups)) = w.kill_at.take() {
                if now >= at {
                    for g in groups
                        .iter()
                        .filter(|g| w.hooks.contains(g) && group_alive(**g))
                    {
                        let _ = killpg(Pid::from_raw(*g), Signal::SIGKILL);
                        notes.push(format!(
                            "hook process group {g} outlived the grace: sent SIGKILL"
                        ));
                    }
                } else {
                    w.kill_at = Some((at, groups));
                }
            }
            if !w.fired && w.deadline.is_some_and(|d| now >= d) {
                notes.extend(w.at_deadline(&mut out));
            }
            log(&notes);
            continue;
        }
        let mut chunk = [0u8; 4096];
        // Straight from the fd: data left in Stdin's buffer would be invisible to poll.
        let got = match nix::unistd::read(stdin.as_fd(), &mut chunk) {
            Ok(got) => got,
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(_) => 0,
        };
        if got == 0 {
            // The run is gone without saying "done" (also: thaw what we thawed
            // at the deadline, it may have been frozen again).
            let notes = w.orphaned("mysql-quiesce exited without releasing");
            log(&notes);
            return 0;
        }
        buffer.extend_from_slice(&chunk[..got]);
        let mut notes = Vec::new();
        while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let mut words = line.split_whitespace();
            let verb = words.next().unwrap_or("");
            let number = words.next().and_then(|x| x.parse::<u64>().ok());
            let index = number.map(|x| x as usize).filter(|i| *i < w.dirs.len());
            match (verb, number, index) {
                ("done", _, _) => {
                    // "done" comes when nothing is left frozen and every hook
                    // was reaped; whatever is still marked, ending it is the safe side.
                    let notes = w.orphaned("told we are done");
                    log(&notes);
                    return 0;
                }
                ("open", _, _) if w.dirs.is_empty() => match open_all(mountpoints, dirs) {
                    Ok(dirs) => {
                        w.dirs = dirs;
                        let _ = writeln!(out, "ready").and_then(|()| out.flush());
                    }
                    Err(e) => {
                        let _ = writeln!(out, "unready {e}").and_then(|()| out.flush());
                        notes.push(e);
                    }
                },
                ("ping", _, _) => {
                    let _ = writeln!(out, "pong").and_then(|()| out.flush());
                }
                ("freezing", _, Some(i)) => {
                    w.announced[i] = true;
                    w.ours[i] = false;
                    if w.fired {
                        w.thaw_late("--max-lock-time passed", &mut notes);
                    }
                }
                ("thawed" | "failed", _, Some(i)) => w.announced[i] = false,
                ("hook", Some(g), _) => {
                    let g = g as i32;
                    w.hooks.push(g);
                    if w.fired && !w.released {
                        let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
                        notes.push(format!(
                            "hook process group {g} started after --max-lock-time: sent SIGKILL"
                        ));
                    }
                }
                ("hook-done", Some(g), _) => w.hooks.retain(|h| *h != g as i32),
                ("deadline", Some(ms), _) => {
                    w.deadline = Some(Instant::now() + Duration::from_millis(ms));
                    w.fired = false;
                }
                ("released", _, _) => w.released = true,
                _ => notes.push(format!("ignoring unexpected message {:?}", line.trim())),
            }
        }
        log(&notes);
    }
}

/// Open the mount points; with `dirs` (DEV:INO each), each must still be
/// the directory the run validated, or the guardian would watch another one.
fn open_all(mountpoints: &[PathBuf], dirs: &[String]) -> Result<Vec<File>, String> {
    use std::os::unix::fs::MetadataExt;
    mountpoints
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let f = File::open(m).map_err(|e| format!("cannot open {}: {e}", m.display()))?;
            if let Some(expected) = dirs.get(i) {
                let meta = f
                    .metadata()
                    .map_err(|e| format!("cannot examine {}: {e}", m.display()))?;
                if format!("{}:{}", meta.dev(), meta.ino()) != *expected {
                    return Err(format!(
                        "{} is no longer the filesystem that was checked before connecting (unmounted or \
                         remounted since?)",
                        m.display()
                    ));
                }
            }
            Ok(f)
        })
        .collect()
}

/// Log lines on stderr, never panicking (a closed pipe) and never waiting
/// more than a second per line (a pipe nobody reads).
fn log(lines: &[String]) {
    let stderr = std::io::stderr();
    for line in lines {
        let mut fds = [nix::poll::PollFd::new(
            stderr.as_fd(),
            nix::poll::PollFlags::POLLOUT,
        )];
        let ready = matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000u16)), Ok(n) if n > 0)
            && fds[0]
                .revents()
                .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLOUT));
        if !ready {
            return;
        }
        let text = format!(
            "mysql-quiesce guardian (pid {}): {line}\n",
            std::process::id()
        );
        let _ = stderr.lock().write_all(text.as_bytes());
    }
}
