//! Filesystem freeze with FIFREEZE/FITHAW, validation of freeze targets, and
//! the guardian: a separate process that thaws whatever we froze if we die
//! (even by SIGKILL or the OOM killer) or the deadline passes.
//!
//! Why a separate process: the kernel never thaws a filesystem by itself, not
//! even when the freezing process dies, and every writer on it hangs in
//! uninterruptible sleep until someone thaws it. The guardian learns over a
//! pipe what is being frozen and thawed; end-of-file on that pipe without a
//! "done" means we are gone, so it thaws at once.

use crate::exit;
use nix::errno::Errno;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// linux/fs.h: #define FIFREEZE _IOWR('X', 119, int), FITHAW _IOWR('X', 120, int).
nix::ioctl_readwrite!(fifreeze, b'X', 119, c_int);
nix::ioctl_readwrite!(fithaw, b'X', 120, c_int);

/// Freeze the filesystem `dir` (an open mount-point directory) is on.
pub fn freeze_fd(dir: &File) -> nix::Result<()> {
    let mut unused: c_int = 0;
    // SAFETY: FIFREEZE takes (and ignores) a pointer to an int; the fd is open.
    unsafe { fifreeze(dir.as_raw_fd(), &mut unused) }.map(|_| ())
}

/// Thaw it. EINVAL means it was not frozen, which counts as thawed.
pub fn thaw_fd(dir: &File) -> nix::Result<()> {
    let mut unused: c_int = 0;
    // SAFETY: as above.
    match unsafe { fithaw(dir.as_raw_fd(), &mut unused) } {
        Ok(_) | Err(Errno::EINVAL) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A validated freeze target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub mountpoint: PathBuf,
    /// Filesystem type as listed in /proc/self/mountinfo (xfs, ext4, ...).
    pub fs_type: String,
}

/// Something that must not live on a filesystem we freeze.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protected {
    /// The current working directory (overridable with --force-freeze).
    CurrentDir,
    /// One of our output files: report, coordinates, redirected stdout/stderr
    /// (overridable with --force-freeze).
    OutputFile,
    /// The program a hook or COMMAND runs (not overridable).
    HookCommand,
}

/// Filesystem types FIFREEZE cannot freeze, with what to do instead.
const NOT_FREEZABLE: &[(&str, &str)] = &[
    (
        "zfs",
        "ZFS snapshots are atomic: take them without --freeze",
    ),
    ("tmpfs", "tmpfs has nothing on disk to snapshot"),
    ("ramfs", "ramfs has nothing on disk to snapshot"),
    ("proc", ""),
    ("sysfs", ""),
    ("devtmpfs", ""),
    ("overlay", "freeze the filesystem underneath instead"),
    ("nfs", "freeze on the NFS server instead"),
    ("nfs4", "freeze on the NFS server instead"),
    ("cifs", ""),
    ("squashfs", "it is read-only"),
    ("iso9660", "it is read-only"),
];

/// (mount point, filesystem type) of every mount, from /proc/self/mountinfo.
fn mounts() -> Vec<(PathBuf, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mountpoint = left.split(' ').nth(4)?;
            let fs_type = right.split(' ').next()?;
            Some((
                PathBuf::from(unescape_mountinfo(mountpoint)),
                fs_type.to_string(),
            ))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let oct: String = chars.by_ref().take(3).collect();
            if let Ok(b) = u8::from_str_radix(&oct, 8) {
                out.push(b as char);
                continue;
            }
            out.push('\\');
            out.push_str(&oct);
        } else {
            out.push(c);
        }
    }
    out
}

/// The mount that holds `path` (which need not exist: its nearest existing
/// ancestor decides): the longest mount point that is a prefix of it.
fn mount_of(path: &Path) -> Option<(PathBuf, String)> {
    let mut p = path.to_path_buf();
    let canonical = loop {
        if let Ok(c) = p.canonicalize() {
            break c;
        }
        if !p.pop() {
            return None;
        }
    };
    mounts()
        .into_iter()
        .filter(|(m, _)| canonical.starts_with(m))
        .max_by_key(|(m, _)| m.as_os_str().len())
}

/// Whether `path` is the mount point of a filesystem.
pub fn is_mountpoint(path: &Path) -> bool {
    match (path.canonicalize(), mount_of(path)) {
        (Ok(c), Some((m, _))) => c == m,
        _ => false,
    }
}

