//! Never leave a filesystem frozen or a database locked: a matrix of faults x
//! phases on loop-mounted xfs and ext4 filesystems the tests create (the only
//! filesystems they ever freeze). Each case checks: the filesystem is
//! writable afterwards, a write from another session goes through, the exit
//! status, and what the report says.
//!
//! Runs in the background are `Running` guards: if a test fails, the run is
//! SIGKILLed on the way out and its guardian thaws; `LoopFs` thaws as well.

mod common;

use common::loopfs::{BindMount, FsKind, LoopFs};
use common::process::{guardian_for, guardian_of, proc_stat, unique, wait_for, Running, BIN};
use common::server::TestServer;
use mysql_quiesce::freeze;
use nix::sys::signal::{kill, killpg, Signal};
use predicates::prelude::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report written"))
        .expect("valid json")
}

/// (exit_code, consistent) from a report.
fn outcome(r: &serde_json::Value) -> (Option<u64>, Option<bool>) {
    (r["exit_code"].as_u64(), r["consistent"].as_bool())
}

/// A path in the server's directory that no earlier iteration left behind.
fn fresh(s: &TestServer, name: &str) -> PathBuf {
    let p = s.path(name);
    let _ = std::fs::remove_file(&p);
    p
}

fn arg(flag: &str, path: &Path) -> String {
    format!("--{flag}={}", path.display())
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

/// A run freezing `fss` whose snapshot hook first touches a marker (in a
/// directory that is not frozen) and then runs `then`.
fn snapshot_run(s: &TestServer, fss: &[&LoopFs], extra: &[&str], then: &str) -> (Running, PathBuf) {
    let marker = s.path(&format!("snapshot-started-{}", unique()));
    let mut args: Vec<String> = fss.iter().map(|f| f.arg()).collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push("--snapshot".into());
    args.push(format!("touch {} && {then}", marker.display()));
    (Running::start(s, &args), marker)
}

#[test]
fn the_filesystem_is_frozen_during_the_snapshot_and_thawed_after_on_xfs_and_ext4() {
    let s = need!(TestServer::start());
    for kind in [FsKind::Xfs, FsKind::Ext4] {
        let fs = need!(LoopFs::new(kind));
        let report = fresh(&s, "report.json");
        let (mut run, started) = snapshot_run(&s, &[&fs], &[&arg("report", &report)], "sleep 2");
        wait_for(&started, &run);
        assert!(
            !fs.probe_writable(Duration::from_millis(500)),
            "{kind:?}: writes went through during the snapshot"
        );
        assert!(
            !s.write_succeeds(1),
            "{kind:?}: the database was not locked during the snapshot"
        );
        assert_eq!(run.wait(), Some(0), "{}", run.stderr());
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
                "verify",
                "unlock"
            ]
        );
    }
}

#[test]
fn two_filesystems_are_frozen_in_the_order_given_and_thawed_in_reverse() {
    let s = need!(TestServer::start());
    let xfs = need!(LoopFs::new(FsKind::Xfs));
    let ext4 = need!(LoopFs::new(FsKind::Ext4));
    let report = fresh(&s, "report.json");
    let (mut run, started) =
        snapshot_run(&s, &[&xfs, &ext4], &[&arg("report", &report)], "sleep 2");
    wait_for(&started, &run);
    for fs in [&xfs, &ext4] {
        assert!(
            !fs.probe_writable(Duration::from_millis(300)),
            "{} was not frozen during the snapshot",
            fs.mountpoint().display()
        );
    }
    assert_eq!(run.wait(), Some(0), "{}", run.stderr());
    released(&xfs, &s);
    released(&ext4, &s);
    let (x, e) = (xfs.mountpoint().display(), ext4.mountpoint().display());
    let stderr = run.stderr();
    assert!(stderr.contains(&format!("froze {x}, {e} in")), "{stderr}");
    assert!(stderr.contains(&format!("thawed {e}, {x} in")), "{stderr}");
    // The report lists the thaws in the order they happened.
    let r = json(&report);
    let thawed: Vec<&str> = r["frozen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["mountpoint"].as_str().unwrap())
        .collect();
    assert_eq!(thawed, [e.to_string(), x.to_string()]);
}

#[test]
fn a_failing_hook_in_any_locked_phase_still_thaws_runs_post_and_unlocks() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Ext4));
    for phase in ["pre", "snapshot", "post"] {
        let log = fresh(&s, &format!("log-{phase}"));
        let report = fresh(&s, &format!("report-{phase}.json"));
        let mut cmd = s.mq();
        cmd.arg(fs.arg()).arg(arg("report", &report));
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
        assert_eq!(outcome(&json(&report)), (Some(5), Some(false)), "{phase}");
    }
}

