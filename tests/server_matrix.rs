//! The same contract against MySQL 9.x and MariaDB 11.x from Debian sid.
//! scripts/test.sh starts each matrix server (scripts/server-matrix.sh) and
//! runs this file with MYSQL_QUIESCE_MATRIX_{FLAVOR,HOST,PORT} set. It is not
//! part of a plain `cargo test` (`test = false` in Cargo.toml); run without
//! those variables it skips, except under CI=true, where that is a failure.

mod common;

use common::load::Writer;
use common::loopfs::{FsKind, ImageMount, LoopFs};
use common::server::TestServer;
use common::snapshot::{assert_nothing_left, assert_same_digest, digest};
use mysql::prelude::Queryable;
use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct Matrix {
    flavor: String,
    port: u16,
    dir: tempfile::TempDir,
    /// The tests share one server and each locks all of it: one at a time.
    _serial: MutexGuard<'static, ()>,
}

static SERIAL: Mutex<()> = Mutex::new(());

fn matrix() -> Option<Matrix> {
    let flavor = std::env::var("MYSQL_QUIESCE_MATRIX_FLAVOR").ok()?;
    let port = std::env::var("MYSQL_QUIESCE_MATRIX_PORT")
        .ok()?
        .parse()
        .ok()?;
    Some(Matrix {
        flavor,
        port,
        dir: tempfile::tempdir().unwrap(),
        // A failed test must not fail the others: ignore poisoning.
        _serial: SERIAL.lock().unwrap_or_else(|e| e.into_inner()),
    })
}

macro_rules! matrix {
    () => {
        match matrix() {
            Some(m) => m,
            None => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI=true and MYSQL_QUIESCE_MATRIX_* are not set: the server matrix must run \
                     (scripts/test.sh starts its servers and sets them)"
                );
                eprintln!(
                    "SKIPPED: not a matrix run (scripts/test.sh sets MYSQL_QUIESCE_MATRIX_*)"
                );
                return;
            }
        }
    };
}

impl Matrix {
    fn opts(&self) -> mysql::Opts {
        mysql::OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(self.port)
            .user(Some("root"))
            .prefer_socket(false)
            .into()
    }

    fn conn(&self) -> mysql::Conn {
        mysql::Conn::new(self.opts()).expect("connect to the matrix server")
    }

    fn mq(&self) -> assert_cmd::Command {
        let mut cmd = common::mysql_quiesce();
        cmd.args(["--no-defaults", "-h127.0.0.1", "-uroot"])
            .arg(format!("-P{}", self.port))
            .arg(format!(
                "--lock-file={}",
                self.dir.path().join("l").display()
            ));
        cmd
    }

    fn is_mysql(&self) -> bool {
        self.flavor == "mysql"
    }

    /// A fresh schema for one test (the server is shared by the tests of a run).
    fn schema(&self, name: &str) -> String {
        let db = format!("m_{name}");
        self.conn()
            .query_drop(format!(
                "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}; CREATE TABLE {db}.t (i INT) ENGINE=InnoDB; \
                 INSERT INTO {db}.t VALUES (1); CREATE TABLE {db}.w (i INT) ENGINE=InnoDB"
            ))
            .unwrap();
        db
    }
}

