//! The lock session: one dedicated connection that takes the lock, holds it
//! while hooks run, and releases it; plus a second connection, opened before
//! locking, that bounds each lock attempt with KILL QUERY.
//!
//! Why both bounds: FLUSH TABLES WITH READ LOCK blocks every writer while it
//! waits for running statements, so an unbounded wait is an outage. The
//! session's lock_wait_timeout bounds it on the server (whole seconds only);
//! the watchdog's KILL QUERY bounds it at exactly --lock-wait-timeout and also
//! works when the server-side timeout does not apply.

use super::codes;
use super::connect::{connect, ConnectSpec};
use super::coordinates::{self, Coordinates};
use super::flavor::ServerInfo;
use crate::cli::LockMode;
use crate::exit;
use crate::report::Progress;
use crate::signals;
use mysql::prelude::Queryable;
use mysql::Conn;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How the lock is taken and given back.
#[derive(Debug, Clone)]
pub struct LockConfig {
    pub mode: LockMode,
    /// Budget of one attempt (--lock-wait-timeout).
    pub wait: Duration,
    /// Attempts after the first (--lock-retries).
    pub retries: u32,
    /// Pause between attempts (--lock-retry-delay).
    pub retry_delay: Duration,
}

/// The SQL of one lock mode.
#[derive(Debug, Clone, Copy)]
pub struct Strategy {
    pub name: &'static str,
    /// Run in order; together they must finish within one attempt's budget.
    pub lock: &'static [&'static str],
    /// Releases the lock; also run after a failed attempt (harmless when nothing is held).
    pub unlock: &'static str,
    /// Global privileges that allow it (any one of them).
    pub privileges: &'static [&'static str],
}

pub fn strategy(mode: LockMode) -> Option<Strategy> {
    match mode {
        LockMode::Ftwrl => Some(Strategy {
            name: "FLUSH TABLES WITH READ LOCK",
            lock: &["FLUSH TABLES WITH READ LOCK"],
            unlock: "UNLOCK TABLES",
            privileges: &["RELOAD"],
        }),
        LockMode::None => None,
    }
}

pub struct LockSession {
    conn: Conn,
    /// Second connection: KILL QUERY for overrunning attempts, diagnostics.
    watchdog: Conn,
    pub connection_id: u32,
    pub info: ServerInfo,
    strategy: Strategy,
    held: bool,
}

enum AttemptError {
    /// Gave up within the budget; nothing is held after cleanup. Safe to retry.
    TimedOut(String),
    /// Retrying cannot help.
    Fatal(anyhow::Error),
}

impl LockSession {
    /// Connect the lock session and its watchdog, detect the server.
    pub fn open(
        spec: &ConnectSpec,
        cfg: &LockConfig,
        progress: &Progress,
    ) -> anyhow::Result<LockSession> {
        let strategy = strategy(cfg.mode).expect("LockSession::open needs a lock mode");
        let mut conn = connect(spec)?;
        let watchdog = connect(spec)?;
        let info = ServerInfo::detect(&mut conn)
            .map_err(|e| sql_error("detecting the server version", &e))?;
        let server_wait = cfg.wait.as_secs_f64().ceil().max(1.0) as u64;
        let set = format!("SET SESSION lock_wait_timeout = {server_wait}");
        progress.sql(&set);
        conn.query_drop(&set)
            .map_err(|e| sql_error("setting lock_wait_timeout", &e))?;
        Ok(LockSession {
            connection_id: conn.connection_id(),
            conn,
            watchdog,
            info,
            strategy,
            held: false,
        })
    }

    pub fn strategy(&self) -> &Strategy {
        &self.strategy
    }