#[test]
fn a_hook_hanging_past_its_timeout_and_the_max_lock_time_both_end_in_124_with_everything_released()
{
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Xfs));
    for limit in ["--hook-timeout=0.5", "--max-lock-time=1"] {
        let report = fresh(&s, "report.json");
        let started = Instant::now();
        s.mq()
            .arg(fs.arg())
            .arg(limit)
            .arg(arg("report", &report))
            .args(["--snapshot", "sleep 60"])
            .assert()
            .code(124);
        // Generous: the limits are 0.5 and 1 s, the hook sleeps 60 s.
        assert!(started.elapsed() < Duration::from_secs(30), "{limit}");
        released(&fs, &s);
        assert_eq!(outcome(&json(&report)), (Some(124), Some(false)), "{limit}");
    }
}

#[test]
fn termination_signals_to_the_process_group_release_everything_and_exit_128_plus_n() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Ext4));
    for (signal, code) in [
        (Signal::SIGTERM, 143),
        (Signal::SIGINT, 130),
        (Signal::SIGHUP, 129),
        (Signal::SIGQUIT, 131),
    ] {
        let log = fresh(&s, "post-ran");
        let report = fresh(&s, "report.json");
        let post = format!("echo $MYSQL_QUIESCE_STATUS > {}", log.display());
        let (mut run, started) = snapshot_run(
            &s,
            &[&fs],
            &["--post", &post, &arg("report", &report)],
            "sleep 60",
        );
        wait_for(&started, &run);
        let t = Instant::now();
        // As a terminal or a service manager sends it: to the whole group.
        killpg(run.pid(), signal).unwrap();
        assert_eq!(run.wait(), Some(code), "{signal:?}: {}", run.stderr());
        // Generous: the hook is stopped at once, then thaw, post and unlock.
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
        assert_eq!(
            outcome(&json(&report)),
            (Some(code as u64), Some(false)),
            "{signal:?}"
        );
    }
}

#[test]
fn a_signal_during_the_pre_or_post_hooks_still_releases_everything() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Ext4));
    for phase in ["pre", "post"] {
        let marker = fresh(&s, &format!("{phase}-started"));
        let log = fresh(&s, &format!("log-{phase}"));
        let report = fresh(&s, &format!("report-{phase}.json"));
        let note = |what: &str| format!("echo {what} >> {}", log.display());
        let mut args = vec![
            fs.arg(),
            arg("report", &report),
            format!("--{phase}"),
            format!("touch {} && sleep 60", marker.display()),
            "--snapshot".into(),
            note("snapshot"),
            "--after".into(),
            note("after=$MYSQL_QUIESCE_STATUS"),
        ];
        if phase == "pre" {
            args.extend(["--post".into(), note("post=$MYSQL_QUIESCE_STATUS")]);
        }
        let mut run = Running::start(&s, &args);
        wait_for(&marker, &run);
        // pre runs before the freeze, post after the thaw.
        assert!(
            fs.probe_writable(Duration::from_secs(2)),
            "{phase}: frozen while the {phase} hook runs"
        );
        killpg(run.pid(), Signal::SIGTERM).unwrap();
        assert_eq!(run.wait(), Some(143), "{phase}: {}", run.stderr());
        released(&fs, &s);
        let expected = if phase == "pre" {
            "post=failed\nafter=failed\n"
        } else {
            "snapshot\nafter=failed\n"
        };
        assert_eq!(std::fs::read_to_string(&log).unwrap(), expected, "{phase}");
        let r = json(&report);
        assert_eq!(outcome(&r), (Some(143), Some(false)), "{phase}");
        let frozen = r["frozen"].as_array().unwrap().len();
        assert_eq!(frozen, if phase == "pre" { 0 } else { 1 }, "{phase}");
    }
}

