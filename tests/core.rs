//! The core contract against a real MariaDB: the lock is held while hooks and
//! COMMAND run, stdout is passed through, exit statuses, hook environment,
//! coordinates, report, bounded lock waits, option files.

mod common;

use mysql::prelude::Queryable;
use predicates::prelude::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read json")).expect("valid json")
}

#[test]
fn writes_are_blocked_while_the_snapshot_runs_and_resume_after() {
    let s = server!();
    s.sql("CREATE DATABASE d; CREATE TABLE d.t (i INT) ENGINE=InnoDB; CREATE TABLE d.m (i INT) ENGINE=MyISAM");
    for mode in ["ftwrl", "backup-stage", "auto"] {
        for table in ["d.t", "d.m"] {
            // The hook succeeds only if a write from another session times out.
            let hook = s.blocked_write_hook(table);
            s.mq()
                .arg(format!("--lock={mode}"))
                .arg("--snapshot")
                .arg(&hook)
                .assert()
                .success();
            assert!(s.write_succeeds(1), "writes must work again after the run");
        }
    }
    assert_eq!(s.value("SELECT COUNT(*) FROM d.t").as_deref(), Some("0"));
    assert_eq!(s.value("SELECT COUNT(*) FROM d.m").as_deref(), Some("0"));
}

#[test]
fn stdout_of_command_and_snapshot_hooks_is_passed_through_byte_for_byte() {
    let s = server!();
    s.mq()
        .args([
            "--pre",
            "echo pre-noise",
            "--snapshot",
            "printf 'a\\0b'",
            "--post",
            "echo post-noise",
        ])
        .args(["--", "printf", "snap-0123\\n"])
        .assert()
        .success()
        .stdout(predicate::eq(&b"a\0bsnap-0123\n"[..]))
        .stderr(predicate::str::contains("pre-noise").and(predicate::str::contains("post-noise")));
}

#[test]
fn command_status_is_passed_through_and_post_and_after_still_run() {
    let s = server!();
    let log = s.path("log");
    let append = |tag: &str| format!("echo {tag}=$MYSQL_QUIESCE_STATUS >> {}", log.display());
    s.mq()
        .args(["--post", &append("post"), "--after", &append("after")])
        .args(["--", "sh", "-c", "exit 7"])
        .assert()
        .code(7);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "post=failed\nafter=failed\n"
    );
    assert!(s.write_succeeds(1));
}

#[test]
fn first_failing_pre_hook_skips_the_rest_of_pre_and_snapshot() {
    let s = server!();
    let log = s.path("log");
    let append = |tag: &str| format!("echo {tag} >> {}", log.display());
    s.mq()
        .args([
            "--pre",
            "exit 4",
            "--pre",
            &append("pre2"),
            "--snapshot",
            &append("snap"),
        ])
        .args(["--post", &append("post"), "--after", &append("after")])
        .assert()
        .code(4);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "post\nafter\n");
}

#[test]
fn missing_or_unexecutable_command_fails_before_connecting() {
    // No server needed: preflight runs before connecting.
    let dir = tempfile::tempdir().unwrap();
    let lock = format!("--lock-file={}", dir.path().join("l").display());
    common::mysql_quiesce()
        .args([
            "--no-defaults",
            "--socket=/nonexistent/sock",
            &lock,
            "--",
            "no-such-program-xyz",
        ])
        .assert()
        .code(127)
        .stderr(predicate::str::contains("no-such-program-xyz"));
    let script = dir.path().join("not-exec");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    common::mysql_quiesce()
        .args(["--no-defaults", "--socket=/nonexistent/sock", &lock, "--"])
        .arg(&script)
        .assert()
        .code(126);
}

#[test]
fn exit_statuses_for_usage_config_and_connection_errors() {
    let dir = tempfile::tempdir().unwrap();
    let lock = format!("--lock-file={}", dir.path().join("l").display());
    common::mysql_quiesce()
        .args(["--no-defaults", "--no-such-flag"])
        .assert()
        .code(64);
    common::mysql_quiesce()
        .args(["--no-defaults", "--lock-wait-timeout=-1", &lock])
        .assert()
        .code(78)
        .stderr(predicate::str::contains("lock-wait-timeout"));
    common::mysql_quiesce()
        .args(["--no-defaults", "--socket=/nonexistent/sock", &lock])
        .assert()
        .code(69)
        .stderr(predicate::str::contains("Nothing was locked"));
}

