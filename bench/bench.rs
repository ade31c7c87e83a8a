//! Benchmarks: how much a snapshot hurts a live server, mysql-quiesce against
//! the classic `mysql -e "FLUSH TABLES WITH READ LOCK; SYSTEM ...; UNLOCK TABLES"`.
//! Run with `bash bench/run.sh [--quick]`; results are printed and written as
//! Markdown, CSV and JSON. Measurements only: nothing here asserts a timing.
//!
//! - Writer stall: writers insert continuously while each contender takes one
//!   snapshot with the same step: a fixed `sleep 0.2`, or copying the image of
//!   the loop-mounted XFS volume that holds the datadir (frozen around the
//!   copy). Scenarios: no long statement, a long UPDATE, a long SELECT.
//!   Measured: worst and p99 writer latency in the contender's window, lock
//!   held, total time. MariaDB 10.11 always; MySQL 9 (sleep step) when the
//!   server matrix (scripts/server-matrix.sh) is set up.
//! - Overhead: lock held minus the snapshot step's own time (what writers pay
//!   for the tool itself), process start to locked, peak RSS; the same figures
//!   for the classic procedure, measured with `SYSTEM date` markers.
//! - Scale: lock time as open tables grow, and as instances locked together
//!   grow (each instance with open tables, so that locking takes time).

use mysql::prelude::Queryable;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WRITERS: usize = 4;
const SLEEP_STEP: &str = "sleep 0.2";

struct Config {
    quick: bool,
    out: PathBuf,
    binary: PathBuf,
    repo: PathBuf,
    /// Report, lock and marker files: never on the volume that gets frozen.
    work: tempfile::TempDir,
    /// Run the MySQL 9 section (the server matrix is set up).
    mysql: bool,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------------ servers

enum Kind {
    /// scripts/throwaway-mariadb.sh, all files in `dir`.
    Mariadb { dir: PathBuf },
    /// scripts/server-matrix.sh, TCP on `port`, files in the chroot `root`.
    Mysql {
        dir: PathBuf,
        port: u16,
        root: PathBuf,
    },
}

struct Server {
    kind: Kind,
    repo: PathBuf,
}

/// A host path as seen by a command running in the server's (ch)root.
type PathMap<'a> = Box<dyn Fn(&Path) -> PathBuf + 'a>;

impl Server {
    fn mariadb(repo: &Path, dir: &Path) -> Server {
        run_ok(
            Command::new("bash")
                .arg(repo.join("scripts/throwaway-mariadb.sh"))
                .arg("start")
                .arg(dir),
            "starting a throwaway MariaDB",
        );
        Server::prepared(Kind::Mariadb { dir: dir.into() }, repo)
    }

    fn mysql(repo: &Path, dir: &Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        run_ok(
            Command::new("bash")
                .arg(repo.join("scripts/server-matrix.sh"))
                .args(["start", "mysql", &port.to_string()])
                .arg(dir),
            "starting the matrix MySQL",
        );
        let root = PathBuf::from(
            std::env::var("MATRIX_CACHE").unwrap_or("/var/cache/mysql-quiesce-matrix".into()),
        )
        .join("sid-mysql");
        Server::prepared(
            Kind::Mysql {
                dir: dir.into(),
                port,
                root,
            },
            repo,
        )
    }

    fn prepared(kind: Kind, repo: &Path) -> Server {
        let s = Server {
            kind,
            repo: repo.into(),
        };
        let mut c = s.conn();
        c.query_drop(
            "SET GLOBAL table_open_cache = 30000; CREATE DATABASE bench; \
             CREATE TABLE bench.slow (c INT) ENGINE=InnoDB; INSERT INTO bench.slow VALUES (1)",
        )
        .unwrap();
        for w in 0..WRITERS {
            c.query_drop(format!(
                "CREATE TABLE bench.w{w} (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB"
            ))
            .unwrap();
        }
        s
    }

    fn opts(&self) -> mysql::Opts {
        let b = mysql::OptsBuilder::new().user(Some("root"));
        match &self.kind {
            Kind::Mariadb { dir } => b.socket(Some(dir.join("sock").to_string_lossy())),
            Kind::Mysql { port, .. } => b
                .ip_or_hostname(Some("127.0.0.1"))
                .tcp_port(*port)
                .prefer_socket(false),
        }
        .into()
    }

    fn conn(&self) -> mysql::Conn {
        mysql::Conn::new(self.opts()).unwrap()
    }

    fn version(&self) -> String {
        let v: String = self
            .conn()
            .query_first("SELECT VERSION()")
            .unwrap()
            .unwrap_or_default();
        match self.kind {
            Kind::Mariadb { .. } => format!("MariaDB {v}"),
            Kind::Mysql { .. } => format!("MySQL {v}"),
        }
    }

