//! FIFREEZE and FITHAW, the two ioctls on a mount point's directory that
//! freeze and thaw its whole filesystem (what `fsfreeze -f/-u` calls).

use nix::errno::Errno;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::raw::c_int;

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
}