#[test]
fn sigkill_during_the_snapshot_leaves_the_guardian_to_thaw_within_a_second() {
    let s = need!(TestServer::start());
    for kind in [FsKind::Xfs, FsKind::Ext4] {
        let fs = need!(LoopFs::new(kind));
        let (mut run, started) = snapshot_run(&s, &[&fs], &[], "sleep 60");
        wait_for(&started, &run);
        assert!(
            !fs.probe_writable(Duration::from_millis(300)),
            "{kind:?}: not frozen"
        );
        kill(run.pid(), Signal::SIGKILL).unwrap();
        assert_eq!(run.wait(), None);
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
fn the_guardian_is_outside_the_runs_process_group_and_ignores_termination_signals() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Ext4));
    let (mut run, started) = snapshot_run(&s, &[&fs], &[], "sleep 60");
    wait_for(&started, &run);
    let guardian = guardian_of(run.pid()).expect("the run has a guardian");
    assert_ne!(
        nix::unistd::getpgid(Some(guardian)).unwrap(),
        run.pid(),
        "the guardian is in the run's process group"
    );
    // Stopped, the run cannot act on signals: only the guardian can thaw.
    kill(run.pid(), Signal::SIGSTOP).unwrap();
    for sig in [Signal::SIGTERM, Signal::SIGHUP] {
        killpg(run.pid(), sig).unwrap();
    }
    for sig in [
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGPIPE,
    ] {
        kill(guardian, sig).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        proc_stat(guardian.as_raw()).is_some_and(|(state, _)| state != 'Z'),
        "the guardian died of a signal"
    );
    assert!(
        !fs.probe_writable(Duration::from_millis(300)),
        "thawed on a signal while the run still holds it"
    );
    kill(run.pid(), Signal::SIGKILL).unwrap();
    assert_eq!(run.wait(), None);
    let took = fs.writable_within(Duration::from_secs(5));
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(1)),
        "writable again after {took:?} (must be < 1 s)"
    );
    assert!(s.write_succeeds(5));
}

#[test]
fn a_stalled_run_is_thawed_by_its_guardian_at_the_deadline_and_then_fails_with_124() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Ext4));
    // With a database lock, and without one (nothing to connect: the
    // guardian must still be up and told the deadline).
    for lock in ["--lock=auto", "--lock=none"] {
        stalled_run_is_thawed_by_its_guardian(&s, &fs, lock);
    }
}

fn stalled_run_is_thawed_by_its_guardian(s: &TestServer, fs: &LoopFs, lock: &str) {
    let report = fresh(s, "report.json");
    // The snapshot hook succeeds, but stops mysql-quiesce on its way out:
    // when it is continued, everything it did itself went right.
    let (mut run, started) = snapshot_run(
        s,
        &[fs],
        &[lock, "--max-lock-time=2", &arg("report", &report)],
        "kill -STOP $PPID",
    );
    wait_for(&started, &run);
    assert!(
        !fs.probe_writable(Duration::from_millis(300)),
        "thawed before --max-lock-time"
    );
    // Generous: the deadline is 2 s after the lock, the hook started after it.
    assert!(
        fs.writable_within(Duration::from_secs(6)).is_some(),
        "the guardian did not thaw at --max-lock-time"
    );
    assert_eq!(
        proc_stat(run.pid().as_raw()).map(|(state, _)| state),
        Some('T'),
        "the run was not stopped, so the guardian was not the one that thawed"
    );
    kill(run.pid(), Signal::SIGCONT).unwrap();
    assert_eq!(run.wait(), Some(124), "{lock}: {}", run.stderr());
    let r = json(&report);
    assert_eq!(outcome(&r), (Some(124), Some(false)), "{lock}");
    assert!(
        r["error"].as_str().unwrap().contains("guardian thawed"),
        "{lock}: {}",
        r["error"]
    );
    assert!(s.write_succeeds(2), "{lock}");
}

/// A guardian run directly, for two filesystems the test freezes itself.
struct DirectGuardian {
    child: Child,
}

