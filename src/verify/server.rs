//! The throwaway server verify starts on the writable view of the snapshot:
//! finding the binary that matches the data, its command line (no option
//! files, no networking, a private socket, another server id, replication
//! and events off), waiting for it to come up (crash recovery included) on
//! events only, running SQL so that a signal or the server's death ends the
//! wait at once, and stopping it. `Server` is a guard: dropped while the
//! server still runs, it kills it and reaps it.

use super::confine::Confinement;
use super::datadir::{DataDir, Family};
use super::watch::DirWatch;
use crate::exit;
use crate::server::{Flavor, ServerInfo};
use crate::wait::{self, ChildWait, Watched, Woke};
use anyhow::Context;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A server binary and what its --version says.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Binary {
    pub path: PathBuf,
    /// e.g. "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)".
    pub version_line: String,
    pub flavor: Flavor,
    pub version: (u16, u16, u16),
}

impl Binary {
    pub fn family(&self) -> Family {
        Family::of(self.flavor)
    }

    /// "MariaDB 10.11.19 (/usr/sbin/mariadbd)".
    pub fn describe(&self) -> String {
        let (a, b, c) = self.version;
        format!(
            "{} {a}.{b}.{c} ({})",
            self.flavor.name(),
            self.path.display()
        )
    }
}

/// Run `path --version` (bounded) and recognise the server.
fn probe(path: &Path) -> anyhow::Result<Binary> {
    let child = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            exit::fail(
                exit::CONFIG,
                format!("cannot run the server {}: {e}", path.display()),
            )
        })?;
    let mut watched = Watched::new(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stdout = watched.child.stdout.take().expect("piped");
    // --version prints one line and exits: read what it printed after it exits.
    let status = watched.wait(true, Some(deadline))?;
    let mut out = String::new();
    if let ChildWait::Exited(_) = status {
        use std::io::Read;
        let _ = (&mut stdout).take(4096).read_to_string(&mut out);
    } else {
        let _ = watched.child.kill();
        let _ = watched.child.wait();
    }
    let line = out.lines().next().unwrap_or("").trim().to_string();
    let version_text = line.split(" Ver ").nth(1).unwrap_or("");
    let not_a_server = || {
        exit::fail(
            exit::CONFIG,
            format!(
                "{} is not a MySQL or MariaDB server: its --version says {:?}",
                path.display(),
                line
            ),
        )
    };
    let version = super::datadir::parse_version(version_text).ok_or_else(not_a_server)?;
    // Client programs print "Ver 15.1 Distrib ..." or "Ver 9.7.4 for Linux": a
    // server's binary name is mysqld or mariadbd (or a wrapper saying so).
    let name = line.split_whitespace().next().unwrap_or("");
    let base = Path::new(name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !(base.contains("mysqld") || base.contains("mariadbd")) {
        return Err(not_a_server());
    }
    let info =
        ServerInfo::from_strings(version_text.split_whitespace().next().unwrap_or(""), &line);
    Ok(Binary {
        path: path.to_path_buf(),
        version_line: line,
        flavor: info.flavor,
        version,
    })
}

/// Where server binaries live besides PATH (RHEL has /usr/libexec/mysqld).
const EXTRA_DIRS: &[&str] = &[
    "/usr/sbin",
    "/usr/local/sbin",
    "/usr/libexec",
    "/usr/local/mysql/bin",
    "/opt/mysql/bin",
];

/// The server to start: `--server`, else the first `mariadbd`/`mysqld` found
/// that matches the data's family. Exit 78 when there is none or it does
/// not match (or is older than the data).
pub fn find(explicit: Option<&Path>, data: &DataDir) -> anyhow::Result<Binary> {
    let matches = |b: &Binary| b.family() == data.family;
    let binary = match explicit {
        Some(p) => {
            if !p.exists() {
                return Err(exit::fail(
                    exit::CONFIG,
                    format!("--server {}: no such file", p.display()),
                ));
            }
            let b = probe(p)?;
            if !matches(&b) {
                return Err(exit::fail(
                    exit::CONFIG,
                    format!(
                        "--server {} is {}, but the data in {} was written by {}: a server of the other family cannot \
                         recover it. Give the {} server (--server PATH)",
                        p.display(),
                        b.describe(),
                        data.path.display(),
                        data.describe(),
                        data.family.name()
                    ),
                ));
            }
            b
        }
        None => {
            let names: &[&str] = match data.family {
                Family::Mariadb => &["mariadbd", "mysqld"],
                Family::Mysql => &["mysqld"],
            };
            let mut seen: Vec<String> = Vec::new();
            let mut found = None;
            'search: for name in names {
                let mut candidates: Vec<PathBuf> = which::which_all(name)
                    .map(|i| i.collect())
                    .unwrap_or_default();
                candidates.extend(EXTRA_DIRS.iter().map(|d| Path::new(d).join(name)));
                for c in candidates.into_iter().filter(|c| c.is_file()) {
                    match probe(&c) {
                        Ok(b) if matches(&b) => {
                            found = Some(b);
                            break 'search;
                        }
                        Ok(b) => seen.push(b.describe()),
                        Err(e) => seen.push(format!("{}: {e:#}", c.display())),
                    }
                }
            }
            found.ok_or_else(|| {
                let what = if seen.is_empty() {
                    "none was found on PATH or in /usr/sbin, /usr/libexec".to_string()
                } else {
                    format!("found only: {}", seen.join("; "))
                };
                exit::fail(
                    exit::CONFIG,
                    format!(
                        "the data in {} was written by {}, and verify needs that server to recover it: {what}. \
                         Install it or give its binary with --server PATH",
                        data.path.display(),
                        data.describe()
                    ),
                )
            })?
        }
    };
    if let Some(v) = data.version {
        if (binary.version.0, binary.version.1) < (v.0, v.1) {
            return Err(exit::fail(
                exit::CONFIG,
                format!(
                    "{} is older than the data ({}, from {}): an older server cannot recover it. Use {}.{} or later \
                     (--server PATH)",
                    binary.describe(),
                    data.describe(),
                    data.version_source,
                    v.0,
                    v.1
                ),
            ));
        }
    }
    Ok(binary)
}