    /// mysql-quiesce's connection options for this server.
    fn quiesce_args(&self) -> Vec<String> {
        match &self.kind {
            Kind::Mariadb { dir } => vec![format!("--socket={}", dir.join("sock").display())],
            Kind::Mysql { port, .. } => vec!["-h127.0.0.1".into(), format!("-P{port}")],
        }
    }

    /// The server's own command-line client (the classic procedure's tool),
    /// and how a host path looks from where that client runs.
    fn client(&self) -> (Command, PathMap<'_>) {
        match &self.kind {
            Kind::Mariadb { dir } => {
                let mut c = Command::new("mariadb");
                c.args(["--no-defaults", "-uroot"])
                    .arg(format!("--socket={}", dir.join("sock").display()));
                (c, Box::new(|p: &Path| p.to_path_buf()))
            }
            Kind::Mysql { port, root, .. } => {
                let mut c = Command::new("chroot");
                // MySQL 9's client refuses client commands such as SYSTEM in
                // batch mode unless asked (both default to FALSE): the classic
                // one-liner fails there without these two options.
                c.arg(root).args([
                    "mysql",
                    "--no-defaults",
                    "--commands",
                    "--system-command",
                    "-h127.0.0.1",
                    &format!("-P{port}"),
                    "-uroot",
                ]);
                // Markers live under the chroot's /tmp.
                (
                    c,
                    Box::new(move |p: &Path| {
                        Path::new("/").join(p.strip_prefix(root).unwrap_or(p))
                    }),
                )
            }
        }
    }

    /// Where the classic client can write marker files that we can read.
    fn marker_dir(&self, work: &Path) -> PathBuf {
        match &self.kind {
            Kind::Mariadb { .. } => work.to_path_buf(),
            Kind::Mysql { root, .. } => {
                let d = root.join(format!("tmp/mqb-markers-{}", std::process::id()));
                std::fs::create_dir_all(&d).unwrap();
                d
            }
        }
    }

    fn is_mysql(&self) -> bool {
        matches!(self.kind, Kind::Mysql { .. })
    }

