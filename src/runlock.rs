//! One run at a time per machine: an flock on a lock file that also records
//! the holder's pid, so that a second run can say who holds it.

use std::path::Path;

/// Held for the life of the run; dropping it releases the flock.
#[derive(Debug)]
pub struct RunLock {}

/// Take the run lock, or fail with exit 75 naming the holder's pid.
pub fn acquire(path: &Path) -> anyhow::Result<RunLock> {
    let _ = path;
    todo!("runlock::acquire")
}
