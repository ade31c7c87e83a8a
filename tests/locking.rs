//! Server-aware locking on MariaDB: the modes, the long-query guard and
//! kill, pre-flush, replica coordinates and several instances locked as one.
//! (MySQL 9 and MariaDB 11 run the same kind of checks in tests/server_matrix.rs.)

mod common;

use common::load::Writer;
use common::server::TestServer;
use mysql::prelude::Queryable;
use predicates::prelude::*;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Run `sql` in its own session in the background; returns its result.
fn background(s: &TestServer, sql: &'static str) -> JoinHandle<mysql::Result<()>> {
    let opts = s.opts();
    let h = std::thread::spawn(move || mysql::Conn::new(opts)?.query_drop(sql));
    std::thread::sleep(Duration::from_millis(300));
    h
}

fn setup(s: &TestServer) {
    s.sql(
        "CREATE DATABASE d; CREATE TABLE d.slow (i INT) ENGINE=InnoDB; INSERT INTO d.slow VALUES (1); \
         CREATE TABLE d.w (i INT) ENGINE=InnoDB",
    );
}

#[test]
fn auto_on_mariadb_uses_backup_stage_and_does_not_wait_behind_a_long_write() {
    let s = server!();
    setup(&s);
    let long = background(&s, "UPDATE d.slow SET i = i + SLEEP(6)");
    let writer = Writer::start(s.opts(), "d.w");
    let started = Instant::now();
    s.mq()
        .args([
            "--lock-wait-timeout=2",
            "--lock-retries=0",
            "--snapshot",
            "sleep 0.3",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("BACKUP STAGE BLOCK_COMMIT"));
    let took = started.elapsed();
    let worst = writer.stop();
    long.join().unwrap().unwrap();
    eprintln!("measured: worst writer wait {worst:?}");
    // Safety bounds only (speed is measured in bench/): writers wait about the
    // 0.3 s snapshot; an FTWRL would block them for its whole 2 s budget
    // behind the UPDATE, and the run would take ~6 s.
    assert!(took < Duration::from_secs(5), "run took {took:?}");
    assert!(
        worst < Duration::from_millis(1500),
        "a writer waited {worst:?}"
    );
}

#[test]
fn modes_the_server_lacks_are_refused_with_78_before_locking() {
    let s = server!();
    for (mode, needs) in [
        ("instance", "MySQL or Percona Server 8.0"),
        ("tables-for-backup", "Percona Server"),
    ] {
        s.mq()
            .arg(format!("--lock={mode}"))
            .args(["--snapshot", "exit 9"])
            .assert()
            .code(78)
            .stderr(
                predicate::str::contains(needs).and(predicate::str::contains("Nothing was locked")),
            );
    }
    assert!(s.write_succeeds(1));
}

#[test]
fn long_query_guard_waits_instead_of_locking_and_gives_up_with_75() {
    let s = server!();
    setup(&s);
    let long = background(&s, "SELECT SLEEP(5) FROM d.slow");
    std::thread::sleep(Duration::from_millis(1200));
    // While the guard waits, writers are not blocked at all: an FTWRL attempt
    // behind the SELECT would block them for its whole budget.
    let writer = Writer::start(s.opts(), "d.w");
    s.mq()
        .args([
            "--lock=ftwrl",
            "--long-query-guard=1",
            "--long-query-type=all",
            "--long-query-wait=1",
        ])
        .assert()
        .code(75)
        .stderr(
            predicate::str::contains("waiting for connection")
                .and(predicate::str::contains(
                    "(--long-query-wait) for connection",
                ))
                .and(predicate::str::contains("SLEEP(5)"))
                .and(predicate::str::contains("Nothing is locked"))
                .and(predicate::str::contains("lock attempt").not()),
        );
    let worst = writer.stop();
    assert!(
        worst < Duration::from_millis(500),
        "writers waited {worst:?}: the guard tried to lock anyway"
    );
    // A SELECT is not an update: with --long-query-type=update the guard
    // lets it pass, and so does the default on MariaDB, whose FTWRL does not
    // wait for SELECTs.
    for args in [
        &["--long-query-guard=1", "--long-query-type=update"][..],
        &["--lock=ftwrl"][..],
    ] {
        s.mq()
            .args(args)
            .args(["--lock-retries=0", "--long-query-wait=1"])
            .assert()
            .success()
            .stderr(predicate::str::contains("waiting for").not());
    }
    long.join().unwrap().unwrap();
}

/// The default on ftwrl: a write that has run a second or more is waited
/// out before any attempt, so writers never queue behind an attempt that
/// would wait for it; the lock is taken once it has finished.
#[test]
fn ftwrl_waits_out_a_long_write_before_attempting_and_locks_when_it_ends() {
    let s = server!();
    setup(&s);
    let long = background(&s, "UPDATE d.slow SET i = i + SLEEP(3)");
    std::thread::sleep(Duration::from_millis(1200));
    let writer = Writer::start(s.opts(), "d.w");
    s.mq()
        .args(["--lock=ftwrl", "--snapshot", "true"])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("waiting for connection")
                .and(predicate::str::contains("SLEEP(3)"))
                .and(predicate::str::contains("the long statements finished"))
                .and(predicate::str::contains("gave up").not()),
        );
    let worst = writer.stop();
    long.join().unwrap().unwrap();
    eprintln!("measured: worst writer wait {worst:?}");
    // A safety bound (speed is in bench/): no attempt was made while the
    // UPDATE ran, so writers waited about the snapshot, not its remaining 2 s.
    assert!(
        worst < Duration::from_millis(1000),
        "a writer waited {worst:?}"
    );
}

