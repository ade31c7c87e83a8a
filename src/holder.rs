//! Split lock/unlock and hold modes, for pre/post-script frameworks (AWS DLM,
//! Google Cloud, Azure Backup, Velero) and shell scripts that take the
//! snapshot in separate commands.
//!
//! A lock cannot outlive its connection, so `lock` starts a detached holder
//! process (our own binary, same arguments, told by MYSQL_QUIESCE_HOLDER_FD
//! where to report readiness) that runs the ordinary sequence with a
//! `Waiter` in place of the snapshot step: it locks, reads coordinates,
//! freezes, reports ready, then waits for `unlock` on a root-only unix socket
//! in the state directory, or for --max-lock-time. `hold` is the same sequence
//! in the foreground, waiting for EOF on stdin or SIGTERM/SIGINT.

use crate::cli::Cli;
use crate::exit;
use crate::report::{self, Progress, Report};
use crate::signals;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// Environment variable that makes a `lock` process the holder: the number
/// of the pipe fd to report readiness on.
pub const HOLDER_FD: &str = "MYSQL_QUIESCE_HOLDER_FD";

/// How waiting for the release ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitEnd {
    /// `unlock`, EOF on stdin, or SIGTERM/SIGINT in `hold`.
    Released,
    /// --max-lock-time passed first.
    Deadline,
    /// A termination signal that is not a release request.
    Signal(i32),
}

/// What takes the place of the snapshot step in `lock` and `hold`.
pub trait Waiter {
    /// Locked (and frozen): tell whoever waits, with the hook variables.
    fn ready(&mut self, env: &BTreeMap<String, String>);
    /// Wait for the release request or the deadline.
    fn wait(&mut self, deadline: Instant) -> WaitEnd;
    /// The run is over: hand its outcome to whoever asks.
    fn finished(&mut self, code: u8, message: Option<&str>, report: &Report);
}

/// Shell-quoted `KEY='value'`.
fn shell_pair(k: &str, v: &str) -> String {
    format!("{k}='{}'", v.replace('\'', r"'\''"))
}

// ------------------------------------------------------------------ hold

/// `hold`: one ready line on stdout, then wait for EOF on stdin or SIGTERM/SIGINT.
pub struct StdinWaiter;

impl Waiter for StdinWaiter {
    fn ready(&mut self, env: &BTreeMap<String, String>) {
        let pairs: Vec<String> = env.iter().map(|(k, v)| shell_pair(k, v)).collect();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "READY {}", pairs.join(" "));
        let _ = out.flush();
    }

    fn wait(&mut self, deadline: Instant) -> WaitEnd {
        let stdin = std::io::stdin();
        loop {
            if let Some(sig) = signals::take() {
                return if sig == libc::SIGTERM || sig == libc::SIGINT {
                    WaitEnd::Released
                } else {
                    WaitEnd::Signal(sig)
                };
            }
            if Instant::now() >= deadline {
                return WaitEnd::Deadline;
            }
            let mut fds = [nix::poll::PollFd::new(
                stdin.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)) {
                Ok(0) | Err(_) => continue,
                Ok(_) => {}
            }
            let mut chunk = [0u8; 512];
            match stdin.lock().read(&mut chunk) {
                Ok(0) => return WaitEnd::Released,
                Ok(_) => {} // anything written to us is ignored; EOF is the signal
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return WaitEnd::Released,
            }
        }
    }

    fn finished(&mut self, _code: u8, _message: Option<&str>, _report: &Report) {}
}

// ------------------------------------------------------------------ state directory

struct State {
    dir: PathBuf,
}

impl State {
    fn new(dir: &Path) -> State {
        State {
            dir: dir.to_path_buf(),
        }
    }
    fn socket(&self) -> PathBuf {
        self.dir.join("holder.sock")
    }
    fn pid(&self) -> PathBuf {
        self.dir.join("holder.pid")
    }
    fn log(&self) -> PathBuf {
        self.dir.join("holder.log")
    }
    fn last_result(&self) -> PathBuf {
        self.dir.join("last-result.json")
    }

    /// Create the directory, root-only.
    fn create(&self) -> anyhow::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .and_then(|_| std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700)))
            .map_err(|e| {
                exit::fail(
                    exit::CONFIG,
                    format!("cannot create the state directory {}: {e} (it must be root's; see --state-dir)", self.dir.display()),
                )
            })
    }

    /// The pid of the running holder, if any. A pid file whose process is gone is stale.
    fn holder(&self) -> Holder {
        let Ok(text) = std::fs::read_to_string(self.pid()) else {
            return Holder::None;
        };
        let mut words = text.split_whitespace();
        let pid: i32 = words.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let since = words.next().unwrap_or("").to_string();
        let alive = pid > 0 && process_alive(pid);
        if alive {
            Holder::Running { pid, since }
        } else {
            Holder::Stale { pid }
        }
    }

    fn clean(&self) {
        let _ = std::fs::remove_file(self.socket());
        let _ = std::fs::remove_file(self.pid());
    }
}

