//! mysql-quiesce: hold a MySQL/MariaDB lock on one session, freeze
//! filesystems, run the snapshot, and always release everything.
//!
//! `cli` defines the command line; `options` merges it with option files and
//! environment; `run` is the sequence; `server`, `freeze` and `hooks` hold the
//! resources it acquires; `report` says what happened.

pub mod cli;
pub mod exit;
pub mod freeze;
pub mod generate;
pub mod grants;
pub mod guardian;
pub mod holder;
pub mod hooks;
pub mod messages;
pub mod options;
pub mod plan;
pub mod report;
pub mod run;
pub mod runlock;
pub mod server;
pub mod signals;
pub mod state;
pub mod verify;
pub mod wait;