/// A write too young for the guard blocks the first attempt: that attempt
/// gives up after its short first budget (not --lock-wait-timeout), names
/// the write, and the next attempt comes as soon as the write has finished,
/// without the retry pause.
#[test]
fn an_attempt_behind_a_young_long_write_gives_up_early_and_the_next_follows_its_end() {
    let s = server!();
    setup(&s);
    let long = background(&s, "UPDATE d.slow SET i = i + SLEEP(3)");
    let writer = Writer::start(s.opts(), "d.w");
    let started = Instant::now();
    s.mq()
        // The guard off, so that the attempt is made whatever the machine's
        // load (the guard would wait once the UPDATE has run a second).
        .args([
            "--long-query-guard=0",
            "--lock=ftwrl",
            "--lock-wait-timeout=5",
            "--lock-retry-delay=30",
            "--snapshot",
            "true",
        ])
        .assert()
        .success()
        .stderr(
            predicate::str::contains(
                "lock attempt 1/11 gave up on `FLUSH TABLES WITH READ LOCK` after 0.2",
            )
            .and(predicate::str::contains("waiting behind connection"))
            .and(predicate::str::contains("SLEEP(3)"))
            .and(predicate::str::contains("the long statements finished"))
            .and(predicate::str::contains("lock attempt 2/").not()),
        );
    let took = started.elapsed();
    let worst = writer.stop();
    long.join().unwrap().unwrap();
    eprintln!("measured: worst writer wait {worst:?}, run {took:?}");
    // Safety bounds: the 30 s retry pause was not taken, and no attempt
    // waited out the 5 s --lock-wait-timeout behind the UPDATE.
    assert!(took < Duration::from_secs(20), "the run took {took:?}");
    assert!(
        worst < Duration::from_millis(2500),
        "a writer waited {worst:?}"
    );
}