impl Drop for DirectGuardian {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_guardian_thaws_everything_before_it_logs_even_to_a_closed_or_full_stderr() {
    use std::os::fd::AsRawFd;
    let a = need!(LoopFs::new(FsKind::Ext4));
    let b = need!(LoopFs::new(FsKind::Ext4));
    for stderr_state in ["closed", "full"] {
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let _kept_unread = if stderr_state == "closed" {
            drop(reader);
            None
        } else {
            // Fill the pipe (non-blocking), then make it blocking again, as
            // a stderr nobody reads any more would be.
            let fd = writer.as_raw_fd();
            // SAFETY: fcntl on a pipe we own.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) };
            let mut w = std::fs::File::from(writer.try_clone().unwrap());
            while w.write(&[b'x'; 4096]).is_ok_and(|n| n > 0) {}
            unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
            Some(reader)
        };
        let mut guardian = DirectGuardian {
            child: Command::new(BIN)
                .arg("__guardian")
                .arg(a.mountpoint())
                .arg(b.mountpoint())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(writer))
                .spawn()
                .unwrap(),
        };
        let mut pipe = guardian.child.stdin.take().unwrap();
        pipe.write_all(b"open\ndeadline 60000\n").unwrap();
        let mut ready = String::new();
        BufReader::new(guardian.child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready, "ready\n", "{stderr_state}");
        a.freeze();
        b.freeze();
        pipe.write_all(b"freezing 0\nfreezing 1\n").unwrap();
        // As if mysql-quiesce died: end of file.
        drop(pipe);
        for fs in [&a, &b] {
            assert!(
                fs.writable_within(Duration::from_secs(1)).is_some(),
                "stderr {stderr_state}: {} left frozen",
                fs.mountpoint().display()
            );
        }
    }
}

/// Drops CAP_SYS_ADMIN from the calling thread's effective set (capabilities
/// are per thread, so other tests are not affected) until dropped.
struct WithoutCapSysAdmin {
    saved: [CapData; 2],
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const CAP_SYS_ADMIN: u32 = 21;

impl WithoutCapSysAdmin {
    fn new() -> WithoutCapSysAdmin {
        let mut saved = [CapData::default(); 2];
        let mut header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        // SAFETY: capget fills two CapData structs for version 3.
        let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, saved.as_mut_ptr()) };
        assert_eq!(rc, 0, "capget");
        let mut reduced = saved;
        reduced[0].effective &= !(1 << CAP_SYS_ADMIN);
        Self::set(&reduced);
        WithoutCapSysAdmin { saved }
    }

    fn set(data: &[CapData; 2]) {
        let mut header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        // SAFETY: capset reads two CapData structs for version 3.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
        assert_eq!(rc, 0, "capset");
    }
}

impl Drop for WithoutCapSysAdmin {
    fn drop(&mut self) {
        Self::set(&self.saved);
    }
}

#[test]
fn a_thaw_that_fails_leaves_the_guardian_to_thaw_at_its_deadline() {
    let fs = need!(LoopFs::new(FsKind::Ext4));
    let targets = freeze::validate(&[fs.mountpoint().to_path_buf()], &[], false).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut guardian = mysql_quiesce::guardian::Guardian::start(
        Path::new(BIN),
        &[(targets[0].mountpoint.clone(), targets[0].dir)],
    )
    .unwrap();
    guardian.set_deadline(Duration::from_secs(2));
    guardian.ensure_alive().unwrap();
    let set = freeze::freeze_all(&targets, deadline, guardian.link()).unwrap();
    assert!(!fs.probe_writable(Duration::from_millis(200)), "not frozen");
    {
        // FITHAW fails with EPERM: the panic path (Drop) cannot thaw.
        let _no_admin = WithoutCapSysAdmin::new();
        drop(set);
    }
    // As a run does when something could not be thawed: the guardian stays.
    guardian.abandon();
    // The guardian thaws whatever is marked frozen when told "done": still
    // frozen means it was not dismissed (and the fault was injected).
    assert!(
        !fs.probe_writable(Duration::from_millis(300)),
        "thawed at once: the guardian was dismissed, or the thaw did not fail"
    );
    assert!(
        guardian_for(fs.mountpoint()).is_some(),
        "the guardian was dismissed although the thaw failed"
    );
    assert!(
        fs.writable_within(Duration::from_secs(5)).is_some(),
        "the guardian did not thaw at its deadline"
    );
    // Its pipe from this (test) process stays open: it would hold the mount
    // point busy until the test binary exits.
    if let Some(g) = guardian_for(fs.mountpoint()) {
        kill(g, Signal::SIGKILL).unwrap();
    }
}

#[test]
fn killing_the_locking_connection_while_frozen_exits_65_and_thaws() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Ext4));
    let report = fresh(&s, "report.json");
    let log = fresh(&s, "post-status");
    let kill_it = format!("{} -e \"KILL $MYSQL_QUIESCE_CONNECTION_ID\"", s.client());
    s.mq()
        .arg(fs.arg())
        .arg(arg("report", &report))
        .args(["--snapshot", &kill_it])
        .args([
            "--post",
            &format!("echo $MYSQL_QUIESCE_STATUS > {}", log.display()),
        ])
        .assert()
        .code(65)
        .stderr(predicate::str::contains("CONSISTENCY NOT GUARANTEED"));
    released(&fs, &s);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "failed\n");
    let r = json(&report);
    assert_eq!(outcome(&r), (Some(65), Some(false)));
    assert_eq!(r["lock"]["verified"], false);
}

