//! Several servers locked as one: every instance whose data is in the
//! snapshot must be locked before any pre hook runs. Each round locks all
//! instances in parallel, each within its own bounded wait; if any cannot be
//! locked, the others are released before the next round, so writers are
//! never blocked longer than one attempt's budget per round.

use super::lock::{AttemptError, LockConfig, LockSession, STALL_SLACK};
use super::Coordinates;
use crate::exit;
use crate::messages::Progress;
use crate::server::instance::Instance;
use crate::signals;
use crate::state::State;
use std::time::{Duration, Instant};

/// How often the process list is read while waiting for long statements.
const LONG_QUERY_POLL: Duration = Duration::from_millis(50);

pub struct Member {
    pub instance: Instance,
    pub session: LockSession,
}

pub struct LockGroup {
    pub members: Vec<Member>,
}

impl LockGroup {
    /// Connect every instance (lock session + watchdog each).
    pub fn open(
        instances: &[Instance],
        cfg: &LockConfig,
        state: &State,
        progress: &Progress,
    ) -> anyhow::Result<LockGroup> {
        let mut members = Vec::new();
        for instance in instances {
            let mut session = LockSession::open(&instance.spec, cfg, progress)
                .map_err(|e| in_instance(instance, e))?;
            session.set_replica_note(state.replica_note(&instance.label()), progress);
            members.push(Member {
                instance: instance.clone(),
                session,
            });
        }
        let mut group = LockGroup { members };
        group.refuse_the_same_server_twice()?;
        Ok(group)
    }

    /// Two instances that are one server could never both be locked (the
    /// second waits for the first): every round would fail, and the run end
    /// in 75 as if retrying could help.
    fn refuse_the_same_server_twice(&mut self) -> anyhow::Result<()> {
        if self.members.len() < 2 {
            return Ok(());
        }
        let mut seen: Vec<(String, String)> = Vec::new();
        for m in &mut self.members {
            let id = m.session.server_identity()?;
            if let Some((first, _)) = seen.iter().find(|(_, other)| *other == id) {
                return Err(exit::fail(
                    exit::CONFIG,
                    format!(
                        "--instance {} and --instance {first} are the same server ({id}): give it once. Nothing was \
                         locked",
                        m.instance.label_or_spec(),
                    ),
                ));
            }
            seen.push((m.instance.label_or_spec(), id));
        }
        Ok(())
    }

    /// Lock every instance, retrying as configured. Returns how long the
    /// successful round took. Exit 75 when every round failed: nothing is
    /// locked, and replica SQL threads we stopped run again.
    pub fn acquire(&mut self, cfg: &LockConfig, progress: &Progress) -> anyhow::Result<Duration> {
        let result = self.acquire_rounds(cfg, progress);
        if result.is_err() {
            for m in &mut self.members {
                m.session.restart_replica_sql(progress);
            }
        }
        result
    }

