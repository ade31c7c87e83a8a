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
    // What the server saw, not what we say: the lock session came over TCP.
    let seen = s.path("seen-host");
    mq(s.dir.path())
        .args(["-P", &s.port.to_string(), "--snapshot"])
        .arg(format!(
            "{} -N -e \"SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = $MYSQL_QUIESCE_CONNECTION_ID\" > {}",
            s.client(),
            seen.display()
        ))
        .assert()
        .success();
    let host = std::fs::read_to_string(&seen).unwrap();
    assert!(
        host.starts_with("127.0.0.1:"),
        "the server saw the lock session from {host:?}"
    );
    // And a socket is a socket.
    mq(s.dir.path())
        .arg(format!("--socket={}", s.socket.display()))
        .arg("--snapshot")
        .arg(format!(
            "{} -N -e \"SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = $MYSQL_QUIESCE_CONNECTION_ID\" > {}",
            s.client(),
            seen.display()
        ))
        .assert()
        .success();
    assert_eq!(std::fs::read_to_string(&seen).unwrap().trim(), "localhost");
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
fn verify_identity_refuses_a_certificate_for_another_host_that_verify_ca_accepts() {
    let certs = tempfile::tempdir().unwrap();
    let p = pki(certs.path());
    // A certificate from the right CA, but for 127.0.0.9: not the host we connect to.
    let dir = certs.path();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.9",
            "-keyout",
            "other-host-key.pem",
            "-out",
            "other-host.csr",
        ],
    );
    std::fs::write(dir.join("other.ext"), "subjectAltName = IP:127.0.0.9\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "other-host.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "other.ext",
            "-out",
            "other-host.pem",
        ],
    );
    let s = server!(
        format!("--ssl-ca={}", p.ca.display()),
        format!("--ssl-cert={}", dir.join("other-host.pem").display()),
        format!("--ssl-key={}", dir.join("other-host-key.pem").display()),
    );
    let tcp = [
        "-h".to_string(),
        "127.0.0.1".into(),
        "-P".into(),
        s.port.to_string(),
    ];
    let ca = format!("--ssl-ca={}", p.ca.display());
    mq(s.dir.path())
        .args(&tcp)
        .args(["--ssl-mode=VERIFY_IDENTITY", &ca, "--", "true"])
        .assert()
        .code(69)
        .stderr(predicate::str::contains("Nothing was locked or frozen"));
    mq(s.dir.path())
        .args(&tcp)
        .args(["--ssl-mode=VERIFY_CA", &ca, "--", "true"])
        .assert()
        .success();
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