#[test]
fn server_shut_down_mid_run_exits_65_and_thaws() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Xfs));
    let report = fresh(&s, "report.json");
    let shutdown = format!("{} -e SHUTDOWN; sleep 1", s.client());
    s.mq()
        .arg(fs.arg())
        .arg(arg("report", &report))
        .args(["--snapshot", &shutdown])
        .assert()
        .code(65)
        .stderr(predicate::str::contains("CONSISTENCY NOT GUARANTEED"));
    assert!(fs.writable_within(Duration::from_secs(5)).is_some());
    let r = json(&report);
    assert_eq!(outcome(&r), (Some(65), Some(false)));
    assert_eq!(r["lock"]["verified"], false);
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

/// mysql-quiesce aimed at no server: whatever passes preflight fails with 69
/// when it connects, before any lock or freeze.
fn unconnected(lock_dir: &Path) -> assert_cmd::Command {
    let mut c = common::mysql_quiesce();
    c.args([
        "--no-defaults",
        "--socket=/nonexistent/sock",
        &arg("lock-file", &lock_dir.join("l")),
    ]);
    c
}

#[test]
fn bad_freeze_targets_are_refused_before_connecting() {
    let fs = need!(LoopFs::new(FsKind::Ext4));
    let dir = tempfile::tempdir().unwrap();
    let base = || unconnected(dir.path());
    let sub = fs.mountpoint().join("sub");
    std::fs::create_dir(&sub).unwrap();
    base()
        .arg(arg("freeze", &sub))
        .assert()
        .code(78)
        .stderr(predicate::str::contains("not a mount point"));
    for force in [&[][..], &["--force-freeze"][..]] {
        base()
            .arg("--freeze=/")
            .args(force)
            .assert()
            .code(78)
            .stderr(predicate::str::contains(
                "refusing to freeze the root filesystem",
            ));
    }
    base()
        .arg("--freeze=/nonexistent/x")
        .assert()
        .code(78)
        .stderr(predicate::str::contains("/nonexistent/x"));
    // Files written before the freeze or after the thaw: refused, but
    // --force-freeze overrides (the run then gets as far as connecting).
    let report = fs.mountpoint().join("r.json");
    base()
        .arg(fs.arg())
        .arg(arg("report", &report))
        .assert()
        .code(78)
        .stderr(predicate::str::contains(
            "never touches a frozen filesystem",
        ));
    base()
        .arg(fs.arg())
        .arg(arg("report", &report))
        .arg("--force-freeze")
        .assert()
        .code(69);
    base()
        .arg(fs.arg())
        .current_dir(fs.mountpoint())
        .assert()
        .code(78)
        .stderr(predicate::str::contains("current directory"));
    base()
        .arg(fs.arg())
        .arg("--force-freeze")
        .current_dir(fs.mountpoint())
        .assert()
        .code(69);
    // Progress lines are written while frozen: stdout or stderr redirected
    // to the filesystem is refused, --force-freeze or not.
    for (fd, name) in [(1, "stdout"), (2, "stderr")] {
        let file = fs.mountpoint().join(format!("{name}.log"));
        let mut cmd = Command::new(BIN);
        cmd.args(["--no-defaults", "--socket=/nonexistent/sock"])
            .arg(arg("lock-file", &dir.path().join("l")))
            .arg(fs.arg())
            .arg("--force-freeze")
            .stdin(Stdio::null());
        let out = std::fs::File::create(&file).unwrap();
        if fd == 1 {
            cmd.stdout(out).stderr(Stdio::piped());
        } else {
            cmd.stdout(Stdio::null()).stderr(out);
        }
        let result = cmd.output().unwrap();
        let message = if fd == 1 {
            String::from_utf8_lossy(&result.stderr).into_owned()
        } else {
            std::fs::read_to_string(&file).unwrap()
        };
        assert_eq!(result.status.code(), Some(78), "{name}: {message}");
        assert!(
            message.contains("where our stdout/stderr goes"),
            "{name}: {message}"
        );
    }
    let tool = fs.mountpoint().join("snap-tool");
    std::fs::write(&tool, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    base()
        .arg(fs.arg())
        .arg("--force-freeze")
        .args(["--", tool.to_str().unwrap()])
        .assert()
        .code(78)
        .stderr(predicate::str::contains("the program"));
    // A hook's program, by its first word, the same.
    base()
        .arg(fs.arg())
        .arg("--force-freeze")
        .args(["--snapshot", &format!("{} --now", tool.display())])
        .assert()
        .code(78)
        .stderr(predicate::str::contains("the program"));
    // The coordinates and metrics files, like the report: refused unless forced.
    for option in ["coordinates-file", "metrics-file"] {
        base()
            .arg(fs.arg())
            .arg(arg(option, &fs.mountpoint().join("out")))
            .assert()
            .code(78)
            .stderr(predicate::str::contains("the output file"));
    }
    // `lock`'s holder writes its log in the state directory while frozen:
    // never overridable.
    base()
        .arg(arg("state-dir", &fs.mountpoint().join("state")))
        .args(["lock", &fs.arg(), "--force-freeze"])
        .assert()
        .code(78)
        .stderr(predicate::str::contains("the lock holder's log"));
    assert!(fs.probe_writable(Duration::from_secs(5)));
}

#[test]
fn a_hook_that_ignores_sigterm_gets_sigkill_two_seconds_later() {
    let s = need!(TestServer::start());
    let pidfile = fresh(&s, "hook-pid");
    let started = Instant::now();
    s.mq()
        .args([
            "--hook-timeout=0.5",
            "--snapshot",
            &format!(
                "trap '' TERM; echo $$ > {}; while :; do sleep 0.1; done",
                pidfile.display()
            ),
        ])
        .assert()
        .code(124);
    let took = started.elapsed();
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        proc_stat(pid).is_none_or(|(state, _)| state == 'Z'),
        "the hook that ignored SIGTERM is still alive"
    );
    // Its timeout, then the 2 s grace after SIGTERM: not killed at once, not left running.
    assert!(
        took >= Duration::from_millis(2400),
        "SIGKILL came before the grace: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(s.write_succeeds(1));
}

#[test]
fn a_hook_stuck_writing_to_the_frozen_filesystem_does_not_keep_it_frozen() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Ext4));
    let report = fresh(&s, "report.json");
    let started = Instant::now();
    // The hook blocks in the kernel on the frozen filesystem: SIGTERM and
    // SIGKILL cannot end it before the thaw, so the run must thaw first.
    s.mq()
        .arg(fs.arg())
        .arg(arg("report", &report))
        .args([
            "--hook-timeout=0.5",
            "--snapshot",
            &format!("echo x > {}/stuck", fs.mountpoint().display()),
        ])
        .timeout(Duration::from_secs(30))
        .assert()
        .code(124);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    released(&fs, &s);
    assert_eq!(outcome(&json(&report)), (Some(124), Some(false)));
    // SIGTERM (Ctrl-C, a framework's timeout) while such a hook runs: the same,
    // at once, not at --max-lock-time.
    let stuck = fs.mountpoint().join("stuck-too");
    let (mut run, marker) = snapshot_run(
        &s,
        &[&fs],
        &["--max-lock-time=60"],
        &format!("echo x > {}", stuck.display()),
    );
    wait_for(&marker, &run);
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    kill(run.pid(), Signal::SIGTERM).unwrap();
    assert_eq!(run.wait(), Some(143), "{}", run.stderr());
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "SIGTERM took {:?} to release",
        signalled.elapsed()
    );
    released(&fs, &s);
}

