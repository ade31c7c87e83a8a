//! The sequence: before, connect, lock, coordinates, pre, freeze, snapshot,
//! thaw, post, unlock, after. `Run::execute` reads top to bottom in that
//! order; every acquired resource is held by a guard whose Drop releases it
//! (`LockSession` unlocks/closes, `FrozenSet` thaws, `RunLock` unlocks the run
//! lock), so early returns and panics release too.

use crate::cli::{Cli, LockMode, Sub};
use crate::exit;
use crate::freeze::{self, FrozenSet, Target};
use crate::hooks::{self, Hook, Limits, Phase, Program, Stdout};
use crate::options;
use crate::plan::{self, Prepared};
use crate::report::{self, human, FreezeRecord, HookRecord, Progress, Report};
use crate::runlock;
use crate::server::{LockSession, ServerInfo};
use crate::signals;
use clap::Parser;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::time::{Duration, Instant, SystemTime};

/// Process entry: load options, dispatch, return the exit status.
pub fn main_entry() -> u8 {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // The guardian must not read option files or prompt: parse it directly.
    if argv.get(1).is_some_and(|a| a == "__guardian") {
        return match Cli::try_parse_from(&argv) {
            Ok(Cli {
                subcommand:
                    Some(Sub::Guardian {
                        deadline,
                        mountpoints,
                    }),
                ..
            }) => freeze::guardian_main(deadline, &mountpoints).clamp(0, 255) as u8,
            _ => exit::USAGE,
        };
    }
    let loaded = match options::load(argv) {
        Ok(loaded) => loaded,
        Err(e) => return load_error(e),
    };
    let cli = loaded.cli;
    let progress = Progress {
        quiet: cli.quiet,
        verbose: cli.verbose,
    };
    for w in &loaded.warnings {
        progress.warn(w);
    }
    for n in &loaded.notes {
        progress.detail(n);
    }
    match &cli.subcommand {
        Some(Sub::Generate { what }) => return crate::generate::print(*what),
        Some(Sub::Guardian { .. }) => return exit::USAGE,
        None => {}
    }
    if cli.print_defaults {
        println!("{}", loaded.defaults_args.join("\n"));
        return exit::OK;
    }
    if let Err(e) = signals::install() {
        progress.error(format!("{e:#}"));
        return exit::SOFTWARE;
    }
    let prepared = match plan::prepare(&cli) {
        Ok(p) => p,
        Err(e) => {
            progress.error(format!("{e:#}"));
            return exit::code_of(&e);
        }
    };
    if cli.dry_run {
        print!("{}", plan::describe(&cli, &prepared));
        return exit::OK;
    }
    if cli.check {
        return plan::check(&cli, &prepared, &progress);
    }
    Run::new(&cli, prepared, progress).execute()
}

fn load_error(e: anyhow::Error) -> u8 {
    if let Some(clap_err) = e.downcast_ref::<clap::Error>() {
        let _ = clap_err.print();
        return match clap_err.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                exit::OK
            }
            _ => exit::USAGE,
        };
    }
    eprintln!("mysql-quiesce: error: {e:#}");
    exit::code_of(&e)
}

/// Unique id of this run, given to hooks and written to the report.
fn new_run_id() -> String {
    let now = report::rfc3339(SystemTime::now());
    let compact: String = now[..19]
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    let mut salt = [0u8; 3];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut salt);
    }
    format!(
        "{compact}Z-{}-{:02x}{:02x}{:02x}",
        std::process::id(),
        salt[0],
        salt[1],
        salt[2]
    )
}

struct Run<'a> {
    cli: &'a Cli,
    prepared: Prepared,
    progress: Progress,
    report: Report,
    started: Instant,
    /// MYSQL_QUIESCE_* variables for hooks (PHASE and STATUS are set per hook).
    env: BTreeMap<&'static str, String>,
    /// The first failure: its exit status and message. It decides the exit status.
    failure: Option<(u8, String)>,
}

