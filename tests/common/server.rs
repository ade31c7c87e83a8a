//! A throwaway MariaDB server for one test: its own datadir, socket and TCP
//! port under a short temp dir, binary logging on, root without password.
//! Stopped (and its files removed) when dropped, also when the test fails.
//!
//! With `CI=true` a missing server binary is a test failure, never a skip.

use mysql::prelude::Queryable;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub port: u16,
    child: Child,
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skip (returning None) or fail, as the environment demands.
pub fn missing(what: &str) -> Option<TestServer> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and {what}: install it with scripts/install-deps.sh");
    }
    eprintln!("SKIPPED: {what} (run scripts/install-deps.sh; with CI=true this fails)");
    None
}

fn find(names: &[&str]) -> Option<PathBuf> {
    names.iter().find_map(|n| which::which(n).ok()).or_else(|| {
        names.iter().find_map(|n| {
            let p = Path::new("/usr/sbin").join(n);
            p.exists().then_some(p)
        })
    })
}

/// Why there is no datadir template.
#[derive(Clone, Debug)]
enum NoTemplate {
    /// MariaDB is not installed: skipped outside CI, a failure in CI.
    NotInstalled(String),
    /// Installed, but initialising failed: always a failure, with the log.
    Failed(String),
}

/// One initialised datadir per test binary; each server copies it (much
/// faster than running mariadb-install-db per test).
static TEMPLATE: OnceLock<Result<PathBuf, NoTemplate>> = OnceLock::new();

