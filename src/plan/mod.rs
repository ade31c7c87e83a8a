//! Everything decided before anything is touched. The options (`Cli` and
//! where each came from) are turned here, once, into a validated `Plan`:
//! typed durations, the hooks of each phase, the instances with their
//! connection parameters, the freeze targets, the outputs. Nothing below the
//! entry point looks at a flag again. `describe` is --dry-run's output,
//! `check` is --check (connects, but locks and freezes nothing).

mod check;
mod describe;
mod instance;

pub use check::check;
pub use describe::describe;
pub use instance::{mask_url_password, Instance, InstanceName};

use crate::cli::{Cli, LockMode};
use crate::exit;
use crate::freeze::{self, Protected, Target};
use crate::hooks::{self, Ending};
use crate::messages::Progress;
use crate::options::Loaded;
use crate::server::connect::ConnectSpec;
use crate::server::lock::{Guard, LockConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a run will do, checked.
#[derive(Debug)]
pub struct Plan {
    pub hooks: Hooks,
    pub lock: LockConfig,
    /// The servers to lock (one unnamed without --instance; none with
    /// --lock=none: no connection is made).
    pub instances: Vec<Instance>,
    pub freeze: Vec<Target>,
    pub outputs: Outputs,
    /// --max-lock-time: the whole locked section.
    pub max_lock_time: Duration,
    /// --hook-timeout: each hook.
    pub hook_timeout: Duration,
    /// The state directory (run lock, replica notes, holder).
    pub state_dir: PathBuf,
    /// --lock-file, when given (else run.lock in the state directory).
    pub lock_file: Option<PathBuf>,
    /// The connection's password, as resolved (command line, prompt, option
    /// file, environment): `lock` passes it on to its holder.
    pub password: Option<String>,
    pub progress: Progress,
}

/// The hooks of each phase, in order, and the COMMAND.
#[derive(Debug, Default)]
pub struct Hooks {
    pub before: Vec<String>,
    pub pre: Vec<String>,
    pub snapshot: Vec<String>,
    pub post: Vec<String>,
    pub after: Vec<String>,
    /// The COMMAND after `--` (argv, no shell) and its resolved program.
    pub command: Option<(Vec<String>, PathBuf)>,
}

/// Files a run writes.
#[derive(Debug, Default)]
pub struct Outputs {
    pub report: Option<PathBuf>,
    pub coordinates: Option<PathBuf>,
    pub metrics: Option<PathBuf>,
}

/// What the plan is for: a `lock` holder writes its log while frozen, and
/// --dry-run/--check freeze nothing (so they need no root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Run,
    Holder,
    Preview,
}

impl Plan {
    /// Validate everything that can be validated without side effects.
    pub fn build(loaded: &Loaded, purpose: Purpose) -> anyhow::Result<Plan> {
        let cli = &loaded.cli;
        let lock = lock_config(cli)?;
        let hook_timeout = seconds("hook-timeout", cli.hook_timeout, false)?;
        if cli.lock == LockMode::None && cli.coordinates_file.is_some() {
            return Err(exit::fail(
                exit::CONFIG,
                "--coordinates-file needs a database lock: coordinates read without one do not match the snapshot; \
                 drop --lock=none or the coordinates file",
            ));
        }
        let command = match cli.command.first() {
            Some(program) => Some((cli.command.clone(), resolve_program("COMMAND", program)?)),
            None => None,
        };
        let hooks = Hooks {
            before: cli.before.clone(),
            pre: cli.pre.clone(),
            snapshot: cli.snapshot.clone(),
            post: cli.post.clone(),
            after: cli.after.clone(),
            command,
        };
        let outputs = Outputs {
            report: cli.report.clone(),
            coordinates: cli.coordinates_file.clone(),
            metrics: cli.metrics_file.clone(),
        };
        let state_dir = cli.state_dir();
        let freeze = freeze_targets(cli, &hooks, &outputs, &state_dir, purpose)?;
        let instances = instances(loaded)?;
        Ok(Plan {
            hooks,
            max_lock_time: lock.max_lock_time,
            lock,
            instances,
            freeze,
            outputs,
            hook_timeout,
            state_dir,
            lock_file: cli.lock_file.clone(),
            password: cli.password.clone(),
            progress: Progress {
                quiet: cli.quiet,
                verbose: cli.verbose,
            },
        })
    }

