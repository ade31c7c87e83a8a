//! `mysql-quiesce verify` against real snapshots of a real server under a
//! write load: an XFS loop volume frozen by mysql-quiesce and copied, and a
//! btrfs read-only snapshot. What is asserted is read from outside verify:
//! the snapshot's files are byte for byte what they were (checksums before
//! and after), the restore point verify reports is the coordinates the
//! snapshot run recorded while the live server has moved on, tampered copies
//! fail with 65, and afterwards no process, mount or file of verify is left.
//! (MySQL 9 and MariaDB 11 cases run in the server matrix: tests/server_matrix.rs.)

mod common;

use common::load::Writer;
use common::loopfs::{FsKind, ImageMount, LoopFs};
use common::process::BIN;
use common::server::TestServer;
use common::snapshot::{assert_nothing_left, assert_same_digest, digest};
use mysql::prelude::Queryable;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Run verify; stdout, stderr and status.
fn verify(args: &[&str]) -> Output {
    let mut cmd = common::mysql_quiesce();
    cmd.arg("verify").args(args);
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The live server's binary-log position.
fn live_position(s: &TestServer) -> (String, u64) {
    let row: mysql::Row = s.conn().query_first("SHOW BINLOG STATUS").unwrap().unwrap();
    (row.get(0).unwrap(), row.get(1).unwrap())
}

/// Create app.big (several pages) and wait until InnoDB has checkpointed
/// past it, so that crash recovery of a later snapshot never rewrites its
/// pages (and cannot heal a page a test corrupts).
fn big_table_checkpointed(s: &TestServer) {
    let mut c = s.conn();
    c.query_drop(
        "CREATE TABLE app.big (id INT PRIMARY KEY, pad CHAR(200)) ENGINE=InnoDB; USE app; \
         INSERT INTO app.big SELECT seq, REPEAT('x', 200) FROM seq_1_to_3000",
    )
    .unwrap();
    let lsn = |c: &mut mysql::Conn, what: &str| -> u64 {
        let row: mysql::Row = c.query_first("SHOW ENGINE INNODB STATUS").unwrap().unwrap();
        let status: String = row.get(2).unwrap();
        status
            .lines()
            .find(|l| l.starts_with(what))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {what} in SHOW ENGINE INNODB STATUS"))
    };
    let target = lsn(&mut c, "Log sequence number");
    c.query_drop("SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0.001; SET GLOBAL innodb_max_dirty_pages_pct = 0")
        .unwrap();
    let t = Instant::now();
    while lsn(&mut c, "Last checkpoint at") < target {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no checkpoint past the fill"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A snapshot made the way the README says: a server under write load, its
/// data directory and binary log on an XFS volume, mysql-quiesce freezing it
/// while the volume's image is copied. The copy is mounted read-write, as an
/// EBS volume made from a snapshot would be (so that only verify's own care
/// keeps it unwritten).
struct ImageSnapshot {
    /// Drops first: the copy is unmounted before its directory goes.
    copy: ImageMount,
    /// Then the live server, before the volume it lives on.
    server: TestServer,
    vol: LoopFs,
    dir: tempfile::TempDir,
    coords: PathBuf,
    recorded: serde_json::Value,
}

impl ImageSnapshot {
    /// `prepare` runs on the live server before the load starts.
    fn take(prepare: impl FnOnce(&TestServer)) -> Option<ImageSnapshot> {
        let vol = LoopFs::new(FsKind::Xfs)?;
        let server = TestServer::start_on(
            &vol.mountpoint().join("data"),
            &vol.mountpoint().join("binlog"),
            &[],
        )?;
        server.sql("CREATE DATABASE app; CREATE TABLE app.w (i INT) ENGINE=InnoDB; CREATE TABLE app.a (i INT) ENGINE=Aria");
        prepare(&server);
        let dir = tempfile::Builder::new()
            .prefix("mqv")
            .tempdir_in("/tmp")
            .unwrap();
        let coords = dir.path().join("coordinates.json");
        let image = dir.path().join("snapshot.img");
        let writers = [
            Writer::start(server.opts(), "app.w"),
            Writer::start(server.opts(), "app.a"),
        ];
        std::thread::sleep(Duration::from_millis(400));
        let out = server
            .mq()
            .arg(vol.arg())
            .arg(format!("--coordinates-file={}", coords.display()))
            .args(["--", "cp", "--sparse=always"])
            .arg(vol.image())
            .arg(&image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the snapshot run failed: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(400));
        for w in writers {
            w.stop();
        }
        let recorded = json(&coords);
        // Log recovery on mount, as for a writable volume made from a snapshot.
        let copy = ImageMount::new(&image, &dir.path().join("copy"), "nouuid");
        Some(ImageSnapshot {
            copy,
            server,
            vol,
            dir,
            coords,
            recorded,
        })
    }

    fn root(&self) -> &Path {
        self.copy.path()
    }

    fn work(&self, name: &str) -> PathBuf {
        let w = self.dir.path().join(name);
        std::fs::create_dir_all(&w).unwrap();
        w
    }

    /// A writable copy of the snapshot's data directory and binary log, to tamper with.
    fn tamperable(&self, name: &str) -> PathBuf {
        let to = self.dir.path().join(name);
        let st = Command::new("cp")
            .arg("-a")
            .arg(self.root())
            .arg(&to)
            .status()
            .unwrap();
        assert!(st.success());
        to
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_frozen_image_copy_taken_under_load_restores_exactly_at_the_recorded_point() {
    let snap = need!(ImageSnapshot::take(|_| {}));
    let work = snap.work("work");
    let report = snap.dir.path().join("report.json");
    let before = digest(snap.root());
    let out = verify(&[
        "--datadir",
        p(&snap.root().join("data")),
        "--binlog-dir",
        p(snap.root()),
        "--coordinates-file",
        p(&snap.coords),
        "--work-dir",
        p(&work),
        "--report",
        p(&report),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same_digest(
        &before,
        &digest(snap.root()),
        "verify changed the snapshot's files",
    );
    assert_nothing_left(&work);

    let r = json(&report);
    let point = &r["restore_point"];
    for (key, recorded) in [
        ("binlog_file", "binlog_file"),
        ("binlog_position", "binlog_position"),
        ("gtid", "gtid"),
    ] {
        assert_eq!(point[key], snap.recorded[recorded], "{key}: {r:#}");
    }
    assert_eq!(snap.recorded["exact"], true);
    assert_eq!(r["comparison"], "match");
    assert!(r["tables"]["checked"].as_u64().unwrap() > 10, "{r:#}");
    assert_eq!(r["tables"]["failed"].as_array().unwrap().len(), 0);
    assert!(r["recovery_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(r["exit_code"], 0);
    // The live server wrote on after the snapshot, into the files the
    // snapshot's absolute binary-log index names: the restore point is the
    // snapshot's own, not theirs.
    assert_eq!(r["binlog"]["absolute_index"], true);
    let (live_file, live_pos) = live_position(&snap.server);
    assert!(
        (live_file.as_str(), live_pos)
            > (
                snap.recorded["binlog_file"].as_str().unwrap(),
                snap.recorded["binlog_position"].as_u64().unwrap()
            ),
        "the load did not go on after the snapshot: live {live_file}:{live_pos}"
    );
    // The recovered server read the snapshot's binary log, not the live
    // file its absolute index names, which has grown since.
    let file = snap.recorded["binlog_file"].as_str().unwrap();
    let live_size = std::fs::metadata(snap.vol.mountpoint().join(file))
        .unwrap()
        .len();
    assert!(live_size > r["binlog"]["size"].as_u64().unwrap(), "{r:#}");
    let seen = &r["server_view"]["binary_logs"][0];
    assert_eq!(seen[0], file, "{r:#}");
    assert_eq!(
        seen[1], r["binlog"]["size"],
        "the copy's server read another binary log: {r:#}"
    );
    // Ready to paste, for the copy's own restore point.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let gtid = snap.recorded["gtid"].as_str().unwrap();
    assert!(
        stdout.contains(&format!("SET GLOBAL gtid_slave_pos = '{gtid}';")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "MASTER_LOG_FILE = '{}', MASTER_LOG_POS = {}",
            snap.recorded["binlog_file"].as_str().unwrap(),
            snap.recorded["binlog_position"]
        )),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("restorable: restore point"), "{stderr}");
}

#[test]
fn a_btrfs_read_only_snapshot_restores_exactly_at_the_recorded_point() {
    let vol = need!(LoopFs::new(FsKind::Btrfs));
    let m = vol.mountpoint();
    let st = Command::new("btrfs")
        .args(["subvolume", "create"])
        .arg(m.join("vol"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    // The binary log inside the data directory, named by absolute path.
    let data = m.join("vol/data");
    let server = need!(TestServer::start_on(&data, &data.join("binlog"), &[]));
    server.sql("CREATE DATABASE app; CREATE TABLE app.w (i INT) ENGINE=InnoDB; CREATE TABLE app.a (i INT) ENGINE=Aria");
    let dir = tempfile::Builder::new()
        .prefix("mqv")
        .tempdir_in("/tmp")
        .unwrap();
    let coords = dir.path().join("coordinates.json");
    let writers = [
        Writer::start(server.opts(), "app.w"),
        Writer::start(server.opts(), "app.a"),
    ];
    std::thread::sleep(Duration::from_millis(400));
    let out = server
        .mq()
        .arg(format!("--coordinates-file={}", coords.display()))
        .args(["--", "btrfs", "subvolume", "snapshot", "-r"])
        .arg(m.join("vol"))
        .arg(m.join("snap"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(400));
    for w in writers {
        w.stop();
    }
    let recorded = json(&coords);
    let snapshot = m.join("snap/data");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let report = dir.path().join("report.json");
    let before = digest(&snapshot);
    let out = verify(&[
        "--datadir",
        p(&snapshot),
        "--coordinates-file",
        p(&coords),
        "--work-dir",
        p(&work),
        "--report",
        p(&report),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same_digest(
        &before,
        &digest(&snapshot),
        "verify changed the snapshot's files",
    );
    assert_nothing_left(&work);
    let r = json(&report);
    for key in ["binlog_file", "binlog_position", "gtid"] {
        assert_eq!(r["restore_point"][key], recorded[key], "{key}: {r:#}");
    }
    assert_eq!(r["comparison"], "match");
    let (live_file, live_pos) = live_position(&server);
    assert!(
        (live_file.as_str(), live_pos)
            > (
                recorded["binlog_file"].as_str().unwrap(),
                recorded["binlog_position"].as_u64().unwrap()
            )
    );
    drop(server);
    let _ = Command::new("btrfs")
        .args(["subvolume", "delete"])
        .arg(m.join("snap"))
        .stdout(Stdio::null())
        .status();
}

#[test]
fn tampered_copies_are_not_what_was_recorded_and_exit_65_with_the_reason() {
    let snap = need!(ImageSnapshot::take(big_table_checkpointed));
    let last = snap.recorded["binlog_file"].as_str().unwrap().to_string();
    type Tamper<'a> = &'a dyn Fn(&Path);
    let cases: [(&str, Tamper, &str); 3] = [
        (
            "binlog-cut",
            &|root: &Path| {
                let f = root.join(&last);
                let len = std::fs::metadata(&f).unwrap().len();
                let file = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
                file.set_len(len - 100).unwrap();
            },
            "the copy is not what was recorded: the binary log was recorded at",
        ),
        (
            "page-corrupt",
            &|root: &Path| {
                use std::io::{Seek, SeekFrom, Write};
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(root.join("data/app/big.ibd"))
                    .unwrap();
                // Inside leaf page 10, not all zeros: its checksum no longer matches.
                f.seek(SeekFrom::Start(10 * 16384 + 1000)).unwrap();
                f.write_all(&[0xaa; 16]).unwrap();
            },
            "app.big",
        ),
        (
            "table-file-missing",
            &|root: &Path| std::fs::remove_file(root.join("data/app/big.ibd")).unwrap(),
            "big",
        ),
    ];
    for (name, tamper, reason) in cases {
        let root = snap.tamperable(name);
        tamper(&root);
        let work = snap.work(&format!("work-{name}"));
        let report = snap.dir.path().join(format!("{name}.json"));
        let out = verify(&[
            "--datadir",
            p(&root.join("data")),
            "--binlog-dir",
            p(&root),
            "--coordinates-file",
            p(&snap.coords),
            "--work-dir",
            p(&work),
            "--report",
            p(&report),
        ]);
        assert_eq!(out.status.code(), Some(65), "{name}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("---- {name}:\n{stderr}");
        assert!(
            stderr.contains(reason),
            "{name}: no {reason:?} in:\n{stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "{name}: statements for a bad copy: {}",
            text(&out)
        );
        assert_eq!(json(&report)["exit_code"], 65);
        assert_nothing_left(&work);
    }
}

#[test]
fn not_a_data_directory_or_not_a_server_is_bad_input_78() {
    let dir = tempfile::Builder::new()
        .prefix("mqv")
        .tempdir_in("/tmp")
        .unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let out = verify(&["--datadir", p(dir.path()), "--work-dir", p(&work)]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a MySQL or MariaDB data directory")
    );

    // A real data directory (a copy: the live one is refused, below) with a
    // program that is not a server.
    let s = server!();
    let data = s.path("data");
    let copy = dir.path().join("data");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&data)
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    let client = which::which("mariadb").expect("the mariadb client");
    let out = verify(&[
        "--datadir",
        p(&copy),
        "--server",
        p(&client),
        "--work-dir",
        p(&work),
    ]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not a MySQL or MariaDB server"),
        "{stderr}"
    );
    // A live data directory is refused: verify is for snapshots.
    let out = verify(&["--datadir", p(&data), "--work-dir", p(&work)]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("of a running process"));
    assert_nothing_left(&work);
}

#[test]
fn verify_refuses_the_options_of_a_snapshot_run() {
    let out = verify(&["--datadir", "/nonexistent", "--freeze", "/tmp"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("verify does not take --freeze"));
    // The spellings the ordinary command line accepts are read the same way
    // here: refused by name, never a silent usage status.
    let out = verify(&["--datadir", "/nonexistent", "-psecret"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("verify does not take --password"), "{err}");
    assert!(!err.contains("secret"), "{err}");
    let out = common::mysql_quiesce()
        .args(["--skip-pre-flush", "verify", "--datadir", "/nonexistent"])
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("verify does not take --skip-pre-flush"));
    // A switch verify takes, in its negated spelling: verify runs (and finds no data directory).
    let out = common::mysql_quiesce()
        .args(["--skip-quiet", "verify", "--datadir", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let out = common::mysql_quiesce()
        .args(["verify", "--help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--datadir",
        "--coordinates-file",
        "--binlog-dir",
        "--server",
        "--check-tables",
        "--timeout",
        "--report",
        "--copy-to",
    ] {
        assert!(help.contains(opt), "verify --help lacks {opt}");
    }
}

/// Processes whose command line contains `needle`.
fn processes_naming(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            String::from_utf8_lossy(&cmd)
                .contains(needle)
                .then_some(pid)
        })
        .collect()
}

/// verify in the background on a good copy; returns it once its server runs.
#[allow(clippy::zombie_processes)] // the callers wait for it
fn verify_in_background(
    snap: &ImageSnapshot,
    work: &Path,
    extra: &[&str],
) -> (std::process::Child, u32) {
    let stderr = work.with_extension("stderr");
    let mut child = Command::new(BIN)
        .arg("verify")
        .args([
            "--datadir",
            p(&snap.root().join("data")),
            "--binlog-dir",
            p(snap.root()),
        ])
        .args(["--work-dir", p(work)])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        // Its server has its socket in the work directory (a process forked
        // by verify that has not exec'd yet still has verify's arguments).
        let servers = processes_naming(&format!("--socket={}", p(work)));
        if let Some(pid) = servers.first() {
            return (child, *pid);
        }
        if t.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "verify's server never started: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if t.elapsed() > limit {
            // Its server dies with it (PR_SET_PDEATHSIG): nothing outlives the test.
            let _ = child.kill();
            let _ = child.wait();
            panic!("verify did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_server_that_cannot_recover_in_time_sigterm_and_a_crashed_server_leave_nothing_behind() {
    let snap = need!(ImageSnapshot::take(|_| {}));
    let signal = |pid: u32, sig| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap()
    };
    use nix::sys::signal::Signal::{SIGKILL, SIGSTOP, SIGTERM};

    // A server that cannot recover in time (stopped as soon as it starts):
    // 69 at --timeout, the server killed, nothing mounted.
    let work = snap.work("work-timeout");
    let (mut child, server) = verify_in_background(&snap, &work, &["--timeout", "3"]);
    signal(server, SIGSTOP);
    let t = Instant::now();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(60)), Some(69));
    let took = t.elapsed();
    assert!(
        took > Duration::from_secs(2) && took < Duration::from_secs(15),
        "{took:?}"
    );
    let stderr = std::fs::read_to_string(work.with_extension("stderr")).unwrap();
    assert!(
        stderr.contains("did not finish crash recovery within --timeout (3 s)"),
        "{stderr}"
    );
    assert_nothing_left(&work);

    // SIGTERM while it waits for a server that does not come up: 143 at once
    // (not at --timeout), nothing left.
    let work = snap.work("work-sigterm");
    let (mut child, server) = verify_in_background(&snap, &work, &[]);
    signal(server, SIGSTOP);
    let t = Instant::now();
    signal(child.id(), SIGTERM);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(60)), Some(143));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "SIGTERM took {:?}",
        t.elapsed()
    );
    assert_nothing_left(&work);

    // Its server dies (SIGKILL) while verify waits for it: 69 at once, nothing left.
    let work = snap.work("work-crash");
    let (mut child, server) = verify_in_background(&snap, &work, &[]);
    let t = Instant::now();
    signal(server, SIGKILL);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(60)), Some(69));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the server's death was seen after {:?}",
        t.elapsed()
    );
    let stderr = std::fs::read_to_string(work.with_extension("stderr")).unwrap();
    assert!(
        stderr.contains("the server exited during crash recovery"),
        "{stderr}"
    );
    assert_nothing_left(&work);

    // verify itself killed outright: its server dies with it, and the overlay
    // with its mount namespace.
    let work = snap.work("work-sigkill");
    let (mut child, _server) = verify_in_background(&snap, &work, &[]);
    child.kill().unwrap();
    child.wait().unwrap();
    let t = Instant::now();
    while !processes_naming(p(&work)).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "verify's server outlived it"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Its files stay (nothing could remove them), as the README and
    // docs/restore.md say: its private directory under --work-dir. Nothing
    // runs or is mounted, so `rm -rf` removes them.
    let left: Vec<String> = std::fs::read_dir(&work)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.len() == 1 && left[0].starts_with("mysql-quiesce-verify."),
        "{left:?}"
    );
    let st = Command::new("rm")
        .arg("-rf")
        .arg(work.join(&left[0]))
        .status()
        .unwrap();
    assert!(st.success());
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir(&work).unwrap();
    assert_nothing_left(&work);
}

#[test]
fn copy_to_verifies_a_full_copy_and_removes_it() {
    let snap = need!(ImageSnapshot::take(|_| {}));
    let work = snap.work("work");
    let copies = snap.work("copies");
    let before = digest(snap.root());
    let out = verify(&[
        "--datadir",
        p(&snap.root().join("data")),
        "--binlog-dir",
        p(snap.root()),
        "--coordinates-file",
        p(&snap.coords),
        "--check-tables=none",
        "--copy-to",
        p(&copies),
        "--work-dir",
        p(&work),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same_digest(
        &before,
        &digest(snap.root()),
        "verify --copy-to changed the snapshot's files",
    );
    assert_nothing_left(&work);
    assert_nothing_left(&copies);
    assert!(String::from_utf8_lossy(&out.stderr).contains("tables not checked"));
}

/// Wait until the server whose pid file is `pid_file` has exited (it was
/// told to shut down): its files are then what a crash would have left.
fn wait_server_gone(pid_file: &Path) {
    let t = Instant::now();
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no pid file");
        std::thread::sleep(Duration::from_millis(20));
    };
    loop {
        // Our child until the fixture reaps it: a zombie has exited.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next();
        if stat.is_empty() || state == Some("Z") {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the server did not shut down"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tables_whose_files_live_outside_the_data_directory_are_refused_and_never_touched() {
    let dir = tempfile::Builder::new()
        .prefix("mqv")
        .tempdir_in("/tmp")
        .unwrap();
    // The files of two tables live outside the data directory: an InnoDB
    // tablespace (the data directory holds an .isl naming it) and a MyISAM
    // table's data and index (symbolic links in the data directory).
    let ext = dir.path().join("ext");
    std::fs::create_dir(&ext).unwrap();
    let s = server!();
    s.sql(&format!(
        "CREATE DATABASE app; USE app; \
         CREATE TABLE app.far (id INT PRIMARY KEY AUTO_INCREMENT, a INT, pad CHAR(200)) ENGINE=InnoDB \
         DATA DIRECTORY='{e}'; \
         INSERT INTO app.far (a, pad) SELECT seq, 'x' FROM seq_1_to_5000; \
         CREATE TABLE app.farm (a INT) ENGINE=MyISAM DATA DIRECTORY='{e}' INDEX DIRECTORY='{e}'; \
         INSERT INTO app.farm SELECT seq FROM seq_1_to_100; \
         UPDATE app.far SET a = a + 1",
        e = ext.display()
    ));
    // A crash-consistent copy of the data directory (as a volume snapshot of
    // it alone would be): stopped without flushing, so recovery has work to do.
    s.sql("SET GLOBAL innodb_fast_shutdown = 2; SHUTDOWN");
    wait_server_gone(&s.path("pid"));
    let snapshot = dir.path().join("data");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(s.path("data"))
        .arg(&snapshot)
        .status()
        .unwrap()
        .success());
    assert!(snapshot.join("app/far.isl").exists());
    assert!(std::fs::symlink_metadata(snapshot.join("app/farm.MYD"))
        .unwrap()
        .file_type()
        .is_symlink());
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let report = dir.path().join("report.json");
    let before = digest(&ext);
    let snapshot_before = digest(&snapshot);
    let out = verify(&[
        "--datadir",
        p(&snapshot),
        "--work-dir",
        p(&work),
        "--report",
        p(&report),
    ]);
    assert_same_digest(
        &before,
        &digest(&ext),
        "verify wrote to files outside the snapshot",
    );
    assert_same_digest(
        &snapshot_before,
        &digest(&snapshot),
        "verify changed the snapshot's files",
    );
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "app.far",
        "app.farm",
        "app/far.isl",
        "app/farm.MYD",
        "app/farm.MYI",
        &ext.display().to_string(),
        "nothing was started",
    ] {
        assert!(stderr.contains(needle), "no {needle:?} in:\n{stderr}");
    }
    assert!(out.stdout.is_empty(), "{}", text(&out));
    let r = json(&report);
    assert_eq!(r["exit_code"], 78);
    assert!(r["recovery_ms"].is_null(), "a server was started: {r:#}");
    assert_nothing_left(&work);
}

#[test]
fn the_server_can_write_nothing_outside_its_view_and_run_directory() {
    // Told to write elsewhere (here its general log, by --server-option; in
    // real data a link or a dictionary path verify did not see), the
    // server finds everything but its own directories read-only.
    let dir = tempfile::Builder::new()
        .prefix("mqv")
        .tempdir_in("/tmp")
        .unwrap();
    let s = server!();
    s.sql("CREATE DATABASE app; CREATE TABLE app.t (i INT) ENGINE=InnoDB; INSERT INTO app.t VALUES (1)");
    s.sql("SHUTDOWN");
    wait_server_gone(&s.path("pid"));
    let snapshot = dir.path().join("data");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(s.path("data"))
        .arg(&snapshot)
        .status()
        .unwrap()
        .success());
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let log = outside.join("general.log");
    let out = verify(&[
        "--datadir",
        p(&snapshot),
        "--work-dir",
        p(&work),
        "--check-tables=none",
        "--server-option=--general-log=ON",
        &format!("--server-option=--general-log-file={}", log.display()),
        "-v",
    ]);
    assert!(
        !log.exists(),
        "the server wrote {} outside its view: {}",
        log.display(),
        text(&out)
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("runs in a mount namespace of its own where everything but its view"),
        "{stderr}"
    );
    assert!(!stderr.contains("stayed writable"), "{stderr}");
    assert_nothing_left(&work);
}

#[test]
fn a_live_data_directory_is_refused_under_any_path_a_bind_mount_included() {
    // The same directory under another path: a bind mount (in a private
    // mount namespace, so that nothing outside the test sees it).
    let s = server!();
    let dir = tempfile::Builder::new()
        .prefix("mqv")
        .tempdir_in("/tmp")
        .unwrap();
    let other = dir.path().join("bound");
    let work = dir.path().join("work");
    std::fs::create_dir(&other).unwrap();
    std::fs::create_dir(&work).unwrap();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$1" "$2" && exec "$3" verify --datadir "$2" --work-dir "$4" --check-tables none"#)
        .arg("sh")
        .arg(s.path("data"))
        .arg(&other)
        .arg(BIN)
        .arg(&work)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("of a running process"), "{stderr}");
    assert!(stderr.contains(&other.display().to_string()), "{stderr}");
    assert_nothing_left(&work);
}
