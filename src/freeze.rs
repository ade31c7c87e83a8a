//! Filesystem freeze with FIFREEZE/FITHAW and validation of freeze targets.
//! What we freeze is announced to the guardian (`guardian`) before the ioctl,
//! so that it thaws if we die or stall past the deadline: the kernel never
//! thaws a filesystem by itself, and every writer on it hangs until someone does.
//!
//! Filesystems are told apart by identity (the superblock's device number),
//! never by mount-point path: FIFREEZE freezes a whole superblock, so a bind
//! mount of `/` is `/`, and two mounts of one filesystem are one target.

use crate::exit;
use crate::fsfreeze::{freeze_fd, thaw_fd};
use crate::guardian::{Link, ToGuardian};
use nix::errno::Errno;
use std::ffi::{CStr, CString};
use std::fmt;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A filesystem's identity: the device number of its superblock, as
/// major:minor in /proc/self/mountinfo. Every mount of one filesystem (bind
/// mounts, a second mount of the device, btrfs subvolumes) shares it, and
/// FIFREEZE freezes exactly that superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FsId {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for FsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// A validated freeze target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub mountpoint: PathBuf,
    /// Filesystem type as listed in /proc/self/mountinfo (xfs, ext4, ...).
    pub fs_type: String,
    /// Which filesystem it is.
    pub fs: FsId,
    /// (st_dev, st_ino) of the mount-point directory when it was validated:
    /// what we open to freeze must still be that very directory.
    pub dir: (u64, u64),
}

/// Something that must not live on a filesystem we freeze.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protected {
    /// The current working directory (overridable with --force-freeze).
    CurrentDir,
    /// The report, coordinates or metrics file: written before the freeze or
    /// after the thaw (overridable with --force-freeze).
    OutputFile,
    /// A regular file our stdout or stderr is redirected to: progress lines
    /// are written while frozen, and would hang us (not overridable).
    Stream,
    /// The `lock` holder's log, written while frozen (not overridable).
    HolderLog,
    /// The program a hook or COMMAND runs (not overridable).
    HookCommand,
}

impl Protected {
    /// How it is named in messages, and whether --force-freeze overrides it.
    fn subject(self, path: &Path) -> (String, bool) {
        let p = path.display();
        match self {
            Protected::CurrentDir => (format!("the current directory {p}"), true),
            Protected::OutputFile => (format!("the output file {p}"), true),
            Protected::Stream => (format!("{p}, where our stdout/stderr goes,"), false),
            Protected::HolderLog => (format!("the lock holder's log {p}"), false),
            Protected::HookCommand => (format!("the program {p}"), false),
        }
    }

    fn fix(self) -> &'static str {
        match self {
            Protected::CurrentDir | Protected::OutputFile => {
                "move it elsewhere, or pass --force-freeze if you are sure nothing is written there while frozen"
            }
            Protected::Stream => {
                "progress lines are written while frozen and would hang mysql-quiesce; redirect them to another \
                 filesystem (--force-freeze does not change this)"
            }
            Protected::HolderLog => {
                "the holder writes it while frozen and would hang; choose another --state-dir (--force-freeze does \
                 not change this)"
            }
            Protected::HookCommand => {
                "a program on a frozen filesystem may hang while it is loaded; install it elsewhere (--force-freeze \
                 does not change this)"
            }
        }
    }
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

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    id: u64,
    fs: FsId,
    mountpoint: PathBuf,
    fs_type: String,
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let (major, minor) = fields.get(2)?.split_once(':')?;
            Some(Mount {
                id: fields.first()?.parse().ok()?,
                fs: FsId {
                    major: major.parse().ok()?,
                    minor: minor.parse().ok()?,
                },
                mountpoint: PathBuf::from(unescape_mountinfo(fields.get(4)?)),
                fs_type: right.split(' ').next()?.to_string(),
            })
        })
        .collect()
}

fn mounts() -> Vec<Mount> {
    parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
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

/// The mount id of a path (statx, Linux >= 5.8): exact even where mount
/// points are stacked or paths are ambiguous.
fn statx_mount_id(path: &CStr) -> Option<u64> {
    // SAFETY: statx only writes into the zeroed buffer we pass.
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a buffer of the right type.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            path.as_ptr(),
            0,
            libc::STATX_MNT_ID,
            &mut buf,
        )
    };
    (rc == 0 && buf.stx_mask & libc::STATX_MNT_ID != 0).then_some(buf.stx_mnt_id)
}