/// Which of the two starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Crash recovery with the snapshot's binary log; the restore point is read.
    Recover,
    /// InnoDB read-only, no binary log: CHECK TABLE without copying every
    /// tablespace into the writable layer.
    Check,
}

/// Everything the command line needs.
#[derive(Debug, Clone)]
pub struct Launch {
    pub binary: Binary,
    /// The writable view of the data directory.
    pub datadir: PathBuf,
    /// Private directory for the socket, pid file, logs and temporary files.
    pub run_dir: PathBuf,
    pub server_id: u32,
    /// --log-bin basename and --log-bin-index, in the writable view.
    pub binlog: Option<(PathBuf, PathBuf)>,
    /// --relay-log basename and index, in the writable view.
    pub relay: Option<(PathBuf, PathBuf)>,
    /// The binary log has MySQL GTIDs: start with gtid_mode=ON as the origin ran.
    pub mysql_gtids: bool,
    pub extra: Vec<String>,
}

impl Launch {
    /// The directories the server may write: its view of the data
    /// directory and of the binary log, and its run directory.
    pub fn writable(&self) -> Vec<PathBuf> {
        let mut w = vec![self.run_dir.clone(), self.datadir.clone()];
        for (base, _) in self.binlog.iter().chain(self.relay.iter()) {
            if let Some(dir) = base.parent() {
                w.push(dir.to_path_buf());
            }
        }
        w
    }