#[test]
fn wrong_password_is_77_and_missing_reload_privilege_is_77() {
    let s = server!();
    s.sql("CREATE USER q@localhost IDENTIFIED BY 'right'; CREATE USER weak@localhost IDENTIFIED BY 'pw'");
    common::mysql_quiesce()
        .args([
            "--no-defaults",
            "-uq",
            "-pwrong",
            &format!("--lock-file={}", s.path("l").display()),
        ])
        .arg(format!("--socket={}", s.socket.display()))
        .assert()
        .code(77)
        .stderr(predicate::str::contains("Access denied"));
    common::mysql_quiesce()
        .args([
            "--no-defaults",
            "-uweak",
            "-ppw",
            &format!("--lock-file={}", s.path("l").display()),
        ])
        .arg(format!("--socket={}", s.socket.display()))
        .assert()
        .code(77)
        .stderr(predicate::str::contains("RELOAD"));
}

#[test]
fn hooks_get_the_documented_environment_and_never_the_password() {
    let s = server!();
    s.sql(
        "CREATE USER q@localhost IDENTIFIED BY 'Secret-pw-42'; \
         GRANT RELOAD, BINLOG MONITOR ON *.* TO q@localhost",
    );
    let dump = |phase: &str| format!("env > {}", s.path(phase).display());
    let report = s.path("report.json");
    common::mysql_quiesce()
        .args([
            "--no-defaults",
            "-uq",
            &format!("--lock-file={}", s.path("l").display()),
            &format!("--report={}", report.display()),
        ])
        .arg(format!("--socket={}", s.socket.display()))
        .env("MYSQL_PWD", "Secret-pw-42")
        .args([
            "--pre",
            &dump("pre"),
            "--snapshot",
            &dump("snapshot"),
            "--post",
            &dump("post"),
        ])
        .args(["--after", &dump("after")])
        .assert()
        .success();
    let env = |phase: &str| std::fs::read_to_string(s.path(phase)).unwrap();
    for phase in ["pre", "snapshot", "post", "after"] {
        let e = env(phase);
        assert!(
            e.contains(&format!("MYSQL_QUIESCE_PHASE={phase}\n")),
            "{phase}: {e}"
        );
        assert!(
            !e.contains("Secret-pw-42"),
            "password leaked to the {phase} hook"
        );
        assert!(
            !e.contains("MYSQL_PWD="),
            "MYSQL_PWD leaked to the {phase} hook"
        );
        // The values, not just the names: each must be what the report says.
        let r = json(&report);
        let c = &r["coordinates"];
        for (key, value) in [
            ("RUN_ID", r["run_id"].as_str().unwrap().to_string()),
            ("LOCK", "backup-stage".to_string()),
            ("SERVER_FLAVOR", "mariadb".to_string()),
            ("CONNECTION_ID", r["lock"]["connection_id"].to_string()),
            (
                "SERVER_VERSION",
                r["server"]["version"].as_str().unwrap().to_string(),
            ),
            (
                "BINLOG_FILE",
                c["binlog_file"].as_str().unwrap().to_string(),
            ),
            ("BINLOG_POS", c["binlog_position"].to_string()),
            ("GTID", c["gtid"].as_str().unwrap().to_string()),
        ] {
            assert!(
                !value.is_empty() && value != "null",
                "report lacks {key}: {r:#}"
            );
            assert!(
                e.contains(&format!("MYSQL_QUIESCE_{key}={value}\n")),
                "{phase}: MYSQL_QUIESCE_{key} is not {value:?}:\n{e}"
            );
        }
    }
    assert!(env("post").contains("MYSQL_QUIESCE_STATUS=ok\n"));
    assert!(env("after").contains("MYSQL_QUIESCE_STATUS=ok\n"));
    assert!(!env("pre").contains("MYSQL_QUIESCE_STATUS"));
    assert!(env("pre").contains("MYSQL_QUIESCE_BINLOG_FILE=binlog."));
}

