//! Shared test fixtures: a throwaway MariaDB server (`server`) and loop-mounted
//! scratch filesystems (`loopfs`). Each test binary includes this with `mod common;`.
#![allow(dead_code)]

pub mod load;
pub mod loopfs;
pub mod server;

/// The binary under test, with a timeout so a hang fails instead of blocking CI.
pub fn mysql_quiesce() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_mysql-quiesce"));
    cmd.timeout(std::time::Duration::from_secs(120));
    cmd
}
