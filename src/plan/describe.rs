//! --dry-run: the plan in words, step by step as `procedure::STEPS` names
//! them, with this run's hooks, servers, statements and mount points.

use super::Plan;
use crate::cli::LockMode;
use crate::procedure::{self, Step};
use crate::server::strategy;
use std::fmt::Write as _;

pub fn describe(plan: &Plan) -> String {
    let mut out = String::new();
    let mut n = 0;
    let mut line = |step: Step, text: String| {
        n += 1;
        let _ = writeln!(out, "{n:>2}. {}: {text}", step.name);
    };
    for h in &plan.hooks.before {
        line(procedure::BEFORE, h.clone());
    }
    let lock = &plan.lock;
    let strategies = strategy::planned(lock.mode);
    if plan.instances.is_empty() || strategies.is_empty() {
        line(
            procedure::CONNECT,
            "no database lock (--lock=none): no connection".into(),
        );
    } else {
        for i in &plan.instances {
            line(
                procedure::CONNECT,
                format!(
                    "{}{} as '{}' (lock session + watchdog session)",
                    i.prefix(),
                    i.spec.target,
                    i.spec.user
                ),
            );
        }
        if plan.instances.len() > 1 {
            line(
                procedure::LOCK,
                format!(
                    "all {} instances in parallel; if one cannot be locked, release the others and retry",
                    plan.instances.len()
                ),
            );
        }
        if let Some(g) = lock.guard {
            line(
                procedure::LOCK,
                format!(
                    "before each attempt, wait while a {:?} statement has run longer than {:.2} s (--long-query-guard)",
                    lock.query_type,
                    g.as_secs_f64()
                ),
            );
        }
        if lock.pre_flush {
            line(
                procedure::LOCK,
                "before each attempt, FLUSH NO_WRITE_TO_BINLOG TABLES (bounded the same way)"
                    .into(),
            );
        }
        let statements: Vec<String> = strategies.iter().map(|s| s.lock.join("; ")).collect();
        let statements = match lock.mode {
            LockMode::Auto => format!(
                "{} on MariaDB >= 10.4.1, else {}",
                statements[0], statements[1]
            ),
            _ => statements.join(""),
        };
        line(
            procedure::LOCK,
            format!(
                "{statements} (each attempt at most {:.2} s, then KILL QUERY; {} attempt(s), {:.2} s apart)",
                lock.wait.as_secs_f64(),
                lock.retries + 1,
                lock.retry_delay.as_secs_f64()
            ),
        );
        if let Some(k) = lock.kill_after {
            line(
                procedure::LOCK,
                format!(
                    "DANGEROUS --kill-long-queries: after {:.2} s of an attempt, KILL QUERY the {:?} statements that \
                     started before it",
                    k.as_secs_f64(),
                    lock.query_type
                ),
            );
        }
        line(
            procedure::COORDINATES,
            "SHOW BINARY LOG STATUS (MySQL >= 8.2), SHOW BINLOG STATUS (MariaDB >= 10.5.2) or SHOW MASTER STATUS; \
             GTID position"
                .into(),
        );
        if let Some(c) = &plan.outputs.coordinates {
            line(
                procedure::COORDINATES,
                format!("written to {}", c.display()),
            );
        }
    }
    for h in &plan.hooks.pre {
        line(procedure::PRE, h.clone());
    }
    for t in &plan.freeze {
        line(
            procedure::FREEZE,
            format!(
                "{} ({}) with FIFREEZE; the guardian thaws it if we die",
                t.mountpoint.display(),
                t.fs_type
            ),
        );
    }
    for h in &plan.hooks.snapshot {
        line(procedure::SNAPSHOT, format!("{h} (stdout passed through)"));
    }
    if let Some((argv, _)) = &plan.hooks.command {
        line(
            procedure::SNAPSHOT,
            format!(
                "COMMAND {} (stdout passed through, no shell)",
                argv.join(" ")
            ),
        );
    }
    for t in plan.freeze.iter().rev() {
        line(
            procedure::THAW,
            format!("{} (FITHAW)", t.mountpoint.display()),
        );
    }
    if plan.locks() {
        line(
            procedure::VERIFY,
            "the lock session is still the same live connection".into(),
        );
    }
    for h in &plan.hooks.post {
        line(procedure::POST, format!("{h} (always runs once locked)"));
    }
    if plan.locks() {
        let unlock: Vec<&str> = strategies.iter().map(|s| s.unlock).collect();
        line(procedure::UNLOCK, unlock.join(" or "));
    }
    for h in &plan.hooks.after {
        line(
            procedure::AFTER,
            format!("{h} (always runs once connected)"),
        );
    }
    let _ = writeln!(
        out,
        "Limits: each hook {} s; locked section at most {} s (--max-lock-time).",
        plan.hook_timeout.as_secs_f64(),
        plan.max_lock_time.as_secs_f64()
    );
    out
}
