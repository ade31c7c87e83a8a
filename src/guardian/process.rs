//! The guardian process itself (`__guardian`): it reads what the run tells
//! it and acts when the run cannot (see the module above).

use super::message::{FromGuardian, ToGuardian};
use super::GRACE;
use crate::fsfreeze::thaw_fd;
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Instant;

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
            notes.push(match thaw_fd(&self.dirs[i]) {
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
            .map(|g| match killpg(Pid::from_raw(*g), sig) {
                Ok(()) => format!("{why}: sent {sig} to hook process group {g}"),
                Err(e) => format!("{why}: could NOT send {sig} to hook process group {g}: {e}"),
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
            let _ = writeln!(out, "{}", FromGuardian::Deadline).and_then(|()| out.flush());
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

/// Entry point of the guardian (`__guardian`, see `Mode::guardian`). Returns the exit status.
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
        if crate::wait::until(&[stdin.as_fd()], false, w.next_timer()) == crate::wait::Woke::Timeout
        {
            let notes = w.on_timer(&mut out);
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
            log(&w.orphaned("mysql-quiesce exited without releasing"));
            return 0;
        }
        buffer.extend_from_slice(&chunk[..got]);
        let mut notes = Vec::new();
        while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            match ToGuardian::parse(&line) {
                // "done" comes when nothing is left frozen and every hook was
                // reaped; whatever is still marked, ending it is the safe side.
                Some(ToGuardian::Done) => {
                    notes.extend(w.orphaned("told we are done"));
                    log(&notes);
                    return 0;
                }
                Some(message) => w.on_message(message, dirs, &mut out, &mut notes),
                None => notes.push(format!("ignoring unexpected message {:?}", line.trim())),
            }
        }
        log(&notes);
    }
}

impl Watch {
    /// The deadline or the end of the hooks' grace has come.
    fn on_timer(&mut self, out: &mut impl Write) -> Vec<String> {
        let now = Instant::now();
        // Messages are handled before the deadline is acted on: a
        // "thawed" already sent is never overtaken.
        let mut notes = Vec::new();
        if let Some((at, groups)) = self.kill_at.take() {
            if now >= at {
                for g in groups
                    .iter()
                    .filter(|g| self.hooks.contains(g) && group_alive(**g))
                {
                    let _ = killpg(Pid::from_raw(*g), Signal::SIGKILL);
                    notes.push(format!(
                        "hook process group {g} outlived the grace: sent SIGKILL"
                    ));
                }
            } else {
                self.kill_at = Some((at, groups));
            }
        }
        if !self.fired && self.deadline.is_some_and(|d| now >= d) {
            notes.extend(self.at_deadline(out));
        }
        notes
    }

    /// One message from the run (`Done` is the caller's).
    fn on_message(
        &mut self,
        message: ToGuardian,
        dirs: &[String],
        out: &mut impl Write,
        notes: &mut Vec<String>,
    ) {
        let mut answer = |reply: FromGuardian| {
            let _ = writeln!(out, "{reply}").and_then(|()| out.flush());
        };
        if let ToGuardian::Freezing(i) | ToGuardian::Thawed(i) | ToGuardian::Failed(i) = message {
            if i >= self.dirs.len() {
                notes.push(format!(
                    "ignoring \"{message}\": no filesystem number {i} is open"
                ));
                return;
            }
        }
        match message {
            ToGuardian::Open if self.dirs.is_empty() => match open_all(&self.mountpoints, dirs) {
                Ok(opened) => {
                    self.dirs = opened;
                    answer(FromGuardian::Ready);
                }
                Err(e) => {
                    answer(FromGuardian::Unready(e.clone()));
                    notes.push(e);
                }
            },
            ToGuardian::Open => answer(FromGuardian::Ready),
            ToGuardian::Ping => answer(FromGuardian::Pong),
            ToGuardian::Freezing(i) => {
                self.announced[i] = true;
                self.ours[i] = false;
                if self.fired {
                    self.thaw_late("--max-lock-time passed", notes);
                }
            }
            ToGuardian::Thawed(i) | ToGuardian::Failed(i) => self.announced[i] = false,
            ToGuardian::Hook(g) => {
                self.hooks.push(g);
                if self.fired && !self.released {
                    let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
                    notes.push(format!(
                        "hook process group {g} started after --max-lock-time: sent SIGKILL"
                    ));
                }
            }
            ToGuardian::HookDone(g) => self.hooks.retain(|h| *h != g),
            ToGuardian::Deadline(after) => {
                self.deadline = Some(Instant::now() + after);
                self.fired = false;
            }
            ToGuardian::Released => self.released = true,
            ToGuardian::Done => {}
        }
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