    /// Create `n` tables and open them all (FLUSH TABLES must close them).
    fn open_tables(&self, n: usize) {
        let mut c = self.conn();
        let existing: usize = c
            .query_first::<usize, _>(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bench' AND TABLE_NAME LIKE 't%'",
            )
            .unwrap()
            .unwrap_or(0);
        for start in (existing..n).step_by(100) {
            let batch: Vec<String> = (start..(start + 100).min(n))
                .map(|i| format!("CREATE TABLE bench.t{i} (i INT) ENGINE=InnoDB"))
                .collect();
            c.query_drop(batch.join("; ")).unwrap();
        }
        for start in (0..n).step_by(200) {
            let q: Vec<String> = (start..(start + 200).min(n))
                .map(|i| format!("SELECT 1 FROM bench.t{i} LIMIT 1"))
                .collect();
            c.query_drop(q.join("; ")).unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let mut cmd = Command::new("bash");
        match &self.kind {
            Kind::Mariadb { dir } => cmd
                .arg(self.repo.join("scripts/throwaway-mariadb.sh"))
                .arg("stop")
                .arg(dir),
            Kind::Mysql { dir, .. } => cmd
                .arg(self.repo.join("scripts/server-matrix.sh"))
                .args(["stop", "mysql"])
                .arg(dir),
        };
        let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

// ------------------------------------------------------------------ the volume

/// A loop-mounted XFS made for this run: the datadir lives on it, and the
/// image-copy step copies its backing file while it is frozen. Only this
/// filesystem is ever frozen.
struct Volume {
    _dir: tempfile::TempDir,
    image: PathBuf,
    copy: PathBuf,
    mnt: PathBuf,
    loopdev: String,
}

impl Volume {
    fn create(megabytes: u64) -> Volume {
        let dir = tempfile::Builder::new()
            .prefix("mqv")
            .tempdir_in("/tmp")
            .unwrap();
        let image = dir.path().join("vol.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(megabytes << 20)
            .unwrap();
        run_ok(Command::new("mkfs.xfs").arg("-q").arg(&image), "mkfs.xfs");
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(out.status.success(), "losetup failed");
        let loopdev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let v = Volume {
            copy: dir.path().join("copy.img"),
            _dir: dir,
            image,
            mnt,
            loopdev,
        };
        run_ok(Command::new("mount").arg(&v.loopdev).arg(&v.mnt), "mount");
        v
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        // Thaw first: a bench interrupted mid-freeze must not leave it frozen.
        let _ = Command::new("fsfreeze")
            .arg("-u")
            .arg(&self.mnt)
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = Command::new("losetup").args(["-d", &self.loopdev]).status();
    }
}

// ------------------------------------------------------------------ the load

/// Writers inserting in a loop, recording (start, latency) of every statement,
/// and the start of the statement each writer has in flight.
struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<(Instant, Duration)>>>,
    in_flight: Arc<Mutex<Vec<Option<Instant>>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(server: &Server) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(Mutex::new(vec![None; WRITERS]));
        let threads = (0..WRITERS)
            .map(|w| {
                let (stop, samples, in_flight) = (stop.clone(), samples.clone(), in_flight.clone());
                let mut c = server.conn();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        in_flight.lock().unwrap()[w] = Some(t);
                        let _ = c.query_drop(format!("INSERT INTO bench.w{w} (v) VALUES (1)"));
                        samples.lock().unwrap().push((t, t.elapsed()));
                        in_flight.lock().unwrap()[w] = None;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        Load {
            stop,
            samples,
            in_flight,
            threads,
        }
    }

    /// Worst and p99 latency of the statements that overlapped [from, to].
    fn window(&self, from: Instant, to: Instant) -> (Duration, Duration) {
        // Writers released by the unlock finish just after the contender
        // exits: let them finish, and count any still blocked as in flight.
        std::thread::sleep(Duration::from_millis(300));
        let now = Instant::now();
        let flying: Vec<(Instant, Duration)> = self
            .in_flight
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .map(|t| (*t, now - *t))
            .collect();
        let s = self.samples.lock().unwrap();
        let mut lat: Vec<Duration> = s
            .iter()
            .chain(&flying)
            .filter(|(t, d)| *t <= to && *t + *d >= from)
            .map(|(_, d)| *d)
            .collect();
        lat.sort();
        if lat.is_empty() {
            return (Duration::ZERO, Duration::ZERO);
        }
        let p99 = lat[((lat.len() as f64) * 0.99).ceil() as usize - 1];
        (*lat.last().unwrap(), p99)
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

// ------------------------------------------------------------------ contenders

/// The snapshot step every contender runs while locked.
#[derive(Clone, Copy)]
enum Step<'a> {
    Sleep,
    /// Freeze the volume, copy its image, thaw.
    ImageCopy(&'a Volume),
}

impl Step<'_> {
    fn name(&self) -> &'static str {
        match self {
            Step::Sleep => "sleep 0.2",
            Step::ImageCopy(_) => "freeze + copy volume image",
        }
    }

    fn command(&self) -> String {
        match self {
            Step::Sleep => SLEEP_STEP.into(),
            Step::ImageCopy(v) => format!(
                "cp --sparse=always {} {}",
                v.image.display(),
                v.copy.display()
            ),
        }
    }
}

#[derive(Clone, Copy)]
enum Contender {
    Classic,
    Quiesce(&'static str),
}

impl Contender {
    fn name(self, server: &Server) -> String {
        let auto = if server.is_mysql() {
            "ftwrl"
        } else {
            "backup-stage"
        };
        match self {
            Contender::Classic => "classic mysql -e \"FTWRL; SYSTEM ...\"".into(),
            Contender::Quiesce(mode) if mode == auto => {
                format!("mysql-quiesce --lock={mode} (auto)")
            }
            Contender::Quiesce(mode) => format!("mysql-quiesce --lock={mode}"),
        }
    }
}

/// What one run of a contender measured.
struct Outcome {
    code: i32,
    wall: Duration,
    max_rss_kb: i64,
    /// Lock acquired to lock released.
    held_ms: Option<f64>,
    /// Process start to lock acquired (connecting and locking included).
    start_to_locked_ms: Option<f64>,
    /// Time spent acquiring the lock (mysql-quiesce only: from its report).
    acquire_ms: Option<f64>,
    /// The snapshot step's own time inside the locked section.
    step_ms: Option<f64>,
}

impl Outcome {
    /// What writers pay for the tool itself: lock held beyond the step.
    fn overhead_ms(&self) -> Option<f64> {
        Some(round1(self.held_ms? - self.step_ms?))
    }
}

/// Run a command and reap it with wait4 to get its own peak RSS.
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which std cannot see
fn run_measured(mut cmd: Command) -> (i32, Duration, i64, f64, f64) {
    let (started, t) = (now_secs(), Instant::now());
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: plain libc call on our own child; rusage is a plain struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let ended = now_secs();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    (code, t.elapsed(), usage.ru_maxrss, started, ended)
}

fn read_marker(path: &Path) -> Option<f64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Seconds since the epoch of the report's RFC 3339 times ("...T12:34:56.789Z").
fn parse_rfc3339(s: &str) -> Option<f64> {
    let (date, time) = s.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (hh, mm, ss): (i64, i64, f64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    // Days from civil (Howard Hinnant's algorithm), as the report's writer.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60) as f64 + ss)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn run_contender(c: Contender, cfg: &Config, servers: &[&Server], step: Step) -> Outcome {
    let work = cfg.work.path();
    match c {
        Contender::Classic => {
            let server = servers[0];
            let markers = server.marker_dir(work);
            let (mut cmd, seen_by_client) = server.client();
            let marker = |name: &str| {
                let p = markers.join(name);
                let _ = std::fs::remove_file(&p);
                p
            };
            let (locked, s0, s1) = (marker("locked"), marker("step0"), marker("step1"));
            let date = |p: &Path| format!("SYSTEM date +%s.%N > {}", seen_by_client(p).display());
            let (freeze, thaw) = match step {
                Step::ImageCopy(v) => (
                    format!("SYSTEM fsfreeze -f {}; ", v.mnt.display()),
                    format!("SYSTEM fsfreeze -u {}; ", v.mnt.display()),
                ),
                Step::Sleep => (String::new(), String::new()),
            };
            cmd.arg("-e").arg(format!(
                "FLUSH TABLES WITH READ LOCK; {}; {freeze}{}; SYSTEM {}; {}; {thaw}UNLOCK TABLES",
                date(&locked),
                date(&s0),
                step.command(),
                date(&s1)
            ));
            let (code, wall, rss, started, ended) = run_measured(cmd);
            let locked_at = read_marker(&locked);
            let step_ms = match (read_marker(&s0), read_marker(&s1)) {
                (Some(a), Some(b)) => Some(round1((b - a) * 1000.0)),
                _ => None,
            };
            Outcome {
                code,
                wall,
                max_rss_kb: rss,
                // Upper bound: includes the client's exit after UNLOCK TABLES.
                held_ms: locked_at.map(|l| round1((ended - l) * 1000.0)),
                start_to_locked_ms: locked_at.map(|l| round1((l - started) * 1000.0)),
                acquire_ms: None,
                step_ms,
            }
        }
        Contender::Quiesce(mode) => {
            let report = work.join("report.json");
            let _ = std::fs::remove_file(&report);
            let mut cmd = Command::new(&cfg.binary);
            cmd.args(["--no-defaults", "-uroot", &format!("--lock={mode}")]);
            if servers.len() == 1 {
                cmd.args(servers[0].quiesce_args());
            } else {
                for (i, s) in servers.iter().enumerate() {
                    let Kind::Mariadb { dir } = &s.kind else {
                        unreachable!("instances are MariaDB")
                    };
                    // Named: every throwaway server's socket is called `sock`.
                    cmd.arg(format!(
                        "--instance=I{i}=mysql://root@localhost/?socket={}",
                        dir.join("sock").display()
                    ));
                }
            }
            cmd.arg(format!("--lock-file={}", work.join("run.lock").display()))
                .arg(format!("--report={}", report.display()))
                .args(["--snapshot", &step.command()]);
            if let Step::ImageCopy(v) = step {
                cmd.arg(format!("--freeze={}", v.mnt.display()));
            }
            let (code, wall, rss, started, _) = run_measured(cmd);
            let r: Option<serde_json::Value> = std::fs::read_to_string(&report)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            let num = |p: &str| {
                r.as_ref()
                    .and_then(|r| r.pointer(p))
                    .and_then(|v| v.as_f64())
            };
            let locked_at = r.as_ref().and_then(|r| {
                let lock = r["phases"]
                    .as_array()?
                    .iter()
                    .find(|p| p["name"] == "lock")?;
                Some(
                    parse_rfc3339(lock["started_at"].as_str()?)?
                        + lock["duration_ms"].as_f64()? / 1000.0,
                )
            });
            // The hooks' own time inside the locked section.
            let step_ms = r.as_ref().and_then(|r| {
                Some(
                    r["hooks"]
                        .as_array()?
                        .iter()
                        .filter(|h| {
                            matches!(h["phase"].as_str(), Some("pre" | "snapshot" | "post"))
                        })
                        .filter_map(|h| h["duration_ms"].as_f64())
                        .sum::<f64>(),
                )
            });
            Outcome {
                code,
                wall,
                max_rss_kb: rss,
                held_ms: num("/lock/held_ms"),
                start_to_locked_ms: locked_at.map(|l| round1((l - started) * 1000.0)),
                acquire_ms: num("/lock/acquired_in_ms"),
                step_ms,
            }
        }
    }
}

// ------------------------------------------------------------------ results

#[derive(serde::Serialize)]
struct Row {
    section: String,
    server: String,
    step: String,
    scenario: String,
    contender: String,
    outcome: String,
    worst_writer_ms: Option<f64>,
    p99_writer_ms: Option<f64>,
    lock_held_ms: Option<f64>,
    lock_acquire_ms: Option<f64>,
    overhead_ms: Option<f64>,
    start_to_locked_ms: Option<f64>,
    total_ms: Option<f64>,
    peak_rss_kb: Option<i64>,
}

/// Each column's title (Markdown) and name (CSV), in the order of `Row::cells`.
const COLUMNS: [(&str, &str); 14] = [
    ("section", "section"),
    ("server", "server"),
    ("step", "step"),
    ("scenario", "scenario"),
    ("contender", "contender"),
    ("outcome", "outcome"),
    ("worst writer", "worst_writer_ms"),
    ("p99 writer", "p99_writer_ms"),
    ("lock held", "lock_held_ms"),
    ("lock acquire", "lock_acquire_ms"),
    ("overhead", "overhead_ms"),
    ("start to locked", "start_to_locked_ms"),
    ("total", "total_ms"),
    ("peak RSS KiB", "peak_rss_kb"),
];
/// The first columns are text (quoted in CSV); the rest are numbers.
const TEXT_COLUMNS: usize = 6;

impl Row {
    fn cells(&self) -> [String; 14] {
        [
            self.section.clone(),
            self.server.clone(),
            self.step.clone(),
            self.scenario.clone(),
            self.contender.clone(),
            self.outcome.clone(),
            cell(self.worst_writer_ms),
            cell(self.p99_writer_ms),
            cell(self.lock_held_ms),
            cell(self.lock_acquire_ms),
            cell(self.overhead_ms),
            cell(self.start_to_locked_ms),
            cell(self.total_ms),
            self.peak_rss_kb.map_or("-".into(), |k| k.to_string()),
        ]
    }
}

fn outcome_text(code: i32) -> String {
    match code {
        0 => "ok".into(),
        75 => "gave up (75): refused to stall writers".into(),
        c => format!("exit {c}"),
    }
}

fn ms(d: Duration) -> f64 {
    round1(d.as_secs_f64() * 1000.0)
}

#[allow(clippy::too_many_arguments)]
fn row(
    section: &str,
    server: &Server,
    step: Step,
    scenario: &str,
    c: Contender,
    o: &Outcome,
    writers: Option<(Duration, Duration)>,
) -> Row {
    Row {
        section: section.into(),
        server: server.version(),
        step: step.name().into(),
        scenario: scenario.into(),
        contender: c.name(server),
        outcome: outcome_text(o.code),
        worst_writer_ms: writers.map(|w| ms(w.0)),
        p99_writer_ms: writers.map(|w| ms(w.1)),
        lock_held_ms: o.held_ms,
        lock_acquire_ms: o.acquire_ms,
        overhead_ms: o.overhead_ms(),
        start_to_locked_ms: o.start_to_locked_ms,
        total_ms: Some(ms(o.wall)),
        peak_rss_kb: Some(o.max_rss_kb),
    }
}

// ------------------------------------------------------------------ overhead

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(round1(v[v.len() / 2]))
}

/// One mysql-quiesce run with `extra` arguments: its wall time, exit status
/// and, with `with_report`, its report (with the process start time, for the
/// breakdown).
fn quiesce_once(
    cfg: &Config,
    server: &Server,
    extra: &[&str],
    with_report: bool,
) -> (Duration, i32, Option<serde_json::Value>, f64) {
    let report = cfg.work.path().join("overhead-report.json");
    let _ = std::fs::remove_file(&report);
    let mut cmd = Command::new(&cfg.binary);
    cmd.args(["--no-defaults", "-uroot"])
        .args(server.quiesce_args())
        .arg(format!(
            "--lock-file={}",
            cfg.work.path().join("run.lock").display()
        ));
    if with_report {
        cmd.arg(format!("--report={}", report.display()));
    }
    cmd.args(extra);
    let (code, wall, _, started, _) = run_measured(cmd);
    let r = std::fs::read_to_string(&report)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    (wall, code, r, started)
}

/// What a run costs beyond the snapshot itself: the lock time each hook adds
/// (six `true` hooks against none), and a whole no-op run against the mysql
/// client doing the same job, alternating, medians. The no-op run's wall
/// time is that of `mysql-quiesce -- true` as a user types it; the breakdown
/// comes from the same run with --report (whose fsync the client never does).
fn overhead(cfg: &Config, server: &Server, rows: &mut Vec<Row>, notes: &mut String) {
    let runs = if cfg.quick { 3 } else { 41 };
    let six: &[&str] = &[
        "--pre",
        "true",
        "--pre",
        "true",
        "--pre",
        "true",
        "--snapshot",
        "true",
        "--post",
        "true",
        "--",
        "true",
    ];
    let none: &[&str] = &["--", "true"];
    let mut held: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut wall: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut hook_ms = Vec::new();
    let mut classic_wall = Vec::new();
    let mut plain_wall = Vec::new();
    // Phases of the no-hook runs: exec to connect, then each phase's duration.
    let names = [
        "connect",
        "lock",
        "coordinates",
        "snapshot",
        "verify",
        "unlock",
    ];
    let mut phases: Vec<Vec<f64>> = vec![Vec::new(); names.len() + 2];
    for _ in 0..runs {
        let (w, code, _, _) = quiesce_once(cfg, server, none, false);
        assert_eq!(code, 0, "bench: the no-op run failed");
        plain_wall.push(ms(w));
        let (mut cmd, _) = server.client();
        cmd.arg("-e")
            .arg("FLUSH TABLES WITH READ LOCK; SYSTEM true; UNLOCK TABLES");
        let (code, w, _, _, _) = run_measured(cmd);
        assert_eq!(code, 0, "bench: the classic no-op failed");
        classic_wall.push(ms(w));
        for (i, args) in [none, six].iter().enumerate() {
            let (w, code, r, started) = quiesce_once(cfg, server, args, true);
            assert_eq!(code, 0, "bench: overhead run failed");
            let Some(r) = r else { continue };
            wall[i].push(ms(w));
            if let Some(h) = r.pointer("/lock/held_ms").and_then(|v| v.as_f64()) {
                held[i].push(h);
            }
            if i == 1 {
                for h in r["hooks"].as_array().into_iter().flatten() {
                    hook_ms.extend(h["duration_ms"].as_f64());
                }
            } else {
                let list = r["phases"].as_array().cloned().unwrap_or_default();
                let find = |n: &str| list.iter().find(|p| p["name"] == n);
                if let Some(first) =
                    find("connect").and_then(|p| parse_rfc3339(p["started_at"].as_str()?))
                {
                    phases[0].push((first - started) * 1000.0);
                }
                for (k, n) in names.iter().enumerate() {
                    phases[k + 1].extend(find(n).and_then(|p| p["duration_ms"].as_f64()));
                }
                let last_end = list
                    .iter()
                    .filter_map(|p| {
                        Some(
                            parse_rfc3339(p["started_at"].as_str()?)?
                                + p["duration_ms"].as_f64()? / 1000.0,
                        )
                    })
                    .fold(f64::NAN, f64::max);
                if last_end.is_finite() {
                    phases[names.len() + 1].push((started + w.as_secs_f64() - last_end) * 1000.0);
                }
            }
        }
    }
    let row = |scenario: &str, contender: &str, held: Option<f64>, total: Option<f64>| Row {
        section: "overhead".into(),
        server: server.version(),
        step: "`true`".into(),
        scenario: format!("{scenario} (median of {runs})"),
        contender: contender.into(),
        outcome: "ok".into(),
        worst_writer_ms: None,
        p99_writer_ms: None,
        lock_held_ms: held,
        lock_acquire_ms: None,
        overhead_ms: None,
        start_to_locked_ms: None,
        total_ms: total,
        peak_rss_kb: None,
    };
    let (classic, quiesce) = (median(classic_wall.clone()), median(plain_wall.clone()));
    rows.push(row(
        "no-op run",
        "classic mysql -e \"FTWRL; SYSTEM true; UNLOCK TABLES\"",
        None,
        classic,
    ));
    rows.push(row(
        "no-op run",
        "mysql-quiesce -- true",
        median(held[0].clone()),
        quiesce,
    ));
    rows.push(row(
        "six `true` hooks (3 pre, snapshot, post, COMMAND)",
        "mysql-quiesce",
        median(held[1].clone()),
        median(wall[1].clone()),
    ));
    let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    let _ = writeln!(
        notes,
        "No-op run (`-- true`), median of {runs} alternating runs: mysql-quiesce {} ms, the mysql client {} ms \
         ({}x). Where mysql-quiesce's time goes (medians of the same run with --report, whose fsync adds to \
         its end): exec to connect {} ms, connect {} ms, lock {} ms, coordinates {} ms, snapshot (COMMAND) {} ms, \
         verify {} ms, unlock {} ms, after unlock to exit {} ms. \
         Six `true` hooks held the lock {} ms against {} ms for none; a `true` hook is reported as {} ms.\n",
        fmt(quiesce),
        fmt(classic),
        match (quiesce, classic) {
            (Some(q), Some(c)) if c > 0.0 => format!("{:.2}", q / c),
            _ => "-".into(),
        },
        fmt(median(phases[0].clone())),
        fmt(median(phases[1].clone())),
        fmt(median(phases[2].clone())),
        fmt(median(phases[3].clone())),
        fmt(median(phases[4].clone())),
        fmt(median(phases[5].clone())),
        fmt(median(phases[6].clone())),
        fmt(median(phases[7].clone())),
        fmt(median(held[1].clone())),
        fmt(median(held[0].clone())),
        fmt(median(hook_ms)),
    );
}

// ------------------------------------------------------------------ sections

fn scenarios(cfg: &Config) -> Vec<(&'static str, Option<String>)> {
    let secs = if cfg.quick { 2 } else { 4 };
    let mut s = vec![
        ("no long statement", None),
        (
            "long UPDATE",
            Some(format!("UPDATE bench.slow SET c = c + SLEEP({secs})")),
        ),
    ];
    if !cfg.quick {
        s.push((
            "long SELECT",
            Some(format!("SELECT SLEEP({secs}) FROM bench.slow")),
        ));
    }
    s
}

fn writer_stall(
    cfg: &Config,
    server: &Server,
    steps: &[Step],
    contenders: &[Contender],
    rows: &mut Vec<Row>,
) {
    let load = Load::start(server);
    for step in steps {
        for (scenario, long_sql) in scenarios(cfg) {
            for &c in contenders {
                let long = long_sql.clone().map(|sql| {
                    let mut conn = server.conn();
                    let h = std::thread::spawn(move || {
                        let _ = conn.query_drop(sql);
                    });
                    std::thread::sleep(Duration::from_millis(500));
                    h
                });
                let from = Instant::now();
                let o = run_contender(c, cfg, &[server], *step);
                let writers = load.window(from, Instant::now());
                rows.push(row(
                    "writer stall",
                    server,
                    *step,
                    scenario,
                    c,
                    &o,
                    Some(writers),
                ));
                eprintln!(
                    "bench: {} / {} / {}: {}",
                    step.name(),
                    scenario,
                    c.name(server),
                    outcome_text(o.code)
                );
                if let Some(h) = long {
                    let _ = h.join();
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }
    load.stop();
}

fn scale_tables(cfg: &Config, rows: &mut Vec<Row>) {
    let dir = tempfile::Builder::new()
        .prefix("mqb")
        .tempdir_in("/tmp")
        .unwrap();
    let server = Server::mariadb(&cfg.repo, dir.path());
    let steps: &[usize] = if cfg.quick {
        &[100]
    } else {
        &[100, 1000, 10000]
    };
    for &n in steps {
        for c in [
            Contender::Classic,
            Contender::Quiesce("ftwrl"),
            Contender::Quiesce("backup-stage"),
        ] {
            // Open every table so that FLUSH TABLES has them all to close.
            server.open_tables(n);
            let o = run_contender(c, cfg, &[&server], Step::Sleep);
            rows.push(row(
                "scale: open tables",
                &server,
                Step::Sleep,
                &format!("{n} tables"),
                c,
                &o,
                None,
            ));
        }
    }
}

fn scale_instances(cfg: &Config, rows: &mut Vec<Row>) {
    let counts: &[usize] = if cfg.quick { &[1, 2] } else { &[1, 2, 4] };
    let tables = if cfg.quick { 200 } else { 2000 };
    let dirs: Vec<tempfile::TempDir> = (0..*counts.last().unwrap())
        .map(|_| {
            tempfile::Builder::new()
                .prefix("mqb")
                .tempdir_in("/tmp")
                .unwrap()
        })
        .collect();
    let servers: Vec<Server> = dirs
        .iter()
        .map(|d| Server::mariadb(&cfg.repo, d.path()))
        .collect();
    for &n in counts {
        let group: Vec<&Server> = servers.iter().take(n).collect();
        for mode in ["ftwrl", "backup-stage"] {
            // Each instance alone first: the sum is what locking them one
            // after the other would cost.
            let mut sum = Some(0.0);
            if n > 1 {
                for s in &group {
                    s.open_tables(tables);
                    let o = run_contender(Contender::Quiesce(mode), cfg, &[s], Step::Sleep);
                    sum = sum.zip(o.acquire_ms).map(|(a, b)| a + b);
                }
            }
            for s in &group {
                s.open_tables(tables);
            }
            let o = run_contender(Contender::Quiesce(mode), cfg, &group, Step::Sleep);
            let scenario = format!("{n} instance(s), {tables} open tables each");
            rows.push(row(
                "scale: instances",
                &servers[0],
                Step::Sleep,
                &scenario,
                Contender::Quiesce(mode),
                &o,
                None,
            ));
            if n > 1 {
                rows.push(Row {
                    contender: format!("{n} single-instance runs, summed (for comparison)"),
                    outcome: "-".into(),
                    lock_acquire_ms: sum.map(round1),
                    lock_held_ms: None,
                    overhead_ms: None,
                    start_to_locked_ms: None,
                    total_ms: None,
                    peak_rss_kb: None,
                    ..row(
                        "scale: instances",
                        &servers[0],
                        Step::Sleep,
                        &scenario,
                        Contender::Quiesce(mode),
                        &o,
                        None,
                    )
                });
            }
        }
    }
}

// ------------------------------------------------------------------ output

fn cell(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or("?".into(), |kb| format!("{:.0} GiB", kb as f64 / 1048576.0));
    let sh = |cmd: &str| {
        Command::new("sh")
            .args(["-c", cmd])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "{cores} cores ({cpu}), {mem} RAM, Linux {}, /tmp on {}",
        sh("uname -r"),
        sh("findmnt -no FSTYPE,SOURCE --target /tmp | head -n1")
    )
}

/// The headline: worst writer wait and lock held, classic / mysql-quiesce's
/// auto choice, per server, step and scenario, from the same run.
fn ratios(rows: &[Row]) -> String {
    let mut out = String::from(
        "| server | step | scenario | worst writer: classic / mysql-quiesce auto | lock held: classic / auto |\n|---|---|---|---|---|\n",
    );
    for auto in rows
        .iter()
        .filter(|r| r.section == "writer stall" && r.contender.ends_with("(auto)"))
    {
        let Some(classic) = rows.iter().find(|r| {
            r.section == auto.section
                && r.server == auto.server
                && r.step == auto.step
                && r.scenario == auto.scenario
                && r.contender.starts_with("classic")
        }) else {
            continue;
        };
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{a:.0} / {b:.0} ms = {:.1}x", a / b),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            auto.server,
            auto.step,
            auto.scenario,
            ratio(classic.worst_writer_ms, auto.worst_writer_ms),
            ratio(classic.lock_held_ms, auto.lock_held_ms)
        );
    }
    out
}

fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    let mut section = "";
    for r in rows {
        if r.section != section {
            section = &r.section;
            let _ = writeln!(out, "\n### {section}\n");
            // The section is the heading, not a column.
            let titles: Vec<&str> = COLUMNS[1..].iter().map(|c| c.0).collect();
            let _ = writeln!(out, "| {} |", titles.join(" | "));
            let _ = writeln!(out, "|{}", "---|".repeat(COLUMNS.len() - 1));
        }
        let _ = writeln!(out, "| {} |", r.cells()[1..].join(" | "));
    }
    out
}

fn csv(rows: &[Row]) -> String {
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.1).collect();
    let mut out = names.join(",") + "\n";
    for r in rows {
        let cells = r.cells();
        let fields: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i < TEXT_COLUMNS {
                    format!("\"{}\"", c.replace('"', "\"\""))
                } else {
                    c.clone()
                }
            })
            .collect();
        let _ = writeln!(out, "{}", fields.join(","));
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cfg = Config {
        quick: args.iter().any(|a| a == "--quick"),
        out: value("--out")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("bench/results")),
        binary: value("--binary")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("target/release/mysql-quiesce")),
        mysql: args.iter().any(|a| a == "--mysql"),
        work: tempfile::Builder::new()
            .prefix("mqw")
            .tempdir_in("/tmp")
            .unwrap(),
        repo,
    };
    std::fs::create_dir_all(&cfg.out).unwrap();
    let mut rows = Vec::new();
    let mut notes = String::new();

    // MariaDB with its datadir on a loop-mounted XFS, for both steps.
    {
        let volume = Volume::create(if cfg.quick { 320 } else { 512 });
        let server = Server::mariadb(&cfg.repo, &volume.mnt.join("srv"));
        writer_stall(
            &cfg,
            &server,
            &[Step::Sleep, Step::ImageCopy(&volume)],
            &[
                Contender::Classic,
                Contender::Quiesce("ftwrl"),
                Contender::Quiesce("backup-stage"),
            ],
            &mut rows,
        );
        overhead(&cfg, &server, &mut rows, &mut notes);
        drop(server);
    }
    if cfg.mysql {
        let dir = tempfile::Builder::new()
            .prefix("mqm")
            .tempdir_in("/tmp")
            .unwrap();
        let server = Server::mysql(&cfg.repo, dir.path());
        writer_stall(
            &cfg,
            &server,
            &[Step::Sleep],
            &[
                Contender::Classic,
                Contender::Quiesce("ftwrl"),
                Contender::Quiesce("instance"),
            ],
            &mut rows,
        );
    }
    scale_tables(&cfg, &mut rows);
    scale_instances(&cfg, &mut rows);

    let mut md = String::new();
    if cfg.quick {
        md.push_str("SMOKE RUN (--quick): smallest settings, numbers are not representative.\n\n");
    }
    let _ = writeln!(
        md,
        "Machine: {}.\n{WRITERS} writers inserting continuously; times in ms; `bash bench/run.sh{}`.\n",
        machine(),
        if cfg.quick { " --quick" } else { "" }
    );
    md.push_str("### Headline: classic procedure / mysql-quiesce, side by side in this run\n\n");
    md.push_str(&ratios(&rows));
    md.push('\n');
    md.push_str(&notes);
    md.push_str(&markdown(&rows));
    print!("{md}");
    std::fs::write(cfg.out.join("results.md"), &md).unwrap();
    std::fs::write(cfg.out.join("results.csv"), csv(&rows)).unwrap();
    let json = serde_json::json!({ "machine": machine(), "quick": cfg.quick, "writers": WRITERS, "rows": rows });
    std::fs::write(
        cfg.out.join("results.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    println!("\nwritten: {}/results.{{md,csv,json}}", cfg.out.display());
    // Not a timing check: a contender that failed (other than giving up with
    // 75 by design) means the benchmark itself has rotted.
    let broken: Vec<String> = rows
        .iter()
        .filter(|r| {
            !matches!(r.outcome.as_str(), "ok" | "-") && !r.outcome.starts_with("gave up (75)")
        })
        .map(|r| {
            format!(
                "{} / {} / {}: {}",
                r.section, r.scenario, r.contender, r.outcome
            )
        })
        .collect();
    if !broken.is_empty() {
        eprintln!("bench: error: runs that failed:\n  {}", broken.join("\n  "));
        std::process::exit(1);
    }
}