#[test]
fn with_force_freeze_the_output_files_on_the_frozen_filesystem_are_written_outside_the_freeze() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Ext4));
    let out = |name: &str| fs.mountpoint().join(name);
    // Written while frozen, any of them would hang the run (the bounded
    // timeout fails the test); written before the freeze or after the thaw,
    // the run ends and they hold what it did.
    s.mq()
        .arg(fs.arg())
        .arg("--force-freeze")
        .arg(arg("report", &out("report.json")))
        .arg(arg("coordinates-file", &out("coordinates.json")))
        .arg(arg("metrics-file", &out("metrics.prom")))
        .args(["--snapshot", "true"])
        .timeout(Duration::from_secs(30))
        .assert()
        .success();
    assert_eq!(outcome(&json(&out("report.json"))), (Some(0), Some(true)));
    assert!(json(&out("coordinates.json"))["binlog_file"].is_string());
    assert!(std::fs::read_to_string(out("metrics.prom"))
        .unwrap()
        .contains("mysql_quiesce_last_run_success 1"));
    released(&fs, &s);
}

#[test]
fn a_filesystem_someone_else_thawed_during_the_snapshot_counts_as_thawed() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Ext4));
    let report = fresh(&s, "report.json");
    // FITHAW on a filesystem that is not frozen fails with EINVAL: that is
    // "thawed", not an error.
    s.mq()
        .arg(fs.arg())
        .arg(arg("report", &report))
        .args([
            "--snapshot",
            &format!("fsfreeze -u {}", fs.mountpoint().display()),
        ])
        .assert()
        .success();
    let r = json(&report);
    assert_eq!(outcome(&r), (Some(0), Some(true)));
    assert_eq!(r["frozen"][0]["thaw_error"], serde_json::Value::Null);
    released(&fs, &s);
}

