//! The framework integrations in docs/frameworks/, each driven in its
//! framework's calling pattern against a real MariaDB: the QEMU guest agent
//! for real (qemu-ga without a VM, on a unix socket, freezing only a loop
//! filesystem this test made), the VMware Tools script with open-vm-tools'
//! argument sequences, the Google Cloud, Azure and AWS DLM scripts as their
//! agents start them, the Velero and Kanister commands as argv in a simulated
//! pod (as the pod's user), the coprocess example; and the packaging around
//! them (the example option file, the service unit's retry loop).

mod common;

use common::load::Writer;
use common::loopfs::{FsKind, LoopFs};
use common::server::TestServer;
use mysql::prelude::Queryable;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mysql-quiesce");

// ------------------------------------------------------------------ helpers

/// PATH with the binary under test first, as an installed package would have it.
fn path_with_binary() -> String {
    let bin = Path::new(BIN).parent().unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn example(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/frameworks")
        .join(rel)
}

fn read_example(rel: &str) -> String {
    std::fs::read_to_string(example(rel)).unwrap()
}

fn unique() -> u128 {
    common::process::unique()
}

/// The option file the framework scripts read (MYSQL_QUIESCE_CNF), in the
/// server's root-owned temp dir: [mysql-quiesce] pointing at the test server,
/// with its own state directory and run lock, then `extra` (lines, groups).
fn framework_cnf(s: &TestServer, extra: &str) -> PathBuf {
    let path = s.path(&format!("mq-{}.cnf", unique()));
    std::fs::write(
        &path,
        format!(
            "[mysql-quiesce]\nsocket = {}\nuser = root\nstate-dir = {}\nlock-file = {}\n{extra}",
            s.socket.display(),
            s.path("state").display(),
            s.path("run.lock").display()
        ),
    )
    .unwrap();
    path
}

/// `mysql-quiesce status --json` with the same option file: the holder's state.
fn holder_status(cnf: &Path) -> Value {
    let out = Command::new(BIN)
        .arg(format!("--defaults-extra-file={}", cnf.display()))
        .args(["status", "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn holder_running(cnf: &Path) -> bool {
    holder_status(cnf)["running"] == true
}

/// The longest `lock` can take with the retry options in `text` (all four must be set):
/// connecting, every attempt, every wait between attempts.
fn worst_case_lock_seconds(text: &str) -> f64 {
    let opt = |name: &str| -> f64 {
        let key = format!("--{name}=");
        let at = text
            .find(&key)
            .unwrap_or_else(|| panic!("{key} is not set:\n{text}"));
        let rest = &text[at + key.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        rest[..end].parse().unwrap()
    };
    let retries = opt("lock-retries");
    opt("connect-timeout")
        + opt("long-query-wait")
        + (retries + 1.0) * opt("lock-wait-timeout")
        + retries * opt("lock-retry-delay")
}

/// A MEMORY table: writes to it touch no file, so they tell "locked" (a lock
/// wait timeout, 1205) from "released" while the data directory's filesystem
/// is frozen, where an InnoDB write would wait in the kernel. Only FLUSH
/// TABLES WITH READ LOCK blocks them: under BACKUP STAGE such a write times
/// out but is applied and binary-logged (which `unlock` reports with 65), so
/// the tests that probe with it lock with ftwrl (`PROBE_LOCK`).
const PROBE_LOCK: &str = "lock = ftwrl\n";

fn create_memory_table(s: &TestServer) {
    s.sql("CREATE TABLE probe.m (i INT) ENGINE=MEMORY");
}

/// Whether a write to the MEMORY table goes through within 1 s; false only
/// on a lock wait timeout (1205), any other failure fails the test.
fn memory_write_succeeds(s: &TestServer) -> bool {
    let mut c = s.conn();
    c.query_drop("SET SESSION lock_wait_timeout = 1").unwrap();
    match c.query_drop("INSERT INTO probe.m VALUES (1)") {
        Ok(()) => true,
        Err(mysql::Error::MySqlError(e)) if e.code == 1205 => false,
        Err(e) => panic!("the probe write failed for another reason than a lock: {e}"),
    }
}

/// A write that runs for `secs` in its own session: FLUSH TABLES WITH READ
/// LOCK waits for it. Returns the session's id and the thread.
fn long_write(s: &TestServer, secs: u32) -> (u32, std::thread::JoinHandle<()>) {
    let mut c = s.conn();
    let id: u32 = c.query_first("SELECT CONNECTION_ID()").unwrap().unwrap();
    let h = std::thread::spawn(move || {
        let _ = c.query_drop(format!("INSERT INTO probe.t SELECT SLEEP({secs})"));
    });
    let t = Instant::now();
    while s
        .value(&format!(
            "SELECT COUNT(*) FROM information_schema.processlist WHERE id = {id} AND info LIKE 'INSERT%'"
        ))
        .as_deref()
        != Some("1")
    {
        assert!(t.elapsed() < Duration::from_secs(10), "the long write did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (id, h)
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A framework script's environment: the binary on PATH, our option file,
/// extra options (MYSQL_QUIESCE_OPTS), and nothing else of ours.
fn script_env(cmd: &mut Command, cnf: &Path, opts: &str) {
    cmd.env("PATH", path_with_binary())
        .env("MYSQL_QUIESCE_CNF", cnf)
        .env("MYSQL_QUIESCE_OPTS", opts)
        .env_remove("MYSQL_GROUP_SUFFIX")
        .stdin(Stdio::null());
}

/// The lines of `text` between the shared block's markers.
fn shared_block(what: &str, text: &str) -> String {
    let start = text
        .find("# ---- begin: shared")
        .unwrap_or_else(|| panic!("{what} has no shared block"));
    let end = text[start..]
        .find("# ---- end: shared ----")
        .unwrap_or_else(|| panic!("{what}: shared block not closed"));
    text[start..start + end].to_string()
}

// ------------------------------------------------------------------ shared by all scripts

/// The runCommand block scalar of the SSM document, with DLM's `command`
/// parameter filled in.
fn dlm_script(command: &str) -> String {
    let doc: Value = yaml(&example("aws-dlm-ssm-document.yaml"))[0].clone();
    let step = &doc["mainSteps"][0];
    assert_eq!(step["action"], "aws:runShellScript");
    let params = &doc["parameters"]["command"]["allowedValues"];
    assert_eq!(*params, json!(["pre-script", "post-script", "dry-run"]));
    let script = step["inputs"]["runCommand"][0].as_str().unwrap();
    assert!(script.contains("{{ command }}"));
    script.replace("{{ command }}", command)
}

/// YAML documents as JSON, read with Python's yaml module (as kubectl or
/// the AWS console would read them: any syntax slip fails here).
fn yaml(path: &Path) -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "reading {} as YAML (python3-yaml, scripts/install-deps.sh): {}",
        path.display(),
        text(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_framework_script_reads_its_settings_the_same_way() {
    let scripts = [
        "qemu-ga/fsfreeze-hook.d/mysql-quiesce",
        "vmware/backupScripts.d/mysql-quiesce",
        "gcp/snapshots/pre.sh",
        "gcp/snapshots/post.sh",
        "azure/mysql-quiesce-pre.sh",
        "azure/mysql-quiesce-post.sh",
    ];
    let reference = shared_block("qemu-ga", &read_example(scripts[0]));
    assert!(
        reference.contains("/usr/share/mysql-quiesce/service.cnf")
            && reference.contains("MYSQL_QUIESCE_CNF")
            && reference.contains("--defaults-group-suffix=\"$MQ_GROUP\""),
        "{reference}"
    );
    for s in scripts {
        let text = read_example(s);
        assert_eq!(shared_block(s, &text), reference, "{s}");
        assert!(text.starts_with("#!/bin/sh\n"), "{s}: POSIX sh");
        let sh = Command::new("sh")
            .arg("-n")
            .arg(example(s))
            .output()
            .unwrap();
        assert!(sh.status.success(), "{s}: {}", text_of(&sh));
        let mode = std::fs::metadata(example(s)).unwrap().mode();
        assert_eq!(mode & 0o111, 0o111, "{s} is not executable in git");
    }
    assert_eq!(
        shared_block("DLM", &dlm_script("pre-script")),
        reference,
        "the DLM document's script"
    );
    // Each reads a group of its own.
    for (s, group) in [
        ("qemu-ga/fsfreeze-hook.d/mysql-quiesce", "-qemu-ga"),
        ("vmware/backupScripts.d/mysql-quiesce", "-vmware"),
        ("gcp/snapshots/pre.sh", "-gcp"),
        ("azure/mysql-quiesce-pre.sh", "-azure"),
    ] {
        assert!(
            read_example(s).contains(&format!("MQ_GROUP={group}\n")),
            "{s}"
        );
    }
    assert!(dlm_script("pre-script").contains("MQ_GROUP=-dlm\n"));
}

fn text_of(out: &Output) -> String {
    text(out)
}

// ------------------------------------------------------------------ QEMU guest agent, for real

/// Our dispatcher, or the sample QEMU ships (Debian: /etc/qemu/fsfreeze-hook).
#[derive(Clone, Copy, PartialEq)]
enum Dispatcher {
    Ours,
    Sample,
}

/// qemu-ga without a VM: listening on a unix socket, with a copy of a
/// dispatcher as its fsfreeze hook (`-F` with the path attached) and our
/// script in its fsfreeze-hook.d/. It runs in a mount namespace of its own
/// in which the only filesystem under /tmp is the test's loop filesystem, so
/// that its thaw (FITHAW on every mounted filesystem) cannot thaw other tests'
/// filesystems. It is only ever asked to freeze that one filesystem, by name
/// (`freeze`): `guest-fsfreeze-freeze` without a list would freeze them all.
struct Qga {
    child: Child,
    dir: tempfile::TempDir,
    conn: BufReader<UnixStream>,
    mountpoint: PathBuf,
}

/// In the new mount namespace: lazily unmount every other filesystem mounted
/// under /tmp (in this namespace only), then exec qemu-ga.
const NAMESPACE_SCRIPT: &str = r#"mine=$1; shift
for mp in $(awk '$5 ~ /^\/tmp\// { print $5 }' /proc/self/mountinfo | sort -r); do
    [ "$mp" = "$mine" ] || umount -l "$mp" 2>/dev/null || true
done
exec "$@""#;

fn tool(name: &str) -> Option<PathBuf> {
    which::which(name).ok().or_else(|| {
        ["/usr/sbin", "/sbin"]
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.exists())
    })
}

/// Whether `mp` is the mount point of a loop device (the test's own filesystem).
fn is_loop_mount(mp: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo.lines().any(|l| {
        let (left, right) = l.split_once(" - ").unwrap_or((l, ""));
        left.split(' ').nth(4) == mp.to_str()
            && right
                .split(' ')
                .nth(1)
                .is_some_and(|src| src.starts_with("/dev/loop"))
    })
}

impl Qga {
    fn start(fs: &LoopFs, dispatcher: Dispatcher, cnf: &Path, opts: &str) -> Option<Qga> {
        let Some(qemu_ga) = tool("qemu-ga") else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true and qemu-ga is not installed: scripts/install-deps.sh installs qemu-guest-agent");
            }
            eprintln!("SKIPPED: qemu-ga is not installed (with CI=true this fails)");
            return None;
        };
        assert!(is_loop_mount(fs.mountpoint()));
        let dir = tempfile::Builder::new()
            .prefix("mqqga")
            .tempdir_in("/tmp")
            .unwrap();
        let hook_d = dir.path().join("fsfreeze-hook.d");
        std::fs::create_dir(&hook_d).unwrap();
        let source = match dispatcher {
            Dispatcher::Ours => example("qemu-ga/fsfreeze-hook"),
            Dispatcher::Sample => PathBuf::from("/etc/qemu/fsfreeze-hook"),
        };
        let hook = dir.path().join("fsfreeze-hook");
        let mut text = std::fs::read_to_string(&source).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (qemu-guest-agent ships the sample)",
                source.display()
            )
        });
        if dispatcher == Dispatcher::Sample {
            // Its log file is fixed: point it into our directory.
            let fixed = "LOGFILE=/var/log/qga-fsfreeze-hook.log";
            assert!(text.contains(fixed), "the sample changed:\n{text}");
            text = text.replace(
                fixed,
                &format!("LOGFILE={}", dir.path().join("hook.log").display()),
            );
        }
        std::fs::write(&hook, text).unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::copy(
            example("qemu-ga/fsfreeze-hook.d/mysql-quiesce"),
            hook_d.join("mysql-quiesce"),
        )
        .unwrap();
        let sock = dir.path().join("sock");
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            NAMESPACE_SCRIPT,
            "sh",
        ])
        .arg(fs.mountpoint())
        .arg(qemu_ga)
        .args(["-m", "unix-listen", "-p"])
        .arg(&sock)
        .arg("-t")
        .arg(&state)
        .arg("-f")
        .arg(dir.path().join("pid"))
        .arg("-l")
        .arg(dir.path().join("qga.log"))
        // Attached: with a space, -F takes no argument and uses /etc/qemu/fsfreeze-hook.
        .arg(format!("-F{}", hook.display()))
        .env("QGA_FSFREEZE_HOOK_LOG", dir.path().join("hook.log"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap());
        script_env(&mut cmd, cnf, opts);
        let child = cmd.spawn().expect("unshare qemu-ga");
        let t = Instant::now();
        let stream = loop {
            if let Ok(s) = UnixStream::connect(&sock) {
                break s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "qemu-ga did not listen: {}",
                std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // Longer than the hook may take (lock gives up within 42 s).
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let mut qga = Qga {
            child,
            dir,
            conn: BufReader::new(stream),
            mountpoint: fs.mountpoint().to_path_buf(),
        };
        let r = qga.call(json!({"execute": "guest-sync", "arguments": {"id": 4711}}));
        assert_eq!(r["return"], 4711, "{r}");
        Some(qga)
    }

    fn send(&mut self, command: &Value) -> Value {
        let mut line = command.to_string();
        line.push('\n');
        self.conn.get_mut().write_all(line.as_bytes()).unwrap();
        let mut answer = String::new();
        self.conn
            .read_line(&mut answer)
            .unwrap_or_else(|e| panic!("no answer from qemu-ga to {command}: {e}"));
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{answer:?}: {e}"))
    }

    /// Any command but a freeze.
    fn call(&mut self, command: Value) -> Value {
        assert!(
            !command.to_string().contains("fsfreeze-freeze"),
            "freeze only through Qga::freeze"
        );
        self.send(&command)
    }

    /// guest-fsfreeze-freeze-list naming the test's loop filesystem, and nothing else.
    fn freeze(&mut self) -> Value {
        let mp = self.mountpoint.to_str().unwrap().to_string();
        assert!(is_loop_mount(&self.mountpoint), "{mp} is not a loop mount");
        let command = json!({
            "execute": "guest-fsfreeze-freeze-list",
            "arguments": {"mountpoints": [mp]},
        });
        assert_eq!(command["arguments"]["mountpoints"], json!([mp]));
        self.send(&command)
    }

    fn thaw(&mut self) -> Value {
        self.call(json!({"execute": "guest-fsfreeze-thaw"}))
    }

    fn status(&mut self) -> String {
        let r = self.call(json!({"execute": "guest-fsfreeze-status"}));
        r["return"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"))
            .to_string()
    }

    fn hook_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hook.log")).unwrap_or_default()
    }
}

impl Drop for Qga {
    fn drop(&mut self) {
        // Thaw on every path (the test may have failed while frozen); our
        // filesystem's own drop thaws it again if this does not.
        let _ = self
            .conn
            .get_mut()
            .set_read_timeout(Some(Duration::from_secs(60)));
        let frozen = self
            .send_quiet(&json!({"execute": "guest-fsfreeze-status"}))
            .is_none_or(|r| r["return"] != "thawed");
        if frozen {
            let _ = self.send_quiet(&json!({"execute": "guest-fsfreeze-thaw"}));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Qga {
    fn send_quiet(&mut self, command: &Value) -> Option<Value> {
        let mut line = command.to_string();
        line.push('\n');
        self.conn.get_mut().write_all(line.as_bytes()).ok()?;
        let mut answer = String::new();
        self.conn.read_line(&mut answer).ok()?;
        serde_json::from_str(&answer).ok()
    }
}

/// SHOW BINLOG STATUS: (file, position).
fn binlog_position(s: &TestServer) -> (String, u64) {
    let row: mysql::Row = s.conn().query_first("SHOW BINLOG STATUS").unwrap().unwrap();
    (row.get(0).unwrap(), row.get(1).unwrap())
}

#[test]
fn qemu_ga_holds_the_lock_from_its_freeze_to_its_thaw_under_a_write_load() {
    let fs = need!(LoopFs::new(FsKind::Xfs));
    let s = need!(TestServer::start_with_datadir_in(fs.mountpoint(), &[]));
    let datadir = s.value("SELECT @@datadir").unwrap();
    assert!(
        Path::new(&datadir).starts_with(fs.mountpoint()),
        "{datadir}"
    );
    create_memory_table(&s);
    // The coordinates file lives on the data filesystem, inside the snapshot.
    let coordinates = fs.mountpoint().join("mysql-quiesce-coordinates.json");
    let cnf = framework_cnf(
        &s,
        &format!("{PROBE_LOCK}coordinates-file = {}\n", coordinates.display()),
    );
    let mut qga = need!(Qga::start(&fs, Dispatcher::Ours, &cnf, ""));
    let writer = Writer::start(s.opts(), "probe.t");
    std::thread::sleep(Duration::from_millis(300));

    let r = qga.freeze();
    assert_eq!(r["return"], 1, "{r}\n{}", qga.hook_log());
    // Written under the lock before qemu-ga froze: the position the writer has
    // not passed since.
    let c: Value = serde_json::from_str(&std::fs::read_to_string(&coordinates).unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (file, pos) = binlog_position(&s);
    assert_eq!(
        (
            c["binlog_file"].as_str().unwrap(),
            c["binlog_position"].as_u64().unwrap()
        ),
        (file.as_str(), pos)
    );
    assert!(c["exact"] == true, "{c}");
    assert_eq!(qga.status(), "frozen");
    assert!(
        !fs.probe_writable(Duration::from_millis(300)),
        "qemu-ga froze the data filesystem"
    );
    assert!(
        !memory_write_succeeds(&s),
        "the database is locked while frozen"
    );
    assert!(holder_running(&cnf));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!memory_write_succeeds(&s), "still locked");

    let r = qga.thaw();
    assert_eq!(r["return"], 1, "{r}\n{}", qga.hook_log());
    assert_eq!(qga.status(), "thawed");
    // The thaw hook ran `unlock`, which waited for the holder to release.
    let st = holder_status(&cnf);
    assert!(
        st["running"] == false && st["result_waiting"] == false,
        "{st}"
    );
    assert!(s.write_succeeds(1), "writes work after the thaw");
    assert!(memory_write_succeeds(&s));
    assert!(fs.probe_writable(Duration::from_secs(5)));
    writer.stop();
    let log = qga.hook_log();
    assert!(log.contains("export MYSQL_QUIESCE_BINLOG_FILE="), "{log}");
    assert!(
        log.contains("mysql-quiesce thaw") && !log.contains("status=1"),
        "{log}"
    );
}

#[test]
fn a_failed_lock_makes_qemu_ga_abort_its_freeze_and_leaves_nothing_frozen_or_locked() {
    let fs = need!(LoopFs::new(FsKind::Ext4));
    let s = need!(TestServer::start());
    // Server down: nothing answers on the socket (69).
    let down = framework_cnf(&s, "");
    let text = std::fs::read_to_string(&down).unwrap().replace(
        &format!("socket = {}", s.socket.display()),
        &format!("socket = {}", s.path("no-such.sock").display()),
    );
    std::fs::write(&down, text).unwrap();
    {
        let mut qga = need!(Qga::start(&fs, Dispatcher::Ours, &down, ""));
        let r = qga.freeze();
        let desc = r["error"]["desc"]
            .as_str()
            .unwrap_or_else(|| panic!("the freeze went ahead: {r}"));
        assert!(desc.contains("status 69"), "{desc}");
        assert_eq!(qga.status(), "thawed");
        assert!(fs.probe_writable(Duration::from_secs(2)), "nothing frozen");
        assert!(!holder_running(&down));
        // Proxmox thaws after a failed freeze too: nothing to unlock is not an error there.
        let r = qga.thaw();
        assert_eq!(r["return"], 0, "{r}");
    }

    // The lock not acquired within the retries (75), behind a long write: nothing held either.
    let busy = framework_cnf(&s, "lock = ftwrl\n");
    {
        let mut qga = need!(Qga::start(
            &fs,
            Dispatcher::Ours,
            &busy,
            "--lock-retries=1 --lock-retry-delay=0.2 --lock-wait-timeout=0.5"
        ));
        let (id, blocker) = long_write(&s, 30);
        let r = qga.freeze();
        let desc = r["error"]["desc"]
            .as_str()
            .unwrap_or_else(|| panic!("the freeze went ahead: {r}"));
        assert!(desc.contains("status 75"), "{desc}");
        assert_eq!(qga.status(), "thawed");
        assert!(fs.probe_writable(Duration::from_secs(2)), "nothing frozen");
        assert!(s.write_succeeds(1), "nothing locked");
        assert!(!holder_running(&busy));
        s.sql(&format!("KILL QUERY {id}"));
        blocker.join().unwrap();
    }

    // Why the dispatcher: the sample QEMU ships ignores the script's status and freezes unlocked.
    // (Also: qemu-ga's thaw, FITHAW on every filesystem it sees, leaves another test's
    // frozen filesystem alone: it does not see it.)
    let other = need!(LoopFs::new(FsKind::Ext4));
    other.freeze();
    if Path::new("/etc/qemu/fsfreeze-hook").exists() {
        let mut qga = need!(Qga::start(&fs, Dispatcher::Sample, &down, ""));
        let r = qga.freeze();
        assert_eq!(
            r["return"], 1,
            "the sample dispatcher froze although the lock failed: {r}"
        );
        assert!(!fs.probe_writable(Duration::from_millis(300)));
        assert_eq!(qga.thaw()["return"], 1);
        assert!(fs.probe_writable(Duration::from_secs(5)));
    } else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and no /etc/qemu/fsfreeze-hook (qemu-guest-agent ships it)"
        );
    }
    assert!(
        !other.probe_writable(Duration::from_millis(300)),
        "qemu-ga thawed a filesystem it must not see"
    );
    other.thaw();
}

#[test]
fn a_qemu_ga_thaw_that_never_comes_is_ended_by_max_lock_time_without_touching_the_frozen_filesystem(
) {
    let fs = need!(LoopFs::new(FsKind::Xfs));
    let s = need!(TestServer::start_with_datadir_in(fs.mountpoint(), &[]));
    create_memory_table(&s);
    let cnf = framework_cnf(&s, PROBE_LOCK);
    let mut qga = need!(Qga::start(&fs, Dispatcher::Ours, &cnf, "--max-lock-time=6"));
    let r = qga.freeze();
    assert_eq!(r["return"], 1, "{r}\n{}", qga.hook_log());
    assert!(!memory_write_succeeds(&s), "locked");
    // No thaw: the holder releases at its deadline, while qemu-ga keeps the data
    // filesystem frozen. It writes nothing there (its state is elsewhere), so it ends.
    let t = Instant::now();
    while holder_running(&cnf) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the holder did not end at --max-lock-time"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(qga.status(), "frozen");
    assert!(
        !fs.probe_writable(Duration::from_millis(300)),
        "still frozen by qemu-ga"
    );
    assert!(
        memory_write_succeeds(&s),
        "the database lock ended at --max-lock-time"
    );
    assert_eq!(holder_status(&cnf)["result_waiting"], true);
    // The thaw, late: thawed, but the hook says the lock did not last (124).
    let r = qga.thaw();
    let desc = r["error"]["desc"].as_str().unwrap_or_else(|| panic!("{r}"));
    // (65 when the server dropped the session before the holder released it.)
    assert!(
        desc.contains("status 124") || desc.contains("status 65"),
        "{desc}"
    );
    assert_eq!(qga.status(), "thawed");
    assert!(fs.probe_writable(Duration::from_secs(5)));
    assert!(s.write_succeeds(1));
}

#[test]
fn the_qemu_ga_dispatcher_undoes_earlier_scripts_when_one_fails_and_thaws_in_reverse() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("fsfreeze-hook.d");
    std::fs::create_dir(&d).unwrap();
    let hook = dir.path().join("fsfreeze-hook");
    std::fs::copy(example("qemu-ga/fsfreeze-hook"), &hook).unwrap();
    let trace = dir.path().join("trace");
    for name in ["10-a", "20-b", "30-c", "40-d.dpkg-old"] {
        let p = d.join(name);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\necho \"{name} $1\" >> {t}\n[ \"$1\" = freeze ] && [ -e {t}-fail-{name} ] && exit 7\nexit 0\n",
                t = trace.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(d.join("50-not-executable"), "#!/bin/sh\nexit 1\n").unwrap();
    let run = |op: &str| {
        Command::new(&hook)
            .arg(op)
            .env("QGA_FSFREEZE_HOOK_LOG", dir.path().join("log"))
            .status()
            .unwrap()
            .code()
    };
    let take = || {
        let t = std::fs::read_to_string(&trace).unwrap_or_default();
        let _ = std::fs::remove_file(&trace);
        t
    };
    assert_eq!(run("freeze"), Some(0));
    assert_eq!(take(), "10-a freeze\n20-b freeze\n30-c freeze\n");
    assert_eq!(run("thaw"), Some(0));
    assert_eq!(take(), "30-c thaw\n20-b thaw\n10-a thaw\n");
    std::fs::write(format!("{}-fail-20-b", trace.display()), "").unwrap();
    assert_eq!(run("freeze"), Some(7), "a failing script fails the freeze");
    assert_eq!(
        take(),
        "10-a freeze\n20-b freeze\n10-a thaw\n",
        "what succeeded is undone"
    );
    assert_eq!(run("something-else"), Some(0));
    assert_eq!(take(), "");
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(log.contains("20-b finished with status=7"), "{log}");
}

// ------------------------------------------------------------------ VMware Tools

/// As vmtoolsd starts a backupScripts.d script: `bash -c '"FILE" OP [scriptArg]'`.
fn vmware(cnf: &Path, opts: &str, op: &str) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(format!(
        "\"{}\" {op}",
        example("vmware/backupScripts.d/mysql-quiesce").display()
    ));
    script_env(&mut cmd, cnf, opts);
    cmd.output().unwrap()
}

#[test]
fn the_vmware_script_follows_open_vm_tools_sequences() {
    let s = need!(TestServer::start());
    let cnf = framework_cnf(&s, "");
    // freeze, then thaw.
    let out = vmware(&cnf, "", "freeze");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("export MYSQL_QUIESCE_BINLOG_FILE="));
    assert!(!s.write_succeeds(1), "locked between freeze and thaw");
    let out = vmware(&cnf, "", "thaw");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(s.write_succeeds(1));
    assert!(!holder_running(&cnf));

    // freeze (with a tools.conf scriptArg), then freezeFail: the quiesce failed after us.
    let out = vmware(&cnf, "", "freeze \"my-script-arg\"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!s.write_succeeds(1));
    let out = vmware(&cnf, "", "freezeFail \"my-script-arg\"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(s.write_succeeds(1));
    assert!(!holder_running(&cnf));

    // thaw (and tools.conf's spelling, freezefail) without a freeze: nothing held, no error.
    for op in ["thaw", "freezefail"] {
        let out = vmware(&cnf, "", op);
        assert_eq!(out.status.code(), Some(0), "{op}: {}", text(&out));
    }

    // A freeze that cannot lock fails the quiesced snapshot and holds nothing.
    let busy = std::fs::read_to_string(&cnf).unwrap() + "lock = ftwrl\n";
    std::fs::write(&cnf, busy).unwrap();
    let (id, blocker) = long_write(&s, 30);
    let out = vmware(
        &cnf,
        "--lock-retries=1 --lock-retry-delay=0.2 --lock-wait-timeout=0.5",
        "freeze",
    );
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(!holder_running(&cnf));
    assert!(s.write_succeeds(1), "nothing locked");
    s.sql(&format!("KILL QUERY {id}"));
    blocker.join().unwrap();

    // A lock lost between freeze and thaw: the thaw fails with 65.
    let out = vmware(&cnf, "", "freeze");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("export MYSQL_QUIESCE_CONNECTION_ID='"))
        .map(|v| v.trim_end_matches('\'').to_string())
        .unwrap();
    s.sql(&format!("KILL {id}"));
    let out = vmware(&cnf, "", "thaw");
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
}

#[test]
fn the_vmware_qemu_ga_and_azure_scripts_refuse_what_would_collide_with_their_agents_freeze() {
    let s = need!(TestServer::start());
    for key_line in [
        "freeze = /var/lib/mysql",
        "snapshot = true",
        "report = /var/lib/mysql-quiesce/report.json",
        "metrics-file = /var/lib/mysql-quiesce/m.prom",
        "post = true",
        "after = true",
    ] {
        let key = key_line.split(' ').next().unwrap();
        let cnf = framework_cnf(&s, &format!("{key_line}\n"));
        let vm = vmware(&cnf, "", "freeze");
        let mut q = Command::new(example("qemu-ga/fsfreeze-hook.d/mysql-quiesce"));
        q.arg("freeze");
        script_env(&mut q, &cnf, "");
        let q = q.output().unwrap();
        let mut a = Command::new("sh");
        a.arg(example("azure/mysql-quiesce-pre.sh"));
        script_env(&mut a, &cnf, "");
        let a = a.output().unwrap();
        for (who, out) in [("vmware", vm), ("qemu-ga", q), ("azure", a)] {
            assert_eq!(
                out.status.code(),
                Some(78),
                "{who} with {key_line}: {}",
                text(&out)
            );
            assert!(
                String::from_utf8_lossy(&out.stderr).contains(&format!("`{key}`")),
                "{who}: {}",
                text(&out)
            );
            assert!(!holder_running(&cnf), "{who} locked");
        }
        assert!(s.write_succeeds(1));
    }
    // The service's own group is not theirs: a snapshot hook there does not bother them.
    let cnf = framework_cnf(
        &s,
        "[mysql-quiesce-service]\nsnapshot = false\nfreeze = /var/lib/mysql\n",
    );
    let out = vmware(&cnf, "", "freeze");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(vmware(&cnf, "", "thaw").status.code(), Some(0));
    // ... and their own group is read.
    let cnf = framework_cnf(&s, "[mysql-quiesce-vmware]\nlock = ftwrl\n");
    let out = vmware(&cnf, "", "freeze");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("export MYSQL_QUIESCE_LOCK='ftwrl'"),
        "{}",
        text(&out)
    );
    assert_eq!(vmware(&cnf, "", "thaw").status.code(), Some(0));
}

// ------------------------------------------------------------------ Google Cloud

/// As the guest agent runs it: exec'd directly, one argument (the disk list),
/// stdout and stderr read to their end.
fn gcp(rel: &str, cnf: &Path, opts: &str) -> (Output, Duration) {
    let mut cmd = Command::new(example(rel));
    cmd.arg("projects/p/zones/z/disks/mysql-data");
    script_env(&mut cmd, cnf, opts);
    let t = Instant::now();
    let out = cmd.output().unwrap();
    (out, t.elapsed())
}

#[test]
fn the_google_cloud_scripts_hold_the_lock_keep_the_coordinates_and_never_say_124() {
    let s = need!(TestServer::start());
    let coordinates = s.path("disk-coordinates.json");
    let cnf = framework_cnf(
        &s,
        &format!(
            "[mysql-quiesce-gcp]\ncoordinates-file = {}\n",
            coordinates.display()
        ),
    );
    let worst = worst_case_lock_seconds(&read_example("gcp/snapshots/pre.sh"));
    assert!(
        worst < 55.0,
        "lock may take {worst} s, the agent's default timeout is 60 s"
    );
    let cfg = read_example("gcp/instance_configs.cfg");
    assert!(
        cfg.contains("[Snapshots]\nenabled = true\ntimeout_in_seconds = 60\n"),
        "{cfg}"
    );

    let (out, took) = gcp("gcp/snapshots/pre.sh", &cnf, "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The agent reads both pipes to their end: the holder keeps neither open.
    assert!(took < Duration::from_secs(10), "{took:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("export MYSQL_QUIESCE_BINLOG_FILE=") && stderr.contains("mysql-data"),
        "{stderr}"
    );
    let c: Value = serde_json::from_str(&std::fs::read_to_string(&coordinates).unwrap()).unwrap();
    assert!(
        c["binlog_file"].as_str().unwrap().starts_with("binlog."),
        "{c}"
    );
    assert!(!s.write_succeeds(1), "locked between pre.sh and post.sh");
    let (out, _) = gcp("gcp/snapshots/post.sh", &cnf, "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(s.write_succeeds(1));
    let (out, _) = gcp("gcp/snapshots/post.sh", &cnf, "");
    assert_eq!(
        out.status.code(),
        Some(69),
        "nothing to unlock: {}",
        text(&out)
    );

    // Released at --max-lock-time before post.sh: 1, not unlock's 124 (a timeout to the agent).
    let (out, _) = gcp("gcp/snapshots/pre.sh", &cnf, "--max-lock-time=1");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(2500));
    let (out, _) = gcp("gcp/snapshots/post.sh", &cnf, "");
    // (65 when the server dropped the session before the holder released it.)
    assert!(
        matches!(out.status.code(), Some(1) | Some(65)),
        "{}",
        text(&out)
    );

    // A snapshot hook in the shared group is refused (it would run at the release).
    let refused = cnf_with(&cnf, "[mysql-quiesce]\nsnapshot = true\n");
    let (out, _) = gcp("gcp/snapshots/pre.sh", &refused, "");
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(s.write_succeeds(1));
}

/// A copy of option file `cnf` with `extra` appended.
fn cnf_with(cnf: &Path, extra: &str) -> PathBuf {
    let path = cnf.with_file_name(format!("mq-{}.cnf", unique()));
    std::fs::write(&path, std::fs::read_to_string(cnf).unwrap() + extra).unwrap();
    path
}

// ------------------------------------------------------------------ Azure Backup

/// As the backup extension runs it: `sh FILE` (the #! line is ignored).
fn azure(rel: &str, cnf: &Path, opts: &str) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg(example(rel));
    script_env(&mut cmd, cnf, opts);
    cmd.output().unwrap()
}

#[test]
fn the_azure_scripts_hold_the_lock_between_them_as_the_extension_runs_them() {
    let s = need!(TestServer::start());
    let cnf = framework_cnf(&s, "");
    let config: Value =
        serde_json::from_str(&read_example("azure/VMSnapshotScriptPluginConfig.json")).unwrap();
    assert_eq!(config["pluginName"], "ScriptRunner");
    assert_eq!(
        config["preScriptLocation"],
        "/etc/azure/mysql-quiesce-pre.sh"
    );
    assert_eq!(
        config["postScriptLocation"],
        "/etc/azure/mysql-quiesce-post.sh"
    );
    assert_eq!(config["continueBackupOnFailure"], false);
    assert_eq!(config["fsFreezeEnabled"], true);
    let timeout = config["timeoutInSeconds"].as_f64().unwrap();
    assert!(timeout <= 1800.0);
    let worst = worst_case_lock_seconds(&read_example("azure/mysql-quiesce-pre.sh"));
    assert!(
        worst < timeout - 5.0,
        "lock may take {worst} s, Azure gives up at {timeout} s"
    );

    let out = azure("azure/mysql-quiesce-pre.sh", &cnf, "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        !s.write_succeeds(1),
        "locked between the pre- and post-script"
    );
    let out = azure("azure/mysql-quiesce-pre.sh", &cnf, "");
    assert_eq!(
        out.status.code(),
        Some(75),
        "already locked: {}",
        text(&out)
    );
    assert!(
        !s.write_succeeds(1),
        "the failed second pre-script must not release the first"
    );
    let out = azure("azure/mysql-quiesce-post.sh", &cnf, "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(s.write_succeeds(1));
    // Azure runs the post-script after a failed pre-script too: nothing to unlock, no error.
    let out = azure("azure/mysql-quiesce-post.sh", &cnf, "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A lock that did not last is a failed post-script.
    assert_eq!(
        azure("azure/mysql-quiesce-pre.sh", &cnf, "--max-lock-time=1")
            .status
            .code(),
        Some(0)
    );
    std::thread::sleep(Duration::from_millis(2500));
    let out = azure("azure/mysql-quiesce-post.sh", &cnf, "");
    // (65 when the server dropped the session before the holder released it.)
    assert!(
        matches!(out.status.code(), Some(124) | Some(65)),
        "{}",
        text(&out)
    );
}

// ------------------------------------------------------------------ AWS DLM

/// The SSM document's script as the agent runs it: with sh, `command` filled in.
fn dlm(s: &TestServer, command: &str, cnf: &Path, opts: &str) -> (Option<i32>, String, Duration) {
    let file = s.path(&format!("dlm-{command}-{}.sh", unique()));
    std::fs::write(&file, dlm_script(command)).unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg(&file)
        .env("MYSQL_QUIESCE_DLM_RUN", s.path("dlm-run"));
    script_env(&mut cmd, cnf, opts);
    let t = Instant::now();
    let out = cmd.output().unwrap();
    (out.status.code(), text(&out), t.elapsed())
}

#[test]
fn the_aws_dlm_document_maps_each_outcome_to_dlms_codes() {
    let s = need!(TestServer::start());
    let fs = need!(LoopFs::new(FsKind::Xfs));
    let cnf = framework_cnf(
        &s,
        &format!(
            "lock = ftwrl\n[mysql-quiesce-dlm]\nfreeze = {}\n",
            fs.mountpoint().display()
        ),
    );
    let worst = worst_case_lock_seconds(&dlm_script("pre-script"));
    assert!(
        worst < 9.0,
        "lock may take {worst} s, DLM's ExecutionTimeout defaults to 10 s"
    );

    // dry-run: validates, contacts nothing (a server that is down does not matter).
    let down = cnf_with(
        &cnf,
        &format!(
            "[mysql-quiesce]\nsocket = {}\n",
            s.path("no.sock").display()
        ),
    );
    let (code, out, _) = dlm(&s, "dry-run", &down, "");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        fs.probe_writable(Duration::from_secs(5)) && s.write_succeeds(1),
        "dry-run held something"
    );

    let (code, out, _) = dlm(&s, "pre-script", &cnf, "");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("export MYSQL_QUIESCE_BINLOG_FILE="),
        "coordinates in the command output: {out}"
    );
    assert!(!s.write_succeeds(1), "locked between pre- and post-script");
    assert!(
        !fs.probe_writable(Duration::from_millis(300)),
        "[mysql-quiesce-dlm] freeze applies"
    );
    let (code, out, _) = dlm(&s, "pre-script", &cnf, "");
    assert_eq!(code, Some(204), "pre-script while locked: {out}");
    assert!(!s.write_succeeds(1), "still locked");
    let (code, out, _) = dlm(&s, "post-script", &cnf, "");
    assert_eq!(code, Some(0), "{out}");
    assert!(fs.writable_within(Duration::from_secs(5)).is_some());
    assert!(s.write_succeeds(1));
    // DLM retries a failed post-script alone: the retry gives the first one's answer.
    let (code, out, _) = dlm(&s, "post-script", &cnf, "");
    assert_eq!(code, Some(0), "retried post-script: {out}");

    // A lock that did not last until the post-script: 203, and its retry 203 again.
    assert_eq!(dlm(&s, "pre-script", &cnf, "--max-lock-time=1").0, Some(0));
    std::thread::sleep(Duration::from_millis(2500));
    // (unlock says 124, or 65 when the server dropped the session before the holder
    // released it: on a loaded machine it may be late by more than the 1 s margin.)
    let (code, out, _) = dlm(&s, "post-script", &cnf, "");
    assert!(
        code == Some(203) || code == Some(202) && out.contains("status 65"),
        "{out}"
    );
    let (again, out, _) = dlm(&s, "post-script", &cnf, "");
    assert_eq!(again, code, "retried: {out}");

    // A post-script that never ran: the next pre-script collects that outcome and locks.
    assert_eq!(dlm(&s, "pre-script", &cnf, "--max-lock-time=1").0, Some(0));
    std::thread::sleep(Duration::from_millis(2500));
    let (code, out, _) = dlm(&s, "pre-script", &cnf, "");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("collected the outcome of a previous lock"),
        "{out}"
    );
    assert_eq!(dlm(&s, "post-script", &cnf, "").0, Some(0));
    // A new cycle forgets the old answer: post without pre is 205.
    assert_eq!(dlm(&s, "pre-script", &cnf, "").0, Some(0));
    assert_eq!(dlm(&s, "post-script", &cnf, "").0, Some(0));
    std::fs::remove_file(s.path("dlm-run/last-unlock")).unwrap();
    let (code, out, _) = dlm(&s, "post-script", &cnf, "");
    assert_eq!(code, Some(205), "post-script without pre-script: {out}");

    // Not acquired within the retries behind a long write: 201 within DLM's 10 s, nothing held.
    let (id, blocker) = long_write(&s, 30);
    let (code, out, took) = dlm(&s, "pre-script", &cnf, "");
    assert_eq!(code, Some(201), "{out}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    s.sql(&format!("KILL QUERY {id}"));
    blocker.join().unwrap();
    assert!(!holder_running(&cnf));
    assert!(s.write_succeeds(1));
    assert!(fs.probe_writable(Duration::from_secs(5)));

    // Server down: 201.
    let (code, out, _) = dlm(&s, "pre-script", &down, "");
    assert_eq!(code, Some(201), "{out}");
}

// ------------------------------------------------------------------ Kubernetes: Velero, Kanister

/// The pod the Velero and Kanister examples prepare, simulated here: the
/// binary copied into a directory as the init container copies it into its
/// emptyDir, the Secret's option file readable by the pod's group only, an
/// empty world-writable directory for state, and the commands run as argv as
/// the pod's user (runAsUser/runAsGroup), with the paths of the pod mapped to
/// these directories.
struct Pod {
    bin: tempfile::TempDir,
    run: tempfile::TempDir,
    secret: tempfile::TempDir,
    uid: u32,
    gid: u32,
}

impl Pod {
    fn new(s: &TestServer, secret_cnf: &str, uid: u32, gid: u32) -> Pod {
        let dir = |mode| {
            let d = tempfile::Builder::new()
                .prefix("mqpod")
                .tempdir_in("/tmp")
                .unwrap();
            std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            d
        };
        let (bin, run, secret) = (dir(0o755), dir(0o777), dir(0o755));
        let b = bin.path().join("mysql-quiesce");
        std::fs::copy(BIN, &b).unwrap();
        std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o755)).unwrap();
        // The test server's socket is in a directory only root may enter: TCP instead.
        let socket_line = "socket = /run/mysqld/mysqld.sock";
        assert!(secret_cnf.contains(socket_line), "{secret_cnf}");
        let cnf = secret_cnf.replace(socket_line, &format!("host = 127.0.0.1\nport = {}", s.port));
        let f = secret.path().join("mysql-quiesce.cnf");
        std::fs::write(&f, cnf).unwrap();
        std::os::unix::fs::chown(&f, Some(0), Some(gid)).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o440)).unwrap();
        Pod {
            bin,
            run,
            secret,
            uid,
            gid,
        }
    }

    fn exec(&self, argv: &[String]) -> Output {
        let map = |a: &str| {
            a.replace("/opt/mysql-quiesce", &self.bin.path().display().to_string())
                .replace("/run/mysql-quiesce", &self.run.path().display().to_string())
                .replace(
                    "/etc/mysql-quiesce",
                    &self.secret.path().display().to_string(),
                )
        };
        let program = map(&argv[0]);
        assert!(
            program.starts_with(&*self.bin.path().to_string_lossy()),
            "{program}"
        );
        Command::new(program)
            .args(argv[1..].iter().map(|a| map(a)))
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.run.path())
            .uid(self.uid)
            .gid(self.gid)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn state_dir(&self) -> PathBuf {
        self.run.path().join("state")
    }
}

