//! Running hooks: each in its own process group, with a timeout, the
//! MYSQL_QUIESCE_* environment, stdin from /dev/null, and stdout routed either
//! to our stdout (snapshot phase) or to our stderr (every other phase).

use crate::exit;
use crate::guardian::{Link, ToGuardian};
use crate::signals;
use crate::wait::{ChildWait, Watched};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Before,
    Pre,
    Snapshot,
    Post,
    After,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::Pre => "pre",
            Phase::Snapshot => "snapshot",
            Phase::Post => "post",
            Phase::After => "after",
        }
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A hook string, run as `/bin/sh -c STRING`.
    Shell(String),
    /// The COMMAND after `--`, run as argv without a shell.
    Argv(Vec<String>),
}

impl Program {
    /// How the program is shown in progress lines and the report.
    pub fn display(&self) -> String {
        match self {
            Program::Shell(s) => s.clone(),
            Program::Argv(v) => v.join(" "),
        }
    }
}

/// Where the hook's stdout goes. Its stderr always goes to our stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdout {
    /// Our own stdout, byte for byte (snapshot hooks and COMMAND).
    Inherit,
    /// Our stderr (all other phases), so that stdout stays clean for `$(...)`.
    ToStderr,
}

#[derive(Debug, Clone)]
pub struct Hook {
    pub phase: Phase,
    pub program: Program,
    pub stdout: Stdout,
}

/// Time limits for one hook.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// --hook-timeout: the hook's own budget.
    pub timeout: Duration,
    /// --max-lock-time: the end of the locked section, if the hook runs inside it.
    pub deadline: Option<Instant>,
}

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Exited with this status (0 = success).
    Exited(i32),
    /// Killed by this signal (not by us).
    Signaled(i32),
    /// Ran past --hook-timeout; its process group was killed.
    TimedOut,
    /// The --max-lock-time deadline passed; its process group was killed.
    DeadlineExceeded,
    /// We received this signal (SIGINT, SIGTERM, ...); its process group was stopped.
    Interrupted(i32),
    /// Could not be started: the program was not found.
    NotFound(String),
    /// Could not be started: the program is not executable.
    NotExecutable(String),
    /// Could not be started for another reason.
    SpawnFailed(String),
}

impl Ending {
    pub fn success(&self) -> bool {
        *self == Ending::Exited(0)
    }

    /// The exit status this ending maps to.
    pub fn exit_code(&self) -> u8 {
        match self {
            Ending::Exited(0) => exit::OK,
            Ending::Exited(n) => u8::try_from(*n).ok().filter(|c| *c != 0).unwrap_or(1),
            Ending::Signaled(sig) | Ending::Interrupted(sig) => exit::signal(*sig),
            Ending::TimedOut | Ending::DeadlineExceeded => exit::TIMEOUT,
            Ending::NotFound(_) => exit::NOTFOUND,
            Ending::NotExecutable(_) | Ending::SpawnFailed(_) => exit::NOEXEC,
        }
    }

    /// In words, for messages and the report.
    pub fn describe(&self) -> String {
        match self {
            Ending::Exited(0) => "exited with status 0".into(),
            Ending::Exited(n) => format!("exited with status {n}"),
            Ending::Signaled(sig) => format!("was killed by signal {sig}"),
            Ending::TimedOut => "ran past --hook-timeout; its process group was killed".into(),
            Ending::DeadlineExceeded => {
                "ran past --max-lock-time; its process group was killed".into()
            }
            Ending::Interrupted(sig) => {
                format!("was stopped because mysql-quiesce received signal {sig}")
            }
            Ending::NotFound(p) => format!("could not start: {p} not found"),
            Ending::NotExecutable(p) => format!("could not start: {p} is not executable"),
            Ending::SpawnFailed(e) => format!("could not start: {e}"),
        }
    }
}

#[derive(Debug)]
pub struct HookRun {
    pub ending: Ending,
    pub duration: Duration,
    /// A hook stopped at the deadline is not waited for while the lock is
    /// held: its SIGTERM grace, SIGKILL and reaping go on in this thread.
    /// It hangs up this channel when done; the run waits for that (bounded)
    /// before exiting.
    pub stopping: Option<std::sync::mpsc::Receiver<()>>,
}

