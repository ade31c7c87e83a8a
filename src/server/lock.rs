//! The lock session: one dedicated connection that takes the lock, holds it
//! while hooks run, and releases it; plus a watchdog connection, opened
//! before locking, that bounds each lock attempt with KILL QUERY.
//!
//! Why both bounds: FLUSH TABLES WITH READ LOCK blocks every writer while it
//! waits for running statements, so an unbounded wait is an outage. The
//! session's lock_wait_timeout bounds it on the server (whole seconds only);
//! the watchdog's KILL QUERY bounds it at exactly --lock-wait-timeout and also
//! covers waits the server-side timeout does not apply to.

use super::codes;
use super::connect::{ConnectSpec, Opening};
use super::coordinates::{self, Coordinates};
use super::flavor::ServerInfo;
use super::guard::{self, Running};
use super::strategy::{self, Strategy};
use crate::exit;
use crate::messages::Progress;
use crate::server::guard::QueryType;
use crate::server::strategy::LockMode;
use mysql::prelude::Queryable;
use mysql::Conn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// While locked, the lock session's idle timeout (`wait_timeout`) is the time
/// left until the deadline plus this, rounded up to whole seconds: if our
/// process stops (SIGSTOP, a cgroup freezer, a stall of any kind) the server
/// itself drops the session, and with it the lock, between 1 and 2 s after
/// the deadline. The run releases by itself at the deadline, well before.
pub const IDLE_MARGIN: Duration = Duration::from_secs(1);
/// When the watchdog session KILLs the lock session if we have not released
/// by then (our process is stuck, say, or a proxy ignores wait_timeout).
pub const KILL_MARGIN: Duration = Duration::from_secs(1);
/// A lock statement that returns this much after its budget was not waiting
/// on the server (the watchdog ends that): our process was stalled.
pub(crate) const STALL_SLACK: Duration = Duration::from_secs(1);

/// How the lock is taken and given back.
#[derive(Debug, Clone)]
pub struct LockConfig {
    /// As requested (may be `Auto`).
    pub mode: LockMode,
    /// Budget of one attempt (--lock-wait-timeout).
    pub wait: Duration,
    /// Attempts after the first (--lock-retries).
    pub retries: u32,
    /// Pause between attempts (--lock-retry-delay).
    pub retry_delay: Duration,
    /// --long-query-guard.
    pub guard: Guard,
    /// --long-query-type, when given (else what the strategy waits for).
    pub query_type: Option<QueryType>,
    /// --long-query-wait: the longest wait for long statements, in all.
    pub long_query_wait: Duration,
    /// --kill-long-queries: kill blockers once an attempt has waited this long.
    pub kill_after: Option<Duration>,
    /// --pre-flush.
    pub pre_flush: bool,
    /// --stop-replica-sql.
    pub stop_replica_sql: bool,
    /// --max-lock-time (bounds the lock session's idle time).
    pub max_lock_time: Duration,
}

/// The binary-log point read under the lock.
#[derive(Debug, Clone)]
struct LockedBinlog {
    file: String,
    position: u64,
    /// The GTID set then (None when empty: GTIDs off).
    gtid: Option<String>,
}

/// Binary-log events that log no change: what a rotation (FLUSH BINARY LOGS)
/// writes at the end of one file and the start of the next.
const NO_CHANGE_EVENTS: &[&str] = &[
    "Rotate",
    "Stop",
    "Format_desc",
    "Previous_gtids",
    "Gtid_list",
    "Binlog_checkpoint",
    "Start_encryption",
];

/// The long-query guard: before an attempt, wait while statements the lock
/// would wait for have run this long (as XtraBackup's --ftwrl-wait-threshold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// The default: `AUTO_GUARD` for a lock that waits for running
    /// statements (ftwrl), off for the others.
    Auto,
    Off,
    After(Duration),
}

/// The default guard threshold. The process list counts whole seconds, so
/// this is the finest that reads the same on every server.
pub const AUTO_GUARD: Duration = Duration::from_secs(1);

/// The first attempt's budget; each next one doubles, up to
/// --lock-wait-timeout. An uncontended lock takes milliseconds (48 ms with
/// 10,000 open tables in bench/), so a blocked attempt costs writers this
/// much, not the whole --lock-wait-timeout.
pub const FIRST_ATTEMPT: Duration = Duration::from_millis(250);

impl LockConfig {
    /// The budget of attempt `n` (from 1). The last attempt (the only one
    /// with --lock-retries=0) gets the whole --lock-wait-timeout: no retry
    /// would follow a shorter one. So does every attempt with
    /// --kill-long-queries: the kill comes at a fixed point of it.
    pub fn attempt_budget(&self, n: u32) -> Duration {
        if self.kill_after.is_some() || n >= self.retries.saturating_add(1) {
            return self.wait;
        }
        let doubled = FIRST_ATTEMPT.saturating_mul(1u32 << (n.saturating_sub(1)).min(16));
        doubled.min(self.wait)
    }
}

pub struct LockSession {
    conn: Conn,
    /// Second connection: KILL QUERY for overrunning attempts, diagnostics,
    /// and the deadline killer while locked.
    watchdog: Arc<Mutex<Conn>>,
    watchdog_id: u32,
    /// Armed while the lock is held (see `arm_deadline`).
    killer: Option<DeadlineKiller>,
    pub connection_id: u32,
    pub info: ServerInfo,
    /// The TLS cipher of the lock session; None when it is not encrypted.
    pub tls_cipher: Option<String>,
    strategy: Strategy,
    held: bool,
    /// The replica SQL thread we stopped and must start again.
    replica_stopped: bool,
    /// The binary-log file and position read under the lock, when they are
    /// an exact point: `verify` checks that nothing was logged since.
    locked_binlog: Option<LockedBinlog>,
    /// The statements the last attempt that gave up was waiting behind (they
    /// ran before it and still did after): waited out before the next one.
    blockers: Vec<Running>,
    /// Written while a replica SQL thread we stopped is stopped (see
    /// `State::replica_note`): if we die before starting it again, the next
    /// run and --check say so.
    replica_note: Option<std::path::PathBuf>,
}

