//! The sequence of a run, in the order of `procedure::STEPS`: before,
//! connect, lock, coordinates, pre, freeze, snapshot, thaw, verify, post,
//! unlock, after. This module decides the order and what a failure means;
//! what it does to the world goes through a `Backend` (the real one holds
//! every acquired resource in a guard whose Drop releases it: the run lock,
//! the lock sessions, the frozen set, the guardian).

mod backend;
mod outputs;
#[cfg(test)]
mod tests;

pub use backend::{Backend, Connected, Real};

use crate::exit;
use crate::holder::{WaitEnd, Waiter};
use crate::hooks::{Ending, Hook, Limits, Phase, Program, Stdout};
use crate::messages::Progress;
use crate::plan::Plan;
use crate::procedure;
use crate::report::{self, human, FreezeRecord, HookRecord, Outcome, Report};
use crate::signals;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

/// When a step started, for the report's phases.
#[derive(Clone, Copy)]
struct Clock {
    wall: SystemTime,
    start: Instant,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            wall: SystemTime::now(),
            start: Instant::now(),
        }
    }
}

pub struct Run<'a> {
    plan: &'a Plan,
    backend: &'a mut dyn Backend,
    /// `lock` and `hold`: waits for the release in place of the snapshot step.
    waiter: Option<&'a mut dyn Waiter>,
    progress: Progress,
    report: Report,
    started: Instant,
    /// MYSQL_QUIESCE_* variables for hooks (PHASE and STATUS are set per hook).
    env: BTreeMap<String, String>,
    /// The servers connected, in order.
    connected: Vec<Connected>,
    /// The first failure: its exit status and message. It decides the exit
    /// status, except that a lost lock (65) replaces any other.
    failure: Option<(u8, String)>,
    /// The locked section's start and end, once locked.
    locked_at: Option<Instant>,
    deadline: Option<Instant>,
    /// Whether the lock is held now (released at the deadline at the latest).
    holding: bool,
    /// When the freeze completed (for frozen_ms).
    frozen_at: Option<Instant>,
    /// Something could not be thawed: the guardian must stay to retry.
    left_frozen: bool,
    /// The guardian was found gone, and that was said.
    guardian_gone_said: bool,
}

