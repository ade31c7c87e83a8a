//! Running hooks: each in its own process group, with a timeout, the
//! MYSQL_QUIESCE_* environment, stdin from /dev/null, and stdout routed either
//! to our stdout (snapshot phase) or to our stderr (every other phase).

use serde::Serialize;
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
        todo!()
    }

    /// In words, for messages and the report.
    pub fn describe(&self) -> String {
        todo!()
    }
}

/// Resolve a program name on PATH (or a path with '/'); it must be an executable file.
pub fn resolve(program: &str) -> Result<std::path::PathBuf, Ending> {
    let _ = program;
    todo!()
}

/// The program a simple shell command string runs; None for builtins or
/// strings that cannot be judged.
pub fn first_word(shell_cmd: &str) -> Option<String> {
    let _ = shell_cmd;
    todo!()
}

#[derive(Debug, Clone)]
pub struct HookRun {
    pub ending: Ending,
    pub started: Instant,
    pub duration: Duration,
}

/// Run one hook to its end. `env` is added to the inherited environment, from
/// which MYSQL_PWD (and any other password) is removed.
pub fn run(hook: &Hook, env: &[(String, String)], limits: Limits) -> HookRun {
    let _ = (hook, env, limits);
    todo!("hooks::run")
}
