//! Connecting exactly where the user said, as the mysql client would: the
//! socket for localhost (or --protocol=SOCKET), TCP otherwise, never silently
//! switching transports (`prefer_socket(false)`).

use crate::cli::{Cli, Protocol, SslMode};
use crate::exit;
use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder, SslOpts};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Where the server is, for connecting and for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectTarget {
    Socket(PathBuf),
    Tcp { host: String, port: u16 },
}

impl fmt::Display for ConnectTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectTarget::Socket(p) => write!(f, "socket {}", p.display()),
            ConnectTarget::Tcp { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

pub const DEFAULT_SOCKET: &str = "/run/mysqld/mysqld.sock";
pub const DEFAULT_PORT: u16 = 3306;
/// Idle timeout for our sessions: the server must never drop a locked,
/// idle session during a long snapshot (31536000 s is the server maximum).
const SESSION_IDLE_TIMEOUT: u32 = 31_536_000;
/// Last-resort bound on a single server round trip; lock attempts are bounded
/// far more tightly by lock_wait_timeout and the KILL QUERY watchdog.
const IO_BACKSTOP: Duration = Duration::from_secs(120);

/// The resolved connection parameters.
#[derive(Clone)]
pub struct ConnectSpec {
    pub target: ConnectTarget,
    pub user: String,
    password: Option<String>,
    pub connect_timeout: Duration,
    pub ssl_mode: SslMode,
    ssl_ca: Option<PathBuf>,
    ssl_identity: Option<(PathBuf, PathBuf)>,
}

impl fmt::Debug for ConnectSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectSpec")
            .field("target", &self.target)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "*****"))
            .field("ssl_mode", &self.ssl_mode)
            .finish()
    }
}

fn login_name() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".into())
}

impl ConnectSpec {
    pub fn from_cli(cli: &Cli) -> anyhow::Result<ConnectSpec> {
        let host = cli.host.clone().unwrap_or_else(|| "localhost".into());
        let use_socket = match cli.protocol {
            Some(Protocol::Socket) => true,
            Some(Protocol::Tcp) => false,
            None => host == "localhost",
        };
        if use_socket && host != "localhost" {
            return Err(exit::fail(
                exit::CONFIG,
                format!("--protocol=SOCKET connects to the local server, but --host is {host}; drop one of them"),
            ));
        }
        let target = if use_socket {
            ConnectTarget::Socket(cli.socket.clone().unwrap_or_else(|| DEFAULT_SOCKET.into()))
        } else {
            ConnectTarget::Tcp {
                // The mysql client maps --protocol=TCP with localhost to the loopback address.
                host: if host == "localhost" {
                    "127.0.0.1".into()
                } else {
                    host
                },
                port: cli.port.unwrap_or(DEFAULT_PORT),
            }
        };
        let ssl_identity = match (&cli.ssl_cert, &cli.ssl_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => {
                return Err(exit::fail(
                    exit::CONFIG,
                    "--ssl-cert and --ssl-key go together: give both or neither",
                ))
            }
        };
        if !(cli.connect_timeout > 0.0 && cli.connect_timeout.is_finite()) {
            return Err(exit::fail(
                exit::CONFIG,
                "--connect-timeout must be a positive number of seconds",
            ));
        }
        let default_ssl = match target {
            ConnectTarget::Socket(_) => SslMode::Disabled,
            ConnectTarget::Tcp { .. } => SslMode::Preferred,
        };
        Ok(ConnectSpec {
            target,
            user: cli.user.clone().unwrap_or_else(login_name),
            password: cli.password.clone(),
            connect_timeout: Duration::from_secs_f64(cli.connect_timeout),
            ssl_mode: cli.ssl_mode.unwrap_or(default_ssl),
            ssl_ca: cli.ssl_ca.clone(),
            ssl_identity,
        })
    }

    fn opts(&self, tls: bool) -> OptsBuilder {
        let mut b = OptsBuilder::new()
            .user(Some(self.user.clone()))
            .pass(self.password.clone())
            .prefer_socket(false)
            .tcp_connect_timeout(Some(self.connect_timeout))
            .read_timeout(Some(IO_BACKSTOP.max(self.connect_timeout)))
            .write_timeout(Some(IO_BACKSTOP.max(self.connect_timeout)))
            .tcp_keepalive_time_ms(Some(10_000));
        b = match &self.target {
            ConnectTarget::Socket(p) => b.socket(Some(p.to_string_lossy())),
            ConnectTarget::Tcp { host, port } => {
                b.ip_or_hostname(Some(host.clone())).tcp_port(*port)
            }
        };
        if tls {
            let verify = matches!(self.ssl_mode, SslMode::VerifyCa | SslMode::VerifyIdentity);
            let mut ssl = SslOpts::default()
                .with_danger_accept_invalid_certs(!verify)
                .with_danger_skip_domain_validation(self.ssl_mode != SslMode::VerifyIdentity);
            if let Some(ca) = &self.ssl_ca {
                ssl = ssl.with_root_cert_path(Some(ca.clone()));
            }
            if let Some((cert, key)) = &self.ssl_identity {
                ssl = ssl.with_client_identity(Some(mysql::ClientIdentity::new(
                    cert.clone(),
                    key.clone(),
                )));
            }
            b = b.ssl_opts(Some(ssl));
        }
        b
    }
}

/// Open one session with our session settings. Errors carry exit codes:
/// 77 for access denied, 69 for everything that keeps us from connecting.
pub fn connect(spec: &ConnectSpec) -> anyhow::Result<Conn> {
    let attempt = |tls: bool| Conn::new(spec.opts(tls));
    let conn = match spec.ssl_mode {
        SslMode::Disabled => attempt(false),
        SslMode::Preferred => match attempt(true) {
            Err(mysql::Error::DriverError(mysql::DriverError::TlsNotSupported)) => attempt(false),
            other => other,
        },
        _ => attempt(true),
    };
    let mut conn = conn.map_err(|e| connect_error(spec, &e))?;
    conn.query_drop(format!(
        "SET SESSION wait_timeout = {SESSION_IDLE_TIMEOUT}, interactive_timeout = {SESSION_IDLE_TIMEOUT}"
    ))
    .map_err(|e| connect_error(spec, &e))?;
    Ok(conn)
}

fn connect_error(spec: &ConnectSpec, err: &mysql::Error) -> anyhow::Error {
    let code = super::exit_code_for(err);
    let hint = if code == exit::NOPERM {
        "check --user and the password (--password, MYSQL_PWD or the [client] group of an option file)"
    } else {
        "check that the server is running and --socket, --host, --port and --protocol point at it"
    };
    let code = if code == exit::NOPERM {
        code
    } else {
        exit::UNAVAILABLE
    };
    exit::fail(
        code,
        format!(
            "cannot connect to {} as '{}': {err}. Nothing was locked or frozen; {hint}.",
            spec.target, spec.user
        ),
    )
}