/// `path` made absolute without symlinks; if it does not exist, its nearest
/// existing ancestor (which decides the filesystem a new file would be on).
fn nearest_existing(path: &Path) -> Option<PathBuf> {
    let mut p = path.to_path_buf();
    loop {
        if let Ok(c) = p.canonicalize() {
            return Some(c);
        }
        if !p.pop() {
            return None;
        }
    }
}

/// The mount that holds `path` (which need not exist).
fn mount_of_in(path: &Path, all: &[Mount]) -> Option<Mount> {
    let canonical = nearest_existing(path)?;
    let by_id = CString::new(canonical.as_os_str().as_bytes())
        .ok()
        .and_then(|c| statx_mount_id(&c))
        .and_then(|id| all.iter().find(|m| m.id == id));
    // Older kernels: the longest mount point that is a prefix of it (the last
    // one listed wins a tie: it is mounted on top).
    by_id
        .or_else(|| {
            all.iter()
                .filter(|m| canonical.starts_with(&m.mountpoint))
                .max_by_key(|m| m.mountpoint.as_os_str().len())
        })
        .cloned()
}

fn mount_of(path: &Path) -> Option<Mount> {
    mount_of_in(path, &mounts())
}

/// Whether `path` is the mount point of a filesystem.
pub fn is_mountpoint(path: &Path) -> bool {
    match (path.canonicalize(), mount_of(path)) {
        (Ok(c), Some(m)) => c == m.mountpoint,
        _ => false,
    }
}

/// The filesystem that holds `path` (which need not exist).
pub fn filesystem_of(path: &Path) -> Option<FsId> {
    mount_of(path).map(|m| m.fs)
}

/// Freezing needs CAP_SYS_ADMIN; `--dry-run` freezes nothing and does not ask.
pub fn require_root(targets: &[Target]) -> anyhow::Result<()> {
    if targets.is_empty() || nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let list: Vec<String> = targets
        .iter()
        .map(|t| t.mountpoint.display().to_string())
        .collect();
    Err(exit::fail(
        exit::NOPERM,
        format!(
            "--freeze needs root: freezing and thawing {} (FIFREEZE/FITHAW) needs CAP_SYS_ADMIN; run mysql-quiesce \
             as root, or drop --freeze. Connecting, locking and --dry-run do not need root",
            list.join(", ")
        ),
    ))
}

/// Check every target before anything is connected or locked: it exists, is
/// a mount point, is not the root filesystem (under any mount), can be
/// frozen, is not given twice (under any mount), and does not hold a
/// protected path (`force` overrides only the overridable ones). Root is
/// checked separately (`require_root`). Errors are `exit::Failure`s.
pub fn validate(
    targets: &[PathBuf],
    protected: &[(PathBuf, Protected)],
    force: bool,
) -> anyhow::Result<Vec<Target>> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let all = mounts();
    let root = mount_of_in(Path::new("/"), &all).ok_or_else(|| {
        exit::fail(
            exit::CONFIG,
            "cannot tell which filesystem `/` is (is /proc mounted?); refusing to freeze anything",
        )
    })?;
    let mut out: Vec<Target> = Vec::new();
    for target in targets {
        let checked = check_target(target, &all, &root)?;
        refuse_twice(&checked, target, &out)?;
        refuse_protected(&checked, target, protected, force, &all)?;
        out.push(checked);
    }
    Ok(out)
}

/// One --freeze target on its own: a mount point, not the root filesystem,
/// of a type that can be frozen.
fn check_target(target: &Path, all: &[Mount], root: &Mount) -> anyhow::Result<Target> {
    let shown = target.display();
    let canonical = target
        .canonicalize()
        .map_err(|e| exit::fail(exit::CONFIG, format!("--freeze={shown}: {e}")))?;
    let mount = mount_of_in(&canonical, all)
        .ok_or_else(|| exit::fail(exit::CONFIG, format!("--freeze={shown}: no mount holds it")))?;
    if canonical == Path::new("/") || mount.fs == root.fs {
        let also = if canonical == Path::new("/") {
            String::new()
        } else {
            format!(" (device {}, the filesystem mounted at /)", root.fs)
        };
        return Err(exit::fail(
            exit::CONFIG,
            format!(
                "--freeze={shown}: refusing to freeze the root filesystem{also}: the machine would hang, \
                 mysql-quiesce included; put the data on its own filesystem (--force-freeze does not change this)"
            ),
        ));
    }
    if mount.mountpoint != canonical {
        return Err(exit::fail(
            exit::CONFIG,
            format!(
                "--freeze={shown} is not a mount point (it is on the filesystem mounted at {}); FIFREEZE freezes \
                 whole filesystems: give the mount point",
                mount.mountpoint.display()
            ),
        ));
    }
    let fs_type = mount.fs_type.clone();
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
    let meta = std::fs::metadata(&canonical)
        .map_err(|e| exit::fail(exit::CONFIG, format!("--freeze={shown}: {e}")))?;
    Ok(Target {
        mountpoint: mount.mountpoint,
        fs_type,
        fs: mount.fs,
        dir: (meta.dev(), meta.ino()),
    })
}