#[test]
fn kill_long_queries_kills_the_blocker_but_never_a_writer_queued_behind_our_lock() {
    let s = server!();
    setup(&s);
    let long = background(&s, "UPDATE d.slow SET i = i + SLEEP(30)");
    let started = Instant::now();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_mysql-quiesce"))
        .args(s.args())
        .args([
            "--lock=ftwrl",
            "--lock-wait-timeout=5",
            "--kill-long-queries=0.8",
            "--lock-retries=0",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once our FLUSH waits, an ordinary writer arrives and queues behind it.
    s.wait_for_statement(
        "FLUSH TABLES WITH READ LOCK",
        started + Duration::from_secs(20),
        "the lock attempt never started",
    );
    let innocent = background(&s, "INSERT INTO d.w VALUES (42)");
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--kill-long-queries: killed the query of connection")
            && stderr.contains("SLEEP(30)"),
        "{stderr}"
    );
    assert!(
        long.join().unwrap().is_err(),
        "the long UPDATE should have been killed"
    );
    innocent
        .join()
        .unwrap()
        .expect("the writer queued behind our lock must not be killed");
    assert_eq!(
        s.value("SELECT COUNT(*) FROM d.w WHERE i = 42").as_deref(),
        Some("1")
    );
    assert!(!stderr.contains("INSERT INTO d.w"), "{stderr}");
}

#[test]
fn the_guard_and_kill_without_the_process_privilege_are_refused_not_blind() {
    let s = server!();
    s.sql(
        "CREATE USER bk@localhost; GRANT RELOAD, BINLOG MONITOR ON *.* TO bk@localhost; \
         CREATE USER bk2@localhost; GRANT RELOAD, BINLOG MONITOR, PROCESS ON *.* TO bk2@localhost",
    );
    let mut args = s.args();
    args.retain(|a| a != "--user=root");
    for (user, option, lacks) in [
        ("bk", "--long-query-guard=1", "lacks PROCESS"),
        (
            "bk2",
            "--kill-long-queries=0.5",
            "lacks CONNECTION ADMIN or SUPER",
        ),
    ] {
        common::mysql_quiesce()
            .args(&args)
            .args([
                &format!("--user={user}"),
                option,
                "--lock-wait-timeout=2",
                "--",
                "true",
            ])
            .assert()
            .code(77)
            .stderr(
                predicate::str::contains(lacks)
                    .and(predicate::str::contains("Nothing was locked or frozen")),
            );
    }
    // The same user without the guard locks fine: only the guard needs PROCESS.
    common::mysql_quiesce()
        .args(&args)
        .args(["--user=bk", "--", "true"])
        .assert()
        .success();
    // The default guard (ftwrl) does not need it, but says what it cannot see.
    common::mysql_quiesce()
        .args(&args)
        .args(["--user=bk", "--lock=ftwrl", "--", "true"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "lacks PROCESS: the long-query guard sees only its own statements",
        ));
}

#[test]
fn kill_long_queries_at_or_above_the_attempt_budget_is_a_configuration_error() {
    let s = server!();
    s.mq()
        .args(["--lock-wait-timeout=1", "--kill-long-queries=1"])
        .assert()
        .code(78)
        .stderr(predicate::str::contains(
            "must be below --lock-wait-timeout",
        ));
}

#[test]
fn pre_flush_runs_before_the_lock_when_asked() {
    let s = server!();
    // Before the lock, in the order the server received them (its general log).
    s.sql("SET GLOBAL general_log_file = 'flush.log'; SET GLOBAL general_log = ON");
    s.mq()
        .args(["-v", "--pre-flush"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "SQL> FLUSH NO_WRITE_TO_BINLOG TABLES",
        ));
    s.sql("SET GLOBAL general_log = OFF");
    let log = std::fs::read_to_string(s.dir.path().join("data/flush.log")).unwrap();
    let flush = log
        .find("FLUSH NO_WRITE_TO_BINLOG TABLES")
        .expect("the server got the flush");
    let lock = log
        .find("BACKUP STAGE START")
        .expect("the server got the lock");
    assert!(flush < lock, "the flush came after the lock:\n{log}");
    s.mq()
        .arg("-v")
        .assert()
        .success()
        .stderr(predicate::str::contains("FLUSH NO_WRITE_TO_BINLOG").not());
}

fn wait_caught_up(source: &TestServer, replica: &TestServer) -> (String, u64) {
    let row: mysql::Row = source
        .conn()
        .query_first("SHOW MASTER STATUS")
        .unwrap()
        .unwrap();
    let (file, pos): (String, u64) = (row.get("File").unwrap(), row.get("Position").unwrap());
    let waited: Option<i64> = replica
        .conn()
        .query_first(format!("SELECT MASTER_POS_WAIT('{file}', {pos}, 30)"))
        .unwrap()
        .flatten();
    assert!(waited.is_some_and(|w| w >= 0), "replica did not catch up");
    (file, pos)
}

#[test]
fn on_a_replica_the_sql_thread_position_is_recorded_and_stop_replica_sql_restarts_it() {
    let Some((source, replica)) = TestServer::replica_pair() else {
        return;
    };
    source.sql("CREATE DATABASE r; CREATE TABLE r.t (i INT); INSERT INTO r.t VALUES (1)");
    let (file, pos) = wait_caught_up(&source, &replica);
    let env = replica.path("env");
    let sql_running = replica.path("sql-running");
    let show = format!(
        "{} -e 'SHOW SLAVE STATUS\\G' | awk '/Slave_SQL_Running:/ {{print $2}}' > {}",
        replica.client(),
        sql_running.display()
    );
    replica
        .mq()
        .args([
            "--stop-replica-sql",
            "--pre",
            &format!("env > {}", env.display()),
            "--snapshot",
            &show,
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("stopped the replica SQL thread"));
    let env = std::fs::read_to_string(&env).unwrap();
    assert!(
        env.contains(&format!("MYSQL_QUIESCE_SOURCE_LOG_FILE={file}\n")),
        "{env}"
    );
    assert!(
        env.contains(&format!("MYSQL_QUIESCE_SOURCE_LOG_POS={pos}\n")),
        "{env}"
    );
    assert_eq!(std::fs::read_to_string(&sql_running).unwrap().trim(), "No");
    let row: mysql::Row = replica
        .conn()
        .query_first("SHOW SLAVE STATUS")
        .unwrap()
        .unwrap();
    assert_eq!(
        row.get::<String, _>("Slave_SQL_Running").unwrap(),
        "Yes",
        "SQL thread must run again"
    );
}

/// The replica's `Read_*` (IO thread) and `Exec_*` (SQL thread) positions.
fn replica_positions(replica: &TestServer) -> ((String, u64), (String, u64)) {
    let row: mysql::Row = replica
        .conn()
        .query_first("SHOW SLAVE STATUS")
        .unwrap()
        .unwrap();
    (
        (
            row.get("Master_Log_File").unwrap(),
            row.get("Read_Master_Log_Pos").unwrap(),
        ),
        (
            row.get("Relay_Master_Log_File").unwrap(),
            row.get("Exec_Master_Log_Pos").unwrap(),
        ),
    )
}

#[test]
fn the_replica_position_recorded_is_what_the_sql_thread_executed_not_what_was_read() {
    let Some((source, replica)) = TestServer::replica_pair() else {
        return;
    };
    source.sql("CREATE DATABASE r; CREATE TABLE r.t (i INT); INSERT INTO r.t VALUES (1)");
    let executed = wait_caught_up(&source, &replica);
    // The SQL thread stops; the IO thread reads on past what is applied.
    replica.sql("STOP SLAVE SQL_THREAD");
    source.sql("INSERT INTO r.t VALUES (2)");
    let row: mysql::Row = source
        .conn()
        .query_first("SHOW BINLOG STATUS")
        .unwrap()
        .unwrap();
    let read_target: u64 = row.get("Position").unwrap();
    let t = Instant::now();
    while replica_positions(&replica).0 .1 != read_target {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the IO thread did not read on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        replica_positions(&replica).1,
        executed,
        "the SQL thread must not have applied it"
    );
    let env = replica.path("env");
    replica
        .mq()
        .args(["--pre", &format!("env > {}", env.display())])
        .assert()
        .success();
    let env = std::fs::read_to_string(&env).unwrap();
    assert!(
        env.contains(&format!("MYSQL_QUIESCE_SOURCE_LOG_POS={}\n", executed.1)),
        "want the executed position {executed:?}, not the read one {read_target}:\n{env}"
    );
    replica.sql("START SLAVE SQL_THREAD");
}

#[test]
fn stop_replica_sql_restarts_the_sql_thread_when_the_lock_cannot_be_taken() {
    let Some((source, replica)) = TestServer::replica_pair() else {
        return;
    };
    source.sql("CREATE DATABASE r; CREATE TABLE r.t (i INT); INSERT INTO r.t VALUES (1)");
    wait_caught_up(&source, &replica);
    setup(&replica);
    let long = background(&replica, "UPDATE d.slow SET i = i + SLEEP(5)");
    replica
        .mq()
        .args([
            "--stop-replica-sql",
            "--lock=ftwrl",
            "--lock-wait-timeout=0.5",
            "--lock-retries=0",
        ])
        .assert()
        .code(75)
        .stderr(
            predicate::str::contains("stopped the replica SQL thread").and(
                predicate::str::contains("started the replica SQL thread again"),
            ),
        );
    let row: mysql::Row = replica
        .conn()
        .query_first("SHOW SLAVE STATUS")
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<String, _>("Slave_SQL_Running").unwrap(), "Yes");
    long.join().unwrap().unwrap();
}

#[test]
fn with_binary_logging_off_the_coordinates_are_empty_not_an_error() {
    let Some(s) = TestServer::start_with(1, &["--skip-log-bin".to_string()]) else {
        return;
    };
    let coords = s.path("coords.json");
    let env = s.path("env");
    s.mq()
        .arg(format!("--coordinates-file={}", coords.display()))
        .args(["--pre", &format!("env > {}", env.display())])
        .assert()
        .success()
        .stderr(predicate::str::contains("binary logging is off"));
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&coords).unwrap()).unwrap();
    assert!(
        c["binlog_file"].is_null() && c["binlog_position"].is_null(),
        "{c:#}"
    );
    let env = std::fs::read_to_string(&env).unwrap();
    assert!(env.contains("MYSQL_QUIESCE_BINLOG_FILE=\n"), "{env}");
}