    /// Its mount namespace (root only: nobody else may make one).
    pub fn confinement(&self) -> Option<Confinement> {
        nix::unistd::geteuid()
            .is_root()
            .then(|| Confinement::plan(&self.writable()))
    }

    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("sock")
    }

    pub fn log(&self, phase: Phase) -> PathBuf {
        self.run_dir.join(match phase {
            Phase::Recover => "recover.err",
            Phase::Check => "check.err",
        })
    }

    pub fn console(&self, phase: Phase) -> PathBuf {
        self.run_dir.join(match phase {
            Phase::Recover => "recover.out",
            Phase::Check => "check.out",
        })
    }

    /// The server's arguments. `--no-defaults` first: no my.cnf of this
    /// host (or mysqld-auto.cnf of the snapshot's) may add anything.
    pub fn args(&self, phase: Phase) -> Vec<String> {
        let p = |path: &Path| path.display().to_string();
        let mysql = self.binary.family() == Family::Mysql;
        let (major, minor, patch) = self.binary.version;
        let mut a: Vec<String> = vec![
            "--no-defaults".into(),
            format!("--datadir={}", p(&self.datadir)),
            format!("--socket={}", p(&self.socket())),
            "--skip-networking".into(),
            format!("--pid-file={}", p(&self.run_dir.join("server.pid"))),
            format!("--log-error={}", p(&self.log(phase))),
            format!("--tmpdir={}", p(&self.run_dir.join("tmp"))),
            format!("--server-id={}", self.server_id),
            "--event-scheduler=OFF".into(),
            // The snapshot's accounts are unknown here; nothing can connect
            // from outside (no networking, a socket in a private directory).
            "--skip-grant-tables".into(),
            // Loading the buffer pool dump reads (and copies up) every tablespace it names.
            "--innodb-buffer-pool-load-at-startup=OFF".into(),
            "--innodb-buffer-pool-dump-at-shutdown=OFF".into(),
        ];
        // No new symbolic links (DATA/INDEX DIRECTORY). It does not stop a
        // server from following the links a data directory already has:
        // verify refuses those (`external`) and confines the server (`confine`).
        // MySQL deprecates the option (9.7 still has it): --loose- keeps a
        // release without it starting.
        a.push(if mysql {
            "--loose-skip-symbolic-links".into()
        } else {
            "--skip-symbolic-links".into()
        });
        if nix::unistd::geteuid().is_root() {
            a.push("--user=root".into());
        }
        if mysql {
            let replica = if (major, minor, patch) >= (8, 0, 26) {
                "--skip-replica-start"
            } else {
                "--skip-slave-start"
            };
            a.extend([
                replica.to_string(),
                "--loose-mysqlx=OFF".into(),
                format!("--secure-file-priv={}", p(&self.run_dir.join("files"))),
                "--loose-binlog-expire-logs-seconds=0".into(),
                "--loose-persisted-globals-load=OFF".into(),
                "--loose-group-replication-start-on-boot=OFF".into(),
                "--log-error-verbosity=3".into(),
            ]);
            if self.mysql_gtids {
                a.extend([
                    "--gtid-mode=ON".to_string(),
                    "--enforce-gtid-consistency=ON".to_string(),
                ]);
            }
        } else {
            a.extend([
                "--skip-slave-start".to_string(),
                // Never purge the copy's binary logs at start-up.
                "--loose-expire-logs-days=0".into(),
                "--loose-binlog-expire-logs-seconds=0".into(),
            ]);
        }
        match (phase, &self.binlog) {
            (Phase::Recover, Some((base, index))) => {
                a.push(format!("--log-bin={}", p(base)));
                a.push(format!("--log-bin-index={}", p(index)));
            }
            _ => a.push("--skip-log-bin".into()),
        }
        if phase == Phase::Check {
            a.push("--innodb-read-only=ON".into());
        }
        if let Some((base, index)) = &self.relay {
            a.push(format!("--relay-log={}", p(base)));
            a.push(format!("--relay-log-index={}", p(index)));
        }
        a.extend(self.extra.iter().cloned());
        a
    }
}

/// Why waiting on the server ended early.
#[derive(Debug)]
pub enum Stop {
    /// The server process exited (crashed, aborted, was killed).
    Exited(ExitStatus),
    Timeout,
    Signal(i32),
}

