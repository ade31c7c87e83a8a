//! Loop-mounted scratch filesystems that a test creates itself, and always
//! thaws, unmounts and removes, also when the test fails. These are the only
//! filesystems tests ever freeze. Also bind mounts (`BindMount`), to show
//! one filesystem under a second path, and copies of an image mounted as a
//! restored snapshot would be (`ImageMount`).

use mysql_quiesce::fsfreeze::{freeze_fd, thaw_fd};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    Xfs,
    Ext4,
    Btrfs,
}

impl FsKind {
    fn mkfs(self) -> (&'static str, &'static [&'static str], u64) {
        match self {
            // Recent mkfs.xfs refuses filesystems below 300 MB.
            FsKind::Xfs => ("mkfs.xfs", &["-q", "-f"], 320 << 20),
            FsKind::Ext4 => ("mkfs.ext4", &["-q", "-F"], 64 << 20),
            FsKind::Btrfs => ("mkfs.btrfs", &["-q", "-f"], 256 << 20),
        }
    }
}

pub struct LoopFs {
    dir: tempfile::TempDir,
    mountpoint: PathBuf,
    image: PathBuf,
    /// Probe writers that were still blocked; reaped after the thaw.
    stuck: Mutex<Vec<Child>>,
}

fn tool(name: &str) -> Option<PathBuf> {
    which::which(name).ok().or_else(|| {
        ["/usr/sbin", "/sbin"]
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.exists())
    })
}

fn skip_or_fail(why: &str) -> Option<LoopFs> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and {why}: freeze tests need root and mkfs (scripts/install-deps.sh)");
    }
    eprintln!("SKIPPED: {why} (with CI=true this fails)");
    None
}

impl LoopFs {
    /// A fresh filesystem of `kind` on a loop device, mounted in a temp dir.
    pub fn new(kind: FsKind) -> Option<LoopFs> {
        Self::create(kind, None)
    }

    /// A fresh filesystem mounted on a directory inside `outer` (drop it
    /// before `outer`: declare it after).
    pub fn new_inside(kind: FsKind, outer: &LoopFs) -> Option<LoopFs> {
        Self::create(kind, Some(outer.mountpoint()))
    }

    fn create(kind: FsKind, inside: Option<&Path>) -> Option<LoopFs> {
        if !nix::unistd::geteuid().is_root() {
            return skip_or_fail("not running as root");
        }
        let (mkfs, args, size) = kind.mkfs();
        let Some(mkfs) = tool(mkfs) else {
            return skip_or_fail(&format!("{mkfs} is not installed"));
        };
        let dir = tempfile::Builder::new()
            .prefix("mqfs")
            .tempdir_in("/tmp")
            .unwrap();
        let image = dir.path().join("image");
        File::create(&image).unwrap().set_len(size).unwrap();
        let out = Command::new(mkfs).args(args).arg(&image).output().unwrap();
        assert!(
            out.status.success(),
            "mkfs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mountpoint = match inside {
            Some(outer) => outer.join(format!(
                "inner-{}",
                dir.path().file_name().unwrap().to_string_lossy()
            )),
            None => dir.path().join("mnt"),
        };
        std::fs::create_dir(&mountpoint).unwrap();
        let out = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mountpoint)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(LoopFs {
            dir,
            mountpoint,
            image,
            stuck: Mutex::new(Vec::new()),
        })
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The image file the filesystem lives in (copy it while frozen for a snapshot).
    pub fn image(&self) -> &Path {
        &self.image
    }

    pub fn arg(&self) -> String {
        format!("--freeze={}", self.mountpoint.display())
    }