/// Check every target before anything is connected or locked: we are root,
/// it exists, is a mount point, is not `/`, can be frozen, does not hold a
/// protected path (unless `force` allows it). Errors are `exit::Failure`s.
pub fn validate(
    targets: &[PathBuf],
    protected: &[(PathBuf, Protected)],
    force: bool,
) -> anyhow::Result<Vec<Target>> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(exit::fail(
            exit::NOPERM,
            "freezing filesystems needs root (CAP_SYS_ADMIN): run mysql-quiesce as root, or drop --freeze",
        ));
    }
    let mut out: Vec<Target> = Vec::new();
    for target in targets {
        let shown = target.display();
        let canonical = target
            .canonicalize()
            .map_err(|e| exit::fail(exit::CONFIG, format!("--freeze={shown}: {e}")))?;
        if canonical == Path::new("/") {
            return Err(exit::fail(
                exit::CONFIG,
                format!(
                    "--freeze={shown}: refusing to freeze the root filesystem: the machine would hang, mysql-quiesce \
                     included; put the data on its own filesystem (--force-freeze does not change this)"
                ),
            ));
        }
        let (mountpoint, fs_type) = mount_of(&canonical).ok_or_else(|| {
            exit::fail(exit::CONFIG, format!("--freeze={shown}: no mount holds it"))
        })?;
        if mountpoint != canonical {
            return Err(exit::fail(
                exit::CONFIG,
                format!(
                    "--freeze={shown} is not a mount point (it is on the filesystem mounted at {}); FIFREEZE freezes \
                     whole filesystems: give the mount point",
                    mountpoint.display()
                ),
            ));
        }
        if let Some((_, why)) = NOT_FREEZABLE.iter().find(|(t, _)| *t == fs_type) {
            return Err(exit::fail(
                exit::CONFIG,
                format!(
                    "--freeze={shown}: a {fs_type} filesystem cannot be frozen{}",
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!("; {why}")
                    }
                ),
            ));
        }
        if out.iter().any(|t| t.mountpoint == mountpoint) {
            return Err(exit::fail(
                exit::CONFIG,
                format!("--freeze={shown} is given twice"),
            ));
        }
        for (path, kind) in protected {
            let on_target = mount_of(path).is_some_and(|(m, _)| m == mountpoint);
            if !on_target {
                continue;
            }
            let (what, overridable) = match kind {
                Protected::CurrentDir => ("the current directory", true),
                Protected::OutputFile => ("the output file", true),
                Protected::HookCommand => ("the program", false),
            };
            if overridable && force {
                continue;
            }
            let fix = if overridable {
                "move it elsewhere, or pass --force-freeze if you are sure nothing is written there while frozen"
            } else {
                "a program on a frozen filesystem may hang while it is loaded; install it elsewhere"
            };
            return Err(exit::fail(
                exit::CONFIG,
                format!(
                    "--freeze={shown}: {what} {} is on that filesystem, and mysql-quiesce never touches a frozen filesystem; {fix}",
                    path.display()
                ),
            ));
        }
        out.push(Target {
            mountpoint,
            fs_type,
        });
    }
    Ok(out)
}

/// Result of thawing one filesystem.
#[derive(Debug, Clone)]
pub struct Thawed {
    pub mountpoint: PathBuf,
    /// None: thawed (or was not frozen). Some: the error.
    pub error: Option<String>,
}