/// strace(1), which the next tests use to watch (and fault) the real ioctls.
fn strace() -> Option<PathBuf> {
    which::which("strace").ok().or_else(|| {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and strace is not installed (scripts/install-deps.sh)"
        );
        eprintln!("SKIPPED: strace is not installed");
        None
    })
}

/// The FIFREEZE/FITHAW calls of a traced run, in order: (request, path).
fn freeze_ioctls(trace: &str) -> Vec<(String, String)> {
    trace
        .lines()
        .filter_map(|l| {
            let call = &l[l.find("ioctl(")? + 6..];
            let request = ["FIFREEZE", "FITHAW"]
                .into_iter()
                .find(|r| call.contains(r))?;
            let path = call.split_once('<')?.1.split_once('>')?.0;
            Some((request.to_string(), path.to_string()))
        })
        .collect()
}

#[test]
fn the_kernel_sees_freezes_in_the_order_given_and_thaws_in_reverse() {
    let Some(strace) = strace() else { return };
    let s = need!(TestServer::start());
    let a = need!(LoopFs::new(FsKind::Xfs));
    let b = need!(LoopFs::new(FsKind::Ext4));
    let trace = fresh(&s, "trace");
    let out = Command::new(strace)
        .args(["-f", "-y", "-e", "trace=ioctl", "-o"])
        .arg(&trace)
        .arg(BIN)
        .args(s.args())
        .args([a.arg(), b.arg()])
        .args(["--snapshot", "true"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = freeze_ioctls(&std::fs::read_to_string(&trace).unwrap());
    let (pa, pb) = (
        a.mountpoint().display().to_string(),
        b.mountpoint().display().to_string(),
    );
    assert_eq!(
        calls,
        [
            ("FIFREEZE".to_string(), pa.clone()),
            ("FIFREEZE".to_string(), pb.clone()),
            ("FITHAW".to_string(), pb),
            ("FITHAW".to_string(), pa),
        ],
        "the ioctls the kernel saw"
    );
    released(&a, &s);
    released(&b, &s);
}

#[test]
fn a_thaw_that_fails_on_the_normal_path_is_reported_and_left_to_the_guardian() {
    let Some(strace) = strace() else { return };
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Ext4));
    let report = fresh(&s, "report.json");
    let trace = fresh(&s, "trace");
    // FITHAW fails with EPERM (injected; the call is not made): the
    // filesystem stays frozen, the run must say so, and the guardian, left
    // running, thaws it when the run exits.
    let out = Command::new(strace)
        .args([
            "-f",
            "-e",
            "trace=ioctl",
            "-e",
            "inject=ioctl:error=EPERM:when=2",
            "-o",
        ])
        .arg(&trace)
        .arg(BIN)
        .args(s.args())
        .arg(fs.arg())
        .arg(arg("report", &report))
        .args(["--snapshot", "true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{stderr}");
    assert!(
        stderr.contains(&format!("could not thaw {}", fs.mountpoint().display()))
            && stderr.contains("fsfreeze -u"),
        "{stderr}"
    );
    let r = json(&report);
    assert_eq!(outcome(&r), (Some(70), Some(false)));
    assert!(r["frozen"][0]["thaw_error"].is_string(), "{r:#}");
    assert!(
        fs.writable_within(Duration::from_secs(5)).is_some(),
        "the guardian did not thaw after the run exited"
    );
    assert!(s.write_succeeds(1));
}

#[test]
fn one_filesystem_under_two_paths_is_recognised_by_identity_and_a_bind_mount_of_root_is_refused() {
    let fs = need!(LoopFs::new(FsKind::Ext4));
    let dir = tempfile::tempdir().unwrap();
    // --dry-run everywhere: it validates exactly as a run does and never
    // freezes, so a broken check fails these asserts instead of freezing `/`.
    let base = || {
        let mut c = unconnected(dir.path());
        c.arg("--dry-run");
        c
    };
    let bind = BindMount::new(fs.mountpoint());
    base()
        .arg(fs.arg())
        .arg(arg("freeze", bind.path()))
        .assert()
        .code(78)
        .stderr(predicate::str::contains("is the same filesystem"));
    base()
        .arg(arg("freeze", bind.path()))
        .arg(arg("report", &fs.mountpoint().join("r.json")))
        .assert()
        .code(78)
        .stderr(predicate::str::contains(
            "never touches a frozen filesystem",
        ));
    let root = BindMount::new(Path::new("/"));
    for force in [&[][..], &["--force-freeze"][..]] {
        base()
            .arg(arg("freeze", root.path()))
            .args(force)
            .assert()
            .code(78)
            .stdout(predicate::str::is_empty())
            .stderr(predicate::str::contains(
                "refusing to freeze the root filesystem",
            ));
    }
}

#[test]
fn a_filesystem_unmounted_after_the_check_is_not_frozen_in_its_place() {
    let s = need!(TestServer::start());
    // The path to freeze is a mount point on another test filesystem, so
    // that if the check failed, what got frozen in its place is ours too.
    let outer = need!(LoopFs::new(FsKind::Ext4));
    let inner = need!(LoopFs::new_inside(FsKind::Ext4, &outer));
    s.mq()
        .arg(inner.arg())
        .args(["--pre", &format!("umount {}", inner.mountpoint().display())])
        .args(["--snapshot", "exit 0"])
        .assert()
        .code(78)
        .stderr(predicate::str::contains(
            "no longer the filesystem that was checked",
        ));
    assert!(!inner.is_mounted(), "the pre hook did not unmount it");
    released(&outer, &s);
}

#[test]
fn a_second_concurrent_run_exits_75_naming_the_first() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Ext4));
    let (mut first, started) = snapshot_run(&s, &[&fs], &[], "sleep 3");
    wait_for(&started, &first);
    s.mq()
        .args(["--snapshot", "exit 9"])
        .assert()
        .code(75)
        .stderr(predicate::str::contains(format!("pid {}", first.pid())));
    assert_eq!(first.wait(), Some(0), "{}", first.stderr());
    released(&fs, &s);
}

