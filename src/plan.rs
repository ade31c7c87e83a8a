//! Everything decided before anything is touched: option values, the
//! COMMAND and hook programs, freeze targets, the connection. `prepare` is
//! the preflight every run goes through; `describe` is --dry-run's output;
//! `check` is --check (connects, but locks and freezes nothing).

use crate::cli::{Cli, LockMode};
use crate::exit;
use crate::freeze::{self, Protected, Target};
use crate::hooks::{self, Ending};
use crate::report::Progress;
use crate::runlock;
use crate::server::connect::ConnectSpec;
use crate::server::lock::{strategy, LockConfig};
use crate::server::LockSession;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The checked, resolved inputs of a run.
#[derive(Debug)]
pub struct Prepared {
    /// None with --lock=none: no connection is made.
    pub connect: Option<ConnectSpec>,
    pub lock: LockConfig,
    pub freeze: Vec<Target>,
    /// COMMAND's resolved program.
    pub command_path: Option<PathBuf>,
}

pub fn lock_name(mode: LockMode) -> &'static str {
    match mode {
        LockMode::Ftwrl => "ftwrl",
        LockMode::None => "none",
    }
}

fn seconds(name: &str, value: f64, allow_zero: bool) -> anyhow::Result<Duration> {
    let ok = value.is_finite() && (value > 0.0 || (allow_zero && value == 0.0)) && value < 1e9;
    if !ok {
        let what = if allow_zero {
            "zero or a positive"
        } else {
            "a positive"
        };
        return Err(exit::fail(
            exit::CONFIG,
            format!("--{name} must be {what} number of seconds, not {value}"),
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

/// Absolute form of a path that may not exist yet (its directory must).
fn absolute(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let parent = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match (parent.canonicalize(), p.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf()),
    }
}

/// Regular files our stdout/stderr are redirected to: writing to them while
/// their filesystem is frozen would hang us.
fn redirected_outputs() -> Vec<PathBuf> {
    [1, 2]
        .iter()
        .filter_map(|fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).ok())
        .filter(|p| p.is_file())
        .collect()
}

fn resolve_program(what: &str, program: &str) -> anyhow::Result<PathBuf> {
    hooks::resolve(program).map_err(|ending| {
        let code = ending.exit_code();
        let why = match ending {
            Ending::NotFound(_) => "was not found on PATH",
            Ending::NotExecutable(_) => "is not executable",
            _ => "cannot be run",
        };
        exit::fail(
            code,
            format!(
                "{what} `{program}` {why} (PATH={}); nothing was locked or frozen",
                std::env::var("PATH").unwrap_or_default()
            ),
        )
    })
}

/// Preflight: validate everything that can be validated without side effects.
pub fn prepare(cli: &Cli) -> anyhow::Result<Prepared> {
    let lock = LockConfig {
        mode: cli.lock,
        wait: seconds("lock-wait-timeout", cli.lock_wait_timeout, false)?,
        retries: cli.lock_retries,
        retry_delay: seconds("lock-retry-delay", cli.lock_retry_delay, true)?,
    };
    seconds("max-lock-time", cli.max_lock_time, false)?;
    seconds("hook-timeout", cli.hook_timeout, false)?;
    if cli.lock == LockMode::None && cli.coordinates_file.is_some() {
        return Err(exit::fail(
            exit::CONFIG,
            "--coordinates-file needs a database lock: coordinates read without one do not match the snapshot; \
             drop --lock=none or the coordinates file",
        ));
    }
    let command_path = match cli.command.first() {
        Some(program) => Some(resolve_program("COMMAND", program)?),
        None => None,
    };

    let mut freeze_targets = Vec::new();
    if !cli.freeze.is_empty() {
        let mut protected: Vec<(PathBuf, Protected)> = Vec::new();
        if let Ok(cwd) = std::env::current_dir() {
            protected.push((cwd, Protected::CurrentDir));
        }
        for out in [&cli.report, &cli.coordinates_file].into_iter().flatten() {
            protected.push((absolute(out), Protected::OutputFile));
        }
        for out in redirected_outputs() {
            protected.push((out, Protected::OutputFile));
        }
        protected.push((PathBuf::from("/bin/sh"), Protected::HookCommand));
        let hook_programs = [&cli.pre, &cli.snapshot, &cli.post]
            .into_iter()
            .flatten()
            .filter_map(|h| hooks::first_word(h))
            .filter_map(|w| hooks::resolve(&w).ok());
        protected.extend(
            hook_programs
                .chain(command_path.clone())
                .map(|p| (p, Protected::HookCommand)),
        );
        freeze_targets = freeze::validate(&cli.freeze, &protected, cli.force_freeze)?;
    }

    let connect = match cli.lock {
        LockMode::None => None,
        _ => Some(ConnectSpec::from_cli(cli)?),
    };
    Ok(Prepared {
        connect,
        lock,
        freeze: freeze_targets,
        command_path,
    })
}

/// The plan in words (--dry-run): what a run would do, in order.
pub fn describe(cli: &Cli, p: &Prepared) -> String {
    let mut out = String::new();
    let mut step = 0;
    let mut line = |text: String| {
        step += 1;
        let _ = writeln!(out, "{step:>2}. {text}");
    };
    for h in &cli.before {
        line(format!("before hook: {h}"));
    }
    match (&p.connect, strategy(cli.lock)) {
        (Some(spec), Some(s)) => {
            line(format!(
                "connect to {} as '{}' (lock session + watchdog session)",
                spec.target, spec.user
            ));
            line(format!(
                "lock: {} (each attempt at most {:.2} s, then KILL QUERY; {} attempt(s), {:.2} s apart)",
                s.lock.join("; "),
                p.lock.wait.as_secs_f64(),
                p.lock.retries + 1,
                p.lock.retry_delay.as_secs_f64()
            ));
            line("read coordinates: SHOW MASTER STATUS (SHOW BINARY LOG STATUS on MySQL >= 8.2), GTID position".into());
            if let Some(c) = &cli.coordinates_file {
                line(format!("write coordinates to {}", c.display()));
            }
        }
        _ => line("no database lock (--lock=none): no connection".into()),
    }
    for h in &cli.pre {
        line(format!("pre hook: {h}"));
    }
    for t in &p.freeze {
        line(format!(
            "freeze {} ({}) with FIFREEZE; a guardian process thaws it if we die",
            t.mountpoint.display(),
            t.fs_type
        ));
    }
    for h in &cli.snapshot {
        line(format!("snapshot hook (stdout passed through): {h}"));
    }
    if !cli.command.is_empty() {
        line(format!(
            "COMMAND (stdout passed through, no shell): {}",
            cli.command.join(" ")
        ));
    }
    for t in p.freeze.iter().rev() {
        line(format!("thaw {} (FITHAW)", t.mountpoint.display()));
    }
    for h in &cli.post {
        line(format!("post hook (always runs once locked): {h}"));
    }
    if let Some(s) = strategy(cli.lock) {
        line(format!(
            "verify the lock session is the same live connection, then {}",
            s.unlock
        ));
    }
    for h in &cli.after {
        line(format!("after hook (always runs once connected): {h}"));
    }
    let _ = writeln!(
        out,
        "Limits: each hook {} s; locked section at most {} s (--max-lock-time).",
        cli.hook_timeout, cli.max_lock_time
    );
    out
}

/// --check: connect and verify privileges, hook programs and freeze targets;
/// lock and freeze nothing. Exit status is what a run would fail with.
pub fn check(cli: &Cli, p: &Prepared, progress: &Progress) -> u8 {
    print!("{}", describe(cli, p));
    let mut code = exit::OK;
    let mut problem = |c: u8, msg: String| {
        progress.error(msg);
        if code == exit::OK {
            code = c;
        }
    };
    for (phase, list) in [
        ("before", &cli.before),
        ("pre", &cli.pre),
        ("snapshot", &cli.snapshot),
        ("post", &cli.post),
        ("after", &cli.after),
    ] {
        for h in list {
            if let Some(w) = hooks::first_word(h) {
                if let Err(e) = resolve_program(&format!("{phase} hook program"), &w) {
                    problem(exit::code_of(&e), format!("{e:#}"));
                }
            }
        }
    }
    match runlock::acquire(&cli.lock_file) {
        Ok(_released_at_end_of_scope) => {}
        Err(e) => problem(exit::code_of(&e), format!("{e:#}")),
    }
    if let Some(spec) = &p.connect {
        match LockSession::open(spec, &p.lock, progress) {
            Ok(mut s) => {
                progress.info(format!(
                    "connected to {} (connection {})",
                    s.info.short(),
                    s.connection_id
                ));
                match s.missing_privileges() {
                    Ok(missing) if missing.is_empty() => {}
                    Ok(missing) => problem(
                        exit::NOPERM,
                        format!("user '{}' lacks {}", spec.user, missing.join(", ")),
                    ),
                    Err(e) => problem(exit::code_of(&e), format!("{e:#}")),
                }
            }
            Err(e) => problem(exit::code_of(&e), format!("{e:#}")),
        }
    }
    if code == exit::OK {
        progress.info("check passed: nothing was locked or frozen");
    }
    code
}
