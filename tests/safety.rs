//! Never leave a filesystem frozen or a database locked: a matrix of faults x
//! phases on loop-mounted xfs and ext4 filesystems the tests create (the only
//! filesystems they ever freeze). Each case checks: the filesystem is
//! writable afterwards, a write from another session goes through, the exit
//! status, and what the report says.

mod common;

use common::loopfs::{FsKind, LoopFs};
use common::server::TestServer;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

macro_rules! need {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return,
        }
    };
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report written"))
        .expect("valid json")
}

/// The filesystem took writes again and the server took a write.
fn released(fs: &LoopFs, s: &TestServer) {
    assert!(
        fs.writable_within(Duration::from_secs(5)).is_some(),
        "{} is still frozen",
        fs.mountpoint().display()
    );
    assert!(s.write_succeeds(2), "the server is still locked");
}

#[test]
fn the_filesystem_is_frozen_during_the_snapshot_and_thawed_after_on_xfs_and_ext4() {
    let s = need!(TestServer::start());
    for kind in [FsKind::Xfs, FsKind::Ext4] {
        let fs = need!(LoopFs::new(kind));
        let report = s.path("report.json");
        let (run, started) = spawn_run(&s, &fs, &["--report", report.to_str().unwrap()], "sleep 2");
        wait_for(&started);
        assert!(
            !fs.probe_writable(Duration::from_millis(500)),
            "{kind:?}: writes went through during the snapshot"
        );
        assert!(
            !s.write_succeeds(1),
            "{kind:?}: the database was not locked during the snapshot"
        );
        let status = wait_child(run);
        assert_eq!(status, Some(0));
        released(&fs, &s);
        let r = json(&report);
        assert_eq!(r["consistent"], true);
        assert_eq!(
            r["frozen"][0]["mountpoint"],
            fs.mountpoint().to_str().unwrap()
        );
        assert!(r["frozen"][0]["thaw_error"].is_null());
        let phases: Vec<&str> = r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            phases,
            [
                "connect",
                "lock",
                "coordinates",
                "freeze",
                "snapshot",
                "thaw",
                "unlock"
            ]
        );
    }
}

/// A run in the background whose snapshot hook first touches a marker (in a
/// directory that is not frozen) and then runs `then`.
fn spawn_run(s: &TestServer, fs: &LoopFs, extra: &[&str], then: &str) -> (Child, PathBuf) {
    let marker = s.path(&format!("snapshot-started-{}", rand_suffix()));
    let hook = format!("touch {} && {then}", marker.display());
    let child = Command::new(env!("CARGO_BIN_EXE_mysql-quiesce"))
        .args(s.args())
        .arg(fs.arg())
        .args(extra)
        .args(["--snapshot", &hook])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    (child, marker)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn wait_for(marker: &Path) {
    let t = Instant::now();
    while !marker.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the snapshot phase never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Exit code (None if killed by a signal), bounded so a hang fails the test.
fn wait_child(mut child: Child) -> Option<i32> {
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if t.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("mysql-quiesce did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_failing_hook_in_any_locked_phase_still_thaws_runs_post_and_unlocks() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Ext4));
    for phase in ["pre", "snapshot", "post"] {
        let log = s.path(&format!("log-{phase}"));
        let report = s.path(&format!("report-{phase}.json"));
        let mut cmd = s.mq();
        cmd.arg(fs.arg())
            .arg(format!("--report={}", report.display()));
        cmd.arg(format!("--{phase}")).arg("exit 5");
        if phase != "post" {
            cmd.args([
                "--post",
                &format!("echo post=$MYSQL_QUIESCE_STATUS >> {}", log.display()),
            ]);
        }
        cmd.args([
            "--after",
            &format!("echo after=$MYSQL_QUIESCE_STATUS >> {}", log.display()),
        ]);
        cmd.assert().code(5);
        released(&fs, &s);
        let expected = if phase == "post" {
            "after=failed\n"
        } else {
            "post=failed\nafter=failed\n"
        };
        assert_eq!(std::fs::read_to_string(&log).unwrap(), expected, "{phase}");
        let r = json(&report);
        assert_eq!(
            (r["exit_code"].as_u64(), r["consistent"].as_bool()),
            (Some(5), Some(false)),
            "{phase}"
        );
    }
}

#[test]
fn a_hook_hanging_past_its_timeout_and_the_max_lock_time_both_end_in_124_with_everything_released()
{
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Xfs));
    for limit in ["--hook-timeout=0.5", "--max-lock-time=1"] {
        let report = s.path("report.json");
        let started = Instant::now();
        s.mq()
            .arg(fs.arg())
            .arg(limit)
            .arg(format!("--report={}", report.display()))
            .args(["--snapshot", "sleep 60"])
            .assert()
            .code(124);
        assert!(started.elapsed() < Duration::from_secs(30), "{limit}");
        released(&fs, &s);
        assert_eq!(json(&report)["exit_code"], 124);
    }
}

#[test]
fn sigterm_and_sigint_stop_the_hook_thaw_run_post_unlock_and_exit_128_plus_n() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Ext4));
    for (signal, code) in [
        (Signal::SIGTERM, 143),
        (Signal::SIGINT, 130),
        (Signal::SIGHUP, 129),
    ] {
        let log = s.path("post-ran");
        let _ = std::fs::remove_file(&log);
        let post = format!("echo $MYSQL_QUIESCE_STATUS > {}", log.display());
        let (run, started) = spawn_run(&s, &fs, &["--post", &post], "sleep 60");
        wait_for(&started);
        let t = Instant::now();
        kill(Pid::from_raw(run.id() as i32), signal).unwrap();
        assert_eq!(wait_child(run), Some(code), "{signal:?}");
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{signal:?} took {:?}",
            t.elapsed()
        );
        released(&fs, &s);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "failed\n",
            "{signal:?}: post hook"
        );
    }
}

