//! The sequence: before, connect, lock, coordinates, pre, freeze, snapshot,
//! thaw, post, unlock, after. `Run::execute` reads top to bottom in that
//! order; every acquired resource is held by a guard whose Drop releases it
//! (`LockSession` unlocks/closes, `FrozenSet` thaws, `RunLock` unlocks the run
//! lock), so early returns and panics release too.

use crate::cli::{Cli, LockMode, Sub};
use crate::exit;
use crate::freeze::{self, FrozenSet, Target};
use crate::guardian::Guardian;
use crate::holder::{self, WaitEnd, Waiter};
use crate::hooks::{self, Ending, Hook, Limits, Phase, Program, Stdout};
use crate::messages::Progress;
use crate::options;
use crate::plan::{self, Prepared};
use crate::report::{self, human, FreezeRecord, HookRecord, Report};
use crate::runlock;
use crate::server::{Coordinates, LockGroup, ServerInfo};
use crate::signals;
use clap::Parser;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// Process entry: load options, dispatch, return the exit status.
pub fn main_entry() -> u8 {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // Kept before option loading masks the password in our argv: `lock` passes it on.
    let original_argv = argv.clone();
    // The guardian must not read option files or prompt: parse it directly.
    if argv.get(1).is_some_and(|a| a == "__guardian") {
        return match Cli::try_parse_from(&argv) {
            Ok(Cli {
                subcommand: Some(Sub::Guardian { dirs, mountpoints }),
                ..
            }) => crate::guardian::main(&mountpoints, &dirs).clamp(0, 255) as u8,
            _ => exit::USAGE,
        };
    }
    // verify starts its own server on a snapshot: no option files, no connection.
    if let Some(code) = crate::verify::entry(&argv) {
        return code;
    }
    let loaded = match options::load(argv) {
        Ok(loaded) => loaded,
        Err(e) => return load_error(e, &original_argv),
    };
    let mut cli = loaded.cli;
    if std::env::var_os(holder::HOLDER_FD).is_some() {
        match holder::inherited_password() {
            Ok(Some(pw)) => cli.password = Some(pw),
            Ok(None) => {}
            Err(e) => {
                eprintln!("mysql-quiesce: error: {e:#}");
                return exit::code_of(&e);
            }
        }
    }
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
        Some(Sub::Unlock) => return holder::unlock_command(&cli, &progress),
        Some(Sub::Status { json }) => return holder::status_command(&cli, *json, &progress),
        _ => {}
    }
    if cli.print_defaults {
        crate::outln!("{}", loaded.defaults_args.join("\n"));
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
        crate::messages::stdout(&plan::describe(&cli, &prepared));
        return exit::OK;
    }
    if cli.check {
        return plan::check(&cli, &prepared, &progress);
    }
    match &cli.subcommand {
        Some(Sub::Lock { .. }) if std::env::var_os(holder::HOLDER_FD).is_some() => {
            match holder::HolderWaiter::from_environment(&cli) {
                Ok(mut waiter) => Run::new(&cli, prepared, progress)
                    .with_waiter(&mut waiter)
                    .execute(),
                Err(e) => {
                    progress.error(format!("{e:#}"));
                    exit::code_of(&e)
                }
            }
        }
        Some(Sub::Lock { json }) => holder::lock_command(&cli, &original_argv, *json, &progress),
        Some(Sub::Hold) => match holder::StdinWaiter::check_stdin() {
            Ok(()) => Run::new(&cli, prepared, progress)
                .with_waiter(&mut holder::StdinWaiter)
                .execute(),
            Err(e) => {
                progress.error(format!("{e:#}"));
                exit::code_of(&e)
            }
        },
        _ => Run::new(&cli, prepared, progress).execute(),
    }
}