/// Whether `sql` completes within `wait` seconds of lock_wait_timeout; false
/// only for a lock wait timeout (1205), so that a probe failing for any other
/// reason (bad SQL, no connection) fails the test instead of passing it.
fn completes(opts: mysql::Opts, sql: &str, wait: u32) -> bool {
    let mut c = mysql::Conn::new(opts).unwrap();
    c.query_drop(format!("SET SESSION lock_wait_timeout = {wait}"))
        .unwrap();
    match c.query_drop(sql) {
        Ok(()) => true,
        Err(mysql::Error::MySqlError(e)) if e.code == 1205 => false,
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// Run mysql-quiesce with a snapshot phase long enough for the test to probe
/// the server from outside while it is locked; return what the probe saw.
fn probe_during_snapshot(m: &Matrix, args: &[&str], probe: impl FnOnce() -> bool + Send) -> bool {
    let started = m.dir.path().join(format!("started-{}", std::process::id()));
    let _ = std::fs::remove_file(&started);
    let hook = format!("touch {} && sleep 4", started.display());
    let mut cmd = m.mq();
    cmd.args(args).args(["--snapshot", &hook]);
    std::thread::scope(|s| {
        let run = s.spawn(move || cmd.assert().success());
        let t = Instant::now();
        while !started.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "snapshot phase never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let seen = probe();
        run.join().unwrap();
        seen
    })
}

#[test]
fn each_supported_mode_holds_what_it_documents_and_releases_it() {
    let m = matrix!();
    let db = m.schema("modes");
    let insert = format!("INSERT INTO {db}.w VALUES (1)");
    let ddl = format!("CREATE TABLE {db}.ddl_probe (i INT)");
    let exact_modes: &[&str] = if m.is_mysql() {
        &["ftwrl", "auto"]
    } else {
        &["ftwrl", "backup-stage", "auto"]
    };
    for mode in exact_modes {
        let opts = m.opts();
        let probe = insert.clone();
        let wrote = probe_during_snapshot(&m, &[&format!("--lock={mode}")], move || {
            completes(opts, &probe, 1)
        });
        assert!(!wrote, "--lock={mode}: a write went through while locked");
        assert!(
            completes(m.opts(), &insert, 5),
            "--lock={mode}: writes not released"
        );
    }
    if m.is_mysql() {
        // LOCK INSTANCE FOR BACKUP blocks DDL, not DML.
        let (opts, opts2) = (m.opts(), m.opts());
        let (insert2, ddl2) = (insert.clone(), ddl.clone());
        let dml_passes_ddl_blocked = probe_during_snapshot(&m, &["--lock=instance"], move || {
            completes(opts, &insert2, 1) && !completes(opts2, &ddl2, 1)
        });
        assert!(
            dml_passes_ddl_blocked,
            "--lock=instance must let DML through and block DDL"
        );
        assert!(
            completes(m.opts(), &ddl, 5),
            "--lock=instance: DDL not released"
        );
    }
}

#[test]
fn modes_this_server_lacks_are_refused_with_78() {
    let m = matrix!();
    let refused: &[&str] = if m.is_mysql() {
        &["backup-stage", "tables-for-backup"]
    } else {
        &["instance", "tables-for-backup"]
    };
    for mode in refused {
        m.mq()
            .arg(format!("--lock={mode}"))
            .args(["--", "false"])
            .assert()
            .code(78)
            .stderr(predicate::str::contains("Nothing was locked"));
    }
}

#[test]
fn auto_picks_the_documented_mode_and_coordinates_match_the_server_afterwards() {
    let m = matrix!();
    let db = m.schema("coords");
    m.conn()
        .query_drop(format!("INSERT INTO {db}.t VALUES (2)"))
        .unwrap();
    let coords = m.dir.path().join("coords.json");
    let report = m.dir.path().join("report.json");
    m.mq()
        .arg(format!("--coordinates-file={}", coords.display()))
        .arg(format!("--report={}", report.display()))
        .assert()
        .success();
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let expected_mode = if m.is_mysql() {
        "ftwrl"
    } else {
        "backup-stage"
    };
    assert_eq!(r["lock"]["mode"], expected_mode);
    assert_eq!(
        r["server"]["flavor"],
        if m.is_mysql() { "mysql" } else { "mariadb" }
    );
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&coords).unwrap()).unwrap();
    // MySQL 8.4 removed SHOW MASTER STATUS; MariaDB 10.5.2 renamed it.
    let statement = if m.is_mysql() {
        "SHOW BINARY LOG STATUS"
    } else {
        "SHOW BINLOG STATUS"
    };
    assert_eq!(c["source"], statement);
    assert_eq!(c["exact"], true);
    let row: mysql::Row = m
        .conn()
        .query_first(statement)
        .unwrap()
        .expect("binary logging on");
    assert_eq!(
        c["binlog_file"],
        row.get::<String, _>("File").unwrap().as_str()
    );
    assert_eq!(c["binlog_position"], row.get::<u64, _>("Position").unwrap());
    // GTIDs are on for both servers (scripts/server-matrix.sh), so these are real sets.
    let gtid_vars: &[(&str, &str)] = if m.is_mysql() {
        &[("gtid", "@@global.gtid_executed")]
    } else {
        &[
            ("gtid", "@@global.gtid_binlog_pos"),
            ("gtid_current_pos", "@@global.gtid_current_pos"),
        ]
    };
    for (field, var) in gtid_vars {
        let server: String = m
            .conn()
            .query_first::<Option<String>, _>(format!("SELECT {var}"))
            .unwrap()
            .flatten()
            .unwrap_or_default()
            .replace('\n', "");
        assert!(!server.is_empty(), "{var} is empty: GTIDs not on?");
        assert_eq!(c[field].as_str().unwrap_or(""), server, "{field} vs {var}");
    }
}

