//! Files written whole or not at all: a reader (a backup job, a metrics
//! scraper, `unlock`) sees the old file or the new one, never a torn one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Write a file atomically: temp file in the same directory, fsync, rename.
/// Readers see the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    // 0666 before the umask: what File::create gives.
    write_atomic_mode(path, contents, 0o666)
}

/// `write_atomic` with the new file's mode (before the umask), e.g. 0600 for
/// files only root may read.
pub fn write_atomic_mode(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        // We run as root in directories others may write to: never follow a
        // planted symlink, never write into a file someone else opened.
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        write_atomic(&p, b"old").unwrap();
        // A reader that opened the old file (here: a hard link to it) keeps
        // the old contents whole: the new file replaces it by rename, it is
        // never truncated and rewritten in place.
        let reader = dir.path().join("reader");
        std::fs::hard_link(&p, &reader).unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::read(&reader).unwrap(), b"old");
        std::fs::remove_file(&reader).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A symlink planted where the temp file goes is not followed.
        let target = dir.path().join("target");
        std::fs::write(&target, "untouched").unwrap();
        let tmp = dir
            .path()
            .join(format!(".c.json.tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&target, &tmp).unwrap();
        write_atomic(&p, b"newer").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
        assert_eq!(std::fs::read(&p).unwrap(), b"newer");
    }
}