fn load_error(e: anyhow::Error, argv: &[OsString]) -> u8 {
    if let Some(clap_err) = e.downcast_ref::<clap::Error>() {
        if matches!(
            clap_err.kind(),
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
        ) {
            let _ = clap_err.print();
            return exit::OK;
        }
        // `-p SECRET` (a space: SECRET is not the password but a stray
        // argument, as in the mysql client) must not print SECRET.
        eprint!(
            "{}",
            mask_stray_password(&clap_err.render().to_string(), argv)
        );
        return exit::USAGE;
    }
    eprintln!("mysql-quiesce: error: {e:#}");
    exit::code_of(&e)
}

/// `text` with the argument that follows a bare `-p`/`--password` replaced by
/// `*****`: typed with a space, a password would otherwise be repeated in
/// the usage error.
fn mask_stray_password(text: &str, argv: &[OsString]) -> String {
    let mut out = text.to_string();
    for pair in argv.windows(2) {
        let (flag, next) = (pair[0].to_string_lossy(), pair[1].to_string_lossy());
        if (flag == "-p" || flag == "--password") && !next.starts_with('-') && !next.is_empty() {
            out = out.replace(next.as_ref(), "*****");
        }
        if flag == "--" {
            break;
        }
    }
    out
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
    /// `lock` and `hold`: waits for the release in place of the snapshot step.
    waiter: Option<&'a mut dyn Waiter>,
    cli: &'a Cli,
    prepared: Prepared,
    progress: Progress,
    report: Report,
    started: Instant,
    /// MYSQL_QUIESCE_* variables for hooks (PHASE and STATUS are set per hook).
    env: BTreeMap<String, String>,
    /// The first failure: its exit status and message. It decides the exit status.
    failure: Option<(u8, String)>,
    /// When the freeze completed (for frozen_ms).
    frozen_at: Option<Instant>,
    /// Kills our hooks if we die, thaws if we die or stall (see `guardian`).
    guardian: Option<Guardian>,
    /// Something could not be thawed: the guardian must stay to retry.
    left_frozen: bool,
    /// The guardian was found gone, and that was said.
    guardian_gone_said: bool,
    /// The end of the locked section, once locked.
    deadline: Option<Instant>,
    /// Hooks stopped at the deadline whose grace runs in the background
    /// (each hangs up its channel when done).
    stopping: Vec<std::sync::mpsc::Receiver<()>>,
}

impl<'a> Run<'a> {
    fn new(cli: &'a Cli, prepared: Prepared, progress: Progress) -> Run<'a> {
        let run_id = new_run_id();
        let mut env = BTreeMap::new();
        env.insert("MYSQL_QUIESCE_RUN_ID".to_string(), run_id.clone());
        env.insert(
            "MYSQL_QUIESCE_LOCK".to_string(),
            plan::lock_name(cli.lock).to_string(),
        );
        for key in [
            "MYSQL_QUIESCE_CONNECTION_ID",
            "MYSQL_QUIESCE_SERVER_FLAVOR",
            "MYSQL_QUIESCE_SERVER_VERSION",
            "MYSQL_QUIESCE_SOURCE_LOG_FILE",
            "MYSQL_QUIESCE_SOURCE_LOG_POS",
            "MYSQL_QUIESCE_GALERA_POSITION",
            "MYSQL_QUIESCE_BINLOG_FILE",
            "MYSQL_QUIESCE_BINLOG_POS",
            "MYSQL_QUIESCE_GTID",
            "MYSQL_QUIESCE_COORDINATES_EXACT",
        ] {
            env.insert(key.to_string(), String::new());
        }
        // Until coordinates are read under a lock that blocks commits, none is exact.
        env.insert("MYSQL_QUIESCE_COORDINATES_EXACT".to_string(), "0".into());
        // The filesystems this run freezes (hooks such as btrfs-snapshot must not write to them).
        let frozen = mount_list(prepared.freeze.iter().map(|t| &t.mountpoint), ":");
        env.insert("MYSQL_QUIESCE_FROZEN".to_string(), frozen);
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
            frozen_at: None,
            waiter: None,
            guardian: None,
            left_frozen: false,
            guardian_gone_said: false,
            deadline: None,
            stopping: Vec::new(),
        }
    }

