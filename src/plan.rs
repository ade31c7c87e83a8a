//! Everything decided before anything is touched: option values, the
//! COMMAND and hook programs, freeze targets, the connection. `prepare` is
//! the preflight every run goes through; `describe` is --dry-run's output;
//! `check` is --check (connects, but locks and freezes nothing).

use crate::cli::{Cli, LockMode};
use crate::exit;
use crate::freeze::{self, Protected, Target};
use crate::hooks::{self, Ending};
use crate::messages::Progress;
use crate::runlock;
use crate::server::connect::ConnectSpec;
use crate::server::lock::LockConfig;
use crate::server::strategy::{self, Strategy};
use crate::server::LockSession;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The checked, resolved inputs of a run.
#[derive(Debug)]
pub struct Prepared {
    /// The servers to lock, with their names (one unnamed entry without
    /// --instance; empty with --lock=none: no connection is made).
    pub instances: Vec<(String, ConnectSpec)>,
    pub lock: LockConfig,
    pub freeze: Vec<Target>,
    /// COMMAND's resolved program.
    pub command_path: Option<PathBuf>,
    /// --max-lock-time: the whole locked section.
    pub max_lock_time: Duration,
    /// --hook-timeout: each hook.
    pub hook_timeout: Duration,
    /// The state directory (run lock, replica notes, holder).
    pub state_dir: PathBuf,
}

pub fn lock_name(mode: LockMode) -> &'static str {
    strategy::mode_name(mode)
}