#[test]
fn password_given_on_the_command_line_is_masked_in_the_process_list() {
    let s = server!();
    s.sql("CREATE USER q@localhost IDENTIFIED BY 'Masked-pw-77'; GRANT RELOAD, BINLOG MONITOR ON *.* TO q@localhost");
    for form in ["-pMasked-pw-77", "--password=Masked-pw-77"] {
        // The COMMAND's parent is mysql-quiesce itself.
        let out = common::mysql_quiesce()
            .args([
                "--no-defaults",
                "-uq",
                form,
                &format!("--lock-file={}", s.path("l").display()),
            ])
            .arg(format!("--socket={}", s.socket.display()))
            .args([
                "--",
                "sh",
                "-c",
                "tr '\\0' ' ' < /proc/$PPID/cmdline; echo; ps -o args= -p $PPID",
            ])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let shown = String::from_utf8_lossy(&out);
        assert!(shown.contains("mysql-quiesce"), "{shown}");
        assert!(!shown.contains("Masked-pw-77"), "password visible: {shown}");
    }
}

#[test]
fn coordinates_file_matches_what_the_server_reports_afterwards() {
    let s = server!();
    s.sql("CREATE DATABASE d; CREATE TABLE d.t (i INT); INSERT INTO d.t VALUES (1)");
    let coords = s.path("coords.json");
    let seen = s.path("seen");
    s.mq()
        .arg(format!("--coordinates-file={}", coords.display()))
        // The file is complete before any pre hook runs.
        .args([
            "--pre",
            &format!("cp {} {}", coords.display(), seen.display()),
        ])
        .assert()
        .success();
    let c = json(&coords);
    assert_eq!(json(&seen), c);
    let mut conn = s.conn();
    let row: mysql::Row = conn.query_first("SHOW MASTER STATUS").unwrap().unwrap();
    let file: String = row.get("File").unwrap();
    let pos: u64 = row.get("Position").unwrap();
    assert_eq!(c["binlog_file"], file.as_str());
    assert_eq!(c["binlog_position"], pos);
    let gtid = s
        .value("SELECT @@global.gtid_binlog_pos")
        .unwrap_or_default();
    assert_eq!(c["gtid"].as_str().unwrap_or(""), gtid);
}

#[test]
fn with_lock_none_a_run_succeeds_but_never_claims_a_consistent_database() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    common::mysql_quiesce()
        .args(["--no-defaults", "--lock=none", "--lock-file"])
        .arg(dir.path().join("l"))
        .arg("--report")
        .arg(&report)
        .args(["--", "true"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "no database lock was taken (--lock=none)",
        ));
    let r = json(&report);
    assert_eq!(
        (r["outcome"].as_str(), r["consistent"].as_bool()),
        (Some("ok"), Some(false))
    );
}

#[test]
fn report_records_phases_hooks_coordinates_and_outcome() {
    let s = server!();
    let report = s.path("report.json");
    s.mq()
        .arg(format!("--report={}", report.display()))
        .args(["--pre", "true", "--", "true"])
        .assert()
        .success()
        .stderr(predicate::str::contains("lock held"));
    let r = json(&report);
    assert_eq!(r["outcome"], "ok");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["consistent"], true);
    assert_eq!(
        r["lock"]["mode"], "backup-stage",
        "auto picks backup-stage on MariaDB >= 10.4.1"
    );
    assert_eq!(r["lock"]["verified"], true);
    // The lock was held at least as long as the pre hook that ran under it.
    let pre_ms = r["hooks"][0]["duration_ms"].as_f64().unwrap();
    assert_eq!(r["hooks"][0]["phase"], "pre");
    assert!(r["lock"]["held_ms"].as_f64().unwrap() >= pre_ms, "{r:#}");
    assert!(r["coordinates"]["binlog_file"]
        .as_str()
        .unwrap()
        .starts_with("binlog."));
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
            "pre",
            "snapshot",
            "verify",
            "unlock"
        ]
    );
    let hooks = r["hooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[1]["command"], "true");
    assert_eq!(hooks[1]["exit_code"], 0);
}

