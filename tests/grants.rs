//! The GRANT statements of src/grants.rs (README, man page, `--check`), run on
//! a real MariaDB: an account made with exactly them can do the run, and
//! without any one of them it cannot: `--check` then exits 77 and prints the
//! GRANT for what is missing, or (for what `--check` does not test) the run
//! itself fails. MySQL 9 and MariaDB 11: tests/server_matrix.rs.

mod common;

use common::server::TestServer;
use mysql_quiesce::cli::LockMode;
use mysql_quiesce::grants::{self, Column, Usage};
use std::process::Output;

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// mysql-quiesce as `user` against `s`, with `args`.
fn run_as(s: &TestServer, user: &str, args: &[&str]) -> Output {
    let mut cmd = common::mysql_quiesce();
    cmd.args(s.args())
        .arg(format!("--user={user}"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_printed_grants_are_exactly_enough_on_mariadb() {
    let Some((_source, replica)) = TestServer::replica_pair() else {
        return;
    };
    let cases: [(&str, Usage, &[&str]); 3] = [
        (
            "q_default",
            Usage {
                mode: LockMode::BackupStage,
                guard: false,
                kill: false,
                stop_replica_sql: false,
            },
            &[],
        ),
        (
            "q_ftwrl_guard",
            Usage {
                mode: LockMode::Ftwrl,
                guard: true,
                kill: false,
                stop_replica_sql: false,
            },
            &["--lock=ftwrl", "--long-query-guard=30"],
        ),
        (
            "q_everything",
            Usage {
                mode: LockMode::BackupStage,
                guard: true,
                kill: true,
                stop_replica_sql: true,
            },
            &[
                "--lock=backup-stage",
                "--long-query-guard=30",
                "--kill-long-queries=0.5",
                "--stop-replica-sql",
            ],
        ),
    ];
    for (user, usage, options) in cases {
        let account = grants::account(user, "localhost");
        let statements = grants::create_statements(Column::Mariadb, &usage, &account);
        replica.sql(&statements.join(" ").replace("'<password>'", "''"));
        let mut args: Vec<&str> = options.to_vec();
        args.extend(["--", "true"]);
        let out = run_as(&replica, user, &args);
        assert!(
            out.status.success(),
            "{user} with {statements:?}: {}",
            text(&out)
        );
        let mut check: Vec<&str> = options.to_vec();
        check.push("--check");
        let out = run_as(&replica, user, &check);
        assert!(out.status.success(), "{user} --check: {}", text(&out));

        // Each one is needed.
        for (privilege, on) in grants::privileges(Column::Mariadb, &usage) {
            let revoke = format!("REVOKE {privilege} ON {on} FROM {account}");
            replica.sql(&revoke);
            let checked = run_as(&replica, user, &check);
            let grant = format!("GRANT {privilege} ON {on} TO {account};");
            if checked.status.code() == Some(77) {
                let stderr = String::from_utf8_lossy(&checked.stderr);
                assert!(
                    stderr.contains(&format!("run as an administrator: {grant}")),
                    "{user} without {privilege}: --check does not print {grant}:\n{stderr}"
                );
            } else {
                assert!(checked.status.success(), "{user}: {}", text(&checked));
                let run = run_as(&replica, user, &args);
                assert!(
                    !run.status.success(),
                    "{user} ran without {privilege}, which the grants list says it needs: {}",
                    text(&run)
                );
            }
            replica.sql(&format!("GRANT {privilege} ON {on} TO {account}"));
        }
        let out = run_as(&replica, user, &args);
        assert!(
            out.status.success(),
            "{user} after the re-grants: {}",
            text(&out)
        );
    }
}
