//! --dry-run: the plan in words, step by step as `procedure::STEPS` names
//! them, with this run's hooks, servers, statements and mount points.

use super::Plan;
use crate::cli::LockMode;
use crate::procedure::{self, Step};
use crate::server::guard::QueryType;
use crate::server::lock::{Guard, AUTO_GUARD};
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
        let kind = match lock.query_type {
            Some(QueryType::All) => "any statement",
            Some(QueryType::Update) => "a data-changing statement",
            None => "a statement the lock would wait for (any on MySQL/Percona ftwrl, data-changing otherwise)",
        };
        let guard = match lock.guard {
            Guard::Off => None,
            Guard::After(g) => Some(format!(
                "before each attempt, wait while {kind} has run longer than {:.2} s (--long-query-guard)",
                g.as_secs_f64()
            )),
            Guard::Auto => Some(format!(
                "with ftwrl, before each attempt, wait while {kind} has run longer than {:.0} s (--long-query-guard)",
                AUTO_GUARD.as_secs_f64()
            )),
        };
        if lock.long_query_wait.is_zero() {
            line(
                procedure::LOCK,
                "never wait for long statements (--long-query-wait=0): attempt at once, rely on the retries".into(),
            );
        } else {
            if let Some(g) = guard {
                line(procedure::LOCK, g);
            }
            line(
                procedure::LOCK,
                format!(
                    "after an attempt that gave up behind statements it can name, wait for them to finish and \
                     attempt again at once; all such waits at most {:.0} s in all (--long-query-wait), then exit 75",
                    lock.long_query_wait.as_secs_f64()
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
                "{statements} ({}, then KILL QUERY; {} attempt(s), {:.2} s apart unless they waited behind named \
                 statements)",
                budgets(lock),
                lock.retries + 1,
                lock.retry_delay.as_secs_f64()
            ),
        );
        if let Some(k) = lock.kill_after {
            line(
                procedure::LOCK,
                format!(
                    "DANGEROUS --kill-long-queries: after {:.2} s of an attempt, KILL QUERY {kind} that started \
                     before it",
                    k.as_secs_f64()
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
