//! --dry-run: the plan in words, step by step as `procedure::STEPS` names
//! them, with this run's hooks, servers, statements and mount points.

use super::Plan;
use crate::cli::LockMode;
use crate::procedure::{self, Step};
use crate::server::guard::QueryType;
use crate::server::lock::{Guard, AUTO_GUARD};
use crate::server::strategy;
use std::fmt::Write as _;

/// The plan's steps, numbered, then its limits.
pub fn describe(plan: &Plan) -> String {
    let mut lines = Vec::new();
    lines.extend(
        plan.hooks
            .before
            .iter()
            .map(|h| (procedure::BEFORE, h.clone())),
    );
    lines.extend(database(plan));
    lines.extend(plan.hooks.pre.iter().map(|h| (procedure::PRE, h.clone())));
    lines.extend(plan.freeze.iter().map(|t| {
        (
            procedure::FREEZE,
            format!(
                "{} ({}) with FIFREEZE; the guardian thaws it if we die",
                t.mountpoint.display(),
                t.fs_type
            ),
        )
    }));
    lines.extend(snapshot(plan));
    lines.extend(plan.freeze.iter().rev().map(|t| {
        (
            procedure::THAW,
            format!("{} (FITHAW)", t.mountpoint.display()),
        )
    }));
    if plan.locks() {
        lines.push((
            procedure::VERIFY,
            "the lock session is still the same live connection, and (with an exact mode) the binary log has not \
             moved"
                .into(),
        ));
    }
    lines.extend(
        plan.hooks
            .post
            .iter()
            .map(|h| (procedure::POST, format!("{h} (always runs once locked)"))),
    );
    if plan.locks() {
        let unlock: Vec<&str> = strategy::planned(plan.lock.mode)
            .iter()
            .map(|s| s.unlock)
            .collect();
        lines.push((procedure::UNLOCK, unlock.join(" or ")));
    }
    lines.extend(plan.hooks.after.iter().map(|h| {
        (
            procedure::AFTER,
            format!("{h} (always runs once connected)"),
        )
    }));
    let mut out = String::new();
    for (n, (step, text)) in lines.iter().enumerate() {
        let _ = writeln!(out, "{:>2}. {}: {text}", n + 1, step.name);
    }
    let _ = writeln!(
        out,
        "Limits: each hook {} s; locked section at most {} s (--max-lock-time).",
        plan.hook_timeout.as_secs_f64(),
        plan.max_lock_time.as_secs_f64()
    );
    out
}

/// Connect, lock and coordinates.
fn database(plan: &Plan) -> Vec<(Step, String)> {
    let lock = &plan.lock;
    let strategies = strategy::planned(lock.mode);
    if plan.instances.is_empty() || strategies.is_empty() {
        return vec![(
            procedure::CONNECT,
            "no database lock (--lock=none): no connection".into(),
        )];
    }
    let mut lines: Vec<(Step, String)> = plan
        .instances
        .iter()
        .map(|i| {
            (
                procedure::CONNECT,
                format!(
                    "{}{} as '{}' (lock session + watchdog session)",
                    i.prefix(),
                    i.spec.target,
                    i.spec.user
                ),
            )
        })
        .collect();
    if plan.instances.len() > 1 {
        lines.push((
            procedure::LOCK,
            format!(
                "all {} instances in parallel; if one cannot be locked, release the others and retry",
                plan.instances.len()
            ),
        ));
    }
    lines.extend(
        lock_attempts(lock)
            .into_iter()
            .map(|l| (procedure::LOCK, l)),
    );
    lines.push((
        procedure::COORDINATES,
        "SHOW BINARY LOG STATUS (MySQL >= 8.2), SHOW BINLOG STATUS (MariaDB >= 10.5.2) or SHOW MASTER STATUS; \
         GTID position"
            .into(),
    ));
    if let Some(c) = &plan.outputs.coordinates {
        lines.push((
            procedure::COORDINATES,
            format!("written to {}", c.display()),
        ));
    }
    lines
}

