//! Split lock/unlock and hold modes, with each framework's calling pattern
//! simulated by separate processes, against a real MariaDB.

mod common;

use common::loopfs::{FsKind, LoopFs};
use common::server::TestServer;
use predicates::prelude::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

macro_rules! need {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return,
        }
    };
}

/// `lock` with extra args; returns its stdout.
fn lock(s: &TestServer, extra: &[&str]) -> String {
    let out = s
        .mq()
        .arg("lock")
        .args(extra)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(out).unwrap()
}

fn var(output: &str, key: &str) -> String {
    output
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing in:\n{output}"))
        .trim_matches('\'')
        .to_string()
}

#[test]
fn lock_then_unlock_holds_writes_in_between_and_exits_0() {
    let s = need!(TestServer::start());
    let out = lock(&s, &[]);
    assert!(var(&out, "MYSQL_QUIESCE_BINLOG_FILE").starts_with("binlog."));
    assert!(var(&out, "MYSQL_QUIESCE_CONNECTION_ID")
        .parse::<u32>()
        .is_ok());
    assert!(
        !s.write_succeeds(1),
        "writes must be blocked between lock and unlock"
    );
    s.mq().arg("status").assert().success().stdout(
        predicate::str::contains("holder: running")
            .and(predicate::str::contains("released by itself in")),
    );
    s.mq()
        .arg("unlock")
        .assert()
        .success()
        .stderr(predicate::str::contains("lock held continuously"));
    assert!(s.write_succeeds(1));
    s.mq()
        .arg("status")
        .assert()
        .code(3)
        .stdout(predicate::str::contains("not running"));
}

#[test]
fn lock_prints_json_with_json() {
    let s = need!(TestServer::start());
    let out = lock(&s, &["--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["MYSQL_QUIESCE_LOCK"], "backup-stage");
    s.mq().arg("unlock").assert().success();
}

#[test]
fn a_lock_lost_between_lock_and_unlock_makes_unlock_exit_65() {
    let s = need!(TestServer::start());
    let out = lock(&s, &[]);
    let id = var(&out, "MYSQL_QUIESCE_CONNECTION_ID");
    s.sql(&format!("KILL {id}"));
    s.mq()
        .arg("unlock")
        .assert()
        .code(65)
        .stderr(predicate::str::contains("CONSISTENCY NOT GUARANTEED"));
    assert!(s.write_succeeds(1));
}

#[test]
fn a_lock_never_unlocked_is_released_at_max_lock_time_and_unlock_then_says_124() {
    let s = need!(TestServer::start());
    lock(&s, &["--max-lock-time=1"]);
    assert!(
        !s.write_succeeds(0) || !s.write_succeeds(1),
        "locked at first"
    );
    let t = Instant::now();
    while !s.write_succeeds(1) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the holder did not release at its deadline"
        );
    }
    // Wait for the holder to record its result and exit.
    let t = Instant::now();
    while s.mq().arg("status").assert().get_output().status.code() != Some(3) {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    s.mq()
        .arg("unlock")
        .assert()
        .code(124)
        .stderr(predicate::str::contains("max-lock-time"));
    // Collected once.
    s.mq().arg("unlock").assert().code(69);
}

#[test]
fn unlock_without_lock_is_a_clear_error() {
    let s = need!(TestServer::start());
    s.mq()
        .arg("unlock")
        .assert()
        .code(69)
        .stderr(predicate::str::contains("no holder is running"));
}

#[test]
fn a_second_lock_is_refused_while_the_first_holds() {
    let s = need!(TestServer::start());
    lock(&s, &[]);
    s.mq()
        .arg("lock")
        .assert()
        .code(75)
        .stderr(predicate::str::contains("already holds the lock"));
    assert!(!s.write_succeeds(1), "the first lock must still hold");
    s.mq().arg("unlock").assert().success();
}

#[test]
fn a_failed_lock_leaves_nothing_behind() {
    let s = need!(TestServer::start());
    s.mq()
        .args(["lock", "--lock=instance"])
        .assert()
        .code(78)
        .stderr(predicate::str::contains("nothing is held"));
    s.mq().arg("status").assert().code(3);
    assert!(s.write_succeeds(1));
    assert!(!s.path("state/holder.sock").exists() && !s.path("state/holder.pid").exists());
}

#[test]
fn sigkill_of_the_holder_while_frozen_thaws_within_a_second_and_unlock_says_65() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Xfs));
    let out = lock(&s, &[&fs.arg()]);
    assert_eq!(
        var(&out, "MYSQL_QUIESCE_FROZEN"),
        fs.mountpoint().to_str().unwrap()
    );
    assert!(
        !fs.probe_writable(Duration::from_millis(300)),
        "not frozen after lock"
    );
    let pid: i32 = std::fs::read_to_string(s.path("state/holder.pid"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let took = fs.writable_within(Duration::from_secs(5));
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(1)),
        "writable after {took:?}"
    );
    assert!(s.write_succeeds(5));
    s.mq()
        .arg("unlock")
        .assert()
        .code(65)
        .stderr(predicate::str::contains("died while holding the lock"));
}

fn spawn_hold(s: &TestServer) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mysql-quiesce"))
        .args(s.args())
        .arg("hold")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

fn wait_code(mut child: std::process::Child) -> Option<i32> {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        assert!(t.elapsed() < Duration::from_secs(30), "hold did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hold_releases_when_stdin_closes() {
    let s = need!(TestServer::start());
    let (mut child, line) = spawn_hold(&s);
    assert!(
        line.starts_with("READY ") && line.contains("MYSQL_QUIESCE_BINLOG_FILE='binlog."),
        "{line}"
    );
    assert!(!s.write_succeeds(1), "hold must block writes");
    drop(child.stdin.take());
    assert_eq!(wait_code(child), Some(0));
    assert!(s.write_succeeds(1));
}

#[test]
fn hold_releases_on_sigterm_and_exits_0() {
    let s = need!(TestServer::start());
    let (child, _) = spawn_hold(&s);
    assert!(!s.write_succeeds(1));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(wait_code(child), Some(0));
    assert!(s.write_succeeds(1));
}

#[test]
fn hold_reports_a_lost_lock_with_65() {
    let s = need!(TestServer::start());
    let (mut child, line) = spawn_hold(&s);
    let id = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("MYSQL_QUIESCE_CONNECTION_ID="))
        .unwrap()
        .trim_matches('\'')
        .to_string();
    s.sql(&format!("KILL {id}"));
    drop(child.stdin.take());
    assert_eq!(wait_code(child), Some(65));
}
