//! mysql-quiesce runs in the background (`Running`) and what the tests read
//! about processes from /proc: state, parent, the guardian a run started.

use super::server::TestServer;
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mysql-quiesce");

/// A mysql-quiesce run in the background, in a process group of its own,
/// with stderr in a file. Dropped while still running (the test failed), it
/// is SIGKILLed, and its guardian thaws.
pub struct Running {
    pub child: Child,
    pub stderr: PathBuf,
}

impl Running {
    pub fn start(s: &TestServer, args: &[String]) -> Running {
        let stderr = s.path(&format!("stderr-{}", unique()));
        let child = Command::new(BIN)
            .args(s.args())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        Running { child, stderr }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Exit code (None if killed by a signal), bounded so a hang fails the test.
    pub fn wait(&mut self) -> Option<i32> {
        let t = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "mysql-quiesce did not finish within 60 s:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

pub fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

pub fn wait_for(marker: &Path, run: &Running) {
    let t = Instant::now();
    while !marker.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{} never appeared:\n{}",
            marker.display(),
            run.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// /proc/PID/stat: (state, parent pid), or None when it is gone.
pub fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

/// The guardian a run started (a child running `__guardian`).
pub fn guardian_of(run: Pid) -> Option<Pid> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let is_guardian = cmdline.split(|b| *b == 0).any(|w| w == b"__guardian");
        (is_guardian && proc_stat(pid)?.1 == run.as_raw()).then(|| Pid::from_raw(pid))
    })
}

/// The guardian (started by anyone) that watches `mountpoint`.
pub fn guardian_for(mountpoint: &Path) -> Option<Pid> {
    let wanted = mountpoint.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let mut words = cmdline.split(|b| *b == 0);
        let matches = words.clone().any(|w| w == b"__guardian") && words.any(|w| w == wanted);
        (matches && proc_stat(pid)?.0 != 'Z').then(|| Pid::from_raw(pid))
    })
}
