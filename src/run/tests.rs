//! The sequence's ordering rules, proved in milliseconds against a recorder
//! in place of the servers, filesystems and processes. The integration
//! tests (tests/) prove the same on real servers and real filesystems.

use super::*;
use crate::cli::LockMode;
use crate::freeze::{FsId, Target, Thawed};
use crate::plan::{Hooks, Instance, Outputs};
use crate::server::connect::{ConnectSpec, ConnectionArgs};
use crate::server::lock::{Guard, LockConfig};
use crate::server::{Coordinates, ServerInfo};
use std::path::PathBuf;

/// What the recorder does, and what it was asked.
#[derive(Default)]
struct Recorder {
    events: Vec<String>,
    /// Hooks (by command) that exit with this status.
    failing_hooks: Vec<(String, i32)>,
    /// Hooks that run past the deadline.
    hanging_hooks: Vec<String>,
    lock_fails: bool,
    guardian_fails: bool,
    lost_lock: bool,
    thaw_fails: bool,
}

impl Recorder {
    fn log(&mut self, e: impl Into<String>) {
        self.events.push(e.into());
    }
}

impl Backend for Recorder {
    fn take_run_lock(&mut self) -> anyhow::Result<()> {
        self.log("run-lock");
        Ok(())
    }
    fn start_guardian(&mut self) -> anyhow::Result<()> {
        self.log("guardian");
        Ok(())
    }
    fn guardian_ready(&mut self) -> anyhow::Result<()> {
        self.log("guardian ready");
        if self.guardian_fails {
            return Err(exit::fail(exit::SOFTWARE, "cannot start the guardian"));
        }
        Ok(())
    }
    fn connect(&mut self) -> anyhow::Result<Vec<Connected>> {
        self.log("connect");
        Ok(vec![Connected {
            instance: instance(),
            info: ServerInfo::from_strings("10.11.19-MariaDB", ""),
            connection_id: 7,
            tls: None,
            lock: LockMode::BackupStage,
            statement: "BACKUP STAGE BLOCK_COMMIT",
        }])
    }
    fn lock(&mut self) -> anyhow::Result<Duration> {
        self.log("lock");
        if self.lock_fails {
            return Err(exit::fail(exit::TEMPFAIL, "could not lock"));
        }
        Ok(Duration::from_millis(1))
    }
    fn coordinates(&mut self) -> anyhow::Result<Vec<Coordinates>> {
        self.log("coordinates");
        Ok(vec![Coordinates {
            binlog_file: Some("binlog.000001".into()),
            binlog_position: Some(4),
            exact: true,
            ..Coordinates::default()
        }])
    }
    fn bound(&mut self, _deadline: Instant) {
        self.log("bound");
    }
    fn freeze(&mut self, _deadline: Instant) -> anyhow::Result<()> {
        self.log("freeze");
        Ok(())
    }
    fn thaw(&mut self) -> Vec<Thawed> {
        if !self.events.iter().any(|e| e == "freeze") || self.events.iter().any(|e| e == "thaw") {
            return Vec::new();
        }
        self.log("thaw");
        vec![Thawed {
            mountpoint: "/data".into(),
            error: self.thaw_fails.then(|| "EPERM".to_string()),
        }]
    }
    fn guardian_acted(&mut self, _deadline: Instant) -> bool {
        false
    }
    fn guardian_gone(&mut self) -> Option<u32> {
        None
    }
    fn verify(&mut self, _deadline: Instant) -> Vec<String> {
        self.log("verify");
        if self.lost_lock {
            vec!["the locking connection 7 was lost".into()]
        } else {
            Vec::new()
        }
    }
    fn release(&mut self) -> Vec<anyhow::Error> {
        self.log("unlock");
        Vec::new()
    }
    fn run_hook(
        &mut self,
        hook: &Hook,
        env: &[(String, String)],
        limits: Limits,
    ) -> (Ending, Duration) {
        let shown = hook.program.display();
        let status = env
            .iter()
            .find(|(k, _)| k == "MYSQL_QUIESCE_STATUS")
            .map(|(_, v)| format!(" [{v}]"))
            .unwrap_or_default();
        let locked = if limits.deadline.is_some() {
            " (locked)"
        } else {
            ""
        };
        self.log(format!("{} {shown}{status}{locked}", hook.phase.name()));
        if self.hanging_hooks.contains(&shown) {
            if let Some(d) = limits.deadline {
                std::thread::sleep(d.saturating_duration_since(Instant::now()));
                return (Ending::DeadlineExceeded, Duration::ZERO);
            }
        }
        match self.failing_hooks.iter().find(|(c, _)| *c == shown) {
            Some((_, code)) => (Ending::Exited(*code), Duration::ZERO),
            None => (Ending::Exited(0), Duration::ZERO),
        }
    }
    fn disconnect(&mut self) {
        self.log("disconnect");
    }
    fn dismiss(&mut self, left_frozen: bool) {
        self.log(if left_frozen {
            "guardian stays"
        } else {
            "guardian goes"
        });
    }
}