#[test]
fn sigkill_during_the_snapshot_leaves_the_guardian_to_thaw_within_a_second() {
    let s = need!(TestServer::start());
    for kind in [FsKind::Xfs, FsKind::Ext4] {
        let fs = need!(LoopFs::new(kind));
        let (mut run, started) = spawn_run(&s, &fs, &[], "sleep 60");
        wait_for(&started);
        assert!(
            !fs.probe_writable(Duration::from_millis(300)),
            "{kind:?}: not frozen"
        );
        run.kill().unwrap(); // SIGKILL
        run.wait().unwrap();
        let took = fs.writable_within(Duration::from_secs(5));
        assert!(
            took.is_some_and(|t| t < Duration::from_secs(1)),
            "{kind:?}: writable again after {took:?} (must be < 1 s)"
        );
        // The server releases the lock when the connection closes.
        assert!(s.write_succeeds(5));
    }
}

#[test]
fn killing_the_locking_connection_while_frozen_exits_65_and_thaws() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Ext4));
    let report = s.path("report.json");
    let kill_it = format!("{} -e \"KILL $MYSQL_QUIESCE_CONNECTION_ID\"", s.client());
    s.mq()
        .arg(fs.arg())
        .arg(format!("--report={}", report.display()))
        .args(["--snapshot", &kill_it])
        .assert()
        .code(65)
        .stderr(predicate::str::contains("CONSISTENCY NOT GUARANTEED"));
    released(&fs, &s);
    let r = json(&report);
    assert_eq!(r["consistent"], false);
    assert_eq!(r["lock"]["verified"], false);
}

#[test]
fn server_shut_down_mid_run_exits_65_and_thaws() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Xfs));
    let shutdown = format!("{} -e SHUTDOWN; sleep 1", s.client());
    s.mq()
        .arg(fs.arg())
        .args(["--snapshot", &shutdown])
        .assert()
        .code(65)
        .stderr(predicate::str::contains("CONSISTENCY NOT GUARANTEED"));
    assert!(fs.writable_within(Duration::from_secs(5)).is_some());
}

#[test]
fn an_already_frozen_filesystem_is_an_error_and_is_not_thawed_by_us() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Ext4));
    fs.freeze();
    s.mq()
        .arg(fs.arg())
        .args(["--snapshot", "exit 9"])
        .assert()
        .code(75)
        .stderr(predicate::str::contains("already frozen by someone else"));
    assert!(
        !fs.probe_writable(Duration::from_millis(300)),
        "mysql-quiesce thawed a freeze it did not make"
    );
    assert!(s.write_succeeds(2));
    fs.thaw();
    assert!(fs.writable_within(Duration::from_secs(5)).is_some());
}

#[test]
fn bad_freeze_targets_are_refused_before_connecting() {
    let fs = need!(LoopFs::new(FsKind::Ext4));
    let dir = tempfile::tempdir().unwrap();
    let lock = format!("--lock-file={}", dir.path().join("l").display());
    let sub = fs.mountpoint().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let base = || {
        let mut c = common::mysql_quiesce();
        c.args(["--no-defaults", "--socket=/nonexistent/sock", &lock]);
        c
    };
    base()
        .arg(format!("--freeze={}", sub.display()))
        .assert()
        .code(78)
        .stderr(predicate::str::contains("not a mount point"));
    base()
        .arg("--freeze=/")
        .assert()
        .code(78)
        .stderr(predicate::str::contains("root filesystem"));
    base()
        .args(["--freeze=/", "--force-freeze"])
        .assert()
        .code(78);
    base().arg("--freeze=/nonexistent/x").assert().code(78);
    let report = fs.mountpoint().join("r.json");
    base()
        .arg(fs.arg())
        .arg(format!("--report={}", report.display()))
        .assert()
        .code(78)
        .stderr(predicate::str::contains(
            "never touches a frozen filesystem",
        ));
    base()
        .arg(fs.arg())
        .current_dir(fs.mountpoint())
        .assert()
        .code(78)
        .stderr(predicate::str::contains("current directory"));
    // With --force-freeze the cwd check is overridden: the run gets as far as connecting.
    base()
        .arg(fs.arg())
        .arg("--force-freeze")
        .current_dir(fs.mountpoint())
        .assert()
        .code(69);
    let tool = fs.mountpoint().join("snap-tool");
    std::fs::write(&tool, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    base()
        .arg(fs.arg())
        .arg("--force-freeze")
        .args(["--", tool.to_str().unwrap()])
        .assert()
        .code(78)
        .stderr(predicate::str::contains("the program"));
    assert!(fs.probe_writable(Duration::from_secs(5)));
}

#[test]
fn a_second_concurrent_run_exits_75_naming_the_first() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Ext4));
    let (first, started) = spawn_run(&s, &fs, &[], "sleep 3");
    wait_for(&started);
    s.mq()
        .args(["--snapshot", "exit 9"])
        .assert()
        .code(75)
        .stderr(predicate::str::contains(format!("pid {}", first.id())));
    assert_eq!(wait_child(first), Some(0));
    released(&fs, &s);
}

#[test]
fn dry_run_and_check_never_freeze() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Ext4));
    s.mq()
        .arg(fs.arg())
        .arg("--dry-run")
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "freeze {}",
            fs.mountpoint().display()
        )));
    s.mq().arg(fs.arg()).arg("--check").assert().success();
    assert!(fs.probe_writable(Duration::from_secs(2)));
}
