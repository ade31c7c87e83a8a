//! Shared test fixtures: a throwaway MariaDB server (`server`) and loop-mounted
//! scratch filesystems (`loopfs`). Each test binary includes this with `mod common;`.
#![allow(dead_code)]

/// A fixture's value, or return from the test when it is unavailable.
/// Fixtures return None only outside CI when a tool is missing; with
/// `CI=true` they panic instead, so nothing is skipped silently there.
#[macro_export]
macro_rules! need {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return,
        }
    };
}

/// A throwaway MariaDB for this test (`server!()`), optionally with extra
/// mariadbd options (`server!(opt, ...)`); see `server::TestServer`.
#[macro_export]
macro_rules! server {
    () => {
        $crate::need!($crate::common::server::TestServer::start())
    };
    ($($arg:expr),+ $(,)?) => {
        $crate::need!($crate::common::server::TestServer::start_with(1, &[$($arg),+]))
    };
}

pub mod load;
pub mod loopfs;
pub mod process;
pub mod server;
pub mod snapshot;

/// The binary under test, with a timeout so a hang fails instead of blocking CI.
pub fn mysql_quiesce() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_mysql-quiesce"));
    cmd.timeout(std::time::Duration::from_secs(120));
    cmd
}