#[test]
fn a_backup_stage_attempt_behind_another_backup_gives_up_in_budget_and_is_retried() {
    let s = server!();
    setup(&s);
    // Another backup holds the server's single backup stage.
    let mut other = s.conn();
    other.query_drop("BACKUP STAGE START").unwrap();
    let started = Instant::now();
    s.mq()
        .args([
            "--lock=backup-stage",
            "--lock-wait-timeout=0.5",
            "--lock-retries=1",
            "--lock-retry-delay=0.2",
        ])
        .assert()
        .code(75)
        .stderr(
            predicate::str::contains("lock attempt 1/2")
                .and(predicate::str::contains("attempt(s)"))
                .and(predicate::str::contains("nothing is locked")),
        );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Once the other backup ends, the same run succeeds.
    other.query_drop("BACKUP STAGE END").unwrap();
    s.mq().args(["--lock=backup-stage"]).assert().success();
}

#[test]
fn on_a_galera_node_the_cluster_position_is_recorded() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port()
    };
    // A cluster of one, bootstrapped on its own ports.
    let s = server!(
        "--wsrep-on=ON".to_string(),
        "--wsrep-provider=/usr/lib/galera/libgalera_smm.so".to_string(),
        "--wsrep-cluster-address=gcomm://".to_string(),
        format!(
            "--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:{};ist.recv_addr=127.0.0.1:{}",
            free(),
            free()
        ),
        "--wsrep-node-address=127.0.0.1".to_string(),
        "--binlog-format=ROW".to_string(),
        "--innodb-autoinc-lock-mode=2".to_string(),
    );
    s.sql("CREATE DATABASE g; CREATE TABLE g.t (i INT PRIMARY KEY); INSERT INTO g.t VALUES (1)");
    let coords = s.path("coords.json");
    let env = s.path("env");
    s.mq()
        .arg(format!("--coordinates-file={}", coords.display()))
        .args(["--pre", &format!("env > {}", env.display())])
        .assert()
        .success();
    // No writes since: the node's position now is the one recorded.
    let status = |name: &str| {
        let row: Option<(String, String)> = s
            .conn()
            .query_first(format!("SHOW GLOBAL STATUS LIKE '{name}'"))
            .unwrap();
        row.map(|(_, v)| v).unwrap_or_default()
    };
    let (uuid, seqno) = (
        status("wsrep_local_state_uuid"),
        status("wsrep_last_committed"),
    );
    assert!(
        uuid.len() == 36 && seqno.parse::<u64>().is_ok(),
        "not a Galera node? {uuid:?}:{seqno:?}"
    );
    let position = format!("{uuid}:{seqno}");
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&coords).unwrap()).unwrap();
    assert_eq!(c["galera_position"], position.as_str(), "{c:#}");
    let env = std::fs::read_to_string(&env).unwrap();
    assert!(
        env.contains(&format!("MYSQL_QUIESCE_GALERA_POSITION={position}\n")),
        "{env}"
    );
}

