//! Connecting exactly where and how the user said, against real servers:
//! which transport a port implies, TLS verification, the connect deadline,
//! and a lock session the server never drops as idle.

mod common;

use predicates::prelude::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read json")).expect("valid json")
}

/// mysql-quiesce with no option files and a run lock of its own, not yet
/// pointed at any server.
fn mq(dir: &Path) -> assert_cmd::Command {
    let mut cmd = common::mysql_quiesce();
    cmd.args([
        "--no-defaults".to_string(),
        "-uroot".to_string(),
        format!("--lock-file={}", dir.join("run.lock").display()),
        format!("--state-dir={}", dir.join("state").display()),
    ]);
    cmd
}

#[test]
fn a_port_on_the_command_line_connects_over_tcp_to_that_server() {
    let s = server!();
    let report = s.path("report.json");
    mq(s.dir.path())
        .args(["-P", &s.port.to_string(), "--report"])
        .arg(&report)
        .args(["--", "true"])
        .assert()
        .success();
    let r = json(&report);
    assert_eq!(
        r["instances"][0]["target"],
        format!("127.0.0.1:{}", s.port),
        "{r:#}"
    );
}

#[test]
fn a_port_from_an_option_file_that_would_go_unused_is_refused_before_connecting() {
    let s = server!();
    let cnf = s.path("client.cnf");
    let run_with_the_file = || {
        common::mysql_quiesce()
            .arg(format!("--defaults-file={}", cnf.display()))
            .args(["-uroot", "--lock-file"])
            .arg(s.path("run.lock"))
            .args(["--", "true"])
            .assert()
    };
    std::fs::write(&cnf, format!("[client]\nport = {}\n", s.port)).unwrap();
    run_with_the_file().code(78).stderr(
        predicate::str::contains(format!(
            "port {} (from {}:2) would not be used",
            s.port,
            cnf.display()
        ))
        .and(predicate::str::contains("protocol=TCP")),
    );
    // Saying which server is meant makes it work.
    std::fs::write(
        &cnf,
        format!("[client]\nport = {}\nprotocol = TCP\n", s.port),
    )
    .unwrap();
    run_with_the_file().success();
}

/// A CA, and a server certificate it signed for 127.0.0.1, made with openssl.
struct Pki {
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    other_ca: std::path::PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl (install it with scripts/install-deps.sh): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pki(dir: &Path) -> Pki {
    for (name, subject) in [("ca", "/CN=mq test CA"), ("other-ca", "/CN=someone else")] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                subject,
                "-keyout",
                &format!("{name}-key.pem"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server-key.pem",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName = IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
    Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
        other_ca: dir.join("other-ca.pem"),
    }
}

#[test]
fn tls_is_verified_against_the_given_ca_and_reported() {
    let certs = tempfile::tempdir().unwrap();
    let p = pki(certs.path());
    let s = server!(
        format!("--ssl-ca={}", p.ca.display()),
        format!("--ssl-cert={}", p.cert.display()),
        format!("--ssl-key={}", p.key.display()),
    );
    let tcp = [
        "-h".to_string(),
        "127.0.0.1".into(),
        "-P".into(),
        s.port.to_string(),
    ];
    let report = s.path("report.json");
    mq(s.dir.path())
        .args(&tcp)
        .arg("--ssl-mode=VERIFY_IDENTITY")
        .arg(format!("--ssl-ca={}", p.ca.display()))
        .arg("--report")
        .arg(&report)
        .args(["--", "true"])
        .assert()
        .success()
        .stderr(predicate::str::contains("over TLS ("));
    let r = json(&report);
    assert!(
        r["instances"][0]["tls"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "the report names the cipher: {r:#}"
    );
    // A certificate this CA did not sign is refused: nothing is locked.
    mq(s.dir.path())
        .args(&tcp)
        .arg(format!("--ssl-ca={}", p.other_ca.display()))
        .args(["--", "true"])
        .assert()
        .code(69)
        .stderr(
            predicate::str::contains("cannot connect to 127.0.0.1")
                .and(predicate::str::contains("Nothing was locked or frozen")),
        );
}

#[test]
fn tls_required_against_a_server_without_tls_fails_and_preferred_falls_back() {
    let s = server!();
    let tcp = [
        "-h".to_string(),
        "127.0.0.1".into(),
        "-P".into(),
        s.port.to_string(),
    ];
    mq(s.dir.path())
        .args(&tcp)
        .args(["--ssl-mode=REQUIRED", "--", "true"])
        .assert()
        .code(69);
    mq(s.dir.path())
        .args(&tcp)
        .args(["-v", "--ssl-mode=PREFERRED", "--", "true"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "does not offer TLS: connected without encryption",
        ));
}

#[test]
fn connecting_to_a_server_that_never_answers_gives_up_at_connect_timeout() {
    // Accepts TCP connections but never sends the handshake.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    mq(dir.path())
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "--connect-timeout=1",
            "--",
            "true",
        ])
        .assert()
        .code(69)
        .stderr(predicate::str::contains(
            "no answer within --connect-timeout (1 s)",
        ));
    // Without the deadline the wait is the 120 s I/O backstop; 30 s catches that
    // regression without timing the deadline itself.
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(listener);
}

#[test]
fn a_server_with_a_short_wait_timeout_does_not_drop_the_idle_lock_session() {
    // The server would drop idle sessions after 2 s; the snapshot takes 4 s.
    let s = server!("--wait-timeout=2".to_string());
    let report = s.path("report.json");
    s.mq()
        .arg("--report")
        .arg(&report)
        .args(["--", "sleep", "4"])
        .assert()
        .success();
    assert_eq!(json(&report)["lock"]["verified"], true);
}
