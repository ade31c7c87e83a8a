//! Split lock/unlock and hold modes, as separate processes (the way snapshot
//! frameworks call them), against a real MariaDB. The framework examples
//! themselves are tested in tests/frameworks.rs.

mod common;

use common::loopfs::{FsKind, LoopFs};
use common::server::TestServer;
use mysql::prelude::Queryable;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use predicates::prelude::*;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mysql-quiesce");

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
        .find_map(|l| l.strip_prefix(&format!("export {key}=")))
        .unwrap_or_else(|| panic!("{key} missing in:\n{output}"))
        .trim_matches('\'')
        .to_string()
}

fn status_json(s: &TestServer) -> serde_json::Value {
    let out = s.mq().args(["status", "--json"]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Poll `cond` every 50 ms; panic with `what` after `limit`.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "{what} (waited {limit:?})");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Our processes (holders, `lock` clients) working for this test's server:
/// their command line names a path in its temp dir.
fn our_processes(s: &TestServer) -> Vec<i32> {
    let marker = s.dir.path().to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_ours = args.first().is_some_and(|a0| {
            Path::new(a0)
                .file_name()
                .is_some_and(|n| n == "mysql-quiesce")
        });
        if is_ours && args.iter().any(|a| a.contains(&marker)) {
            found.push(pid);
        }
    }
    found
}

fn holder_pid(s: &TestServer) -> i32 {
    let v = status_json(s);
    assert_eq!(v["running"], true, "no holder running: {v}");
    v["pid"].as_i64().unwrap() as i32
}