/// A running verify server. Dropped while it runs, it is killed and reaped.
pub struct Server {
    child: Watched,
    pidfd: Option<OwnedFd>,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub console: PathBuf,
    pub phase: Phase,
    pub started: Instant,
    exited: Option<ExitStatus>,
}

impl Server {
    pub fn start(launch: &Launch, phase: Phase) -> anyhow::Result<Server> {
        for d in ["tmp", "files"] {
            std::fs::create_dir_all(launch.run_dir.join(d))
                .with_context(|| format!("creating {}", launch.run_dir.join(d).display()))?;
        }
        let _ = std::fs::remove_file(launch.socket());
        let console = launch.console(phase);
        let out = std::fs::File::create(&console)
            .with_context(|| format!("creating {}", console.display()))?;
        let err = out.try_clone().context("duplicating a descriptor")?;
        let mut cmd = Command::new(&launch.binary.path);
        cmd.args(launch.args(phase))
            .current_dir(&launch.run_dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group: a Ctrl-C on the terminal is ours to handle.
            .process_group(0);
        for var in [
            "MYSQL_HOME",
            "MARIADB_HOME",
            "MYSQL_UNIX_PORT",
            "MYSQL_TCP_PORT",
            "MYSQL_PWD",
            "MYSQL_HOST",
        ] {
            cmd.env_remove(var);
        }
        let confinement = launch.confinement();
        // SAFETY: only async-signal-safe calls (setrlimit, prctl, unshare,
        // mount on strings made before the fork) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(c) = &confinement {
                    c.apply()?;
                }
                // A crashing server must not leave a core file in the writable layer.
                let none = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &none);
                // If verify dies (even SIGKILL), the server dies too.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            exit::fail(
                exit::UNAVAILABLE,
                format!("cannot start {}: {e}", launch.binary.path.display()),
            )
        })?;
        let pidfd = wait::pidfd(child.id());
        Ok(Server {
            child: Watched::new(child),
            pidfd,
            socket: launch.socket(),
            log: launch.log(phase),
            console,
            phase,
            started: Instant::now(),
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The error log and anything the server printed before opening it.
    pub fn log_text(&self) -> String {
        let mut text = super::errorlog::read(&self.console, 64 << 10);
        text.push_str(&super::errorlog::read(&self.log, 1 << 20));
        text
    }

    /// Whether it has exited (reaps it).
    fn check_exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Wait until the server accepts a connection on its socket: crash
    /// recovery is over. Wakes on the socket appearing, the log growing, the
    /// server exiting or a signal; never on a timer short of `deadline`.
    pub fn wait_ready(&mut self, run_dir: &Path, deadline: Instant) -> Result<mysql::Conn, Stop> {
        let watch = DirWatch::new(run_dir).ok();
        let mut attempt: Option<Attempt> = None;
        let mut again = true;
        loop {
            if let Some(status) = self.check_exited() {
                return Err(Stop::Exited(status));
            }
            if attempt.is_none() && again && self.socket.exists() {
                attempt = Some(Attempt::start(&self.socket, deadline));
                again = false;
            }
            let mut fds = Vec::new();
            if let Some(a) = &attempt {
                fds.push(a.done.as_fd());
            }
            let pid_index = fds.len();
            if let Some(p) = &self.pidfd {
                fds.push(p.as_fd());
            }
            let watch_index = fds.len();
            if let Some(w) = &watch {
                fds.push(w.fd());
            }
            // Without inotify (never on Linux >= 2.6.13), look again every 100 ms.
            let wake = if watch.is_some() {
                Some(deadline)
            } else {
                Some(deadline.min(Instant::now() + Duration::from_millis(100)))
            };
            match wait::until(&fds, true, wake) {
                Woke::Ready(i) if attempt.is_some() && i == 0 => {
                    let a = attempt.take().expect("attempt");
                    // Not listening yet: the next event tries again.
                    if let Ok(Ok(conn)) = a.result.try_recv() {
                        return Ok(conn);
                    }
                }
                // The server exited: reaped at the top of the loop.
                Woke::Ready(i) if i == pid_index && self.pidfd.is_some() => {}
                Woke::Ready(i) if i == watch_index => {
                    if let Some(w) = &watch {
                        w.drain();
                    }
                    again = true;
                }
                Woke::Ready(_) => {}
                Woke::Signal => {
                    if let Some(sig) = crate::signals::received() {
                        return Err(Stop::Signal(sig));
                    }
                }
                Woke::Timeout if Instant::now() >= deadline => return Err(Stop::Timeout),
                Woke::Timeout => again = true,
            }
        }
    }

    /// Run `work` (SQL on a connection it owns) in a thread, and wait for it,
    /// the server's exit, a signal, or `deadline`, whichever comes first. A
    /// statement stuck in the server cannot keep verify from stopping.
    pub fn call<T: Send + 'static>(
        &mut self,
        deadline: Instant,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Stop> {
        let (tx, rx) = mpsc::channel();
        let (done_r, done_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|_| Stop::Timeout)?;
        std::thread::spawn(move || {
            let result = work();
            let _ = tx.send(result);
            drop(done_w);
        });
        loop {
            let mut fds = vec![done_r.as_fd()];
            if let Some(p) = &self.pidfd {
                fds.push(p.as_fd());
            }
            match wait::until(&fds, true, Some(deadline)) {
                Woke::Ready(0) => {
                    return rx.recv().map_err(|_| match self.check_exited() {
                        Some(s) => Stop::Exited(s),
                        None => Stop::Timeout,
                    })
                }
                Woke::Ready(_) => {
                    if let Ok(result) = rx.try_recv() {
                        return Ok(result);
                    }
                    let _ = self
                        .child
                        .wait(false, Some(Instant::now() + Duration::from_secs(5)));
                    if let Some(s) = self.check_exited() {
                        return Err(Stop::Exited(s));
                    }
                }
                Woke::Signal => {
                    if let Some(sig) = crate::signals::received() {
                        return Err(Stop::Signal(sig));
                    }
                }
                Woke::Timeout => return Err(Stop::Timeout),
            }
        }
    }

    /// Clean shutdown (SIGTERM, as `mysqladmin shutdown` would), bounded by
    /// `deadline`; killed when it does not stop in time. Waits through
    /// signals: an interrupted verify still stops its server cleanly first.
    pub fn shutdown(&mut self, deadline: Instant) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        if let Some(status) = self.check_exited() {
            return Err(exit::fail(
                exit::UNAVAILABLE,
                format!("the server had already exited ({status})"),
            ));
        }
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        match self.child.wait(false, Some(deadline))? {
            ChildWait::Exited(status) => {
                self.exited = Some(status);
                if status.success() {
                    Ok(t0.elapsed())
                } else {
                    Err(exit::fail(
                        exit::UNAVAILABLE,
                        format!("the server's shutdown ended with {status}"),
                    ))
                }
            }
            _ => {
                self.kill();
                Err(exit::fail(
                    exit::UNAVAILABLE,
                    "the server did not shut down within --timeout; killed it",
                ))
            }
        }
    }

    /// SIGKILL and reap (bounded: a process stuck in the kernel is left to init).
    fn kill(&mut self) {
        if self.check_exited().is_some() {
            return;
        }
        let _ = self.child.child.kill();
        if let Ok(ChildWait::Exited(s)) = self
            .child
            .wait(false, Some(Instant::now() + Duration::from_secs(10)))
        {
            self.exited = Some(s);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One connection attempt, in a thread: the handshake waits until the
/// server accepts connections, which may be a while after it listens.
struct Attempt {
    done: OwnedFd,
    result: mpsc::Receiver<mysql::Result<mysql::Conn>>,
}

impl Attempt {
    fn start(socket: &Path, deadline: Instant) -> Attempt {
        let (tx, rx) = mpsc::channel();
        let (done_r, done_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("creating a pipe");
        let opts = conn_opts(socket, deadline);
        std::thread::spawn(move || {
            let _ = tx.send(mysql::Conn::new(opts));
            drop(done_w);
        });
        Attempt {
            done: done_r,
            result: rx,
        }
    }
}

/// Connection options for the verify server: its private socket, any user
/// (the grant tables are skipped), every read bounded by `deadline`.
pub fn conn_opts(socket: &Path, deadline: Instant) -> mysql::Opts {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    mysql::OptsBuilder::new()
        .socket(Some(socket.to_string_lossy()))
        .prefer_socket(true)
        .user(Some("root"))
        .read_timeout(Some(left))
        .write_timeout(Some(left))
        .into()
}

/// A server id different from every one in the snapshot's binary log.
pub fn private_server_id(used: &std::collections::BTreeSet<u32>) -> u32 {
    (4_000_000_001u32..)
        .find(|id| !used.contains(id))
        .unwrap_or(4_000_000_001)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(family: Family) -> Launch {
        let (flavor, version) = match family {
            Family::Mariadb => (Flavor::Mariadb, (10, 11, 19)),
            Family::Mysql => (Flavor::Mysql, (9, 7, 4)),
        };
        Launch {
            binary: Binary {
                path: "/usr/sbin/mysqld".into(),
                version_line: String::new(),
                flavor,
                version,
            },
            datadir: "/w/data".into(),
            run_dir: "/w/run".into(),
            server_id: 4_000_000_001,
            binlog: Some(("/w/data/binlog".into(), "/w/data/binlog.index".into())),
            relay: None,
            mysql_gtids: family == Family::Mysql,
            extra: vec!["--innodb-page-size=32k".into()],
        }
    }

    #[test]
    fn the_server_reads_no_option_file_listens_nowhere_and_replicates_nothing() {
        for family in [Family::Mariadb, Family::Mysql] {
            let l = launch(family);
            let a = l.args(Phase::Recover);
            assert_eq!(a[0], "--no-defaults", "must be first");
            for must in [
                "--skip-networking",
                "--socket=/w/run/sock",
                "--server-id=4000000001",
                "--event-scheduler=OFF",
                "--log-bin=/w/data/binlog",
                "--log-bin-index=/w/data/binlog.index",
                "--innodb-buffer-pool-load-at-startup=OFF",
            ] {
                assert!(
                    a.iter().any(|x| x == must),
                    "{family:?} lacks {must}: {a:?}"
                );
            }
            assert!(a
                .iter()
                .any(|x| x.contains("skip-") && x.contains("-start")));
            assert_eq!(a.last().unwrap(), "--innodb-page-size=32k");
            assert!(!a.iter().any(|x| x.contains("innodb-read-only")));
            assert!(!a
                .iter()
                .any(|x| x.contains("tc-heuristic") || x.contains("force-recovery")));
            let c = l.args(Phase::Check);
            assert!(c.iter().any(|x| x == "--innodb-read-only=ON"));
            assert!(c.iter().any(|x| x == "--skip-log-bin"));
        }
        let m = launch(Family::Mysql).args(Phase::Recover);
        assert!(m.iter().any(|x| x == "--skip-replica-start"));
        assert!(m.iter().any(|x| x == "--gtid-mode=ON"));
        assert!(m
            .iter()
            .any(|x| x.starts_with("--secure-file-priv=/w/run/")));
        // No symbolic links (MySQL deprecates the option: loose).
        assert!(m.iter().any(|x| x == "--loose-skip-symbolic-links"));
        let d = launch(Family::Mariadb).args(Phase::Check);
        assert!(d.iter().any(|x| x == "--skip-symbolic-links"));
        // The server may write its views and its run directory only.
        assert_eq!(
            launch(Family::Mariadb).writable(),
            [PathBuf::from("/w/run"), "/w/data".into(), "/w/data".into()]
        );
    }

    #[test]
    fn the_private_server_id_is_not_one_of_the_snapshots() {
        let used = [4_000_000_001u32, 1].into_iter().collect();
        assert_eq!(private_server_id(&used), 4_000_000_002);
        assert_eq!(private_server_id(&Default::default()), 4_000_000_001);
    }
}