/// The guardian process and the pipe we report to it through.
#[derive(Debug)]
struct Guardian {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Guardian {
    fn start(exe: &Path, targets: &[Target], deadline: SystemTime) -> anyhow::Result<Guardian> {
        let secs = deadline
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let mut child = Command::new(exe)
            .arg("__guardian")
            .arg(format!("--deadline={secs:.3}"))
            .args(targets.iter().map(|t| &t.mountpoint))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                exit::fail(
                    exit::SOFTWARE,
                    format!(
                        "cannot start the freeze guardian {}: {e}; nothing was frozen",
                        exe.display()
                    ),
                )
            })?;
        // Freeze nothing until the guardian has its mount points open.
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if line.trim() == "ready" => Ok(Guardian {
                pipe: child.stdin.take(),
                child,
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(exit::fail(
                    exit::SOFTWARE,
                    "the freeze guardian did not start; nothing was frozen",
                ))
            }
        }
    }

    fn tell(&mut self, message: &str) {
        if let Some(pipe) = &mut self.pipe {
            let _ = writeln!(pipe, "{message}");
            let _ = pipe.flush();
        }
    }

    /// Tell it we are done (nothing left to thaw) and wait for it to exit.
    fn finish(mut self) {
        self.tell("done");
        drop(self.pipe.take());
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Filesystems frozen by us, in freeze order. Dropping it thaws them (reverse
/// order); the guardian thaws them if this process dies first.
#[derive(Debug)]
pub struct FrozenSet {
    targets: Vec<Target>,
    dirs: Vec<File>,
    /// Index into `targets` of every filesystem we froze, in order.
    frozen: Vec<usize>,
    guardian: Option<Guardian>,
}

/// Start the guardian, then freeze `targets` in order. On a failure part way,
/// thaw what was frozen and return the error (EBUSY: frozen by someone else,
/// which we never thaw). `deadline` is when the guardian thaws regardless.
pub fn freeze_all(targets: &[Target], deadline: SystemTime) -> anyhow::Result<FrozenSet> {
    let exe = std::env::current_exe().map_err(|e| {
        exit::fail(
            exit::SOFTWARE,
            format!("cannot find our own executable: {e}"),
        )
    })?;
    freeze_all_with(targets, deadline, &exe)
}

/// `freeze_all` with the guardian's executable given (tests pass the binary).
pub fn freeze_all_with(
    targets: &[Target],
    deadline: SystemTime,
    guardian_exe: &Path,
) -> anyhow::Result<FrozenSet> {
    let mut dirs = Vec::new();
    for t in targets {
        dirs.push(File::open(&t.mountpoint).map_err(|e| {
            exit::fail(
                exit::CONFIG,
                format!("cannot open {}: {e}", t.mountpoint.display()),
            )
        })?);
    }
    let guardian = Guardian::start(guardian_exe, targets, deadline)?;
    let mut set = FrozenSet {
        targets: targets.to_vec(),
        dirs,
        frozen: Vec::new(),
        guardian: Some(guardian),
    };
    for i in 0..set.targets.len() {
        // Announce first: if we die right after the ioctl, the guardian still knows.
        set.tell(&format!("freezing {i}"));
        match freeze_fd(&set.dirs[i]) {
            Ok(()) => set.frozen.push(i),
            Err(e) => {
                set.tell(&format!("failed {i}"));
                let mountpoint = set.targets[i].mountpoint.display().to_string();
                let fs_type = set.targets[i].fs_type.clone();
                let (code, why) = match e {
                    Errno::EBUSY => (
                        exit::TEMPFAIL,
                        format!("{mountpoint} is already frozen by someone else; mysql-quiesce did not freeze it and will not thaw it (if nobody should hold it, `fsfreeze -u {mountpoint}`)"),
                    ),
                    Errno::EOPNOTSUPP => (exit::CONFIG, format!("the {fs_type} filesystem at {mountpoint} cannot be frozen")),
                    Errno::EPERM | Errno::EACCES => (exit::NOPERM, format!("freezing {mountpoint} needs root (CAP_SYS_ADMIN)")),
                    other => (exit::SOFTWARE, format!("freezing {mountpoint} failed: {other}")),
                };
                let thawed = set.thaw_frozen();
                let left: Vec<String> = thawed
                    .iter()
                    .filter_map(|t| {
                        t.error
                            .as_ref()
                            .map(|e| format!("{}: {e}", t.mountpoint.display()))
                    })
                    .collect();
                let state = if set.frozen.is_empty() && left.is_empty() {
                    "nothing is frozen now".to_string()
                } else {
                    format!("could not thaw {}", left.join(", "))
                };
                set.stop_guardian();
                return Err(exit::fail(code, format!("{why}; {state}")));
            }
        }
    }
    Ok(set)
}

impl FrozenSet {
    fn tell(&mut self, message: &str) {
        if let Some(g) = &mut self.guardian {
            g.tell(message);
        }
    }

    /// Thaw what we froze, in reverse order; keep track for Drop.
    fn thaw_frozen(&mut self) -> Vec<Thawed> {
        let mut results = Vec::new();
        while let Some(i) = self.frozen.pop() {
            let error = thaw_fd(&self.dirs[i]).err().map(|e| e.to_string());
            if error.is_none() {
                self.tell(&format!("thawed {i}"));
            }
            results.push(Thawed {
                mountpoint: self.targets[i].mountpoint.clone(),
                error,
            });
        }
        results
    }

    fn stop_guardian(&mut self) {
        if let Some(g) = self.guardian.take() {
            g.finish();
        }
    }

    /// Thaw in reverse order and stop the guardian. If a thaw failed, the
    /// guardian is left to retry it at its deadline.
    pub fn thaw(mut self) -> Vec<Thawed> {
        let results = self.thaw_frozen();
        if results.iter().all(|t| t.error.is_none()) {
            self.stop_guardian();
        } else {
            // Leave the pipe open: the guardian thaws on EOF (when we exit) or its deadline.
            if let Some(g) = self.guardian.take() {
                std::mem::forget(g);
            }
        }
        results
    }
}

impl Drop for FrozenSet {
    fn drop(&mut self) {
        // Panic path: thaw now; the guardian is the last resort.
        if !self.frozen.is_empty() {
            self.thaw_frozen();
        }
        self.stop_guardian();
    }
}

/// Entry point of the hidden `__guardian` subcommand. Returns the exit status.
pub fn guardian_main(deadline: f64, mountpoints: &[PathBuf]) -> i32 {
    use nix::sys::signal::{signal, SigHandler, Signal};
    let log = |msg: &str| eprintln!("mysql-quiesce guardian (pid {}): {msg}", std::process::id());
    // Its own session: Ctrl-C on the terminal must not reach it.
    let _ = nix::unistd::setsid();
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN installs no handler code.
        unsafe {
            let _ = signal(sig, SigHandler::SigIgn);
        }
    }
    let mut dirs = Vec::new();
    for m in mountpoints {
        match File::open(m) {
            Ok(f) => dirs.push(f),
            Err(e) => {
                log(&format!("cannot open {}: {e}", m.display()));
                return 1;
            }
        }
    }
    println!("ready");
    let _ = std::io::stdout().flush();

    // 0: untouched, 1: being frozen / frozen, 2: thawed or failed.
    let mut state = vec![0u8; dirs.len()];
    let thaw_all = |state: &mut Vec<u8>, why: &str| {
        for i in (0..state.len()).rev() {
            if state[i] == 1 {
                match thaw_fd(&dirs[i]) {
                    Ok(()) => log(&format!("{why}: thawed {}", mountpoints[i].display())),
                    Err(e) => log(&format!(
                        "{why}: could not thaw {}: {e}; run `fsfreeze -u {}`",
                        mountpoints[i].display(),
                        mountpoints[i].display()
                    )),
                }
                state[i] = 2;
            }
        }
    };
    let deadline = UNIX_EPOCH + Duration::from_secs_f64(deadline.max(0.0));
    let mut deadline_passed = false;
    let stdin = std::io::stdin();
    let mut buffer = Vec::new();
    loop {
        let wait_ms = if deadline_passed {
            1000
        } else {
            let left = deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            if left.is_zero() {
                deadline_passed = true;
                thaw_all(&mut state, "--max-lock-time passed");
                continue;
            }
            left.as_millis().min(1000) as u16
        };
        let mut fds = [nix::poll::PollFd::new(
            stdin.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(wait_ms)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => {
                thaw_all(&mut state, &format!("poll failed ({e})"));
                return 1;
            }
        }
        let mut chunk = [0u8; 256];
        let n = match stdin.lock().read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        if n == 0 {
            // The main process is gone without saying "done": thaw now.
            thaw_all(&mut state, "mysql-quiesce exited without thawing");
            return 0;
        }
        buffer.extend_from_slice(&chunk[..n]);
        while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let mut words = line.split_whitespace();
            let (verb, index) = (
                words.next().unwrap_or(""),
                words.next().and_then(|w| w.parse::<usize>().ok()),
            );
            match (verb, index) {
                ("done", _) => return 0,
                ("freezing", Some(i)) if i < state.len() => state[i] = 1,
                ("thawed" | "failed", Some(i)) if i < state.len() => state[i] = 2,
                _ => log(&format!("ignoring unexpected message {:?}", line.trim())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux_fs_h() {
        // _IOWR('X', 119, int) and _IOWR('X', 120, int) on Linux.
        assert_eq!(
            nix::request_code_readwrite!(b'X', 119, std::mem::size_of::<c_int>()) as u64,
            0xc004_5877
        );
        assert_eq!(
            nix::request_code_readwrite!(b'X', 120, std::mem::size_of::<c_int>()) as u64,
            0xc004_5878
        );
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn root_is_a_mount_point_and_its_subdirectories_are_not() {
        assert!(is_mountpoint(Path::new("/")));
        assert!(
            !is_mountpoint(Path::new("/usr/bin"))
                || mount_of(Path::new("/usr/bin")).unwrap().0 == Path::new("/usr/bin")
        );
        assert!(mount_of(Path::new("/nonexistent/deeper/file")).is_some());
    }
}