fn spawn_lock(s: &TestServer, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args(s.args())
        .arg("lock")
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn wait_child(child: &mut Child, limit: Duration) -> Option<i32> {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        assert!(t.elapsed() < limit, "process did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A write that runs for `secs` in its own session; FLUSH TABLES WITH READ
/// LOCK waits for it. Returns the session's connection id and the thread.
fn long_write(s: &TestServer, secs: u32) -> (u32, std::thread::JoinHandle<()>) {
    let mut c = s.conn();
    let id: u32 = c.query_first("SELECT CONNECTION_ID()").unwrap().unwrap();
    let h = std::thread::spawn(move || {
        let _ = c.query_drop(format!("INSERT INTO probe.t SELECT SLEEP({secs})"));
    });
    // Running (and holding its metadata lock) before anyone tries to lock.
    wait_for(
        Duration::from_secs(10),
        "the long write did not start",
        || {
            s.value(&format!(
            "SELECT COUNT(*) FROM information_schema.processlist WHERE id = {id} AND info LIKE 'INSERT%'"
        ))
        .as_deref()
            == Some("1")
        },
    );
    (id, h)
}

/// `lock` in FTWRL mode, retrying every 1.5 s while the long write blocks it.
const RETRYING: &[&str] = &[
    "--lock=ftwrl",
    "--lock-wait-timeout=1",
    "--lock-retries=30",
    "--lock-retry-delay=0.5",
    "--max-lock-time=60",
];

/// A `lock` client behind a 5 s write, caught mid-retry: its holder is
/// taking the lock, and no attempt has succeeded. Returns the client and the
/// long write's thread.
fn lock_mid_retry(s: &TestServer) -> (Child, std::thread::JoinHandle<()>) {
    let (_, blocker) = long_write(s, 5);
    let client = spawn_lock(s, RETRYING);
    wait_for(
        Duration::from_secs(10),
        "the holder never reported that it is taking the lock",
        || status_json(s)["phase"] == "locking",
    );
    std::thread::sleep(Duration::from_millis(1500));
    (client, blocker)
}

#[test]
fn lock_then_unlock_holds_writes_in_between_and_exits_0() {
    let s = need!(TestServer::start());
    let out = lock(&s, &["--max-lock-time=60"]);
    assert!(var(&out, "MYSQL_QUIESCE_BINLOG_FILE").starts_with("binlog."));
    let id = var(&out, "MYSQL_QUIESCE_CONNECTION_ID");
    assert!(
        !s.write_succeeds(1),
        "writes must be blocked between lock and unlock"
    );
    s.mq().arg("status").assert().success().stdout(
        predicate::str::contains("holder: running")
            .and(predicate::str::contains("released by itself in")),
    );
    let v = status_json(&s);
    assert_eq!(v["running"], true, "{v}");
    assert_eq!(v["phase"], "holding", "{v}");
    assert!(v["pid"].as_i64().unwrap() > 0, "{v}");
    let left = v["seconds_left"].as_f64().unwrap();
    assert!(left > 0.0 && left <= 60.0, "{v}");
    assert_eq!(v["lock"], "backup-stage", "{v}");
    assert_eq!(v["env"]["MYSQL_QUIESCE_CONNECTION_ID"], id.as_str(), "{v}");
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
    let v = status_json(&s);
    assert_eq!(v["running"], false, "{v}");
    assert_eq!(v["result_waiting"], false, "{v}");
}

#[test]
fn when_unlock_returns_its_holder_is_gone_and_the_next_lock_is_accepted_at_once() {
    let s = need!(TestServer::start());
    // The holder answers `unlock` and then exits: an `unlock` that returned
    // before that exit let a `lock` right after it be refused (75) as a
    // second holder. Several rounds: the window was a millisecond or two.
    for round in 0..8 {
        lock(&s, &[]);
        s.mq().arg("unlock").assert().success();
        let v = status_json(&s);
        assert_eq!(v["running"], false, "round {round}: {v}");
    }
    lock(&s, &[]);
    s.mq().arg("unlock").assert().success();
    lock(&s, &[]);
    s.mq().arg("unlock").assert().success();
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
    let t0 = Instant::now();
    lock(&s, &["--max-lock-time=2"]);
    // A writer that waits as long as it must: it gets through when the holder releases.
    let mut c = s.conn();
    c.query_drop("SET SESSION lock_wait_timeout = 60").unwrap();
    c.query_drop("INSERT INTO probe.t VALUES (1)").unwrap();
    let released = t0.elapsed();
    // The lock was taken after t0, so it was held until at least t0 + 2 s.
    assert!(
        released >= Duration::from_secs(2),
        "released after {released:?}, before --max-lock-time"
    );
    // It was taken before `lock` returned, so the deadline is at most t0 + 2 s; 2 s of slack
    // for the release itself on a loaded machine. A holder that never released would keep the
    // writer waiting its full 60 s.
    assert!(
        released < Duration::from_secs(4),
        "writers were blocked {released:?}, well past --max-lock-time=2"
    );
    wait_for(
        Duration::from_secs(10),
        "the holder did not exit after releasing",
        || s.mq().arg("status").output().unwrap().status.code() == Some(3),
    );
    let result = s.path("state/last-result.json");
    assert_eq!(
        std::fs::metadata(&result).unwrap().mode() & 0o077,
        0,
        "the recorded result must be private"
    );
    assert_eq!(status_json(&s)["result_waiting"], true);
    s.mq()
        .arg("unlock")
        .assert()
        .code(124)
        .stderr(predicate::str::contains("max-lock-time"));
    // Collected once.
    s.mq().arg("unlock").assert().code(69);
}

#[test]
fn an_unlock_while_the_holder_releases_at_its_deadline_waits_for_it_and_says_124() {
    let s = need!(TestServer::start());
    // The post hook keeps the holder releasing for 3 s after its deadline.
    lock(&s, &["--max-lock-time=1", "--post=sleep 3"]);
    wait_for(
        Duration::from_secs(10),
        "status never showed the holder releasing",
        || status_json(&s)["phase"] == "releasing",
    );
    let t = Instant::now();
    s.mq()
        .arg("unlock")
        .assert()
        .code(124)
        .stderr(predicate::str::contains("max-lock-time"));
    // The 3 s hook plus a margin; a hang would reach the 5 s answer timeout or the harness's.
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    s.mq().arg("unlock").assert().code(69);
    assert!(s.write_succeeds(1));
}

#[test]
fn unlock_and_status_give_up_on_a_holder_that_does_not_answer() {
    let s = need!(TestServer::start());
    lock(&s, &["--max-lock-time=60"]);
    let pid = Pid::from_raw(holder_pid(&s));
    kill(pid, Signal::SIGSTOP).unwrap();
    let t = Instant::now();
    let status = s.mq().arg("status").output().unwrap();
    let unlock = s.mq().arg("unlock").output().unwrap();
    kill(pid, Signal::SIGCONT).unwrap();
    // Two 5 s answer timeouts, with a margin; the harness's own limit is 120 s.
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    for (what, out) in [("status", &status), ("unlock", &unlock)] {
        assert_eq!(out.status.code(), Some(70), "{what}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("did not answer"), "{what}: {err}");
    }
    // The unlock request was queued on the socket; the holder acts on it once resumed.
    wait_for(
        Duration::from_secs(10),
        "the holder did not release",
        || s.mq().arg("status").output().unwrap().status.code() == Some(3),
    );
    assert!(s.write_succeeds(1));
    s.mq().arg("unlock").assert().success();
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
    let pid = holder_pid(&s);
    s.mq()
        .arg("lock")
        .assert()
        .code(75)
        .stderr(predicate::str::contains(format!("pid {pid}")));
    assert!(!s.write_succeeds(1), "the first lock must still hold");
    s.mq().arg("unlock").assert().success();
}

#[test]
fn of_two_concurrent_locks_one_wins_the_other_exits_75_naming_it_and_the_winner_still_unlocks() {
    let s = need!(TestServer::start());
    let start = || {
        Command::new(BIN)
            .args(s.args())
            .args(["lock", "--max-lock-time=60"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (winner, loser) = match (a.status.code(), b.status.code()) {
        (Some(0), Some(75)) => (a, b),
        (Some(75), Some(0)) => (b, a),
        other => panic!(
            "expected one 0 and one 75, got {other:?}:\n{}\n{}",
            String::from_utf8_lossy(&a.stderr),
            String::from_utf8_lossy(&b.stderr)
        ),
    };
    assert!(String::from_utf8_lossy(&winner.stdout).contains("MYSQL_QUIESCE_BINLOG_FILE="));
    let pid = holder_pid(&s);
    let err = String::from_utf8_lossy(&loser.stderr);
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(!s.write_succeeds(1), "the winner must still hold the lock");
    // The loser did not truncate the live holder's log.
    let log = std::fs::read_to_string(s.path("state/holder.log")).unwrap();
    assert!(log.contains("locked ("), "holder log lost: {log}");
    s.mq().arg("unlock").assert().success();
    assert!(s.write_succeeds(1));
}

/// Leave what a holder killed with SIGKILL leaves: its pid line in the
/// unlocked holder.lock (here a live pid, as after pid reuse) and its socket.
fn leave_dead_holder_state(s: &TestServer, pid_line: Option<&str>) {
    let dir = s.path("state");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    if let Some(line) = pid_line {
        std::fs::write(dir.join("holder.lock"), line).unwrap();
    }
    drop(std::os::unix::net::UnixListener::bind(dir.join("holder.sock")).unwrap());
    assert!(dir.join("holder.sock").exists());
}

#[test]
fn a_leftover_socket_without_a_holder_does_not_stop_lock() {
    let s = need!(TestServer::start());
    leave_dead_holder_state(&s, None);
    s.mq().arg("status").assert().code(3);
    lock(&s, &[]);
    assert!(!s.write_succeeds(1));
    s.mq().arg("unlock").assert().success();
}

#[test]
fn a_dead_holder_is_recognised_by_its_free_flock_even_if_its_pid_lives_on() {
    let s = need!(TestServer::start());
    // Our own pid: alive, as a reused pid would be.
    let line = format!("{} 2026-01-01T00:00:00Z\n", std::process::id());
    leave_dead_holder_state(&s, Some(&line));
    s.mq()
        .arg("status")
        .assert()
        .code(3)
        .stdout(predicate::str::contains("died without `unlock`"));
    s.mq()
        .arg("unlock")
        .assert()
        .code(65)
        .stderr(predicate::str::contains("died while holding the lock"));
    assert!(!s.path("state/holder.sock").exists(), "stale socket left");
    s.mq().arg("unlock").assert().code(69);

    // A new lock never takes the place of a death nobody has collected: that
    // lock's post-script would get this lock's answer.
    leave_dead_holder_state_again(&s, &line);
    s.mq()
        .arg("lock")
        .assert()
        .code(75)
        .stderr(predicate::str::contains("died while holding the lock"))
        .stderr(predicate::str::contains("Nothing was done"));
    assert!(s.write_succeeds(1), "the refused lock locked");
    s.mq().arg("unlock").assert().code(65);
    lock(&s, &[]);
    assert!(!s.write_succeeds(1));
    s.mq().arg("unlock").assert().success();
}

#[test]
fn an_unlock_always_answers_for_its_own_lock_never_for_a_later_one() {
    let s = need!(TestServer::start());
    // Workflow A: its lock expires before its post-script comes.
    lock(&s, &["--max-lock-time=1"]);
    wait_for(
        Duration::from_secs(10),
        "A's holder released at its deadline",
        || status_json(&s)["running"] == false,
    );
    // Workflow B may not lock before A's outcome is collected...
    s.mq()
        .args(["lock", "--max-lock-time=60"])
        .assert()
        .code(75)
        .stderr(predicate::str::contains(
            "no `mysql-quiesce unlock` has collected that",
        ));
    // ... so A's unlock gets A's answer (124), not B's "held continuously".
    s.mq().arg("unlock").assert().code(124);
    lock(&s, &["--max-lock-time=60"]);
    assert!(!s.write_succeeds(1));
    s.mq().arg("unlock").assert().success();
}

fn leave_dead_holder_state_again(s: &TestServer, line: &str) {
    let dir = s.path("state");
    std::fs::write(dir.join("holder.lock"), line).unwrap();
    drop(std::os::unix::net::UnixListener::bind(dir.join("holder.sock")).unwrap());
}

#[test]
fn the_state_directory_and_its_files_are_private() {
    let s = need!(TestServer::start());
    lock(&s, &[]);
    let dir = s.path("state");
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o7777, 0o700);
    for f in ["holder.sock", "holder.lock", "holder.log"] {
        let meta = std::fs::symlink_metadata(dir.join(f)).unwrap();
        assert_eq!(meta.mode() & 0o077, 0, "{f} is accessible to others");
        assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw(), "{f}");
    }
    s.mq().arg("unlock").assert().success();
}

/// The server's arguments with another --state-dir.
fn args_with_state_dir(s: &TestServer, dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = s
        .args()
        .into_iter()
        .filter(|a| !a.starts_with("--state-dir="))
        .collect();
    args.push(format!("--state-dir={}", dir.display()));
    args
}

#[test]
fn an_unsafe_state_directory_is_refused_and_a_foreign_one_is_a_permission_error() {
    let s = need!(TestServer::start());
    let mq = |dir: &Path, sub: &str| {
        common::mysql_quiesce()
            .args(args_with_state_dir(&s, dir))
            .arg(sub)
            .assert()
    };
    // Open to others.
    let open = s.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    mq(&open, "lock")
        .code(78)
        .stderr(predicate::str::contains("chmod 700"));
    assert!(s.write_succeeds(1), "nothing may be locked");
    // A symbolic link.
    let real = s.path("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = s.path("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    mq(&link, "lock")
        .code(78)
        .stderr(predicate::str::contains("symbolic link"));
    // Someone else's: a permission error, not "no holder".
    let foreign = s.path("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o700)).unwrap();
    nix::unistd::chown(&foreign, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    for sub in ["status", "unlock", "lock"] {
        mq(&foreign, sub)
            .code(77)
            .stderr(predicate::str::contains("belongs to uid 65534"));
    }
    assert!(our_processes(&s).is_empty());
    assert!(s.write_succeeds(1));
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
    assert!(!s.path("state/holder.sock").exists());
    assert_eq!(
        std::fs::read_to_string(s.path("state/holder.lock")).unwrap(),
        "",
        "no holder pid may stay recorded"
    );
    assert!(our_processes(&s).is_empty());
}

#[test]
fn sigterm_to_lock_while_it_retries_stops_its_holder_and_leaves_nothing_locked() {
    let s = need!(TestServer::start());
    let (mut client, blocker) = lock_mid_retry(&s);
    kill(Pid::from_raw(client.id() as i32), Signal::SIGTERM).unwrap();
    // One lock attempt (1 s) and the release; the bug this catches kept `lock`
    // waiting until the holder had the lock, then exiting 0.
    assert_eq!(wait_child(&mut client, Duration::from_secs(10)), Some(143));
    assert!(
        our_processes(&s).is_empty(),
        "a holder outlived its `lock`: {:?}",
        our_processes(&s)
    );
    blocker.join().unwrap();
    // Longer than one retry cycle (1 s attempt + 0.5 s delay) after the blocker ended: a holder
    // still retrying would hold the lock by now.
    std::thread::sleep(Duration::from_secs(2));
    assert!(our_processes(&s).is_empty());
    assert!(s.write_succeeds(1), "writes must go through");
    s.mq().arg("status").assert().code(3);
    // Nothing left behind, not even a result.
    s.mq().arg("unlock").assert().code(69);
}

#[test]
fn a_lock_killed_outright_while_it_retries_makes_its_holder_give_up_and_say_why() {
    let s = need!(TestServer::start());
    let (mut client, blocker) = lock_mid_retry(&s);
    kill(Pid::from_raw(client.id() as i32), Signal::SIGKILL).unwrap();
    client.wait().unwrap();
    // It gets SIGTERM when its parent dies and stops after the running attempt (1 s).
    wait_for(
        Duration::from_secs(10),
        "the holder kept retrying after its `lock` was killed",
        || our_processes(&s).is_empty(),
    );
    blocker.join().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(our_processes(&s).is_empty());
    assert!(s.write_succeeds(1), "writes must go through");
    s.mq()
        .arg("unlock")
        .assert()
        .code(143)
        .stderr(predicate::str::contains("was gone"));
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
    let pid = holder_pid(&s);
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
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

fn hold_command(s: &TestServer, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(s.args())
        .arg("hold")
        .args(extra)
        .stderr(Stdio::inherit());
    cmd
}

fn spawn_hold(s: &TestServer) -> (Child, String) {
    let mut child = hold_command(s, &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

fn wait_code(mut child: Child) -> Option<i32> {
    wait_child(&mut child, Duration::from_secs(30))
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
fn hold_with_stdin_closed_before_ready_releases_right_after_ready_and_exits_0() {
    let s = need!(TestServer::start());
    // Open when `hold` starts (so it is not refused), closed before READY:
    // the pre hook waits until the test has closed it.
    let closed = s.path("closed");
    let mut child = hold_command(
        &s,
        &[
            "--max-lock-time=60",
            "--pre",
            &format!("while [ ! -e {} ]; do sleep 0.05; done", closed.display()),
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(child.stdin.take());
    std::fs::write(&closed, "").unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("READY "), "{line}");
    // EOF was there all along: released at once, not at --max-lock-time.
    assert_eq!(wait_child(&mut child, Duration::from_secs(10)), Some(0));
    assert!(s.write_succeeds(1));
    assert!(our_processes(&s).is_empty());
}

#[test]
fn hold_whose_reader_is_gone_before_ready_releases_at_once_and_exits_141() {
    let s = need!(TestServer::start());
    let mut child = hold_command(&s, &["--max-lock-time=60"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Whoever started it is gone: nobody will read READY (its stdin stays open).
    drop(child.stdout.take());
    // Released at once; the bug this catches held the lock until --max-lock-time (60 s).
    assert_eq!(wait_child(&mut child, Duration::from_secs(15)), Some(141));
    assert!(s.write_succeeds(1));
}

#[test]
fn hold_releases_on_sigterm_and_exits_0() {
    let s = need!(TestServer::start());
    let (child, _) = spawn_hold(&s);
    assert!(!s.write_succeeds(1));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
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

// ------------------------------------------------------------------ the shipped hooks after `lock`
// (The framework examples in docs/frameworks/ are tested in tests/frameworks.rs.)

#[test]
fn after_the_documented_eval_of_lock_every_shipped_hook_sees_the_variables() {
    let s = server!();
    // Recorders in place of the tools the hooks drive.
    let tools = s.path("tools");
    std::fs::create_dir(&tools).unwrap();
    let log = s.path("tool-args");
    for (tool, output) in [
        ("lvs", "linear"),
        ("lvcreate", ""),
        ("zfs", ""),
        ("gcloud", "UPLOADING"),
        ("ec2-create-snapshot", "SNAPSHOT snap-1 vol-1"),
    ] {
        let p = tools.join(tool);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\necho \"{tool} $*\" >> {}\necho '{output}'\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let hooks = format!("{}/hooks", env!("CARGO_MANIFEST_DIR"));
    let seen = s.path("seen");
    let script = format!(
        r#"set -eu
vars=$({bin} {args} lock) || exit
eval "$vars"
sh -c 'echo "$MYSQL_QUIESCE_BINLOG_FILE:$MYSQL_QUIESCE_BINLOG_POS exact=$MYSQL_QUIESCE_COORDINATES_EXACT phase=$MYSQL_QUIESCE_PHASE run=$MYSQL_QUIESCE_RUN_ID"' > {seen}
export PATH={tools}:$PATH
{hooks}/lvm-snapshot --vg vg0 --lv mysql --size 1G
{hooks}/zfs-snapshot --dataset tank/mysql
{hooks}/gcloud-disk-snapshot --disk d1 --zone z1
{hooks}/ec2-create-snapshot --volume-id vol-1
{bin} {args} unlock
"#,
        bin = BIN,
        args = s.args().join(" "),
        seen = seen.display(),
        tools = tools.display(),
        hooks = hooks,
    );
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let seen = std::fs::read_to_string(&seen).unwrap();
    assert!(seen.starts_with("binlog."), "{seen}");
    assert!(seen.contains(" exact=1 phase=snapshot run="), "{seen}");
    let run_id = seen.trim().rsplit("run=").next().unwrap().to_string();
    assert!(!run_id.is_empty(), "{seen}");
    // No hook complained that nothing is locked, and each named its snapshot
    // after the run that holds the lock.
    assert!(!stderr.contains("not run by mysql-quiesce"), "{stderr}");
    let args = std::fs::read_to_string(&log).unwrap();
    for tool in ["lvcreate", "zfs", "gcloud", "ec2-create-snapshot"] {
        let line = args
            .lines()
            .find(|l| l.starts_with(tool))
            .unwrap_or_else(|| panic!("{tool} was not run:\n{args}\n{stderr}"));
        assert!(
            line.contains(&run_id),
            "{tool} did not get the run id: {line}"
        );
    }
}

#[test]
fn a_lock_whose_stdout_is_not_read_still_obeys_sigterm_and_leaves_nothing_locked() {
    use std::os::fd::AsRawFd;
    let s = need!(TestServer::start());
    // A pipe that is full and never read: a hung terminal, a reader that
    // waits for the exit first.
    let (reader, writer) = nix::unistd::pipe().unwrap();
    let fd = writer.as_raw_fd();
    // SAFETY: fcntl on a pipe we own.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, 4096);
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        while libc::write(fd, [b'x'; 512].as_ptr().cast(), 512) > 0 {}
        libc::fcntl(fd, libc::F_SETFL, flags);
    }
    let mut child = Command::new(BIN)
        .args(s.args())
        .arg("lock")
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Locked, and `lock` is stuck printing the variables: not yet handed out.
    wait_for(Duration::from_secs(10), "the holder locked", || {
        status_json(&s)["phase"] == "handing-out"
    });
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(wait_child(&mut child, Duration::from_secs(10)), Some(143));
    wait_for(Duration::from_secs(10), "the holder released", || {
        status_json(&s)["running"] == false
    });
    assert!(s.write_succeeds(1), "still locked");
    drop(reader);
}

#[test]
fn hold_whose_reader_goes_away_while_holding_releases_at_once_and_exits_141() {
    let s = need!(TestServer::start());
    let mut child = hold_command(&s, &["--max-lock-time=60"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("READY "), "{line}");
    assert!(!s.write_succeeds(1), "not locked after READY");
    // The coprocess exits: its end of our stdout closes (our stdin stays open).
    let gone = Instant::now();
    drop(stdout);
    assert_eq!(wait_child(&mut child, Duration::from_secs(10)), Some(141));
    assert!(
        gone.elapsed() < Duration::from_secs(5),
        "{:?}",
        gone.elapsed()
    );
    assert!(s.write_succeeds(1));
}

#[test]
fn hold_refuses_a_directory_as_stdin() {
    let s = need!(TestServer::start());
    let out = hold_command(&s, &[])
        .stdin(std::fs::File::open("/tmp").unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory"));
}

/// `lock` exits 0 only for a lock that is still held once its variables are
/// out: here nobody reads its stdout until after --max-lock-time, the
/// holder releases (its post hook keeps it alive), and `lock` then must not
/// print its variables and exit 0.
#[test]
fn lock_never_exits_0_for_a_lock_its_holder_already_released() {
    let s = need!(TestServer::start());
    // A pipe already full: `lock`'s stdout blocks until we read it.
    let (r, w) = nix::unistd::pipe().unwrap();
    nix::fcntl::fcntl(
        &w,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let chunk = [b'x'; 4096];
    while nix::unistd::write(&w, &chunk).is_ok() {}
    nix::fcntl::fcntl(
        &w,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )
    .unwrap();
    let lock = std::process::Command::new(BIN)
        .args(s.args())
        .args([
            "lock",
            "--lock=ftwrl",
            "--max-lock-time=3",
            "--post",
            "sleep 5",
        ])
        .stdout(std::process::Stdio::from(w))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(4500));
    let released = s.write_succeeds(1);
    let reader = std::thread::spawn(move || {
        let mut f = std::fs::File::from(r);
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut f, &mut v);
    });
    let out = lock.wait_with_output().unwrap();
    let _ = reader.join();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        released,
        "precondition: the holder released at --max-lock-time"
    );
    assert_eq!(out.status.code(), Some(124), "{stderr}");
    assert!(
        stderr.contains("must not be used for a snapshot"),
        "{stderr}"
    );
    // The holder cannot know `lock` read that: its outcome also waits for
    // an `unlock`, which gets it once.
    s.mq().arg("unlock").assert().code(124);
    s.mq().arg("unlock").assert().code(69);
}

/// A last-result.json nobody can read (truncated by a full disk, say) does
/// not wedge split mode: `lock` refuses with 75 and says to run `unlock`,
/// which sets it aside and exits 65 (it cannot tell the lock was held), and
/// `lock` works again.
#[test]
fn an_unreadable_result_is_set_aside_by_unlock_and_does_not_wedge_lock() {
    let s = need!(TestServer::start());
    s.mq().arg("lock").assert().success();
    s.mq().arg("unlock").assert().success();
    let result = s.path("state").join("last-result.json");
    std::fs::write(&result, "{\"ok\": tru").unwrap();
    std::fs::set_permissions(&result, std::fs::Permissions::from_mode(0o600)).unwrap();
    s.mq().arg("lock").assert().code(75).stderr(
        predicate::str::contains("unreadable")
            .and(predicate::str::contains("mysql-quiesce unlock")),
    );
    assert!(s.write_succeeds(1), "nothing may be locked");
    s.mq().arg("unlock").assert().code(65).stderr(
        predicate::str::contains("CONSISTENCY NOT GUARANTEED")
            .and(predicate::str::contains("moved to")),
    );
    assert!(!result.exists());
    s.mq().arg("lock").assert().success();
    s.mq().arg("unlock").assert().success();
}