#[test]
fn quiet_prints_nothing_on_success_and_verbose_shows_the_sql() {
    let s = server!();
    s.mq()
        .arg("-q")
        .assert()
        .success()
        .stderr(predicate::str::is_empty());
    s.mq()
        .args(["-v", "--lock=ftwrl"])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("SQL> FLUSH TABLES WITH READ LOCK")
                .and(predicate::str::contains("SQL> UNLOCK TABLES")),
        );
    s.mq().arg("-v").assert().success().stderr(
        predicate::str::contains("SQL> BACKUP STAGE START")
            .and(predicate::str::contains("SQL> BACKUP STAGE BLOCK_COMMIT"))
            .and(predicate::str::contains("SQL> BACKUP STAGE END")),
    );
}

#[test]
fn hook_that_overruns_its_timeout_is_killed_with_its_group_and_exits_124() {
    let s = server!();
    let marker = s.path("grandchild-survived");
    let hook = format!("(sleep 3; touch {}) & sleep 30", marker.display());
    let started = Instant::now();
    s.mq()
        .args(["--hook-timeout=0.5", "--snapshot", &hook])
        .assert()
        .code(124);
    assert!(started.elapsed() < Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !marker.exists(),
        "the hook's background child outlived the timeout"
    );
    assert!(s.write_succeeds(1));
}

/// A long write in another session keeps FTWRL from completing. Each attempt
/// must give up within its budget (writers are blocked only that long), and
/// after the retries the run exits 75 with nothing locked.
#[test]
fn lock_wait_is_bounded_and_gives_up_with_75_behind_a_long_write() {
    let s = server!();
    s.sql("CREATE DATABASE d; CREATE TABLE d.slow (i INT); INSERT INTO d.slow VALUES (1); CREATE TABLE d.w (i INT)");
    let opts = s.opts();
    let long_write = std::thread::spawn(move || {
        let mut c = mysql::Conn::new(opts).unwrap();
        c.query_drop("UPDATE d.slow SET i = i + SLEEP(10)").unwrap();
    });
    std::thread::sleep(Duration::from_millis(300));
    let writer = common::load::Writer::start(s.opts(), "d.w");
    s.mq()
        .args([
            "--lock=ftwrl",
            "--lock-wait-timeout=0.3",
            "--lock-retries=2",
            "--lock-retry-delay=1.5",
            // Attempt at once, not waiting for the UPDATE to finish.
            "--long-query-wait=0",
        ])
        .assert()
        .code(75)
        .stderr(
            predicate::str::contains("nothing is locked")
                .and(predicate::str::contains("attempt 3/3")),
        );
    let worst = writer.stop();
    long_write.join().unwrap();
    eprintln!("measured: worst writer wait {worst:?}");
    // A safety bound, not a speed claim (bench/ measures): each attempt blocks
    // writers at most its 0.3 s budget. The server's own lock_wait_timeout
    // counts whole seconds (it would end an attempt after 1 s), so only the
    // watchdog's KILL QUERY at 0.3 s meets this bound; an unbounded attempt
    // would block writers ~10 s. (A timed-out FTWRL can keep the global read
    // lock on MySQL, not on MariaDB: tests/server_matrix.rs checks the release
    // between attempts there.)
    assert!(
        worst < Duration::from_millis(800),
        "a writer waited {worst:?}"
    );
}

#[test]
fn killing_the_locking_connection_mid_snapshot_is_reported_as_inconsistent() {
    let s = server!();
    let report = s.path("report.json");
    let log = s.path("log");
    let kill = format!("{} -e \"KILL $MYSQL_QUIESCE_CONNECTION_ID\"", s.client());
    s.mq()
        .arg(format!("--report={}", report.display()))
        .args(["--snapshot", &kill])
        .args([
            "--post",
            &format!("echo $MYSQL_QUIESCE_STATUS > {}", log.display()),
        ])
        .assert()
        .code(65)
        .stderr(predicate::str::contains("CONSISTENCY NOT GUARANTEED"));
    let r = json(&report);
    assert_eq!(r["consistent"], false);
    assert_eq!(r["exit_code"], 65);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "failed\n");
    assert!(s.write_succeeds(1));
}

