//! What a run leaves behind: the JSON report (`Report`), the Prometheus
//! metrics, and the atomic file writes both use. Progress lines are
//! `messages`.

use serde::Serialize;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds, for progress lines: "231 ms", "2.40 s".
pub fn human(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// UTC timestamp in RFC 3339 with milliseconds, e.g. 2026-11-23T22:41:09.123Z.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

pub use crate::atomic_write::{write_atomic, write_atomic_mode};

/// The metrics file a run replaces, for what it carries over. Never read
/// through a symbolic link, from a FIFO (which would block) or a device, and
/// never more than 1 MiB: the path is in a directory others may write to.
pub fn read_previous_metrics(path: &Path) -> Option<String> {
    use std::io::Read;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(1 << 20).read_to_string(&mut text).ok()?;
    Some(text)
}

/// One phase of the run.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseRecord {
    pub name: String,
    pub started_at: String,
    pub ended_at: String,
    pub duration_ms: f64,
    pub ok: bool,
}

/// One hook run.
#[derive(Debug, Clone, Serialize)]
pub struct HookRecord {
    pub phase: crate::hooks::Phase,
    pub command: String,
    /// "exited with status 0", "timed out ...".
    pub result: String,
    /// The exit status it maps to (0 = success).
    pub exit_code: u8,
    pub duration_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FreezeRecord {
    pub mountpoint: String,
    pub fs_type: String,
    pub thaw_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LockRecord {
    /// As asked for, then as resolved on the (first) server.
    pub mode: crate::server::strategy::LockMode,
    pub statement: Option<String>,
    pub connection_id: Option<u32>,
    /// Time the successful lock statement took (writers blocked while it waited).
    pub acquired_in_ms: Option<f64>,
    /// Time the lock was held: writes were blocked this long.
    pub held_ms: Option<f64>,
    /// Whether the lock was verified as held by the same session before unlocking.
    pub verified: Option<bool>,
}

/// One locked server (several with --instance).
#[derive(Debug, Clone, Serialize)]
pub struct InstanceRecord {
    pub name: String,
    pub target: String,
    /// The user the lock session logged in as.
    pub user: String,
    pub server: crate::server::ServerInfo,
    pub connection_id: u32,
    /// The lock session's TLS cipher; null when not encrypted.
    pub tls: Option<String>,
    pub lock: crate::server::strategy::LockMode,
    pub coordinates: Option<crate::server::Coordinates>,
}

/// How a run ended, in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Failed,
}

/// The JSON report (--report).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub tool_version: &'static str,
    pub run_id: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: Outcome,
    pub exit_code: u8,
    /// False whenever the snapshot cannot be trusted to be consistent.
    pub consistent: bool,
    /// The first failure, in words.
    pub error: Option<String>,
    pub server: Option<crate::server::ServerInfo>,
    pub lock: LockRecord,
    pub coordinates: Option<crate::server::Coordinates>,
    /// Every locked server, the first one also in `server`/`coordinates`.
    pub instances: Vec<InstanceRecord>,
    pub frozen: Vec<FreezeRecord>,
    /// Time the filesystems were frozen (freeze done to thaw done).
    pub frozen_ms: Option<f64>,
    pub phases: Vec<PhaseRecord>,
    pub hooks: Vec<HookRecord>,
}

impl Report {
    pub fn new(run_id: String, mode: crate::server::strategy::LockMode) -> Report {
        Report {
            tool: "mysql-quiesce",
            tool_version: env!("CARGO_PKG_VERSION"),
            run_id,
            started_at: rfc3339(SystemTime::now()),
            finished_at: None,
            outcome: Outcome::Failed,
            exit_code: 0,
            consistent: false,
            error: None,
            server: None,
            lock: LockRecord {
                mode,
                statement: None,
                connection_id: None,
                acquired_in_ms: None,
                held_ms: None,
                verified: None,
            },
            coordinates: None,
            instances: Vec::new(),
            frozen: Vec::new(),
            frozen_ms: None,
            phases: Vec::new(),
            hooks: Vec::new(),
        }
    }

    pub fn phase(&mut self, name: &str, started: SystemTime, duration: Duration, ok: bool) {
        self.phases.push(PhaseRecord {
            name: name.into(),
            started_at: rfc3339(started),
            ended_at: rfc3339(started + duration),
            duration_ms: ms(duration),
            ok,
        });
    }