    /// Take the lock, retrying as configured. Returns how long the successful
    /// attempt took. Exit 75 when every attempt gave up (nothing is locked).
    pub fn acquire(&mut self, cfg: &LockConfig, progress: &Progress) -> anyhow::Result<Duration> {
        let attempts = cfg.retries.saturating_add(1);
        for n in 1..=attempts {
            if let Some(sig) = signals::received() {
                return Err(exit::fail(
                    exit::signal(sig),
                    format!(
                        "interrupted by signal {sig} while waiting for the lock; nothing is locked"
                    ),
                ));
            }
            let started = Instant::now();
            match self.attempt(cfg.wait, progress) {
                Ok(()) => {
                    self.held = true;
                    return Ok(started.elapsed());
                }
                Err(AttemptError::Fatal(e)) => {
                    self.cleanup_after_attempt(progress);
                    return Err(e);
                }
                Err(AttemptError::TimedOut(blockers)) => {
                    self.cleanup_after_attempt(progress);
                    progress.warn(format!(
                        "lock attempt {n}/{attempts} gave up after {:.2} s{blockers}; writers are not blocked by us now",
                        started.elapsed().as_secs_f64()
                    ));
                }
            }
            if n < attempts && interruptible_sleep(cfg.retry_delay) {
                continue;
            }
        }
        if let Some(sig) = signals::received() {
            return Err(exit::fail(
                exit::signal(sig),
                format!(
                    "interrupted by signal {sig} while waiting for the lock; nothing is locked"
                ),
            ));
        }
        Err(exit::fail(
            exit::TEMPFAIL,
            format!(
                "could not take {} in {attempts} attempt(s) of {:.2} s each; nothing is locked and nothing was changed, \
                 so it is safe to retry later. Long-running statements block the lock; see --lock-wait-timeout, --lock-retries and --lock-retry-delay",
                self.strategy.name,
                cfg.wait.as_secs_f64()
            ),
        ))
    }