/// Time a stopped hook gets between SIGTERM and SIGKILL.
pub const GRACE: Duration = signals::KILL_GRACE;
/// How long we wait for a SIGKILLed hook to be reaped before leaving it to a
/// background thread: a process blocked on a frozen filesystem cannot die
/// until the thaw, and the thaw must not wait for it.
const REAP_WAIT: Duration = Duration::from_secs(1);
/// A process group has no descriptor that says when its last member is gone:
/// after the leader has exited, the rest of the group is checked this often
/// (only while a stopped hook's grace runs).
const GROUP_CHECK: Duration = Duration::from_millis(10);

/// Run one hook to its end. `env` is added to the inherited environment, from
/// which MYSQL_PWD is removed. A termination signal that arrives while the
/// hook runs stops it (`Ending::Interrupted`). The hook's process announces
/// itself to `guardian`, which kills it if we die.
pub fn run(
    hook: &Hook,
    env: &[(String, String)],
    limits: Limits,
    guardian: Option<&Link>,
) -> HookRun {
    let started = Instant::now();
    let signals_before = signals::count();
    let mut cmd = match &hook.program {
        Program::Shell(s) => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(s);
            c
        }
        Program::Argv(v) => {
            let mut c = Command::new(&v[0]);
            c.args(&v[1..]);
            c
        }
    };
    cmd.stdin(Stdio::null())
        .env_remove("MYSQL_PWD")
        .envs(env.iter().map(|(k, v)| (k, v)));
    if hook.stdout == Stdout::ToStderr {
        match std::io::stderr().as_fd().try_clone_to_owned() {
            Ok(fd) => {
                cmd.stdout(Stdio::from(fd));
            }
            Err(e) => {
                return HookRun {
                    ending: Ending::SpawnFailed(format!("cannot pass on stderr: {e}")),
                    duration: started.elapsed(),
                    stopping: None,
                }
            }
        }
    }
    // Its own process group, so a timeout reaches grandchildren too.
    cmd.process_group(0);
    let announce = guardian.map_or(-1, Link::raw_fd);
    // SAFETY: only async-signal-safe calls (signal, getpid, write) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            signals::reset_in_child();
            crate::guardian::announce_in_child(announce);
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let program = match &hook.program {
                Program::Shell(_) => "/bin/sh".to_string(),
                Program::Argv(v) => v[0].clone(),
            };
            let ending = match (e.kind(), e.raw_os_error()) {
                (std::io::ErrorKind::NotFound, _) => Ending::NotFound(program),
                (std::io::ErrorKind::PermissionDenied, _) | (_, Some(libc::ENOEXEC)) => {
                    Ending::NotExecutable(program)
                }
                _ => Ending::SpawnFailed(format!("{program}: {e}")),
            };
            return HookRun {
                ending,
                duration: started.elapsed(),
                stopping: None,
            };
        }
    };
    let mut child = Watched::new(child);
    let timeout_at = started + limits.timeout;
    let wake_at = limits.deadline.map_or(timeout_at, |d| d.min(timeout_at));
    let ending = loop {
        match child.wait(true, Some(wake_at)) {
            Ok(ChildWait::Exited(status)) => {
                let duration = started.elapsed();
                done(guardian, child.id());
                let mut ending = status_ending(&status);
                // Killed by a signal once the deadline had passed: the guardian
                // stopped it there (it acts at the deadline too, as a backstop).
                if matches!(ending, Ending::Signaled(_))
                    && limits.deadline.is_some_and(|d| Instant::now() >= d)
                {
                    ending = Ending::DeadlineExceeded;
                }
                return HookRun {
                    ending,
                    duration,
                    stopping: None,
                };
            }
            Ok(ChildWait::Signal) if signals::count() > signals_before => {
                break Ending::Interrupted(signals::received().unwrap_or(libc::SIGTERM));
            }
            Ok(ChildWait::Signal) => continue,
            Ok(ChildWait::Timeout) if limits.deadline.is_some_and(|d| Instant::now() >= d) => {
                break Ending::DeadlineExceeded
            }
            Ok(ChildWait::Timeout) if Instant::now() >= timeout_at => break Ending::TimedOut,
            Ok(ChildWait::Timeout) => continue,
            Err(e) => break Ending::SpawnFailed(format!("waiting for the hook: {e}")),
        }
    };
    let duration = started.elapsed();
    // Past the deadline the lock must go now: the hook's grace runs in the background.
    let wait_until = match ending {
        Ending::DeadlineExceeded => Some(Instant::now()),
        _ => limits.deadline,
    };
    let stopping = stop_group(child, guardian.cloned(), wait_until);
    HookRun {
        ending,
        duration,
        stopping,
    }
}

