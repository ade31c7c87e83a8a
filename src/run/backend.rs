//! What a run does to the world, behind one trait: the seam between the
//! sequence (`run`), which decides the order of things and what a failure
//! means, and the servers, filesystems and processes it acts on. `Real` acts
//! on them; the sequence's unit tests put a recorder in its place.

use crate::freeze::{self, FrozenSet, Thawed};
use crate::guardian::{Guardian, ToGuardian};
use crate::hooks::{self, Ending, Hook, Limits};
use crate::messages::Progress;
use crate::plan::{Instance, Plan};
use crate::runlock::{self, RunLock};
use crate::server::{Coordinates, LockGroup, ServerInfo};
use crate::state::State;
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A server we are connected to.
#[derive(Debug, Clone)]
pub struct Connected {
    pub instance: Instance,
    pub info: ServerInfo,
    pub connection_id: u32,
    /// The session's TLS cipher; None when not encrypted.
    pub tls: Option<String>,
    /// The lock mode it resolved to, and its statement in words.
    pub lock: crate::cli::LockMode,
    pub statement: &'static str,
}

/// Everything a run does outside itself.
pub trait Backend {
    /// One run at a time per machine: held until the backend is dropped.
    fn take_run_lock(&mut self) -> anyhow::Result<()>;
    /// The process that kills hooks and thaws if we die. It may still be
    /// starting when this returns (its start overlaps the connect).
    fn start_guardian(&mut self) -> anyhow::Result<()>;
    /// The guardian is up: before any hook, before anything is locked or
    /// frozen. Err when it could not start.
    fn guardian_ready(&mut self) -> anyhow::Result<()>;
    /// Connect every server (none with --lock=none).
    fn connect(&mut self) -> anyhow::Result<Vec<Connected>>;
    /// Take the lock on all of them; how long the successful round took.
    fn lock(&mut self) -> anyhow::Result<Duration>;
    /// Coordinates of each server, in order, read under the lock.
    fn coordinates(&mut self) -> anyhow::Result<Vec<Coordinates>>;
    /// The locked section ends at `deadline`: bound it outside our process
    /// (the server's idle timeout, a killer session, the guardian).
    fn bound(&mut self, deadline: Instant);
    fn freeze(&mut self, deadline: Instant) -> anyhow::Result<()>;
    /// Thaw what is frozen (nothing: an empty list).
    fn thaw(&mut self) -> Vec<Thawed>;
    /// Whether the guardian acted at the deadline (thawed, stopped hooks)
    /// before we did.
    fn guardian_acted(&mut self, deadline: Instant) -> bool;
    /// The guardian's pid when it is gone (killed by someone).
    fn guardian_gone(&mut self) -> Option<u32>;
    /// Why each lock that is no longer ours was lost (empty: all held).
    fn verify(&mut self, deadline: Instant) -> Vec<String>;
    /// Release the lock (and tell the guardian: hooks from now on run unlocked).
    fn release(&mut self) -> Vec<anyhow::Error>;
    /// Run one hook to its end (or until it is stopped): how it ended, how long.
    fn run_hook(
        &mut self,
        hook: &Hook,
        env: &[(String, String)],
        limits: Limits,
    ) -> (Ending, Duration);
    /// Close the sessions (the lock is released by then).
    fn disconnect(&mut self);
    /// The run is over: hooks being stopped finish, the guardian goes (or
    /// stays, when something could not be thawed).
    fn dismiss(&mut self, left_frozen: bool);
}

/// The real world.
pub struct Real<'p> {
    plan: &'p Plan,
    progress: Progress,
    run_lock: Option<RunLock>,
    guardian: Option<Guardian>,
    /// The guardian while it starts: its spawn (an exec of our own binary)
    /// overlaps the connect instead of delaying it.
    guardian_starting: Option<JoinHandle<anyhow::Result<Guardian>>>,
    /// Why it could not start (exit status, message), once known.
    guardian_failed: Option<(u8, String)>,
    group: Option<LockGroup>,
    frozen: Option<FrozenSet>,
    /// Hooks stopped at the deadline whose grace runs in the background
    /// (each hangs up its channel when done).
    stopping: Vec<Receiver<()>>,
}

impl<'p> Real<'p> {
    pub fn new(plan: &'p Plan) -> Real<'p> {
        Real {
            plan,
            progress: plan.progress,
            run_lock: None,
            guardian: None,
            guardian_starting: None,
            guardian_failed: None,
            group: None,
            frozen: None,
            stopping: Vec::new(),
        }
    }
}

impl Backend for Real<'_> {
    fn take_run_lock(&mut self) -> anyhow::Result<()> {
        let state = State::new(&self.plan.state_dir);
        self.run_lock = Some(runlock::acquire(self.plan.lock_file.as_deref(), &state)?);
        Ok(())
    }

    fn start_guardian(&mut self) -> anyhow::Result<()> {
        // Not current_exe(): a package upgrade may have replaced the file
        // since we started; /proc/self/exe is the binary we are running.
        let targets: Vec<_> = self
            .plan
            .freeze
            .iter()
            .map(|t| (t.mountpoint.clone(), t.dir))
            .collect();
        let starting = std::thread::Builder::new()
            .name("start-guardian".into())
            .spawn(move || Guardian::start(Path::new("/proc/self/exe"), &targets))
            .map_err(|e| {
                crate::exit::fail(
                    crate::exit::SOFTWARE,
                    format!("cannot start a thread: {e}; nothing was locked or frozen"),
                )
            })?;
        self.guardian_starting = Some(starting);
        Ok(())
    }