/// Alive and not a zombie (a killed holder whose parent is gone may not be reaped yet).
fn process_alive(pid: i32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start())
            .is_some_and(|r| !r.starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

enum Holder {
    None,
    Running { pid: i32, since: String },
    Stale { pid: i32 },
}

// ------------------------------------------------------------------ lock (client side)

/// `lock`: start the holder and return once it holds the lock (exit 0, the
/// variables on stdout) or has failed (its exit status; nothing left behind).
pub fn lock_command(cli: &Cli, argv: &[OsString], json: bool, progress: &Progress) -> u8 {
    let state = State::new(&cli.state_dir);
    if let Err(e) = state.create() {
        progress.error(format!("{e:#}"));
        return exit::code_of(&e);
    }
    match state.holder() {
        Holder::Running { pid, since } => {
            progress.error(format!(
                "a holder (pid {pid}, since {since}) already holds the lock; run `mysql-quiesce unlock` first. Nothing was done"
            ));
            return exit::TEMPFAIL;
        }
        Holder::Stale { pid } => {
            progress.warn(format!(
                "removing the state of holder pid {pid}, which died without releasing through `unlock` (its guardian thawed its filesystems; the server dropped its lock)"
            ));
            state.clean();
        }
        Holder::None => {}
    }
    if std::fs::remove_file(state.last_result()).is_ok() {
        progress.warn("discarding the result of an earlier lock that no `unlock` collected");
    }
    let (read_end, write_end) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => {
            progress.error(format!("cannot create a pipe: {e}"));
            return exit::SOFTWARE;
        }
    };
    let log = match File::create(state.log()) {
        Ok(f) => f,
        Err(e) => {
            progress.error(format!("cannot create {}: {e}", state.log().display()));
            return exit::CONFIG;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            progress.error(format!("cannot find our own executable: {e}"));
            return exit::SOFTWARE;
        }
    };
    // The holder gets the same arguments minus any password, which goes in
    // its (root-only readable) environment instead: it cannot prompt.
    let mut args: Vec<OsString> = Vec::new();
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
    let mut cmd = Command::new(exe);
    cmd.args(&args)
        .env(HOLDER_FD, write_end.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    if let Some(pw) = &cli.password {
        cmd.env("MYSQL_PWD", pw);
    }
    // SAFETY: setsid is async-signal-safe; it detaches the holder from our
    // session so it outlives us and the terminal.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(write_end);
    if let Err(e) = child {
        progress.error(format!("cannot start the holder: {e}"));
        return exit::SOFTWARE;
    }
    // One line: the holder's children (guardian, hooks) must not keep us waiting for EOF.
    let mut message = String::new();
    let _ = BufReader::new(File::from(read_end)).read_line(&mut message);
    let v: serde_json::Value = match serde_json::from_str(&message) {
        Ok(v) => v,
        Err(_) => {
            progress.error(format!(
                "the holder exited without reporting; see {} (nothing is held)",
                state.log().display()
            ));
            return exit::SOFTWARE;
        }
    };
    if v["ok"] == true {
        let env = v["env"].as_object().cloned().unwrap_or_default();
        if json {
            println!("{}", serde_json::Value::Object(env));
        } else {
            for (k, val) in &env {
                println!("{}", shell_pair(k, val.as_str().unwrap_or("")));
            }
        }
        progress.info(format!(
            "locked by holder pid {}; run `mysql-quiesce unlock` within --max-lock-time ({} s)",
            v["pid"], cli.max_lock_time
        ));
        exit::OK
    } else {
        let code = v["code"].as_u64().unwrap_or(70) as u8;
        progress.error(format!(
            "{} (nothing is held; holder log: {})",
            v["message"].as_str().unwrap_or("locking failed"),
            state.log().display()
        ));
        code
    }
}

// ------------------------------------------------------------------ the holder

/// The holder's side: serves `status` and `unlock` on the socket.
pub struct HolderWaiter {
    state: State,
    ready_pipe: Option<File>,
    listener: Option<UnixListener>,
    client: Option<UnixStream>,
    env: BTreeMap<String, String>,
    started: SystemTime,
    deadline: Option<Instant>,
    max_lock_time: f64,
}

impl HolderWaiter {
    /// Called in the holder process (MYSQL_QUIESCE_HOLDER_FD set).
    pub fn from_environment(cli: &Cli) -> anyhow::Result<HolderWaiter> {
        let fd: i32 = std::env::var(HOLDER_FD)
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| exit::fail(exit::SOFTWARE, "bad MYSQL_QUIESCE_HOLDER_FD"))?;
        std::env::remove_var(HOLDER_FD);
        // SAFETY: the fd was created for us by the `lock` process and is ours alone.
        let ready_pipe = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        // Not for our children (guardian, hooks).
        nix::fcntl::fcntl(
            &ready_pipe,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
        let state = State::new(&cli.state_dir);
        let listener = UnixListener::bind(state.socket()).map_err(|e| {
            exit::fail(
                exit::SOFTWARE,
                format!("cannot listen on {}: {e}", state.socket().display()),
            )
        })?;
        let _ = std::fs::set_permissions(state.socket(), std::fs::Permissions::from_mode(0o600));
        listener.set_nonblocking(true)?;
        let now = report::rfc3339(SystemTime::now());
        std::fs::write(state.pid(), format!("{} {now}\n", std::process::id()))?;
        Ok(HolderWaiter {
            state,
            ready_pipe: Some(ready_pipe),
            listener: Some(listener),
            client: None,
            env: BTreeMap::new(),
            started: SystemTime::now(),
            deadline: None,
            max_lock_time: cli.max_lock_time,
        })
    }

    fn status_json(&self) -> serde_json::Value {
        let left = self
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()).as_secs_f64());
        serde_json::json!({
            "running": true,
            "pid": std::process::id(),
            "since": report::rfc3339(self.started),
            "held_seconds": self.started.elapsed().unwrap_or_default().as_secs_f64(),
            "seconds_left": left,
            "max_lock_time": self.max_lock_time,
            "lock": self.env.get("MYSQL_QUIESCE_LOCK"),
            "frozen": self.env.get("MYSQL_QUIESCE_FROZEN"),
            "env": self.env,
        })
    }

    /// Serve one connection; true when it asked for the release (kept as client).
    fn serve(&mut self, stream: UnixStream) -> bool {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut line = String::new();
        let _ = BufReader::new(&stream).read_line(&mut line);
        match line.trim() {
            "unlock" => {
                self.client = Some(stream);
                true
            }
            "status" => {
                let mut s = stream;
                let _ = writeln!(s, "{}", self.status_json());
                false
            }
            _ => false,
        }
    }
}

