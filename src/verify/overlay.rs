//! The writable view verify starts the server on, so that the snapshot is
//! never written: an overlay (the snapshot as the read-only lower layer, the
//! writes in an upper layer in a private work directory), mounted in a mount
//! namespace of verify's own, so that no other process sees it and it
//! vanishes with verify and its server even if both are killed. Where an
//! overlay cannot be mounted, `--copy-to` makes a full copy instead.
//!
//! Every piece is a guard: `WorkDir` removes its directory, `Overlay`
//! unmounts, `Copy` removes the copy, when dropped.

use crate::exit;
use crate::wait::{ChildWait, Watched};
use anyhow::Context;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// A private directory (mode 0700) created with a unique name under a
/// parent; removed with everything in it when dropped.
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    pub fn create(parent: &Path) -> anyhow::Result<WorkDir> {
        let template = parent.join("mysql-quiesce-verify.XXXXXX");
        let path = nix::unistd::mkdtemp(&template).map_err(|e| {
            exit::fail(
                exit::CONFIG,
                format!(
                    "cannot create a work directory in {}: {e} (--work-dir, --copy-to)",
                    parent.display()
                ),
            )
        })?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", path.display()))?;
        Ok(WorkDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remove it now, saying what went wrong.
    pub fn remove(mut self) -> anyhow::Result<()> {
        let path = std::mem::take(&mut self.path);
        remove_tree(&path).with_context(|| format!("removing {}", path.display()))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = remove_tree(&self.path);
        }
    }
}

/// Remove a directory tree we created. Overlay work directories can hold a
/// mode-000 subdirectory: make each directory writable before descending.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            fix_modes(path);
            std::fs::remove_dir_all(path)
        }
    }
}

fn fix_modes(path: &Path) {
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                fix_modes(&e.path());
            }
        }
    }
}

/// Bytes used under `path` (allocated blocks): how much the writable layer grew.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        total += meta.blocks() * 512;
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

/// Move verify (this thread, and the server it will start) into a mount
/// namespace of its own: the overlays mounted from here are invisible to
/// every other process and are gone when verify and its server are, however
/// they end. Needs CAP_SYS_ADMIN (root).
pub fn private_mount_namespace() -> anyhow::Result<()> {
    // SAFETY: unshare takes flags; CLONE_NEWNS affects only the calling thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(exit::fail(
            exit::CONFIG,
            format!(
                "cannot make a private mount namespace for the overlay ({e}): verify needs root (CAP_SYS_ADMIN) to \
                 mount one; as another user, give --copy-to DIR to verify a full copy instead"
            ),
        ));
    }
    // Our mounts must not propagate back to the host's namespace.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making the private mount namespace's mounts private")?;
    Ok(())
}

/// Escape a path for overlayfs' option string (`,`, `:` and `\` are special).
fn escape_option(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An overlay of a read-only snapshot directory, mounted on `view`.
pub struct Overlay {
    view: PathBuf,
    pub upper: PathBuf,
    mounted: bool,
}

impl Overlay {
    /// Mount `lower` (never written) with its writable layer in `dir`
    /// (upper/ and work/ on the same filesystem); the view is `dir/view`.
    pub fn mount(lower: &Path, dir: &Path) -> anyhow::Result<Overlay> {
        let (upper, work, view) = (dir.join("upper"), dir.join("work"), dir.join("view"));
        for d in [&upper, &work, &view] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            escape_option(lower),
            escape_option(&upper),
            escape_option(&work)
        );
        nix::mount::mount(
            Some("mysql-quiesce-verify"),
            &view,
            Some("overlay"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .map_err(|e| {
            exit::fail(
                exit::CONFIG,
                format!(
                    "cannot mount an overlay of {} with its writable layer in {}: {e}. An overlay needs root, a \
                     lower directory overlayfs can read and a --work-dir on a local filesystem (not NFS, not itself an \
                     overlay). Or give --copy-to DIR to verify a full copy instead (it needs room for the whole \
                     directory)",
                    lower.display(),
                    dir.display(),
                )
            )
        })?;
        Ok(Overlay {
            view,
            upper,
            mounted: true,
        })
    }

    pub fn view(&self) -> &Path {
        &self.view
    }

    /// Unmount now, saying what went wrong (the server must be gone).
    pub fn unmount(mut self) -> anyhow::Result<()> {
        self.mounted = false;
        match nix::mount::umount2(&self.view, nix::mount::MntFlags::empty()) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Detach it anyway; it is in our private namespace and goes with us.
                let _ = nix::mount::umount2(&self.view, nix::mount::MntFlags::MNT_DETACH);
                Err(anyhow::anyhow!("unmounting {}: {e}", self.view.display()))
            }
        }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.view, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// `--copy-to`: a full copy of `from` into `to` (reflinked where the
/// filesystem can), bounded by `deadline`, stopped by a signal.
pub fn copy(from: &Path, to: &Path, deadline: Instant) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let child = Command::new("cp")
        .args(["-a", "--reflink=auto", "--sparse=always", "--"])
        .arg(from.join("."))
        .arg(to)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // cp's own messages go to our stderr, as progress does.
        .stderr(Stdio::inherit())
        .spawn()
        .context("running cp")?;
    let mut w = Watched::new(child);
    let ended = w.wait(true, Some(deadline))?;
    let status = match ended {
        ChildWait::Exited(s) => s,
        other => {
            let _ = w.child.kill();
            let _ = w.child.wait();
            return Err(match other {
                ChildWait::Signal => exit::fail(
                    crate::signals::received().map_or(exit::SOFTWARE, exit::signal),
                    "interrupted while copying the data directory",
                ),
                _ => exit::fail(
                    exit::UNAVAILABLE,
                    format!(
                        "copying {} to {} did not finish within --timeout",
                        from.display(),
                        to.display()
                    ),
                ),
            });
        }
    };
    if !status.success() {
        return Err(exit::fail(
            exit::UNAVAILABLE,
            format!(
                "copying {} to {} failed ({status}; cp's messages are above)",
                from.display(),
                to.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_characters_are_escaped_in_overlay_options() {
        assert_eq!(escape_option(Path::new("/a,b:c\\d")), "/a\\,b\\:c\\\\d");
        assert_eq!(escape_option(Path::new("/plain")), "/plain");
    }

    #[test]
    fn a_work_dir_is_private_and_removed_with_what_is_in_it() {
        let parent = tempfile::tempdir().unwrap();
        let w = WorkDir::create(parent.path()).unwrap();
        let p = w.path().to_path_buf();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::create_dir_all(p.join("work/work")).unwrap();
        std::fs::set_permissions(p.join("work/work"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
        std::fs::write(p.join("work/f"), "x").unwrap();
        drop(w);
        assert!(!p.exists());
    }
}