/// Which of two servers (and as whom) a connection reached, and the message
/// when it failed.
type Reached = Result<(&'static str, String), String>;

/// The real `mariadb` client with the option file `cnf` and `env`: which
/// server (by server id: 1 is "A", 2 is "B") and which user.
fn real_client(cnf: &Path, env: &[(&str, String)]) -> Reached {
    let out = Command::new("mariadb")
        .arg(format!("--defaults-file={}", cnf.display()))
        .args(["-N", "-B", "-e", "SELECT @@server_id, CURRENT_USER()"])
        .env_remove("MYSQL_HOST")
        .env_remove("MYSQL_TCP_PORT")
        .env_remove("MYSQL_UNIX_PORT")
        .env_remove("MYSQL_PWD")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("the mariadb client is installed");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut fields = text.split_whitespace();
    let server = match fields.next() {
        Some("1") => "A",
        Some("2") => "B",
        other => panic!("unexpected server id {other:?}"),
    };
    let user = fields
        .next()
        .unwrap_or("")
        .split('@')
        .next()
        .unwrap()
        .to_string();
    Ok((server, user))
}

/// mysql-quiesce with the same file and environment: which server its lock
/// session reached (from the report's target) and as whom.
fn our_tool(cnf: &Path, env: &[(&str, String)], a: &str, b: &str, dir: &Path) -> Reached {
    let report = dir.join(format!("report-{}.json", common::process::unique()));
    let out = common::mysql_quiesce()
        .arg(format!("--defaults-file={}", cnf.display()))
        .arg(format!("--lock-file={}", dir.join("run.lock").display()))
        .arg(format!("--state-dir={}", dir.join("state").display()))
        .arg(format!("--report={}", report.display()))
        .args(["--", "true"])
        .env_remove("MYSQL_HOST")
        .env_remove("MYSQL_TCP_PORT")
        .env_remove("MYSQL_UNIX_PORT")
        .env_remove("MYSQL_PWD")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let r = json(&report);
    let target = r["instances"][0]["target"].as_str().unwrap().to_string();
    let server = if target == a {
        "A"
    } else if target == b {
        "B"
    } else {
        panic!("locked {target}, neither {a} nor {b}")
    };
    Ok((
        server,
        r["instances"][0]["user"].as_str().unwrap().to_string(),
    ))
}

#[test]
fn each_environment_variable_ranks_below_option_files_exactly_as_in_the_mysql_client() {
    let a = server!();
    // B listens on the same port as A, on another loopback address.
    let b = server!(
        "--server-id=2".to_string(),
        "--bind-address=127.0.0.2".to_string(),
        format!("--port={}", a.port)
    );
    a.sql(
        "CREATE USER pw@'%' IDENTIFIED BY 'filepw'; GRANT RELOAD, BINLOG MONITOR ON *.* TO pw@'%'",
    );
    let dir = a.dir.path();
    let a_sock = format!("socket {}", a.socket.display());
    let b_sock = format!("socket {}", b.socket.display());
    // (what, option file, environment, (A's target, B's target) as reported)
    type Case<'a> = (&'a str, String, Vec<(&'a str, String)>, (String, String));
    let cases: Vec<Case> = vec![
        (
            "MYSQL_UNIX_PORT against socket=",
            format!("[client]\nuser=root\nsocket={}\n", a.socket.display()),
            vec![("MYSQL_UNIX_PORT", b.socket.display().to_string())],
            (a_sock.clone(), b_sock.clone()),
        ),
        (
            "MYSQL_UNIX_PORT where no file says",
            "[client]\nuser=root\n".to_string(),
            vec![("MYSQL_UNIX_PORT", b.socket.display().to_string())],
            (a_sock.clone(), b_sock.clone()),
        ),
        (
            "MYSQL_HOST against host=",
            format!("[client]\nuser=root\nhost=127.0.0.1\nport={}\n", a.port),
            vec![("MYSQL_HOST", "127.0.0.2".to_string())],
            (
                format!("127.0.0.1:{}", a.port),
                format!("127.0.0.2:{}", a.port),
            ),
        ),
        (
            "MYSQL_TCP_PORT against port=",
            format!("[client]\nuser=root\nhost=127.0.0.1\nport={}\n", a.port),
            vec![("MYSQL_TCP_PORT", b.port.to_string())],
            (
                format!("127.0.0.1:{}", a.port),
                format!("127.0.0.1:{}", b.port),
            ),
        ),
        (
            "MYSQL_PWD against password=",
            format!(
                "[client]\nuser=pw\npassword=filepw\nsocket={}\n",
                a.socket.display()
            ),
            vec![("MYSQL_PWD", "wrong".to_string())],
            (a_sock.clone(), b_sock.clone()),
        ),
        (
            "MYSQL_PWD where no file says",
            format!("[client]\nuser=pw\nsocket={}\n", a.socket.display()),
            vec![("MYSQL_PWD", "filepw".to_string())],
            (a_sock.clone(), b_sock.clone()),
        ),
    ];
    for (what, text, env, (ta, tb)) in cases {
        let cnf = dir.join("case.cnf");
        std::fs::write(&cnf, text).unwrap();
        let theirs = real_client(&cnf, &env);
        let ours = our_tool(&cnf, &env, &ta, &tb, dir);
        match (&theirs, &ours) {
            (Ok(t), Ok(o)) => assert_eq!(t, o, "{what}: the mysql client reached {t:?}, we {o:?}"),
            (Err(_), Err(_)) => {}
            _ => panic!("{what}: the mysql client got {theirs:?}, we {ours:?}"),
        }
        // Each case is one where the file (or, without one, the environment)
        // must win: the client reaching A as the file's user shows it.
        assert!(theirs.is_ok(), "{what}: {theirs:?}");
    }
}
