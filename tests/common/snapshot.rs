//! What the verify tests check of a snapshot and of verify itself: that no
//! file of the snapshot changed (`digest`), and that nothing was left
//! running, mounted or on disk (`assert_nothing_left`).

use std::path::Path;
use std::process::Command;

/// Names, sizes, modes, modification times and SHA-256 of every file under
/// `dir`: equal before and after means nothing in it was written.
pub fn digest(dir: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "cd \"$1\" && find . -printf '%p %s %m %T@\\n' | LC_ALL=C sort && \
             find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum",
        )
        .arg("sh")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "digest of {}", dir.display());
    String::from_utf8(out.stdout).unwrap()
}

/// Fail naming the lines that differ (a whole digest would drown the message).
pub fn assert_same_digest(before: &str, after: &str, what: &str) {
    if before == after {
        return;
    }
    let b: std::collections::BTreeSet<&str> = before.lines().collect();
    let a: std::collections::BTreeSet<&str> = after.lines().collect();
    let gone: Vec<&&str> = b.difference(&a).take(10).collect();
    let new: Vec<&&str> = a.difference(&b).take(10).collect();
    panic!("{what}: files changed.\nbefore only: {gone:#?}\nafter only: {new:#?}");
}

/// Neither a process nor a mount (in any mount namespace) names `work`,
/// and `work` itself is empty: verify left nothing behind.
pub fn assert_nothing_left(work: &Path) {
    let needle = work.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            assert!(!cmd.contains(&needle), "still running: pid {pid}: {cmd}");
        }
        if let Ok(mounts) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) {
            assert!(
                !mounts.contains(&needle),
                "still mounted (in the namespace of pid {pid}): {}",
                mounts
                    .lines()
                    .filter(|l| l.contains(&needle))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    let left: Vec<_> = std::fs::read_dir(work)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left in the work directory: {left:?}");
}