    /// Whether a database lock is taken at all.
    pub fn locks(&self) -> bool {
        self.lock.mode != LockMode::None
    }
}

/// The lock's settings, with every duration checked.
fn lock_config(cli: &Cli) -> anyhow::Result<LockConfig> {
    let wait = seconds("lock-wait-timeout", cli.lock_wait_timeout, false)?;
    let guard = match cli.long_query_guard {
        None => Guard::Auto,
        Some(g) => match seconds("long-query-guard", g, true)? {
            g if g.is_zero() => Guard::Off,
            g => Guard::After(g),
        },
    };
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
    Ok(LockConfig {
        mode: cli.lock,
        wait,
        retries: cli.lock_retries,
        retry_delay: seconds("lock-retry-delay", cli.lock_retry_delay, true)?,
        guard,
        query_type: cli.long_query_type,
        long_query_wait: seconds("long-query-wait", cli.long_query_wait, true)?,
        kill_after,
        pre_flush: cli.pre_flush,
        stop_replica_sql: cli.stop_replica_sql,
        max_lock_time: seconds("max-lock-time", cli.max_lock_time, false)?,
    })
}

/// The freeze targets, checked against everything that must not be on a
/// filesystem we freeze.
fn freeze_targets(
    cli: &Cli,
    hooks: &Hooks,
    outputs: &Outputs,
    state_dir: &Path,
    purpose: Purpose,
) -> anyhow::Result<Vec<Target>> {
    if cli.freeze.is_empty() {
        return Ok(Vec::new());
    }
    let mut protected: Vec<(PathBuf, Protected)> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        protected.push((cwd, Protected::CurrentDir));
    }
    for out in [&outputs.report, &outputs.coordinates, &outputs.metrics]
        .into_iter()
        .flatten()
    {
        protected.push((absolute(out), Protected::OutputFile));
    }
    // `lock`'s holder writes its log there while holding the freeze.
    if matches!(cli.subcommand, Some(crate::cli::Sub::Lock { .. })) || purpose == Purpose::Holder {
        protected.push((
            crate::state::State::new(state_dir).log(),
            Protected::HolderLog,
        ));
    }
    for out in redirected_outputs() {
        protected.push((out, Protected::Stream));
    }
    protected.push((PathBuf::from("/bin/sh"), Protected::HookCommand));
    let hook_programs = [&hooks.pre, &hooks.snapshot, &hooks.post]
        .into_iter()
        .flatten()
        .filter_map(|h| hooks::first_word(h))
        .filter_map(|w| hooks::resolve(&w).ok());
    protected.extend(
        hook_programs
            .chain(hooks.command.as_ref().map(|(_, path)| path.clone()))
            .map(|p| (p, Protected::HookCommand)),
    );
    let targets = freeze::validate(&cli.freeze, &protected, cli.force_freeze)?;
    // --dry-run freezes nothing; --check reports it as one of its findings.
    if purpose != Purpose::Preview {
        freeze::require_root(&targets)?;
    }
    Ok(targets)
}

/// The servers to lock: one from the ordinary options, or each --instance.
fn instances(loaded: &Loaded) -> anyhow::Result<Vec<Instance>> {
    let cli = &loaded.cli;
    match cli.lock {
        LockMode::None if !cli.instance.is_empty() => Err(exit::fail(
            exit::CONFIG,
            "--instance needs a database lock; drop --lock=none or --instance",
        )),
        LockMode::None => Ok(Vec::new()),
        _ if cli.instance.is_empty() => Ok(vec![Instance {
            name: None,
            spec: ConnectSpec::new(&loaded.connection_args())?,
        }]),
        _ => {
            let base = loaded.connection_args();
            let mut list: Vec<Instance> = Vec::new();
            for spec in &cli.instance {
                let one = instance::parse(&base, spec)?;
                if list.iter().any(|i| i.name == one.name) {
                    return Err(exit::fail(
                        exit::CONFIG,
                        format!(
                            "two --instance specs get the same name {} (names come from the option file's name, or \
                             the URL's socket file name or host and port); name them yourself: --instance=NAME=SPEC",
                            one.label()
                        ),
                    ));
                }
                list.push(one);
            }
            Ok(list)
        }
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

pub(crate) fn resolve_program(what: &str, program: &str) -> anyhow::Result<PathBuf> {
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