    /// One bounded attempt: every lock statement under the watchdog, sharing
    /// one budget.
    fn attempt(&mut self, budget: Duration, progress: &Progress) -> Result<(), AttemptError> {
        let deadline = Instant::now() + budget;
        for stmt in self.strategy.lock {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(AttemptError::TimedOut(self.blockers()));
            }
            progress.sql(stmt);
            let (result, killed) = run_bounded(
                &mut self.conn,
                &mut self.watchdog,
                self.connection_id,
                stmt,
                remaining,
            );
            match result {
                Ok(()) if killed => {
                    // The KILL raced with success: treat as a timeout and release.
                    return Err(AttemptError::TimedOut(String::new()));
                }
                Ok(()) => {}
                Err(mysql::Error::MySqlError(e))
                    if matches!(
                        e.code,
                        codes::ER_LOCK_WAIT_TIMEOUT
                            | codes::ER_QUERY_INTERRUPTED
                            | codes::ER_STATEMENT_TIMEOUT
                    ) =>
                {
                    return Err(AttemptError::TimedOut(self.blockers()));
                }
                Err(e) => return Err(AttemptError::Fatal(self.lock_error(stmt, &e))),
            }
        }
        Ok(())
    }

    fn lock_error(&self, stmt: &str, e: &mysql::Error) -> anyhow::Error {
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
            format!("{stmt} failed: {e}. Nothing is locked.{hint}"),
        )
    }

    /// After a failed attempt, make sure nothing is held. MySQL can keep the
    /// global read lock after FTWRL's own timeout, so this is not optional.
    fn cleanup_after_attempt(&mut self, progress: &Progress) {
        // A KILL QUERY that raced with the end of the statement may still be
        // pending on the session: absorb it before the unlock.
        let _ = self.conn.query_drop("DO 0");
        progress.sql(self.strategy.unlock);
        if let Err(e) = self.conn.query_drop(self.strategy.unlock) {
            progress.warn(format!(
                "{} after a failed attempt failed: {e}; the server releases the lock when the connection closes",
                self.strategy.unlock
            ));
        }
    }

    /// Statements that were running longer than a second when an attempt gave
    /// up: what the user needs to know to fix the stall.
    fn blockers(&mut self) -> String {
        let q = format!(
            "SELECT ID, TIME, LEFT(REPLACE(INFO, '\\n', ' '), 100) FROM information_schema.PROCESSLIST \
             WHERE INFO IS NOT NULL AND COMMAND NOT IN ('Sleep', 'Daemon', 'Binlog Dump') \
             AND ID NOT IN ({}, {}) AND TIME >= 1 ORDER BY TIME DESC LIMIT 3",
            self.connection_id,
            self.watchdog.connection_id()
        );
        match self.watchdog.query::<(u64, u64, String), _>(q) {
            Ok(rows) if !rows.is_empty() => {
                let list: Vec<String> = rows
                    .iter()
                    .map(|(id, t, info)| format!("connection {id} running {t} s: {info}"))
                    .collect();
                format!(" (waiting behind {})", list.join("; "))
            }
            _ => String::new(),
        }
    }

    /// Coordinates, read on the locking session (while commits are blocked).
    pub fn coordinates(&mut self, progress: &Progress) -> anyhow::Result<Coordinates> {
        progress.sql(coordinates::binlog_status_statement(&self.info));
        coordinates::read(&mut self.conn, &self.info).map_err(|e| {
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
        })
    }

    /// Whether the lock is still ours: the same live session that took it.
    /// Err says why not (the snapshot is then not consistent).
    pub fn verify(&mut self, progress: &Progress) -> Result<(), String> {
        let id = self.connection_id;
        let mut check = || -> mysql::Result<Option<u64>> {
            progress.sql("SELECT CONNECTION_ID()");
            self.conn.query_first::<u64, _>("SELECT CONNECTION_ID()")
        };
        // A stray KILL QUERY (not KILL CONNECTION) interrupts the next statement
        // once but leaves the session and its lock in place: ask twice.
        let result = match check() {
            Err(mysql::Error::MySqlError(e)) if e.code == codes::ER_QUERY_INTERRUPTED => check(),
            other => other,
        };
        match result {
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
        if !self.held {
            return Ok(());
        }
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
    }

    /// The global privileges this session's user lacks for the lock and the
    /// coordinates (for --check).
    pub fn missing_privileges(&mut self) -> anyhow::Result<Vec<String>> {
        let granted: Vec<String> = self
            .conn
            .query("SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES")
            .map_err(|e| sql_error("reading the user's privileges", &e))?;
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
        Ok(missing)
    }
}

impl Drop for LockSession {
    fn drop(&mut self) {
        // Panic path: unlock if we can; closing the connection releases it anyway.
        if self.held {
            let _ = self.conn.query_drop(self.strategy.unlock);
        }
    }
}

/// Run `stmt` on `conn`; if it is still running after `budget`, KILL QUERY it
/// from `watchdog`. Returns the statement's result and whether we killed it.
fn run_bounded(
    conn: &mut Conn,
    watchdog: &mut Conn,
    id: u32,
    stmt: &str,
    budget: Duration,
) -> (mysql::Result<()>, bool) {
    let (done, wait) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let killer = s.spawn(move || match wait.recv_timeout(budget) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                watchdog.query_drop(format!("KILL QUERY {id}")).is_ok()
            }
            _ => false,
        });
        let result = conn.query_drop(stmt);
        let _ = done.send(());
        let killed = killer.join().unwrap_or(false);
        (result, killed)
    })
}

/// Sleep, waking early on a termination signal. Returns true when the full
/// time passed.
fn interruptible_sleep(d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if signals::received().is_some() {
            return false;
        }
        std::thread::sleep(
            Duration::from_millis(20).min(end.saturating_duration_since(Instant::now())),
        );
    }
    true
}

fn sql_error(what: &str, e: &mysql::Error) -> anyhow::Error {
    exit::fail(super::exit_code_for(e), format!("{what} failed: {e}"))
}