    // Waits for the start once; Err (every time) when it could not start, or
    // was never started: nothing is locked, frozen or run without it.
    fn guardian_ready(&mut self) -> anyhow::Result<()> {
        if let Some(starting) = self.guardian_starting.take() {
            match starting.join() {
                Ok(Ok(g)) => self.guardian = Some(g),
                Ok(Err(e)) => {
                    self.guardian_failed = Some((crate::exit::code_of(&e), format!("{e:#}")))
                }
                Err(_) => {
                    self.guardian_failed = Some((
                        crate::exit::SOFTWARE,
                        "the thread starting the guardian panicked; nothing was locked or frozen"
                            .into(),
                    ))
                }
            }
        }
        match (&self.guardian_failed, &self.guardian) {
            (Some((code, message)), _) => Err(crate::exit::fail(*code, message.clone())),
            (None, Some(_)) => Ok(()),
            (None, None) => Err(crate::exit::fail(
                crate::exit::SOFTWARE,
                "internal error: no guardian was started; nothing is locked, frozen or run without one",
            )),
        }
    }

    fn connect(&mut self) -> anyhow::Result<Vec<Connected>> {
        if self.plan.instances.is_empty() {
            return Ok(Vec::new());
        }
        let state = State::new(&self.plan.state_dir);
        let group = LockGroup::open(
            &self.plan.instances,
            &self.plan.lock,
            &state,
            &self.progress,
        )?;
        let connected = group
            .members
            .iter()
            .map(|m| Connected {
                instance: m.instance.clone(),
                info: m.session.info.clone(),
                connection_id: m.session.connection_id,
                tls: m.session.tls_cipher.clone(),
                lock: m.session.strategy().mode,
                statement: m.session.strategy().name,
            })
            .collect();
        self.group = Some(group);
        Ok(connected)
    }

    fn lock(&mut self) -> anyhow::Result<Duration> {
        self.guardian_ready()?;
        match self.group.as_mut() {
            Some(g) => g.acquire(&self.plan.lock, &self.progress),
            None => Ok(Duration::ZERO),
        }
    }

    fn coordinates(&mut self) -> anyhow::Result<Vec<Coordinates>> {
        match self.group.as_mut() {
            Some(g) => g.coordinates(&self.progress),
            None => Ok(Vec::new()),
        }
    }

    fn bound(&mut self, deadline: Instant) {
        // The run has waited for it already (`guardian_ready`); here too,
        // so that no step can reach past a guardian still starting.
        let _ = self.guardian_ready();
        if let Some(g) = &self.guardian {
            g.set_deadline(deadline.saturating_duration_since(Instant::now()));
        }
        if let Some(g) = self.group.as_mut() {
            g.arm_deadline(deadline, &self.progress);
        }
    }

    fn freeze(&mut self, deadline: Instant) -> anyhow::Result<()> {
        self.guardian_ready()?;
        let Some(g) = self.guardian.as_mut() else {
            return Err(crate::exit::fail(
                crate::exit::SOFTWARE,
                "no guardian: refusing to freeze",
            ));
        };
        g.ensure_alive()?;
        self.frozen = Some(freeze::freeze_all(&self.plan.freeze, deadline, g.link())?);
        Ok(())
    }

    fn thaw(&mut self) -> Vec<Thawed> {
        self.frozen.take().map(FrozenSet::thaw).unwrap_or_default()
    }

    fn guardian_acted(&mut self, deadline: Instant) -> bool {
        self.guardian
            .as_mut()
            .is_some_and(|g| g.acted_at_deadline(deadline))
    }

    fn guardian_gone(&mut self) -> Option<u32> {
        self.guardian
            .as_mut()
            .and_then(|g| g.is_gone().then(|| g.pid()))
    }

    fn verify(&mut self, deadline: Instant) -> Vec<String> {
        match self.group.as_mut() {
            Some(g) => g.verify(Some(deadline), &self.progress),
            None => Vec::new(),
        }
    }

    fn release(&mut self) -> Vec<anyhow::Error> {
        let errors = match self.group.as_mut() {
            Some(g) => g.release(&self.progress),
            None => Vec::new(),
        };
        if let Some(g) = &self.guardian {
            g.link().tell(&ToGuardian::Released);
        }
        errors
    }

    fn run_hook(
        &mut self,
        hook: &Hook,
        env: &[(String, String)],
        limits: Limits,
    ) -> (Ending, Duration) {
        if let Err(e) = self.guardian_ready() {
            // No hook runs that would outlive us if we died.
            return (Ending::SpawnFailed(format!("{e:#}")), Duration::ZERO);
        }
        let link = self.guardian.as_ref().map(Guardian::link);
        let run = hooks::run(hook, env, limits, link.as_ref());
        self.stopping.extend(run.stopping);
        (run.ending, run.duration)
    }

    fn disconnect(&mut self) {
        self.group = None;
    }

    fn dismiss(&mut self, left_frozen: bool) {
        let end = Instant::now() + hooks::GRACE + Duration::from_secs(2);
        for stopped in self.stopping.drain(..) {
            let _ = stopped.recv_timeout(end.saturating_duration_since(Instant::now()));
        }
        self.group = None;
        let _ = self.guardian_ready();
        if let Some(g) = self.guardian.take() {
            if left_frozen {
                g.abandon();
            } else {
                g.finish();
            }
        }
    }
}