#[test]
fn two_instances_are_locked_together_with_per_instance_coordinates() {
    let (Some(a), Some(b)) = (TestServer::start(), TestServer::start()) else {
        return;
    };
    for s in [&a, &b] {
        s.sql("CREATE DATABASE d; CREATE TABLE d.t (i INT)");
    }
    let second = a.path("second.cnf");
    std::fs::write(
        &second,
        format!("[client]\nuser = root\nsocket = {}\n", b.socket.display()),
    )
    .unwrap();
    let url = format!("mysql://root@localhost/?socket={}", a.socket.display());
    let blocked = |s: &TestServer| s.blocked_write_hook("d.t");
    let env = a.path("env");
    let coords = a.path("coords.json");
    common::mysql_quiesce()
        .args([
            "--no-defaults",
            &format!("--lock-file={}", a.path("l").display()),
        ])
        .arg(format!("--instance=First={url}"))
        .arg(format!("--instance={}", second.display()))
        .arg(format!("--coordinates-file={}", coords.display()))
        .args(["--pre", &format!("env > {}", env.display())])
        .args(["--snapshot", &blocked(&a), "--snapshot", &blocked(&b)])
        .assert()
        .success();
    assert!(a.write_succeeds(1) && b.write_succeeds(1));
    let env = std::fs::read_to_string(&env).unwrap();
    for name in ["FIRST", "SECOND"] {
        assert!(
            env.contains(&format!("MYSQL_QUIESCE_{name}_BINLOG_FILE=binlog.")),
            "{name}: {env}"
        );
        assert!(
            env.contains(&format!("MYSQL_QUIESCE_{name}_CONNECTION_ID=")),
            "{name}: {env}"
        );
    }
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&coords).unwrap()).unwrap();
    assert!(c["instances"]["FIRST"]["binlog_position"]
        .as_u64()
        .is_some());
    assert!(c["instances"]["SECOND"]["binlog_position"]
        .as_u64()
        .is_some());
}