fn instance() -> Instance {
    Instance {
        name: None,
        spec: ConnectSpec::new(&ConnectionArgs {
            socket: Some("/nonexistent/sock".into()),
            connect_timeout: 1.0,
            ..ConnectionArgs::default()
        })
        .unwrap(),
    }
}

fn plan(hooks: Hooks, freeze: bool, max_lock_time: Duration) -> Plan {
    let target = Target {
        mountpoint: "/data".into(),
        fs_type: "xfs".into(),
        fs: FsId { major: 7, minor: 1 },
        dir: (1, 2),
    };
    Plan {
        hooks,
        lock: LockConfig {
            mode: LockMode::Auto,
            wait: Duration::from_secs(1),
            retries: 0,
            retry_delay: Duration::ZERO,
            guard: Guard::Auto,
            query_type: None,
            long_query_wait: Duration::from_secs(60),
            kill_after: None,
            pre_flush: false,
            stop_replica_sql: false,
            max_lock_time,
        },
        instances: vec![instance()],
        freeze: if freeze { vec![target] } else { Vec::new() },
        outputs: Outputs::default(),
        max_lock_time,
        hook_timeout: Duration::from_secs(10),
        state_dir: PathBuf::from("/nonexistent/state"),
        lock_file: None,
        password: None,
        progress: Progress {
            quiet: true,
            verbose: 0,
        },
    }
}

fn hooks(pre: &[&str], snapshot: &[&str], post: &[&str], after: &[&str]) -> Hooks {
    let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
    Hooks {
        before: Vec::new(),
        pre: v(pre),
        snapshot: v(snapshot),
        post: v(post),
        after: v(after),
        command: None,
    }
}

/// What was recorded from `first` on.
fn events_from<'a>(r: &'a Recorder, first: &str) -> Vec<&'a str> {
    r.events
        .iter()
        .map(String::as_str)
        .skip_while(|e| *e != first)
        .collect()
}

fn run(plan: &Plan, recorder: &mut Recorder) -> u8 {
    Run::new(plan, recorder).execute()
}

#[test]
fn everything_acquired_is_released_in_reverse_order_and_thaw_comes_before_post() {
    let p = plan(
        hooks(&["p"], &["s"], &["q"], &["a"]),
        true,
        Duration::from_secs(60),
    );
    let mut r = Recorder::default();
    assert_eq!(run(&p, &mut r), exit::OK);
    assert_eq!(
        r.events,
        [
            "run-lock",
            "guardian",
            "connect",
            "guardian ready",
            "lock",
            "coordinates",
            "bound",
            "pre p (locked)",
            "freeze",
            "snapshot s (locked)",
            "thaw",
            "verify",
            "post q [ok] (locked)",
            "unlock",
            "disconnect",
            "after a [ok]",
            "guardian goes",
        ]
    );
}

#[test]
fn post_and_after_hooks_run_after_any_failure_and_see_it() {
    let p = plan(
        hooks(&["p"], &["s"], &["q"], &["a"]),
        true,
        Duration::from_secs(60),
    );
    let mut r = Recorder {
        failing_hooks: vec![("p".into(), 5)],
        ..Recorder::default()
    };
    assert_eq!(run(&p, &mut r), 5);
    // The snapshot is skipped, nothing was frozen; post and after run, told it failed.
    assert!(!r
        .events
        .iter()
        .any(|e| e.starts_with("snapshot") || e == "freeze"));
    let tail = events_from(&r, "verify");
    assert_eq!(
        tail,
        [
            "verify",
            "post q [failed] (locked)",
            "unlock",
            "disconnect",
            "after a [failed]",
            "guardian goes"
        ]
    );
}