    /// Whether a write into the filesystem completes within `timeout`. The
    /// write runs in a child process: on a frozen filesystem it blocks in
    /// uninterruptible sleep until the thaw, and must never block the test.
    ///
    /// Only a write that is still waiting in the kernel (state D) counts as
    /// "frozen"; a write that fails (read-only, full, unmounted) is not a
    /// freeze and fails the test, so a broken probe cannot pass as a freeze.
    pub fn probe_writable(&self, timeout: Duration) -> bool {
        let file = self
            .mountpoint
            .join(format!("probe-{}", std::process::id()));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec 2>/dev/null; echo probe > '{}'",
                file.display()
            ))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let end = Instant::now() + timeout;
        // Past `timeout`, give a slow start a little longer to reach the write.
        let settle = end + Duration::from_secs(2);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(
                    status.success(),
                    "the probe write into {} failed ({status}): that is not a freeze",
                    self.mountpoint.display()
                );
                return true;
            }
            let now = Instant::now();
            if now >= end && blocked_in_kernel(child.id()) {
                break;
            }
            assert!(
                now < settle,
                "the probe write into {} neither finished nor waits in the kernel",
                self.mountpoint.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stuck.lock().unwrap().push(child);
        false
    }

    /// Poll until a write goes through; how long that took, or None within `limit`.
    pub fn writable_within(&self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.probe_writable(Duration::from_millis(100)) {
                return Some(start.elapsed());
            }
        }
        None
    }

    /// Freeze it from the test (to simulate someone else's freeze).
    pub fn freeze(&self) {
        freeze_fd(&File::open(&self.mountpoint).unwrap()).expect("FIFREEZE on the test filesystem");
    }

    /// Thaw it with FITHAW; if that cannot be done, with `fsfreeze -u`.
    pub fn thaw(&self) {
        let done = File::open(&self.mountpoint)
            .ok()
            .is_some_and(|f| thaw_fd(&f).is_ok());
        if !done {
            if let Some(fsfreeze) = tool("fsfreeze") {
                if let Ok(mut c) = Command::new(fsfreeze)
                    .arg("-u")
                    .arg(&self.mountpoint)
                    .stderr(Stdio::null())
                    .spawn()
                {
                    wait_bounded(&mut c, Duration::from_secs(5));
                }
            }
        }
    }

    /// Whether it is still mounted (it may have been unmounted by the test).
    pub fn is_mounted(&self) -> bool {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let path = self.mountpoint.to_string_lossy().replace(' ', "\\040");
        mounts
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(path.as_str()))
    }
}

/// Whether process `pid` sleeps uninterruptibly (state D): a writer held by a
/// filesystem freeze.
pub fn blocked_in_kernel(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('D')))
        .unwrap_or(false)
}

/// Wait for a child at most `limit`; kill it if it is still there (a
/// process stuck on a frozen filesystem does not die, so never wait longer).
fn wait_bounded(child: &mut Child, limit: Duration) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.try_wait();
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        self.thaw();
        // Probes blocked on the freeze finish once it is thawed; bounded.
        let end = Instant::now() + Duration::from_secs(5);
        for mut c in self.stuck.lock().unwrap().drain(..) {
            wait_bounded(&mut c, end.saturating_duration_since(Instant::now()));
        }
        for _ in 0..50 {
            if !self.is_mounted() {
                break;
            }
            let ok = Command::new("umount")
                .arg(&self.mountpoint)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if self.is_mounted() {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .stderr(Stdio::null())
                .status();
        }
        // mount -o loop sets autoclear; detach explicitly in case it did not.
        if let Ok(out) = Command::new("losetup").arg("-j").arg(&self.image).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(dev) = line.split(':').next() {
                    let _ = Command::new("losetup").arg("-d").arg(dev).status();
                }
            }
        }
        let _ = self.dir.path();
    }
}

/// `source` bind-mounted read-only on a fresh directory: the same filesystem
/// under a second path (read-only, so nothing walking /tmp can change the
/// files of `source` through it). Unmounted when dropped. The directory is removed with
/// `remove_dir` only, never recursively: if the unmount failed, a recursive
/// removal would delete the files of `source` (think of a bind mount of `/`).
pub struct BindMount {
    path: PathBuf,
}

impl BindMount {
    pub fn new(source: &Path) -> BindMount {
        let path = tempfile::Builder::new()
            .prefix("mqbind")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let out = Command::new("mount")
            .args(["--bind", "-o", "ro"])
            .arg(source)
            .arg(&path)
            .output()
            .unwrap();
        if !out.status.success() {
            let _ = std::fs::remove_dir(&path);
            panic!(
                "mount --bind {} failed: {}",
                source.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        BindMount { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// A filesystem image mounted for a test; unmounted (and its loop device
/// freed) when dropped.
pub struct ImageMount {
    path: PathBuf,
}

impl ImageMount {
    /// Mount `image` at `at` (created) with `-o loop,OPTIONS`.
    pub fn new(image: &Path, at: &Path, options: &str) -> ImageMount {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-o", &format!("loop,{options}")])
            .arg(image)
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -o {options} {}: {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        ImageMount {
            path: at.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ImageMount {
    fn drop(&mut self) {
        for _ in 0..50 {
            let ok = Command::new("umount")
                .arg(&self.path)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