    fn acquire_rounds(
        &mut self,
        cfg: &LockConfig,
        progress: &Progress,
    ) -> anyhow::Result<Duration> {
        if cfg.stop_replica_sql {
            for m in &mut self.members {
                m.session
                    .stop_replica_sql(progress)
                    .map_err(|e| in_instance(&m.instance, e))?;
            }
        }
        let attempts = cfg.retries.saturating_add(1);
        let waits_end = Instant::now() + cfg.long_query_wait;
        for n in 1..=attempts {
            if let Some(sig) = signals::received() {
                return Err(interrupted(sig));
            }
            if !cfg.long_query_wait.is_zero() {
                self.wait_out_long_statements(cfg, waits_end, progress)?;
            }
            let budget = cfg.attempt_budget(n);
            let started = Instant::now();
            let results: Vec<Result<(), AttemptError>> = std::thread::scope(|s| {
                let handles: Vec<_> = self
                    .members
                    .iter_mut()
                    .map(|m| s.spawn(|| m.session.try_lock(cfg, budget, progress)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(AttemptError::Fatal(exit::fail(
                                exit::SOFTWARE,
                                "lock thread panicked",
                            )))
                        })
                    })
                    .collect()
            });
            if results.iter().all(Result::is_ok) {
                return Ok(started.elapsed());
            }
            // Some instances held the lock while another's attempt ran: if
            // the round outlasted its budget, we were stalled meanwhile and
            // their writers waited that long (each attempt checks only itself).
            let took = started.elapsed();
            let some_held = results.iter().any(Result::is_ok);
            if some_held && took > budget + STALL_SLACK {
                for m in &mut self.members {
                    m.session.cleanup_after_attempt(progress);
                }
                return Err(exit::fail(
                    exit::TIMEOUT,
                    format!(
                        "lock round {n} took {:.2} s, not within its {:.2} s budget, while some instances held their \
                         lock: mysql-quiesce was stalled (stopped or starved), so their writers may have waited that \
                         long. Released; nothing was frozen or snapshotted",
                        took.as_secs_f64(),
                        budget.as_secs_f64()
                    ),
                ));
            }
            // Release every instance, including the ones this round locked.
            let mut fatal = None;
            for (m, r) in self.members.iter_mut().zip(results) {
                m.session.cleanup_after_attempt(progress);
                match r {
                    Ok(()) => {}
                    Err(AttemptError::GaveUp(why)) => progress.warn(format!(
                        "{}lock attempt {n}/{attempts} {why}; writers are not blocked by us now",
                        m.instance.prefix()
                    )),
                    Err(AttemptError::Fatal(e)) => {
                        fatal.get_or_insert_with(|| in_instance(&m.instance, e));
                    }
                }
            }
            if let Some(e) = fatal {
                return Err(e);
            }
            // Behind statements we can name, the next attempt comes as soon
            // as they are gone (the wait above); otherwise after the pause.
            let known = !cfg.long_query_wait.is_zero()
                && self
                    .members
                    .iter()
                    .any(|m| m.session.blocked_by_known_statements());
            if n < attempts && !known {
                self.pause(cfg.retry_delay, cfg, progress)?;
            }
        }
        let what = match self.members.as_slice() {
            [one] => one.session.strategy().name.to_string(),
            many => format!("the lock on all {} instances", many.len()),
        };
        Err(exit::fail(
            exit::TEMPFAIL,
            format!(
                "could not take {what} in {attempts} attempt(s) of at most {:.2} s each; nothing is locked and nothing was \
                 changed, so it is safe to retry later. Long-running statements block the lock; see --lock-wait-timeout, \
                 --lock-retries, --lock-retry-delay, --long-query-guard and --long-query-wait",
                cfg.wait.as_secs_f64()
            ),
        ))
    }

    /// Nothing held, for `delay`: the lock sessions' idle bound lengthened
    /// for it, then back to a held lock's.
    fn pause(
        &mut self,
        delay: Duration,
        cfg: &LockConfig,
        progress: &Progress,
    ) -> anyhow::Result<()> {
        for m in &mut self.members {
            m.session.pause(true, delay, cfg, progress);
        }
        if !interruptible_sleep(delay) {
            return Err(interrupted(signals::received().unwrap_or(libc::SIGTERM)));
        }
        for m in &mut self.members {
            m.session.pause(false, delay, cfg, progress);
        }
        Ok(())
    }

    /// Before an attempt: wait while statements the lock would wait behind
    /// run (those the guard sees, and those the last attempt gave up
    /// behind), up to `until` (--long-query-wait from the start). Nothing is
    /// held meanwhile. The server tells no other session when a statement
    /// ends, so the process list is read every `LONG_QUERY_POLL`.
    fn wait_out_long_statements(
        &mut self,
        cfg: &LockConfig,
        until: Instant,
        progress: &Progress,
    ) -> anyhow::Result<()> {
        let mut waiting_since: Option<Instant> = None;
        loop {
            let mut long = Vec::new();
            for m in &mut self.members {
                match m.session.long_statements(cfg) {
                    Ok(rows) => long.extend(
                        rows.iter()
                            .map(|r| format!("{}{}", m.instance.prefix(), r.describe())),
                    ),
                    Err(e) => progress.warn(format!(
                        "{}{e:#}; attempting without waiting for long statements",
                        m.instance.prefix()
                    )),
                }
            }
            let now = Instant::now();
            if long.is_empty() {
                if let Some(since) = waiting_since {
                    progress.info(format!(
                        "the long statements finished after {:.1} s; locking now",
                        since.elapsed().as_secs_f64()
                    ));
                    for m in &mut self.members {
                        m.session.pause(false, Duration::ZERO, cfg, progress);
                    }
                }
                return Ok(());
            }
            if now >= until {
                return Err(exit::fail(
                    exit::TEMPFAIL,
                    format!(
                        "waited {:.0} s (--long-query-wait) for {} to finish, and it still runs: locking now would \
                         make every writer wait behind it. Nothing is locked and nothing was changed, so it is safe to \
                         retry later; or raise --long-query-wait, or see --kill-long-queries",
                        cfg.long_query_wait.as_secs_f64(),
                        long.join("; ")
                    ),
                ));
            }
            if waiting_since.is_none() {
                waiting_since = Some(now);
                progress.info(format!(
                    "waiting for {} to finish before locking (at most {:.1} s more, --long-query-wait); nothing is \
                     locked, writers are not blocked",
                    long.join("; "),
                    (until - now).as_secs_f64()
                ));
                for m in &mut self.members {
                    m.session.pause(true, until - now, cfg, progress);
                }
            }
            if !interruptible_sleep(LONG_QUERY_POLL.min(until - now)) {
                return Err(interrupted(signals::received().unwrap_or(libc::SIGTERM)));
            }
        }
    }

    /// Coordinates of every instance, in order.
    pub fn coordinates(&mut self, progress: &Progress) -> anyhow::Result<Vec<Coordinates>> {
        self.members
            .iter_mut()
            .map(|m| {
                m.session
                    .coordinates(progress)
                    .map_err(|e| in_instance(&m.instance, e))
            })
            .collect()
    }

    /// Bound every lock session on the server side (see `LockSession::arm_deadline`).
    pub fn arm_deadline(&mut self, deadline: Instant, progress: &Progress) {
        for m in &mut self.members {
            m.session.arm_deadline(deadline, progress);
        }
    }

    /// Verify every instance; the reasons of those whose lock was lost.
    pub fn verify(&mut self, deadline: Option<Instant>, progress: &Progress) -> Vec<String> {
        self.members
            .iter_mut()
            .filter_map(|m| {
                m.session
                    .verify(deadline, progress)
                    .err()
                    .map(|why| format!("{}{why}", m.instance.prefix()))
            })
            .collect()
    }

    /// Release every instance (all are tried, whatever fails).
    pub fn release(&mut self, progress: &Progress) -> Vec<anyhow::Error> {
        self.members
            .iter_mut()
            .filter_map(|m| {
                m.session
                    .release(progress)
                    .err()
                    .map(|e| in_instance(&m.instance, e))
            })
            .collect()
    }
}

fn in_instance(instance: &Instance, e: anyhow::Error) -> anyhow::Error {
    match &instance.name {
        None => e,
        // Keep the exit code: wrap as context.
        Some(name) => e.context(format!("instance {name}")),
    }
}

fn interrupted(sig: i32) -> anyhow::Error {
    exit::fail(
        exit::signal(sig),
        format!("interrupted by signal {sig} while waiting for the lock; nothing is locked"),
    )
}

/// Sleep, waking at once on a termination signal. Returns true when the
/// full time passed.
fn interruptible_sleep(d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if signals::received().is_some() {
            return false;
        }
        if crate::wait::until(&[], true, Some(end)) == crate::wait::Woke::Timeout {
            return signals::received().is_none();
        }
    }
}