/// The lock statements a mode will use, known before connecting.
fn planned(mode: LockMode) -> Option<Vec<Strategy>> {
    match mode {
        LockMode::None => None,
        LockMode::Auto => Some(vec![strategy::BACKUP_STAGE, strategy::FTWRL]),
        LockMode::Ftwrl => Some(vec![strategy::FTWRL]),
        LockMode::BackupStage => Some(vec![strategy::BACKUP_STAGE]),
        LockMode::Instance => Some(vec![strategy::INSTANCE]),
        LockMode::TablesForBackup => Some(vec![strategy::TABLES_FOR_BACKUP]),
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
    let wait = seconds("lock-wait-timeout", cli.lock_wait_timeout, false)?;
    let guard = seconds("long-query-guard", cli.long_query_guard, true)?;
    let kill_after = match cli.kill_long_queries {
        Some(k) => Some(seconds("kill-long-queries", k, true)?),
        None => None,
    };
    if kill_after.is_some_and(|k| k >= wait) {
        return Err(exit::fail(
            exit::CONFIG,
            format!(
                "--kill-long-queries ({} s) must be below --lock-wait-timeout ({} s): each lock attempt gives up \
                 at --lock-wait-timeout, so it would never kill anything",
                cli.kill_long_queries.unwrap_or_default(),
                cli.lock_wait_timeout
            ),
        ));
    }
    let lock = LockConfig {
        mode: cli.lock,
        wait,
        retries: cli.lock_retries,
        retry_delay: seconds("lock-retry-delay", cli.lock_retry_delay, true)?,
        guard: (!guard.is_zero()).then_some(guard),
        query_type: cli.long_query_type,
        kill_after,
        pre_flush: cli.pre_flush,
        stop_replica_sql: cli.stop_replica_sql,
        max_lock_time: seconds("max-lock-time", cli.max_lock_time, false)?,
        state_dir: cli.state_dir(),
    };
    let hook_timeout = seconds("hook-timeout", cli.hook_timeout, false)?;
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
        for out in [&cli.report, &cli.coordinates_file, &cli.metrics_file]
            .into_iter()
            .flatten()
        {
            protected.push((absolute(out), Protected::OutputFile));
        }
        // `lock`'s holder writes its log there while holding the freeze.
        if matches!(cli.subcommand, Some(crate::cli::Sub::Lock { .. })) {
            protected.push((cli.state_dir().join("holder.log"), Protected::HolderLog));
        }
        for out in redirected_outputs() {
            protected.push((out, Protected::Stream));
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
        // --dry-run freezes nothing; --check reports it as one of its findings.
        if !cli.dry_run && !cli.check {
            freeze::require_root(&freeze_targets)?;
        }
    }

    let instances = match cli.lock {
        LockMode::None if !cli.instance.is_empty() => {
            return Err(exit::fail(
                exit::CONFIG,
                "--instance needs a database lock; drop --lock=none or --instance",
            ))
        }
        LockMode::None => Vec::new(),
        _ if cli.instance.is_empty() => vec![(String::new(), ConnectSpec::from_cli(cli)?)],
        _ => {
            let mut list: Vec<(String, ConnectSpec)> = Vec::new();
            for spec in &cli.instance {
                let (name, connect) = instance(cli, spec)?;
                if list.iter().any(|(n, _)| *n == name) {
                    return Err(exit::fail(
                        exit::CONFIG,
                        format!(
                            "two --instance specs get the same name {name} (names come from the option file's name, or the \
                             URL's socket file name or host and port); name them yourself: --instance=NAME=SPEC"
                        ),
                    ));
                }
                list.push((name, connect));
            }
            list
        }
    };
    Ok(Prepared {
        instances,
        max_lock_time: lock.max_lock_time,
        hook_timeout,
        state_dir: lock.state_dir.clone(),
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
    match (p.instances.as_slice(), planned(cli.lock)) {
        (specs @ [_, ..], Some(strategies)) => {
            for (name, spec) in specs {
                let label = if name.is_empty() {
                    String::new()
                } else {
                    format!(" instance {name}:")
                };
                line(format!(
                    "connect{label} to {} as '{}' (lock session + watchdog session)",
                    spec.target, spec.user
                ));
            }
            if specs.len() > 1 {
                line(format!("lock all {} instances in parallel; if one cannot be locked, release the others and retry", specs.len()));
            }
            let statements: Vec<String> = strategies.iter().map(|s| s.lock.join("; ")).collect();
            let statements = match cli.lock {
                LockMode::Auto => format!(
                    "{} on MariaDB >= 10.4.1, else {}",
                    statements[0], statements[1]
                ),
                _ => statements.join(""),
            };
            if let Some(g) = p.lock.guard {
                line(format!(
                    "before each attempt: wait while a {:?} statement has run longer than {:.2} s (--long-query-guard)",
                    cli.long_query_type,
                    g.as_secs_f64()
                ));
            }
            if p.lock.pre_flush {
                line(
                    "before each attempt: FLUSH NO_WRITE_TO_BINLOG TABLES (bounded the same way)"
                        .into(),
                );
            }
            line(format!(
                "lock: {statements} (each attempt at most {:.2} s, then KILL QUERY; {} attempt(s), {:.2} s apart)",
                p.lock.wait.as_secs_f64(),
                p.lock.retries + 1,
                p.lock.retry_delay.as_secs_f64()
            ));
            if let Some(k) = p.lock.kill_after {
                line(format!(
                    "DANGEROUS --kill-long-queries: after {:.2} s of an attempt, KILL QUERY the {:?} statements that started before it",
                    k.as_secs_f64(),
                    cli.long_query_type
                ));
            }
            line("read coordinates: SHOW BINARY LOG STATUS (MySQL >= 8.2), SHOW BINLOG STATUS (MariaDB >= 10.5.2) or SHOW MASTER STATUS; GTID position".into());
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
    if let Some(strategies) = planned(cli.lock) {
        let unlock: Vec<&str> = strategies.iter().map(|s| s.unlock).collect();
        line(format!(
            "verify the lock session is the same live connection, then {}",
            unlock.join(" or ")
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
    crate::messages::stdout(&describe(cli, p));
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
    if let Err(e) = freeze::require_root(&p.freeze) {
        problem(exit::code_of(&e), format!("{e:#}"));
    }
    match runlock::acquire(
        cli.lock_file.as_deref(),
        &crate::state::State::new(&p.state_dir),
    ) {
        Ok(_released_at_end_of_scope) => {}
        Err(e) => problem(exit::code_of(&e), format!("{e:#}")),
    }
    for (name, spec) in &p.instances {
        match LockSession::open(spec, &p.lock, progress) {
            Ok(mut s) => {
                s.set_replica_note(
                    crate::state::State::new(&p.state_dir).replica_note(name),
                    progress,
                );
                progress.info(format!(
                    "{name}{}connected to {} (connection {}); lock: {}",
                    if name.is_empty() { "" } else { ": " },
                    s.info.short(),
                    s.connection_id,
                    s.strategy().name
                ));
                match s.missing_privileges(&p.lock) {
                    Ok(missing) if missing.is_empty() => {}
                    Ok(missing) => problem(
                        exit::NOPERM,
                        format!(
                            "user '{}' lacks {}{}",
                            spec.user,
                            missing.join(", "),
                            crate::grants::check_hint(spec, &p.lock, progress)
                        ),
                    ),
                    Err(e) => problem(exit::code_of(&e), format!("{e:#}")),
                }
            }
            Err(e) if exit::code_of(&e) == exit::NOPERM => problem(
                exit::NOPERM,
                format!(
                    "{e:#}{}",
                    crate::grants::check_hint(spec, &p.lock, progress)
                ),
            ),
            Err(e) => problem(exit::code_of(&e), format!("{e:#}")),
        }
    }
    if code == exit::OK {
        progress.info("check passed: nothing was locked or frozen");
    }
    code
}

/// Every `scheme://user:PASSWORD@host...` in `text` with the password
/// replaced by `*****`.
pub fn mask_url_password(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| {
                c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"' || c == '`'
            })
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":*****");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// The environment-variable name of an instance: uppercase, every character
/// other than A-Z and 0-9 replaced by `_`.
pub fn instance_name(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// One --instance SPEC: `mysql://user@host:port/?socket=PATH` (named after
/// the socket file or host and port) or an option file whose [client] group
/// says where the server is (named after the file); `NAME=SPEC` names it.
fn instance(cli: &Cli, spec: &str) -> anyhow::Result<(String, ConnectSpec)> {
    // Messages never repeat a password someone put in the URL.
    let shown = mask_url_password(spec);
    let bad = |why: String| {
        exit::fail(
            exit::CONFIG,
            format!("--instance={shown}: {}", mask_url_password(&why)),
        )
    };
    // NAME=SPEC names the instance explicitly.
    let (explicit, spec) = match spec.split_once('=') {
        Some((n, rest))
            if !n.is_empty() && n.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') =>
        {
            (Some(n), rest)
        }
        _ => (None, spec),
    };
    let mut c = cli.clone();
    let mut name;
    if spec.starts_with("mysql://") {
        let opts = mysql::Opts::from_url(spec).map_err(|e| bad(e.to_string()))?;
        if opts.get_pass().is_some() {
            return Err(bad("do not put the password in the URL (it would show in `ps`); use --password, MYSQL_PWD or an option file".into()));
        }
        c.user = opts.get_user().map(str::to_string).or(c.user);
        match opts.get_socket() {
            Some(socket) => {
                c.socket = Some(socket.into());
                c.protocol = Some(crate::cli::Protocol::Socket);
                c.host = None;
                name = Path::new(socket)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
            }
            None => {
                let host = opts.get_ip_or_hostname().to_string();
                c.port = Some(opts.get_tcp_port());
                c.protocol = Some(crate::cli::Protocol::Tcp);
                name = format!("{host}_{}", opts.get_tcp_port());
                c.host = Some(host);
            }
        }
    } else {
        let path = Path::new(spec);
        let client = crate::options::client_group(path).map_err(|e| bad(format!("{e:#}")))?;
        if client.host.is_none() && client.port.is_none() && client.socket.is_none() {
            return Err(bad(format!(
                "{} does not say where the server is: its [client] group needs socket=, host= or port=",
                path.display()
            )));
        }
        // Where the server is comes from this file alone: inheriting the main
        // connection's socket would lock a different server. Credentials may
        // be shared.
        c.host = client.host;
        c.port = client.port;
        c.port_origin = client.port_origin;
        c.socket = client.socket;
        c.socket_on_command_line = false;
        c.user = client.user.or(c.user);
        c.password = client.password.or(c.password);
        c.protocol = client.protocol;
        name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
    }
    if let Some(n) = explicit {
        name = n.to_string();
    }
    let name = instance_name(&name);
    if name.is_empty() {
        return Err(bad("cannot derive a name from it".into()));
    }
    Ok((name, ConnectSpec::from_cli(&c)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_an_instance_url_is_never_repeated_in_messages() {
        assert_eq!(
            mask_url_password("mysql://u:s3cr@t@db:3306/?socket=/s"),
            "mysql://u:*****@db:3306/?socket=/s"
        );
        assert_eq!(mask_url_password("mysql://u@db/"), "mysql://u@db/");
        assert_eq!(mask_url_password("/etc/a.cnf"), "/etc/a.cnf");
        let cli = <Cli as clap::Parser>::try_parse_from(["mysql-quiesce"]).unwrap();
        for spec in [
            "mysql://u:hunter2@db:3306/",
            "N=mysql://u:hunter2@db:99999999/",
        ] {
            let err = instance(&cli, spec).unwrap_err();
            assert_eq!(exit::code_of(&err), exit::CONFIG);
            assert!(!format!("{err:#}").contains("hunter2"), "{err:#}");
        }
    }
}