#[test]
fn option_file_groups_and_precedence_command_line_over_files_over_environment() {
    let s = server!();
    let log = s.path("log");
    let cnf = s.path("my.cnf");
    std::fs::write(
        &cnf,
        format!(
            "[client]\nuser = root\nsocket = {socket}\ndefault-character-set = utf8mb4\n\
             [mysql-quiesce]\npre = echo one >> {log}\npre = \"echo two >> {log}\"\nlock-file = {lock}\n",
            socket = s.socket.display(),
            log = log.display(),
            lock = s.path("l").display()
        ),
    )
    .unwrap();
    let defaults = format!("--defaults-file={}", cnf.display());
    // The file beats the environment (as in the mysql client): a stray
    // MYSQL_UNIX_PORT must not send the lock to another server.
    common::mysql_quiesce()
        .arg(&defaults)
        .env("MYSQL_UNIX_PORT", "/nonexistent/from-env")
        .assert()
        .success();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\ntwo\n");
    // The command line beats the file, and its --pre replaces the file's list.
    common::mysql_quiesce()
        .arg(&defaults)
        .arg("--socket=/nonexistent/from-command-line")
        .assert()
        .code(69)
        .stderr(predicate::str::contains("from-command-line"));
    common::mysql_quiesce()
        .arg(&defaults)
        .args(["--pre", &format!("echo three >> {}", log.display())])
        .assert()
        .success();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\ntwo\nthree\n");
}

#[test]
fn unknown_key_in_the_tool_group_is_a_configuration_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cnf = dir.path().join("my.cnf");
    std::fs::write(&cnf, "[mysql-quiesce]\nquiet\nlock-retires = 3\n").unwrap();
    common::mysql_quiesce()
        .arg(format!("--defaults-file={}", cnf.display()))
        .assert()
        .code(78)
        .stderr(predicate::str::contains("lock-retires").and(predicate::str::contains(":3")));
}

