//! SIGINT, SIGTERM, SIGHUP and SIGQUIT: remembered, not acted on in the
//! handler. The run loop and the hook runner poll `received()` and release
//! everything in order before exiting with 128+N.

/// Start listening for the termination signals. Call once, early.
pub fn install() -> anyhow::Result<()> {
    todo!("signals::install")
}

/// The first termination signal received, if any.
pub fn received() -> Option<i32> {
    None
}