fn done(guardian: Option<&Link>, pid: u32) {
    if let Some(g) = guardian {
        g.tell(&ToGuardian::HookDone(pid as i32));
    }
}

fn status_ending(status: &std::process::ExitStatus) -> Ending {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Ending::Exited(code),
        (None, Some(sig)) => Ending::Signaled(sig),
        _ => Ending::SpawnFailed("unknown exit status".into()),
    }
}

/// SIGTERM the whole group, SIGKILL after the grace, and reap. Here we wait
/// at most until `until` (when given) and never for a process stuck in the
/// kernel (a write to the frozen filesystem cannot end before the thaw, and
/// the thaw comes after this returns): what is left goes on in a background
/// thread, whose channel hangs up when it is done.
fn stop_group(
    mut child: Watched,
    guardian: Option<Link>,
    until: Option<Instant>,
) -> Option<std::sync::mpsc::Receiver<()>> {
    let pgid = child.id() as i32;
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
    let grace_end = Instant::now() + GRACE;
    let inline_end = until.map_or(grace_end, |u| u.min(grace_end));
    let mut killed = false;
    match wait_group(&mut child, pgid, inline_end) {
        GroupWait::Gone => {
            done(guardian.as_ref(), child.id());
            return None;
        }
        // It cannot act on SIGTERM before the thaw: SIGKILL now (it takes
        // effect when it wakes), and do not wait for it here.
        GroupWait::Stuck => {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            killed = true;
        }
        GroupWait::Running if Instant::now() >= grace_end => {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            killed = true;
            let reap_end = Instant::now() + REAP_WAIT;
            let reap_end = until.map_or(reap_end, |u| u.min(reap_end));
            if matches!(child.wait(false, Some(reap_end)), Ok(ChildWait::Exited(_))) {
                done(guardian.as_ref(), child.id());
                return None;
            }
        }
        GroupWait::Running => {}
    }
    let (hang_up, stopped) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("hook-stopper".into())
        .spawn(move || {
            if !killed && wait_group(&mut child, pgid, grace_end) != GroupWait::Gone {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
            // Blocks until it dies: at the latest when the filesystem thaws.
            let _ = child.child.wait();
            done(guardian.as_ref(), child.id());
            drop(hang_up);
        });
    // Without a thread the guardian SIGKILLs the group when we exit.
    spawned.is_ok().then_some(stopped)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupWait {
    /// The leader has exited and the group is empty.
    Gone,
    /// The leader sleeps in the kernel (state D), e.g. on a frozen filesystem.
    Stuck,
    /// Still running at the end of the wait.
    Running,
}

/// Wait until the leader has exited and the group is empty, or `end`; give
/// up at once on a leader stuck in the kernel.
fn wait_group(child: &mut Watched, pgid: i32, end: Instant) -> GroupWait {
    // Whether it is stuck shows within moments of the SIGTERM.
    let first = (Instant::now() + STUCK_CHECK).min(end);
    if !matches!(child.wait(false, Some(first)), Ok(ChildWait::Exited(_))) {
        if in_kernel_sleep(child.id()) {
            return GroupWait::Stuck;
        }
        if !matches!(child.wait(false, Some(end)), Ok(ChildWait::Exited(_))) {
            return if in_kernel_sleep(child.id()) {
                GroupWait::Stuck
            } else {
                GroupWait::Running
            };
        }
    }
    loop {
        if !group_alive(pgid) {
            return GroupWait::Gone;
        }
        let now = Instant::now();
        if now >= end {
            return GroupWait::Running;
        }
        std::thread::sleep(GROUP_CHECK.min(end - now));
    }
}

/// How long after SIGTERM a leader is checked for being stuck in the kernel.
const STUCK_CHECK: Duration = Duration::from_millis(50);

/// Whether process `pid` is in uninterruptible sleep (state D).
fn in_kernel_sleep(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('D')))
        .unwrap_or(false)
}