/// A user with only the privileges the examples name (RELOAD, BINLOG MONITOR on MariaDB).
fn create_backup_user(s: &TestServer) {
    s.sql(
        "CREATE USER 'mysql-quiesce'@'127.0.0.1' IDENTIFIED BY 'change-me'; \
         GRANT RELOAD, BINLOG MONITOR ON *.* TO 'mysql-quiesce'@'127.0.0.1'",
    );
}

fn find_by_name<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {list}"))
}

#[test]
fn the_velero_statefulset_holds_the_lock_from_pre_to_post_hook_in_its_pod() {
    let s = need!(TestServer::start());
    let docs = yaml(&example("velero-statefulset.yaml"));
    let secret = docs.iter().find(|d| d["kind"] == "Secret").unwrap();
    let sts = docs.iter().find(|d| d["kind"] == "StatefulSet").unwrap();
    // Velero reads pod annotations: the pod template's, not the StatefulSet's.
    assert!(sts["metadata"]["annotations"].is_null());
    let ann = &sts["spec"]["template"]["metadata"]["annotations"];
    let pod = &sts["spec"]["template"]["spec"];
    let container = ann["pre.hook.backup.velero.io/container"].as_str().unwrap();
    assert_eq!(ann["post.hook.backup.velero.io/container"], container);
    let c = find_by_name(&pod["containers"], container);
    let mount = |name: &str| -> String {
        find_by_name(&c["volumeMounts"], name)["mountPath"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let volume = |name: &str| find_by_name(&pod["volumes"], name).clone();
    // The binary: copied by the init container into the emptyDir the hooks' container mounts.
    let init = &pod["initContainers"][0];
    let init_mount = &init["volumeMounts"][0];
    assert!(volume(init_mount["name"].as_str().unwrap())["emptyDir"].is_object());
    let pre: Vec<String> =
        serde_json::from_str(ann["pre.hook.backup.velero.io/command"].as_str().unwrap()).unwrap();
    let post: Vec<String> =
        serde_json::from_str(ann["post.hook.backup.velero.io/command"].as_str().unwrap()).unwrap();
    let bin_dir = mount(init_mount["name"].as_str().unwrap());
    assert_eq!(pre[0], format!("{bin_dir}/mysql-quiesce"));
    assert_eq!(init["command"][2], pre[0]);
    // Credentials from the Secret, state in a memory emptyDir, the same in both hooks.
    let secret_mount = mount("mysql-quiesce-cnf");
    assert_eq!(
        volume("mysql-quiesce-cnf")["secret"]["secretName"],
        secret["metadata"]["name"]
    );
    let secret_cnf = secret["stringData"]["mysql-quiesce.cnf"].as_str().unwrap();
    let run_mount = mount("mysql-quiesce-run");
    assert_eq!(volume("mysql-quiesce-run")["emptyDir"]["medium"], "Memory");
    for argv in [&pre, &post] {
        assert!(
            argv.contains(&format!(
                "--defaults-extra-file={secret_mount}/mysql-quiesce.cnf"
            )),
            "{argv:?}"
        );
        assert!(
            argv.contains(&format!("--state-dir={run_mount}/state")),
            "{argv:?}"
        );
    }
    assert_eq!(pre.iter().filter(|a| *a == "lock").count(), 1);
    assert_eq!(post.last().unwrap(), "unlock");
    // Velero's timeout: a unit is required (a bare number silently becomes 30s).
    let timeout = ann["pre.hook.backup.velero.io/timeout"].as_str().unwrap();
    let timeout: f64 = timeout
        .strip_suffix('s')
        .expect("timeout in seconds with its unit")
        .parse()
        .unwrap();
    let worst = worst_case_lock_seconds(&pre.join(" "));
    assert!(
        worst < timeout - 5.0,
        "lock may take {worst} s, the hook times out at {timeout} s"
    );
    assert_eq!(ann["pre.hook.backup.velero.io/on-error"], "Fail");

    // Run as the pod runs them: the pod's user, argv, no shell.
    let uid = pod["securityContext"]["runAsUser"].as_u64().unwrap() as u32;
    let gid = pod["securityContext"]["runAsGroup"].as_u64().unwrap() as u32;
    assert_eq!(
        pod["securityContext"]["fsGroup"].as_u64().unwrap() as u32,
        gid
    );
    assert_eq!(volume("mysql-quiesce-cnf")["secret"]["defaultMode"], 0o440);
    create_backup_user(&s);
    let p = Pod::new(&s, secret_cnf, uid, gid);
    let out = p.exec(&pre);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        !s.write_succeeds(1),
        "locked between the pre and post hooks"
    );
    let meta = std::fs::metadata(p.state_dir()).unwrap();
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (uid, 0o700),
        "a private state directory"
    );
    let out = p.exec(&post);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(s.write_succeeds(1));
    let out = p.exec(&post);
    assert_eq!(
        out.status.code(),
        Some(69),
        "nothing to unlock: {}",
        text(&out)
    );
}