#[test]
fn dry_run_and_check_never_freeze() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Ext4));
    // Frozen by "someone else": a freeze attempt would fail with EBUSY, and a
    // thaw would show as the filesystem becoming writable.
    fs.freeze();
    s.mq()
        .arg(fs.arg())
        .arg("--dry-run")
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "freeze: {}",
            fs.mountpoint().display()
        )));
    s.mq()
        .arg(fs.arg())
        .arg("--check")
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "check passed: nothing was locked or frozen",
        ))
        .stderr(predicate::str::contains("frozen by someone else").not());
    assert!(
        !fs.probe_writable(Duration::from_millis(300)),
        "--dry-run or --check thawed the filesystem"
    );
    fs.thaw();
    assert!(fs.writable_within(Duration::from_secs(5)).is_some());
}

#[test]
fn dry_run_needs_no_root_and_check_says_what_root_is_needed_for() {
    let fs = need!(LoopFs::new(FsKind::Ext4));
    // An unprivileged user must reach the mount point and the binary.
    let parent = fs.mountpoint().parent().unwrap();
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let bin = dir.path().join("mysql-quiesce");
    if std::fs::hard_link(BIN, &bin).is_err() {
        std::fs::copy(BIN, &bin).unwrap();
    }
    let nobody = |extra: &str| {
        Command::new(&bin)
            .args(["--no-defaults", "--lock=none"])
            .arg(arg("lock-file", &dir.path().join("l")))
            .arg(fs.arg())
            .arg(extra)
            .current_dir(dir.path())
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    let dry = nobody("--dry-run");
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        stdout.contains(&format!("freeze: {}", fs.mountpoint().display())),
        "{stdout}"
    );
    let check = nobody("--check");
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(77), "{stderr}");
    assert!(
        stderr.contains("--freeze needs root") && stderr.contains("CAP_SYS_ADMIN"),
        "{stderr}"
    );
}