/// How the lock is attempted: the guard, the waits, the statements, the kill.
fn lock_attempts(lock: &crate::server::lock::LockConfig) -> Vec<String> {
    let mut lines = Vec::new();
    let kind = match lock.query_type {
        Some(QueryType::All) => "any statement",
        Some(QueryType::Update) => "a data-changing statement",
        None => "a statement the lock would wait for (any on MySQL/Percona ftwrl, data-changing otherwise)",
    };
    if lock.long_query_wait.is_zero() {
        lines.push(
            "never wait for long statements (--long-query-wait=0): attempt at once, rely on the retries".into(),
        );
    } else {
        match lock.guard {
            Guard::Off => {}
            _ if lock.kill_after.is_some() && lock.guard == Guard::Auto => {}
            Guard::After(g) => lines.push(format!(
                "before each attempt, wait while {kind} has run longer than {:.2} s (--long-query-guard)",
                g.as_secs_f64()
            )),
            Guard::Auto => lines.push(format!(
                "with ftwrl, before each attempt, wait while {kind} has run longer than {:.0} s (--long-query-guard)",
                AUTO_GUARD.as_secs_f64()
            )),
        }
        lines.push(format!(
            "after an attempt that gave up behind statements it can name, wait for them to finish and attempt \
             again at once; all such waits at most {:.0} s in all (--long-query-wait), then exit 75",
            lock.long_query_wait.as_secs_f64()
        ));
    }
    if lock.pre_flush {
        lines.push(
            "before each attempt, FLUSH NO_WRITE_TO_BINLOG TABLES (within the attempt's budget)"
                .into(),
        );
    }
    let statements: Vec<String> = strategy::planned(lock.mode)
        .iter()
        .map(|s| s.lock.join("; "))
        .collect();
    let statements = match lock.mode {
        LockMode::Auto => format!(
            "{} on MariaDB >= 10.4.1, else {}",
            statements[0], statements[1]
        ),
        _ => statements.join(""),
    };
    lines.push(format!(
        "{statements} ({}, then KILL QUERY; {} attempt(s), {:.2} s apart unless they waited behind named \
         statements)",
        budgets(lock),
        lock.retries + 1,
        lock.retry_delay.as_secs_f64()
    ));
    if let Some(k) = lock.kill_after {
        lines.push(format!(
            "DANGEROUS --kill-long-queries: after {:.2} s of an attempt, KILL QUERY {kind} that started before it",
            k.as_secs_f64()
        ));
    }
    lines
}

/// The snapshot hooks and COMMAND.
fn snapshot(plan: &Plan) -> Vec<(Step, String)> {
    let mut lines: Vec<(Step, String)> = plan
        .hooks
        .snapshot
        .iter()
        .map(|h| (procedure::SNAPSHOT, format!("{h} (stdout passed through)")))
        .collect();
    if let Some((argv, _)) = &plan.hooks.command {
        lines.push((
            procedure::SNAPSHOT,
            format!(
                "COMMAND {} (stdout passed through, no shell)",
                argv.join(" ")
            ),
        ));
    }
    lines
}

/// The attempts' budgets in words: "attempts of 0.25, 0.50, 1.00 s (then 1.00 s each)".
fn budgets(lock: &crate::server::lock::LockConfig) -> String {
    let mut shown = Vec::new();
    for n in 1..=lock.retries.saturating_add(1).min(8) {
        let b = lock.attempt_budget(n);
        shown.push(format!("{:.2}", b.as_secs_f64()));
        if b >= lock.wait {
            break;
        }
    }
    let more = if shown.len() < lock.retries.saturating_add(1) as usize {
        format!(" (then {:.2} s each)", lock.wait.as_secs_f64())
    } else {
        String::new()
    };
    format!("attempts of at most {} s{more}", shown.join(", "))
}
