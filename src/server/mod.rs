//! The database side: connecting (`connect`), detecting the server (`flavor`),
//! taking and releasing the lock on one dedicated session (`lock`), reading
//! binary-log coordinates (`coordinates`).

pub mod connect;
pub mod coordinates;
pub mod flavor;
pub mod group;
pub mod guard;
pub mod instance;
pub mod lock;
pub mod strategy;

pub use connect::{connect, connect_detected, prepare_in_background, ConnectTarget};
pub use coordinates::Coordinates;
pub use flavor::{Flavor, ServerInfo};
pub use group::LockGroup;
pub use lock::{LockConfig, LockSession};
pub use strategy::Strategy;

use crate::exit;

/// Server error codes we act on (the mysql crate has no named constants).
pub mod codes {
    pub const ER_DBACCESS_DENIED: u16 = 1044;
    pub const ER_ACCESS_DENIED: u16 = 1045;
    pub const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
    pub const ER_SPECIFIC_ACCESS_DENIED: u16 = 1227;
    pub const ER_QUERY_INTERRUPTED: u16 = 1317;
    pub const ER_STATEMENT_TIMEOUT: u16 = 1969;
    pub const ER_CONNECTION_KILLED: u16 = 1927;
    pub const ER_SERVER_SHUTDOWN: u16 = 1053;
}

/// The exit status a server error maps to.
pub fn exit_code_for(err: &mysql::Error) -> u8 {
    match err {
        mysql::Error::MySqlError(e) => match e.code {
            codes::ER_ACCESS_DENIED
            | codes::ER_DBACCESS_DENIED
            | codes::ER_SPECIFIC_ACCESS_DENIED => exit::NOPERM,
            codes::ER_LOCK_WAIT_TIMEOUT
            | codes::ER_QUERY_INTERRUPTED
            | codes::ER_STATEMENT_TIMEOUT => exit::TEMPFAIL,
            _ => exit::UNAVAILABLE,
        },
        mysql::Error::IoError(_) | mysql::Error::CodecError(_) | mysql::Error::DriverError(_) => {
            exit::UNAVAILABLE
        }
        #[allow(unreachable_patterns)]
        _ => exit::UNAVAILABLE,
    }
}

/// Several statements in one round trip: the rows of each, or its error, in
/// order (`Batch::next_rows`). The server stops at the first statement that
/// fails; the ones after it are reported as not run.
pub fn batch(conn: &mut mysql::Conn, statements: &[&str]) -> Batch {
    use mysql::prelude::Queryable;
    let mut results = Vec::with_capacity(statements.len());
    match conn.query_iter(statements.join("; ")) {
        Err(e) => results.push(Err(e)),
        Ok(mut sets) => {
            while let Some(set) = sets.iter() {
                results.push(set.collect::<mysql::Result<Vec<mysql::Row>>>());
            }
        }
    }
    Batch {
        statements: statements.iter().map(|s| s.to_string()).collect(),
        results: results.into_iter(),
        taken: 0,
    }
}

/// Column `i` of the first of `rows` as text; None for no row or NULL.
pub fn first_text(rows: &[mysql::Row], i: usize) -> Option<String> {
    rows.first()
        .and_then(|r| r.get_opt::<Option<String>, _>(i))
        .and_then(Result::ok)
        .flatten()
}

/// The results of a `batch`, taken in the order of its statements.
pub struct Batch {
    statements: Vec<String>,
    results: std::vec::IntoIter<mysql::Result<Vec<mysql::Row>>>,
    taken: usize,
}

impl Batch {
    /// The next statement's rows, or why there are none.
    pub fn next_rows(&mut self) -> mysql::Result<Vec<mysql::Row>> {
        let statement = self.statements.get(self.taken).cloned().unwrap_or_default();
        self.taken += 1;
        self.results.next().unwrap_or_else(|| {
            Err(mysql::Error::IoError(std::io::Error::other(format!(
                "`{statement}` was not run: an earlier statement sent with it failed"
            ))))
        })
    }
}

/// Whether an error means the connection itself is gone (not just one statement failed).
pub fn is_connection_lost(err: &mysql::Error) -> bool {
    match err {
        mysql::Error::IoError(_) | mysql::Error::CodecError(_) | mysql::Error::DriverError(_) => {
            true
        }
        mysql::Error::MySqlError(e) => {
            matches!(
                e.code,
                codes::ER_CONNECTION_KILLED | codes::ER_SERVER_SHUTDOWN
            )
        }
        _ => false,
    }
}