#[test]
fn dry_run_prints_the_plan_without_connecting() {
    common::mysql_quiesce()
        .args([
            "--no-defaults",
            "--socket=/nonexistent/sock",
            "--pre",
            "echo hi",
            "--dry-run",
            "--",
            "true",
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("FLUSH TABLES WITH READ LOCK")
                .and(predicate::str::contains("pre: echo hi"))
                .and(predicate::str::contains("UNLOCK TABLES")),
        );
}

#[test]
fn check_connects_and_reports_missing_privileges_without_locking() {
    let s = server!();
    // What the server received (its general query log), not what we say.
    s.sql("SET GLOBAL general_log_file = 'check.log'; SET GLOBAL general_log = ON");
    s.mq()
        .arg("--check")
        .assert()
        .success()
        .stderr(predicate::str::contains("check passed"));
    s.sql("SET GLOBAL general_log = OFF");
    let log = std::fs::read_to_string(s.dir.path().join("data/check.log")).unwrap();
    assert!(
        log.contains("information_schema.USER_PRIVILEGES"),
        "the check did not run: {log}"
    );
    for lock in [
        "BACKUP STAGE",
        "FLUSH TABLES",
        "LOCK INSTANCE",
        "LOCK TABLES",
    ] {
        assert!(!log.contains(lock), "--check sent {lock}:\n{log}");
    }
    s.sql("CREATE USER weak@localhost IDENTIFIED BY 'pw'");
    common::mysql_quiesce()
        .args([
            "--no-defaults",
            "-uweak",
            "-ppw",
            "--check",
            &format!("--lock-file={}", s.path("l").display()),
        ])
        .arg(format!("--socket={}", s.socket.display()))
        .assert()
        .code(77)
        .stderr(predicate::str::contains("RELOAD"));
}

#[test]
fn man_page_and_completions_are_generated_from_the_cli() {
    common::mysql_quiesce()
        .args(["generate", "man"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains(".TH")
                .and(predicate::str::contains("EXIT STATUS"))
                .and(predicate::str::contains("lock\\-wait\\-timeout")),
        );
    common::mysql_quiesce()
        .args(["generate", "bash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--max-lock-time"));
}

#[test]
fn the_committed_man_page_matches_the_generator() {
    let generated = common::mysql_quiesce()
        .args(["--no-defaults", "generate", "man"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let committed =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/man/mysql-quiesce.1")).unwrap();
    assert!(
        generated == committed,
        "man/mysql-quiesce.1 is stale: run `cargo run -- --no-defaults generate man > man/mysql-quiesce.1`"
    );
}

/// Parse a Prometheus text file: every sample as `name{labels}` -> value,
/// after checking that each metric has its HELP line and a `gauge` TYPE line.
fn parse_metrics(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut samples = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let name = series.split('{').next().unwrap();
        for header in [format!("# HELP {name} "), format!("# TYPE {name} gauge\n")] {
            assert!(text.contains(&header), "{name}: no `{}`", header.trim());
        }
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(value.is_finite() && value >= 0.0, "{line:?}");
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "{series} twice"
        );
    }
    samples
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn metrics_file_has_every_gauge_and_a_failed_run_keeps_the_last_success_time() {
    let s = server!();
    s.sql("CREATE DATABASE m; CREATE TABLE m.t (i INT)");
    let metrics = s.path("mq.prom");
    // Another session holds a table write lock for 1 s: FLUSH TABLES WITH READ
    // LOCK must wait for it, so lock_wait_seconds has something to measure.
    let mut blocker = s.conn();
    blocker.query_drop("LOCK TABLES m.t WRITE").unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        blocker.query_drop("UNLOCK TABLES").unwrap();
    });
    let before = unix_now();
    s.mq()
        .arg(format!("--metrics-file={}", metrics.display()))
        .args(["--lock=ftwrl", "--lock-wait-timeout=30", "--lock-retries=0"])
        .args(["--pre", "sleep 0.3"])
        .assert()
        .success();
    let after = unix_now();
    release.join().unwrap();
    let first = parse_metrics(&std::fs::read_to_string(&metrics).unwrap());
    let names: Vec<&str> = first.keys().map(|k| k.split('{').next().unwrap()).collect();
    let mut names = names;
    names.dedup();
    assert_eq!(
        names,
        [
            "mysql_quiesce_frozen_seconds",
            "mysql_quiesce_last_run_consistent",
            "mysql_quiesce_last_run_exit_code",
            "mysql_quiesce_last_run_success",
            "mysql_quiesce_last_run_timestamp_seconds",
            "mysql_quiesce_last_success_timestamp_seconds",
            "mysql_quiesce_lock_held_seconds",
            "mysql_quiesce_lock_wait_seconds",
            "mysql_quiesce_phase_seconds",
        ],
        "the documented gauges, no more, no less"
    );
    let v = |m: &std::collections::BTreeMap<String, f64>, k: &str| -> f64 {
        *m.get(k).unwrap_or_else(|| panic!("{k} missing: {m:?}"))
    };
    let run_time = v(&first, "mysql_quiesce_last_run_timestamp_seconds");
    assert!(before <= run_time && run_time <= after, "{run_time}");
    assert_eq!(
        v(&first, "mysql_quiesce_last_success_timestamp_seconds"),
        run_time
    );
    assert_eq!(v(&first, "mysql_quiesce_last_run_success"), 1.0);
    assert_eq!(v(&first, "mysql_quiesce_last_run_exit_code"), 0.0);
    assert_eq!(v(&first, "mysql_quiesce_last_run_consistent"), 1.0);
    // Lower bounds only, from the blocker's 1 s and the hook's 0.3 s.
    let wait = v(&first, "mysql_quiesce_lock_wait_seconds");
    assert!((0.5..30.0).contains(&wait), "lock_wait_seconds {wait}");
    assert!(v(&first, "mysql_quiesce_lock_held_seconds") >= 0.3);
    assert_eq!(v(&first, "mysql_quiesce_frozen_seconds"), 0.0);
    assert!(v(&first, "mysql_quiesce_phase_seconds{phase=\"pre\"}") >= 0.3);
    for phase in ["connect", "lock", "unlock"] {
        let key = format!("mysql_quiesce_phase_seconds{{phase=\"{phase}\"}}");
        assert!(first.contains_key(&key), "{key} missing: {first:?}");
    }

    // A failed run says so, and carries the last success time over.
    s.mq()
        .arg(format!("--metrics-file={}", metrics.display()))
        .args(["--", "false"])
        .assert()
        .code(1);
    let second = parse_metrics(&std::fs::read_to_string(&metrics).unwrap());
    assert_eq!(v(&second, "mysql_quiesce_last_run_success"), 0.0);
    assert_eq!(v(&second, "mysql_quiesce_last_run_exit_code"), 1.0);
    assert_eq!(v(&second, "mysql_quiesce_last_run_consistent"), 0.0);
    assert!(v(&second, "mysql_quiesce_last_run_timestamp_seconds") > run_time);
    assert_eq!(
        v(&second, "mysql_quiesce_last_success_timestamp_seconds"),
        run_time,
        "the failed run must keep the first run's success time"
    );
}

#[test]
fn the_shipped_example_option_file_parses_with_every_option_uncommented() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/mysql-quiesce.cnf");
    common::mysql_quiesce()
        .arg(format!("--defaults-file={example}"))
        .arg("--print-defaults")
        .assert()
        .success();
    // Every documented `#key = value` line must be a real option with a valid value.
    let text = std::fs::read_to_string(example).unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.cnf");
    std::fs::write(&all, uncommented).unwrap();
    // The service's view: the shared group and [mysql-quiesce-service].
    common::mysql_quiesce()
        .arg(format!("--defaults-file={}", all.display()))
        .arg("--defaults-group-suffix=-service")
        .arg("--print-defaults")
        .assert()
        .success()
        .stdout(
            predicate::str::contains("--lock-wait-timeout=1")
                .and(predicate::str::contains("--freeze=/var/lib/mysql")),
        );
}