#[test]
fn the_kanister_blueprint_locks_in_backup_prehook_and_unlocks_in_backup_posthook() {
    let s = need!(TestServer::start());
    let bp = yaml(&example("kanister-blueprint.yaml"))[0].clone();
    assert_eq!(bp["kind"], "Blueprint");
    assert_eq!(bp["apiVersion"], "cr.kanister.io/v1alpha1");
    assert_eq!(bp["metadata"]["namespace"], "kasten-io");
    let actions = bp["actions"].as_object().unwrap();
    assert_eq!(
        actions.keys().collect::<Vec<_>>(),
        ["backupPosthook", "backupPrehook"]
    );
    let exec = |action: &str| -> Vec<String> {
        let phase = &bp["actions"][action]["phases"][0];
        assert_eq!(phase["func"], "KubeExec");
        assert_eq!(bp["actions"][action]["kind"], "StatefulSet");
        assert_eq!(phase["args"]["pod"], "{{ index .StatefulSet.Pods 0 }}");
        assert_eq!(phase["args"]["namespace"], "{{ .StatefulSet.Namespace }}");
        assert_eq!(phase["args"]["container"], "mariadb");
        serde_json::from_value(phase["args"]["command"].clone()).unwrap()
    };
    let (pre, post) = (exec("backupPrehook"), exec("backupPosthook"));
    // The same pod preparation as the Velero example: its paths, its container.
    let velero = yaml(&example("velero-statefulset.yaml"));
    let sts = velero.iter().find(|d| d["kind"] == "StatefulSet").unwrap();
    let vpre: Vec<String> = serde_json::from_str(
        sts["spec"]["template"]["metadata"]["annotations"]["pre.hook.backup.velero.io/command"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(pre, vpre, "the same lock command as the Velero example");
    assert!(find_by_name(&sts["spec"]["template"]["spec"]["containers"], "mariadb").is_object());
    let secret = velero.iter().find(|d| d["kind"] == "Secret").unwrap();
    let pod = &sts["spec"]["template"]["spec"]["securityContext"];
    create_backup_user(&s);
    let p = Pod::new(
        &s,
        secret["stringData"]["mysql-quiesce.cnf"].as_str().unwrap(),
        pod["runAsUser"].as_u64().unwrap() as u32,
        pod["runAsGroup"].as_u64().unwrap() as u32,
    );
    let out = p.exec(&pre);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!s.write_succeeds(1), "locked between the actions");
    let out = p.exec(&post);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(s.write_succeeds(1));
}

// ------------------------------------------------------------------ coprocess

#[test]
fn the_coprocess_example_holds_the_lock_around_existing_snapshot_lines() {
    let s = need!(TestServer::start());
    // The "existing snapshot line" proves writes are blocked while it runs:
    // only a lock wait timeout counts, and it must see the exported variables.
    let blocked = format!(
        "[ -n \"$MYSQL_QUIESCE_BINLOG_FILE\" ] || exit 1; {}",
        s.blocked_write_hook("probe.t")
    );
    let status = Command::new("bash")
        .arg(example("hold-coprocess.sh"))
        .args(["sh", "-c", &blocked])
        .env("PATH", path_with_binary())
        .env("MYSQL_QUIESCE_OPTS", s.args().join(" "))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(s.write_succeeds(1));
}

// ------------------------------------------------------------------ packaging

#[test]
fn the_example_option_file_is_valid_with_every_line_uncommented() {
    let fs = need!(LoopFs::new(FsKind::Ext4));
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/mysql-quiesce.cnf"),
    )
    .unwrap();
    // Every commented-out setting and group, the first of each key per group; the
    // data directory is the test's loop filesystem.
    let mut seen = std::collections::HashSet::new();
    let mut group = String::new();
    let mut text = String::new();
    for line in shipped.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            if line.starts_with('[') {
                group = line.to_string();
            }
            text += &format!("{line}\n");
            continue;
        };
        let setting = rest.starts_with('[')
            || rest.split(' ').next().is_some_and(|w| {
                !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            }) && (rest.contains(" = ") || !rest.contains(' '));
        if !setting {
            continue;
        }
        if rest.starts_with('[') {
            group = rest.to_string();
        }
        let key = format!("{group}{}", rest.split(' ').next().unwrap());
        if seen.insert(key) {
            text += &format!("{rest}\n");
        }
    }
    assert!(
        text.contains("\nfreeze = /var/lib/mysql\n")
            && text.contains("\ncoordinates-file = /var/lib/mysql/"),
        "{text}"
    );
    let text = text
        .replace(
            "/var/lib/mysql/",
            &format!("{}/", fs.mountpoint().display()),
        )
        .replace(
            "/var/lib/mysql\n",
            &format!("{}\n", fs.mountpoint().display()),
        );
    let file = fs.mountpoint().parent().unwrap().join("uncommented.cnf");
    std::fs::write(&file, &text).unwrap();
    // The service's view: a plan, not refused.
    let out = Command::new(BIN)
        .arg(format!("--defaults-file={}", file.display()))
        .args(["--defaults-group-suffix=-service", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", text_of(&out));
    // The framework scripts' view: nothing they refuse.
    for group in ["-qemu-ga", "-vmware", "-azure", "-gcp", "-dlm"] {
        let out = Command::new(BIN)
            .arg(format!("--defaults-file={}", file.display()))
            .arg(format!("--defaults-group-suffix={group}"))
            .arg("--print-defaults")
            .output()
            .unwrap();
        let args = String::from_utf8_lossy(&out.stdout);
        for key in [
            "snapshot",
            "freeze",
            "report",
            "metrics-file",
            "post",
            "after",
        ] {
            assert!(
                !args.lines().any(|l| l.starts_with(&format!("--{key}="))),
                "{group}: {key} in\n{args}"
            );
        }
    }
}

/// The service's ExecStart as systemd would run it: continuation lines
/// joined, `$$` unescaped.
fn service_exec_start() -> String {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/mysql-quiesce.service"),
    )
    .unwrap();
    let mut lines = unit.lines().skip_while(|l| !l.starts_with("ExecStart="));
    let mut cmd = String::new();
    for l in lines.by_ref() {
        match l.strip_suffix('\\') {
            Some(head) => cmd += &format!("{head} "),
            None => {
                cmd += l;
                break;
            }
        }
    }
    cmd.strip_prefix("ExecStart=").unwrap().replace("$$", "$")
}

