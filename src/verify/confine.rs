//! The server may write its view of the snapshot and its private run
//! directory, nothing else. Whatever in the data leads it elsewhere (a link
//! or `.isl` verify did not see, a path in MySQL's data dictionary, an
//! option given with `--server-option`), a write there fails instead of
//! reaching live files. The server starts in a mount namespace of its own
//! in which those directories are bind-mounted writable and every other
//! mount is bind-remounted read-only. Bind remounts change only that
//! namespace's mounts (never a filesystem's own read-only state), and the
//! namespace ends with the server.
//!
//! `Confinement::plan` reads the mounts in the parent; `apply` runs in the
//! forked child before exec and makes system calls only (no allocation);
//! `check` reads the running server's mounts back, so that verify can say
//! which mounts stayed writable.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Filesystems that hold no data a server could be led to write, or that
/// cannot be remounted (kernel interfaces).
const PSEUDO: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "binfmt_misc",
    "autofs",
    "hugetlbfs",
    "efivarfs",
    "nsfs",
    "rpc_pipefs",
];

/// One mount of the namespace: where, its type, and whether it is read-write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    pub fstype: String,
    pub writable: bool,
    /// MS_NOSUID etc. of the mount: a bind remount must keep them.
    flags: libc::c_ulong,
}

/// `\040` and the like in /proc/PID/mountinfo paths.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The mounts of a /proc/PID/mountinfo text that paths reach: of several
/// mounts on one point, the last (the others are hidden under it).
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let all: Vec<Mount> = text
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let point = PathBuf::from(std::ffi::OsStr::from_bytes(&unescape(fields.get(4)?)));
            let options = fields.get(5)?;
            let fstype = right.split(' ').next()?.to_string();
            let mut flags: libc::c_ulong = 0;
            for o in options.split(',') {
                flags |= match o {
                    "nosuid" => libc::MS_NOSUID,
                    "nodev" => libc::MS_NODEV,
                    "noexec" => libc::MS_NOEXEC,
                    "noatime" => libc::MS_NOATIME,
                    "nodiratime" => libc::MS_NODIRATIME,
                    "relatime" => libc::MS_RELATIME,
                    _ => 0,
                };
            }
            Some(Mount {
                point,
                fstype,
                writable: options.split(',').any(|o| o == "rw"),
                flags,
            })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut top: Vec<Mount> = all
        .into_iter()
        .rev()
        .filter(|m| seen.insert(m.point.clone()))
        .collect();
    top.reverse();
    top
}

/// What the server's namespace is made of.
#[derive(Debug, Clone)]
pub struct Confinement {
    writable: Vec<PathBuf>,
    writable_c: Vec<CString>,
    readonly: Vec<(CString, libc::c_ulong)>,
}

impl Confinement {
    /// Keep `writable` (directories) writable, everything else read-only.
    pub fn plan(writable: &[PathBuf]) -> Confinement {
        let mut keep: Vec<PathBuf> = Vec::new();
        for w in writable {
            let w = w.canonicalize().unwrap_or_else(|_| w.clone());
            if !keep.iter().any(|k| w.starts_with(k)) {
                keep.retain(|k| !k.starts_with(&w));
                keep.push(w);
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let readonly = parse_mountinfo(&mounts)
            .into_iter()
            .filter(|m| m.writable && needs_readonly(m, &keep))
            .filter_map(|m| Some((CString::new(m.point.as_os_str().as_bytes()).ok()?, m.flags)))
            .collect();
        let writable_c = keep
            .iter()
            .filter_map(|k| CString::new(k.as_os_str().as_bytes()).ok())
            .collect();
        Confinement {
            writable: keep,
            writable_c,
            readonly,
        }
    }

    /// In the child, between fork and exec: system calls only. Not being
    /// allowed a mount namespace (not root) leaves the server unconfined,
    /// as `check` then reports; any other failure fails the start.
    pub fn apply(&self) -> std::io::Result<()> {
        // SAFETY: plain system calls on NUL-terminated strings made before the fork.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                let e = std::io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EPERM) => Ok(()),
                    _ => Err(e),
                };
            }
            let root = c"/";
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            for w in &self.writable_c {
                if libc::mount(
                    w.as_ptr(),
                    w.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (point, flags) in &self.readonly {
                // MS_BIND with MS_REMOUNT: this mount only, never the filesystem.
                libc::mount(
                    std::ptr::null(),
                    point.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | flags,
                    std::ptr::null(),
                );
            }
        }
        Ok(())
    }

    /// The mounts the server at `pid` can still write outside its own
    /// directories (empty when confined as planned).
    pub fn check(&self, pid: u32) -> Vec<PathBuf> {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
            return vec![PathBuf::from("/ (the server's mounts could not be read)")];
        };
        parse_mountinfo(&text)
            .into_iter()
            .filter(|m| m.writable && needs_readonly(m, &self.writable))
            .map(|m| m.point)
            .collect()
    }
}

/// A mount that must be read-only for the server: not a kernel interface,
/// not one of (or inside) the directories it may write.
fn needs_readonly(m: &Mount, keep: &[PathBuf]) -> bool {
    !PSEUDO.contains(&m.fstype.as_str())
        && !m.point.starts_with("/proc")
        && !m.point.starts_with("/sys")
        && !keep.iter().any(|k| m.point.starts_with(k))
}

/// The mount `path` is on, among `mounts`.
pub fn point_of(path: &Path, mounts: &[Mount]) -> Option<Mount> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.point))
        .max_by_key(|m| m.point.as_os_str().len())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=1k
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
28 27 0:25 / /mnt/ro\\040dir ro,nosuid,nodev,relatime - tmpfs none ro
29 27 7:1 / /var/tmp/w rw,nosuid - xfs /dev/loop1 rw
30 29 0:40 / /var/tmp/w/data/view rw - overlay mysql-quiesce-verify rw
31 24 0:23 / /dev/shm rw - tmpfs tmpfs rw
32 24 0:23 / /dev/shm ro - tmpfs tmpfs rw
";

    #[test]
    fn mountinfo_lines_give_point_type_mode_and_flags() {
        let m = parse_mountinfo(INFO);
        // The second /dev/shm hides the first.
        assert_eq!(m.len(), 7);
        assert!(!m[6].writable);
        assert_eq!(m[3].point, Path::new("/mnt/ro dir"));
        assert!(!m[3].writable);
        assert_eq!(
            m[3].flags,
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_RELATIME
        );
        assert_eq!(m[2].fstype, "ext4");
        assert!(m[2].writable);
        let keep = [PathBuf::from("/var/tmp/w")];
        let ro: Vec<_> = m
            .iter()
            .filter(|x| x.writable && needs_readonly(x, &keep))
            .map(|x| x.point.display().to_string())
            .collect();
        assert_eq!(ro, ["/dev", "/"]);
        assert_eq!(
            point_of(Path::new("/var/tmp/w/data/view/x"), &m)
                .unwrap()
                .fstype,
            "overlay"
        );
    }
}
