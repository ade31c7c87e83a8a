//! The same contract against MySQL 9.x and MariaDB 11.x from Debian sid.
//! scripts/test.sh starts each matrix server (scripts/server-matrix.sh) and
//! runs this file with MYSQL_QUIESCE_MATRIX_{FLAVOR,HOST,PORT} set. It is not
//! part of a plain `cargo test` (`test = false` in Cargo.toml); run without
//! those variables it skips, except under CI=true, where that is a failure.

mod common;

use common::server::TestServer;
use mysql::prelude::Queryable;
use predicates::prelude::*;
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
        // The SELECT is too young for the guard: the first attempt gives up
        // after its short budget, names it, and the next comes when it has
        // finished (not after the 30 s pause); the snapshot is taken.
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
                predicate::str::contains("gave up on `FLUSH TABLES WITH READ LOCK` after 0.2")
                    .and(predicate::str::contains("waiting behind connection"))
                    .and(predicate::str::contains("the long statements finished")),
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
