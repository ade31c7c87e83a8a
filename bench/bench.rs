//! Benchmarks: how much a snapshot hurts a live server, mysql-quiesce against
//! the classic `mysql -e "FLUSH TABLES WITH READ LOCK; SYSTEM ...; UNLOCK TABLES"`.
//! Run with `bash bench/run.sh [--quick]`; results are printed as a table and
//! written as CSV and JSON. Measurements only: nothing here asserts a timing.
//!
//! - Writer stall: writers insert continuously while each contender takes one
//!   snapshot (the same `sleep 0.2` step), with no long statement, a long
//!   UPDATE, or a long SELECT running; worst and p99 writer latency in the
//!   contender's window, lock held, total time, outcome.
//! - Overhead: lock held minus the snapshot step, process start to locked,
//!   peak RSS, against the classic procedure.
//! - Scale: lock time as open tables grow, and as instances locked together grow.

use mysql::prelude::Queryable;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SNAPSHOT_STEP: &str = "sleep 0.2";
const WRITERS: usize = 4;

struct Config {
    quick: bool,
    out: PathBuf,
    binary: PathBuf,
    repo: PathBuf,
}

/// A throwaway MariaDB started with scripts/throwaway-mariadb.sh.
struct Server {
    dir: tempfile::TempDir,
    repo: PathBuf,
}