#[test]
fn instance_mode_reads_log_status_and_marks_its_coordinates_inexact() {
    let m = matrix!();
    if !m.is_mysql() {
        eprintln!(
            "LOCK INSTANCE FOR BACKUP is MySQL's: nothing to test on {}",
            m.flavor
        );
        return;
    }
    let coords = m.dir.path().join("instance-coords.json");
    let env = m.dir.path().join("instance-env");
    m.mq()
        .args(["--lock=instance"])
        .arg(format!("--coordinates-file={}", coords.display()))
        .args(["--snapshot", &format!("env > {}", env.display())])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "not an exact point of the snapshot",
        ));
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&coords).unwrap()).unwrap();
    assert_eq!(c["exact"], false);
    assert_eq!(c["source"], "performance_schema.log_status");
    // Hooks are told too, so that none labels the snapshot with it as a restore point.
    let env = std::fs::read_to_string(&env).unwrap();
    assert!(env.contains("MYSQL_QUIESCE_COORDINATES_EXACT=0\n"), "{env}");
    let row: mysql::Row = m
        .conn()
        .query_first("SHOW BINARY LOG STATUS")
        .unwrap()
        .unwrap();
    assert_eq!(
        c["binlog_file"],
        row.get::<String, _>("File").unwrap().as_str()
    );
    assert_eq!(c["binlog_position"], row.get::<u64, _>("Position").unwrap());
}

/// One long statement in another session: on MySQL FTWRL waits for it while
/// blocking writers, so an attempt must give up within its short first
/// budget and the lock be taken once it is gone; on MariaDB auto (BACKUP
/// STAGE) does not wait for it at all.
#[test]
fn writers_stall_is_bounded_behind_a_long_statement() {
    let m = matrix!();
    let db = m.schema("stall");
    let long_sql = if m.is_mysql() {
        format!("SELECT SLEEP(6) FROM {db}.t")
    } else {
        format!("UPDATE {db}.t SET i = i + SLEEP(6)")
    };
    let opts = m.opts();
    let long = std::thread::spawn(move || mysql::Conn::new(opts).unwrap().query_drop(long_sql));
    std::thread::sleep(Duration::from_millis(500));
    let writer = common::load::Writer::start(m.opts(), &format!("{db}.w"));
    if m.is_mysql() {
        // With the defaults: either the guard sees the SELECT (it has run a
        // second) and no attempt is made while it runs, or the first attempt
        // gives up after its short budget behind it; either way the lock is
        // taken once it has finished (not after the 30 s pause), and no
        // attempt waits longer than the first budget.
        m.mq()
            .args([
                "--lock=ftwrl",
                "--lock-retry-delay=30",
                "--snapshot",
                "true",
            ])
            .assert()
            .success()
            .stderr(
                predicate::str::contains("SLEEP(6)")
                    .and(predicate::str::contains("the long statements finished"))
                    .and(predicate::str::contains("lock attempt 2/").not())
                    .and(
                        predicate::str::contains("gave up")
                            .not()
                            .or(predicate::str::contains("after 0.2")),
                    ),
            );
    } else {
        // BACKUP STAGE does not wait for the UPDATE: writers wait about the
        // 0.3 s snapshot, not the 2 s budget an FTWRL would spend waiting.
        m.mq()
            .args(["--lock-wait-timeout=2", "--snapshot", "sleep 0.3"])
            .assert()
            .success();
    }
    let worst = writer.stop();
    let _ = long.join().unwrap();
    eprintln!("measured: worst writer wait {worst:?}");
    // Safety bounds, not speed (speed is measured in bench/): an attempt that
    // waited out --lock-wait-timeout or kept the lock would block writers
    // >= 1 s more on MySQL, an FTWRL waiting behind the UPDATE >= 2 s on
    // MariaDB; unbounded, ~6 s.
    assert!(
        worst < Duration::from_millis(1500),
        "{}: a writer waited {worst:?}",
        m.flavor
    );
}

