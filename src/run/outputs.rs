//! What a run writes besides progress: the coordinates (progress line, hook
//! variables, the coordinates file) and, at the end, the report and metrics.

use super::Connected;
use crate::exit;
use crate::freeze::Target;
use crate::messages::Progress;
use crate::plan::{Instance, Outputs};
use crate::report::{self, Report};
use crate::server::Coordinates;
use std::time::SystemTime;

/// "NAME coordinates: binlog.000003:1089, GTID 0-1-4 (read in 1 ms)".
pub fn coordinates_line(instance: &Instance, c: &Coordinates, took: &str) -> String {
    let name = instance
        .name
        .as_ref()
        .map(|n| format!("{n} "))
        .unwrap_or_default();
    match (&c.binlog_file, c.binlog_position) {
        (Some(f), Some(p)) => format!(
            "{name}coordinates: {f}:{p}{} (read in {took})",
            c.gtid
                .as_deref()
                .map(|g| format!(", GTID {g}"))
                .unwrap_or_default()
        ),
        _ => format!("{name}coordinates: binary logging is off (no file/position; read in {took})"),
    }
}

/// The hook variables of one server's coordinates.
pub fn coordinate_vars(c: &Coordinates) -> Vec<(&'static str, String)> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let num = |v: Option<u64>| v.map(|p| p.to_string()).unwrap_or_default();
    vec![
        ("BINLOG_FILE", opt(&c.binlog_file)),
        ("BINLOG_POS", num(c.binlog_position)),
        ("GTID", opt(&c.gtid)),
        ("SOURCE_LOG_FILE", opt(&c.source_log_file)),
        ("SOURCE_LOG_POS", num(c.source_log_position)),
        ("GALERA_POSITION", opt(&c.galera_position)),
        // 0: read while commits went on (instance, tables-for-backup): not a
        // restore point; shipped hooks never tag it as one.
        (
            "COORDINATES_EXACT",
            if c.exact { "1" } else { "0" }.to_string(),
        ),
    ]
}

/// The coordinates file: small, stable JSON that can live inside the
/// snapshot. One instance: its fields at the top level; several: also an
/// `instances` object keyed by name.
pub fn coordinates_json(all: &[Coordinates], connected: &[Connected], run_id: &str) -> String {
    let mut v = serde_json::to_value(all.first().cloned().unwrap_or_default()).expect("json");
    v["run_id"] = run_id.into();
    v["read_at"] = report::rfc3339(SystemTime::now()).into();
    v["server_version"] = connected.first().map(|c| c.info.version.clone()).into();
    if connected.iter().any(|c| c.instance.name.is_some()) {
        let map: serde_json::Map<String, serde_json::Value> = connected
            .iter()
            .zip(all)
            .map(|(c, coords)| {
                (
                    c.instance.label(),
                    serde_json::to_value(coords).expect("json"),
                )
            })
            .collect();
        v["instances"] = map.into();
    }
    serde_json::to_string_pretty(&v).expect("json") + "\n"
}

/// Mount points as "/a, /b", for messages.
pub fn mount_list(targets: &[Target]) -> String {
    targets
        .iter()
        .map(|t| t.mountpoint.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Write the report and the metrics (after thaw and unlock: never onto a
/// frozen filesystem). A file that cannot be written turns a success into
/// 78; the exit status to use is returned.
pub fn write_report_and_metrics(
    outputs: &Outputs,
    report: &Report,
    finished: SystemTime,
    progress: &Progress,
    code: u8,
) -> u8 {
    let metrics = outputs
        .metrics
        .as_ref()
        .map(|path| report.prometheus(finished, report::read_previous_metrics(path).as_deref()));
    let files = [
        (&outputs.report, "report", Some(report.to_json())),
        (&outputs.metrics, "metrics file", metrics),
    ];
    let mut code = code;
    for (path, what, text) in files {
        let (Some(path), Some(text)) = (path, text) else {
            continue;
        };
        if let Err(e) = report::write_atomic(path, text.as_bytes()) {
            progress.error(format!("cannot write the {what} {}: {e}", path.display()));
            if code == exit::OK {
                code = exit::CONFIG;
            }
        }
    }
    code
}
