//! The hooks library (hooks/): btrfs for real on a loop device,
//! aws-ebs-snapshot with the real AWS CLI against moto's local EC2 endpoint,
//! the others with their tool replaced on PATH by a recorder that checks the
//! exact command line.

mod common;

use common::loopfs::{FsKind, LoopFs};
use common::server::TestServer;
use predicates::prelude::*;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn hook(name: &str) -> String {
    format!("{}/hooks/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The variables mysql-quiesce gives a snapshot hook.
const ENV: &[(&str, &str)] = &[
    ("MYSQL_QUIESCE_PHASE", "snapshot"),
    ("MYSQL_QUIESCE_RUN_ID", "20261123T230000Z-42-abcdef"),
    ("MYSQL_QUIESCE_BINLOG_FILE", "binlog.000007"),
    ("MYSQL_QUIESCE_BINLOG_POS", "1234"),
    ("MYSQL_QUIESCE_GTID", "0-1-99"),
    ("MYSQL_QUIESCE_COORDINATES_EXACT", "1"),
    ("MYSQL_QUIESCE_LOCK", "backup-stage"),
];

/// Run a hook as mysql-quiesce would, bounded: a hook that never returns (a
/// poll loop that misses its end) fails the test with 124 instead of hanging it.
/// The hook exited 0; its stderr otherwise.
#[track_caller]
fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_hook(name: &str, args: &[&str], path: &str, extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("/usr/bin/timeout");
    cmd.args(["-s", "KILL", "60"])
        .arg(hook(name))
        .args(args)
        .env("PATH", path)
        .stdin(Stdio::null());
    for (k, v) in ENV.iter().chain(extra_env) {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// A directory of recorder scripts named like the real tools: each appends
/// its arguments (one per line, then `--`) to `log` and prints `output`.
struct Recorder {
    dir: tempfile::TempDir,
}

impl Recorder {
    fn new(tools: &[(&str, &str)]) -> Recorder {
        let dir = tempfile::tempdir().unwrap();
        for (tool, output) in tools {
            let script = format!(
                "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done | tee -a {tlog} >> {log}\necho -- >> {log}\necho -- >> {tlog}\nprintf '%s\\n' '{output}'\n",
                log = dir.path().join("log").display(),
                tlog = dir.path().join(format!("{tool}.log")).display()
            );
            let p = dir.path().join(tool);
            std::fs::write(&p, script).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        Recorder { dir }
    }

    fn path(&self) -> String {
        format!("{}:/usr/bin:/bin", self.dir.path().display())
    }

    fn argv(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("log"))
            .unwrap_or_default()
            .lines()
            .take_while(|l| *l != "--")
            .map(str::to_string)
            .collect()
    }

    /// Every call of `tool`, each as its argv.
    fn calls(&self, tool: &str) -> Vec<Vec<String>> {
        let log = std::fs::read_to_string(self.dir.path().join(format!("{tool}.log")))
            .unwrap_or_default();
        let mut calls = vec![];
        let mut argv = vec![];
        for l in log.lines() {
            if l == "--" {
                calls.push(std::mem::take(&mut argv));
            } else {
                argv.push(l.to_string());
            }
        }
        calls
    }

    /// Replace `tool` with a script of our own (it still logs its calls).
    fn script(&self, tool: &str, body: &str) {
        let p = self.dir.path().join(tool);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >> {tlog}\necho -- >> {tlog}\n{body}\n",
                tlog = self.dir.path().join(format!("{tool}.log")).display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

const DESCRIPTION: &str =
    "mysql-quiesce run 20261123T230000Z-42-abcdef: binlog binlog.000007:1234 gtid 0-1-99";

#[test]
fn lvm_snapshot_of_a_thick_lv_is_a_cow_snapshot_of_the_given_size_with_a_warning() {
    let r = Recorder::new(&[("lvs", "  linear"), ("lvcreate", "Logical volume created")]);
    let out = run_hook(
        "lvm-snapshot",
        &["--vg", "vg0", "--lv=mysql", "--size", "5G"],
        &r.path(),
        &[],
    );
    assert_ok(&out);
    let name = "mysql-quiesce-20261123T230000Z-42-abcdef";
    assert_eq!(
        r.calls("lvs"),
        [["--noheadings", "-o", "segtype", "vg0/mysql"]]
    );
    assert_eq!(
        r.calls("lvcreate"),
        [["--snapshot", "--name", name, "--size", "5G", "vg0/mysql"]]
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("vg0/{name}\n")
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("becomes invalid once 5G of changes fill it up"),
        "{stderr}"
    );

    // Without a size there is no COW snapshot to make.
    let r = Recorder::new(&[("lvs", "  striped"), ("lvcreate", "")]);
    let out = run_hook(
        "lvm-snapshot",
        &["--vg", "vg0", "--lv", "mysql"],
        &r.path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --size"));
    assert!(r.calls("lvcreate").is_empty());
}

#[test]
fn lvm_snapshot_of_a_thin_lv_takes_no_size_and_says_how_to_activate_it() {
    let name = "mysql-quiesce-20261123T230000Z-42-abcdef";
    let r = Recorder::new(&[("lvs", "  thin"), ("lvcreate", "Logical volume created")]);
    let out = run_hook(
        "lvm-snapshot",
        &["--vg", "vg0", "--lv", "mysql"],
        &r.path(),
        &[],
    );
    assert_ok(&out);
    assert_eq!(
        r.calls("lvcreate"),
        [["--snapshot", "--name", name, "vg0/mysql"]]
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("lvchange -ay -K vg0/{name}")));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("vg0/{name}\n")
    );

    // --activate: without the activation-skip flag (-kn), active like any LV.
    let r = Recorder::new(&[("lvs", "  thin"), ("lvcreate", "")]);
    let out = run_hook(
        "lvm-snapshot",
        &["--vg", "vg0", "--lv", "mysql", "--activate"],
        &r.path(),
        &[],
    );
    assert_ok(&out);
    assert_eq!(
        r.calls("lvcreate"),
        [[
            "--snapshot",
            "--name",
            name,
            "--setactivationskip",
            "n",
            "vg0/mysql"
        ]]
    );

    // A size on a thin LV would make an old-style COW snapshot: refused.
    let r = Recorder::new(&[("lvs", "  thin"), ("lvcreate", "")]);
    let out = run_hook(
        "lvm-snapshot",
        &["--vg", "vg0", "--lv", "mysql", "--size", "1G"],
        &r.path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("thin snapshot takes no --size"));
    assert!(r.calls("lvcreate").is_empty());
}

#[test]
fn zfs_snapshot_runs_zfs_snapshot_recursively_when_asked() {
    let r = Recorder::new(&[("zfs", "")]);
    let out = run_hook(
        "zfs-snapshot",
        &[
            "--dataset",
            "tank/mysql",
            "--recursive",
            "--prefix",
            "nightly",
        ],
        &r.path(),
        &[],
    );
    assert!(out.status.success());
    let snap = "tank/mysql@nightly-20261123T230000Z-42-abcdef";
    assert_eq!(r.argv(), ["snapshot", "-r", snap]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{snap}\n"));
}

#[test]
fn ec2_create_snapshot_passes_the_coordinates_in_the_description_and_prints_the_id() {
    let r = Recorder::new(&[(
        "ec2-create-snapshot",
        "SNAPSHOT\tsnap-0abc\tvol-0123\tpending\t2026-11-23T23:00:00+0000",
    )]);
    let out = run_hook(
        "ec2-create-snapshot",
        &["--volume-id", "vol-0123", "--region", "eu-west-1"],
        &r.path(),
        &[],
    );
    assert_ok(&out);
    assert_eq!(
        r.argv(),
        ["vol-0123", "-d", DESCRIPTION, "--region", "eu-west-1"]
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "snap-0abc\n");
    // Legacy: it says so, and where to go instead.
    assert!(String::from_utf8_lossy(&out.stderr).contains("legacy hook (EC2 API tools): prefer"));
}

/// A gcloud that records its calls and answers `snapshots describe` with
/// the statuses in `statuses`, one per call (the last one repeated).
fn gcloud_with_statuses(statuses: &[&str]) -> Recorder {
    let r = Recorder::new(&[]);
    std::fs::write(r.file("statuses"), statuses.join("\n") + "\n").unwrap();
    r.script(
        "gcloud",
        &format!(
            "[ \"$3\" = describe ] || exit 0\nf={f}\nhead -n 1 $f\n[ $(wc -l < $f) -gt 1 ] && sed -i 1d $f\nexit 0",
            f = r.file("statuses").display()
        ),
    );
    r
}

#[test]
fn gcloud_disk_snapshot_starts_async_and_returns_once_the_snapshot_is_uploading() {
    let r = gcloud_with_statuses(&["CREATING", "CREATING", "UPLOADING", "READY"]);
    let out = run_hook(
        "gcloud-disk-snapshot",
        &[
            "--disk",
            "mysql-data",
            "--zone",
            "europe-west1-b",
            "--project",
            "p1",
            "--poll",
            "0.05",
        ],
        &r.path(),
        &[],
    );
    assert_ok(&out);
    let name = "mysql-quiesce-20261123t230000z-42-abcdef";
    let calls = r.calls("gcloud");
    assert_eq!(
        calls[0],
        [
            "compute",
            "snapshots",
            "create",
            name,
            "--source-disk",
            "mysql-data",
            "--source-disk-zone",
            "europe-west1-b",
            "--labels",
            "mysql-quiesce-run-id=20261123t230000z-42-abcdef,mysql-quiesce-binlog-file=binlog-000007,mysql-quiesce-binlog-pos=1234",
            "--description",
            DESCRIPTION,
            "--async",
            "--project",
            "p1",
        ]
    );
    // Polled until it left CREATING, no longer: the upload runs unlocked.
    let describe = [
        "compute",
        "snapshots",
        "describe",
        name,
        "--format=value(status)",
        "--project",
        "p1",
    ];
    assert_eq!(calls[1..], [describe, describe, describe]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{name}\n"));

    // --until ready: the whole upload, until READY.
    let r = gcloud_with_statuses(&["CREATING", "UPLOADING", "UPLOADING", "READY"]);
    let out = run_hook(
        "gcloud-disk-snapshot",
        &[
            "--disk", "d", "--zone", "z", "--until", "ready", "--poll", "0.05",
        ],
        &r.path(),
        &[],
    );
    assert_ok(&out);
    assert_eq!(r.calls("gcloud").len(), 1 + 4);

    // A snapshot that fails fails the hook.
    let r = gcloud_with_statuses(&["CREATING", "FAILED"]);
    let out = run_hook(
        "gcloud-disk-snapshot",
        &["--disk", "d", "--zone", "z", "--poll", "0.05"],
        &r.path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed"));
    assert!(out.stdout.is_empty());
}

#[test]
fn gcloud_disk_snapshot_takes_regional_disks_and_makes_valid_names_and_labels() {
    // A regional disk: --source-disk-region.
    let r = gcloud_with_statuses(&["UPLOADING"]);
    let out = run_hook(
        "gcloud-disk-snapshot",
        &["--disk", "d", "--region", "europe-west1"],
        &r.path(),
        &[],
    );
    assert_ok(&out);
    let create = &r.calls("gcloud")[0];
    let at = create
        .iter()
        .position(|a| a == "--source-disk-region")
        .unwrap();
    assert_eq!(create[at + 1], "europe-west1");
    assert!(!create.iter().any(|a| a == "--source-disk-zone"));

    // Cut to 63 characters, a name never ends in '-' (here the cut falls on one).
    let prefix = "a".repeat(45);
    let r = gcloud_with_statuses(&["READY"]);
    let out = run_hook(
        "gcloud-disk-snapshot",
        &["--disk", "d", "--zone", "z", "--prefix", &prefix],
        &r.path(),
        &[],
    );
    assert_ok(&out);
    let name = format!("{prefix}-20261123t230000z");
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{name}\n"));
    assert_eq!(r.calls("gcloud")[0][3], name);

    // Inexact coordinates: labelled as such, never with a position.
    let r = gcloud_with_statuses(&["READY"]);
    let out = run_hook(
        "gcloud-disk-snapshot",
        &["--disk", "d", "--zone", "z"],
        &r.path(),
        &[("MYSQL_QUIESCE_COORDINATES_EXACT", "0")],
    );
    assert!(out.status.success());
    let argv = &r.calls("gcloud")[0];
    let labels = &argv[argv.iter().position(|a| a == "--labels").unwrap() + 1];
    assert_eq!(
        labels,
        "mysql-quiesce-run-id=20261123t230000z-42-abcdef,mysql-quiesce-coordinates=inexact"
    );
    assert!(!argv.iter().any(|a| a.contains("1234")), "{argv:?}");

    // Refused before anything runs: both or neither location, a prefix Google rejects.
    for args in [
        &["--disk", "d", "--zone", "z", "--region", "r"][..],
        &["--disk", "d"],
        &["--disk", "d", "--zone", "z", "--prefix", "1nightly"],
        &["--disk", "d", "--zone", "z", "--until", "done"],
    ] {
        let r = gcloud_with_statuses(&["READY"]);
        let out = run_hook("gcloud-disk-snapshot", args, &r.path(), &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(r.calls("gcloud").is_empty(), "{args:?}");
    }
}

#[test]
fn azure_disk_snapshot_runs_az_snapshot_create_with_tags_and_prints_the_id() {
    let id = "/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.Compute/snapshots/mysql-quiesce-20261123T230000Z-42-abcdef";
    let r = Recorder::new(&[("az", id)]);
    let out = run_hook(
        "azure-disk-snapshot",
        &[
            "--resource-group",
            "rg1",
            "--disk=mysql-data",
            "--subscription",
            "s1",
            "--tag",
            "team=dba",
        ],
        &r.path(),
        &[],
    );
    assert_ok(&out);
    assert_eq!(
        r.calls("az"),
        [[
            "snapshot",
            "create",
            "--resource-group",
            "rg1",
            "--name",
            "mysql-quiesce-20261123T230000Z-42-abcdef",
            "--source",
            "mysql-data",
            "--incremental",
            "true",
            "--tags",
            "mysql-quiesce-run-id=20261123T230000Z-42-abcdef",
            "mysql-quiesce-binlog-file=binlog.000007",
            "mysql-quiesce-binlog-pos=1234",
            "mysql-quiesce-gtid=0-1-99",
            "team=dba",
            "--query",
            "id",
            "--output",
            "tsv",
            "--subscription",
            "s1",
        ]]
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{id}\n"));

    // Inexact coordinates, a full snapshot, a GTID set longer than a tag value.
    let long_gtid: String = (1..=40)
        .map(|i| format!("3E11FA47-71CA-11E1-9E33-C80AA9429{i:03}:1-{i}"))
        .collect::<Vec<_>>()
        .join(",");
    for (env, full, want, absent) in [
        (
            vec![("MYSQL_QUIESCE_COORDINATES_EXACT", "0")],
            true,
            "mysql-quiesce-coordinates=inexact",
            "binlog-pos",
        ),
        (
            vec![("MYSQL_QUIESCE_GTID", long_gtid.as_str())],
            false,
            "mysql-quiesce-gtid-truncated=true",
            "coordinates=inexact",
        ),
    ] {
        let r = Recorder::new(&[("az", id)]);
        let mut args = vec!["--resource-group", "rg1", "--disk", "d"];
        if full {
            args.push("--full");
        }
        let out = run_hook("azure-disk-snapshot", &args, &r.path(), &env);
        assert_ok(&out);
        let argv = &r.calls("az")[0];
        assert!(argv.iter().any(|a| a == want), "{argv:?}");
        assert!(!argv.iter().any(|a| a.contains(absent)), "{argv:?}");
        let inc = &argv[argv.iter().position(|a| a == "--incremental").unwrap() + 1];
        assert_eq!(inc, if full { "false" } else { "true" });
        if let Some(g) = argv
            .iter()
            .find_map(|a| a.strip_prefix("mysql-quiesce-gtid="))
        {
            assert!(g.len() <= 256 && g.ends_with(",..."), "{g}");
            assert!(long_gtid.starts_with(g.trim_end_matches(",...")));
        }
    }

    // az printing no id is a failure, not an empty success.
    let r = Recorder::new(&[("az", "")]);
    let out = run_hook(
        "azure-disk-snapshot",
        &["--resource-group", "rg1", "--disk", "d"],
        &r.path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let out = run_hook("azure-disk-snapshot", &["--disk", "d"], &r.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "--resource-group is required");
}

#[test]
fn a_missing_tool_exits_127_naming_it() {
    // A PATH with the basic tools the hooks use, and nothing else: whatever
    // this machine has installed, the snapshot tools are missing.
    let basics = tempfile::tempdir().unwrap();
    for tool in [
        "dirname", "awk", "sed", "tr", "cut", "date", "cat", "printf",
    ] {
        if let Ok(real) = which::which(tool) {
            std::os::unix::fs::symlink(real, basics.path().join(tool)).unwrap();
        }
    }
    let path = basics.path().display().to_string();
    for (name, args, tool) in [
        ("zfs-snapshot", vec!["--dataset", "tank/x"], "zfs"),
        (
            "gcloud-disk-snapshot",
            vec!["--disk", "d", "--zone", "z"],
            "gcloud",
        ),
        (
            "ec2-create-snapshot",
            vec!["--volume-id", "vol-1"],
            "ec2-create-snapshot",
        ),
        (
            "azure-disk-snapshot",
            vec!["--resource-group", "rg", "--disk", "d"],
            "az",
        ),
        ("lvm-snapshot", vec!["--vg", "vg0", "--lv", "lv"], "lvs"),
    ] {
        let out = run_hook(name, &args, &path, &[]);
        assert_eq!(out.status.code(), Some(127), "{name}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&format!("{tool} not found")),
            "{name}"
        );
    }
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let r = Recorder::new(&[("lvs", "linear"), ("lvcreate", "")]);
    let out = run_hook("lvm-snapshot", &["--vg", "vg0"], &r.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("required"));
    assert!(r.argv().is_empty(), "nothing may run after a usage error");
}

fn btrfs_subvolume(fs: &LoopFs) -> (PathBuf, PathBuf) {
    let data = fs.mountpoint().join("data");
    let st = Command::new("btrfs")
        .args(["subvolume", "create"])
        .arg(&data)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(data.join("ibdata1"), "rows").unwrap();
    let snaps = fs.mountpoint().join("snaps");
    std::fs::create_dir(&snaps).unwrap();
    (data, snaps)
}

#[test]
fn btrfs_snapshot_makes_a_read_only_snapshot_for_real() {
    let Some(fs) = LoopFs::new(FsKind::Btrfs) else {
        return;
    };
    let (data, snaps) = btrfs_subvolume(&fs);
    let path = std::env::var("PATH").unwrap();
    let out = run_hook(
        "btrfs-snapshot",
        &[
            "--source",
            data.to_str().unwrap(),
            "--dest",
            snaps.to_str().unwrap(),
        ],
        &path,
        &[],
    );
    assert_ok(&out);
    let snap = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(snap, snaps.join("mysql-quiesce-20261123T230000Z-42-abcdef"));
    assert_eq!(
        std::fs::read_to_string(snap.join("ibdata1")).unwrap(),
        "rows"
    );
    let ro = Command::new("btrfs")
        .args(["property", "get", "-ts"])
        .arg(&snap)
        .arg("ro")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ro.stdout).trim(), "ro=true");
}

#[test]
fn btrfs_snapshot_refuses_a_filesystem_that_mysql_quiesce_froze() {
    let Some(s) = TestServer::start() else { return };
    let Some(fs) = LoopFs::new(FsKind::Btrfs) else {
        return;
    };
    let (data, snaps) = btrfs_subvolume(&fs);
    let cmd = format!(
        "{} --source {} --dest {}",
        hook("btrfs-snapshot"),
        data.display(),
        snaps.display()
    );
    // Through mysql-quiesce with --freeze of the same filesystem: refused, not hung.
    s.mq()
        .arg(fs.arg())
        .args(["--snapshot", &cmd])
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "a btrfs snapshot of a frozen btrfs hangs",
        ));
    assert!(fs.probe_writable(Duration::from_secs(5)));
    assert_eq!(
        std::fs::read_dir(&snaps).unwrap().count(),
        0,
        "nothing may be created"
    );
    // Without --freeze it works, and its stdout is the run's stdout.
    let out = s
        .mq()
        .args(["--snapshot", &cmd])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(
        String::from_utf8_lossy(&out).starts_with(&format!("{}/mysql-quiesce-", snaps.display()))
    );
}

/// A second mount of a test's loop btrfs: its subvolume `subvol` mounted on
/// its own mount point, as a server's datadir often is. Unmounted on drop
/// (declared after the LoopFs, so dropped first), after a thaw.
struct SubvolumeMount<'a> {
    fs: &'a LoopFs,
    dir: tempfile::TempDir,
}

impl<'a> SubvolumeMount<'a> {
    fn new(fs: &'a LoopFs, subvol: &str) -> SubvolumeMount<'a> {
        let source = Command::new("findmnt")
            .args(["-n", "-o", "SOURCE", "--mountpoint"])
            .arg(fs.mountpoint())
            .output()
            .unwrap();
        let device = String::from_utf8(source.stdout).unwrap().trim().to_string();
        let dir = tempfile::Builder::new()
            .prefix("mqsub")
            .tempdir_in("/tmp")
            .unwrap();
        let out = Command::new("mount")
            .args(["-o", &format!("subvol={subvol}"), &device])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -o subvol={subvol} {device}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SubvolumeMount { fs, dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SubvolumeMount<'_> {
    fn drop(&mut self) {
        self.fs.thaw();
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn btrfs_snapshot_refuses_a_frozen_filesystem_reached_through_another_mount() {
    let Some(s) = TestServer::start() else { return };
    let Some(fs) = LoopFs::new(FsKind::Btrfs) else {
        return;
    };
    let (_, snaps) = btrfs_subvolume(&fs);
    // The datadir is the subvolume `data` mounted on its own: another mount
    // point, the same filesystem as the one --freeze names.
    let datadir = SubvolumeMount::new(&fs, "data");
    let cmd = format!(
        "{} --source {} --dest {}",
        hook("btrfs-snapshot"),
        datadir.path().display(),
        snaps.display()
    );
    // Without the identity check the snapshot would block on the frozen
    // filesystem until --max-lock-time thaws it (exit 124, snapshot made).
    s.mq()
        .arg(fs.arg())
        .args(["--max-lock-time", "20", "--snapshot", &cmd])
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "is on the filesystem mounted at {}",
            fs.mountpoint().display()
        )));
    assert!(fs.probe_writable(Duration::from_secs(5)));
    assert_eq!(
        std::fs::read_dir(&snaps).unwrap().count(),
        0,
        "nothing may be created"
    );
    // Freezing another filesystem does not trip the check.
    let Some(other) = LoopFs::new(FsKind::Ext4) else {
        return;
    };
    s.mq()
        .arg(other.arg())
        .args(["--snapshot", &cmd])
        .assert()
        .success();
    assert_eq!(std::fs::read_dir(&snaps).unwrap().count(), 1);
}

/// moto's EC2 server on a free local port, stopped on drop.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    fn start() -> Option<Moto> {
        let (Ok(moto), Ok(_)) = (which::which("moto_server"), which::which("aws")) else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true and moto_server or aws is missing: pip install 'moto[server]' awscli (scripts/install-deps.sh)");
            }
            eprintln!("SKIPPED: moto_server/aws not installed (with CI=true this fails)");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "moto_server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Moto { child, url })
    }

    fn aws(&self, args: &[&str]) -> String {
        let out = aws_command(&self.url).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "aws {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn aws_command(url: &str) -> Command {
    let mut c = Command::new("aws");
    c.args([
        "--endpoint-url",
        url,
        "--region",
        "us-east-1",
        "--output",
        "text",
    ])
    .env("AWS_ACCESS_KEY_ID", "testing")
    .env("AWS_SECRET_ACCESS_KEY", "testing")
    .env("AWS_DEFAULT_REGION", "us-east-1")
    .env_remove("AWS_PROFILE");
    c
}

fn tags_of(moto: &Moto, snapshot: &str) -> String {
    moto.aws(&[
        "ec2",
        "describe-tags",
        "--filters",
        &format!("Name=resource-id,Values={snapshot}"),
        "--query",
        "Tags[].[Key,Value]",
    ])
}

/// Run aws-ebs-snapshot against moto with test credentials and region
/// us-east-1. The instance metadata service is off unless `tweak` turns it on,
/// so no test ever reaches a real 169.254.169.254.
fn aws_hook(moto: &Moto, args: &[&str], tweak: impl FnOnce(&mut Command)) -> Output {
    let mut cmd = Command::new(hook("aws-ebs-snapshot"));
    cmd.args(args)
        .args(["--endpoint-url", &moto.url])
        .env("PATH", std::env::var("PATH").unwrap())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_REGION")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .env_remove("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")
        .stdin(Stdio::null());
    for (k, v) in ENV {
        cmd.env(k, v);
    }
    tweak(&mut cmd);
    cmd.output().unwrap()
}

fn snapshot_ids(out: &Output) -> Vec<String> {
    assert_ok(out);
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        !ids.is_empty() && ids.iter().all(|i| i.starts_with("snap-")),
        "stdout must be only snapshot ids: {ids:?}"
    );
    ids
}

fn new_volume(moto: &Moto) -> String {
    moto.aws(&[
        "ec2",
        "create-volume",
        "--availability-zone",
        "us-east-1a",
        "--size",
        "10",
        "--query",
        "VolumeId",
    ])
}

/// An instance with only its boot volume; with `data`, also that volume attached as /dev/sdf.
fn new_instance(moto: &Moto, data: Option<&str>) -> String {
    let image = moto.aws(&["ec2", "describe-images", "--query", "Images[0].ImageId"]);
    let instance = moto.aws(&[
        "ec2",
        "run-instances",
        "--image-id",
        &image,
        "--count",
        "1",
        "--query",
        "Instances[0].InstanceId",
    ]);
    if let Some(volume) = data {
        moto.aws(&[
            "ec2",
            "attach-volume",
            "--instance-id",
            &instance,
            "--volume-id",
            volume,
            "--device",
            "/dev/sdf",
        ]);
    }
    instance
}

fn snapshot_field(moto: &Moto, id: &str, field: &str) -> String {
    moto.aws(&[
        "ec2",
        "describe-snapshots",
        "--snapshot-ids",
        id,
        "--query",
        &format!("Snapshots[0].{field}"),
    ])
}

#[test]
fn aws_ebs_snapshot_creates_tagged_snapshots_against_a_local_ec2_endpoint() {
    let Some(moto) = Moto::start() else { return };
    // One volume.
    let volume = new_volume(&moto);
    let out = aws_hook(
        &moto,
        &["--volume-id", &volume, "--tag", "team=dba"],
        |_| {},
    );
    let ids = snapshot_ids(&out);
    assert_eq!(ids.len(), 1);
    let tags = tags_of(&moto, &ids[0]);
    for expected in [
        "mysql-quiesce:run-id\t20261123T230000Z-42-abcdef",
        "mysql-quiesce:binlog-file\tbinlog.000007",
        "mysql-quiesce:binlog-pos\t1234",
        "mysql-quiesce:gtid\t0-1-99",
        "team\tdba",
    ] {
        assert!(tags.contains(expected), "{expected} missing in:\n{tags}");
    }
    assert!(!tags.contains("gtid-truncated"), "{tags}");
    assert_eq!(snapshot_field(&moto, &ids[0], "Description"), DESCRIPTION);

    // Inexact coordinates (--lock=instance): never tagged as a restore point.
    let out = aws_hook(&moto, &["--volume-id", &volume], |c| {
        c.env("MYSQL_QUIESCE_COORDINATES_EXACT", "0")
            .env("MYSQL_QUIESCE_LOCK", "instance");
    });
    let ids = snapshot_ids(&out);
    let tags = tags_of(&moto, &ids[0]);
    assert!(
        tags.contains("mysql-quiesce:coordinates\tinexact"),
        "{tags}"
    );
    for absent in [
        "binlog-file",
        "binlog-pos",
        "mysql-quiesce:gtid",
        "1234",
        "0-1-99",
    ] {
        assert!(
            !tags.contains(absent),
            "{absent} tagged although inexact:\n{tags}"
        );
    }
    let description = snapshot_field(&moto, &ids[0], "Description");
    assert_eq!(
        description,
        "mysql-quiesce run 20261123T230000Z-42-abcdef: no exact binlog position (lock instance)"
    );

    // All volumes of an instance at once, the boot volume included when asked.
    let instance = new_instance(&moto, None);
    let out = aws_hook(
        &moto,
        &["--instance-id", &instance, "--include-boot-volume"],
        |_| {},
    );
    let ids = snapshot_ids(&out);
    for id in &ids {
        assert!(tags_of(&moto, id).contains("mysql-quiesce:run-id\t20261123T230000Z-42-abcdef"));
    }
}

#[test]
fn aws_ebs_snapshot_excludes_the_boot_volume_by_default_and_refuses_when_nothing_is_left() {
    let Some(moto) = Moto::start() else { return };
    // Boot volume + data volume: only the data volume is snapshotted.
    let data = new_volume(&moto);
    let instance = new_instance(&moto, Some(&data));
    let ids = snapshot_ids(&aws_hook(&moto, &["--instance-id", &instance], |_| {}));
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(snapshot_field(&moto, &ids[0], "VolumeId"), data);

    // Only a boot volume: an error that says what to do, not an empty success.
    let single = new_instance(&moto, None);
    let root = moto.aws(&[
        "ec2",
        "describe-instances",
        "--instance-ids",
        &single,
        "--query",
        "Reservations[0].Instances[0].BlockDeviceMappings[0].Ebs.VolumeId",
    ]);
    let out = aws_hook(&moto, &["--instance-id", &single], |_| {});
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no EBS volume besides its boot volume")
            && stderr.contains("--include-boot-volume"),
        "{stderr}"
    );
    let snaps_of_root = moto.aws(&[
        "ec2",
        "describe-snapshots",
        "--filters",
        &format!("Name=volume-id,Values={root}"),
        "--query",
        "length(Snapshots)",
    ]);
    assert_eq!(snaps_of_root, "0");
}

#[test]
fn aws_ebs_snapshot_cuts_a_long_gtid_set_to_the_ec2_limits_at_a_range_boundary() {
    let Some(moto) = Moto::start() else { return };
    // A MySQL GTID set after a few failovers: 10 source UUIDs, 450+ characters.
    let gtid: String = (0..10)
        .map(|i| format!("3e11fa47-71ca-11e1-9e33-c80aa94295{i:02}:1-12345678"))
        .collect::<Vec<_>>()
        .join(",");
    assert!(gtid.len() > 400);
    let volume = new_volume(&moto);
    let out = aws_hook(&moto, &["--volume-id", &volume], |c| {
        c.env("MYSQL_QUIESCE_GTID", &gtid);
    });
    let ids = snapshot_ids(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("coordinates file"), "{stderr}");

    let tag = moto.aws(&[
        "ec2",
        "describe-tags",
        "--filters",
        &format!("Name=resource-id,Values={}", ids[0]),
        "Name=key,Values=mysql-quiesce:gtid",
        "--query",
        "Tags[0].Value",
    ]);
    assert!(
        tag.chars().count() <= 256,
        "tag value of {} chars",
        tag.len()
    );
    let kept = tag.strip_suffix(",...").expect("a cut set ends in ,...");
    assert!(gtid.starts_with(&format!("{kept},")), "{kept}");
    assert!(tags_of(&moto, &ids[0]).contains("mysql-quiesce:gtid-truncated\ttrue"));

    let description = snapshot_field(&moto, &ids[0], "Description");
    assert!(description.chars().count() <= 255, "{description}");
    let kept = description.strip_suffix(",...").unwrap();
    let full = DESCRIPTION.replace("0-1-99", &gtid);
    assert!(full.starts_with(&format!("{kept},")), "{description}");
}

/// A stand-in for the EC2 instance metadata service that only speaks IMDSv2:
/// metadata requests without the session token from `PUT /latest/api/token`
/// get 401. (IMDS is not the database; EC2 itself stays moto.) Records every
/// request as "METHOD PATH token=BOOL".
struct Imds {
    url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Imds {
    const TOKEN: &'static str = "imdsv2-session-token";

    fn start(instance_id: &str, region: &str) -> Imds {
        use std::io::{BufRead, BufReader, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = requests.clone();
        let (instance_id, region) = (instance_id.to_string(), region.to_string());
        // Serves until the test process exits; one connection at a time is plenty.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut headers = Vec::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    headers.push(line.trim().to_ascii_lowercase());
                }
                let mut parts = request_line.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let has = |h: &str| headers.iter().any(|l| l.starts_with(h));
                let token_ok = has(&format!(
                    "x-aws-ec2-metadata-token: {}",
                    Self::TOKEN.to_ascii_lowercase()
                ));
                log.lock()
                    .unwrap()
                    .push(format!("{method} {path} token={token_ok}"));
                let (status, body) = match (method, path) {
                    ("PUT", "/latest/api/token")
                        if has("x-aws-ec2-metadata-token-ttl-seconds:") =>
                    {
                        ("200 OK", Self::TOKEN.to_string())
                    }
                    ("GET", _) if !token_ok => ("401 Unauthorized", String::new()),
                    ("GET", "/latest/meta-data/instance-id") => ("200 OK", instance_id.clone()),
                    ("GET", "/latest/meta-data/placement/region") => ("200 OK", region.clone()),
                    _ => ("404 Not Found", String::new()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Imds { url, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

#[test]
fn aws_ebs_snapshot_reads_instance_and_region_from_imdsv2_at_the_configured_endpoint() {
    let Some(moto) = Moto::start() else { return };
    let data = new_volume(&moto);
    let instance = new_instance(&moto, Some(&data));
    let imds = Imds::start(&instance, "us-east-1");
    // No --instance-id, no region anywhere: both come from IMDSv2.
    let out = aws_hook(&moto, &[], |c| {
        c.env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_EC2_METADATA_DISABLED")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url);
    });
    let ids = snapshot_ids(&out);
    assert_eq!(snapshot_field(&moto, &ids[0], "VolumeId"), data);
    let requests = imds.requests();
    for expected in [
        "PUT /latest/api/token token=false",
        "GET /latest/meta-data/instance-id token=true",
        "GET /latest/meta-data/placement/region token=true",
    ] {
        assert!(
            requests.iter().any(|r| r == expected),
            "{expected} not in {requests:?}"
        );
    }
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with("GET") && r.ends_with("token=false")),
        "IMDSv1 request: {requests:?}"
    );

    // Metadata turned off: a clear error instead of a guess.
    let out = aws_hook(&moto, &[], |c| {
        c.env_remove("AWS_DEFAULT_REGION")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url);
    });
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AWS_EC2_METADATA_DISABLED=true"));
}

#[test]
fn every_hook_has_help_and_the_readme_names_it() {
    let readme = std::fs::read_to_string(hook("README.md")).unwrap();
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") || name.starts_with('_') {
            continue;
        }
        let out = Command::new(hook(&name)).arg("--help").output().unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--snapshot"),
            "{name} --help"
        );
        // --help is exactly the header comment: no line of code, nothing cut off.
        let script = std::fs::read_to_string(hook(&name)).unwrap();
        let header: String = script
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with('#'))
            .map(|l| {
                let l = l.trim_start_matches('#');
                format!("{}\n", l.strip_prefix(' ').unwrap_or(l))
            })
            .collect();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            header,
            "{name} --help"
        );
        assert!(
            readme.contains(&format!("`{name}`")),
            "hooks/README.md does not describe {name}"
        );
    }
}