impl<'a> Run<'a> {
    pub fn new(plan: &'a Plan, backend: &'a mut dyn Backend) -> Run<'a> {
        let report = Report::new(new_run_id(), plan.lock.mode);
        let mut env = BTreeMap::new();
        env.insert("MYSQL_QUIESCE_RUN_ID".to_string(), report.run_id.clone());
        env.insert(
            "MYSQL_QUIESCE_LOCK".to_string(),
            plan.lock.mode.name().to_string(),
        );
        for key in [
            "CONNECTION_ID",
            "SERVER_FLAVOR",
            "SERVER_VERSION",
            "SOURCE_LOG_FILE",
            "SOURCE_LOG_POS",
            "GALERA_POSITION",
            "BINLOG_FILE",
            "BINLOG_POS",
            "GTID",
        ] {
            env.insert(format!("MYSQL_QUIESCE_{key}"), String::new());
        }
        // Until coordinates are read under a lock that blocks commits, none is exact.
        env.insert("MYSQL_QUIESCE_COORDINATES_EXACT".to_string(), "0".into());
        // The filesystems this run freezes (hooks such as btrfs-snapshot must not write to them).
        let frozen: Vec<String> = plan
            .freeze
            .iter()
            .map(|t| t.mountpoint.display().to_string())
            .collect();
        env.insert("MYSQL_QUIESCE_FROZEN".to_string(), frozen.join(":"));
        Run {
            plan,
            backend,
            waiter: None,
            progress: plan.progress,
            report,
            started: Instant::now(),
            env,
            connected: Vec::new(),
            failure: None,
            locked_at: None,
            deadline: None,
            holding: false,
            frozen_at: None,
            left_frozen: false,
            guardian_gone_said: false,
        }
    }

    pub fn with_waiter(mut self, waiter: &'a mut dyn Waiter) -> Run<'a> {
        self.waiter = Some(waiter);
        self
    }

    /// The whole run; its exit status.
    pub fn execute(mut self) -> u8 {
        let plan = self.plan;
        if self.attempt(|b| b.take_run_lock()) && self.attempt(|b| b.start_guardian()) {
            // Its start overlaps the connect, unless a hook comes first.
            if !plan.hooks.before.is_empty() && self.attempt(|b| b.guardian_ready()) {
                self.hooks(Phase::Before, &plan.hooks.before);
            }
            if self.ok() && self.connect() && self.attempt(|b| b.guardian_ready()) {
                // A job-control stop while a lock attempt waits or the lock is
                // held would stall every writer: ignored until the release.
                signals::ignore_job_control(true);
                if self.lock() {
                    self.locked_section();
                }
                signals::ignore_job_control(false);
                self.backend.disconnect();
                self.hooks(Phase::After, &plan.hooks.after);
            }
        }
        self.finish()
    }

    /// Everything between lock and unlock. The lock is held on entry, and is
    /// released at the deadline at the latest: by us, else by the guardian
    /// (filesystems, hooks) and the server (the session's idle bound).
    fn locked_section(&mut self) {
        let plan = self.plan;
        let deadline = self.start_locked_section();
        self.coordinates();
        self.backend.bound(deadline);
        // A panic in here is caught: the run goes on with the thaw, post,
        // unlock and after, and fails with 70.
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.hooks(Phase::Pre, &plan.hooks.pre);
            self.freeze(deadline);
            self.hold(deadline);
            self.hooks(Phase::Snapshot, &plan.hooks.snapshot);
            self.command();
        }))
        .is_err();
        let snapshot_ended = Instant::now();
        self.thaw();
        if panicked {
            self.fail(
                exit::SOFTWARE,
                "internal error (panic) in the locked section; the thaw, post hooks, unlock and after hooks ran as \
                 usual (see above)"
                    .into(),
            );
        }
        // After the thaw, whose own report (the guardian thawed first) is the
        // more precise one when it applies.
        self.stalled_past(snapshot_ended, "the snapshot phase");
        self.verify(deadline);
        self.post(deadline);
        if self.holding {
            self.stalled_past(Instant::now(), "the locked section");
            self.release();
        }
    }

    // ------------------------------------------------------------ failures

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

    /// A backend call whose error fails the run; whether it worked.
    fn attempt(&mut self, f: impl FnOnce(&mut dyn Backend) -> anyhow::Result<()>) -> bool {
        match f(self.backend) {
            Ok(()) => true,
            Err(e) => {
                self.fail_with(e);
                false
            }
        }
    }

    /// A termination signal, or the deadline of the locked section, ends the
    /// remaining pre/snapshot work.
    fn check_interrupts(&mut self) {
        if !self.ok() {
            return;
        }
        if let Some(sig) = signals::received() {
            self.fail(
                exit::signal(sig),
                format!("received signal {sig}; releasing everything"),
            );
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.fail(
                exit::TIMEOUT,
                format!(
                    "--max-lock-time ({} s) passed; releasing everything",
                    self.plan.max_lock_time.as_secs_f64()
                ),
            );
        }
    }

    /// Something that ended after the deadline without noticing it (we were
    /// stopped, or stalled): the lock and the freeze may have been taken away
    /// meanwhile (by the guardian, or the server's idle bound).
    fn stalled_past(&mut self, ended: Instant, what: &str) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if self.ok() && ended > deadline {
            self.fail(
                exit::TIMEOUT,
                format!(
                    "{what} ended {} after --max-lock-time ({} s) passed (was mysql-quiesce stopped or stalled?): \
                     the lock and the freeze may have ended before the snapshot did; do not trust it",
                    human(ended - deadline),
                    self.plan.max_lock_time.as_secs_f64()
                ),
            );
        }
    }

    // ------------------------------------------------------------ the steps

    /// Connect (nothing to connect with --lock=none). False when it failed.
    fn connect(&mut self) -> bool {
        if !self.plan.locks() {
            return true;
        }
        let clock = Clock::start();
        let result = self.backend.connect();
        self.phase(procedure::CONNECT, clock, result.is_ok());
        let connected = match result {
            Ok(c) => c,
            Err(e) => {
                self.fail_with(e);
                return false;
            }
        };
        for (i, c) in connected.iter().enumerate() {
            let tls = c
                .tls
                .as_deref()
                .map(|cipher| format!(" over TLS ({cipher})"))
                .unwrap_or_default();
            self.progress.info(format!(
                "{}connected to {} at {}{tls} as '{}' (connection {}) in {}",
                c.instance.prefix(),
                c.info.short(),
                c.instance.spec.target,
                c.instance.spec.user,
                c.connection_id,
                human(clock.start.elapsed())
            ));
            let vars = [
                ("CONNECTION_ID", c.connection_id.to_string()),
                ("SERVER_VERSION", c.info.version.clone()),
                ("SERVER_FLAVOR", c.info.flavor.id().to_string()),
                ("LOCK", c.lock.name().to_string()),
            ];
            self.export(i, c, &vars);
            self.report.instances.push(report::InstanceRecord {
                name: c.instance.label(),
                target: c.instance.spec.target.to_string(),
                user: c.instance.spec.user.clone(),
                server: c.info.clone(),
                connection_id: c.connection_id,
                tls: c.tls.clone(),
                lock: c.lock,
                coordinates: None,
            });
        }
        if let Some(first) = connected.first() {
            self.report.server = Some(first.info.clone());
            self.report.lock.connection_id = Some(first.connection_id);
            self.report.lock.mode = first.lock;
        }
        self.connected = connected;
        true
    }

    /// Hook variables: unprefixed for the first instance, and
    /// MYSQL_QUIESCE_<NAME>_<KEY> for every named one.
    fn export(&mut self, index: usize, c: &Connected, vars: &[(&str, String)]) {
        for (key, value) in vars {
            if index == 0 {
                self.env
                    .insert(format!("MYSQL_QUIESCE_{key}"), value.clone());
            }
            if let Some(name) = &c.instance.name {
                self.env
                    .insert(format!("MYSQL_QUIESCE_{name}_{key}"), value.clone());
            }
        }
    }

    /// Take the lock (a no-op with --lock=none). False when it was not acquired.
    fn lock(&mut self) -> bool {
        if !self.plan.locks() {
            self.holding = true;
            return true;
        }
        let clock = Clock::start();
        let result = self.backend.lock();
        self.phase(procedure::LOCK, clock, result.is_ok());
        match result {
            Ok(took) => {
                let mut names: Vec<&str> = self.connected.iter().map(|c| c.statement).collect();
                self.report.lock.statement = names.first().map(|s| s.to_string());
                names.dedup();
                let on = match self.connected.len() {
                    1 => String::new(),
                    n => format!(" on {n} instances"),
                };
                self.progress.info(format!(
                    "locked ({}){on} in {}",
                    names.join(", "),
                    human(took)
                ));
                self.report.lock.acquired_in_ms = Some(report::ms(took));
                self.holding = true;
                true
            }
            Err(e) => {
                self.fail_with(e);
                false
            }
        }
    }

    fn start_locked_section(&mut self) -> Instant {
        let now = Instant::now();
        let deadline = now + self.plan.max_lock_time;
        self.locked_at = Some(now);
        self.deadline = Some(deadline);
        deadline
    }

    fn coordinates(&mut self) {
        if !self.plan.locks() {
            return;
        }
        let clock = Clock::start();
        let result = self.backend.coordinates();
        self.phase(procedure::COORDINATES, clock, result.is_ok());
        let all = match result {
            Ok(c) => c,
            Err(e) => return self.fail_with(e),
        };
        let took = human(clock.start.elapsed());
        let connected = std::mem::take(&mut self.connected);
        for (i, (c, coords)) in connected.iter().zip(&all).enumerate() {
            self.progress
                .info(outputs::coordinates_line(&c.instance, coords, &took));
            self.export(i, c, &outputs::coordinate_vars(coords));
            if let Some(r) = self.report.instances.get_mut(i) {
                r.coordinates = Some(coords.clone());
            }
        }
        let plan = self.plan;
        if let Some(path) = &plan.outputs.coordinates {
            let json = outputs::coordinates_json(&all, &connected, &self.report.run_id);
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
        self.connected = connected;
        self.report.coordinates = all.into_iter().next();
    }

    fn freeze(&mut self, deadline: Instant) {
        self.check_interrupts();
        if !self.ok() || self.plan.freeze.is_empty() {
            return;
        }
        let clock = Clock::start();
        let result = self.backend.freeze(deadline);
        self.phase(procedure::FREEZE, clock, result.is_ok());
        match result {
            Ok(()) => {
                self.frozen_at = Some(Instant::now());
                self.progress.info(format!(
                    "froze {} in {}",
                    outputs::mount_list(&self.plan.freeze),
                    human(clock.start.elapsed())
                ));
            }
            Err(e) => self.fail_with(e),
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
            if let Err(not) = waiter.ready(&env, deadline) {
                // Nobody knows it is locked: release at once.
                self.fail(not.code, not.why);
            } else {
                let clock = Clock::start();
                let end = waiter.wait(deadline);
                self.report.phase(
                    "hold",
                    clock.wall,
                    clock.start.elapsed(),
                    end == WaitEnd::Released,
                );
                self.waited(end, clock);
            }
        }
        self.waiter = Some(waiter);
    }

    fn waited(&mut self, end: WaitEnd, clock: Clock) {
        match end {
            WaitEnd::Released => self.progress.info(format!(
                "release requested after {}",
                human(clock.start.elapsed())
            )),
            WaitEnd::Deadline => self.fail(
                exit::TIMEOUT,
                format!(
                    "--max-lock-time ({} s) passed before the unlock: released everything by itself; a snapshot \
                     started after this point was not taken under the lock",
                    self.plan.max_lock_time.as_secs_f64()
                ),
            ),
            WaitEnd::Signal(sig) => self.fail(
                exit::signal(sig),
                format!("received signal {sig}; releasing everything"),
            ),
            WaitEnd::Gone(why) => self.fail(exit::signal(libc::SIGPIPE), why),
        }
    }

    /// The COMMAND after `--`, last in the snapshot phase.
    fn command(&mut self) {
        let plan = self.plan;
        let Some((argv, _)) = &plan.hooks.command else {
            return;
        };
        self.check_interrupts();
        if !self.ok() {
            return;
        }
        let hook = Hook {
            phase: Phase::Snapshot,
            program: Program::Argv(argv.clone()),
            stdout: Stdout::Inherit,
        };
        self.run_hook(hook, self.deadline);
    }

    /// Thaw what is frozen (always); a thaw that fails is left to the guardian.
    fn thaw(&mut self) {
        let clock = Clock::start();
        let results = self.backend.thaw();
        if results.is_empty() {
            return;
        }
        if let Some(at) = self.frozen_at.take() {
            self.report.frozen_ms = Some(report::ms(at.elapsed()));
        }
        let all_ok = results.iter().all(|t| t.error.is_none());
        self.left_frozen |= !all_ok;
        self.phase(procedure::THAW, clock, all_ok);
        for t in &results {
            let fs_type = self
                .plan
                .freeze
                .iter()
                .find(|x| x.mountpoint == t.mountpoint)
                .map(|x| x.fs_type.clone())
                .unwrap_or_default();
            self.report.frozen.push(FreezeRecord {
                mountpoint: t.mountpoint.display().to_string(),
                fs_type,
                thaw_error: t.error.clone(),
            });
            if let Some(err) = &t.error {
                let m = t.mountpoint.display();
                self.fail(
                    exit::SOFTWARE,
                    format!("could not thaw {m}: {err}. It may still be frozen: run `fsfreeze -u {m}` now"),
                );
            }
        }
        if all_ok {
            let names: Vec<String> = results
                .iter()
                .map(|t| t.mountpoint.display().to_string())
                .collect();
            self.progress.info(format!(
                "thawed {} in {}",
                names.join(", "),
                human(clock.start.elapsed())
            ));
        }
        let deadline = self.deadline.unwrap_or_else(Instant::now);
        if self.backend.guardian_acted(deadline) {
            // We were stalled past the deadline (stopped, starved): the
            // snapshot may have gone on after the filesystems were thawed.
            self.fail(
                exit::TIMEOUT,
                format!(
                    "--max-lock-time ({} s) passed while frozen and the guardian thawed the filesystems before \
                     mysql-quiesce did: the snapshot may not have been taken frozen; do not trust it",
                    self.plan.max_lock_time.as_secs_f64()
                ),
            );
        }
    }

    /// The snapshot was taken under the lock only if the session that took it
    /// is still the same live connection. Before post, so post and after
    /// hooks see MYSQL_QUIESCE_STATUS=failed if not.
    fn verify(&mut self, deadline: Instant) {
        if !self.plan.locks() {
            return;
        }
        let clock = Clock::start();
        let lost = self.backend.verify(deadline);
        self.phase(procedure::VERIFY, clock, lost.is_empty());
        self.report.lock.verified = Some(lost.is_empty());
        if !lost.is_empty() {
            self.fail(
                exit::INCONSISTENT,
                format!(
                    "CONSISTENCY NOT GUARANTEED: {}. Writes may have happened while the snapshot was taken: do not \
                     trust this snapshot, nor its coordinates",
                    lost.join("; ")
                ),
            );
        }
    }

    /// Post hooks: all of them, whatever happened; locked until the deadline,
    /// then the lock is released and the rest run unlocked.
    fn post(&mut self, deadline: Instant) {
        let plan = self.plan;
        for cmd in &plan.hooks.post {
            if self.holding && Instant::now() >= deadline {
                self.stalled_past(Instant::now(), "the post hooks");
                self.release();
            }
            let hook = Hook {
                phase: Phase::Post,
                program: Program::Shell(cmd.clone()),
                stdout: Stdout::ToStderr,
            };
            let limit = self.holding.then_some(deadline);
            if self.run_hook(hook, limit) == Ending::DeadlineExceeded && self.holding {
                self.release();
            }
        }
    }

    /// Unlock, and tell the guardian that what runs from now on is not
    /// locked (it must not stop those hooks at the deadline).
    fn release(&mut self) {
        self.holding = false;
        let clock = Clock::start();
        let errors = self.backend.release();
        if self.plan.locks() {
            self.phase(procedure::UNLOCK, clock, errors.is_empty());
        }
        for e in errors {
            self.progress.warn(format!("{e:#}"));
        }
        let held = self.locked_at.map(|t| t.elapsed()).unwrap_or_default();
        self.report.lock.held_ms = Some(report::ms(held));
        let what = if self.plan.locks() {
            "unlocked; lock held"
        } else {
            "locked section took"
        };
        let past = if self.deadline.is_some_and(|d| Instant::now() > d) {
            " (released at --max-lock-time)"
        } else {
            ""
        };
        self.progress.info(format!("{what} {}{past}", human(held)));
    }

    // ------------------------------------------------------------ hooks

    /// Run the hooks of one phase in order; before, pre and snapshot stop at
    /// the first failure, post and after hooks all run.
    fn hooks(&mut self, phase: Phase, commands: &[String]) {
        let always = matches!(phase, Phase::Post | Phase::After);
        let locked = matches!(phase, Phase::Pre | Phase::Snapshot);
        for cmd in commands {
            if !always {
                self.check_interrupts();
                if !self.ok() {
                    return;
                }
            }
            let stdout = if phase == Phase::Snapshot {
                Stdout::Inherit
            } else {
                Stdout::ToStderr
            };
            let hook = Hook {
                phase,
                program: Program::Shell(cmd.clone()),
                stdout,
            };
            self.run_hook(hook, if locked { self.deadline } else { None });
        }
    }

    /// Run one hook; a failure is recorded. Returns how it ended.
    fn run_hook(&mut self, hook: Hook, deadline: Option<Instant>) -> Ending {
        let mut env: Vec<(String, String)> = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.push(("MYSQL_QUIESCE_PHASE".into(), hook.phase.name().into()));
        if matches!(hook.phase, Phase::Post | Phase::After) {
            let status = if self.ok() { "ok" } else { "failed" };
            env.push(("MYSQL_QUIESCE_STATUS".into(), status.into()));
        }
        if !self.guardian_gone_said {
            if let Some(pid) = self.backend.guardian_gone() {
                self.progress.warn(format!(
                    "the guardian process (pid {pid}) is gone (killed?): hooks are not killed if mysql-quiesce \
                     dies, and nothing will be frozen from here on"
                ));
                // Said once; the freeze refuses by itself (it pings the guardian).
                self.guardian_gone_said = true;
            }
        }
        let clock = Clock::start();
        let limits = Limits {
            timeout: self.plan.hook_timeout,
            deadline,
        };
        let (ending, duration) = self.backend.run_hook(&hook, &env, limits);
        let shown = hook.program.display();
        let code = ending.exit_code();
        self.report.hooks.push(HookRecord {
            phase: hook.phase,
            command: shown.clone(),
            result: ending.describe(),
            exit_code: code,
            duration_ms: report::ms(duration),
        });
        self.report
            .phase(hook.phase.name(), clock.wall, duration, ending.success());
        if ending.success() {
            self.progress.info(format!(
                "{}: `{shown}` ok in {}",
                hook.phase.name(),
                human(duration)
            ));
        } else {
            self.fail(
                code,
                format!("{} hook `{shown}` {}", hook.phase.name(), ending.describe()),
            );
        }
        ending
    }

    fn phase(&mut self, step: procedure::Step, clock: Clock, ok: bool) {
        self.report
            .phase(step.name, clock.wall, clock.start.elapsed(), ok);
    }

    // ------------------------------------------------------------ the end

    /// Close the run: report, metrics, guardian, summary line, exit status.
    fn finish(mut self) -> u8 {
        let (code, message) = self.failure.clone().unwrap_or((exit::OK, String::new()));
        self.report.exit_code = code;
        self.report.outcome = if code == exit::OK {
            Outcome::Ok
        } else {
            Outcome::Failed
        };
        // Consistent means taken under a database lock verified at the end;
        // --lock=none can succeed (exit 0) but never claims that.
        self.report.consistent = code == exit::OK && self.report.lock.verified == Some(true);
        self.report.error = (!message.is_empty()).then_some(message);
        let finished = SystemTime::now();
        self.report.finished_at = Some(report::rfc3339(finished));
        let code = outputs::write_report_and_metrics(
            &self.plan.outputs,
            &self.report,
            finished,
            &self.progress,
            code,
        );
        self.backend.dismiss(self.left_frozen);
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
        if code == exit::OK && !self.plan.locks() {
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