    /// Prometheus text format, for node_exporter's textfile collector.
    /// `previous` is the metrics file this run replaces: a failed run carries
    /// its last-success time over, so "no success in 26 h" can be alerted on.
    pub fn prometheus(&self, finished: SystemTime, previous: Option<&str>) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, samples: &[(String, f64)]| {
            out.push_str(&format!(
                "# HELP mysql_quiesce_{name} {help}\n# TYPE mysql_quiesce_{name} gauge\n"
            ));
            for (labels, value) in samples {
                out.push_str(&format!("mysql_quiesce_{name}{labels} {value}\n"));
            }
        };
        let one = |v: f64| vec![(String::new(), v)];
        let secs = |ms: Option<f64>| ms.unwrap_or(0.0) / 1000.0;
        let finished = finished
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        gauge(
            "last_run_timestamp_seconds",
            "Unix time the last run finished.",
            &one(finished),
        );
        let last_success = if self.exit_code == 0 {
            finished
        } else {
            previous.map_or(0.0, previous_success)
        };
        gauge(
            "last_success_timestamp_seconds",
            "Unix time of the last run that exited 0 (0: none recorded in this file).",
            &one(last_success),
        );
        gauge(
            "last_run_success",
            "1 if the last run exited 0.",
            &one(f64::from(u8::from(self.exit_code == 0))),
        );
        gauge(
            "last_run_exit_code",
            "Exit status of the last run.",
            &one(f64::from(self.exit_code)),
        );
        gauge(
            "last_run_consistent",
            "1 if the last snapshot was taken under a verified lock.",
            &one(f64::from(u8::from(self.consistent))),
        );
        gauge(
            "lock_held_seconds",
            "Time writes were blocked by the lock in the last run.",
            &one(secs(self.lock.held_ms)),
        );
        gauge(
            "lock_wait_seconds",
            "Time the successful lock attempt waited in the last run.",
            &one(secs(self.lock.acquired_in_ms)),
        );
        gauge(
            "frozen_seconds",
            "Time filesystems were frozen in the last run.",
            &one(secs(self.frozen_ms)),
        );
        let mut phases: Vec<(String, f64)> = Vec::new();
        for p in &self.phases {
            match phases.iter_mut().find(|(n, _)| *n == p.name) {
                Some((_, total)) => *total += p.duration_ms,
                None => phases.push((p.name.clone(), p.duration_ms)),
            }
        }
        let samples: Vec<(String, f64)> = phases
            .into_iter()
            .map(|(n, ms)| (format!("{{phase=\"{n}\"}}"), ms / 1000.0))
            .collect();
        gauge(
            "phase_seconds",
            "Duration of each phase of the last run.",
            &samples,
        );
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes") + "\n"
    }
}

/// The last-success time recorded in a previous metrics file: its
/// `last_success_timestamp_seconds`, or, in a file written before that gauge
/// existed, its run time if that run succeeded; 0 when there is none.
fn previous_success(text: &str) -> f64 {
    let value = |name: &str| {
        text.lines().find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == format!("mysql_quiesce_{name}"))
                .then(|| v.trim().parse::<f64>().ok())
                .flatten()
                .filter(|v| v.is_finite() && *v >= 0.0)
        })
    };
    value("last_success_timestamp_seconds")
        .or_else(|| {
            (value("last_run_success") == Some(1.0))
                .then(|| value("last_run_timestamp_seconds"))
                .flatten()
        })
        .unwrap_or(0.0)
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_473_669_123);
        assert_eq!(rfc3339(t), "2026-11-23T22:41:09.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    fn gauge(text: &str, name: &str) -> f64 {
        let prefix = format!("mysql_quiesce_{name} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn last_success_time_is_carried_over_by_failed_runs_only() {
        let t1 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let t2 = t1 + Duration::from_secs(86_400);
        let mut ok = Report::new("a".into(), crate::server::strategy::LockMode::Auto);
        ok.exit_code = 0;
        let first = ok.prometheus(t1, None);
        assert_eq!(gauge(&first, "last_success_timestamp_seconds"), 1.8e9);
        let mut failed = Report::new("b".into(), crate::server::strategy::LockMode::Auto);
        failed.exit_code = 75;
        let second = failed.prometheus(t2, Some(&first));
        assert_eq!(gauge(&second, "last_success_timestamp_seconds"), 1.8e9);
        assert_eq!(
            gauge(&second, "last_run_timestamp_seconds"),
            1.8e9 + 86_400.0
        );
        // Carried over again by a second failure; never invented without a file.
        let third = failed.prometheus(t2, Some(&second));
        assert_eq!(gauge(&third, "last_success_timestamp_seconds"), 1.8e9);
        assert_eq!(
            gauge(
                &failed.prometheus(t2, None),
                "last_success_timestamp_seconds"
            ),
            0.0
        );
        // A file from before the gauge existed: its run time if that run succeeded.
        let old = "mysql_quiesce_last_run_timestamp_seconds 1700000000\nmysql_quiesce_last_run_success 1\n";
        assert_eq!(previous_success(old), 1.7e9);
        assert_eq!(
            previous_success(&old.replace("success 1", "success 0")),
            0.0
        );
        assert_eq!(previous_success("garbage"), 0.0);
    }

    #[test]
    fn previous_metrics_are_never_read_from_a_fifo_or_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(read_previous_metrics(&fifo), None);
        let real = dir.path().join("real");
        std::fs::write(&real, "x 1\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(read_previous_metrics(&link), None);
        assert_eq!(read_previous_metrics(&real).as_deref(), Some("x 1\n"));
    }
}