#[test]
fn when_one_instance_cannot_be_locked_the_others_are_released_and_the_run_exits_75() {
    let (Some(a), Some(b)) = (TestServer::start(), TestServer::start()) else {
        return;
    };
    setup(&a);
    setup(&b);
    let long = background(&b, "UPDATE d.slow SET i = i + SLEEP(6)");
    let writer = Writer::start(a.opts(), "d.w");
    common::mysql_quiesce()
        .args([
            "--no-defaults",
            "--lock=ftwrl",
            &format!("--lock-file={}", a.path("l").display()),
        ])
        .arg(format!(
            "--instance=mysql://root@localhost/?socket={}",
            a.socket.display()
        ))
        .arg(format!("--instance=mysql://root@127.0.0.1:{}", b.port))
        // Never waiting for the UPDATE: every round fails on the second
        // instance, and each must release the first.
        .args([
            "--lock-wait-timeout=0.5",
            "--lock-retries=2",
            "--lock-retry-delay=0.3",
            "--long-query-wait=0",
            "--snapshot",
            "exit 9",
        ])
        .assert()
        .code(75);
    let worst = writer.stop();
    long.join().unwrap().unwrap();
    // Each round holds the lockable instance at most one 0.5 s attempt, then
    // releases it: held across all three rounds it would be about 2.1 s.
    assert!(
        worst < Duration::from_millis(1200),
        "writers on the lockable instance waited {worst:?}"
    );
    assert!(a.write_succeeds(1) && b.write_succeeds(1));
}

#[test]
fn a_replica_sql_thread_left_stopped_by_a_killed_run_is_reported_by_the_next_run_and_check() {
    let Some((_source, replica)) = TestServer::replica_pair() else {
        return;
    };
    let pidfile = replica.path("snapshot-pid");
    let run = common::process::Running::start(
        &replica,
        &[
            "--stop-replica-sql".into(),
            "--snapshot".into(),
            format!("echo $$ > {}; sleep 30", pidfile.display()),
        ],
    );
    common::process::wait_for(&pidfile, &run);
    nix::sys::signal::kill(run.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    drop(run);
    let sql_running = || -> String {
        let row: mysql::Row = replica
            .conn()
            .query_first("SHOW SLAVE STATUS")
            .unwrap()
            .unwrap();
        row.get("Slave_SQL_Running").unwrap()
    };
    assert_eq!(sql_running(), "No", "nobody could have started it again");
    for args in [vec!["--check"], vec!["--", "true"]] {
        replica
            .mq()
            .args(&args)
            .assert()
            .stderr(predicate::str::contains(
                "the replica SQL thread is STOPPED",
            ))
            .stderr(predicate::str::contains("run `START REPLICA SQL_THREAD`"));
    }
    replica.sql("START SLAVE SQL_THREAD");
    replica
        .mq()
        .arg("--check")
        .assert()
        .success()
        .stderr(predicate::str::contains("STOPPED").not());
    assert!(
        !replica.path("state/replica-sql-stopped.json").exists(),
        "the note outlived the thread's restart"
    );
}

/// MariaDB's BACKUP STAGE BLOCK_COMMIT lets a write to an Aria (or MEMORY)
/// table through: the writer gets 1205, yet its row stays and is binary-logged
/// under the lock. The run sees the binary log move and does not call the
/// snapshot consistent (65); with ftwrl the same write is blocked and the run
/// succeeds.
#[test]
fn a_write_that_goes_through_the_lock_is_caught_by_the_binary_log_moving() {
    let s = server!();
    s.sql("CREATE DATABASE d; CREATE TABLE d.aria (i INT) ENGINE=Aria");
    let write = format!(
        "{} -e 'SET SESSION lock_wait_timeout = 1; INSERT INTO d.aria VALUES (1)' || true",
        s.client()
    );
    let report = s.path("report.json");
    s.mq()
        .arg(format!("--report={}", report.display()))
        .args(["--snapshot", &write])
        .assert()
        .code(65)
        .stderr(
            predicate::str::contains("the binary log moved from")
                .and(predicate::str::contains(
                    "BACKUP STAGE BLOCK_COMMIT was held",
                ))
                .and(predicate::str::contains("--lock=ftwrl blocks them")),
        );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["consistent"], false, "{r}");
    s.mq()
        .args(["--lock=ftwrl", "--snapshot", &write])
        .assert()
        .success();
    assert!(s.write_succeeds(1));
}