/// Writers that commit as fast as they can, on their own connections.
fn busy_writers(
    s: &common::server::TestServer,
    n: usize,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    Vec<std::thread::JoinHandle<u64>>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let handles = (0..n)
        .map(|_| {
            let (opts, stop) = (s.opts(), stop.clone());
            std::thread::spawn(move || {
                let mut c = mysql::Conn::new(opts).unwrap();
                let mut commits = 0;
                while !stop.load(Ordering::Relaxed) {
                    c.query_drop("INSERT INTO busy.t VALUES (1)").unwrap();
                    commits += 1;
                }
                commits
            })
        })
        .collect();
    (stop, handles)
}

#[test]
fn the_binary_log_ends_exactly_at_the_recorded_position_under_concurrent_writes() {
    let s = server!();
    s.sql("CREATE DATABASE busy; CREATE TABLE busy.t (i INT) ENGINE=InnoDB");
    let (stop, writers) = busy_writers(&s, 4);
    std::thread::sleep(Duration::from_millis(200));
    // The snapshot: the size of the binary log the coordinates name, taken
    // while locked. Commits go on until the lock and after it: only
    // coordinates read while commits are blocked equal that size.
    let sizes = s.path("sizes");
    for mode in ["auto", "ftwrl", "backup-stage", "auto", "ftwrl"] {
        let _ = std::fs::remove_file(&sizes);
        s.mq()
            .arg(format!("--lock={mode}"))
            .args([
                "--snapshot",
                &format!(
                    "echo \"$(stat -c %s {dir}/$MYSQL_QUIESCE_BINLOG_FILE) $MYSQL_QUIESCE_BINLOG_POS\" > {out}",
                    dir = s.dir.path().display(),
                    out = sizes.display()
                ),
            ])
            .assert()
            .success();
        let text = std::fs::read_to_string(&sizes).unwrap();
        let (size, pos) = text.trim().split_once(' ').unwrap();
        assert_eq!(
            size, pos,
            "--lock={mode}: the binary log was {size} bytes while locked, the coordinates say {pos}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let commits: u64 = writers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(
        commits > 100,
        "the writers hardly wrote ({commits} commits)"
    );
}

#[test]
fn post_and_after_hooks_still_run_after_a_hook_timeout_or_the_deadline() {
    let s = server!();
    for (limit, hook) in [
        ("--hook-timeout=0.5", "--pre"),
        ("--max-lock-time=1", "--snapshot"),
    ] {
        let log = s.path("log");
        let _ = std::fs::remove_file(&log);
        s.mq()
            .args([limit, hook, "sleep 30"])
            .args([
                "--post",
                &format!("echo post=$MYSQL_QUIESCE_STATUS >> {}", log.display()),
            ])
            .args([
                "--after",
                &format!("echo after=$MYSQL_QUIESCE_STATUS >> {}", log.display()),
            ])
            .assert()
            .code(124);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "post=failed\nafter=failed\n",
            "{limit}"
        );
        assert!(s.write_succeeds(1), "{limit}: still locked");
    }
}

