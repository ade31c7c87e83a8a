//! SIGINT, SIGTERM, SIGHUP and SIGQUIT: remembered, not acted on in the
//! handler. The sequence and the hook runner poll `received()` and release
//! everything in order before exiting with 128+N. The handlers stay
//! installed, so a second signal cannot kill us halfway through a thaw.

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

static FIRST: AtomicI32 = AtomicI32::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();

/// Start listening for the termination signals. Idempotent.
pub fn install() -> anyhow::Result<()> {
    let mut result = Ok(());
    INSTALL.call_once(|| {
        match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT]) {
            Ok(mut signals) => {
                std::thread::Builder::new()
                    .name("signals".into())
                    .spawn(move || {
                        for sig in signals.forever() {
                            record(sig);
                        }
                    })
                    .map(|_| ())
                    .unwrap_or_else(|e| {
                        result = Err(anyhow::anyhow!("starting the signal thread: {e}"))
                    });
            }
            Err(e) => result = Err(anyhow::anyhow!("installing signal handlers: {e}")),
        }
    });
    result
}

fn record(sig: i32) {
    let _ = FIRST.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    COUNT.fetch_add(1, Ordering::SeqCst);
}

/// The first termination signal received, if any.
pub fn received() -> Option<i32> {
    match FIRST.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// Take the first signal and forget it: for `hold`, where SIGTERM/SIGINT is
/// the ordinary way to ask for the release, not a failure.
pub fn take() -> Option<i32> {
    match FIRST.swap(0, Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// How many termination signals have arrived so far. Cleanup hooks (post,
/// after) are interrupted only by a signal that arrives while they run.
pub fn count() -> usize {
    COUNT.load(Ordering::SeqCst)
}

/// Sleep up to `d`; returns early (with the signal) when one arrives.
pub fn wait_timeout(d: Duration) -> Option<i32> {
    let end = Instant::now() + d;
    loop {
        if let Some(sig) = received() {
            return Some(sig);
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// For tests: behave as if `sig` had been received.
#[doc(hidden)]
pub fn simulate(sig: i32) {
    record(sig);
}