#[test]
fn the_matrix_server_and_a_local_mariadb_are_locked_together() {
    let m = matrix!();
    let Some(local) = TestServer::start() else {
        return;
    };
    let db = m.schema("multi");
    local.sql("CREATE DATABASE d; CREATE TABLE d.t (i INT)");
    let env = m.dir.path().join("env");
    let mut cmd = common::mysql_quiesce();
    cmd.args(["--no-defaults", "-uroot"])
        .arg(format!("--lock-file={}", m.dir.path().join("l").display()))
        .arg(format!("--instance=mysql://root@127.0.0.1:{}", m.port))
        .arg(format!(
            "--instance=mysql://root@localhost/?socket={}",
            local.socket.display()
        ))
        .args(["--pre", &format!("env > {}", env.display())]);
    let started = m.dir.path().join("multi-started");
    cmd.args([
        "--snapshot",
        &format!("touch {} && sleep 4", started.display()),
    ]);
    let (mopts, lopts) = (m.opts(), local.opts());
    let insert = format!("INSERT INTO {db}.w VALUES (1)");
    std::thread::scope(|s| {
        let run = s.spawn(move || cmd.assert().success());
        let t = Instant::now();
        while !started.exists() {
            assert!(t.elapsed() < Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!completes(mopts, &insert, 1), "matrix server not locked");
        assert!(
            !completes(lopts, "INSERT INTO d.t VALUES (1)", 1),
            "local server not locked"
        );
        run.join().unwrap();
    });
    // Per-instance coordinates are each server's own position (no writes since).
    let env = std::fs::read_to_string(&env).unwrap();
    let matrix_status = if m.is_mysql() {
        "SHOW BINARY LOG STATUS"
    } else {
        "SHOW BINLOG STATUS"
    };
    let matrix_row: mysql::Row = m.conn().query_first(matrix_status).unwrap().unwrap();
    let local_row: mysql::Row = local
        .conn()
        .query_first("SHOW BINLOG STATUS")
        .unwrap()
        .unwrap();
    for (name, row) in [
        (format!("127_0_0_1_{}", m.port), matrix_row),
        ("SOCK".to_string(), local_row),
    ] {
        for (key, column) in [("BINLOG_FILE", "File"), ("BINLOG_POS", "Position")] {
            let expected = format!(
                "MYSQL_QUIESCE_{name}_{key}={}\n",
                row.get::<String, _>(column).unwrap()
            );
            assert!(env.contains(&expected), "no {expected:?} in:\n{env}");
        }
    }
    assert!(completes(
        m.opts(),
        &format!("INSERT INTO {db}.w VALUES (2)"),
        5
    ));
    assert!(local.write_succeeds(5));
}

// ------------------------------------------------------------------ verify and grants

/// The matrix flavor's server binary, run on this host instead of in its
/// chroot (`scripts/server-matrix.sh host-wrapper`): it can then live on a
/// loop volume the test makes, and verify can start it on an overlay.
fn host_wrapper(m: &Matrix, flavor: &str) -> PathBuf {
    let path = m.dir.path().join(format!("{flavor}-server"));
    let st = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/server-matrix.sh"
        ))
        .args(["host-wrapper", flavor])
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success(), "server-matrix.sh host-wrapper {flavor}");
    path
}

