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

/// PATH with the binary under test first, as an installed package would have it.
fn path_with_binary() -> String {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_mysql-quiesce"))
        .parent()
        .unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn example(rel: &str) -> String {
    format!("{}/docs/frameworks/{rel}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_google_cloud_pre_and_post_scripts_hold_the_lock_between_them() {
    let s = need!(TestServer::start());
    let cnf = s.path("mq.cnf");
    std::fs::write(&cnf, "[mysql-quiesce]\nmax-lock-time = 60\n").unwrap();
    let run = |script: &str| {
        Command::new("sh")
            .arg(example(script))
            .arg("disk-1,disk-2")
            .env("PATH", path_with_binary())
            .env("MYSQL_QUIESCE_CNF", &cnf)
            .env("MYSQL_QUIESCE_OPTS", s.args()[1..].join(" "))
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(run("gcp/pre.sh"), Some(0));
    assert!(!s.write_succeeds(1), "locked between pre.sh and post.sh");
    assert_eq!(run("gcp/post.sh"), Some(0));
    assert!(s.write_succeeds(1));
}

#[test]
fn the_coprocess_example_holds_the_lock_around_existing_snapshot_lines() {
    let s = need!(TestServer::start());
    // The "existing snapshot line" proves writes are blocked while it runs.
    let blocked = format!(
        "! {} -e 'SET SESSION lock_wait_timeout=1; INSERT INTO probe.t VALUES (1)'",
        s.client()
    );
    let status = Command::new("bash")
        .arg(example("hold-coprocess.sh"))
        .args(["sh", "-c", &blocked])
        .env("PATH", path_with_binary())
        .env("MYSQL_QUIESCE_OPTS", s.args().join(" "))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(s.write_succeeds(1));
}

#[test]
fn the_azure_plugin_config_is_valid_json_with_the_documented_keys() {
    let text = std::fs::read_to_string(example("azure/VMSnapshotScriptPluginConfig.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["pluginName"], "ScriptRunner");
    assert_eq!(v["continueBackupOnFailure"], false);
    for script in [
        "azure/pre-script.sh",
        "azure/post-script.sh",
        "gcp/pre.sh",
        "gcp/post.sh",
    ] {
        let out = Command::new("sh")
            .args(["-n", &example(script)])
            .status()
            .unwrap();
        assert!(out.success(), "{script} has a syntax error");
    }
}
