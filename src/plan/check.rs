//! --check: connect and verify privileges, hook programs and freeze targets;
//! lock and freeze nothing. The exit status is what a run would fail with.

use super::{describe, resolve_program, Plan};
use crate::exit;
use crate::freeze;
use crate::hooks;
use crate::runlock;
use crate::server::LockSession;
use crate::state::State;

pub fn check(plan: &Plan) -> u8 {
    let progress = &plan.progress;
    crate::messages::stdout(&describe(plan));
    let mut code = exit::OK;
    let mut problem = |c: u8, msg: String| {
        progress.error(msg);
        if code == exit::OK {
            code = c;
        }
    };
    let h = &plan.hooks;
    for (phase, list) in [
        ("before", &h.before),
        ("pre", &h.pre),
        ("snapshot", &h.snapshot),
        ("post", &h.post),
        ("after", &h.after),
    ] {
        for hook in list {
            if let Some(w) = hooks::first_word(hook) {
                if let Err(e) = resolve_program(&format!("{phase} hook program"), &w) {
                    problem(exit::code_of(&e), format!("{e:#}"));
                }
            }
        }
    }
    if let Err(e) = freeze::require_root(&plan.freeze) {
        problem(exit::code_of(&e), format!("{e:#}"));
    }
    let state = State::new(&plan.state_dir);
    match runlock::acquire(plan.lock_file.as_deref(), &state) {
        Ok(_released_at_end_of_scope) => {}
        Err(e) => problem(exit::code_of(&e), format!("{e:#}")),
    }
    for instance in &plan.instances {
        match LockSession::open(&instance.spec, &plan.lock, progress) {
            Ok(mut s) => {
                s.set_replica_note(state.replica_note(&instance.label()), progress);
                progress.info(format!(
                    "{}connected to {} (connection {}); lock: {}",
                    instance.prefix(),
                    s.info.short(),
                    s.connection_id,
                    s.strategy().name
                ));
                match s.missing_privileges(&plan.lock) {
                    Ok(missing) if missing.is_empty() => {}
                    Ok(missing) => problem(
                        exit::NOPERM,
                        format!(
                            "user '{}' lacks {}{}",
                            instance.spec.user,
                            missing.join(", "),
                            crate::grants::check_hint(&instance.spec, &plan.lock, progress)
                        ),
                    ),
                    Err(e) => problem(exit::code_of(&e), format!("{e:#}")),
                }
            }
            // Opening refuses for a privilege the options need (the guard, the kill).
            Err(e) if exit::code_of(&e) == exit::NOPERM => problem(
                exit::NOPERM,
                format!(
                    "{e:#}{}",
                    crate::grants::check_hint(&instance.spec, &plan.lock, progress)
                ),
            ),
            Err(e) => problem(exit::code_of(&e), format!("{e:#}")),
        }
    }
    if code == exit::OK {
        progress.info("check passed: nothing was locked or frozen");
    }
    code
}