/// A fresh data directory of `flavor` at `at` (`server-matrix.sh init`).
fn init_datadir(flavor: &str, at: &Path) {
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/server-matrix.sh"
        ))
        .args(["init", flavor])
        .arg(at)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "server-matrix.sh init {flavor}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server of the matrix flavor run on this host, on a data directory the
/// test chose; stopped (and reaped) when dropped.
struct HostServer {
    child: std::process::Child,
    socket: PathBuf,
}

impl HostServer {
    fn start(m: &Matrix, wrapper: &Path, datadir: &Path, binlog: &Path) -> HostServer {
        let run = m.dir.path().join("origin");
        std::fs::create_dir_all(&run).unwrap();
        let socket = run.join("sock");
        let mut cmd = Command::new(wrapper);
        cmd.arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg("--skip-networking")
            .arg(format!("--log-error={}", run.join("err.log").display()))
            .arg(format!("--pid-file={}", run.join("pid").display()))
            .arg(format!("--log-bin={}", binlog.display()))
            .arg("--server-id=1");
        if m.is_mysql() {
            cmd.args([
                "--mysqlx=OFF",
                "--secure-file-priv=",
                "--gtid-mode=ON",
                "--enforce-gtid-consistency=ON",
            ]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = HostServer { child, socket };
        let t = Instant::now();
        while mysql::Conn::new(s.opts()).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(90),
                "the host {} server did not start: {}",
                m.flavor,
                std::fs::read_to_string(run.join("err.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    fn opts(&self) -> mysql::Opts {
        mysql::OptsBuilder::new()
            .socket(Some(self.socket.to_string_lossy()))
            .prefer_socket(true)
            .user(Some("root"))
            .into()
    }
}

impl Drop for HostServer {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Snapshots of a server of the matrix flavor (run on this host, its data and
/// binary log on an XFS loop volume) under a write load, frozen by
/// mysql-quiesce with each lock mode and their image copied: verify finds
/// the exact restore point in each. With --lock=instance (MySQL) the
/// recorded coordinates were read while commits went on: verify reports the
/// exact point next to them; with an exact mode they must be equal.
#[test]
fn verify_finds_the_exact_point_of_snapshots_taken_with_each_lock_mode() {
    let m = matrix!();
    let wrapper = host_wrapper(&m, &m.flavor);
    let vol = LoopFs::new(FsKind::Xfs).expect("root and mkfs.xfs (the matrix runs as root)");
    let data = vol.mountpoint().join("data");
    init_datadir(&m.flavor, &data);
    let server = HostServer::start(&m, &wrapper, &data, &vol.mountpoint().join("binlog"));
    let mut c = mysql::Conn::new(server.opts()).unwrap();
    c.query_drop("CREATE DATABASE app; CREATE TABLE app.w (i INT) ENGINE=InnoDB; CREATE TABLE app.v (i INT) ENGINE=InnoDB")
        .unwrap();
    let writers = [
        Writer::start(server.opts(), "app.w"),
        Writer::start(server.opts(), "app.v"),
    ];
    std::thread::sleep(Duration::from_millis(400));
    let modes: &[&str] = if m.is_mysql() {
        &["instance", "ftwrl"]
    } else {
        &["backup-stage"]
    };
    for mode in modes {
        let coords = m.dir.path().join(format!("{mode}.json"));
        let image = m.dir.path().join(format!("{mode}.img"));
        let out = common::mysql_quiesce()
            .args(["--no-defaults", "-uroot"])
            .arg(format!("--socket={}", server.socket.display()))
            .arg(format!("--lock-file={}", m.dir.path().join("vl").display()))
            .arg(format!("--lock={mode}"))
            .arg(vol.arg())
            .arg(format!("--coordinates-file={}", coords.display()))
            .args(["--", "cp", "--sparse=always"])
            .arg(vol.image())
            .arg(&image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let recorded = read_json(&coords);
        assert_eq!(recorded["exact"], *mode != "instance", "{recorded}");
        let at = m.dir.path().join(format!("copy-{mode}"));
        let copy = ImageMount::new(&image, &at, "nouuid");
        let work = m.dir.path().join(format!("work-{mode}"));
        std::fs::create_dir(&work).unwrap();
        let report = m.dir.path().join(format!("verify-{mode}.json"));
        let before = digest(&copy.path());
        let t = Instant::now();
        let out = common::mysql_quiesce()
            .arg("verify")
            .arg(format!("--datadir={}", copy.path().join("data").display()))
            .arg(format!("--binlog-dir={}", copy.path().display()))
            .arg(format!("--server={}", wrapper.display()))
            .arg(format!("--coordinates-file={}", coords.display()))
            .arg(format!("--work-dir={}", work.display()))
            .arg(format!("--report={}", report.display()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!(
            "---- verify of the {mode} snapshot ({:?}):\n{stderr}",
            t.elapsed()
        );
        assert_eq!(out.status.code(), Some(0), "{mode}: {stderr}");
        assert_same_digest(
            &before,
            &digest(&copy.path()),
            &format!("{mode}: verify wrote to the snapshot"),
        );
        assert_nothing_left(&work);
        let r = read_json(&report);
        let point = &r["restore_point"];
        if *mode == "instance" {
            assert_eq!(r["comparison"], "inexact");
            assert!(
                stderr.contains("recorded coordinates are not exact"),
                "{stderr}"
            );
            let exact = format!(
                "the exact restore point of the copy is {}:{}",
                point["binlog_file"].as_str().unwrap(),
                point["binlog_position"]
            );
            assert!(stderr.contains(&exact), "no {exact:?} in:\n{stderr}");
            // The copy was taken after the coordinates were read, while commits went on.
            assert_eq!(point["binlog_file"], recorded["binlog_file"]);
            assert!(
                point["binlog_position"].as_u64() >= recorded["binlog_position"].as_u64(),
                "{r:#}"
            );
        } else {
            assert_eq!(r["comparison"], "match", "{r:#}");
            for key in ["binlog_file", "binlog_position", "gtid"] {
                assert_eq!(point[key], recorded[key], "{mode} {key}");
            }
        }
        assert!(
            point["gtid"].as_str().is_some_and(|g| !g.is_empty()),
            "{r:#}"
        );
        assert!(r["tables"]["checked"].as_u64().unwrap() > 5);
        eprintln!(
            "measured: {} {mode}: crash recovery {} ms, verify {:?}, writable layer {} bytes",
            m.flavor,
            r["recovery_ms"],
            t.elapsed(),
            r["writable_bytes"]
        );
    }
    for w in writers {
        w.stop();
    }
}

#[test]
fn verify_refuses_a_server_of_the_other_family_or_older_than_the_data() {
    let m = matrix!();
    let data = m.dir.path().join("data");
    init_datadir(&m.flavor, &data);
    let other = if m.is_mysql() { "mariadb" } else { "mysql" };
    let other_server = host_wrapper(&m, other);
    let work = m.dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let verify = |server: &Path| {
        common::mysql_quiesce()
            .arg("verify")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--server={}", server.display()))
            .arg(format!("--work-dir={}", work.display()))
            .output()
            .unwrap()
    };
    let out = verify(&other_server);
    assert_eq!(
        out.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("a server of the other family cannot recover it"));
    // This host's MariaDB 10.11: the other family for MySQL data, older than MariaDB 11.8 data.
    let local = Path::new("/usr/sbin/mariadbd");
    let out = verify(local);
    assert_eq!(
        out.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let why = if m.is_mysql() {
        "a server of the other family cannot recover it"
    } else {
        "an older server cannot recover it"
    };
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(why),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_nothing_left(&work);
}

/// Accounts with exactly the printed GRANTs can do the run; without any one
/// of them `--check` names its GRANT, or the run fails (or, for SELECT on
/// performance_schema.log_status, falls back to less consistent coordinates).
#[test]
fn the_printed_grants_are_exactly_enough_on_the_matrix_server() {
    use mysql_quiesce::cli::LockMode;
    use mysql_quiesce::grants::{self, Column, Usage};
    let m = matrix!();
    let column = if m.is_mysql() {
        Column::Mysql
    } else {
        Column::Mariadb
    };
    let exact_mode = if m.is_mysql() {
        LockMode::Ftwrl
    } else {
        LockMode::BackupStage
    };
    let cases: Vec<(&str, Usage, Vec<&str>)> = vec![
        (
            "q_plain",
            Usage {
                mode: exact_mode,
                guard: false,
                kill: false,
                stop_replica_sql: false,
            },
            vec![],
        ),
        (
            "q_options",
            Usage {
                mode: if m.is_mysql() {
                    LockMode::Instance
                } else {
                    LockMode::Ftwrl
                },
                guard: true,
                kill: true,
                stop_replica_sql: false,
            },
            vec![
                if m.is_mysql() {
                    "--lock=instance"
                } else {
                    "--lock=ftwrl"
                },
                "--long-query-guard=30",
                "--kill-long-queries=0.5",
            ],
        ),
    ];
    let mut root = m.conn();
    for (user, usage, options) in cases {
        let account = grants::account(user, "%");
        root.query_drop(format!("DROP USER IF EXISTS {account}"))
            .unwrap();
        for s in grants::create_statements(column, &usage, &account) {
            root.query_drop(s.replace("'<password>'", "''")).unwrap();
        }
        let coords = m.dir.path().join(format!("{user}.json"));
        let run = |extra: &[&str]| {
            common::mysql_quiesce()
                .args(["--no-defaults", "-h127.0.0.1"])
                .arg(format!("-P{}", m.port))
                .arg(format!("-u{user}"))
                .arg(format!("--lock-file={}", m.dir.path().join("gl").display()))
                .arg(format!("--coordinates-file={}", coords.display()))
                .args(&options)
                .args(extra)
                .output()
                .unwrap()
        };
        let out = run(&["--", "true"]);
        assert!(
            out.status.success(),
            "{user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let source_with_all = read_json(&coords)["source"].clone();
        let out = run(&["--check"]);
        assert!(
            out.status.success(),
            "{user} --check: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (privilege, on) in grants::privileges(column, &usage) {
            root.query_drop(format!("REVOKE {privilege} ON {on} FROM {account}"))
                .unwrap();
            let checked = run(&["--check"]);
            let grant = format!("GRANT {privilege} ON {on} TO {account};");
            if checked.status.code() == Some(77) {
                let stderr = String::from_utf8_lossy(&checked.stderr);
                assert!(
                    stderr.contains(&format!("run as an administrator: {grant}")),
                    "{user} without {privilege}:\n{stderr}"
                );
            } else {
                assert!(
                    checked.status.success(),
                    "{user}: {}",
                    String::from_utf8_lossy(&checked.stderr)
                );
                let out = run(&["--", "true"]);
                if privilege == "SELECT" {
                    assert!(out.status.success());
                    assert_eq!(source_with_all, "performance_schema.log_status");
                    assert_ne!(
                        read_json(&coords)["source"],
                        source_with_all,
                        "log_status read without SELECT on it?"
                    );
                } else {
                    assert!(!out.status.success(), "{user} ran without {privilege}");
                }
            }
            root.query_drop(format!("GRANT {privilege} ON {on} TO {account}"))
                .unwrap();
        }
        root.query_drop(format!("DROP USER {account}")).unwrap();
    }
}