impl<'a> Run<'a> {
    fn new(cli: &'a Cli, prepared: Prepared, progress: Progress) -> Run<'a> {
        let run_id = new_run_id();
        let mut env = BTreeMap::new();
        env.insert("MYSQL_QUIESCE_RUN_ID", run_id.clone());
        env.insert("MYSQL_QUIESCE_LOCK", plan::lock_name(cli.lock).to_string());
        for key in [
            "MYSQL_QUIESCE_CONNECTION_ID",
            "MYSQL_QUIESCE_SERVER_VERSION",
            "MYSQL_QUIESCE_BINLOG_FILE",
            "MYSQL_QUIESCE_BINLOG_POS",
            "MYSQL_QUIESCE_GTID",
        ] {
            env.insert(key, String::new());
        }
        let mut report = Report::new(run_id);
        report.lock.mode = plan::lock_name(cli.lock).to_string();
        Run {
            cli,
            prepared,
            progress,
            report,
            started: Instant::now(),
            env,
            failure: None,
        }
    }

    fn ok(&self) -> bool {
        self.failure.is_none()
    }

    /// Remember a failure; the first one decides the exit status.
    fn fail(&mut self, code: u8, message: String) {
        self.progress.error(&message);
        if self.failure.is_none() {
            self.failure = Some((code, message));
        }
    }

    fn fail_with(&mut self, e: anyhow::Error) {
        self.fail(exit::code_of(&e), format!("{e:#}"));
    }

    /// A termination signal, or the deadline of the locked section, ends the
    /// remaining pre/snapshot work.
    fn check_interrupts(&mut self, deadline: Option<Instant>) {
        if !self.ok() {
            return;
        }
        if let Some(sig) = signals::received() {
            self.fail(
                exit::signal(sig),
                format!("received signal {sig}; releasing everything"),
            );
        } else if deadline.is_some_and(|d| Instant::now() >= d) {
            self.fail(
                exit::TIMEOUT,
                format!(
                    "--max-lock-time ({} s) passed; releasing everything",
                    self.cli.max_lock_time
                ),
            );
        }
    }

    fn execute(mut self) -> u8 {
        let cli = self.cli;
        let _run_lock = match runlock::acquire(&cli.lock_file) {
            Ok(l) => l,
            Err(e) => {
                self.fail_with(e);
                return self.finish();
            }
        };

        // before: nothing is held yet; a failure stops the run here.
        self.hooks(Phase::Before, &cli.before, None);
        if !self.ok() {
            return self.finish();
        }

        // connect (no session with --lock=none: there is nothing to hold).
        let mut session = match self.connect() {
            Ok(s) => s,
            Err(e) => {
                self.fail_with(e);
                return self.finish();
            }
        };

        // lock; post hooks run whenever this succeeded, after hooks in any case.
        if self.lock(session.as_mut()) {
            self.locked_section(session.as_mut());
        }
        drop(session);
        self.hooks(Phase::After, &cli.after, None);
        self.finish()
    }

    fn connect(&mut self) -> anyhow::Result<Option<LockSession>> {
        let Some(spec) = &self.prepared.connect else {
            return Ok(None);
        };
        let (t0, wall) = (Instant::now(), SystemTime::now());
        let session = LockSession::open(spec, &self.prepared.lock, &self.progress);
        self.report
            .phase("connect", wall, t0.elapsed(), session.is_ok());
        let session = session?;
        self.progress.info(format!(
            "connected to {} at {} as '{}' (connection {}) in {}",
            session.info.short(),
            spec.target,
            spec.user,
            session.connection_id,
            human(t0.elapsed())
        ));
        self.env.insert(
            "MYSQL_QUIESCE_CONNECTION_ID",
            session.connection_id.to_string(),
        );
        self.env
            .insert("MYSQL_QUIESCE_SERVER_VERSION", session.info.version.clone());
        self.report.server = Some(session.info.clone());
        self.report.lock.connection_id = Some(session.connection_id);
        Ok(Some(session))
    }

    /// Take the lock (if any). False when it was not acquired.
    fn lock(&mut self, session: Option<&mut LockSession>) -> bool {
        let Some(s) = session else {
            return true;
        };
        let (t0, wall) = (Instant::now(), SystemTime::now());
        let result = s.acquire(&self.prepared.lock, &self.progress);
        self.report
            .phase("lock", wall, t0.elapsed(), result.is_ok());
        match result {
            Ok(took) => {
                self.progress
                    .info(format!("locked ({}) in {}", s.strategy().name, human(took)));
                self.report.lock.statement = Some(s.strategy().name.to_string());
                self.report.lock.acquired_in_ms = Some(report::ms(took));
                true
            }
            Err(e) => {
                self.fail_with(e);
                false
            }
        }
    }

    /// Everything between lock and unlock. The lock is held on entry.
    fn locked_section(&mut self, mut session: Option<&mut LockSession>) {
        let cli = self.cli;
        let locked_at = Instant::now();
        let deadline = locked_at + Duration::from_secs_f64(cli.max_lock_time);
        let deadline_wall = SystemTime::now() + Duration::from_secs_f64(cli.max_lock_time);

        if let Some(s) = session.as_deref_mut() {
            self.coordinates(s);
        }

        // pre, freeze, snapshot, thaw. A panic in here still thaws (FrozenSet's
        // Drop) and then continues with post, unlock and after.
        let inner = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.hooks(Phase::Pre, &cli.pre, Some(deadline));
            let frozen = self.freeze(deadline, deadline_wall);
            self.hooks(Phase::Snapshot, &cli.snapshot, Some(deadline));
            self.command(Some(deadline));
            if let Some(frozen) = frozen {
                self.thaw(frozen);
            }
        }));
        if inner.is_err() {
            self.fail(
                exit::SOFTWARE,
                "internal error (panic) in the locked section; filesystems were thawed".into(),
            );
        }

        // post: always, once locked.
        self.hooks(Phase::Post, &cli.post, None);

        // verify, then unlock.
        if let Some(s) = session {
            let (t0, wall) = (Instant::now(), SystemTime::now());
            match s.verify(&self.progress) {
                Ok(()) => self.report.lock.verified = Some(true),
                Err(why) => {
                    self.report.lock.verified = Some(false);
                    self.fail(
                        exit::INCONSISTENT,
                        format!(
                            "CONSISTENCY NOT GUARANTEED: {why}. The lock may have been released before or during \
                             the snapshot, so writes may have happened while it was taken: do not trust this snapshot"
                        ),
                    );
                }
            }
            let released = s.release(&self.progress);
            self.report
                .phase("unlock", wall, t0.elapsed(), released.is_ok());
            if let Err(e) = released {
                self.progress.warn(format!("{e:#}"));
            }
        }
        let held = locked_at.elapsed();
        self.report.lock.held_ms = Some(report::ms(held));
        let what = if session_was_locked(cli) {
            "unlocked; lock held"
        } else {
            "locked section took"
        };
        self.progress.info(format!("{what} {}", human(held)));
    }

    fn coordinates(&mut self, s: &mut LockSession) {
        let (t0, wall) = (Instant::now(), SystemTime::now());
        let result = s.coordinates(&self.progress);
        self.report
            .phase("coordinates", wall, t0.elapsed(), result.is_ok());
        let c = match result {
            Ok(c) => c,
            Err(e) => return self.fail_with(e),
        };
        match (&c.binlog_file, c.binlog_position) {
            (Some(f), Some(p)) => self.progress.info(format!(
                "coordinates: {f}:{p}{}",
                c.gtid
                    .as_deref()
                    .map(|g| format!(", GTID {g}"))
                    .unwrap_or_default()
            )),
            _ => self
                .progress
                .info("coordinates: binary logging is off (no file/position)"),
        }
        self.env.insert(
            "MYSQL_QUIESCE_BINLOG_FILE",
            c.binlog_file.clone().unwrap_or_default(),
        );
        self.env.insert(
            "MYSQL_QUIESCE_BINLOG_POS",
            c.binlog_position.map(|p| p.to_string()).unwrap_or_default(),
        );
        self.env
            .insert("MYSQL_QUIESCE_GTID", c.gtid.clone().unwrap_or_default());
        if let Some(path) = &self.cli.coordinates_file {
            let json = coordinates_json(&c, &self.report.run_id, self.report.server.as_ref());
            if let Err(e) = report::write_atomic(path, json.as_bytes()) {
                self.fail(
                    exit::CONFIG,
                    format!(
                        "cannot write the coordinates file {}: {e}; skipping the snapshot",
                        path.display()
                    ),
                );
            }
        }
        self.report.coordinates = Some(c);
    }

    fn freeze(&mut self, deadline: Instant, deadline_wall: SystemTime) -> Option<FrozenSet> {
        self.check_interrupts(Some(deadline));
        if !self.ok() || self.prepared.freeze.is_empty() {
            return None;
        }
        let (t0, wall) = (Instant::now(), SystemTime::now());
        let result = freeze::freeze_all(&self.prepared.freeze, deadline_wall);
        self.report
            .phase("freeze", wall, t0.elapsed(), result.is_ok());
        match result {
            Ok(f) => {
                let names: Vec<String> = self
                    .prepared
                    .freeze
                    .iter()
                    .map(|t| t.mountpoint.display().to_string())
                    .collect();
                self.progress.info(format!(
                    "froze {} in {}",
                    names.join(", "),
                    human(t0.elapsed())
                ));
                Some(f)
            }
            Err(e) => {
                self.fail_with(e);
                None
            }
        }
    }

    fn thaw(&mut self, frozen: FrozenSet) {
        let (t0, wall) = (Instant::now(), SystemTime::now());
        let results = frozen.thaw();
        let all_ok = results.iter().all(|t| t.error.is_none());
        self.report.phase("thaw", wall, t0.elapsed(), all_ok);
        for t in &results {
            let fs_type = self
                .prepared
                .freeze
                .iter()
                .find(|x| x.mountpoint == t.mountpoint)
                .map(|x: &Target| x.fs_type.clone())
                .unwrap_or_default();
            self.report.frozen.push(FreezeRecord {
                mountpoint: t.mountpoint.display().to_string(),
                fs_type,
                thaw_error: t.error.clone(),
            });
            if let Some(err) = &t.error {
                self.fail(
                    exit::SOFTWARE,
                    format!(
                        "could not thaw {}: {err}. It may still be frozen: run `fsfreeze -u {}` now",
                        t.mountpoint.display(),
                        t.mountpoint.display()
                    ),
                );
            }
        }
        if all_ok {
            self.progress
                .info(format!("thawed in {}", human(t0.elapsed())));
        }
    }

    /// Run the hooks of one phase in order; stop at the first failure
    /// (pre/snapshot/before). Post and after hooks all run, whatever happened.
    fn hooks(&mut self, phase: Phase, commands: &[String], deadline: Option<Instant>) {
        let always = matches!(phase, Phase::Post | Phase::After);
        for cmd in commands {
            if !always {
                self.check_interrupts(deadline);
                if !self.ok() {
                    return;
                }
            }
            let stdout = if phase == Phase::Snapshot {
                Stdout::Inherit
            } else {
                Stdout::ToStderr
            };
            self.run_hook(
                Hook {
                    phase,
                    program: Program::Shell(cmd.clone()),
                    stdout,
                },
                deadline,
            );
        }
    }

    /// The COMMAND after `--`, last in the snapshot phase.
    fn command(&mut self, deadline: Option<Instant>) {
        if self.cli.command.is_empty() {
            return;
        }
        self.check_interrupts(deadline);
        if !self.ok() {
            return;
        }
        self.run_hook(
            Hook {
                phase: Phase::Snapshot,
                program: Program::Argv(self.cli.command.clone()),
                stdout: Stdout::Inherit,
            },
            deadline,
        );
    }

    fn run_hook(&mut self, hook: Hook, deadline: Option<Instant>) {
        let mut env: Vec<(String, String)> = self
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        env.push(("MYSQL_QUIESCE_PHASE".into(), hook.phase.name().into()));
        if matches!(hook.phase, Phase::Post | Phase::After) {
            let status = if self.ok() { "ok" } else { "failed" };
            env.push(("MYSQL_QUIESCE_STATUS".into(), status.into()));
        }
        let wall = SystemTime::now();
        let limits = Limits {
            timeout: Duration::from_secs_f64(self.cli.hook_timeout),
            deadline,
        };
        let run = hooks::run(&hook, &env, limits);
        let shown = hook.program.display();
        let code = run.ending.exit_code();
        self.report.hooks.push(HookRecord {
            phase: hook.phase,
            command: shown.clone(),
            result: run.ending.describe(),
            exit_code: code,
            duration_ms: report::ms(run.duration),
        });
        self.report
            .phase(hook.phase.name(), wall, run.duration, run.ending.success());
        if run.ending.success() {
            self.progress.info(format!(
                "{}: `{shown}` ok in {}",
                hook.phase.name(),
                human(run.duration)
            ));
        } else {
            self.fail(
                code,
                format!(
                    "{} hook `{shown}` {}",
                    hook.phase.name(),
                    run.ending.describe()
                ),
            );
        }
    }

    /// Close the run: summary line, report file, exit status.
    fn finish(mut self) -> u8 {
        let (code, message) = self.failure.clone().unwrap_or((exit::OK, String::new()));
        self.report.exit_code = code;
        self.report.outcome = if code == exit::OK { "ok" } else { "failed" }.into();
        self.report.consistent = code == exit::OK
            && (self.report.lock.verified == Some(true) || self.cli.lock == LockMode::None);
        self.report.error = (!message.is_empty()).then_some(message);
        self.report.finished_at = Some(report::rfc3339(SystemTime::now()));
        if let Some(path) = &self.cli.report {
            // Written last: after thaw and unlock, never onto a frozen filesystem.
            if let Err(e) = report::write_atomic(path, self.report.to_json().as_bytes()) {
                self.progress
                    .error(format!("cannot write the report {}: {e}", path.display()));
                if code == exit::OK {
                    return exit::CONFIG;
                }
            }
        }
        let total = human(self.started.elapsed());
        if code == exit::OK {
            self.progress
                .info(format!("done in {total}: snapshot consistent"));
        } else {
            self.progress
                .error(format!("failed in {total} with exit status {code}"));
        }
        code
    }
}

fn session_was_locked(cli: &Cli) -> bool {
    cli.lock != LockMode::None
}

/// The coordinates file: small, stable JSON that can live inside the snapshot.
fn coordinates_json(
    c: &crate::server::Coordinates,
    run_id: &str,
    server: Option<&ServerInfo>,
) -> String {
    let v = serde_json::json!({
        "run_id": run_id,
        "read_at": report::rfc3339(SystemTime::now()),
        "server_version": server.map(|s| s.version.clone()),
        "binlog_file": c.binlog_file,
        "binlog_position": c.binlog_position,
        "gtid": c.gtid,
        "gtid_current_pos": c.gtid_current_pos,
        "source": c.source,
    });
    serde_json::to_string_pretty(&v).expect("json") + "\n"
}