    fn with_waiter(mut self, waiter: &'a mut dyn Waiter) -> Run<'a> {
        self.waiter = Some(waiter);
        self
    }

    fn ok(&self) -> bool {
        self.failure.is_none()
    }

    /// Remember a failure; the first one decides the exit status, except
    /// that a lost lock (65) beats any other: a snapshot that may exist must
    /// not be trusted, whatever else went wrong.
    fn fail(&mut self, code: u8, message: String) {
        self.progress.error(&message);
        let replaces = match &self.failure {
            None => true,
            Some((first, _)) => code == exit::INCONSISTENT && *first != exit::INCONSISTENT,
        };
        if replaces {
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
                    self.prepared.max_lock_time.as_secs_f64()
                ),
            );
        }
    }

    fn execute(mut self) -> u8 {
        let cli = self.cli;
        let state = crate::state::State::new(&self.prepared.state_dir);
        let _run_lock = match runlock::acquire(cli.lock_file.as_deref(), &state) {
            Ok(l) => l,
            Err(e) => {
                self.fail_with(e);
                return self.finish();
            }
        };
        // Before any hook: hooks must not outlive us, whatever kills us.
        // Not current_exe(): a package upgrade may have replaced the file
        // since we started; /proc/self/exe is the binary we are running.
        match Guardian::start(Path::new("/proc/self/exe"), &self.prepared.freeze) {
            Ok(g) => self.guardian = Some(g),
            Err(e) => {
                self.fail_with(e);
                return self.finish();
            }
        }

        // before: nothing is held yet; a failure stops the run here.
        self.hooks(Phase::Before, &cli.before, None);
        if !self.ok() {
            return self.finish();
        }

        // connect (no session with --lock=none: there is nothing to hold).
        let mut group = match self.connect() {
            Ok(g) => g,
            Err(e) => {
                self.fail_with(e);
                return self.finish();
            }
        };

        // lock; post hooks run whenever this succeeded, after hooks in any case.
        // A job-control stop while a lock attempt waits or the lock is held
        // would stall every writer: ignored from the first attempt to the release.
        signals::ignore_job_control(true);
        if self.lock(group.as_mut()) {
            self.locked_section(group.as_mut());
        }
        signals::ignore_job_control(false);
        drop(group);
        self.hooks(Phase::After, &cli.after, None);
        self.finish()
    }

    fn connect(&mut self) -> anyhow::Result<Option<LockGroup>> {
        if self.prepared.instances.is_empty() {
            return Ok(None);
        }
        let (t0, wall) = (Instant::now(), SystemTime::now());
        let group = LockGroup::open(
            &self.prepared.instances,
            &self.prepared.lock,
            &self.progress,
        );
        self.report
            .phase("connect", wall, t0.elapsed(), group.is_ok());
        let group = group?;
        for (i, m) in group.members.iter().enumerate() {
            let s = &m.session;
            let label = if m.name.is_empty() {
                String::new()
            } else {
                format!("instance {}: ", m.name)
            };
            let tls = s
                .tls_cipher
                .as_deref()
                .map(|c| format!(" over TLS ({c})"))
                .unwrap_or_default();
            self.progress.info(format!(
                "{label}connected to {} at {}{tls} as '{}' (connection {}) in {}",
                s.info.short(),
                m.spec.target,
                m.spec.user,
                s.connection_id,
                human(t0.elapsed())
            ));
            let vars = [
                ("CONNECTION_ID", s.connection_id.to_string()),
                ("SERVER_VERSION", s.info.version.clone()),
                (
                    "SERVER_FLAVOR",
                    format!("{:?}", s.info.flavor).to_lowercase(),
                ),
                ("LOCK", plan::lock_name(s.strategy().mode).to_string()),
            ];
            self.export(i, &m.name, &vars);
            self.report.instances.push(report::InstanceRecord {
                name: m.name.clone(),
                target: m.spec.target.to_string(),
                user: m.spec.user.clone(),
                server: s.info.clone(),
                connection_id: s.connection_id,
                tls: s.tls_cipher.clone(),
                lock: plan::lock_name(s.strategy().mode).to_string(),
                coordinates: None,
            });
        }
        let first = &group.members[0].session;
        self.report.server = Some(first.info.clone());
        self.report.lock.connection_id = Some(first.connection_id);
        self.report.lock.mode = plan::lock_name(first.strategy().mode).to_string();
        Ok(Some(group))
    }

    /// Hook variables: unprefixed for the first instance, and
    /// MYSQL_QUIESCE_<NAME>_<KEY> for every named instance.
    fn export(&mut self, index: usize, name: &str, vars: &[(&str, String)]) {
        for (key, value) in vars {
            if index == 0 {
                self.env
                    .insert(format!("MYSQL_QUIESCE_{key}"), value.clone());
            }
            if !name.is_empty() {
                self.env
                    .insert(format!("MYSQL_QUIESCE_{name}_{key}"), value.clone());
            }
        }
    }

    /// Take the lock (if any). False when it was not acquired.
    fn lock(&mut self, group: Option<&mut LockGroup>) -> bool {
        let Some(g) = group else {
            return true;
        };
        let (t0, wall) = (Instant::now(), SystemTime::now());
        let result = g.acquire(&self.prepared.lock, &self.progress);
        self.report
            .phase("lock", wall, t0.elapsed(), result.is_ok());
        match result {
            Ok(took) => {
                let names: Vec<&str> = g
                    .members
                    .iter()
                    .map(|m| m.session.strategy().name)
                    .collect();
                let mut names_unique = names.clone();
                names_unique.dedup();
                let on = if g.members.len() > 1 {
                    format!(" on {} instances", g.members.len())
                } else {
                    String::new()
                };
                self.progress.info(format!(
                    "locked ({}){on} in {}",
                    names_unique.join(", "),
                    human(took)
                ));
                self.report.lock.statement = Some(names[0].to_string());
                self.report.lock.acquired_in_ms = Some(report::ms(took));
                true
            }
            Err(e) => {
                self.fail_with(e);
                false
            }
        }
    }

    /// Everything between lock and unlock. The lock is held on entry, and is
    /// released at the deadline at the latest: by us, else by the guardian
    /// (filesystems, hooks) and the server (the session's idle bound).
    fn locked_section(&mut self, mut group: Option<&mut LockGroup>) {
        let cli = self.cli;
        let locked_at = Instant::now();
        let deadline = locked_at + self.prepared.max_lock_time;
        self.deadline = Some(deadline);
        if let Some(g) = &self.guardian {
            g.set_deadline(self.prepared.max_lock_time);
        }

        if let Some(g) = group.as_deref_mut() {
            self.coordinates(g);
            g.arm_deadline(deadline, &self.progress);
        }

        // pre, freeze, snapshot, thaw. A panic in here is caught, the
        // filesystems are thawed, and the run continues with post, unlock
        // and after. `frozen` lives out here so a panic leaves it to us.
        let mut frozen: Option<FrozenSet> = None;
        let mut in_freeze_code = false;
        let inner = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.hooks(Phase::Pre, &cli.pre, Some(deadline));
            in_freeze_code = true;
            frozen = self.freeze(deadline);
            in_freeze_code = false;
            self.hold(deadline);
            self.hooks(Phase::Snapshot, &cli.snapshot, Some(deadline));
            self.command(Some(deadline));
            let snapshot_ended = Instant::now();
            if let Some(f) = frozen.take() {
                in_freeze_code = true;
                self.thaw(f);
                in_freeze_code = false;
            }
            // After the thaw, whose own report (the guardian thawed first) is
            // the more precise one when it applies.
            self.stalled_past(deadline, snapshot_ended, "the snapshot phase");
        }));
        if inner.is_err() {
            self.after_panic(frozen.take(), in_freeze_code);
        }

        // verify: the snapshot was taken under the lock only if the session
        // that took it is still the same live connection. Before post, so
        // post and after hooks see MYSQL_QUIESCE_STATUS=failed if not.
        if let Some(g) = group.as_deref_mut() {
            let lost = g.verify(Some(deadline), &self.progress);
            self.report.lock.verified = Some(lost.is_empty());
            if !lost.is_empty() {
                self.fail(
                    exit::INCONSISTENT,
                    format!(
                        "CONSISTENCY NOT GUARANTEED: {}. The lock may have been released before or during \
                         the snapshot, so writes may have happened while it was taken: do not trust this snapshot",
                        lost.join("; ")
                    ),
                );
            }
        }

        // post: always, once locked; locked until the deadline, then released
        // and the rest run unlocked (see `post_hooks`).
        let mut group = group;
        let mut released = false;
        for cmd in &cli.post {
            if !released && Instant::now() >= deadline {
                self.stalled_past(deadline, Instant::now(), "the post hooks");
                self.release(group.take(), locked_at, deadline);
                released = true;
            }
            let limit = (!released).then_some(deadline);
            let ending = self.run_hook(
                Hook {
                    phase: Phase::Post,
                    program: Program::Shell(cmd.clone()),
                    stdout: Stdout::ToStderr,
                },
                limit,
            );
            if ending == Ending::DeadlineExceeded {
                self.release(group.take(), locked_at, deadline);
                released = true;
            }
        }
        if !released {
            self.stalled_past(deadline, Instant::now(), "the locked section");
            self.release(group, locked_at, deadline);
        }
    }

    /// A wait that ended after the deadline without noticing it (we were
    /// stopped, or stalled): the lock may have been taken away meanwhile (by
    /// the guardian, or the server's idle bound), so this run must not succeed.
    fn stalled_past(&mut self, deadline: Instant, ended: Instant, what: &str) {
        if self.ok() && ended > deadline {
            let late = ended - deadline;
            self.fail(
                exit::TIMEOUT,
                format!(
                    "{what} ended {} after --max-lock-time ({} s) passed (was mysql-quiesce stopped or stalled?): \
                     the lock and the freeze may have ended before the snapshot did; do not trust it",
                    human(late),
                    self.prepared.max_lock_time.as_secs_f64()
                ),
            );
        }
    }

    /// Unlock, and tell the guardian that what runs from now on is not
    /// locked (it must not stop those hooks at the deadline).
    fn release(&mut self, group: Option<&mut LockGroup>, locked_at: Instant, deadline: Instant) {
        if let Some(g) = group {
            let (t0, wall) = (Instant::now(), SystemTime::now());
            let errors = g.release(&self.progress);
            self.report
                .phase("unlock", wall, t0.elapsed(), errors.is_empty());
            for e in errors {
                self.progress.warn(format!("{e:#}"));
            }
        }
        if let Some(g) = &self.guardian {
            g.link().tell("released");
        }
        let held = locked_at.elapsed();
        self.report.lock.held_ms = Some(report::ms(held));
        let what = if self.cli.lock == LockMode::None {
            "locked section took"
        } else {
            "unlocked; lock held"
        };
        let past = if Instant::now() > deadline {
            " (released at --max-lock-time)"
        } else {
            ""
        };
        self.progress.info(format!("{what} {}{past}", human(held)));
    }

    /// A panic in the locked section: thaw what is frozen and say in what
    /// state things are.
    fn after_panic(&mut self, frozen: Option<FrozenSet>, in_freeze_code: bool) {
        let state = if let Some(f) = frozen {
            if self.thaw(f) {
                "the filesystems it had frozen are thawed"
            } else {
                "not every filesystem could be thawed (see above)"
            }
        } else if in_freeze_code {
            "it happened while freezing or thawing: what was thawed is logged above, and the guardian thaws \
             the rest when mysql-quiesce exits"
        } else if self.report.frozen.is_empty() {
            "nothing was frozen"
        } else {
            "the filesystems were already thawed"
        };
        self.fail(
            exit::SOFTWARE,
            format!("internal error (panic) in the locked section; {state}"),
        );
    }

    fn coordinates(&mut self, g: &mut LockGroup) {
        let (t0, wall) = (Instant::now(), SystemTime::now());
        let result = g.coordinates(&self.progress);
        self.report
            .phase("coordinates", wall, t0.elapsed(), result.is_ok());
        let all = match result {
            Ok(c) => c,
            Err(e) => return self.fail_with(e),
        };
        let names: Vec<String> = g.members.iter().map(|m| m.name.clone()).collect();
        for (i, (name, c)) in names.iter().zip(&all).enumerate() {
            let label = if name.is_empty() {
                String::new()
            } else {
                format!("{name} ")
            };
            let took = human(t0.elapsed());
            match (&c.binlog_file, c.binlog_position) {
                (Some(f), Some(p)) => self.progress.info(format!(
                    "{label}coordinates: {f}:{p}{} (read in {took})",
                    c.gtid
                        .as_deref()
                        .map(|g| format!(", GTID {g}"))
                        .unwrap_or_default()
                )),
                _ => self.progress.info(format!(
                    "{label}coordinates: binary logging is off (no file/position; read in {took})"
                )),
            }
            let opt = |v: &Option<String>| v.clone().unwrap_or_default();
            let num = |v: Option<u64>| v.map(|p| p.to_string()).unwrap_or_default();
            let vars = [
                ("BINLOG_FILE", opt(&c.binlog_file)),
                ("BINLOG_POS", num(c.binlog_position)),
                ("GTID", opt(&c.gtid)),
                ("SOURCE_LOG_FILE", opt(&c.source_log_file)),
                ("SOURCE_LOG_POS", num(c.source_log_position)),
                ("GALERA_POSITION", opt(&c.galera_position)),
                // 0: read while commits went on (instance, tables-for-backup):
                // not a restore point; shipped hooks never tag it as one.
                (
                    "COORDINATES_EXACT",
                    if c.exact { "1" } else { "0" }.to_string(),
                ),
            ];
            self.export(i, name, &vars);
            if let Some(r) = self.report.instances.get_mut(i) {
                r.coordinates = Some(c.clone());
            }
        }
        if let Some(path) = &self.cli.coordinates_file {
            let json = coordinates_json(
                &all,
                &names,
                &self.report.run_id,
                self.report.server.as_ref(),
            );
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
        self.report.coordinates = all.into_iter().next();
    }

    fn freeze(&mut self, deadline: Instant) -> Option<FrozenSet> {
        self.check_interrupts(Some(deadline));
        if !self.ok() || self.prepared.freeze.is_empty() {
            return None;
        }
        let (t0, wall) = (Instant::now(), SystemTime::now());
        let result = match self.guardian.as_mut() {
            Some(g) => g
                .ensure_alive()
                .and_then(|()| freeze::freeze_all(&self.prepared.freeze, deadline, g.link())),
            None => Err(exit::fail(
                exit::SOFTWARE,
                "no guardian: refusing to freeze",
            )),
        };
        self.report
            .phase("freeze", wall, t0.elapsed(), result.is_ok());
        match result {
            Ok(f) => {
                self.frozen_at = Some(Instant::now());
                let names = mount_list(self.prepared.freeze.iter().map(|t| &t.mountpoint), ", ");
                self.progress
                    .info(format!("froze {names} in {}", human(t0.elapsed())));
                Some(f)
            }
            Err(e) => {
                self.fail_with(e);
                None
            }
        }
    }

    /// `lock`/`hold`: report ready, then wait for the release (or the deadline).
    fn hold(&mut self, deadline: Instant) {
        let Some(waiter) = self.waiter.take() else {
            return;
        };
        if self.ok() {
            let mut env = self.env.clone();
            env.insert("MYSQL_QUIESCE_PHASE".into(), "snapshot".into());
            if let Err(why) = waiter.ready(&env, deadline) {
                // Nobody knows it is locked: release at once, as a writer to a closed pipe would die.
                self.fail(exit::signal(libc::SIGPIPE), why);
                self.waiter = Some(waiter);
                return;
            }
            let (t0, wall) = (Instant::now(), SystemTime::now());
            let end = waiter.wait(deadline);
            self.report
                .phase("hold", wall, t0.elapsed(), end == WaitEnd::Released);
            match end {
                WaitEnd::Released => self.progress.info(format!("release requested after {}", human(t0.elapsed()))),
                WaitEnd::Deadline => self.fail(
                    exit::TIMEOUT,
                    format!(
                        "--max-lock-time ({} s) passed before the unlock: released everything by itself; a snapshot \
                         started after this point was not taken under the lock",
                        self.prepared.max_lock_time.as_secs_f64()
                    ),
                ),
                WaitEnd::Signal(sig) => self.fail(exit::signal(sig), format!("received signal {sig}; releasing everything")),
                WaitEnd::Gone(why) => self.fail(exit::signal(libc::SIGPIPE), why),
            }
        }
        self.waiter = Some(waiter);
    }

    /// Thaw; true when everything was thawed.
    fn thaw(&mut self, frozen: FrozenSet) -> bool {
        let (t0, wall) = (Instant::now(), SystemTime::now());
        let results = frozen.thaw();
        if let Some(at) = self.frozen_at.take() {
            self.report.frozen_ms = Some(report::ms(at.elapsed()));
        }
        let results = &results;
        let all_ok = results.iter().all(|t| t.error.is_none());
        self.left_frozen |= !all_ok;
        self.report.phase("thaw", wall, t0.elapsed(), all_ok);
        for t in results {
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
            let names = mount_list(results.iter().map(|t| &t.mountpoint), ", ");
            self.progress
                .info(format!("thawed {names} in {}", human(t0.elapsed())));
        }
        let deadline = self.deadline.unwrap_or_else(Instant::now);
        if self
            .guardian
            .as_mut()
            .is_some_and(|g| g.acted_at_deadline(deadline))
        {
            // We were stalled past the deadline (stopped, starved): the
            // snapshot may have gone on after the filesystems were thawed.
            self.fail(
                exit::TIMEOUT,
                format!(
                    "--max-lock-time ({} s) passed while frozen and the guardian thawed the filesystems before \
                     mysql-quiesce did: the snapshot may not have been taken frozen; do not trust it",
                    self.prepared.max_lock_time.as_secs_f64()
                ),
            );
        }
        all_ok
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

    /// Run one hook; a failure is recorded. Returns how it ended.
    fn run_hook(&mut self, hook: Hook, deadline: Option<Instant>) -> Ending {
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
            timeout: self.prepared.hook_timeout,
            deadline,
        };
        let gone = match self.guardian.as_mut() {
            Some(g) if !self.guardian_gone_said => g.is_gone().then(|| g.pid()),
            _ => None,
        };
        if let Some(pid) = gone {
            self.progress.warn(format!(
                "the guardian process (pid {pid}) is gone (killed?): hooks are not killed if mysql-quiesce dies, and \
                 nothing will be frozen from here on"
            ));
            // Said once; the freeze refuses by itself (it pings the guardian).
            self.guardian_gone_said = true;
        }
        let link = self.guardian.as_ref().map(Guardian::link);
        let run = hooks::run(&hook, &env, limits, link.as_ref());
        self.stopping.extend(run.stopping);
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
        run.ending
    }

    /// Hooks stopped at the deadline finish their grace; then the guardian
    /// goes (or stays, when something could not be thawed).
    fn dismiss_guardian(&mut self) {
        let end = Instant::now() + hooks::GRACE + Duration::from_secs(2);
        for stopped in self.stopping.drain(..) {
            let _ = stopped.recv_timeout(end.saturating_duration_since(Instant::now()));
        }
        if let Some(g) = self.guardian.take() {
            if self.left_frozen {
                g.abandon();
            } else {
                g.finish();
            }
        }
    }

    /// Close the run: summary line, report file, exit status.
    fn finish(mut self) -> u8 {
        let (code, message) = self.failure.clone().unwrap_or((exit::OK, String::new()));
        self.report.exit_code = code;
        self.report.outcome = if code == exit::OK { "ok" } else { "failed" }.into();
        // Consistent means taken under a database lock verified at the end;
        // --lock=none can succeed (exit 0) but never claims that.
        self.report.consistent = code == exit::OK && self.report.lock.verified == Some(true);
        self.report.error = (!message.is_empty()).then_some(message);
        let finished = SystemTime::now();
        self.report.finished_at = Some(report::rfc3339(finished));
        // Written last: after thaw and unlock, never onto a frozen filesystem.
        let outputs = [
            (&self.cli.report, "report", self.report.to_json()),
            (
                &self.cli.metrics_file,
                "metrics file",
                self.report.prometheus(
                    finished,
                    (self.cli.metrics_file.as_deref())
                        .and_then(report::read_previous_metrics)
                        .as_deref(),
                ),
            ),
        ];
        let mut code = code;
        for (path, what, text) in outputs {
            let Some(path) = path else { continue };
            if let Err(e) = report::write_atomic(path, text.as_bytes()) {
                self.progress
                    .error(format!("cannot write the {what} {}: {e}", path.display()));
                if code == exit::OK {
                    code = exit::CONFIG;
                }
            }
        }
        self.dismiss_guardian();
        if let Some(waiter) = self.waiter.take() {
            waiter.finished(code, self.report.error.as_deref(), &self.report);
        }
        let total = human(self.started.elapsed());
        let held = self
            .report
            .lock
            .held_ms
            .map(|ms| {
                format!(
                    " (lock held {})",
                    human(Duration::from_secs_f64(ms / 1000.0))
                )
            })
            .unwrap_or_default();
        if code == exit::OK && self.cli.lock == LockMode::None {
            self.progress.info(format!(
                "done in {total}: no database lock was taken (--lock=none)"
            ));
        } else if code == exit::OK {
            self.progress
                .info(format!("done in {total}: snapshot consistent{held}"));
        } else {
            self.progress
                .error(format!("failed in {total} with exit status {code}"));
        }
        code
    }
}

/// Mount points as one string, e.g. "/a, /b" for messages or "/a:/b" for hooks.
fn mount_list<'m>(mounts: impl Iterator<Item = &'m std::path::PathBuf>, separator: &str) -> String {
    mounts
        .map(|m| m.display().to_string())
        .collect::<Vec<_>>()
        .join(separator)
}

/// The coordinates file: small, stable JSON that can live inside the
/// snapshot. One instance: its fields at the top level; several: also an
/// `instances` object keyed by name.
fn coordinates_json(
    all: &[Coordinates],
    names: &[String],
    run_id: &str,
    server: Option<&ServerInfo>,
) -> String {
    let mut v = serde_json::to_value(all.first().cloned().unwrap_or_default()).expect("json");
    v["run_id"] = run_id.into();
    v["read_at"] = report::rfc3339(SystemTime::now()).into();
    v["server_version"] = server.map(|s| s.version.clone()).into();
    if names.iter().any(|n| !n.is_empty()) {
        let map: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .zip(all)
            .map(|(n, c)| (n.clone(), serde_json::to_value(c).expect("json")))
            .collect();
        v["instances"] = map.into();
    }
    serde_json::to_string_pretty(&v).expect("json") + "\n"
}