pub(crate) enum AttemptError {
    /// Gave up within the budget; nothing is held after cleanup. Safe to retry.
    GaveUp(String),
    /// Retrying cannot help.
    Fatal(anyhow::Error),
}

impl LockSession {
    /// Connect the lock session and its watchdog, detect the server, choose
    /// the lock (exit 78 when the server does not support the mode asked for).
    pub fn open(
        spec: &ConnectSpec,
        cfg: &LockConfig,
        progress: &Progress,
    ) -> anyhow::Result<LockSession> {
        for w in &spec.warnings {
            progress.warn(w);
        }
        let server_wait = cfg.wait.as_secs_f64().ceil().max(1.0) as u64;
        // As if locked from here on: a lock the server grants while our
        // process is stopped (mid-attempt) ends --max-lock-time + 1..2 s
        // later. `pause` lengthens it for the idle pauses between attempts.
        let settings = format!(
            "lock_wait_timeout = {server_wait}, wait_timeout = {}",
            idle_secs(cfg.max_lock_time)
        );
        // Both at once: each is a round trip or more (TLS, authentication).
        let watchdog = Opening::idle(spec, progress);
        let (mut conn, info) = Opening::start(spec, progress, &settings).wait()?;
        let (watchdog, _) = watchdog.wait()?;
        let strategy = strategy::resolve(cfg.mode, &info, &mut conn)?;
        let tls_cipher = if spec.ssl_mode == super::connect::SslMode::Disabled {
            None
        } else {
            conn.query_first::<(String, String), _>("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                .map_err(|e| sql_error("reading the session's TLS status", &e))?
                .map(|(_, cipher)| cipher)
                .filter(|c| !c.is_empty())
        };
        let mut session = LockSession {
            connection_id: conn.connection_id(),
            conn,
            watchdog_id: watchdog.connection_id(),
            watchdog: Arc::new(Mutex::new(watchdog)),
            killer: None,
            info,
            tls_cipher,
            strategy,
            held: false,
            replica_stopped: false,
            replica_note: None,
            blockers: Vec::new(),
            locked_binlog: None,
        };
        let explicit_guard = matches!(cfg.guard, Guard::After(_));
        if !explicit_guard && cfg.kill_after.is_none() && session.guard_threshold(cfg).is_some() {
            // The default guard works without PROCESS, but sees only this
            // user's statements: say so, since it then cannot spare writers.
            let granted = session.granted()?;
            if !granted.iter().any(|g| g.eq_ignore_ascii_case("PROCESS")) {
                progress.info(format!(
                    "user '{}' lacks PROCESS: the long-query guard sees only its own statements, so an attempt may \
                     wait behind another user's long statement (and writers behind it) for up to \
                     --lock-wait-timeout; GRANT PROCESS ON *.* to avoid that",
                    spec.user
                ));
            }
        }
        if explicit_guard || cfg.kill_after.is_some() {
            let granted = session.granted()?;
            let missing = session.missing_guard_privileges(cfg, &granted);
            if !missing.is_empty() {
                return Err(exit::fail(
                    exit::NOPERM,
                    format!(
                        "user '{}' lacks {}: grant it, or drop the option. Nothing was locked or frozen.",
                        spec.user,
                        missing.join(", ")
                    ),
                ));
            }
        }
        Ok(session)
    }

    /// Which server this is, to tell two --instance specs naming the same
    /// one: its host name, port and data directory.
    pub fn server_identity(&mut self) -> anyhow::Result<String> {
        let row: Option<(Option<String>, Option<u64>, Option<String>)> = self
            .conn
            .query_first("SELECT @@hostname, @@port, @@datadir")
            .map_err(|e| sql_error("reading the server's identity", &e))?;
        let (host, port, datadir) = row.unwrap_or_default();
        Ok(format!(
            "{}:{} {}",
            host.unwrap_or_default(),
            port.unwrap_or_default(),
            datadir.unwrap_or_default()
        ))
    }

    pub fn strategy(&self) -> &Strategy {
        &self.strategy
    }

    fn watchdog(&self) -> MutexGuard<'_, Conn> {
        self.watchdog.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// While locked: bound the lock session on the server side, so that the
    /// lock ends near `deadline` even if our process never runs again. Sets
    /// the session's idle timeout (re-armed after every statement we send on
    /// it: `coordinates`, `verify`) and starts the deadline killer.
    pub fn arm_deadline(&mut self, deadline: Instant, progress: &Progress) {
        self.bound_idle(deadline, progress);
        if self.killer.is_none() {
            self.killer = Some(DeadlineKiller::start(
                self.watchdog.clone(),
                self.connection_id,
                deadline + KILL_MARGIN,
            ));
        }
    }

    /// Around the pause between two lock attempts (nothing is held then):
    /// `true` before it, long enough for the pause; `false` after it, back to
    /// the bound of a held lock.
    pub(crate) fn pause(
        &mut self,
        starting: bool,
        delay: Duration,
        cfg: &LockConfig,
        progress: &Progress,
    ) {
        let set = if starting {
            idle_bound(delay + cfg.max_lock_time)
        } else {
            idle_bound(cfg.max_lock_time)
        };
        progress.sql(&set);
        // A failure here means the session is gone: the next attempt says so.
        let _ = self.conn.query_drop(&set);
    }

    /// `SET SESSION wait_timeout` to the time left plus the margin.
    fn bound_idle(&mut self, deadline: Instant, progress: &Progress) {
        let set = idle_bound(deadline.saturating_duration_since(Instant::now()));
        progress.sql(&set);
        if let Err(e) = self.conn.query_drop(&set) {
            progress.warn(unbounded(&e));
        }
    }

    /// Stop the deadline killer; whether it had to KILL the lock session.
    pub fn disarm_deadline(&mut self) -> bool {
        self.killer.take().is_some_and(DeadlineKiller::stop)
    }

    /// One bounded attempt (optional pre-flush, the lock statements) within
    /// `budget`. On `GaveUp` or `Fatal` the caller runs `cleanup_after_attempt`.
    pub(crate) fn try_lock(
        &mut self,
        cfg: &LockConfig,
        budget: Duration,
        progress: &Progress,
    ) -> Result<(), AttemptError> {
        self.blockers.clear();
        let kind = self.long_kind(cfg);
        // What runs before our statement is sent: the candidates for what an
        // attempt that gives up waited behind and, with --kill-long-queries,
        // the only statements it may kill (anything later may be queued
        // behind our own lock). Without PROCESS: only this user's.
        // Named only where the lock waits for running statements: under a
        // lock that does not (backup-stage: only a write to a MyISAM or Aria
        // table blocks it), a running InnoDB statement is no reason to wait;
        // the retry pause is. Not read at all when nothing would use it.
        let names_blockers = (self.strategy.waits_for.is_some() || cfg.query_type.is_some())
            && !cfg.long_query_wait.is_zero();
        let before = if names_blockers || cfg.kill_after.is_some() {
            self.running(kind)
        } else {
            Ok(Vec::new())
        };
        if let (Some(_), Err(e)) = (cfg.kill_after, &before) {
            progress.warn(format!(
                "--kill-long-queries: cannot read the process list: {e}; this attempt kills nothing"
            ));
        }
        let result = self.attempt(cfg, budget, before.as_deref().ok(), kind, progress);
        match result {
            Ok(()) => {
                self.held = true;
                Ok(())
            }
            Err(AttemptError::GaveUp(why)) => {
                if let (true, Ok(before)) = (names_blockers, &before) {
                    if let Ok(now) = self.running(kind) {
                        self.blockers = guard::still_running(before, &now);
                    }
                }
                let behind = if self.blockers.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (waiting behind {})",
                        list(&self.blockers[..self.blockers.len().min(3)])
                    )
                };
                Err(AttemptError::GaveUp(format!("{why}{behind}")))
            }
            Err(e) => Err(e),
        }
    }

    /// The process list of this server (other than our two sessions).
    fn running(&self, kind: QueryType) -> mysql::Result<Vec<Running>> {
        let ours = [self.connection_id, self.watchdog_id];
        let mariadb = self.info.flavor == super::Flavor::Mariadb;
        guard::running(&mut self.watchdog(), mariadb, kind, 0.0, &ours)
    }

    /// What the guard and the wait after a blocked attempt consider here:
    /// --long-query-type, else what this lock waits for, else writes.
    fn long_kind(&self, cfg: &LockConfig) -> QueryType {
        cfg.query_type
            .or(self.strategy.waits_for)
            .unwrap_or(QueryType::Update)
    }

    /// The guard's threshold on this server (None: off).
    fn guard_threshold(&self, cfg: &LockConfig) -> Option<Duration> {
        match cfg.guard {
            Guard::Off => None,
            Guard::After(d) => Some(d),
            // --kill-long-queries asks to kill what the guard would wait for.
            Guard::Auto if cfg.kill_after.is_some() => None,
            Guard::Auto => self.strategy.waits_for.map(|_| AUTO_GUARD),
        }
    }

    /// The statements to wait out before the next attempt: those of the
    /// guard's kind running longer than its threshold, and those the last
    /// attempt waited behind that still run.
    pub(crate) fn long_statements(&mut self, cfg: &LockConfig) -> anyhow::Result<Vec<Running>> {
        let threshold = self.guard_threshold(cfg);
        if threshold.is_none() && self.blockers.is_empty() {
            return Ok(Vec::new());
        }
        let kind = self.long_kind(cfg);
        let now = self
            .running(kind)
            .map_err(|e| sql_error("reading the process list", &e))?;
        // Kept as first seen, so that a statement repeated on one connection
        // drops out (see `guard::still_running`).
        self.blockers = guard::still_running(&self.blockers, &now);
        let mut long: Vec<Running> = now
            .iter()
            .filter(|n| {
                self.blockers
                    .iter()
                    .any(|b| b.id == n.id && b.info == n.info)
            })
            .cloned()
            .collect();
        if let Some(t) = threshold {
            for r in now {
                if r.seconds as f64 >= t.as_secs_f64() && !long.iter().any(|l| l.id == r.id) {
                    long.push(r);
                }
            }
        }
        Ok(long)
    }

    /// Whether the last attempt gave up behind statements it could name.
    pub(crate) fn blocked_by_known_statements(&self) -> bool {
        !self.blockers.is_empty()
    }

    /// Optional pre-flush, then every lock statement under the watchdog,
    /// sharing one budget.
    fn attempt(
        &mut self,
        cfg: &LockConfig,
        budget: Duration,
        before: Option<&[Running]>,
        kind: QueryType,
        progress: &Progress,
    ) -> Result<(), AttemptError> {
        let killing = cfg.kill_after.and(before);
        let deadline = Instant::now() + budget;
        if cfg.pre_flush {
            let stmt = "FLUSH NO_WRITE_TO_BINLOG TABLES";
            self.bounded(stmt, false, budget, None, kind, progress)?;
        }
        // One by one, each under the watchdog: sent as one multi-statement,
        // a KILL QUERY landing between two of them would be discarded and
        // the next would wait unbounded by the attempt's budget.
        for stmt in self.strategy.lock {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(AttemptError::GaveUp(format!(
                    "gave up after {:.2} s",
                    budget.as_secs_f64()
                )));
            }
            let kill = cfg.kill_after.zip(killing);
            self.bounded(stmt, true, remaining, kill, kind, progress)?;
        }
        Ok(())
    }

    /// Run one statement within `budget`; optionally kill long blockers
    /// first (`kill`: after how long, and what ran before the attempt).
    fn bounded(
        &mut self,
        stmt: &str,
        takes_lock: bool,
        budget: Duration,
        kill: Option<(Duration, &[Running])>,
        kind: QueryType,
        progress: &Progress,
    ) -> Result<(), AttemptError> {
        progress.sql(stmt);
        let started = Instant::now();
        let mariadb = self.info.flavor == super::Flavor::Mariadb;
        let outcome = run_bounded(
            &mut self.conn,
            &mut self.watchdog.lock().unwrap_or_else(|p| p.into_inner()),
            mariadb,
            self.connection_id,
            stmt,
            budget,
            kill,
            kind,
        );
        for k in &outcome.killed_blockers {
            progress.warn(format!(
                "--kill-long-queries: killed the query of {}",
                k.describe()
            ));
        }
        for p in &outcome.kill_problems {
            progress.warn(format!("--kill-long-queries: {p}"));
        }
        let gave_up = || {
            format!(
                "gave up on `{stmt}` after {:.2} s",
                started.elapsed().as_secs_f64()
            )
        };
        let took = started.elapsed();
        // It returned long after its budget, whatever it returned: our process
        // (and its watchdog thread) was stalled (stopped, starved) while the
        // server held the lock for it or writers queued behind it, far longer
        // than promised. No retry hides that: the run fails (124) and releases.
        if takes_lock && took > budget + STALL_SLACK {
            let what = if outcome.result.is_ok() {
                "while the server may have held the lock"
            } else {
                "while it waited on the server with every writer queued behind it"
            };
            return Err(AttemptError::Fatal(exit::fail(
                exit::TIMEOUT,
                format!(
                    "`{stmt}` returned after {:.2} s, not within its {:.2} s budget: mysql-quiesce was stalled \
                     (stopped or starved) {what}, so writers may have waited that long. Released; nothing was \
                     frozen or snapshotted",
                    took.as_secs_f64(),
                    budget.as_secs_f64()
                ),
            )));
        }
        match outcome.result {
            // The KILL raced with success: treat as a timeout and release.
            Ok(()) if outcome.killed_ours => Err(AttemptError::GaveUp(gave_up())),
            Ok(()) => Ok(()),
            Err(mysql::Error::MySqlError(e))
                if matches!(
                    e.code,
                    codes::ER_LOCK_WAIT_TIMEOUT
                        | codes::ER_QUERY_INTERRUPTED
                        | codes::ER_STATEMENT_TIMEOUT
                ) =>
            {
                Err(AttemptError::GaveUp(gave_up()))
            }
            Err(e) => Err(AttemptError::Fatal(self.lock_error(stmt, &e))),
        }
    }

    fn lock_error(&self, what: &str, e: &mysql::Error) -> anyhow::Error {
        let code = super::exit_code_for(e);
        let hint = if code == exit::NOPERM {
            format!(
                " The user needs the {} privilege.",
                self.strategy.privileges.join(" or ")
            )
        } else {
            String::new()
        };
        exit::fail(
            code,
            format!("{what} failed: {e}. Nothing is locked.{hint}"),
        )
    }

    /// After a failed attempt, make sure nothing is held. MySQL can keep the
    /// global read lock after FTWRL's own timeout, so this is not optional.
    pub(crate) fn cleanup_after_attempt(&mut self, progress: &Progress) {
        self.held = false;
        // A KILL QUERY that raced with the end of the statement may still be
        // pending on the session: absorb it before the unlock.
        let _ = self.conn.query_drop("DO 0");
        progress.sql(self.strategy.unlock);
        if let Err(e) = self.conn.query_drop(self.strategy.unlock) {
            // BACKUP STAGE END without a stage is an error, harmlessly.
            progress.detail(format!(
                "{} after a failed attempt: {e}",
                self.strategy.unlock
            ));
        }
    }

    /// Coordinates, read on the locking session (while commits are blocked,
    /// for the modes that block them).
    pub fn coordinates(&mut self, progress: &Progress) -> anyhow::Result<Coordinates> {
        let (c, notes) = coordinates::read(
            &mut self.conn,
            &self.info,
            self.strategy.exact_binlog_point,
            progress,
        )
        .map_err(|e| {
            let code = super::exit_code_for(&e);
            exit::fail(
                code,
                format!(
                    "reading the binary-log coordinates failed: {e}{}",
                    if code == exit::NOPERM {
                        " (the user needs REPLICATION CLIENT, or BINLOG MONITOR on MariaDB)"
                    } else {
                        ""
                    }
                ),
            )
        })?;
        for n in notes {
            progress.warn(n);
        }
        self.locked_binlog = match (&c.binlog_file, c.binlog_position) {
            (Some(file), Some(position)) if c.exact => Some(LockedBinlog {
                file: file.clone(),
                position,
                gtid: c.gtid.clone().filter(|g| !g.is_empty()),
            }),
            _ => None,
        };
        Ok(c)
    }

    /// Whether the lock is still ours: the same live session that took it,
    /// and nothing logged since the coordinates were read. Err says why not
    /// (the snapshot is then not consistent). With a deadline, the session's
    /// idle bound is re-armed in the same round trip.
    pub fn verify(&mut self, deadline: Option<Instant>, progress: &Progress) -> Result<(), String> {
        let then = self.locked_binlog.clone();
        let binlog = coordinates::binlog_status_statement(&self.info);
        let bound = deadline.map(|d| idle_bound(d.saturating_duration_since(Instant::now())));
        let mut statements = vec![ALIVE];
        statements.extend(then.as_ref().map(|_| binlog));
        statements.extend(bound.as_deref());
        for s in &statements {
            progress.sql(s);
        }
        let mut results = super::batch(&mut self.conn, &statements);
        // A stray KILL QUERY (not KILL CONNECTION) interrupts the next statement
        // once but leaves the session and its lock in place: ask twice.
        let mut alive = results.next_rows();
        if matches!(&alive, Err(mysql::Error::MySqlError(e)) if e.code == codes::ER_QUERY_INTERRUPTED)
        {
            results = super::batch(&mut self.conn, &statements);
            alive = results.next_rows();
        }
        let mut result = self.check_alive(alive);
        if let (Ok(()), Some(then)) = (&result, then) {
            result = self.check_binlog_still(then, binlog, results.next_rows(), progress);
        }
        if result.is_ok() {
            if let Err(e) = bound.map_or(Ok(Vec::new()), |_| results.next_rows()) {
                progress.warn(unbounded(&e));
            }
        } else if self
            .killer
            .as_ref()
            .is_some_and(|k| k.fired.load(Ordering::SeqCst))
        {
            return result.map_err(|why| {
                format!("{why} (the watchdog session ended it after --max-lock-time: mysql-quiesce was stalled)")
            });
        }
        result
    }

    /// Nothing was written to the binary log since the coordinates were read
    /// (`then`; `now` is the answer to `statement` read again): otherwise a
    /// write went through the lock, and they are no exact point. (MariaDB's
    /// BACKUP STAGE BLOCK_COMMIT lets a write to an Aria or MEMORY table
    /// through: the writer gets error 1205, but the row stays and is logged.
    /// FLUSH TABLES WITH READ LOCK blocks it.)
    fn check_binlog_still(
        &mut self,
        then: LockedBinlog,
        statement: &str,
        now: mysql::Result<Vec<mysql::Row>>,
        progress: &Progress,
    ) -> Result<(), String> {
        let now = match now {
            Ok(rows) => rows.first().map_or((None, None), |row| {
                (
                    row.get_opt::<String, _>("File").and_then(Result::ok),
                    row.get_opt::<u64, _>("Position").and_then(Result::ok),
                )
            }),
            Err(e) => {
                return Err(format!(
                    "the locking connection could not read the binary log position again (`{statement}`): {e}"
                ))
            }
        };
        let (LockedBinlog { file, position, .. }, now_file) = (&then, now.0.clone());
        if now == (Some(file.clone()), Some(*position)) {
            return Ok(());
        }
        let shown = match &now {
            (Some(f), Some(p)) => format!("{f}:{p}"),
            _ => "nothing".to_string(),
        };
        // Another file: a rotation (FLUSH BINARY LOGS, say) logs no change;
        // whether a write came with it, the GTID set or the events tell.
        if now_file.is_some_and(|f| f != *file) {
            match self.only_rotated_since(&then, progress) {
                Ok(true) => {
                    progress.detail(format!(
                        "the binary log was rotated under the lock ({file}:{position} to {shown}); nothing was \
                         logged: the coordinates are exact"
                    ));
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => {
                    return Err(format!(
                        "the binary log was rotated under the lock ({file}:{position} to {shown}), and whether a \
                         write went through cannot be told: {e} (GTIDs on, or REPLICATION SLAVE / BINLOG MONITOR to \
                         read the events, would tell)"
                    ))
                }
            }
        }
        Err(format!(
            "the binary log moved from {file}:{position} to {shown} while {} was held: a write went through the \
             lock{}, so the coordinates are not an exact point of the snapshot",
            self.strategy.name,
            if self.strategy.mode == LockMode::BackupStage {
                " (BACKUP STAGE lets writes to Aria and MEMORY tables through; --lock=ftwrl blocks them)"
            } else {
                ""
            }
        ))
    }

    /// After a rotation under the lock: whether nothing but the rotation was
    /// logged since `then` (the same GTID set, or only no-change events).
    fn only_rotated_since(
        &mut self,
        then: &LockedBinlog,
        progress: &Progress,
    ) -> mysql::Result<bool> {
        if let Some(gtid) = &then.gtid {
            let query = match self.info.flavor {
                super::Flavor::Mariadb => "SELECT @@global.gtid_binlog_pos",
                _ => "SELECT @@global.gtid_executed",
            };
            progress.sql(query);
            let now: Option<Option<String>> = self.conn.query_first(query)?;
            let now = now.flatten().unwrap_or_default().replace('\n', "");
            return Ok(now == *gtid);
        }
        let quote = |f: &str| f.replace('\'', "''");
        let mut events: Vec<String> = Vec::new();
        let tail = format!(
            "SHOW BINLOG EVENTS IN '{}' FROM {}",
            quote(&then.file),
            then.position
        );
        progress.sql(&tail);
        let rows: Vec<mysql::Row> = self.conn.query(tail)?;
        events.extend(
            rows.iter()
                .filter_map(|r| r.get_opt::<String, _>("Event_type")?.ok()),
        );
        let logs: Vec<mysql::Row> = self.conn.query("SHOW BINARY LOGS")?;
        let names: Vec<String> = logs
            .iter()
            .filter_map(|r| r.get_opt::<String, _>("Log_name")?.ok())
            .collect();
        for name in names.iter().skip_while(|n| **n != then.file).skip(1) {
            let all = format!("SHOW BINLOG EVENTS IN '{}'", quote(name));
            progress.sql(&all);
            let rows: Vec<mysql::Row> = self.conn.query(all)?;
            events.extend(
                rows.iter()
                    .filter_map(|r| r.get_opt::<String, _>("Event_type")?.ok()),
            );
        }
        Ok(events
            .iter()
            .all(|e| NO_CHANGE_EVENTS.contains(&e.as_str())))
    }

    /// The answer to `ALIVE` names the session that took the lock.
    fn check_alive(&self, answer: mysql::Result<Vec<mysql::Row>>) -> Result<(), String> {
        let id = self.connection_id;
        let now = answer.map(|rows| {
            rows.first()
                .and_then(|r| r.get_opt::<u64, _>(0))
                .and_then(Result::ok)
        });
        match now {
            Ok(Some(now)) if now == u64::from(id) => Ok(()),
            Ok(Some(now)) => Err(format!(
                "the session changed (connection {now}, locked as {id})"
            )),
            Ok(None) => Err(format!("connection {id} gave no answer")),
            Err(e) => Err(format!("the locking connection {id} was lost: {e}")),
        }
    }

    /// Release the lock. When the connection is already gone the server has
    /// released it; that is reported by `verify`, not here.
    pub fn release(&mut self, progress: &Progress) -> anyhow::Result<()> {
        self.disarm_deadline();
        let released = if self.held {
            self.held = false;
            progress.sql(self.strategy.unlock);
            self.conn.query_drop(self.strategy.unlock).map_err(|e| {
                exit::fail(
                    exit::UNAVAILABLE,
                    format!(
                        "{} failed: {e}; the server releases the lock when our connection closes, which happens now",
                        self.strategy.unlock
                    ),
                )
            })
        } else {
            Ok(())
        };
        self.restart_replica_sql(progress);
        released
    }

    /// Whether the replica SQL thread runs; None when this is no replica.
    fn replica_sql_running(&mut self) -> anyhow::Result<Option<bool>> {
        let show = self.info.replica_statements().show;
        let rows: Vec<mysql::Row> = self.conn.query(show).map_err(|e| sql_error(show, &e))?;
        Ok(rows.first().map(|r| {
            ["Replica_SQL_Running", "Slave_SQL_Running"]
                .iter()
                .any(|col| {
                    r.get_opt::<String, _>(*col).and_then(Result::ok).as_deref() == Some("Yes")
                })
        }))
    }

    /// Where to note a replica SQL thread we stop; says now if an earlier
    /// run left such a note and the thread is still stopped (that run died
    /// before it could start it again: SIGKILL, OOM kill, power loss).
    pub fn set_replica_note(&mut self, path: std::path::PathBuf, progress: &Progress) {
        if let Ok(text) = std::fs::read_to_string(&path) {
            match self.replica_sql_running() {
                Ok(Some(false)) => {
                    let start = self.info.replica_statements().start_sql_thread;
                    let note: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    progress.warn(format!(
                        "the replica SQL thread is STOPPED: a mysql-quiesce run (pid {}) stopped it for \
                         --stop-replica-sql at {} and died before starting it again. Replication is not applying \
                         changes: run `{start}` (this warning ends once it runs; note: {})",
                        note["pid"],
                        note["stopped_at"].as_str().unwrap_or("?"),
                        path.display()
                    ));
                }
                // Started again by someone, or no replica any more.
                Ok(_) => {
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => progress.warn(format!("cannot read the replica status: {e:#}")),
            }
        }
        self.replica_note = Some(path);
    }

    pub(crate) fn stop_replica_sql(&mut self, progress: &Progress) -> anyhow::Result<()> {
        let stop = self.info.replica_statements().stop_sql_thread;
        if self.replica_sql_running()? != Some(true) {
            progress
                .warn("--stop-replica-sql: no replica SQL thread is running here; nothing to stop");
            return Ok(());
        }
        if let Some(note) = &self.replica_note {
            let text = format!(
                "{{\"pid\": {}, \"stopped_at\": \"{}\", \"connection_id\": {}}}\n",
                std::process::id(),
                crate::report::rfc3339(std::time::SystemTime::now()),
                self.connection_id
            );
            let dir = crate::state::State::new(note.parent().unwrap_or(std::path::Path::new(".")));
            let written = dir.check(true).map_err(|e| format!("{e:#}")).and_then(|_| {
                crate::atomic_write::write_atomic_mode(note, text.as_bytes(), 0o600)
                    .map_err(|e| e.to_string())
            });
            if let Err(e) = written {
                progress.warn(format!(
                    "cannot write {} ({e}): if this run dies, nothing will remind you to start the replica SQL \
                     thread again",
                    note.display()
                ));
            }
        }
        progress.sql(stop);
        let stopped = self.conn.query_drop(stop).map_err(|e| sql_error(stop, &e));
        if stopped.is_err() {
            self.remove_replica_note();
        }
        stopped?;
        self.replica_stopped = true;
        progress.info("stopped the replica SQL thread");
        Ok(())
    }

    fn remove_replica_note(&self) {
        if let Some(note) = &self.replica_note {
            let _ = std::fs::remove_file(note);
        }
    }

    pub(crate) fn restart_replica_sql(&mut self, progress: &Progress) {
        if !std::mem::take(&mut self.replica_stopped) {
            return;
        }
        let start = self.info.replica_statements().start_sql_thread;
        progress.sql(start);
        // Our own session may be gone (that is what verify reports): use the watchdog's.
        let result = self
            .conn
            .query_drop(start)
            .or_else(|_| self.watchdog().query_drop(start));
        match result {
            Ok(()) => {
                self.remove_replica_note();
                progress.info("started the replica SQL thread again")
            }
            Err(e) => progress.error(format!(
                "could not start the replica SQL thread again: {e}; run `{start}` by hand"
            )),
        }
    }

    /// The global privileges this session's user lacks for the lock, the
    /// coordinates and the long-query guard/kill (for --check).
    pub fn missing_privileges(&mut self, cfg: &LockConfig) -> anyhow::Result<Vec<String>> {
        let granted = self.granted()?;
        let has = |p: &str| granted.iter().any(|g| g.eq_ignore_ascii_case(p));
        let mut missing = Vec::new();
        if !self.strategy.privileges.iter().any(|p| has(p)) {
            missing.push(format!(
                "{} (for {})",
                self.strategy.privileges.join(" or "),
                self.strategy.name
            ));
        }
        let coords: &[&str] = match self.info.flavor {
            super::Flavor::Mariadb if self.info.at_least(10, 5, 2) => &["BINLOG MONITOR", "SUPER"],
            _ => &["REPLICATION CLIENT", "SUPER"],
        };
        if !coords.iter().any(|p| has(p)) {
            missing.push(format!(
                "{} (for the binary-log coordinates)",
                coords.join(" or ")
            ));
        }
        missing.extend(self.missing_guard_privileges(cfg, &granted));
        Ok(missing)
    }

    fn granted(&mut self) -> anyhow::Result<Vec<String>> {
        self.conn
            .query("SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES")
            .map_err(|e| sql_error("reading the user's privileges", &e))
    }

    /// Without PROCESS the process list shows only the user's own sessions, so
    /// the guard would see nothing and the kill find nothing, silently; and
    /// killing other users' statements needs CONNECTION ADMIN or SUPER.
    fn missing_guard_privileges(&self, cfg: &LockConfig, granted: &[String]) -> Vec<String> {
        let has = |p: &str| granted.iter().any(|g| g.eq_ignore_ascii_case(p));
        let mut missing = Vec::new();
        if (matches!(cfg.guard, Guard::After(_)) || cfg.kill_after.is_some()) && !has("PROCESS") {
            missing.push("PROCESS (for --long-query-guard and --kill-long-queries)".to_string());
        }
        let admin = match self.info.flavor {
            super::Flavor::Mariadb => "CONNECTION ADMIN",
            _ => "CONNECTION_ADMIN",
        };
        if cfg.kill_after.is_some() && !has(admin) && !has("SUPER") {
            missing.push(format!("{admin} or SUPER (for --kill-long-queries)"));
        }
        missing
    }
}

impl Drop for LockSession {
    fn drop(&mut self) {
        self.disarm_deadline();
        // Panic path: unlock if we can; closing the connection releases it anyway.
        if self.held {
            let _ = self.conn.query_drop(self.strategy.unlock);
        }
        if self.replica_stopped {
            let start = self.info.replica_statements().start_sql_thread;
            let started = self
                .conn
                .query_drop(start)
                .or_else(|_| self.watchdog().query_drop(start));
            if started.is_ok() {
                self.remove_replica_note();
            }
        }
    }
}

/// The session idle timeout (whole seconds) that ends a held lock `left` from
/// now, plus the margin.
fn idle_secs(left: Duration) -> u64 {
    (left + IDLE_MARGIN).as_secs_f64().ceil().max(1.0) as u64
}

/// The statement that bounds the session's idle time to `left` plus the margin.
fn idle_bound(left: Duration) -> String {
    format!("SET SESSION wait_timeout = {}", idle_secs(left))
}

/// What a failed `idle_bound` means.
fn unbounded(e: &mysql::Error) -> String {
    format!(
        "could not bound the lock session's idle time ({e}); the watchdog session ends it at the deadline instead"
    )
}

/// A thread holding the watchdog session that KILLs the lock session at
/// `at` unless stopped first: the deadline holds even when our main thread is
/// stuck (a process stopped as a whole is covered by the idle bound).
struct DeadlineKiller {
    cancel: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
    fired: Arc<AtomicBool>,
}

impl DeadlineKiller {
    fn start(watchdog: Arc<Mutex<Conn>>, victim: u32, at: Instant) -> DeadlineKiller {
        let (cancel, cancelled) = mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let flag = fired.clone();
        let thread = std::thread::spawn(move || {
            let left = at.saturating_duration_since(Instant::now());
            if cancelled.recv_timeout(left) == Err(mpsc::RecvTimeoutError::Timeout) {
                let mut conn = watchdog.lock().unwrap_or_else(|p| p.into_inner());
                if conn.query_drop(format!("KILL CONNECTION {victim}")).is_ok() {
                    flag.store(true, Ordering::SeqCst);
                }
            }
        });
        DeadlineKiller {
            cancel,
            thread,
            fired,
        }
    }

    fn stop(self) -> bool {
        let _ = self.cancel.send(());
        let _ = self.thread.join();
        self.fired.load(Ordering::SeqCst)
    }
}

fn list(rows: &[Running]) -> String {
    rows.iter()
        .map(Running::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

struct Bounded {
    result: mysql::Result<()>,
    /// We sent KILL QUERY to our own statement.
    killed_ours: bool,
    /// Statements killed by --kill-long-queries.
    killed_blockers: Vec<Running>,
    /// Problems of --kill-long-queries (process list unreadable, KILL refused).
    kill_problems: Vec<String>,
}

/// Asked first by `verify`: which session this is.
const ALIVE: &str = "SELECT CONNECTION_ID()";

/// How often the killer reads the process list once --kill-long-queries'
/// time has come: without QUERY_ID (MySQL) a statement is recognised as one
/// that ran before the attempt only once the process list's whole seconds
/// show it (see `guard::started_before`), within a second.
const KILL_POLL: Duration = Duration::from_millis(100);

/// Run `stmt` on `conn`. From `watchdog`: with `kill` (after, before), from
/// `after` on KILL QUERY the statements of `kind` of `before` (what ran
/// before the attempt) that still run; after `budget`, KILL QUERY ours.
#[allow(clippy::too_many_arguments)]
fn run_bounded(
    conn: &mut Conn,
    watchdog: &mut Conn,
    mariadb: bool,
    id: u32,
    stmt: &str,
    budget: Duration,
    kill: Option<(Duration, &[Running])>,
    kind: QueryType,
) -> Bounded {
    let ours = [id, watchdog.connection_id()];
    let kill = kill.filter(|(after, _)| *after < budget);
    let (done, wait) = mpsc::channel::<()>();
    let started = Instant::now();
    std::thread::scope(|s| {
        let killer = s.spawn(move || {
            let mut killed_blockers: Vec<Running> = Vec::new();
            let mut kill_problems = Vec::new();
            if let Some((after, before)) = kill {
                let mut next = after;
                loop {
                    let left = next.saturating_sub(started.elapsed());
                    if wait.recv_timeout(left) != Err(mpsc::RecvTimeoutError::Timeout) {
                        return (false, killed_blockers, kill_problems);
                    }
                    match guard::running(watchdog, mariadb, kind, 0.0, &ours) {
                        Ok(now) => {
                            for r in guard::started_before(before, now) {
                                if killed_blockers
                                    .iter()
                                    .any(|k| k.id == r.id && k.info == r.info)
                                {
                                    continue;
                                }
                                match watchdog.query_drop(format!("KILL QUERY {}", r.id)) {
                                    Ok(()) => killed_blockers.push(r),
                                    Err(e) => kill_problems.push(format!(
                                        "could not kill the query of {}: {e}",
                                        r.describe()
                                    )),
                                }
                            }
                        }
                        Err(e) => {
                            kill_problems.push(format!(
                                "cannot read the process list: {e}; killing nothing"
                            ));
                            break;
                        }
                    }
                    next = started.elapsed() + KILL_POLL;
                    if next >= budget {
                        break;
                    }
                }
            }
            let left = budget.saturating_sub(started.elapsed());
            match wait.recv_timeout(left) {
                Err(mpsc::RecvTimeoutError::Timeout) => (
                    watchdog.query_drop(format!("KILL QUERY {id}")).is_ok(),
                    killed_blockers,
                    kill_problems,
                ),
                _ => (false, killed_blockers, kill_problems),
            }
        });
        let result = conn.query_drop(stmt);
        let _ = done.send(());
        let (killed_ours, killed_blockers, kill_problems) = killer.join().unwrap_or_else(|_| {
            (
                false,
                Vec::new(),
                vec!["the watchdog thread panicked".into()],
            )
        });
        Bounded {
            result,
            killed_ours,
            killed_blockers,
            kill_problems,
        }
    })
}

fn sql_error(what: &str, e: &mysql::Error) -> anyhow::Error {
    exit::fail(super::exit_code_for(e), format!("{what} failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(wait_ms: u64, kill_after: Option<Duration>) -> LockConfig {
        LockConfig {
            mode: LockMode::Ftwrl,
            wait: Duration::from_millis(wait_ms),
            retries: 10,
            retry_delay: Duration::from_secs(3),
            guard: Guard::Auto,
            query_type: None,
            long_query_wait: Duration::from_secs(60),
            kill_after,
            pre_flush: false,
            stop_replica_sql: false,
            max_lock_time: Duration::from_secs(120),
        }
    }

    #[test]
    fn attempts_start_short_and_double_up_to_the_lock_wait_timeout() {
        let c = config(1000, None);
        let ms: Vec<u128> = (1..=5).map(|n| c.attempt_budget(n).as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 1000, 1000]);
        // Below the first budget, the timeout is the budget from the start.
        assert_eq!(config(100, None).attempt_budget(1).as_millis(), 100);
        // Far attempts do not overflow.
        assert_eq!(
            config(5000, None).attempt_budget(u32::MAX).as_millis(),
            5000
        );
    }

    #[test]
    fn with_kill_long_queries_every_attempt_gets_the_whole_timeout() {
        let c = config(2000, Some(Duration::from_millis(500)));
        assert_eq!(c.attempt_budget(1), Duration::from_secs(2));
    }
}
