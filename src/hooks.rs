//! Running hooks: each in its own process group, with a timeout, the
//! MYSQL_QUIESCE_* environment, stdin from /dev/null, and stdout routed either
//! to our stdout (snapshot phase) or to our stderr (every other phase).

use crate::exit;
use crate::signals;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
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

#[derive(Debug, Clone)]
pub struct HookRun {
    pub ending: Ending,
    pub duration: Duration,
}

/// Time a stopped hook gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);
/// How long we wait for a SIGKILLed hook to be reaped before leaving it to a
/// background thread: a process blocked on a frozen filesystem cannot die
/// until the thaw, and the thaw must not wait for it.
const REAP_WAIT: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(10);

/// Run one hook to its end. `env` is added to the inherited environment, from
/// which MYSQL_PWD is removed. A termination signal that arrives while the
/// hook runs stops it (`Ending::Interrupted`).
pub fn run(hook: &Hook, env: &[(String, String)], limits: Limits) -> HookRun {
    let started = Instant::now();
    let signals_before = signals::count();
    let expression = match &hook.program {
        Program::Shell(s) => duct::cmd("/bin/sh", ["-c", s.as_str()]),
        Program::Argv(v) => duct::cmd(&v[0], &v[1..]),
    };
    let mut expression = expression
        .stdin_null()
        .env_remove("MYSQL_PWD")
        .unchecked()
        .before_spawn(|cmd| {
            // Its own process group, so a timeout reaches grandchildren too.
            cmd.process_group(0);
            Ok(())
        });
    if hook.stdout == Stdout::ToStderr {
        expression = expression.stdout_to_stderr();
    }
    for (k, v) in env {
        expression = expression.env(k, v);
    }
    let handle = match expression.start() {
        Ok(h) => h,
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
            };
        }
    };
    let pgid = handle.pids().first().map(|p| *p as i32);
    let timeout_at = started + limits.timeout;
    let ending = loop {
        match handle.try_wait() {
            Ok(Some(output)) => break status_ending(&output.status),
            Ok(None) => {}
            Err(e) => break Ending::SpawnFailed(format!("waiting for the hook: {e}")),
        }
        let now = Instant::now();
        let stop = if signals::count() > signals_before {
            Some(Ending::Interrupted(
                signals::received().unwrap_or(libc::SIGTERM),
            ))
        } else if limits.deadline.is_some_and(|d| now >= d) {
            Some(Ending::DeadlineExceeded)
        } else if now >= timeout_at {
            Some(Ending::TimedOut)
        } else {
            None
        };
        if let Some(ending) = stop {
            if let Some(pgid) = pgid {
                stop_group(pgid, handle);
            }
            break ending;
        }
        std::thread::sleep(POLL);
    };
    HookRun {
        ending,
        duration: started.elapsed(),
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

/// SIGTERM the whole group, SIGKILL after the grace, and reap for a bounded
/// time; whatever is left is reaped by a background thread.
fn stop_group(pgid: i32, handle: duct::Handle) {
    let group = Pid::from_raw(pgid);
    let _ = killpg(group, Signal::SIGTERM);
    let end = Instant::now() + GRACE;
    while Instant::now() < end {
        if matches!(handle.try_wait(), Ok(Some(_))) && !group_alive(group) {
            return;
        }
        std::thread::sleep(POLL);
    }
    let _ = killpg(group, Signal::SIGKILL);
    let end = Instant::now() + REAP_WAIT;
    while Instant::now() < end {
        if matches!(handle.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(POLL);
    }
    std::thread::spawn(move || {
        let _ = handle.wait();
    });
}

fn group_alive(group: Pid) -> bool {
    killpg(group, None).is_ok()
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
            run(&shell("exit 3"), &[], limits(10.0)).ending,
            Ending::Exited(3)
        );
        assert_eq!(run(&shell("true"), &[], limits(10.0)).ending.exit_code(), 0);
        assert_eq!(Ending::Exited(3).exit_code(), 3);
        assert_eq!(Ending::Exited(-1).exit_code(), 1);
    }

    #[test]
    fn environment_is_passed_and_stdin_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let cmd = format!("cat; echo \"$MYSQL_QUIESCE_PHASE\" > {}", out.display());
        let env = [("MYSQL_QUIESCE_PHASE".to_string(), "pre".to_string())];
        assert!(run(&shell(&cmd), &env, limits(10.0)).ending.success());
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
        let r = run(&shell(&cmd), &[], limits(0.3));
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

    #[test]
    fn a_hook_that_ignores_sigterm_is_killed_after_the_grace() {
        let t = Instant::now();
        let r = run(&shell("trap '' TERM; sleep 30"), &[], limits(0.2));
        assert_eq!(r.ending, Ending::TimedOut);
        assert!(t.elapsed() < GRACE + REAP_WAIT + Duration::from_secs(2));
    }

    #[test]
    fn deadline_ends_the_hook_before_its_own_timeout() {
        let l = Limits {
            timeout: Duration::from_secs(30),
            deadline: Some(Instant::now() + Duration::from_millis(200)),
        };
        assert_eq!(
            run(&shell("sleep 30"), &[], l).ending,
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
        let r = run(&argv(&["/nonexistent/prog"]), &[], limits(5.0));
        assert_eq!(r.ending.exit_code(), 127);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("plain");
        std::fs::write(&f, "x").unwrap();
        let r = run(&argv(&[f.to_str().unwrap()]), &[], limits(5.0));
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
