//! Connecting exactly where the user said, as the mysql client would: the
//! socket for localhost (or --protocol=SOCKET), TCP otherwise, never silently
//! switching transports (`prefer_socket(false)`).

use super::ServerInfo;
use crate::exit;
use crate::messages::Progress;
use clap::ValueEnum;
use mysql::{Conn, OptsBuilder, SslOpts};
use std::fmt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

/// --protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[value(rename_all = "UPPER")]
pub enum Protocol {
    Tcp,
    Socket,
}

/// --ssl-mode, with the mysql client's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SslMode {
    Disabled,
    Preferred,
    Required,
    VerifyCa,
    VerifyIdentity,
}

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

/// Where and how to connect, as the options say it (command line, option
/// files, environment, or one --instance): plain values, not yet checked.
#[derive(Clone, Default)]
pub struct ConnectionArgs {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Where the port came from ("FILE:LINE", "environment variable
    /// MYSQL_TCP_PORT" or `PORT_FROM_COMMAND_LINE`): it decides the
    /// transport, and names the port in messages.
    pub port_origin: Option<String>,
    pub socket: Option<PathBuf>,
    /// --socket was typed on the command line.
    pub socket_on_command_line: bool,
    pub user: Option<String>,
    pub password: Option<String>,
    pub protocol: Option<Protocol>,
    pub connect_timeout: f64,
    pub ssl_mode: Option<SslMode>,
    pub ssl_ca: Option<PathBuf>,
    pub ssl_cert: Option<PathBuf>,
    pub ssl_key: Option<PathBuf>,
}

impl fmt::Debug for ConnectionArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionArgs")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("socket", &self.socket)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "*****"))
            .finish_non_exhaustive()
    }
}

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
    /// Settings that do not apply to this connection (shown when connecting).
    pub warnings: Vec<String>,
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

/// Socket or TCP, as the MySQL/MariaDB clients decide it, except that a port
/// is never silently left unused: that would lock a different server than the
/// one meant, and report its snapshot as consistent.
fn transport(cli: &ConnectionArgs) -> anyhow::Result<ConnectTarget> {
    let host = cli.host.clone().unwrap_or_else(|| "localhost".into());
    let localhost = host == "localhost";
    let port_given_here = cli.port_origin.as_deref() == Some(PORT_FROM_COMMAND_LINE);
    let use_socket = match cli.protocol {
        Some(Protocol::Socket) => true,
        Some(Protocol::Tcp) => false,
        // As MariaDB >= 10.6 clients: a port typed on the command line means TCP,
        // unless a socket was typed there too.
        None if localhost && port_given_here && !cli.socket_on_command_line => false,
        None => localhost,
    };
    if use_socket && !localhost {
        return Err(exit::fail(
            exit::CONFIG,
            format!("--protocol=SOCKET connects to the local server, but --host is {host}; drop one of them"),
        ));
    }
    if use_socket && cli.protocol.is_none() && cli.socket.is_none() {
        if let (Some(port), Some(origin)) =
            (cli.port.filter(|p| *p != DEFAULT_PORT), &cli.port_origin)
        {
            return Err(exit::fail(
                exit::CONFIG,
                format!(
                    "port {port} (from {origin}) would not be used: with host localhost the mysql client connects \
                     through the default socket {DEFAULT_SOCKET}, which may be a different server. Say which one you \
                     mean: socket=PATH for that server's socket, or protocol=TCP (or host=127.0.0.1) to use the port"
                ),
            ));
        }
    }
    Ok(if use_socket {
        ConnectTarget::Socket(cli.socket.clone().unwrap_or_else(|| DEFAULT_SOCKET.into()))
    } else {
        ConnectTarget::Tcp {
            // The mysql client maps --protocol=TCP with localhost to the loopback address.
            host: if localhost { "127.0.0.1".into() } else { host },
            port: cli.port.unwrap_or(DEFAULT_PORT),
        }
    })
}

/// `ConnectionArgs::port_origin` for a port typed on the command line.
pub const PORT_FROM_COMMAND_LINE: &str = "the command line";