#[test]
fn a_lost_lock_beats_a_failing_hook() {
    let p = plan(hooks(&[], &["s"], &[], &[]), false, Duration::from_secs(60));
    let mut r = Recorder {
        failing_hooks: vec![("s".into(), 3)],
        lost_lock: true,
        ..Recorder::default()
    };
    assert_eq!(run(&p, &mut r), exit::INCONSISTENT);
}

#[test]
fn a_failed_lock_skips_the_locked_section_but_after_hooks_run() {
    let p = plan(
        hooks(&["p"], &["s"], &["q"], &["a"]),
        true,
        Duration::from_secs(60),
    );
    let mut r = Recorder {
        lock_fails: true,
        ..Recorder::default()
    };
    assert_eq!(run(&p, &mut r), exit::TEMPFAIL);
    assert_eq!(
        r.events,
        [
            "run-lock",
            "guardian",
            "connect",
            "guardian ready",
            "lock",
            "disconnect",
            "after a [failed]",
            "guardian goes"
        ]
    );
}

#[test]
fn a_post_hook_cut_at_the_deadline_releases_the_lock_before_the_next_one() {
    let p = plan(
        hooks(&[], &[], &["slow", "next"], &[]),
        false,
        Duration::from_millis(50),
    );
    let mut r = Recorder {
        hanging_hooks: vec!["slow".into()],
        ..Recorder::default()
    };
    assert_eq!(run(&p, &mut r), exit::TIMEOUT);
    let tail = events_from(&r, "verify");
    assert_eq!(
        tail,
        [
            "verify",
            "post slow [ok] (locked)",
            "unlock",
            "post next [failed]",
            "disconnect",
            "guardian goes"
        ]
    );
}

#[test]
fn a_thaw_that_fails_keeps_the_guardian() {
    let p = plan(hooks(&[], &["s"], &[], &[]), true, Duration::from_secs(60));
    let mut r = Recorder {
        thaw_fails: true,
        ..Recorder::default()
    };
    assert_eq!(run(&p, &mut r), exit::SOFTWARE);
    assert_eq!(r.events.last().unwrap(), "guardian stays");
}

/// The guardian's start overlaps the connect, but no hook runs and nothing
/// is locked or frozen before it is up; one that cannot start ends the run
/// with its own failure (70), before a before-hook or after the connect.
#[test]
fn nothing_runs_locks_or_freezes_before_the_guardian_is_up() {
    let mut with_before = hooks(&["p"], &["s"], &[], &["a"]);
    with_before.before = vec!["b".into()];
    let p = plan(with_before, true, Duration::from_secs(60));
    let mut r = Recorder::default();
    assert_eq!(run(&p, &mut r), exit::OK);
    assert_eq!(
        r.events[..5],
        [
            "run-lock",
            "guardian",
            "guardian ready",
            "before b",
            "connect"
        ]
    );
    let mut r = Recorder {
        guardian_fails: true,
        ..Recorder::default()
    };
    assert_eq!(run(&p, &mut r), exit::SOFTWARE);
    assert_eq!(
        r.events,
        ["run-lock", "guardian", "guardian ready", "guardian goes"]
    );
    let p = plan(
        hooks(&["p"], &["s"], &[], &["a"]),
        true,
        Duration::from_secs(60),
    );
    let mut r = Recorder {
        guardian_fails: true,
        ..Recorder::default()
    };
    assert_eq!(run(&p, &mut r), exit::SOFTWARE);
    assert_eq!(
        r.events,
        [
            "run-lock",
            "guardian",
            "connect",
            "guardian ready",
            "guardian goes"
        ]
    );
    // --lock=none: nothing to connect, the guardian is still waited for.
    let mut p = plan(
        hooks(&["p"], &["s"], &[], &[]),
        true,
        Duration::from_secs(60),
    );
    p.lock.mode = LockMode::None;
    p.instances.clear();
    let mut r = Recorder::default();
    assert_eq!(run(&p, &mut r), exit::OK);
    assert_eq!(
        r.events[..4],
        ["run-lock", "guardian", "guardian ready", "bound"]
    );
}
