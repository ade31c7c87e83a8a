//! Filesystem freeze with FIFREEZE/FITHAW, validation of freeze targets, and
//! the guardian: a separate process that thaws whatever we froze if we die
//! (even by SIGKILL) or the deadline passes.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

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
    /// One of our output files: report, coordinates (overridable with --force-freeze).
    OutputFile,
    /// The program a hook or COMMAND runs (not overridable).
    HookCommand,
}

/// Check every target before anything is connected or locked: it exists, is a
/// mount point, is not `/`, does not hold a protected path (unless `force`
/// allows it), and we are root. Errors are `exit::Failure`s with a clear message.
pub fn validate(
    targets: &[PathBuf],
    protected: &[(PathBuf, Protected)],
    force: bool,
) -> anyhow::Result<Vec<Target>> {
    let _ = (targets, protected, force);
    todo!("freeze::validate")
}

/// Filesystems frozen by us, in freeze order. Dropping it thaws them (reverse
/// order); the guardian thaws them if this process dies first.
#[derive(Debug)]
pub struct FrozenSet {}

/// Result of thawing one filesystem.
#[derive(Debug, Clone)]
pub struct Thawed {
    pub mountpoint: PathBuf,
    /// None: thawed (or was not frozen, EINVAL). Some: the error.
    pub error: Option<String>,
}

/// Start the guardian, then freeze `targets` in order. On a failure part way,
/// thaw what was frozen and return the error (EBUSY: already frozen by someone
/// else, which we never thaw). `deadline` is when the guardian thaws regardless.
pub fn freeze_all(targets: &[Target], deadline: SystemTime) -> anyhow::Result<FrozenSet> {
    let _ = (targets, deadline);
    todo!("freeze::freeze_all")
}

impl FrozenSet {
    /// Thaw in reverse order and stop the guardian.
    pub fn thaw(self) -> Vec<Thawed> {
        todo!("FrozenSet::thaw")
    }
}

/// Entry point of the hidden `__guardian` subcommand. Returns the exit status.
pub fn guardian_main(deadline: f64, mountpoints: &[PathBuf]) -> i32 {
    let _ = (deadline, mountpoints);
    todo!("freeze::guardian_main")
}

/// Whether `path` is the mount point of a filesystem.
pub fn is_mountpoint(path: &Path) -> bool {
    let _ = path;
    todo!("freeze::is_mountpoint")
}