#[test]
fn before_hooks_run_before_connecting_and_a_failing_one_stops_the_run_with_nothing_held() {
    let s = server!();
    let log = s.path("log");
    // Before hooks see no connection yet: the lock is the mode asked for.
    s.mq()
        .args([
            "--before",
            &format!("echo \"$MYSQL_QUIESCE_PHASE [$MYSQL_QUIESCE_CONNECTION_ID] $MYSQL_QUIESCE_LOCK\" >> {}", log.display()),
            "--pre",
            &format!("echo pre >> {}", log.display()),
        ])
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "before [] auto\npre\n"
    );
    // A failing before hook: its status, nothing connected (the server never
    // sees a lock statement), no pre or after hooks.
    let report = s.path("report.json");
    let _ = std::fs::remove_file(&log);
    s.sql("SET GLOBAL general_log_file = 'general.log'; SET GLOBAL general_log = ON");
    s.mq()
        .args([
            &format!("--report={}", report.display()),
            "--before",
            "exit 7",
            "--pre",
            &format!("echo pre >> {}", log.display()),
            "--after",
            &format!("echo after >> {}", log.display()),
        ])
        .assert()
        .code(7);
    s.sql("SET GLOBAL general_log = OFF");
    assert!(!log.exists(), "hooks ran after a failing before hook");
    let r = json(&report);
    assert!(
        r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["name"] != "connect"),
        "{r:#}"
    );
    let general = std::fs::read_to_string(s.dir.path().join("data/general.log")).unwrap();
    assert!(
        !general.contains("BACKUP STAGE") && !general.contains("WITH READ LOCK"),
        "{general}"
    );
}

#[test]
fn a_password_from_the_command_line_a_file_or_a_prompt_never_reaches_hooks() {
    let s = server!();
    s.sql(
        "CREATE USER q@localhost IDENTIFIED BY 'Secret-pw-42'; \
         GRANT RELOAD, BINLOG MONITOR ON *.* TO q@localhost",
    );
    let cnf = s.path("pw.cnf");
    std::fs::write(
        &cnf,
        format!(
            "[client]\nuser=q\npassword=Secret-pw-42\nsocket={}\n",
            s.socket.display()
        ),
    )
    .unwrap();
    let env = s.path("env");
    let dump = format!(
        "env > {}; tr '\\0' ' ' < /proc/$PPID/cmdline >> {}",
        env.display(),
        env.display()
    );
    let lock = format!("--lock-file={}", s.path("l").display());
    let socket = format!("--socket={}", s.socket.display());
    for how in ["command line", "option file"] {
        let _ = std::fs::remove_file(&env);
        let mut c = common::mysql_quiesce();
        match how {
            "command line" => c.args(["--no-defaults", "-uq", "-pSecret-pw-42", &socket]),
            _ => c.arg(format!("--defaults-file={}", cnf.display())),
        };
        c.args([&lock, "--snapshot", &dump]).assert().success();
        let seen = std::fs::read_to_string(&env).unwrap();
        assert!(seen.contains("MYSQL_QUIESCE_PHASE=snapshot"), "{seen}");
        assert!(
            !seen.contains("Secret-pw-42"),
            "{how}: the password reached the hook:\n{seen}"
        );
    }
    // A bare -p prompts on the terminal (here a pty made by script(1)),
    // without echo, and the password typed there works.
    let _ = std::fs::remove_file(&env);
    let inner = format!(
        "{} --no-defaults -uq -p {socket} {lock} --snapshot '{}'",
        env!("CARGO_BIN_EXE_mysql-quiesce"),
        dump.replace('\'', "'\\''")
    );
    let mut script = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    let mut out = script.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("Enter password: ") {
        let n = std::io::Read::read(&mut out, &mut buf).unwrap();
        assert!(n > 0, "no prompt: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    std::io::Write::write_all(script.stdin.as_mut().unwrap(), b"Secret-pw-42\n").unwrap();
    std::io::Read::read_to_end(&mut out, &mut seen).unwrap();
    let status = script.wait().unwrap();
    let shown = String::from_utf8_lossy(&seen);
    assert!(status.success(), "{shown}");
    assert!(
        !shown.contains("Secret-pw-42"),
        "the typed password was echoed: {shown}"
    );
    let hook_env = std::fs::read_to_string(&env).unwrap();
    assert!(
        !hook_env.contains("Secret-pw-42"),
        "the prompted password reached the hook"
    );
}
