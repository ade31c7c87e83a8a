//! The steps of a run, in order, with what each does and what a failure
//! there does. The sequence (`run`) follows it, and everything that tells a
//! user about it is generated from it: the man page's DESCRIPTION, the
//! README's sequence table (a test fails when the README's copy is stale)
//! and the steps of --dry-run's plan.

/// One step of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Its name, as in the report's phases and --dry-run.
    pub name: &'static str,
    /// What happens.
    pub what: &'static str,
    /// What a failure there does (or when it runs whatever happened).
    pub on_failure: &'static str,
}

pub const BEFORE: Step = Step {
    name: "before",
    what: "`--before CMD` hooks; nothing is held yet",
    on_failure: "the run stops; nothing to release",
};
pub const CONNECT: Step = Step {
    name: "connect",
    what: "a lock session and a watchdog session to each server",
    on_failure: "exit 69 / 77; nothing was locked",
};
pub const LOCK: Step = Step {
    name: "lock",
    what: "long statements waited out first (`--long-query-wait`), then bounded attempts (0.25 s, doubling up to `--lock-wait-timeout`), retried (`--lock-retries`)",
    on_failure: "exit 75, nothing locked",
};
pub const COORDINATES: Step = Step {
    name: "coordinates",
    what: "binary-log file/position and GTID, read under the lock; `--coordinates-file` written atomically",
    on_failure: "pre, freeze and snapshot are skipped",
};
pub const PRE: Step = Step {
    name: "pre",
    what: "`--pre CMD` hooks",
    on_failure: "the remaining pre hooks, the freeze and the snapshot are skipped",
};
pub const FREEZE: Step = Step {
    name: "freeze",
    what: "`--freeze MOUNTPOINT` with FIFREEZE, in order, each announced to the guardian first",
    on_failure: "what was frozen is thawed; the snapshot is skipped",
};
pub const SNAPSHOT: Step = Step {
    name: "snapshot",
    what: "`--snapshot CMD` hooks, then COMMAND (argv, no shell); their stdout is mysql-quiesce's stdout",
    on_failure: "the remaining snapshot hooks and COMMAND are skipped",
};
pub const THAW: Step = Step {
    name: "thaw",
    what: "FITHAW, in reverse order",
    on_failure: "always; what cannot be thawed is left to the guardian",
};
pub const VERIFY: Step = Step {
    name: "verify",
    what: "the lock session must still be the same live connection, and with an exact mode the binary log must not have moved (a rotation that logged nothing aside)",
    on_failure: "exit 65: the snapshot must not be trusted (post and after hooks see MYSQL_QUIESCE_STATUS=failed)",
};
pub const POST: Step = Step {
    name: "post",
    what: "`--post CMD` hooks, still locked until `--max-lock-time`: one still running then is cut (124), the lock released at once, the rest run unlocked",
    on_failure: "always run once locked",
};
pub const UNLOCK: Step = Step {
    name: "unlock",
    what: "release the lock (the unlock statement of the lock mode)",
    on_failure: "the server releases it when the session closes, which happens then",
};
pub const AFTER: Step = Step {
    name: "after",
    what: "`--after CMD` hooks",
    on_failure: "always run once connected (with `--lock=none`: always), whatever happened after",
};

/// Every step, in the order a run takes them.
pub const STEPS: [Step; 12] = [
    BEFORE,
    CONNECT,
    LOCK,
    COORDINATES,
    PRE,
    FREEZE,
    SNAPSHOT,
    THAW,
    VERIFY,
    POST,
    UNLOCK,
    AFTER,
];

/// The README's sequence table (Markdown).
pub fn markdown_table() -> String {
    let mut out = String::from("| step | what happens | on failure |\n|---|---|---|\n");
    for s in STEPS {
        out.push_str(&format!("| {} | {} | {} |\n", s.name, s.what, s.on_failure));
    }
    out
}