impl Waiter for HolderWaiter {
    fn ready(&mut self, env: &BTreeMap<String, String>) {
        self.env = env.clone();
        self.started = SystemTime::now();
        if let Some(mut pipe) = self.ready_pipe.take() {
            let msg = serde_json::json!({ "ok": true, "pid": std::process::id(), "env": env });
            let _ = writeln!(pipe, "{msg}");
        }
    }

    fn wait(&mut self, deadline: Instant) -> WaitEnd {
        self.deadline = Some(deadline);
        loop {
            if let Some(sig) = signals::received() {
                return WaitEnd::Signal(sig);
            }
            if Instant::now() >= deadline {
                return WaitEnd::Deadline;
            }
            let accepted = self.listener.as_ref().map(|l| l.accept());
            match accepted {
                Some(Ok((stream, _))) => {
                    if self.serve(stream) {
                        return WaitEnd::Released;
                    }
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn finished(&mut self, code: u8, message: Option<&str>, report: &Report) {
        // Stop accepting first: `unlock`/`status` now see no holder.
        self.listener = None;
        self.state.clean();
        let outcome = serde_json::json!({
            "ok": code == exit::OK,
            "code": code,
            "message": message,
            "finished_at": report.finished_at,
            "consistent": report.consistent,
            "lock_held_ms": report.lock.held_ms,
        });
        if let Some(mut pipe) = self.ready_pipe.take() {
            // Never got ready: the `lock` command reports the failure.
            let _ = writeln!(pipe, "{outcome}");
        } else if let Some(mut client) = self.client.take() {
            let _ = writeln!(client, "{outcome}");
        } else {
            // Released by the deadline or a signal: keep it for the later `unlock`.
            let _ =
                report::write_atomic(&self.state.last_result(), format!("{outcome}\n").as_bytes());
        }
    }
}

// ------------------------------------------------------------------ unlock and status

fn ask(state: &State, request: &str, timeout: Option<Duration>) -> Option<serde_json::Value> {
    let mut stream = UnixStream::connect(state.socket()).ok()?;
    stream.set_read_timeout(timeout).ok()?;
    writeln!(stream, "{request}").ok()?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).ok()?;
    serde_json::from_str(&reply).ok()
}

/// `unlock`: exit 0 only if the lock was held continuously from lock to unlock.
pub fn unlock_command(cli: &Cli, progress: &Progress) -> u8 {
    let state = State::new(&cli.state_dir);
    let reply = match state.holder() {
        Holder::Running { pid, .. } => match ask(&state, "unlock", None) {
            Some(v) => v,
            None => {
                progress.error(format!(
                    "holder pid {pid} did not answer on {}; its filesystems are thawed by its guardian at --max-lock-time",
                    state.socket().display()
                ));
                return exit::SOFTWARE;
            }
        },
        Holder::Stale { pid } => {
            state.clean();
            if let Some(code) = collect_last_result(&state, progress) {
                return code;
            }
            progress.error(format!(
                "CONSISTENCY NOT GUARANTEED: holder pid {pid} died while holding the lock (its guardian thawed its \
                 filesystems; the server dropped its lock): do not trust a snapshot taken since `lock`"
            ));
            return exit::INCONSISTENT;
        }
        Holder::None => {
            if let Some(code) = collect_last_result(&state, progress) {
                return code;
            }
            progress.error(format!(
                "no holder is running and no result is waiting in {}: nothing to unlock (was `mysql-quiesce lock` run, with the same --state-dir?)",
                state.dir.display()
            ));
            return exit::UNAVAILABLE;
        }
    };
    report_outcome(&reply, progress, "unlocked")
}

fn report_outcome(v: &serde_json::Value, progress: &Progress, what: &str) -> u8 {
    let code = v["code"].as_u64().unwrap_or(70) as u8;
    if code == exit::OK {
        let held = v["lock_held_ms"]
            .as_f64()
            .map(|ms| format!("; lock held {:.0} ms", ms))
            .unwrap_or_default();
        progress.info(format!(
            "{what}: lock held continuously, snapshot consistent{held}"
        ));
    } else {
        progress.error(
            v["message"]
                .as_str()
                .unwrap_or("the holder failed")
                .to_string(),
        );
    }
    code
}

/// A result the holder left because nobody unlocked in time.
fn collect_last_result(state: &State, progress: &Progress) -> Option<u8> {
    let text = std::fs::read_to_string(state.last_result()).ok()?;
    let _ = std::fs::remove_file(state.last_result());
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    progress.warn(format!(
        "the holder had already released everything by itself at {}",
        v["finished_at"].as_str().unwrap_or("?")
    ));
    Some(report_outcome(&v, progress, "released"))
}

/// `status`: exit 0 and details when a holder runs, 3 when none does.
pub fn status_command(cli: &Cli, json: bool, progress: &Progress) -> u8 {
    let state = State::new(&cli.state_dir);
    let status = match state.holder() {
        Holder::Running { .. } => ask(&state, "status", Some(Duration::from_secs(5))),
        _ => None,
    };
    match status {
        Some(v) => {
            if json {
                println!("{v}");
            } else {
                println!(
                    "holder: running, pid {}, since {}",
                    v["pid"],
                    v["since"].as_str().unwrap_or("?")
                );
                println!(
                    "lock: {}, held {:.1} s",
                    v["lock"].as_str().unwrap_or("?"),
                    v["held_seconds"].as_f64().unwrap_or(0.0)
                );
                if let Some(left) = v["seconds_left"].as_f64() {
                    println!("released by itself in {left:.1} s (--max-lock-time) unless unlocked");
                }
                let frozen = v["frozen"].as_str().unwrap_or("");
                println!(
                    "frozen: {}",
                    if frozen.is_empty() { "nothing" } else { frozen }
                );
                for k in [
                    "MYSQL_QUIESCE_CONNECTION_ID",
                    "MYSQL_QUIESCE_BINLOG_FILE",
                    "MYSQL_QUIESCE_BINLOG_POS",
                    "MYSQL_QUIESCE_GTID",
                ] {
                    println!("{}", shell_pair(k, v["env"][k].as_str().unwrap_or("")));
                }
            }
            exit::OK
        }
        None => {
            let waiting = state.last_result().exists();
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "running": false, "result_waiting": waiting })
                );
            } else {
                println!(
                    "holder: not running{}",
                    if waiting {
                        " (a result waits for `unlock`)"
                    } else {
                        ""
                    }
                );
            }
            let _ = progress;
            3
        }
    }
}
