//! mysql-quiesce: hold a MySQL/MariaDB lock on one session, freeze
//! filesystems, run the snapshot, and always release everything.
//!
//! `cli` defines the command line; `options` merges it with option files and
//! environment; `mode` decides what is asked; `plan` validates it once;
//! `run` is the sequence; `server`, `freeze`, `guardian` and `hooks` hold
//! the resources it acquires; `report` says what happened. The README's
//! Architecture section has the whole map.

pub mod atomic_write;
pub mod cli;
pub mod exit;
pub mod freeze;
pub mod fsfreeze;
pub mod generate;
pub mod grants;
pub mod guardian;
pub mod holder;
pub mod hooks;
pub mod messages;
pub mod mode;
pub mod options;
pub mod plan;
pub mod privileges;
pub mod procedure;
pub mod report;
pub mod run;
pub mod runlock;
pub mod server;
pub mod signals;
pub mod state;
pub mod verify;
pub mod wait;