fn group_alive(pgid: i32) -> bool {
    killpg(Pid::from_raw(pgid), None).is_ok()
}

/// Resolve a program name on PATH (or a path with '/'); it must be an
/// executable regular file.
pub fn resolve(program: &str) -> Result<PathBuf, Ending> {
    let executable =
        |p: &Path| p.is_file() && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok();
    if program.contains('/') {
        let p = Path::new(program);
        return if !p.exists() {
            Err(Ending::NotFound(program.into()))
        } else if executable(p) {
            Ok(p.to_path_buf())
        } else {
            Err(Ending::NotExecutable(program.into()))
        };
    }
    if let Ok(p) = which::which(program) {
        return Ok(p);
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|d| d.join(program).exists()))
        .unwrap_or(false);
    if on_path {
        Err(Ending::NotExecutable(program.into()))
    } else {
        Err(Ending::NotFound(program.into()))
    }
}

/// The program a simple shell command string runs; None for builtins,
/// keywords, or strings that cannot be judged (expansions, groups).
pub fn first_word(shell_cmd: &str) -> Option<String> {
    const NOT_A_PROGRAM: &[&str] = &[
        "!", ":", ".", "[", "[[", "break", "case", "cd", "continue", "echo", "eval", "exit",
        "export", "false", "for", "if", "printf", "read", "return", "set", "shift", "source",
        "test", "trap", "true", "type", "ulimit", "umask", "unset", "until", "wait", "while", "{",
        "(", "time",
    ];
    const PREFIXES: &[&str] = &["exec", "command", "nohup", "env", "nice", "timeout"];
    let mut words = shell_cmd.split_whitespace().peekable();
    while let Some(w) = words.next() {
        let w = w.trim_matches(|c| c == '\'' || c == '"');
        if w.is_empty() || is_assignment(w) || w.starts_with('-') {
            continue;
        }
        if PREFIXES.contains(&w) {
            // `timeout 5 cmd`: skip its duration too.
            if w == "timeout" {
                words.next();
            }
            continue;
        }
        if NOT_A_PROGRAM.contains(&w) || w.starts_with('(') || w.starts_with('{') {
            return None;
        }
        if w.contains(['$', '`', '*', '?', ';', '|', '&', '<', '>', '(', ')']) {
            return None;
        }
        return Some(w.to_string());
    }
    None
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_hook(hook: &Hook, env: &[(String, String)], limits: Limits) -> HookRun {
        run(hook, env, limits, None)
    }

    fn limits(secs: f64) -> Limits {
        Limits {
            timeout: Duration::from_secs_f64(secs),
            deadline: None,
        }
    }

    fn shell(s: &str) -> Hook {
        Hook {
            phase: Phase::Pre,
            program: Program::Shell(s.into()),
            stdout: Stdout::ToStderr,
        }
    }

    #[test]
    fn exit_status_is_passed_through() {
        assert_eq!(
            run_hook(&shell("exit 3"), &[], limits(10.0)).ending,
            Ending::Exited(3)
        );
        assert_eq!(
            run_hook(&shell("true"), &[], limits(10.0))
                .ending
                .exit_code(),
            0
        );
        assert_eq!(Ending::Exited(3).exit_code(), 3);
        assert_eq!(Ending::Exited(-1).exit_code(), 1);
    }

    #[test]
    fn environment_is_passed_and_stdin_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let cmd = format!("cat; echo \"$MYSQL_QUIESCE_PHASE\" > {}", out.display());
        let env = [("MYSQL_QUIESCE_PHASE".to_string(), "pre".to_string())];
        assert!(run_hook(&shell(&cmd), &env, limits(10.0)).ending.success());
        assert_eq!(std::fs::read_to_string(out).unwrap(), "pre\n");
    }

    #[test]
    fn timeout_kills_the_whole_process_group_including_grandchildren() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let pidfile = dir.path().join("pid");
        let cmd = format!(
            "(sleep 2; touch {}) & echo $! > {}; sleep 30",
            marker.display(),
            pidfile.display()
        );
        let t = Instant::now();
        let r = run_hook(&shell(&cmd), &[], limits(0.3));
        assert_eq!(r.ending, Ending::TimedOut);
        assert_eq!(r.ending.exit_code(), 124);
        assert!(t.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            nix::sys::signal::kill(Pid::from_raw(pid), None).is_err(),
            "grandchild still alive"
        );
        std::thread::sleep(Duration::from_millis(2200));
        assert!(!marker.exists());
    }

    /// Whether `pid` is still a live process (a zombie is dead).
    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
            .unwrap_or(false)
    }

    #[test]
    fn a_hook_that_ignores_sigterm_is_killed_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let cmd = format!(
            "trap '' TERM; sleep 30 & echo \"$$ $!\" > {}; wait",
            pids.display()
        );
        let t = Instant::now();
        let r = run_hook(&shell(&cmd), &[], limits(0.3));
        assert_eq!(r.ending, Ending::TimedOut);
        assert!(t.elapsed() >= GRACE, "SIGKILL came before the grace ended");
        assert!(t.elapsed() < GRACE + REAP_WAIT + Duration::from_secs(2));
        let text = std::fs::read_to_string(&pids).unwrap();
        for pid in text.split_whitespace().map(|p| p.parse::<i32>().unwrap()) {
            let end = Instant::now() + Duration::from_secs(1);
            while alive(pid) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(
                !alive(pid),
                "process {pid} of the hook survived SIGTERM + SIGKILL"
            );
        }
    }

    #[test]
    fn deadline_ends_the_hook_before_its_own_timeout() {
        let l = Limits {
            timeout: Duration::from_secs(30),
            deadline: Some(Instant::now() + Duration::from_millis(200)),
        };
        assert_eq!(
            run_hook(&shell("sleep 30"), &[], l).ending,
            Ending::DeadlineExceeded
        );
    }

    #[test]
    fn argv_programs_that_cannot_start_are_not_found_or_not_executable() {
        let argv = |v: &[&str]| Hook {
            phase: Phase::Snapshot,
            program: Program::Argv(v.iter().map(|s| s.to_string()).collect()),
            stdout: Stdout::ToStderr,
        };
        let r = run_hook(&argv(&["/nonexistent/prog"]), &[], limits(5.0));
        assert_eq!(r.ending.exit_code(), 127);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("plain");
        std::fs::write(&f, "x").unwrap();
        let r = run_hook(&argv(&[f.to_str().unwrap()]), &[], limits(5.0));
        assert_eq!(r.ending.exit_code(), 126);
    }

    #[test]
    fn resolve_distinguishes_missing_from_not_executable() {
        assert!(resolve("sh").is_ok());
        assert!(matches!(
            resolve("no-such-program-xyz"),
            Err(Ending::NotFound(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("plain");
        std::fs::write(&f, "x").unwrap();
        assert!(matches!(
            resolve(f.to_str().unwrap()),
            Err(Ending::NotExecutable(_))
        ));
    }

    #[test]
    fn first_word_finds_the_program_of_simple_commands() {
        assert_eq!(
            first_word("aws ec2 create-snapshot --x y").as_deref(),
            Some("aws")
        );
        assert_eq!(
            first_word("FOO=1 BAR=2 /usr/sbin/lvcreate -s").as_deref(),
            Some("/usr/sbin/lvcreate")
        );
        assert_eq!(
            first_word("exec timeout 5 'xfs_freeze' -f /x").as_deref(),
            Some("xfs_freeze")
        );
        assert_eq!(first_word("echo hi"), None);
        assert_eq!(first_word("$CMD arg"), None);
        assert_eq!(first_word("(cd /x && make)"), None);
        assert_eq!(first_word("  "), None);
    }
}