impl Server {
    fn start(repo: &Path) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("mqb")
            .tempdir_in("/tmp")
            .unwrap();
        let ok = Command::new("bash")
            .arg(repo.join("scripts/throwaway-mariadb.sh"))
            .arg("start")
            .arg(dir.path())
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "could not start a throwaway MariaDB");
        let s = Server {
            dir,
            repo: repo.to_path_buf(),
        };
        s.conn()
            .query_drop(
                "SET GLOBAL table_open_cache = 30000; CREATE DATABASE bench; \
                 CREATE TABLE bench.slow (c INT) ENGINE=InnoDB; INSERT INTO bench.slow VALUES (1)",
            )
            .unwrap();
        for w in 0..WRITERS {
            s.conn()
                .query_drop(format!("CREATE TABLE bench.w{w} (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB"))
                .unwrap();
        }
        s
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn conn(&self) -> mysql::Conn {
        mysql::Conn::new(
            mysql::OptsBuilder::new()
                .socket(Some(self.socket().to_string_lossy()))
                .user(Some("root")),
        )
        .unwrap()
    }

    fn version(&self) -> String {
        self.conn()
            .query_first::<String, _>("SELECT VERSION()")
            .unwrap()
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(self.repo.join("scripts/throwaway-mariadb.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .status();
    }
}

/// Writers inserting in a loop, recording (start, latency) of every statement.
struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<(Instant, Duration)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(server: &Server) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..WRITERS)
            .map(|w| {
                let (stop, samples) = (stop.clone(), samples.clone());
                let mut c = server.conn();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        let _ = c.query_drop(format!("INSERT INTO bench.w{w} (v) VALUES (1)"));
                        samples.lock().unwrap().push((t, t.elapsed()));
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        Load {
            stop,
            samples,
            threads,
        }
    }

    /// Worst and p99 latency of the statements that overlapped [from, to].
    fn window(&self, from: Instant, to: Instant) -> (Duration, Duration) {
        let s = self.samples.lock().unwrap();
        let mut lat: Vec<Duration> = s
            .iter()
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

/// One run of a contender: exit status, wall time, peak RSS, mysql-quiesce's report.
struct Outcome {
    code: i32,
    wall: Duration,
    max_rss_kb: i64,
    report: Option<serde_json::Value>,
}

/// Run a command and reap it with wait4 to get its own peak RSS.
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which std cannot see
fn run_measured(mut cmd: Command) -> (i32, Duration, i64) {
    let t = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: plain libc call on our own child; rusage is a plain struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    (code, t.elapsed(), usage.ru_maxrss)
}

#[derive(Clone, Copy)]
enum Contender {
    Classic,
    Quiesce(&'static str),
}

impl Contender {
    fn name(self) -> String {
        match self {
            Contender::Classic => "classic mysql -e FTWRL; SYSTEM".into(),
            Contender::Quiesce(mode) => format!("mysql-quiesce --lock={mode}"),
        }
    }

    fn run(self, cfg: &Config, servers: &[&Server], extra: &[String]) -> Outcome {
        match self {
            Contender::Classic => {
                let mut cmd = Command::new("mariadb");
                cmd.args(["--no-defaults", "-uroot"])
                    .arg(format!("--socket={}", servers[0].socket().display()))
                    .args([
                        "-e",
                        &format!(
                            "FLUSH TABLES WITH READ LOCK; SYSTEM {SNAPSHOT_STEP}; UNLOCK TABLES"
                        ),
                    ]);
                let (code, wall, rss) = run_measured(cmd);
                Outcome {
                    code,
                    wall,
                    max_rss_kb: rss,
                    report: None,
                }
            }
            Contender::Quiesce(mode) => {
                let dir = servers[0].dir.path();
                let report = dir.join("report.json");
                let _ = std::fs::remove_file(&report);
                let mut cmd = Command::new(&cfg.binary);
                cmd.arg("--no-defaults")
                    .arg("-uroot")
                    .arg(format!("--lock={mode}"));
                if servers.len() == 1 {
                    cmd.arg(format!("--socket={}", servers[0].socket().display()));
                } else {
                    for s in servers {
                        cmd.arg(format!(
                            "--instance=mysql://root@localhost/?socket={}",
                            s.socket().display()
                        ));
                    }
                }
                cmd.arg(format!("--lock-file={}", dir.join("run.lock").display()))
                    .arg(format!("--report={}", report.display()))
                    .args(["--snapshot", SNAPSHOT_STEP])
                    .args(extra);
                let (code, wall, rss) = run_measured(cmd);
                let report = std::fs::read_to_string(&report)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok());
                Outcome {
                    code,
                    wall,
                    max_rss_kb: rss,
                    report,
                }
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

fn report_ms(o: &Outcome, pointer: &str) -> Option<f64> {
    o.report
        .as_ref()
        .and_then(|r| r.pointer(pointer))
        .and_then(|v| v.as_f64())
}

/// Time from process start to "locked": the connect and lock phases.
fn start_to_locked_ms(o: &Outcome) -> Option<f64> {
    let phases = o.report.as_ref()?.get("phases")?.as_array()?;
    let sum: f64 = phases
        .iter()
        .filter(|p| matches!(p["name"].as_str(), Some("connect" | "lock")))
        .filter_map(|p| p["duration_ms"].as_f64())
        .sum();
    Some(sum)
}

#[derive(serde::Serialize)]
struct Row {
    section: &'static str,
    scenario: String,
    contender: String,
    outcome: String,
    worst_writer_ms: Option<f64>,
    p99_writer_ms: Option<f64>,
    lock_held_ms: Option<f64>,
    lock_acquire_ms: Option<f64>,
    overhead_ms: Option<f64>,
    start_to_locked_ms: Option<f64>,
    total_ms: f64,
    peak_rss_kb: i64,
}

fn outcome_text(code: i32) -> String {
    match code {
        0 => "ok".into(),
        75 => "gave up (75): refused to stall writers".into(),
        c => format!("exit {c}"),
    }
}

fn writer_stall(cfg: &Config, rows: &mut Vec<Row>) {
    let server = Server::start(&cfg.repo);
    let contenders = [
        Contender::Classic,
        Contender::Quiesce("ftwrl"),
        Contender::Quiesce("backup-stage"),
    ];
    let long_secs = if cfg.quick { 2 } else { 4 };
    let scenarios: Vec<(&str, Option<String>)> = if cfg.quick {
        vec![
            ("no long statement", None),
            (
                "long UPDATE",
                Some(format!("UPDATE bench.slow SET c = c + SLEEP({long_secs})")),
            ),
        ]
    } else {
        vec![
            ("no long statement", None),
            (
                "long UPDATE",
                Some(format!("UPDATE bench.slow SET c = c + SLEEP({long_secs})")),
            ),
            (
                "long SELECT",
                Some(format!("SELECT SLEEP({long_secs}) FROM bench.slow")),
            ),
        ]
    };
    let load = Load::start(&server);
    std::thread::sleep(Duration::from_millis(500));
    for (scenario, long_sql) in &scenarios {
        for c in contenders {
            let long = long_sql.clone().map(|sql| {
                let mut conn = server.conn();
                let h = std::thread::spawn(move || {
                    let _ = conn.query_drop(sql);
                });
                std::thread::sleep(Duration::from_millis(500));
                h
            });
            let from = Instant::now();
            let o = c.run(cfg, &[&server], &[]);
            let to = Instant::now();
            let (worst, p99) = load.window(from, to);
            let held = report_ms(&o, "/lock/held_ms");
            rows.push(Row {
                section: "writer stall",
                scenario: scenario.to_string(),
                contender: c.name(),
                outcome: outcome_text(o.code),
                worst_writer_ms: Some(ms(worst)),
                p99_writer_ms: Some(ms(p99)),
                lock_held_ms: held,
                lock_acquire_ms: report_ms(&o, "/lock/acquired_in_ms"),
                overhead_ms: held.map(|h| ((h - 200.0) * 10.0).round() / 10.0),
                start_to_locked_ms: start_to_locked_ms(&o),
                total_ms: ms(o.wall),
                peak_rss_kb: o.max_rss_kb,
            });
            if let Some(h) = long {
                let _ = h.join();
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    load.stop();
}

fn scale_tables(cfg: &Config, rows: &mut Vec<Row>) {
    let server = Server::start(&cfg.repo);
    let steps: &[usize] = if cfg.quick {
        &[100]
    } else {
        &[100, 1000, 10000]
    };
    let mut created = 0;
    let mut conn = server.conn();
    for &n in steps {
        while created < n {
            let batch: Vec<String> = (created..(created + 100).min(n))
                .map(|i| format!("CREATE TABLE bench.t{i} (i INT) ENGINE=InnoDB"))
                .collect();
            conn.query_drop(batch.join("; ")).unwrap();
            created = (created + 100).min(n);
        }
        // Open every table so FLUSH TABLES has them all to close.
        for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
            let q: Vec<String> = chunk
                .iter()
                .map(|i| format!("SELECT 1 FROM bench.t{i} LIMIT 1"))
                .collect();
            conn.query_drop(q.join("; ")).unwrap();
        }
        for c in [
            Contender::Classic,
            Contender::Quiesce("ftwrl"),
            Contender::Quiesce("backup-stage"),
        ] {
            let o = c.run(cfg, &[&server], &[]);
            rows.push(Row {
                section: "scale: open tables",
                scenario: format!("{n} tables"),
                contender: c.name(),
                outcome: outcome_text(o.code),
                worst_writer_ms: None,
                p99_writer_ms: None,
                lock_held_ms: report_ms(&o, "/lock/held_ms"),
                lock_acquire_ms: report_ms(&o, "/lock/acquired_in_ms"),
                overhead_ms: None,
                start_to_locked_ms: start_to_locked_ms(&o),
                total_ms: ms(o.wall),
                peak_rss_kb: o.max_rss_kb,
            });
            // Reopen the tables the FLUSH closed.
            for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
                let q: Vec<String> = chunk
                    .iter()
                    .map(|i| format!("SELECT 1 FROM bench.t{i} LIMIT 1"))
                    .collect();
                conn.query_drop(q.join("; ")).unwrap();
            }
        }
    }
}

fn scale_instances(cfg: &Config, rows: &mut Vec<Row>) {
    let counts: &[usize] = if cfg.quick { &[1, 2] } else { &[1, 2, 4] };
    let servers: Vec<Server> = (0..*counts.last().unwrap())
        .map(|_| Server::start(&cfg.repo))
        .collect();
    for &n in counts {
        let group: Vec<&Server> = servers.iter().take(n).collect();
        for mode in ["ftwrl", "backup-stage"] {
            let o = Contender::Quiesce(mode).run(cfg, &group, &[]);
            rows.push(Row {
                section: "scale: instances",
                scenario: format!("{n} instance(s)"),
                contender: Contender::Quiesce(mode).name(),
                outcome: outcome_text(o.code),
                worst_writer_ms: None,
                p99_writer_ms: None,
                lock_held_ms: report_ms(&o, "/lock/held_ms"),
                lock_acquire_ms: report_ms(&o, "/lock/acquired_in_ms"),
                overhead_ms: None,
                start_to_locked_ms: start_to_locked_ms(&o),
                total_ms: ms(o.wall),
                peak_rss_kb: o.max_rss_kb,
            });
        }
    }
}

fn cell(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into())
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
        repo,
    };
    std::fs::create_dir_all(&cfg.out).unwrap();
    let version = Server::start(&cfg.repo).version();
    if cfg.quick {
        println!("SMOKE RUN (--quick): smallest settings, numbers are not representative");
    }
    let mut rows = Vec::new();
    writer_stall(&cfg, &mut rows);
    scale_tables(&cfg, &mut rows);
    scale_instances(&cfg, &mut rows);

    println!(
        "MariaDB {version}, {WRITERS} writers, snapshot step `{SNAPSHOT_STEP}`; times in ms\n"
    );
    println!("| section | scenario | contender | outcome | worst writer | p99 writer | lock held | lock acquire | overhead | start to locked | total | peak RSS KiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut csv = String::from("section,scenario,contender,outcome,worst_writer_ms,p99_writer_ms,lock_held_ms,lock_acquire_ms,overhead_ms,start_to_locked_ms,total_ms,peak_rss_kb\n");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} |",
            r.section,
            r.scenario,
            r.contender,
            r.outcome,
            cell(r.worst_writer_ms),
            cell(r.p99_writer_ms),
            cell(r.lock_held_ms),
            cell(r.lock_acquire_ms),
            cell(r.overhead_ms),
            cell(r.start_to_locked_ms),
            r.total_ms,
            r.peak_rss_kb
        );
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.section,
            r.scenario,
            r.contender,
            r.outcome.replace(',', ";"),
            cell(r.worst_writer_ms),
            cell(r.p99_writer_ms),
            cell(r.lock_held_ms),
            cell(r.lock_acquire_ms),
            cell(r.overhead_ms),
            cell(r.start_to_locked_ms),
            r.total_ms,
            r.peak_rss_kb
        ));
    }
    std::fs::write(cfg.out.join("results.csv"), csv).unwrap();
    let json = serde_json::json!({ "server": version, "quick": cfg.quick, "writers": WRITERS, "snapshot_step": SNAPSHOT_STEP, "rows": rows });
    std::fs::write(
        cfg.out.join("results.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    println!(
        "\nwritten: {}, {}",
        cfg.out.join("results.csv").display(),
        cfg.out.join("results.json").display()
    );
}