impl ConnectSpec {
    pub fn new(cli: &ConnectionArgs) -> anyhow::Result<ConnectSpec> {
        let target = transport(cli)?;
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
        let (ssl_mode, warnings) = tls_mode(cli, &target)?;
        Ok(ConnectSpec {
            target,
            user: cli.user.clone().unwrap_or_else(login_name),
            password: cli.password.clone(),
            connect_timeout: Duration::from_secs_f64(cli.connect_timeout),
            ssl_mode,
            ssl_ca: cli.ssl_ca.clone(),
            ssl_identity,
            warnings,
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
            .tcp_keepalive_time_ms(Some(10_000))
            // Our statements are small: a known client limit spares the
            // round trip that asks the server for its own at every connect.
            .max_allowed_packet(Some(16 * 1024 * 1024));
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

/// The TLS mode to use, and settings that will not apply, as the mysql
/// client decides it. A CA given without a mode means "verify the server with
/// it" (VERIFY_CA); contradictions are configuration errors.
fn tls_mode(
    cli: &ConnectionArgs,
    target: &ConnectTarget,
) -> anyhow::Result<(SslMode, Vec<String>)> {
    let files: Vec<&str> = [
        cli.ssl_ca.as_ref().map(|_| "--ssl-ca"),
        cli.ssl_cert.as_ref().map(|_| "--ssl-cert"),
        cli.ssl_key.as_ref().map(|_| "--ssl-key"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut warnings = Vec::new();
    if let ConnectTarget::Socket(path) = target {
        // The crate (like libmysqlclient) never encrypts a Unix socket: it is
        // local, and the server counts it as secure transport.
        let demanded = matches!(
            cli.ssl_mode,
            Some(SslMode::Required | SslMode::VerifyCa | SslMode::VerifyIdentity)
        );
        if demanded || !files.is_empty() {
            let what = cli
                .ssl_mode
                .filter(|_| demanded)
                .map(|m| format!("--ssl-mode={}", ssl_mode_name(m)))
                .into_iter()
                .chain(files.iter().map(|f| f.to_string()))
                .collect::<Vec<_>>()
                .join(", ");
            warnings.push(format!(
                "{what} not used: the connection goes through the local socket {} and is not encrypted \
                 (a local socket is not exposed to the network); use --protocol=TCP for TLS",
                path.display()
            ));
        }
        return Ok((SslMode::Disabled, warnings));
    }
    let mode = match cli.ssl_mode {
        Some(m) => m,
        None if cli.ssl_ca.is_some() => SslMode::VerifyCa,
        None => SslMode::Preferred,
    };
    if mode == SslMode::Disabled && !files.is_empty() {
        return Err(exit::fail(
            exit::CONFIG,
            format!(
                "--ssl-mode=DISABLED contradicts {}: drop them, or choose another --ssl-mode",
                files.join(", ")
            ),
        ));
    }
    if matches!(mode, SslMode::VerifyCa | SslMode::VerifyIdentity) && cli.ssl_ca.is_none() {
        return Err(exit::fail(
            exit::CONFIG,
            format!(
                "--ssl-mode={} needs --ssl-ca: the CA certificate that signed the server's certificate",
                ssl_mode_name(mode)
            ),
        ));
    }
    Ok((mode, warnings))
}

/// The --ssl-mode value of a mode, as clap spells it (e.g. VERIFY_CA).
pub fn ssl_mode_name(mode: SslMode) -> String {
    use clap::ValueEnum;
    mode.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// Start, on another core, the work the first connection would otherwise do
/// on the path to the lock: the protocol crate compiles two regular
/// expressions (about 3 million instructions, a millisecond here) the first
/// time it reads a server's greeting. Called at start-up, so that it overlaps
/// option loading, the run lock and the guardian's start; the first connect
/// then finds them ready (or waits for this to finish, never does it twice).
pub fn prepare_in_background() {
    let _ = std::thread::Builder::new()
        .name("prepare-protocol".into())
        .spawn(|| {
            let greeting = mysql_common::packets::HandshakePacket::new(
                10,
                &b"5.5.5-10.11.0-MariaDB"[..],
                0,
                [0; 8],
                None::<&[u8]>,
                mysql_common::constants::CapabilityFlags::empty(),
                0,
                mysql_common::constants::StatusFlags::empty(),
                None::<&[u8]>,
            );
            let _ = greeting.server_version_parsed();
            let _ = greeting.maria_db_server_version_parsed();
        });
}

/// Open one session with our session settings. Errors carry exit codes:
/// 77 for access denied, 69 for everything that keeps us from connecting.
pub fn connect(spec: &ConnectSpec, progress: &Progress) -> anyhow::Result<Conn> {
    Opening::idle(spec, progress).wait().map(|(conn, _)| conn)
}

/// `connect`, with `settings` (a SET SESSION list with the session's
/// wait_timeout) and the server detected in the same round trip as them.
pub fn connect_detected(
    spec: &ConnectSpec,
    progress: &Progress,
    settings: &str,
) -> anyhow::Result<(Conn, ServerInfo)> {
    Opening::start(spec, progress, settings).wait()
}

/// A session being opened on a thread of its own, so that several open at
/// once and the whole of it (TCP connect, TLS, authentication, settings) is
/// bounded by --connect-timeout: the crate's own timeout covers only the TCP
/// connect, and a server that accepts but never answers would otherwise hold
/// us for the read-timeout backstop. On timeout the thread is abandoned; it
/// ends with that backstop or with the process.
pub struct Opening {
    opened: mpsc::Receiver<anyhow::Result<(Conn, ServerInfo)>>,
    spec: ConnectSpec,
    /// --connect-timeout from the start: sessions opening together share it.
    deadline: std::time::Instant,
}

impl Opening {
    /// With the settings of `connect`.
    pub fn idle(spec: &ConnectSpec, progress: &Progress) -> Opening {
        Opening::start(
            spec,
            progress,
            &format!("wait_timeout = {SESSION_IDLE_TIMEOUT}"),
        )
    }

    /// With `settings` (a SET SESSION list with the session's wait_timeout).
    pub fn start(spec: &ConnectSpec, progress: &Progress, settings: &str) -> Opening {
        let deadline = std::time::Instant::now() + spec.connect_timeout;
        let (tx, opened) = mpsc::channel();
        let (thread_spec, progress, settings) = (spec.clone(), *progress, settings.to_string());
        let thread_tx = tx.clone();
        let started = std::thread::Builder::new()
            .name("connect".into())
            .spawn(move || {
                let _ = thread_tx.send(open(&thread_spec, &progress, &settings));
            });
        if let Err(e) = started {
            let _ = tx.send(Err(exit::fail(
                exit::SOFTWARE,
                format!("cannot start a thread to connect: {e}. Nothing was locked or frozen."),
            )));
        }
        Opening {
            opened,
            spec: spec.clone(),
            deadline,
        }
    }

    /// The open session, or why there is none.
    pub fn wait(self) -> anyhow::Result<(Conn, ServerInfo)> {
        let spec = &self.spec;
        let left = self
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        self.opened.recv_timeout(left).unwrap_or_else(|e| {
            if e == mpsc::RecvTimeoutError::Disconnected {
                return Err(exit::fail(
                    exit::SOFTWARE,
                    format!(
                        "internal error: the thread connecting to {} ended without an answer. Nothing was \
                         locked or frozen.",
                        spec.target
                    ),
                ));
            }
            Err(exit::fail(
                    exit::UNAVAILABLE,
                    format!(
                        "cannot connect to {} as '{}': no answer within --connect-timeout ({} s). Nothing was \
                         locked or frozen; check that the server is running and not overloaded.",
                        spec.target,
                        spec.user,
                        spec.connect_timeout.as_secs_f64()
                    ),
                ))
            })
    }
}

/// Connect (with TLS as --ssl-mode says), then set `settings` and detect the
/// server in one round trip.
fn open(
    spec: &ConnectSpec,
    progress: &Progress,
    settings: &str,
) -> anyhow::Result<(Conn, ServerInfo)> {
    let conn = match spec.ssl_mode {
        SslMode::Disabled => Conn::new(spec.opts(false)),
        SslMode::Preferred => match Conn::new(spec.opts(true)) {
            Err(mysql::Error::DriverError(mysql::DriverError::TlsNotSupported)) => {
                let unused = if spec.ssl_identity.is_some() {
                    " (--ssl-cert and --ssl-key are not used)"
                } else {
                    ""
                };
                let note = format!(
                    "{} does not offer TLS: connected without encryption (--ssl-mode=PREFERRED){unused}",
                    spec.target
                );
                if unused.is_empty() {
                    progress.detail(note);
                } else {
                    progress.warn(note);
                }
                Conn::new(spec.opts(false))
            }
            other => other,
        },
        _ => Conn::new(spec.opts(true)),
    };
    let mut conn = conn.map_err(|e| connect_error(spec, &e))?;
    let set = format!("SET SESSION {settings}, interactive_timeout = {SESSION_IDLE_TIMEOUT}");
    progress.sql(&set);
    progress.sql(ServerInfo::DETECT);
    let mut results = super::batch(&mut conn, &[&set, ServerInfo::DETECT]);
    let failed = |what: &str, e: mysql::Error| {
        exit::fail(
            super::exit_code_for(&e),
            format!(
                "{what} on {} failed: {e}. Nothing was locked or frozen.",
                spec.target
            ),
        )
    };
    results
        .next_rows()
        .map_err(|e| failed("setting the session's variables", e))?;
    let rows = results
        .next_rows()
        .map_err(|e| failed("detecting the server version", e))?;
    Ok((conn, ServerInfo::from_rows(&rows)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str], port_origin: Option<&str>) -> ConnectionArgs {
        let mut argv = vec!["mysql-quiesce"];
        argv.extend_from_slice(args);
        let c = crate::cli::Cli::try_parse_from(argv).unwrap();
        let mut a = c.connection_args();
        a.port_origin = port_origin.map(str::to_string);
        a.socket_on_command_line = args
            .iter()
            .any(|a| a.starts_with("-S") || a.starts_with("--socket"));
        a
    }

    fn tcp(host: &str, port: u16) -> ConnectTarget {
        ConnectTarget::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn a_port_on_the_command_line_means_tcp_to_the_loopback_address() {
        let c = cli(&["-P", "3307"], Some(PORT_FROM_COMMAND_LINE));
        assert_eq!(transport(&c).unwrap(), tcp("127.0.0.1", 3307));
        // ... unless a socket is typed there too, or the protocol says so.
        let c = cli(&["-P", "3307", "-S", "/s"], Some(PORT_FROM_COMMAND_LINE));
        assert_eq!(transport(&c).unwrap(), ConnectTarget::Socket("/s".into()));
        let c = cli(
            &["-P", "3307", "--protocol=socket"],
            Some(PORT_FROM_COMMAND_LINE),
        );
        assert_eq!(
            transport(&c).unwrap(),
            ConnectTarget::Socket(DEFAULT_SOCKET.into())
        );
    }

    #[test]
    fn a_port_from_a_file_that_would_go_unused_is_a_configuration_error() {
        let c = cli(&["-P", "3307"], Some("/etc/my.cnf:4"));
        let err = transport(&c).unwrap_err();
        assert_eq!(exit::code_of(&err), exit::CONFIG);
        let msg = err.to_string();
        assert!(
            msg.contains("port 3307 (from /etc/my.cnf:4) would not be used"),
            "{msg}"
        );
        assert!(msg.contains("protocol=TCP"), "{msg}");
        // The default port, or a socket next to the port, is the usual [client] layout: fine.
        let c = cli(&["-P", "3306"], Some("/etc/my.cnf:4"));
        assert_eq!(
            transport(&c).unwrap(),
            ConnectTarget::Socket(DEFAULT_SOCKET.into())
        );
        let mut c = cli(&["-P", "3307"], Some("/etc/my.cnf:4"));
        c.socket = Some("/run/mysqld/mysqld2.sock".into());
        c.socket_on_command_line = false;
        assert_eq!(
            transport(&c).unwrap(),
            ConnectTarget::Socket("/run/mysqld/mysqld2.sock".into())
        );
        // A host other than localhost always means TCP.
        let c = cli(&["-h", "db1", "-P", "3307"], Some("/etc/my.cnf:4"));
        assert_eq!(transport(&c).unwrap(), tcp("db1", 3307));
    }

    #[test]
    fn tls_mode_follows_the_mysql_client_and_refuses_contradictions() {
        let mode = |args: &[&str]| {
            let c = cli(args, None);
            tls_mode(&c, &transport(&c).unwrap())
        };
        assert_eq!(mode(&["-h", "db1"]).unwrap().0, SslMode::Preferred);
        assert_eq!(
            mode(&["-h", "db1", "--ssl-ca=/ca.pem"]).unwrap().0,
            SslMode::VerifyCa
        );
        let err = mode(&["-h", "db1", "--ssl-mode=VERIFY_IDENTITY"]).unwrap_err();
        assert_eq!(exit::code_of(&err), exit::CONFIG);
        assert!(err.to_string().contains("needs --ssl-ca"), "{err}");
        let err = mode(&["-h", "db1", "--ssl-mode=DISABLED", "--ssl-ca=/ca.pem"]).unwrap_err();
        assert!(err.to_string().contains("contradicts --ssl-ca"), "{err}");
    }

    #[test]
    fn tls_settings_over_a_socket_are_reported_not_silently_dropped() {
        let c = cli(
            &["-S", "/s", "--ssl-mode=REQUIRED", "--ssl-ca=/ca.pem"],
            None,
        );
        let (mode, warnings) = tls_mode(&c, &transport(&c).unwrap()).unwrap();
        assert_eq!(mode, SslMode::Disabled);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("--ssl-mode=REQUIRED, --ssl-ca not used: the connection goes through the local socket /s"),
            "{}",
            warnings[0]
        );
        let c = cli(&["-S", "/s"], None);
        assert!(tls_mode(&c, &transport(&c).unwrap()).unwrap().1.is_empty());
    }
}