/// The same filesystem twice (given twice, or mounted twice) would fail on
/// its second freeze.
fn refuse_twice(checked: &Target, target: &Path, earlier: &[Target]) -> anyhow::Result<()> {
    let Some(first) = earlier.iter().find(|t| t.fs == checked.fs) else {
        return Ok(());
    };
    let shown = target.display();
    let why = if first.mountpoint == checked.mountpoint {
        format!("--freeze={shown} is given twice")
    } else {
        format!(
            "--freeze={shown} is the same filesystem (device {}) as --freeze={}, mounted twice; freezing it \
             a second time would fail: give it once",
            checked.fs,
            first.mountpoint.display()
        )
    };
    Err(exit::fail(exit::CONFIG, why))
}

/// Nothing we need while frozen (our binary, hooks, state, the socket)
/// may be on it; `force` overrides the overridable ones.
fn refuse_protected(
    checked: &Target,
    target: &Path,
    protected: &[(PathBuf, Protected)],
    force: bool,
    all: &[Mount],
) -> anyhow::Result<()> {
    for (path, kind) in protected {
        if !mount_of_in(path, all).is_some_and(|m| m.fs == checked.fs) {
            continue;
        }
        let (what, overridable) = kind.subject(path);
        if overridable && force {
            continue;
        }
        return Err(exit::fail(
            exit::CONFIG,
            format!(
                "--freeze={}: {what} is on that filesystem, and mysql-quiesce never touches a frozen \
                 filesystem; {}",
                target.display(),
                kind.fix()
            ),
        ));
    }
    Ok(())
}

/// Result of thawing one filesystem.
#[derive(Debug, Clone)]
pub struct Thawed {
    pub mountpoint: PathBuf,
    /// None: thawed (or was not frozen). Some: the error.
    pub error: Option<String>,
}

/// Filesystems frozen by us, in freeze order. Dropping it thaws them (reverse
/// order); the guardian thaws them if this process dies first.
#[derive(Debug)]
pub struct FrozenSet {
    targets: Vec<Target>,
    dirs: Vec<File>,
    /// Index into `targets` of every filesystem we froze, in order.
    frozen: Vec<usize>,
    guardian: Link,
}

/// Freeze `targets` in order, each announced to the guardian first (which
/// must be alive: `Guardian::ensure_alive`). On a failure part way, thaw what
/// was frozen and return the error (EBUSY: frozen by someone else, which we
/// never thaw). `targets` are the ones the guardian was started with, in the
/// same order.
pub fn freeze_all(
    targets: &[Target],
    deadline: Instant,
    guardian: Link,
) -> anyhow::Result<FrozenSet> {
    let mut dirs = Vec::new();
    let root_dev = std::fs::metadata("/").map(|m| m.dev()).ok();
    for t in targets {
        let shown = t.mountpoint.display();
        let dir = File::open(&t.mountpoint).map_err(|e| {
            exit::fail(
                exit::CONFIG,
                format!("cannot open {shown}: {e}; nothing was frozen"),
            )
        })?;
        // What was checked before connecting must still be what we freeze: if
        // the filesystem was unmounted since, the path is now a directory on
        // the filesystem underneath, perhaps `/`.
        let now = dir.metadata().map(|m| (m.dev(), m.ino())).ok();
        if now != Some(t.dir) || now.map(|(dev, _)| dev) == root_dev {
            return Err(exit::fail(
                exit::CONFIG,
                format!(
                    "{shown} is no longer the filesystem that was checked before connecting (unmounted or \
                     remounted since?); nothing was frozen"
                ),
            ));
        }
        dirs.push(dir);
    }
    let mut set = FrozenSet {
        targets: targets.to_vec(),
        dirs,
        frozen: Vec::new(),
        guardian,
    };
    for i in 0..set.targets.len() {
        let mountpoint = set.targets[i].mountpoint.display().to_string();
        let result = if Instant::now() >= deadline {
            Err((
                exit::TIMEOUT,
                format!("--max-lock-time passed before {mountpoint} was frozen"),
            ))
        } else {
            // Announce first: if we die right after the ioctl, the guardian still knows.
            set.guardian.tell(&ToGuardian::Freezing(i));
            freeze_fd(&set.dirs[i]).map_err(|e| {
                set.guardian.tell(&ToGuardian::Failed(i));
                let fs_type = &set.targets[i].fs_type;
                match e {
                    Errno::EBUSY => (
                        exit::TEMPFAIL,
                        format!("{mountpoint} is already frozen by someone else; mysql-quiesce did not freeze it and will not thaw it (if nobody should hold it, `fsfreeze -u {mountpoint}`)"),
                    ),
                    Errno::EOPNOTSUPP => (exit::CONFIG, format!("the {fs_type} filesystem at {mountpoint} cannot be frozen")),
                    Errno::EPERM | Errno::EACCES => (exit::NOPERM, format!("freezing {mountpoint} needs root (CAP_SYS_ADMIN)")),
                    other => (exit::SOFTWARE, format!("freezing {mountpoint} failed: {other}")),
                }
            })
        };
        match result {
            Ok(()) => set.frozen.push(i),
            Err((code, why)) => {
                let thawed = set.thaw_frozen();
                let left: Vec<String> = thawed
                    .iter()
                    .filter_map(|t| {
                        t.error
                            .as_ref()
                            .map(|e| format!("{}: {e}", t.mountpoint.display()))
                    })
                    .collect();
                let state = if left.is_empty() {
                    "nothing is frozen now".to_string()
                } else {
                    format!(
                        "could not thaw {}; the guardian retries when mysql-quiesce exits (if it stays frozen: \
                         `fsfreeze -u MOUNTPOINT`)",
                        left.join(", ")
                    )
                };
                return Err(exit::fail(code, format!("{why}; {state}")));
            }
        }
    }
    Ok(set)
}