/// One connection running `sql` back to back until `for_how_long` passed;
/// returns the errors it got (1317: its statement was killed).
fn repeating(s: &TestServer, sql: &'static str, for_how_long: Duration) -> JoinHandle<Vec<String>> {
    let opts = s.opts();
    std::thread::spawn(move || {
        let mut c = mysql::Conn::new(opts).unwrap();
        let end = Instant::now() + for_how_long;
        let mut errors = Vec::new();
        while Instant::now() < end {
            if let Err(e) = c.query_drop(sql) {
                errors.push(e.to_string());
            }
        }
        errors
    })
}

fn setup_engines(s: &TestServer) {
    s.sql(
        "CREATE DATABASE d; CREATE TABLE d.inno (i INT) ENGINE=InnoDB; INSERT INTO d.inno VALUES (1); \
         CREATE TABLE d.q (i INT) ENGINE=InnoDB; INSERT INTO d.q VALUES (1); \
         CREATE TABLE d.my (i INT) ENGINE=MyISAM; INSERT INTO d.my VALUES (1)",
    );
}

/// backup-stage does not wait for running InnoDB statements: when a brief
/// MyISAM write blocks an attempt, a long InnoDB UPDATE that was running
/// too is no reason to wait (only the retry pause is).
#[test]
fn backup_stage_does_not_wait_out_an_innodb_write_that_never_blocked_it() {
    let s = server!();
    setup_engines(&s);
    let long = background(&s, "UPDATE d.inno SET i = i + 1 WHERE SLEEP(20) = 0");
    let brief = background(&s, "UPDATE d.my SET i = i + 1 WHERE SLEEP(1.5) = 0");
    s.mq()
        .args([
            "--lock=backup-stage",
            "--long-query-wait=5",
            "--lock-retry-delay=1",
            "--",
            "true",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("waiting for").not());
    brief.join().unwrap().unwrap();
    let _ = long.join();
}

/// BACKUP STAGE locks in two statements. A long MyISAM write lets START
/// through and holds BLOCK_COMMIT: the attempt must fail on the second
/// statement, never report a lock it did not get, and leave no backup stage
/// behind.
#[test]
fn an_attempt_whose_second_lock_statement_times_out_fails_and_holds_nothing() {
    let s = server!();
    setup_engines(&s);
    let long = background(&s, "UPDATE d.my SET i = i + 1 WHERE SLEEP(4) = 0");
    let out = s
        .mq()
        .args([
            "--lock=backup-stage",
            "--lock-wait-timeout=1",
            "--lock-retries=0",
            "--long-query-wait=0",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("BACKUP STAGE BLOCK_COMMIT"), "{stderr}");
    assert!(!stderr.contains("locked ("), "{stderr}");
    long.join().unwrap().unwrap();
    // Nothing stayed: another backup can start at once.
    s.sql("BACKUP STAGE START; BACKUP STAGE END");
}

/// Statements sent as one (the session settings, the coordinates and the
/// final check go that way) report the failure of any of them, not only
/// of the first; those after a failure are reported as not run.
#[test]
fn statements_sent_together_report_a_failure_of_any_of_them() {
    use mysql_quiesce::server::batch;
    let s = server!();
    let mut conn = s.conn();
    let mut results = batch(
        &mut conn,
        &["SELECT 7", "SELECT * FROM mysql.no_such_table", "SELECT 8"],
    );
    let seven: Vec<mysql::Row> = results.next_rows().unwrap();
    assert_eq!(mysql::from_row::<u32>(seven[0].clone()), 7);
    let err = results.next_rows().unwrap_err();
    assert!(err.to_string().contains("no_such_table"), "{err}");
    let err = results.next_rows().unwrap_err();
    assert!(err.to_string().contains("`SELECT 8` was not run"), "{err}");
    // The session is still usable afterwards.
    assert_eq!(conn.query_first::<u32, _>("SELECT 9").unwrap(), Some(9));
}

/// A connection that runs the same short write again and again is not one
/// statement that still runs: what an attempt waited behind drops out once
/// it has finished, so the run locks instead of waiting to --long-query-wait.
#[test]
fn a_connection_repeating_one_short_write_is_not_an_endless_blocker() {
    let s = server!();
    setup_engines(&s);
    let repeated = repeating(
        &s,
        "UPDATE d.q SET i = i + 1 WHERE SLEEP(0.8) = 0",
        Duration::from_secs(15),
    );
    std::thread::sleep(Duration::from_millis(1100));
    s.mq()
        .args(["--lock=ftwrl", "--long-query-wait=8", "--", "true"])
        .assert()
        .success();
    let _ = repeated.join();
}

/// --kill-long-queries kills only what ran before the attempt: the same
/// statement text run again on the same connection, queued behind our
/// FLUSH, is a writer that must not be killed.
#[test]
fn kill_long_queries_never_kills_a_writer_queued_behind_our_lock() {
    let s = server!();
    setup_engines(&s);
    let innocent = repeating(
        &s,
        "UPDATE d.q SET i = i + 1 WHERE SLEEP(0.3) = 0",
        Duration::from_secs(6),
    );
    std::thread::sleep(Duration::from_millis(500));
    let long = background(&s, "UPDATE d.inno SET i = i + 1 WHERE SLEEP(10) = 0");
    let out = s
        .mq()
        .args([
            "--lock=ftwrl",
            "--lock-wait-timeout=3",
            "--kill-long-queries=0.6",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let _ = long.join();
    let errors = innocent.join().unwrap();
    assert!(
        errors.iter().all(|e| !e.contains("1317")),
        "a writer queued behind our lock was killed: {errors:?}\n{stderr}"
    );
    assert!(
        stderr.contains("killed the query of connection") && stderr.contains("SLEEP(10)"),
        "{stderr}"
    );
}

/// The default guard of ftwrl does not take the place of --kill-long-queries:
/// asked to kill, the run attempts and kills rather than waiting.
#[test]
fn kill_long_queries_is_not_silently_disabled_by_the_default_guard() {
    let s = server!();
    setup_engines(&s);
    let long = background(&s, "UPDATE d.inno SET i = i + 1 WHERE SLEEP(20) = 0");
    std::thread::sleep(Duration::from_millis(1500));
    s.mq()
        .args([
            "--lock=ftwrl",
            "--lock-wait-timeout=3",
            "--kill-long-queries=1",
            "--long-query-wait=5",
            "--",
            "true",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("killed the query"));
    let _ = long.join();
}

/// A rotation of the binary log under the lock (FLUSH BINARY LOGS from a
/// binlog-shipping job) logs no change: the coordinates stay exact.
#[test]
fn a_binlog_rotation_under_the_lock_is_not_a_write_through_it() {
    let s = server!();
    for mode in ["ftwrl", "backup-stage"] {
        s.mq()
            .args([
                &format!("--lock={mode}"),
                "-v",
                "--snapshot",
                &format!("{} -e 'FLUSH BINARY LOGS'", s.client()),
            ])
            .assert()
            .success()
            .stderr(predicate::str::contains(
                "the binary log was rotated under the lock",
            ));
    }
}

/// The same server named twice (a socket and a TCP address, say) could never
/// be locked twice: refused with 78 before anything is locked, instead of
/// failing every round with 75 as if a retry could help.
#[test]
fn the_same_server_given_as_two_instances_is_refused_with_78() {
    let s = server!();
    common::mysql_quiesce()
        .args([
            "--no-defaults",
            "--lock=backup-stage",
            &format!("--lock-file={}", s.path("l").display()),
        ])
        .arg(format!(
            "--instance=ONE=mysql://root@localhost/?socket={}",
            s.socket.display()
        ))
        .arg(format!("--instance=TWO=mysql://root@127.0.0.1:{}", s.port))
        .args(["--", "true"])
        .assert()
        .code(78)
        .stderr(
            predicate::str::contains("are the same server")
                .and(predicate::str::contains("Nothing was locked")),
        );
    assert!(s.write_succeeds(1));
}