#[test]
fn the_service_runs_after_the_server_and_retries_69_and_75_only() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/mysql-quiesce.service"),
    )
    .unwrap();
    let after = unit.lines().find_map(|l| l.strip_prefix("After=")).unwrap();
    for server in ["mariadb.service", "mysql.service", "mysqld.service"] {
        assert!(
            after.split(' ').any(|u| u == server),
            "After= lacks {server}"
        );
    }
    assert!(
        !unit.lines().any(|l| l.starts_with("ProtectHome=")),
        "gcloud and az write to root's home"
    );
    let timer = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/mysql-quiesce.timer"),
    )
    .unwrap();
    assert!(timer.contains("\nPersistent=true\n"));
    let exec = service_exec_start();
    let words = exec.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("/usr/bin/mysql-quiesce --defaults-extra-file=/usr/share/mysql-quiesce/service.cnf --defaults-group-suffix=-service "), "{exec}");
    assert!(exec.contains("sleep 120"), "{exec}");
    // The loop, with a stand-in that exits with the given statuses in turn.
    let dir = tempfile::tempdir().unwrap();
    let stub = dir.path().join("mq");
    std::fs::write(
        &stub,
        format!(
            "#!/bin/sh\necho \"$*\" >> {d}/calls\ncode=$(head -n 1 {d}/codes)\nsed -i 1d {d}/codes\nexit $code\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exec = exec
        .replace("/usr/bin/mysql-quiesce", stub.to_str().unwrap())
        .replace("sleep 120", "sleep 0");
    assert!(exec.starts_with("/bin/sh -c '"), "{exec}");
    for (codes, exit, runs) in [
        (&[0][..], 0, 1),
        (&[75, 69, 0], 0, 3),
        (&[78], 78, 1),
        (&[65], 65, 1),
        (&[75, 124], 124, 2),
        (&[75, 75, 69, 75, 75, 0], 75, 5),
    ] {
        let _ = std::fs::remove_file(dir.path().join("calls"));
        std::fs::write(
            dir.path().join("codes"),
            codes.iter().map(|c| format!("{c}\n")).collect::<String>(),
        )
        .unwrap();
        let out = Command::new("bash").arg("-c").arg(&exec).output().unwrap();
        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
        assert_eq!(
            (out.status.code(), calls.lines().count()),
            (Some(exit), runs),
            "{codes:?}: {}",
            text_of(&out)
        );
        assert!(calls
            .lines()
            .all(|l| l.contains("--report=/var/lib/mysql-quiesce/last-report.json")));
    }
    if let Some(analyze) = tool("systemd-analyze") {
        let out = Command::new(analyze)
            .args(["verify", "--man=no"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/mysql-quiesce.service"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("mysql-quiesce.service:"),
            "systemd-analyze: {err}"
        );
    }
}