impl FrozenSet {
    /// Thaw what we froze, in reverse order; keep track for Drop.
    fn thaw_frozen(&mut self) -> Vec<Thawed> {
        let mut results = Vec::new();
        while let Some(i) = self.frozen.pop() {
            let error = thaw_fd(&self.dirs[i]).err().map(|e| e.to_string());
            if error.is_none() {
                self.guardian.tell(&ToGuardian::Thawed(i));
            }
            results.push(Thawed {
                mountpoint: self.targets[i].mountpoint.clone(),
                error,
            });
        }
        results
    }

    /// Thaw in reverse order. One entry per filesystem, in thaw order; what
    /// could not be thawed stays announced, so the guardian thaws it when we
    /// exit or at its deadline.
    pub fn thaw(mut self) -> Vec<Thawed> {
        self.thaw_frozen()
    }
}

impl Drop for FrozenSet {
    fn drop(&mut self) {
        // Panic path: thaw now, and say what happened (nobody else will).
        for t in self.thaw_frozen() {
            let m = t.mountpoint.display();
            crate::messages::emergency(&match &t.error {
                None => format!("emergency thaw: thawed {m}"),
                Some(e) => format!(
                    "error: emergency thaw: could not thaw {m}: {e}; the guardian retries when mysql-quiesce \
                     exits (if it stays frozen: `fsfreeze -u {m}`)"
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn mountinfo_lines_give_mount_id_device_mount_point_and_type() {
        let text = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                    90 27 254:0 / /mnt/root\\040bind rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    91 27 0:52 /@home /home rw - btrfs /dev/vdb rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(
            (m[0].id, m[0].fs, m[0].mountpoint.as_path()),
            (
                27,
                FsId {
                    major: 254,
                    minor: 0
                },
                Path::new("/")
            )
        );
        // A bind mount of / is the same filesystem as / under another path.
        assert_eq!(m[1].mountpoint, Path::new("/mnt/root bind"));
        assert_eq!(m[1].fs, m[0].fs);
        assert_eq!(
            (m[2].fs.to_string(), m[2].fs_type.as_str()),
            ("0:52".to_string(), "btrfs")
        );
    }

    #[test]
    fn root_is_a_mount_point_and_its_filesystem_is_found_for_paths_that_do_not_exist() {
        assert!(is_mountpoint(Path::new("/")));
        let root = filesystem_of(Path::new("/")).expect("/ has a filesystem");
        // A path that does not exist is on the filesystem of its nearest existing ancestor.
        assert_eq!(
            filesystem_of(Path::new("/nonexistent/deeper/file")),
            Some(root)
        );
    }

    #[test]
    fn validation_refuses_the_root_filesystem_even_with_force() {
        let err = validate(&[PathBuf::from("/")], &[], true).unwrap_err();
        assert_eq!(exit::code_of(&err), exit::CONFIG);
        assert!(
            err.to_string()
                .contains("refusing to freeze the root filesystem"),
            "{err}"
        );
    }
}