/// The template goes when the test binary exits: a static has no
/// destructor, and each binary left about 100 MB in /tmp per run, which
/// filled the disk of a machine that ran the suite a few dozen times.
extern "C" fn remove_template() {
    if let Some(Ok(data)) = TEMPLATE.get() {
        if let Some(base) = data.parent() {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

fn template() -> Result<&'static Path, NoTemplate> {
    TEMPLATE
        .get_or_init(|| {
            let install = find(&["mariadb-install-db", "mysql_install_db"]).ok_or(
                NoTemplate::NotInstalled("mariadb-install-db not found".into()),
            )?;
            // Once more on failure: a loaded machine can fail one bootstrap.
            let mut last = String::new();
            for _ in 0..2 {
                match install_datadir(&install) {
                    Ok(data) => {
                        // SAFETY: registers a plain function; it runs at exit, after the tests.
                        unsafe { libc::atexit(remove_template) };
                        return Ok(data);
                    }
                    Err(e) => last = e,
                }
            }
            Err(NoTemplate::Failed(last))
        })
        .as_deref()
        .map_err(Clone::clone)
}

fn install_datadir(install: &Path) -> Result<PathBuf, String> {
    let base = tempfile::Builder::new()
        .prefix("mq-tpl")
        .tempdir_in("/tmp")
        .map_err(|e| e.to_string())?
        .keep();
    let data = base.join("data");
    let mut cmd = Command::new(install);
    cmd.args([
        "--no-defaults",
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
    ])
    .arg(format!("--datadir={}", data.display()));
    if is_root() {
        cmd.arg("--user=root");
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&base);
        return Err(format!(
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(data)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free TCP port")
}

/// Where a server's files go when not all in its own temp dir.
enum Place<'a> {
    /// The data directory is `parent/data`; the rest stays in the temp dir.
    DatadirIn(&'a Path),
    /// The data directory and the binary log's basename, as given.
    On { datadir: &'a Path, binlog: &'a Path },
}

impl TestServer {
    /// Start a server, or skip/fail when MariaDB is not installed.
    pub fn start() -> Option<TestServer> {
        Self::start_with_id(1)
    }

    /// Start a server with this server id (replication needs distinct ids).
    pub fn start_with_id(server_id: u32) -> Option<TestServer> {
        Self::start_with(server_id, &[])
    }

    /// Start a server with extra mariadbd options (e.g. TLS files, timeouts).
    pub fn start_with(server_id: u32, extra: &[String]) -> Option<TestServer> {
        Self::launch(server_id, extra, None)
    }

    /// Start a server whose data directory is `parent/data` (say on a loop
    /// filesystem the test freezes); everything else (socket, logs, binary
    /// log) stays in the server's own temp dir. Drop the server before the
    /// filesystem (declare it after).
    pub fn start_with_datadir_in(parent: &Path, extra: &[String]) -> Option<TestServer> {
        Self::launch(1, extra, Some(Place::DatadirIn(parent)))
    }

    /// Start a server whose data directory is `datadir` (made from the
    /// template; e.g. on a loop-mounted filesystem) and whose binary log is
    /// `binlog` (a basename: `<dir>/binlog` gives `<dir>/binlog.000001`).
    /// The caller removes `datadir`.
    pub fn start_on(datadir: &Path, binlog: &Path, extra: &[String]) -> Option<TestServer> {
        Self::launch(1, extra, Some(Place::On { datadir, binlog }))
    }

    fn launch(server_id: u32, extra: &[String], place: Option<Place<'_>>) -> Option<TestServer> {
        let Some(mariadbd) = find(&["mariadbd", "mysqld"]) else {
            return missing("mariadbd is not installed");
        };
        let template = match template() {
            Ok(t) => t,
            Err(NoTemplate::NotInstalled(e)) => return missing(&e),
            Err(NoTemplate::Failed(e)) => panic!("initialising the test server's datadir: {e}"),
        };
        let dir = tempfile::Builder::new()
            .prefix("mq")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let (data, binlog) = match place {
            None => (dir.path().join("data"), dir.path().join("binlog")),
            Some(Place::DatadirIn(parent)) => (parent.join("data"), dir.path().join("binlog")),
            Some(Place::On { datadir, binlog }) => (datadir.to_path_buf(), binlog.to_path_buf()),
        };
        let status = Command::new("cp")
            .arg("-a")
            .arg(template)
            .arg(&data)
            .status()
            .expect("cp");
        assert!(status.success(), "copying the datadir template failed");
        let socket = dir.path().join("sock");
        let port = free_port();
        let mut cmd = Command::new(mariadbd);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!(
                "--log-error={}",
                dir.path().join("err.log").display()
            ))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!("--log-bin={}", binlog.display()))
            .arg(format!("--server-id={server_id}"))
            .args(["--innodb-buffer-pool-size=32M", "--skip-name-resolve"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root() {
            cmd.arg("--user=root");
        }
        let child = cmd.spawn().expect("spawn mariadbd");
        let server = TestServer {
            dir,
            socket,
            port,
            child,
        };
        server.wait_ready();
        server.sql("CREATE DATABASE probe; CREATE TABLE probe.t (i INT) ENGINE=InnoDB");
        Some(server)
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if mysql::Conn::new(self.opts()).is_ok() {
                return;
            }
            if start.elapsed() > Duration::from_secs(60) {
                let log =
                    std::fs::read_to_string(self.dir.path().join("err.log")).unwrap_or_default();
                panic!("test server did not start within 60 s; error log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Connection options for root over the socket.
    pub fn opts(&self) -> mysql::Opts {
        mysql::OptsBuilder::new()
            .socket(Some(self.socket.to_string_lossy()))
            .user(Some("root"))
            .prefer_socket(true)
            .into()
    }

    /// A new root connection over the socket.
    pub fn conn(&self) -> mysql::Conn {
        mysql::Conn::new(self.opts()).expect("connect to test server")
    }

    /// Wait until a statement whose text is exactly `info` runs here (our
    /// lock attempt queued behind a long write, say); panic with `what` once
    /// `deadline` has passed. Checked without pause: a first lock attempt
    /// lasts only a quarter of a second.
    pub fn wait_for_statement(&self, info: &str, deadline: Instant, what: &str) {
        let mut c = self.conn();
        let sql = format!("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO = '{info}'");
        while c.query_first::<u64, _>(&sql).unwrap().is_none() {
            assert!(Instant::now() < deadline, "{what}");
        }
    }

    /// Two servers, the second replicating from the first.
    pub fn replica_pair() -> Option<(TestServer, TestServer)> {
        let source = TestServer::start_with_id(1)?;
        let replica = TestServer::start_with_id(2)?;
        source.sql("CREATE USER repl@'127.0.0.1' IDENTIFIED BY 'r'; GRANT REPLICATION SLAVE ON *.* TO repl@'127.0.0.1'");
        replica.sql(&format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='repl', MASTER_PASSWORD='r', \
             MASTER_USE_GTID=no; START SLAVE",
            source.port
        ));
        Some((source, replica))
    }

    /// Run statements as root, panicking on error.
    pub fn sql(&self, statements: &str) {
        self.conn()
            .query_drop(statements)
            .unwrap_or_else(|e| panic!("{statements}: {e}"));
    }

    /// Arguments that point mysql-quiesce at this server as root, without
    /// reading the machine's option files, with a run lock of its own (tests
    /// run in parallel).
    pub fn args(&self) -> Vec<String> {
        vec![
            "--no-defaults".into(),
            format!("--socket={}", self.socket.display()),
            "--user=root".into(),
            format!("--lock-file={}", self.path("run.lock").display()),
            format!("--state-dir={}", self.path("state").display()),
        ]
    }

    /// mysql-quiesce pointed at this server.
    pub fn mq(&self) -> assert_cmd::Command {
        let mut cmd = super::mysql_quiesce();
        cmd.args(self.args());
        cmd
    }

    /// A `mariadb` client command line for hooks (root over the socket).
    pub fn client(&self) -> String {
        format!("mariadb --no-defaults -uroot -S {}", self.socket.display())
    }

    /// A shell hook that succeeds only if a write to `table` from another
    /// session fails with a lock wait timeout: any other failure (no client,
    /// wrong socket, bad SQL) fails the hook, so the probe cannot pass by accident.
    pub fn blocked_write_hook(&self, table: &str) -> String {
        format!(
            "out=$({} -e 'SET SESSION lock_wait_timeout = 1; INSERT INTO {table} VALUES (1)' 2>&1); \
             case $out in *'Lock wait timeout exceeded'*) exit 0 ;; \
             *) echo \"expected a lock wait timeout, got: $out\" >&2; exit 1 ;; esac",
            self.client()
        )
    }

    /// A query's first column of the first row, as text.
    pub fn value(&self, query: &str) -> Option<String> {
        self.conn()
            .query_first::<Option<String>, _>(query)
            .unwrap_or_else(|e| panic!("{query}: {e}"))
            .flatten()
    }

    /// Whether a write from another session goes through within `wait` seconds
    /// (the session's lock_wait_timeout). False only when it timed out
    /// waiting for a lock (error 1205): any other failure (server gone, bad
    /// SQL) fails the test, so a broken probe cannot pass as "locked".
    pub fn write_succeeds(&self, wait_secs: u32) -> bool {
        let mut c = self.conn();
        c.query_drop(format!("SET SESSION lock_wait_timeout = {wait_secs}"))
            .unwrap();
        match c.query_drop("INSERT INTO probe.t VALUES (1)") {
            Ok(()) => true,
            Err(mysql::Error::MySqlError(e)) if e.code == 1205 => false,
            Err(e) => panic!("the probe write failed for another reason than a lock: {e}"),
        }
    }

    /// Path of a file inside the server's temp dir (for reports etc.).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
